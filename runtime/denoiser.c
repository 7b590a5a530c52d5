#include "denoiser.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hypertile.h"
#include "sag.h"
#include "status.h"

/* ComfyUI skips the unconditional half when guidance is exactly 1. */
static bool uses_guidance(float cfg) { return fabsf(cfg - 1.0f) > 1e-9f; }

kiln_status kiln_denoiser_init(kiln_denoiser *d, const kiln_model *m, const kiln_model_sampling *sampling,
                               int batch, int h, int w, float cfg, const float *context, int tokens)
{
    if (batch < 1 || batch > KILN_MAX_BATCH)
        return kiln_fail(KILN_ERR_INVALID_ARG, "--batch %d: must be 1..%d", batch, KILN_MAX_BATCH);
    const int channels = kiln_model_latent_channels(m);
    *d = (kiln_denoiser){.model = m, .batch = batch, .channels = channels, .h = h, .w = w,
                         .unet_channels = !kiln_model_is_dit(m)               ? m->unet.config->in_channels
                                          : kiln_model_is_mmdit(m) ? m->flux.in_channels / 4
                                                                              : channels,
                         .cfg = cfg,
                         .context = context, .tokens = tokens, .sampling = sampling};
    d->rows = uses_guidance(cfg) ? 2 * batch : batch;
    size_t n = (size_t)d->rows * d->channels * h * w;
    d->unet_in = malloc((size_t)d->rows * d->unet_channels * h * w * sizeof(float));
    d->unet_out = malloc(n * sizeof(float));
    if (!d->unet_in || !d->unet_out) {
        kiln_denoiser_free(d);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    }
    TRY(kiln_graph_create(m->weights ? kiln_weights_backend(m->weights) : NULL, &d->graph));
    kiln_graph_set_replay(d->graph, true); /* every step runs the same ops */
    return KILN_OK;
}

