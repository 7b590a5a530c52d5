/* Row and group normalisations on the CPU: group_norm (+SiLU), layer_norm,
 * rms_norm, ada_layer_norm and softmax, threaded over groups or rows. Means and variances are two-pass
 * sums in float64, as in the reference: a group of the VAE holds 16 x 64 x 64
 * values, where a float32 running sum would lose digits. */
#include <math.h>
#include <stdbool.h>

#include "cpu_backend.h"
#include "cpu_simd.h"
#include "status.h"

static double sum_f64(const float *x, size_t n)
{
    size_t i = 0;
    double sum = 0.0;
#ifdef KILN_CPU_AVX2
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
    }
    sum = cpu_hsum4d(_mm256_add_pd(a0, a1));
#endif
    for (; i < n; i++) sum += x[i];
    return sum;
}

/* sum of (x - mean)^2 */
static double squared_deviation_f64(const float *x, size_t n, double mean)
{
    size_t i = 0;
    double sum = 0.0;
#ifdef KILN_CPU_AVX2
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), m = _mm256_set1_pd(mean);
    for (; i + 8 <= n; i += 8) {
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), m);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), m);
        a0 = _mm256_fmadd_pd(d0, d0, a0);
        a1 = _mm256_fmadd_pd(d1, d1, a1);
    }
    sum = cpu_hsum4d(_mm256_add_pd(a0, a1));
#endif
    for (; i < n; i++) sum += (x[i] - mean) * (x[i] - mean);
    return sum;
}

/* y = (x - mean) * a + b; the difference is taken in float64 so a large mean
 * does not cost the deviation its low digits */
static void affine_span(const float *x, float *y, size_t n, double mean, float a, float b)
{
    for (size_t i = 0; i < n; i++) y[i] = (float)(x[i] - mean) * a + b;
}

/* y = (x - mean) * rstd * gamma + beta, gamma and beta per element */
static void affine_rows(const float *x, float *y, size_t n, double mean, float rstd, const float *gamma,
                        const float *beta)
{
    for (size_t i = 0; i < n; i++) y[i] = (float)(x[i] - mean) * rstd * gamma[i] + beta[i];
}

typedef struct norm_job {
    const void *p;
    const float *x;
    kiln_weight_ptr gamma, beta;
    float *y;
    /* the row norms: rows of D, their affine widened once per op, gamma and
     * beta (NULL: none) rows of D each shared by rows_per_affine rows (all
     * of them for layer and RMS norm, a batch element's tokens for adaLN) */
    int D;
    float eps;
    bool centre; /* subtract the mean (layer norms) or not (RMS norm) */
    int64_t rows_per_affine;
    const float *gamma_f32, *beta_f32;
} norm_job;

static void group_norm_groups(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const norm_job *j = ctx;
    const kiln_group_norm_params *p = j->p;
    int cpg = p->C / p->groups;
    size_t count = (size_t)cpg * p->HW;
    for (int64_t t = begin; t < end; t++) {
        int n = (int)(t / p->groups), g = (int)(t % p->groups);
        size_t base = ((size_t)n * p->C + (size_t)g * cpg) * p->HW;
        double mean = sum_f64(j->x + base, count) / (double)count;
        double var = squared_deviation_f64(j->x + base, count, mean) / (double)count;
        float rstd = (float)(1.0 / sqrt(var + p->eps));
        for (int c = 0; c < cpg; c++) {
            int ch = g * cpg + c;
            size_t at = base + (size_t)c * p->HW;
            float ga = kiln_load_f32(j->gamma.data, j->gamma.dtype, (size_t)ch);
            float be = kiln_load_f32(j->beta.data, j->beta.dtype, (size_t)ch);
            affine_span(j->x + at, j->y + at, (size_t)p->HW, mean, rstd * ga, be);
            if (p->silu) cpu_sigmoid_gate_span(j->y + at, j->y + at, (size_t)p->HW, 1.0f, 0.0f);
        }
    }
}

// x (N,C,HW): mean and variance over each group of C/groups channels
void cpu_group_norm(cpu_state *s, const kiln_group_norm_params *p, const float *x, kiln_weight_ptr gamma,
                    kiln_weight_ptr beta, float *y)
{
    norm_job j = {.p = p, .x = x, .gamma = gamma, .beta = beta, .y = y};
    int64_t group_size = (int64_t)(p->C / p->groups) * p->HW;
    cpu_parallel_for(s->pool, (int64_t)p->N * p->groups, 1 + 16384 / group_size, group_norm_groups, &j);
}

