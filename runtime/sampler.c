/* ComfyUI's samplers over a denoiser callback.
 *
 * Each sampler is one function over x (n) with scratch buffers carved from
 * one workspace. Per-step scalars (step sizes, exponential-integrator
 * coefficients) are computed in double from the float32 sigmas; elementwise
 * updates are float32 in the same order of operations as ComfyUI's tensor
 * expressions, so results agree with it to float32 rounding. Two places
 * follow ComfyUI's float32 scalars operation by operation instead, because
 * a last-bit difference there is not small: uni_pc's noise-schedule
 * functions (visibly inexact at its final sigma, 0.001) and dpmpp_sde's
 * half-step sigma (a point the Brownian tree rounds to 6 decimals). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brownian.h"
#include "sampler_internal.h"
#include "status.h"

kiln_status kiln_noise_from_rng(void *rng, float sigma, float sigma_next, float *noise, size_t n)
{
    (void)sigma;
    (void)sigma_next;
    kiln_rng_randn(rng, noise, n);
    return KILN_OK;
}

/* exp of the midpoint of log a and log b, as torch's float32 lerp(w = 0.5). */
static float log_midpoint(float a, float b)
{
    float log_a = logf(a), log_b = logf(b);
    float half_span = (log_b - log_a) * 0.5f;
    return expf(log_b - half_span);
}

static kiln_status sample_euler(sampler_run *r, float *x, float *ws)
{
    float *denoised = ws;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        euler_update(x, denoised, sigma, sigma_next - sigma, r->n);
    }
    return KILN_OK;
}

static kiln_status sample_euler_ancestral(sampler_run *r, float *x, float *ws)
{
    float *denoised = ws, *noise = ws + r->n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        double down, up;
        ancestral_step(sigma, sigma_next, r->args->eta, &down, &up);
        TRY(report(r, i, denoised));
        if (down == 0.0) {
            memcpy(x, denoised, r->n * sizeof *x);
            continue;
        }
        euler_update(x, denoised, sigma, (float)(down - sigma), r->n);
        TRY(draw_noise(r, sigma, sigma_next, noise));
        add_noise(x, noise, r->args->s_noise * (float)up, r->n);
    }
    return KILN_OK;
}

/* The rectified-flow ancestral step of ComfyUI's *_RF samplers (what
 * euler_ancestral, dpm_2_ancestral and dpmpp_2s_ancestral run on a CONST
 * model): step down to sigma_down = sigma_next * (1 + (sigma_next / sigma -
 * 1) * eta) along the straight path, then rescale x by alpha_next /
 * alpha_down and add renoise of noise. float32 as torch's 0-d tensor ops;
 * ModelSamplingFlux has no noise_scale, so s_noise is used as given. */
typedef struct rf_step {
    float sigma_down, rescale, renoise;
} rf_step;

static rf_step rf_ancestral_step(float sigma, float sigma_next, float eta)
{
    float downstep_ratio = 1.0f + (sigma_next / sigma - 1.0f) * eta;
    float sigma_down = sigma_next * downstep_ratio;
    float alpha_next = 1.0f - sigma_next, alpha_down = 1.0f - sigma_down;
    float down_part = (sigma_down * sigma_down) * (alpha_next * alpha_next) / (alpha_down * alpha_down);
    return (rf_step){sigma_down, alpha_next / alpha_down, sqrtf(sigma_next * sigma_next - down_part)};
}

/* x = ratio x + (1 - ratio) target with ratio = sigma_to / sigma: the
 * straight flow path's step from x at sigma towards target (its x0). */
static void rf_path_step(float *x, const float *target, float sigma_to, float sigma, size_t n)
{
    float ratio = sigma_to / sigma, keep = 1.0f - ratio;
    for (size_t j = 0; j < n; j++) x[j] = ratio * x[j] + keep * target[j];
}

/* x = step.rescale x + s_noise step.renoise noise, a fresh draw. */
static kiln_status rf_renoise(sampler_run *r, float *x, const rf_step *step, float sigma, float sigma_next,
                              float *noise)
{
    TRY(draw_noise(r, sigma, sigma_next, noise));
    for (size_t j = 0; j < r->n; j++) x[j] = step->rescale * x[j] + noise[j] * r->args->s_noise * step->renoise;
    return KILN_OK;
}

static kiln_status sample_euler_ancestral_rf(sampler_run *r, float *x, float *ws)
{
    float *denoised = ws, *noise = ws + r->n;
    float eta = r->args->eta;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, r->n * sizeof *x);
            continue;
        }
        rf_step step = rf_ancestral_step(sigma, sigma_next, eta);
        rf_path_step(x, denoised, step.sigma_down, sigma, r->n);
        if (eta > 0.0f) TRY(rf_renoise(r, x, &step, sigma, sigma_next, noise));
    }
    return KILN_OK;
}

/* Euler ancestral CFG++ (eta 0, s_noise 0: euler_cfg_pp): the slope from
 * the unconditional prediction and the step from the guided one, an
 * ancestral (DDIM stochastic) step in sigma / alpha. */
static kiln_status sample_euler_ancestral_cfg_pp(sampler_run *r, float *x, float *ws, double eta, double s_noise)
{
    size_t n = r->n;
    float *denoised = ws, *uncond = ws + n, *noise = ws + 2 * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(uncond_of(r, uncond));
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
            continue;
        }
        const double alpha_s = alpha_of(r->args->flow, sigma), alpha_t = alpha_of(r->args->flow, sigma_next);
        double down, up;
        ancestral_step(sigma / alpha_s, sigma_next / alpha_t, eta, &down, &up);
        const float as = (float)alpha_s, at = (float)alpha_t, to = (float)(alpha_t * down);
        for (size_t j = 0; j < n; j++) x[j] = at * denoised[j] + to * ((x[j] - as * uncond[j]) / sigma);
        if (eta > 0.0 && s_noise > 0.0) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            add_noise(x, noise, (float)(alpha_t * s_noise * up), n);
        }
    }
    return KILN_OK;
}

/* SamplerEulerCFGpp's "alternative" (ComfyUI's sample_euler_pp): an Euler
 * step along the slope of x - denoised + uncond towards denoised, in
 * float32 in torch's order. */
static kiln_status sample_euler_pp(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *uncond = ws + n;
    for (int i = 0; i < r->steps; i++) {
        const float sigma = r->sigmas[i], dt = r->sigmas[i + 1] - sigma;
        TRY(denoise(r, x, sigma, denoised));
        TRY(uncond_of(r, uncond));
        TRY(report(r, i, denoised));
        for (size_t j = 0; j < n; j++) x[j] = x[j] + (((x[j] - denoised[j]) + uncond[j]) - denoised[j]) / sigma * dt;
    }
    return KILN_OK;
}

/* Gradient estimation (ComfyUI's, gamma 2): Euler, plus (gamma - 1) times
 * the slope's change since the last step. With cfg_pp the slope is the
 * unconditional prediction's and the step starts from the guided one. */
static kiln_status sample_gradient_estimation(sampler_run *r, float *x, float *ws, bool cfg_pp)
{
    const float gamma_less_1 = 1.0f;
    size_t n = r->n;
    float *denoised = ws, *uncond = ws + n, *d = ws + 2 * n, *old_d = ws + 3 * n;
    const float *x0 = cfg_pp ? uncond : denoised;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        if (cfg_pp) TRY(uncond_of(r, uncond));
        for (size_t j = 0; j < n; j++) d[j] = (x[j] - x0[j]) / sigma;
        TRY(report(r, i, denoised));
        float dt = sigma_next - sigma;
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
        } else {
            for (size_t j = 0; j < n; j++) {
                float v = cfg_pp ? denoised[j] + d[j] * sigma_next : x[j] + d[j] * dt;
                x[j] = i >= 1 ? v + gamma_less_1 * (d[j] - old_d[j]) * dt : v;
            }
        }
        float *swap = d;
        d = old_d;
        old_d = swap;
    }
    return KILN_OK;
}

/* Heun++ (ComfyUI's heunpp2): Euler on the last step, Heun on the one
 * before, and before that the slopes here and at the next two sigmas
 * blended by those sigmas over 3 sigma_0 (2 sigma_0 for the Heun step). */
static kiln_status sample_heunpp2(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *d = ws + n, *x_2 = ws + 2 * n, *d_2 = ws + 3 * n, *x_3 = ws + 4 * n, *d_3 = ws + 5 * n;
    const float s_end = r->sigmas[r->steps], sigma_0 = r->sigmas[0];
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        for (size_t j = 0; j < n; j++) d[j] = (x[j] - denoised[j]) / sigma;
        TRY(report(r, i, denoised));
        float dt = sigma_next - sigma;
        if (sigma_next == s_end) {
            for (size_t j = 0; j < n; j++) x[j] = x[j] + d[j] * dt;
            continue;
        }
        for (size_t j = 0; j < n; j++) x_2[j] = x[j] + d[j] * dt;
        TRY(denoise(r, x_2, sigma_next, d_2));
        for (size_t j = 0; j < n; j++) d_2[j] = (x_2[j] - d_2[j]) / sigma_next;
        const float sigma_after = r->sigmas[i + 2];
        if (sigma_after == s_end) {
            const float w_2 = sigma_next / (2.0f * sigma_0), w_1 = 1.0f - w_2;
            for (size_t j = 0; j < n; j++) x[j] = x[j] + (d[j] * w_1 + d_2[j] * w_2) * dt;
            continue;
        }
        for (size_t j = 0; j < n; j++) x_3[j] = x_2[j] + d_2[j] * (sigma_after - sigma_next);
        TRY(denoise(r, x_3, sigma_after, d_3));
        for (size_t j = 0; j < n; j++) d_3[j] = (x_3[j] - d_3[j]) / sigma_after;
        const float w = 3.0f * sigma_0, w_2 = sigma_next / w, w_3 = sigma_after / w, w_1 = 1.0f - w_2 - w_3;
        for (size_t j = 0; j < n; j++) x[j] = x[j] + (w_1 * d[j] + w_2 * d_2[j] + w_3 * d_3[j]) * dt;
    }
    return KILN_OK;
}

