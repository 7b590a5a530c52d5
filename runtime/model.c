#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "status.h"

const char *kiln_variant_name(kiln_variant v)
{
    switch (v) {
    case KILN_VARIANT_TXT2IMG: return "txt2img";
    case KILN_VARIANT_INPAINT: return "inpaint";
    case KILN_VARIANT_INSTRUCT_PIX2PIX: return "instruct-pix2pix";
    }
    return "?";
}

const char *kiln_prediction_name(kiln_prediction p)
{
    return p == KILN_PREDICTION_V ? "v" : p == KILN_PREDICTION_FLOW ? "flow" : p == KILN_PREDICTION_LCM ? "lcm"
           : p == KILN_PREDICTION_EDM ? "edm" : p == KILN_PREDICTION_X0 ? "x0"
           : p == KILN_PREDICTION_IMG_TO_IMG ? "img_to_img" : "eps";
}

#define SD_BETAS .linear_start = KILN_SD_LINEAR_START, .linear_end = KILN_SD_LINEAR_END
static const kiln_family families[] = {
    {"sd1", {&kiln_clip_sd1}, 1, 0.18215f, 0, 512, SD_BETAS},
    {"sd2", {&kiln_clip_sd2}, 1, 0.18215f, 0, 512, SD_BETAS},
    {"sdxl", {&kiln_clip_sdxl_l, &kiln_clip_sdxl_g}, 2, 0.13025f, 6, 1024, SD_BETAS},
    {"sdxl-refiner", {&kiln_clip_sdxl_refiner}, 1, 0.13025f, 5, 1024, SD_BETAS},
    /* PixArt-alpha and -Sigma: ComfyUI's PixArtAlpha sampling settings; SD 1.x's latent scale (Sigma's is
       SDXL's) unless the folder's VAE config says another */
    {"pixart", {0}, 0, 0.18215f, 0, 1024, .arch = KILN_ARCH_PIXART, .linear_start = 0.0001, .linear_end = 0.02,
     .plain_betas = true},
    /* FLUX.1: CLIP-L for its pooled output, T5, a 16-channel VAE (scale and
       shift from its config, else FLUX.1's), flow matching */
    {"flux", {&kiln_clip_flux}, 1, 0.3611f, 0, 1024, .arch = KILN_ARCH_FLUX},
    /* Chroma: FLUX.1's transformer modulated from one table, T5 alone, FLUX.1's VAE */
    {"chroma", {0}, 0, 0.3611f, 0, 1024, .arch = KILN_ARCH_FLUX},
    /* SD 3.0 and 3.5: CLIP-L and bigG, T5 (where given), the 16-channel VAE (SD3's scale and shift unless the
       folder says), flow matching */
    {"sd3", {&kiln_clip_sd3_l, &kiln_clip_sd3_g}, 2, 1.5305f, 0, 1024, .arch = KILN_ARCH_SD3},
};

static const kiln_family *family_named(const char *name)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strcmp(families[i].name, name) == 0) return &families[i];
    return NULL;
}

/* Population standard deviation of a stored vector. */
static double stored_std(const kiln_st_tensor *t)
{
    size_t n = (size_t)kiln_st_numel(t);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        double v = kiln_load_f32(t->data, t->dtype, i);
        sum += v;
        sq += v * v;
    }
    double mean = n ? sum / (double)n : 0;
    return n ? sqrt(fmax(sq / (double)n - mean * mean, 0.0)) : 0;
}

/* A single file's flag tensors that ComfyUI's SDXL detection goes by
 * (supported_models.py, SDXL.model_type), in its order. */
static bool playground_file(const kiln_checkpoint *ck)
{
    return kiln_checkpoint_find(ck, "edm_mean") && kiln_checkpoint_find(ck, "edm_std");
}

/* What a file's flag tensors or scheduler config say of how it samples,
 * in the order ComfyUI's SDXL model_type reads them: Playground v2.5's
 * edm_mean/edm_std, CosXL's edm_vpred.sigma_max, v_pred (ztsnr beside it),
 * a diffusers folder's scheduler config (an EDM one's sigmas, or its
 * prediction_type). */
typedef enum file_sampling {
    FILE_SAYS_NOTHING,
    FILE_PLAYGROUND,
    FILE_COSXL,
    FILE_V_PRED,
    FILE_EDM_SCHEDULER,
    FILE_SCHEDULER,
} file_sampling;

static file_sampling sampling_of_file(const kiln_checkpoint *ck)
{
    double sigma_min, sigma_max, sigma_data;
    if (playground_file(ck)) return FILE_PLAYGROUND;
    if (kiln_checkpoint_find(ck, "edm_vpred.sigma_max")) return FILE_COSXL;
    if (kiln_checkpoint_find(ck, "v_pred")) return FILE_V_PRED;
    if (kiln_checkpoint_edm_sigmas(ck, &sigma_min, &sigma_max, &sigma_data)) return FILE_EDM_SCHEDULER;
    if (kiln_checkpoint_prediction_type(ck)) return FILE_SCHEDULER;
    return FILE_SAYS_NOTHING;
}

