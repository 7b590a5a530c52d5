/* The generic UNet executor: binds and runs any table in unet.h. */
#include "unet.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hypertile.h"
#include "status.h"

#define PREFIX KILN_UNET_ROOT

kiln_status kiln_unet_bind_row(kiln_weights *w, const char *root, const unet_config *cfg, const unet_layer *l,
                               unet_row *row)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.%s", root, l->prefix);
    row->layer = l;
    switch (l->kind) {
    case UNET_CONV_IN: /* the config's input width: a table serves the txt2img and inpaint UNets alike */
        TRY(KILN_BIND(w, &row->conv_w, prefix, "weight", l->out_ch, cfg->in_channels, 3, 3));
        return KILN_BIND(w, &row->conv_b, prefix, "bias", l->out_ch);
    case UNET_RESBLOCK:
        return kiln_resblock_bind_unet(w, prefix, l->in_ch, l->out_ch, cfg->time_embed_dim, &row->res);
    case UNET_TRANSFORMER:
        return kiln_spatial_transformer_bind(w, prefix, l->out_ch,
                                             cfg->head_channels ? l->out_ch / cfg->head_channels : cfg->heads,
                                             cfg->context_dim, l->depth, &row->attn);
    case UNET_DOWNSAMPLE:
        TRY(KILN_BIND(w, &row->conv_w, prefix, "op.weight", l->out_ch, l->in_ch, 3, 3));
        return KILN_BIND(w, &row->conv_b, prefix, "op.bias", l->out_ch);
    case UNET_UPSAMPLE:
        TRY(KILN_BIND(w, &row->conv_w, prefix, "conv.weight", l->out_ch, l->in_ch, 3, 3));
        return KILN_BIND(w, &row->conv_b, prefix, "conv.bias", l->out_ch);
    }
    return kiln_fail(KILN_ERR_INVALID_ARG, "unet: bad layer kind in row %s", l->prefix);
}

kiln_status kiln_unet_bind_time_embedding(kiln_weights *w, const char *root, const unet_config *cfg,
                                          unet_time_embedding *te)
{
    int mc = cfg->model_channels, dim = cfg->time_embed_dim;
    TRY(kiln_weights_bind_linear(w, &te->w1, root, "time_embed.0.weight", dim, mc));
    TRY(KILN_BIND(w, &te->b1, root, "time_embed.0.bias", dim));
    TRY(kiln_weights_bind_linear(w, &te->w2, root, "time_embed.2.weight", dim, dim));
    TRY(KILN_BIND(w, &te->b2, root, "time_embed.2.bias", dim));
    if (!cfg->adm_channels) return KILN_OK;
    TRY(kiln_weights_bind_linear(w, &te->label_w1, root, "label_emb.0.0.weight", dim, cfg->adm_channels));
    TRY(KILN_BIND(w, &te->label_b1, root, "label_emb.0.0.bias", dim));
    TRY(kiln_weights_bind_linear(w, &te->label_w2, root, "label_emb.0.2.weight", dim, dim));
    return KILN_BIND(w, &te->label_b2, root, "label_emb.0.2.bias", dim);
}

