#include "ip_adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "status.h"

/* the other image projections kiln does not run, by a tensor each has */
static const struct {
    const char *tensor, *variant;
} other_kinds[] = {
    {"image_proj.proj.0.weight", "IP-Adapter FaceID (an MLP projection of insightface's embedding)"},
    {"image_proj.perceiver_resampler.proj_in.weight", "IP-Adapter FaceID Plus"},
};

/* Each cross-attention's number in the file: diffusers' processor order
 * walks the down blocks (our input blocks), the up blocks (output blocks),
 * then the middle block, self- and cross-attention in turn from 0, so
 * cross-attentions are the odd numbers. */
static kiln_status bind_layers(kiln_ip_adapter *ipa, const kiln_unet *unet, const char *path)
{
    const unet_config *cfg = unet->config;
    static const char *const order[] = {"input_blocks.", "output_blocks.", "middle_block."};
    int number = 1;
    char prefix[64];
    for (int part = 0; part < 3; part++)
        for (int i = 0; i < cfg->nlayers; i++) {
            const unet_layer *l = &cfg->layers[i];
            if (l->kind != UNET_TRANSFORMER || strncmp(l->prefix, order[part], strlen(order[part])) != 0) continue;
            for (int b = 0; b < l->depth; b++, number += 2) {
                const size_t at = (size_t)i * KILN_MAX_TRANSFORMER_DEPTH + b;
                snprintf(prefix, sizeof prefix, "ip_adapter.%d", number);
                TRY(KILN_BIND(ipa->weights, &ipa->k_w[at], prefix, "to_k_ip.weight", l->out_ch, ipa->context_dim));
                TRY(KILN_BIND(ipa->weights, &ipa->v_w[at], prefix, "to_v_ip.weight", l->out_ch, ipa->context_dim));
            }
        }
    snprintf(prefix, sizeof prefix, "ip_adapter.%d.to_k_ip.weight", number);
    if (kiln_checkpoint_find(ipa->checkpoint, prefix))
        return kiln_fail(KILN_ERR_MODEL, "%s: has '%s', past the %d cross-attentions of this model's UNet (%s)", path,
                         prefix, number / 2, cfg->name);
    return KILN_OK;
}

/* A Plus file's Resampler, as diffusers' loader reads it: heads 64 wide,
 * layers counted by their to_q. */
static kiln_status inspect_resampler(const kiln_checkpoint *ck, kiln_ip_adapter_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    const kiln_st_tensor *latents = kiln_checkpoint_find(ck, "image_proj.latents");
    const kiln_st_tensor *in = kiln_checkpoint_find(ck, "image_proj.proj_in.weight");
    const kiln_st_tensor *out = kiln_checkpoint_find(ck, "image_proj.proj_out.weight");
    const kiln_st_tensor *q = kiln_checkpoint_find(ck, "image_proj.layers.0.0.to_q.weight");
    if (!latents || !in || !out || !q || latents->ndim != 3 || in->ndim != 2 || out->ndim != 2 || q->ndim != 2 ||
        q->shape[0] % 64 != 0)
        return kiln_fail(KILN_ERR_MODEL, "%s: an IP-Adapter Plus without the Resampler's 'image_proj.proj_in', "
                         "'proj_out' and 'layers.0.0.to_q' (64-wide heads)", path);
    info->projection = KILN_IP_PLUS;
    info->tokens = (int)latents->shape[1];
    info->embed_dim = (int)in->shape[1];
    info->context_dim = (int)out->shape[0];
    info->resampler_heads = (int)(q->shape[0] / 64);
    char name[64];
    for (;; info->resampler_layers++) {
        snprintf(name, sizeof name, "image_proj.layers.%d.0.to_q.weight", info->resampler_layers);
        if (!kiln_checkpoint_find(ck, name)) break;
    }
    if (info->resampler_layers > KILN_IP_RESAMPLER_MAX_LAYERS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a Resampler of %d layers, kiln runs at most %d", path,
                         info->resampler_layers, KILN_IP_RESAMPLER_MAX_LAYERS);
    return KILN_OK;
}

