/* Elementwise and data-movement ops on the CPU: each is a span function over
 * a range of elements (or rows), and the pool runs spans of ~32K elements in
 * parallel. Plain loops here vectorise under -O3; the exp-based activations
 * use the AVX2 exp where the build has it. */
#include <math.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_simd.h"
#include "status.h"

#define SPAN_ELEMENTS 32768
#define TRANSPOSE_TILE 32

typedef struct span_job span_job;
struct span_job {
    void (*span)(const span_job *j, size_t begin, size_t end); /* units [begin, end) */
    const void *p;
    const float *a, *b;
    float *y;
};

static void run_spans(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const span_job *j = ctx;
    j->span(j, (size_t)begin, (size_t)end);
}

/* Runs j over `units` units of `unit_size` elements each. */
static void parallel_spans(cpu_state *s, const span_job *j, size_t units, size_t unit_size)
{
    size_t grain = SPAN_ELEMENTS / (unit_size ? unit_size : 1);
    cpu_parallel_for(s->pool, (int64_t)units, (int64_t)(grain ? grain : 1), run_spans, (void *)j);
}

static inline float gelu(float v) { return 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2)); }

static void silu_span(const span_job *j, size_t i0, size_t i1)
{
    cpu_sigmoid_gate_span(j->a + i0, j->y + i0, i1 - i0, 1.0f, 0.0f);
}

/* 1 / (1 + exp(-x)), as cpu_sigmoid_gate_span computes x / (1 + exp(-x)).
 * Below about -88.7, where exp(-x) overflows, the scalar expf's infinity
 * gives 0 and cpu_exp8's clamp ~4e-39 (the true value being smaller still):
 * neither a NaN. */
static void sigmoid_span(const span_job *j, size_t i0, size_t i1)
{
    size_t i = i0;
#ifdef KILN_CPU_AVX2
    __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= i1; i += 8) {
        __m256 e = cpu_exp8(_mm256_sub_ps(zero, _mm256_loadu_ps(j->a + i)));
        _mm256_storeu_ps(j->y + i, _mm256_div_ps(one, _mm256_add_ps(one, e)));
    }
#endif
    for (; i < i1; i++) j->y[i] = 1.0f / (1.0f + expf(-j->a[i]));
}

static void activation_span(const span_job *j, size_t i0, size_t i1)
{
    kiln_activation_kind kind = (kiln_activation_kind)((const kiln_activation_params *)j->p)->kind;
    for (size_t i = i0; i < i1; i++) j->y[i] = cpu_ref_activate(kind, j->a[i]);
}

static void quick_gelu_span(const span_job *j, size_t i0, size_t i1)
{
    cpu_sigmoid_gate_span(j->a + i0, j->y + i0, i1 - i0, 1.702f, 0.0f);
}

/* 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) */
static void gelu_tanh_span(const span_job *j, size_t i0, size_t i1)
{
    const float k = 1.5957691216057308f; /* 2 sqrt(2/pi) */
    cpu_sigmoid_gate_span(j->a + i0, j->y + i0, i1 - i0, k, k * 0.044715f);
}

static void gelu_span(const span_job *j, size_t i0, size_t i1)
{
    for (size_t i = i0; i < i1; i++) j->y[i] = gelu(j->a[i]);
}

static void add_span(const span_job *j, size_t i0, size_t i1)
{
    for (size_t i = i0; i < i1; i++) j->y[i] = j->a[i] + j->b[i];
}

static void mul_span(const span_job *j, size_t i0, size_t i1)
{
    for (size_t i = i0; i < i1; i++) j->y[i] = j->a[i] * j->b[i];
}

static void scale_span(const span_job *j, size_t i0, size_t i1)
{
    float s = ((const kiln_scale_params *)j->p)->s;
    for (size_t i = i0; i < i1; i++) j->y[i] = j->a[i] * s;
}

static void leaky_relu_span(const span_job *j, size_t i0, size_t i1)
{
    float slope = ((const kiln_leaky_relu_params *)j->p)->slope;
    for (size_t i = i0; i < i1; i++) j->y[i] = j->a[i] >= 0.0f ? j->a[i] : j->a[i] * slope;
}

void cpu_silu(cpu_state *s, const kiln_silu_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){silu_span, p, x, NULL, y}, (size_t)p->n, 1);
}

void cpu_sigmoid(cpu_state *s, const kiln_sigmoid_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){sigmoid_span, p, x, NULL, y}, (size_t)p->n, 1);
}

