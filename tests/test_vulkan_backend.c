/* The Vulkan backend's host side: bad conditions give clear errors (no
 * driver, a device index out of range, an allocation too large, operands
 * out of bounds), transfers larger than the staging ring arrive intact, and
 * long chains of dependent ops, spread over several command buffer
 * submissions, are ordered by their barriers, and a recorded run replays
 * with each run's new inputs.
 *
 * Skips (exit 77) without a Vulkan device, except in CI (CI=1) or with
 * KILN_REQUIRE_VULKAN=1, as test_ops_vulkan does. */
#include "kiln_test.h"

#include "backend_suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "graph.h"
#include "status.h"
#ifdef KILN_TEST_SPIRV_TABLE /* built with the Vulkan backend */
#include "vulkan_shaders.h"
#endif
#ifdef KILN_TEST_VULKAN_INTERNALS
#include "vulkan_backend.h"
#endif

static kiln_backend *open_vulkan(void)
{
    kiln_backend *be = NULL;
    kiln_backend_options opt = {.device = -1};
    assert_kiln_ok(kiln_backend_vulkan_create(&opt, &be));
    return be;
}

/* The backend in f16 compute, on emulated cooperative matrices where the
 * device has none, with the switch `name` set to `value` while it opens
 * (name NULL: none). */
static kiln_backend *open_tensor_cores(const char *name, const char *value)
{
    setenv("KILN_VULKAN_EMULATE_COOPMAT", "1", 1);
    if (name) setenv(name, value, 1);
    kiln_backend *be = NULL;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    kiln_status st = kiln_backend_vulkan_create(&opt, &be);
    unsetenv("KILN_VULKAN_EMULATE_COOPMAT");
    if (name) unsetenv(name);
    assert_kiln_ok(st);
    assert_int_equal(be->compute, KILN_F16);
    return be;
}

/* Whether be runs emulated cooperative matrices (lavapipe), where nothing is
 * timed when the device opens; a GPU's own matrices are timed then. */
static bool emulated(const kiln_backend *be) { return strstr(be->device_name, "emulated cooperative matrix") != NULL; }

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

/* The listing (gen --list-devices) names each device by its index, and
 * marks as the default exactly the one the backend opens when given none;
 * each listed index opens that device. */
static void devices_are_listed_by_index(void **state)
{
    (void)state;
    kiln_device_info info[KILN_MAX_DEVICES];
    int n = -1;
    assert_kiln_ok(kiln_backend_vulkan_devices(info, KILN_MAX_DEVICES, &n));
    assert_true(n >= 1);
    int preferred = -1;
    for (int i = 0; i < n; i++) {
        print_message("  %d: %s: %s%s\n", i, info[i].name, info[i].details, info[i].preferred ? " (default)" : "");
        assert_true(info[i].name[0] != '\0');
        assert_non_null(strstr(info[i].details, "Vulkan 1."));
        if (info[i].preferred) {
            assert_int_equal(preferred, -1);
            assert_true(info[i].usable);
            preferred = i;
        }
        if (!info[i].usable) continue;
        kiln_backend *be = NULL;
        assert_kiln_ok(kiln_backend_vulkan_create(&(kiln_backend_options){.device = i}, &be));
        assert_int_equal(strncmp(be->device_name, info[i].name, strlen(info[i].name)), 0);
        kiln_backend_free(be);
    }
    assert_true(preferred >= 0);
    kiln_backend *be = NULL;
    assert_kiln_ok(kiln_backend_vulkan_create(&(kiln_backend_options){.device = -1}, &be));
    assert_int_equal(strncmp(be->device_name, info[preferred].name, strlen(info[preferred].name)), 0);
    kiln_backend_free(be);
    int none = -1;
    assert_kiln_ok(kiln_backend_vulkan_devices(info, 0, &none)); /* room for none: none filled in */
    assert_int_equal(none, 0);
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
        bool refused = st == KILN_ERR_UNSUPPORTED && be == NULL && strstr(kiln_last_error(), "vulkan: ");
        kiln_device_info info[2];
        int count = -1;
        st = kiln_backend_vulkan_devices(info, 2, &count);
        printf("  child, listing: %s: %s\n", kiln_status_name(st), kiln_last_error());
        fflush(stdout);
        _exit(refused && st == KILN_ERR_UNSUPPORTED && count == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Opening the backend (in f16 compute, on emulated matrices where the
 * device has none) with the switch `name` set to a value it does not take
 * is an error naming both, not a silent default. */
static void assert_switch_refused(const char *name, const char *value)
{
    setenv("KILN_VULKAN_EMULATE_COOPMAT", "1", 1);
    setenv(name, value, 1);
    kiln_backend *be = NULL;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    kiln_status st = kiln_backend_vulkan_create(&opt, &be);
    unsetenv(name);
    unsetenv("KILN_VULKAN_EMULATE_COOPMAT");
    print_message("  \"%s\": %s: %s\n", value, kiln_status_name(st), kiln_last_error());
    assert_int_equal(st, KILN_ERR_INVALID_ARG);
    assert_null(be);
    char named[128];
    snprintf(named, sizeof named, "%s=%s", name, value);
    assert_non_null(strstr(kiln_last_error(), named));
}

static void bad_coopmat_shape_switch_names_it(void **state)
{
    (void)state;
    assert_switch_refused("KILN_VULKAN_COOPMAT_N", "12");
}

/* KILN_VULKAN_COOPMAT_KHR=1 on a device without VK_KHR_cooperative_matrix
 * (lavapipe, and GPUs without it) is an error naming the switch and the
 * device; where the device has it, the backend says it runs on it. */
static void khr_switch_names_what_is_missing(void **state)
{
    (void)state;
    setenv("KILN_VULKAN_COOPMAT_KHR", "1", 1);
    kiln_backend *be = NULL;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    kiln_status st = kiln_backend_vulkan_create(&opt, &be);
    unsetenv("KILN_VULKAN_COOPMAT_KHR");
    if (st == KILN_OK) {
        print_message("  %s\n", be->device_name);
        assert_non_null(strstr(be->device_name, "cooperative matrix (KHR) on 16x8x16"));
        kiln_backend_free(be);
        return;
    }
    print_message("  %s: %s\n", kiln_status_name(st), kiln_last_error());
    assert_int_equal(st, KILN_ERR_UNSUPPORTED);
    assert_null(be);
    assert_non_null(strstr(kiln_last_error(), "KILN_VULKAN_COOPMAT_KHR=1"));
    assert_non_null(strstr(kiln_last_error(), "VK_KHR_cooperative_matrix"));
}

/* KILN_VULKAN_CONV_COL_BYTES takes a positive byte count; anything else is
 * an error naming it, not a silent default. */
static void conv_col_bytes_switch_rejects_junk(void **state)
{
    (void)state;
    static const char *const junk[] = {"abc", "0", "-5", "64M", ""};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) assert_switch_refused("KILN_VULKAN_CONV_COL_BYTES", junk[i]);
}

#ifdef KILN_TEST_SPIRV_TABLE
/* x + y on the device, for the shader-directory tests: the status of the
 * add, and the result where it ran. */
static kiln_status device_add(const float x[4], const float y[4], float out[4])
{
    kiln_backend *be = open_vulkan();
    kiln_buffer *buf;
    assert_kiln_ok(be->ops->buffer_alloc(be, 12 * sizeof(float), &buf));
    kiln_tensor a = f32_view(buf, 0, 4), b = f32_view(buf, 16, 4), c = f32_view(buf, 32, 4);
    assert_kiln_ok(be->ops->upload(be, &a, x, 16));
    assert_kiln_ok(be->ops->upload(be, &b, y, 16));
    kiln_status st = be->ops->add(be, &(kiln_add_params){4}, (const kiln_tensor *[]){&a, &b}, &c);
    if (st == KILN_OK) st = be->ops->download(be, &c, out, 16);
    be->ops->buffer_free(be, buf);
    kiln_backend_free(be);
    return st;
}

static void write_file(const char *path, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, bytes, f), bytes);
    assert_int_equal(fclose(f), 0);
}

