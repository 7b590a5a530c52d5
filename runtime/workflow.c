/* ComfyUI API-format workflows ("prompt": node id -> class_type and inputs)
 * run through the embedding API, node by node.
 *
 * Only what the output nodes (SaveImage, PreviewImage, CheckpointSave) need is
 * run, each node once, ancestors first. Loaders are lazy: LoRAs merge into
 * the weights when a checkpoint loads, so MODEL and CLIP values are recipes
 * (checkpoint, LoRAs in order) and a checkpoint is loaded once per recipe,
 * when a node first reads its UNet, text towers or VAE. The usual graph,
 * whose MODEL and CLIP pass through the same LoraLoaders, loads one model. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln.h"
#include "inpaint.h"
#include "latent.h"
#include "pipeline.h"
#include "resample.h"

#include "sampler.h"
#include "status.h"
#include "step_cache.h"

#define WF_MAX_LORAS 16
#define WF_MAX_OUTPUTS 3 /* CheckpointLoaderSimple's MODEL, CLIP, VAE */
#define WF_MAX_MODELS 8
#define WF_MAX_NETS 8

typedef enum wf_kind {
    WF_NONE,
    WF_MODEL, /* a recipe; the UNet */
    WF_CLIP,  /* a recipe; the text towers */
    WF_VAE,   /* a recipe; the VAE */
    WF_CONDITIONING,
    WF_LATENT,
    WF_IMAGE,
    WF_CONTROL_NET, /* a file, loaded for the model that samples with it */
    WF_UPSCALE_MODEL,
    WF_IPADAPTER,   /* a file, loaded for the model that samples with it */
    WF_CLIP_VISION, /* a file, loaded once */
    WF_MASK,        /* a kiln_mask */
    WF_NOISE,       /* SamplerCustomAdvanced's parts: RandomNoise / DisableNoise, */
    WF_GUIDER,      /* CFGGuider / BasicGuider, */
    WF_SAMPLER,     /* KSamplerSelect, SamplerEulerAncestral, ... */
    WF_SIGMAS,      /* the scheduler nodes, SplitSigmas, ... */
    WF_STYLE_MODEL, /* a file, loaded once */
    WF_CLIP_VISION_OUTPUT, /* CLIPVisionEncode's: the tower's file, the picture and the crop, encoded where used */
    WF_LATENT_OPERATION,   /* LatentOperationTonemapReinhard's or LatentOperationSharpen's */
    WF_PLAIN,              /* an INT, FLOAT or STRING: GetImageSize's, the string nodes' */
} wf_kind;

static const char *const kind_names[] = {"nothing", "MODEL",         "CLIP",      "VAE",        "CONDITIONING",
                                         "LATENT",  "IMAGE",         "CONTROL_NET", "UPSCALE_MODEL", "IPADAPTER",
                                         "CLIP_VISION", "MASK",    "NOISE",       "GUIDER",        "SAMPLER",
                                         "SIGMAS",  "STYLE_MODEL", "CLIP_VISION_OUTPUT", "LATENT_OPERATION",
                                         "INT, FLOAT or STRING"};

/* IPAdapterAdvanced's part of a MODEL. */
typedef struct wf_image_prompt {
    const char *adapter, *clip_vision; /* paths, the loader nodes' values' */
    const kiln_image *image; /* nimages of them (an ImageBatch's) */
    int nimages;
    double weight, start, end;
} wf_image_prompt;

/* SkipLayerGuidanceSD3's or SkipLayerGuidanceDiT's settings on a MODEL
 * (kiln_skip_layer_guidance's); no layers: none. */
typedef struct wf_slg {
    int double_layers[64], ndouble, single_layers[64], nsingle;
    double scale, start, end, rescale;
    bool uncond_only; /* SkipLayerGuidanceDiTSimple's */
} wf_slg;

/* A checkpoint and the LoRAs merged into it, in order. */
typedef struct wf_recipe {
    char *ckpt;
    const char *weight_dtype; /* the loader's (weight_dtype), the node's string, alive for the run */
    kiln_lora loras[WF_MAX_LORAS]; /* paths owned */
    int nloras;
    /* ModelMerge* and CLIPMerge* nodes, before the LoRAs; paths and block arrays owned (the blocks' prefixes are
       their node's input names, alive for the run) */
    kiln_merge merges[KILN_MAX_MERGES];
    int nmerges;
    /* UNetSelfAttentionMultiply's and UNetCrossAttentionMultiply's factors, after the merges, where given */
    bool has_attention[3]; /* UNetSelfAttentionMultiply's, UNetCrossAttentionMultiply's, CLIPAttentionMultiply's */
    kiln_attention_multiply attention[3];
    int clip_skip; /* CLIPSetLastLayer; 0: the model's */
    bool t5_options; /* T5TokenizerOptions, with these values (kiln_model_set_t5_tokenizer_options') */
    int t5_min_padding, t5_min_length;
    /* what MODEL patches leave besides the weights: ModelSamplingDiscrete's ("eps", "v_prediction", "lcm"; NULL:
       the checkpoint's; and its zsnr), ModelSamplingFlux's or ModelSamplingSD3's shift (0: the model's) and the IPAdapterAdvanced
       nodes'; not part of what is loaded */
    const char *prediction;
    bool zsnr;           /* ModelSamplingDiscrete's zsnr */
    const char *edm;     /* ModelSamplingContinuousEDM's sampling, with its sigmas, after any ModelSamplingDiscrete;
                            NULL: none */
    double edm_sigma_max, edm_sigma_min;
    double flux_shift;
    double differential; /* DifferentialDiffusion's strength; 0: none */
    double rescale_cfg;  /* RescaleCFG's multiplier; 0: none */
    bool cfg_zero_star;  /* CFGZeroStar */
    bool apg;            /* APG, its eta, norm_threshold and momentum */
    double apg_eta, apg_norm_threshold, apg_momentum;
    bool tcfg, mahiro;   /* TCFG, Mahiro */
    double cfg_norm;     /* CFGNorm's strength; 0: none */
    double epsilon_scaling; /* Epsilon Scaling's factor; 0: none */
    wf_slg slg;
    bool has_freeu;      /* FreeU or FreeU_V2, with these values */
    kiln_freeu freeu;
    double pag_scale;    /* PerturbedAttentionGuidance's scale; 0: none */
    bool has_sag;        /* SelfAttentionGuidance, with these settings */
    kiln_sag sag;
    bool has_deep_shrink; /* PatchModelAddDownscale, with these settings (its methods kiln's static names) */
    kiln_deep_shrink deep_shrink;
    bool has_hypertile;  /* HyperTile, with these settings */
    kiln_hypertile hypertile;
    bool has_fresca;     /* FreSca, with these settings */
    kiln_fresca fresca;
    bool has_step_cache; /* EasyCache or LazyCache, with these settings */
    kiln_step_cache step_cache;
    bool has_operation;  /* LatentApplyOperationCFG, with this operation */
    kiln_latent_operation operation;
    wf_image_prompt image_prompts[KILN_MAX_IP_ADAPTERS]; /* the IPAdapterAdvanced nodes it went through, in order */
    int nimage_prompts;
    /* the HypernetworkLoader nodes it went through, in order: their files (the nodes' values' paths) and
       strengths */
    struct {
        const char *path;
        double strength;
    } hypernetworks[KILN_MAX_HYPERNETWORKS];
    int nhypernetworks;
    /* PerpNeg (the node PerpNegGuider replaced): its empty_conditioning (the node's input's value) and neg_scale;
       NULL: none */
    const struct wf_value *perp_neg_empty;
    double perp_neg_scale;
} wf_recipe;

/* A ControlNet apply node's part of a CONDITIONING. */
typedef struct wf_control {
    const char *path; /* the CONTROL_NET value's, which outlives it */
    const kiln_image *image;
    double strength, start, end;
    const char *union_type; /* SetUnionControlNetType's (a string of the workflow's JSON); NULL: none */
    const kiln_image *mask; /* ControlNetInpaintingAliMamaApply's; NULL: ControlNetApplyAdvanced */
    bool one_side;          /* ControlNetApply's: on this CONDITIONING only, not its sampling's other prompt */
} wf_control;

/* Where a prompt acts: its part of the sampling where ranged
 * (ConditioningSetTimestepRange; else all of it) and of the picture
 * (ConditioningSetMask, ConditioningSetArea and its kin, as
 * kiln_conditioning_part's fields). */
typedef struct wf_where {
    bool ranged;
    double start, end;
    const kiln_mask *mask;  /* a MASK; NULL: none */
    double mask_strength;
    bool mask_bounds;
    int area[4];            /* x, y, w, h in latent pixels; w 0: none */
    double fraction[4];     /* x, y, w, h of the latent; w 0: none */
    double area_strength;   /* where has_area_strength */
    bool has_area_strength;
} wf_where;

/* A prompt of a CONDITIONING after the first (ConditioningCombine's). */
typedef struct wf_part {
    kiln_conditioning cond;
    wf_where where;
} wf_part;

typedef struct wf_value {
    wf_kind kind;
    wf_recipe recipe;
    kiln_conditioning cond;
    /* CONDITIONING: where cond acts, and the prompts ConditioningCombine put after it */
    wf_where where;
    wf_part parts[KILN_MAX_PROMPT_PARTS - 1];
    int nparts;
    wf_control controls[KILN_MAX_CONTROLS]; /* the ControlNet apply nodes it went through, in order */
    int ncontrols;
    bool has_sdxl;      /* CLIPTextEncodeSDXL / ...Refiner's numbers (the refiner's ascore in aesthetic) */
    kiln_sdxl_cond sdxl;
    const kiln_latent *edit; /* InstructPixToPixConditioning's picture (its node's positive output holds it) */
    double flux_guidance;    /* FluxGuidance's; 0: none given; below 0: none (FluxDisableGuidance) */
    double pixart_width, pixart_height; /* CLIPTextEncodePixArtAlpha's size; 0: none */
    const kiln_latent *references[KILN_MAX_REFERENCES]; /* ReferenceLatent's, in order (other nodes' LATENTs) */
    int nreferences;
    kiln_reference_method reference_method; /* FluxKontextMultiReferenceLatentMethod's; offset: none */
    kiln_latent latent;   /* data NULL: EmptyLatentImage's, made for the model that reads it */
    int empty_w, empty_h; /* EmptyLatentImage's size in pixels */
    kiln_image *images;   /* IMAGE: a batch; MASK: kiln_mask_picture's of it, made when first asked for */
    int nimages;
    kiln_mask mask;
    /* ImagePadForOutpaint's IMAGE and MASK, which kiln keeps as the picture
     * and the pads (its canvas and feathered mask are float, no 8-bit
     * picture): they go on to VAEEncodeForInpaint, or to VAEEncode and
     * SetLatentNoiseMask, which make of them what kiln_vae_encode_for_outpaint
     * makes; the latent VAEEncode makes of the canvas carries the mask as
     * pad_mask for SetLatentNoiseMask. */
    const struct wf_node *pad_node;
    const kiln_image *padded; /* the picture (its LoadImage's) */
    cJSON *plain;             /* WF_PLAIN: the number or string */
    int pad[5];               /* left, top, right, bottom, feathering */
    float *pad_mask;
    int pad_mask_w, pad_mask_h;
    char *path; /* CONTROL_NET, IPADAPTER, CLIP_VISION, STYLE_MODEL; CLIP_VISION_OUTPUT: its tower's */
    char *clip_vision_path;    /* IPADAPTER from LoadFluxIPAdapter: the tower it names */
    const kiln_image *picture; /* CLIP_VISION_OUTPUT: LoadImage's, which outlives it */
    bool crop;                 /* CLIP_VISION_OUTPUT: "center" */
    const char *union_type; /* CONTROL_NET: SetUnionControlNetType's; NULL: none ("auto") */
    kiln_upscaler *upscaler;
    /* NOISE: the seed (disabled: DisableNoise); GUIDER: the model and prompts (negative NULL: BasicGuider's
       positive alone) and cfg; SAMPLER: the sampler's name; SIGMAS: the sigmas */
    uint64_t noise_seed;
    bool noise_disabled;
    const struct wf_value *guide_model, *guide_positive, *guide_negative;
    double cfg;
    /* GUIDER of DualCFGGuider (cond2, cfg_cond2_negative, style) or PerpNegGuider (empty_conditioning,
       neg_scale); third NULL: CFGGuider's or BasicGuider's */
    const struct wf_value *guide_third;
    double guide_scale2;
    bool guide_dual_cfg, guide_nested;
    const char *sampler;
    kiln_sampler_options sampler_options; /* SAMPLER: a custom sampler node's (has_sampler_options) */
    bool has_sampler_options;
    kiln_sigmas sigmas;
    kiln_latent_operation operation; /* LATENT_OPERATION */
} wf_value;

typedef struct wf_node {
    const char *id;
    const cJSON *json;
    const char *class_type;
    int state; /* 0 not run, 1 running (a cycle if met again), 2 done */
    wf_value out[WF_MAX_OUTPUTS];
} wf_node;

typedef struct wf_model {
    wf_recipe recipe; /* borrowed from the node that loaded it */
    kiln_model *model;
} wf_model;

/* A ControlNet, IP-Adapter or CLIP vision file loaded (for a model: the
 * first two are bound to its UNet). */
typedef struct wf_net {
    const char *path;
    const kiln_model *model;
    double strength; /* a hypernetwork's */
    kiln_controlnet *controlnet;
    kiln_ip_adapter *ip_adapter;
    kiln_clip_vision *clip_vision;
    kiln_style_model *style_model;
    kiln_hypernetwork *hypernetwork;
} wf_net;

typedef struct wf_run {
    kiln_backend *be;
    const kiln_workflow_options *opt;
    wf_node *nodes;
    int nnodes;
    wf_model models[WF_MAX_MODELS];
    int nmodels;
    wf_net nets[WF_MAX_NETS];
    int nnets;
    kiln_image *saved; /* the output nodes' images, in order */
    int nsaved;
    /* VAELoader's and the CLIP loader's files, given beside every checkpoint the run loads */
    char *part_files[1 + KILN_MAX_TEXT_ENCODER_PARTS]; /* the VAE, the text encoders; NULL: none */
    kiln_model_parts parts;
    char *embeddings; /* every model's embeddings folder, or NULL */
    wf_node *first_loader; /* the first UNETLoader, CheckpointLoaderSimple or DiffusersLoader, which the part loaders'
                              outputs load */
    const cJSON *graph;    /* the workflow run, which SaveLatent records */
} wf_run;

static kiln_status node_fail(const wf_node *n, kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kiln_status node_fail(const wf_node *n, kiln_status code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_fail(code, "workflow node %s (%s): %s", n->id, n->class_type, msg);
}

/* A library call's status, its error told as the node's. */
static kiln_status node_status(const wf_node *n, kiln_status st)
{
    return st == KILN_OK ? KILN_OK : node_fail(n, st, "%s", kiln_last_error());
}

/* A model file named in the workflow: as given if it is there, else under
 * each models folder, in its kind's subfolder as ComfyUI keeps them, then
 * at the top. */
static kiln_status find_file(const wf_run *r, const wf_node *n, const char *input, const char *subfolder,
                             char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(n->json, "inputs"), input);
    if (!cJSON_IsString(v) || !*v->valuestring) return node_fail(n, KILN_ERR_INVALID_ARG, "no file name '%s'", input);
    const char *name = v->valuestring;
    /* the subfolders' older names, which ComfyUI still reads */
    const char *legacy = strcmp(subfolder, "diffusion_models") == 0 ? "unet"
                         : strcmp(subfolder, "text_encoders") == 0  ? "clip"
                                                                    : NULL;
    const char *const places[3] = {subfolder, legacy, ""};
    struct stat st;
    char path[4096];
    for (int i = -1; i < r->opt->nmodel_dirs; i++) {
        for (int sub = 0; sub < 3; sub++) {
            if ((i < 0 && sub) || !places[sub]) continue;
            if (i < 0) snprintf(path, sizeof path, "%s", name);
            else if (*places[sub]) snprintf(path, sizeof path, "%s/%s/%s", r->opt->model_dirs[i], places[sub], name);
            else snprintf(path, sizeof path, "%s/%s", r->opt->model_dirs[i], name);
            if (stat(path, &st) == 0) {
                if (!(*out = strdup(path))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
                return KILN_OK;
            }
        }
    }
    return node_fail(n, KILN_ERR_IO, "%s '%s' not found as given%s", input, name,
                     r->opt->nmodel_dirs ? " nor in the models folders (--models)" : "; name its folder with --models");
}

/* The embeddings folder: the options', else the first models folder's
 * embeddings/ that is there. */
static kiln_status find_embeddings(wf_run *r)
{
    struct stat st;
    char path[4096];
    const char *dir = r->opt->embeddings;
    for (int i = 0; !dir && i < r->opt->nmodel_dirs; i++) {
        snprintf(path, sizeof path, "%s/embeddings", r->opt->model_dirs[i]);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) dir = path;
    }
    if (dir && !(r->embeddings = strdup(dir))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    return KILN_OK;
}

static const cJSON *input_of(const wf_node *n, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(n->json, "inputs"), name);
}

/* Input *in of `inputs` replaced by a copy of value (its name kept); *in the copy. */
static kiln_status put_input_value(cJSON *inputs, cJSON **in, const cJSON *value)
{
    cJSON *copy = cJSON_Duplicate(value, true);
    if (!copy || !cJSON_ReplaceItemInObjectCaseSensitive(inputs, (*in)->string, copy)) {
        cJSON_Delete(copy);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    }
    *in = copy;
    return KILN_OK;
}

static kiln_status number(const wf_node *n, const char *name, double *out)
{
    const cJSON *v = input_of(n, name);
    *out = 0.0;
    if (!cJSON_IsNumber(v)) return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' is not a number", name);
    *out = v->valuedouble;
    return KILN_OK;
}

/* An integer input within [lo, hi]. */
static kiln_status integer(const wf_node *n, const char *name, double lo, double hi, int *out)
{
    double v;
    *out = 0;
    TRY(number(n, name, &v));
    if (v < lo || v > hi || v != (double)(long long)v) /* the range first: the cast is defined only within it */
        return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' %g: an integer from %g to %g", name, v, lo, hi);
    *out = (int)v;
    return KILN_OK;
}

/* A seed input: an integer from 0 to 2^64 - 1 (ComfyUI's range). */
static kiln_status seed_input(const wf_node *n, const char *name, uint64_t *out)
{
    double seed;
    TRY(number(n, name, &seed));
    if (seed < 0 || seed > 18446744073709549568.0 || seed != (double)(unsigned long long)seed)
        return node_fail(n, KILN_ERR_INVALID_ARG, "seed %.0f: an integer from 0 to 2^64 - 1", seed);
    *out = (uint64_t)seed;
    return KILN_OK;
}

static kiln_status text(const wf_node *n, const char *name, const char **out)
{
    const cJSON *v = input_of(n, name);
    *out = NULL;
    if (!cJSON_IsString(v)) return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' is not a string", name);
    *out = v->valuestring;
    return KILN_OK;
}

/* A boolean input. */
static kiln_status flag(const wf_node *n, const char *name, bool *out)
{
    const cJSON *v = input_of(n, name);
    if (!cJSON_IsBool(v)) return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s': true or false", name);
    *out = cJSON_IsTrue(v);
    return KILN_OK;
}

/* A MASK as the calls that read a mask as a picture take it: kiln_mask_picture's, made once. */
static kiln_status mask_picture(wf_value *mask, const kiln_image **out)
{
    if (!mask->images) {
        if (!(mask->images = calloc(1, sizeof *mask->images)))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
        TRY(kiln_mask_picture(&mask->mask, mask->images));
        mask->nimages = 1;
    }
    *out = mask->images;
    return KILN_OK;
}

static kiln_status run_node(wf_run *r, wf_node *n);

/* The node a link input ([node id, output index]) names; NULL where v is not a link or names no node. */
static wf_node *linked_node(wf_run *r, const cJSON *v)
{
    const cJSON *id = cJSON_GetArrayItem(v, 0), *index = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsString(id) || !cJSON_IsNumber(index)) return NULL;
    for (int i = 0; i < r->nnodes; i++)
        if (strcmp(r->nodes[i].id, id->valuestring) == 0) return &r->nodes[i];
    return NULL;
}

/* The value a link input carries, run first. */
/* A link to an output of the given kind, ImagePadForOutpaint's among them. */
static kiln_status linked_or_pad(wf_run *r, const wf_node *n, const char *name, wf_kind kind, wf_value **out)
{
    const cJSON *v = input_of(n, name);
    const cJSON *id = cJSON_GetArrayItem(v, 0), *index = cJSON_GetArrayItem(v, 1);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsString(id) || !cJSON_IsNumber(index))
        return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' is not a link [node id, output] to a %s%s", name,
                         kind_names[kind], cJSON_IsString(v) || cJSON_IsNumber(v) ? " (it holds a plain value)" : "");
    wf_node *from = linked_node(r, v);
    if (!from) return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' links to node %s, which is not in the workflow",
                                name, id->valuestring);
    if (from->state == 1)
        return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' links back into a cycle through node %s", name, from->id);
    if (from->state == 0) TRY(run_node(r, from));
    int i = index->valueint;
    if (i < 0 || i >= WF_MAX_OUTPUTS || from->out[i].kind != kind)
        return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' wants a %s; node %s's output %d is %s", name,
                         kind_names[kind], from->id, i,
                         i >= 0 && i < WF_MAX_OUTPUTS ? kind_names[from->out[i].kind] : "not there");
    *out = &from->out[i];
    return KILN_OK;
}

static kiln_status linked(wf_run *r, const wf_node *n, const char *name, wf_kind kind, wf_value **out)
{
    TRY(linked_or_pad(r, n, name, kind, out));
    if ((*out)->pad_node)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "input '%s': ImagePadForOutpaint's outputs go to VAEEncode, "
                         "SetLatentNoiseMask or VAEEncodeForInpaint in kiln", name);
    return KILN_OK;
}

static kiln_status copy_recipe(const wf_recipe *from, wf_recipe *to)
{
    /* the plain fields as they are, the owned paths and merge blocks copied; after a failed copy `to` holds what
       it got, for free_recipe */
    *to = *from;
    to->nloras = to->nmerges = 0;
    bool ok = (to->ckpt = strdup(from->ckpt)) != NULL;
    for (int i = 0; i < from->nloras && ok; i++) {
        ok = (to->loras[i].path = strdup(from->loras[i].path)) != NULL;
        if (ok) to->nloras = i + 1;
    }
    for (int i = 0; i < from->nmerges && ok; i++) {
        const kiln_merge *m = &from->merges[i];
        kiln_merge_block *blocks = m->nblocks ? malloc((size_t)m->nblocks * sizeof *blocks) : NULL;
        char *path = strdup(m->path);
        ok = path && (blocks || !m->nblocks);
        if (!ok) {
            free(path);
            free(blocks);
            break;
        }
        if (blocks) memcpy(blocks, m->blocks, (size_t)m->nblocks * sizeof *blocks);
        to->merges[i] = *m;
        to->merges[i].path = path, to->merges[i].blocks = blocks;
        to->nmerges = i + 1;
    }
    return ok ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
}

/* A MODEL patch node's output: the MODEL it takes, to patch (*out). */
static kiln_status patched_model(wf_node *n, const wf_value *model, wf_recipe **out)
{
    n->out[0].kind = WF_MODEL;
    TRY(copy_recipe(&model->recipe, &n->out[0].recipe));
    *out = &n->out[0].recipe;
    return KILN_OK;
}

static void free_recipe(wf_recipe *rc)
{
    free(rc->ckpt);
    for (int i = 0; i < rc->nloras; i++) free((char *)rc->loras[i].path);
    for (int i = 0; i < rc->nmerges; i++) {
        free((char *)rc->merges[i].path);
        free((kiln_merge_block *)rc->merges[i].blocks);
    }
    *rc = (wf_recipe){0};
}

static bool same_merge(const kiln_merge *a, const kiln_merge *b)
{
    if (strcmp(a->path, b->path) || a->kind != b->kind || a->ratio != b->ratio ||
        a->text_encoders != b->text_encoders || a->nblocks != b->nblocks)
        return false;
    for (int i = 0; i < a->nblocks; i++)
        if (strcmp(a->blocks[i].prefix, b->blocks[i].prefix) || a->blocks[i].ratio != b->blocks[i].ratio) return false;
    return true;
}

static bool same_loads(const wf_recipe *a, const wf_recipe *b)
{
    if (strcmp(a->ckpt, b->ckpt) || a->nloras != b->nloras || a->nmerges != b->nmerges ||
        memcmp(a->has_attention, b->has_attention, sizeof a->has_attention))
        return false;
    for (int i = 0; i < 3; i++)
        if (a->has_attention[i] && memcmp(&a->attention[i], &b->attention[i], sizeof a->attention[i])) return false;
    for (int i = 0; i < a->nmerges; i++)
        if (!same_merge(&a->merges[i], &b->merges[i])) return false;
    if ((a->weight_dtype != NULL) != (b->weight_dtype != NULL) ||
        (a->weight_dtype && strcmp(a->weight_dtype, b->weight_dtype)))
        return false;
    for (int i = 0; i < a->nloras; i++)
        if (strcmp(a->loras[i].path, b->loras[i].path) || a->loras[i].unet_strength != b->loras[i].unet_strength ||
            a->loras[i].clip_strength != b->loras[i].clip_strength)
            return false;
    return true;
}

/* The model a recipe loads, loaded the first time it is asked for. A VAE
 * reader takes any load of the checkpoint (LoRAs leave the VAE alone). */
static kiln_status model_of(wf_run *r, const wf_recipe *rc, bool vae_only, kiln_model **out)
{
    for (int i = 0; i < r->nmodels; i++)
        if (vae_only ? strcmp(r->models[i].recipe.ckpt, rc->ckpt) == 0 : same_loads(&r->models[i].recipe, rc)) {
            *out = r->models[i].model;
            return KILN_OK;
        }
    if (r->nmodels == WF_MAX_MODELS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "workflow: more than %d different loads of checkpoints", WF_MAX_MODELS);
    wf_model *m = &r->models[r->nmodels];
    kiln_model_parts parts = r->parts;
    parts.weight_dtype = rc->weight_dtype;
    parts.merges = rc->merges, parts.nmerges = rc->nmerges;
    if (rc->has_attention[0]) parts.self_attention = &rc->attention[0];
    if (rc->has_attention[1]) parts.cross_attention = &rc->attention[1];
    if (rc->has_attention[2]) parts.clip_attention = &rc->attention[2];
    TRY(kiln_checkpoint_load_parts(r->be, rc->ckpt, &parts, rc->loras, rc->nloras, &m->model));
    kiln_status st = kiln_model_set_embeddings(m->model, r->embeddings);
    if (st != KILN_OK) {
        kiln_model_free(m->model);
        m->model = NULL;
        return st;
    }
    m->recipe = *rc;
    r->nmodels++;
    *out = m->model;
    return KILN_OK;
}