kiln_status kiln_unet_bind(kiln_weights *w, const unet_config *cfg, kiln_unet *unet)
{
    *unet = (kiln_unet){.config = cfg};
    unet->rows = calloc((size_t)cfg->nlayers, sizeof *unet->rows);
    if (!unet->rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "unet: out of host memory");
    const int last_ch = cfg->layers[cfg->nlayers - 1].out_ch;
    TRY(kiln_unet_bind_time_embedding(w, PREFIX, cfg, &unet->time));
    for (int i = 0; i < cfg->nlayers; i++) TRY(kiln_unet_bind_row(w, PREFIX, cfg, &cfg->layers[i], &unet->rows[i]));
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

int kiln_unet_encoder_rows(const unet_config *cfg)
{
    int n = 0;
    while (n < cfg->nlayers && !cfg->layers[n].concat_skip) n++;
    return n;
}

bool kiln_unet_block_shape(const unet_config *cfg, int64_t h, int64_t w, int block, int64_t shape[3])
{
    const int rows = kiln_unet_encoder_rows(cfg);
    int pushed = 0;
    for (int i = 0; i < rows; i++) {
        const unet_layer *l = &cfg->layers[i];
        if (l->kind == UNET_DOWNSAMPLE) h = (h + 1) / 2, w = (w + 1) / 2; /* 3x3, stride 2, padding 1 */
        shape[0] = l->out_ch, shape[1] = h, shape[2] = w;
        if (l->push_skip && pushed++ == block) return true;
    }
    return block == -1;
}

const unet_config *kiln_unet_detect_at(const kiln_checkpoint *ck, const char *root, bool encoder_only)
{
    for (int c = 0; kiln_unet_configs[c]; c++) {
        const unet_config *cfg = kiln_unet_configs[c];
        /* The first conv, the time embedding and the last row fix the widths;
         * the deepest row (input, middle or output block) fixes the depth. */
        int nrows = encoder_only ? kiln_unet_encoder_rows(cfg) : cfg->nlayers;
        const unet_layer *first = &cfg->layers[0], *last = &cfg->layers[nrows - 1];
        char name[256];
        snprintf(name, sizeof name, "%s.%s.weight", root, first->prefix);
        const kiln_st_tensor *conv_in = kiln_checkpoint_find(ck, name);
        snprintf(name, sizeof name, "%s.time_embed.0.weight", root);
        const kiln_st_tensor *time = kiln_checkpoint_find(ck, name);
        snprintf(name, sizeof name, "%s.%s.%s", root, last->prefix,
                 last->kind == UNET_TRANSFORMER ? "proj_out.bias" : "in_layers.0.bias");
        const kiln_st_tensor *tail = kiln_checkpoint_find(ck, name);
        const kiln_st_tensor *ctx = NULL, *proj_in = NULL;
        for (int i = 0; i < nrows && !ctx; i++) {
            if (cfg->layers[i].kind != UNET_TRANSFORMER) continue;
            snprintf(name, sizeof name, "%s.%s.transformer_blocks.0.attn2.to_k.weight", root, cfg->layers[i].prefix);
            ctx = kiln_checkpoint_find(ck, name);
            snprintf(name, sizeof name, "%s.%s.proj_in.weight", root, cfg->layers[i].prefix);
            proj_in = kiln_checkpoint_find(ck, name);
            if (!ctx || !proj_in) break;
        }
        if (!conv_in || !time || !tail || !ctx || !proj_in) continue;
        if (conv_in->shape[0] != first->out_ch || conv_in->shape[1] != cfg->in_channels) continue;
        if (time->shape[0] != cfg->time_embed_dim || ctx->shape[1] != cfg->context_dim) continue;
        /* the same widths with linear projections are SD 2.x's layout */
        if ((proj_in->ndim == 2) != cfg->linear_projection) continue;
        snprintf(name, sizeof name, "%s.label_emb.0.0.weight", root);
        const kiln_st_tensor *label = kiln_checkpoint_find(ck, name);
        if (cfg->adm_channels ? !label || label->ndim != 2 || label->shape[1] != cfg->adm_channels : label != NULL)
            continue;
        return cfg;
    }
    return NULL;
}

const unet_config *kiln_unet_detect(const kiln_checkpoint *ck) { return kiln_unet_detect_at(ck, PREFIX, false); }

/* in -> linear, SiLU, linear: the shape of both embedding MLPs */
static kiln_status embedding_mlp(kiln_graph *g, const tensor *in, const tensor *w1, const tensor *b1, const tensor *w2,
                                 const tensor *b2, tensor **out)
{
    tensor *e1, *e1s;
    TRY(nn_linear(g, in, w1, b1, &e1));
    TRY(nn_silu(g, e1, &e1s));
    nn_drop(g, &e1);
    TRY(nn_linear(g, e1s, w2, b2, out));
    nn_drop(g, &e1s);
    return KILN_OK;
}

kiln_status kiln_unet_time_embedding_forward(kiln_graph *g, const unet_time_embedding *te, const unet_config *cfg,
                                             const tensor *t, const tensor *y, tensor **emb_silu)
{
    tensor *temb, *e2;
    if (!cfg->adm_channels != !y)
        return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: %s", cfg->name,
                         y ? "takes no vector y" : "needs the vector y (pooled text and sizes)");
    TRY(nn_timestep_embedding(g, t, cfg->model_channels, &temb));
    TRY(embedding_mlp(g, temb, te->w1, te->b1, te->w2, te->b2, &e2));
    nn_drop(g, &temb);
    if (y) {
        tensor *label, *sum;
        TRY(embedding_mlp(g, y, te->label_w1, te->label_b1, te->label_w2, te->label_b2, &label));
        TRY(nn_add(g, e2, label, &sum));
        nn_drop(g, &label);
        nn_drop(g, &e2);
        e2 = sum;
    }
    /* every ResBlock applies SiLU to the embedding first: do it once */
    TRY(nn_silu(g, e2, emb_silu));
    nn_drop(g, &e2);
    return KILN_OK;
}

