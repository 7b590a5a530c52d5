/* kiln — public C API.
 *
 * Every fallible function returns a kiln_status; on failure kiln_last_error()
 * holds a message naming the file, tensor or flag at fault. Nothing in the
 * library exits or aborts. */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARG,   /* a bad flag, size or parameter from the caller */
    KILN_ERR_IO,            /* a file could not be opened, read or written */
    KILN_ERR_FORMAT,        /* a file is malformed (header, dtype, offsets) */
    KILN_ERR_MODEL,         /* a checkpoint lacks a tensor or has a wrong shape */
    KILN_ERR_OUT_OF_MEMORY, /* host or device allocation failed */
    KILN_ERR_UNSUPPORTED,   /* valid input kiln cannot handle (yet) */
    KILN_ERR_BACKEND,       /* a backend (CUDA, Vulkan) call failed */
    KILN_ERR_CANCELLED,     /* a progress callback asked to stop */
} kiln_status;

/* The message set by the last failing call on this thread ("" if none). */
const char *kiln_last_error(void);

/* A short constant name for a status code ("KILN_ERR_FORMAT"). */
const char *kiln_status_name(kiln_status status);

/* Warnings: what kiln goes on past where ComfyUI logs a warning and goes on
 * (a prompt's embedding:NAME with no such file, or one of another text
 * tower's width). Each goes to `fn` (called on the thread that met it), or
 * with fn NULL, the default, to stderr as "kiln: warning: <message>".
 * Process-wide; set it before running anything. */
typedef void (*kiln_warning_fn)(void *ctx, const char *message);
void kiln_set_warning_handler(kiln_warning_fn fn, void *ctx);


/* ---------------------------------------------------------------------------
 * The embedding API: ComfyUI's nodes as C calls.
 *
 * A frontend builds what a ComfyUI graph does, one node at a time:
 *
 *   kiln_backend_open          the device (CPU, Vulkan, CUDA)
 *   kiln_checkpoint_load       CheckpointLoaderSimple, then LoraLoader for each LoRA
 *   kiln_text_encode           CLIPTextEncode (weighted prompts, clip skip)
 *   kiln_text_encode_flux      CLIPTextEncodeFlux's two texts
 *   kiln_text_encode_sd3       CLIPTextEncodeSD3's three texts
 *   kiln_text_encode_sdxl      CLIPTextEncodeSDXL's text_g and text_l
 *   kiln_empty_latent          EmptyLatentImage
 *   kiln_vae_encode            VAEEncode (img2img)
 *   kiln_vae_encode_for_inpaint   VAEEncodeForInpaint, or VAEEncode + SetLatentNoiseMask
 *   kiln_vae_encode_for_outpaint  ImagePadForOutpaint, then the same
 *   kiln_conditioning_zero_out ConditioningZeroOut
 *   kiln_latent_repeat         RepeatLatentBatch
 *   kiln_latent_from_batch     LatentFromBatch
 *   kiln_latent_batch_seed_behavior   LatentBatchSeedBehavior
 *   kiln_latent_upscale_by     LatentUpscaleBy (the hires fix's first half)
 *   kiln_latent_upscale        LatentUpscale (to a size)
 *   kiln_image_scale           ImageScale, ImageScaleBy
 *   kiln_image_stitch, kiln_image_resize_and_pad, kiln_image_scale_to_max_dimension
 *                              ImageStitch, ResizeAndPadImage, ImageScaleToMaxDimension
 *   kiln_controlnet_load       ControlNetLoader, DiffControlNetLoader
 *   kiln_ip_adapter_load, kiln_clip_vision_load   IPAdapterModelLoader, CLIPVisionLoader
 *   kiln_style_model_load      StyleModelLoader (FLUX.1 Redux)
 *   kiln_hypernetwork_load     HypernetworkLoader (A1111 hypernetworks)
 *   kiln_style_model_apply     CLIPVisionEncode, then StyleModelApply
 *   kiln_basic_scheduler, kiln_karras_scheduler, kiln_sigmas_split, ...
 *                              the SIGMAS nodes: scheduler nodes, ManualSigmas, SplitSigmas, ...
 *   kiln_ksampler              KSampler and KSamplerAdvanced, with ControlNetApplyAdvanced
 *                              (SetUnionControlNetType), IPAdapterAdvanced (an ImageBatch's pictures),
 *                              InstructPixToPixConditioning, the
 *                              numbers of CLIPTextEncodeSDXL / CLIPTextEncodeSDXLRefiner and
 *                              the parts of ConditioningSetTimestepRange / ConditioningCombine;
 *                              SamplerCustom with its SIGMAS and a custom sampler node's eta
 *   kiln_flux_kontext_image_scale  FluxKontextImageScale
 *   kiln_vae_decode            VAEDecode
 *   kiln_vae_decode_tiled      VAEDecodeTiled
 *   kiln_vae_encode_tiled      VAEEncodeTiled
 *   kiln_upscale_model_load, kiln_image_upscale_with_model   UpscaleModelLoader, ImageUpscaleWithModel
 *   kiln_image_load / _save    LoadImage / SaveImage (kiln_image_load_with_mask: its MASK too)
 *   kiln_mask_load, kiln_mask_grow, ...   LoadImageMask and the mask nodes
 *   kiln_workflow_run          a whole API-format workflow through the calls above
 *
 * Handles (backend, model, ControlNet, IP-Adapter, CLIP vision, upscaler)
 * are opaque; each holds memory on its backend, so all of them are freed
 * before the backend, and a ControlNet or IP-Adapter before its model.
 * Values that a frontend reads or fills in (conditioning, latent, image)
 * are plain structs whose memory the library allocates and the matching
 * _free releases (an output struct is overwritten, not freed, by the call
 * that fills it). A model is used by one thread at a time; different
 * models may run on different threads. Every call checks its arguments and
 * returns a kiln_status; no call exits, aborts or leaves a half-written
 * file. Every _free takes NULL and zeroed structs.
 * ------------------------------------------------------------------------- */

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *kiln_version(void);

typedef struct kiln_backend kiln_backend;

typedef struct kiln_backend_config {
    int device;          /* GPU index as `gen --list-devices` numbers them; -1: pick one (discrete first) */
    int threads;         /* CPU worker threads; 0: all cores */
    const char *compute; /* GPU arithmetic for matmul, conv and attention: "f32", "f16" or "bf16";
                            NULL: the backend's choice (f16 on CUDA, f32 elsewhere) */
} kiln_backend_config;

/* Opens a backend by name: "cpu", "vulkan", "cuda" or "auto" (CUDA, then
 * Vulkan, then the CPU). config NULL: device -1, all cores, the backend's
 * compute. A backend this build lacks, or that finds no usable device, is
 * KILN_ERR_UNSUPPORTED with the reason. */
kiln_status kiln_backend_open(const char *name, const kiln_backend_config *config, kiln_backend **out);
/* What it runs on ("cpu (16 threads)", the GPU's name and what was chosen). */
const char *kiln_backend_device_name(const kiln_backend *be);
void kiln_backend_free(kiln_backend *be);

typedef struct kiln_model kiln_model;

/* LoraLoader: a LoRA, LoCon or LoHa file and its two strengths. */
typedef struct kiln_lora {
    const char *path;
    double unet_strength; /* strength_model */
    double clip_strength; /* strength_clip */
} kiln_lora;

/* CheckpointLoaderSimple, then LoraLoader for each of `loras` in order (the
 * deltas are merged into the weights here, so sampling costs nothing more).
 * path: a single-file .safetensors or a diffusers folder; NULL: the model
 * embedded in libkiln. The model's weights go to `be`, which must outlive
 * it. Errors name the file and, for a LoRA that does not fit, its module. */
kiln_status kiln_checkpoint_load(kiln_backend *be, const char *path, const kiln_lora *loras, int nloras,
                                 kiln_model **out);
/* ComfyUI's model merging nodes, on the weights at load before any LoRA:
 * the checkpoint being loaded is model1, `path` model2 (a single file or a
 * diffusers folder of the same family). ModelMergeSimple: model1 x ratio +
 * model2 x (1 - ratio); ModelMergeAdd: model1 + model2; ModelMergeSubtract:
 * (model1 - model2) x ratio (its multiplier); on the diffusion model's
 * weights, or with text_encoders on the text encoders' (CLIPMergeSimple,
 * CLIPMergeAdd, CLIPMergeSubtract; position_ids and logit_scale left as
 * they are). Computed in float32, stored as model1 stores them. */
typedef enum kiln_merge_kind { KILN_MERGE_SIMPLE, KILN_MERGE_ADD, KILN_MERGE_SUBTRACT } kiln_merge_kind;
/* ModelMergeBlocks (and ModelMergeSD1, ModelMergeSD2, ModelMergeSDXL,
 * ModelMergeFlux1, ModelMergeSD3_2B, ModelMergeSD35_Large): a simple merge
 * of a diffusion model whose ratio for a tensor is that of the longest
 * prefix its name under the UNet's root starts with ("input_blocks.4.",
 * "middle", "out"), else the first block's; a DiT's tensors go by the names
 * of its original single file's ("double_blocks.3.", "joint_blocks.0."),
 * which a DiT from a diffusers folder lacks (refused). */
typedef struct kiln_merge_block {
    const char *prefix;
    double ratio; /* 0 to 1 */
} kiln_merge_block;
#define KILN_MAX_MERGE_BLOCKS 64
typedef struct kiln_merge {
    const char *path;
    kiln_merge_kind kind;
    double ratio; /* -10 to 10; unused by add, and by a merge by blocks */
    bool text_encoders;
    const kiln_merge_block *blocks; /* a simple merge of a UNet's weights by blocks; NULL: ratio for all */
    int nblocks;                    /* at most KILN_MAX_MERGE_BLOCKS */
} kiln_merge;
#define KILN_MAX_MERGES 8

/* UNetSelfAttentionMultiply and UNetCrossAttentionMultiply: the UNet's
 * self-attention (attn1) or cross-attention (attn2) query, key, value and
 * output projections (weights and biases) times these at load, after the
 * merges and before the LoRAs, as ComfyUI's weight patches scale them;
 * each 0 to 10. CLIPAttentionMultiply: the text encoders' self-attention
 * projections (every CLIP tower's) the same way. */
typedef struct kiln_attention_multiply {
    double q, k, v, out;
} kiln_attention_multiply;

/* The files a model is made of where one file does not hold it all, as
 * ComfyUI's UNETLoader, DualCLIPLoader, TripleCLIPLoader and VAELoader take
 * them (FLUX.1's flux1-dev.safetensors, clip_l.safetensors,
 * t5xxl_fp16.safetensors, ae.safetensors). A NULL field: none. */
