/* T2I-Adapters on the tiny SD 1.x and SDXL models against upstream diffusers
 * (tests/data/t2i_adapter, made by make_t2i_adapter_data.py): each kind's
 * features for a picture and the UNet with them times 0.8 added, from
 * diffusers' names and TencentARC's, on an odd-sized latent (ComfyUI's
 * pooling) and with f16 weights; a guided denoiser call with one on both
 * prompts and on the positive one; the picture's size; the files kiln must
 * refuse. */
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
#include "t2i_adapter.h"

#define TOL_F32 1e-4 /* as test_controlnet */
#define TOL_F16 1e-2
#define GOLDEN "t2i_adapter/golden.safetensors"

static const parity_fixture sd1_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = TOL_F32};
static const parity_fixture sd1_f16 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors", .tol = TOL_F16};
static const parity_fixture sdxl = {.path = KILN_TEST_DATA "/sdxl/tiny_sdxl.safetensors", .tol = TOL_F32};

static void full_diffusers_names(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&sd1_f32, "t2i_adapter/full_diffusers.safetensors", "tiny/unet.safetensors", "full", "hint");
}

static void full_original_names(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&sd1_f32, "t2i_adapter/full_original.safetensors", "tiny/unet.safetensors", "full", "hint");
}

/* TencentARC's names under an `adapter` dict, as a torch file may hold them
 * (ComfyUI's load_t2i_adapter unwraps it) */
static void original_names_under_adapter(void **s)
{
    (void)s;
    char path[128];
    kiln_test_renamed_copy(KILN_TEST_DATA "/t2i_adapter/full_original.safetensors", "", "adapter.", path);
    parity_check_t2i_adapter(&sd1_f32, path, "tiny/unet.safetensors", "full", "hint");
    kiln_test_remove_copy(path);
}

/* the light kind, one channel in: the picture's mean over its channels */
static void light_one_channel(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&sd1_f32, "t2i_adapter/light_original.safetensors", "tiny/unet.safetensors", "light",
                             "hint");
}

/* a 7x5 latent: the pooling pads odd sides, as the UNet's strided convs */
static void odd_latent(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&sd1_f32, "t2i_adapter/full_original.safetensors", "tiny/unet_odd.safetensors", "odd",
                             "odd.hint");
}

static void f16_unet(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&sd1_f16, "t2i_adapter/full_diffusers.safetensors", "tiny/unet.safetensors", "full", "hint");
}

/* SDXL's: unshuffled by 16, joining after input blocks 3 and 5 of the tiny
 * two-level UNet (its blocks 8 and middle are not there, or not the size) */
static void sdxl_adapter(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&sdxl, "t2i_adapter/xl_diffusers.safetensors", "sdxl/golden.safetensors", "xl", "hint");
}

/* One guided denoiser call with the adapter on both prompts and on the
 * positive one alone, against the golden's; with its range starting after
 * this sigma, the call is the plain model's to the bit. */
static void denoiser_call(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *adapter;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(sd1_f32.path, be, &m));
    assert_kiln_ok(kiln_controlnet_open(KILN_TEST_DATA "/t2i_adapter/full_original.safetensors", &m->unet,
                                        m->checkpoint, be, &adapter));
    kiln_st_file *f = golden_open(GOLDEN), *tiny = golden_open("tiny/unet.safetensors");
    golden x = golden_read(f, "denoise.x"), sigma = golden_read(f, "denoise.sigma"), cfg = golden_read(f, "denoise.cfg"),
           both = golden_read(f, "denoise.out"), positive = golden_read(f, "denoise.positive_out"),
           context = golden_read(tiny, "encoder_hidden_states"), hint = golden_read(f, "hint"),
           scale = golden_read(f, "scale");
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    const int h = (int)x.shape[2], w = (int)x.shape[3];
    const kiln_control controls[4] = {
        {adapter, hint.data, scale.data[0], 0.0, 1.0, -1, false},
        {adapter, hint.data, scale.data[0], 0.0, 1.0, -1, true},
        {adapter, hint.data, scale.data[0], 0.6, 1.0, -1, false},
        {adapter, hint.data, 0.0f, 0.0, 1.0, -1, false},
    };
    float *out[5];
    for (int i = 0; i < 5; i++) {
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, h, w, cfg.data[0], context.data, 77));
        if (i < 4) assert_kiln_ok(kiln_denoiser_set_controls(&d, &controls[i], 1));
        out[i] = malloc(x.count * sizeof(float));
        assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out[i]));
        assert_int_equal(d.control_calls, i < 2);
        kiln_denoiser_free(&d);
    }
    assert_rel_l2_le(out[0], both.data, both.count, TOL_F32);
    assert_rel_l2_le(out[1], positive.data, positive.count, TOL_F32);
    assert_memory_equal(out[2], out[4], x.count * sizeof(float));
    assert_memory_equal(out[3], out[4], x.count * sizeof(float));
    assert_true(kiln_rel_l2(out[4], out[0], x.count) > 0.05 && kiln_rel_l2(out[0], out[1], x.count) > 0.05);
    for (int i = 0; i < 5; i++) free(out[i]);
    golden *all[] = {&x, &sigma, &cfg, &both, &positive, &context, &hint, &scale};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_st_close(tiny);
    kiln_controlnet_free(adapter);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The picture 8x the latent, rounded up to the unshuffle as ComfyUI's
 * scale_image_to rounds it: SDXL's 16 on a 7x5 latent. */
static void picture_size(void **s)
{
    (void)s;
    kiln_t2i_adapter sd1 = {.unshuffle = 8}, xl = {.unshuffle = 16, .xl = true};
    int h, w;
    kiln_t2i_adapter_picture_size(&sd1, 7, 5, &h, &w);
    assert_int_equal(h, 56), assert_int_equal(w, 40);
    kiln_t2i_adapter_picture_size(&xl, 7, 5, &h, &w);
    assert_int_equal(h, 64), assert_int_equal(w, 48);
    kiln_t2i_adapter_picture_size(&xl, 8, 6, &h, &w);
    assert_int_equal(h, 64), assert_int_equal(w, 48);
}

static void refusals(void **s)
{
    (void)s;
    parity_expect_controlnet_refusal(sd1_f32.path, KILN_TEST_DATA "/t2i_adapter/xl_diffusers.safetensors", "for SDXL");
    parity_expect_controlnet_refusal(sdxl.path, KILN_TEST_DATA "/t2i_adapter/full_original.safetensors", "for SD 1.x/2.x");
    /* the light adapter's widths (32, 64, 64) against another UNet's: the kiln-shapes model is 64 wide first */
    parity_expect_controlnet_refusal(KILN_SOURCE_DIR "/models/kiln-shapes.safetensors",
                   KILN_TEST_DATA "/t2i_adapter/light_original.safetensors", "wide");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_diffusers_names),
        cmocka_unit_test(full_original_names),
        cmocka_unit_test(original_names_under_adapter),
        cmocka_unit_test(light_one_channel),
        cmocka_unit_test(odd_latent),
        cmocka_unit_test(f16_unet),
        cmocka_unit_test(sdxl_adapter),
        cmocka_unit_test(denoiser_call),
        cmocka_unit_test(picture_size),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
