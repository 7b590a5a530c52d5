/* MASK values and ComfyUI's mask nodes (LoadImageMask, SolidMask,
 * ImageToMask, MaskToImage, InvertMask, ThresholdMask, CropMask,
 * MaskComposite, FeatherMask, GrowMask), each in float32 as torch and
 * numpy compute them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "kiln.h"
#include "status.h"

/* each product and sum rounded to float32 on its own, as torch does them
   (GCC with -std=c17 never fuses them; clang would) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void kiln_mask_free(kiln_mask *mask)
{
    if (!mask) return;
    free(mask->weights);
    *mask = (kiln_mask){0};
}

static kiln_status mask_alloc(const char *what, int width, int height, kiln_mask *out)
{
    *out = (kiln_mask){0};
    if (width < 1 || height < 1 || width > KILN_IMAGE_MAX_SIDE || height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a mask of %dx%d (1 to %d a side)", what, width, height,
                         KILN_IMAGE_MAX_SIDE);
    if (!(out->weights = calloc((size_t)width * height, sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: a mask of %dx%d: out of host memory", what, width, height);
    out->width = width, out->height = height;
    return KILN_OK;
}

static kiln_status check_mask(const char *what, const kiln_mask *mask, const void *out)
{
    if (!mask || !mask->weights || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no mask or no place", what);
    if (mask->width < 1 || mask->height < 1 || mask->width > KILN_IMAGE_MAX_SIDE || mask->height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a mask of %dx%d", what, mask->width, mask->height);
    return KILN_OK;
}

/* A copy of the mask, for the nodes that change it in place. */
static kiln_status mask_copy(const char *what, const kiln_mask *mask, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    TRY(check_mask(what, mask, out));
    TRY(mask_alloc(what, mask->width, mask->height, out));
    memcpy(out->weights, mask->weights, (size_t)mask->width * mask->height * sizeof(float));
    return KILN_OK;
}

/* "red", "green", "blue" (and with alpha allowed "alpha": 3) as a channel index. */
static kiln_status channel_index(const char *what, const char *channel, bool alpha, int *index)
{
    static const char *const names[4] = {"red", "green", "blue", "alpha"};
    for (int c = 0; channel && c < (alpha ? 4 : 3); c++)
        if (strcmp(channel, names[c]) == 0) {
            *index = c;
            return KILN_OK;
        }
    return kiln_fail(KILN_ERR_INVALID_ARG, "%s: channel '%s' (red, green, blue%s)", what, channel ? channel : "(null)",
                     alpha ? " or alpha" : "");
}

/* A channel of an 8-bit picture over 255, inverted for alpha. */
static void weights_of_channel(const kiln_image *img, int channel, bool invert, float *weights)
{
    for (size_t i = 0; i < (size_t)img->width * img->height; i++) {
        const float v = (float)img->pixels[3 * i + channel] / 255.0f;
        weights[i] = invert ? 1.0f - v : v;
    }
}

/* The weights of a loaded file's channel c (3: alpha; zeros, 1 - 1, where
 * the file has none: Pillow's convert("RGBA") makes it opaque). */
static kiln_status weights_of_file(const char *path, const kiln_image *picture, const kiln_image *alpha, int c,
                                   kiln_mask *out)
{
    TRY(mask_alloc(path, picture->width, picture->height, out));
    if (c < 3 || alpha->pixels) weights_of_channel(c < 3 ? picture : alpha, c % 3, c == 3, out->weights);
    return KILN_OK;
}

