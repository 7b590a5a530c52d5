/* Guidance functions ComfyUI's model patches put in place of the plain
 * uncond + (cond - uncond) * cfg, or after it, on the two x0 predictions of
 * a step (batch images of per_image floats each) at the sampler's x. */
#ifndef KILN_GUIDANCE_H
#define KILN_GUIDANCE_H

#include <stdbool.h>
#include <stddef.h>

/* The guidance patches on a model: RescaleCFG in place of the plain
 * guidance, CFGZeroStar after it. */
typedef struct kiln_cfg_patches {
    float rescale_cfg; /* RescaleCFG's multiplier; 0: none */
    bool zero_star;    /* CFGZeroStar */
} kiln_cfg_patches;

/* Whether any patch is on. */
bool kiln_cfg_patched(const kiln_cfg_patches *p);

/* A step's guided x0 prediction with the patches: RescaleCFG's guidance or
 * uncond + (cond - uncond) * cfg, then CFGZeroStar's. */
void kiln_guide(const kiln_cfg_patches *p, const float *x, const float *cond, const float *uncond, float sigma,
                float cfg, int batch, size_t per_image, float *denoised);

/* torch's std (unbiased) of n values from their sum and sum of squares. */
double kiln_unbiased_std(const double moments[2], size_t n);

/* RescaleCFG, as ComfyUI's sampler_cfg_function: the predictions taken to
 * v-prediction space at sigma, guided there, the guided image's std brought
 * to cond's (torch's unbiased std per image), blended with the plain guided
 * one by multiplier, and taken back to x0 -> denoised. */
void kiln_rescale_cfg(const float *x, const float *cond, const float *uncond, float sigma, float cfg,
                      float multiplier, int batch, size_t per_image, float *denoised);

/* CFGZeroStar, as ComfyUI's post-CFG function on the guided denoised (in
 * place): per image alpha = <x - cond, x - uncond> / (|x - uncond|^2 +
 * 1e-8), the unconditional prediction's share scaled by it: denoised +=
 * uncond (alpha - 1) + cfg uncond (1 - alpha). */
void kiln_cfg_zero_star(const float *x, const float *cond, const float *uncond, float cfg, int batch,
                        size_t per_image, float *denoised);

#endif
