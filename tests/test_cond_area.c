/* Prompts on areas (ConditioningSetArea, ConditioningSetAreaPercentage,
 * ConditioningSetAreaStrength, ConditioningSetMask's "mask bounds"): the
 * runs kiln makes of a side's parts and each run's weights, against
 * ComfyUI's sampling code restated (tests/data/areas/make_areas_data.py,
 * whose cases these parts spell out again): the areas resolved, the
 * opposite areas ComfyUI adds, the boxes cut to the latent, the fades
 * inside their edges. Then the sampling on them with the tiny SD 1.x
 * model: one step's guided prediction against the prompts' own
 * predictions on their boxes, weighted and guided by hand. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "cond_area.h"
#include "golden.h"
#include "rng.h"

#define H 12
#define W 16

static kiln_st_file *areas_file;
static kiln_backend *backend;
static kiln_model *model;

static int setup(void **state)
{
    (void)state;
    areas_file = golden_open("areas/areas.safetensors");
    return kiln_test_open_tiny_sd15(&backend, &model);
}

static int teardown(void **state)
{
    (void)state;
    kiln_test_close_model(backend, model);
    kiln_st_close(areas_file);
    return 0;
}

/* The case's plan against its golden runs, run by run. */
static void check_plan(const char *name, const kiln_conditioning_part *negative, int nnegative,
                       const kiln_conditioning_part *positive, int npositive)
{
    const kiln_conditioning_part *parts[2] = {negative, positive};
    const int nparts[2] = {nnegative, npositive};
    assert_true(cond_parts_have_areas(parts, nparts));
    area_plan plan;
    assert_kiln_ok(area_plan_make(parts, nparts, H, W, &plan));
    golden runs = golden_field(areas_file, name, "runs");
    assert_int_equal(plan.nruns, (int)runs.shape[0]);
    for (int i = 0; i < plan.nruns; i++) {
        const area_run *r = &plan.runs[i];
        const int have[8] = {r->side, r->text, r->source_side, r->source, r->y, r->x, r->h, r->w};
        for (int k = 0; k < 8; k++) assert_int_equal(have[k], (int)runs.data[i * 8 + k]);
        char field[32];
        snprintf(field, sizeof field, "mult.%d", i);
        golden mult = golden_field(areas_file, name, field);
        assert_int_equal(mult.count, (size_t)r->h * r->w);
        assert_memory_equal(r->mult, mult.data, mult.count * sizeof(float));
        golden_free(&mult);
    }
    print_message("  %s: %d runs as ComfyUI's\n", name, plan.nruns);
    golden_free(&runs);
    area_plan_free(&plan);
}

static const kiln_conditioning prompt = {0};

/* A prompt everywhere, one on a box at strength 1.5, one on a box in
 * fractions (at the latent's bottom right: faded at its top and left only);
 * the negative side gets both boxes. */
static void areas_and_fractions(void **state)
{
    (void)state;
    const kiln_conditioning_part negative[] = {{.cond = &prompt, .end_percent = 1.0}};
    const kiln_conditioning_part positive[] = {
        {.cond = &prompt, .end_percent = 1.0},
        {.cond = &prompt, .end_percent = 1.0, .area_x = 2, .area_y = 1, .area_w = 8, .area_h = 6, .area_strength = 1.5},
        {.cond = &prompt, .end_percent = 1.0, .fraction_x = 0.5, .fraction_y = 0.25, .fraction_w = 0.5,
         .fraction_h = 0.75}};
    check_plan("mixed", negative, 1, positive, 3);
}

/* A mask's bounds (at least 8 a side) beside a prompt at strength 2; the
 * negative side's areas given back to the positive one with the prompt
 * that holds them, the mask's box to the negative with its prompt
 * everywhere (no negative box holds it). */
