/* The denoiser the samplers call: a UNet wrapped in ComfyUI's model sampling
 * (input scaled by 1/sqrt(sigma^2+1), sigma mapped to the nearest training
 * timestep, x0 = x - sigma * eps, or the v-prediction form) and classifier-free
 * guidance in x0 space (uncond + (cond - uncond) * cfg), with one UNet batch
 * of [uncond x B, cond x B] per call. */
#ifndef KILN_DENOISER_H
#define KILN_DENOISER_H

#include "../models/flux_controlnet.h"
#include "../models/ip_adapter.h"
#include "../models/t2i_adapter.h"
#include "guidance.h"
#include "model.h"
#include "schedule.h"
#include "step_cache.h"

#define KILN_MAX_BATCH 64

/* Apply ControlNet, as ComfyUI's ControlNetApplyAdvanced with the same
 * ControlNet on the positive and the negative prompt: its residuals times
 * strength join every UNet call whose sigma lies between the sigmas of
 * end_percent and start_percent of the schedule (ModelSamplingDiscrete's
 * percent_to_sigma). Several, as chained Apply ControlNet nodes: each in its
 * own range, the residuals of those in range summed (in the order applied,
 * as ComfyUI adds each to the ones before); strength 0 adds nothing, as
 * ComfyUI's node then leaves the prompts as they are. */
typedef struct kiln_control {
    const kiln_controlnet *net; /* or a T2I-Adapter: its features, computed once, join the calls in range */
    /* SD's (1,3,8h,8w) in [0,1] (a T2I-Adapter's kiln_t2i_adapter_picture_size), Flux's
       kiln_flux_controlnet_hint_shape: kiln_control_hint */
    const float *hint;
    float strength;
    double start_percent, end_percent;
    int mode;          /* a Flux union ControlNet's control type (SetUnionControlNetType), or -1 */
    bool positive_only; /* ControlNetApply's: the negative rows run without it */
} kiln_control;

/* IP-Adapter, as the IPAdapter nodes apply it without a negative picture:
 * the positive rows of every call whose sigma lies between the sigmas of
 * end_percent and start_percent attend to the picture's image tokens, its
 * negative rows to the negative tokens (kiln_image_prompt_tokens), at
 * `weight`; the calls outside give it weight 0, which adds exactly nothing.
 * Several, as chained IPAdapterAdvanced nodes: each with its own tokens,
 * weight and range, added in the order applied. */
typedef struct kiln_image_prompt {
    const kiln_ip_adapter *adapter;
    const float *tokens; /* (2,Ti,ctx): the negative rows', then the picture's (kiln_image_prompt_tokens) */
    float weight;
    double start_percent, end_percent;
    int ntokens; /* Ti: the adapter's tokens times the pictures; 0: one picture's */
} kiln_image_prompt;

/* Inpainting as ComfyUI's KSamplerX0Inpaint: where the mask is 0 the latent
 * image is kept (renoised to each call's sigma going in, restored coming
 * out); an inpainting UNet also gets the rounded mask and the latent image
 * as 5 extra input channels (SD 1.x's concat_cond). */
typedef struct kiln_inpaint_mask {
    const float *mask;   /* (h,w) at latent size, in [0,1]: 1 repaints */
    const float *latent; /* (B,C,h,w) the latent image, VAE-scaled */
    const float *noise;  /* (B,C,h,w) the sampling noise (unit variance) */
    /* DifferentialDiffusion (strength 0: none): each call repaints where the mask reaches the part of the
       schedule still ahead, threshold = (t(sigma) - t_to) / (t_from - t_to) in the model's timesteps from the
       schedule's first sigma to its last (at least the model's least), the strength blending that 0/1 mask
       with the mask itself */
    float differential, t_from, t_to;
} kiln_inpaint_mask;

