/* The embedding API (include/kiln.h) as a frontend uses it, node by node,
 * against ComfyUI's recorded runs (tests/data/comfyui_e2e): every txt2img run
 * from the prompt text and the seed alone (CLIPTextEncode, EmptyLatentImage,
 * KSampler, VAEDecode), and img2img from the input pictures (VAEEncode
 * first); inpainting and outpainting encodes against their goldens and a
 * masked run keeping what is not masked; then its ControlNet, IP-Adapter,
 * InstructPix2Pix, LoRA and upscaler wiring, its progress callback, and that
 * bad input is refused by name. Only kiln.h is called; the golden files
 * are read with the test support's reader. */
#include "kiln_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"

#include "golden.h"
#include "resample.h"
#include "tiny_variants.h"

/* the goldens' bound on final latents in f32 on the CPU (../shared/goldens/README.md) */
#define RUN_TOL 1e-4

static kiln_backend *backend;
static kiln_model *model;

static int setup(void **state)
{
    (void)state;
    return kiln_test_open_tiny_sd15(&backend, &model);
}

static int teardown(void **state)
{
    (void)state;
    kiln_test_close_model(backend, model);
    return 0;
}

/* The run's pictures as IMAGEs: the golden's (B,H,W,3) uint8 values. */
static kiln_image *images_of(const golden *g)
{
    int B = (int)g->shape[0], H = (int)g->shape[1], W = (int)g->shape[2];
    kiln_image *images = calloc((size_t)B, sizeof *images);
    for (int b = 0; b < B; b++) {
        images[b] = (kiln_image){W, H, 3, malloc((size_t)H * W * 3)};
        for (size_t i = 0; i < (size_t)H * W * 3; i++)
            images[b].pixels[i] = (uint8_t)(g->data[(size_t)b * H * W * 3 + i] + 0.5f);
    }
    return images;
}

static void free_images(kiln_image *images, int n)
{
    for (int i = 0; i < n; i++) kiln_image_free(&images[i]);
    free(images);
}

static void check_run(const char *file)
{
    char rel[512];
    snprintf(rel, sizeof rel, "comfyui_e2e/%s", file);
    kiln_st_file *f = golden_open(rel);
    print_message("%-40s\n", file);
    golden want = golden_read(f, "latent_out"), pixels = golden_read(f, "image_uint8");
    int batch = atoi(golden_meta(f, "batch_size")), clip_skip = atoi(golden_meta(f, "clip_skip"));
    int h = (int)want.shape[2], w = (int)want.shape[3], H = (int)pixels.shape[1], W = (int)pixels.shape[2];

    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(model, golden_meta(f, "positive_prompt"), clip_skip, &pos));
    assert_kiln_ok(kiln_text_encode(model, golden_meta(f, "negative_prompt"), clip_skip, &neg));
    kiln_latent in;
    if (kiln_st_find(f, "latent_in")) { /* img2img: LoadImage -> VAEEncode of the recorded input pictures */
        kiln_st_file *input = golden_open("comfyui_e2e/img2img_input.st");
        golden picture = golden_read(input, "image_uint8"), encoded = golden_read(input, "latent");
        kiln_image *images = images_of(&picture);
        assert_int_equal(picture.shape[0], batch);
        assert_kiln_ok(kiln_vae_encode(model, images, batch, &in));
        assert_int_equal(in.batch, batch);
        assert_int_equal(in.height, h);
        assert_int_equal(in.width, w);
        assert_rel_l2_le(in.data, encoded.data, encoded.count, RUN_TOL);
        free_images(images, batch);
        golden_free(&picture);
        golden_free(&encoded);
        kiln_st_close(input);
    } else {
        assert_kiln_ok(kiln_empty_latent(model, W, H, batch, &in));
        assert_int_equal(in.height, h);
        assert_int_equal(in.width, w);
    }
    kiln_ksampler_params p = {.seed = strtoull(golden_meta(f, "seed"), NULL, 10),
                              .steps = atoi(golden_meta(f, "steps")),
                              .cfg = strtod(golden_meta(f, "cfg"), NULL),
                              .sampler_name = golden_meta(f, "sampler_name"),
                              .scheduler = golden_meta(f, "scheduler"),
                              .denoise = strtod(golden_meta(f, "denoise"), NULL)};
    kiln_latent out;
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &in, &out));
    assert_int_equal((size_t)out.batch * out.channels * out.height * out.width, want.count);
    assert_rel_l2_le(out.data, want.data, want.count, RUN_TOL);

    kiln_image *decoded = calloc((size_t)batch, sizeof *decoded);
    assert_kiln_ok(kiln_vae_decode(model, &out, decoded, batch));
    int worst = golden_pixels_worst(decoded, batch, &pixels);
    if (worst > 1) fail_msg("%s: pixels differ by %d levels", file, worst); /* the README's bound */
    free_images(decoded, batch);
    kiln_latent_free(&in);
    kiln_latent_free(&out);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    golden_free(&want);
    golden_free(&pixels);
    kiln_st_close(f);
}

static void comfyui_runs(void **state)
{
    (void)state;
    DIR *dir = opendir(kiln_test_data("comfyui_e2e"));
    assert_non_null(dir);
    int txt2img = 0, img2img = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        check_run(e->d_name);
        if (strncmp(e->d_name, "img2img", 7) == 0) img2img++;
        else txt2img++;
    }
    closedir(dir);
    assert_true(txt2img >= 30);
    assert_int_equal(img2img, 2);
}

/* The tests' two prompts on the tiny model: "a red circle" and "blurry". */
static void encode_pair(kiln_conditioning *pos, kiln_conditioning *neg)
{
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, pos));
    assert_kiln_ok(kiln_text_encode(model, "blurry", 0, neg));
}

/* A small txt2img run on the tiny model, with or without a ControlNet. */
static void sample(kiln_model *m, const kiln_control_apply *control, kiln_latent *out)
{
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_latent empty;
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 7, .steps = 4, .cfg = 5.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .control = control};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, out));
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
}

static size_t latent_count(const kiln_latent *l)
{
    return (size_t)l->batch * l->channels * l->height * l->width;
}

/* ControlNetApplyAdvanced's semantics through the API: strength 0, or a
 * range no step of the schedule falls in, is the plain run to the bit (the
 * residuals are never added); strength 1 over the whole run changes it. (The
 * ControlNet's own outputs are checked against diffusers in test_controlnet.) */
