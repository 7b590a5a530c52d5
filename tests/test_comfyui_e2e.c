/* End to end against ComfyUI: for every recorded run (samplers x schedulers,
 * img2img at denoise 0.6, a long and a weighted prompt, clip skip 2), kiln's
 * CLIPTextEncode gives the same conditionings from the prompt text, its
 * KSampler from the same conditionings and noise the same LATENT, and its
 * VAEDecode + SaveImage the same pixels.
 * The tiny model runs in f32 on the CPU, as ComfyUI did. */
#include "kiln_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "image.h"
#include "pipeline.h"
#include "tokenizer.h"

/* The bound for f32 final latents. */
#define LATENT_TOL 1e-4

static kiln_backend *backend;
static kiln_model *model;
static kiln_tokenizer *tokenizer;

static int setup(void **state)
{
    (void)state;
    if (kiln_backend_cpu_create(NULL, &backend) != KILN_OK || kiln_tokenizer_create(&tokenizer) != KILN_OK) return -1;
    return kiln_model_load(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), backend, &model) == KILN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kiln_model_free(model);
    kiln_backend_free(backend);
    kiln_tokenizer_free(tokenizer);
    return 0;
}

static kiln_conditioning conditioning(kiln_st_file *f, const char *name)
{
    golden g = golden_read(f, name);
    return (kiln_conditioning){g.data, (int)g.shape[1], (int)g.shape[2]};
}

static const char *meta(kiln_st_file *f, const char *key)
{
    const char *v = kiln_st_metadata(f, key);
    if (!v) fail_msg("%s: no metadata '%s'", kiln_st_path(f), key);
    return v;
}

static void check_run(const char *file)
{
    char rel[512];
    snprintf(rel, sizeof rel, "comfyui_e2e/%s", file);
    kiln_st_file *f = golden_open(rel);
    kiln_sampling_job job = {0};
    assert_kiln_ok(kiln_sampler_from_name(meta(f, "sampler_name"), &job.sampler));
    assert_kiln_ok(kiln_scheduler_from_name(meta(f, "scheduler"), &job.scheduler));
    job.steps = atoi(meta(f, "steps"));
    job.cfg = strtof(meta(f, "cfg"), NULL);
    job.denoise = strtod(meta(f, "denoise"), NULL);
    job.seed = strtoull(meta(f, "seed"), NULL, 10);
    job.batch = atoi(meta(f, "batch_size"));
    golden noise = golden_read(f, "noise"), want = golden_read(f, "latent_out"), pixels = golden_read(f, "image_uint8");
    golden init = {0};
    if (kiln_st_find(f, "latent_in")) init = golden_read(f, "latent_in");
    job.latent_h = (int)noise.shape[2];
    job.latent_w = (int)noise.shape[3];
    job.noise = noise.data;
    job.init_latent = init.data;
    kiln_conditioning pos = conditioning(f, "positive.cond"), neg = conditioning(f, "negative.cond");
    print_message("%-40s", file);
    int clip_skip = atoi(meta(f, "clip_skip"));
    const char *texts[2] = {meta(f, "positive_prompt"), meta(f, "negative_prompt")};
    const kiln_conditioning *want_cond[2] = {&pos, &neg};
    for (int i = 0; i < 2; i++) {
        kiln_conditioning c;
        assert_kiln_ok(kiln_encode_prompt(model, tokenizer, texts[i], clip_skip, &c));
        assert_int_equal(c.tokens, want_cond[i]->tokens);
        assert_rel_l2_le(c.data, want_cond[i]->data, (size_t)c.tokens * c.dim, LATENT_TOL);
        kiln_conditioning_free(&c);
    }

    float *latent = NULL, *decoded = NULL;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, LATENT_TOL);

    assert_kiln_ok(kiln_vae_decode_latent(model, latent, job.batch, job.latent_h, job.latent_w, &decoded));
    int H = (int)pixels.shape[1], W = (int)pixels.shape[2];
    int worst = 0;
    for (int b = 0; b < job.batch; b++) {
        kiln_image img;
        assert_kiln_ok(kiln_image_from_decoded(decoded + (size_t)b * 3 * H * W, H, W, &img));
        for (int i = 0; i < H * W * 3; i++) {
            int d = abs((int)img.pixels[i] - (int)pixels.data[(size_t)b * H * W * 3 + i]);
            if (d > worst) worst = d;
        }
        kiln_image_free(&img);
    }
    /* the README's bound: uint8 images within 1 level */
    if (worst > 1) fail_msg("%s: pixels differ by %d levels", file, worst);
    free(latent);
    free(decoded);
    golden_free(&noise);
    golden_free(&want);
    golden_free(&pixels);
    golden_free(&init);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_st_close(f);
}

static void all_runs(void **state)
{
    (void)state;
    DIR *dir = opendir(kiln_test_data("comfyui_e2e"));
    assert_non_null(dir);
    int runs = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        check_run(e->d_name);
        runs++;
    }
    closedir(dir);
    assert_true(runs >= 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(all_runs)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
