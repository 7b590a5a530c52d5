/* SPAN: detection, the Conv3XC fusion, binding, forward (see span.h). */
#include "span.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tensor.h"

/* the dataset mean the picture is centred on, as spandrel's module holds it */
static const float RGB_MEAN[3] = {0.4488f, 0.4371f, 0.4040f};
#define IMG_RANGE 255.0f

bool kiln_span_detect(const kiln_checkpoint *ck)
{
    static const char *const keys[] = {"conv_1.sk.weight", "block_1.c1_r.sk.weight", "block_1.c1_r.eval_conv.weight",
                                       "block_1.c3_r.eval_conv.weight", "conv_cat.weight", "conv_2.sk.weight",
                                       "conv_2.eval_conv.weight", "upsampler.0.weight"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!kiln_checkpoint_find(ck, keys[i])) return false;
    return true;
}

/* The Conv3XCs by their prefixes, in the order the forward runs them. */
#define CONV3XC_COUNT (2 + 3 * KILN_SPAN_BLOCKS)
static void conv3xc_name(int i, char *s, size_t n)
{
    if (i == 0) snprintf(s, n, "conv_1");
    else if (i == CONV3XC_COUNT - 1) snprintf(s, n, "conv_2");
    else snprintf(s, n, "block_%d.c%d_r", (i - 1) / 3 + 1, (i - 1) % 3 + 1);
}

/* A tensor of the checkpoint as f32 (malloc'd), its shape checked. */
static kiln_status read_f32(const kiln_checkpoint *ck, const char *prefix, const char *suffix, int ndim,
                            const int64_t *shape, float **out)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const kiln_st_tensor *t = kiln_checkpoint_find(ck, name);
    bool fits = t && t->ndim == ndim && !kiln_dtype_is_quantized(t->dtype);
    for (int d = 0; fits && d < ndim; d++) fits = t->shape[d] == shape[d];
    if (!fits)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' is %s: a SPAN model's Conv3XC has %lldx%lld...",
                         kiln_checkpoint_path(ck), name, t ? "of another shape" : "missing", (long long)shape[0],
                         (long long)(ndim > 1 ? shape[1] : 1));
    const size_t n = (size_t)kiln_st_numel(t);
    if (!(*out = malloc(n * sizeof **out))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SPAN: out of host memory");
    kiln_convert_to_f32(*out, t->data, t->dtype, n);
    return KILN_OK;
}

/* spandrel's update_params: the 1x1 -> 3x3 -> 1x1 branch as one 3x3 conv,
 * its biases carried through, plus the 1x1 skip at the kernel's centre; in
 * float64, rounded once. */
