/* The guidance patches on a model, APG, RescaleCFG and CFGZeroStar
 * (ComfyUI's nodes): their guidance against ComfyUI's code restated
 * (tests/data/guidance), then through the sampling with the tiny SD 1.x
 * model: one step's guided prediction against the two prompts' own
 * predictions guided by hand, with the prompts whole and on areas; prompts
 * in parts acting together are refused. */
#include "kiln_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "guidance.h"
#include "pipeline.h"
#include "rng.h"
#include "sampler.h"

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

/* RescaleCFG early (sigma 14.6, cfg 7.5, multiplier 0.7) and late (0.5, 4,
 * 1), CFGZeroStar (3, 6), both (1.2, 5, 0.7). */
static void guidance_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("guidance/guidance.safetensors");
    golden x = golden_read(f, "x"), cond = golden_read(f, "cond"), uncond = golden_read(f, "uncond");
    float *have = malloc(x.count * sizeof *have);
    assert_non_null(have);
    static const char *const cases[] = {"early", "late", "zero_star", "both"};
    for (int k = 0; k < 4; k++) {
        golden settings = golden_field(f, cases[k], "settings"), want = golden_field(f, cases[k], "denoised");
        const kiln_cfg_patches patches = {.rescale_cfg = settings.data[2], .zero_star = settings.data[3] != 0.0f};
        kiln_guidance g;
        assert_kiln_ok(kiln_guidance_init(&g, &patches, x.count, 4, 6, 5));
        kiln_guide(&g, x.data, cond.data, uncond.data, settings.data[0], settings.data[1], 2, x.count / 2, have);
        kiln_guidance_free(&g);
        const double err = kiln_rel_l2(have, want.data, x.count);
        print_message("  %s: rel L2 %.2g from ComfyUI's\n", cases[k], err);
        assert_true(err <= 1e-6);
        golden_free(&settings), golden_free(&want);
    }
    /* APG over four calls (its running average restarted where the sigma rises), then with the others */
    float *c = malloc(x.count * sizeof *c), *u = malloc(x.count * sizeof *u);
    assert_non_null(c), assert_non_null(u);
    kiln_guidance g;
    const kiln_cfg_patches apg = {.apg = true, .apg_eta = 0.5f, .apg_norm_threshold = 5.0f, .apg_momentum = -0.5f};
    assert_kiln_ok(kiln_guidance_init(&g, &apg, x.count, 4, 6, 5));
    static const float sigmas[4] = {3.0f, 2.0f, 2.5f, 1.0f};
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < x.count; i++)
            c[i] = cond.data[i] * (float)(1 + 0.1 * k) + 0.5f * uncond.data[(i + x.count - (size_t)k) % x.count],
            u[i] = uncond.data[i] * (float)(1 - 0.05 * k);
        kiln_guide(&g, x.data, c, u, sigmas[k], 6.0f, 2, x.count / 2, have);
        char name[32];
        snprintf(name, sizeof name, "apg.%d", k);
        golden want = golden_field(f, name, "denoised");
        const double err = kiln_rel_l2(have, want.data, x.count);
        print_message("  APG call %d at sigma %g: rel L2 %.2g from ComfyUI's\n", k, sigmas[k], err);
        assert_true(err <= 1e-6);
        golden_free(&want);
    }
    kiln_guidance_free(&g);
    const kiln_cfg_patches all = {.rescale_cfg = 0.7f, .zero_star = true, .apg = true, .apg_eta = 0.3f,
                                  .apg_momentum = 0.4f};
    assert_kiln_ok(kiln_guidance_init(&g, &all, x.count, 4, 6, 5));
    kiln_guide(&g, x.data, cond.data, uncond.data, 1.5f, 5.0f, 2, x.count / 2, have);
    golden want = golden_read(f, "apg_all.denoised");
    const double err = kiln_rel_l2(have, want.data, x.count);
    print_message("  APG, RescaleCFG and CFGZeroStar: rel L2 %.2g from ComfyUI's\n", err);
    assert_true(err <= 1e-6);
    golden_free(&want);
    kiln_guidance_free(&g);
    free(c), free(u);
    free(have);
    golden_free(&x), golden_free(&cond), golden_free(&uncond);
    kiln_st_close(f);
}

enum { LH = 12, LW = 16 };

/* TCFG, Mahiro, CFGNorm and Epsilon Scaling (the last two at cfg 1 too,
 * on the conditional prediction alone, as ComfyUI's post-CFG functions run
 * there), and all with CFGZeroStar in kiln's order, against ComfyUI's
 * sampling_function restated (tests/data/guidance/more_guidance.safetensors). */
