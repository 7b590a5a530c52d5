/* The embedding API of include/kiln.h: ComfyUI's nodes over the pipeline's
 * stages. Each call checks what a frontend hands it before anything inside
 * the library sees it, so that a wrong size or a NULL is an error naming the
 * argument rather than a crash further in. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln.h"

#include "../models/clip_vision.h"
#include "../models/flux_controlnet.h"
#include "../models/redux.h"
#include "../models/esrgan.h"
#include "../models/hypernetwork.h"
#include "../models/ip_adapter.h"
#include "backend.h"
#include "image.h"
#include "inpaint.h"
#include "latent.h"
#include "model.h"
#include "pipeline.h"
#include "resample.h"
#include "status.h"
#include "tokenizer.h"


const char *kiln_version(void)
{
    return KILN_VERSION;
}

kiln_status kiln_backend_open(const char *name, const kiln_backend_config *config, kiln_backend **out)
{
    if (!name || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_backend_open: no backend name or no place for it");
    kiln_backend_options opt = {.device = -1, .compute_auto = true};
    if (config) {
        if (config->threads < 0)
            return kiln_fail(KILN_ERR_INVALID_ARG, "backend threads %d: must be 0 (all cores) or more",
                             config->threads);
        if (config->device < -1)
            return kiln_fail(KILN_ERR_INVALID_ARG, "backend device %d: must be -1 (pick) or an index", config->device);
        opt.device = config->device;
        opt.threads = config->threads;
        if (config->compute) {
            if (!kiln_compute_from_name(config->compute, &opt.compute))
                return kiln_fail(KILN_ERR_INVALID_ARG, "backend compute '%s': f32, f16 or bf16", config->compute);
            opt.compute_auto = false;
        }
    }
    return kiln_backend_create(name, &opt, out);
}

const char *kiln_backend_device_name(const kiln_backend *be)
{
    return be ? be->device_name : "";
}

kiln_status kiln_checkpoint_load(kiln_backend *be, const char *path, const kiln_lora *loras, int nloras,
                                 kiln_model **out)
{
    return kiln_checkpoint_load_parts(be, path, NULL, loras, nloras, out);
}

kiln_status kiln_checkpoint_load_parts(kiln_backend *be, const char *path, const kiln_model_parts *parts,
                                       const kiln_lora *loras, int nloras, kiln_model **out)
{
    if (!be || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_checkpoint_load: no backend or no place for the model");
    if (nloras < 0 || (nloras > 0 && !loras))
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_checkpoint_load: %d LoRAs at %p", nloras, (const void *)loras);
    for (int i = 0; i < nloras; i++)
        if (!loras[i].path) return kiln_fail(KILN_ERR_INVALID_ARG, "LoRA %d: no path", i);
    kiln_lora_stats *stats = calloc(nloras > 0 ? (size_t)nloras : 1, sizeof *stats);
    if (!stats) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_checkpoint_load: out of host memory");
    kiln_checkpoint *ck;
    kiln_status st = path ? kiln_checkpoint_open(path, &ck) : kiln_default_checkpoint_open(&ck);
    if (st == KILN_OK && (st = kiln_checkpoint_add_parts(ck, parts)) != KILN_OK) kiln_checkpoint_close(ck);
    if (st == KILN_OK) st = kiln_model_load_with_loras(ck, loras, nloras, stats, be, out);
    free(stats);
    return st;
}

kiln_status kiln_model_set_embeddings(kiln_model *m, const char *dir)
{
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_set_embeddings: no model");
    struct stat s;
    const int e = dir && stat(dir, &s) != 0 ? errno : 0;
    if (dir && (e || !S_ISDIR(s.st_mode)))
        return kiln_fail(KILN_ERR_IO, "embeddings folder %s: %s", dir, e ? strerror(e) : "not a folder");
    char *copy = dir ? strdup(dir) : NULL;
    if (dir && !copy) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_model_set_embeddings: out of host memory");
    free(m->embeddings);
    m->embeddings = copy;
    return KILN_OK;
}

kiln_status kiln_model_set_t5_tokenizer_options(kiln_model *m, int min_padding, int min_length)
{
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_set_t5_tokenizer_options: no model");
    const bool reset = min_padding == -1 && min_length == -1;
    /* the node's bounds */
    if (!reset && (min_padding < 0 || min_padding > 10000 || min_length < 0 || min_length > 10000))
        return kiln_fail(KILN_ERR_INVALID_ARG, "T5TokenizerOptions: min_padding %d and min_length %d: each 0 to "
                         "10000 (both -1: the tokenizer's own)", min_padding, min_length);
    m->t5_options = !reset;
    m->t5_min_padding = reset ? 0 : min_padding;
    m->t5_min_length = reset ? 0 : min_length;
    return KILN_OK;
}

const char *kiln_model_family(const kiln_model *m)
{
    return m ? m->info.family : "";
}

/* The OpenCLIP root (kiln_open_clip_roots) where an SD family's single
 * files keep an OpenCLIP tower, or -1: none (SD 1.x). */
static int open_clip_root(const kiln_model *m)
{
    static const struct {
        const char *family;
        int open_clip;
    } layouts[] = {{"sd2", 0}, {"sdxl", 1}, {"sdxl-refiner", 2}};
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (strcmp(m->info.family, layouts[i].family) == 0) return layouts[i].open_clip;
    return -1;
}

kiln_status kiln_model_save_checkpoint(const kiln_model *m, const char *path)
{
    if (!m || !path) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_save_checkpoint: no model or path");
    if (kiln_model_is_dit(m)) /* ComfyUI's VAE prefixes: SD3's the SD one, Flux's, Chroma's and PixArt's vae. */
        return kiln_checkpoint_save_dit(m->checkpoint, m->family->arch == KILN_ARCH_SD3 ? "first_stage_model." : "vae.",
                                        path);
    return kiln_checkpoint_save(m->checkpoint, open_clip_root(m), path);
}

kiln_status kiln_model_save_vae(const kiln_model *m, const char *path)
{
    if (!m || !path) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_save_vae: no model or path");
    return kiln_checkpoint_save_part(m->checkpoint, -1, "first_stage_model.", true, path);
}

