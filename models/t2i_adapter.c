/* T2I-Adapters: detection, binding, the features of a picture (see
 * t2i_adapter.h). */
#include "t2i_adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "status.h"

/* The tensor named fmt with its one %d as i. */
static const kiln_st_tensor *find(const kiln_checkpoint *ck, const char *fmt, int i)
{
    char name[96];
    snprintf(name, sizeof name, fmt, i);
    return kiln_checkpoint_find(ck, name);
}

/* How many of fmt's names, i = 0, 1, ..., the file has in a row. */
static int count(const kiln_checkpoint *ck, const char *fmt)
{
    int n = 0;
    while (n < 64 && find(ck, fmt, n)) n++;
    return n;
}

bool kiln_t2i_adapter_detect(const kiln_checkpoint *ck)
{
    return (kiln_checkpoint_find(ck, "conv_in.weight") && kiln_checkpoint_find(ck, "body.0.block1.weight")) ||
           (kiln_checkpoint_find(ck, "body.0.in_conv.weight") && kiln_checkpoint_find(ck, "body.0.body.0.block1.weight"));
}

static kiln_status bind_conv(kiln_weights *w, const char *prefix, int64_t out, int64_t in, int64_t k,
                             const tensor **weight, const tensor **bias)
{
    TRY(KILN_BIND(w, weight, prefix, "weight", out, in, k, k));
    return KILN_BIND(w, bias, prefix, "bias", out);
}

/* The width of a conv's output as the file has it (0: missing or not a conv). */
static int64_t conv_width(const kiln_checkpoint *ck, const char *fmt, int i)
{
    const kiln_st_tensor *t = find(ck, fmt, i);
    return t && t->ndim == 4 ? t->shape[0] : 0;
}

/* The picture's channels after the unshuffle, as conv_in (or the first
 * in_conv) reads them. */
static kiln_status input_channels(kiln_t2i_adapter *a, const char *path, int64_t cin)
{
    a->xl = !a->light && (cin == 256 || cin == 768);
    a->unshuffle = a->xl ? 16 : 8;
    const int64_t per = (int64_t)a->unshuffle * a->unshuffle;
    if (cin % per || (cin / per != 1 && cin / per != 3))
        return kiln_fail(KILN_ERR_MODEL, "%s: a T2I-Adapter reading %lld channels: not 1 or 3 unshuffled by %d", path,
                         (long long)cin, a->unshuffle);
    a->input_channels = (int)(cin / per);
    return KILN_OK;
}

static kiln_status bind_full(kiln_weights *w, const kiln_checkpoint *ck, kiln_t2i_adapter *a)
{
    const char *path = kiln_checkpoint_path(ck);
    const kiln_st_tensor *conv_in = kiln_checkpoint_find(ck, "conv_in.weight"),
                         *block2 = kiln_checkpoint_find(ck, "body.0.block2.weight");
    if (conv_in->ndim != 4 || !block2 || block2->ndim != 4)
        return kiln_fail(KILN_ERR_MODEL, "%s: a T2I-Adapter without 4-d conv_in.weight and body.0.block2.weight", path);
    TRY(input_channels(a, path, conv_in->shape[1]));
    /* two res blocks a level, as every released adapter and ComfyUI's loader have */
    const int blocks = count(ck, "body.%d.block1.weight");
    a->nresnets = 2;
    a->nlevels = blocks / 2;
    if (blocks % 2 || a->nlevels < 1 || a->nlevels > KILN_T2I_MAX_LEVELS || (a->xl && a->nlevels != 4))
        return kiln_fail(KILN_ERR_MODEL, "%s: a T2I-Adapter of %d res blocks: kiln reads 2 a level, 1 to %d levels (4 "
                         "for SDXL)", path, blocks, KILN_T2I_MAX_LEVELS);
    const int64_t k = block2->shape[2]; /* block2's, in_conv's: 1 in the released adapters */
    int64_t prev = conv_in->shape[0];
    TRY(bind_conv(w, "conv_in", prev, conv_in->shape[1], 3, &a->conv_in_w, &a->conv_in_b));
    for (int l = 0; l < a->nlevels; l++) {
        kiln_t2i_level *lv = &a->levels[l];
        const int first = l * a->nresnets;
        char prefix[64];
        lv->channels = conv_width(ck, "body.%d.block1.weight", first);
        lv->down = a->xl ? l == 2 : l >= 1;
        if (lv->down && find(ck, "body.%d.down_opt.op.weight", first)) {
            snprintf(prefix, sizeof prefix, "body.%d.down_opt.op", first);
            TRY(bind_conv(w, prefix, prev, prev, 3, &lv->down_w, &lv->down_b));
        }
        if (lv->channels != prev) {
            snprintf(prefix, sizeof prefix, "body.%d.in_conv", first);
            TRY(bind_conv(w, prefix, lv->channels, prev, k, &lv->in_w, &lv->in_b));
        }
        for (int r = 0; r < a->nresnets; r++) {
            kiln_t2i_resnet *rn = &lv->resnets[r];
            snprintf(prefix, sizeof prefix, "body.%d.block1", first + r);
            TRY(bind_conv(w, prefix, lv->channels, lv->channels, 3, &rn->block1_w, &rn->block1_b));
            snprintf(prefix, sizeof prefix, "body.%d.block2", first + r);
            TRY(bind_conv(w, prefix, lv->channels, lv->channels, k, &rn->block2_w, &rn->block2_b));
        }
        prev = lv->channels;
    }
    return KILN_OK;
}

