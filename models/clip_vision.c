#include "clip_vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"
#include "status.h"

#define ROOT "vision_model"
#define PROJECTION "visual_projection.weight"

/* ComfyUI's clip_vision_config_vitl(_336).json, clip_vision_config_h.json, _g.json and
   clip_vision_siglip_384.json */
static const clip_vision_config vit_l14 = {"clip-vit-l14", 224, 14, 1024, 24, 16, 4096, 768, CLIP_QUICK_GELU, false};
static const clip_vision_config vit_l14_336 = {"clip-vit-l14-336", 336, 14, 1024, 24, 16, 4096, 768, CLIP_QUICK_GELU,
                                               false};
static const clip_vision_config vit_h14 = {"clip-vit-h14", 224, 14, 1280, 32, 16, 5120, 1024, CLIP_GELU, false};
static const clip_vision_config vit_bigg14 = {"clip-vit-bigg14", 224, 14, 1664, 48, 16, 8192, 1280, CLIP_GELU, false};
static const clip_vision_config siglip_384 = {"siglip-so400m-14-384", 384, 14, 1152, 27, 16, 4304, 0, CLIP_GELU_TANH,
                                              true};
// tests/data/ip_adapter's and tests/data/redux's towers
static const clip_vision_config vit_tiny_test = {"clip-vit-tiny-test", 224, 14, 32, 3, 4, 64, 24, CLIP_GELU, false};
static const clip_vision_config siglip_tiny_test = {"siglip-tiny-test", 56, 14, 32, 2, 4, 64, 0, CLIP_GELU_TANH, true};

const clip_vision_config *const kiln_clip_vision_configs[] = {&vit_l14,    &vit_l14_336,   &vit_h14,          &vit_bigg14,
                                                              &siglip_384, &vit_tiny_test, &siglip_tiny_test, NULL};

int kiln_clip_vision_tokens(const clip_vision_config *cfg)
{
    int side = cfg->image_size / cfg->patch;
    return side * side + !cfg->siglip;
}

static int count_layers(const kiln_checkpoint *ck)
{
    char name[128];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, ROOT ".encoder.layers.%d.layer_norm1.weight", n);
        if (!kiln_checkpoint_find(ck, name)) return n;
    }
}

static const clip_vision_config *detect(const kiln_checkpoint *ck)
{
    const kiln_st_tensor *patch = kiln_checkpoint_find(ck, ROOT ".embeddings.patch_embedding.weight");
    const kiln_st_tensor *pos = kiln_checkpoint_find(ck, ROOT ".embeddings.position_embedding.weight");
    const kiln_st_tensor *fc1 = kiln_checkpoint_find(ck, ROOT ".encoder.layers.0.mlp.fc1.weight");
    const kiln_st_tensor *proj = kiln_checkpoint_find(ck, PROJECTION);
    /* SigLIP's: no class token, a bias on the patches, no projection */
    const bool siglip = !kiln_checkpoint_find(ck, ROOT ".embeddings.class_embedding") &&
                        kiln_checkpoint_find(ck, ROOT ".embeddings.patch_embedding.bias");
    if (!patch || !pos || !fc1 || (!siglip && (!proj || proj->ndim != 2)) || patch->ndim != 4 || pos->ndim != 2 ||
        fc1->ndim != 2)
        return NULL;
    int layers = count_layers(ck);
    for (int c = 0; kiln_clip_vision_configs[c]; c++) {
        const clip_vision_config *cfg = kiln_clip_vision_configs[c];
        if (cfg->siglip == siglip && patch->shape[0] == cfg->hidden && patch->shape[2] == cfg->patch &&
            pos->shape[0] == kiln_clip_vision_tokens(cfg) && fc1->shape[0] == cfg->mlp && layers == cfg->layers &&
            (siglip || proj->shape[0] == cfg->projection))
            return cfg;
    }
    return NULL;
}