static void mask_bounds_and_opposites(void **state)
{
    (void)state;
    golden bounds = golden_field(areas_file, "nested", "mask.1.1");
    const kiln_conditioning_part negative[] = {
        {.cond = &prompt, .end_percent = 1.0, .area_w = 16, .area_h = 8},
        {.cond = &prompt, .end_percent = 1.0},
        {.cond = &prompt, .end_percent = 1.0, .area_x = 4, .area_y = 2, .area_w = 12, .area_h = 9}};
    const kiln_conditioning_part positive[] = {
        {.cond = &prompt, .end_percent = 1.0, .area_strength = 2.0},
        {.cond = &prompt, .end_percent = 1.0, .mask = bounds.data, .mask_w = W, .mask_h = H, .strength = 0.8,
         .mask_bounds = true}};
    check_plan("nested", negative, 3, positive, 2);
    golden_free(&bounds);
}

/* A box past the latent's right edge (cut), fractions at half a pixel
 * (rounded to even), a box with a mask (weighted by it, not faded). */
static void edges_rounding_and_masked_boxes(void **state)
{
    (void)state;
    golden soft = golden_field(areas_file, "edges", "mask.1.2");
    const kiln_conditioning_part negative[] = {{.cond = &prompt, .end_percent = 1.0},
                                               {.cond = &prompt, .start_percent = 0.2, .end_percent = 0.8}};
    const kiln_conditioning_part positive[] = {
        {.cond = &prompt, .end_percent = 1.0, .area_x = 6, .area_y = 2, .area_w = 16, .area_h = 10},
        {.cond = &prompt, .start_percent = 0.1, .end_percent = 0.9, .fraction_x = 0.03125, .fraction_y = 0.125,
         .fraction_w = 0.40625, .fraction_h = 0.375},
        {.cond = &prompt, .end_percent = 1.0, .area_x = 1, .area_y = 5, .area_w = 6, .area_h = 6, .mask = soft.data,
         .mask_w = W, .mask_h = H, .strength = 0.7, .area_strength = 1.25}};
    check_plan("edges", negative, 2, positive, 3);
    golden_free(&soft);
}

/* Boxes outside the latent, bad sizes and fractions, and mask bounds
 * without a mask are refused, naming the part. */
static void bad_areas_refused(void **state)
{
    (void)state;
    const kiln_conditioning_part whole = {.cond = &prompt, .end_percent = 1.0};
    const kiln_conditioning_part bad[] = {
        {.cond = &prompt, .end_percent = 1.0, .area_x = 16, .area_w = 4, .area_h = 4},
        {.cond = &prompt, .end_percent = 1.0, .area_x = -1, .area_w = 4, .area_h = 4},
        {.cond = &prompt, .end_percent = 1.0, .area_w = 4, .area_h = 0},
        {.cond = &prompt, .end_percent = 1.0, .fraction_w = 1.5, .fraction_h = 0.5},
        {.cond = &prompt, .end_percent = 1.0, .mask_bounds = true},
        {.cond = &prompt, .end_percent = 1.0, .area_w = 4, .area_h = 4, .area_strength = -1.0}};
    const char *const why[] = {"outside the 16x12 latent", "a place at or past 0", "a size", "fractions: 0 to 1",
                               "mask bounds without a mask", "area strength -1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const kiln_conditioning_part positive[2] = {whole, bad[i]};
        const kiln_conditioning_part *parts[2] = {&whole, positive};
        const int nparts[2] = {1, 2};
        area_plan plan;
        assert_int_equal(area_plan_make(parts, nparts, H, W, &plan), KILN_ERR_INVALID_ARG);
        assert_non_null(strstr(kiln_last_error(), "positive prompt's part 2"));
        assert_non_null(strstr(kiln_last_error(), why[i]));
    }
}

/* One euler step of a tiny model from the noise (h x w) to 0: the guided
 * x0 prediction, unscaled. */
static float *one_step(const kiln_model *mdl, const kiln_conditioning_part *negative, int nnegative,
                       const kiln_conditioning_part *positive, int npositive, float cfg, int h, int w,
                       const float *noise)
{
    const kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 1,
                                   .cfg = cfg, .denoise = 1.0, .batch = 1, .latent_h = h, .latent_w = w,
                                   .noise = noise, .parts = {negative, positive}, .nparts = {nnegative, npositive}};
    float *out = NULL;
    assert_kiln_ok(kiln_ksample(mdl, &job, NULL, NULL, &out));
    return out;
}

