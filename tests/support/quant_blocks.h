/* Random blocks of GGUF's quantized types for the op tests: every bit
 * pattern of the packed values and sub-block scales reachable, each f16
 * scale (d, and dmin or m where the type has one) drawn from [lo, hi]. */
#ifndef KILN_TEST_QUANT_BLOCKS_H
#define KILN_TEST_QUANT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Fills kiln_dtype_bytes(dtype, values) bytes at dst from the generator
 * state *rng; values is whole blocks. */
void random_quant_blocks(void *dst, kiln_dtype dtype, size_t values, double lo, double hi, uint64_t *rng);

#endif
