/* The activation arena: activations whose lifetimes overlap never share
 * memory, and released ones are reused. Record and replay: a backend that
 * records (here the CPU backend wrapped by a recorder) replays repeated runs
 * with fresh inputs, and re-records when the ops change. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "backend_suite.h"
#include "graph.h"
#include "status.h"

typedef struct chain_ctx { int64_t n; float in[4], out[4]; } chain_ctx;

/* x -> a = 2x -> b = a + x -> c = 2b; with releases, at most three
 * activations are alive at once. */
static kiln_status chain(kiln_graph *g, void *ctx)
{
    chain_ctx *c = ctx;
    kiln_tensor *x, *a, *b, *y;
    int64_t shape[1] = {c->n};
    kiln_status st;
    if ((st = kiln_graph_input(g, &x, KILN_F32, 1, shape, c->in)) != KILN_OK) return st;
    if ((st = kiln_graph_tensor(g, &a, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_scale(g, &(kiln_scale_params){(int32_t)c->n, 2.0f}, (const kiln_tensor *[]){x}, a))) return st;
    if ((st = kiln_graph_tensor(g, &b, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_add(g, &(kiln_add_params){(int32_t)c->n}, (const kiln_tensor *[]){a, x}, b))) return st;
    kiln_graph_release(g, a);
    kiln_graph_release(g, x);
    if ((st = kiln_graph_tensor(g, &y, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_scale(g, &(kiln_scale_params){(int32_t)c->n, 2.0f}, (const kiln_tensor *[]){b}, y))) return st;
    kiln_graph_release(g, b);
    return kiln_graph_output(g, y, c->out, (size_t)c->n * sizeof c->out[0]);
}

static void arena_reuses_released_memory(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_graph *g;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    assert_kiln_ok(kiln_graph_create(be, &g));
    chain_ctx c = {.n = 4, .in = {1, 2, 3, 4}};
    assert_kiln_ok(kiln_graph_run(g, chain, &c));
    float expect[4] = {6, 12, 18, 24}; /* 2 (2x + x) */
    for (int i = 0; i < 4; i++) assert_float_equal(c.out[i], expect[i], 0.0f);
    /* four 256-byte slots requested; y reuses a's or x's slot */
    assert_int_equal(kiln_graph_arena_bytes(g), 3 * 256);
    kiln_graph_free(g);
    kiln_backend_free(be);
}

/* ---- a recording backend: the CPU backend's ops, kept in a list while
 * recording and run again on replay */

typedef struct recorded_op {
    int op;
    union {
#define KILN_OP(name, nsrc, doc) kiln_##name##_params name;
#include "ops.def"
#undef KILN_OP
    } params;
    kiln_tensor src[4], dst; /* copies: the graph frees its tensor structs after each pass */
    bool has_src[4];
} recorded_op;

struct kiln_recording {
    recorded_op ops[16];
    int nops;
};

typedef struct recorder {
    kiln_backend *cpu;
    kiln_recording *open; /* between record_begin and record_end */
    int direct_ops, replays, recordings_made, recordings_freed;
} recorder;

static recorder *rec_of(kiln_backend *be) { return be->impl; }

static kiln_status run_recorded(kiln_backend *cpu, recorded_op *r)
{
    const kiln_tensor *src[4];
    for (int i = 0; i < 4; i++) src[i] = r->has_src[i] ? &r->src[i] : NULL;
    switch (r->op) {
#define KILN_OP(name, nsrc, doc) \
    case KILN_OP_##name: return cpu->ops->name(cpu, &r->params.name, src, &r->dst);
#include "ops.def"
#undef KILN_OP
    }
    return KILN_ERR_INVALID_ARG;
}

#define KILN_OP(name, nsrc, doc)                                                          \
    static kiln_status rec_##name(kiln_backend *be, const kiln_##name##_params *p,         \
                                  const kiln_tensor *const *src, kiln_tensor *dst)         \
    {                                                                                      \
        recorder *r = rec_of(be);                                                          \
        if (!r->open) {                                                                    \
            r->direct_ops++;                                                               \
            return r->cpu->ops->name(r->cpu, p, src, dst);                                 \
        }                                                                                  \
        assert_true(r->open->nops < 16);                                                   \
        recorded_op *o = &r->open->ops[r->open->nops++];                                   \
        o->op = KILN_OP_##name;                                                            \
        o->params.name = *p;                                                               \
        for (int i = 0; i < nsrc; i++)                                                     \
            if ((o->has_src[i] = src[i] != NULL)) o->src[i] = *src[i];                     \
        o->dst = *dst;                                                                     \
        return KILN_OK;                                                                    \
    }
#include "ops.def"
#undef KILN_OP

static kiln_status rec_alloc(kiln_backend *be, size_t bytes, kiln_buffer **out)
{
    return rec_of(be)->cpu->ops->buffer_alloc(rec_of(be)->cpu, bytes, out);
}
static void rec_free(kiln_backend *be, kiln_buffer *b) { rec_of(be)->cpu->ops->buffer_free(rec_of(be)->cpu, b); }
static kiln_status rec_upload(kiln_backend *be, const kiln_tensor *t, const void *src, size_t n)
{
    assert_null(rec_of(be)->open); /* nothing but ops while recording */
    return rec_of(be)->cpu->ops->upload(rec_of(be)->cpu, t, src, n);
}
static kiln_status rec_download(kiln_backend *be, const kiln_tensor *t, void *dst, size_t n)
{
    assert_null(rec_of(be)->open);
    return rec_of(be)->cpu->ops->download(rec_of(be)->cpu, t, dst, n);
}
static kiln_status rec_sync(kiln_backend *be) { return rec_of(be)->cpu->ops->synchronize(rec_of(be)->cpu); }
static kiln_status rec_begin(kiln_backend *be)
{
    assert_null(rec_of(be)->open);
    rec_of(be)->open = calloc(1, sizeof(kiln_recording));
    return KILN_OK;
}
static kiln_status rec_end(kiln_backend *be, kiln_recording **out)
{
    recorder *r = rec_of(be);
    if (out) {
        *out = r->open;
        r->recordings_made++;
    } else {
        free(r->open);
    }
    r->open = NULL;
    return KILN_OK;
}
static kiln_status rec_replay(kiln_backend *be, kiln_recording *rec)
{
    rec_of(be)->replays++;
    for (int i = 0; i < rec->nops; i++) TRY(run_recorded(rec_of(be)->cpu, &rec->ops[i]));
    return KILN_OK;
}
static void rec_recording_free(kiln_backend *be, kiln_recording *rec)
{
    rec_of(be)->recordings_freed++;
    free(rec);
}

static const kiln_backend_ops recorder_ops = {
    .buffer_alloc = rec_alloc,
    .buffer_free = rec_free,
    .upload = rec_upload,
    .download = rec_download,
    .synchronize = rec_sync,
    .record_begin = rec_begin,
    .record_end = rec_end,
    .replay = rec_replay,
    .recording_free = rec_recording_free,
#define KILN_OP(name, nsrc, doc) .name = rec_##name,
#include "ops.def"
#undef KILN_OP
};

static void run_chain(kiln_graph *g, chain_ctx *c, float first)
{
    for (int i = 0; i < 4; i++) c->in[i] = first + (float)i;
    assert_kiln_ok(kiln_graph_run(g, chain, c));
    for (int i = 0; i < (int)c->n; i++) assert_float_equal(c->out[i], 6.0f * c->in[i], 0.0f);
}

static void repeated_runs_are_replayed(void **state)
{
    (void)state;
    recorder r = {0};
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &r.cpu));
    kiln_backend be = {.ops = &recorder_ops, .kind = KILN_BACKEND_CPU, .name = "recorder", .impl = &r};
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(&be, &g));
    kiln_graph_set_replay(g, true);
    chain_ctx c = {.n = 4};

    run_chain(g, &c, 1.0f); /* first run: plain, it warms up */
    assert_int_equal(r.direct_ops, 3);
    assert_int_equal(r.recordings_made, 0);
    run_chain(g, &c, 10.0f); /* same ops: recorded, then replayed on the new input */
    run_chain(g, &c, -5.0f); /* replayed again */
    assert_int_equal(r.direct_ops, 3);
    assert_int_equal(r.recordings_made, 1);
    assert_int_equal(r.replays, 2);

    c.n = 3; /* other shapes: the recording is dropped, a plain run again */
    run_chain(g, &c, 2.0f);
    assert_int_equal(r.recordings_freed, 1);
    assert_int_equal(r.direct_ops, 6);
    run_chain(g, &c, 7.0f); /* and recorded anew */
    assert_int_equal(r.recordings_made, 2);
    assert_int_equal(r.replays, 3);

    kiln_graph_set_replay(g, false); /* off: plain runs, recording freed */
    assert_int_equal(r.recordings_freed, 2);
    run_chain(g, &c, 3.0f);
    assert_int_equal(r.direct_ops, 9);
    assert_int_equal(r.replays, 3);
    kiln_graph_free(g);
    kiln_backend_free(r.cpu);
}

