/* ConditioningSetArea: prompts sampled on boxes of the latent, as ComfyUI's
 * calc_cond_batch runs them. Each part (and each opposite area ComfyUI adds
 * for an area) is a run: the model on its box alone, its prediction weighted
 * there by the run's weights; each side's runs are averaged by their
 * weights at every latent pixel, and the guidance combines the two sides. */
#ifndef KILN_COND_AREA_H
#define KILN_COND_AREA_H

#include <stdbool.h>

#include "pipeline.h"

/* One run of a side: the prompt of parts[side][text] on the box (y, x,
 * h, w), weighted there by mult (h, w). Its box, weights and range are
 * those of part `source` of side `source_side`: its own, or for an opposite
 * area the other side's part that has the area. */
typedef struct {
    int side, text;
    int source_side, source;
    int y, x, h, w;
    float *mult;
} area_run;

typedef struct {
    area_run *runs;
    int nruns;
} area_plan;

/* Whether any part of either side has an area (ConditioningSetArea,
 * ConditioningSetAreaPercentage, ConditioningSetMask's "mask bounds"). */
bool cond_parts_have_areas(const kiln_conditioning_part *parts[2], const int nparts[2]);

/* The runs of the parts on a latent of latent_h x latent_w: their areas
 * resolved (fractions rounded, mask bounds found), the opposite areas added
 * (the positive side's first), each box cut to the latent and its weights
 * made. */
kiln_status area_plan_make(const kiln_conditioning_part *parts[2], const int nparts[2], int latent_h,
                           int latent_w, area_plan *plan);
void area_plan_free(area_plan *plan);

typedef struct cond_areas cond_areas;

/* The job's sampling on its parts' runs: a denoiser for each, at guidance
 * 1 on its box. */
kiln_status cond_areas_make(const kiln_model *m, const kiln_sampling_job *job, const kiln_model_sampling *ms,
                            const kiln_conditioning_part *parts[2], const int nparts[2], cond_areas **out);
/* A kiln_denoise_fn: each side's runs holding sigma on their boxes of x,
 * averaged by their weights, then uncond + (cond - uncond) * cfg. */
kiln_status cond_areas_call(void *ctx, const float *x, float sigma, float *denoised);
/* A kiln_uncond_fn: the last call's unconditional prediction. */
kiln_status cond_areas_uncond(void *ctx, float *uncond);
void cond_areas_free(cond_areas *c);

#endif
