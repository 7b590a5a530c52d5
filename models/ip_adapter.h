/* IP-Adapter: a picture as a prompt. A CLIP vision tower's image embeds
 * become a few tokens (its image projection: a linear, then a layer norm),
 * and every cross-attention of the UNet also attends to those tokens
 * through k and v weights of its own, adding weight times that to what it
 * makes of the text (kiln_image_attention), as the IPAdapter nodes of
 * ComfyUI (ComfyUI_IPAdapter_plus) and diffusers' load_ip_adapter do.
 *
 * IP-Adapter Plus (and Plus Face) makes its tokens with a Resampler
 * instead: learned queries that, layer by layer, attend to the tower's
 * penultimate hidden states (and to themselves), then a linear and a layer
 * norm. IP-Adapter full-face makes one token of each of those hidden states:
 * a linear, GELU, a linear and a layer norm (`image_proj.proj.0`, `.2`,
 * `.3`).
 *
 * Files are h94/IP-Adapter's .safetensors layout: `image_proj.proj.*` and
 * `image_proj.norm.*` (plain) or `image_proj.latents`, `.proj_in`,
 * `.proj_out`, `.norm_out` and `.layers.N.*` (Plus), and
 * `ip_adapter.N.to_{k,v}_ip.weight`, the cross-attentions numbered 1, 3, 5,
 * ... in diffusers' order of the UNet's attention processors: down blocks,
 * up blocks, then the middle block. The FaceID variants (other image
 * projections, insightface's embeddings) are refused by name.
 *
 * XLabs' IP-Adapter for Flux (flux-ip-adapter.safetensors) is a plain one
 * in other names: `ip_adapter_proj_model.proj/norm.*` the projection to
 * T5-wide tokens, `double_blocks.N.processor.ip_adapter_double_stream_k_proj`
 * and `_v_proj` (with biases) each double block's k and v of them, which the
 * block's image queries attend to (flux_image_prompt). */
#ifndef KILN_MODELS_IP_ADAPTER_H
#define KILN_MODELS_IP_ADAPTER_H

#include "flux.h"
#include "unet.h"

/* One layer of the Resampler: attention of the queries to [picture tokens,
 * queries], then a feed-forward, each added to the queries. */
typedef struct ip_resampler_layer {
    const tensor *norm_x_w, *norm_x_b;   /* (H): `layers.N.0.norm1`, on the picture's tokens */
    const tensor *norm_q_w, *norm_q_b;   /* (H): `.0.norm2`, on the queries */
    const tensor *q_w, *k_w, *v_w;       /* (I,H): `.0.to_q`, the halves of `.0.to_kv`; no biases */
    const tensor *out_w;                 /* (H,I): `.0.to_out` */
    const tensor *ff_norm_w, *ff_norm_b; /* (H): `.1.0` */
    const tensor *ff_in_w, *ff_out_w;    /* (F,H) (H,F): `.1.1`, `.1.3`, GELU between; no biases */
} ip_resampler_layer;

#define KILN_IP_RESAMPLER_MAX_LAYERS 8

typedef struct ip_resampler {
    int hidden, heads, nlayers;        /* H, heads of 64 (diffusers' reading), layers */
    const tensor *latents;             /* (1,Ti,H): the queries */
    const tensor *proj_in_w, *proj_in_b;   /* (H,E) (H) */
    const tensor *proj_out_w, *proj_out_b; /* (ctx,H) (ctx) */
    const tensor *norm_out_w, *norm_out_b; /* (ctx) */
    ip_resampler_layer layer[KILN_IP_RESAMPLER_MAX_LAYERS];
} ip_resampler;

/* How an IP-Adapter makes its tokens: of the image embeds (plain), or of
 * the penultimate hidden states by a Resampler (Plus) or token by token
 * (full-face). */
typedef enum { KILN_IP_PLAIN, KILN_IP_PLUS, KILN_IP_FULL } kiln_ip_projection;

/* The tokens full-face makes: one per hidden state of a tower at 224 in
 * 14-pixel patches, the class token's and 16x16 patches' (diffusers' count). */
#define KILN_IP_FULL_TOKENS 257

typedef struct kiln_ip_adapter {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    kiln_ip_projection projection;
    int embed_dim;   /* E: the width it reads: the tower's projection (plain) or hidden size (Plus, full-face) */
    int tokens;      /* Ti: the image tokens it makes */
    int context_dim; /* their width: the UNet's context */
    const tensor *mlp_w, *mlp_b;   /* full-face: (E,E) (E), GELU after */
    const tensor *proj_w, *proj_b; /* plain: (Ti*ctx,E) (Ti*ctx); full-face: (ctx,E) (ctx) */
    const tensor *norm_w, *norm_b; /* plain, full-face: (ctx) */
    ip_resampler resampler;        /* Plus */
    int nrows;       /* the UNet table's rows; Flux: its double blocks */
    /* [row * KILN_MAX_TRANSFORMER_DEPTH + block]: (C,ctx), NULL outside transformer rows; Flux: [double block] */
    const tensor **k_w, **v_w;
    bool flux;                  /* XLabs' for a Flux transformer */
    const tensor **k_b, **v_b;  /* Flux: [double block] (D); NULL for a UNet's */
} kiln_ip_adapter;

/* What an IP-Adapter file is, read off its shapes. */
typedef struct kiln_ip_adapter_info {
    kiln_ip_projection projection;
    bool flux; /* XLabs' layout: cross_attentions are its double blocks */
    int embed_dim, tokens, context_dim; /* E, Ti, ctx as above */
    int resampler_layers, resampler_heads; /* Plus */
    int cross_attentions;               /* the UNet cross-attentions it has weights for */
} kiln_ip_adapter_info;

/* KILN_ERR_MODEL for a file that is no IP-Adapter, KILN_ERR_UNSUPPORTED
 * for a variant kiln does not run; each naming the file. */
kiln_status kiln_ip_adapter_inspect(const kiln_checkpoint *ck, kiln_ip_adapter_info *info);

/* Opens an IP-Adapter file and binds it on be for the UNet `unet` (an
 * adapter for another base model is refused, naming the file). */
kiln_status kiln_ip_adapter_open(const char *path, const kiln_unet *unet, kiln_backend *be, kiln_ip_adapter **out);
/* Opens XLabs' Flux IP-Adapter and binds it on be for the transformer
 * `flux` (one for another width or another number of double blocks is
 * refused, naming the file). */
kiln_status kiln_flux_ip_adapter_open(const char *path, const kiln_flux *flux, kiln_backend *be,
                                      kiln_ip_adapter **out);
void kiln_ip_adapter_free(kiln_ip_adapter *ipa);

/* Whether it reads the tower's penultimate hidden states (Plus, full-face;
 * the negative rows a black picture's), else its image embeds. */
static inline bool kiln_ip_adapter_reads_hidden(const kiln_ip_adapter *ipa)
{
    return ipa->projection != KILN_IP_PLAIN;
}

/* The image projection: what the tower made of `rows` pictures, each `n`
 * vectors of E (plain: n = 1, the image embeds; Plus, full-face: the
 * penultimate hidden states) -> tokens (rows,Ti,ctx). */
kiln_status kiln_ip_adapter_tokens(const kiln_ip_adapter *ipa, const float *embeds, int rows, int n, float *tokens);

#endif
