/* The T5 v1.1 text encoder (transformers' T5EncoderModel with gated GELU),
 * what PixArt and Flux condition on: a token embedding, then blocks of
 * RMS-normed self-attention with T5's relative-position bias and a gated
 * tanh-GELU feed-forward, then a final RMS norm. The bias is one table of
 * (buckets, heads) in the first block that every block reuses.
 *
 * Nothing in the shapes says the bucket count's reach (max_distance): every
 * released T5 uses 128, and so does kiln. A prompt runs at its own length,
 * never padded: T5 masks padding out of the keys and the relative bias
 * depends only on distances, so the unpadded rows are exactly what a padded,
 * masked batch gives them (tests/data/pixart checks that against
 * transformers). */
#ifndef KILN_MODELS_T5_H
#define KILN_MODELS_T5_H

#include "nn.h"
#include "weights.h"

#define T5_MAX_LAYERS 48
#define T5_MAX_DISTANCE 128

typedef struct t5_layer_weights {
    const tensor *attn_norm;                 /* (D) */
    const tensor *q_w, *k_w, *v_w, *o_w;     /* (H*Dk,D) ... (D,H*Dk) */
    const tensor *ff_norm;                   /* (D) */
    const tensor *wi0_w, *wi1_w, *wo_w;      /* (F,D) (F,D) (D,F): gelu(wi0 x) * wi1 x, then wo */
} t5_layer_weights;

typedef struct kiln_t5 {
    int vocab, hidden, layers, heads, head_dim, ff, buckets;
    float eps;
    const tensor *embedding;                 /* (V,D) */
    const kiln_st_tensor *relative_bias;     /* (buckets,H), read on the host */
    t5_layer_weights layer[T5_MAX_LAYERS];
    const tensor *final_norm;                /* (D) */
} kiln_t5;

/* Whether the checkpoint holds a T5 encoder under root ("" for a bare
 * transformers file: `encoder.block.0...`, `shared.weight`). */
bool kiln_t5_present(const kiln_checkpoint *ck, const char *root);
/* Reads the sizes from the shapes under root and binds every weight. */
kiln_status kiln_t5_bind(kiln_weights *w, const char *root, kiln_t5 *t5);
// ids (T) i32, one prompt -> *out (1,T,D): the last hidden state
kiln_status kiln_t5_forward(kiln_graph *g, const kiln_t5 *t5, const tensor *ids, tensor **out);

/* T5's bucket for a key `distance` = key - query positions away, the
 * bidirectional way the encoder counts: exact for small distances, then
 * logarithmic up to max_distance, half of the buckets for each sign. */
int kiln_t5_bucket(int distance, int buckets, int max_distance);

#endif