kiln_status kiln_denoiser_keep_uncond(kiln_denoiser *d)
{
    const size_t latent = (size_t)d->batch * d->channels * d->h * d->w;
    if (!(d->uncond_denoised = malloc(latent * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    if (d->rows == 2 * d->batch) return KILN_OK;
    d->rows = 2 * d->batch;
    const size_t plane = (size_t)d->h * d->w;
    float *in = realloc(d->unet_in, (size_t)d->rows * d->unet_channels * plane * sizeof(float));
    if (in) d->unet_in = in;
    float *out = in ? realloc(d->unet_out, 2 * latent * sizeof(float)) : NULL;
    if (out) d->unet_out = out;
    return out ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
}

kiln_status kiln_denoiser_keep_cond(kiln_denoiser *d)
{
    if (!(d->cond_denoised = malloc((size_t)d->batch * d->channels * d->h * d->w * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    return KILN_OK;
}

kiln_status kiln_denoiser_set_cfg_patches(kiln_denoiser *d, const kiln_cfg_patches *patches)
{
    if (!(patches->rescale_cfg >= 0.0f && patches->rescale_cfg <= 1.0f))
        return kiln_fail(KILN_ERR_INVALID_ARG, "RescaleCFG multiplier %g: 0 to 1", patches->rescale_cfg);
    const size_t latent = (size_t)d->batch * d->channels * d->h * d->w;
    if (!(d->patched_pred = malloc(2 * latent * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    return kiln_guidance_init(&d->guide, patches, latent, d->channels, d->h, d->w);
}

kiln_status kiln_denoiser_uncond(void *ctx, float *uncond_denoised)
{
    const kiln_denoiser *d = ctx;
    if (!d->uncond_denoised)
        return kiln_fail(KILN_ERR_INVALID_ARG, "denoiser: the unconditional prediction is not kept (keep_uncond)");
    memcpy(uncond_denoised, d->uncond_denoised, (size_t)d->batch * d->channels * d->h * d->w * sizeof(float));
    return KILN_OK;
}

kiln_status kiln_denoiser_set_inpaint(kiln_denoiser *d, const kiln_inpaint_mask *inpaint)
{
    size_t plane = (size_t)d->h * d->w, latent = (size_t)d->channels * plane;
    d->blended = malloc(d->batch * latent * sizeof(float));
    if (!d->blended) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for inpainting");
    if (inpaint->differential > 0.0f && !(d->call_mask = malloc(plane * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for inpainting");
    d->inpaint = inpaint;
    /* FLUX.1 Fill's extra channels are the pipeline's (kiln_denoiser_set_concat) */
    if (d->model->info.variant != KILN_VARIANT_INPAINT || kiln_model_is_dit(d->model)) return KILN_OK;
    if (!(d->inpaint_concat = malloc((plane + latent) * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for inpainting");
    for (size_t i = 0; i < plane; i++) d->inpaint_concat[i] = nearbyintf(inpaint->mask[i]);
    memcpy(d->inpaint_concat + plane, inpaint->latent, latent * sizeof(float)); /* one image: the same in every row */
    return kiln_denoiser_set_concat(d, d->inpaint_concat);
}

kiln_status kiln_denoiser_set_concat(kiln_denoiser *d, const float *concat)
{
    if (d->unet_channels == d->channels)
        return kiln_fail(KILN_ERR_INVALID_ARG, "denoiser: the UNet takes no image channels besides the latent");
    d->concat = concat;
    return KILN_OK;
}

/* Flux's inputs that stay the same over the steps: each prompt's T5 rows
 * and pooled CLIP output repeated over the batch, the guidance value; the
 * negative rows' calls get a graph of their own (their caption may be of
 * another length). */
static kiln_status set_flux_inputs(kiln_denoiser *d)
{
    const kiln_flux *f = &d->model->flux;
    const size_t B = (size_t)d->batch;
    if (d->h % 2 || d->w % 2)
        return kiln_fail(KILN_ERR_INVALID_ARG, "flux: a %dx%d latent is not whole 2x2 patches", d->h, d->w);
    d->dit_out = malloc(B * d->unet_channels * d->h * d->w * sizeof(float)); /* the packed rows going in */
    if (!d->dit_out) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    for (int i = 0; i < 2; i++) {
        if (!(d->flux_guidance[i] = malloc(B * sizeof(float))))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
        for (size_t b = 0; b < B; b++) d->flux_guidance[i][b] = d->guidance[i];
        const kiln_conditioning *c = d->captions[i];
        if (!f->chroma && (c->pooled_dim != f->pooled_dim || !c->pooled))
            return kiln_fail(KILN_ERR_INVALID_ARG, "the %s conditioning has no pooled output of %d (%s)",
                             i ? "positive" : "negative", f->pooled_dim, f->sd3 ? "the CLIPs'" : "CLIP-L's");
        const size_t rows = (size_t)c->tokens * c->dim;
        d->flux_context[i] = malloc(B * rows * sizeof(float));
        d->flux_pooled[i] = f->chroma ? NULL : malloc(B * c->pooled_dim * sizeof(float));
        if (!d->flux_context[i] || (!f->chroma && !d->flux_pooled[i]))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
        for (size_t b = 0; b < B; b++) {
            memcpy(d->flux_context[i] + b * rows, c->data, rows * sizeof(float));
            if (!f->chroma)
                memcpy(d->flux_pooled[i] + b * c->pooled_dim, c->pooled, (size_t)c->pooled_dim * sizeof(float));
        }
    }
    return kiln_graph_create(kiln_weights_backend(d->model->weights), &d->negative_graph);
}

kiln_status kiln_denoiser_set_captions(kiln_denoiser *d, const kiln_conditioning *negative,
                                       const kiln_conditioning *positive)
{
    const kiln_model *m = d->model;
    if (!kiln_model_is_dit(m)) return kiln_fail(KILN_ERR_INVALID_ARG, "denoiser: captions are for a DiT model");
    const int width = kiln_model_is_mmdit(m) ? m->flux.context_dim : m->pixart.caption_dim;
    for (int i = 0; i < 2; i++) {
        const kiln_conditioning *c = i ? positive : negative;
        if (c->dim != width || c->tokens < 1)
            return kiln_fail(KILN_ERR_INVALID_ARG, "the %s conditioning is %d tokens of %d; the model reads %d",
                             i ? "positive" : "negative", c->tokens, c->dim, width);
        d->captions[i] = c;
    }
    if (m->family->arch == KILN_ARCH_PIXART) {
        d->dit_out = malloc((size_t)d->rows * m->pixart.out_channels * d->h * d->w * sizeof(float));
        if (!d->dit_out) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
        return KILN_OK;
    }
    return set_flux_inputs(d);
}

kiln_status kiln_denoiser_set_references(kiln_denoiser *d, int which, const kiln_latent *refs, int n,
                                         kiln_reference_method method)
{
    const kiln_model *m = d->model;
    if (!kiln_model_is_dit(m) || m->family->arch != KILN_ARCH_FLUX || !d->dit_out)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "reference latents (ReferenceLatent, FLUX.1 Kontext) are for a Flux "
                         "model's conditioning; this is a %s model", m->info.family);
    if (n < 1 || n > FLUX_MAX_REFERENCES)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%d reference latents on a prompt: 1 to %d", n, FLUX_MAX_REFERENCES);
    const int K = m->flux.in_channels, C = d->channels;
    if (K != 4 * C)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "reference latents with %s, which reads a picture's channels of its own",
                         m->info.unet_name);
    int h[FLUX_MAX_REFERENCES], w[FLUX_MAX_REFERENCES], R = 0;
    for (int i = 0; i < n; i++) {
        if (refs[i].batch != 1 || refs[i].channels != C || refs[i].height < 1 || refs[i].width < 1 || !refs[i].data)
            return kiln_fail(KILN_ERR_INVALID_ARG, "reference latent %d: %d pictures of %d channels; one of the "
                             "model's %d", i + 1, refs[i].batch, refs[i].channels, C);
        h[i] = refs[i].height, w[i] = refs[i].width;
        R += ((h[i] + 1) / 2) * ((w[i] + 1) / 2);
    }
    kiln_flux_place_references(method, d->h, d->w, h, w, n, d->refs[which]);
    free(d->ref_tokens[which]);
    if (!(d->ref_tokens[which] = malloc((size_t)R * K * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for reference latents");
    float *t = d->ref_tokens[which];
    for (int i = 0; i < n; i++) { /* as the model takes a latent: process_in */
        const size_t count = (size_t)C * h[i] * w[i];
        float *scaled = malloc(count * sizeof *scaled);
        if (!scaled) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for reference latents");
        kiln_vae_latent_in(&m->vae, refs[i].data, count, (size_t)h[i] * w[i], scaled);
        kiln_flux_pack_reference(scaled, C, h[i], w[i], t);
        free(scaled);
        t += (size_t)d->refs[which][i].h * d->refs[which][i].w * K;
    }
    d->nrefs[which] = n;
    const size_t row = (size_t)(d->h / 2) * (d->w / 2) + R;
    float *grown = realloc(d->flux_tokens, (size_t)d->batch * row * K * sizeof(float));
    if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for reference latents");
    d->flux_tokens = grown;
    return KILN_OK;
}

/* The extra pass's prediction of the positive rows. */
static kiln_status pass_out_alloc(kiln_denoiser *d)
{
    if (!d->pass_out && !(d->pass_out = malloc((size_t)d->batch * d->channels * d->h * d->w * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    return KILN_OK;
}

kiln_status kiln_denoiser_set_freeu(kiln_denoiser *d, const kiln_freeu *freeu)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_dit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "FreeU scales a UNet's decoder blocks and skips; %s is a %s model "
                         "without them", m->info.unet_name, m->info.family);
    const double values[4] = {freeu->b1, freeu->b2, freeu->s1, freeu->s2};
    for (int i = 0; i < 4; i++)
        if (!(values[i] >= 0.0 && values[i] <= 10.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "FreeU%s: %s %g: must be 0..10", freeu->v2 ? "_V2" : "",
                             (const char *[]){"b1", "b2", "s1", "s2"}[i], values[i]);
    if (d->unet_calls)
        return kiln_fail(KILN_ERR_INVALID_ARG, "FreeU: set before the denoiser's first call");
    d->freeu = freeu;
    return KILN_OK;
}

static kiln_status resize_method(const char *name, const char *which, kiln_resample_method *out)
{
    if (!name) name = "bicubic";
    if (kiln_resample_from_name(name, out)) return KILN_OK;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "PatchModelAddDownscale: %s '%s': bicubic, bilinear, nearest-exact, area or "
                     "bislerp", which, name);
}

/* SelfAttentionGuidance's record of the middle block's q and k: its tokens
 * in plain calls and in Deep Shrink's (which resizes the path before it),
 * the buffer as large as the larger. Both set before the first call, so no
 * graph holds the old buffer. */
static kiln_status sag_record_buffer(kiln_denoiser *d)
{
    int row, h, w;
    kiln_unet_middle_grid(&d->model->unet, d->h, d->w, NULL, &row, &h, &w);
    d->sag_tokens = d->sag_tokens_shrunk = h * w;
    if (d->deep_shrink) {
        kiln_unet_middle_grid(&d->model->unet, d->h, d->w, &d->shrink, &row, &h, &w);
        d->sag_tokens_shrunk = h * w;
    }
    const int most = d->sag_tokens > d->sag_tokens_shrunk ? d->sag_tokens : d->sag_tokens_shrunk;
    free(d->sag_qk);
    if (!(d->sag_qk = malloc(2 * (size_t)d->rows * most * d->sag_channels * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SelfAttentionGuidance: out of host memory");
    return KILN_OK;
}

kiln_status kiln_denoiser_set_deep_shrink(kiln_denoiser *d, const kiln_deep_shrink *s)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_dit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "PatchModelAddDownscale resizes a UNet's blocks; %s is a %s model "
                         "without them", m->info.unet_name, m->info.family);
    if (s->block_number < 1 || s->block_number > 32 || !(s->downscale_factor >= 0.1 && s->downscale_factor <= 9.0) ||
        !(s->start_percent >= 0.0 && s->start_percent <= 1.0) || !(s->end_percent >= 0.0 && s->end_percent <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "PatchModelAddDownscale: block_number %d (1 to 32), downscale_factor %g "
                         "(0.1 to 9), start_percent %g and end_percent %g (0 to 1)", s->block_number,
                         s->downscale_factor, s->start_percent, s->end_percent);
    kiln_unet_shrink shrink = {.block = s->block_number, .factor = s->downscale_factor,
                               .after_skip = s->downscale_after_skip};
    TRY(resize_method(s->downscale_method, "downscale_method", &shrink.down));
    TRY(resize_method(s->upscale_method, "upscale_method", &shrink.up));
    if (d->unet_calls) return kiln_fail(KILN_ERR_INVALID_ARG, "PatchModelAddDownscale: set before the first call");
    d->shrink = shrink;
    d->shrink_sigma_hi = kiln_percent_to_sigma(d->sampling, s->start_percent);
    d->shrink_sigma_lo = kiln_percent_to_sigma(d->sampling, s->end_percent);
    d->deep_shrink = s;
    if (d->sag_scale != 0.0f) TRY(sag_record_buffer(d)); /* its middle block may now be smaller or larger */
    TRY(kiln_graph_create(kiln_weights_backend(m->weights), &d->shrink_graph));
    kiln_graph_set_replay(d->shrink_graph, true);
    return KILN_OK;
}

kiln_status kiln_denoiser_set_hypertile(kiln_denoiser *d, const kiln_hypertile *s, kiln_rng *rng)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_dit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "HyperTile tiles a UNet's self-attention; %s is a %s model without "
                         "one", m->info.unet_name, m->info.family);
    TRY(kiln_hypertile_check(s));
    d->hypertile = s;
    d->hypertile_rng = rng;
    return KILN_OK;
}

kiln_status kiln_denoiser_set_hypernetworks(kiln_denoiser *d, const kiln_hypernetwork *const *items, int count)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_dit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "hypernetworks patch a UNet's attention; %s is a %s model without "
                         "one", m->info.unet_name, m->info.family);
    if (d->unet_calls) return kiln_fail(KILN_ERR_INVALID_ARG, "hypernetworks: set before the first call");
    d->hypernetworks = (kiln_hypernetworks){items, count};
    return KILN_OK;
}

kiln_status kiln_denoiser_set_skip_layer_guidance(kiln_denoiser *d, const kiln_skip_layer_guidance *slg)
{
    const kiln_model *m = d->model;
    if (!kiln_model_is_mmdit(m) || !d->dit_out)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "SkipLayerGuidance works with SD3 and Flux models; this is a %s model",
                         m->info.family);
    const int blocks[2] = {m->flux.ndouble, m->flux.nsingle};
    const int *layers[2] = {slg->double_layers, slg->single_layers}, counts[2] = {slg->double_count, slg->single_count};
    uint64_t *masks[2] = {&d->slg_double, &d->slg_single};
    static const char *const kinds[2] = {"double (SD3: joint)", "single"};
    for (int k = 0; k < 2; k++) {
        *masks[k] = 0;
        for (int i = 0; i < counts[k]; i++) {
            if (layers[k][i] < 0 || layers[k][i] >= blocks[k])
                return kiln_fail(KILN_ERR_INVALID_ARG, "SkipLayerGuidance: %s block %d; the model has %d", kinds[k],
                                 layers[k][i], blocks[k]);
            *masks[k] |= (uint64_t)1 << layers[k][i];
        }
    }
    if (!(isfinite(slg->scale) && isfinite(slg->rescaling_scale) && slg->start_percent >= 0.0 &&
          slg->end_percent <= 1.0 && slg->start_percent <= slg->end_percent))
        return kiln_fail(KILN_ERR_INVALID_ARG, "SkipLayerGuidance: scale %g, rescaling %g, from %g to %g of the "
                         "sampling", slg->scale, slg->rescaling_scale, slg->start_percent, slg->end_percent);
    d->slg = slg;
    d->slg_sigma_hi = kiln_percent_to_sigma(d->sampling, slg->start_percent);
    d->slg_sigma_lo = kiln_percent_to_sigma(d->sampling, slg->end_percent);
    TRY(pass_out_alloc(d));
    return kiln_graph_create(kiln_weights_backend(m->weights), &d->slg_graph);
}

kiln_status kiln_denoiser_set_pag(kiln_denoiser *d, float scale)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_dit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "PerturbedAttentionGuidance perturbs a UNet's middle block; %s is a %s "
                         "model without one (SkipLayerGuidance is its kin for SD3 and Flux)", m->info.unet_name,
                         m->info.family);
    if (!(scale > 0.0f && scale <= 100.0f))
        return kiln_fail(KILN_ERR_INVALID_ARG, "PerturbedAttentionGuidance: scale %g: must be in (0, 100]", scale);
    if (d->unet_calls) return kiln_fail(KILN_ERR_INVALID_ARG, "PerturbedAttentionGuidance: set before the first call");
    d->pag_scale = scale;
    return pass_out_alloc(d);
}

kiln_status kiln_denoiser_set_step_cache(kiln_denoiser *d, const kiln_step_cache *cache, bool batched)
{
    TRY(kiln_step_cache_check(cache, "ksampler"));
    const bool easy = cache->kind == KILN_EASY_CACHE;
    const size_t plane = (size_t)d->h * d->w;
    /* EasyCache: the model's rows (ComfyUI's first call: the negative rows batched with the positive, else the
       positive's alone); LazyCache: the sampler's latent */
    const int channels = easy ? d->unet_channels : d->channels, rows = easy ? d->rows : d->batch;
    d->cache_first = easy && d->rows != d->batch && !batched ? d->batch : 0;
    d->cache_norm_rows = easy && d->rows != d->batch && !batched ? d->batch : rows;
    const size_t sub = (size_t)d->batch * channels * ((d->h + 7) / 8) * ((d->w + 7) / 8);
    TRY(kiln_step_cache_init(&d->cache, cache, d->sampling, sub, (size_t)rows * d->channels * plane));
    d->cache_xs = malloc(2 * sub * sizeof *d->cache_xs);
    if (!d->cache_xs) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    d->cache_os = d->cache_xs + sub;
    return KILN_OK;
}

kiln_status kiln_denoiser_set_sag(kiln_denoiser *d, float scale, float blur)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_dit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "SelfAttentionGuidance reads a UNet's middle block; %s is a %s model "
                         "without one", m->info.unet_name, m->info.family);
    if (!(scale >= -2.0f && scale <= 5.0f && scale != 0.0f) || !(blur > 0.0f && blur <= 10.0f))
        return kiln_fail(KILN_ERR_INVALID_ARG, "SelfAttentionGuidance: scale %g (-2 to 5, not 0), blur_sigma %g (above "
                         "0, at most 10)", scale, blur);
    const char *with = d->ncontrols ? "ControlNets" : d->nimage_prompts ? "IP-Adapters" : d->slg ? "SkipLayerGuidance"
                       : d->pag_scale > 0.0f ? "PerturbedAttentionGuidance" : NULL;
    if (with)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "SelfAttentionGuidance with %s: its pass of the negative prompt would "
                         "need them too, which kiln does not give it", with);
    if (d->unet_calls) return kiln_fail(KILN_ERR_INVALID_ARG, "SelfAttentionGuidance: set before the first call");
    int row, h, w;
    if (!kiln_unet_middle_grid(&m->unet, d->h, d->w, NULL, &row, &h, &w))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "SelfAttentionGuidance: %s has no attention in its middle block",
                         m->info.unet_name);
    const kiln_spatial_transformer *st = &m->unet.rows[row].attn;
    TRY(kiln_denoiser_keep_uncond(d)); /* ComfyUI's node turns the cfg 1 shortcut off */
    d->sag_scale = scale, d->sag_blur = blur;
    d->sag_channels = st->channels, d->sag_heads = st->heads;
    const size_t latent = (size_t)d->batch * d->channels * d->h * d->w;
    d->sag_in = malloc((size_t)d->batch * d->unet_channels * d->h * d->w * sizeof(float));
    d->sag_out = malloc(latent * sizeof(float));
    d->sag_degraded = malloc(2 * latent * sizeof(float));
    if (!d->sag_in || !d->sag_out || !d->sag_degraded)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SelfAttentionGuidance: out of host memory");
    return sag_record_buffer(d);
}

/* Where the UNet's side inputs cannot go. */
static kiln_status unet_only(const kiln_denoiser *d, const char *what)
{
    if (!kiln_model_is_dit(d->model)) return KILN_OK;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "%s works with SD 1.x/2.x/XL UNets; this is a %s model", what,
                     d->model->info.family);
}

/* The values of one row of a control's hint. */
static size_t hint_size(const kiln_denoiser *d, const kiln_controlnet *net)
{
    int shape[3] = {3, 8 * d->h, 8 * d->w};
    if (net->flux) kiln_flux_controlnet_hint_shape(net->flux, d->h, d->w, shape);
    return (size_t)shape[0] * shape[1] * shape[2];
}

/* A T2I-Adapter's features, computed once, placed where the UNet's blocks
 * have their shapes: a level past the UNet's input blocks, or one the middle
 * block's output is not the size of (the two-level test UNets'), joins
 * nothing, as ComfyUI and diffusers leave it out. */
static kiln_status adapter_features(kiln_denoiser *d, int i, const kiln_control *c)
{
    const kiln_t2i_adapter *a = c->net->adapter;
    const unet_config *cfg = d->model->unet.config;
    int ph, pw;
    kiln_t2i_adapter_picture_size(a, d->h, d->w, &ph, &pw);
    float *features;
    int64_t(*shapes)[3] = d->adapter_shape[i];
    TRY(kiln_t2i_adapter_features(a, kiln_weights_backend(d->model->weights), c->hint, ph, pw, &features, shapes));
    size_t total = 0;
    for (int l = 0; l < a->nlevels; l++) {
        const int block = kiln_t2i_adapter_block(a, l);
        int64_t there[3];
        const bool exists = kiln_unet_block_shape(cfg, d->h, d->w, block, there);
        const bool fits = exists && !memcmp(there, shapes[l], sizeof there);
        if (exists && !fits && block != KILN_T2I_MIDDLE) {
            free(features);
            return kiln_fail(KILN_ERR_INVALID_ARG, "T2I-Adapter %d: level %d gives %lldx%lldx%lld, input block %d of "
                             "the UNet has %lldx%lldx%lld", i + 1, l, (long long)shapes[l][0], (long long)shapes[l][1],
                             (long long)shapes[l][2], block, (long long)there[0], (long long)there[1],
                             (long long)there[2]);
        }
        d->adapter_block[i][l] = fits ? block : KILN_T2I_UNUSED;
        if (fits) total += (size_t)d->rows * shapes[l][0] * shapes[l][1] * shapes[l][2];
    }
    float *out = d->hints[i] = malloc((total ? total : 1) * sizeof *out);
    if (!out) {
        free(features);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for the T2I-Adapter's features");
    }
    const int negative_rows = c->positive_only && d->rows == 2 * d->batch ? d->batch : 0;
    const float *level = features;
    for (int l = 0; l < a->nlevels; l++) {
        const size_t n = (size_t)shapes[l][0] * shapes[l][1] * shapes[l][2];
        for (int r = 0; r < d->rows && d->adapter_block[i][l] != KILN_T2I_UNUSED; r++, out += n)
            for (size_t k = 0; k < n; k++) out[k] = r < negative_rows ? 0.0f : level[k] * c->strength;
        level += n;
    }
    free(features);
    return KILN_OK;
}

kiln_status kiln_denoiser_set_controls(kiln_denoiser *d, const kiln_control *controls, int count)
{
    const bool flux = kiln_model_is_mmdit(d->model); /* Flux's or SD3's ControlNets */
    if (!flux) TRY(unet_only(d, "ControlNet"));
    if (count < 0 || count > KILN_MAX_CONTROLS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%d ControlNets on one sampling: kiln applies at most %d", count,
                         KILN_MAX_CONTROLS);
    for (int i = 0; i < count; i++) {
        const kiln_control *c = &controls[i];
        if (!c->net->flux != !flux)
            return kiln_fail(KILN_ERR_INVALID_ARG, "ControlNet %d is for %s, the model is %s", i + 1,
                             c->net->flux ? "a transformer (Flux or SD3)" : "a UNet", d->model->info.family);
        if (!(c->start_percent >= 0.0 && c->start_percent <= c->end_percent && c->end_percent <= 1.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "ControlNet %d: start %g and end %g: must be 0 <= start <= end <= 1",
                             i + 1, c->start_percent, c->end_percent);
        if (c->net->adapter) {
            TRY(adapter_features(d, i, c));
        } else {
            const size_t per = hint_size(d, c->net);
            if (!(d->hints[i] = malloc((size_t)d->rows * per * sizeof(float))))
                return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for the ControlNet hint");
            for (int r = 0; r < d->rows; r++) memcpy(d->hints[i] + r * per, c->hint, per * sizeof(float));
        }
        d->control_sigma_hi[i] = kiln_percent_to_sigma(d->sampling, c->start_percent);
        d->control_sigma_lo[i] = kiln_percent_to_sigma(d->sampling, c->end_percent);
    }
    d->controls = controls;
    d->ncontrols = count;
    return KILN_OK;
}

/* Ti: the adapter's tokens times the prompt's pictures. */
static int image_prompt_tokens(const kiln_image_prompt *ip)
{
    return ip->ntokens ? ip->ntokens : ip->adapter->tokens;
}

kiln_status kiln_denoiser_set_image_prompts(kiln_denoiser *d, const kiln_image_prompt *prompts, int count)
{
    const bool flux = kiln_model_is_dit(d->model) && d->model->family->arch == KILN_ARCH_FLUX;
    if (!flux) TRY(unet_only(d, "IP-Adapter"));
    if (count < 0 || count > KILN_MAX_IP_ADAPTERS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%d IP-Adapters on one sampling: kiln applies at most %d", count,
                         KILN_MAX_IP_ADAPTERS);
    for (int i = 0; i < count; i++) {
        const kiln_image_prompt *ip = &prompts[i];
        const kiln_ip_adapter *a = ip->adapter;
        if (!(ip->start_percent >= 0.0 && ip->start_percent <= ip->end_percent && ip->end_percent <= 1.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "IP-Adapter %d: start %g and end %g: must be 0 <= start <= end <= 1",
                             i + 1, ip->start_percent, ip->end_percent);
        if (flux ? !a->flux || a->nrows != d->model->flux.ndouble || a->context_dim != d->model->flux.context_dim
                 : a->flux || a->nrows != d->model->unet.config->nlayers ||
                       a->context_dim != d->model->unet.config->context_dim)
            return kiln_fail(KILN_ERR_INVALID_ARG, "denoiser: IP-Adapter %d was loaded for another model", i + 1);
        if (ip->ntokens < 0 || ip->ntokens % a->tokens || (a->flux && ip->ntokens > a->tokens))
            return kiln_fail(KILN_ERR_INVALID_ARG, "denoiser: IP-Adapter %d: %d image tokens, not its %d per picture",
                             i + 1, ip->ntokens, a->tokens);
        const size_t per = (size_t)image_prompt_tokens(ip) * a->context_dim;
        if (!(d->image_tokens[i] = malloc((size_t)d->rows * per * sizeof(float))))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory for the image tokens");
        /* rows as the context's: the negative prompt's first when guided */
        for (int r = 0; r < d->rows; r++) {
            const bool positive = d->rows == d->batch || r >= d->batch;
            memcpy(d->image_tokens[i] + r * per, ip->tokens + (positive ? per : 0), per * sizeof(float));
        }
        d->image_sigma_hi[i] = kiln_percent_to_sigma(d->sampling, ip->start_percent);
        d->image_sigma_lo[i] = kiln_percent_to_sigma(d->sampling, ip->end_percent);
    }
    d->image_prompts = prompts;
    d->nimage_prompts = count;
    return KILN_OK;
}

void kiln_denoiser_free(kiln_denoiser *d)
{
    kiln_step_cache_free(&d->cache);
    free(d->cache_xs);
    d->cache_xs = d->cache_os = NULL;
    kiln_graph_free(d->graph);
    kiln_graph_free(d->negative_graph);
    kiln_graph_free(d->slg_graph);
    kiln_graph_free(d->sag_graph);
    kiln_graph_free(d->shrink_graph);
    kiln_graph_free(d->sag_shrink_graph);
    d->graph = d->negative_graph = d->slg_graph = d->sag_graph = d->shrink_graph = d->sag_shrink_graph = NULL;
    free(d->sag_qk);
    free(d->sag_in);
    free(d->sag_out);
    free(d->sag_degraded);
    d->sag_qk = d->sag_in = d->sag_out = d->sag_degraded = NULL;
    free(d->pass_out);
    d->pass_out = NULL;
    for (int which = 0; which < 3; which++)
        for (size_t i = 0; i < sizeof d->control_graphs[0] / sizeof d->control_graphs[0][0]; i++) {
            kiln_graph_free(d->control_graphs[which][i]);
            d->control_graphs[which][i] = NULL;
        }
    for (int i = 0; i < KILN_MAX_CONTROLS; i++) {
        free(d->hints[i]);
        d->hints[i] = NULL;
    }
    for (int i = 0; i < KILN_MAX_IP_ADAPTERS; i++) {
        free(d->image_tokens[i]);
        d->image_tokens[i] = NULL;
    }
    free(d->blended);
    free(d->inpaint_concat);
    free(d->call_mask);
    d->blended = d->inpaint_concat = d->call_mask = NULL;
    free(d->uncond_denoised);
    d->uncond_denoised = NULL;
    free(d->cond_denoised);
    d->cond_denoised = NULL;
    free(d->patched_pred);
    d->patched_pred = NULL;
    kiln_guidance_free(&d->guide);
    free(d->unet_in);
    free(d->unet_out);
    free(d->dit_out);
    d->dit_out = NULL;
    for (int i = 0; i < 2; i++) {
        free(d->ref_tokens[i]);
        d->ref_tokens[i] = NULL;
    }
    free(d->flux_tokens);
    d->flux_tokens = NULL;
    for (int i = 0; i < 2; i++) {
        free(d->flux_context[i]);
        free(d->flux_pooled[i]);
        d->flux_context[i] = d->flux_pooled[i] = NULL;
    }
    for (int i = 0; i < 2; i++) {
        free(d->flux_guidance[i]);
        d->flux_guidance[i] = NULL;
    }
    d->unet_in = d->unet_out = NULL;
}

/* Rows [first, first + count) of x: a view, no copy. */
static tensor rows_view(const tensor *x, int64_t first, int64_t count)
{
    tensor v = *x;
    v.offset += (size_t)first * (kiln_tensor_nbytes(x) / (size_t)x->shape[0]);
    v.shape[0] = count;
    return v;
}

/* A positive-only ControlNet's residual r of the cond rows (B,C,H,W) made
 * the batch's (2B rows, as (1,2BC,H,W)): zeros on the uncond rows before it. */
static kiln_status cond_rows_only(kiln_graph *g, tensor **r)
{
    tensor *zeros, *both;
    TRY(nn_scale(g, *r, 0.0f, &zeros));
    tensor a = *zeros, b = **r; /* as one image of B*C channels each: the rows follow one another */
    a.shape[1] *= a.shape[0], a.shape[0] = 1;
    b.shape[1] *= b.shape[0], b.shape[0] = 1;
    TRY(nn_concat_channels(g, &a, &b, &both));
    nn_drop(g, &zeros);
    nn_drop(g, r);
    *r = both;
    return KILN_OK;
}

/* *slot + t, or t where *slot is NULL (t released either way) */
static kiln_status add_or_set(kiln_graph *g, tensor **slot, tensor *t)
{
    if (!*slot) {
        *slot = t;
        return KILN_OK;
    }
    return nn_add_into(g, slot, t);
}

/* The residuals of this call's ControlNets and T2I-Adapters, summed in the
 * order applied. The hints and features are inputs of the graph, so they
 * are all taken before any op: a replay uploads every input first. A
 * positive-only ControlNet (ControlNetApply) runs on the cond rows alone
 * where there are uncond rows, and adds nothing to those. */
static kiln_status control_residuals(kiln_graph *g, kiln_denoiser *d, const tensor *x, const kiln_unet_cond *cond,
                                     kiln_unet_control *sum)
{
    tensor *hints[KILN_MAX_CONTROLS] = {0}, *features[KILN_MAX_CONTROLS][KILN_T2I_MAX_LEVELS] = {{0}};
    const bool split = d->rows == 2 * d->batch;
    for (int i = 0; i < d->ncontrols; i++) {
        if (!(d->active_controls & 1u << i)) continue;
        const kiln_t2i_adapter *a = d->controls[i].net->adapter;
        if (!a) {
            const int rows = split && d->controls[i].positive_only ? d->batch : d->rows;
            TRY(kiln_graph_input(g, &hints[i], KILN_F32, 4, (int64_t[]){rows, 3, 8 * d->h, 8 * d->w}, d->hints[i]));
            continue;
        }
        const float *level = d->hints[i];
        for (int l = 0; l < a->nlevels; l++) {
            if (d->adapter_block[i][l] == KILN_T2I_UNUSED) continue;
            const int64_t *s = d->adapter_shape[i][l];
            TRY(kiln_graph_input(g, &features[i][l], KILN_F32, 4, (int64_t[]){d->rows, s[0], s[1], s[2]}, level));
            level += (size_t)d->rows * s[0] * s[1] * s[2];
        }
    }
    const int B = d->batch;
    const tensor x_cond = rows_view(x, B, B), t_cond = rows_view(cond->t, B, B),
                 context_cond = rows_view(cond->context, B, B), y_cond = cond->y ? rows_view(cond->y, B, B) : x_cond;
    const kiln_unet_cond cond_rows = {.t = &t_cond, .context = &context_cond, .y = cond->y ? &y_cond : NULL};
    *sum = (kiln_unet_control){0};
    for (int i = 0; i < d->ncontrols; i++) {
        if (!(d->active_controls & 1u << i)) continue;
        const kiln_control *c = &d->controls[i];
        if (c->net->adapter) {
            for (int l = 0; l < c->net->adapter->nlevels; l++) {
                const int block = d->adapter_block[i][l];
                if (block != KILN_T2I_UNUSED)
                    TRY(add_or_set(g, block == KILN_T2I_MIDDLE ? &sum->mid : &sum->inputs[block], features[i][l]));
            }
            continue;
        }
        const bool cond_only = split && c->positive_only;
        kiln_unet_control r;
        TRY(kiln_controlnet_forward(g, c->net, cond_only ? &x_cond : x, hints[i], cond_only ? &cond_rows : cond,
                                    c->strength, &r));
        if (cond_only) {
            for (int k = 0; k < r.nskips; k++) TRY(cond_rows_only(g, &r.skips[k]));
            TRY(cond_rows_only(g, &r.mid));
        }
        nn_drop(g, &hints[i]);
        for (int k = 0; k < r.nskips; k++) TRY(add_or_set(g, &sum->skips[k], r.skips[k]));
        sum->nskips = r.nskips;
        TRY(add_or_set(g, &sum->mid, r.mid));
    }
    return KILN_OK;
}

/* Rows [first, first + count) of a ControlNet residual of `rows` rows, which
 * may be held as one image of all their channels (cond_rows_only's). */
static tensor residual_rows(const tensor *r, int64_t rows, int64_t first, int64_t count)
{
    tensor v = *r;
    v.offset += (size_t)first * (kiln_tensor_nbytes(r) / (size_t)rows);
    v.shape[1] = r->shape[0] * r->shape[1] / rows;
    v.shape[0] = count;
    return v;
}

/* PerturbedAttentionGuidance's pass in the call's graph: the cond rows again
 * with the middle block's self-attention perturbed, with those rows' share
 * of the call's ControlNet residuals and image prompts (ComfyUI runs the
 * positive prompt alone through the same patches). */
static kiln_status perturbed_pass(kiln_graph *g, kiln_denoiser *d, const tensor *x, const kiln_unet_cond *cond)
{
    const int B = d->batch, first = d->rows - B;
    const tensor x_rows = rows_view(x, first, B), t_rows = rows_view(cond->t, first, B),
                 context_rows = rows_view(cond->context, first, B);
    tensor y_rows, tokens[KILN_MAX_IP_ADAPTERS], skips[KILN_UNET_MAX_SKIPS], inputs[KILN_UNET_MAX_SKIPS], mid;
    kiln_unet_cond rows = {.t = &t_rows, .context = &context_rows, .nimages = cond->nimages, .freeu = cond->freeu,
                           .shrink = cond->shrink, .middle_attn1 = {.identity = true}, .hypertile = cond->hypertile,
                           .hypertile_rng = cond->hypertile_rng, .hypernetworks = cond->hypernetworks};
    if (cond->y) y_rows = rows_view(cond->y, first, B), rows.y = &y_rows;
    kiln_unet_image_prompt image[KILN_MAX_IP_ADAPTERS];
    for (int i = 0; i < cond->nimages; i++) {
        tokens[i] = rows_view(cond->image[i].tokens, first, B);
        image[i] = cond->image[i];
        image[i].tokens = &tokens[i];
    }
    rows.image = image;
    kiln_unet_control control = {0};
    if (cond->control) {
        const kiln_unet_control *all = cond->control;
        control.nskips = all->nskips;
        for (int k = 0; k < control.nskips; k++)
            skips[k] = residual_rows(all->skips[k], d->rows, first, B), control.skips[k] = &skips[k];
        for (int k = 0; k < KILN_UNET_MAX_SKIPS; k++)
            if (all->inputs[k]) inputs[k] = residual_rows(all->inputs[k], d->rows, first, B), control.inputs[k] = &inputs[k];
        if (all->mid) mid = residual_rows(all->mid, d->rows, first, B), control.mid = &mid;
        rows.control = &control;
    }
    tensor *eps;
    TRY(kiln_unet_forward(g, &d->model->unet, &x_rows, &rows, NULL, NULL, &eps));
    return kiln_graph_output(g, eps, d->pass_out, kiln_tensor_nbytes(eps));
}

/* One UNet call over the rows; this call's ControlNets first. */
/* A UNet call's inputs for `rows` rows from `in`: their timesteps, and the
 * prompt rows (context and SDXL's y) from row `first` of the 2B on. */
static kiln_status unet_inputs(kiln_graph *g, kiln_denoiser *d, int rows, int first, const float *in,
                               tensor **x, kiln_unet_cond *cond)
{
    const unet_config *cfg = d->model->unet.config;
    tensor *t, *c;
    TRY(kiln_graph_input(g, x, KILN_F32, 4, (int64_t[]){rows, d->unet_channels, d->h, d->w}, in));
    TRY(kiln_graph_input(g, &t, KILN_F32, 1, (int64_t[]){rows}, d->timesteps));
    TRY(kiln_graph_input(g, &c, KILN_F32, 3, (int64_t[]){rows, d->tokens, cfg->context_dim},
                         d->context + (size_t)first * d->tokens * cfg->context_dim));
    *cond = (kiln_unet_cond){.t = t, .context = c, .freeu = d->freeu, .shrink = d->shrinking ? &d->shrink : NULL,
                             .hypernetworks = d->hypernetworks.count ? &d->hypernetworks : NULL};
    if (d->hypertile) { /* every pass of the run draws the same */
        d->hypertile_draws = *d->hypertile_rng;
        cond->hypertile = d->hypertile;
        cond->hypertile_rng = &d->hypertile_draws;
    }
    if (!d->adm) return KILN_OK;
    tensor *y;
    TRY(kiln_graph_input(g, &y, KILN_F32, 2, (int64_t[]){rows, cfg->adm_channels},
                         d->adm + (size_t)first * cfg->adm_channels));
    cond->y = y;
    return KILN_OK;
}

/* A graph run of UNet calls (fn: unet_step, sag_step); HyperTile's draws,
 * the same in each of its passes, kept for the next run. */
static kiln_status run_unet_graph(kiln_denoiser *d, kiln_graph *g, kiln_graph_fn fn)
{
    TRY(kiln_graph_run(g, fn, d));
    if (d->hypertile) *d->hypertile_rng = d->hypertile_draws;
    return KILN_OK;
}

static kiln_status unet_step(kiln_graph *g, void *ctx)
{
    kiln_denoiser *d = ctx;
    const kiln_model *m = d->model;
    tensor *x, *eps;
    kiln_unet_cond cond;
    /* without guidance only the cond rows (the second half) are used */
    TRY(unet_inputs(g, d, d->rows, d->rows == d->batch ? d->batch : 0, d->unet_in, &x, &cond));
    cond.middle_attn1.record_qk = d->sag_qk;
    kiln_unet_control residuals, *control = NULL;
    kiln_unet_image_prompt image[KILN_MAX_IP_ADAPTERS];
    for (int i = 0; i < d->nimage_prompts; i++) {
        const kiln_ip_adapter *a = d->image_prompts[i].adapter;
        tensor *tokens;
        TRY(kiln_graph_input(g, &tokens, KILN_F32, 3,
                             (int64_t[]){d->rows, image_prompt_tokens(&d->image_prompts[i]), a->context_dim},
                             d->image_tokens[i]));
        image[i] = (kiln_unet_image_prompt){tokens, d->image_weight[i], a->k_w, a->v_w};
    }
    cond.image = image;
    cond.nimages = d->nimage_prompts;
    if (d->active_controls) {
        TRY(control_residuals(g, d, x, &cond, &residuals));
        cond.control = control = &residuals;
    }
    TRY(kiln_unet_forward(g, &m->unet, x, &cond, NULL, NULL, &eps));
    if (d->pag_scale > 0.0f) TRY(perturbed_pass(g, d, x, &cond));
    if (control) {
        for (int i = 0; i < control->nskips; i++) kiln_graph_release(g, control->skips[i]);
        for (int i = 0; i < KILN_UNET_MAX_SKIPS; i++)
            if (control->inputs[i]) kiln_graph_release(g, control->inputs[i]);
        if (control->mid) kiln_graph_release(g, control->mid);
    }
    return kiln_graph_output(g, eps, d->unet_out, kiln_tensor_nbytes(eps));
}

/* SelfAttentionGuidance's pass: the UNet on the degraded predictions,
 * renoised, with the negative rows' prompt. */
static kiln_status sag_step(kiln_graph *g, void *ctx)
{
    kiln_denoiser *d = ctx;
    tensor *x, *eps;
    kiln_unet_cond cond;
    TRY(unet_inputs(g, d, d->batch, 0, d->sag_in, &x, &cond));
    TRY(kiln_unet_forward(g, &d->model->unet, x, &cond, NULL, NULL, &eps));
    return kiln_graph_output(g, eps, d->sag_out, kiln_tensor_nbytes(eps));
}

/* SelfAttentionGuidance after the guidance (ComfyUI's post-CFG function):
 * each image's unconditional x0 blurred where its middle block attends most,
 * renoised as x is, denoised again with the negative prompt; denoised gains
 * scale x (degraded - that). */
static kiln_status self_attention_guidance(kiln_denoiser *d, const float *x, float in_scale, float c_skip,
                                           float c_out, float *denoised)
{
    const int B = d->batch, C = d->channels, T = d->shrinking ? d->sag_tokens_shrunk : d->sag_tokens;
    const int width = d->sag_channels;
    const size_t plane = (size_t)d->h * d->w, latent = (size_t)C * plane, extra = (size_t)(d->unet_channels - C) * plane;
    int rows, cols;
    if (!kiln_sag_grid(T, d->h, d->w, &rows, &cols))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "SelfAttentionGuidance: no grid for the middle block's %d tokens on a "
                         "%dx%d latent", T, d->w, d->h);
    float *weights = malloc((size_t)T * sizeof *weights), *uncond = malloc(latent * sizeof *uncond);
    kiln_status st = weights && uncond ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SelfAttentionGuidance: out of "
                                                                                     "host memory");
    const float *q = d->sag_qk, *k = d->sag_qk + (size_t)d->rows * T * width; /* the negative rows come first */
    for (int b = 0; b < B && st == KILN_OK; b++) {
        const float *xb = x + b * latent, *out = d->unet_out + b * latent;
        for (size_t i = 0; i < latent; i++) uncond[i] = c_skip * xb[i] + c_out * out[i];
        st = kiln_sag_key_weights(q + (size_t)b * T * width, k + (size_t)b * T * width, T, width, d->sag_heads, weights);
        if (st != KILN_OK) break;
        float *degraded = d->sag_degraded + b * latent, *noised = degraded + (size_t)B * latent,
              *in = d->sag_in + b * (latent + extra);
        kiln_sag_degrade(uncond, C, d->h, d->w, weights, rows, cols, d->sag_blur, degraded, NULL);
        for (size_t i = 0; i < latent; i++) noised[i] = degraded[i] + xb[i] - uncond[i], in[i] = noised[i] * in_scale;
        if (extra) memcpy(in + latent, d->concat, extra * sizeof(float));
    }
    free(weights);
    free(uncond);
    TRY(st);
    kiln_graph **g = d->shrinking ? &d->sag_shrink_graph : &d->sag_graph; /* Deep Shrink's pass its own */
    if (!*g) {
        TRY(kiln_graph_create(kiln_weights_backend(d->model->weights), g));
        kiln_graph_set_replay(*g, true);
    }
    TRY(run_unet_graph(d, *g, sag_step));
    d->unet_calls++;
    const float *degraded = d->sag_degraded, *noised = degraded + (size_t)B * latent;
    for (size_t i = 0; i < (size_t)B * latent; i++)
        denoised[i] += (degraded[i] - (c_skip * noised[i] + c_out * d->sag_out[i])) * d->sag_scale;
    return KILN_OK;
}

/* The graph of a set of ControlNets (bit i: controls[i]) on caption `which`
 * (2: SkipLayerGuidance's pass), made at its first call: every set replays
 * its own recorded ops. */
static kiln_status control_graph(kiln_denoiser *d, int which, unsigned set, kiln_graph **out)
{
    kiln_graph **g = &d->control_graphs[which][set];
    if (!*g) {
        TRY(kiln_graph_create(kiln_weights_backend(d->model->weights), g));
        kiln_graph_set_replay(*g, true);
    }
    *out = *g;
    return KILN_OK;
}

/* Flux on rows [first, first + B) of the call, all with caption `which`
 * (0 negative, 1 positive), with this call's ControlNets: the latent packed
 * into 2x2 patches, unpacked after. One buffer holds the packed rows going
 * in and coming out: a graph run uploads its inputs before it copies any
 * output back. */
static kiln_status flux_rows(kiln_denoiser *d, int first, int which, bool skip_layers)
{
    const kiln_model *m = d->model;
    const int B = d->batch, C = d->channels, C_in = d->unet_channels;
    const size_t latent = (size_t)C * d->h * d->w;
    kiln_graph *g = skip_layers ? d->slg_graph : which ? d->graph : d->negative_graph;
    /* the negative caption's rows run without the positive-only ControlNets */
    unsigned active = d->active_controls;
    for (int i = 0; which == 0 && i < d->ncontrols; i++)
        if (d->controls[i].positive_only) active &= ~(1u << i);
    if (active) TRY(control_graph(d, skip_layers ? 2 : which, active, &g));
    flux_image_prompt images[KILN_MAX_IP_ADAPTERS];
    for (int i = 0; i < d->nimage_prompts; i++) {
        const kiln_ip_adapter *a = d->image_prompts[i].adapter;
        images[i] = (flux_image_prompt){a->k_w, a->k_b, a->v_w, a->v_b,
                                        d->image_tokens[i] + (size_t)first * a->tokens * a->context_dim, a->tokens,
                                        d->image_weight[i]};
    }
    flux_control controls[KILN_MAX_CONTROLS];
    int ncontrols = 0;
    for (int i = 0; i < d->ncontrols; i++)
        if (active & 1u << i) {
            const kiln_control *c = &d->controls[i];
            controls[ncontrols++] = (flux_control){c->net->flux, d->hints[i], c->strength, c->mode};
        }
    kiln_patchify(d->unet_in + (size_t)first * C_in * d->h * d->w, B, C_in, d->h, d->w, 2, d->dit_out);
    const float *tokens = d->dit_out;
    if (d->nrefs[which]) { /* each row's tokens, then the references' */
        const size_t K = (size_t)4 * C_in, N = (size_t)(d->h / 2) * (d->w / 2);
        size_t R = 0;
        for (int i = 0; i < d->nrefs[which]; i++) R += (size_t)d->refs[which][i].h * d->refs[which][i].w;
        for (int b = 0; b < B; b++) {
            memcpy(d->flux_tokens + b * (N + R) * K, d->dit_out + b * N * K, N * K * sizeof(float));
            memcpy(d->flux_tokens + (b * (N + R) + N) * K, d->ref_tokens[which], R * K * sizeof(float));
        }
        tokens = d->flux_tokens;
    }
    flux_input in = {.rows = B, .h = d->h / 2, .w = d->w / 2, .tokens = tokens,
                     .refs = d->refs[which], .nrefs = d->nrefs[which], .latent_tokens = d->dit_out,
                     .context = d->flux_context[which], .context_tokens = d->captions[which]->tokens,
                     .pooled = d->flux_pooled[which], .timesteps = d->timesteps + first,
                     .guidance = kiln_flux_reads_guidance(&m->flux) && !isnan(d->guidance[which])
                                     ? d->flux_guidance[which] : NULL,
                     .controls = controls, .ncontrols = ncontrols, .images = images,
                     .nimages = d->nimage_prompts, .skip_double = skip_layers ? d->slg_double : 0,
                     .skip_single = skip_layers ? d->slg_single : 0};
    TRY(kiln_flux_forward(g, &m->flux, &in, d->dit_out));
    /* SkipLayerGuidance's pass has its own output; SkipLayerGuidanceDiTSimple's negative rows are the call's */
    float *out = skip_layers && !d->slg->uncond_only ? d->pass_out : d->unet_out + first * latent;
    kiln_unpatchify(d->dit_out, B, C, d->h, d->w, 2, m->flux.sd3, out);
    return KILN_OK;
}

/* One DiT call over the rows, each row with its own caption; of the
 * output's channels the first C are the prediction (PixArt's learned
 * variance after them goes unused, as in ComfyUI and diffusers). */
static kiln_status dit_step(kiln_denoiser *d)
{
    const kiln_model *m = d->model;
    if (kiln_model_is_mmdit(m)) { /* without guidance only the cond rows */
        if (d->rows == d->batch) return flux_rows(d, 0, 1, false);
        TRY(flux_rows(d, 0, 0, d->skip_negative));
        return flux_rows(d, d->batch, 1, false);
    }
    const float *captions[2 * KILN_MAX_BATCH];
    int tokens[2 * KILN_MAX_BATCH];
    float sizes[2 * 2 * KILN_MAX_BATCH];
    const int f = kiln_vae_factor(m->vae.config);
    for (int r = 0; r < d->rows; r++) { /* without guidance only the cond rows */
        const int which = d->rows == d->batch || r >= d->batch;
        const kiln_conditioning *c = d->captions[which];
        captions[r] = c->data;
        tokens[r] = c->tokens;
        /* CLIPTextEncodePixArtAlpha's size, else the picture's */
        sizes[2 * r] = d->pixart_size[which][0] > 0 ? d->pixart_size[which][0] : (float)(f * d->h);
        sizes[2 * r + 1] = d->pixart_size[which][1] > 0 ? d->pixart_size[which][1] : (float)(f * d->w);
    }
    pixart_input in = {.rows = d->rows, .h = d->h, .w = d->w, .latent = d->unet_in, .timesteps = d->timesteps,
                       .captions = captions, .caption_tokens = tokens, .sizes = sizes};
    TRY(kiln_pixart_forward(d->graph, &m->pixart, &in, d->dit_out));
    size_t plane = (size_t)d->h * d->w, latent = (size_t)d->channels * plane;
    for (int r = 0; r < d->rows; r++)
        memcpy(d->unet_out + r * latent, d->dit_out + (size_t)r * m->pixart.out_channels * plane,
               latent * sizeof(float));
    return KILN_OK;
}

/* The UNet's input rows: x scaled by c_in, then the extra channels of a
 * UNet that takes an image. */
static void fill_unet_input(kiln_denoiser *d, const float *x, float in_scale)
{
    size_t plane = (size_t)d->h * d->w, latent = (size_t)d->channels * plane;
    size_t extra = (size_t)(d->unet_channels - d->channels) * plane;
    for (int r = 0; r < d->rows; r++) {
        int b = r % d->batch;
        float *row = d->unet_in + (size_t)r * d->unet_channels * plane;
        for (size_t i = 0; i < latent; i++) row[i] = x[b * latent + i] * in_scale;
        if (extra) memcpy(row + latent, d->concat, extra * sizeof(float));
    }
}

/* The model's rows of a call EasyCache skips: each row's input (the
 * output's channels of it, the last ones, as ComfyUI cuts a wider input)
 * plus its last change. */
static void reuse_change(kiln_denoiser *d)
{
    const size_t plane = (size_t)d->h * d->w, in_row = (size_t)d->unet_channels * plane;
    const size_t out_row = (size_t)d->channels * plane;
    for (int r = 0; r < d->rows; r++)
        for (size_t i = 0; i < out_row; i++)
            d->unet_out[r * out_row + i] =
                d->unet_in[r * in_row + in_row - out_row + i] + d->cache.change[r * out_row + i];
}

/* After a call EasyCache measures: what it keeps of the first call's rows,
 * and every row's change. */
static void keep_change(kiln_denoiser *d)
{
    const size_t plane = (size_t)d->h * d->w, in_row = (size_t)d->unet_channels * plane;
    const size_t out_row = (size_t)d->channels * plane;
    const float *first = d->unet_out + d->cache_first * out_row;
    kiln_step_cache_subsample(first, d->batch, d->channels, d->h, d->w, d->cache_os);
    kiln_step_cache_ran(&d->cache, d->cache_xs, d->cache_os,
                        kiln_mean_abs(first, NULL, (size_t)d->cache_norm_rows * out_row));
    for (int r = 0; r < d->rows; r++)
        for (size_t i = 0; i < out_row; i++)
            d->cache.change[r * out_row + i] =
                d->unet_out[r * out_row + i] - d->unet_in[r * in_row + in_row - out_row + i];
}

/* The part a noise mask keeps: the latent image (KSamplerX0Inpaint's out). */
static void keep_unmasked(const kiln_inpaint_mask *in, const float *mask, size_t n, size_t plane, float *denoised)
{
    for (size_t i = 0; in && i < n; i++)
        denoised[i] = denoised[i] * mask[i % plane] + in->latent[i] * (1.0f - mask[i % plane]);
}

kiln_status kiln_denoiser_call(void *ctx, const float *x, float sigma, float *denoised)
{
    kiln_denoiser *d = ctx;
    size_t per_batch = (size_t)d->batch * d->channels * d->h * d->w, plane = (size_t)d->h * d->w;
    if (d->unet_channels != d->channels && !d->concat)
        return kiln_fail(KILN_ERR_INVALID_ARG, d->model->info.variant == KILN_VARIANT_INPAINT
                                                   ? "an inpainting model needs an image and a mask (--init-image, --mask)"
                                                   : "an InstructPix2Pix model needs the picture to edit (--init-image)");
    const kiln_inpaint_mask *in = d->inpaint;
    const float *mask = in ? in->mask : NULL;
    if (in && in->differential > 0.0f) { /* DifferentialDiffusion's mask for this sigma */
        const float threshold = (kiln_model_timestep(d->sampling, sigma) - in->t_to) / (in->t_from - in->t_to);
        for (size_t i = 0; i < plane; i++) {
            const float binary = in->mask[i] >= threshold ? 1.0f : 0.0f;
            d->call_mask[i] = in->differential < 1.0f
                                  ? in->differential * binary + (1.0f - in->differential) * in->mask[i]
                                  : binary;
        }
        mask = d->call_mask;
    }
    if (in) { /* the kept part: the latent image renoised to this sigma (KSamplerX0Inpaint) */
        for (size_t i = 0; i < per_batch; i++) {
            float m = mask[i % plane];
            d->blended[i] = x[i] * m + kiln_noise_scaling(d->sampling->flow, sigma, in->noise[i], in->latent[i]) * (1.0f - m);
        }
        x = d->blended;
    }
    /* LazyCache: the step whole, from the sampler's latent to the guided prediction */
    kiln_step_cache_state *cache = d->cache.kind && kiln_step_cache_active(&d->cache, sigma) ? &d->cache : NULL;
    const bool lazy = cache && cache->kind == KILN_LAZY_CACHE, easy = cache && !lazy;
    if (lazy) {
        kiln_step_cache_subsample(x, d->batch, d->channels, d->h, d->w, d->cache_xs);
        if (kiln_step_cache_skip(cache, sigma, d->cache_xs)) {
            for (size_t i = 0; i < per_batch; i++) denoised[i] = x[i] + cache->change[i];
            keep_unmasked(in, mask, per_batch, plane, denoised);
            return KILN_OK;
        }
    }
    const kiln_prediction prediction = d->model->info.prediction;
    /* flow matching (CONST) takes x as it is and its own sigma as the timestep */
    const float sd = d->sampling->sigma_data; /* 1 but for EDM's denoiser */
    float in_scale = prediction == KILN_PREDICTION_FLOW || prediction == KILN_PREDICTION_IMG_TO_IMG
                         ? 1.0f
                         : 1.0f / sqrtf(sigma * sigma + sd * sd);
    float timestep = kiln_model_timestep(d->sampling, sigma);
    for (int r = 0; r < d->rows; r++) d->timesteps[r] = timestep;
    fill_unet_input(d, x, in_scale);

    d->active_controls = 0;
    for (int i = 0; i < d->ncontrols; i++)
        if (d->controls[i].strength != 0.0f && sigma <= d->control_sigma_hi[i] && sigma >= d->control_sigma_lo[i])
            d->active_controls |= 1u << i;
    for (int i = 0; i < d->nimage_prompts; i++)
        d->image_weight[i] = sigma <= d->image_sigma_hi[i] && sigma >= d->image_sigma_lo[i]
                                 ? d->image_prompts[i].weight : 0.0f;
    /* EasyCache: the model's calls of the step */
    if (easy) {
        const size_t in_row = (size_t)d->unet_channels * plane;
        kiln_step_cache_subsample(d->unet_in + d->cache_first * in_row, d->batch, d->unet_channels, d->h, d->w,
                                  d->cache_xs);
    }
    if (easy && kiln_step_cache_skip(cache, sigma, d->cache_xs)) {
        reuse_change(d);
    } else {
        if (kiln_model_is_dit(d->model)) {
            d->skip_negative = d->slg && d->slg->uncond_only && sigma >= d->slg_sigma_lo && sigma <= d->slg_sigma_hi;
            TRY(dit_step(d));
        } else {
            d->shrinking = d->deep_shrink && sigma <= d->shrink_sigma_hi && sigma >= d->shrink_sigma_lo;
            kiln_graph *g = d->shrinking ? d->shrink_graph : d->graph;
            if (d->active_controls) TRY(control_graph(d, 1, d->active_controls, &g));
            TRY(run_unet_graph(d, g, unet_step));
        }
        d->unet_calls++;
        d->control_calls += d->active_controls != 0;
        if (easy) keep_change(d);
    }

    /* x0 = c_skip x + c_out out per half (ComfyUI's calculate_denoised: eps and
     * flow give x - sigma out, v sd^2 / (sigma^2 + sd^2) x - sigma sd /
     * sqrt(sigma^2 + sd^2) out, EDM the same with + for -, x0 and img_to_img
     * out itself), then guidance in x0 space */
    const bool v = prediction == KILN_PREDICTION_V || prediction == KILN_PREDICTION_EDM;
    float c_skip = v ? sd * sd / (sigma * sigma + sd * sd) : 1.0f, c_out = v ? -sigma * sd * in_scale : -sigma;
    if (prediction == KILN_PREDICTION_EDM) c_out = -c_out;
    if (prediction == KILN_PREDICTION_LCM) { /* LCM's boundary condition on eps's x0: out_l x0 + skip_l x */
        float skip_l, out_l;
        kiln_lcm_boundary(timestep, &skip_l, &out_l);
        c_skip = out_l + skip_l, c_out = -sigma * out_l;
    }
    if (prediction == KILN_PREDICTION_X0 || prediction == KILN_PREDICTION_IMG_TO_IMG) c_skip = 0.0f, c_out = 1.0f;
    const float *out_uncond = d->unet_out, *out_cond = d->unet_out + (d->rows == d->batch ? 0 : per_batch);
    /* SkipLayerGuidance, after the guidance as ComfyUI's post-CFG function: the positive rows again without its
       blocks, scale times the difference of the two x0 added */
    const kiln_skip_layer_guidance *slg = d->slg;
    const bool skip_layers = slg && !slg->uncond_only && slg->scale > 0.0 && sigma >= d->slg_sigma_lo &&
                             sigma <= d->slg_sigma_hi;
    if (skip_layers) TRY(flux_rows(d, d->rows == d->batch ? 0 : d->batch, 1, true));
    /* ... or PerturbedAttentionGuidance's, as its post-CFG function: the pass ran with the call */
    const bool extra_pass = skip_layers || d->pag_scale > 0.0f;
    const float pass_scale = skip_layers ? (float)slg->scale : d->pag_scale;
    /* the guidance patches need both predictions whole */
    const bool patched = kiln_cfg_patched(&d->guide.patches) && d->rows != d->batch;
    float *cond_pred = d->patched_pred, *uncond_pred = patched ? d->patched_pred + per_batch : NULL;
    for (size_t i = 0; i < per_batch; i++) {
        float cond = c_skip * x[i] + c_out * out_cond[i];
        if (d->cond_denoised) d->cond_denoised[i] = cond;
        if (d->rows == d->batch) {
            denoised[i] = cond;
        } else {
            float uncond = c_skip * x[i] + c_out * out_uncond[i];
            denoised[i] = uncond + (cond - uncond) * d->cfg;
            if (d->uncond_denoised) d->uncond_denoised[i] = uncond;
            if (patched) cond_pred[i] = cond, uncond_pred[i] = uncond;
        }
    }
    if (patched)
        kiln_guide(&d->guide, x, cond_pred, uncond_pred, sigma, d->cfg, d->batch, per_batch / (size_t)d->batch,
                   denoised);
    else if (d->rows == d->batch && kiln_cfg_patched(&d->guide.patches)) /* cfg 1 */
        kiln_guide_alone(&d->guide, x, d->batch, per_batch / (size_t)d->batch, denoised);
    /* ComfyUI skips it on a latent too small for the blur's reflected edges */
    if (d->sag_scale != 0.0f && d->h > 4 && d->w > 4)
        TRY(self_attention_guidance(d, x, in_scale, c_skip, c_out, denoised));
    double cond_moments[2] = {0, 0}, result_moments[2] = {0, 0};
    for (size_t i = 0; extra_pass && i < per_batch; i++) {
        const float cond = c_skip * x[i] + c_out * out_cond[i];
        denoised[i] += (cond - (c_skip * x[i] + c_out * d->pass_out[i])) * pass_scale;
        cond_moments[0] += cond, cond_moments[1] += (double)cond * cond;
        result_moments[0] += denoised[i], result_moments[1] += (double)denoised[i] * denoised[i];
    }
    if (skip_layers && slg->rescaling_scale != 0.0) { /* torch's std: unbiased, over the whole batch */
        const double ratio = kiln_unbiased_std(cond_moments, per_batch) / kiln_unbiased_std(result_moments, per_batch);
        const float factor = (float)slg->rescaling_scale * (float)ratio + (float)(1.0 - slg->rescaling_scale);
        for (size_t i = 0; i < per_batch; i++) denoised[i] *= factor;
    }
    if (lazy) {
        kiln_step_cache_subsample(denoised, d->batch, d->channels, d->h, d->w, d->cache_os);
        kiln_step_cache_ran(cache, d->cache_xs, d->cache_os, kiln_mean_abs(denoised, NULL, per_batch));
        for (size_t i = 0; i < per_batch; i++) cache->change[i] = denoised[i] - x[i];
    }
    keep_unmasked(in, mask, per_batch, plane, denoised);
    return KILN_OK;
}