static kiln_status bind_light(kiln_weights *w, const kiln_checkpoint *ck, kiln_t2i_adapter *a)
{
    const char *path = kiln_checkpoint_path(ck);
    const kiln_st_tensor *in = kiln_checkpoint_find(ck, "body.0.in_conv.weight");
    if (in->ndim != 4) return kiln_fail(KILN_ERR_MODEL, "%s: body.0.in_conv.weight is not a conv's", path);
    a->light = true;
    TRY(input_channels(a, path, in->shape[1]));
    a->nlevels = count(ck, "body.%d.in_conv.weight");
    a->nresnets = count(ck, "body.0.body.%d.block1.weight");
    if (a->nlevels > KILN_T2I_MAX_LEVELS || a->nresnets > KILN_T2I_MAX_RESNETS)
        return kiln_fail(KILN_ERR_MODEL, "%s: a light T2I-Adapter of %d levels of %d res blocks: kiln reads up to %d "
                         "of %d", path, a->nlevels, a->nresnets, KILN_T2I_MAX_LEVELS, KILN_T2I_MAX_RESNETS);
    int64_t prev = in->shape[1];
    for (int l = 0; l < a->nlevels; l++) {
        kiln_t2i_level *lv = &a->levels[l];
        const int64_t mid = conv_width(ck, "body.%d.in_conv.weight", l);
        char prefix[64];
        lv->channels = conv_width(ck, "body.%d.out_conv.weight", l);
        lv->down = l > 0;
        snprintf(prefix, sizeof prefix, "body.%d.in_conv", l);
        TRY(bind_conv(w, prefix, mid, prev, 1, &lv->in_w, &lv->in_b));
        for (int r = 0; r < a->nresnets; r++) {
            kiln_t2i_resnet *rn = &lv->resnets[r];
            snprintf(prefix, sizeof prefix, "body.%d.body.%d.block1", l, r);
            TRY(bind_conv(w, prefix, mid, mid, 3, &rn->block1_w, &rn->block1_b));
            snprintf(prefix, sizeof prefix, "body.%d.body.%d.block2", l, r);
            TRY(bind_conv(w, prefix, mid, mid, 3, &rn->block2_w, &rn->block2_b));
        }
        snprintf(prefix, sizeof prefix, "body.%d.out_conv", l);
        TRY(bind_conv(w, prefix, lv->channels, mid, 1, &lv->out_w, &lv->out_b));
        prev = lv->channels;
    }
    return KILN_OK;
}

kiln_status kiln_t2i_adapter_bind(kiln_weights *w, const kiln_checkpoint *ck, kiln_t2i_adapter *a)
{
    *a = (kiln_t2i_adapter){0};
    return kiln_checkpoint_find(ck, "conv_in.weight") ? bind_full(w, ck, a) : bind_light(w, ck, a);
}

int kiln_t2i_adapter_block(const kiln_t2i_adapter *a, int level)
{
    static const int sdxl[KILN_T2I_MAX_LEVELS] = {3, 5, 8, KILN_T2I_MIDDLE};
    return a->xl ? sdxl[level] : 3 * level + 2;
}

kiln_status kiln_t2i_adapter_check(const kiln_t2i_adapter *a, const unet_config *cfg, const char *path)
{
    const bool sdxl = strcmp(cfg->family, "sdxl") == 0;
    if (a->xl != sdxl)
        return kiln_fail(KILN_ERR_MODEL, "%s: a T2I-Adapter for %s, not for this model's UNet (%s)", path,
                         a->xl ? "SDXL" : "SD 1.x/2.x", cfg->name);
    for (int l = 0; l < a->nlevels; l++) {
        const int block = kiln_t2i_adapter_block(a, l);
        int64_t shape[3];
        if (!kiln_unet_block_shape(cfg, 64, 64, block, shape)) continue; /* past the UNet's blocks: unused */
        if (shape[0] != a->levels[l].channels)
            return kiln_fail(KILN_ERR_MODEL, "%s: the T2I-Adapter's level %d is %lld wide, the %s of this model's UNet "
                             "(%s) %lld", path, l, (long long)a->levels[l].channels,
                             block == KILN_T2I_MIDDLE ? "middle block" : "input block it joins", cfg->name,
                             (long long)shape[0]);
    }
    return KILN_OK;
}

void kiln_t2i_adapter_picture_size(const kiln_t2i_adapter *a, int latent_h, int latent_w, int *h, int *w)
{
    const int u = a->unshuffle;
    *h = (8 * latent_h + u - 1) / u * u;
    *w = (8 * latent_w + u - 1) / u * u;
}

