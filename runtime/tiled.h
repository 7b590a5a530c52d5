/* ComfyUI's tiled_scale (comfy.utils.tiled_scale_multidim over two
 * dimensions): a network that maps a picture to one `scale` times larger
 * (or `shrink` times smaller) run over overlapping tiles, so that its
 * activations are a tile's, not the whole picture's. Tiles start at 0, step, 2 step, ... (step = tile -
 * overlap) below the side minus the overlap, the last ones cut short at the
 * picture's edge; each tile's output is weighted by a ramp over its edges ((t +
 * 1) / feather at the t-th pixel from an edge, feather = the overlap's size
 * in the output,
 * none along a side the ramp would cover whole) and the weighted sums are
 * divided by the summed weights. A picture that fits in one tile is run
 * whole. ImageUpscaleWithModel, VAEDecodeTiled and VAEEncodeTiled run this
 * way. */
#ifndef KILN_TILED_H
#define KILN_TILED_H

#include "status.h"

/* in (C_in,h,w) -> out (C_out, h', w'), h' = h * scale / shrink; ctx is the caller's */
typedef kiln_status (*kiln_tile_fn)(void *ctx, const float *in, int h, int w, float *out);

typedef struct kiln_tiling {
    int in_channels, out_channels;
    int scale, shrink;           /* the output's size: the input's times scale over shrink (0: 1) */
    int tile_h, tile_w, overlap; /* in input pixels; overlap < both tile sides; with shrink, all and the picture's
                                    sides its multiples */
} kiln_tiling;

/* in (C_in,H,W) -> out (C_out, H', W') as above, which the caller gives. */
kiln_status kiln_tiled_scale(const kiln_tiling *t, const float *in, int H, int W, kiln_tile_fn fn, void *ctx,
                             float *out);

#endif