#define XLABS_PROJ "ip_adapter_proj_model"
#define XLABS_KV "double_blocks.%d.processor.ip_adapter_double_stream_%c_proj"

/* The plain projection's shapes under `root` (h94's image_proj, XLabs'
 * ip_adapter_proj_model). */
static kiln_status inspect_plain(const kiln_checkpoint *ck, const char *root, kiln_ip_adapter_info *info)
{
    const kiln_st_tensor *proj = kiln_checkpoint_find_at(ck, root, "proj.weight");
    const kiln_st_tensor *norm = kiln_checkpoint_find_at(ck, root, "norm.weight");
    if (!proj || !norm || proj->ndim != 2 || norm->ndim != 1 || norm->shape[0] < 1 ||
        proj->shape[0] % norm->shape[0] != 0)
        return kiln_fail(KILN_ERR_MODEL, "%s: no tensors 'image_proj.proj.weight' and 'image_proj.norm.weight' "
                         "(or a Plus Resampler's 'image_proj.latents', or XLabs' '" XLABS_PROJ ".*'): not an "
                         "IP-Adapter in the .safetensors layout (image_proj.*, ip_adapter.*)", kiln_checkpoint_path(ck));
    info->embed_dim = (int)proj->shape[1];
    info->context_dim = (int)norm->shape[0];
    info->tokens = (int)(proj->shape[0] / norm->shape[0]);
    return KILN_OK;
}

kiln_status kiln_ip_adapter_inspect(const kiln_checkpoint *ck, kiln_ip_adapter_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    *info = (kiln_ip_adapter_info){0};
    char name[128];
    if (kiln_checkpoint_find(ck, XLABS_PROJ ".proj.weight")) { /* XLabs' Flux one */
        info->flux = true;
        TRY(inspect_plain(ck, XLABS_PROJ, info));
        for (;; info->cross_attentions++) {
            snprintf(name, sizeof name, XLABS_KV ".weight", info->cross_attentions, 'k');
            if (!kiln_checkpoint_find(ck, name)) return KILN_OK;
        }
    }
    const kiln_st_tensor *mlp = kiln_checkpoint_find(ck, "image_proj.proj.0.weight");
    const kiln_st_tensor *out = kiln_checkpoint_find(ck, "image_proj.proj.2.weight");
    const kiln_st_tensor *norm = kiln_checkpoint_find(ck, "image_proj.proj.3.weight");
    if (mlp && norm) { /* full-face: a norm after the MLP, which FaceID's lacks */
        if (!out || mlp->ndim != 2 || out->ndim != 2 || norm->ndim != 1 || out->shape[1] != mlp->shape[0])
            return kiln_fail(KILN_ERR_MODEL, "%s: an IP-Adapter full-face without 'image_proj.proj.0' and '.2' "
                             "linears that chain", path);
        info->projection = KILN_IP_FULL;
        info->embed_dim = (int)mlp->shape[1];
        info->context_dim = (int)norm->shape[0];
        info->tokens = KILN_IP_FULL_TOKENS;
    }
    for (size_t i = 0; i < sizeof other_kinds / sizeof other_kinds[0] && info->projection != KILN_IP_FULL; i++)
        if (kiln_checkpoint_find(ck, other_kinds[i].tensor))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: an %s, which kiln does not run yet (it runs the plain "
                             "IP-Adapter and IP-Adapter Plus)", path, other_kinds[i].variant);
    const bool full = info->projection == KILN_IP_FULL; /* read above */
    if (!full && kiln_checkpoint_find(ck, "image_proj.latents")) {
        TRY(inspect_resampler(ck, info));
    } else if (!full) {
        TRY(inspect_plain(ck, "image_proj", info));
    }
    for (;; info->cross_attentions++) {
        snprintf(name, sizeof name, "ip_adapter.%d.to_k_ip.weight", 2 * info->cross_attentions + 1);
        if (!kiln_checkpoint_find(ck, name)) return KILN_OK;
    }
}

