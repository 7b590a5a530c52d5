/* Tensor descriptors and element types.
 *
 * A tensor is a view: dtype, up to 4 dims (row-major, contiguous, outermost
 * first as in PyTorch: N C H W), and a place in a backend buffer. It owns
 * nothing; buffers are owned by whoever allocated them (a backend, the
 * activation arena, a loaded checkpoint). */
#ifndef KILN_TENSOR_H
#define KILN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KILN_MAX_DIMS 4

typedef enum kiln_dtype {
    KILN_F32,
    KILN_F16,
    KILN_BF16,
    KILN_F8_E4M3,
    KILN_F8_E5M2,
    KILN_I32,
    KILN_I64,
    KILN_U8,
    /* GGML's block-quantized types (runtime/quant.h): weights from GGUF files */
    KILN_Q4_0,
    KILN_Q4_1,
    KILN_Q5_0,
    KILN_Q5_1,
    KILN_Q8_0,
    KILN_Q2_K,
    KILN_Q3_K,
    KILN_Q4_K,
    KILN_Q5_K,
    KILN_Q6_K,
    KILN_IQ4_NL,
    KILN_IQ4_XS,
    KILN_DTYPE_COUNT
} kiln_dtype;

/* Opaque per-backend storage (device memory, a host allocation, an mmap). */
typedef struct kiln_buffer kiln_buffer;

typedef struct kiln_tensor {
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    kiln_buffer *buffer; /* where the elements live */
    size_t offset;       /* bytes from the start of buffer */
} kiln_tensor;

/* Bytes of one element; 0 for the block-quantized types, whose sizes
 * kiln_dtype_bytes gives. */
size_t kiln_dtype_size(kiln_dtype dtype);
/* A block-quantized type: its elements come in blocks (runtime/quant.h). */
static inline bool kiln_dtype_is_quantized(kiln_dtype dtype) { return dtype >= KILN_Q4_0 && dtype < KILN_DTYPE_COUNT; }
/* Values per block: 32 or 256 for the quantized types, 1 for the others. */
int kiln_dtype_block(kiln_dtype dtype);
/* Bytes of n elements of `dtype`, n whole blocks' worth. */
size_t kiln_dtype_bytes(kiln_dtype dtype, size_t n);
/* "F32", "F16", … as safetensors spells them. */
const char *kiln_dtype_name(kiln_dtype dtype);
/* Parses a safetensors dtype name; false if unknown (or a quantized type's
 * name, which no safetensors file holds). */
bool kiln_dtype_from_name(const char *name, kiln_dtype *out);

int64_t kiln_tensor_numel(const kiln_tensor *t);
size_t kiln_tensor_nbytes(const kiln_tensor *t);
/* Formats the shape as "[2, 4, 8, 8]" into buf. */
const char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t size);

/* Scalar conversions used by every backend's reference path. */
static inline float kiln_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as numpy's astype(float16) does. */
static inline uint16_t kiln_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds past the largest half */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* half subnormals count units of 2^-24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = (absx >> 23) - 127 + 15;
    uint32_t m = absx & 0x7fffff;
    uint32_t q = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

static inline float kiln_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t kiln_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* fp8 e4m3fn: no infinities, 0x7f/0xff are NaN, bias 7. */
static inline float kiln_f8e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80) << 24;
    uint32_t exp = (v >> 3) & 0xf;
    uint32_t mant = v & 0x7;
    uint32_t bits;
    if (exp == 0xf && mant == 0x7) {
        bits = sign | 0x7fc00000u;
    } else if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            exp = 127 - 7 + 1;
            while (!(mant & 0x8)) { mant <<= 1; exp--; }
            mant &= 0x7;
            bits = sign | (exp << 23) | (mant << 20);
        }
    } else {
        bits = sign | ((exp + 127 - 7) << 23) | (mant << 20);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* fp8 e5m2: the top byte of an f16. */
static inline float kiln_f8e5m2_to_f32(uint8_t v) { return kiln_f16_to_f32((uint16_t)(v << 8)); }

float kiln_quant_load_f32(const void *data, kiln_dtype dtype, size_t i);

/* Element i of a weight array stored as `dtype`, widened to f32 (a quantized
 * type's by decoding its block: slow, for reference loops). */
static inline float kiln_load_f32(const void *data, kiln_dtype dtype, size_t i)
{
    switch (dtype) {
    case KILN_F32: return ((const float *)data)[i];
    case KILN_F16: return kiln_f16_to_f32(((const uint16_t *)data)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((const uint16_t *)data)[i]);
    case KILN_F8_E4M3: return kiln_f8e4m3_to_f32(((const uint8_t *)data)[i]);
    case KILN_F8_E5M2: return kiln_f8e5m2_to_f32(((const uint8_t *)data)[i]);
    case KILN_I32: return (float)((const int32_t *)data)[i];
    case KILN_I64: return (float)((const int64_t *)data)[i];
    case KILN_U8: return (float)((const uint8_t *)data)[i];
    default: return kiln_dtype_is_quantized(dtype) ? kiln_quant_load_f32(data, dtype, i) : 0.0f;
    }
}

/* Widens n elements of `dtype` to f32 (vectorised where the build targets
 * AVX2 and F16C); for a quantized type, n whole blocks from a block's start. */
void kiln_convert_to_f32(float *dst, const void *src, kiln_dtype dtype, size_t n);
/* Narrows n floats to F32, F16, BF16 or fp8, rounding to nearest even as
 * kiln_f32_to_f16 and kiln_f32_to_bf16 do (fp8 as PyTorch casts: e4m3fn
 * saturating at 448, e5m2 overflowing to inf), or quantizes whole blocks of them
 * to Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 (runtime/quant.h); other dtypes are not
 * written. */
void kiln_convert_from_f32(void *dst, const float *src, kiln_dtype dtype, size_t n);

#endif