static kiln_status bind(kiln_clip_vision *cv)
{
    const clip_vision_config *cfg = cv->config;
    kiln_weights *w = cv->weights;
    const int D = cfg->hidden, p = cfg->patch;
    TRY(KILN_BIND(w, &cv->patch_embedding, ROOT, "embeddings.patch_embedding.weight", D, 3, p, p));
    TRY(KILN_BIND(w, &cv->position_embedding, ROOT, "embeddings.position_embedding.weight",
                  kiln_clip_vision_tokens(cfg), D));
    for (int i = 0; i < cfg->layers; i++) TRY(kiln_clip_layer_bind(w, ROOT, i, D, cfg->mlp, &cv->layer[i]));
    TRY(KILN_BIND(w, &cv->post_ln_w, ROOT, "post_layernorm.weight", D));
    TRY(KILN_BIND(w, &cv->post_ln_b, ROOT, "post_layernorm.bias", D));
    if (cfg->siglip) return KILN_BIND(w, &cv->patch_bias, ROOT, "embeddings.patch_embedding.bias", D);
    TRY(KILN_BIND(w, &cv->class_embedding, ROOT, "embeddings.class_embedding", D));
    /* sic: transformers' name */
    TRY(KILN_BIND(w, &cv->pre_ln_w, ROOT, "pre_layrnorm.weight", D));
    TRY(KILN_BIND(w, &cv->pre_ln_b, ROOT, "pre_layrnorm.bias", D));
    return KILN_BIND(w, &cv->projection, "visual_projection", "weight", cfg->projection, D);
}

kiln_status kiln_clip_vision_open(const char *path, kiln_backend *be, kiln_clip_vision **out)
{
    *out = NULL;
    kiln_clip_vision *cv = calloc(1, sizeof *cv);
    if (!cv) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "clip vision: out of host memory");
    kiln_status st = kiln_checkpoint_open(path, &cv->checkpoint);
    if (st == KILN_OK && !kiln_checkpoint_find(cv->checkpoint, ROOT ".embeddings.patch_embedding.weight"))
        st = kiln_fail(KILN_ERR_MODEL,
                       "%s: no tensor '" ROOT ".embeddings.patch_embedding.weight': not a CLIP vision model in "
                       "transformers' layout (CLIPVisionModelWithProjection)",
                       path);
    if (st == KILN_OK && !(cv->config = detect(cv->checkpoint)))
        st = kiln_fail(KILN_ERR_UNSUPPORTED,
                       "%s: a CLIP vision tower of shapes kiln does not know (it knows ViT-L/14, ViT-L/14-336, "
                       "ViT-H/14 and ViT-bigG/14 with their projections, and SigLIP so400m/14 at 384)",
                       path);
    if (st == KILN_OK) st = kiln_weights_create(be, cv->checkpoint, &cv->weights);
    if (st == KILN_OK) st = bind(cv);
    if (st != KILN_OK) {
        kiln_clip_vision_free(cv);
        return st;
    }
    *out = cv;
    return KILN_OK;
}

void kiln_clip_vision_free(kiln_clip_vision *cv)
{
    if (!cv) return;
    kiln_weights_free(cv->weights);
    kiln_checkpoint_close(cv->checkpoint);
    free(cv);
}