static void controlnet(void **state)
{
    (void)state;
    kiln_controlnet *cn;
    assert_kiln_ok(kiln_controlnet_load(model, kiln_test_data("controlnet/tiny_ldm.safetensors"), &cn));
    kiln_image hint;
    assert_kiln_ok(kiln_image_load(kiln_test_data("controlnet/hint_37x23.png"), &hint));
    kiln_latent plain, off, late, on;
    sample(model, NULL, &plain);
    kiln_control_apply apply = {cn, &hint, 0.0, 0.0, 1.0, NULL, NULL, false};
    sample(model, &apply, &off);
    apply = (kiln_control_apply){cn, &hint, 1.0, 1.0, 1.0, NULL, NULL, false};
    sample(model, &apply, &late);
    apply = (kiln_control_apply){cn, &hint, 1.0, 0.0, 1.0, NULL, NULL, false};
    sample(model, &apply, &on);
    size_t n = latent_count(&plain);
    assert_memory_equal(off.data, plain.data, n * sizeof(float));
    assert_memory_equal(late.data, plain.data, n * sizeof(float));
    assert_true(kiln_rel_l2(on.data, plain.data, n) > 0.01);
    apply.image = NULL;
    kiln_ksampler_params p = {.steps = 1, .sampler_name = "euler", .scheduler = "normal", .denoise = 1.0,
                              .control = &apply};
    kiln_conditioning pos;
    assert_kiln_ok(kiln_text_encode(model, "x", 0, &pos));
    kiln_latent out;
    assert_int_equal(kiln_ksampler(model, &p, &pos, &pos, &plain, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "ControlNet"));
    kiln_conditioning_free(&pos);
    kiln_latent_free(&plain), kiln_latent_free(&off), kiln_latent_free(&late), kiln_latent_free(&on);
    kiln_image_free(&hint);
    kiln_controlnet_free(cn);
}

/* One euler step from the tiny model's txt2img start to sigma 0, two
 * images: the guided x0 prediction itself. */
static void guided_prediction(const kiln_control_apply *control, double cfg, kiln_latent *out)
{
    kiln_conditioning pos, neg;
    encode_pair(&pos, &neg);
    kiln_latent empty;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 2, &empty));
    kiln_ksampler_params p = {.seed = 5, .steps = 1, .cfg = cfg, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .control = control};
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, out));
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
}

/* ControlNetApply (positive_only): the negative prompt's prediction without
 * the ControlNet, the positive's with it. At cfg 0 the guided prediction is
 * the negative's (the plain run's), at cfg 1 the positive's (the
 * ControlNetApplyAdvanced run's, whose negative rows do not run), so at cfg
 * 3 it must be plain0 + 3 (advanced1 - plain0). */
static void controlnet_positive_only(void **state)
{
    (void)state;
    kiln_controlnet *cn;
    assert_kiln_ok(kiln_controlnet_load(model, kiln_test_data("controlnet/tiny_ldm.safetensors"), &cn));
    kiln_image hint;
    assert_kiln_ok(kiln_image_load(kiln_test_data("controlnet/hint_37x23.png"), &hint));
    kiln_control_apply both = {cn, &hint, 1.0, 0.0, 1.0, NULL, NULL, false}, positive = both;
    positive.positive_only = true;
    kiln_latent plain0, advanced1, advanced3, only3;
    guided_prediction(NULL, 0.0, &plain0);
    guided_prediction(&both, 1.0, &advanced1);
    guided_prediction(&both, 3.0, &advanced3);
    guided_prediction(&positive, 3.0, &only3);
    const size_t n = latent_count(&plain0);
    float *want = malloc(n * sizeof *want);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) want[i] = plain0.data[i] + 3.0f * (advanced1.data[i] - plain0.data[i]);
    double err = kiln_rel_l2(only3.data, want, n);
    print_message("  positive-only ControlNet at cfg 3 vs its parts: rel L2 %.2g (vs both prompts' %.2g)\n", err,
                  kiln_rel_l2(advanced3.data, want, n));
    assert_true(err <= 1e-5);
    assert_true(kiln_rel_l2(advanced3.data, want, n) > 1e-3);
    free(want);
    kiln_latent_free(&plain0), kiln_latent_free(&advanced1), kiln_latent_free(&advanced3), kiln_latent_free(&only3);
    kiln_image_free(&hint);
    kiln_controlnet_free(cn);
}

/* LoraLoader through kiln_checkpoint_load: the text-encoder strength alone
 * moves the conditioning (0 leaves it to the bit), and a LoRA file that is
 * not there is named. (The merge itself is checked in test_lora.) */
static void lora(void **state)
{
    (void)state;
    char lora_path[1024]; /* kiln_test_data's buffer is reused by the next call */
    snprintf(lora_path, sizeof lora_path, "%s", kiln_test_data("lora/kohya_ldm.safetensors"));
    kiln_conditioning c[3];
    for (int i = 0; i < 3; i++) {
        kiln_lora l = {lora_path, 1.0, i == 2 ? 1.0 : 0.0};
        kiln_model *m;
        assert_kiln_ok(kiln_checkpoint_load(backend, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), &l,
                                            i == 0 ? 0 : 1, &m));
        assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c[i]));
        kiln_model_free(m);
    }
    size_t n = (size_t)c[0].tokens * c[0].dim;
    assert_memory_equal(c[1].data, c[0].data, n * sizeof(float));
    assert_true(kiln_rel_l2(c[2].data, c[0].data, n) > 1e-3);
    for (int i = 0; i < 3; i++) kiln_conditioning_free(&c[i]);

    kiln_lora missing = {"/nonexistent/lora.safetensors", 1.0, 1.0};
    kiln_model *m = NULL;
    assert_int_not_equal(kiln_checkpoint_load(backend, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"),
                                              &missing, 1, &m),
                         KILN_OK);
    assert_null(m);
    assert_non_null(strstr(kiln_last_error(), "/nonexistent/lora.safetensors"));
}

static void expect_error(kiln_status got, kiln_status want, const char *needle)
{
    if (got != want) fail_msg("got %s, expected %s (%s)", kiln_status_name(got), kiln_status_name(want),
                              kiln_last_error());
    if (!strstr(kiln_last_error(), needle)) fail_msg("message '%s' does not name '%s'", kiln_last_error(), needle);
}

static kiln_image load_image(const char *relative)
{
    kiln_image img;
    assert_kiln_ok(kiln_image_load(kiln_test_data(relative), &img));
    return img;
}

/* VAEEncodeForInpaint (inpainting model) and VAEEncode + SetLatentNoiseMask
 * (plain model) of tests/data/inpaint's picture and mask, and
 * ImagePadForOutpaint before each, against the goldens test_inpaint reads. */
