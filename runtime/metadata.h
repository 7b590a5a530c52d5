/* The PNG text that says how an image was made, in the two forms people's
 * tools read:
 *  - `parameters`: AUTOMATIC1111's infotext, shown by its PNG Info tab, by
 *    Civitai and by most image browsers;
 *  - `prompt`: a ComfyUI API-format workflow equivalent to the run, which
 *    ComfyUI loads when the image is dropped on it.
 * Sampler and scheduler names are ComfyUI's throughout. */
#ifndef KILN_METADATA_H
#define KILN_METADATA_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln.h"
#include "inpaint.h"
#include "lora.h"

typedef struct kiln_sdxl_cond kiln_sdxl_cond; /* pipeline.h */

/* One Apply ControlNet of a run. */
typedef struct kiln_run_control {
    const char *path;  /* the ControlNet's */
    const char *image; /* its hint image's */
    double strength, start, end;
    const char *union_type; /* SetUnionControlNetType's type after the loader; NULL: none */
    const char *mask;       /* ControlNetInpaintingAliMamaApply's mask picture (LoadImageMask, red); NULL: none */
    double canny_low, canny_high; /* a Canny node between the picture and the apply node; 0: none */
} kiln_run_control;

/* One HypernetworkLoader of a run. */
typedef struct kiln_run_hypernetwork {
    const char *path;
    double strength;
} kiln_run_hypernetwork;

/* One IPAdapterAdvanced of a run. */
typedef struct kiln_run_image_prompt {
    const char *adapter;     /* the IP-Adapter's path */
    const char *clip_vision; /* the CLIP vision model's */
    const char *image;       /* the picture's */
    double weight, start, end; /* its weight and the part of the schedule it acts on */
    /* more pictures after image (at most KILN_RUN_MAX_MORE_PICTURES), joined to it by ImageBatch nodes (LoadImage
       and ImageBatch from "300" on, 20 ids an adapter); 0: none */
    const char *const *more_images;
    int nmore_images;
} kiln_run_image_prompt;
#define KILN_RUN_MAX_MORE_PICTURES 9

/* One FLUX.1 Redux of a run (CLIPVisionEncode "center", StyleModelApply
 * "multiply" on the positive prompt). */
typedef struct kiln_run_style {
    const char *style_model; /* the Redux file's path */
    const char *clip_vision; /* the SigLIP tower's */
    const char *image;       /* the picture's */
    double strength;
} kiln_run_style;

/* Redux units a run records (node ids for each) */
#define KILN_RUN_MAX_STYLES 8

/* A prompt on a box of the picture (ConditioningSetArea: pixels, floored to
 * latent pixels, and its strength), combined with the positive prompt. */
typedef struct kiln_run_area {
    const char *prompt;
    int x, y, width, height;
    double strength;
} kiln_run_area;

