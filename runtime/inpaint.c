#include "inpaint.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "resample.h"
#include "status.h"

void kiln_inpaint_mask_resize(const kiln_inpaint *in, int h, int w, float *out)
{
    kiln_resample(in->noise_mask, 1, in->mask_h, in->mask_w, out, h, w, KILN_RESAMPLE_BILINEAR);
}

void kiln_inpaint_free(kiln_inpaint *in)
{
    free(in->latent);
    free(in->noise_mask);
    free(in->concat_latent);
    in->latent = in->noise_mask = in->concat_latent = NULL;
}

static kiln_status out_of_memory(void)
{
    return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "inpaint: out of host memory");
}

/* VAEEncodeForInpaint's grow: a g x g box of ones over the rounded mask,
 * padded by ceil((g - 1) / 2), clamped to 1 and cut back to the mask's size,
 * so each pixel becomes 1 when any pixel from `pad` above/left to g - 1 - pad
 * below/right of it is; at g 0 the mask rounded. */
static void grow_mask(const float *mask, int h, int w, int g, float *out)
{
    if (g == 0) {
        for (size_t i = 0; i < (size_t)h * w; i++) out[i] = nearbyintf(mask[i]);
        return;
    }
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

/* VAEEncodeForInpaint's and InpaintModelConditioning's part: the mask
 * stretched to the image and cut as the image was (rows from y0, columns
 * from x0, H x W) into *part, and the masked pixels set to grey. */
static kiln_status grey_out(const kiln_inpaint *in, int image_w, int image_h, int y0, int x0, int H, int W,
                            float *pixels, float **part)
{
    if (!(*part = malloc((size_t)image_w * image_h * sizeof(float)))) return out_of_memory();
    kiln_resample(in->noise_mask, 1, in->mask_h, in->mask_w, *part, image_h, image_w, KILN_RESAMPLE_BILINEAR);
    for (int y = 0; y < H; y++) /* in place: each row moves towards the start */
        memmove(*part + (size_t)y * W, *part + (size_t)(y + y0) * image_w + x0, W * sizeof(float));
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < (size_t)H * W; i++) {
            float *p = &pixels[c * (size_t)H * W + i];
            *p = (*p - 0.5f) * (1.0f - nearbyintf((*part)[i])) + 0.5f;
        }
    return KILN_OK;
}

/* The noise mask replaced by `mask` (H x W), which it takes over. */
static void set_noise_mask(kiln_inpaint *in, float *mask, int H, int W)
{
    free(in->noise_mask);
    in->noise_mask = mask;
    in->mask_h = H, in->mask_w = W;
}

void kiln_inpaint_source_free(kiln_inpaint_source *src)
{
    free(src->pixels);
    free(src->mask);
    src->pixels = src->mask = NULL;
}

kiln_status kiln_inpaint_source_make(const kiln_image *img, const kiln_mask *mask, int grow, kiln_inpaint_source *out)
{
    *out = (kiln_inpaint_source){.width = img->width, .height = img->height, .mask_w = mask->width,
                                 .mask_h = mask->height, .grow = grow};
    if (grow < 0 || grow > KILN_INPAINT_GROW_MAX)
        return kiln_fail(KILN_ERR_INVALID_ARG, "inpaint: grow_mask_by %d: 0 to %d", grow, KILN_INPAINT_GROW_MAX);
    size_t mask_n = (size_t)mask->width * mask->height;
    out->pixels = malloc((size_t)3 * img->width * img->height * sizeof(float));
    out->mask = malloc(mask_n * sizeof(float));
    if (!out->pixels || !out->mask) {
        kiln_inpaint_source_free(out);
        return out_of_memory();
    }
    kiln_image_to_unit(img, out->pixels);
    memcpy(out->mask, mask->weights, mask_n * sizeof(float));
    return KILN_OK;
}

