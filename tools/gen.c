/* gen: text (and an optional image) in, PNG or JPEG files out.
 *
 *   gen --prompt "a red circle on a blue background" --output out.png
 *
 * With no --model, kiln's embedded default model (kiln-shapes) is used. Every
 * flag is listed by `gen --help` and in the README. Output files appear only
 * when complete; on any error gen exits non-zero and writes nothing. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "esrgan.h"
#include "file.h"
#include "gguf.h"
#include "image.h"
#include "inpaint.h"
#include "ip_adapter.h"
#include "metadata.h"
#include "pipeline.h"
#include "resample.h"
#include "status.h"
#include "t2i_adapter.h"
#include "tokenizer.h"
#include "torch_file.h"

#define MAX_LORAS 16
#define MAX_MODEL_DIRS 16

/* Flags that say what a list of units is made of (ControlNets,
 * IP-Adapters): each use of the group's first flag starts a unit; each
 * other flag is given once for all the units or once for each, in order.
 * A file flag is needed by every unit; a number has a range and a default;
 * the last two of a group are the part of the schedule (start, end). */
typedef enum { UNIT_FILE, UNIT_NUMBER, UNIT_NAME } unit_kind;
typedef struct unit_flag {
    const char *name;
    unit_kind kind; /* a name may be left out */
    double lo, hi, def;
} unit_flag;

#define MAX_UNIT_FLAGS 8
#define CONTROL_FLAGS 8
#define IP_FLAGS 6
#define REDUX_FLAGS 4

static const unit_flag control_flags[CONTROL_FLAGS] = {
    {"--controlnet", UNIT_FILE, 0, 0, 0},       {"--control-image", UNIT_FILE, 0, 0, 0},
    {"--control-strength", UNIT_NUMBER, 0, 10, 1}, {"--control-type", UNIT_NAME, 0, 0, 0},
    {"--control-mask", UNIT_NAME, 0, 0, 0},     {"--control-canny", UNIT_NAME, 0, 0, 0},
    {"--control-start", UNIT_NUMBER, 0, 1, 0},  {"--control-end", UNIT_NUMBER, 0, 1, 1},
};
static const unit_flag ip_flags[IP_FLAGS] = {
    {"--ip-adapter", UNIT_FILE, 0, 0, 0},  {"--clip-vision", UNIT_FILE, 0, 0, 0}, {"--ip-image", UNIT_FILE, 0, 0, 0},
    {"--ip-weight", UNIT_NUMBER, -1, 5, 1}, {"--ip-start", UNIT_NUMBER, 0, 1, 0},   {"--ip-end", UNIT_NUMBER, 0, 1, 1},
};
static const unit_flag redux_flags[REDUX_FLAGS] = {
    {"--redux", UNIT_FILE, 0, 0, 0}, {"--redux-vision", UNIT_FILE, 0, 0, 0}, {"--redux-image", UNIT_FILE, 0, 0, 0},
    {"--redux-strength", UNIT_NUMBER, 0, 10, 1},
};

typedef struct unit_values {
    const char *given[KILN_MAX_CONTROLS > KILN_MAX_IP_ADAPTERS ? KILN_MAX_CONTROLS : KILN_MAX_IP_ADAPTERS];
    int count;
} unit_values;

typedef struct gen_options {
    const char *model, *prompt, *negative, *output, *sampler, *scheduler, *backend;
    const char *prompts_file; /* --prompts: one prompt a line, each run in turn on the model loaded once */
    double negative_until;    /* --negative-until: the negative prompt that part of the sampling, zeros after; 0: all */
    const char *sigmas;       /* --sigmas: the noise levels walked in place of --steps and --scheduler's (ManualSigmas) */
    const char *init_image, *init_noise, *save_latent, *info;
    const char *convert; /* --convert: a torch.save file written to --output as safetensors */
    const char *save_checkpoint; /* --save-checkpoint: the loaded model written there (CheckpointSave) */
    const char *mask, *upscale_model;
    const char *mask_channel;       /* --mask-channel: LoadImageMask's channel of --mask; NULL: red */
    int vae_tile, vae_tile_overlap; /* VAEDecodeTiled's tile and overlap in pixels; tile 0: VAEDecode */
    double differential;            /* DifferentialDiffusion's strength with --mask/--outpaint; 0: none */
    double rescale_cfg;             /* --rescale-cfg: RescaleCFG's multiplier; 0: none */
    bool cfg_zero_star;             /* --cfg-zero-star */
    bool tcfg, mahiro;              /* --tcfg, --mahiro */
    double cfg_norm;                /* --cfg-norm: CFGNorm's strength; 0: none */
    double epsilon_scaling;         /* --epsilon-scaling: its factor; 0: none */
    bool operation_given;           /* --latent-tonemap, --latent-sharpen: LatentApplyOperationCFG's operation */
    kiln_latent_operation operation;
    bool sag_given;                 /* --sag SCALE[,BLUR] */
    kiln_sag sag;
    bool deep_shrink_given;         /* --deep-shrink B,F[,START,END], --deep-shrink-method, --deep-shrink-before-skip */
    kiln_deep_shrink deep_shrink;
    bool deep_shrink_before_skip;
    bool t5_options;                /* --t5-min-padding, --t5-min-length: T5TokenizerOptions' */
    int t5_min_padding, t5_min_length;
    int pixart_width, pixart_height; /* --pixart-size: CLIPTextEncodePixArtAlpha's on the prompt; 0: none */
    bool fresca_given;              /* --fresca LOW,HIGH[,CUTOFF] */
    kiln_fresca fresca;
    bool step_cache_given;          /* --easy-cache, --lazy-cache T[,START,END] */
    kiln_step_cache step_cache;
    bool hypertile_given;           /* --hypertile TILE[,SWAP[,DEPTH]], --hypertile-scale-depth */
    kiln_hypertile hypertile;
    bool apg;                       /* --apg ETA,NORM,MOMENTUM: APG's settings */
    double apg_eta, apg_norm_threshold, apg_momentum;
    bool freeu_given;               /* --freeu or --freeu-v2 B1,B2,S1,S2 */
    kiln_freeu freeu;
    double pag_scale;               /* --pag: PerturbedAttentionGuidance's scale; 0: none */
    /* --slg, --slg-single: SkipLayerGuidance's blocks (kiln_skip_layer_guidance's), its numbers */
    int slg_double[64], slg_double_count, slg_single[64], slg_single_count;
    double slg_scale, slg_start, slg_end, slg_rescale;
    bool slg_uncond; /* --slg-uncond: SkipLayerGuidanceDiTSimple */
    const char *references[KILN_MAX_REFERENCES]; /* --reference-image: ReferenceLatent's pictures (Kontext) */
    kiln_run_area areas[KILN_MAX_PROMPT_PARTS - 1]; /* --area-prompt: prompts on boxes beside --prompt */
    int nareas;
    int nreferences;
    const char *reference_method; /* --reference-method: FluxKontextMultiReferenceLatentMethod's; NULL: offset */
    kiln_reference_method reference_placement;
    const char *workflow;                    /* a ComfyUI API-format workflow to run instead of the flags' run */
    const char *model_dirs[MAX_MODEL_DIRS];  /* --models: where the workflow's file names are looked up */
    const char *embeddings;                  /* --embeddings: where embedding:NAME is looked up */
    int nmodel_dirs;
    kiln_outpaint outpaint;
    bool outpaint_given, feathering_given;
    double hires_scale, hires_denoise; /* hires fix: 0 for none */
    const char *refiner;               /* SDXL refiner checkpoint, NULL for none */
    double refiner_switch;             /* the part of the steps the base model takes */
    bool refiner_switch_given;
    int hires_steps;                   /* 0: --steps */
    kiln_resample_method hires_method;
    bool hires_denoise_given, hires_method_given;
    /* --controlnet and --ip-adapter with the flags that go with them, as given (see unit_flag), and the
       units made of them */
    unit_values control_values[CONTROL_FLAGS], ip_values[IP_FLAGS], redux_values[REDUX_FLAGS];
    kiln_run_style styles[KILN_RUN_MAX_STYLES];
    int nstyles;
    kiln_run_control controls[KILN_MAX_CONTROLS];
    int ncontrols;
    kiln_run_image_prompt image_prompts[KILN_MAX_IP_ADAPTERS];
    int nimage_prompts;
    kiln_model_parts parts; /* files beside --model; NULLs for none */
    kiln_merge merges[2];   /* --merge, --merge-clip: parts.merges */
    kiln_sdxl_cond sdxl;       /* CLIPTextEncodeSDXL's numbers; sizes 0 until the output size is known */
    bool sdxl_given, aesthetic_given;
    /* the negative prompt's own: size, crop and target given (--negative-sdxl-*), the rest the positive's */
    kiln_sdxl_cond negative_sdxl;
    bool negative_sdxl_given[3];
    const char *prompt_l, *negative_l; /* SDXL: CLIP-L's texts (CLIPTextEncodeSDXL's text_l); NULL: the prompts */
    kiln_text_cleaning cleaning;
    kiln_dtype compute;
    bool compute_set; /* --compute given; else the backend chooses */
    int width, height, steps, batch, clip_skip, threads, device; /* clip_skip 0: the model's own */
    const char *prediction; /* --prediction eps|v|lcm; NULL: the model's own */
    bool zsnr;              /* --zsnr: ModelSamplingDiscrete's zero terminal SNR sigmas */
    char edm[32];           /* --edm: ModelSamplingContinuousEDM's sampling ("" none), its sigmas */
    double edm_sigma_max, edm_sigma_min;
    double cfg, denoise, guidance; /* guidance 0: Flux dev's default */
    uint64_t seed;
    bool seed_given, size_given, json, list_devices;
    kiln_lora loras[MAX_LORAS];
    int nloras;
    kiln_run_hypernetwork hypernetworks[KILN_MAX_HYPERNETWORKS]; /* --hypernetwork, in order */
    int nhypernetworks;
} gen_options;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: gen --prompt TEXT [options] --output OUT.png|OUT.jpg\n"
            "       gen --workflow API.json [--models DIR]... [backend options] --output OUT.png|OUT.jpg\n"
            "       gen --info MODEL|LORA|CONTROLNET|UPSCALER\n"
            "       gen --list-devices\n"
            "\n"
            "  --output FILE          .png (ComfyUI workflow and A1111 parameters inside) or .jpg/.jpeg\n"
            "                         (quality 95, parameters in EXIF)\n"
            "  --model PATH           checkpoint (.safetensors, .gguf or torch.save's .ckpt, single-file\n"
            "                         layout), a transformer or UNet file alone, or a diffusers folder;\n"
            "                         default: the embedded kiln-shapes model. Every model file flag\n"
            "                         takes torch.save files (.ckpt, .pt, .pth, .bin) too\n"
            "  --vae FILE             a VAE in place of the checkpoint's (diffusers or original names)\n"
            "  --text-encoder FILE    a text encoder beside a transformer or UNet file: Flux's CLIP-L and T5\n"
            "                         (clip_l.safetensors, t5xxl_fp16.safetensors), PixArt's and Chroma's\n"
            "                         T5, SD's CLIP, SDXL's CLIP-L and bigG (clip_l, clip_g), SD3's CLIP-L,\n"
            "                         bigG and T5 (in that order, or a checkpoint's own replaced); up to 3\n"
            "  --weight-dtype TYPE    the diffusion model's linear weights converted at load, to save memory:\n"
            "                         fp8_e4m3fn, fp8_e5m2 (UNETLoader's weight_dtype) or q8_0, q5_1, q5_0,\n"
            "                         q4_1, q4_0 (as stable-diffusion.cpp's --type); default: as stored\n"
            "  --tokenizer FILE       T5's spiece.model or tokenizer.json, which single files lack (FLUX.1's\n"
            "                         tokenizer_2/, SD3's tokenizer_3/, ComfyUI's\n"
            "                         comfy/text_encoders/t5_tokenizer/); a T5 .gguf file carries its own\n"
            "  --config DIR           a diffusers folder whose configs and tokenizer a single file takes\n"
            "  --embeddings DIR       where a prompt's embedding:NAME (textual inversion) is looked up: NAME,\n"
            "                         NAME.safetensors, .pt or .bin here or in a folder below (with --workflow,\n"
            "                         by default the first --models folder's embeddings/)\n"
            "  --lora FILE[:S[:C]]    merge a LoRA/LoCon/LoHa at load, UNet strength S and text encoder\n"
            "                         strength C (default 1, C = S); repeatable\n"
            "  --hypernetwork FILE[:S]  an A1111 hypernetwork (.pt) on the UNet's attentions at strength S\n"
            "                         (-10..10, default 1), as ComfyUI's HypernetworkLoader; repeatable, each\n"
            "                         applied to what the one before gave\n"
            "  --merge FILE:R         ModelMergeSimple at load: the diffusion model's weights R (0..1) times\n"
            "                         the model's plus 1 - R times those of FILE (a checkpoint of the same\n"
            "                         family), before the LoRAs\n"
            "  --merge-clip FILE:R    CLIPMergeSimple: the same for the text encoders' weights\n"
            "  --prompt TEXT          ComfyUI syntax: (word:1.3), (word), \\( \\) literal\n"
            "  --prompts FILE         one prompt a line (blank lines and lines starting with # skipped), each\n"
            "                         run in turn on the model loaded once, line i (from 0) with seed + i;\n"
            "                         the files numbered on across the lines (OUT_00001.png, ...)\n"
            "  --negative-prompt TEXT\n"
            "  --negative-until P     the negative prompt for the first P of the sampling only, zeros after\n"
            "                         (SD3's example workflows: 0.1; ConditioningZeroOut,\n"
            "                         ConditioningSetTimestepRange, ConditioningCombine)\n"
            "  --width W --height H   pixels (default 512, SDXL 1024, or the model's native size)\n"
            "  --steps N              sampling steps (default 20)\n"
            "  --cfg S                classifier-free guidance scale (default 7; 1 for Flux)\n"
            "  --guidance G           Flux dev and Chroma: the guidance they embed, as FluxGuidance\n"
            "                         (default 3.5; Chroma 0); none: Flux dev without one (FluxDisableGuidance)\n"
            "  --sampler NAME         ComfyUI sampler: euler euler_ancestral heun heunpp2 dpm_2 dpm_2_ancestral\n"
            "                         lms dpm_fast dpm_adaptive dpmpp_2s_ancestral dpmpp_sde dpmpp_2m\n"
            "                         dpmpp_2m_sde dpmpp_2m_sde_heun dpmpp_3m_sde ddpm ddim uni_pc uni_pc_bh2\n"
            "                         lcm ipndm ipndm_v deis res_multistep res_multistep_ancestral\n"
            "                         gradient_estimation er_sde seeds_2 seeds_3 sa_solver sa_solver_pece, and\n"
            "                         the CFG++ ones: euler_cfg_pp euler_ancestral_cfg_pp dpmpp_2m_cfg_pp\n"
            "                         dpmpp_2s_ancestral_cfg_pp res_multistep_cfg_pp\n"
            "                         res_multistep_ancestral_cfg_pp gradient_estimation_cfg_pp (default euler)\n"
            "  --scheduler NAME       normal karras exponential sgm_uniform simple ddim_uniform beta\n"
            "                         linear_quadratic kl_optimal (default normal)\n"
            "  --sigmas LIST          the noise levels to walk, first to last, in place of --steps and\n"
            "                         --scheduler's schedule (SamplerCustom on ManualSigmas: \"14.6, 3.3, 0\")\n"
            "  --seed N               noise seed, as ComfyUI's (default: random, printed)\n"
            "  --batch B              images per run; B > 1 writes OUT_00001.png, OUT_00002.png, ...\n"
            "  --clip-skip K          1 = last CLIP layer, 2 = ComfyUI's CLIPSetLastLayer -2 (default: the\n"
            "                         model's own: 1 for SD 1.x, 2 for SD 2.x)\n"
            "  --t5-min-padding N     T5TokenizerOptions: N pad tokens after each prompt's T5 ids (0..10000;\n"
            "                         Chroma workflows often keep 1)\n"
            "  --t5-min-length N      T5TokenizerOptions: T5's ids padded to at least N in all, in place of\n"
            "                         the model's own (Flux 256, SD3 77; either flag alone sets the other to 0)\n"
            "  --prediction P         what the UNet predicts: eps or v (ComfyUI's ModelSamplingDiscrete;\n"
            "                         default: read off the checkpoint, see --info), or lcm for an LCM\n"
            "                         model or LoRA (with --sampler lcm, a few steps at cfg 1 to 2), or\n"
            "                         x0 / img_to_img (x0 itself; img_to_img from the unscaled input)\n"
            "  --zsnr                 the sigmas rescaled to zero terminal SNR (ModelSamplingDiscrete's\n"
            "                         zsnr), for v-prediction models trained so (NoobAI-XL v-pred)\n"
            "  --edm S[,MAX,MIN]      continuous sigmas from MIN to MAX (default 120, 0.002;\n"
            "                         ModelSamplingContinuousEDM) with sampling S: eps, v_prediction,\n"
            "                         edm, cosxl (CosXL's) or edm_playground_v2.5 (Playground v2.5's;\n"
            "                         its files say so themselves)\n"
            "  --text-cleaning MODE   clip (CLIP's ftfy cleaning, default) or comfyui (stock ComfyUI, no ftfy:\n"
            "                         HTML entities and curly quotes kept)\n"
            "  --controlnet FILE      a ControlNet (SD's original or diffusers layout; Flux's InstantX,\n"
            "                         Shakker-Labs or XLabs file or folder; SD3's InstantX or SD 3.5's\n"
            "                         Stability blur/canny/depth), applied to both prompts; up to 8, chained\n"
            "  --control-image FILE   its hint (an edge map, depth map, pose, ...), fitted to the output size\n"
            "  --control-strength S   residual strength (default 1)\n"
            "  --control-type T       a union ControlNet's control type: SetUnionControlNetType's names\n"
            "                         (openpose, depth, canny/lineart/anime_lineart/mlsd, ...) or the\n"
            "                         number the model uses (default auto: none)\n"
            "  --control-mask FILE    for an inpainting ControlNet (Flux's or SD3's): where to repaint (red\n"
            "                         channel, white repaints), as ControlNetInpaintingAliMamaApply\n"
            "  --control-canny LOW,HIGH\n"
            "                         the control image's edges first (ComfyUI's Canny node, its defaults\n"
            "                         0.4,0.8), for a canny ControlNet or T2I-Adapter; off: the image as it is\n"
            "  --control-start P --control-end P\n"
            "                         the part of the schedule it acts on, 0..1 (default 0 and 1); these,\n"
            "                         --control-type, --control-mask, --control-canny and --control-image\n"
            "                         once for all ControlNets, or once each in order\n"
            "  --ip-adapter FILE      an IP-Adapter (.safetensors or .bin): --ip-image as a prompt beside the text\n"
            "  --clip-vision FILE     the CLIP vision model it reads pictures with (transformers' layout)\n"
            "  --ip-image FILE        the picture (PNG or JPEG), cut to its centre square; with one\n"
            "                         --ip-adapter, up to 10: its pictures side by side (ImageBatch)\n"
            "  --ip-weight W          how much the picture counts, -1..5 (default 1)\n"
            "  --ip-start P --ip-end P\n"
            "                         the part of the schedule it acts on, 0..1 (default 0 and 1); up to 8\n"
            "                         --ip-adapter, each of the other --ip-* and --clip-vision given once for\n"
            "                         all or once each, in order\n"
            "  --redux FILE           FLUX.1 Redux (flux1-redux-dev.safetensors): --redux-image's SigLIP\n"
            "                         tokens after the prompt's (CLIPVisionEncode center, StyleModelApply)\n"
            "  --redux-vision FILE    the SigLIP vision model it reads pictures with\n"
            "                         (sigclip_vision_patch14_384.safetensors)\n"
            "  --redux-image FILE     the picture, cut to its centre square\n"
            "  --redux-strength S     its tokens times S, 0..10 (default 1); up to 8 --redux, the other\n"
            "                         --redux-* given once for all or once each, in order\n"
            "  --prompt-l TEXT --negative-prompt-l TEXT\n"
            "                         SDXL: CLIP-L's texts (CLIPTextEncodeSDXL's text_l; default: the prompts,\n"
            "                         which OpenCLIP bigG reads as text_g)\n"
            "  --sdxl-size WxH        SDXL: the original size y claims (CLIPTextEncodeSDXL; default: the output's)\n"
            "  --sdxl-crop X,Y        SDXL: the crop's left and top y claims (default 0,0)\n"
            "  --sdxl-target WxH      SDXL: the target size y claims (default: the output's)\n"
            "  --negative-sdxl-size WxH --negative-sdxl-crop X,Y --negative-sdxl-target WxH\n"
            "                         SDXL: the negative prompt's own numbers (default: the ones above)\n"
            "  --aesthetic S --negative-aesthetic S\n"
            "                         the refiner's aesthetic scores (CLIPTextEncodeSDXLRefiner; default 6, 2.5)\n"
            "  --reference-image FILE a picture for FLUX.1 Kontext to follow (VAEEncode, ReferenceLatent on\n"
            "                         the positive prompt); up to 8\n"
            "  --reference-method M   where the references go among the image positions, as ComfyUI's\n"
            "                         FluxKontextMultiReferenceLatentMethod: offset (default), index, uxo/uno\n"
            "  --init-image FILE      img2img source (PNG or JPEG); with an InstructPix2Pix model, the\n"
            "                         picture to edit; with FLUX.1 Canny or Depth, the edge or depth map\n"
            "  --mask FILE            inpaint --init-image where this picture's red channel is white\n"
            "                         (an inpainting model's way, or any model's with --denoise)\n"
            "  --mask-channel C       the channel of --mask that says where: red (default), green, blue, or\n"
            "                         alpha (transparent repaints, as ComfyUI's mask editor saves it)\n"
            "  --differential-diffusion S\n"
            "                         with --mask or --outpaint: DifferentialDiffusion at strength 0..1 (1 is\n"
            "                         the node's): a soft mask's grey repaints for part of the steps\n"
            "  --slg BLOCKS           SD3 and Flux: SkipLayerGuidance, the positive prompt again each step\n"
            "                         without these (SD3's joint, Flux's double) blocks, as 7,8,9\n"
            "  --slg-single BLOCKS    Flux's single blocks for it\n"
            "  --slg-scale S --slg-start P --slg-end P --slg-rescale R\n"
            "                         its scale (default 3), its part of the sampling (default 0.01 to\n"
            "                         0.15) and SkipLayerGuidanceDiT's rescaling (default 0)\n"
            "  --slg-uncond           SkipLayerGuidanceDiTSimple instead: the --slg blocks left out of the\n"
            "                         negative prompt's pass itself on those steps (no pass, scale or rescaling)\n"
            "  --rescale-cfg M        RescaleCFG on the model at multiplier M in (0, 1] (the node's default\n"
            "                         is 0.7): the guidance in v space, its std brought to the positive's\n"
            "  --area-prompt X,Y,W,H[,S]:TEXT\n"
            "                         TEXT on the box of W x H pixels at X, Y (ConditioningSetArea: floored\n"
            "                         to 8; strength S, default 1) beside --prompt over the whole picture;\n"
            "                         up to 7\n"
            "  --apg ETA,NORM,MOMENTUM\n"
            "                         APG (Adaptive Projected Guidance) on the model: the guidance's part\n"
            "                         along the positive prediction times ETA (-10..10), its norm cut to\n"
            "                         NORM (0..50, 0: not), its running average's MOMENTUM (-5..1, 0: none);\n"
            "                         the node's defaults are 1,5,0\n"
            "  --cfg-zero-star        CFGZeroStar on the model: the negative prompt's share of the guidance\n"
            "                         scaled by its prediction's projection on the positive's\n"
            "  --tcfg                 TCFG on the model: the negative prediction's noise cut to its part\n"
            "                         along the two predictions' first singular direction\n"
            "  --mahiro               Mahiro on the model: the guided prediction pulled toward cfg times\n"
            "                         the positive one by how alike the two prompts' leaps are\n"
            "  --cfg-norm S           CFGNorm on the model: each pixel's guided prediction times S (0..100)\n"
            "                         with its norm at most the positive prediction's\n"
            "  --epsilon-scaling F    Epsilon Scaling on the model: the guided prediction's noise divided\n"
            "                         by F (0.5..1.5; the node's default 1.005). Those four act in this\n"
            "                         order, after --cfg-zero-star\n"
            "  --latent-tonemap M     LatentApplyOperationCFG with LatentOperationTonemapReinhard (multiplier\n"
            "                         M, 0..100, the node's default 1): the guidance's per-pixel lengths\n"
            "                         tone-mapped before it is applied, against high cfg's burn\n"
            "  --latent-sharpen R,S,A LatentApplyOperationCFG with LatentOperationSharpen (radius R 1..31,\n"
            "                         sigma S 0.1..10, alpha A 0..5; the node's defaults 9,1,0.1)\n"
            "  --deep-shrink B,F[,START,END]  PatchModelAddDownscale (Kohya Deep Shrink): the UNet's\n"
            "                         activations after input block B (default node: 3) shrunk by F while\n"
            "                         the schedule is between START and END (default 0, 0.35); for pictures\n"
            "                         larger than the model learnt\n"
            "  --deep-shrink-method DOWN[,UP]  bicubic (default), bilinear, nearest-exact, area or bislerp\n"
            "  --deep-shrink-before-skip  shrink before the block's skip is kept (default: after)\n"
            "  --hypertile TILE[,SWAP[,DEPTH]]  HyperTile: the UNet's self-attention in tiles of at least\n"
            "                         TILE pixels (1..2048, less than 32 counts as 32; the node's default\n"
            "                         256) on the first DEPTH + 1 levels (0..10, default 0); SWAP above 2\n"
            "                         (1..128, default 2) draws the tiles per block and step; faster on\n"
            "                         large pictures\n"
            "  --hypertile-scale-depth  the tiles' least side doubled each level down\n"
            "  --easy-cache T[,START,END]  EasyCache: a step whose model output is predicted to change little\n"
            "                         (the change summed since the last step run, below T, 0..3; the node's\n"
            "                         0.2) reuses the last change instead of running the model, from START to\n"
            "                         END of the sampling (0.15, 0.95); faster, a little other picture\n"
            "  --lazy-cache T[,START,END]  LazyCache: the same on the whole guided step (any patch with it)\n"
            "  --pixart-size WxH      PixArt-alpha's 1024 model: the picture size it embeds for the prompt\n"
            "                         (CLIPTextEncodePixArtAlpha; default: the output's)\n"
            "  --fresca LOW,HIGH[,CUTOFF]  FreSca: the guidance's frequencies within CUTOFF (default 20) of zero\n"
            "                         scaled by LOW, the others by HIGH (0..10 each; the node's 1, 1.25)\n"
            "  --sag SCALE[,BLUR]     SelfAttentionGuidance on the UNet: the negative prompt's prediction\n"
            "                         blurred (std BLUR, default 2) where the middle block attends most,\n"
            "                         denoised again, SCALE (-2..5, the node's default 0.5) times the\n"
            "                         difference added; one more UNet pass a step\n"
            "  --freeu B1,B2,S1,S2    FreeU on the UNet: in the decoder's blocks of 4 and 2 times its base\n"
            "                         width, half the channels times B1, B2 and the skips' lowest\n"
            "                         frequencies times S1, S2 (each 0..10; the node's defaults are\n"
            "                         1.1,1.2,0.9,0.2)\n"
            "  --freeu-v2 B1,B2,S1,S2 FreeU_V2: the channels scaled by the pixels' mean as well (defaults\n"
            "                         1.3,1.4,0.9,0.2)\n"
            "  --pag S                PerturbedAttentionGuidance on the UNet at scale S in (0, 100] (the\n"
            "                         node's default is 3): away from the prompt's prediction with the\n"
            "                         middle block's self-attention perturbed\n"
            "  --outpaint L,T,R,B     outpaint: grow --init-image by these pixels on the left, top, right\n"
            "                         and bottom (one number: every side) and paint the new part\n"
            "  --feathering F         how far into the picture the outpaint mask fades (default 40)\n"
            "  --hires-scale S        hires fix: upscale the latent by S (LatentUpscaleBy) and sample again\n"
            "  --hires-denoise D      the second pass's denoise (default 0.5)\n"
            "  --hires-steps N        the second pass's steps (default: --steps)\n"
            "  --hires-method NAME    nearest-exact (default), bilinear, bicubic, area or bislerp\n"
            "  --refiner FILE         an SDXL refiner takes over the last steps (two KSamplerAdvanced)\n"
            "  --refiner-switch F     the part of --steps the base model takes (default 0.8)\n"
            "  --vae-tile SIZE[:OVERLAP]\n"
            "                         decode over tiles of SIZE pixels (64..4096; 512 is ComfyUI's), overlapping\n"
            "                         by OVERLAP (default 64, at most SIZE/4): VAEDecodeTiled, for large pictures\n"
            "                         in little memory\n"
            "  --upscale-model FILE   upscale the decoded picture with an ESRGAN (RRDBNet x4) or\n"
            "                         SRVGGNetCompact model, .safetensors or .pth (ImageUpscaleWithModel)\n"
            "  --denoise D            img2img strength in (0, 1] (default 1; 0.6 is typical with --init-image)\n"
            "  --init-noise F         safetensors with tensor 'noise' (B,4,h,w), used instead of the seed\n"
            "  --save-latent F        write the final LATENT (tensor 'latent', what VAEDecode gets)\n"
            "  --backend NAME         cpu, vulkan, cuda or auto (default cpu)\n"
            "  --device N             GPU index (default: first discrete GPU; see --list-devices)\n"
            "  --compute P            GPU arithmetic: f32, f16 or bf16 (tensor cores, f32 accumulate);\n"
            "                         default f16 on cuda and on vulkan with cooperative matrices,\n"
            "                         f32 elsewhere\n"
            "  --threads T            CPU threads (default: all cores)\n"
            "  --json                 print one JSON line: files written, seed, timings\n"
            "  --info FILE            describe a checkpoint (family, variant, dtypes, parameters), a LoRA\n"
            "                         (modules, ranks, base model) or a ControlNet (its UNet) and exit;\n"
            "                         a transformer file with the files --vae, --text-encoder give beside it\n"
            "  --list-devices         list the GPUs each backend sees, by the index --device takes, and exit\n"
            "  --convert FILE         write a torch.save file's tensors (.ckpt, .pt, .pth, .bin) to --output\n"
            "                         as a .safetensors file, as kiln reads them, and exit\n"
            "  --save-checkpoint FILE write the loaded model (--lora, --vae, merges in it) to FILE.safetensors\n"
            "                         in the original single-file layout (CheckpointSave), and exit\n");
}

