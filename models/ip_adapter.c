#include "ip_adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

/* the other image projections kiln does not run, by a tensor each has */
static const struct {
    const char *tensor, *variant;
} other_kinds[] = {
    {"image_proj.latents", "IP-Adapter Plus (a Resampler image projection)"},
    {"image_proj.proj.0.weight", "IP-Adapter full-face or FaceID (an MLP image projection)"},
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

kiln_status kiln_ip_adapter_inspect(const kiln_checkpoint *ck, kiln_ip_adapter_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    for (size_t i = 0; i < sizeof other_kinds / sizeof other_kinds[0]; i++)
        if (kiln_checkpoint_find(ck, other_kinds[i].tensor))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: an %s, which kiln does not run yet (it runs the plain "
                             "IP-Adapter: 'image_proj.proj.weight')", path, other_kinds[i].variant);
    const kiln_st_tensor *proj = kiln_checkpoint_find(ck, "image_proj.proj.weight");
    const kiln_st_tensor *norm = kiln_checkpoint_find(ck, "image_proj.norm.weight");
    if (!proj || !norm || proj->ndim != 2 || norm->ndim != 1 || norm->shape[0] < 1 ||
        proj->shape[0] % norm->shape[0] != 0)
        return kiln_fail(KILN_ERR_MODEL, "%s: no tensors 'image_proj.proj.weight' and 'image_proj.norm.weight': not "
                         "an IP-Adapter in the .safetensors layout (image_proj.*, ip_adapter.*)", path);
    *info = (kiln_ip_adapter_info){.embed_dim = (int)proj->shape[1], .context_dim = (int)norm->shape[0],
                                   .tokens = (int)(proj->shape[0] / norm->shape[0])};
    char name[64];
    for (;; info->cross_attentions++) {
        snprintf(name, sizeof name, "ip_adapter.%d.to_k_ip.weight", 2 * info->cross_attentions + 1);
        if (!kiln_checkpoint_find(ck, name)) return KILN_OK;
    }
}

static kiln_status bind(kiln_ip_adapter *ipa, const kiln_unet *unet, kiln_backend *be, const char *path)
{
    const kiln_checkpoint *ck = ipa->checkpoint;
    kiln_ip_adapter_info info;
    TRY(kiln_ip_adapter_inspect(ck, &info));
    const int ctx = unet->config->context_dim;
    if (info.context_dim != ctx)
        return kiln_fail(KILN_ERR_MODEL, "%s: an IP-Adapter making %d-wide tokens, for another base model than "
                         "this one (%s, context %d)", path, info.context_dim, unet->config->name, ctx);
    ipa->context_dim = ctx;
    ipa->tokens = info.tokens;
    ipa->embed_dim = info.embed_dim;
    ipa->nrows = unet->config->nlayers;
    const size_t slots = (size_t)ipa->nrows * KILN_MAX_TRANSFORMER_DEPTH;
    ipa->k_w = calloc(slots, sizeof *ipa->k_w);
    ipa->v_w = calloc(slots, sizeof *ipa->v_w);
    if (!ipa->k_w || !ipa->v_w) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    TRY(kiln_weights_create(be, ck, &ipa->weights));
    TRY(KILN_BIND(ipa->weights, &ipa->proj_w, "image_proj.proj", "weight", ipa->tokens * ctx, ipa->embed_dim));
    TRY(KILN_BIND(ipa->weights, &ipa->proj_b, "image_proj.proj", "bias", ipa->tokens * ctx));
    TRY(KILN_BIND(ipa->weights, &ipa->norm_w, "image_proj.norm", "weight", ctx));
    TRY(KILN_BIND(ipa->weights, &ipa->norm_b, "image_proj.norm", "bias", ctx));
    return bind_layers(ipa, unet, path);
}

kiln_status kiln_ip_adapter_load(const char *path, const kiln_unet *unet, kiln_backend *be, kiln_ip_adapter **out)
{
    *out = NULL;
    kiln_ip_adapter *ipa = calloc(1, sizeof *ipa);
    if (!ipa) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    kiln_status st = kiln_checkpoint_open(path, &ipa->checkpoint);
    if (st == KILN_OK) st = bind(ipa, unet, be, path);
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
    kiln_weights_free(ipa->weights);
    kiln_checkpoint_close(ipa->checkpoint);
    free(ipa);
}

typedef struct tokens_job {
    const kiln_ip_adapter *ipa;
    const float *embeds; /* (rows,E) */
    int rows;
    float *tokens;       /* (rows,Ti,ctx) */
} tokens_job;

static kiln_status tokens_fn(kiln_graph *g, void *ctx)
{
    tokens_job *j = ctx;
    const kiln_ip_adapter *ipa = j->ipa;
    tensor *e, *p, *n;
    TRY(kiln_graph_input(g, &e, KILN_F32, 2, (int64_t[]){j->rows, ipa->embed_dim}, j->embeds));
    TRY(nn_linear(g, e, ipa->proj_w, ipa->proj_b, &p));
    nn_drop(g, &e);
    p->ndim = 3, p->shape[1] = ipa->tokens, p->shape[2] = ipa->context_dim; /* (rows,Ti*ctx) as (rows,Ti,ctx) */
    TRY(nn_layer_norm(g, p, ipa->norm_w, ipa->norm_b, 1e-5f, &n));
    nn_drop(g, &p);
    TRY(kiln_graph_output(g, n, j->tokens, kiln_tensor_nbytes(n)));
    nn_drop(g, &n);
    return KILN_OK;
}

kiln_status kiln_ip_adapter_tokens(const kiln_ip_adapter *ipa, const float *image_embeds, int rows, float *tokens)
{
    tokens_job j = {ipa, image_embeds, rows, tokens};
    return kiln_graph_run_once(kiln_weights_backend(ipa->weights), tokens_fn, &j);
}