static kiln_status fuse_conv3xc(kiln_checkpoint *ck, const char *prefix)
{
    char name[96];
    snprintf(name, sizeof name, "%s.conv.1.weight", prefix);
    const kiln_st_tensor *mid = kiln_checkpoint_find(ck, name);
    snprintf(name, sizeof name, "%s.sk.weight", prefix);
    const kiln_st_tensor *sk = kiln_checkpoint_find(ck, name);
    if (!mid || mid->ndim != 4 || !sk || sk->ndim != 4)
        return kiln_fail(KILN_ERR_MODEL, "%s: the Conv3XC '%s' lacks its 4-d conv.1 and sk weights",
                         kiln_checkpoint_path(ck), prefix);
    const int64_t O = sk->shape[0], I = sk->shape[1], M = mid->shape[0], N = mid->shape[1];
    float *w1 = NULL, *b1 = NULL, *w2 = NULL, *b2 = NULL, *w3 = NULL, *b3 = NULL, *ws = NULL, *bs = NULL;
    kiln_status st = read_f32(ck, prefix, "conv.0.weight", 4, (int64_t[]){N, I, 1, 1}, &w1);
    if (st == KILN_OK) st = read_f32(ck, prefix, "conv.0.bias", 1, (int64_t[]){N}, &b1);
    if (st == KILN_OK) st = read_f32(ck, prefix, "conv.1.weight", 4, (int64_t[]){M, N, 3, 3}, &w2);
    if (st == KILN_OK) st = read_f32(ck, prefix, "conv.1.bias", 1, (int64_t[]){M}, &b2);
    if (st == KILN_OK) st = read_f32(ck, prefix, "conv.2.weight", 4, (int64_t[]){O, M, 1, 1}, &w3);
    if (st == KILN_OK) st = read_f32(ck, prefix, "conv.2.bias", 1, (int64_t[]){O}, &b3);
    if (st == KILN_OK) st = read_f32(ck, prefix, "sk.weight", 4, (int64_t[]){O, I, 1, 1}, &ws);
    if (st == KILN_OK) st = read_f32(ck, prefix, "sk.bias", 1, (int64_t[]){O}, &bs);
    float *weight = st == KILN_OK ? malloc((size_t)(O * I * 9) * sizeof *weight) : NULL;
    float *bias = st == KILN_OK ? malloc((size_t)O * sizeof *bias) : NULL;
    double *inner = st == KILN_OK ? malloc((size_t)(M * I * 9) * sizeof *inner) : NULL; /* conv.1 after conv.0 */
    double *inner_b = st == KILN_OK ? malloc((size_t)M * sizeof *inner_b) : NULL;
    if (st == KILN_OK && (!weight || !bias || !inner || !inner_b))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SPAN: out of host memory");
    if (st == KILN_OK) {
        for (int64_t m = 0; m < M; m++) {
            double b = b2[m];
            for (int64_t n = 0; n < N; n++)
                for (int k = 0; k < 9; k++) b += (double)w2[(m * N + n) * 9 + k] * b1[n];
            inner_b[m] = b;
            for (int64_t i = 0; i < I; i++)
                for (int k = 0; k < 9; k++) {
                    double v = 0.0;
                    for (int64_t n = 0; n < N; n++) v += (double)w2[(m * N + n) * 9 + k] * w1[n * I + i];
                    inner[(m * I + i) * 9 + k] = v;
                }
        }
        for (int64_t o = 0; o < O; o++) {
            double b = (double)b3[o] + bs[o];
            for (int64_t m = 0; m < M; m++) b += (double)w3[o * M + m] * inner_b[m];
            bias[o] = (float)b;
            for (int64_t i = 0; i < I; i++)
                for (int k = 0; k < 9; k++) {
                    double v = k == 4 ? ws[o * I + i] : 0.0;
                    for (int64_t m = 0; m < M; m++) v += (double)w3[o * M + m] * inner[(m * I + i) * 9 + k];
                    weight[(o * I + i) * 9 + k] = (float)v;
                }
        }
        snprintf(name, sizeof name, "%s.eval_conv.weight", prefix);
        st = kiln_checkpoint_replace(ck, name, KILN_F32, weight);
        weight = NULL; /* the checkpoint's now, or freed */
        snprintf(name, sizeof name, "%s.eval_conv.bias", prefix);
        if (st == KILN_OK) st = kiln_checkpoint_replace(ck, name, KILN_F32, bias);
        else free(bias);
        bias = NULL;
    }
    free(w1), free(b1), free(w2), free(b2), free(w3), free(b3), free(ws), free(bs);
    free(weight), free(bias), free(inner), free(inner_b);
    return st;
}

kiln_status kiln_span_fuse(kiln_checkpoint *ck)
{
    for (int i = 0; i < CONV3XC_COUNT; i++) {
        char prefix[32];
        conv3xc_name(i, prefix, sizeof prefix);
        TRY(fuse_conv3xc(ck, prefix));
    }
    return KILN_OK;
}

static kiln_status bind_conv(kiln_weights *w, const char *prefix, int64_t out, int64_t in, int64_t k,
                             kiln_span_conv *c)
{
    TRY(KILN_BIND(w, &c->w, prefix, "weight", out, in, k, k));
    return KILN_BIND(w, &c->b, prefix, "bias", out);
}

kiln_status kiln_span_bind(kiln_weights *w, const kiln_checkpoint *ck, kiln_span *s)
{
    const char *path = kiln_checkpoint_path(ck);
    const kiln_st_tensor *first = kiln_checkpoint_find(ck, "conv_1.sk.weight"),
                         *up = kiln_checkpoint_find(ck, "upsampler.0.weight");
    if (first->ndim != 4 || first->shape[1] != 3 || up->ndim != 4)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a SPAN model reading %lld channels: kiln runs RGB ones", path,
                         first->ndim == 4 ? (long long)first->shape[1] : -1LL);
    const int F = (int)first->shape[0];
    const int scale = (int)lround(sqrt((double)up->shape[0] / 3.0));
    if (scale < 1 || 3 * scale * scale != up->shape[0])
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: upsampler.0.weight gives %lld channels, not 3 times a square (RGB "
                         "out, pixel-shuffled)", path, (long long)up->shape[0]);
    *s = (kiln_span){.features = F, .scale = scale, .norm = !kiln_checkpoint_find(ck, "no_norm")};
    char prefix[32], name[48];
    for (int i = 0; i < CONV3XC_COUNT; i++) {
        conv3xc_name(i, prefix, sizeof prefix);
        snprintf(name, sizeof name, "%s.eval_conv", prefix);
        kiln_span_conv *c = i == 0 ? &s->first : i == CONV3XC_COUNT - 1 ? &s->last : &s->blocks[(i - 1) / 3][(i - 1) % 3];
        TRY(bind_conv(w, name, F, i == 0 ? 3 : F, 3, c));
    }
    TRY(bind_conv(w, "conv_cat", F, 4 * (int64_t)F, 1, &s->cat));
    return bind_conv(w, "upsampler.0", 3 * (int64_t)scale * scale, F, 3, &s->up);
}