kiln_status kiln_unet_row_forward(kiln_graph *g, const unet_row *row, const tensor *in, const tensor *emb_silu,
                                  const tensor *context, const kiln_image_attention *image, const tensor *next_skip,
                                  const kiln_self_attention_patch *attn1, const kiln_hypernetworks *hn, tensor **out)
{
    switch (row->layer->kind) {
    case UNET_CONV_IN: return nn_conv2d(g, in, row->conv_w, row->conv_b, 1, 1, out);
    case UNET_RESBLOCK: return kiln_resblock_forward(g, &row->res, in, emb_silu, out);
    case UNET_TRANSFORMER: return kiln_spatial_transformer_forward(g, &row->attn, in, context, image, attn1, hn, out);
    case UNET_DOWNSAMPLE: return nn_conv2d(g, in, row->conv_w, row->conv_b, 2, 1, out);
    case UNET_UPSAMPLE: {
        tensor *up;
        /* to the next skip's size: twice (or one less) but where Deep Shrink kept a smaller skip */
        const int64_t h = in->shape[2], w = in->shape[3];
        const bool twice = !next_skip || ((next_skip->shape[2] == 2 * h || next_skip->shape[2] == 2 * h - 1) &&
                                          (next_skip->shape[3] == 2 * w || next_skip->shape[3] == 2 * w - 1));
        if (twice) TRY(nn_upsample_nearest2x(g, in, next_skip, &up));
        else TRY(nn_resize(g, in, (int)next_skip->shape[2], (int)next_skip->shape[3], KILN_RESAMPLE_NEAREST, &up));
        kiln_status st = nn_conv2d(g, up, row->conv_w, row->conv_b, 1, 1, out);
        nn_drop(g, &up);
        return st;
    }
    }
    return kiln_fail(KILN_ERR_INVALID_ARG, "unet: bad layer kind in row %s", row->layer->prefix);
}

/* FreeU where a decoder block joins `skip` to its input: keyed, as
 * ComfyUI keys it, on the input's width alone (4 or 2 times the model's
 * base channels); other blocks get NULLs, to join the two as they are. */
static kiln_status freeu_patch(kiln_graph *g, const unet_config *cfg, const kiln_freeu *freeu, const tensor *in,
                               const tensor *skip, tensor **scaled, tensor **filtered)
{
    *scaled = *filtered = NULL;
    const int64_t width = in->shape[1];
    if (width != 4 * cfg->model_channels && width != 2 * cfg->model_channels) return KILN_OK;
    const bool deep = width == 4 * cfg->model_channels;
    TRY(nn_freeu_backbone(g, in, (float)(deep ? freeu->b1 : freeu->b2), freeu->v2, scaled));
    return nn_fourier_filter(g, skip, (float)(deep ? freeu->s1 : freeu->s2), filtered);
}

/* Whether a control residual joins h: always, but for one of the size the
 * path had before Deep Shrink resized it (shrink non-NULL), which ComfyUI's
 * apply_control cannot add and leaves out. */