#define KILN_MAX_TEXT_ENCODER_PARTS 3
typedef struct kiln_model_parts {
    const char *vae;              /* a VAE in place of the checkpoint's (any family; diffusers' or
                                     the original names) */
    const char *text_encoders[KILN_MAX_TEXT_ENCODER_PARTS]; /* as transformers saves them: Flux's CLIP-L and T5,
                                     PixArt's T5, SDXL's CLIP-L and bigG, SD3's CLIP-L, bigG and T5 */
    const char *tokenizer;        /* T5's spiece.model, which single files do not carry */
    const char *config;           /* a diffusers folder whose configs (Flux's rotary axes, the VAE's
                                     scale) and tokenizer apply to single files */
    const char *weight_dtype;     /* UNETLoader's weight_dtype: the diffusion model's f32/f16/bf16 linear
                                     weights converted at load to "fp8_e4m3fn" (or "fp8_e4m3fn_fast"),
                                     "fp8_e5m2", or "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"
                                     (stable-diffusion.cpp's --type); NULL or "default": as stored */
    const kiln_merge *merges;     /* merged in order, after the files above and before the LoRAs */
    int nmerges;                  /* at most KILN_MAX_MERGES */
    const kiln_attention_multiply *self_attention, *cross_attention; /* after the merges; NULL: none */
    const kiln_attention_multiply *clip_attention; /* CLIPAttentionMultiply, after the merges; NULL: none */
} kiln_model_parts;

/* kiln_checkpoint_load with `parts` beside the checkpoint (NULL: none):
 * path may then be a transformer alone (UNETLoader's file). */
kiln_status kiln_checkpoint_load_parts(kiln_backend *be, const char *path, const kiln_model_parts *parts,
                                       const kiln_lora *loras, int nloras, kiln_model **out);
void kiln_model_free(kiln_model *m);
/* Where the model's text encoders look up a prompt's "embedding:NAME"
 * (textual inversion, as ComfyUI's models/embeddings): NAME, NAME.safetensors,
 * .pt or .bin in `dir` or a folder under it. A1111's files, SDXL's clip_l/
 * clip_g pairs, diffusers' learned_embeds.bin, LoRA-bundled ones. NULL: no
 * folder (the default; every embedding:NAME is left out with a warning, as
 * ComfyUI leaves out a name it has no file for). */
kiln_status kiln_model_set_embeddings(kiln_model *m, const char *dir);
/* ComfyUI's T5TokenizerOptions: T5's ids of every prompt the model encodes
 * from now on get min_padding pad tokens after EOS, then pads up to
 * min_length ids in all (0: none; this replaces the model's own least length,
 * Flux's 256 and SD3's 77). Both -1: the model's tokenizer as it was. No
 * effect on a model without T5. */
kiln_status kiln_model_set_t5_tokenizer_options(kiln_model *m, int min_padding, int min_length);
/* "sd1", "sd2", "sdxl", "sdxl-refiner", "pixart", "flux", "chroma" or "sd3". */
const char *kiln_model_family(const kiln_model *m);
/* CheckpointSave: the model's weights as loaded (its LoRAs and merges in
 * them, a VAE or text encoders given beside it included) written to `path`
 * as one .safetensors file in the original single-file layout ComfyUI and
 * A1111 load (SD 2.x's and SDXL's OpenCLIP towers under OpenCLIP's names,
 * from single files or diffusers folders alike), SD 1.x, 2.x and XL (base
 * and refiner); a DiT loaded from its single file in its original names
 * (BFL's Flux or Chroma, Stability's SD3, PixArt's), its q, k, v fused and
 * modulations ordered as there, under model.diffusion_model., its VAE
 * under vae. (SD3: first_stage_model.) and its text encoders under
 * text_encoders., as ComfyUI's CheckpointSave writes one (a DiT from a
 * diffusers folder is refused; so are quantized weights). The file appears
 * whole or not at all. */
kiln_status kiln_model_save_checkpoint(const kiln_model *m, const char *path);
/* VAESave: the model's VAE as loaded (a --vae's too) in the LDM names
 * ComfyUI's VAESave writes (`encoder.*`, `decoder.*`, ..., the
 * `first_stage_model.` prefix off; a folder's attention as 1x1 convs), for
 * every family. ModelSave: its diffusion model alone under
 * `model.diffusion_model.`, as kiln_model_save_checkpoint writes it (SD
 * 1.x, 2.x and XL; a DiT as its single file names it). Each file appears
 * whole or not at all. */
kiln_status kiln_model_save_vae(const kiln_model *m, const char *path);
kiln_status kiln_model_save_diffusion_model(const kiln_model *m, const char *path);
/* What its UNet takes: "txt2img" (a latent), "inpaint" (and a mask and the
 * masked picture's latent), "instruct-pix2pix" (and the picture's latent:
 * InstructPix2Pix, and FLUX.1 Canny and Depth, whose picture is the edge or
 * depth map, given the same way). */
const char *kiln_model_variant(const kiln_model *m);
/* What the model predicts: "eps" or "v", as read off the checkpoint or set
 * ("lcm", or ModelSamplingContinuousEDM's "edm", where set); "flow" for
 * Flux. */
const char *kiln_model_prediction(const kiln_model *m);
/* ModelSamplingDiscrete: "eps" or "v_prediction" ("v"), for a checkpoint
 * whose file does not say (an SD 2.x 768 model saved without its config),
 * or "lcm" for an LCM model or an LCM-LoRA merged into one: eps on LCM's
 * distilled table (ModelSamplingDiscreteDistilled: 50 of the 1000 sigmas,
 * timesteps 19, 39, ..., 999, so every scheduler walks those), each x0
 * through LCM's boundary condition c_out (x - sigma eps) + c_skip x with
 * c_skip = 0.25 / (s^2 + 0.25), c_out = s / sqrt(s^2 + 0.25), s ten times
 * the timestep; a Flux or SD3 model takes only "flow". */
kiln_status kiln_model_set_prediction(kiln_model *m, const char *sampling);
/* ModelSamplingDiscrete's zsnr: the model's 1000 sigmas rescaled to zero
 * terminal SNR (rescale_zero_terminal_snr_sigmas; the last about 4519), as
 * v-prediction models trained that way sample (e.g. NoobAI-XL's v-pred); off
 * by default. Not for Flux or SD3 (KILN_ERR_UNSUPPORTED). */
kiln_status kiln_model_set_zsnr(kiln_model *m, bool zsnr);
/* ModelSamplingContinuousEDM: continuous sigmas in place of the 1000
 * discrete ones (1000 of them log-spaced from sigma_min to sigma_max for the
 * schedulers; the UNet's timestep 0.25 ln sigma), sampling "eps",
 * "v_prediction" or "cosxl" (v, data std 1: CosXL), "edm" (EDM's denoiser,
 * data std 0.5) or "edm_playground_v2.5" (that, with Playground v2.5's
 * latent format: (z - mean[c]) 0.5 / std[c] per channel in, its inverse
 * out); the node's sigmas 120 and 0.002 by default.
 * kiln_model_set_prediction goes back to the discrete table (and the
 * checkpoint's latent format). */
kiln_status kiln_model_set_continuous_edm(kiln_model *m, const char *sampling, double sigma_max, double sigma_min);
/* Back to how the checkpoint samples as loaded: its detected prediction,
 * its zsnr, its sigmas, its latent format. A Playground v2.5 file
 * (`edm_mean` and `edm_std` tensors) samples as "edm_playground_v2.5" with
 * sigmas 0.002 to 80; a CosXL one (`edm_vpred.sigma_max`) as "cosxl" to its
 * sigma_max; an SDXL v-pred file with a `ztsnr` tensor with zsnr; a
 * diffusers folder with an EDM scheduler (EDMDPMSolverMultistepScheduler) on
 * its sigmas, with its VAE config's latents_mean and latents_std as the
 * per-channel latent format. */
kiln_status kiln_model_reset_sampling(kiln_model *m);
/* ModelSamplingFlux's shift of a Flux model's sigmas (ComfyUI's node makes
 * it from the image size), or ModelSamplingSD3's of an SD3 model's; 0: the
 * model's own (dev 1.15, schnell 1.0, SD3 3.0). */
kiln_status kiln_model_set_flux_shift(kiln_model *m, double shift);
/* The size, in pixels, the model was trained at: what its file says
 * (modelspec.resolution, "WxH"), else its family's (512, 768, 1024). */
void kiln_model_native_size(const kiln_model *m, int *width, int *height);

/* CONDITIONING: an encoded prompt, (tokens, dim) floats, tokens = 77 x its
 * 75-token windows, the text towers' outputs side by side (SDXL: CLIP-L's
 * 768 then OpenCLIP bigG's 1280); with a pooled output (SDXL), pooled_dim
 * floats of it. A PixArt model's is T5's output, one row per id of the
 * prompt (at most 120), without a pooled output. An SD3 model's: the CLIPs'
 * rows zero-padded to T5's width, then T5's (at least 77), and both CLIPs'
 * pooled outputs. */
typedef struct kiln_conditioning {
    float *data;
    int tokens, dim;
    float *pooled; /* NULL: none */
    int pooled_dim;
} kiln_conditioning;

/* A prompt over a part of the sampling (ConditioningSetTimestepRange: from
 * start_percent to end_percent; 0 and 1: all of it) and of the picture
 * (ConditioningSetMask, ConditioningSetArea). A KSampler given several for a
 * side (ConditioningCombine) uses at each step those whose part holds it,
 * their predictions averaged, at each latent pixel weighted by their masks
 * and areas, as ComfyUI's calc_cond_batch does. */
typedef struct kiln_conditioning_part {
    const kiln_conditioning *cond;
    double start_percent, end_percent;
    /* ConditioningSetMask (set_cond_area "default"): where the prompt acts, weights in [0, 1] of (mask_h, mask_w)
       stretched over the latent bilinearly, times strength. Every latent pixel must be some part's of its side at
       every step (ComfyUI samples a pixel no part covers on a zero prediction; kiln refuses it). NULL: 1
       everywhere, strength unused */
    const float *mask;
    int mask_w, mask_h;
    double strength;
    /* ConditioningSetArea: the box the prompt is sampled on alone, the model called on that crop of the latent, in
       latent pixels (the node's pixels / 8); its weight fades in over the 8 latent pixels (at most a quarter of
       the box) inside each edge that is not the latent's, unless it has a mask. The box is cut to the latent.
       With an area on any part, each part runs on its own and the sides are combined by the guidance after: each
       area also samples the other side's prompt there (the smallest part holding it), as ComfyUI adds an opposite
       area; ControlNet, IP-Adapter, inpainting, a picture to edit, reference latents and SkipLayerGuidance are
       refused there. area_w 0: none */
    int area_x, area_y, area_w, area_h;
    /* ConditioningSetAreaPercentage: the box as fractions of the latent's width and height, rounded to latent
       pixels as ComfyUI does (half to even, at least 1 wide). fraction_w 0: none */
    double fraction_x, fraction_y, fraction_w, fraction_h;
    /* ConditioningSetMask's set_cond_area "mask bounds": the box is the one around the mask's nonzero weights (on
       the latent; at least 8 latent pixels a side), the mask weighting it */
    bool mask_bounds;
    /* ConditioningSetArea's and ConditioningSetAreaStrength's strength: the part's weight, times its mask's. 0: 1
       (a part at strength 0 adds nothing: leave it out) */
    double area_strength;
} kiln_conditioning_part;

/* Parts of one prompt on a sampling */
#define KILN_MAX_PROMPT_PARTS 8

