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

kiln_status kiln_inpaint_encode(const kiln_model *m, const kiln_image *img, const kiln_image *mask, kiln_inpaint *out)
{
    *out = (kiln_inpaint){0};
    const int f = kiln_vae_factor(m->vae.config);
    const bool inpaint_unet = m->unet.config->in_channels != m->unet.config->out_channels;
    /* the mask as LoadImageMask gives it, then at the image's size */
    size_t mask_n = (size_t)mask->width * mask->height, image_n = (size_t)img->width * img->height;
    float *red = malloc(mask_n * sizeof(float)), *full = malloc(image_n * sizeof(float));
    kiln_image cropped = {0};
    kiln_status st = red && full ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "inpaint: out of host memory");
    if (st == KILN_OK) {
        for (size_t i = 0; i < mask_n; i++) red[i] = (float)mask->pixels[3 * i] / 255.0f;
        bilinear(red, mask->height, mask->width, full, img->height, img->width);
        st = kiln_image_crop_to_multiple(img, f, &cropped);
    }
    float *pixels = NULL;
    if (st == KILN_OK) {
        int H = cropped.height, W = cropped.width, y0 = (img->height % f) / 2, x0 = (img->width % f) / 2;
        pixels = malloc((size_t)3 * H * W * sizeof(float));
        out->noise_mask = malloc((inpaint_unet ? (size_t)H * W : mask_n) * sizeof(float));
        if (!pixels || !out->noise_mask) st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "inpaint: out of host memory");
        if (st == KILN_OK) {
            kiln_image_to_unit(&cropped, pixels);
            if (inpaint_unet) { /* VAEEncodeForInpaint */
                float *part = full; /* the mask over the cropped image, rows y0.., columns x0.. */
                for (int y = 0; y < H; y++) memmove(part + (size_t)y * W, full + (size_t)(y + y0) * img->width + x0, W * sizeof(float));
                for (int c = 0; c < 3; c++)
                    for (size_t i = 0; i < (size_t)H * W; i++) {
                        float *p = &pixels[c * (size_t)H * W + i];
                        *p = (*p - 0.5f) * (1.0f - nearbyintf(part[i])) + 0.5f;
                    }
                grow_mask(part, H, W, KILN_INPAINT_GROW, out->noise_mask);
                out->mask_h = H, out->mask_w = W;
            } else { /* SetLatentNoiseMask keeps the mask as given */
                memcpy(out->noise_mask, red, mask_n * sizeof(float));
                out->mask_h = mask->height, out->mask_w = mask->width;
            }
            for (size_t i = 0; i < (size_t)3 * H * W; i++) pixels[i] = pixels[i] * 2.0f - 1.0f;
            st = kiln_vae_encode_image(m, pixels, 1, H, W, &out->latent);
            out->h = H / f, out->w = W / f, out->width = W, out->height = H;
        }
    }
    free(red);
    free(full);
    free(pixels);
    kiln_image_free(&cropped);
    if (st != KILN_OK) kiln_inpaint_free(out);
    return st;
}
