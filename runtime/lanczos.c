/* Pillow's LANCZOS resize of 8-bit pictures, which ComfyUI's "lanczos"
 * upscale method runs (comfy.utils.lanczos): per axis, each target pixel a
 * weighted sum of the source pixels under a Lanczos-3 window stretched by
 * the downscale factor, the weights normalised and held in fixed point,
 * the sums rounded and clipped to 8 bits; the rows first where the width
 * changes, then the columns. */
#include "image.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define FIXED_BITS 22 /* Pillow's PRECISION_BITS for 8-bit pixels: 32 - 8 - 2 */

static double sinc(double x)
{
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos3(double x) { return x >= -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0; }

/* One axis: for target pixel i, source pixels first[i] .. first[i] + count[i]
 * with weights w[i * taps ..], in fixed point. */
typedef struct {
    int taps;
    int *first, *count;
    int32_t *w;
} axis_weights;

static void free_weights(axis_weights *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
}

static kiln_status axis_weights_make(int in, int out, axis_weights *a)
{
    const double scale = (double)in / out, stretch = scale < 1.0 ? 1.0 : scale, support = 3.0 * stretch;
    a->taps = (int)ceil(support) * 2 + 1;
    a->first = malloc((size_t)out * sizeof *a->first);
    a->count = malloc((size_t)out * sizeof *a->count);
    a->w = calloc((size_t)out * a->taps, sizeof *a->w);
    double *k = malloc((size_t)a->taps * sizeof *k);
    if (!a->first || !a->count || !a->w || !k) {
        free(k);
        free_weights(a);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "lanczos: out of host memory");
    }
    for (int i = 0; i < out; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        double sum = 0.0;
        for (int x = 0; x < hi - lo; x++) sum += k[x] = lanczos3((x + lo - center + 0.5) / stretch);
        for (int x = 0; x < hi - lo; x++) { /* rounded away from zero, as Pillow's normalize_coeffs_8bpc */
            const double v = (sum != 0.0 ? k[x] / sum : k[x]) * (1 << FIXED_BITS);
            a->w[(size_t)i * a->taps + x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        a->first[i] = lo;
        a->count[i] = hi - lo;
    }
    free(k);
    return KILN_OK;
}

static uint8_t clip8(int32_t sum)
{
    const int32_t v = sum < 0 ? -1 : sum >> FIXED_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* dst (h x out_w) from src (h x in_w, `stride` pixels a row), along rows */
static void resample_rows(const uint8_t *src, int stride, int h, const axis_weights *a, int out_w, uint8_t *dst)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < out_w; x++)
            for (int c = 0; c < 3; c++) {
                int32_t sum = 1 << (FIXED_BITS - 1);
                const int32_t *w = a->w + (size_t)x * a->taps;
                for (int t = 0; t < a->count[x]; t++) sum += src[((size_t)y * stride + a->first[x] + t) * 3 + c] * w[t];
                dst[((size_t)y * out_w + x) * 3 + c] = clip8(sum);
            }
}

/* dst (out_h x w) from src (? x w), along columns */
static void resample_columns(const uint8_t *src, int w, const axis_weights *a, int out_h, uint8_t *dst)
{
    for (int y = 0; y < out_h; y++)
        for (int x = 0; x < 3 * w; x++) {
            int32_t sum = 1 << (FIXED_BITS - 1);
            const int32_t *k = a->w + (size_t)y * a->taps;
            for (int t = 0; t < a->count[y]; t++) sum += src[(size_t)(a->first[y] + t) * 3 * w + x] * k[t];
            dst[(size_t)y * 3 * w + x] = clip8(sum);
        }
}

kiln_status kiln_image_resize_lanczos(const kiln_image *img, int x0, int y0, int cw, int ch, int width, int height,
                                      kiln_image *out)
{
    if (width < 1 || height < 1 || cw < 1 || ch < 1 || x0 < 0 || y0 < 0 || x0 + cw > img->width ||
        y0 + ch > img->height)
        return kiln_fail(KILN_ERR_INVALID_ARG, "lanczos: %dx%d at (%d,%d) of a %dx%d picture to %dx%d", cw, ch, x0, y0,
                         img->width, img->height, width, height);
    axis_weights across = {0}, down = {0};
    TRY(axis_weights_make(cw, width, &across));
    kiln_status st = axis_weights_make(ch, height, &down);
    uint8_t *rows = st == KILN_OK ? malloc((size_t)3 * width * ch) : NULL;
    if (st == KILN_OK && !rows) st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "lanczos: out of host memory");
    if (st == KILN_OK) st = kiln_image_alloc(out, width, height);
    if (st == KILN_OK) {
        const uint8_t *src = img->pixels + ((size_t)y0 * img->width + x0) * 3;
        if (width != cw) /* the rows first where the width changes, each 8-bit before the columns */
            resample_rows(src, img->width, ch, &across, width, rows);
        else
            for (int y = 0; y < ch; y++) memcpy(rows + (size_t)y * 3 * width, src + (size_t)y * 3 * img->width, (size_t)3 * width);
        if (height != ch)
            resample_columns(rows, width, &down, height, out->pixels);
        else
            memcpy(out->pixels, rows, (size_t)3 * width * height);
    }
    free(rows);
    free_weights(&across);
    free_weights(&down);
    return st;
}
