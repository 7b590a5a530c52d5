/* Sigma tables and schedulers against ComfyUI: every golden run's sigmas
 * (all nine schedulers, the img2img denoise rule, the dpm_2 / uni_pc
 * penultimate-sigma rule), an independent check of the beta scheduler's
 * incomplete-beta inverse, and the flow (FLUX.1) table, its schedulers,
 * percent_to_sigma, start latent, euler_ancestral_RF and the other samplers'
 * CONST ways against
 * tests/data/flow (ComfyUI's code restated in torch), all bit for bit; and
 * ComfyUI's SIGMAS nodes (its scheduler nodes against tests/data/sigmas, the
 * nodes that cut and turn a list against Python's slices), SamplingPercentToSigma
 * and AddNoise. */
#include "kiln_test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
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
/* make_flow_data.py's mock model (denoised = 0.75 x) and its per-step
 * noise. */
typedef struct flow_replay {
    const float *noise; /* [steps, n] */
    size_t n;
    int draws;
} flow_replay;

static kiln_status mock_flow_denoise(void *ctx, const float *x, float sigma, float *denoised)
{
    (void)sigma;
    const flow_replay *rp = ctx;
    for (size_t j = 0; j < rp->n; j++) denoised[j] = x[j] * 0.75f;
    return KILN_OK;
}

/* A model whose prediction depends on the sigma it is asked at. */
static kiln_status mock_flow_denoise_sigma(void *ctx, const float *x, float sigma, float *denoised)
{
    const flow_replay *rp = ctx;
    for (size_t j = 0; j < rp->n; j++) denoised[j] = x[j] * 0.75f + 0.1f * sigma;
    return KILN_OK;
}

static kiln_status replay_flow_noise(void *ctx, float sigma, float sigma_next, float *noise, size_t n)
{
    (void)sigma;
    (void)sigma_next;
    flow_replay *rp = ctx;
    memcpy(noise, rp->noise + (size_t)rp->draws++ * rp->n, n * sizeof *noise);
    return KILN_OK;
}

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

/* The discrete table through the generic entry points: the index as a
 * float timestep, and percent_to_sigma as ComfyUI's ModelSamplingDiscrete. */
static void discrete_timestep_and_percent(void **state)
{
    (void)state;
    assert_int_equal(sd15.count, KILN_TRAIN_TIMESTEPS);
    assert_false(sd15.flow);
    assert_true(kiln_model_timestep(&sd15, sd15.sigmas[123]) == 123.0f);
    assert_true(kiln_percent_to_sigma(&sd15, 0.0) == 999999999.9f);
    assert_true(kiln_percent_to_sigma(&sd15, 1.0) == 0.0f);
    assert_true(kiln_percent_to_sigma(&sd15, 0.25) == kiln_timestep_to_sigma(&sd15, (float)(0.75 * 999.0)));
}

/* make_flow_data.py's SAMPLINGS: ModelSamplingFlux at two shifts, SD3's ModelSamplingDiscreteFlow */
static const struct {
    const char *key;
    double shift;
    bool sd3;
} flow_shifts[] = {{"shift115", KILN_FLUX_DEV_SHIFT, false},
                   {"shift100", KILN_FLUX_SCHNELL_SHIFT, false},
                   {"sd3", KILN_SD3_SHIFT, true}};

/* the same list as make_flow_data.py's PERCENTS */
static const double flow_percents[] = {-0.5, 0.0, 1e-4, 0.1, 0.25, 0.5, 0.9, 1.0};

static float *read_flow(kiln_st_file *f, const char *shift, const char *field, size_t *n)
{
    char name[128];
    snprintf(name, sizeof name, shift ? "%s.%s" : "%s%s", shift ? shift : "", field);
    float *v = NULL;
    assert_kiln_ok(kiln_st_read_f32(f, name, &v, n));
    return v;
}

/* Float32 within `ulps` units in the last place (0: bit-equal). */
static void assert_ulps(const char *what, const float *got, const float *want, size_t n, int ulps)
{
    for (size_t i = 0; i < n; i++) {
        int32_t a, b;
        memcpy(&a, &got[i], sizeof a);
        memcpy(&b, &want[i], sizeof b);
        if ((a < 0) != (b < 0) ? a != b : abs(a - b) > ulps)
            fail_msg("%s[%zu]: kiln %.9g, torch %.9g", what, i, (double)got[i], (double)want[i]);
    }
}

