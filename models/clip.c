#include "clip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tokenizer.h"

static const clip_config clip_vit_l14 = {"clip-vit-l14", 49408, 77, 768, 12, 12, 3072, false};
static const clip_config clip_tiny_test = {"clip-tiny-test", 49408, 77, 32, 2, 4, 37, false};
static const clip_config clip_kiln_shapes = {"clip-kiln-shapes", 49408, 77, 64, 2, 4, 256, false};
static const clip_config openclip_vit_h14 = {"openclip-vit-h14", 49408, 77, 1024, 24, 16, 4096, true};
static const clip_config openclip_vit_bigg14 = {"openclip-vit-bigg14", 49408, 77, 1280, 32, 20, 5120, true};
// the tiny SD 2.x and SDXL models' OpenCLIP towers (tests/data/sd2, sdxl)
static const clip_config openclip_tiny_test = {"openclip-tiny-test", 49408, 77, 32, 3, 4, 64, true};

const clip_config *const kiln_clip_configs[] = {&clip_vit_l14,        &clip_tiny_test,     &clip_kiln_shapes,
                                                &openclip_vit_h14,    &openclip_vit_bigg14, &openclip_tiny_test,
                                                NULL};

#define SD_ROOT "cond_stage_model.transformer.text_model"

const clip_reading kiln_clip_sd1 = {.root = SD_ROOT, .default_skip = 1, .final_norm = true, .pad_id = KILN_CLIP_EOS, .embedding_key = "clip_l"};
const clip_reading kiln_clip_sd2 = {.root = SD_ROOT, .gelu = true, .default_skip = 2, .final_norm = true, .pad_id = 0,
                                    .embedding_key = "clip_h"};
/* ComfyUI's SDXLClipModel: both towers at layer -2 without the final norm */
const clip_reading kiln_clip_sdxl_l = {.root = "conditioner.embedders.0.transformer.text_model", .default_skip = 2,
                                       .pad_id = KILN_CLIP_EOS, .embedding_key = "clip_l"};
const clip_reading kiln_clip_sdxl_g = {.root = "conditioner.embedders.1.transformer.text_model",
                                       .projection = "conditioner.embedders.1.transformer.text_projection",
                                       .open_clip_projection = "conditioner.embedders.1.model.text_projection",
                                       .gelu = true, .default_skip = 2, .pad_id = 0, .embedding_key = "clip_g"};
/* the refiner's only tower, bigG, is its first embedder */
const clip_reading kiln_clip_sdxl_refiner = {.root = "conditioner.embedders.0.transformer.text_model",
                                             .projection = "conditioner.embedders.0.transformer.text_projection",
                                             .open_clip_projection = "conditioner.embedders.0.model.text_projection",
                                             .gelu = true, .default_skip = 2, .pad_id = 0, .embedding_key = "clip_g"};

/* Flux reads CLIP-L only for its pooled output: the last layer through the
 * final norm at EOS, unprojected (ComfyUI's return_projected_pooled=False) */
const clip_reading kiln_clip_flux = {.root = KILN_CLIP_L_ROOT ".text_model", .pooled = true,
                                     .default_skip = 1, .final_norm = true, .pad_id = KILN_CLIP_EOS, .embedding_key = "clip_l"};

/* SD3's towers (ComfyUI's SD3ClipModel): both at the penultimate layer as
 * it is; CLIP-L's pooled output unprojected, bigG's projected */
const clip_reading kiln_clip_sd3_l = {.root = KILN_CLIP_L_ROOT ".text_model", .pooled = true, .default_skip = 2,
                                      .pad_id = KILN_CLIP_EOS, .embedding_key = "clip_l"};
const clip_reading kiln_clip_sd3_g = {.root = KILN_CLIP_G_ROOT ".text_model",
                                      .projection = KILN_CLIP_G_ROOT ".text_projection", .gelu = true,
                                      .default_skip = 2, .pad_id = 0, .embedding_key = "clip_g"};

static bool has_layer(const kiln_checkpoint *ck, const char *root, int i)
{
    char name[256];
    snprintf(name, sizeof name, "%s.encoder.layers.%d.layer_norm1.weight", root, i);
    return kiln_checkpoint_find(ck, name) != NULL;
}

static int count_layers(const kiln_checkpoint *ck, const char *root)
{
    int n = 0;
    while (n < CLIP_MAX_LAYERS && has_layer(ck, root, n)) n++;
    return n;
}

const clip_config *kiln_clip_detect(const kiln_checkpoint *ck, const clip_reading *reading)
{
    const kiln_st_tensor *tok = kiln_checkpoint_find_at(ck, reading->root, "embeddings.token_embedding.weight");
    const kiln_st_tensor *fc1 = kiln_checkpoint_find_at(ck, reading->root, "encoder.layers.0.mlp.fc1.weight");
    if (!tok || !fc1 || tok->ndim != 2 || fc1->ndim != 2) return NULL;
    int layers = count_layers(ck, reading->root);
    for (int c = 0; kiln_clip_configs[c]; c++) {
        const clip_config *cfg = kiln_clip_configs[c];
        /* layers past the one the model reads may be missing (diffusers drops them) */
        int needed = cfg->layers - reading->default_skip + 1;
        bool complete = layers == cfg->layers || (layers < cfg->layers && layers >= needed);
        if (cfg->gelu == reading->gelu && tok->shape[0] == cfg->vocab && tok->shape[1] == cfg->hidden &&
            fc1->shape[0] == cfg->mlp && complete)
            return cfg;
    }
    return NULL;
}

