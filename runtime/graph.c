#include "graph.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "status.h"

#define ARENA_ALIGN 256

/* One activation's life in the planning pass: allocated at event `start`,
 * released at event `end`. */
typedef struct lifetime {
    size_t bytes;
    size_t offset;
    int start, end;
} lifetime;

/* What a call of the forward function does (kiln_graph_run). */
typedef enum pass_kind {
    PASS_PLAN,    /* check shapes, record lifetimes, hash the ops */
    PASS_RUN,     /* everything */
    PASS_INPUTS,  /* uploads only */
    PASS_OPS,     /* ops only (being recorded) */
    PASS_OUTPUTS, /* downloads only */
} pass_kind;

#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

struct kiln_graph {
    kiln_backend *be;
    pass_kind pass; /* PASS_PLAN: tensors get lifetimes, not memory */
    kiln_op_stats *stats;

    bool replay;            /* kiln_graph_set_replay */
    uint64_t op_hash;       /* of the planning pass's ops and operands */
    uint64_t ran_hash;      /* of the last run that went through, 0 if none */
    kiln_recording *recording; /* of the ops whose hash is ran_hash */
    long replays;

    lifetime *lives; /* one per allocation, in allocation order */
    int nlives, cap_lives;
    int next_alloc;  /* index of the next allocation in the real pass */
    int clock;       /* event counter: each alloc and release ticks it */

    kiln_tensor **tensors; /* every tensor handed out in the current pass */
    int ntensors, cap_tensors;

    kiln_buffer *arena;
    size_t arena_bytes;
};

kiln_status kiln_graph_create(kiln_backend *be, kiln_graph **out)
{
    kiln_graph *g = calloc(1, sizeof *g);
    if (!g) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "graph: out of host memory");
    g->be = be;
    *out = g;
    return KILN_OK;
}

static void free_pass_tensors(kiln_graph *g)
{
    for (int i = 0; i < g->ntensors; i++) free(g->tensors[i]);
    g->ntensors = 0;
}

static void drop_recording(kiln_graph *g)
{
    if (g->recording) g->be->ops->recording_free(g->be, g->recording);
    g->recording = NULL;
}

void kiln_graph_free(kiln_graph *g)
{
    if (!g) return;
    drop_recording(g);
    free_pass_tensors(g);
    free(g->tensors);
    free(g->lives);
    if (g->arena) g->be->ops->buffer_free(g->be, g->arena);
    free(g);
}

kiln_backend *kiln_graph_backend(kiln_graph *g) { return g->be; }
bool kiln_graph_no_outputs(const kiln_graph *g) { return g->pass != PASS_RUN && g->pass != PASS_OUTPUTS; }
long kiln_graph_replays(const kiln_graph *g) { return g->replays; }
void kiln_graph_set_replay(kiln_graph *g, bool on)
{
    g->replay = on;
    if (!on) drop_recording(g);
}
size_t kiln_graph_arena_bytes(const kiln_graph *g) { return g->arena_bytes; }
void kiln_graph_profile(kiln_graph *g, kiln_op_stats *stats) { g->stats = stats; }