static kiln_status bind_resampler(kiln_ip_adapter *ipa, const kiln_ip_adapter_info *info)
{
    ip_resampler *r = &ipa->resampler;
    kiln_weights *w = ipa->weights;
    const int H = (int)kiln_checkpoint_find(ipa->checkpoint, "image_proj.latents")->shape[2];
    const int I = 64 * info->resampler_heads, ctx = ipa->context_dim, E = ipa->embed_dim;
    r->hidden = H, r->heads = info->resampler_heads, r->nlayers = info->resampler_layers;
    TRY(KILN_BIND(w, &r->latents, "image_proj", "latents", 1, ipa->tokens, H));
    TRY(KILN_BIND(w, &r->proj_in_w, "image_proj.proj_in", "weight", H, E));
    TRY(KILN_BIND(w, &r->proj_in_b, "image_proj.proj_in", "bias", H));
    TRY(KILN_BIND(w, &r->proj_out_w, "image_proj.proj_out", "weight", ctx, H));
    TRY(KILN_BIND(w, &r->proj_out_b, "image_proj.proj_out", "bias", ctx));
    TRY(KILN_BIND(w, &r->norm_out_w, "image_proj.norm_out", "weight", ctx));
    TRY(KILN_BIND(w, &r->norm_out_b, "image_proj.norm_out", "bias", ctx));
    const kiln_st_tensor *ff = kiln_checkpoint_find(ipa->checkpoint, "image_proj.layers.0.1.1.weight");
    const int F = ff && ff->ndim == 2 ? (int)ff->shape[0] : 4 * H;
    char p[64];
    for (int i = 0; i < r->nlayers; i++) {
        ip_resampler_layer *l = &r->layer[i];
        snprintf(p, sizeof p, "image_proj.layers.%d.0", i);
        TRY(KILN_BIND(w, &l->norm_x_w, p, "norm1.weight", H));
        TRY(KILN_BIND(w, &l->norm_x_b, p, "norm1.bias", H));
        TRY(KILN_BIND(w, &l->norm_q_w, p, "norm2.weight", H));
        TRY(KILN_BIND(w, &l->norm_q_b, p, "norm2.bias", H));
        TRY(KILN_BIND(w, &l->q_w, p, "to_q.weight", I, H));
        TRY(KILN_BIND(w, &l->k_w, p, "to_k.weight", I, H));
        TRY(KILN_BIND(w, &l->v_w, p, "to_v.weight", I, H));
        TRY(KILN_BIND(w, &l->out_w, p, "to_out.weight", H, I));
        snprintf(p, sizeof p, "image_proj.layers.%d.1", i);
        TRY(KILN_BIND(w, &l->ff_norm_w, p, "0.weight", H));
        TRY(KILN_BIND(w, &l->ff_norm_b, p, "0.bias", H));
        TRY(KILN_BIND(w, &l->ff_in_w, p, "1.weight", F, H));
        TRY(KILN_BIND(w, &l->ff_out_w, p, "3.weight", H, F));
    }
    return KILN_OK;
}

