/* Composite blocks, written once and shared by every model that has them:
 * the residual block (UNet with a time embedding, VAE without), the spatial
 * transformer (self-attention, cross-attention, GEGLU feed-forward), the VAE's
 * single-head attention, and the down/upsamplers. Each has a bind function per
 * checkpoint naming scheme and one forward. */
#ifndef KILN_BLOCKS_H
#define KILN_BLOCKS_H

#include "nn.h"
#include "weights.h"

typedef struct kiln_resblock {
    int in_ch, out_ch;
    float eps;
    const tensor *norm1_w, *norm1_b, *conv1_w, *conv1_b; /* (in) (in) (out,in,3,3) (out) */
    const tensor *emb_w, *emb_b;                         /* (out,temb) (out), NULL in the VAE */
    const tensor *norm2_w, *norm2_b, *conv2_w, *conv2_b; /* (out) (out) (out,out,3,3) (out) */
    const tensor *skip_w, *skip_b;                       /* (out,in,1,1) (out), NULL if in == out */
} kiln_resblock;

/* UNet ResBlock: `<prefix>.in_layers.0`, `.emb_layers.1`, `.out_layers.3`, `.skip_connection`. */
kiln_status kiln_resblock_bind_unet(kiln_weights *w, const char *prefix, int in_ch, int out_ch, int temb_dim,
                                    kiln_resblock *rb);
/* VAE ResnetBlock: `<prefix>.norm1`, `.conv1`, `.norm2`, `.conv2`, `.nin_shortcut`. */
kiln_status kiln_resblock_bind_vae(kiln_weights *w, const char *prefix, int in_ch, int out_ch, kiln_resblock *rb);
// x (N,in,H,W), emb_silu (N,temb) or NULL -> *y (N,out,H,W); x is not released
kiln_status kiln_resblock_forward(kiln_graph *g, const kiln_resblock *rb, const tensor *x, const tensor *emb_silu,
                                  tensor **y);

typedef struct kiln_attention_weights {
    const tensor *q_w, *k_w, *v_w, *out_w, *out_b; /* (C,C) (C,ctx) (C,ctx) (C,C) (C) */
} kiln_attention_weights;

/* One BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward. */
typedef struct kiln_transformer_block {
    const tensor *norm1_w, *norm1_b, *norm2_w, *norm2_b, *norm3_w, *norm3_b; /* (C) */
    kiln_attention_weights attn1, attn2;
    const tensor *ff_in_w, *ff_in_b;       /* (8C,C) (8C): GEGLU value and gate */
    const tensor *ff_out_w, *ff_out_b;     /* (C,4C) (C) */
} kiln_transformer_block;

#define KILN_MAX_TRANSFORMER_DEPTH 16 /* SDXL's deepest: 10 */

typedef struct kiln_spatial_transformer {
    int channels, heads, context_dim, depth;
    const tensor *norm_w, *norm_b;         /* (C) */
    const tensor *proj_in_w, *proj_in_b;   /* (C,C,1,1) or (C,C) (C) */
    kiln_transformer_block blocks[KILN_MAX_TRANSFORMER_DEPTH];
    const tensor *proj_out_w, *proj_out_b; /* (C,C,1,1) or (C,C) (C) */
} kiln_spatial_transformer;

/* IP-Adapter's share of one spatial transformer: every block's
 * cross-attention also attends, with the same queries, to the image tokens
 * through the block's own k and v weights, and adds weight times that
 * before its output projection; then the next adapter's, if any. */
typedef struct kiln_image_attention {
    const tensor *tokens;                  /* (N,Ti,ctx) */
    float weight;
    const tensor *const *k_w, *const *v_w; /* per block: (C,ctx) */
    const struct kiln_image_attention *next; /* another adapter's, added after; NULL: none */
} kiln_image_attention;

/* SpatialTransformer with `depth` BasicTransformerBlocks: `<prefix>.norm`,
 * `.proj_in`, `.transformer_blocks.{0..depth-1}.{attn1,attn2,ff,norm1..3}`,
 * `.proj_out`. */
kiln_status kiln_spatial_transformer_bind(kiln_weights *w, const char *prefix, int channels, int heads,
                                          int context_dim, int depth, kiln_spatial_transformer *st);
/* HyperTile's tiles of one self-attention over T tokens: the tokens read as
 * h rows of w, cut into nh x nw tiles of (h / nh) x (w / nw), each tile's
 * queries a batch row of their own, attending to the tile's run of T /
 * (nh nw) consecutive tokens (tile j the j-th run, counting tiles row by
 * row); nh nw 1: untiled. */
typedef struct kiln_query_tiles {
    int h, w, nh, nw;
} kiln_query_tiles;

/* What a transformer's self-attention (attn1) is made to do besides
 * attending: the guidance passes that patch the UNet's middle block, and
 * HyperTile's tiles. */
typedef struct kiln_self_attention_patch {
    /* every block's self-attention gives each token's values alone, to_out(to_v(norm1 h)), as
       PerturbedAttentionGuidance replaces it */
    bool identity;
    /* non-NULL: the first block's q and k projections (N,T,C) each, copied here one after the other, for
       SelfAttentionGuidance's map of where the attention goes */
    float *record_qk;
    /* non-NULL: each transformer block's tiles (HyperTile); not with identity or record_qk where they tile */
    const kiln_query_tiles *tiles;
} kiln_self_attention_patch;

struct kiln_hypernetworks; /* models/hypernetwork.h */

// x (N,C,H,W), context (N,T,ctx), image NULL or an image prompt -> *y (N,C,H,W); x is not released.
// attn1 NULL or the patch of its self-attention; hn NULL or the hypernetworks on every attention
kiln_status kiln_spatial_transformer_forward(kiln_graph *g, const kiln_spatial_transformer *st, const tensor *x,
                                             const tensor *context, const kiln_image_attention *image,
                                             const kiln_self_attention_patch *attn1,
                                             const struct kiln_hypernetworks *hn, tensor **y);

typedef struct kiln_vae_attention {
    int channels;
    const tensor *norm_w, *norm_b;
    const tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *proj_w, *proj_b; /* (C,C,1,1) (C) */
} kiln_vae_attention;

/* AttnBlock: `<prefix>.norm`, `.q`, `.k`, `.v`, `.proj_out`. */
kiln_status kiln_vae_attention_bind(kiln_weights *w, const char *prefix, int channels, kiln_vae_attention *at);
// x (N,C,H,W) -> *y, single-head self-attention over H*W positions plus x
kiln_status kiln_vae_attention_forward(kiln_graph *g, const kiln_vae_attention *at, const tensor *x, tensor **y);

#endif
