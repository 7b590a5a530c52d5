#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"nearest-exact", "bilinear", "bicubic"};

bool kiln_resample_from_name(const char *name, kiln_resample_method *out)
{
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (kiln_resample_method)i;
            return true;
        }
    return false;
}

const char *kiln_resample_name(kiln_resample_method m) { return names[m]; }

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
        case KILN_RESAMPLE_BILINEAR: bilinear(s, sh, sw, d, dh, dw); break;
        case KILN_RESAMPLE_BICUBIC: bicubic(s, sh, sw, d, dh, dw); break;
        }
    }
}

kiln_status kiln_latent_upscale_by(const float *latent, int planes, int h, int w, double scale, kiln_resample_method m,
                                   float **out, int *out_h, int *out_w)
{
    double H = nearbyint(h * scale), W = nearbyint(w * scale); /* the default rounding mode: half to even */
    if (!(scale > 0.0) || H < 1 || W < 1 || H > 4096 || W > 4096)
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent upscale: %dx%d by %g gives no latent of 1..4096", w, h, scale);
    *out_h = (int)H, *out_w = (int)W;
    if (!(*out = malloc((size_t)planes * *out_h * *out_w * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "latent upscale: out of host memory");
    kiln_resample(latent, planes, h, w, *out, *out_h, *out_w, m);
    return KILN_OK;
}
