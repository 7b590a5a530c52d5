/* Flux ControlNets: binding either kind of file and running one on a call
 * (see flux_controlnet.h). */
#include "flux_controlnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "status.h"

/* The names of a file's parts: diffusers' (InstantX) or XLabs', whose
 * blocks the checkpoint reads under diffusers' names below KILN_FLUX_ROOT. */
typedef struct {
    const char *root, *hint_in, *single;
} flux_controlnet_names;

static const flux_controlnet_names diffusers_names = {"", "controlnet_x_embedder", "controlnet_single_blocks"};
static const flux_controlnet_names xlabs_names = {KILN_FLUX_ROOT, "pos_embed_input", NULL};

static int count_linears(const kiln_checkpoint *ck, const char *prefix, int most)
{
    char name[96];
    int n = 0;
    for (; n < most; n++) {
        snprintf(name, sizeof name, "%s.%d.weight", prefix, n);
        if (!kiln_checkpoint_find(ck, name)) break;
    }
    return n;
}

static kiln_status bind_residual_linears(kiln_weights *w, const char *prefix, int n, int64_t D, const tensor **ws,
                                         const tensor **bs)
{
    char part[64];
    for (int i = 0; i < n; i++) {
        snprintf(part, sizeof part, "%s.%d", prefix, i);
        TRY(kiln_dit_bind_linear(w, "", part, D, D, &ws[i], &bs[i]));
    }
    return KILN_OK;
}

kiln_status kiln_sd35_control_type(const kiln_checkpoint *ck, int *type)
{
    const kiln_st_tensor *t = kiln_checkpoint_find(ck, "control_type");
    *type = -1;
    if (!t) return KILN_OK;
    if (kiln_st_numel(t) != 1 || kiln_dtype_is_quantized(t->dtype))
        return kiln_fail(KILN_ERR_MODEL, "%s: control_type is no single number", kiln_checkpoint_path(ck));
    *type = (int)lroundf(kiln_load_f32(t->data, t->dtype, 0));
    return KILN_OK;
}

/* An SD3 ControlNet: InstantX's kind (diffusers' SD3ControlNetModel with a
 * caption side: the transformer's trunk; an inpainting one's hint has a
 * mask's channel) or Stability's (blocks without one); the hint latent's
 * patch conv (pos_embed_input), a residual linear after each block. */
static kiln_status bind_sd3(kiln_weights *w, const kiln_flux *model, kiln_flux_controlnet *cn)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    if (!model->sd3)
        return kiln_fail(KILN_ERR_MODEL, "%s: an SD3 ControlNet, for a Flux transformer", path);
    const bool caption = kiln_checkpoint_find(ck, "context_embedder.weight") != NULL;
    const kiln_st_tensor *pooled = kiln_checkpoint_find(ck, "time_text_embed.text_embedder.linear_1.weight");
    if (!caption && pooled && pooled->ndim == 2 && pooled->shape[0] == pooled->shape[1])
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: an SD 3.5 ControlNet that embeds the transformer's pooled "
                         "embedding again (ComfyUI's double_y_emb kind): not yet", path);
    kiln_flux *t = &cn->trunk;
    cn->stability = !caption;
    TRY(caption ? kiln_sd3_bind_trunk(w, "", t) : kiln_sd3_bind_image_trunk(w, "", model, t));
    if (t->hidden != model->hidden || t->head_dim != model->head_dim || t->in_channels != model->in_channels ||
        (caption && t->context_dim != model->context_dim) || t->pooled_dim != model->pooled_dim)
        return kiln_fail(KILN_ERR_MODEL, "%s: a ControlNet for an SD3 transformer %d wide (heads of %d, %d channels "
                         "a patch, a pooled output of %d), not for this one (%d, %d, %d, %d)", path, t->hidden,
                         t->head_dim, t->in_channels, t->pooled_dim, model->hidden, model->head_dim,
                         model->in_channels, model->pooled_dim);
    TRY(kiln_sd35_control_type(ck, &cn->control_type));
    /* the latent's channels, and an inpainting one's (InstantX's, Alimama's: 17 wide) mask after them */
    const kiln_st_tensor *hint_in = kiln_checkpoint_find(ck, "pos_embed_input.proj.weight");
    cn->concat_mask = caption && hint_in && hint_in->ndim == 4 && hint_in->shape[1] == t->in_channels / 4 + 1;
    cn->hint_channels = t->in_channels / 4 + cn->concat_mask;
    const tensor *hint_w;
    TRY(KILN_BIND(w, &hint_w, "", "pos_embed_input.proj.weight", t->hidden, cn->hint_channels, 2, 2));
    cn->hint_in_w = *hint_w;
    TRY(KILN_BIND(w, &cn->hint_in_b, "", "pos_embed_input.proj.bias", t->hidden));
    const int nblock = count_linears(ck, "controlnet_blocks", FLUX_MAX_DOUBLE);
    if (nblock != t->ndouble || nblock < 1)
        return kiln_fail(KILN_ERR_MODEL, "%s: %d blocks, but %d residual linears", path, t->ndouble, nblock);
    return bind_residual_linears(w, "controlnet_blocks", nblock, t->hidden, cn->block_w, cn->block_b);
}

