/* Guidance functions of ComfyUI's model patches (see guidance.h). */
#include "guidance.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

#include "status.h"

bool kiln_cfg_patched_uncond(const kiln_cfg_patches *p)
{
    return p->rescale_cfg > 0.0f || p->zero_star || p->apg || p->tcfg || p->mahiro || p->fresca;
}

bool kiln_cfg_patched(const kiln_cfg_patches *p)
{
    return kiln_cfg_patched_uncond(p) || p->cfg_norm > 0.0f || p->epsilon_scaling > 0.0f || p->has_operation ||
           p->fresca;
}

kiln_status kiln_guidance_init(kiln_guidance *g, const kiln_cfg_patches *patches, size_t n, int channels, int height,
                               int width)
{
    *g = (kiln_guidance){.patches = *patches, .n = n, .channels = channels, .height = height, .width = width};
    if (patches->has_operation) TRY(kiln_latent_operation_check(&patches->operation, height, width));
    if (!(patches->cfg_norm >= 0.0f && patches->cfg_norm <= 100.0f))
        return kiln_fail(KILN_ERR_INVALID_ARG, "CFGNorm strength %g: 0 to 100", patches->cfg_norm);
    if (!(patches->epsilon_scaling == 0.0f || (patches->epsilon_scaling >= 0.5f && patches->epsilon_scaling <= 1.5f)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "Epsilon Scaling factor %g: 0.5 to 1.5", patches->epsilon_scaling);
    if (patches->apg && !(isfinite(patches->apg_eta) && patches->apg_norm_threshold >= 0.0f &&
                          isfinite(patches->apg_norm_threshold) && isfinite(patches->apg_momentum)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "APG: eta %g, norm_threshold %g (at or above 0), momentum %g",
                         patches->apg_eta, patches->apg_norm_threshold, patches->apg_momentum);
    if (patches->has_operation) {
        g->operated = malloc(n * sizeof *g->operated);
        g->scratch = malloc(kiln_latent_operation_scratch(channels, height, width) * sizeof *g->scratch);
        if (!g->operated || !g->scratch) {
            kiln_guidance_free(g);
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LatentApplyOperationCFG: out of host memory");
        }
    }
    if (patches->apg && (!(g->running = malloc(n * sizeof *g->running)) ||
                         !(g->modified = malloc(n * sizeof *g->modified)))) {
        kiln_guidance_free(g);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "APG: out of host memory");
    }
    if (patches->fresca && !(patches->fresca_low >= 0.0f && patches->fresca_low <= 10.0f &&
                             patches->fresca_high >= 0.0f && patches->fresca_high <= 10.0f &&
                             patches->fresca_cutoff >= 1 && patches->fresca_cutoff <= 10000)) {
        kiln_guidance_free(g);
        return kiln_fail(KILN_ERR_INVALID_ARG, "FreSca: scale_low %g and scale_high %g (0 to 10), freq_cutoff %d (1 "
                         "to 10000)", patches->fresca_low, patches->fresca_high, patches->fresca_cutoff);
    }
    if (patches->fresca && (!(g->filtered = malloc(n * sizeof *g->filtered)) ||
                            !(g->fresca_work = malloc(KILN_FRESCA_WORK(height, width) * sizeof *g->fresca_work)))) {
        kiln_guidance_free(g);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "FreSca: out of host memory");
    }
    if (patches->tcfg && !(g->damped = malloc(n * sizeof *g->damped))) {
        kiln_guidance_free(g);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "TCFG: out of host memory");
    }
    return KILN_OK;
}

void kiln_guidance_free(kiln_guidance *g)
{
    free(g->running);
    free(g->modified);
    free(g->damped);
    free(g->operated);
    free(g->filtered);
    free(g->fresca_work);
    free(g->scratch);
    *g = (kiln_guidance){0};
}

