/* GGUF files (llama.cpp's format) read as tensor files.
 *
 * Diffusion models come as GGUF mostly from city96's ComfyUI-GGUF (a Flux,
 * SD or SDXL diffusion model alone, names as in the original checkpoint
 * without `model.diffusion_model.`; T5 encoders in llama.cpp's names). kiln reads
 * them as it reads a safetensors file: kiln_st_open recognises the magic and
 * hands the bytes here. F32, F16, BF16, I32 and I64 tensors are views into
 * the mapping, and so are the block-quantized types (Q4_0 Q4_1 Q5_0 Q5_1
 * Q8_0, the K-quants Q2_K..Q6_K, IQ4_NL, IQ4_XS) as kiln dtypes of their
 * own (runtime/quant.h), widened where they are used: a quantized file is as
 * small in memory as on disk. A quantized tensor whose rows are not whole
 * blocks (ComfyUI-GGUF flattens conv kernels to rows of 256 to quantize
 * them) is dequantized once, at open, into an f16 copy the file owns.
 *
 * What a GGUF writer encodes beyond the tensors is undone here: dims are
 * stored fastest first (reversed into kiln's order); ComfyUI-GGUF's
 * `comfy.gguf.orig_shape.<name>` gives back the shape of a tensor it
 * flattened to rows of 256 for quantizing; a T5 encoder (architecture `t5`
 * or `t5encoder`) is renamed from llama.cpp's names to transformers'.
 * String metadata is kept (as kiln_st_metadata reads it), numbers and
 * booleans as text; arrays are skipped. kiln adds KILN_GGUF_TYPES_KEY: the
 * stored types and their tensor counts ("Q8_0 36, F32 20"). Every count, length, type, dim and
 * offset is checked before use, and every error names the file and, where
 * there is one, the tensor or key. */
#ifndef KILN_GGUF_H
#define KILN_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

#define KILN_GGUF_TYPES_KEY "kiln.gguf.tensor_types"

/* What a GGUF file reads as: tensors in data-offset order, metadata, and the
 * storage for names, text and dequantized copies (freed by kiln_gguf_free). */
typedef struct kiln_gguf_contents {
    kiln_st_tensor *tensors;
    size_t count;
    kiln_st_meta *meta;
    size_t nmeta;
    char *strings;
    void *dequantized;
} kiln_gguf_contents;

/* The types of metadata values. */
enum {
    KILN_GGUF_U8, KILN_GGUF_I8, KILN_GGUF_U16, KILN_GGUF_I16, KILN_GGUF_U32, KILN_GGUF_I32, KILN_GGUF_F32,
    KILN_GGUF_BOOL, KILN_GGUF_STRING, KILN_GGUF_ARRAY, KILN_GGUF_U64, KILN_GGUF_I64, KILN_GGUF_F64,
    KILN_GGUF_TYPE_COUNT
};

/* One metadata value as stored: a scalar (count 1) or an array's elements
 * (of `type`, never KILN_GGUF_ARRAY), little-endian at `data`, a string
 * as its u64 length then its bytes. */
typedef struct kiln_gguf_value {
    uint32_t type;
    bool array;
    uint64_t count;
    const uint8_t *data;
} kiln_gguf_value;

/* Finds metadata `key` in the GGUF image at `data` (checked as
 * kiln_gguf_read checks a header); *found false when it is not there. For
 * what a file carries besides its tensors (a T5's tokenizer), without
 * reading the tensors. */
kiln_status kiln_gguf_find(const uint8_t *data, size_t size, const char *label, const char *key,
                           kiln_gguf_value *out, bool *found);

/* True when the bytes begin as a GGUF file does. */
bool kiln_gguf_magic(const void *data, size_t size);

/* Reads the GGUF image at `data`, which must outlive the views in the
 * result; `label` names it in errors. Errors: KILN_ERR_FORMAT (anything
 * wrong in the file), KILN_ERR_UNSUPPORTED (a version, byte order or tensor
 * type kiln does not read), KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_gguf_read(const uint8_t *data, size_t size, const char *label, kiln_gguf_contents *out);
void kiln_gguf_free(kiln_gguf_contents *c);

/* The block of `type` (a GGML type number): elements per block and bytes
 * per block; false for types kiln cannot read. Its name ("Q4_K") for
 * messages, "type N" when unknown. */
bool kiln_gguf_block(uint32_t type, int *elements, int *bytes);
const char *kiln_gguf_type_name(uint32_t type);

#endif
