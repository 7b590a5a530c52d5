/* ModelSamplingDiscrete's "lcm" and zsnr, and ModelSamplingContinuousEDM,
 * against ComfyUI's code restated (tests/data/model_sampling): LCM's
 * distilled table of 50 timesteps, its timestep and sigma maps, the
 * schedulers on it and LCM's boundary condition; the table rescaled to zero
 * terminal SNR and the schedulers on it; EDM's log-spaced table, its maps and
 * schedules, and its denoiser's wiring. Then a model set to each samples on
 * its table. */
#include "kiln_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "denoiser.h"
#include "golden.h"
#include "graph.h"
#include "latent.h"
#include "model.h"
#include "nn.h"
#include "schedule.h"

#define GOLDEN "model_sampling/lcm.safetensors"
#define ZSNR "model_sampling/zsnr.safetensors"
#define EDM "model_sampling/edm.safetensors"

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
    assert_refused_naming(kiln_model_set_prediction(m, "x1"), "kiln samples eps, v_prediction, lcm, x0 and img_to_img");
    kiln_latent_free(&eps), kiln_latent_free(&lcm), kiln_latent_free(&again), kiln_latent_free(&empty);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_test_close_model(be, m);
}

/* EDM's table, its maps both ways and percent_to_sigma, and the schedulers
 * on a model set to it. */
static void continuous_edm_matches_comfyui(void **state)
{
    (void)state;
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init_edm(&ms, 0.002, 120.0, 1.0));
    kiln_st_file *f = golden_open(EDM);
    golden sigmas = golden_read(f, "sigmas"), probe = golden_read(f, "timestep.sigma"), t = golden_read(f, "timestep.t"),
           at = golden_read(f, "sigma.t"), sigma = golden_read(f, "sigma.sigma"), pct = golden_read(f, "percent.sigma");
    assert_int_equal(ms.count, (int)sigmas.count);
    for (size_t i = 0; i < sigmas.count; i++) assert_float_equal(ms.sigmas[i], sigmas.data[i], 2e-7 * sigmas.data[i]);
    for (size_t i = 0; i < probe.count; i++)
        assert_float_equal(kiln_model_timestep(&ms, probe.data[i]), t.data[i], 1e-7 + 1e-7 * fabsf(t.data[i]));
    for (size_t i = 0; i < at.count; i++)
        assert_float_equal(kiln_timestep_to_sigma(&ms, at.data[i]), sigma.data[i], 2e-7 * sigma.data[i]);
    static const double percents[3] = {0.1, 0.5, 0.9};
    for (int i = 0; i < 3; i++)
        assert_float_equal(kiln_percent_to_sigma(&ms, percents[i]), pct.data[i], 2e-7 * pct.data[i]);
    golden *all[] = {&sigmas, &probe, &t, &at, &sigma, &pct};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    assert_kiln_ok(kiln_model_set_continuous_edm(m, "v_prediction", 120.0, 0.002));
    check_schedules(m, EDM, 4);
    assert_refused_naming(kiln_model_set_continuous_edm(m, "edm", 0.002, 120.0), "sigma_min 120");
    kiln_test_close_model(be, m);
}

typedef struct unet_call {
    const kiln_model *m;
    const float *x, *context;
    float t;
    float *eps;
} unet_call;

static kiln_status unet_fn(kiln_graph *g, void *ctx)
{
    unet_call *c = ctx;
    tensor *x, *t, *context, *eps;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, (int64_t[]){1, 4, 8, 8}, c->x));
    TRY(kiln_graph_input(g, &t, KILN_F32, 1, (int64_t[]){1}, &c->t));
    TRY(kiln_graph_input(g, &context, KILN_F32, 3, (int64_t[]){1, 77, c->m->unet.config->context_dim}, c->context));
    const kiln_unet_cond cond = {.t = t, .context = context};
    TRY(kiln_unet_forward(g, &c->m->unet, x, &cond, NULL, NULL, &eps));
    return kiln_graph_output(g, eps, c->eps, kiln_tensor_nbytes(eps));
}

/* The denoiser on EDM's sampling, and on the discrete table with x0 and
 * img_to_img, each kind against ComfyUI's formulas
 * restated here on the UNet's own output: input x / sqrt(sigma^2 + sd^2),
 * timestep 0.25 ln sigma, x0 = x - sigma out (eps), sd^2 / (sigma^2 + sd^2)
 * x -/+ sigma sd / sqrt(sigma^2 + sd^2) out (v / edm; sd 1 and 0.5). */