void cpu_activation(cpu_state *s, const kiln_activation_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){activation_span, p, x, NULL, y}, (size_t)p->n, 1);
}

void cpu_quick_gelu(cpu_state *s, const kiln_quick_gelu_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){quick_gelu_span, p, x, NULL, y}, (size_t)p->n, 1);
}

void cpu_gelu_tanh(cpu_state *s, const kiln_gelu_tanh_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){gelu_tanh_span, p, x, NULL, y}, (size_t)p->n, 1);
}

void cpu_gelu(cpu_state *s, const kiln_gelu_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){gelu_span, p, x, NULL, y}, (size_t)p->n, 1);
}

void cpu_add(cpu_state *s, const kiln_add_params *p, const float *a, const float *b, float *y)
{
    parallel_spans(s, &(span_job){add_span, p, a, b, y}, (size_t)p->n, 1);
}

void cpu_mul(cpu_state *s, const kiln_mul_params *p, const float *a, const float *b, float *y)
{
    parallel_spans(s, &(span_job){mul_span, p, a, b, y}, (size_t)p->n, 1);
}

void cpu_scale(cpu_state *s, const kiln_scale_params *p, const float *a, float *y)
{
    parallel_spans(s, &(span_job){scale_span, p, a, NULL, y}, (size_t)p->n, 1);
}

void cpu_leaky_relu(cpu_state *s, const kiln_leaky_relu_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){leaky_relu_span, p, x, NULL, y}, (size_t)p->n, 1);
}

typedef struct gated_add_job {
    const kiln_gated_add_params *p;
    const float *gates; /* (B,C): the modulation's gate rows plus the table's */
} gated_add_job;

// token rows of x, y (B*T, C): out = x + gate[b] * y
static void gated_add_rows(const span_job *j, size_t r0, size_t r1)
{
    const gated_add_job *g = j->p;
    size_t C = (size_t)g->p->C;
    for (size_t r = r0; r < r1; r++) {
        const float *gate = g->gates + r / (size_t)g->p->T * C;
        for (size_t c = 0; c < C; c++) j->y[r * C + c] = j->a[r * C + c] + gate[c] * j->b[r * C + c];
    }
}

kiln_status cpu_gated_add(cpu_state *s, const kiln_gated_add_params *p, const float *x, const float *y,
                          const float *mod, kiln_weight_ptr table, float *out)
{
    size_t C = (size_t)p->C, B = (size_t)p->B;
    TRY(cpu_scratch_reserve(s, (B + 1) * C, 0));
    float *gates = s->shared, *row = s->shared + B * C; /* (B,C), then the table's gate row */
    if (table.data) cpu_widen(row, table, (size_t)p->gate * C, C);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++)
            gates[b * C + c] = mod[(b * (size_t)p->K + (size_t)p->gate) * C + c] + (table.data ? row[c] : 0.0f);
    gated_add_job g = {p, gates};
    parallel_spans(s, &(span_job){gated_add_rows, &g, x, y, out}, B * (size_t)p->T, C);
    return KILN_OK;
}

// token rows of x (B*T, H*D): every head of token r turned pair by pair by
// row r % T of freqs (T,D/2,2); each pair is read before it is written, so y
// may be x
static void rope_rows(const span_job *j, size_t r0, size_t r1)
{
    const kiln_rope_params *p = j->p;
    size_t T = (size_t)p->T, H = (size_t)p->H, D = (size_t)p->D, row = H * D;
    for (size_t r = r0; r < r1; r++) {
        const float *f = j->b + r % T * D; /* D/2 pairs of (cos, sin) */
        const float *x = j->a + r * row;
        float *y = j->y + r * row;
        for (size_t h = 0; h < H; h++, x += D, y += D)
            for (size_t i = 0; i < D; i += 2) {
                float c = f[i], s = f[i + 1], re = x[i], im = x[i + 1];
                y[i] = re * c - im * s;
                y[i + 1] = im * c + re * s;
            }
    }
}

void cpu_rope(cpu_state *s, const kiln_rope_params *p, const float *x, const float *freqs, float *y)
{
    parallel_spans(s, &(span_job){rope_rows, p, x, freqs, y}, (size_t)p->B * (size_t)p->T,
                   (size_t)p->H * (size_t)p->D);
}

// rows of x (M,2N): the value half first, the gate half second
static void geglu_rows(const span_job *j, size_t m0, size_t m1)
{
    const kiln_geglu_params *p = j->p;
    for (size_t m = m0; m < m1; m++) {
        const float *r = j->a + m * 2 * p->N;
        float *out = j->y + m * p->N;
        for (int n = 0; n < p->N; n++) out[n] = r[n] * gelu(r[p->N + n]);
    }
}

