/* FLUX.1 Redux's image encoder (see redux.h). */
#include "redux.h"

#include <stdlib.h>

#include "checkpoint.h"
#include "status.h"

kiln_status kiln_style_model_open(const char *path, kiln_backend *be, kiln_style_model **out)
{
    *out = NULL;
    kiln_style_model *sm = calloc(1, sizeof *sm);
    if (!sm) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "style model: out of host memory");
    kiln_status st = kiln_checkpoint_open(path, &sm->checkpoint);
    const kiln_st_tensor *up = st == KILN_OK ? kiln_checkpoint_find(sm->checkpoint, "redux_up.weight") : NULL;
    if (st == KILN_OK && (!up || up->ndim != 2 || up->shape[0] % 3))
        st = kiln_fail(KILN_ERR_MODEL, "%s: no tensor 'redux_up.weight' of three times T5's width: not a FLUX.1 Redux "
                       "model (the style model kiln reads)", path);
    if (st == KILN_OK) {
        sm->in_dim = (int)up->shape[1];
        sm->out_dim = (int)(up->shape[0] / 3);
        st = kiln_weights_create(be, sm->checkpoint, &sm->weights);
    }
    const int64_t in = sm->in_dim, D = sm->out_dim;
    if (st == KILN_OK) st = KILN_BIND(sm->weights, &sm->up_w, "redux_up", "weight", 3 * D, in);
    if (st == KILN_OK) st = KILN_BIND(sm->weights, &sm->up_b, "redux_up", "bias", 3 * D);
    if (st == KILN_OK) st = KILN_BIND(sm->weights, &sm->down_w, "redux_down", "weight", D, 3 * D);
    if (st == KILN_OK) st = KILN_BIND(sm->weights, &sm->down_b, "redux_down", "bias", D);
    if (st != KILN_OK) {
        kiln_style_model_free(sm);
        return st;
    }
    *out = sm;
    return KILN_OK;
}

void kiln_style_model_free(kiln_style_model *sm)
{
    if (!sm) return;
    kiln_weights_free(sm->weights);
    kiln_checkpoint_close(sm->checkpoint);
    free(sm);
}

typedef struct {
    const kiln_style_model *sm;
    const float *hidden;
    int rows, T;
    float *tokens;
} tokens_job;

static kiln_status tokens_fn(kiln_graph *g, void *ctx)
{
    const tokens_job *j = ctx;
    const kiln_style_model *sm = j->sm;
    tensor *x, *h, *a, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 3, (int64_t[]){j->rows, j->T, sm->in_dim}, j->hidden));
    TRY(nn_linear(g, x, sm->up_w, sm->up_b, &h));
    nn_drop(g, &x);
    TRY(nn_silu(g, h, &a));
    nn_drop(g, &h);
    TRY(nn_linear(g, a, sm->down_w, sm->down_b, &y));
    nn_drop(g, &a);
    TRY(kiln_graph_output(g, y, j->tokens, kiln_tensor_nbytes(y)));
    nn_drop(g, &y);
    return KILN_OK;
}

kiln_status kiln_style_model_tokens(const kiln_style_model *sm, const float *hidden, int rows, int T, float *tokens)
{
    tokens_job j = {sm, hidden, rows, T, tokens};
    return kiln_graph_run_once(kiln_weights_backend(sm->weights), tokens_fn, &j);
}
