/* ControlNet for an SD 1.x/2.x/XL UNet: a trained copy of the UNet's encoder
 * (its input and middle blocks: the same layer table under `control_model.`;
 * SDXL's takes the vector y as the UNet does),
 * fed the latent plus a hint image encoded to latent size. Its output at
 * every skip point and after the middle block passes through a 1x1 "zero"
 * convolution, is scaled by the strength, and is added to the UNet's skips
 * and middle (kiln_unet_control), as ComfyUI's Apply ControlNet does.
 *
 * Checkpoint names are the original ones (`control_model.input_hint_block.0`,
 * `control_model.zero_convs.0.0`, `control_model.middle_block_out.0`, ...);
 * files without the `control_model.` prefix and diffusers' ControlNetModel
 * files are mapped to them when opened (kiln_controlnet_open). */
#ifndef KILN_MODELS_CONTROLNET_H
#define KILN_MODELS_CONTROLNET_H

#include "unet.h"

#define KILN_CONTROLNET_ROOT "control_model"
/* The hint encoder: 8 convolutions, SiLU between, three of stride 2. */
#define KILN_CONTROLNET_HINT_CONVS 8

/* A picture 8x the latent to the latent's size: `<prefix>.0`, `.2`, ...
 * `.14` (nn.Sequential's indices, SiLUs between), convolutions 2, 4 and 6
 * of stride 2. SD's ControlNets and XLabs' Flux ones have it. */
typedef struct kiln_hint_encoder {
    const tensor *w[KILN_CONTROLNET_HINT_CONVS], *b[KILN_CONTROLNET_HINT_CONVS];
} kiln_hint_encoder;

/* Widths as the file has them, the last one `out` (each conv must take the
 * previous one's output). */
kiln_status kiln_hint_encoder_bind(kiln_weights *w, const char *prefix, int64_t out, kiln_hint_encoder *e);
// hint (N,3,8h,8w) -> *y (N,out,h,w)
kiln_status kiln_hint_encoder_forward(kiln_graph *g, const kiln_hint_encoder *e, const tensor *hint, tensor **y);

typedef struct kiln_flux_controlnet kiln_flux_controlnet;
typedef struct kiln_t2i_adapter kiln_t2i_adapter;

typedef struct kiln_controlnet {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    kiln_flux_controlnet *flux; /* a Flux ControlNet (flux_controlnet.h); the UNet fields below unused */
    kiln_t2i_adapter *adapter;  /* a T2I-Adapter (t2i_adapter.h); the UNet fields below unused */
    const unet_config *config; /* the UNet table whose encoder rows it copies */
    int nrows;
    unet_time_embedding time;
    unet_row *rows;
    kiln_hint_encoder hint;
    const tensor *zero_w[KILN_UNET_MAX_SKIPS], *zero_b[KILN_UNET_MAX_SKIPS];
    int nzero;                 /* one per skip the encoder pushes */
    const tensor *mid_w, *mid_b;
} kiln_controlnet;

/* Opens a ControlNet file (either layout) or a T2I-Adapter and binds it on
 * be, for the UNet `unet` (one for another base model is refused, naming
 * both). A
 * diff ControlNet (a `difference` tensor) gets the weights of `model`'s UNet
 * added first (kiln_controlnet_add_unet), as DiffControlNetLoader does. */
kiln_status kiln_controlnet_open(const char *path, const kiln_unet *unet, const kiln_checkpoint *model,
                                 kiln_backend *be, kiln_controlnet **out);
void kiln_controlnet_free(kiln_controlnet *cn);

// x (N,4,h,w), hint (N,3,8h,8w) in [0,1], the UNet call's cond (its control
// unused) -> out's residuals, each times strength (released by the caller)
kiln_status kiln_controlnet_forward(kiln_graph *g, const kiln_controlnet *cn, const tensor *x, const tensor *hint,
                                    const kiln_unet_cond *cond, float strength, kiln_unet_control *out);

#endif
