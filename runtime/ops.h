/* Parameter structs for every op in ops.def, and the checked dispatch.
 *
 * Dimensions are spelled out in each struct (rather than read off tensors in
 * every kernel) so GPU push constants can mirror the struct field by field;
 * kiln_op_check() verifies once, for every backend, that the tensors handed
 * to an op agree with its parameters. All fields are 32-bit so the structs
 * have the same layout as the GLSL push-constant blocks. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include <stdint.h>

#include "kiln.h"
#include "tensor.h"

typedef struct kiln_matmul_params { int32_t M, N, K, has_bias; } kiln_matmul_params;

typedef struct kiln_conv2d_params {
    int32_t N, C, H, W;   /* input */
    int32_t O, KH, KW;    /* filters */
    int32_t stride, pad;  /* same in both directions */
    int32_t OH, OW;       /* output: (H + 2 pad - KH) / stride + 1 */
} kiln_conv2d_params;

typedef struct kiln_group_norm_params {
    int32_t N, C, HW, groups;
    float eps;
    int32_t silu; /* apply SiLU to the normalised output */
} kiln_group_norm_params;

typedef struct kiln_layer_norm_params { int32_t M, D; float eps; } kiln_layer_norm_params;
typedef struct kiln_rms_norm_params { int32_t M, D; float eps; } kiln_rms_norm_params;

/* adaLN (DiT, PixArt, Flux): a layer norm without affine whose scale and
 * shift are rows `scale` and `shift` (0..K-1) of the per-batch modulation
 * mod (B,K,C) plus the same rows of the learnt table (K,C), when given.
 * Variance biased, eps inside the sqrt, as torch's LayerNorm. */
typedef struct kiln_ada_layer_norm_params {
    int32_t B, T, C, K;
    int32_t shift, scale; /* rows of mod and table */
    float eps;
} kiln_ada_layer_norm_params;

typedef struct kiln_attention_params {
    int32_t B, H, Tq, Tk, D;
    float scale;    /* usually 1/sqrt(D) */
    int32_t causal; /* query i sees keys 0..i (CLIP) */
} kiln_attention_params;
/* The optional fourth source, bias (H,Tq,Tk), is T5's relative-position
 * bias: added to the scaled scores of every batch element, so the model
 * computes it once per forward rather than once per batch element. */

/* Flux's rotary position embedding (diffusers' apply_rotary_emb, use_real,
 * unbind dim -1): freqs (T,D/2,2) holds the cos and sin of pair i of token
 * t, the same for every batch element and head; D is even. */
typedef struct kiln_rope_params { int32_t B, T, H, D; } kiln_rope_params;

typedef struct kiln_softmax_params { int32_t M, N; } kiln_softmax_params;
typedef struct kiln_silu_params { int32_t n; } kiln_silu_params;
typedef struct kiln_sigmoid_params { int32_t n; } kiln_sigmoid_params;
/* Activations A1111's hypernetworks put between their linear layers that no
 * other op computes (its "swish" is torch's Hardswish). kind is a
 * kiln_activation_kind, an int32_t here so that the struct stays
 * push-constant shaped. */
typedef enum kiln_activation_kind {
    KILN_ACTIVATION_TANH,
    KILN_ACTIVATION_ELU,
    KILN_ACTIVATION_HARDSWISH,
    KILN_ACTIVATION_SOFTSIGN,
    KILN_ACTIVATION_MISH,
    KILN_ACTIVATION_COUNT
} kiln_activation_kind;
typedef struct kiln_activation_params { int32_t n; int32_t kind; } kiln_activation_params;
typedef struct kiln_gelu_params { int32_t n; } kiln_gelu_params;
typedef struct kiln_quick_gelu_params { int32_t n; } kiln_quick_gelu_params;
typedef struct kiln_gelu_tanh_params { int32_t n; } kiln_gelu_tanh_params;
typedef struct kiln_geglu_params { int32_t M, N; } kiln_geglu_params;
typedef struct kiln_add_params { int32_t n; } kiln_add_params;
/* A DiT block's gated residual: x + (mod[b,gate] + table[gate]) * y, gate a
 * row (0..K-1) of mod (B,K,C) and of the optional table (K,C). */
typedef struct kiln_gated_add_params { int32_t B, T, C, K, gate; } kiln_gated_add_params;
typedef struct kiln_mul_params { int32_t n; } kiln_mul_params;
typedef struct kiln_scale_params { int32_t n; float s; } kiln_scale_params;
typedef struct kiln_leaky_relu_params { int32_t n; float slope; } kiln_leaky_relu_params;
typedef struct kiln_add_channel_bias_params { int32_t N, C, HW; } kiln_add_channel_bias_params;
typedef struct kiln_concat_channels_params { int32_t N, Ca, Cb, HW; } kiln_concat_channels_params;
/* The VAE encoder's downsampling pads only bottom and right before a stride-2 conv. */
typedef struct kiln_pad2d_params { int32_t N, C, H, W, top, bottom, left, right; } kiln_pad2d_params;
/* OH is 2H, or 2H - 1 where a UNet level of odd size gets its skip's size
 * back: torch's nearest to that size takes row floor(i * H / OH), which is
 * i / 2 for both (the same for OW). */