static void assert_bits_equal(const char *what, const float *got, const float *want, size_t n)
{
    assert_ulps(what, got, want, n, 0);
}

static void flow_matches_torch(void **state)
{
    (void)state;
    kiln_st_file *f = NULL;
    assert_kiln_ok(kiln_st_open(kiln_test_data("flow/flow.safetensors"), &f));
    kiln_model_sampling ms;
    for (size_t k = 0; k < sizeof flow_shifts / sizeof *flow_shifts; k++) {
        const char *key = flow_shifts[k].key;
        const bool sd3 = flow_shifts[k].sd3;
        if (sd3)
            assert_kiln_ok(kiln_model_sampling_init_sd3(&ms, flow_shifts[k].shift));
        else
            assert_kiln_ok(kiln_model_sampling_init_flux(&ms, flow_shifts[k].shift));
        assert_true(ms.flow);
        const int entries = sd3 ? KILN_SD3_TIMESTEPS : KILN_FLOW_TIMESTEPS;
        assert_int_equal(ms.count, entries);
        size_t n;
        float *want = read_flow(f, key, "table", &n);
        assert_int_equal(n, entries);
        assert_bits_equal("table", ms.sigmas, want, n);
        free(want);
        assert_true(kiln_sigma_max(&ms) == 1.0f);
        /* the timestep of a sigma is the sigma (SD3: times 1000); sigma() of the table's t is its entry */
        assert_true(kiln_model_timestep(&ms, 0.375f) == (sd3 ? 375.0f : 0.375f));
        assert_true(kiln_timestep_to_sigma(&ms, sd3 ? 500.0f : 0.5f) == ms.sigmas[entries / 2 - 1]);

        for (int s = 0; s < KILN_SCHEDULER_COUNT; s++) {
            const int steps_list[] = {s == KILN_SCHEDULER_KL_OPTIMAL ? 2 : 1, 4, 20};
            for (int j = 0; j < 3; j++) {
                char field[64];
                snprintf(field, sizeof field, "%s.s%d", kiln_scheduler_name((kiln_scheduler)s), steps_list[j]);
                want = read_flow(f, key, field, &n);
                float *got;
                size_t count;
                assert_kiln_ok(kiln_scheduler_sigmas(&ms, (kiln_scheduler)s, steps_list[j], &got, &count));
                if (count != n) fail_msg("%s.%s: kiln %zu sigmas, torch %zu", key, field, count, n);
                /* karras, exponential and kl_optimal end in torch's vectorised pow / exp /
                 * tan (SLEEF, within 1 ulp, not always correctly rounded) where kiln
                 * calls libm: those may differ by an ulp; the rest are bit-equal */
                bool libm = s == KILN_SCHEDULER_KARRAS || s == KILN_SCHEDULER_EXPONENTIAL ||
                            s == KILN_SCHEDULER_KL_OPTIMAL;
                assert_ulps(field, got, want, n, libm ? 1 : 0);
                free(got);
                free(want);
            }
        }

        want = read_flow(f, key, "percent_to_sigma", &n);
        assert_int_equal(n, sizeof flow_percents / sizeof *flow_percents);
        for (size_t i = 0; i < n; i++) {
            float got = kiln_percent_to_sigma(&ms, flow_percents[i]);
            assert_bits_equal("percent_to_sigma", &got, &want[i], 1);
        }
        free(want);

        float *noise = read_flow(f, NULL, "noise", &n);
        float *latent = read_flow(f, NULL, "latent", &n);
        float *normal, *x = malloc(n * sizeof *x);
        size_t count;
        assert_kiln_ok(kiln_scheduler_sigmas(&ms, KILN_SCHEDULER_NORMAL, 20, &normal, &count));
        const struct {
            const char *field;
            float sigma0;
            const float *latent;
        } cases[] = {{"start_x.max_empty", 1.0f, NULL},
                     {"start_x.max_latent", 1.0f, latent},
                     {"start_x.mid_latent", normal[5], latent}};
        for (size_t c = 0; c < 3; c++) {
            size_t m;
            want = read_flow(f, key, cases[c].field, &m);
            kiln_sampler_start_x(&ms, cases[c].sigma0, noise, cases[c].latent, x, n);
            assert_bits_equal(cases[c].field, x, want, m);
            free(want);
        }
        free(normal);

        /* euler_ancestral_RF from the empty start over simple 4 steps */
        float *sigmas, *steps_noise;
        assert_kiln_ok(kiln_scheduler_sigmas(&ms, KILN_SCHEDULER_SIMPLE, 4, &sigmas, &count));
        size_t m;
        steps_noise = read_flow(f, key, "euler_a_rf.noise", &m);
        want = read_flow(f, key, "euler_a_rf.x", &m);
        kiln_sampler_start_x(&ms, sigmas[0], noise, NULL, x, n);
        flow_replay rp = {.noise = steps_noise, .n = n};
        kiln_sample_args args;
        kiln_sample_args_init(&args);
        args.sampler = KILN_SAMPLER_EULER_ANCESTRAL;
        args.flow = true;
        args.sigmas = sigmas;
        args.nsigmas = count;
        args.n = n;
        args.denoise = mock_flow_denoise;
        args.denoise_ctx = &rp;
        args.noise = replay_flow_noise;
        args.noise_ctx = &rp;
        assert_kiln_ok(kiln_sample(&args, x));
        assert_int_equal(rp.draws, 3); /* no noise on the last step, to sigma 0 */
        /* torch's sqrt of the renoise coefficient is an ulp off the correctly rounded one at SD3's 0.9 step
           (0.7926253 for 0.7926252), which the next steps carry; Flux's steps meet no such case */
        if (sd3)
            assert_rel_l2_le(x, want, n, 1e-6);
        else
            assert_bits_equal("euler_a_rf", x, want, m);
        free(want);

        /* the samplers ComfyUI runs its own way on CONST models, from the same start (the SDE ones from
           just below sigma 1); kiln takes their scalar coefficients in double, so within 1e-5 */
        static const kiln_sampler own_way[] = {KILN_SAMPLER_DPM_2_ANCESTRAL, KILN_SAMPLER_DPMPP_2S_ANCESTRAL,
                                               KILN_SAMPLER_LCM,             KILN_SAMPLER_DPMPP_SDE,
                                               KILN_SAMPLER_DPMPP_2M_SDE,    KILN_SAMPLER_DPMPP_3M_SDE,
                                               KILN_SAMPLER_DPMPP_2M_SDE_HEUN};
        float *pool = read_flow(f, NULL, "sampler_noise", &m);
        for (size_t k = 0; k < sizeof own_way / sizeof *own_way; k++) {
            const char *sampler = kiln_sampler_name(own_way[k]);
            char field[64];
            snprintf(field, sizeof field, "%s.x", sampler);
            want = read_flow(f, key, field, &m);
            snprintf(field, sizeof field, "%s.draws", sampler);
            float *draws = read_flow(f, key, field, &m);
            kiln_sampler_start_x(&ms, sigmas[0], noise, NULL, x, n);
            rp = (flow_replay){.noise = pool, .n = n};
            args.sampler = own_way[k];
            args.denoise = mock_flow_denoise_sigma;
            args.flow_first_sigma = kiln_percent_to_sigma(&ms, 1e-4);
            assert_kiln_ok(kiln_sample(&args, x));
            if (rp.draws != (int)draws[0]) fail_msg("%s drew %d noises, ComfyUI %g", sampler, rp.draws, draws[0]);
            assert_rel_l2_le(x, want, n, 1e-5);
            free(want);
            free(draws);
        }
        free(pool);
        free(steps_noise);
        free(sigmas);
        free(x);
        free(noise);
        free(latent);
    }
    kiln_st_close(f);
    assert_int_equal(kiln_model_sampling_init_flux(&ms, NAN), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_model_sampling_init_sd3(&ms, 0.0), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_model_sampling_init_sd3(&ms, INFINITY), KILN_ERR_INVALID_ARG);
}

