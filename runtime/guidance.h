/* Guidance functions ComfyUI's model patches put in place of the plain
 * uncond + (cond - uncond) * cfg, or after it, on the two x0 predictions of
 * a step (batch images of per_image floats each) at the sampler's x. */
#ifndef KILN_GUIDANCE_H
#define KILN_GUIDANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"

/* The guidance patches on a model: APG before the guidance, RescaleCFG in
 * place of the plain guidance, CFGZeroStar after it. */
typedef struct kiln_cfg_patches {
    float rescale_cfg; /* RescaleCFG's multiplier; 0: none */
    bool zero_star;    /* CFGZeroStar */
    bool apg;          /* APG (Adaptive Projected Guidance), its eta, norm_threshold (0: none) and momentum (0: none) */
    float apg_eta, apg_norm_threshold, apg_momentum;
} kiln_cfg_patches;

/* Whether any patch is on. */
bool kiln_cfg_patched(const kiln_cfg_patches *p);

/* A sampling's guidance with the patches, and what APG keeps from one step
 * to the next: its running average of the guidance, restarted where the
 * sigma rises (a new pass), as ComfyUI's node keeps it. */
typedef struct kiln_guidance {
    kiln_cfg_patches patches;
    size_t n;
    float *running, *modified; /* (n) APG's running average and its conditional prediction */
    bool running_set, has_prev;
    float prev_sigma;
} kiln_guidance;

kiln_status kiln_guidance_init(kiln_guidance *g, const kiln_cfg_patches *patches, size_t n);
void kiln_guidance_free(kiln_guidance *g);

/* A step's guided x0 prediction (n = batch x per_image) with the patches:
 * APG's conditional prediction in place of cond, then RescaleCFG's guidance
 * or uncond + (cond - uncond) * cfg, then CFGZeroStar's. */
void kiln_guide(kiln_guidance *g, const float *x, const float *cond, const float *uncond, float sigma, float cfg,
                int batch, size_t per_image, float *denoised);

/* APG, as ComfyUI's pre-CFG function: the guidance cond - uncond (or the
 * running average with momentum), its norm per image cut to norm_threshold,
 * its part along cond times eta, into modified = uncond + that + (cond -
 * uncond) / cfg. */
void kiln_apg(kiln_guidance *g, const float *cond, const float *uncond, float sigma, float cfg, int batch,
              size_t per_image, float *modified);

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
