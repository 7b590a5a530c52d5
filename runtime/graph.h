/* Running a model forward on a backend with a planned activation arena.
 *
 * A forward function is written once as a flat list of op calls. kiln_graph_run
 * calls it twice: first in planning mode, where ops only check their shapes
 * and every activation allocation/release is recorded, then for real. Between
 * the passes the arena planner gives each activation an offset so that
 * activations whose lifetimes do not overlap share memory; the arena's size is
 * the peak activation memory, known before any op runs.
 *
 * A graph set to replay (kiln_graph_set_replay) on a backend that records
 * (CUDA) goes further when a run issues exactly the ops of the run before it,
 * operands included, as every step of a sampler does: the ops are recorded
 * once and replayed from then on. Such a run calls fn three times after
 * planning: one pass that only uploads the inputs, the replay (recording
 * first if needed), and one pass that only copies outputs back. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include <stdbool.h>
#include <stdio.h>

#include "backend.h"

typedef struct kiln_graph kiln_graph;

typedef struct kiln_op_stats {
    double seconds[KILN_OP_COUNT]; /* time per op, when profiling */
    long calls[KILN_OP_COUNT];
    bool device_time; /* the seconds are the device's own timing (backend time_end), not the host's */
    /* Where set, a line for every op as it is timed, tab-separated: op name,
     * milliseconds, operands and result as dtype:shape ("f16:320x320x3x3",
     * "-" for an absent operand), so that two backends' runs of one graph can
     * be compared op by op (bench --trace, bench/compare_traces.py). */
    FILE *trace;
} kiln_op_stats;

kiln_status kiln_graph_create(kiln_backend *be, kiln_graph **out);
void kiln_graph_free(kiln_graph *g);

/* Runs fn(g, ctx) in planning mode, sizes the arena, then runs it for real. */
typedef kiln_status (*kiln_graph_fn)(kiln_graph *g, void *ctx);
kiln_status kiln_graph_run(kiln_graph *g, kiln_graph_fn fn, void *ctx);
/* A graph for one run on be: created, run, freed. */
kiln_status kiln_graph_run_once(kiln_backend *be, kiln_graph_fn fn, void *ctx);

/* Record and replay repeated runs where the backend can (off by default). */
void kiln_graph_set_replay(kiln_graph *g, bool on);
/* How many runs so far were replays of a recording. */
long kiln_graph_replays(const kiln_graph *g);

kiln_backend *kiln_graph_backend(kiln_graph *g);
/* True in passes that copy no outputs back (planning, and the input and op
 * passes of a replayed run): host work on outputs is skipped then. */
bool kiln_graph_no_outputs(const kiln_graph *g);
/* Bytes of the activation arena planned by the last run. */
size_t kiln_graph_arena_bytes(const kiln_graph *g);

/* Synchronise after every op and add its time to stats (NULL turns it off). */
void kiln_graph_profile(kiln_graph *g, kiln_op_stats *stats);

/* A new f32 activation of the given shape, valid until released or the end of
 * the run. */
kiln_status kiln_graph_tensor(kiln_graph *g, kiln_tensor **out, int ndim, const int64_t *shape);
/* Ends an activation's lifetime; its memory may be reused by later ones. */
void kiln_graph_release(kiln_graph *g, kiln_tensor *t);
/* An activation filled from host memory (skipped while planning). */
kiln_status kiln_graph_input(kiln_graph *g, kiln_tensor **out, kiln_dtype dtype, int ndim,
                             const int64_t *shape, const void *host);
/* Copies an activation to host memory (skipped while planning). A replayed
 * graph copies after its last op: the activation must not be released. */
kiln_status kiln_graph_output(kiln_graph *g, const kiln_tensor *t, void *host, size_t bytes);

/* Checked op dispatch: kiln_run_conv2d(g, &params, (const kiln_tensor *[]){x, w, b}, y).
 * src holds the op's nsrc operands (ops.def), NULL for an absent optional one. */
#define KILN_OP(name, nsrc, doc)                                                      \
    kiln_status kiln_run_##name(kiln_graph *g, const kiln_##name##_params *p,          \
                                const kiln_tensor *const *src, kiln_tensor *dst);
#include "ops.def"
#undef KILN_OP

#endif