kiln_status kiln_clip_vision_preprocess(const clip_vision_config *cfg, const kiln_image *img, bool crop,
                                        float *pixels)
{
    static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    static const float half[3] = {0.5f, 0.5f, 0.5f};
    const float *mean = cfg->siglip ? half : clip_mean, *std = cfg->siglip ? half : clip_std;
    const int H = img->height, W = img->width, size = cfg->image_size;
    /* LoadImage's floats, as planes */
    float *planes = malloc((size_t)3 * H * W * sizeof *planes);
    kiln_status st;
    int sh = size, sw = size;
    if (crop && (H != size || W != size)) {
        double scale = (double)size / (H < W ? H : W);
        sh = (int)nearbyint(scale * H); /* Python's round: half to even */
        sw = (int)nearbyint(scale * W);
    }
    float *scaled = malloc((size_t)3 * sh * sw * sizeof *scaled);
    if (!planes || !scaled) {
        free(planes);
        free(scaled);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "clip vision: out of host memory for a %dx%d picture", W, H);
    }
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < H * W; i++) planes[(size_t)c * H * W + i] = img->pixels[(size_t)i * 3 + c] / 255.0f;
    if (sh == H && sw == W) memcpy(scaled, planes, (size_t)3 * H * W * sizeof *scaled);
    else if ((st = kiln_resample_antialias_bicubic(planes, 3, H, W, scaled, sh, sw)) != KILN_OK) {
        free(planes);
        free(scaled);
        return st;
    }
    const int top = (sh - size) / 2, left = (sw - size) / 2;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                float v = 255.0f * scaled[((size_t)c * sh + top + y) * sw + left + x];
                v = nearbyintf(v < 0 ? 0 : v > 255 ? 255 : v) / 255.0f;
                pixels[((size_t)c * size + y) * size + x] = (v - mean[c]) / std[c];
            }
    free(planes);
    free(scaled);
    return KILN_OK;
}

typedef struct vision_job {
    const kiln_clip_vision *cv;
    const float *patches; /* (rows, N, 3 p p) */
    int rows;
    float *projected;     /* (rows, T, P): every token projected, the class token's the embeds; NULL: not asked */
    float *penultimate;   /* (rows, T, D) or NULL */
    float *last_hidden;   /* (rows, T, D) or NULL */
} vision_job;

// patches (B,N,3pp) -> *x (B,T,D): CLIP's class token first, positions added, pre-norm; SigLIP's patches
// (with their bias) and positions alone
static kiln_status embed(kiln_graph *g, const kiln_clip_vision *cv, const tensor *patches, tensor **x)
{
    const clip_vision_config *cfg = cv->config;
    const int64_t B = patches->shape[0], D = cfg->hidden;
    /* the patch convolution as a matmul over flattened patches: its weight (D,3,p,p) read as (D,3pp) */
    tensor pw = *cv->patch_embedding;
    pw.ndim = 2;
    pw.shape[1] = 3 * cfg->patch * cfg->patch;
    const int64_t T = kiln_clip_vision_tokens(cfg);
    int32_t *ids = calloc((size_t)(B * T), sizeof *ids); /* zeros for the class lookup, then positions */
    if (!ids) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "clip vision: out of host memory");
    tensor *cls_ids = NULL, *pos_ids, *pe, *cls, *cat, *pos, *sum;
    kiln_status st = cfg->siglip ? KILN_OK : kiln_graph_input(g, &cls_ids, KILN_I32, 1, (int64_t[]){B}, ids);
    for (int64_t i = 0; i < B * T; i++) ids[i] = (int32_t)(i % T);
    if (st == KILN_OK) st = kiln_graph_input(g, &pos_ids, KILN_I32, 1, (int64_t[]){B * T}, ids);
    free(ids);
    TRY(st);
    TRY(nn_linear(g, patches, &pw, cv->patch_bias, &pe)); /* (B,N,D) */
    if (cfg->siglip) {
        cat = pe;
    } else {
        tensor cls_table = *cv->class_embedding;
        cls_table.ndim = 2; /* (1,D): looked up once per picture */
        cls_table.shape[0] = 1;
        cls_table.shape[1] = D;
        TRY(nn_embedding(g, cls_ids, &cls_table, &cls)); /* (B,D) */
        nn_drop(g, &cls_ids);
        /* [class, patches] along the token axis */
        cls->ndim = 3, cls->shape[0] = B, cls->shape[1] = 1, cls->shape[2] = D;
        TRY(nn_concat_tokens(g, cls, pe, &cat));
        nn_drop(g, &cls);
        nn_drop(g, &pe);
    }
    TRY(nn_embedding(g, pos_ids, cv->position_embedding, &pos)); /* (B*T,D) */
    nn_drop(g, &pos_ids);
    TRY(nn_add(g, cat, pos, &sum));
    nn_drop(g, &cat);
    nn_drop(g, &pos);
    if (cfg->siglip) {
        *x = sum;
        return KILN_OK;
    }
    TRY(nn_layer_norm(g, sum, cv->pre_ln_w, cv->pre_ln_b, 1e-5f, x));
    nn_drop(g, &sum);
    return KILN_OK;
}