/* KILN_VULKAN_PIPELINE_STATS=1: a line of the driver's statistics for each
 * pipeline built, or where the driver reports none (lavapipe) one note that
 * says so; either way ops run as without it. */
static void pipeline_stats_switch_reports_or_says_why_not(void **state)
{
    (void)state;
    char path[] = "/tmp/kiln_stats_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    setenv("KILN_VULKAN_PIPELINE_STATS", "1", 1);
    float x[4] = {1, 2, 3, 4}, y[4] = {10, 20, 30, 40}, out[4] = {0};
    kiln_status st = device_add(x, y, out);
    unsetenv("KILN_VULKAN_PIPELINE_STATS");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[4096] = {0};
    ssize_t got = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(path);
    assert_true(got > 0);
    print_message("  %s", text);
    assert_kiln_ok(st);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], x[i] + y[i], 0.0f);
    assert_true(strstr(text, "kiln vulkan pipeline add [") || strstr(text, "does not report pipeline statistics"));
}

/* KILN_VULKAN_SHADER_DIR: a NAME.spv there replaces the embedded variant
 * (here mul's SPIR-V as add.spv, so the add multiplies); a file that is no
 * SPIR-V module is an error naming it. */
static void shader_dir_replaces_embedded_spirv(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln_spv_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/add.spv", dir);
    const kiln_vk_spirv *mul = &kiln_vk_shaders[KILN_VK_SHADER_MUL];
    write_file(path, mul->code, mul->bytes);
    setenv("KILN_VULKAN_SHADER_DIR", dir, 1);
    const float x[4] = {1, 2, 3, 4}, y[4] = {5, 6, 7, 8};
    float out[4];
    kiln_status st = device_add(x, y, out);
    write_file(path, "not spir-v", 10);
    kiln_status bad = device_add(x, y, out);
    char why[512];
    snprintf(why, sizeof why, "%s", kiln_last_error());
    unsetenv("KILN_VULKAN_SHADER_DIR");
    remove(path);
    rmdir(dir);
    assert_kiln_ok(st);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], x[i] * y[i], 0.0f);
    print_message("  %s: %s\n", kiln_status_name(bad), why);
    assert_int_equal(bad, KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(why, path));
}
#endif

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

/* A run of 300 dependent adds (more commands than one normal submission
 * holds): y = x + 300. */
enum { CHAIN_N = 1000, CHAIN_ADDS = 300 };
typedef struct chain_run { float in[CHAIN_N], ones[CHAIN_N], out[CHAIN_N]; } chain_run;

static kiln_status add_chain(kiln_graph *g, void *ctx)
{
    chain_run *c = ctx;
    int64_t shape[1] = {CHAIN_N};
    kiln_tensor *x, *ones;
    TRY(kiln_graph_input(g, &x, KILN_F32, 1, shape, c->in));
    TRY(kiln_graph_input(g, &ones, KILN_F32, 1, shape, c->ones));
    for (int i = 0; i < CHAIN_ADDS; i++) {
        kiln_tensor *y;
        TRY(kiln_graph_tensor(g, &y, 1, shape));
        TRY(kiln_run_add(g, &(kiln_add_params){CHAIN_N}, (const kiln_tensor *[]){x, ones}, y));
        kiln_graph_release(g, x);
        x = y;
    }
    return kiln_graph_output(g, x, c->out, sizeof c->out);
}

/* The first run warms up, the second records and replays, the rest replay:
 * each must see its own input. */
static void replayed_runs_see_new_inputs(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    kiln_graph_set_replay(g, true);
    static chain_run c;
    for (int i = 0; i < CHAIN_N; i++) c.ones[i] = 1.0f;
    for (int run = 0; run < 4; run++) {
        for (int i = 0; i < CHAIN_N; i++) c.in[i] = (float)(run * 1000 + i % 13);
        assert_kiln_ok(kiln_graph_run(g, add_chain, &c));
        for (int i = 0; i < CHAIN_N; i++)
            if (c.out[i] != c.in[i] + CHAIN_ADDS)
                fail_msg("run %d, element %d is %g, expected %g", run, i, c.out[i], c.in[i] + CHAIN_ADDS);
    }
    assert_int_equal(kiln_graph_replays(g), 3);
    kiln_graph_free(g);
    kiln_backend_free(be);
}

typedef kiln_status (*op_fn)(kiln_backend *be, const void *params, const kiln_tensor *const *src, kiln_tensor *dst);

/* NAME_op: the backend's op NAME as an op_fn. */
#define KILN_OP(name, nsrc, doc)                                                                       \
    static inline kiln_status name##_op(kiln_backend *be, const void *p, const kiln_tensor *const *src, \
                                        kiln_tensor *dst)                                              \
    {                                                                                                  \
        return be->ops->name(be, p, src, dst);                                                         \
    }
#include "ops.def"
#undef KILN_OP

/* Uploads host arrays to fresh buffers on `be`, runs one op on them (y
 * poisoned with NaN first), downloads y; operand i (y last) at byte
 * offset[i] of its buffer, or all at 0. */
static void run_at(kiln_backend *be, op_fn op, const void *params, int nsrc, float *const *host, const size_t *count,
                   float *y, size_t ny, const size_t *offset)
{
    kiln_buffer *bufs[4];
    kiln_tensor t[4];
    for (int i = 0; i <= nsrc; i++) {
        size_t n = i < nsrc ? count[i] : ny, at = offset ? offset[i] : 0;
        assert_kiln_ok(be->ops->buffer_alloc(be, at + n * 4, &bufs[i]));
        t[i] = f32_view(bufs[i], at, (int64_t)n);
        if (i < nsrc) assert_kiln_ok(be->ops->upload(be, &t[i], host[i], n * 4));
    }
    float *poison = malloc(ny * 4); /* NaN: an element the op leaves unwritten fails */
    assert_non_null(poison);
    memset(poison, 0xff, ny * 4);
    assert_kiln_ok(be->ops->upload(be, &t[nsrc], poison, ny * 4));
    free(poison);
    const kiln_tensor *src[4] = {&t[0], nsrc > 1 ? &t[1] : NULL, nsrc > 2 ? &t[2] : NULL, NULL}; /* [3]: attention's bias */
    assert_kiln_ok(op(be, params, src, &t[nsrc]));
    assert_kiln_ok(be->ops->download(be, &t[nsrc], y, ny * 4));
    for (int i = 0; i <= nsrc; i++) be->ops->buffer_free(be, bufs[i]);
}

static void run_on(kiln_backend *be, op_fn op, const void *params, int nsrc, float *const *host, const size_t *count,
                   float *y, size_t ny)
{
    run_at(be, op, params, nsrc, host, count, y, ny, NULL);
}

/* One op on the Vulkan backend and on the CPU backend, the reference: the
 * relative L2 distance of the results at most tol. */
static void assert_op_matches_cpu(kiln_backend *vk, kiln_backend *cpu, op_fn op, const void *params, int nsrc,
                                  float *const *host, const size_t *count, size_t ny, double tol)
{
    float *got = malloc(ny * 4), *want = malloc(ny * 4);
    assert_non_null(got);
    assert_non_null(want);
    run_on(vk, op, params, nsrc, host, count, got, ny);
    run_on(cpu, op, params, nsrc, host, count, want, ny);
    assert_rel_l2_le(got, want, ny, tol);
    free(got);
    free(want);
}

