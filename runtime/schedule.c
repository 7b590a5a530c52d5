/* The discrete sigma table and ComfyUI's schedulers.
 *
 * ComfyUI computes schedules with a mix of Python doubles and float32
 * tensors; each scheduler below keeps its precision where it matters (the
 * float32 timestep interpolation, the Python-double index arithmetic that
 * picks table entries) so the sigmas agree to float32 rounding. */
#include "schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define T_LAST (KILN_TRAIN_TIMESTEPS - 1)

/* ModelSamplingFlux.percent_to_sigma's value for percent <= 0, and
 * ModelSamplingDiscrete's (its "above every sigma"). */

/* rescale_zero_terminal_snr_sigmas, in float64 as torch computes it on ComfyUI's float64 sigmas */
static void rescale_zero_terminal_snr(double *sigmas, int n)
{
    const double root_first = sqrt(1.0 / (sigmas[0] * sigmas[0] + 1.0)),
                 root_last = sqrt(1.0 / (sigmas[n - 1] * sigmas[n - 1] + 1.0));
    for (int t = 0; t < n; t++) {
        double root = sqrt(1.0 / (sigmas[t] * sigmas[t] + 1.0));
        root = (root - root_last) * (root_first / (root_first - root_last));
        double alphas_bar = t == n - 1 ? 4.8973451890853435e-08 : root * root;
        sigmas[t] = sqrt((1.0 - alphas_bar) / alphas_bar);
    }
}

/* Betas evenly spaced in their square roots (squared after) or in
 * themselves, as torch.linspace in float64 spaces them: the first half
 * counted from the start, the second from the end. */
