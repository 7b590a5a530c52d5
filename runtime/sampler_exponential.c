/* ComfyUI's newer exponential integrators (comfy/k_diffusion/sampling.py and
 * sa_solver.py, as of ComfyUI 0.8.1): each step is exact for the linear part
 * of the diffusion ODE or SDE in half-log-SNR and approximates the x0
 * prediction's change by one or more earlier or intermediate predictions.
 * A discrete model's half-log-SNR is -log(sigma) with alpha 1, a flow
 * model's log((1 - sigma) / sigma) with alpha 1 - sigma (kiln_sample starts
 * a flow schedule from 1 just below it for er_sde, seeds and sa_solver, as
 * ComfyUI does). Scalars are in double; the elementwise updates keep
 * ComfyUI's order of operations in float32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler_internal.h"

/* The noise level of a half-log-SNR: the inverse of half_log_snr. */
static double sigma_of(bool flow, double lambda) { return flow ? 1.0 / (1.0 + exp(lambda)) : exp(-lambda); }

/* h phi_2(h) = (e^h - 1 - h) / h, the second exponential-integrator weight. */
static double h_phi_2(double h) { return (expm1(h) - h) / h; }

/* torch.lerp's two formulas, in double: a lerp of half-log-SNRs. */
static double lerp_double(double a, double b, double w) { return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1.0 - w); }

/* RES multistep (arXiv 2308.02157): second order from the previous x0
 * prediction, in -log(sigma) towards the ancestral step's sigma_down (eta 0:
 * sigma_next, the deterministic solver). With cfg_pp the step is taken from
 * the unconditional prediction and the guidance added back (CFG++). */
kiln_status sample_res_multistep(sampler_run *r, float *x, float *ws, double eta, bool cfg_pp)
{
    size_t n = r->n;
    float *denoised = ws, *uncond = ws + n, *old = ws + 2 * n, *noise = ws + 3 * n;
    const float *x0 = cfg_pp ? uncond : denoised;
    double old_down = 0.0;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        if (cfg_pp) TRY(uncond_of(r, uncond));
        double down, up;
        ancestral_step(sigma, sigma_next, eta, &down, &up);
        TRY(report(r, i, denoised));
        if (down == 0.0 || i == 0) {
            if (cfg_pp) {
                float to = (float)down;
                for (size_t j = 0; j < n; j++) x[j] = denoised[j] + (x[j] - uncond[j]) / sigma * to;
            } else {
                euler_update(x, denoised, sigma, (float)(down - sigma), n);
            }
        } else {
            double t = -log((double)sigma), t_old = -log(old_down), t_next = -log(down);
            double t_prev = -log((double)r->sigmas[i - 1]);
            double h = t_next - t, c2 = (t_prev - t_old) / h;
            double phi_1 = expm1(-h) / -h, phi_2 = (phi_1 - 1.0) / -h;
            double b1 = phi_1 - phi_2 / c2, b2 = phi_2 / c2;
            if (isnan(b1)) b1 = 0.0;
            if (isnan(b2)) b2 = 0.0;
            float keep = (float)exp(-h), hf = (float)h, w1 = (float)b1, w2 = (float)b2;
            for (size_t j = 0; j < n; j++) {
                float from = cfg_pp ? x[j] + (denoised[j] - uncond[j]) : x[j];
                x[j] = keep * from + hf * (w1 * x0[j] + w2 * old[j]);
            }
        }
        /* ComfyUI also draws at eta 0 and adds it times 0: nothing later reads the generator, so kiln skips it */
        if (sigma_next > 0.0f && up > 0.0) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            add_noise(x, noise, r->args->s_noise * (float)up, n);
        }
        memcpy(old, x0, n * sizeof *old);
        old_down = down;
    }
    return KILN_OK;
}

/* er_sde's noise scaler: ER-SDE's lambda (e^(lambda^0.3) + 10), or the
 * reverse-time SDE's lambda^power. */