/* A prompt alone at guidance 1 on the box (y, x, h, w) of the noise, the
 * box wrapped round (circular padding) to ph x pw and the prediction cut
 * back to the box. */
static float *alone_on_box(const kiln_model *mdl, const kiln_conditioning *cond, const float *noise, int C, int LH,
                           int LW, int y, int x, int h, int w, int ph, int pw)
{
    float *crop = malloc((size_t)C * ph * pw * sizeof *crop), *box = malloc((size_t)C * h * w * sizeof *box);
    assert_non_null(crop), assert_non_null(box);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < ph; i++)
            for (int j = 0; j < pw; j++)
                crop[((size_t)c * ph + i) * pw + j] = noise[((size_t)c * LH + y + i % h) * LW + x + j % w];
    const kiln_conditioning_part part = {.cond = cond, .end_percent = 1.0};
    float *pred = one_step(mdl, &part, 1, &part, 1, 1.0f, ph, pw, crop);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < h; i++) memcpy(box + ((size_t)c * h + i) * w, pred + ((size_t)c * ph + i) * pw, w * sizeof *box);
    free(crop), free(pred);
    return box;
}

/* A prompt on a box beside one everywhere: each side's prediction is its
 * prompts' own (the box's on that crop of the latent) averaged by the
 * weights there (1, and the box's faded 1.5), the negative side's prompt
 * sampled on the box too; the guided one is uncond + (cond - uncond) * 3.
 * A box over all of the latent at any strength is the plain run. */
static void areas_sample_their_boxes(void **state)
{
    (void)state;
    enum { LH = 12, LW = 16, BY = 2, BX = 3, BH = 8, BW = 10 };
    const int C = kiln_model_latent_channels(model);
    const size_t n = (size_t)C * LH * LW;
    kiln_conditioning red, blue, neg;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &red));
    assert_kiln_ok(kiln_text_encode(model, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_text_encode(model, "blurry", 0, &neg));
    float *noise = malloc(n * sizeof *noise), *want = malloc(n * sizeof *want);
    assert_non_null(noise), assert_non_null(want);
    kiln_rng rng;
    kiln_rng_seed(&rng, 11);
    kiln_rng_randn(&rng, noise, n);
    const kiln_conditioning_part negative = {.cond = &neg, .end_percent = 1.0};
    const kiln_conditioning_part positive[2] = {
        {.cond = &red, .end_percent = 1.0},
        {.cond = &blue, .end_percent = 1.0, .area_x = BX, .area_y = BY, .area_w = BW, .area_h = BH,
         .area_strength = 1.5}};
    float *have = one_step(model, &negative, 1, positive, 2, 3.0f, LH, LW, noise);
    /* the box's weights, as the plan test checks them */
    const kiln_conditioning_part *parts[2] = {&negative, positive};
    area_plan plan;
    assert_kiln_ok(area_plan_make(parts, (int[2]){1, 2}, LH, LW, &plan));
    assert_int_equal(plan.nruns, 4);
    const float *mult = plan.runs[3].mult;
    const kiln_conditioning_part red_alone = {.cond = &red, .end_percent = 1.0},
                                 neg_alone = {.cond = &neg, .end_percent = 1.0};
    float *red_all = one_step(model, &red_alone, 1, &red_alone, 1, 1.0f, LH, LW, noise),
          *neg_all = one_step(model, &neg_alone, 1, &neg_alone, 1, 1.0f, LH, LW, noise),
          *blue_box = alone_on_box(model, &blue, noise, C, LH, LW, BY, BX, BH, BW, BH, BW),
          *neg_box = alone_on_box(model, &neg, noise, C, LH, LW, BY, BX, BH, BW, BH, BW);
    for (size_t i = 0; i < n; i++) {
        const int c = (int)(i / (LH * LW)), y = (int)(i / LW % LH), x = (int)(i % LW);
        float cond = red_all[i], uncond = neg_all[i];
        if (y >= BY && y < BY + BH && x >= BX && x < BX + BW) {
            const size_t at = ((size_t)c * BH + y - BY) * BW + x - BX;
            const float m = mult[(size_t)(y - BY) * BW + x - BX];
            cond = (cond + blue_box[at] * m) / (1.0f + m);
            uncond = (uncond + neg_box[at] * m) / (1.0f + m);
        }
        want[i] = uncond + (cond - uncond) * 3.0f;
    }
    const double err = kiln_rel_l2(have, want, n);
    print_message("  a box beside a prompt everywhere: rel L2 %.2g from the prompts alone weighted (%.2g from the "
                  "prompt everywhere alone)\n", err, kiln_rel_l2(have, red_all, n));
    assert_true(err <= 1e-5);
    assert_true(kiln_rel_l2(have, red_all, n) > 1e-2);
    /* a box over all of the latent at strength 2 against no box */
    const kiln_conditioning_part whole_box = {.cond = &red, .end_percent = 1.0, .area_w = LW, .area_h = LH,
                                              .area_strength = 2.0};
    float *boxed = one_step(model, &negative, 1, &whole_box, 1, 3.0f, LH, LW, noise),
          *plain = one_step(model, &negative, 1, &red_alone, 1, 3.0f, LH, LW, noise);
    const double same = kiln_rel_l2(boxed, plain, n);
    print_message("  a box over all of the latent: rel L2 %.2g from the plain run\n", same);
    assert_true(same <= 1e-6);
    free(boxed), free(plain);
    free(red_all), free(neg_all), free(blue_box), free(neg_box), free(have), free(noise), free(want);
    area_plan_free(&plan);
    kiln_conditioning_free(&red), kiln_conditioning_free(&blue), kiln_conditioning_free(&neg);
}

