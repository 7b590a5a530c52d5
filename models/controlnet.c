/* ControlNet: binding and running the encoder copy, hint encoder and zero
 * convolutions (see controlnet.h). */
#include "controlnet.h"

#include <stdio.h>
#include <stdlib.h>

#include "merge.h"
#include "status.h"
#include "t2i_adapter.h"

#define ROOT KILN_CONTROLNET_ROOT

kiln_status kiln_hint_encoder_bind(kiln_weights *w, const char *prefix, int64_t out, kiln_hint_encoder *e)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    int64_t in = 3;
    for (int k = 0; k < KILN_CONTROLNET_HINT_CONVS; k++) {
        char conv[96], name[128];
        snprintf(conv, sizeof conv, "%s.%d", prefix, 2 * k);
        snprintf(name, sizeof name, "%s.weight", conv);
        const kiln_st_tensor *t = kiln_checkpoint_find(ck, name);
        int64_t width = t && t->ndim == 4 ? t->shape[0] : 0;
        if (k == KILN_CONTROLNET_HINT_CONVS - 1) width = out;
        if (width <= 0) return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' is missing", kiln_checkpoint_path(ck), name);
        TRY(KILN_BIND(w, &e->w[k], conv, "weight", width, in, 3, 3));
        TRY(KILN_BIND(w, &e->b[k], conv, "bias", width));
        in = width;
    }
    return KILN_OK;
}

