/* Guidance functions of ComfyUI's model patches (see guidance.h). */
#include "guidance.h"

#include <math.h>

bool kiln_cfg_patched(const kiln_cfg_patches *p) { return p->rescale_cfg > 0.0f || p->zero_star; }

void kiln_guide(const kiln_cfg_patches *p, const float *x, const float *cond, const float *uncond, float sigma,
                float cfg, int batch, size_t per_image, float *denoised)
{
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
