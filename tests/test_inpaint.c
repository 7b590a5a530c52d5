/* Inpainting on the tiny SD 1.x model against tests/data/inpaint (made by
 * make_inpaint_data.py: diffusers' models, ComfyUI's steps around them):
 * an inpainting UNet (the tiny UNet with a 9-channel conv_in) against
 * diffusers; VAEEncodeForInpaint (inpainting UNet) and VAEEncode +
 * SetLatentNoiseMask (plain UNet) of an image and a soft-edged mask; one
 * guided sampler call of each, as KSamplerX0Inpaint makes it;
 * ImagePadForOutpaint and both encodes of what it gives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "denoiser.h"
#include "golden.h"
#include "parity.h"
#include "inpaint.h"
#include "latent.h"
#include "tiny_variants.h"
#include "model.h"
#include "pipeline.h"
#include "status.h"

#define TOL 1e-4 /* as test_parity_tiny: the same math in f32 */
#define PLAIN KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors"

static void load(const char *path, kiln_backend **be, kiln_model **m)
{
    assert_kiln_ok(kiln_backend_create("cpu", NULL, be));
    assert_kiln_ok(kiln_model_load(path, *be, m));
}

static void load_image(kiln_image *img)
{
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", img));
}

static void inpainting_unet(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    load(tiny_inpaint_model(), &be, &m);
    assert_int_equal(m->info.variant, KILN_VARIANT_INPAINT);
    assert_string_equal(m->unet.config->name, "sd15-tiny-test-inpaint");
    kiln_model_free(m);
    kiln_backend_free(be);
    parity_check_unet_output(&(parity_fixture){.path = tiny_inpaint_model(), .tol = TOL}, "inpaint/golden.safetensors",
                             "unet9.");
}

/* The encode, then one guided call on the golden's latent, noise and x. */
static void check_inpaint(const char *model_path, const char *name, int mask_h, int mask_w)
{
    kiln_backend *be;
    kiln_model *m;
    load(model_path, &be, &m);
    kiln_image img;
    kiln_mask mask;
    load_image(&img);
    assert_kiln_ok(kiln_mask_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", "red", &mask));
    kiln_inpaint_source src;
    kiln_inpaint in;
    assert_kiln_ok(kiln_inpaint_source_make(&img, &mask, KILN_INPAINT_GROW, &src));
    assert_kiln_ok(kiln_inpaint_encode(m, &src, &in));
    kiln_inpaint_source_free(&src);
    kiln_st_file *f = golden_open("inpaint/golden.safetensors");
    char key[64];
#define READ(var, part) snprintf(key, sizeof key, "%s." part, name), var = golden_read(f, key)
    golden want_mask, want_latent, x, noise, sigma, cfg, want, context;
    READ(want_mask, "noise_mask");
    READ(want_latent, "latent");
    READ(x, "x");
    READ(noise, "noise");
    READ(sigma, "sigma");
    READ(cfg, "cfg");
    READ(want, "out");
#undef READ
    context = golden_read(f, "unet9.encoder_hidden_states");
    assert_int_equal(in.mask_h, mask_h);
    assert_int_equal(in.mask_w, mask_w);
    assert_int_equal(want_mask.count, (size_t)mask_h * mask_w);
    assert_memory_equal(in.noise_mask, want_mask.data, want_mask.count * sizeof(float));
    assert_int_equal(in.h, (int)want_latent.shape[2]);
    assert_int_equal(in.w, (int)want_latent.shape[3]);
    assert_rel_l2_le(in.latent, want_latent.data, want_latent.count, TOL);

    /* the sampler's call, from the golden's latent so that only it is tested */
    memcpy(in.latent, want_latent.data, want_latent.count * sizeof(float));
    size_t plane = (size_t)in.h * in.w;
    float *blend_mask = malloc(plane * sizeof(float)), *scaled = malloc(x.count * sizeof(float));
    float *out = malloc(x.count * sizeof(float));
    kiln_inpaint_mask_resize(&in, in.h, in.w, blend_mask);
    for (size_t i = 0; i < x.count; i++) scaled[i] = in.latent[i] * m->vae.latents.scale;
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    kiln_denoiser d;
    kiln_inpaint_mask blend = {.mask = blend_mask, .latent = scaled, .noise = noise.data};
    assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, in.h, in.w, cfg.data[0], context.data, 77));
    assert_kiln_ok(kiln_denoiser_set_inpaint(&d, &blend));
    assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out));
    kiln_denoiser_free(&d);
    assert_rel_l2_le(out, want.data, want.count, TOL);

    free(blend_mask), free(scaled), free(out);
    golden_free(&want_mask), golden_free(&want_latent), golden_free(&x), golden_free(&noise);
    golden_free(&sigma), golden_free(&cfg), golden_free(&want), golden_free(&context);
    kiln_st_close(f);
    kiln_inpaint_free(&in);
    kiln_image_free(&img);
    kiln_mask_free(&mask);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* VAEEncodeForInpaint: masked pixels grey, the mask rounded and grown, over
 * the cropped 20x16 image */
