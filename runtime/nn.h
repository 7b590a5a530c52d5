/* Layers as one call each on a kiln_graph: they derive the op parameters from
 * the tensors' shapes, allocate the output activation and run the op. Model
 * code reads as a flat list of these, llm.c style. Activations are NCHW
 * (N C H W) for images and (B T D) for token sequences. */
#ifndef KILN_NN_H
#define KILN_NN_H

#include "graph.h"
#include "resample.h"

typedef kiln_tensor tensor;

// x (N,C,H,W) * w (O,C,K,K) + b (O) -> *y (N,O,OH,OW)
kiln_status nn_conv2d(kiln_graph *g, const tensor *x, const tensor *w, const tensor *b, int stride, int pad,
                      tensor **y);
// x (..., K) @ w (N,K)^T + b (N) -> *y (..., N); b may be NULL
kiln_status nn_linear(kiln_graph *g, const tensor *x, const tensor *w, const tensor *b, tensor **y);
// x (N,C,...) -> *y, normalised over groups of channels, SiLU after if silu
kiln_status nn_group_norm(kiln_graph *g, const tensor *x, const tensor *gamma, const tensor *beta, int groups,
                          float eps, bool silu, tensor **y);
// x (..., D) -> *y normalised over D
kiln_status nn_layer_norm(kiln_graph *g, const tensor *x, const tensor *gamma, const tensor *beta, float eps,
                          tensor **y);
// x (..., D) -> *y = x / sqrt(mean(x^2) + eps) * gamma over D: T5's layer norm,
// and Flux's per-head q/k norm on a (B*T*H, D) view of a (B,T,H*D) activation
kiln_status nn_rms_norm(kiln_graph *g, const tensor *x, const tensor *gamma, float eps, tensor **y);
/* adaLN: x (B,T,C) -> *y = layer_norm(x) * (1 + mod[b,scale] + table[scale])
 * + mod[b,shift] + table[shift]; mod (B,K*C) or (B,K,C), table (K,C) or
 * NULL, shift and scale rows 0..K-1; the norm has no affine of its own. */
kiln_status nn_ada_layer_norm(kiln_graph *g, const tensor *x, const tensor *mod, const tensor *table, int shift,
                              int scale, float eps, tensor **y);
/* Flux's rotary position embedding: x (B,T,H*D) -> *y, pair i of each head
 * of token t turned by the angle whose cos and sin are freqs[t][i]; freqs
 * (T,D/2,2) or (T,D), cos then sin per pair (diffusers' apply_rotary_emb
 * with use_real, unbind dim -1); D = last dim / heads, even. */
kiln_status nn_rope(kiln_graph *g, const tensor *x, const tensor *freqs, int heads, tensor **y);
// q (B,Tq,H*D), k v (B,Tk,H*D) -> *o (B,Tq,H*D), scores scaled by 1/sqrt(D)
kiln_status nn_attention(kiln_graph *g, const tensor *q, const tensor *k, const tensor *v, int heads, bool causal,
                         tensor **o);
/* The same with the given scale and bias (H,Tq,Tk) added to every batch
 * element's scores before the softmax (T5: scale 1, its relative-position
 * bias); bias may be NULL. */
kiln_status nn_attention_biased(kiln_graph *g, const tensor *q, const tensor *k, const tensor *v, const tensor *bias,
                                int heads, float scale, tensor **o);
/* The same into o, an activation (or a view of one: a row of a batch) of
 * q's shape. */
kiln_status nn_attention_to(kiln_graph *g, const tensor *q, const tensor *k, const tensor *v, const tensor *bias,
                            int heads, float scale, tensor *o);
// elementwise a + b -> *y (same shape as a)
kiln_status nn_add(kiln_graph *g, const tensor *a, const tensor *b, tensor **y);
// elementwise a * b -> *y (same shape as a)
kiln_status nn_mul(kiln_graph *g, const tensor *a, const tensor *b, tensor **y);
// a * s -> *y
kiln_status nn_scale(kiln_graph *g, const tensor *a, float s, tensor **y);
kiln_status nn_silu(kiln_graph *g, const tensor *x, tensor **y);
// x (n) -> *y = 1 / (1 + exp(-x))
kiln_status nn_sigmoid(kiln_graph *g, const tensor *x, tensor **y);
// x (n) -> *y = the pointwise function kind names (tanh, ELU, hardswish, softsign, mish)
kiln_status nn_activation(kiln_graph *g, const tensor *x, kiln_activation_kind kind, tensor **y);
kiln_status nn_gelu(kiln_graph *g, const tensor *x, tensor **y);
kiln_status nn_quick_gelu(kiln_graph *g, const tensor *x, tensor **y);
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): T5's and PixArt's GELU
kiln_status nn_gelu_tanh(kiln_graph *g, const tensor *x, tensor **y);
kiln_status nn_leaky_relu(kiln_graph *g, const tensor *x, float slope, tensor **y);
// x (..., 2N) -> *y (..., N)
kiln_status nn_geglu(kiln_graph *g, const tensor *x, tensor **y);
// x (N,C,H,W) + b (N,C) -> *y
kiln_status nn_add_channel_bias(kiln_graph *g, const tensor *x, const tensor *b, tensor **y);
// a (N,Ca,H,W), b (N,Cb,H,W) -> *y (N,Ca+Cb,H,W)
kiln_status nn_concat_channels(kiln_graph *g, const tensor *a, const tensor *b, tensor **y);
/* Twice the size, or, given `like` (N,*,OH,OW), that size: a UNet's skip of
 * odd size, one less than twice. */
