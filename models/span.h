/* SPAN upscale models (Swift Parameter-free Attention Network: 4xNomos8k_span,
 * 2xHFA2kSPAN and OpenModelDB's other SPAN files), as spandrel (ComfyUI's
 * UpscaleModelLoader) reads and runs them: the picture less the dataset's
 * mean times 255 (unless the file has a `no_norm` buffer), a Conv3XC to F
 * features, six SPAB blocks (three Conv3XC, SiLU after the first two, the
 * third's output o then (o + x) * (sigmoid(o) - 0.5)), a Conv3XC after the
 * sixth, the first features, that, the first block's output and the sixth
 * block's first conv after its SiLU joined and a 1x1 conv to F, then a 3x3
 * conv to 3 s^2 channels pixel-shuffled by s.
 *
 * A Conv3XC runs as one 3x3 conv (`eval_conv`) whose weights spandrel fuses
 * from the training branches at every call (sk: 1x1; conv.0 1x1, conv.1
 * 3x3, conv.2 1x1 in a row): kiln fuses them once, when the file is opened,
 * and the stored eval_conv is never read. F and s are read off the file. */
#ifndef KILN_MODELS_SPAN_H
#define KILN_MODELS_SPAN_H

#include <stdbool.h>

#include "checkpoint.h"
#include "nn.h"
#include "weights.h"

#define KILN_SPAN_BLOCKS 6

typedef struct kiln_span_conv {
    const tensor *w, *b;
} kiln_span_conv;

typedef struct kiln_span {
    int features, scale;
    bool norm;
    kiln_span_conv first, blocks[KILN_SPAN_BLOCKS][3], last, cat, up;
} kiln_span;

/* Whether the checkpoint holds a SPAN model (spandrel's keys). */
bool kiln_span_detect(const kiln_checkpoint *ck);
/* Each Conv3XC's eval_conv replaced by its branches fused (before the
 * weights are made from the checkpoint). */
kiln_status kiln_span_fuse(kiln_checkpoint *ck);
kiln_status kiln_span_bind(kiln_weights *w, const kiln_checkpoint *ck, kiln_span *s);
// x (1,3,h,w) in [0,1] -> *y (1,3,s h,s w), not clamped
kiln_status kiln_span_forward(kiln_graph *g, const kiln_span *s, const tensor *x, tensor **y);

#endif
