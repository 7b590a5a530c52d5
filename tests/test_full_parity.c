/* Full-size SD 1.5 parity (slow): kiln on the hash-initialised checkpoint
 * against diffusers' outputs on the same file — CLIP-L last layer and clip
 * skip 2, the UNet at a 32x32 latent with every block, VAE decode 32x32 ->
 * 256x256 and encode; and the UNet with FreeU and FreeU_V2 (diffusers with
 * ComfyUI's patch restated, tests/data/freeu), whose decoder has blocks of
 * both widths FreeU keys on (1280 and 640). The goldens were computed in f32 from the F16 weights,
 * as kiln computes, so the f32 bound of 1e-4 applies. */
#include "kiln_test.h"

#include "full_checkpoint.h"
#include "parity.h"

static parity_fixture full = {.tol = 1e-4};
static const char *const decodes[][2] = {{"dec.z", "dec.image"}};

static void clip_full(void **s) { (void)s; parity_check_clip(&full, "full/clip_text.safetensors"); }
static void unet_full(void **s) { (void)s; parity_check_unet(&full, "full/unet.safetensors"); }
static void unet_full_freeu(void **s)
{
    (void)s;
    const kiln_freeu freeu = {1.1, 1.2, 0.9, 0.2, false}, freeu_v2 = {1.3, 1.4, 0.9, 0.2, true};
    parity_check_unet_patched(&full, "freeu/full.safetensors", "freeu.", &(parity_unet_patches){.freeu = &freeu});
    parity_check_unet_patched(&full, "freeu/full.safetensors", "freeu_v2.",
                              &(parity_unet_patches){.freeu = &freeu_v2});
}
static void vae_full(void **s) { (void)s; parity_check_vae(&full, "full/vae.safetensors", decodes, 1); }

int main(void)
{
    int rc;
    if (!(full.path = kiln_test_slow_checkpoint(&rc))) return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_full),
        cmocka_unit_test(unet_full),
        cmocka_unit_test(unet_full_freeu),
        cmocka_unit_test(vae_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