static float *random_floats(size_t n, uint64_t seed, float lo, float hi)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = lo + (hi - lo) * (float)(seed >> 40) / (float)(1 << 24);
    }
    return v;
}

/* Self-attention-shaped attention (B 1; Tq queries, Tk keys, `heads` heads of
 * head dim d) on vk against the CPU backend within tol: q and k random in
 * [-qk, qk), v in [-1, 1), from seeds seed .. seed + 2. */
static void assert_attention_matches_cpu(kiln_backend *vk, int heads, int tq, int tk, int d, float qk, uint64_t seed,
                                         double tol)
{
    kiln_backend *cpu = NULL;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &cpu));
    kiln_attention_params p = {1, heads, tq, tk, d, 1.0f / sqrtf((float)d), 0};
    size_t count[3] = {(size_t)tq * heads * d, (size_t)tk * heads * d, (size_t)tk * heads * d};
    float *host[3] = {random_floats(count[0], seed, -qk, qk), random_floats(count[1], seed + 1, -qk, qk),
                      random_floats(count[2], seed + 2, -1, 1)};
    assert_op_matches_cpu(vk, cpu, attention_op, &p, 3, host, count, count[0], tol);
    for (int i = 0; i < 3; i++) free(host[i]);
    kiln_backend_free(cpu);
}

/* A matmul short enough in M and N to be split along K (vulkan_ops.c,
 * run_gemm), so its partial sums go through the backend's scratch memory. */
enum { SPLIT_M = 2, SPLIT_N = 64, SPLIT_K = 2048 };
typedef struct split_run { float x[SPLIT_M * SPLIT_K], w[SPLIT_N * SPLIT_K], y[SPLIT_M * SPLIT_N]; } split_run;

static kiln_status split_matmul(kiln_graph *g, void *ctx)
{
    split_run *c = ctx;
    kiln_tensor *x, *w, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 2, (const int64_t[]){SPLIT_M, SPLIT_K}, c->x));
    TRY(kiln_graph_input(g, &w, KILN_F32, 2, (const int64_t[]){SPLIT_N, SPLIT_K}, c->w));
    TRY(kiln_graph_tensor(g, &y, 2, (const int64_t[]){SPLIT_M, SPLIT_N}));
    TRY(kiln_run_matmul(g, &(kiln_matmul_params){SPLIT_M, SPLIT_N, SPLIT_K, 0}, (const kiln_tensor *[]){x, w, NULL}, y));
    return kiln_graph_output(g, y, c->y, sizeof c->y);
}

static void split_reference(const split_run *c, float *y)
{
    for (int m = 0; m < SPLIT_M; m++)
        for (int n = 0; n < SPLIT_N; n++) {
            double sum = 0;
            for (int k = 0; k < SPLIT_K; k++) sum += (double)c->x[m * SPLIT_K + k] * c->w[n * SPLIT_K + k];
            y[m * SPLIT_N + n] = (float)sum;
        }
}

/* A recorded run keeps the scratch memory it was recorded with: after a
 * larger split GEMM has grown the scratch and a new buffer has been
 * allocated (where freed scratch would land), replays still give the right
 * result and leave that buffer alone. */
static void split_k_replays_after_scratch_grows(void **state)
{
    (void)state;
    kiln_backend *be = open_vulkan();
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    kiln_graph_set_replay(g, true);
    static split_run c;
    float *w = random_floats(SPLIT_N * SPLIT_K, 7, -1, 1);
    memcpy(c.w, w, sizeof c.w);
    free(w);
    float want[SPLIT_M * SPLIT_N];
    enum { BIG_M = 64, BIG_N = 64, BIG_K = 8192, SENTINEL = 4096 };
    kiln_buffer *sentinel = NULL;
    float *fill = random_floats(SENTINEL, 11, -1, 1);
    for (int run = 0; run < 4; run++) {
        float *x = random_floats(SPLIT_M * SPLIT_K, 100 + (uint64_t)run, -1, 1);
        memcpy(c.x, x, sizeof c.x);
        free(x);
        assert_kiln_ok(kiln_graph_run(g, split_matmul, &c));
        split_reference(&c, want);
        assert_rel_l2_le(c.y, want, SPLIT_M * SPLIT_N, 1e-5);
        if (run == 1) {
            /* grow the scratch with a larger split GEMM outside the graph */
            float *bx = random_floats(BIG_M * BIG_K, 21, -1, 1), *bw = random_floats(BIG_N * BIG_K, 22, -1, 1);
            float *by = malloc(BIG_M * BIG_N * sizeof *by);
            assert_non_null(by);
            run_on(be, matmul_op, &(kiln_matmul_params){BIG_M, BIG_N, BIG_K, 0}, 2, (float *const[]){bx, bw},
                   (const size_t[]){BIG_M * BIG_K, BIG_N * BIG_K}, by, BIG_M * BIG_N);
            free(bx);
            free(bw);
            free(by);
            assert_kiln_ok(be->ops->buffer_alloc(be, SENTINEL * sizeof(float), &sentinel));
            kiln_tensor t = f32_view(sentinel, 0, SENTINEL);
            assert_kiln_ok(be->ops->upload(be, &t, fill, SENTINEL * sizeof(float)));
        }
    }
    assert_int_equal(kiln_graph_replays(g), 3);
    float back[SENTINEL];
    kiln_tensor t = f32_view(sentinel, 0, SENTINEL);
    assert_kiln_ok(be->ops->download(be, &t, back, sizeof back));
    assert_memory_equal(back, fill, sizeof back);
    free(fill);
    be->ops->buffer_free(be, sentinel);
    kiln_graph_free(g);
    kiln_backend_free(be);
}

/* Sizes past the op suite's: 4096 keys (SD at 512x512, the VAE's 512-wide
 * head) and a 8M-value norm group. Besides their arithmetic, they check that
 * shader loops stay under lavapipe's cap of 65535 iterations per run, past
 * which llvmpipe silently ends them. The CPU backend is the reference (the
 * op suite holds it to float64). */
static void long_loops_match_the_cpu(void **state)
{
    (void)state;
    kiln_backend *vk = open_vulkan(), *cpu = NULL;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &cpu));
    static const int shapes[][3] = {{130, 4096, 64}, {40, 4096, 512}, {3, 20000, 40}}; /* Tq, Tk, D */
    for (int s = 0; s < 3; s++) {
        int tq = shapes[s][0], tk = shapes[s][1], d = shapes[s][2];
        print_message("  attention Tq %d Tk %d D %d\n", tq, tk, d);
        assert_attention_matches_cpu(vk, 1, tq, tk, d, 3.0f, 1, 1e-5);
    }
    {
        kiln_group_norm_params p = {1, 4, 2 << 20, 1, 1e-6f, 1};
        size_t n = (size_t)4 * (2 << 20), count[3] = {n, 4, 4};
        float *host[3] = {random_floats(n, 4, -2, 3), random_floats(4, 5, 0.5f, 1.5f), random_floats(4, 6, -1, 1)};
        print_message("  group_norm of one 8M-value group\n");
        assert_op_matches_cpu(vk, cpu, group_norm_op, &p, 3, host, count, n, 1e-5);
        for (int i = 0; i < 3; i++) free(host[i]);
    }
    kiln_backend_free(cpu);
    kiln_backend_free(vk);
}