static int bad_flag(const char *flag, const char *value, const char *why)
{
    fprintf(stderr, "gen: %s %s: %s\n", flag, value, why);
    return 2;
}

static bool parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* "AxB" (sep 'x') or "A,B" (sep ','), each lo..hi */
static bool parse_pair(const char *s, char sep, long lo, long hi, int *a, int *b)
{
    const char *mid = strchr(s, sep);
    char first[32];
    if (!mid || (size_t)(mid - s) >= sizeof first) return false;
    memcpy(first, s, (size_t)(mid - s));
    first[mid - s] = 0;
    return parse_int(first, lo, hi, a) && parse_int(mid + 1, lo, hi, b);
}

/* n numbers "A,B,..." exactly */
static bool parse_numbers(const char *s, int n, double *out)
{
    for (int k = 0; k < n; k++) {
        char *end;
        errno = 0;
        out[k] = strtod(s, &end);
        if (errno || end == s || !isfinite(out[k]) || *end != (k + 1 < n ? ',' : '\0')) return false;
        s = end + 1;
    }
    return true;
}

/* --area-prompt's X,Y,W,H[,S]:TEXT. */
static bool parse_area(const char *s, kiln_run_area *a)
{
    const char *colon = strchr(s, ':');
    if (!colon || !colon[1]) return false;
    double v[5] = {0, 0, 0, 0, 1.0};
    int count = 0;
    const char *at = s;
    while (at < colon && count < 5) {
        char *end;
        errno = 0;
        v[count++] = strtod(at, &end);
        if (errno || end == at || (*end != ',' && end != colon)) return false;
        at = end + (end != colon);
    }
    if (at != colon || count < 4) return false;
    for (int k = 0; k < 4; k++)
        if (v[k] != floor(v[k]) || v[k] < 0 || v[k] > 16384) return false;
    if (v[2] < 8 || v[3] < 8 || !(v[4] > 0 && v[4] <= 10)) return false;
    *a = (kiln_run_area){colon + 1, (int)v[0], (int)v[1], (int)v[2], (int)v[3], v[4]};
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* --lora FILE[:S[:C]]: the strengths are the trailing fields that read as
 * numbers, so a file name may hold ':' itself. */
static int parse_lora(char *arg, kiln_lora *out)
{
    double strength[2];
    int n = 0;
    char *colon;
    while (n < 2 && (colon = strrchr(arg, ':')) && colon != arg) {
        double v;
        if (!parse_double(colon + 1, -100, 100, &v)) break;
        strength[n++] = v;
        *colon = '\0';
    }
    /* read right to left: with two, the first read is the text encoder's */
    out->path = arg;
    out->unet_strength = n == 0 ? 1.0 : strength[n - 1];
    out->clip_strength = n == 2 ? strength[0] : out->unet_strength;
    if (access(arg, R_OK) != 0) return bad_flag("--lora", arg, strerror(errno));
    return 0;
}

/* --outpaint L,T,R,B in ComfyUI's order, or one number for every side. */
static int parse_outpaint(const char *arg, kiln_outpaint *out)
{
    const char *why = "must be LEFT,TOP,RIGHT,BOTTOM or one number, each 0..8192 pixels";
    int side[4], n = 0;
    char fields[64];
    if (strlen(arg) >= sizeof fields) return bad_flag("--outpaint", arg, why);
    strcpy(fields, arg);
    for (char *field = fields, *next; field; field = next, n++) {
        if ((next = strchr(field, ','))) *next++ = '\0';
        if (n == 4 || !parse_int(field, 0, KILN_OUTPAINT_MAX, &side[n])) return bad_flag("--outpaint", arg, why);
    }
    if (n != 1 && n != 4) return bad_flag("--outpaint", arg, why);
    if (n == 1) side[1] = side[2] = side[3] = side[0];
    if (!(side[0] | side[1] | side[2] | side[3])) return bad_flag("--outpaint", arg, "pads nothing");
    out->left = side[0], out->top = side[1], out->right = side[2], out->bottom = side[3];
    return 0;
}

/* Whether a file can be written at path: its folder exists and takes new
 * files, and path is no folder. Checked before any work, so that a long run
 * does not end in "cannot create". */
static bool has_suffix(const char *path, const char *suffix)
{
    const size_t n = path ? strlen(path) : 0, m = strlen(suffix);
    return n > m && strcmp(path + n - m, suffix) == 0;
}

static bool destination_ok(const char *flag, const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    struct stat st;
    const char *why = NULL;
    if (stat(dir, &st) != 0) why = strerror(errno);
    else if (!S_ISDIR(st.st_mode)) why = "not a folder";
    else if (access(dir, W_OK | X_OK) != 0) why = strerror(errno);
    if (why) {
        fprintf(stderr, "gen: %s %s: cannot write in %s: %s\n", flag, path, dir, why);
        return false;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "gen: %s %s: is a folder\n", flag, path);
        return false;
    }
    return true;
}

static bool add_unit_value(unit_values *v, const char *flag, const char *value)
{
    if (v->count == (int)(sizeof v->given / sizeof *v->given)) {
        bad_flag(flag, value, "given too many times");
        return false;
    }
    v->given[v->count++] = value;
    return true;
}

/* Each unit's values of a group of flags (files, NULL where a flag is not
 * given; numbers), after checking what was given; 0 or gen's exit code. */
static int resolve_units(const unit_flag *flags, int nflags, bool ranged, const unit_values *values, int max_units,
                         const char *files[][MAX_UNIT_FLAGS], double numbers[][MAX_UNIT_FLAGS])
{
    const int n = values[0].count;
    for (int k = 1; k < nflags; k++) {
        const unit_flag *f = &flags[k];
        double x;
        for (int j = 0; j < values[k].count && f->kind == UNIT_NUMBER; j++) {
            if (!parse_double(values[k].given[j], f->lo, f->hi, &x)) {
                char why[64];
                snprintf(why, sizeof why, "must be %g..%g", f->lo, f->hi);
                return bad_flag(f->name, values[k].given[j], why);
            }
        }
        const int count = values[k].count;
        if (count && !n) return fprintf(stderr, "gen: %s needs %s\n", f->name, flags[0].name), 2;
        if (!count && n && f->kind == UNIT_FILE) return fprintf(stderr, "gen: %s needs %s\n", flags[0].name, f->name), 2;
        if (count > 1 && count != n) {
            fprintf(stderr, "gen: %s given %d times for %d %s: give it once for all, or once for each\n", f->name,
                    count, n, flags[0].name);
            return 2;
        }
    }
    if (n > max_units) return fprintf(stderr, "gen: %s given %d times: at most %d\n", flags[0].name, n, max_units), 2;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < nflags; k++) {
            const unit_values *v = &values[k];
            const char *given = v->count ? v->given[v->count == 1 ? 0 : i] : NULL;
            files[i][k] = flags[k].kind != UNIT_NUMBER ? given : NULL;
            numbers[i][k] = flags[k].def;
            if (flags[k].kind == UNIT_FILE && access(given, R_OK) != 0)
                return bad_flag(flags[k].name, given, strerror(errno));
            if (flags[k].kind == UNIT_NUMBER && given) parse_double(given, flags[k].lo, flags[k].hi, &numbers[i][k]);
        }
        const double start = numbers[i][nflags - 2], end = numbers[i][nflags - 1];
        if (ranged && start > end) {
            fprintf(stderr, "gen: %s %g is after %s %g (%s %s)\n", flags[nflags - 2].name, start,
                    flags[nflags - 1].name, end, flags[0].name, files[i][0]);
            return 2;
        }
    }
    return 0;
}