static kiln_status bind(kiln_weights *w, const kiln_flux *model, kiln_flux_controlnet *cn)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    if (kiln_checkpoint_find(ck, "pos_embed_input.proj.weight")) return bind_sd3(w, model, cn);
    if (model->sd3)
        return kiln_fail(KILN_ERR_MODEL, "%s: a Flux ControlNet, for an SD3 transformer", path);
    const flux_controlnet_names *names = kiln_flux_present(ck, KILN_FLUX_ROOT) ? &xlabs_names : &diffusers_names;
    if (kiln_checkpoint_find(ck, "input_hint_block.conv_in.weight"))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a diffusers FluxControlNetModel with a hint encoder; kiln reads "
                         "that kind in XLabs' layout (input_hint_block.0, pos_embed_input)", path);
    if (!kiln_flux_present(ck, names->root) || !kiln_checkpoint_find(ck, "controlnet_blocks.0.weight"))
        return kiln_fail(KILN_ERR_MODEL, "%s: no Flux ControlNet (x_embedder or img_in, controlnet_blocks.0)", path);
    kiln_flux *t = &cn->trunk;
    TRY(kiln_flux_bind_trunk(w, names->root, model->axes, t));
    if (t->hidden != model->hidden || t->head_dim != model->head_dim || t->in_channels != model->in_channels ||
        t->context_dim != model->context_dim || t->pooled_dim != model->pooled_dim)
        return kiln_fail(KILN_ERR_MODEL, "%s: a ControlNet for a Flux transformer %d wide (heads of %d, %d channels "
                         "a token), not for this one (%d, %d, %d)", path, t->hidden, t->head_dim, t->in_channels,
                         model->hidden, model->head_dim, model->in_channels);
    if (t->guidance && !model->guidance)
        return kiln_fail(KILN_ERR_MODEL, "%s: a ControlNet that embeds a guidance value (dev's), for a model without "
                         "one", path);
    const int64_t D = t->hidden;
    cn->nmodes = 0;
    const kiln_st_tensor *modes = kiln_checkpoint_find(ck, "controlnet_mode_embedder.weight");
    if (modes) {
        cn->nmodes = modes->ndim == 2 ? (int)modes->shape[0] : 0;
        TRY(KILN_BIND(w, &cn->modes, "", "controlnet_mode_embedder.weight", cn->nmodes, D));
    }
    cn->pixel_hint = kiln_checkpoint_find(ck, "input_hint_block.0.weight") != NULL;
    /* the latent's channels in 2x2 patches, and Alimama's inpainting kind a mask's after them */
    char hint_name[96];
    snprintf(hint_name, sizeof hint_name, "%s.weight", names->hint_in);
    const kiln_st_tensor *hint_in = kiln_checkpoint_find(ck, hint_name);
    const int64_t hint_width = hint_in && hint_in->ndim == 2 ? hint_in->shape[1] : t->in_channels;
    cn->concat_mask = !cn->pixel_hint && hint_width == t->in_channels + 4;
    cn->hint_channels = (int)(cn->concat_mask ? hint_width : t->in_channels) / 4;
    const tensor *hint_w;
    TRY(kiln_dit_bind_linear(w, "", names->hint_in, D, 4 * cn->hint_channels, &hint_w, &cn->hint_in_b));
    cn->hint_in_w = *hint_w; /* the same bytes: a patch's values by channel, row, column, as a conv weight's */
    cn->hint_in_w.ndim = 4;
    cn->hint_in_w.shape[1] = cn->hint_channels;
    cn->hint_in_w.shape[2] = cn->hint_in_w.shape[3] = 2;
    if (cn->pixel_hint) TRY(kiln_hint_encoder_bind(w, "input_hint_block", cn->hint_channels, &cn->hint_encoder));
    const int nblock = count_linears(ck, "controlnet_blocks", FLUX_MAX_DOUBLE);
    const int nsingle = names->single ? count_linears(ck, names->single, FLUX_MAX_SINGLE) : 0;
    if (nblock != t->ndouble || nsingle != t->nsingle)
        return kiln_fail(KILN_ERR_MODEL, "%s: %d double and %d single blocks, but %d and %d residual linears", path,
                         t->ndouble, t->nsingle, nblock, nsingle);
    TRY(bind_residual_linears(w, "controlnet_blocks", nblock, D, cn->block_w, cn->block_b));
    if (nsingle) TRY(bind_residual_linears(w, names->single, nsingle, D, cn->single_w, cn->single_b));
    return KILN_OK;
}

