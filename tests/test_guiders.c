/* SamplerCustomAdvanced's guiders of three prompts, DualCFGGuider and
 * PerpNegGuider: their combination of x0 predictions against ComfyUI's code
 * restated (tests/data/guiders), then through the sampling with the tiny
 * SD 1.x model: one step's prediction against the three prompts' own
 * predictions combined by hand; the scales at which ComfyUI leaves a prompt
 * out give the plain guidance of the other two to the bit; what does not go
 * with three prompts is refused by name. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "guiders.h"
#include "latent.h"
#include "rng.h"

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

/* Three settings of each against the goldens: DualCFG's to the bit (one
 * float32 rounding a step), PerpNeg's within 1e-6 (its two sums over the
 * batch are torch's float32 results of a wider accumulation). */
static void guiders_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("guiders/guiders.safetensors");
    golden p = golden_read(f, "positive"), m = golden_read(f, "middle"), q = golden_read(f, "negative");
    const size_t n = p.count;
    float *have = malloc(n * sizeof *have), *text = malloc(n * sizeof *text), *guided = malloc(n * sizeof *guided);
    assert_non_null(have), assert_non_null(text), assert_non_null(guided);
    static const float dual[3][2] = {{5.5f, 2.0f}, {1.0f, 3.0f}, {7.0f, 0.5f}};
    static const char *const keys[3] = {"5.5_2", "1_3", "7_0.5"};
    char name[64];
    for (int k = 0; k < 3; k++) {
        const float cfg1 = dual[k][0], cfg2 = dual[k][1];
        for (size_t i = 0; i < n; i++) guided[i] = q.data[i] + (m.data[i] - q.data[i]) * cfg2; /* cfg_function */
        kiln_dual_cfg(guided, m.data, p.data, cfg1, n, have);
        snprintf(name, sizeof name, "dual.%s", keys[k]);
        golden want = golden_read(f, name);
        assert_memory_equal(have, want.data, n * sizeof *have);
        golden_free(&want);
        for (size_t i = 0; i < n; i++) text[i] = m.data[i] + (p.data[i] - m.data[i]) * cfg1;
        kiln_dual_cfg_nested(text, q.data, cfg2, n, have);
        snprintf(name, sizeof name, "nested.%s", keys[k]);
        want = golden_read(f, name);
        assert_memory_equal(have, want.data, n * sizeof *have);
        golden_free(&want);
    }
    static const float perp[3][2] = {{1.0f, 7.0f}, {0.5f, 4.5f}, {2.0f, 1.0f}};
    static const char *const perp_keys[3] = {"1_7", "0.5_4.5", "2_1"};
    for (int k = 0; k < 3; k++) {
        kiln_perp_neg(p.data, q.data, m.data, perp[k][0], perp[k][1], n, have);
        snprintf(name, sizeof name, "perp.%s", perp_keys[k]);
        golden want = golden_read(f, name);
        assert_rel_l2_le(have, want.data, n, 1e-6);
        golden_free(&want);
    }
    free(have), free(text), free(guided);
    golden_free(&p), golden_free(&m), golden_free(&q);
    kiln_st_close(f);
}

#define LH 8
#define LW 8

/* One euler step from the first of one sigma (to 0: the step's output is
 * its x0 prediction) with the guider `kind` (the plain guidance with
 * KILN_GUIDER_CFG), unscaled back to the model's latent. */
static float *one_step(kiln_guider_kind kind, const kiln_conditioning *positive, const kiln_conditioning *negative,
                       const kiln_conditioning *third, float cfg, float scale2, const float *noise,
                       kiln_sampler sampler, kiln_status *status)
{
    const kiln_sampling_job job = {.sampler = sampler, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 1,
                                   .cfg = cfg, .denoise = 1.0, .batch = 1, .latent_h = LH, .latent_w = LW,
                                   .noise = noise, .guider = kind, .third = third, .scale2 = scale2};
    float *out = NULL;
    kiln_status st = kiln_ksample(model, &job, positive, negative, &out);
    if (status) *status = st;
    else assert_kiln_ok(st);
    const size_t n = (size_t)kiln_model_latent_channels(model) * LH * LW;
    if (out) kiln_vae_latent_in(&model->vae, out, n, (size_t)LH * LW, out);
    return out;
}

/* The step's prediction with each guider is the guider's combination
 * (checked above) of the three prompts' own predictions, each sampled alone
 * at cfg 1, and unlike the plain guidance's. */
