#include "vae.h"

#include <stdio.h>
#include <stdlib.h>

#include "status.h"

#define PREFIX "first_stage_model"

static const vae_config vae_sd = {"sd-vae", 4, {128, 256, 512, 512}, 2, 4};
/* FLUX.1's and SD3's: SD's levels with 16 latent channels (and no quant
 * convs, which binding finds by their absence) */
static const vae_config vae_flux = {"flux-vae", 4, {128, 256, 512, 512}, 2, 16};
static const vae_config vae_tiny_test = {"vae-tiny-test", 2, {32, 64}, 1, 4};
/* tests/data/vae_flux: the tiny test VAE's levels with FLUX.1's 16 channels */
static const vae_config vae_tiny_test16 = {"vae-tiny-test-16", 2, {32, 64}, 1, 16};
/* kiln-shapes records its measured latent scale in its metadata */
static const vae_config vae_kiln_shapes = {"vae-kiln-shapes", 4, {32, 32, 64, 64}, 1, 4};

/* Detection matches the latent channels read off decoder.conv_in, so SD's
 * and FLUX.1's configs (same levels) never both match one file. */
const vae_config *const kiln_vae_configs[] = {&vae_sd, &vae_flux, &vae_tiny_test, &vae_tiny_test16, &vae_kiln_shapes,
                                              NULL};

int kiln_vae_factor(const vae_config *cfg) { return 1 << (cfg->levels - 1); }

const vae_config *kiln_vae_detect(const kiln_checkpoint *ck)
{
    const kiln_st_tensor *conv_in = kiln_checkpoint_find(ck, PREFIX ".decoder.conv_in.weight");
    const kiln_st_tensor *conv_out = kiln_checkpoint_find(ck, PREFIX ".decoder.conv_out.weight");
    if (!conv_in || !conv_out || conv_in->ndim != 4 || conv_out->ndim != 4) return NULL;
    for (int c = 0; kiln_vae_configs[c]; c++) {
        const vae_config *cfg = kiln_vae_configs[c];
        char name[256];
        snprintf(name, sizeof name, PREFIX ".decoder.up.%d.block.0.conv1.weight", cfg->levels - 1);
        const kiln_st_tensor *top = kiln_checkpoint_find(ck, name);
        snprintf(name, sizeof name, PREFIX ".decoder.up.%d.block.0.conv1.weight", cfg->levels);
        if (!top || kiln_checkpoint_find(ck, name)) continue;
        if (conv_in->shape[0] == cfg->channels[cfg->levels - 1] && conv_in->shape[1] == cfg->latent_channels &&
            conv_out->shape[1] == cfg->channels[0])
            return cfg;
    }
    return NULL;
}

static kiln_status bind_conv(kiln_weights *w, const char *prefix, int out_ch, int in_ch, int k, const tensor **wt,
                             const tensor **b)
{
    TRY(KILN_BIND(w, wt, prefix, "weight", out_ch, in_ch, k, k));
    return KILN_BIND(w, b, prefix, "bias", out_ch);
}

static kiln_status bind_mid_and_out(kiln_weights *w, const char *half, const vae_config *cfg, int out_ch,
                                    vae_half *h)
{
    char p[256];
    int top = cfg->channels[cfg->levels - 1], bottom = cfg->channels[0];
    bool encoder = half[0] == 'e';
    int norm_ch = encoder ? top : bottom;
    snprintf(p, sizeof p, PREFIX ".%s.mid.block_1", half);
    TRY(kiln_resblock_bind_vae(w, p, top, top, &h->mid1));
    snprintf(p, sizeof p, PREFIX ".%s.mid.attn_1", half);
    TRY(kiln_vae_attention_bind(w, p, top, &h->mid_attn));
    snprintf(p, sizeof p, PREFIX ".%s.mid.block_2", half);
    TRY(kiln_resblock_bind_vae(w, p, top, top, &h->mid2));
    snprintf(p, sizeof p, PREFIX ".%s.norm_out", half);
    TRY(KILN_BIND(w, &h->norm_out_w, p, "weight", norm_ch));
    TRY(KILN_BIND(w, &h->norm_out_b, p, "bias", norm_ch));
    snprintf(p, sizeof p, PREFIX ".%s.conv_out", half);
    return bind_conv(w, p, out_ch, norm_ch, 3, &h->conv_out_w, &h->conv_out_b);
}

static kiln_status bind_decoder(kiln_weights *w, const vae_config *cfg, vae_half *d)
{
    char p[256];
    int n = cfg->levels, ch = cfg->channels[n - 1];
    TRY(bind_conv(w, PREFIX ".decoder.conv_in", ch, cfg->latent_channels, 3, &d->conv_in_w, &d->conv_in_b));
    for (int i = n - 1; i >= 0; i--) {
        for (int j = 0; j <= cfg->layers_per_block; j++) {
            snprintf(p, sizeof p, PREFIX ".decoder.up.%d.block.%d", i, j);
            TRY(kiln_resblock_bind_vae(w, p, ch, cfg->channels[i], &d->level[i].block[j]));
            ch = cfg->channels[i];
        }
        if (i > 0) {
            snprintf(p, sizeof p, PREFIX ".decoder.up.%d.upsample.conv", i);
            TRY(bind_conv(w, p, ch, ch, 3, &d->level[i].sample_w, &d->level[i].sample_b));
        }
    }
    return bind_mid_and_out(w, "decoder", cfg, 3, d);
}