/* The file at `path` loaded once (for model m, where it binds to a UNet). */
static kiln_status net_of(wf_run *r, wf_kind kind, const char *path, kiln_model *m, wf_net **out)
{
    for (int i = 0; i < r->nnets; i++)
        if (r->nets[i].model == m && strcmp(r->nets[i].path, path) == 0 && !r->nets[i].hypernetwork) {
            *out = &r->nets[i];
            return KILN_OK;
        }
    if (r->nnets == WF_MAX_NETS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "workflow: more than %d ControlNets, IP-Adapters, CLIP vision and "
                         "style models and hypernetworks", WF_MAX_NETS);
    wf_net *n = &r->nets[r->nnets];
    *n = (wf_net){.path = path, .model = m};
    if (kind == WF_CONTROL_NET) TRY(kiln_controlnet_load(m, path, &n->controlnet));
    else if (kind == WF_IPADAPTER) TRY(kiln_ip_adapter_load(m, path, &n->ip_adapter));
    else if (kind == WF_STYLE_MODEL) TRY(kiln_style_model_open(path, r->be, &n->style_model));
    else TRY(kiln_clip_vision_load(r->be, path, &n->clip_vision));
    r->nnets++;
    *out = n;
    return KILN_OK;
}

/* The hypernetwork at `path` and `strength` loaded once for model m. */
static kiln_status hypernetwork_of(wf_run *r, const char *path, double strength, kiln_model *m,
                                   const kiln_hypernetwork **out)
{
    for (int i = 0; i < r->nnets; i++)
        if (r->nets[i].model == m && strcmp(r->nets[i].path, path) == 0 && r->nets[i].hypernetwork &&
            r->nets[i].strength == strength) {
            *out = r->nets[i].hypernetwork;
            return KILN_OK;
        }
    if (r->nnets == WF_MAX_NETS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "workflow: more than %d ControlNets, IP-Adapters, CLIP vision and "
                         "style models and hypernetworks", WF_MAX_NETS);
    wf_net *n = &r->nets[r->nnets];
    *n = (wf_net){.path = path, .model = m, .strength = strength};
    TRY(kiln_hypernetwork_load(m, path, strength, &n->hypernetwork));
    r->nnets++;
    *out = n->hypernetwork;
    return KILN_OK;
}

/* ---- the nodes, in ComfyUI's names and input names ---- */

/* A loader's weight_dtype (kiln_model_parts.weight_dtype): NULL for
 * "default". */
static kiln_status weight_dtype(const wf_node *n, const char **out)
{
    TRY(text(n, "weight_dtype", out));
    bool convert;
    kiln_dtype to;
    if (!kiln_weight_dtype_from_name(*out, &convert, &to))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "weight_dtype '%s': kiln takes " KILN_WEIGHT_DTYPES, *out);
    if (!convert) *out = NULL;
    return KILN_OK;
}

/* CheckpointLoaderSimple; a weight_dtype input, which ComfyUI's node lacks
 * (and ignores), is kiln's: gen writes it for a run with --weight-dtype. */
static kiln_status checkpoint_loader(wf_run *r, wf_node *n)
{
    const char *dtype = NULL;
    if (input_of(n, "weight_dtype")) TRY(weight_dtype(n, &dtype));
    char *path;
    /* DiffusersLoader: a diffusers folder (model_index.json and its parts) under models/diffusers, which ComfyUI
       reads for UNet models and kiln for any it loads */
    const bool diffusers = strcmp(n->class_type, "DiffusersLoader") == 0;
    TRY(find_file(r, n, diffusers ? "model_path" : "ckpt_name", diffusers ? "diffusers" : "checkpoints", &path));
    wf_recipe rc = {.ckpt = path, .weight_dtype = dtype};
    kiln_status st = KILN_OK;
    for (int i = 0; i < 3 && st == KILN_OK; i++) {
        n->out[i].kind = (wf_kind[]){WF_MODEL, WF_CLIP, WF_VAE}[i];
        st = copy_recipe(&rc, &n->out[i].recipe);
    }
    free(path);
    return st;
}

/* The core node a ComfyUI-GGUF loader stands in for: kiln reads GGUF files
 * wherever it reads safetensors ones, so theirs are the core loaders. */
static const char *core_class(const char *c)
{
    static const char *const gguf[][2] = {{"UnetLoaderGGUF", "UNETLoader"},
                                          {"UnetLoaderGGUFAdvanced", "UNETLoader"},
                                          {"CLIPLoaderGGUF", "CLIPLoader"},
                                          {"DualCLIPLoaderGGUF", "DualCLIPLoader"},
                                          {"TripleCLIPLoaderGGUF", "TripleCLIPLoader"}};
    for (size_t i = 0; i < sizeof gguf / sizeof gguf[0]; i++)
        if (strcmp(c, gguf[i][0]) == 0) return gguf[i][1];
    return c;
}

/* UNETLoader: a transformer or UNet file without its text encoders and VAE,
 * which the run's part loaders give. Its weight_dtype converts the linear
 * weights at load ("fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"; kiln also
 * takes "q8_0"): kiln_model_parts.weight_dtype. A GGUF file's block types
 * are widened where they are used, in the compute type, which
 * UnetLoaderGGUFAdvanced's dequant_dtype "default", "target" (the f16
 * model's) and "float16" name. */
static kiln_status unet_loader(wf_run *r, wf_node *n)
{
    const char *dtype = NULL;
    if (strcmp(n->class_type, "UNETLoader") == 0) {
        TRY(weight_dtype(n, &dtype));
    } else if (strcmp(n->class_type, "UnetLoaderGGUFAdvanced") == 0) {
        const char *dequant;
        TRY(text(n, "dequant_dtype", &dequant));
        if (strcmp(dequant, "default") != 0 && strcmp(dequant, "target") != 0 && strcmp(dequant, "float16") != 0)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "dequant_dtype '%s': kiln widens to its compute type (use "
                             "default)", dequant);
    }
    n->out[0].kind = WF_MODEL;
    n->out[0].recipe.weight_dtype = dtype;
    return find_file(r, n, "unet_name", "diffusion_models", &n->out[0].recipe.ckpt);
}

/* DualCLIPLoader, CLIPLoader and VAELoader: their files are the run's parts
 * (find_parts); their output loads the first model loader's file with them. */
static kiln_status part_loader(wf_run *r, wf_node *n, wf_kind kind)
{
    wf_node *from = r->first_loader;
    if (!from)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "kiln reads it beside a UNETLoader's or CheckpointLoaderSimple's "
                         "model, and the workflow has neither");
    if (from->state == 0) TRY(run_node(r, from));
    n->out[0].kind = kind;
    return copy_recipe(&(wf_recipe){.ckpt = from->out[0].recipe.ckpt}, &n->out[0].recipe);
}

/* A loader of a model with its text encoders and VAE (MODEL, CLIP, VAE). */
static bool whole_model_loader(const char *c)
{
    return strcmp(c, "CheckpointLoaderSimple") == 0 || strcmp(c, "DiffusersLoader") == 0;
}

/* The files of the workflow's VAELoader and CLIP loader (at most one of
 * each: kiln's model is one transformer with its text encoders and VAE),
 * which every checkpoint the run loads takes in place of its own; links to
 * a CheckpointLoaderSimple's outputs they replace are refused, as they would
 * read the part's and not the checkpoint's. */
static kiln_status find_parts(wf_run *r)
{
    wf_node *vae = NULL, *clip = NULL;
    for (int i = 0; i < r->nnodes; i++) {
        wf_node *n = &r->nodes[i];
        const char *c = core_class(n->class_type);
        if (!r->first_loader && (strcmp(c, "UNETLoader") == 0 || whole_model_loader(c))) r->first_loader = n;
        if (strcmp(c, "VAELoader") == 0) {
            if (vae) return node_fail(n, KILN_ERR_UNSUPPORTED, "a second VAELoader (node %s's): kiln's model holds "
                                      "one VAE", vae->id);
            vae = n;
            TRY(find_file(r, n, "vae_name", "vae", &r->part_files[0]));
        } else if (strcmp(c, "DualCLIPLoader") == 0 || strcmp(c, "CLIPLoader") == 0 ||
                   strcmp(c, "TripleCLIPLoader") == 0) {
            if (clip) return node_fail(n, KILN_ERR_UNSUPPORTED, "a second CLIP loader (node %s's): kiln's model "
                                       "holds one set of text encoders", clip->id);
            clip = n;
            const bool dual = c[0] == 'D', triple = c[0] == 'T';
            const char *type = "sd3"; /* TripleCLIPLoader's three are SD3's */
            if (!triple) TRY(text(n, "type", &type));
            if (dual && strcmp(type, "flux") != 0 && strcmp(type, "sdxl") != 0 && strcmp(type, "sd3") != 0)
                return node_fail(n, KILN_ERR_UNSUPPORTED, "type '%s' (kiln reads Flux's CLIP-L and T5, flux, "
                                 "SDXL's CLIP-L and bigG, sdxl, and SD3's CLIP-L and bigG, sd3)", type);
            if (!dual && !triple && strcmp(type, "stable_diffusion") != 0 && strcmp(type, "pixart") != 0 &&
                strcmp(type, "chroma") != 0)
                return node_fail(n, KILN_ERR_UNSUPPORTED, "type '%s' (kiln reads SD's CLIP, stable_diffusion, and "
                                 "PixArt's and Chroma's T5, pixart and chroma)", type);
            TRY(find_file(r, n, dual || triple ? "clip_name1" : "clip_name", "text_encoders", &r->part_files[1]));
            if (dual || triple) TRY(find_file(r, n, "clip_name2", "text_encoders", &r->part_files[2]));
            if (triple) TRY(find_file(r, n, "clip_name3", "text_encoders", &r->part_files[3]));
        }
    }
    r->parts = (kiln_model_parts){.vae = r->part_files[0],
                                  .text_encoders = {r->part_files[1], r->part_files[2], r->part_files[3]},
                                  .tokenizer = r->opt->tokenizer, .config = r->opt->config};
    for (int i = 0; i < r->nnodes; i++) {
        const cJSON *in;
        cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(r->nodes[i].json, "inputs"))
        {
            const cJSON *id = cJSON_GetArrayItem(in, 0), *index = cJSON_GetArrayItem(in, 1);
            if (!cJSON_IsArray(in) || !cJSON_IsString(id) || !cJSON_IsNumber(index)) continue;
            const wf_node *from = NULL;
            for (int k = 0; k < r->nnodes && !from; k++)
                if (strcmp(r->nodes[k].id, id->valuestring) == 0) from = &r->nodes[k];
            if (!from || !whole_model_loader(from->class_type)) continue;
            const wf_node *part = index->valueint == 2 ? vae : index->valueint == 1 ? clip : NULL;
            if (part)
                return node_fail(&r->nodes[i], KILN_ERR_UNSUPPORTED, "input '%s' reads node %s's %s, which node "
                                 "%s's (%s) replaces in kiln's one model", in->string, from->id,
                                 index->valueint == 2 ? "VAE" : "CLIP", part->id, part->class_type);
        }
    }
    return KILN_OK;
}

static kiln_status lora_loader(wf_run *r, wf_node *n, bool model_only)
{
    wf_value *model, *clip = NULL;
    double sm, sc = 0.0;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "strength_model", &sm));
    if (!model_only) {
        TRY(linked(r, n, "clip", WF_CLIP, &clip));
        TRY(number(n, "strength_clip", &sc));
    }
    if (model->recipe.nloras == WF_MAX_LORAS || (clip && clip->recipe.nloras == WF_MAX_LORAS))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "more than %d LoRAs on one checkpoint", WF_MAX_LORAS);
    char *path;
    TRY(find_file(r, n, "lora_name", "loras", &path));
    wf_value *from[2] = {model, clip};
    kiln_status st = KILN_OK;
    for (int i = 0; i < 2 && st == KILN_OK; i++) {
        if (!from[i]) continue;
        n->out[i].kind = i ? WF_CLIP : WF_MODEL;
        wf_recipe *rc = &n->out[i].recipe;
        if ((st = copy_recipe(&from[i]->recipe, rc)) != KILN_OK) break;
        char *copy = strdup(path);
        if (!copy) {
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
            break;
        }
        rc->loras[rc->nloras] = (kiln_lora){copy, sm, sc};
        rc->nloras++;
    }
    free(path);
    return st;
}

/* ModelMergeSimple, ModelMergeAdd, ModelMergeSubtract and their CLIPMerge
 * kin: model2's (clip2's) checkpoint merged into model1's at load, before
 * its LoRAs (kiln_merge). model2 must be a checkpoint as loaded; a LoRA on
 * model1 before a simple merge would be scaled by its ratio in ComfyUI,
 * which kiln's order cannot give, and is refused. */
static kiln_status merge_node(wf_run *r, wf_node *n, kiln_merge_kind kind, bool clip)
{
    static const char *const factor[3] = {"ratio", NULL, "multiplier"};
    const wf_kind wanted = clip ? WF_CLIP : WF_MODEL;
    wf_value *first, *second;
    double ratio = 0.0;
    TRY(linked(r, n, clip ? "clip1" : "model1", wanted, &first));
    TRY(linked(r, n, clip ? "clip2" : "model2", wanted, &second));
    /* ModelMergeBlocks and its per-model kin: a ratio for each of the node's other inputs, named by the prefix of
       the tensors it takes, in the node's order (the first one's for the rest, as ComfyUI's kwargs give it) */
    const bool by_block = kind == KILN_MERGE_SIMPLE && !clip && !input_of(n, "ratio");
    kiln_merge_block blocks[KILN_MAX_MERGE_BLOCKS];
    int nblocks = 0;
    const cJSON *inputs = by_block ? cJSON_GetObjectItemCaseSensitive(n->json, "inputs") : NULL, *input;
    cJSON_ArrayForEach(input, inputs) {
        if (strcmp(input->string, "model1") == 0 || strcmp(input->string, "model2") == 0) continue;
        if (nblocks == KILN_MAX_MERGE_BLOCKS)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "more than %d block ratios", KILN_MAX_MERGE_BLOCKS);
        double block_ratio;
        TRY(number(n, input->string, &block_ratio));
        if (!(block_ratio >= 0.0 && block_ratio <= 1.0))
            return node_fail(n, KILN_ERR_INVALID_ARG, "%s %g: 0 to 1", input->string, block_ratio);
        blocks[nblocks++] = (kiln_merge_block){input->string, block_ratio};
    }
    if (by_block && !nblocks) return node_fail(n, KILN_ERR_INVALID_ARG, "no ratio and no block ratios");
    if (!by_block && factor[kind]) TRY(number(n, factor[kind], &ratio));
    if (kind == KILN_MERGE_SIMPLE && !(ratio >= 0.0 && ratio <= 1.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "ratio %g: 0 to 1", ratio);
    if (kind == KILN_MERGE_SUBTRACT && !(ratio >= -10.0 && ratio <= 10.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "multiplier %g: -10 to 10", ratio);
    const wf_recipe *b = &second->recipe;
    if (b->nloras || b->nmerges || (b->weight_dtype && strcmp(b->weight_dtype, "default")))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%s: kiln merges a checkpoint as loaded, without LoRAs, merges or a "
                         "weight_dtype", clip ? "clip2" : "model2");
    /* an added model commutes with them */
    if (kind != KILN_MERGE_ADD && first->recipe.nloras && (by_block || ratio != 1.0))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%s has LoRAs: kiln merges before them (put the LoraLoader after "
                         "this node)", clip ? "clip1" : "model1");
    if (first->recipe.nmerges == KILN_MAX_MERGES)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "more than %d merges on one checkpoint", KILN_MAX_MERGES);
    if (clip ? first->recipe.has_attention[2] : first->recipe.has_attention[0] || first->recipe.has_attention[1])
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%s has an attention multiply: kiln merges before it (put the "
                         "%sAttentionMultiply node after this one)", clip ? "clip1" : "model1", clip ? "CLIP" : "UNet*");
    n->out[0].kind = wanted;
    wf_recipe *rc = &n->out[0].recipe;
    TRY(copy_recipe(&first->recipe, rc));
    char *path = strdup(b->ckpt);
    kiln_merge_block *owned = nblocks ? malloc((size_t)nblocks * sizeof *owned) : NULL;
    if (!path || (nblocks && !owned)) {
        free(path);
        free(owned);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    }
    if (owned) memcpy(owned, blocks, (size_t)nblocks * sizeof *owned);
    rc->merges[rc->nmerges++] = (kiln_merge){.path = path, .kind = kind, .ratio = ratio, .text_encoders = clip,
                                             .blocks = owned, .nblocks = nblocks};
    return KILN_OK;
}

/* ModelMergeSimple, and ModelMergeBlocks, ModelMergeSD1, ModelMergeSD2, ModelMergeSDXL, ModelMergeFlux1,
   ModelMergeSD3_2B and ModelMergeSD35_Large (ratios by block) */
static kiln_status model_merge_simple(wf_run *r, wf_node *n) { return merge_node(r, n, KILN_MERGE_SIMPLE, false); }
static kiln_status model_merge_add(wf_run *r, wf_node *n) { return merge_node(r, n, KILN_MERGE_ADD, false); }
static kiln_status model_merge_subtract(wf_run *r, wf_node *n) { return merge_node(r, n, KILN_MERGE_SUBTRACT, false); }
static kiln_status clip_merge_simple(wf_run *r, wf_node *n) { return merge_node(r, n, KILN_MERGE_SIMPLE, true); }
static kiln_status clip_merge_add(wf_run *r, wf_node *n) { return merge_node(r, n, KILN_MERGE_ADD, true); }
static kiln_status clip_merge_subtract(wf_run *r, wf_node *n) { return merge_node(r, n, KILN_MERGE_SUBTRACT, true); }

/* UNetSelfAttentionMultiply, UNetCrossAttentionMultiply and
 * CLIPAttentionMultiply: the factors of the UNet's (the text encoders')
 * attention projections at load (kiln_model_parts), after its merges; a second node multiplies into the first's, as ComfyUI's patches
 * compose. A LoRA before would be scaled with the weights in ComfyUI, and
 * is refused. */
static kiln_status attention_multiply(wf_run *r, wf_node *n, int which)
{
    wf_value *model;
    double f[4];
    static const char *const names[4] = {"q", "k", "v", "out"};
    const bool clip = which == 2; /* CLIPAttentionMultiply: on the CLIP */
    TRY(linked(r, n, clip ? "clip" : "model", clip ? WF_CLIP : WF_MODEL, &model));
    for (int i = 0; i < 4; i++) {
        TRY(number(n, names[i], &f[i]));
        if (!(f[i] >= 0.0 && f[i] <= 10.0)) return node_fail(n, KILN_ERR_INVALID_ARG, "%s %g: 0 to 10", names[i], f[i]);
    }
    if (model->recipe.nloras)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "the %s has LoRAs: kiln scales the attention before them (put "
                         "the LoraLoader after this node)", clip ? "CLIP" : "model");
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    n->out[0].kind = model->kind;
    kiln_attention_multiply *m = &recipe->attention[which];
    if (!recipe->has_attention[which]) *m = (kiln_attention_multiply){1, 1, 1, 1};
    recipe->has_attention[which] = true;
    m->q *= f[0], m->k *= f[1], m->v *= f[2], m->out *= f[3];
    return KILN_OK;
}

static kiln_status self_attention_multiply(wf_run *r, wf_node *n) { return attention_multiply(r, n, 0); }
static kiln_status cross_attention_multiply(wf_run *r, wf_node *n) { return attention_multiply(r, n, 1); }
static kiln_status clip_attention_multiply(wf_run *r, wf_node *n) { return attention_multiply(r, n, 2); }

static kiln_status clip_set_last_layer(wf_run *r, wf_node *n)
{
    wf_value *clip;
    int layer;
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(integer(n, "stop_at_clip_layer", -24, -1, &layer));
    n->out[0].kind = WF_CLIP;
    TRY(copy_recipe(&clip->recipe, &n->out[0].recipe));
    n->out[0].recipe.clip_skip = -layer;
    return KILN_OK;
}

/* T5TokenizerOptions: the CLIP's T5 ids padded as it says. */
static kiln_status t5_tokenizer_options(wf_run *r, wf_node *n)
{
    wf_value *clip;
    int padding, length;
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(integer(n, "min_padding", 0, 10000, &padding));
    TRY(integer(n, "min_length", 0, 10000, &length));
    n->out[0].kind = WF_CLIP;
    TRY(copy_recipe(&clip->recipe, &n->out[0].recipe));
    wf_recipe *rc = &n->out[0].recipe;
    rc->t5_options = true;
    rc->t5_min_padding = padding;
    rc->t5_min_length = length;
    return KILN_OK;
}

/* The model a CLIP's text encoders are, tokenizing as the CLIP says. */
static kiln_status text_encoders_of(wf_run *r, const wf_value *clip, kiln_model **m)
{
    const wf_recipe *rc = &clip->recipe;
    TRY(model_of(r, rc, false, m));
    return kiln_model_set_t5_tokenizer_options(*m, rc->t5_options ? rc->t5_min_padding : -1,
                                               rc->t5_options ? rc->t5_min_length : -1);
}

static kiln_status clip_text_encode(wf_run *r, wf_node *n)
{
    wf_value *clip;
    const char *prompt;
    kiln_model *m;
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(text(n, "text", &prompt));
    TRY(text_encoders_of(r, clip, &m));
    n->out[0].kind = WF_CONDITIONING;
    return kiln_text_encode(m, prompt, clip->recipe.clip_skip, &n->out[0].cond);
}

/* CLIPTextEncodePixArtAlpha: the text with the picture size PixArt-alpha's
 * 1024 model embeds for it (kiln_ksampler_params.pixart_width). */
static kiln_status clip_text_encode_pixart_alpha(wf_run *r, wf_node *n)
{
    int width, height;
    TRY(integer(n, "width", 1, 16384, &width));
    TRY(integer(n, "height", 1, 16384, &height));
    TRY(clip_text_encode(r, n));
    n->out[0].pixart_width = width, n->out[0].pixart_height = height;
    return KILN_OK;
}

/* CLIPTextEncodeSD3: CLIP-L's, bigG's and T5's texts apart. With
 * empty_padding "none" ComfyUI leaves an empty text's tower out, which kiln
 * does not; such a node is refused. */
static kiln_status clip_text_encode_sd3(wf_run *r, wf_node *n)
{
    wf_value *clip;
    const char *clip_l, *clip_g, *t5xxl, *padding;
    kiln_model *m;
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(text(n, "clip_l", &clip_l));
    TRY(text(n, "clip_g", &clip_g));
    TRY(text(n, "t5xxl", &t5xxl));
    TRY(text(n, "empty_padding", &padding));
    if (strcmp(padding, "empty_padding") != 0 && (strcmp(padding, "none") != 0 || !*clip_l || !*clip_g || !*t5xxl))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "empty_padding '%s' with an empty text (kiln encodes every text, "
                         "empty ones too: empty_padding \"empty_padding\")", padding);
    TRY(text_encoders_of(r, clip, &m));
    n->out[0].kind = WF_CONDITIONING;
    return kiln_text_encode_sd3(m, clip_l, clip_g, t5xxl, &n->out[0].cond);
}

/* CLIPTextEncodeSDXL (refiner: CLIPTextEncodeSDXLRefiner): the prompt
 * (SDXL's: text_g for OpenCLIP bigG, text_l for CLIP-L) with the numbers
 * SDXL's vector y embeds. */
static kiln_status clip_text_encode_sdxl(wf_run *r, wf_node *n, bool refiner)
{
    wf_value *clip;
    const char *prompt, *text_l = NULL;
    kiln_sdxl_cond *c = &n->out[0].sdxl;
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(integer(n, "width", 0, 16384, &c->width));
    TRY(integer(n, "height", 0, 16384, &c->height));
    if (refiner) {
        TRY(text(n, "text", &prompt));
        TRY(number(n, "ascore", &c->aesthetic));
    } else {
        TRY(text(n, "text_g", &prompt));
        TRY(text(n, "text_l", &text_l));
        TRY(integer(n, "crop_w", 0, 16384, &c->crop_w));
        TRY(integer(n, "crop_h", 0, 16384, &c->crop_h));
        TRY(integer(n, "target_width", 0, 16384, &c->target_width));
        TRY(integer(n, "target_height", 0, 16384, &c->target_height));
    }
    kiln_model *m;
    TRY(text_encoders_of(r, clip, &m));
    n->out[0].kind = WF_CONDITIONING;
    n->out[0].has_sdxl = true;
    if (text_l && strcmp(prompt, text_l)) {
        kiln_status st = kiln_text_encode_sdxl(m, prompt, text_l, clip->recipe.clip_skip, &n->out[0].cond);
        return node_status(n, st);
    }
    return kiln_text_encode(m, prompt, clip->recipe.clip_skip, &n->out[0].cond);
}

static kiln_status model_sampling_discrete(wf_run *r, wf_node *n)
{
    wf_value *model;
    const char *sampling;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(text(n, "sampling", &sampling));
    if (strcmp(sampling, "eps") && strcmp(sampling, "v_prediction") && strcmp(sampling, "lcm") &&
        strcmp(sampling, "x0") && strcmp(sampling, "img_to_img"))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "sampling '%s' (kiln samples eps, v_prediction, lcm, x0 and "
                         "img_to_img)", sampling);
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->prediction = sampling; /* the node's JSON outlives the run */
    recipe->zsnr = cJSON_IsTrue(input_of(n, "zsnr"));
    recipe->edm = NULL; /* the model's sampling is this node's now */
    return KILN_OK;
}

/* ModelSamplingContinuousEDM: in place of the model's sampling, as the
 * ModelSamplingDiscrete before it (kiln_model_set_continuous_edm checks
 * the values when the model samples). */
static kiln_status model_sampling_continuous_edm(wf_run *r, wf_node *n)
{
    wf_value *model;
    const char *sampling;
    double sigma_max, sigma_min;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(text(n, "sampling", &sampling));
    TRY(number(n, "sigma_max", &sigma_max));
    TRY(number(n, "sigma_min", &sigma_min));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->edm = sampling; /* the node's JSON outlives the run */
    recipe->edm_sigma_max = sigma_max, recipe->edm_sigma_min = sigma_min;
    return KILN_OK;
}