void kiln_apg(kiln_guidance *g, const float *cond, const float *uncond, float sigma, float cfg, int batch,
              size_t per_image, float *modified)
{
    const kiln_cfg_patches *p = &g->patches;
    if (g->has_prev && sigma > g->prev_sigma) g->running_set = false;
    g->prev_sigma = sigma, g->has_prev = true;
    for (int b = 0; b < batch; b++) {
        const size_t o = (size_t)b * per_image, end = o + per_image;
        float *guidance = modified + o; /* the guidance, then the modified prediction in its place */
        for (size_t i = o; i < end; i++) guidance[i - o] = cond[i] - uncond[i];
        if (p->apg_momentum != 0.0f) {
            for (size_t i = o; i < end; i++)
                g->running[i] = g->running_set ? p->apg_momentum * g->running[i] + guidance[i - o] : guidance[i - o];
            memcpy(guidance, g->running + o, per_image * sizeof *guidance);
        }
        double norm = 0.0, cond_norm = 0.0;
        for (size_t i = 0; i < per_image; i++) norm += (double)guidance[i] * guidance[i];
        if (p->apg_norm_threshold > 0.0f) {
            const float scale = fminf(1.0f, p->apg_norm_threshold / (float)sqrt(norm));
            for (size_t i = 0; i < per_image; i++) guidance[i] *= scale;
        }
        /* its part along cond (torch's normalize: cond over its norm, at least 1e-12) */
        for (size_t i = o; i < end; i++) cond_norm += (double)cond[i] * cond[i];
        const float length = fmaxf((float)sqrt(cond_norm), 1e-12f);
        double along = 0.0;
        for (size_t i = o; i < end; i++) along += (double)guidance[i - o] * (cond[i] / length);
        for (size_t i = o; i < end; i++) {
            const float parallel = (float)along * (cond[i] / length), orthogonal = guidance[i - o] - parallel;
            const float modified_guidance = orthogonal + p->apg_eta * parallel;
            guidance[i - o] = (uncond[i] + modified_guidance) + (cond[i] - uncond[i]) / cfg;
        }
    }
    g->running_set = p->apg_momentum != 0.0f;
}

void kiln_guide(kiln_guidance *g, const float *x, const float *cond, const float *uncond, float sigma, float cfg,
                int batch, size_t per_image, float *denoised)
{
    const kiln_cfg_patches *p = &g->patches;
    if (p->fresca) {
        kiln_fresca_filter(cond, uncond, p->fresca_low, p->fresca_high, p->fresca_cutoff, batch * g->channels,
                           g->height, g->width, g->fresca_work, g->filtered);
        cond = g->filtered;
    }
    if (p->has_operation) { /* on the guidance direction, the unconditional prediction put back after */
        const size_t n = (size_t)batch * per_image;
        for (size_t i = 0; i < n; i++) g->operated[i] = cond[i] - uncond[i];
        kiln_latent_operate(&p->operation, g->operated, batch, g->channels, g->height, g->width, g->scratch);
        for (size_t i = 0; i < n; i++) g->operated[i] += uncond[i];
        cond = g->operated;
    }
    if (p->tcfg) {
        kiln_tcfg(x, cond, uncond, batch, per_image, g->damped);
        uncond = g->damped;
    }
    if (p->apg) {
        kiln_apg(g, cond, uncond, sigma, cfg, batch, per_image, g->modified);
        cond = g->modified;
    }
    if (p->rescale_cfg > 0.0f) {
        kiln_rescale_cfg(x, cond, uncond, sigma, cfg, p->rescale_cfg, batch, per_image, denoised);
    } else {
        for (size_t i = 0; i < (size_t)batch * per_image; i++) denoised[i] = uncond[i] + (cond[i] - uncond[i]) * cfg;
    }
    kiln_post_cfg(g, x, cond, uncond, cfg, batch, per_image, denoised);
}

void kiln_guide_alone(kiln_guidance *g, const float *x, int batch, size_t per_image, float *denoised)
{
    if (g->patches.has_operation)
        kiln_latent_operate(&g->patches.operation, denoised, batch, g->channels, g->height, g->width, g->scratch);
    kiln_post_cfg(g, x, denoised, NULL, 1.0f, batch, per_image, denoised);
}

void kiln_post_cfg(const kiln_guidance *g, const float *x, const float *cond, const float *uncond, float cfg,
                   int batch, size_t per_image, float *denoised)
{
    const kiln_cfg_patches *p = &g->patches;
    const size_t plane = per_image / (size_t)g->channels;
    if (p->zero_star && uncond) kiln_cfg_zero_star(x, cond, uncond, cfg, batch, per_image, denoised);
    if (p->mahiro && uncond) kiln_mahiro(cond, uncond, cfg, batch, g->channels, plane, denoised);
    if (p->cfg_norm > 0.0f) kiln_cfg_norm(cond, p->cfg_norm, batch, g->channels, plane, denoised);
    if (p->epsilon_scaling > 0.0f) /* the noise the guided x0 implies, divided by the factor */
        for (size_t i = 0; i < (size_t)batch * per_image; i++)
            denoised[i] = x[i] - (x[i] - denoised[i]) / p->epsilon_scaling;
}

/* The frequencies kept on an axis of n are -f to f - 1, f = min(cutoff, n / 2):
 * the i-th of them as an index mod n. */