static void shape_mismatch_is_an_error(void **state)
{
    (void)state;
    kiln_tensor a = {.dtype = KILN_F32, .ndim = 1, .shape = {4}};
    kiln_tensor y = {.dtype = KILN_F32, .ndim = 1, .shape = {5}};
    kiln_status st = kiln_check_scale(&(kiln_scale_params){4, 1.0f}, (const kiln_tensor *[]){&a}, &y);
    assert_int_equal(st, KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "scale: y"));
}

/* A kind past kiln_activation_kind's would reach a shader's or kernel's
 * switch with no function for it. */
static void unknown_activation_is_an_error(void **state)
{
    (void)state;
    kiln_tensor x = {.dtype = KILN_F32, .ndim = 1, .shape = {4}}, y = x;
    const kiln_tensor *src[] = {&x};
    assert_kiln_ok(kiln_check_activation(&(kiln_activation_params){4, KILN_ACTIVATION_MISH}, src, &y));
    const int32_t unknown[] = {-1, KILN_ACTIVATION_COUNT};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        kiln_activation_params p = {4, unknown[i]};
        assert_int_equal(kiln_check_activation(&p, src, &y), KILN_ERR_INVALID_ARG);
        assert_non_null(strstr(kiln_last_error(), "activation: kind"));
    }
}

