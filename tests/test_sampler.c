/* Samplers against ComfyUI without the model: a mock denoiser replays the
 * golden run's UNet calls. For call k it checks that the sampler asks at the
 * same point (x / sqrt(sigma^2 + 1) equals the golden UNet input, and sigma
 * maps to the golden timestep) and answers x - sigma * eps_k with the
 * golden guided eps, so every x update the sampler makes is its own and
 * shows up in the next call's input and in the final latent. */
#include "kiln_test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "safetensors.h"
#include "sampler.h"
#include "schedule.h"
#include "status.h"

#define SEED 42
#define TOLERANCE 1e-5

static kiln_model_sampling sd15;
static kiln_st_file *data;

static int setup(void **state)
{
    (void)state;
    if (kiln_model_sampling_init(&sd15, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END) != KILN_OK) return -1;
    return kiln_st_open(kiln_test_data("comfyui/samplers.safetensors"), &data) == KILN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kiln_st_close(data);
    return 0;
}

static float *read_tensor(const char *run, const char *field, size_t *count)
{
    char name[160];
    snprintf(name, sizeof name, "%s.%s", run, field);
    float *v = NULL;
    assert_kiln_ok(kiln_st_read_f32(data, name, &v, count));
    return v;
}

typedef struct replay {
    const char *run;
    size_t n;          /* latent floats (B x 4 x 8 x 8) */
    float *eps, *xc, *t;
    size_t calls, call; /* golden UNet calls, calls made so far */
    double worst_input;
    int progress_calls;
} replay;

static kiln_status replay_denoise(void *ctx, const float *x, float sigma, float *denoised)
{
    replay *r = ctx;
    if (r->call >= r->calls) fail_msg("%s: more than the %zu UNet calls ComfyUI made", r->run, r->calls);
    const float *eps = r->eps + r->call * r->n, *xc = r->xc + r->call * r->n;
    int t = kiln_sigma_to_timestep(&sd15, sigma);
    if (t != (int)r->t[r->call])
        fail_msg("%s: call %zu at sigma %.7g (timestep %d), ComfyUI's was timestep %d", r->run, r->call,
                 (double)sigma, t, (int)r->t[r->call]);
    float *input = malloc(r->n * sizeof *input);
    assert_non_null(input);
    float c_in = 1.0f / sqrtf(sigma * sigma + 1.0f);
    for (size_t j = 0; j < r->n; j++) input[j] = x[j] * c_in;
    double err = kiln_rel_l2(input, xc, r->n);
    free(input);
    if (!(err <= TOLERANCE)) fail_msg("%s: call %zu input rel L2 %.3g from ComfyUI's", r->run, r->call, err);
    if (err > r->worst_input) r->worst_input = err;
    for (size_t j = 0; j < r->n; j++) denoised[j] = x[j] - eps[j] * sigma;
    r->call++;
    return KILN_OK;
}

static kiln_status count_progress(void *ctx, int step, int total, const float *denoised)
{
    replay *r = ctx;
    assert_int_equal(step, r->progress_calls);
    assert_non_null(denoised);
    (void)total;
    r->progress_calls++;
    return KILN_OK;
}

/* Replays golden run `run` with `sampler` (and eta) and checks every model
 * input and the final latent. */