static bool fits(const tensor *h, const tensor *residual, const kiln_unet_shrink *shrink)
{
    return !shrink || (residual->shape[2] == h->shape[2] && residual->shape[3] == h->shape[3]);
}

/* Python's round(side * (1 / factor)), half to even as nearbyint rounds. */
static int shrunk_side(int64_t side, double factor) { return (int)nearbyint((double)side * (1.0 / factor)); }

bool kiln_unet_middle_grid(const kiln_unet *unet, int lh, int lw, const kiln_unet_shrink *shrink, int *row, int *h,
                           int *w)
{
    const unet_config *cfg = unet->config;
    int pushed = 0;
    *h = lh, *w = lw;
    for (int i = 0; i < cfg->nlayers; i++) {
        const unet_layer *l = &cfg->layers[i];
        if (l->kind == UNET_DOWNSAMPLE) *h = (*h + 1) / 2, *w = (*w + 1) / 2;
        if (l->kind == UNET_TRANSFORMER && strncmp(l->prefix, "middle_block.", 13) == 0) {
            *row = i;
            return true;
        }
        if (l->push_skip && shrink && shrink->block == pushed)
            *h = shrunk_side(*h, shrink->factor), *w = shrunk_side(*w, shrink->factor);
        pushed += l->push_skip != 0;
    }
    return false;
}

/* Deep Shrink before the skip is kept: h resized in its place. */
static kiln_status shrink(kiln_graph *g, const kiln_unet_shrink *s, tensor **h)
{
    tensor *small;
    TRY(nn_resize(g, *h, shrunk_side((*h)->shape[2], s->factor), shrunk_side((*h)->shape[3], s->factor), s->down,
                  &small));
    nn_drop(g, h);
    *h = small;
    return KILN_OK;
}

