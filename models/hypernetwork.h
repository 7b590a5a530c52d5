/* A1111 hypernetworks, as ComfyUI's HypernetworkLoader applies them: for
 * each width `dim` the file has, two small MLPs (one for the keys' input,
 * one for the values') on the input of every UNet attention whose keys are
 * computed from rows of that width (self-attention at dim channels,
 * cross-attention on a text encoder of dim), k_in + strength * mlp_k(k_in)
 * and the same for v_in.
 *
 * Files are torch.save pickles (`.pt`): a dict from each dim (an integer)
 * to a list of two state dicts of a torch.nn.Sequential, beside the
 * options `activation_func` (linear, relu, leakyrelu, elu, swish -- which
 * is torch's Hardswish --, tanh, sigmoid, softsign, mish), `is_layer_norm`,
 * `activate_output`, `use_dropout` and `last_layer_dropout`. The stacks
 * are rebuilt as ComfyUI rebuilds them: the state dict's `.weight` names in
 * order, each a Linear, followed by the activation unless it is the last
 * name and the output is not activated, then by the next name as a
 * LayerNorm where is_layer_norm (so with layer norms the last Linear is
 * activated too, where A1111's own stack does not); dropout, which runs
 * only in training, is left out. */
#ifndef KILN_MODELS_HYPERNETWORK_H
#define KILN_MODELS_HYPERNETWORK_H

#include "nn.h"
#include "weights.h"

#define KILN_HYPERNETWORK_MAX_DIMS 8
#define KILN_HYPERNETWORK_MAX_LAYERS 16

typedef enum hypernetwork_activation {
    HYPERNETWORK_LINEAR,
    HYPERNETWORK_RELU,
    HYPERNETWORK_LEAKY_RELU,
    HYPERNETWORK_ELU,
    HYPERNETWORK_HARDSWISH,
    HYPERNETWORK_TANH,
    HYPERNETWORK_SIGMOID,
    HYPERNETWORK_SOFTSIGN,
    HYPERNETWORK_MISH,
} hypernetwork_activation;

typedef struct hypernetwork_layer {
    const tensor *w, *b;           /* (out,in) (out) */
    bool activate;                 /* the activation after the linear */
    const tensor *norm_w, *norm_b; /* (out) each: a LayerNorm after that; NULL: none */
} hypernetwork_layer;

typedef struct hypernetwork_stack {
    int nlayers;
    hypernetwork_layer layers[KILN_HYPERNETWORK_MAX_LAYERS];
} hypernetwork_stack;

typedef struct hypernetwork_module {
    int dim;
    hypernetwork_stack k, v;
} hypernetwork_module;

typedef struct kiln_hypernetwork {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    hypernetwork_activation activation;
    float strength;
    int nmodules;
    hypernetwork_module modules[KILN_HYPERNETWORK_MAX_DIMS];
} kiln_hypernetwork;

/* The hypernetworks on a UNet call, each applied to what the one before it
 * gave (ComfyUI's attention patches, in the order they were added). */
typedef struct kiln_hypernetworks {
    const kiln_hypernetwork *const *items;
    int count;
} kiln_hypernetworks;

/* Opens a hypernetwork file and binds it on be. Errors name the file: not
 * a torch.save file, an activation ComfyUI does not know, no dims, a stack
 * whose shapes do not chain from dim back to dim. strength: -10..10, as the
 * node's. */
kiln_status kiln_hypernetwork_open(const char *path, double strength, kiln_backend *be, kiln_hypernetwork **out);
void kiln_hypernetwork_free(kiln_hypernetwork *h);

/* x (N,T,dim) -> *y: x through every hypernetwork of hn in turn that has
 * x's width, each adding strength times its keys' (values: false) or its
 * values' (values: true) stack of what came before. *y is NULL where none
 * has that width (x then stands as it is); x is not released. */
kiln_status kiln_hypernetworks_forward(kiln_graph *g, const kiln_hypernetworks *hn, bool values, const tensor *x,
                                       tensor **y);

#endif