/* ComfyUI's rules (model_detection.py, supported_models.py): Playground
 * v2.5's `edm_mean` and `edm_std` (EDM's denoiser), CosXL's
 * `edm_vpred.sigma_max` or a `v_pred` tensor (v), else a diffusers folder's
 * scheduler config (an EDM scheduler's "epsilon" is EDM's denoiser), else
 * for an SD 2.x UNet of 4 input channels the spread of the last
 * transformer's first norm bias (above 0.09 in the 768-v checkpoints, near 0
 * in the 512 ones); SD 1.x and the inpainting UNets predict the noise. */
static void detect_prediction(const kiln_checkpoint *ck, const unet_config *unet, kiln_model_info *info)
{
    info->prediction = KILN_PREDICTION_EPS;
    info->prediction_reason = "default";
    const char *type = kiln_checkpoint_prediction_type(ck);
    const bool v_prediction = type && strcmp(type, "v_prediction") == 0;
    const file_sampling says = sampling_of_file(ck);
    switch (says) {
    case FILE_PLAYGROUND:
        info->prediction = KILN_PREDICTION_EDM;
        info->prediction_reason = "edm_mean and edm_std tensors (Playground v2.5)";
        return;
    case FILE_COSXL:
        info->prediction = KILN_PREDICTION_V;
        info->prediction_reason = "edm_vpred.sigma_max tensor";
        return;
    case FILE_V_PRED:
        info->prediction = KILN_PREDICTION_V;
        info->prediction_reason = kiln_checkpoint_find(ck, "ztsnr") ? "v_pred and ztsnr tensors (zero terminal SNR)"
                                                                    : "v_pred tensor";
        return;
    case FILE_EDM_SCHEDULER:
    case FILE_SCHEDULER:
        info->prediction = v_prediction ? KILN_PREDICTION_V
                           : says == FILE_EDM_SCHEDULER ? KILN_PREDICTION_EDM
                                                        : KILN_PREDICTION_EPS;
        info->prediction_reason = "scheduler_config.json";
        return;
    case FILE_SAYS_NOTHING: break;
    }
    if (strcmp(unet->family, "sd2") == 0 && unet->in_channels == 4) {
        const unet_layer *last = NULL;
        for (int i = 0; i < unet->nlayers; i++)
            if (unet->layers[i].kind == UNET_TRANSFORMER) last = &unet->layers[i];
        char name[256];
        snprintf(name, sizeof name, KILN_UNET_ROOT ".%s.transformer_blocks.0.norm1.bias", last->prefix);
        const kiln_st_tensor *bias = kiln_checkpoint_find(ck, name);
        if (bias && stored_std(bias) > 0.09) info->prediction = KILN_PREDICTION_V;
        info->prediction_reason = "norm bias spread";
    }
}

/* A one-number flag tensor's value, which must lie in (lo, hi]. */
static kiln_status flag_number(const kiln_checkpoint *ck, const char *name, double lo, double hi, double *v)
{
    const kiln_st_tensor *t = kiln_checkpoint_find(ck, name);
    if (!t) return KILN_OK;
    if (kiln_st_numel(t) != 1)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor %s holds %lld numbers, not one", kiln_checkpoint_path(ck), name,
                         (long long)kiln_st_numel(t));
    const double x = kiln_load_f32(t->data, t->dtype, 0);
    if (!(x > lo && x <= hi))
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor %s is %g, not in (%g, %g]", kiln_checkpoint_path(ck), name, x,
                         lo, hi);
    *v = x;
    return KILN_OK;
}

/* The sampling the file asks for beside its prediction (ComfyUI's
 * sampling_settings): Playground v2.5's continuous sigmas 0.002 to 80 with
 * data std 0.5; CosXL's to its edm_vpred.sigma_max (from its
 * edm_vpred.sigma_min, or 0.002) with data std 1; a folder's EDM scheduler's;
 * zero terminal SNR where a v_pred file has a `ztsnr` tensor. */
