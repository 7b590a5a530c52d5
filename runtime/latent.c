/* LATENT transforms: ComfyUI's latent nodes on kiln_latent (the batch, its
 * noise mask, concat and places carried as those nodes carry them). */
#include "latent.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "resample.h"
#include "status.h"

kiln_status kiln_check_batch(const char *what, int batch)
{
    if (batch < 1 || batch > KILN_LATENT_MAX_BATCH)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s %d: must be from 1 to %d", what, batch, KILN_LATENT_MAX_BATCH);
    return KILN_OK;
}

void kiln_latent_free(kiln_latent *l)
{
    if (!l) return;
    free(l->data);
    free(l->noise_mask);
    free(l->concat);
    free(l->batch_index);
    *l = (kiln_latent){0};
}

bool kiln_latent_copy_places(const kiln_latent *from, kiln_latent *to)
{
    to->batch_index = NULL;
    if (!from->batch_index) return true;
    if (!(to->batch_index = malloc((size_t)to->batch * sizeof *to->batch_index))) return false;
    memcpy(to->batch_index, from->batch_index, (size_t)to->batch * sizeof *to->batch_index);
    return true;
}

size_t kiln_latent_count(const kiln_latent *l)
{
    return (size_t)l->batch * l->channels * l->height * l->width;
}

