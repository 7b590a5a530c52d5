/* Full-size SD 1.5 parity (slow) on the Vulkan backend: the checks of
 * test_full_parity.c (diffusers' outputs on the hash-initialised
 * checkpoint) run through the shaders at the real model's shapes, which the
 * tiny goldens do not reach: head dims 40 to 160, 77-token cross-attention,
 * GEMMs whose K (up to 23040) splits, the VAE's 256x256 convs. f32 compute
 * holds the f32 bound of 1e-4; the UNet again in f16 compute on the
 * tensor-core shaders (emulated matrices where the driver has none) holds
 * the f16 bound of 1e-2. On lavapipe where there is no GPU; in CI a missing
 * Vulkan device is a failure. */
#include "kiln_test.h"

#include <stdlib.h>

#include "backend_suite.h"
#include "full_checkpoint.h"
#include "parity.h"

static parity_fixture full_f32 = {.tol = 1e-4, .backend = "vulkan"};
static parity_fixture full_f16 = {.tol = 1e-2, .backend = "vulkan", .f16_compute = true};
static const char *const decodes[][2] = {{"dec.z", "dec.image"}};

static void clip_full(void **s) { (void)s; parity_check_clip(&full_f32, "full/clip_text.safetensors"); }
static void unet_full(void **s) { (void)s; parity_check_unet(&full_f32, "full/unet.safetensors"); }
static void vae_full(void **s) { (void)s; parity_check_vae(&full_f32, "full/vae.safetensors", decodes, 1); }
static void unet_full_f16(void **s) { (void)s; parity_check_unet(&full_f16, "full/unet.safetensors"); }

int main(void)
{
    static const char *const required[] = {"CI", "KILN_REQUIRE_VULKAN", NULL};
    setenv("KILN_VULKAN_EMULATE_COOPMAT", "1", 1);
    int rc;
    if (!(full_f32.path = full_f16.path = kiln_test_slow_checkpoint(&rc))) return rc;
    if (!backend_available("vulkan", required, &rc)) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_full),
        cmocka_unit_test(unet_full),
        cmocka_unit_test(vae_full),
        cmocka_unit_test(unet_full_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