static int kept_count(int n, int cutoff) { return 2 * (cutoff < n / 2 ? cutoff : n / 2); }
static long kept_frequency(int n, int cutoff, int i) { return ((i - kept_count(n, cutoff) / 2) % n + n) % n; }
/* The phase 2 pi k x / n of the i-th kept frequency k at x, reduced mod n first. */
static double phase(int n, int cutoff, int i, int x)
{
    return 2.0 * M_PI * (double)(kept_frequency(n, cutoff, i) * x % n) / n;
}

void kiln_fresca_filter(const float *cond, const float *uncond, float low, float high, int cutoff, int images,
                        int height, int width, double *work, float *filtered)
{
    const size_t plane = (size_t)height * width;
    /* the plane's DFT at the kept frequencies alone, then back: separable, in double */
    const int nh = kept_count(height, cutoff), nw = kept_count(width, cutoff);
    double *ar = work, *ai = work + plane, *yr = work + 2 * plane, *yi = work + 3 * plane;
    for (int img = 0; img < images; img++) {
        const float *c = cond + (size_t)img * plane, *u = uncond + (size_t)img * plane;
        float *out = filtered + (size_t)img * plane;
        for (int h = 0; h < height; h++) /* along the rows: A[h][j] at the j-th kept column frequency */
            for (int j = 0; j < nw; j++) {
                double re = 0, im = 0;
                for (int w = 0; w < width; w++) {
                    const double t = -phase(width, cutoff, j, w);
                    const double g = (double)c[h * width + w] - u[h * width + w];
                    re += g * cos(t), im += g * sin(t);
                }
                ar[h * nw + j] = re, ai[h * nw + j] = im;
            }
        for (int i = 0; i < nh; i++) /* down the columns: Y[i][j] at the i-th kept row frequency */
            for (int j = 0; j < nw; j++) {
                double re = 0, im = 0;
                for (int h = 0; h < height; h++) {
                    const double t = -phase(height, cutoff, i, h);
                    re += ar[h * nw + j] * cos(t) - ai[h * nw + j] * sin(t);
                    im += ar[h * nw + j] * sin(t) + ai[h * nw + j] * cos(t);
                }
                yr[i * nw + j] = re, yi[i * nw + j] = im;
            }
        for (int h = 0; h < height; h++) /* back: B[h][j] = sum_i Y[i][j] e^(+i t), reusing A */
            for (int j = 0; j < nw; j++) {
                double re = 0, im = 0;
                for (int i = 0; i < nh; i++) {
                    const double t = phase(height, cutoff, i, h);
                    re += yr[i * nw + j] * cos(t) - yi[i * nw + j] * sin(t);
                    im += yr[i * nw + j] * sin(t) + yi[i * nw + j] * cos(t);
                }
                ar[h * nw + j] = re, ai[h * nw + j] = im;
            }
        for (int h = 0; h < height; h++)
            for (int w = 0; w < width; w++) {
                double lowpass = 0;
                for (int j = 0; j < nw; j++) {
                    const double t = phase(width, cutoff, j, w);
                    lowpass += ar[h * nw + j] * cos(t) - ai[h * nw + j] * sin(t);
                }
                lowpass /= (double)plane;
                const double g = (double)c[h * width + w] - u[h * width + w];
                out[h * width + w] = (float)(high * g + (low - high) * lowpass + u[h * width + w]);
            }
    }
}

void kiln_tcfg(const float *x, const float *cond, const float *uncond, int batch, size_t per_image, float *damped)
{
    for (int b = 0; b < batch; b++) {
        const size_t o = (size_t)b * per_image;
        /* the 2x2 Gram matrix [[a, c], [c, d]] of the scores u = x - uncond and s = x - cond: its top eigenvector
           w gives the first right singular vector (w0 u + w1 s) / sqrt(l) of [u; s], l its eigenvalue */
        double a = 0.0, c = 0.0, d = 0.0;
        for (size_t i = o; i < o + per_image; i++) {
            const double u = (double)x[i] - uncond[i], s = (double)x[i] - cond[i];
            a += u * u, c += u * s, d += s * s;
        }
        const double half = 0.5 * (a - d), l = 0.5 * (a + d) + sqrt(half * half + c * c);
        double w0 = c, w1 = l - a;
        if (fabs(w0) + fabs(w1) == 0.0) w0 = a >= d ? 1.0 : 0.0, w1 = a >= d ? 0.0 : 1.0;
        const double length = sqrt(w0 * w0 + w1 * w1);
        w0 /= length, w1 /= length;
        /* u's projection on that vector: (u . v) v = (w0 a + w1 c) / l (w0 u + w1 s) */
        const double along = l > 0.0 ? (w0 * a + w1 * c) / l : 0.0;
        for (size_t i = o; i < o + per_image; i++) {
            const double u = (double)x[i] - uncond[i], s = (double)x[i] - cond[i];
            damped[i] = (float)((double)x[i] - along * (w0 * u + w1 * s));
        }
    }
}

