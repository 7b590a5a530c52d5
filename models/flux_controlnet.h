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
 *   ControlNets (16 wide) and packed into 2x2 patches.
 *
 * SD3's (diffusers' SD3ControlNetModel) run through the same code:
 * - InstantX's kind: the transformer's trunk, caption side and all, its
 *   pooled input zeroed; the hint latent scaled without the shift through
 *   pos_embed_input (an inpainting one's, InstantX's or Alimama's, with
 *   the mask's channel after it, as Alimama's Flux kind); residual k to
 *   blocks / n blocks in turn, the last block none (ComfyUI's).
 * - Stability's, SD 3.5 Large's blur, canny and depth (its names, read as
 *   diffusers' at open): blocks of the image tokens alone on the
 *   transformer's own patch embedding of the latent plus ComfyUI's sin-cos
 *   positions (not the transformer's table), with the hint latent (the
 *   picture preprocessed by control type, encoded, shifted and scaled)
 *   through pos_embed_input; the timestep and the pooled output through its
 *   own MLPs; residuals spread as InstantX's Flux ones, the last block's
 *   too (ComfyUI's). */
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
    bool concat_mask;     /* an inpainting kind (Alimama's; SD3: InstantX's too): the hint's last channel a mask (1 keeps) */
    const tensor *block_w[FLUX_MAX_DOUBLE], *block_b[FLUX_MAX_DOUBLE];   /* (D,D) after each double block */
    const tensor *single_w[FLUX_MAX_SINGLE], *single_b[FLUX_MAX_SINGLE]; /* after each single block */
    const tensor *modes;  /* (nmodes, D) a union model's control types; NULL */
    int nmodes;
    bool pixel_hint;      /* XLabs': the picture through hint_encoder; its residuals cycle */
    kiln_hint_encoder hint_encoder;
    /* SD 3.5's of Stability's kind: blocks without a caption side on the transformer's own patch embedding of
       the latent plus ComfyUI's sin-cos positions, the pooled output read; its file's control_type (the
       picture's preprocessing: KILN_SD35_CONTROL_*), or -1 */
    bool stability;
    int control_type;
};

/* The control types of Stability's SD 3.5 ControlNets (their files'
 * control_type) */
enum { KILN_SD35_CONTROL_BLUR, KILN_SD35_CONTROL_CANNY, KILN_SD35_CONTROL_DEPTH };

/* A Stability SD 3.5 ControlNet file's control_type (a number of any
 * dtype), or -1 where it has none. */
kiln_status kiln_sd35_control_type(const kiln_checkpoint *ck, int *type);

/* The picture in [0,1] (n values) as cn reads it before its VAE (ComfyUI's
 * preprocess_image): Stability's canny kind times 127.5 plus 0.5, its
 * depth kind one minus it, any other as it is. */
void kiln_flux_controlnet_preprocess(const kiln_flux_controlnet *cn, float *pixels, size_t n);

/* ComfyUI's sin-cos positions of an SD 3.5 ControlNet of Stability's kind
 * for h x w patches -> table (h*w, D): per patch, D/2 of its column then
 * D/2 of its row, each sin then cos of pos / 10000^(k/(D/4)), the shorter
 * side's positions spread evenly over [0, 15] and the longer's over as
 * much more about 7.5. */
void kiln_sd35_control_positions(int h, int w, int D, float *table);

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
    bool sd3;                           /* spread as ComfyUI spreads an InstantX SD3 ControlNet's */
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