static kiln_status bind(kiln_controlnet *cn, kiln_backend *be)
{
    const unet_config *cfg = cn->config;
    cn->nrows = kiln_unet_encoder_rows(cfg);
    cn->rows = calloc((size_t)cn->nrows, sizeof *cn->rows);
    if (!cn->rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
    TRY(kiln_weights_create(be, cn->checkpoint, &cn->weights));
    kiln_weights *w = cn->weights;
    TRY(kiln_unet_bind_time_embedding(w, ROOT, cfg, &cn->time));
    for (int i = 0; i < cn->nrows; i++) {
        const unet_layer *l = &cfg->layers[i];
        TRY(kiln_unet_bind_row(w, ROOT, cfg, l, &cn->rows[i]));
        if (!l->push_skip) continue;
        char prefix[64];
        snprintf(prefix, sizeof prefix, ROOT ".zero_convs.%d.0", cn->nzero);
        TRY(KILN_BIND(w, &cn->zero_w[cn->nzero], prefix, "weight", l->out_ch, l->out_ch, 1, 1));
        TRY(KILN_BIND(w, &cn->zero_b[cn->nzero], prefix, "bias", l->out_ch));
        cn->nzero++;
    }
    const int mid_ch = cfg->layers[cn->nrows - 1].out_ch;
    TRY(KILN_BIND(w, &cn->mid_w, ROOT ".middle_block_out.0", "weight", mid_ch, mid_ch, 1, 1));
    TRY(KILN_BIND(w, &cn->mid_b, ROOT ".middle_block_out.0", "bias", mid_ch));
    return kiln_hint_encoder_bind(w, ROOT ".input_hint_block", cfg->model_channels, &cn->hint);
}

/* ComfyUI's ControlNetLoader reads T2I-Adapters too. */
static kiln_status open_adapter(kiln_controlnet *cn, const unet_config *cfg, kiln_backend *be)
{
    if (!(cn->adapter = calloc(1, sizeof *cn->adapter)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
    TRY(kiln_weights_create(be, cn->checkpoint, &cn->weights));
    TRY(kiln_t2i_adapter_bind(cn->weights, cn->checkpoint, cn->adapter));
    return kiln_t2i_adapter_check(cn->adapter, cfg, kiln_checkpoint_path(cn->checkpoint));
}

kiln_status kiln_controlnet_open(const char *path, const kiln_unet *unet, const kiln_checkpoint *model,
                                 kiln_backend *be, kiln_controlnet **out)
{
    *out = NULL;
    kiln_controlnet *cn = calloc(1, sizeof *cn);
    if (!cn) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "controlnet: out of host memory");
    kiln_status st = kiln_checkpoint_open_controlnet(path, &cn->checkpoint);
    if (st == KILN_OK && kiln_t2i_adapter_detect(cn->checkpoint)) {
        st = open_adapter(cn, unet->config, be);
        if (st != KILN_OK) {
            kiln_controlnet_free(cn);
            return st;
        }
        *out = cn;
        return KILN_OK;
    }
    if (st == KILN_OK && kiln_checkpoint_find(cn->checkpoint, "controlnet_blocks.0.weight"))
        st = kiln_fail(KILN_ERR_MODEL, "%s: a Flux ControlNet (controlnet_blocks.0), for a Flux model's transformer, "
                       "not for this model's UNet (%s)", path, unet->config->name);
    if (st == KILN_OK && !kiln_checkpoint_find(cn->checkpoint, ROOT ".input_hint_block.0.weight"))
        st = kiln_fail(KILN_ERR_MODEL, "%s: no tensor 'input_hint_block.0.weight' (or diffusers' "
                       "'controlnet_cond_embedding.conv_in.weight'): not a ControlNet (nor a T2I-Adapter: "
                       "no 'conv_in.weight' or 'body.0.in_conv.weight')", path);
    if (st == KILN_OK) {
        cn->config = kiln_unet_detect_at(cn->checkpoint, ROOT, true);
        /* a ControlNet copies one UNet's encoder: the same table */
        if (cn->config != unet->config)
            st = kiln_fail(KILN_ERR_MODEL, "%s: a ControlNet for %s, not for this model's UNet (%s)", path,
                           cn->config ? cn->config->name : "a UNet kiln does not know", unet->config->name);
    }
    int added;
    if (st == KILN_OK && kiln_checkpoint_find(cn->checkpoint, "difference"))
        st = kiln_controlnet_add_unet(cn->checkpoint, model, &added);
    if (st == KILN_OK) st = bind(cn, be);
    if (st != KILN_OK) {
        kiln_controlnet_free(cn);
        return st;
    }
    *out = cn;
    return KILN_OK;
}

void kiln_controlnet_free(kiln_controlnet *cn)
{
    if (!cn) return;
    free(cn->rows);
    free(cn->flux);
    free(cn->adapter);
    kiln_weights_free(cn->weights);
    kiln_checkpoint_close(cn->checkpoint);
    free(cn);
}

kiln_status kiln_hint_encoder_forward(kiln_graph *g, const kiln_hint_encoder *e, const tensor *hint, tensor **y)
{
    tensor *h = NULL;
    for (int k = 0; k < KILN_CONTROLNET_HINT_CONVS; k++) {
        tensor *c, *a;
        int stride = k == 2 || k == 4 || k == 6 ? 2 : 1;
        TRY(nn_conv2d(g, h ? h : hint, e->w[k], e->b[k], stride, 1, &c));
        if (h) nn_drop(g, &h);
        if (k == KILN_CONTROLNET_HINT_CONVS - 1) {
            *y = c;
            return KILN_OK;
        }
        TRY(nn_silu(g, c, &a));
        nn_drop(g, &c);
        h = a;
    }
    return KILN_OK;
}

/* out = conv1x1(h) * strength */
static kiln_status zero_conv(kiln_graph *g, const tensor *h, const tensor *w, const tensor *b, float strength,
                             tensor **out)
{
    tensor *c;
    TRY(nn_conv2d(g, h, w, b, 1, 0, &c));
    if (strength == 1.0f) {
        *out = c;
        return KILN_OK;
    }
    kiln_status st = nn_scale(g, c, strength, out);
    nn_drop(g, &c);
    return st;
}

kiln_status kiln_controlnet_forward(kiln_graph *g, const kiln_controlnet *cn, const tensor *x, const tensor *hint,
                                    const kiln_unet_cond *cond, float strength, kiln_unet_control *out)
{
    *out = (kiln_unet_control){0};
    if (hint->ndim != 4 || hint->shape[0] != x->shape[0] || hint->shape[1] != 3 || hint->shape[2] != 8 * x->shape[2] ||
        hint->shape[3] != 8 * x->shape[3])
        return kiln_fail(KILN_ERR_INVALID_ARG, "controlnet: the hint must be (%lld, 3, %lld, %lld), 8x the latent",
                         (long long)x->shape[0], (long long)(8 * x->shape[2]), (long long)(8 * x->shape[3]));
    tensor *emb_silu, *guide;
    TRY(kiln_unet_time_embedding_forward(g, &cn->time, cn->config, cond->t, cond->y, &emb_silu));
    TRY(kiln_hint_encoder_forward(g, &cn->hint, hint, &guide));
    tensor *h = NULL;
    for (int i = 0; i < cn->nrows; i++) {
        const unet_row *row = &cn->rows[i];
        tensor *y;
        TRY(kiln_unet_row_forward(g, row, h ? h : x, emb_silu, cond->context, NULL, NULL, NULL, NULL, &y));
        if (h) nn_drop(g, &h);
        h = y;
        if (i == 0) { /* the encoded hint joins after conv_in */
            TRY(nn_add(g, h, guide, &y));
            nn_drop(g, &h);
            nn_drop(g, &guide);
            h = y;
        }
        if (row->layer->push_skip) {
            TRY(zero_conv(g, h, cn->zero_w[out->nskips], cn->zero_b[out->nskips], strength, &out->skips[out->nskips]));
            out->nskips++;
        }
    }
    TRY(zero_conv(g, h, cn->mid_w, cn->mid_b, strength, &out->mid));
    nn_drop(g, &h);
    nn_drop(g, &emb_silu);
    return KILN_OK;
}