static double er_noise_scaler(double power, double lambda)
{
    return power > 0.0 ? pow(lambda, power) : lambda * (exp(pow(lambda, 0.3)) + 10.0);
}

/* er_sde's time at sigmas[k]: sigma / alpha. */
static double er_lambda(const sampler_run *r, int k) { return exp(-half_log_snr(r->args->flow, r->sigmas[k])); }

/* VP ER-SDE-Solver-3 (arXiv 2309.06169) with ComfyUI's noise scalers and
 * 200-point integrals: up to third order (max_stage) from the last two
 * steps' x0 predictions, with noise s_noise times the variance the SDE
 * leaves. Its time is er_lambda = sigma / alpha. */
kiln_status sample_er_sde(sampler_run *r, float *x, float *ws)
{
    enum { POINTS = 200 };
    size_t n = r->n;
    const double s_noise = r->args->s_noise, power = r->args->er_sde_power;
    const int max_stage = r->args->max_stage;
    float *denoised = ws, *old = ws + n, *slope = ws + 2 * n, *old_slope = ws + 3 * n, *noise = ws + 4 * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        const int stage = i + 1 < max_stage ? i + 1 : max_stage;
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
        } else {
            const double ls = er_lambda(r, i), lt = er_lambda(r, i + 1);
            const double alpha_s = sigma / ls, alpha_t = sigma_next / lt;
            const double ratio = er_noise_scaler(power, lt) / er_noise_scaler(power, ls);
            const float keep = (float)(alpha_t / alpha_s * ratio), take = (float)(alpha_t * (1.0 - ratio));
            for (size_t j = 0; j < n; j++) x[j] = keep * x[j] + take * denoised[j];
            if (stage >= 2) {
                const double dt = lt - ls, step = -dt / POINTS;
                double s = 0.0, s_u = 0.0;
                for (int k = 0; k < POINTS; k++) {
                    const double at = lt + k * step, scaled = er_noise_scaler(power, at);
                    s += 1.0 / scaled;
                    s_u += (at - ls) / scaled;
                }
                s *= step;
                s_u *= step;
                const float span = (float)(ls - er_lambda(r, i - 1));
                const float c2 = (float)(alpha_t * (dt + s * er_noise_scaler(power, lt)));
                for (size_t j = 0; j < n; j++) {
                    slope[j] = (denoised[j] - old[j]) / span;
                    x[j] = x[j] + c2 * slope[j];
                }
                if (stage >= 3) {
                    const float half_span = (float)((ls - er_lambda(r, i - 2)) / 2.0);
                    const float c3 = (float)(alpha_t * (dt * dt / 2.0 + s_u * er_noise_scaler(power, lt)));
                    for (size_t j = 0; j < n; j++) x[j] = x[j] + c3 * ((slope[j] - old_slope[j]) / half_span);
                }
                float *swap = slope;
                slope = old_slope;
                old_slope = swap;
            }
            if (s_noise > 0.0) {
                const double variance = lt * lt - ls * ls * ratio * ratio;
                TRY(draw_noise(r, sigma, sigma_next, noise));
                add_noise(x, noise, (float)(alpha_t * s_noise * (variance > 0.0 ? sqrt(variance) : 0.0)), n);
            }
        }
        memcpy(old, denoised, n * sizeof *old);
    }
    return KILN_OK;
}

/* x_to = keep x - take (w_1 d_1 + w_2 d_2), the exponential step with a
 * blend of two x0 predictions (w_2 0: from d_1 alone). */
static void exponential_step(float *x_to, const float *x, double keep, double take, double w_1, const float *d_1,
                             double w_2, const float *d_2, size_t n)
{
    const float k = (float)keep, t = (float)take, a = (float)w_1, b = (float)w_2;
    for (size_t j = 0; j < n; j++) x_to[j] = k * x[j] - t * (a * d_1[j] + b * d_2[j]);
}

