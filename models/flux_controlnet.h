/* ControlNet for FLUX.1: a few of the transformer's blocks, trained, fed
 * the noisy latent's tokens plus the control picture's (each through its
 * own linear), with the same caption, timestep, guidance and pooled
 * output. Each block's image tokens through a linear ("controlnet_blocks")
 * times the strength are added to the image tokens of the transformer's
 * blocks (ComfyUI's Flux control "input" and "output"): a ControlNet of
 * InstantX's kind spreads its n residuals over the B blocks in turn, each
 * to ceil(B/n) of them (diffusers' interval; ComfyUI's for FLUX.1's 19 and
 * 38 blocks), one of XLabs' kind cycles them.
 *
 * Two kinds of file:
 * - InstantX's and Shakker-Labs' (diffusers' FluxControlNetModel:
 *   transformer_blocks.N, controlnet_x_embedder, controlnet_blocks.N,
 *   controlnet_single_blocks.N, for a union model controlnet_mode_embedder,
 *   whose row of the control type goes before the caption's tokens): the
 *   picture comes in as its latent (the model's VAE, then process_in),
 *   packed as the latent is.
 * - XLabs' (BFL's names, double_blocks.N, read as diffusers' at open;
 *   pos_embed_input, controlnet_blocks.N, input_hint_block.N): the picture
 *   itself, times 2 minus 1, 8x the latent, through the hint encoder of SD's
 *   ControlNets (16 wide) and packed into 2x2 patches. */
#ifndef KILN_MODELS_FLUX_CONTROLNET_H
#define KILN_MODELS_FLUX_CONTROLNET_H

#include "controlnet.h"
#include "flux.h"

/* ControlNets on one call; kiln.h's KILN_MAX_CONTROLS */
#define FLUX_MAX_CONTROLS 8

struct kiln_flux_controlnet {
    kiln_flux trunk;      /* its blocks and embeddings, without a final layer */
    tensor hint_in_w;     /* the picture's linear over a 2x2 patch of C channels, as a conv (D,C,2,2) */
    const tensor *hint_in_b;
    int hint_channels;    /* C: the latent's 16, and a mask's 1 where concat_mask */
    bool concat_mask;     /* Alimama's inpainting kind: the hint's last channel is a mask (1 keeps) */
    const tensor *block_w[FLUX_MAX_DOUBLE], *block_b[FLUX_MAX_DOUBLE];   /* (D,D) after each double block */
    const tensor *single_w[FLUX_MAX_SINGLE], *single_b[FLUX_MAX_SINGLE]; /* after each single block */
    const tensor *modes;  /* (nmodes, D) a union model's control types; NULL */
    int nmodes;
    bool pixel_hint;      /* XLabs': the picture through hint_encoder; its residuals cycle */
    kiln_hint_encoder hint_encoder;
};

/* Opens a Flux ControlNet file or folder (either kind) and binds it on be,
 * for the transformer `flux` (one whose widths differ is refused, naming
 * both). */
kiln_status kiln_flux_controlnet_open(const char *path, const kiln_flux *flux, kiln_backend *be,
                                      kiln_controlnet **out);

/* The hint a call takes for a latent of h x w: (channels, height, width) in
 * shape: the picture's latent (16, h, w), or the picture (3, 8h, 8w) in
 * [-1, 1]. */
void kiln_flux_controlnet_hint_shape(const kiln_flux_controlnet *cn, int h, int w, int shape[3]);

/* One ControlNet's residuals on a call, each (B, h*w, D) times strength. */
typedef struct flux_residuals {
    tensor *block[FLUX_MAX_DOUBLE], *single[FLUX_MAX_SINGLE];
    int nblock, nsingle;                /* the ControlNet's */
    int model_double, model_single;     /* the transformer's blocks they spread over */
    bool cycle;
    bool sd3;                           /* spread as ComfyUI spreads an SD3 ControlNet's */
} flux_residuals;

typedef struct flux_residual_set {
    const flux_residuals *each;
    int count;
} flux_residual_set;

/* The ControlNet c on the call's inputs (tokens and context as graph
 * tensors, the transformer `model` they are for) -> *out. */
kiln_status kiln_flux_controlnet_forward(kiln_graph *g, const kiln_flux_controlnet *cn, const kiln_flux *model,
                                         const flux_input *in, const tensor *tokens, const tensor *context,
                                         const flux_control *c, flux_residuals *out);
/* The residual of r for the transformer's double (single false) or single
 * block i, or NULL. */
tensor *kiln_flux_residual(const flux_residuals *r, bool single, int i);
void kiln_flux_residuals_release(kiln_graph *g, flux_residuals *r);

#endif