static void assert_sigmas(const kiln_sigmas *got, const float *want, int count)
{
    assert_int_equal(got->count, count);
    if (count) assert_memory_equal(got->values, want, (size_t)count * sizeof *want);
    else assert_null(got->values);
}

/* ComfyUI's scheduler nodes (tests/data/sigmas: its code restated with
 * torch and numpy) on the tiny SD 1.x model's table and the tiny SD3's
 * (shift 3); the inputs are make_sigmas_data.py's CASES. */
enum sigma_node { BASIC, SD_TURBO, BETA, AYS, OPTIMAL, KARRAS, EXPONENTIAL, POLYEXPONENTIAL, LAPLACE, VP, EXTEND };
static const struct sigma_case {
    const char *name;
    enum sigma_node node;
    int sd3; /* BASIC, SD_TURBO, BETA: the model */
    const char *text; /* BASIC's scheduler, AYS's and OPTIMAL's model_type, EXTEND's spacing */
    int steps;
    double in[4]; /* the node's numbers in its order after steps */
} sigma_cases[] = {
    {"basic.sd15_karras_s10_d055", BASIC, 0, "karras", 10, {0.55}},
    {"basic.sd15_normal_s4_d1", BASIC, 0, "normal", 4, {1.0}},
    {"basic.sd3_simple_s6_d08", BASIC, 1, "simple", 6, {0.8}},
    {"karras.s1", KARRAS, 0, NULL, 1, {14.614642, 0.0291675, 7.0}},
    {"karras.s20", KARRAS, 0, NULL, 20, {14.614642, 0.0291675, 7.0}},
    {"karras.s10_rho3", KARRAS, 0, NULL, 10, {120.0, 0.002, 3.0}},
    {"karras.s9_rho05", KARRAS, 0, NULL, 9, {1.0, 0.01, 0.5}},
    {"exponential.s20", EXPONENTIAL, 0, NULL, 20, {14.614642, 0.0291675}},
    {"exponential.s6", EXPONENTIAL, 0, NULL, 6, {80.0, 0.002}},
    {"polyexponential.s20", POLYEXPONENTIAL, 0, NULL, 20, {14.614642, 0.0291675, 1.0}},
    {"polyexponential.s9_rho2", POLYEXPONENTIAL, 0, NULL, 9, {14.6, 0.03, 2.0}},
    {"polyexponential.s12_rho17", POLYEXPONENTIAL, 0, NULL, 12, {80.0, 0.002, 1.7}},
    {"laplace.s20", LAPLACE, 0, NULL, 20, {14.614642, 0.0291675, 0.0, 0.5}},
    {"laplace.s7", LAPLACE, 0, NULL, 7, {14.6, 0.03, 0.3, 1.2}},
    {"laplace.s1", LAPLACE, 0, NULL, 1, {14.614642, 0.0291675, 0.0, 0.5}},
    {"vp.s20", VP, 0, NULL, 20, {19.9, 0.1, 0.001}},
    {"vp.s5", VP, 0, NULL, 5, {10.0, 0.5, 0.01}},
    {"vp.s1", VP, 0, NULL, 1, {19.9, 0.1, 0.001}},
    {"sd_turbo.sd15_s1", SD_TURBO, 0, NULL, 1, {1.0}},
    {"sd_turbo.sd15_s4", SD_TURBO, 0, NULL, 4, {1.0}},
    {"sd_turbo.sd15_s10", SD_TURBO, 0, NULL, 10, {1.0}},
    {"sd_turbo.sd15_s2_d05", SD_TURBO, 0, NULL, 2, {0.5}},
    {"sd_turbo.sd15_s3_d029", SD_TURBO, 0, NULL, 3, {0.29}},
    {"sd_turbo.sd3_s4", SD_TURBO, 1, NULL, 4, {1.0}},
    {"beta.sd15_s10", BETA, 0, NULL, 10, {0.6, 0.6}},
    {"beta.sd15_s12_a05_b07", BETA, 0, NULL, 12, {0.5, 0.7}},
    {"beta.sd15_s20_a15_b12", BETA, 0, NULL, 20, {1.5, 1.2}},
    {"beta.sd3_s8_a06_b06", BETA, 1, NULL, 8, {0.6, 0.6}},
    {"ays.sd1_s10", AYS, 0, "SD1", 10, {1.0}},
    {"ays.sd1_s20", AYS, 0, "SD1", 20, {1.0}},
    {"ays.sdxl_s7_d06", AYS, 0, "SDXL", 7, {0.6}},
    {"ays.svd_s30", AYS, 0, "SVD", 30, {1.0}},
    {"ays.sd1_s5_d05", AYS, 0, "SD1", 5, {0.5}},
    {"optimal.flux_s10", OPTIMAL, 0, "FLUX", 10, {1.0}},
    {"optimal.flux_s28", OPTIMAL, 0, "FLUX", 28, {1.0}},
    {"optimal.wan_s3", OPTIMAL, 0, "Wan", 3, {1.0}},
    {"optimal.chroma_s25_d08", OPTIMAL, 0, "Chroma", 25, {0.8}},
    {"extend.linear_s3", EXTEND, 0, "linear", 3, {-1.0, 12.0}},
    {"extend.cosine_s4", EXTEND, 0, "cosine", 4, {-1.0, 1.0}},
    {"extend.sine_s2", EXTEND, 0, "sine", 2, {8.0, 0.5}},
    {"extend.sine_s1", EXTEND, 0, "sine", 1, {-1.0, 0.0}},
};

