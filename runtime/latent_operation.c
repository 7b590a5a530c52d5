/* ComfyUI's latent operations: Reinhard tone mapping of the pixels' vector
 * lengths, and sharpening of their directions (kiln.h,
 * kiln_latent_operation; latent_operation.h). */
#include "latent_operation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "latent.h"
#include "status.h"

kiln_status kiln_latent_operation_check(const kiln_latent_operation *op, int height, int width)
{
    if (!op) return kiln_fail(KILN_ERR_INVALID_ARG, "latent operation: none given");
    if (op->kind == KILN_LATENT_OPERATION_TONEMAP_REINHARD) {
        if (!(op->multiplier >= 0.0 && op->multiplier <= 100.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "LatentOperationTonemapReinhard: multiplier %g (0 to 100)",
                             op->multiplier);
        return KILN_OK;
    }
    if (op->kind != KILN_LATENT_OPERATION_SHARPEN)
        return kiln_fail(KILN_ERR_INVALID_ARG, "latent operation: unknown kind %d", (int)op->kind);
    if (op->sharpen_radius < 1 || op->sharpen_radius > 31 || !(op->sigma >= 0.1 && op->sigma <= 10.0) ||
        !(op->alpha >= 0.0 && op->alpha <= 5.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentOperationSharpen: sharpen_radius %d (1 to 31), sigma %g (0.1 to "
                         "10), alpha %g (0 to 5)", op->sharpen_radius, op->sigma, op->alpha);
    if (op->sharpen_radius >= height || op->sharpen_radius >= width)
        return kiln_fail(KILN_ERR_INVALID_ARG, "LatentOperationSharpen: sharpen_radius %d on a %dx%d latent: the "
                         "mirrored edges need it below both sides", op->sharpen_radius, width, height);
    return KILN_OK;
}

/* Each pixel's vector length over the channels plus eps, as torch's
 * vector_norm sums the squares in float32. */
static void lengths(const float *x, int C, size_t plane, float eps, float *len)
{
    for (size_t p = 0; p < plane; p++) {
        float sq = 0.0f;
        for (int c = 0; c < C; c++) sq += x[c * plane + p] * x[c * plane + p];
        len[p] = sqrtf(sq) + eps;
    }
}

static void tonemap(float *x, int C, size_t plane, float multiplier, float *len)
{
    lengths(x, C, plane, 1e-10f, len);
    double sum = 0.0, sq = 0.0;
    for (size_t p = 0; p < plane; p++) sum += len[p], sq += (double)len[p] * len[p];
    const double mean = sum / (double)plane;
    const float std = (float)sqrt(fmax(sq - sum * mean, 0.0) / (double)(plane - 1));
    const float top = (std * 5.0f + (float)mean) * multiplier, inverse = 1.0f / top;
    for (size_t p = 0; p < plane; p++) {
        const float scaled = len[p] * inverse, mapped = scaled / (scaled + 1.0f) * top;
        for (int c = 0; c < C; c++) x[c * plane + p] = x[c * plane + p] / len[p] * mapped;
    }
}

static void sharpen(float *x, int C, int H, int W, const kiln_latent_operation *op, float *len, float *work)
{
    const size_t plane = (size_t)H * W;
    lengths(x, C, plane, 1e-6f, len);
    for (int c = 0; c < C; c++)
        for (size_t p = 0; p < plane; p++) x[c * plane + p] /= len[p];
    kiln_sharpen_planes(x, C, H, W, op->sharpen_radius, op->sigma, op->alpha, work);
    for (int c = 0; c < C; c++)
        for (size_t p = 0; p < plane; p++) x[c * plane + p] = len[p] * work[c * plane + p];
}

size_t kiln_latent_operation_scratch(int channels, int height, int width)
{
    return (size_t)(channels + 1) * height * width;
}

void kiln_latent_operate(const kiln_latent_operation *op, float *x, int batch, int channels, int height, int width,
                         float *scratch)
{
    const size_t plane = (size_t)height * width, image = (size_t)channels * plane;
    float *len = scratch, *work = scratch + plane;
    for (int b = 0; b < batch; b++) {
        if (op->kind == KILN_LATENT_OPERATION_TONEMAP_REINHARD)
            tonemap(x + b * image, channels, plane, (float)op->multiplier, len);
        else
            sharpen(x + b * image, channels, height, width, op, len, work);
    }
}

kiln_status kiln_latent_apply_operation(const kiln_latent *l, const kiln_latent_operation *op, kiln_latent *out)
{
    if (!out) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentApplyOperation: no place for the latent");
    *out = (kiln_latent){0};
    if (!l || !l->data) return kiln_fail(KILN_ERR_INVALID_ARG, "LatentApplyOperation: no latent");
    TRY(kiln_latent_operation_check(op, l->height, l->width));
    kiln_latent r;
    TRY(kiln_latent_like(l, l->batch, false, "LatentApplyOperation", &r));
    float *scratch = malloc(kiln_latent_operation_scratch(l->channels, l->height, l->width) * sizeof *scratch);
    if (!scratch || !kiln_latent_copy_places(l, &r)) {
        free(scratch);
        kiln_latent_free(&r);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LatentApplyOperation: out of host memory");
    }
    memcpy(r.data, l->data, kiln_latent_count(l) * sizeof *r.data);
    kiln_latent_operate(op, r.data, r.batch, r.channels, r.height, r.width, scratch);
    free(scratch);
    *out = r;
    return KILN_OK;
}