/* SEEDS-2 and SEEDS-3 (arXiv 2305.14267, data prediction): stages - 1
 * intermediate x0 predictions at fractions r of the step in half-log-SNR,
 * with SDE noise (eta) carried from stage to stage as one Brownian path.
 * SEEDS-2 takes its fraction and its phi_1 or phi_2 solver from args
 * (SamplerSEEDS2; phi_2 at r 1 and eta 0 is exp_heun_2_x0). */
kiln_status sample_seeds(sampler_run *r, float *x, float *ws, int stages)
{
    size_t n = r->n;
    const bool flow = r->args->flow;
    const double eta = r->args->eta, s_noise = r->args->s_noise;
    const bool inject = eta > 0.0 && s_noise > 0.0;
    const double fractions[2][2] = {{r->args->seeds_r, 0.0}, {1.0 / 3.0, 2.0 / 3.0}};
    const double *rs = fractions[stages - 2];
    float *denoised = ws, *x_mid = ws + n, *denoised_2 = ws + 2 * n, *denoised_3 = ws + 3 * n, *sde = ws + 4 * n,
          *noise = ws + 5 * n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        TRY(denoise(r, x, sigma, denoised));
        TRY(report(r, i, denoised));
        if (sigma_next == 0.0f) {
            memcpy(x, denoised, n * sizeof *x);
            continue;
        }
        const double ls = half_log_snr(flow, sigma), lt = half_log_snr(flow, sigma_next);
        const double h = lt - ls, h_eta = h * (eta + 1.0), alpha_t = alpha_of(flow, sigma_next);
        /* stage 2: from x and the first prediction to the first fraction */
        const double r1 = rs[0], sigma_1 = sigma_of(flow, lerp_double(ls, lt, r1));
        exponential_step(x_mid, x, sigma_1 / sigma * exp(-r1 * h * eta), alpha_of(flow, sigma_1), expm1(-r1 * h_eta),
                         denoised, 0.0, denoised, n);
        if (inject) {
            TRY(draw_noise(r, sigma, (float)sigma_1, noise));
            const float amount = (float)sqrt(-expm1(-2.0 * r1 * h * eta));
            for (size_t j = 0; j < n; j++) sde[j] = amount * noise[j];
            add_noise(x_mid, sde, (float)(sigma_1 * s_noise), n);
        }
        TRY(denoise(r, x_mid, (float)sigma_1, denoised_2));
        double r_last = r1, sigma_last = sigma_1;
        if (stages == 2 && r->args->seeds_phi_2) {
            const double b2 = h_phi_2(-h_eta) / r1, b1 = expm1(-h_eta) - b2;
            exponential_step(x, x, sigma_next / sigma * exp(-h * eta), alpha_t, b1, denoised, b2, denoised_2, n);
        } else if (stages == 2) {
            const float fac = (float)(1.0 / (2.0 * r1));
            for (size_t j = 0; j < n; j++) denoised_2[j] = lerp_torch(denoised[j], denoised_2[j], fac);
            exponential_step(x, x, sigma_next / sigma * exp(-h * eta), alpha_t, expm1(-h_eta), denoised_2, 0.0,
                             denoised_2, n);
        } else {
            /* stage 3: the second fraction from the first two predictions, then the step from the first and third */
            const double r2 = rs[1], sigma_2 = sigma_of(flow, lerp_double(ls, lt, r2));
            const double a3_2 = r2 / r1 * h_phi_2(-r2 * h_eta), a3_1 = expm1(-r2 * h_eta) - a3_2;
            exponential_step(x_mid, x, sigma_2 / sigma * exp(-r2 * h * eta), alpha_of(flow, sigma_2), a3_1, denoised,
                             a3_2, denoised_2, n);
            if (inject) {
                const double segment = (r1 - r2) * h * eta;
                TRY(draw_noise(r, (float)sigma_1, (float)sigma_2, noise));
                const float carry = (float)exp(segment), fresh = (float)sqrt(-expm1(2.0 * segment));
                for (size_t j = 0; j < n; j++) sde[j] = sde[j] * carry + fresh * noise[j];
                add_noise(x_mid, sde, (float)(sigma_2 * s_noise), n);
            }
            TRY(denoise(r, x_mid, (float)sigma_2, denoised_3));
            const double b3 = h_phi_2(-h_eta) / r2, b1 = expm1(-h_eta) - b3;
            exponential_step(x, x, sigma_next / sigma * exp(-h * eta), alpha_t, b1, denoised, b3, denoised_3, n);
            r_last = r2;
            sigma_last = sigma_2;
        }
        if (inject) {
            const double segment = (r_last - 1.0) * h * eta;
            TRY(draw_noise(r, (float)sigma_last, sigma_next, noise));
            const float carry = (float)exp(segment), fresh = (float)sqrt(-expm1(2.0 * segment));
            for (size_t j = 0; j < n; j++) sde[j] = sde[j] * carry + fresh * noise[j];
            add_noise(x, sde, (float)(sigma_next * s_noise), n);
        }
    }
    return KILN_OK;
}