static void replay_run(const char *run, kiln_sampler sampler, float eta)
{
    replay r = {.run = run};
    size_t nsigmas, n_init, n_final, n_eps, n_xc, n_t;
    float *sigmas = read_tensor(run, "sigmas", &nsigmas);
    float *x = read_tensor(run, "x_init", &n_init);
    float *x_final = read_tensor(run, "x_final", &n_final);
    r.eps = read_tensor(run, "eps", &n_eps);
    r.xc = read_tensor(run, "xc", &n_xc);
    r.t = read_tensor(run, "t", &n_t);
    r.n = n_init;
    r.calls = n_t;
    assert_int_equal(n_eps, r.calls * r.n);
    assert_int_equal(n_xc, r.calls * r.n);

    kiln_sample_args args;
    kiln_sample_args_init(&args);
    args.sampler = sampler;
    args.sigmas = sigmas;
    args.nsigmas = nsigmas;
    args.n = r.n;
    args.denoise = replay_denoise;
    args.denoise_ctx = &r;
    args.seed = SEED;
    args.eta = eta;
    args.progress = count_progress;
    args.progress_ctx = &r;
    assert_kiln_ok(kiln_sample(&args, x));

    if (r.call != r.calls) fail_msg("%s: %zu UNet calls, ComfyUI made %zu", run, r.call, r.calls);
    assert_int_equal(r.progress_calls, (int)nsigmas - 1);
    double err = kiln_rel_l2(x, x_final, r.n);
    print_message("  %-38s %-18s eta %g: %2zu calls, inputs rel L2 <= %.2g, x_final rel L2 %.2g\n", run,
                  kiln_sampler_name(sampler), (double)eta, r.calls, r.worst_input, err);
    if (!(err <= TOLERANCE)) fail_msg("%s: x_final rel L2 %.3g > %g", run, err, TOLERANCE);
    free(sigmas);
    free(x);
    free(x_final);
    free(r.eps);
    free(r.xc);
    free(r.t);
}

/* Every sampler run in the data (16 samplers x normal, two img2img), with
 * the default noise for the seed: a torch generator for the ancestral
 * samplers and lcm, torchsde's Brownian tree for the SDE samplers. */
static void every_sampler_matches_comfyui(void **state)
{
    (void)state;
    int runs = 0;
    for (size_t i = 0; i < kiln_st_count(data); i++) {
        const char *name = kiln_st_at(data, i)->name;
        size_t len = strlen(name);
        if (len < 5 || strcmp(name + len - 4, ".eps") != 0) continue;
        char run[128], key[160];
        snprintf(run, sizeof run, "%.*s", (int)(len - 4), name);
        snprintf(key, sizeof key, "%s.settings", run);
        cJSON *settings = cJSON_Parse(kiln_st_metadata(data, key));
        assert_non_null(settings);
        kiln_sampler sampler;
        assert_kiln_ok(kiln_sampler_from_name(cJSON_GetObjectItem(settings, "sampler_name")->valuestring, &sampler));
        cJSON_Delete(settings);
        replay_run(run, sampler, 1.0f);
        runs++;
    }
    assert_int_equal(runs, 18);
}

/* With eta = 0 the DPM-Solver++(2M) SDE is the deterministic 2M solver:
 * replaying the dpmpp_2m run must give its result, with no noise drawn. */
static void dpmpp_2m_sde_without_noise_is_dpmpp_2m(void **state)
{
    (void)state;
    replay_run("txt2img_dpmpp_2m_normal_s8", KILN_SAMPLER_DPMPP_2M_SDE, 0.0f);
}

/* KSampler's start latent, bit for bit: txt2img at sigma_max scales the noise
 * by sqrt(1 + sigma^2); img2img at a lower sigma scales by sigma and adds the
 * VAE latent times 0.18215. */
static void start_x_matches_comfyui(void **state)
{
    (void)state;
    const char *modes[] = {"txt2img", "img2img"};
    const char *runs[] = {"txt2img_euler_normal_s8", "img2img_d0.6_euler_normal_s8"};
    for (int m = 0; m < 2; m++) {
        size_t n, n_init, nsigmas, n_latent;
        float *noise = read_tensor(modes[m], "noise", &n);
        float *want = read_tensor(modes[m], "x_init", &n_init);
        float *sigmas = read_tensor(runs[m], "sigmas", &nsigmas);
        float *latent = NULL;
        if (m == 1) {
            latent = read_tensor(modes[m], "latent_in", &n_latent);
            for (size_t j = 0; j < n_latent; j++) latent[j] = latent[j] * 0.18215f;
        }
        float *x = malloc(n * sizeof *x);
        assert_non_null(x);
        kiln_sampler_start_x(&sd15, sigmas[0], noise, latent, x, n);
        for (size_t j = 0; j < n; j++)
            if (x[j] != want[j]) fail_msg("%s start x[%zu] = %.9g, ComfyUI %.9g", modes[m], j, (double)x[j],
                                          (double)want[j]);
        free(noise);
        free(want);
        free(sigmas);
        free(latent);
        free(x);
    }
}

