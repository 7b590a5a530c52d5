/* HyperTile against ComfyUI's node restated on upstream diffusers' UNet
 * (tests/data/hypertile): the tiles each self-attention takes, call by call,
 * drawn from torch's generator after the noise; whole KSampler runs of the
 * tiny SD 1.x model on a latent that is not square (the node's swapped
 * sides), with the node's fixed choice, with drawn choices reaching the
 * middle block, with the minimum scaled by depth, and with
 * PerturbedAttentionGuidance's pass drawing after each step's call;
 * refusals. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "hypertile.h"
#include "parity.h"
#include "pipeline.h"
#include "sampler.h"

/* The tiny UNet's six transformers in run order on a 12 x 16 latent: input
 * blocks 1 and 2 (12 x 16), the middle block (6 x 8), output blocks 9-11. */
static const int64_t transformer_tokens[6] = {192, 192, 48, 192, 192, 192};

static void tiles_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("hypertile/hypertile.safetensors");
    static const char *const runs[] = {"defaults", "random", "scaled", "pag"};
    for (size_t r = 0; r < 4; r++) {
        const kiln_hypertile s = parity_hypertile_settings(f, runs[r]);
        assert_kiln_ok(kiln_hypertile_check(&s));
        golden want = golden_field(f, runs[r], "tiles"), noise = golden_read(f, "noise");
        kiln_rng rng;
        kiln_rng_seed(&rng, 42);
        float *drawn = malloc(noise.count * sizeof *drawn);
        assert_non_null(drawn);
        kiln_rng_randn(&rng, drawn, noise.count);
        assert_memory_equal(drawn, noise.data, noise.count * sizeof *drawn);
        /* pag: each step's call, then its PerturbedAttentionGuidance pass */
        for (int call = 0; call < (int)want.shape[0]; call++)
            for (int k = 0; k < 6; k++) {
                const kiln_query_tiles t = kiln_hypertile_tiles(&s, 12, 16, transformer_tokens[k], &rng);
                const float *nh_nw = want.data + (call * 6 + k) * 2;
                assert_int_equal(t.nh, (int)nh_nw[0]);
                assert_int_equal(t.nw, (int)nh_nw[1]);
                if (t.nh * t.nw > 1) { /* the grid is read with the sides swapped: 16 rows of 12 on level 0 */
                    assert_int_equal(t.h, transformer_tokens[k] == 192 ? 16 : 8);
                    assert_int_equal(t.w, transformer_tokens[k] == 192 ? 12 : 6);
                }
            }
        free(drawn);
        golden_free(&want);
        golden_free(&noise);
    }
    kiln_st_close(f);
}

static void runs_match_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    parity_check_hypertile_run(m, "defaults", 1e-5);
    parity_check_hypertile_run(m, "random", 1e-5);
    parity_check_hypertile_run(m, "scaled", 1e-5);
    parity_check_hypertile_run(m, "pag", 1e-5);
    kiln_test_close_model(be, m);
}

/* One call of the tiny SDXL UNet, whose transformers are two blocks deep:
 * each block draws its own tiles, on level 1 and in the middle block. */
static void sdxl_call_matches_comfyui(void **state)
{
    (void)state;
    parity_check_hypertile_sdxl(&(parity_fixture){.path = KILN_TEST_DATA "/sdxl/tiny_sdxl.safetensors", .tol = 1e-5});
}

static float *sampled(kiln_model *m, const kiln_conditioning *c, int side, const kiln_hypertile *tiles,
                      const kiln_sag *sag, float pag_scale)
{
    kiln_sampling_job job = kiln_test_job("euler", "normal", 2, 5.0f, 5, side, side);
    job.hypertile = tiles;
    job.sag = sag;
    job.pag_scale = pag_scale;
    float *latent = NULL;
    kiln_status st = kiln_ksample(m, &job, c, c, &latent);
    return st == KILN_OK ? latent : NULL;
}

/* A tile as large as the picture leaves every attention whole: the plain
 * run to the bit. */
static void one_tile_is_the_plain_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning c;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    const kiln_hypertile whole = {2048, 4, 3, false}, small = {32, 2, 0, false};
    float *plain = sampled(m, &c, 8, NULL, NULL, 0.0), *untiled = sampled(m, &c, 8, &whole, NULL, 0.0),
          *tiled = sampled(m, &c, 8, &small, NULL, 0.0);
    assert_non_null(plain), assert_non_null(untiled), assert_non_null(tiled);
    const size_t n = 4 * 8 * 8;
    assert_memory_equal(untiled, plain, n * sizeof *plain);
    assert_true(kiln_rel_l2(tiled, plain, n) > 1e-3);
    free(plain), free(untiled), free(tiled);
    kiln_conditioning_free(&c);
    kiln_test_close_model(be, m);
}

static void refusals(void **state)
{
    (void)state;
    const kiln_hypertile bad[] = {{0, 2, 0, false}, {2049, 2, 0, false}, {256, 0, 0, false}, {256, 129, 0, false},
                                  {256, 2, -1, false}, {256, 2, 11, false}};
    const char *says[] = {"tile_size 0", "tile_size 2049", "swap_size 0", "swap_size 129", "max_depth -1",
                          "max_depth 11"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_refused_naming(kiln_hypertile_check(&bad[i]), says[i]);

    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning c;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    /* SelfAttentionGuidance maps the middle block's attention: refused where HyperTile tiles it (16 x 16: the
       middle's 8 x 8 at depth 1, tiles of at least 4 latent pixels: 2 x 2 tiles), fine where it does not */
    const kiln_hypertile middle = {32, 2, 1, false}, top = {32, 2, 0, false};
    const kiln_sag sag = {0.5, 2.0};
    assert_null(sampled(m, &c, 16, &middle, &sag, 0.0));
    assert_non_null(strstr(kiln_last_error(), "SelfAttentionGuidance with HyperTile on the middle block"));
    /* PerturbedAttentionGuidance's pass there fails in ComfyUI */
    assert_null(sampled(m, &c, 16, &middle, NULL, 2.0));
    assert_non_null(strstr(kiln_last_error(), "PerturbedAttentionGuidance with HyperTile on the middle block"));
    float *latent = sampled(m, &c, 16, &top, &sag, 0.0);
    assert_non_null(latent);
    free(latent);
    kiln_conditioning_free(&c);
    kiln_test_close_model(be, m);
    const kiln_ksampler_params on_flux = {.seed = 3, .steps = 1, .cfg = 1.0, .sampler_name = "euler",
                                          .scheduler = "simple", .denoise = 1.0,
                                          .hypertile = &(kiln_hypertile){256, 2, 0, false}};
    assert_ksampler_refused_on_flux(&on_flux, "HyperTile tiles a UNet's self-attention");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiles_match_comfyui),
        cmocka_unit_test(runs_match_comfyui),
        cmocka_unit_test(sdxl_call_matches_comfyui),
        cmocka_unit_test(one_tile_is_the_plain_run),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
