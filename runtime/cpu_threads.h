/* A small persistent thread pool for the CPU backend's ops.
 *
 * The calling thread works too: a pool of `threads` has threads - 1 workers.
 * cpu_parallel_for splits [0, n) into chunks of `grain` items that the
 * threads take in turn (so uneven chunks, such as causal attention rows,
 * balance themselves) and returns when all are done. Workers still asleep
 * when the caller has taken the last chunk are not waited for. Tasks must not
 * call cpu_parallel_for themselves, and one pool serves one caller at a time. */
#ifndef KILN_CPU_THREADS_H
#define KILN_CPU_THREADS_H

#include <stdint.h>

#include "kiln.h"

typedef struct cpu_pool cpu_pool;

/* Runs items [begin, end) on thread `worker` (0 = the caller, up to
 * threads - 1), which indexes per-thread scratch. */
typedef void (*cpu_task_fn)(void *ctx, int64_t begin, int64_t end, int worker);

kiln_status cpu_pool_create(int threads, cpu_pool **out);
void cpu_pool_free(cpu_pool *pool);
int cpu_pool_threads(const cpu_pool *pool);

void cpu_parallel_for(cpu_pool *pool, int64_t n, int64_t grain, cpu_task_fn fn, void *ctx);

#endif
