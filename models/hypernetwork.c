/* A1111 hypernetworks (see hypernetwork.h). */
#include "hypernetwork.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "status.h"
#include "torch_file.h"

/* ComfyUI's names for them, torch's modules in brackets where they differ */
static const struct {
    const char *name;
    hypernetwork_activation activation;
} activations[] = {
    {"linear", HYPERNETWORK_LINEAR},     {"relu", HYPERNETWORK_RELU},     {"leakyrelu", HYPERNETWORK_LEAKY_RELU},
    {"elu", HYPERNETWORK_ELU},           {"swish", HYPERNETWORK_HARDSWISH} /* Hardswish */,
    {"tanh", HYPERNETWORK_TANH},         {"sigmoid", HYPERNETWORK_SIGMOID}, {"softsign", HYPERNETWORK_SOFTSIGN},
    {"mish", HYPERNETWORK_MISH},
};

/* A Python truth value of the options (absent: false) */
static bool option(const kiln_py_value *root, const char *key)
{
    const kiln_py_value *v = kiln_py_dict_get(root, key);
    return v && (v->kind == KILN_PY_BOOL || v->kind == KILN_PY_INT) && v->i != 0;
}

typedef struct stack_reading {
    const char *path;
    kiln_hypernetwork *h;
    bool layer_norm, activate_output;
} stack_reading;

static kiln_status bind_layer_norm(const stack_reading *r, const char *prefix, int64_t width, hypernetwork_layer *l)
{
    TRY(KILN_BIND(r->h->weights, &l->norm_w, prefix, "weight", width));
    return KILN_BIND(r->h->weights, &l->norm_b, prefix, "bias", width);
}

/* Stack `index` (0 keys, 1 values) of dim's: state dict sd, whose tensors
 * the checkpoint names `<dim>.<index>.<name>`. */
static kiln_status read_stack(const stack_reading *r, int dim, int index, const kiln_py_value *sd,
                              hypernetwork_stack *s)
{
    const char *names[2 * KILN_HYPERNETWORK_MAX_LAYERS];
    int count = 0;
    for (size_t i = 0; sd && sd->kind == KILN_PY_DICT && i < sd->n; i++) {
        const kiln_py_value *key = sd->keys[i];
        if (key->kind != KILN_PY_STR) continue;
        const size_t len = strlen(key->s);
        if (len <= 7 || strcmp(key->s + len - 7, ".weight") != 0) continue;
        if (count == (int)(sizeof names / sizeof *names))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: dim %d's stack %d has more than %d layers", r->path, dim,
                             index, KILN_HYPERNETWORK_MAX_LAYERS);
        names[count++] = key->s;
    }
    if (!count) return kiln_fail(KILN_ERR_MODEL, "%s: dim %d has no stack %d of layers", r->path, dim, index);
    int64_t width = dim;
    for (int i = 0; i < count; i++) {
        if (s->nlayers == KILN_HYPERNETWORK_MAX_LAYERS)
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: dim %d's stack %d has more than %d layers", r->path, dim,
                             index, KILN_HYPERNETWORK_MAX_LAYERS);
        hypernetwork_layer *l = &s->layers[s->nlayers++];
        char prefix[300];
        snprintf(prefix, sizeof prefix, "%d.%d.%.*s", dim, index, (int)(strlen(names[i]) - 7), names[i]);
        const kiln_st_tensor *w = kiln_checkpoint_find_at(r->h->checkpoint, prefix, "weight");
        if (!w || w->ndim != 2 || w->shape[1] != width)
            return kiln_fail(KILN_ERR_MODEL, "%s: '%s.weight' is no linear layer from width %" PRId64, r->path,
                             prefix, width);
        width = w->shape[0];
        TRY(kiln_weights_bind_linear(r->h->weights, &l->w, prefix, "weight", width, w->shape[1]));
        TRY(KILN_BIND(r->h->weights, &l->b, prefix, "bias", width));
        /* ComfyUI counts the layer norms' names too in whether this is the last */
        l->activate = r->h->activation != HYPERNETWORK_LINEAR && (i < count - 1 || r->activate_output);
        if (!r->layer_norm) continue;
        if (++i == count)
            return kiln_fail(KILN_ERR_MODEL, "%s: dim %d's stack %d ends without the layer norm after its last "
                             "linear", r->path, dim, index);
        snprintf(prefix, sizeof prefix, "%d.%d.%.*s", dim, index, (int)(strlen(names[i]) - 7), names[i]);
        TRY(bind_layer_norm(r, prefix, width, l));
    }
    if (width != dim)
        return kiln_fail(KILN_ERR_MODEL, "%s: dim %d's stack %d ends at width %" PRId64 ", not back at %d", r->path,
                         dim, index, width, dim);
    return KILN_OK;
}

