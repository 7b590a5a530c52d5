/* The Vulkan backend against float64: every op in ops.def through the shared
 * op suite (tests/support/op_suite.h), for each weight storage type. In f32
 * compute all arithmetic is f32 and f16/bf16/fp8 weights are widened exactly,
 * so every pass is held to 1e-5. f16 compute (tensor-core shaders through
 * VK_NV_cooperative_matrix, emulated where the device lacks it) rounds the
 * GEMM operands to f16 and is held to 1e-2, as CUDA's f16 compute is; a
 * device without f16 arithmetic or 16-bit storage skips that case, saying so.
 *
 * With no Vulkan device (no loader, no driver, no usable device) the test
 * prints why and exits 77 (skipped), except in CI (CI=1) or with
 * KILN_REQUIRE_VULKAN=1, where a missing device is a failure: CI installs
 * lavapipe, so a skip there would hide a broken backend. */
#include "kiln_test.h"

#include "backend_suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "op_suite.h"

#define TOL 1e-5

#define HALF_TOL 1e-2

static void run_suite_in(kiln_dtype compute, kiln_dtype weights, const char *only_op, double tol)
{
    kiln_backend *be;
    kiln_backend_options opt = {.device = -1, .compute = compute};
    assert_kiln_ok(kiln_backend_vulkan_create(&opt, &be));
    if (be->compute != compute) {
        print_message("%s lacks f16 arithmetic or 16-bit storage for the tensor-core shaders: %s compute not run\n",
                      be->device_name, kiln_dtype_name(compute));
        kiln_backend_free(be);
        skip();
    }
    print_message("vulkan, %s compute, %s weights, tol %g on %s\n", kiln_dtype_name(compute),
                  kiln_dtype_name(weights), tol, be->device_name);
    int failures = kiln_op_suite_run(be, weights, tol, only_op);
    kiln_backend_free(be);
    assert_int_equal(failures, 0);
}

static void run_suite(kiln_dtype weights, const char *only_op) { run_suite_in(KILN_F32, weights, only_op, TOL); }

static void f32_compute_f32_weights(void **state)
{
    (void)state;
    run_suite(KILN_F32, NULL);
}

static void f32_compute_f16_weights(void **state)
{
    (void)state;
    run_suite(KILN_F16, NULL);
}

static void f32_compute_bf16_weights(void **state)
{
    (void)state;
    run_suite(KILN_BF16, NULL);
}

/* Only the ops whose main weight has per-dtype shader variants: the small
 * weight vectors (bias, gamma, beta) share one loader, covered above. */
static void f32_compute_fp8_weights(void **state)
{
    (void)state;
    static const char *const ops[] = {"matmul", "conv2d", "embedding"};
    for (int i = 0; i < 3; i++) {
        run_suite(KILN_F8_E4M3, ops[i]);
        run_suite(KILN_F8_E5M2, ops[i]);
    }
}

/* GGUF's block types: matmul widens w into scratch (shaders/dequantize.comp)
 * and runs the float GEMM on it: f32 in f32 compute, held to 1e-5 as the
 * decoding is exact; f16 on the tensor-core GEMM in f16 compute. */
static void f32_compute_quantized_weights(void **state)
{
    (void)state;
    for (int d = KILN_Q4_0; d < KILN_DTYPE_COUNT; d++) run_suite((kiln_dtype)d, "matmul");
}

/* Devices without 16-bit storage read f16 weights from 32-bit words. */
static void f32_compute_f16_weights_without_16bit_storage(void **state)
{
    (void)state;
    setenv("KILN_VULKAN_NO_F16_STORAGE", "1", 1);
    static const char *const ops[] = {"matmul", "conv2d", "embedding"};
    for (int i = 0; i < 3; i++) run_suite(KILN_F16, ops[i]);
    unsetenv("KILN_VULKAN_NO_F16_STORAGE");
}

/* The f16-compute tests below run the tensor-core shaders, on emulated
 * matrices where the device has none (lavapipe), so their tiling is tested
 * everywhere: their setup sets KILN_VULKAN_EMULATE_COOPMAT, and their
 * teardown clears it and every switch a test sets, also after a failure. */
static int emulate_where_needed(void **state)
{
    (void)state;
    setenv("KILN_VULKAN_EMULATE_COOPMAT", "1", 1);
    return 0;
}

