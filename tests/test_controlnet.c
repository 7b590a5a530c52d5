/* ControlNet on the tiny SD 1.x model against upstream diffusers
 * (tests/data/controlnet, made by make_controlnet_data.py and
 * make_multi_controlnet_data.py): the residuals a random ControlNet gives for
 * a hint at strength 0.8, and the UNet's noise prediction with them added;
 * from the original layout (`control_model.*`) and from diffusers' own, for
 * f32 and f16 UNet weights; a guided call with one and with two. Then the
 * files kiln must refuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "controlnet.h"
#include "denoiser.h"
#include "golden.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"

#define TOL_F32 1e-4 /* as test_parity_tiny */
#define TOL_F16 1e-2

static const parity_fixture single_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = TOL_F32};
static const parity_fixture single_f16 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors", .tol = TOL_F16};

static void original_layout(void **s)
{
    (void)s;
    parity_check_controlnet(&single_f32, "controlnet/tiny_ldm.safetensors", "controlnet/golden.safetensors");
}

static void diffusers_layout(void **s)
{
    (void)s;
    parity_check_controlnet(&single_f32, "controlnet/tiny_diffusers.safetensors", "controlnet/golden.safetensors");
}

/* ComfyUI's repackaged files keep the original names without the prefix */
static void original_layout_unprefixed(void **s)
{
    (void)s;
    char path[128];
    kiln_test_renamed_copy(KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", "control_model.", "", path);
    parity_check_controlnet(&single_f32, path, "controlnet/golden.safetensors");
    kiln_test_remove_copy(path);
}

/* kohya's diff modules: the encoder stored as its difference from the
 * UNet beside a `difference` tensor, made whole with the model's weights
 * (f32, and f16 rounded first as torch's `+=` rounds them) */
static void diff_controlnet(void **s)
{
    (void)s;
    kiln_st_file *f, *unet;
    assert_kiln_ok(kiln_st_open(KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", &f));
    assert_kiln_ok(kiln_st_open(single_f32.path, &unet));
    const size_t n = kiln_st_count(f);
    kiln_st_entry *e = calloc(n + 1, sizeof *e);
    float **diffs = calloc(n, sizeof *diffs);
    int subtracted = 0;
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        e[i] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        char name[256];
        snprintf(name, sizeof name, "model.diffusion_model.%s", t->name + strlen("control_model."));
        const kiln_st_tensor *u = kiln_st_find(unet, name);
        if (!u) continue;
        assert_true(t->dtype == KILN_F32 && u->dtype == KILN_F32 && u->nbytes == t->nbytes);
        const size_t count = (size_t)kiln_st_numel(t);
        diffs[i] = malloc(count * sizeof(float));
        for (size_t j = 0; j < count; j++) diffs[i][j] = ((const float *)t->data)[j] - ((const float *)u->data)[j];
        e[i].data = diffs[i];
        subtracted++;
    }
    const float one = 1.0f;
    e[n] = (kiln_st_entry){"difference", KILN_F32, 0, {0}, &one};
    char dir[] = "/tmp/kiln_controlnet_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/diff.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, e, n + 1, NULL, 0));
    print_message("  %d of %zu tensors stored as differences from the UNet's\n", subtracted, n);
    assert_true(subtracted > (int)n / 2);
    for (size_t i = 0; i < n; i++) free(diffs[i]);
    free(diffs);
    free(e);
    kiln_st_close(f);
    kiln_st_close(unet);
    parity_check_controlnet(&single_f32, path, "controlnet/golden.safetensors");
    parity_check_controlnet(&single_f16, path, "controlnet/golden.safetensors");
    unlink(path);
    rmdir(dir);
}

static void f16_unet(void **s)
{
    (void)s;
    parity_check_controlnet(&single_f16, "controlnet/tiny_ldm.safetensors", "controlnet/golden.safetensors");
}

/* One guided denoiser call with Apply ControlNet on both prompts against the
 * golden's; with the control's range starting after this sigma, the call is
 * the plain model's to the bit. */
static void denoiser_call(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(single_f32.path, be, &m));
    assert_kiln_ok(
        kiln_controlnet_open(KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", &m->unet, m->checkpoint, be, &cn));
    kiln_st_file *f = golden_open("controlnet/golden.safetensors");
    golden x = golden_read(f, "denoise.x"), sigma = golden_read(f, "denoise.sigma"), cfg = golden_read(f, "denoise.cfg"),
           want = golden_read(f, "denoise.out"), context = golden_read(f, "encoder_hidden_states"),
           hint = golden_read(f, "hint"), scale = golden_read(f, "scale");
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    assert_int_equal(kiln_sigma_to_timestep(&ms, sigma.data[0]), 500);
    int h = (int)x.shape[2], w = (int)x.shape[3];
    float *out[3];
    /* no control; control over the whole schedule; control from 60 % on (sigma(t=500) is at about 50 %) */
    const kiln_control whole = {cn, hint.data, scale.data[0], 0.0, 1.0, -1, false},
                       late = {cn, hint.data, scale.data[0], 0.6, 1.0, -1, false};
    const kiln_control *controls[3] = {NULL, &whole, &late};
    for (int i = 0; i < 3; i++) {
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, h, w, cfg.data[0], context.data, 77));
        if (controls[i]) assert_kiln_ok(kiln_denoiser_set_controls(&d, controls[i], 1));
        out[i] = malloc(x.count * sizeof(float));
        assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out[i]));
        assert_int_equal(d.control_calls, i == 1);
        kiln_denoiser_free(&d);
    }
    assert_rel_l2_le(out[1], want.data, want.count, TOL_F32);
    assert_memory_equal(out[2], out[0], x.count * sizeof(float));
    assert_true(kiln_rel_l2(out[0], out[1], x.count) > 0.05);
    for (int i = 0; i < 3; i++) free(out[i]);
    golden_free(&x), golden_free(&sigma), golden_free(&cfg), golden_free(&want), golden_free(&context);
    golden_free(&hint), golden_free(&scale);
    kiln_st_close(f);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* Two ControlNets on one guided call, as chained Apply ControlNet nodes,
 * against diffusers' MultiControlNetModel; the second outside its range
 * (from 60 %) or at strength 0 leaves the first's call to the bit; the
 * first outside its range leaves the second's alone, which is neither. */
