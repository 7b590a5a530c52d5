/* DPM-Solver on a schedule of its own (arXiv 2206.00927), as KSampler's
 * dpm_fast and dpm_adaptive run k-diffusion's (comfy/k_diffusion/sampling.py,
 * eta 0): from the schedule's first sigma to its last above 0, in t =
 * -log(sigma), on the noise prediction eps = (x - x0) / sigma. dpm_fast
 * takes as many model calls as the schedule has steps, in steps of order
 * 3 (the last ones 2 and 1); dpm_adaptive picks its own step sizes from the
 * difference of a second- and a third-order step. Both end at that last
 * sigma, leaving its noise, as ComfyUI's do. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler_internal.h"
#include "schedule.h"

typedef struct dpm_solver {
    sampler_run *r;
    float *eps, *eps_r1, *eps_r2, *u; /* (n) the noise predictions of a step, and a point it evaluates */
} dpm_solver;

static double sigma_of_t(double t) { return exp(-t); }

/* eps at (x, t) into out: the model's x0 turned into its noise. */
static kiln_status dpm_eps(dpm_solver *d, const float *x, double t, float *out)
{
    const float sigma = (float)sigma_of_t(t);
    TRY(denoise(d->r, x, sigma, out));
    for (size_t j = 0; j < d->r->n; j++) out[j] = (x[j] - out[j]) / sigma;
    return KILN_OK;
}

/* u = x - sigma(s) expm1(r h) eps - c (eps_r1 - eps): the point at t + r h
 * (c 0: first order). */
static void dpm_point(float *u, const float *x, const float *eps, double first, double c, const float *eps_r1,
                      size_t n)
{
    const float a = (float)first, b = (float)c;
    for (size_t j = 0; j < n; j++) u[j] = x[j] - a * eps[j] - (eps_r1 ? b * (eps_r1[j] - eps[j]) : 0.0f);
}

/* One step of order 1, 2 (its midpoint at r1) or 3 (at r1 = 1/3 and 2/3)
 * from x at t to out at t_next;
 * d->eps holds eps at (x, t) already, and with have_r1 d->eps_r1 the one at
 * t + r1 h (dpm_adaptive's third-order step after its second-order one). */
static kiln_status dpm_step(dpm_solver *d, int order, const float *x, double t, double t_next, double r1,
                            bool have_r1, float *out)
{
    const size_t n = d->r->n;
    const double h = t_next - t, sigma_next = sigma_of_t(t_next), whole = sigma_next * expm1(h);
    if (order == 1) {
        dpm_point(out, x, d->eps, whole, 0.0, NULL, n);
        return KILN_OK;
    }
    const double s1 = t + r1 * h;
    if (!have_r1) {
        dpm_point(d->u, x, d->eps, sigma_of_t(s1) * expm1(r1 * h), 0.0, NULL, n);
        TRY(dpm_eps(d, d->u, s1, d->eps_r1));
    }
    if (order == 2) {
        dpm_point(out, x, d->eps, whole, sigma_next / (2.0 * r1) * expm1(h), d->eps_r1, n);
        return KILN_OK;
    }
    const double r2 = 2.0 / 3.0, s2 = t + r2 * h;
    dpm_point(d->u, x, d->eps, sigma_of_t(s2) * expm1(r2 * h),
              sigma_of_t(s2) * (r2 / r1) * (expm1(r2 * h) / (r2 * h) - 1.0), d->eps_r1, n);
    TRY(dpm_eps(d, d->u, s2, d->eps_r2));
    dpm_point(out, x, d->eps, whole, sigma_next / r2 * (expm1(h) / h - 1.0), d->eps_r2, n);
    return KILN_OK;
}

/* The report of a step: its x0 prediction, x - sigma eps, in u. */
static kiln_status dpm_report(dpm_solver *d, int step, int total, const float *x, double t)
{
    const float sigma = (float)sigma_of_t(t);
    for (size_t j = 0; j < d->r->n; j++) d->u[j] = x[j] - sigma * d->eps[j];
    return report_step(d->r, step, total, d->u);
}

/* The schedule's ends in t: its first sigma and its last above 0. */
static void dpm_ends(const sampler_run *r, float *t_start, float *t_end)
{
    const float last = r->sigmas[r->steps] != 0.0f ? r->sigmas[r->steps] : r->sigmas[r->steps - 1];
    *t_start = -logf(r->sigmas[0]);
    *t_end = -logf(last);
}

kiln_status sample_dpm_fast(sampler_run *r, float *x, float *ws)
{
    size_t n = r->n;
    dpm_solver d = {r, ws, ws + n, ws + 2 * n, ws + 3 * n};
    float *next = ws + 4 * n, t_start, t_end;
    dpm_ends(r, &t_start, &t_end);
    const int nfe = r->steps, m = nfe / 3 + 1; /* m steps, their orders adding up to nfe */
    float *ts = malloc((size_t)(m + 1) * sizeof *ts);
    if (!ts) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "sample dpm_fast: out of host memory");
    kiln_linspace_f32(t_start, t_end, m + 1, ts);
    kiln_status st = KILN_OK;
    for (int i = 0; i < m && st == KILN_OK; i++) {
        /* order 3 throughout, ending in 2 and 1 where 3 divides the calls, else in what is left */
        const int order = nfe % 3 == 0 ? (i < m - 2 ? 3 : i == m - 2 ? 2 : 1) : (i < m - 1 ? 3 : nfe % 3);
        if ((st = dpm_eps(&d, x, ts[i], d.eps)) != KILN_OK || (st = dpm_report(&d, i, m, x, ts[i])) != KILN_OK ||
            (st = dpm_step(&d, order, x, ts[i], ts[i + 1], order == 3 ? 1.0 / 3.0 : 0.5, false, next)) != KILN_OK)
            break;
        memcpy(x, next, n * sizeof *x);
    }
    free(ts);
    return st;
}