/* DDPM's ancestral step as ComfyUI's sample_ddpm takes it: the posterior
 * mean from the eps prediction in the variance-preserving x / sqrt(1 +
 * sigma^2), plus the posterior's deviation times fresh noise. The scalars
 * are float32 operation by operation as ComfyUI's: 1 - alphas_cumprod near
 * the last sigma cancels, and its float32 value is what ComfyUI steps by. */
static kiln_status sample_ddpm(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *noise = ws + n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        const float alphas_cumprod = 1.0f / (sigma * sigma + 1.0f);
        const float alphas_cumprod_next = 1.0f / (sigma_next * sigma_next + 1.0f);
        const float alpha = alphas_cumprod / alphas_cumprod_next;
        const float vp = sqrtf(1.0f + sigma * sigma), mean = sqrtf(1.0f / alpha);
        const float eps_weight = 1.0f - alpha, eps_norm = sqrtf(1.0f - alphas_cumprod);
        for (size_t j = 0; j < n; j++) {
            float eps = (x[j] - denoised[j]) / sigma;
            x[j] = mean * (x[j] / vp - eps_weight * eps / eps_norm);
        }
        if (sigma_next > 0.0f) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            add_noise(x, noise, sqrtf((1.0f - alpha) * (1.0f - alphas_cumprod_next) / (1.0f - alphas_cumprod)), n);
        }
        if (sigma_next != 0.0f) {
            const float to_vp = sqrtf(1.0f + sigma_next * sigma_next);
            for (size_t j = 0; j < n; j++) x[j] *= to_vp;
        }
    }
    return KILN_OK;
}

/* Heun: Euler to sigma_next, then the trapezoid of the two slopes (plain
 * Euler on the last step to 0). */
static kiln_status sample_heun(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *x_2 = ws + n, *denoised_2 = ws + 2 * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        float dt = sigma_next - sigma;
        if (sigma_next == 0.0f) {
            euler_update(x, denoised, sigma, dt, n);
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            float d = (x[j] - denoised[j]) / sigma;
            x_2[j] = x[j] + d * dt;
        }
        TRY(denoise(r, x_2, sigma_next, denoised_2));
        for (size_t j = 0; j < n; j++) {
            float d = (x[j] - denoised[j]) / sigma;
            float d_2 = (x_2[j] - denoised_2[j]) / sigma_next;
            float d_prime = (d + d_2) / 2.0f;
            x[j] = x[j] + d_prime * dt;
        }
    }
    return KILN_OK;
}

/* DPM-Solver-2 step from sigma to sigma_to: the slope at the log-midpoint
 * carries x the whole way. */
static kiln_status dpm_2_step(sampler_run *r, float *x, const float *denoised, float sigma, float sigma_to,
                              float *x_2, float *denoised_2)
{
    float sigma_mid = log_midpoint(sigma, sigma_to);
    float dt_1 = sigma_mid - sigma, dt_2 = sigma_to - sigma;
    for (size_t j = 0; j < r->n; j++) {
        float d = (x[j] - denoised[j]) / sigma;
        x_2[j] = x[j] + d * dt_1;
    }
    TRY(denoise(r, x_2, sigma_mid, denoised_2));
    for (size_t j = 0; j < r->n; j++) {
        float d_2 = (x_2[j] - denoised_2[j]) / sigma_mid;
        x[j] = x[j] + d_2 * dt_2;
    }
    return KILN_OK;
}

static kiln_status sample_dpm_2(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *x_2 = ws + n, *denoised_2 = ws + 2 * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) euler_update(x, denoised, sigma, sigma_next - sigma, n);
        else TRY(dpm_2_step(r, x, denoised, sigma, sigma_next, x_2, denoised_2));
    }
    return KILN_OK;
}

/* Ancestral DPM-Solver-2: down to sigma_down, then noise up to sigma_next;
 * on a flow model ComfyUI's _RF variant: down to the RF step's sigma_down,
 * then its rescale and renoise (drawn even at eta 0, as there). */
static kiln_status sample_dpm_2_ancestral(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *x_2 = ws + n, *denoised_2 = ws + 2 * n, *noise = ws + 3 * n;
    const bool flow = r->args->flow;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        double down, up = 0.0;
        rf_step rf = {0};
        if (flow) {
            rf = rf_ancestral_step(sigma, sigma_next, r->args->eta);
            down = rf.sigma_down;
        } else {
            ancestral_step(sigma, sigma_next, r->args->eta, &down, &up);
        }
        TRY(report(r, i, denoised));
        if (down == 0.0) {
            euler_update(x, denoised, sigma, (float)(down - sigma), n);
            continue;
        }
        TRY(dpm_2_step(r, x, denoised, sigma, (float)down, x_2, denoised_2));
        if (flow) {
            TRY(rf_renoise(r, x, &rf, sigma, sigma_next, noise));
        } else {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            add_noise(x, noise, r->args->s_noise * (float)up, n);
        }
    }
    return KILN_OK;
}

/* The LMS coefficient: the integral over [t[i], t[i+1]] of the Lagrange
 * basis polynomial of node i - j among nodes i, i-1, ..., i-order+1.
 * Three-point Gauss–Legendre is exact for these polynomials (degree <= 3),
 * as scipy's quad is in ComfyUI. */
static double lms_coefficient(const float *t, int order, int i, int j)
{
    static const double nodes[3] = {-0.7745966692414834, 0.0, 0.7745966692414834};
    static const double weights[3] = {5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
    double a = t[i], b = t[i + 1];
    double sum = 0.0;
    for (int q = 0; q < 3; q++) {
        double tau = 0.5 * (a + b) + 0.5 * (b - a) * nodes[q];
        double basis = 1.0;
        for (int k = 0; k < order; k++) {
            if (k == j) continue;
            basis *= (tau - t[i - k]) / ((double)t[i - j] - t[i - k]);
        }
        sum += weights[q] * basis;
    }
    return 0.5 * (b - a) * sum;
}

/* Linear multistep (order 4, or args' lms_order) over the slopes of the
 * last steps. */
static kiln_status sample_lms(sampler_run *r, float *x, float *ws)
{
    enum { ORDER = 4 };
    const int most = r->args->lms_order ? r->args->lms_order : ORDER;
    size_t n = r->n;
    float *denoised = ws;
    float *slopes[ORDER]; /* slopes[0] is the newest slope d (n) */
    for (int k = 0; k < ORDER; k++) slopes[k] = ws + (size_t)(1 + k) * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        float *oldest = slopes[ORDER - 1];
        memmove(slopes + 1, slopes, (ORDER - 1) * sizeof *slopes);
        slopes[0] = oldest;
        for (size_t j = 0; j < n; j++) slopes[0][j] = (x[j] - denoised[j]) / sigma;
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
            continue;
        }
        int order = i + 1 < most ? i + 1 : most;
        float coeff[ORDER];
        for (int k = 0; k < order; k++) coeff[k] = (float)lms_coefficient(r->sigmas, order, i, k);
        for (size_t j = 0; j < n; j++) {
            float sum = coeff[0] * slopes[0][j];
            for (int k = 1; k < order; k++) sum = sum + coeff[k] * slopes[k][j];
            x[j] = x[j] + sum;
        }
    }
    return KILN_OK;
}

/* CFG++'s second half: x += scale * (denoised - uncond), the guidance the
 * step from the unconditional prediction left out. */
static void add_guidance(float *x, const float *denoised, const float *uncond, float scale, size_t n)
{
    for (size_t j = 0; j < n; j++) x[j] = x[j] + scale * (denoised[j] - uncond[j]);
}

/* DPM-Solver++(2S) ancestral: a midpoint evaluation in log-sigma, then
 * ancestral noise. With cfg_pp both evaluations' unconditional predictions
 * make the step and the first one's guidance is added after (CFG++). */