static kiln_status detect_sampling(kiln_model *m)
{
    const kiln_checkpoint *ck = m->checkpoint;
    kiln_edm_sampling *edm = &m->edm;
    if (kiln_model_is_dit(m)) return KILN_OK;
    switch (sampling_of_file(ck)) {
    case FILE_PLAYGROUND: *edm = (kiln_edm_sampling){true, 0.002, 80.0, 0.5}; break;
    case FILE_COSXL:
        *edm = (kiln_edm_sampling){true, 0.002, 0.0, 1.0};
        TRY(flag_number(ck, "edm_vpred.sigma_max", 0.0, 1000.0, &edm->sigma_max));
        TRY(flag_number(ck, "edm_vpred.sigma_min", 0.0, edm->sigma_max, &edm->sigma_min));
        if (edm->sigma_min >= edm->sigma_max)
            return kiln_fail(KILN_ERR_MODEL, "%s: edm_vpred.sigma_max %g is not above sigma_min %g",
                             kiln_checkpoint_path(ck), edm->sigma_max, edm->sigma_min);
        break;
    case FILE_V_PRED: m->zsnr = kiln_checkpoint_find(ck, "ztsnr") != NULL; break;
    case FILE_EDM_SCHEDULER:
        edm->on = kiln_checkpoint_edm_sigmas(ck, &edm->sigma_min, &edm->sigma_max, &edm->sigma_data);
        break;
    case FILE_SCHEDULER:
    case FILE_SAYS_NOTHING: break;
    }
    return KILN_OK;
}

/* Parameters under a canonical prefix. */
static int64_t count_params(const kiln_checkpoint *ck, const char *prefix)
{
    int64_t total = 0;
    size_t len = strlen(prefix);
    for (size_t i = 0; i < kiln_checkpoint_count(ck); i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        if (strncmp(name, prefix, len) != 0) continue;
        total += kiln_st_numel(t);
    }
    return total;
}

/* The storage dtype most of the parameters under a prefix have: a GGUF's
 * quantized type rather than that of its f16 input layer. */
static kiln_dtype main_dtype(const kiln_checkpoint *ck, const char *prefix)
{
    int64_t per_dtype[KILN_DTYPE_COUNT] = {0};
    size_t len = strlen(prefix);
    for (size_t i = 0; i < kiln_checkpoint_count(ck); i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        if (strncmp(name, prefix, len) == 0 && (unsigned)t->dtype < KILN_DTYPE_COUNT)
            per_dtype[t->dtype] += kiln_st_numel(t);
    }
    int most = KILN_F32;
    for (int d = 0; d < KILN_DTYPE_COUNT; d++)
        if (per_dtype[d] > per_dtype[most]) most = d;
    return (kiln_dtype)most;
}

/* What a file that is not a whole SD model looks like, for a clear refusal. */
static kiln_status refuse_non_model(const kiln_checkpoint *ck)
{
    const char *path = kiln_checkpoint_path(ck);
    if (kiln_checkpoint_has_prefix(ck, "lora_unet_") || kiln_checkpoint_has_prefix(ck, "lora_te_"))
        return kiln_fail(KILN_ERR_MODEL, "%s is a LoRA, not a whole model", path);
    if (kiln_checkpoint_has_prefix(ck, "control_model.") || kiln_checkpoint_has_prefix(ck, "input_hint_block.") ||
        kiln_checkpoint_has_prefix(ck, "controlnet_cond_embedding."))
        return kiln_fail(KILN_ERR_MODEL, "%s is a ControlNet, not a whole model (give it to --controlnet)", path);
    if (kiln_checkpoint_has_prefix(ck, "encoder.block.") || kiln_checkpoint_has_prefix(ck, "text_model."))
        return kiln_fail(KILN_ERR_MODEL, "%s is a %s text encoder, not a whole model (give it beside one: "
                         "--text-encoder)", path, kiln_checkpoint_has_prefix(ck, "text_model.") ? "CLIP" : "T5");
    if (kiln_checkpoint_has_prefix(ck, "decoder.") || kiln_checkpoint_has_prefix(ck, "encoder."))
        return kiln_fail(KILN_ERR_MODEL, "%s is a VAE, not a whole model (give it beside one: --vae)", path);
    const char *arch = kiln_checkpoint_metadata(ck, "general.architecture"); /* a GGUF file's */
    if (arch && (strcmp(arch, "flux") == 0 || strcmp(arch, "sd3") == 0))
        return kiln_fail(KILN_ERR_MODEL, "%s: a GGUF file of architecture '%s' without that transformer's tensors",
                         path, arch);
    if (arch && strcmp(arch, "sd1") != 0 && strcmp(arch, "sdxl") != 0)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a GGUF file of architecture '%s', which kiln does not run (it "
                         "runs ComfyUI-GGUF's flux, sd3, sd1 and sdxl files, with llama.cpp's T5 encoders beside "
                         "them)", path, arch);
    if (!kiln_checkpoint_has_prefix(ck, "model.diffusion_model."))
        return kiln_fail(KILN_ERR_MODEL, "%s: no tensor 'model.diffusion_model.*': not a Stable Diffusion checkpoint",
                         path);
    return KILN_OK;
}