static kiln_status read_hypernetwork(const char *path, const kiln_py_value *root, kiln_hypernetwork *h)
{
    if (root->kind != KILN_PY_DICT) return kiln_fail(KILN_ERR_FORMAT, "%s: holds no dict: not a hypernetwork", path);
    const kiln_py_value *act = kiln_py_dict_get(root, "activation_func");
    const char *name = act && act->kind == KILN_PY_STR ? act->s : "linear";
    size_t a = 0;
    while (a < sizeof activations / sizeof *activations && strcmp(activations[a].name, name) != 0) a++;
    if (a == sizeof activations / sizeof *activations)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: activation_func '%s' (hypernetworks have linear, relu, "
                         "leakyrelu, elu, swish, tanh, sigmoid, softsign or mish)", path, name);
    h->activation = activations[a].activation;
    const stack_reading r = {path, h, option(root, "is_layer_norm"), option(root, "activate_output")};
    for (size_t i = 0; i < root->n; i++) {
        if (root->keys[i]->kind != KILN_PY_INT) continue; /* the options, the step count, the name */
        const kiln_py_value *pair = root->items[i];
        const int64_t dim = root->keys[i]->i;
        if (dim < 1 || dim > 65536 || pair->kind != KILN_PY_LIST || pair->n != 2)
            return kiln_fail(KILN_ERR_MODEL, "%s: dim %" PRId64 " holds no pair of layer stacks", path, dim);
        if (h->nmodules == KILN_HYPERNETWORK_MAX_DIMS)
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: more than %d dims", path, KILN_HYPERNETWORK_MAX_DIMS);
        hypernetwork_module *m = &h->modules[h->nmodules++];
        m->dim = (int)dim;
        TRY(read_stack(&r, m->dim, 0, pair->items[0], &m->k));
        TRY(read_stack(&r, m->dim, 1, pair->items[1], &m->v));
    }
    if (!h->nmodules) return kiln_fail(KILN_ERR_MODEL, "%s: no dims with layer stacks: not a hypernetwork", path);
    return KILN_OK;
}

kiln_status kiln_hypernetwork_open(const char *path, double strength, kiln_backend *be, kiln_hypernetwork **out)
{
    *out = NULL;
    if (!(strength >= -10.0 && strength <= 10.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "hypernetwork %s: strength %g: must be -10..10", path, strength);
    kiln_hypernetwork *h = calloc(1, sizeof *h);
    if (!h) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "hypernetwork: out of host memory");
    h->strength = (float)strength;
    /* the options from the pickle, the tensors through the checkpoint (the same file, flattened) */
    kiln_torch_file *f = NULL;
    kiln_status st = kiln_torch_open(path, &f);
    if (st == KILN_OK) st = kiln_checkpoint_open(path, &h->checkpoint);
    if (st == KILN_OK) st = kiln_weights_create(be, h->checkpoint, &h->weights);
    if (st == KILN_OK) st = read_hypernetwork(path, kiln_torch_root(f), h);
    kiln_torch_close(f);
    if (st != KILN_OK) {
        kiln_hypernetwork_free(h);
        return st;
    }
    *out = h;
    return KILN_OK;
}

void kiln_hypernetwork_free(kiln_hypernetwork *h)
{
    if (!h) return;
    kiln_weights_free(h->weights);
    kiln_checkpoint_close(h->checkpoint);
    free(h);
}

static kiln_status activate(kiln_graph *g, hypernetwork_activation a, const tensor *x, tensor **y)
{
    switch (a) {
    case HYPERNETWORK_RELU: return nn_leaky_relu(g, x, 0.0f, y);
    case HYPERNETWORK_LEAKY_RELU: return nn_leaky_relu(g, x, 0.01f, y); /* torch's default slope */
    case HYPERNETWORK_SIGMOID: return nn_sigmoid(g, x, y);
    case HYPERNETWORK_ELU: return nn_activation(g, x, KILN_ACTIVATION_ELU, y);
    case HYPERNETWORK_HARDSWISH: return nn_activation(g, x, KILN_ACTIVATION_HARDSWISH, y);
    case HYPERNETWORK_TANH: return nn_activation(g, x, KILN_ACTIVATION_TANH, y);
    case HYPERNETWORK_SOFTSIGN: return nn_activation(g, x, KILN_ACTIVATION_SOFTSIGN, y);
    case HYPERNETWORK_MISH: return nn_activation(g, x, KILN_ACTIVATION_MISH, y);
    case HYPERNETWORK_LINEAR: break;
    }
    return kiln_fail(KILN_ERR_INVALID_ARG, "hypernetwork: no activation to apply");
}

/* x (N,T,dim) -> *y (N,T,dim) through stack s */
static kiln_status stack_forward(kiln_graph *g, const hypernetwork_stack *s, hypernetwork_activation a,
                                 const tensor *x, tensor **y)
{
    tensor *h = NULL, *t;
    for (int i = 0; i < s->nlayers; i++) {
        const hypernetwork_layer *l = &s->layers[i];
        TRY(nn_linear(g, h ? h : x, l->w, l->b, &t));
        if (h) nn_drop(g, &h);
        h = t;
        if (l->activate) {
            TRY(activate(g, a, h, &t));
            nn_drop(g, &h);
            h = t;
        }
        if (l->norm_w) {
            TRY(nn_layer_norm(g, h, l->norm_w, l->norm_b, 1e-5f, &t));
            nn_drop(g, &h);
            h = t;
        }
    }
    *y = h;
    return KILN_OK;
}

kiln_status kiln_hypernetworks_forward(kiln_graph *g, const kiln_hypernetworks *hn, bool values, const tensor *x,
                                       tensor **y)
{
    *y = NULL;
    const int64_t dim = x->shape[x->ndim - 1];
    for (int i = 0; hn && i < hn->count; i++) {
        const kiln_hypernetwork *h = hn->items[i];
        const hypernetwork_module *m = NULL;
        for (int j = 0; j < h->nmodules && !m; j++)
            if (h->modules[j].dim == dim) m = &h->modules[j];
        if (!m) continue;
        tensor *d, *scaled;
        TRY(stack_forward(g, values ? &m->v : &m->k, h->activation, *y ? *y : x, &d));
        TRY(nn_scale(g, d, h->strength, &scaled));
        nn_drop(g, &d);
        if (*y) {
            TRY(nn_add_into(g, y, scaled));
        } else {
            TRY(nn_add(g, x, scaled, y));
            nn_drop(g, &scaled);
        }
    }
    return KILN_OK;
}
