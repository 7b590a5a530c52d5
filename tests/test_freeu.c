/* FreeU and FreeU_V2 (kiln_freeu) on the tiny SD 1.x UNet against upstream
 * diffusers with ComfyUI's patch restated (tests/data/freeu/tiny), then
 * through kiln_ksampler: FreeU at 1, 1, 1, 1 is no FreeU to the bit, and
 * what FreeU cannot act on or take is refused by name. The ops themselves
 * are in the op suites; the full-size UNet, where both of FreeU's widths
 * occur, is in test_full_parity. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "latent.h"
#include "parity.h"

#define GOLDEN "freeu/tiny.safetensors"

/* The model's and the goldens' sums in another order: 1e-4, as the other
 * f32 parity tests. */
static const parity_fixture tiny = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = 1e-4};

static const kiln_freeu freeu_defaults = {1.1, 1.2, 0.9, 0.2, false};
static const kiln_freeu freeu_v2_defaults = {1.3, 1.4, 0.9, 0.2, true};

/* The goldens tell FreeU from no FreeU: a UNet that left it out would fail
 * the comparisons below. */
static void goldens_differ_from_plain(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    golden plain = golden_read(f, "plain.noise_pred");
    static const char *const names[2] = {"freeu.noise_pred", "freeu_v2.noise_pred"};
    for (int k = 0; k < 2; k++) {
        golden patched = golden_read(f, names[k]);
        assert_int_equal(patched.count, plain.count);
        const double off = kiln_rel_l2(patched.data, plain.data, plain.count);
        print_message("  %s: rel L2 %.3g from no FreeU\n", names[k], off);
        assert_true(off > 1e-3);
        golden_free(&patched);
    }
    golden_free(&plain);
    kiln_st_close(f);
}

static void unet_plain(void **state)
{
    (void)state;
    parity_check_unet_output(&tiny, GOLDEN, "plain.");
}

static void unet_freeu(void **state)
{
    (void)state;
    parity_check_unet_patched(&tiny, GOLDEN, "freeu.", &(parity_unet_patches){.freeu = &freeu_defaults});
}

static void unet_freeu_v2(void **state)
{
    (void)state;
    parity_check_unet_patched(&tiny, GOLDEN, "freeu_v2.", &(parity_unet_patches){.freeu = &freeu_v2_defaults});
}

/* kiln_ksampler: FreeU of ones scales nothing and filters nothing, so the
 * run is the plain one to the bit; FreeU_V2 moves it; out-of-range values
 * are refused naming the value. */
static void ksampler_with_freeu(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning pos, neg;
    kiln_latent empty, plain, have;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &neg));
    assert_kiln_ok(kiln_empty_latent(m, 32, 24, 1, &empty));
    kiln_ksampler_params p = {.seed = 3, .steps = 3, .cfg = 5.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &plain));
    const size_t n = kiln_latent_count(&plain);
    const kiln_freeu ones = {1.0, 1.0, 1.0, 1.0, false};
    p.freeu = &ones;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &have));
    assert_memory_equal(have.data, plain.data, n * sizeof(float));
    kiln_latent_free(&have);
    p.freeu = &freeu_v2_defaults;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &have));
    const double off = kiln_rel_l2(have.data, plain.data, n);
    print_message("  FreeU_V2 moves the latent by rel L2 %.3g\n", off);
    assert_true(off > 1e-3);
    kiln_latent_free(&have);
    const kiln_freeu too_much = {1.1, 1.2, 11.0, 0.2, false};
    p.freeu = &too_much;
    assert_refused_naming(kiln_ksampler(m, &p, &pos, &neg, &empty, &have), "s1 11");
    kiln_latent_free(&plain), kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_test_close_model(be, m);
}

/* A DiT has no decoder blocks nor skips to patch. */
static void freeu_refused_on_a_dit(void **state)
{
    (void)state;
    const kiln_ksampler_params p = {.seed = 3, .steps = 1, .cfg = 1.0, .sampler_name = "euler",
                                    .scheduler = "simple", .denoise = 1.0, .freeu = &freeu_defaults};
    assert_ksampler_refused_on_flux(&p, "FreeU scales a UNet's");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(goldens_differ_from_plain),
        cmocka_unit_test(unet_plain),
        cmocka_unit_test(unet_freeu),
        cmocka_unit_test(unet_freeu_v2),
        cmocka_unit_test(ksampler_with_freeu),
        cmocka_unit_test(freeu_refused_on_a_dit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