static kiln_status vision_fn(kiln_graph *g, void *ctx)
{
    vision_job *j = ctx;
    const kiln_clip_vision *cv = j->cv;
    const clip_vision_config *cfg = cv->config;
    const int64_t side = cfg->image_size / cfg->patch, K = 3 * cfg->patch * cfg->patch;
    tensor *patches, *x, *n, *p;
    TRY(kiln_graph_input(g, &patches, KILN_F32, 3, (int64_t[]){j->rows, side * side, K}, j->patches));
    TRY(embed(g, cv, patches, &x));
    nn_drop(g, &patches);
    for (int i = 0; i < cfg->layers - 1; i++)
        TRY(kiln_clip_layer_forward(g, &cv->layer[i], cfg->heads, cfg->activation, false, &x));
    if (j->penultimate) TRY(kiln_graph_output(g, x, j->penultimate, kiln_tensor_nbytes(x)));
    if (!j->projected && !j->last_hidden) { /* IP-Adapter Plus reads no further */
        nn_drop(g, &x);
        return KILN_OK;
    }
    TRY(kiln_clip_layer_forward(g, &cv->layer[cfg->layers - 1], cfg->heads, cfg->activation, false, &x));
    /* the pooled output is the class token's; the few other rows cost less than a gather */
    TRY(nn_layer_norm(g, x, cv->post_ln_w, cv->post_ln_b, 1e-5f, &n));
    nn_drop(g, &x);
    if (j->last_hidden) TRY(kiln_graph_output(g, n, j->last_hidden, kiln_tensor_nbytes(n)));
    if (j->projected) {
        TRY(nn_linear(g, n, cv->projection, NULL, &p));
        TRY(kiln_graph_output(g, p, j->projected, kiln_tensor_nbytes(p)));
        nn_drop(g, &p);
    }
    nn_drop(g, &n);
    return KILN_OK;
}

kiln_status kiln_clip_vision_encode(const kiln_clip_vision *cv, const float *pixels, int rows,
                                    const clip_vision_outputs *out)
{
    const clip_vision_config *cfg = cv->config;
    const int S = cfg->image_size, p = cfg->patch, side = S / p, N = side * side, K = 3 * p * p;
    const int T = kiln_clip_vision_tokens(cfg), P = cfg->projection;
    if (out->image_embeds && cfg->siglip)
        return kiln_fail(KILN_ERR_INVALID_ARG, "clip vision: SigLIP's tower has no image embeds (IP-Adapter reads "
                         "CLIP's)");
    float *patches = malloc((size_t)rows * N * K * sizeof *patches);
    float *projected = out->image_embeds ? malloc((size_t)rows * T * P * sizeof *projected) : NULL;
    if (!patches || (out->image_embeds && !projected)) {
        free(patches);
        free(projected);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "clip vision: out of host memory");
    }
    /* each patch flattened as the convolution's weight is: channel, row, column */
    for (int r = 0; r < rows; r++)
        for (int py = 0; py < side; py++)
            for (int px = 0; px < side; px++) {
                float *dst = patches + ((size_t)r * N + py * side + px) * K;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(dst + (c * p + ky) * p,
                               pixels + (((size_t)r * 3 + c) * S + py * p + ky) * S + px * p, p * sizeof *dst);
            }
    vision_job j = {cv, patches, rows, projected, out->penultimate, out->last_hidden};
    kiln_status st = kiln_graph_run_once(kiln_weights_backend(cv->weights), vision_fn, &j);
    if (st == KILN_OK && out->image_embeds)
        for (int r = 0; r < rows; r++)
            memcpy(out->image_embeds + (size_t)r * P, projected + (size_t)r * T * P, P * sizeof *projected);
    free(patches);
    free(projected);
    return st;
}