typedef struct kiln_upsample_nearest2x_params { int32_t N, C, H, W, OH, OW; } kiln_upsample_nearest2x_params;

typedef struct kiln_timestep_embedding_params {
    int32_t N, dim;
    int32_t flip_sin_to_cos; /* SD's UNet: cos half first */
    float freq_shift;        /* diffusers' downscale_freq_shift (0 for SD) */
    float max_period;        /* 10000 */
} kiln_timestep_embedding_params;

typedef struct kiln_transpose_params { int32_t B, R, C; } kiln_transpose_params;
typedef struct kiln_embedding_params { int32_t M, V, D; } kiln_embedding_params;

/* FreeU (ComfyUI's FreeU and FreeU_V2 nodes) on a UNet decoder block's
 * input: its first C/2 channels (C/2 rounded down) scaled by b, or with v2
 * by (b - 1) m + 1 where m is each pixel's mean over all C channels,
 * rescaled per image to [0, 1] by the means' min and max (an image whose
 * means are all equal has no such rescaling: 0/0, as in torch). */
typedef struct kiln_freeu_backbone_params { int32_t N, C, HW; float b; int32_t v2; } kiln_freeu_backbone_params;
/* FreeU's filter on the skip it concatenates: each (H,W) plane's 2D
 * spectrum, centred as fftshift centres it, scaled by s on the 2x2 square
 * at its middle (threshold 1), back to space, real part. The square holds
 * the frequencies 0 and -1 of each axis (0 alone on an axis of 1). */
typedef struct kiln_fourier_filter_params { int32_t N, C, H, W; float s; } kiln_fourier_filter_params;
/* Each (H,W) plane to (OH,OW) as runtime/resample.c's kiln_resample resizes
 * it (torch's interpolate: latents in ComfyUI's common_upscale, Kohya's Deep
 * Shrink on UNet features and its UNet's upsamplers to a size other than
 * twice); method is any kiln_resample_method (resample.h), an int32_t here
 * so that the struct stays push-constant shaped. */
typedef struct kiln_resize_params { int32_t N, C, H, W, OH, OW; int32_t method; } kiln_resize_params;
/* One pass of ComfyUI's bislerp (runtime/resample.c's kiln_bislerp, which
 * Deep Shrink's bislerp scaling runs on UNet features): the W columns
 * (axis 0) or the H rows (axis 1) of each image become `out`, every output
 * pixel the kiln_slerp of its two source pixels' vectors of C channels at
 * kiln_bislerp_tap's ratio. The channels are slerped together, so unlike
 * resize the op cannot treat planes alone. */
typedef struct kiln_slerp_resize_params { int32_t N, C, H, W, out, axis; } kiln_slerp_resize_params;
/* Real-ESRGAN's compact upscaler (SRVGGNetCompact): a PReLU after each conv,
 * one learnt slope per channel, and a pixel shuffle at the end turning its
 * C r^2 channels into an image r times the size; C counts output channels. */
typedef struct kiln_prelu_params { int32_t N, C, HW; } kiln_prelu_params;
typedef struct kiln_pixel_shuffle_params { int32_t N, C, H, W, r; } kiln_pixel_shuffle_params;
/* T2I-Adapters' downsampling: torch's avg_pool2d(x, 2, 2, padding=(pad_h,
 * pad_w)) with its defaults (floor sizes, padding counted in the divisor, so
 * always over 4). pad_h and pad_w are 0 or 1, torch's limit of half the
 * kernel; OH = (H + 2 pad_h) / 2, OW = (W + 2 pad_w) / 2. */
typedef struct kiln_avg_pool2x2_params { int32_t N, C, H, W, pad_h, pad_w; } kiln_avg_pool2x2_params;

typedef enum kiln_op_id {
#define KILN_OP(name, nsrc, doc) KILN_OP_##name,
#include "ops.def"
#undef KILN_OP
    KILN_OP_COUNT
} kiln_op_id;

extern const char *const kiln_op_names[KILN_OP_COUNT];
extern const int kiln_op_nsrc[KILN_OP_COUNT];

/* Checks that src/dst element counts and dtypes agree with the parameters.
 * Returns KILN_ERR_INVALID_ARG naming the op and the operand at fault. */
#define KILN_OP(name, nsrc, doc)                                              \
    kiln_status kiln_check_##name(const kiln_##name##_params *p,              \
                                  const kiln_tensor *const *src, const kiln_tensor *dst);
#include "ops.def"
#undef KILN_OP

#endif