kiln_status kiln_flux_controlnet_open(const char *path, const kiln_flux *flux, kiln_backend *be,
                                      kiln_controlnet **out)
{
    *out = NULL;
    kiln_controlnet *cn = calloc(1, sizeof *cn);
    kiln_flux_controlnet *f = calloc(1, sizeof *f);
    if (!cn || !f) {
        free(cn);
        free(f);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
    }
    cn->flux = f;
    f->control_type = -1;
    kiln_status st = kiln_checkpoint_open_controlnet(path, &cn->checkpoint);
    if (st == KILN_OK) st = kiln_weights_create(be, cn->checkpoint, &cn->weights);
    if (st == KILN_OK) st = bind(cn->weights, flux, f);
    if (st != KILN_OK) {
        kiln_controlnet_free(cn);
        return st;
    }
    *out = cn;
    return KILN_OK;
}

void kiln_flux_controlnet_hint_shape(const kiln_flux_controlnet *cn, int h, int w, int shape[3])
{
    const int scale = cn->pixel_hint ? 8 : 1;
    shape[0] = cn->pixel_hint ? 3 : cn->hint_channels;
    shape[1] = scale * h;
    shape[2] = scale * w;
}

typedef struct {
    const kiln_flux_controlnet *cn;
    float strength;
    flux_residuals *out;
} tap_ctx;

/* After each block: its image tokens through the block's linear, times the
 * strength. */
static kiln_status tap(kiln_graph *g, void *ctx, bool single, int i, tensor **img)
{
    const tap_ctx *c = ctx;
    tensor *r, **slot = single ? &c->out->single[i] : &c->out->block[i];
    TRY(nn_linear(g, *img, single ? c->cn->single_w[i] : c->cn->block_w[i],
                  single ? c->cn->single_b[i] : c->cn->block_b[i], &r));
    if (c->strength == 1.0f) {
        *slot = r;
        return KILN_OK;
    }
    kiln_status st = nn_scale(g, r, c->strength, slot);
    nn_drop(g, &r);
    return st;
}