/* PixArt-Sigma or -alpha: as a folder's pipeline says; else by an original
 * file's caption length (Sigma's 300 tokens, alpha's 120), else as ComfyUI
 * tells them apart, alpha by its size embedders. */
static const char *pixart_name(const kiln_checkpoint *ck)
{
    const char *pipeline = kiln_checkpoint_pipeline(ck);
    if (pipeline) return strcmp(pipeline, "PixArtSigmaPipeline") == 0 ? "pixart-sigma" : "pixart-alpha";
    const kiln_st_tensor *y = kiln_checkpoint_find(ck, KILN_PIXART_ROOT ".caption_projection.y_embedding");
    if (y && y->ndim == 2) return y->shape[0] >= 300 ? "pixart-sigma" : "pixart-alpha";
    const bool sizes =
        kiln_checkpoint_find(ck, KILN_PIXART_ROOT ".adaln_single.emb.aspect_ratio_embedder.linear_1.weight") != NULL;
    return kiln_checkpoint_pixart_original(ck) && !sizes ? "pixart-sigma" : "pixart-alpha";
}

/* A PixArt model: its DiT, its T5 and SD's or SDXL's VAE. */
static kiln_status inspect_dit(const kiln_checkpoint *ck, kiln_model_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    if (!kiln_t5_present(ck, KILN_T5_ROOT))
        return kiln_fail(KILN_ERR_MODEL, "%s: PixArt transformer without its T5 text encoder (a folder's "
                         "text_encoder/, or a T5 file given beside it: gen --text-encoder)", path);
    const vae_config *vae = kiln_vae_detect(ck);
    if (!vae) return kiln_fail(KILN_ERR_MODEL, "%s: VAE missing or of an unknown shape (gen --vae)", path);
    info->family = "pixart";
    info->variant = KILN_VARIANT_TXT2IMG;
    info->prediction = KILN_PREDICTION_EPS;
    info->prediction_reason = "PixArt predicts the noise";
    info->unet_name = pixart_name(ck);
    info->unet_dtype = main_dtype(ck, KILN_PIXART_ROOT ".");
    info->unet_params = count_params(ck, KILN_PIXART_ROOT ".");
    info->t5_name = "t5-v1.1";
    info->t5_params = count_params(ck, KILN_T5_ROOT ".");
    info->vae_name = vae->name;
    info->vae_params = count_params(ck, "first_stage_model.");
    return KILN_OK;
}

/* A Flux model: its transformer, CLIP-L (not Chroma), T5 and 16-channel
 * VAE. */
static kiln_status inspect_flux(const kiln_checkpoint *ck, kiln_model_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    const bool chroma = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".distilled_guidance_layer.in_proj.weight") != NULL;
    const char *what = chroma ? "Chroma" : "Flux";
    if (!kiln_t5_present(ck, KILN_T5_ROOT))
        return kiln_fail(KILN_ERR_MODEL, "%s: %s transformer without its T5 text encoder (a folder's %s/, or a T5 "
                         "file given beside it: gen --text-encoder)", path, what,
                         chroma ? "text_encoder" : "text_encoder_2");
    const clip_config *clip = chroma ? NULL : kiln_clip_detect(ck, &kiln_clip_flux);
    if (!chroma && !clip)
        return kiln_fail(KILN_ERR_MODEL, "%s: Flux transformer without its CLIP-L (a folder's text_encoder/, or a "
                         "CLIP-L file given beside it: gen --text-encoder)", path);
    const vae_config *vae = kiln_vae_detect(ck);
    if (!vae) return kiln_fail(KILN_ERR_MODEL, "%s: VAE missing or of an unknown shape (gen --vae)", path);
    info->family = chroma ? "chroma" : "flux";
    /* FLUX.1 Canny and Depth read a picture's latent beside the latent (twice the channels in as out), Fill also
       a mask */
    const kiln_st_tensor *in = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".x_embedder.weight");
    const kiln_st_tensor *out = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".proj_out.weight");
    const int64_t extra = in && out && in->ndim == 2 && out->ndim == 2 ? in->shape[1] - out->shape[0] : 0;
    const bool picture = out && extra == out->shape[0];
    const bool fill = out && extra == out->shape[0] + KILN_FLUX_FILL_MASK_CHANNELS;
    info->variant = fill ? KILN_VARIANT_INPAINT : picture ? KILN_VARIANT_INSTRUCT_PIX2PIX : KILN_VARIANT_TXT2IMG;
    info->prediction = KILN_PREDICTION_FLOW;
    info->prediction_reason = chroma ? "Chroma is a flow-matching model" : "Flux is a flow-matching model";
    bool dev = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".time_text_embed.guidance_embedder.linear_1.weight") != NULL;
    info->unet_name = chroma ? "chroma" : fill ? "flux-dev-fill" : picture ? "flux-dev-canny-depth" : dev ? "flux-dev"
                                                                                          : "flux-schnell";
    if (chroma && info->variant != KILN_VARIANT_TXT2IMG)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a Chroma transformer reading %lld channels a token: kiln knows "
                         "the txt2img one (64)", path, (long long)(in ? in->shape[1] : 0));
    info->unet_dtype = main_dtype(ck, KILN_FLUX_ROOT ".");
    info->unet_params = count_params(ck, KILN_FLUX_ROOT ".");
    if (!chroma) {
        info->nclips = 1;
        info->clip_names[0] = clip->name;
        info->clip_params[0] = count_params(ck, KILN_CLIP_L_ROOT ".");
    }
    info->t5_name = "t5-v1.1";
    info->t5_params = count_params(ck, KILN_T5_ROOT ".");
    info->vae_name = vae->name;
    info->vae_params = count_params(ck, "first_stage_model.");
    return KILN_OK;
}