static kiln_status sample_dpmpp_2s_ancestral(sampler_run *r, float *x, float *ws, bool cfg_pp)
{
    size_t n = r->n;
    float *denoised = ws, *x_2 = ws + n, *denoised_2 = ws + 2 * n, *noise = ws + 3 * n, *uncond = ws + 4 * n;
    const float *x0 = cfg_pp ? uncond : denoised;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        if (cfg_pp) TRY(uncond_of(r, uncond));
        double down, up;
        ancestral_step(sigma, sigma_next, r->args->eta, &down, &up);
        TRY(report(r, i, denoised));
        if (down == 0.0) {
            euler_update(x, x0, sigma, (float)(down - sigma), n);
        } else {
            double t = -log((double)sigma), t_next = -log(down);
            double h = t_next - t;
            double s = t + 0.5 * h;
            float ratio_mid = (float)(exp(-s) / sigma), coeff_mid = (float)expm1(-0.5 * h);
            for (size_t j = 0; j < n; j++) x_2[j] = ratio_mid * x[j] - coeff_mid * x0[j];
            TRY(denoise(r, x_2, (float)exp(-s), denoised_2));
            if (cfg_pp) TRY(uncond_of(r, denoised_2));
            float ratio = (float)(down / sigma), coeff = (float)expm1(-h);
            for (size_t j = 0; j < n; j++) x[j] = ratio * x[j] - coeff * denoised_2[j];
        }
        if (sigma_next > 0.0f) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            add_noise(x, noise, r->args->s_noise * (float)up, n);
        }
        if (cfg_pp) add_guidance(x, denoised, uncond, 1.0f, n);
    }
    return KILN_OK;
}

/* ComfyUI's sample_dpmpp_2s_ancestral_RF: the x0 prediction at the midpoint
 * in flow half-log-SNR (log((1 - sigma) / sigma)) between sigma and the RF
 * step's sigma_down (0.9999 from sigma 1, where that is infinite), both
 * steps along the straight path, then the rescale and renoise. With cfg_pp
 * as above, the guidance scaled by alpha_next = 1 - sigma_next. */
static kiln_status sample_dpmpp_2s_ancestral_rf(sampler_run *r, float *x, float *ws, bool cfg_pp)
{
    size_t n = r->n;
    float *denoised = ws, *u = ws + n, *denoised_2 = ws + 2 * n, *noise = ws + 3 * n, *uncond = ws + 4 * n;
    const float *x0 = cfg_pp ? uncond : denoised;
    float eta = r->args->eta;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        if (cfg_pp) TRY(uncond_of(r, uncond));
        rf_step step = rf_ancestral_step(sigma, sigma_next, eta);
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            euler_update(x, x0, sigma, step.sigma_down - sigma, n);
        } else {
            float sigma_s = 0.9999f;
            if (sigma != 1.0f) {
                double t = log((1.0 - sigma) / sigma), t_down = log((1.0 - step.sigma_down) / step.sigma_down);
                sigma_s = (float)(1.0 / (exp(t + 0.5 * (t_down - t)) + 1.0));
            }
            memcpy(u, x, n * sizeof *u);
            rf_path_step(u, x0, sigma_s, sigma, n);
            TRY(denoise(r, u, sigma_s, denoised_2));
            if (cfg_pp) TRY(uncond_of(r, denoised_2));
            rf_path_step(x, denoised_2, step.sigma_down, sigma, n);
            if (eta > 0.0f) TRY(rf_renoise(r, x, &step, sigma, sigma_next, noise));
        }
        if (cfg_pp) add_guidance(x, denoised, uncond, 1.0f - sigma_next, n);
    }
    return KILN_OK;
}

/* One DPM-Solver++ SDE step's numbers: the half-step sigma, and for each
 * half x = keep x + take x0 + up noise. */
typedef struct sde_step {
    float sigma_s;
    float keep[2], take[2], up[2];
} sde_step;

/* A discrete model's: alpha 1, the scalars in double. The half-step sigma
 * in float32 as ComfyUI has it: it is a point the Brownian tree rounds to 6
 * decimals, so its last bit matters. */
static sde_step dpmpp_sde_step_discrete(float sigma, float sigma_next, double eta, double ratio_r)
{
    sde_step st;
    double lambda_s = -log((double)sigma);
    float lambda_s_f = -logf(sigma), lambda_t_f = -logf(sigma_next);
    st.sigma_s = expf(-(lambda_s_f + (float)ratio_r * (lambda_t_f - lambda_s_f)));
    const float to[2] = {st.sigma_s, sigma_next};
    for (int k = 0; k < 2; k++) {
        double down, up;
        ancestral_step(sigma, to[k], eta, &down, &up);
        double h_ = -log(down) - lambda_s;
        st.keep[k] = (float)exp(-h_);
        st.take[k] = (float)-expm1(-h_);
        st.up[k] = (float)up;
    }
    return st;
}

/* A flow model's, in float32 as ComfyUI's 0-d tensors compute them: near
 * sigma 1 the ancestral step between exp(-lambda)s cancels, and ComfyUI's
 * result is what its float32 arithmetic gives there. */
static sde_step dpmpp_sde_step_flow(float sigma, float sigma_next, float eta, float ratio_r)
{
    sde_step st;
    float lambda_s = -logf(sigma / (1.0f - sigma)), lambda_t = -logf(sigma_next / (1.0f - sigma_next));
    float lambda_mid = lambda_s + ratio_r * (lambda_t - lambda_s);
    st.sigma_s = 1.0f / (1.0f + expf(lambda_mid));
    float alpha_s = sigma * expf(lambda_s);
    const float lambda_to[2] = {lambda_mid, lambda_t}, sigma_to[2] = {st.sigma_s, sigma_next};
    for (int k = 0; k < 2; k++) {
        float alpha_to = sigma_to[k] * expf(lambda_to[k]);
        float from = expf(-lambda_s), to = expf(-lambda_to[k]), down = to, up = 0.0f;
        if (eta != 0.0f) {
            up = eta * sqrtf(to * to * (from * from - to * to) / (from * from));
            if (up > to) up = to;
            down = sqrtf(to * to - up * up);
        }
        float h_ = -logf(down) - lambda_s;
        st.keep[k] = alpha_to / alpha_s * expf(-h_);
        st.take[k] = -(alpha_to * expm1f(-h_));
        st.up[k] = alpha_to * up;
    }
    return st;
}

/* DPM-Solver++ SDE (r = 1/2): an ancestral half step in half-log-SNR to
 * sigma_s, then the full step from a blend of both x0 predictions, each with
 * Brownian noise (scaled by alpha: 1 for a discrete model). */
static kiln_status sample_dpmpp_sde(sampler_run *r, float *x, float *ws)
{
    const double ratio_r = 0.5, fac = 1.0 / (2.0 * ratio_r);
    size_t n = r->n;
    float *denoised = ws, *x_2 = ws + n, *denoised_2 = ws + 2 * n, *noise = ws + 3 * n;
    double eta = r->args->eta, s_noise = r->args->s_noise;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
            continue;
        }
        sde_step st = r->args->flow ? dpmpp_sde_step_flow(sigma, sigma_next, (float)eta, (float)ratio_r)
                                    : dpmpp_sde_step_discrete(sigma, sigma_next, eta, ratio_r);
        for (size_t j = 0; j < n; j++) x_2[j] = st.keep[0] * x[j] + st.take[0] * denoised[j];
        if (eta > 0.0 && s_noise > 0.0) {
            TRY(draw_noise(r, sigma, st.sigma_s, noise));
            add_noise(x_2, noise, (float)(s_noise * st.up[0]), n);
        }
        TRY(denoise(r, x_2, st.sigma_s, denoised_2));
        float w_1 = (float)(1.0 - fac), w_2 = (float)fac;
        for (size_t j = 0; j < n; j++) {
            float blend = w_1 * denoised[j] + w_2 * denoised_2[j];
            x[j] = st.keep[1] * x[j] + st.take[1] * blend;
        }
        if (eta > 0.0 && s_noise > 0.0) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            add_noise(x, noise, (float)(s_noise * st.up[1]), n);
        }
    }
    return KILN_OK;
}

/* DPM-Solver++(2M): second order from the previous step's x0 prediction. */
static kiln_status sample_dpmpp_2m(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *old_denoised = ws + n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        double t = -log((double)sigma), t_next = -log((double)sigma_next);
        double h = t_next - t;
        float ratio = (float)((double)sigma_next / sigma), coeff = (float)expm1(-h);
        if (i == 0 || sigma_next == 0.0f) {
            for (size_t j = 0; j < n; j++) x[j] = ratio * x[j] - coeff * denoised[j];
        } else {
            double h_last = t + log((double)r->sigmas[i - 1]);
            double half_inv_r = 1.0 / (2.0 * (h_last / h));
            float w_new = (float)(1.0 + half_inv_r), w_old = (float)half_inv_r;
            for (size_t j = 0; j < n; j++) {
                float denoised_d = w_new * denoised[j] - w_old * old_denoised[j];
                x[j] = ratio * x[j] - coeff * denoised_d;
            }
        }
        float *swap = old_denoised;
        old_denoised = denoised;
        denoised = swap;
    }
    return KILN_OK;
}

/* DPM-Solver++(2M) CFG++: the step from the unconditional prediction (its
 * change since the last step for the second order), landing on the guided
 * one. */