/* --controlnet's units: each ControlNet with its hint, strength and range. */
static int control_units(gen_options *o)
{
    const char *files[KILN_MAX_CONTROLS][MAX_UNIT_FLAGS];
    double v[KILN_MAX_CONTROLS][MAX_UNIT_FLAGS];
    int rc = resolve_units(control_flags, CONTROL_FLAGS, true, o->control_values, KILN_MAX_CONTROLS, files, v);
    if (rc) return rc;
    o->ncontrols = o->control_values[0].count;
    for (int i = 0; i < o->ncontrols; i++) {
        int mode;
        if (kiln_union_control_type(files[i][3], &mode) != KILN_OK)
            return fprintf(stderr, "gen: --control-type: %s\n", kiln_last_error()), 2;
        if (files[i][4] && access(files[i][4], R_OK) != 0) return bad_flag("--control-mask", files[i][4], strerror(errno));
        double low = 0.0, high = 0.0;
        char end;
        if (files[i][5] && strcmp(files[i][5], "off") != 0 &&
            (sscanf(files[i][5], "%lf,%lf%c", &low, &high, &end) != 2 || !(low > 0.0 && low <= high && high <= 100.0)))
            return bad_flag("--control-canny", files[i][5], "must be LOW,HIGH with 0 < LOW <= HIGH <= 100, or off");
        /* "auto" is no SetUnionControlNetType node */
        o->controls[i] = (kiln_run_control){files[i][0], files[i][1], v[i][2], v[i][6], v[i][7],
                                            mode < 0 ? NULL : files[i][3], files[i][4], low, high};
    }
    return 0;
}

/* --ip-adapter's units: each adapter with its CLIP vision model, picture,
 * weight and range. */
static int image_prompt_units(gen_options *o)
{
    const char *files[KILN_MAX_IP_ADAPTERS][MAX_UNIT_FLAGS];
    double v[KILN_MAX_IP_ADAPTERS][MAX_UNIT_FLAGS];
    /* one adapter with several pictures: the first is its unit's, the others go after it (an ImageBatch) */
    unit_values values[IP_FLAGS];
    memcpy(values, o->ip_values, sizeof values);
    const int pictures = values[2].count, more = values[0].count == 1 && pictures > 1 ? pictures - 1 : 0;
    if (more > KILN_RUN_MAX_MORE_PICTURES)
        return fprintf(stderr, "gen: --ip-image given %d times for one --ip-adapter: at most %d\n", pictures,
                       1 + KILN_RUN_MAX_MORE_PICTURES), 2;
    if (more) values[2].count = 1;
    int rc = resolve_units(ip_flags, IP_FLAGS, true, values, KILN_MAX_IP_ADAPTERS, files, v);
    if (rc) return rc;
    for (int j = 1; j <= more; j++)
        if (access(values[2].given[j], R_OK) != 0) return bad_flag("--ip-image", values[2].given[j], strerror(errno));
    o->nimage_prompts = o->ip_values[0].count;
    for (int i = 0; i < o->nimage_prompts; i++)
        o->image_prompts[i] = (kiln_run_image_prompt){files[i][0], files[i][1], files[i][2], v[i][3], v[i][4], v[i][5],
                                                      more ? &o->ip_values[2].given[1] : NULL, more};
    return 0;
}

/* --redux's units: each Redux model with its SigLIP tower, picture and
 * strength. */
static int redux_units(gen_options *o)
{
    const char *files[KILN_RUN_MAX_STYLES][MAX_UNIT_FLAGS];
    double v[KILN_RUN_MAX_STYLES][MAX_UNIT_FLAGS];
    int rc = resolve_units(redux_flags, REDUX_FLAGS, false, o->redux_values, KILN_RUN_MAX_STYLES, files, v);
    if (rc) return rc;
    o->nstyles = o->redux_values[0].count;
    for (int i = 0; i < o->nstyles; i++) o->styles[i] = (kiln_run_style){files[i][0], files[i][1], files[i][2], v[i][3]};
    return 0;
}

/* --sdxl-size (k 0), --sdxl-crop (1) or --sdxl-target (2), or the
 * negative prompt's, into c; false after saying what is wrong. ComfyUI's
 * MAX_RESOLUTION bounds its nodes' sizes. */
static bool parse_sdxl_numbers(kiln_sdxl_cond *c, int k, bool negative, const char *value)
{
    static const char *const flags[2][3] = {{"--sdxl-size", "--sdxl-crop", "--sdxl-target"},
                                            {"--negative-sdxl-size", "--negative-sdxl-crop", "--negative-sdxl-target"}};
    int *a = k == 0 ? &c->width : k == 1 ? &c->crop_w : &c->target_width;
    int *b = k == 0 ? &c->height : k == 1 ? &c->crop_h : &c->target_height;
    if (parse_pair(value, k == 1 ? ',' : 'x', k == 1 ? 0 : 8, 16384, a, b)) return true;
    bad_flag(flags[negative][k], value, k == 1 ? "must be X,Y, each 0..16384" : "must be WxH, each 8..16384");
    return false;
}

/* "7,8,9" -> layers, *count; false unless every part is a block number 0..63. */
static bool parse_layers(const char *s, int *layers, int *count)
{
    *count = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 63 || *count == 64) return false;
        layers[(*count)++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return false;
    }
    return *count > 0;
}