static kiln_status bind_encoder(kiln_weights *w, const vae_config *cfg, vae_half *e)
{
    char p[256];
    int n = cfg->levels, ch = cfg->channels[0];
    TRY(bind_conv(w, PREFIX ".encoder.conv_in", ch, 3, 3, &e->conv_in_w, &e->conv_in_b));
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < cfg->layers_per_block; j++) {
            snprintf(p, sizeof p, PREFIX ".encoder.down.%d.block.%d", i, j);
            TRY(kiln_resblock_bind_vae(w, p, ch, cfg->channels[i], &e->level[i].block[j]));
            ch = cfg->channels[i];
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, PREFIX ".encoder.down.%d.downsample.conv", i);
            TRY(bind_conv(w, p, ch, ch, 3, &e->level[i].sample_w, &e->level[i].sample_b));
        }
    }
    return bind_mid_and_out(w, "encoder", cfg, 2 * cfg->latent_channels, e);
}

/* A latent-format number the file records for itself (a model trained
 * here), within (lo, hi); *v unchanged where there is none. */
static kiln_status recorded_factor(kiln_weights *w, const char *key, float lo, float hi, float *v)
{
    const char *recorded = kiln_checkpoint_metadata(kiln_weights_checkpoint(w), key);
    if (!recorded) return KILN_OK;
    char *end;
    float f = strtof(recorded, &end);
    if (end == recorded || *end || !(f > lo && f < hi))
        return kiln_fail(KILN_ERR_MODEL, "%s: metadata %s '%s' is not a number in (%g, %g)",
                         kiln_checkpoint_path(kiln_weights_checkpoint(w)), key, recorded, (double)lo, (double)hi);
    *v = f;
    return KILN_OK;
}

kiln_status kiln_vae_bind_shifted(kiln_weights *w, const vae_config *cfg, float scale, float shift, kiln_vae *vae)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    *vae = (kiln_vae){.config = cfg, .latents = {.scale = scale, .shift = shift}};
    /* a trained-here model records the scale (and shift) it measured on its latents */
    TRY(recorded_factor(w, "vae_scaling_factor", 0.0f, 100.0f, &vae->latents.scale));
    TRY(recorded_factor(w, "vae_shift_factor", -100.0f, 100.0f, &vae->latents.shift));
    int L = cfg->latent_channels;
    /* Some VAE files ship the decoder only; encoding then reports it. */
    vae->has_encoder = kiln_checkpoint_find(ck, PREFIX ".encoder.conv_in.weight") != NULL;
    /* FLUX.1's and SD3's VAEs have no quant convs: their absence is what
     * says so. A file with an encoder and only one of the two is refused, as
     * a damaged SD VAE rather than a network any family ships. */
    bool post_quant = kiln_checkpoint_find(ck, PREFIX ".post_quant_conv.weight") != NULL;
    bool quant = kiln_checkpoint_find(ck, PREFIX ".quant_conv.weight") != NULL;
    if (vae->has_encoder && quant != post_quant)
        return kiln_fail(KILN_ERR_MODEL, "%s: the VAE has " PREFIX ".%s but no " PREFIX ".%s", kiln_checkpoint_path(ck),
                         quant ? "quant_conv" : "post_quant_conv", quant ? "post_quant_conv" : "quant_conv");
    if (post_quant) TRY(bind_conv(w, PREFIX ".post_quant_conv", L, L, 1, &vae->post_quant_w, &vae->post_quant_b));
    TRY(bind_decoder(w, cfg, &vae->dec));
    if (!vae->has_encoder) return KILN_OK;
    if (quant) TRY(bind_conv(w, PREFIX ".quant_conv", 2 * L, 2 * L, 1, &vae->quant_w, &vae->quant_b));
    return bind_encoder(w, cfg, &vae->enc);
}

kiln_status kiln_vae_bind(kiln_weights *w, const vae_config *cfg, float scale, kiln_vae *vae)
{
    return kiln_vae_bind_shifted(w, cfg, scale, 0.0f, vae);
}

static const float playground_mean[4] = {-1.6574f, 1.886f, -1.383f, 2.5155f};
static const float playground_std[4] = {8.4927f, 5.9022f, 6.5498f, 5.2299f};
const kiln_latent_format kiln_playground_latents = {0.5f, 0.0f, playground_mean, playground_std};

/* In ComfyUI's order of operations, so that float32 gives its numbers. */
void kiln_vae_latent_in(const kiln_vae *vae, const float *z, size_t n, size_t plane, float *x)
{
    const kiln_latent_format *f = &vae->latents;
    const size_t L = (size_t)vae->config->latent_channels;
    for (size_t i = 0; i < n; i++)
        x[i] = f->mean ? (z[i] - f->mean[i / plane % L]) * f->scale / f->std[i / plane % L]
                       : (z[i] - f->shift) * f->scale;
}