static kiln_status sample_dpmpp_2m_cfg_pp(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *uncond = ws + n, *old_uncond = ws + 2 * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(uncond_of(r, uncond));
        TRY(report(r, i, denoised));
        double t = -log((double)sigma), h = -log((double)sigma_next) - t;
        const float keep = (float)exp(-h);
        if (i == 0 || sigma_next == 0.0f) {
            for (size_t j = 0; j < n; j++) x[j] = denoised[j] + -keep * uncond[j] + keep * x[j];
        } else {
            double ratio = (t + log((double)r->sigmas[i - 1])) / h;
            const float second = (float)(expm1(-h) * (1.0 / (2.0 * ratio)));
            for (size_t j = 0; j < n; j++)
                x[j] = denoised[j] + (-keep * uncond[j] - second * (denoised[j] - old_uncond[j])) + keep * x[j];
        }
        memcpy(old_uncond, uncond, n * sizeof *old_uncond);
    }
    return KILN_OK;
}

/* DPM-Solver++(2M) SDE and (3M) SDE: the exponential-integrator step with
 * eta-scaled noise, corrected by the last one or two x0 predictions.
 * `max_order` is 2 or 3; the 2M's correction is the midpoint one, or with
 * `heun` ComfyUI's solver_type "heun", which is the 3M's first-order one
 * (alpha_t phi_2 / r times the change in x0). */
static kiln_status sample_dpmpp_multistep_sde(sampler_run *r, float *x, float *ws, int max_order, bool heun)
{
    size_t n = r->n;
    float *denoised = ws, *denoised_1 = ws + n, *denoised_2 = ws + 2 * n, *noise = ws + 3 * n;
    double eta = r->args->eta, s_noise = r->args->s_noise;
    double h = 0.0, h_1 = 0.0, h_2 = 0.0;
    int history = 0; /* x0 predictions from earlier steps in denoised_1, denoised_2 */
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
        } else {
            const bool flow = r->args->flow;
            h = half_log_snr(flow, sigma_next) - half_log_snr(flow, sigma);
            double h_eta = h * (eta + 1.0), alpha_t = alpha_of(flow, sigma_next);
            float keep = (float)((double)sigma_next / sigma * exp(-h * eta));
            float take = (float)(alpha_t * -expm1(-h_eta));
            for (size_t j = 0; j < n; j++) x[j] = keep * x[j] + take * denoised[j];
            double phi_2 = expm1(-h_eta) / h_eta + 1.0;
            if (max_order == 3 && history >= 2) {
                double r0 = h_1 / h, r1 = h_2 / h;
                double phi_3 = phi_2 / h_eta - 0.5;
                float r0f = (float)r0, r1f = (float)r1, r01 = (float)(r0 + r1);
                float c_1 = (float)(alpha_t * phi_2), c_2 = (float)(alpha_t * phi_3);
                for (size_t j = 0; j < n; j++) {
                    float d1_0 = (denoised[j] - denoised_1[j]) / r0f;
                    float d1_1 = (denoised_1[j] - denoised_2[j]) / r1f;
                    float d1 = d1_0 + (d1_0 - d1_1) * r0f / r01;
                    float d2 = (d1_0 - d1_1) / r01;
                    x[j] = x[j] + c_1 * d1 - c_2 * d2;
                }
            } else if ((max_order == 3 || heun) && history >= 1) {
                float rf = (float)(h_1 / h), c = (float)(alpha_t * phi_2);
                for (size_t j = 0; j < n; j++) {
                    float d = (denoised[j] - denoised_1[j]) / rf;
                    x[j] = x[j] + c * d;
                }
            } else if (history >= 1) {
                /* midpoint */
                float c = (float)(0.5 * alpha_t * -expm1(-h_eta) * (1.0 / (h_1 / h)));
                for (size_t j = 0; j < n; j++) x[j] = x[j] + c * (denoised[j] - denoised_1[j]);
            }
            if (eta > 0.0 && s_noise > 0.0) {
                TRY(draw_noise(r, sigma, sigma_next, noise));
                add_noise(x, noise, (float)(sigma_next * sqrt(-expm1(-2.0 * h * eta)) * s_noise), n);
            }
        }
        float *oldest = denoised_2;
        denoised_2 = denoised_1;
        denoised_1 = denoised;
        denoised = oldest;
        h_2 = h_1;
        h_1 = h;
        history++;
    }
    return KILN_OK;
}

/* LCM: jump to the x0 prediction, then renoise it to the next sigma as the
 * model mixes noise in (a flow model's way on one). */
static kiln_status sample_lcm(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    float *denoised = ws, *noise = ws + n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        memcpy(x, denoised, n * sizeof *x);
        if (sigma_next > 0.0f) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            const bool flow = r->args->flow;
            float s_noise = r->args->s_noise;
            for (size_t j = 0; j < n; j++) /* model_sampling.noise_scaling of the x0 prediction */
                x[j] = kiln_noise_scaling(flow, sigma_next, s_noise == 1.0f ? noise[j] : noise[j] * s_noise, x[j]);
        }
    }
    return KILN_OK;
}

/* Improved PNDM: Adams–Bashforth up to order 4 on the slopes, fixed
 * coefficients. `slopes` are the previous slopes, newest first. */
static kiln_status sample_ipndm(sampler_run *r, float *x, float *ws)
{
    enum { MAX_ORDER = 4 };
    size_t n = r->n;
    float *denoised = ws, *d_cur = ws + n;
    float *slopes[MAX_ORDER - 1];
    for (int k = 0; k < MAX_ORDER - 1; k++) slopes[k] = ws + (size_t)(2 + k) * n;
    for (int i = 0; i < r->steps; i++) {
        float t_cur = r->sigmas[i], t_next = r->sigmas[i + 1];
        TRY(denoise(r, x, t_cur, denoised));
        TRY(report(r, i, denoised));
        for (size_t j = 0; j < n; j++) d_cur[j] = (x[j] - denoised[j]) / t_cur;
        int order = i + 1 < MAX_ORDER ? i + 1 : MAX_ORDER;
        float dt = t_next - t_cur;
        if (t_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
        } else {
            const float *b1 = slopes[0], *b2 = slopes[1], *b3 = slopes[2];
            for (size_t j = 0; j < n; j++) {
                float combo;
                switch (order) {
                case 1: x[j] = x[j] + dt * d_cur[j]; continue;
                case 2: combo = (dt * (3.0f * d_cur[j] - b1[j])) / 2.0f; break;
                case 3: combo = (dt * (23.0f * d_cur[j] - 16.0f * b1[j] + 5.0f * b2[j])) / 12.0f; break;
                default:
                    combo = (dt * (55.0f * d_cur[j] - 59.0f * b1[j] + 37.0f * b2[j] - 9.0f * b3[j])) / 24.0f;
                    break;
                }
                x[j] = x[j] + combo;
            }
        }
        float *oldest = slopes[MAX_ORDER - 2];
        memmove(slopes + 1, slopes, (MAX_ORDER - 2) * sizeof *slopes);
        slopes[0] = d_cur;
        d_cur = oldest;
    }
    return KILN_OK;
}

/* iPNDM with variable steps (ComfyUI's ipndm_v): the same Adams–Bashforth
 * up to order 4, its weights from the sizes of this step and the last
 * three, so that uneven schedules (karras) keep the order. */
static void ipndm_v_weights(const float *t, int i, int order, double *c)
{
    const double h_n = (double)t[i + 1] - t[i], h_n_1 = order > 1 ? (double)t[i] - t[i - 1] : 1.0;
    c[0] = 1.0;
    if (order == 1) return;
    const double ratio = h_n / h_n_1;
    c[0] = (2.0 + ratio) / 2.0;
    c[1] = -ratio / 2.0;
    if (order == 2) return;
    const double h_n_2 = (double)t[i - 1] - t[i - 2];
    const double temp1 = (1.0 - h_n / (3.0 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2.0;
    if (order == 3) {
        c[0] += temp1;
        c[1] -= (1.0 + h_n_1 / h_n_2) * temp1;
        c[2] = temp1 * h_n_1 / h_n_2;
        return;
    }
    const double h_n_3 = (double)t[i - 2] - t[i - 3];
    const double temp2 = ((1.0 - h_n / (3.0 * (h_n + h_n_1))) / 2.0 +
                          (1.0 - h_n / (2.0 * (h_n + h_n_1))) * h_n / (6.0 * (h_n + h_n_1 + h_n_2))) *
                         (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) /
                         (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3));
    const double q = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3));
    c[0] += temp1 + temp2;
    c[1] -= (1.0 + h_n_1 / h_n_2) * temp1 + (1.0 + h_n_1 / h_n_2 + q) * temp2;
    c[2] = temp1 * h_n_1 / h_n_2 + (h_n_1 / h_n_2 + q * (1.0 + h_n_2 / h_n_3)) * temp2;
    c[3] = -temp2 * q * h_n_1 / h_n_2;
}

