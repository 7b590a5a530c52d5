/* conv2d on the CPU as GEMM: for each image, y (O, OH*OW) = w (O, C*KH*KW) @
 * columns (C*KH*KW, OH*OW). The columns (im2col) are built one tile of output
 * pixels at a time in the thread's scratch, so memory stays bounded for the
 * VAE's 512x512 planes; a 1x1 stride-1 unpadded conv reads x as the columns
 * directly. Threads take (image, pixel tile, filter range) triples. Weights
 * stored as f16/bf16/fp8 are widened once per op into the shared scratch. */
#include <cblas.h>
#include <string.h>

#include "cpu_backend.h"
#include "status.h"

/* Column tile: up to 4 MiB of f32 per thread. sgemm re-packs the whole
 * weight for every tile, so tiles narrower than ~100 pixels leave the 1280-
 * channel convolutions bound by that copy. */
#define COLUMN_FLOATS (1 << 20)
#define WIDEN_CHUNK (1 << 16)

typedef struct conv_job {
    const kiln_conv2d_params *p;
    const float *x;    /* (N,C,H,W) */
    const float *w;    /* (O,C*KH*KW), f32 */
    const float *bias; /* (O) */
    float *y;          /* (N,O,OH*OW) */
    cpu_state *s;
    bool direct;       /* 1x1, stride 1, no padding: x[n] is the column matrix */
    int64_t pixel_tile, pixel_tiles, filter_tile, filter_tiles;
} conv_job;

/* cols (C*KH*KW, count): column p - p0 holds the input patch of output pixel p */
static void im2col(const kiln_conv2d_params *p, const float *x, int64_t p0, int64_t count, float *cols)
{
    for (int c = 0; c < p->C; c++)
        for (int ky = 0; ky < p->KH; ky++)
            for (int kx = 0; kx < p->KW; kx++) {
                const float *plane = x + (size_t)c * p->H * p->W; /* (H,W) */
                float *row = cols + (((size_t)c * p->KH + ky) * p->KW + kx) * count;
                int oy = (int)(p0 / p->OW), ox = (int)(p0 % p->OW);
                for (int64_t i = 0; i < count;) {
                    /* one run along output row oy */
                    int run = p->OW - ox < count - i ? p->OW - ox : (int)(count - i);
                    int iy = oy * p->stride - p->pad + ky;
                    if (iy < 0 || iy >= p->H) {
                        memset(row + i, 0, (size_t)run * sizeof *row);
                    } else {
                        const float *in = plane + (size_t)iy * p->W;
                        for (int r = 0; r < run; r++) {
                            int ix = (ox + r) * p->stride - p->pad + kx;
                            row[i + r] = ix >= 0 && ix < p->W ? in[ix] : 0.0f;
                        }
                    }
                    i += run;
                    ox = 0;
                    oy++;
                }
            }
}

static void conv_tile(void *ctx, int64_t begin, int64_t end, int worker)
{
    const conv_job *j = ctx;
    const kiln_conv2d_params *p = j->p;
    int K = p->C * p->KH * p->KW;
    int64_t P = (int64_t)p->OH * p->OW;
    for (int64_t t = begin; t < end; t++) {
        int64_t ft = t % j->filter_tiles, pt = (t / j->filter_tiles) % j->pixel_tiles;
        int64_t n = t / j->filter_tiles / j->pixel_tiles;
        int64_t p0 = pt * j->pixel_tile, count = p0 + j->pixel_tile < P ? j->pixel_tile : P - p0;
        int64_t o0 = ft * j->filter_tile, filters = o0 + j->filter_tile < p->O ? j->filter_tile : p->O - o0;
        const float *xn = j->x + (size_t)n * p->C * p->H * p->W;
        const float *cols = xn + p0; /* direct: (C, P) read with stride P */
        int ldc = (int)P;
        if (!j->direct) {
            float *tile = j->s->local[worker]; /* (K, count) */
            im2col(p, xn, p0, count, tile);
            cols = tile;
            ldc = (int)count;
        }
        float *yt = j->y + ((size_t)n * p->O + o0) * P + p0;
        for (int64_t o = 0; o < filters; o++)
            for (int64_t i = 0; i < count; i++) yt[o * P + i] = j->bias[o0 + o];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)filters, (int)count, K, 1.0f,
                    j->w + (size_t)o0 * K, K, cols, ldc, 1.0f, yt, (int)P);
    }
}

typedef struct widen_job { float *dst; kiln_weight_ptr w; size_t n; } widen_job;

static void widen_chunk(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const widen_job *j = ctx;
    size_t first = (size_t)begin * WIDEN_CHUNK, last = (size_t)end * WIDEN_CHUNK;
    if (last > j->n) last = j->n;
    cpu_widen(j->dst + first, j->w, first, last - first);
}

// x (N,C,H,W) * w (O,C,KH,KW) + bias (O) -> y (N,O,OH,OW), zero padding
kiln_status cpu_conv2d(cpu_state *s, const kiln_conv2d_params *p, const float *x, kiln_weight_ptr w,
                       kiln_weight_ptr bias, float *y)
{
    size_t K = (size_t)p->C * p->KH * p->KW, P = (size_t)p->OH * p->OW;
    size_t wide = w.dtype == KILN_F32 ? 0 : (size_t)p->O * K;
    conv_job j = {.p = p, .x = x, .y = y, .s = s};
    j.direct = p->KH == 1 && p->KW == 1 && p->stride == 1 && p->pad == 0;
    j.pixel_tile = (int64_t)(COLUMN_FLOATS / K);
    if (j.pixel_tile < 16) j.pixel_tile = 16;
    if (j.pixel_tile > (int64_t)P) j.pixel_tile = (int64_t)P;
    j.pixel_tiles = ((int64_t)P + j.pixel_tile - 1) / j.pixel_tile;
    /* small planes (the UNet's 8x8 level): split the filters too, so every
     * thread has work; each filter range rebuilds its columns, cheap next to
     * its GEMM while ranges stay >= 32 filters */
    j.filter_tiles = 1;
    while (p->N * j.pixel_tiles * j.filter_tiles < 4 * s->threads && p->O / (2 * j.filter_tiles) >= 32)
        j.filter_tiles *= 2;
    j.filter_tile = (p->O + j.filter_tiles - 1) / j.filter_tiles;
    j.filter_tiles = (p->O + j.filter_tile - 1) / j.filter_tile;

    TRY(cpu_scratch_reserve(s, wide + (size_t)p->O, j.direct ? 0 : K * (size_t)j.pixel_tile));
    float *wide_bias = s->shared + wide;
    cpu_widen(wide_bias, bias, 0, (size_t)p->O);
    j.bias = wide_bias;
    j.w = w.data;
    if (wide) {
        widen_job wj = {s->shared, w, wide};
        cpu_parallel_for(s->pool, (int64_t)((wide + WIDEN_CHUNK - 1) / WIDEN_CHUNK), 1, widen_chunk, &wj);
        j.w = s->shared;
    }
    cpu_parallel_for(s->pool, p->N * j.pixel_tiles * j.filter_tiles, 1, conv_tile, &j);
    return KILN_OK;
}