static void inpaint_encodes(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("inpaint/golden.safetensors");
    kiln_image img = load_image("inpaint/image_20x17.png"), mask = load_image("inpaint/mask_20x17.png");
    static const char *const names[2] = {"noise_mask", "inpaint"};
    for (int i = 0; i < 2; i++) {
        kiln_model *m = model;
        if (i == 1) assert_kiln_ok(kiln_checkpoint_load(backend, tiny_inpaint_model(), NULL, 0, &m));
        for (int outpaint = 0; outpaint < 2; outpaint++) {
            kiln_latent l;
            if (outpaint) assert_kiln_ok(kiln_vae_encode_for_outpaint(m, &img, 6, 0, 3, 5, 4, &l));
            else assert_kiln_ok(kiln_vae_encode_for_inpaint(m, &img, &mask, &l));
            char key[64];
            snprintf(key, sizeof key, "%s%s.noise_mask", outpaint ? "outpaint." : "", names[i]);
            golden want_mask = golden_read(f, key);
            snprintf(key, sizeof key, "%s%s.latent", outpaint ? "outpaint." : "", names[i]);
            golden want_latent = golden_read(f, key);
            assert_non_null(l.noise_mask);
            assert_int_equal((size_t)l.mask_h * l.mask_w, want_mask.count);
            assert_memory_equal(l.noise_mask, want_mask.data, want_mask.count * sizeof(float));
            assert_int_equal(l.batch, 1);
            assert_int_equal(latent_count(&l), want_latent.count);
            assert_rel_l2_le(l.data, want_latent.data, want_latent.count, RUN_TOL);
            golden_free(&want_mask), golden_free(&want_latent);
            kiln_latent_free(&l);
        }
        if (m != model) kiln_model_free(m);
    }
    kiln_image_free(&img), kiln_image_free(&mask);
    kiln_st_close(f);
}

/* A masked KSampler run keeps what the mask leaves: with the left half of a
 * 16x16 picture masked, the tiny VAE's 8x8 latent's mask is exactly 1 over
 * columns 0-3 and 0 over 4-7 (bilinear from 16 to 8 samples between two
 * equal columns), so the right half comes back as it went in (but for the
 * VAE's scale going on and off) and the left half is new; over a batch of
 * 2 (RepeatLatentBatch) both images do the same. */
static void masked_run_keeps_the_rest(void **state)
{
    (void)state;
    kiln_st_file *input = golden_open("comfyui_e2e/img2img_input.st");
    golden picture = golden_read(input, "image_uint8");
    kiln_image *images = images_of(&picture);
    kiln_image mask = {16, 16, 3, calloc(16 * 16, 3)};
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 8; x++) mask.pixels[(y * 16 + x) * 3] = 255;
    kiln_latent one, two, out;
    assert_kiln_ok(kiln_vae_encode_for_inpaint(model, &images[0], &mask, &one));
    assert_kiln_ok(kiln_latent_repeat(&one, 2, &two));
    assert_int_equal(two.batch, 2);
    assert_non_null(two.noise_mask);
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(model, "", 0, &neg));
    kiln_ksampler_params p = {.seed = 3, .steps = 4, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &two, &out));
    assert_null(out.noise_mask);
    float kept[2][4 * 8 * 4], was[4 * 8 * 4], redone[2][4 * 8 * 4], before[4 * 8 * 4];
    for (int b = 0; b < 2; b++)
        for (int c = 0, i = 0; c < 4; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 4; x++, i++) {
                    kept[b][i] = out.data[((b * 4 + c) * 8 + y) * 8 + 4 + x];
                    redone[b][i] = out.data[((b * 4 + c) * 8 + y) * 8 + x];
                    was[i] = one.data[(c * 8 + y) * 8 + 4 + x];
                    before[i] = one.data[(c * 8 + y) * 8 + x];
                }
    for (int b = 0; b < 2; b++) {
        assert_rel_l2_le(kept[b], was, 128, 1e-6);
        assert_true(kiln_rel_l2(redone[b], before, 128) > 0.1);
    }
    /* a mask over two different pictures is not one picture repeated */
    kiln_latent mixed, refused;
    assert_kiln_ok(kiln_vae_encode(model, images, 2, &mixed));
    mixed.noise_mask = one.noise_mask, mixed.mask_h = one.mask_h, mixed.mask_w = one.mask_w;
    assert_int_equal(kiln_ksampler(model, &p, &pos, &neg, &mixed, &refused), KILN_ERR_UNSUPPORTED);
    mixed.noise_mask = NULL;
    kiln_latent_free(&mixed);
    kiln_latent_free(&one), kiln_latent_free(&two), kiln_latent_free(&out);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_image_free(&mask);
    free_images(images, 2);
    golden_free(&picture);
    kiln_st_close(input);
}

/* An inpainting model takes only a masked latent, an InstructPix2Pix model
 * only a run with a picture to edit (which the plain model refuses); with
 * it, the edit changes the result. (Their UNets and guided calls are checked
 * against diffusers in test_inpaint and test_pix2pix.) */
static void model_variants(void **state)
{
    (void)state;
    kiln_model *inpainting, *pix2pix;
    assert_kiln_ok(kiln_checkpoint_load(backend, tiny_inpaint_model(), NULL, 0, &inpainting));
    assert_kiln_ok(kiln_checkpoint_load(backend, tiny_pix2pix_model(), NULL, 0, &pix2pix));
    kiln_conditioning pos;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &pos));
    kiln_latent empty, edit, a, b;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 5, .steps = 3, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    expect_error(kiln_ksampler(inpainting, &p, &pos, &pos, &empty, &a), KILN_ERR_INVALID_ARG, "noise mask");
    expect_error(kiln_ksampler(pix2pix, &p, &pos, &pos, &empty, &a), KILN_ERR_INVALID_ARG, "needs a picture");

    kiln_st_file *input = golden_open("comfyui_e2e/img2img_input.st");
    golden picture = golden_read(input, "image_uint8");
    kiln_image *images = images_of(&picture);
    assert_kiln_ok(kiln_vae_encode(pix2pix, images, 1, &edit));
    p.edit_latent = &edit;
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &empty, &a), KILN_ERR_INVALID_ARG, "was given");
    assert_kiln_ok(kiln_ksampler(pix2pix, &p, &pos, &pos, &empty, &a));
    kiln_latent_free(&edit);
    assert_kiln_ok(kiln_vae_encode(pix2pix, images + 1, 1, &edit));
    assert_kiln_ok(kiln_ksampler(pix2pix, &p, &pos, &pos, &empty, &b));
    assert_true(kiln_rel_l2(a.data, b.data, latent_count(&a)) > 0.01);
    kiln_latent refused;
    expect_error(kiln_ksampler(pix2pix, &p, &pos, &pos, &edit, &refused), KILN_ERR_INVALID_ARG, "empty latent");

    free_images(images, 2);
    golden_free(&picture);
    kiln_st_close(input);
    kiln_latent_free(&empty), kiln_latent_free(&edit), kiln_latent_free(&a), kiln_latent_free(&b);
    kiln_conditioning_free(&pos);
    kiln_model_free(inpainting);
    kiln_model_free(pix2pix);
}

/* IPAdapterAdvanced through the API: weight 0, or a range no step falls in,
 * is the plain run to the bit; weight 1 changes it; an adapter without its
 * vision tower is refused. (Its tokens and attention are checked against
 * diffusers in test_ip_adapter.) */
