/* SIGMAS: ComfyUI's scheduler nodes and the nodes that cut and turn a list
 * of sigmas (comfy_extras/nodes_custom_sampler.py,
 * nodes_align_your_steps.py), for samplings on sigmas of one's own
 * (kiln_ksampler_params.sigmas, SamplerCustom). The schedules are float32
 * as torch computes them; tests/data/sigmas holds ComfyUI's restated. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "latent.h"
#include "model.h"
#include "rng.h"
#include "schedule.h"
#include "status.h"
#include "vae.h"

#define MAX_STEPS 10000

void kiln_sigmas_free(kiln_sigmas *s)
{
    if (!s) return;
    free(s->values);
    *s = (kiln_sigmas){0};
}

static kiln_status sigmas_alloc(const char *node, int count, kiln_sigmas *out)
{
    *out = (kiln_sigmas){0};
    if (count == 0) return KILN_OK;
    if (!(out->values = malloc((size_t)count * sizeof *out->values)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: %d sigmas", node, count);
    out->count = count;
    return KILN_OK;
}

/* A node's input in [lo, hi] (and finite), as ComfyUI's checks its widgets. */
static kiln_status in_range(const char *node, const char *input, double value, double lo, double hi)
{
    if (value >= lo && value <= hi) return KILN_OK;
    return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s %g is not in [%g, %g]", node, input, value, lo, hi);
}

static kiln_status steps_in_range(const char *node, int steps, int most)
{
    if (steps >= 1 && steps <= most) return KILN_OK;
    return kiln_fail(KILN_ERR_INVALID_ARG, "%s: steps %d is not in [1, %d]", node, steps, most);
}

static kiln_status check_output(const char *node, const void *out)
{
    return out ? KILN_OK : kiln_fail(KILN_ERR_INVALID_ARG, "%s: no place for the sigmas", node);
}

/* A scheduler node's start: a place for its sigmas, emptied, and steps in [1, most]. */
static kiln_status scheduler_start(const char *node, kiln_sigmas *out, int steps, int most)
{
    TRY(check_output(node, out));
    *out = (kiln_sigmas){0};
    return steps_in_range(node, steps, most);
}

static kiln_status check_sigmas(const char *node, const kiln_sigmas *s)
{
    if (!s || s->count < 0 || (s->count && !s->values))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no sigmas given", node);
    return KILN_OK;
}

/* The end of the number ComfyUI's pattern [-+]?(?:\d*\.*\d+) finds at
 * text + i (greedy, then giving back the dots where no digit follows them);
 * i where none starts there. */
static size_t number_end(const char *text, size_t i)
{
    size_t j = i + (text[i] == '+' || text[i] == '-');
    size_t digits = j;
    while (text[digits] >= '0' && text[digits] <= '9') digits++;
    size_t dots = digits;
    while (text[dots] == '.') dots++;
    size_t after = dots;
    while (text[after] >= '0' && text[after] <= '9') after++;
    if (after > dots) return after;
    return digits > j ? digits : i;
}

kiln_status kiln_manual_sigmas(const char *text, kiln_sigmas *out)
{
    const char *node = "ManualSigmas";
    TRY(check_output(node, out));
    *out = (kiln_sigmas){0};
    if (!text) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no text", node);
    int count = 0;
    for (size_t i = 0; text[i];) {
        size_t end = number_end(text, i);
        count += end > i;
        i = end > i ? end : i + 1;
    }
    TRY(sigmas_alloc(node, count, out));
    int k = 0;
    for (size_t i = 0; text[i];) {
        size_t end = number_end(text, i);
        if (end == i) {
            i++;
            continue;
        }
        char number[64];
        size_t len = end - i < sizeof number - 1 ? end - i : sizeof number - 1;
        memcpy(number, text + i, len);
        number[len] = '\0';
        char *parsed;
        double value = strtod(number, &parsed);
        if (*parsed || len != end - i) {
            kiln_sigmas_free(out);
            return kiln_fail(KILN_ERR_INVALID_ARG, "%s: \"%.*s\" in \"%s\" is not a number", node, (int)(end - i),
                             text + i, text);
        }
        out->values[k++] = (float)value;
        i = end;
    }
    return KILN_OK;
}

