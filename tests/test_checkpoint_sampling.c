/* Checkpoints that say how they sample, as ComfyUI's SDXL detection reads
 * them, and Playground v2.5's per-channel latent format: a Playground v2.5
 * run (continuous EDM sigmas, EDM's denoiser, the latent (z - mean[c]) 0.5 /
 * std[c]) on the tiny SDXL model against upstream diffusers'
 * StableDiffusionXLPipeline with EDMDPMSolverMultistepScheduler
 * (tests/data/model_sampling/playground.safetensors), reached three ways:
 * a single file with `edm_mean` and `edm_std`, ModelSamplingContinuousEDM
 * "edm_playground_v2.5", and a diffusers folder whose configs say so. Then
 * CosXL's `edm_vpred.sigma_max`, `ztsnr`, and bad flags and configs. */
#include "kiln_test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "golden.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sampler.h"

#define TINY_SDXL "sdxl/tiny_sdxl.safetensors"
#define TINY_SDXL_FOLDER "sdxl/tiny_sdxl_diffusers"
#define RUN "sdxl/golden.safetensors"
#define PLAYGROUND "model_sampling/playground.safetensors"
#define TOL 1e-4 /* as test_sdxl's runs: the same math in float32 */

static char dir[] = "/tmp/kiln_checkpoint_sampling_XXXXXX";

static int make_dir(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The tiny SDXL single file with one-number flag tensors added (a flag of
 * `two` numbers where two is set), as `name` in the test's folder. */
typedef struct flag {
    const char *name;
    float value;
} flag;

static const char *flagged_sdxl(const char *name, const flag *flags, int nflags, const char *two)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    kiln_st_file *plain;
    assert_kiln_ok(kiln_st_open(kiln_test_data(TINY_SDXL), &plain));
    const size_t n = kiln_st_count(plain);
    kiln_st_entry *e = calloc(n + (size_t)nflags, sizeof *e);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(plain, i);
        e[i] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    static const float pair[2] = {1.0f, 2.0f};
    for (int i = 0; i < nflags; i++) {
        const bool wide = two && strcmp(two, flags[i].name) == 0;
        e[n + i] = (kiln_st_entry){flags[i].name, KILN_F32, 1, {wide ? 2 : 1}, wide ? pair : &flags[i].value};
    }
    assert_kiln_ok(kiln_st_write(path, e, n + (size_t)nflags, NULL, 0));
    free(e);
    kiln_st_close(plain);
    return path;
}

/* The run golden's contexts and pooled outputs as conditionings. */
static void run_prompts(kiln_st_file *f, kiln_conditioning c[2], golden g[4])
{
    static const char *const names[4] = {"run.positive", "run.positive_pooled", "run.negative", "run.negative_pooled"};
    for (int i = 0; i < 4; i++) g[i] = golden_read(f, names[i]);
    for (int i = 0; i < 2; i++)
        c[i] = (kiln_conditioning){g[2 * i].data, (int)g[2 * i].shape[1], (int)g[2 * i].shape[2], g[2 * i + 1].data,
                                   (int)g[2 * i + 1].count};
}

/* KSampler dpmpp_2m, karras, 4 steps, cfg 5, seed 42 on one 8x8 latent and
 * VAEDecode, against diffusers' Playground v2.5 pipeline (its DPM-Solver++
 * 2M on Karras sigmas from 80 to 0.002, lower order at the end, is the same
 * method). */
static void check_playground_run(kiln_model *m)
{
    assert_int_equal(m->info.prediction, KILN_PREDICTION_EDM);
    assert_true(m->edm.on);
    assert_true(m->edm.sigma_min == 0.002 && m->edm.sigma_max == 80.0 && m->edm.sigma_data == 0.5);
    assert_non_null(m->vae.latents.mean);
    assert_true(m->vae.latents.scale == 0.5f);
    kiln_st_file *f = golden_open(RUN);
    kiln_conditioning c[2];
    golden g[4];
    run_prompts(f, c, g);
    kiln_sampling_job job = kiln_test_job("dpmpp_2m", "karras", 4, 5.0f, 42, 8, 8);
    parity_check_run(m, &job, &c[0], &c[1], PLAYGROUND, TOL);
    for (int i = 0; i < 4; i++) golden_free(&g[i]);
    kiln_st_close(f);
}

/* ComfyUI's process_in and process_out with Playground v2.5's numbers, per
 * channel, against the golden's own pair (the pipeline's final latent and
 * what it decodes). */