static kiln_status zero_denoise(void *ctx, const float *x, float sigma, float *denoised)
{
    (void)ctx;
    (void)x;
    (void)sigma;
    denoised[0] = 0.0f;
    return KILN_OK;
}

static kiln_status stop_at_step_2(void *ctx, int step, int total, const float *denoised)
{
    (void)ctx;
    (void)total;
    (void)denoised;
    if (step == 2) return kiln_fail(KILN_ERR_INVALID_ARG, "cancelled at step 2");
    return KILN_OK;
}

static kiln_status never_called(void *ctx, const float *x, float sigma, float *denoised)
{
    (void)ctx;
    (void)x;
    (void)sigma;
    (void)denoised;
    fail_msg("the model was called for a refused run");
    return KILN_OK;
}

/* The mock model of tests/data/samplers: the guided x0 prediction 0.75 x +
 * 0.1 sigma tanh(x) and the unconditional 0.7 x - 0.05 sigma; noise from the
 * pool in order. */
typedef struct mock_run {
    const float *pool;
    size_t n, pool_draws;
    int calls, draws;
    float last_sigma;
    const float *last_x;
} mock_run;

static kiln_status mock_denoise(void *ctx, const float *x, float sigma, float *denoised)
{
    mock_run *m = ctx;
    for (size_t j = 0; j < m->n; j++) denoised[j] = x[j] * 0.75f + 0.1f * sigma * tanhf(x[j]);
    m->calls++;
    m->last_sigma = sigma;
    m->last_x = x;
    return KILN_OK;
}

/* reads the last call's x, which the samplers keep until they take it */
static kiln_status mock_uncond(void *ctx, float *uncond)
{
    mock_run *m = ctx;
    for (size_t j = 0; j < m->n; j++) uncond[j] = m->last_x[j] * 0.7f - 0.05f * m->last_sigma;
    return KILN_OK;
}

static kiln_status mock_noise(void *ctx, float sigma, float sigma_next, float *noise, size_t n)
{
    mock_run *m = ctx;
    (void)sigma;
    (void)sigma_next;
    if ((size_t)m->draws >= m->pool_draws) fail_msg("more than the pool's %zu noise draws", m->pool_draws);
    memcpy(noise, m->pool + (size_t)m->draws * n, n * sizeof *noise);
    m->draws++;
    return KILN_OK;
}

/* One golden run of tests/data/samplers: `args` (sampler, settings, flow)
 * from the case's start over its sigmas, against <key>.x, .calls and .draws. */
static void check_newer_run(kiln_st_file *f, const char *key, kiln_sample_args *args, const float *start,
                            const golden *pool)
{
    const size_t n = args->n;
    golden want = golden_field(f, key, "x"), calls = golden_field(f, key, "calls"), draws = golden_field(f, key, "draws");
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t j = 0; j < n; j++) x[j] = start[j] * args->sigmas[0];
    mock_run mock = {.pool = pool->data, .n = n, .pool_draws = pool->count / n};
    args->denoise = mock_denoise;
    args->uncond = mock_uncond;
    args->denoise_ctx = &mock;
    args->noise = mock_noise;
    args->noise_ctx = &mock;
    assert_kiln_ok(kiln_sample(args, x));
    double err = kiln_rel_l2(x, want.data, n);
    print_message("  %-40s %2d calls, %2d draws, x rel L2 %.2g\n", key, mock.calls, mock.draws, err);
    if (!(err <= TOLERANCE)) fail_msg("%s: x rel L2 %.3g > %g", key, err, TOLERANCE);
    if (mock.calls != (int)calls.data[0]) fail_msg("%s: %d model calls, ComfyUI %g", key, mock.calls, calls.data[0]);
    /* res_multistep and its CFG++ kind draw like ComfyUI's ancestral one and add the draws times 0 */
    const bool noisy = kiln_sampler_noise_kind(args->sampler) != KILN_SAMPLER_NOISE_NONE || args->dpm_noise;
    int want_draws = noisy ? (int)draws.data[0] : 0;
    if (mock.draws != want_draws) fail_msg("%s: %d noise draws, ComfyUI %d", key, mock.draws, want_draws);
    golden_free(&want), golden_free(&calls), golden_free(&draws);
    free(x);
}