static int clear_switches(void **state)
{
    (void)state;
    static const char *const names[] = {"KILN_VULKAN_EMULATE_COOPMAT", "KILN_VULKAN_COOPMAT_N",
                                        "KILN_VULKAN_COOPMAT_KHR",     "KILN_VULKAN_GEMM_PREFETCH",
                                        "KILN_VULKAN_GEMM_ROWS",       "KILN_VULKAN_CONV_COL_BYTES",
                                        "KILN_VULKAN_ATTENTION_ROWS",  "KILN_VULKAN_REGISTER_SOFTMAX",
                                        "KILN_VULKAN_GEMM_WORKGROUP"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unsetenv(names[i]);
    return 0;
}

#define F16_TEST(test) cmocka_unit_test_setup_teardown(test, emulate_where_needed, clear_switches)

/* Sets a switch of the tensor-core shaders where the device takes it in f16
 * compute, or says why not and leaves it unset: whether the pass it guards
 * can run. The switches: KILN_VULKAN_COOPMAT_N=8, 16x8x16 multiplies (every
 * emulating device; a real one that lists the shape), and
 * KILN_VULKAN_COOPMAT_KHR=1, the shaders rewritten for
 * VK_KHR_cooperative_matrix (not lavapipe, nor a GPU without it), and
 * KILN_VULKAN_GEMM_WORKGROUP=1, the GEMM on workgroup-scope matrices
 * (emulated, or a GPU with VK_NV_cooperative_matrix2). */
static bool use_switch(const char *name, const char *value, const char *pass)
{
    setenv(name, value, 1);
    kiln_backend *be = NULL;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    if (kiln_backend_vulkan_create(&opt, &be) == KILN_OK) {
        kiln_backend_free(be);
        return true;
    }
    print_message("no %s pass: %s\n", pass, kiln_last_error());
    unsetenv(name);
    return false;
}

static bool use_16x8x16(void) { return use_switch("KILN_VULKAN_COOPMAT_N", "8", "16x8x16"); }
static bool use_khr(void) { return use_switch("KILN_VULKAN_COOPMAT_KHR", "1", "VK_KHR_cooperative_matrix"); }
static bool use_workgroup_matrices(void)
{
    return use_switch("KILN_VULKAN_GEMM_WORKGROUP", "1", "workgroup-scope matrix");
}

/* For a test that is only that pass: skipped, saying why, where the device
 * does not take the switch. */
static void require(bool switch_taken)
{
    if (!switch_taken) skip();
}

static void run_f16(kiln_dtype weights, const char *only_op) { run_suite_in(KILN_F16, weights, only_op, HALF_TOL); }

/* The GEMMs with f16 weights, matmul and conv2d (so also the tensor-core
 * GEMM variants bench/shader_variants.sh builds, which tests/cli runs
 * through this test and the 16x8x16 one), with the rest of the suite. Like
 * every run of the suite this covers both GEMM paths: the suite's GEMMs
 * with K >= 1024 have few enough tiles to be split along K (vulkan_ops.c,
 * run_gemm), the others not. The convs run again with their column
 * matrices (vulkan_ops.c, conv2d_by_columns) cut to one 64-pixel tile of
 * rows at a time, so most cases go through several row ranges, the last one
 * short. */
static void f16_compute_f16_weights(void **state)
{
    (void)state;
    run_f16(KILN_F16, NULL);
    setenv("KILN_VULKAN_CONV_COL_BYTES", "1", 1);
    run_f16(KILN_F16, "conv2d");
}

static void f16_compute_quantized_weights(void **state)
{
    (void)state;
    for (int d = KILN_Q4_0; d < KILN_DTYPE_COUNT; d++) run_f16((kiln_dtype)d, "matmul");
}

/* The GEMMs loading their operands 2 and 3 K steps ahead. */
static void f16_compute_f16_weights_loaded_ahead(void **state)
{
    (void)state;
    for (int ahead = 2; ahead <= 3; ahead++) {
        setenv("KILN_VULKAN_GEMM_PREFETCH", ahead == 2 ? "2" : "3", 1);
        run_f16(KILN_F16, "matmul");
        run_f16(KILN_F16, "conv2d");
    }
}

/* The GEMMs on tiles of 128 rows (the convs also a tile of rows at a
 * time), on either multiply shape. */
static void f16_compute_f16_weights_on_128_rows(void **state)
{
    (void)state;
    setenv("KILN_VULKAN_GEMM_ROWS", "128", 1);
    run_f16(KILN_F16, "matmul");
    run_f16(KILN_F16, "conv2d");
    setenv("KILN_VULKAN_CONV_COL_BYTES", "1", 1);
    run_f16(KILN_F16, "conv2d");
    unsetenv("KILN_VULKAN_CONV_COL_BYTES");
    if (use_16x8x16()) {
        run_f16(KILN_F16, "matmul");
        run_f16(KILN_F16, "conv2d");
    }
}

/* The GEMMs on workgroup-scope matrices, which take GEMMs of whole 128x64
 * tiles (the suite's 256-row matmuls; its convs only with their column
 * matrices cut to a tile of rows at a time, all row ranges but the last
 * whole) and send the rest to 64x64 tiles. */
static void f16_compute_f16_weights_on_workgroup_matrices(void **state)
{
    (void)state;
    require(use_workgroup_matrices());
    run_f16(KILN_F16, "matmul");
    setenv("KILN_VULKAN_CONV_COL_BYTES", "1", 1);
    run_f16(KILN_F16, "conv2d");
}

static void f16_compute_f16_weights_on_16x8x16(void **state)
{
    (void)state;
    require(use_16x8x16());
    run_f16(KILN_F16, "matmul");
    run_f16(KILN_F16, "conv2d");
}

static void f16_compute_f16_weights_through_khr(void **state)
{
    (void)state;
    require(use_khr());
    run_f16(KILN_F16, "matmul");
    run_f16(KILN_F16, "conv2d");
}

/* Attention has no weight operand, so the tests above leave it to the f32
 * runs; here it runs in f16 compute: head dims up to 256 on the tensor-core
 * attentions (emulated on lavapipe), with the softmax in registers (up to
 * 192; on 128 query rows a workgroup up to 160) and through shared memory,
 * on both multiply shapes and through the KHR extension where the device
 * has it, the VAE's 512 on the f32 shader. */
static void f16_compute_attention(void **state)
{
    (void)state;
    run_f16(KILN_F32, "attention");
}

static void f16_compute_attention_on_128_rows(void **state)
{
    (void)state;
    setenv("KILN_VULKAN_ATTENTION_ROWS", "128", 1);
    run_f16(KILN_F32, "attention");
}

static void f16_compute_attention_softmax_in_shared_memory(void **state)
{
    (void)state;
    setenv("KILN_VULKAN_REGISTER_SOFTMAX", "0", 1);
    run_f16(KILN_F32, "attention");
}

static void f16_compute_attention_on_16x8x16(void **state)
{
    (void)state;
    require(use_16x8x16());
    run_f16(KILN_F32, "attention");
}

static void f16_compute_attention_through_khr(void **state)
{
    (void)state;
    require(use_khr());
    run_f16(KILN_F32, "attention");
}

/* An argument runs only the tests whose names match it (cmocka's pattern:
 * `*` and `?`), to check one case on a GPU without the whole suite. ctest
 * runs this program three times by name, f32_compute_*,
 * f16_compute_f16_weights* and f16_compute_attention*
 * (tests/CMakeLists.txt): a test named otherwise would not run there. */
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const char *const required[] = {"CI", "KILN_REQUIRE_VULKAN", NULL};
    int rc;
    if (!backend_available("vulkan", required, &rc)) return rc;
    if (argc > 1) cmocka_set_test_filter(argv[1]);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f32_compute_f32_weights),
        cmocka_unit_test(f32_compute_f16_weights),
        cmocka_unit_test(f32_compute_bf16_weights),
        cmocka_unit_test(f32_compute_fp8_weights),
        cmocka_unit_test(f32_compute_quantized_weights),
        cmocka_unit_test(f32_compute_f16_weights_without_16bit_storage),
        F16_TEST(f16_compute_f16_weights),
        F16_TEST(f16_compute_quantized_weights),
        F16_TEST(f16_compute_f16_weights_loaded_ahead),
        F16_TEST(f16_compute_f16_weights_on_128_rows),
        F16_TEST(f16_compute_f16_weights_on_workgroup_matrices),
        F16_TEST(f16_compute_f16_weights_on_16x8x16),
        F16_TEST(f16_compute_f16_weights_through_khr),
        F16_TEST(f16_compute_attention),
        F16_TEST(f16_compute_attention_on_128_rows),
        F16_TEST(f16_compute_attention_softmax_in_shared_memory),
        F16_TEST(f16_compute_attention_on_16x8x16),
        F16_TEST(f16_compute_attention_through_khr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
