/* ComfyUI's image nodes that filter pictures: EmptyImage, ImageInvert,
 * ImageBlend, ImageBlur and ImageSharpen, each on the pixels / 255 in
 * float32 as torch computes them, back to bytes by SaveImage's rule; and
 * ImageCompositeMasked, ImageFlip and ImageRotate, the latent nodes' code on
 * those planes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "kiln.h"
#include "latent.h"
#include "resample.h"
#include "rng.h"
#include "status.h"

/* each product and sum rounded to float32 on its own, as torch does them
   (GCC with -std=c17 never fuses them; clang would) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The picture as three float planes in [0, 1] (*planes malloc'd). */
static kiln_status planes_of(const char *what, const kiln_image *img, float **planes)
{
    if (!img || !img->pixels) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no picture", what);
    if (img->width < 1 || img->height < 1 || img->width > KILN_IMAGE_MAX_SIDE || img->height > KILN_IMAGE_MAX_SIDE ||
        img->channels != 3)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a picture of %dx%d, %d channels", what, img->width, img->height,
                         img->channels);
    if (!(*planes = malloc((size_t)3 * img->width * img->height * sizeof **planes)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    kiln_image_to_unit(img, *planes);
    return KILN_OK;
}

/* The planes back to a picture, freed. */
static kiln_status picture_of(float *planes, int width, int height, kiln_image *out)
{
    kiln_status st = kiln_image_from_unit(planes, height, width, out);
    free(planes);
    return st;
}

/* A picture's planes as a latent of one image of three channels: ComfyUI's
 * image nodes run the latent nodes' code on them. */
static kiln_latent as_latent(float *planes, const kiln_image *img)
{
    return (kiln_latent){.data = planes, .batch = 1, .channels = 3, .height = img->height, .width = img->width};
}

/* A latent node's result back to a picture, freed. */
static kiln_status picture_of_latent(kiln_latent *made, kiln_image *out)
{
    kiln_status st = kiln_image_from_unit(made->data, made->height, made->width, out);
    kiln_latent_free(made);
    return st;
}

kiln_status kiln_image_composite_masked(const kiln_image *destination, const kiln_image *source, int x, int y,
                                        bool resize_source, const kiln_mask *mask, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageCompositeMasked: no place for the picture");
    if (x < 0 || y < 0 || (mask && !mask->weights))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageCompositeMasked: x %d and y %d (at or past 0)%s", x, y,
                         mask && !mask->weights ? ", a mask without weights" : "");
    /* LatentCompositeMasked's code, a pixel to a place, as ComfyUI's composite() serves both */
    float *to, *from;
    TRY(planes_of("ImageCompositeMasked", destination, &to));
    kiln_status st = planes_of("ImageCompositeMasked", source, &from);
    kiln_latent made = {0};
    if (st == KILN_OK) {
        const kiln_latent dst = as_latent(to, destination), src = as_latent(from, source);
        st = kiln_latent_composite_masked(&dst, &src, x, y, resize_source, mask ? mask->weights : NULL,
                                          mask ? mask->width : 0, mask ? mask->height : 0, &made);
        free(from);
    }
    free(to);
    return st == KILN_OK ? picture_of_latent(&made, out) : st;
}

kiln_status kiln_image_flip_rotate(const kiln_image *img, bool flip_rows, bool flip_columns, int quarter_turns,
                                   kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_image_flip_rotate: no place for the picture");
    /* LatentFlip's and LatentRotate's moves (each byte / 255 comes back to itself) */
    float *planes;
    TRY(planes_of("kiln_image_flip_rotate", img, &planes));
    const kiln_latent whole = as_latent(planes, img);
    kiln_latent moved = {0};
    kiln_status st = kiln_latent_flip_rotate(&whole, flip_rows, flip_columns, quarter_turns, &moved);
    free(planes);
    return st == KILN_OK ? picture_of_latent(&moved, out) : st;
}

