/* ComfyUI's image nodes that lay pictures out (comfy_extras/nodes_images.py):
 * ImageStitch, ResizeAndPadImage and ImageScaleToMaxDimension, their
 * resizes kiln_image_scale's (common_upscale without a crop). Pictures are
 * bytes; the fills are the node's 1.0 or 0.0, bytes 255 or 0. */
#include <math.h>
#include <string.h>

#include "image.h"
#include "kiln.h"
#include "status.h"

static bool picture_ok(const kiln_image *img)
{
    return img && img->pixels && img->channels == 3 && img->width >= 1 && img->height >= 1 &&
           img->width <= KILN_IMAGE_MAX_SIDE && img->height <= KILN_IMAGE_MAX_SIDE;
}

/* src copied into dst with its top left corner at (x, y) (inside dst). */
static void paste(const kiln_image *src, kiln_image *dst, int x, int y)
{
    for (int row = 0; row < src->height; row++)
        memcpy(dst->pixels + 3 * ((size_t)(y + row) * dst->width + x), src->pixels + 3 * (size_t)row * src->width,
               3 * (size_t)src->width);
}

static void fill(kiln_image *img, int x, int y, int width, int height, const uint8_t rgb[3])
{
    for (int row = y; row < y + height; row++)
        for (int col = x; col < x + width; col++) memcpy(img->pixels + 3 * ((size_t)row * img->width + col), rgb, 3);
}

kiln_status kiln_image_stitch(const kiln_image *image1, const kiln_image *image2, const char *direction,
                              bool match_size, int spacing, const char *spacing_color, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!picture_ok(image1) || !picture_ok(image2) || !direction || !spacing_color || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageStitch: no pictures, direction, spacing color or place");
    static const char *const directions[] = {"right", "down", "left", "up"};
    int d = 0;
    while (d < 4 && strcmp(direction, directions[d]) != 0) d++;
    if (d == 4) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageStitch: direction '%s' (right, down, left or up)", direction);
    static const char *const colors[] = {"white", "black", "red", "green", "blue"};
    static const uint8_t rgbs[5][3] = {{255, 255, 255}, {0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    int c = 0;
    while (c < 5 && strcmp(spacing_color, colors[c]) != 0) c++;
    if (c == 5)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageStitch: spacing color '%s' (white, black, red, green or blue)",
                         spacing_color);
    if (spacing < 0 || spacing > 1024) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageStitch: spacing %d (0 to 1024)", spacing);
    const bool across = d == 0 || d == 2; /* side by side; else one above the other */

    kiln_image resized = {0};
    const kiln_image *second = image2;
    if (match_size) { /* image2 to image1's height (or width), its aspect ratio kept as Python's int() of it */
        const double aspect = (double)image2->width / image2->height;
        const double w = across ? image1->height * aspect : image1->width, h = across ? image1->height
                                                                                       : image1->width / aspect;
        if (!(w >= 1.0 && h >= 1.0 && w <= KILN_IMAGE_MAX_SIDE && h <= KILN_IMAGE_MAX_SIDE))
            return kiln_fail(KILN_ERR_INVALID_ARG, "ImageStitch: image2 (%dx%d) matched to image1 (%dx%d) is %gx%g",
                             image2->width, image2->height, image1->width, image1->height, w, h);
        TRY(kiln_image_scale(image2, "lanczos", (int)w, (int)h, false, &resized));
        second = &resized;
    }
    /* the space rounded up to even; where the sizes still differ, the smaller centred on the larger's side,
       padded with the colour's grey (a colour: black) */
    const int gap = spacing + spacing % 2;
    const int width = across ? image1->width + gap + second->width
                             : (image1->width > second->width ? image1->width : second->width);
    const int height = across ? (image1->height > second->height ? image1->height : second->height)
                              : image1->height + gap + second->height;
    kiln_status st = width <= KILN_IMAGE_MAX_SIDE && height <= KILN_IMAGE_MAX_SIDE
                         ? kiln_image_alloc(out, width, height)
                         : kiln_fail(KILN_ERR_INVALID_ARG, "ImageStitch: a picture of %dx%d", width, height);
    if (st == KILN_OK) {
        const uint8_t *pad = c < 2 ? rgbs[c] : rgbs[1];
        fill(out, 0, 0, width, height, pad);
        const kiln_image *first = d < 2 ? image1 : second, *last = d < 2 ? second : image1;
        if (across) {
            paste(first, out, 0, (height - first->height) / 2);
            fill(out, first->width, 0, gap, height, rgbs[c]);
            paste(last, out, first->width + gap, (height - last->height) / 2);
        } else {
            paste(first, out, (width - first->width) / 2, 0);
            fill(out, 0, first->height, width, gap, rgbs[c]);
            paste(last, out, (width - last->width) / 2, first->height + gap);
        }
    }
    kiln_image_free(&resized);
    return st;
}

kiln_status kiln_image_resize_and_pad(const kiln_image *img, int width, int height, const char *padding_color,
                                      const char *method, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!picture_ok(img) || !padding_color || !method || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ResizeAndPadImage: no picture, padding color, method or place");
    const bool white = strcmp(padding_color, "white") == 0;
    if (!white && strcmp(padding_color, "black") != 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ResizeAndPadImage: padding color '%s' (white or black)", padding_color);
    if (width < 1 || height < 1 || width > KILN_IMAGE_MAX_SIDE || height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ResizeAndPadImage: target %dx%d", width, height);
    const double scale_w = (double)width / img->width, scale_h = (double)height / img->height;
    const double scale = scale_w < scale_h ? scale_w : scale_h;
    const int new_width = (int)(img->width * scale), new_height = (int)(img->height * scale);
    if (new_width < 1 || new_height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ResizeAndPadImage: %dx%d fitted into %dx%d is %dx%d", img->width,
                         img->height, width, height, new_width, new_height);
    kiln_image resized;
    TRY(kiln_image_scale(img, method, new_width, new_height, false, &resized));
    kiln_status st = kiln_image_alloc(out, width, height);
    if (st == KILN_OK) {
        memset(out->pixels, white ? 255 : 0, (size_t)3 * width * height);
        paste(&resized, out, (width - new_width) / 2, (height - new_height) / 2);
    }
    kiln_image_free(&resized);
    return st;
}

kiln_status kiln_image_scale_to_max_dimension(const kiln_image *img, const char *method, int largest,
                                              kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!picture_ok(img) || !method || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageScaleToMaxDimension: no picture, method or place");
    if (largest < 1 || largest > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageScaleToMaxDimension: largest size %d (1 to %d)", largest,
                         KILN_IMAGE_MAX_SIDE);
    /* the other side as Python's round() (half to even, as nearbyint in the default rounding) */
    int width = largest, height = largest;
    if (img->height > img->width) width = (int)nearbyint((double)img->width / img->height * largest);
    else if (img->width > img->height) height = (int)nearbyint((double)img->height / img->width * largest);
    if (width < 1 || height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageScaleToMaxDimension: %dx%d scaled to a largest side of %d is "
                         "%dx%d", img->width, img->height, largest, width, height);
    return kiln_image_scale(img, method, width, height, false, out);
}
