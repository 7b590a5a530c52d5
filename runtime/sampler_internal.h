/* What the sampler files share: one run's state, the calls into the
 * denoiser and the noise source, and the small updates every family of
 * samplers makes. Internal to sampler*.c. */
#ifndef KILN_SAMPLER_INTERNAL_H
#define KILN_SAMPLER_INTERNAL_H

#include <math.h>
#include <string.h>

#include "brownian.h"
#include "sampler.h"
#include "status.h"

#define WORKSPACE_BUFFERS 9 /* the most any sampler needs (sa_solver at order 6) */

typedef struct sampler_run {
    const kiln_sample_args *args;
    const float *sigmas; /* (steps + 1) */
    int steps;
    size_t n;
    kiln_noise_fn noise;
    void *noise_ctx;
    kiln_rng default_rng;            /* ancestral noise when args->noise is NULL */
    kiln_brownian_tree default_tree; /* SDE noise when args->noise is NULL */
} sampler_run;

static inline kiln_status denoise(sampler_run *r, const float *x, float sigma, float *denoised)
{
    return r->args->denoise(r->args->denoise_ctx, x, sigma, denoised);
}

static inline kiln_status draw_noise(sampler_run *r, float sigma, float sigma_next, float *noise)
{
    return r->noise(r->noise_ctx, sigma, sigma_next, noise, r->n);
}

/* A callback that stops the sampling gets its reason said: its own message,
 * if it set one, else which step it stopped at (never an earlier call's). */
static inline kiln_status report_step(sampler_run *r, int step, int total, const float *denoised)
{
    if (!r->args->progress) return KILN_OK;
    kiln_clear_error();
    kiln_status st = r->args->progress(r->args->progress_ctx, step, total, denoised);
    if (st == KILN_OK) return KILN_OK;
    if (*kiln_last_error()) return kiln_fail_context(st, "sampling stopped at step %d of %d", step + 1, total);
    return kiln_fail(st, "sampling stopped by the progress callback at step %d of %d", step + 1, total);
}

/* The report of step `step` of the schedule's. */
static inline kiln_status report(sampler_run *r, int step, const float *denoised)
{
    return report_step(r, step, r->steps, denoised);
}

/* x += d * dt with d = (x - denoised) / sigma: one Euler step in sigma. */
static inline void euler_update(float *x, const float *denoised, float sigma, float dt, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        float d = (x[j] - denoised[j]) / sigma;
        x[j] = x[j] + d * dt;
    }
}

/* x += noise * scale */
static inline void add_noise(float *x, const float *noise, float scale, size_t n)
{
    for (size_t j = 0; j < n; j++) x[j] = x[j] + noise[j] * scale;
}

/* k-diffusion's get_ancestral_step: the deterministic target sigma_down and
 * the noise sigma_up that together land on sigma_to. A flow model's CFG++
 * step from sigma 1 has sigma_from infinite: all of sigma_to is noise. */
static inline void ancestral_step(double sigma_from, double sigma_to, double eta, double *sigma_down, double *sigma_up)
{
    if (eta == 0.0) {
        *sigma_down = sigma_to;
        *sigma_up = 0.0;
        return;
    }
    double up = eta * sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                           (sigma_from * sigma_from));
    if (!(up < sigma_to)) up = sigma_to; /* Python's min(sigma_to, up), NaN included (from sigma_from inf) */
    *sigma_up = up;
    *sigma_down = sqrt(sigma_to * sigma_to - up * up);
}

/* The half-log-SNR log(alpha / sigma) of a noise level and its alpha, as
 * ComfyUI's SDE samplers take them: a discrete model's -log(sigma) with
 * alpha 1, a flow model's log((1 - sigma) / sigma) with alpha 1 - sigma. */
static inline double half_log_snr(bool flow, double sigma) { return flow ? log((1.0 - sigma) / sigma) : -log(sigma); }
static inline double alpha_of(bool flow, double sigma) { return flow ? 1.0 - sigma : 1.0; }

/* CFG++: the unconditional x0 prediction of the last denoise call. */
static inline kiln_status uncond_of(sampler_run *r, float *uncond)
{
    return r->args->uncond(r->args->denoise_ctx, uncond);
}

/* torch.lerp(a, b, w) in float32: from the nearer end, as torch computes it. */
static inline float lerp_torch(float a, float b, float w)
{
    return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* Solves a (k x k, row-major) y = b for small k by Gaussian elimination
 * with partial pivoting; y replaces b, a is overwritten. */
void sampler_solve_small(double *a, double *b, int k);

/* sampler_exponential.c: exponential integrators in half-log-SNR newer than
 * the k-diffusion set (ComfyUI's res_multistep, er_sde, seeds_2/3, sa_solver). */
kiln_status sample_res_multistep(sampler_run *r, float *x, float *ws, double eta, bool cfg_pp);
kiln_status sample_er_sde(sampler_run *r, float *x, float *ws);
kiln_status sample_seeds(sampler_run *r, float *x, float *ws, int stages);
kiln_status sample_sa_solver(sampler_run *r, float *x, float *ws, bool pece);

/* sampler_dpm_solver.c: KSampler's dpm_fast and dpm_adaptive. */
kiln_status sample_dpm_fast(sampler_run *r, float *x, float *ws);
kiln_status sample_dpm_adaptive(sampler_run *r, float *x, float *ws);

#endif