double kiln_unbiased_std(const double moments[2], size_t n)
{
    return sqrt((moments[1] - moments[0] * moments[0] / (double)n) / (double)(n - 1));
}

void kiln_rescale_cfg(const float *x, const float *cond, const float *uncond, float sigma, float cfg,
                      float multiplier, int batch, size_t per_image, float *denoised)
{
    /* ComfyUI's float32 steps: x / (sigma^2 + 1), each prediction's v = (x' - x0) sqrt(sigma^2 + 1) / sigma */
    const float s2 = sigma * sigma + 1.0f, root = sqrtf(s2);
    for (int b = 0; b < batch; b++) {
        const size_t o = (size_t)b * per_image;
        double cond_moments[2] = {0, 0}, cfg_moments[2] = {0, 0};
        for (size_t i = o; i < o + per_image; i++) {
            const float xs = x[i] / s2, c = (xs - cond[i]) * root / sigma, u = (xs - uncond[i]) * root / sigma;
            const float g = u + cfg * (c - u);
            cond_moments[0] += c, cond_moments[1] += (double)c * c;
            cfg_moments[0] += g, cfg_moments[1] += (double)g * g;
        }
        const float ratio =
            (float)kiln_unbiased_std(cond_moments, per_image) / (float)kiln_unbiased_std(cfg_moments, per_image);
        for (size_t i = o; i < o + per_image; i++) {
            const float xs = x[i] / s2, c = (xs - cond[i]) * root / sigma, u = (xs - uncond[i]) * root / sigma;
            const float g = u + cfg * (c - u), final = multiplier * (g * ratio) + (1.0f - multiplier) * g;
            denoised[i] = xs - final * sigma / root;
        }
    }
}

/* sqrt|v| with v's sign */
static float signed_root(float v) { return v > 0.0f ? sqrtf(v) : v < 0.0f ? -sqrtf(-v) : 0.0f; }

void kiln_mahiro(const float *cond, const float *uncond, float cfg, int batch, int channels, size_t plane,
                 float *denoised)
{
    double sum = 0.0;
    for (int b = 0; b < batch; b++)
        for (size_t p = 0; p < plane; p++) {
            double dot = 0.0, uu = 0.0, mm = 0.0;
            for (int c = 0; c < channels; c++) {
                const size_t i = ((size_t)b * channels + c) * plane + p;
                const float u = signed_root(uncond[i] * cfg), m = signed_root((cond[i] * cfg + denoised[i]) / 2.0f);
                dot += (double)u * m, uu += (double)u * u, mm += (double)m * m;
            }
            /* torch's cosine_similarity: each norm at least 1e-8 */
            sum += dot / (fmax(sqrt(uu), 1e-8) * fmax(sqrt(mm), 1e-8));
        }
    const float sim = (float)(sum / ((double)batch * plane)), s = 2.0f * (sim + 1.0f);
    for (size_t i = 0; i < (size_t)batch * channels * plane; i++)
        denoised[i] = (s * denoised[i] + (4.0f - s) * (cond[i] * cfg)) / 4.0f;
}

void kiln_cfg_norm(const float *cond, float strength, int batch, int channels, size_t plane, float *denoised)
{
    for (int b = 0; b < batch; b++)
        for (size_t p = 0; p < plane; p++) {
            const size_t first = (size_t)b * channels * plane + p;
            double cc = 0.0, dd = 0.0;
            for (int c = 0; c < channels; c++) {
                const size_t i = first + (size_t)c * plane;
                cc += (double)cond[i] * cond[i], dd += (double)denoised[i] * denoised[i];
            }
            const float scale = fminf(fmaxf((float)sqrt(cc) / ((float)sqrt(dd) + 1e-8f), 0.0f), 1.0f);
            for (int c = 0; c < channels; c++) {
                const size_t i = first + (size_t)c * plane;
                denoised[i] = denoised[i] * scale * strength;
            }
        }
}

void kiln_cfg_zero_star(const float *x, const float *cond, const float *uncond, float cfg, int batch,
                        size_t per_image, float *denoised)
{
    for (int b = 0; b < batch; b++) {
        const size_t o = (size_t)b * per_image;
        double dot = 0.0, norm = 0.0;
        for (size_t i = o; i < o + per_image; i++) {
            const float c = x[i] - cond[i], u = x[i] - uncond[i];
            dot += (double)c * u, norm += (double)u * u;
        }
        const float alpha = (float)dot / ((float)norm + 1e-8f);
        for (size_t i = o; i < o + per_image; i++)
            denoised[i] = denoised[i] + uncond[i] * (alpha - 1.0f) + cfg * uncond[i] * (1.0f - alpha);
    }
}
