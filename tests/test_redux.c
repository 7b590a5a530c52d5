/* FLUX.1 Redux against upstream on tests/data/redux (make_redux_data.py:
 * transformers' SiglipVisionModel and diffusers' ReduxImageEncoder on small
 * random ones, ComfyUI's clip_preprocess and StyleModelApply restated): the
 * SigLIP tower's preprocessing for both crops, its last hidden state, the
 * Redux tokens, the tiny Flux model's conditioning with them; a KSampler run
 * with it; what is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "clip_vision.h"
#include "golden.h"
#include "model.h"
#include "pipeline.h"
#include "redux.h"
#include "status.h"

#define GOLDEN "redux/golden.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order */
#define PICTURE KILN_TEST_DATA "/ip_adapter/picture_251x233.png"

typedef struct {
    kiln_backend *be;
    kiln_clip_vision *siglip;
    kiln_image picture;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &f->be));
    assert_kiln_ok(kiln_clip_vision_load(f->be, KILN_TEST_DATA "/redux/siglip_tiny.safetensors", &f->siglip));
    assert_kiln_ok(kiln_image_load(PICTURE, &f->picture));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_image_free(&f->picture);
    kiln_clip_vision_free(f->siglip);
    kiln_backend_free(f->be);
    free(f);
    return 0;
}

/* clip_preprocess with SigLIP's mean and std, cut at the centre and
 * squeezed whole; as for CLIP's (test_ip_adapter), a value at half a 1/255
 * step may round the other way (1/255/0.5 off), a few may, no more. */
static void siglip_preprocess(void **state)
{
    fixture *fx = *state;
    const clip_vision_config *cfg = fx->siglip->config;
    assert_string_equal(cfg->name, "siglip-tiny-test");
    assert_true(cfg->siglip);
    kiln_st_file *f = golden_open(GOLDEN);
    for (int crop = 0; crop < 2; crop++) {
        golden want = golden_read(f, crop ? "pixels.center" : "pixels.none");
        assert_int_equal(want.count, 3 * 56 * 56);
        float *have = malloc(want.count * sizeof *have);
        assert_kiln_ok(kiln_clip_vision_preprocess(cfg, &fx->picture, crop, have));
        golden_assert_steps(crop ? "crop center" : "crop none", have, &want, 1.0 / 255 / 0.5, 4);
        free(have);
        golden_free(&want);
    }
    kiln_st_close(f);
}

/* The tower's last hidden state and the Redux tokens on upstream's
 * pixels; the tokens from the picture itself for both crops. */
static void siglip_and_redux(void **state)
{
    fixture *fx = *state;
    kiln_style_model *sm;
    assert_kiln_ok(kiln_style_model_open(KILN_TEST_DATA "/redux/redux_tiny.safetensors", fx->be, &sm));
    assert_int_equal(sm->in_dim, 32);
    assert_int_equal(sm->out_dim, 64);
    kiln_st_file *f = golden_open(GOLDEN);
    golden pixels = golden_read(f, "pixels.center"), want = golden_read(f, "hidden.center");
    float *hidden = malloc(want.count * sizeof *hidden);
    assert_kiln_ok(kiln_clip_vision_encode(fx->siglip, pixels.data, 1, &(clip_vision_outputs){.last_hidden = hidden}));
    assert_rel_l2_le(hidden, want.data, want.count, TOL);
    golden tokens = golden_read(f, "tokens.center");
    float *got = malloc(tokens.count * sizeof *got);
    assert_kiln_ok(kiln_style_model_tokens(sm, hidden, 1, 16, got));
    assert_rel_l2_le(got, tokens.data, tokens.count, TOL);
    free(got);
    for (int crop = 0; crop < 2; crop++) {
        golden w = golden_read(f, crop ? "tokens.center" : "tokens.none");
        int T;
        assert_kiln_ok(kiln_style_tokens(sm, fx->siglip, &fx->picture, crop, &got, &T));
        assert_int_equal(T, 16);
        assert_rel_l2_le(got, w.data, w.count, TOL);
        free(got);
        golden_free(&w);
    }
    assert_int_equal(kiln_clip_vision_encode(fx->siglip, pixels.data, 1, &(clip_vision_outputs){.image_embeds = hidden}),
                     KILN_ERR_INVALID_ARG);
    free(hidden);
    golden_free(&tokens);
    golden_free(&pixels);
    golden_free(&want);
    kiln_st_close(f);
    kiln_style_model_free(sm);
}