static void ip_adapter(void **state)
{
    (void)state;
    kiln_ip_adapter *ipa;
    kiln_clip_vision *cv;
    assert_kiln_ok(kiln_ip_adapter_load(model, kiln_test_data("ip_adapter/ip_adapter_tiny.safetensors"), &ipa));
    assert_kiln_ok(kiln_clip_vision_load(backend, kiln_test_data("ip_adapter/clip_vision_tiny.safetensors"), &cv));
    kiln_image picture = load_image("ip_adapter/picture_251x233.png");
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(model, "", 0, &neg));
    kiln_latent empty, out[4];
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    const kiln_ip_adapter_apply applies[3] = {
        {ipa, cv, &picture, 0.0, 0.0, 1.0, 1}, {ipa, cv, &picture, 1.0, 1.0, 1.0, 1},
        {ipa, cv, &picture, 1.0, 0.0, 1.0, 1}};
    kiln_ksampler_params p = {.seed = 9, .steps = 3, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &out[0]));
    for (int i = 0; i < 3; i++) {
        p.ip_adapter = &applies[i];
        assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &out[i + 1]));
    }
    size_t n = latent_count(&empty);
    assert_memory_equal(out[1].data, out[0].data, n * sizeof(float));
    assert_memory_equal(out[2].data, out[0].data, n * sizeof(float));
    assert_true(kiln_rel_l2(out[3].data, out[0].data, n) > 0.01);
    const kiln_ip_adapter_apply no_tower = {ipa, NULL, &picture, 1.0, 0.0, 1.0, 1};
    p.ip_adapter = &no_tower;
    kiln_latent refused;
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &empty, &refused), KILN_ERR_INVALID_ARG, "CLIP vision");
    for (int i = 0; i < 4; i++) kiln_latent_free(&out[i]);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_image_free(&picture);
    kiln_clip_vision_free(cv);
    kiln_ip_adapter_free(ipa);
}

/* KSamplerAdvanced as SDXL's base and refiner split a run: steps 0-3 with
 * the leftover noise kept, then steps 3-6 on that latent as it is, give the
 * whole 6-step run (but for the latent's unscaling and rescaling between
 * the two); a run cut short without its leftover noise does not. On a flow
 * model (the tiny SD3) the first part's latent leaves divided by 1 - sigma,
 * as ComfyUI's inverse_noise_scaling does, and the second part's noise
 * scaling without noise multiplies it back. SamplerCustom's sigmas of one's
 * own, whole and split, give the same runs. SamplerCustom's
 * denoised_output of the first half is the x0 prediction at its last step,
 * where euler to 0 instead lands; without steps it is the output. */
static void split_run(kiln_model *m)
{
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &neg));
    kiln_latent empty, whole, first, second, denoised;
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 2, &empty));
    kiln_ksampler_params p = {.seed = 11, .steps = 6, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &whole));
    p.end_at_step = 3, p.leftover_noise = true;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &first));
    p.leftover_noise = false;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &denoised));
    p.start_at_step = 3, p.end_at_step = 0, p.disable_noise = true;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &first, &second));
    size_t n = latent_count(&whole);
    assert_rel_l2_le(second.data, whole.data, n, 1e-6);
    assert_true(kiln_rel_l2(first.data, denoised.data, n) > 0.01); /* measured: 0.026 (SD 1.x), 0.54 (SD3) */
    p.start_at_step = 4, p.end_at_step = 2;
    kiln_latent refused;
    expect_error(kiln_ksampler(m, &p, &pos, &neg, &first, &refused), KILN_ERR_INVALID_ARG, "steps 4 to 2");

    /* SamplerCustom's way: BasicScheduler's sigmas run as KSampler's, SplitSigmas' two halves as the two
       KSamplerAdvanced runs, to the bit; no sigmas give the latent back */
    kiln_sigmas all, high, low, none = {0};
    assert_kiln_ok(kiln_basic_scheduler(m, "normal", 6, 1.0, &all));
    assert_kiln_ok(kiln_sigmas_split(&all, 3, &high, &low));
    kiln_ksampler_params c = {.seed = 11, .cfg = 4.0, .sampler_name = "euler", .sigmas = &all};
    kiln_latent custom[4];
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &empty, &custom[0]));
    c.sigmas = &high;
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &empty, &custom[1]));
    c.sigmas = &low, c.disable_noise = true;
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &custom[1], &custom[2]));
    c.sigmas = &none;
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &first, &custom[3]));
    const kiln_latent *same[4] = {&whole, &first, &second, &first};
    for (int i = 0; i < 4; i++) assert_memory_equal(custom[i].data, same[i]->data, n * sizeof(float));
    kiln_latent x0[2], to_zero, after, as_is;
    float ends_at_zero[4] = {high.values[0], high.values[1], high.values[2], 0.0f};
    kiln_sigmas three = {ends_at_zero, 4};
    c.sigmas = &high, c.disable_noise = false, c.denoised_output = &x0[0];
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &empty, &after));
    assert_memory_equal(after.data, first.data, n * sizeof(float)); /* the output as without it */
    c.sigmas = &three, c.denoised_output = NULL;
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &empty, &to_zero));
    assert_rel_l2_le(x0[0].data, to_zero.data, n, 1e-6);
    assert_true(kiln_rel_l2(x0[0].data, after.data, n) > 0.01);
    c.sigmas = &none, c.denoised_output = &x0[1];
    assert_kiln_ok(kiln_ksampler(m, &c, &pos, &neg, &first, &as_is));
    assert_memory_equal(x0[1].data, first.data, n * sizeof(float));
    kiln_latent_free(&as_is), kiln_latent_free(&after), kiln_latent_free(&to_zero);
    kiln_latent_free(&x0[0]), kiln_latent_free(&x0[1]);
    c.sigmas = &all, c.end_at_step = 3, c.denoised_output = NULL;
    expect_error(kiln_ksampler(m, &c, &pos, &neg, &empty, &refused), KILN_ERR_INVALID_ARG, "sigmas of one's own");
    for (int i = 0; i < 4; i++) kiln_latent_free(&custom[i]);
    kiln_sigmas_free(&all), kiln_sigmas_free(&high), kiln_sigmas_free(&low);
    kiln_latent_free(&empty), kiln_latent_free(&whole), kiln_latent_free(&first), kiln_latent_free(&second);
    kiln_latent_free(&denoised);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
}

static void advanced_split(void **state)
{
    (void)state;
    split_run(model);
    kiln_model *sd3;
    assert_kiln_ok(kiln_checkpoint_load(backend, kiln_test_data("sd3/tiny"), NULL, 0, &sd3));
    split_run(sd3);
    kiln_model_free(sd3);
}