/* CLIPTextEncode, with ComfyUI's prompt weighting ("(word:1.2)", escapes),
 * on each of the model's text towers. clip_skip: 1 reads the last layer,
 * 2 the one before (CLIPSetLastLayer -2); 0: the model's own default. On a
 * PixArt model: its T5 on the text as it is (clip_skip 0 or 1). */
kiln_status kiln_text_encode(kiln_model *m, const char *text, int clip_skip, kiln_conditioning *out);
/* CLIPTextEncodeFlux's texts (its guidance is kiln_ksampler_params'
 * flux_guidance): CLIP-L's pooled output on clip_l, T5 on t5xxl, which
 * kiln_text_encode gives the one text. A Flux model only. */
kiln_status kiln_text_encode_flux(kiln_model *m, const char *clip_l, const char *t5xxl, kiln_conditioning *out);
/* CLIPTextEncodeSD3's texts (empty_padding "empty_padding": each text,
 * even an empty one, encoded): CLIP-L on clip_l, bigG on clip_g, T5 on
 * t5xxl, which kiln_text_encode gives the one text. An SD3 model only. */
kiln_status kiln_text_encode_sd3(kiln_model *m, const char *clip_l, const char *clip_g, const char *t5xxl,
                                 kiln_conditioning *out);
/* CLIPTextEncodeSDXL's texts (its numbers are kiln_ksampler_params' sdxl):
 * CLIP-L on text_l, OpenCLIP bigG (and the pooled output) on text_g, which
 * kiln_text_encode gives the one text. An SDXL base model only. */
kiln_status kiln_text_encode_sdxl(kiln_model *m, const char *text_g, const char *text_l, int clip_skip,
                                  kiln_conditioning *out);
/* Frees what the conditioning holds and zeroes it; safe on a zeroed one. */
void kiln_conditioning_free(kiln_conditioning *c);
/* ConditioningZeroOut: *out a copy of c of the same shape, its rows and
 * pooled output zeros (SD3's example workflows' negative prompt after its
 * first steps). */
kiln_status kiln_conditioning_zero_out(const kiln_conditioning *c, kiln_conditioning *out);

/* LATENT: an unscaled VAE latent (batch, channels, height, width) floats, as
 * ComfyUI's LATENT["samples"] holds it; height and width are the image's
 * divided by the VAE's factor (8). With a noise mask (LATENT["noise_mask"],
 * (mask_h, mask_w) floats, 1 repaints), KSampler repaints only the masked
 * part; kiln_latent_free frees both. */
typedef struct kiln_latent {
    float *data;
    int batch, channels, height, width;
    float *noise_mask; /* NULL: none */
    int mask_h, mask_w;
    float *concat;     /* FLUX.1 Fill's (kiln_vae_encode_for_inpaint's): the latent of the picture with its masked
                          pixels grey, (channels,height,width), which the model reads beside the noisy one
                          (InpaintModelConditioning's concat_latent_image); NULL: none */
    /* LatentFromBatch's (ComfyUI's batch_index): each image's place in the batch its noise is drawn for, so
       that a picked image is sampled with the noise it had in its batch (batch entries, each >= 0); NULL: 0, 1,
       ... with the batch's noise drawn at once. RepeatLatentBatch, LatentUpscale(By) and KSampler carry it */
    int *batch_index;
} kiln_latent;

/* EmptyLatentImage: zeros for `batch` images of width x height pixels
 * (multiples of 8, at most 16384). */
kiln_status kiln_empty_latent(const kiln_model *m, int width, int height, int batch, kiln_latent *out);
void kiln_latent_free(kiln_latent *l);
/* RepeatLatentBatch: the latent's images (and its noise mask) `amount` times over. */
kiln_status kiln_latent_repeat(const kiln_latent *l, int amount, kiln_latent *out);
/* LatentFromBatch: `length` images from image `batch_index` on (both cut to the batch, as ComfyUI does), with
   their places in the batch (out->batch_index) so that KSampler draws them the batch's noise; the noise mask
   kept. */
kiln_status kiln_latent_from_batch(const kiln_latent *l, int batch_index, int length, kiln_latent *out);
/* LatentBatchSeedBehavior: "fixed": every image the first one's place in the batch (0 where it has none), so
   that KSampler draws them all the same noise; "random": the places dropped (each image the noise of its index). */
kiln_status kiln_latent_batch_seed_behavior(const kiln_latent *l, const char *behavior, kiln_latent *out);
/* LatentUpscaleBy: each side times `scale` (rounded as Python rounds),
 * resized by `method`: "nearest-exact", "bilinear", "bicubic" or "area"
 * (torch's interpolate), or "bislerp" (ComfyUI's: each pixel's channels
 * slerped as one vector); the noise mask is left behind, as ComfyUI's node
 * does. */
kiln_status kiln_latent_upscale_by(const kiln_latent *l, const char *method, double scale, kiln_latent *out);
/* LatentUpscale: the latent resized to width x height pixels (each at
 * least 64, / 8 for the latent; one of them 0: kept in the latent's aspect
 * ratio), with crop the largest centred part of the new aspect ratio first
 * (ComfyUI's "center"); the same methods and no noise mask (0 and 0: the
 * latent as it is). */
kiln_status kiln_latent_upscale(const kiln_latent *l, const char *method, int width, int height, bool crop,
                                kiln_latent *out);
/* LatentComposite: `to` with `from` put at (x, y) latent pixels (the node's
 * pixels / 8; a place inside `to`), cut to fit; with feather (latent
 * pixels) `from` fades in over that many pixels inside each of its edges
 * that is not `to`'s, as ComfyUI's node multiplies its factors in. from's
 * batch is to's or 1; to's noise mask and places are kept. */
kiln_status kiln_latent_composite(const kiln_latent *to, const kiln_latent *from, int x, int y, int feather,
                                  kiln_latent *out);
/* LatentCompositeMasked: src put onto dest at (x, y) latent pixels (the
 * node's pixels / 8; at most dest's far corner), weighted by the mask
 * (weights of mask_w x mask_h stretched over the source, bilinear; NULL: 1)
 * against dest, cut to what shows; with resize_source the source first
 * stretched to dest's size (bilinear). Its images repeated or cut to dest's
 * batch; dest's noise mask and places kept. */
kiln_status kiln_latent_composite_masked(const kiln_latent *dest, const kiln_latent *src, int x, int y,
                                         bool resize_source, const float *mask, int mask_w, int mask_h,
                                         kiln_latent *out);
/* LatentBlend: a * factor + b * (1 - factor) (factor 0 to 1), b first
 * resized to a's size where it differs (bicubic, centre crop, as the node);
 * b's batch a's or 1. */
kiln_status kiln_latent_blend(const kiln_latent *a, const kiln_latent *b, double factor, kiln_latent *out);
/* LatentAdd ("add": a + b), LatentSubtract ("subtract": a - b) and
 * LatentInterpolate ("interpolate": at each pixel the channel vectors made
 * unit, mixed a * ratio + b * (1 - ratio), made unit again and given the
 * mixed length; per image, where ComfyUI's node only runs on one), b first
 * resized to a's size where it differs (bilinear, centre crop) and its
 * images repeated or cut to a's batch, as nodes_latent's
 * reshape_latent_to. a's noise mask and places are kept. */
kiln_status kiln_latent_combine(const kiln_latent *a, const kiln_latent *b, const char *op, double ratio,
                                kiln_latent *out);
/* LatentMultiply: the latent times multiplier. */
kiln_status kiln_latent_multiply(const kiln_latent *l, double multiplier, kiln_latent *out);
/* ComfyUI's latent operations (LatentOperationTonemapReinhard,
 * LatentOperationSharpen) for LatentApplyOperation and, on the guidance,
 * LatentApplyOperationCFG (kiln_ksampler_params.cfg_operation). Tonemap:
 * each pixel's vector over the channels kept in direction, its length m
 * mapped to top m / (m + top) with top = (5 std + mean) multiplier (std,
 * unbiased, and mean of the lengths over the image; multiplier 0 to 100).
 * Sharpen: the pixels' directions (each vector over its length + 1e-6)
 * filtered per channel as ImageSharpen filters (radius 1 to 31, below both
 * sides; sigma 0.1 to 10; alpha 0 to 5), times the lengths again. */
typedef enum kiln_latent_operation_kind {
    KILN_LATENT_OPERATION_TONEMAP_REINHARD,
    KILN_LATENT_OPERATION_SHARPEN,
} kiln_latent_operation_kind;
typedef struct kiln_latent_operation {
    kiln_latent_operation_kind kind;
    double multiplier;  /* tonemap */
    int sharpen_radius; /* sharpen: radius, sigma, alpha (the node's defaults 9, 1, 0.1) */
    double sigma, alpha;
} kiln_latent_operation;
/* LatentApplyOperation: the operation on each image of the latent. */
kiln_status kiln_latent_apply_operation(const kiln_latent *l, const kiln_latent_operation *op, kiln_latent *out);
/* LatentBatch: a's images, then b's (resized to a's size where it differs,
 * bilinear, centre crop); each half's places (its own 0, 1, ... where it
 * has none), so that KSampler draws each image the noise of its place. */
kiln_status kiln_latent_batch(const kiln_latent *a, const kiln_latent *b, kiln_latent *out);
/* LatentConcat: b (repeated or cut to a's batch) joined to a along dim
 * "x" (the width), "y" (the height) or "t" (an image latent's channels, the
 * axis before them), after a; "-x", "-y", "-t": before it. The other sides
 * must agree; a's noise mask and places are kept, as the node keeps them. */
kiln_status kiln_latent_concat(const kiln_latent *a, const kiln_latent *b, const char *dim, kiln_latent *out);
/* LatentCut: `amount` rows of dim ("x", "y", "t" as LatentConcat's) from
 * `index` (below 0: from the end), clamped as the node clamps them (a start
 * past the end is the last row; no more rows than there are). */
kiln_status kiln_latent_cut(const kiln_latent *l, const char *dim, int index, int amount, kiln_latent *out);
/* SaveLatent: the latent as ComfyUI's `.latent` file (safetensors:
 * `latent_tensor` (batch, channels, height, width) f32 and an empty
 * `latent_format_version_0`; `prompt` the workflow's JSON in the metadata,
 * NULL: none), written whole or not at all. Its noise mask is not kept, as
 * the node keeps none. */
kiln_status kiln_latent_save(const kiln_latent *l, const char *path, const char *prompt);
/* LoadLatent: a `.latent` file's `latent_tensor` (any float dtype), times
 * 1 / 0.18215 where `latent_format_version_0` is missing (a file saved
 * scaled, before ComfyUI's format had its version), as the node reads it. */
kiln_status kiln_latent_load(const char *path, kiln_latent *out);
/* LatentCrop: width x height latent pixels from (x, y) (the node's pixels /
 * 8), the corner at most 8 latent pixels from the far edges and the box cut
 * to the latent, as ComfyUI's node; a latent of at least 8x8. The noise
 * mask is kept whole, as the node keeps it. */
kiln_status kiln_latent_crop(const kiln_latent *l, int x, int y, int width, int height, kiln_latent *out);
/* LatentRotate (quarter_turns clockwise, 0 to 3: "90 degrees" is 1) and
 * LatentFlip (flip_rows: "x-axis: vertically", flip_columns: "y-axis:
 * horizontally"), the turn first; the noise mask is kept as it is, as the
 * nodes keep it. */
