#include "clip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tokenizer.h"

#define PREFIX "cond_stage_model.transformer.text_model"

static const clip_config clip_vit_l14 = {"clip-vit-l14", "sd1", 49408, 77, 768, 12, 12, 3072, false, 1, KILN_CLIP_EOS};
static const clip_config clip_tiny_test = {"clip-tiny-test", "sd1", 49408, 77, 32, 2, 4, 37, false, 1, KILN_CLIP_EOS};
static const clip_config clip_kiln_shapes = {"clip-kiln-shapes", "sd1", 49408, 77, 64, 2, 4, 256, false, 1, KILN_CLIP_EOS};
static const clip_config openclip_vit_h14 = {"openclip-vit-h14", "sd2", 49408, 77, 1024, 24, 16, 4096, true, 2, 0};
// tests/data/sd2's tiny SD 2.x text tower
static const clip_config openclip_tiny_test = {"openclip-tiny-test", "sd2", 49408, 77, 32, 3, 4, 64, true, 2, 0};

const clip_config *const kiln_clip_configs[] = {&clip_vit_l14, &clip_tiny_test, &clip_kiln_shapes, &openclip_vit_h14,
                                                &openclip_tiny_test, NULL};

static bool has_layer(const kiln_checkpoint *ck, int i)
{
    char name[256];
    snprintf(name, sizeof name, PREFIX ".encoder.layers.%d.layer_norm1.weight", i);
    return kiln_checkpoint_find(ck, name) != NULL;
}

static int count_layers(const kiln_checkpoint *ck)
{
    int n = 0;
    while (n < CLIP_MAX_LAYERS && has_layer(ck, n)) n++;
    return n;
}

const clip_config *kiln_clip_detect(const kiln_checkpoint *ck, const char *family)
{
    const kiln_st_tensor *tok = kiln_checkpoint_find(ck, PREFIX ".embeddings.token_embedding.weight");
    const kiln_st_tensor *fc1 = kiln_checkpoint_find(ck, PREFIX ".encoder.layers.0.mlp.fc1.weight");
    if (!tok || !fc1 || tok->ndim != 2 || fc1->ndim != 2) return NULL;
    int layers = count_layers(ck);
    for (int c = 0; kiln_clip_configs[c]; c++) {
        const clip_config *cfg = kiln_clip_configs[c];
        /* layers past the one the model reads may be missing (diffusers drops them) */
        bool complete = layers == cfg->layers || (layers < cfg->layers && layers >= cfg->layers - cfg->default_skip + 1);
        if (strcmp(cfg->family, family) == 0 && tok->shape[0] == cfg->vocab && tok->shape[1] == cfg->hidden &&
            fc1->shape[0] == cfg->mlp && complete)
            return cfg;
    }
    return NULL;
}