/* The custom sampler nodes' eta and s_noise: at eta 0 euler_ancestral is
 * euler and dpmpp_2m_sde is dpmpp_2m (no noise added back; ComfyUI's
 * samplers have the same identities), at eta 1 and s_noise 1 they are
 * KSampler's to the bit, and other values change the picture; lms at
 * order 1 is euler, at 4 KSampler's lms. */
static void sampler_options(void **state)
{
    (void)state;
    kiln_conditioning pos, neg;
    encode_pair(&pos, &neg);
    kiln_latent empty;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    const size_t n = latent_count(&empty);
    const kiln_sampler_options none = {.eta = 0.0, .s_noise = 1.0}, defaults = {.eta = 1.0, .s_noise = 1.0},
                               other = {.eta = 0.5, .s_noise = 0.8};
    const char *pairs[2][2] = {{"euler_ancestral", "euler"}, {"dpmpp_2m_sde", "dpmpp_2m"}};
    for (int k = 0; k < 2; k++) {
        kiln_ksampler_params p = {.seed = 3, .steps = 4, .cfg = 5.0, .sampler_name = pairs[k][1],
                                  .scheduler = "karras", .denoise = 1.0};
        kiln_latent out[5];
        assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &out[0])); /* the deterministic solver */
        p.sampler_name = pairs[k][0];
        assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &out[1])); /* KSampler's */
        const kiln_sampler_options *options[3] = {&none, &defaults, &other};
        for (int i = 0; i < 3; i++) {
            p.sampler_options = options[i];
            assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &out[2 + i]));
        }
        assert_rel_l2_le(out[2].data, out[0].data, n, 1e-6);
        assert_memory_equal(out[3].data, out[1].data, n * sizeof(float));
        assert_true(kiln_rel_l2(out[4].data, out[1].data, n) > 0.01);
        assert_true(kiln_rel_l2(out[1].data, out[0].data, n) > 0.01);
        for (int i = 0; i < 5; i++) kiln_latent_free(&out[i]);
    }
    /* SamplerLMS: order 1 is euler's step (the integral of the one slope), order 4 KSampler's lms */
    kiln_ksampler_params p = {.seed = 3, .steps = 4, .cfg = 5.0, .sampler_name = "euler", .scheduler = "karras",
                              .denoise = 1.0};
    const kiln_sampler_options first_order = {.eta = 1.0, .s_noise = 1.0, .lms_order = 1},
                               fourth = {.eta = 1.0, .s_noise = 1.0, .lms_order = 4};
    kiln_latent lms[4];
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &lms[0]));
    p.sampler_name = "lms";
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &lms[1]));
    p.sampler_options = &first_order;
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &lms[2]));
    p.sampler_options = &fourth;
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &lms[3]));
    assert_rel_l2_le(lms[2].data, lms[0].data, n, 1e-6);
    assert_memory_equal(lms[3].data, lms[1].data, n * sizeof(float));
    assert_true(kiln_rel_l2(lms[1].data, lms[0].data, n) > 1e-3);
    for (int i = 0; i < 4; i++) kiln_latent_free(&lms[i]);
    /* an SDE sampler's "_gpu" name is ComfyUI's run without a GPU: the plain name's, to the bit */
    kiln_latent sde[2];
    p.sampler_options = NULL, p.sampler_name = "dpmpp_3m_sde";
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &sde[0]));
    p.sampler_name = "dpmpp_3m_sde_gpu";
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &sde[1]));
    assert_memory_equal(sde[1].data, sde[0].data, n * sizeof(float));
    kiln_latent_free(&sde[0]), kiln_latent_free(&sde[1]);
    const kiln_sampler_options bad = {.eta = -1.0, .s_noise = 1.0}, fifth = {.eta = 1.0, .s_noise = 1.0, .lms_order = 5};
    p.sampler_name = "euler_ancestral", p.sampler_options = &bad;
    kiln_latent refused;
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &empty, &refused), KILN_ERR_INVALID_ARG, "eta -1");
    p.sampler_name = "lms", p.sampler_options = &fifth;
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &empty, &refused), KILN_ERR_UNSUPPORTED, "lms order 5");
    const kiln_sampler_options phi_2 = {.eta = 1.0, .s_noise = 1.0, .solver_type = "phi_2"},
                               late = {.eta = 1.0, .s_noise = 1.0, .sa_solver_custom = true, .sde_end_percent = 1.5,
                                       .predictor_order = 3, .corrector_order = 4};
    p.sampler_name = "er_sde", p.sampler_options = &phi_2;
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &empty, &refused), KILN_ERR_INVALID_ARG,
                 "er_sde: solver_type \"phi_2\"");
    p.sampler_name = "euler";
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &empty, &refused), KILN_ERR_INVALID_ARG, "not euler's");
    p.sampler_name = "sa_solver", p.sampler_options = &late;
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &empty, &refused), KILN_ERR_INVALID_ARG,
                 "sde_end_percent 1.5");
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
}

/* The CFG++ samplers step from the negative prompt's prediction and add the
 * guidance back: at cfg 0 the guided prediction is the negative's, so
 * euler_cfg_pp is euler and dpmpp_2m_cfg_pp is dpmpp_2m (the algebra of
 * their steps); at cfg 1 with the same prompt on both sides (the negative
 * rows still run, as in ComfyUI) euler_cfg_pp is euler again, and with
 * another negative it is not. */
static void cfg_pp_samplers(void **state)
{
    (void)state;
    kiln_conditioning pos, neg;
    encode_pair(&pos, &neg);
    kiln_latent empty;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    const size_t n = latent_count(&empty);
    const struct {
        const char *cfg_pp, *plain;
        double cfg;
        bool same_prompt, equal;
    } cases[] = {{"euler_cfg_pp", "euler", 0.0, false, true},
                 {"dpmpp_2m_cfg_pp", "dpmpp_2m", 0.0, false, true},
                 {"euler_cfg_pp", "euler", 1.0, true, true},
                 {"euler_cfg_pp", "euler", 1.0, false, false}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_ksampler_params p = {.seed = 3, .steps = 4, .cfg = cases[k].cfg, .sampler_name = cases[k].plain,
                                  .scheduler = "karras", .denoise = 1.0};
        const kiln_conditioning *negative = cases[k].same_prompt ? &pos : &neg;
        kiln_latent out[2];
        assert_kiln_ok(kiln_ksampler(model, &p, &pos, negative, &empty, &out[0]));
        p.sampler_name = cases[k].cfg_pp;
        assert_kiln_ok(kiln_ksampler(model, &p, &pos, negative, &empty, &out[1]));
        double err = kiln_rel_l2(out[1].data, out[0].data, n);
        print_message("  %-16s vs %-9s cfg %g%s: rel L2 %.2g\n", cases[k].cfg_pp, cases[k].plain, cases[k].cfg,
                      cases[k].same_prompt ? ", one prompt" : "", err);
        if (cases[k].equal) assert_true(err <= 1e-5);
        else assert_true(err > 1e-3);
        kiln_latent_free(&out[0]), kiln_latent_free(&out[1]);
    }
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
}

