/* Vector helpers for the CPU fast paths, compiled only where the build
 * targets AVX2 and FMA (-march=native on such a CPU); every caller keeps a
 * scalar loop for the elements after the last full vector and for other CPUs. */
#ifndef KILN_CPU_SIMD_H
#define KILN_CPU_SIMD_H

#include <stddef.h>
#include <math.h>

#if defined(__AVX2__) && defined(__FMA__)
#define KILN_CPU_AVX2 1
#include <immintrin.h>

/* exp(x) for 8 floats, within about 2 ulp of expf: x = n ln2 + r with
 * |r| <= ln2/2, then 2^n times a degree-6 polynomial in r (Cephes' expf
 * coefficients). Inputs are clamped to the range where the result is a normal
 * float, so very negative x gives ~1e-38 rather than 0. */
static inline __m256 cpu_exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365f)), _mm256_set1_ps(88.3762f));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    /* ln2 split in two so n * ln2_hi is exact */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline float cpu_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float cpu_hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline double cpu_hsum4d(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#endif

/* x[0..n) = exp(x - shift); returns their sum */
static inline float cpu_exp_span(float *x, size_t n, float shift)
{
    size_t i = 0;
    float sum = 0.0f;
#ifdef KILN_CPU_AVX2
    __m256 acc = _mm256_setzero_ps(), s8 = _mm256_set1_ps(shift);
    for (; i + 8 <= n; i += 8) {
        __m256 e = cpu_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s8));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    sum = cpu_hsum8(acc);
#endif
    for (; i < n; i++) sum += (x[i] = expf(x[i] - shift));
    return sum;
}

static inline float cpu_max_span(const float *x, size_t n)
{
    size_t i = 0;
    float mx = -INFINITY;
#ifdef KILN_CPU_AVX2
    if (n >= 8) {
        __m256 m8 = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
        mx = cpu_hmax8(m8);
    }
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

/* y[i] = x[i] * sigmoid(k x[i] + k3 x[i]^3) over n elements: SiLU for
 * (1, 0), CLIP's quick GELU for (1.702, 0), and the tanh GELU for
 * 2 sqrt(2/pi) (1, 0.044715), since 0.5 (1 + tanh(u)) = sigmoid(2u); x and y
 * may be the same array */
static inline void cpu_sigmoid_gate_span(const float *x, float *y, size_t n, float k, float k3)
{
    size_t i = 0;
#ifdef KILN_CPU_AVX2
    __m256 one = _mm256_set1_ps(1.0f), negk = _mm256_set1_ps(-k), negk3 = _mm256_set1_ps(-k3);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 slope = _mm256_fmadd_ps(_mm256_mul_ps(v, v), negk3, negk); /* -(k + k3 v^2) */
        __m256 e = cpu_exp8(_mm256_mul_ps(v, slope));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
#endif
    for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-(k + k3 * x[i] * x[i]) * x[i]));
}

#endif
