/* T2I-Adapters (TencentARC): a small convolutional net that turns a control
 * picture into one feature map per level, computed once per picture and
 * added to the UNet's encoder path after given input blocks (and, for SDXL,
 * after the middle block), times the strength: ComfyUI's ControlNetLoader
 * reads them as it reads ControlNets, and Apply ControlNet applies them.
 *
 * Two kinds, both in TencentARC's names (diffusers' T2IAdapter files are
 * renamed when opened, kiln_checkpoint_open_controlnet):
 *  - full (canny, sketch, depth, openpose, ... and SDXL's): the picture
 *    pixel-unshuffled by 8 (SDXL's by 16), `conv_in` 3x3, then per level two
 *    res blocks `body.{2 level + k}` (block1 3x3, ReLU, block2, plus the
 *    input), the first of a level halving the size where the level does
 *    (average pooling, or a strided `down_opt.op` conv where the file has
 *    one) and changing the width with `in_conv` where it changes;
 *  - light (color): per level `body.{level}`: halved but on the first level,
 *    `in_conv` 1x1 to a quarter of the width, res blocks `body.{k}` (3x3,
 *    ReLU, 3x3, plus the input), `out_conv` 1x1 back to the width.
 * A file for SDXL is told as ComfyUI tells it: conv_in reads 256 or 768
 * channels (1 or 3 unshuffled by 16). */
#ifndef KILN_MODELS_T2I_ADAPTER_H
#define KILN_MODELS_T2I_ADAPTER_H

#include <stdbool.h>

#include "checkpoint.h"
#include "nn.h"
#include "unet.h"
#include "weights.h"

#define KILN_T2I_MAX_LEVELS 4
#define KILN_T2I_MAX_RESNETS 8
/* kiln_t2i_adapter_block's answer besides an input block */
#define KILN_T2I_MIDDLE (-1)
/* a level whose features join no block of the UNet (its encoder is shallower) */
#define KILN_T2I_UNUSED (-2)

typedef struct kiln_t2i_resnet {
    const tensor *block1_w, *block1_b, *block2_w, *block2_b;
} kiln_t2i_resnet;

typedef struct kiln_t2i_level {
    bool down;                     /* halves the size first */
    const tensor *down_w, *down_b; /* by a strided 3x3 conv; NULL: by average pooling */
    const tensor *in_w, *in_b;     /* NULL where a full adapter's width stays */
    kiln_t2i_resnet resnets[KILN_T2I_MAX_RESNETS];
    const tensor *out_w, *out_b;   /* the light kind's */
    int64_t channels;
} kiln_t2i_level;

typedef struct kiln_t2i_adapter {
    bool light, xl;
    int unshuffle;      /* 8, SDXL's 16 */
    int input_channels; /* 3, or 1: the picture's mean over its channels */
    int nlevels, nresnets;
    const tensor *conv_in_w, *conv_in_b; /* the full kind's */
    kiln_t2i_level levels[KILN_T2I_MAX_LEVELS];
} kiln_t2i_adapter;

/* Whether the checkpoint holds a T2I-Adapter in TencentARC's names. */
bool kiln_t2i_adapter_detect(const kiln_checkpoint *ck);
kiln_status kiln_t2i_adapter_bind(kiln_weights *w, const kiln_checkpoint *ck, kiln_t2i_adapter *a);
/* Refuses an adapter whose kind or widths are not the UNet's, naming the file. */
kiln_status kiln_t2i_adapter_check(const kiln_t2i_adapter *a, const unet_config *cfg, const char *path);

/* The encoder block (ComfyUI's count of input blocks, 0 conv_in) whose output
 * a level's features join, or KILN_T2I_MIDDLE: levels 2, 5, 8, 11 (SDXL's 3,
 * 5, 8 and the middle block), as ComfyUI's apply_control pops them. */
int kiln_t2i_adapter_block(const kiln_t2i_adapter *a, int level);
/* The picture's size for a latent: 8x it, rounded up to the unshuffle. */
void kiln_t2i_adapter_picture_size(const kiln_t2i_adapter *a, int latent_h, int latent_w, int *h, int *w);

// picture (3,h,w) in [0,1], h and w multiples of the unshuffle -> features:
// every level's (C,H,W) one after another (malloc'd), shapes[level]
kiln_status kiln_t2i_adapter_features(const kiln_t2i_adapter *a, kiln_backend *be, const float *picture, int h, int w,
                                      float **features, int64_t shapes[KILN_T2I_MAX_LEVELS][3]);

#endif
