/* The generic UNet executor: binds and runs any table in unet.h. */
#include "unet.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "status.h"

#define PREFIX "model.diffusion_model"
#define MAX_SKIPS 32

static kiln_status bind_row(kiln_weights *w, const unet_config *cfg, const unet_layer *l, unet_row *row)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, PREFIX ".%s", l->prefix);
    row->layer = l;
    switch (l->kind) {
    case UNET_CONV_IN:
        TRY(KILN_BIND(w, &row->conv_w, prefix, "weight", l->out_ch, l->in_ch, 3, 3));
        return KILN_BIND(w, &row->conv_b, prefix, "bias", l->out_ch);
    case UNET_RESBLOCK:
        return kiln_resblock_bind_unet(w, prefix, l->in_ch, l->out_ch, cfg->time_embed_dim, &row->res);
    case UNET_TRANSFORMER:
        return kiln_spatial_transformer_bind(w, prefix, l->out_ch, cfg->heads, cfg->context_dim, &row->attn);
    case UNET_DOWNSAMPLE:
        TRY(KILN_BIND(w, &row->conv_w, prefix, "op.weight", l->out_ch, l->in_ch, 3, 3));
        return KILN_BIND(w, &row->conv_b, prefix, "op.bias", l->out_ch);
    case UNET_UPSAMPLE:
        TRY(KILN_BIND(w, &row->conv_w, prefix, "conv.weight", l->out_ch, l->in_ch, 3, 3));
        return KILN_BIND(w, &row->conv_b, prefix, "conv.bias", l->out_ch);
    }
    return kiln_fail(KILN_ERR_INVALID_ARG, "unet: bad layer kind in row %s", l->prefix);
}

kiln_status kiln_unet_bind(kiln_weights *w, const unet_config *cfg, kiln_unet *unet)
{
    *unet = (kiln_unet){.config = cfg};
    unet->rows = calloc((size_t)cfg->nlayers, sizeof *unet->rows);
    if (!unet->rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "unet: out of host memory");
    int mc = cfg->model_channels, te = cfg->time_embed_dim;
    const int last_ch = cfg->layers[cfg->nlayers - 1].out_ch;
    TRY(KILN_BIND(w, &unet->time1_w, PREFIX, "time_embed.0.weight", te, mc));
    TRY(KILN_BIND(w, &unet->time1_b, PREFIX, "time_embed.0.bias", te));
    TRY(KILN_BIND(w, &unet->time2_w, PREFIX, "time_embed.2.weight", te, te));
    TRY(KILN_BIND(w, &unet->time2_b, PREFIX, "time_embed.2.bias", te));
    for (int i = 0; i < cfg->nlayers; i++) TRY(bind_row(w, cfg, &cfg->layers[i], &unet->rows[i]));
    TRY(KILN_BIND(w, &unet->out_norm_w, PREFIX, "out.0.weight", last_ch));
    TRY(KILN_BIND(w, &unet->out_norm_b, PREFIX, "out.0.bias", last_ch));
    TRY(KILN_BIND(w, &unet->out_w, PREFIX, "out.2.weight", cfg->out_channels, last_ch, 3, 3));
    TRY(KILN_BIND(w, &unet->out_b, PREFIX, "out.2.bias", cfg->out_channels));
    return KILN_OK;
}

void kiln_unet_release(kiln_unet *unet)
{
    free(unet->rows);
    unet->rows = NULL;
}

const unet_config *kiln_unet_detect(const kiln_checkpoint *ck)
{
    for (int c = 0; kiln_unet_configs[c]; c++) {
        const unet_config *cfg = kiln_unet_configs[c];
        /* The first conv, the time embedding and the last row fix the widths;
         * the deepest input block and the output head fix the depth. */
        const unet_layer *first = &cfg->layers[0], *last = &cfg->layers[cfg->nlayers - 1];
        char name[256];
        snprintf(name, sizeof name, PREFIX ".%s.weight", first->prefix);
        const kiln_st_tensor *conv_in = kiln_checkpoint_find(ck, name);
        const kiln_st_tensor *time = kiln_checkpoint_find(ck, PREFIX ".time_embed.0.weight");
        snprintf(name, sizeof name, PREFIX ".%s.%s", last->prefix,
                 last->kind == UNET_TRANSFORMER ? "proj_out.bias" : "in_layers.0.bias");
        const kiln_st_tensor *tail = kiln_checkpoint_find(ck, name);
        const kiln_st_tensor *ctx = NULL;
        for (int i = 0; i < cfg->nlayers && !ctx; i++) {
            if (cfg->layers[i].kind != UNET_TRANSFORMER) continue;
            snprintf(name, sizeof name, PREFIX ".%s.transformer_blocks.0.attn2.to_k.weight", cfg->layers[i].prefix);
            ctx = kiln_checkpoint_find(ck, name);
            if (!ctx) break;
        }
        if (!conv_in || !time || !tail || !ctx) continue;
        if (conv_in->shape[0] != first->out_ch || conv_in->shape[1] != cfg->in_channels) continue;
        if (time->shape[0] != cfg->time_embed_dim || ctx->shape[1] != cfg->context_dim) continue;
        return cfg;
    }
    return NULL;
}