/* Table entries match to the bit. torch's float32 exp, log, pow and sqrt
 * are Sleef's vectorised ones (within an ulp, not always the correctly
 * rounded C library's), and polyexponential's exp of ramp^rho times a long
 * log span (log(80 / 0.002)) turns pow's ulp into 15, ExtendIntermediateSigmas'
 * gap times sin's into 2. */
static const int sigma_case_ulps[] = {[BASIC] = 0,  [SD_TURBO] = 1,    [BETA] = 0,
                                      [AYS] = 0,    [OPTIMAL] = 0,     [KARRAS] = 1,      [EXPONENTIAL] = 1,
                                      [POLYEXPONENTIAL] = 16, [LAPLACE] = 1, [VP] = 1, [EXTEND] = 2};

static kiln_status run_sigma_case(kiln_model *const models[2], const struct sigma_case *c, kiln_sigmas *out)
{
    kiln_model *m = models[c->sd3];
    switch (c->node) {
    case BASIC: return kiln_basic_scheduler(m, c->text, c->steps, c->in[0], out);
    case SD_TURBO: return kiln_sd_turbo_scheduler(m, c->steps, c->in[0], out);
    case BETA: return kiln_beta_sampling_scheduler(m, c->steps, c->in[0], c->in[1], out);
    case AYS: return kiln_align_your_steps_scheduler(c->text, c->steps, c->in[0], out);
    case OPTIMAL: return kiln_optimal_steps_scheduler(c->text, c->steps, c->in[0], out);
    case KARRAS: return kiln_karras_scheduler(c->steps, c->in[0], c->in[1], c->in[2], out);
    case EXPONENTIAL: return kiln_exponential_scheduler(c->steps, c->in[0], c->in[1], out);
    case POLYEXPONENTIAL: return kiln_polyexponential_scheduler(c->steps, c->in[0], c->in[1], c->in[2], out);
    case LAPLACE: return kiln_laplace_scheduler(c->steps, c->in[0], c->in[1], c->in[2], c->in[3], out);
    case VP: return kiln_vp_scheduler(c->steps, c->in[0], c->in[1], c->in[2], out);
    case EXTEND: { /* make_sigmas_data.py's EXTEND_INPUT */
        static const float input[] = {14.6f, 7.3f, 2.2f, 0.6f, 0.0f};
        const kiln_sigmas in = {(float *)input, 5};
        return kiln_sigmas_extend(&in, c->steps, c->in[0], c->in[1], c->text, out);
    }
    }
    return KILN_ERR_INVALID_ARG;
}