static int by_size_desc(const void *a, const void *b)
{
    const lifetime *x = *(const lifetime *const *)a, *y = *(const lifetime *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->start - y->start;
}

/* Greedy offset assignment, largest first: each activation goes to the lowest
 * offset that does not overlap an already placed activation alive at the same
 * time. Returns the arena size. */
static size_t plan_offsets(lifetime *lives, int n)
{
    lifetime **order = malloc((size_t)n * sizeof *order);
    lifetime **placed = malloc((size_t)n * sizeof *placed);
    if (!order || !placed) { free(order); free(placed); return SIZE_MAX; }
    for (int i = 0; i < n; i++) order[i] = &lives[i];
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    size_t total = 0;
    int nplaced = 0;
    for (int i = 0; i < n; i++) {
        lifetime *l = order[i];
        size_t offset = 0;
        bool moved = true;
        while (moved) { /* first fit: bump past every conflicting block */
            moved = false;
            for (int j = 0; j < nplaced; j++) {
                lifetime *p = placed[j];
                bool overlap_time = l->start < p->end && p->start < l->end;
                bool overlap_mem = offset < p->offset + p->bytes && p->offset < offset + l->bytes;
                if (overlap_time && overlap_mem) {
                    offset = p->offset + p->bytes;
                    moved = true;
                }
            }
        }
        l->offset = offset;
        placed[nplaced++] = l;
        if (offset + l->bytes > total) total = offset + l->bytes;
    }
    free(order);
    free(placed);
    return total;
}

static kiln_status run_pass(kiln_graph *g, kiln_graph_fn fn, void *ctx)
{
    g->clock = 0;
    g->next_alloc = 0;
    kiln_status st = fn(g, ctx);
    free_pass_tensors(g);
    return st;
}

static kiln_status run_as(kiln_graph *g, pass_kind pass, kiln_graph_fn fn, void *ctx)
{
    g->pass = pass;
    return run_pass(g, fn, ctx);
}

kiln_status kiln_graph_run(kiln_graph *g, kiln_graph_fn fn, void *ctx)
{
    g->nlives = 0;
    g->op_hash = FNV_OFFSET;
    kiln_status st = run_as(g, PASS_PLAN, fn, ctx);
    if (st != KILN_OK) return st;
    for (int i = 0; i < g->nlives; i++)
        if (g->lives[i].end < 0) g->lives[i].end = g->clock + 1; /* never released */

    size_t need = plan_offsets(g->lives, g->nlives);
    if (need == SIZE_MAX) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "graph: out of host memory while planning");
    if (need > g->arena_bytes || !g->arena) {
        drop_recording(g); /* it points into the old arena */
        g->ran_hash = 0;
        if (g->arena) g->be->ops->buffer_free(g->be, g->arena);
        g->arena = NULL;
        g->arena_bytes = 0;
        TRY(g->be->ops->buffer_alloc(g->be, need ? need : ARENA_ALIGN, &g->arena));
        g->arena_bytes = need;
    }

    /* A plain run unless these exact ops went through last time: that first
     * run also grows every scratch buffer and cache the ops use, which a
     * recording must not do. */
    const kiln_backend_ops *ops = g->be->ops;
    bool recordable = g->replay && ops->record_begin && !g->stats;
    if (!recordable || g->op_hash != g->ran_hash) {
        drop_recording(g);
        st = run_as(g, PASS_RUN, fn, ctx);
        g->ran_hash = st == KILN_OK ? g->op_hash : 0;
        return st;
    }
    TRY(run_as(g, PASS_INPUTS, fn, ctx));
    if (!g->recording) {
        TRY(ops->record_begin(g->be));
        st = run_as(g, PASS_OPS, fn, ctx);
        if (st != KILN_OK) {
            ops->record_end(g->be, NULL);
            return st;
        }
        TRY(ops->record_end(g->be, &g->recording));
    }
    TRY(ops->replay(g->be, g->recording));
    g->replays++;
    return run_as(g, PASS_OUTPUTS, fn, ctx);
}

kiln_status kiln_graph_run_once(kiln_backend *be, kiln_graph_fn fn, void *ctx)
{
    kiln_graph *g;
    TRY(kiln_graph_create(be, &g));
    kiln_status st = kiln_graph_run(g, fn, ctx);
    kiln_graph_free(g);
    return st;
}

static kiln_status track(kiln_graph *g, kiln_tensor *t)
{
    if (g->ntensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 256;
        kiln_tensor **n = realloc(g->tensors, (size_t)cap * sizeof *n);
        if (!n) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "graph: out of host memory");
        g->tensors = n;
        g->cap_tensors = cap;
    }
    g->tensors[g->ntensors++] = t;
    return KILN_OK;
}

kiln_status kiln_graph_tensor(kiln_graph *g, kiln_tensor **out, int ndim, const int64_t *shape)
{
    if (ndim < 1 || ndim > KILN_MAX_DIMS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "graph: tensor with %d dims", ndim);
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "graph: out of host memory");
    t->dtype = KILN_F32;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    kiln_status st = track(g, t);
    if (st != KILN_OK) { free(t); return st; }
    size_t bytes = (kiln_tensor_nbytes(t) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;

    if (g->pass == PASS_PLAN) {
        if (g->nlives == g->cap_lives) {
            int cap = g->cap_lives ? 2 * g->cap_lives : 256;
            lifetime *n = realloc(g->lives, (size_t)cap * sizeof *n);
            if (!n) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "graph: out of host memory");
            g->lives = n;
            g->cap_lives = cap;
        }
        g->lives[g->nlives] = (lifetime){.bytes = bytes, .start = g->clock++, .end = -1};
        t->offset = (size_t)g->nlives++; /* remembers its lifetime until planned */
    } else {
        if (g->next_alloc >= g->nlives || g->lives[g->next_alloc].bytes != bytes)
            return kiln_fail(KILN_ERR_INVALID_ARG,
                             "graph: forward pass allocated differently from its planning pass");
        t->buffer = g->arena;
        t->offset = g->lives[g->next_alloc++].offset;
    }
    *out = t;
    return KILN_OK;
}

void kiln_graph_release(kiln_graph *g, kiln_tensor *t)
{
    if (!t) return;
    if (g->pass == PASS_PLAN) g->lives[t->offset].end = g->clock;
    g->clock++;
}

