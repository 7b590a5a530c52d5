/* GGML's block-quantized weight types (Q4_0 .. IQ4_XS) as kiln dtypes.
 *
 * A block holds `elements` consecutive values of a row in `bytes` bytes: a
 * few f16 scales and packed small integers. kiln keeps such weights as
 * stored (the bytes of a GGUF file's mapping) and widens them where they are
 * used, as it widens f16 or fp8: a quantized Flux is as small in memory as on
 * disk. These are the reference decoders; the Vulkan shaders
 * (shaders/dequantize.comp) and CUDA kernels (kernels/dequantize.cu) decode
 * the same layouts and are tested against them. */
#ifndef KILN_QUANT_H
#define KILN_QUANT_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

/* The block of a quantized dtype: values and bytes; false for other dtypes. */
bool kiln_quant_block(kiln_dtype dtype, int *elements, int *bytes);

/* Decodes `blocks` whole blocks at `src` into f32 `dst` (blocks x elements
 * values), bit for bit as ggml's dequantize_row_* does. */
void kiln_dequantize(kiln_dtype dtype, const void *src, float *dst, size_t blocks);

/* Quantizes `blocks` blocks of f32 `src` into `dst` as ggml's reference
 * quantizers do (and gguf-py's numpy twins, bit for bit): Q4_0, Q4_1, Q5_0,
 * Q5_1 and Q8_0, the types kiln makes of float weights at load
 * (kiln_model_parts.weight_dtype); false for the others. */
bool kiln_quantize(kiln_dtype dtype, const float *src, void *dst, size_t blocks);

#endif
