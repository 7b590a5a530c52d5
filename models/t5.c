#include "t5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "status.h"

/* A linear layer's (rows,cols) weight, or a norm's (rows) where cols is 0. */
static kiln_status bind(kiln_weights *w, const tensor **out, const char *root, const char *suffix, int64_t rows,
                        int64_t cols)
{
    if (cols) return kiln_weights_bind_linear(w, out, root, suffix, rows, cols);
    return KILN_BIND(w, out, root, suffix, rows);
}

#define RELATIVE_BIAS "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"

bool kiln_t5_present(const kiln_checkpoint *ck, const char *root)
{
    return kiln_checkpoint_find_at(ck, root, RELATIVE_BIAS) != NULL;
}

/* The token table: `shared.weight`, or the encoder's own copy where a file
 * keeps only that one of the two tied names. */
static const char *embedding_name(const kiln_checkpoint *ck, const char *root)
{
    return kiln_checkpoint_find_at(ck, root, "shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
}

kiln_status kiln_t5_bind(kiln_weights *w, const char *root, kiln_t5 *t5)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    *t5 = (kiln_t5){.eps = 1e-6f};
    const kiln_st_tensor *emb = kiln_checkpoint_find_at(ck, root, embedding_name(ck, root));
    const kiln_st_tensor *rel = kiln_checkpoint_find_at(ck, root, RELATIVE_BIAS);
    const kiln_st_tensor *q = kiln_checkpoint_find_at(ck, root, "encoder.block.0.layer.0.SelfAttention.q.weight");
    const kiln_st_tensor *wi0 =
        kiln_checkpoint_find_at(ck, root, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight");
    if (!emb || !rel || !q || emb->ndim != 2 || rel->ndim != 2 || q->ndim != 2)
        return kiln_fail(KILN_ERR_MODEL, "%s: no T5 encoder under '%s' (shared.weight, encoder.block.0...)", path,
                         *root ? root : "(top level)");
    if (!wi0)
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "%s: T5 encoder without '...DenseReluDense.wi_0': kiln reads T5 v1.1 (gated GELU) only", path);
    if (rel->dtype != KILN_F32 && rel->dtype != KILN_F16 && rel->dtype != KILN_BF16)
        return kiln_fail(KILN_ERR_MODEL, "%s: the T5 relative attention bias is %s", path, kiln_dtype_name(rel->dtype));
    t5->vocab = (int)emb->shape[0];
    t5->hidden = (int)emb->shape[1];
    t5->buckets = (int)rel->shape[0];
    t5->heads = (int)rel->shape[1];
    t5->relative_bias = rel;
    if (t5->heads < 1 || q->shape[0] % t5->heads || q->shape[1] != t5->hidden)
        return kiln_fail(KILN_ERR_MODEL, "%s: T5 query weight [%lld, %lld] does not fit %d heads of width %d", path,
                         (long long)q->shape[0], (long long)q->shape[1], t5->heads, t5->hidden);
    t5->head_dim = (int)(q->shape[0] / t5->heads);
    t5->ff = (int)wi0->shape[0];
    char suffix[160];
    while (t5->layers < T5_MAX_LAYERS) {
        snprintf(suffix, sizeof suffix, "encoder.block.%d.layer.0.layer_norm.weight", t5->layers);
        if (!kiln_checkpoint_find_at(ck, root, suffix)) break;
        t5->layers++;
    }
    const int64_t D = t5->hidden, I = (int64_t)t5->heads * t5->head_dim, F = t5->ff;
    TRY(KILN_BIND(w, &t5->embedding, root, embedding_name(ck, root), t5->vocab, D));
    for (int i = 0; i < t5->layers; i++) {
        t5_layer_weights *l = &t5->layer[i];
        struct { const tensor **out; const char *part; int64_t rows, cols; } parts[] = {
            {&l->attn_norm, "0.layer_norm", D, 0},    {&l->q_w, "0.SelfAttention.q", I, D},
            {&l->k_w, "0.SelfAttention.k", I, D},     {&l->v_w, "0.SelfAttention.v", I, D},
            {&l->o_w, "0.SelfAttention.o", D, I},     {&l->ff_norm, "1.layer_norm", D, 0},
            {&l->wi0_w, "1.DenseReluDense.wi_0", F, D}, {&l->wi1_w, "1.DenseReluDense.wi_1", F, D},
            {&l->wo_w, "1.DenseReluDense.wo", D, F},
        };
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            snprintf(suffix, sizeof suffix, "encoder.block.%d.layer.%s.weight", i, parts[p].part);
            TRY(bind(w, parts[p].out, root, suffix, parts[p].rows, parts[p].cols));
        }
    }
    return bind(w, &t5->final_norm, root, "encoder.final_layer_norm.weight", D, 0);
}

