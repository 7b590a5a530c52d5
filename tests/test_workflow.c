/* ComfyUI API-format workflows run by kiln_workflow_run: the graphs of
 * ComfyUI's recorded runs (tests/data/comfyui_e2e) give ComfyUI's pixels
 * (within 1 level, the README's bound), and a broken graph is refused naming
 * the node and input at fault. (gen --workflow's round trip through a PNG's
 * workflow is test_gen_cli's.) */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

#include "golden.h"
#include "latent.h"
#include "tiny_variants.h"

/* tests/data/masks' picture with alpha (make_mask_data.py) */
#define ALPHA_PNG "rgba.png"

static kiln_backend *backend;
static const char *model_dirs[1];
static const kiln_workflow_options options = {.model_dirs = model_dirs, .nmodel_dirs = 1};

static int setup(void **state)
{
    (void)state;
    static char tiny[1024]; /* kiln_test_data's buffer is reused by the next call */
    snprintf(tiny, sizeof tiny, "%s", kiln_test_data("tiny"));
    model_dirs[0] = tiny;
    return kiln_backend_open("cpu", NULL, &backend) == KILN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kiln_backend_free(backend);
    return 0;
}

/* The graph ComfyUI ran for a recorded txt2img run: checkpoint, clip skip
 * (CLIPSetLastLayer), both prompts, an empty latent of the image's size,
 * KSampler, VAEDecode, SaveImage. Prompts hold no quotes or backslashes. */
static void check_run(const char *file)
{
    char rel[256], json[4096];
    snprintf(rel, sizeof rel, "comfyui_e2e/%s", file);
    kiln_st_file *f = golden_open(rel);
    golden pixels = golden_read(f, "image_uint8");
    int B = (int)pixels.shape[0], H = (int)pixels.shape[1], W = (int)pixels.shape[2];
    snprintf(json, sizeof json,
             "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": "
             "\"sd15_tiny_ldm_fp32.safetensors\"}},"
             " \"10\": {\"class_type\": \"CLIPSetLastLayer\", \"inputs\": {\"stop_at_clip_layer\": -%s, "
             "\"clip\": [\"4\", 1]}},"
             " \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"%s\", \"clip\": [\"10\", 0]}},"
             " \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"%s\", \"clip\": [\"10\", 0]}},"
             " \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": %d, \"height\": %d, "
             "\"batch_size\": %d}},"
             " \"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": %s, \"steps\": %s, \"cfg\": %s, "
             "\"sampler_name\": \"%s\", \"scheduler\": \"%s\", \"denoise\": %s, \"model\": [\"4\", 0], "
             "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}},"
             " \"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}},"
             " \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"filename_prefix\": \"ComfyUI\", "
             "\"images\": [\"8\", 0]}}}",
             golden_meta(f, "clip_skip"), golden_meta(f, "positive_prompt"), golden_meta(f, "negative_prompt"), W, H,
             B, golden_meta(f, "seed"), golden_meta(f, "steps"), golden_meta(f, "cfg"), golden_meta(f, "sampler_name"),
             golden_meta(f, "scheduler"), golden_meta(f, "denoise"));
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, B);
    int worst = golden_pixels_worst(images, count, &pixels);
    print_message("  %-44s pixels within %d level(s)\n", file, worst);
    assert_true(worst <= 1);
    kiln_images_free(images, count);
    golden_free(&pixels);
    kiln_st_close(f);
}

static void comfyui_runs(void **state)
{
    (void)state;
    check_run("txt2img_euler_normal_s8.safetensors");
    check_run("txt2img_dpmpp_2m_karras_s8.safetensors");
    check_run("txt2img_clipskip2_euler_normal_s8.safetensors");
    check_run("txt2img_dpmpp_sde_normal_s8.safetensors");
}

#define CKPT                                                                                                          \
    "\"4\": {\"class_type\": \"CheckpointLoaderSimple\", "                                                     \
    "\"inputs\": {\"ckpt_name\": \"sd15_tiny_ldm_fp32.safetensors\"}}"

/* The tiny SD 1.x model, its two prompts ("a red circle" and `negative`)
 * and an empty 16x16 latent: what the library's runs beside a workflow's
 * start from. */
/* The tiny model (with `parts` at load, NULL: none), its prompts and a 16x16 empty latent. */
static void tiny_sd15_with(const kiln_model_parts *parts, kiln_model **m, const char *negative, kiln_conditioning *pos,
                           kiln_conditioning *neg, kiln_latent *empty)
{
    assert_kiln_ok(kiln_checkpoint_load_parts(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", parts,
                                              NULL, 0, m));
    assert_kiln_ok(kiln_text_encode(*m, "a red circle", 0, pos));
    assert_kiln_ok(kiln_text_encode(*m, negative, 0, neg));
    assert_kiln_ok(kiln_empty_latent(*m, 16, 16, 1, empty));
}

static void tiny_sd15(kiln_model **m, const char *negative, kiln_conditioning *pos, kiln_conditioning *neg,
                      kiln_latent *empty)
{
    tiny_sd15_with(NULL, m, negative, pos, neg, empty);
}

static void tiny_sd15_free(kiln_model *m, kiln_conditioning *pos, kiln_conditioning *neg, kiln_latent *empty)
{
    kiln_latent_free(empty);
    kiln_conditioning_free(pos);
    kiln_conditioning_free(neg);
    kiln_model_free(m);
}

/* The library's latent decoded is the workflow's picture, pixel for pixel. */
static void assert_decodes_to(kiln_model *m, const kiln_latent *latent, const kiln_image *want)
{
    kiln_image decoded;
    assert_kiln_ok(kiln_vae_decode(m, latent, &decoded, 1));
    assert_int_equal(decoded.width, want->width);
    assert_int_equal(decoded.height, want->height);
    assert_memory_equal(decoded.pixels, want->pixels, (size_t)want->width * want->height * 3);
    kiln_image_free(&decoded);
}

/* A workflow of one picture gives the library's latent decoded, pixel for
 * pixel. */
static void assert_workflow_decodes_to(const char *json, kiln_model *m, const kiln_latent *latent)
{
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, 1);
    assert_decodes_to(m, latent, &images[0]);
    kiln_images_free(images, count);
}

/* FLUX.1 as ComfyUI's Flux workflows load it, from separate files:
 * UNETLoader (BFL's transformer), DualCLIPLoader (CLIP-L, T5), VAELoader;
 * T5's tokenizer and the tiny model's rotary axes from the options. The
 * KSampler run of tests/data/flux/run.golden (make_flux_data.py: ComfyUI's
 * code restated) gives its picture within a level, with the positive prompt
 * through FluxGuidance or CLIPTextEncodeFlux, with guidance on both prompts,
 * and through SamplerCustomAdvanced and ModelSamplingFlux. */
#define FLUX_LOADERS                                                                                                  \
    "\"12\": {\"class_type\": \"UNETLoader\", \"inputs\": {\"unet_name\": \"" KILN_TEST_DATA                        \
    "/flux/single/flux1-tiny.safetensors\", \"weight_dtype\": \"default\"}}, "                                        \
    "\"11\": {\"class_type\": \"DualCLIPLoader\", \"inputs\": {\"clip_name1\": \"" KILN_TEST_DATA                   \
    "/tiny/sd15_tiny_diffusers/text_encoder/model.safetensors\", \"clip_name2\": \"" KILN_TEST_DATA                    \
    "/pixart/tiny/text_encoder/model.safetensors\", \"type\": \"flux\"}}, "                                            \
    "\"10\": {\"class_type\": \"VAELoader\", \"inputs\": {\"vae_name\": \"" KILN_TEST_DATA                           \
    "/flux/tiny/vae/diffusion_pytorch_model.safetensors\"}}"
#define FLUX_PROMPT "a photograph of an astronaut riding a horse"
/* the positive prompt, node "30": CLIPTextEncode then FluxGuidance, or CLIPTextEncodeFlux */
#define FLUX_GUIDED(clip)                                                                                             \
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"" FLUX_PROMPT "\", \"clip\": " clip "}}, "    \
    "\"30\": {\"class_type\": \"FluxGuidance\", \"inputs\": {\"guidance\": 3.5, \"conditioning\": [\"6\", 0]}}"
#define FLUX_ENCODED(clip, guidance)                                                                                  \
    "\"30\": {\"class_type\": \"CLIPTextEncodeFlux\", \"inputs\": {\"clip_l\": \"" FLUX_PROMPT "\", \"t5xxl\": \""     \
    FLUX_PROMPT "\", \"guidance\": " guidance ", \"clip\": " clip "}}"
/* the negative prompt, node "31": the empty prompt, or it with FluxGuidance 5 */
#define FLUX_NEGATIVE(clip) "\"31\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": " clip "}}"
#define FLUX_NEGATIVE_GUIDED(clip)                                                                                    \
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": " clip "}}, "                 \
    "\"31\": {\"class_type\": \"FluxGuidance\", \"inputs\": {\"guidance\": 5, \"conditioning\": [\"7\", 0]}}"
#define FLUX_RUN_WITH(loaders, model, clip, vae, positive, negative)                                                 \
    "{" loaders ", " positive ", " negative ", "                                                                      \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 12, \"height\": 16, \"batch_size\": 1}}, "  \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 42, \"steps\": 4, \"cfg\": 2, \"sampler_name\": "     \
    "\"euler\", \"scheduler\": \"simple\", \"denoise\": 1, \"model\": " model ", \"positive\": [\"30\", 0], "          \
    "\"negative\": [\"31\", 0], \"latent_image\": [\"5\", 0]}}, "                                                      \
    "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": " vae "}}, "              \
    "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}"
#define FLUX_RUN(loaders, model, clip, vae)                                                                          \
    FLUX_RUN_WITH(loaders, model, clip, vae, FLUX_GUIDED(clip), FLUX_NEGATIVE(clip))

/* A workflow's one image against the golden file's `key` (in [0, 1]):
 * within a level of its 8-bit picture. */
static void check_picture(const char *json, const kiln_workflow_options *options, const char *golden_path,
                          const char *key)
{
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, options, &images, &count));
    assert_int_equal(count, 1);
    kiln_st_file *f = golden_open(golden_path);
    golden want = golden_read(f, key); /* (1, H, W, 3) */
    assert_int_equal(images[0].height, want.shape[1]);
    assert_int_equal(images[0].width, want.shape[2]);
    int worst = 0; /* against the golden's 8-bit picture as SaveImage makes it: clipped, truncated */
    for (size_t i = 0; i < want.count; i++) {
        int d = abs(images[0].pixels[i] - (int)fmin(fmax(255.0 * want.data[i], 0.0), 255.0));
        worst = d > worst ? d : worst;
    }
    print_message("  picture within %d level(s)\n", worst);
    assert_true(worst <= 1);
    golden_free(&want);
    kiln_st_close(f);
    kiln_images_free(images, count);
}

static void check_flux_picture(const char *json, const kiln_workflow_options *options, const char *key)
{
    check_picture(json, options, "flux/run.golden.safetensors", key);
}

static void flux_from_separate_files(void **state)
{
    (void)state;
    char tokenizer[1024], config[1024];
    snprintf(tokenizer, sizeof tokenizer, "%s", kiln_test_data("pixart/tiny/tokenizer/spiece.model"));
    snprintf(config, sizeof config, "%s", kiln_test_data("flux"));
    const kiln_workflow_options flux = {.tokenizer = tokenizer, .config = config};
    check_flux_picture(FLUX_RUN(FLUX_LOADERS, "[\"12\", 0]", "[\"11\", 0]", "[\"10\", 0]"), &flux, "run.image");
    /* CLIPTextEncodeFlux with both texts the prompt and FluxGuidance's number */
    check_flux_picture(FLUX_RUN_WITH(FLUX_LOADERS, "[\"12\", 0]", "[\"11\", 0]", "[\"10\", 0]",
                                     FLUX_ENCODED("[\"11\", 0]", "3.5"), FLUX_NEGATIVE("[\"11\", 0]")),
                       &flux, "run.image");
    /* guidance on both prompts: CLIPTextEncodeFlux's 2.5 on the positive, FluxGuidance 5 on the negative */
    check_flux_picture(FLUX_RUN_WITH(FLUX_LOADERS, "[\"12\", 0]", "[\"11\", 0]", "[\"10\", 0]",
                                     FLUX_ENCODED("[\"11\", 0]", "2.5"), FLUX_NEGATIVE_GUIDED("[\"11\", 0]")),
                       &flux, "guided.image");

    /* the same run as ComfyUI's Flux example workflows take it apart: RandomNoise, KSamplerSelect, BasicScheduler
       and CFGGuider into SamplerCustomAdvanced, the model through ModelSamplingFlux, whose line is pinned at both
       ends: 1.15 at 1024x1024 (max_shift) and at 256x256 (base_shift), each the dev model's own shift */
    static const char *const shifts[2] = {"\"max_shift\": 1.15, \"base_shift\": 0.5, \"width\": 1024, \"height\": 1024",
                                          "\"max_shift\": 3, \"base_shift\": 1.15, \"width\": 256, \"height\": 256"};
    for (int k = 0; k < 4; k++) {
        char json[8192], model[256];
        snprintf(model, sizeof model,
                 k != 2 ? "\"13\": {\"class_type\": \"ModelSamplingFlux\", \"inputs\": {%s, \"model\": [\"12\", 0]}}"
                       : "\"13\": {\"class_type\": \"ModelSamplingFlux\", \"inputs\": {\"max_shift\": 1.15, "
                         "\"base_shift\": 0.5, \"width\": 512, \"height\": 512, \"model\": [\"12\", 0]}}",
                 k < 2 ? shifts[k] : k == 3 ? shifts[0] : "");
        /* k 3: SamplerCustom, the noise and CFGGuider's inputs its own */
        const char *sampled = k == 3 ? "\"3\": {\"class_type\": \"SamplerCustom\", \"inputs\": {\"add_noise\": true, "
                                       "\"noise_seed\": 42, \"cfg\": 2, \"model\": [\"13\", 0], \"positive\": [\"30\", 0], "
                                       "\"negative\": [\"31\", 0], "
                                     : "\"3\": {\"class_type\": \"SamplerCustomAdvanced\", \"inputs\": {\"noise\": "
                                       "[\"25\", 0], \"guider\": [\"22\", 0], ";
        snprintf(json, sizeof json,
                 "{" FLUX_LOADERS ", %s, " FLUX_GUIDED("[\"11\", 0]") ", " FLUX_NEGATIVE("[\"11\", 0]") ", "
                 "\"5\": {\"class_type\": \"EmptySD3LatentImage\", \"inputs\": {\"width\": 12, \"height\": 16, "
                 "\"batch_size\": 1}}, "
                 "\"25\": {\"class_type\": \"RandomNoise\", \"inputs\": {\"noise_seed\": 42}}, "
                 "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "
                 "\"17\": {\"class_type\": \"BasicScheduler\", \"inputs\": {\"scheduler\": \"simple\", \"steps\": 4, "
                 "\"denoise\": 1, \"model\": [\"13\", 0]}}, "
                 "\"22\": {\"class_type\": \"CFGGuider\", \"inputs\": {\"cfg\": 2, \"model\": [\"13\", 0], "
                 "\"positive\": [\"30\", 0], \"negative\": [\"31\", 0]}}, "
                 "%s\"sampler\": [\"16\", 0], \"sigmas\": [\"17\", 0], \"latent_image\": [\"5\", 0]}}, "
                 "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"10\", 0]}}, "
                 "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}",
                 model, sampled);
        if (k != 2) {
            check_flux_picture(json, &flux, "run.image");
            continue;
        }
        /* 512x512 on that line is another shift: another picture */
        kiln_image *images;
        int count;
        assert_kiln_ok(kiln_workflow_run(backend, json, &flux, &images, &count));
        kiln_st_file *f = golden_open("flux/run.golden.safetensors");
        golden want = golden_read(f, "run.image");
        double worst = 0;
        for (size_t i = 0; i < want.count; i++) worst = fmax(worst, fabs(images[0].pixels[i] - 255.0 * want.data[i]));
        assert_true(worst > 2.0);
        golden_free(&want);
        kiln_st_close(f);
        kiln_images_free(images, count);
    }

    /* what kiln's one model cannot be: a checkpoint's VAE beside a VAELoader's, other loader settings */
    const kiln_workflow_options none = {0};
    kiln_image *images;
    int count;
    kiln_status st = kiln_workflow_run(
        backend, FLUX_RUN(FLUX_LOADERS ", " CKPT, "[\"12\", 0]", "[\"11\", 0]", "[\"4\", 2]"), &none, &images, &count);
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "node 8 (VAEDecode): input 'vae' reads node 4's VAE, which node 10's "
                                              "(VAELoader) replaces"));
    st = kiln_workflow_run(backend,
                           FLUX_RUN(FLUX_LOADERS ", \"13\": {\"class_type\": \"VAELoader\", \"inputs\": "
                                                 "{\"vae_name\": \"" KILN_TEST_DATA "/vae_flux/vae.safetensors\"}}",
                                    "[\"12\", 0]", "[\"11\", 0]", "[\"13\", 0]"),
                           &none, &images, &count);
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "node 13 (VAELoader): a second VAELoader"));
}

/* SD 3.5 as ComfyUI's SD3 workflows load it: Stability's checkpoint
 * (CheckpointLoaderSimple), or the same file with TripleCLIPLoader's three
 * text encoders replacing its own; CLIPTextEncodeSD3 on the positive
 * prompt, ModelSamplingSD3 at SD3's own shift, EmptySD3LatentImage. The
 * KSampler run of tests/data/sd3/run.golden (make_sd3_data.py: ComfyUI's
 * code restated) gives its picture within a level. */
#define SD3_FILE KILN_TEST_DATA "/sd3/single/sd3.5-tiny.safetensors"
#define SD3_PART(p) KILN_TEST_DATA "/sd3/tiny/" p
#define SD3_RUN(loaders, clip) SD3_RUN_WITH(loaders, clip, "", "[\"13\", 0]")
/* the same with more nodes and another MODEL into KSampler */
#define SD3_RUN_WITH(loaders, clip, extra, model)                                                                     \
    SD3_RUN_CONDITIONED(loaders, clip, extra, model, "[\"30\", 0]", "[\"31\", 0]")
/* and other conditioning into it */
#define SD3_RUN_CONDITIONED(loaders, clip, extra, model, positive, negative)                                          \
    "{" loaders ", " extra                                                                                            \
    "\"30\": {\"class_type\": \"CLIPTextEncodeSD3\", \"inputs\": {\"clip_l\": \"" FLUX_PROMPT "\", \"clip_g\": \""       \
    FLUX_PROMPT "\", \"t5xxl\": \"" FLUX_PROMPT "\", \"empty_padding\": \"none\", \"clip\": " clip "}}, "                 \
    FLUX_NEGATIVE(clip) ", "                                                                                          \
    "\"13\": {\"class_type\": \"ModelSamplingSD3\", \"inputs\": {\"shift\": 3, \"model\": [\"4\", 0]}}, "            \
    "\"5\": {\"class_type\": \"EmptySD3LatentImage\", \"inputs\": {\"width\": 12, \"height\": 16, \"batch_size\": 1}}, " \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 42, \"steps\": 4, \"cfg\": 2, \"sampler_name\": "     \
    "\"euler\", \"scheduler\": \"simple\", \"denoise\": 1, \"model\": " model ", \"positive\": " positive ", "               \
    "\"negative\": " negative ", \"latent_image\": [\"5\", 0]}}, "                                                       \
    "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}}, "             \
    "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}"

/* tests/data/sd3/controlnet_sd35's ControlNet on its picture through ControlNetApplySD3 "40" (0.8 over the first
   60 %) */
#define SD35_CONTROL_NODES                                                                                            \
    "\"41\": {\"class_type\": \"ControlNetLoader\", \"inputs\": {\"control_net_name\": \"" KILN_TEST_DATA             \
    "/sd3/controlnet_sd35/sd3.5-tiny-controlnet-depth.safetensors\"}}, "                                               \
    "\"42\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA                                 \
    "/sd3/controlnet/hint_12x16.png\"}}, "                                                                             \
    "\"40\": {\"class_type\": \"ControlNetApplySD3\", \"inputs\": {\"strength\": 0.8, \"start_percent\": 0, "            \
    "\"end_percent\": 0.6, \"positive\": [\"30\", 0], \"negative\": [\"31\", 0], \"control_net\": [\"41\", 0], "      \
    "\"image\": [\"42\", 0], \"vae\": [\"4\", 2]}}, "

/* SD3's example workflows' negative prompt "35": "31" from 0 to 0.1 combined with it zeroed from 0.1 to 1 */
#define SD3_NEGATIVE_PARTS                                                                                            \
    "\"32\": {\"class_type\": \"ConditioningZeroOut\", \"inputs\": {\"conditioning\": [\"31\", 0]}}, "                \
    "\"33\": {\"class_type\": \"ConditioningSetTimestepRange\", \"inputs\": {\"start\": 0.1, \"end\": 1, "           \
    "\"conditioning\": [\"32\", 0]}}, "                                                                            \
    "\"34\": {\"class_type\": \"ConditioningSetTimestepRange\", \"inputs\": {\"start\": 0, \"end\": 0.1, "           \
    "\"conditioning\": [\"31\", 0]}}, "                                                                            \
    "\"35\": {\"class_type\": \"ConditioningCombine\", \"inputs\": {\"conditioning_1\": [\"34\", 0], "              \
    "\"conditioning_2\": [\"33\", 0]}}, "

