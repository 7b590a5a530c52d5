#include "quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define QK_K 256

static float half_at(const uint8_t *p) { return kiln_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Each block's values in the order of the reference (ggml's dequantize_row_*),
 * every product in the same order so that f32 results match it bit for bit. */

static void dequantize_q4_0(const uint8_t *b, float *x)
{
    const float d = half_at(b);
    for (int j = 0; j < 16; j++) {
        x[j] = (float)((b[2 + j] & 15) - 8) * d;
        x[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void dequantize_q4_1(const uint8_t *b, float *x)
{
    const float d = half_at(b), m = half_at(b + 2);
    for (int j = 0; j < 16; j++) {
        x[j] = d * (float)(b[4 + j] & 15) + m;
        x[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

static uint32_t u32_at(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Q5: the low four bits as Q4's, the fifth of value j in bit j of qh. */
static void dequantize_q5_0(const uint8_t *b, float *x)
{
    const float d = half_at(b);
    const uint32_t qh = u32_at(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        x[j] = (float)(((qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16) * d;
        x[j + 16] = (float)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16) * d;
    }
}

static void dequantize_q5_1(const uint8_t *b, float *x)
{
    const float d = half_at(b), m = half_at(b + 2);
    const uint32_t qh = u32_at(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        x[j] = d * (float)((qs[j] & 15) | ((qh >> j) & 1) << 4) + m;
        x[j + 16] = d * (float)((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) + m;
    }
}

static void dequantize_q8_0(const uint8_t *b, float *x)
{
    const float d = half_at(b);
    for (int j = 0; j < 32; j++) x[j] = (float)(int8_t)b[2 + j] * d;
}

/* K-quants: 256 values in sub-blocks of 16 or 32, each with its own scale
 * (and minimum) quantized against the block's f16 d (and dmin). */

static void dequantize_q2_k(const uint8_t *b, float *x)
{
    const uint8_t *scales = b, *qs = b + 16;
    const float d = half_at(b + 80), dmin = half_at(b + 82);
    for (int e = 0; e < QK_K; e++) {
        const int half = e / 128, r = e % 128;
        const int q = (qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
        const uint8_t s = scales[e / 16];
        x[e] = d * (float)(s & 15) * (float)q - dmin * (float)(s >> 4);
    }
}

static void dequantize_q3_k(const uint8_t *b, float *x)
{
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    const float d = half_at(b + 108);
    for (int e = 0; e < QK_K; e++) {
        const int half = e / 128, r = e % 128, s = r / 32, l = r % 32;
        const int low = (qs[half * 32 + l] >> (2 * s)) & 3;
        const int q = low - (((hmask[l] >> (half * 4 + s)) & 1) ? 0 : 4);
        const int sb = e / 16;
        const int scale_low = sb < 8 ? sc[sb] & 15 : sc[sb - 8] >> 4;
        const int scale_high = (sc[8 + sb % 4] >> (2 * (sb / 4))) & 3;
        x[e] = d * (float)((scale_low | scale_high << 4) - 32) * (float)q;
    }
}

/* Q4_K/Q5_K's eight 6-bit scales and minimums packed into 12 bytes. */
static void scale_min_k4(const uint8_t *s, int sb, int *scale, int *min)
{
    if (sb < 4) {
        *scale = s[sb] & 63;
        *min = s[sb + 4] & 63;
    } else {
        *scale = (s[sb + 4] & 15) | ((s[sb - 4] >> 6) << 4);
        *min = (s[sb + 4] >> 4) | ((s[sb] >> 6) << 4);
    }
}

static void dequantize_q4_k(const uint8_t *b, float *x)
{
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *qs = b + 16;
    for (int sb = 0; sb < 8; sb++) {
        int scale, min;
        scale_min_k4(b + 4, sb, &scale, &min);
        const float dl = d * (float)scale, ml = dmin * (float)min;
        for (int l = 0; l < 32; l++) x[sb * 32 + l] = dl * (float)((qs[sb / 2 * 32 + l] >> (4 * (sb % 2))) & 15) - ml;
    }
}

static void dequantize_q5_k(const uint8_t *b, float *x)
{
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int sb = 0; sb < 8; sb++) {
        int scale, min;
        scale_min_k4(b + 4, sb, &scale, &min);
        const float dl = d * (float)scale, ml = dmin * (float)min;
        for (int l = 0; l < 32; l++) {
            const int q = ((qs[sb / 2 * 32 + l] >> (4 * (sb % 2))) & 15) | ((qh[l] >> sb) & 1) << 4;
            x[sb * 32 + l] = dl * (float)q - ml;
        }
    }
}

static void dequantize_q6_k(const uint8_t *b, float *x)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    const float d = half_at(b + 208);
    for (int e = 0; e < QK_K; e++) {
        const int half = e / 128, r = e % 128;
        const int low = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 15;
        const int high = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
        x[e] = d * (float)scales[e / 16] * (float)((low | high << 4) - 32);
    }
}

/* IQ4: 4-bit indices into a fixed table of values spaced for normally
 * distributed weights; NL in blocks of 32 with one scale, XS in blocks of
 * 256 with 6-bit scales per 32. */
static const int8_t iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void dequantize_iq4_nl(const uint8_t *b, float *x)
{
    const float d = half_at(b);
    for (int j = 0; j < 16; j++) {
        x[j] = d * (float)iq4_values[b[2 + j] & 15];
        x[j + 16] = d * (float)iq4_values[b[2 + j] >> 4];
    }
}

static void dequantize_iq4_xs(const uint8_t *b, float *x)
{
    const float d = half_at(b);
    const unsigned scales_high = (unsigned)(b[2] | b[3] << 8);
    const uint8_t *scales_low = b + 4, *qs = b + 8;
    for (int sb = 0; sb < 8; sb++) {
        const int scale = (((scales_low[sb / 2] >> (4 * (sb % 2))) & 15) | ((scales_high >> (2 * sb)) & 3) << 4) - 32;
        const float dl = d * (float)scale;
        for (int l = 0; l < 32; l++) x[sb * 32 + l] = dl * (float)iq4_values[(qs[sb * 16 + l % 16] >> (4 * (l / 16))) & 15];
    }
}

typedef struct quant_type {
    int elements, bytes;
    void (*dequantize)(const uint8_t *block, float *out);
} quant_type;

static const quant_type quant_types[KILN_DTYPE_COUNT] = {
    [KILN_Q4_0] = {32, 18, dequantize_q4_0},       [KILN_Q4_1] = {32, 20, dequantize_q4_1},
    [KILN_Q5_0] = {32, 22, dequantize_q5_0},       [KILN_Q5_1] = {32, 24, dequantize_q5_1},
    [KILN_Q8_0] = {32, 34, dequantize_q8_0},       [KILN_Q2_K] = {QK_K, 84, dequantize_q2_k},
    [KILN_Q3_K] = {QK_K, 110, dequantize_q3_k},    [KILN_Q4_K] = {QK_K, 144, dequantize_q4_k},
    [KILN_Q5_K] = {QK_K, 176, dequantize_q5_k},    [KILN_Q6_K] = {QK_K, 210, dequantize_q6_k},
    [KILN_IQ4_NL] = {32, 18, dequantize_iq4_nl},   [KILN_IQ4_XS] = {QK_K, 136, dequantize_iq4_xs},
};

bool kiln_quant_block(kiln_dtype dtype, int *elements, int *bytes)
{
    if ((unsigned)dtype >= KILN_DTYPE_COUNT || !quant_types[dtype].dequantize) return false;
    *elements = quant_types[dtype].elements;
    *bytes = quant_types[dtype].bytes;
    return true;
}

void kiln_dequantize(kiln_dtype dtype, const void *src, float *dst, size_t blocks)
{
    const quant_type *q = &quant_types[dtype];
    const uint8_t *b = src;
    for (size_t i = 0; i < blocks; i++) q->dequantize(b + i * (size_t)q->bytes, dst + i * (size_t)q->elements);
}

float kiln_quant_load_f32(const void *data, kiln_dtype dtype, size_t i)
{
    const quant_type *q = &quant_types[dtype];
    float block[QK_K];
    q->dequantize((const uint8_t *)data + i / (size_t)q->elements * (size_t)q->bytes, block);
    return block[i % (size_t)q->elements];
}

/* ggml's reference quantizers (quantize_row_*_ref), in gguf-py's float32
 * operations and their order, so that both give the same bytes. Q4_0/Q5_0
 * scale by the value of largest magnitude (the first, in a tie) so that it
 * maps to -8 or -16; Q4_1/Q5_1 span min..max; Q8_0 maps the largest
 * magnitude to 127. */

/* The block's value of largest magnitude, sign kept. */
static float signed_max(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void put_half(uint8_t *b, float v)
{
    const uint16_t h = kiln_f32_to_f16(v);
    memcpy(b, &h, 2);
}

/* Value j's code, q = trunc(x * id + offset) clipped to 0..top, packed as
 * the dequantizers read it: low nibbles for 0..15, high for 16..31, and for
 * five bits the fifth of value j in bit j of qh. */
static void pack_codes(const float *x, float id, float sub, float offset, uint32_t top, uint8_t *qs, uint8_t *qh)
{
    uint32_t high = 0;
    memset(qs, 0, 16);
    for (int j = 0; j < 32; j++) {
        float t = truncf((x[j] - sub) * id + offset);
        uint32_t q = t < 0.0f ? 0 : t > (float)top ? top : (uint32_t)t;
        qs[j % 16] |= (uint8_t)((q & 15) << (4 * (j / 16)));
        high |= (q >> 4 & 1) << j;
    }
    if (qh) memcpy(qh, &high, 4); /* little-endian, as the file */
}

static void quantize_q4_0(const float *x, uint8_t *b)
{
    const float d = signed_max(x) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    pack_codes(x, id, 0.0f, 8.5f, 15, b + 2, NULL);
}

static void quantize_q5_0(const float *x, uint8_t *b)
{
    const float d = signed_max(x) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    pack_codes(x, id, 0.0f, 16.5f, 31, b + 6, b + 2);
}

/* Q4_1 and Q5_1: d over the span in `levels` steps, the minimum as m. */
static void quantize_span(const float *x, float levels, uint32_t top, uint8_t *b, uint8_t *qs, uint8_t *qh)
{
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) {
        min = fminf(min, x[j]);
        max = fmaxf(max, x[j]);
    }
    const float d = (max - min) / levels, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    put_half(b + 2, min);
    pack_codes(x, id, min, 0.5f, top, qs, qh);
}

static void quantize_q4_1(const float *x, uint8_t *b) { quantize_span(x, 15.0f, 15, b, b + 4, NULL); }
static void quantize_q5_1(const float *x, uint8_t *b) { quantize_span(x, 31.0f, 31, b, b + 8, b + 4); }

static void quantize_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

bool kiln_quantize(kiln_dtype dtype, const float *src, void *dst, size_t blocks)
{
    static void (*const quantizers[KILN_DTYPE_COUNT])(const float *, uint8_t *) = {
        [KILN_Q4_0] = quantize_q4_0, [KILN_Q4_1] = quantize_q4_1, [KILN_Q5_0] = quantize_q5_0,
        [KILN_Q5_1] = quantize_q5_1, [KILN_Q8_0] = quantize_q8_0,
    };
    if ((unsigned)dtype >= KILN_DTYPE_COUNT || !quantizers[dtype]) return false;
    const quant_type *q = &quant_types[dtype];
    uint8_t *b = dst;
    for (size_t i = 0; i < blocks; i++) quantizers[dtype](src + i * 32, b + i * (size_t)q->bytes);
    return true;
}
