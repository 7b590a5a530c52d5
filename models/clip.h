/* The CLIP text encoder as a config plus one encoder-layer block repeated:
 * OpenAI CLIP ViT-L/14's text tower in SD 1.x (quick GELU, read at its last
 * layer) and OpenCLIP ViT-H/14's in SD 2.x (GELU, read at its penultimate
 * layer, padded with 0). Checkpoint prefix
 * `cond_stage_model.transformer.text_model.`: SD 2.x files' OpenCLIP names
 * are mapped to it at open (checkpoint.c). */
#ifndef KILN_MODELS_CLIP_H
#define KILN_MODELS_CLIP_H

#include "blocks.h"

#define CLIP_MAX_LAYERS 48

typedef struct clip_config {
    const char *name;
    const char *family; /* the models it conditions: "sd1", "sd2" */
    int vocab, positions, hidden, layers, heads, mlp;
    bool gelu;          /* GELU (erf) in the MLP; else quick GELU */
    int default_skip;   /* the layer the model conditions on, counted from the last (1) */
    int32_t pad_id;     /* the token that fills a window after its EOS */
} clip_config;

typedef struct clip_layer_weights {
    const tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;                  /* (D) */
    const tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;  /* (D,D) (D) */
    const tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;                  /* (F,D) (F) (D,F) (D) */
} clip_layer_weights;

typedef struct kiln_clip {
    const clip_config *config;
    int nlayers; /* layers the checkpoint has: diffusers' SD 2.x folders drop the last one, which SD 2.x never reads */
    const tensor *token_embedding;    /* (V,D) */
    const tensor *position_embedding; /* (P,D) */
    clip_layer_weights layer[CLIP_MAX_LAYERS];
    const tensor *final_ln_w, *final_ln_b;
} kiln_clip;

extern const clip_config *const kiln_clip_configs[];

/* The config of `family` whose shapes the checkpoint's text encoder has. */
const clip_config *kiln_clip_detect(const kiln_checkpoint *ck, const char *family);
kiln_status kiln_clip_bind(kiln_weights *w, const clip_config *cfg, kiln_clip *clip);

// ids (B,T) i32 -> *out (B,T,D): the output of layer (layers - skip + 1)
// through the final layer norm; skip 1 = last layer, 2 = ComfyUI's
// CLIPSetLastLayer -2, 0 = the model's own (config's default_skip).
kiln_status kiln_clip_forward(kiln_graph *g, const kiln_clip *clip, const tensor *ids, int skip, tensor **out);

#endif
