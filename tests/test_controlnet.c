/* ControlNet on the tiny SD 1.x model against upstream diffusers
 * (tests/data/controlnet, made by make_controlnet_data.py): the residuals a
 * random ControlNet gives for a hint at strength 0.8, and the UNet's noise
 * prediction with them added; from the original layout (`control_model.*`)
 * and from diffusers' own, for f32 and f16 UNet weights. Then the files kiln
 * must refuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "controlnet.h"
#include "model.h"
#include "parity.h"

#define TOL_F32 1e-4 /* as test_parity_tiny */
#define TOL_F16 1e-2

static const parity_fixture single_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = TOL_F32};
static const parity_fixture single_f16 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors", .tol = TOL_F16};

static void original_layout(void **s)
{
    (void)s;
    parity_check_controlnet(&single_f32, "controlnet/tiny_ldm.safetensors", "controlnet/golden.safetensors");
}

static void diffusers_layout(void **s)
{
    (void)s;
    parity_check_controlnet(&single_f32, "controlnet/tiny_diffusers.safetensors", "controlnet/golden.safetensors");
}

/* ComfyUI's repackaged files keep the original names without the prefix */
static void original_layout_unprefixed(void **s)
{
    (void)s;
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", &f));
    size_t n = kiln_st_count(f);
    kiln_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        assert_int_equal(strncmp(t->name, "control_model.", 14), 0);
        e[i] = (kiln_st_entry){t->name + 14, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    char dir[] = "/tmp/kiln_controlnet_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/unprefixed.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, e, n, NULL, 0));
    free(e);
    kiln_st_close(f);
    parity_check_controlnet(&single_f32, path, "controlnet/golden.safetensors");
    unlink(path);
    rmdir(dir);
}

static void f16_unet(void **s)
{
    (void)s;
    parity_check_controlnet(&single_f16, "controlnet/tiny_ldm.safetensors", "controlnet/golden.safetensors");
}

static void expect_refusal(const char *model, const char *path, const char *needle)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn = (kiln_controlnet *)&cn;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(model, be, &m));
    assert_int_equal(kiln_controlnet_load(path, &m->unet, be, &cn), KILN_ERR_MODEL);
    assert_null(cn);
    print_message("  refused: %s\n", kiln_last_error());
    if (!strstr(kiln_last_error(), needle)) fail_msg("'%s' does not mention '%s'", kiln_last_error(), needle);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void refusals(void **s)
{
    (void)s;
    expect_refusal(single_f32.path, single_f32.path, "not a ControlNet");
    expect_refusal(single_f32.path, KILN_TEST_DATA "/lora/kohya_locon.safetensors", "not a ControlNet");
    /* the tiny ControlNet on kiln-shapes, whose UNet is another */
    expect_refusal(KILN_SOURCE_DIR "/models/kiln-shapes.safetensors", KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors",
                   "a ControlNet for sd15-tiny-test, not for this model's UNet (kiln-shapes)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(original_layout),
        cmocka_unit_test(diffusers_layout),
        cmocka_unit_test(original_layout_unprefixed),
        cmocka_unit_test(f16_unet),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