enum { SA_MAX_ORDER = 6 };

/* SA-Solver's b coefficients for a step from half-log-SNR ls to lt over the
 * x0 predictions at lambdas[0..k-1]: the integrals of their Lagrange basis
 * against e^((1 + tau^2) lambda), times alpha_t; with simple_order_2 at
 * order 2 the paper's simpler pair (its Appendix D). */
static void sa_solver_coefficients(bool flow, double sigma_next, const double *lambdas, int k, double ls, double lt,
                                   double tau, bool simple_order_2, bool corrector, double *b)
{
    const double tau_mul = 1.0 + tau * tau, h = lt - ls, decay = exp(-tau_mul * h);
    const double alpha_t = alpha_of(flow, sigma_next);
    if (simple_order_2 && k == 2) {
        const double whole = alpha_t * -expm1(-h * tau_mul);
        b[1] = corrector ? alpha_t * (0.5 * tau_mul * h)
                         : whole - alpha_t * (0.5 * tau_mul * h * h) / (lambdas[0] - ls);
        b[0] = whole - b[1];
        return;
    }
    double products[SA_MAX_ORDER], vandermonde_t[SA_MAX_ORDER * SA_MAX_ORDER];
    for (int p = 0; p < k; p++) products[p] = pow(lt, p) - pow(ls, p) * decay;
    /* integration by parts: e_p = sum_q<=p (-1)^(p-q) p!/q! / tau_mul^(p-q) products_q */
    for (int p = 0; p < k; p++) {
        double sum = 0.0, weight = 1.0;
        for (int q = p; q >= 0; q--) {
            sum += weight * products[q];
            weight *= -(double)q / tau_mul;
        }
        b[p] = sum;
    }
    for (int p = 0; p < k; p++)
        for (int j = 0; j < k; j++) vandermonde_t[p * k + j] = pow(lambdas[j], p);
    sampler_solve_small(vandermonde_t, b, k);
    for (int j = 0; j < k; j++) b[j] *= alpha_t;
}

/* x_to = keep x + sum_j b_j preds_j over the newest k predictions. */
static void sa_solver_combine(float *x_to, const float *x, double keep, const double *b, float *const *preds, int k,
                              size_t n)
{
    float w[SA_MAX_ORDER];
    for (int j = 0; j < k; j++) w[j] = (float)b[j];
    const float kf = (float)keep;
    for (size_t e = 0; e < n; e++) {
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += w[j] * preds[j][e];
        x_to[e] = kf * x[e] + sum;
    }
}

/* SA-Solver (arXiv 2309.05019): a stochastic Adams predictor and corrector
 * (KSampler's: orders 3 and 4) over the last x0 predictions, with SDE noise
 * (tau = eta) while the step's sigma lies in args->sa_solver_sigmas; lower
 * orders at the start and, on a schedule ending at 0, towards the end. pece
 * evaluates the corrected state again and uses that prediction. */
