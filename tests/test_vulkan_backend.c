/* The Vulkan backend's host side: bad conditions give clear errors (no
 * driver, a device index out of range, an allocation too large, operands
 * out of bounds), transfers larger than the staging ring arrive intact, and
 * long chains of dependent ops, spread over several command buffer
 * submissions, are ordered by their barriers.
 *
 * Skips (exit 77) without a Vulkan device, except in CI (CI=1) or with
 * KILN_REQUIRE_VULKAN=1, as test_ops_vulkan does. */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"

static kiln_backend *open_vulkan(void)
{
    kiln_backend *be = NULL;
    kiln_backend_options opt = {.device = -1};
    assert_kiln_ok(kiln_backend_vulkan_create(&opt, &be));
    return be;
}

static kiln_tensor f32_view(kiln_buffer *buf, size_t offset, int64_t n)
{
    return (kiln_tensor){.dtype = KILN_F32, .ndim = 1, .shape = {n}, .buffer = buf, .offset = offset};
}

static void device_index_out_of_range_names_it(void **state)
{
    (void)state;
    kiln_backend *be = (kiln_backend *)1;
    kiln_backend_options opt = {.device = 99};
    kiln_status st = kiln_backend_vulkan_create(&opt, &be);
    assert_int_equal(st, KILN_ERR_INVALID_ARG);
    assert_null(be);
    print_message("  %s\n", kiln_last_error());
    assert_non_null(strstr(kiln_last_error(), "--device 99"));
    assert_non_null(strstr(kiln_last_error(), "0: ")); /* lists the devices there are */
}

/* With the loader pointed at no driver, creation fails cleanly with
 * KILN_ERR_UNSUPPORTED. Run in a child: the loader reads VK_ICD_FILENAMES
 * and VK_DRIVER_FILES when an instance is created, and this process keeps its
 * own driver for the other tests. */
static void no_driver_is_unsupported(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("VK_ICD_FILENAMES", "/nonexistent/kiln_icd.json", 1);
        setenv("VK_DRIVER_FILES", "/nonexistent/kiln_icd.json", 1);
        kiln_backend *be = NULL;
        kiln_status st = kiln_backend_vulkan_create(NULL, &be);
        printf("  child: %s: %s\n", kiln_status_name(st), kiln_last_error());
        fflush(stdout);
        _exit(st == KILN_ERR_UNSUPPORTED && be == NULL && strstr(kiln_last_error(), "vulkan: ") ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void oversize_allocation_names_the_bytes(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    kiln_buffer *buf = (kiln_buffer *)1;
    size_t huge = (size_t)1 << 46; /* 64 TiB */
    kiln_status st = be->ops->buffer_alloc(be, huge, &buf);
    assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    assert_null(buf);
    print_message("  %s\n", kiln_last_error());
    assert_non_null(strstr(kiln_last_error(), "70368744177664 bytes"));
    /* the backend is still usable */
    assert_kiln_ok(be->ops->buffer_alloc(be, 1024, &buf));
    be->ops->buffer_free(be, buf);
    kiln_backend_free(be);
}

static void transfers_out_of_bounds_are_errors(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    kiln_buffer *buf;
    assert_kiln_ok(be->ops->buffer_alloc(be, 1024, &buf));
    float host[512] = {0};
    kiln_tensor t = f32_view(buf, 768, 256);
    assert_int_equal(be->ops->upload(be, &t, host, sizeof host), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "overrun"));
    assert_int_equal(be->ops->download(be, &t, host, sizeof host), KILN_ERR_INVALID_ARG);
    be->ops->buffer_free(be, buf);
    kiln_backend_free(be);
}

static void misaligned_operand_is_an_error(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    kiln_buffer *buf;
    assert_kiln_ok(be->ops->buffer_alloc(be, 1024, &buf));
    kiln_tensor x = f32_view(buf, 2, 16), y = f32_view(buf, 512, 16);
    kiln_silu_params p = {16};
    assert_int_equal(be->ops->silu(be, &p, (const kiln_tensor *[]){&x}, &y), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "silu"));
    be->ops->buffer_free(be, buf);
    kiln_backend_free(be);
}

/* 80 MiB of weights and an 80 MiB download, more than the 64 MiB staging
 * ring, at odd offsets, come back byte for byte. */
static void large_transfers_round_trip(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    size_t n = (size_t)20 << 20; /* floats */
    uint32_t *host = malloc(n * 4), *back = malloc(n * 4);
    assert_non_null(host);
    assert_non_null(back);
    for (size_t i = 0; i < n; i++) host[i] = (uint32_t)(i * 2654435761u);

    kiln_buffer *weights;
    assert_kiln_ok(be->ops->weights_place(be, host, n * 4, &weights));
    kiln_tensor w = f32_view(weights, 0, (int64_t)n);
    memset(back, 0, n * 4);
    assert_kiln_ok(be->ops->download(be, &w, back, n * 4));
    assert_memory_equal(back, host, n * 4);

    kiln_buffer *act;
    assert_kiln_ok(be->ops->buffer_alloc(be, n * 4 + 64, &act));
    kiln_tensor a = f32_view(act, 36, (int64_t)n);
    assert_kiln_ok(be->ops->upload(be, &a, host, n * 4));
    memset(back, 0, n * 4);
    assert_kiln_ok(be->ops->download(be, &a, back, n * 4));
    assert_memory_equal(back, host, n * 4);

    be->ops->buffer_free(be, act);
    be->ops->buffer_free(be, weights);
    kiln_backend_free(be);
    free(host);
    free(back);
}