static void playground_latent_format(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(PLAYGROUND);
    golden x = golden_read(f, "run.edm_latent"), z = golden_read(f, "run.latent_out");
    const kiln_vae vae = {.config = kiln_vae_configs[0], .latents = kiln_playground_latents};
    assert_int_equal(vae.config->latent_channels, 4);
    float out[4 * 64], back[4 * 64];
    assert_int_equal(x.count, 4 * 64);
    kiln_vae_latent_out(&vae, x.data, x.count, 64, out);
    kiln_vae_latent_in(&vae, z.data, z.count, 64, back);
    assert_rel_l2_le(out, z.data, z.count, 1e-7);
    assert_rel_l2_le(back, x.data, x.count, 1e-6);
    golden_free(&x);
    golden_free(&z);
    kiln_st_close(f);
}

static void playground_file(void **state)
{
    (void)state;
    const flag flags[2] = {{"edm_mean", 0.0f}, {"edm_std", 1.0f}};
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(flagged_sdxl("playground", flags, 2, NULL), be, &m));
    assert_string_equal(m->info.prediction_reason, "edm_mean and edm_std tensors (Playground v2.5)");
    check_playground_run(m);
    /* ModelSamplingDiscrete keeps the model's latent format, as ComfyUI's does */
    assert_kiln_ok(kiln_model_set_prediction(m, "eps"));
    assert_false(m->edm.on);
    assert_non_null(m->vae.latents.mean);
    assert_kiln_ok(kiln_model_reset_sampling(m));
    check_playground_run(m);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The plain SDXL file patched by ModelSamplingContinuousEDM, and back. */
static void playground_node(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data(TINY_SDXL), be, &m));
    assert_null(m->vae.latents.mean);
    assert_kiln_ok(kiln_model_set_continuous_edm(m, "edm_playground_v2.5", 80.0, 0.002));
    check_playground_run(m);
    assert_kiln_ok(kiln_model_set_continuous_edm(m, "edm", 80.0, 0.002));
    assert_null(m->vae.latents.mean);
    assert_true(m->vae.latents.scale == 0.13025f);
    assert_kiln_ok(kiln_model_set_continuous_edm(m, "edm_playground_v2.5", 80.0, 0.002));
    assert_kiln_ok(kiln_model_reset_sampling(m));
    assert_false(m->edm.on);
    assert_null(m->vae.latents.mean);
    assert_int_equal(m->info.prediction, KILN_PREDICTION_EPS);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* The tiny SDXL folder as diffusers ships Playground v2.5: its parts linked,
 * vae/config.json with `vae_extra` added, scheduler/scheduler_config.json
 * `scheduler`. */
static const char *playground_folder(const char *name, const char *vae_extra, const char *scheduler)
{
    static char root[4096];
    char path[4096 + 64], target[4096 + 64];
    snprintf(root, sizeof root, "%s/%s", dir, name);
    assert_int_equal(mkdir(root, 0755), 0);
    static const char *const parts[4] = {"unet", "text_encoder", "text_encoder_2", "model_index.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(target, sizeof target, "%s/%s", kiln_test_data(TINY_SDXL_FOLDER), parts[i]);
        snprintf(path, sizeof path, "%s/%s", root, parts[i]);
        assert_int_equal(symlink(target, path), 0);
    }
    snprintf(path, sizeof path, "%s/vae", root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(target, sizeof target, "%s/vae/diffusion_pytorch_model.safetensors", kiln_test_data(TINY_SDXL_FOLDER));
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", root);
    assert_int_equal(symlink(target, path), 0);
    snprintf(target, sizeof target, "%s/vae/config.json", kiln_test_data(TINY_SDXL_FOLDER));
    size_t size;
    char *json = (char *)kiln_test_read_file(target, &size);
    cJSON *config = cJSON_ParseWithLength(json, size), *extra = cJSON_Parse(vae_extra);
    assert_non_null(config);
    assert_non_null(extra);
    for (cJSON *item = extra->child; item; item = item->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(config, item->string);
        cJSON_AddItemToObject(config, item->string, cJSON_Duplicate(item, true));
    }
    char *text = cJSON_Print(config);
    snprintf(path, sizeof path, "%s/vae/config.json", root);
    write_text(path, text);
    free(text);
    cJSON_Delete(config);
    cJSON_Delete(extra);
    free(json);
    snprintf(path, sizeof path, "%s/scheduler", root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", root);
    write_text(path, scheduler);
    return root;
}

#define PLAYGROUND_VAE                                                                                                \
    "{\"scaling_factor\": 0.5, \"latents_mean\": [-1.6574, 1.886, -1.383, 2.5155], \"latents_std\": [8.4927, "      \
    "5.9022, 6.5498, 5.2299]}"
#define PLAYGROUND_SCHEDULER                                                                                          \
    "{\"_class_name\": \"EDMDPMSolverMultistepScheduler\", \"sigma_min\": 0.002, \"sigma_max\": 80.0, "            \
    "\"sigma_data\": 0.5, \"sigma_schedule\": \"karras\", \"prediction_type\": \"epsilon\", \"rho\": 7.0}"

static void playground_diffusers_folder(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(playground_folder("folder", PLAYGROUND_VAE, PLAYGROUND_SCHEDULER), be, &m));
    assert_string_equal(m->info.prediction_reason, "scheduler_config.json");
    check_playground_run(m);
    kiln_model_free(m);
    /* configs that cannot be followed are refused, naming the file and the field */
    static const char *const bad[3][2] = {
        {"{\"latents_mean\": [0, 0, 0], \"latents_std\": [1, 1, 1]}", "latent channels"},
        {"{\"latents_mean\": [0, 0, 0, 0], \"latents_std\": [1, 1, 0, 1]}", "latents_std[2]"},
        {"{\"latents_mean\": [0, 0, 0, 0], \"latents_std\": [1, 1]}", "latents_std 2"},
    };
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "bad%d", i);
        assert_int_equal(kiln_model_load(playground_folder(name, bad[i][0], PLAYGROUND_SCHEDULER), be, &m),
                         KILN_ERR_MODEL);
        print_message("  %s\n", kiln_last_error());
        assert_non_null(strstr(kiln_last_error(), bad[i][1]));
    }
    assert_int_equal(kiln_model_load(playground_folder("bad_sigmas", PLAYGROUND_VAE,
                                                       "{\"_class_name\": \"EDMEulerScheduler\", \"sigma_min\": 90}"),
                                     be, &m),
                     KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "scheduler_config.json: sigma_min 90"));
    kiln_backend_free(be);
}