typedef struct kiln_denoiser {
    const kiln_model *model;
    kiln_graph *graph;
    int batch;            /* B images */
    int channels, h, w;   /* latent (B,C,h,w) */
    int unet_channels;    /* C, or C + E for a UNet that also takes an image: E = 5 inpainting, C InstructPix2Pix */
    float cfg;
    const float *context; /* (2B,T,D): B uncond rows then B cond rows; cond only when cfg == 1 */
    const float *adm;     /* (2B,adm) SDXL's vector y, rows as context's; NULL for other UNets */
    int tokens;           /* T */
    const kiln_model_sampling *sampling;
    int unet_calls;       /* counted, for progress and tests */
    const kiln_control *controls; /* ncontrols of them; NULL: none */
    int ncontrols;
    /* each one's hint repeated over the rows; a T2I-Adapter's features times its strength, each placed level's
       (rows,C,H,W) after the one before (zeros on the negative rows of a positive-only one) */
    float *hints[KILN_MAX_CONTROLS];
    /* where each T2I-Adapter's levels join the UNet (kiln_t2i_adapter_block, or KILN_T2I_UNUSED), their (C,H,W) */
    int adapter_block[KILN_MAX_CONTROLS][KILN_T2I_MAX_LEVELS];
    int64_t adapter_shape[KILN_MAX_CONTROLS][KILN_T2I_MAX_LEVELS][3];
    float control_sigma_hi[KILN_MAX_CONTROLS], control_sigma_lo[KILN_MAX_CONTROLS]; /* sigmas where each applies */
    unsigned active_controls;    /* this call's: bit i for controls[i] */
    /* a call with controls runs the graph of its set (indexed by the
     * caption, 0 Flux's negative one, 1 the positive, 2 SkipLayerGuidance's
     * pass of the positive, and active_controls; made at its first call), one
     * without runs graph */
    kiln_graph *control_graphs[3][1u << KILN_MAX_CONTROLS];
    int control_calls;           /* calls with a ControlNet, counted for tests */
    const kiln_image_prompt *image_prompts; /* nimage_prompts of them; NULL: none */
    int nimage_prompts;
    float *image_tokens[KILN_MAX_IP_ADAPTERS]; /* (rows,Ti,ctx) each one's tokens for each row */
    float image_sigma_hi[KILN_MAX_IP_ADAPTERS], image_sigma_lo[KILN_MAX_IP_ADAPTERS]; /* sigmas where each applies */
    float image_weight[KILN_MAX_IP_ADAPTERS]; /* this call's: each one's weight within them, else 0 */
    const kiln_inpaint_mask *inpaint; /* NULL: none */
    float *blended;              /* (B,C,h,w) x with the kept part put back */
    float *call_mask;            /* (h,w) this call's mask under DifferentialDiffusion */
    const float *concat;         /* (E,h,w) the extra input channels, the same in every row; NULL: none */
    float *inpaint_concat;       /* an inpainting UNet's: the rounded mask and the latent image */
    /* a DiT's captions instead of context: the negative's, the positive's,
     * each at its own length (PixArt's T5 rows are not padded) */
    const kiln_conditioning *captions[2];
    float *dit_out;              /* (rows,2C,h,w): the prediction, then PixArt's learned variance; Flux's packed rows */
    kiln_graph *negative_graph;  /* Flux: the negative rows' calls (their caption may be of another length) */
    /* Flux's per-row inputs, for the negative rows and the positive ones */
    float *flux_context[2], *flux_pooled[2], *flux_guidance[2];
    float pixart_size[2][2];     /* PixArt-alpha's size conditions (height, width) of the negative and positive rows
                                    (CLIPTextEncodePixArtAlpha); 0: the picture's */
    float guidance[2];           /* Flux dev's embedded guidance for the negative and positive rows (FluxGuidance);
                                    NaN: none (FluxDisableGuidance) */
    /* FLUX.1 Kontext's reference latents of the negative and positive rows: their tokens (one row's), where they
       sit, and the rows' tokens with them */
    float *ref_tokens[2];
    flux_reference refs[2][FLUX_MAX_REFERENCES];
    int nrefs[2];
    float *flux_tokens;
    /* SkipLayerGuidance: the blocks its pass leaves out, the sigmas it applies between, its graph and output
       (the positive rows' prediction without those blocks) */
    const kiln_skip_layer_guidance *slg;
    uint64_t slg_double, slg_single;
    float slg_sigma_hi, slg_sigma_lo;
    bool skip_negative;          /* this call's SkipLayerGuidanceDiTSimple: the negative rows without the blocks */
    kiln_graph *slg_graph;
    float *pass_out;             /* (B,C,h,w) the positive rows' prediction from SkipLayerGuidance's pass or PAG's */
    float pag_scale;             /* PerturbedAttentionGuidance (a UNet's); 0: none */
    /* SelfAttentionGuidance (a UNet's; scale 0: none): its blur, the middle block's first self-attention's q and
       k of every row (2,rows,T,C) with T its tokens (in Deep Shrink's calls sag_tokens_shrunk), C its channels in
       `heads`; its pass's graphs (plain, shrunk), input rows (the degraded prediction renoised, scaled), output,
       and the degraded predictions then those renoised */
    float sag_scale, sag_blur;
    float *sag_qk;
    int sag_tokens, sag_tokens_shrunk, sag_channels, sag_heads;
    kiln_graph *sag_graph, *sag_shrink_graph;
    float *sag_in, *sag_out, *sag_degraded;
    /* EasyCache or LazyCache (kind 0: none), the rows it measures the first of (EasyCache: ComfyUI's first call
       of a step; rows_measured of them from cache_first), whether that call is all the rows (its output's mean
       magnitude over all), and the subsampled input and output of a call */
    kiln_step_cache_state cache;
    int cache_first, cache_norm_rows;
    float *cache_xs, *cache_os;
    float *uncond_denoised;      /* (B,C,h,w) the last call's unconditional x0 prediction; NULL: not kept */
    float *cond_denoised;        /* (B,C,h,w) and its conditional one; NULL: not kept */
    const kiln_freeu *freeu;     /* FreeU on the UNet; NULL: none */
    /* PatchModelAddDownscale (NULL: none): the UNet's resizes, the sigmas between which they apply, whether
       this call's do, and the graph of the calls that do (their shapes are others) */
    const kiln_deep_shrink *deep_shrink;
    kiln_unet_shrink shrink;
    float shrink_sigma_hi, shrink_sigma_lo;
    bool shrinking;
    kiln_graph *shrink_graph;
    /* HyperTile (NULL: none): its draws come from the job's generator (shared by the job's denoisers), through
       a copy each graph pass starts from afresh (a run's passes must issue the same ops), kept after the run */
    const kiln_hypertile *hypertile;
    kiln_rng *hypertile_rng;
    kiln_rng hypertile_draws;
    kiln_hypernetworks hypernetworks; /* count 0: none */
    kiln_guidance guide;         /* the guidance patches (APG, RescaleCFG, CFGZeroStar); none: zeros */
    float *patched_pred;         /* (2,B,C,h,w) a patched call's conditional and unconditional x0 predictions */
    /* per call: the UNet batch and its inputs */
    int rows;             /* 2B with guidance, B without */
    float *unet_in, *unet_out; /* (rows,C,h,w) */
    float timesteps[2 * KILN_MAX_BATCH];
} kiln_denoiser;