/* The tensor-core attentions keep a running max per row and rescale the
 * row's output when a key tile raises it: attention_registers.comp in
 * registers (on 64 and on 128 query rows), attention_coopmat.comp
 * (KILN_VULKAN_REGISTER_SOFTMAX=0) with its scores through shared memory.
 * Rows here see their
 * scores fall, stay level, or rise by 1.9, 5.7, 15 or 30 every 32 keys, so
 * some tiles rescale, some rows run a tile or two under a stale max, and
 * some never move it; with causal masking too. q, k and v hold
 * values f16 represents exactly, so the CPU's f32 attention is the
 * reference to f16's bound. Emulated matrices where the device has none. */
static void attention_rescales_rows_whose_max_grows(void **state)
{
    (void)state;
    kiln_backend *cpu = NULL;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &cpu));
    enum { H = 2, TQ = 67, TK = 261, D = 40 };
    static const float slope[] = {-1.0f, 0.0f, 0.125f, 0.375f, 1.0f, 2.0f};
    size_t count[3] = {(size_t)TQ * H * D, (size_t)TK * H * D, (size_t)TK * H * D};
    float *q = calloc(count[0], 4), *k = calloc(count[1], 4), *v = malloc(count[2] * 4);
    for (int i = 0; i < TQ; i++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < 8; d++) q[((size_t)i * H + h) * D + d] = slope[(i + h) % 6];
    for (int j = 0; j < TK; j++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D; d++) {
                size_t at = ((size_t)j * H + h) * D + d;
                if (d < 8) k[at] = 12.0f * (float)(j / 32) + 0.5f * (float)(j % 7);
                v[at] = 0.25f * (float)((j * 7 + d * 3 + h) % 17 - 8);
            }
    float *host[3] = {q, k, v};
    static const struct {
        const char *name, *value, *says;
    } attentions[] = {{NULL, NULL, "registers"},
                      {"KILN_VULKAN_ATTENTION_ROWS", "128", "registers on 128 rows"},
                      {"KILN_VULKAN_REGISTER_SOFTMAX", "0", "shared memory"}};
    for (size_t a = 0; a < sizeof attentions / sizeof attentions[0]; a++) {
        kiln_backend *vk = open_tensor_cores(attentions[a].name, attentions[a].value);
        for (int causal = 0; causal < 2; causal++) {
            kiln_attention_params p = {1, H, TQ, TK, D, 1.0f / sqrtf((float)D), causal};
            print_message("  softmax in %s, %s\n", attentions[a].says, causal ? "causal" : "not causal");
            assert_op_matches_cpu(vk, cpu, attention_op, &p, 3, host, count, count[0], 1e-2);
        }
        kiln_backend_free(vk);
    }
    free(q);
    free(k);
    free(v);
    kiln_backend_free(cpu);
}

/* The tensor-core matmul reads an f16 copy of x, and a matmul of the same x
 * as the last one uses that copy again. It must not once x has been written
 * (by an op, by an upload) or the copy overwritten (a conv's column matrix
 * lands in the same scratch memory): each case reads a changed x, so a
 * stale copy gives the old product. The reference is float64 over the
 * f16-rounded operands the tensor cores see. */
enum { COPY_M = 96, COPY_N = 80, COPY_K = 136 };

static void f16_matmul_reference(const float *x, const uint16_t *w, double x_scale, bool x_in_f16, float *y)
{
    for (int m = 0; m < COPY_M; m++)
        for (int n = 0; n < COPY_N; n++) {
            double sum = 0;
            for (int k = 0; k < COPY_K; k++) {
                float xk = (float)(x_scale * x[m * COPY_K + k]);
                sum += (double)(x_in_f16 ? kiln_f16_to_f32(kiln_f32_to_f16(xk)) : xk) *
                       kiln_f16_to_f32(w[n * COPY_K + k]);
            }
            y[m * COPY_N + n] = (float)sum;
        }
}

