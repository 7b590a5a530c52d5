#include "convert.h"

#include <stdint.h>
#include <unistd.h>

/* Values a task converts at a time: whole blocks of every quantized type. */
#define CHUNK 4096

typedef struct convert_job {
    const uint8_t *src;
    kiln_dtype from;
    uint8_t *dst;
    kiln_dtype to;
    size_t n;
} convert_job;

/* Chunks [begin, end), through an f32 scratch. */
static void convert_task(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const convert_job *j = ctx;
    float f[CHUNK];
    for (size_t at = (size_t)begin * CHUNK; at < (size_t)end * CHUNK && at < j->n; at += CHUNK) {
        size_t m = j->n - at < CHUNK ? j->n - at : CHUNK;
        kiln_convert_to_f32(f, j->src + kiln_dtype_bytes(j->from, at), j->from, m);
        kiln_convert_from_f32(j->dst + kiln_dtype_bytes(j->to, at), f, j->to, m);
    }
}

kiln_status kiln_convert_pool(cpu_pool **out)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cpu_pool_create(cores < 1 ? 1 : cores > 32 ? 32 : (int)cores, out);
}

void kiln_convert_parallel(cpu_pool *pool, const void *src, kiln_dtype from, void *dst, kiln_dtype to, size_t n)
{
    convert_job j = {.src = src, .from = from, .dst = dst, .to = to, .n = n};
    const int64_t chunks = (int64_t)((n + CHUNK - 1) / CHUNK);
    if (pool) cpu_parallel_for(pool, chunks, 4, convert_task, &j);
    else convert_task(&j, 0, chunks, 0);
}
