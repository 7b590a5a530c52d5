/* Parity with upstream diffusers/transformers on the tiny random-weight SD 1.x
 * model: CLIP (last layer and clip skip 2), UNet noise prediction with every
 * block's output (also on a latent of odd size, 7x5), VAE decode and encode — from the f32 single file, the
 * diffusers folder, and the f16 single file. */
#include "kiln_test.h"

#include "parity.h"

/* f32 weights: the computation is the same math in the same precision, so
 * only summation order differs; 1e-4 is the bound. */
#define TOL_F32 1e-4
/* f16 weights: each weight is rounded to 11 significant bits (relative error
 * up to 2^-11 ~ 4.9e-4, uniform-ish so ~2.8e-4 RMS). A layer's output error is
 * that RMS times sqrt(fan-in)/sqrt(fan-in) ~ 3e-4 per layer, growing roughly
 * with sqrt(depth) through ~20 layers of the tiny UNet: ~1.5e-3, and the
 * random-weight model is not contractive, so allow 5x: 1e-2, the same bound
 * the design sets for reduced precision. */
#define TOL_F16 1e-2

static const parity_fixture single_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = TOL_F32};
static const parity_fixture diffusers_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_diffusers", .tol = TOL_F32};
static const parity_fixture single_f16 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors", .tol = TOL_F16};

#define CLIP "tiny/clip_text.safetensors"
#define UNET "tiny/unet.safetensors"
#define UNET_ODD "tiny/unet_odd.safetensors"
#define VAE "tiny/vae.safetensors"

static const char *const tiny_decodes[][2] = {{"dec8.z", "dec8.image"}, {"dec32.z", "dec32.image"}};

static void clip_single_f32(void **s) { (void)s; parity_check_clip(&single_f32, CLIP); }
static void clip_diffusers_f32(void **s) { (void)s; parity_check_clip(&diffusers_f32, CLIP); }
static void clip_single_f16(void **s) { (void)s; parity_check_clip(&single_f16, CLIP); }
static void unet_single_f32(void **s) { (void)s; parity_check_unet(&single_f32, UNET); }
static void unet_diffusers_f32(void **s) { (void)s; parity_check_unet(&diffusers_f32, UNET); }
static void unet_single_f16(void **s) { (void)s; parity_check_unet(&single_f16, UNET); }
static void unet_odd_f32(void **s) { (void)s; parity_check_unet(&single_f32, UNET_ODD); }
static void unet_odd_f16(void **s) { (void)s; parity_check_unet(&single_f16, UNET_ODD); }
static void vae_single_f32(void **s) { (void)s; parity_check_vae(&single_f32, VAE, tiny_decodes, 2); }
static void vae_diffusers_f32(void **s) { (void)s; parity_check_vae(&diffusers_f32, VAE, tiny_decodes, 2); }
static void vae_single_f16(void **s) { (void)s; parity_check_vae(&single_f16, VAE, tiny_decodes, 2); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_single_f32),  cmocka_unit_test(clip_diffusers_f32), cmocka_unit_test(clip_single_f16),
        cmocka_unit_test(unet_single_f32),  cmocka_unit_test(unet_diffusers_f32), cmocka_unit_test(unet_single_f16),
        cmocka_unit_test(unet_odd_f32),     cmocka_unit_test(unet_odd_f16),
        cmocka_unit_test(vae_single_f32),   cmocka_unit_test(vae_diffusers_f32),  cmocka_unit_test(vae_single_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
