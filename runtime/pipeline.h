/* txt2img and img2img as ComfyUI runs them:
 * CLIPTextEncode x2 -> EmptyLatentImage or VAEEncode -> KSampler -> VAEDecode.
 *
 * Each stage owns its output and hands it forward; the stages are public so
 * tests and frontends can enter at any of them. */
#ifndef KILN_PIPELINE_H
#define KILN_PIPELINE_H

#include <stdint.h>

#include "../models/clip_vision.h"
#include "../models/redux.h"
#include "denoiser.h"
#include "image.h"
#include "model.h"
#include "sampler.h"
#include "schedule.h"

typedef struct kiln_tokenizer kiln_tokenizer;

/* Text tower `which` of the model on token ids (rows, 77) -> out (rows, 77,
 * D); with `pooled` not NULL, also its pooled output (rows, P) (a tower
 * with a projection: SDXL's second). */
kiln_status kiln_clip_encode_ids(const kiln_model *m, int which, const int32_t *ids, int rows, int clip_skip,
                                 float *out, float *pooled);

/* CLIPTextEncode: ComfyUI's weighted-prompt parsing, 75-token windows, clip
 * skip, and per-token weights applied as z_empty + (z - z_empty) * w, for
 * each of the model's text towers (each padded its own way); the pooled
 * output is the first window's. */
kiln_status kiln_encode_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *text, int clip_skip,
                               kiln_conditioning *out);
/* CLIPTextEncodeSDXL's texts: CLIP-L's rows on text_l, OpenCLIP bigG's
 * (and the pooled output) on text_g, the tower with fewer windows given
 * windows of the empty prompt, as ComfyUI evens them out. SDXL base models
 * only. */
kiln_status kiln_encode_sdxl_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *text_g,
                                    const char *text_l, int clip_skip, kiln_conditioning *out);
/* Flux's conditioning, as ComfyUI's FluxClipModel makes it: T5's output on
 * t5_text's ids padded with 0 to at least 256 (not masked), and CLIP-L's
 * pooled output on clip_text (its first window's); kiln_encode_prompt gives
 * both the one text, CLIPTextEncodeFlux each its own. */
kiln_status kiln_encode_flux_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *clip_text,
                                    const char *t5_text, kiln_conditioning *out);
/* SD3's conditioning, as ComfyUI's SD3ClipModel makes it: CLIP-L's and
 * bigG's penultimate rows on clip_l and clip_g side by side (windows evened
 * out as SDXL's), zero-padded to T5's width, then T5's output on t5xxl's ids
 * padded with 0 to at least 77 (none where the model has no T5); clip_skip
 * as CLIPSetLastLayer's on both CLIPs (0: their penultimate layer); the
 * pooled output CLIP-L's unprojected one beside bigG's projected one.
 * kiln_encode_prompt gives all three the one text, CLIPTextEncodeSD3 each
 * its own. */
kiln_status kiln_encode_sd3_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *clip_l,
                                   const char *clip_g, const char *t5xxl, int clip_skip, kiln_conditioning *out);
/* A DiT model's T5 on one prompt's n ids -> out (n, D), its last hidden state. */
kiln_status kiln_t5_encode_ids(const kiln_model *m, const int32_t *ids, int n, float *out);

/* PixArt's prompts: T5 ids, at most the model's t5_max_tokens (its
 * pipeline's max_sequence_length, never more than this), the last EOS. A DiT
 * model's kiln_encode_prompt reads the text as it is (no weights, no
 * windows, no clip skip) with the model's own tokenizer. */
#define KILN_T5_MAX_TOKENS 512
/* Flux's T5 ids: padded to at least this many (ComfyUI's min_length) */
#define KILN_FLUX_T5_TOKENS 256
/* SD3's (ComfyUI's T5XXLTokenizer min_length) */
#define KILN_SD3_T5_TOKENS 77

/* SDXL's vector y for one UNet row, as ComfyUI's SDXL.encode_adm and
 * SDXLRefiner.encode_adm make it: the conditioning's pooled output, then the
 * sinusoidal embeddings (cos half first) of the family's adm_numbers numbers:
 * {height, width, crop top, crop left, target height, target width} in
 * pixels, or for the refiner {height, width, crop top, crop left, aesthetic
 * score} -> y (adm_channels). */
