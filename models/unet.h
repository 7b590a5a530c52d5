/* The UNet of Stable Diffusion 1.x/2.x as a static layer table.
 *
 * One row per checkpoint block, with its literal key prefix under
 * `model.diffusion_model.`. The executor walks the rows in order: PUSH rows
 * save their output on the skip stack; rows with `concat_skip` first
 * concatenate the top of the stack onto the running activation. */
#ifndef KILN_MODELS_UNET_H
#define KILN_MODELS_UNET_H

#include "blocks.h"

typedef enum unet_layer_kind {
    UNET_CONV_IN,     /* conv 3x3 in_ch -> out_ch */
    UNET_RESBLOCK,    /* ResBlock in_ch -> out_ch with the time embedding */
    UNET_TRANSFORMER, /* spatial transformer over out_ch channels */
    UNET_DOWNSAMPLE,  /* conv 3x3 stride 2 (`.op`) */
    UNET_UPSAMPLE,    /* nearest 2x then conv 3x3 (`.conv`) */
} unet_layer_kind;

typedef struct unet_layer {
    unet_layer_kind kind;
    const char *prefix; /* e.g. "input_blocks.1.1" */
    int in_ch, out_ch;
    int concat_skip;    /* pop the skip stack and concatenate before this row */
    int push_skip;      /* push this row's output on the skip stack */
    const char *block_name; /* diffusers-style name of the block this row ends ("down_blocks.0"), or NULL */
} unet_layer;

typedef struct unet_config {
    const char *name;         /* "sd15", "sd15-tiny-test", ... */
    int in_channels, out_channels;
    int model_channels;       /* timestep embedding width */
    int time_embed_dim;       /* 4 x model_channels */
    int context_dim;          /* text encoder hidden size */
    int heads;                /* attention heads in every transformer */
    const unet_layer *layers;
    int nlayers;
} unet_config;

typedef struct unet_row {
    const unet_layer *layer;
    kiln_resblock res;
    kiln_spatial_transformer attn;
    const tensor *conv_w, *conv_b; /* conv in / downsample / upsample */
} unet_row;

typedef struct kiln_unet {
    const unet_config *config;
    const tensor *time1_w, *time1_b, *time2_w, *time2_b; /* (temb,mc) (temb) (temb,temb) (temb) */
    const tensor *out_norm_w, *out_norm_b, *out_w, *out_b;
    unet_row *rows;
} kiln_unet;

/* The UNet configurations kiln knows, matched against a checkpoint's shapes. */
extern const unet_config *const kiln_unet_configs[];

/* Picks the config whose shapes the checkpoint has (NULL if none). */
const unet_config *kiln_unet_detect(const kiln_checkpoint *ck);
kiln_status kiln_unet_bind(kiln_weights *w, const unet_config *cfg, kiln_unet *unet);
void kiln_unet_release(kiln_unet *unet);

/* Called with each named block's output when set (parity tests locate a
 * mismatch with it). */
typedef kiln_status (*kiln_unet_probe)(void *ctx, const char *block_name, kiln_graph *g, const tensor *t);

// x (N,in,H,W), t (N) timesteps, context (N,T,ctx) -> *eps (N,out,H,W)
kiln_status kiln_unet_forward(kiln_graph *g, const kiln_unet *unet, const tensor *x, const tensor *t,
                              const tensor *context, kiln_unet_probe probe, void *probe_ctx, tensor **eps);

#endif
