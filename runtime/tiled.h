/* ComfyUI's tiled_scale (comfy.utils.tiled_scale_multidim over two
 * dimensions): a network that maps a picture to one `scale` times larger
 * run over overlapping tiles, so that its activations are a tile's, not the
 * whole picture's. Tiles start at 0, step, 2 step, ... (step = tile -
 * overlap) below the side minus the overlap, the last ones cut short at the
 * picture's edge; each tile's output is weighted by a ramp over its edges ((t +
 * 1) / feather at the t-th pixel from an edge, feather = scale * overlap,
 * none along a side the ramp would cover whole) and the weighted sums are
 * divided by the summed weights. A picture that fits in one tile is run
 * whole. ImageUpscaleWithModel and VAEDecodeTiled run this way. */
#ifndef KILN_TILED_H
#define KILN_TILED_H

#include "status.h"

/* in (C_in,h,w) -> out (C_out, scale h, scale w); ctx is the caller's */
typedef kiln_status (*kiln_tile_fn)(void *ctx, const float *in, int h, int w, float *out);

typedef struct kiln_tiling {
    int in_channels, out_channels, scale;
    int tile_h, tile_w, overlap; /* in input pixels; overlap < both tile sides */
} kiln_tiling;

/* in (C_in,H,W) -> out (C_out, scale H, scale W), which the caller gives. */
kiln_status kiln_tiled_scale(const kiln_tiling *t, const float *in, int H, int W, kiln_tile_fn fn, void *ctx,
                             float *out);

#endif