/* IPAdapterModelLoader, CLIPVisionLoader and StyleModelLoader: files,
 * loaded where they are used. */
static kiln_status file_loader(wf_run *r, wf_node *n, wf_kind kind)
{
    n->out[0].kind = kind;
    if (kind == WF_STYLE_MODEL) return find_file(r, n, "style_model_name", "style_models", &n->out[0].path);
    return kind == WF_IPADAPTER ? find_file(r, n, "ipadapter_file", "ipadapter", &n->out[0].path)
                                : find_file(r, n, "clip_name", "clip_vision", &n->out[0].path);
}

/* x-flux-comfyui's LoadFluxIPAdapter: XLabs' adapter (ComfyUI's
 * xlabs/ipadapters/ folder) and the CLIP vision tower it reads with. */
static kiln_status load_flux_ip_adapter(wf_run *r, wf_node *n)
{
    n->out[0].kind = WF_IPADAPTER;
    TRY(find_file(r, n, "ipadatper", "xlabs/ipadapters", &n->out[0].path)); /* sic: the node's input name */
    return find_file(r, n, "clip_vision", "clip_vision", &n->out[0].clip_vision_path);
}

/* CLIPVisionEncode: the tower and the picture, encoded by the node that
 * reads them (StyleModelApply). */
static kiln_status clip_vision_encode(wf_run *r, wf_node *n)
{
    wf_value *vision, *image;
    const char *crop;
    TRY(linked(r, n, "clip_vision", WF_CLIP_VISION, &vision));
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    TRY(text(n, "crop", &crop));
    if (strcmp(crop, "center") && strcmp(crop, "none"))
        return node_fail(n, KILN_ERR_INVALID_ARG, "crop '%s': center or none", crop);
    if (image->nimages != 1) return node_fail(n, KILN_ERR_UNSUPPORTED, "%d pictures (kiln takes one)", image->nimages);
    wf_value *out = &n->out[0];
    out->kind = WF_CLIP_VISION_OUTPUT;
    out->picture = &image->images[0];
    out->crop = crop[0] == 'c';
    if (!(out->path = strdup(vision->path))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    return KILN_OK;
}

static kiln_status copy_conditioning(const wf_value *from, wf_value *to);

/* StyleModelApply (FLUX.1 Redux) with strength_type "multiply" (or
 * "attn_bias" at strength 1, the same there): the conditioning with the
 * picture's Redux tokens times the strength after its rows. */
static kiln_status style_model_apply(wf_run *r, wf_node *n)
{
    wf_value *cond, *style, *vision;
    wf_net *sm, *cv;
    double strength = 1.0;
    const char *type = "multiply";
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(linked(r, n, "style_model", WF_STYLE_MODEL, &style));
    TRY(linked(r, n, "clip_vision_output", WF_CLIP_VISION_OUTPUT, &vision));
    if (input_of(n, "strength")) TRY(number(n, "strength", &strength)); /* older ComfyUI's node has neither */
    if (input_of(n, "strength_type")) TRY(text(n, "strength_type", &type));
    if (strcmp(type, "multiply") && !(strcmp(type, "attn_bias") == 0 && strength == 1.0))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "strength_type '%s' at %g (kiln: multiply)", type, strength);
    if (cond->nparts)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "on prompts ConditioningCombine joined: not yet (kiln adds the "
                         "picture's tokens to one prompt)");
    TRY(net_of(r, WF_STYLE_MODEL, style->path, NULL, &sm));
    TRY(net_of(r, WF_CLIP_VISION, vision->path, NULL, &cv));
    TRY(copy_conditioning(cond, &n->out[0]));
    kiln_conditioning_free(&n->out[0].cond);
    kiln_status st = kiln_style_model_apply(sm->style_model, cv->clip_vision, vision->picture, vision->crop, strength,
                                            &cond->cond, &n->out[0].cond);
    return node_status(n, st);
}

/* The MODEL of node n: model's with the image prompt ip (its pictures
 * those of `image`) after its others. */
static kiln_status patch_image_prompt(wf_node *n, const wf_value *model, const wf_value *image, wf_image_prompt *ip)
{
    if (model->recipe.nimage_prompts == KILN_MAX_IP_ADAPTERS)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "an IP-Adapter after %d others (kiln applies at most %d)",
                         KILN_MAX_IP_ADAPTERS, KILN_MAX_IP_ADAPTERS);
    ip->image = image->images;
    ip->nimages = image->nimages;
    wf_recipe *patched;
    TRY(patched_model(n, model, &patched));
    patched->image_prompts[patched->nimage_prompts++] = *ip;
    return KILN_OK;
}

/* IPAdapterAdvanced as kiln applies it: weight type linear, the pictures'
 * tokens side by side (combine_embeds "concat"), their values scaled ("V
 * only"); after another, as a second patch (its attention added after the
 * first's). */
static kiln_status ip_adapter_advanced(wf_run *r, wf_node *n)
{
    wf_value *model, *adapter, *image, *vision;
    wf_image_prompt ip;
    const char *weight_type, *scaling;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "ipadapter", WF_IPADAPTER, &adapter));
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    TRY(linked(r, n, "clip_vision", WF_CLIP_VISION, &vision));
    TRY(number(n, "weight", &ip.weight));
    TRY(number(n, "start_at", &ip.start));
    TRY(number(n, "end_at", &ip.end));
    TRY(text(n, "weight_type", &weight_type));
    TRY(text(n, "embeds_scaling", &scaling));
    if (strcmp(weight_type, "linear") || strcmp(scaling, "V only"))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "weight type '%s', embeds scaling '%s' (kiln: linear, V only)",
                         weight_type, scaling);
    const char *combine = "concat";
    if (input_of(n, "combine_embeds")) TRY(text(n, "combine_embeds", &combine));
    if (image->nimages > 1 && strcmp(combine, "concat"))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "combine_embeds '%s' of %d pictures (kiln: concat)", combine,
                         image->nimages);
    ip.adapter = adapter->path;
    ip.clip_vision = vision->path;
    return patch_image_prompt(n, model, image, &ip);
}

/* x-flux-comfyui's ApplyFluxIPAdapter: the adapter at ip_scale over the
 * whole sampling, as IPAdapterAdvanced gives it (the negative rows a black
 * picture's tokens, as the node's FluxClipViT path and diffusers encode
 * one). */
static kiln_status apply_flux_ip_adapter(wf_run *r, wf_node *n)
{
    wf_value *model, *adapter, *image;
    wf_image_prompt ip = {.start = 0.0, .end = 1.0};
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "ip_adapter_flux", WF_IPADAPTER, &adapter));
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    TRY(number(n, "ip_scale", &ip.weight));
    if (!adapter->clip_vision_path)
        return node_fail(n, KILN_ERR_INVALID_ARG, "ip_adapter_flux comes from no LoadFluxIPAdapter");
    ip.adapter = adapter->path;
    ip.clip_vision = adapter->clip_vision_path;
    return patch_image_prompt(n, model, image, &ip);
}

static kiln_status empty_latent_image(wf_run *r, wf_node *n)
{
    (void)r;
    wf_value *v = &n->out[0];
    v->kind = WF_LATENT;
    TRY(integer(n, "width", 8, 16384, &v->empty_w));
    TRY(integer(n, "height", 8, 16384, &v->empty_h));
    TRY(integer(n, "batch_size", 1, 256, &v->latent.batch));
    return KILN_OK;
}

static size_t latent_count(const kiln_latent *l)
{
    return (size_t)l->batch * l->channels * l->height * l->width;
}

/* A LATENT's values: EmptyLatentImage's made on first use, by the model
 * that reads it (its VAE's factor and channels: SD's eighth and 4, as
 * ComfyUI's node has them), or as ComfyUI makes them where no model reads
 * it (LatentUpscaleBy). A side the factor does not divide is rounded down,
 * as the node's width // 8 rounds it. A batch_index it was given stays. */
static kiln_status latent_of(wf_value *v, const kiln_model *m, const kiln_latent **out)
{
    kiln_latent *l = &v->latent;
    int *places = l->batch_index;
    l->batch_index = NULL;
    kiln_status st = KILN_OK;
    if (!l->data && m) {
        const int f = kiln_vae_factor(m->vae.config);
        st = kiln_empty_latent(m, v->empty_w / f * f, v->empty_h / f * f, l->batch, l);
    } else if (!l->data) {
        *l = (kiln_latent){.batch = l->batch, .channels = 4, .height = v->empty_h / 8, .width = v->empty_w / 8};
        if (!(l->data = calloc((size_t)l->batch * 4 * l->height * l->width, sizeof(float))))
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    }
    l->batch_index = places;
    *out = l;
    return st;
}

static kiln_status load_image(wf_run *r, wf_node *n)
{
    char *path;
    TRY(find_file(r, n, "image", "input", &path));
    n->out[0].kind = WF_IMAGE;
    n->out[1].kind = WF_MASK;
    kiln_status st = KILN_ERR_OUT_OF_MEMORY;
    if ((n->out[0].images = calloc(1, sizeof(kiln_image)))) {
        st = kiln_image_load_with_mask(path, n->out[0].images, &n->out[1].mask);
        n->out[0].nimages = st == KILN_OK;
    }
    free(path);
    return st == KILN_ERR_OUT_OF_MEMORY ? kiln_fail(st, "workflow: out of host memory") : st;
}

/* ImageScale (to width x height, a side given as 0 following the other's
 * aspect ratio, crop "disabled" or "center"), ImageScaleBy (each side
 * times scale_by, Python's round) and ImageScaleToTotalPixels (megapixels
 * of 1024 x 1024, the aspect ratio kept, each side rounded to a multiple
 * of resolution_steps, default 1): each picture. */
typedef enum { SCALE_TO_SIZE, SCALE_BY, SCALE_TO_TOTAL } scale_mode;

static kiln_status image_scale_node(wf_run *r, wf_node *n, scale_mode mode)
{
    wf_value *image;
    const char *method, *crop = "disabled";
    int width = 0, height = 0, steps = 1;
    double scale = 1.0, megapixels = 1.0;
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    TRY(text(n, "upscale_method", &method));
    if (mode == SCALE_BY) {
        TRY(number(n, "scale_by", &scale));
        if (!(scale > 0.0 && scale <= 8.0)) return node_fail(n, KILN_ERR_INVALID_ARG, "scale_by %g: 0..8", scale);
    } else if (mode == SCALE_TO_TOTAL) {
        TRY(number(n, "megapixels", &megapixels));
        if (!(megapixels >= 0.01 && megapixels <= 16.0))
            return node_fail(n, KILN_ERR_INVALID_ARG, "megapixels %g: 0.01..16", megapixels);
        if (input_of(n, "resolution_steps")) TRY(integer(n, "resolution_steps", 1, 256, &steps));
    } else {
        TRY(integer(n, "width", 0, KILN_IMAGE_MAX_SIDE, &width));
        TRY(integer(n, "height", 0, KILN_IMAGE_MAX_SIDE, &height));
        TRY(text(n, "crop", &crop));
        if (strcmp(crop, "disabled") && strcmp(crop, "center"))
            return node_fail(n, KILN_ERR_INVALID_ARG, "crop '%s': disabled or center", crop);
    }
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)image->nimages, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int i = 0; i < image->nimages; i++) {
        const kiln_image *img = &image->images[i];
        int w = width, h = height;
        if (mode == SCALE_BY) {
            w = (int)nearbyint(img->width * scale), h = (int)nearbyint(img->height * scale);
        } else if (mode == SCALE_TO_TOTAL) { /* Python's doubles and round, half to even */
            const double by = sqrt(megapixels * 1024 * 1024 / ((double)img->width * img->height));
            w = (int)nearbyint(img->width * by / steps) * steps, h = (int)nearbyint(img->height * by / steps) * steps;
        } else if (w == 0 && h == 0) {
            w = img->width, h = img->height;
        } else if (w == 0) {
            w = (int)nearbyint((double)img->width * h / img->height), w = w > 1 ? w : 1;
        } else if (h == 0) {
            h = (int)nearbyint((double)img->height * w / img->width), h = h > 1 ? h : 1;
        }
        kiln_status st = kiln_image_scale(img, method, w, h, crop[0] == 'c', &n->out[0].images[i]);
        TRY(node_status(n, st));
        n->out[0].nimages++;
    }
    return KILN_OK;
}

/* A copy of the rectangle of img from (x, y), width x height, into *out. */
static kiln_status image_copy_rect(const kiln_image *img, int x, int y, int width, int height, kiln_image *out)
{
    TRY(kiln_image_alloc(out, width, height));
    for (int row = 0; row < height; row++)
        memcpy(out->pixels + (size_t)row * width * 3, img->pixels + ((size_t)(y + row) * img->width + x) * 3,
               (size_t)width * 3);
    return KILN_OK;
}

/* ImageBatch: image1's pictures, then image2's, those fitted to image1's
 * size where it differs (bilinear and the centre cut, as the node's
 * common_upscale, on kiln's 8-bit pictures). */
/* CheckpointSave: the MODEL's load (its checkpoint, merges and LoRAs in
 * it) as one single file (kiln_model_save_checkpoint) at
 * <output_dir>/<filename_prefix>_NNNNN_.safetensors, NNNNN the first not
 * taken; the prefix's folders made as ComfyUI makes them. Its CLIP must be
 * of the MODEL's load and its VAE of the MODEL's checkpoint: kiln saves one
 * load. */
/* A new file under the output folder for the node's filename_prefix, named
 * as ComfyUI names its outputs: the prefix's folders made, `_NNNNN_` (the
 * first number free) and the extension after it. */
static kiln_status output_path(wf_run *r, wf_node *n, const char *what, const char *extension, char path[4096])
{
    const char *prefix;
    TRY(text(n, "filename_prefix", &prefix));
    if (!r->opt->output_dir)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "no folder to write the %s in (kiln_workflow_options.output_dir; "
                         "gen writes beside --output)", what);
    if (!*prefix || prefix[0] == '/' || strstr(prefix, ".."))
        return node_fail(n, KILN_ERR_INVALID_ARG, "filename_prefix '%s': a name under the output folder", prefix);
    if (snprintf(path, 4096, "%s/%s", r->opt->output_dir, prefix) >= 4096 - 32)
        return node_fail(n, KILN_ERR_INVALID_ARG, "filename_prefix '%s': too long", prefix);
    for (char *slash = strchr(path + strlen(r->opt->output_dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return node_fail(n, KILN_ERR_IO, "cannot make folder %s: %s", path, strerror(errno));
        *slash = '/';
    }
    const size_t base = strlen(path);
    struct stat st;
    int counter = 1;
    do snprintf(path + base, 4096 - base, "_%05d_%s", counter, extension);
    while (stat(path, &st) == 0 && ++counter < 100000);
    return KILN_OK;
}

static kiln_status checkpoint_save(wf_run *r, wf_node *n)
{
    wf_value *model, *clip, *vae;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(linked(r, n, "vae", WF_VAE, &vae));
    if (!same_loads(&model->recipe, &clip->recipe) || strcmp(model->recipe.ckpt, vae->recipe.ckpt) != 0)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "a CLIP or VAE of another load than the MODEL's (kiln saves one "
                         "load: a checkpoint with its merges and LoRAs)");
    char path[4096];
    TRY(output_path(r, n, "checkpoint", ".safetensors", path));
    kiln_model *m = NULL;
    TRY(model_of(r, &model->recipe, false, &m));
    TRY(node_status(n, kiln_model_save_checkpoint(m, path)));
    if (r->opt->wrote) r->opt->wrote(r->opt->wrote_ctx, path);
    return KILN_OK;
}

/* VAESave and ModelSave: the VAE (or MODEL) as loaded, under the output
 * folder as CheckpointSave writes (kiln_model_save_vae,
 * kiln_model_save_diffusion_model). */
static kiln_status part_save(wf_run *r, wf_node *n, bool vae)
{
    wf_value *from;
    TRY(linked(r, n, vae ? "vae" : "model", vae ? WF_VAE : WF_MODEL, &from));
    char path[4096];
    TRY(output_path(r, n, vae ? "VAE" : "model", ".safetensors", path));
    kiln_model *m = NULL;
    TRY(model_of(r, &from->recipe, vae, &m));
    TRY(node_status(n, vae ? kiln_model_save_vae(m, path) : kiln_model_save_diffusion_model(m, path)));
    if (r->opt->wrote) r->opt->wrote(r->opt->wrote_ctx, path);
    return KILN_OK;
}

static kiln_status vae_save(wf_run *r, wf_node *n) { return part_save(r, n, true); }
static kiln_status model_save(wf_run *r, wf_node *n) { return part_save(r, n, false); }

/* SaveLatent: the latent as ComfyUI's .latent file, the workflow in its
 * metadata as the node records its prompt. */
static kiln_status save_latent(wf_run *r, wf_node *n)
{
    wf_value *samples;
    TRY(linked(r, n, "samples", WF_LATENT, &samples));
    char path[4096];
    TRY(output_path(r, n, "latent", ".latent", path));
    char *prompt = cJSON_PrintUnformatted(r->graph);
    if (!prompt) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    kiln_status st = node_status(n, kiln_latent_save(&samples->latent, path, prompt));
    cJSON_free(prompt);
    TRY(st);
    if (r->opt->wrote) r->opt->wrote(r->opt->wrote_ctx, path);
    return KILN_OK;
}

/* LoadLatent: a .latent file from the input folder. */
static kiln_status load_latent(wf_run *r, wf_node *n)
{
    char *path;
    TRY(find_file(r, n, "latent", "input", &path));
    n->out[0].kind = WF_LATENT;
    kiln_status st = node_status(n, kiln_latent_load(path, &n->out[0].latent));
    free(path);
    return st;
}

/* ImageAddNoise: the batch's noise drawn at once, as the node draws it. */
static kiln_status image_add_noise_node(wf_run *r, wf_node *n)
{
    wf_value *image;
    uint64_t seed = 0;
    double strength;
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    TRY(seed_input(n, "seed", &seed));
    TRY(number(n, "strength", &strength));
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)image->nimages, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    TRY(node_status(n, kiln_image_add_noise(image->images, image->nimages, seed, strength, n->out[0].images)));
    n->out[0].nimages = image->nimages;
    return KILN_OK;
}

/* ImageStitch (image2 optional: without it image1 as it is; batches of
 * other lengths, the shorter's last picture repeated), ResizeAndPadImage
 * and ImageScaleToMaxDimension, picture by picture. */
static kiln_status image_layout_node(wf_run *r, wf_node *n, const char *c)
{
    wf_value *image, *second = NULL;
    const bool stitch = strcmp(c, "ImageStitch") == 0, pad = strcmp(c, "ResizeAndPadImage") == 0;
    TRY(linked(r, n, stitch ? "image1" : "image", WF_IMAGE, &image));
    const char *direction = NULL, *color = NULL, *method = NULL;
    bool match = false;
    int spacing = 0, width = 0, height = 0, largest = 0;
    if (stitch) {
        if (input_of(n, "image2")) TRY(linked(r, n, "image2", WF_IMAGE, &second));
        TRY(text(n, "direction", &direction));
        TRY(flag(n, "match_image_size", &match));
        TRY(integer(n, "spacing_width", 0, 1024, &spacing));
        TRY(text(n, "spacing_color", &color));
    } else if (pad) {
        TRY(integer(n, "target_width", 1, KILN_IMAGE_MAX_SIDE, &width));
        TRY(integer(n, "target_height", 1, KILN_IMAGE_MAX_SIDE, &height));
        TRY(text(n, "padding_color", &color));
        TRY(text(n, "interpolation", &method));
    } else {
        TRY(text(n, "upscale_method", &method));
        TRY(integer(n, "largest_size", 1, KILN_IMAGE_MAX_SIDE, &largest));
    }
    const int count = second && second->nimages > image->nimages ? second->nimages : image->nimages;
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)count, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int i = 0; i < count; i++) {
        const kiln_image *img = &image->images[i < image->nimages ? i : image->nimages - 1];
        kiln_image *out = &n->out[0].images[i];
        kiln_status st;
        if (stitch && !second)
            st = image_copy_rect(img, 0, 0, img->width, img->height, out);
        else if (stitch)
            st = kiln_image_stitch(img, &second->images[i < second->nimages ? i : second->nimages - 1], direction,
                                   match, spacing, color, out);
        else if (pad)
            st = kiln_image_resize_and_pad(img, width, height, color, method, out);
        else
            st = kiln_image_scale_to_max_dimension(img, method, largest, out);
        TRY(node_status(n, st));
        n->out[0].nimages++;
    }
    return KILN_OK;
}

static kiln_status image_batch(wf_run *r, wf_node *n)
{
    wf_value *first, *second;
    TRY(linked(r, n, "image1", WF_IMAGE, &first));
    TRY(linked(r, n, "image2", WF_IMAGE, &second));
    const int total = first->nimages + second->nimages;
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)total, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    const kiln_image *size = &first->images[0];
    for (int i = 0; i < total; i++) {
        const kiln_image *img = i < first->nimages ? &first->images[i] : &second->images[i - first->nimages];
        kiln_image *out = &n->out[0].images[i];
        kiln_status st;
        if (img->width != size->width || img->height != size->height)
            st = kiln_image_scale(img, "bilinear", size->width, size->height, true, out);
        else
            st = image_copy_rect(img, 0, 0, img->width, img->height, out);
        TRY(node_status(n, st));
        n->out[0].nimages++;
    }
    return KILN_OK;
}

/* ImageCrop (the rectangle from x, y, as Python's slices: x and y at most
 * the last pixel, the size cut at the edge), RepeatImageBatch (the batch
 * `amount` times over) and ImageFromBatch (`length` pictures from
 * batch_index, both kept inside the batch): pictures picked and cut, to
 * the byte. */
static kiln_status image_pick(wf_run *r, wf_node *n, const char *c)
{
    wf_value *image;
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    const int B = image->nimages;
    const bool crop = strcmp(c, "ImageCrop") == 0, repeat = strcmp(c, "RepeatImageBatch") == 0;
    int x = 0, y = 0, width = 0, height = 0, first = 0, count = B, times = 1;
    if (crop) {
        TRY(integer(n, "width", 1, KILN_IMAGE_MAX_SIDE, &width));
        TRY(integer(n, "height", 1, KILN_IMAGE_MAX_SIDE, &height));
        TRY(integer(n, "x", 0, KILN_IMAGE_MAX_SIDE, &x));
        TRY(integer(n, "y", 0, KILN_IMAGE_MAX_SIDE, &y));
    } else if (repeat) {
        TRY(integer(n, "amount", 1, 4096, &times));
    } else {
        TRY(integer(n, "batch_index", 0, 4095, &first));
        TRY(integer(n, "length", 1, 4096, &count));
        first = first < B - 1 ? first : B - 1;
        count = count < B - first ? count : B - first;
    }
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)count * times, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int k = 0; k < count * times; k++) {
        const kiln_image *img = &image->images[first + k % count];
        int left = 0, top = 0, w = img->width, h = img->height;
        if (crop) {
            left = x < img->width - 1 ? x : img->width - 1, top = y < img->height - 1 ? y : img->height - 1;
            w = width < img->width - left ? width : img->width - left;
            h = height < img->height - top ? height : img->height - top;
        }
        TRY(image_copy_rect(img, left, top, w, h, &n->out[0].images[k]));
        n->out[0].nimages++;
    }
    return KILN_OK;
}

/* FluxKontextImageScale: each picture at FLUX.1 Kontext's size nearest its
 * aspect ratio. */
static kiln_status flux_kontext_image_scale(wf_run *r, wf_node *n)
{
    wf_value *image;
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)image->nimages, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int i = 0; i < image->nimages; i++) {
        TRY(kiln_flux_kontext_image_scale(&image->images[i], &n->out[0].images[i]));
        n->out[0].nimages++;
    }
    return KILN_OK;
}

/* ImagePadForOutpaint: the picture and the pads, for the encoders (see
 * wf_value). */
static kiln_status image_pad_for_outpaint(wf_run *r, wf_node *n)
{
    static const char *const names[5] = {"left", "top", "right", "bottom", "feathering"};
    wf_value *image;
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    if (image->nimages != 1)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%d pictures (kiln pads one)", image->nimages);
    for (int i = 0; i < 2; i++) {
        wf_value *v = &n->out[i];
        v->kind = i ? WF_MASK : WF_IMAGE;
        v->pad_node = n;
        v->padded = &image->images[0];
        for (int k = 0; k < 5; k++) TRY(integer(n, names[k], 0, 16384, &v->pad[k]));
    }
    return KILN_OK;
}

/* The outpainting latent of a canvas and its mask: its picture and pads as
 * kiln_vae_encode_for_outpaint takes them. */
static kiln_status encode_canvas(kiln_model *m, const wf_value *canvas, kiln_latent *out)
{
    const int *p = canvas->pad;
    return kiln_vae_encode_for_outpaint(m, canvas->padded, p[0], p[1], p[2], p[3], p[4], out);
}

/* VAEEncode, and VAEEncodeTiled (its temporal inputs are for video VAEs). */
static kiln_status vae_encode(wf_run *r, wf_node *n, bool tiled)
{
    wf_value *pixels, *vae;
    kiln_model *m;
    int tile = 0, overlap = 0;
    TRY(linked_or_pad(r, n, "pixels", WF_IMAGE, &pixels));
    TRY(linked(r, n, "vae", WF_VAE, &vae));
    TRY(model_of(r, &vae->recipe, true, &m));
    if (tiled) {
        TRY(integer(n, "tile_size", 64, 4096, &tile));
        TRY(integer(n, "overlap", 0, 4096, &overlap));
        if (pixels->pad_node)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "an outpainting canvas in tiles (use VAEEncode)");
    }
    wf_value *out = &n->out[0];
    out->kind = WF_LATENT;
    if (tiled) return kiln_vae_encode_tiled(m, pixels->images, pixels->nimages, tile, overlap, &out->latent);
    if (!pixels->pad_node) return kiln_vae_encode(m, pixels->images, pixels->nimages, &out->latent);
    /* VAEEncode of the canvas is what outpainting encodes for a model that is
     * no inpainting model; its mask is kept for SetLatentNoiseMask */
    if (strcmp(kiln_model_variant(m), "txt2img"))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "an outpainting canvas for a %s model (use VAEEncodeForInpaint)",
                         kiln_model_variant(m));
    TRY(encode_canvas(m, pixels, &out->latent));
    out->pad_node = pixels->pad_node;
    out->pad_mask = out->latent.noise_mask;
    out->pad_mask_w = out->latent.mask_w, out->pad_mask_h = out->latent.mask_h;
    out->latent.noise_mask = NULL;
    out->latent.mask_w = out->latent.mask_h = 0;
    return KILN_OK;
}