void kiln_vae_latent_out(const kiln_vae *vae, const float *x, size_t n, size_t plane, float *z)
{
    const kiln_latent_format *f = &vae->latents;
    const size_t L = (size_t)vae->config->latent_channels;
    for (size_t i = 0; i < n; i++)
        z[i] = f->mean ? x[i] * f->std[i / plane % L] / f->scale + f->mean[i / plane % L] : x[i] / f->scale + f->shift;
}

/* *x = f(*x) for a layer that allocates its output: the input is released. */
#define STEP(x, call)                      \
    do {                                   \
        tensor *next_;                     \
        TRY(call);                         \
        nn_drop(g, &(x));                  \
        (x) = next_;                       \
    } while (0)

static kiln_status resblock_step(kiln_graph *g, const kiln_resblock *rb, tensor **x)
{
    tensor *y;
    TRY(kiln_resblock_forward(g, rb, *x, NULL, &y));
    nn_drop(g, x);
    *x = y;
    return KILN_OK;
}

static kiln_status mid_block(kiln_graph *g, const vae_half *h, tensor **x)
{
    TRY(resblock_step(g, &h->mid1, x));
    tensor *y;
    TRY(kiln_vae_attention_forward(g, &h->mid_attn, *x, &y));
    nn_drop(g, x);
    *x = y;
    return resblock_step(g, &h->mid2, x);
}

static kiln_status out_head(kiln_graph *g, const vae_half *h, tensor *x, tensor **y)
{
    tensor *n;
    TRY(nn_group_norm(g, x, h->norm_out_w, h->norm_out_b, 32, 1e-6f, true, &n));
    TRY(nn_conv2d(g, n, h->conv_out_w, h->conv_out_b, 1, 1, y));
    nn_drop(g, &n);
    return KILN_OK;
}

kiln_status kiln_vae_decoder_forward(kiln_graph *g, const kiln_vae *vae, const tensor *z, tensor **image)
{
    const vae_config *cfg = vae->config;
    const vae_half *d = &vae->dec;
    tensor *x, *h;
    if (vae->post_quant_w) {
        TRY(nn_conv2d(g, z, vae->post_quant_w, vae->post_quant_b, 1, 0, &x));
        STEP(x, nn_conv2d(g, x, d->conv_in_w, d->conv_in_b, 1, 1, &next_));
    } else { /* no post_quant_conv: z (the caller's) goes straight in, and is not released here */
        TRY(nn_conv2d(g, z, d->conv_in_w, d->conv_in_b, 1, 1, &x));
    }
    TRY(mid_block(g, d, &x));
    for (int i = cfg->levels - 1; i >= 0; i--) {
        for (int j = 0; j <= cfg->layers_per_block; j++) TRY(resblock_step(g, &d->level[i].block[j], &x));
        if (i > 0) {
            STEP(x, nn_upsample_nearest2x(g, x, NULL, &next_));
            STEP(x, nn_conv2d(g, x, d->level[i].sample_w, d->level[i].sample_b, 1, 1, &next_));
        }
    }
    TRY(out_head(g, d, x, &h));
    nn_drop(g, &x);
    *image = h;
    return KILN_OK;
}

kiln_status kiln_vae_encoder_forward(kiln_graph *g, const kiln_vae *vae, const tensor *image, tensor **moments)
{
    const vae_config *cfg = vae->config;
    const vae_half *e = &vae->enc;
    if (!vae->has_encoder) return kiln_fail(KILN_ERR_MODEL, "this checkpoint's VAE has no encoder");
    int f = kiln_vae_factor(cfg);
    if (image->shape[2] % f || image->shape[3] % f)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vae encode: %lldx%lld image is not a multiple of %d",
                         (long long)image->shape[3], (long long)image->shape[2], f);
    tensor *x, *h;
    TRY(nn_conv2d(g, image, e->conv_in_w, e->conv_in_b, 1, 1, &x));
    for (int i = 0; i < cfg->levels; i++) {
        for (int j = 0; j < cfg->layers_per_block; j++) TRY(resblock_step(g, &e->level[i].block[j], &x));
        if (i < cfg->levels - 1) { /* LDM pads only bottom and right before the stride-2 conv */
            STEP(x, nn_pad2d(g, x, 0, 1, 0, 1, &next_));
            STEP(x, nn_conv2d(g, x, e->level[i].sample_w, e->level[i].sample_b, 2, 0, &next_));
        }
    }
    TRY(mid_block(g, e, &x));
    TRY(out_head(g, e, x, &h));
    nn_drop(g, &x);
    if (!vae->quant_w) { /* no quant_conv: the encoder's output is the moments */
        *moments = h;
        return KILN_OK;
    }
    TRY(nn_conv2d(g, h, vae->quant_w, vae->quant_b, 1, 0, moments));
    nn_drop(g, &h);
    return KILN_OK;
}