static kiln_status init_from_betas(kiln_model_sampling *ms, double linear_start, double linear_end, bool in_roots,
                                   bool zsnr)
{
    if (!(linear_start > 0.0 && linear_start < linear_end && linear_end < 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "model sampling: need 0 < linear_start (%g) < linear_end (%g) < 1",
                         linear_start, linear_end);
    double start = in_roots ? sqrt(linear_start) : linear_start, end = in_roots ? sqrt(linear_end) : linear_end;
    double step = (end - start) / T_LAST;
    double alphas_cumprod = 1.0;
    ms->count = KILN_TRAIN_TIMESTEPS;
    ms->flow = false;
    ms->shift = 0.0;
    ms->snr_shift = false;
    ms->multiplier = 1.0f;
    ms->skip = 1;
    ms->edm = false;
    ms->sigma_data = 1.0f;
    double sigmas[KILN_TRAIN_TIMESTEPS];
    for (int t = 0; t < KILN_TRAIN_TIMESTEPS; t++) {
        double v = t < KILN_TRAIN_TIMESTEPS / 2 ? start + step * t : end - step * (T_LAST - t);
        alphas_cumprod *= 1.0 - (in_roots ? v * v : v);
        sigmas[t] = sqrt((1.0 - alphas_cumprod) / alphas_cumprod);
    }
    if (zsnr) rescale_zero_terminal_snr(sigmas, KILN_TRAIN_TIMESTEPS);
    for (int t = 0; t < KILN_TRAIN_TIMESTEPS; t++) {
        ms->sigmas[t] = (float)sigmas[t];
        ms->log_sigmas[t] = (float)log(sigmas[t]);
    }
    return KILN_OK;
}

kiln_status kiln_model_sampling_init(kiln_model_sampling *ms, double linear_start, double linear_end)
{
    return init_from_betas(ms, linear_start, linear_end, true, false);
}

kiln_status kiln_model_sampling_init_plain(kiln_model_sampling *ms, double linear_start, double linear_end)
{
    return init_from_betas(ms, linear_start, linear_end, false, false);
}

kiln_status kiln_model_sampling_init_betas(kiln_model_sampling *ms, double linear_start, double linear_end, bool plain,
                                           bool zsnr)
{
    return init_from_betas(ms, linear_start, linear_end, !plain, zsnr);
}

/* flux_time_shift(shift, 1, t) on a float32 tensor t: torch turns
 * `1 / t` and `e / (...)` into reciprocal() * scalar, and casts the Python
 * float e^shift to float32; `** 1.0` is the identity. Dividing instead of
 * multiplying by the reciprocal changes about a third of the table's
 * entries by an ulp. */
static float flux_shift_f32(double shift, float t)
{
    float e = (float)exp(shift);
    float inv_t = 1.0f / t;
    float denominator = e + (inv_t - 1.0f);
    return (1.0f / denominator) * e;
}

kiln_status kiln_model_sampling_init_flux(kiln_model_sampling *ms, double shift)
{
    if (!isfinite(shift) || !isfinite((float)exp(shift)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "model sampling: flux shift %g out of range", shift);
    ms->count = KILN_FLOW_TIMESTEPS;
    ms->flow = true;
    ms->shift = shift;
    ms->snr_shift = false;
    ms->multiplier = 1.0f;
    ms->skip = 1;
    ms->edm = false;
    ms->sigma_data = 1.0f;
    for (int i = 0; i < KILN_FLOW_TIMESTEPS; i++) {
        /* torch.arange(1, N + 1) / N: int64 true division, done in float32 */
        float t = (float)(i + 1) / (float)KILN_FLOW_TIMESTEPS;
        ms->sigmas[i] = flux_shift_f32(shift, t);
        ms->log_sigmas[i] = logf(ms->sigmas[i]);
    }
    return KILN_OK;
}

/* time_snr_shift(shift, t) on a float32 tensor t: each product and the
 * quotient rounded to float32, shift and shift - 1 cast to float first. */
static float snr_shift_f32(double shift, float t)
{
    if (shift == 1.0) return t;
    float scaled = (float)shift * t;
    float denominator = 1.0f + (float)(shift - 1.0) * t;
    return scaled / denominator;
}

kiln_status kiln_model_sampling_init_sd3(kiln_model_sampling *ms, double shift)
{
    if (!isfinite(shift) || !(shift > 0.0) || !isfinite((float)shift))
        return kiln_fail(KILN_ERR_INVALID_ARG, "model sampling: SD3 shift %g is not a finite positive number", shift);
    ms->count = KILN_SD3_TIMESTEPS;
    ms->flow = true;
    ms->shift = shift;
    ms->snr_shift = true;
    ms->multiplier = (float)KILN_SD3_TIMESTEPS;
    ms->skip = 1;
    ms->edm = false;
    ms->sigma_data = 1.0f;
    for (int i = 0; i < KILN_SD3_TIMESTEPS; i++) {
        /* (arange(1, N + 1) / N) * multiplier, then sigma(): / multiplier */
        float t = (float)(i + 1) / (float)KILN_SD3_TIMESTEPS * ms->multiplier;
        ms->sigmas[i] = snr_shift_f32(shift, t / ms->multiplier);
        ms->log_sigmas[i] = logf(ms->sigmas[i]);
    }
    return KILN_OK;
}

kiln_status kiln_model_sampling_init_edm(kiln_model_sampling *ms, double sigma_min, double sigma_max,
                                         double sigma_data)
{
    if (!(sigma_min > 0.0 && sigma_min < sigma_max && isfinite(sigma_max) && sigma_data > 0.0 && isfinite(sigma_data)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "model sampling: EDM's sigma_min %g, sigma_max %g, sigma_data %g: need "
                         "0 < sigma_min < sigma_max, sigma_data above 0", sigma_min, sigma_max, sigma_data);
    *ms = (kiln_model_sampling){.count = KILN_TRAIN_TIMESTEPS, .multiplier = 1.0f, .skip = 1, .edm = true,
                                .sigma_data = (float)sigma_data};
    /* torch.linspace of the Python logs in float32, then exp and log of those */
    kiln_linspace_f32((float)log(sigma_min), (float)log(sigma_max), KILN_TRAIN_TIMESTEPS, ms->log_sigmas);
    for (int t = 0; t < KILN_TRAIN_TIMESTEPS; t++) {
        ms->sigmas[t] = expf(ms->log_sigmas[t]);
        ms->log_sigmas[t] = logf(ms->sigmas[t]);
    }
    return KILN_OK;
}

kiln_status kiln_model_sampling_distill(kiln_model_sampling *ms, int steps)
{
    if (ms->flow || ms->edm || ms->skip != 1 || steps < 1 || ms->count % steps)
        return kiln_fail(KILN_ERR_INVALID_ARG, "model sampling: a distilled table of %d steps from one of %d%s", steps,
                         ms->count, ms->flow ? " (flow)" : "");
    const int skip = ms->count / steps;
    for (int i = 0; i < steps; i++) {
        ms->sigmas[i] = ms->sigmas[ms->count - 1 - (steps - 1 - i) * skip];
        ms->log_sigmas[i] = logf(ms->sigmas[i]);
    }
    ms->count = steps;
    ms->skip = skip;
    return KILN_OK;
}

void kiln_lcm_boundary(float timestep, float *c_skip, float *c_out)
{
    const float s = timestep * 10.0f, sigma_data2 = 0.25f;
    *c_skip = sigma_data2 / (s * s + sigma_data2);
    *c_out = s / sqrtf(s * s + sigma_data2);
}

int kiln_sigma_to_timestep(const kiln_model_sampling *ms, float sigma)
{
    float log_sigma = logf(sigma);
    int best = 0;
    float best_dist = fabsf(log_sigma - ms->log_sigmas[0]);
    for (int t = 1; t < ms->count; t++) {
        float dist = fabsf(log_sigma - ms->log_sigmas[t]);
        if (dist < best_dist) {
            best_dist = dist;
            best = t;
        }
    }
    return best;
}

float kiln_model_timestep(const kiln_model_sampling *ms, float sigma)
{
    if (ms->edm) return 0.25f * logf(sigma);
    return ms->flow ? sigma * ms->multiplier : (float)(kiln_sigma_to_timestep(ms, sigma) * ms->skip + ms->skip - 1);
}

float kiln_timestep_to_sigma(const kiln_model_sampling *ms, float t)
{
    if (ms->flow) return ms->snr_shift ? snr_shift_f32(ms->shift, t / ms->multiplier) : flux_shift_f32(ms->shift, t);
    if (ms->edm) return expf(t / 0.25f);
    t = fminf(fmaxf((t - (float)(ms->skip - 1)) / (float)ms->skip, 0.0f), (float)(ms->count - 1));
    int low = (int)floorf(t), high = (int)ceilf(t);
    float w = t - floorf(t);
    float from_low = (1.0f - w) * ms->log_sigmas[low];
    float from_high = w * ms->log_sigmas[high];
    return expf(from_low + from_high);
}

double kiln_percent_to_sigma_value(const kiln_model_sampling *ms, double percent)
{
    if (percent <= 0.0) return ms->flow ? 1.0 : 999999999.9;
    if (percent >= 1.0) return 0.0;
    if (ms->edm) { /* Python floats from the table's ends */
        const double log_min = log((double)kiln_sigma_min(ms));
        return exp((log((double)kiln_sigma_max(ms)) - log_min) * (1.0 - percent) + log_min);
    }
    if (ms->flow) {
        /* Python floats throughout: e / (e + (1 / t - 1) ** 1.0), or shift t / (1 + (shift - 1) t) */
        double e = exp(ms->shift), t = 1.0 - percent;
        if (ms->snr_shift) return ms->shift == 1.0 ? t : ms->shift * t / (1.0 + (ms->shift - 1.0) * t);
        return e / (e + (1.0 / t - 1.0));
    }
    /* ComfyUI's 999 is literal, not len(sigmas) - 1; the float32 tensor's item */
    return kiln_timestep_to_sigma(ms, (float)((1.0 - percent) * 999.0));
}

float kiln_percent_to_sigma(const kiln_model_sampling *ms, double percent)
{
    return (float)kiln_percent_to_sigma_value(ms, percent);
}

/* The first half counts up from start, the second half down from end, each
 * point one fused multiply-add (torch 2.x's CPU kernel; checked against
 * torch 2.15, where a separate multiply and add differs by an ulp at 2 of 20
 * points). */
void kiln_linspace_f32(float start, float end, int n, float *out)
{
    if (n == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(n - 1);
    for (int i = 0; i < n; i++) {
        if (i < n / 2) out[i] = fmaf(step, (float)i, start);
        else out[i] = fmaf(-step, (float)(n - 1 - i), end);
    }
}

/* normal and sgm_uniform: timesteps evenly spaced from sigma_max's down to
 * sigma_min's (discrete: 999 to 0; flow: the sigmas themselves), each
 * mapped to its sigma; sgm leaves out the final timestep and spaces
 * steps + 1 points. Where sigma(end) is within 1e-5 of 0, normal spaces
 * steps + 1 points and ends on that sigma instead of appending 0 (neither
 * built-in table has such a sigma_min; kept as ComfyUI has it). */
static void schedule_normal(const kiln_model_sampling *ms, int steps, bool sgm, float *sigmas)
{
    float start = kiln_model_timestep(ms, kiln_sigma_max(ms));
    float end = kiln_model_timestep(ms, kiln_sigma_min(ms));
    bool append_zero = sgm || !(fabs((double)kiln_timestep_to_sigma(ms, end)) <= 1e-5);
    int points = sgm || !append_zero ? steps + 1 : steps;
    kiln_linspace_f32(start, end, points, sigmas); /* timesteps, mapped in place */
    int mapped = append_zero ? steps : steps + 1;
    for (int i = 0; i < mapped; i++) sigmas[i] = kiln_timestep_to_sigma(ms, sigmas[i]);
    if (append_zero) sigmas[steps] = 0.0f;
}

float kiln_torch_pow_f32(float x, double exponent)
{
    if (exponent == 0.5) return sqrtf(x);
    if (exponent == 1.0) return x;
    if (exponent == 2.0) return x * x;
    if (exponent == 3.0) return x * x * x;
    if (exponent == -0.5) return 1.0f / sqrtf(x);
    if (exponent == -1.0) return 1.0f / x;
    if (exponent == -2.0) return 1.0f / (x * x);
    return powf(x, (float)exponent);
}

void kiln_sigmas_karras(double sigma_min, double sigma_max, double rho, int steps, float *sigmas)
{
    double min_inv_rho = pow(sigma_min, 1.0 / rho);
    double max_inv_rho = pow(sigma_max, 1.0 / rho);
    float span = (float)(min_inv_rho - max_inv_rho);
    kiln_linspace_f32(0.0f, 1.0f, steps, sigmas); /* the ramp, mapped in place */
    for (int i = 0; i < steps; i++) {
        float along = sigmas[i] * span;
        sigmas[i] = kiln_torch_pow_f32(along + (float)max_inv_rho, rho);
    }
    sigmas[steps] = 0.0f;
}

void kiln_sigmas_exponential(double sigma_min, double sigma_max, int steps, float *sigmas)
{
    kiln_linspace_f32((float)log(sigma_max), (float)log(sigma_min), steps, sigmas);
    for (int i = 0; i < steps; i++) sigmas[i] = expf(sigmas[i]);
    sigmas[steps] = 0.0f;
}

/* Every (len(sigmas) / steps)-th table entry from the top, the stride in
 * Python doubles and truncated. */
static void schedule_simple(const kiln_model_sampling *ms, int steps, float *sigmas)
{
    double stride = (double)ms->count / steps;
    for (int i = 0; i < steps; i++) sigmas[i] = ms->sigmas[ms->count - 1 - (int)(i * stride)];
    sigmas[steps] = 0.0f;
}

/* Table entries 1, 1 + k, 1 + 2k, ... below len(sigmas) with
 * k = len(sigmas) // steps, reversed, then 0: the count is whatever that
 * walk gives, not always steps + 1. (ComfyUI leaves the 0 out where
 * sigmas[1] is within 1e-5 of 0; neither built-in table's is.) Returns the
 * count. */
static size_t schedule_ddim_uniform(const kiln_model_sampling *ms, int steps, float *sigmas)
{
    int stride = ms->count / steps;
    if (stride < 1) stride = 1;
    size_t count = 0;
    for (int t = 1; t < ms->count; t += stride) count++;
    size_t i = 0;
    for (int t = 1; t < ms->count; t += stride) sigmas[count - 1 - i++] = ms->sigmas[t];
    sigmas[count] = 0.0f;
    return count + 1;
}

/* ln B(a, b) */
static double log_beta_fn(double a, double b) { return lgamma(a) + lgamma(b) - lgamma(a + b); }

/* The continued fraction of the regularized incomplete beta function,
 * I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * cf, evaluated with the modified
 * Lentz method. Converges quickly for x < (a + 1) / (a + b + 2). */
static double incomplete_beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1.0;
    double d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / (fabs(d) < tiny ? tiny : d);
    double cf = d;
    for (int m = 1; m <= 500; m++) {
        for (int odd = 0; odd < 2; odd++) {
            double coeff = odd ? -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
                               : m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
            d = 1.0 + coeff * d;
            d = 1.0 / (fabs(d) < tiny ? tiny : d);
            c = 1.0 + coeff / c;
            if (fabs(c) < tiny) c = tiny;
            double delta = c * d;
            cf *= delta;
            if (odd && fabs(delta - 1.0) < 1e-16) return cf;
        }
    }
    return cf;
}

/* The regularized incomplete beta function I_x(a, b). */
static double incomplete_beta(double a, double b, double x)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    double log_front = a * log(x) + b * log1p(-x) - log_beta_fn(a, b);
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(log_front) * incomplete_beta_cf(a, b, x) / a;
    return 1.0 - exp(log_front) * incomplete_beta_cf(b, a, 1.0 - x) / b;
}

/* The inverse of I_x(a, b) in x (scipy.stats.beta.ppf): Newton steps on the
 * incomplete beta, kept inside a shrinking bracket by bisection, to full
 * double precision. */
static double incomplete_beta_inverse(double a, double b, double p)
{
    if (p <= 0.0) return 0.0;
    if (p >= 1.0) return 1.0;
    /* a symmetric distribution's median is exactly 1/2; iterating would land
     * an ulp off, which the beta scheduler's rint(0.5 * 999) would turn into
     * the wrong timestep */
    if (a == b && p == 0.5) return 0.5;
    double lo = 0.0, hi = 1.0, x = 0.5;
    double log_norm = log_beta_fn(a, b);
    for (int iter = 0; iter < 300; iter++) {
        double err = incomplete_beta(a, b, x) - p;
        if (err == 0.0) return x;
        if (err < 0.0) lo = x;
        else hi = x;
        double density = exp((a - 1.0) * log(x) + (b - 1.0) * log1p(-x) - log_norm);
        double next = x - err / density;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        if (fabs(next - x) <= 1e-17 + 2e-16 * fabs(x) || hi - lo <= 4e-16 * fabs(x)) return next;
        x = next;
    }
    return x;
}

size_t kiln_sigmas_beta(const kiln_model_sampling *ms, int steps, double alpha, double beta, float *sigmas)
{
    double spacing = 1.0 / steps;
    size_t count = 0;
    double last_t = -1.0;
    for (int i = 0; i < steps; i++) {
        double t = rint(incomplete_beta_inverse(alpha, beta, 1.0 - i * spacing) * (ms->count - 1));
        if (t != last_t) sigmas[count++] = ms->sigmas[(int)t];
        last_t = t;
    }
    sigmas[count++] = 0.0f;
    return count;
}

/* Mochi's schedule: 1 - sigma/sigma_max linear up to 0.025 over the first
 * half of the steps, then quadratic to 1; Python doubles, then float32. */
static void schedule_linear_quadratic(const kiln_model_sampling *ms, int steps, float *sigmas)
{
    const double threshold = 0.025;
    if (steps == 1) {
        sigmas[0] = kiln_sigma_max(ms);
        sigmas[1] = 0.0f;
        return;
    }
    int linear_steps = steps / 2;
    int quadratic_steps = steps - linear_steps;
    double step_diff = linear_steps - threshold * steps;
    double quadratic_coef = step_diff / (double)(linear_steps * quadratic_steps * quadratic_steps);
    double linear_coef = threshold / linear_steps - 2 * step_diff / (double)(quadratic_steps * quadratic_steps);
    double constant = quadratic_coef * (double)(linear_steps * linear_steps);
    for (int i = 0; i <= steps; i++) {
        double unit; /* 1 - sigma / sigma_max */
        if (i == steps) unit = 1.0;
        else if (i < linear_steps) unit = i * threshold / linear_steps;
        else unit = quadratic_coef * (double)(i * i) + linear_coef * i + constant;
        sigmas[i] = (float)(1.0 - unit) * kiln_sigma_max(ms);
    }
}

/* Align Your Steps' KL-optimal schedule: atan(sigma) linear from sigma_max
 * to sigma_min. */
static void schedule_kl_optimal(const kiln_model_sampling *ms, int steps, float *sigmas)
{
    float atan_min = (float)atan((double)kiln_sigma_min(ms));
    float atan_max = (float)atan((double)kiln_sigma_max(ms));
    for (int i = 0; i < steps; i++) {
        float frac = (float)i / (float)(steps - 1);
        float toward_min = frac * atan_min;
        float toward_max = (1.0f - frac) * atan_max;
        sigmas[i] = tanf(toward_min + toward_max);
    }
    sigmas[steps] = 0.0f;
}

static const char *const scheduler_names[KILN_SCHEDULER_COUNT] = {
    [KILN_SCHEDULER_SIMPLE] = "simple",
    [KILN_SCHEDULER_SGM_UNIFORM] = "sgm_uniform",
    [KILN_SCHEDULER_KARRAS] = "karras",
    [KILN_SCHEDULER_EXPONENTIAL] = "exponential",
    [KILN_SCHEDULER_DDIM_UNIFORM] = "ddim_uniform",
    [KILN_SCHEDULER_BETA] = "beta",
    [KILN_SCHEDULER_NORMAL] = "normal",
    [KILN_SCHEDULER_LINEAR_QUADRATIC] = "linear_quadratic",
    [KILN_SCHEDULER_KL_OPTIMAL] = "kl_optimal",
};

const char *kiln_scheduler_name(kiln_scheduler scheduler)
{
    return (unsigned)scheduler < KILN_SCHEDULER_COUNT ? scheduler_names[scheduler] : NULL;
}

kiln_status kiln_scheduler_from_name(const char *name, kiln_scheduler *out)
{
    char valid[256] = "";
    for (int s = 0; s < KILN_SCHEDULER_COUNT; s++) {
        if (name && strcmp(name, scheduler_names[s]) == 0) {
            *out = (kiln_scheduler)s;
            return KILN_OK;
        }
        strcat(valid, s ? ", " : "");
        strcat(valid, scheduler_names[s]);
    }
    return kiln_fail(KILN_ERR_INVALID_ARG, "unknown scheduler \"%s\" (valid: %s)", name ? name : "(null)", valid);
}

kiln_status kiln_scheduler_sigmas(const kiln_model_sampling *ms, kiln_scheduler scheduler, int steps,
                                  float **sigmas, size_t *count)
{
    if ((unsigned)scheduler >= KILN_SCHEDULER_COUNT)
        return kiln_fail(KILN_ERR_INVALID_ARG, "scheduler: no scheduler with id %d", (int)scheduler);
    int min_steps = scheduler == KILN_SCHEDULER_KL_OPTIMAL ? 2 : 1;
    if (steps < min_steps || steps > 100000)
        return kiln_fail(KILN_ERR_INVALID_ARG, "scheduler %s: steps %d out of range [%d, 100000]",
                         scheduler_names[scheduler], steps, min_steps);
    /* ddim_uniform can give up to one sigma per table entry, more than steps + 1 */
    size_t table = (size_t)ms->count + 1;
    size_t capacity = (size_t)steps + 1 > table ? (size_t)steps + 1 : table;
    float *out = malloc(capacity * sizeof *out);
    if (!out) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "scheduler %s: %zu sigmas", scheduler_names[scheduler], capacity);
    size_t n = (size_t)steps + 1;
    switch (scheduler) {
    case KILN_SCHEDULER_SIMPLE: schedule_simple(ms, steps, out); break;
    case KILN_SCHEDULER_SGM_UNIFORM: schedule_normal(ms, steps, true, out); break;
    case KILN_SCHEDULER_KARRAS: kiln_sigmas_karras(kiln_sigma_min(ms), kiln_sigma_max(ms), 7.0, steps, out); break;
    case KILN_SCHEDULER_EXPONENTIAL: kiln_sigmas_exponential(kiln_sigma_min(ms), kiln_sigma_max(ms), steps, out); break;
    case KILN_SCHEDULER_DDIM_UNIFORM: n = schedule_ddim_uniform(ms, steps, out); break;
    case KILN_SCHEDULER_BETA: n = kiln_sigmas_beta(ms, steps, 0.6, 0.6, out); break;
    case KILN_SCHEDULER_NORMAL: schedule_normal(ms, steps, false, out); break;
    case KILN_SCHEDULER_LINEAR_QUADRATIC: schedule_linear_quadratic(ms, steps, out); break;
    case KILN_SCHEDULER_KL_OPTIMAL: schedule_kl_optimal(ms, steps, out); break;
    case KILN_SCHEDULER_COUNT: break;
    }
    *sigmas = out;
    *count = n;
    return KILN_OK;
}

kiln_status kiln_ksampler_sigmas(const kiln_model_sampling *ms, kiln_scheduler scheduler, bool discard_penultimate,
                                 int steps, double denoise, float **sigmas, size_t *count)
{
    if (steps < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "sampling: steps must be at least 1 (got %d)", steps);
    if (!(denoise > 0.0 && denoise <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "sampling: denoise must be in (0, 1] (got %g)", denoise);
    /* ComfyUI treats denoise above 0.9999 as a full schedule */
    int schedule_steps = denoise > 0.9999 ? steps : (int)(steps / denoise);
    if (discard_penultimate) schedule_steps += 1;
    float *all;
    size_t n;
    TRY(kiln_scheduler_sigmas(ms, scheduler, schedule_steps, &all, &n));
    if (discard_penultimate && n >= 2) {
        all[n - 2] = all[n - 1];
        n -= 1;
    }
    size_t keep = denoise > 0.9999 || n < (size_t)steps + 1 ? n : (size_t)steps + 1;
    memmove(all, all + (n - keep), keep * sizeof *all);
    *sigmas = all;
    *count = keep;
    return KILN_OK;
}