/* LatentFromBatch: images picked from a batch are sampled with the noise
 * they had in it, so they come out as they did in the batch's run (to the
 * bit: the tiny model's 16 values an image make one randn of the batch the
 * same as one per image; tests/test_rng checks the per-image draws where
 * they differ). The pick is cut to the batch as ComfyUI cuts it, its places
 * carried through KSampler and RepeatLatentBatch. */
static void latent_from_batch(void **state)
{
    (void)state;
    kiln_conditioning pos, neg;
    encode_pair(&pos, &neg);
    kiln_latent empty, batch, picked, picked_out, repeated, cut;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 3, &empty));
    /* a sampler without noise of its own: an ancestral one draws its noise for the whole batch, in ComfyUI too */
    kiln_ksampler_params p = {.seed = 9, .steps = 3, .cfg = 4.0, .sampler_name = "dpmpp_2m", .scheduler = "karras",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &empty, &batch));
    assert_null(batch.batch_index);
    assert_kiln_ok(kiln_latent_from_batch(&empty, 1, 2, &picked));
    assert_int_equal(picked.batch, 2);
    assert_int_equal(picked.batch_index[0], 1), assert_int_equal(picked.batch_index[1], 2);
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &picked, &picked_out));
    const size_t image = latent_count(&batch) / 3;
    assert_memory_equal(picked_out.data, batch.data + image, 2 * image * sizeof(float));
    assert_int_equal(picked_out.batch_index[1], 2);
    assert_kiln_ok(kiln_latent_repeat(&picked_out, 2, &repeated)); /* each copy's places after the last's */
    const int places[4] = {1, 2, 3, 4};
    assert_memory_equal(repeated.batch_index, places, sizeof places);
    assert_kiln_ok(kiln_latent_from_batch(&repeated, 7, 3, &cut)); /* the last image, its place kept */
    assert_int_equal(cut.batch, 1);
    assert_int_equal(cut.batch_index[0], 4);
    kiln_latent refused;
    expect_error(kiln_latent_from_batch(&empty, -1, 1, &refused), KILN_ERR_INVALID_ARG, "batch_index -1");
    repeated.batch_index[3] = -2;
    expect_error(kiln_ksampler(model, &p, &pos, &neg, &repeated, &refused), KILN_ERR_INVALID_ARG,
                 "image 3's batch_index -2");
    kiln_latent_free(&empty), kiln_latent_free(&batch), kiln_latent_free(&picked);
    kiln_latent_free(&picked_out), kiln_latent_free(&repeated), kiln_latent_free(&cut);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
}

/* One euler step of the tiny model to sigma 0 (the guided x0 prediction)
 * with the positive prompt in parts and the negative one whole. */
static void parts_prediction(const kiln_conditioning_part *parts, int count, const kiln_conditioning *negative,
                             kiln_latent *out)
{
    kiln_latent empty;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 2, &empty));
    kiln_ksampler_params p = {.seed = 5, .steps = 1, .cfg = 3.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .positive_parts = parts, .positive_part_count = count};
    assert_kiln_ok(kiln_ksampler(model, &p, NULL, negative, &empty, out));
    kiln_latent_free(&empty);
}

/* ConditioningSetMask: at each latent pixel a side's prompts weighted by
 * their masks (stretched over the latent bilinearly) times strength, as
 * ComfyUI's calc_cond_batch averages them. The guidance being linear, one
 * step's guided prediction is then each prompt's alone blended by those
 * shares: two prompts on a mask m and on 1 - m (7x5, smooth), and one on m
 * at strength 2 beside one everywhere (shares 2m / (2m + 1) and 1 / (2m +
 * 1)). A pixel no prompt covers is refused. */
static void conditioning_masks(void **state)
{
    (void)state;
    kiln_conditioning red, blue, neg;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &red));
    assert_kiln_ok(kiln_text_encode(model, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_text_encode(model, "blurry", 0, &neg));
    float m[35], inverse[35], zeros[35] = {0};
    for (int i = 0; i < 35; i++) m[i] = 0.05f + 0.9f * (float)i / 34.0f, inverse[i] = 1.0f - m[i];
    kiln_latent alone[2], blended[2];
    const kiln_conditioning_part red_all = {.cond = &red, .end_percent = 1.0},
                                 blue_all = {.cond = &blue, .end_percent = 1.0};
    parts_prediction(&red_all, 1, &neg, &alone[0]);
    parts_prediction(&blue_all, 1, &neg, &alone[1]);
    const kiln_conditioning_part halves[2] = {
        {.cond = &red, .end_percent = 1.0, .mask = m, .mask_w = 7, .mask_h = 5, .strength = 1.0},
        {.cond = &blue, .end_percent = 1.0, .mask = inverse, .mask_w = 7, .mask_h = 5, .strength = 1.0}};
    const kiln_conditioning_part stronger[2] = {
        {.cond = &red, .end_percent = 1.0, .mask = m, .mask_w = 7, .mask_h = 5, .strength = 2.0}, blue_all};
    parts_prediction(halves, 2, &neg, &blended[0]);
    parts_prediction(stronger, 2, &neg, &blended[1]);
    const int h = alone[0].height, w = alone[0].width;
    const size_t n = latent_count(&alone[0]), plane = (size_t)h * w;
    float *r = malloc(plane * sizeof *r), *r2 = malloc(plane * sizeof *r2), *want = malloc(n * sizeof *want);
    assert_non_null(r), assert_non_null(r2), assert_non_null(want);
    kiln_resample(m, 1, 5, 7, r, h, w, KILN_RESAMPLE_BILINEAR);
    kiln_resample(inverse, 1, 5, 7, r2, h, w, KILN_RESAMPLE_BILINEAR);
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < n; i++) {
            const size_t at = i % plane;
            const float a = k ? 2.0f * r[at] : r[at], b = k ? 1.0f : r2[at];
            want[i] = a / (a + b) * alone[0].data[i] + b / (a + b) * alone[1].data[i];
        }
        double err = kiln_rel_l2(blended[k].data, want, n);
        print_message("  %s: rel L2 %.2g from the prompts alone blended (%.2g from the first alone)\n",
                      k ? "a masked prompt at strength 2 beside one everywhere" : "two prompts on complementary masks",
                      err, kiln_rel_l2(alone[0].data, blended[k].data, n));
        assert_true(err <= 1e-5);
    }
    const kiln_conditioning_part uncovered = {.cond = &red, .end_percent = 1.0, .mask = zeros, .mask_w = 7,
                                              .mask_h = 5, .strength = 1.0};
    kiln_latent empty, refused;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 5, .steps = 1, .cfg = 3.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .positive_parts = &uncovered, .positive_part_count = 1};
    expect_error(kiln_ksampler(model, &p, NULL, &neg, &empty, &refused), KILN_ERR_UNSUPPORTED,
                 "no part of the positive prompt covers");
    free(r), free(r2), free(want);
    for (int k = 0; k < 2; k++) kiln_latent_free(&alone[k]), kiln_latent_free(&blended[k]);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&red), kiln_conditioning_free(&blue), kiln_conditioning_free(&neg);
}