static kiln_status conv(kiln_graph *g, tensor **x, const tensor *w, const tensor *b, int stride)
{
    tensor *y;
    TRY(nn_conv2d(g, *x, w, b, stride, (int)(w->shape[2] / 2), &y));
    nn_drop(g, x);
    *x = y;
    return KILN_OK;
}

/* x + conv2(relu(conv1(x))), in place */
static kiln_status resnet(kiln_graph *g, const kiln_t2i_resnet *r, tensor **x)
{
    tensor *h, *a;
    TRY(nn_conv2d(g, *x, r->block1_w, r->block1_b, 1, 1, &h));
    TRY(nn_leaky_relu(g, h, 0.0f, &a));
    nn_drop(g, &h);
    TRY(conv(g, &a, r->block2_w, r->block2_b, 1));
    return nn_add_into(g, x, a);
}

/* Halved as the original adapters halve: average pooling padded by one on an
 * odd side (zeros counted), so that a side of n becomes ceil(n/2) as the
 * UNet's strided convs make it; or their strided conv. */
static kiln_status halve(kiln_graph *g, const kiln_t2i_level *lv, tensor **x)
{
    if (lv->down_w) return conv(g, x, lv->down_w, lv->down_b, 2);
    tensor *y;
    TRY(nn_avg_pool2x2(g, *x, (int)((*x)->shape[2] % 2), (int)((*x)->shape[3] % 2), &y));
    nn_drop(g, x);
    *x = y;
    return KILN_OK;
}

typedef struct adapter_job {
    const kiln_t2i_adapter *a;
    const float *input;
    int64_t shape[4];
    float *features;
} adapter_job;

static kiln_status adapter_fn(kiln_graph *g, void *ctx)
{
    const adapter_job *j = ctx;
    const kiln_t2i_adapter *a = j->a;
    tensor *x;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, j->shape, j->input));
    if (!a->light) TRY(conv(g, &x, a->conv_in_w, a->conv_in_b, 1));
    size_t at = 0;
    for (int l = 0; l < a->nlevels; l++) {
        const kiln_t2i_level *lv = &a->levels[l];
        if (lv->down) TRY(halve(g, lv, &x));
        if (lv->in_w) TRY(conv(g, &x, lv->in_w, lv->in_b, 1));
        for (int r = 0; r < a->nresnets; r++) TRY(resnet(g, &lv->resnets[r], &x));
        if (lv->out_w) TRY(conv(g, &x, lv->out_w, lv->out_b, 1));
        const size_t n = (size_t)kiln_tensor_numel(x);
        TRY(kiln_graph_output(g, x, j->features + at, n * sizeof(float)));
        at += n;
    }
    nn_drop(g, &x);
    return KILN_OK;
}

kiln_status kiln_t2i_adapter_features(const kiln_t2i_adapter *a, kiln_backend *be, const float *picture, int h, int w,
                                      float **features, int64_t shapes[KILN_T2I_MAX_LEVELS][3])
{
    *features = NULL;
    const int u = a->unshuffle, C = a->input_channels;
    if (h < u || w < u || h % u || w % u)
        return kiln_fail(KILN_ERR_INVALID_ARG, "T2I-Adapter: a %dx%d picture: its sides must be multiples of %d", w, h,
                         u);
    const int H = h / u, W = w / u;
    size_t total = 0;
    for (int l = 0, side_h = H, side_w = W; l < a->nlevels; l++) {
        if (a->levels[l].down) side_h = (side_h + 1) / 2, side_w = (side_w + 1) / 2;
        shapes[l][0] = a->levels[l].channels, shapes[l][1] = side_h, shapes[l][2] = side_w;
        total += (size_t)a->levels[l].channels * side_h * side_w;
    }
    float *input = malloc((size_t)C * h * w * sizeof *input);
    *features = malloc(total * sizeof **features);
    if (!input || !*features) {
        free(input);
        free(*features);
        *features = NULL;
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "T2I-Adapter: out of host memory");
    }
    /* a one-channel adapter (sketch, canny) reads the picture's mean, as
       ComfyUI gives it; then torch's pixel_unshuffle: channel c u^2 + i u + j
       holds pixel (y u + i, x u + j) */
    const size_t plane = (size_t)h * w;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < u; i++)
            for (int k = 0; k < u; k++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        const size_t at = (size_t)(y * u + i) * w + x * u + k;
                        float v = picture[c * plane + at];
                        if (C == 1) v = (picture[at] + picture[plane + at] + picture[2 * plane + at]) / 3.0f;
                        input[(((size_t)c * u + i) * u + k) * H * W + (size_t)y * W + x] = v;
                    }
    adapter_job j = {a, input, {1, (int64_t)C * u * u, H, W}, *features};
    kiln_status st = kiln_graph_run_once(be, adapter_fn, &j);
    free(input);
    if (st != KILN_OK) {
        free(*features);
        *features = NULL;
    }
    return st;
}