kiln_status kiln_graph_input(kiln_graph *g, kiln_tensor **out, kiln_dtype dtype, int ndim,
                             const int64_t *shape, const void *host)
{
    TRY(kiln_graph_tensor(g, out, ndim, shape));
    (*out)->dtype = dtype;
    if (kiln_dtype_size(dtype) > kiln_dtype_size(KILN_F32))
        return kiln_fail(KILN_ERR_INVALID_ARG, "graph: input dtype %s wider than f32", kiln_dtype_name(dtype));
    if (g->pass != PASS_RUN && g->pass != PASS_INPUTS) return KILN_OK;
    return g->be->ops->upload(g->be, *out, host, kiln_tensor_nbytes(*out));
}

kiln_status kiln_graph_output(kiln_graph *g, const kiln_tensor *t, void *host, size_t bytes)
{
    if (kiln_graph_no_outputs(g)) return KILN_OK;
    if (bytes != kiln_tensor_nbytes(t))
        return kiln_fail(KILN_ERR_INVALID_ARG, "graph: output of %zu bytes read into %zu", kiln_tensor_nbytes(t), bytes);
    return g->be->ops->download(g->be, t, host, bytes);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Profiling one op: the device's time where the backend measures it, else
 * the host's from t0 over the op and a wait for it. */
static kiln_status op_time_begin(kiln_graph *g, double *t0)
{
    *t0 = now_seconds();
    return g->be->ops->time_begin ? g->be->ops->time_begin(g->be) : KILN_OK;
}

static void trace_tensor(FILE *f, const char *before, const kiln_tensor *t)
{
    fputs(before, f);
    if (!t) {
        fputc('-', f);
        return;
    }
    fprintf(f, "%s:", kiln_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) fprintf(f, d ? "x%lld" : "%lld", (long long)t->shape[d]);
}

static kiln_status op_time_end(kiln_graph *g, kiln_op_id op, double t0, const kiln_tensor *const *src, int nsrc,
                               const kiln_tensor *dst)
{
    double seconds = -1.0;
    if (g->be->ops->time_end)
        TRY(g->be->ops->time_end(g->be, &seconds));
    else
        TRY(g->be->ops->synchronize(g->be));
    g->stats->device_time = seconds >= 0.0;
    if (seconds < 0.0) seconds = now_seconds() - t0;
    g->stats->seconds[op] += seconds;
    g->stats->calls[op]++;
    FILE *f = g->stats->trace;
    if (f) {
        fprintf(f, "%s\t%.4f\t", kiln_op_names[op], 1e3 * seconds);
        for (int i = 0; i < nsrc; i++) trace_tensor(f, i ? " " : "", src[i]);
        trace_tensor(f, " -> ", dst);
        fputc('\n', f);
    }
    return KILN_OK;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* Folds one op into the planning pass's hash: its id, its parameters (all
 * 32-bit fields, so no padding bytes) and every operand's place, type and
 * shape. Equal hashes on two runs mean a recording of one replays the other. */
static void hash_op(kiln_graph *g, int op, const void *params, size_t params_bytes, const kiln_tensor *const *src,
                    int nsrc, const kiln_tensor *dst)
{
    uint64_t h = fnv(g->op_hash, &op, sizeof op);
    h = fnv(h, params, params_bytes);
    for (int i = 0; i <= nsrc; i++) {
        const kiln_tensor *t = i < nsrc ? src[i] : dst;
        if (!t) {
            h = fnv(h, "-", 1);
            continue;
        }
        h = fnv(h, &t->buffer, sizeof t->buffer);
        h = fnv(h, &t->offset, sizeof t->offset);
        h = fnv(h, &t->dtype, sizeof t->dtype);
        h = fnv(h, &t->ndim, sizeof t->ndim);
        h = fnv(h, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
    }
    g->op_hash = h;
}

/* Out of line because the dispatch macro's parameter is called `name`. */
static const char *backend_label(const kiln_graph *g) { return g->be->name; }

#define KILN_OP(name, nsrc, doc)                                                          \
    kiln_status kiln_run_##name(kiln_graph *g, const kiln_##name##_params *p,              \
                                const kiln_tensor *const *src, kiln_tensor *dst)           \
    {                                                                                      \
        TRY(kiln_check_##name(p, src, dst));                                               \
        if (g->pass == PASS_PLAN) {                                                        \
            hash_op(g, KILN_OP_##name, p, sizeof *p, src, nsrc, dst);                      \
            return KILN_OK;                                                                \
        }                                                                                  \
        if (g->pass != PASS_RUN && g->pass != PASS_OPS) return KILN_OK;                    \
        if (!g->be->ops->name)                                                             \
            return kiln_fail(KILN_ERR_UNSUPPORTED, "backend %s has no op " #name, backend_label(g)); \
        double t0 = 0.0;                                                                   \
        if (g->stats) TRY(op_time_begin(g, &t0));                                          \
        TRY(g->be->ops->name(g->be, p, src, dst));                                         \
        return g->stats ? op_time_end(g, KILN_OP_##name, t0, src, nsrc, dst) : KILN_OK;      \
    }
#include "ops.def"
#undef KILN_OP
