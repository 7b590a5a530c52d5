/* Real-ESRGAN's SRVGGNetCompact upscale models (realesr-general-x4v3,
 * realesr-animevideov3 and OpenModelDB's "Compact" ones), as spandrel (ComfyUI's
 * UpscaleModelLoader) reads and runs them: a 3x3 conv to F features and a
 * PReLU, N more 3x3 convs each with its PReLU, a 3x3 conv to 3 s^2
 * channels, pixel shuffle by s, plus the input enlarged s times (nearest).
 * F, N and s are read off the file: `body.0.weight` (F,3,3,3), the PReLUs'
 * `body.{2k+1}.weight` (F), the last conv `body.{2N+2}.weight` (3 s^2,F,3,3). */
#ifndef KILN_MODELS_COMPACT_H
#define KILN_MODELS_COMPACT_H

#include <stdbool.h>

#include "checkpoint.h"
#include "nn.h"
#include "weights.h"

#define KILN_COMPACT_MAX_CONVS 64

typedef struct kiln_compact {
    int features, convs, scale; /* F, N (the convs between the first and the last), s */
    const tensor *w[KILN_COMPACT_MAX_CONVS + 2], *b[KILN_COMPACT_MAX_CONVS + 2]; /* the first, the N, the last */
    const tensor *slope[KILN_COMPACT_MAX_CONVS + 1]; /* after each conv but the last */
} kiln_compact;

/* Whether the checkpoint holds a compact model (`body.0.weight` a 3x3 conv
 * from RGB, `body.1.weight` its PReLU). */
bool kiln_compact_detect(const kiln_checkpoint *ck);
kiln_status kiln_compact_bind(kiln_weights *w, const kiln_checkpoint *ck, kiln_compact *c);
// x (1,3,h,w) in [0,1] -> *y (1,3,s h,s w), not clamped
kiln_status kiln_compact_forward(kiln_graph *g, const kiln_compact *c, const tensor *x, tensor **y);

#endif