/* The tiny SD 1.x model and `other` (a flow model) on a CPU backend. */
static void open_sd15_and(kiln_backend **be, const char *other, kiln_model *models[2])
{
    assert_kiln_ok(kiln_backend_open("cpu", NULL, be));
    assert_kiln_ok(kiln_checkpoint_load(*be, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), NULL, 0,
                                        &models[0]));
    assert_kiln_ok(kiln_checkpoint_load(*be, kiln_test_data(other), NULL, 0, &models[1]));
}

static void scheduler_nodes_match_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *models[2];
    open_sd15_and(&be, "sd3/tiny", models);
    kiln_st_file *f = NULL;
    assert_kiln_ok(kiln_st_open(kiln_test_data("sigmas/sigmas.safetensors"), &f));
    for (size_t i = 0; i < sizeof sigma_cases / sizeof *sigma_cases; i++) {
        const struct sigma_case *c = &sigma_cases[i];
        float *want;
        size_t n;
        assert_kiln_ok(kiln_st_read_f32(f, c->name, &want, &n));
        kiln_sigmas got;
        assert_kiln_ok(run_sigma_case(models, c, &got));
        if ((size_t)got.count != n) fail_msg("%s: %d sigmas, ComfyUI %zu", c->name, got.count, n);
        assert_ulps(c->name, got.values, want, n, sigma_case_ulps[c->node]);
        kiln_sigmas_free(&got);
        free(want);
    }
    kiln_st_close(f);
    /* BasicScheduler at denoise 1 is KSampler's schedule; at 0 it is none */
    kiln_sigmas got;
    float *ksampler;
    size_t n;
    assert_kiln_ok(kiln_basic_scheduler(models[0], "normal", 8, 1.0, &got));
    assert_kiln_ok(kiln_ksampler_sigmas(&sd15, KILN_SCHEDULER_NORMAL, false, 8, 1.0, &ksampler, &n));
    assert_sigmas(&got, ksampler, (int)n);
    free(ksampler);
    kiln_sigmas_free(&got);
    assert_kiln_ok(kiln_basic_scheduler(models[0], "normal", 8, 0.0, &got));
    assert_sigmas(&got, NULL, 0);
    assert_int_equal(kiln_basic_scheduler(models[0], "karas", 8, 1.0, &got), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_basic_scheduler(models[0], "normal", 8, 1.5, &got), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "BasicScheduler: denoise 1.5"));
    assert_int_equal(kiln_sd_turbo_scheduler(models[0], 11, 1.0, &got), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "SDTurboScheduler: steps 11 is not in [1, 10]"));
    assert_int_equal(kiln_beta_sampling_scheduler(models[0], 8, 0.0, 0.6, &got), KILN_ERR_INVALID_ARG);
    kiln_model_free(models[0]);
    kiln_model_free(models[1]);
    kiln_backend_free(be);
}

