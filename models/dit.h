/* What the DiTs (PixArt, Flux) share: linears and small MLPs bound under a
 * root, and latents cut into patches of tokens and put back. */
#ifndef KILN_MODELS_DIT_H
#define KILN_MODELS_DIT_H

#include <stdbool.h>

#include "nn.h"
#include "weights.h"

/* Linear, activation, linear: diffusers' TimestepEmbedding and
 * PixArtAlphaTextProjection (SiLU or tanh GELU) and its FeedForward (tanh
 * GELU, four times as wide inside). */
typedef struct kiln_mlp {
    const tensor *w1, *b1, *w2, *b2;
    bool gelu_tanh; /* else SiLU */
} kiln_mlp;

/* A linear `<root>.<prefix>.weight` (out,in) and `.bias` (out); prefixes
 * are at most 200 characters. */
kiln_status kiln_dit_bind_linear(kiln_weights *w, const char *root, const char *prefix, int64_t out, int64_t in,
                                 const tensor **weight, const tensor **bias);
/* `<prefix>.linear_1` (out,in) and `<prefix>.linear_2` (out,out). */
kiln_status kiln_mlp_bind(kiln_weights *w, const char *root, const char *prefix, int64_t in, int64_t out,
                          bool gelu_tanh, kiln_mlp *m);
/* FeedForward with tanh GELU: `<prefix>.net.0.proj` (4D,D), `<prefix>.net.2`
 * (D,4D). */
kiln_status kiln_feed_forward_bind(kiln_weights *w, const char *root, const char *prefix, int64_t D, kiln_mlp *m);
// x (M,in) -> *y (M,out)
kiln_status kiln_mlp_forward(kiln_graph *g, const kiln_mlp *m, const tensor *x, tensor **y);

/* Row r of a (B,T,D) activation, as a (1,T,D) view of it. */
tensor kiln_row_view(const tensor *x, int64_t r);

/* latent (B,C,h,w) -> tokens (B,(h/p)(w/p),C*p*p), row-major over the
 * patch grid, each patch's values by channel, then row, then column (a
 * patch conv's weight order, and diffusers' _pack_latents'). */
void kiln_patchify(const float *latent, int B, int C, int h, int w, int p, float *tokens);
/* The way back: each token's values by channel, then row, then column, or
 * where channels_last by row, then column, then channel (PixArt's output). */
void kiln_unpatchify(const float *tokens, int B, int C, int h, int w, int p, bool channels_last, float *latent);

#endif
