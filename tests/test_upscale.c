/* ESRGAN upscale models against tests/data/upscale (made by
 * make_upscale_data.py with upstream spandrel, ComfyUI's loader): a tiny
 * RRDBNet x4 in both key layouts, whole and over ImageUpscaleWithModel's
 * overlapping tiles; files that are no RRDBNet x4 are refused by name. */
#include <string.h>

#include "kiln_test.h"

#include "esrgan.h"
#include "parity.h"
#include "status.h"

#define TOL 1e-5 /* f32: the same convolutions in another order */
#define GOLDEN "upscale/golden.safetensors"

static const parity_fixture cpu = {.tol = TOL};

static void basicsr_layout(void **state)
{
    (void)state;
    parity_check_upscaler(&cpu, "upscale/rrdb_basicsr.safetensors", GOLDEN);
}

static void esrgan_layout(void **state)
{
    (void)state;
    parity_check_upscaler(&cpu, "upscale/rrdb_esrgan.safetensors", GOLDEN);
}

static void described(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_upscaler *u;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_upscaler_open(KILN_TEST_DATA "/upscale/rrdb_esrgan.safetensors", be, &u));
    char text[128];
    kiln_upscaler_describe(u, text, sizeof text);
    assert_string_equal(text, "RRDBNet x4 (ESRGAN layout), 8 features, growth 32, 1 block");
    assert_int_equal(kiln_upscaler_scale(u), 4);
    kiln_upscaler_free(u);
    kiln_backend_free(be);
}

static void others_are_refused(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_upscaler *u;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_int_equal(kiln_upscaler_open(KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", be, &u), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "not an ESRGAN (RRDBNet) upscale model"));
    assert_null(u);
    assert_int_equal(kiln_upscaler_open(KILN_TEST_DATA "/upscale/model.pth", be, &u), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "model.pth: a PyTorch pickle"));
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basicsr_layout),
        cmocka_unit_test(esrgan_layout),
        cmocka_unit_test(described),
        cmocka_unit_test(others_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
