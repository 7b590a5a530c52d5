/* PerturbedAttentionGuidance: its pass, the UNet with the middle block's
 * self-attention perturbed, against upstream diffusers with ComfyUI's
 * identity attention there (tests/data/pag: the tiny SD 1.x UNet, one block
 * deep, and the tiny SDXL one, two deep); then through kiln_ksampler, one
 * step's x0 against the guidance and the two predictions combined by hand;
 * what it cannot act on or take is refused by name. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "latent.h"
#include "parity.h"

static const parity_unet_patches perturbed = {.perturb_middle = true};

static void unet_perturbed_sd15(void **state)
{
    (void)state;
    const parity_fixture tiny = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = 1e-4};
    parity_check_unet_patched(&tiny, "pag/tiny.safetensors", "perturbed.", &perturbed);
}

static void unet_perturbed_sdxl(void **state)
{
    (void)state;
    const parity_fixture sdxl = {.path = KILN_TEST_DATA "/sdxl/tiny_sdxl.safetensors", .tol = 1e-4};
    parity_check_unet_patched(&sdxl, "pag/sdxl.safetensors", "perturbed.", &perturbed);
}

/* x0 after one step to sigma 0 from the latent's noise at the first sigma
 * (the same noise every run), two pictures in the batch; control NULL for
 * none. */
static kiln_latent one_step(kiln_model *m, const kiln_conditioning *pos, const kiln_conditioning *neg, double cfg,
                            double pag_scale, const kiln_control_apply *control)
{
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(m, 16, 12, 2, &empty));
    const float sigmas[2] = {6.0f, 0.0f};
    const kiln_sigmas s = {(float *)sigmas, 2};
    const kiln_ksampler_params p = {.seed = 11, .cfg = cfg, .sampler_name = "euler", .sigmas = &s,
                                    .pag_scale = pag_scale, .control = control};
    assert_kiln_ok(kiln_ksampler(m, &p, pos, neg, &empty, &out));
    kiln_latent_free(&empty);
    return out;
}

/* With guidance: uncond + cfg (cond - uncond) + scale (cond - perturbed),
 * where the positive prompt's perturbed prediction comes from a run at cfg 1
 * and scale 1 (cond + (cond - perturbed)): the pass takes the positive
 * rows, and its term does not depend on the guidance. With a ControlNet
 * the pass takes the positive rows' residuals (with ControlNetApply's, on
 * the positive alone, the negative prompt's prediction has none). */
static void check_by_hand(kiln_model *m, const kiln_control_apply *control)
{
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &neg));
    const kiln_control_apply *negative_control = control && control->positive_only ? NULL : control;
    kiln_latent cond = one_step(m, &pos, &pos, 1.0, 0.0, control),
                uncond = one_step(m, &neg, &neg, 1.0, 0.0, negative_control),
                once = one_step(m, &pos, &pos, 1.0, 1.0, control), plain = one_step(m, &pos, &neg, 6.0, 0.0, control),
                have = one_step(m, &pos, &neg, 6.0, 2.5, control);
    const size_t n = kiln_latent_count(&cond);
    float *want = malloc(n * sizeof *want);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) {
        const float c = cond.data[i], u = uncond.data[i], perturbed_x0 = 2.0f * c - once.data[i];
        want[i] = u + (c - u) * 6.0f + (c - perturbed_x0) * 2.5f;
    }
    const double err = kiln_rel_l2(have.data, want, n), off = kiln_rel_l2(have.data, plain.data, n);
    print_message("  %s: rel L2 %.2g from the predictions combined by hand (%.2g from the plain guidance)\n",
                  !control ? "alone" : control->positive_only ? "ControlNetApply" : "ControlNetApplyAdvanced", err, off);
    assert_true(err <= 1e-5);
    assert_true(off > 1e-4); /* PAG moved the run: a pass that did nothing would match the hand sum too */
    free(want);
    kiln_latent *all[] = {&cond, &uncond, &once, &plain, &have};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) kiln_latent_free(all[i]);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
}

static void pag_through_sampling(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    check_by_hand(m, NULL);
    kiln_controlnet *cn;
    kiln_image hint;
    assert_kiln_ok(kiln_controlnet_load(m, kiln_test_data("controlnet/tiny_ldm.safetensors"), &cn));
    assert_kiln_ok(kiln_image_load(kiln_test_data("controlnet/hint_37x23.png"), &hint));
    kiln_control_apply control = {.controlnet = cn, .image = &hint, .strength = 0.8, .end_percent = 1.0};
    check_by_hand(m, &control);
    control.positive_only = true;
    check_by_hand(m, &control);
    kiln_image_free(&hint);
    kiln_controlnet_free(cn);
    kiln_test_close_model(be, m);
}

static void pag_refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning c;
    kiln_latent empty, out;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 3, .steps = 1, .cfg = 5.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .pag_scale = 101.0};
    assert_refused_naming(kiln_ksampler(m, &p, &c, &c, &empty, &out), "pag_scale 101");
    p.pag_scale = 3.0, p.apg = true, p.apg_eta = 1.0;
    assert_refused_naming(kiln_ksampler(m, &p, &c, &c, &empty, &out), "APG with PerturbedAttentionGuidance");
    p.apg = false;
    const kiln_conditioning_part area = {.cond = &c, .end_percent = 1.0, .area_w = 8, .area_h = 8};
    p.positive_parts = &area, p.positive_part_count = 1;
    assert_refused_naming(kiln_ksampler(m, &p, NULL, &c, &empty, &out), "areas");
    kiln_latent_free(&empty);
    kiln_conditioning_free(&c);
    kiln_test_close_model(be, m);
    /* a DiT has no middle block */
    const kiln_ksampler_params flux = {.seed = 3, .steps = 1, .cfg = 1.0, .sampler_name = "euler",
                                       .scheduler = "simple", .denoise = 1.0, .pag_scale = 3.0};
    assert_ksampler_refused_on_flux(&flux, "PerturbedAttentionGuidance perturbs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unet_perturbed_sd15),
        cmocka_unit_test(unet_perturbed_sdxl),
        cmocka_unit_test(pag_through_sampling),
        cmocka_unit_test(pag_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