static void two_controlnets(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *first, *second;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(single_f32.path, be, &m));
    assert_kiln_ok(
        kiln_controlnet_open(KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", &m->unet, m->checkpoint, be, &first));
    assert_kiln_ok(
        kiln_controlnet_open(KILN_TEST_DATA "/controlnet/second_ldm.safetensors", &m->unet, m->checkpoint, be, &second));
    kiln_st_file *f = golden_open("controlnet/golden.safetensors"), *f2 = golden_open("controlnet/multi.safetensors");
    golden x = golden_read(f, "denoise.x"), sigma = golden_read(f, "denoise.sigma"), cfg = golden_read(f, "denoise.cfg"),
           one = golden_read(f, "denoise.out"), context = golden_read(f, "encoder_hidden_states"),
           hint = golden_read(f, "hint"), scale = golden_read(f, "scale"), hint2 = golden_read(f2, "hint"),
           scale2 = golden_read(f2, "scale"), want = golden_read(f2, "out");
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    int h = (int)x.shape[2], w = (int)x.shape[3];
    /* both; the second late; the second at strength 0; the first late */
    const kiln_control chains[4][2] = {
        {{first, hint.data, scale.data[0], 0.0, 1.0, -1, false}, {second, hint2.data, scale2.data[0], 0.0, 1.0, -1, false}},
        {{first, hint.data, scale.data[0], 0.0, 1.0, -1, false}, {second, hint2.data, scale2.data[0], 0.6, 1.0, -1, false}},
        {{first, hint.data, scale.data[0], 0.0, 1.0, -1, false}, {second, hint2.data, 0.0f, 0.0, 1.0, -1, false}},
        {{first, hint.data, scale.data[0], 0.6, 1.0, -1, false}, {second, hint2.data, scale2.data[0], 0.0, 1.0, -1, false}},
    };
    float *out[4];
    for (int i = 0; i < 4; i++) {
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, h, w, cfg.data[0], context.data, 77));
        assert_kiln_ok(kiln_denoiser_set_controls(&d, chains[i], 2));
        out[i] = malloc(x.count * sizeof(float));
        assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out[i]));
        assert_int_equal(d.control_calls, 1);
        kiln_denoiser_free(&d);
    }
    assert_rel_l2_le(out[0], want.data, want.count, TOL_F32);
    assert_rel_l2_le(out[1], one.data, one.count, TOL_F32);
    assert_memory_equal(out[2], out[1], x.count * sizeof(float));
    assert_true(kiln_rel_l2(out[3], one.data, x.count) > 0.05 && kiln_rel_l2(out[3], want.data, x.count) > 0.05);
    for (int i = 0; i < 4; i++) free(out[i]);
    golden *all[] = {&x, &sigma, &cfg, &one, &context, &hint, &scale, &hint2, &scale2, &want};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_st_close(f2);
    kiln_controlnet_free(first);
    kiln_controlnet_free(second);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* A hint image fitted to the latent as ComfyUI does: centre crop to the
 * aspect ratio, then nearest-exact; wider and taller targets. */
static void hint_fits_as_comfyui(void **s)
{
    (void)s;
    kiln_image img;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &img));
    kiln_st_file *f = golden_open("controlnet/golden.safetensors");
    static const int sizes[][2] = {{64, 48}, {24, 64}};
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "fit.%dx%d", sizes[i][0], sizes[i][1]);
        golden want = golden_read(f, name);
        float *hint;
        assert_kiln_ok(kiln_control_hint(NULL, NULL, &img, NULL, sizes[i][1] / 8, sizes[i][0] / 8, &hint));
        assert_int_equal(want.count, (size_t)3 * sizes[i][0] * sizes[i][1]);
        assert_memory_equal(hint, want.data, want.count * sizeof(float));
        free(hint);
        golden_free(&want);
    }
    kiln_st_close(f);
    kiln_image_free(&img);
}

static void refusals(void **s)
{
    (void)s;
    parity_expect_controlnet_refusal(single_f32.path, single_f32.path, "not a ControlNet");
    parity_expect_controlnet_refusal(single_f32.path, KILN_TEST_DATA "/lora/kohya_locon.safetensors",
                                     "not a ControlNet");
    /* the tiny ControlNet on kiln-shapes, whose UNet is another */
    parity_expect_controlnet_refusal(KILN_SOURCE_DIR "/models/kiln-shapes.safetensors",
                                     KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors",
                                     "a ControlNet for sd15-tiny-test, not for this model's UNet (kiln-shapes)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(original_layout),
        cmocka_unit_test(diffusers_layout),
        cmocka_unit_test(original_layout_unprefixed),
        cmocka_unit_test(f16_unet),
        cmocka_unit_test(diff_controlnet),
        cmocka_unit_test(denoiser_call),
        cmocka_unit_test(two_controlnets),
        cmocka_unit_test(hint_fits_as_comfyui),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