static kiln_status sample_ipndm_v(sampler_run *r, float *x, float *ws)
{
    enum { MAX_ORDER = 4 };
    size_t n = r->n;
    float *denoised = ws, *d_cur = ws + n;
    float *slopes[MAX_ORDER - 1];
    for (int k = 0; k < MAX_ORDER - 1; k++) slopes[k] = ws + (size_t)(2 + k) * n;
    for (int i = 0; i < r->steps; i++) {
        float t_cur = r->sigmas[i], t_next = r->sigmas[i + 1];
        TRY(denoise(r, x, t_cur, denoised));
        TRY(report(r, i, denoised));
        for (size_t j = 0; j < n; j++) d_cur[j] = (x[j] - denoised[j]) / t_cur;
        int order = i + 1 < MAX_ORDER ? i + 1 : MAX_ORDER;
        if (t_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
        } else {
            double c[MAX_ORDER];
            ipndm_v_weights(r->sigmas, i, order, c);
            float w[MAX_ORDER], dt = t_next - t_cur;
            for (int k = 0; k < order; k++) w[k] = (float)c[k];
            for (size_t j = 0; j < n; j++) {
                float combo = w[0] * d_cur[j];
                for (int k = 1; k < order; k++) combo = combo + w[k] * slopes[k - 1][j];
                x[j] = x[j] + dt * combo;
            }
        }
        float *oldest = slopes[MAX_ORDER - 2];
        memmove(slopes + 1, slopes, (MAX_ORDER - 2) * sizeof *slopes);
        slopes[0] = d_cur;
        d_cur = oldest;
    }
    return KILN_OK;
}

/* DEIS ("tab", order 3) coefficients for every step: sigmas are mapped to
 * the time of a fixed VP SDE (sigma_min 0.002, sigma_max 80, epsilon
 * 1e-3), and each coefficient is the Riemann sum over 10,000 points of that
 * SDE's integrand times a Lagrange basis polynomial, as ComfyUI computes it.
 * coeff (steps x 3): coeff[3i + j] weighs the slope of step i - j. */
static void deis_coefficients(const float *sigmas, int steps, double *coeff, double *t)
{
    enum { MAX_ORDER = 3, POINTS = 10000 };
    const double eps_s = 1e-3, vp_sigma_min = 0.002, vp_sigma_max = 80.0;
    double beta_d = 2.0 * (log(vp_sigma_min * vp_sigma_min + 1.0) / eps_s - log(vp_sigma_max * vp_sigma_max + 1.0)) /
                    (eps_s - 1.0);
    double beta_min = log(vp_sigma_max * vp_sigma_max + 1.0) - 0.5 * beta_d;
    double beta_0 = beta_min, beta_1 = beta_d + beta_min;
    for (int i = 0; i <= steps; i++) {
        double s = sigmas[i];
        t[i] = (sqrt(beta_min * beta_min + 2.0 * beta_d * log(s * s + 1.0)) - beta_min) / beta_d;
    }
    for (int i = 0; i < steps; i++) {
        int order = i + 1 < MAX_ORDER ? i + 1 : MAX_ORDER;
        for (int j = 0; j < MAX_ORDER; j++) coeff[3 * i + j] = 0.0;
        if (order == 1) continue;
        double t_cur = t[i], t_next = t[i + 1];
        double dtau = (t_next - t_cur) / POINTS;
        double spacing = (t_next - t_cur) / (POINTS - 1);
        for (int q = 0; q < POINTS; q++) {
            double tau = t_cur + spacing * q;
            double log_alpha = -0.5 * tau * tau * (beta_1 - beta_0) - tau * beta_0;
            double alpha = exp(log_alpha);
            double d_log_alpha = -(tau * (beta_1 - beta_0) + beta_0);
            double integrand = -0.5 * d_log_alpha / sqrt(alpha * (1.0 - alpha));
            for (int j = 0; j < order; j++) {
                double poly = 1.0;
                for (int k = 0; k < order; k++) {
                    if (k == j) continue;
                    poly *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
                }
                coeff[3 * i + j] += integrand * poly;
            }
        }
        for (int j = 0; j < order; j++) coeff[3 * i + j] *= dtau;
    }
}

static kiln_status sample_deis(sampler_run *r, float *x, float *ws)
{
    enum { MAX_ORDER = 3 };
    size_t n = r->n;
    float *denoised = ws, *d_cur = ws + n;
    float *slopes[MAX_ORDER - 1] = {ws + 2 * n, ws + 3 * n};
    double *coeff = malloc(((size_t)r->steps * MAX_ORDER + (size_t)r->steps + 1) * sizeof *coeff);
    if (!coeff) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "deis: coefficients for %d steps", r->steps);
    deis_coefficients(r->sigmas, r->steps, coeff, coeff + (size_t)r->steps * MAX_ORDER);
    kiln_status st = KILN_OK;
    for (int i = 0; i < r->steps && st == KILN_OK; i++) {
        float t_cur = r->sigmas[i], t_next = r->sigmas[i + 1];
        if ((st = denoise(r, x, t_cur, denoised)) != KILN_OK) break;
        if ((st = report(r, i, denoised)) != KILN_OK) break;
        for (size_t j = 0; j < n; j++) d_cur[j] = (x[j] - denoised[j]) / t_cur;
        int order = i + 1 < MAX_ORDER ? i + 1 : MAX_ORDER;
        if (t_next <= 0.0f) order = 1;
        float c0 = (float)coeff[3 * i], c1 = (float)coeff[3 * i + 1], c2 = (float)coeff[3 * i + 2];
        float dt = t_next - t_cur;
        for (size_t j = 0; j < n; j++) {
            if (order == 1) x[j] = x[j] + dt * d_cur[j];
            else if (order == 2) x[j] = x[j] + c0 * d_cur[j] + c1 * slopes[0][j];
            else x[j] = x[j] + c0 * d_cur[j] + c1 * slopes[0][j] + c2 * slopes[1][j];
        }
        float *oldest = slopes[MAX_ORDER - 2];
        slopes[1] = slopes[0];
        slopes[0] = d_cur;
        d_cur = oldest;
    }
    free(coeff);
    return st;
}

/* uni_pc works on the variance-preserving latent x_vp = x / sqrt(sigma^2 + 1)
 * with ComfyUI's float32 schedule functions of sigma. */
static float vp_log_alpha(float sigma)
{
    float var = sigma * sigma + 1.0f;
    return 0.5f * logf(1.0f / var);
}

static float vp_alpha(float sigma) { return expf(vp_log_alpha(sigma)); }

static float vp_std(float sigma) { return sqrtf(1.0f - expf(2.0f * vp_log_alpha(sigma))); }

/* log(alpha / std): -log sigma in exact arithmetic, not in float32 near 0 */
static float vp_lambda(float sigma)
{
    float log_alpha = vp_log_alpha(sigma);
    float log_std = 0.5f * logf(1.0f - expf(2.0f * log_alpha));
    return log_alpha - log_std;
}

/* The data prediction at (x_vp, sigma), through the eps the denoiser
 * implies, as ComfyUI's uni_pc wrapper computes it. */
static kiln_status unipc_x0(sampler_run *r, const float *x_vp, float sigma, float *x_k, float *x0)
{
    size_t n = r->n;
    float scale = sqrtf(sigma * sigma + 1.0f);
    for (size_t j = 0; j < n; j++) x_k[j] = x_vp[j] * scale;
    TRY(denoise(r, x_k, sigma, x0));
    float std = vp_std(sigma), alpha = vp_alpha(sigma);
    for (size_t j = 0; j < n; j++) {
        float eps = (x_k[j] - x0[j]) / sigma;
        x0[j] = (x_vp[j] - std * eps) / alpha;
    }
    return KILN_OK;
}

void sampler_solve_small(double *a, double *b, int k)
{
    for (int col = 0; col < k; col++) {
        int pivot = col;
        for (int row = col + 1; row < k; row++)
            if (fabs(a[row * k + col]) > fabs(a[pivot * k + col])) pivot = row;
        for (int c = 0; c < k; c++) {
            double tmp = a[col * k + c];
            a[col * k + c] = a[pivot * k + c];
            a[pivot * k + c] = tmp;
        }
        double tmp = b[col];
        b[col] = b[pivot];
        b[pivot] = tmp;
        for (int row = col + 1; row < k; row++) {
            double f = a[row * k + col] / a[col * k + col];
            for (int c = col; c < k; c++) a[row * k + c] -= f * a[col * k + c];
            b[row] -= f * b[col];
        }
    }
    for (int row = k - 1; row >= 0; row--) {
        for (int c = row + 1; c < k; c++) b[row] -= a[row * k + c] * b[c];
        b[row] /= a[row * k + row];
    }
}

enum { UNIPC_MAX_ORDER = 3 };

typedef struct unipc_state {
    float *model_prev[UNIPC_MAX_ORDER]; /* (n) x0 predictions, oldest first */
    float t_prev[UNIPC_MAX_ORDER];      /* their sigmas */
    int count;                          /* how many are filled */
    bool bh2;                           /* the bh2 variant: B(h) = e^h - 1 (bh1: h) */
    float *x_t_, *d1s[UNIPC_MAX_ORDER - 1], *x_k, *model_t; /* (n) scratch */
} unipc_state;

/* sum_k rhos[k] * D1_k at element j over the first `count` (>= 1) stored
 * differences, accumulated in ComfyUI's einsum order */
static float weighted_differences(const unipc_state *u, const float *rhos, int count, size_t j)
{
    float sum = rhos[0] * u->d1s[0][j];
    for (int k = 1; k < count; k++) sum = sum + rhos[k] * u->d1s[k][j];
    return sum;
}

