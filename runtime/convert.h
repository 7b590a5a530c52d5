/* Converting whole weight arrays from one storage dtype to another on every
 * core: a GGUF file's quantized tensor widened to f16 when the file opens
 * (gguf.c), a weight widened or narrowed as it is bound (weights.c). */
#ifndef KILN_CONVERT_H
#define KILN_CONVERT_H

#include <stddef.h>

#include "cpu_threads.h"
#include "tensor.h"

/* A pool of every online core (at most 32) for such work. */
kiln_status kiln_convert_pool(cpu_pool **out);

/* n values of `from` at src into `to` at dst (whole blocks of a quantized
 * type), through f32 a chunk at a time, on the pool's threads (NULL: the
 * caller's alone). */
void kiln_convert_parallel(cpu_pool *pool, const void *src, kiln_dtype from, void *dst, kiln_dtype to, size_t n);

#endif