static kiln_status bind(kiln_ip_adapter *ipa, const kiln_unet *unet, kiln_backend *be, const char *path)
{
    const kiln_checkpoint *ck = ipa->checkpoint;
    kiln_ip_adapter_info info;
    TRY(kiln_ip_adapter_inspect(ck, &info));
    if (info.flux)
        return kiln_fail(KILN_ERR_MODEL, "%s: XLabs' IP-Adapter for Flux, not for this model's UNet (%s)", path,
                         unet->config->name);
    const int ctx = unet->config->context_dim;
    if (info.context_dim != ctx)
        return kiln_fail(KILN_ERR_MODEL, "%s: an IP-Adapter making %d-wide tokens, for another base model than "
                         "this one (%s, context %d)", path, info.context_dim, unet->config->name, ctx);
    ipa->projection = info.projection;
    ipa->context_dim = ctx;
    ipa->tokens = info.tokens;
    ipa->embed_dim = info.embed_dim;
    ipa->nrows = unet->config->nlayers;
    const size_t slots = (size_t)ipa->nrows * KILN_MAX_TRANSFORMER_DEPTH;
    ipa->k_w = calloc(slots, sizeof *ipa->k_w);
    ipa->v_w = calloc(slots, sizeof *ipa->v_w);
    if (!ipa->k_w || !ipa->v_w) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    TRY(kiln_weights_create(be, ck, &ipa->weights));
    if (ipa->projection == KILN_IP_PLUS) {
        TRY(bind_resampler(ipa, &info));
    } else if (ipa->projection == KILN_IP_FULL) {
        const int E = ipa->embed_dim;
        TRY(KILN_BIND(ipa->weights, &ipa->mlp_w, "image_proj.proj.0", "weight", E, E));
        TRY(KILN_BIND(ipa->weights, &ipa->mlp_b, "image_proj.proj.0", "bias", E));
        TRY(KILN_BIND(ipa->weights, &ipa->proj_w, "image_proj.proj.2", "weight", ctx, E));
        TRY(KILN_BIND(ipa->weights, &ipa->proj_b, "image_proj.proj.2", "bias", ctx));
        TRY(KILN_BIND(ipa->weights, &ipa->norm_w, "image_proj.proj.3", "weight", ctx));
        TRY(KILN_BIND(ipa->weights, &ipa->norm_b, "image_proj.proj.3", "bias", ctx));
    } else {
        TRY(KILN_BIND(ipa->weights, &ipa->proj_w, "image_proj.proj", "weight", ipa->tokens * ctx, ipa->embed_dim));
        TRY(KILN_BIND(ipa->weights, &ipa->proj_b, "image_proj.proj", "bias", ipa->tokens * ctx));
        TRY(KILN_BIND(ipa->weights, &ipa->norm_w, "image_proj.norm", "weight", ctx));
        TRY(KILN_BIND(ipa->weights, &ipa->norm_b, "image_proj.norm", "bias", ctx));
    }
    return bind_layers(ipa, unet, path);
}

kiln_status kiln_ip_adapter_open(const char *path, const kiln_unet *unet, kiln_backend *be, kiln_ip_adapter **out)
{
    *out = NULL;
    kiln_ip_adapter *ipa = calloc(1, sizeof *ipa);
    if (!ipa) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    kiln_status st = kiln_checkpoint_open_ip_adapter(path, &ipa->checkpoint);
    if (st == KILN_OK) st = bind(ipa, unet, be, path);
    if (st != KILN_OK) {
        kiln_ip_adapter_free(ipa);
        return st;
    }
    *out = ipa;
    return KILN_OK;
}

static kiln_status bind_flux(kiln_ip_adapter *ipa, const kiln_flux *flux, kiln_backend *be, const char *path)
{
    kiln_ip_adapter_info info;
    TRY(kiln_ip_adapter_inspect(ipa->checkpoint, &info));
    if (!info.flux)
        return kiln_fail(KILN_ERR_MODEL, "%s: an IP-Adapter for a UNet, not XLabs' for Flux (" XLABS_PROJ ".*)", path);
    const int ctx = flux->context_dim, D = flux->hidden, n = flux->ndouble;
    if (info.context_dim != ctx || info.cross_attentions != n)
        return kiln_fail(KILN_ERR_MODEL, "%s: an IP-Adapter making %d-wide tokens for %d double blocks; this Flux "
                         "transformer reads %d-wide T5 rows in %d", path, info.context_dim, info.cross_attentions, ctx,
                         n);
    *ipa = (kiln_ip_adapter){.checkpoint = ipa->checkpoint, .projection = KILN_IP_PLAIN, .flux = true,
                             .embed_dim = info.embed_dim, .tokens = info.tokens, .context_dim = ctx, .nrows = n};
    ipa->k_w = calloc((size_t)n, sizeof *ipa->k_w);
    ipa->v_w = calloc((size_t)n, sizeof *ipa->v_w);
    ipa->k_b = calloc((size_t)n, sizeof *ipa->k_b);
    ipa->v_b = calloc((size_t)n, sizeof *ipa->v_b);
    if (!ipa->k_w || !ipa->v_w || !ipa->k_b || !ipa->v_b)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    TRY(kiln_weights_create(be, ipa->checkpoint, &ipa->weights));
    kiln_weights *w = ipa->weights;
    TRY(KILN_BIND(w, &ipa->proj_w, XLABS_PROJ ".proj", "weight", ipa->tokens * ctx, ipa->embed_dim));
    TRY(KILN_BIND(w, &ipa->proj_b, XLABS_PROJ ".proj", "bias", ipa->tokens * ctx));
    TRY(KILN_BIND(w, &ipa->norm_w, XLABS_PROJ ".norm", "weight", ctx));
    TRY(KILN_BIND(w, &ipa->norm_b, XLABS_PROJ ".norm", "bias", ctx));
    char prefix[128];
    for (int i = 0; i < n; i++) {
        snprintf(prefix, sizeof prefix, XLABS_KV, i, 'k');
        TRY(kiln_dit_bind_linear(w, "", prefix, D, ctx, &ipa->k_w[i], &ipa->k_b[i]));
        snprintf(prefix, sizeof prefix, XLABS_KV, i, 'v');
        TRY(kiln_dit_bind_linear(w, "", prefix, D, ctx, &ipa->v_w[i], &ipa->v_b[i]));
    }
    return KILN_OK;
}