/* An SD3 model: its transformer, CLIP-L and bigG, T5 where it has one (SD3
 * samples without: its CLIPs' tokens alone), the 16-channel VAE. */
static kiln_status inspect_sd3(const kiln_checkpoint *ck, kiln_model_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    const kiln_family *family = family_named("sd3");
    static const char *const which[2] = {"CLIP-L", "CLIP-G (bigG)"};
    for (int i = 0; i < family->nclips; i++) {
        const clip_config *clip = kiln_clip_detect(ck, family->clips[i]);
        if (!clip)
            return kiln_fail(KILN_ERR_MODEL, "%s: SD3 transformer without its %s (a folder's text_encoder%s/, or a "
                             "file given beside it: gen --text-encoder)", path, which[i], i ? "_2" : "");
        info->clip_names[i] = clip->name;
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%s.", i ? KILN_CLIP_G_ROOT : KILN_CLIP_L_ROOT);
        info->clip_params[i] = count_params(ck, prefix);
    }
    info->nclips = family->nclips;
    const vae_config *vae = kiln_vae_detect(ck);
    if (!vae) return kiln_fail(KILN_ERR_MODEL, "%s: VAE missing or of an unknown shape (gen --vae)", path);
    info->family = family->name;
    info->variant = KILN_VARIANT_TXT2IMG;
    info->prediction = KILN_PREDICTION_FLOW;
    info->prediction_reason = "SD3 is a flow-matching model";
    const bool dual = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".transformer_blocks.0.attn2.to_q.weight") != NULL;
    const bool qk_norm = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".transformer_blocks.0.attn.norm_q.weight") != NULL;
    info->unet_name = dual ? "sd3.5-medium" : qk_norm ? "sd3.5-large" : "sd3-medium";
    info->unet_dtype = main_dtype(ck, KILN_FLUX_ROOT ".");
    info->unet_params = count_params(ck, KILN_FLUX_ROOT ".");
    if (kiln_t5_present(ck, KILN_T5_ROOT)) {
        info->t5_name = "t5-v1.1";
        info->t5_params = count_params(ck, KILN_T5_ROOT ".");
    }
    info->vae_name = vae->name;
    info->vae_params = count_params(ck, "first_stage_model.");
    return KILN_OK;
}