#define SD3_CHECKPOINT "\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" SD3_FILE "\"}}"

static void sd3_nodes(void **state)
{
    (void)state;
    char tokenizer[1024];
    snprintf(tokenizer, sizeof tokenizer, "%s", kiln_test_data("spm_tokenizer/spiece.model"));
    const kiln_workflow_options sd3 = {.tokenizer = tokenizer};
    check_picture(SD3_RUN(SD3_CHECKPOINT, "[\"4\", 1]"), &sd3, "sd3/run.golden.safetensors", "run.image");
    check_picture(SD3_RUN(SD3_CHECKPOINT ", \"11\": {\"class_type\": \"TripleCLIPLoader\", \"inputs\": {\"clip_name1\": \""
                          SD3_PART("text_encoder/model.safetensors") "\", \"clip_name2\": \""
                          SD3_PART("text_encoder_2/model.safetensors") "\", \"clip_name3\": \""
                          SD3_PART("text_encoder_3/model.safetensors") "\"}}",
                          "[\"11\", 0]"),
                  &sd3, "sd3/run.golden.safetensors", "run.image");
    /* SkipLayerGuidanceSD3 on block 1 over the first half, and SkipLayerGuidanceDiT on blocks 0 and 2 with
       rescaling: the restated post-CFG function's pictures */
    check_picture(SD3_RUN_WITH(SD3_CHECKPOINT, "[\"4\", 1]",
                               "\"14\": {\"class_type\": \"SkipLayerGuidanceSD3\", \"inputs\": {\"layers\": \"1\", "
                               "\"scale\": 3, \"start_percent\": 0, \"end_percent\": 0.5, \"model\": [\"13\", 0]}}, ",
                               "[\"14\", 0]"),
                  &sd3, "sd3/slg.golden.safetensors", "slg.image");
    check_picture(SD3_RUN_WITH(SD3_CHECKPOINT, "[\"4\", 1]",
                               "\"14\": {\"class_type\": \"SkipLayerGuidanceDiT\", \"inputs\": {\"double_layers\": "
                               "\"0, 2\", \"single_layers\": \"\", \"scale\": 2, \"start_percent\": 0.1, "
                               "\"end_percent\": 0.6, \"rescaling_scale\": 0.5, \"model\": [\"13\", 0]}}, ",
                               "[\"14\", 0]"),
                  &sd3, "sd3/slg.golden.safetensors", "slg_rescaled.image");
    /* an SD 3.5 ControlNet of Stability's kind through ControlNetApplySD3 (ControlNetApplyAdvanced's deprecated
       SD3 name, still in saved workflows): the restated run's picture */
    check_picture(SD3_RUN_CONDITIONED(SD3_CHECKPOINT, "[\"4\", 1]", SD35_CONTROL_NODES, "[\"13\", 0]", "[\"40\", 0]",
                                      "[\"40\", 1]"),
                  &sd3, "sd3/controlnet_sd35/golden.safetensors", "run.image");
    /* the negative prompt as SD3's example workflows give it: "" for the first 10 % combined with it zeroed after
       (ConditioningZeroOut, ConditioningSetTimestepRange, ConditioningCombine): the restated run's picture */
    check_picture(SD3_RUN_CONDITIONED(SD3_CHECKPOINT, "[\"4\", 1]", SD3_NEGATIVE_PARTS, "[\"13\", 0]", "[\"30\", 0]",
                                      "[\"35\", 0]"),
                  &sd3, "sd3/prompt_parts.golden.safetensors", "example.image");
    /* ComfyUI leaves an empty text's tower out under empty_padding "none", which kiln does not do */
    kiln_image *images;
    int count;
    static const char empty_text[] =
        "{" SD3_CHECKPOINT ", \"30\": {\"class_type\": \"CLIPTextEncodeSD3\", \"inputs\": {\"clip_l\": \"\", "
        "\"clip_g\": \"a fox\", \"t5xxl\": \"a fox\", \"empty_padding\": \"none\", \"clip\": [\"4\", 1]}}, "
        "\"31\": {\"class_type\": \"ConditioningZeroOut\", \"inputs\": {\"conditioning\": [\"30\", 0]}}, "
        "\"5\": {\"class_type\": \"EmptySD3LatentImage\", \"inputs\": {\"width\": 12, \"height\": 16, \"batch_size\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 42, \"steps\": 4, \"cfg\": 2, \"sampler_name\": "
        "\"euler\", \"scheduler\": \"simple\", \"denoise\": 1, \"model\": [\"4\", 0], \"positive\": [\"30\", 0], "
        "\"negative\": [\"31\", 0], \"latent_image\": [\"5\", 0]}}, "
        "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}";
    assert_int_equal(kiln_workflow_run(backend, empty_text, &sd3, &images, &count), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "node 30 (CLIPTextEncodeSD3): empty_padding 'none' with an empty text"));
}

/* The workflow's picture of a KSampler run (seed 5, 2 steps, cfg 7, euler,
 * 16x16) on the tiny SD 1.5 model with positive prompt node "13" (made by
 * `nodes`) against the library's with the conditioning `want`. */
static void check_sd15_prompt(const char *nodes, const kiln_conditioning *want, kiln_model *m)
{
    char json[8192];
    snprintf(json, sizeof json,
             "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" KILN_TEST_DATA
             "/tiny/sd15_tiny_ldm_fp32.safetensors\"}}, "
             "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "
             "\"clip\": [\"4\", 1]}}, "
             "\"10\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"on a blue field\", "
             "\"clip\": [\"4\", 1]}}, "
             "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, %s, "
             "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, "
             "\"batch_size\": 1}}, "
             "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 7, "
             "\"sampler_name\": "
             "\"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], \"positive\": [\"13\", 0], "
             "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
             "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}}, "
             "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}",
             nodes);
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, 1);
    kiln_conditioning neg;
    kiln_latent empty, out;
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    const kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 7.0, .sampler_name = "euler",
                                    .scheduler = "normal", .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, want, &neg, &empty, &out));
    assert_decodes_to(m, &out, &images[0]);
    kiln_images_free(images, count);
    kiln_latent_free(&out);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&neg);
}

/* ConditioningConcat and ConditioningAverage as ComfyUI makes them: the
 * from prompt's rows after the to prompt's; to times the strength plus from
 * times one minus it, each product rounded to float (torch.mul), the pooled
 * outputs alike. The workflow's pictures are the library's on those
 * conditionings, pixel for pixel. */
static void conditioning_concat_and_average(void **state)
{
    (void)state;
    kiln_model *m;
    kiln_conditioning a, b;
    assert_kiln_ok(kiln_checkpoint_load(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", NULL, 0, &m));
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &a));
    assert_kiln_ok(kiln_text_encode(m, "on a blue field", 0, &b));
    const size_t na = (size_t)a.tokens * a.dim, nb = (size_t)b.tokens * b.dim;
    kiln_conditioning joined = {malloc((na + nb) * sizeof(float)), a.tokens + b.tokens, a.dim, NULL, 0};
    assert_non_null(joined.data);
    memcpy(joined.data, a.data, na * sizeof(float));
    memcpy(joined.data + na, b.data, nb * sizeof(float));
    check_sd15_prompt("\"13\": {\"class_type\": \"ConditioningConcat\", \"inputs\": {\"conditioning_to\": [\"6\", 0], "
                      "\"conditioning_from\": [\"10\", 0]}}",
                      &joined, m);
    kiln_conditioning mixed = {malloc(na * sizeof(float)), a.tokens, a.dim, NULL, 0};
    assert_non_null(mixed.data);
    for (size_t i = 0; i < na; i++) {
        const float mine = a.data[i] * 0.3f, theirs = (i < nb ? b.data[i] : 0.0f) * (float)(1.0 - 0.3);
        mixed.data[i] = mine + theirs;
    }
    check_sd15_prompt("\"13\": {\"class_type\": \"ConditioningAverage\", \"inputs\": {\"conditioning_to\": [\"6\", 0], "
                      "\"conditioning_from\": [\"10\", 0], \"conditioning_to_strength\": 0.3}}",
                      &mixed, m);
    kiln_conditioning_free(&joined);
    kiln_conditioning_free(&mixed);
    kiln_conditioning_free(&a);
    kiln_conditioning_free(&b);
    kiln_model_free(m);
}

/* ImageScaleBy (each side times 1.5, Python's round), ImageScale (a
 * width of 0 following the height in the picture's aspect ratio) and
 * ImageScaleToTotalPixels (its sizes in Python's doubles, with and without
 * resolution_steps) on a LoadImage: kiln_image_scale's pictures at those
 * sizes. */
static void image_scale_nodes(void **state)
{
    (void)state;
    static const char json[] =
        "{\"1\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA
        "/controlnet/hint_37x23.png\"}}, "
        "\"2\": {\"class_type\": \"ImageScaleBy\", \"inputs\": {\"upscale_method\": \"bilinear\", \"scale_by\": 1.5, "
        "\"image\": [\"1\", 0]}}, "
        "\"3\": {\"class_type\": \"ImageScale\", \"inputs\": {\"upscale_method\": \"lanczos\", \"width\": 0, "
        "\"height\": 40, \"crop\": \"disabled\", \"image\": [\"1\", 0]}}, "
        "\"4\": {\"class_type\": \"ImageScaleToTotalPixels\", \"inputs\": {\"upscale_method\": \"bicubic\", "
        "\"megapixels\": 0.01, \"image\": [\"1\", 0]}}, "
        "\"5\": {\"class_type\": \"ImageScaleToTotalPixels\", \"inputs\": {\"upscale_method\": \"nearest-exact\", "
        "\"megapixels\": 0.01, \"resolution_steps\": 16, \"image\": [\"1\", 0]}}, "
        "\"8\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"3\", 0]}}, "
        "\"10\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"4\", 0]}}, "
        "\"11\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"5\", 0]}}}";
    kiln_image *images, picture, want[4];
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, 4);
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &picture));
    assert_kiln_ok(kiln_image_scale(&picture, "bilinear", 56, 34, false, &want[0])); /* 55.5 and 34.5 to even */
    assert_kiln_ok(kiln_image_scale(&picture, "lanczos", 64, 40, false, &want[1]));  /* round(37 * 40 / 23) */
    /* 0.01 megapixels: 37 and 23 times sqrt(10485.76 / 851), 129.9 and 80.7; in steps of 16, 8.1 and 5.0 of them */
    assert_kiln_ok(kiln_image_scale(&picture, "bicubic", 130, 81, false, &want[2]));
    assert_kiln_ok(kiln_image_scale(&picture, "nearest-exact", 128, 80, false, &want[3]));
    for (int i = 0; i < 4; i++) { /* SaveImage nodes in the order of their ids */
        assert_int_equal(images[i].width, want[i].width);
        assert_int_equal(images[i].height, want[i].height);
        assert_memory_equal(images[i].pixels, want[i].pixels, (size_t)want[i].width * want[i].height * 3);
        kiln_image_free(&want[i]);
    }
    kiln_image_free(&picture);
    kiln_images_free(images, count);
}

/* ImageCrop, RepeatImageBatch and ImageFromBatch as Python's slices of
 * the batch: a crop inside the picture and one cut at its edge (x past the
 * last column clamped to it), a batch of 2 made 3 times over (the whole
 * batch repeated), and 2 pictures from index 3 of it. */
static void image_pick_nodes(void **state)
{
    (void)state;
    static const char json[] =
        "{\"1\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA
        "/controlnet/hint_37x23.png\"}}, "
        "\"2\": {\"class_type\": \"ImageCrop\", \"inputs\": {\"width\": 10, \"height\": 7, \"x\": 5, \"y\": 3, "
        "\"image\": [\"1\", 0]}}, "
        "\"3\": {\"class_type\": \"ImageCrop\", \"inputs\": {\"width\": 10, \"height\": 30, \"x\": 50, \"y\": 20, "
        "\"image\": [\"1\", 0]}}, "
        "\"4\": {\"class_type\": \"ImageBatch\", \"inputs\": {\"image1\": [\"1\", 0], \"image2\": [\"2\", 0]}}, "
        "\"5\": {\"class_type\": \"RepeatImageBatch\", \"inputs\": {\"amount\": 3, \"image\": [\"4\", 0]}}, "
        "\"6\": {\"class_type\": \"ImageFromBatch\", \"inputs\": {\"batch_index\": 3, \"length\": 2, "
        "\"image\": [\"5\", 0]}}, "
        "\"8\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"2\", 0]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"3\", 0]}}, "
        "\"10\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"5\", 0]}}, "
        "\"11\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"6\", 0]}}}";
    kiln_image *images, picture, scaled;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, 1 + 1 + 6 + 2);
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &picture));
    /* the crops: (5, 3) 10x7, and from (36, 20) what is left, 1x3 */
    const int crops[2][4] = {{5, 3, 10, 7}, {36, 20, 1, 3}};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(images[k].width, crops[k][2]);
        assert_int_equal(images[k].height, crops[k][3]);
        for (int row = 0; row < crops[k][3]; row++)
            assert_memory_equal(images[k].pixels + (size_t)row * crops[k][2] * 3,
                                picture.pixels + ((size_t)(crops[k][1] + row) * 37 + crops[k][0]) * 3,
                                (size_t)crops[k][2] * 3);
    }
    /* the batch: the picture, then the crop fitted to its size; three times over; its pictures 3 and 4 */
    assert_kiln_ok(kiln_image_scale(&images[0], "bilinear", 37, 23, true, &scaled));
    const kiln_image *batch[2] = {&picture, &scaled};
    for (int k = 0; k < 8; k++) {
        const kiln_image *want = batch[k < 6 ? k % 2 : (3 + k - 6) % 2];
        assert_int_equal(images[2 + k].width, 37);
        assert_memory_equal(images[2 + k].pixels, want->pixels, (size_t)37 * 23 * 3);
    }
    kiln_image_free(&scaled);
    kiln_image_free(&picture);
    kiln_images_free(images, count);
}

/* A hires fix through LatentUpscale (to 96x80 pixels as ComfyUI counts
 * them, / 8 whatever the VAE; the centre cut):
 * the library's run (kiln_ksampler, kiln_latent_upscale, kiln_ksampler at
 * denoise 0.6) pixel for pixel. */
static void latent_upscale_node(void **state)
{
    (void)state;
    static const char json[] =
        "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" KILN_TEST_DATA
        "/tiny/sd15_tiny_ldm_fp32.safetensors\"}}, "
        "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", \"clip\": [\"4\", 1]}}, "
        "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "
        "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 7, \"sampler_name\": "
        "\"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], \"positive\": [\"6\", 0], "
        "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
        "\"10\": {\"class_type\": \"LatentUpscale\", \"inputs\": {\"upscale_method\": \"bilinear\", \"width\": 96, "
        "\"height\": 80, \"crop\": \"center\", \"samples\": [\"3\", 0]}}, "
        "\"11\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 7, \"sampler_name\": "
        "\"euler\", \"scheduler\": \"normal\", \"denoise\": 0.6, \"model\": [\"4\", 0], \"positive\": [\"6\", 0], "
        "\"negative\": [\"7\", 0], \"latent_image\": [\"10\", 0]}}, "
        "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"11\", 0], \"vae\": [\"4\", 2]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}";
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, 1);
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, first, upscaled, out;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 7.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &first));
    assert_kiln_ok(kiln_latent_upscale(&first, "bilinear", 96, 80, true, &upscaled));
    assert_int_equal(upscaled.width, 12);
    assert_int_equal(upscaled.height, 10);
    p.denoise = 0.6;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &upscaled, &out));
    assert_decodes_to(m, &out, &images[0]);
    kiln_images_free(images, count);
    kiln_latent_free(&out);
    kiln_latent_free(&upscaled);
    kiln_latent_free(&first);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* A workflow's one picture against the library's run with its IP-Adapter:
 * the model and adapter files, the tiny CLIP vision tower, the pictures,
 * the weight over the whole run, the positive prompt (the negative empty)
 * and the KSampler's numbers, pixel for pixel. */
static void check_ip_adapter_picture(const char *json, const char *model, const char *adapter,
                                     const kiln_image *pictures, int count, double weight, const char *prompt,
                                     const kiln_ksampler_params *sampling)
{
    kiln_image *images;
    int n;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &n));
    assert_int_equal(n, 1);
    kiln_model *m;
    kiln_ip_adapter *ipa;
    kiln_clip_vision *cv;
    assert_kiln_ok(kiln_checkpoint_load(backend, model, NULL, 0, &m));
    assert_kiln_ok(kiln_ip_adapter_load(m, adapter, &ipa));
    assert_kiln_ok(kiln_clip_vision_load(backend, KILN_TEST_DATA "/ip_adapter/clip_vision_tiny.safetensors", &cv));
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, prompt, 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    const kiln_ip_adapter_apply ip = {ipa, cv, pictures, weight, 0.0, 1.0, count};
    kiln_ksampler_params p = *sampling;
    p.ip_adapter = &ip;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    assert_decodes_to(m, &out, &images[0]);
    kiln_images_free(images, n);
    kiln_latent_free(&out);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_clip_vision_free(cv);
    kiln_ip_adapter_free(ipa);
    kiln_model_free(m);
}

/* XLabs' Flux IP-Adapter through x-flux-comfyui's LoadFluxIPAdapter and
 * ApplyFluxIPAdapter: the same picture as the library's call with that
 * adapter, tower, picture and weight over the whole run. */
static void flux_ip_adapter_nodes(void **state)
{
    (void)state;
    static const char json[] =
        "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" KILN_TEST_DATA
        "/flux/controlnet\"}}, "
        "\"20\": {\"class_type\": \"LoadFluxIPAdapter\", \"inputs\": {\"ipadatper\": \"" KILN_TEST_DATA
        "/flux/controlnet/ip_adapter.safetensors\", \"clip_vision\": \"" KILN_TEST_DATA
        "/ip_adapter/clip_vision_tiny.safetensors\", \"provider\": \"CPU\"}}, "
        "\"21\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA
        "/ip_adapter/picture_251x233.png\"}}, "
        "\"22\": {\"class_type\": \"ApplyFluxIPAdapter\", \"inputs\": {\"ip_scale\": 0.8, \"model\": [\"4\", 0], "
        "\"ip_adapter_flux\": [\"20\", 0], \"image\": [\"21\", 0]}}, "
        "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red fox\", \"clip\": [\"4\", 1]}}, "
        "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "
        "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 2, \"sampler_name\": "
        "\"euler\", \"scheduler\": \"simple\", \"denoise\": 1, \"model\": [\"22\", 0], \"positive\": [\"6\", 0], "
        "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
        "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}";
    kiln_image picture;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/ip_adapter/picture_251x233.png", &picture));
    const kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 2.0, .sampler_name = "euler",
                                    .scheduler = "simple", .denoise = 1.0};
    check_ip_adapter_picture(json, KILN_TEST_DATA "/flux/controlnet", KILN_TEST_DATA
                             "/flux/controlnet/ip_adapter.safetensors", &picture, 1, 0.8, "a red fox", &p);
    kiln_image_free(&picture);
}

/* ImageBatch of two pictures of other sizes into IPAdapterAdvanced (its
 * combine_embeds "concat"): the second fitted to the first's size, both
 * pictures' tokens side by side, the library's run with those two pictures
 * pixel for pixel; another combine_embeds is refused by name. */
#define IP_BATCH_GRAPH(combine)                                                                                       \
    "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" KILN_TEST_DATA              \
    "/tiny/sd15_tiny_ldm_fp32.safetensors\"}}, "                                                                      \
    "\"20\": {\"class_type\": \"IPAdapterModelLoader\", \"inputs\": {\"ipadapter_file\": \"" KILN_TEST_DATA            \
    "/ip_adapter/ip_adapter_plus_tiny.safetensors\"}}, "                                                              \
    "\"24\": {\"class_type\": \"CLIPVisionLoader\", \"inputs\": {\"clip_name\": \"" KILN_TEST_DATA                     \
    "/ip_adapter/clip_vision_tiny.safetensors\"}}, "                                                                  \
    "\"21\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA                                \
    "/ip_adapter/picture_251x233.png\"}}, "                                                                           \
    "\"25\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA                                \
    "/controlnet/hint_37x23.png\"}}, "                                                                                \
    "\"26\": {\"class_type\": \"ImageBatch\", \"inputs\": {\"image1\": [\"21\", 0], \"image2\": [\"25\", 0]}}, "       \
    "\"22\": {\"class_type\": \"IPAdapterAdvanced\", \"inputs\": {\"weight\": 0.8, \"weight_type\": \"linear\", "      \
    "\"combine_embeds\": \"" combine "\", \"start_at\": 0, \"end_at\": 1, \"embeds_scaling\": \"V only\", "           \
    "\"model\": [\"4\", 0], \"ipadapter\": [\"20\", 0], \"image\": [\"26\", 0], \"clip_vision\": [\"24\", 0]}}, "    \
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", \"clip\": [\"4\", 1]}}, "     \
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "                \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "   \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 4, \"sampler_name\": "      \
    "\"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"22\", 0], \"positive\": [\"6\", 0], "         \
    "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "                                                       \
    "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}}, "               \
    "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}"