void cpu_geglu(cpu_state *s, const kiln_geglu_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){geglu_rows, p, x, NULL, y}, (size_t)p->M, (size_t)p->N);
}

// rows of x (N*C, HW) plus b (N*C)
static void channel_bias_rows(const span_job *j, size_t r0, size_t r1)
{
    size_t HW = (size_t)((const kiln_add_channel_bias_params *)j->p)->HW;
    for (size_t r = r0; r < r1; r++)
        for (size_t i = 0; i < HW; i++) j->y[r * HW + i] = j->a[r * HW + i] + j->b[r];
}

void cpu_add_channel_bias(cpu_state *s, const kiln_add_channel_bias_params *p, const float *x, const float *b,
                          float *y)
{
    parallel_spans(s, &(span_job){channel_bias_rows, p, x, b, y}, (size_t)p->N * p->C, (size_t)p->HW);
}

// output channel rows of y (N, Ca+Cb, HW)
static void concat_rows(const span_job *j, size_t r0, size_t r1)
{
    const kiln_concat_channels_params *p = j->p;
    size_t C = (size_t)p->Ca + p->Cb, HW = (size_t)p->HW;
    for (size_t r = r0; r < r1; r++) {
        size_t n = r / C, c = r % C;
        const float *from = c < (size_t)p->Ca ? j->a + (n * p->Ca + c) * HW : j->b + (n * p->Cb + c - p->Ca) * HW;
        memcpy(j->y + r * HW, from, HW * sizeof *from);
    }
}

void cpu_concat_channels(cpu_state *s, const kiln_concat_channels_params *p, const float *a, const float *b,
                         float *y)
{
    parallel_spans(s, &(span_job){concat_rows, p, a, b, y}, (size_t)p->N * (p->Ca + p->Cb), (size_t)p->HW);
}

// output rows of y (N*C*OH, OW), the pairs from one input row written once
// and copied
static void upsample_rows(const span_job *j, size_t r0, size_t r1)
{
    const kiln_upsample_nearest2x_params *p = j->p;
    size_t W = (size_t)p->W, OH = (size_t)p->OH, OW = (size_t)p->OW;
    for (size_t r = r0; r < r1; r++) {
        size_t nc = r / OH, oy = r % OH;
        float *out = j->y + r * OW;
        if (oy % 2 && r > r0) {
            memcpy(out, out - OW, OW * sizeof *out);
            continue;
        }
        const float *in = j->a + (nc * (size_t)p->H + oy / 2) * W;
        for (size_t x = 0; x < OW; x++) out[x] = in[x / 2];
    }
}

void cpu_upsample_nearest2x(cpu_state *s, const kiln_upsample_nearest2x_params *p, const float *x, float *y)
{
    parallel_spans(s, &(span_job){upsample_rows, p, x, NULL, y}, (size_t)p->N * p->C * p->OH, (size_t)p->OW);
}

// 32x32 tiles of x (B,R,C) -> y (B,C,R), so both sides are read and written
// a cache line at a time
static void transpose_tiles(const span_job *j, size_t t0, size_t t1)
{
    const kiln_transpose_params *p = j->p;
    size_t rt = ((size_t)p->R + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE;
    size_t ct = ((size_t)p->C + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE;
    for (size_t t = t0; t < t1; t++) {
        size_t b = t / (rt * ct), r0 = (t / ct) % rt * TRANSPOSE_TILE, c0 = t % ct * TRANSPOSE_TILE;
        size_t r1 = r0 + TRANSPOSE_TILE < (size_t)p->R ? r0 + TRANSPOSE_TILE : (size_t)p->R;
        size_t c1 = c0 + TRANSPOSE_TILE < (size_t)p->C ? c0 + TRANSPOSE_TILE : (size_t)p->C;
        const float *x = j->a + b * p->R * p->C;
        float *y = j->y + b * p->R * p->C;
        for (size_t c = c0; c < c1; c++)
            for (size_t r = r0; r < r1; r++) y[c * p->R + r] = x[r * p->C + c];
    }
}

void cpu_transpose(cpu_state *s, const kiln_transpose_params *p, const float *x, float *y)
{
    size_t tiles = (size_t)p->B * (((size_t)p->R + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE) *
                   (((size_t)p->C + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE);
    parallel_spans(s, &(span_job){transpose_tiles, p, x, NULL, y}, tiles, TRANSPOSE_TILE * TRANSPOSE_TILE);
}