/* CosXL's flag: continuous sigmas to its sigma_max (from its sigma_min, else
 * 0.002), v with data std 1; `ztsnr` beside `v_pred`: zero terminal SNR. */
static void cosxl_and_ztsnr_flags(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    const flag cosxl[2] = {{"edm_vpred.sigma_max", 120.0f}, {"edm_vpred.sigma_min", 0.01f}};
    for (int n = 1; n <= 2; n++) {
        assert_kiln_ok(kiln_model_load(flagged_sdxl("cosxl", cosxl, n, NULL), be, &m));
        assert_int_equal(m->info.prediction, KILN_PREDICTION_V);
        assert_string_equal(m->info.prediction_reason, "edm_vpred.sigma_max tensor");
        assert_true(m->edm.on && m->edm.sigma_max == 120.0 && m->edm.sigma_data == 1.0);
        assert_true(m->edm.sigma_min == (n == 2 ? (double)0.01f : 0.002));
        assert_null(m->vae.latents.mean);
        kiln_model_free(m);
    }
    assert_int_equal(kiln_model_load(flagged_sdxl("cosxl_wide", cosxl, 1, "edm_vpred.sigma_max"), be, &m),
                     KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "edm_vpred.sigma_max holds 2 numbers"));
    const flag upside_down[2] = {{"edm_vpred.sigma_max", 1.0f}, {"edm_vpred.sigma_min", 2.0f}};
    assert_int_equal(kiln_model_load(flagged_sdxl("cosxl_bad", upside_down, 2, NULL), be, &m), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "edm_vpred.sigma_min is 2"));

    const flag zsnr[2] = {{"v_pred", 0.0f}, {"ztsnr", 0.0f}};
    for (int n = 1; n <= 2; n++) {
        assert_kiln_ok(kiln_model_load(flagged_sdxl("vpred", zsnr, n, NULL), be, &m));
        assert_int_equal(m->info.prediction, KILN_PREDICTION_V);
        assert_int_equal(m->zsnr, n == 2);
        assert_false(m->edm.on);
        /* ModelSamplingDiscrete says its own zsnr; a reset brings the file's back */
        assert_kiln_ok(kiln_model_set_zsnr(m, false));
        assert_kiln_ok(kiln_model_reset_sampling(m));
        assert_int_equal(m->zsnr, n == 2);
        kiln_model_free(m);
    }
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(playground_latent_format),
        cmocka_unit_test(playground_file),
        cmocka_unit_test(playground_node),
        cmocka_unit_test(playground_diffusers_folder),
        cmocka_unit_test(cosxl_and_ztsnr_flags),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