static void expect_refusal(const char *json, kiln_status want, const char *needle);

static void ip_adapter_image_batch(void **state)
{
    (void)state;
    kiln_image pictures[2], hint;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/ip_adapter/picture_251x233.png", &pictures[0]));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &hint));
    assert_kiln_ok(kiln_image_scale(&hint, "bilinear", 251, 233, true, &pictures[1]));
    const kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 4.0, .sampler_name = "euler",
                                    .scheduler = "normal", .denoise = 1.0};
    check_ip_adapter_picture(IP_BATCH_GRAPH("concat"), KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors",
                             KILN_TEST_DATA "/ip_adapter/ip_adapter_plus_tiny.safetensors", pictures, 2, 0.8,
                             "a red circle", &p);
    expect_refusal(IP_BATCH_GRAPH("average"), KILN_ERR_UNSUPPORTED,
                   "node 22 (IPAdapterAdvanced): combine_embeds 'average' of 2 pictures (kiln: concat)");
    for (int i = 0; i < 2; i++) kiln_image_free(&pictures[i]);
    kiln_image_free(&hint);
}
#undef IP_BATCH_GRAPH

/* FLUX.1 Kontext as ComfyUI's example workflow has it: VAEEncode of the
 * picture into ReferenceLatent on the positive prompt, the negative through
 * ConditioningZeroOut: the same picture as the library's call with that
 * reference and a zeroed negative conditioning. */
/* the graph, with `method` nodes between the references and the KSampler's `positive` */
#define KONTEXT_GRAPH(method, positive)                                                                               \
    "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" KILN_TEST_DATA              \
    "/flux/tiny\"}}, "                                                                                                \
    "\"21\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA                                \
    "/flux/fill/picture_16x16.png\"}}, "                                                                              \
    "\"22\": {\"class_type\": \"VAEEncode\", \"inputs\": {\"pixels\": [\"21\", 0], \"vae\": [\"4\", 2]}}, "                \
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red fox\", \"clip\": [\"4\", 1]}}, "           \
    "\"23\": {\"class_type\": \"ReferenceLatent\", \"inputs\": {\"conditioning\": [\"6\", 0], "                         \
    "\"latent\": [\"22\", 0]}}, " method                                                                               \
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", \"clip\": [\"4\", 1]}}, "              \
    "\"24\": {\"class_type\": \"ConditioningZeroOut\", \"inputs\": {\"conditioning\": [\"7\", 0]}}, "                   \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "   \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 2, \"sampler_name\": "      \
    "\"euler\", \"scheduler\": \"simple\", \"denoise\": 1, \"model\": [\"4\", 0], \"positive\": [\"" positive "\", 0], " \
    "\"negative\": [\"24\", 0], \"latent_image\": [\"5\", 0]}}, "                                                       \
    "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}}, "               \
    "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}"
#define KONTEXT_METHOD(name)                                                                                          \
    "\"25\": {\"class_type\": \"FluxKontextMultiReferenceLatentMethod\", \"inputs\": {\"conditioning\": [\"23\", 0], "   \
    "\"reference_latents_method\": \"" name "\"}}, "

static void kontext_nodes(void **state)
{
    (void)state;
    static const char json[] = KONTEXT_GRAPH("", "23");
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));

    kiln_model *m;
    kiln_image picture, decoded;
    assert_kiln_ok(kiln_checkpoint_load(backend, KILN_TEST_DATA "/flux/tiny", NULL, 0, &m));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/flux/fill/picture_16x16.png", &picture));
    kiln_latent reference, empty, out;
    assert_kiln_ok(kiln_vae_encode(m, &picture, 1, &reference));
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red fox", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &neg));
    memset(neg.data, 0, (size_t)neg.tokens * neg.dim * sizeof *neg.data);
    memset(neg.pooled, 0, (size_t)neg.pooled_dim * sizeof *neg.pooled);
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .reference = &reference};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    assert_decodes_to(m, &out, &images[0]);
    kiln_images_free(images, count);
    kiln_latent_free(&out);

    /* FluxKontextMultiReferenceLatentMethod after the references: the library's call with that placement */
    static const char with_method[] = KONTEXT_GRAPH(KONTEXT_METHOD("uxo/uno"), "25");
    assert_kiln_ok(kiln_workflow_run(backend, with_method, &options, &images, &count));
    p.reference_method = KILN_REFERENCE_UXO;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    assert_decodes_to(m, &out, &images[0]);
    kiln_images_free(images, count);
    static const char unknown_method[] = KONTEXT_GRAPH(KONTEXT_METHOD("uxo/x"), "25");
    assert_int_equal(kiln_workflow_run(backend, unknown_method, &options, &images, &count), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "offset, index or uxo/uno"));
    kiln_latent_free(&out);
    kiln_latent_free(&empty);
    kiln_latent_free(&reference);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_image_free(&picture);
    kiln_model_free(m);

    /* FluxKontextImageScale, which the example puts before VAEEncode: the library's picture */
    static const char scale[] =
        "{\"21\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA
        "/controlnet/hint_37x23.png\"}}, "
        "\"22\": {\"class_type\": \"FluxKontextImageScale\", \"inputs\": {\"image\": [\"21\", 0]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"22\", 0]}}}";
    assert_kiln_ok(kiln_workflow_run(backend, scale, &options, &images, &count));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &picture));
    assert_kiln_ok(kiln_flux_kontext_image_scale(&picture, &decoded));
    assert_int_equal(count, 1);
    assert_int_equal(images[0].width, 1328);
    assert_memory_equal(images[0].pixels, decoded.pixels, (size_t)1328 * 800 * 3);
    kiln_image_free(&decoded);
    kiln_image_free(&picture);
    kiln_images_free(images, count);
}

static void expect_refusal(const char *json, kiln_status want, const char *needle)
{
    kiln_image *images = (kiln_image *)&images;
    int count = -1;
    kiln_status st = kiln_workflow_run(backend, json, &options, &images, &count);
    if (st != want) fail_msg("%s: got %s (%s), expected %s", json, kiln_status_name(st), kiln_last_error(),
                             kiln_status_name(want));
    if (!strstr(kiln_last_error(), needle)) fail_msg("message '%s' does not name '%s'", kiln_last_error(), needle);
    assert_null(images);
    assert_int_equal(count, 0);
}

/* A graph's opening: the checkpoint and its two prompts, "a red circle" ("6") and the empty one ("7"). */
#define CKPT_PROMPTS                                                                                                  \
    "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "                \
    "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "                \
    "\"clip\": [\"4\", 1]}}, "

#define DECODE_SAVE(samples)                                                                                          \
    "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": " samples ", \"vae\": [\"4\", 2]}}, "           \
    "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}"

/* The SIGMAS nodes into SamplerCustom and SamplerCustomAdvanced on the tiny
 * SD 1.x model, each against the library's run on the same sigmas, pixel
 * for pixel: SDXL-Turbo's example (SDTurboScheduler, euler_ancestral, cfg
 * 1), KarrasScheduler split by SplitSigmas into two SamplerCustom nodes (the
 * second without noise), dpm_2 on BasicScheduler's sigmas of the model
 * through ModelSamplingDiscrete (which KSampler would lengthen by a step),
 * and SamplerDPMPP_2M_SDE's heun solver, eta and s_noise on
 * AlignYourStepsScheduler's. */
#define SIGMAS_RUN(nodes, sampled)                                                                                   \
    "{" CKPT ", "                                                                                                      \
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", \"clip\": [\"4\", 1]}}, "    \
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "               \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "  \
    nodes ", " DECODE_SAVE(sampled) "}"
#define SAMPLER_CUSTOM(id, noise, sampler, sigmas, latent)                                                            \
    "\"" id "\": {\"class_type\": \"SamplerCustom\", \"inputs\": {\"add_noise\": " noise ", \"noise_seed\": 5, "          \
    "\"cfg\": 1, \"model\": [\"4\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"sampler\": " sampler     \
    ", \"sigmas\": " sigmas ", \"latent_image\": " latent "}}"

/* SamplerEulerCFGpp's regular version is KSamplerSelect's euler_cfg_pp,
 * pixel for pixel; its alternative one the library's euler_cfg_pp with
 * that option (its steps are test_sampler's), another version refused. */
static void sampler_euler_cfg_pp_node(void **state)
{
    (void)state;
#define CFG_PP_RUN(sampler_node)                                                                                      \
    SIGMAS_RUN("\"16\": " sampler_node ", \"17\": {\"class_type\": \"BasicScheduler\", \"inputs\": {\"scheduler\": "   \
               "\"normal\", \"steps\": 3, \"denoise\": 1, \"model\": [\"4\", 0]}}, "                                    \
               SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]")
    static const char *const graphs[3] = {
        CFG_PP_RUN("{\"class_type\": \"SamplerEulerCFGpp\", \"inputs\": {\"version\": \"regular\"}}"),
        CFG_PP_RUN("{\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler_cfg_pp\"}}"),
        CFG_PP_RUN("{\"class_type\": \"SamplerEulerCFGpp\", \"inputs\": {\"version\": \"alternative\"}}")};
    const char *const sideways =
        CFG_PP_RUN("{\"class_type\": \"SamplerEulerCFGpp\", \"inputs\": {\"version\": \"sideways\"}}");
#undef CFG_PP_RUN
    kiln_image *images[2];
    int count[2];
    for (int k = 0; k < 2; k++) assert_kiln_ok(kiln_workflow_run(backend, graphs[k], &options, &images[k], &count[k]));
    assert_int_equal(count[0], 1), assert_int_equal(count[1], 1);
    assert_memory_equal(images[0][0].pixels, images[1][0].pixels,
                        (size_t)images[0][0].width * images[0][0].height * 3);
    for (int k = 0; k < 2; k++) kiln_images_free(images[k], count[k]);
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    kiln_sigmas sigmas;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    assert_kiln_ok(kiln_basic_scheduler(m, "normal", 3, 1.0, &sigmas));
    const kiln_sampler_options alternative = {.eta = 1.0, .s_noise = 1.0, .euler_cfg_pp_alternative = true};
    const kiln_ksampler_params p = {.seed = 5, .cfg = 1.0, .sampler_name = "euler_cfg_pp", .sigmas = &sigmas,
                                    .sampler_options = &alternative};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(graphs[2], m, &latent);
    kiln_latent_free(&latent);
    kiln_ksampler_params euler = p;
    euler.sampler_name = "euler";
    assert_refused_naming(kiln_ksampler(m, &euler, &pos, &neg, &empty, &latent),
                          "SamplerEulerCFGpp's alternative version is euler_cfg_pp's, not euler's");
    kiln_sigmas_free(&sigmas);
    tiny_sd15_free(m, &pos, &neg, &empty);
    expect_refusal(sideways, KILN_ERR_INVALID_ARG, "node 16 (SamplerEulerCFGpp): version 'sideways' (regular or "
                   "alternative)");
}

