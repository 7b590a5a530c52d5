#include "guiders.h"

#include <math.h>
#include <stdlib.h>

#include "status.h"

/* each product and sum rounded to float32 on its own, as torch does them
   (GCC with -std=c17 never fuses them; clang would) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void kiln_dual_cfg(const float *guided, const float *middle, const float *positive, float cfg1, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = guided[i] + (positive[i] - middle[i]) * cfg1;
}

void kiln_dual_cfg_nested(const float *text, const float *negative, float cfg2, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = negative[i] + cfg2 * (text[i] - negative[i]);
}

void kiln_perp_neg(const float *positive, const float *negative, const float *empty, float neg_scale, float cfg,
                   size_t n, float *out)
{
    /* torch's sums are float32 results of a wider accumulation; kiln's in double, rounded once */
    double dot = 0.0, norm2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float p = positive[i] - empty[i], q = negative[i] - empty[i];
        dot += (double)(q * p);
        norm2 += (double)p * p;
    }
    const float norm = (float)sqrt(norm2), coef = (float)dot / (norm * norm);
    for (size_t i = 0; i < n; i++) {
        const float p = positive[i] - empty[i], q = negative[i] - empty[i];
        const float across = (q - coef * p) * neg_scale;
        out[i] = empty[i] + cfg * (p - across);
    }
}

struct three_prompts {
    kiln_guider_kind kind;
    /* DualCFG: (middle, negative) at cfg2 and the positive alone; nested: (positive, middle) at cfg1 and the
       negative alone; PerpNeg: (positive, empty) and the negative alone */
    prompt_pair pair, single;
    float cfg, scale2;
    size_t n;
    float *pair_out, *single_out;
};

void three_prompts_free(three_prompts *t)
{
    if (!t) return;
    prompt_pair_free(&t->pair);
    prompt_pair_free(&t->single);
    free(t->pair_out);
    free(t->single_out);
    free(t);
}

kiln_status three_prompts_make(const kiln_model *m, const kiln_sampling_job *job, const kiln_model_sampling *ms,
                               const kiln_conditioning *positive, const kiln_conditioning *negative,
                               three_prompts **out)
{
    three_prompts *t = calloc(1, sizeof *t);
    if (!t) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    t->kind = job->guider, t->cfg = job->cfg, t->scale2 = job->scale2;
    t->n = (size_t)job->batch * kiln_model_latent_channels(m) * job->latent_h * job->latent_w;
    const kiln_conditioning *third = job->third;
    const bool dual = t->kind == KILN_GUIDER_DUAL_CFG, nested = t->kind == KILN_GUIDER_DUAL_CFG_NESTED;
    const kiln_conditioning *pair[2] = {dual ? third : positive, dual ? negative : third}; /* cond, uncond */
    const kiln_conditioning *alone = dual ? positive : negative;
    const float pair_cfg = dual ? t->scale2 : t->cfg;
    kiln_status st = KILN_OK;
    if (!(t->pair_out = malloc(t->n * sizeof(float))) || !(t->single_out = malloc(t->n * sizeof(float))))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    if (st == KILN_OK)
        st = prompt_pair_make(m, job, ms, pair[0], pair[1], NULL, job->latent_h, job->latent_w, pair_cfg, &t->pair);
    if (st == KILN_OK) st = prompt_pair_make(m, job, ms, alone, alone, NULL, job->latent_h, job->latent_w, 1.0f,
                                             &t->single);
    if (st == KILN_OK && !nested) st = kiln_denoiser_keep_cond(&t->pair.d);
    if (st == KILN_OK && t->kind == KILN_GUIDER_PERP_NEG) st = kiln_denoiser_keep_uncond(&t->pair.d);
    if (st != KILN_OK) {
        three_prompts_free(t);
        return st;
    }
    *out = t;
    return KILN_OK;
}

kiln_status three_prompts_call(void *ctx, const float *x, float sigma, float *denoised)
{
    three_prompts *t = ctx;
    TRY(kiln_denoiser_call(&t->pair.d, x, sigma, t->pair_out));
    TRY(kiln_denoiser_call(&t->single.d, x, sigma, t->single_out));
    const kiln_denoiser *d = &t->pair.d;
    if (t->kind == KILN_GUIDER_DUAL_CFG)
        kiln_dual_cfg(t->pair_out, d->cond_denoised, t->single_out, t->cfg, t->n, denoised);
    else if (t->kind == KILN_GUIDER_DUAL_CFG_NESTED)
        kiln_dual_cfg_nested(t->pair_out, t->single_out, t->scale2, t->n, denoised);
    else
        kiln_perp_neg(d->cond_denoised, t->single_out, d->uncond_denoised, t->scale2, t->cfg, t->n, denoised);
    return KILN_OK;
}