static void f16_copy_of_x_is_not_used_stale(void **state)
{
    (void)state;
    kiln_backend *be = open_tensor_cores(NULL, NULL);
    enum { XN = COPY_M * COPY_K, YN = COPY_M * COPY_N, WN = COPY_N * COPY_K };
    float *x = random_floats(XN, 31, -1, 1), *x2 = random_floats(XN, 32, -1, 1);
    uint16_t *w[2];
    kiln_buffer *wbuf[2], *act, *img;
    kiln_tensor wt[2];
    for (int i = 0; i < 2; i++) {
        float *f = random_floats(WN, 40 + (uint64_t)i, -1, 1);
        w[i] = malloc(WN * sizeof *w[i]);
        assert_non_null(w[i]);
        for (int j = 0; j < WN; j++) w[i][j] = kiln_f32_to_f16(f[j]);
        free(f);
        assert_kiln_ok(be->ops->weights_place(be, w[i], WN * sizeof *w[i], &wbuf[i]));
        wt[i] = (kiln_tensor){.dtype = KILN_F16, .ndim = 2, .shape = {COPY_N, COPY_K}, .buffer = wbuf[i]};
    }
    enum { STEPS = 5 };
    assert_kiln_ok(be->ops->buffer_alloc(be, (XN + STEPS * YN) * sizeof(float), &act));
    kiln_tensor xt = f32_view(act, 0, XN), yt[STEPS];
    for (int i = 0; i < STEPS; i++) yt[i] = f32_view(act, (XN + (size_t)i * YN) * sizeof(float), YN);
    kiln_matmul_params mm = {COPY_M, COPY_N, COPY_K, 0};
    float *got = malloc(YN * sizeof *got), *want = malloc(YN * sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    /* a 3x3 conv big enough that its column matrix covers the copy */
    kiln_conv2d_params cp = {1, 16, 32, 32, 16, 3, 3, 1, 1, 32, 32};
    enum { IMG = 16 * 32 * 32, CW = 16 * 16 * 9 };
    uint16_t cw[CW + 16] = {0};
    kiln_buffer *cwbuf;
    assert_kiln_ok(be->ops->weights_place(be, cw, sizeof cw, &cwbuf));
    kiln_tensor cwt = {.dtype = KILN_F16, .ndim = 4, .shape = {16, 16, 3, 3}, .buffer = cwbuf};
    kiln_tensor cbt = {.dtype = KILN_F16, .ndim = 1, .shape = {16}, .buffer = cwbuf, .offset = CW * 2};
    assert_kiln_ok(be->ops->buffer_alloc(be, 2 * IMG * sizeof(float), &img));
    kiln_tensor it = f32_view(img, 0, IMG), ot = f32_view(img, IMG * sizeof(float), IMG);
    float *ones = malloc(IMG * sizeof *ones);
    assert_non_null(ones);
    for (int i = 0; i < IMG; i++) ones[i] = 1.0f;
    assert_kiln_ok(be->ops->upload(be, &it, ones, IMG * sizeof *ones));
    /* once first, so that the scratch is already this large and later
     * column matrices land in the buffer that holds the copy */
    assert_kiln_ok(be->ops->conv2d(be, &cp, (const kiln_tensor *[]){&it, &cwt, &cbt}, &ot));

    assert_kiln_ok(be->ops->upload(be, &xt, x, XN * sizeof *x));
    /* all in one command buffer (a download would end it, and the copy
     * with it), results read back after */
    static const char *const steps[STEPS] = {"x w0", "x w1 (the same copy)", "after x *= 2 in place: x w0",
                                             "after a conv through scratch: x w1", "after an upload into x: x w0"};
    for (int step = 0; step < STEPS; step++) {
        if (step == 2) assert_kiln_ok(be->ops->scale(be, &(kiln_scale_params){XN, 2.0f}, (const kiln_tensor *[]){&xt}, &xt));
        if (step == 3)
            assert_kiln_ok(be->ops->conv2d(be, &cp, (const kiln_tensor *[]){&it, &cwt, &cbt}, &ot));
        if (step == 4) assert_kiln_ok(be->ops->upload(be, &xt, x2, XN * sizeof *x2));
        assert_kiln_ok(be->ops->matmul(be, &mm, (const kiln_tensor *[]){&xt, &wt[step % 2], NULL}, &yt[step]));
    }
    for (int step = 0; step < STEPS; step++) {
        assert_kiln_ok(be->ops->download(be, &yt[step], got, YN * sizeof *got));
        f16_matmul_reference(step == 4 ? x2 : x, w[step % 2], step == 2 || step == 3 ? 2.0 : 1.0, true, want);
        print_message("  %s\n", steps[step]);
        assert_rel_l2_le(got, want, YN, 1e-4);
    }
    free(got);
    free(want);
    free(ones);
    free(x);
    free(x2);
    for (int i = 0; i < 2; i++) {
        be->ops->buffer_free(be, wbuf[i]);
        free(w[i]);
    }
    be->ops->buffer_free(be, cwbuf);
    be->ops->buffer_free(be, img);
    be->ops->buffer_free(be, act);
    kiln_backend_free(be);
}

/* The relative L2 error of one matmul with f16 weights of the COPY_ shape
 * on be against float64 over its operands, x rounded to f16 (as the tensor
 * cores see it) or not (as the f32 GEMM does). */
static double f16_weight_matmul_error(kiln_backend *be, bool x_in_f16)
{
    enum { XN = COPY_M * COPY_K, YN = COPY_M * COPY_N, WN = COPY_N * COPY_K };
    float *x = random_floats(XN, 51, -1, 1), *wf = random_floats(WN, 52, -1, 1);
    float *got = malloc(YN * sizeof *got), *want = malloc(YN * sizeof *want);
    uint16_t *w = malloc(WN * sizeof *w);
    assert_non_null(got);
    assert_non_null(want);
    assert_non_null(w);
    for (int i = 0; i < WN; i++) w[i] = kiln_f32_to_f16(wf[i]);
    kiln_buffer *wbuf, *act;
    assert_kiln_ok(be->ops->weights_place(be, w, WN * sizeof *w, &wbuf));
    assert_kiln_ok(be->ops->buffer_alloc(be, (XN + YN) * sizeof(float), &act));
    kiln_tensor wt = {.dtype = KILN_F16, .ndim = 2, .shape = {COPY_N, COPY_K}, .buffer = wbuf};
    kiln_tensor xt = f32_view(act, 0, XN), yt = f32_view(act, XN * sizeof(float), YN);
    assert_kiln_ok(be->ops->upload(be, &xt, x, XN * sizeof *x));
    kiln_matmul_params mm = {COPY_M, COPY_N, COPY_K, 0};
    assert_kiln_ok(be->ops->matmul(be, &mm, (const kiln_tensor *[]){&xt, &wt, NULL}, &yt));
    assert_kiln_ok(be->ops->download(be, &yt, got, YN * sizeof *got));
    f16_matmul_reference(x, w, 1.0, x_in_f16, want);
    double error = kiln_rel_l2(got, want, YN);
    be->ops->buffer_free(be, act);
    be->ops->buffer_free(be, wbuf);
    free(x);
    free(wf);
    free(w);
    free(got);
    free(want);
    return error;
}

/* One tensor-core matmul on be matches. */
static void tensor_core_matmul_matches(kiln_backend *be)
{
    double error = f16_weight_matmul_error(be, true);
    print_message("  tensor-core matmul: rel L2 %.2g (<= 1e-4)\n", error);
    assert_true(error <= 1e-4);
}

#ifdef KILN_TEST_VULKAN_INTERNALS
/* What a timing of n alternatives leaves: each that ran (ran NULL: all)
 * timed, the fastest kept (kept: the index into seconds and names), and
 * marked as timed. */
static void assert_fastest_kept(const double *seconds, int n, const bool *ran, int kept, bool tuned,
                                const char *const *names)
{
    for (int i = 0; i < n; i++)
        if (!ran || ran[i]) print_message("  %s %.2f ms\n", names[i], 1e3 * seconds[i]);
    assert_true(kept >= 0 && kept < n);
    print_message("  kept %s\n", names[kept]);
    assert_true(tuned);
    assert_true(!ran || ran[kept]);
    for (int i = 0; i < n; i++)
        if (!ran || ran[i]) {
            assert_true(seconds[i] > 0.0);
            assert_true(seconds[kept] <= seconds[i]);
        }
}
#endif

/* KILN_VULKAN_GEMM_PREFETCH picks the tensor-core GEMMs that load their
 * operands 1, 2 or 3 K steps ahead, KILN_VULKAN_GEMM_ROWS those that tile
 * C in 64 or 128 rows, KILN_VULKAN_GEMM_WORKGROUP=1 those on workgroup-scope
 * matrices (the device name says which), and anything else is refused by
 * name, as are 128 rows loading more than 1 ahead and workgroup-scope
 * matrices with either of the others. Where all are unset, a GPU times the
 * kinds it has when it opens; that timing, run
 * here on small shapes, keeps the fastest and leaves the GEMMs computing
 * right ... */
static void gemm_tile_switches_and_timing(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *says;
    } forced[] = {{"KILN_VULKAN_GEMM_PREFETCH", "2", "GEMM loads 2 K steps ahead"},
                  {"KILN_VULKAN_GEMM_PREFETCH", "3", "GEMM loads 3 K steps ahead"},
                  {"KILN_VULKAN_GEMM_ROWS", "128", "GEMM tiles 128x64, loads 1 K step ahead"}};
    for (size_t i = 0; i < sizeof forced / sizeof forced[0]; i++) {
        kiln_backend *be = open_tensor_cores(forced[i].name, forced[i].value);
        print_message("  %s\n", be->device_name);
        assert_non_null(strstr(be->device_name, forced[i].says));
        tensor_core_matmul_matches(be);
        kiln_backend_free(be);
    }
    assert_switch_refused("KILN_VULKAN_GEMM_PREFETCH", "4");
    assert_switch_refused("KILN_VULKAN_GEMM_PREFETCH", "12");
    assert_switch_refused("KILN_VULKAN_GEMM_ROWS", "96");
    assert_switch_refused("KILN_VULKAN_GEMM_ROWS", "128x");
    setenv("KILN_VULKAN_GEMM_ROWS", "128", 1);
    assert_switch_refused("KILN_VULKAN_GEMM_PREFETCH", "2");
    assert_switch_refused("KILN_VULKAN_GEMM_WORKGROUP", "1");
    assert_switch_refused("KILN_VULKAN_GEMM_WORKGROUP", "2");
    unsetenv("KILN_VULKAN_GEMM_ROWS");
    assert_switch_refused("KILN_VULKAN_GEMM_WORKGROUP", "3");
    /* KILN_VULKAN_GEMM_WORKGROUP=1: emulated here; on a GPU only where its
     * driver has the matrices, which a refusal must name (a 96-row matmul
     * then runs on 64x64 tiles: whole 128-row tiles only) */
    setenv("KILN_VULKAN_EMULATE_COOPMAT", "1", 1);
    setenv("KILN_VULKAN_GEMM_WORKGROUP", "1", 1);
    kiln_backend *workgroup = NULL;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    kiln_status st = kiln_backend_vulkan_create(&opt, &workgroup);
    unsetenv("KILN_VULKAN_GEMM_WORKGROUP");
    unsetenv("KILN_VULKAN_EMULATE_COOPMAT");
    if (st == KILN_ERR_UNSUPPORTED) {
        print_message("  KILN_VULKAN_GEMM_WORKGROUP=1 refused: %s\n", kiln_last_error());
        assert_non_null(strstr(kiln_last_error(), "VK_NV_cooperative_matrix2"));
    } else {
        assert_kiln_ok(st);
        print_message("  %s\n", workgroup->device_name);
        assert_non_null(strstr(workgroup->device_name, "GEMM on workgroup-scope matrices"));
        tensor_core_matmul_matches(workgroup);
        kiln_backend_free(workgroup);
    }
#ifdef KILN_TEST_VULKAN_INTERNALS
    /* ... the second time with KILN_VULKAN_GEMM_WORKGROUP=2, which lets the
     * workgroup-scope GEMM into that timing (emulated here: allowed, but
     * like every kind on a CPU not timed when the device opens) */
    for (int with_workgroup = 0; with_workgroup <= 1; with_workgroup++) {
        kiln_backend *be = with_workgroup ? open_tensor_cores("KILN_VULKAN_GEMM_WORKGROUP", "2")
                                          : open_tensor_cores(NULL, NULL);
        kiln_vk *vk = kiln_vk_of(be);
        if (emulated(be)) {
            /* emulated matrices are not timed when the device opens */
            assert_int_equal(vk->gemm_prefetch, 1);
            assert_int_equal(vk->gemm_rows, 64);
            assert_false(vk->gemm_tuned);
            assert_int_equal(vk->gemm_allowed[KILN_VK_GEMM_WORKGROUP], with_workgroup);
        } else {
            assert_true(vk->gemm_tuned); /* a GPU's are */
        }
        static const uint32_t shapes[][3] = {{128, 128, 1024}, {192, 64, 320}};
        double seconds[KILN_VK_GEMM_KERNELS] = {-1, -1, -1, -1, -1};
        bool ran[KILN_VK_GEMM_KERNELS];
        for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++) ran[i] = vk->gemm_allowed[i];
        assert_kiln_ok(kiln_vk_tune_gemms(be, shapes, 2, seconds, NULL, 0, NULL));
        int kept = -1;
        for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++)
            if (kiln_vk_gemm_kernels[i].prefetch == vk->gemm_prefetch && kiln_vk_gemm_kernels[i].rows == vk->gemm_rows)
                kept = i;
        static const char *const names[KILN_VK_GEMM_KERNELS] = {
            "64x64, 1 K step ahead", "64x64, 2 ahead", "64x64, 3 ahead", "128x64, 1 ahead", "128x64, workgroup-scope"};
        assert_fastest_kept(seconds, KILN_VK_GEMM_KERNELS, ran, kept, vk->gemm_tuned, names);
        tensor_core_matmul_matches(be);
        kiln_backend_free(be);
    }