static int parse(int argc, char **argv, gen_options *o)
{
    *o = (gen_options){.sampler = "euler", .scheduler = "normal", .backend = "cpu", .width = 512, .height = 512,
                       .steps = 20, .batch = 1, .device = -1, .cfg = 7.0, .denoise = 1.0,
                       .negative = "", .cleaning = KILN_TEXT_CLEAN_FTFY, 
                       .sdxl = {.aesthetic = 6.0, .negative_aesthetic = 2.5},
                       .outpaint.feathering = KILN_OUTPAINT_FEATHERING, .hires_denoise = 0.5,
                       .refiner_switch = 0.8, .slg_scale = 3.0, .slg_start = 0.01, .slg_end = 0.15};
    enum { O_NEG = 256, O_CONVERT, O_SAVE_CHECKPOINT, O_INIT_IMAGE, O_INIT_NOISE, O_SAVE_LATENT, O_CLIP_SKIP, O_INFO, O_JSON, O_DEVICE, O_CLEANING, O_COMPUTE,
           O_LIST_DEVICES, O_LORA, O_MASK, O_OUTPAINT, O_FEATHERING, O_HIRES_SCALE,
           O_HIRES_DENOISE, O_HIRES_STEPS, O_HIRES_METHOD, O_UPSCALE_MODEL, O_PREDICTION, O_REFINER, O_REFINER_SWITCH, O_CONTROLNET, O_CONTROL_IMAGE, O_CONTROL_STRENGTH, O_CONTROL_TYPE, O_CONTROL_MASK, O_CONTROL_CANNY, O_CONTROL_START, O_CONTROL_END,
           O_IP_ADAPTER, O_CLIP_VISION, O_IP_IMAGE, O_IP_WEIGHT, O_IP_START, O_IP_END,
           O_SDXL_SIZE, O_SDXL_CROP, O_SDXL_TARGET, O_AESTHETIC, O_NEGATIVE_AESTHETIC, O_WORKFLOW, O_MODELS,
           O_GUIDANCE, O_VAE, O_TEXT_ENCODER, O_TOKENIZER, O_CONFIG, O_EMBEDDINGS, O_WEIGHT_DTYPE, O_PROMPT_L, O_NEGATIVE_L, O_NEGATIVE_SDXL_SIZE,
           O_NEGATIVE_SDXL_CROP, O_NEGATIVE_SDXL_TARGET, O_VAE_TILE, O_DIFFERENTIAL, O_REDUX, O_REDUX_VISION,
           O_REDUX_IMAGE, O_REDUX_STRENGTH, O_REFERENCE, O_REFERENCE_METHOD, O_SLG, O_SLG_SINGLE, O_SLG_SCALE,
           O_SLG_START, O_SLG_END, O_SLG_RESCALE, O_SLG_UNCOND, O_PROMPTS, O_NEGATIVE_UNTIL, O_SIGMAS, O_RESCALE_CFG,
           O_CFG_ZERO_STAR, O_AREA_PROMPT, O_APG, O_MASK_CHANNEL, O_FREEU, O_FREEU_V2, O_PAG, O_ZSNR, O_EDM,
           O_TCFG, O_MAHIRO, O_CFG_NORM, O_EPSILON_SCALING, O_SAG, O_DEEP_SHRINK, O_DEEP_SHRINK_METHOD,
           O_DEEP_SHRINK_BEFORE_SKIP, O_HYPERTILE, O_HYPERTILE_SCALE_DEPTH,
           O_MERGE, O_MERGE_CLIP, O_LATENT_TONEMAP, O_LATENT_SHARPEN, O_T5_MIN_PADDING, O_T5_MIN_LENGTH,
           O_EASY_CACHE, O_LAZY_CACHE, O_FRESCA, O_PIXART_SIZE, O_HYPERNETWORK };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},         {"prompt", required_argument, 0, 'p'},
        {"prompts", required_argument, 0, O_PROMPTS}, {"negative-until", required_argument, 0, O_NEGATIVE_UNTIL},
        {"sigmas", required_argument, 0, O_SIGMAS}, {"rescale-cfg", required_argument, 0, O_RESCALE_CFG},
        {"cfg-zero-star", no_argument, 0, O_CFG_ZERO_STAR}, {"tcfg", no_argument, 0, O_TCFG},
        {"mahiro", no_argument, 0, O_MAHIRO}, {"cfg-norm", required_argument, 0, O_CFG_NORM},
        {"epsilon-scaling", required_argument, 0, O_EPSILON_SCALING}, {"sag", required_argument, 0, O_SAG},
        {"deep-shrink", required_argument, 0, O_DEEP_SHRINK},
        {"deep-shrink-method", required_argument, 0, O_DEEP_SHRINK_METHOD},
        {"deep-shrink-before-skip", no_argument, 0, O_DEEP_SHRINK_BEFORE_SKIP},
        {"hypertile", required_argument, 0, O_HYPERTILE},
        {"hypertile-scale-depth", no_argument, 0, O_HYPERTILE_SCALE_DEPTH},
        {"t5-min-padding", required_argument, 0, O_T5_MIN_PADDING},
        {"easy-cache", required_argument, 0, O_EASY_CACHE}, {"lazy-cache", required_argument, 0, O_LAZY_CACHE},
        {"fresca", required_argument, 0, O_FRESCA}, {"pixart-size", required_argument, 0, O_PIXART_SIZE},
        {"hypernetwork", required_argument, 0, O_HYPERNETWORK},
        {"t5-min-length", required_argument, 0, O_T5_MIN_LENGTH},
        {"merge", required_argument, 0, O_MERGE}, {"merge-clip", required_argument, 0, O_MERGE_CLIP},
        {"latent-tonemap", required_argument, 0, O_LATENT_TONEMAP},
        {"latent-sharpen", required_argument, 0, O_LATENT_SHARPEN}, {"area-prompt", required_argument, 0, O_AREA_PROMPT},
        {"apg", required_argument, 0, O_APG},         {"mask-channel", required_argument, 0, O_MASK_CHANNEL},
        {"freeu", required_argument, 0, O_FREEU},     {"freeu-v2", required_argument, 0, O_FREEU_V2},
        {"pag", required_argument, 0, O_PAG},         {"zsnr", no_argument, 0, O_ZSNR},
        {"edm", required_argument, 0, O_EDM},
        {"negative-prompt", required_argument, 0, O_NEG}, {"output", required_argument, 0, 'o'},
        {"prompt-l", required_argument, 0, O_PROMPT_L}, {"negative-prompt-l", required_argument, 0, O_NEGATIVE_L},
        {"width", required_argument, 0, 'W'},         {"height", required_argument, 0, 'H'},
        {"steps", required_argument, 0, 's'},         {"cfg", required_argument, 0, 'c'},
        {"sampler", required_argument, 0, 'S'},       {"scheduler", required_argument, 0, 'K'},
        {"seed", required_argument, 0, 'r'},          {"batch", required_argument, 0, 'b'},
        {"clip-skip", required_argument, 0, O_CLIP_SKIP}, {"denoise", required_argument, 0, 'd'},
        {"init-image", required_argument, 0, O_INIT_IMAGE}, {"init-noise", required_argument, 0, O_INIT_NOISE},
        {"save-latent", required_argument, 0, O_SAVE_LATENT}, {"backend", required_argument, 0, 'B'},
        {"device", required_argument, 0, O_DEVICE},   {"threads", required_argument, 0, 't'},
        {"json", no_argument, 0, O_JSON},             {"info", required_argument, 0, O_INFO},
        {"convert", required_argument, 0, O_CONVERT}, {"save-checkpoint", required_argument, 0, O_SAVE_CHECKPOINT},
        {"text-cleaning", required_argument, 0, O_CLEANING}, {"compute", required_argument, 0, O_COMPUTE},
        {"list-devices", no_argument, 0, O_LIST_DEVICES}, {"lora", required_argument, 0, O_LORA},
        {"mask", required_argument, 0, O_MASK},       {"outpaint", required_argument, 0, O_OUTPAINT},
        {"feathering", required_argument, 0, O_FEATHERING},
        {"hires-scale", required_argument, 0, O_HIRES_SCALE}, {"hires-denoise", required_argument, 0, O_HIRES_DENOISE},
        {"hires-steps", required_argument, 0, O_HIRES_STEPS}, {"hires-method", required_argument, 0, O_HIRES_METHOD},
        {"upscale-model", required_argument, 0, O_UPSCALE_MODEL}, {"prediction", required_argument, 0, O_PREDICTION},
        {"refiner", required_argument, 0, O_REFINER}, {"refiner-switch", required_argument, 0, O_REFINER_SWITCH},
        {"controlnet", required_argument, 0, O_CONTROLNET}, {"control-image", required_argument, 0, O_CONTROL_IMAGE},
        {"control-strength", required_argument, 0, O_CONTROL_STRENGTH}, {"control-type", required_argument, 0, O_CONTROL_TYPE},
        {"control-mask", required_argument, 0, O_CONTROL_MASK}, {"control-canny", required_argument, 0, O_CONTROL_CANNY},
        {"control-start", required_argument, 0, O_CONTROL_START}, {"control-end", required_argument, 0, O_CONTROL_END},
        {"ip-adapter", required_argument, 0, O_IP_ADAPTER}, {"clip-vision", required_argument, 0, O_CLIP_VISION},
        {"ip-image", required_argument, 0, O_IP_IMAGE}, {"ip-weight", required_argument, 0, O_IP_WEIGHT},
        {"ip-start", required_argument, 0, O_IP_START}, {"ip-end", required_argument, 0, O_IP_END},
        {"redux", required_argument, 0, O_REDUX}, {"redux-vision", required_argument, 0, O_REDUX_VISION},
        {"redux-image", required_argument, 0, O_REDUX_IMAGE}, {"redux-strength", required_argument, 0, O_REDUX_STRENGTH},
        {"sdxl-size", required_argument, 0, O_SDXL_SIZE}, {"sdxl-crop", required_argument, 0, O_SDXL_CROP},
        {"sdxl-target", required_argument, 0, O_SDXL_TARGET}, {"aesthetic", required_argument, 0, O_AESTHETIC},
        {"negative-aesthetic", required_argument, 0, O_NEGATIVE_AESTHETIC},
        {"negative-sdxl-size", required_argument, 0, O_NEGATIVE_SDXL_SIZE},
        {"negative-sdxl-crop", required_argument, 0, O_NEGATIVE_SDXL_CROP},
        {"negative-sdxl-target", required_argument, 0, O_NEGATIVE_SDXL_TARGET},
        {"vae-tile", required_argument, 0, O_VAE_TILE},
        {"differential-diffusion", required_argument, 0, O_DIFFERENTIAL},
        {"slg", required_argument, 0, O_SLG}, {"slg-single", required_argument, 0, O_SLG_SINGLE},
        {"slg-scale", required_argument, 0, O_SLG_SCALE}, {"slg-start", required_argument, 0, O_SLG_START},
        {"slg-end", required_argument, 0, O_SLG_END}, {"slg-rescale", required_argument, 0, O_SLG_RESCALE},
        {"slg-uncond", no_argument, 0, O_SLG_UNCOND},
        {"reference-image", required_argument, 0, O_REFERENCE},
        {"reference-method", required_argument, 0, O_REFERENCE_METHOD},
        {"workflow", required_argument, 0, O_WORKFLOW}, {"models", required_argument, 0, O_MODELS},
        {"guidance", required_argument, 0, O_GUIDANCE},
        {"vae", required_argument, 0, O_VAE},         {"text-encoder", required_argument, 0, O_TEXT_ENCODER},
        {"tokenizer", required_argument, 0, O_TOKENIZER}, {"config", required_argument, 0, O_CONFIG},
        {"embeddings", required_argument, 0, O_EMBEDDINGS},
        {"weight-dtype", required_argument, 0, O_WEIGHT_DTYPE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case O_PROMPTS: o->prompts_file = optarg; break;
        case O_NEGATIVE_UNTIL:
            if (!parse_double(optarg, 0, 1, &o->negative_until) || o->negative_until <= 0 || o->negative_until >= 1)
                return bad_flag("--negative-until", optarg, "must be a number between 0 and 1");
            break;
        case O_NEG: o->negative = optarg; break;
        case O_PROMPT_L: o->prompt_l = optarg; break;
        case O_NEGATIVE_L: o->negative_l = optarg; break;
        case 'o': o->output = optarg; break;
        case 'W':
            if (!parse_int(optarg, 8, 4096, &o->width)) return bad_flag("--width", optarg, "must be 8..4096");
            o->size_given = true;
            break;
        case 'H':
            if (!parse_int(optarg, 8, 4096, &o->height)) return bad_flag("--height", optarg, "must be 8..4096");
            o->size_given = true;
            break;
        case 's': if (!parse_int(optarg, 1, 10000, &o->steps)) return bad_flag("--steps", optarg, "must be 1..10000"); break;
        case 'c': if (!parse_double(optarg, 0, 100, &o->cfg)) return bad_flag("--cfg", optarg, "must be 0..100"); break;
        case 'S': o->sampler = optarg; break;
        case 'K': o->scheduler = optarg; break;
        case O_SIGMAS: o->sigmas = optarg; break;
        case 'r': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || optarg[0] == '-')
                return bad_flag("--seed", optarg, "must be a non-negative integer below 2^64");
            o->seed = v;
            o->seed_given = true;
            break;
        }
        case 'b': if (!parse_int(optarg, 1, KILN_MAX_BATCH, &o->batch)) return bad_flag("--batch", optarg, "must be 1..64"); break;
        case O_CLIP_SKIP: if (!parse_int(optarg, 1, 24, &o->clip_skip)) return bad_flag("--clip-skip", optarg, "must be 1..24"); break;
        case 'd':
            if (!parse_double(optarg, 1e-4, 1, &o->denoise)) return bad_flag("--denoise", optarg, "must be in (0, 1]");
            break;
        case O_INIT_IMAGE: o->init_image = optarg; break;
        case O_INIT_NOISE: o->init_noise = optarg; break;
        case O_SAVE_LATENT: o->save_latent = optarg; break;
        case 'B': o->backend = optarg; break;
        case O_DEVICE: if (!parse_int(optarg, 0, 64, &o->device)) return bad_flag("--device", optarg, "must be 0..64"); break;
        case 't': if (!parse_int(optarg, 1, 1024, &o->threads)) return bad_flag("--threads", optarg, "must be 1..1024"); break;
        case O_JSON: o->json = true; break;
        case O_COMPUTE:
            if (!kiln_compute_from_name(optarg, &o->compute)) return bad_flag("--compute", optarg, "must be f32, f16 or bf16");
            o->compute_set = true;
            break;
        case O_CLEANING:
            if (strcmp(optarg, "clip") == 0) o->cleaning = KILN_TEXT_CLEAN_FTFY;
            else if (strcmp(optarg, "comfyui") == 0) o->cleaning = KILN_TEXT_CLEAN_BASIC;
            else return bad_flag("--text-cleaning", optarg, "must be clip or comfyui");
            break;
        case O_INFO: o->info = optarg; break;
        case O_CONVERT: o->convert = optarg; break;
        case O_SAVE_CHECKPOINT: o->save_checkpoint = optarg; break;
        case O_LIST_DEVICES: o->list_devices = true; break;
        case O_WORKFLOW: o->workflow = optarg; break;
        case O_GUIDANCE: /* "none": FluxDisableGuidance */
            if (strcmp(optarg, "none") == 0) o->guidance = -1.0;
            else if (!parse_double(optarg, 0.01, 100, &o->guidance))
                return bad_flag("--guidance", optarg, "must be 0.01..100 or none");
            break;
        case O_MODELS:
            if (o->nmodel_dirs == MAX_MODEL_DIRS) return bad_flag("--models", optarg, "at most 16 folders");
            o->model_dirs[o->nmodel_dirs++] = optarg;
            break;
        case O_MASK: o->mask = optarg; break;
        case O_MASK_CHANNEL: o->mask_channel = optarg; break;
        case O_REFERENCE_METHOD:
            if (kiln_reference_method_from_name(optarg, &o->reference_placement) != KILN_OK)
                return bad_flag("--reference-method", optarg, "offset, index or uxo/uno");
            o->reference_method = o->reference_placement == KILN_REFERENCE_OFFSET ? NULL : optarg;
            break;
        case O_REFERENCE:
            if (o->nreferences == KILN_MAX_REFERENCES) return bad_flag("--reference-image", optarg, "at most 8");
            if (access(optarg, R_OK) != 0) return bad_flag("--reference-image", optarg, strerror(errno));
            o->references[o->nreferences++] = optarg;
            break;
        case O_DIFFERENTIAL:
            if (!parse_double(optarg, 0, 1, &o->differential) || o->differential == 0)
                return bad_flag("--differential-diffusion", optarg, "must be in (0, 1]");
            break;
        case O_SLG:
        case O_SLG_SINGLE: {
            const bool single = c == O_SLG_SINGLE;
            if (!parse_layers(optarg, single ? o->slg_single : o->slg_double,
                              single ? &o->slg_single_count : &o->slg_double_count))
                return bad_flag(single ? "--slg-single" : "--slg", optarg, "must be block numbers 0..63, as 7,8,9");
            break;
        }
        case O_SLG_SCALE:
            if (!parse_double(optarg, 0, 10, &o->slg_scale)) return bad_flag("--slg-scale", optarg, "must be 0..10");
            break;
        case O_SLG_START:
        case O_SLG_END:
            if (!parse_double(optarg, 0, 1, c == O_SLG_START ? &o->slg_start : &o->slg_end))
                return bad_flag(c == O_SLG_START ? "--slg-start" : "--slg-end", optarg, "must be 0..1");
            break;
        case O_SLG_RESCALE:
            if (!parse_double(optarg, 0, 10, &o->slg_rescale))
                return bad_flag("--slg-rescale", optarg, "must be 0..10");
            break;
        case O_SLG_UNCOND: o->slg_uncond = true; break;
        case O_CFG_ZERO_STAR: o->cfg_zero_star = true; break;
        case O_TCFG: o->tcfg = true; break;
        case O_MAHIRO: o->mahiro = true; break;
        case O_CFG_NORM:
            if (!parse_double(optarg, 0, 100, &o->cfg_norm) || o->cfg_norm == 0)
                return bad_flag("--cfg-norm", optarg, "must be in (0, 100]");
            break;
        case O_SAG: {
            double v[2] = {0.0, 2.0};
            const char *comma = strchr(optarg, ',');
            if (!(comma ? parse_numbers(optarg, 2, v) : parse_double(optarg, -2, 5, &v[0])) || !(v[0] >= -2 &&
                  v[0] <= 5 && v[0] != 0 && v[1] > 0 && v[1] <= 10))
                return bad_flag("--sag", optarg, "SCALE[,BLUR]: -2..5 (not 0) and above 0 to 10");
            o->sag_given = true;
            o->sag = (kiln_sag){v[0], v[1]};
            break;
        }
        case O_DEEP_SHRINK: {
            double v[4] = {3, 2, 0, 0.35};
            const char *comma = strchr(optarg, ',');
            const int given = comma && strchr(comma + 1, ',') ? 4 : 2;
            if (!parse_numbers(optarg, given, v) || v[0] != floor(v[0]) || !(v[0] >= 1 && v[0] <= 32) ||
                !(v[1] >= 0.1 && v[1] <= 9) || !(v[2] >= 0 && v[2] <= 1) || !(v[3] >= 0 && v[3] <= 1))
                return bad_flag("--deep-shrink", optarg, "BLOCK,FACTOR[,START,END]: a block 1..32, a factor 0.1..9, "
                                "percents 0..1");
            o->deep_shrink_given = true;
            o->deep_shrink.block_number = (int)v[0];
            o->deep_shrink.downscale_factor = v[1];
            o->deep_shrink.start_percent = v[2], o->deep_shrink.end_percent = v[3];
            break;
        }
        case O_DEEP_SHRINK_METHOD: {
            char down[32] = "", up[32] = "";
            const char *comma = strchr(optarg, ',');
            const size_t n = comma ? (size_t)(comma - optarg) : strlen(optarg);
            kiln_resample_method m[2];
            if (n < sizeof down) memcpy(down, optarg, n);
            snprintf(up, sizeof up, "%s", comma ? comma + 1 : down);
            if (!kiln_resample_from_name(down, &m[0]) || !kiln_resample_from_name(up, &m[1]))
                return bad_flag("--deep-shrink-method", optarg, "DOWN[,UP]: bicubic, bilinear, nearest-exact, area or "
                                "bislerp");
            o->deep_shrink.downscale_method = kiln_resample_name(m[0]);
            o->deep_shrink.upscale_method = kiln_resample_name(m[1]);
            break;
        }
        case O_DEEP_SHRINK_BEFORE_SKIP: o->deep_shrink_before_skip = true; break;
        case O_HYPERTILE: {
            double v[3] = {256, 2, 0};
            int given = 1;
            for (const char *c = optarg; *c; c++) given += *c == ',';
            if (given > 3 || !parse_numbers(optarg, given, v) || v[0] != floor(v[0]) || v[1] != floor(v[1]) ||
                v[2] != floor(v[2]) || !(v[0] >= 1 && v[0] <= 2048) || !(v[1] >= 1 && v[1] <= 128) ||
                !(v[2] >= 0 && v[2] <= 10))
                return bad_flag("--hypertile", optarg, "TILE[,SWAP[,DEPTH]]: a tile 1..2048 pixels, swap 1..128, "
                                "depth 0..10");
            o->hypertile_given = true;
            o->hypertile.tile_size = (int)v[0], o->hypertile.swap_size = (int)v[1], o->hypertile.max_depth = (int)v[2];
            break;
        }
        case O_HYPERTILE_SCALE_DEPTH: o->hypertile.scale_depth = true; break;
        case O_PIXART_SIZE:
            if (!parse_pair(optarg, 'x', 1, 16384, &o->pixart_width, &o->pixart_height))
                return bad_flag("--pixart-size", optarg, "must be WxH, each 1..16384");
            break;
        case O_FRESCA: {
            double v[3] = {1.0, 1.25, 20};
            int given = 1;
            for (const char *p = optarg; *p; p++) given += *p == ',';
            if (given < 2 || given > 3 || !parse_numbers(optarg, given, v) || !(v[0] >= 0 && v[0] <= 10) ||
                !(v[1] >= 0 && v[1] <= 10) || v[2] != floor(v[2]) || !(v[2] >= 1 && v[2] <= 10000))
                return bad_flag("--fresca", optarg, "LOW,HIGH[,CUTOFF]: scales 0..10, a cutoff 1..10000");
            o->fresca_given = true;
            o->fresca = (kiln_fresca){v[0], v[1], (int)v[2]};
            break;
        }
        case O_EASY_CACHE:
        case O_LAZY_CACHE: {
            const bool easy = c == O_EASY_CACHE;
            double v[3] = {0.2, 0.15, 0.95};
            int given = 1;
            for (const char *p = optarg; *p; p++) given += *p == ',';
            if (o->step_cache_given || given == 2 || given > 3 || !parse_numbers(optarg, given, v) ||
                !(v[0] >= 0 && v[0] <= 3) || !(v[1] >= 0 && v[1] <= v[2] && v[2] <= 1))
                return bad_flag(easy ? "--easy-cache" : "--lazy-cache", optarg,
                                "THRESHOLD[,START,END], once: a threshold 0..3, 0 <= START <= END <= 1");
            o->step_cache_given = true;
            o->step_cache = (kiln_step_cache){easy ? KILN_EASY_CACHE : KILN_LAZY_CACHE, v[0], v[1], v[2]};
            break;
        }
        case O_T5_MIN_PADDING:
        case O_T5_MIN_LENGTH: {
            const bool padding = c == O_T5_MIN_PADDING;
            if (!parse_int(optarg, 0, 10000, padding ? &o->t5_min_padding : &o->t5_min_length))
                return bad_flag(padding ? "--t5-min-padding" : "--t5-min-length", optarg, "must be 0..10000");
            o->t5_options = true;
            break;
        }
        case O_EPSILON_SCALING:
            if (!parse_double(optarg, 0.5, 1.5, &o->epsilon_scaling))
                return bad_flag("--epsilon-scaling", optarg, "must be 0.5..1.5");
            break;
        case O_APG: {
            double v[3];
            if (!parse_numbers(optarg, 3, v) || !(v[0] >= -10 && v[0] <= 10 && v[1] >= 0 && v[1] <= 50 &&
                                                  v[2] >= -5 && v[2] <= 1))
                return bad_flag("--apg", optarg, "ETA,NORM,MOMENTUM: -10..10, 0..50 and -5..1");
            o->apg = true;
            o->apg_eta = v[0], o->apg_norm_threshold = v[1], o->apg_momentum = v[2];
            break;
        }
        case O_FREEU:
        case O_FREEU_V2: {
            const char *flag = c == O_FREEU ? "--freeu" : "--freeu-v2";
            double v[4];
            if (o->freeu_given) return bad_flag(flag, optarg, "FreeU is given already (--freeu or --freeu-v2: one)");
            if (!parse_numbers(optarg, 4, v) || !(v[0] >= 0 && v[0] <= 10 && v[1] >= 0 && v[1] <= 10 && v[2] >= 0 &&
                                                  v[2] <= 10 && v[3] >= 0 && v[3] <= 10))
                return bad_flag(flag, optarg, "B1,B2,S1,S2, each 0..10");
            o->freeu = (kiln_freeu){v[0], v[1], v[2], v[3], c == O_FREEU_V2};
            o->freeu_given = true;
            break;
        }
        case O_AREA_PROMPT:
            if (o->nareas == KILN_MAX_PROMPT_PARTS - 1) return bad_flag("--area-prompt", optarg, "at most 7");
            if (!parse_area(optarg, &o->areas[o->nareas]))
                return bad_flag("--area-prompt", optarg, "X,Y,W,H[,S]:TEXT, a box of at least 8x8 pixels at or past "
                                "0, 0 and a strength from 0 (not) to 10");
            o->nareas++;
            break;
        case O_ZSNR: o->zsnr = true; break;
        case O_EDM: {
            const char *comma = strchr(optarg, ',');
            const size_t len = comma ? (size_t)(comma - optarg) : strlen(optarg);
            double v[2] = {120.0, 0.002};
            if (len == 0 || len >= sizeof o->edm || (comma && !parse_numbers(comma + 1, 2, v)) ||
                !(v[1] > 0 && v[1] < v[0] && v[0] <= 1000))
                return bad_flag("--edm", optarg, "SAMPLING[,SIGMA_MAX,SIGMA_MIN], 0 < SIGMA_MIN < SIGMA_MAX <= 1000");
            memcpy(o->edm, optarg, len);
            o->edm[len] = '\0';
            o->edm_sigma_max = v[0], o->edm_sigma_min = v[1];
            break;
        }
        case O_PAG:
            if (!parse_double(optarg, 0, 100, &o->pag_scale) || o->pag_scale == 0)
                return bad_flag("--pag", optarg, "must be in (0, 100]");
            break;
        case O_RESCALE_CFG:
            if (!parse_double(optarg, 0, 1, &o->rescale_cfg) || o->rescale_cfg == 0)
                return bad_flag("--rescale-cfg", optarg, "must be in (0, 1]");
            break;
        case O_OUTPAINT: {
            int rc = parse_outpaint(optarg, &o->outpaint);
            if (rc) return rc;
            o->outpaint_given = true;
            break;
        }
        case O_REFINER: o->refiner = optarg; break;
        case O_REFINER_SWITCH:
            if (!parse_double(optarg, 0.01, 0.99, &o->refiner_switch))
                return bad_flag("--refiner-switch", optarg, "must be 0.01..0.99");
            o->refiner_switch_given = true;
            break;
        case O_PREDICTION:
            if (strcmp(optarg, "eps") && strcmp(optarg, "v") && strcmp(optarg, "lcm") && strcmp(optarg, "x0") &&
                strcmp(optarg, "img_to_img"))
                return bad_flag("--prediction", optarg, "must be eps, v, lcm, x0 or img_to_img");
            o->prediction = optarg;
            break;
        case O_FEATHERING:
            if (!parse_int(optarg, 0, KILN_OUTPAINT_MAX, &o->outpaint.feathering))
                return bad_flag("--feathering", optarg, "must be 0..8192 pixels");
            o->feathering_given = true;
            break;
        case O_HIRES_SCALE:
            if (!parse_double(optarg, 0.1, 8, &o->hires_scale)) return bad_flag("--hires-scale", optarg, "must be 0.1..8");
            break;
        case O_HIRES_DENOISE:
            if (!parse_double(optarg, 1e-4, 1, &o->hires_denoise))
                return bad_flag("--hires-denoise", optarg, "must be in (0, 1]");
            o->hires_denoise_given = true;
            break;
        case O_HIRES_STEPS:
            if (!parse_int(optarg, 1, 10000, &o->hires_steps)) return bad_flag("--hires-steps", optarg, "must be 1..10000");
            break;
        case O_HIRES_METHOD:
            if (!kiln_resample_from_name(optarg, &o->hires_method))
                return bad_flag("--hires-method", optarg, "must be nearest-exact, bilinear, bicubic, area or bislerp");
            o->hires_method_given = true;
            break;
        case O_UPSCALE_MODEL: o->upscale_model = optarg; break;
        case O_VAE_TILE: {
            /* SIZE or SIZE:OVERLAP, VAEDecodeTiled's ranges */
            char *colon = strchr(optarg, ':');
            if (colon) *colon = '\0';
            bool ok = parse_int(optarg, 64, 4096, &o->vae_tile);
            o->vae_tile_overlap = KILN_VAE_TILE_OVERLAP;
            if (colon) ok = ok && parse_int(colon + 1, 0, 4096, &o->vae_tile_overlap), *colon = ':';
            if (!ok) return bad_flag("--vae-tile", optarg, "must be SIZE or SIZE:OVERLAP, 64..4096 and 0..4096 pixels");
            break;
        }
        case O_CONTROLNET:
        case O_CONTROL_IMAGE:
        case O_CONTROL_STRENGTH:
        case O_CONTROL_TYPE:
        case O_CONTROL_MASK:
        case O_CONTROL_CANNY:
        case O_CONTROL_START:
        case O_CONTROL_END:
            if (!add_unit_value(&o->control_values[c - O_CONTROLNET], control_flags[c - O_CONTROLNET].name, optarg))
                return 2;
            break;
        case O_IP_ADAPTER:
        case O_CLIP_VISION:
        case O_IP_IMAGE:
        case O_IP_WEIGHT:
        case O_IP_START:
        case O_IP_END:
            if (!add_unit_value(&o->ip_values[c - O_IP_ADAPTER], ip_flags[c - O_IP_ADAPTER].name, optarg)) return 2;
            break;
        case O_REDUX:
        case O_REDUX_VISION:
        case O_REDUX_IMAGE:
        case O_REDUX_STRENGTH:
            if (!add_unit_value(&o->redux_values[c - O_REDUX], redux_flags[c - O_REDUX].name, optarg)) return 2;
            break;
        case O_VAE: o->parts.vae = optarg; break;
        case O_TEXT_ENCODER:
        {
            int k = 0;
            while (k < KILN_MAX_TEXT_ENCODER_PARTS && o->parts.text_encoders[k]) k++;
            if (k == KILN_MAX_TEXT_ENCODER_PARTS)
                return bad_flag("--text-encoder", optarg, "at most 3 (SD3's CLIP-L, bigG and T5)");
            o->parts.text_encoders[k] = optarg;
            break;
        }
        case O_TOKENIZER: o->parts.tokenizer = optarg; break;
        case O_CONFIG: o->parts.config = optarg; break;
        case O_EMBEDDINGS: o->embeddings = optarg; break;
        case O_WEIGHT_DTYPE: {
            bool convert;
            kiln_dtype dtype;
            if (!kiln_weight_dtype_from_name(optarg, &convert, &dtype))
                return bad_flag("--weight-dtype", optarg, "must be " KILN_WEIGHT_DTYPES);
            o->parts.weight_dtype = optarg;
            break;
        }
        case O_SDXL_SIZE:
        case O_SDXL_CROP:
        case O_SDXL_TARGET:
        case O_NEGATIVE_SDXL_SIZE:
        case O_NEGATIVE_SDXL_CROP:
        case O_NEGATIVE_SDXL_TARGET: {
            const bool negative = c >= O_NEGATIVE_SDXL_SIZE;
            const int k = negative ? c - O_NEGATIVE_SDXL_SIZE : c - O_SDXL_SIZE;
            if (!parse_sdxl_numbers(negative ? &o->negative_sdxl : &o->sdxl, k, negative, optarg)) return 2;
            if (negative) o->negative_sdxl_given[k] = true;
            o->sdxl_given = true;
            break;
        }
        case O_AESTHETIC:
        case O_NEGATIVE_AESTHETIC: {
            const char *flag = c == O_AESTHETIC ? "--aesthetic" : "--negative-aesthetic";
            if (!parse_double(optarg, 0, 1000, c == O_AESTHETIC ? &o->sdxl.aesthetic : &o->sdxl.negative_aesthetic))
                return bad_flag(flag, optarg, "must be 0..1000");
            o->aesthetic_given = true;
            break;
        }
        case O_LATENT_TONEMAP:
        case O_LATENT_SHARPEN: {
            const bool tonemap = c == O_LATENT_TONEMAP;
            const char *flag = tonemap ? "--latent-tonemap" : "--latent-sharpen";
            double v[3];
            if (o->operation_given) return bad_flag(flag, optarg, "one latent operation (--latent-tonemap or "
                                                                  "--latent-sharpen) a run");
            if (tonemap ? !parse_double(optarg, 0, 100, &v[0])
                        : !parse_numbers(optarg, 3, v) || !(v[0] >= 1 && v[0] <= 31 && v[0] == (int)v[0] &&
                                                            v[1] >= 0.1 && v[1] <= 10 && v[2] >= 0 && v[2] <= 5))
                return bad_flag(flag, optarg, tonemap ? "must be 0..100" : "R,S,A: 1..31, 0.1..10 and 0..5");
            o->operation_given = true;
            o->operation = tonemap ? (kiln_latent_operation){.kind = KILN_LATENT_OPERATION_TONEMAP_REINHARD,
                                                             .multiplier = v[0]}
                                   : (kiln_latent_operation){.kind = KILN_LATENT_OPERATION_SHARPEN,
                                                             .sharpen_radius = (int)v[0], .sigma = v[1],
                                                             .alpha = v[2]};
            break;
        }
        case O_MERGE:
        case O_MERGE_CLIP: {
            const char *flag = c == O_MERGE ? "--merge" : "--merge-clip";
            char *colon = strrchr(optarg, ':');
            double ratio;
            if (!colon || colon == optarg || !parse_double(colon + 1, 0, 1, &ratio))
                return bad_flag(flag, optarg, "FILE:RATIO, RATIO 0..1");
            for (int i = 0; i < o->parts.nmerges; i++)
                if (o->merges[i].text_encoders == (c == O_MERGE_CLIP)) return bad_flag(flag, optarg, "given already");
            *colon = '\0'; /* optarg is argv's, which outlives the run */
            o->merges[o->parts.nmerges++] =
                (kiln_merge){.path = optarg, .kind = KILN_MERGE_SIMPLE, .ratio = ratio, .text_encoders = c == O_MERGE_CLIP};
            o->parts.merges = o->merges;
            break;
        }
        case O_LORA: {
            if (o->nloras == MAX_LORAS) return bad_flag("--lora", optarg, "at most 16 LoRAs");
            int rc = parse_lora(optarg, &o->loras[o->nloras++]);
            if (rc) return rc;
            break;
        }
        case O_HYPERNETWORK: {
            if (o->nhypernetworks == KILN_MAX_HYPERNETWORKS)
                return bad_flag("--hypernetwork", optarg, "at most 8 hypernetworks");
            kiln_run_hypernetwork *h = &o->hypernetworks[o->nhypernetworks++];
            /* the strength is a trailing field that reads as a number, so a file name may hold ':' itself */
            char *colon = strrchr(optarg, ':');
            double s = 1.0;
            const bool strength = colon && colon != optarg && parse_double(colon + 1, -INFINITY, INFINITY, &s);
            if (!(s >= -10.0 && s <= 10.0)) return bad_flag("--hypernetwork", optarg, "a strength -10..10");
            if (strength) *colon = '\0';
            *h = (kiln_run_hypernetwork){optarg, s}; /* argv's, which outlives the run */
            if (access(optarg, R_OK) != 0) return bad_flag("--hypernetwork", optarg, strerror(errno));
            break;
        }
        case 'h': usage(stdout); exit(0);
        default:
            fprintf(stderr, "gen: unknown or incomplete flag '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gen: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->info || o->list_devices) return 0;
    if (o->convert) {
        if (!has_suffix(o->output, ".safetensors")) {
            fprintf(stderr, "gen: --convert %s: give --output FILE.safetensors\n", o->convert);
            return 2;
        }
        return destination_ok("--output", o->output) ? 0 : 2;
    }
    if (o->save_checkpoint) {
        if (!has_suffix(o->save_checkpoint, ".safetensors")) {
            fprintf(stderr, "gen: --save-checkpoint %s: a .safetensors file\n", o->save_checkpoint);
            return 2;
        }
        if (o->prompt || o->prompts_file || o->workflow) {
            fprintf(stderr, "gen: --save-checkpoint writes the loaded model and exits: give it without --%s\n",
                    o->prompt ? "prompt" : o->prompts_file ? "prompts" : "workflow");
            return 2;
        }
        return destination_ok("--save-checkpoint", o->save_checkpoint) ? 0 : 2;
    }
    if (o->workflow && (o->prompt || o->prompts_file || o->model)) {
        fprintf(stderr, "gen: --workflow %s carries its own prompts, models and settings: give it with --output, "
                        "--models and the backend's flags, without --%s\n", o->workflow,
                o->prompt ? "prompt" : o->prompts_file ? "prompts" : "model");
        return 2;
    }
    if (o->sigmas && (o->refiner || o->hires_scale || o->denoise != 1.0)) {
        fprintf(stderr, "gen: --sigmas with %s: the sigmas are the whole sampling (where it starts too; not yet "
                        "with a second pass)\n", o->refiner ? "--refiner" : o->hires_scale ? "--hires-scale" : "--denoise");
        return 2;
    }
    if (o->negative_until && o->refiner) {
        fprintf(stderr, "gen: --negative-until with --refiner: the refiner reads its own prompts (not yet)\n");
        return 2;
    }
    o->deep_shrink.downscale_after_skip = !o->deep_shrink_before_skip;
    if (!o->hypertile_given && o->hypertile.scale_depth) {
        fprintf(stderr, "gen: --hypertile-scale-depth goes with --hypertile\n");
        return 2;
    }
    if (!o->deep_shrink_given && (o->deep_shrink_before_skip || o->deep_shrink.downscale_method)) {
        fprintf(stderr, "gen: --deep-shrink-method and --deep-shrink-before-skip go with --deep-shrink\n");
        return 2;
    }
    if (o->prompt && o->prompts_file) {
        fprintf(stderr, "gen: give --prompt (one prompt) or --prompts FILE (one a line), not both\n");
        return 2;
    }
    if (o->workflow && (o->parts.vae || o->parts.text_encoders[0] || o->parts.weight_dtype || o->parts.nmerges)) {
        fprintf(stderr, "gen: --workflow %s names its own %s (VAELoader, DualCLIPLoader, UNETLoader's weight_dtype, "
                        "the merge nodes); of the files beside a model it takes only --tokenizer and --config\n",
                o->workflow, o->parts.vae ? "VAE" : o->parts.text_encoders[0] ? "text encoders"
                                                  : o->parts.weight_dtype  ? "weight dtype" : "merges");
        return 2;
    }
    if (o->nmodel_dirs && !o->workflow) {
        fprintf(stderr, "gen: --models is where a --workflow's files are looked up; there is no --workflow\n");
        return 2;
    }
    if (!o->prompt && !o->prompts_file && !o->workflow) {
        fprintf(stderr, "gen: --prompt (or --prompts FILE) is required\n");
        usage(stderr);
        return 2;
    }
    if (!o->output) {
        fprintf(stderr, "gen: --output is required\n");
        return 2;
    }
    if (kiln_image_format_of(o->output) == KILN_IMAGE_UNKNOWN) {
        fprintf(stderr, "gen: --output %s: name a .png, .jpg or .jpeg file\n", o->output);
        return 2;
    }
    if (o->mask && !o->init_image) {
        fprintf(stderr, "gen: --mask needs --init-image (the picture to inpaint)\n");
        return 2;
    }
    if (o->mask_channel && !o->mask) {
        fprintf(stderr, "gen: --mask-channel needs --mask (the picture it reads)\n");
        return 2;
    }
    if (o->mask_channel && strcmp(o->mask_channel, "red") && strcmp(o->mask_channel, "green") &&
        strcmp(o->mask_channel, "blue") && strcmp(o->mask_channel, "alpha"))
        return bad_flag("--mask-channel", o->mask_channel, "red, green, blue or alpha");
    if (o->outpaint_given && !o->init_image) {
        fprintf(stderr, "gen: --outpaint needs --init-image (the picture to grow)\n");
        return 2;
    }
    if (o->outpaint_given && o->mask) {
        fprintf(stderr, "gen: --outpaint makes its own mask: give --mask or --outpaint, not both\n");
        return 2;
    }
    if ((o->hires_steps || o->hires_denoise_given || o->hires_method_given) && !o->hires_scale) {
        fprintf(stderr, "gen: --hires-steps, --hires-denoise and --hires-method need --hires-scale\n");
        return 2;
    }
    if (o->hires_scale && o->init_image) {
        fprintf(stderr, "gen: --hires-scale is for txt2img: not with --init-image\n");
        return 2;
    }
    if (!o->hires_steps) o->hires_steps = o->steps;
    if (o->refiner_switch_given && !o->refiner) {
        fprintf(stderr, "gen: --refiner-switch needs --refiner\n");
        return 2;
    }
    if (o->reference_method && !o->nreferences) {
        fprintf(stderr, "gen: --reference-method needs --reference-image\n");
        return 2;
    }
    if (o->refiner && (o->init_image || o->hires_scale || o->ncontrols || o->nimage_prompts || o->nhypernetworks)) {
        fprintf(stderr, "gen: --refiner is for txt2img without %s\n",
                o->init_image    ? "--init-image"
                : o->hires_scale ? "--hires-scale"
                : o->ncontrols   ? "--controlnet"
                : o->nhypernetworks ? "--hypernetwork"
                                 : "--ip-adapter");
        return 2;
    }
    if (o->refiner && access(o->refiner, R_OK) != 0) return bad_flag("--refiner", o->refiner, strerror(errno));
    if (o->edm[0] && (o->prediction || o->zsnr)) {
        fprintf(stderr, "gen: --edm with %s: ModelSamplingContinuousEDM takes the place of ModelSamplingDiscrete\n",
                o->prediction ? "--prediction" : "--zsnr");
        return 2;
    }
    if (o->apg && o->pag_scale > 0) {
        fprintf(stderr, "gen: --apg with --pag: PerturbedAttentionGuidance's pass would take APG's positive "
                        "prediction, which kiln does not give it\n");
        return 2;
    }
    if (o->slg_uncond && !o->slg_double_count && !o->slg_single_count) {
        fprintf(stderr, "gen: --slg-uncond without --slg or --slg-single: no blocks to leave out\n");
        return 2;
    }
    if (o->apg && (o->slg_double_count || o->slg_single_count) && !o->slg_uncond) {
        fprintf(stderr, "gen: --apg with --slg: SkipLayerGuidance's pass would take APG's positive prediction, "
                        "which kiln does not give it (not yet)\n");
        return 2;
    }
    if (o->nareas && (o->ncontrols || o->nimage_prompts || o->mask || o->outpaint_given || o->refiner ||
                      o->nreferences || o->slg_double_count || o->slg_single_count || o->nstyles || o->prompt_l ||
                      o->negative_l || o->sdxl_given)) {
        fprintf(stderr, "gen: --area-prompt with %s: prompts on areas run each on its own box, without it (not "
                        "yet)\n",
                o->ncontrols ? "--controlnet" : o->nimage_prompts ? "--ip-adapter" : o->mask ? "--mask"
                : o->outpaint_given ? "--outpaint" : o->refiner ? "--refiner" : o->nreferences ? "--reference-image"
                : o->nstyles ? "--redux" : o->prompt_l || o->negative_l ? "--prompt-l" : o->sdxl_given ? "SDXL's sizes"
                : "--slg");
        return 2;
    }
    if (o->aesthetic_given && !o->refiner) {
        fprintf(stderr, "gen: --aesthetic/--negative-aesthetic need --refiner (the refiner's prompts take them)\n");
        return 2;
    }
    if (o->feathering_given && !o->outpaint_given) {
        fprintf(stderr, "gen: --feathering needs --outpaint\n");
        return 2;
    }
    if (o->upscale_model && access(o->upscale_model, R_OK) != 0)
        return bad_flag("--upscale-model", o->upscale_model, strerror(errno));
    if (o->mask && access(o->mask, R_OK) != 0) return bad_flag("--mask", o->mask, strerror(errno));
    if (o->differential && !o->mask && !o->outpaint_given) {
        fprintf(stderr, "gen: --differential-diffusion needs --mask or --outpaint\n");
        return 2;
    }
    if (control_units(o)) return 2;
    if (image_prompt_units(o)) return 2;
    if (redux_units(o)) return 2;
    if (!destination_ok("--output", o->output) || (o->save_latent && !destination_ok("--save-latent", o->save_latent)))
        return 2;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- progress on stderr: a bar on a terminal, plain lines otherwise ---- */

typedef struct progress {
    double start;
    bool tty, quiet;
} progress;

static kiln_status show_progress(void *ctx, int step, int total, const float *denoised)
{
    (void)denoised;
    progress *p = ctx;
    if (p->quiet) return KILN_OK;
    int done = step + 1;
    double elapsed = now_s() - p->start, rate = done / elapsed, eta = (total - done) / rate;
    if (p->tty) {
        char bar[31];
        int fill = done * 30 / total;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\rsampling [%s] %d/%d  %.2f it/s  ETA %.0fs ", bar, done, total, rate, eta);
        if (done == total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "step %d/%d %.2f it/s eta %.1fs\n", done, total, rate, eta);
    }
    return KILN_OK;
}

/* ---- the run ---- */

static int fail(const char *what)
{
    fprintf(stderr, "gen: %s: %s\n", what, kiln_last_error());
    return 1;
}

static void output_name(const char *output, int index, int batch, char *buf, size_t size)
{
    if (batch == 1) {
        snprintf(buf, size, "%s", output);
        return;
    }
    const char *dot = kiln_image_extension(output);
    snprintf(buf, size, "%.*s_%05d%s", (int)(dot - output), output, index + 1, dot);
}

/* --list-devices: the CPU, then each GPU backend's devices by the index
 * --device takes, marking the one taken without it; a backend that sees none
 * says why. */
static int list_devices(void)
{
    static const struct {
        const char *name;
        kiln_status (*devices)(kiln_device_info *out, int max, int *count);
    } gpus[] = {{"vulkan", kiln_backend_vulkan_devices}, {"cuda", kiln_backend_cuda_devices}};
    printf("cpu: %ld cores\n", sysconf(_SC_NPROCESSORS_ONLN));
    for (size_t b = 0; b < sizeof gpus / sizeof *gpus; b++) {
        kiln_device_info info[KILN_MAX_DEVICES];
        int n;
        if (gpus[b].devices(info, KILN_MAX_DEVICES, &n) != KILN_OK) {
            printf("%s: none (%s)\n", gpus[b].name, kiln_last_error());
            kiln_clear_error();
            continue;
        }
        for (int i = 0; i < n; i++)
            printf("%s %d: %s: %s%s\n", gpus[b].name, i, info[i].name, info[i].details,
                   info[i].preferred ? " (the default)" : "");
    }
    return 0;
}

/* --info on a LoRA file: its modules, ranks, and the base model its
 * trainer recorded (kohya's ss_* metadata). */
static void print_lora_info(const char *path, const kiln_lora_info *info)
{
    printf("lora         %s\n", path);
    printf("modules      %d: %d UNet, %d text encoder (LoRA %d, LoCon %d, LoHa %d", info->unet_modules + info->clip_modules,
           info->unet_modules, info->clip_modules, info->lora, info->locon, info->loha);
    if (info->lokr) printf(", LoKr %d", info->lokr);
    if (info->full) printf(", whole differences %d", info->full);
    printf(")");
    if (info->dora) printf(", %d with DoRA magnitudes", info->dora);
    if (info->bias) printf(", %d with bias differences", info->bias);
    printf("\n");
    if (!info->max_rank) printf("rank         none (LoKr of whole factors)");
    else if (info->min_rank == info->max_rank) printf("rank         %d", info->min_rank);
    else printf("rank         %d to %d", info->min_rank, info->max_rank);
    if (!info->alphas) printf(", no alpha (scale 1)\n");
    else if (info->min_alpha == info->max_alpha) printf(", alpha %g\n", (double)info->min_alpha);
    else printf(", alpha %g to %g\n", (double)info->min_alpha, (double)info->max_alpha);
    if (info->dit_modules)
        printf("for          a DiT: %d modules in Flux's (BFL's, XLabs'), SD3's (Stability's) or diffusers' "
               "transformer names\n",
               info->dit_modules);
    if (info->text_width)
        printf("text width   %d%s\n", info->text_width,
               info->text_width == 768 ? " (SD 1.x, SDXL's and Flux's CLIP-L)"
               : info->text_width == 1024 ? " (SD 2.x)"
               : info->text_width == 1280 ? " (SDXL's OpenCLIP bigG)"
                                          : "");
    kiln_st_file *f;
    if (kiln_st_open(path, &f) != KILN_OK) return;
    static const char *const keys[][2] = {{"ss_base_model_version", "base"}, {"ss_sd_model_name", "trained on"},
                                          {"ss_network_module", "network"}};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *v = kiln_st_metadata(f, keys[k][0]);
        if (v) printf("%-12s %s\n", keys[k][1], v);
    }
    kiln_st_close(f);
}

