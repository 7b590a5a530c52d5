/* ComfyUI's latent operations on plain arrays, for LatentApplyOperation
 * and the guidance's LatentApplyOperationCFG. */
#ifndef KILN_LATENT_OPERATION_H
#define KILN_LATENT_OPERATION_H

#include <stddef.h>

#include "kiln.h"

/* The operation's settings, for a latent of height x width (sharpening
 * mirrors its edges). */
kiln_status kiln_latent_operation_check(const kiln_latent_operation *op, int height, int width);
/* x (batch,channels,height,width) in place, each image on its own, with
 * kiln_latent_operation_scratch floats of scratch (a checked op). */
size_t kiln_latent_operation_scratch(int channels, int height, int width);
void kiln_latent_operate(const kiln_latent_operation *op, float *x, int batch, int channels, int height, int width,
                         float *scratch);

#endif
