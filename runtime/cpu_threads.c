/* The pool's protocol. A job is posted under the lock with a new generation
 * number, and chunks are claimed by compare-and-swap on one 64-bit word that
 * holds (generation, next item). A worker that wakes late, after the job's
 * items are all claimed or after a newer job was posted, fails its claim and
 * goes back to sleep without touching the job. So the caller only waits for
 * the chunks that were actually claimed to finish, never for a worker the OS
 * has not scheduled yet: on a loaded machine (CI, other processes) a small op
 * does not stall behind a sleeping thread. */
#include "cpu_threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "status.h"

#define INDEX_BITS 40
#define INDEX_MASK ((UINT64_C(1) << INDEX_BITS) - 1)

typedef struct pool_job {
    cpu_task_fn fn;
    void *ctx;
    int64_t n, grain;
    uint64_t tag; /* generation << INDEX_BITS */
} pool_job;

struct cpu_pool {
    int threads;
    pthread_t *workers; /* threads - 1 */
    int started;        /* workers actually running */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a new job or quit */
    pthread_cond_t done; /* the job's last item finished */
    uint64_t generation;
    bool quit;
    pool_job job;               /* written under the lock */
    atomic_uint_fast64_t claim; /* tag | next unclaimed item */
    atomic_int_fast64_t finished; /* items of the current job done */
};

typedef struct worker_arg { cpu_pool *pool; int index; } worker_arg;

/* Claims and runs chunks of `job` until none are left or a newer job replaced it. */
static void run_chunks(cpu_pool *pool, const pool_job *job, int worker)
{
    uint64_t seen = atomic_load(&pool->claim);
    for (;;) {
        if ((seen & ~INDEX_MASK) != job->tag) return;
        int64_t begin = (int64_t)(seen & INDEX_MASK);
        if (begin >= job->n) return;
        int64_t end = begin + job->grain < job->n ? begin + job->grain : job->n;
        if (!atomic_compare_exchange_weak(&pool->claim, &seen, job->tag | (uint64_t)end)) continue;
        job->fn(job->ctx, begin, end, worker);
        if (atomic_fetch_add(&pool->finished, end - begin) + (end - begin) == job->n) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
        seen = atomic_load(&pool->claim);
    }
}

static void *worker_main(void *arg)
{
    cpu_pool *pool = ((worker_arg *)arg)->pool;
    int index = ((worker_arg *)arg)->index;
    free(arg);
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->generation == seen && !pool->quit) pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->quit) break;
        seen = pool->generation;
        pool_job job = pool->job;
        pthread_mutex_unlock(&pool->lock);
        run_chunks(pool, &job, index);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

kiln_status cpu_pool_create(int threads, cpu_pool **out)
{
    cpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: out of host memory for the thread pool");
    pool->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    atomic_init(&pool->claim, 0);
    atomic_init(&pool->finished, 0);
    if (pool->threads > 1) {
        pool->workers = calloc((size_t)pool->threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            cpu_pool_free(pool);
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: out of host memory for the thread pool");
        }
    }
    for (int i = 1; i < pool->threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (arg) *arg = (worker_arg){pool, i};
        if (!arg || pthread_create(&pool->workers[i - 1], NULL, worker_main, arg) != 0) {
            free(arg);
            int asked = pool->threads;
            cpu_pool_free(pool);
            return kiln_fail(KILN_ERR_BACKEND, "cpu: cannot start worker thread %d of %d", i, asked);
        }
        pool->started++;
    }
    *out = pool;
    return KILN_OK;
}

void cpu_pool_free(cpu_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    pool->quit = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->started; i++) pthread_join(pool->workers[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->lock);
    free(pool->workers);
    free(pool);
}

int cpu_pool_threads(const cpu_pool *pool) { return pool->threads; }

void cpu_parallel_for(cpu_pool *pool, int64_t n, int64_t grain, cpu_task_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (pool->threads == 1 || n <= grain) { /* waking workers costs more than it saves */
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->generation++;
    pool->job = (pool_job){fn, ctx, n, grain, (pool->generation << INDEX_BITS) & ~INDEX_MASK};
    pool_job job = pool->job;
    atomic_store(&pool->finished, 0);
    atomic_store(&pool->claim, job.tag);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    run_chunks(pool, &job, 0);

    pthread_mutex_lock(&pool->lock);
    while (atomic_load(&pool->finished) < n) pthread_cond_wait(&pool->done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}