/* VAEDecode, and VAEDecodeTiled (its temporal inputs are for video VAEs;
 * without an overlap, as older ComfyUI saved it, the 16 latent pixels (128
 * of SD's) its decoder then took). */
static kiln_status vae_decode(wf_run *r, wf_node *n, bool tiled)
{
    wf_value *samples, *vae;
    kiln_model *m;
    int tile = 0, overlap = 0;
    TRY(linked(r, n, "samples", WF_LATENT, &samples));
    TRY(linked(r, n, "vae", WF_VAE, &vae));
    TRY(model_of(r, &vae->recipe, true, &m));
    if (tiled) {
        TRY(integer(n, "tile_size", 64, 4096, &tile));
        overlap = 128; /* 16 latent pixels of SD's VAE */
        if (input_of(n, "overlap")) TRY(integer(n, "overlap", 0, 4096, &overlap));
    }
    const kiln_latent *l;
    TRY(latent_of(samples, m, &l));
    n->out[0].kind = WF_IMAGE;
    int count = l->batch;
    if (!(n->out[0].images = calloc((size_t)count, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    TRY(tiled ? kiln_vae_decode_tiled(m, l, tile, overlap, n->out[0].images, count)
              : kiln_vae_decode(m, l, n->out[0].images, count));
    n->out[0].nimages = count;
    return KILN_OK;
}

/* RepeatLatentBatch and LatentFromBatch on an EmptyLatentImage not made
 * yet: another one, its batch and places those the library's calls give a
 * stand-in of one value an image, made by the model that reads it as the
 * first one would have been. */
static kiln_status empty_latent_pick(wf_node *n, const wf_value *samples)
{
    const int batch = samples->latent.batch;
    kiln_latent stand_in = {calloc((size_t)batch, sizeof(float)), batch, 1, 1, 1, NULL, 0, 0, NULL,
                            samples->latent.batch_index};
    if (!stand_in.data) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    wf_value *v = &n->out[0];
    kiln_status st;
    const char *behavior;
    if (input_of(n, "length")) {
        int index = 0, length = 1;
        if ((st = integer(n, "batch_index", 0, 63, &index)) == KILN_OK &&
            (st = integer(n, "length", 1, 64, &length)) == KILN_OK)
            st = kiln_latent_from_batch(&stand_in, index, length, &v->latent);
    } else if (input_of(n, "seed_behavior")) {
        if ((st = text(n, "seed_behavior", &behavior)) == KILN_OK)
            st = kiln_latent_batch_seed_behavior(&stand_in, behavior, &v->latent);
    } else {
        int amount = 1;
        if ((st = integer(n, "amount", 1, 64, &amount)) == KILN_OK)
            st = kiln_latent_repeat(&stand_in, amount, &v->latent);
    }
    free(stand_in.data);
    if (st != KILN_OK) return st;
    free(v->latent.data);
    v->latent = (kiln_latent){.batch = v->latent.batch, .batch_index = v->latent.batch_index};
    v->empty_w = samples->empty_w, v->empty_h = samples->empty_h;
    return KILN_OK;
}

/* RepeatLatentBatch, LatentUpscale(By), LatentFromBatch and
 * LatentBatchSeedBehavior: a LATENT made from another. */
static kiln_status latent_node(wf_run *r, wf_node *n, bool upscale)
{
    wf_value *samples;
    const kiln_latent *l;
    TRY(linked(r, n, "samples", WF_LATENT, &samples));
    n->out[0].kind = WF_LATENT;
    const bool seed_behavior = input_of(n, "seed_behavior") != NULL;
    if (!samples->latent.data && (!upscale || input_of(n, "length") || seed_behavior))
        return empty_latent_pick(n, samples);
    TRY(latent_of(samples, NULL, &l));
    if (seed_behavior) { /* LatentBatchSeedBehavior */
        const char *behavior;
        TRY(text(n, "seed_behavior", &behavior));
        return kiln_latent_batch_seed_behavior(l, behavior, &n->out[0].latent);
    }
    if (input_of(n, "length")) { /* LatentFromBatch */
        int index, length;
        TRY(integer(n, "batch_index", 0, 63, &index));
        TRY(integer(n, "length", 1, 64, &length));
        return kiln_latent_from_batch(l, index, length, &n->out[0].latent);
    }
    if (upscale && input_of(n, "scale_by")) { /* LatentUpscaleBy */
        const char *method;
        double scale;
        TRY(text(n, "upscale_method", &method));
        TRY(number(n, "scale_by", &scale));
        return kiln_latent_upscale_by(l, method, scale, &n->out[0].latent);
    }
    if (upscale) { /* LatentUpscale */
        const char *method, *crop;
        int width, height;
        TRY(text(n, "upscale_method", &method));
        TRY(integer(n, "width", 0, KILN_IMAGE_MAX_SIDE, &width));
        TRY(integer(n, "height", 0, KILN_IMAGE_MAX_SIDE, &height));
        TRY(text(n, "crop", &crop));
        if (strcmp(crop, "disabled") && strcmp(crop, "center"))
            return node_fail(n, KILN_ERR_INVALID_ARG, "crop '%s': disabled or center", crop);
        return kiln_latent_upscale(l, method, width, height, crop[0] == 'c', &n->out[0].latent);
    }
    int amount;
    TRY(integer(n, "amount", 1, 64, &amount));
    return kiln_latent_repeat(l, amount, &n->out[0].latent);
}

/* ImageCompositeMasked: each destination picture with the source's of its
 * place (the source's batch repeated or cut to the destination's). */
static kiln_status image_composite_masked(wf_run *r, wf_node *n)
{
    wf_value *dest, *src, *mask = NULL;
    int x, y;
    bool resize = false;
    TRY(linked(r, n, "destination", WF_IMAGE, &dest));
    TRY(linked(r, n, "source", WF_IMAGE, &src));
    TRY(integer(n, "x", 0, KILN_IMAGE_MAX_SIDE, &x));
    TRY(integer(n, "y", 0, KILN_IMAGE_MAX_SIDE, &y));
    TRY(flag(n, "resize_source", &resize));
    if (input_of(n, "mask")) TRY(linked(r, n, "mask", WF_MASK, &mask));
    wf_value *out = &n->out[0];
    out->kind = WF_IMAGE;
    if (!(out->images = calloc((size_t)dest->nimages, sizeof *out->images)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int k = 0; k < dest->nimages; k++, out->nimages++)
        TRY(node_status(n, kiln_image_composite_masked(&dest->images[k], &src->images[k % src->nimages], x, y, resize,
                                                       mask ? &mask->mask : NULL, &out->images[k])));
    return KILN_OK;
}

/* EmptyImage, ImageInvert, ImageBlend, ImageBlur, ImageSharpen, Canny and
 * Morphology (ImageMorphology; its kernel_size in `radius`): each
 * picture of the batch through the library's call (ImageBlend's second
 * batch one picture, or as many as the first's). */
static kiln_status image_filter_node(wf_run *r, wf_node *n, const char *c)
{
    wf_value *in = NULL, *second = NULL, *out = &n->out[0];
    int count = 1, w = 0, h = 0, radius = 0;
    double color = 0.0, factor = 0.0, sigma = 1.0, alpha = 0.0;
    const char *mode = NULL;
    const bool empty = strcmp(c, "EmptyImage") == 0, blend = strcmp(c, "ImageBlend") == 0;
    const bool blur = strcmp(c, "ImageBlur") == 0, sharpen = strcmp(c, "ImageSharpen") == 0;
    const bool canny = strcmp(c, "Canny") == 0, morphology = strcmp(c, "Morphology") == 0;
    double low = 0.0, high = 0.0;
    if (empty) {
        TRY(integer(n, "width", 1, KILN_IMAGE_MAX_SIDE, &w));
        TRY(integer(n, "height", 1, KILN_IMAGE_MAX_SIDE, &h));
        TRY(integer(n, "batch_size", 1, KILN_LATENT_MAX_BATCH, &count));
        TRY(number(n, "color", &color));
        if (!(color >= 0.0 && color <= 0xFFFFFF && color == floor(color)))
            return node_fail(n, KILN_ERR_INVALID_ARG, "input 'color' %g: 0 to 0xFFFFFF", color);
    } else {
        TRY(linked(r, n, blend ? "image1" : "image", WF_IMAGE, &in));
        count = in->nimages;
    }
    if (blend) {
        TRY(linked(r, n, "image2", WF_IMAGE, &second));
        TRY(number(n, "blend_factor", &factor));
        TRY(text(n, "blend_mode", &mode));
        if (second->nimages != 1 && second->nimages != count)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "%d pictures blended with %d", count, second->nimages);
    }
    if (blur || sharpen) {
        TRY(integer(n, blur ? "blur_radius" : "sharpen_radius", 0, 31, &radius));
        TRY(number(n, "sigma", &sigma));
    }
    if (sharpen) TRY(number(n, "alpha", &alpha));
    if (canny) {
        TRY(number(n, "low_threshold", &low));
        TRY(number(n, "high_threshold", &high));
    }
    if (morphology) {
        TRY(text(n, "operation", &mode));
        TRY(integer(n, "kernel_size", 3, 999, &radius));
    }
    out->kind = WF_IMAGE;
    if (!(out->images = calloc((size_t)count, sizeof *out->images)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int k = 0; k < count; k++, out->nimages++) {
        const kiln_image *img = in ? &in->images[k] : NULL;
        kiln_image *made = &out->images[k];
        TRY(node_status(n, empty    ? kiln_image_empty(w, h, (uint32_t)color, made)
                           : blend   ? kiln_image_blend(img, &second->images[k % second->nimages], factor, mode, made)
                           : blur    ? kiln_image_blur(img, radius, sigma, made)
                           : sharpen ? kiln_image_sharpen(img, radius, sigma, alpha, made)
                           : canny   ? kiln_image_canny(img, low, high, made)
                           : morphology ? kiln_image_morphology(img, mode, radius, made)
                                     : kiln_image_invert(img, made)));
    }
    return KILN_OK;
}

/* A Flip node's flip_method ("x-axis: vertically": the rows, "y-axis:
 * horizontally": the columns) or a Rotate node's rotation (quarter turns
 * clockwise), as LatentFlip / ImageFlip and LatentRotate / ImageRotate
 * name them. */
static kiln_status flip_or_turn(const wf_node *n, bool flip, bool *rows, bool *columns, int *turns)
{
    *rows = *columns = false, *turns = 0;
    if (flip) {
        const char *method;
        TRY(text(n, "flip_method", &method));
        *rows = strcmp(method, "x-axis: vertically") == 0, *columns = !*rows;
        if (!*rows && strcmp(method, "y-axis: horizontally"))
            return node_fail(n, KILN_ERR_INVALID_ARG, "flip_method '%s': x-axis: vertically or y-axis: horizontally",
                             method);
        return KILN_OK;
    }
    const char *rotation;
    TRY(text(n, "rotation", &rotation));
    static const char *const names[4] = {"none", "90 degrees", "180 degrees", "270 degrees"};
    while (*turns < 4 && strcmp(rotation, names[*turns])) ++*turns;
    if (*turns == 4)
        return node_fail(n, KILN_ERR_INVALID_ARG, "rotation '%s': none, 90 degrees, 180 degrees or 270 degrees",
                         rotation);
    return KILN_OK;
}

/* ImageFlip's and ImageRotate's pictures, picture by picture. */
static kiln_status image_flip_rotate_node(wf_run *r, wf_node *n, bool flip)
{
    wf_value *in, *out = &n->out[0];
    bool rows, columns;
    int turns;
    TRY(linked(r, n, "image", WF_IMAGE, &in));
    TRY(flip_or_turn(n, flip, &rows, &columns, &turns));
    out->kind = WF_IMAGE;
    if (!(out->images = calloc((size_t)in->nimages, sizeof *out->images)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (int k = 0; k < in->nimages; k++, out->nimages++)
        TRY(node_status(n, kiln_image_flip_rotate(&in->images[k], rows, columns, turns, &out->images[k])));
    return KILN_OK;
}

/* ComfyUI's mask nodes: SolidMask, InvertMask, ThresholdMask, CropMask,
 * MaskComposite, FeatherMask, GrowMask, ImageToMask (of one picture) and
 * MaskToImage, as the kiln_mask_ calls make them. */
static kiln_status mask_node(wf_run *r, wf_node *n, const char *c)
{
    wf_value *in = NULL, *out = &n->out[0];
    out->kind = WF_MASK;
    if (strcmp(c, "SolidMask") == 0) {
        double value;
        int w, h;
        TRY(number(n, "value", &value));
        TRY(integer(n, "width", 1, KILN_IMAGE_MAX_SIDE, &w));
        TRY(integer(n, "height", 1, KILN_IMAGE_MAX_SIDE, &h));
        return node_status(n, kiln_mask_solid((float)value, w, h, &out->mask));
    }
    if (strcmp(c, "ImageToMask") == 0 || strcmp(c, "ImageColorToMask") == 0) {
        const char *channel = NULL;
        int color = 0;
        TRY(linked(r, n, "image", WF_IMAGE, &in));
        if (strcmp(c, "ImageToMask") == 0) TRY(text(n, "channel", &channel));
        else TRY(integer(n, "color", 0, 0xFFFFFF, &color));
        if (in->nimages != 1)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "a batch of %d pictures (a MASK in kiln is one)", in->nimages);
        return node_status(n, channel ? kiln_mask_from_image(&in->images[0], channel, &out->mask)
                                      : kiln_mask_from_color(&in->images[0], (uint32_t)color, &out->mask));
    }
    TRY(linked(r, n, strcmp(c, "MaskComposite") ? "mask" : "destination", WF_MASK, &in));
    const kiln_mask *m = &in->mask;
    if (strcmp(c, "MaskToImage") == 0) {
        out->kind = WF_IMAGE;
        if (!(out->images = calloc(1, sizeof *out->images)))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
        TRY(node_status(n, kiln_mask_to_image(m, out->images)));
        out->nimages = 1;
        return KILN_OK;
    }
    if (strcmp(c, "InvertMask") == 0) return node_status(n, kiln_mask_invert(m, &out->mask));
    if (strcmp(c, "ThresholdMask") == 0) {
        double value;
        TRY(number(n, "value", &value));
        return node_status(n, kiln_mask_threshold(m, (float)value, &out->mask));
    }
    if (strcmp(c, "GrowMask") == 0) {
        int expand;
        bool tapered = true;
        TRY(integer(n, "expand", -KILN_IMAGE_MAX_SIDE, KILN_IMAGE_MAX_SIDE, &expand));
        TRY(flag(n, "tapered_corners", &tapered));
        return node_status(n, kiln_mask_grow(m, expand, tapered, &out->mask));
    }
    static const char *const place[4] = {"x", "y", "width", "height"}, *const sides[4] = {"left", "top", "right",
                                                                                          "bottom"};
    const bool feather = strcmp(c, "FeatherMask") == 0, crop = strcmp(c, "CropMask") == 0;
    int v[4] = {0};
    for (int k = 0; k < (feather || crop ? 4 : 2); k++)
        TRY(integer(n, feather ? sides[k] : place[k], crop && k > 1, KILN_IMAGE_MAX_SIDE, &v[k]));
    if (feather) return node_status(n, kiln_mask_feather(m, v[0], v[1], v[2], v[3], &out->mask));
    if (crop) return node_status(n, kiln_mask_crop(m, v[0], v[1], v[2], v[3], &out->mask));
    wf_value *source;
    const char *operation;
    TRY(linked(r, n, "source", WF_MASK, &source));
    TRY(text(n, "operation", &operation));
    return node_status(n, kiln_mask_composite(m, &source->mask, v[0], v[1], operation, &out->mask));
}

/* The latent nodes of two LATENTs or one (LatentComposite, LatentBlend,
 * LatentAdd, LatentSubtract, LatentInterpolate, LatentBatch; LatentMultiply,
 * LatentCrop, LatentFlip, LatentRotate): the library's transforms, places
 * in pixels floored to latent pixels as ComfyUI's nodes take them. An
 * EmptyLatentImage going in is made as ComfyUI makes it (4 channels). */
static kiln_status latent_transform(wf_run *r, wf_node *n, const char *c)
{
    const bool composite = strcmp(c, "LatentComposite") == 0, masked = strcmp(c, "LatentCompositeMasked") == 0;
    const bool two = composite || masked || input_of(n, "samples2");
    wf_value *first, *second = NULL;
    const kiln_latent *a, *b = NULL;
    TRY(linked(r, n, composite ? "samples_to" : masked ? "destination" : two ? "samples1" : "samples", WF_LATENT,
               &first));
    if (two) TRY(linked(r, n, composite ? "samples_from" : masked ? "source" : "samples2", WF_LATENT, &second));
    TRY(latent_of(first, NULL, &a));
    if (second) TRY(latent_of(second, NULL, &b));
    n->out[0].kind = WF_LATENT;
    kiln_latent *out = &n->out[0].latent;
    kiln_status st;
    if (composite) {
        int x, y, feather;
        TRY(integer(n, "x", 0, KILN_IMAGE_MAX_SIDE, &x));
        TRY(integer(n, "y", 0, KILN_IMAGE_MAX_SIDE, &y));
        TRY(integer(n, "feather", 0, KILN_IMAGE_MAX_SIDE, &feather));
        st = kiln_latent_composite(a, b, x / 8, y / 8, feather / 8, out);
    } else if (masked) {
        int x, y;
        bool resize = false;
        wf_value *mask = NULL;
        TRY(integer(n, "x", 0, KILN_IMAGE_MAX_SIDE, &x));
        TRY(integer(n, "y", 0, KILN_IMAGE_MAX_SIDE, &y));
        TRY(flag(n, "resize_source", &resize));
        if (input_of(n, "mask")) TRY(linked(r, n, "mask", WF_MASK, &mask));
        st = kiln_latent_composite_masked(a, b, x / 8, y / 8, resize, mask ? mask->mask.weights : NULL,
                                          mask ? mask->mask.width : 0, mask ? mask->mask.height : 0, out);
    } else if (strcmp(c, "LatentBlend") == 0) {
        double factor;
        const char *mode = "normal";
        TRY(number(n, "blend_factor", &factor));
        if (input_of(n, "blend_mode")) TRY(text(n, "blend_mode", &mode));
        if (strcmp(mode, "normal")) return node_fail(n, KILN_ERR_INVALID_ARG, "blend_mode '%s': normal", mode);
        st = kiln_latent_blend(a, b, factor, out);
    } else if (strcmp(c, "LatentBatch") == 0) {
        st = kiln_latent_batch(a, b, out);
    } else if (strcmp(c, "LatentConcat") == 0) {
        const char *dim;
        TRY(text(n, "dim", &dim));
        st = kiln_latent_concat(a, b, dim, out);
    } else if (strcmp(c, "LatentCut") == 0) {
        const char *dim;
        int index, amount;
        TRY(text(n, "dim", &dim));
        TRY(integer(n, "index", -KILN_IMAGE_MAX_SIDE, KILN_IMAGE_MAX_SIDE, &index));
        TRY(integer(n, "amount", 1, KILN_IMAGE_MAX_SIDE, &amount));
        st = kiln_latent_cut(a, dim, index, amount, out);
    } else if (two) {
        double ratio = 0.0;
        const bool interpolate = strcmp(c, "LatentInterpolate") == 0;
        if (interpolate) TRY(number(n, "ratio", &ratio));
        st = kiln_latent_combine(a, b, interpolate ? "interpolate" : c[6] == 'A' ? "add" : "subtract", ratio, out);
    } else if (strcmp(c, "LatentApplyOperation") == 0) {
        wf_value *op;
        TRY(linked(r, n, "operation", WF_LATENT_OPERATION, &op));
        st = kiln_latent_apply_operation(a, &op->operation, out);
    } else if (strcmp(c, "LatentMultiply") == 0) {
        double multiplier;
        TRY(number(n, "multiplier", &multiplier));
        st = kiln_latent_multiply(a, multiplier, out);
    } else if (strcmp(c, "LatentCrop") == 0) {
        int box[4];
        static const char *const names[4] = {"x", "y", "width", "height"};
        for (int k = 0; k < 4; k++) TRY(integer(n, names[k], k < 2 ? 0 : 8, KILN_IMAGE_MAX_SIDE, &box[k]));
        st = kiln_latent_crop(a, box[0] / 8, box[1] / 8, box[2] / 8, box[3] / 8, out);
    } else {
        bool rows, columns;
        int turns;
        TRY(flip_or_turn(n, strcmp(c, "LatentFlip") == 0, &rows, &columns, &turns));
        st = kiln_latent_flip_rotate(a, rows, columns, turns, out);
    }
    return node_status(n, st);
}

/* ControlNetLoader, and DiffControlNetLoader, whose model is the one the
 * ControlNet is loaded for where it is applied (kiln_controlnet_load adds
 * that model's UNet weights to a diff ControlNet). */
static kiln_status controlnet_loader(wf_run *r, wf_node *n)
{
    n->out[0].kind = WF_CONTROL_NET;
    return find_file(r, n, "control_net_name", "controlnet", &n->out[0].path);
}

/* SetUnionControlNetType: the CONTROL_NET with a union model's control type
 * ("auto": none), checked when the ControlNet is applied. */
static kiln_status set_union_controlnet_type(wf_run *r, wf_node *n)
{
    wf_value *net;
    const char *type;
    int mode;
    TRY(linked(r, n, "control_net", WF_CONTROL_NET, &net));
    TRY(text(n, "type", &type));
    if (kiln_union_control_type(type, &mode) != KILN_OK)
        return node_fail(n, KILN_ERR_INVALID_ARG, "%s", kiln_last_error());
    n->out[0].kind = WF_CONTROL_NET;
    n->out[0].union_type = mode < 0 ? NULL : type;
    if (!(n->out[0].path = strdup(net->path))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    return KILN_OK;
}

/* A CONDITIONING carried on through a node that adds to it. */
/* *to a copy of the conditioning src (rows and pooled output). */
static kiln_status copy_rows(const kiln_conditioning *src, kiln_conditioning *to)
{
    *to = (kiln_conditioning){malloc((size_t)src->tokens * src->dim * sizeof(float)), src->tokens, src->dim,
                              src->pooled ? malloc((size_t)src->pooled_dim * sizeof(float)) : NULL, src->pooled_dim};
    if (!to->data || (src->pooled && !to->pooled)) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    memcpy(to->data, src->data, (size_t)src->tokens * src->dim * sizeof(float));
    if (src->pooled) memcpy(to->pooled, src->pooled, (size_t)src->pooled_dim * sizeof(float));
    return KILN_OK;
}

static kiln_status copy_conditioning(const wf_value *from, wf_value *to)
{
    *to = (wf_value){.kind = WF_CONDITIONING, .ncontrols = from->ncontrols, .has_sdxl = from->has_sdxl,
                     .sdxl = from->sdxl, .edit = from->edit, .flux_guidance = from->flux_guidance,
                     .pixart_width = from->pixart_width, .pixart_height = from->pixart_height,
                     .nreferences = from->nreferences, .reference_method = from->reference_method,
                     .where = from->where};
    memcpy(to->controls, from->controls, sizeof to->controls);
    memcpy(to->references, from->references, sizeof to->references);
    TRY(copy_rows(&from->cond, &to->cond));
    for (; to->nparts < from->nparts; to->nparts++) {
        const wf_part *part = &from->parts[to->nparts];
        to->parts[to->nparts] = (wf_part){{0}, part->where};
        TRY(copy_rows(&from->parts[to->nparts].cond, &to->parts[to->nparts].cond));
    }
    return KILN_OK;
}

static bool same_control(const wf_control *x, const wf_control *y)
{
    return x->path == y->path && x->image == y->image && x->strength == y->strength && x->start == y->start &&
           x->end == y->end && x->union_type == y->union_type && x->mask == y->mask && x->one_side == y->one_side;
}

/* Whether two CONDITIONINGs went through the same ControlNet apply nodes
 * (ControlNetApplyAdvanced gives both of its outputs the same part). */
static bool same_controls(const wf_value *a, const wf_value *b)
{
    if (a->ncontrols != b->ncontrols) return false;
    for (int i = 0; i < a->ncontrols; i++)
        if (!same_control(&a->controls[i], &b->controls[i])) return false;
    return true;
}

/* Whether a sampling's prompts carry ControlNets kiln can apply: those of
 * ControlNetApplyAdvanced on both, in the same order, and ControlNetApply's
 * on the positive one only. */
static kiln_status paired_controls(const wf_node *n, const wf_value *pos, const wf_value *neg)
{
    int shared = 0;
    for (int i = 0; i < neg->ncontrols; i++)
        if (neg->controls[i].one_side)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "the negative prompt comes through ControlNetApply (kiln "
                             "applies that node's ControlNet to the positive prompt only)");
    for (int i = 0; i < pos->ncontrols; i++) {
        if (pos->controls[i].one_side) continue;
        if (shared == neg->ncontrols || !same_control(&pos->controls[i], &neg->controls[shared])) break;
        shared++;
    }
    int both = 0;
    for (int i = 0; i < pos->ncontrols; i++) both += !pos->controls[i].one_side;
    if (both != shared || shared != neg->ncontrols)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "the positive and negative prompts come through different "
                         "ControlNetApplyAdvanced nodes (kiln applies the same ones to both)");
    return KILN_OK;
}

static bool same_extras(const wf_value *a, const wf_value *b)
{
    return same_controls(a, b) && a->flux_guidance == b->flux_guidance && a->pixart_width == b->pixart_width &&
           a->pixart_height == b->pixart_height && !a->nreferences && !b->nreferences &&
           a->edit == b->edit && a->has_sdxl == b->has_sdxl &&
           (!a->has_sdxl || memcmp(&a->sdxl, &b->sdxl, sizeof a->sdxl) == 0);
}

/* ControlNetApplyAdvanced (and its SD3 name) and ControlNetInpaintingAliMamaApply
 * (masked) on both prompts; the older ControlNetApply (one_side) on the one
 * CONDITIONING it is given, over all of the sampling. */
static kiln_status controlnet_apply(wf_run *r, wf_node *n, bool masked, bool one_side)
{
    wf_value *pos, *neg = NULL, *net, *image, *mask;
    wf_control c = {.end = 1.0, .one_side = one_side};
    TRY(linked(r, n, one_side ? "conditioning" : "positive", WF_CONDITIONING, &pos));
    if (!one_side) TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
    TRY(linked(r, n, "control_net", WF_CONTROL_NET, &net));
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    if (masked) {
        TRY(linked(r, n, "mask", WF_MASK, &mask));
        TRY(mask_picture(mask, &c.mask));
    }
    TRY(number(n, "strength", &c.strength));
    if (!one_side) {
        TRY(number(n, "start_percent", &c.start));
        TRY(number(n, "end_percent", &c.end));
        TRY(paired_controls(n, pos, neg));
    }
    if (pos->ncontrols == KILN_MAX_CONTROLS)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "a ControlNet after %d others (kiln applies at most %d)",
                         KILN_MAX_CONTROLS, KILN_MAX_CONTROLS);
    if (image->nimages != 1) return node_fail(n, KILN_ERR_UNSUPPORTED, "a hint of %d images", image->nimages);
    c.path = net->path;
    c.union_type = net->union_type;
    c.image = &image->images[0];
    wf_value *from[2] = {pos, neg};
    for (int i = 0; i < (one_side ? 1 : 2); i++) {
        TRY(copy_conditioning(from[i], &n->out[i]));
        n->out[i].controls[n->out[i].ncontrols++] = c;
    }
    return KILN_OK;
}

/* FluxGuidance: the guidance Flux dev embeds, on this conditioning. kiln
 * takes it on the positive prompt (see kiln_ksampler_params). */
/* FluxGuidance's and CLIPTextEncodeFlux's guidance input. */
static kiln_status guidance_of(const wf_node *n, double *guidance)
{
    TRY(number(n, "guidance", guidance));
    if (!(*guidance > 0.0 && *guidance <= 100.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "guidance %g: must be in (0, 100]", *guidance);
    return KILN_OK;
}

static kiln_status flux_guidance(wf_run *r, wf_node *n)
{
    wf_value *cond;
    double guidance;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(guidance_of(n, &guidance));
    TRY(copy_conditioning(cond, &n->out[0]));
    n->out[0].flux_guidance = guidance;
    return KILN_OK;
}

/* FluxDisableGuidance: the conditioning without a guidance, so a Flux dev
 * model leaves its guidance embedding out (kiln_ksampler_params'
 * flux_guidance below 0). */
static kiln_status flux_disable_guidance(wf_run *r, wf_node *n)
{
    wf_value *cond;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(copy_conditioning(cond, &n->out[0]));
    n->out[0].flux_guidance = -1.0;
    return KILN_OK;
}

/* ReferenceLatent (FLUX.1 Kontext): the conditioning with a picture's
 * latent (VAEEncode's) beside the latent in its calls; without a latent,
 * the conditioning as it is. */
static kiln_status reference_latent(wf_run *r, wf_node *n)
{
    wf_value *cond, *latent = NULL;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    if (input_of(n, "latent")) TRY(linked(r, n, "latent", WF_LATENT, &latent));
    if (latent && !latent->latent.data)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "a latent that is no picture's (kiln takes VAEEncode's)");
    if (latent && cond->nreferences == KILN_MAX_REFERENCES)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "a reference after %d others (kiln takes at most %d)",
                         KILN_MAX_REFERENCES, KILN_MAX_REFERENCES);
    TRY(copy_conditioning(cond, &n->out[0]));
    if (latent) n->out[0].references[n->out[0].nreferences++] = &latent->latent;
    return KILN_OK;
}

/* FluxKontextMultiReferenceLatentMethod: where the conditioning's reference
 * latents go among the image positions. */
static kiln_status reference_latent_method(wf_run *r, wf_node *n)
{
    wf_value *cond;
    const char *name;
    kiln_reference_method method;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(text(n, "reference_latents_method", &name));
    if (kiln_reference_method_from_name(name, &method) != KILN_OK)
        return node_fail(n, KILN_ERR_INVALID_ARG, "%s", kiln_last_error());
    TRY(copy_conditioning(cond, &n->out[0]));
    n->out[0].reference_method = method;
    return KILN_OK;
}

/* The conditioning of prompt k of a CONDITIONING (0 its first, then
 * ConditioningCombine's). */
static kiln_conditioning *prompt_of(wf_value *v, int k) { return k ? &v->parts[k - 1].cond : &v->cond; }

/* ConditioningZeroOut: each prompt's rows and pooled output zeros, the rest kept. */
static kiln_status conditioning_zero_out(wf_run *r, wf_node *n)
{
    wf_value *cond;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(copy_conditioning(cond, &n->out[0]));
    for (int i = 0; i <= n->out[0].nparts; i++) {
        kiln_conditioning *c = prompt_of(&n->out[0], i);
        memset(c->data, 0, (size_t)c->tokens * c->dim * sizeof *c->data);
        if (c->pooled) memset(c->pooled, 0, (size_t)c->pooled_dim * sizeof *c->pooled);
    }
    return KILN_OK;
}

/* ConditioningConcat: each prompt of conditioning_to with the rows of
 * conditioning_from's first after its own; the rest to's. */
static kiln_status conditioning_concat(wf_run *r, wf_node *n)
{
    wf_value *to, *from;
    TRY(linked(r, n, "conditioning_to", WF_CONDITIONING, &to));
    TRY(linked(r, n, "conditioning_from", WF_CONDITIONING, &from));
    const kiln_conditioning *f = &from->cond;
    if (f->dim != to->cond.dim)
        return node_fail(n, KILN_ERR_INVALID_ARG, "conditioning_from is %d wide, conditioning_to %d", f->dim,
                         to->cond.dim);
    TRY(copy_conditioning(to, &n->out[0]));
    for (int k = 0; k <= n->out[0].nparts; k++) {
        kiln_conditioning *c = prompt_of(&n->out[0], k);
        float *rows = realloc(c->data, (size_t)(c->tokens + f->tokens) * c->dim * sizeof *rows);
        if (!rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
        memcpy(rows + (size_t)c->tokens * c->dim, f->data, (size_t)f->tokens * f->dim * sizeof *rows);
        c->data = rows;
        c->tokens += f->tokens;
    }
    return KILN_OK;
}

/* ConditioningAverage: each prompt of conditioning_to times
 * conditioning_to_strength s plus conditioning_from's first times 1 - s
 * (its rows cut to the prompt's, or zeros after them), each product in
 * float as torch.mul gives it; the pooled outputs alike (from's where to
 * has none); the rest to's. */
static kiln_status conditioning_average(wf_run *r, wf_node *n)
{
    wf_value *to, *from;
    double strength;
    TRY(linked(r, n, "conditioning_to", WF_CONDITIONING, &to));
    TRY(linked(r, n, "conditioning_from", WF_CONDITIONING, &from));
    TRY(number(n, "conditioning_to_strength", &strength));
    const kiln_conditioning *f = &from->cond;
    if (f->dim != to->cond.dim || (f->pooled && to->cond.pooled && f->pooled_dim != to->cond.pooled_dim))
        return node_fail(n, KILN_ERR_INVALID_ARG, "conditioning_from is %d wide (pooled %d), conditioning_to %d "
                         "(pooled %d)", f->dim, f->pooled_dim, to->cond.dim, to->cond.pooled_dim);
    TRY(copy_conditioning(to, &n->out[0]));
    const float s = (float)strength, rest = (float)(1.0 - strength);
    for (int k = 0; k <= n->out[0].nparts; k++) {
        kiln_conditioning *c = prompt_of(&n->out[0], k);
        for (size_t i = 0; i < (size_t)c->tokens * c->dim; i++) {
            const float mine = c->data[i] * s, theirs = (i < (size_t)f->tokens * f->dim ? f->data[i] : 0.0f) * rest;
            c->data[i] = mine + theirs;
        }
        if (f->pooled && !c->pooled) { /* to's pooled output is from's: from's times s plus from's times 1 - s */
            if (!(c->pooled = malloc((size_t)f->pooled_dim * sizeof *c->pooled)))
                return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
            memcpy(c->pooled, f->pooled, (size_t)f->pooled_dim * sizeof *c->pooled);
            c->pooled_dim = f->pooled_dim;
        }
        for (int i = 0; f->pooled && i < c->pooled_dim; i++) {
            const float mine = c->pooled[i] * s, theirs = f->pooled[i] * rest;
            c->pooled[i] = mine + theirs;
        }
    }
    return KILN_OK;
}

/* ConditioningSetTimestepRange: every prompt of it over [start, end] of the
 * sampling. */
static kiln_status conditioning_set_timestep_range(wf_run *r, wf_node *n)
{
    wf_value *cond;
    double start, end;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(number(n, "start", &start));
    TRY(number(n, "end", &end));
    if (!(start >= 0.0 && start <= end && end <= 1.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "start %g and end %g: 0 <= start <= end <= 1", start, end);
    TRY(copy_conditioning(cond, &n->out[0]));
    wf_value *v = &n->out[0];
    for (int i = 0; i <= v->nparts; i++) {
        wf_where *w = i ? &v->parts[i - 1].where : &v->where;
        w->ranged = true, w->start = start, w->end = end;
    }
    return KILN_OK;
}

/* ConditioningSetMask: every prompt of it weighted by the mask times
 * strength where it acts; "mask bounds" samples it on the mask's box alone. */
static kiln_status conditioning_set_mask(wf_run *r, wf_node *n)
{
    wf_value *cond, *mask;
    double strength;
    const char *area;
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(linked(r, n, "mask", WF_MASK, &mask));
    TRY(number(n, "strength", &strength));
    TRY(text(n, "set_cond_area", &area));
    const bool bounds = strcmp(area, "mask bounds") == 0;
    if (!bounds && strcmp(area, "default"))
        return node_fail(n, KILN_ERR_INVALID_ARG, "set_cond_area \"%s\" (default or mask bounds)", area);
    if (!(strength >= 0.0 && strength <= 10.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "input 'strength' %g: 0 to 10", strength);
    TRY(copy_conditioning(cond, &n->out[0]));
    wf_value *v = &n->out[0];
    for (int i = 0; i <= v->nparts; i++) {
        wf_where *w = i ? &v->parts[i - 1].where : &v->where;
        w->mask = &mask->mask, w->mask_strength = strength, w->mask_bounds = bounds;
    }
    return KILN_OK;
}

/* ConditioningSetArea, ConditioningSetAreaPercentage and
 * ConditioningSetAreaStrength: every prompt of it sampled on the box (the
 * first's in pixels, floored to latent pixels; the second's in fractions of
 * the latent), weighted by strength. */
static kiln_status conditioning_set_area(wf_run *r, wf_node *n)
{
    const char *type = n->class_type;
    const bool pixels = strcmp(type, "ConditioningSetArea") == 0, fractions = !pixels && strcmp(type,
                        "ConditioningSetAreaPercentage") == 0;
    wf_value *cond;
    double strength, box[4] = {0};
    int area[4] = {0};
    TRY(linked(r, n, "conditioning", WF_CONDITIONING, &cond));
    TRY(number(n, "strength", &strength));
    if (!(strength >= 0.0 && strength <= 10.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "input 'strength' %g: 0 to 10", strength);
    static const char *const names[4] = {"x", "y", "width", "height"};
    for (int k = 0; k < 4; k++) {
        if (pixels) {
            TRY(integer(n, names[k], k < 2 ? 0 : 8, 16384, &area[k]));
            area[k] /= 8; /* ComfyUI's latent pixels: floored */
        } else if (fractions) {
            TRY(number(n, names[k], &box[k]));
            if (!(box[k] >= 0.0 && box[k] <= 1.0))
                return node_fail(n, KILN_ERR_INVALID_ARG, "input '%s' %g: 0 to 1", names[k], box[k]);
        }
    }
    if (fractions && box[2] == 0.0) /* ComfyUI rounds it up to a latent pixel */
        box[2] = 1e-300;
    TRY(copy_conditioning(cond, &n->out[0]));
    wf_value *v = &n->out[0];
    for (int i = 0; i <= v->nparts; i++) {
        wf_where *w = i ? &v->parts[i - 1].where : &v->where;
        w->area_strength = strength, w->has_area_strength = true;
        if (!pixels && !fractions) continue;
        memcpy(w->area, area, sizeof area);
        memcpy(w->fraction, box, sizeof box);
        w->mask_bounds = false;
    }
    return KILN_OK;
}

/* Whether two CONDITIONINGs carry the same ControlNets, guidance, references,
 * picture to edit and SDXL numbers (kiln applies those to a prompt whole). */
static bool same_extras(const wf_value *a, const wf_value *b);

/* ConditioningCombine: conditioning_1's prompts, then conditioning_2's, each
 * over its own part of the sampling. */
static kiln_status conditioning_combine(wf_run *r, wf_node *n)
{
    wf_value *a, *b;
    TRY(linked(r, n, "conditioning_1", WF_CONDITIONING, &a));
    TRY(linked(r, n, "conditioning_2", WF_CONDITIONING, &b));
    if (!same_extras(a, b))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "prompts with different ControlNets, guidance, reference latents, "
                         "pictures to edit or SDXL numbers (kiln applies those to a prompt whole)");
    if (a->nparts + 1 + b->nparts > KILN_MAX_PROMPT_PARTS - 1)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%d prompts combined: at most %d", a->nparts + 2 + b->nparts,
                         KILN_MAX_PROMPT_PARTS);
    TRY(copy_conditioning(a, &n->out[0]));
    wf_value *v = &n->out[0];
    for (int i = 0; i <= b->nparts; i++) {
        wf_part *part = &v->parts[v->nparts];
        *part = (wf_part){{0}, i ? b->parts[i - 1].where : b->where};
        TRY(copy_rows(i ? &b->parts[i - 1].cond : &b->cond, &part->cond));
        v->nparts++;
    }
    return KILN_OK;
}

/* CLIPTextEncodeFlux: CLIP-L's text and T5's apart, and FluxGuidance's number. */
static kiln_status clip_text_encode_flux(wf_run *r, wf_node *n)
{
    wf_value *clip;
    const char *clip_l, *t5xxl;
    double guidance;
    kiln_model *m;
    TRY(linked(r, n, "clip", WF_CLIP, &clip));
    TRY(text(n, "clip_l", &clip_l));
    TRY(text(n, "t5xxl", &t5xxl));
    TRY(guidance_of(n, &guidance));
    TRY(text_encoders_of(r, clip, &m));
    n->out[0].kind = WF_CONDITIONING;
    n->out[0].flux_guidance = guidance;
    return kiln_text_encode_flux(m, clip_l, t5xxl, &n->out[0].cond);
}

static kiln_status load_image_mask(wf_run *r, wf_node *n)
{
    const char *channel;
    char *path;
    TRY(text(n, "channel", &channel));
    TRY(find_file(r, n, "image", "input", &path));
    n->out[0].kind = WF_MASK;
    kiln_status st = kiln_mask_load(path, channel, &n->out[0].mask);
    free(path);
    return node_status(n, st);
}


/* SetLatentNoiseMask: the latent, repainted where the mask is (stretched
 * over the latent when sampled). */
static kiln_status set_latent_noise_mask(wf_run *r, wf_node *n)
{
    wf_value *samples, *mask;
    const kiln_latent *l;
    TRY(linked_or_pad(r, n, "samples", WF_LATENT, &samples));
    TRY(linked_or_pad(r, n, "mask", WF_MASK, &mask));
    TRY(latent_of(samples, NULL, &l));
    n->out[0].kind = WF_LATENT;
    kiln_latent *out = &n->out[0].latent;
    TRY(kiln_latent_repeat(l, 1, out));
    if (mask->pad_node || samples->pad_node) { /* outpainting: the canvas's latent and its own mask */
        if (mask->pad_node != samples->pad_node || !samples->pad_mask)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "an outpainting mask on another latent than VAEEncode's of "
                             "the same ImagePadForOutpaint's canvas");
        size_t count = (size_t)samples->pad_mask_w * samples->pad_mask_h;
        free(out->noise_mask);
        if (!(out->noise_mask = malloc(count * sizeof(float))))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
        memcpy(out->noise_mask, samples->pad_mask, count * sizeof(float));
        out->mask_w = samples->pad_mask_w, out->mask_h = samples->pad_mask_h;
        return KILN_OK;
    }
    const size_t count = (size_t)mask->mask.width * mask->mask.height;
    free(out->noise_mask);
    if (!(out->noise_mask = malloc(count * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    memcpy(out->noise_mask, mask->mask.weights, count * sizeof(float));
    out->mask_h = mask->mask.height, out->mask_w = mask->mask.width;
    return KILN_OK;
}

/* VAEEncodeForInpaint, for an inpainting model (on any other, ComfyUI's node
 * greys what it repaints, which kiln does not do there: such a graph uses
 * VAEEncode and SetLatentNoiseMask). */
static kiln_status vae_encode_for_inpaint(wf_run *r, wf_node *n)
{
    wf_value *pixels, *vae, *mask;
    int grow;
    kiln_model *m;
    TRY(linked_or_pad(r, n, "pixels", WF_IMAGE, &pixels));
    TRY(linked(r, n, "vae", WF_VAE, &vae));
    TRY(linked_or_pad(r, n, "mask", WF_MASK, &mask));
    TRY(integer(n, "grow_mask_by", 0, KILN_INPAINT_GROW_MAX, &grow));
    TRY(model_of(r, &vae->recipe, true, &m));
    if (strcmp(kiln_model_variant(m), "inpaint"))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "a %s model's VAE (kiln runs this node for inpainting models; use "
                         "VAEEncode and SetLatentNoiseMask)", kiln_model_variant(m));
    n->out[0].kind = WF_LATENT;
    if (pixels->pad_node || mask->pad_node) {
        if (pixels->pad_node != mask->pad_node)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "an outpainting canvas with another mask than its own");
        if (grow != KILN_INPAINT_GROW)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "grow_mask_by %d on an outpainting canvas (kiln grows its mask "
                             "by %d)", grow, KILN_INPAINT_GROW);
        return encode_canvas(m, pixels, &n->out[0].latent);
    }
    if (pixels->nimages != 1)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%d pictures (kiln takes one)", pixels->nimages);
    return node_status(n, kiln_vae_encode_for_inpaint_mask(m, &pixels->images[0], &mask->mask, grow,
                                                           &n->out[0].latent));
}

/* InpaintModelConditioning, for FLUX.1 Fill: the prompts as they are, and
 * the LATENT of kiln_vae_encode_for_inpaint (the picture's latent with the
 * mask, and the grey picture's the model reads beside it), which is what
 * the node's conditionings and LATENT carry between them in ComfyUI. */
static kiln_status inpaint_model_conditioning(wf_run *r, wf_node *n)
{
    wf_value *pos, *neg, *vae, *pixels, *mask;
    kiln_model *m;
    TRY(linked(r, n, "positive", WF_CONDITIONING, &pos));
    TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
    TRY(linked(r, n, "vae", WF_VAE, &vae));
    TRY(linked_or_pad(r, n, "pixels", WF_IMAGE, &pixels));
    TRY(linked_or_pad(r, n, "mask", WF_MASK, &mask));
    TRY(model_of(r, &vae->recipe, true, &m));
    if (strcmp(kiln_model_family(m), "flux") || strcmp(kiln_model_variant(m), "inpaint"))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "a %s %s model (kiln runs this node for FLUX.1 Fill; SD's "
                         "inpainting models take VAEEncodeForInpaint)", kiln_model_family(m), kiln_model_variant(m));
    const cJSON *noise_mask = input_of(n, "noise_mask");
    if (cJSON_IsFalse(noise_mask))
        return node_fail(n, KILN_ERR_UNSUPPORTED, "noise_mask false (kiln keeps the picture outside the mask)");
    TRY(copy_conditioning(pos, &n->out[0]));
    TRY(copy_conditioning(neg, &n->out[1]));
    n->out[2].kind = WF_LATENT;
    if (pixels->pad_node || mask->pad_node) {
        if (pixels->pad_node != mask->pad_node)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "an outpainting canvas with another mask than its own");
        return encode_canvas(m, pixels, &n->out[2].latent);
    }
    if (pixels->nimages != 1) return node_fail(n, KILN_ERR_UNSUPPORTED, "%d pictures (kiln takes one)", pixels->nimages);
    return node_status(n, kiln_vae_encode_for_inpaint_mask(m, &pixels->images[0], &mask->mask, KILN_INPAINT_GROW,
                                                           &n->out[2].latent));
}

/* InstructPixToPixConditioning: both prompts carry the picture's latent, and
 * the sampling starts from an empty latent of its size. */
static kiln_status instruct_pix2pix_conditioning(wf_run *r, wf_node *n)
{
    wf_value *pos, *neg, *vae, *pixels;
    kiln_model *m;
    TRY(linked(r, n, "positive", WF_CONDITIONING, &pos));
    TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
    TRY(linked(r, n, "vae", WF_VAE, &vae));
    TRY(linked(r, n, "pixels", WF_IMAGE, &pixels));
    TRY(model_of(r, &vae->recipe, true, &m));
    TRY(copy_conditioning(pos, &n->out[0]));
    TRY(copy_conditioning(neg, &n->out[1]));
    kiln_latent *picture = &n->out[0].latent;
    TRY(kiln_vae_encode(m, pixels->images, pixels->nimages, picture));
    n->out[0].edit = n->out[1].edit = picture;
    kiln_latent *empty = &n->out[2].latent;
    n->out[2].kind = WF_LATENT;
    *empty = (kiln_latent){.batch = picture->batch, .channels = picture->channels, .height = picture->height,
                           .width = picture->width};
    if (!(empty->data = calloc(latent_count(picture), sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    return KILN_OK;
}

/* MODEL's load with what its patches set on how it samples (its
 * prediction, its flow shift). */
static kiln_status sampling_model(wf_run *r, wf_node *n, const wf_value *model, kiln_model **out)
{
    kiln_model *m = NULL;
    TRY(model_of(r, &model->recipe, false, &m));
    /* a loaded model serves MODELs with and without ModelSamplingDiscrete: each starts from the checkpoint's */
    TRY(kiln_model_reset_sampling(m));
    if (model->recipe.prediction) {
        TRY(node_status(n, kiln_model_set_prediction(m, model->recipe.prediction)));
        TRY(node_status(n, kiln_model_set_zsnr(m, model->recipe.zsnr)));
    }
    if (model->recipe.edm)
        TRY(node_status(n, kiln_model_set_continuous_edm(m, model->recipe.edm, model->recipe.edm_sigma_max,
                                                         model->recipe.edm_sigma_min)));
    kiln_status st = kiln_model_set_flux_shift(m, model->recipe.flux_shift);
    TRY(node_status(n, st));
    *out = m;
    return KILN_OK;
}

/* Whether a prompt acts on all of the sampling and the picture. */
static bool acts_everywhere(const wf_where *w)
{
    return !w->ranged && !w->mask && !w->area[2] && w->fraction[2] == 0.0 && !w->has_area_strength;
}

/* A guider's third prompt (DualCFGGuider's cond2, PerpNegGuider's and
 * PerpNeg's empty_conditioning), `what` in errors: what kiln takes of the
 * positive and negative prompts besides their rows is the third's too. */
static kiln_status third_prompt(const wf_node *n, const char *what, const wf_value *pos, const wf_value *third)
{
    if (third->nparts || !acts_everywhere(&third->where) || third->nreferences || third->edit)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "%s: a prompt in parts, on an area, or with reference latents or "
                         "a picture to edit", what);
    if (third->flux_guidance != pos->flux_guidance)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "FluxGuidance %g on the third prompt, %g on the first",
                         third->flux_guidance, pos->flux_guidance);
    return paired_controls(n, pos, third);
}

/* A prompt as a part of its side where it acts. */
static void where_part(const kiln_conditioning *cond, const wf_where *w, kiln_conditioning_part *part)
{
    *part = (kiln_conditioning_part){.cond = cond, .start_percent = w->ranged ? w->start : 0.0,
                                     .end_percent = w->ranged ? w->end : 1.0, .strength = w->mask_strength,
                                     .mask_bounds = w->mask_bounds, .area_x = w->area[0], .area_y = w->area[1],
                                     .area_w = w->area[2], .area_h = w->area[3], .fraction_x = w->fraction[0],
                                     .fraction_y = w->fraction[1], .fraction_w = w->fraction[2],
                                     .fraction_h = w->fraction[3], .area_strength = w->area_strength};
    if (w->mask) part->mask = w->mask->weights, part->mask_w = w->mask->width, part->mask_h = w->mask->height;
}

/* The sampling both KSampler and SamplerCustomAdvanced end in: `model`'s
 * load with its patches, the prompts' FluxGuidance, ControlNet, SDXL
 * numbers and picture to edit, the IP-Adapter of the MODEL. */
static kiln_status sample(wf_run *r, wf_node *n, const wf_value *model, const wf_value *pos, const wf_value *neg,
                          wf_value *latent, kiln_ksampler_params *p)
{
    kiln_model *m;
    const kiln_latent *l;
    TRY(sampling_model(r, n, model, &m));
    TRY(latent_of(latent, m, &l));
    p->progress = r->opt->progress;
    p->progress_ctx = r->opt->progress_ctx;
    p->flux_guidance = pos->flux_guidance;
    p->negative_flux_guidance = neg->flux_guidance;
    p->pixart_width = pos->pixart_width, p->pixart_height = pos->pixart_height;
    p->negative_pixart_width = neg->pixart_width, p->negative_pixart_height = neg->pixart_height;
    p->differential_diffusion = model->recipe.differential;
    p->rescale_cfg = model->recipe.rescale_cfg;
    p->cfg_zero_star = model->recipe.cfg_zero_star;
    p->apg = model->recipe.apg;
    p->apg_eta = model->recipe.apg_eta, p->apg_norm_threshold = model->recipe.apg_norm_threshold;
    p->apg_momentum = model->recipe.apg_momentum;
    p->tcfg = model->recipe.tcfg, p->mahiro = model->recipe.mahiro;
    p->cfg_norm = model->recipe.cfg_norm, p->epsilon_scaling = model->recipe.epsilon_scaling;
    const wf_slg *sg = &model->recipe.slg;
    const kiln_skip_layer_guidance slg = {sg->double_layers, sg->ndouble, sg->single_layers, sg->nsingle,
                                          sg->scale, sg->start, sg->end, sg->rescale, sg->uncond_only};
    if (sg->ndouble || sg->nsingle) p->skip_layer_guidance = &slg;
    if (model->recipe.has_freeu) p->freeu = &model->recipe.freeu;
    if (model->recipe.has_sag) p->sag = &model->recipe.sag;
    if (model->recipe.has_deep_shrink) p->deep_shrink = &model->recipe.deep_shrink;
    if (model->recipe.has_hypertile) p->hypertile = &model->recipe.hypertile;
    if (model->recipe.has_step_cache) p->step_cache = &model->recipe.step_cache;
    if (model->recipe.has_fresca) p->fresca = &model->recipe.fresca;
    if (model->recipe.has_operation) p->cfg_operation = &model->recipe.operation;
    p->pag_scale = model->recipe.pag_scale;
    kiln_latent refs[2][KILN_MAX_REFERENCES];
    const wf_value *prompts[2] = {neg, pos};
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < prompts[w]->nreferences; i++) refs[w][i] = *prompts[w]->references[i];
    if (pos->nreferences) p->reference = refs[1], p->reference_count = pos->nreferences;
    if (neg->nreferences) p->negative_reference = refs[0], p->negative_reference_count = neg->nreferences;
    p->reference_method = pos->reference_method;
    p->negative_reference_method = neg->reference_method;
    TRY(paired_controls(n, pos, neg));
    kiln_control_apply apply[KILN_MAX_CONTROLS];
    for (int i = 0; i < pos->ncontrols; i++) {
        const wf_control *c = &pos->controls[i];
        wf_net *net;
        TRY(net_of(r, WF_CONTROL_NET, c->path, m, &net));
        apply[i] = (kiln_control_apply){net->controlnet, c->image, c->strength, c->start, c->end, c->union_type,
                                        c->mask, c->one_side};
    }
    if (pos->ncontrols) {
        p->control = apply;
        p->control_count = pos->ncontrols;
    }
    kiln_ip_adapter_apply image_prompts[KILN_MAX_IP_ADAPTERS];
    for (int i = 0; i < model->recipe.nimage_prompts; i++) {
        const wf_image_prompt *ip = &model->recipe.image_prompts[i];
        wf_net *adapter, *vision;
        TRY(net_of(r, WF_IPADAPTER, ip->adapter, m, &adapter));
        TRY(net_of(r, WF_CLIP_VISION, ip->clip_vision, NULL, &vision));
        image_prompts[i] = (kiln_ip_adapter_apply){adapter->ip_adapter, vision->clip_vision, ip->image, ip->weight,
                                                   ip->start, ip->end, ip->nimages};
    }
    if (model->recipe.nimage_prompts) {
        p->ip_adapter = image_prompts;
        p->ip_adapter_count = model->recipe.nimage_prompts;
    }
    const wf_value *empty = model->recipe.perp_neg_empty;
    if (empty) { /* the cfg function it sets is PerpNegGuider's guidance on KSampler's prompts and cfg */
        if (p->dual_cfg_cond2 || p->perp_neg_empty)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "a three-prompt guider on a model with PerpNeg: the guider "
                             "would pass over the node's patch");
        if (fabs(p->cfg - 1.0) <= 1e-9)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "PerpNeg at cfg 1: ComfyUI's node then takes the negative "
                             "prompt's prediction for zeros (its cfg 1 shortcut); PerpNegGuider does not");
        TRY(third_prompt(n, "PerpNeg's empty_conditioning", pos, empty));
        p->perp_neg_empty = &empty->cond, p->perp_neg_scale = model->recipe.perp_neg_scale;
    }
    const kiln_hypernetwork *hypernetworks[KILN_MAX_HYPERNETWORKS];
    for (int i = 0; i < model->recipe.nhypernetworks; i++)
        TRY(node_status(n, hypernetwork_of(r, model->recipe.hypernetworks[i].path,
                                           model->recipe.hypernetworks[i].strength, m, &hypernetworks[i])));
    p->hypernetworks = hypernetworks, p->hypernetwork_count = model->recipe.nhypernetworks;
    /* a prompt without CLIPTextEncodeSDXL's numbers has CLIPTextEncode's: the output size, no crop, the
       refiner's default score for its side */
    kiln_sdxl_cond sdxl = pos->has_sdxl ? pos->sdxl : (kiln_sdxl_cond){.aesthetic = 6.0},
                   negative = neg->has_sdxl ? neg->sdxl : (kiln_sdxl_cond){.aesthetic = 2.5};
    p->edit_latent = pos->edit;
    if (pos->has_sdxl || neg->has_sdxl) {
        sdxl.negative_aesthetic = negative.aesthetic;
        p->sdxl = &sdxl;
        if (sdxl.width != negative.width || sdxl.height != negative.height || sdxl.crop_w != negative.crop_w ||
            sdxl.crop_h != negative.crop_h || sdxl.target_width != negative.target_width ||
            sdxl.target_height != negative.target_height)
            p->negative_sdxl = &negative;
    }
    /* prompts in parts (ConditioningSetTimestepRange, ConditioningCombine) */
    kiln_conditioning_part parts[2][KILN_MAX_PROMPT_PARTS];
    const kiln_conditioning *whole[2] = {&neg->cond, &pos->cond};
    kiln_status st = KILN_OK;
    for (int w = 0; w < 2 && st == KILN_OK; w++) {
        const wf_value *v = prompts[w];
        if (!v->nparts && acts_everywhere(&v->where)) continue;
        int count = 0;
        for (int i = 0; i <= v->nparts && st == KILN_OK; i++) {
            const wf_where *at = i ? &v->parts[i - 1].where : &v->where;
            if (at->has_area_strength && at->area_strength == 0.0) continue; /* weighs nothing anywhere */
            where_part(i ? &v->parts[i - 1].cond : &v->cond, at, &parts[w][count++]);
        }
        if (st == KILN_OK && !count)
            st = node_fail(n, KILN_ERR_INVALID_ARG, "every prompt of the %s side is at strength 0",
                           w ? "positive" : "negative");
        *(w ? &p->positive_parts : &p->negative_parts) = parts[w];
        *(w ? &p->positive_part_count : &p->negative_part_count) = count;
        whole[w] = NULL;
    }
    n->out[0].kind = WF_LATENT;
    if (st == KILN_OK) st = kiln_ksampler(m, p, whole[1], whole[0], l, &n->out[0].latent);
    return st;
}

