/* The SD VAE (AutoencoderKL, LDM naming under `first_stage_model.`): a
 * config of per-level channels; encoder and decoder are walked level by
 * level from it. FLUX.1's and SD3's VAEs are the same network with 16 latent
 * channels and no quant_conv/post_quant_conv, and their latents enter the
 * model shifted as well as scaled. */
#ifndef KILN_MODELS_VAE_H
#define KILN_MODELS_VAE_H

#include "blocks.h"

#define VAE_MAX_LEVELS 6
#define VAE_MAX_BLOCKS 4

typedef struct vae_config {
    const char *name;
    int levels;
    int channels[VAE_MAX_LEVELS]; /* per level, outermost first */
    int layers_per_block;         /* encoder ResBlocks per level; the decoder has one more */
    int latent_channels;
} vae_config;

typedef struct vae_level {
    kiln_resblock block[VAE_MAX_BLOCKS];
    const tensor *sample_w, *sample_b; /* down/upsample conv, NULL on the last/first level */
} vae_level;

typedef struct vae_half {
    const tensor *conv_in_w, *conv_in_b;
    vae_level level[VAE_MAX_LEVELS];
    kiln_resblock mid1, mid2;
    kiln_vae_attention mid_attn;
    const tensor *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
} vae_half;

/* ComfyUI's latent format: between the VAE's latent (ComfyUI's LATENT, what
 * the decoder takes) and the sampler's, process_in (z - shift) scale and
 * process_out x / scale + shift; with per-channel numbers (Playground
 * v2.5's; a diffusers folder's latents_mean and latents_std) in place of the
 * shift, (z - mean[c]) scale / std[c] and x std[c] / scale + mean[c]. */
typedef struct kiln_latent_format {
    float scale; /* the model family's (SD 0.18215, SDXL 0.13025, FLUX.1 0.3611), or the checkpoint's
                    `vae_scaling_factor` metadata, or its folder's vae/config.json scaling_factor */
    float shift; /* 0 for SD and SDXL; FLUX.1 0.1159, SD3 0.0609; or the checkpoint's `vae_shift_factor`
                    metadata, or the folder's shift_factor */
    const float *mean, *std; /* latent_channels each, or both NULL */
} kiln_latent_format;

/* Playground v2.5's (ComfyUI's SDXL_Playground_2_5, the numbers of its diffusers VAE config) */
extern const kiln_latent_format kiln_playground_latents;

typedef struct kiln_vae {
    const vae_config *config;
    vae_half enc, dec;
    /* (2L,2L,1,1) and (L,L,1,1); NULL (identity) for a VAE without them
     * (FLUX.1's, SD3's: diffusers' use_quant_conv/use_post_quant_conv false) */
    const tensor *quant_w, *quant_b;
    const tensor *post_quant_w, *post_quant_b;
    bool has_encoder;
    kiln_latent_format latents;
} kiln_vae;

extern const vae_config *const kiln_vae_configs[];

const vae_config *kiln_vae_detect(const kiln_checkpoint *ck);
/* Binds the decoder, and the encoder when the checkpoint has it; `scale`
 * (and `shift`) are the latent format of the model family, unless the file
 * records its own. quant_conv and post_quant_conv are bound where the file
 * has them and are the identity where it has neither. */
kiln_status kiln_vae_bind_shifted(kiln_weights *w, const vae_config *cfg, float scale, float shift, kiln_vae *vae);
/* The same with no shift: SD 1.x, 2.x, XL and PixArt. */
kiln_status kiln_vae_bind(kiln_weights *w, const vae_config *cfg, float scale, kiln_vae *vae);

/* n values of latents (N,L,h,w) with `plane` = h w, through vae->latents'
 * process_in and process_out; x may be z. With shift 0 and no per-channel
 * numbers they are exactly SD's z * scale and x / scale. */
void kiln_vae_latent_in(const kiln_vae *vae, const float *z, size_t n, size_t plane, float *x);
void kiln_vae_latent_out(const kiln_vae *vae, const float *x, size_t n, size_t plane, float *z);

// z (N,L,h,w) unscaled latent -> *image (N,3,h*f,w*f) in [-1,1] (not clamped)
kiln_status kiln_vae_decoder_forward(kiln_graph *g, const kiln_vae *vae, const tensor *z, tensor **image);
// image (N,3,H,W) in [-1,1] -> *moments (N,2L,H/f,W/f): mean then log variance
kiln_status kiln_vae_encoder_forward(kiln_graph *g, const kiln_vae *vae, const tensor *image, tensor **moments);

/* The spatial factor between pixels and latents: 2^(levels-1). */
int kiln_vae_factor(const vae_config *cfg);

#endif
