#include "resample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"nearest-exact", "bilinear", "bicubic", "nearest", "area", "bislerp"};

bool kiln_resample_from_name(const char *name, kiln_resample_method *out)
{
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (i != KILN_RESAMPLE_NEAREST && strcmp(name, names[i]) == 0) { /* "nearest" is no method of ComfyUI's */
            *out = (kiln_resample_method)i;
            return true;
        }
    return false;
}

const char *kiln_resample_name(kiln_resample_method m) { return names[m]; }

bool kiln_resample_plane_method_from_name(const char *name, kiln_resample_method *out)
{
    return kiln_resample_from_name(name, out) && *out != KILN_RESAMPLE_BISLERP;
}

int kiln_nearest_index(int dst, int in, int out)
{
    if (out == 2 * in) return dst >> 1;
    float scale = (float)in / (float)out;
    int src = (int)floorf((float)dst * scale);
    return src < in - 1 ? src : in - 1;
}

int kiln_nearest_exact_index(int dst, int in, int out)
{
    float scale = (float)in / (float)out;
    int src = (int)floorf(((float)dst + 0.5f) * scale);
    return src < in - 1 ? src : in - 1;
}

/* Bilinear: each target samples the source at (dst + 0.5) * scale - 0.5,
 * clamped at 0, between its two neighbours on each axis. */
static void bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    float sy = (float)sh / (float)dh, sx = (float)sw / (float)dw;
    for (int y = 0; y < dh; y++) {
        float fy = fmaxf(((float)y + 0.5f) * sy - 0.5f, 0.0f);
        int y0 = (int)fy, y1 = y0 + (y0 < sh - 1);
        float ly = fy - (float)y0;
        for (int x = 0; x < dw; x++) {
            float fx = fmaxf(((float)x + 0.5f) * sx - 0.5f, 0.0f);
            int x0 = (int)fx, x1 = x0 + (x0 < sw - 1);
            float lx = fx - (float)x0;
            dst[(size_t)y * dw + x] =
                (1.0f - ly) * ((1.0f - lx) * src[(size_t)y0 * sw + x0] + lx * src[(size_t)y0 * sw + x1]) +
                ly * ((1.0f - lx) * src[(size_t)y1 * sw + x0] + lx * src[(size_t)y1 * sw + x1]);
        }
    }
}

/* Keys' cubic convolution weights for the four neighbours of a sample t in
 * [0, 1) past the second one. */
static void cubic_weights(float t, float w[4])
{
    const float a = -0.75f;
    float t1 = t + 1.0f, t2 = 1.0f - t, t3 = 2.0f - t;
    w[0] = ((a * t1 - 5.0f * a) * t1 + 8.0f * a) * t1 - 4.0f * a;
    w[1] = ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1.0f;
    w[2] = ((a + 2.0f) * t2 - (a + 3.0f)) * t2 * t2 + 1.0f;
    w[3] = ((a * t3 - 5.0f * a) * t3 + 8.0f * a) * t3 - 4.0f * a;
}

