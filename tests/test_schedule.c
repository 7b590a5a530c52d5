/* Sigma tables and schedulers against ComfyUI: every golden run's sigmas
 * (all nine schedulers, the img2img denoise rule, the dpm_2 / uni_pc
 * penultimate-sigma rule) and an independent check of the beta scheduler's
 * incomplete-beta inverse. */
#include "kiln_test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sampler.h"
#include "schedule.h"

static kiln_model_sampling sd15;

static int setup(void **state)
{
    (void)state;
    return kiln_model_sampling_init(&sd15, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END) == KILN_OK ? 0 : -1;
}

static kiln_st_file *open_samplers(void)
{
    kiln_st_file *f = NULL;
    assert_kiln_ok(kiln_st_open(kiln_test_data("comfyui/samplers.safetensors"), &f));
    return f;
}

/* The table against the golden simple schedule, which picks table entries
 * as they are (entries 999, 874, ..., 124), and a float64 reference. */
static void table_matches_sd15(void **state)
{
    (void)state;
    kiln_st_file *f = open_samplers();
    float *simple;
    size_t n;
    assert_kiln_ok(kiln_st_read_f32(f, "txt2img_euler_simple_s8.sigmas", &simple, &n));
    assert_int_equal(n, 9);
    for (int i = 0; i < 8; i++) assert_true(simple[i] == sd15.sigmas[999 - 125 * i]);
    free(simple);
    kiln_st_close(f);
    /* float64 reference for one entry: sigma_t = sqrt((1 - abar) / abar) */
    double abar = 1.0, s0 = sqrt(0.00085), s1 = sqrt(0.012);
    for (int t = 0; t <= 500; t++) {
        double b = s0 + (s1 - s0) * t / 999.0;
        abar *= 1.0 - b * b;
    }
    assert_float_equal(sd15.sigmas[500], (float)sqrt((1.0 - abar) / abar), 1e-6f * sd15.sigmas[500]);
}

static void timestep_round_trip(void **state)
{
    (void)state;
    for (int t = 0; t < KILN_TRAIN_TIMESTEPS; t++) {
        assert_int_equal(kiln_sigma_to_timestep(&sd15, sd15.sigmas[t]), t);
        assert_true(kiln_timestep_to_sigma(&sd15, (float)t) == expf(sd15.log_sigmas[t]));
    }
    /* halfway in timestep is halfway in log sigma */
    float mid = kiln_timestep_to_sigma(&sd15, 499.5f);
    assert_float_equal(logf(mid), 0.5f * (sd15.log_sigmas[499] + sd15.log_sigmas[500]), 1e-6f);
    /* out of range clamps; sigma 0 maps to the first timestep */
    assert_true(kiln_timestep_to_sigma(&sd15, 2000.0f) == kiln_timestep_to_sigma(&sd15, 999.0f));
    assert_int_equal(kiln_sigma_to_timestep(&sd15, 0.0f), 0);
    assert_int_equal(kiln_sigma_to_timestep(&sd15, 1000.0f), 999);
}

/* Every golden run: the sigmas KSampler computed for its scheduler, steps,
 * denoise and sampler. */
static void every_run_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = open_samplers();
    int runs = 0;
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *name = kiln_st_at(f, i)->name;
        size_t len = strlen(name);
        if (len < 8 || strcmp(name + len - 7, ".sigmas") != 0) continue;
        char run[128], key[160];
        snprintf(run, sizeof run, "%.*s", (int)(len - 7), name);
        snprintf(key, sizeof key, "%s.settings", run);
        const char *json = kiln_st_metadata(f, key);
        if (!json) fail_msg("%s: no settings", run);
        cJSON *settings = cJSON_Parse(json);
        assert_non_null(settings);
        const char *sampler_name = cJSON_GetObjectItem(settings, "sampler_name")->valuestring;
        const char *scheduler_name = cJSON_GetObjectItem(settings, "scheduler")->valuestring;
        int steps = cJSON_GetObjectItem(settings, "steps")->valueint;
        double denoise = cJSON_GetObjectItem(settings, "denoise")->valuedouble;

        kiln_sampler sampler;
        kiln_scheduler scheduler;
        assert_kiln_ok(kiln_sampler_from_name(sampler_name, &sampler));
        assert_kiln_ok(kiln_scheduler_from_name(scheduler_name, &scheduler));
        float *got, *want;
        size_t n_got, n_want;
        assert_kiln_ok(kiln_ksampler_sigmas(&sd15, scheduler, kiln_sampler_discards_penultimate_sigma(sampler), steps,
                                            denoise, &got, &n_got));
        assert_kiln_ok(kiln_st_read_f32(f, name, &want, &n_want));
        if (n_got != n_want) fail_msg("%s: %zu sigmas, ComfyUI has %zu", run, n_got, n_want);
        double worst = 0.0;
        for (size_t k = 0; k < n_want; k++) {
            double err = fabs((double)got[k] - want[k]) / (want[k] > 0 ? want[k] : 1.0);
            if (err > worst) worst = err;
            if (!(err <= 1e-6))
                fail_msg("%s: sigma %zu is %.9g, ComfyUI %.9g (rel err %.2g)", run, k, (double)got[k],
                         (double)want[k], err);
        }
        print_message("  %-40s %-16s %-15s %zu sigmas, max rel err %.2g\n", run, scheduler_name, sampler_name,
                      n_got, worst);
        free(got);
        free(want);
        cJSON_Delete(settings);
        runs++;
    }
    assert_int_equal(runs, 38);
    kiln_st_close(f);
}

