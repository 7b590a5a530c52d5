/* The embedding API (include/kiln.h) as a frontend uses it, node by node,
 * against ComfyUI's recorded runs (tests/data/comfyui_e2e): every txt2img run
 * from the prompt text and the seed alone (CLIPTextEncode, EmptyLatentImage,
 * KSampler, VAEDecode), and img2img from the input pictures (VAEEncode
 * first); then its ControlNet and LoRA wiring, its progress callback, and
 * that bad input is refused by name. Only kiln.h is called; the golden files
 * are read with the test support's reader. */
#include "kiln_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"

#include "golden.h"

/* the goldens' bound on final latents in f32 on the CPU (../shared/goldens/README.md) */
#define RUN_TOL 1e-4

static kiln_backend *backend;
static kiln_model *model;

static int setup(void **state)
{
    (void)state;
    if (kiln_backend_open("cpu", NULL, &backend) != KILN_OK) return -1;
    return kiln_checkpoint_load(backend, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), NULL, 0, &model) ==
                   KILN_OK
               ? 0
               : -1;
}

static int teardown(void **state)
{
    (void)state;
    kiln_model_free(model);
    kiln_backend_free(backend);
    return 0;
}

static const char *meta(kiln_st_file *f, const char *key)
{
    const char *v = kiln_st_metadata(f, key);
    if (!v) fail_msg("%s: no metadata '%s'", kiln_st_path(f), key);
    return v;
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
    int batch = atoi(meta(f, "batch_size")), clip_skip = atoi(meta(f, "clip_skip"));
    int h = (int)want.shape[2], w = (int)want.shape[3], H = (int)pixels.shape[1], W = (int)pixels.shape[2];

    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(model, meta(f, "positive_prompt"), clip_skip, &pos));
    assert_kiln_ok(kiln_text_encode(model, meta(f, "negative_prompt"), clip_skip, &neg));
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
    kiln_ksampler_params p = {.seed = strtoull(meta(f, "seed"), NULL, 10), .steps = atoi(meta(f, "steps")),
                              .cfg = strtod(meta(f, "cfg"), NULL), .sampler_name = meta(f, "sampler_name"),
                              .scheduler = meta(f, "scheduler"), .denoise = strtod(meta(f, "denoise"), NULL)};
    kiln_latent out;
    assert_kiln_ok(kiln_ksampler(model, &p, &pos, &neg, &in, &out));
    assert_int_equal((size_t)out.batch * out.channels * out.height * out.width, want.count);
    assert_rel_l2_le(out.data, want.data, want.count, RUN_TOL);

    kiln_image *decoded = calloc((size_t)batch, sizeof *decoded);
    assert_kiln_ok(kiln_vae_decode(model, &out, decoded));
    int worst = 0;
    for (int b = 0; b < batch; b++) {
        assert_int_equal(decoded[b].width, W);
        assert_int_equal(decoded[b].height, H);
        for (int i = 0; i < H * W * 3; i++) {
            int d = abs((int)decoded[b].pixels[i] - (int)pixels.data[(size_t)b * H * W * 3 + i]);
            if (d > worst) worst = d;
        }
    }
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
    kiln_control_apply apply = {cn, &hint, 0.0, 0.0, 1.0};
    sample(model, &apply, &off);
    apply = (kiln_control_apply){cn, &hint, 1.0, 1.0, 1.0};
    sample(model, &apply, &late);
    apply = (kiln_control_apply){cn, &hint, 1.0, 0.0, 1.0};
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
    return step == s->stop_at ? KILN_ERR_INVALID_ARG : KILN_OK;
}

/* The progress callback sees every step in order, and a status it returns
 * stops the sampling and comes back from kiln_ksampler, with no latent. */
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
    assert_int_equal(kiln_ksampler(model, &p, &pos, &pos, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_int_equal(seen.calls, 3);
    assert_null(out.data);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
}

static void expect_error(kiln_status got, kiln_status want, const char *needle)
{
    if (got != want) fail_msg("got %s, expected %s (%s)", kiln_status_name(got), kiln_status_name(want),
                              kiln_last_error());
    if (!strstr(kiln_last_error(), needle)) fail_msg("message '%s' does not name '%s'", kiln_last_error(), needle);
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
    assert_null(m);

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
    expect_error(kiln_vae_decode(model, &wrong, (kiln_image[1]){{0}}), KILN_ERR_INVALID_ARG, "3 channels");
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
        cmocka_unit_test(comfyui_runs), cmocka_unit_test(controlnet), cmocka_unit_test(lora),
        cmocka_unit_test(progress),     cmocka_unit_test(refusals),   cmocka_unit_test(version_and_backend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
