/* SelfAttentionGuidance's degraded prediction (ComfyUI's nodes_sag.py): where
 * the UNet's middle block attends most, the unconditional x0 prediction is
 * blurred, so that the guidance can push the sampling away from what the
 * model makes of a picture without its detail there. */
#ifndef KILN_SAG_H
#define KILN_SAG_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"

/* The attention each of T keys receives in one image's self-attention, q and
 * k (T, heads x d) its projections: softmax(q k^T / sqrt(d)) per head,
 * summed over the queries, averaged over the heads -> weights (T). Their
 * mean over the keys is 1. */
kiln_status kiln_sag_key_weights(const float *q, const float *k, int tokens, int channels, int heads,
                                 float *weights);

/* The picture's grid of T tokens for a latent of h x w, as ComfyUI's
 * create_blur_map finds it (rows near sqrt(T h / w) that divide T); false
 * where there is none. */
bool kiln_sag_grid(int tokens, int h, int w, int *rows, int *cols);

/* x0 (C,h,w) one image's unconditional prediction -> degraded (C,h,w): its
 * 9x9 Gaussian blur (std blur_sigma, reflected at the edges) where the
 * key weights on their grid, stretched to h x w (nearest), exceed 1, the
 * prediction itself elsewhere; mask (h,w), if not NULL, gets that 0/1 map. */
void kiln_sag_degrade(const float *x0, int channels, int h, int w, const float *weights, int rows, int cols,
                      float blur_sigma, float *degraded, float *mask);

#endif