kiln_status kiln_model_save_diffusion_model(const kiln_model *m, const char *path)
{
    if (!m || !path) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_save_diffusion_model: no model or path");
    if (kiln_model_is_dit(m)) return kiln_checkpoint_save_dit(m->checkpoint, NULL, path);
    return kiln_checkpoint_save_part(m->checkpoint, -1, KILN_UNET_ROOT ".", false, path);
}

const char *kiln_model_variant(const kiln_model *m)
{
    return m ? kiln_variant_name(m->info.variant) : "";
}

const char *kiln_model_prediction(const kiln_model *m)
{
    return m ? kiln_prediction_name(m->info.prediction) : "";
}

kiln_status kiln_model_set_prediction(kiln_model *m, const char *sampling)
{
    if (!m || !sampling) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_set_prediction: no model or sampling");
    /* a flow-matching model (Flux, SD3) samples only as one, and only it does */
    const bool flow = kiln_model_is_mmdit(m);
    if (flow != (strcmp(sampling, "flow") == 0))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "model sampling '%s' on a %s model", sampling, m->info.family);
    if (flow) return KILN_OK;
    m->edm.on = false;
    m->vae.latents = m->loaded.latents;
    if (strcmp(sampling, "eps") == 0) m->info.prediction = KILN_PREDICTION_EPS;
    else if (strcmp(sampling, "v_prediction") == 0 || strcmp(sampling, "v") == 0)
        m->info.prediction = KILN_PREDICTION_V;
    else if (strcmp(sampling, "lcm") == 0) m->info.prediction = KILN_PREDICTION_LCM;
    else if (strcmp(sampling, "x0") == 0) m->info.prediction = KILN_PREDICTION_X0;
    else if (strcmp(sampling, "img_to_img") == 0) m->info.prediction = KILN_PREDICTION_IMG_TO_IMG;
    else return kiln_fail(KILN_ERR_UNSUPPORTED, "model sampling '%s': kiln samples eps, v_prediction, lcm, x0 and "
                          "img_to_img", sampling);
    return KILN_OK;
}

kiln_status kiln_model_set_continuous_edm(kiln_model *m, const char *sampling, double sigma_max, double sigma_min)
{
    if (!m || !sampling) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_set_continuous_edm: no model or sampling");
    if (kiln_model_is_mmdit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ModelSamplingContinuousEDM on a %s model: it samples by flow",
                         m->info.family);
    kiln_prediction prediction;
    double sigma_data = 1.0;
    const bool playground = strcmp(sampling, "edm_playground_v2.5") == 0;
    if (strcmp(sampling, "eps") == 0) prediction = KILN_PREDICTION_EPS;
    else if (strcmp(sampling, "v_prediction") == 0 || strcmp(sampling, "cosxl") == 0) prediction = KILN_PREDICTION_V;
    else if (strcmp(sampling, "edm") == 0 || playground) prediction = KILN_PREDICTION_EDM, sigma_data = 0.5;
    else
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ModelSamplingContinuousEDM '%s': eps, v_prediction, edm, "
                         "edm_playground_v2.5 or cosxl", sampling);
    if (!(sigma_min > 0.0 && sigma_min < sigma_max && sigma_max <= 1000.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ModelSamplingContinuousEDM: sigma_min %g and sigma_max %g: need 0 < "
                         "sigma_min < sigma_max <= 1000", sigma_min, sigma_max);
    /* Playground v2.5's latent format is SDXL's VAE latent in 4 channels */
    if (playground && m->vae.config->latent_channels != 4)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ModelSamplingContinuousEDM '%s' on a %s model: its latent has %d "
                         "channels, Playground v2.5's 4", sampling, m->info.family, m->vae.config->latent_channels);
    m->info.prediction = prediction;
    m->edm = (kiln_edm_sampling){true, sigma_min, sigma_max, sigma_data};
    m->vae.latents = playground ? kiln_playground_latents : m->loaded.latents;
    return KILN_OK;
}

kiln_status kiln_model_reset_sampling(kiln_model *m)
{
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_reset_sampling: no model");
    m->info.prediction = m->loaded.prediction;
    m->zsnr = m->loaded.zsnr;
    m->edm = m->loaded.edm;
    m->vae.latents = m->loaded.latents;
    return KILN_OK;
}

kiln_status kiln_model_set_zsnr(kiln_model *m, bool zsnr)
{
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_set_zsnr: no model");
    if (zsnr && kiln_model_is_mmdit(m))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "zsnr (zero terminal SNR sigmas) on a %s model: it samples by flow",
                         m->info.family);
    m->zsnr = zsnr;
    return KILN_OK;
}