/* CLIPTextEncodeSDXL's numbers on the tiny SDXL model: CLIPTextEncode's
 * (8 x the latent's size as both sizes, no crop) spelled out give the run without
 * them to the bit, and another size and crop change it. (y itself is
 * checked against diffusers' add_embedding in test_sdxl.) */
static void sdxl_numbers(void **state)
{
    (void)state;
    kiln_model *xl;
    assert_kiln_ok(kiln_checkpoint_load(backend, kiln_test_data("sdxl/tiny_sdxl.safetensors"), NULL, 0, &xl));
    assert_string_equal(kiln_model_family(xl), "sdxl");
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(xl, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(xl, "", 0, &neg));
    assert_non_null(pos.pooled);
    kiln_latent empty, out[3];
    assert_kiln_ok(kiln_empty_latent(xl, 16, 16, 1, &empty));
    /* ComfyUI's sizes without CLIPTextEncodeSDXL: 8 x the latent's (the tiny VAE halves, SDXL's divides by 8) */
    const int W = 8 * empty.width, H = 8 * empty.height;
    const kiln_sdxl_cond as_plain = {W, H, 0, 0, W, H, 6.0, 2.5}, other = {40, 56, 3, 5, 48, 72, 6.0, 2.5};
    const kiln_sdxl_cond *numbers[3] = {NULL, &as_plain, &other};
    for (int i = 0; i < 3; i++) {
        kiln_ksampler_params p = {.seed = 2, .steps = 3, .cfg = 4.0, .sampler_name = "euler", .scheduler = "normal",
                                  .denoise = 1.0, .sdxl = numbers[i]};
        assert_kiln_ok(kiln_ksampler(xl, &p, &pos, &neg, &empty, &out[i]));
    }
    size_t n = latent_count(&empty);
    assert_memory_equal(out[1].data, out[0].data, n * sizeof(float));
    assert_true(kiln_rel_l2(out[2].data, out[0].data, n) > 1e-3);
    for (int i = 0; i < 3; i++) kiln_latent_free(&out[i]);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_model_free(xl);
}

/* LatentUpscaleBy: nearest-exact doubling repeats each value over a 2x2
 * block; 3x2 by 1.5 is 4x3 (4.5 rounds to even); the noise mask stays
 * behind; an unknown method is named. */
static void latent_upscale(void **state)
{
    (void)state;
    float values[2 * 3 * 2], mask[4] = {1, 1, 1, 1};
    for (int i = 0; i < 12; i++) values[i] = (float)i;
    kiln_latent l = {values, 1, 2, 3, 2, mask, 2, 2, NULL, NULL}, up;
    assert_kiln_ok(kiln_latent_upscale_by(&l, "nearest-exact", 2.0, &up));
    assert_int_equal(up.height, 6);
    assert_int_equal(up.width, 4);
    assert_null(up.noise_mask);
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 4; x++)
                assert_true(up.data[(c * 6 + y) * 4 + x] == values[(c * 3 + y / 2) * 2 + x / 2]);
    kiln_latent_free(&up);
    assert_kiln_ok(kiln_latent_upscale_by(&l, "bilinear", 1.5, &up));
    assert_int_equal(up.height, 4);
    assert_int_equal(up.width, 3);
    kiln_latent_free(&up);
    expect_error(kiln_latent_upscale_by(&l, "lanczos", 2.0, &up), KILN_ERR_INVALID_ARG, "'lanczos'");
}

/* ImageUpscaleWithModel through the API against spandrel's output for the
 * golden's picture (tests/data/upscale): the API takes 8-bit pixels, so the
 * picture goes in rounded to 1/255 (at most 1/510 off) and the 4x result,
 * truncated to 8 bits as SaveImage does, is compared within 2 levels: the
 * 8-bit rounding of the input, carried through the network, and SaveImage's
 * truncation of values that land near a level. */
static void upscale(void **state)
{
    (void)state;
    kiln_upscaler *u;
    assert_kiln_ok(kiln_upscale_model_load(backend, kiln_test_data("upscale/rrdb_basicsr.safetensors"), &u));
    kiln_st_file *f = golden_open("upscale/golden.safetensors");
    golden image = golden_read(f, "image"), whole = golden_read(f, "whole");
    int H = (int)image.shape[2], W = (int)image.shape[3];
    kiln_image in = {W, H, 3, malloc((size_t)W * H * 3)}, out;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < H * W; i++) in.pixels[i * 3 + c] = (uint8_t)(image.data[c * H * W + i] * 255.0f + 0.5f);
    assert_kiln_ok(kiln_image_upscale_with_model(u, &in, &out));
    assert_int_equal(out.width, 4 * W);
    assert_int_equal(out.height, 4 * H);
    int worst = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 16 * H * W; i++) {
            float v = whole.data[c * 16 * H * W + i] * 255.0f;
            int want = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)v;
            int d = abs((int)out.pixels[i * 3 + c] - want);
            if (d > worst) worst = d;
        }
    print_message("  upscaled pixels within %d levels\n", worst);
    assert_true(worst <= 2);
    kiln_image_free(&in), kiln_image_free(&out);
    golden_free(&image), golden_free(&whole);
    kiln_st_close(f);
    kiln_upscaler_free(u);
}

typedef struct steps_seen {
    int calls, total, stop_at;
} steps_seen;

static kiln_status count_steps(void *ctx, int step, int total, const float *denoised)
{
    steps_seen *s = ctx;
    assert_non_null(denoised);
    assert_int_equal(step, s->calls);
    s->calls++;
    s->total = total;
    return step == s->stop_at ? KILN_ERR_CANCELLED : KILN_OK;
}

/* The progress callback sees every step in order, and a status it returns
 * stops the sampling and comes back from kiln_ksampler, with no latent and
 * a message saying where (not an earlier call's message). */
static void progress(void **state)
{
    (void)state;
    kiln_conditioning pos;
    assert_kiln_ok(kiln_text_encode(model, "a square", 0, &pos));
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    steps_seen seen = {0, 0, -1};
    kiln_ksampler_params p = {.seed = 1, .steps = 5, .cfg = 3.0, .sampler_name = "dpmpp_2m", .scheduler = "karras",
                              .denoise = 1.0, .progress = count_steps, .progress_ctx = &seen};
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &pos, &empty, &out));
    assert_int_equal(seen.calls, 5);
    assert_int_equal(seen.total, 5);
    kiln_latent_free(&out);
    seen = (steps_seen){0, 0, 2};
    assert_int_equal(kiln_empty_latent(model, 3, 16, 1, &out), KILN_ERR_INVALID_ARG);
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &empty, &out), KILN_ERR_CANCELLED,
                 "stopped by the progress callback at step 3 of 5");
    assert_int_equal(seen.calls, 3);
    assert_null(out.data);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
}