#endif
}


/* KILN_VULKAN_SPLIT_K takes 0 (GEMMs never split K, which the device name
 * says) or 1 and nothing else; unset, a GPU times GEMMs whole and split as
 * estimated when it opens. That timing, run here on shapes the estimate
 * splits (one or two output tiles, K of 1536 and 2048), keeps the faster
 * and the matmul still matches. */
static void split_k_switch_and_timing(void **state)
{
    (void)state;
    assert_switch_refused("KILN_VULKAN_SPLIT_K", "2");
    assert_switch_refused("KILN_VULKAN_SPLIT_K", "no");
    kiln_backend *whole = open_tensor_cores("KILN_VULKAN_SPLIT_K", "0");
    print_message("  %s\n", whole->device_name);
    assert_non_null(strstr(whole->device_name, "K never split"));
    tensor_core_matmul_matches(whole);
    kiln_backend_free(whole);
#ifdef KILN_TEST_VULKAN_INTERNALS
    kiln_backend *be = open_tensor_cores(NULL, NULL);
    kiln_vk *vk = kiln_vk_of(be);
    if (emulated(be)) {
        assert_true(vk->split_k); /* split as estimated, untimed */
        assert_false(vk->split_k_tuned);
        assert_null(strstr(be->device_name, "split"));
    } else {
        assert_true(vk->split_k_tuned); /* timed when the GPU opened */
        assert_non_null(strstr(be->device_name, vk->split_k ? "K split" : "K never split"));
    }
    uint32_t prefetch = vk->gemm_prefetch, rows = vk->gemm_rows;
    bool tiles_tuned = vk->gemm_tuned;
    static const uint32_t shapes[][3] = {{64, 64, 2048}, {64, 128, 1536}};
    double seconds[2] = {-1, -1};
    assert_kiln_ok(kiln_vk_tune_gemms(be, NULL, 0, NULL, shapes, 2, seconds));
    /* no tile shapes: that choice left as it was */
    assert_int_equal(vk->gemm_prefetch, prefetch);
    assert_int_equal(vk->gemm_rows, rows);
    assert_true(vk->gemm_tuned == tiles_tuned);
    assert_fastest_kept(seconds, 2, NULL, vk->split_k, vk->split_k_tuned, (const char *const[]){"whole", "split"});
    tensor_core_matmul_matches(be);
    kiln_backend_free(be);
#endif
}

#ifdef KILN_TEST_VULKAN_INTERNALS
/* The split-K estimate's workgroups an SM from a pipeline's registers, as
 * NVIDIA's occupancy rules give them (64K registers an SM, allocated 256 a
 * warp, at most 64 warps and 32 workgroups): the H200's tensor-core GEMM at
 * 88 registers fits 2 of 256 invocations, at 80 it would fit 3; session 7's
 * 128x128 tile at 150 fit 1; the f32 GEMM's 64 invocations at 205 fit 4. */