kiln_status kiln_latent_flip_rotate(const kiln_latent *l, bool flip_rows, bool flip_columns, int quarter_turns,
                                    kiln_latent *out);

/* IMAGE: 8-bit RGB, (height, width, 3) row-major. */
typedef struct kiln_image {
    int width, height;
    int channels;    /* always 3: R, G, B */
    uint8_t *pixels; /* owned */
} kiln_image;

/* ImageScale / ImageScaleBy's resize (ComfyUI's common_upscale) of a
 * picture to width x height, with crop the largest centred part of that
 * aspect ratio first: "nearest-exact", "bilinear", "bicubic" and "area" as torch
 * interpolates the pixels / 255, back to bytes by SaveImage's rule (255 x,
 * clipped, truncated); "lanczos" Pillow's on the bytes. *out a new image. */
kiln_status kiln_image_scale(const kiln_image *img, const char *method, int width, int height, bool crop,
                             kiln_image *out);

/* LoadImage: reads a PNG or JPEG file into *out (which it allocates), recognised by its
 * first bytes, never by its name:
 *  - PNG of any bit depth and colour type; 16-bit samples keep their high
 *    byte (what Pillow does for RGB); the first frame of an animated PNG;
 *  - JPEG baseline or progressive, gray, YCbCr or Adobe CMYK;
 *  - the EXIF orientation (JPEG APP1, PNG eXIf) is applied as Pillow's
 *    ImageOps.exif_transpose does.
 * Errors, each naming the file: KILN_ERR_IO (missing, unreadable, a
 * directory), KILN_ERR_FORMAT (empty, truncated, corrupt, not an image),
 * KILN_ERR_UNSUPPORTED (GIF, WebP and other formats; a side over
 * KILN_IMAGE_MAX_SIDE). */
kiln_status kiln_image_load(const char *path, kiln_image *out);

/* A PNG text chunk. Keys are 1-79 printable ASCII characters; values are
 * UTF-8 and are written as tEXt when plain ASCII, as iTXt otherwise. */
typedef struct kiln_png_text {
    const char *key, *value;
} kiln_png_text;

/* SaveImage: writes img in the format its name asks for (runtime/image.h's kiln_image_format_of;
 * KILN_ERR_UNSUPPORTED for any other name):
 *  - PNG: 8-bit RGB with `ntext` text chunks ahead of the pixel data;
 *  - JPEG: baseline, quality KILN_JPEG_QUALITY, 4:2:0; of the texts only
 *    "parameters" is kept, as EXIF UserComment where A1111's PNG Info and
 *    the sites that read its JPEGs find it (a ComfyUI workflow needs a PNG).
 * The file appears at `path` only once complete: it is written to
 * `path.tmp-<pid>`, flushed to disk, then renamed; on any error the temporary
 * file is removed and `path` is untouched. */
kiln_status kiln_image_save(const char *path, const kiln_image *img, const kiln_png_text *text, size_t ntext);
/* Frees the pixels and zeroes *img; safe on a zeroed or already freed image. */
void kiln_image_free(kiln_image *img);

/* ComfyUI's image nodes on 8-bit pictures: each works on the pixels / 255
 * in float32 as torch does and gives its bytes by SaveImage's rule (255 x,
 * clipped, truncated); *out a new picture. */
/* EmptyImage: width x height of color (0xRRGGBB: each channel its byte / 255). */
kiln_status kiln_image_empty(int width, int height, uint32_t color, kiln_image *out);
/* ImageInvert: 1 - the picture. */
kiln_status kiln_image_invert(const kiln_image *img, kiln_image *out);
/* ImageBlend: image2 (of another size: resized to image1's, bicubic, the
 * centre cut to its aspect) blended onto image1 by mode ("normal",
 * "multiply", "screen", "overlay", "soft_light", "difference"), then
 * image1 (1 - factor) + that factor (factor 0 to 1), clamped to [0, 1]. */
kiln_status kiln_image_blend(const kiln_image *image1, const kiln_image *image2, double factor, const char *mode,
                             kiln_image *out);
/* ImageBlur: the Gaussian of (2 radius + 1)^2 taps over [-1, 1] at sigma
 * (the node's kernel; sigma above 0, at most 100), the edges mirrored
 * (radius 1 to 31, below both sides; 0: the picture as it is). */
kiln_status kiln_image_blur(const kiln_image *img, int radius, double sigma, kiln_image *out);
/* ImageSharpen: that kernel times -10 alpha (0 to 5), its centre raised so
 * that it sums to 1, the edges mirrored, clamped to [0, 1]; radius and sigma
 * as ImageBlur's. */
kiln_status kiln_image_sharpen(const kiln_image *img, int radius, double sigma, double alpha, kiln_image *out);

/* ImageStitch: image2 put beside image1 toward `direction` ("right",
 * "down", "left", "up"); with match_size image2 first resized (Pillow's
 * LANCZOS) to image1's height (right, left; its width int(height x its
 * aspect ratio)) or width (down, up), else the smaller of the two centred
 * on the other's side and the rest filled (spacing_color "white" white,
 * any other black); `spacing` pixels (rounded up to even, 0 to 1024) of
 * spacing_color ("white", "black", "red", "green", "blue") between them. */
kiln_status kiln_image_stitch(const kiln_image *image1, const kiln_image *image2, const char *direction,
                              bool match_size, int spacing, const char *spacing_color, kiln_image *out);
/* ResizeAndPadImage: the picture scaled by kiln_image_scale's `method`
 * to fit width x height (each side int(side x the smaller ratio)), centred
 * on a width x height picture of padding_color ("white" or "black"). */
kiln_status kiln_image_resize_and_pad(const kiln_image *img, int width, int height, const char *padding_color,
                                      const char *method, kiln_image *out);
/* ImageScaleToMaxDimension: scaled by kiln_image_scale's `method` so that
 * its longer side is `largest` (the other round(side x largest / longer),
 * half to even; a square both). */
kiln_status kiln_image_scale_to_max_dimension(const kiln_image *img, const char *method, int largest,
                                              kiln_image *out);

/* Canny (ComfyUI's node, kornia's canny): the edges of the picture, white
 * on black, for thresholds 0 < low <= high on the unnormalised Sobel
 * magnitude of its blurred grey (the node's defaults 0.4 and 0.8); at least
 * 3x3. */
kiln_status kiln_image_canny(const kiln_image *img, double low_threshold, double high_threshold, kiln_image *out);

/* ImageMorphology (ComfyUI's node, kornia.morphology with a k x k kernel of
 * ones, k 3 to 999): "erode", "dilate", "open", "close", "gradient",
 * "top_hat" or "bottom_hat", each channel on its own, the picture's outside
 * left out. */
kiln_status kiln_image_morphology(const kiln_image *img, const char *operation, int kernel_size, kiln_image *out);

/* ImageAddNoise: `count` pictures of one size (a batch) with strength x
 * torch.randn of the whole batch's (count, H, W, 3) values under `seed` (as
 * torch's CPU generator draws them) added, clamped to [0, 1]; bytes by
 * SaveImage's rule. out: the caller's array of count pictures, each freed
 * with kiln_image_free. */
kiln_status kiln_image_add_noise(const kiln_image *images, int count, uint64_t seed, double strength,
                                 kiln_image *out);

/* ImageRotate (quarter_turns clockwise, 0 to 3) and ImageFlip (flip_rows:
 * "x-axis: vertically", flip_columns: "y-axis: horizontally"), the turn
 * first, as kiln_latent_flip_rotate moves a latent. */
kiln_status kiln_image_flip_rotate(const kiln_image *img, bool flip_rows, bool flip_columns, int quarter_turns,
                                   kiln_image *out);

/* MASK: weights (1 repaints, or where a prompt acts), (height, width) row-major
 * floats. The calls below are ComfyUI's mask nodes; each makes a new mask
 * in *out, freed with kiln_mask_free. The calls that take a mask as a
 * picture (kiln_control_apply's mask, kiln_vae_encode_for_inpaint) read its
 * red channel over 255: kiln_mask_picture makes that picture
 * (kiln_vae_encode_for_inpaint_mask takes a mask as it is). */
typedef struct kiln_mask {
    int width, height;
    float *weights; /* owned */
} kiln_mask;

/* LoadImageMask: a channel ("red", "green", "blue" or "alpha") of a PNG or
 * JPEG (as kiln_image_load reads it) over 255; alpha inverted (1 - alpha:
 * transparent repaints), and 0 everywhere in a file without one. */
kiln_status kiln_mask_load(const char *path, const char *channel, kiln_mask *out);
/* LoadImage's two outputs: the picture (kiln_image_load's) and its MASK,
 * 1 - alpha, or 64x64 zeros for a file without alpha (a grey or RGB PNG's
 * tRNS colour is none there, as Pillow keeps no band for it). */
kiln_status kiln_image_load_with_mask(const char *path, kiln_image *image, kiln_mask *mask);
/* SolidMask: value (0 to 1) everywhere on width x height. */
kiln_status kiln_mask_solid(float value, int width, int height, kiln_mask *out);
/* ImageToMask: a channel ("red", "green" or "blue") of the picture over 255. */
kiln_status kiln_mask_from_image(const kiln_image *img, const char *channel, kiln_mask *out);
/* ImageColorToMask: 1 where the pixel is color (0xRRGGBB), 0 elsewhere. */
kiln_status kiln_mask_from_color(const kiln_image *img, uint32_t color, kiln_mask *out);
/* MaskToImage: the mask as a grey picture, bytes by SaveImage's rule (255 x,
 * clipped, truncated). */
kiln_status kiln_mask_to_image(const kiln_mask *mask, kiln_image *out);
/* A mask as the calls that read masks as pictures take it: each weight
 * rounded to the nearest 1/255 (exact for what kiln_mask_load reads). */
kiln_status kiln_mask_picture(const kiln_mask *mask, kiln_image *out);
/* InvertMask: 1 - the mask. */
kiln_status kiln_mask_invert(const kiln_mask *mask, kiln_mask *out);
/* ThresholdMask: 1 where the mask is above value, else 0. */
kiln_status kiln_mask_threshold(const kiln_mask *mask, float value, kiln_mask *out);
/* CropMask: width x height from (x, y), cut at the mask's edges (Python's
 * slicing; nothing left is an error). */
kiln_status kiln_mask_crop(const kiln_mask *mask, int x, int y, int width, int height, kiln_mask *out);
/* MaskComposite: source placed at (x, y) on destination (cut at its edges)
 * combined there by operation ("multiply", "add", "subtract", "and", "or",
 * "xor": the last three on the weights rounded to 0 or 1, as torch.round),
 * everything clamped to [0, 1]. */
kiln_status kiln_mask_composite(const kiln_mask *destination, const kiln_mask *source, int x, int y,
                                const char *operation, kiln_mask *out);
/* FeatherMask: the weights faded towards 0 over `left`, `top`, `right` and
 * `bottom` pixels from each edge (each cut to the mask's size), the k-th
 * pixel in by k / fade, as the node fades them: its right and bottom fades
 * count from the end as Python's -k does, so they scale the last column
 * (row) by 2 / fade and the first by 1 / fade. */
