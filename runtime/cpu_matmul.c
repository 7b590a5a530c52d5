/* matmul on the CPU: OpenBLAS sgemm, threaded by our pool over column ranges
 * of the output (rows of the weight). Weights stored as f16/bf16/fp8 or
 * quantized (GGUF's blocks, whole rows of them) are widened a tile of rows at
 * a time into the thread's scratch, so no more than one tile per thread is
 * ever held in f32. */
#include <cblas.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_simd.h"
#include "status.h"

void cpu_widen(float *dst, kiln_weight_ptr w, size_t first, size_t n)
{
    kiln_convert_to_f32(dst, (const char *)w.data + kiln_dtype_bytes(w.dtype, first), w.dtype, n);
}

/* Weight rows widened per tile: up to 4 MiB of f32 per thread. Narrower
 * tiles make sgemm re-pack x once per tile, which costs more than the tile
 * saves once M reaches the thousands of UNet tokens. */
#define TILE_FLOATS (1 << 20)
#define COLUMN_ALIGN 16

typedef struct matmul_job {
    const kiln_matmul_params *p;
    const float *x;       /* (M,K) */
    kiln_weight_ptr w;    /* (N,K) */
    kiln_weight_ptr bias; /* (N) or none */
    float *y;             /* (M,N) */
    cpu_state *s;
    int64_t part_cols, col_parts; /* output columns per part, and parts across them */
    int64_t part_rows;            /* output rows per part */
    int64_t tile_rows;            /* weight rows widened at a time */
} matmul_job;

static void matmul_part(void *ctx, int64_t begin, int64_t end, int worker)
{
    const matmul_job *j = ctx;
    const kiln_matmul_params *p = j->p;
    float *bias = j->s->local[worker];      /* (part_cols) */
    float *tile = bias + j->part_cols;      /* (tile_rows,K) */
    for (int64_t part = begin; part < end; part++) {
        int64_t n0 = part % j->col_parts * j->part_cols, n1 = n0 + j->part_cols < p->N ? n0 + j->part_cols : p->N;
        int64_t m0 = part / j->col_parts * j->part_rows, m1 = m0 + j->part_rows < p->M ? m0 + j->part_rows : p->M;
        if (p->has_bias) cpu_widen(bias, j->bias, (size_t)n0, (size_t)(n1 - n0));
        int64_t step = j->w.dtype == KILN_F32 ? n1 - n0 : j->tile_rows;
        for (int64_t t0 = n0; t0 < n1; t0 += step) {
            int rows = (int)(t0 + step < n1 ? step : n1 - t0);
            const float *wt = (const float *)j->w.data + (size_t)t0 * p->K;
            if (j->w.dtype != KILN_F32) {
                cpu_widen(tile, j->w, (size_t)t0 * p->K, (size_t)rows * p->K);
                wt = tile;
            }
            float beta = 0.0f;
            if (p->has_bias) { /* y starts as the bias, sgemm adds to it */
                for (int64_t m = m0; m < m1; m++)
                    memcpy(j->y + (size_t)m * p->N + t0, bias + (t0 - n0), (size_t)rows * sizeof *bias);
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 - m0), rows, p->K, 1.0f,
                        j->x + (size_t)m0 * p->K, p->K, wt, p->K, beta, j->y + (size_t)m0 * p->N + t0, p->N);
        }
    }
}

// x (M,K) @ w (N,K)^T + bias (N) -> y (M,N)
kiln_status cpu_matmul(cpu_state *s, const kiln_matmul_params *p, const float *x, kiln_weight_ptr w,
                       kiln_weight_ptr bias, float *y)
{
    matmul_job j = {.p = p, .x = x, .w = w, .bias = bias, .y = y, .s = s};
    j.tile_rows = TILE_FLOATS / p->K;
    if (j.tile_rows < COLUMN_ALIGN) j.tile_rows = COLUMN_ALIGN;
    if (j.tile_rows > p->N) j.tile_rows = p->N;
    /* one part per thread, unless the product is too small to share: split
     * the columns, or the rows when the output is too narrow for that (a
     * projection to a few channels over thousands of tokens) */
    double flops = 2.0 * p->M * p->N * p->K;
    int64_t parts = flops < 2e6 ? 1 : s->threads;
    j.part_cols = p->N;
    j.part_rows = p->M;
    if (p->N >= 2 * COLUMN_ALIGN * parts) {
        j.part_cols = (p->N + parts - 1) / parts;
        j.part_cols = (j.part_cols + COLUMN_ALIGN - 1) / COLUMN_ALIGN * COLUMN_ALIGN;
    } else {
        j.part_rows = (p->M + parts - 1) / parts;
    }
    j.col_parts = (p->N + j.part_cols - 1) / j.part_cols;
    parts = j.col_parts * ((p->M + j.part_rows - 1) / j.part_rows);
    size_t tile = w.dtype == KILN_F32 ? 0 : (size_t)j.tile_rows * p->K;
    TRY(cpu_scratch_reserve(s, 0, (size_t)j.part_cols + tile));
    cpu_parallel_for(s->pool, parts, 1, matmul_part, &j);
    return KILN_OK;
}