static void workgroups_an_sm_follow_nvidia_occupancy(void **state)
{
    (void)state;
    static const uint32_t cases[][3] = {
        {88, 256, 2}, {80, 256, 3}, {81, 256, 2}, {128, 256, 2}, {129, 256, 1}, {150, 256, 1},
        {205, 64, 4}, {32, 256, 8}, {16, 32, 32}, {255, 1024, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint32_t got = kiln_vk_nvidia_workgroups_per_sm(cases[i][0], cases[i][1]);
        print_message("  %u registers x %u invocations: %u an SM\n", cases[i][0], cases[i][1], got);
        assert_int_equal(got, cases[i][2]);
    }
}
#endif

/* KILN_VULKAN_REGISTER_SOFTMAX takes 0 or 1, KILN_VULKAN_ATTENTION_ROWS 64
 * or 128 (the softmax in registers only), and nothing else. On 128 query
 * rows a workgroup attention matches the CPU, with partial workgroups, at
 * head dims of 64 keys a tile (40) and of 32 (80), and at one too wide for
 * 128 rows, which runs on 64 (176). Unset, a GPU times the tensor-core
 * attentions when it opens; that timing, run here on small shapes, keeps
 * the fastest preferred and attention still matches the CPU. */
static void attention_switches_and_timing(void **state)
{
    (void)state;
    assert_switch_refused("KILN_VULKAN_REGISTER_SOFTMAX", "yes");
    assert_switch_refused("KILN_VULKAN_ATTENTION_ROWS", "32");
    setenv("KILN_VULKAN_REGISTER_SOFTMAX", "0", 1);
    assert_switch_refused("KILN_VULKAN_ATTENTION_ROWS", "128");
    unsetenv("KILN_VULKAN_REGISTER_SOFTMAX");
    kiln_backend *tall = open_tensor_cores("KILN_VULKAN_ATTENTION_ROWS", "128");
    print_message("  %s\n", tall->device_name);
    assert_non_null(strstr(tall->device_name, "softmax in registers on 128 rows"));
    assert_attention_matches_cpu(tall, 2, 200, 150, 40, 1.0f, 62, 1e-2);
    assert_attention_matches_cpu(tall, 1, 130, 90, 80, 1.0f, 63, 1e-2);
    assert_attention_matches_cpu(tall, 1, 70, 40, 176, 1.0f, 64, 1e-2);
    kiln_backend_free(tall);
#ifdef KILN_TEST_VULKAN_INTERNALS
    kiln_backend *be = open_tensor_cores(NULL, NULL);
    kiln_vk *vk = kiln_vk_of(be);
    bool *may = vk->attention;
    if (emulated(be)) {
        /* untimed: the softmax in registers on 64 rows, the shared memory's
         * where that does not fit */
        assert_true(may[KILN_VK_ATTENTION_SHARED] && may[KILN_VK_ATTENTION_REGISTERS]);
        assert_false(may[KILN_VK_ATTENTION_REGISTERS_128]);
        assert_false(vk->attention_tuned);
        may[KILN_VK_ATTENTION_REGISTERS_128] = true; /* all three to time below */
    } else {
        /* A GPU timed those that passed their check when it opened, where
         * more than one did; the timing below has them all allowed again. */
        int passed = 0;
        for (int a = 0; a < KILN_VK_ATTENTIONS; a++) {
            may[a] = may[a] || (vk->attention_tuned && !vk->attention_failed[a]);
            passed += may[a];
        }
        assert_true(vk->attention_tuned == (passed > 1));
    }
    bool ran[KILN_VK_ATTENTIONS];
    int nran = 0;
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) ran[a] = may[a], nran += may[a];
    if (nran > 1) {
        static const uint32_t shapes[][4] = {{1, 2, 128, 40}, {1, 1, 96, 80}};
        double seconds[KILN_VK_ATTENTIONS] = {-1, -1, -1};
        assert_kiln_ok(kiln_vk_tune_attentions(be, shapes, 2, seconds));
        int kept = -1; /* the one preferred now */
        for (int a = 0; a < KILN_VK_ATTENTIONS; a++)
            if (may[a]) kept = a;
        for (int a = 0; a < kept; a++) assert_true(may[a] == ran[a]); /* the fallbacks stay */
        assert_fastest_kept(seconds, KILN_VK_ATTENTIONS, ran, kept, vk->attention_tuned,
                            (const char *const[]){"shared memory", "registers", "registers on 128 rows"});
    } else {
        print_message("  %s: one tensor-core attention here, nothing to time\n", be->device_name);
    }
    assert_attention_matches_cpu(be, 2, 70, 70, 40, 1.0f, 61, 1e-2);
    kiln_backend_free(be);
#endif
}

#ifdef KILN_TEST_VULKAN_INTERNALS
/* What a check at open (kiln_vk_check_attentions, kiln_vk_check_gemms) of
 * n alternatives leaves: each that ran has an error above zero (f16
 * operands), is kept exactly where that is within tol, and is marked failed
 * where not. */
static void assert_check_kept(int n, const bool *ran, const double *errors, double tol, const bool *kept,
                              const bool *failed)
{
    for (int i = 0; i < n; i++)
        if (ran[i]) {
            assert_true(errors[i] > 0.0);
            assert_true(kept[i] == (errors[i] <= tol));
            assert_true(failed[i] == !kept[i]);
        }
}

/* A GPU checks its tensor-core attentions against the CPU when it opens and
 * runs none that misses (an H100 gave NaN from the shared-memory one). The
 * check again: each one the device runs is kept exactly where its error,
 * above zero (f16 operands), is within tolerance, and on emulated matrices
 * all three are; against a tolerance of zero each misses and is taken
 * away, marked failed (the device name says so); attention then falls back
 * to the f32 shader, which still matches the CPU. */
static void attention_check_takes_away_what_misses(void **state)
{
    (void)state;
    kiln_backend *be = open_tensor_cores(NULL, NULL);
    kiln_vk *vk = kiln_vk_of(be);
    print_message("  %s\n", be->device_name);
    bool *kept = vk->attention, *failed = vk->attention_failed;
    if (emulated(be)) kept[KILN_VK_ATTENTION_REGISTERS_128] = true; /* untimed, so not allowed: checked here too */
    bool ran[KILN_VK_ATTENTIONS];
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) ran[a] = kept[a];
    if (emulated(be))
        for (int a = 0; a < KILN_VK_ATTENTIONS; a++) assert_true(ran[a]); /* not checked when it opened */
    double errors[KILN_VK_ATTENTIONS] = {-1, -1, -1};
    assert_kiln_ok(kiln_vk_check_attentions(be, 1e-2, errors));
    print_message("  errors: softmax in shared memory %.2g, in registers %.2g, in registers on 128 rows %.2g\n",
                  errors[0], errors[1], errors[2]);
    assert_check_kept(KILN_VK_ATTENTIONS, ran, errors, 1e-2, kept, failed);
    bool still[KILN_VK_ATTENTIONS];
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) {
        if (emulated(be)) assert_true(kept[a]);
        still[a] = kept[a];
    }
    assert_kiln_ok(kiln_vk_check_attentions(be, 0.0, errors));
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++)
        if (still[a]) assert_true(!kept[a] && failed[a]);
    kiln_backend_free(be);

    be = open_tensor_cores(NULL, NULL);
    vk = kiln_vk_of(be);
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) vk->attention[a] = false; /* as a failed check leaves them */
    assert_attention_matches_cpu(be, 1, 70, 70, 40, 2.0f, 17, 1e-5);
    kiln_backend_free(be);
}
#endif

#ifdef KILN_TEST_VULKAN_INTERNALS
/* A GPU checks its tensor-core GEMMs (every kind it has) against the CPU
 * when it opens, as it does its attentions. The check again: each kind is
 * kept exactly where its error, above zero (x rounded to f16) but within
 * f16's tolerance, passes, and on emulated matrices all five do (the
 * workgroup-scope GEMM emulated as asked for, and in use); against a tolerance
 * of zero all miss, are marked failed, and GEMMs with f16 weights then run
 * the f32 shaders: the matmul's error against x unrounded falls from the
 * tensor cores' (rounding x) to f32's. */
static void gemm_check_takes_away_what_misses(void **state)
{
    (void)state;
    kiln_backend *be = open_tensor_cores(NULL, NULL);
    if (emulated(be)) {
        kiln_backend_free(be);
        be = open_tensor_cores("KILN_VULKAN_GEMM_WORKGROUP", "1");
        assert_int_equal(kiln_vk_of(be)->gemm_prefetch, 0);
    }
    kiln_vk *vk = kiln_vk_of(be);
    bool ran[KILN_VK_GEMM_KERNELS];
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++) {
        ran[i] = vk->gemm_allowed[i];
        if (emulated(be)) assert_true(ran[i]); /* not checked when it opened */
    }
    double errors[KILN_VK_GEMM_KERNELS] = {-1, -1, -1, -1, -1};
    assert_kiln_ok(kiln_vk_check_gemms(be, 1e-2, errors));
    print_message("  errors: 64x64 1, 2, 3 K steps ahead, 128x64, 128x64 workgroup-scope: %.2g, %.2g, %.2g, %.2g, %.2g\n",
                  errors[0], errors[1], errors[2], errors[3], errors[4]);
    assert_check_kept(KILN_VK_GEMM_KERNELS, ran, errors, 1e-2, vk->gemm_allowed, vk->gemm_failed);
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++)
        if (emulated(be)) assert_true(vk->gemm_allowed[i]);
    assert_true(vk->gemm_allowed[kiln_vk_gemm_kind(vk)]); /* the kind in use passed */
    double tensor_cores = f16_weight_matmul_error(be, false);
    assert_kiln_ok(kiln_vk_check_gemms(be, 0.0, errors));
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++)
        if (ran[i]) assert_true(!vk->gemm_allowed[i] && vk->gemm_failed[i]);
    double f32 = f16_weight_matmul_error(be, false);
    print_message("  matmul against x unrounded: on tensor cores %.2g, after the check took them away %.2g\n",
                  tensor_cores, f32);
    assert_true(tensor_cores > 1e-5);
    assert_true(f32 <= 1e-6);
    kiln_backend_free(be);
}
#endif

