/* LATENT transforms: ComfyUI's latent nodes on kiln_latent (the batch, its
 * noise mask, concat and places carried as those nodes carry them). */
#include "latent.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "resample.h"
#include "safetensors.h"
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

/* kiln_latent_like of `shape` for the images of `from`, with from's places
 * (ComfyUI's batch_index carried through the node). */
static kiln_status latent_like_placed(const kiln_latent *shape, const kiln_latent *from, const char *what,
                                      kiln_latent *out)
{
    TRY(kiln_latent_like(shape, from->batch, false, what, out));
    if (kiln_latent_copy_places(from, out)) return KILN_OK;
    kiln_latent_free(out);
    return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
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
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent upscale method '%s': nearest-exact, bilinear, bicubic, area or bislerp",
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
    kiln_status st = kiln_resample_images(cut, l->batch, l->channels, ch, cw, r.data, h, w, m);
    free(cut);
    if (st != KILN_OK) {
        free(r.data);
        return st;
    }
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

kiln_status kiln_latent_batch_seed_behavior(const kiln_latent *l, const char *behavior, kiln_latent *out)
{
    if (!l || !l->data || !behavior || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentBatchSeedBehavior: no latent, behavior or place");
    *out = (kiln_latent){0};
    const bool fixed = strcmp(behavior, "fixed") == 0;
    if (!fixed && strcmp(behavior, "random") != 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentBatchSeedBehavior: seed_behavior '%s' (random or fixed)", behavior);
    TRY(kiln_check_batch("LatentBatchSeedBehavior", l->batch));
    kiln_latent r;
    TRY(kiln_latent_like(l, l->batch, fixed, "LatentBatchSeedBehavior", &r));
    memcpy(r.data, l->data, kiln_latent_count(l) * sizeof(float));
    /* fixed: every image the first one's place, so one draw of noise for all; random: the places dropped */
    for (int b = 0; fixed && b < l->batch; b++) r.batch_index[b] = l->batch_index ? l->batch_index[0] : 0;
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_upscale_by(const kiln_latent *l, const char *method, double scale, kiln_latent *out)
{
    kiln_resample_method m;
    TRY(check_upscale("kiln_latent_upscale_by", l, method, out, &m));
    kiln_latent r = {.batch = l->batch, .channels = l->channels};
    TRY(kiln_resample_by(l->data, l->batch, l->channels, l->height, l->width, scale, m, &r.data, &r.height,
                         &r.width));
    if (!kiln_latent_copy_places(l, &r)) {
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "latent upscale: out of host memory");
    }
    *out = r;
    return KILN_OK;
}

/* A latent handed to a transform, checked. */
static kiln_status check_latent_in(const char *what, const kiln_latent *l)
{
    if (!l || !l->data) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no latent", what);
    TRY(kiln_check_batch(what, l->batch));
    if (l->channels < 1 || l->channels > 64 || l->height < 1 || l->width < 1 || l->height > KILN_IMAGE_MAX_SIDE ||
        l->width > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a latent of %d channels, %dx%d", what, l->channels, l->width,
                         l->height);
    return KILN_OK;
}

/* A latent whose pixels move: FLUX.1 Fill's masked picture beside it would not follow. */
static kiln_status check_no_concat(const char *what, const kiln_latent *l)
{
    if (l->concat)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a latent with FLUX.1 Fill's masked picture beside it (transform "
                         "the picture before encoding it)", what);
    return KILN_OK;
}

/* The row Python's slice [start:start + 1] of `size` rows picks (a start
 * below 0 counting from the end), or -1 where the slice is empty. */
static int python_row(int size, int start)
{
    const int from = start < 0 ? (start + size > 0 ? start + size : 0) : (start < size ? start : size);
    const int end = start + 1 < 0 ? (start + 1 + size > 0 ? start + 1 + size : 0) : (start + 1 < size ? start + 1 : size);
    return from < end ? from : -1;
}

kiln_status kiln_latent_composite(const kiln_latent *to, const kiln_latent *from, int x, int y, int feather,
                                  kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentComposite: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentComposite samples_to", to));
    TRY(check_no_concat("LatentComposite samples_to", to));
    TRY(check_latent_in("LatentComposite samples_from", from));
    if (from->channels != to->channels || (from->batch != to->batch && from->batch != 1))
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentComposite: samples_from of %d images of %d channels onto %d of %d "
                         "(the same channels; its batch 1 or samples_to's)", from->batch, from->channels, to->batch,
                         to->channels);
    if (x < 0 || y < 0 || x >= to->width || y >= to->height || feather < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentComposite: x %d, y %d and feather %d latent pixels (at or past "
                         "0, the place inside the %dx%d latent)", x, y, feather, to->width, to->height);
    kiln_latent r;
    TRY(kiln_latent_like(to, to->batch, false, "LatentComposite", &r));
    if (!kiln_latent_copy_places(to, &r)) {
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LatentComposite: out of host memory");
    }
    memcpy(r.data, to->data, kiln_latent_count(to) * sizeof(float));
    /* samples_from cut to what fits, its weight 1 but inside the edges that are not samples_to's, where it fades in
       over `feather` pixels (each factor multiplied in, as the node's loop does) */
    const int h = from->height < to->height - y ? from->height : to->height - y;
    const int w = from->width < to->width - x ? from->width : to->width - x;
    float *mask = malloc((size_t)h * w * sizeof *mask);
    if (!mask) {
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LatentComposite: out of host memory");
    }
    for (size_t i = 0; i < (size_t)h * w; i++) mask[i] = 1.0f;
    for (int t = 0; t < feather; t++) {
        const float f = (float)(1.0 / feather * (t + 1));
        const int rows[2] = {y != 0 ? python_row(h, t) : -1, y + h < to->height ? python_row(h, h - 1 - t) : -1};
        const int cols[2] = {x != 0 ? python_row(w, t) : -1, x + w < to->width ? python_row(w, w - 1 - t) : -1};
        for (int e = 0; e < 2; e++) {
            for (int j = 0; rows[e] >= 0 && j < w; j++) mask[(size_t)rows[e] * w + j] *= f;
            for (int i = 0; cols[e] >= 0 && i < h; i++) mask[(size_t)i * w + cols[e]] *= f;
        }
    }
    for (int b = 0; b < to->batch; b++)
        for (int c = 0; c < to->channels; c++) {
            const float *src = from->data + ((size_t)(b % from->batch) * from->channels + c) * from->height * from->width;
            float *dst = r.data + ((size_t)b * to->channels + c) * to->height * to->width;
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    const float m = mask[(size_t)i * w + j];
                    float *d = &dst[(size_t)(y + i) * to->width + x + j];
                    *d = feather ? src[(size_t)i * from->width + j] * m + *d * (1.0f - m) : src[(size_t)i * from->width + j];
                }
        }
    free(mask);
    *out = r;
    return KILN_OK;
}

/* b as the nodes_latent ops take it beside a: resized by m to a's size (the
 * largest centred part first) where it differs, its images repeated or cut
 * to a's batch (repeat_to_batch_size) where `to_batch`. */
static kiln_status reshape_like(const char *what, const kiln_latent *a, const kiln_latent *b, kiln_resample_method m,
                                bool to_batch, kiln_latent *out)
{
    TRY(check_latent_in(what, a));
    TRY(check_latent_in(what, b));
    if (a->channels != b->channels)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: latents of %d and %d channels", what, a->channels, b->channels);
    kiln_latent sized = {0};
    if (b->height != a->height || b->width != a->width) TRY(kiln_latent_resize(b, m, a->width, a->height, true, &sized));
    const kiln_latent *from = sized.data ? &sized : b;
    const int batch = to_batch ? a->batch : b->batch;
    const size_t picture = (size_t)a->channels * a->height * a->width;
    *out = (kiln_latent){malloc(picture * batch * sizeof(float)), batch, a->channels, a->height, a->width,
                         NULL, 0, 0, NULL, NULL};
    if (out->data)
        for (int i = 0; i < batch; i++)
            memcpy(out->data + picture * i, from->data + picture * (i % from->batch), picture * sizeof(float));
    kiln_latent_free(&sized);
    return out->data ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
}

kiln_status kiln_latent_blend(const kiln_latent *a, const kiln_latent *b, double factor, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentBlend: no place for the latent");
    *out = (kiln_latent){0};
    if (!(factor >= 0.0 && factor <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentBlend: blend_factor %g (0 to 1)", factor);
    kiln_latent other;
    TRY(reshape_like("LatentBlend", a, b, KILN_RESAMPLE_BICUBIC, false, &other));
    if (other.batch != a->batch && other.batch != 1) {
        kiln_latent_free(&other);
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentBlend: samples2's %d images with samples1's %d (the same, or 1)",
                         b->batch, a->batch);
    }
    kiln_latent r;
    kiln_status st = latent_like_placed(a, a, "LatentBlend", &r);
    if (st == KILN_OK) {
        const size_t n = kiln_latent_count(a), picture = n / (size_t)a->batch;
        const float keep = (float)factor, rest = (float)(1.0 - factor);
        for (size_t i = 0; i < n; i++) r.data[i] = a->data[i] * keep + other.data[i % (picture * other.batch)] * rest;
        *out = r;
    }
    kiln_latent_free(&other);
    return st;
}

kiln_status kiln_latent_combine(const kiln_latent *a, const kiln_latent *b, const char *op, double ratio,
                                kiln_latent *out)
{
    if (!out || !op) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_latent_combine: no operation or place");
    *out = (kiln_latent){0};
    const bool add = strcmp(op, "add") == 0, subtract = strcmp(op, "subtract") == 0;
    const bool interpolate = strcmp(op, "interpolate") == 0;
    if (!add && !subtract && !interpolate)
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent operation '%s': add, subtract or interpolate", op);
    if (interpolate && !(ratio >= 0.0 && ratio <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentInterpolate: ratio %g (0 to 1)", ratio);
    kiln_latent other;
    TRY(reshape_like(add ? "LatentAdd" : subtract ? "LatentSubtract" : "LatentInterpolate", a, b,
                     KILN_RESAMPLE_BILINEAR, true, &other));
    kiln_latent r;
    kiln_status st = latent_like_placed(a, a, "latent operation", &r);
    if (st != KILN_OK) {
        kiln_latent_free(&other);
        return st;
    }
    const size_t n = kiln_latent_count(a), plane = (size_t)a->height * a->width;
    if (!interpolate) {
        for (size_t i = 0; i < n; i++) r.data[i] = add ? a->data[i] + other.data[i] : a->data[i] - other.data[i];
    } else {
        /* each pixel's vector over the channels: both made unit (nan_to_num's 0 where a norm is 0), mixed, made unit
           again and given the mixed length */
        const float keep = (float)ratio, rest = (float)(1.0 - ratio);
        for (int bi = 0; bi < a->batch; bi++)
            for (size_t p = 0; p < plane; p++) {
                const size_t at = (size_t)bi * a->channels * plane + p;
                double n1 = 0.0, n2 = 0.0, nt = 0.0;
                for (int c = 0; c < a->channels; c++) {
                    const float u = a->data[at + c * plane], v = other.data[at + c * plane];
                    n1 += (double)u * u, n2 += (double)v * v;
                }
                const float m1 = (float)sqrt(n1), m2 = (float)sqrt(n2);
                for (int c = 0; c < a->channels; c++) {
                    const float u = m1 > 0.0f ? a->data[at + c * plane] / m1 : 0.0f;
                    const float v = m2 > 0.0f ? other.data[at + c * plane] / m2 : 0.0f;
                    r.data[at + c * plane] = u * keep + v * rest;
                    nt += (double)r.data[at + c * plane] * r.data[at + c * plane];
                }
                const float mt = (float)sqrt(nt), length = m1 * keep + m2 * rest;
                for (int c = 0; c < a->channels; c++)
                    r.data[at + c * plane] = (mt > 0.0f ? r.data[at + c * plane] / mt : 0.0f) * length;
            }
    }
    kiln_latent_free(&other);
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_multiply(const kiln_latent *l, double multiplier, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentMultiply: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentMultiply", l));
    if (!isfinite(multiplier)) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentMultiply: multiplier %g", multiplier);
    kiln_latent r;
    TRY(latent_like_placed(l, l, "LatentMultiply", &r));
    for (size_t i = 0; i < kiln_latent_count(l); i++) r.data[i] = l->data[i] * (float)multiplier;
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_batch(const kiln_latent *a, const kiln_latent *b, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentBatch: no place for the latent");
    *out = (kiln_latent){0};
    kiln_latent second;
    TRY(reshape_like("LatentBatch", a, b, KILN_RESAMPLE_BILINEAR, false, &second));
    kiln_status st = kiln_check_batch("LatentBatch's batch", a->batch + b->batch);
    kiln_latent r = {0};
    if (st == KILN_OK) st = kiln_latent_like(a, a->batch + b->batch, true, "LatentBatch", &r);
    if (st == KILN_OK) {
        const size_t first = kiln_latent_count(a);
        memcpy(r.data, a->data, first * sizeof(float));
        memcpy(r.data + first, second.data, kiln_latent_count(&second) * sizeof(float));
        /* each half's places, or 0, 1, ... of its own batch */
        for (int i = 0; i < a->batch; i++) r.batch_index[i] = a->batch_index ? a->batch_index[i] : i;
        for (int i = 0; i < b->batch; i++) r.batch_index[a->batch + i] = b->batch_index ? b->batch_index[i] : i;
        *out = r;
    }
    kiln_latent_free(&second);
    return st;
}

/* The axis of a latent's (batch, channels, height, width) that LatentConcat's and LatentCut's `dim` names: "x"
   width, "y" height, "t" the one before them (an image latent's channels), each maybe with a leading "-"; -1 for
   another name. *reversed: the leading "-". */
static int latent_axis(const char *dim, bool *reversed)
{
    *reversed = dim && dim[0] == '-';
    const char *d = dim ? dim + *reversed : "";
    return strcmp(d, "x") == 0 ? 3 : strcmp(d, "y") == 0 ? 2 : strcmp(d, "t") == 0 ? 1 : -1;
}

static void latent_dims(const kiln_latent *l, int64_t dims[4])
{
    dims[0] = l->batch, dims[1] = l->channels, dims[2] = l->height, dims[3] = l->width;
}

kiln_status kiln_latent_concat(const kiln_latent *a, const kiln_latent *b, const char *dim, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentConcat: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentConcat samples1", a));
    TRY(check_latent_in("LatentConcat samples2", b));
    TRY(check_no_concat("LatentConcat", a));
    bool reversed;
    const int axis = latent_axis(dim, &reversed);
    if (axis < 0 || (reversed && dim[2]))
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentConcat: dim '%s' (x, -x, y, -y, t or -t)", dim ? dim : "(null)");
    int64_t da[4], db[4], dr[4];
    latent_dims(a, da);
    latent_dims(b, db);
    db[0] = da[0]; /* samples2 repeated or cut to samples1's batch */
    for (int k = 1; k < 4; k++)
        if (k != axis && da[k] != db[k])
            return kiln_fail(KILN_ERR_INVALID_ARG, "LatentConcat along %s: latents of %dx%d, %d channels, and %dx%d, %d "
                             "channels differ elsewhere", dim, a->width, a->height, a->channels, b->width, b->height,
                             b->channels);
    memcpy(dr, da, sizeof dr);
    dr[axis] += db[axis];
    if (dr[1] > 64 || dr[2] > KILN_IMAGE_MAX_SIDE || dr[3] > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentConcat: a latent of %lldx%lld, %lld channels", (long long)dr[3],
                         (long long)dr[2], (long long)dr[1]);
    kiln_latent r = *a;
    r.channels = (int)dr[1], r.height = (int)dr[2], r.width = (int)dr[3]; /* samples1's noise mask kept, as the node's */
    TRY(latent_like_placed(&r, a, "LatentConcat", &r));
    /* per image: rows of the axis and what follows it, first's then second's, for each index before it */
    int64_t inner = 1, outer = 1;
    for (int k = axis + 1; k < 4; k++) inner *= dr[k];
    for (int k = 1; k < axis; k++) outer *= dr[k];
    const kiln_latent *first = reversed ? b : a, *second = reversed ? a : b;
    const int64_t n1 = (reversed ? db : da)[axis] * inner, n2 = (reversed ? da : db)[axis] * inner;
    float *to = r.data;
    for (int i = 0; i < a->batch; i++) {
        const float *p1 = first->data + (size_t)(i % first->batch) * (size_t)(outer * n1),
                    *p2 = second->data + (size_t)(i % second->batch) * (size_t)(outer * n2);
        for (int64_t o = 0; o < outer; o++) {
            memcpy(to, p1 + o * n1, (size_t)n1 * sizeof(float)), to += n1;
            memcpy(to, p2 + o * n2, (size_t)n2 * sizeof(float)), to += n2;
        }
    }
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_cut(const kiln_latent *l, const char *dim, int index, int amount, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCut: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentCut", l));
    TRY(check_no_concat("LatentCut", l));
    bool reversed;
    const int axis = latent_axis(dim, &reversed);
    if (axis < 0 || reversed) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCut: dim '%s' (x, y or t)", dim ? dim : "(null)");
    if (amount < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCut: amount %d (at least 1)", amount);
    int64_t d[4];
    latent_dims(l, d);
    /* the node's clamps: a start past the end is the last row; one before the start counts from the end */
    const int64_t size = d[axis];
    int64_t from, count;
    if (index >= 0) {
        from = index < size - 1 ? index : size - 1;
        count = size - from < amount ? size - from : amount;
    } else {
        from = index > -size ? index : -size;
        count = -from < amount ? -from : amount;
        from += size;
    }
    kiln_latent r = *l;
    if (axis == 1) r.channels = (int)count;
    else if (axis == 2) r.height = (int)count;
    else r.width = (int)count;
    TRY(latent_like_placed(&r, l, "LatentCut", &r));
    int64_t inner = 1, outer = 1;
    for (int k = axis + 1; k < 4; k++) inner *= d[k];
    for (int k = 0; k < axis; k++) outer *= d[k];
    for (int64_t o = 0; o < outer; o++)
        memcpy(r.data + o * count * inner, l->data + (o * size + from) * inner, (size_t)(count * inner) * sizeof(float));
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_crop(const kiln_latent *l, int x, int y, int width, int height, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCrop: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentCrop", l));
    TRY(check_no_concat("LatentCrop", l));
    if (x < 0 || y < 0 || width < 1 || height < 1 || l->width < 8 || l->height < 8)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCrop: %dx%d at (%d, %d) latent pixels of a %dx%d latent (a size, "
                         "a place at or past 0, a latent of at least 8x8)", width, height, x, y, l->width, l->height);
    /* ComfyUI's corner: at most 8 latent pixels from the far edges; the box then cut to the latent */
    x = x < l->width - 8 ? x : l->width - 8;
    y = y < l->height - 8 ? y : l->height - 8;
    const int w = width < l->width - x ? width : l->width - x, h = height < l->height - y ? height : l->height - y;
    kiln_latent r = *l;
    r.height = h, r.width = w;
    TRY(latent_like_placed(&r, l, "LatentCrop", &r));
    for (int p = 0; p < l->batch * l->channels; p++)
        for (int i = 0; i < h; i++)
            memcpy(r.data + ((size_t)p * h + i) * w, l->data + ((size_t)p * l->height + y + i) * l->width + x,
                   (size_t)w * sizeof(float));
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_flip_rotate(const kiln_latent *l, bool flip_rows, bool flip_columns, int quarter_turns,
                                    kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentFlip/LatentRotate: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentFlip/LatentRotate", l));
    TRY(check_no_concat("LatentFlip/LatentRotate", l));
    if (quarter_turns < 0 || quarter_turns > 3)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentRotate: %d quarter turns (0 to 3)", quarter_turns);
    const int H = l->height, W = l->width, odd = quarter_turns % 2;
    kiln_latent r = *l;
    r.height = odd ? W : H, r.width = odd ? H : W;
    TRY(latent_like_placed(&r, l, "LatentFlip/LatentRotate", &r));
    for (int p = 0; p < l->batch * l->channels; p++) {
        const float *src = l->data + (size_t)p * H * W;
        float *dst = r.data + (size_t)p * H * W;
        for (int i = 0; i < r.height; i++)
            for (int j = 0; j < r.width; j++) {
                /* the source pixel of output (i, j): turned clockwise (torch.rot90 over dims 3, 2), then flipped */
                const int oi = flip_rows ? r.height - 1 - i : i, oj = flip_columns ? r.width - 1 - j : j;
                int si = oi, sj = oj;
                if (quarter_turns == 1) si = H - 1 - oj, sj = oi;
                else if (quarter_turns == 2) si = H - 1 - oi, sj = W - 1 - oj;
                else if (quarter_turns == 3) si = oj, sj = W - 1 - oi;
                dst[(size_t)i * r.width + j] = src[(size_t)si * W + sj];
            }
    }
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_composite_masked(const kiln_latent *dest, const kiln_latent *src, int x, int y,
                                         bool resize_source, const float *mask, int mask_w, int mask_h,
                                         kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCompositeMasked: no place for the latent");
    *out = (kiln_latent){0};
    TRY(check_latent_in("LatentCompositeMasked destination", dest));
    TRY(check_no_concat("LatentCompositeMasked destination", dest));
    TRY(check_latent_in("LatentCompositeMasked source", src));
    if (src->channels != dest->channels)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCompositeMasked: a source of %d channels onto %d", src->channels,
                         dest->channels);
    if (x < 0 || y < 0 || (mask && (mask_w < 1 || mask_h < 1 || mask_w > KILN_IMAGE_MAX_SIDE ||
                                    mask_h > KILN_IMAGE_MAX_SIDE)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentCompositeMasked: x %d and y %d (at or past 0), a mask of %dx%d",
                         x, y, mask_w, mask_h);
    /* the source resized to the destination (bilinear) where asked, its images repeated or cut to its batch */
    const int sh = resize_source ? dest->height : src->height, sw = resize_source ? dest->width : src->width;
    const size_t picture = (size_t)src->channels * sh * sw;
    float *source = malloc(picture * dest->batch * sizeof *source), *weights = malloc((size_t)sh * sw * sizeof *weights);
    kiln_latent r = {0};
    kiln_status st = source && weights ? kiln_latent_like(dest, dest->batch, false, "LatentCompositeMasked", &r)
                                       : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LatentCompositeMasked: out of host memory");
    if (st == KILN_OK && !kiln_latent_copy_places(dest, &r)) {
        kiln_latent_free(&r);
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LatentCompositeMasked: out of host memory");
    }
    if (st != KILN_OK) {
        free(source), free(weights);
        return st;
    }
    for (int b = 0; b < dest->batch; b++) {
        const float *image = src->data + (size_t)(b % src->batch) * src->channels * src->height * src->width;
        if (resize_source)
            kiln_resample(image, src->channels, src->height, src->width, source + picture * b, sh, sw,
                          KILN_RESAMPLE_BILINEAR);
        else
            memcpy(source + picture * b, image, picture * sizeof *source);
    }
    /* the mask stretched over the source (bilinear), else 1 */
    if (mask) kiln_resample(mask, 1, mask_h, mask_w, weights, sh, sw, KILN_RESAMPLE_BILINEAR);
    for (size_t i = 0; !mask && i < (size_t)sh * sw; i++) weights[i] = 1.0f;
    memcpy(r.data, dest->data, kiln_latent_count(dest) * sizeof(float));
    /* ComfyUI's place: its corner at most the destination's far corner, the source cut to what shows */
    const int left = x < dest->width ? x : dest->width, top = y < dest->height ? y : dest->height;
    const int w = sw < dest->width - left ? sw : dest->width - left, h = sh < dest->height - top ? sh : dest->height - top;
    for (int b = 0; b < dest->batch; b++)
        for (int c = 0; c < dest->channels; c++) {
            const float *s = source + picture * b + (size_t)c * sh * sw;
            float *d = r.data + ((size_t)b * dest->channels + c) * dest->height * dest->width;
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    const float m = weights[(size_t)i * sw + j];
                    float *at = &d[(size_t)(top + i) * dest->width + left + j];
                    *at = m * s[(size_t)i * sw + j] + (1.0f - m) * *at;
                }
        }
    free(source), free(weights);
    *out = r;
    return KILN_OK;
}

kiln_status kiln_latent_save(const kiln_latent *l, const char *path, const char *prompt)
{
    if (!l || !l->data || !path) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_latent_save: no latent or path");
    const kiln_st_entry entries[2] = {
        {"latent_tensor", KILN_F32, 4, {l->batch, l->channels, l->height, l->width}, l->data},
        {"latent_format_version_0", KILN_F32, 1, {0}, NULL},
    };
    const kiln_st_meta meta = {"prompt", prompt};
    return kiln_st_write(path, entries, 2, prompt ? &meta : NULL, prompt ? 1 : 0);
}

kiln_status kiln_latent_load(const char *path, kiln_latent *out)
{
    if (!path || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_latent_load: no path or place");
    *out = (kiln_latent){0};
    kiln_st_file *f;
    TRY(kiln_st_open(path, &f));
    const kiln_st_tensor *t = kiln_st_find(f, "latent_tensor");
    float *data = NULL;
    size_t count;
    kiln_status st = KILN_OK;
    if (!t)
        st = kiln_fail(KILN_ERR_FORMAT, "%s: no tensor 'latent_tensor': not a ComfyUI .latent file", path);
    else if (t->ndim != 4 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[2] < 1 || t->shape[3] < 1 ||
             t->shape[0] > 4096 || t->shape[1] > 4096 || t->shape[2] > 65536 || t->shape[3] > 65536)
        st = kiln_fail(KILN_ERR_UNSUPPORTED, "%s: latent_tensor is %d-dimensional or empty: kiln reads an image "
                       "latent (batch, channels, height, width)", path, t->ndim);
    else
        st = kiln_st_read_f32(f, "latent_tensor", &data, &count);
    if (st == KILN_OK) {
        /* a file from before the format's version was saved scaled: the node scales it back in float32 */
        if (!kiln_st_find(f, "latent_format_version_0"))
            for (size_t i = 0; i < count; i++) data[i] *= (float)(1.0 / 0.18215);
        *out = (kiln_latent){.data = data, .batch = (int)t->shape[0], .channels = (int)t->shape[1],
                             .height = (int)t->shape[2], .width = (int)t->shape[3]};
    }
    kiln_st_close(f);
    return st;
}