kiln_status kiln_mask_feather(const kiln_mask *mask, int left, int top, int right, int bottom, kiln_mask *out);
/* GrowMask: `expand` times grey dilation (expand < 0: erosion) over the 3x3
 * cross, or the 3x3 square without tapered_corners, as scipy.ndimage's
 * grey_dilation/grey_erosion do (the mask's edge mirrored). */
kiln_status kiln_mask_grow(const kiln_mask *mask, int expand, bool tapered_corners, kiln_mask *out);
/* Frees the weights and zeroes *mask; safe on a zeroed or already freed mask. */
void kiln_mask_free(kiln_mask *mask);
/* ImageCompositeMasked: source pasted onto destination at (x, y) pixels,
 * weighted by mask (stretched over the source, bilinear; NULL: 1), the
 * source resized to the destination first with resize_source, as
 * LatentCompositeMasked (ComfyUI's one composite for both) in [0, 1]; back
 * to bytes by SaveImage's rule. */
kiln_status kiln_image_composite_masked(const kiln_image *destination, const kiln_image *source, int x, int y,
                                        bool resize_source, const kiln_mask *mask, kiln_image *out);

/* VAEDecode: the latent's `latent->batch` images into images[0 ..
 * batch - 1], an array of `count` (at least the batch) that the caller
 * provides; each image is freed with kiln_image_free. */
kiln_status kiln_vae_decode(kiln_model *m, const kiln_latent *latent, kiln_image *images, int count);
/* VAEDecodeTiled: as kiln_vae_decode, the VAE run over tiles of tile_size
 * pixels (64 to 4096; ComfyUI's default 512) overlapping by `overlap` (its
 * default 64; at most a quarter of the tile) in three tilings averaged, so
 * that it needs a tile's memory, not the picture's. */
kiln_status kiln_vae_decode_tiled(kiln_model *m, const kiln_latent *latent, int tile_size, int overlap,
                                  kiln_image *images, int count);
#define KILN_VAE_TILE 512
#define KILN_VAE_TILE_OVERLAP 64
/* VAEEncode: `count` images of one size, each cropped as ComfyUI crops it
 * to a multiple of 8 on each side (centred), into a latent of batch count. */
kiln_status kiln_vae_encode(kiln_model *m, const kiln_image *images, int count, kiln_latent *out);
/* VAEEncodeTiled: as kiln_vae_encode, the encoder run over tiles of
 * tile_size pixels (64 to 4096) overlapping by `overlap`, in three tilings
 * averaged; the tiles and overlap are multiples of the VAE's factor (8). */
kiln_status kiln_vae_encode_tiled(kiln_model *m, const kiln_image *images, int count, int tile_size, int overlap,
                                  kiln_latent *out);
/* The picture and its mask (white repaints: the mask's red channel, as
 * LoadImageMask reads it; another size than the picture's is stretched to
 * it) into a latent of batch 1 with a noise mask. With an inpainting model
 * (9 input channels) this is VAEEncodeForInpaint (masked pixels grey, the
 * mask grown by 6 pixels); with any other, VAEEncode + SetLatentNoiseMask. */
kiln_status kiln_vae_encode_for_inpaint(kiln_model *m, const kiln_image *image, const kiln_image *mask,
                                        kiln_latent *out);
/* The same with a MASK, and VAEEncodeForInpaint's grow_mask_by (0 to 64; 0:
 * the mask rounded, not grown); kiln_vae_encode_for_inpaint is this with the
 * picture's red channel and 6. */
kiln_status kiln_vae_encode_for_inpaint_mask(kiln_model *m, const kiln_image *image, const kiln_mask *mask,
                                             int grow_mask_by, kiln_latent *out);
/* ImagePadForOutpaint (the picture on a grey canvas grown by the four pads,
 * the mask fading over `feathering` pixels into the picture; ComfyUI's
 * default 40), then as kiln_vae_encode_for_inpaint. */
kiln_status kiln_vae_encode_for_outpaint(kiln_model *m, const kiln_image *image, int left, int top, int right,
                                         int bottom, int feathering, kiln_latent *out);

/* FluxKontextImageScale: the picture at the one of FLUX.1 Kontext's
 * preferred sizes (about a megapixel, 672x1568 to 1568x672) nearest its
 * aspect ratio, cut at the centre and resized as ComfyUI's "lanczos"
 * (Pillow's) does; *out is a new image. */
kiln_status kiln_flux_kontext_image_scale(const kiln_image *image, kiln_image *out);

typedef struct kiln_controlnet kiln_controlnet;

/* ControlNetLoader: a ControlNet for the model's UNet (original or diffusers
 * layout) or for a Flux model's transformer (InstantX's and Shakker-Labs'
 * diffusers files, XLabs' files); DiffControlNetLoader too: a diff
 * ControlNet (a `difference` tensor) gets the model's UNet weights added.
 * It must be freed before the model. */
kiln_status kiln_controlnet_load(kiln_model *m, const char *path, kiln_controlnet **out);
void kiln_controlnet_free(kiln_controlnet *cn);

/* ControlNetApplyAdvanced on both prompts (kiln_ksampler_params takes a
 * chain of up to KILN_MAX_CONTROLS of them). */
#define KILN_MAX_CONTROLS 8
typedef struct kiln_control_apply {
    const kiln_controlnet *controlnet;
    const kiln_image *image;            /* the hint (an edge map, pose ...), fitted to the latent as ComfyUI does */
    double strength;                    /* 1: as trained */
    double start_percent, end_percent;  /* of the sampling, 0 and 1: all of it */
    /* SetUnionControlNetType on a union ControlNet: "openpose", "depth", ..., "repaint" (ComfyUI's names) or
       the number its model uses; NULL or "auto": none */
    const char *union_type;
    /* ControlNetInpaintingAliMamaApply, for an inpainting ControlNet (Flux's of Alimama's kind, SD3's of
       InstantX's and Alimama's: a latent of 17 channels): where to
       repaint (its red channel: white repaints; stretched to the picture); that part of the hint black, the mask
       its last channel. NULL: ControlNetApplyAdvanced (such a ControlNet then reads all of the picture) */
    const kiln_image *mask;
    /* ControlNetApply, the older node: on the positive prompt only, the negative sampled without it (as ComfyUI
       batches it apart); false: ControlNetApplyAdvanced's both prompts */
    bool positive_only;
} kiln_control_apply;

typedef struct kiln_ip_adapter kiln_ip_adapter;
typedef struct kiln_clip_vision kiln_clip_vision;

/* IP-Adapters on one sampling (kiln_ksampler_params takes a chain). */
#define KILN_MAX_IP_ADAPTERS 8

/* IPAdapterModelLoader: an IP-Adapter (h94's plain or Plus files) for the
 * model's UNet. It must be freed before the model. */
kiln_status kiln_ip_adapter_load(kiln_model *m, const char *path, kiln_ip_adapter **out);
void kiln_ip_adapter_free(kiln_ip_adapter *ipa);
/* CLIPVisionLoader: the image encoder an IP-Adapter was trained with
 * (CLIP ViT-H/14 or bigG/14, transformers' layout), or the SigLIP tower
 * FLUX.1 Redux reads (sigclip_vision_patch14_384). */
kiln_status kiln_clip_vision_load(kiln_backend *be, const char *path, kiln_clip_vision **out);
void kiln_clip_vision_free(kiln_clip_vision *cv);

typedef struct kiln_style_model kiln_style_model;

/* StyleModelLoader: FLUX.1 Redux (flux1-redux-dev.safetensors) for the
 * Flux model m's T5 rows. It must be freed before the model. */
kiln_status kiln_style_model_load(kiln_model *m, const char *path, kiln_style_model **out);
void kiln_style_model_free(kiln_style_model *sm);
/* CLIPVisionEncode of the picture with the SigLIP tower (crop true: its
 * "center", else "none"), then StyleModelApply (strength_type "multiply"):
 * *out is `in` with the Redux tokens times strength after its rows (a new
 * conditioning; in's pooled output kept). */
kiln_status kiln_style_model_apply(const kiln_style_model *sm, const kiln_clip_vision *clip_vision,
                                   const kiln_image *image, bool crop, double strength, const kiln_conditioning *in,
                                   kiln_conditioning *out);

typedef struct kiln_hypernetwork kiln_hypernetwork;
#define KILN_MAX_HYPERNETWORKS 8

/* HypernetworkLoader: an A1111 hypernetwork (a torch.save `.pt` file) at
 * `strength` (-10..10) for the UNet model m's attentions, which
 * kiln_ksampler_params' hypernetworks put on the model. Errors name the
 * file: not a hypernetwork, an activation ComfyUI does not know, shapes
 * that do not chain. It must be freed before the model. */
kiln_status kiln_hypernetwork_load(kiln_model *m, const char *path, double strength, kiln_hypernetwork **out);
void kiln_hypernetwork_free(kiln_hypernetwork *h);

/* IPAdapterAdvanced (weight type linear, no negative picture) on the
 * positive prompt (kiln_ksampler_params takes a chain of them). */
typedef struct kiln_ip_adapter_apply {
    const kiln_ip_adapter *adapter;
    const kiln_clip_vision *clip_vision;
    const kiln_image *image;           /* the picture to follow (image_count of them) */
    double weight;                     /* 1: as trained */
    double start_percent, end_percent; /* of the sampling, 0 and 1: all of it */
    /* an ImageBatch's pictures (up to 64): their image tokens side by side, as the IPAdapter nodes' combine_embeds
       "concat"; 0: one. XLabs' Flux adapter takes one */
    int image_count;
} kiln_ip_adapter_apply;

typedef struct kiln_upscaler kiln_upscaler;

/* UpscaleModelLoader: an ESRGAN / Real-ESRGAN model (x2, x4, ...). */
kiln_status kiln_upscale_model_load(kiln_backend *be, const char *path, kiln_upscaler **out);
void kiln_upscaler_free(kiln_upscaler *u);
/* ImageUpscaleWithModel: the image in tiles of 512 pixels overlapping by 32,
 * as ComfyUI runs it, into an image `scale` times larger. */
kiln_status kiln_image_upscale_with_model(kiln_upscaler *u, const kiln_image *image, kiln_image *out);

/* Called once a step (0 <= step < total) with that step's prediction of the
 * finished latent (scaled, the whole batch); a status other than KILN_OK
 * (KILN_ERR_CANCELLED for a user's stop) ends the sampling, and
 * kiln_ksampler returns it with a message saying at which step. */
typedef kiln_status (*kiln_progress_fn)(void *ctx, int step, int total, const float *denoised);

/* The numbers ComfyUI's CLIPTextEncodeSDXL (and CLIPTextEncodeSDXLRefiner)
 * give SDXL's vector y besides the pooled text, the same on both prompts.
 * Without them a job gets what CLIPTextEncode leaves: the output size as
 * both sizes, no crop, and the refiner's aesthetic scores 6 and 2.5. */