kiln_status kiln_basic_scheduler(const kiln_model *m, const char *scheduler, int steps, double denoise,
                                 kiln_sigmas *out)
{
    const char *node = "BasicScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no model", node);
    TRY(in_range(node, "denoise", denoise, 0.0, 1.0));
    kiln_scheduler sch;
    TRY(kiln_scheduler_from_name(scheduler, &sch));
    if (denoise <= 0.0) return KILN_OK;
    int total = denoise < 1.0 ? (int)(steps / denoise) : steps;
    kiln_model_sampling ms;
    TRY(kiln_model_sampling_of(m, &ms));
    float *all;
    size_t n;
    TRY(kiln_scheduler_sigmas(&ms, sch, total, &all, &n));
    size_t keep = n < (size_t)steps + 1 ? n : (size_t)steps + 1;
    memmove(all, all + (n - keep), keep * sizeof *all);
    out->values = all;
    out->count = (int)keep;
    return KILN_OK;
}

kiln_status kiln_sd_turbo_scheduler(const kiln_model *m, int steps, double denoise, kiln_sigmas *out)
{
    const char *node = "SDTurboScheduler";
    TRY(scheduler_start(node, out, steps, 10));
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no model", node);
    TRY(in_range(node, "denoise", denoise, 0.0, 1.0));
    kiln_model_sampling ms;
    TRY(kiln_model_sampling_of(m, &ms));
    /* ten timesteps 999, 899, ..., 99, from the (10 - int(10 denoise))-th */
    int start = 10 - (int)(10.0 * denoise), end = start + steps < 10 ? start + steps : 10;
    TRY(sigmas_alloc(node, end - start + 1, out));
    for (int i = start; i < end; i++) out->values[i - start] = kiln_timestep_to_sigma(&ms, (float)(999 - 100 * i));
    out->values[end - start] = 0.0f;
    return KILN_OK;
}