kiln_status kiln_model_inspect(const kiln_checkpoint *ck, kiln_model_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    *info = (kiln_model_info){0};
    if (kiln_pixart_present(ck, KILN_PIXART_ROOT)) return inspect_dit(ck, info);
    if (kiln_flux_present(ck, KILN_FLUX_ROOT)) return inspect_flux(ck, info);
    if (kiln_sd3_present(ck, KILN_FLUX_ROOT)) return inspect_sd3(ck, info);
    TRY(refuse_non_model(ck));
    const kiln_st_tensor *conv_in = kiln_checkpoint_find(ck, "model.diffusion_model.input_blocks.0.0.weight");
    if (!conv_in || conv_in->ndim != 4)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor 'model.diffusion_model.input_blocks.0.0.weight' is missing", path);
    switch (conv_in->shape[1]) {
    case 4: info->variant = KILN_VARIANT_TXT2IMG; break;
    case 9: info->variant = KILN_VARIANT_INPAINT; break;
    case 8: info->variant = KILN_VARIANT_INSTRUCT_PIX2PIX; break;
    default:
        return kiln_fail(KILN_ERR_MODEL, "%s: UNet with %lld input channels is no SD 1.x/2.x/XL variant kiln knows",
                         path, (long long)conv_in->shape[1]);
    }
    info->unet_dtype = main_dtype(ck, "model.diffusion_model.");
    const unet_config *unet = kiln_unet_detect(ck);
    if (!unet) return kiln_fail(KILN_ERR_MODEL, "%s: UNet shapes match no known SD 1.x/2.x/XL layout", path);
    const kiln_family *family = family_named(unet->family);
    info->family = family->name;
    info->nclips = family->nclips;
    for (int i = 0; i < family->nclips; i++) {
        const clip_reading *r = family->clips[i];
        const clip_config *clip = kiln_clip_detect(ck, r);
        if (!clip)
            return kiln_fail(KILN_ERR_MODEL, "%s: %s text encoder '%s.*' missing or of an unknown shape (for a "
                             "UNet alone, a CLIP file given beside it: gen --text-encoder)", path,
                             r->gelu ? "OpenCLIP" : "CLIP", r->root);
        info->clip_names[i] = clip->name;
        static const char *const parts[] = {"encoder.", "embeddings.token_embedding.", "embeddings.position_embedding.",
                                            "final_layer_norm."};
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            char prefix[256];
            snprintf(prefix, sizeof prefix, "%s.%s", r->root, parts[p]);
            info->clip_params[i] += count_params(ck, prefix);
        }
    }
    const vae_config *vae = kiln_vae_detect(ck);
    if (!vae)
        return kiln_fail(KILN_ERR_MODEL, "%s: VAE missing or of an unknown shape (for a UNet alone, a VAE file "
                         "given beside it: gen --vae)", path);
    detect_prediction(ck, unet, info);
    info->unet_name = unet->name;
    info->vae_name = vae->name;
    info->unet_params = count_params(ck, "model.diffusion_model.");
    info->vae_params = count_params(ck, "first_stage_model.");
    return KILN_OK;
}

static void family_lora_towers(const kiln_family *f, kiln_lora_towers *towers)
{
    *towers = (kiln_lora_towers){0};
    for (int i = 0; i < f->nclips; i++) /* the pooled, projected tower is SDXL's second (bigG) */
        *(f->clips[i]->projection ? &towers->second : &towers->first) = f->clips[i]->root;
}

kiln_status kiln_model_lora_towers(const kiln_checkpoint *ck, kiln_lora_towers *towers)
{
    kiln_model_info info;
    TRY(kiln_model_inspect(ck, &info));
    family_lora_towers(family_named(info.family), towers);
    return KILN_OK;
}

void kiln_model_free(kiln_model *m)
{
    if (!m) return;
    kiln_unet_release(&m->unet);
    kiln_spm_free(m->spm);
    kiln_weights_free(m->weights);
    kiln_checkpoint_close(m->checkpoint);
    free(m->embeddings);
    free(m);
}

/* The diffusion model's linear weights in the dtype the parts' weight_dtype
 * asks for, while `on`; the text encoders and VAE as stored. */
static void convert_linears(kiln_model *m, bool on)
{
    kiln_dtype dtype;
    if (kiln_checkpoint_linear_dtype(m->checkpoint, &dtype))
        kiln_weights_convert_linears(m->weights, on ? dtype : KILN_DTYPE_COUNT);
}

/* An SD3 model's transformer, and its T5 and tokenizer where it has them. */
static kiln_status bind_sd3(kiln_model *m)
{
    const char *path = kiln_checkpoint_path(m->checkpoint);
    convert_linears(m, true);
    kiln_status st = kiln_sd3_bind(m->weights, KILN_FLUX_ROOT, &m->flux);
    convert_linears(m, false);
    TRY(st);
    m->flow_shift = KILN_SD3_SHIFT;
    const int clip_width = m->clips[0].config->hidden + m->clips[1].config->hidden;
    if (m->clips[0].pooled_dim + m->clips[1].pooled_dim != m->flux.pooled_dim)
        return kiln_fail(KILN_ERR_MODEL, "%s: the CLIPs' pooled outputs are %d wide together, the SD3 transformer "
                         "reads %d", path, m->clips[0].pooled_dim + m->clips[1].pooled_dim, m->flux.pooled_dim);
    if (clip_width > m->flux.context_dim)
        return kiln_fail(KILN_ERR_MODEL, "%s: the CLIPs' tokens are %d wide together, past the SD3 transformer's %d",
                         path, clip_width, m->flux.context_dim);
    if (!kiln_t5_present(m->checkpoint, KILN_T5_ROOT)) return KILN_OK;
    TRY(kiln_t5_bind(m->weights, KILN_T5_ROOT, &m->t5));
    return KILN_OK;
}

/* A DiT's transformer and T5, and the T5 tokenizer the checkpoint names
 * (its folder's: PixArt's tokenizer/spiece.model, Flux's tokenizer_2/,
 * SD3's tokenizer_3/). */