static void continuous_edm_denoiser(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning pos;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    const size_t n = 4 * 8 * 8, ctx = (size_t)77 * pos.dim;
    float *context = malloc(2 * ctx * sizeof *context), x[4 * 8 * 8], in[4 * 8 * 8], eps[4 * 8 * 8],
          have[4 * 8 * 8], want[4 * 8 * 8];
    assert_non_null(context);
    memcpy(context, pos.data, ctx * sizeof *context), memcpy(context + ctx, pos.data, ctx * sizeof *context);
    for (size_t i = 0; i < n; i++) x[i] = (float)sin(0.37 * (double)i) * 3.0f;
    static const char *const kinds[3] = {"eps", "v_prediction", "edm"};
    const float sigma = 3.0f;
    for (int k = 0; k < 3; k++) {
        assert_kiln_ok(kiln_model_set_continuous_edm(m, kinds[k], 120.0, 0.002));
        kiln_model_sampling ms;
        assert_kiln_ok(kiln_model_sampling_of(m, &ms));
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, 8, 8, 1.0f, context, 77));
        assert_kiln_ok(kiln_denoiser_call(&d, x, sigma, have));
        kiln_denoiser_free(&d);
        const double sd = k == 2 ? 0.5 : 1.0, s2 = (double)sigma * sigma;
        for (size_t i = 0; i < n; i++) in[i] = (float)(x[i] / sqrt(s2 + sd * sd));
        unet_call c = {m, in, context + ctx, 0.25f * logf(sigma), eps};
        kiln_graph *g;
        assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &g));
        assert_kiln_ok(kiln_graph_run(g, unet_fn, &c));
        kiln_graph_free(g);
        for (size_t i = 0; i < n; i++)
            want[i] = k == 0 ? (float)(x[i] - sigma * eps[i])
                             : (float)(x[i] * sd * sd / (s2 + sd * sd) +
                                       (k == 2 ? 1 : -1) * eps[i] * sigma * sd / sqrt(s2 + sd * sd));
        const double err = kiln_rel_l2(have, want, n);
        print_message("  %s: rel L2 %.2g from ComfyUI's formula on the UNet's output\n", kinds[k], err);
        assert_true(err <= 1e-5); /* the two UNet runs' float32 rounding; a wrong sign or scale is O(1) */
    }
    /* ModelSamplingDiscrete's x0 and img_to_img: the UNet's output is x0, from the input scaled as eps's or as it
       is; the run's own sampling table */
    static const char *const x0_kinds[2] = {"x0", "img_to_img"};
    for (int k = 0; k < 2; k++) {
        assert_kiln_ok(kiln_model_set_prediction(m, x0_kinds[k]));
        assert_string_equal(kiln_model_prediction(m), x0_kinds[k]);
        kiln_model_sampling ms;
        assert_kiln_ok(kiln_model_sampling_of(m, &ms));
        assert_false(ms.edm);
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, 8, 8, 1.0f, context, 77));
        assert_kiln_ok(kiln_denoiser_call(&d, x, sigma, have));
        kiln_denoiser_free(&d);
        const double scale = k == 0 ? 1.0 / sqrt((double)sigma * sigma + 1.0) : 1.0;
        for (size_t i = 0; i < n; i++) in[i] = (float)(x[i] * scale);
        unet_call c = {m, in, context + ctx, kiln_model_timestep(&ms, sigma), want};
        kiln_graph *g;
        assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &g));
        assert_kiln_ok(kiln_graph_run(g, unet_fn, &c));
        kiln_graph_free(g);
        const double err = kiln_rel_l2(have, want, n);
        print_message("  %s: rel L2 %.2g from the UNet's own output\n", x0_kinds[k], err);
        assert_true(err <= 1e-5);
    }
    assert_kiln_ok(kiln_model_set_prediction(m, "eps"));
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_of(m, &ms));
    assert_false(ms.edm);
    free(context);
    kiln_conditioning_free(&pos);
    kiln_test_close_model(be, m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(distilled_table_matches_comfyui),
        cmocka_unit_test(boundary_matches_comfyui),
        cmocka_unit_test(schedulers_on_the_distilled_table),
        cmocka_unit_test(zero_terminal_snr),
        cmocka_unit_test(continuous_edm_matches_comfyui),
        cmocka_unit_test(continuous_edm_denoiser),
        cmocka_unit_test(lcm_sampling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