kiln_status kiln_adm_vector(const kiln_model *m, const kiln_conditioning *c, const float *numbers, float *y);

/* Sizes left 0 become what CLIPTextEncode leaves: 8 x the latent's (the
 * output size, with SDXL's VAE). */
void kiln_sdxl_cond_fill(kiln_sdxl_cond *c, int latent_h, int latent_w);

/* The guider of a sampling (SamplerCustomAdvanced's GUIDER; runtime/guiders.h). */
typedef enum {
    KILN_GUIDER_CFG,             /* the plain guidance of the positive and negative prompts */
    KILN_GUIDER_DUAL_CFG,        /* DualCFGGuider, style "regular" */
    KILN_GUIDER_DUAL_CFG_NESTED, /* DualCFGGuider, style "nested" */
    KILN_GUIDER_PERP_NEG,        /* PerpNegGuider */
} kiln_guider_kind;

typedef struct kiln_sampling_job {
    kiln_sampler sampler;
    kiln_scheduler scheduler;
    int steps;
    float cfg;
    double denoise;      /* 1 for txt2img */
    uint64_t seed;
    int batch;
    int latent_h, latent_w;
    const float *noise;  /* (B,4,h,w) unit-variance noise; NULL: torch.randn from seed */
    const int *noise_index; /* (B) the latent's batch_index: image b's noise is the index[b]-th image's of
                               ComfyUI's per-image draws (prepare_noise); NULL: one randn for the batch */
    const float *init_latent; /* (B,4,h,w) unscaled VAE latent (img2img); NULL: empty latent */
    const kiln_control *controls; /* Apply ControlNet, ncontrols of them in the order applied */
    int ncontrols;
    const kiln_image_prompt *image_prompts; /* IP-Adapters, nimage_prompts of them in the order applied */
    int nimage_prompts;
    const kiln_sdxl_cond *sdxl; /* SDXL's y numbers; NULL: CLIPTextEncode's (see kiln_sdxl_cond) */
    const kiln_sdxl_cond *negative_sdxl; /* the negative prompt's sizes, crop and target where they differ; NULL:
                                            sdxl's (the refiner's scores are sdxl's on both) */
    const struct kiln_inpaint *inpaint; /* the image to inpaint and its mask (in place of init_latent); NULL: none */
    float differential; /* DifferentialDiffusion's strength on the inpainting mask (0: none; 1: the node's) */
    kiln_cfg_patches cfg_patches; /* RescaleCFG and CFGZeroStar on the model (kiln_guide); zeros: none */
    const float *edit_latent; /* InstructPix2Pix: (1,4,h,w) unscaled latent of the picture to edit, given to the
                                 UNet with every call (the sampling starts from an empty latent); NULL: none */
    /* KSamplerAdvanced (both 0/false: KSampler): only the schedule's steps from start_step to last_step run
       (last_step 0: to the end); a run cut short ends at its last sigma with leftover_noise (to be finished by
       another pass, e.g. SDXL's refiner), else at 0; with disable_noise the latent goes in as it is (it is
       already noisy) instead of being noised from the seed */
    int start_step, last_step;
    bool leftover_noise, disable_noise;
    float flux_guidance;          /* Flux dev's embedded guidance for the positive prompt (FluxGuidance); 0: its
                                     default 3.5 */
    float negative_flux_guidance; /* and for the negative prompt; 0: 3.5, as a prompt without FluxGuidance */
    float pixart_size[2][2];      /* PixArt-alpha's size conditions (height, width) of the negative and positive
                                     prompts (CLIPTextEncodePixArtAlpha's); 0: the picture's */
    /* ReferenceLatent's latents on the negative [0] and positive [1] prompt (Flux: FLUX.1 Kontext) */
    const kiln_latent *references[2];
    int nreferences[2];
    kiln_reference_method reference_methods[2];
    const kiln_skip_layer_guidance *skip_layer_guidance; /* SkipLayerGuidance on the model; NULL: none */
    const kiln_freeu *freeu; /* FreeU or FreeU_V2 on the model; NULL: none */
    float pag_scale;         /* PerturbedAttentionGuidance on the model; 0: none */
    const kiln_sag *sag;     /* SelfAttentionGuidance on the model; NULL: none */
    const kiln_deep_shrink *deep_shrink; /* PatchModelAddDownscale on the model; NULL: none */
    const kiln_hypertile *hypertile;     /* HyperTile on the model; NULL: none */
    const kiln_hypernetwork *const *hypernetworks; /* on the model's attentions, in this order */
    int nhypernetworks;
    const kiln_step_cache *step_cache;   /* EasyCache or LazyCache on the model; NULL: none */
    int *steps_skipped;                  /* where given, the steps it skipped */
    kiln_rng *hypertile_rng;             /* what HyperTile draws from: kiln_ksample sets it (torch's generator
                                            seeded with the seed, after the noise, as in ComfyUI) */
    /* DualCFGGuider's and PerpNegGuider's third prompt (the middle one, cond2; the empty one) and second scale
       (cfg_cond2_negative; neg_scale), cfg their first (cfg_conds; cfg) */
    kiln_guider_kind guider;
    const kiln_conditioning *third;
    float scale2;
    /* the negative [0] and positive [1] prompts as parts over the sampling (ConditioningSetTimestepRange,
       ConditioningCombine) in place of kiln_ksample's two; nparts 0: those, over all of it */
    const kiln_conditioning_part *parts[2];
    int nparts[2];
    const kiln_sampler_options *sampler_options; /* eta and s_noise; NULL: 1 and 1 */
    const kiln_sigmas *sigmas; /* SamplerCustom's, walked as they are (steps, scheduler, denoise and the cut
                                  unused); NULL: KSampler's schedule */
    kiln_progress_fn progress;
    void *progress_ctx;
    /* if not NULL (B,C,h,w): the last step's x0 prediction, unscaled as the LATENT (SamplerCustom's
       denoised_output); the output when no step runs */
    float *last_denoised;
} kiln_sampling_job;