/* dpm_adaptive's norm of the two steps' difference, each element scaled by
 * max(atol, rtol max(|x_low|, |x_prev|)) (torch's float32 tolerances). */
static double dpm_error(const kiln_sample_args *a, const float *low, const float *high, const float *prev, size_t n)
{
    const float atol = (float)a->dpm_atol, rtol = (float)a->dpm_rtol;
    double sum = 0.0;
    for (size_t j = 0; j < n; j++) {
        const float delta = fmaxf(atol, rtol * fmaxf(fabsf(low[j]), fabsf(prev[j])));
        const double e = (double)((low[j] - high[j]) / delta);
        sum += e * e;
    }
    return sqrt(sum) / sqrt((double)n);
}

/* k-diffusion's PIDStepSizeController: the step's factor from the last three
 * accepted inverse errors, limited by 1 + atan(f - 1). */
typedef struct {
    double b[3], errs[3];
    bool started;
} pid_controller;

static double pid_factor(pid_controller *p, double error)
{
    const double inv = 1.0 / (error + 1e-8);
    if (!p->started) p->errs[0] = p->errs[1] = p->errs[2] = inv, p->started = true;
    p->errs[0] = inv;
    return 1.0 + atan(pow(p->errs[0], p->b[0]) * pow(p->errs[1], p->b[1]) * pow(p->errs[2], p->b[2]) - 1.0);
}

kiln_status sample_dpm_adaptive(sampler_run *r, float *x, float *ws)
{
    enum { MAX_TRIES = 10000 };
    const kiln_sample_args *a = r->args;
    const int order = a->dpm_order;
    const float eta = a->dpm_noise ? a->eta : 0.0f;
    if (order != 2 && order != 3) return kiln_fail(KILN_ERR_INVALID_ARG, "dpm_adaptive: order %d (2 or 3)", order);
    size_t n = r->n;
    dpm_solver d = {r, ws, ws + n, ws + 2 * n, ws + 3 * n};
    float *low = ws + 4 * n, *high = ws + 5 * n, *prev = ws + 6 * n, *noise = ws + 7 * n, t_start, t_end;
    dpm_ends(r, &t_start, &t_end);
    memcpy(prev, x, n * sizeof *prev);
    /* with noise, the controller takes the steps as of order 1.5 */
    const double k = eta > 0.0f ? 1.5 : order;
    pid_controller pid = {{(a->dpm_pcoeff + a->dpm_icoeff + a->dpm_dcoeff) / k, -(a->dpm_pcoeff + 2.0 * a->dpm_dcoeff) / k,
                           a->dpm_dcoeff / k}, {0.0, 0.0, 0.0}, false};
    /* without a noise callback the noise continues the seed's stream after the latent's noise */
    if (eta > 0.0f && !a->noise) TRY(draw_noise(r, 0.0f, 0.0f, noise));
    double h = fabs(a->dpm_h_init), s = t_start;
    for (int tries = 0; s < (double)t_end - 1e-5; tries++) {
        if (tries == MAX_TRIES)
            return kiln_fail(KILN_ERR_INVALID_ARG, "sample dpm_adaptive: no end after %d steps", MAX_TRIES);
        const double t = fmin(t_end, (float)(s + h));
        /* with eta, the step lands at the ancestral step's sigma_down and the noise makes up the rest */
        double t_step = t, noise_scale = 0.0;
        if (eta > 0.0f) {
            double up, down;
            ancestral_step((float)sigma_of_t(s), (float)sigma_of_t(t), eta, &down, &up);
            t_step = fmin(t_end, (float)-log(down));
            const double s_to = sigma_of_t(t), s_step = sigma_of_t(t_step);
            noise_scale = sqrt(fmax(s_to * s_to - s_step * s_step, 0.0));
        }
        TRY(dpm_eps(&d, x, s, d.eps));
        /* ComfyUI's progress counts the schedule's steps; tries past them stay at its last */
        TRY(dpm_report(&d, tries < r->steps ? tries : r->steps - 1, r->steps, x, s));
        TRY(dpm_step(&d, order - 1, x, s, t_step, order == 3 ? 1.0 / 3.0 : 0.5, false, low));
        TRY(dpm_step(&d, order, x, s, t_step, order == 3 ? 1.0 / 3.0 : 0.5, order == 3, high));
        const double factor = pid_factor(&pid, dpm_error(a, low, high, prev, n));
        if (factor >= a->dpm_accept_safety) {
            pid.errs[2] = pid.errs[1], pid.errs[1] = pid.errs[0];
            memcpy(prev, low, n * sizeof *prev);
            memcpy(x, high, n * sizeof *x);
            if (eta > 0.0f) {
                TRY(draw_noise(r, (float)sigma_of_t(s), (float)sigma_of_t(t), noise));
                add_noise(x, noise, (float)noise_scale * a->s_noise, n);
            }
            s = t;
        }
        h *= factor;
    }
    return KILN_OK;
}
