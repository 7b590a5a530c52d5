/* torch's CPU generator and torch.randn, reproduced bit for bit.
 *
 * Floating-point contraction matters here: the AVX2 build of torch was
 * compiled by GCC with FMA contraction on, so some multiply-adds of its
 * log/sincos polynomials are fused and others are not. Every fused step is
 * written below as an explicit fmaf(); everything else must round after each
 * operation, so no compiler may contract this file on its own. GCC does not
 * in ISO C mode (-std=c17); clang needs the pragma. */
#include "rng.h"

#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define MT_N 624
#define MT_M 397

void kiln_rng_seed(kiln_rng *rng, uint64_t seed)
{
    rng->mt[0] = (uint32_t)seed;
    for (uint32_t i = 1; i < MT_N; i++)
        rng->mt[i] = 1812433253u * (rng->mt[i - 1] ^ (rng->mt[i - 1] >> 30)) + i;
    rng->mt_index = MT_N;
    rng->has_cached_normal = false;
    rng->cached_normal = 0.0;
    rng->kernel = KILN_RANDN_AVX2;
}

static void mt_regenerate(kiln_rng *rng)
{
    for (int k = 0; k < MT_N; k++) {
        uint32_t y = (rng->mt[k] & 0x80000000u) | (rng->mt[(k + 1) % MT_N] & 0x7fffffffu);
        rng->mt[k] = rng->mt[(k + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    rng->mt_index = 0;
}

static uint32_t mt_next(kiln_rng *rng)
{
    if (rng->mt_index >= MT_N) mt_regenerate(rng);
    uint32_t y = rng->mt[rng->mt_index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t kiln_rng_randint(kiln_rng *rng, uint64_t high)
{
    if (high < (1u << 28)) return mt_next(rng) % high;
    const uint64_t first = mt_next(rng);
    return (first << 32 | mt_next(rng)) % high;
}

/* uniform_real_distribution<float>(0, 1): the low 24 bits of one draw. */
static float uniform_f32(kiln_rng *rng)
{
    return (float)(mt_next(rng) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>(0, 1): the low 53 bits of a 64-bit value
 * whose high half is the first draw. */
static double uniform_f64(kiln_rng *rng)
{
    uint64_t hi = mt_next(rng);
    uint64_t lo = mt_next(rng);
    uint64_t bits = (hi << 32) | lo;
    return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* normal_distribution<double>, torch's scalar path for fewer than 16 values. */
static double normal_f64(kiln_rng *rng)
{
    if (rng->has_cached_normal) {
        rng->has_cached_normal = false;
        return rng->cached_normal;
    }
    double u1 = uniform_f64(rng);
    double u2 = uniform_f64(rng);
    double radius = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    rng->cached_normal = radius * sin(theta);
    rng->has_cached_normal = true;
    return radius * cos(theta);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The AVX2 kernel's natural log (cephes logf polynomial, one lane). */
static float avx2_log(float x)
{
    static const float p[9] = {7.0376836292e-2f,  -1.1514610310e-1f, 1.1676998740e-1f,
                               -1.2420140846e-1f, 1.4249322787e-1f,  -1.6668057665e-1f,
                               2.0000714765e-1f,  -2.4999993993e-1f, 3.3333331174e-1f};
    /* u1 lies in (0, 1], so no NaN or denormal handling is ever exercised */
    int32_t exponent = (int32_t)(f32_bits(x) >> 23) - 0x7f;
    x = f32_from_bits((f32_bits(x) & 0x807fffffu) | f32_bits(0.5f)); /* mantissa in [0.5, 1) */
    float e = (float)exponent + 1.0f;
    bool small = x < 0.707106781186547524f;
    float x_if_small = small ? x : 0.0f;
    x = x - 1.0f;
    e = e - (small ? 1.0f : 0.0f);
    x = x + x_if_small;
    float z = x * x;
    float y = p[0];
    for (int k = 1; k < 9; k++) y = fmaf(y, x, p[k]);
    y = y * x;
    float e_q1 = e * -2.12194440e-4f;
    y = fmaf(y, z, e_q1);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    return fmaf(e, 0.693359375f, x);
}

/* The AVX2 kernel's sin and cos of one lane (cephes sinf/cosf with the
 * octant reduction). */
static void avx2_sincos(float x, float *sin_out, float *cos_out)
{
    uint32_t sign_sin = f32_bits(x) & 0x80000000u;
    x = fabsf(x);
    float y = x * 1.27323954473516f; /* 4 / pi */
    int32_t j = (int32_t)y;
    j = (j + 1) & ~1;
    y = (float)j;
    uint32_t swap_sign_sin = (uint32_t)(j & 4) << 29;
    uint32_t sign_cos = ((uint32_t)~(j - 2) & 4u) << 29;
    bool sin_poly_is_sin = (j & 2) == 0;
    /* x - y * pi/4 in three parts, each fused */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    sign_sin ^= swap_sign_sin;
    float z = x * x;

    float c = 2.443315711809948e-5f;
    c = fmaf(c, z, -1.388731625493765e-3f);
    c = fmaf(c, z, 4.166664568298827e-2f);
    c = c * z;
    float half_z = z * 0.5f;
    c = fmaf(c, z, -half_z);
    c = c + 1.0f;

    float s = -1.9515295891e-4f;
    s = fmaf(s, z, 8.3321608736e-3f);
    s = fmaf(s, z, -1.6666654611e-1f);
    s = s * z;
    s = fmaf(s, x, x);

    float sin_v = sin_poly_is_sin ? s : c;
    float cos_v = sin_poly_is_sin ? c : s;
    *sin_out = f32_from_bits(f32_bits(sin_v) ^ sign_sin);
    *cos_out = f32_from_bits(f32_bits(cos_v) ^ sign_cos);
}

/* Box–Muller over 16 uniforms in place: pairs (j, j + 8). */
static void normal_fill_16(float *data, kiln_randn_kernel kernel)
{
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - data[j]; /* [0, 1) -> (0, 1] for the log */
        float u2 = data[j + 8];
        if (kernel == KILN_RANDN_AVX2) {
            float radius = sqrtf(-2.0f * avx2_log(u1));
            float theta = (float)(2.0 * 3.14159265358979323846) * u2;
            float s, c;
            avx2_sincos(theta, &s, &c);
            data[j] = radius * c;
            data[j + 8] = radius * s;
        } else {
            float radius = sqrtf(-2.0f * logf(u1));
            float theta = (float)(2.0 * 3.14159265358979323846 * (double)u2);
            data[j] = radius * cosf(theta);
            data[j + 8] = radius * sinf(theta);
        }
    }
}

void kiln_rng_randn(kiln_rng *rng, float *out, size_t n)
{
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(rng);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(rng);
    for (size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i, rng->kernel);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(rng);
        normal_fill_16(tail, rng->kernel);
    }
}

void kiln_rng_randn_indexed(kiln_rng *rng, const int *index, int batch, size_t per_image, float *out, float *draw)
{
    int last = 0;
    for (int b = 0; b < batch; b++) last = index[b] > last ? index[b] : last;
    for (int i = 0; i <= last; i++) {
        kiln_rng_randn(rng, draw, per_image);
        for (int b = 0; b < batch; b++)
            if (index[b] == i) memcpy(out + (size_t)b * per_image, draw, per_image * sizeof *out);
    }
}