static void inpainting_model(void **state)
{
    (void)state;
    check_inpaint(tiny_inpaint_model(), "inpaint", 16, 20);
}

/* VAEEncode + SetLatentNoiseMask: the mask as given, 20x17 */
static void plain_model_with_noise_mask(void **state)
{
    (void)state;
    check_inpaint(PLAIN, "noise_mask", 17, 20);
}

/* ImagePadForOutpaint to the bit: the grey canvas, the picture on it, and
 * the mask's fade from padded sides only (and none when too wide). */
static void outpaint_pad(void **state)
{
    (void)state;
    kiln_image img;
    load_image(&img);
    kiln_st_file *f = golden_open("inpaint/golden.safetensors");
    const struct {
        kiln_outpaint pad;
        const char *mask;
    } cases[] = {
        {{6, 0, 3, 5, 4}, "outpaint.mask"},
        {{2, 2, 2, 2, 9}, "outpaint_even.mask"},
        {{0, 4, 0, 0, 5}, "outpaint_top.mask"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_inpaint_source src;
        assert_kiln_ok(kiln_outpaint_source(&img, &cases[i].pad, &src));
        golden want = golden_read(f, cases[i].mask);
        assert_int_equal(src.height, (int)want.shape[0]);
        assert_int_equal(src.width, (int)want.shape[1]);
        assert_int_equal(src.mask_h, src.height);
        assert_int_equal(src.mask_w, src.width);
        assert_memory_equal(src.mask, want.data, want.count * sizeof(float));
        golden_free(&want);
        if (i == 0) {
            want = golden_read(f, "outpaint.pixels");
            assert_int_equal(want.count, (size_t)3 * src.width * src.height);
            assert_memory_equal(src.pixels, want.data, want.count * sizeof(float));
            golden_free(&want);
        }
        kiln_inpaint_source_free(&src);
    }
    kiln_inpaint_source src;
    assert_int_equal(kiln_outpaint_source(&img, &(kiln_outpaint){-8, 0, 0, 0, 0}, &src), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "padding -8"));
    assert_int_equal(kiln_outpaint_source(&img, &(kiln_outpaint){8, 0, 0, 0, -1}, &src), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "feathering -1"));
    kiln_st_close(f);
    kiln_image_free(&img);
}

/* The padded picture through VAEEncodeForInpaint (the 29 columns cropped
 * to 28, the mask grown) and through VAEEncode + SetLatentNoiseMask. */