/* The picture's tokens (B, h*w, D): the hint (through the hint encoder for
 * XLabs' kind) in 2x2 patches through its linear. */
static kiln_status hint_tokens(kiln_graph *g, const kiln_flux_controlnet *cn, const flux_input *in, const float *hint,
                               tensor **y)
{
    int shape[3];
    kiln_flux_controlnet_hint_shape(cn, 2 * in->h, 2 * in->w, shape);
    tensor *x, *enc, *patches;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, (int64_t[]){in->rows, shape[0], shape[1], shape[2]}, hint));
    if (cn->pixel_hint) {
        TRY(kiln_hint_encoder_forward(g, &cn->hint_encoder, x, &enc));
        nn_drop(g, &x);
        x = enc;
    }
    TRY(nn_conv2d(g, x, &cn->hint_in_w, cn->hint_in_b, 2, 0, &patches));
    nn_drop(g, &x);
    TRY(nn_image_to_tokens(g, patches, y));
    nn_drop(g, &patches);
    return KILN_OK;
}

/* A union model's row of the control type before the caption's tokens. */
static kiln_status prepend_mode(kiln_graph *g, const kiln_flux_controlnet *cn, int rows, int mode, tensor **txt)
{
    int32_t *ids = malloc((size_t)rows * sizeof *ids);
    if (!ids) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
    for (int r = 0; r < rows; r++) ids[r] = mode;
    tensor *id, *row, *joined;
    kiln_status st = kiln_graph_input(g, &id, KILN_I32, 1, (int64_t[]){rows}, ids);
    free(ids);
    TRY(st);
    TRY(nn_embedding(g, id, cn->modes, &row));
    nn_drop(g, &id);
    row->ndim = 3;
    row->shape[2] = row->shape[1];
    row->shape[1] = 1;
    TRY(nn_concat_tokens(g, row, *txt, &joined));
    nn_drop(g, &row);
    nn_drop(g, txt);
    *txt = joined;
    return KILN_OK;
}

void kiln_sd35_control_positions(int h, int w, int D, float *table)
{
    const int small = h < w ? h : w, quarter = D / 4;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float *e = table + ((size_t)y * w + x) * D;
            for (int axis = 0; axis < 2; axis++) { /* the column's half, then the row's */
                const int n = axis ? h : w, i = axis ? y : x;
                /* torch.linspace(7.5 - m, 7.5 + m, n), m = 7.5 n / small: the small side over [0, 15] */
                const double m = 7.5 * n / small, pos = n > 1 ? 7.5 - m + 2.0 * m * i / (n - 1) : 7.5 - m;
                for (int k = 0; k < quarter; k++) {
                    const double angle = pos / pow(10000.0, (double)k / quarter);
                    e[axis * 2 * quarter + k] = (float)sin(angle);
                    e[axis * 2 * quarter + quarter + k] = (float)cos(angle);
                }
            }
        }
}

void kiln_flux_controlnet_preprocess(const kiln_flux_controlnet *cn, float *pixels, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cn->control_type == KILN_SD35_CONTROL_CANNY)
            pixels[i] = pixels[i] * 255.0f * 0.5f + 0.5f;
        else if (cn->control_type == KILN_SD35_CONTROL_DEPTH)
            pixels[i] = 1.0f - pixels[i];
}

/* The image tokens a ControlNet's blocks start from: its own embedding of
 * the latent's, or (Stability's kind) the transformer's patch conv with
 * ComfyUI's positions; plus the hint's. */