static void more_guidance_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("guidance/more_guidance.safetensors");
    golden x = golden_read(f, "x"), cond = golden_read(f, "cond"), uncond = golden_read(f, "uncond");
    float *have = malloc(x.count * sizeof *have);
    assert_non_null(have);
    static const struct {
        const char *name;
        kiln_cfg_patches patches; /* the factor or strength from the settings' second number, where it has one */
    } cases[] = {
        {"eps_scaling", {.epsilon_scaling = 1}},  {"eps_scaling_cfg1", {.epsilon_scaling = 1}},
        {"cfg_norm", {.cfg_norm = 1}},            {"cfg_norm_weak", {.cfg_norm = 1}},
        {"cfg_norm_cfg1", {.cfg_norm = 1}},       {"mahiro", {.mahiro = true}},
        {"tcfg", {.tcfg = true}},
        {"all", {.tcfg = true, .zero_star = true, .mahiro = true, .cfg_norm = 0.9f, .epsilon_scaling = 1.01f}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        golden settings = golden_field(f, cases[k].name, "settings"), want = golden_field(f, cases[k].name, "denoised");
        kiln_cfg_patches patches = cases[k].patches;
        if (patches.epsilon_scaling == 1) patches.epsilon_scaling = settings.data[1];
        if (patches.cfg_norm == 1) patches.cfg_norm = settings.data[1];
        const float cfg = settings.data[0];
        kiln_guidance g;
        assert_kiln_ok(kiln_guidance_init(&g, &patches, x.count, 4, 8, 8));
        if (cfg == 1.0f) { /* no unconditional prediction: the guided one is cond */
            memcpy(have, cond.data, x.count * sizeof *have);
            kiln_post_cfg(&g, x.data, have, NULL, cfg, 2, x.count / 2, have);
        } else {
            kiln_guide(&g, x.data, cond.data, uncond.data, 1.0f, cfg, 2, x.count / 2, have);
        }
        kiln_guidance_free(&g);
        const double err = kiln_rel_l2(have, want.data, x.count);
        print_message("  %s: rel L2 %.2g from ComfyUI's\n", cases[k].name, err);
        assert_true(err <= 1e-6);
        golden_free(&settings), golden_free(&want);
    }
    /* out-of-range settings are refused by name */
    kiln_guidance g;
    assert_int_equal(kiln_guidance_init(&g, &(kiln_cfg_patches){.epsilon_scaling = 2.0f}, x.count, 4, 8, 8),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "Epsilon Scaling factor 2"));
    assert_int_equal(kiln_guidance_init(&g, &(kiln_cfg_patches){.cfg_norm = -1.0f}, x.count, 4, 8, 8),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "CFGNorm strength -1"));
    free(have);
    golden_free(&x), golden_free(&cond), golden_free(&uncond);
    kiln_st_close(f);
}

/* LatentApplyOperationCFG: the operation on cond - uncond, uncond put back,
 * then the guidance at cfg 4; at cfg 1 on cond alone; against ComfyUI's
 * code restated (tests/data/latent_ops/operations.safetensors). */
static void latent_operation_cfg_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("latent_ops/operations.safetensors");
    golden cond = golden_read(f, "cond"), uncond = golden_read(f, "uncond");
    const int H = (int)cond.shape[2], W = (int)cond.shape[3];
    float *have = malloc(cond.count * sizeof *have);
    assert_non_null(have);
    static const struct {
        const char *name;
        float cfg;
        kiln_latent_operation op;
    } cases[] = {
        {"cfg.tonemap", 4.0f, {KILN_LATENT_OPERATION_TONEMAP_REINHARD, .multiplier = 1.0}},
        {"cfg.sharpen", 4.0f, {KILN_LATENT_OPERATION_SHARPEN, .sharpen_radius = 3, .sigma = 0.5, .alpha = 1.5}},
        {"cfg1.tonemap", 1.0f, {KILN_LATENT_OPERATION_TONEMAP_REINHARD, .multiplier = 1.0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const kiln_cfg_patches patches = {.has_operation = true, .operation = cases[k].op};
        kiln_guidance g;
        assert_kiln_ok(kiln_guidance_init(&g, &patches, cond.count, 4, H, W));
        if (cases[k].cfg == 1.0f) {
            memcpy(have, cond.data, cond.count * sizeof *have);
            kiln_guide_alone(&g, cond.data, 2, cond.count / 2, have); /* x unused by the operation */
        } else {
            kiln_guide(&g, cond.data, cond.data, uncond.data, 1.0f, cases[k].cfg, 2, cond.count / 2, have);
        }
        kiln_guidance_free(&g);
        golden want = golden_read(f, cases[k].name);
        const double err = kiln_rel_l2(have, want.data, want.count);
        print_message("  %s: rel L2 %.2g from ComfyUI's\n", cases[k].name, err);
        assert_true(err <= 1e-6);
        golden_free(&want);
    }
    free(have);
    golden_free(&cond), golden_free(&uncond);
    kiln_st_close(f);
}

/* One euler step of the tiny model from the noise to 0 (the guided x0
 * prediction, unscaled) with the patches. */
static float *one_step(const kiln_conditioning_part *negative, int nnegative, const kiln_conditioning_part *positive,
                       int npositive, float cfg, kiln_cfg_patches patches, const float *noise, kiln_status *status)
{
    const kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 1,
                                   .cfg = cfg, .denoise = 1.0, .batch = 1, .latent_h = LH, .latent_w = LW,
                                   .noise = noise, .cfg_patches = patches, .parts = {negative, positive},
                                   .nparts = {nnegative, npositive}};
    float *out = NULL;
    kiln_status st = kiln_ksample(model, &job, NULL, NULL, &out);
    if (status) *status = st;
    else assert_kiln_ok(st);
    return out;
}