typedef struct kiln_run_info {
    const char *model;           /* checkpoint path or file name; only its base name is recorded */
    const kiln_model_parts *parts; /* the files given beside it (VAELoader "35", DualCLIPLoader or CLIPLoader
                                      "36"; "4" a UNETLoader where they give both), NULL for none */
    const char *family;          /* the model's (kiln_model_info's): the CLIP loader's type ("flux", "sdxl",
                                    "pixart", "chroma", else "stable_diffusion") */
    const char *prompt;          /* UTF-8 */
    const char *negative_prompt; /* NULL or "" for none */
    /* the negative prompt over the sampling's first part only, zeroed after (SD3's example workflows:
       ConditioningZeroOut, ConditioningSetTimestepRange, ConditioningCombine, "74" to "77"); 0: all of it */
    double negative_until;
    const kiln_run_area *areas; /* CLIPTextEncode "300" + 3i, ConditioningSetArea "301" + 3i and
                                   ConditioningCombine "302" + 3i after the positive prompt each */
    int nareas;
    const char *prompt_l, *negative_prompt_l; /* SDXL: CLIP-L's texts where they differ (text_l); NULL: the prompts */
    int steps;
    const char *sampler;   /* ComfyUI name: "euler", "dpmpp_2m", ... */
    const char *scheduler; /* ComfyUI name: "normal", "karras", ... */
    const char *sigmas;    /* the noise levels walked in place of the scheduler's (ManualSigmas' text, steps + 1
                              numbers: SamplerCustom with KSamplerSelect "78" and ManualSigmas "79"); NULL: none */
    double cfg;
    int pixart_width, pixart_height; /* CLIPTextEncodePixArtAlpha's size on the positive prompt ("6"); 0: none */
    double flux_guidance; /* Flux dev's FluxGuidance on the positive prompt ("30"), 0 for none; -1:
                             FluxDisableGuidance there */
    uint64_t seed;
    int width, height; /* of the output image, in pixels */
    int batch_size;
    int clip_skip;          /* 1 = the last CLIP layer (no skip), 2 = the one before, ... */
    /* T5TokenizerOptions "37" on the text encoders (after any CLIPSetLastLayer) with these values; false: none */
    bool t5_options;
    int t5_min_padding, t5_min_length;
    const char *prediction; /* "eps", "v" or "lcm" where the run forced it (ModelSamplingDiscrete), NULL where the
                               model's own was used */
    bool zsnr;              /* ModelSamplingDiscrete's zsnr (with prediction) */
    const char *edm;        /* ModelSamplingContinuousEDM's sampling in its place, with these sigmas; NULL: none */
    double edm_sigma_max, edm_sigma_min;
    int model_clip_skip;    /* the layer the model reads unless told (SD 2.x: 2); 0 reads as 1. The
                               workflow has CLIPSetLastLayer where clip_skip differs from it */
    double denoise;         /* in (0, 1]; 1 for txt2img */
    const char *init_image; /* img2img source image (path or name), NULL for txt2img */
    const kiln_lora *loras; /* merged into the model, in order; paths recorded by base name */
    int nloras;
    const char *mask;          /* inpainting: the mask image (with init_image), NULL for none */
    const char *mask_channel;  /* its LoadImageMask channel ("red", "green", "blue", "alpha"); NULL: red */
    const kiln_outpaint *outpaint; /* outpainting: the pads (with init_image, no mask), NULL for none */
    bool instruct_pix2pix;     /* init_image is the picture an InstructPix2Pix model edits */
    bool inpaint_model;        /* the UNet is an inpainting one (VAEEncodeForInpaint, else SetLatentNoiseMask) */
    bool inpaint_conditioning; /* FLUX.1 Fill: InpaintModelConditioning "55" in place of VAEEncodeForInpaint */
    double differential;       /* DifferentialDiffusion's strength (with a mask or outpaint); 0: none */
    double rescale_cfg;        /* RescaleCFG's multiplier; 0: none */
    bool cfg_zero_star;        /* CFGZeroStar */
    bool apg;                  /* APG "85" with these settings */
    double apg_eta, apg_norm_threshold, apg_momentum;
    bool tcfg, mahiro;         /* TCFG "88", Mahiro "89" */
    double cfg_norm;           /* CFGNorm "94"'s strength; 0: none */
    double epsilon_scaling;    /* Epsilon Scaling "95"'s factor; 0: none */
    const kiln_sag *sag;       /* SelfAttentionGuidance "96"; NULL: none */
    const kiln_deep_shrink *deep_shrink; /* PatchModelAddDownscale "97"; NULL: none */
    const kiln_hypertile *hypertile;     /* HyperTile "98"; NULL: none */
    const kiln_step_cache *step_cache;   /* EasyCache or LazyCache "99"; NULL: none */
    const kiln_latent_operation *cfg_operation; /* LatentApplyOperationCFG "471" of operation "470"; NULL: none */
    const kiln_fresca *fresca;  /* FreSca "472"; NULL: none */
    const kiln_freeu *freeu;   /* FreeU or FreeU_V2 "86" on the (base) model; NULL: none */
    double pag_scale;          /* PerturbedAttentionGuidance "87"'s scale; 0: none */
    const kiln_skip_layer_guidance *skip_layer_guidance; /* SkipLayerGuidanceSD3 (SD3 without single blocks or
                                                            rescaling), else SkipLayerGuidanceDiT; NULL: none */
    const kiln_run_control *controls; /* Apply ControlNet nodes chained in this order */
    int ncontrols;
    const kiln_run_image_prompt *image_prompts; /* IPAdapterAdvanced nodes chained in this order */
    int nimage_prompts;
    /* HypernetworkLoader nodes "480", "481", ... chained in this order on the model after its LoRAs, before the
       IP-Adapters (at most KILN_MAX_HYPERNETWORKS) */
    const kiln_run_hypernetwork *hypernetworks;
    int nhypernetworks;
    const kiln_run_style *styles; /* StyleModelApply nodes chained on the positive prompt in this order */
    int nstyles;
    const char *const *references; /* pictures whose latents (VAEEncode) ReferenceLatent puts on the positive
                                      prompt, in order (FLUX.1 Kontext); at most KILN_RUN_MAX_STYLES */
    int nreferences;
    const char *reference_method; /* FluxKontextMultiReferenceLatentMethod's on them ("264"); NULL: "offset",
                                     ComfyUI's default, no node */
    const kiln_sdxl_cond *sdxl; /* CLIPTextEncodeSDXL's numbers (and the refiner's CLIPTextEncodeSDXLRefiner's),
                                   NULL: plain CLIPTextEncode */
    const kiln_sdxl_cond *negative_sdxl; /* the negative prompt's sizes, crop and target; NULL: sdxl's */
    double hires_scale;     /* hires fix: LatentUpscaleBy's scale then a second KSampler; 0 for none */
    int hires_steps;
    double hires_denoise;
    const char *hires_method; /* ComfyUI's upscale_method: "nearest-exact", "bilinear", "bicubic" */
    int vae_tile, vae_tile_overlap; /* VAEDecodeTiled's tile_size and overlap; tile 0: VAEDecode */
    const char *upscale_model; /* ImageUpscaleWithModel after decoding: the model's path, NULL for none */
    const char *refiner;       /* SDXL refiner taking over at refiner_step of steps (the part refiner_switch),
                                  as two KSamplerAdvanced; NULL for none */
    double refiner_switch;
    int refiner_step;
    int upscale_by;            /* its scale */
    const char *version;    /* kiln's version, "0.1.0" */
} kiln_run_info;

