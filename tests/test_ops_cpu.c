/* The op suite on the CPU backend (fast paths) and on the plain reference
 * loops of cpu_ref.c, both against float64; and the suite's own ability to
 * fail: a missing op, an unwritten output, a write past the output or into an
 * input must each be reported. */
#include "kiln_test.h"

#include <stdio.h>

#include "cpu_backend.h"
#include "op_suite.h"

/* f32 accumulation over K up to 11520 (3x3 conv over 1280 channels) stays
 * well inside 1e-5; f16/bf16/fp8 and quantized weights are widened exactly,
 * so the same bound holds for them. */
#define TOL 1e-5

static kiln_backend *cpu_backend(void)
{
    kiln_backend *be = NULL;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    return be;
}

static void run_suite(kiln_backend *be, kiln_dtype weights, const char *only_op)
{
    int failures = kiln_op_suite_run(be, weights, TOL, only_op);
    kiln_backend_free(be);
    assert_int_equal(failures, 0);
}

static void cpu_f32_weights(void **state)
{
    (void)state;
    run_suite(cpu_backend(), KILN_F32, NULL);
}

static void cpu_f16_weights(void **state)
{
    (void)state;
    run_suite(cpu_backend(), KILN_F16, NULL);
}

static void cpu_bf16_weights(void **state)
{
    (void)state;
    run_suite(cpu_backend(), KILN_BF16, NULL);
}

static void cpu_fp8_weights_matmul(void **state)
{
    (void)state;
    run_suite(cpu_backend(), KILN_F8_E4M3, "matmul");
    run_suite(cpu_backend(), KILN_F8_E5M2, "matmul");
}

/* GGUF's block types, widened a tile of rows at a time (cpu_matmul.c). */
static void cpu_quantized_weights_matmul(void **state)
{
    (void)state;
    for (int d = KILN_Q4_0; d < KILN_DTYPE_COUNT; d++) run_suite(cpu_backend(), (kiln_dtype)d, "matmul");
}

/* Pools of one thread (every op inline) and of more threads than this
 * machine's cores, with an odd count, partition the heavy ops differently
 * (and the modulated ops' rows, whose batch element each row looks up). */
static void cpu_other_thread_counts(void **state)
{
    (void)state;
    const char *const heavy[] = {"matmul", "conv2d", "attention", "group_norm", "ada_layer_norm", "gated_add"};
    for (int threads = 1; threads <= 3; threads += 2)
        for (size_t i = 0; i < sizeof heavy / sizeof heavy[0]; i++) {
            kiln_backend *be = NULL;
            assert_kiln_ok(kiln_backend_cpu_create(&(kiln_backend_options){.threads = threads}, &be));
            run_suite(be, KILN_F16, heavy[i]);
        }
    /* rope's token rows look up their freqs row by token; it has no weight
     * operand, so its cases run only with F32 weights */
    for (int threads = 1; threads <= 3; threads += 2) {
        kiln_backend *be = NULL;
        assert_kiln_ok(kiln_backend_cpu_create(&(kiln_backend_options){.threads = threads}, &be));
        run_suite(be, KILN_F32, "rope");
    }
}

static void reference_loops_match_float64(void **state)
{
    (void)state;
    kiln_backend *be = NULL;
    assert_kiln_ok(kiln_backend_cpu_reference_create(NULL, &be));
    run_suite(be, KILN_F32, NULL);
}

static void reference_loops_widen_f16(void **state)
{
    (void)state;
    kiln_backend *be = NULL;
    assert_kiln_ok(kiln_backend_cpu_reference_create(NULL, &be));
    run_suite(be, KILN_F16, "matmul");
}

/* ---- the suite must fail when a backend is wrong ---- */

static kiln_status silu_writes_nothing(kiln_backend *be, const kiln_silu_params *p, const kiln_tensor *const *src,
                                       kiln_tensor *dst)
{
    (void)be, (void)p, (void)src, (void)dst;
    return KILN_OK;
}

static kiln_status silu_writes_past_end(kiln_backend *be, const kiln_silu_params *p, const kiln_tensor *const *src,
                                        kiln_tensor *dst)
{
    (void)be;
    cpu_ref_silu(p, cpu_ptr(src[0]), cpu_ptr(dst));
    ((float *)cpu_ptr(dst))[p->n] = 0.0f; /* lands in the suite's guard */
    return KILN_OK;
}

static kiln_status silu_in_place(kiln_backend *be, const kiln_silu_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    (void)be;
    cpu_ref_silu(p, cpu_ptr(src[0]), cpu_ptr(dst));
    cpu_ref_silu(p, cpu_ptr(src[0]), cpu_ptr(src[0]));
    return KILN_OK;
}

static kiln_status silu_one_element_off(kiln_backend *be, const kiln_silu_params *p, const kiln_tensor *const *src,
                                        kiln_tensor *dst)
{
    (void)be;
    cpu_ref_silu(p, cpu_ptr(src[0]), cpu_ptr(dst));
    ((float *)cpu_ptr(dst))[p->n / 2] += 1.0f;
    return KILN_OK;
}

/* Runs the silu cases on a CPU backend whose silu entry is replaced. */
static int failures_with_silu(kiln_status (*silu)(kiln_backend *, const kiln_silu_params *,
                                                  const kiln_tensor *const *, kiln_tensor *))
{
    kiln_backend *be = cpu_backend();
    kiln_backend_ops ops = *be->ops;
    ops.silu = silu;
    kiln_backend broken = *be;
    broken.ops = &ops;
    int failures = kiln_op_suite_run(&broken, KILN_F32, TOL, "silu");
    kiln_backend_free(be);
    return failures;
}

static void suite_fails_broken_backends(void **state)
{
    (void)state;
    print_message("  the silu runs below must fail:\n");
    int cases = failures_with_silu(NULL); /* every silu case fails: no op */
    assert_true(cases >= 2);
    assert_int_equal(failures_with_silu(silu_writes_nothing), cases);
    assert_int_equal(failures_with_silu(silu_writes_past_end), cases);
    assert_int_equal(failures_with_silu(silu_in_place), cases);
    assert_int_equal(failures_with_silu(silu_one_element_off), cases);
}

static void suite_rejects_unknown_op_name(void **state)
{
    (void)state;
    kiln_backend *be = cpu_backend();
    assert_int_equal(kiln_op_suite_run(be, KILN_F32, TOL, "no_such_op"), 1);
    kiln_backend_free(be);
}

/* An argument runs only the tests whose names match it (cmocka's pattern).
 * ctest runs this program three times by name, cpu_*, reference_* and
 * suite_* (tests/CMakeLists.txt): a test named otherwise would not run
 * there. */
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_f32_weights),
        cmocka_unit_test(cpu_f16_weights),
        cmocka_unit_test(cpu_bf16_weights),
        cmocka_unit_test(cpu_fp8_weights_matmul),
        cmocka_unit_test(cpu_quantized_weights_matmul),
        cmocka_unit_test(cpu_other_thread_counts),
        cmocka_unit_test(reference_loops_match_float64),
        cmocka_unit_test(reference_loops_widen_f16),
        cmocka_unit_test(suite_fails_broken_backends),
        cmocka_unit_test(suite_rejects_unknown_op_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