static kiln_status bind_dit(kiln_model *m)
{
    const char *path = kiln_checkpoint_path(m->checkpoint);
    const bool flux = m->family->arch == KILN_ARCH_FLUX, sd3 = m->family->arch == KILN_ARCH_SD3;
    int reads;
    if (sd3) {
        TRY(bind_sd3(m));
        if (!m->t5.hidden) return KILN_OK;
        reads = m->flux.context_dim;
    } else {
        TRY(kiln_t5_bind(m->weights, KILN_T5_ROOT, &m->t5));
        convert_linears(m, true);
        kiln_status st = flux ? kiln_flux_bind(m->weights, KILN_FLUX_ROOT, kiln_checkpoint_rope_axes(m->checkpoint),
                                               &m->flux)
                              : kiln_pixart_bind(m->weights, KILN_PIXART_ROOT, kiln_checkpoint_sample_size(m->checkpoint),
                                                 &m->pixart);
        convert_linears(m, false);
        TRY(st);
        reads = flux ? m->flux.context_dim : m->pixart.caption_dim;
    }
    if (flux) {
        m->flow_shift = kiln_flux_default_shift(&m->flux);
        if (!m->flux.chroma && m->clips[0].pooled_dim != m->flux.pooled_dim)
            return kiln_fail(KILN_ERR_MODEL, "%s: CLIP-L's pooled output is %d wide, the Flux transformer reads %d",
                             path, m->clips[0].pooled_dim, m->flux.pooled_dim);
    }
    if (m->t5.hidden != reads)
        return kiln_fail(KILN_ERR_MODEL, "%s: the T5 encoder is %d wide, the transformer reads %d", path, m->t5.hidden,
                         reads);
    const char *spiece = kiln_checkpoint_tokenizer(m->checkpoint);
    if (!spiece)
        return kiln_fail(KILN_ERR_MODEL, "%s: no T5 tokenizer: single files carry none; give T5's spiece.model or "
                         "tokenizer.json (gen --tokenizer; FLUX.1's tokenizer_2/, SD3's tokenizer_3/, PixArt's "
                         "tokenizer/, ComfyUI's comfy/text_encoders/t5_tokenizer/)", path);
    if (access(spiece, R_OK) != 0)
        return kiln_fail(KILN_ERR_MODEL, "%s: no T5 tokenizer at %s", path, spiece);
    TRY(kiln_spm_open(spiece, &m->spm));
    /* the pipelines' max_sequence_length (ComfyUI cuts Flux's and SD3's nowhere: 512 here, FLUX.1-dev's) */
    m->t5_max_tokens = flux || sd3 ? 512 : strcmp(m->info.unet_name, "pixart-sigma") == 0 ? 300 : 120;
    if (kiln_spm_vocab_size(m->spm) > m->t5.vocab)
        return kiln_fail(KILN_ERR_MODEL, "%s: the tokenizer has %d pieces, the T5 encoder embeds %d", spiece,
                         kiln_spm_vocab_size(m->spm), m->t5.vocab);
    return KILN_OK;
}

/* The VAE, with the latent format its folder's config gives a DiT (scale,
 * shift) or any model (per-channel numbers and their scale), else its
 * family's (Playground v2.5's for a file that says it is one). */
static kiln_status bind_vae(kiln_model *m)
{
    const kiln_checkpoint *ck = m->checkpoint;
    double scale = m->family->latent_scale, shift = 0;
    if (m->family->arch == KILN_ARCH_FLUX) shift = 0.1159; /* FLUX.1's, where the folder does not say */
    if (m->family->arch == KILN_ARCH_SD3) shift = 0.0609; /* SD3's */
    if (m->family->arch == KILN_ARCH_PIXART && strcmp(m->info.unet_name, "pixart-sigma") == 0)
        scale = 0.13025; /* SDXL's VAE, where the folder does not say */
    const float *mean, *std;
    const int n = kiln_checkpoint_vae_latents(ck, &mean, &std);
    /* a UNet's folder's scale counts only with its per-channel numbers: SD's folders say their family's, and
       --config (a DiT's folder) may stand beside a UNet file */
    if ((kiln_model_is_dit(m) || n) && kiln_checkpoint_vae_scaling(ck) > 0) {
        scale = kiln_checkpoint_vae_scaling(ck);
        shift = kiln_checkpoint_vae_shift(ck);
    }
    TRY(kiln_vae_bind_shifted(m->weights, kiln_vae_detect(ck), (float)scale, (float)shift, &m->vae));
    const int L = m->vae.config->latent_channels;
    if (n && n != L)
        return kiln_fail(KILN_ERR_MODEL, "%s: vae/config.json's latents_mean and latents_std have %d numbers, the "
                         "VAE %d latent channels", kiln_checkpoint_path(ck), n, L);
    if (n) m->vae.latents.mean = mean, m->vae.latents.std = std;
    else if (playground_file(ck) && L == 4 && !kiln_model_is_dit(m)) m->vae.latents = kiln_playground_latents;
    return KILN_OK;
}