/* One UniPC bh1 step of `order` from the newest stored point to sigma t:
 * predictor from the stored x0 predictions, then (if use_corrector) a model
 * call at t and the corrector. x (n) is updated in place; *evaluated tells
 * whether model_t now holds the x0 prediction at t. */
static kiln_status unipc_update(sampler_run *r, unipc_state *u, float *x, float t, int order, bool use_corrector,
                                bool *evaluated)
{
    size_t n = r->n;
    int newest = u->count - 1;
    float t_prev_0 = u->t_prev[newest];
    const float *model_prev_0 = u->model_prev[newest];
    float lambda_prev_0 = vp_lambda(t_prev_0), lambda_t = vp_lambda(t);
    float sigma_prev_0 = vp_std(t_prev_0), sigma_t = vp_std(t);
    float alpha_t = expf(vp_log_alpha(t));
    float h = lambda_t - lambda_prev_0;

    float rks[UNIPC_MAX_ORDER];
    for (int i = 1; i < order; i++) {
        float rk = (vp_lambda(u->t_prev[newest - i]) - lambda_prev_0) / h;
        rks[i - 1] = rk;
        const float *model_prev_i = u->model_prev[newest - i];
        for (size_t j = 0; j < n; j++) u->d1s[i - 1][j] = (model_prev_i[j] - model_prev_0[j]) / rk;
    }
    rks[order - 1] = 1.0f;

    float hh = -h; /* data prediction */
    float h_phi_1 = expm1f(hh);
    float h_phi_k = h_phi_1 / hh - 1.0f;
    float b_h = u->bh2 ? h_phi_1 : hh;
    double rmat[UNIPC_MAX_ORDER * UNIPC_MAX_ORDER], bvec[UNIPC_MAX_ORDER];
    int factorial = 1;
    for (int i = 1; i <= order; i++) {
        for (int k = 0; k < order; k++) {
            float power = i == 1 ? 1.0f : i == 2 ? rks[k] : rks[k] * rks[k];
            rmat[(i - 1) * order + k] = power;
        }
        bvec[i - 1] = h_phi_k * (float)factorial / b_h;
        factorial *= i + 1;
        h_phi_k = h_phi_k / hh - (float)(1.0 / factorial);
    }

    float rhos_p[UNIPC_MAX_ORDER] = {0.5f}, rhos_c[UNIPC_MAX_ORDER] = {0.5f};
    if (order > 2) {
        /* predictor: the leading (order - 1) block of the system */
        double a[UNIPC_MAX_ORDER * UNIPC_MAX_ORDER], b[UNIPC_MAX_ORDER];
        int k = order - 1;
        for (int row = 0; row < k; row++) {
            for (int c = 0; c < k; c++) a[row * k + c] = rmat[row * order + c];
            b[row] = bvec[row];
        }
        sampler_solve_small(a, b, k);
        for (int c = 0; c < k; c++) rhos_p[c] = (float)b[c];
    }
    if (use_corrector && order > 1) {
        sampler_solve_small(rmat, bvec, order);
        for (int c = 0; c < order; c++) rhos_c[c] = (float)bvec[c];
    }

    float keep = sigma_t / sigma_prev_0, take = alpha_t * h_phi_1, step = alpha_t * b_h;
    for (size_t j = 0; j < n; j++) {
        float base = keep * x[j] - take * model_prev_0[j];
        u->x_t_[j] = base;
        x[j] = order > 1 ? base - step * weighted_differences(u, rhos_p, order - 1, j) : base;
    }
    *evaluated = false;
    if (!use_corrector) return KILN_OK;
    TRY(unipc_x0(r, x, t, u->x_k, u->model_t));
    *evaluated = true;
    float rho_t = rhos_c[order - 1];
    for (size_t j = 0; j < n; j++) {
        float corr = order > 1 ? weighted_differences(u, rhos_c, order - 1, j) : 0.0f;
        float d1_t = u->model_t[j] - model_prev_0[j];
        x[j] = u->x_t_[j] - step * (corr + rho_t * d1_t);
    }
    return KILN_OK;
}

/* Stores the x0 prediction at sigma t as the newest point, dropping the
 * oldest once `order` are kept. The buffer of the dropped one is reused. */
static void unipc_push(unipc_state *u, int order, float t, float **model)
{
    if (u->count == order) {
        float *oldest = u->model_prev[0];
        memmove(u->model_prev, u->model_prev + 1, (size_t)(order - 1) * sizeof *u->model_prev);
        memmove(u->t_prev, u->t_prev + 1, (size_t)(order - 1) * sizeof *u->t_prev);
        u->count--;
        u->model_prev[u->count] = *model;
        *model = oldest;
    } else {
        float *spare = u->model_prev[u->count];
        u->model_prev[u->count] = *model;
        *model = spare;
    }
    u->t_prev[u->count] = t;
    u->count++;
}

/* UniPC (bh1) multistep as ComfyUI runs it: order min(3, steps - 1), lower
 * orders for the first and last steps, no corrector on the final step, and
 * a final sigma of 0 replaced by 0.001. (With a single step that order is 0
 * and ComfyUI makes no update at all; so does this.) */
static kiln_status sample_uni_pc(sampler_run *r, float *x, float *ws, bool bh2)
{
    size_t n = r->n;
    int steps = r->steps;
    int order = steps - 1 < UNIPC_MAX_ORDER ? steps - 1 : UNIPC_MAX_ORDER;
    unipc_state u = {.count = 0, .bh2 = bh2};
    for (int k = 0; k < UNIPC_MAX_ORDER; k++) u.model_prev[k] = ws + (size_t)k * n;
    u.x_t_ = ws + 3 * n;
    u.d1s[0] = ws + 4 * n;
    u.d1s[1] = ws + 5 * n;
    u.x_k = ws + 6 * n;
    u.model_t = ws + 7 * n;
    float t_last = r->sigmas[steps] == 0.0f ? 0.001f : r->sigmas[steps];

    float t0 = r->sigmas[0];
    float start_scale = sqrtf(1.0f + t0 * t0);
    for (size_t j = 0; j < n; j++) x[j] = x[j] / start_scale;

    for (int step_index = 0; step_index < steps; step_index++) {
        bool evaluated;
        if (step_index == 0) {
            TRY(unipc_x0(r, x, t0, u.x_k, u.model_t));
            unipc_push(&u, UNIPC_MAX_ORDER, t0, &u.model_t);
        } else if (step_index < order) {
            float t = r->sigmas[step_index]; /* step_index < order <= steps - 1 */
            TRY(unipc_update(r, &u, x, t, step_index, true, &evaluated));
            if (!evaluated) TRY(unipc_x0(r, x, t, u.x_k, u.model_t));
            unipc_push(&u, UNIPC_MAX_ORDER, t, &u.model_t);
        } else {
            int last = step_index == steps - 1 ? steps : step_index;
            for (int step = step_index; step <= last; step++) {
                float t = step == steps ? t_last : r->sigmas[step];
                int step_order = steps + 1 - step < order ? steps + 1 - step : order;
                TRY(unipc_update(r, &u, x, t, step_order, step != steps, &evaluated));
                if (step < steps) {
                    if (!evaluated) TRY(unipc_x0(r, x, t, u.x_k, u.model_t));
                    unipc_push(&u, order, t, &u.model_t);
                } else {
                    /* the final point needs no x0 prediction, only its place */
                    u.t_prev[u.count - 1] = t;
                }
            }
        }
        TRY(report(r, step_index, u.model_prev[u.count - 1]));
    }
    float end_alpha = vp_alpha(t_last);
    for (size_t j = 0; j < n; j++) x[j] = x[j] / end_alpha;
    return KILN_OK;
}