typedef struct kiln_sdxl_cond {
    int width, height;               /* the "original size" the picture claims; 0: the output size */
    int crop_w, crop_h;              /* the crop's left and top */
    int target_width, target_height; /* the size asked for (the base's); 0: the output size */
    double aesthetic, negative_aesthetic; /* the refiner's, on the positive and negative prompt (ComfyUI's
                                             defaults: 6 and 2.5; set both where this struct is given) */
} kiln_sdxl_cond;

/* FluxGuidance's default, and the guidance Flux dev embeds for a prompt
 * without that node. */
#define KILN_FLUX_GUIDANCE 3.5

/* ReferenceLatent nodes on one prompt (kiln_ksampler_params.reference). */
#define KILN_MAX_REFERENCES 8

/* Where ComfyUI's Flux puts a prompt's reference latents among the image
 * positions (FluxKontextMultiReferenceLatentMethod's reference_latents_method). */
typedef enum kiln_reference_method {
    KILN_REFERENCE_OFFSET, /* "offset", the default: all at index 1, each beside or below the ones before */
    KILN_REFERENCE_INDEX,  /* "index": each at an index of its own (1, 2, ...), none moved */
    KILN_REFERENCE_UXO,    /* "uxo/uno": index 0, each past the latent and the ones before on both axes */
} kiln_reference_method;

/* A method by ComfyUI's name ("offset", "index", "uxo/uno" or "uxo");
 * KILN_ERR_INVALID_ARG naming the choices for another. */
kiln_status kiln_reference_method_from_name(const char *name, kiln_reference_method *out);

/* SkipLayerGuidanceSD3 / SkipLayerGuidanceDiT on an SD3 or Flux model:
 * while the sampling is between start_percent and end_percent, each step
 * also runs the positive prompt's rows with these blocks left out and adds
 * scale times (the plain prediction - that one) to the guided x0; then,
 * with rescaling_scale r, scales it by r std(positive) / std(result) + 1 - r
 * (0: not). Block indices at most 63. With uncond_only, SkipLayerGuidanceDiTSimple:
 * no pass of its own, the negative prompt's rows themselves run without the
 * blocks on those steps (scale and rescaling_scale unused). */
typedef struct kiln_skip_layer_guidance {
    const int *double_layers; /* SD3's joint blocks, Flux's double blocks */
    int double_count;
    const int *single_layers; /* Flux's single blocks */
    int single_count;
    double scale, start_percent, end_percent, rescaling_scale;
    bool uncond_only;
} kiln_skip_layer_guidance;

/* FreeU and FreeU_V2 on an SD 1.x/2.x/XL UNet (ComfyUI's nodes): in the
 * decoder, where a block's input has 4 x the model's base channels (1280 in
 * SD 1.x/XL), the first half of those channels is scaled by b1 and the skip
 * it joins has its lowest frequencies scaled by s1 (kiln's fourier_filter
 * op); where it has 2 x (640), b2 and s2. With v2 the channels are scaled
 * by (b - 1) m + 1 instead, m each pixel's mean over the channels rescaled
 * to [0, 1] over the image. A UNet whose decoder has neither width is left
 * as it is, as ComfyUI leaves it. Each value in [0, 10]; the nodes' defaults
 * are 1.1, 1.2, 0.9, 0.2 (FreeU) and 1.3, 1.4, 0.9, 0.2 (FreeU_V2). */
typedef struct kiln_freeu {
    double b1, b2, s1, s2;
    bool v2;
} kiln_freeu;

/* PatchModelAddDownscale ("Kohya Deep Shrink", ComfyUI's node) on an SD
 * 1.x/2.x/XL UNet: while the sampling's sigma is within [start_percent,
 * end_percent] of the schedule (as percent_to_sigma reads them), the UNet's
 * activations after input block `block_number` (ComfyUI's count: 0 is
 * conv_in; SD 1.x and XL have 12 and 9, the default 3 is the first
 * downsampler) are resized to round(H / downscale_factor) x round(W /
 * downscale_factor) with downscale_method, after that block's skip is kept
 * (downscale_after_skip) or before; in the decoder an input of another
 * height than the skip it joins is resized to the skip's with
 * upscale_method. The blocks below run on fewer pixels: a large picture
 * keeps the composition the model learnt at its own size. Methods
 * "bicubic" (the node's default), "bilinear", "nearest-exact", "area"; NULL:
 * bicubic. With FreeU, the resize comes first (as a FreeU node after this
 * one in ComfyUI). ControlNet residuals and T2I-Adapter features that meet
 * a block it made smaller are left out (ComfyUI's apply_control leaves
 * them out). Not with SelfAttentionGuidance (not yet). */
typedef struct kiln_deep_shrink {
    int block_number;        /* 1 to 32 */
    double downscale_factor; /* 0.1 to 9 */
    double start_percent, end_percent;
    bool downscale_after_skip;
    const char *downscale_method, *upscale_method;
} kiln_deep_shrink;

/* HyperTile (ComfyUI's node) on an SD 1.x/2.x/XL UNet: the self-attention
 * of every transformer block on the first max_depth + 1 levels (0: the
 * full-size one alone; SDXL has no transformers there) attends in tiles,
 * fewer keys per query, faster on large pictures. On a level of H' x W'
 * latent pixels the tokens are read as a grid of W' rows of H' (as ComfyUI
 * reads them: the sides swapped where the picture is not square), and each
 * side is cut into n tiles for the first of its divisors d from
 * max(32, tile_size) / 8 up (times 2^level with scale_depth) that gives
 * side / d = n, or, with swap_size above 2, one of the first swap_size - 1
 * such n drawn per block and call from torch's generator as ComfyUI draws
 * them (seeded by the noise's seed, after the noise). Each tile's queries
 * attend to one run of as many consecutive tokens as the tile holds (the
 * keys ComfyUI's attention pairs with them). tile_size 1 to 2048 (the
 * node's default 256), swap_size 1 to 128 (2), max_depth 0 to 10 (0). */
typedef struct kiln_hypertile {
    int tile_size, swap_size, max_depth;
    bool scale_depth;
} kiln_hypertile;

/* EasyCache and LazyCache (ComfyUI's nodes): a step whose model output is
 * predicted to change little reuses the last computed step's change (output
 * minus input) on the new input instead of running the model. From
 * start_percent to end_percent of the sampling (a step's sigma at or below
 * start's and above end's) each step adds to a sum the change of the input
 * since the last computed step times the last measured ratio of output change
 * to input change, over the last output's mean magnitude (each change the
 * mean absolute difference at every 8th latent pixel each way); while the
 * sum stays below reuse_threshold the step is skipped, else it runs and the
 * sum restarts at 0. EasyCache measures the diffusion model's own input and
 * output (ComfyUI's first call of a step: the negative prompt's rows where
 * ComfyUI batches both prompts, else the positive's) and skips all of the
 * step's model calls; LazyCache the sampler's latent and the guided
 * prediction, skipping the step whole (passes of PerturbedAttentionGuidance
 * and its kin too). reuse_threshold 0 to 3 (the nodes' default 0.2),
 * 0 <= start_percent <= end_percent <= 1 (0.15, 0.95). */
typedef enum kiln_step_cache_kind { KILN_EASY_CACHE = 1, KILN_LAZY_CACHE } kiln_step_cache_kind;
typedef struct kiln_step_cache {
    kiln_step_cache_kind kind;
    double reuse_threshold, start_percent, end_percent;
} kiln_step_cache;

/* FreSca's settings (ComfyUI's node): before the guidance, the guidance
 * direction (positive minus negative x0 prediction) of each image scaled by
 * scale_high but for its frequencies within freq_cutoff of zero on both
 * axes, scaled by scale_low. scale_low and scale_high 0 to 10 (the node's
 * 1 and 1.25), freq_cutoff 1 to 10000 (20). */
typedef struct kiln_fresca {
    double scale_low, scale_high;
    int freq_cutoff;
} kiln_fresca;

/* SelfAttentionGuidance's settings: scale -2 to 5 (not 0; the node's
 * default 0.5), blur_sigma above 0 to 10 (the node's default 2; the std of
 * its 9x9 Gaussian blur in latent pixels). */
typedef struct kiln_sag {
    double scale, blur_sigma;
} kiln_sag;

/* SIGMAS: the noise levels a sampling walks, first to last (ComfyUI's
 * SIGMAS, usually falling to 0), for kiln_ksampler_params.sigmas. The
 * scheduler nodes below make them as ComfyUI's do, float32 as torch
 * computes them; each *out is new (kiln_sigmas_free). Steps run 1 .. 10000. */
typedef struct kiln_sigmas {
    float *values; /* owned; NULL when count is 0 */
    int count;
} kiln_sigmas;
void kiln_sigmas_free(kiln_sigmas *s);

/* ManualSigmas: the numbers in text as ComfyUI's node finds them (each
 * run of a sign, digits, dots and digits: "14.6, 3.3, 0" is three), as
 * float32. Errors: KILN_ERR_INVALID_ARG naming a run that is no number
 * ("1..5"). */
kiln_status kiln_manual_sigmas(const char *text, kiln_sigmas *out);
/* BasicScheduler: KSampler's schedule of the model's noise table by
 * `scheduler` ("normal", "karras", ...); with denoise < 1 the last steps + 1
 * of the schedule for int(steps / denoise) steps (denoise 0: none). Unlike
 * KSampler's, never a step longer for dpm_2 or uni_pc. */
kiln_status kiln_basic_scheduler(const kiln_model *m, const char *scheduler, int steps, double denoise,
                                 kiln_sigmas *out);
/* SDTurboScheduler (SD-Turbo, SDXL-Turbo): the model's sigmas at timesteps
 * 999, 899, ..., 99 from the (10 - int(10 denoise))-th on, `steps` (1 .. 10)
 * of them at most, then 0. */
kiln_status kiln_sd_turbo_scheduler(const kiln_model *m, int steps, double denoise, kiln_sigmas *out);
/* BetaSamplingScheduler: the noise table's entries at the Beta(alpha, beta)
 * quantiles ("beta" is 0.6, 0.6), each once, then 0; alpha and beta in
 * (0, 50]. */
kiln_status kiln_beta_sampling_scheduler(const kiln_model *m, int steps, double alpha, double beta,
                                         kiln_sigmas *out);
/* AlignYourStepsScheduler: NVIDIA's Align Your Steps noise levels for
 * model_type "SD1", "SDXL" or "SVD" (ten steps), log-linearly interpolated
 * to `steps`; with denoise < 1 the last round(steps x denoise) + 1 (denoise
 * 0: none); the last one 0. */
kiln_status kiln_align_your_steps_scheduler(const char *model_type, int steps, double denoise, kiln_sigmas *out);
/* OptimalStepsScheduler: OptimalSteps' noise levels for model_type "FLUX",
 * "Wan" or "Chroma" (steps from 3), as Align Your Steps'. */
kiln_status kiln_optimal_steps_scheduler(const char *model_type, int steps, double denoise, kiln_sigmas *out);
/* KarrasScheduler: sigma^(1/rho) linear from sigma_max to sigma_min, then 0
 * (sigmas in [0, 5000], rho in (0, 100]; the node's defaults 14.614642,
 * 0.0291675 and 7 are SD 1.x's "karras"). */