/* On FLUX.1 (the tiny one): a box over all of the latent is the plain run,
 * at cfg 1 (the negative prompt not run) and at cfg 2 (its rows with their
 * own FluxGuidance); a box of odd latent pixels is sampled wrapped round to
 * whole 2x2 patches (ComfyUI's circular pad_to_patch_size), its prediction
 * cut back to the box. */
static void areas_on_flux(void **state)
{
    (void)state;
    kiln_model *flux;
    assert_kiln_ok(kiln_checkpoint_load(backend, kiln_test_data("flux/tiny"), NULL, 0, &flux));
    kiln_conditioning red, neg;
    assert_kiln_ok(kiln_text_encode(flux, "a red circle", 0, &red));
    assert_kiln_ok(kiln_text_encode(flux, "", 0, &neg));
    kiln_latent empty, plain, boxed;
    assert_kiln_ok(kiln_empty_latent(flux, 32, 32, 1, &empty));
    const kiln_conditioning_part negative = {.cond = &neg, .end_percent = 1.0},
                                 whole = {.cond = &red, .end_percent = 1.0, .area_w = empty.width,
                                          .area_h = empty.height, .area_strength = 1.5};
    for (int k = 0; k < 2; k++) {
        kiln_ksampler_params p = {.seed = 3, .steps = 2, .cfg = k ? 2.0 : 1.0, .sampler_name = "euler",
                                  .scheduler = "simple", .denoise = 1.0, .flux_guidance = 2.5,
                                  .negative_flux_guidance = 4.0};
        assert_kiln_ok(kiln_ksampler(flux, &p, &red, &neg, &empty, &plain));
        p.positive_parts = &whole, p.positive_part_count = 1, p.negative_parts = &negative;
        p.negative_part_count = 1;
        assert_kiln_ok(kiln_ksampler(flux, &p, NULL, NULL, &empty, &boxed));
        const size_t n = (size_t)plain.batch * plain.channels * plain.height * plain.width;
        const double err = kiln_rel_l2(boxed.data, plain.data, n);
        print_message("  FLUX.1 at cfg %g: a box over all of the latent %.2g from the plain run\n", p.cfg, err);
        assert_true(err <= 1e-5);
        kiln_latent_free(&plain), kiln_latent_free(&boxed);
    }
    /* a box of 5x3 latent pixels: sampled on it wrapped round to 6x4, as ComfyUI pads it to whole patches */
    enum { BY = 2, BX = 3, BH = 3, BW = 5 };
    const int C = empty.channels, LH = empty.height, LW = empty.width;
    const size_t n = (size_t)C * LH * LW;
    float *noise = malloc(n * sizeof *noise), *want = malloc(n * sizeof *want);
    assert_non_null(noise), assert_non_null(want);
    kiln_rng rng;
    kiln_rng_seed(&rng, 21);
    kiln_rng_randn(&rng, noise, n);
    kiln_conditioning blue;
    assert_kiln_ok(kiln_text_encode(flux, "a blue square", 0, &blue));
    const kiln_conditioning_part red_all = {.cond = &red, .end_percent = 1.0};
    const kiln_conditioning_part odd[2] = {red_all, {.cond = &blue, .end_percent = 1.0, .area_x = BX, .area_y = BY,
                                                     .area_w = BW, .area_h = BH}};
    float *have = one_step(flux, &negative, 1, odd, 2, 1.0f, LH, LW, noise),
          *red_pred = one_step(flux, &red_all, 1, &red_all, 1, 1.0f, LH, LW, noise),
          *blue_box = alone_on_box(flux, &blue, noise, C, LH, LW, BY, BX, BH, BW, BH + 1, BW + 1);
    for (size_t i = 0; i < n; i++) { /* weight 1 each: the box too small to fade */
        const int c = (int)(i / (size_t)(LH * LW)), y = (int)(i / LW % LH), x = (int)(i % LW);
        const bool in = y >= BY && y < BY + BH && x >= BX && x < BX + BW;
        want[i] = in ? (red_pred[i] + blue_box[((size_t)c * BH + y - BY) * BW + x - BX]) / 2.0f : red_pred[i];
    }
    const double err = kiln_rel_l2(have, want, n);
    print_message("  FLUX.1, a 5x3 box wrapped round to 6x4: rel L2 %.2g from the prompts alone averaged (%.2g from "
                  "the whole prompt's)\n", err, kiln_rel_l2(have, red_pred, n));
    assert_true(err <= 1e-5);
    assert_true(kiln_rel_l2(have, red_pred, n) > 1e-3);
    free(noise), free(want), free(have), free(red_pred), free(blue_box);
    kiln_conditioning_free(&blue);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&red), kiln_conditioning_free(&neg);
    kiln_model_free(flux);
}