/* SamplingPercentToSigma and AddNoise against ComfyUI's nodes restated
 * (tests/data/sigmas/add_noise.safetensors) on the tiny SD 1.x model (eps,
 * discrete) and the tiny FLUX.1 (flow, its latent format's shift): the
 * sigmas as the Python floats the node gives (the discrete table's float32
 * values exactly), the noisy latents (seeded torch noise, the latent format
 * applied and undone, an all-zero latent left unshifted). */
static void add_noise_matches_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *models[2];
    open_sd15_and(&be, "flux/tiny", models);
    kiln_st_file *f = NULL;
    assert_kiln_ok(kiln_st_open(kiln_test_data("sigmas/add_noise.safetensors"), &f));
    static const char *const names[2] = {"sd", "flux"};
    for (int k = 0; k < 2; k++) {
        char key[64];
        const kiln_st_tensor *percent, *sigma, *actual;
        snprintf(key, sizeof key, "%s.percent", names[k]);
        assert_non_null(percent = kiln_st_find(f, key));
        snprintf(key, sizeof key, "%s.sigma", names[k]);
        assert_non_null(sigma = kiln_st_find(f, key));
        snprintf(key, sizeof key, "%s.actual", names[k]);
        assert_non_null(actual = kiln_st_find(f, key));
        const double *p = (const double *)percent->data, *want = (const double *)sigma->data;
        for (int i = 0; i < 5; i++) {
            double got;
            assert_kiln_ok(kiln_sampling_percent_to_sigma(models[k], p[i], false, &got));
            if (fabs(got - want[i]) > 1e-12 * fabs(want[i]))
                fail_msg("%s: percent %g: sigma %.17g, ComfyUI %.17g", names[k], p[i], got, want[i]);
        }
        for (int i = 0; i < 2; i++) {
            double got;
            assert_kiln_ok(kiln_sampling_percent_to_sigma(models[k], i ? 1.0 : 0.0, true, &got));
            assert_true(got == ((const double *)actual->data)[i]);
        }
        static const char *const runs[2][4] = {{"latent", "sigmas", "noisy", "7"},
                                               {NULL, "one_sigma", "empty_noisy", "11"}};
        for (int r = 0; r < 2; r++) {
            float *sigmas, *want_noisy, *values = NULL;
            size_t nsigmas, n;
            snprintf(key, sizeof key, "%s.%s", names[k], runs[r][1]);
            assert_kiln_ok(kiln_st_read_f32(f, key, &sigmas, &nsigmas));
            snprintf(key, sizeof key, "%s.%s", names[k], runs[r][2]);
            assert_kiln_ok(kiln_st_read_f32(f, key, &want_noisy, &n));
            if (runs[r][0]) {
                snprintf(key, sizeof key, "%s.%s", names[k], runs[r][0]);
                assert_kiln_ok(kiln_st_read_f32(f, key, &values, &n));
            } else {
                assert_non_null(values = calloc(n, sizeof *values));
            }
            const kiln_latent latent = {values, 2, 4, 8, 6, NULL, 0, 0, NULL, NULL};
            const kiln_sigmas list = {sigmas, (int)nsigmas};
            kiln_latent noisy;
            assert_kiln_ok(kiln_add_noise(models[k], (uint64_t)atoi(runs[r][3]), false, &list, &latent, &noisy));
            assert_rel_l2_le(noisy.data, want_noisy, n, 1e-6);
            kiln_latent_free(&noisy);
            /* no noise: the latent through the format and back; no sigmas: the latent itself */
            assert_kiln_ok(kiln_add_noise(models[k], 7, true, &(kiln_sigmas){0}, &latent, &noisy));
            assert_memory_equal(noisy.data, values, n * sizeof *values);
            kiln_latent_free(&noisy);
            free(values);
            free(sigmas);
            free(want_noisy);
        }
    }
    double sigma;
    assert_int_equal(kiln_sampling_percent_to_sigma(models[0], 1.5, false, &sigma), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "sampling_percent 1.5"));
    kiln_st_close(f);
    kiln_model_free(models[0]);
    kiln_model_free(models[1]);
    kiln_backend_free(be);
}