/* y for every row of the job's UNet batch, B negative rows then B positive
 * ones (2B, adm_channels), from the job's sdxl numbers or CLIPTextEncode's;
 * *y malloc'd, NULL for a UNet without y. */
kiln_status kiln_adm_rows(const kiln_model *m, const kiln_sampling_job *job, const kiln_conditioning *positive,
                          const kiln_conditioning *negative, float **y);

/* KSampler: from the conditionings (of possibly different lengths: the
 * shorter is repeated to a common length, as ComfyUI does; or the job's
 * parts, when it has them) to the unscaled LATENT (B,4,h,w) that VAEDecode
 * takes; `*latent` is malloc'd. */
kiln_status kiln_ksample(const kiln_model *m, const kiln_sampling_job *job, const kiln_conditioning *positive,
                         const kiln_conditioning *negative, float **latent);

/* One (positive, negative) pair of a job's prompts: its denoiser and what
 * it owns. */
typedef struct {
    kiln_denoiser d;
    bool made;
    float *context, *adm, *edit_in;
} prompt_pair;

/* The denoiser of the job on one positive and one negative prompt, on a
 * latent of h x w (the job's, or a box of it: ConditioningSetArea) at
 * guidance cfg; blend the inpainting job's mask, latent and noise (NULL:
 * none). */
kiln_status prompt_pair_make(const kiln_model *m, const kiln_sampling_job *job, const kiln_model_sampling *ms,
                             const kiln_conditioning *positive, const kiln_conditioning *negative,
                             const kiln_inpaint_mask *blend, int h, int w, float cfg, prompt_pair *p);
void prompt_pair_free(prompt_pair *p);