kiln_status kiln_flux_ip_adapter_open(const char *path, const kiln_flux *flux, kiln_backend *be,
                                      kiln_ip_adapter **out)
{
    *out = NULL;
    kiln_ip_adapter *ipa = calloc(1, sizeof *ipa);
    if (!ipa) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    kiln_status st = kiln_checkpoint_open_ip_adapter(path, &ipa->checkpoint);
    if (st == KILN_OK) st = bind_flux(ipa, flux, be, path);
    if (st != KILN_OK) {
        kiln_ip_adapter_free(ipa);
        return st;
    }
    *out = ipa;
    return KILN_OK;
}

void kiln_ip_adapter_free(kiln_ip_adapter *ipa)
{
    if (!ipa) return;
    free(ipa->k_w);
    free(ipa->v_w);
    free(ipa->k_b);
    free(ipa->v_b);
    kiln_weights_free(ipa->weights);
    kiln_checkpoint_close(ipa->checkpoint);
    free(ipa);
}

typedef struct tokens_job {
    const kiln_ip_adapter *ipa;
    const float *embeds; /* (rows,n,E) */
    int rows, n;
    float *tokens;       /* (rows,Ti,ctx) */
} tokens_job;

// x (B,N,H) the picture's tokens, *q (B,Ti,H) the queries -> *q + attention to
// [x, q] (each normed first) -> + feed-forward
static kiln_status resampler_layer(kiln_graph *g, const ip_resampler *r, const ip_resampler_layer *l, const tensor *x,
                                   tensor **q)
{
    tensor *xn, *qn, *kv_in, *qq, *k, *v, *o, *d, *n, *h, *a;
    TRY(nn_layer_norm(g, x, l->norm_x_w, l->norm_x_b, 1e-5f, &xn));
    TRY(nn_layer_norm(g, *q, l->norm_q_w, l->norm_q_b, 1e-5f, &qn));
    TRY(nn_concat_tokens(g, xn, qn, &kv_in));
    nn_drop(g, &xn);
    TRY(nn_linear(g, qn, l->q_w, NULL, &qq));
    nn_drop(g, &qn);
    TRY(nn_linear(g, kv_in, l->k_w, NULL, &k));
    TRY(nn_linear(g, kv_in, l->v_w, NULL, &v));
    nn_drop(g, &kv_in);
    TRY(nn_attention(g, qq, k, v, r->heads, false, &o));
    nn_drop(g, &qq);
    nn_drop(g, &k);
    nn_drop(g, &v);
    TRY(nn_linear(g, o, l->out_w, NULL, &d));
    nn_drop(g, &o);
    TRY(nn_add_into(g, q, d));

    TRY(nn_layer_norm(g, *q, l->ff_norm_w, l->ff_norm_b, 1e-5f, &n));
    TRY(nn_linear(g, n, l->ff_in_w, NULL, &h));
    nn_drop(g, &n);
    TRY(nn_gelu(g, h, &a));
    nn_drop(g, &h);
    TRY(nn_linear(g, a, l->ff_out_w, NULL, &d));
    nn_drop(g, &a);
    return nn_add_into(g, q, d);
}