static void sigma_nodes(void **state)
{
    (void)state;
    static const char turbo[] = SIGMAS_RUN(
        "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler_ancestral\"}}, "
        "\"17\": {\"class_type\": \"SDTurboScheduler\", \"inputs\": {\"steps\": 2, \"denoise\": 1, "
        "\"model\": [\"4\", 0]}}, " SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"),
        "[\"3\", 0]");
    static const char split[] = SIGMAS_RUN(
        "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "
        "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": 14.614642, "
        "\"sigma_min\": 0.0291675, \"rho\": 7}}, "
        "\"18\": {\"class_type\": \"SplitSigmas\", \"inputs\": {\"step\": 2, \"sigmas\": [\"17\", 0]}}, "
        SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"18\", 0]", "[\"5\", 0]") ", "
        SAMPLER_CUSTOM("13", "false", "[\"16\", 0]", "[\"18\", 1]", "[\"3\", 0]"),
        "[\"13\", 0]");
    static const char dpm_2[] = SIGMAS_RUN(
        "\"80\": {\"class_type\": \"ModelSamplingDiscrete\", \"inputs\": {\"sampling\": \"eps\", \"zsnr\": false, "
        "\"model\": [\"4\", 0]}}, "
        "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"dpm_2\"}}, "
        "\"17\": {\"class_type\": \"BasicScheduler\", \"inputs\": {\"scheduler\": \"normal\", \"steps\": 3, "
        "\"denoise\": 1, \"model\": [\"80\", 0]}}, "
        "\"25\": {\"class_type\": \"RandomNoise\", \"inputs\": {\"noise_seed\": 5}}, "
        "\"22\": {\"class_type\": \"BasicGuider\", \"inputs\": {\"model\": [\"4\", 0], \"conditioning\": [\"6\", 0]}}, "
        "\"3\": {\"class_type\": \"SamplerCustomAdvanced\", \"inputs\": {\"noise\": [\"25\", 0], \"guider\": "
        "[\"22\", 0], \"sampler\": [\"16\", 0], \"sigmas\": [\"17\", 0], \"latent_image\": [\"5\", 0]}}",
        "[\"3\", 0]");
    static const char sde[] = SIGMAS_RUN(
        "\"16\": {\"class_type\": \"SamplerDPMPP_2M_SDE\", \"inputs\": {\"solver_type\": \"heun\", \"eta\": 0.5, "
        "\"s_noise\": 0.8, \"noise_device\": \"gpu\"}}, "
        "\"17\": {\"class_type\": \"AlignYourStepsScheduler\", \"inputs\": {\"model_type\": \"SD1\", \"steps\": 3, "
        "\"denoise\": 1}}, " SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"),
        "[\"3\", 0]");
    const char *const runs[4] = {turbo, split, dpm_2, sde};
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent[2];
    kiln_sigmas sigmas[3];
    tiny_sd15(&m, "", &pos, &neg, &empty);
    for (int run = 0; run < 4; run++) {
        kiln_ksampler_params p = {.seed = 5, .cfg = 1.0, .sampler_name = "euler", .sigmas = &sigmas[0]};
        if (run == 0) {
            p.sampler_name = "euler_ancestral";
            assert_kiln_ok(kiln_sd_turbo_scheduler(m, 2, 1.0, &sigmas[2]));
            assert_int_equal(sigmas[2].count, 3);
            assert_kiln_ok(kiln_sigmas_split(&sigmas[2], 9, &sigmas[0], &sigmas[1])); /* all in the first */
            assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent[1]));
        } else if (run == 1) {
            assert_kiln_ok(kiln_karras_scheduler(4, 14.614642, 0.0291675, 7.0, &sigmas[2]));
            assert_kiln_ok(kiln_sigmas_split(&sigmas[2], 2, &sigmas[0], &sigmas[1]));
            assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent[0]));
            p.sigmas = &sigmas[1], p.disable_noise = true;
            assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &latent[0], &latent[1]));
            kiln_latent_free(&latent[0]);
        } else if (run == 3) {
            const kiln_sampler_options options = {.eta = 0.5, .s_noise = 0.8};
            p.sampler_name = "dpmpp_2m_sde_heun", p.sampler_options = &options;
            assert_kiln_ok(kiln_align_your_steps_scheduler("SD1", 3, 1.0, &sigmas[2]));
            assert_kiln_ok(kiln_sigmas_split(&sigmas[2], 9, &sigmas[0], &sigmas[1]));
            assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent[1]));
        } else {
            p.sampler_name = "dpm_2";
            assert_kiln_ok(kiln_basic_scheduler(m, "normal", 3, 1.0, &sigmas[2]));
            assert_int_equal(sigmas[2].count, 4);
            assert_kiln_ok(kiln_sigmas_split(&sigmas[2], 9, &sigmas[0], &sigmas[1]));
            assert_kiln_ok(kiln_ksampler(m, &p, &pos, &pos, &empty, &latent[1])); /* BasicGuider: no negative */
        }
        assert_workflow_decodes_to(runs[run], m, &latent[1]);
        kiln_latent_free(&latent[1]);
        for (int i = 0; i < 3; i++) kiln_sigmas_free(&sigmas[i]);
    }
    /* SamplerCustom's denoised_output (its second output) after the first half of a split run */
    static const char denoised[] = SIGMAS_RUN(
        "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "
        "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": 14.614642, "
        "\"sigma_min\": 0.0291675, \"rho\": 7}}, "
        "\"18\": {\"class_type\": \"SplitSigmas\", \"inputs\": {\"step\": 2, \"sigmas\": [\"17\", 0]}}, "
        SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"18\", 0]", "[\"5\", 0]"),
        "[\"3\", 1]");
    {
        kiln_latent x0, out;
        kiln_ksampler_params p = {.seed = 5, .cfg = 1.0, .sampler_name = "euler", .sigmas = &sigmas[0],
                                  .denoised_output = &x0};
        assert_kiln_ok(kiln_karras_scheduler(4, 14.614642, 0.0291675, 7.0, &sigmas[2]));
        assert_kiln_ok(kiln_sigmas_split(&sigmas[2], 2, &sigmas[0], &sigmas[1]));
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
        assert_workflow_decodes_to(denoised, m, &x0);
        kiln_latent_free(&x0), kiln_latent_free(&out);
        for (int i = 0; i < 3; i++) kiln_sigmas_free(&sigmas[i]);
    }
    /* AddNoise at a first sigma SamplingPercentToSigma gives (a FLOAT into SetFirstSigma), then sampling without
       noise of its own: the library's calls with those values */
    static const char added[] = SIGMAS_RUN(
        "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "
        "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": 14.614642, "
        "\"sigma_min\": 0.0291675, \"rho\": 7}}, "
        "\"19\": {\"class_type\": \"SamplingPercentToSigma\", \"inputs\": {\"model\": [\"4\", 0], "
        "\"sampling_percent\": 0.3, \"return_actual_sigma\": false}}, "
        "\"18\": {\"class_type\": \"SetFirstSigma\", \"inputs\": {\"sigma\": [\"19\", 0], \"sigmas\": [\"17\", 0]}}, "
        "\"25\": {\"class_type\": \"RandomNoise\", \"inputs\": {\"noise_seed\": 9}}, "
        "\"20\": {\"class_type\": \"AddNoise\", \"inputs\": {\"model\": [\"4\", 0], \"noise\": [\"25\", 0], "
        "\"sigmas\": [\"18\", 0], \"latent_image\": [\"5\", 0]}}, "
        SAMPLER_CUSTOM("3", "false", "[\"16\", 0]", "[\"18\", 0]", "[\"20\", 0]"),
        "[\"3\", 0]");
    {
        double sigma;
        kiln_latent noisy, out;
        assert_kiln_ok(kiln_sampling_percent_to_sigma(m, 0.3, false, &sigma));
        assert_kiln_ok(kiln_karras_scheduler(4, 14.614642, 0.0291675, 7.0, &sigmas[1]));
        assert_kiln_ok(kiln_sigmas_set_first(&sigmas[1], sigma, &sigmas[0]));
        assert_kiln_ok(kiln_add_noise(m, 9, false, &sigmas[0], &empty, &noisy));
        kiln_ksampler_params p = {.seed = 5, .cfg = 1.0, .sampler_name = "euler", .sigmas = &sigmas[0],
                                  .disable_noise = true};
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &noisy, &out));
        assert_workflow_decodes_to(added, m, &out);
        kiln_latent_free(&noisy), kiln_latent_free(&out);
        for (int i = 0; i < 2; i++) kiln_sigmas_free(&sigmas[i]);
    }
    /* a node's bad input: its name and the node's */
    expect_refusal(SIGMAS_RUN("\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "
                              "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": "
                              "14.6, \"sigma_min\": 0.03, \"rho\": 0}}, "
                              SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
                   KILN_ERR_INVALID_ARG, "node 17 (KarrasScheduler): KarrasScheduler: rho 0 is not in (0, 100]");
    expect_refusal(SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerDPMPP_3M_SDE\", \"inputs\": {\"eta\": 1, \"s_noise\": 1, "
                              "\"noise_device\": \"tpu\"}}, "
                              "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": "
                              "14.6, \"sigma_min\": 0.03, \"rho\": 7}}, "
                              SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
                   KILN_ERR_INVALID_ARG, "node 16 (SamplerDPMPP_3M_SDE): noise_device \"tpu\" (gpu, cpu)");
    expect_refusal(SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerLMS\", \"inputs\": {\"order\": 6}}, "
                              "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": "
                              "14.6, \"sigma_min\": 0.03, \"rho\": 7}}, "
                              SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
                   KILN_ERR_INVALID_ARG, "node 16 (SamplerLMS): input 'order' 6: an integer from 1 to 4");
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* The custom sampler nodes of the newer samplers into SamplerCustom, each
 * against the library's run with the same settings, pixel for pixel:
 * SamplerER_SDE (its reverse-time SDE at max_stage 2), SamplerSEEDS2 (phi_2,
 * r 0.7), SamplerSASolver (its own orders, interval and PECE),
 * SamplerEulerAncestralCFGPP and SamplerDPMAdaptative (order 2, its own
 * tolerances and controller, eta 0.4). */
static void newer_sampler_nodes(void **state)
{
    (void)state;
#define KARRAS_4 "\"17\": {\"class_type\": \"KarrasScheduler\", \"inputs\": {\"steps\": 4, \"sigma_max\": 14.614642, " \
                 "\"sigma_min\": 0.0291675, \"rho\": 7}}, "
    static const char *const graphs[] = {
        SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerER_SDE\", \"inputs\": {\"solver_type\": \"Reverse-time SDE\", "
                   "\"max_stage\": 2, \"eta\": 0.5, \"s_noise\": 0.9}}, " KARRAS_4
                   SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
        SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerSEEDS2\", \"inputs\": {\"solver_type\": \"phi_2\", "
                   "\"eta\": 0.8, \"s_noise\": 1, \"r\": 0.7}}, " KARRAS_4
                   SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
        SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerSASolver\", \"inputs\": {\"model\": [\"4\", 0], \"eta\": 0.7, "
                   "\"sde_start_percent\": 0.1, \"sde_end_percent\": 0.9, \"s_noise\": 1, \"predictor_order\": 2, "
                   "\"corrector_order\": 3, \"use_pece\": true, \"simple_order_2\": false}}, " KARRAS_4
                   SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
        SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerEulerAncestralCFGPP\", \"inputs\": {\"eta\": 0.6, "
                   "\"s_noise\": 1}}, " KARRAS_4
                   SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
        SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerDPMAdaptative\", \"inputs\": {\"order\": 2, \"rtol\": 0.03, "
                   "\"atol\": 0.006, \"h_init\": 0.08, \"pcoeff\": 0.1, \"icoeff\": 0.9, \"dcoeff\": 0.05, "
                   "\"accept_safety\": 0.85, \"eta\": 0.4, \"s_noise\": 1}}, " KARRAS_4
                   SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"17\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
    };
#undef KARRAS_4
    const kiln_sampler_options settings[] = {
        {.eta = 0.5, .s_noise = 0.9, .solver_type = "Reverse-time SDE", .max_stage = 2},
        {.eta = 0.8, .s_noise = 1.0, .solver_type = "phi_2", .r = 0.7},
        {.eta = 0.7, .s_noise = 1.0, .sa_solver_custom = true, .sde_start_percent = 0.1, .sde_end_percent = 0.9,
         .predictor_order = 2, .corrector_order = 3},
        {.eta = 0.6, .s_noise = 1.0},
        {.eta = 0.4, .s_noise = 1.0, .dpm_adaptive_custom = true, .order = 2, .rtol = 0.03, .atol = 0.006,
         .h_init = 0.08, .pcoeff = 0.1, .icoeff = 0.9, .dcoeff = 0.05, .accept_safety = 0.85},
    };
    static const char *const samplers[] = {"er_sde", "seeds_2", "sa_solver_pece", "euler_ancestral_cfg_pp",
                                           "dpm_adaptive"};
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty;
    kiln_sigmas sigmas;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    assert_kiln_ok(kiln_karras_scheduler(4, 14.614642, 0.0291675, 7.0, &sigmas));
    for (int k = 0; k < 5; k++) {
        kiln_ksampler_params p = {.seed = 5, .cfg = 1.0, .sampler_name = samplers[k], .sigmas = &sigmas,
                                  .sampler_options = &settings[k]};
        kiln_latent latent;
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
        assert_workflow_decodes_to(graphs[k], m, &latent);
        kiln_latent_free(&latent);
    }
    expect_refusal(SIGMAS_RUN("\"16\": {\"class_type\": \"SamplerER_SDE\", \"inputs\": {\"solver_type\": \"SDE\", "
                              "\"max_stage\": 2, \"eta\": 0.5, \"s_noise\": 0.9}}, "
                              SAMPLER_CUSTOM("3", "true", "[\"16\", 0]", "[\"16\", 0]", "[\"5\", 0]"), "[\"3\", 0]"),
                   KILN_ERR_INVALID_ARG, "node 16 (SamplerER_SDE): solver_type \"SDE\" (ER-SDE, Reverse-time SDE, ODE)");
    kiln_sigmas_free(&sigmas);
    tiny_sd15_free(m, &pos, &neg, &empty);
}
#undef SAMPLER_CUSTOM
#undef SIGMAS_RUN

/* Primitive nodes (PrimitiveInt, PrimitiveFloat, PrimitiveStringMultiline,
 * PrimitiveBoolean) linked into widget inputs: the run with those values
 * typed in, pixel for pixel; one without a value is refused by its id. */
#define PRIMITIVE_GRAPH(seed, cfg, text, noise, extra)                                                                \
    "{" CKPT ", " extra                                                                                               \
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": " text ", \"clip\": [\"4\", 1]}}, "            \
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "                \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "   \
    "\"16\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "                        \
    "\"17\": {\"class_type\": \"BasicScheduler\", \"inputs\": {\"scheduler\": \"normal\", \"steps\": 2, "              \
    "\"denoise\": 1, \"model\": [\"4\", 0]}}, "                                                                       \
    "\"3\": {\"class_type\": \"SamplerCustom\", \"inputs\": {\"add_noise\": " noise ", \"noise_seed\": " seed ", "     \
    "\"cfg\": " cfg ", \"model\": [\"4\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], "                   \
    "\"sampler\": [\"16\", 0], \"sigmas\": [\"17\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"

static void primitive_nodes(void **state)
{
    (void)state;
    static const char typed[] = PRIMITIVE_GRAPH("11", "3.5", "\"a red circle\"", "true", "");
    static const char linked_in[] = PRIMITIVE_GRAPH(
        "[\"30\", 0]", "[\"31\", 0]", "[\"32\", 0]", "[\"33\", 0]",
        "\"30\": {\"class_type\": \"PrimitiveInt\", \"inputs\": {\"value\": 11}}, "
        "\"31\": {\"class_type\": \"PrimitiveFloat\", \"inputs\": {\"value\": 3.5}}, "
        "\"32\": {\"class_type\": \"PrimitiveStringMultiline\", \"inputs\": {\"value\": \"a red circle\"}}, "
        "\"33\": {\"class_type\": \"PrimitiveBoolean\", \"inputs\": {\"value\": true}}, ");
    kiln_image *a, *b;
    int na, nb;
    assert_kiln_ok(kiln_workflow_run(backend, typed, &options, &a, &na));
    assert_kiln_ok(kiln_workflow_run(backend, linked_in, &options, &b, &nb));
    assert_int_equal(na, 1);
    assert_int_equal(nb, 1);
    assert_memory_equal(a[0].pixels, b[0].pixels, (size_t)a[0].width * a[0].height * 3);
    kiln_images_free(a, na);
    kiln_images_free(b, nb);
    expect_refusal(PRIMITIVE_GRAPH("[\"30\", 0]", "3.5", "\"x\"", "true",
                                   "\"30\": {\"class_type\": \"PrimitiveInt\", \"inputs\": {}}, "),
                   KILN_ERR_INVALID_ARG, "workflow node 30 (PrimitiveInt): no value to hand on");
}

/* The older ControlNetApply on the positive prompt, into a KSampler with
 * the sampler `sampler` and the prompts `positive`, `negative`; the
 * ControlNet from the loader node `loader`'s class and first inputs. */
#define CONTROLNET_APPLY_RUN(loader, sampler, positive, negative)                                                      \
    "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "                \
    "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", "          \
    "\"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "              \
    "\"height\": 16, \"batch_size\": 1}}, \"40\": {\"class_type\": " loader "\"control_net_name\": \""               \
    KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors\"}}, "                                                           \
    "\"41\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA                              \
    "/controlnet/hint_37x23.png\"}}, \"42\": {\"class_type\": \"ControlNetApply\", \"inputs\": "                        \
    "{\"strength\": 0.9, \"conditioning\": [\"7\", 0], \"control_net\": [\"40\", 0], \"image\": [\"41\", 0]}}, "       \
    "\"43\": {\"class_type\": \"ControlNetApply\", \"inputs\": {\"strength\": 0.9, \"conditioning\": [\"6\", 0], "     \
    "\"control_net\": [\"40\", 0], \"image\": [\"41\", 0]}}, "                                                         \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 4, \"steps\": 3, \"cfg\": 3, "                       \
    "\"sampler_name\": " sampler ", \"scheduler\": \"karras\", \"denoise\": 1, \"model\": [\"4\", 0], "               \
    "\"positive\": " positive ", \"negative\": " negative ", \"latent_image\": [\"5\", 0]}}, "                         \
    DECODE_SAVE("[\"3\", 0]") "}"

#define CONTROLNET_LOADER "\"ControlNetLoader\", \"inputs\": {"
/* DiffControlNetLoader, which also takes the model (whose UNet a diff
   ControlNet's differences are added to): a ControlNet that is no diff one loads as ControlNetLoader's */
#define DIFF_CONTROLNET_LOADER "\"DiffControlNetLoader\", \"inputs\": {\"model\": [\"4\", 0], "

/* ControlNetApply (the older node, on one prompt) and the newer samplers by
 * name in a KSampler: the library's run with the ControlNet positive_only
 * and that sampler, pixel for pixel (and the first from DiffControlNetLoader). */
static void controlnet_apply_node(void **state)
{
    (void)state;
    kiln_model *m;
    kiln_controlnet *cn;
    kiln_image hint;
    kiln_conditioning pos, neg;
    kiln_latent empty;
    tiny_sd15(&m, "blurry", &pos, &neg, &empty);
    assert_kiln_ok(kiln_controlnet_load(m, KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", &cn));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &hint));
    static const char *const samplers[] = {"euler", "er_sde", "res_multistep_cfg_pp", "euler"};
    const char *const graphs[] = {
        CONTROLNET_APPLY_RUN(CONTROLNET_LOADER, "\"euler\"", "[\"43\", 0]", "[\"7\", 0]"),
        CONTROLNET_APPLY_RUN(CONTROLNET_LOADER, "\"er_sde\"", "[\"43\", 0]", "[\"7\", 0]"),
        CONTROLNET_APPLY_RUN(CONTROLNET_LOADER, "\"res_multistep_cfg_pp\"", "[\"43\", 0]", "[\"7\", 0]"),
        CONTROLNET_APPLY_RUN(DIFF_CONTROLNET_LOADER, "\"euler\"", "[\"43\", 0]", "[\"7\", 0]")};
    for (int k = 0; k < 4; k++) {
        const kiln_control_apply apply = {cn, &hint, 0.9, 0.0, 1.0, NULL, NULL, true};
        kiln_ksampler_params p = {.seed = 4, .steps = 3, .cfg = 3.0, .sampler_name = samplers[k],
                                  .scheduler = "karras", .denoise = 1.0, .control = &apply, .control_count = 1};
        kiln_latent latent;
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
        assert_workflow_decodes_to(graphs[k], m, &latent);
        kiln_latent_free(&latent);
    }
    kiln_image_free(&hint);
    kiln_controlnet_free(cn);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* An EmptyLatentImage batch of 2 through LatentBatchSeedBehavior into a
 * KSampler: "fixed" gives both images the first one's noise (the same
 * picture twice), "random" the batch's own (the pictures of a run without
 * the node). */
static void latent_batch_seed_behavior_node(void **state)
{
    (void)state;
#define SEED_BEHAVIOR_RUN(node, latent)                                                                               \
    CKPT_PROMPTS "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, "           \
    "\"batch_size\": 2}}, " node "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": 2, "      \
    "\"cfg\": 5, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "    \
    "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": " latent "}}, " DECODE_SAVE("[\"3\", 0]") "}"
#define SEED_BEHAVIOR(behavior)                                                                                       \
    "\"20\": {\"class_type\": \"LatentBatchSeedBehavior\", \"inputs\": {\"samples\": [\"5\", 0], \"seed_behavior\": "    \
    "\"" behavior "\"}}, "
    static const char *const graphs[3] = {SEED_BEHAVIOR_RUN(SEED_BEHAVIOR("fixed"), "[\"20\", 0]"),
                                          SEED_BEHAVIOR_RUN(SEED_BEHAVIOR("random"), "[\"20\", 0]"),
                                          SEED_BEHAVIOR_RUN("", "[\"5\", 0]")};
#undef SEED_BEHAVIOR
#undef SEED_BEHAVIOR_RUN
    kiln_image *images[3];
    int count[3];
    for (int k = 0; k < 3; k++) {
        assert_kiln_ok(kiln_workflow_run(backend, graphs[k], &options, &images[k], &count[k]));
        assert_int_equal(count[k], 2);
    }
    const size_t bytes = (size_t)images[0][0].width * images[0][0].height * 3;
    assert_memory_equal(images[0][0].pixels, images[0][1].pixels, bytes);
    assert_memory_equal(images[0][0].pixels, images[2][0].pixels, bytes);
    assert_memory_not_equal(images[2][0].pixels, images[2][1].pixels, bytes);
    for (int i = 0; i < 2; i++) assert_memory_equal(images[1][i].pixels, images[2][i].pixels, bytes);
    for (int k = 0; k < 3; k++) kiln_images_free(images[k], count[k]);
}

/* A KSampler's latent joined before itself along x (LatentConcat "-x") and
 * cut back to 2 columns from the third last (LatentCut): the library's calls'
 * latent, pixel for pixel. */
static void latent_concat_cut_nodes(void **state)
{
    (void)state;
    static const char graph[] =
        "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "
        "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "
        "\"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "
        "\"height\": 16, \"batch_size\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 8, \"steps\": 2, \"cfg\": 5, "
        "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "
        "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
        "\"20\": {\"class_type\": \"LatentConcat\", \"inputs\": {\"samples1\": [\"3\", 0], \"samples2\": [\"3\", 0], "
        "\"dim\": \"-x\"}}, "
        "\"21\": {\"class_type\": \"LatentCut\", \"inputs\": {\"samples\": [\"20\", 0], \"dim\": \"x\", "
        "\"index\": -3, \"amount\": 2}}, "
        DECODE_SAVE("[\"21\", 0]") "}";
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent, joined, cut;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_ksampler_params p = {.seed = 8, .steps = 2, .cfg = 5.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_kiln_ok(kiln_latent_concat(&latent, &latent, "-x", &joined));
    assert_kiln_ok(kiln_latent_cut(&joined, "x", -3, 2, &cut));
    assert_workflow_decodes_to(graph, m, &cut);
    kiln_latent_free(&latent), kiln_latent_free(&joined), kiln_latent_free(&cut);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* LatentFromBatch picks the third image of an EmptyLatentImage batch of 3
 * into a KSampler: the library's run of that pick (its noise the batch's
 * third image's), pixel for pixel. */
static void latent_from_batch_node(void **state)
{
    (void)state;
    static const char graph[] =
        "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "
        "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "
        "\"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "
        "\"height\": 16, \"batch_size\": 3}}, \"20\": {\"class_type\": \"LatentFromBatch\", \"inputs\": "
        "{\"samples\": [\"5\", 0], \"batch_index\": 2, \"length\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 8, \"steps\": 2, \"cfg\": 5, "
        "\"sampler_name\": \"dpmpp_2m\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "
        "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"20\", 0]}}, "
        DECODE_SAVE("[\"3\", 0]") "}";
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, three, picked, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 3, &three));
    assert_kiln_ok(kiln_latent_from_batch(&three, 2, 1, &picked));
    kiln_ksampler_params p = {.seed = 8, .steps = 2, .cfg = 5.0, .sampler_name = "dpmpp_2m", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &picked, &latent));
    assert_workflow_decodes_to(graph, m, &latent);
    kiln_latent_free(&three), kiln_latent_free(&picked), kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* ConditioningSetMask on one prompt (LoadImageMask's picture, at strength
 * 0.8) combined with another everywhere: the library's run with those
 * parts, pixel for pixel, with set_cond_area "default" and "mask bounds";
 * another set_cond_area is refused by name. */