static const char *const sampler_names[KILN_SAMPLER_COUNT] = {
    [KILN_SAMPLER_EULER] = "euler",
    [KILN_SAMPLER_EULER_ANCESTRAL] = "euler_ancestral",
    [KILN_SAMPLER_HEUN] = "heun",
    [KILN_SAMPLER_DPM_2] = "dpm_2",
    [KILN_SAMPLER_DPM_2_ANCESTRAL] = "dpm_2_ancestral",
    [KILN_SAMPLER_LMS] = "lms",
    [KILN_SAMPLER_DPMPP_2S_ANCESTRAL] = "dpmpp_2s_ancestral",
    [KILN_SAMPLER_DPMPP_SDE] = "dpmpp_sde",
    [KILN_SAMPLER_DPMPP_2M] = "dpmpp_2m",
    [KILN_SAMPLER_DPMPP_2M_SDE] = "dpmpp_2m_sde",
    [KILN_SAMPLER_DPMPP_3M_SDE] = "dpmpp_3m_sde",
    [KILN_SAMPLER_LCM] = "lcm",
    [KILN_SAMPLER_IPNDM] = "ipndm",
    [KILN_SAMPLER_DEIS] = "deis",
    [KILN_SAMPLER_DDIM] = "ddim",
    [KILN_SAMPLER_UNI_PC] = "uni_pc",
    [KILN_SAMPLER_UNI_PC_BH2] = "uni_pc_bh2",
    [KILN_SAMPLER_DPM_FAST] = "dpm_fast",
    [KILN_SAMPLER_DPM_ADAPTIVE] = "dpm_adaptive",
    [KILN_SAMPLER_DPMPP_2M_SDE_HEUN] = "dpmpp_2m_sde_heun",
    [KILN_SAMPLER_RES_MULTISTEP] = "res_multistep",
    [KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL] = "res_multistep_ancestral",
    [KILN_SAMPLER_RES_MULTISTEP_CFG_PP] = "res_multistep_cfg_pp",
    [KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL_CFG_PP] = "res_multistep_ancestral_cfg_pp",
    [KILN_SAMPLER_GRADIENT_ESTIMATION] = "gradient_estimation",
    [KILN_SAMPLER_GRADIENT_ESTIMATION_CFG_PP] = "gradient_estimation_cfg_pp",
    [KILN_SAMPLER_ER_SDE] = "er_sde",
    [KILN_SAMPLER_SEEDS_2] = "seeds_2",
    [KILN_SAMPLER_SEEDS_3] = "seeds_3",
    [KILN_SAMPLER_DDPM] = "ddpm",
    [KILN_SAMPLER_HEUNPP2] = "heunpp2",
    [KILN_SAMPLER_IPNDM_V] = "ipndm_v",
    [KILN_SAMPLER_EULER_CFG_PP] = "euler_cfg_pp",
    [KILN_SAMPLER_EULER_ANCESTRAL_CFG_PP] = "euler_ancestral_cfg_pp",
    [KILN_SAMPLER_DPMPP_2M_CFG_PP] = "dpmpp_2m_cfg_pp",
    [KILN_SAMPLER_DPMPP_2S_ANCESTRAL_CFG_PP] = "dpmpp_2s_ancestral_cfg_pp",
    [KILN_SAMPLER_SA_SOLVER] = "sa_solver",
    [KILN_SAMPLER_SA_SOLVER_PECE] = "sa_solver_pece",
};

/* ComfyUI's SDE samplers whose Brownian tree lives on the model's device:
 * on a machine without a GPU that is the CPU, and they are their plain
 * names' runs, as kiln runs them (ComfyUI on a CUDA GPU draws other noise). */
static const struct {
    const char *name;
    kiln_sampler sampler;
} device_noise_samplers[] = {
    {"dpmpp_sde_gpu", KILN_SAMPLER_DPMPP_SDE},
    {"dpmpp_2m_sde_gpu", KILN_SAMPLER_DPMPP_2M_SDE},
    {"dpmpp_2m_sde_heun_gpu", KILN_SAMPLER_DPMPP_2M_SDE_HEUN},
    {"dpmpp_3m_sde_gpu", KILN_SAMPLER_DPMPP_3M_SDE},
};

const char *kiln_sampler_name(kiln_sampler sampler)
{
    return (unsigned)sampler < KILN_SAMPLER_COUNT ? sampler_names[sampler] : NULL;
}

kiln_status kiln_sampler_from_name(const char *name, kiln_sampler *out)
{
    char valid[1024] = "";
    for (int s = 0; s < KILN_SAMPLER_COUNT; s++) {
        if (name && strcmp(name, sampler_names[s]) == 0) {
            *out = (kiln_sampler)s;
            return KILN_OK;
        }
        strcat(valid, s ? ", " : "");
        strcat(valid, sampler_names[s]);
    }
    for (size_t i = 0; name && i < sizeof device_noise_samplers / sizeof *device_noise_samplers; i++)
        if (strcmp(name, device_noise_samplers[i].name) == 0) {
            *out = device_noise_samplers[i].sampler;
            return KILN_OK;
        }
    return kiln_fail(KILN_ERR_INVALID_ARG, "unknown sampler \"%s\" (valid: %s)", name ? name : "(null)", valid);
}

kiln_sampler_noise kiln_sampler_noise_kind(kiln_sampler sampler)
{
    switch (sampler) {
    case KILN_SAMPLER_EULER_ANCESTRAL:
    case KILN_SAMPLER_DPM_2_ANCESTRAL:
    case KILN_SAMPLER_DPMPP_2S_ANCESTRAL:
    case KILN_SAMPLER_LCM:
    case KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL:
    case KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL_CFG_PP:
    case KILN_SAMPLER_ER_SDE:
    case KILN_SAMPLER_SEEDS_2:
    case KILN_SAMPLER_SEEDS_3:
    case KILN_SAMPLER_DDPM:
    case KILN_SAMPLER_EULER_ANCESTRAL_CFG_PP:
    case KILN_SAMPLER_DPMPP_2S_ANCESTRAL_CFG_PP:
    case KILN_SAMPLER_SA_SOLVER:
    case KILN_SAMPLER_SA_SOLVER_PECE: return KILN_SAMPLER_NOISE_ANCESTRAL;
    case KILN_SAMPLER_DPMPP_SDE:
    case KILN_SAMPLER_DPMPP_2M_SDE:
    case KILN_SAMPLER_DPMPP_2M_SDE_HEUN:
    case KILN_SAMPLER_DPMPP_3M_SDE: return KILN_SAMPLER_NOISE_BROWNIAN;
    default: return KILN_SAMPLER_NOISE_NONE;
    }
}

bool kiln_sampler_is_cfg_pp(kiln_sampler sampler)
{
    switch (sampler) {
    case KILN_SAMPLER_RES_MULTISTEP_CFG_PP:
    case KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL_CFG_PP:
    case KILN_SAMPLER_GRADIENT_ESTIMATION_CFG_PP:
    case KILN_SAMPLER_EULER_CFG_PP:
    case KILN_SAMPLER_EULER_ANCESTRAL_CFG_PP:
    case KILN_SAMPLER_DPMPP_2M_CFG_PP:
    case KILN_SAMPLER_DPMPP_2S_ANCESTRAL_CFG_PP: return true;
    default: return false;
    }
}

/* The samplers that step in half-log-SNR on a flow model too, where sigma 1
 * is out of reach (ComfyUI's offset_first_sigma_for_snr). */
static bool steps_in_half_log_snr(kiln_sampler sampler)
{
    switch (sampler) {
    case KILN_SAMPLER_ER_SDE:
    case KILN_SAMPLER_SEEDS_2:
    case KILN_SAMPLER_SEEDS_3:
    case KILN_SAMPLER_SA_SOLVER:
    case KILN_SAMPLER_SA_SOLVER_PECE: return true;
    default: return kiln_sampler_noise_kind(sampler) == KILN_SAMPLER_NOISE_BROWNIAN;
    }
}

bool kiln_sampler_discards_penultimate_sigma(kiln_sampler sampler)
{
    return sampler == KILN_SAMPLER_DPM_2 || sampler == KILN_SAMPLER_DPM_2_ANCESTRAL || sampler == KILN_SAMPLER_UNI_PC ||
           sampler == KILN_SAMPLER_UNI_PC_BH2;
}

void kiln_sample_args_init(kiln_sample_args *args)
{
    memset(args, 0, sizeof *args);
    args->eta = 1.0f;
    args->s_noise = 1.0f;
    args->max_stage = 3;
    args->seeds_r = 0.5;
    args->sa_predictor_order = 3;
    args->sa_corrector_order = 4;
    args->dpm_order = 3;
    args->dpm_rtol = 0.05, args->dpm_atol = 0.0078, args->dpm_h_init = 0.05;
    args->dpm_pcoeff = 0.0, args->dpm_icoeff = 1.0, args->dpm_dcoeff = 0.0, args->dpm_accept_safety = 0.81;
}