kiln_status kiln_model_set_flux_shift(kiln_model *m, double shift)
{
    if (!m) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_set_flux_shift: no model");
    if (!kiln_model_is_mmdit(m))
        return shift == 0.0 ? KILN_OK
                            : kiln_fail(KILN_ERR_UNSUPPORTED, "ModelSamplingFlux on a %s model", m->info.family);
    const bool sd3 = m->family->arch == KILN_ARCH_SD3;
    if (sd3 && !(shift == 0.0 || (isfinite(shift) && shift > 0.0 && shift < 100.0)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ModelSamplingSD3 shift %g: above 0 and below 100", shift);
    if (!(shift == 0.0 || (isfinite(shift) && fabs(shift) < 80.0)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ModelSamplingFlux shift %g: a finite number below 80", shift);
    m->flow_shift = shift != 0.0 ? shift : sd3 ? KILN_SD3_SHIFT : kiln_flux_default_shift(&m->flux);
    return KILN_OK;
}

/* One tokenizer serves every model and thread: it is immutable once made,
 * and making it inflates the whole vocabulary (some 50 ms). */
static kiln_tokenizer *shared_tokenizer;
static pthread_once_t shared_tokenizer_once = PTHREAD_ONCE_INIT;

static void make_shared_tokenizer(void)
{
    if (kiln_tokenizer_create(&shared_tokenizer) != KILN_OK) shared_tokenizer = NULL;
}

/* The tokenizer every model shares, made once. */
static kiln_status shared_clip_tokenizer(const kiln_tokenizer **out)
{
    pthread_once(&shared_tokenizer_once, make_shared_tokenizer);
    if (!shared_tokenizer) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "the CLIP tokenizer could not be made");
    *out = shared_tokenizer;
    return KILN_OK;
}

/* The CLIP tokenizer, for a prompt read at clip_skip. */
static kiln_status clip_tokenizer_for(int clip_skip, const kiln_tokenizer **tok)
{
    if (clip_skip < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "clip skip %d: 1 reads the last layer, 2 the one before, 0 the model's",
                         clip_skip);
    return shared_clip_tokenizer(tok);
}

kiln_status kiln_text_encode(kiln_model *m, const char *text, int clip_skip, kiln_conditioning *out)
{
    if (!m || !text || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_text_encode: no model, text or place for it");
    const kiln_tokenizer *tok = NULL;
    TRY(clip_tokenizer_for(clip_skip, &tok));
    return kiln_encode_prompt(m, tok, text, clip_skip, out);
}

kiln_status kiln_text_encode_sdxl(kiln_model *m, const char *text_g, const char *text_l, int clip_skip,
                                  kiln_conditioning *out)
{
    if (!m || !text_g || !text_l || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_text_encode_sdxl: no model, texts or place for them");
    const kiln_tokenizer *tok = NULL;
    TRY(clip_tokenizer_for(clip_skip, &tok));
    return kiln_encode_sdxl_prompt(m, tok, text_g, text_l, clip_skip, out);
}

kiln_status kiln_text_encode_sd3(kiln_model *m, const char *clip_l, const char *clip_g, const char *t5xxl,
                                 kiln_conditioning *out)
{
    if (!m || !clip_l || !clip_g || !t5xxl || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_text_encode_sd3: no model, texts or place for them");
    const kiln_tokenizer *tok = NULL;
    TRY(shared_clip_tokenizer(&tok));
    return kiln_encode_sd3_prompt(m, tok, clip_l, clip_g, t5xxl, 0, out);
}

kiln_status kiln_text_encode_flux(kiln_model *m, const char *clip_l, const char *t5xxl, kiln_conditioning *out)
{
    if (!m || !clip_l || !t5xxl || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_text_encode_flux: no model, texts or place for them");
    const kiln_tokenizer *tok = NULL;
    TRY(shared_clip_tokenizer(&tok));
    return kiln_encode_flux_prompt(m, tok, clip_l, t5xxl, out);
}

static kiln_status check_size(const char *what, int value, int multiple)
{
    if (value <= 0 || value > KILN_IMAGE_MAX_SIDE || value % multiple)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s %d: must be a multiple of %d from %d to %d", what, value, multiple,
                         multiple, KILN_IMAGE_MAX_SIDE);
    return KILN_OK;
}

kiln_status kiln_empty_latent(const kiln_model *m, int width, int height, int batch, kiln_latent *out)
{
    if (!m || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_empty_latent: no model or no place for the latent");
    *out = (kiln_latent){0};
    int f = kiln_vae_factor(m->vae.config);
    TRY(check_size("latent width", width, f));
    TRY(check_size("latent height", height, f));
    TRY(kiln_check_batch("latent batch", batch));
    kiln_latent l = {.batch = batch, .channels = m->vae.config->latent_channels, .height = height / f,
                     .width = width / f};
    if (!(l.data = calloc((size_t)l.batch * l.channels * l.height * l.width, sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "empty latent %dx%d x %d: out of host memory", width, height, batch);
    *out = l;
    return KILN_OK;
}

kiln_status kiln_image_scale(const kiln_image *img, const char *method, int width, int height, bool crop,
                             kiln_image *out)
{
    if (!img || !img->pixels || !method || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_image_scale: no picture, method or place");
    *out = (kiln_image){0};
    if (width < 1 || height < 1 || width > KILN_IMAGE_MAX_SIDE || height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "image scale to %dx%d", width, height);
    int x0 = 0, y0 = 0, cw = img->width, ch = img->height;
    if (crop) TRY(kiln_image_center_box(img->width, img->height, width, height, &x0, &y0, &cw, &ch));
    if (strcmp(method, "lanczos") == 0) return kiln_image_resize_lanczos(img, x0, y0, cw, ch, width, height, out);
    kiln_resample_method m;
    /* ImageScale's methods: bislerp is LatentUpscale's */
    if (!kiln_resample_plane_method_from_name(method, &m))
        return kiln_fail(KILN_ERR_INVALID_ARG, "image scale method '%s': nearest-exact, bilinear, bicubic, area or "
                         "lanczos", method);
    float *cut = malloc((size_t)3 * cw * ch * sizeof *cut), *scaled = malloc((size_t)3 * width * height * sizeof *scaled);
    kiln_status st = cut && scaled ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "image scale: out of host memory");
    for (int c = 0; st == KILN_OK && c < 3; c++) /* LoadImage's floats, channel planes */
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++)
                cut[((size_t)c * ch + y) * cw + x] =
                    (float)img->pixels[3 * ((size_t)(y0 + y) * img->width + x0 + x) + c] / 255.0f;
    if (st == KILN_OK) {
        kiln_resample(cut, 3, ch, cw, scaled, height, width, m);
        st = kiln_image_from_unit(scaled, height, width, out);
    }
    free(cut);
    free(scaled);
    return st;
}

/* A latent handed in must be one this model's VAE and UNet read. */
static kiln_status check_latent(const kiln_model *m, const char *what, const kiln_latent *l)
{
    if (!l || !l->data) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: no latent", what);
    if (l->channels != m->vae.config->latent_channels)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a latent of %d channels; this model's have %d", what, l->channels,
                         m->vae.config->latent_channels);
    int f = kiln_vae_factor(m->vae.config);
    if (l->height < 1 || l->width < 1 || l->height > KILN_IMAGE_MAX_SIDE / f || l->width > KILN_IMAGE_MAX_SIDE / f)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a latent of %dx%d", what, l->width, l->height);
    if (l->noise_mask && (l->mask_h < 1 || l->mask_w < 1 || l->mask_h > KILN_IMAGE_MAX_SIDE ||
                          l->mask_w > KILN_IMAGE_MAX_SIDE))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: a noise mask of %dx%d", what, l->mask_w, l->mask_h);
    TRY(kiln_check_batch(what, l->batch));
    for (int b = 0; l->batch_index && b < l->batch; b++) /* each place a draw of noise: bounded as batches are */
        if (l->batch_index[b] < 0 || l->batch_index[b] >= 16 * KILN_LATENT_MAX_BATCH)
            return kiln_fail(KILN_ERR_INVALID_ARG, "%s: image %d's batch_index %d (0 to %d)", what, b,
                             l->batch_index[b], 16 * KILN_LATENT_MAX_BATCH - 1);
    return KILN_OK;
}

/* VAEDecode, whole (tile 0) or tiled as VAEDecodeTiled (tile and overlap in pixels). */
static kiln_status decode_to_images(kiln_model *m, const kiln_latent *latent, int tile, int overlap, kiln_image *images,
                                    int count)
{
    if (!m || !images) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_vae_decode: no model or no place for the images");
    TRY(check_latent(m, "VAE decode", latent));
    if (count < latent->batch)
        return kiln_fail(KILN_ERR_INVALID_ARG, "VAE decode: %d images in a latent, room for %d", latent->batch, count);
    float *decoded;
    int f = kiln_vae_factor(m->vae.config), H = latent->height * f, W = latent->width * f;
    if (tile) {
        if (tile < 64 || tile > 4096 || overlap < 0 || overlap > 4096)
            return kiln_fail(KILN_ERR_INVALID_ARG, "VAE decode tiled: tile %d (64 to 4096 pixels), overlap %d (0 to 4096)",
                             tile, overlap);
        TRY(kiln_vae_decode_latent_tiled(m, latent->data, latent->batch, latent->height, latent->width, tile, overlap,
                                         &decoded));
    } else {
        TRY(kiln_vae_decode_latent(m, latent->data, latent->batch, latent->height, latent->width, &decoded));
    }
    kiln_status st = KILN_OK;
    int made = 0;
    for (; made < latent->batch && st == KILN_OK; made++)
        st = kiln_image_from_decoded(decoded + (size_t)made * 3 * H * W, H, W, &images[made]);
    if (st != KILN_OK)
        for (int b = 0; b < made - 1; b++) kiln_image_free(&images[b]);
    free(decoded);
    return st;
}

kiln_status kiln_vae_decode(kiln_model *m, const kiln_latent *latent, kiln_image *images, int count)
{
    return decode_to_images(m, latent, 0, 0, images, count);
}

kiln_status kiln_vae_decode_tiled(kiln_model *m, const kiln_latent *latent, int tile_size, int overlap,
                                  kiln_image *images, int count)
{
    return decode_to_images(m, latent, tile_size, overlap, images, count);
}

/* VAEEncode, whole (tile 0) or tiled as VAEEncodeTiled (tile and overlap in pixels). */
static kiln_status encode_images(kiln_model *m, const kiln_image *images, int count, int tile, int overlap,
                                 kiln_latent *out)
{
    if (!m || !images || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_vae_encode: no model, images or place");
    if (tile && (tile < 64 || tile > 4096 || overlap < 0 || overlap > 4096))
        return kiln_fail(KILN_ERR_INVALID_ARG, "VAE encode tiled: tile %d (64 to 4096 pixels), overlap %d (0 to 4096)",
                         tile, overlap);
    *out = (kiln_latent){0};
    TRY(kiln_check_batch("VAE encode images", count));
    for (int b = 0; b < count; b++) {
        if (!images[b].pixels || images[b].channels != 3 || images[b].width < 1 || images[b].height < 1 ||
            images[b].width > KILN_IMAGE_MAX_SIDE || images[b].height > KILN_IMAGE_MAX_SIDE)
            return kiln_fail(KILN_ERR_INVALID_ARG, "VAE encode: image %d is not an RGB image of 1 to %d pixels a side",
                             b, KILN_IMAGE_MAX_SIDE);
        if (images[b].width != images[0].width || images[b].height != images[0].height)
            return kiln_fail(KILN_ERR_INVALID_ARG, "VAE encode: image %d is %dx%d, image 0 %dx%d", b, images[b].width,
                             images[b].height, images[0].width, images[0].height);
    }
    int f = kiln_vae_factor(m->vae.config);
    kiln_image cropped = {0};
    float *pixels = NULL;
    kiln_status st = KILN_OK;
    for (int b = 0; b < count && st == KILN_OK; b++) {
        if ((st = kiln_image_crop_to_multiple(&images[b], f, &cropped)) != KILN_OK) break;
        size_t per = (size_t)3 * cropped.width * cropped.height;
        if (!pixels && !(pixels = malloc(per * count * sizeof(float))))
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "VAE encode: out of host memory");
        else
            kiln_image_to_encoder_input(&cropped, pixels + per * b);
        if (b < count - 1) kiln_image_free(&cropped);
    }
    kiln_latent l = {.batch = count, .channels = m->vae.config->latent_channels, .height = cropped.height / f,
                     .width = cropped.width / f};
    if (st == KILN_OK)
        st = tile ? kiln_vae_encode_image_tiled(m, pixels, count, cropped.height, cropped.width, tile, overlap, &l.data)
                  : kiln_vae_encode_image(m, pixels, count, cropped.height, cropped.width, &l.data);
    if (st == KILN_OK) *out = l;
    kiln_image_free(&cropped);
    free(pixels);
    return st;
}

kiln_status kiln_vae_encode(kiln_model *m, const kiln_image *images, int count, kiln_latent *out)
{
    return encode_images(m, images, count, 0, 0, out);
}

kiln_status kiln_vae_encode_tiled(kiln_model *m, const kiln_image *images, int count, int tile_size, int overlap,
                                  kiln_latent *out)
{
    return encode_images(m, images, count, tile_size, overlap, out);
}

/* The inpainting latent kiln_inpaint_encode makes, handed over as a LATENT
 * with its noise mask. */
static kiln_status latent_to_inpaint(kiln_model *m, kiln_inpaint_source *src, kiln_latent *out)
{
    kiln_inpaint in;
    kiln_status st = kiln_inpaint_encode(m, src, &in);
    kiln_inpaint_source_free(src);
    if (st != KILN_OK) return st;
    *out = (kiln_latent){in.latent, 1, m->vae.config->latent_channels, in.h, in.w, in.noise_mask, in.mask_h, in.mask_w,
                         in.concat_latent, NULL};
    return KILN_OK;
}

kiln_status kiln_vae_encode_for_inpaint_mask(kiln_model *m, const kiln_image *image, const kiln_mask *mask,
                                             int grow_mask_by, kiln_latent *out)
{
    if (!m || !image || !mask || !mask->weights || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_vae_encode_for_inpaint: no model, image, mask or place");
    *out = (kiln_latent){0};
    if (mask->width < 1 || mask->height < 1 || mask->width > KILN_IMAGE_MAX_SIDE || mask->height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_vae_encode_for_inpaint: a mask of %dx%d", mask->width,
                         mask->height);
    kiln_inpaint_source src;
    TRY(kiln_inpaint_source_make(image, mask, grow_mask_by, &src));
    return latent_to_inpaint(m, &src, out);
}

kiln_status kiln_vae_encode_for_inpaint(kiln_model *m, const kiln_image *image, const kiln_image *mask,
                                        kiln_latent *out)
{
    if (!mask) return kiln_vae_encode_for_inpaint_mask(m, image, NULL, KILN_INPAINT_GROW, out);
    kiln_mask weights;
    TRY(kiln_mask_from_image(mask, "red", &weights));
    kiln_status st = kiln_vae_encode_for_inpaint_mask(m, image, &weights, KILN_INPAINT_GROW, out);
    kiln_mask_free(&weights);
    return st;
}

kiln_status kiln_vae_encode_for_outpaint(kiln_model *m, const kiln_image *image, int left, int top, int right,
                                         int bottom, int feathering, kiln_latent *out)
{
    if (!m || !image || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_vae_encode_for_outpaint: no model, image or place");
    *out = (kiln_latent){0};
    kiln_outpaint pad = {left, top, right, bottom, feathering};
    /* kiln_outpaint_source bounds each pad; the canvas they make is bounded as a loaded image is */
    if ((long)image->width + left + right > KILN_IMAGE_MAX_SIDE ||
        (long)image->height + top + bottom > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "outpaint: %dx%d padded by %d, %d, %d, %d is over %d pixels a side",
                         image->width, image->height, left, top, right, bottom, KILN_IMAGE_MAX_SIDE);
    kiln_inpaint_source src;
    TRY(kiln_outpaint_source(image, &pad, &src));
    return latent_to_inpaint(m, &src, out);
}

/* ControlNets and IP-Adapters attach to a UNet. */
static kiln_status unet_model(const kiln_model *m, const char *what)
{
    if (!kiln_model_is_dit(m)) return KILN_OK;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "%s works with SD 1.x/2.x/XL UNets; %s is a %s model", what,
                     kiln_checkpoint_path(m->checkpoint), m->info.family);
}

kiln_status kiln_controlnet_load(kiln_model *m, const char *path, kiln_controlnet **out)
{
    if (!m || !path || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_controlnet_load: no model, path or place");
    if (kiln_model_is_mmdit(m))
        return kiln_flux_controlnet_open(path, &m->flux, kiln_weights_backend(m->weights), out);
    TRY(unet_model(m, "ControlNet"));
    return kiln_controlnet_open(path, &m->unet, m->checkpoint, kiln_weights_backend(m->weights), out);
}

static kiln_status check_conditioning(const kiln_model *m, const char *which, const kiln_conditioning *c)
{
    if (!c || !c->data || c->tokens < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: no %s conditioning", which);
    if (c->dim != kiln_model_context_dim(m))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s conditioning is %d wide, this model reads %d "
                         "(a prompt encoded by another model?)", which, c->dim, kiln_model_context_dim(m));
    return KILN_OK;
}

/* A masked latent is sampled as one picture repeated over the batch
 * (RepeatLatentBatch of VAEEncodeForInpaint's); different pictures under one
 * mask are not. */
static kiln_status check_one_picture(const kiln_latent *l)
{
    size_t per = kiln_latent_count(l) / (size_t)l->batch;
    for (int b = 1; b < l->batch; b++)
        if (memcmp(l->data + per * b, l->data, per * sizeof(float)))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: a noise mask over %d different pictures (kiln repaints "
                             "one picture, repeated over the batch)", l->batch);
    return KILN_OK;
}

static bool all_zero(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return false;
    return true;
}

/* InstructPixToPixConditioning: the picture to edit goes to the UNet with
 * every call, and the sampling starts from an empty latent. */
static kiln_status set_edit(const kiln_model *m, const kiln_latent *edit, const kiln_latent *start,
                            kiln_sampling_job *job)
{
    bool pix2pix = m->info.variant == KILN_VARIANT_INSTRUCT_PIX2PIX;
    if (!edit && !pix2pix) return KILN_OK;
    if (!edit || !pix2pix)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %s is %s InstructPix2Pix model and %s a picture to edit",
                         m->info.unet_name, pix2pix ? "an" : "no", edit ? "was given" : "needs");
    TRY(check_latent(m, "ksampler's picture to edit", edit));
    if (edit->batch != 1 || edit->height != start->height || edit->width != start->width || edit->noise_mask)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the picture to edit must be one %dx%d latent without a mask "
                         "(it is %d of %dx%d)", start->width, start->height, edit->batch, edit->width, edit->height);
    if (!all_zero(start->data, kiln_latent_count(start)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: an InstructPix2Pix model samples from an empty latent");
    job->init_latent = NULL;
    job->edit_latent = edit->data;
    return KILN_OK;
}

/* How many a chain in kiln_ksampler_params holds: count, where 0 with a
 * first element given means the one. */
static int chain_length(const void *first, int count) { return first ? (count ? count : 1) : 0; }

/* math.isclose's default (a relative 1e-9), which ComfyUI's guiders test their scales with */
static bool is_close(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(fabs(a), fabs(b)); }

/* DualCFGGuider and PerpNegGuider into the job. Where a scale makes ComfyUI
 * leave a prompt out (its cfg1 optimisation) the guider is the plain
 * guidance of two prompts to the bit: DualCFG's cond2 guided from the
 * negative at 1 is cond2 alone, PerpNeg's negative at scale 0 goes. */
static kiln_status set_guider(const kiln_model *m, const kiln_ksampler_params *params, kiln_sampling_job *job)
{
    const kiln_conditioning *third = params->dual_cfg_cond2 ? params->dual_cfg_cond2 : params->perp_neg_empty;
    if (!third) return KILN_OK;
    if (params->dual_cfg_cond2 && params->perp_neg_empty)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: DualCFGGuider and PerpNegGuider at once");
    const bool dual = params->dual_cfg_cond2 != NULL;
    if (params->positive_part_count || params->negative_part_count)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: %s with prompts in parts or areas",
                         dual ? "DualCFGGuider" : "PerpNegGuider");
    TRY(check_conditioning(m, dual ? "DualCFGGuider's cond2" : "PerpNegGuider's empty", third));
    const double scale2 = dual ? params->cfg_cond2_negative : params->perp_neg_scale;
    if (!(scale2 >= 0.0 && scale2 <= 100.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %s %g: 0 to 100", dual ? "cfg_cond2_negative" : "neg_scale",
                         scale2);
    job->third = third, job->scale2 = (float)scale2;
    job->guider = !dual ? KILN_GUIDER_PERP_NEG : params->dual_cfg_nested ? KILN_GUIDER_DUAL_CFG_NESTED
                                                                          : KILN_GUIDER_DUAL_CFG;
    if ((job->guider == KILN_GUIDER_DUAL_CFG && is_close(scale2, 1.0)) ||
        (job->guider == KILN_GUIDER_PERP_NEG && is_close(scale2, 0.0)))
        job->guider = KILN_GUIDER_CFG; /* kiln_ksample's negative: the third prompt (see kiln_ksampler) */
    return KILN_OK;
}

kiln_status kiln_ksampler(kiln_model *m, const kiln_ksampler_params *params, const kiln_conditioning *positive,
                          const kiln_conditioning *negative, const kiln_latent *latent_image, kiln_latent *out)
{
    if (!m || !params || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_ksampler: no model, parameters or place");
    *out = (kiln_latent){0};
    const kiln_conditioning_part *parts[2] = {params->negative_parts, params->positive_parts};
    const int nparts[2] = {params->negative_part_count, params->positive_part_count};
    for (int side = 0; side < 2; side++) {
        const char *which = side ? "positive" : "negative";
        if (nparts[side] < 0 || nparts[side] > KILN_MAX_PROMPT_PARTS || (nparts[side] && !parts[side]))
            return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %d parts of the %s prompt: 0..%d, and given",
                             nparts[side], which, KILN_MAX_PROMPT_PARTS);
        for (int i = 0; i < nparts[side]; i++) TRY(check_conditioning(m, which, parts[side][i].cond));
        if (!nparts[side]) TRY(check_conditioning(m, which, side ? positive : negative));
    }
    TRY(check_latent(m, "ksampler", latent_image));
    if (!params->sampler_name || (!params->scheduler && !params->sigmas))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: no sampler or scheduler name");
    if (!params->sigmas && (params->steps < 1 || params->steps > 10000))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler steps %d: must be from 1 to 10000", params->steps);
    if (params->sigmas && (params->start_at_step || params->end_at_step))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: KSamplerAdvanced's steps %d to %d with sigmas of one's own "
                         "(cut those with kiln_sigmas_split)", params->start_at_step, params->end_at_step);
    const kiln_latent *l = latent_image;
    kiln_sampling_job job = {.steps = params->steps, .cfg = (float)params->cfg, .denoise = params->denoise,
                             .seed = params->seed, .batch = l->batch, .latent_h = l->height, .latent_w = l->width,
                             .init_latent = l->data, .noise_index = l->batch_index, .sdxl = params->sdxl,
                             .negative_sdxl = params->negative_sdxl,
                             .start_step = params->start_at_step, .last_step = params->end_at_step,
                             .leftover_noise = params->leftover_noise, .disable_noise = params->disable_noise,
                             .progress = params->progress, .progress_ctx = params->progress_ctx,
                             .flux_guidance = (float)params->flux_guidance,
                             .negative_flux_guidance = (float)params->negative_flux_guidance,
                             .pixart_size = {{(float)params->negative_pixart_height,
                                              (float)params->negative_pixart_width},
                                             {(float)params->pixart_height, (float)params->pixart_width}},
                             .differential = (float)params->differential_diffusion,
                             .cfg_patches = {(float)params->rescale_cfg, params->cfg_zero_star, params->apg,
                                             (float)params->apg_eta, (float)params->apg_norm_threshold,
                                             (float)params->apg_momentum, params->tcfg, params->mahiro,
                                             (float)params->cfg_norm, (float)params->epsilon_scaling,
                                             params->cfg_operation != NULL,
                                             params->cfg_operation ? *params->cfg_operation
                                                                   : (kiln_latent_operation){0}},
                             .skip_layer_guidance = params->skip_layer_guidance, .freeu = params->freeu,
                             .pag_scale = (float)params->pag_scale, .sag = params->sag, .deep_shrink = params->deep_shrink,
                             .hypertile = params->hypertile, .step_cache = params->step_cache,
                             .hypernetworks = params->hypernetworks, .nhypernetworks = params->hypernetwork_count,
                             .steps_skipped = params->steps_skipped,
                             .parts = {parts[0], parts[1]}, .nparts = {nparts[0], nparts[1]}};
    if (params->fresca) {
        job.cfg_patches.fresca = true;
        job.cfg_patches.fresca_low = (float)params->fresca->scale_low;
        job.cfg_patches.fresca_high = (float)params->fresca->scale_high;
        job.cfg_patches.fresca_cutoff = params->fresca->freq_cutoff;
    }
    TRY(set_guider(m, params, &job));
    if (params->hypernetwork_count < 0 || params->hypernetwork_count > KILN_MAX_HYPERNETWORKS ||
        (params->hypernetwork_count && !params->hypernetworks))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %d hypernetworks: 0..%d, and given",
                         params->hypernetwork_count, KILN_MAX_HYPERNETWORKS);
    for (int i = 0; i < params->hypernetwork_count; i++)
        if (!params->hypernetworks[i]) return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: hypernetwork %d is NULL", i);
    const kiln_skip_layer_guidance *slg = params->skip_layer_guidance;
    if (slg && (slg->double_count < 0 || slg->single_count < 0 || (slg->double_count && !slg->double_layers) ||
                (slg->single_count && !slg->single_layers)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: skip_layer_guidance's layer lists");
    TRY(kiln_sampler_from_name(params->sampler_name, &job.sampler));
    if (params->sigmas) job.sigmas = params->sigmas;
    else TRY(kiln_scheduler_from_name(params->scheduler, &job.scheduler));
    const kiln_sampler_options *so = params->sampler_options;
    if (so && !(so->eta >= 0.0 && so->eta <= 100.0 && so->s_noise >= 0.0 && so->s_noise <= 100.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: sampler options eta %g and s_noise %g must be in [0, 100]",
                         so->eta, so->s_noise);
    job.sampler_options = so;
    if (m->info.variant == KILN_VARIANT_INPAINT && !l->noise_mask)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %s is an inpainting model: give it a latent with a noise "
                         "mask (kiln_vae_encode_for_inpaint or _outpaint)", m->info.unet_name);
    int f = kiln_vae_factor(m->vae.config);
    kiln_inpaint inpaint = {.latent = l->data, .concat_latent = l->concat, .h = l->height, .w = l->width,
                            .noise_mask = l->noise_mask, .mask_h = l->mask_h, .mask_w = l->mask_w,
                            .width = l->width * f, .height = l->height * f};
    if (!(params->pag_scale >= 0.0 && params->pag_scale <= 100.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: pag_scale %g: must be 0..100", params->pag_scale);
    if (!(params->rescale_cfg >= 0.0 && params->rescale_cfg <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: rescale_cfg %g: must be 0..1", params->rescale_cfg);
    if (!(params->differential_diffusion >= 0.0 && params->differential_diffusion <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: differential_diffusion %g: must be 0..1",
                         params->differential_diffusion);
    if (params->differential_diffusion > 0.0 && !l->noise_mask)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: DifferentialDiffusion acts on a noise mask; the latent has "
                         "none");
    if (m->info.variant == KILN_VARIANT_INPAINT && kiln_model_is_dit(m) && !l->concat)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %s reads the masked picture beside the latent: give it "
                         "kiln_vae_encode_for_inpaint's latent (InpaintModelConditioning's)", m->info.unet_name);
    if (l->noise_mask) {
        TRY(check_one_picture(l));
        job.init_latent = NULL;
        job.inpaint = &inpaint;
    }
    TRY(set_edit(m, params->edit_latent, l, &job));
    job.references[1] = params->reference;
    job.nreferences[1] = chain_length(params->reference, params->reference_count);
    job.references[0] = params->negative_reference;
    job.nreferences[0] = chain_length(params->negative_reference, params->negative_reference_count);
    job.reference_methods[1] = params->reference_method;
    job.reference_methods[0] = params->negative_reference_method;

    const int ncontrols = chain_length(params->control, params->control_count);
    const int nimage_prompts = chain_length(params->ip_adapter, params->ip_adapter_count);
    if (ncontrols < 0 || ncontrols > KILN_MAX_CONTROLS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: control_count %d: must be 0..%d", params->control_count,
                         KILN_MAX_CONTROLS);
    if (nimage_prompts < 0 || nimage_prompts > KILN_MAX_IP_ADAPTERS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: ip_adapter_count %d: must be 0..%d",
                         params->ip_adapter_count, KILN_MAX_IP_ADAPTERS);
    kiln_control controls[KILN_MAX_CONTROLS] = {0};
    kiln_image_prompt image_prompts[KILN_MAX_IP_ADAPTERS] = {0};
    kiln_status st = KILN_OK;
    for (int i = 0; i < ncontrols && st == KILN_OK; i++) {
        const kiln_control_apply *apply = &params->control[i];
        float *hint = NULL;
        int mode = -1;
        if (!apply->controlnet || !apply->image)
            st = kiln_fail(KILN_ERR_INVALID_ARG, "ControlNet apply %d: no ControlNet or no image", i + 1);
        else if ((st = kiln_union_control_type(apply->union_type, &mode)) == KILN_OK)
            st = kiln_control_hint(m, apply->controlnet, apply->image, apply->mask, job.latent_h, job.latent_w,
                                   &hint);
        controls[i] = (kiln_control){apply->controlnet, hint, (float)apply->strength, apply->start_percent,
                                     apply->end_percent, mode, apply->positive_only};
    }
    job.controls = controls;
    job.ncontrols = ncontrols;
    for (int i = 0; i < nimage_prompts && st == KILN_OK; i++) {
        const kiln_ip_adapter_apply *ip = &params->ip_adapter[i];
        float *tokens = NULL;
        const int pictures = chain_length(ip->image, ip->image_count);
        if (!ip->adapter || !ip->clip_vision || !ip->image)
            st = kiln_fail(KILN_ERR_INVALID_ARG, "IP-Adapter apply %d: no adapter, CLIP vision model or image", i + 1);
        else
            st = kiln_image_prompt_tokens(ip->adapter, ip->clip_vision, ip->image, pictures, &tokens);
        image_prompts[i] = (kiln_image_prompt){ip->adapter, tokens, (float)ip->weight, ip->start_percent,
                                               ip->end_percent, ip->adapter ? pictures * ip->adapter->tokens : 0};
    }
    job.image_prompts = image_prompts;
    job.nimage_prompts = nimage_prompts;
    float *x = NULL;
    const size_t count = kiln_latent_count(l);
    if (st == KILN_OK && params->denoised_output && !(job.last_denoised = malloc(count * sizeof(float))))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    if (st == KILN_OK) /* a guider reduced to the plain guidance guides the positive from its third prompt */
        st = kiln_ksample(m, &job, positive, job.third && job.guider == KILN_GUIDER_CFG ? job.third : negative, &x);
    for (int i = 0; i < ncontrols; i++) free((float *)controls[i].hint);
    for (int i = 0; i < nimage_prompts; i++) free((float *)image_prompts[i].tokens);
    if (st != KILN_OK) {
        free(job.last_denoised);
        return st;
    }
    *out = (kiln_latent){x, l->batch, l->channels, l->height, l->width, NULL, 0, 0, NULL, NULL};
    if (!kiln_latent_copy_places(l, out)) {
        kiln_latent_free(out);
        free(job.last_denoised);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    }
    if (params->denoised_output)
        *params->denoised_output = (kiln_latent){job.last_denoised, l->batch, l->channels, l->height, l->width,
                                                 NULL, 0, 0, NULL, NULL};
    return KILN_OK;
}

kiln_status kiln_ip_adapter_load(kiln_model *m, const char *path, kiln_ip_adapter **out)
{
    if (!m || !path || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_ip_adapter_load: no model, path or place");
    if (kiln_model_is_dit(m) && m->family->arch == KILN_ARCH_FLUX && m->flux.chroma)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "IP-Adapters on a Chroma model: kiln applies XLabs' to FLUX.1 only");
    if (kiln_model_is_dit(m) && m->family->arch == KILN_ARCH_FLUX)
        return kiln_flux_ip_adapter_open(path, &m->flux, kiln_weights_backend(m->weights), out);
    TRY(unet_model(m, "IP-Adapter"));
    return kiln_ip_adapter_open(path, &m->unet, kiln_weights_backend(m->weights), out);
}

kiln_status kiln_hypernetwork_load(kiln_model *m, const char *path, double strength, kiln_hypernetwork **out)
{
    if (!m || !path || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_hypernetwork_load: no model, path or place");
    TRY(unet_model(m, "a hypernetwork"));
    return kiln_hypernetwork_open(path, strength, kiln_weights_backend(m->weights), out);
}

kiln_status kiln_clip_vision_load(kiln_backend *be, const char *path, kiln_clip_vision **out)
{
    if (!be || !path || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_clip_vision_load: no backend, path or place");
    return kiln_clip_vision_open(path, be, out);
}

kiln_status kiln_flux_kontext_image_scale(const kiln_image *image, kiln_image *out)
{
    /* BFL's and ComfyUI's PREFERED_KONTEXT_RESOLUTIONS */
    static const int sizes[][2] = {{672, 1568}, {688, 1504}, {720, 1456}, {752, 1392}, {800, 1328}, {832, 1248},
                                   {880, 1184}, {944, 1104}, {1024, 1024}, {1104, 944}, {1184, 880}, {1248, 832},
                                   {1328, 800}, {1392, 752}, {1456, 720}, {1504, 688}, {1568, 672}};
    if (!image || !out || image->width < 1 || image->height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "FluxKontextImageScale: no picture or no place");
    const double aspect = (double)image->width / image->height;
    int best = 0;
    for (int i = 1; i < (int)(sizeof sizes / sizeof *sizes); i++) /* the first of equal distances, as min() */
        if (fabs(aspect - (double)sizes[i][0] / sizes[i][1]) < fabs(aspect - (double)sizes[best][0] / sizes[best][1]))
            best = i;
    return kiln_image_resize_center_lanczos(image, sizes[best][0], sizes[best][1], out);
}

kiln_status kiln_style_model_load(kiln_model *m, const char *path, kiln_style_model **out)
{
    if (!m || !path || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_style_model_load: no model, path or place");
    if (!kiln_model_is_dit(m) || m->family->arch != KILN_ARCH_FLUX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "a style model (FLUX.1 Redux) works with Flux models; %s is a %s "
                         "model", kiln_checkpoint_path(m->checkpoint), m->info.family);
    TRY(kiln_style_model_open(path, kiln_weights_backend(m->weights), out));
    if ((*out)->out_dim == m->flux.context_dim) return KILN_OK;
    kiln_status st = kiln_fail(KILN_ERR_MODEL, "%s: Redux tokens %d wide, but the model reads T5 rows %d wide", path,
                               (*out)->out_dim, m->flux.context_dim);
    kiln_style_model_free(*out);
    *out = NULL;
    return st;
}

kiln_status kiln_style_model_apply(const kiln_style_model *sm, const kiln_clip_vision *clip_vision,
                                   const kiln_image *image, bool crop, double strength, const kiln_conditioning *in,
                                   kiln_conditioning *out)
{
    if (!sm || !clip_vision || !image || !in || !in->data || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_style_model_apply: no style model, CLIP vision model, picture "
                         "or conditioning");
    if (in->dim != sm->out_dim)
        return kiln_fail(KILN_ERR_INVALID_ARG, "StyleModelApply: a conditioning %d wide; the Redux tokens are %d",
                         in->dim, sm->out_dim);
    float *tokens;
    int T;
    TRY(kiln_style_tokens(sm, clip_vision, image, crop, &tokens, &T));
    *out = (kiln_conditioning){malloc((size_t)(in->tokens + T) * in->dim * sizeof(float)), in->tokens + T, in->dim,
                               in->pooled ? malloc((size_t)in->pooled_dim * sizeof(float)) : NULL, in->pooled_dim};
    if (!out->data || (in->pooled && !out->pooled)) {
        free(tokens);
        kiln_conditioning_free(out);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "StyleModelApply: out of host memory");
    }
    const size_t rows = (size_t)in->tokens * in->dim;
    memcpy(out->data, in->data, rows * sizeof(float));
    for (size_t i = 0; i < (size_t)T * in->dim; i++) out->data[rows + i] = (float)(tokens[i] * strength);
    if (in->pooled) memcpy(out->pooled, in->pooled, (size_t)in->pooled_dim * sizeof(float));
    free(tokens);
    return KILN_OK;
}

kiln_status kiln_upscale_model_load(kiln_backend *be, const char *path, kiln_upscaler **out)
{
    if (!be || !path || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_upscale_model_load: no backend, path or place");
    return kiln_upscaler_open(path, be, out);
}

kiln_status kiln_image_upscale_with_model(kiln_upscaler *u, const kiln_image *image, kiln_image *out)
{
    if (!u || !image || !image->pixels || !out)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_image_upscale_with_model: no model, image or place");
    *out = (kiln_image){0};
    float *unit = malloc((size_t)3 * image->height * image->width * sizeof(float));
    if (!unit) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "upscale: out of host memory");
    kiln_image_to_unit(image, unit);
    kiln_status st = kiln_upscale_to_image(u, unit, image->height, image->width, out);
    free(unit);
    return st;
}