/* The custom sampler nodes' settings in tests/data/samplers: SamplerER_SDE's
 * reverse-time SDE (eta 0.5: lambda^1.5) and ODE at max_stage 2,
 * SamplerSEEDS2's phi_2 at r 0.7 and as exp_heun_2_x0 (phi_2, r 1, eta 0),
 * SamplerSASolver's orders 2 and 1 with simple_order_2 at eta 0.6 over 0.1
 * to 0.9 of the sampling, and orders 5 and 6 with PECE, SamplerEulerCFGpp's
 * alternative version; and uni_pc (bh1),
 * which the recorded ComfyUI runs check, to check the restated UniPC that
 * uni_pc_bh2 is checked against. */
static const struct sampler_variant {
    const char *key;
    kiln_sampler sampler;
    float eta, s_noise;
    int max_stage;
    double er_sde_power, seeds_r;
    bool seeds_phi_2;
    int predictor, corrector;
    bool simple, custom_interval, euler_pp;
} sampler_variants[] = {
    {"uni_pc", KILN_SAMPLER_UNI_PC, 1.0f, 1.0f, 3, 0.0, 0.5, false, 3, 4, false, false, false},
    {"er_sde.reverse_eta05", KILN_SAMPLER_ER_SDE, 1.0f, 1.0f, 3, 1.5, 0.5, false, 3, 4, false, false, false},
    {"er_sde.ode_stage2", KILN_SAMPLER_ER_SDE, 1.0f, 0.0f, 2, 1.0, 0.5, false, 3, 4, false, false, false},
    {"seeds_2.phi_2_r07", KILN_SAMPLER_SEEDS_2, 1.0f, 1.0f, 3, 0.0, 0.7, true, 3, 4, false, false, false},
    {"seeds_2.exp_heun", KILN_SAMPLER_SEEDS_2, 0.0f, 0.0f, 3, 0.0, 1.0, true, 3, 4, false, false, false},
    {"sa_solver.p2_c1_simple_eta06", KILN_SAMPLER_SA_SOLVER, 0.6f, 1.0f, 3, 0.0, 0.5, false, 2, 1, true, true, false},
    {"sa_solver_pece.p5_c6", KILN_SAMPLER_SA_SOLVER_PECE, 1.0f, 1.0f, 3, 0.0, 0.5, false, 5, 6, false, false, false},
    {"euler_cfg_pp.alternative", KILN_SAMPLER_EULER_CFG_PP, 1.0f, 1.0f, 3, 0.0, 0.5, false, 3, 4, false, false, true},
};

/* ComfyUI's newer samplers against its code restated on the mock model
 * (tests/data/samplers): SD 1.x's karras schedule, its first 5 steps ending
 * above 0, and SD3's flow schedule; KSampler's settings and the custom
 * sampler nodes'. Scalars in double against ComfyUI's float32, so within
 * 1e-5. */