/* The residual linears of a Flux or SD3 ControlNet named `prefix`.N. */
static int count_flux_residuals(const kiln_checkpoint *ck, const char *prefix)
{
    char name[96];
    int n = 0;
    while (snprintf(name, sizeof name, "%s.%d.weight", prefix, n), kiln_checkpoint_find(ck, name)) n++;
    return n;
}

/* --info on a T2I-Adapter: its kind, the UNets it is for, its input and levels. */
static void print_t2i_adapter_info(const char *path, const kiln_checkpoint *ck)
{
    kiln_backend *be = NULL;
    kiln_weights *w = NULL;
    kiln_t2i_adapter a;
    kiln_status st = kiln_backend_create("cpu", NULL, &be);
    if (st == KILN_OK) st = kiln_weights_create(be, ck, &w);
    if (st == KILN_OK) st = kiln_t2i_adapter_bind(w, ck, &a);
    printf("t2i-adapter  %s\n", path);
    if (st != KILN_OK) {
        printf("unreadable   %s\n", kiln_last_error());
    } else {
        printf("kind         %s, for %s\n", a.light ? "light" : "full", a.xl ? "sdxl" : "sd1/sd2");
        printf("input        %s, unshuffled by %d\n",
               a.input_channels == 1 ? "1 channel (the picture's mean)" : "3 channels", a.unshuffle);
        printf("levels       %d of %d res blocks:", a.nlevels, a.nresnets);
        for (int l = 0; l < a.nlevels; l++) printf(" %lld", (long long)a.levels[l].channels);
        printf(" wide\n");
    }
    kiln_weights_free(w);
    kiln_backend_free(be);
}

/* --info on a ControlNet file: which UNet's encoder it copies, or which
 * transformer's blocks; or a T2I-Adapter. */
