/* IP-Adapter: a picture as a prompt. A CLIP vision tower's image embeds
 * become a few tokens (its image projection: a linear, then a layer norm),
 * and every cross-attention of the UNet also attends to those tokens
 * through k and v weights of its own, adding weight times that to what it
 * makes of the text (kiln_image_attention), as the IPAdapter nodes of
 * ComfyUI (ComfyUI_IPAdapter_plus) and diffusers' load_ip_adapter do.
 *
 * Files are h94/IP-Adapter's .safetensors layout: `image_proj.proj.*`,
 * `image_proj.norm.*` and `ip_adapter.N.to_{k,v}_ip.weight`, the
 * cross-attentions numbered 1, 3, 5, ... in diffusers' order of the UNet's
 * attention processors: down blocks, up blocks, then the middle block. The
 * IP-Adapter Plus, full-face and FaceID variants (other image projections)
 * are refused by name. */
#ifndef KILN_MODELS_IP_ADAPTER_H
#define KILN_MODELS_IP_ADAPTER_H

#include "unet.h"

typedef struct kiln_ip_adapter {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    int embed_dim;   /* E: the image embeds it reads (the CLIP vision projection's width) */
    int tokens;      /* Ti: the image tokens it makes */
    int context_dim; /* their width: the UNet's context */
    const tensor *proj_w, *proj_b; /* (Ti*ctx,E) (Ti*ctx) */
    const tensor *norm_w, *norm_b; /* (ctx) */
    int nrows;       /* the UNet table's rows */
    /* [row * KILN_MAX_TRANSFORMER_DEPTH + block]: (C,ctx), NULL outside transformer rows */
    const tensor **k_w, **v_w;
} kiln_ip_adapter;

/* What an IP-Adapter file is, read off its shapes. */
typedef struct kiln_ip_adapter_info {
    int embed_dim, tokens, context_dim; /* E, Ti, ctx as above */
    int cross_attentions;               /* the UNet cross-attentions it has weights for */
} kiln_ip_adapter_info;

/* KILN_ERR_MODEL for a file that is no IP-Adapter, KILN_ERR_UNSUPPORTED
 * for a variant kiln does not run; each naming the file. */
kiln_status kiln_ip_adapter_inspect(const kiln_checkpoint *ck, kiln_ip_adapter_info *info);

/* Opens an IP-Adapter file and binds it on be for the UNet `unet` (an
 * adapter for another base model is refused, naming the file). */
kiln_status kiln_ip_adapter_load(const char *path, const kiln_unet *unet, kiln_backend *be, kiln_ip_adapter **out);
void kiln_ip_adapter_free(kiln_ip_adapter *ipa);

/* The image projection: image_embeds (rows,E) -> tokens (rows,Ti,ctx). */
kiln_status kiln_ip_adapter_tokens(const kiln_ip_adapter *ipa, const float *image_embeds, int rows, float *tokens);

#endif