kiln_status kiln_image_add_noise(const kiln_image *images, int count, uint64_t seed, double strength,
                                 kiln_image *out)
{
    if (!images || !out || count < 1 || count > KILN_LATENT_MAX_BATCH)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageAddNoise: no pictures, %d of them, or no place", count);
    if (!(strength >= 0.0 && strength <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageAddNoise: strength %g (0 to 1)", strength);
    for (int k = 0; k < count; k++) out[k] = (kiln_image){0};
    const int W = images[0].width, H = images[0].height;
    for (int k = 0; k < count; k++)
        if (images[k].width != W || images[k].height != H || !images[k].pixels || images[k].channels != 3)
            return kiln_fail(KILN_ERR_INVALID_ARG, "ImageAddNoise: picture %d of %dx%d in a batch of %dx%d", k,
                             images[k].width, images[k].height, W, H);
    const size_t per = (size_t)3 * W * H;
    float *noise = malloc(per * count * sizeof *noise);
    if (!noise) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ImageAddNoise: out of host memory");
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    kiln_rng_randn(&rng, noise, per * count); /* the batch's (B, H, W, C) at once, as the node draws it */
    const float s = (float)strength;
    kiln_status st = KILN_OK;
    for (int k = 0; k < count && st == KILN_OK; k++) {
        st = kiln_image_alloc(&out[k], W, H);
        for (size_t i = 0; st == KILN_OK && i < per; i++) {
            /* clamped to [0, 1] by the byte rule */
            out[k].pixels[i] = kiln_image_u8_from_unit((float)images[k].pixels[i] / 255.0f + s * noise[per * k + i]);
        }
    }
    free(noise);
    if (st != KILN_OK)
        for (int k = 0; k < count; k++) kiln_image_free(&out[k]);
    return st;
}

kiln_status kiln_image_empty(int width, int height, uint32_t color, kiln_image *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "EmptyImage: no place for the picture");
    *out = (kiln_image){0};
    if (color > 0xFFFFFF) return kiln_fail(KILN_ERR_INVALID_ARG, "EmptyImage: color 0x%X (0 to 0xFFFFFF)", color);
    TRY(kiln_image_alloc(out, width, height));
    for (int c = 0; c < 3; c++) { /* the node's channel / 255.0 in double, filled in as float32 */
        const float v = (float)((color >> (16 - 8 * c) & 0xFF) / 255.0);
        const uint8_t byte = kiln_image_u8_from_unit(v);
        for (size_t i = 0; i < (size_t)width * height; i++) out->pixels[3 * i + c] = byte;
    }
    return KILN_OK;
}

kiln_status kiln_image_invert(const kiln_image *img, kiln_image *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageInvert: no place for the picture");
    *out = (kiln_image){0};
    float *x;
    TRY(planes_of("ImageInvert", img, &x));
    for (size_t i = 0; i < (size_t)3 * img->width * img->height; i++) x[i] = 1.0f - x[i];
    return picture_of(x, img->width, img->height, out);
}

typedef enum {
    BLEND_NORMAL, BLEND_MULTIPLY, BLEND_SCREEN, BLEND_OVERLAY, BLEND_SOFT_LIGHT, BLEND_DIFFERENCE
} blend_mode;

/* soft_light's g */
static float soft_light_g(float x) { return x <= 0.25f ? ((16.0f * x - 12.0f) * x + 4.0f) * x : sqrtf(x); }

static float blend_one(blend_mode mode, float a, float b)
{
    switch (mode) {
    case BLEND_NORMAL: return b;
    case BLEND_MULTIPLY: return a * b;
    case BLEND_SCREEN: return 1.0f - (1.0f - a) * (1.0f - b);
    case BLEND_OVERLAY: return a <= 0.5f ? 2.0f * a * b : 1.0f - 2.0f * (1.0f - a) * (1.0f - b);
    case BLEND_SOFT_LIGHT:
        return b <= 0.5f ? a - (1.0f - 2.0f * b) * a * (1.0f - a) : a + (2.0f * b - 1.0f) * (soft_light_g(a) - a);
    default: return a - b;
    }
}

kiln_status kiln_image_blend(const kiln_image *image1, const kiln_image *image2, double factor, const char *mode,
                             kiln_image *out)
{
    static const char *const names[] = {"normal", "multiply", "screen", "overlay", "soft_light", "difference"};
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageBlend: no place for the picture");
    *out = (kiln_image){0};
    int m = -1;
    for (int k = 0; mode && k < 6; k++)
        if (strcmp(mode, names[k]) == 0) m = k;
    if (m < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageBlend: blend_mode '%s' (normal, multiply, screen, overlay, "
                         "soft_light, difference)", mode ? mode : "(null)");
    if (!(factor >= 0.0 && factor <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageBlend: blend_factor %g (0 to 1)", factor);
    if (!image2 || !image2->pixels) return kiln_fail(KILN_ERR_INVALID_ARG, "ImageBlend: no second picture");
    float *a, *b = NULL;
    TRY(planes_of("ImageBlend", image1, &a));
    const int W = image1->width, H = image1->height;
    const size_t n = (size_t)3 * W * H;
    kiln_status st = KILN_OK;
    if (image2->width == W && image2->height == H) {
        st = planes_of("ImageBlend", image2, &b);
    } else { /* common_upscale's bicubic of the centre cut with image1's aspect */
        int x0, y0, cw, ch;
        float *cut = NULL;
        st = kiln_image_center_box(image2->width, image2->height, W, H, &x0, &y0, &cw, &ch);
        if (st == KILN_OK && (!(cut = malloc((size_t)3 * cw * ch * sizeof *cut)) || !(b = malloc(n * sizeof *b))))
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ImageBlend: out of host memory");
        for (int c = 0; st == KILN_OK && c < 3; c++)
            for (int y = 0; y < ch; y++)
                for (int x = 0; x < cw; x++)
                    cut[((size_t)c * ch + y) * cw + x] =
                        (float)image2->pixels[3 * ((size_t)(y0 + y) * image2->width + x0 + x) + c] / 255.0f;
        if (st == KILN_OK) kiln_resample(cut, 3, ch, cw, b, H, W, KILN_RESAMPLE_BICUBIC);
        free(cut);
    }
    if (st != KILN_OK) {
        free(a), free(b);
        return st;
    }
    const float keep = (float)(1.0 - factor), f = (float)factor; /* (1 - blend_factor) in Python, then float32 */
    for (size_t i = 0; i < n; i++) {
        const float v = a[i] * keep + blend_one((blend_mode)m, a[i], b[i]) * f;
        a[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    free(b);
    return picture_of(a, W, H, out);
}

/* The nodes' Gaussian: exp(-d^2 / (2 sigma^2)) at the taps of a k x k grid
 * over [-1, 1]^2, normalised, in float32 (torch.linspace's points: from the
 * start for the first half, from the end for the rest). */
static void gaussian_kernel(int k, double sigma, float *kernel)
{
    const float spread = (float)(2.0 * sigma * sigma); /* a Python float, rounded as torch divides by it */
    float t[2 * 31 + 1];
    const float step = 2.0f / (float)(k - 1);
    for (int i = 0; i < k; i++) t[i] = i < k / 2 ? -1.0f + step * (float)i : 1.0f - step * (float)(k - 1 - i);
    double sum = 0.0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            const float d = sqrtf(t[i] * t[i] + t[j] * t[j]);
            kernel[i * k + j] = expf(-(d * d) / spread);
            sum += kernel[i * k + j];
        }
    for (int i = 0; i < k * k; i++) kernel[i] /= (float)sum;
}

/* torch's "reflect" padding: the edge pixel not repeated. */
static int reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }

/* Planes (C,H,W) convolved each with a (2r+1)^2 kernel over their mirrored
 * edges, clamped to [0, 1] where asked. */
static void convolve_planes(const float *x, int C, int H, int W, int r, const float *kernel, bool clamp, float *y)
{
    const int k = 2 * r + 1;
    for (int c = 0; c < C; c++)
        for (int row = 0; row < H; row++)
            for (int col = 0; col < W; col++) {
                double sum = 0.0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        sum += (double)kernel[i * k + j] *
                               x[((size_t)c * H + reflect(row + i - r, H)) * W + reflect(col + j - r, W)];
                float v = (float)sum;
                if (clamp) v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                y[((size_t)c * H + row) * W + col] = v;
            }
}

/* The picture convolved per channel (convolve_planes). */
static kiln_status convolve(const char *what, const kiln_image *img, int r, const float *kernel, bool clamp,
                            kiln_image *out)
{
    float *x, *y;
    TRY(planes_of(what, img, &x));
    const int W = img->width, H = img->height;
    if (!(y = malloc((size_t)3 * W * H * sizeof *y))) {
        free(x);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    }
    convolve_planes(x, 3, H, W, r, kernel, clamp, y);
    free(x);
    return picture_of(y, W, H, out);
}

/* ComfyUI's sharpening kernel: the Gaussian times -10 alpha, its centre
 * raised so that the taps sum to 1. */
static void sharpen_kernel(int radius, double sigma, double alpha, float *kernel)
{
    const int k = 2 * radius + 1, centre = k / 2;
    gaussian_kernel(k, sigma, kernel);
    double sum = 0.0;
    for (int i = 0; i < k * k; i++) sum += kernel[i] *= -(float)(alpha * 10.0);
    kernel[centre * k + centre] = kernel[centre * k + centre] - (float)sum + 1.0f;
}

void kiln_sharpen_planes(const float *x, int channels, int height, int width, int radius, double sigma, double alpha,
                         float *y)
{
    float kernel[63 * 63];
    sharpen_kernel(radius, sigma, alpha, kernel);
    convolve_planes(x, channels, height, width, radius, kernel, false, y);
}

/* The radius and sigma the nodes take; radius 0 leaves the picture as it is. */
static kiln_status check_filter(const char *what, const kiln_image *img, int radius, double sigma, kiln_image *out)
{
    if (out) *out = (kiln_image){0};
    if (!img || !img->pixels || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no picture or no place", what);
    if (radius < 0 || radius > 31 || (radius && (radius >= img->width || radius >= img->height)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: radius %d (0 to 31, below the %dx%d picture's sides)", what,
                         radius, img->width, img->height);
    if (!(sigma > 0.0 && sigma <= 100.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: sigma %g (above 0, at most 100)", what, sigma);
    return KILN_OK;
}

/* A copy of the picture, for radius 0. */
static kiln_status copy_picture(const kiln_image *img, kiln_image *out)
{
    TRY(kiln_image_alloc(out, img->width, img->height));
    memcpy(out->pixels, img->pixels, (size_t)3 * img->width * img->height);
    return KILN_OK;
}

kiln_status kiln_image_blur(const kiln_image *img, int radius, double sigma, kiln_image *out)
{
    TRY(check_filter("ImageBlur", img, radius, sigma, out));
    if (radius == 0) return copy_picture(img, out);
    float kernel[63 * 63];
    gaussian_kernel(2 * radius + 1, sigma, kernel);
    return convolve("ImageBlur", img, radius, kernel, false, out);
}

kiln_status kiln_image_sharpen(const kiln_image *img, int radius, double sigma, double alpha, kiln_image *out)
{
    TRY(check_filter("ImageSharpen", img, radius, sigma, out));
    if (!(alpha >= 0.0 && alpha <= 5.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ImageSharpen: alpha %g (0 to 5)", alpha);
    if (radius == 0) return copy_picture(img, out);
    float kernel[63 * 63];
    sharpen_kernel(radius, sigma, alpha, kernel);
    return convolve("ImageSharpen", img, radius, kernel, true, out);
}
