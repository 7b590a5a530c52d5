#include "backend_suite.h"

#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "kiln_test.h"
#include "model.h"
#include "parity.h"
#include "tokenizer.h"

bool backend_available(const char *name, const char *const required_env[], int *exit_code)
{
    kiln_backend *be;
    if (kiln_backend_create(name, NULL, &be) == KILN_OK) {
        printf("%s backend: %s\n", name, be->device_name);
        kiln_backend_free(be);
        return true;
    }
    for (int i = 0; required_env && required_env[i]; i++) {
        if (getenv(required_env[i])) {
            printf("FAILED: no %s device although %s is set: %s\n", name, required_env[i], kiln_last_error());
            *exit_code = 1;
            return false;
        }
    }
    printf("skipped: no %s device: %s\n", name, kiln_last_error());
    *exit_code = KILN_TEST_SKIP;
    return false;
}

/* ---- the model-level suite on a GPU backend ---- */

static parity_fixture gpu_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = 1e-4};
/* f16 weights in f16 compute (tensor cores): the bound of the CPU f16 test */
static parity_fixture gpu_f16 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors", .tol = 1e-2,
                                 .f16_compute = true};
static const char *const gpu_decodes[][2] = {{"dec8.z", "dec8.image"}, {"dec32.z", "dec32.image"}};

static void clip_f32(void **s) { (void)s; parity_check_clip(&gpu_f32, "tiny/clip_text.safetensors"); }
static void unet_f32(void **s) { (void)s; parity_check_unet(&gpu_f32, "tiny/unet.safetensors"); }
static void vae_f32(void **s) { (void)s; parity_check_vae(&gpu_f32, "tiny/vae.safetensors", gpu_decodes, 2); }
static void unet_f16(void **s) { (void)s; parity_check_unet(&gpu_f16, "tiny/unet.safetensors"); }

static void txt2img_run(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create(gpu_f32.backend, NULL, &be));
    assert_kiln_ok(kiln_model_load(gpu_f32.path, be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    parity_check_comfyui_run(m, tok, "txt2img_dpmpp_2m_karras_s8.safetensors");
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int parity_gpu_main(const char *backend, const char *const required_env[])
{
    int rc;
    if (!backend_available(backend, required_env, &rc)) return rc;
    gpu_f32.backend = gpu_f16.backend = backend;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_f32), cmocka_unit_test(unet_f32), cmocka_unit_test(vae_f32),
        cmocka_unit_test(unet_f16), cmocka_unit_test(txt2img_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
