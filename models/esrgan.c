/* ESRGAN (RRDBNet x4), SRVGGNetCompact (compact.h) and SPAN (span.h): binding, forward,
 * and ImageUpscaleWithModel's tiling (see esrgan.h). */
#include "esrgan.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "span.h"
#include "image.h"
#include "nn.h"
#include "status.h"
#include "tiled.h"

#define SLOPE 0.2f          /* LeakyReLU's negative slope */
#define RESIDUAL 0.2f       /* dense blocks' output scale onto their input */
#define DENSE_CONVS 5
#define DENSE_BLOCKS 3      /* per residual-in-residual block */
#define MAX_BLOCKS 64

typedef struct conv {
    const tensor *w, *b;
} conv;

struct kiln_upscaler {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    bool compact;  /* an SRVGGNetCompact (below) */
    kiln_compact net;
    bool span;     /* a SPAN (below); neither: an RRDBNet */
    kiln_span span_net;
    bool original; /* the original ESRGAN key layout (model.N) */
    int features, growth, blocks;
    conv first, trunk, up[2], hr, last;
    conv dense[MAX_BLOCKS][DENSE_BLOCKS][DENSE_CONVS];
};

/* The checkpoint prefix of each conv in either layout. */
static void first_name(const kiln_upscaler *u, char *s, size_t n) { snprintf(s, n, u->original ? "model.0" : "conv_first"); }
static void trunk_name(const kiln_upscaler *u, char *s, size_t n)
{
    if (u->original) snprintf(s, n, "model.1.sub.%d", u->blocks);
    else snprintf(s, n, "conv_body");
}
static void dense_name(const kiln_upscaler *u, int b, int k, int j, char *s, size_t n)
{
    if (u->original) snprintf(s, n, "model.1.sub.%d.RDB%d.conv%d.0", b, k + 1, j + 1);
    else snprintf(s, n, "body.%d.rdb%d.conv%d", b, k + 1, j + 1);
}
static void tail_name(const kiln_upscaler *u, int i, char *s, size_t n)
{
    static const char *const original[] = {"model.3", "model.6", "model.8", "model.10"};
    static const char *const basicsr[] = {"conv_up1", "conv_up2", "conv_hr", "conv_last"};
    snprintf(s, n, "%s", u->original ? original[i] : basicsr[i]);
}

static kiln_status bind_conv(kiln_upscaler *u, const char *prefix, int64_t out, int64_t in, conv *c)
{
    TRY(KILN_BIND(u->weights, &c->w, prefix, "weight", out, in, 3, 3));
    return KILN_BIND(u->weights, &c->b, prefix, "bias", out);
}

/* F, G and B from the shapes: the first conv's outputs, a dense conv's
 * outputs, and how many blocks have a first dense conv. */
static kiln_status read_shape(kiln_upscaler *u)
{
    const char *path = kiln_checkpoint_path(u->checkpoint);
    u->original = kiln_checkpoint_find(u->checkpoint, "model.0.weight") != NULL;
    char name[96];
    first_name(u, name, sizeof name);
    strcat(name, ".weight");
    const kiln_st_tensor *first = kiln_checkpoint_find(u->checkpoint, name);
    if (!first)
        return kiln_fail(KILN_ERR_MODEL, "%s: no tensor 'conv_first.weight' or 'model.0.weight': not an ESRGAN (RRDBNet) "
                         "upscale model", path);
    if (first->ndim != 4 || first->shape[1] != 3)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: '%s' takes %lld channels: kiln runs RRDBNet models on RGB (not "
                         "Real-ESRGAN's pixel-unshuffled x2/x1 inputs)", path, name,
                         first->ndim == 4 ? (long long)first->shape[1] : -1LL);
    u->features = (int)first->shape[0];
    dense_name(u, 0, 0, 0, name, sizeof name);
    strcat(name, ".weight");
    const kiln_st_tensor *dense = kiln_checkpoint_find(u->checkpoint, name);
    if (!dense || dense->ndim != 4)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' is missing: not an RRDBNet upscale model", path, name);
    u->growth = (int)dense->shape[0];
    for (u->blocks = 0; u->blocks <= MAX_BLOCKS; u->blocks++) {
        dense_name(u, u->blocks, 0, 0, name, sizeof name);
        strcat(name, ".weight");
        if (!kiln_checkpoint_find(u->checkpoint, name)) break;
    }
    if (u->blocks > MAX_BLOCKS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: more than %d RRDB blocks", path, MAX_BLOCKS);
    tail_name(u, 1, name, sizeof name);
    strcat(name, ".weight");
    if (!kiln_checkpoint_find(u->checkpoint, name))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: no second upsampling conv '%s': kiln runs x4 RRDBNet models", path,
                         name);
    return KILN_OK;
}