int kiln_model_latent_channels(const kiln_model *m)
{
    switch (m->family->arch) {
    case KILN_ARCH_PIXART: return m->pixart.in_channels;
    case KILN_ARCH_FLUX: /* packed 2x2 into the transformer's tokens */
    case KILN_ARCH_SD3: return m->vae.config->latent_channels;
    case KILN_ARCH_UNET: break;
    }
    return m->unet.config->out_channels;
}

int kiln_model_context_dim(const kiln_model *m)
{
    if (m->family->arch == KILN_ARCH_SD3) return m->flux.context_dim;
    return kiln_model_is_dit(m) ? m->t5.hidden : m->unet.config->context_dim;
}

kiln_status kiln_model_sampling_of(const kiln_model *m, kiln_model_sampling *ms)
{
    const kiln_family *f = m->family;
    if (f->arch == KILN_ARCH_FLUX) return kiln_model_sampling_init_flux(ms, m->flow_shift);
    if (f->arch == KILN_ARCH_SD3) return kiln_model_sampling_init_sd3(ms, m->flow_shift);
    if (m->edm.on) return kiln_model_sampling_init_edm(ms, m->edm.sigma_min, m->edm.sigma_max, m->edm.sigma_data);
    TRY(kiln_model_sampling_init_betas(ms, f->linear_start, f->linear_end, f->plain_betas, m->zsnr));
    return m->info.prediction == KILN_PREDICTION_LCM ? kiln_model_sampling_distill(ms, KILN_LCM_TIMESTEPS) : KILN_OK;
}

kiln_status kiln_model_load_with_loras(kiln_checkpoint *ck, const kiln_lora *loras, int nloras, kiln_lora_stats *stats,
                                       kiln_backend *be, kiln_model **out)
{
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_checkpoint_close(ck);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "model: out of host memory");
    }
    m->checkpoint = ck;
    kiln_status st = kiln_model_inspect(m->checkpoint, &m->info);
    if (st == KILN_OK) m->family = family_named(m->info.family);
    kiln_lora_towers towers = {0};
    if (st == KILN_OK) family_lora_towers(m->family, &towers);
    for (int i = 0; i < nloras && st == KILN_OK; i++)
        st = kiln_lora_merge(m->checkpoint, &towers, &loras[i], &stats[i]);
    if (st == KILN_OK) st = kiln_weights_create(be, m->checkpoint, &m->weights);
    for (int i = 0; st == KILN_OK && i < m->info.nclips; i++) {
        const clip_reading *r = m->family->clips[i];
        st = kiln_clip_bind(m->weights, kiln_clip_detect(m->checkpoint, r), r, &m->clips[i]);
    }
    if (st == KILN_OK && kiln_model_is_dit(m)) st = bind_dit(m);
    else if (st == KILN_OK) {
        convert_linears(m, true);
        st = kiln_unet_bind(m->weights, kiln_unet_detect(m->checkpoint), &m->unet);
        convert_linears(m, false);
    }
    if (st == KILN_OK) st = bind_vae(m);
    if (st == KILN_OK) st = detect_sampling(m);
    if (st != KILN_OK) {
        kiln_model_free(m);
        return st;
    }
    m->loaded.prediction = m->info.prediction, m->loaded.zsnr = m->zsnr, m->loaded.edm = m->edm;
    m->loaded.latents = m->vae.latents;
    *out = m;
    return KILN_OK;
}

kiln_status kiln_model_load_checkpoint(kiln_checkpoint *ck, kiln_backend *be, kiln_model **out)
{
    return kiln_model_load_with_loras(ck, NULL, 0, NULL, be, out);
}

kiln_status kiln_model_load(const char *path, kiln_backend *be, kiln_model **out)
{
    kiln_checkpoint *ck;
    TRY(kiln_checkpoint_open(path, &ck));
    return kiln_model_load_checkpoint(ck, be, out);
}

void kiln_model_native_size(const kiln_model *m, int *width, int *height)
{
    if (!width || !height) return;
    *width = *height = m ? m->family->native_size : 0;
    if (!m) return;
    if (m->family->arch == KILN_ARCH_PIXART) /* the latent side it was trained at, in pixels: 512 and 1024 alike */
        *width = *height = kiln_vae_factor(m->vae.config) * m->pixart.sample_size;
    const char *native = kiln_checkpoint_metadata(m->checkpoint, "modelspec.resolution");
    int w, h;
    if (native && sscanf(native, "%dx%d", &w, &h) == 2 && w >= 8 && h >= 8 && w <= 4096 && h <= 4096)
        *width = w, *height = h;
}