kiln_status nn_upsample_nearest2x(kiln_graph *g, const tensor *x, const tensor *like, tensor **y);
kiln_status nn_pad2d(kiln_graph *g, const tensor *x, int top, int bottom, int left, int right, tensor **y);
// x (N,C,H,W) -> y: FreeU's scaling of the first C/2 channels (v2: by each pixel's rescaled mean)
kiln_status nn_freeu_backbone(kiln_graph *g, const tensor *x, float b, bool v2, tensor **y);
// x (N,C,H,W) -> y: FreeU's filter, the lowest frequencies scaled by s
kiln_status nn_fourier_filter(kiln_graph *g, const tensor *x, float s, tensor **y);
// x (N,C,H,W) -> *y (N,C,oh,ow): torch's interpolate (no align_corners, no antialias) with `method`, or
// ComfyUI's bislerp
kiln_status nn_resize(kiln_graph *g, const tensor *x, int oh, int ow, kiln_resample_method method, tensor **y);
// x (N,C,H,W) or (N,C,HW), slope (C) -> *y: PReLU, a learnt slope per channel for x < 0
kiln_status nn_prelu(kiln_graph *g, const tensor *x, const tensor *slope, tensor **y);
// x (N,C*r*r,H,W) -> *y (N,C,H*r,W*r): torch's pixel_shuffle
kiln_status nn_pixel_shuffle(kiln_graph *g, const tensor *x, int r, tensor **y);
// x (N,C,H,W) -> *y (N,C,(H+2ph)/2,(W+2pw)/2): torch's avg_pool2d(x, 2, 2, padding=(ph,pw))
kiln_status nn_avg_pool2x2(kiln_graph *g, const tensor *x, int pad_h, int pad_w, tensor **y);
// a (B,Ta,D), b (B,Tb,D) -> *y (B,Ta+Tb,D), joined along the tokens
kiln_status nn_concat_tokens(kiln_graph *g, const tensor *a, const tensor *b, tensor **y);
// *x = *x + delta, releasing both: the residual step of a block
kiln_status nn_add_into(kiln_graph *g, tensor **x, tensor *delta);
/* *x = *x + (mod[b,gate] + table[gate]) * y, releasing the old *x and y: a
 * DiT block's gated residual; x, y (B,T,C), mod (B,K*C) or (B,K,C), table
 * (K,C) or NULL. */
kiln_status nn_gated_add_into(kiln_graph *g, tensor **x, tensor *y, const tensor *mod, const tensor *table, int gate);
// x (N,C,H,W) -> *y (N,H*W,C), and back with nn_tokens_to_image
kiln_status nn_image_to_tokens(kiln_graph *g, const tensor *x, tensor **y);
kiln_status nn_tokens_to_image(kiln_graph *g, const tensor *x, int64_t H, int64_t W, tensor **y);
// x read as (A,P,Q,E) -> *y (A,Q,P,E), x's shape: the middle two axes swapped, blocks of E kept whole
kiln_status nn_swap_axes(kiln_graph *g, const tensor *x, int64_t A, int64_t P, int64_t Q, int64_t E, tensor **y);
// t (N) -> *y (N,dim), SD's sinusoidal embedding
kiln_status nn_timestep_embedding(kiln_graph *g, const tensor *t, int dim, tensor **y);
// ids (M) i32, table (V,D) -> *y (M,D)
kiln_status nn_embedding(kiln_graph *g, const tensor *ids, const tensor *table, tensor **y);

/* Releases *t and sets it to NULL: the usual end of an activation's life. */
static inline void nn_drop(kiln_graph *g, tensor **t)
{
    kiln_graph_release(g, *t);
    *t = NULL;
}

#endif