/* The step's guided prediction is kiln_guide (checked above) of the
 * prompts' own predictions at the step's x, whole and with the positive
 * prompt on a box over all of the latent (the areas' guidance), with
 * RescaleCFG at 0.7, with CFGZeroStar and with APG; at a multiplier of almost 0 it is
 * the plain guidance. Two positive prompts acting together are refused; one
 * after the other they run, but for APG with momentum. */
static void guidance_through_sampling(void **state)
{
    (void)state;
    const int C = kiln_model_latent_channels(model);
    const size_t n = (size_t)C * LH * LW;
    kiln_conditioning red, blue, neg;
    assert_kiln_ok(kiln_text_encode(model, "a red circle", 0, &red));
    assert_kiln_ok(kiln_text_encode(model, "a blue square", 0, &blue));
    assert_kiln_ok(kiln_text_encode(model, "blurry", 0, &neg));
    float *noise = malloc(n * sizeof *noise), *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *want);
    assert_non_null(noise), assert_non_null(x), assert_non_null(want);
    kiln_rng rng;
    kiln_rng_seed(&rng, 12);
    kiln_rng_randn(&rng, noise, n);
    /* the step's x: the noise at the schedule's first sigma, as the sampling starts */
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_of(model, &ms));
    float *sigmas;
    size_t nsigmas;
    assert_kiln_ok(kiln_ksampler_sigmas(&ms, KILN_SCHEDULER_NORMAL, false, 1, 1.0, &sigmas, &nsigmas));
    kiln_sampler_start_x(&ms, sigmas[0], noise, NULL, x, n);
    const kiln_conditioning_part red_all = {.cond = &red, .end_percent = 1.0},
                                 neg_all = {.cond = &neg, .end_percent = 1.0},
                                 red_box = {.cond = &red, .end_percent = 1.0, .area_w = LW, .area_h = LH};
    const kiln_cfg_patches none = {0}, rescaled = {.rescale_cfg = 0.7f}, zero_star = {.zero_star = true},
                           apg = {.apg = true, .apg_eta = 0.2f, .apg_norm_threshold = 3.0f, .apg_momentum = -0.3f},
                           post = {.tcfg = true, .mahiro = true, .cfg_norm = 0.9f, .epsilon_scaling = 1.02f};
    float *cond = one_step(&red_all, 1, &red_all, 1, 1.0f, none, noise, NULL),
          *uncond = one_step(&neg_all, 1, &neg_all, 1, 1.0f, none, noise, NULL);
    /* the predictions leave unscaled (the LATENT's); the guidance takes them as the model gives them */
    float *plain = one_step(&neg_all, 1, &red_all, 1, 5.0f, none, noise, NULL);
    float *const unscaled[3] = {cond, uncond, plain};
    for (int k = 0; k < 3; k++) kiln_vae_latent_in(&model->vae, unscaled[k], n, (size_t)LH * LW, unscaled[k]);
    const kiln_cfg_patches *const patched[4] = {&rescaled, &zero_star, &apg, &post};
    static const char *const names[4] = {"RescaleCFG 0.7", "CFGZeroStar", "APG",
                                         "TCFG, Mahiro, CFGNorm 0.9, Epsilon Scaling 1.02"};
    for (int k = 0; k < 4; k++) {
        kiln_guidance g;
        assert_kiln_ok(kiln_guidance_init(&g, patched[k], n, C, LH, LW));
        kiln_guide(&g, x, cond, uncond, sigmas[0], 5.0f, 1, n, want);
        kiln_guidance_free(&g);
        for (int boxed = 0; boxed < 2; boxed++) {
            float *have = one_step(&neg_all, 1, boxed ? &red_box : &red_all, 1, 5.0f, *patched[k], noise, NULL);
            kiln_vae_latent_in(&model->vae, have, n, (size_t)LH * LW, have);
            const double err = kiln_rel_l2(have, want, n);
            print_message("  %s %s: rel L2 %.2g from the predictions guided by hand (%.2g from the plain "
                          "guidance)\n", names[k],
                          boxed ? "on a box over all of the latent" : "whole", err, kiln_rel_l2(have, plain, n));
            assert_true(err <= 1e-5);
            assert_true(kiln_rel_l2(have, plain, n) > 5e-5);
            free(have);
        }
    }
    float *off = one_step(&neg_all, 1, &red_all, 1, 5.0f, (kiln_cfg_patches){.rescale_cfg = 1e-30f}, noise, NULL);
    kiln_vae_latent_in(&model->vae, off, n, (size_t)LH * LW, off);
    assert_true(kiln_rel_l2(off, plain, n) <= 1e-6);
    const kiln_conditioning_part together[2] = {red_all, {.cond = &blue, .end_percent = 1.0}},
                                 one_then_other[2] = {{.cond = &red, .end_percent = 0.5},
                                                      {.cond = &blue, .start_percent = 0.5, .end_percent = 1.0}};
    kiln_status st;
    assert_null(one_step(&neg_all, 1, together, 2, 5.0f, zero_star, noise, &st));
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "a guidance patch (RescaleCFG, CFGZeroStar, APG, ...) with prompts in parts"));
    float *split = one_step(&neg_all, 1, one_then_other, 2, 5.0f, rescaled, noise, NULL);
    /* APG's running average would go on across the parts in ComfyUI; kiln keeps one a pair */
    assert_null(one_step(&neg_all, 1, one_then_other, 2, 5.0f, apg, noise, &st));
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "APG's momentum with prompts in parts"));
    free(split), free(off), free(plain), free(cond), free(uncond), free(sigmas);
    free(noise), free(x), free(want);
    kiln_conditioning_free(&red), kiln_conditioning_free(&blue), kiln_conditioning_free(&neg);
}