/* `context` rows as described above; it must outlive the denoiser. The graph
 * is the denoiser's own (its arena is planned on the first call). */
kiln_status kiln_denoiser_init(kiln_denoiser *d, const kiln_model *m, const kiln_model_sampling *sampling,
                               int batch, int h, int w, float cfg, const float *context, int tokens);
/* Inpaints from here on; inpaint must outlive d. An inpainting UNet (C + 5
 * input channels) cannot run without it. */
kiln_status kiln_denoiser_set_inpaint(kiln_denoiser *d, const kiln_inpaint_mask *inpaint);
/* Keeps each call's unconditional x0 prediction for kiln_denoiser_uncond
 * (the CFG++ samplers'), running the unconditional rows even at cfg 1 as
 * ComfyUI then does. Call it first after init. */
kiln_status kiln_denoiser_keep_uncond(kiln_denoiser *d);
/* Keeps each call's conditional x0 prediction in d->cond_denoised (before
 * an inpainting blend), as well as the guided one it returns. */
kiln_status kiln_denoiser_keep_cond(kiln_denoiser *d);
/* A kiln_uncond_fn: the last kiln_denoiser_call's unconditional x0
 * prediction (before an inpainting blend, as ComfyUI's post-CFG functions
 * see it). */
kiln_status kiln_denoiser_uncond(void *ctx, float *uncond_denoised);
/* The model's guidance patches (APG, RescaleCFG, CFGZeroStar) from here on:
 * kiln_guide in place of the plain guidance. */
kiln_status kiln_denoiser_set_cfg_patches(kiln_denoiser *d, const kiln_cfg_patches *patches);
/* An InstructPix2Pix UNet's extra input, as SD 1.x's concat_cond gives it:
 * the unscaled latent (C,h,w) of the picture to edit, in every row (ComfyUI's
 * InstructPixToPixConditioning puts it on both prompts). It must outlive d;
 * such a UNet cannot run without it. */
kiln_status kiln_denoiser_set_concat(kiln_denoiser *d, const float *concat);
/* SkipLayerGuidance (an SD3 or Flux model's, after set_captions); slg must
 * outlive d. */