/* What a frontend can get wrong is refused with a message naming it. */
static void refusals(void **state)
{
    (void)state;
    kiln_backend *be = NULL;
    expect_error(kiln_backend_open("tpu", NULL, &be), KILN_ERR_INVALID_ARG, "'tpu'");
    kiln_backend_config bad_compute = {.device = -1, .compute = "f8"};
    expect_error(kiln_backend_open("cpu", &bad_compute, &be), KILN_ERR_INVALID_ARG, "'f8'");
    kiln_backend_config bad_threads = {.device = -1, .threads = -2};
    expect_error(kiln_backend_open("cpu", &bad_threads, &be), KILN_ERR_INVALID_ARG, "threads -2");
    assert_null(be);
    expect_error(kiln_backend_open(NULL, NULL, &be), KILN_ERR_INVALID_ARG, "kiln_backend_open");

    kiln_model *m = NULL;
    expect_error(kiln_checkpoint_load(backend, "/nonexistent/model.safetensors", NULL, 0, &m), KILN_ERR_IO,
                 "/nonexistent/model.safetensors");
    expect_error(kiln_checkpoint_load(backend, kiln_test_data("lora/kohya_ldm.safetensors"), NULL, 0, &m),
                 KILN_ERR_MODEL, "LoRA");
    kiln_model_parts no_vae = {.vae = kiln_test_data("lora/kohya_ldm.safetensors")};
    expect_error(kiln_checkpoint_load_parts(backend, NULL, &no_vae, NULL, 0, &m), KILN_ERR_MODEL, "no VAE in it");
    assert_null(m);
    kiln_conditioning c;
    expect_error(kiln_text_encode_flux(model, "a", "b", &c), KILN_ERR_INVALID_ARG, "no Flux model");
    expect_error(kiln_text_encode_flux(model, "a", NULL, &c), KILN_ERR_INVALID_ARG, "kiln_text_encode_flux");

    kiln_latent l = {0};
    expect_error(kiln_empty_latent(model, 15, 16, 1, &l), KILN_ERR_INVALID_ARG, "width 15");
    expect_error(kiln_empty_latent(model, 16, 16, 0, &l), KILN_ERR_INVALID_ARG, "batch 0");
    assert_null(l.data);

    kiln_conditioning pos;
    assert_kiln_ok(kiln_text_encode(model, "a circle", 0, &pos));
    expect_error(kiln_text_encode(model, "a circle", -1, &pos), KILN_ERR_INVALID_ARG, "clip skip -1");
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 1, .steps = 2, .cfg = 1.0, .sampler_name = "eulr", .scheduler = "normal",
                              .denoise = 1.0};
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &empty, &out), KILN_ERR_INVALID_ARG, "eulr");
    p.sampler_name = "euler", p.scheduler = "karas";
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &empty, &out), KILN_ERR_INVALID_ARG, "karas");
    p.scheduler = "normal", p.denoise = 1.5;
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &empty, &out), KILN_ERR_INVALID_ARG, "1.5");
    p.denoise = 1.0, p.steps = 0;
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &empty, &out), KILN_ERR_INVALID_ARG, "steps 0");
    p.steps = 2;
    kiln_conditioning narrow = pos;
    narrow.dim = pos.dim / 2;
    expect_error(kiln_ksampler(model, &p, &narrow, &pos, &empty, &out), KILN_ERR_INVALID_ARG, "positive");
    kiln_latent wrong = empty;
    wrong.channels = 3;
    expect_error(kiln_ksampler(model, &p, &pos, &pos, &wrong, &out), KILN_ERR_INVALID_ARG, "3 channels");
    expect_error(kiln_vae_decode(model, &wrong, (kiln_image[1]){{0}}, 1), KILN_ERR_INVALID_ARG, "3 channels");
    expect_error(kiln_vae_decode(model, &empty, (kiln_image[1]){{0}}, 0), KILN_ERR_INVALID_ARG, "room for 0");
    expect_error(kiln_ksampler(model, &p, &pos, NULL, &empty, &out), KILN_ERR_INVALID_ARG, "negative");
    assert_null(out.data);

    kiln_image a = {16, 16, 3, calloc(16 * 16, 3)}, b = {24, 16, 3, calloc(24 * 16, 3)};
    kiln_image pair[2] = {a, b};
    expect_error(kiln_vae_encode(model, pair, 2, &out), KILN_ERR_INVALID_ARG, "image 1 is 24x16");
    pair[1].channels = 4;
    expect_error(kiln_vae_encode(model, pair, 2, &out), KILN_ERR_INVALID_ARG, "image 1");

    /* SaveImage to a format kiln does not write leaves no file behind */
    char path[] = "/tmp/kiln_api_XXXXXX";
    assert_non_null(mkdtemp(path));
    char gif[64];
    snprintf(gif, sizeof gif, "%s/out.gif", path);
    expect_error(kiln_image_save(gif, &a, NULL, 0), KILN_ERR_UNSUPPORTED, "out.gif");
    assert_int_not_equal(access(gif, F_OK), 0);
    assert_int_equal(rmdir(path), 0);

    kiln_image_free(&a);
    kiln_image_free(&b);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
}

static void version_and_backend(void **state)
{
    (void)state;
    int major, minor, patch;
    assert_int_equal(sscanf(kiln_version(), "%d.%d.%d", &major, &minor, &patch), 3);
    assert_non_null(strstr(kiln_backend_device_name(backend), "CPU"));
    assert_string_equal(kiln_model_family(model), "sd1");
    int w, h;
    kiln_model_native_size(model, &w, &h);
    assert_int_equal(w, 512);
    assert_int_equal(h, 512);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(comfyui_runs),   cmocka_unit_test(inpaint_encodes),
        cmocka_unit_test(masked_run_keeps_the_rest),
        cmocka_unit_test(model_variants), cmocka_unit_test(controlnet),      cmocka_unit_test(ip_adapter),
        cmocka_unit_test(controlnet_positive_only), cmocka_unit_test(conditioning_masks),
        cmocka_unit_test(lora),           cmocka_unit_test(upscale),         cmocka_unit_test(progress),
        cmocka_unit_test(advanced_split), cmocka_unit_test(sampler_options), cmocka_unit_test(cfg_pp_samplers),
        cmocka_unit_test(sdxl_numbers),   cmocka_unit_test(latent_upscale),  cmocka_unit_test(latent_from_batch),
        cmocka_unit_test(refusals),       cmocka_unit_test(version_and_backend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