/* FreSca (tests/data/guidance/fresca.safetensors): its filter on even and
 * odd sides and with every frequency low, against torch's FFTs; a KSampler
 * run of the tiny model with the node against ComfyUI's restated. */
static void fresca_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("guidance/fresca.safetensors");
    static const char *const cases[] = {"filter.even", "filter.odd", "filter.wide"};
    for (size_t k = 0; k < 3; k++) {
        golden cond = golden_field(f, cases[k], "cond"), uncond = golden_field(f, cases[k], "uncond");
        golden settings = golden_field(f, cases[k], "settings"), want = golden_field(f, cases[k], "out");
        float *have = malloc(want.count * sizeof *have);
        const int images = (int)(cond.shape[0] * cond.shape[1]), height = (int)cond.shape[2];
        const int width = (int)cond.shape[3];
        double *work = malloc(KILN_FRESCA_WORK(height, width) * sizeof *work);
        kiln_fresca_filter(cond.data, uncond.data, settings.data[0], settings.data[1], (int)settings.data[2], images,
                           height, width, work, have);
        assert_rel_l2_le(have, want.data, want.count, 1e-6);
        free(work);
        free(have);
        golden *all[] = {&cond, &uncond, &settings, &want};
        for (size_t i = 0; i < 4; i++) golden_free(all[i]);
    }
    golden gp = golden_read(f, "run.positive"), gn = golden_read(f, "run.negative");
    golden settings = golden_read(f, "run.settings"), want = golden_read(f, "run.latent_out");
    const kiln_conditioning pos = {gp.data, 77, 32, NULL, 0}, neg = {gn.data, 77, 32, NULL, 0};
    kiln_sampling_job job = kiln_test_job("euler", "normal", 6, 5.0f, 42, 12, 10);
    job.cfg_patches = (kiln_cfg_patches){.fresca = true, .fresca_low = settings.data[0],
                                         .fresca_high = settings.data[1],
                                         .fresca_cutoff = (int)settings.data[2]};
    float *latent = NULL;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-5);
    free(latent);
    job.cfg_patches.fresca_cutoff = 0;
    assert_int_equal(kiln_ksample(model, &job, &pos, &neg, &latent), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "FreSca"));
    golden *all[] = {&gp, &gn, &settings, &want};
    for (size_t i = 0; i < 4; i++) golden_free(all[i]);
    kiln_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guidance_matches_comfyui),
        cmocka_unit_test(more_guidance_matches_comfyui),
        cmocka_unit_test(latent_operation_cfg_matches_comfyui),
        cmocka_unit_test(guidance_through_sampling),
        cmocka_unit_test(fresca_matches_comfyui),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
