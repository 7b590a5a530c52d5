/* SelfAttentionGuidance against ComfyUI's node restated on upstream
 * diffusers' UNet (tests/data/sag/sag.safetensors): the degraded prediction
 * from the golden's key weights, then whole KSampler runs of the tiny SD 1.x
 * model with it at cfg 5 and at cfg 1 (where the node runs the negative
 * prompt too); refusals. */
#include "kiln_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "sag.h"
#include "sampler.h"

#define GOLDEN "sag/sag.safetensors"
#define LH 12
#define LW 16

/* The blur map of the first step: the grid of the middle block's 48 tokens,
 * the mask where the key weights exceed 1, the blurred prediction there. */
static void degraded_prediction(void **state)
{
    (void)state;
    int rows, cols;
    assert_true(kiln_sag_grid(48, LH, LW, &rows, &cols));
    assert_int_equal(rows, 6);
    assert_int_equal(cols, 8);
    /* a prime count of tokens on a wide latent: the search falls back to one row */
    assert_true(kiln_sag_grid(7, 4, 28, &rows, &cols) && rows == 1 && cols == 7);
    kiln_st_file *f = golden_open(GOLDEN);
    golden weights = golden_read(f, "cfg5.step0.attn_key_weight"), mask = golden_read(f, "cfg5.step0.mask"),
           x0 = golden_read(f, "cfg5.step0.uncond_x0"), want = golden_read(f, "cfg5.step0.degraded");
    float have[4 * LH * LW], have_mask[LH * LW];
    kiln_sag_degrade(x0.data, 4, LH, LW, weights.data, 6, 8, 2.0f, have, have_mask);
    assert_memory_equal(have_mask, mask.data, sizeof have_mask);
    const double err = kiln_rel_l2(have, want.data, want.count);
    print_message("  degraded: rel L2 %.2g from ComfyUI's (%.2g from the prediction itself)\n", err,
                  kiln_rel_l2(have, x0.data, x0.count));
    assert_true(err <= 1e-6);
    golden *all[] = {&weights, &mask, &x0, &want};
    for (size_t i = 0; i < 4; i++) golden_free(all[i]);
    kiln_st_close(f);
}

/* KSampler euler, normal, 3 steps, seed 42 on a 16x12 latent with
 * SelfAttentionGuidance 0.5 (blur 2), against the restated runs; refusals. */
static void sampling_matches_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    parity_check_sag_run(m, "sag/sag.safetensors", "cfg5", 1e-5);
    parity_check_sag_run(m, "sag/sag.safetensors", "cfg1", 1e-5);
    /* refused by name: a blur of 0 (ComfyUI's would divide by it), beside PerturbedAttentionGuidance */
    kiln_conditioning c;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    kiln_sampling_job job = kiln_test_job("euler", "normal", 3, 5.0f, 42, LH, LW);
    job.sag = &(kiln_sag){0.5, 0.0};
    float *latent = NULL;
    assert_int_equal(kiln_ksample(m, &job, &c, &c, &latent), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "blur_sigma 0"));
    job.sag = &(kiln_sag){0.5, 2.0}, job.pag_scale = 3.0f;
    assert_int_equal(kiln_ksample(m, &job, &c, &c, &latent), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "SelfAttentionGuidance with PerturbedAttentionGuidance"));
    assert_null(latent);
    kiln_conditioning_free(&c);
    kiln_test_close_model(be, m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(degraded_prediction),
        cmocka_unit_test(sampling_matches_comfyui),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