static kiln_status ksampler(wf_run *r, wf_node *n, bool advanced)
{
    wf_value *model, *pos, *neg, *latent;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "positive", WF_CONDITIONING, &pos));
    TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
    TRY(linked(r, n, "latent_image", WF_LATENT, &latent));
    kiln_ksampler_params p = {.denoise = 1.0};
    TRY(seed_input(n, advanced ? "noise_seed" : "seed", &p.seed));
    TRY(integer(n, "steps", 1, 10000, &p.steps));
    TRY(number(n, "cfg", &p.cfg));
    TRY(text(n, "sampler_name", &p.sampler_name));
    TRY(text(n, "scheduler", &p.scheduler));
    if (advanced) {
        const char *add_noise, *leftover;
        TRY(text(n, "add_noise", &add_noise));
        TRY(text(n, "return_with_leftover_noise", &leftover));
        TRY(integer(n, "start_at_step", 0, 10000, &p.start_at_step));
        TRY(integer(n, "end_at_step", 0, 10000, &p.end_at_step));
        p.disable_noise = strcmp(add_noise, "enable") != 0;
        p.leftover_noise = strcmp(leftover, "enable") == 0;
        if (p.end_at_step >= p.steps) p.end_at_step = 0; /* ComfyUI's 10000: to the end */
    } else {
        TRY(number(n, "denoise", &p.denoise));
    }
    return sample(r, n, model, pos, neg, latent, &p);
}

