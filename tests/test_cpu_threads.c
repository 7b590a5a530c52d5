/* The CPU backend's thread pool: every item of a parallel-for runs exactly
 * once, on a thread index inside the pool, for pools smaller and larger than
 * the machine and grains that do not divide the item count. */
#include "kiln_test.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "cpu_threads.h"

typedef struct count_job {
    atomic_int *hits; /* (n) */
    atomic_int bad_worker;
    int threads;
} count_job;

static void count_items(void *ctx, int64_t begin, int64_t end, int worker)
{
    count_job *j = ctx;
    if (worker < 0 || worker >= j->threads) atomic_fetch_add(&j->bad_worker, 1);
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&j->hits[i], 1);
}

static void each_item_runs_once(void **state)
{
    (void)state;
    const int64_t n = 100003;
    const int threads[] = {1, 2, 3, 8};
    const int64_t grains[] = {1, 7, 4096, 200000};
    atomic_int *hits = calloc((size_t)n, sizeof *hits);
    assert_non_null(hits);
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        cpu_pool *pool = NULL;
        assert_kiln_ok(cpu_pool_create(threads[t], &pool));
        assert_int_equal(cpu_pool_threads(pool), threads[t]);
        for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++)
            for (int round = 0; round < 3; round++) { /* the pool is reused job after job */
                for (int64_t i = 0; i < n; i++) atomic_store(&hits[i], 0);
                count_job j = {.hits = hits, .threads = threads[t]};
                atomic_init(&j.bad_worker, 0);
                cpu_parallel_for(pool, n, grains[g], count_items, &j);
                for (int64_t i = 0; i < n; i++)
                    if (atomic_load(&hits[i]) != 1)
                        fail_msg("%d threads, grain %lld: item %lld ran %d times", threads[t], (long long)grains[g],
                                 (long long)i, atomic_load(&hits[i]));
                assert_int_equal(atomic_load(&j.bad_worker), 0);
            }
        cpu_parallel_for(pool, 0, 1, count_items, NULL); /* nothing to do: fn is never called */
        cpu_pool_free(pool);
    }
    free(hits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_item_runs_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