static void conditioning_set_mask_node(void **state)
{
    (void)state;
#define MASKED_RUN(area)                                                                                              \
    "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "                \
    "\"clip\": [\"4\", 1]}}, \"16\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a blue square\", "  \
    "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "                \
    "\"clip\": [\"4\", 1]}}, \"50\": {\"class_type\": \"LoadImageMask\", \"inputs\": {\"image\": \"" KILN_TEST_DATA      \
    "/inpaint/mask_20x17.png\", \"channel\": \"red\"}}, \"51\": {\"class_type\": \"ConditioningSetMask\", "         \
    "\"inputs\": {\"conditioning\": [\"6\", 0], \"mask\": [\"50\", 0], \"strength\": 0.8, \"set_cond_area\": "      \
    area "}}, \"52\": {\"class_type\": \"ConditioningCombine\", \"inputs\": {\"conditioning_1\": [\"51\", 0], "     \
    "\"conditioning_2\": [\"16\", 0]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "     \
    "\"height\": 16, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, "            \
    "\"steps\": 2, \"cfg\": 4, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, "                 \
    "\"model\": [\"4\", 0], \"positive\": [\"52\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "    \
    DECODE_SAVE("[\"3\", 0]") "}"
    kiln_model *m;
    kiln_conditioning pos, neg, blue;
    kiln_latent empty, latent;
    kiln_image picture;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    assert_kiln_ok(kiln_text_encode(m, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", &picture));
    const size_t count = (size_t)picture.width * picture.height;
    float *mask = malloc(count * sizeof *mask);
    assert_non_null(mask);
    for (size_t i = 0; i < count; i++) mask[i] = (float)picture.pixels[3 * i] / 255.0f;
    kiln_conditioning_part parts[2] = {{.cond = &pos, .end_percent = 1.0, .mask = mask, .mask_w = picture.width,
                                              .mask_h = picture.height, .strength = 0.8},
                                             {.cond = &blue, .end_percent = 1.0}};
    kiln_ksampler_params p = {.seed = 3, .steps = 2, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .positive_parts = parts, .positive_part_count = 2};
    for (int bounds = 0; bounds < 2; bounds++) {
        parts[0].mask_bounds = bounds;
        assert_kiln_ok(kiln_ksampler(m, &p, NULL, &neg, &empty, &latent));
        assert_workflow_decodes_to(bounds ? MASKED_RUN("\"mask bounds\"") : MASKED_RUN("\"default\""), m, &latent);
        kiln_latent_free(&latent);
    }
    expect_refusal(MASKED_RUN("\"everywhere\""), KILN_ERR_INVALID_ARG,
                   "node 51 (ConditioningSetMask): set_cond_area \"everywhere\" (default or mask bounds)");
#undef MASKED_RUN
    free(mask);
    kiln_image_free(&picture);
    kiln_conditioning_free(&blue);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* Area composition: "a blue square" on a box (ConditioningSetArea, pixels
 * floored to latent pixels, at strength 1.5) beside "a red circle"
 * everywhere; on the negative side "blurry" on the right half
 * (ConditioningSetAreaPercentage) beside the empty prompt at strength 0.5
 * (ConditioningSetAreaStrength). The library's run with those parts, pixel
 * for pixel. */
static void conditioning_set_area_nodes(void **state)
{
    (void)state;
    static const char graph[] =
        "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "
        "\"clip\": [\"4\", 1]}}, \"16\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a blue square\", "
        "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "
        "\"clip\": [\"4\", 1]}}, \"17\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", "
        "\"clip\": [\"4\", 1]}}, \"51\": {\"class_type\": \"ConditioningSetArea\", \"inputs\": {\"conditioning\": "
        "[\"16\", 0], \"width\": 84, \"height\": 64, \"x\": 31, \"y\": 16, \"strength\": 1.5}}, \"52\": {\"class_type\": "
        "\"ConditioningCombine\", \"inputs\": {\"conditioning_1\": [\"6\", 0], \"conditioning_2\": [\"51\", 0]}}, "
        "\"53\": {\"class_type\": \"ConditioningSetAreaStrength\", \"inputs\": {\"conditioning\": [\"7\", 0], "
        "\"strength\": 0.5}}, \"54\": {\"class_type\": \"ConditioningSetAreaPercentage\", \"inputs\": "
        "{\"conditioning\": [\"17\", 0], \"width\": 0.5, \"height\": 1.0, \"x\": 0.5, \"y\": 0.0, \"strength\": 1.0}}, "
        "\"55\": {\"class_type\": \"ConditioningCombine\", \"inputs\": {\"conditioning_1\": [\"53\", 0], "
        "\"conditioning_2\": [\"54\", 0]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 128, "
        "\"height\": 96, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, "
        "\"steps\": 2, \"cfg\": 4, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, "
        "\"model\": [\"4\", 0], \"positive\": [\"52\", 0], \"negative\": [\"55\", 0], \"latent_image\": [\"5\", 0]}}, "
        DECODE_SAVE("[\"3\", 0]") "}";
    kiln_model *m;
    kiln_conditioning pos, neg, blue, blurry;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_latent_free(&empty);
    assert_kiln_ok(kiln_empty_latent(m, 128, 96, 1, &empty));
    assert_kiln_ok(kiln_text_encode(m, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &blurry));
    const kiln_conditioning_part positive[2] = {
        {.cond = &pos, .end_percent = 1.0},
        {.cond = &blue, .end_percent = 1.0, .area_x = 3, .area_y = 2, .area_w = 10, .area_h = 8, .area_strength = 1.5}};
    const kiln_conditioning_part negative[2] = {
        {.cond = &neg, .end_percent = 1.0, .area_strength = 0.5},
        {.cond = &blurry, .end_percent = 1.0, .fraction_x = 0.5, .fraction_w = 0.5, .fraction_h = 1.0}};
    const kiln_ksampler_params p = {.seed = 3, .steps = 2, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0, .positive_parts = positive, .positive_part_count = 2,
                                    .negative_parts = negative, .negative_part_count = 2};
    assert_kiln_ok(kiln_ksampler(m, &p, NULL, NULL, &empty, &latent));
    assert_workflow_decodes_to(graph, m, &latent);
    kiln_latent_free(&latent);
    kiln_conditioning_free(&blue), kiln_conditioning_free(&blurry);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* The end of a patched-model graph: an EmptyLatentImage "5" of width x
 * height, KSampler "3" (seed 3, 3 steps, cfg 6, euler, normal) on MODEL
 * `model` and the prompts "6" and "7", VAEDecode and SaveImage. */
#define PATCHED_RUN_TAIL(width, height, model)                                                                        \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": " width ", \"height\": " height ", "               \
    "\"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": 3, \"cfg\": 6, "      \
    "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"" model "\", 0], "               \
    "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"

/* The tiny model's (with `parts` at load) run with p's patches and
 * PATCHED_RUN_TAIL's settings is `graph`'s picture, pixel for pixel; then
 * `refused` is refused with `status`, naming `why`. */
static void check_patched_run(const kiln_model_parts *parts, kiln_ksampler_params p, int width, int height,
                              const char *graph, const char *refused, kiln_status status, const char *why)
{
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15_with(parts, &m, "", &pos, &neg, &empty);
    kiln_latent_free(&empty);
    assert_kiln_ok(kiln_empty_latent(m, width, height, 1, &empty));
    p.seed = 3, p.steps = 3, p.cfg = 6.0, p.sampler_name = "euler", p.scheduler = "normal", p.denoise = 1.0;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(graph, m, &latent);
    expect_refusal(refused, status, why);
    kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* APG, CFGZeroStar and RescaleCFG on the model: the library's run with
 * apg, cfg_zero_star and rescale_cfg at the nodes' settings, pixel for pixel;
 * a multiplier past 1 is refused. So are TCFG, Mahiro, CFGNorm and Epsilon
 * Scaling, and post-CFG nodes out of kiln's order are refused. */
static void guidance_patch_nodes(void **state)
{
    (void)state;
#define RESCALED_RUN(multiplier)                                                                                      \
    CKPT_PROMPTS "\"62\": {\"class_type\": \"APG\", \"inputs\": {\"model\": [\"4\", 0], \"eta\": 0.4, "                    \
    "\"norm_threshold\": 4, \"momentum\": -0.25}}, "                                                                   \
    "\"61\": {\"class_type\": \"CFGZeroStar\", \"inputs\": {\"model\": [\"62\", 0]}}, "                              \
    "\"60\": {\"class_type\": \"RescaleCFG\", \"inputs\": {\"model\": [\"61\", 0], \"multiplier\": " multiplier "}}, "  \
    PATCHED_RUN_TAIL("16", "16", "60")
    check_patched_run(NULL,
                      (kiln_ksampler_params){.rescale_cfg = 0.7, .cfg_zero_star = true, .apg = true, .apg_eta = 0.4,
                                             .apg_norm_threshold = 4.0, .apg_momentum = -0.25},
                      16, 16, RESCALED_RUN("0.7"), RESCALED_RUN("1.2"), KILN_ERR_INVALID_ARG,
                      "node 60 (RescaleCFG): multiplier 1.2: must be 0..1");
#undef RESCALED_RUN
    /* TCFG, Mahiro, CFGNorm and Epsilon Scaling, in kiln's order; Epsilon Scaling before CFGNorm is refused */
#define POST_CFG_RUN(norm_from, eps_from, sampled)                                                                    \
    CKPT_PROMPTS "\"63\": {\"class_type\": \"TCFG\", \"inputs\": {\"model\": [\"4\", 0]}}, "                           \
    "\"62\": {\"class_type\": \"Mahiro\", \"inputs\": {\"model\": [\"63\", 0]}}, "                                   \
    "\"61\": {\"class_type\": \"CFGNorm\", \"inputs\": {\"model\": [\"" norm_from "\", 0], \"strength\": 0.9}}, "       \
    "\"60\": {\"class_type\": \"Epsilon Scaling\", \"inputs\": {\"model\": [\"" eps_from "\", 0], "                    \
    "\"scaling_factor\": 1.02}}, " PATCHED_RUN_TAIL("16", "16", sampled)
    check_patched_run(NULL,
                      (kiln_ksampler_params){.tcfg = true, .mahiro = true, .cfg_norm = 0.9, .epsilon_scaling = 1.02},
                      16, 16, POST_CFG_RUN("62", "61", "60"), POST_CFG_RUN("60", "62", "61"), KILN_ERR_UNSUPPORTED,
                      "node 61 (CFGNorm): after Epsilon Scaling: kiln applies CFGNorm first");
#undef POST_CFG_RUN
}

/* FreeU_V2 on the model: the library's run with freeu at the node's values,
 * pixel for pixel (on a latent of 16x12, whose decoder blocks at twice the
 * tiny UNet's width it patches); a second FreeU node is refused. */
static void freeu_nodes(void **state)
{
    (void)state;
#define FREEU_RUN(model) \
    CKPT_PROMPTS "\"60\": {\"class_type\": \"FreeU_V2\", \"inputs\": {\"model\": [\"4\", 0], \"b1\": 1.3, "   \
    "\"b2\": 1.4, \"s1\": 0.9, \"s2\": 0.2}}, \"61\": {\"class_type\": \"FreeU\", \"inputs\": {\"model\": [\"60\", 0], "   \
    "\"b1\": 1.1, \"b2\": 1.2, \"s1\": 0.9, \"s2\": 0.2}}, \"5\": {\"class_type\": \"EmptyLatentImage\", "               \
    "\"inputs\": {\"width\": 32, \"height\": 24, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", "            \
    "\"inputs\": {\"seed\": 3, \"steps\": 3, \"cfg\": 6, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", "       \
    "\"denoise\": 1, \"model\": [\"" model "\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], "                 \
    "\"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_latent_free(&empty);
    assert_kiln_ok(kiln_empty_latent(m, 32, 24, 1, &empty));
    const kiln_freeu v2 = {1.3, 1.4, 0.9, 0.2, true};
    const kiln_ksampler_params p = {.seed = 3, .steps = 3, .cfg = 6.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0, .freeu = &v2};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(FREEU_RUN("60"), m, &latent);
    expect_refusal(FREEU_RUN("61"), KILN_ERR_UNSUPPORTED, "node 61 (FreeU): the model has FreeU from another node");
#undef FREEU_RUN
    kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* GetImageSize's width, height and batch size, StringConcatenate's,
 * StringSubstring's, StringReplace's, StringTrim's and StringLength's
 * outputs linked into the inputs that take such values (and into each
 * other): the library's run with those values, pixel for pixel (EmptyLatentImage
 * rounding the picture's odd sides down); a plain value linked where an
 * IMAGE goes is refused. */
static void plain_value_nodes(void **state)
{
    (void)state;
#define PLAIN_VALUES_RUN(pixels)                                                                                      \
    "{" CKPT ", \"30\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA                     \
    "/controlnet/hint_37x23.png\"}}, \"31\": {\"class_type\": \"GetImageSize\", \"inputs\": {\"image\": " pixels "}}, "     \
    "\"32\": {\"class_type\": \"StringConcatenate\", \"inputs\": {\"string_a\": \"\u00e9t\u00e9 a\", "                 \
    "\"string_b\": \"blue circle yy\", \"delimiter\": \" \"}}, \"34\": {\"class_type\": \"StringSubstring\", "              \
    "\"inputs\": {\"string\": [\"32\", 0], \"start\": 4, \"end\": -3}}, \"35\": {\"class_type\": \"StringReplace\", "      \
    "\"inputs\": {\"string\": [\"34\", 0], \"find\": \"blue\", \"replace\": \"red\"}}, "                                \
    "\"36\": {\"class_type\": \"StringReplace\", \"inputs\": {\"string\": \"\u00e9\", \"find\": \"\", \"replace\": \"-\"}}, " \
    "\"38\": {\"class_type\": \"StringTrim\", \"inputs\": {\"string\": \"\u3000\\t \u00e9\\u0085\u00a0 \", "              \
    "\"mode\": \"Both\"}}, \"39\": {\"class_type\": \"StringConcatenate\", \"inputs\": {\"string_a\": [\"36\", 0], "       \
    "\"string_b\": [\"38\", 0], \"delimiter\": \"\"}}, "                                                            \
    "\"33\": {\"class_type\": \"StringLength\", \"inputs\": {\"string\": [\"39\", 0]}}, "                                 \
    "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": [\"35\", 0], \"clip\": [\"4\", 1]}}, "             \
    "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "                    \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": [\"31\", 0], \"height\": [\"31\", 1], "         \
    "\"batch_size\": [\"31\", 2]}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": [\"33\", 0], "   \
    "\"cfg\": 6, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "          \
    "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_latent_free(&empty);
    /* the picture's size, 37x23, rounded down as EmptyLatentImage's width // 8 rounds (the tiny VAE's factor 2);
       "été a" + " " + "blue circle yy", characters 4 to 3 from the end, "blue" made "red": "a red circle";
       "é".replace("", "-") is "-é-", and with "\u3000\t é\u0085\u00a0 ".strip() after it 4 characters long (Python's
       str methods): 4 steps */
    assert_kiln_ok(kiln_empty_latent(m, 36, 22, 1, &empty));
    const kiln_ksampler_params p = {.seed = 3, .steps = 4, .cfg = 6.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(PLAIN_VALUES_RUN("[\"30\", 0]"), m, &latent);
    expect_refusal(PLAIN_VALUES_RUN("[\"32\", 0]"), KILN_ERR_INVALID_ARG, "node 31 (GetImageSize): input 'image' "
                   "is not a link [node id, output] to a IMAGE (it holds a plain value)");
#undef PLAIN_VALUES_RUN
    kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* StringContains, StringCompare and CaseConverter: their BOOLEANs into
 * ModelSamplingDiscrete's zsnr and CaseConverter's text into the prompt,
 * the library's runs with those values, pixel for pixel (Python's title()
 * making "they're" "They'Re"); case changes beyond ASCII refused by name. */
static void string_test_nodes(void **state)
{
    (void)state;
#define STRING_TEST_RUN(test, text)                                                                                   \
    "{" CKPT ", \"40\": " test ", \"41\": {\"class_type\": \"CaseConverter\", \"inputs\": {\"string\": \"" text "\", "   \
    "\"mode\": \"Title Case\"}}, \"60\": {\"class_type\": \"ModelSamplingDiscrete\", \"inputs\": {\"model\": "          \
    "[\"4\", 0], \"sampling\": \"eps\", \"zsnr\": [\"40\", 0]}}, \"6\": {\"class_type\": \"CLIPTextEncode\", "          \
    "\"inputs\": {\"text\": [\"41\", 0], \"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", "          \
    "\"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": "    \
    "{\"width\": 16, \"height\": 16, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": "           \
    "{\"seed\": 3, \"steps\": 2, \"cfg\": 6, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, "  \
    "\"model\": [\"60\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "    \
    DECODE_SAVE("[\"3\", 0]") "}"
    static const char *const graphs[3] = {
        STRING_TEST_RUN("{\"class_type\": \"StringContains\", \"inputs\": {\"string\": \"A RED circle\", "
                        "\"substring\": \"red\", \"case_sensitive\": false}}", "they're a RED circle2go"),
        STRING_TEST_RUN("{\"class_type\": \"StringCompare\", \"inputs\": {\"string_a\": \"Hello\", \"string_b\": "
                        "\"hello\", \"mode\": \"Equal\", \"case_sensitive\": true}}", "they're a RED circle2go"),
        STRING_TEST_RUN("{\"class_type\": \"StringCompare\", \"inputs\": {\"string_a\": \"a red circle\", "
                        "\"string_b\": \"CIRCLE\", \"mode\": \"Ends With\", \"case_sensitive\": false}}",
                        "\u00e9t\u00e9")};
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_conditioning_free(&pos);
    assert_kiln_ok(kiln_text_encode(m, "They'Re A Red Circle2Go", 0, &pos));
    for (int k = 0; k < 2; k++) { /* contains: true; "Hello" == "hello" case-sensitively: false */
        assert_kiln_ok(kiln_model_set_prediction(m, "eps"));
        assert_kiln_ok(kiln_model_set_zsnr(m, k == 0));
        const kiln_ksampler_params p = {.seed = 3, .steps = 2, .cfg = 6.0, .sampler_name = "euler",
                                        .scheduler = "normal", .denoise = 1.0};
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
        assert_workflow_decodes_to(graphs[k], m, &latent);
        kiln_latent_free(&latent);
    }
    assert_kiln_ok(kiln_model_reset_sampling(m));
    expect_refusal(graphs[2], KILN_ERR_UNSUPPORTED, "node 41 (CaseConverter): input 'string': changing the case of "
                   "text beyond ASCII");
#undef STRING_TEST_RUN
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* HyperTile on the model: the library's run with its settings, pixel for
 * pixel (tiles of 4 latent pixels drawn among two counts, reaching the
 * middle block); a second HyperTile node is refused. */
static void hypertile_nodes(void **state)
{
    (void)state;
#define HYPERTILE_RUN(model) \
    CKPT_PROMPTS "\"60\": {\"class_type\": \"HyperTile\", \"inputs\": {\"model\": [\"4\", 0], \"tile_size\": 32, "     \
    "\"swap_size\": 3, \"max_depth\": 1, \"scale_depth\": false}}, \"61\": {\"class_type\": \"HyperTile\", \"inputs\": "   \
    "{\"model\": [\"60\", 0], \"tile_size\": 256, \"swap_size\": 2, \"max_depth\": 0, \"scale_depth\": true}}, "           \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 128, \"height\": 96, \"batch_size\": 1}}, "  \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": 3, \"cfg\": 6, \"sampler_name\": "      \
    "\"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"" model "\", 0], \"positive\": [\"6\", 0], "  \
    "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_latent_free(&empty);
    assert_kiln_ok(kiln_empty_latent(m, 128, 96, 1, &empty));
    const kiln_hypertile tiles = {32, 3, 1, false};
    const kiln_ksampler_params p = {.seed = 3, .steps = 3, .cfg = 6.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0, .hypertile = &tiles};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(HYPERTILE_RUN("60"), m, &latent);
    expect_refusal(HYPERTILE_RUN("61"), KILN_ERR_UNSUPPORTED, "node 61 (HyperTile): the model has HyperTile from "
                   "another node");
#undef HYPERTILE_RUN
    kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* HypernetworkLoader twice on the model: the library's run with the two
 * hypernetworks in that order, pixel for pixel; a strength beyond the
 * node's range is refused. */
static void hypernetwork_nodes(void **state)
{
    (void)state;
#define HYPERNETWORK_RUN(strength)                                                                                    \
    CKPT_PROMPTS "\"60\": {\"class_type\": \"HypernetworkLoader\", \"inputs\": {\"model\": [\"4\", 0], "            \
    "\"hypernetwork_name\": \"" KILN_TEST_DATA "/hypernetwork/relu_ln.pt\", \"strength\": 1}}, "                      \
    "\"61\": {\"class_type\": \"HypernetworkLoader\", \"inputs\": {\"model\": [\"60\", 0], "                       \
    "\"hypernetwork_name\": \"" KILN_TEST_DATA "/hypernetwork/swish.pt\", \"strength\": " strength "}}, "             \
    "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "  \
    "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": 2, \"cfg\": 6, \"sampler_name\": "      \
    "\"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"61\", 0], \"positive\": [\"6\", 0], "      \
    "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_hypernetwork *h[2];
    assert_kiln_ok(kiln_hypernetwork_load(m, KILN_TEST_DATA "/hypernetwork/relu_ln.pt", 1.0, &h[0]));
    assert_kiln_ok(kiln_hypernetwork_load(m, KILN_TEST_DATA "/hypernetwork/swish.pt", -0.7, &h[1]));
    const kiln_ksampler_params p = {.seed = 3, .steps = 2, .cfg = 6.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0, .hypernetworks = (const kiln_hypernetwork *const *)h,
                                    .hypernetwork_count = 2};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(HYPERNETWORK_RUN("-0.7"), m, &latent);
    expect_refusal(HYPERNETWORK_RUN("11"), KILN_ERR_INVALID_ARG, "node 61 (HypernetworkLoader): strength 11: must be "
                   "-10..10");
#undef HYPERNETWORK_RUN
    kiln_hypernetwork_free(h[0]), kiln_hypernetwork_free(h[1]);
    kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* ModelSamplingDiscrete "lcm" with KSampler's lcm sampler (an LCM-LoRA's
 * workflow), "v_prediction" with zsnr, "x0" and "img_to_img", and ModelSamplingContinuousEDM's
 * "cosxl" after a ModelSamplingDiscrete (whose sampling it replaces): the
 * library's runs on the model set so, pixel for pixel. */
static void model_sampling_nodes(void **state)
{
    (void)state;
#define DISCRETE_GRAPH(sampling, zsnr)                                                                                \
    CKPT_PROMPTS "\"60\": {\"class_type\": \"ModelSamplingDiscrete\", \"inputs\": {\"model\": "                        \
    "[\"4\", 0], \"sampling\": \"" sampling "\", \"zsnr\": " zsnr "}}, \"5\": {\"class_type\": "                       \
    "\"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, \"3\": "                   \
    "{\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": 4, \"cfg\": 5, \"sampler_name\": "            \
    "\"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"60\", 0], \"positive\": [\"6\", 0], "        \
    "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"
    static const char edm_graph[] =
        CKPT_PROMPTS "\"61\": {\"class_type\": \"ModelSamplingDiscrete\", \"inputs\": {\"model\": [\"4\", 0], "
        "\"sampling\": \"lcm\", \"zsnr\": true}}, \"60\": {\"class_type\": \"ModelSamplingContinuousEDM\", "
        "\"inputs\": {\"model\": [\"61\", 0], \"sampling\": \"cosxl\", \"sigma_max\": 120, \"sigma_min\": 0.002}}, "
        "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, \"steps\": 4, \"cfg\": 5, \"sampler_name\": "
        "\"dpmpp_2m\", \"scheduler\": \"karras\", \"denoise\": 1, \"model\": [\"60\", 0], \"positive\": [\"6\", 0], "
        "\"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}";
    static const char graph[] =
        CKPT_PROMPTS "\"60\": {\"class_type\": \"ModelSamplingDiscrete\", \"inputs\": {\"model\": "
        "[\"4\", 0], \"sampling\": \"lcm\", \"zsnr\": false}}, \"5\": {\"class_type\": \"EmptyLatentImage\", "
        "\"inputs\": {\"width\": 16, \"height\": 16, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", "
        "\"inputs\": {\"seed\": 3, \"steps\": 4, \"cfg\": 1.5, \"sampler_name\": \"lcm\", \"scheduler\": "
        "\"sgm_uniform\", \"denoise\": 1, \"model\": [\"60\", 0], \"positive\": [\"6\", 0], \"negative\": "
        "[\"7\", 0], \"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}";
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    assert_kiln_ok(kiln_model_set_prediction(m, "lcm"));
    const kiln_ksampler_params p = {.seed = 3, .steps = 4, .cfg = 1.5, .sampler_name = "lcm",
                                    .scheduler = "sgm_uniform", .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(graph, m, &latent);
    kiln_latent_free(&latent);
    assert_kiln_ok(kiln_model_set_prediction(m, "v_prediction"));
    assert_kiln_ok(kiln_model_set_zsnr(m, true));
    const kiln_ksampler_params v = {.seed = 3, .steps = 4, .cfg = 5.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &v, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(DISCRETE_GRAPH("v_prediction", "true"), m, &latent);
    kiln_latent_free(&latent);
    assert_kiln_ok(kiln_model_set_zsnr(m, false));
    static const char *const x0_kinds[2] = {"x0", "img_to_img"};
    static const char *const x0_graphs[2] = {DISCRETE_GRAPH("x0", "false"), DISCRETE_GRAPH("img_to_img", "false")};
    for (int k = 0; k < 2; k++) {
        assert_kiln_ok(kiln_model_set_prediction(m, x0_kinds[k]));
        assert_kiln_ok(kiln_ksampler(m, &v, &pos, &neg, &empty, &latent));
        assert_workflow_decodes_to(x0_graphs[k], m, &latent);
        kiln_latent_free(&latent);
    }
#undef DISCRETE_GRAPH
    assert_kiln_ok(kiln_model_set_prediction(m, "eps"));
    assert_kiln_ok(kiln_model_set_continuous_edm(m, "cosxl", 120.0, 0.002));
    const kiln_ksampler_params edm = {.seed = 3, .steps = 4, .cfg = 5.0, .sampler_name = "dpmpp_2m",
                                      .scheduler = "karras", .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &edm, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(edm_graph, m, &latent);
    kiln_latent_free(&latent);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* PerturbedAttentionGuidance on the model: the library's run with pag_scale
 * at the node's, pixel for pixel; a second such node is refused. */
static void pag_nodes(void **state)
{
    (void)state;
#define PAG_RUN(model)                                                                                                \
    CKPT_PROMPTS "\"60\": {\"class_type\": \"PerturbedAttentionGuidance\", \"inputs\": {\"model\": "                    \
    "[\"4\", 0], \"scale\": 2.5}}, \"61\": {\"class_type\": \"PerturbedAttentionGuidance\", \"inputs\": {\"model\": "  \
    "[\"60\", 0], \"scale\": 3}}, " PATCHED_RUN_TAIL("16", "16", model)
    check_patched_run(NULL, (kiln_ksampler_params){.pag_scale = 2.5}, 16, 16, PAG_RUN("60"), PAG_RUN("61"),
                      KILN_ERR_UNSUPPORTED, "node 61 (PerturbedAttentionGuidance): the model has PerturbedAttentionGuidance");
#undef PAG_RUN
}

/* SelfAttentionGuidance on the model: the library's run with sag at the
 * node's settings, pixel for pixel (a 48x40 picture: a 24x20 latent for the
 * tiny VAE, the middle block 12x10 tokens); a post-CFG patch after it is
 * refused. */
static void sag_nodes(void **state)
{
    (void)state;
#define SAG_RUN(model)                                                                                                \
    CKPT_PROMPTS "\"60\": {\"class_type\": \"SelfAttentionGuidance\", \"inputs\": {\"model\": [\"4\", 0], "                \
    "\"scale\": 0.6, \"blur_sigma\": 1.5}}, \"61\": {\"class_type\": \"CFGNorm\", \"inputs\": {\"model\": "           \
    "[\"60\", 0], \"strength\": 1}}, " PATCHED_RUN_TAIL("48", "40", model)
    const kiln_sag sag = {0.6, 1.5};
    check_patched_run(NULL, (kiln_ksampler_params){.sag = &sag}, 48, 40, SAG_RUN("60"), SAG_RUN("61"),
                      KILN_ERR_UNSUPPORTED, "node 61 (CFGNorm): after SelfAttentionGuidance: kiln applies CFGNorm first");
#undef SAG_RUN
}

/* ModelMergeSimple and CLIPMergeSubtract with a second checkpoint: the
 * library's models merged so (kiln_merge), the prompts from the one and
 * the run on the other, pixel for pixel; a LoRA on model1 before a simple
 * merge is refused. */
static void merge_nodes(void **state)
{
    (void)state;
    const char *other = tiny_other_model();
    static const char *const graph =
        "{" CKPT ", \"20\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"%s\"}}, "
        "%s\"21\": {\"class_type\": \"%s\", \"inputs\": {\"model1\": [\"%s\", 0], \"model2\": [\"20\", 0], "
        "%s}}, \"22\": {\"class_type\": \"CLIPMergeSubtract\", \"inputs\": {\"clip1\": [\"4\", 1], "
        "\"clip2\": [\"20\", 1], \"multiplier\": 0.5}}, \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": "
        "{\"text\": \"a red circle\", \"clip\": [\"22\", 0]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": "
        "{\"text\": \"\", \"clip\": [\"22\", 0]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": "
        "{\"width\": 16, \"height\": 16, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": "
        "{\"seed\": 3, \"steps\": 3, \"cfg\": 6, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, "
        "\"model\": [\"21\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
        DECODE_SAVE("[\"3\", 0]") "}";
    char json[8192];
    snprintf(json, sizeof json, graph, other, "", "ModelMergeSimple", "4", "\"ratio\": 0.3");
    const kiln_merge unet = {.path = other, .kind = KILN_MERGE_SIMPLE, .ratio = 0.3},
                     clip = {.path = other, .kind = KILN_MERGE_SUBTRACT, .ratio = 0.5, .text_encoders = true};
    const kiln_model_parts unet_parts = {.merges = &unet, .nmerges = 1}, clip_parts = {.merges = &clip, .nmerges = 1};
    kiln_model *m, *c;
    assert_kiln_ok(kiln_checkpoint_load_parts(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors",
                                              &unet_parts, NULL, 0, &m));
    assert_kiln_ok(kiln_checkpoint_load_parts(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors",
                                              &clip_parts, NULL, 0, &c));
    kiln_conditioning pos, neg;
    kiln_latent empty, latent;
    assert_kiln_ok(kiln_text_encode(c, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(c, "", 0, &neg));
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    const kiln_ksampler_params p = {.seed = 3, .steps = 3, .cfg = 6.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(json, m, &latent);
    snprintf(json, sizeof json, graph, other,
             "\"30\": {\"class_type\": \"LoraLoaderModelOnly\", \"inputs\": {\"model\": [\"4\", 0], \"lora_name\": \""
             KILN_TEST_DATA "/lora/kohya_ldm.safetensors\", \"strength_model\": 0.7}}, ", "ModelMergeSimple", "30",
             "\"ratio\": 0.3");
    expect_refusal(json, KILN_ERR_UNSUPPORTED, "node 21 (ModelMergeSimple): model1 has LoRAs");
    kiln_latent_free(&latent);
    kiln_model_free(m);
    /* ModelMergeBlocks: by the prefixes its inputs name */
    static const kiln_merge_block blocks[3] = {{"input", 0.2}, {"middle", 0.6}, {"out", 0.9}};
    const kiln_merge by_block = {.path = other, .kind = KILN_MERGE_SIMPLE, .blocks = blocks, .nblocks = 3};
    const kiln_model_parts block_parts = {.merges = &by_block, .nmerges = 1};
    assert_kiln_ok(kiln_checkpoint_load_parts(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors",
                                              &block_parts, NULL, 0, &m));
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    snprintf(json, sizeof json, graph, other, "", "ModelMergeBlocks", "4",
             "\"input\": 0.2, \"middle\": 0.6, \"out\": 0.9");
    assert_workflow_decodes_to(json, m, &latent);
    kiln_latent_free(&latent);
    kiln_model_free(c);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* PixArt's original single file as ComfyUI loads it (UNETLoader,
 * CLIPLoader "pixart", VAELoader) with CLIPTextEncodePixArtAlpha's size on
 * the positive prompt: the library's run with that size, pixel for pixel. */
static void pixart_alpha_nodes(void **state)
{
    (void)state;
    static const char json[] =
        "{\"12\": {\"class_type\": \"UNETLoader\", \"inputs\": {\"unet_name\": \"" KILN_TEST_DATA
        "/pixart/single/pixart_alpha_tiny.safetensors\", \"weight_dtype\": \"default\"}}, "
        "\"11\": {\"class_type\": \"CLIPLoader\", \"inputs\": {\"clip_name\": \"" KILN_TEST_DATA
        "/pixart/tiny/text_encoder/model.safetensors\", \"type\": \"pixart\"}}, "
        "\"10\": {\"class_type\": \"VAELoader\", \"inputs\": {\"vae_name\": \"" KILN_TEST_DATA
        "/pixart/tiny/vae/diffusion_pytorch_model.safetensors\"}}, "
        "\"6\": {\"class_type\": \"CLIPTextEncodePixArtAlpha\", \"inputs\": {\"width\": 1024, \"height\": 768, "
        "\"text\": \"a red fox\", \"clip\": [\"11\", 0]}}, "
        "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"11\", 0]}}, "
        "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 72, \"height\": 80, "
        "\"batch_size\": 1}}, "
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 42, \"steps\": 3, \"cfg\": 4.5, "
        "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"12\", 0], "
        "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
        "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"10\", 0]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}";
    const char *tokenizer = KILN_TEST_DATA "/spm_tokenizer/spiece.model";
    const kiln_model_parts parts = {.vae = KILN_TEST_DATA "/pixart/tiny/vae/diffusion_pytorch_model.safetensors",
                                    .text_encoders = {KILN_TEST_DATA "/pixart/tiny/text_encoder/model.safetensors"},
                                    .tokenizer = tokenizer};
    kiln_model *m;
    assert_kiln_ok(kiln_checkpoint_load_parts(backend, KILN_TEST_DATA "/pixart/single/pixart_alpha_tiny.safetensors",
                                              &parts, NULL, 0, &m));
    kiln_conditioning pos, neg;
    kiln_latent empty, latent, plain;
    assert_kiln_ok(kiln_text_encode(m, "a red fox", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    assert_kiln_ok(kiln_empty_latent(m, 72, 80, 1, &empty));
    kiln_ksampler_params p = {.seed = 42, .steps = 3, .cfg = 4.5, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &plain));
    p.pixart_width = 1024, p.pixart_height = 768;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_true(kiln_rel_l2(latent.data, plain.data, kiln_latent_count(&latent)) > 1e-4);
    const kiln_workflow_options pixart = {.tokenizer = tokenizer};
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &pixart, &images, &count));
    assert_int_equal(count, 1);
    assert_decodes_to(m, &latent, &images[0]);
    kiln_images_free(images, count);
    kiln_latent_free(&plain);
    tiny_sd15_free(m, &pos, &neg, &empty);
    kiln_latent_free(&latent);
}

/* UNetSelfAttentionMultiply, UNetCrossAttentionMultiply and
 * CLIPAttentionMultiply: the library's model with those factors at load,
 * pixel for pixel; a LoRA before them is refused. */
static void attention_multiply_nodes(void **state)
{
    (void)state;
#define MULTIPLY_RUN(lora, from)                                                                                      \
    CKPT_PROMPTS lora "\"60\": {\"class_type\": \"UNetSelfAttentionMultiply\", \"inputs\": {\"model\": [\"" from "\", 0], " \
    "\"q\": 0.5, \"k\": 1.2, \"v\": 0.8, \"out\": 1.5}}, \"61\": {\"class_type\": \"UNetCrossAttentionMultiply\", "    \
    "\"inputs\": {\"model\": [\"60\", 0], \"q\": 1, \"k\": 0.7, \"v\": 1.3, \"out\": 0.9}}, "                          \
    PATCHED_RUN_TAIL("16", "16", "61")
    const kiln_attention_multiply self = {0.5, 1.2, 0.8, 1.5}, cross = {1.0, 0.7, 1.3, 0.9};
    const kiln_model_parts parts = {.self_attention = &self, .cross_attention = &cross};
    check_patched_run(&parts, (kiln_ksampler_params){0}, 16, 16, MULTIPLY_RUN("", "4"),
                      MULTIPLY_RUN("\"30\": {\"class_type\": \"LoraLoaderModelOnly\", \"inputs\": {\"model\": "
                                   "[\"4\", 0], \"lora_name\": \"" KILN_TEST_DATA "/lora/kohya_ldm.safetensors\", "
                                   "\"strength_model\": 0.7}}, ", "30"),
                      KILN_ERR_UNSUPPORTED, "node 60 (UNetSelfAttentionMultiply): the model has LoRAs");
#undef MULTIPLY_RUN
    /* CLIPAttentionMultiply on the CLIP both prompts are encoded with */
#define CLIP_MULTIPLY_RUN(lora, from)                                                                                 \
    "{" CKPT ", " lora "\"62\": {\"class_type\": \"CLIPAttentionMultiply\", \"inputs\": {\"clip\": [\"" from "\", 1], "   \
    "\"q\": 1.1, \"k\": 0.6, \"v\": 1, \"out\": 1.4}}, \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": "           \
    "{\"text\": \"a red circle\", \"clip\": [\"62\", 0]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": "       \
    "{\"text\": \"\", \"clip\": [\"62\", 0]}}, " PATCHED_RUN_TAIL("16", "16", "4")
    const kiln_attention_multiply clip = {1.1, 0.6, 1.0, 1.4};
    const kiln_model_parts clip_parts = {.clip_attention = &clip};
    check_patched_run(&clip_parts, (kiln_ksampler_params){0}, 16, 16, CLIP_MULTIPLY_RUN("", "4"),
                      CLIP_MULTIPLY_RUN("\"30\": {\"class_type\": \"LoraLoader\", \"inputs\": {\"model\": [\"4\", 0], "
                                        "\"clip\": [\"4\", 1], \"lora_name\": \"" KILN_TEST_DATA "/lora/kohya_ldm.safetensors\", "
                                        "\"strength_model\": 0.7, \"strength_clip\": 0.7}}, ", "30"),
                      KILN_ERR_UNSUPPORTED, "node 62 (CLIPAttentionMultiply): the CLIP has LoRAs");
#undef CLIP_MULTIPLY_RUN
}

/* LatentOperationTonemapReinhard through LatentApplyOperationCFG, and
 * LatentOperationSharpen through LatentApplyOperation on the sampled
 * latent: the library's run and operation, pixel for pixel; the CFG node
 * after TCFG is refused. */
static void latent_operation_nodes(void **state)
{
    (void)state;
#define OPERATION_RUN(cfg_from, model)                                                                                \
    CKPT_PROMPTS "\"70\": {\"class_type\": \"LatentOperationTonemapReinhard\", \"inputs\": {\"multiplier\": 0.8}}, "      \
    "\"71\": {\"class_type\": \"LatentOperationSharpen\", \"inputs\": {\"sharpen_radius\": 3, \"sigma\": 0.5, "            \
    "\"alpha\": 1}}, \"72\": {\"class_type\": \"TCFG\", \"inputs\": {\"model\": [\"4\", 0]}}, "                          \
    "\"60\": {\"class_type\": \"LatentApplyOperationCFG\", \"inputs\": {\"model\": [\"" cfg_from "\", 0], "               \
    "\"operation\": [\"70\", 0]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "          \
    "\"height\": 16, \"batch_size\": 1}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 3, "            \
    "\"steps\": 3, \"cfg\": 6, \"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, "                 \
    "\"model\": [\"" model "\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, " \
    "\"73\": {\"class_type\": \"LatentApplyOperation\", \"inputs\": {\"samples\": [\"3\", 0], \"operation\": "         \
    "[\"71\", 0]}}, " DECODE_SAVE("[\"73\", 0]") "}"
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, latent, sharpened;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    const kiln_latent_operation tonemap = {.kind = KILN_LATENT_OPERATION_TONEMAP_REINHARD, .multiplier = 0.8},
                                sharpen = {.kind = KILN_LATENT_OPERATION_SHARPEN, .sharpen_radius = 3, .sigma = 0.5,
                                           .alpha = 1.0};
    const kiln_ksampler_params p = {.seed = 3, .steps = 3, .cfg = 6.0, .sampler_name = "euler", .scheduler = "normal",
                                    .denoise = 1.0, .cfg_operation = &tonemap};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
    assert_kiln_ok(kiln_latent_apply_operation(&latent, &sharpen, &sharpened));
    assert_workflow_decodes_to(OPERATION_RUN("4", "60"), m, &sharpened);
    expect_refusal(OPERATION_RUN("72", "60"), KILN_ERR_UNSUPPORTED,
                   "node 60 (LatentApplyOperationCFG): after TCFG: kiln applies LatentApplyOperationCFG first");
#undef OPERATION_RUN
    kiln_latent_free(&latent);
    kiln_latent_free(&sharpened);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* The latent nodes on two KSampler runs (seeds 3 and 4): LatentCrop of
 * the second, LatentComposite of that onto the first (feathered),
 * LatentBlend, LatentInterpolate, LatentMultiply, LatentAdd, LatentSubtract,
 * LatentFlip, LatentRotate, LatentBatch and LatentFromBatch of its second
 * image, LatentCompositeMasked of the crop onto that (resized, under
 * LoadImageMask's mask); the library's calls on the runs' latents, pixel for
 * pixel. */
static void latent_nodes(void **state)
{
    (void)state;
#define LATENT_RUN(id, seed)                                                                                          \
    "\"" id "\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": " seed ", \"steps\": 2, \"cfg\": 4, "          \
    "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "                  \
    "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
#define LATENT_NODE(id, type, inputs) "\"" id "\": {\"class_type\": \"" type "\", \"inputs\": {" inputs "}}, "
    static const char graph[] =
        CKPT_PROMPTS "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 160, "
        "\"height\": 128, \"batch_size\": 1}}, " LATENT_RUN("3", "3") LATENT_RUN("13", "4")
        LATENT_NODE("20", "LatentCrop", "\"samples\": [\"13\", 0], \"width\": 64, \"height\": 72, \"x\": 16, \"y\": 8")
        LATENT_NODE("21", "LatentComposite", "\"samples_to\": [\"3\", 0], \"samples_from\": [\"20\", 0], \"x\": 40, "
                    "\"y\": 16, \"feather\": 16")
        LATENT_NODE("22", "LatentBlend", "\"samples1\": [\"21\", 0], \"samples2\": [\"13\", 0], \"blend_factor\": 0.3")
        LATENT_NODE("23", "LatentInterpolate", "\"samples1\": [\"22\", 0], \"samples2\": [\"3\", 0], \"ratio\": 0.4")
        LATENT_NODE("24", "LatentMultiply", "\"samples\": [\"13\", 0], \"multiplier\": 0.5")
        LATENT_NODE("25", "LatentAdd", "\"samples1\": [\"23\", 0], \"samples2\": [\"24\", 0]")
        LATENT_NODE("26", "LatentSubtract", "\"samples1\": [\"25\", 0], \"samples2\": [\"3\", 0]")
        LATENT_NODE("27", "LatentFlip", "\"samples\": [\"26\", 0], \"flip_method\": \"y-axis: horizontally\"")
        LATENT_NODE("28", "LatentRotate", "\"samples\": [\"27\", 0], \"rotation\": \"90 degrees\"")
        LATENT_NODE("29", "LatentBatch", "\"samples1\": [\"3\", 0], \"samples2\": [\"28\", 0]")
        LATENT_NODE("30", "LatentFromBatch", "\"samples\": [\"29\", 0], \"batch_index\": 1, \"length\": 1")
        LATENT_NODE("32", "LoadImageMask", "\"image\": \"" KILN_TEST_DATA "/inpaint/mask_20x17.png\", \"channel\": "
                    "\"red\"")
        LATENT_NODE("31", "LatentCompositeMasked", "\"destination\": [\"30\", 0], \"source\": [\"20\", 0], \"x\": 24, "
                    "\"y\": 8, \"resize_source\": true, \"mask\": [\"32\", 0]")
        DECODE_SAVE("[\"31\", 0]") "}";
#undef LATENT_RUN
#undef LATENT_NODE
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent empty, runs[2], step[12];
    tiny_sd15(&m, "", &pos, &neg, &empty);
    kiln_latent_free(&empty);
    assert_kiln_ok(kiln_empty_latent(m, 160, 128, 1, &empty));
    for (int k = 0; k < 2; k++) {
        const kiln_ksampler_params p = {.seed = 3 + (uint64_t)k, .steps = 2, .cfg = 4.0, .sampler_name = "euler",
                                        .scheduler = "normal", .denoise = 1.0};
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &runs[k]));
    }
    assert_kiln_ok(kiln_latent_crop(&runs[1], 2, 1, 8, 9, &step[0]));
    assert_kiln_ok(kiln_latent_composite(&runs[0], &step[0], 5, 2, 2, &step[1]));
    assert_kiln_ok(kiln_latent_blend(&step[1], &runs[1], 0.3, &step[2]));
    assert_kiln_ok(kiln_latent_combine(&step[2], &runs[0], "interpolate", 0.4, &step[3]));
    assert_kiln_ok(kiln_latent_multiply(&runs[1], 0.5, &step[4]));
    assert_kiln_ok(kiln_latent_combine(&step[3], &step[4], "add", 0.0, &step[5]));
    assert_kiln_ok(kiln_latent_combine(&step[5], &runs[0], "subtract", 0.0, &step[6]));
    assert_kiln_ok(kiln_latent_flip_rotate(&step[6], false, true, 0, &step[7]));
    assert_kiln_ok(kiln_latent_flip_rotate(&step[7], false, false, 1, &step[8]));
    assert_kiln_ok(kiln_latent_batch(&runs[0], &step[8], &step[9]));
    assert_kiln_ok(kiln_latent_from_batch(&step[9], 1, 1, &step[10]));
    kiln_image picture;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", &picture));
    float *weights = malloc((size_t)picture.width * picture.height * sizeof *weights);
    assert_non_null(weights);
    for (size_t i = 0; i < (size_t)picture.width * picture.height; i++) weights[i] = picture.pixels[3 * i] / 255.0f;
    assert_kiln_ok(kiln_latent_composite_masked(&step[10], &step[0], 3, 1, true, weights, picture.width,
                                                picture.height, &step[11]));
    assert_workflow_decodes_to(graph, m, &step[11]);
    free(weights);
    kiln_image_free(&picture);
    for (int k = 0; k < 12; k++) kiln_latent_free(&step[k]);
    kiln_latent_free(&runs[0]), kiln_latent_free(&runs[1]);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* ComfyUI's mask nodes between LoadImageMask and where a MASK is read:
 * GrowMask, SolidMask, MaskComposite, FeatherMask, InvertMask and CropMask
 * into SetLatentNoiseMask; MaskToImage, ImageToMask and ThresholdMask into
 * ConditioningSetMask; LoadImage's MASK (1 - alpha) into
 * LatentCompositeMasked. The workflow's picture is the library's calls' run
 * decoded (each call's values are test_mask_ops'). */
static void mask_nodes(void **state)
{
    (void)state;
#define MASK_NODE(id, type, inputs) "\"" id "\": {\"class_type\": \"" type "\", \"inputs\": {" inputs "}}, "
    static const char graph[] =
        CKPT_PROMPTS
        MASK_NODE("11", "LoadImage", "\"image\": \"" KILN_TEST_DATA "/inpaint/image_20x17.png\"")
        MASK_NODE("12", "VAEEncode", "\"pixels\": [\"11\", 0], \"vae\": [\"4\", 2]")
        MASK_NODE("50", "LoadImageMask", "\"image\": \"" KILN_TEST_DATA "/inpaint/mask_20x17.png\", \"channel\": "
                  "\"green\"")
        MASK_NODE("51", "GrowMask", "\"mask\": [\"50\", 0], \"expand\": 2, \"tapered_corners\": true")
        MASK_NODE("52", "SolidMask", "\"value\": 0.25, \"width\": 24, \"height\": 20")
        MASK_NODE("53", "MaskComposite", "\"destination\": [\"52\", 0], \"source\": [\"51\", 0], \"x\": 3, \"y\": 1, "
                  "\"operation\": \"add\"")
        MASK_NODE("54", "FeatherMask", "\"mask\": [\"53\", 0], \"left\": 2, \"top\": 1, \"right\": 3, \"bottom\": 0")
        MASK_NODE("55", "InvertMask", "\"mask\": [\"54\", 0]")
        MASK_NODE("56", "CropMask", "\"mask\": [\"55\", 0], \"x\": 1, \"y\": 2, \"width\": 20, \"height\": 16")
        MASK_NODE("14", "SetLatentNoiseMask", "\"samples\": [\"12\", 0], \"mask\": [\"56\", 0]")
        MASK_NODE("57", "MaskToImage", "\"mask\": [\"54\", 0]")
        MASK_NODE("58", "ImageToMask", "\"image\": [\"57\", 0], \"channel\": \"blue\"")
        MASK_NODE("59", "ThresholdMask", "\"mask\": [\"58\", 0], \"value\": 0.5")
        MASK_NODE("60", "ConditioningSetMask", "\"conditioning\": [\"6\", 0], \"mask\": [\"59\", 0], \"strength\": 1, "
                  "\"set_cond_area\": \"default\"")
        MASK_NODE("61", "CLIPTextEncode", "\"text\": \"a blue square\", \"clip\": [\"4\", 1]")
        MASK_NODE("62", "ConditioningCombine", "\"conditioning_1\": [\"60\", 0], \"conditioning_2\": [\"61\", 0]")
        "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 5, \"steps\": 2, \"cfg\": 4, "
        "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "
        "\"positive\": [\"62\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"14\", 0]}}, "
        MASK_NODE("63", "LoadImage", "\"image\": \"" KILN_TEST_DATA "/masks/" ALPHA_PNG "\"")
        MASK_NODE("64", "LatentCompositeMasked", "\"destination\": [\"3\", 0], \"source\": [\"12\", 0], \"x\": 0, "
                  "\"y\": 0, \"resize_source\": false, \"mask\": [\"63\", 1]")
        DECODE_SAVE("[\"64\", 0]") "}";
#undef MASK_NODE
    kiln_model *m;
    kiln_conditioning pos, neg, blue;
    kiln_latent empty, encoded, sampled, composed;
    tiny_sd15(&m, "", &pos, &neg, &empty);
    assert_kiln_ok(kiln_text_encode(m, "a blue square", 0, &blue));
    kiln_image picture, gray;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &picture));
    assert_kiln_ok(kiln_vae_encode(m, &picture, 1, &encoded));
    kiln_mask step[10];
    assert_kiln_ok(kiln_mask_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", "green", &step[0]));
    assert_kiln_ok(kiln_mask_grow(&step[0], 2, true, &step[1]));
    assert_kiln_ok(kiln_mask_solid(0.25f, 24, 20, &step[2]));
    assert_kiln_ok(kiln_mask_composite(&step[2], &step[1], 3, 1, "add", &step[3]));
    assert_kiln_ok(kiln_mask_feather(&step[3], 2, 1, 3, 0, &step[4]));
    assert_kiln_ok(kiln_mask_invert(&step[4], &step[5]));
    assert_kiln_ok(kiln_mask_crop(&step[5], 1, 2, 20, 16, &step[6]));
    assert_kiln_ok(kiln_mask_to_image(&step[4], &gray));
    assert_kiln_ok(kiln_mask_from_image(&gray, "blue", &step[7]));
    assert_kiln_ok(kiln_mask_threshold(&step[7], 0.5f, &step[8]));
    kiln_image alpha_picture;
    assert_kiln_ok(kiln_image_load_with_mask(KILN_TEST_DATA "/masks/" ALPHA_PNG, &alpha_picture, &step[9]));
    encoded.noise_mask = step[6].weights, encoded.mask_w = step[6].width, encoded.mask_h = step[6].height;
    kiln_conditioning_part parts[2] = {{.cond = &pos, .end_percent = 1.0, .mask = step[8].weights,
                                        .mask_w = step[8].width, .mask_h = step[8].height, .strength = 1.0},
                                       {.cond = &blue, .end_percent = 1.0}};
    const kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 4.0, .sampler_name = "euler",
                                    .scheduler = "normal", .denoise = 1.0, .positive_parts = parts,
                                    .positive_part_count = 2};
    assert_kiln_ok(kiln_ksampler(m, &p, NULL, &neg, &encoded, &sampled));
    encoded.noise_mask = NULL;
    assert_kiln_ok(kiln_latent_composite_masked(&sampled, &encoded, 0, 0, false, step[9].weights, step[9].width,
                                                step[9].height, &composed));
    assert_workflow_decodes_to(graph, m, &composed);
    for (int k = 0; k < 10; k++) kiln_mask_free(&step[k]);
    kiln_image_free(&alpha_picture), kiln_image_free(&gray), kiln_image_free(&picture);
    kiln_latent_free(&composed), kiln_latent_free(&sampled), kiln_latent_free(&encoded);
    kiln_conditioning_free(&blue);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* DualCFGGuider (both styles) and PerpNegGuider into SamplerCustomAdvanced,
 * and the PerpNeg node on KSampler's model: the library's run with the
 * guider's third prompt and scales, pixel for pixel (their guidance is
 * test_guiders'); PerpNeg at cfg 1 and under a three-prompt guider refused. */
static void three_prompt_guider_nodes(void **state)
{
    (void)state;
#define GUIDED_RUN(guider)                                                                                            \
    "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "                \
    "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", "         \
    "\"clip\": [\"4\", 1]}}, \"16\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a blue square\", " \
    "\"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "               \
    "\"height\": 16, \"batch_size\": 1}}, \"25\": {\"class_type\": \"RandomNoise\", \"inputs\": {\"noise_seed\": 8}}, " \
    "\"26\": {\"class_type\": \"KSamplerSelect\", \"inputs\": {\"sampler_name\": \"euler\"}}, "                      \
    "\"27\": {\"class_type\": \"BasicScheduler\", \"inputs\": {\"scheduler\": \"normal\", \"steps\": 2, "            \
    "\"denoise\": 1, \"model\": [\"4\", 0]}}, \"22\": " guider ", "                                                   \
    "\"3\": {\"class_type\": \"SamplerCustomAdvanced\", \"inputs\": {\"noise\": [\"25\", 0], \"guider\": "           \
    "[\"22\", 0], \"sampler\": [\"26\", 0], \"sigmas\": [\"27\", 0], \"latent_image\": [\"5\", 0]}}, "                \
    DECODE_SAVE("[\"3\", 0]") "}"
#define DUAL(style)                                                                                                   \
    "{\"class_type\": \"DualCFGGuider\", \"inputs\": {\"model\": [\"4\", 0], \"cond1\": [\"6\", 0], \"cond2\": "      \
    "[\"16\", 0], \"negative\": [\"7\", 0], \"cfg_conds\": 5, \"cfg_cond2_negative\": 2.5" style "}}"
    static const char *const graphs[3] = {
        GUIDED_RUN(DUAL("")), GUIDED_RUN(DUAL(", \"style\": \"nested\"")),
        GUIDED_RUN("{\"class_type\": \"PerpNegGuider\", \"inputs\": {\"model\": [\"4\", 0], \"positive\": [\"6\", 0], "
                   "\"negative\": [\"7\", 0], \"empty_conditioning\": [\"16\", 0], \"cfg\": 5, \"neg_scale\": 2.5}}")};
    kiln_model *m;
    kiln_conditioning pos, neg, blue;
    kiln_latent empty, latent;
    kiln_sigmas sigmas;
    tiny_sd15(&m, "blurry", &pos, &neg, &empty);
    assert_kiln_ok(kiln_text_encode(m, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_basic_scheduler(m, "normal", 2, 1.0, &sigmas));
    for (int k = 0; k < 3; k++) {
        kiln_ksampler_params p = {.seed = 8, .cfg = 5.0, .sampler_name = "euler", .sigmas = &sigmas};
        if (k < 2) p.dual_cfg_cond2 = &blue, p.cfg_cond2_negative = 2.5, p.dual_cfg_nested = k == 1;
        else p.perp_neg_empty = &blue, p.perp_neg_scale = 2.5;
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &latent));
        assert_workflow_decodes_to(graphs[k], m, &latent);
        kiln_latent_free(&latent);
    }
    expect_refusal(GUIDED_RUN(DUAL(", \"style\": \"sideways\"")), KILN_ERR_INVALID_ARG,
                   "node 22 (DualCFGGuider): style 'sideways' (regular or nested)");
#define PERP_NEG_RUN(cfg)                                                                                             \
    "{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", "                \
    "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"blurry\", "         \
    "\"clip\": [\"4\", 1]}}, \"16\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a blue square\", " \
    "\"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "               \
    "\"height\": 16, \"batch_size\": 1}}, \"60\": {\"class_type\": \"PerpNeg\", \"inputs\": {\"model\": [\"4\", 0], "   \
    "\"empty_conditioning\": [\"16\", 0], \"neg_scale\": 2.5}}, \"3\": {\"class_type\": \"KSampler\", \"inputs\": "     \
    "{\"seed\": 8, \"steps\": 2, \"cfg\": " cfg ", \"sampler_name\": \"euler\", \"scheduler\": \"normal\", "              \
    "\"denoise\": 1, \"model\": [\"60\", 0], \"positive\": [\"6\", 0], \"negative\": [\"7\", 0], "                    \
    "\"latent_image\": [\"5\", 0]}}, " DECODE_SAVE("[\"3\", 0]") "}"
    const kiln_ksampler_params perp = {.seed = 8, .steps = 2, .cfg = 5.0, .sampler_name = "euler",
                                       .scheduler = "normal", .denoise = 1.0, .perp_neg_empty = &blue,
                                       .perp_neg_scale = 2.5};
    assert_kiln_ok(kiln_ksampler(m, &perp, &pos, &neg, &empty, &latent));
    assert_workflow_decodes_to(PERP_NEG_RUN("5"), m, &latent);
    kiln_latent_free(&latent);
    expect_refusal(PERP_NEG_RUN("1"), KILN_ERR_UNSUPPORTED, "node 3 (KSampler): PerpNeg at cfg 1");
    expect_refusal(GUIDED_RUN("{\"class_type\": \"PerpNegGuider\", \"inputs\": {\"model\": [\"61\", 0], \"positive\": "
                              "[\"6\", 0], \"negative\": [\"7\", 0], \"empty_conditioning\": [\"16\", 0], \"cfg\": 5, "
                              "\"neg_scale\": 2.5}}, \"61\": {\"class_type\": \"PerpNeg\", \"inputs\": {\"model\": "
                              "[\"4\", 0], \"empty_conditioning\": [\"16\", 0], \"neg_scale\": 1}}"),
                   KILN_ERR_UNSUPPORTED, "a three-prompt guider on a model with PerpNeg");
#undef PERP_NEG_RUN
#undef DUAL
#undef GUIDED_RUN
    kiln_sigmas_free(&sigmas);
    kiln_conditioning_free(&blue);
    tiny_sd15_free(m, &pos, &neg, &empty);
}

/* VAEEncodeForInpaint on an inpainting model with LoadImage's MASK (the
 * picture's alpha) grown by 3: the library's run, pixel for pixel (the
 * grows themselves are test_inpaint's). */
static void vae_encode_for_inpaint_node(void **state)
{
    (void)state;
    static char graph[8192];
    snprintf(graph, sizeof graph,
             "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"%s\"}}, "
             "\"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a red circle\", \"clip\": [\"4\", 1]}}, "
             "\"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": [\"4\", 1]}}, "
             "\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"%s/inpaint/image_20x17.png\"}}, "
             "\"63\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"%s/masks/" ALPHA_PNG "\"}}, "
             "\"51\": {\"class_type\": \"VAEEncodeForInpaint\", \"inputs\": {\"pixels\": [\"11\", 0], \"vae\": "
             "[\"4\", 2], \"mask\": [\"63\", 1], \"grow_mask_by\": 3}}, "
             "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 6, \"steps\": 2, \"cfg\": 4, "
             "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "
             "\"positive\": [\"6\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"51\", 0]}}, "
             DECODE_SAVE("[\"3\", 0]") "}",
             tiny_inpaint_model(), KILN_TEST_DATA, KILN_TEST_DATA);
    kiln_model *m;
    kiln_conditioning pos, neg;
    kiln_latent encoded, latent;
    kiln_image picture, alpha_picture;
    kiln_mask alpha;
    assert_kiln_ok(kiln_checkpoint_load(backend, tiny_inpaint_model(), NULL, 0, &m));
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &picture));
    assert_kiln_ok(kiln_image_load_with_mask(KILN_TEST_DATA "/masks/" ALPHA_PNG, &alpha_picture, &alpha));
    assert_kiln_ok(kiln_vae_encode_for_inpaint_mask(m, &picture, &alpha, 3, &encoded));
    const kiln_ksampler_params p = {.seed = 6, .steps = 2, .cfg = 4.0, .sampler_name = "euler",
                                    .scheduler = "normal", .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &encoded, &latent));
    assert_workflow_decodes_to(graph, m, &latent);
    kiln_latent_free(&latent), kiln_latent_free(&encoded);
    kiln_mask_free(&alpha);
    kiln_image_free(&alpha_picture), kiln_image_free(&picture);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_model_free(m);
}

/* ImageCompositeMasked: a picture pasted onto another through its own
 * alpha (LoadImage's MASK), and resized over all of it without a mask: the
 * library's pictures, byte for byte. */
static void image_composite_masked_node(void **state)
{
    (void)state;
#define COMPOSITE_RUN(inputs)                                                                                         \
    "{\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA "/inpaint/image_20x17.png\"}}, " \
    "\"63\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA "/masks/" ALPHA_PNG "\"}}, "    \
    "\"70\": {\"class_type\": \"ImageCompositeMasked\", \"inputs\": {\"destination\": [\"11\", 0], \"source\": "        \
    "[\"63\", 0], " inputs "}}, \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"70\", 0]}}}"
    static const char *const graphs[2] = {
        COMPOSITE_RUN("\"x\": 3, \"y\": 2, \"resize_source\": false, \"mask\": [\"63\", 1]"),
        COMPOSITE_RUN("\"x\": 0, \"y\": 0, \"resize_source\": true")};
#undef COMPOSITE_RUN
    kiln_image dest, src, want;
    kiln_mask alpha;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &dest));
    assert_kiln_ok(kiln_image_load_with_mask(KILN_TEST_DATA "/masks/" ALPHA_PNG, &src, &alpha));
    for (int k = 0; k < 2; k++) {
        assert_kiln_ok(kiln_image_composite_masked(&dest, &src, k ? 0 : 3, k ? 0 : 2, k == 1, k ? NULL : &alpha, &want));
        kiln_image *images;
        int count;
        assert_kiln_ok(kiln_workflow_run(backend, graphs[k], &options, &images, &count));
        assert_int_equal(count, 1);
        assert_int_equal(images[0].width, want.width), assert_int_equal(images[0].height, want.height);
        assert_memory_equal(images[0].pixels, want.pixels, (size_t)want.width * want.height * 3);
        kiln_images_free(images, count);
        kiln_image_free(&want);
    }
    kiln_mask_free(&alpha);
    kiln_image_free(&src), kiln_image_free(&dest);
}

/* EmptyImage, ImageBlur, ImageSharpen, ImageRotate, ImageFlip, ImageInvert,
 * ImageBlend (onto a picture of another size: resized), Morphology and Canny chained: the library's calls' picture,
 * byte for byte (each call's bytes are test_image_ops'). */
static void image_filter_nodes(void **state)
{
    (void)state;
    static const char graph[] =
        "{\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA "/inpaint/image_20x17.png\"}}, "
        "\"71\": {\"class_type\": \"ImageBlur\", \"inputs\": {\"image\": [\"11\", 0], \"blur_radius\": 2, \"sigma\": 1.5}}, "
        "\"72\": {\"class_type\": \"ImageSharpen\", \"inputs\": {\"image\": [\"71\", 0], \"sharpen_radius\": 1, "
        "\"sigma\": 1, \"alpha\": 0.5}}, "
        "\"76\": {\"class_type\": \"ImageRotate\", \"inputs\": {\"image\": [\"72\", 0], \"rotation\": \"270 degrees\"}}, "
        "\"77\": {\"class_type\": \"ImageFlip\", \"inputs\": {\"image\": [\"76\", 0], \"flip_method\": "
        "\"y-axis: horizontally\"}}, "
        "\"73\": {\"class_type\": \"ImageInvert\", \"inputs\": {\"image\": [\"77\", 0]}}, "
        "\"74\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 12, \"height\": 9, \"batch_size\": 1, "
        "\"color\": 3368601}}, "
        "\"75\": {\"class_type\": \"ImageBlend\", \"inputs\": {\"image1\": [\"73\", 0], \"image2\": [\"74\", 0], "
        "\"blend_factor\": 0.4, \"blend_mode\": \"overlay\"}}, "
        "\"79\": {\"class_type\": \"Morphology\", \"inputs\": {\"image\": [\"75\", 0], \"operation\": \"close\", "
        "\"kernel_size\": 4}}, "
        "\"78\": {\"class_type\": \"Canny\", \"inputs\": {\"image\": [\"79\", 0], \"low_threshold\": 0.1, "
        "\"high_threshold\": 0.3}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"78\", 0]}}}";
    kiln_image step[10];
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &step[0]));
    assert_kiln_ok(kiln_image_blur(&step[0], 2, 1.5, &step[1]));
    assert_kiln_ok(kiln_image_sharpen(&step[1], 1, 1.0, 0.5, &step[6]));
    assert_kiln_ok(kiln_image_flip_rotate(&step[6], false, false, 3, &step[7]));
    assert_kiln_ok(kiln_image_flip_rotate(&step[7], false, true, 0, &step[2]));
    assert_kiln_ok(kiln_image_invert(&step[2], &step[3]));
    assert_kiln_ok(kiln_image_empty(12, 9, 3368601, &step[4]));
    assert_kiln_ok(kiln_image_blend(&step[3], &step[4], 0.4, "overlay", &step[5]));
    assert_kiln_ok(kiln_image_morphology(&step[5], "close", 4, &step[9]));
    assert_kiln_ok(kiln_image_canny(&step[9], 0.1, 0.3, &step[8]));
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, graph, &options, &images, &count));
    assert_int_equal(count, 1);
    assert_int_equal(images[0].width, 17), assert_int_equal(images[0].height, 20);
    assert_memory_equal(images[0].pixels, step[8].pixels, 20 * 17 * 3);
    kiln_images_free(images, count);
    for (int k = 0; k < 10; k++) kiln_image_free(&step[k]);
}

/* ImageStitch (a picture put left of a batch of two: the shorter batch's
 * picture repeated; without image2 the picture as it is), ResizeAndPadImage
 * and ImageScaleToMaxDimension chained: the library's calls' pictures, byte
 * for byte (each call's bytes are test_image_ops'). */
static void image_layout_nodes(void **state)
{
    (void)state;
    static const char graph[] =
        "{\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA "/inpaint/image_20x17.png\"}}, "
        "\"12\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA
        "/controlnet/hint_37x23.png\"}}, "
        "\"13\": {\"class_type\": \"ImageBatch\", \"inputs\": {\"image1\": [\"12\", 0], \"image2\": [\"12\", 0]}}, "
        "\"81\": {\"class_type\": \"ImageStitch\", \"inputs\": {\"image1\": [\"11\", 0], \"image2\": [\"13\", 0], "
        "\"direction\": \"left\", \"match_image_size\": true, \"spacing_width\": 5, \"spacing_color\": \"green\"}}, "
        "\"82\": {\"class_type\": \"ResizeAndPadImage\", \"inputs\": {\"image\": [\"81\", 0], \"target_width\": 40, "
        "\"target_height\": 30, \"padding_color\": \"white\", \"interpolation\": \"area\"}}, "
        "\"83\": {\"class_type\": \"ImageScaleToMaxDimension\", \"inputs\": {\"image\": [\"82\", 0], "
        "\"upscale_method\": \"lanczos\", \"largest_size\": 25}}, "
        "\"84\": {\"class_type\": \"ImageStitch\", \"inputs\": {\"image1\": [\"83\", 0], \"direction\": \"right\", "
        "\"match_image_size\": true, \"spacing_width\": 0, \"spacing_color\": \"white\"}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"84\", 0]}}}";
    kiln_image step[5];
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &step[0]));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &step[1]));
    assert_kiln_ok(kiln_image_stitch(&step[0], &step[1], "left", true, 5, "green", &step[2]));
    assert_kiln_ok(kiln_image_resize_and_pad(&step[2], 40, 30, "white", "area", &step[3]));
    assert_kiln_ok(kiln_image_scale_to_max_dimension(&step[3], "lanczos", 25, &step[4]));
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, graph, &options, &images, &count));
    assert_int_equal(count, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(images[i].width, step[4].width), assert_int_equal(images[i].height, step[4].height);
        assert_memory_equal(images[i].pixels, step[4].pixels, (size_t)step[4].width * step[4].height * 3);
    }
    kiln_images_free(images, count);
    for (int k = 0; k < 5; k++) kiln_image_free(&step[k]);
}

/* ImageAddNoise on a batch of two (one draw for both) and ImageColorToMask
 * of a colour the picture holds: the library's calls' picture and mask,
 * byte for byte (each call's values are test_image_ops' and test_mask_ops'). */
static void add_noise_and_color_mask_nodes(void **state)
{
    (void)state;
    static const char graph[] =
        "{\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA "/inpaint/image_20x17.png\"}}, "
        "\"12\": {\"class_type\": \"ImageBatch\", \"inputs\": {\"image1\": [\"11\", 0], \"image2\": [\"11\", 0]}}, "
        "\"13\": {\"class_type\": \"ImageAddNoise\", \"inputs\": {\"image\": [\"12\", 0], \"seed\": 99, "
        "\"strength\": 0.25}}, "
        "\"14\": {\"class_type\": \"ImageColorToMask\", \"inputs\": {\"image\": [\"11\", 0], \"color\": COLOR}}, "
        "\"15\": {\"class_type\": \"MaskToImage\", \"inputs\": {\"mask\": [\"14\", 0]}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"13\", 0]}}, "
        "\"10\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"15\", 0]}}}";
    kiln_image picture, batch[2], noisy[2], masked;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &picture));
    const uint32_t color = (uint32_t)picture.pixels[0] << 16 | (uint32_t)picture.pixels[1] << 8 | picture.pixels[2];
    batch[0] = batch[1] = picture;
    assert_kiln_ok(kiln_image_add_noise(batch, 2, 99, 0.25, noisy));
    kiln_mask mask;
    assert_kiln_ok(kiln_mask_from_color(&picture, color, &mask));
    assert_true(mask.weights[0] == 1.0f);
    assert_kiln_ok(kiln_mask_to_image(&mask, &masked));
    char json[sizeof graph + 16], number[16];
    snprintf(number, sizeof number, "%u", color);
    const char *at = strstr(graph, "COLOR");
    snprintf(json, sizeof json, "%.*s%s%s", (int)(at - graph), graph, number, at + 5);
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend, json, &options, &images, &count));
    assert_int_equal(count, 3);
    const size_t bytes = (size_t)picture.width * picture.height * 3;
    assert_memory_equal(images[0].pixels, noisy[0].pixels, bytes);
    assert_memory_equal(images[1].pixels, noisy[1].pixels, bytes);
    assert_memory_not_equal(images[0].pixels, images[1].pixels, bytes);
    assert_memory_equal(images[2].pixels, masked.pixels, bytes);
    kiln_images_free(images, count);
    kiln_image_free(&noisy[0]), kiln_image_free(&noisy[1]), kiln_image_free(&masked), kiln_image_free(&picture);
    kiln_mask_free(&mask);
}

static char saved_file[4096];
static void remember_file(void *ctx, const char *path)
{
    ++*(int *)ctx;
    snprintf(saved_file, sizeof saved_file, "%s", path);
}

/* The options with a new output folder under /tmp (its path into dir),
 * each file written counted in *written. */
static kiln_workflow_options saving_into(char dir[32], int *written)
{
    snprintf(dir, 32, "/tmp/kiln_saved_XXXXXX");
    assert_non_null(mkdtemp(dir));
    *written = 0;
    kiln_workflow_options saving = options;
    saving.output_dir = dir, saving.wrote = remember_file, saving.wrote_ctx = written;
    return saving;
}

static void remove_folder(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* CheckpointSave of the model with a LoRA merged in: the file the library
 * writes for that load, byte for byte, at the prefix's folder and first free
 * counter (the next run the second); refused without an output folder, with
 * a CLIP of another load, and with a prefix that leaves the folder. */
static void checkpoint_save_node(void **state)
{
    (void)state;
#define SAVE_RUN(clip, prefix)                                                                                        \
    "{" CKPT ", \"10\": {\"class_type\": \"LoraLoader\", \"inputs\": {\"model\": [\"4\", 0], \"clip\": [\"4\", 1], "     \
    "\"lora_name\": \"" KILN_TEST_DATA "/lora/kohya_ldm.safetensors\", \"strength_model\": 0.8, "                    \
    "\"strength_clip\": 0.6}}, \"50\": {\"class_type\": \"CheckpointSave\", \"inputs\": {\"model\": [\"10\", 0], "      \
    "\"clip\": " clip ", \"vae\": [\"4\", 2], \"filename_prefix\": \"" prefix "\"}}}"
    char dir[32];
    int written;
    kiln_workflow_options saving = saving_into(dir, &written);
    kiln_image *images;
    int count;
    char want[4200], path[4200];
    for (int run = 1; run <= 2; run++) {
        assert_kiln_ok(kiln_workflow_run(backend, SAVE_RUN("[\"10\", 1]", "checkpoints/merged"), &saving, &images,
                                         &count));
        assert_int_equal(count, 0), assert_int_equal(written, run);
        kiln_images_free(images, count);
        snprintf(want, sizeof want, "%s/checkpoints/merged_%05d_.safetensors", dir, run);
        assert_string_equal(saved_file, want);
    }
    kiln_model *m;
    const kiln_lora lora = {KILN_TEST_DATA "/lora/kohya_ldm.safetensors", 0.8, 0.6};
    assert_kiln_ok(kiln_checkpoint_load(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", &lora, 1, &m));
    snprintf(path, sizeof path, "%s/library.safetensors", dir);
    assert_kiln_ok(kiln_model_save_checkpoint(m, path));
    kiln_model_free(m);
    size_t a, b;
    uint8_t *mine = kiln_test_read_file(path, &a), *theirs = kiln_test_read_file(want, &b);
    assert_int_equal(a, b);
    assert_memory_equal(mine, theirs, a);
    free(mine), free(theirs);
    expect_refusal(SAVE_RUN("[\"10\", 1]", "merged"), KILN_ERR_UNSUPPORTED, "node 50 (CheckpointSave): no folder");
    assert_int_equal(kiln_workflow_run(backend, SAVE_RUN("[\"4\", 1]", "merged"), &saving, &images, &count),
                     KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "another load than the MODEL's"));
    assert_int_equal(kiln_workflow_run(backend, SAVE_RUN("[\"10\", 1]", "../merged"), &saving, &images, &count),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "filename_prefix '../merged'"));
#undef SAVE_RUN
    remove_folder(dir);
}

/* VAESave and ModelSave beside each other, with no SaveImage: the library's
 * files byte for byte, named as ComfyUI names them. */
static void vae_and_model_save_nodes(void **state)
{
    (void)state;
    char dir[32];
    int written;
    kiln_workflow_options saving = saving_into(dir, &written);
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(backend,
                                     "{" CKPT ", \"60\": {\"class_type\": \"VAESave\", \"inputs\": {\"vae\": [\"4\", 2], "
                                     "\"filename_prefix\": \"vae/ComfyUI_vae\"}}, \"61\": {\"class_type\": \"ModelSave\", "
                                     "\"inputs\": {\"model\": [\"4\", 0], \"filename_prefix\": \"diffusion_models/ComfyUI\"}}}",
                                     &saving, &images, &count));
    assert_int_equal(count, 0), assert_int_equal(written, 2);
    kiln_images_free(images, count);
    kiln_model *m;
    assert_kiln_ok(kiln_checkpoint_load(backend, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", NULL, 0, &m));
    static const char *const files[2] = {"vae/ComfyUI_vae_00001_.safetensors", "diffusion_models/ComfyUI_00001_.safetensors"};
    for (int k = 0; k < 2; k++) {
        char mine[4200], theirs[4200];
        snprintf(mine, sizeof mine, "%s/library.safetensors", dir);
        snprintf(theirs, sizeof theirs, "%s/%s", dir, files[k]);
        assert_kiln_ok(k ? kiln_model_save_diffusion_model(m, mine) : kiln_model_save_vae(m, mine));
        size_t a, b;
        uint8_t *x = kiln_test_read_file(mine, &a), *y = kiln_test_read_file(theirs, &b);
        assert_int_equal(a, b);
        assert_memory_equal(x, y, a);
        free(x), free(y);
    }
    kiln_model_free(m);
    remove_folder(dir);
}

/* SaveLatent writes ComfyUI's .latent file beside the run (the workflow in
 * its metadata); LoadLatent of it decodes to the run's pixels. */
static void latent_save_load_nodes(void **state)
{
    (void)state;
    char dir[32];
    int written;
    kiln_workflow_options saving = saving_into(dir, &written);
    kiln_image *images[2];
    int count[2];
    assert_kiln_ok(kiln_workflow_run(backend,
                                     PRIMITIVE_GRAPH("5", "2", "\"a red circle\"", "true",
                                                     "\"50\": {\"class_type\": \"SaveLatent\", \"inputs\": {"
                                                     "\"samples\": [\"3\", 0], \"filename_prefix\": "
                                                     "\"latents/ComfyUI\"}}, "),
                                     &saving, &images[0], &count[0]));
    assert_int_equal(count[0], 1), assert_int_equal(written, 1);
    char want[4200], graph[8192];
    snprintf(want, sizeof want, "%s/latents/ComfyUI_00001_.latent", dir);
    assert_string_equal(saved_file, want);
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(want, &f));
    const char *prompt = kiln_st_metadata(f, "prompt");
    assert_non_null(prompt);
    assert_non_null(strstr(prompt, "\"SaveLatent\""));
    kiln_st_close(f);
    snprintf(graph, sizeof graph,
             "{" CKPT ", \"60\": {\"class_type\": \"LoadLatent\", \"inputs\": {\"latent\": \"%s\"}}, "
             DECODE_SAVE("[\"60\", 0]") "}", want);
    assert_kiln_ok(kiln_workflow_run(backend, graph, &options, &images[1], &count[1]));
    assert_int_equal(count[1], 1);
    assert_int_equal(images[1][0].width, images[0][0].width);
    assert_memory_equal(images[1][0].pixels, images[0][0].pixels, (size_t)images[0][0].width * images[0][0].height * 3);
    for (int k = 0; k < 2; k++) kiln_images_free(images[k], count[k]);
    remove_folder(dir);
}

#undef PRIMITIVE_GRAPH

static void refusals(void **state)
{
    (void)state;
    expect_refusal("not json", KILN_ERR_FORMAT, "API format");
    expect_refusal("{\"nodes\": [], \"links\": []}", KILN_ERR_FORMAT, "Save (API)");
    expect_refusal("{" CKPT "}", KILN_ERR_INVALID_ARG, "no SaveImage");
    expect_refusal("{" CKPT ", \"5\": {\"class_type\": \"UltimateSDUpscale\", \"inputs\": {}}, "
                   DECODE_SAVE("[\"5\", 0]") "}",
                   KILN_ERR_UNSUPPORTED, "node 5 (UltimateSDUpscale)");
    expect_refusal("{" CKPT ", " DECODE_SAVE("[\"77\", 0]") "}", KILN_ERR_INVALID_ARG, "node 77, which is not");
    expect_refusal("{" CKPT ", " DECODE_SAVE("[\"4\", 1]") "}", KILN_ERR_INVALID_ARG,
                   "node 8 (VAEDecode): input 'samples' wants a LATENT; node 4's output 1 is CLIP");
    expect_refusal("{" CKPT ", " DECODE_SAVE("[\"8\", 0]") "}", KILN_ERR_INVALID_ARG, "cycle");
    expect_refusal("{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", "
                   "\"inputs\": {\"ckpt_name\": \"nope.safetensors\"}}, "
                   "\"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, \"height\": 16, "
                   "\"batch_size\": 1}}, " DECODE_SAVE("[\"5\", 0]") "}",
                   KILN_ERR_IO, "'nope.safetensors' not found");
    /* ImagePadForOutpaint's canvas and mask are kiln's only on their way into an encoder */
#define PAD                                                                                                           \
    "\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA "/inpaint/image_20x17.png\"}}, " \
    "\"53\": {\"class_type\": \"ImagePadForOutpaint\", \"inputs\": {\"left\": 8, \"top\": 0, \"right\": 0, "        \
    "\"bottom\": 0, \"feathering\": 4, \"image\": [\"11\", 0]}}"
    expect_refusal("{" PAD ", \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"53\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "node 9 (SaveImage): input 'images': ImagePadForOutpaint's outputs go to");
    expect_refusal("{" CKPT ", " PAD ", \"12\": {\"class_type\": \"VAEEncode\", \"inputs\": {\"pixels\": [\"11\", 0], "
                   "\"vae\": [\"4\", 2]}}, \"14\": {\"class_type\": \"SetLatentNoiseMask\", \"inputs\": {\"samples\": "
                   "[\"12\", 0], \"mask\": [\"53\", 1]}}, " DECODE_SAVE("[\"14\", 0]") "}",
                   KILN_ERR_UNSUPPORTED, "an outpainting mask on another latent");
#undef PAD
    expect_refusal("{\"12\": {\"class_type\": \"UNETLoader\", \"inputs\": {\"unet_name\": "
                   "\"sd15_tiny_ldm_fp32.safetensors\", \"weight_dtype\": \"int4\"}}, "
                   "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"12\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "node 12 (UNETLoader): weight_dtype 'int4'");
    expect_refusal("{\"12\": {\"class_type\": \"UnetLoaderGGUFAdvanced\", \"inputs\": {\"unet_name\": "
                   "\"flux1-tiny-Q8_0.gguf\", \"dequant_dtype\": \"bfloat16\", \"patch_dtype\": \"default\", "
                   "\"patch_on_device\": false}}, "
                   "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"12\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "node 12 (UnetLoaderGGUFAdvanced): dequant_dtype 'bfloat16'");
    expect_refusal("{\"11\": {\"class_type\": \"DualCLIPLoaderGGUF\", \"inputs\": {\"clip_name1\": "
                   "\"sd15_tiny_ldm_fp32.safetensors\", \"clip_name2\": \"sd15_tiny_ldm_fp32.safetensors\", "
                   "\"type\": \"mochi\"}}, \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"11\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "node 11 (DualCLIPLoaderGGUF): type 'mochi'");
    expect_refusal("{\"11\": {\"class_type\": \"DualCLIPLoader\", \"inputs\": {\"clip_name1\": "
                   "\"sd15_tiny_ldm_fp32.safetensors\", \"clip_name2\": \"sd15_tiny_ldm_fp32.safetensors\", "
                   "\"type\": \"hunyuan_video\"}}, \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"11\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "type 'hunyuan_video'");
    expect_refusal("{\"11\": {\"class_type\": \"CLIPLoader\", \"inputs\": {\"clip_name\": "
                   "\"sd15_tiny_ldm_fp32.safetensors\", \"type\": \"sd3\"}}, "
                   "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"11\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "node 11 (CLIPLoader): type 'sd3'");
    expect_refusal("{\"10\": {\"class_type\": \"VAELoader\", \"inputs\": {\"vae_name\": "
                   "\"sd15_tiny_ldm_fp32.safetensors\"}}, \"8\": {\"class_type\": \"VAEDecode\", \"inputs\": "
                   "{\"samples\": [\"10\", 0], \"vae\": [\"10\", 0]}}, "
                   "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}",
                   KILN_ERR_UNSUPPORTED, "node 10 (VAELoader): kiln reads it beside a UNETLoader's");
    /* InpaintModelConditioning is FLUX.1 Fill's in kiln; SD's inpainting models take VAEEncodeForInpaint */
    expect_refusal("{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"x\", "
                   "\"clip\": [\"4\", 1]}}, \"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \""
                   KILN_TEST_DATA "/inpaint/image_20x17.png\"}}, \"50\": {\"class_type\": \"LoadImageMask\", "
                   "\"inputs\": {\"image\": \"" KILN_TEST_DATA "/inpaint/mask_20x17.png\", \"channel\": \"red\"}}, "
                   "\"55\": {\"class_type\": \"InpaintModelConditioning\", \"inputs\": {\"positive\": [\"6\", 0], "
                   "\"negative\": [\"6\", 0], \"vae\": [\"4\", 2], \"pixels\": [\"11\", 0], \"mask\": [\"50\", 0], "
                   "\"noise_mask\": true}}, " DECODE_SAVE("[\"55\", 2]") "}",
                   KILN_ERR_UNSUPPORTED, "node 55 (InpaintModelConditioning): a sd1 txt2img model (kiln runs this node "
                   "for FLUX.1 Fill");
    /* ControlNetApplyAdvanced's positive output alone: kiln applies that node's ControlNet to both prompts */
    expect_refusal("{" CKPT ", \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"x\", "
                   "\"clip\": [\"4\", 1]}}, \"7\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", "
                   "\"clip\": [\"4\", 1]}}, \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16, "
                   "\"height\": 16, \"batch_size\": 1}}, \"40\": {\"class_type\": \"ControlNetLoader\", \"inputs\": "
                   "{\"control_net_name\": \"" KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors\"}}, "
                   "\"41\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"" KILN_TEST_DATA
                   "/controlnet/hint_37x23.png\"}}, \"42\": {\"class_type\": \"ControlNetApplyAdvanced\", \"inputs\": "
                   "{\"strength\": 1, \"start_percent\": 0, \"end_percent\": 1, \"positive\": [\"6\", 0], "
                   "\"negative\": [\"7\", 0], \"control_net\": [\"40\", 0], \"image\": [\"41\", 0]}}, "
                   "\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 1, \"steps\": 1, \"cfg\": 7, "
                   "\"sampler_name\": \"euler\", \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], "
                   "\"positive\": [\"42\", 0], \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}}, "
                   DECODE_SAVE("[\"3\", 0]") "}",
                   KILN_ERR_UNSUPPORTED, "node 3 (KSampler): the positive and negative prompts come through different "
                   "ControlNetApplyAdvanced nodes");
    /* the older ControlNetApply on the negative prompt */
    expect_refusal(CONTROLNET_APPLY_RUN(CONTROLNET_LOADER, "\"euler\"", "[\"6\", 0]", "[\"42\", 0]"),
                   KILN_ERR_UNSUPPORTED, "node 3 (KSampler): the negative prompt comes through ControlNetApply");
    expect_refusal("{" CKPT ", \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {\"width\": 16.5, "
                   "\"height\": 16, \"batch_size\": 1}}, " DECODE_SAVE("[\"5\", 0]") "}",
                   KILN_ERR_INVALID_ARG, "input 'width' 16.5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(comfyui_runs), cmocka_unit_test(flux_from_separate_files),
                                       cmocka_unit_test(flux_ip_adapter_nodes), cmocka_unit_test(ip_adapter_image_batch),
                                       cmocka_unit_test(kontext_nodes),
                                       cmocka_unit_test(sd3_nodes), cmocka_unit_test(conditioning_concat_and_average),
                                       cmocka_unit_test(latent_upscale_node), cmocka_unit_test(image_scale_nodes),
                                       cmocka_unit_test(image_pick_nodes),
                                       cmocka_unit_test(sigma_nodes), cmocka_unit_test(primitive_nodes),
                                       cmocka_unit_test(controlnet_apply_node), cmocka_unit_test(newer_sampler_nodes),
                                       cmocka_unit_test(latent_from_batch_node),
                                       cmocka_unit_test(latent_concat_cut_nodes),
                                       cmocka_unit_test(latent_batch_seed_behavior_node),
                                       cmocka_unit_test(sampler_euler_cfg_pp_node),
                                       cmocka_unit_test(conditioning_set_mask_node),
                                       cmocka_unit_test(conditioning_set_area_nodes),
                                       cmocka_unit_test(guidance_patch_nodes),
        cmocka_unit_test(freeu_nodes),
        cmocka_unit_test(hypertile_nodes),
        cmocka_unit_test(hypernetwork_nodes),
        cmocka_unit_test(string_test_nodes),
        cmocka_unit_test(plain_value_nodes),
        cmocka_unit_test(pag_nodes),
        cmocka_unit_test(sag_nodes),
        cmocka_unit_test(merge_nodes),
        cmocka_unit_test(pixart_alpha_nodes),
        cmocka_unit_test(latent_operation_nodes),
        cmocka_unit_test(attention_multiply_nodes),
        cmocka_unit_test(model_sampling_nodes),
                                       cmocka_unit_test(latent_nodes), cmocka_unit_test(mask_nodes),
                                       cmocka_unit_test(three_prompt_guider_nodes),
                                       cmocka_unit_test(vae_encode_for_inpaint_node),
                                       cmocka_unit_test(image_composite_masked_node),
                                       cmocka_unit_test(image_filter_nodes),
        cmocka_unit_test(image_layout_nodes),
        cmocka_unit_test(add_noise_and_color_mask_nodes),
        cmocka_unit_test(checkpoint_save_node),
        cmocka_unit_test(latent_save_load_nodes),
        cmocka_unit_test(vae_and_model_save_nodes),
                                       cmocka_unit_test(refusals)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