/* The beta scheduler for 1..40 steps against Beta(0.6, 0.6) quantiles
 * computed by mpmath: catches an inverse that lands on the wrong side of a
 * rounding boundary (for example 0.5 * 999 = 499.5 must give 500). */
static void beta_matches_mpmath_quantiles(void **state)
{
    (void)state;
    kiln_st_file *f = open_samplers();
    for (int steps = 1; steps <= 40; steps++) {
        char name[64];
        snprintf(name, sizeof name, "beta_timesteps.%d", steps);
        const kiln_st_tensor *t = kiln_st_find(f, name);
        assert_non_null(t);
        const int64_t *want = t->data;
        size_t n_want = (size_t)t->shape[0];
        float *got;
        size_t n_got;
        assert_kiln_ok(kiln_scheduler_sigmas(&sd15, KILN_SCHEDULER_BETA, steps, &got, &n_got));
        if (n_got != n_want + 1) fail_msg("beta %d steps: %zu sigmas, expected %zu", steps, n_got, n_want + 1);
        for (size_t k = 0; k < n_want; k++)
            if (got[k] != sd15.sigmas[want[k]])
                fail_msg("beta %d steps: sigma %zu is %.9g, expected table[%lld] = %.9g", steps, k, (double)got[k],
                         (long long)want[k], (double)sd15.sigmas[want[k]]);
        assert_true(got[n_want] == 0.0f);
        free(got);
    }
    kiln_st_close(f);
}

/* Schedules whose length is not steps + 1, and the rules on top of them. */
static void schedule_lengths_and_rules(void **state)
{
    (void)state;
    float *s;
    size_t n;
    /* ddim_uniform with 7 steps walks 1, 143, ..., 995: 8 sigmas + 0 */
    assert_kiln_ok(kiln_scheduler_sigmas(&sd15, KILN_SCHEDULER_DDIM_UNIFORM, 7, &s, &n));
    assert_int_equal(n, 9);
    assert_true(s[0] == sd15.sigmas[995] && s[7] == sd15.sigmas[1] && s[8] == 0.0f);
    free(s);
    /* a single step of every scheduler but kl_optimal starts at sigma_max */
    for (int k = 0; k < KILN_SCHEDULER_COUNT; k++) {
        if (k == KILN_SCHEDULER_KL_OPTIMAL || k == KILN_SCHEDULER_DDIM_UNIFORM) continue;
        assert_kiln_ok(kiln_scheduler_sigmas(&sd15, (kiln_scheduler)k, 1, &s, &n));
        assert_int_equal(n, 2);
        assert_float_equal(s[0], kiln_sigma_max(&sd15), 1e-5f);
        assert_true(s[1] == 0.0f);
        free(s);
    }
    /* denoise 0.5 with 4 steps: the last 5 of an 8-step schedule */
    float *full;
    size_t n_full;
    assert_kiln_ok(kiln_ksampler_sigmas(&sd15, KILN_SCHEDULER_KARRAS, false, 8, 1.0, &full, &n_full));
    assert_kiln_ok(kiln_ksampler_sigmas(&sd15, KILN_SCHEDULER_KARRAS, false, 4, 0.5, &s, &n));
    assert_int_equal(n, 5);
    assert_memory_equal(s, full + 4, 5 * sizeof *s);
    free(s);
    /* discard: 9-step schedule without its second-to-last sigma */
    float *nine;
    size_t n_nine;
    assert_kiln_ok(kiln_scheduler_sigmas(&sd15, KILN_SCHEDULER_KARRAS, 9, &nine, &n_nine));
    assert_kiln_ok(kiln_ksampler_sigmas(&sd15, KILN_SCHEDULER_KARRAS, true, 8, 1.0, &s, &n));
    assert_int_equal(n, 9);
    assert_memory_equal(s, nine, 8 * sizeof *s);
    assert_true(s[8] == 0.0f);
    free(s);
    free(nine);
    free(full);
}

static void bad_arguments_are_errors(void **state)
{
    (void)state;
    kiln_scheduler scheduler;
    float *s;
    size_t n;
    assert_int_equal(kiln_scheduler_from_name("karas", &scheduler), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "\"karas\""));
    assert_non_null(strstr(kiln_last_error(), "karras"));
    assert_non_null(strstr(kiln_last_error(), "kl_optimal"));
    for (int k = 0; k < KILN_SCHEDULER_COUNT; k++) {
        assert_kiln_ok(kiln_scheduler_from_name(kiln_scheduler_name((kiln_scheduler)k), &scheduler));
        assert_int_equal(scheduler, k);
    }
    assert_null(kiln_scheduler_name(KILN_SCHEDULER_COUNT));
    assert_int_equal(kiln_scheduler_sigmas(&sd15, KILN_SCHEDULER_NORMAL, 0, &s, &n), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_scheduler_sigmas(&sd15, KILN_SCHEDULER_KL_OPTIMAL, 1, &s, &n), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "kl_optimal"));
    assert_int_equal(kiln_ksampler_sigmas(&sd15, KILN_SCHEDULER_NORMAL, false, 8, 0.0, &s, &n), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "denoise"));
    assert_int_equal(kiln_ksampler_sigmas(&sd15, KILN_SCHEDULER_NORMAL, false, 8, 1.5, &s, &n), KILN_ERR_INVALID_ARG);
    kiln_model_sampling bad;
    assert_int_equal(kiln_model_sampling_init(&bad, 0.012, 0.00085), KILN_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_matches_sd15),
        cmocka_unit_test(timestep_round_trip),
        cmocka_unit_test(every_run_matches_comfyui),
        cmocka_unit_test(beta_matches_mpmath_quantiles),
        cmocka_unit_test(schedule_lengths_and_rules),
        cmocka_unit_test(bad_arguments_are_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