static void newer_samplers_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("samplers/samplers.safetensors");
    golden start = golden_read(f, "x"), pool = golden_read(f, "noise");
    static const char *const cases[] = {"sd15", "sd15_cut", "sd3"};
    int runs = 0;
    for (size_t c = 0; c < 3; c++) {
        golden sigmas = golden_field(f, cases[c], "sigmas"), first = golden_field(f, cases[c], "first_sigma"),
               sa = golden_field(f, cases[c], "sa_sigmas"), custom = golden_field(f, cases[c], "sa_custom_sigmas");
        const size_t nvariants = sizeof sampler_variants / sizeof *sampler_variants;
        const int nsamplers = KILN_SAMPLER_COUNT - KILN_SAMPLER_RES_MULTISTEP;
        for (size_t k = 0; k < (size_t)nsamplers + nvariants; k++) {
            char key[128];
            kiln_sample_args args;
            kiln_sample_args_init(&args);
            args.sigmas = sigmas.data;
            args.nsigmas = sigmas.count;
            args.n = start.count;
            args.flow = c == 2;
            args.flow_first_sigma = first.data[0];
            memcpy(args.sa_solver_sigmas, sa.data, sizeof args.sa_solver_sigmas);
            if (k < (size_t)nsamplers) {
                args.sampler = (kiln_sampler)(KILN_SAMPLER_RES_MULTISTEP + (int)k);
                snprintf(key, sizeof key, "%s.%s", cases[c], kiln_sampler_name(args.sampler));
            } else {
                const struct sampler_variant *v = &sampler_variants[k - (size_t)nsamplers];
                args.sampler = v->sampler, args.eta = v->eta, args.s_noise = v->s_noise;
                args.max_stage = v->max_stage, args.er_sde_power = v->er_sde_power;
                args.seeds_r = v->seeds_r, args.seeds_phi_2 = v->seeds_phi_2;
                args.sa_predictor_order = v->predictor, args.sa_corrector_order = v->corrector;
                args.sa_simple_order_2 = v->simple;
                args.euler_pp = v->euler_pp;
                if (v->custom_interval) memcpy(args.sa_solver_sigmas, custom.data, sizeof args.sa_solver_sigmas);
                snprintf(key, sizeof key, "%s.%s", cases[c], v->key);
            }
            check_newer_run(f, key, &args, start.data, &pool);
            runs++;
        }
        golden_free(&sigmas), golden_free(&first), golden_free(&sa), golden_free(&custom);
    }
    assert_int_equal(runs, 3 * (KILN_SAMPLER_COUNT - KILN_SAMPLER_RES_MULTISTEP + 8));
    golden_free(&start), golden_free(&pool);
    kiln_st_close(f);
}

/* SamplerDPMAdaptative's settings against k-diffusion's adaptive DPM-Solver
 * restated (tests/data/samplers/dpm_adaptive.safetensors, whose script
 * checks its restatement against the torch one of KSampler's
 * dpm_adaptive): order 2; tolerances 0.02 and 0.005, a first step of 0.1,
 * PID coefficients 0.3, 0.9 and 0.2 and acceptance at 0.9; eta 0.5 with
 * s_noise 0.9 (a noise draw each step taken). */
static void dpm_adaptive_settings_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("samplers/samplers.safetensors"), *v = golden_open("samplers/dpm_adaptive.safetensors");
    golden start = golden_read(f, "x"), pool = golden_read(f, "noise");
    static const struct {
        const char *key;
        int order;
        double rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept;
        float eta, s_noise;
    } variants[] = {
        {"order2", 2, 0.05, 0.0078, 0.05, 0.0, 1.0, 0.0, 0.81, 0.0f, 1.0f},
        {"pid", 3, 0.02, 0.005, 0.1, 0.3, 0.9, 0.2, 0.9, 0.0f, 1.0f},
        {"eta05", 3, 0.05, 0.0078, 0.05, 0.0, 1.0, 0.0, 0.81, 0.5f, 0.9f},
    };
    static const char *const cases[] = {"sd15", "sd15_cut", "sd3"};
    for (size_t c = 0; c < 3; c++) {
        golden sigmas = golden_field(f, cases[c], "sigmas");
        for (size_t k = 0; k < sizeof variants / sizeof *variants; k++) {
            kiln_sample_args args;
            kiln_sample_args_init(&args);
            args.sampler = KILN_SAMPLER_DPM_ADAPTIVE;
            args.sigmas = sigmas.data, args.nsigmas = sigmas.count, args.n = start.count;
            args.dpm_order = variants[k].order, args.dpm_rtol = variants[k].rtol, args.dpm_atol = variants[k].atol;
            args.dpm_h_init = variants[k].h_init, args.dpm_pcoeff = variants[k].pcoeff;
            args.dpm_icoeff = variants[k].icoeff, args.dpm_dcoeff = variants[k].dcoeff;
            args.dpm_accept_safety = variants[k].accept;
            args.dpm_noise = true, args.eta = variants[k].eta, args.s_noise = variants[k].s_noise;
            char key[128];
            snprintf(key, sizeof key, "%s.dpm_adaptive.%s", cases[c], variants[k].key);
            check_newer_run(v, key, &args, start.data, &pool);
        }
        golden_free(&sigmas);
    }
    golden_free(&start), golden_free(&pool);
    kiln_st_close(v), kiln_st_close(f);
}