/* 1500 adds, each reading the previous one's output (ping-pong between two
 * buffers, every tenth in place), recorded without a wait: they span several
 * submissions, and a missing barrier could lose an increment. Small integers
 * are exact in f32, so the result must be exact. */
static void dependent_op_chain_is_ordered(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    enum { N = 4099, STEPS = 1500 };
    kiln_buffer *buf;
    assert_kiln_ok(be->ops->buffer_alloc(be, 3 * N * sizeof(float), &buf));
    kiln_tensor ones = f32_view(buf, 0, N), a = f32_view(buf, N * 4, N), b = f32_view(buf, 2 * N * 4, N);
    static float host[N];
    for (int i = 0; i < N; i++) host[i] = 1.0f;
    assert_kiln_ok(be->ops->upload(be, &ones, host, sizeof host));
    for (int i = 0; i < N; i++) host[i] = (float)(i % 7);
    assert_kiln_ok(be->ops->upload(be, &a, host, sizeof host));
    kiln_add_params p = {N};
    kiln_tensor *cur = &a;
    for (int step = 0; step < STEPS; step++) {
        kiln_tensor *next = step % 10 == 9 ? cur : cur == &a ? &b : &a;
        assert_kiln_ok(be->ops->add(be, &p, (const kiln_tensor *[]){cur, &ones}, next));
        cur = next;
    }
    assert_kiln_ok(be->ops->download(be, cur, host, sizeof host));
    for (int i = 0; i < N; i++)
        if (host[i] != (float)(i % 7 + STEPS)) fail_msg("element %d is %g, expected %d", i, host[i], i % 7 + STEPS);
    be->ops->buffer_free(be, buf);
    kiln_backend_free(be);
}

/* Freeing every buffer and allocating again reuses the arena; a block that
 * empties is given back while its neighbours' contents survive. */
static void arena_reuse_keeps_contents(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    enum { COUNT = 64 };
    kiln_buffer *bufs[COUNT];
    float v[256];
    for (int i = 0; i < COUNT; i++) {
        /* a mix of small pieces and blocks of their own */
        size_t bytes = i % 16 == 15 ? (size_t)130 << 20 : 1000 + (size_t)i * 4096;
        assert_kiln_ok(be->ops->buffer_alloc(be, bytes, &bufs[i]));
        for (int j = 0; j < 256; j++) v[j] = (float)(i * 1000 + j);
        kiln_tensor t = f32_view(bufs[i], 0, 256);
        assert_kiln_ok(be->ops->upload(be, &t, v, sizeof v));
    }
    for (int i = 0; i < COUNT; i += 2) be->ops->buffer_free(be, bufs[i]);
    for (int i = 1; i < COUNT; i += 2) {
        kiln_tensor t = f32_view(bufs[i], 0, 256);
        assert_kiln_ok(be->ops->download(be, &t, v, sizeof v));
        for (int j = 0; j < 256; j++) assert_float_equal(v[j], (float)(i * 1000 + j), 0.0f);
    }
    for (int i = 1; i < COUNT; i += 2) be->ops->buffer_free(be, bufs[i]);
    kiln_backend_free(be);
}

static bool env_is(const char *name, const char *value)
{
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    kiln_backend *probe;
    kiln_status st = kiln_backend_vulkan_create(NULL, &probe);
    if (st != KILN_OK) {
        bool required = env_is("CI", "1") || env_is("CI", "true") || env_is("KILN_REQUIRE_VULKAN", "1");
        if (st == KILN_ERR_UNSUPPORTED && !required) {
            printf("test_vulkan_backend: skipped: %s\n", kiln_last_error());
            return KILN_TEST_SKIP;
        }
        fprintf(stderr, "test_vulkan_backend: cannot open a Vulkan device%s: %s: %s\n",
                required ? " (required here: CI or KILN_REQUIRE_VULKAN is set)" : "", kiln_status_name(st),
                kiln_last_error());
        return 1;
    }
    printf("test_vulkan_backend on %s\n", probe->device_name);
    kiln_backend_free(probe);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_index_out_of_range_names_it),
        cmocka_unit_test(no_driver_is_unsupported),
        cmocka_unit_test(oversize_allocation_names_the_bytes),
        cmocka_unit_test(transfers_out_of_bounds_are_errors),
        cmocka_unit_test(misaligned_operand_is_an_error),
        cmocka_unit_test(large_transfers_round_trip),
        cmocka_unit_test(dependent_op_chain_is_ordered),
        cmocka_unit_test(arena_reuse_keeps_contents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
