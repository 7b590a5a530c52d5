/* ESRGAN upscale models against tests/data/upscale (made by
 * make_upscale_data.py with upstream spandrel, ComfyUI's loader): a tiny
 * RRDBNet x4 in both key layouts, as safetensors and torch.save files, whole
 * and over ImageUpscaleWithModel's overlapping tiles; files that are no
 * RRDBNet x4 are refused by name. */
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

/* The same models as torch.save files (make_pth_data.py): BasicSR's
 * params_ema wrapper in float32 gives the safetensors file's output; the
 * ESRGAN layout in float16 behind DataParallel's "module." is its float16
 * rounding away. */
static void torch_files(void **state)
{
    (void)state;
    parity_check_upscaler(&cpu, "upscale/rrdb_basicsr.pth", GOLDEN);
    const parity_fixture half = {.tol = 2e-3};
    parity_check_upscaler(&half, "upscale/rrdb_esrgan.pth", GOLDEN);
}

/* The model under tests/data as kiln_upscaler_describe names it, and its scale. */
static void assert_described(const char *path, const char *text, int scale)
{
    kiln_backend *be;
    kiln_upscaler *u;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_upscaler_open(kiln_test_data(path), be, &u));
    char have[128];
    kiln_upscaler_describe(u, have, sizeof have);
    assert_string_equal(have, text);
    assert_int_equal(kiln_upscaler_scale(u), scale);
    kiln_upscaler_free(u);
    kiln_backend_free(be);
}

#define COMPACT_GOLDEN "upscale/compact/compact.golden.safetensors"
#define SPAN_GOLDEN "upscale/span/span.golden.safetensors"

/* SPAN (tests/data/upscale/span, spandrel 0.4.2): x4 with 8 features and the
 * input normalisation, x2 with 6 and none (`no_norm`); each Conv3XC's
 * branches fused at load (the files' own eval_conv weights are random and
 * never read) */
static void span(void **state)
{
    (void)state;
    parity_check_upscaler_network(&cpu, "upscale/span/span_x4.safetensors", SPAN_GOLDEN, "x4.out");
    parity_check_upscaler_network(&cpu, "upscale/span/span_x2.safetensors", SPAN_GOLDEN, "x2.out");
    assert_described("upscale/span/span_x2.safetensors", "SPAN x2, 6 features, no input normalisation", 2);
}

/* SRVGGNetCompact (tests/data/upscale/compact, spandrel 0.4.2): x4 with 16
 * features and 4 convs, x2 with 8 and 2, their PReLUs' own slopes */
static void compact(void **state)
{
    (void)state;
    parity_check_upscaler_network(&cpu, "upscale/compact/compact_x4.safetensors", COMPACT_GOLDEN, "x4.out");
    parity_check_upscaler_network(&cpu, "upscale/compact/compact_x2.safetensors", COMPACT_GOLDEN, "x2.out");
    assert_described("upscale/compact/compact_x2.safetensors", "SRVGGNetCompact x2, 8 features, 2 convs", 2);
}

static void described(void **state)
{
    (void)state;
    assert_described("upscale/rrdb_esrgan.safetensors", "RRDBNet x4 (ESRGAN layout), 8 features, growth 32, 1 block", 4);
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
    assert_int_equal(kiln_upscaler_open(KILN_TEST_DATA "/upscale/make_upscale_data.py", be, &u), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_last_error(), "make_upscale_data.py"));
    assert_int_equal(kiln_upscaler_open(KILN_TEST_DATA "/upscale/missing.pth", be, &u), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "missing.pth"));
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basicsr_layout),
        cmocka_unit_test(esrgan_layout),
        cmocka_unit_test(torch_files),
        cmocka_unit_test(compact),
        cmocka_unit_test(span),
        cmocka_unit_test(described),
        cmocka_unit_test(others_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
