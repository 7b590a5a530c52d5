/* SRVGGNetCompact: detection, binding, forward (see compact.h). */
#include "compact.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

static const kiln_st_tensor *body_tensor(const kiln_checkpoint *ck, int i)
{
    char name[48];
    snprintf(name, sizeof name, "body.%d.weight", i);
    return kiln_checkpoint_find(ck, name);
}

bool kiln_compact_detect(const kiln_checkpoint *ck)
{
    const kiln_st_tensor *first = body_tensor(ck, 0), *slope = body_tensor(ck, 1);
    return first && slope && first->ndim == 4 && first->shape[1] == 3 && first->shape[2] == 3 && slope->ndim == 1 &&
           slope->shape[0] == first->shape[0];
}

kiln_status kiln_compact_bind(kiln_weights *w, const kiln_checkpoint *ck, kiln_compact *c)
{
    const char *path = kiln_checkpoint_path(ck);
    const int F = (int)body_tensor(ck, 0)->shape[0];
    /* the body alternates conv, PReLU: the last tensor-bearing index is the last conv's */
    int last = 0;
    while (body_tensor(ck, last + 2)) last += 2;
    const kiln_st_tensor *tail = body_tensor(ck, last);
    const int convs = last / 2 - 1;
    if (convs < 0 || convs > KILN_COMPACT_MAX_CONVS || tail->ndim != 4)
        return kiln_fail(KILN_ERR_MODEL, "%s: a compact model's body of %d layers: kiln reads 1 to %d convs between "
                         "the first and the last", path, last + 1, KILN_COMPACT_MAX_CONVS);
    const int scale = (int)lround(sqrt((double)tail->shape[0] / 3.0));
    if (scale < 1 || 3 * scale * scale != tail->shape[0])
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: body.%d.weight gives %lld channels, not 3 times a square (RGB "
                         "out, pixel-shuffled)", path, last, (long long)tail->shape[0]);
    *c = (kiln_compact){.features = F, .convs = convs, .scale = scale};
    char prefix[32];
    for (int i = 0; i <= convs + 1; i++) {
        snprintf(prefix, sizeof prefix, "body.%d", 2 * i);
        const int64_t out = i == convs + 1 ? 3 * scale * scale : F, in = i == 0 ? 3 : F;
        TRY(KILN_BIND(w, &c->w[i], prefix, "weight", out, in, 3, 3));
        TRY(KILN_BIND(w, &c->b[i], prefix, "bias", out));
        if (i == convs + 1) break;
        snprintf(prefix, sizeof prefix, "body.%d", 2 * i + 1);
        TRY(KILN_BIND(w, &c->slope[i], prefix, "weight", F));
    }
    return KILN_OK;
}

kiln_status kiln_compact_forward(kiln_graph *g, const kiln_compact *c, const tensor *x, tensor **y)
{
    tensor *h = NULL;
    for (int i = 0; i <= c->convs + 1; i++) {
        tensor *conv, *act;
        TRY(nn_conv2d(g, h ? h : x, c->w[i], c->b[i], 1, 1, &conv));
        if (h) nn_drop(g, &h);
        if (i == c->convs + 1) {
            h = conv;
            break;
        }
        TRY(nn_prelu(g, conv, c->slope[i], &act));
        nn_drop(g, &conv);
        h = act;
    }
    tensor *shuffled, *base;
    TRY(nn_pixel_shuffle(g, h, c->scale, &shuffled));
    nn_drop(g, &h);
    /* the input enlarged by torch's nearest: each pixel s x s times */
    TRY(nn_resize(g, x, (int)x->shape[2] * c->scale, (int)x->shape[3] * c->scale, KILN_RESAMPLE_NEAREST, &base));
    kiln_status st = nn_add(g, shuffled, base, y);
    nn_drop(g, &shuffled);
    nn_drop(g, &base);
    return st;
}