static int clamp_index(int i, int n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

/* Bicubic: the sample at (dst + 0.5) * scale - 0.5 (not clamped), four
 * neighbours per axis with indices clamped to the edge; rows first. */
static void bicubic(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    float sy = (float)sh / (float)dh, sx = (float)sw / (float)dw;
    for (int y = 0; y < dh; y++) {
        float fy = ((float)y + 0.5f) * sy - 0.5f;
        int iy = (int)floorf(fy);
        float wy[4];
        cubic_weights(fy - (float)iy, wy);
        for (int x = 0; x < dw; x++) {
            float fx = ((float)x + 0.5f) * sx - 0.5f;
            int ix = (int)floorf(fx);
            float wx[4], rows[4];
            cubic_weights(fx - (float)ix, wx);
            for (int j = 0; j < 4; j++) {
                const float *row = src + (size_t)clamp_index(iy - 1 + j, sh) * sw;
                rows[j] = row[clamp_index(ix - 1, sw)] * wx[0] + row[clamp_index(ix, sw)] * wx[1] +
                          row[clamp_index(ix + 1, sw)] * wx[2] + row[clamp_index(ix + 2, sw)] * wx[3];
            }
            dst[(size_t)y * dw + x] = rows[0] * wy[0] + rows[1] * wy[1] + rows[2] * wy[2] + rows[3] * wy[3];
        }
    }
}

void kiln_area_window(int dst, int in, int out, int *first, int *end)
{
    *first = (int)((int64_t)dst * in / out);
    *end = (int)(((int64_t)dst + 1) * in + out - 1) / out;
}

/* torch's adaptive average pooling: each target the mean of its window,
 * summed row by row in float32 and divided by the window's height, then by
 * its width. */
static void area(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    for (int y = 0; y < dh; y++) {
        int y0, y1;
        kiln_area_window(y, sh, dh, &y0, &y1);
        for (int x = 0; x < dw; x++) {
            int x0, x1;
            kiln_area_window(x, sw, dw, &x0, &x1);
            float sum = 0.0f;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) sum += src[(size_t)iy * sw + ix];
            dst[(size_t)y * dw + x] = sum / (float)(y1 - y0) / (float)(x1 - x0);
        }
    }
}

/* The normalised vectors' terms as torch forms them: each divided by its
 * norm, zero where that is zero. */
void kiln_slerp(const float *a, const float *b, size_t stride, int c, float r, float *out, size_t out_stride)
{
    float na = 0.0f, nb = 0.0f, dot = 0.0f;
    for (int k = 0; k < c; k++) na += a[k * stride] * a[k * stride], nb += b[k * stride] * b[k * stride];
    na = sqrtf(na), nb = sqrtf(nb);
    for (int k = 0; k < c; k++) dot += (na == 0.0f ? 0.0f : a[k * stride] / na) * (nb == 0.0f ? 0.0f : b[k * stride] / nb);
    if (dot > (float)(1.0 - 1e-5)) {
        for (int k = 0; k < c; k++) out[k * out_stride] = a[k * stride];
        return;
    }
    if (dot < (float)(1e-5 - 1.0)) {
        for (int k = 0; k < c; k++) out[k * out_stride] = a[k * stride] * (1.0f - r) + b[k * stride] * r;
        return;
    }
    const float omega = acosf(dot), so = sinf(omega);
    const float wa = sinf((1.0f - r) * omega) / so, wb = sinf(r * omega) / so, length = na * (1.0f - r) + nb * r;
    for (int k = 0; k < c; k++)
        out[k * out_stride] =
            (wa * (na == 0.0f ? 0.0f : a[k * stride] / na) + wb * (nb == 0.0f ? 0.0f : b[k * stride] / nb)) * length;
}

void kiln_bislerp_tap(int in, int out, int o, int *first, int *second, float *ratio)
{
    /* the bilinear sample of one row, as bilinear() takes it: the ramp's values are its indices */
    const float scale = (float)in / (float)out, f = fmaxf(((float)o + 0.5f) * scale - 0.5f, 0.0f);
    const int i0 = (int)f, i1 = i0 + (i0 < in - 1);
    const float l = f - (float)i0, next0 = (float)(i0 + 1 < in ? i0 + 1 : in - 1),
                next1 = (float)(i1 + 1 < in ? i1 + 1 : in - 1);
    const float at = (1.0f - l) * (float)i0 + l * (float)i1, at_next = (1.0f - l) * next0 + l * next1;
    *first = (int)at, *ratio = at - floorf(at), *second = (int)at_next;
}

/* One axis of bislerp: each target's taps. */
static void bislerp_axis(int in, int out, int *first, int *second, float *ratio)
{
    for (int o = 0; o < out; o++) kiln_bislerp_tap(in, out, o, &first[o], &second[o], &ratio[o]);
}