static bool print_controlnet_info(const char *path)
{
    kiln_checkpoint *ck;
    if (kiln_checkpoint_open_controlnet(path, &ck) != KILN_OK) return false;
    if (kiln_t2i_adapter_detect(ck)) {
        print_t2i_adapter_info(path, ck);
        kiln_checkpoint_close(ck);
        return true;
    }
    const kiln_st_tensor *hint = kiln_checkpoint_find(ck, KILN_CONTROLNET_ROOT ".input_hint_block.0.weight");
    const unet_config *cfg = hint ? kiln_unet_detect_at(ck, KILN_CONTROLNET_ROOT, true) : NULL;
    const bool flux = kiln_checkpoint_find(ck, "controlnet_blocks.0.weight") != NULL;
    if (hint) {
        printf("controlnet   %s\n", path);
        printf("for unet     %s\n", cfg ? cfg->name : "none kiln knows");
    } else if (flux) {
        const kiln_st_tensor *modes = kiln_checkpoint_find(ck, "controlnet_mode_embedder.weight");
        const kiln_st_tensor *hint_in = kiln_checkpoint_find(ck, "controlnet_x_embedder.weight");
        const kiln_st_tensor *x_in = kiln_checkpoint_find(ck, "x_embedder.weight");
        const bool pixels = kiln_checkpoint_find(ck, "input_hint_block.0.weight") != NULL;
        const bool inpainting = hint_in && x_in && hint_in->ndim == 2 && x_in->ndim == 2 &&
                                hint_in->shape[1] == x_in->shape[1] + 4; /* a mask's channel in 2x2 patches */
        printf("controlnet   %s\n", path);
        int control_type;
        if (kiln_sd35_control_type(ck, &control_type) != KILN_OK) control_type = -1;
        static const char *const control_types[] = {"blur", "canny", "depth"};
        const bool sd3 = kiln_checkpoint_find(ck, "pos_embed_input.proj.weight") != NULL;
        if (sd3 && !kiln_checkpoint_find(ck, "context_embedder.weight"))
            printf("for          sd3.5, Stability's kind (%s): the picture's latent, %d blocks without a caption "
                   "side\n", control_type >= 0 && control_type < 3 ? control_types[control_type] : "no preprocessing",
                   count_flux_residuals(ck, "controlnet_blocks"));
        else if (sd3) { /* an SD3 ControlNet: joint blocks alone; an inpainting one reads a mask's channel too */
            const kiln_st_tensor *patches = kiln_checkpoint_find(ck, "pos_embed_input.proj.weight");
            printf("for          sd3, InstantX's kind: %s, %d joint blocks\n",
                   patches->ndim == 4 && patches->shape[1] == 17 ? "the masked picture's latent and the mask"
                                                                : "the picture's latent", /* 16 channels and a mask */
                   count_flux_residuals(ck, "controlnet_blocks"));
        } else
            printf("for          flux, %s kind: %s, %d double and %d single blocks\n",
                   pixels ? "XLabs'" : inpainting ? "Alimama's inpainting" : "InstantX's",
                   pixels ? "the picture through a hint encoder"
                   : inpainting ? "the masked picture's latent and the mask"
                                : "the picture's latent",
                   count_flux_residuals(ck, "controlnet_blocks"), count_flux_residuals(ck, "controlnet_single_blocks"));
        if (modes && modes->ndim == 2) printf("union        %lld control types\n", (long long)modes->shape[0]);
    }
    kiln_checkpoint_close(ck);
    return hint || flux;
}

/* --info on an IP-Adapter: its tokens and what it fits. */
static bool print_ip_adapter_info(const char *path)
{
    kiln_checkpoint *ck;
    kiln_ip_adapter_info info;
    if (kiln_checkpoint_open_ip_adapter(path, &ck) != KILN_OK) return false;
    bool found = (kiln_checkpoint_has_prefix(ck, "image_proj.") || kiln_checkpoint_has_prefix(ck, "ip_adapter_proj_model.")) &&
                 kiln_ip_adapter_inspect(ck, &info) == KILN_OK;
    if (found && info.flux) {
        printf("ip-adapter   %s\n", path);
        printf("kind         XLabs' for Flux: a projection of the tower's image embeds (%d wide%s)\n", info.embed_dim,
               info.embed_dim == 768 ? ": CLIP ViT-L/14" : "");
        printf("tokens       %d, %d wide (T5's)\n", info.tokens, info.context_dim);
        printf("layers       %d double blocks\n", info.cross_attentions);
    } else if (found) {
        printf("ip-adapter   %s\n", path);
        if (info.projection == KILN_IP_PLUS)
            printf("kind         Plus: a Resampler of %d layers, %d heads, on the tower's hidden states\n",
                   info.resampler_layers, info.resampler_heads);
        else if (info.projection == KILN_IP_FULL)
            printf("kind         full-face: an MLP on each of the tower's hidden states\n");
        else
            printf("kind         plain: a projection of the tower's image embeds\n");
        printf("tokens       %d, %d wide (the UNet's context%s)\n", info.tokens, info.context_dim,
               info.context_dim == 768    ? ": SD 1.x"
               : info.context_dim == 1024 ? ": SD 2.x"
               : info.context_dim == 2048 ? ": SDXL"
                                          : "");
        if (info.projection != KILN_IP_PLAIN)
            printf("reads        %d-wide hidden states (the CLIP vision model's width%s)\n", info.embed_dim,
                   info.embed_dim == 1280 ? ": ViT-H/14" : info.embed_dim == 1664 ? ": ViT-bigG/14" : "");
        else
            printf("image embeds %d wide (the CLIP vision model's projection%s)\n", info.embed_dim,
                   info.embed_dim == 1024 ? ": ViT-H/14" : info.embed_dim == 1280 ? ": ViT-bigG/14" : "");
        printf("layers       %d cross-attentions\n", info.cross_attentions);
    }
    kiln_checkpoint_close(ck);
    return found;
}

static bool print_clip_vision_info(const char *path)
{
    kiln_backend *be;
    kiln_clip_vision *cv;
    if (kiln_backend_create("cpu", NULL, &be) != KILN_OK) return false;
    bool found = kiln_clip_vision_open(path, be, &cv) == KILN_OK;
    if (found) {
        const clip_vision_config *cfg = cv->config;
        printf("clip vision  %s\n", path);
        printf("network      %s: %d layers %d wide, %dx%d pictures in %d-pixel patches\n", cfg->name, cfg->layers,
               cfg->hidden, cfg->image_size, cfg->image_size, cfg->patch);
        if (cfg->siglip)
            printf("hidden state %d wide a token, %d tokens (SigLIP's, which FLUX.1 Redux reads)\n", cfg->hidden,
                   kiln_clip_vision_tokens(cfg));
        else
            printf("image embeds %d wide\n", cfg->projection);
        kiln_clip_vision_free(cv);
    }
    kiln_backend_free(be);
    return found;
}

/* --info on a style model (FLUX.1 Redux). */
static bool print_style_model_info(const char *path)
{
    kiln_backend *be;
    kiln_style_model *sm;
    if (kiln_backend_create("cpu", NULL, &be) != KILN_OK) return false;
    bool found = kiln_style_model_open(path, be, &sm) == KILN_OK;
    if (found) {
        printf("style model  %s\n", path);
        printf("kind         FLUX.1 Redux: SigLIP's %d-wide tokens to %d-wide T5 rows\n", sm->in_dim, sm->out_dim);
        kiln_style_model_free(sm);
    }
    kiln_backend_free(be);
    return found;
}

static bool print_upscaler_info(const char *path)
{
    kiln_backend *be;
    kiln_upscaler *u;
    if (kiln_backend_create("cpu", NULL, &be) != KILN_OK) return false;
    bool found = kiln_upscale_model_load(be, path, &u) == KILN_OK;
    if (found) {
        char about[128];
        kiln_upscaler_describe(u, about, sizeof about);
        printf("upscaler     %s\n", path);
        printf("network      %s\n", about);
        kiln_upscaler_free(u);
    }
    kiln_backend_free(be);
    return found;
}

/* `path` and the files given beside it (--vae, --text-encoder...) */
static int describe(const char *path, const kiln_model_parts *parts)
{
    struct stat st;
    kiln_lora_info lora;
    bool file = stat(path, &st) == 0 && S_ISREG(st.st_mode); /* LoRAs and ControlNets are single files */
    if (file && kiln_lora_inspect(path, &lora) == KILN_OK) {
        print_lora_info(path, &lora);
        return 0;
    }
    if (print_controlnet_info(path)) return 0; /* a diffusers ControlNet may be a folder */
    if (file && print_ip_adapter_info(path)) return 0;
    if (file && print_clip_vision_info(path)) return 0;
    if (file && print_upscaler_info(path)) return 0;
    if (file && print_style_model_info(path)) return 0;
    kiln_checkpoint *ck;
    if (kiln_checkpoint_open(path, &ck) != KILN_OK) return fail("--info");
    kiln_model_info info;
    if (kiln_checkpoint_add_parts(ck, parts) != KILN_OK || kiln_model_inspect(ck, &info) != KILN_OK) {
        kiln_checkpoint_close(ck);
        return fail("--info");
    }
    printf("model        %s\n", path);
    const char *gguf_types = kiln_checkpoint_metadata(ck, KILN_GGUF_TYPES_KEY);
    if (gguf_types) printf("format       GGUF: %s (linear layers keep their blocks)\n", gguf_types);
    printf("family       %s (%s)\n", info.family, kiln_variant_name(info.variant));
    printf("prediction   %s (%s)\n", kiln_prediction_name(info.prediction), info.prediction_reason);
    printf("%-12s %s, %.1f M parameters, %s\n", info.t5_name ? "transformer" : "unet", info.unet_name,
           info.unet_params / 1e6, kiln_dtype_name(info.unet_dtype));
    for (int i = 0; i < info.nclips; i++)
        printf("text encoder %s, %.1f M parameters\n", info.clip_names[i], info.clip_params[i] / 1e6);
    if (info.t5_name) printf("text encoder %s, %.1f M parameters\n", info.t5_name, info.t5_params / 1e6);
    printf("vae          %s, %.1f M parameters\n", info.vae_name, info.vae_params / 1e6);
    kiln_checkpoint_close(ck);
    return 0;
}

/* Loads --init-noise: tensor 'noise' of exactly the latent's shape. */
static int load_noise(const char *path, const int64_t shape[4], float **out)
{
    kiln_st_file *f;
    if (kiln_st_open(path, &f) != KILN_OK) return fail("--init-noise");
    const kiln_st_tensor *t = kiln_st_find(f, "noise");
    int rc = 0;
    if (!t) {
        fprintf(stderr, "gen: --init-noise %s: no tensor 'noise'\n", path);
        rc = 1;
    } else if (t->ndim != 4 || t->shape[0] != shape[0] || t->shape[1] != shape[1] || t->shape[2] != shape[2] ||
               t->shape[3] != shape[3]) {
        fprintf(stderr, "gen: --init-noise %s: 'noise' must have shape [%lld, %lld, %lld, %lld]\n", path,
                (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3]);
        rc = 1;
    } else {
        size_t count;
        if (kiln_st_read_f32(f, "noise", out, &count) != KILN_OK) rc = fail("--init-noise");
    }
    kiln_st_close(f);
    return rc;
}

/* The init image's size (after the VAE's crop) becomes the output's. */
static void take_image_size(gen_options *o, int width, int height)
{
    if (o->size_given && (width != o->width || height != o->height))
        fprintf(stderr, "gen: note: the output is %dx%d, from --init-image; --width/--height are ignored\n", width,
                height);
    o->width = width;
    o->height = height;
}

/* --init-image with --mask or --outpaint: the latent and noise mask to
 * inpaint. */
static int encode_inpaint(const kiln_model *m, gen_options *o, kiln_inpaint *inpaint)
{
    kiln_image img;
    if (kiln_image_load(o->init_image, &img) != KILN_OK) return fail("--init-image");
    kiln_inpaint_source src;
    kiln_status st;
    if (o->outpaint_given) {
        st = kiln_outpaint_source(&img, &o->outpaint, &src);
    } else {
        kiln_mask mask;
        if (kiln_mask_load(o->mask, o->mask_channel ? o->mask_channel : "red", &mask) != KILN_OK) {
            kiln_image_free(&img);
            return fail("--mask");
        }
        st = kiln_inpaint_source_make(&img, &mask, KILN_INPAINT_GROW, &src);
        kiln_mask_free(&mask);
    }
    kiln_image_free(&img);
    if (st == KILN_OK) {
        st = kiln_inpaint_encode(m, &src, inpaint);
        kiln_inpaint_source_free(&src);
    }
    if (st != KILN_OK) return fail(o->outpaint_given ? "--outpaint" : "--mask");
    take_image_size(o, inpaint->width, inpaint->height);
    return 0;
}

/* --init-image: loaded, cropped to the VAE's multiple, encoded to an
 * unscaled latent (1,C,h,w). */
static int encode_init_image(kiln_model *m, gen_options *o, float **latent)
{
    kiln_image img;
    if (kiln_image_load(o->init_image, &img) != KILN_OK) return fail("--init-image");
    kiln_latent encoded;
    /* img2img's VAEEncode tiles as the decode does; InstructPixToPixConditioning has no tiled kind */
    const bool tiled = o->vae_tile && m->info.variant != KILN_VARIANT_INSTRUCT_PIX2PIX;
    kiln_status st = tiled ? kiln_vae_encode_tiled(m, &img, 1, o->vae_tile, o->vae_tile_overlap, &encoded)
                           : kiln_vae_encode(m, &img, 1, &encoded);
    kiln_image_free(&img);
    if (st != KILN_OK) return fail("--init-image");
    int f = kiln_vae_factor(m->vae.config);
    take_image_size(o, encoded.width * f, encoded.height * f);
    *latent = encoded.data;
    return 0;
}

/* img2img's LATENT: the one image's repeated over the batch. */
static int repeat_over_batch(const kiln_model *m, const gen_options *o, const float *one, float **latent)
{
    int f = kiln_vae_factor(m->vae.config);
    size_t per = (size_t)m->vae.config->latent_channels * (o->height / f) * (o->width / f);
    if (!(*latent = malloc(per * o->batch * sizeof(float)))) {
        fprintf(stderr, "gen: out of memory\n");
        return 1;
    }
    for (int b = 0; b < o->batch; b++) memcpy(*latent + b * per, one, per * sizeof(float));
    return 0;
}

/* ImageUpscaleWithModel on one decoded picture (VAEDecode's [0,1] first). */
static kiln_status upscale(kiln_upscaler *u, const gen_options *o, const float *decoded, kiln_image *img)
{
    const int S = kiln_upscaler_scale(u);
    size_t n = (size_t)3 * o->width * o->height;
    float *unit = malloc(n * sizeof(float));
    if (!unit) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "upscale: out of host memory");
    for (size_t i = 0; i < n; i++) unit[i] = kiln_image_unit_from_decoded(decoded[i]);
    fprintf(stderr, "gen: upscaling %dx%d -> %dx%d\n", o->width, o->height, S * o->width, S * o->height);
    kiln_status st = kiln_upscale_to_image(u, unit, o->height, o->width, img);
    free(unit);
    return st;
}

/* IPAdapterModelLoader, CLIPVisionLoader, LoadImage and the IPAdapter
 * node: the picture's image tokens (the tower is freed once they are made). */
static int load_image_prompt(kiln_model *m, const kiln_run_image_prompt *unit, kiln_backend *be, kiln_image_prompt *ip)
{
    kiln_clip_vision *cv;
    kiln_ip_adapter *adapter;
    if (kiln_ip_adapter_load(m, unit->adapter, &adapter) != KILN_OK) return fail("--ip-adapter");
    *ip = (kiln_image_prompt){adapter, NULL, (float)unit->weight, unit->start, unit->end, 0};
    if (kiln_clip_vision_load(be, unit->clip_vision, &cv) != KILN_OK) return fail("--clip-vision");
    /* the pictures as ImageBatch nodes join them: the later ones fitted to the first's size */
    kiln_image images[1 + KILN_RUN_MAX_MORE_PICTURES] = {{0}};
    const int count = 1 + unit->nmore_images;
    kiln_status st = kiln_image_load(unit->image, &images[0]);
    for (int j = 1; j < count && st == KILN_OK; j++) {
        kiln_image loaded;
        if ((st = kiln_image_load(unit->more_images[j - 1], &loaded)) != KILN_OK) break;
        if (loaded.width == images[0].width && loaded.height == images[0].height) {
            images[j] = loaded;
            continue;
        }
        st = kiln_image_scale(&loaded, "bilinear", images[0].width, images[0].height, true, &images[j]);
        kiln_image_free(&loaded);
    }
    float *tokens = NULL;
    if (st == KILN_OK) st = kiln_image_prompt_tokens(adapter, cv, images, count, &tokens);
    for (int j = 0; j < count; j++) kiln_image_free(&images[j]);
    kiln_clip_vision_free(cv);
    if (st != KILN_OK) return fail("--ip-image");
    ip->tokens = tokens;
    ip->ntokens = count * adapter->tokens;
    return 0;
}

/* A prompt as CLIPTextEncode reads it, or as CLIPTextEncodeSDXL with CLIP-L
 * on its own text_l. */
static kiln_status encode_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *text, const char *text_l,
                                 int clip_skip, kiln_conditioning *out)
{
    if (text_l) return kiln_encode_sdxl_prompt(m, tok, text, text_l, clip_skip, out);
    return kiln_encode_prompt(m, tok, text, clip_skip, out);
}

/* The ControlNets' hints fitted to a latent of h x w (each control's hint
 * replaced; the old ones are freed). */
static int fit_hints(const kiln_model *m, const gen_options *o, kiln_control *controls, int h, int w)
{
    for (int i = 0; i < o->ncontrols; i++) {
        float *hint;
        kiln_image img, mask;
        if (kiln_image_load(o->controls[i].image, &img) != KILN_OK) return fail("--control-image");
        if (o->controls[i].canny_low > 0.0) { /* the Canny node between LoadImage and the apply node */
            kiln_image edges;
            kiln_status st = kiln_image_canny(&img, o->controls[i].canny_low, o->controls[i].canny_high, &edges);
            kiln_image_free(&img);
            if (st != KILN_OK) return fail("--control-canny");
            img = edges;
        }
        if (o->controls[i].mask && kiln_image_load(o->controls[i].mask, &mask) != KILN_OK) {
            kiln_image_free(&img);
            return fail("--control-mask");
        }
        kiln_status st = kiln_control_hint(m, controls[i].net, &img, o->controls[i].mask ? &mask : NULL, h, w, &hint);
        kiln_image_free(&img);
        if (o->controls[i].mask) kiln_image_free(&mask);
        if (st != KILN_OK) return fail(o->controls[i].mask ? "--control-mask" : "--control-image");
        free((float *)controls[i].hint);
        controls[i].hint = hint;
    }
    return 0;
}

/* StyleModelApply of one --redux unit on the positive prompt (replaced). */
static int apply_redux(kiln_model *m, kiln_backend *be, const kiln_run_style *r, kiln_conditioning *pos)
{
    kiln_style_model *sm;
    kiln_clip_vision *cv;
    kiln_image img = {0};
    kiln_conditioning styled;
    if (kiln_style_model_load(m, r->style_model, &sm) != KILN_OK) return fail("--redux");
    if (kiln_clip_vision_load(be, r->clip_vision, &cv) != KILN_OK) {
        kiln_style_model_free(sm);
        return fail("--redux-vision");
    }
    int rc = kiln_image_load(r->image, &img) == KILN_OK ? 0 : fail("--redux-image");
    if (!rc && kiln_style_model_apply(sm, cv, &img, true, r->strength, pos, &styled) != KILN_OK) rc = fail("--redux");
    if (!rc) {
        kiln_conditioning_free(pos);
        *pos = styled;
    }
    kiln_image_free(&img);
    kiln_clip_vision_free(cv);
    kiln_style_model_free(sm);
    return rc;
}