kiln_status kiln_sample(const kiln_sample_args *args, float *x)
{
    const char *name = kiln_sampler_name(args->sampler);
    if (!name) return kiln_fail(KILN_ERR_INVALID_ARG, "sample: no sampler with id %d", (int)args->sampler);
    if (!args->denoise) return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: no denoiser callback", name);
    if (args->n == 0 || !x) return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: empty latent", name);
    if (args->nsigmas == 0 || !args->sigmas) return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: no sigmas", name);
    if (args->nsigmas > 1000001)
        return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: %zu sigmas (at most 1000001)", name, args->nsigmas);
    for (size_t i = 0; i < args->nsigmas; i++) {
        float s = args->sigmas[i];
        bool last = i + 1 == args->nsigmas;
        if (!isfinite(s) || s < 0.0f || (!last && s == 0.0f))
            return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: sigma %zu is %g (need finite, > 0 before the last)",
                             name, i, (double)s);
    }
    if (args->lms_order < 0 || args->lms_order > 4) /* ComfyUI's go to 100 */
        return kiln_fail(args->lms_order > 4 ? KILN_ERR_UNSUPPORTED : KILN_ERR_INVALID_ARG,
                         "sample %s: lms order %d (kiln's go from 1 to 4; 0: 4)", name, args->lms_order);
    if (args->max_stage < 1 || args->max_stage > 3 || !(args->er_sde_power >= 0.0) ||
        !(args->seeds_r > 0.0 && args->seeds_r <= 1.0) || args->sa_predictor_order < 1 ||
        args->sa_predictor_order > 6 || args->sa_corrector_order < 0 || args->sa_corrector_order > 6)
        return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: max_stage %d (1 to 3), er_sde power %g (>= 0), seeds r %g "
                         "(in (0, 1]), sa_solver orders %d and %d (1 to 6, 0 to 6)", name, args->max_stage,
                         args->er_sde_power, args->seeds_r, args->sa_predictor_order, args->sa_corrector_order);
    if (!(args->eta >= 0.0f) || !(args->s_noise >= 0.0f))
        return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: eta (%g) and s_noise (%g) must be >= 0", name,
                         (double)args->eta, (double)args->s_noise);
    if (kiln_sampler_is_cfg_pp(args->sampler) && !args->uncond)
        return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: a CFG++ sampler needs the unconditional prediction "
                         "(no uncond callback)", name);
    if (args->nsigmas == 1) return KILN_OK; /* nothing to walk, as in ComfyUI */

    sampler_run r = {.args = args, .sigmas = args->sigmas, .steps = (int)(args->nsigmas - 1), .n = args->n};
    /* a flow model's SDE step is in half-log-SNR, infinite at sigma 1: ComfyUI starts those just below it */
    float *offset_sigmas = NULL;
    if (args->flow && steps_in_half_log_snr(args->sampler) && args->sigmas[0] >= 1.0f) {
        if (!(args->flow_first_sigma > 0.0f && args->flow_first_sigma < 1.0f))
            return kiln_fail(KILN_ERR_INVALID_ARG, "sample %s: a flow schedule from sigma 1 needs flow_first_sigma "
                             "in (0, 1), not %g", name, (double)args->flow_first_sigma);
        if (!(offset_sigmas = malloc(args->nsigmas * sizeof *offset_sigmas)))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "sample %s: out of host memory", name);
        memcpy(offset_sigmas, args->sigmas, args->nsigmas * sizeof *offset_sigmas);
        offset_sigmas[0] = args->flow_first_sigma;
        r.sigmas = offset_sigmas;
    }
    r.noise = args->noise;
    r.noise_ctx = args->noise_ctx;
    bool own_tree = false;
    if (!r.noise && kiln_sampler_noise_kind(args->sampler) == KILN_SAMPLER_NOISE_BROWNIAN) {
        float sigma_min = INFINITY, sigma_max = 0.0f;
        for (size_t i = 0; i < args->nsigmas; i++) {
            if (args->sigmas[i] > 0.0f && args->sigmas[i] < sigma_min) sigma_min = args->sigmas[i];
            if (args->sigmas[i] > sigma_max) sigma_max = args->sigmas[i];
        }
        TRY(kiln_brownian_tree_init(&r.default_tree, args->seed, sigma_min, sigma_max, args->n));
        own_tree = true;
        r.noise = kiln_brownian_tree_noise;
        r.noise_ctx = &r.default_tree;
    } else if (!r.noise) {
        kiln_rng_seed(&r.default_rng, args->seed);
        r.noise = kiln_noise_from_rng;
        r.noise_ctx = &r.default_rng;
    }
    float *ws = malloc(WORKSPACE_BUFFERS * args->n * sizeof *ws);
    if (!ws) {
        if (own_tree) kiln_brownian_tree_free(&r.default_tree);
        free(offset_sigmas);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "sample %s: workspace of %d x %zu floats", name, WORKSPACE_BUFFERS,
                         args->n);
    }
    kiln_status st = KILN_OK;
    switch (args->sampler) {
    case KILN_SAMPLER_EULER:
    case KILN_SAMPLER_DDIM: st = sample_euler(&r, x, ws); break;
    case KILN_SAMPLER_EULER_ANCESTRAL:
        st = args->flow ? sample_euler_ancestral_rf(&r, x, ws) : sample_euler_ancestral(&r, x, ws);
        break;
    case KILN_SAMPLER_HEUN: st = sample_heun(&r, x, ws); break;
    case KILN_SAMPLER_DPM_2: st = sample_dpm_2(&r, x, ws); break;
    case KILN_SAMPLER_DPM_2_ANCESTRAL: st = sample_dpm_2_ancestral(&r, x, ws); break;
    case KILN_SAMPLER_LMS: st = sample_lms(&r, x, ws); break;
    case KILN_SAMPLER_DPMPP_2S_ANCESTRAL:
    case KILN_SAMPLER_DPMPP_2S_ANCESTRAL_CFG_PP: {
        const bool cfg_pp = args->sampler == KILN_SAMPLER_DPMPP_2S_ANCESTRAL_CFG_PP;
        st = args->flow ? sample_dpmpp_2s_ancestral_rf(&r, x, ws, cfg_pp)
                        : sample_dpmpp_2s_ancestral(&r, x, ws, cfg_pp);
        break;
    }
    case KILN_SAMPLER_DPMPP_SDE: st = sample_dpmpp_sde(&r, x, ws); break;
    case KILN_SAMPLER_DPMPP_2M: st = sample_dpmpp_2m(&r, x, ws); break;
    case KILN_SAMPLER_DPMPP_2M_SDE: st = sample_dpmpp_multistep_sde(&r, x, ws, 2, false); break;
    case KILN_SAMPLER_DPMPP_2M_SDE_HEUN: st = sample_dpmpp_multistep_sde(&r, x, ws, 2, true); break;
    case KILN_SAMPLER_DPMPP_3M_SDE: st = sample_dpmpp_multistep_sde(&r, x, ws, 3, false); break;
    case KILN_SAMPLER_LCM: st = sample_lcm(&r, x, ws); break;
    case KILN_SAMPLER_IPNDM: st = sample_ipndm(&r, x, ws); break;
    case KILN_SAMPLER_DEIS: st = sample_deis(&r, x, ws); break;
    case KILN_SAMPLER_UNI_PC: st = sample_uni_pc(&r, x, ws, false); break;
    case KILN_SAMPLER_UNI_PC_BH2: st = sample_uni_pc(&r, x, ws, true); break;
    case KILN_SAMPLER_DPM_FAST: st = sample_dpm_fast(&r, x, ws); break;
    case KILN_SAMPLER_DPM_ADAPTIVE: st = sample_dpm_adaptive(&r, x, ws); break;
    case KILN_SAMPLER_RES_MULTISTEP: st = sample_res_multistep(&r, x, ws, 0.0, false); break;
    case KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL: st = sample_res_multistep(&r, x, ws, args->eta, false); break;
    case KILN_SAMPLER_RES_MULTISTEP_CFG_PP: st = sample_res_multistep(&r, x, ws, 0.0, true); break;
    case KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL_CFG_PP: st = sample_res_multistep(&r, x, ws, args->eta, true); break;
    case KILN_SAMPLER_GRADIENT_ESTIMATION: st = sample_gradient_estimation(&r, x, ws, false); break;
    case KILN_SAMPLER_GRADIENT_ESTIMATION_CFG_PP: st = sample_gradient_estimation(&r, x, ws, true); break;
    case KILN_SAMPLER_ER_SDE: st = sample_er_sde(&r, x, ws); break;
    case KILN_SAMPLER_SEEDS_2: st = sample_seeds(&r, x, ws, 2); break;
    case KILN_SAMPLER_SEEDS_3: st = sample_seeds(&r, x, ws, 3); break;
    case KILN_SAMPLER_DDPM: st = sample_ddpm(&r, x, ws); break;
    case KILN_SAMPLER_HEUNPP2: st = sample_heunpp2(&r, x, ws); break;
    case KILN_SAMPLER_IPNDM_V: st = sample_ipndm_v(&r, x, ws); break;
    case KILN_SAMPLER_EULER_CFG_PP:
        st = args->euler_pp ? sample_euler_pp(&r, x, ws) : sample_euler_ancestral_cfg_pp(&r, x, ws, 0.0, 0.0);
        break;
    case KILN_SAMPLER_EULER_ANCESTRAL_CFG_PP:
        st = sample_euler_ancestral_cfg_pp(&r, x, ws, args->eta, args->s_noise);
        break;
    case KILN_SAMPLER_DPMPP_2M_CFG_PP: st = sample_dpmpp_2m_cfg_pp(&r, x, ws); break;
    case KILN_SAMPLER_SA_SOLVER: st = sample_sa_solver(&r, x, ws, false); break;
    case KILN_SAMPLER_SA_SOLVER_PECE: st = sample_sa_solver(&r, x, ws, true); break;
    case KILN_SAMPLER_COUNT: break;
    }
    free(ws);
    free(offset_sigmas);
    if (own_tree) kiln_brownian_tree_free(&r.default_tree);
    return st;
}

void kiln_sampler_start_x(const kiln_model_sampling *ms, float sigma0, const float *noise, const float *latent,
                          float *x, size_t n)
{
    float scale = sigma0;
    if (!ms->flow) { /* max_denoise: a discrete model's noise at its full variance */
        double sigma_max = kiln_sigma_max(ms);
        if (fabs(sigma_max - sigma0) <= 1e-5 * fmax(fabs(sigma_max), fabs((double)sigma0)) || sigma0 > sigma_max)
            scale = sqrtf(1.0f + sigma0 * sigma0);
    }
    for (size_t j = 0; j < n; j++) x[j] = kiln_noise_scaling(ms->flow, scale, noise[j], latent ? latent[j] : 0.0f);
}