kiln_status kiln_latent_like(const kiln_latent *l, int batch, bool places, const char *what, kiln_latent *out)
{
    const size_t picture = (size_t)l->channels * l->height * l->width, mask = (size_t)l->mask_h * l->mask_w;
    kiln_latent r = *l;
    r.batch = batch;
    r.data = malloc(picture * batch * sizeof(float));
    r.noise_mask = l->noise_mask ? malloc(mask * sizeof(float)) : NULL;
    r.concat = l->concat ? malloc(picture * sizeof(float)) : NULL;
    r.batch_index = places ? malloc((size_t)batch * sizeof *r.batch_index) : NULL;
    if (!r.data || (l->noise_mask && !r.noise_mask) || (l->concat && !r.concat) || (places && !r.batch_index)) {
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    }
    if (l->noise_mask) memcpy(r.noise_mask, l->noise_mask, mask * sizeof(float));
    if (l->concat) memcpy(r.concat, l->concat, picture * sizeof(float));
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_repeat(const kiln_latent *l, int amount, kiln_latent *out)
{
    if (!l || !l->data || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_latent_repeat: no latent or no place");
    *out = (kiln_latent){0};
    TRY(kiln_check_batch("repeated latent batch", amount > 0 && l->batch <= KILN_LATENT_MAX_BATCH / amount ? l->batch * amount : 0));
    kiln_latent r;
    TRY(kiln_latent_like(l, l->batch * amount, l->batch_index != NULL, "repeated latent", &r));
    const size_t n = kiln_latent_count(l);
    for (int i = 0; i < amount; i++) memcpy(r.data + n * i, l->data, n * sizeof(float));
    if (l->batch_index) { /* each copy's places after the last copy's, as ComfyUI offsets them */
        int lo = l->batch_index[0], hi = l->batch_index[0];
        for (int b = 1; b < l->batch; b++)
            lo = l->batch_index[b] < lo ? l->batch_index[b] : lo, hi = l->batch_index[b] > hi ? l->batch_index[b] : hi;
        for (int i = 0; i < amount; i++)
            for (int b = 0; b < l->batch; b++) r.batch_index[i * l->batch + b] = l->batch_index[b] + i * (hi - lo + 1);
    }
    *out = r;
    return KILN_OK;
}

/* A latent to resize and its method, checked. */
static kiln_status check_upscale(const char *what, const kiln_latent *l, const char *method, kiln_latent *out,
                                 kiln_resample_method *m)
{
    if (!l || !l->data || !method || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no latent, method or place", what);
    *out = (kiln_latent){0};
    if (!kiln_resample_from_name(method, m))
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent upscale method '%s': nearest-exact, bilinear or bicubic",
                         method);
    TRY(kiln_check_batch("latent batch", l->batch));
    if (l->channels < 1 || l->channels > 64 || l->height < 1 || l->width < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent upscale: a latent of %d channels, %dx%d", l->channels, l->width,
                         l->height);
    return KILN_OK;
}

kiln_status kiln_latent_upscale(const kiln_latent *l, const char *method, int width, int height, bool crop,
                                kiln_latent *out)
{
    kiln_resample_method m;
    TRY(check_upscale("kiln_latent_upscale", l, method, out, &m));
    if (width < 0 || height < 0 || width > KILN_IMAGE_MAX_SIDE || height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent upscale to %dx%d pixels", width, height);
    if (width == 0 && height == 0) return kiln_latent_repeat(l, 1, out);
    /* ComfyUI's LatentUpscale: a side given as 0 follows the other in the latent's aspect ratio, each at least 64 */
    if (width == 0) height = height > 64 ? height : 64, width = (int)nearbyint((double)l->width * height / l->height);
    else if (height == 0) width = width > 64 ? width : 64, height = (int)nearbyint((double)l->height * width / l->width);
    width = width > 64 ? width : 64;
    height = height > 64 ? height : 64;
    return kiln_latent_resize(l, m, width / 8, height / 8, crop, out);
}

kiln_status kiln_latent_resize(const kiln_latent *l, kiln_resample_method m, int w, int h, bool crop,
                               kiln_latent *out)
{
    int x0 = 0, y0 = 0, cw = l->width, ch = l->height;
    if (crop) TRY(kiln_image_center_box(l->width, l->height, w, h, &x0, &y0, &cw, &ch));
    const size_t planes = (size_t)l->batch * l->channels;
    float *cut = malloc(planes * cw * ch * sizeof *cut);
    kiln_latent r = {malloc(planes * w * h * sizeof(float)), l->batch, l->channels, h, w, NULL, 0, 0, NULL, NULL};
    if (!cut || !r.data) {
        free(cut);
        free(r.data);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "latent upscale: out of host memory");
    }
    for (size_t p = 0; p < planes; p++)
        for (int y = 0; y < ch; y++)
            memcpy(cut + (p * ch + y) * cw, l->data + (p * l->height + y0 + y) * l->width + x0, cw * sizeof *cut);
    kiln_resample(cut, (int)planes, ch, cw, r.data, h, w, m);
    free(cut);
    if (!kiln_latent_copy_places(l, &r)) {
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "latent upscale: out of host memory");
    }
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_from_batch(const kiln_latent *l, int batch_index, int length, kiln_latent *out)
{
    if (!l || !l->data || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_latent_from_batch: no latent or no place");
    *out = (kiln_latent){0};
    if (batch_index < 0 || length < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentFromBatch: batch_index %d and length %d (>= 0, >= 1)",
                         batch_index, length);
    TRY(kiln_check_batch("latent batch", l->batch));
    /* ComfyUI's cut to the batch: the last image at most, as many as there are from there */
    if (batch_index > l->batch - 1) batch_index = l->batch - 1;
    if (length > l->batch - batch_index) length = l->batch - batch_index;
    const size_t picture = (size_t)l->channels * l->height * l->width;
    kiln_latent r;
    TRY(kiln_latent_like(l, length, true, "LatentFromBatch", &r));
    memcpy(r.data, l->data + picture * batch_index, picture * length * sizeof(float));
    for (int b = 0; b < length; b++)
        r.batch_index[b] = l->batch_index ? l->batch_index[batch_index + b] : batch_index + b;
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_upscale_by(const kiln_latent *l, const char *method, double scale, kiln_latent *out)
{
    kiln_resample_method m;
    TRY(check_upscale("kiln_latent_upscale_by", l, method, out, &m));
    kiln_latent r = {.batch = l->batch, .channels = l->channels};
    TRY(kiln_resample_by(l->data, l->batch * l->channels, l->height, l->width, scale, m, &r.data, &r.height,
                         &r.width));
    if (!kiln_latent_copy_places(l, &r)) {
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "latent upscale: out of host memory");
    }
    *out = r;
    return KILN_OK;
}