kiln_status sample_sa_solver(sampler_run *r, float *x, float *ws, bool pece)
{
    size_t n = r->n;
    const bool flow = r->args->flow, simple = r->args->sa_simple_order_2;
    const double s_noise = r->args->s_noise, eta = r->args->eta;
    const double tau_hi = r->args->sa_solver_sigmas[0], tau_lo = r->args->sa_solver_sigmas[1];
    const int predictor_order = r->args->sa_predictor_order, corrector_order = r->args->sa_corrector_order;
    const int keep = predictor_order > corrector_order ? predictor_order : corrector_order;
    float *preds[SA_MAX_ORDER], *x_pred = ws + SA_MAX_ORDER * n, *sde = ws + (SA_MAX_ORDER + 1) * n,
          *noise = ws + (SA_MAX_ORDER + 2) * n;
    for (int k = 0; k < SA_MAX_ORDER; k++) preds[k] = ws + (size_t)k * n;
    double lambdas[SA_MAX_ORDER]; /* of the stored predictions' sigmas */
    int count = 0;
    double h = 0.0, tau = 0.0;
    const bool lower_to_end = r->sigmas[r->steps] == 0.0f;
    memcpy(x_pred, x, n * sizeof *x);
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        if (count == keep) { /* the oldest buffer takes the newest prediction */
            float *oldest = preds[0];
            memmove(preds, preds + 1, (size_t)(keep - 1) * sizeof *preds);
            memmove(lambdas, lambdas + 1, (size_t)(keep - 1) * sizeof *lambdas);
            preds[keep - 1] = oldest;
            count--;
        }
        float *denoised = preds[count];
        lambdas[count++] = half_log_snr(flow, sigma);
        TRY(denoise(r, x_pred, sigma, denoised));
        TRY(report(r, i, denoised));
        int predictor = count < predictor_order ? count : predictor_order;
        int corrector = count < corrector_order ? count : corrector_order;
        if (i == 0 || (sigma_next == 0.0f && !pece)) corrector = 0;
        if (lower_to_end) {
            if (predictor > r->steps - 1 - i) predictor = r->steps - 1 - i;
            if (corrector > r->steps - i) corrector = r->steps - i;
        }
        double b[SA_MAX_ORDER];
        if (corrector == 0) {
            memcpy(x, x_pred, n * sizeof *x);
        } else {
            const double ls = half_log_snr(flow, r->sigmas[i - 1]), lt = lambdas[count - 1];
            sa_solver_coefficients(flow, sigma, lambdas + count - corrector, corrector, ls, lt, tau, simple, true, b);
            sa_solver_combine(x, x, sigma / r->sigmas[i - 1] * exp(-tau * tau * h), b, preds + count - corrector,
                              corrector, n);
            if (tau > 0.0 && s_noise > 0.0)
                for (size_t j = 0; j < n; j++) x[j] = x[j] + sde[j];
            if (pece) TRY(denoise(r, x, sigma, denoised));
        }
        if (sigma_next == 0.0f) {
            memcpy(x_pred, denoised, n * sizeof *x_pred);
            continue;
        }
        tau = eta > 0.0 && sigma_next <= tau_hi && sigma_next >= tau_lo ? eta : 0.0;
        const double ls = lambdas[count - 1], lt = half_log_snr(flow, sigma_next);
        sa_solver_coefficients(flow, sigma_next, lambdas + count - predictor, predictor, ls, lt, tau, simple, false, b);
        h = lt - ls;
        sa_solver_combine(x_pred, x, sigma_next / sigma * exp(-tau * tau * h), b, preds + count - predictor,
                          predictor, n);
        if (tau > 0.0 && s_noise > 0.0) {
            TRY(draw_noise(r, sigma, sigma_next, noise));
            const float amount = (float)(sigma_next * sqrt(-expm1(-2.0 * tau * tau * h)) * s_noise);
            for (size_t j = 0; j < n; j++) sde[j] = noise[j] * amount;
            add_noise(x_pred, sde, 1.0f, n);
        }
    }
    memcpy(x, x_pred, n * sizeof *x);
    return KILN_OK;
}
