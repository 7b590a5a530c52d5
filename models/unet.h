/* The UNet of Stable Diffusion 1.x/2.x/XL as a static layer table.
 *
 * One row per checkpoint block, with its literal key prefix under
 * `model.diffusion_model.`. The executor walks the rows in order: PUSH rows
 * save their output on the skip stack; rows with `concat_skip` first
 * concatenate the top of the stack onto the running activation. */
#ifndef KILN_MODELS_UNET_H
#define KILN_MODELS_UNET_H

#include "blocks.h"
#include "hypernetwork.h"
#include "kiln.h"
#include "rng.h"
#include "resample.h"

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
    int in_ch, out_ch;  /* conv_in's in_ch is the config's in_channels */
    int concat_skip;    /* pop the skip stack and concatenate before this row */
    int push_skip;      /* push this row's output on the skip stack */
    const char *block_name; /* diffusers-style name of the block this row ends ("down_blocks.0"), or NULL */
    int depth;          /* a transformer's blocks (1; SDXL's 2 or 10), 0 in other rows */
} unet_layer;

typedef struct unet_config {
    const char *name;         /* "sd15", "sd15-tiny-test", ... */
    const char *family;       /* "sd1", "sd2": which text encoders and defaults go with it */
    int in_channels, out_channels; /* in: 4 latent channels (+ 5 for inpainting: mask and masked image) */
    int model_channels;       /* timestep embedding width */
    int time_embed_dim;       /* 4 x model_channels */
    int context_dim;          /* text encoder hidden size */
    int heads;                /* attention heads in every transformer (SD 1.x) ... */
    int head_channels;        /* ... or, when set, heads of this width (SD 2.x: out_ch / 64 heads) */
    bool linear_projection;   /* transformers' proj_in/proj_out are linears (SD 2.x), not 1x1 convs */
    int adm_channels;         /* SDXL: width of the vector y (pooled text, sizes) whose MLP label_emb joins the
                                 time embedding; 0: none */
    const unet_layer *layers;
    int nlayers;
} unet_config;

typedef struct unet_row {
    const unet_layer *layer;
    kiln_resblock res;
    kiln_spatial_transformer attn;
    const tensor *conv_w, *conv_b; /* conv in / downsample / upsample */
} unet_row;

/* The timestep embedding MLP: (temb,mc) (temb) (temb,temb) (temb), and
 * SDXL's label_emb MLP on y beside it: (temb,adm) (temb) (temb,temb) (temb). */
typedef struct unet_time_embedding {
    const tensor *w1, *b1, *w2, *b2;
    const tensor *label_w1, *label_b1, *label_w2, *label_b2; /* NULL without adm */
} unet_time_embedding;

typedef struct kiln_unet {
    const unet_config *config;
    unet_time_embedding time;
    const tensor *out_norm_w, *out_norm_b, *out_w, *out_b;
    unet_row *rows;
} kiln_unet;

#define KILN_UNET_ROOT "model.diffusion_model"
#define KILN_UNET_MAX_SKIPS 32

/* The UNet configurations kiln knows, matched against a checkpoint's shapes. */
extern const unet_config *const kiln_unet_configs[];

/* Picks the config whose shapes the checkpoint has (NULL if none). */
const unet_config *kiln_unet_detect(const kiln_checkpoint *ck);
/* The same under another root; with encoder_only, for a table's encoder
 * rows alone (a ControlNet's copy under "control_model"). */
const unet_config *kiln_unet_detect_at(const kiln_checkpoint *ck, const char *root, bool encoder_only);
/* Rows before the first that pops a skip: the input and middle blocks. */
int kiln_unet_encoder_rows(const unet_config *cfg);
/* The shape (C,H,W) of the encoder's path on an h x w latent after input
 * block `block` (ComfyUI's count, 0 conv_in), or after the middle block for
 * -1; false where the UNet has no such block. */
bool kiln_unet_block_shape(const unet_config *cfg, int64_t h, int64_t w, int block, int64_t shape[3]);
kiln_status kiln_unet_bind(kiln_weights *w, const unet_config *cfg, kiln_unet *unet);
void kiln_unet_release(kiln_unet *unet);

/* The pieces a ControlNet shares with the UNet it copies, bound under its own
 * root. */
kiln_status kiln_unet_bind_time_embedding(kiln_weights *w, const char *root, const unet_config *cfg,
                                          unet_time_embedding *te);
kiln_status kiln_unet_bind_row(kiln_weights *w, const char *root, const unet_config *cfg, const unet_layer *l,
                               unet_row *row);