/* Runs that must be refused before any model call: a flow model's SDE
 * samplers step in half-log-SNR, infinite at sigma 1, so a schedule from 1
 * needs the first sigma ComfyUI puts below it; a CFG++ sampler needs the
 * unconditional prediction. */
static void refused_before_the_model(void **state)
{
    (void)state;
    static const struct {
        kiln_sampler sampler;
        bool flow;
        const char *needle;
    } cases[] = {{KILN_SAMPLER_DPMPP_2M_SDE, true, "flow_first_sigma"},
                 {KILN_SAMPLER_EULER_CFG_PP, false, "euler_cfg_pp: a CFG++ sampler needs the unconditional"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        float sigmas[] = {1.0f, 0.5f, 0.0f}, x[4] = {0};
        kiln_sample_args args;
        kiln_sample_args_init(&args);
        args.sampler = cases[k].sampler;
        args.flow = cases[k].flow;
        args.sigmas = sigmas;
        args.nsigmas = 3;
        args.n = 4;
        args.denoise = never_called;
        assert_int_equal(kiln_sample(&args, x), KILN_ERR_INVALID_ARG);
        assert_non_null(strstr(kiln_last_error(), cases[k].needle));
    }
}

static void bad_arguments_are_errors(void **state)
{
    (void)state;
    kiln_sampler sampler;
    assert_int_equal(kiln_sampler_from_name("euler_a", &sampler), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "\"euler_a\""));
    assert_non_null(strstr(kiln_last_error(), "euler_ancestral"));
    assert_kiln_ok(kiln_sampler_from_name("dpmpp_2m_sde_heun_gpu", &sampler)); /* ComfyUI's run without a GPU */
    assert_int_equal(sampler, KILN_SAMPLER_DPMPP_2M_SDE_HEUN);
    for (int s = 0; s < KILN_SAMPLER_COUNT; s++) {
        assert_kiln_ok(kiln_sampler_from_name(kiln_sampler_name((kiln_sampler)s), &sampler));
        assert_int_equal(sampler, s);
    }

    float sigmas[4] = {2.0f, 1.0f, 0.5f, 0.0f}, x[1] = {1.0f};
    kiln_sample_args args;
    kiln_sample_args_init(&args);
    args.sigmas = sigmas;
    args.nsigmas = 4;
    args.n = 1;
    assert_int_equal(kiln_sample(&args, x), KILN_ERR_INVALID_ARG); /* no denoiser */
    assert_non_null(strstr(kiln_last_error(), "denoiser"));
    args.denoise = zero_denoise;
    sigmas[1] = NAN;
    assert_int_equal(kiln_sample(&args, x), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "sigma 1"));
    sigmas[1] = 0.0f;
    assert_int_equal(kiln_sample(&args, x), KILN_ERR_INVALID_ARG);
    sigmas[1] = 1.0f;
    args.progress = stop_at_step_2;
    assert_int_equal(kiln_sample(&args, x), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "cancelled at step 2"));
    /* euler to a zero x0 prediction halves x, then halves it again, then lands on 0 */
    args.progress = NULL;
    x[0] = 1.0f;
    assert_kiln_ok(kiln_sample(&args, x));
    assert_float_equal(x[0], 0.0f, 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_x_matches_comfyui),
        cmocka_unit_test(every_sampler_matches_comfyui),
        cmocka_unit_test(dpmpp_2m_sde_without_noise_is_dpmpp_2m),
        cmocka_unit_test(refused_before_the_model),
        cmocka_unit_test(newer_samplers_match_comfyui),
        cmocka_unit_test(dpm_adaptive_settings_match_comfyui),
        cmocka_unit_test(bad_arguments_are_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