/* An axis other than the width's and the height's has no taps, and a size
 * below 1 none to take: both are named, not left to the element counts. */
static void bad_slerp_resize_is_an_error(void **state)
{
    (void)state;
    kiln_tensor x = {.dtype = KILN_F32, .ndim = 4, .shape = {1, 3, 2, 4}}, y = x;
    const kiln_tensor *src[] = {&x};
    assert_kiln_ok(kiln_check_slerp_resize(&(kiln_slerp_resize_params){1, 3, 2, 4, 2, 1}, src, &y));
    const int32_t axes[] = {-1, 2};
    for (size_t i = 0; i < sizeof axes / sizeof axes[0]; i++) {
        kiln_slerp_resize_params p = {1, 3, 2, 4, 4, axes[i]};
        assert_int_equal(kiln_check_slerp_resize(&p, src, &y), KILN_ERR_INVALID_ARG);
        assert_non_null(strstr(kiln_last_error(), "slerp_resize: axis"));
    }
    assert_int_equal(kiln_check_slerp_resize(&(kiln_slerp_resize_params){1, 3, 2, 4, 0, 0}, src, &y),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "slerp_resize: out 0"));
}

/* Profiling on the CPU backend, which has no device clock: host time. */
static void profiled_cpu_run_is_timed_on_the_host(void **state)
{
    (void)state;
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    check_profiled_run(be, false);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_reuses_released_memory),
        cmocka_unit_test(repeated_runs_are_replayed),
        cmocka_unit_test(shape_mismatch_is_an_error),
        cmocka_unit_test(unknown_activation_is_an_error),
        cmocka_unit_test(bad_slerp_resize_is_an_error),
        cmocka_unit_test(profiled_cpu_run_is_timed_on_the_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