static void guiders_through_sampling(void **state)
{
    (void)state;
    const size_t n = (size_t)kiln_model_latent_channels(model) * LH * LW;
    kiln_conditioning red, blue, neg;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &red));
    assert_kiln_ok(kiln_text_encode(model, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_text_encode(model, "blurry", 0, &neg));
    float *noise = malloc(n * sizeof *noise), *want = malloc(n * sizeof *want), *mix = malloc(n * sizeof *mix);
    assert_non_null(noise), assert_non_null(want), assert_non_null(mix);
    kiln_rng rng;
    kiln_rng_seed(&rng, 21);
    kiln_rng_randn(&rng, noise, n);
    const kiln_sampler euler = KILN_SAMPLER_EULER;
    float *p = one_step(KILN_GUIDER_CFG, &red, &red, NULL, 1.0f, 0.0f, noise, euler, NULL),
          *mid = one_step(KILN_GUIDER_CFG, &blue, &blue, NULL, 1.0f, 0.0f, noise, euler, NULL),
          *q = one_step(KILN_GUIDER_CFG, &neg, &neg, NULL, 1.0f, 0.0f, noise, euler, NULL),
          *plain = one_step(KILN_GUIDER_CFG, &red, &neg, NULL, 6.0f, 0.0f, noise, euler, NULL);
    static const char *const names[3] = {"DualCFGGuider", "DualCFGGuider nested", "PerpNegGuider"};
    static const kiln_guider_kind kinds[3] = {KILN_GUIDER_DUAL_CFG, KILN_GUIDER_DUAL_CFG_NESTED,
                                              KILN_GUIDER_PERP_NEG};
    for (int k = 0; k < 3; k++) {
        const float cfg = 6.0f, scale2 = k == 2 ? 0.8f : 2.5f;
        if (kinds[k] == KILN_GUIDER_DUAL_CFG) {
            for (size_t i = 0; i < n; i++) mix[i] = q[i] + (mid[i] - q[i]) * scale2;
            kiln_dual_cfg(mix, mid, p, cfg, n, want);
        } else if (kinds[k] == KILN_GUIDER_DUAL_CFG_NESTED) {
            for (size_t i = 0; i < n; i++) mix[i] = mid[i] + (p[i] - mid[i]) * cfg;
            kiln_dual_cfg_nested(mix, q, scale2, n, want);
        } else {
            kiln_perp_neg(p, q, mid, scale2, cfg, n, want);
        }
        float *have = one_step(kinds[k], &red, &neg, &blue, cfg, scale2, noise, euler, NULL);
        const double err = kiln_rel_l2(have, want, n), off = kiln_rel_l2(have, plain, n);
        print_message("  %s: rel L2 %.2g from the predictions combined by hand (%.2g from the plain guidance)\n",
                      names[k], err, off);
        assert_true(err <= 1e-5);
        assert_true(off > 1e-3);
        free(have);
    }
    kiln_status st;
    assert_null(one_step(KILN_GUIDER_PERP_NEG, &red, &neg, &blue, 6.0f, 0.8f, noise, KILN_SAMPLER_EULER_CFG_PP,
                         &st));
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "PerpNegGuider with a CFG++ sampler"));
    free(p), free(mid), free(q), free(plain), free(noise), free(want), free(mix);
    kiln_conditioning_free(&red), kiln_conditioning_free(&blue), kiln_conditioning_free(&neg);
}

/* Through kiln_ksampler: DualCFG with cfg_cond2_negative 1 is the positive
 * guided from cond2 at cfg, PerpNeg at neg_scale 0 the positive guided from
 * the empty prompt, to the bit, as ComfyUI leaves the negative out there;
 * the guiders with prompts in parts are refused. */
static void guiders_leave_out_as_comfyui(void **state)
{
    (void)state;
    kiln_conditioning red, blue, neg;
    kiln_latent empty, have, want;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &red));
    assert_kiln_ok(kiln_text_encode(model, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_text_encode(model, "blurry", 0, &neg));
    assert_kiln_ok(kiln_empty_latent(model, 16, 16, 1, &empty));
    const kiln_ksampler_params plain = {.seed = 4, .steps = 2, .cfg = 5.0, .sampler_name = "euler",
                                        .scheduler = "normal", .denoise = 1.0};
    kiln_ksampler_params dual = plain, perp = plain;
    dual.dual_cfg_cond2 = &blue, dual.cfg_cond2_negative = 1.0;
    perp.perp_neg_empty = &blue, perp.perp_neg_scale = 0.0;
    const kiln_ksampler_params *guided[2] = {&dual, &perp};
    assert_kiln_ok(kiln_ksampler(model, &plain, &red, &blue, &empty, &want));
    for (int k = 0; k < 2; k++) {
        assert_kiln_ok(kiln_ksampler(model, guided[k], &red, &neg, &empty, &have));
        assert_memory_equal(have.data, want.data, kiln_latent_count(&want) * sizeof(float));
        kiln_latent_free(&have);
    }
    const kiln_conditioning_part part = {.cond = &red, .end_percent = 1.0};
    dual.cfg_cond2_negative = 3.0, dual.positive_parts = &part, dual.positive_part_count = 1;
    assert_int_equal(kiln_ksampler(model, &dual, NULL, &neg, &empty, &have), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "DualCFGGuider with prompts in parts"));
    perp.perp_neg_scale = 101.0;
    assert_int_equal(kiln_ksampler(model, &perp, &red, &neg, &empty, &have), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "neg_scale 101"));
    kiln_latent_free(&want), kiln_latent_free(&empty);
    kiln_conditioning_free(&red), kiln_conditioning_free(&blue), kiln_conditioning_free(&neg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guiders_match_comfyui),
        cmocka_unit_test(guiders_through_sampling),
        cmocka_unit_test(guiders_leave_out_as_comfyui),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