kiln_status kiln_karras_scheduler(int steps, double sigma_max, double sigma_min, double rho, kiln_sigmas *out);
/* ExponentialScheduler: log sigma linear from sigma_max to sigma_min, then 0
 * (sigmas in (0, 5000]). */
kiln_status kiln_exponential_scheduler(int steps, double sigma_max, double sigma_min, kiln_sigmas *out);
/* PolyexponentialScheduler: log sigma from sigma_max to sigma_min along
 * ramp^rho (rho 1: exponential's, but for rounding), then 0 (sigmas in
 * (0, 5000], rho in [0, 100]). */
kiln_status kiln_polyexponential_scheduler(int steps, double sigma_max, double sigma_min, double rho,
                                           kiln_sigmas *out);
/* LaplaceScheduler: `steps` sigmas from the Laplace(mu, beta) quantiles of
 * log sigma, clamped to [sigma_min, sigma_max], and no 0 after them (as
 * ComfyUI's: the sampling ends at sigma_min). Sigmas in [0, 5000], mu in
 * [-10, 10], beta in [0, 10]. */
kiln_status kiln_laplace_scheduler(int steps, double sigma_max, double sigma_min, double mu, double beta,
                                   kiln_sigmas *out);
/* VPScheduler: the variance-preserving SDE's sigmas,
 * sqrt(e^(beta_d t^2 / 2 + beta_min t) - 1) for t from 1 to eps_s, then 0
 * (beta_d, beta_min in [0, 5000], eps_s in [0, 1]). */
kiln_status kiln_vp_scheduler(int steps, double beta_d, double beta_min, double eps_s, kiln_sigmas *out);
/* SplitSigmas: high the first step + 1, low those from step on (the one at
 * step in both; Python's slices, so either may be empty). */
kiln_status kiln_sigmas_split(const kiln_sigmas *s, int step, kiln_sigmas *high, kiln_sigmas *low);
/* SplitSigmasDenoise: with k = round((count - 1) x denoise), low the last
 * k + 1 and high all but the last k (denoise 0: high empty, as ComfyUI's
 * slice gives). */
kiln_status kiln_sigmas_split_denoise(const kiln_sigmas *s, double denoise, kiln_sigmas *high, kiln_sigmas *low);
/* FlipSigmas: the sigmas in reverse order, a first 0 made 0.0001 (for
 * unsampling a picture back to noise). */
kiln_status kiln_sigmas_flip(const kiln_sigmas *s, kiln_sigmas *out);
/* ExtendIntermediateSigmas: between each sigma in [end_at_sigma,
 * start_at_sigma] (start below 0: no upper end) and the next, steps - 1
 * more (1 .. 100 steps), spaced "linear", "cosine" (denser near the next)
 * or "sine" (denser near this one). */
kiln_status kiln_sigmas_extend(const kiln_sigmas *s, int steps, double start_at_sigma, double end_at_sigma,
                               const char *spacing, kiln_sigmas *out);
/* SetFirstSigma: the sigmas with the first one `sigma` (at least 0). */
kiln_status kiln_sigmas_set_first(const kiln_sigmas *s, double sigma, kiln_sigmas *out);
/* SamplingPercentToSigma: the sigma at which `percent` (0 .. 1) of the
 * model's sampling is done, as ComfyUI's model_sampling.percent_to_sigma
 * gives it (0: a sigma above any schedule's, 999999999.9, or 1 for flow
 * models; 1: 0); with `actual`, 0 and 1 give the model's largest and least
 * sigmas instead. */
kiln_status kiln_sampling_percent_to_sigma(const kiln_model *m, double percent, bool actual, double *sigma);
/* AddNoise: `latent` with the noise of `seed` (RandomNoise's; none with
 * no_noise, DisableNoise) added at the sigma of `sigmas` (the difference of
 * its first and last, or its one), as the model's sampling adds it (sigma
 * times the noise plus the latent, or for flow models sigma times the
 * noise plus 1 - sigma times it), in the model's latent space (the latent
 * format applied to a latent that is not all zeros, and undone after);
 * without sigmas the latent as it is. *out is new, with latent's noise
 * mask, concat latent and places. */
kiln_status kiln_add_noise(const kiln_model *m, uint64_t seed, bool no_noise, const kiln_sigmas *sigmas,
                           const kiln_latent *latent, kiln_latent *out);

/* The custom sampler nodes' settings (SamplerEulerAncestral,
 * SamplerEulerAncestralCFGPP, SamplerDPMPP_2S_Ancestral, SamplerDPMPP_SDE,
 * SamplerDPMPP_2M_SDE, SamplerDPMPP_3M_SDE, SamplerLMS, SamplerER_SDE,
 * SamplerSEEDS2, SamplerSASolver): how much noise an ancestral or SDE
 * sampler adds back each step, eta (0: none, the deterministic solver; sa_solver's
 * tau), and the scale of that noise, s_noise, both in [0, 100]; lms's order,
 * 1 .. 4 (0: 4). KSampler's are 1, 1 and 4. Zeroes in the fields after
 * lms_order are KSampler's too. */
typedef struct kiln_sampler_options {
    double eta, s_noise;
    int lms_order;
    /* er_sde's solver_type (SamplerER_SDE): "ER-SDE" (NULL), "Reverse-time SDE" or "ODE"; seeds_2's
       (SamplerSEEDS2): "phi_1" (NULL) or "phi_2" */
    const char *solver_type;
    int max_stage;     /* er_sde's order, 1 .. 3 (0: 3) */
    double r;          /* seeds_2's intermediate stage, a fraction of the step in (0, 1] (0: 0.5) */
    /* SamplerSASolver's: when sa_solver_custom, the part of the sampling its noise acts on, its predictor's
       order (1 .. 6) and corrector's (0 .. 6) and simple_order_2 (else 0.2 to 0.8, 3 and 4, no); its use_pece
       is the sampler sa_solver_pece */
    bool sa_solver_custom;
    double sde_start_percent, sde_end_percent;
    int predictor_order, corrector_order;
    bool simple_order_2;
    /* SamplerDPMAdaptative's: when dpm_adaptive_custom, dpm_adaptive's order (2 or 3), the error's relative and
       absolute tolerances, the first step (in -log sigma), the step size controller's PID coefficients, the
       factor at which a step is taken, and eta and s_noise above (else KSampler's: 3, 0.05, 0.0078, 0.05, 0, 1,
       0, 0.81 and eta 0). Its noise continues the seed's torch.randn stream after the latent's noise, as
       ComfyUI on the CPU draws it */
    bool dpm_adaptive_custom;
    int order;
    double rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety;
    /* SamplerEulerCFGpp's version "alternative" (euler_cfg_pp only): the Euler step x + (sigma_next - sigma)
       ((x - denoised + uncond) - denoised) / sigma, the guided x0 prediction denoised, the unconditional one
       uncond (ComfyUI's sample_euler_pp); false: its "regular" one */
    bool euler_cfg_pp_alternative;
} kiln_sampler_options;