static kiln_status bind(kiln_upscaler *u, kiln_backend *be)
{
    if ((u->span = kiln_span_detect(u->checkpoint))) {
        TRY(kiln_span_fuse(u->checkpoint));
        TRY(kiln_weights_create(be, u->checkpoint, &u->weights));
        return kiln_span_bind(u->weights, u->checkpoint, &u->span_net);
    }
    if ((u->compact = kiln_compact_detect(u->checkpoint))) {
        TRY(kiln_weights_create(be, u->checkpoint, &u->weights));
        return kiln_compact_bind(u->weights, u->checkpoint, &u->net);
    }
    TRY(read_shape(u));
    TRY(kiln_weights_create(be, u->checkpoint, &u->weights));
    const int F = u->features, G = u->growth;
    char name[96];
    first_name(u, name, sizeof name);
    TRY(bind_conv(u, name, F, 3, &u->first));
    for (int b = 0; b < u->blocks; b++)
        for (int k = 0; k < DENSE_BLOCKS; k++)
            for (int j = 0; j < DENSE_CONVS; j++) {
                dense_name(u, b, k, j, name, sizeof name);
                TRY(bind_conv(u, name, j == DENSE_CONVS - 1 ? F : G, F + j * G, &u->dense[b][k][j]));
            }
    trunk_name(u, name, sizeof name);
    TRY(bind_conv(u, name, F, F, &u->trunk));
    conv *tail[4] = {&u->up[0], &u->up[1], &u->hr, &u->last};
    for (int i = 0; i < 4; i++) {
        tail_name(u, i, name, sizeof name);
        TRY(bind_conv(u, name, i == 3 ? 3 : F, F, tail[i]));
    }
    return KILN_OK;
}

kiln_status kiln_upscaler_open(const char *path, kiln_backend *be, kiln_upscaler **out)
{
    *out = NULL;
    kiln_upscaler *u = calloc(1, sizeof *u);
    if (!u) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "upscaler: out of host memory");
    kiln_status st = kiln_checkpoint_open(path, &u->checkpoint);
    if (st == KILN_OK) st = bind(u, be);
    if (st != KILN_OK) {
        kiln_upscaler_free(u);
        return st;
    }
    *out = u;
    return KILN_OK;
}

void kiln_upscaler_free(kiln_upscaler *u)
{
    if (!u) return;
    kiln_weights_free(u->weights);
    kiln_checkpoint_close(u->checkpoint);
    free(u);
}

int kiln_upscaler_scale(const kiln_upscaler *u) { return u->span ? u->span_net.scale : u->compact ? u->net.scale : 4; }

void kiln_upscaler_describe(const kiln_upscaler *u, char *buf, size_t size)
{
    if (u->compact) {
        snprintf(buf, size, "SRVGGNetCompact x%d, %d features, %d convs", u->net.scale, u->net.features, u->net.convs);
        return;
    }
    if (u->span) {
        snprintf(buf, size, "SPAN x%d, %d features%s", u->span_net.scale, u->span_net.features,
                 u->span_net.norm ? "" : ", no input normalisation");
        return;
    }
    snprintf(buf, size, "RRDBNet x4 (%s layout), %d features, growth %d, %d block%s",
             u->original ? "ESRGAN" : "BasicSR", u->features, u->growth, u->blocks, u->blocks == 1 ? "" : "s");
}

/* conv, then LeakyReLU unless `linear` */
static kiln_status conv_act(kiln_graph *g, const tensor *x, const conv *c, bool linear, tensor **y)
{
    tensor *h;
    TRY(nn_conv2d(g, x, c->w, c->b, 1, 1, &h));
    if (linear) {
        *y = h;
        return KILN_OK;
    }
    kiln_status st = nn_leaky_relu(g, h, SLOPE, y);
    nn_drop(g, &h);
    return st;
}

/* x + RESIDUAL * f(x), x kept */
static kiln_status add_scaled(kiln_graph *g, const tensor *x, tensor *fx, tensor **y)
{
    tensor *s;
    TRY(nn_scale(g, fx, RESIDUAL, &s));
    nn_drop(g, &fx);
    kiln_status st = nn_add(g, x, s, y);
    nn_drop(g, &s);
    return st;
}

/* A dense block: each conv sees the input and every earlier conv's output. */
static kiln_status dense_block(kiln_graph *g, const conv c[DENSE_CONVS], const tensor *x, tensor **y)
{
    tensor *cat = NULL;
    for (int j = 0; j < DENSE_CONVS; j++) {
        tensor *o;
        TRY(conv_act(g, cat ? cat : x, &c[j], j == DENSE_CONVS - 1, &o));
        if (j == DENSE_CONVS - 1) {
            if (cat) nn_drop(g, &cat);
            return add_scaled(g, x, o, y);
        }
        tensor *next;
        TRY(nn_concat_channels(g, cat ? cat : x, o, &next));
        nn_drop(g, &o);
        if (cat) nn_drop(g, &cat);
        cat = next;
    }
    return KILN_OK;
}

