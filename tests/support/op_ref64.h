/* Float64 reference loops for every op in ops.def, the yardstick of the op
 * test suite. They are written apart from runtime/cpu_ref.c (which is itself
 * checked against them) and keep every intermediate in double, so their own
 * rounding error is far below any tolerance the suite uses. Weights arrive
 * already widened to double from their stored dtype; a NULL bias means none. */
#ifndef KILN_OP_REF64_H
#define KILN_OP_REF64_H

#include <stdint.h>

#include "ops.h"

void kiln_ref64_matmul(const kiln_matmul_params *p, const double *x, const double *w, const double *bias,
                       double *y);
void kiln_ref64_conv2d(const kiln_conv2d_params *p, const double *x, const double *w, const double *bias,
                       double *y);
void kiln_ref64_group_norm(const kiln_group_norm_params *p, const double *x, const double *gamma,
                           const double *beta, double *y);
void kiln_ref64_layer_norm(const kiln_layer_norm_params *p, const double *x, const double *gamma,
                           const double *beta, double *y);
void kiln_ref64_rms_norm(const kiln_rms_norm_params *p, const double *x, const double *gamma, double *y);
/* table NULL: none (zeros) */
void kiln_ref64_ada_layer_norm(const kiln_ada_layer_norm_params *p, const double *x, const double *mod,
                               const double *table, double *y);
/* bias (H,Tq,Tk) or NULL; s: scratch of Tk doubles */
void kiln_ref64_attention(const kiln_attention_params *p, const double *q, const double *k, const double *v,
                          const double *bias, double *o, double *s);
/* freqs (T,D/2,2): cos and sin of each pair of each token */
void kiln_ref64_rope(const kiln_rope_params *p, const double *x, const double *freqs, double *y);
void kiln_ref64_softmax(const kiln_softmax_params *p, const double *x, double *y);
void kiln_ref64_silu(const kiln_silu_params *p, const double *x, double *y);
void kiln_ref64_sigmoid(const kiln_sigmoid_params *p, const double *x, double *y);
void kiln_ref64_activation(const kiln_activation_params *p, const double *x, double *y);
void kiln_ref64_gelu(const kiln_gelu_params *p, const double *x, double *y);
void kiln_ref64_gelu_tanh(const kiln_gelu_tanh_params *p, const double *x, double *y);
void kiln_ref64_quick_gelu(const kiln_quick_gelu_params *p, const double *x, double *y);
void kiln_ref64_geglu(const kiln_geglu_params *p, const double *x, double *y);
void kiln_ref64_add(const kiln_add_params *p, const double *a, const double *b, double *y);
/* table NULL: none (zeros) */
void kiln_ref64_gated_add(const kiln_gated_add_params *p, const double *x, const double *y, const double *mod,
                          const double *table, double *out);
void kiln_ref64_mul(const kiln_mul_params *p, const double *a, const double *b, double *y);
void kiln_ref64_scale(const kiln_scale_params *p, const double *a, double *y);
void kiln_ref64_leaky_relu(const kiln_leaky_relu_params *p, const double *x, double *y);
void kiln_ref64_add_channel_bias(const kiln_add_channel_bias_params *p, const double *x, const double *b,
                                 double *y);
void kiln_ref64_concat_channels(const kiln_concat_channels_params *p, const double *a, const double *b,
                                double *y);
void kiln_ref64_upsample_nearest2x(const kiln_upsample_nearest2x_params *p, const double *x, double *y);
void kiln_ref64_timestep_embedding(const kiln_timestep_embedding_params *p, const double *t, double *y);
void kiln_ref64_transpose(const kiln_transpose_params *p, const double *x, double *y);
void kiln_ref64_embedding(const kiln_embedding_params *p, const int32_t *ids, const double *table, double *y);
void kiln_ref64_pad2d(const kiln_pad2d_params *p, const double *x, double *y);
void kiln_ref64_freeu_backbone(const kiln_freeu_backbone_params *p, const double *x, double *y);
/* scratch: 4 H W doubles */
void kiln_ref64_fourier_filter(const kiln_fourier_filter_params *p, const double *x, double *y, double *scratch);
/* scratch: OH H + OW W + H OW doubles */
void kiln_ref64_resize(const kiln_resize_params *p, const double *x, double *y, double *scratch);
void kiln_ref64_slerp_resize(const kiln_slerp_resize_params *p, const double *x, double *y);
void kiln_ref64_prelu(const kiln_prelu_params *p, const double *x, const double *slope, double *y);
void kiln_ref64_pixel_shuffle(const kiln_pixel_shuffle_params *p, const double *x, double *y);
void kiln_ref64_avg_pool2x2(const kiln_avg_pool2x2_params *p, const double *x, double *y);

#endif
