/* Binding checkpoint tensors to a backend, with the shape each layer expects.
 *
 * Every layer table row binds its weights through kiln_weights_bind, which
 * checks the tensor exists and has exactly the shape the row implies, and
 * makes it usable on the backend (in place on the CPU; copied once to a GPU).
 * The first missing or mis-shaped tensor fails the load with its name. */
#ifndef KILN_WEIGHTS_H
#define KILN_WEIGHTS_H

#include "backend.h"
#include "checkpoint.h"

typedef struct kiln_weights kiln_weights;

kiln_status kiln_weights_create(kiln_backend *be, const kiln_checkpoint *ck, kiln_weights **out);
/* Frees every bound tensor and its backend buffer. */
void kiln_weights_free(kiln_weights *w);

/* Binds `name` (canonical) with the given shape. `ndim`/`shape` may describe a
 * 1x1 conv weight as (O, C, 1, 1) while the checkpoint stores (O, C) or the
 * other way round: only element counts and the non-unit dims must agree. */
kiln_status kiln_weights_bind(kiln_weights *w, const char *name, int ndim, const int64_t *shape,
                              const kiln_tensor **out);

/* Binds `<prefix>.<suffix>` (the suffix alone under an empty prefix: a bare
 * part's file); shape given as a literal list of dims. */
#define KILN_BIND(w, out, prefix, suffix, ...)                                                     \
    kiln_weights_bind_at((w), (out), (prefix), (suffix),                                           \
                         (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
kiln_status kiln_weights_bind_at(kiln_weights *w, const kiln_tensor **out, const char *prefix, const char *suffix,
                                 int ndim, const int64_t *shape);

/* Binds `<prefix>.<suffix>` as a linear layer's weight (out_features,
 * in_features), which only a matmul reads: a quantized one (a GGUF file's)
 * stays as stored. The other binds widen quantized tensors to f16 for the
 * ops that read only float weights (conv2d, norms, embeddings, tables). */
kiln_status kiln_weights_bind_linear(kiln_weights *w, const kiln_tensor **out, const char *prefix, const char *suffix,
                                     int64_t out_features, int64_t in_features);

/* Linear weights stored as f32, f16 or bf16 and bound from now on are
 * converted to `dtype` when placed (fp8 rounded to nearest; Q8_0, Q5_1,
 * Q5_0, Q4_1 or Q4_0 where their rows are whole blocks): ComfyUI's
 * UNETLoader weight_dtype (fp8) and stable-diffusion.cpp's --type for the
 * diffusion model alone.
 * KILN_DTYPE_COUNT, the default: as stored. */
void kiln_weights_convert_linears(kiln_weights *w, kiln_dtype dtype);

/* Bytes of weights bound (as stored, quantized weights widened to f16 counted
 * as f16). */
size_t kiln_weights_bytes(const kiln_weights *w);
kiln_backend *kiln_weights_backend(const kiln_weights *w);
const kiln_checkpoint *kiln_weights_checkpoint(const kiln_weights *w);

#endif