/* What the area runs do not carry is refused, naming it. */
static void areas_refuse_what_they_cannot_carry(void **state)
{
    (void)state;
    kiln_conditioning cond;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &cond));
    const kiln_conditioning_part whole = {.cond = &cond, .end_percent = 1.0},
                                 box = {.cond = &cond, .end_percent = 1.0, .area_w = 4, .area_h = 4};
    const kiln_control control = {0};
    const kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 1,
                                   .cfg = 3.0f, .denoise = 1.0, .batch = 1, .latent_h = 8, .latent_w = 8,
                                   .controls = &control, .ncontrols = 1, .parts = {&whole, &box}, .nparts = {1, 1}};
    float *out = NULL;
    assert_int_equal(kiln_ksample(model, &job, NULL, NULL, &out), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "ConditioningSetArea"));
    assert_non_null(strstr(kiln_last_error(), "with ControlNet"));
    assert_null(out);
    kiln_conditioning_free(&cond);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(areas_and_fractions),
        cmocka_unit_test(mask_bounds_and_opposites),
        cmocka_unit_test(edges_rounding_and_masked_boxes),
        cmocka_unit_test(bad_areas_refused),
        cmocka_unit_test(areas_sample_their_boxes),
        cmocka_unit_test(areas_on_flux),
        cmocka_unit_test(areas_refuse_what_they_cannot_carry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
