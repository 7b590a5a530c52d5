/* Widening and narrowing of weight dtypes (kiln_convert_to_f32,
 * kiln_convert_from_f32), vector paths and scalar tails alike, against the
 * formats' definitions written out with ldexp: every f16, bf16 and fp8 bit
 * pattern, and round-to-nearest-even narrowing of floats across f16's range. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "tensor.h"

/* IEEE binary16 by definition. */
static double f16_value(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = exp == 0 ? ldexp(mant, -24) : exp == 31 ? (mant ? NAN : INFINITY) : ldexp(1024 + mant, exp - 25);
    return sign ? -v : v;
}

/* OCP fp8 e4m3fn: bias 7, no infinities, S.1111.111 is NaN. */
static double e4m3_value(uint8_t b)
{
    int sign = b >> 7, exp = (b >> 3) & 0xf, mant = b & 7;
    double v = exp == 0 ? ldexp(mant, -9) : (exp == 15 && mant == 7) ? NAN : ldexp(8 + mant, exp - 10);
    return sign ? -v : v;
}

static void same_value(double want, float got, const char *what, unsigned bits)
{
    if (isnan(want) ? !isnan(got) : (double)got != want) fail_msg("%s 0x%x: %g, want %g", what, bits, got, want);
}

static void widening_every_pattern(void **state)
{
    (void)state;
    /* 65536 + 3 elements: the vector loop and a scalar tail */
    size_t n = 65539;
    uint16_t *h = malloc(n * sizeof *h);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) h[i] = (uint16_t)i;
    kiln_convert_to_f32(f, h, KILN_F16, n);
    for (size_t i = 0; i < n; i++) same_value(f16_value(h[i]), f[i], "f16", h[i]);
    kiln_convert_to_f32(f, h, KILN_BF16, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)h[i] << 16;
        float want;
        memcpy(&want, &bits, 4); /* bf16 is the top half of a float by definition */
        same_value(want, f[i], "bf16", h[i]);
    }
    uint8_t bytes[259];
    for (int i = 0; i < 259; i++) bytes[i] = (uint8_t)i;
    kiln_convert_to_f32(f, bytes, KILN_F8_E4M3, 259);
    for (int i = 0; i < 259; i++) same_value(e4m3_value(bytes[i]), f[i], "e4m3", bytes[i]);
    kiln_convert_to_f32(f, bytes, KILN_F8_E5M2, 259);
    for (int i = 0; i < 259; i++) same_value(f16_value((uint16_t)(bytes[i] << 8)), f[i], "e5m2", bytes[i]);
    free(h);
    free(f);
}

/* The f16 nearest to x, ties to the even pattern: a binary search over the
 * finite patterns, which grow with their value. From 65520 on, halfway to
 * what would be 65536, IEEE rounds to infinity. */
static uint16_t nearest_f16(float x)
{
    double a = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0) return sign | 0x7c00;
    uint32_t lo = 0, hi = 0x7bff;
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (f16_value((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo == 0x7bff) return sign | 0x7bff;
    double below = a - f16_value((uint16_t)lo), above = f16_value((uint16_t)(lo + 1)) - a;
    uint32_t p = below < above ? lo : above < below ? lo + 1 : (lo & 1) ? lo + 1 : lo;
    return (uint16_t)(sign | p);
}

static void narrowing_rounds_to_nearest_even(void **state)
{
    (void)state;
    size_t n = 4000 + 5;
    float *x = malloc(n * sizeof *x), *back = malloc(n * sizeof *back);
    uint16_t *h = malloc(n * sizeof *h);
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        /* magnitudes from f16's subnormals to past its largest value */
        x[i] = ldexpf((float)(seed >> 8) / 16777216.0f + 0.5f, (int)(seed % 46) - 28) * ((seed >> 7) & 1 ? -1 : 1);
    }
    /* exact ties, the largest half and the first value that rounds past it */
    x[0] = 1.0f + ldexpf(1, -11);
    x[1] = 1.0f + 3 * ldexpf(1, -11);
    x[2] = 65504.0f;
    x[3] = 65520.0f;
    x[4] = ldexpf(1, -25) * 3; /* a subnormal tie */
    kiln_convert_from_f32(h, x, KILN_F16, n);
    for (size_t i = 0; i < n; i++) {
        uint16_t want = nearest_f16(x[i]);
        if (h[i] != want) fail_msg("f16 of %.9g: 0x%04x, want 0x%04x", (double)x[i], h[i], want);
    }
    /* bf16: the nearest float with 16 low zero bits, ties to even */
    kiln_convert_from_f32(h, x, KILN_BF16, n);
    kiln_convert_to_f32(back, h, KILN_BF16, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        uint32_t down = bits & 0xffff0000u, up = down + 0x10000u, rest = bits & 0xffffu;
        uint32_t want = rest > 0x8000u || (rest == 0x8000u && (down & 0x10000u)) ? up : down;
        uint32_t got;
        memcpy(&got, &back[i], 4);
        if (got != want) fail_msg("bf16 of %.9g: 0x%08x, want 0x%08x", (double)x[i], got, want);
    }
    float y[3] = {1.5f, -2.25f, 3.0f}, z[3];
    kiln_convert_from_f32(z, y, KILN_F32, 3);
    assert_memory_equal(y, z, sizeof y);
    free(x);
    free(back);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(widening_every_pattern),
        cmocka_unit_test(narrowing_rounds_to_nearest_even),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