// e (B,N,E) -> *y (B,Ti,ctx) through the Resampler
static kiln_status resample(kiln_graph *g, const ip_resampler *r, const tensor *e, int tokens, tensor **y)
{
    const int64_t B = e->shape[0];
    tensor *x, *ids, *q, *p;
    TRY(nn_linear(g, e, r->proj_in_w, r->proj_in_b, &x));
    /* the learned queries, repeated for every picture: looked up as rows of a (Ti,H) table */
    int32_t *rows = malloc((size_t)(B * tokens) * sizeof *rows);
    if (!rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    for (int64_t i = 0; i < B * tokens; i++) rows[i] = (int32_t)(i % tokens);
    kiln_status st = kiln_graph_input(g, &ids, KILN_I32, 1, (int64_t[]){B * tokens}, rows);
    free(rows);
    TRY(st);
    tensor table = *r->latents;
    table.ndim = 2, table.shape[0] = tokens, table.shape[1] = r->hidden;
    TRY(nn_embedding(g, ids, &table, &q));
    nn_drop(g, &ids);
    q->ndim = 3, q->shape[0] = B, q->shape[1] = tokens, q->shape[2] = r->hidden;
    for (int i = 0; i < r->nlayers; i++) TRY(resampler_layer(g, r, &r->layer[i], x, &q));
    nn_drop(g, &x);
    TRY(nn_linear(g, q, r->proj_out_w, r->proj_out_b, &p));
    nn_drop(g, &q);
    TRY(nn_layer_norm(g, p, r->norm_out_w, r->norm_out_b, 1e-5f, y));
    nn_drop(g, &p);
    return KILN_OK;
}

static kiln_status tokens_fn(kiln_graph *g, void *ctx)
{
    tokens_job *j = ctx;
    const kiln_ip_adapter *ipa = j->ipa;
    tensor *e, *p, *n;
    TRY(kiln_graph_input(g, &e, KILN_F32, 3, (int64_t[]){j->rows, j->n, ipa->embed_dim}, j->embeds));
    if (ipa->projection == KILN_IP_PLUS) {
        TRY(resample(g, &ipa->resampler, e, ipa->tokens, &n));
    } else if (ipa->projection == KILN_IP_FULL) { /* token by token */
        tensor *h, *a;
        TRY(nn_linear(g, e, ipa->mlp_w, ipa->mlp_b, &h));
        TRY(nn_gelu(g, h, &a));
        nn_drop(g, &h);
        TRY(nn_linear(g, a, ipa->proj_w, ipa->proj_b, &p));
        nn_drop(g, &a);
        TRY(nn_layer_norm(g, p, ipa->norm_w, ipa->norm_b, 1e-5f, &n));
        nn_drop(g, &p);
    } else {
        TRY(nn_linear(g, e, ipa->proj_w, ipa->proj_b, &p));
        p->ndim = 3, p->shape[1] = ipa->tokens, p->shape[2] = ipa->context_dim; /* (rows,Ti*ctx) as (rows,Ti,ctx) */
        TRY(nn_layer_norm(g, p, ipa->norm_w, ipa->norm_b, 1e-5f, &n));
        nn_drop(g, &p);
    }
    nn_drop(g, &e);
    TRY(kiln_graph_output(g, n, j->tokens, kiln_tensor_nbytes(n)));
    nn_drop(g, &n);
    return KILN_OK;
}

kiln_status kiln_ip_adapter_tokens(const kiln_ip_adapter *ipa, const float *embeds, int rows, int n, float *tokens)
{
    if (ipa->projection == KILN_IP_PLAIN && n != 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ip-adapter: a plain IP-Adapter reads one image embed a picture");
    if (ipa->projection == KILN_IP_FULL && n != ipa->tokens)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ip-adapter: full-face makes a token of each of %d hidden states (a "
                         "224-pixel tower's); the tower gave %d", ipa->tokens, n);
    tokens_job j = {ipa, embeds, rows, n, tokens};
    return kiln_graph_run_once(kiln_weights_backend(ipa->weights), tokens_fn, &j);
}