static kiln_status bind_layer(kiln_weights *w, const clip_config *cfg, int i, clip_layer_weights *l)
{
    char p[256];
    int D = cfg->hidden, F = cfg->mlp;
    snprintf(p, sizeof p, PREFIX ".encoder.layers.%d", i);
    TRY(KILN_BIND(w, &l->ln1_w, p, "layer_norm1.weight", D));
    TRY(KILN_BIND(w, &l->ln1_b, p, "layer_norm1.bias", D));
    TRY(KILN_BIND(w, &l->q_w, p, "self_attn.q_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->q_b, p, "self_attn.q_proj.bias", D));
    TRY(KILN_BIND(w, &l->k_w, p, "self_attn.k_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->k_b, p, "self_attn.k_proj.bias", D));
    TRY(KILN_BIND(w, &l->v_w, p, "self_attn.v_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->v_b, p, "self_attn.v_proj.bias", D));
    TRY(KILN_BIND(w, &l->o_w, p, "self_attn.out_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->o_b, p, "self_attn.out_proj.bias", D));
    TRY(KILN_BIND(w, &l->ln2_w, p, "layer_norm2.weight", D));
    TRY(KILN_BIND(w, &l->ln2_b, p, "layer_norm2.bias", D));
    TRY(KILN_BIND(w, &l->fc1_w, p, "mlp.fc1.weight", F, D));
    TRY(KILN_BIND(w, &l->fc1_b, p, "mlp.fc1.bias", F));
    TRY(KILN_BIND(w, &l->fc2_w, p, "mlp.fc2.weight", D, F));
    TRY(KILN_BIND(w, &l->fc2_b, p, "mlp.fc2.bias", D));
    return KILN_OK;
}

kiln_status kiln_clip_bind(kiln_weights *w, const clip_config *cfg, kiln_clip *clip)
{
    *clip = (kiln_clip){.config = cfg, .nlayers = count_layers(kiln_weights_checkpoint(w))};
    if (cfg->layers > CLIP_MAX_LAYERS) return kiln_fail(KILN_ERR_UNSUPPORTED, "clip: %d layers", cfg->layers);
    if (clip->nlayers > cfg->layers) clip->nlayers = cfg->layers;
    TRY(KILN_BIND(w, &clip->token_embedding, PREFIX, "embeddings.token_embedding.weight", cfg->vocab, cfg->hidden));
    TRY(KILN_BIND(w, &clip->position_embedding, PREFIX, "embeddings.position_embedding.weight", cfg->positions,
                  cfg->hidden));
    for (int i = 0; i < clip->nlayers; i++) TRY(bind_layer(w, cfg, i, &clip->layer[i]));
    TRY(KILN_BIND(w, &clip->final_ln_w, PREFIX, "final_layer_norm.weight", cfg->hidden));
    TRY(KILN_BIND(w, &clip->final_ln_b, PREFIX, "final_layer_norm.bias", cfg->hidden));
    return KILN_OK;
}

/* *x = *x + delta, releasing both inputs. */
static kiln_status residual(kiln_graph *g, tensor **x, tensor *delta)
{
    tensor *sum;
    TRY(nn_add(g, *x, delta, &sum));
    kiln_graph_release(g, delta);
    nn_drop(g, x);
    *x = sum;
    return KILN_OK;
}

// x (B,T,D) -> x + attention(ln1 x) -> + mlp(ln2 x), causal as CLIP's text tower is
static kiln_status encoder_layer(kiln_graph *g, const clip_config *cfg, const clip_layer_weights *l, tensor **x)
{
    tensor *n, *q, *k, *v, *o, *d, *h, *a;
    TRY(nn_layer_norm(g, *x, l->ln1_w, l->ln1_b, 1e-5f, &n));
    TRY(nn_linear(g, n, l->q_w, l->q_b, &q));
    TRY(nn_linear(g, n, l->k_w, l->k_b, &k));
    TRY(nn_linear(g, n, l->v_w, l->v_b, &v));
    nn_drop(g, &n);
    TRY(nn_attention(g, q, k, v, cfg->heads, true, &o));
    nn_drop(g, &q);
    nn_drop(g, &k);
    nn_drop(g, &v);
    TRY(nn_linear(g, o, l->o_w, l->o_b, &d));
    nn_drop(g, &o);
    TRY(residual(g, x, d));

    TRY(nn_layer_norm(g, *x, l->ln2_w, l->ln2_b, 1e-5f, &n));
    TRY(nn_linear(g, n, l->fc1_w, l->fc1_b, &h)); // (B,T,F)
    nn_drop(g, &n);
    TRY(cfg->gelu ? nn_gelu(g, h, &a) : nn_quick_gelu(g, h, &a));
    nn_drop(g, &h);
    TRY(nn_linear(g, a, l->fc2_w, l->fc2_b, &d));
    nn_drop(g, &a);
    return residual(g, x, d);
}

kiln_status kiln_clip_forward(kiln_graph *g, const kiln_clip *clip, const tensor *ids, int skip, tensor **out)
{
    const clip_config *cfg = clip->config;
    int64_t B = ids->shape[0], T = ids->shape[1];
    if (skip == 0) skip = cfg->default_skip;
    if (skip < 1 || skip > cfg->layers)
        return kiln_fail(KILN_ERR_INVALID_ARG, "--clip-skip %d: this text encoder has %d layers", skip, cfg->layers);
    const int run = cfg->layers - (skip - 1);
    if (run > clip->nlayers)
        return kiln_fail(KILN_ERR_INVALID_ARG,
                         "--clip-skip %d: this checkpoint's text encoder has %d of its %d layers (a diffusers folder "
                         "leaves out those past the one the model reads)",
                         skip, clip->nlayers, cfg->layers);
    if (T > cfg->positions)
        return kiln_fail(KILN_ERR_INVALID_ARG, "clip: %lld tokens, at most %d", (long long)T, cfg->positions);

    /* positions 0..T-1 for every sequence of the batch, looked up like tokens */
    int32_t *pos_ids = malloc((size_t)(B * T) * sizeof *pos_ids);
    if (!pos_ids) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "clip: out of host memory");
    for (int64_t i = 0; i < B * T; i++) pos_ids[i] = (int32_t)(i % T);
    tensor *pos_idx, *tok, *pos, *sum, *x;
    kiln_status st = kiln_graph_input(g, &pos_idx, KILN_I32, 1, (int64_t[]){B * T}, pos_ids);
    free(pos_ids);
    TRY(st);
    TRY(nn_embedding(g, ids, clip->token_embedding, &tok));
    TRY(nn_embedding(g, pos_idx, clip->position_embedding, &pos));
    nn_drop(g, &pos_idx);
    TRY(nn_add(g, tok, pos, &sum));
    nn_drop(g, &tok);
    nn_drop(g, &pos);
    x = sum;
    x->ndim = 3; /* (B*T, D) viewed as (B, T, D) */
    x->shape[0] = B;
    x->shape[1] = T;
    x->shape[2] = cfg->hidden;

    for (int i = 0; i < run; i++) TRY(encoder_layer(g, cfg, &clip->layer[i], &x));
    TRY(nn_layer_norm(g, x, clip->final_ln_w, clip->final_ln_b, 1e-5f, out));
    nn_drop(g, &x);
    return KILN_OK;
}
