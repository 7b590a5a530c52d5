/* A loaded Stable Diffusion model: the checkpoint, its detected family and
 * variant, and its three parts bound on one backend. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "../models/clip.h"
#include "../models/flux.h"
#include "../models/pixart.h"
#include "../models/t5.h"
#include "../models/unet.h"
#include "../models/vae.h"
#include "lora.h"
#include "schedule.h"
#include "spm_tokenizer.h"

typedef enum kiln_variant {
    KILN_VARIANT_TXT2IMG,        /* 4 input channels */
    KILN_VARIANT_INPAINT,        /* 9: latent + mask + masked-image latent */
    KILN_VARIANT_INSTRUCT_PIX2PIX, /* 8: latent + image latent */
} kiln_variant;

/* What the UNet predicts (ComfyUI's ModelSamplingDiscrete sampling types). */
typedef enum kiln_prediction {
    KILN_PREDICTION_EPS, /* the noise: SD 1.x, SD 2.x 512 */
    KILN_PREDICTION_V,   /* v = alpha * noise - sigma * x0: SD 2.x 768 */
    KILN_PREDICTION_FLOW, /* the velocity noise - x0 of flow matching (ComfyUI's CONST): Flux, SD3 */
    /* the noise, on LCM's distilled table of 50 timesteps, its x0 through LCM's boundary condition (ComfyUI's
       ModelSamplingDiscrete "lcm": an LCM or LCM-LoRA model) */
    KILN_PREDICTION_LCM,
    /* EDM's denoiser (ModelSamplingContinuousEDM "edm"): x0 = c_skip x + c_out out with the sign of c_out
       flipped from v's */
    KILN_PREDICTION_EDM,
    /* x0 itself (ModelSamplingDiscrete "x0"), the input scaled as eps's */
    KILN_PREDICTION_X0,
    /* x0 itself from the input as it is, unscaled (ModelSamplingDiscrete "img_to_img") */
    KILN_PREDICTION_IMG_TO_IMG,
} kiln_prediction;

#define KILN_MAX_TEXT_ENCODERS 2

typedef enum kiln_arch { KILN_ARCH_UNET, KILN_ARCH_PIXART, KILN_ARCH_FLUX, KILN_ARCH_SD3 } kiln_arch;

/* What a model family is made of besides its UNet. */
typedef struct kiln_family {
    const char *name;                                 /* "sd1", "sd2", "sdxl" */
    const clip_reading *clips[KILN_MAX_TEXT_ENCODERS]; /* its text towers, in the order their outputs are joined */
    int nclips;
    float latent_scale;                               /* the VAE latent's scale into the UNet */
    int adm_numbers; /* what the UNet's vector y embeds after the pooled text: SDXL 6 (size, crop, target
                        size), its refiner 5 (size, crop, aesthetic score); 0: no y */
    int native_size; /* the side its base models were trained at, gen's default */
    kiln_arch arch;  /* what denoises: a UNet on CLIP, PixArt's DiT on T5, Flux's on T5 and CLIP's pooled output,
                        SD3's on both CLIPs' and T5's tokens and the CLIPs' pooled outputs */
    /* its training noise schedule: betas from linear_start to linear_end,
     * evenly spaced in their square roots (SD's "linear") or, where
     * plain_betas, in themselves (ComfyUI's "sqrt_linear", PixArt's) */
    double linear_start, linear_end;
    bool plain_betas;
} kiln_family;

typedef struct kiln_model_info {
    const char *family;       /* "sd1", "sd2", "sdxl", "sdxl-refiner" */
    kiln_variant variant;
    kiln_prediction prediction; /* as detected; the caller may override it before sampling */
    const char *prediction_reason; /* what the detection went by */
    const char *unet_name, *vae_name;
    const char *clip_names[KILN_MAX_TEXT_ENCODERS];
    int nclips;
    kiln_dtype unet_dtype;    /* storage dtype of most of the UNet's weights */
    int64_t unet_params, clip_params[KILN_MAX_TEXT_ENCODERS], vae_params;
    const char *t5_name;      /* a DiT's text encoder (nclips is 0), else NULL */
    int64_t t5_params;
} kiln_model_info;

typedef struct kiln_edm_sampling {
    bool on;
    double sigma_min, sigma_max, sigma_data;
} kiln_edm_sampling;