kiln_status kiln_unet_forward(kiln_graph *g, const kiln_unet *unet, const tensor *x, const tensor *t,
                              const tensor *context, kiln_unet_probe probe, void *probe_ctx, tensor **eps)
{
    const unet_config *cfg = unet->config;
    tensor *temb, *e1, *e1s, *e2, *emb_silu;
    TRY(nn_timestep_embedding(g, t, cfg->model_channels, &temb));
    TRY(nn_linear(g, temb, unet->time1_w, unet->time1_b, &e1));
    nn_drop(g, &temb);
    TRY(nn_silu(g, e1, &e1s));
    nn_drop(g, &e1);
    TRY(nn_linear(g, e1s, unet->time2_w, unet->time2_b, &e2));
    nn_drop(g, &e1s);
    /* every ResBlock applies SiLU to the embedding first: do it once */
    TRY(nn_silu(g, e2, &emb_silu));
    nn_drop(g, &e2);

    tensor *skips[MAX_SKIPS];
    int nskips = 0;
    tensor *h = NULL;      /* NULL until conv_in: the input x is not ours to release */
    bool h_shared = false; /* h is also on the skip stack, which releases it when popped */
    for (int i = 0; i < cfg->nlayers; i++) {
        const unet_row *row = &unet->rows[i];
        const unet_layer *l = row->layer;
        const tensor *in = h ? h : x;
        tensor *cat = NULL, *out = NULL;
        if (l->concat_skip) {
            if (nskips == 0) return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: skip stack empty at %s", cfg->name, l->prefix);
            tensor *skip = skips[--nskips];
            TRY(nn_concat_channels(g, in, skip, &cat));
            kiln_graph_release(g, skip);
            if (skip == h) h_shared = false, h = NULL; /* released just now */
            in = cat;
        }
        switch (l->kind) {
        case UNET_CONV_IN: TRY(nn_conv2d(g, in, row->conv_w, row->conv_b, 1, 1, &out)); break;
        case UNET_RESBLOCK: TRY(kiln_resblock_forward(g, &row->res, in, emb_silu, &out)); break;
        case UNET_TRANSFORMER: TRY(kiln_spatial_transformer_forward(g, &row->attn, in, context, &out)); break;
        case UNET_DOWNSAMPLE: TRY(nn_conv2d(g, in, row->conv_w, row->conv_b, 2, 1, &out)); break;
        case UNET_UPSAMPLE: {
            tensor *up;
            TRY(nn_upsample_nearest2x(g, in, &up));
            TRY(nn_conv2d(g, up, row->conv_w, row->conv_b, 1, 1, &out));
            nn_drop(g, &up);
            break;
        }
        }
        if (cat) nn_drop(g, &cat);
        if (h && !h_shared) nn_drop(g, &h);
        h = out;
        h_shared = false;
        if (l->push_skip) {
            if (nskips == MAX_SKIPS) return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: skip stack full", cfg->name);
            skips[nskips++] = h;
            h_shared = true;
        }
        if (probe && l->block_name) TRY(probe(probe_ctx, l->block_name, g, h));
    }
    nn_drop(g, &emb_silu);
    if (nskips) return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: %d skips left over", cfg->name, nskips);

    tensor *n, *o;
    TRY(nn_group_norm(g, h, unet->out_norm_w, unet->out_norm_b, 32, 1e-5f, true, &n));
    nn_drop(g, &h);
    TRY(nn_conv2d(g, n, unet->out_w, unet->out_b, 1, 1, &o));
    nn_drop(g, &n);
    *eps = o;
    return KILN_OK;
}