kiln_status kiln_clip_layer_bind(kiln_weights *w, const char *root, int i, int D, int F, clip_layer_weights *l)
{
    char p[256];
    snprintf(p, sizeof p, "%s.encoder.layers.%d", root, i);
    TRY(KILN_BIND(w, &l->ln1_w, p, "layer_norm1.weight", D));
    TRY(KILN_BIND(w, &l->ln1_b, p, "layer_norm1.bias", D));
    TRY(kiln_weights_bind_linear(w, &l->q_w, p, "self_attn.q_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->q_b, p, "self_attn.q_proj.bias", D));
    TRY(kiln_weights_bind_linear(w, &l->k_w, p, "self_attn.k_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->k_b, p, "self_attn.k_proj.bias", D));
    TRY(kiln_weights_bind_linear(w, &l->v_w, p, "self_attn.v_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->v_b, p, "self_attn.v_proj.bias", D));
    TRY(kiln_weights_bind_linear(w, &l->o_w, p, "self_attn.out_proj.weight", D, D));
    TRY(KILN_BIND(w, &l->o_b, p, "self_attn.out_proj.bias", D));
    TRY(KILN_BIND(w, &l->ln2_w, p, "layer_norm2.weight", D));
    TRY(KILN_BIND(w, &l->ln2_b, p, "layer_norm2.bias", D));
    TRY(kiln_weights_bind_linear(w, &l->fc1_w, p, "mlp.fc1.weight", F, D));
    TRY(KILN_BIND(w, &l->fc1_b, p, "mlp.fc1.bias", F));
    TRY(kiln_weights_bind_linear(w, &l->fc2_w, p, "mlp.fc2.weight", D, F));
    TRY(KILN_BIND(w, &l->fc2_b, p, "mlp.fc2.bias", D));
    return KILN_OK;
}

/* The pooled output's projection, read on the host: (P,D) under
 * transformers' name or (D,P) under OpenCLIP's. */
static kiln_status find_projection(const kiln_checkpoint *ck, const clip_reading *reading, kiln_clip *clip)
{
    if (reading->pooled) {
        clip->pooled_dim = clip->config->hidden;
        return KILN_OK;
    }
    if (!reading->projection) return KILN_OK;
    char name[256];
    snprintf(name, sizeof name, "%s.weight", reading->projection);
    const kiln_st_tensor *p = kiln_checkpoint_find(ck, name);
    if (!p && reading->open_clip_projection && (p = kiln_checkpoint_find(ck, reading->open_clip_projection)))
        clip->projection_open_clip = true;
    if (!p)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' is missing", kiln_checkpoint_path(ck),
                         reading->open_clip_projection ? reading->open_clip_projection : name);
    const int D = clip->config->hidden;
    if (p->ndim != 2 || p->shape[clip->projection_open_clip ? 0 : 1] != D)
        return kiln_fail(KILN_ERR_MODEL, "%s: the text projection '%s' is not (%d,P) as OpenCLIP's or (P,%d)",
                         kiln_checkpoint_path(ck), p->name, D, D);
    if (p->dtype != KILN_F32 && p->dtype != KILN_F16 && p->dtype != KILN_BF16)
        return kiln_fail(KILN_ERR_MODEL, "%s: the text projection '%s' is %s", kiln_checkpoint_path(ck), p->name,
                         kiln_dtype_name(p->dtype));
    clip->projection = p;
    clip->pooled_dim = (int)(clip->projection_open_clip ? p->shape[1] : p->shape[0]);
    return KILN_OK;
}

kiln_status kiln_clip_bind(kiln_weights *w, const clip_config *cfg, const clip_reading *reading, kiln_clip *clip)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *root = reading->root;
    *clip = (kiln_clip){.config = cfg, .reading = reading, .nlayers = count_layers(ck, root)};
    if (cfg->layers > CLIP_MAX_LAYERS) return kiln_fail(KILN_ERR_UNSUPPORTED, "clip: %d layers", cfg->layers);
    if (clip->nlayers > cfg->layers) clip->nlayers = cfg->layers;
    TRY(KILN_BIND(w, &clip->token_embedding, root, "embeddings.token_embedding.weight", cfg->vocab, cfg->hidden));
    TRY(KILN_BIND(w, &clip->position_embedding, root, "embeddings.position_embedding.weight", cfg->positions,
                  cfg->hidden));
    for (int i = 0; i < clip->nlayers; i++)
        TRY(kiln_clip_layer_bind(w, root, i, cfg->hidden, cfg->mlp, &clip->layer[i]));
    TRY(KILN_BIND(w, &clip->final_ln_w, root, "final_layer_norm.weight", cfg->hidden));
    TRY(KILN_BIND(w, &clip->final_ln_b, root, "final_layer_norm.bias", cfg->hidden));
    return find_projection(ck, reading, clip);
}

void kiln_clip_pool(const kiln_clip *clip, const int32_t *ids, const float *last, int rows, float *pooled)
{
    const int T = KILN_CLIP_CONTEXT, D = clip->config->hidden, P = clip->pooled_dim;
    const kiln_st_tensor *p = clip->projection;
    for (int r = 0; r < rows; r++) {
        int eos = 0; /* the first of the highest id, as transformers' argmax */
        for (int t = 1; t < T; t++)
            if (ids[r * T + t] > ids[r * T + eos]) eos = t;
        const float *h = last + ((size_t)r * T + eos) * D;
        if (!p) { /* unprojected */
            memcpy(pooled + (size_t)r * P, h, (size_t)D * sizeof *h);
            continue;
        }
        for (int o = 0; o < P; o++) {
            double acc = 0;
            for (int d = 0; d < D; d++) {
                size_t at = clip->projection_open_clip ? (size_t)d * P + o : (size_t)o * D + d;
                acc += (double)h[d] * kiln_load_f32(p->data, p->dtype, at);
            }
            pooled[(size_t)r * P + o] = (float)acc;
        }
    }
}

kiln_status kiln_clip_layer_forward(kiln_graph *g, const clip_layer_weights *l, int heads, clip_activation act,
                                   bool causal, tensor **x)
{
    tensor *n, *q, *k, *v, *o, *d, *h, *a;
    TRY(nn_layer_norm(g, *x, l->ln1_w, l->ln1_b, 1e-5f, &n));
    TRY(nn_linear(g, n, l->q_w, l->q_b, &q));
    TRY(nn_linear(g, n, l->k_w, l->k_b, &k));
    TRY(nn_linear(g, n, l->v_w, l->v_b, &v));
    nn_drop(g, &n);
    TRY(nn_attention(g, q, k, v, heads, causal, &o));
    nn_drop(g, &q);
    nn_drop(g, &k);
    nn_drop(g, &v);
    TRY(nn_linear(g, o, l->o_w, l->o_b, &d));
    nn_drop(g, &o);
    TRY(nn_add_into(g, x, d));

    TRY(nn_layer_norm(g, *x, l->ln2_w, l->ln2_b, 1e-5f, &n));
    TRY(nn_linear(g, n, l->fc1_w, l->fc1_b, &h)); // (B,T,F)
    nn_drop(g, &n);
    TRY(act == CLIP_GELU        ? nn_gelu(g, h, &a)
        : act == CLIP_GELU_TANH ? nn_gelu_tanh(g, h, &a)
                                : nn_quick_gelu(g, h, &a));
    nn_drop(g, &h);
    TRY(nn_linear(g, a, l->fc2_w, l->fc2_b, &d));
    nn_drop(g, &a);
    return nn_add_into(g, x, d);
}

kiln_status kiln_clip_forward(kiln_graph *g, const kiln_clip *clip, const tensor *ids,
                              const kiln_clip_vectors *vectors, int skip, tensor **out, tensor **last)
{
    const clip_config *cfg = clip->config;
    int64_t B = ids->shape[0], T = ids->shape[1];
    if (skip == 0) skip = clip->reading->default_skip;
    if (skip < 1 || skip > cfg->layers)
        return kiln_fail(KILN_ERR_INVALID_ARG, "--clip-skip %d: this text encoder has %d layers", skip, cfg->layers);
    const int run = cfg->layers - (skip - 1);
    if (run > clip->nlayers || (last && clip->nlayers < cfg->layers))
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
    if (vectors) { /* exact: a kept row times 1 plus 0, a replaced one times 0 plus its vector */
        tensor *kept, *put;
        TRY(nn_mul(g, tok, vectors->keep, &kept));
        nn_drop(g, &tok);
        TRY(nn_embedding(g, vectors->rows, vectors->table, &put));
        TRY(nn_add(g, kept, put, &tok));
        nn_drop(g, &kept);
        nn_drop(g, &put);
    }
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

    const clip_activation act = cfg->gelu ? CLIP_GELU : CLIP_QUICK_GELU;
    for (int i = 0; i < run; i++) TRY(kiln_clip_layer_forward(g, &clip->layer[i], cfg->heads, act, true, &x));
    if (!clip->reading->final_norm && !last) { /* SDXL's hidden state as it is */
        *out = x;
        return KILN_OK;
    }
    if (clip->reading->final_norm) TRY(nn_layer_norm(g, x, clip->final_ln_w, clip->final_ln_b, 1e-5f, out));
    else TRY(nn_scale(g, x, 1.0f, out)); /* a copy: x goes on through the layers below */
    if (last) {
        for (int i = run; i < cfg->layers; i++)
            TRY(kiln_clip_layer_forward(g, &clip->layer[i], cfg->heads, act, true, &x));
        TRY(nn_layer_norm(g, x, clip->final_ln_w, clip->final_ln_b, 1e-5f, last));
    }
    nn_drop(g, &x);
    return KILN_OK;
}