/* ---- SamplerCustomAdvanced and its parts (Flux's example workflows) ---- */

/* ModelSamplingFlux: the shift of Flux's sigmas for a width x height
 * picture, on the line through base_shift at 256 tokens of 2x2 latent
 * patches (256x256 pixels) and max_shift at 4096 (1024x1024). */
static kiln_status model_sampling_flux(wf_run *r, wf_node *n)
{
    wf_value *model;
    double max_shift, base_shift;
    int width, height;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "max_shift", &max_shift));
    TRY(number(n, "base_shift", &base_shift));
    TRY(integer(n, "width", 16, 16384, &width));
    TRY(integer(n, "height", 16, 16384, &height));
    const double slope = (max_shift - base_shift) / (4096.0 - 256.0), at_zero = base_shift - slope * 256.0;
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->flux_shift = (double)width * height / (8 * 8 * 2 * 2) * slope + at_zero;
    return KILN_OK;
}

/* ModelSamplingSD3: the shift of an SD3 model's sigmas (its
 * ModelSamplingDiscreteFlow's). */
static kiln_status model_sampling_sd3(wf_run *r, wf_node *n)
{
    wf_value *model;
    double shift;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "shift", &shift));
    if (!(shift > 0.0 && shift < 100.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "shift %g: above 0 and below 100", shift);
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->flux_shift = shift;
    return KILN_OK;
}

/* A list of block numbers as SkipLayerGuidance reads one: every run of
 * digits in the text ("7, 8, 9"). */
static kiln_status layer_list(wf_node *n, const char *key, int *layers, int *count)
{
    const char *s;
    TRY(text(n, key, &s));
    *count = 0;
    while (*s) {
        if (*s < '0' || *s > '9') {
            s++;
            continue;
        }
        long v = 0;
        for (; *s >= '0' && *s <= '9'; s++) v = v < 1000 ? v * 10 + (*s - '0') : v;
        if (v > 63 || *count == 64)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "%s: block %ld (kiln skips blocks 0..63, at most 64)", key, v);
        layers[(*count)++] = (int)v;
    }
    return KILN_OK;
}

/* SkipLayerGuidanceSD3 (dit false: its `layers` are SD3's joint blocks, no
 * rescaling) and SkipLayerGuidanceDiT: the model's post-CFG guidance with
 * those blocks left out; SkipLayerGuidanceDiTSimple (uncond_only): the
 * negative prompt's pass without them. */
static kiln_status skip_layer_guidance(wf_run *r, wf_node *n, bool dit, bool uncond_only)
{
    wf_value *model;
    wf_slg slg = {.uncond_only = uncond_only};
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(layer_list(n, dit ? "double_layers" : "layers", slg.double_layers, &slg.ndouble));
    if (dit) TRY(layer_list(n, "single_layers", slg.single_layers, &slg.nsingle));
    if (!uncond_only) TRY(number(n, "scale", &slg.scale));
    TRY(number(n, "start_percent", &slg.start));
    TRY(number(n, "end_percent", &slg.end));
    if (dit && input_of(n, "rescaling_scale")) TRY(number(n, "rescaling_scale", &slg.rescale));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->slg = slg;
    return KILN_OK;
}

static kiln_status skip_layer_guidance_sd3(wf_run *r, wf_node *n) { return skip_layer_guidance(r, n, false, false); }
static kiln_status skip_layer_guidance_dit(wf_run *r, wf_node *n) { return skip_layer_guidance(r, n, true, false); }
static kiln_status skip_layer_guidance_dit_simple(wf_run *r, wf_node *n)
{
    return skip_layer_guidance(r, n, true, true);
}

/* DifferentialDiffusion: the model's inpainting mask thresholded each step
 * (kiln_ksampler_params.differential_diffusion); its strength, where the
 * node has one, 1 where not. */
static kiln_status differential_diffusion(wf_run *r, wf_node *n)
{
    wf_value *model;
    double strength = 1.0;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    if (input_of(n, "strength")) TRY(number(n, "strength", &strength));
    if (!(strength >= 0.0 && strength <= 1.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "strength %g: must be 0..1", strength);
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->differential = strength;
    return KILN_OK;
}

/* RescaleCFG: the model's guidance rescaled (kiln_ksampler_params.rescale_cfg),
 * in place of any such node's before it, as ComfyUI's cfg function. */
static kiln_status rescale_cfg(wf_run *r, wf_node *n)
{
    wf_value *model;
    double multiplier;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "multiplier", &multiplier));
    if (!(multiplier >= 0.0 && multiplier <= 1.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "multiplier %g: must be 0..1", multiplier);
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->rescale_cfg = multiplier;
    return KILN_OK;
}

/* A model patch kiln applies once a model: a second node of it on the
 * model is refused (ComfyUI would run both, one after the other). */
static kiln_status once_a_model(const wf_node *n, bool already, const char *patch)
{
    if (!already) return KILN_OK;
    return node_fail(n, KILN_ERR_UNSUPPORTED, "the model has %s from another node already: ComfyUI would run both, "
                     "one after the other; kiln runs one", patch);
}

/* FreeU and FreeU_V2: the UNet's decoder patched (kiln_ksampler_params.freeu).
 * ComfyUI runs a second such node's patch after the first's; kiln has one. */
static kiln_status freeu(wf_run *r, wf_node *n, bool v2)
{
    wf_value *model;
    kiln_freeu f = {.v2 = v2};
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "b1", &f.b1));
    TRY(number(n, "b2", &f.b2));
    TRY(number(n, "s1", &f.s1));
    TRY(number(n, "s2", &f.s2));
    TRY(once_a_model(n, model->recipe.has_freeu, "FreeU"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->has_freeu = true;
    recipe->freeu = f;
    return KILN_OK;
}

/* PerturbedAttentionGuidance: after the model's guidance
 * (kiln_ksampler_params.pag_scale). ComfyUI runs a second such node's pass
 * beside the first's; kiln has one. */
static kiln_status perturbed_attention_guidance(wf_run *r, wf_node *n)
{
    wf_value *model;
    double scale;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "scale", &scale));
    if (!(scale >= 0.0 && scale <= 100.0)) return node_fail(n, KILN_ERR_INVALID_ARG, "scale %g: must be 0..100", scale);
    TRY(once_a_model(n, model->recipe.pag_scale > 0.0, "PerturbedAttentionGuidance"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->pag_scale = scale;
    return KILN_OK;
}

/* LatentOperationTonemapReinhard and LatentOperationSharpen: the
 * operation, checked where it is applied. */
static kiln_status latent_operation(wf_run *r, wf_node *n, bool sharpen)
{
    (void)r;
    kiln_latent_operation *op = &n->out[0].operation;
    n->out[0].kind = WF_LATENT_OPERATION;
    if (!sharpen) {
        *op = (kiln_latent_operation){.kind = KILN_LATENT_OPERATION_TONEMAP_REINHARD};
        return number(n, "multiplier", &op->multiplier);
    }
    *op = (kiln_latent_operation){.kind = KILN_LATENT_OPERATION_SHARPEN};
    TRY(integer(n, "sharpen_radius", 1, 31, &op->sharpen_radius));
    TRY(number(n, "sigma", &op->sigma));
    return number(n, "alpha", &op->alpha);
}

static kiln_status latent_operation_tonemap(wf_run *r, wf_node *n) { return latent_operation(r, n, false); }
static kiln_status latent_operation_sharpen(wf_run *r, wf_node *n) { return latent_operation(r, n, true); }

/* LatentApplyOperationCFG: before the model's guidance, TCFG and APG
 * (kiln_ksampler_params.cfg_operation); one a model. */
static kiln_status latent_apply_operation_cfg(wf_run *r, wf_node *n)
{
    wf_value *model, *op;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "operation", WF_LATENT_OPERATION, &op));
    const wf_recipe *rc = &model->recipe;
    if (rc->tcfg || rc->apg || rc->has_operation)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "after %s: kiln applies LatentApplyOperationCFG first%s",
                         rc->has_operation ? "another LatentApplyOperationCFG" : rc->tcfg ? "TCFG" : "APG",
                         rc->has_operation ? " and once" : " (put it before that node)");
    TRY(node_status(n, kiln_latent_operation_check(&op->operation, KILN_IMAGE_MAX_SIDE, KILN_IMAGE_MAX_SIDE)));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->has_operation = true;
    recipe->operation = op->operation;
    return KILN_OK;
}

/* FreSca: the first of kiln's pre-CFG patches (kiln_ksampler_params.fresca). */
static kiln_status fresca(wf_run *r, wf_node *n)
{
    wf_value *model;
    kiln_fresca f;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "scale_low", &f.scale_low));
    TRY(number(n, "scale_high", &f.scale_high));
    TRY(integer(n, "freq_cutoff", 1, 10000, &f.freq_cutoff));
    if (!(f.scale_low >= 0.0 && f.scale_low <= 10.0 && f.scale_high >= 0.0 && f.scale_high <= 10.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "scale_low %g and scale_high %g: 0 to 10", f.scale_low,
                         f.scale_high);
    const wf_recipe *rc = &model->recipe;
    if (rc->has_fresca || rc->has_operation || rc->tcfg || rc->apg)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "after %s: kiln applies FreSca first%s",
                         rc->has_fresca ? "another FreSca" : rc->has_operation ? "LatentApplyOperationCFG"
                                                           : rc->tcfg ? "TCFG" : "APG",
                         rc->has_fresca ? " and once" : " (put it before that node)");
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->has_fresca = true;
    recipe->fresca = f;
    return KILN_OK;
}

/* SelfAttentionGuidance: after the model's guidance and its other post-CFG
 * patches (kiln_ksampler_params.sag); one a model. */
static kiln_status self_attention_guidance(wf_run *r, wf_node *n)
{
    wf_value *model;
    double scale, blur;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "scale", &scale));
    TRY(number(n, "blur_sigma", &blur));
    if (!(scale >= -2.0 && scale <= 5.0 && blur > 0.0 && blur <= 10.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "scale %g (-2 to 5), blur_sigma %g (above 0, at most 10)", scale, blur);
    TRY(once_a_model(n, model->recipe.has_sag, "SelfAttentionGuidance"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    /* scale 0 is the plain run, as ComfyUI's node adds 0 times its pass */
    recipe->has_sag = scale != 0.0;
    recipe->sag = (kiln_sag){scale, blur};
    return KILN_OK;
}

/* A resize method input of PatchModelAddDownscale, as kiln's static name. */
static kiln_status resize_method_input(const wf_node *n, const char *input, const char **out)
{
    const char *name;
    kiln_resample_method m;
    TRY(text(n, input, &name));
    if (!kiln_resample_from_name(name, &m))
        return node_fail(n, KILN_ERR_INVALID_ARG, "%s '%s': bicubic, bilinear, nearest-exact, area or bislerp", input,
                         name);
    *out = kiln_resample_name(m);
    return KILN_OK;
}

/* PatchModelAddDownscale (Kohya Deep Shrink): kiln_ksampler_params.deep_shrink. */
static kiln_status patch_model_add_downscale(wf_run *r, wf_node *n)
{
    wf_value *model;
    kiln_deep_shrink s;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(integer(n, "block_number", 1, 32, &s.block_number));
    TRY(number(n, "downscale_factor", &s.downscale_factor));
    TRY(number(n, "start_percent", &s.start_percent));
    TRY(number(n, "end_percent", &s.end_percent));
    TRY(flag(n, "downscale_after_skip", &s.downscale_after_skip));
    TRY(resize_method_input(n, "downscale_method", &s.downscale_method));
    TRY(resize_method_input(n, "upscale_method", &s.upscale_method));
    TRY(once_a_model(n, model->recipe.has_deep_shrink, "PatchModelAddDownscale"));
    /* kiln resizes before FreeU's patch: FreeU's scaling commutes with it, FreeU_V2's (its per-pixel means) not */
    if (model->recipe.has_freeu && model->recipe.freeu.v2)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "the model has FreeU_V2 already: kiln resizes before FreeU_V2's "
                         "patch (put the FreeU_V2 node after this one)");
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->has_deep_shrink = true;
    recipe->deep_shrink = s;
    return KILN_OK;
}

/* Output `slot` of n: the plain value v (NULL: out of memory). */
static kiln_status plain_output(wf_node *n, int slot, cJSON *v)
{
    if (!v) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    n->out[slot].kind = WF_PLAIN;
    n->out[slot].plain = v;
    return KILN_OK;
}

/* GetImageSize: the batch's width, height and size (its pictures share a size). */
static kiln_status get_image_size(wf_run *r, wf_node *n)
{
    wf_value *image;
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    TRY(plain_output(n, 0, cJSON_CreateNumber(image->images[0].width)));
    TRY(plain_output(n, 1, cJSON_CreateNumber(image->images[0].height)));
    return plain_output(n, 2, cJSON_CreateNumber(image->nimages));
}

/* StringConcatenate: string_a, delimiter, string_b. */
static kiln_status string_concatenate(wf_run *r, wf_node *n)
{
    (void)r;
    const char *a, *b, *delimiter;
    TRY(text(n, "string_a", &a));
    TRY(text(n, "string_b", &b));
    TRY(text(n, "delimiter", &delimiter));
    const size_t la = strlen(a), ld = strlen(delimiter), lb = strlen(b);
    char *joined = malloc(la + ld + lb + 1);
    if (!joined) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    memcpy(joined, a, la);
    memcpy(joined + la, delimiter, ld);
    memcpy(joined + la + ld, b, lb + 1);
    kiln_status st = plain_output(n, 0, cJSON_CreateString(joined));
    free(joined);
    return st;
}

/* The characters (UTF-8 sequences) of a string: Python's len. */
static long characters(const char *string)
{
    long count = 0;
    for (const unsigned char *c = (const unsigned char *)string; *c; c++) count += (*c & 0xc0) != 0x80;
    return count;
}

/* The byte where character `index` of a UTF-8 string starts (its end for
 * index = its length): Python indexes characters, not bytes. */
static size_t character_at(const char *string, long index)
{
    size_t at = 0;
    for (long seen = 0; string[at]; at++) {
        if (((unsigned char)string[at] & 0xc0) == 0x80) continue;
        if (seen++ == index) return at;
    }
    return at;
}

/* The character (code point) that starts at s, UTF-8, and its bytes; a
 * byte that starts none is one character of its own, U+FFFD. */
static uint32_t character_code(const char *s, size_t *bytes)
{
    const unsigned char *u = (const unsigned char *)s;
    const size_t n = u[0] < 0x80 ? 1 : u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc0 ? 2 : 0;
    *bytes = 1;
    if (n == 0) return 0xfffd;
    uint32_t c = n == 1 ? u[0] : u[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80) return 0xfffd;
        c = c << 6 | (u[i] & 0x3f);
    }
    *bytes = n;
    return c;
}

/* Python's str.isspace for one character. */
static bool python_space(uint32_t c)
{
    return (c >= 0x9 && c <= 0xd) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* StringLength: Python's len. */
static kiln_status string_length(wf_run *r, wf_node *n)
{
    (void)r;
    const char *string;
    TRY(text(n, "string", &string));
    return plain_output(n, 0, cJSON_CreateNumber((double)characters(string)));
}

/* Output 0 of n: the `length` bytes at `from`, as a string. */
static kiln_status string_output(wf_node *n, const char *from, size_t length)
{
    char *copy = malloc(length + 1);
    if (!copy) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    memcpy(copy, from, length);
    copy[length] = '\0';
    kiln_status st = plain_output(n, 0, cJSON_CreateString(copy));
    free(copy);
    return st;
}

/* StringSubstring: Python's string[start:end] (characters; a negative index
 * counts from the end; both clamped to the string). */
static kiln_status string_substring(wf_run *r, wf_node *n)
{
    (void)r;
    const char *string;
    int start, end;
    TRY(text(n, "string", &string));
    TRY(integer(n, "start", -2147483647.0, 2147483647.0, &start));
    TRY(integer(n, "end", -2147483647.0, 2147483647.0, &end));
    const long length = characters(string);
    long from = start < 0 ? start + length : start, to = end < 0 ? end + length : end;
    from = from < 0 ? 0 : from > length ? length : from;
    to = to < from ? from : to > length ? length : to;
    const size_t a = character_at(string, from), b = character_at(string, to);
    return string_output(n, string + a, b - a);
}

/* StringTrim: Python's strip(), lstrip() or rstrip() (mode Both, Left,
 * Right): the whitespace characters str.isspace names. */
static kiln_status string_trim(wf_run *r, wf_node *n)
{
    (void)r;
    const char *string, *mode;
    TRY(text(n, "string", &string));
    TRY(text(n, "mode", &mode));
    const bool both = strcmp(mode, "Both") == 0, left = both || strcmp(mode, "Left") == 0,
               right = both || strcmp(mode, "Right") == 0;
    if (!left && !right) return node_fail(n, KILN_ERR_INVALID_ARG, "mode '%s': Both, Left or Right", mode);
    size_t begin = 0, end = strlen(string), bytes;
    while (left && string[begin] && python_space(character_code(string + begin, &bytes))) begin += bytes;
    if (right) {
        end = begin;
        for (size_t at = begin; string[at]; at += bytes)
            if (!python_space(character_code(string + at, &bytes))) end = at + bytes;
    }
    return string_output(n, string + begin, end - begin);
}

/* StringReplace: Python's string.replace(find, replace): every match, left
 * to right, not overlapping; an empty find matches before each character
 * and at the end. */
static kiln_status string_replace(wf_run *r, wf_node *n)
{
    (void)r;
    const char *string, *find, *with;
    TRY(text(n, "string", &string));
    TRY(text(n, "find", &find));
    TRY(text(n, "replace", &with));
    const size_t lf = strlen(find), lw = strlen(with);
    size_t matches = lf ? 0 : (size_t)characters(string) + 1;
    for (const char *at = string; lf && (at = strstr(at, find)); at += lf) matches++;
    char *out = malloc(strlen(string) + matches * lw + 1);
    if (!out) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    size_t o = 0;
    const char *at = string;
    for (const char *next; lf && (next = strstr(at, find)); at = next + lf) {
        memcpy(out + o, at, (size_t)(next - at));
        o += (size_t)(next - at);
        memcpy(out + o, with, lw);
        o += lw;
    }
    while (!lf) { /* the replacement, then one character, to the end */
        memcpy(out + o, with, lw);
        o += lw;
        if (!*at) break;
        const size_t step = character_at(at, 1);
        memcpy(out + o, at, step);
        o += step;
        at += step;
    }
    const size_t rest = strlen(at);
    memcpy(out + o, at, rest);
    kiln_status st = string_output(n, out, o + rest);
    free(out);
    return st;
}

/* Whether every byte is ASCII: kiln changes the case of ASCII letters only
 * (Python's str methods map all of Unicode, some letters to several). */
static kiln_status ascii_only(const wf_node *n, const char *input, const char *string)
{
    for (const unsigned char *c = (const unsigned char *)string; *c; c++)
        if (*c >= 0x80)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "input '%s': changing the case of text beyond ASCII (kiln "
                             "maps A-Z and a-z alone)", input);
    return KILN_OK;
}

/* ASCII's case alone, whatever the locale (<ctype.h>'s follows it) */
static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c; }
static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }
static bool ascii_letter(char c) { return ascii_upper(c) >= 'A' && ascii_upper(c) <= 'Z'; }