int kiln_t5_bucket(int distance, int buckets, int max_distance)
{
    int half = buckets / 2, bucket = distance > 0 ? half : 0, exact = half / 2;
    int n = abs(distance);
    if (n < exact) return bucket + n;
    /* in float, as transformers computes it, so that a distance on a bucket
     * edge falls on the same side */
    float scaled = logf((float)n / (float)exact) / (float)log((double)max_distance / exact) * (float)(half - exact);
    int large = exact + (int)scaled;
    return bucket + (large < half - 1 ? large : half - 1);
}

/* The (H,T,T) bias every block adds to its scores: bias[h][i][j] is the
 * table's entry for the bucket of j - i. */
static kiln_status position_bias(kiln_graph *g, const kiln_t5 *t5, int64_t T, tensor **out)
{
    const int H = t5->heads;
    float *bias = malloc((size_t)(H * T * T) * sizeof *bias);
    if (!bias) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "t5: out of host memory for a %lld-token bias", (long long)T);
    const kiln_st_tensor *rel = t5->relative_bias;
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) {
            int b = kiln_t5_bucket((int)(j - i), t5->buckets, T5_MAX_DISTANCE);
            for (int h = 0; h < H; h++)
                bias[((size_t)h * T + i) * T + j] = kiln_load_f32(rel->data, rel->dtype, (size_t)b * H + h);
        }
    kiln_status st = kiln_graph_input(g, out, KILN_F32, 3, (int64_t[]){H, T, T}, bias);
    free(bias);
    return st;
}

static kiln_status layer_forward(kiln_graph *g, const kiln_t5 *t5, const t5_layer_weights *l, const tensor *bias,
                                 tensor **x)
{
    tensor *n, *q, *k, *v, *o, *d, *gate, *act, *up, *h;
    TRY(nn_rms_norm(g, *x, l->attn_norm, t5->eps, &n));
    TRY(nn_linear(g, n, l->q_w, NULL, &q));
    TRY(nn_linear(g, n, l->k_w, NULL, &k));
    TRY(nn_linear(g, n, l->v_w, NULL, &v));
    nn_drop(g, &n);
    TRY(nn_attention_biased(g, q, k, v, bias, t5->heads, 1.0f, &o)); /* T5 folds the 1/sqrt(d) into its weights */
    nn_drop(g, &q);
    nn_drop(g, &k);
    nn_drop(g, &v);
    TRY(nn_linear(g, o, l->o_w, NULL, &d));
    nn_drop(g, &o);
    TRY(nn_add_into(g, x, d));

    TRY(nn_rms_norm(g, *x, l->ff_norm, t5->eps, &n));
    TRY(nn_linear(g, n, l->wi0_w, NULL, &gate));
    TRY(nn_linear(g, n, l->wi1_w, NULL, &up));
    nn_drop(g, &n);
    TRY(nn_gelu_tanh(g, gate, &act));
    nn_drop(g, &gate);
    TRY(nn_mul(g, act, up, &h));
    nn_drop(g, &act);
    nn_drop(g, &up);
    TRY(nn_linear(g, h, l->wo_w, NULL, &d));
    nn_drop(g, &h);
    return nn_add_into(g, x, d);
}

kiln_status kiln_t5_forward(kiln_graph *g, const kiln_t5 *t5, const tensor *ids, tensor **out)
{
    const int64_t T = kiln_tensor_numel(ids);
    if (T < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "t5: no tokens");
    tensor *x, *bias;
    TRY(nn_embedding(g, ids, t5->embedding, &x));
    x->ndim = 3; /* (T,D) viewed as (1,T,D) */
    x->shape[0] = 1;
    x->shape[1] = T;
    x->shape[2] = t5->hidden;
    TRY(position_bias(g, t5, T, &bias));
    for (int i = 0; i < t5->layers; i++) TRY(layer_forward(g, t5, &t5->layer[i], bias, &x));
    nn_drop(g, &bias);
    TRY(nn_rms_norm(g, x, t5->final_norm, t5->eps, out));
    nn_drop(g, &x);
    return KILN_OK;
}