kiln_status kiln_outpaint_source(const kiln_image *img, const kiln_outpaint *pad, kiln_inpaint_source *out)
{
    const int sides[4] = {pad->left, pad->top, pad->right, pad->bottom};
    for (int i = 0; i < 4; i++)
        if (sides[i] < 0 || sides[i] > KILN_OUTPAINT_MAX)
            return kiln_fail(KILN_ERR_INVALID_ARG, "outpaint: padding %d must be between 0 and %d", sides[i],
                             KILN_OUTPAINT_MAX);
    if (pad->feathering < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "outpaint: feathering %d must not be negative", pad->feathering);
    const int h = img->height, w = img->width;
    const int H = h + pad->top + pad->bottom, W = w + pad->left + pad->right;
    *out = (kiln_inpaint_source){.width = W, .height = H, .mask_w = W, .mask_h = H, .grow = KILN_INPAINT_GROW};
    size_t plane = (size_t)W * H;
    out->pixels = malloc(3 * plane * sizeof(float));
    out->mask = malloc(plane * sizeof(float));
    float *inside = malloc((size_t)3 * w * h * sizeof(float));
    if (!out->pixels || !out->mask || !inside) {
        free(inside);
        kiln_inpaint_source_free(out);
        return out_of_memory();
    }
    kiln_image_to_unit(img, inside);
    /* the fade counts distances only to sides that were padded; ComfyUI
     * computes v in double and stores v * v as a float */
    const int F = pad->feathering;
    const bool fade = F > 0 && 2 * F < h && 2 * F < w;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int iy = y - pad->top, ix = x - pad->left;
            size_t at = (size_t)y * W + x;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) { /* a pad: grey, repainted */
                for (int c = 0; c < 3; c++) out->pixels[c * plane + at] = 0.5f;
                out->mask[at] = 1.0f;
                continue;
            }
            for (int c = 0; c < 3; c++) out->pixels[c * plane + at] = inside[((size_t)c * h + iy) * w + ix];
            int dt = pad->top ? iy : h, db = pad->bottom ? h - iy : h;
            int dl = pad->left ? ix : w, dr = pad->right ? w - ix : w;
            int d = dt < db ? dt : db;
            if (dl < d) d = dl;
            if (dr < d) d = dr;
            double t = fade && d < F ? (double)(F - d) / F : 0.0;
            out->mask[at] = (float)(t * t);
        }
    free(inside);
    return KILN_OK;
}

kiln_status kiln_inpaint_encode(const kiln_model *m, const kiln_inpaint_source *src, kiln_inpaint *out)
{
    *out = (kiln_inpaint){.mask_h = src->mask_h, .mask_w = src->mask_w};
    const int f = kiln_vae_factor(m->vae.config);
    /* VAEEncode's crop to the VAE's multiple, centred */
    const int H = src->height / f * f, W = src->width / f * f;
    if (H == 0 || W == 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "inpaint: image %dx%d is smaller than the VAE's factor %d", src->width,
                         src->height, f);
    const int y0 = src->height % f / 2, x0 = src->width % f / 2;
    size_t mask_n = (size_t)src->mask_w * src->mask_h, plane = (size_t)H * W;
    /* the mask as given: what SetLatentNoiseMask keeps */
    out->noise_mask = malloc(mask_n * sizeof(float));
    float *pixels = malloc(3 * plane * sizeof(float));
    if (!out->noise_mask || !pixels) {
        free(pixels);
        kiln_inpaint_free(out);
        return out_of_memory();
    }
    memcpy(out->noise_mask, src->mask, mask_n * sizeof(float));
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            memcpy(pixels + c * plane + (size_t)y * W,
                   src->pixels + ((size_t)c * src->height + y + y0) * src->width + x0, W * sizeof(float));
    kiln_status st = KILN_OK;
    float *part = NULL, *grey = NULL;
    if (m->info.variant == KILN_VARIANT_INPAINT && kiln_model_is_dit(m)) { /* InpaintModelConditioning */
        if (!(grey = malloc(3 * plane * sizeof(float)))) st = out_of_memory();
        if (st == KILN_OK) {
            memcpy(grey, pixels, 3 * plane * sizeof(float));
            st = grey_out(out, src->width, src->height, y0, x0, H, W, grey, &part);
        }
        if (st == KILN_OK) set_noise_mask(out, part, H, W);
        for (size_t i = 0; st == KILN_OK && i < 3 * plane; i++) grey[i] = grey[i] * 2.0f - 1.0f;
        if (st == KILN_OK) st = kiln_vae_encode_image(m, grey, 1, H, W, &out->concat_latent);
        free(grey);
    } else if (m->info.variant == KILN_VARIANT_INPAINT) { /* VAEEncodeForInpaint */
        float *grown = malloc((size_t)H * W * sizeof(float));
        st = grown ? grey_out(out, src->width, src->height, y0, x0, H, W, pixels, &part) : out_of_memory();
        if (st == KILN_OK) {
            grow_mask(part, H, W, src->grow, grown);
            set_noise_mask(out, grown, H, W);
            grown = NULL;
        }
        free(grown);
        free(part);
    }
    if (st == KILN_OK) {
        for (size_t i = 0; i < 3 * plane; i++) pixels[i] = pixels[i] * 2.0f - 1.0f;
        st = kiln_vae_encode_image(m, pixels, 1, H, W, &out->latent);
        out->h = H / f, out->w = W / f, out->width = W, out->height = H;
    }
    free(pixels);
    if (st != KILN_OK) kiln_inpaint_free(out);
    return st;
}
