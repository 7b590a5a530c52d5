/* FLUX.1 Redux's image encoder (ComfyUI's style model: StyleModelLoader,
 * StyleModelApply): each token of SigLIP's last hidden state through a
 * linear three times the T5 width, SiLU, and a linear to that width, as
 * rows the Flux model reads after the prompt's T5 rows. Files are BFL's
 * flux1-redux-dev.safetensors (`redux_up.*`, `redux_down.*`; diffusers'
 * ReduxImageEncoder has the same names). */
#ifndef KILN_MODELS_REDUX_H
#define KILN_MODELS_REDUX_H

#include "nn.h"
#include "weights.h"

typedef struct kiln_style_model {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    int in_dim, out_dim;                /* SigLIP's width in, T5's out */
    const tensor *up_w, *up_b;          /* (3 out, in) */
    const tensor *down_w, *down_b;      /* (out, 3 out) */
} kiln_style_model;

/* Opens a Redux file and binds it on be; a file without redux_up is refused
 * naming it. */
kiln_status kiln_style_model_open(const char *path, kiln_backend *be, kiln_style_model **out);
void kiln_style_model_free(kiln_style_model *sm);

// hidden (rows,T,in) on the host -> tokens (rows,T,out)
kiln_status kiln_style_model_tokens(const kiln_style_model *sm, const float *hidden, int rows, int T, float *tokens);

#endif