/* A copy of input `name`, lowered unless case_sensitive (ASCII alone). */
static kiln_status compared_text(const wf_node *n, const char *name, bool case_sensitive, char **out)
{
    const char *string;
    TRY(text(n, name, &string));
    if (!case_sensitive) TRY(ascii_only(n, name, string));
    if (!(*out = strdup(string))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (char *c = *out; !case_sensitive && *c; c++) *c = ascii_lower(*c);
    return KILN_OK;
}

/* StringContains and StringCompare (Starts With, Ends With, Equal): a
 * BOOLEAN, the strings lowered first unless case_sensitive. */
static kiln_status string_test(wf_run *r, wf_node *n, bool compare)
{
    (void)r;
    bool case_sensitive = true;
    const char *mode = "contains";
    TRY(flag(n, "case_sensitive", &case_sensitive));
    if (compare) {
        TRY(text(n, "mode", &mode));
        if (strcmp(mode, "Starts With") && strcmp(mode, "Ends With") && strcmp(mode, "Equal"))
            return node_fail(n, KILN_ERR_INVALID_ARG, "mode '%s': Starts With, Ends With or Equal", mode);
    }
    char *a = NULL, *b = NULL;
    kiln_status st = compared_text(n, compare ? "string_a" : "string", case_sensitive, &a);
    if (st == KILN_OK) st = compared_text(n, compare ? "string_b" : "substring", case_sensitive, &b);
    if (st == KILN_OK) {
        const size_t la = strlen(a), lb = strlen(b);
        /* on UTF-8 the characters' comparisons are the bytes' */
        const bool v = !compare ? strstr(a, b) != NULL
                       : strcmp(mode, "Equal") == 0 ? strcmp(a, b) == 0
                       : lb > la ? false
                       : strcmp(mode, "Starts With") == 0 ? memcmp(a, b, lb) == 0
                                                          : memcmp(a + la - lb, b, lb) == 0;
        st = plain_output(n, 0, cJSON_CreateBool(v));
    }
    free(a);
    free(b);
    return st;
}

static kiln_status string_contains(wf_run *r, wf_node *n) { return string_test(r, n, false); }
static kiln_status string_compare(wf_run *r, wf_node *n) { return string_test(r, n, true); }

/* CaseConverter: Python's upper(), lower(), capitalize() (the first
 * character upper, the rest lower) and title() (a letter after a letter
 * lower, any other upper: "they're" gives "They'Re", as Python's), on ASCII
 * text. */
static kiln_status case_converter(wf_run *r, wf_node *n)
{
    (void)r;
    const char *string, *mode;
    TRY(text(n, "string", &string));
    TRY(text(n, "mode", &mode));
    const bool upper = strcmp(mode, "UPPERCASE") == 0, lower = strcmp(mode, "lowercase") == 0,
               capitalize = strcmp(mode, "Capitalize") == 0, title = strcmp(mode, "Title Case") == 0;
    if (!upper && !lower && !capitalize && !title)
        return node_fail(n, KILN_ERR_INVALID_ARG, "mode '%s': UPPERCASE, lowercase, Capitalize or Title Case", mode);
    TRY(ascii_only(n, "string", string));
    char *out = strdup(string);
    if (!out) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    bool after_letter = false;
    for (size_t i = 0; out[i]; i++) {
        const char c = out[i];
        const bool raise = upper || (capitalize && i == 0) || (title && !after_letter);
        out[i] = raise ? ascii_upper(c) : ascii_lower(c);
        after_letter = ascii_letter(c);
    }
    kiln_status st = plain_output(n, 0, cJSON_CreateString(out));
    free(out);
    return st;
}

/* The nodes whose outputs are plain values. */
static bool gives_plain_values(const wf_node *n)
{
    const char *c = n->class_type;
    return strcmp(c, "GetImageSize") == 0 || strcmp(c, "StringConcatenate") == 0 || strcmp(c, "StringLength") == 0 ||
           strcmp(c, "StringSubstring") == 0 || strcmp(c, "StringReplace") == 0 || strcmp(c, "StringTrim") == 0 ||
           strcmp(c, "SamplingPercentToSigma") == 0 || strcmp(c, "StringContains") == 0 ||
           strcmp(c, "StringCompare") == 0 || strcmp(c, "CaseConverter") == 0;
}

/* n's inputs linked to plain values (those nodes run first) become the
 * values, as if typed in: every node reads them as it reads its own. */
static kiln_status inline_plain_values(wf_run *r, wf_node *n)
{
    cJSON *inputs = cJSON_GetObjectItemCaseSensitive((cJSON *)n->json, "inputs");
    for (cJSON *in = inputs ? inputs->child : NULL; in; in = in->next) {
        const wf_node *from = linked_node(r, in);
        if (!from || !gives_plain_values(from)) continue;
        wf_value *v;
        TRY(linked(r, n, in->string, WF_PLAIN, &v));
        TRY(put_input_value(inputs, &in, v->plain));
    }
    return KILN_OK;
}

/* EasyCache and LazyCache (kiln_step_cache); their verbose input only
 * logs in ComfyUI. */
static kiln_status step_cache(wf_run *r, wf_node *n, kiln_step_cache_kind kind)
{
    wf_value *model;
    kiln_step_cache c = {.kind = kind};
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "reuse_threshold", &c.reuse_threshold));
    TRY(number(n, "start_percent", &c.start_percent));
    TRY(number(n, "end_percent", &c.end_percent));
    TRY(node_status(n, kiln_step_cache_check(&c, n->class_type)));
    TRY(once_a_model(n, model->recipe.has_step_cache, "EasyCache or LazyCache"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->has_step_cache = true;
    recipe->step_cache = c;
    return KILN_OK;
}

static kiln_status easy_cache(wf_run *r, wf_node *n) { return step_cache(r, n, KILN_EASY_CACHE); }
static kiln_status lazy_cache(wf_run *r, wf_node *n) { return step_cache(r, n, KILN_LAZY_CACHE); }

/* PerpNeg, the node PerpNegGuider replaced: its cfg function is that
 * guider's guidance, with KSampler's prompts and cfg and the node's empty
 * prompt and neg_scale (to float32 rounding: ComfyUI takes the function's
 * x - result from x). */
static kiln_status perp_neg(wf_run *r, wf_node *n)
{
    wf_value *model, *empty;
    double scale;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "empty_conditioning", WF_CONDITIONING, &empty));
    TRY(number(n, "neg_scale", &scale));
    if (!(scale >= 0.0 && scale <= 100.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "neg_scale %g: must be 0..100", scale);
    TRY(once_a_model(n, model->recipe.perp_neg_empty != NULL, "PerpNeg"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->perp_neg_empty = empty, recipe->perp_neg_scale = scale;
    return KILN_OK;
}

/* HypernetworkLoader: a hypernetwork on the model's attentions after any
 * before it (kiln_ksampler_params.hypernetworks), loaded where it samples. */
static kiln_status hypernetwork_loader(wf_run *r, wf_node *n)
{
    wf_value *model;
    double strength;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "strength", &strength));
    if (!(strength >= -10.0 && strength <= 10.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "strength %g: must be -10..10", strength);
    if (model->recipe.nhypernetworks == KILN_MAX_HYPERNETWORKS)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "more than %d hypernetworks on one model", KILN_MAX_HYPERNETWORKS);
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    TRY(find_file(r, n, "hypernetwork_name", "hypernetworks", &n->out[0].path));
    recipe->hypernetworks[recipe->nhypernetworks].path = n->out[0].path;
    recipe->hypernetworks[recipe->nhypernetworks++].strength = strength;
    return KILN_OK;
}

/* HyperTile: the UNet's self-attention in tiles (kiln_ksampler_params.hypertile). */
static kiln_status hypertile(wf_run *r, wf_node *n)
{
    wf_value *model;
    kiln_hypertile h;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(integer(n, "tile_size", 1, 2048, &h.tile_size));
    TRY(integer(n, "swap_size", 1, 128, &h.swap_size));
    TRY(integer(n, "max_depth", 0, 10, &h.max_depth));
    TRY(flag(n, "scale_depth", &h.scale_depth));
    TRY(once_a_model(n, model->recipe.has_hypertile, "HyperTile"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->has_hypertile = true;
    recipe->hypertile = h;
    return KILN_OK;
}

/* kiln runs the post-CFG patches in one order (kiln_ksampler_params):
 * CFGZeroStar, Mahiro, CFGNorm, Epsilon Scaling, rank 0 to 3. ComfyUI runs
 * them in the nodes' order, so a node after one kiln runs later is refused
 * rather than run in another order. */
static kiln_status post_cfg_in_order(wf_node *n, const wf_recipe *rc, int rank, const char *name)
{
    static const char *const later[3] = {"Mahiro", "CFGNorm", "Epsilon Scaling"};
    const bool set[3] = {rc->mahiro, rc->cfg_norm > 0.0, rc->epsilon_scaling > 0.0};
    if (rc->has_sag)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "after SelfAttentionGuidance: kiln applies %s first (put it before "
                         "the SelfAttentionGuidance node)", name);
    for (int k = 2; k >= rank; k--)
        if (set[k])
            return node_fail(n, KILN_ERR_UNSUPPORTED, "after %s: kiln applies %s first (put it before the %s node)",
                             later[k], name, later[k]);
    return KILN_OK;
}

/* CFGZeroStar: after the model's guidance (kiln_ksampler_params.cfg_zero_star),
 * before SkipLayerGuidance's, where kiln applies it. */
static kiln_status cfg_zero_star(wf_run *r, wf_node *n)
{
    wf_value *model;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    if ((model->recipe.slg.ndouble || model->recipe.slg.nsingle) && model->recipe.slg.rescale != 0.0)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "after SkipLayerGuidanceDiT's rescaling: kiln applies CFGZeroStar "
                         "first (put it before the SkipLayerGuidance node)");
    TRY(post_cfg_in_order(n, &model->recipe, 0, "CFGZeroStar"));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->cfg_zero_star = true;
    return KILN_OK;
}

/* Mahiro, CFGNorm and Epsilon Scaling: after the guidance and CFGZeroStar,
 * in that order (kiln_ksampler_params). */
static kiln_status post_cfg_patch(wf_run *r, wf_node *n, int rank)
{
    static const char *const names[3] = {"Mahiro", "CFGNorm", "Epsilon Scaling"};
    wf_value *model;
    double value = 0.0;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    if (rank == 1) TRY(number(n, "strength", &value));
    if (rank == 2) TRY(number(n, "scaling_factor", &value));
    if (rank == 1 && !(value > 0.0 && value <= 100.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "strength %g: above 0, at most 100", value);
    if (rank == 2 && !(value >= 0.5 && value <= 1.5))
        return node_fail(n, KILN_ERR_INVALID_ARG, "scaling_factor %g: 0.5 to 1.5", value);
    TRY(post_cfg_in_order(n, &model->recipe, rank + 1, names[rank]));
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    if (rank == 0) recipe->mahiro = true;
    if (rank == 1) recipe->cfg_norm = value;
    if (rank == 2) recipe->epsilon_scaling = value;
    return KILN_OK;
}

static kiln_status mahiro(wf_run *r, wf_node *n) { return post_cfg_patch(r, n, 0); }
static kiln_status cfg_norm(wf_run *r, wf_node *n) { return post_cfg_patch(r, n, 1); }
static kiln_status epsilon_scaling(wf_run *r, wf_node *n) { return post_cfg_patch(r, n, 2); }

/* TCFG: before the model's guidance and before APG (kiln_ksampler_params.tcfg). */
static kiln_status tcfg(wf_run *r, wf_node *n)
{
    wf_value *model;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    if (model->recipe.apg)
        return node_fail(n, KILN_ERR_UNSUPPORTED, "after APG: kiln applies TCFG first (put it before the APG node)");
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->tcfg = true;
    return KILN_OK;
}

/* APG (Adaptive Projected Guidance): before the model's guidance
 * (kiln_ksampler_params.apg), in place of any such node's before it. */
static kiln_status apg(wf_run *r, wf_node *n)
{
    wf_value *model;
    double eta, threshold, momentum;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "eta", &eta));
    TRY(number(n, "norm_threshold", &threshold));
    TRY(number(n, "momentum", &momentum));
    if (!(eta >= -10.0 && eta <= 10.0 && threshold >= 0.0 && threshold <= 50.0 && momentum >= -5.0 && momentum <= 1.0))
        return node_fail(n, KILN_ERR_INVALID_ARG, "eta %g (-10 to 10), norm_threshold %g (0 to 50), momentum %g (-5 to "
                         "1)", eta, threshold, momentum);
    wf_recipe *recipe;
    TRY(patched_model(n, model, &recipe));
    recipe->apg = true, recipe->apg_eta = eta, recipe->apg_norm_threshold = threshold, recipe->apg_momentum = momentum;
    return KILN_OK;
}

/* RandomNoise (KSampler's noise for its seed) and DisableNoise (none: the
 * latent goes in as the model mixes zero noise in). */
static kiln_status noise_node(wf_run *r, wf_node *n, bool disabled)
{
    (void)r;
    n->out[0].kind = WF_NOISE;
    n->out[0].noise_disabled = disabled;
    return disabled ? KILN_OK : seed_input(n, "noise_seed", &n->out[0].noise_seed);
}

/* CFGGuider (both prompts and cfg) and BasicGuider (one prompt, cfg 1). */
static kiln_status guider(wf_run *r, wf_node *n, bool cfg)
{
    wf_value *v = &n->out[0], *model, *pos, *neg = NULL;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    if (cfg) {
        TRY(linked(r, n, "positive", WF_CONDITIONING, &pos));
        TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
        TRY(number(n, "cfg", &v->cfg));
    } else {
        TRY(linked(r, n, "conditioning", WF_CONDITIONING, &pos));
        v->cfg = 1.0;
    }
    v->kind = WF_GUIDER;
    v->guide_model = model;
    v->guide_positive = pos;
    v->guide_negative = neg;
    return KILN_OK;
}

/* DualCFGGuider (dual_cfg) and PerpNegGuider: the model, three prompts and
 * two scales. */
static kiln_status three_prompt_guider(wf_run *r, wf_node *n, bool dual_cfg)
{
    wf_value *v = &n->out[0], *model, *pos, *neg, *third;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, dual_cfg ? "cond1" : "positive", WF_CONDITIONING, &pos));
    TRY(linked(r, n, dual_cfg ? "cond2" : "empty_conditioning", WF_CONDITIONING, &third));
    TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
    TRY(number(n, dual_cfg ? "cfg_conds" : "cfg", &v->cfg));
    TRY(number(n, dual_cfg ? "cfg_cond2_negative" : "neg_scale", &v->guide_scale2));
    const char *style = "regular"; /* the node's only style before ComfyUI gave it "nested" */
    if (dual_cfg && input_of(n, "style")) TRY(text(n, "style", &style));
    if (strcmp(style, "regular") && strcmp(style, "nested"))
        return node_fail(n, KILN_ERR_INVALID_ARG, "style '%s' (regular or nested)", style);
    TRY(third_prompt(n, dual_cfg ? "input 'cond2'" : "input 'empty_conditioning'", pos, third));
    v->kind = WF_GUIDER;
    v->guide_model = model, v->guide_positive = pos, v->guide_negative = neg, v->guide_third = third;
    v->guide_dual_cfg = dual_cfg, v->guide_nested = strcmp(style, "nested") == 0;
    return KILN_OK;
}

static kiln_status ksampler_select(wf_run *r, wf_node *n)
{
    (void)r;
    n->out[0].kind = WF_SAMPLER;
    return text(n, "sampler_name", &n->out[0].sampler);
}

/* SamplerEulerCFGpp: its "regular" version is KSamplerSelect's euler_cfg_pp,
 * its "alternative" one that sampler with the node's own step
 * (kiln_sampler_options.euler_cfg_pp_alternative). */
static kiln_status sampler_euler_cfg_pp(wf_run *r, wf_node *n)
{
    (void)r;
    const char *version;
    TRY(text(n, "version", &version));
    const bool alternative = strcmp(version, "alternative") == 0;
    if (!alternative && strcmp(version, "regular") != 0)
        return node_fail(n, KILN_ERR_INVALID_ARG, "version '%s' (regular or alternative)", version);
    wf_value *v = &n->out[0];
    v->kind = WF_SAMPLER;
    v->sampler = "euler_cfg_pp";
    if (alternative)
        v->has_sampler_options = true,
        v->sampler_options = (kiln_sampler_options){.eta = 1.0, .s_noise = 1.0, .euler_cfg_pp_alternative = true};
    return KILN_OK;
}

/* The custom sampler nodes: a sampler with its eta and s_noise (SamplerLMS:
 * its order, up to 4 in kiln) and the settings of its own. Their SDE noise
 * is the CPU's (noise_device "cpu", and "gpu" as ComfyUI draws it without a
 * GPU); kiln's dpmpp_sde steps halfway (r 0.5); SamplerDPMPP_2M_SDE's solver_type "heun"
 * is dpmpp_2m_sde_heun, SamplerSASolver's use_pece sa_solver_pece (its
 * sigmas those of the MODEL that samples). */
static const struct {
    const char *node, *sampler;
} sampler_nodes[] = {
    {"SamplerEulerAncestral", "euler_ancestral"}, {"SamplerDPMPP_2S_Ancestral", "dpmpp_2s_ancestral"},
    {"SamplerDPMPP_SDE", "dpmpp_sde"},            {"SamplerDPMPP_2M_SDE", "dpmpp_2m_sde"},
    {"SamplerDPMPP_3M_SDE", "dpmpp_3m_sde"},      {"SamplerLMS", "lms"},
    {"SamplerEulerAncestralCFGPP", "euler_ancestral_cfg_pp"},
    {"SamplerER_SDE", "er_sde"},                  {"SamplerSEEDS2", "seeds_2"},
    {"SamplerSASolver", "sa_solver"},             {"SamplerDPMAdaptative", "dpm_adaptive"},
};


/* A text input that must be one of the `count` words. */
static kiln_status one_of(const wf_node *n, const char *name, const char *const *words, int count, const char **out)
{
    TRY(text(n, name, out));
    for (int i = 0; i < count; i++)
        if (strcmp(*out, words[i]) == 0) return KILN_OK;
    return node_fail(n, KILN_ERR_INVALID_ARG, "%s \"%s\" (%s%s%s%s%s)", name, *out, words[0], count > 1 ? ", " : "",
                     count > 1 ? words[1] : "", count > 2 ? ", " : "", count > 2 ? words[2] : "");
}

static kiln_status sampler_node(wf_run *r, wf_node *n, int which)
{
    (void)r;
    wf_value *v = &n->out[0];
    v->kind = WF_SAMPLER;
    v->sampler = sampler_nodes[which].sampler;
    v->has_sampler_options = true;
    kiln_sampler_options *o = &v->sampler_options;
    *o = (kiln_sampler_options){.eta = 1.0, .s_noise = 1.0};
    if (strcmp(v->sampler, "lms") == 0) { /* kiln's goes to order 4 */
        TRY(integer(n, "order", 1, 4, &o->lms_order));
    } else {
        TRY(number(n, "eta", &o->eta));
        TRY(number(n, "s_noise", &o->s_noise));
    }
    const char *word;
    if (input_of(n, "noise_device")) { /* "gpu": the model's device, which is the CPU where ComfyUI has no GPU */
        static const char *const devices[] = {"gpu", "cpu"};
        TRY(one_of(n, "noise_device", devices, 2, &word));
    }
    const char *sampler = v->sampler;
    if (strcmp(sampler, "dpmpp_2m_sde") == 0) {
        static const char *const types[] = {"midpoint", "heun"};
        TRY(one_of(n, "solver_type", types, 2, &word));
        if (word[0] == 'h') v->sampler = "dpmpp_2m_sde_heun";
    } else if (strcmp(sampler, "er_sde") == 0) {
        static const char *const types[] = {"ER-SDE", "Reverse-time SDE", "ODE"};
        TRY(one_of(n, "solver_type", types, 3, &o->solver_type));
        TRY(integer(n, "max_stage", 1, 3, &o->max_stage));
    } else if (strcmp(sampler, "seeds_2") == 0) {
        static const char *const types[] = {"phi_1", "phi_2"};
        TRY(one_of(n, "solver_type", types, 2, &o->solver_type));
        TRY(number(n, "r", &o->r));
        if (!(o->r > 0.0 && o->r <= 1.0)) return node_fail(n, KILN_ERR_INVALID_ARG, "input 'r' %g: in (0, 1]", o->r);
    } else if (strcmp(sampler, "dpmpp_sde") == 0) {
        double ratio;
        TRY(number(n, "r", &ratio));
        if (ratio != 0.5)
            return node_fail(n, KILN_ERR_UNSUPPORTED, "r %g (kiln's dpmpp_sde steps halfway, 0.5)", ratio);
    } else if (strcmp(sampler, "sa_solver") == 0) {
        bool pece = false;
        o->sa_solver_custom = true;
        TRY(number(n, "sde_start_percent", &o->sde_start_percent));
        TRY(number(n, "sde_end_percent", &o->sde_end_percent));
        TRY(integer(n, "predictor_order", 1, 6, &o->predictor_order));
        TRY(integer(n, "corrector_order", 0, 6, &o->corrector_order));
        TRY(flag(n, "use_pece", &pece));
        TRY(flag(n, "simple_order_2", &o->simple_order_2));
        if (pece) v->sampler = "sa_solver_pece";
    } else if (strcmp(sampler, "dpm_adaptive") == 0) {
        o->dpm_adaptive_custom = true;
        TRY(integer(n, "order", 2, 3, &o->order));
        static const char *const names[7] = {"rtol", "atol", "h_init", "pcoeff", "icoeff", "dcoeff", "accept_safety"};
        double *const values[7] = {&o->rtol, &o->atol, &o->h_init, &o->pcoeff, &o->icoeff, &o->dcoeff,
                                   &o->accept_safety};
        for (int k = 0; k < 7; k++) TRY(number(n, names[k], values[k]));
    }
    return KILN_OK;
}

/* The scheduler nodes: SIGMAS of the model's noise table or of the node's
 * numbers alone, by name (text: a string input; numbers: the rest after
 * steps, in the C call's order). */
static const struct {
    const char *node;
    bool model;
    const char *text;
    const char *numbers[4];
} scheduler_nodes[] = {
    {"BasicScheduler", true, "scheduler", {"denoise"}},
    {"SDTurboScheduler", true, NULL, {"denoise"}},
    {"BetaSamplingScheduler", true, NULL, {"alpha", "beta"}},
    {"AlignYourStepsScheduler", false, "model_type", {"denoise"}},
    {"OptimalStepsScheduler", false, "model_type", {"denoise"}},
    {"KarrasScheduler", false, NULL, {"sigma_max", "sigma_min", "rho"}},
    {"ExponentialScheduler", false, NULL, {"sigma_max", "sigma_min"}},
    {"PolyexponentialScheduler", false, NULL, {"sigma_max", "sigma_min", "rho"}},
    {"LaplaceScheduler", false, NULL, {"sigma_max", "sigma_min", "mu", "beta"}},
    {"VPScheduler", false, NULL, {"beta_d", "beta_min", "eps_s"}},
};

static kiln_status scheduler_node(wf_run *r, wf_node *n, int which)
{
    wf_value *v = &n->out[0];
    v->kind = WF_SIGMAS;
    int steps;
    const char *word = NULL;
    double x[4] = {0};
    kiln_model *m = NULL;
    TRY(integer(n, "steps", 1, 10000, &steps));
    if (scheduler_nodes[which].text) TRY(text(n, scheduler_nodes[which].text, &word));
    for (int i = 0; i < 4 && scheduler_nodes[which].numbers[i]; i++)
        TRY(number(n, scheduler_nodes[which].numbers[i], &x[i]));
    if (scheduler_nodes[which].model) {
        wf_value *model;
        TRY(linked(r, n, "model", WF_MODEL, &model));
        TRY(sampling_model(r, n, model, &m));
    }
    kiln_sigmas *out = &v->sigmas;
    kiln_status st = KILN_ERR_UNSUPPORTED;
    switch (which) {
    case 0: st = kiln_basic_scheduler(m, word, steps, x[0], out); break;
    case 1: st = kiln_sd_turbo_scheduler(m, steps, x[0], out); break;
    case 2: st = kiln_beta_sampling_scheduler(m, steps, x[0], x[1], out); break;
    case 3: st = kiln_align_your_steps_scheduler(word, steps, x[0], out); break;
    case 4: st = kiln_optimal_steps_scheduler(word, steps, x[0], out); break;
    case 5: st = kiln_karras_scheduler(steps, x[0], x[1], x[2], out); break;
    case 6: st = kiln_exponential_scheduler(steps, x[0], x[1], out); break;
    case 7: st = kiln_polyexponential_scheduler(steps, x[0], x[1], x[2], out); break;
    case 8: st = kiln_laplace_scheduler(steps, x[0], x[1], x[2], x[3], out); break;
    case 9: st = kiln_vp_scheduler(steps, x[0], x[1], x[2], out); break;
    }
    return node_status(n, st);
}

/* SamplingPercentToSigma: the model's sigma at a share of its sampling,
 * a FLOAT (kiln_sampling_percent_to_sigma). */
static kiln_status sampling_percent_to_sigma(wf_run *r, wf_node *n)
{
    wf_value *model;
    kiln_model *m;
    double percent, sigma;
    bool actual = false;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(number(n, "sampling_percent", &percent));
    TRY(flag(n, "return_actual_sigma", &actual));
    TRY(sampling_model(r, n, model, &m));
    TRY(node_status(n, kiln_sampling_percent_to_sigma(m, percent, actual, &sigma)));
    return plain_output(n, 0, cJSON_CreateNumber(sigma));
}

/* AddNoise: a LATENT with the NOISE's noise at the SIGMAS' sigma, as the
 * MODEL samples (kiln_add_noise). */
static kiln_status add_noise(wf_run *r, wf_node *n)
{
    wf_value *model, *noise, *sigmas, *latent;
    kiln_model *m;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "noise", WF_NOISE, &noise));
    TRY(linked(r, n, "sigmas", WF_SIGMAS, &sigmas));
    TRY(linked(r, n, "latent_image", WF_LATENT, &latent));
    TRY(sampling_model(r, n, model, &m));
    const kiln_latent *l;
    TRY(latent_of(latent, m, &l));
    n->out[0].kind = WF_LATENT;
    return node_status(n, kiln_add_noise(m, noise->noise_seed, noise->noise_disabled, &sigmas->sigmas, l,
                                         &n->out[0].latent));
}