typedef struct kiln_ksampler_params {
    uint64_t seed;         /* the noise is ComfyUI's for this seed (torch.randn on the CPU) */
    int steps;
    double cfg;
    const char *sampler_name; /* ComfyUI's: "euler", "euler_ancestral", "dpmpp_2m", "uni_pc", ... */
    const char *scheduler;    /* ComfyUI's: "normal", "karras", "exponential", "sgm_uniform", "simple", ... */
    double denoise;           /* 1: all of the schedule (txt2img); less keeps that much of the latent's picture */
    /* ControlNetApplyAdvanced nodes chained on both prompts: control[0 .. control_count), in the order applied
       (ComfyUI adds each one's residuals to those before). control_count 0 with control set: one;
       control NULL: none */
    const kiln_control_apply *control;
    int control_count;
    /* IPAdapterAdvanced nodes chained on the model: ip_adapter[0 .. ip_adapter_count), in the order applied
       (each adds its attention after the ones before). ip_adapter_count 0 with ip_adapter set: one; ip_adapter
       NULL: none */
    const kiln_ip_adapter_apply *ip_adapter;
    int ip_adapter_count;
    const kiln_latent *edit_latent;    /* InstructPix2Pix models and FLUX.1 Canny/Depth (and only they): kiln_vae_encode
                                          of the picture to edit, or the edge or depth map (batch 1); the sampling
                                          starts from latent_image, an empty one */
    const kiln_sdxl_cond *sdxl;        /* SDXL base and refiner: NULL: CLIPTextEncode's numbers */
    const kiln_sdxl_cond *negative_sdxl; /* the negative prompt's sizes, crop and target where they are its own
                                            (CLIPTextEncodeSDXL on it with other numbers); NULL: sdxl's. The
                                            refiner's scores are sdxl's aesthetic and negative_aesthetic */
    /* KSamplerAdvanced (all 0: KSampler): only the schedule's steps from start_at_step to end_at_step run (0:
       to the end); a run cut short keeps its leftover noise if asked (for another pass to finish, e.g. SDXL's
       refiner), else ends at sigma 0; with disable_noise the latent goes in as it is, already noisy */
    int start_at_step, end_at_step;
    bool leftover_noise, disable_noise;
    kiln_progress_fn progress;         /* NULL: none */
    void *progress_ctx;
    /* Flux dev and Chroma: FluxGuidance on the positive prompt (0: dev's default 3.5, Chroma's 0; below 0: none,
       FluxDisableGuidance, the dev model's guidance embedding left out) */
    double flux_guidance;
    double negative_flux_guidance; /* ... and on the negative prompt (0: as a prompt without FluxGuidance) */
    /* DifferentialDiffusion on the model, for a latent with a noise mask: each step repaints where the mask is
       at least the part of the schedule still ahead, so a soft mask's grey repaints only late; its strength
       blends that 0/1 mask with the mask (1: the node's; 0: none) */
    double differential_diffusion;
    /* RescaleCFG on the model (0 to 1; 0: none): the guidance done in v-prediction space, the guided
       prediction's std brought to the positive one's and blended with the plain guided one by this much */
    double rescale_cfg;
    /* CFGZeroStar on the model: after the guidance, the unconditional prediction's share scaled per image by
       alpha = <x - cond, x - uncond> / |x - uncond|^2 (the predictions' noise parts) */
    bool cfg_zero_star;
    /* APG (Adaptive Projected Guidance) on the model, before the guidance: the guidance cond - uncond (with
       momentum its running average, restarted where the sigma rises), its norm per image cut to norm_threshold
       (0: not), its part along the conditional prediction times eta; apg false: none */
    bool apg;
    double apg_eta, apg_norm_threshold, apg_momentum;
    /* TCFG (Tangential Damping CFG) on the model, before the guidance (and before APG): per image the
       unconditional prediction's noise x - uncond cut to its part along the first right singular vector of
       [x - uncond; x - cond] */
    bool tcfg;
    /* The post-CFG patches after CFGZeroStar, in this order (kiln's; ComfyUI's is that of the nodes): Mahiro
       (the guided prediction pulled toward cfg x cond by the similarity of sqrt-scaled cfg x uncond and their
       mean), CFGNorm's strength (0: none; each pixel's guided prediction times strength x min(1, |cond| /
       |guided|) over the channels) and Epsilon Scaling's factor (0: none; 0.5 to 1.5, the node's default
       1.005: the noise the guided prediction implies divided by it). The last two act at cfg 1 too */
    bool mahiro;
    double cfg_norm, epsilon_scaling;
    /* ReferenceLatent on the positive and on the negative prompt (FLUX.1 Kontext; at most KILN_MAX_REFERENCES
       each): kiln_vae_encode's latents of
       the pictures (batch 1 each), beside the latent in every call of that prompt's rows. reference_count 0
       with reference set: one; reference NULL: none */
    const kiln_latent *reference;
    int reference_count;
    const kiln_latent *negative_reference;
    int negative_reference_count;
    kiln_reference_method reference_method, negative_reference_method; /* where each prompt's go */
    const kiln_skip_layer_guidance *skip_layer_guidance; /* NULL: none */
    /* ConditioningSetTimestepRange and ConditioningCombine: the positive and negative prompts as parts over the
       sampling, in place of kiln_ksampler's positive and negative (then NULL); counts 0: those */
    const kiln_conditioning_part *positive_parts, *negative_parts;
    int positive_part_count, negative_part_count;
    /* SamplerCustom's SIGMAS: the sampling walks these (none: the latent comes back as it is), and steps,
       scheduler, denoise and KSamplerAdvanced's cut are not used; NULL: KSampler's schedule */
    const kiln_sigmas *sigmas;
    const kiln_sampler_options *sampler_options; /* NULL: KSampler's (eta 1, s_noise 1) */
    /* SamplerCustom's denoised_output: if not NULL, receives a new latent of the output's size, the model's x0
       prediction at the last step (the guided one, as the sampler's callback sees it); a copy of the output when
       no step runs */
    kiln_latent *denoised_output;
    /* DualCFGGuider: a third prompt, cond2 (the node's cond1 is the positive prompt): the positive guided from
       cond2 at cfg (cfg_conds) added to cond2 guided from the negative at cfg_cond2_negative (style "regular"),
       or with dual_cfg_nested ("nested") the positive guided from cond2 at cfg, then that guided from the
       negative at cfg_cond2_negative; NULL: none */
    const kiln_conditioning *dual_cfg_cond2;
    double cfg_cond2_negative;
    bool dual_cfg_nested;
    /* PerpNegGuider: the empty prompt's prediction e is the base, and the negative prompt's guidance is kept only
       across the positive's: e + cfg (p - perp_neg_scale (q - <q, p> / |p|^2 p)) with p, q the positive's and
       negative's predictions less e (the products over the whole batch); NULL: none */
    const kiln_conditioning *perp_neg_empty;
    double perp_neg_scale;
    const kiln_freeu *freeu; /* FreeU or FreeU_V2 on the model (a UNet's); NULL: none */
    /* PerturbedAttentionGuidance on the model (a UNet's; 0 to 100, 0: none): each step also runs the positive
       prompt with the UNet's middle block's self-attention perturbed (each token's values alone) and adds this
       times (the positive x0 prediction - that one) to the guided one */
    double pag_scale;
    /* SelfAttentionGuidance on the model (a UNet's; NULL: none): each step also blurs the negative prompt's x0
       prediction where the middle block's first self-attention of those rows attends more than on average,
       denoises that (renoised) with the negative prompt, and adds scale times (blurred - that) to the guided
       prediction (ComfyUI's node; at cfg 1 the negative prompt runs too). Not with ControlNets, IP-Adapters,
       SkipLayerGuidance, PerturbedAttentionGuidance, areas, prompts in parts or three-prompt guiders */
    const kiln_sag *sag;
    const kiln_deep_shrink *deep_shrink; /* PatchModelAddDownscale on the model (a UNet's); NULL: none */
    const kiln_hypertile *hypertile;     /* HyperTile on the model (a UNet's); NULL: none */
    /* HypernetworkLoader on the model (a UNet's), each applied to what the one before gave, as ComfyUI chains
       them (0..KILN_MAX_HYPERNETWORKS; 0: none) */
    const kiln_hypernetwork *const *hypernetworks;
    int hypernetwork_count;
    /* LatentApplyOperationCFG on the model (NULL: none): before the guidance (and TCFG and APG), the positive
       prediction made operation(positive - negative) + negative; at cfg 1 operation(positive) */
    const kiln_latent_operation *cfg_operation;
    /* EasyCache or LazyCache on the model (NULL: none); not with prompts in parts or areas or three-prompt
       guiders, nor EasyCache with SkipLayerGuidance, PerturbedAttentionGuidance or SelfAttentionGuidance */
    const kiln_step_cache *step_cache;
    int *steps_skipped; /* where given, set to the steps the cache skipped */
    /* FreSca on the model (NULL: none): the first of the pre-CFG patches (before LatentApplyOperationCFG, TCFG
       and APG) */
    const kiln_fresca *fresca;
    /* PixArt-alpha's 1024 model: the picture size (pixels) it embeds for the positive and the negative prompt, as
       CLIPTextEncodePixArtAlpha's width and height give it (0: the picture's own) */
    double pixart_width, pixart_height, negative_pixart_width, negative_pixart_height;
} kiln_ksampler_params;

/* KSampler: from the latent (kiln_empty_latent's; kiln_vae_encode's for
 * img2img; kiln_vae_encode_for_inpaint's, whose noise mask keeps what is
 * not masked) to a new latent of the same size, guided by the two prompts
 * (or params' parts of them).
 * The result has no noise mask. An inpainting model needs a latent with a
 * noise mask, an InstructPix2Pix model an edit_latent. */
kiln_status kiln_ksampler(kiln_model *m, const kiln_ksampler_params *params, const kiln_conditioning *positive,
                          const kiln_conditioning *negative, const kiln_latent *latent_image, kiln_latent *out);

/* A ComfyUI workflow in the API format (the UI's "Save (API)", or a /prompt
 * request body with it under "prompt"), run node by node through the calls
 * above: only what its SaveImage and PreviewImage nodes need, each node
 * once. The nodes kiln runs: CheckpointLoaderSimple, UNETLoader,
 * DualCLIPLoader, CLIPLoader, VAELoader, LoraLoader, LoraLoaderModelOnly,
 * CLIPSetLastLayer, CLIPTextEncode, CLIPTextEncodeSDXL,
 * CLIPTextEncodeSDXLRefiner, CLIPTextEncodeFlux, FluxGuidance,
 * ModelSamplingDiscrete, ModelSamplingFlux, DifferentialDiffusion, RescaleCFG, CFGZeroStar, APG, FreeU, FreeU_V2,
 * PerturbedAttentionGuidance, SelfAttentionGuidance, PatchModelAddDownscale, HyperTile, HypernetworkLoader,
 * ModelSamplingContinuousEDM, EmptyLatentImage, EmptySD3LatentImage, LoadImage, VAEEncode,
 * VAEEncodeTiled, KSampler, KSamplerAdvanced, SamplerCustomAdvanced with
 * RandomNoise, DisableNoise, CFGGuider, BasicGuider, DualCFGGuider, PerpNegGuider and KSamplerSelect, PerpNeg,
 * SamplerCustom, the SIGMAS nodes above (ManualSigmas ... SetFirstSigma), ConditioningSetMask,
 * ConditioningSetArea, ConditioningSetAreaPercentage, ConditioningSetAreaStrength,
 * SamplerEulerAncestral, SamplerDPMPP_2S_Ancestral, SamplerDPMPP_SDE,
 * SamplerDPMPP_2M_SDE, SamplerDPMPP_3M_SDE, SamplerLMS,
 * SamplerEulerAncestralCFGPP, SamplerER_SDE, SamplerSEEDS2, SamplerSASolver, SamplerDPMAdaptative,
 * VAEDecode, VAEDecodeTiled, ControlNetLoader,
 * ControlNetApplyAdvanced, ControlNetApply, SetUnionControlNetType, IPAdapterModelLoader, CLIPVisionLoader,
 * StyleModelLoader, CLIPVisionEncode, StyleModelApply, ReferenceLatent, ConditioningZeroOut,
 * FluxKontextImageScale, LoadFluxIPAdapter, ApplyFluxIPAdapter,
 * IPAdapterAdvanced, LoadImageMask, SolidMask, ImageToMask, MaskToImage, InvertMask, ThresholdMask,
 * CropMask, MaskComposite, FeatherMask, GrowMask, SetLatentNoiseMask, VAEEncodeForInpaint,
 * InpaintModelConditioning, ImagePadForOutpaint,
 * InstructPixToPixConditioning, LatentUpscaleBy, RepeatLatentBatch, LatentFromBatch,
 * LatentComposite, LatentCompositeMasked, LatentBlend, LatentAdd, LatentSubtract, LatentMultiply,
 * LatentInterpolate, LatentBatch, LatentCrop, LatentFlip, LatentRotate,
 * UpscaleModelLoader, ImageUpscaleWithModel, ImageScale, ImageScaleBy,
 * ImageScaleToTotalPixels, ImageBatch, ImageCrop, RepeatImageBatch, ImageCompositeMasked, EmptyImage,
 * ImageInvert, ImageBlend, ImageBlur, ImageSharpen, ImageFlip, ImageRotate,
 * ImageFromBatch, SaveImage, PreviewImage (and the
 * Primitive nodes, whose values stand in for the links to them, as do the
 * outputs of GetImageSize, StringConcatenate, StringSubstring,
 * StringReplace, StringTrim, StringLength, StringContains, StringCompare and
 * CaseConverter); any other is refused by its
 * id and name. */
typedef struct kiln_workflow_options {
    /* where the file names in the workflow (ckpt_name, lora_name, ...) are
       looked up when they are not paths: in each folder's subfolder for the
       kind as ComfyUI's models folder has them (checkpoints/, loras/,
       controlnet/, upscale_models/; input/ for LoadImage), then in the folder */
    const char *const *model_dirs;
    int nmodel_dirs;
    kiln_progress_fn progress; /* every KSampler's steps; NULL: none */
    void *progress_ctx;
    /* what no ComfyUI node names, for checkpoints whose file lacks it (kiln_model_parts):
       T5's spiece.model and a diffusers folder of configs; NULL: none */
    const char *tokenizer, *config;
    /* where the prompts' embedding:NAME are looked up (kiln_model_set_embeddings); NULL: the first
       models folder's embeddings/ that is there, as ComfyUI's models/embeddings */
    const char *embeddings;
    /* where CheckpointSave nodes write (their filename_prefix under it, ComfyUI's _00001_ counter: the first
       name not taken), and what is told each file written; NULL: a workflow's CheckpointSave is refused */
    const char *output_dir;
    void (*wrote)(void *ctx, const char *path);
    void *wrote_ctx;
} kiln_workflow_options;

/* The output nodes' images (SaveImage's, PreviewImage's), in the order of
 * their node ids, into *images (*count of them; free with
 * kiln_images_free); CheckpointSave's files written (output_dir). */
kiln_status kiln_workflow_run(kiln_backend *be, const char *json, const kiln_workflow_options *options,
                              kiln_image **images, int *count);
void kiln_images_free(kiln_image *images, int count);

#ifdef __cplusplus
}
#endif
#endif