/* The register softmax (attention_registers.comp) needs products laid out
 * with each row's elements in one quad of lanes; the host checks that on
 * the device when it opens it. Emulated matrices have that layout, so the
 * device says it runs the softmax in registers; with the check built for
 * emulated matrices of another layout (rows in pairs: tests/CMakeLists.txt)
 * it must not, and attention, now through shared memory, still matches the
 * CPU. A GPU's own matrices have the layout they have: there the attention
 * the check chose must match, and the paired-rows half has nothing to
 * replace. */
static void register_softmax_only_where_rows_are_in_quads(void **state)
{
    (void)state;
    for (int quads = 1; quads >= 0; quads--) {
        kiln_backend *vk =
            open_tensor_cores(quads ? NULL : "KILN_VULKAN_SHADER_DIR", KILN_BINARY_DIR "/tests/paired_rows");
        print_message("  %s\n", vk->device_name);
        bool native = !emulated(vk);
        if (native)
            print_message("  the device's own matrices: the paired-rows layout is the emulation's alone\n");
        else if (quads)
            assert_non_null(strstr(vk->device_name, "softmax in registers"));
        else
            assert_null(strstr(vk->device_name, "softmax in registers"));
        assert_attention_matches_cpu(vk, 1, 70, 70, 40, 2.0f, 7, 1e-2);
        kiln_backend_free(vk);
        if (native) break;
    }
}

/* The elementwise shaders take four elements an invocation, as one vec4
 * where every operand is 16-byte aligned and as floats where one is not
 * (shaders/elementwise.glsl): each of add, gelu, add_channel_bias, geglu and
 * FreeU's channel scaling with its operands aligned, all misaligned, and mixed, on sizes with a tail
 * short of four (and a geglu whose rows are not whole vec4s), against the
 * CPU backend. (lavapipe reads misaligned vec4s as well as aligned ones, so
 * here this checks the results of both paths, not the choice between them,
 * which matters on GPUs.) */
static void elementwise_ops_at_every_alignment(void **state)
{
    (void)state;
    kiln_backend *vk = open_vulkan(), *cpu = NULL;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &cpu));
    static const size_t offsets[][4] = {{0, 0, 0, 0}, {4, 4, 0, 4}, {12, 12, 0, 12}, {8, 0, 0, 0}, {0, 8, 0, 0}, {0, 0, 0, 4}};
    kiln_add_params add = {1030};
    kiln_gelu_params gelu = {1030};
    kiln_add_channel_bias_params bias = {2, 5, 103};
    kiln_geglu_params geglu[2] = {{6, 20}, {5, 22}};
    kiln_freeu_backbone_params freeu = {2, 5, 103, 1.3f, 0};
    struct {
        const char *name;
        op_fn op;
        const void *params;
        int nsrc;
        size_t count[2], ny;
    } cases[] = {
        {"add", add_op, &add, 2, {1030, 1030}, 1030},
        {"gelu", gelu_op, &gelu, 1, {1030}, 1030},
        {"add_channel_bias", add_channel_bias_op, &bias, 2, {1030, 10}, 1030},
        {"geglu 6x20", geglu_op, &geglu[0], 1, {240}, 120},
        {"geglu 5x22", geglu_op, &geglu[1], 1, {220}, 110},
        {"freeu_backbone", freeu_backbone_op, &freeu, 1, {1030}, 1030},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        float *host[2] = {random_floats(cases[c].count[0], 7, -4, 4), random_floats(cases[c].count[1] + 1, 8, -4, 4)};
        float *want = malloc(cases[c].ny * 4), *got = malloc(cases[c].ny * 4);
        run_on(cpu, cases[c].op, cases[c].params, cases[c].nsrc, host, cases[c].count, want, cases[c].ny);
        for (size_t o = 0; o < sizeof offsets / sizeof *offsets; o++) {
            size_t at[4] = {0};
            for (int i = 0; i <= cases[c].nsrc; i++) at[i] = offsets[o][i < cases[c].nsrc ? i : 3];
            print_message("  %s, operands at byte offsets %zu %zu, output at %zu\n", cases[c].name, at[0],
                          cases[c].nsrc > 1 ? at[1] : 0, at[cases[c].nsrc]);
            run_at(vk, cases[c].op, cases[c].params, cases[c].nsrc, host, cases[c].count, got, cases[c].ny, at);
            assert_rel_l2_le(got, want, cases[c].ny, 1e-6);
        }
        free(host[0]);
        free(host[1]);
        free(want);
        free(got);
    }
    kiln_backend_free(cpu);
    kiln_backend_free(vk);
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

/* An argument runs only the tests whose names match it (cmocka's pattern:
 * `*` and `?`), to check one case on a GPU without the whole suite. */
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const char *const required[] = {"CI", "KILN_REQUIRE_VULKAN", NULL};
    int rc;
    if (!backend_available("vulkan", required, &rc)) return rc;
    if (argc > 1) cmocka_set_test_filter(argv[1]);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_index_out_of_range_names_it),
        cmocka_unit_test(devices_are_listed_by_index),
        cmocka_unit_test(no_driver_is_unsupported),
        cmocka_unit_test(bad_coopmat_shape_switch_names_it),
        cmocka_unit_test(khr_switch_names_what_is_missing),
        cmocka_unit_test(conv_col_bytes_switch_rejects_junk),
        cmocka_unit_test(attention_rescales_rows_whose_max_grows),
        cmocka_unit_test(register_softmax_only_where_rows_are_in_quads),
#ifdef KILN_TEST_VULKAN_INTERNALS
        cmocka_unit_test(attention_check_takes_away_what_misses),
#endif
        cmocka_unit_test(f16_copy_of_x_is_not_used_stale),
        cmocka_unit_test(gemm_tile_switches_and_timing),
#ifdef KILN_TEST_VULKAN_INTERNALS
        cmocka_unit_test(gemm_check_takes_away_what_misses),
#endif
        cmocka_unit_test(attention_switches_and_timing),
        cmocka_unit_test(split_k_switch_and_timing),
#ifdef KILN_TEST_VULKAN_INTERNALS
        cmocka_unit_test(workgroups_an_sm_follow_nvidia_occupancy),
#endif
#ifdef KILN_TEST_SPIRV_TABLE
        cmocka_unit_test(shader_dir_replaces_embedded_spirv),
        cmocka_unit_test(pipeline_stats_switch_reports_or_says_why_not),
#endif
        cmocka_unit_test(oversize_allocation_names_the_bytes),
        cmocka_unit_test(transfers_out_of_bounds_are_errors),
        cmocka_unit_test(misaligned_operand_is_an_error),
        cmocka_unit_test(large_transfers_round_trip),
        cmocka_unit_test(dependent_op_chain_is_ordered),
        cmocka_unit_test(replayed_runs_see_new_inputs),
        cmocka_unit_test(split_k_replays_after_scratch_grows),
        cmocka_unit_test(arena_reuse_keeps_contents),
        cmocka_unit_test(long_loops_match_the_cpu),
        cmocka_unit_test(elementwise_ops_at_every_alignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
