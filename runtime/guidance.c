/* Guidance functions of ComfyUI's model patches (see guidance.h). */
#include "guidance.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

#include "status.h"

bool kiln_cfg_patched(const kiln_cfg_patches *p) { return p->rescale_cfg > 0.0f || p->zero_star || p->apg; }

kiln_status kiln_guidance_init(kiln_guidance *g, const kiln_cfg_patches *patches, size_t n)
{
    *g = (kiln_guidance){.patches = *patches, .n = n};
    if (!patches->apg) return KILN_OK;
    if (!(isfinite(patches->apg_eta) && patches->apg_norm_threshold >= 0.0f && isfinite(patches->apg_norm_threshold) &&
          isfinite(patches->apg_momentum)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "APG: eta %g, norm_threshold %g (at or above 0), momentum %g",
                         patches->apg_eta, patches->apg_norm_threshold, patches->apg_momentum);
    g->running = malloc(n * sizeof *g->running);
    g->modified = malloc(n * sizeof *g->modified);
    if (!g->running || !g->modified) {
        kiln_guidance_free(g);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "APG: out of host memory");
    }
    return KILN_OK;
}

void kiln_guidance_free(kiln_guidance *g)
{
    free(g->running);
    free(g->modified);
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
    if (p->apg) {
        kiln_apg(g, cond, uncond, sigma, cfg, batch, per_image, g->modified);
        cond = g->modified;
    }
    if (p->rescale_cfg > 0.0f) {
        kiln_rescale_cfg(x, cond, uncond, sigma, cfg, p->rescale_cfg, batch, per_image, denoised);
    } else {
        for (size_t i = 0; i < (size_t)batch * per_image; i++) denoised[i] = uncond[i] + (cond[i] - uncond[i]) * cfg;
    }
    if (p->zero_star) kiln_cfg_zero_star(x, cond, uncond, cfg, batch, per_image, denoised);
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