/* SplitSigmas, SplitSigmasDenoise, FlipSigmas and SetFirstSigma cut and
 * turn the list as their Python slices do, ManualSigmas reads numbers as
 * ComfyUI's pattern finds them, and the nodes refuse what
 * ComfyUI's widgets (or its arithmetic) would. */
static void sigma_lists_cut_as_python_slices(void **state)
{
    (void)state;
    const float five[] = {5, 4, 3, 2, 1, 0};
    const kiln_sigmas s = {(float *)five, 6}, none = {NULL, 0};
    kiln_sigmas high, low, out;
    assert_kiln_ok(kiln_sigmas_split(&s, 2, &high, &low));
    assert_sigmas(&high, five, 3), assert_sigmas(&low, five + 2, 4);
    kiln_sigmas_free(&high), kiln_sigmas_free(&low);
    assert_kiln_ok(kiln_sigmas_split(&s, 0, &high, &low));
    assert_sigmas(&high, five, 1), assert_sigmas(&low, five, 6);
    kiln_sigmas_free(&high), kiln_sigmas_free(&low);
    assert_kiln_ok(kiln_sigmas_split(&s, 9, &high, &low));
    assert_sigmas(&high, five, 6), assert_sigmas(&low, NULL, 0);
    kiln_sigmas_free(&high), kiln_sigmas_free(&low);
    /* k = round(5 x denoise), half to even: 0.4 and 0.5 both keep 2 steps for low, 0.7 four */
    const struct {
        double denoise;
        int high, low;
    } denoise_cuts[] = {{0.4, 4, 3}, {0.5, 4, 3}, {0.7, 2, 5}, {1.0, 1, 6}, {0.0, 0, 1}};
    for (size_t i = 0; i < sizeof denoise_cuts / sizeof *denoise_cuts; i++) {
        assert_kiln_ok(kiln_sigmas_split_denoise(&s, denoise_cuts[i].denoise, &high, &low));
        assert_sigmas(&high, five, denoise_cuts[i].high);
        assert_sigmas(&low, five + 6 - denoise_cuts[i].low, denoise_cuts[i].low);
        kiln_sigmas_free(&high), kiln_sigmas_free(&low);
    }
    assert_kiln_ok(kiln_sigmas_split_denoise(&none, 0.5, &high, &low));
    assert_sigmas(&high, NULL, 0), assert_sigmas(&low, NULL, 0);
    assert_kiln_ok(kiln_sigmas_flip(&s, &out));
    const float flipped[] = {0.0001f, 1, 2, 3, 4, 5};
    assert_sigmas(&out, flipped, 6);
    kiln_sigmas_free(&out);
    assert_kiln_ok(kiln_sigmas_set_first(&s, 9.5, &out));
    const float first[] = {9.5f, 4, 3, 2, 1, 0};
    assert_sigmas(&out, first, 6);
    kiln_sigmas_free(&out);
    assert_int_equal(kiln_sigmas_set_first(&none, 1.0, &out), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_sigmas_split(&s, -1, &high, &low), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "SplitSigmas: step -1"));
    assert_int_equal(kiln_sigmas_split_denoise(&s, 1.5, &high, &low), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_sigmas_extend(&s, 2, -1.0, 0.0, "cubic", &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "spacing \"cubic\" (valid: linear, cosine, sine)"));
    assert_kiln_ok(kiln_sigmas_extend(&s, 2, 3.5, 1.0, "linear", &out)); /* 3, 2 and 1 get a point after them */
    const float extended[] = {5, 4, 3, 2.5f, 2, 1.5f, 1, 0.5f, 0};
    assert_sigmas(&out, extended, 9);
    kiln_sigmas_free(&out);

    /* ManualSigmas finds its numbers as ComfyUI's pattern [-+]?(?:\d*\.*\d+) does (Python's re.findall
       gives these lists) */
    const struct {
        const char *text;
        float want[5];
        int count;
    } manual[] = {{"1.0, 0.99375, 0.9875, 0.421875, 0.0", {1.0f, 0.99375f, 0.9875f, 0.421875f, 0.0f}, 5},
                  {"1., 0.5", {1.0f, 0.5f}, 2},
                  {"1e-3", {1.0f, -3.0f}, 2},
                  {"-.5, +2", {-0.5f, 2.0f}, 2},
                  {"1.2.3", {1.2f, 0.3f}, 2},
                  {"abc", {0}, 0}};
    for (size_t i = 0; i < sizeof manual / sizeof *manual; i++) {
        assert_kiln_ok(kiln_manual_sigmas(manual[i].text, &out));
        assert_sigmas(&out, manual[i].want, manual[i].count);
        kiln_sigmas_free(&out);
    }
    assert_int_equal(kiln_manual_sigmas("1, 1..5", &out), KILN_ERR_INVALID_ARG); /* float() refuses it in ComfyUI */
    assert_non_null(strstr(kiln_last_error(), "\"1..5\" in \"1, 1..5\" is not a number"));

    /* the scheduler nodes' refusals, each naming the node and its input */
    assert_int_equal(kiln_karras_scheduler(10, 14.6, 0.03, 0.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "KarrasScheduler: rho 0"));
    assert_int_equal(kiln_exponential_scheduler(10, 14.6, 0.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "ExponentialScheduler"));
    assert_int_equal(kiln_polyexponential_scheduler(0, 14.6, 0.03, 1.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "steps 0"));
    assert_int_equal(kiln_laplace_scheduler(10, 14.6, 0.03, 11.0, 0.5, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "mu 11"));
    assert_int_equal(kiln_vp_scheduler(10, 19.9, 0.1, 2.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "eps_s 2"));
    assert_int_equal(kiln_align_your_steps_scheduler("SD2", 10, 1.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "\"SD2\" (valid: SD1, SDXL, SVD)"));
    assert_int_equal(kiln_optimal_steps_scheduler("FLUX", 2, 1.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "OptimalStepsScheduler: steps 2 is not in [3, 10000]"));
    assert_kiln_ok(kiln_align_your_steps_scheduler("SDXL", 10, 0.0, &out));
    assert_sigmas(&out, NULL, 0);
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
        cmocka_unit_test(discrete_timestep_and_percent),
        cmocka_unit_test(flow_matches_torch),
        cmocka_unit_test(scheduler_nodes_match_comfyui),
        cmocka_unit_test(add_noise_matches_comfyui),
        cmocka_unit_test(sigma_lists_cut_as_python_slices),
        cmocka_unit_test(bad_arguments_are_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
