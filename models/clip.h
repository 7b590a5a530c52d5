/* The CLIP text encoder as a config plus one encoder-layer block repeated:
 * OpenAI CLIP ViT-L/14's text tower (quick GELU) and OpenCLIP's ViT-H/14 and
 * ViT-bigG/14 (GELU). A model family reads its towers its own way (a
 * clip_reading): SD 1.x the last layer through the final layer norm, SD 2.x
 * the penultimate through it, padded with 0; SDXL both of its towers at the
 * penultimate layer as they are, and the pooled, projected output of its
 * OpenCLIP one. Towers are bound under transformers' names (`<root>.encoder.
 * layers.N...`): OpenCLIP files' names are mapped to them at open
 * (checkpoint.c). */
#ifndef KILN_MODELS_CLIP_H
#define KILN_MODELS_CLIP_H

#include "blocks.h"

#define CLIP_MAX_LAYERS 48

typedef struct clip_config {
    const char *name;
    int vocab, positions, hidden, layers, heads, mlp;
    bool gelu; /* GELU (erf) in the MLP: OpenCLIP's towers; else quick GELU */
} clip_config;

/* How a model family reads one of its text towers. */
typedef struct clip_reading {
    const char *root;  /* canonical prefix of the tower: "cond_stage_model.transformer.text_model" */
    const char *projection;           /* the pooled output's projection: transformers' (P,D) `<this>.weight`, */
    const char *open_clip_projection; /* or OpenCLIP's (D,P) tensor of this name; NULL both: no pooled output, */
    bool pooled;                      /* but for this: the pooled output as it is (Flux's CLIP-L), P = D */
    bool gelu;         /* which kind of tower */
    int default_skip;  /* the layer the model conditions on, counted from the last (1) */
    bool final_norm;   /* that layer through the final layer norm (SD 1.x/2.x) or as it is (SDXL) */
    int32_t pad_id;    /* the token that fills a window after its EOS */
    const char *embedding_key; /* its tensor in a textual-inversion file of several (ComfyUI's embedding_key) */
} clip_reading;

extern const clip_reading kiln_clip_sd1, kiln_clip_sd2, kiln_clip_sdxl_l, kiln_clip_sdxl_g, kiln_clip_sdxl_refiner,
    kiln_clip_flux, kiln_clip_sd3_l, kiln_clip_sd3_g;

typedef struct clip_layer_weights {
    const tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;                  /* (D) */
    const tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;  /* (D,D) (D) */
    const tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;                  /* (F,D) (F) (D,F) (D) */
} clip_layer_weights;

/* One encoder layer `<root>.encoder.layers.<i>` of width D and MLP width F:
 * the layer CLIP's text and vision towers share. */
kiln_status kiln_clip_layer_bind(kiln_weights *w, const char *root, int i, int D, int F, clip_layer_weights *l);
/* The MLP's activation: OpenAI's towers' quick GELU, OpenCLIP's GELU (erf),
 * SigLIP's tanh GELU. */
typedef enum { CLIP_QUICK_GELU, CLIP_GELU, CLIP_GELU_TANH } clip_activation;

// x (B,T,D) -> x + attention(ln1 x) -> + mlp(ln2 x); causal in the text tower
kiln_status kiln_clip_layer_forward(kiln_graph *g, const clip_layer_weights *l, int heads, clip_activation act,
                                   bool causal, tensor **x);

typedef struct kiln_clip {
    const clip_config *config;
    const clip_reading *reading;
    int nlayers; /* layers the checkpoint has: diffusers' SD 2.x folders drop the last one, which SD 2.x never reads */
    const tensor *token_embedding;    /* (V,D) */
    const tensor *position_embedding; /* (P,D) */
    clip_layer_weights layer[CLIP_MAX_LAYERS];
    const tensor *final_ln_w, *final_ln_b;
    const kiln_st_tensor *projection; /* the pooled output's, read on the host; NULL: none */
    bool projection_open_clip;        /* stored (D,P), as OpenCLIP multiplies; else (P,D) */
    int pooled_dim;                   /* P, 0 without a projection */
} kiln_clip;

extern const clip_config *const kiln_clip_configs[];

/* The config whose shapes the checkpoint's tower under reading->root has. */
const clip_config *kiln_clip_detect(const kiln_checkpoint *ck, const clip_reading *reading);
kiln_status kiln_clip_bind(kiln_weights *w, const clip_config *cfg, const clip_reading *reading, kiln_clip *clip);

// ids (B,T) i32 -> *out (B,T,D): the output of layer (layers - skip + 1),
// through the final layer norm where the reading says; skip 1 = last layer,
// 2 = ComfyUI's CLIPSetLastLayer -2, 0 = the reading's default_skip. With
// `last` not NULL, also the last layer through the final layer norm (what
// the pooled output is taken from). With `vectors` not NULL, some tokens'
// rows are textual-inversion vectors in place of the token table's.
typedef struct kiln_clip_vectors {
    const tensor *rows;  /* (B*T) i32: 0 the token's own row, k > 0 table row k */
    const tensor *table; /* (n+1, D) f32, row 0 zeros */
    const tensor *keep;  /* (B*T, D) f32: 1 where rows is 0, else 0 */
} kiln_clip_vectors;
kiln_status kiln_clip_forward(kiln_graph *g, const kiln_clip *clip, const tensor *ids,
                              const kiln_clip_vectors *vectors, int skip, tensor **out, tensor **last);

/* The pooled output of each of `rows` sequences: the last layer's state at
 * its first EOS (the highest id), times the projection -> pooled (rows,P). */
void kiln_clip_pool(const kiln_clip *clip, const int32_t *ids, const float *last, int rows, float *pooled);

#endif