/* conv (3x3, or the 1x1 conv_cat) of x */
static kiln_status conv(kiln_graph *g, const tensor *x, const kiln_span_conv *c, tensor **y)
{
    return nn_conv2d(g, x, c->w, c->b, 1, (int)(c->w->shape[2] / 2), y);
}

/* A SPAB block: *y its output, *first its first conv's after the SiLU
 * (kept for the sixth block's join: spandrel's in-place SiLU changes the
 * tensor the block hands back) */
static kiln_status spab(kiln_graph *g, const kiln_span_conv c[3], const tensor *x, tensor **y, tensor **first)
{
    tensor *h, *a, *o, *sum, *att, *shifted;
    TRY(conv(g, x, &c[0], &h));
    TRY(nn_silu(g, h, first));
    nn_drop(g, &h);
    TRY(conv(g, *first, &c[1], &h));
    TRY(nn_silu(g, h, &a));
    nn_drop(g, &h);
    TRY(conv(g, a, &c[2], &o));
    nn_drop(g, &a);
    /* (o + x) * (sigmoid(o) - 0.5): the parameter-free attention */
    TRY(nn_add(g, o, x, &sum));
    TRY(nn_sigmoid(g, o, &att));
    nn_drop(g, &o);
    TRY(nn_mul(g, sum, att, &h));
    nn_drop(g, &att);
    TRY(nn_scale(g, sum, -0.5f, &shifted));
    nn_drop(g, &sum);
    TRY(nn_add(g, h, shifted, y));
    nn_drop(g, &h);
    nn_drop(g, &shifted);
    return KILN_OK;
}

/* a and b (and more) joined along the channels, in order */
static kiln_status join(kiln_graph *g, const tensor *const *parts, int n, tensor **y)
{
    tensor *acc = NULL;
    for (int i = 1; i < n; i++) {
        tensor *next;
        TRY(nn_concat_channels(g, acc ? acc : parts[0], parts[i], &next));
        if (acc) nn_drop(g, &acc);
        acc = next;
    }
    *y = acc;
    return KILN_OK;
}

kiln_status kiln_span_forward(kiln_graph *g, const kiln_span *s, const tensor *x, tensor **y)
{
    tensor *in = NULL, *feature, *h = NULL, *b1 = NULL, *b6_first = NULL;
    if (s->norm) { /* (x - mean) * 255 */
        static const float minus_mean[3] = {-RGB_MEAN[0], -RGB_MEAN[1], -RGB_MEAN[2]};
        tensor *mean, *centred;
        TRY(kiln_graph_input(g, &mean, KILN_F32, 2, (int64_t[]){1, 3}, minus_mean));
        TRY(nn_add_channel_bias(g, x, mean, &centred));
        nn_drop(g, &mean);
        TRY(nn_scale(g, centred, IMG_RANGE, &in));
        nn_drop(g, &centred);
    }
    TRY(conv(g, in ? in : x, &s->first, &feature));
    if (in) nn_drop(g, &in);
    for (int b = 0; b < KILN_SPAN_BLOCKS; b++) {
        tensor *o, *first;
        TRY(spab(g, s->blocks[b], h ? h : feature, &o, &first));
        if (b == KILN_SPAN_BLOCKS - 1) b6_first = first;
        else nn_drop(g, &first);
        if (h && h != b1) nn_drop(g, &h);
        h = o;
        if (b == 0) b1 = o;
    }
    tensor *last, *joined, *out, *shuffled;
    TRY(conv(g, h, &s->last, &last));
    nn_drop(g, &h);
    TRY(join(g, (const tensor *[]){feature, last, b1, b6_first}, 4, &joined));
    nn_drop(g, &feature), nn_drop(g, &last), nn_drop(g, &b1), nn_drop(g, &b6_first);
    TRY(conv(g, joined, &s->cat, &out));
    nn_drop(g, &joined);
    TRY(conv(g, out, &s->up, &h));
    nn_drop(g, &out);
    TRY(nn_pixel_shuffle(g, h, s->scale, &shuffled));
    nn_drop(g, &h);
    *y = shuffled;
    return KILN_OK;
}