static void normalise_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const norm_job *j = ctx;
    size_t D = (size_t)j->D;
    for (int64_t m = begin; m < end; m++) {
        const float *row = j->x + (size_t)m * D;
        float *out = j->y + (size_t)m * D;
        double mean = j->centre ? sum_f64(row, D) / (double)D : 0.0;
        double var = squared_deviation_f64(row, D, mean) / (double)D;
        float rstd = (float)(1.0 / sqrt(var + j->eps));
        size_t set = (size_t)(m / j->rows_per_affine) * D;
        const float *gamma = j->gamma_f32 + set;
        if (j->beta_f32)
            affine_rows(row, out, D, mean, rstd, gamma, j->beta_f32 + set);
        else
            for (size_t d = 0; d < D; d++) out[d] = (float)(row[d] - mean) * rstd * gamma[d];
    }
}

static void run_row_norm(cpu_state *s, norm_job *j, int64_t rows)
{
    cpu_parallel_for(s->pool, rows, 1 + 16384 / j->D, normalise_rows, j);
}

// x (M,D) normalised over D
kiln_status cpu_layer_norm(cpu_state *s, const kiln_layer_norm_params *p, const float *x, kiln_weight_ptr gamma,
                           kiln_weight_ptr beta, float *y)
{
    TRY(cpu_scratch_reserve(s, 2 * (size_t)p->D, 0));
    cpu_widen(s->shared, gamma, 0, (size_t)p->D);
    cpu_widen(s->shared + p->D, beta, 0, (size_t)p->D);
    norm_job j = {.x = x, .y = y, .D = p->D, .eps = p->eps, .centre = true, .rows_per_affine = p->M,
                  .gamma_f32 = s->shared, .beta_f32 = s->shared + p->D};
    run_row_norm(s, &j, p->M);
    return KILN_OK;
}

// x (M,D) scaled by its reciprocal root mean square over D, times gamma
kiln_status cpu_rms_norm(cpu_state *s, const kiln_rms_norm_params *p, const float *x, kiln_weight_ptr gamma,
                         float *y)
{
    TRY(cpu_scratch_reserve(s, (size_t)p->D, 0));
    cpu_widen(s->shared, gamma, 0, (size_t)p->D);
    norm_job j = {.x = x, .y = y, .D = p->D, .eps = p->eps, .centre = false, .rows_per_affine = p->M,
                  .gamma_f32 = s->shared};
    run_row_norm(s, &j, p->M);
    return KILN_OK;
}

// x (B,T,C): a layer norm whose gamma is 1 + mod[b,scale] + table[scale] and
// beta mod[b,shift] + table[shift], one pair per batch element, summed here
// once so the rows read them as a plain affine
kiln_status cpu_ada_layer_norm(cpu_state *s, const kiln_ada_layer_norm_params *p, const float *x,
                               const float *mod, kiln_weight_ptr table, float *y)
{
    size_t B = (size_t)p->B, C = (size_t)p->C, K = (size_t)p->K;
    TRY(cpu_scratch_reserve(s, 2 * (B + 1) * C, 0));
    float *scale = s->shared, *shift = scale + B * C;          /* (B,C) each */
    float *table_scale = shift + B * C, *table_shift = table_scale + C; /* (C) each */
    if (table.data) {
        cpu_widen(table_scale, table, (size_t)p->scale * C, C);
        cpu_widen(table_shift, table, (size_t)p->shift * C, C);
    } else {
        for (size_t c = 0; c < 2 * C; c++) table_scale[c] = 0.0f;
    }
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) {
            scale[b * C + c] = 1.0f + (mod[(b * K + (size_t)p->scale) * C + c] + table_scale[c]);
            shift[b * C + c] = mod[(b * K + (size_t)p->shift) * C + c] + table_shift[c];
        }
    norm_job j = {.x = x, .y = y, .D = p->C, .eps = p->eps, .centre = true, .rows_per_affine = p->T,
                  .gamma_f32 = scale, .beta_f32 = shift};
    run_row_norm(s, &j, (int64_t)B * p->T);
    return KILN_OK;
}

static void softmax_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const norm_job *j = ctx;
    const kiln_softmax_params *p = j->p;
    for (int64_t m = begin; m < end; m++) {
        const float *row = j->x + (size_t)m * p->N;
        float *out = j->y + (size_t)m * p->N;
        for (int n = 0; n < p->N; n++) out[n] = row[n];
        float inv = 1.0f / cpu_exp_span(out, (size_t)p->N, cpu_max_span(row, (size_t)p->N));
        for (int n = 0; n < p->N; n++) out[n] *= inv;
    }
}

// x (M,N) -> y (M,N), softmax over each row
void cpu_softmax(cpu_state *s, const kiln_softmax_params *p, const float *x, float *y)
{
    norm_job j = {.p = p, .x = x, .y = y};
    cpu_parallel_for(s->pool, p->M, 1 + 16384 / p->N, softmax_rows, &j);
}
