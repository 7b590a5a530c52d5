#include "tensor.h"

#include <math.h>
#include <stdio.h>

#include "cpu_simd.h"
#include "quant.h"

static const struct { const char *name; size_t size; } dtype_info[KILN_DTYPE_COUNT] = {
    [KILN_F32] = {"F32", 4},    [KILN_F16] = {"F16", 2},         [KILN_BF16] = {"BF16", 2},
    [KILN_F8_E4M3] = {"F8_E4M3", 1}, [KILN_F8_E5M2] = {"F8_E5M2", 1}, [KILN_I32] = {"I32", 4},
    [KILN_I64] = {"I64", 8},    [KILN_U8] = {"U8", 1},
    [KILN_Q4_0] = {"Q4_0", 0},  [KILN_Q4_1] = {"Q4_1", 0},       [KILN_Q5_0] = {"Q5_0", 0},
    [KILN_Q5_1] = {"Q5_1", 0},  [KILN_Q8_0] = {"Q8_0", 0},       [KILN_Q2_K] = {"Q2_K", 0},
    [KILN_Q3_K] = {"Q3_K", 0},  [KILN_Q4_K] = {"Q4_K", 0},       [KILN_Q5_K] = {"Q5_K", 0},
    [KILN_Q6_K] = {"Q6_K", 0},  [KILN_IQ4_NL] = {"IQ4_NL", 0},   [KILN_IQ4_XS] = {"IQ4_XS", 0},
};

size_t kiln_dtype_size(kiln_dtype dtype) { return dtype < KILN_DTYPE_COUNT ? dtype_info[dtype].size : 0; }

int kiln_dtype_block(kiln_dtype dtype)
{
    int elements, bytes;
    return kiln_quant_block(dtype, &elements, &bytes) ? elements : 1;
}

size_t kiln_dtype_bytes(kiln_dtype dtype, size_t n)
{
    int elements, bytes;
    if (kiln_quant_block(dtype, &elements, &bytes)) return n / (size_t)elements * (size_t)bytes;
    return n * kiln_dtype_size(dtype);
}

const char *kiln_dtype_name(kiln_dtype dtype) { return dtype < KILN_DTYPE_COUNT ? dtype_info[dtype].name : "?"; }

bool kiln_dtype_from_name(const char *name, kiln_dtype *out)
{
    for (int i = 0; i < KILN_DTYPE_COUNT; i++) {
        if (!kiln_dtype_is_quantized((kiln_dtype)i) && strcmp(name, dtype_info[i].name) == 0) {
            *out = (kiln_dtype)i;
            return true;
        }
    }
    return false;
}

int64_t kiln_tensor_numel(const kiln_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t kiln_tensor_nbytes(const kiln_tensor *t) { return kiln_dtype_bytes(t->dtype, (size_t)kiln_tensor_numel(t)); }

const char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

void kiln_convert_to_f32(float *dst, const void *src, kiln_dtype dtype, size_t n)
{
    size_t i = 0;
    switch (dtype) {
    case KILN_F32: memcpy(dst, src, n * sizeof *dst); return;
    case KILN_F16: {
        const uint16_t *h = src;
#if defined(KILN_CPU_AVX2) && defined(__F16C__)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
        for (; i < n; i++) dst[i] = kiln_f16_to_f32(h[i]);
        return;
    }
    case KILN_BF16: {
        const uint16_t *b = src;
#ifdef KILN_CPU_AVX2
        for (; i + 8 <= n; i += 8) {
            __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
        }
#endif
        for (; i < n; i++) dst[i] = kiln_bf16_to_f32(b[i]);
        return;
    }
    case KILN_F8_E4M3:
    case KILN_F8_E5M2: { /* 256 possible values: a table beats decoding each */
        float table[256];
        for (int v = 0; v < 256; v++) {
            uint8_t byte = (uint8_t)v;
            table[v] = kiln_load_f32(&byte, dtype, 0);
        }
        const uint8_t *q = src;
        for (; i < n; i++) dst[i] = table[q[i]];
        return;
    }
    default:
        if (kiln_dtype_is_quantized(dtype)) {
            kiln_dequantize(dtype, src, dst, n / (size_t)kiln_dtype_block(dtype));
            return;
        }
        for (; i < n; i++) dst[i] = kiln_load_f32(src, dtype, i);
        return;
    }
}

/* f32 to fp8 with `mant` mantissa bits and exponent bias `bias`, rounding to
 * nearest even as PyTorch's .to(torch.float8_*) does, and as it does past
 * the largest finite value: e4m3fn (no infinities) saturates at 448, e5m2
 * goes to inf. */
static uint8_t f32_to_f8(float f, int mant, int bias, bool e4m3fn)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    const uint8_t sign = (uint8_t)(bits >> 24 & 0x80);
    const uint32_t absx = bits & 0x7fffffff;
    const uint32_t top = e4m3fn ? 0x7e : 0x7b;
    if (absx > 0x7f800000u) return (uint8_t)(sign | 0x7f);
    uint32_t code;
    if (absx < (uint32_t)(127 + 1 - bias) << 23) { /* below the smallest normal: multiples of its 2^-mant */
        code = (uint32_t)nearbyintf(fabsf(f) * ldexpf(1.0f, bias - 1 + mant));
    } else {
        const int shift = 23 - mant;
        const uint32_t rounded = absx + ((1u << (shift - 1)) - 1) + ((absx >> shift) & 1);
        code = absx >= 0x7f800000u ? top + 1 : (rounded >> shift) - ((uint32_t)(127 - bias) << mant);
        if (code > top) code = e4m3fn ? top : 0x7c;
    }
    return (uint8_t)(sign | code);
}

void kiln_convert_from_f32(void *dst, const float *src, kiln_dtype dtype, size_t n)
{
    size_t i = 0;
    uint16_t *h = dst;
    switch (dtype) {
    case KILN_F32: memcpy(dst, src, n * sizeof *src); return;
    case KILN_F16:
#if defined(KILN_CPU_AVX2) && defined(__F16C__)
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; i < n; i++) h[i] = kiln_f32_to_f16(src[i]);
        return;
    case KILN_BF16:
        for (; i < n; i++) h[i] = kiln_f32_to_bf16(src[i]);
        return;
    case KILN_F8_E4M3:
    case KILN_F8_E5M2:
        for (; i < n; i++)
            ((uint8_t *)dst)[i] = dtype == KILN_F8_E4M3 ? f32_to_f8(src[i], 3, 7, true) : f32_to_f8(src[i], 2, 15, false);
        return;
    default:
        if (kiln_dtype_is_quantized(dtype)) kiln_quantize(dtype, src, dst, n / (size_t)kiln_dtype_block(dtype));
        return;
    }
}
