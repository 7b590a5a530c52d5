#include "cpu_threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "status.h"

struct cpu_pool {
    int threads;
    pthread_t *workers; /* threads - 1 */
    int started;        /* workers actually running */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a new job or quit */
    pthread_cond_t done; /* the last worker left the job */
    uint64_t generation; /* bumped per job, so a worker never runs one twice */
    int busy;            /* workers still inside the current job */
    bool quit;

    /* the current job */
    cpu_task_fn fn;
    void *ctx;
    int64_t n, grain;
    atomic_int_fast64_t next; /* start of the next unclaimed chunk */
};

typedef struct worker_arg { cpu_pool *pool; int index; } worker_arg;

static void run_chunks(cpu_pool *pool, int worker)
{
    for (;;) {
        int64_t begin = atomic_fetch_add(&pool->next, pool->grain);
        if (begin >= pool->n) return;
        int64_t end = begin + pool->grain < pool->n ? begin + pool->grain : pool->n;
        pool->fn(pool->ctx, begin, end, worker);
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
        pthread_mutex_unlock(&pool->lock);
        run_chunks(pool, index);
        pthread_mutex_lock(&pool->lock);
        if (--pool->busy == 0) pthread_cond_signal(&pool->done);
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
    atomic_init(&pool->next, 0);
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
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n = n;
    pool->grain = grain;
    atomic_store(&pool->next, 0);
    pool->busy = pool->threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    run_chunks(pool, 0);

    pthread_mutex_lock(&pool->lock);
    while (pool->busy > 0) pthread_cond_wait(&pool->done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}
