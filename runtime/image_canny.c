/* ComfyUI's Canny node: kornia's canny on the picture's pixels / 255 in
 * float32, step by step as kornia computes it (its 0.9 rules): grey by
 * 0.299 R + 0.587 G + 0.114 B, a 5x5 Gaussian of sigma 1 (separable,
 * mirrored edges), the unnormalised Sobel gradient (repeated edges), its
 * magnitude sqrt(gx^2 + gy^2 + 1e-6), non-maximum suppression along the
 * gradient rounded to 45 degrees (ties kept toward the right and down, as
 * OpenCV), the two thresholds, and hysteresis: weak pixels 8-connected
 * through weak ones to a strong one become edges. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "image.h"
#include "kiln.h"
#include "status.h"

/* each product and sum rounded to float32 on its own, as torch does them */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define EPS 1e-6f

/* torch's "reflect" padding: the edge pixel is not repeated */
static int reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }
/* "replicate" padding */
static int clamp_index(int i, int n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

/* kornia's get_gaussian_kernel1d(5, 1.0) in float32 */
static void gaussian5(float k[5])
{
    float sum = 0.0f;
    for (int i = 0; i < 5; i++) {
        const float x = (float)(i - 2);
        k[i] = expf(-(x * x) / 2.0f);
    }
    for (int i = 0; i < 5; i++) sum += k[i];
    for (int i = 0; i < 5; i++) k[i] /= sum;
}

/* The grey picture blurred: the row pass first, then the column pass. */
static void grey_blurred(const float *rgb, int W, int H, float *grey, float *tmp)
{
    const size_t plane = (size_t)W * H;
    for (size_t i = 0; i < plane; i++) {
        float v = rgb[i] * 0.299f;
        v = v + rgb[plane + i] * 0.587f;
        grey[i] = v + rgb[2 * plane + i] * 0.114f;
    }
    float k[5];
    gaussian5(k);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float s = 0.0f;
            for (int t = 0; t < 5; t++) s += grey[(size_t)y * W + reflect(x + t - 2, W)] * k[t];
            tmp[(size_t)y * W + x] = s;
        }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float s = 0.0f;
            for (int t = 0; t < 5; t++) s += tmp[(size_t)reflect(y + t - 2, H) * W + x] * k[t];
            grey[(size_t)y * W + x] = s;
        }
}

/* kornia's direction k = 0..7 from +x toward +y in steps of 45 degrees */
static const int DY[8] = {0, 1, 1, 1, 0, -1, -1, -1}, DX[8] = {1, 1, 0, -1, -1, -1, 0, 1};

/* Whether the pixel survives against its neighbour in direction k: right
 * (0) and down (2) accept a tie. */
static bool beats(float m, float neighbour, int k) { return m > neighbour || ((k == 0 || k == 2) && m == neighbour); }

/* The magnitude after non-maximum suppression (mag; kept: scratch of its
 * size), and in level 0, 1 or 2 for below, between and above the
 * thresholds. */
static void suppressed_levels(const float *g, int W, int H, float low, float high, float *mag, float *kept,
                              uint8_t *level)
{
    const float border = sqrtf(EPS); /* the magnitude one pixel outside, where there is no gradient */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float gx = 0.0f, gy = 0.0f;
            static const float sx[3][3] = {{-1, 0, 1}, {-2, 0, 2}, {-1, 0, 1}}, sy[3][3] = {{-1, -2, -1}, {0, 0, 0}, {1, 2, 1}};
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    const float v = g[(size_t)clamp_index(y + a - 1, H) * W + clamp_index(x + b - 1, W)];
                    gx += v * sx[a][b];
                    gy += v * sy[a][b];
                }
            mag[(size_t)y * W + x] = sqrtf(gx * gx + gy * gy + EPS);
            /* the direction, kept for the next pass in level's place */
            const float turns = nearbyintf(atan2f(gy, gx) * (float)(4.0 / M_PI));
            level[(size_t)y * W + x] = (uint8_t)(((int)turns % 8 + 8) % 8);
        }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t i = (size_t)y * W + x;
            const int k = level[i], back = (k + 4) % 8;
            const float m = mag[i];
            const int ya = y + DY[k], xa = x + DX[k], yb = y + DY[back], xb = x + DX[back];
            const float na = ya < 0 || ya >= H || xa < 0 || xa >= W ? border : mag[(size_t)ya * W + xa];
            const float nb = yb < 0 || yb >= H || xb < 0 || xb >= W ? border : mag[(size_t)yb * W + xb];
            kept[i] = beats(m, na, k) && beats(m, nb, back) && m > border ? m : 0.0f;
        }
    for (size_t i = 0; i < (size_t)W * H; i++) {
        mag[i] = kept[i];
        level[i] = (uint8_t)((mag[i] > low) + (mag[i] > high));
    }
}

/* Hysteresis: every weak pixel reached from a strong one through weak
 * 8-neighbours becomes strong, as kornia's rounds repeated until nothing
 * changes make it. */
static void hysteresis(uint8_t *level, int W, int H, int32_t *stack)
{
    size_t top = 0;
    for (size_t i = 0; i < (size_t)W * H; i++)
        if (level[i] == 2) stack[top++] = (int32_t)i;
    while (top) {
        const int32_t i = stack[--top];
        const int y = i / W, x = i % W;
        for (int k = 0; k < 8; k++) {
            const int yy = y + DY[k], xx = x + DX[k];
            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
            const int32_t j = yy * W + xx;
            if (level[j] == 1) level[j] = 2, stack[top++] = j;
        }
    }
}

kiln_status kiln_image_canny(const kiln_image *img, double low_threshold, double high_threshold, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!img || !img->pixels || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "Canny: no picture or place");
    if (!(low_threshold > 0.0 && low_threshold <= high_threshold && isfinite(high_threshold)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "Canny: thresholds %g and %g (0 < low <= high)", low_threshold,
                         high_threshold);
    const int W = img->width, H = img->height;
    if (img->channels != 3 || W < 3 || H < 3 || W > KILN_IMAGE_MAX_SIDE || H > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "Canny: a picture of %dx%d, %d channels (3, at least 3x3: the blur "
                         "mirrors two pixels)", W, H, img->channels);
    const size_t plane = (size_t)W * H;
    float *rgb = malloc(3 * plane * sizeof *rgb), *grey = malloc(plane * sizeof *grey),
          *mag = malloc(plane * sizeof *mag);
    uint8_t *level = malloc(plane);
    int32_t *stack = malloc(plane * sizeof *stack);
    kiln_status st = rgb && grey && mag && level && stack ? KILN_OK
                                                          : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "Canny: out of host memory");
    if (st == KILN_OK) {
        kiln_image_to_unit(img, rgb);
        grey_blurred(rgb, W, H, grey, mag);
        /* thresholds compare in float32, as torch compares a float32 tensor with a Python float */
        suppressed_levels(grey, W, H, (float)low_threshold, (float)high_threshold, mag, rgb, level);
        hysteresis(level, W, H, stack);
        st = kiln_image_alloc(out, W, H);
    }
    for (size_t i = 0; st == KILN_OK && i < plane; i++)
        out->pixels[3 * i] = out->pixels[3 * i + 1] = out->pixels[3 * i + 2] = level[i] == 2 ? 255 : 0;
    free(rgb), free(grey), free(mag), free(level), free(stack);
    return st;
}
