/* ComfyUI's ImageMorphology node (kornia.morphology with a flat square
 * kernel of ones): erosion and dilation are the minimum and maximum over
 * the kernel's window, the picture's outside left out (kornia's "geodesic"
 * border); open, close, gradient, top_hat and bottom_hat are made of them
 * as kornia makes them, on the pixels / 255 in float32, back to bytes by
 * SaveImage's rule. A square of ones is two passes of a row each, and a
 * row's extreme over a sliding window is van Herk's and Gil-Werman's: a
 * few comparisons a pixel, whatever the kernel's size. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "kiln.h"
#include "status.h"

/* each difference rounded to float32 on its own, as torch does them */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static float pick(float a, float b, bool max) { return max ? fmaxf(a, b) : fminf(a, b); }

/* out[i * stride] = the extreme of in[(i - before .. i + after) * stride]
 * within 0..n-1. The row is padded with the extreme's identity, so that the
 * outside never wins; g and h: scratch of n + before + after. */
static void run_extreme(const float *in, size_t stride, int n, int before, int after, bool max, float *out,
                        float *g, float *h)
{
    const int k = before + after + 1, len = n + before + after;
    const float identity = max ? -INFINITY : INFINITY;
#define PADDED(p) ((p) - before >= 0 && (p) - before < n ? in[(size_t)((p) - before) * stride] : identity)
    for (int p = 0; p < len; p++) g[p] = p % k == 0 ? PADDED(p) : pick(g[p - 1], PADDED(p), max);
    for (int p = len - 1; p >= 0; p--) h[p] = p % k == k - 1 || p == len - 1 ? PADDED(p) : pick(h[p + 1], PADDED(p), max);
#undef PADDED
    for (int i = 0; i < n; i++) out[(size_t)i * stride] = pick(h[i], g[i + k - 1], max);
}

/* Dilation (max) or erosion (min) of each plane by a k x k square: kornia's
 * window reaches k - 1 - k/2 before a pixel and k/2 after it for a
 * dilation, the other way round for an erosion (the same for odd k). */
static void extreme(const float *in, float *out, int planes, int W, int H, int k, bool max, float *row, float *g,
                    float *h)
{
    const int o = k / 2, before = max ? k - 1 - o : o, after = k - 1 - before;
    for (int c = 0; c < planes; c++) {
        const float *src = in + (size_t)c * W * H;
        float *dst = out + (size_t)c * W * H;
        for (int y = 0; y < H; y++) run_extreme(src + (size_t)y * W, 1, W, before, after, max, row + (size_t)y * W, g, h);
        for (int x = 0; x < W; x++) run_extreme(row + x, (size_t)W, H, before, after, max, dst + x, g, h);
    }
}

kiln_status kiln_image_morphology(const kiln_image *img, const char *operation, int kernel_size, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!img || !img->pixels || !operation || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageMorphology: no picture, operation or place");
    static const char *const names[] = {"erode", "dilate", "open", "close", "gradient", "top_hat", "bottom_hat"};
    int op = -1;
    for (int i = 0; i < 7; i++)
        if (strcmp(operation, names[i]) == 0) op = i;
    if (op < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageMorphology: operation '%s': erode, dilate, open, close, gradient, "
                         "top_hat or bottom_hat", operation);
    if (kernel_size < 3 || kernel_size > 999)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageMorphology: kernel_size %d (3 to 999)", kernel_size);
    const int W = img->width, H = img->height;
    if (img->channels != 3 || W < 1 || H < 1 || W > KILN_IMAGE_MAX_SIDE || H > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageMorphology: a picture of %dx%d, %d channels", W, H, img->channels);
    const size_t n = (size_t)3 * W * H, longest = (size_t)(W > H ? W : H) + (size_t)kernel_size;
    float *x = malloc(n * sizeof *x), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b),
          *row = malloc((size_t)W * H * sizeof *row), *g = malloc(longest * sizeof *g), *h = malloc(longest * sizeof *h);
    kiln_status st = x && a && b && row && g && h ? KILN_OK
                                                  : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ImageMorphology: out of host memory");
    if (st == KILN_OK) {
        kiln_image_to_unit(img, x);
        const int k = kernel_size;
        switch (op) {
        case 0: extreme(x, a, 3, W, H, k, false, row, g, h); break;
        case 1: extreme(x, a, 3, W, H, k, true, row, g, h); break;
        case 4: /* gradient: dilation less erosion */
            extreme(x, a, 3, W, H, k, true, row, g, h);
            extreme(x, b, 3, W, H, k, false, row, g, h);
            for (size_t i = 0; i < n; i++) a[i] = a[i] - b[i];
            break;
        default: { /* open: the erosion dilated; close: the dilation eroded; top_hat: the picture less its
                      opening; bottom_hat: its closing less the picture */
            const bool closing = op == 3 || op == 6;
            extreme(x, b, 3, W, H, k, closing, row, g, h);
            extreme(b, a, 3, W, H, k, !closing, row, g, h);
            for (size_t i = 0; op >= 5 && i < n; i++) a[i] = op == 5 ? x[i] - a[i] : a[i] - x[i];
            break;
        }
        }
        st = kiln_image_from_unit(a, H, W, out);
    }
    free(x), free(a), free(b), free(row), free(g), free(h);
    return st;
}
