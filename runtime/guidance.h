/* Guidance functions ComfyUI's model patches put in place of the plain
 * uncond + (cond - uncond) * cfg, or after it, on the two x0 predictions of
 * a step (batch images of per_image floats each) at the sampler's x. */
#ifndef KILN_GUIDANCE_H
#define KILN_GUIDANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"
#include "latent_operation.h"

/* The guidance patches on a model, in the order they act (ComfyUI's is
 * that of the nodes; kiln's is fixed): LatentApplyOperationCFG, TCFG, then APG before the guidance,
 * RescaleCFG in place of the plain guidance, then CFGZeroStar, Mahiro,
 * CFGNorm and Epsilon Scaling after it. */
typedef struct kiln_cfg_patches {
    float rescale_cfg; /* RescaleCFG's multiplier; 0: none */
    bool zero_star;    /* CFGZeroStar */
    bool apg;          /* APG (Adaptive Projected Guidance), its eta, norm_threshold (0: none) and momentum (0: none) */
    float apg_eta, apg_norm_threshold, apg_momentum;
    bool tcfg;            /* TCFG (tangential damping CFG) */
    bool mahiro;          /* Mahiro */
    float cfg_norm;       /* CFGNorm's strength; 0: none */
    float epsilon_scaling; /* Epsilon Scaling's factor; 0: none */
    bool has_operation;    /* LatentApplyOperationCFG, with this operation */
    kiln_latent_operation operation;
    bool fresca;           /* FreSca, with these scales and cutoff (kiln_fresca's) */
    float fresca_low, fresca_high;
    int fresca_cutoff;
} kiln_cfg_patches;

/* Whether any patch is on; whether any needs the unconditional prediction
 * (the others, CFGNorm and Epsilon Scaling, act at cfg 1 too, on the
 * conditional prediction alone). */
bool kiln_cfg_patched(const kiln_cfg_patches *p);
bool kiln_cfg_patched_uncond(const kiln_cfg_patches *p);

/* A sampling's guidance with the patches, and what APG keeps from one step
 * to the next: its running average of the guidance, restarted where the
 * sigma rises (a new pass), as ComfyUI's node keeps it. */
typedef struct kiln_guidance {
    kiln_cfg_patches patches;
    size_t n;
    int channels, height, width; /* the latent's: Mahiro and CFGNorm go pixel by pixel, a latent operation by
                                    image */
    float *running, *modified; /* (n) APG's running average and its conditional prediction */
    float *damped;             /* (n) TCFG's unconditional prediction */
    float *operated, *scratch; /* (n) the latent operation's conditional prediction, and its scratch */
    float *filtered;           /* (n) FreSca's conditional prediction */
    double *fresca_work;       /* (KILN_FRESCA_WORK(h, w)) its transform's */
    bool running_set, has_prev;
    float prev_sigma;
} kiln_guidance;

/* For n floats of latents (channels, height, width). */
kiln_status kiln_guidance_init(kiln_guidance *g, const kiln_cfg_patches *patches, size_t n, int channels, int height,
                               int width);
void kiln_guidance_free(kiln_guidance *g);

/* A step's guided x0 prediction (n = batch x per_image) with the patches:
 * TCFG's unconditional prediction in place of uncond, APG's conditional one
 * in place of cond, then RescaleCFG's guidance or uncond + (cond - uncond)
 * * cfg, then the post-CFG patches (kiln_post_cfg). */
void kiln_guide(kiln_guidance *g, const float *x, const float *cond, const float *uncond, float sigma, float cfg,
                int batch, size_t per_image, float *denoised);
/* The patches at cfg 1, where ComfyUI skips the unconditional prediction
 * (its slot zeros): denoised, the conditional prediction, through the latent
 * operation, then CFGNorm and Epsilon Scaling (in place). */
void kiln_guide_alone(kiln_guidance *g, const float *x, int batch, size_t per_image, float *denoised);
/* The post-CFG patches on the guided denoised (in place): CFGZeroStar and
 * Mahiro (which need uncond), CFGNorm, Epsilon Scaling; uncond NULL at cfg
 * 1, where only the last two act. */
void kiln_post_cfg(const kiln_guidance *g, const float *x, const float *cond, const float *uncond, float cfg,
                   int batch, size_t per_image, float *denoised);

/* FreSca, as ComfyUI's pre-CFG function: the guidance direction g = cond -
 * uncond of each image and channel (h x w) scaled by `high`, but its
 * frequencies within `cutoff` of zero on both axes (min(cutoff, side / 2):
 * -f to f - 1 after torch's fftshift) by `low`: the real part of the
 * inverse DFT, then uncond added back -> filtered. work holds
 * KILN_FRESCA_WORK(height, width) doubles. */
#define KILN_FRESCA_WORK(height, width) ((size_t)(height) * (width) * 4)
void kiln_fresca_filter(const float *cond, const float *uncond, float low, float high, int cutoff, int images,
                        int height, int width, double *work, float *filtered);
/* TCFG, as ComfyUI's pre-CFG function: per image the scores s = x - pred,
 * the unconditional one replaced by its projection on the first right
 * singular vector of the 2 x per_image matrix [s_uncond; s_cond], into
 * damped = x - that. */
void kiln_tcfg(const float *x, const float *cond, const float *uncond, int batch, size_t per_image, float *damped);

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

/* Mahiro, as ComfyUI's post-CFG function: leap = cfg cond, u = cfg uncond,
 * merge = (leap + denoised) / 2; sim the mean over the batch and the pixels
 * of the cosine similarity over the channels of sqrt|u| sign u and sqrt|merge|
 * sign merge; denoised = (s denoised + (4 - s) leap) / 4 with s = 2 (sim +
 * 1). Latents (batch, channels, plane). */
void kiln_mahiro(const float *cond, const float *uncond, float cfg, int batch, int channels, size_t plane,
                 float *denoised);

/* CFGNorm, as ComfyUI's post-CFG function: each pixel's denoised times
 * strength and min(1, |cond| / (|denoised| + 1e-8)), norms over the
 * channels. */
void kiln_cfg_norm(const float *cond, float strength, int batch, int channels, size_t plane, float *denoised);

#endif