kiln_status kiln_bislerp(const float *src, int images, int channels, int sh, int sw, float *dst, int dh, int dw)
{
    const size_t wide = (size_t)sh * dw, plane = (size_t)dh * dw;
    int *index = malloc((size_t)2 * (dw + dh) * sizeof *index);
    float *ratio = malloc((size_t)(dw + dh) * sizeof *ratio), *rows = malloc((size_t)channels * wide * sizeof *rows);
    kiln_status st = index && ratio && rows ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "bislerp: out of host memory");
    int *x1 = index, *x2 = x1 + dw, *y1 = x2 + dw, *y2 = y1 + dh;
    float *rx = ratio, *ry = ratio + dw;
    if (st == KILN_OK) bislerp_axis(sw, dw, x1, x2, rx), bislerp_axis(sh, dh, y1, y2, ry);
    for (int n = 0; n < images && st == KILN_OK; n++) {
        const float *s = src + (size_t)n * channels * sh * sw; /* the width first, then the height */
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < dw; x++)
                kiln_slerp(s + (size_t)y * sw + x1[x], s + (size_t)y * sw + x2[x], (size_t)sh * sw, channels, rx[x],
                           rows + (size_t)y * dw + x, wide);
        float *d = dst + (size_t)n * channels * plane;
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++)
                kiln_slerp(rows + (size_t)y1[y] * dw + x, rows + (size_t)y2[y] * dw + x, wide, channels, ry[y],
                           d + (size_t)y * dw + x, plane);
    }
    free(index);
    free(ratio);
    free(rows);
    return st;
}

void kiln_resample(const float *src, int planes, int sh, int sw, float *dst, int dh, int dw, kiln_resample_method m)
{
    for (int p = 0; p < planes; p++) {
        const float *s = src + (size_t)p * sh * sw;
        float *d = dst + (size_t)p * dh * dw;
        switch (m) {
        case KILN_RESAMPLE_NEAREST_EXACT:
            for (int y = 0; y < dh; y++) {
                const float *row = s + (size_t)kiln_nearest_exact_index(y, sh, dh) * sw;
                for (int x = 0; x < dw; x++) d[(size_t)y * dw + x] = row[kiln_nearest_exact_index(x, sw, dw)];
            }
            break;
        case KILN_RESAMPLE_NEAREST:
            for (int y = 0; y < dh; y++) {
                const float *row = s + (size_t)kiln_nearest_index(y, sh, dh) * sw;
                for (int x = 0; x < dw; x++) d[(size_t)y * dw + x] = row[kiln_nearest_index(x, sw, dw)];
            }
            break;
        case KILN_RESAMPLE_BILINEAR: bilinear(s, sh, sw, d, dh, dw); break;
        case KILN_RESAMPLE_BICUBIC: bicubic(s, sh, sw, d, dh, dw); break;
        case KILN_RESAMPLE_AREA: area(s, sh, sw, d, dh, dw); break;
        case KILN_RESAMPLE_BISLERP: /* it mixes channels (kiln_resample_images): NaN, never a quiet wrong value */
            for (size_t i = 0; i < (size_t)dh * dw; i++) d[i] = NAN;
            break;
        }
    }
}

/* Keys' cubic kernel with a = -0.5 (PIL's and torch's antialiasing one),
 * evaluated in double as torch's filter is and rounded to float. */
static float antialias_cubic(float x)
{
    const double a = -0.5, t = fabs((double)x);
    if (t < 1.0) return (float)(((a + 2.0) * t - (a + 3.0)) * t * t + 1.0);
    if (t < 2.0) return (float)((((t - 5.0) * t + 8.0) * t - 4.0) * a);
    return 0.0f;
}

/* The taps of one axis: target i reads `count[i]` sources from `first[i]`
 * with weights w[i * width ...]. */
typedef struct antialias_taps {
    int *first, *count;
    float *w;
    int width;
} antialias_taps;

static void antialias_taps_free(antialias_taps *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
}

