#include "tiled.h"

#include <stdlib.h>
#include <string.h>

/* The tile starts along one axis of n pixels (n > tile): 0, step, 2 step,
 * ... below n - overlap (the last tiles end at the edge, shorter). */
static int tile_starts(int n, int tile, int overlap, int **starts)
{
    const int step = tile - overlap, count = (n - overlap + step - 1) / step;
    if (!(*starts = malloc((size_t)count * sizeof **starts))) return -1;
    for (int i = 0; i < count; i++) (*starts)[i] = i * step;
    return count;
}

/* The edge ramp of one axis: 1, times (t + 1) / feather at the t-th pixel
 * from either end, in float as torch multiplies a float tensor by it. */
static void ramp(float *m, int len, int feather)
{
    for (int i = 0; i < len; i++) m[i] = 1.0f;
    if (feather >= len) return;
    for (int t = 0; t < feather; t++) {
        float a = (float)((double)(t + 1) / feather);
        m[t] *= a;
        m[len - 1 - t] *= a;
    }
}

kiln_status kiln_tiled_scale(const kiln_tiling *t, const float *in, int H, int W, kiln_tile_fn fn, void *ctx,
                             float *out)
{
    const int S = t->scale ? t->scale : 1, D = t->shrink ? t->shrink : 1, Ci = t->in_channels, Co = t->out_channels;
    if (t->overlap < 0 || t->tile_h <= t->overlap || t->tile_w <= t->overlap)
        return kiln_fail(KILN_ERR_INVALID_ARG, "tiles of %dx%d must exceed their overlap %d", t->tile_w, t->tile_h,
                         t->overlap);
    if (H % D || W % D || t->tile_h % D || t->tile_w % D || t->overlap % D)
        return kiln_fail(KILN_ERR_INVALID_ARG, "tiles: a %dx%d picture, %dx%d tiles and an overlap of %d, not all "
                         "multiples of %d", W, H, t->tile_w, t->tile_h, t->overlap, D);
    const int OH = S * H / D, OW = S * W / D;
    if (H <= t->tile_h && W <= t->tile_w) return fn(ctx, in, H, W, out); /* one tile: the network's output as it is */
    const int th_max = H < t->tile_h ? H : t->tile_h, tw_max = W < t->tile_w ? W : t->tile_w;
    const size_t oplane = (size_t)OH * OW;
    float *div = calloc(oplane, sizeof(float)), *tile = malloc((size_t)Ci * th_max * tw_max * sizeof(float));
    float *part = malloc((size_t)Co * (S * th_max / D) * (S * tw_max / D) * sizeof(float));
    float *ry = malloc((size_t)(S * th_max / D) * sizeof(float)), *rx = malloc((size_t)(S * tw_max / D) * sizeof(float));
    int *ys = NULL, *xs = NULL;
    const int ny = H > t->tile_h ? tile_starts(H, t->tile_h, t->overlap, &ys) : 1;
    const int nx = W > t->tile_w ? tile_starts(W, t->tile_w, t->overlap, &xs) : 1;
    kiln_status st = KILN_OK;
    if (!div || !tile || !part || !ry || !rx || ny < 0 || nx < 0 || (ny > 1 && !ys) || (nx > 1 && !xs))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tiles: out of host memory");
    if (st == KILN_OK) memset(out, 0, (size_t)Co * oplane * sizeof(float));
    for (int a = 0; a < ny && st == KILN_OK; a++)
        for (int b = 0; b < nx && st == KILN_OK; b++) {
            const int y0 = ys ? ys[a] : 0, x0 = xs ? xs[b] : 0;
            const int h = H - y0 < t->tile_h ? H - y0 : t->tile_h, w = W - x0 < t->tile_w ? W - x0 : t->tile_w;
            for (int c = 0; c < Ci; c++)
                for (int y = 0; y < h; y++)
                    memcpy(tile + ((size_t)c * h + y) * w, in + ((size_t)c * H + y0 + y) * W + x0, w * sizeof(float));
            if ((st = fn(ctx, tile, h, w, part)) != KILN_OK) break;
            const int ph = S * h / D, pw = S * w / D, feather = S * t->overlap / D;
            ramp(ry, ph, feather);
            ramp(rx, pw, feather);
            for (int y = 0; y < ph; y++)
                for (int x = 0; x < pw; x++) {
                    const float m = ry[y] * rx[x];
                    const size_t o = (size_t)(S * y0 / D + y) * OW + S * x0 / D + x;
                    for (int c = 0; c < Co; c++) out[c * oplane + o] += part[((size_t)c * ph + y) * pw + x] * m;
                    div[o] += m;
                }
        }
    if (st == KILN_OK)
        for (int c = 0; c < Co; c++)
            for (size_t i = 0; i < oplane; i++) out[c * oplane + i] /= div[i];
    free(div), free(tile), free(part), free(ry), free(rx), free(ys), free(xs);
    return st;
}
