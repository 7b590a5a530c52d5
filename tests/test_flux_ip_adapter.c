/* XLabs' Flux IP-Adapter against upstream on tests/data/flux/controlnet
 * (make_flux_ip_adapter_data.py: diffusers' FluxTransformer2DModel with the
 * adapter loaded by its own loader): the projection of image embeds, the
 * transformer attending to the tokens after each double block, the tokens
 * of a picture and of the negative rows' black picture through the tiny
 * CLIP tower; a KSampler run at weight 0 is the plain run to the bit; what
 * is refused. */
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "golden.h"
#include "ip_adapter.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "status.h"

#define DIR KILN_TEST_DATA "/flux/controlnet"
#define VISION KILN_TEST_DATA "/ip_adapter/clip_vision_tiny.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order */

typedef struct {
    kiln_backend *be;
    kiln_model *m;
    kiln_ip_adapter *ipa;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &f->be));
    assert_kiln_ok(kiln_checkpoint_load(f->be, DIR, NULL, 0, &f->m));
    assert_kiln_ok(kiln_ip_adapter_load(f->m, DIR "/ip_adapter.safetensors", &f->ipa));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_ip_adapter_free(f->ipa);
    kiln_model_free(f->m);
    kiln_backend_free(f->be);
    free(f);
    return 0;
}

/* The projection of upstream's embeds, and the transformer with its tokens
 * (parity_check_flux_ip_adapter, which the GPU suites run too). */
static void transformer_with_tokens(void **state)
{
    fixture *fx = *state;
    assert_true(fx->ipa->flux);
    assert_int_equal(fx->ipa->tokens, 4);
    assert_int_equal(fx->ipa->nrows, 3);
    parity_check_flux_ip_adapter(&(parity_fixture){.tol = TOL});
}

/* A picture's tokens through the tiny CLIP tower: the negative rows' of a
 * black picture first; then a KSampler run with them, which at weight 0 is
 * the plain run to the bit. */
static void picture_and_sampling(void **state)
{
    fixture *fx = *state;
    kiln_clip_vision *cv;
    kiln_image picture;
    assert_kiln_ok(kiln_clip_vision_load(fx->be, VISION, &cv));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/ip_adapter/picture_251x233.png", &picture));
    float *tokens;
    assert_kiln_ok(kiln_image_prompt_tokens(fx->ipa, cv, &picture, 1, &tokens));
    kiln_st_file *f = golden_open(FLUX_IP_ADAPTER_GOLDEN);
    golden want = golden_read(f, "picture.tokens");
    assert_rel_l2_le(tokens, want.data, want.count, TOL);
    golden_free(&want);
    kiln_st_close(f);
    free(tokens);

    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(fx->m, "a red fox", 0, &pos));
    assert_kiln_ok(kiln_text_encode(fx->m, "", 0, &neg));
    kiln_latent empty, plain, off, on;
    assert_kiln_ok(kiln_empty_latent(fx->m, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .flux_guidance = 3.5};
    assert_kiln_ok(kiln_ksampler(fx->m, &p, &pos, &neg, &empty, &plain));
    kiln_ip_adapter_apply ip = {fx->ipa, cv, &picture, 0.0, 0.0, 1.0, 1};
    p.ip_adapter = &ip;
    assert_kiln_ok(kiln_ksampler(fx->m, &p, &pos, &neg, &empty, &off));
    const size_t n = (size_t)plain.channels * plain.height * plain.width;
    assert_memory_equal(off.data, plain.data, n * sizeof(float));
    ip.weight = 1.0;
    assert_kiln_ok(kiln_ksampler(fx->m, &p, &pos, &neg, &empty, &on));
    assert_true(memcmp(on.data, plain.data, n * sizeof(float)) != 0);
    kiln_latent_free(&plain);
    kiln_latent_free(&off);
    kiln_latent_free(&on);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_image_free(&picture);
    kiln_clip_vision_free(cv);
}

/* h94's adapter on the Flux model and XLabs' on an SD model, each naming
 * what it is. */
static void refusals(void **state)
{
    fixture *fx = *state;
    kiln_ip_adapter *ipa = NULL;
    assert_int_equal(kiln_ip_adapter_load(fx->m, KILN_TEST_DATA "/ip_adapter/ip_adapter_tiny.safetensors", &ipa),
                     KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "not XLabs' for Flux"));
    assert_null(ipa);
    kiln_model *sd;
    assert_kiln_ok(kiln_model_load(KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", fx->be, &sd));
    assert_int_equal(kiln_ip_adapter_load(sd, DIR "/ip_adapter.safetensors", &ipa), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "XLabs' IP-Adapter for Flux, not for this model's UNet"));
    kiln_model_free(sd);
    kiln_model *tiny;
    assert_kiln_ok(kiln_checkpoint_load(fx->be, KILN_TEST_DATA "/flux/tiny", NULL, 0, &tiny));
    assert_int_equal(kiln_ip_adapter_load(tiny, DIR "/ip_adapter.safetensors", &ipa), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "for 3 double blocks; this Flux transformer reads 64-wide T5 rows in 1"));
    kiln_model_free(tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transformer_with_tokens),
        cmocka_unit_test(picture_and_sampling),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