/* The hires fix's second pass, as LatentUpscaleBy and a second KSampler
 * with the same prompts, seed and sampler: the latent upscaled, then sampled
 * from at the hires denoise (the ControlNets' hints fitted to the new size). */
static int hires_pass(const kiln_model *m, gen_options *o, kiln_sampling_job *job, kiln_control *controls,
                      const kiln_conditioning *pos, const kiln_conditioning *neg, float **latent)
{
    int C = kiln_model_latent_channels(m), f = kiln_vae_factor(m->vae.config), h, w, rc;
    float *upscaled;
    if (kiln_resample_by(*latent, o->batch, C, job->latent_h, job->latent_w, o->hires_scale, o->hires_method,
                               &upscaled, &h, &w) != KILN_OK)
        return fail("--hires-scale");
    fprintf(stderr, "gen: hires fix: %dx%d -> %dx%d, %d steps at denoise %g\n", o->width, o->height, w * f, h * f,
            o->hires_steps, o->hires_denoise);
    free(*latent);
    *latent = NULL;
    if ((rc = fit_hints(m, o, controls, h, w))) return rc;
    job->steps = o->hires_steps;
    job->denoise = o->hires_denoise;
    job->init_latent = upscaled;
    job->noise = NULL; /* --init-noise is the first pass's; this one draws from the seed, as KSampler does */
    job->latent_h = h, job->latent_w = w;
    ((progress *)job->progress_ctx)->start = now_s();
    kiln_status st = kiln_ksample(m, job, pos, neg, latent);
    free(upscaled);
    if (st != KILN_OK) return fail("sampling (hires fix)");
    o->width = w * f, o->height = h * f;
    return 0;
}

/* The step the refiner takes over at: the base model's share of --steps,
 * at least one step each. */
static int refiner_step(const gen_options *o)
{
    int at = (int)(o->steps * o->refiner_switch + 0.5);
    return at < 1 ? 1 : at > o->steps - 1 ? o->steps - 1 : at;
}

/* SDXL's base-then-refiner workflow: the base model's pass stopped at the
 * switch step with its noise left in (job->last_step, leftover_noise), then
 * the refiner, with its own text tower and y, takes the schedule from there
 * without adding noise, as two KSamplerAdvanced nodes do. */
static int refiner_pass(const gen_options *o, kiln_backend *be, int clip_skip, kiln_sampling_job *job, float **latent)
{
    kiln_model *r;
    if (kiln_model_load(o->refiner, be, &r) != KILN_OK) return fail("--refiner");
    if (kiln_model_set_embeddings(r, o->embeddings) != KILN_OK) {
        kiln_model_free(r);
        return fail("--embeddings");
    }
    if (strcmp(r->info.family, "sdxl-refiner") != 0) {
        fprintf(stderr, "gen: --refiner %s: a %s model, not an SDXL refiner\n", o->refiner, r->info.family);
        kiln_model_free(r);
        return 2;
    }
    kiln_tokenizer *tok;
    if (kiln_tokenizer_create_with(o->cleaning, &tok) != KILN_OK) return fail("tokenizer");
    kiln_conditioning pos, neg;
    if (kiln_encode_prompt(r, tok, o->prompt, clip_skip, &pos) != KILN_OK) return fail("--prompt (refiner)");
    if (kiln_encode_prompt(r, tok, o->negative, clip_skip, &neg) != KILN_OK) return fail("--negative-prompt (refiner)");
    kiln_tokenizer_free(tok);
    fprintf(stderr, "gen: refiner %s from step %d of %d\n", o->refiner, job->last_step, job->steps);
    kiln_sampling_job rj = *job;
    kiln_sdxl_cond numbers; /* CLIPTextEncodeSDXLRefiner's: the base's sizes, no crop */
    if (job->sdxl) {
        numbers = *job->sdxl;
        numbers.crop_w = numbers.crop_h = 0;
        rj.sdxl = &numbers;
    }
    rj.start_step = job->last_step;
    rj.last_step = 0;
    rj.leftover_noise = false;
    rj.disable_noise = true;
    /* the guidance patches, FreeU, PerturbedAttentionGuidance and SelfAttentionGuidance patch the base's MODEL,
       as the PNG's workflow has it */
    rj.cfg_patches = (kiln_cfg_patches){0};
    rj.freeu = NULL;
    rj.pag_scale = 0.0f;
    rj.sag = NULL;
    rj.init_latent = *latent;
    rj.noise = NULL;
    float *refined;
    kiln_status st = kiln_ksample(r, &rj, &pos, &neg, &refined);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_model_free(r);
    if (st != KILN_OK) return fail("sampling (refiner)");
    free(*latent);
    *latent = refined;
    return 0;
}

/* The whole of a text file, NUL-terminated; NULL with a message on stderr. */
static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)size + 1)) && fread(text, 1, (size_t)size, f) == (size_t)size) {
        text[size] = '\0';
        fclose(f);
        return text;
    }
    fprintf(stderr, "gen: --workflow %s: %s\n", path, f ? "cannot be read" : strerror(errno));
    free(text);
    if (f) fclose(f);
    return NULL;
}

static kiln_status workflow_progress(void *ctx, int step, int total, const float *denoised)
{
    progress *p = ctx;
    kiln_status st = show_progress(ctx, step, total, denoised);
    if (step + 1 == total) p->start = now_s(); /* the next KSampler of the workflow is timed from here */
    return st;
}

/* --workflow: the workflow (a JSON file, or the "prompt" a PNG of kiln's or
 * ComfyUI's carries) run, its output images to --output's names (numbered
 * when more than one), each PNG carrying the workflow as ComfyUI's "prompt". */
static void wrote_file(void *ctx, const char *path)
{
    (void)ctx;
    fprintf(stderr, "gen: wrote %s\n", path);
}

static int run_workflow(const gen_options *o, kiln_backend *be)
{
    char *json = NULL;
    if (kiln_image_format_of(o->workflow) == KILN_IMAGE_PNG) {
        if (kiln_png_read_text(o->workflow, "prompt", &json) != KILN_OK) return fail("--workflow");
    } else if (!(json = read_text_file(o->workflow))) {
        return 1;
    }
    progress prog = {.start = now_s(), .tty = isatty(STDERR_FILENO)};
    /* CheckpointSave's files go beside --output */
    char folder[4096];
    const char *slash = strrchr(o->output, '/');
    snprintf(folder, sizeof folder, "%.*s", slash ? (int)(slash - o->output) : 1, slash ? o->output : ".");
    if (slash == o->output) snprintf(folder, sizeof folder, "/");
    kiln_workflow_options wo = {.model_dirs = o->model_dirs, .nmodel_dirs = o->nmodel_dirs,
                                .progress = workflow_progress, .progress_ctx = &prog,
                                .tokenizer = o->parts.tokenizer, .config = o->parts.config,
                                .embeddings = o->embeddings, .output_dir = folder, .wrote = wrote_file};
    kiln_image *images;
    int count;
    if (kiln_workflow_run(be, json, &wo, &images, &count) != KILN_OK) {
        free(json);
        return fail("--workflow");
    }
    kiln_png_text text = {"prompt", json};
    int rc = 0;
    for (int i = 0; i < count && !rc; i++) {
        char name[4096];
        output_name(o->output, i, count, name, sizeof name);
        if (kiln_image_save(name, &images[i], &text, 1) != KILN_OK) rc = fail("--output");
        else fprintf(stderr, "gen: wrote %s (%dx%d)\n", name, images[i].width, images[i].height);
    }
    kiln_images_free(images, count);
    free(json);
    return rc;
}

/* What every prompt's run shares: the model and what was loaded for it. */
typedef struct render_ctx {
    kiln_model *m;
    kiln_backend *be;
    kiln_tokenizer *tok;
    kiln_control *controls;
    kiln_upscaler *upscaler;
    const char *model_name;
    int clip_skip, model_clip_skip;
    bool inpaint_unet, pix2pix;
    double t_start, t_loaded; /* gen's start and the model's loading done */
} render_ctx;

/* --prompts FILE: its lines but blank ones and # comments, trailing
 * whitespace cut -> *prompts (malloc'd each), *n. */
static int read_prompts(const char *path, char ***prompts, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "gen: --prompts %s: %s\n", path, strerror(errno));
        return 2;
    }
    char *line = NULL, **all = NULL;
    size_t cap = 0;
    ssize_t len;
    int count = 0, rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                           line[len - 1] == '\t'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        char **grown = realloc(all, (size_t)(count + 1) * sizeof *grown);
        if (!grown || !(grown[count] = strdup(line))) {
            fprintf(stderr, "gen: --prompts %s: out of memory\n", path);
            rc = 1;
            if (grown) all = grown;
            break;
        }
        all = grown;
        count++;
    }
    if (!rc && ferror(f)) fprintf(stderr, "gen: --prompts %s: %s\n", path, strerror(errno)), rc = 2;
    if (!rc && count == 0) fprintf(stderr, "gen: --prompts %s: no prompt in it (blank lines and # comments)\n", path),
                           rc = 2;
    free(line);
    fclose(f);
    if (rc) {
        for (int i = 0; i < count; i++) free(all[i]);
        free(all);
        return rc;
    }
    *prompts = all;
    *n = count;
    return 0;
}

/* One prompt's images (o and job the run's own: the hires fix changes
 * them): the conditioning (and --redux), the sampling (refiner, hires fix),
 * the decode and the files, numbered from `first` of `total`; timed from
 * gen's start for the first run (its line reports the model's loading),
 * from its own for the others. */
static int render(const render_ctx *c, gen_options *o, kiln_sampling_job *job, int first, int total, bool first_run)
{
    kiln_model *m = c->m;
    const double t_start = first_run ? c->t_start : now_s(), t_loaded = first_run ? c->t_loaded : t_start;
    int rc;
    if ((rc = fit_hints(m, o, c->controls, job->latent_h, job->latent_w))) return rc;
    kiln_conditioning pos, neg;
    if (encode_prompt(m, c->tok, o->prompt, o->prompt_l, c->clip_skip, &pos) != KILN_OK) return fail("--prompt");
    if (encode_prompt(m, c->tok, o->negative, o->negative_l, c->clip_skip, &neg) != KILN_OK)
        return fail("--negative-prompt");
    for (int i = 0; i < o->nstyles; i++)
        if ((rc = apply_redux(m, c->be, &o->styles[i], &pos))) return rc;
    kiln_conditioning zeroed = {0}, areas[KILN_MAX_PROMPT_PARTS - 1] = {{0}};
    kiln_conditioning_part negative_parts[2], positive_parts[KILN_MAX_PROMPT_PARTS];
    if (o->nareas) { /* ConditioningSetArea on each, ConditioningCombine after the prompt over all of the picture */
        positive_parts[0] = (kiln_conditioning_part){.cond = &pos, .end_percent = 1.0};
        for (int i = 0; i < o->nareas; i++) {
            const kiln_run_area *a = &o->areas[i];
            if (encode_prompt(m, c->tok, a->prompt, NULL, c->clip_skip, &areas[i]) != KILN_OK)
                return fail("--area-prompt");
            positive_parts[i + 1] = (kiln_conditioning_part){.cond = &areas[i], .end_percent = 1.0, .area_x = a->x / 8,
                                                             .area_y = a->y / 8, .area_w = a->width / 8,
                                                             .area_h = a->height / 8, .area_strength = a->strength};
        }
        job->parts[1] = positive_parts;
        job->nparts[1] = 1 + o->nareas;
    }
    if (o->negative_until > 0) { /* ConditioningZeroOut of it, each over its part, ConditioningCombine */
        if (kiln_conditioning_zero_out(&neg, &zeroed) != KILN_OK) return fail("--negative-until");
        negative_parts[0] = (kiln_conditioning_part){.cond = &neg, .end_percent = o->negative_until};
        negative_parts[1] = (kiln_conditioning_part){.cond = &zeroed, .start_percent = o->negative_until, .end_percent = 1.0};
        job->parts[0] = negative_parts;
        job->nparts[0] = 2;
    }
    double t_text = now_s();

    progress prog = {.start = now_s(), .tty = isatty(STDERR_FILENO), .quiet = false};
    job->progress = show_progress;
    job->progress_ctx = &prog;
    float *latent = NULL, *decoded = NULL;
    if (o->sdxl_given || o->aesthetic_given || o->prompt_l || o->negative_l) { /* the sizes not given spelled out,
                                                                                for the workflow's CLIPTextEncodeSDXL */
        kiln_sdxl_cond_fill(&o->sdxl, job->latent_h, job->latent_w);
        job->sdxl = &o->sdxl;
        const bool *own = o->negative_sdxl_given;
        if (own[0] || own[1] || own[2]) {
            kiln_sdxl_cond n = o->sdxl;
            if (own[0]) n.width = o->negative_sdxl.width, n.height = o->negative_sdxl.height;
            if (own[1]) n.crop_w = o->negative_sdxl.crop_w, n.crop_h = o->negative_sdxl.crop_h;
            if (own[2]) n.target_width = o->negative_sdxl.target_width, n.target_height = o->negative_sdxl.target_height;
            o->negative_sdxl = n;
            job->negative_sdxl = &o->negative_sdxl;
        }
    }
    if (o->refiner) job->last_step = refiner_step(o), job->leftover_noise = true;
    if (kiln_ksample(m, job, &pos, &neg, &latent) != KILN_OK) return fail("sampling");
    if (job->step_cache && job->steps_skipped) /* ComfyUI logs it so */
        fprintf(stderr, "gen: %s skipped %d of %d steps\n",
                job->step_cache->kind == KILN_EASY_CACHE ? "EasyCache" : "LazyCache", *job->steps_skipped, o->steps);
    if (o->refiner && (rc = refiner_pass(o, c->be, o->clip_skip, job, &latent))) return rc;
    const int first_width = o->width, first_height = o->height;
    if (o->hires_scale && (rc = hires_pass(m, o, job, c->controls, &pos, &neg, &latent))) return rc;
    const int64_t latent_shape[4] = {o->batch, kiln_model_latent_channels(m), job->latent_h, job->latent_w};
    double t_sampled = now_s();
    if ((o->vae_tile ? kiln_vae_decode_latent_tiled(m, latent, o->batch, job->latent_h, job->latent_w, o->vae_tile,
                                                    o->vae_tile_overlap, &decoded)
                     : kiln_vae_decode_latent(m, latent, o->batch, job->latent_h, job->latent_w, &decoded)) != KILN_OK)
        return fail("VAE decode");
    double t_decoded = now_s();

    if (o->save_latent) {
        kiln_st_entry e = {"latent", KILN_F32, 4, {latent_shape[0], latent_shape[1], latent_shape[2], latent_shape[3]},
                           latent};
        if (kiln_st_write(o->save_latent, &e, 1, NULL, 0) != KILN_OK) return fail("--save-latent");
    }

    kiln_upscaler *upscaler = c->upscaler;
    kiln_run_info run = {.model = c->model_name, .parts = &o->parts, .family = m->info.family, .prompt = o->prompt,
                         .negative_prompt = o->negative, .negative_until = o->negative_until,
                         .prompt_l = o->prompt_l, .negative_prompt_l = o->negative_l, .steps = o->steps,
                         .sampler = o->sampler, .scheduler = o->scheduler, .sigmas = o->sigmas, .cfg = o->cfg,
                         .seed = o->seed,
                         .flux_guidance = o->guidance,
                         .pixart_width = o->pixart_width, .pixart_height = o->pixart_height,
                         .width = first_width, .height = first_height, .batch_size = o->batch,
                         .clip_skip = c->clip_skip, .model_clip_skip = c->model_clip_skip,
                         .t5_options = o->t5_options, .t5_min_padding = o->t5_min_padding,
                         .t5_min_length = o->t5_min_length,
                         /* ModelSamplingDiscrete says both */
                         .prediction = o->zsnr && !o->prediction ? kiln_model_prediction(m) : o->prediction,
                         .zsnr = o->zsnr, .edm = o->edm[0] ? o->edm : NULL, .edm_sigma_max = o->edm_sigma_max,
                         .edm_sigma_min = o->edm_sigma_min,
                         .denoise = o->denoise, .init_image = o->init_image, .loras = o->loras, .nloras = o->nloras,
                         .mask = o->mask, .mask_channel = o->mask_channel, .outpaint = o->outpaint_given ? &o->outpaint : NULL,
                         .inpaint_model = c->inpaint_unet, .instruct_pix2pix = c->pix2pix,
                         .inpaint_conditioning = c->inpaint_unet && m->family->arch == KILN_ARCH_FLUX,
                         .differential = o->differential, .skip_layer_guidance = job->skip_layer_guidance,
                         .rescale_cfg = o->rescale_cfg, .cfg_zero_star = o->cfg_zero_star, .apg = o->apg,
                         .apg_eta = o->apg_eta, .apg_norm_threshold = o->apg_norm_threshold,
                         .apg_momentum = o->apg_momentum, .tcfg = o->tcfg, .mahiro = o->mahiro,
                         .cfg_norm = o->cfg_norm, .epsilon_scaling = o->epsilon_scaling,
                         .sag = o->sag_given ? &o->sag : NULL,
                         .deep_shrink = o->deep_shrink_given ? &o->deep_shrink : NULL,
                         .hypertile = o->hypertile_given ? &o->hypertile : NULL,
                         .step_cache = o->step_cache_given ? &o->step_cache : NULL,
                         .fresca = o->fresca_given ? &o->fresca : NULL,
                         .cfg_operation = o->operation_given ? &o->operation : NULL, .freeu = o->freeu_given ? &o->freeu : NULL,
                         .pag_scale = o->pag_scale,
                         .areas = o->areas, .nareas = o->nareas,
                         .controls = o->controls, .ncontrols = o->ncontrols,
                         .image_prompts = o->image_prompts, .nimage_prompts = o->nimage_prompts,
                         .hypernetworks = o->hypernetworks, .nhypernetworks = o->nhypernetworks,
                         .styles = o->styles, .nstyles = o->nstyles, .references = o->references,
                         .nreferences = o->nreferences, .reference_method = o->reference_method,
                         .sdxl = job->sdxl, .negative_sdxl = job->negative_sdxl,
                         .hires_scale = o->hires_scale, .hires_steps = o->hires_steps,
                         .hires_denoise = o->hires_denoise, .hires_method = kiln_resample_name(o->hires_method),
                         .upscale_model = o->upscale_model, .vae_tile = o->vae_tile,
                         .vae_tile_overlap = o->vae_tile_overlap, .upscale_by = upscaler ? kiln_upscaler_scale(upscaler) : 0,
                         .refiner = o->refiner, .refiner_switch = o->refiner_switch,
                         .refiner_step = o->refiner ? refiner_step(o) : 0,
                         .version = kiln_version()};
    char *workflow;
    if (kiln_metadata_prompt(&run, &workflow) != KILN_OK) return fail("metadata");
    char names[KILN_MAX_BATCH][4096];
    kiln_status st = KILN_OK;
    for (int b = 0; b < o->batch && st == KILN_OK; b++) {
        kiln_image img;
        char *parameters;
        output_name(o->output, first + b, total, names[b], sizeof names[b]);
        const float *pixels = decoded + (size_t)b * 3 * o->width * o->height;
        if (upscaler ? upscale(upscaler, o, pixels, &img) : kiln_image_from_decoded(pixels, o->height, o->width, &img))
            return fail(upscaler ? "--upscale-model" : "image");
        if (kiln_metadata_parameters(&run, b, &parameters) != KILN_OK) return fail("metadata");
        kiln_png_text text[2] = {{"parameters", parameters}, {"prompt", workflow}};
        st = kiln_image_save(names[b], &img, text, 2);
        free(parameters);
        kiln_image_free(&img);
    }
    free(workflow);
    free(latent);
    free(decoded);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_conditioning_free(&zeroed);
    for (int i = 0; i < o->nareas; i++) kiln_conditioning_free(&areas[i]);
    if (st != KILN_OK) return fail("--output");
    if (upscaler) {
        o->width *= kiln_upscaler_scale(upscaler);
        o->height *= kiln_upscaler_scale(upscaler);
    }
    double t_end = now_s();

    if (o->json) {
        printf("{\"files\":[");
        for (int b = 0; b < o->batch; b++) {
            printf("%s\"", b ? "," : "");
            for (const char *ch = names[b]; *ch; ch++) /* JSON string escaping */
                (*ch == '"' || *ch == '\\') ? printf("\\%c", *ch) : (unsigned char)*ch < 0x20 ? printf("\\u%04x", *ch) : putchar(*ch);
            printf("\"");
        }
        printf("],\"seed\":%" PRIu64 ",\"width\":%d,\"height\":%d,\"steps\":%d,\"backend\":\"%s\","
               "\"compute\":\"%s\",\"load_s\":%.3f,\"text_encoder_s\":%.3f,\"sampling_s\":%.3f,\"it_per_s\":%.3f,\"vae_decode_s\":%.3f,"
               "\"total_s\":%.3f}\n",
               o->seed, o->width, o->height, o->steps, c->be->name, kiln_dtype_name(c->be->compute), t_loaded - t_start,
               t_text - t_loaded, t_sampled - t_text,
               (o->steps + (o->hires_scale ? o->hires_steps : 0)) / (t_sampled - t_text), t_decoded - t_sampled,
               t_end - t_start);
        fflush(stdout);
    } else {
        fprintf(stderr, "gen: wrote %s%s (seed %" PRIu64 ", %.1fs)\n", names[0], o->batch > 1 ? " ..." : "", o->seed,
                t_end - t_start);
    }
    return 0;
}

