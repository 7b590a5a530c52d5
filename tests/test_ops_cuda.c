/* The CUDA backend against the CPU reference: every op in ops.def through
 * the shared op suite (tests/support/op_suite.h), once per arithmetic mode.
 *
 *   f32 compute: matmul, conv2d and attention in f32 FMA (cuBLASLt without
 *     TF32), so every op agrees with the float64 reference to 1e-5. Weights
 *     stored f16/bf16/fp8 are widened exactly, so they are held to 1e-5 too.
 *   f16 compute (and bf16): matmul, conv2d and attention take f16 (bf16)
 *     inputs on tensor cores with f32 accumulation; rounding the activations
 *     to 11 (8) significant bits bounds the relative error near 1e-3, and the
 *     design's f16 tolerance, 1e-2, applies. Ops without weights run in the
 *     F32-weight pass of each mode, so the tensor-core attention is covered.
 *
 * Skips (exit 77) with the reason when no CUDA device can be opened or the
 * backend was not built. */
#include "kiln_test.h"

#include <stdio.h>

#include "backend.h"
#include "op_suite.h"

static void run_suite(kiln_dtype compute, kiln_dtype weights, double tol)
{
    kiln_backend *be;
    kiln_backend_options opt = {.device = -1, .compute = compute};
    assert_kiln_ok(kiln_backend_cuda_create(&opt, &be));
    print_message("cuda %s compute, %s weights, tol %g on %s\n", kiln_dtype_name(compute), kiln_dtype_name(weights),
                  tol, be->device_name);
    int failures = kiln_op_suite_run(be, weights, tol, NULL);
    kiln_backend_free(be);
    assert_int_equal(failures, 0);
}

#define F32_TOL 1e-5
#define HALF_TOL 1e-2

static void f32_compute_f32_weights(void **state) { (void)state; run_suite(KILN_F32, KILN_F32, F32_TOL); }
static void f32_compute_f16_weights(void **state) { (void)state; run_suite(KILN_F32, KILN_F16, F32_TOL); }
static void f32_compute_bf16_weights(void **state) { (void)state; run_suite(KILN_F32, KILN_BF16, F32_TOL); }
static void f32_compute_fp8_weights(void **state)
{
    (void)state;
    run_suite(KILN_F32, KILN_F8_E4M3, F32_TOL);
    run_suite(KILN_F32, KILN_F8_E5M2, F32_TOL);
}
/* GGUF's block types: matmul's w widened by kernels/dequantize.cu */
static void quantized_weights(kiln_dtype compute, double tol)
{
    for (int d = KILN_Q4_0; d < KILN_DTYPE_COUNT; d++) run_suite(compute, (kiln_dtype)d, tol);
}
static void f32_compute_quantized_weights(void **state) { (void)state; quantized_weights(KILN_F32, F32_TOL); }
static void f16_compute_quantized_weights(void **state) { (void)state; quantized_weights(KILN_F16, HALF_TOL); }
static void f16_compute_f32_weights(void **state) { (void)state; run_suite(KILN_F16, KILN_F32, HALF_TOL); }
static void f16_compute_f16_weights(void **state) { (void)state; run_suite(KILN_F16, KILN_F16, HALF_TOL); }
static void f16_compute_fp8_weights(void **state) { (void)state; run_suite(KILN_F16, KILN_F8_E4M3, HALF_TOL); }
static void bf16_compute_f32_weights(void **state) { (void)state; run_suite(KILN_BF16, KILN_F32, HALF_TOL); }
static void bf16_compute_bf16_weights(void **state) { (void)state; run_suite(KILN_BF16, KILN_BF16, HALF_TOL); }

int main(void)
{
    kiln_backend *probe;
    kiln_status st = kiln_backend_cuda_create(NULL, &probe);
    if (st == KILN_ERR_UNSUPPORTED) {
        printf("test_ops_cuda: skipped: %s\n", kiln_last_error());
        return KILN_TEST_SKIP;
    }
    if (st != KILN_OK) {
        fprintf(stderr, "test_ops_cuda: cannot open the CUDA backend: %s: %s\n", kiln_status_name(st),
                kiln_last_error());
        return 1;
    }
    kiln_backend_free(probe);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f32_compute_f32_weights),  cmocka_unit_test(f32_compute_f16_weights),
        cmocka_unit_test(f32_compute_bf16_weights), cmocka_unit_test(f32_compute_fp8_weights),
        cmocka_unit_test(f32_compute_quantized_weights), cmocka_unit_test(f16_compute_quantized_weights),
        cmocka_unit_test(f16_compute_f32_weights),  cmocka_unit_test(f16_compute_f16_weights),
        cmocka_unit_test(f16_compute_fp8_weights),  cmocka_unit_test(bf16_compute_f32_weights),
        cmocka_unit_test(bf16_compute_bf16_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