kiln_status kiln_denoiser_set_skip_layer_guidance(kiln_denoiser *d, const kiln_skip_layer_guidance *slg);
/* PerturbedAttentionGuidance on the UNet (scale > 0; not a DiT:
 * KILN_ERR_UNSUPPORTED): each call also runs the positive rows with the
 * middle block's self-attention perturbed and adds scale times the
 * difference of the two x0 predictions after the guidance. */
kiln_status kiln_denoiser_set_pag(kiln_denoiser *d, float scale);
/* SelfAttentionGuidance on a UNet, as ComfyUI's node: every call also runs
 * the negative rows (at cfg 1 too), records where the middle block's first
 * self-attention of those rows attends (kiln_sag_key_weights), blurs their
 * x0 prediction there (kiln_sag_degrade, std blur), runs the UNet on that
 * renoised with the negative prompt, and adds scale x (degraded - its x0)
 * after the guidance. Not with ControlNets, IP-Adapters, SkipLayerGuidance
 * or PerturbedAttentionGuidance. */
/* EasyCache or LazyCache on the calls (kiln_step_cache); batched: whether
 * ComfyUI runs both prompts' rows in one call (the negative's then come
 * first), which decides EasyCache's first call. */
kiln_status kiln_denoiser_set_step_cache(kiln_denoiser *d, const kiln_step_cache *cache, bool batched);
kiln_status kiln_denoiser_set_sag(kiln_denoiser *d, float scale, float blur);
/* PatchModelAddDownscale on the UNet (not a DiT: KILN_ERR_UNSUPPORTED) in
 * the calls within its part of the schedule, its resize before FreeU's
 * patch; ControlNet residuals and T2I-Adapter features meeting a resized
 * block are left out (ComfyUI's apply_control); after any
 * SelfAttentionGuidance, which it refuses; s must outlive d. */
kiln_status kiln_denoiser_set_deep_shrink(kiln_denoiser *d, const kiln_deep_shrink *s);
/* HyperTile on the UNet (not a DiT: KILN_ERR_UNSUPPORTED) in every call
 * from the first on, drawing from rng (torch's generator after the noise)
 * where the settings make it draw; s and rng must outlive d. */
kiln_status kiln_denoiser_set_hypertile(kiln_denoiser *d, const kiln_hypertile *s, kiln_rng *rng);
/* Hypernetworks on the UNet's attentions (not a DiT's: KILN_ERR_UNSUPPORTED)
 * in every call from the first on, in this order; they must outlive d. */
kiln_status kiln_denoiser_set_hypernetworks(kiln_denoiser *d, const kiln_hypernetwork *const *items, int count);
/* FreeU or FreeU_V2 on the UNet (not a DiT: KILN_ERR_UNSUPPORTED) in every
 * call from the first on; freeu must outlive d. */
kiln_status kiln_denoiser_set_freeu(kiln_denoiser *d, const kiln_freeu *freeu);
/* A DiT model's conditionings (in place of init's context); both must
 * outlive d. */
kiln_status kiln_denoiser_set_captions(kiln_denoiser *d, const kiln_conditioning *negative,
                                       const kiln_conditioning *positive);
/* FLUX.1 Kontext (ComfyUI's ReferenceLatent): the n pictures' latents
 * (each (1,C,h,w), unscaled as VAEEncode gives them) beside the latent in
 * every call of caption `which`'s rows (0 negative, 1 positive), placed as
 * ComfyUI's "offset" method places them; after set_captions. */
kiln_status kiln_denoiser_set_references(kiln_denoiser *d, int which, const kiln_latent *refs, int n,
                                         kiln_reference_method method);
/* Adds `count` ControlNets (in the order applied) to the calls from here on;
 * the array must outlive d. */
kiln_status kiln_denoiser_set_controls(kiln_denoiser *d, const kiln_control *controls, int count);
/* Adds `count` image prompts (in the order applied) to the calls from here
 * on; the array must outlive d. */
kiln_status kiln_denoiser_set_image_prompts(kiln_denoiser *d, const kiln_image_prompt *prompts, int count);
void kiln_denoiser_free(kiln_denoiser *d);

/* kiln_denoise_fn for the samplers: x (B,C,h,w) at noise level sigma ->
 * denoised (B,C,h,w). */
kiln_status kiln_denoiser_call(void *ctx, const float *x, float sigma, float *denoised);

#endif