/* ManualSigmas, SplitSigmas and SplitSigmasDenoise (high and low sigmas),
 * ExtendIntermediateSigmas, FlipSigmas and SetFirstSigma. */
static kiln_status sigmas_node(wf_run *r, wf_node *n, const char *c)
{
    kiln_sigmas *out = &n->out[0].sigmas, *low = &n->out[1].sigmas;
    n->out[0].kind = WF_SIGMAS;
    kiln_status st;
    double x;
    wf_value *in = NULL;
    if (strcmp(c, "ManualSigmas") == 0) {
        const char *numbers;
        TRY(text(n, "sigmas", &numbers));
        st = kiln_manual_sigmas(numbers, out);
        return node_status(n, st);
    }
    TRY(linked(r, n, "sigmas", WF_SIGMAS, &in));
    if (strcmp(c, "SplitSigmas") == 0) {
        int step;
        TRY(integer(n, "step", 0, 10000, &step));
        n->out[1].kind = WF_SIGMAS;
        st = kiln_sigmas_split(&in->sigmas, step, out, low);
    } else if (strcmp(c, "SplitSigmasDenoise") == 0) {
        TRY(number(n, "denoise", &x));
        n->out[1].kind = WF_SIGMAS;
        st = kiln_sigmas_split_denoise(&in->sigmas, x, out, low);
    } else if (strcmp(c, "ExtendIntermediateSigmas") == 0) {
        int steps;
        double start, end;
        const char *spacing;
        TRY(integer(n, "steps", 1, 100, &steps));
        TRY(number(n, "start_at_sigma", &start));
        TRY(number(n, "end_at_sigma", &end));
        TRY(text(n, "spacing", &spacing));
        st = kiln_sigmas_extend(&in->sigmas, steps, start, end, spacing, out);
    } else if (strcmp(c, "SetFirstSigma") == 0) {
        TRY(number(n, "sigma", &x));
        st = kiln_sigmas_set_first(&in->sigmas, x, out);
    } else {
        st = kiln_sigmas_flip(&in->sigmas, out);
    }
    return node_status(n, st);
}

/* SamplerCustomAdvanced's and SamplerCustom's sampling: the model with its
 * prompts and cfg, the noise, and the node's sampler, sigmas and
 * latent_image; its outputs the latent and denoised_output. */
static kiln_status custom_sampling(wf_run *r, wf_node *n, const wf_value *model, const wf_value *pos,
                                   const wf_value *neg, const wf_value *guide, double cfg, uint64_t seed,
                                   bool disable_noise)
{
    wf_value *picked, *sigmas, *latent;
    TRY(linked(r, n, "sampler", WF_SAMPLER, &picked));
    TRY(linked(r, n, "sigmas", WF_SIGMAS, &sigmas));
    TRY(linked(r, n, "latent_image", WF_LATENT, &latent));
    kiln_ksampler_params p = {.seed = seed, .disable_noise = disable_noise, .cfg = cfg,
                              .sampler_name = picked->sampler, .sigmas = &sigmas->sigmas,
                              .sampler_options = picked->has_sampler_options ? &picked->sampler_options : NULL,
                              .denoised_output = &n->out[1].latent};
    if (guide && guide->guide_third && guide->guide_dual_cfg) {
        p.dual_cfg_cond2 = &guide->guide_third->cond;
        p.cfg_cond2_negative = guide->guide_scale2, p.dual_cfg_nested = guide->guide_nested;
    } else if (guide && guide->guide_third) {
        p.perp_neg_empty = &guide->guide_third->cond, p.perp_neg_scale = guide->guide_scale2;
    }
    n->out[1].kind = WF_LATENT;
    return sample(r, n, model, pos, neg, latent, &p);
}

static kiln_status sampler_custom_advanced(wf_run *r, wf_node *n)
{
    wf_value *noise, *guide;
    TRY(linked(r, n, "noise", WF_NOISE, &noise));
    TRY(linked(r, n, "guider", WF_GUIDER, &guide));
    const wf_value *neg = guide->guide_negative ? guide->guide_negative : guide->guide_positive;
    return custom_sampling(r, n, guide->guide_model, guide->guide_positive, neg, guide, guide->cfg, noise->noise_seed,
                           noise->noise_disabled);
}

/* SamplerCustom: SamplerCustomAdvanced with the noise (add_noise,
 * noise_seed) and CFGGuider's model, prompts and cfg as its own inputs. */
static kiln_status sampler_custom(wf_run *r, wf_node *n)
{
    wf_value *model, *pos, *neg;
    double cfg;
    uint64_t seed = 0;
    TRY(linked(r, n, "model", WF_MODEL, &model));
    TRY(linked(r, n, "positive", WF_CONDITIONING, &pos));
    TRY(linked(r, n, "negative", WF_CONDITIONING, &neg));
    TRY(number(n, "cfg", &cfg));
    TRY(seed_input(n, "noise_seed", &seed));
    bool add_noise = true;
    TRY(flag(n, "add_noise", &add_noise));
    return custom_sampling(r, n, model, pos, neg, NULL, cfg, seed, !add_noise);
}

static kiln_status upscale_model_loader(wf_run *r, wf_node *n)
{
    char *path;
    TRY(find_file(r, n, "model_name", "upscale_models", &path));
    n->out[0].kind = WF_UPSCALE_MODEL;
    kiln_status st = kiln_upscale_model_load(r->be, path, &n->out[0].upscaler);
    free(path);
    return st;
}

static kiln_status image_upscale_with_model(wf_run *r, wf_node *n)
{
    wf_value *model, *image;
    TRY(linked(r, n, "upscale_model", WF_UPSCALE_MODEL, &model));
    TRY(linked(r, n, "image", WF_IMAGE, &image));
    n->out[0].kind = WF_IMAGE;
    if (!(n->out[0].images = calloc((size_t)image->nimages, sizeof(kiln_image))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    for (; n->out[0].nimages < image->nimages; n->out[0].nimages++)
        TRY(kiln_image_upscale_with_model(model->upscaler, &image->images[n->out[0].nimages],
                                          &n->out[0].images[n->out[0].nimages]));
    return KILN_OK;
}

/* SaveImage and PreviewImage: their images join the run's output. */
static kiln_status output_images(wf_run *r, wf_node *n)
{
    wf_value *images;
    TRY(linked(r, n, "images", WF_IMAGE, &images));
    kiln_image *all = realloc(r->saved, (size_t)(r->nsaved + images->nimages) * sizeof *all);
    if (!all) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    r->saved = all;
    for (int i = 0; i < images->nimages; i++) {
        const kiln_image *src = &images->images[i];
        kiln_image *dst = &r->saved[r->nsaved];
        size_t bytes = (size_t)src->width * src->height * 3;
        *dst = (kiln_image){src->width, src->height, 3, malloc(bytes)};
        if (!dst->pixels) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
        memcpy(dst->pixels, src->pixels, bytes);
        r->nsaved++;
    }
    return KILN_OK;
}

static kiln_status run_node(wf_run *r, wf_node *n)
{
    static const char *const simple[] = {"CheckpointLoaderSimple", "DiffusersLoader", "CLIPSetLastLayer",
                                         "CLIPTextEncode", "EmptyLatentImage", "EmptySD3LatentImage", "LoadImage",
                                         "ControlNetLoader", "DiffControlNetLoader", "UpscaleModelLoader",
                                         "ImageUpscaleWithModel", "ModelSamplingDiscrete", "IPAdapterAdvanced",
                                         "LoadImageMask", "SetLatentNoiseMask", "VAEEncodeForInpaint",
                                         "InstructPixToPixConditioning", "ImagePadForOutpaint", "FluxGuidance",
                                         "InpaintModelConditioning", "DifferentialDiffusion",
                                         "UNETLoader", "CLIPTextEncodeFlux", "ModelSamplingFlux", "KSamplerSelect",
                                         "SamplerEulerCFGpp",
                                         "SamplerCustomAdvanced", "SetUnionControlNetType",
                                         "CLIPVisionEncode", "StyleModelApply", "LoadFluxIPAdapter",
                                         "ApplyFluxIPAdapter", "ReferenceLatent", "ConditioningZeroOut",
                                         "FluxKontextImageScale", "FluxKontextMultiReferenceLatentMethod",
                                         "CLIPTextEncodeSD3", "ModelSamplingSD3", "SkipLayerGuidanceSD3",
                                         "SkipLayerGuidanceDiT", "SkipLayerGuidanceDiTSimple",
                                         "ConditioningSetTimestepRange",
                                         "ConditioningCombine", "ConditioningConcat", "ConditioningAverage",
                                         "SamplerCustom", "ImageBatch", "ConditioningSetMask", "ConditioningSetArea",
                                         "ConditioningSetAreaPercentage", "ConditioningSetAreaStrength",
                                         "RescaleCFG", "CFGZeroStar", "APG", "ImageCompositeMasked",
                                         "PerturbedAttentionGuidance", "ModelSamplingContinuousEDM", "TCFG", "Mahiro",
                                         "CFGNorm", "Epsilon Scaling", "SelfAttentionGuidance", "ModelMergeSimple",
                                         "ModelMergeAdd", "ModelMergeSubtract", "CLIPMergeSimple", "CLIPMergeAdd",
                                         "CLIPMergeSubtract", "LatentOperationTonemapReinhard",
                                         "LatentOperationSharpen", "LatentApplyOperationCFG", "ModelMergeBlocks",
                                         "ModelMergeSD1", "ModelMergeSD2", "ModelMergeSDXL", "ModelMergeFlux1",
                                         "ModelMergeSD3_2B", "ModelMergeSD35_Large",
                                         "UNetSelfAttentionMultiply", "UNetCrossAttentionMultiply",
                                         "PatchModelAddDownscale", "CLIPAttentionMultiply", "SaveLatent",
                                         "LoadLatent", "VAESave", "ModelSave", "HyperTile", "GetImageSize",
                                         "StringConcatenate", "StringLength", "StringSubstring", "StringReplace",
                                         "StringTrim", "T5TokenizerOptions", "EasyCache", "LazyCache", "FreSca",
                                         "SamplingPercentToSigma", "AddNoise", "FluxDisableGuidance",
                                         "CLIPTextEncodePixArtAlpha", "HypernetworkLoader", "PerpNeg",
                                         "StringContains", "StringCompare", "CaseConverter"};
    static kiln_status (*const runs[])(wf_run *, wf_node *) = {
        checkpoint_loader, checkpoint_loader, clip_set_last_layer, clip_text_encode, empty_latent_image,
        empty_latent_image, load_image,
        controlnet_loader, controlnet_loader, upscale_model_loader, image_upscale_with_model,
        model_sampling_discrete, ip_adapter_advanced, load_image_mask, set_latent_noise_mask,
        vae_encode_for_inpaint, instruct_pix2pix_conditioning, image_pad_for_outpaint, flux_guidance,
        inpaint_model_conditioning, differential_diffusion, unet_loader, clip_text_encode_flux, model_sampling_flux, ksampler_select,
        sampler_euler_cfg_pp,
        sampler_custom_advanced, set_union_controlnet_type, clip_vision_encode, style_model_apply,
        load_flux_ip_adapter, apply_flux_ip_adapter, reference_latent, conditioning_zero_out, flux_kontext_image_scale,
        reference_latent_method, clip_text_encode_sd3, model_sampling_sd3, skip_layer_guidance_sd3,
        skip_layer_guidance_dit, skip_layer_guidance_dit_simple, conditioning_set_timestep_range, conditioning_combine, conditioning_concat,
        conditioning_average, sampler_custom, image_batch, conditioning_set_mask, conditioning_set_area,
        conditioning_set_area, conditioning_set_area, rescale_cfg, cfg_zero_star, apg, image_composite_masked,
        perturbed_attention_guidance, model_sampling_continuous_edm, tcfg, mahiro, cfg_norm, epsilon_scaling,
        self_attention_guidance, model_merge_simple, model_merge_add, model_merge_subtract, clip_merge_simple,
        clip_merge_add, clip_merge_subtract, latent_operation_tonemap, latent_operation_sharpen,
        latent_apply_operation_cfg, model_merge_simple, model_merge_simple, model_merge_simple, model_merge_simple,
        model_merge_simple, model_merge_simple, model_merge_simple,
        self_attention_multiply, cross_attention_multiply, patch_model_add_downscale, clip_attention_multiply,
        save_latent, load_latent, vae_save, model_save, hypertile, get_image_size, string_concatenate, string_length,
        string_substring, string_replace, string_trim, t5_tokenizer_options, easy_cache, lazy_cache, fresca,
        sampling_percent_to_sigma, add_noise, flux_disable_guidance, clip_text_encode_pixart_alpha, hypernetwork_loader,
        perp_neg, string_contains, string_compare, case_converter};
    _Static_assert(sizeof simple / sizeof *simple == sizeof runs / sizeof *runs, "a node name for every run");
    n->state = 1;
    TRY(inline_plain_values(r, n));
    const char *c = core_class(n->class_type);
    kiln_status st = KILN_ERR_UNSUPPORTED;
    bool known = true;
    if (strcmp(c, "LoraLoader") == 0 || strcmp(c, "LoraLoaderModelOnly") == 0)
        st = lora_loader(r, n, c[10] != '\0');
    else if (strcmp(c, "KSampler") == 0 || strcmp(c, "KSamplerAdvanced") == 0)
        st = ksampler(r, n, c[8] != '\0');
    else if (strcmp(c, "FreeU") == 0 || strcmp(c, "FreeU_V2") == 0)
        st = freeu(r, n, c[5] != '\0');
    else if (strcmp(c, "LatentUpscaleBy") == 0 || strcmp(c, "LatentUpscale") == 0 ||
             strcmp(c, "RepeatLatentBatch") == 0 || strcmp(c, "LatentFromBatch") == 0 ||
             strcmp(c, "LatentBatchSeedBehavior") == 0)
        st = latent_node(r, n, c[0] == 'L');
    else if (strcmp(c, "LatentComposite") == 0 || strcmp(c, "LatentCompositeMasked") == 0 ||
             strcmp(c, "LatentBlend") == 0 || strcmp(c, "LatentAdd") == 0 ||
             strcmp(c, "LatentSubtract") == 0 || strcmp(c, "LatentInterpolate") == 0 ||
             strcmp(c, "LatentBatch") == 0 || strcmp(c, "LatentMultiply") == 0 || strcmp(c, "LatentCrop") == 0 ||
             strcmp(c, "LatentFlip") == 0 || strcmp(c, "LatentRotate") == 0 || strcmp(c, "LatentApplyOperation") == 0 ||
             strcmp(c, "LatentConcat") == 0 || strcmp(c, "LatentCut") == 0)
        st = latent_transform(r, n, c);
    else if (strcmp(c, "SolidMask") == 0 || strcmp(c, "InvertMask") == 0 || strcmp(c, "ThresholdMask") == 0 ||
             strcmp(c, "CropMask") == 0 || strcmp(c, "MaskComposite") == 0 || strcmp(c, "FeatherMask") == 0 ||
             strcmp(c, "GrowMask") == 0 || strcmp(c, "ImageToMask") == 0 || strcmp(c, "MaskToImage") == 0 ||
             strcmp(c, "ImageColorToMask") == 0)
        st = mask_node(r, n, c);
    else if (strcmp(c, "EmptyImage") == 0 || strcmp(c, "ImageInvert") == 0 || strcmp(c, "ImageBlend") == 0 ||
             strcmp(c, "ImageBlur") == 0 || strcmp(c, "ImageSharpen") == 0 || strcmp(c, "Canny") == 0 ||
             strcmp(c, "Morphology") == 0)
        st = image_filter_node(r, n, c);
    else if (strcmp(c, "ImageAddNoise") == 0)
        st = image_add_noise_node(r, n);
    else if (strcmp(c, "CheckpointSave") == 0)
        st = checkpoint_save(r, n);
    else if (strcmp(c, "ImageStitch") == 0 || strcmp(c, "ResizeAndPadImage") == 0 ||
             strcmp(c, "ImageScaleToMaxDimension") == 0)
        st = image_layout_node(r, n, c);
    else if (strcmp(c, "ImageFlip") == 0 || strcmp(c, "ImageRotate") == 0)
        st = image_flip_rotate_node(r, n, c[5] == 'F');
    else if (strcmp(c, "ControlNetApplyAdvanced") == 0 || strcmp(c, "ControlNetApplySD3") == 0 ||
             strcmp(c, "ControlNetInpaintingAliMamaApply") == 0 || strcmp(c, "ControlNetApply") == 0)
        st = controlnet_apply(r, n, c[10] == 'I', c[15] == '\0'); /* ApplySD3: Advanced's deprecated SD3 name */
    else if (strcmp(c, "VAEEncode") == 0 || strcmp(c, "VAEEncodeTiled") == 0)
        st = vae_encode(r, n, c[9] != '\0');
    else if (strcmp(c, "ImageCrop") == 0 || strcmp(c, "RepeatImageBatch") == 0 || strcmp(c, "ImageFromBatch") == 0)
        st = image_pick(r, n, c);
    else if (strcmp(c, "ImageScale") == 0 || strcmp(c, "ImageScaleBy") == 0 ||
             strcmp(c, "ImageScaleToTotalPixels") == 0)
        st = image_scale_node(r, n, c[10] == '\0' ? SCALE_TO_SIZE : c[12] == '\0' ? SCALE_BY : SCALE_TO_TOTAL);
    else if (strcmp(c, "VAEDecode") == 0 || strcmp(c, "VAEDecodeTiled") == 0)
        st = vae_decode(r, n, c[9] != '\0');
    else if (strcmp(c, "SaveImage") == 0 || strcmp(c, "PreviewImage") == 0)
        st = output_images(r, n);
    else if (strcmp(c, "CLIPTextEncodeSDXL") == 0 || strcmp(c, "CLIPTextEncodeSDXLRefiner") == 0)
        st = clip_text_encode_sdxl(r, n, c[18] != '\0');
    else if (strcmp(c, "IPAdapterModelLoader") == 0 || strcmp(c, "CLIPVisionLoader") == 0 ||
             strcmp(c, "StyleModelLoader") == 0)
        st = file_loader(r, n, c[0] == 'I' ? WF_IPADAPTER : c[0] == 'S' ? WF_STYLE_MODEL : WF_CLIP_VISION);
    else if (strcmp(c, "RandomNoise") == 0 || strcmp(c, "DisableNoise") == 0)
        st = noise_node(r, n, c[0] == 'D');
    else if (strcmp(c, "CFGGuider") == 0 || strcmp(c, "BasicGuider") == 0)
        st = guider(r, n, c[0] == 'C');
    else if (strcmp(c, "DualCFGGuider") == 0 || strcmp(c, "PerpNegGuider") == 0)
        st = three_prompt_guider(r, n, c[0] == 'D');
    else if (strcmp(c, "SplitSigmas") == 0 || strcmp(c, "SplitSigmasDenoise") == 0 || strcmp(c, "FlipSigmas") == 0 ||
             strcmp(c, "SetFirstSigma") == 0 || strcmp(c, "ManualSigmas") == 0 ||
             strcmp(c, "ExtendIntermediateSigmas") == 0)
        st = sigmas_node(r, n, c);
    else if (strcmp(c, "DualCLIPLoader") == 0 || strcmp(c, "CLIPLoader") == 0 || strcmp(c, "TripleCLIPLoader") == 0 ||
             strcmp(c, "VAELoader") == 0)
        st = part_loader(r, n, c[0] == 'V' ? WF_VAE : WF_CLIP);
    else {
        known = false;
        for (size_t i = 0; i < sizeof simple / sizeof *simple && !known; i++)
            if (strcmp(c, simple[i]) == 0) known = true, st = runs[i](r, n);
        for (int i = 0; i < (int)(sizeof scheduler_nodes / sizeof *scheduler_nodes) && !known; i++)
            if (strcmp(c, scheduler_nodes[i].node) == 0) known = true, st = scheduler_node(r, n, i);
        for (int i = 0; i < (int)(sizeof sampler_nodes / sizeof *sampler_nodes) && !known; i++)
            if (strcmp(c, sampler_nodes[i].node) == 0) known = true, st = sampler_node(r, n, i);
    }
    if (!known) st = node_fail(n, KILN_ERR_UNSUPPORTED, "kiln does not run this node (see the README's list)");
    n->state = 2;
    return st;
}

void kiln_images_free(kiln_image *images, int count)
{
    for (int i = 0; images && i < count; i++) kiln_image_free(&images[i]);
    free(images);
}

static void free_value(wf_value *v)
{
    free_recipe(&v->recipe);
    kiln_conditioning_free(&v->cond);
    for (int i = 0; i < v->nparts; i++) kiln_conditioning_free(&v->parts[i].cond);
    kiln_latent_free(&v->latent);
    kiln_images_free(v->images, v->nimages);
    kiln_mask_free(&v->mask);
    free(v->pad_mask);
    free(v->path);
    free(v->clip_vision_path);
    kiln_upscaler_free(v->upscaler);
    kiln_sigmas_free(&v->sigmas);
    cJSON_Delete(v->plain);
    *v = (wf_value){0};
}

static bool is_output(const wf_node *n)
{
    return strcmp(n->class_type, "SaveImage") == 0 || strcmp(n->class_type, "PreviewImage") == 0 ||
           strcmp(n->class_type, "CheckpointSave") == 0 || strcmp(n->class_type, "SaveLatent") == 0 ||
           strcmp(n->class_type, "VAESave") == 0 || strcmp(n->class_type, "ModelSave") == 0;
}

/* Node ids in ComfyUI's order: as numbers where they are numbers. */
static int by_id(const void *a, const void *b)
{
    const wf_node *x = a, *y = b;
    char *ex, *ey;
    long nx = strtol(x->id, &ex, 10), ny = strtol(y->id, &ey, 10);
    if (!*ex && !*ey && nx != ny) return nx < ny ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* A link to a Primitive node (PrimitiveInt, PrimitiveFloat, PrimitiveString,
 * PrimitiveStringMultiline, PrimitiveBoolean: ComfyUI's nodes that hand on
 * the value they hold) becomes that value, as if typed into the input. */
static kiln_status inline_primitives(cJSON *graph)
{
    static const char *const primitives[] = {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString",
                                             "PrimitiveStringMultiline", "PrimitiveBoolean"};
    for (cJSON *node = graph->child; node; node = node->next) {
        cJSON *inputs = cJSON_GetObjectItemCaseSensitive(node, "inputs");
        for (cJSON *in = inputs ? inputs->child : NULL; in; in = in->next) {
            const cJSON *id = cJSON_GetArrayItem(in, 0);
            if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) != 2 || !cJSON_IsString(id)) continue;
            const cJSON *from = cJSON_GetObjectItemCaseSensitive(graph, id->valuestring);
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(from, "class_type");
            bool primitive = false;
            for (size_t i = 0; cJSON_IsString(type) && i < sizeof primitives / sizeof *primitives; i++)
                primitive |= strcmp(type->valuestring, primitives[i]) == 0;
            if (!primitive) continue;
            const cJSON *value = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(from, "inputs"),
                                                                  "value");
            if (!value || cJSON_IsArray(value))
                return kiln_fail(KILN_ERR_INVALID_ARG, "workflow node %s (%s): no value to hand on", id->valuestring,
                                 type->valuestring);
            TRY(put_input_value(inputs, &in, value));
        }
    }
    return KILN_OK;
}

kiln_status kiln_workflow_run(kiln_backend *be, const char *json, const kiln_workflow_options *options,
                              kiln_image **images, int *count)
{
    if (!be || !json || !images || !count) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_workflow_run: no backend, "
                                                            "workflow or place for the images");
    *images = NULL;
    *count = 0;
    const kiln_workflow_options none = {0};
    wf_run r = {.be = be, .opt = options ? options : &none};
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return kiln_fail(KILN_ERR_FORMAT,
                         "workflow: not a JSON object of nodes (ComfyUI's API format, \"Save (API)\")");
    }
    /* a whole /prompt request body holds the workflow under "prompt" */
    cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    cJSON *graph = cJSON_IsObject(prompt) ? prompt : root;
    r.graph = graph;
    kiln_status st = inline_primitives(graph);
    r.nnodes = st == KILN_OK ? cJSON_GetArraySize(graph) : 0;
    if (st == KILN_OK && !(r.nodes = calloc(r.nnodes ? (size_t)r.nnodes : 1, sizeof *r.nodes))) {
        r.nnodes = 0;
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "workflow: out of host memory");
    }
    int i = 0;
    for (const cJSON *node = graph->child; node && st == KILN_OK; node = node->next, i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "class_type");
        if (!cJSON_IsString(type) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(node, "inputs")))
            st = kiln_fail(KILN_ERR_FORMAT, "workflow node %s: no class_type and inputs (the UI's format? export "
                           "with \"Save (API)\")", node->string);
        else
            r.nodes[i] = (wf_node){.id = node->string, .json = node, .class_type = type->valuestring};
    }
    if (st == KILN_OK) qsort(r.nodes, (size_t)r.nnodes, sizeof *r.nodes, by_id);
    if (st == KILN_OK) st = find_parts(&r);
    if (st == KILN_OK) st = find_embeddings(&r);
    int outputs = 0;
    for (i = 0; i < r.nnodes && st == KILN_OK; i++)
        if (is_output(&r.nodes[i])) outputs++, st = run_node(&r, &r.nodes[i]);
    if (st == KILN_OK && !outputs)
        st = kiln_fail(KILN_ERR_INVALID_ARG, "workflow: no SaveImage, PreviewImage, SaveLatent, CheckpointSave, "
                       "VAESave or ModelSave node, so nothing to make");
    for (i = 0; i < r.nnets; i++) {
        kiln_controlnet_free(r.nets[i].controlnet);
        kiln_ip_adapter_free(r.nets[i].ip_adapter);
        kiln_clip_vision_free(r.nets[i].clip_vision);
        kiln_style_model_free(r.nets[i].style_model);
        kiln_hypernetwork_free(r.nets[i].hypernetwork);
    }
    for (i = 0; i < r.nnodes; i++)
        for (int o = 0; o < WF_MAX_OUTPUTS; o++) free_value(&r.nodes[i].out[o]);
    for (i = 0; i < r.nmodels; i++) kiln_model_free(r.models[i].model);
    for (i = 0; i < 1 + KILN_MAX_TEXT_ENCODER_PARTS; i++) free(r.part_files[i]);
    free(r.embeddings);
    free(r.nodes);
    cJSON_Delete(root);
    if (st != KILN_OK) {
        kiln_images_free(r.saved, r.nsaved);
        return st;
    }
    *images = r.saved;
    *count = r.nsaved;
    return KILN_OK;
}