/* A ControlNet hint from an image, as ComfyUI fits it to the latent
 * (kiln_image_resize_center) for the ControlNet cn of model m: SD's, in
 * [0,1] (3,8h,8w), a T2I-Adapter's rounded up to its unshuffle
 * (kiln_t2i_adapter_picture_size, ComfyUI's scale_image_to); a Flux one of
 * XLabs' kind, the same in [-1,1]; one of
 * InstantX's kind, the picture at the VAE's size of the latent encoded by
 * m's VAE, as the model takes a latent (process_in; InstantX's SD3 kind
 * without the shift; Stability's SD 3.5 kind after its control type's
 * preprocessing, kiln_flux_controlnet_preprocess); Alimama's inpainting
 * kind, that of the picture with the masked part black, then the inverted
 * mask (1 keeps) fitted to the latent, as ControlNetInpaintingAliMamaApply
 * makes it (a mask of another size stretched to the picture; NULL: all
 * ones). *hint is malloc'd. */
kiln_status kiln_control_hint(const kiln_model *m, const kiln_controlnet *cn, const kiln_image *img,
                              const kiln_image *mask, int latent_h, int latent_w, float **hint);
/* SetUnionControlNetType's type: NULL, "" or "auto" -1 (none), its names
 * (openpose 0, depth 1, ..., repaint 7: the index a union ControlNet's mode
 * embedding reads, whichever kind the model calls it), or a number. */
kiln_status kiln_union_control_type(const char *name, int *type);

/* The IPAdapter node's image tokens: each of the `count` pictures through
 * ComfyUI's clip_preprocess, the CLIP vision tower and the adapter's image
 * projection (plain: of the image embeds; Plus: its Resampler on the
 * penultimate hidden states), their tokens side by side (the IPAdapter
 * nodes' combine_embeds "concat"), after those the negative prompt gets
 * (plain: of a zero image embedding; Plus: of a black picture), once per
 * picture -> *tokens (2, count x Ti, ctx), malloc'd. A tower whose output
 * is not as wide as the adapter reads is refused, naming both widths;
 * XLabs' Flux adapter takes one picture. */
kiln_status kiln_image_prompt_tokens(const kiln_ip_adapter *ipa, const kiln_clip_vision *cv, const kiln_image *images,
                                     int count, float **tokens);

/* CLIPVisionEncode with SigLIP's tower (crop: "center", else "none"), then
 * FLUX.1 Redux's encoder: *tokens (T, out_dim), malloc'd. A tower that is
 * not SigLIP's of the model's width is refused, naming both. */
kiln_status kiln_style_tokens(const kiln_style_model *sm, const kiln_clip_vision *cv, const kiln_image *img, bool crop,
                              float **tokens, int *T);

/* VAEDecode: latent (B,4,h,w) -> image (B,3,h*f,w*f) floats in [-1,1]
 * (unclamped); `*image` is malloc'd. */
kiln_status kiln_vae_decode_latent(const kiln_model *m, const float *latent, int batch, int h, int w, float **image);

/* VAEDecodeTiled (the node's tile and overlap in pixels, the overlap cut
 * to a quarter of the tile; then ComfyUI's decode_tiled_ in latent pixels):
 * each image decoded over square tiles of side t (kiln_tiled_scale) three
 * times, t/2 wide by 2t tall, 2t by t/2 and t by t, and the three averaged,
 * so that no seam lies where another tiling's does; the activations are a
 * tile's. Output as kiln_vae_decode_latent's. */
kiln_status kiln_vae_decode_latent_tiled(const kiln_model *m, const float *latent, int batch, int h, int w, int tile,
                                         int overlap, float **image);

/* VAEEncode: image (B,3,H,W) in [-1,1] -> latent mean (B,4,H/f,W/f),
 * unscaled; `*latent` is malloc'd. */
kiln_status kiln_vae_encode_image(const kiln_model *m, const float *image, int batch, int H, int W, float **latent);
/* VAEEncodeTiled (ComfyUI's encode_tiled_, the node's tile and overlap in
 * pixels, multiples of the VAE's factor): the encoder over square tiles of
 * side t, then 2t wide by t/2 tall, then t/2 by 2t, the three averaged.
 * Output as kiln_vae_encode_image's. */
kiln_status kiln_vae_encode_image_tiled(const kiln_model *m, const float *image, int batch, int H, int W, int tile,
                                        int overlap, float **latent);
/* The encoder's whole output: (B,2L,H/f,W/f), mean then log variance. */
kiln_status kiln_vae_encode_moments(const kiln_model *m, const float *image, int batch, int H, int W, float **moments);

#endif
