/* ModelSamplingDiscrete's "lcm" and zsnr against ComfyUI's code restated
 * (tests/data/model_sampling): LCM's distilled table of 50 timesteps, its
 * timestep and sigma maps, the schedulers on it and LCM's boundary
 * condition; the table rescaled to zero terminal SNR and the schedulers on
 * it. Then a model set to either samples on its table. */
#include "kiln_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "latent.h"
#include "model.h"
#include "schedule.h"

#define GOLDEN "model_sampling/lcm.safetensors"
#define ZSNR "model_sampling/zsnr.safetensors"

static void distilled_table_matches_comfyui(void **state)
{
    (void)state;
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    assert_kiln_ok(kiln_model_sampling_distill(&ms, KILN_LCM_TIMESTEPS));
    kiln_st_file *f = golden_open(GOLDEN);
    golden sigmas = golden_read(f, "sigmas"), probe = golden_read(f, "timestep.sigma"), t = golden_read(f, "timestep.t"),
           at = golden_read(f, "sigma.t"), sigma = golden_read(f, "sigma.sigma");
    assert_int_equal(ms.count, (int)sigmas.count);
    assert_memory_equal(ms.sigmas, sigmas.data, sigmas.count * sizeof(float));
    for (size_t i = 0; i < probe.count; i++) assert_float_equal(kiln_model_timestep(&ms, probe.data[i]), t.data[i], 0);
    for (size_t i = 0; i < at.count; i++)
        assert_float_equal(kiln_timestep_to_sigma(&ms, at.data[i]), sigma.data[i], 1e-7 * sigma.data[i]);
    kiln_model_sampling flow;
    assert_kiln_ok(kiln_model_sampling_init_flux(&flow, KILN_FLUX_DEV_SHIFT));
    assert_refused_naming(kiln_model_sampling_distill(&flow, KILN_LCM_TIMESTEPS), "(flow)");
    golden *all[] = {&sigmas, &probe, &t, &at, &sigma};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
}

static void boundary_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    golden t = golden_read(f, "boundary.t"), c_skip = golden_read(f, "boundary.c_skip"),
           c_out = golden_read(f, "boundary.c_out");
    for (size_t i = 0; i < t.count; i++) {
        float s, o;
        kiln_lcm_boundary(t.data[i], &s, &o);
        assert_float_equal(s, c_skip.data[i], 1e-6 * c_skip.data[i]);
        assert_float_equal(o, c_out.data[i], 1e-7);
    }
    golden_free(&t), golden_free(&c_skip), golden_free(&c_out);
    kiln_st_close(f);
}

/* The schedules of a model (its sampling as set) against a golden's
 * "<scheduler>.<steps>", the first `nnames` of these schedulers. */
static void check_schedules(const kiln_model *m, const char *path, size_t nnames)
{
    kiln_st_file *f = golden_open(path);
    static const char *const names[] = {"normal", "simple", "karras", "sgm_uniform"};
    static const int steps[] = {1, 4, 8};
    for (size_t k = 0; k < nnames; k++)
        for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
            char key[32];
            snprintf(key, sizeof key, "%s.%d", names[k], steps[s]);
            golden want = golden_read(f, key);
            kiln_sigmas have;
            assert_kiln_ok(kiln_basic_scheduler(m, names[k], steps[s], 1.0, &have));
            assert_int_equal(have.count, (int)want.count);
            for (int i = 0; i < have.count; i++) assert_float_equal(have.values[i], want.data[i], 2e-7 * want.data[i]);
            kiln_sigmas_free(&have);
            golden_free(&want);
        }
    kiln_st_close(f);
}

/* The schedulers walk the distilled table of a model set to "lcm". */
static void schedulers_on_the_distilled_table(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    assert_kiln_ok(kiln_model_set_prediction(m, "lcm"));
    assert_string_equal(kiln_model_prediction(m), "lcm");
    check_schedules(m, GOLDEN, 4);
    kiln_test_close_model(be, m);
}

/* zsnr: the table (against its float64 rescaling, to the bit) and the
 * schedulers on it, which reach a last sigma of about 4519; off again, the
 * model's own table comes back. */
static void zero_terminal_snr(void **state)
{
    (void)state;
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init_betas(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END, false, true));
    kiln_st_file *f = golden_open(ZSNR);
    golden sigmas = golden_read(f, "sigmas");
    assert_int_equal(ms.count, (int)sigmas.count);
    assert_memory_equal(ms.sigmas, sigmas.data, sigmas.count * sizeof(float));
    golden_free(&sigmas);
    kiln_st_close(f);
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    assert_kiln_ok(kiln_model_set_zsnr(m, true));
    check_schedules(m, ZSNR, 3);
    kiln_sigmas plain;
    assert_kiln_ok(kiln_model_set_zsnr(m, false));
    assert_kiln_ok(kiln_basic_scheduler(m, "normal", 1, 1.0, &plain));
    assert_float_equal(plain.values[0], 14.614641f, 1e-5);
    kiln_sigmas_free(&plain);
    kiln_test_close_model(be, m);
}

/* kiln_ksampler on the tiny model set to "lcm" with the lcm sampler: a run
 * of its own (neither eps's on the same schedule nor a repeat of it);
 * setting "eps" again gives eps's run back to the bit. */
static void lcm_sampling(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning pos, neg;
    kiln_latent empty, eps, lcm, again;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &neg));
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    const kiln_ksampler_params p = {.seed = 5, .steps = 4, .cfg = 1.5, .sampler_name = "lcm",
                                    .scheduler = "sgm_uniform", .denoise = 1.0};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &eps));
    assert_kiln_ok(kiln_model_set_prediction(m, "lcm"));
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &lcm));
    const size_t n = kiln_latent_count(&eps);
    const double off = kiln_rel_l2(lcm.data, eps.data, n);
    print_message("  lcm's run is rel L2 %.3g from eps's\n", off);
    assert_true(off > 1e-3);
    assert_kiln_ok(kiln_model_set_prediction(m, "eps"));
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &again));
    assert_memory_equal(again.data, eps.data, n * sizeof(float));
    assert_refused_naming(kiln_model_set_prediction(m, "x0"), "kiln samples eps, v_prediction and lcm");
    kiln_latent_free(&eps), kiln_latent_free(&lcm), kiln_latent_free(&again), kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_test_close_model(be, m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(distilled_table_matches_comfyui),
        cmocka_unit_test(boundary_matches_comfyui),
        cmocka_unit_test(schedulers_on_the_distilled_table),
        cmocka_unit_test(zero_terminal_snr),
        cmocka_unit_test(lcm_sampling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