static kiln_status antialias_taps_make(int in, int out, antialias_taps *t)
{
    const float scale = (float)in / (float)out;
    const float support = scale >= 1.0f ? 2.0f * scale : 2.0f, invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    t->width = (int)ceilf(support) * 2 + 1;
    t->first = malloc((size_t)out * sizeof *t->first);
    t->count = malloc((size_t)out * sizeof *t->count);
    t->w = calloc((size_t)out * t->width, sizeof *t->w);
    if (!t->first || !t->count || !t->w) {
        antialias_taps_free(t);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "resize: out of host memory");
    }
    for (int i = 0; i < out; i++) {
        /* torch's index arithmetic: a float centre, the sums around it in double */
        const float center = (float)(scale * (i + 0.5));
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        lo = lo > 0 ? lo : 0;
        hi = hi < in ? hi : in;
        float *w = t->w + (size_t)i * t->width, total = 0.0f;
        for (int j = 0; j < hi - lo; j++) total += w[j] = antialias_cubic((float)((j + lo - center + 0.5) * invscale));
        if (total != 0.0f)
            for (int j = 0; j < hi - lo; j++) w[j] /= total;
        t->first[i] = lo;
        t->count[i] = hi - lo;
    }
    return KILN_OK;
}

/* out[i] = sum_j in[(first[i] + j) * stride] * w[i][j], summed in order in float */
static float antialias_tap(const float *in, size_t stride, const antialias_taps *t, int i)
{
    const float *w = t->w + (size_t)i * t->width;
    const float *s = in + (size_t)t->first[i] * stride;
    float acc = s[0] * w[0];
    for (int j = 1; j < t->count[i]; j++) acc += s[(size_t)j * stride] * w[j];
    return acc;
}

kiln_status kiln_resample_antialias_bicubic(const float *src, int planes, int sh, int sw, float *dst, int dh, int dw)
{
    antialias_taps tx = {0}, ty = {0};
    float *rows = malloc((size_t)sh * dw * sizeof *rows); /* one plane with its columns resized */
    kiln_status st = rows ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "resize: out of host memory");
    if (st == KILN_OK) st = antialias_taps_make(sw, dw, &tx);
    if (st == KILN_OK) st = antialias_taps_make(sh, dh, &ty);
    for (int p = 0; st == KILN_OK && p < planes; p++) {
        const float *s = src + (size_t)p * sh * sw;
        float *d = dst + (size_t)p * dh * dw;
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < dw; x++) rows[(size_t)y * dw + x] = antialias_tap(s + (size_t)y * sw, 1, &tx, x);
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++) d[(size_t)y * dw + x] = antialias_tap(rows + x, (size_t)dw, &ty, y);
    }
    antialias_taps_free(&tx);
    antialias_taps_free(&ty);
    free(rows);
    return st;
}

kiln_status kiln_resample_images(const float *src, int images, int channels, int sh, int sw, float *dst, int dh, int dw,
                                 kiln_resample_method m)
{
    if (m == KILN_RESAMPLE_BISLERP) return kiln_bislerp(src, images, channels, sh, sw, dst, dh, dw);
    kiln_resample(src, images * channels, sh, sw, dst, dh, dw, m);
    return KILN_OK;
}

kiln_status kiln_resample_by(const float *latent, int images, int channels, int h, int w, double scale,
                             kiln_resample_method m, float **out, int *out_h, int *out_w)
{
    double H = nearbyint(h * scale), W = nearbyint(w * scale); /* the default rounding mode: half to even */
    if (!(scale > 0.0) || H < 1 || W < 1 || H > 4096 || W > 4096)
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent upscale: %dx%d by %g gives no latent of 1..4096", w, h, scale);
    *out_h = (int)H, *out_w = (int)W;
    if (!(*out = malloc((size_t)images * channels * *out_h * *out_w * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "latent upscale: out of host memory");
    kiln_status st = kiln_resample_images(latent, images, channels, h, w, *out, *out_h, *out_w, m);
    if (st != KILN_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}
