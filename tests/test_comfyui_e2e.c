/* End to end against ComfyUI: for every recorded run (samplers x schedulers,
 * img2img at denoise 0.6, a long and a weighted prompt, clip skip 2), kiln's
 * CLIPTextEncode gives the same conditionings from the prompt text, its
 * KSampler from the same conditionings and noise the same LATENT, and its
 * VAEDecode + SaveImage the same pixels.
 * The tiny model runs in f32 on the CPU, as ComfyUI did. */
#include "kiln_test.h"

#include <dirent.h>
#include <string.h>

#include "model.h"
#include "parity.h"
#include "tokenizer.h"

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
        parity_check_comfyui_run(model, tokenizer, e->d_name);
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
