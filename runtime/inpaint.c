#include "inpaint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "status.h"

/* torch's upsample_bilinear2d (align_corners false) on one (sh, sw) plane:
 * each output pixel samples the source at (dst + 0.5) * scale - 0.5, clamped
 * at 0, between its two neighbours on each axis (float32 throughout). */
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

void kiln_inpaint_mask_resize(const kiln_inpaint *in, int h, int w, float *out)
{
    bilinear(in->noise_mask, in->mask_h, in->mask_w, out, h, w);
}

void kiln_inpaint_free(kiln_inpaint *in)
{
    free(in->latent);
    free(in->noise_mask);
    in->latent = in->noise_mask = NULL;
}

/* VAEEncodeForInpaint's grow: a g x g box of ones over the rounded mask,
 * padded by ceil((g - 1) / 2), clamped to 1 and cut back to the mask's size,
 * so each pixel becomes 1 when any pixel from `pad` above/left to g - 1 - pad
 * below/right of it is. */
static void grow_mask(const float *mask, int h, int w, int g, float *out)
{
    int pad = g / 2; /* ceil((g - 1) / 2) */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float any = 0.0f;
            for (int i = y - pad; i < y - pad + g && !any; i++)
                for (int j = x - pad; j < x - pad + g && !any; j++)
                    if (i >= 0 && i < h && j >= 0 && j < w) any = nearbyintf(mask[(size_t)i * w + j]);
            out[(size_t)y * w + x] = any > 0.0f ? 1.0f : 0.0f;
        }
}

/* VAEEncodeForInpaint's part: the mask stretched to the image and cut as the
 * image was (rows from y0, columns from x0, H x W), the masked pixels set to
 * grey, and the noise mask replaced by the grown one over the cut image. */
static kiln_status grey_out_and_grow(kiln_inpaint *in, int image_w, int image_h, int y0, int x0, int H, int W,
                                     float *pixels)
{
    float *part = malloc((size_t)image_w * image_h * sizeof(float)), *grown = malloc((size_t)H * W * sizeof(float));
    if (!part || !grown) {
        free(part);
        free(grown);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "inpaint: out of host memory");
    }
    bilinear(in->noise_mask, in->mask_h, in->mask_w, part, image_h, image_w);
    for (int y = 0; y < H; y++) /* in place: each row moves towards the start */
        memmove(part + (size_t)y * W, part + (size_t)(y + y0) * image_w + x0, W * sizeof(float));
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < (size_t)H * W; i++) {
            float *p = &pixels[c * (size_t)H * W + i];
            *p = (*p - 0.5f) * (1.0f - nearbyintf(part[i])) + 0.5f;
        }
    grow_mask(part, H, W, KILN_INPAINT_GROW, grown);
    free(part);
    free(in->noise_mask);
    in->noise_mask = grown;
    in->mask_h = H, in->mask_w = W;
    return KILN_OK;
}

kiln_status kiln_inpaint_encode(const kiln_model *m, const kiln_image *img, const kiln_image *mask, kiln_inpaint *out)
{
    *out = (kiln_inpaint){.mask_h = mask->height, .mask_w = mask->width};
    const int f = kiln_vae_factor(m->vae.config);
    /* the mask as LoadImageMask gives it: what SetLatentNoiseMask keeps */
    size_t mask_n = (size_t)mask->width * mask->height;
    if (!(out->noise_mask = malloc(mask_n * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "inpaint: out of host memory");
    for (size_t i = 0; i < mask_n; i++) out->noise_mask[i] = (float)mask->pixels[3 * i] / 255.0f;
    kiln_image cropped = {0};
    float *pixels = NULL;
    kiln_status st = kiln_image_crop_to_multiple(img, f, &cropped);
    int H = cropped.height, W = cropped.width;
    if (st == KILN_OK && !(pixels = malloc((size_t)3 * H * W * sizeof(float))))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "inpaint: out of host memory");
    if (st == KILN_OK) {
        kiln_image_to_unit(&cropped, pixels);
        if (m->info.variant == KILN_VARIANT_INPAINT)
            st = grey_out_and_grow(out, img->width, img->height, (img->height % f) / 2, (img->width % f) / 2, H, W,
                                   pixels);
    }
    if (st == KILN_OK) {
        for (size_t i = 0; i < (size_t)3 * H * W; i++) pixels[i] = pixels[i] * 2.0f - 1.0f;
        st = kiln_vae_encode_image(m, pixels, 1, H, W, &out->latent);
        out->h = H / f, out->w = W / f, out->width = W, out->height = H;
    }
    free(pixels);
    kiln_image_free(&cropped);
    if (st != KILN_OK) kiln_inpaint_free(out);
    return st;
}