kiln_status kiln_unet_forward(kiln_graph *g, const kiln_unet *unet, const tensor *x, const kiln_unet_cond *cond,
                              kiln_unet_probe probe, void *probe_ctx, tensor **eps)
{
    const unet_config *cfg = unet->config;
    const tensor *context = cond->context;
    const kiln_unet_control *control = cond->control;
    if (cond->nimages < 0 || cond->nimages > KILN_MAX_IP_ADAPTERS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "unet: %d image prompts (at most %d)", cond->nimages,
                         KILN_MAX_IP_ADAPTERS);
    tensor *emb_silu;
    TRY(kiln_unet_time_embedding_forward(g, &unet->time, cfg, cond->t, cond->y, &emb_silu));

    const int encoder_rows = kiln_unet_encoder_rows(cfg);
    tensor *skips[KILN_UNET_MAX_SKIPS];
    int nskips = 0, pushed = 0;
    tensor *h = NULL;      /* NULL until conv_in: the input x is not ours to release */
    bool h_shared = false; /* h is also on the skip stack, which releases it when popped */
    for (int i = 0; i < cfg->nlayers; i++) {
        const unet_row *row = &unet->rows[i];
        const unet_layer *l = row->layer;
        const tensor *in = h ? h : x;
        tensor *cat = NULL, *out = NULL;
        if (l->concat_skip) {
            if (nskips == 0) return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: skip stack empty at %s", cfg->name, l->prefix);
            tensor *skip = skips[--nskips], *scaled = NULL, *filtered = NULL, *resized = NULL;
            /* Deep Shrink's way back up: ComfyUI compares the heights alone */
            if (cond->shrink && in->shape[2] != skip->shape[2]) {
                TRY(nn_resize(g, in, (int)skip->shape[2], (int)skip->shape[3], cond->shrink->up, &resized));
                in = resized;
            }
            if (cond->freeu) TRY(freeu_patch(g, cfg, cond->freeu, in, skip, &scaled, &filtered));
            TRY(nn_concat_channels(g, scaled ? scaled : in, filtered ? filtered : skip, &cat));
            if (scaled) nn_drop(g, &scaled);
            if (filtered) nn_drop(g, &filtered);
            if (resized) nn_drop(g, &resized);
            kiln_graph_release(g, skip);
            if (skip == h) h_shared = false, h = NULL; /* released just now */
            in = cat;
        }
        const size_t at = (size_t)i * KILN_MAX_TRANSFORMER_DEPTH;
        kiln_image_attention image[KILN_MAX_IP_ADAPTERS];
        for (int k = 0; k < cond->nimages; k++) {
            const kiln_unet_image_prompt *ip = &cond->image[k];
            image[k] = (kiln_image_attention){ip->tokens, ip->weight, ip->k_w + at, ip->v_w + at,
                                              k + 1 < cond->nimages ? &image[k + 1] : NULL};
        }
        const bool middle = strncmp(l->prefix, "middle_block.", 13) == 0;
        kiln_self_attention_patch attn1 = middle ? cond->middle_attn1 : (kiln_self_attention_patch){0};
        kiln_query_tiles tiles[KILN_MAX_TRANSFORMER_DEPTH];
        if (cond->hypertile && l->kind == UNET_TRANSFORMER) {
            for (int b = 0; b < l->depth; b++)
                tiles[b] = kiln_hypertile_tiles(cond->hypertile, x->shape[2], x->shape[3], in->shape[2] * in->shape[3],
                                                cond->hypertile_rng);
            attn1.tiles = tiles;
        }
        TRY(kiln_unet_row_forward(g, row, in, emb_silu, context, cond->nimages ? image : NULL,
                                  nskips ? skips[nskips - 1] : NULL, middle || attn1.tiles ? &attn1 : NULL,
                                  cond->hypernetworks, &out));
        if (cat) nn_drop(g, &cat);
        if (h && !h_shared) nn_drop(g, &h);
        h = out;
        h_shared = false;
        /* a T2I-Adapter's features join the path itself, before the skip is kept */
        tensor *joins = !control ? NULL : i == encoder_rows - 1 ? control->mid
                        : l->push_skip && pushed < KILN_UNET_MAX_SKIPS ? control->inputs[pushed]
                                                                : NULL;
        if (joins && fits(h, joins, cond->shrink)) {
            TRY(nn_add(g, h, joins, &out));
            nn_drop(g, &h);
            h = out;
        }
        const bool shrink_here = l->push_skip && cond->shrink && cond->shrink->block == pushed;
        if (shrink_here && !cond->shrink->after_skip) TRY(shrink(g, cond->shrink, &h));
        if (l->push_skip) {
            if (nskips == KILN_UNET_MAX_SKIPS) return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: skip stack full", cfg->name);
            /* a ControlNet's residual goes onto the skip, not into the encoder's path */
            if (control && control->nskips && pushed == control->nskips)
                return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: %d ControlNet residuals for more skips", cfg->name,
                                 control->nskips);
            if (control && control->nskips && fits(h, control->skips[pushed], cond->shrink)) {
                TRY(nn_add(g, h, control->skips[pushed], &skips[nskips++]));
            } else {
                skips[nskips++] = h;
                h_shared = true;
            }
            pushed++;
        }
        if (shrink_here && cond->shrink->after_skip) {
            tensor *kept = h; /* on the skip stack, which releases it, unless a residual made the skip */
            TRY(nn_resize(g, kept, shrunk_side(kept->shape[2], cond->shrink->factor),
                          shrunk_side(kept->shape[3], cond->shrink->factor), cond->shrink->down, &h));
            if (!h_shared) nn_drop(g, &kept);
            h_shared = false;
        }
        if (probe && l->block_name) TRY(probe(probe_ctx, l->block_name, g, h));
    }
    nn_drop(g, &emb_silu);
    if (nskips) return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: %d skips left over", cfg->name, nskips);
    if (control && control->nskips && pushed != control->nskips)
        return kiln_fail(KILN_ERR_INVALID_ARG, "unet %s: %d ControlNet residuals for %d skips", cfg->name,
                         control->nskips, pushed);

    tensor *n, *o;
    TRY(nn_group_norm(g, h, unet->out_norm_w, unet->out_norm_b, 32, 1e-5f, true, &n));
    nn_drop(g, &h);
    TRY(nn_conv2d(g, n, unet->out_w, unet->out_b, 1, 1, &o));
    nn_drop(g, &n);
    *eps = o;
    return KILN_OK;
}