kiln_status kiln_beta_sampling_scheduler(const kiln_model *m, int steps, double alpha, double beta,
                                         kiln_sigmas *out)
{
    const char *node = "BetaSamplingScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no model", node);
    /* ComfyUI's widgets go down to 0, where scipy's quantiles are NaN */
    if (!(alpha > 0.0 && alpha <= 50.0 && beta > 0.0 && beta <= 50.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: alpha %g and beta %g must be in (0, 50]", node, alpha, beta);
    kiln_model_sampling ms;
    TRY(kiln_model_sampling_of(m, &ms));
    TRY(sigmas_alloc(node, steps + 1, out));
    out->count = (int)kiln_sigmas_beta(&ms, steps, alpha, beta, out->values);
    return KILN_OK;
}

/* Noise levels published for a model type, a schedule's worth: Align Your
 * Steps' ten steps (Sabour et al., 2024, NVIDIA) and OptimalSteps' (Pei et
 * al., 2025). */
typedef struct noise_levels {
    const char *model_type;
    int count;
    const double *levels;
} noise_levels;

static const double ays_sd1[] = {14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                                 0.9642583904,  0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582};
static const double ays_sdxl[] = {14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                                  0.5550693289,  0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582};
static const double ays_svd[] = {700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002};
static const noise_levels align_your_steps[] = {{"SD1", 11, ays_sd1}, {"SDXL", 11, ays_sdxl}, {"SVD", 11, ays_svd}};

static const double optimal_flux[] = {0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808,
                                      0.001};
static const double optimal_wan[] = {1.0,   0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98,  0.975, 0.973,
                                     0.968, 0.96,  0.946, 0.927, 0.902, 0.864, 0.776, 0.539, 0.208, 0.001};
static const double optimal_chroma[] = {0.992, 0.99,  0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943,
                                        0.931, 0.917, 0.9,   0.881, 0.858, 0.832, 0.802, 0.769, 0.731, 0.69,  0.646,
                                        0.599, 0.55,  0.501, 0.451, 0.402, 0.355, 0.311, 0.27,  0.232, 0.199, 0.169,
                                        0.143, 0.12,  0.101, 0.084, 0.07,  0.058, 0.048, 0.001};
static const noise_levels optimal_steps[] = {{"FLUX", 11, optimal_flux}, {"Wan", 21, optimal_wan},
                                             {"Chroma", 41, optimal_chroma}};

/* numpy.linspace(0, 1, n)[i]: i times the step, the last exactly 1. */
static double unit_linspace(int i, int n) { return i == n - 1 ? 1.0 : i * (1.0 / (n - 1)); }

/* The published levels log-linearly interpolated to steps + 1 points (numpy's interp, in doubles) where they
 * are not that many already; with denoise < 1 their last round(steps x denoise) + 1 (none at 0); the last 0. */
static kiln_status published_schedule(const char *node, const noise_levels *tables, int ntables, const char *valid,
                                      const char *model_type, int steps, int min_steps, double denoise,
                                      kiln_sigmas *out)
{
    TRY(check_output(node, out));
    *out = (kiln_sigmas){0};
    const noise_levels *t = NULL;
    for (int i = 0; i < ntables; i++)
        if (model_type && strcmp(model_type, tables[i].model_type) == 0) t = &tables[i];
    if (!t)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: model_type \"%s\" (valid: %s)", node,
                         model_type ? model_type : "(null)", valid);
    if (steps < min_steps || steps > MAX_STEPS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: steps %d is not in [%d, %d]", node, steps, min_steps, MAX_STEPS);
    TRY(in_range(node, "denoise", denoise, 0.0, 1.0));
    if (denoise <= 0.0) return KILN_OK;
    int total = denoise < 1.0 ? (int)rint(steps * denoise) : steps; /* Python's round: half to even */
    TRY(sigmas_alloc(node, total + 1, out));
    const int known = t->count, points = steps + 1;
    for (int k = 0; k <= total; k++) {
        int i = points - 1 - (total - k); /* position among the points, the largest sigma first */
        double sigma = points == known ? t->levels[i] : 0.0;
        if (points != known) {
            double x = unit_linspace(points - 1 - i, points); /* interpolated ascending: the levels reversed */
            int j = 0;
            while (j < known - 2 && unit_linspace(j + 1, known) <= x) j++;
            double x0 = unit_linspace(j, known), x1 = unit_linspace(j + 1, known);
            double y0 = log(t->levels[known - 1 - j]), y1 = log(t->levels[known - 2 - j]);
            sigma = exp(x >= 1.0 ? y1 : (y1 - y0) / (x1 - x0) * (x - x0) + y0);
        }
        out->values[k] = (float)sigma;
    }
    out->values[total] = 0.0f;
    return KILN_OK;
}

kiln_status kiln_align_your_steps_scheduler(const char *model_type, int steps, double denoise, kiln_sigmas *out)
{
    return published_schedule("AlignYourStepsScheduler", align_your_steps, 3, "SD1, SDXL, SVD", model_type, steps, 1,
                              denoise, out);
}

kiln_status kiln_optimal_steps_scheduler(const char *model_type, int steps, double denoise, kiln_sigmas *out)
{
    return published_schedule("OptimalStepsScheduler", optimal_steps, 3, "FLUX, Wan, Chroma", model_type, steps, 3,
                              denoise, out);
}

kiln_status kiln_karras_scheduler(int steps, double sigma_max, double sigma_min, double rho, kiln_sigmas *out)
{
    const char *node = "KarrasScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    TRY(in_range(node, "sigma_max", sigma_max, 0.0, 5000.0));
    TRY(in_range(node, "sigma_min", sigma_min, 0.0, 5000.0));
    if (!(rho > 0.0 && rho <= 100.0)) /* 1 / rho */
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: rho %g is not in (0, 100]", node, rho);
    TRY(sigmas_alloc(node, steps + 1, out));
    kiln_sigmas_karras(sigma_min, sigma_max, rho, steps, out->values);
    return KILN_OK;
}

/* Both ends of a schedule in log sigma: above 0. */
static kiln_status log_ends(const char *node, double sigma_max, double sigma_min)
{
    if (sigma_max > 0.0 && sigma_max <= 5000.0 && sigma_min > 0.0 && sigma_min <= 5000.0) return KILN_OK;
    return kiln_fail(KILN_ERR_INVALID_ARG, "%s: sigma_max %g and sigma_min %g must be in (0, 5000] (their logs are "
                     "taken)", node, sigma_max, sigma_min);
}

kiln_status kiln_exponential_scheduler(int steps, double sigma_max, double sigma_min, kiln_sigmas *out)
{
    const char *node = "ExponentialScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    TRY(log_ends(node, sigma_max, sigma_min));
    TRY(sigmas_alloc(node, steps + 1, out));
    kiln_sigmas_exponential(sigma_min, sigma_max, steps, out->values);
    return KILN_OK;
}

kiln_status kiln_polyexponential_scheduler(int steps, double sigma_max, double sigma_min, double rho,
                                           kiln_sigmas *out)
{
    const char *node = "PolyexponentialScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    TRY(log_ends(node, sigma_max, sigma_min));
    TRY(in_range(node, "rho", rho, 0.0, 100.0));
    TRY(sigmas_alloc(node, steps + 1, out));
    float *v = out->values;
    const float span = (float)(log(sigma_max) - log(sigma_min)), low = (float)log(sigma_min);
    kiln_linspace_f32(1.0f, 0.0f, steps, v); /* the ramp, mapped in place */
    for (int i = 0; i < steps; i++) {
        float along = kiln_torch_pow_f32(v[i], rho) * span;
        v[i] = expf(along + low);
    }
    v[steps] = 0.0f;
    return KILN_OK;
}

kiln_status kiln_laplace_scheduler(int steps, double sigma_max, double sigma_min, double mu, double beta,
                                   kiln_sigmas *out)
{
    const char *node = "LaplaceScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    TRY(in_range(node, "sigma_max", sigma_max, 0.0, 5000.0));
    TRY(in_range(node, "sigma_min", sigma_min, 0.0, 5000.0));
    TRY(in_range(node, "mu", mu, -10.0, 10.0));
    TRY(in_range(node, "beta", beta, 0.0, 10.0));
    TRY(sigmas_alloc(node, steps, out));
    float *v = out->values;
    kiln_linspace_f32(0.0f, 1.0f, steps, v); /* x, mapped in place */
    for (int i = 0; i < steps; i++) {
        /* the inverse Laplace CDF of x, kept off log(0) by 1e-5 */
        float centred = 0.5f - v[i];
        float sign = centred > 0.0f ? 1.0f : centred < 0.0f ? -1.0f : 0.0f;
        float inner = 1.0f - 2.0f * fabsf(centred);
        float tail = logf(inner + 1e-5f);
        float signed_beta = (float)beta * sign;
        float lambda = (float)mu - signed_beta * tail;
        v[i] = fminf(fmaxf(expf(lambda), (float)sigma_min), (float)sigma_max);
    }
    return KILN_OK;
}

kiln_status kiln_vp_scheduler(int steps, double beta_d, double beta_min, double eps_s, kiln_sigmas *out)
{
    const char *node = "VPScheduler";
    TRY(scheduler_start(node, out, steps, MAX_STEPS));
    TRY(in_range(node, "beta_d", beta_d, 0.0, 5000.0));
    TRY(in_range(node, "beta_min", beta_min, 0.0, 5000.0));
    TRY(in_range(node, "eps_s", eps_s, 0.0, 1.0));
    TRY(sigmas_alloc(node, steps + 1, out));
    float *v = out->values;
    kiln_linspace_f32(1.0f, (float)eps_s, steps, v); /* t, mapped in place */
    for (int i = 0; i < steps; i++) {
        float t = v[i];
        float quadratic = (float)beta_d * (t * t) / 2.0f;
        float linear = (float)beta_min * t;
        v[i] = sqrtf(expm1f(quadratic + linear));
    }
    v[steps] = 0.0f;
    return KILN_OK;
}

/* *out a copy of s's values [from, to). */
static kiln_status slice(const char *node, const kiln_sigmas *s, int from, int to, kiln_sigmas *out)
{
    if (to < from) to = from;
    TRY(sigmas_alloc(node, to - from, out));
    if (to > from) memcpy(out->values, s->values + from, (size_t)(to - from) * sizeof *s->values);
    return KILN_OK;
}

static kiln_status split(const char *node, const kiln_sigmas *s, int high_end, int low_start, kiln_sigmas *high,
                         kiln_sigmas *low)
{
    TRY(check_output(node, high && low ? high : NULL));
    *high = *low = (kiln_sigmas){0};
    TRY(slice(node, s, 0, high_end, high));
    kiln_status st = slice(node, s, low_start, s->count, low);
    if (st != KILN_OK) kiln_sigmas_free(high);
    return st;
}

kiln_status kiln_sigmas_split(const kiln_sigmas *s, int step, kiln_sigmas *high, kiln_sigmas *low)
{
    const char *node = "SplitSigmas";
    TRY(check_sigmas(node, s));
    TRY(in_range(node, "step", step, 0, MAX_STEPS));
    int at = step < s->count ? step : s->count;
    return split(node, s, step + 1 < s->count ? step + 1 : s->count, at, high, low);
}

kiln_status kiln_sigmas_split_denoise(const kiln_sigmas *s, double denoise, kiln_sigmas *high, kiln_sigmas *low)
{
    const char *node = "SplitSigmasDenoise";
    TRY(check_sigmas(node, s));
    TRY(in_range(node, "denoise", denoise, 0.0, 1.0));
    int steps = s->count > 1 ? s->count - 1 : 0;
    int k = (int)rint(steps * denoise); /* Python's round */
    /* high is sigmas[:-k], which is empty for k = 0; low sigmas[-(k + 1):] */
    int high_end = k ? s->count - k : 0, low_start = s->count - (k + 1);
    return split(node, s, high_end, low_start > 0 ? low_start : 0, high, low);
}

kiln_status kiln_sigmas_flip(const kiln_sigmas *s, kiln_sigmas *out)
{
    const char *node = "FlipSigmas";
    TRY(check_sigmas(node, s));
    TRY(check_output(node, out));
    TRY(sigmas_alloc(node, s->count, out));
    for (int i = 0; i < s->count; i++) out->values[i] = s->values[s->count - 1 - i];
    if (s->count && out->values[0] == 0.0f) out->values[0] = 0.0001f; /* a sampling cannot start at 0 */
    return KILN_OK;
}

kiln_status kiln_sigmas_extend(const kiln_sigmas *s, int steps, double start_at_sigma, double end_at_sigma,
                               const char *spacing, kiln_sigmas *out)
{
    const char *node = "ExtendIntermediateSigmas";
    TRY(check_sigmas(node, s));
    TRY(check_output(node, out));
    *out = (kiln_sigmas){0};
    TRY(steps_in_range(node, steps, 100));
    TRY(in_range(node, "start_at_sigma", start_at_sigma, -1.0, 20000.0));
    TRY(in_range(node, "end_at_sigma", end_at_sigma, 0.0, 20000.0));
    int shape = !spacing ? -1 : !strcmp(spacing, "linear") ? 0 : !strcmp(spacing, "cosine") ? 1
                : !strcmp(spacing, "sine") ? 2 : -1;
    if (shape < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: spacing \"%s\" (valid: linear, cosine, sine)", node,
                         spacing ? spacing : "(null)");
    /* the fractions of the way: linspace(0, 1, steps + 1) without its ends, bent by the spacing (float32) */
    float way[101];
    kiln_linspace_f32(0.0f, 1.0f, steps + 1, way);
    const float pi = (float)M_PI; /* math.pi, as torch takes it for a float32 tensor */
    for (int k = 1; k < steps; k++) {
        float angle = way[k] * pi / 2.0f;
        way[k] = shape == 0 ? way[k] : shape == 1 ? sinf(angle) : 1.0f - cosf(angle);
    }
    /* the comparisons are float32's, as torch's of a tensor with a Python number */
    const float top = start_at_sigma < 0.0 ? INFINITY : (float)start_at_sigma, bottom = (float)end_at_sigma;
    int count = s->count;
    for (int i = 0; i + 1 < s->count; i++)
        if (s->values[i] >= bottom && s->values[i] <= top) count += steps - 1;
    TRY(sigmas_alloc(node, count, out));
    int k = 0;
    for (int i = 0; i < s->count; i++) {
        const float current = s->values[i];
        out->values[k++] = current;
        if (i + 1 == s->count || !(current >= bottom && current <= top)) continue;
        const float gap = s->values[i + 1] - current;
        for (int j = 1; j < steps; j++) out->values[k++] = way[j] * gap + current;
    }
    return KILN_OK;
}

kiln_status kiln_sigmas_set_first(const kiln_sigmas *s, double sigma, kiln_sigmas *out)
{
    const char *node = "SetFirstSigma";
    TRY(check_sigmas(node, s));
    TRY(check_output(node, out));
    TRY(in_range(node, "sigma", sigma, 0.0, 20000.0));
    if (!s->count) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no sigmas to set the first of", node);
    TRY(slice(node, s, 0, s->count, out));
    out->values[0] = (float)sigma;
    return KILN_OK;
}

kiln_status kiln_sampling_percent_to_sigma(const kiln_model *m, double percent, bool actual, double *sigma)
{
    if (!m || !sigma) return kiln_fail(KILN_ERR_INVALID_ARG, "SamplingPercentToSigma: no model or sigma");
    if (!(percent >= 0.0 && percent <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "SamplingPercentToSigma: sampling_percent %g (0 to 1)", percent);
    kiln_model_sampling ms;
    TRY(kiln_model_sampling_of(m, &ms));
    *sigma = kiln_percent_to_sigma_value(&ms, percent);
    if (actual && percent == 0.0) *sigma = kiln_sigma_max(&ms); /* the table's own ends, not the interval checks' */
    if (actual && percent == 1.0) *sigma = kiln_sigma_min(&ms);
    return KILN_OK;
}

kiln_status kiln_add_noise(const kiln_model *m, uint64_t seed, bool no_noise, const kiln_sigmas *sigmas,
                           const kiln_latent *latent, kiln_latent *out)
{
    if (!m || !sigmas || !latent || !latent->data || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "AddNoise: no model, sigmas or latent");
    TRY(kiln_latent_like(latent, latent->batch, false, "AddNoise", out));
    const size_t n = kiln_latent_count(latent), plane = (size_t)latent->height * latent->width;
    const size_t image = n / (size_t)latent->batch;
    if (!kiln_latent_copy_places(latent, out)) {
        kiln_latent_free(out);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "AddNoise: out of host memory");
    }
    if (sigmas->count == 0) {
        memcpy(out->data, latent->data, n * sizeof(float));
        return KILN_OK;
    }
    kiln_model_sampling ms;
    float *noise = malloc(n * sizeof *noise), *draw = latent->batch_index ? malloc(image * sizeof *draw) : NULL;
    kiln_status st = noise && (draw || !latent->batch_index) ? kiln_model_sampling_of(m, &ms)
                                                             : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "AddNoise: out of "
                                                                                                 "host memory");
    if (st == KILN_OK) { /* the noise RandomNoise gives the latent: its places' draws, or none with DisableNoise */
        kiln_rng rng;
        kiln_rng_seed(&rng, seed);
        if (no_noise) memset(noise, 0, n * sizeof *noise);
        else if (!latent->batch_index) kiln_rng_randn(&rng, noise, n);
        else kiln_rng_randn_indexed(&rng, latent->batch_index, latent->batch, image, noise, draw);
        const float *s = sigmas->values;
        const float sigma = sigmas->count > 1 ? fabsf(s[0] - s[sigmas->count - 1]) : s[0];
        bool empty = true; /* ComfyUI leaves an all-zero latent unshifted by the latent format */
        for (size_t i = 0; i < n && empty; i++) empty = latent->data[i] == 0.0f;
        for (int b = 0; b < latent->batch; b++) {
            float *x = out->data + b * image;
            if (empty) memset(x, 0, image * sizeof *x);
            else kiln_vae_latent_in(&m->vae, latent->data + b * image, image, plane, x);
            for (size_t i = 0; i < image; i++) { /* model_sampling.noise_scaling, without max_denoise */
                const float z = noise[b * image + i];
                x[i] = ms.flow ? sigma * z + (1.0f - sigma) * x[i] : z * sigma + x[i];
            }
            kiln_vae_latent_out(&m->vae, x, image, plane, x);
            for (size_t i = 0; i < image; i++) /* torch.nan_to_num(nan=0, posinf=0, neginf=0) */
                if (!isfinite(x[i])) x[i] = 0.0f;
        }
    }
    free(noise);
    free(draw);
    if (st != KILN_OK) kiln_latent_free(out);
    return st;
}