typedef struct kiln_model {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    kiln_model_info info;
    const kiln_family *family;
    kiln_clip clips[KILN_MAX_TEXT_ENCODERS]; /* info.nclips of them */
    kiln_unet unet;           /* a UNet family's */
    kiln_pixart pixart;       /* a DiT family's, with its T5 and that one's tokenizer */
    kiln_t5 t5;
    kiln_spm *spm;
    int t5_max_tokens;        /* ids a prompt is cut to: PixArt-alpha's 120, PixArt-Sigma's 300, Flux's 512 */
    /* T5TokenizerOptions' pads after EOS and least length, where t5_options (else the model's tokenizer's: none,
       and Flux's 256, SD3's 77, PixArt's and Chroma's 1) */
    bool t5_options;
    int t5_min_padding, t5_min_length;
    kiln_flux flux;           /* Flux's transformer, or SD3's (flux.sd3) */
    double flow_shift;        /* Flux's ModelSamplingFlux shift: dev 1.15, schnell 1.0; SD3's 3.0 */
    bool zsnr;                /* ModelSamplingDiscrete's zsnr: the sigmas rescaled to zero terminal SNR */
    /* ModelSamplingContinuousEDM in place of the discrete table, when on */
    kiln_edm_sampling edm;
    kiln_vae vae;
    /* how the checkpoint says to sample, which kiln_model_reset_sampling brings back: the detected prediction,
       zsnr (an SDXL file's `ztsnr` tensor), the continuous sigmas (Playground v2.5's `edm_mean`, CosXL's
       `edm_vpred.sigma_max`, a folder's EDM scheduler) and the latent format (Playground v2.5's) */
    struct {
        kiln_prediction prediction;
        bool zsnr;
        kiln_edm_sampling edm;
        kiln_latent_format latents;
    } loaded;
    char *embeddings; /* where prompts' embedding:NAME are looked up (kiln_model_set_embeddings); NULL: nowhere */
} kiln_model;

/* A PixArt, Flux or SD3 model: a DiT on T5 in place of a UNet on CLIP. */
static inline bool kiln_model_is_dit(const kiln_model *m) { return m->family->arch != KILN_ARCH_UNET; }
/* A Flux or SD3 model: an MMDiT, m->flux. */
static inline bool kiln_model_is_mmdit(const kiln_model *m)
{
    return m->family->arch == KILN_ARCH_FLUX || m->family->arch == KILN_ARCH_SD3;
}

/* The latent's channels and the conditioning's width the model samples
 * with, UNet or DiT. */
int kiln_model_latent_channels(const kiln_model *m);
int kiln_model_context_dim(const kiln_model *m);
/* The model's training noise levels (its family's beta schedule). */
kiln_status kiln_model_sampling_of(const kiln_model *m, kiln_model_sampling *ms);

/* Where the checkpoint's text towers are (by its model family), for
 * kiln_lora_merge. */
kiln_status kiln_model_lora_towers(const kiln_checkpoint *ck, kiln_lora_towers *towers);

/* Inspects a checkpoint without binding: family, variant, dtypes, parameter
 * counts. Refuses LoRA files, VAE-only files and unknown architectures with a
 * message saying which. */
kiln_status kiln_model_inspect(const kiln_checkpoint *ck, kiln_model_info *info);

/* Opens `path` (file or diffusers folder) and binds every part on `be`. */
kiln_status kiln_model_load(const char *path, kiln_backend *be, kiln_model **out);
/* The same for a checkpoint already opened; the model takes it over (and
 * closes it, also on failure). */
kiln_status kiln_model_load_checkpoint(kiln_checkpoint *ck, kiln_backend *be, kiln_model **out);
/* The same with LoRAs merged into the weights first, in order (each one on
 * what the ones before it made); stats[i] says what loras[i] changed. */
kiln_status kiln_model_load_with_loras(kiln_checkpoint *ck, const kiln_lora *loras, int nloras, kiln_lora_stats *stats,
                                       kiln_backend *be, kiln_model **out);
/* Opens the checkpoint embedded in libkiln (kiln-shapes); KILN_ERR_UNSUPPORTED
 * when this build has none. */
kiln_status kiln_default_checkpoint_open(kiln_checkpoint **out);
/* The model embedded in libkiln (kiln-shapes); KILN_ERR_UNSUPPORTED when this
 * build has none. */
kiln_status kiln_model_load_default(kiln_backend *be, kiln_model **out);

const char *kiln_variant_name(kiln_variant v);
const char *kiln_prediction_name(kiln_prediction p); /* "eps", "v", "flow" */

#endif