static void check_outpaint_encode(const char *model_path, const char *name)
{
    kiln_backend *be;
    kiln_model *m;
    load(model_path, &be, &m);
    kiln_image img;
    load_image(&img);
    kiln_inpaint_source src;
    kiln_inpaint in;
    assert_kiln_ok(kiln_outpaint_source(&img, &(kiln_outpaint){6, 0, 3, 5, 4}, &src));
    assert_kiln_ok(kiln_inpaint_encode(m, &src, &in));
    kiln_st_file *f = golden_open("inpaint/golden.safetensors");
    char key[64];
    snprintf(key, sizeof key, "outpaint.%s.noise_mask", name);
    golden want_mask = golden_read(f, key);
    snprintf(key, sizeof key, "outpaint.%s.latent", name);
    golden want_latent = golden_read(f, key);
    assert_int_equal(in.mask_h, (int)want_mask.shape[2]);
    assert_int_equal(in.mask_w, (int)want_mask.shape[3]);
    assert_memory_equal(in.noise_mask, want_mask.data, want_mask.count * sizeof(float));
    assert_int_equal(in.width, 28);
    assert_int_equal(in.height, 22);
    assert_int_equal((size_t)4 * in.h * in.w, want_latent.count);
    assert_rel_l2_le(in.latent, want_latent.data, want_latent.count, TOL);
    golden_free(&want_mask), golden_free(&want_latent);
    kiln_st_close(f);
    kiln_inpaint_free(&in);
    kiln_inpaint_source_free(&src);
    kiln_image_free(&img);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void outpaint_encode(void **state)
{
    (void)state;
    check_outpaint_encode(tiny_inpaint_model(), "inpaint");
    check_outpaint_encode(PLAIN, "noise_mask");
}

/* An inpainting UNet has nothing to run on without the image and mask. */
/* VAEEncodeForInpaint's grow_mask_by from 0 (the mask rounded) to 13,
 * against its steps restated (tests/data/inpaint/grow.safetensors), to the
 * bit; 6 is kiln_vae_encode_for_inpaint's; 65 is refused. */
static void grow_mask_by(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    load(tiny_inpaint_model(), &be, &m);
    kiln_image img, picture;
    kiln_mask mask;
    load_image(&img);
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", &picture));
    assert_kiln_ok(kiln_mask_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", "red", &mask));
    kiln_st_file *f = golden_open("inpaint/grow.safetensors");
    static const int grows[] = {0, 1, 2, 3, 6, 8, 13};
    for (size_t k = 0; k < sizeof grows / sizeof *grows; k++) {
        char key[32];
        snprintf(key, sizeof key, "grow.%d", grows[k]);
        golden want = golden_read(f, key);
        kiln_latent l;
        assert_kiln_ok(kiln_vae_encode_for_inpaint_mask(m, &img, &mask, grows[k], &l));
        assert_int_equal(l.mask_h, (int)want.shape[0]);
        assert_int_equal(l.mask_w, (int)want.shape[1]);
        if (memcmp(l.noise_mask, want.data, want.count * sizeof(float)))
            fail_msg("grow_mask_by %d: not ComfyUI's noise mask", grows[k]);
        if (grows[k] == KILN_INPAINT_GROW) {
            kiln_latent same;
            assert_kiln_ok(kiln_vae_encode_for_inpaint(m, &img, &picture, &same));
            assert_memory_equal(same.noise_mask, l.noise_mask, want.count * sizeof(float));
            assert_memory_equal(same.data, l.data, kiln_latent_count(&l) * sizeof(float));
            kiln_latent_free(&same);
        }
        kiln_latent_free(&l);
        golden_free(&want);
    }
    kiln_latent l;
    assert_int_equal(kiln_vae_encode_for_inpaint_mask(m, &img, &mask, 65, &l), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "grow_mask_by 65: 0 to 64"));
    kiln_st_close(f);
    kiln_mask_free(&mask);
    kiln_image_free(&picture);
    kiln_image_free(&img);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void inpainting_model_needs_a_mask(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    load(tiny_inpaint_model(), &be, &m);
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    float context[77 * 32] = {0}, x[4 * 4 * 4] = {0}, out[4 * 4 * 4];
    kiln_denoiser d;
    assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, 4, 4, 1.0f, context, 77));
    assert_int_equal(kiln_denoiser_call(&d, x, 1.0f, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "--mask"));
    kiln_denoiser_free(&d);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inpainting_unet),
        cmocka_unit_test(inpainting_model),
        cmocka_unit_test(plain_model_with_noise_mask),
        cmocka_unit_test(inpainting_model_needs_a_mask),
        cmocka_unit_test(grow_mask_by),
        cmocka_unit_test(outpaint_pad),
        cmocka_unit_test(outpaint_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