static kiln_status input_tokens(kiln_graph *g, const kiln_flux_controlnet *cn, const kiln_flux *model,
                                const flux_input *in, const tensor *tokens, const float *hint, tensor **img)
{
    tensor *x, *h;
    if (cn->stability) {
        float *positions = malloc((size_t)in->h * in->w * model->hidden * sizeof *positions);
        if (!positions) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
        kiln_sd35_control_positions(in->h, in->w, model->hidden, positions);
        kiln_status st = kiln_sd3_embed_patches(g, model, in, tokens, positions, &x);
        free(positions);
        TRY(st);
    } else {
        TRY(kiln_flux_embed_image(g, &cn->trunk, in, tokens, &x));
    }
    TRY(hint_tokens(g, cn, in, hint, &h));
    TRY(nn_add(g, x, h, img));
    nn_drop(g, &x);
    nn_drop(g, &h);
    return KILN_OK;
}

/* The ControlNet's blocks on the latent's tokens plus the hint's, tapped
 * after each. */
static kiln_status controlnet_blocks(kiln_graph *g, const kiln_flux_controlnet *cn, const kiln_flux *model,
                                     const flux_input *in, const tensor *tokens, const tensor *context,
                                     const flux_control *c, flux_residuals *out)
{
    const kiln_flux *t = &cn->trunk;
    tensor *img, *txt = NULL;
    TRY(input_tokens(g, cn, model, in, tokens, c->hint, &img));
    if (!cn->stability) TRY(nn_linear(g, context, t->txt_in_w, t->txt_in_b, &txt));
    if (c->mode >= 0) TRY(prepend_mode(g, cn, in->rows, c->mode, &txt));
    TRY(kiln_flux_blocks(g, t, in, false, &img, &txt, tap, &(tap_ctx){cn, c->strength, out}, NULL));
    nn_drop(g, &img);
    return KILN_OK;
}

kiln_status kiln_flux_controlnet_forward(kiln_graph *g, const kiln_flux_controlnet *cn, const kiln_flux *model,
                                         const flux_input *in, const tensor *tokens, const tensor *context,
                                         const flux_control *c, flux_residuals *out)
{
    const kiln_flux *t = &cn->trunk;
    const bool instantx_sd3 = t->sd3 && !cn->stability;
    *out = (flux_residuals){.nblock = t->ndouble, .nsingle = t->nsingle, .model_double = model->ndouble,
                            .model_single = model->nsingle, .cycle = cn->pixel_hint, .sd3 = instantx_sd3};
    if (c->mode >= cn->nmodes)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ControlNet: control type %d, but it has %d (a union model's)",
                         c->mode, cn->nmodes);
    /* InstantX's SD3 ControlNets read no pooled output (ComfyUI's and diffusers' zeros) */
    float *zeros = instantx_sd3 ? calloc((size_t)in->rows * t->pooled_dim, sizeof *zeros) : NULL;
    if (instantx_sd3 && !zeros) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
    flux_input own = *in;
    if (zeros) own.pooled = zeros;
    own.skip_double = own.skip_single = 0; /* SkipLayerGuidance leaves out the transformer's blocks, not these */
    kiln_status st = controlnet_blocks(g, cn, model, &own, tokens, context, c, out);
    free(zeros);
    return st;
}

tensor *kiln_flux_residual(const flux_residuals *r, bool single, int i)
{
    const int n = single ? r->nsingle : r->nblock, blocks = single ? r->model_single : r->model_double;
    if (n == 0) return NULL;
    if (r->sd3) { /* ComfyUI's: each residual blocks / n times in turn, the last once less */
        const int each = blocks / n;
        return each && i < n * each - 1 ? r->block[i / each] : NULL;
    }
    const int k = r->cycle ? i % n : i / ((blocks + n - 1) / n);
    return (single ? r->single : r->block)[k];
}

void kiln_flux_residuals_release(kiln_graph *g, flux_residuals *r)
{
    for (int i = 0; i < r->nblock; i++) nn_drop(g, &r->block[i]);
    for (int i = 0; i < r->nsingle; i++) nn_drop(g, &r->single[i]);
}