// t (N), y (N,adm) or NULL -> *emb_silu (N,temb): the embedding (plus label_emb(y)) with the
// SiLU every ResBlock applies first
kiln_status kiln_unet_time_embedding_forward(kiln_graph *g, const unet_time_embedding *te, const unet_config *cfg,
                                             const tensor *t, const tensor *y, tensor **emb_silu);
/* next_skip: the skip the row after this one concatenates (NULL on the
 * encoder side); an upsample takes its size, so that levels of odd size (a
 * latent side not a multiple of 2^levels) come back to the size they had;
 * attn1: a transformer row's self-attention patch, or NULL; hn: the
 * hypernetworks, or NULL (kiln_spatial_transformer_forward) */
kiln_status kiln_unet_row_forward(kiln_graph *g, const unet_row *row, const tensor *in, const tensor *emb_silu,
                                  const tensor *context, const kiln_image_attention *image, const tensor *next_skip,
                                  const kiln_self_attention_patch *attn1, const kiln_hypernetworks *hn, tensor **out);

/* Control for one UNet call. ControlNet residuals: one per skip the encoder
 * pushes, in push order, added to the skip the decoder gets (nskips 0: none).
 * T2I-Adapter features: added to the encoder's path after input block k
 * (ComfyUI's count, 0 conv_in), before its skip is kept (NULL: none). And one
 * added to the middle block's output (NULL: none). */
typedef struct kiln_unet_control {
    tensor *skips[KILN_UNET_MAX_SKIPS];
    int nskips;
    tensor *inputs[KILN_UNET_MAX_SKIPS];
    tensor *mid;
} kiln_unet_control;

/* Called with each named block's output when set (parity tests locate a
 * mismatch with it). */
typedef kiln_status (*kiln_unet_probe)(void *ctx, const char *block_name, kiln_graph *g, const tensor *t);

/* An image prompt (IP-Adapter) for one UNet call: the image tokens, their
 * weight, and for each row of the UNet's table the k and v weights of its
 * transformer blocks' image attention (kiln_ip_adapter holds them). */
typedef struct kiln_unet_image_prompt {
    const tensor *tokens; /* (N,Ti,ctx) */
    float weight;
    const tensor *const *k_w, *const *v_w; /* [row * KILN_MAX_TRANSFORMER_DEPTH + block] */
} kiln_unet_image_prompt;

/* PatchModelAddDownscale in a call: after input block `block` (ComfyUI's
 * count of the skips the encoder keeps, 0 conv_in), the activations resized
 * by 1 / factor (rounded half to even) with `down`, after or before that
 * block's skip is kept; in the decoder an input of another height than its
 * skip resized to the skip's with `up`. */
typedef struct kiln_unet_shrink {
    int block;
    double factor;
    bool after_skip;
    kiln_resample_method down, up;
} kiln_unet_shrink;

/* What a UNet call takes besides the latent: t (N) timesteps, context
 * (N,T,ctx), y (N,adm) for a UNet with adm_channels (else NULL), control
 * and image NULL for none (their tensors stay the caller's). */
typedef struct kiln_unet_cond {
    const tensor *t, *context, *y;
    const kiln_unet_control *control;
    const kiln_unet_image_prompt *image; /* nimages of them, each adding its attention after the one before */
    int nimages;
    const kiln_freeu *freeu; /* FreeU on the decoder (kiln_freeu); NULL: none */
    const kiln_unet_shrink *shrink; /* Deep Shrink in this call; NULL: none */
    /* the middle block's self-attention patch: PerturbedAttentionGuidance's pass, SelfAttentionGuidance's record */
    kiln_self_attention_patch middle_attn1;
    /* HyperTile on every transformer block, its draws taken from *hypertile_rng in the blocks' order; NULL: none */
    const kiln_hypertile *hypertile;
    kiln_rng *hypertile_rng;
    const kiln_hypernetworks *hypernetworks; /* on every attention's keys and values; NULL: none */
} kiln_unet_cond;

/* The layer of the middle block's transformer (false: it has none) and
 * the side of its h x w grid for an lh x lw latent, the path halved
 * (rounded up) at each downsample and resized by Deep Shrink where shrink
 * is given, as kiln_unet_forward takes it there. */
bool kiln_unet_middle_grid(const kiln_unet *unet, int lh, int lw, const kiln_unet_shrink *shrink, int *row, int *h,
                           int *w);

// x (N,in,H,W) -> *eps (N,out,H,W)
kiln_status kiln_unet_forward(kiln_graph *g, const kiln_unet *unet, const tensor *x, const kiln_unet_cond *cond,
                              kiln_unet_probe probe, void *probe_ctx, tensor **eps);

#endif
