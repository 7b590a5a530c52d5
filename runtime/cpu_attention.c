/* Attention on the CPU, flash style: for one (batch, head, block of queries)
 * the keys are visited a block at a time with an online softmax (a running
 * row max m and denominator l; earlier partial outputs are rescaled by
 * exp(m_old - m_new) when the max grows), so the Tq x Tk score matrix never
 * exists, only a query-block x key-block tile. Both products of a tile are
 * sgemm calls that read q, k, v in place (row stride H*D). An additive bias
 * (H,Tq,Tk), T5's relative positions, joins the scores of a tile before its
 * max is taken. Threads take (batch, head, query block) triples. */
#include <cblas.h>
#include <math.h>

#include "cpu_backend.h"
#include "cpu_simd.h"
#include "status.h"

#define QUERY_BLOCK 64
#define KEY_BLOCK 256

typedef struct attention_job {
    const kiln_attention_params *p;
    const float *q, *k, *v; /* (B,Tq,H*D), (B,Tk,H*D), (B,Tk,H*D) */
    const float *bias;      /* (H,Tq,Tk) or NULL */
    float *o;               /* (B,Tq,H*D) */
    cpu_state *s;
    int64_t query_blocks;
} attention_job;

static void attention_block(void *ctx, int64_t begin, int64_t end, int worker)
{
    const attention_job *j = ctx;
    const kiln_attention_params *p = j->p;
    int D = p->D, HD = p->H * p->D;
    float *scores = j->s->local[worker];          /* (QUERY_BLOCK,KEY_BLOCK), then exp'd in place */
    float *acc = scores + QUERY_BLOCK * KEY_BLOCK; /* (QUERY_BLOCK,D) unnormalised output */
    float *m = acc + (size_t)QUERY_BLOCK * D;      /* (QUERY_BLOCK) running max */
    float *l = m + QUERY_BLOCK;                    /* (QUERY_BLOCK) running denominator */
    for (int64_t t = begin; t < end; t++) {
        int64_t qb = t % j->query_blocks, bh = t / j->query_blocks;
        int h = (int)(bh % p->H), b = (int)(bh / p->H);
        int i0 = (int)qb * QUERY_BLOCK, rows = p->Tq - i0 < QUERY_BLOCK ? p->Tq - i0 : QUERY_BLOCK;
        const float *qt = j->q + ((size_t)b * p->Tq + i0) * HD + (size_t)h * D;
        for (int r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
        for (size_t i = 0; i < (size_t)rows * D; i++) acc[i] = 0.0f;

        int keys = p->causal ? i0 + rows : p->Tk; /* the block's last query sees keys < i0 + rows */
        for (int j0 = 0; j0 < keys; j0 += KEY_BLOCK) {
            int cols = keys - j0 < KEY_BLOCK ? keys - j0 : KEY_BLOCK;
            const float *kt = j->k + ((size_t)b * p->Tk + j0) * HD + (size_t)h * D;
            const float *vt = j->v + ((size_t)b * p->Tk + j0) * HD + (size_t)h * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, D, p->scale, qt, HD, kt, HD, 0.0f,
                        scores, KEY_BLOCK);
            for (int r = 0; r < rows; r++) {
                float *row = scores + (size_t)r * KEY_BLOCK;
                int seen = cols;
                if (p->causal && i0 + r - j0 + 1 < cols) seen = i0 + r - j0 + 1 > 0 ? i0 + r - j0 + 1 : 0;
                for (int c = seen; c < cols; c++) row[c] = 0.0f; /* masked keys weigh nothing */
                if (seen == 0) continue;
                if (j->bias) {
                    const float *add = j->bias + ((size_t)h * p->Tq + i0 + r) * p->Tk + j0;
                    for (int c = 0; c < seen; c++) row[c] += add[c];
                }
                float m_new = fmaxf(m[r], cpu_max_span(row, (size_t)seen));
                float rescale = expf(m[r] - m_new); /* 0 on the first block: m was -inf */
                l[r] = l[r] * rescale + cpu_exp_span(row, (size_t)seen, m_new);
                m[r] = m_new;
                if (rescale != 1.0f)
                    for (int d = 0; d < D; d++) acc[(size_t)r * D + d] *= rescale;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, cols, 1.0f, scores, KEY_BLOCK, vt, HD,
                        1.0f, acc, D);
        }
        for (int r = 0; r < rows; r++) {
            float *out = j->o + ((size_t)b * p->Tq + i0 + r) * HD + (size_t)h * D;
            float inv = 1.0f / l[r];
            for (int d = 0; d < D; d++) out[d] = acc[(size_t)r * D + d] * inv;
        }
    }
}

// q (B,Tq,H*D), k v (B,Tk,H*D), bias (H,Tq,Tk) or NULL -> o (B,Tq,H*D)
kiln_status cpu_attention(cpu_state *s, const kiln_attention_params *p, const float *q, const float *k,
                          const float *v, const float *bias, float *o)
{
    attention_job j = {.p = p, .q = q, .k = k, .v = v, .bias = bias, .o = o, .s = s};
    j.query_blocks = (p->Tq + QUERY_BLOCK - 1) / QUERY_BLOCK;
    TRY(cpu_scratch_reserve(s, 0, (size_t)QUERY_BLOCK * (KEY_BLOCK + p->D + 2)));
    cpu_parallel_for(s->pool, (int64_t)p->B * p->H * j.query_blocks, 1, attention_block, &j);
    return KILN_OK;
}