static kiln_status rrdb(kiln_graph *g, const conv c[DENSE_BLOCKS][DENSE_CONVS], const tensor *x, tensor **y)
{
    tensor *h = NULL;
    for (int k = 0; k < DENSE_BLOCKS; k++) {
        tensor *o;
        TRY(dense_block(g, c[k], h ? h : x, &o));
        if (h) nn_drop(g, &h);
        h = o;
    }
    return add_scaled(g, x, h, y);
}

kiln_status kiln_upscaler_forward(kiln_graph *g, const kiln_upscaler *u, const tensor *x, tensor **y)
{
    if (u->compact) return kiln_compact_forward(g, &u->net, x, y);
    if (u->span) return kiln_span_forward(g, &u->span_net, x, y);
    tensor *first, *h = NULL, *trunk, *feat;
    TRY(conv_act(g, x, &u->first, true, &first));
    for (int b = 0; b < u->blocks; b++) {
        tensor *o;
        TRY(rrdb(g, u->dense[b], h ? h : first, &o));
        if (h) nn_drop(g, &h);
        h = o;
    }
    TRY(conv_act(g, h ? h : first, &u->trunk, true, &trunk));
    if (h) nn_drop(g, &h);
    TRY(nn_add(g, first, trunk, &feat));
    nn_drop(g, &first);
    nn_drop(g, &trunk);
    for (int i = 0; i < 2; i++) {
        tensor *up, *o;
        TRY(nn_upsample_nearest2x(g, feat, NULL, &up));
        nn_drop(g, &feat);
        TRY(conv_act(g, up, &u->up[i], false, &o));
        nn_drop(g, &up);
        feat = o;
    }
    tensor *hr;
    TRY(conv_act(g, feat, &u->hr, false, &hr));
    nn_drop(g, &feat);
    kiln_status st = conv_act(g, hr, &u->last, true, y);
    nn_drop(g, &hr);
    return st;
}

/* ---- ImageUpscaleWithModel ---- */

typedef struct tile_run {
    const kiln_upscaler *u;
    const float *in; /* (3,h,w) */
    float *out;      /* (3,s h,s w) */
    int h, w;
} tile_run;

static kiln_status tile_fn(kiln_graph *g, void *ctx)
{
    tile_run *r = ctx;
    tensor *x, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, (int64_t[]){1, 3, r->h, r->w}, r->in));
    TRY(kiln_upscaler_forward(g, r->u, x, &y));
    return kiln_graph_output(g, y, r->out, kiln_tensor_nbytes(y));
}

/* One tile through the network, its output clamped to [0,1] as spandrel's
 * model call does. */
static kiln_status run_tile(void *ctx, const float *in, int h, int w, float *out)
{
    const kiln_upscaler *u = ctx;
    tile_run r = {u, in, out, h, w};
    TRY(kiln_graph_run_once(kiln_weights_backend(u->weights), tile_fn, &r));
    const size_t n = (size_t)3 * kiln_upscaler_scale(u) * h * kiln_upscaler_scale(u) * w;
    for (size_t i = 0; i < n; i++) out[i] = out[i] < 0.0f ? 0.0f : out[i] > 1.0f ? 1.0f : out[i];
    return KILN_OK;
}

kiln_status kiln_upscale_image(kiln_upscaler *u, const float *pixels, int H, int W, int tile, int overlap, float **out)
{
    const int S = kiln_upscaler_scale(u);
    const size_t n = (size_t)3 * S * H * S * W;
    float *up = malloc(n * sizeof(float));
    if (!up) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "upscale: out of host memory");
    const kiln_tiling t = {.in_channels = 3, .out_channels = 3, .scale = S, .tile_h = tile, .tile_w = tile,
                           .overlap = overlap};
    kiln_status st = kiln_tiled_scale(&t, pixels, H, W, run_tile, u, up);
    if (st != KILN_OK) {
        free(up);
        return st;
    }
    for (size_t i = 0; i < n; i++) up[i] = up[i] < 0.0f ? 0.0f : up[i] > 1.0f ? 1.0f : up[i];
    *out = up;
    return KILN_OK;
}

kiln_status kiln_upscale_to_image(kiln_upscaler *u, const float *pixels, int H, int W, kiln_image *out)
{
    const int S = kiln_upscaler_scale(u);
    if (H < 1 || W < 1 || H > KILN_IMAGE_MAX_SIDE / S || W > KILN_IMAGE_MAX_SIDE / S)
        return kiln_fail(KILN_ERR_INVALID_ARG, "upscale: %dx%d times %d is over %d pixels a side", W, H, S,
                         KILN_IMAGE_MAX_SIDE);
    float *up = NULL;
    kiln_status st = kiln_upscale_image(u, pixels, H, W, KILN_UPSCALE_TILE, KILN_UPSCALE_OVERLAP, &up);
    if (st == KILN_OK) st = kiln_image_from_unit(up, S * H, S * W, out);
    free(up);
    return st;
}