/* A1111's infotext for image `batch_index` of the run (a refiner: its
 * "Refiner: NAME, Refiner switch at: F" fields after the size), in A1111's field
 * order with its display names for sampler and schedule, e.g.
 *   a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, Schedule type:
 *   Normal, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd15, RNG: CPU,
 *   Version: kiln 0.1.0
 * Fields that do not apply are left out: "Negative prompt" when empty,
 * "Batch size"/"Batch pos" for a single image, "Denoising strength" at
 * denoise 1 without an init image, "Clip skip" at the model's own layer (1;
 * 2 for SD 2.x and SDXL). "RNG: CPU" is always there: kiln draws noise as
 * torch's CPU generator does. Each LoRA is added to the prompt as A1111
 * writes it, `<lora:NAME:S>` (`<lora:NAME:te=C:unet=S>`
 * when the strengths differ), NAME the file name without extension. A
 * ControlNet is recorded as A1111's ControlNet extension does, "ControlNet 0:
 * "Module: none, Model: NAME, Weight: S, Resize Mode: Crop and Resize,
 * Guidance Start: P, Guidance End: P"" after the size. A hires fix is
 * A1111's: "Denoising strength" its denoise, then "Hires upscale", "Hires
 * steps" (when not the first pass's) and "Hires upscaler" ("Latent" for
 * bilinear, "Latent (nearest-exact)", "Latent (bicubic)"); Size is the
 * first pass's. An upscale model is A1111's Extras: "Postprocess upscale
 * by: S, Postprocess upscaler: NAME" at the end. Values holding ',',
 * ':' or a newline are JSON-quoted, as A1111 does. *out is malloc'd; free() it. */
kiln_status kiln_metadata_parameters(const kiln_run_info *run, int batch_index, char **out);

/* The ComfyUI API-format prompt (compact JSON) for the run. Node ids follow
 * ComfyUI's default workflow: "3" KSampler, "4" CheckpointLoaderSimple,
 * "5" EmptyLatentImage, "6"/"7" CLIPTextEncode (positive/negative),
 * "8" VAEDecode, "9" SaveImage; then "10" CLIPSetLastLayer (clip skip > 1),
 * "11" LoadImage and "12" VAEEncode (img2img, in place of "5"), and
 * "13" RepeatLatentBatch (img2img with a batch over 1), and from "14" on one
 * LoraLoader per LoRA, chained between the checkpoint and its users; with a
 * ControlNet, "40" ControlNetLoader, "41" LoadImage (the hint) and "42"
 * ControlNetApplyAdvanced between the text encoders and KSampler; with a
 * mask, "50" LoadImageMask (its channel, red by default) and either "51" VAEEncodeForInpaint
 * (an inpainting model, in place of "12") or "52" SetLatentNoiseMask after
 * "12"; outpainting, "53" ImagePadForOutpaint after "11", giving the
 * encoder its picture and "51"/"52" their mask in place of "50"; with an
 * InstructPix2Pix model, "54" InstructPixToPixConditioning between the
 * conditionings and KSampler, giving it the prompts and the empty latent
 * (no "12"); a hires fix, "60" LatentUpscaleBy after "3" and "61" KSampler
 * after it, which VAEDecode takes; an upscale model, "70"
 * UpscaleModelLoader and "71" ImageUpscaleWithModel between VAEDecode and
 * SaveImage. Links are
 * ["node id", output index]. The seed is written as an exact integer.
 * *out is malloc'd; free() it. */
kiln_status kiln_metadata_prompt(const kiln_run_info *run, char **out);

/* A1111's display name for a ComfyUI sampler ("euler_ancestral" -> "Euler a")
 * or scheduler ("karras" -> "Karras"); names A1111 lacks come back as given. */
const char *kiln_metadata_sampler_label(const char *sampler);
const char *kiln_metadata_scheduler_label(const char *scheduler);

#endif
