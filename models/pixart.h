/* PixArt-alpha's DiT (diffusers' Transformer2DModel with adaLN-single):
 * the latent cut into 2x2 patches and projected to tokens with a 2-D sine
 * position table; one timestep MLP ("adaLN-single") whose six vectors, plus
 * each block's own table, shift, scale and gate every block; blocks of
 * self-attention, cross-attention to the projected T5 caption (no norm in
 * front of it) and a tanh-GELU feed-forward; a final modulated norm and a
 * projection back to patches. The 1024 model (sample_size 128) also embeds
 * the picture's size and aspect ratio into the timestep vector.
 *
 * Weights are bound under diffusers' names (`pos_embed.proj`, `adaln_single.*`,
 * `caption_projection.*`, `transformer_blocks.N.*`, `scale_shift_table`,
 * `proj_out`), the layout PixArtAlphaPipeline ships; a single file in
 * PixArt's original names is read under them (runtime/checkpoint.c) and
 * places its tokens as ComfyUI, which loads such files, does. Heads are 72
 * wide in every PixArt, so their count is the width over 72. */
#ifndef KILN_MODELS_PIXART_H
#define KILN_MODELS_PIXART_H

#include "dit.h"

#define PIXART_MAX_LAYERS 40
#define PIXART_HEAD_DIM 72

typedef struct pixart_attention {
    const tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
} pixart_attention;

typedef struct pixart_block {
    const tensor *table;                    /* (6,D): shift, scale, gate before attention; then before the MLP */
    pixart_attention self, cross;
    kiln_mlp ff;                            /* tanh GELU, 4D inside */
} pixart_block;

typedef struct kiln_pixart {
    int in_channels, out_channels, patch, hidden, heads, layers, caption_dim;
    int sample_size;            /* latent side it was trained at: sets the position table's scale */
    bool comfy_positions;       /* an original file: the table as ComfyUI's PixArtMS scales it, per latent */
    int pe_interpolation;       /* ... at the scale its pos_embed buffer fixes, or 0: from each latent */
    bool size_conditions;       /* embeds resolution and aspect ratio (the 1024 model) */
    tensor patch_w;             /* the (D,C,p,p) patch conv as a (D,C*p*p) linear */
    const tensor *patch_b;
    kiln_mlp time, resolution, aspect;    /* the last two only with size_conditions */
    const tensor *time_w, *time_b;          /* (6D,D) (6D): adaLN-single's vectors */
    kiln_mlp caption;                       /* T5's width to D, tanh GELU */
    pixart_block block[PIXART_MAX_LAYERS];
    const tensor *final_table;              /* (2,D): shift, scale */
    const tensor *proj_out_w, *proj_out_b;  /* (p*p*out,D) */
} kiln_pixart;

/* Whether the checkpoint holds a PixArt DiT under root. */
bool kiln_pixart_present(const kiln_checkpoint *ck, const char *root);
/* Sizes from the shapes; sample_size from the caller (a folder's config.json),
 * 0 for the default: an original file's pos_embed buffer's side, else 128
 * with size conditions, else 64. */
kiln_status kiln_pixart_bind(kiln_weights *w, const char *root, int sample_size, kiln_pixart *dit);

/* One call's inputs, on the host. Rows may have captions of different
 * lengths: each row attends to its own. */
typedef struct pixart_input {
    int rows, h, w;             /* latent (rows,C,h,w) */
    const float *latent;
    const float *timesteps;     /* (rows) */
    const float *const *captions; /* per row (T_r, caption_dim): the T5 output */
    const int *caption_tokens;  /* T_r */
    const float *sizes;         /* (rows,2): each row's picture height and width in pixels, for size conditions */
} pixart_input;

// -> out (rows, out_channels, h, w) on the host: the whole output, the
// learned variance channels after the prediction
kiln_status kiln_pixart_forward(kiln_graph *g, const kiln_pixart *dit, const pixart_input *in, float *out);

/* PixArt's 2-D sine table for an h x w latent (N = (h/p)(w/p) tokens, D):
 * the first half encodes the column, the second the row, both scaled to the
 * trained grid (diffusers'), or with comfy_positions to the latent's own
 * mean side c = (h + w) / 2 as ComfyUI's PixArtMS does: base grid
 * round(c / 64) * 64 / p, scale round(c / 64) or pe_interpolation (Python's
 * round, half to even). A scale of 0 there (c up to 32) is refused: ComfyUI
 * divides by it. */
kiln_status kiln_pixart_position_table(const kiln_pixart *dit, int h, int w, float *table);

#endif