/* describe, the file held open meanwhile: a torch.save file, which each
 * kind tried opens, is then converted once (safetensors.h). */
static int print_info(const char *path, const kiln_model_parts *parts)
{
    kiln_st_file *held = NULL;
    if (kiln_st_open(path, &held) != KILN_OK) kiln_clear_error();
    const int rc = describe(path, parts);
    kiln_st_close(held);
    return rc;
}

/* Whether the file at path begins as a torch.save file does. Errors: it
 * cannot be mapped (not there, empty, a folder). */
static kiln_status check_torch_file(const char *path, bool *torch)
{
    const uint8_t *head;
    size_t size;
    *torch = false;
    TRY(kiln_map_file(path, "a model file", &head, &size));
    *torch = kiln_torch_magic(head, size);
    kiln_unmap_file(head, size);
    return KILN_OK;
}

/* --convert: the tensors kiln reads from a torch.save file, kept as a
 * safetensors file (written whole or not at all). */
static int convert(const char *path, const char *output)
{
    bool torch;
    if (check_torch_file(path, &torch) != KILN_OK) return fail("--convert");
    if (!torch) {
        fprintf(stderr, "gen: --convert %s: not a torch.save file (.ckpt, .pt, .pth, .bin: a zip archive)\n", path);
        return 1;
    }
    if (kiln_torch_to_safetensors(path, output) != KILN_OK) return fail("--convert");
    kiln_st_file *f;
    if (kiln_st_open(output, &f) != KILN_OK) return fail("--convert");
    fprintf(stderr, "gen: wrote %s (%zu tensors)\n", output, kiln_st_count(f));
    kiln_st_close(f);
    return 0;
}

int main(int argc, char **argv)
{
    gen_options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    if (o.info) return print_info(o.info, &o.parts);
    if (o.convert) return convert(o.convert, o.output);
    if (o.list_devices) return list_devices();

    kiln_sampling_job job = {.steps = o.steps, .cfg = (float)o.cfg, .denoise = o.denoise, .batch = o.batch,
                             .flux_guidance = (float)o.guidance,
                             .pixart_size = {{0, 0}, {(float)o.pixart_height, (float)o.pixart_width}},
                             .cfg_patches = {(float)o.rescale_cfg, o.cfg_zero_star, o.apg, (float)o.apg_eta,
                                             (float)o.apg_norm_threshold, (float)o.apg_momentum, o.tcfg,
                                             o.mahiro, (float)o.cfg_norm, (float)o.epsilon_scaling,
                                             o.operation_given, o.operation}};
    const kiln_skip_layer_guidance slg = {o.slg_double, o.slg_double_count, o.slg_single, o.slg_single_count,
                                          o.slg_scale, o.slg_start, o.slg_end, o.slg_rescale, o.slg_uncond};
    if (o.slg_double_count || o.slg_single_count) job.skip_layer_guidance = &slg;
    if (o.freeu_given) job.freeu = &o.freeu;
    job.pag_scale = (float)o.pag_scale;
    if (o.sag_given) job.sag = &o.sag;
    if (o.deep_shrink_given) job.deep_shrink = &o.deep_shrink;
    if (o.hypertile_given) job.hypertile = &o.hypertile;
    int skipped = 0;
    if (o.step_cache_given) job.step_cache = &o.step_cache, job.steps_skipped = &skipped;
    if (o.fresca_given) {
        job.cfg_patches.fresca = true;
        job.cfg_patches.fresca_low = (float)o.fresca.scale_low, job.cfg_patches.fresca_high = (float)o.fresca.scale_high;
        job.cfg_patches.fresca_cutoff = o.fresca.freq_cutoff;
    }
    if (kiln_sampler_from_name(o.sampler, &job.sampler) != KILN_OK) return fail("--sampler");
    if (kiln_scheduler_from_name(o.scheduler, &job.scheduler) != KILN_OK) return fail("--scheduler");
    kiln_sigmas sigmas = {0};
    if (o.sigmas) {
        if (kiln_manual_sigmas(o.sigmas, &sigmas) != KILN_OK) return fail("--sigmas");
        if (sigmas.count < 2) {
            kiln_sigmas_free(&sigmas);
            fprintf(stderr, "gen: --sigmas '%s': give at least two noise levels, first to last (\"14.6, 3.3, 0\")\n",
                    o.sigmas);
            return 2;
        }
        job.sigmas = &sigmas;
        job.steps = o.steps = sigmas.count - 1;
    }
    if (!o.seed_given && getrandom(&o.seed, sizeof o.seed, 0) != sizeof o.seed) o.seed = (uint64_t)time(NULL);
    /* below 2^53, as ComfyUI's own random seeds are: the workflow recorded in
     * the PNG holds it as a JSON number, which is exact only that far */
    if (!o.seed_given) o.seed &= (UINT64_C(1) << 53) - 1;
    job.seed = o.seed;

    double t_start = now_s();
    kiln_backend *be;
    kiln_backend_options bo = {.threads = o.threads, .device = o.device, .compute = o.compute,
                               .compute_auto = !o.compute_set};
    if (kiln_backend_create(o.backend, &bo, &be) != KILN_OK) return fail("--backend");
    if (o.workflow) {
        rc = run_workflow(&o, be);
        kiln_backend_free(be);
        return rc;
    }
    kiln_checkpoint *ck;
    bool torch = false;
    if (o.model && check_torch_file(o.model, &torch) != KILN_OK) kiln_clear_error(); /* a folder; else refused below */
    if (torch)
        fprintf(stderr, "gen: %s is a torch.save file: reading its tensors into a temporary safetensors file "
                        "(gen --convert keeps one)\n", o.model);
    kiln_status st = o.model ? kiln_checkpoint_open(o.model, &ck) : kiln_default_checkpoint_open(&ck);
    if (st != KILN_OK) return fail("--model");
    if (kiln_checkpoint_add_parts(ck, &o.parts) != KILN_OK) {
        kiln_checkpoint_close(ck);
        return fail("the files beside --model");
    }
    kiln_model *m;
    kiln_lora_stats lora_stats[MAX_LORAS];
    if (kiln_model_load_with_loras(ck, o.loras, o.nloras, lora_stats, be, &m) != KILN_OK)
        return fail(o.nloras ? "loading the model and LoRAs" : "--model");
    if (m->family->arch == KILN_ARCH_FLUX && !m->flux.chroma && o.parts.text_encoders[0] && !o.parts.text_encoders[1]) {
        fprintf(stderr, "gen: --text-encoder: Flux reads CLIP-L and T5; give both, as DualCLIPLoader does\n");
        kiln_model_free(m);
        return 2;
    }
    if (o.save_checkpoint) {
        st = kiln_model_save_checkpoint(m, o.save_checkpoint);
        kiln_model_free(m);
        kiln_backend_free(be);
        if (st != KILN_OK) return fail("--save-checkpoint");
        fprintf(stderr, "gen: wrote %s\n", o.save_checkpoint);
        return 0;
    }
    if (kiln_model_set_embeddings(m, o.embeddings) != KILN_OK) return fail("--embeddings");
    if (o.t5_options && !m->t5.hidden) {
        fprintf(stderr, "gen: --t5-min-padding and --t5-min-length pad T5's ids (PixArt, Flux, Chroma, SD3 with "
                "T5); %s is %s without T5\n", o.model ? o.model : "the default model", m->info.family);
        return 2;
    }
    if (o.t5_options && kiln_model_set_t5_tokenizer_options(m, o.t5_min_padding, o.t5_min_length) != KILN_OK)
        return fail("--t5-min-padding");
    if (o.prediction && kiln_model_set_prediction(m, o.prediction) != KILN_OK) return fail("--prediction");
    if (o.zsnr && kiln_model_set_zsnr(m, true) != KILN_OK) return fail("--zsnr");
    if (o.edm[0] && kiln_model_set_continuous_edm(m, o.edm, o.edm_sigma_max, o.edm_sigma_min) != KILN_OK)
        return fail("--edm");
    if (o.refiner && strcmp(m->info.family, "sdxl") != 0) {
        fprintf(stderr, "gen: --refiner follows an SDXL base model; %s is %s\n", o.model ? o.model : "the default model",
                m->info.family);
        return 2;
    }
    if (o.pixart_width && m->family->arch != KILN_ARCH_PIXART) {
        fprintf(stderr, "gen: --pixart-size is PixArt-alpha's (the size it embeds); %s is %s\n",
                o.model ? o.model : "the default model", m->info.unet_name);
        return 2;
    }
    if (o.guidance && !(m->family->arch == KILN_ARCH_FLUX && kiln_flux_reads_guidance(&m->flux))) {
        fprintf(stderr, "gen: --guidance is Flux dev's and Chroma's (the guidance they embed); %s is %s\n",
                o.model ? o.model : "the default model", m->info.unet_name);
        return 2;
    }
    if ((o.sdxl_given || o.prompt_l || o.negative_l) && strcmp(m->info.family, "sdxl") != 0) {
        fprintf(stderr, "gen: %s are for SDXL base models; %s is %s\n",
                o.sdxl_given ? "--sdxl-size, --sdxl-crop and --sdxl-target" : "--prompt-l and --negative-prompt-l",
                o.model ? o.model : "the default model", m->info.family);
        return 2;
    }
    const int model_clip_skip = m->info.nclips ? m->clips[0].reading->default_skip : 1; /* T5: its last layer */
    const int clip_skip = o.clip_skip ? o.clip_skip : model_clip_skip;
    for (int i = 0; i < o.nloras; i++)
        fprintf(stderr, "gen: LoRA %s: %d UNet and %d text encoder weights merged (strength %g, %g)\n",
                o.loras[i].path, lora_stats[i].unet_modules, lora_stats[i].clip_modules,
                o.loras[i].unet_strength, o.loras[i].clip_strength);
    if (!o.size_given && !o.init_image) kiln_model_native_size(m, &o.width, &o.height);
    const char *model_name = o.model ? o.model : "kiln-shapes.safetensors";
    kiln_upscaler *upscaler = NULL;
    if (o.upscale_model) {
        if (kiln_upscale_model_load(be, o.upscale_model, &upscaler) != KILN_OK) return fail("--upscale-model");
        char about[128];
        kiln_upscaler_describe(upscaler, about, sizeof about);
        fprintf(stderr, "gen: upscale model %s: %s\n", o.upscale_model, about);
    }
    int f = kiln_vae_factor(m->vae.config);
    double t_loaded = now_s();

    float *init_latent = NULL, *image_latent = NULL, *noise = NULL;
    kiln_inpaint inpaint = {0};
    bool inpaint_unet = m->info.variant == KILN_VARIANT_INPAINT;
    bool pix2pix = m->info.variant == KILN_VARIANT_INSTRUCT_PIX2PIX;
    if (o.nareas && (pix2pix || (o.guidance && m->family->arch == KILN_ARCH_FLUX))) {
        /* the area prompts' CLIPTextEncode nodes carry no FluxGuidance: ComfyUI samples them at its default */
        fprintf(stderr, "gen: --area-prompt %s (not yet)\n",
                pix2pix ? "on an InstructPix2Pix model" : "with --guidance: the area prompts take FLUX.1's default");
        return 2;
    }
    if (inpaint_unet && !o.mask && !o.outpaint_given) {
        fprintf(stderr, "gen: %s is an inpainting model: give it --init-image and --mask or --outpaint\n", model_name);
        return 2;
    }
    if (pix2pix && (!o.init_image || o.mask || o.outpaint_given)) {
        fprintf(stderr, "gen: %s is an InstructPix2Pix model: give it --init-image (%s) and no %s\n", model_name,
                m->family->arch == KILN_ARCH_FLUX ? "the edge or depth map FLUX.1 Canny/Depth follows"
                                                  : "the picture to edit",
                o.mask ? "--mask" : o.outpaint_given ? "--outpaint" : "mask");
        return 2;
    }
    if (o.mask || o.outpaint_given) {
        if ((rc = encode_inpaint(m, &o, &inpaint))) return rc;
        job.inpaint = &inpaint;
        job.differential = (float)o.differential;
    } else if (o.init_image) {
        if ((rc = encode_init_image(m, &o, &image_latent))) return rc;
        /* InstructPixToPixConditioning: the UNet gets the picture's latent; the sampling starts from an empty one */
        if (pix2pix) job.edit_latent = image_latent;
        else if ((rc = repeat_over_batch(m, &o, image_latent, &init_latent))) return rc;
    }
    if (o.width % f || o.height % f) {
        fprintf(stderr, "gen: --width/--height %dx%d: must be multiples of %d for this model\n", o.width, o.height, f);
        return 2;
    }
    job.latent_h = o.height / f;
    job.latent_w = o.width / f;
    kiln_control controls[KILN_MAX_CONTROLS] = {0};
    for (int i = 0; i < o.ncontrols; i++) {
        const kiln_run_control *c = &o.controls[i];
        kiln_controlnet *controlnet;
        if (kiln_controlnet_load(m, c->path, &controlnet) != KILN_OK) return fail("--controlnet");
        int mode;
        kiln_union_control_type(c->union_type, &mode); /* checked with the flags */
        controls[i] = (kiln_control){controlnet, NULL, (float)c->strength, c->start, c->end, mode, false};
    }
    job.controls = controls;
    job.ncontrols = o.ncontrols;
    kiln_image_prompt image_prompts[KILN_MAX_IP_ADAPTERS] = {0};
    for (int i = 0; i < o.nimage_prompts; i++)
        if ((rc = load_image_prompt(m, &o.image_prompts[i], be, &image_prompts[i]))) return rc;
    job.image_prompts = image_prompts;
    job.nimage_prompts = o.nimage_prompts;
    kiln_hypernetwork *hypernetworks[KILN_MAX_HYPERNETWORKS];
    for (int i = 0; i < o.nhypernetworks; i++)
        if (kiln_hypernetwork_load(m, o.hypernetworks[i].path, o.hypernetworks[i].strength, &hypernetworks[i]) !=
            KILN_OK)
            return fail("--hypernetwork");
    job.hypernetworks = (const kiln_hypernetwork *const *)hypernetworks;
    job.nhypernetworks = o.nhypernetworks;
    job.init_latent = init_latent;
    int64_t latent_shape[4] = {o.batch, kiln_model_latent_channels(m), job.latent_h, job.latent_w};
    if (o.init_noise && (rc = load_noise(o.init_noise, latent_shape, &noise))) return rc;
    job.noise = noise;

    kiln_tokenizer *tok;
    if (kiln_tokenizer_create_with(o.cleaning, &tok) != KILN_OK) return fail("tokenizer");
    kiln_latent references[KILN_MAX_REFERENCES] = {0};
    for (int i = 0; i < o.nreferences; i++) {
        kiln_image img;
        if (kiln_image_load(o.references[i], &img) != KILN_OK) return fail("--reference-image");
        kiln_status st = kiln_vae_encode(m, &img, 1, &references[i]);
        kiln_image_free(&img);
        if (st != KILN_OK) return fail("--reference-image");
    }
    job.references[1] = references;
    job.nreferences[1] = o.nreferences;
    job.reference_methods[1] = o.reference_placement;

    char **prompts = NULL;
    int nprompts = 1;
    if (o.prompts_file && (rc = read_prompts(o.prompts_file, &prompts, &nprompts))) return rc;
    const render_ctx ctx = {m, be, tok, controls, upscaler, model_name, clip_skip, model_clip_skip, inpaint_unet,
                            pix2pix, t_start, t_loaded};
    for (int i = 0; i < nprompts && !rc; i++) { /* each its own copy of the flags and the job: a run changes them */
        gen_options run = o;
        kiln_sampling_job run_job = job;
        if (prompts) run.prompt = prompts[i], run.seed = run_job.seed = o.seed + (uint64_t)i;
        rc = render(&ctx, &run, &run_job, i * o.batch, nprompts * o.batch, i == 0);
    }
    for (int i = 0; prompts && i < nprompts; i++) free(prompts[i]);
    free(prompts);
    free(noise);
    free(init_latent);
    free(image_latent);
    kiln_inpaint_free(&inpaint);
    for (int i = 0; i < o.nreferences; i++) kiln_latent_free(&references[i]);
    for (int i = 0; i < o.ncontrols; i++) {
        free((float *)controls[i].hint);
        kiln_controlnet_free((kiln_controlnet *)controls[i].net);
    }
    for (int i = 0; i < o.nimage_prompts; i++) {
        free((float *)image_prompts[i].tokens);
        kiln_ip_adapter_free((kiln_ip_adapter *)image_prompts[i].adapter);
    }
    for (int i = 0; i < o.nhypernetworks; i++) kiln_hypernetwork_free(hypernetworks[i]);
    kiln_upscaler_free(upscaler);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
    kiln_sigmas_free(&sigmas);
    return rc;
}
