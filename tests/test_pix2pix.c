/* InstructPix2Pix on the tiny SD 1.x model against tests/data/pix2pix (made
 * by make_pix2pix_data.py: diffusers' models, ComfyUI's steps around them):
 * the UNet with an 8-channel conv_in against diffusers; the picture's latent
 * as InstructPixToPixConditioning makes it (cropped to the VAE's multiple,
 * encoded, unscaled); one guided sampler call with it beside the noisy
 * latent on both prompts. */
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "denoiser.h"
#include "golden.h"
#include "image.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "status.h"
#include "tiny_variants.h"

#define TOL 1e-4 /* as test_parity_tiny: the same math in f32 */
#define GOLDEN "pix2pix/golden.safetensors"

static void load(kiln_backend **be, kiln_model **m)
{
    assert_kiln_ok(kiln_backend_create("cpu", NULL, be));
    assert_kiln_ok(kiln_model_load(tiny_pix2pix_model(), *be, m));
}

static void pix2pix_unet(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    load(&be, &m);
    assert_int_equal(m->info.variant, KILN_VARIANT_INSTRUCT_PIX2PIX);
    assert_string_equal(m->unet.config->name, "sd15-tiny-test-instruct-pix2pix");
    kiln_model_free(m);
    kiln_backend_free(be);
    parity_check_unet_output(&(parity_fixture){.path = tiny_pix2pix_model(), .tol = TOL}, GOLDEN, "unet8.");
}

/* The 20x17 picture cropped to 20x16 and encoded, as the conditioning
 * carries it (not scaled by the VAE's factor). */
static void picture_latent(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    load(&be, &m);
    kiln_image img;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &img));
    assert_kiln_ok(kiln_image_crop_to_multiple(&img, kiln_vae_factor(m->vae.config), &img));
    float *pixels = malloc((size_t)3 * img.width * img.height * sizeof(float)), *latent;
    kiln_image_to_encoder_input(&img, pixels);
    assert_kiln_ok(kiln_vae_encode_image(m, pixels, 1, img.height, img.width, &latent));
    kiln_st_file *f = golden_open(GOLDEN);
    golden want = golden_read(f, "edit.latent");
    assert_int_equal(want.count, (size_t)4 * (img.height / 2) * (img.width / 2));
    assert_rel_l2_le(latent, want.data, want.count, TOL);
    golden_free(&want);
    kiln_st_close(f);
    free(latent);
    free(pixels);
    kiln_image_free(&img);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* One KSampler call with guidance 7.5: both rows get the picture's latent;
 * without it the model is refused. */
static void guided_call(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    load(&be, &m);
    kiln_st_file *f = golden_open(GOLDEN);
    golden edit = golden_read(f, "edit.latent"), x = golden_read(f, "call.x"), sigma = golden_read(f, "call.sigma"),
           cfg = golden_read(f, "call.cfg"), want = golden_read(f, "call.out"),
           context = golden_read(f, "unet8.encoder_hidden_states");
    int h = (int)x.shape[2], w = (int)x.shape[3];
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    float *out = malloc(x.count * sizeof(float));
    kiln_denoiser d;
    assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, h, w, cfg.data[0], context.data, 77));
    assert_int_equal(kiln_denoiser_call(&d, x.data, sigma.data[0], out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "InstructPix2Pix model needs the picture to edit"));
    assert_kiln_ok(kiln_denoiser_set_concat(&d, edit.data));
    assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out));
    kiln_denoiser_free(&d);
    assert_rel_l2_le(out, want.data, want.count, TOL);
    free(out);
    golden_free(&edit), golden_free(&x), golden_free(&sigma), golden_free(&cfg), golden_free(&want);
    golden_free(&context);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pix2pix_unet),
        cmocka_unit_test(picture_latent),
        cmocka_unit_test(guided_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
