/* SamplerCustomAdvanced's guiders of three prompts, DualCFGGuider and
 * PerpNegGuider: each step the model's x0 predictions of the three, combined
 * as ComfyUI's guiders combine them. The predictions come of two denoisers
 * (a pair of prompts in one batch, and the third prompt alone), three rows
 * of the model a step as ComfyUI runs. */
#ifndef KILN_GUIDERS_H
#define KILN_GUIDERS_H

#include "pipeline.h"

typedef struct three_prompts three_prompts;

/* The job's guider (job->guider, its third prompt and second scale) on the
 * positive and negative prompts. */
kiln_status three_prompts_make(const kiln_model *m, const kiln_sampling_job *job, const kiln_model_sampling *ms,
                               const kiln_conditioning *positive, const kiln_conditioning *negative,
                               three_prompts **out);
/* A kiln_denoise_fn: the guider's x0 prediction at x, sigma. */
kiln_status three_prompts_call(void *ctx, const float *x, float sigma, float *denoised);
void three_prompts_free(three_prompts *t);

/* DualCFGGuider "regular" on x0 predictions: negative + (middle - negative)
 * cfg2 (guided, the pair's output) + (positive - middle) cfg1, as ComfyUI's
 * float32 steps. */
void kiln_dual_cfg(const float *guided, const float *middle, const float *positive, float cfg1, size_t n, float *out);
/* DualCFGGuider "nested": negative + cfg2 (text - negative), text the
 * positive guided from the middle at cfg1. */
void kiln_dual_cfg_nested(const float *text, const float *negative, float cfg2, size_t n, float *out);
/* PerpNegGuider's perp_neg on x0 predictions: with p = positive - empty and
 * q = negative - empty, empty + cfg (p - neg_scale (q - <q, p> / |p|^2 p)),
 * the products summed over all n (the whole batch). */
void kiln_perp_neg(const float *positive, const float *negative, const float *empty, float neg_scale, float cfg,
                   size_t n, float *out);

#endif
