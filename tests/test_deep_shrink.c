/* PatchModelAddDownscale (Kohya Deep Shrink) against ComfyUI's node
 * restated on upstream diffusers' UNet (tests/data/deep_shrink): whole
 * KSampler runs of the tiny SD 1.x model shrunk after the first downsampler's
 * skip for the first part of the schedule, before its skip over the whole
 * schedule by a factor that does not divide the latent, after the first
 * resblock, with bislerp both ways, with FreeU_V2 after it (the resize first), and with a
 * ControlNet and a T2I-Adapter whose residuals meeting the shrunk skips,
 * blocks and middle are left out; with SelfAttentionGuidance, its map at
 * the shrunk middle block; refusals. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "parity.h"
#include "pipeline.h"
#include "sampler.h"

static void runs_match_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    parity_check_deep_shrink_run(m, "after_skip", 1e-5);
    parity_check_deep_shrink_run(m, "before_skip", 1e-5);
    parity_check_deep_shrink_run(m, "block1", 1e-5);
    parity_check_deep_shrink_run(m, "bislerp", 1e-5);
    parity_check_deep_shrink_run(m, "freeu_v2", 1e-5);
    parity_check_deep_shrink_run(m, "controlnet", 1e-5);
    parity_check_deep_shrink_run(m, "t2i", 1e-5);
    kiln_test_close_model(be, m);
}

/* With SelfAttentionGuidance (tests/data/sag/sag_deep_shrink.safetensors,
 * make_sag_deep_shrink_data.py): in the shrunk steps the middle block's map
 * is the shrunk path's 3x4 grid and SAG's pass is shrunk too, after them
 * 6x8 unshrunk. */
static void with_sag_matches_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    parity_check_sag_run(m, "sag/sag_deep_shrink.safetensors", "shrunk", 1e-5);
    kiln_test_close_model(be, m);
}

static void refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning c;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    kiln_deep_shrink shrink = {3, 2.0, 0.0, 0.35, true, "lanczos", NULL};
    kiln_sampling_job job = kiln_test_job("euler", "normal", 2, 5.0f, 1, 8, 8);
    job.deep_shrink = &shrink;
    float *latent = NULL;
    assert_refused_naming(kiln_ksample(m, &job, &c, &c, &latent), "downscale_method 'lanczos'");
    shrink.downscale_method = NULL, shrink.downscale_factor = 10.0;
    assert_refused_naming(kiln_ksample(m, &job, &c, &c, &latent), "downscale_factor 10");
    assert_null(latent);
    kiln_conditioning_free(&c);
    kiln_test_close_model(be, m);
    const kiln_ksampler_params on_flux = {.seed = 3, .steps = 1, .cfg = 1.0, .sampler_name = "euler",
                                          .scheduler = "simple", .denoise = 1.0,
                                          .deep_shrink = &(kiln_deep_shrink){3, 2.0, 0, 0.35, true, NULL, NULL}};
    assert_ksampler_refused_on_flux(&on_flux, "PatchModelAddDownscale resizes a UNet's blocks");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_match_comfyui),
        cmocka_unit_test(with_sag_matches_comfyui),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