kiln_status kiln_mask_load(const char *path, const char *channel, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    if (!path || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_load: no path or no place for the mask");
    int c = 0;
    TRY(channel_index("kiln_mask_load", channel, true, &c));
    kiln_image picture, alpha;
    TRY(kiln_image_load_alpha(path, &picture, &alpha, NULL));
    kiln_status st = weights_of_file(path, &picture, &alpha, c, out);
    kiln_image_free(&picture);
    kiln_image_free(&alpha);
    return st;
}

kiln_status kiln_image_load_with_mask(const char *path, kiln_image *image, kiln_mask *mask)
{
    if (image) *image = (kiln_image){0};
    if (mask) *mask = (kiln_mask){0};
    if (!path || !image || !mask)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_image_load_with_mask: no path or no place for the image or mask");
    kiln_image alpha;
    bool color_key;
    TRY(kiln_image_load_alpha(path, image, &alpha, &color_key));
    /* the node reads alpha where Pillow keeps it as a band or a palette's transparency, not a colour key's */
    kiln_status st = alpha.pixels && !color_key ? weights_of_file(path, image, &alpha, 3, mask)
                                                : kiln_mask_solid(0.0f, 64, 64, mask);
    kiln_image_free(&alpha);
    if (st != KILN_OK) kiln_image_free(image);
    return st;
}

kiln_status kiln_mask_solid(float value, int width, int height, kiln_mask *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_solid: no place for the mask");
    if (!(value >= 0.0f && value <= 1.0f))
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_solid: value %g (0 to 1)", (double)value);
    TRY(mask_alloc("kiln_mask_solid", width, height, out));
    for (size_t i = 0; i < (size_t)width * height; i++) out->weights[i] = value;
    return KILN_OK;
}

kiln_status kiln_mask_from_image(const kiln_image *img, const char *channel, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    if (!img || !img->pixels || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_from_image: no image or place");
    int c = 0;
    TRY(channel_index("kiln_mask_from_image", channel, false, &c));
    TRY(mask_alloc("kiln_mask_from_image", img->width, img->height, out));
    weights_of_channel(img, c, false, out->weights);
    return KILN_OK;
}

kiln_status kiln_mask_from_color(const kiln_image *img, uint32_t color, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    if (!img || !img->pixels || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageColorToMask: no image or place");
    if (color > 0xFFFFFF) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageColorToMask: color 0x%X (0 to 0xFFFFFF)", color);
    TRY(mask_alloc("ImageColorToMask", img->width, img->height, out));
    /* the node rounds 255 x each channel back to its byte */
    for (size_t i = 0; i < (size_t)img->width * img->height; i++) {
        const uint8_t *p = img->pixels + 3 * i;
        out->weights[i] = ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) == color ? 1.0f : 0.0f;
    }
    return KILN_OK;
}

kiln_status kiln_mask_to_image(const kiln_mask *mask, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    TRY(check_mask("kiln_mask_to_image", mask, out));
    TRY(kiln_image_alloc(out, mask->width, mask->height));
    for (size_t i = 0; i < (size_t)mask->width * mask->height; i++)
        memset(out->pixels + 3 * i, kiln_image_u8_from_unit(mask->weights[i]), 3);
    return KILN_OK;
}

kiln_status kiln_mask_picture(const kiln_mask *mask, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    TRY(check_mask("kiln_mask_picture", mask, out));
    TRY(kiln_image_alloc(out, mask->width, mask->height));
    for (size_t i = 0; i < (size_t)mask->width * mask->height; i++) {
        const float v = mask->weights[i] * 255.0f;
        memset(out->pixels + 3 * i, v > 0.0f ? (v < 255.0f ? (int)lrintf(v) : 255) : 0, 3);
    }
    return KILN_OK;
}

kiln_status kiln_mask_invert(const kiln_mask *mask, kiln_mask *out)
{
    TRY(mask_copy("kiln_mask_invert", mask, out));
    for (size_t i = 0; i < (size_t)out->width * out->height; i++) out->weights[i] = 1.0f - out->weights[i];
    return KILN_OK;
}

kiln_status kiln_mask_threshold(const kiln_mask *mask, float value, kiln_mask *out)
{
    TRY(mask_copy("kiln_mask_threshold", mask, out));
    for (size_t i = 0; i < (size_t)out->width * out->height; i++) out->weights[i] = out->weights[i] > value;
    return KILN_OK;
}

kiln_status kiln_mask_crop(const kiln_mask *mask, int x, int y, int width, int height, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    TRY(check_mask("kiln_mask_crop", mask, out));
    if (x < 0 || y < 0 || width < 1 || height < 1 || x >= mask->width || y >= mask->height)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_crop: %dx%d at (%d, %d) leaves nothing of a %dx%d mask",
                         width, height, x, y, mask->width, mask->height);
    const int w = width < mask->width - x ? width : mask->width - x;
    const int h = height < mask->height - y ? height : mask->height - y;
    TRY(mask_alloc("kiln_mask_crop", w, h, out));
    for (int r = 0; r < h; r++)
        memcpy(out->weights + (size_t)r * w, mask->weights + (size_t)(y + r) * mask->width + x, w * sizeof(float));
    return KILN_OK;
}

/* "and", "or" and "xor" on the weights rounded (half to even, as
 * torch.round) to 0 or 1. */
typedef enum {
    COMPOSITE_MULTIPLY, COMPOSITE_ADD, COMPOSITE_SUBTRACT, COMPOSITE_AND, COMPOSITE_OR, COMPOSITE_XOR
} composite_op;

static float composite_one(composite_op op, float d, float s)
{
    switch (op) {
    case COMPOSITE_MULTIPLY: return d * s;
    case COMPOSITE_ADD: return d + s;
    case COMPOSITE_SUBTRACT: return d - s;
    case COMPOSITE_AND: return nearbyintf(d) != 0.0f && nearbyintf(s) != 0.0f;
    case COMPOSITE_OR: return nearbyintf(d) != 0.0f || nearbyintf(s) != 0.0f;
    default: return (nearbyintf(d) != 0.0f) != (nearbyintf(s) != 0.0f);
    }
}

kiln_status kiln_mask_composite(const kiln_mask *destination, const kiln_mask *source, int x, int y,
                                const char *operation, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    static const char *const names[] = {"multiply", "add", "subtract", "and", "or", "xor"};
    int op = -1;
    for (int k = 0; operation && k < 6; k++)
        if (strcmp(operation, names[k]) == 0) op = k;
    if (op < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_composite: operation '%s' (multiply, add, subtract, and, or, "
                         "xor)", operation ? operation : "(null)");
    TRY(check_mask("kiln_mask_composite", source, out));
    if (x < 0 || y < 0) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_composite: a place (%d, %d) before the "
                                         "destination's corner", x, y);
    TRY(mask_copy("kiln_mask_composite", destination, out));
    const int right = x + source->width < out->width ? x + source->width : out->width;
    const int bottom = y + source->height < out->height ? y + source->height : out->height;
    for (int r = y; r < bottom; r++)
        for (int c = x; c < right; c++) {
            float *d = &out->weights[(size_t)r * out->width + c];
            *d = composite_one((composite_op)op, *d, source->weights[(size_t)(r - y) * source->width + (c - x)]);
        }
    for (size_t i = 0; i < (size_t)out->width * out->height; i++) {
        float *d = &out->weights[i];
        *d = *d < 0.0f ? 0.0f : *d > 1.0f ? 1.0f : *d;
    }
    return KILN_OK;
}

/* Column (or row) `at` of the mask times rate. */
static void scale_line(kiln_mask *m, bool column, int at, float rate)
{
    const int n = column ? m->height : m->width;
    for (int k = 0; k < n; k++) m->weights[column ? (size_t)k * m->width + at : (size_t)at * m->width + k] *= rate;
}

kiln_status kiln_mask_feather(const kiln_mask *mask, int left, int top, int right, int bottom, kiln_mask *out)
{
    if (out) *out = (kiln_mask){0};
    if (left < 0 || top < 0 || right < 0 || bottom < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_mask_feather: a negative fade (%d, %d, %d, %d)", left, top, right,
                         bottom);
    TRY(mask_copy("kiln_mask_feather", mask, out));
    const int W = out->width, H = out->height;
    left = left < W ? left : W, right = right < W ? right : W;
    top = top < H ? top : H, bottom = bottom < H ? bottom : H;
    /* the node's rates in double, each product rounded to float32; its
       right and bottom fades index from the end as Python's -k, so their
       first step (k = 0) lands on the first column or row */
    for (int k = 0; k < left; k++) scale_line(out, true, k, (float)((k + 1.0) / left));
    for (int k = 0; k < right; k++) scale_line(out, true, k ? W - k : 0, (float)((k + 1.0) / right));
    for (int k = 0; k < top; k++) scale_line(out, false, k, (float)((k + 1.0) / top));
    for (int k = 0; k < bottom; k++) scale_line(out, false, k ? H - k : 0, (float)((k + 1.0) / bottom));
    return KILN_OK;
}

kiln_status kiln_mask_grow(const kiln_mask *mask, int expand, bool tapered_corners, kiln_mask *out)
{
    TRY(mask_copy("kiln_mask_grow", mask, out));
    const int W = out->width, H = out->height;
    float *next = malloc((size_t)W * H * sizeof *next);
    if (!next) {
        kiln_mask_free(out);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_mask_grow: out of host memory");
    }
    /* scipy's "reflect" edge repeats the edge pixel, which is in the
       footprint already, so the pixels past the edge change nothing; after
       W + H steps nothing moves any more */
    const int steps = abs(expand) < W + H ? abs(expand) : W + H;
    for (int s = 0; s < steps; s++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float v = out->weights[(size_t)y * W + x];
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        const int yy = y + dy, xx = x + dx;
                        if ((dx && dy && tapered_corners) || yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                        const float u = out->weights[(size_t)yy * W + xx];
                        v = expand > 0 ? (u > v ? u : v) : (u < v ? u : v);
                    }
                next[(size_t)y * W + x] = v;
            }
        memcpy(out->weights, next, (size_t)W * H * sizeof *next);
    }
    free(next);
    return KILN_OK;
}