/* StyleModelApply on the tiny Flux model's prompt at 0.8: its T5 rows, then
 * the tokens times 0.8; a KSampler run with it; refusals. */
static void style_model_apply(void **state)
{
    fixture *fx = *state;
    kiln_model *m;
    kiln_style_model *sm;
    assert_kiln_ok(kiln_checkpoint_load(fx->be, KILN_TEST_DATA "/flux/tiny", NULL, 0, &m));
    assert_kiln_ok(kiln_style_model_load(m, KILN_TEST_DATA "/redux/redux_tiny.safetensors", &sm));
    kiln_conditioning prompt, styled, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red fox", 0, &prompt));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_st_file *f = golden_open(GOLDEN);
    golden want = golden_read(f, "prompt");
    assert_rel_l2_le(prompt.data, want.data, want.count, TOL);
    golden_free(&want);
    want = golden_read(f, "styled");
    assert_kiln_ok(kiln_style_model_apply(sm, fx->siglip, &fx->picture, true, 0.8, &prompt, &styled));
    assert_int_equal(styled.tokens, 256 + 16);
    assert_int_equal(styled.pooled_dim, prompt.pooled_dim);
    assert_memory_equal(styled.pooled, prompt.pooled, (size_t)prompt.pooled_dim * sizeof(float));
    assert_rel_l2_le(styled.data, want.data, want.count, 1e-4);
    golden_free(&want);
    kiln_st_close(f);

    /* the sampler takes the longer positive caption beside the negative's 256 rows; the picture's rows steer it */
    kiln_latent empty, plain, guided;
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 3, .steps = 2, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .flux_guidance = 3.5};
    assert_kiln_ok(kiln_ksampler(m, &p, &prompt, &neg, &empty, &plain));
    assert_kiln_ok(kiln_ksampler(m, &p, &styled, &neg, &empty, &guided));
    double diff = 0, norm = 0;
    for (size_t i = 0; i < (size_t)plain.batch * plain.channels * plain.height * plain.width; i++) {
        diff += (guided.data[i] - plain.data[i]) * (double)(guided.data[i] - plain.data[i]);
        norm += plain.data[i] * (double)plain.data[i];
        assert_true(isfinite(guided.data[i]));
    }
    assert_true(diff > 1e-6 * norm);
    kiln_latent_free(&plain);
    kiln_latent_free(&guided);
    kiln_latent_free(&empty);

    /* a CLIP tower for Redux; a Redux file that is no Redux; Redux on an SD model */
    kiln_clip_vision *clip;
    kiln_conditioning none;
    assert_kiln_ok(kiln_clip_vision_load(fx->be, KILN_TEST_DATA "/ip_adapter/clip_vision_tiny.safetensors", &clip));
    assert_int_equal(kiln_style_model_apply(sm, clip, &fx->picture, true, 1.0, &prompt, &none), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "reads SigLIP's 32-wide ones"));
    kiln_clip_vision_free(clip);
    kiln_style_model *wrong = NULL;
    assert_int_equal(kiln_style_model_load(m, KILN_TEST_DATA "/ip_adapter/ip_adapter_tiny.safetensors", &wrong),
                     KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "not a FLUX.1 Redux model"));
    assert_null(wrong);
    kiln_model *sd;
    assert_kiln_ok(kiln_model_load(KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", fx->be, &sd));
    assert_int_equal(kiln_style_model_load(sd, KILN_TEST_DATA "/redux/redux_tiny.safetensors", &wrong),
                     KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "works with Flux models"));
    kiln_model_free(sd);

    kiln_conditioning_free(&prompt);
    kiln_conditioning_free(&styled);
    kiln_conditioning_free(&neg);
    kiln_style_model_free(sm);
    kiln_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siglip_preprocess),
        cmocka_unit_test(siglip_and_redux),
        cmocka_unit_test(style_model_apply),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
