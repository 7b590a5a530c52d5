/* The CPU reference: one plain loop per op in ops.def, written for clarity,
 * not speed. The CPU backend's fast paths and every GPU backend are tested
 * against these. Activations are f32 pointers; weights are (pointer, dtype)
 * pairs widened element by element. */
#ifndef KILN_CPU_REF_H
#define KILN_CPU_REF_H

#include "ops.h"

typedef struct kiln_weight_ptr {
    const void *data;
    kiln_dtype dtype;
} kiln_weight_ptr;

void cpu_ref_matmul(const kiln_matmul_params *p, const float *x, kiln_weight_ptr w, kiln_weight_ptr bias, float *y);
void cpu_ref_conv2d(const kiln_conv2d_params *p, const float *x, kiln_weight_ptr w, kiln_weight_ptr bias, float *y);
void cpu_ref_group_norm(const kiln_group_norm_params *p, const float *x, kiln_weight_ptr gamma,
                        kiln_weight_ptr beta, float *y);
void cpu_ref_layer_norm(const kiln_layer_norm_params *p, const float *x, kiln_weight_ptr gamma,
                        kiln_weight_ptr beta, float *y);
void cpu_ref_rms_norm(const kiln_rms_norm_params *p, const float *x, kiln_weight_ptr gamma, float *y);
/* table.data NULL: no table (zeros) */
void cpu_ref_ada_layer_norm(const kiln_ada_layer_norm_params *p, const float *x, const float *mod,
                            kiln_weight_ptr table, float *y);
/* bias (H,Tq,Tk) or NULL; s: scratch of Tk floats */
void cpu_ref_attention(const kiln_attention_params *p, const float *q, const float *k, const float *v,
                       const float *bias, float *o, float *s);
/* freqs (T,D/2,2): cos and sin of each pair of each token */
void cpu_ref_rope(const kiln_rope_params *p, const float *x, const float *freqs, float *y);
void cpu_ref_softmax(const kiln_softmax_params *p, const float *x, float *y);
void cpu_ref_silu(const kiln_silu_params *p, const float *x, float *y);
/* 0 below about -88.7, where expf(-x) overflows to infinity */
void cpu_ref_sigmoid(const kiln_sigmoid_params *p, const float *x, float *y);
/* one element of the activation op, also the CPU fast path's (a rare op,
 * not worth a vector form) */
float cpu_ref_activate(kiln_activation_kind kind, float v);
void cpu_ref_activation(const kiln_activation_params *p, const float *x, float *y);
void cpu_ref_gelu(const kiln_gelu_params *p, const float *x, float *y);
void cpu_ref_quick_gelu(const kiln_quick_gelu_params *p, const float *x, float *y);
void cpu_ref_gelu_tanh(const kiln_gelu_tanh_params *p, const float *x, float *y);
void cpu_ref_geglu(const kiln_geglu_params *p, const float *x, float *y);
void cpu_ref_add(const kiln_add_params *p, const float *a, const float *b, float *y);
/* table.data NULL: no table (zeros) */
void cpu_ref_gated_add(const kiln_gated_add_params *p, const float *x, const float *y, const float *mod,
                       kiln_weight_ptr table, float *out);
void cpu_ref_mul(const kiln_mul_params *p, const float *a, const float *b, float *y);
void cpu_ref_scale(const kiln_scale_params *p, const float *a, float *y);
void cpu_ref_leaky_relu(const kiln_leaky_relu_params *p, const float *x, float *y);
void cpu_ref_add_channel_bias(const kiln_add_channel_bias_params *p, const float *x, const float *b, float *y);
void cpu_ref_concat_channels(const kiln_concat_channels_params *p, const float *a, const float *b, float *y);
void cpu_ref_pad2d(const kiln_pad2d_params *p, const float *x, float *y);
void cpu_ref_upsample_nearest2x(const kiln_upsample_nearest2x_params *p, const float *x, float *y);
void cpu_ref_timestep_embedding(const kiln_timestep_embedding_params *p, const float *t, float *y);
void cpu_ref_transpose(const kiln_transpose_params *p, const float *x, float *y);
void cpu_ref_embedding(const kiln_embedding_params *p, const int32_t *ids, kiln_weight_ptr table, float *y);
/* means: HW floats of scratch (v2 only; NULL otherwise) */
void cpu_ref_freeu_backbone(const kiln_freeu_backbone_params *p, const float *x, float *y, float *means);
/* twiddles: 2 (H + W) floats of scratch */
void cpu_ref_fourier_filter(const kiln_fourier_filter_params *p, const float *x, float *y, float *twiddles);
/* the N C planes through kiln_resample (resample.c), the host code checked
 * against torch, so that the op and the host's resizes are one arithmetic */
void cpu_ref_resize(const kiln_resize_params *p, const float *x, float *y);
/* rows [begin, end) of y's N images (H rows of `out` pixels along the width,
 * `out` rows of W along the height), each pixel kiln_slerp at
 * kiln_bislerp_tap's taps: kiln_bislerp's own arithmetic, which the CPU
 * fast path runs on each thread's share of the rows */
void cpu_ref_slerp_resize_rows(const kiln_slerp_resize_params *p, const float *x, float *y, int64_t begin,
                               int64_t end);
void cpu_ref_slerp_resize(const kiln_slerp_resize_params *p, const float *x, float *y);
void cpu_ref_prelu(const kiln_prelu_params *p, const float *x, kiln_weight_ptr slope, float *y);
void cpu_ref_pixel_shuffle(const kiln_pixel_shuffle_params *p, const float *x, float *y);
/* each window summed row by row, left to right, then times 1/4: torch's
 * order, and the one every backend keeps */
void cpu_ref_avg_pool2x2(const kiln_avg_pool2x2_params *p, const float *x, float *y);

#endif
