#include "ops.h"

#include "resample.h"
#include "status.h"

const char *const kiln_op_names[KILN_OP_COUNT] = {
#define KILN_OP(name, nsrc, doc) #name,
#include "ops.def"
#undef KILN_OP
};

const int kiln_op_nsrc[KILN_OP_COUNT] = {
#define KILN_OP(name, nsrc, doc) nsrc,
#include "ops.def"
#undef KILN_OP
};

static bool is_weight_dtype(kiln_dtype d)
{
    return d == KILN_F32 || d == KILN_F16 || d == KILN_BF16 || d == KILN_F8_E4M3 || d == KILN_F8_E5M2;
}

/* One operand: present, of the expected element count, and an activation
 * (f32) or a weight (any float storage). */
static kiln_status check_operand(const char *op, const char *what, const kiln_tensor *t, int64_t numel,
                                 bool weight)
{
    if (!t) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s is missing", op, what);
    if (weight ? !is_weight_dtype(t->dtype) : t->dtype != KILN_F32)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s has dtype %s", op, what, kiln_dtype_name(t->dtype));
    if (kiln_tensor_numel(t) != numel)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s has %lld elements, the parameters say %lld", op, what,
                         (long long)kiln_tensor_numel(t), (long long)numel);
    return KILN_OK;
}

static kiln_status check_positive(const char *op, int n, const int32_t *dims)
{
    for (int i = 0; i < n; i++)
        if (dims[i] <= 0) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: dimension %d is %d", op, i, dims[i]);
    return KILN_OK;
}

#define ACT(what, t, n) TRY(check_operand(op, what, t, n, false))
#define WEIGHT(what, t, n) TRY(check_operand(op, what, t, n, true))
#define POSITIVE(...) TRY(check_positive(op, sizeof((int32_t[]){__VA_ARGS__}) / 4, (int32_t[]){__VA_ARGS__}))

kiln_status kiln_check_matmul(const kiln_matmul_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "matmul";
    POSITIVE(p->M, p->N, p->K);
    ACT("x", src[0], (int64_t)p->M * p->K);
    /* a quantized w (GGUF's blocks) in rows of whole blocks */
    if (src[1] && kiln_dtype_is_quantized(src[1]->dtype)) {
        if (p->K % kiln_dtype_block(src[1]->dtype))
            return kiln_fail(KILN_ERR_INVALID_ARG, "matmul: rows of %d values are not whole %s blocks of %d", p->K,
                             kiln_dtype_name(src[1]->dtype), kiln_dtype_block(src[1]->dtype));
        if (kiln_tensor_numel(src[1]) != (int64_t)p->N * p->K)
            return kiln_fail(KILN_ERR_INVALID_ARG, "matmul: w has %lld elements, the parameters say %lld",
                             (long long)kiln_tensor_numel(src[1]), (long long)p->N * p->K);
    } else {
        WEIGHT("w", src[1], (int64_t)p->N * p->K);
    }
    if (p->has_bias) WEIGHT("bias", src[2], p->N);
    ACT("y", dst, (int64_t)p->M * p->N);
    return KILN_OK;
}

kiln_status kiln_check_conv2d(const kiln_conv2d_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "conv2d";
    POSITIVE(p->N, p->C, p->H, p->W, p->O, p->KH, p->KW, p->stride, p->OH, p->OW);
    if (p->pad < 0) return kiln_fail(KILN_ERR_INVALID_ARG, "conv2d: negative padding");
    if (p->OH != (p->H + 2 * p->pad - p->KH) / p->stride + 1 || p->OW != (p->W + 2 * p->pad - p->KW) / p->stride + 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "conv2d: output %dx%d does not follow from input %dx%d", p->OH,
                         p->OW, p->H, p->W);
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    WEIGHT("w", src[1], (int64_t)p->O * p->C * p->KH * p->KW);
    WEIGHT("bias", src[2], p->O);
    ACT("y", dst, (int64_t)p->N * p->O * p->OH * p->OW);
    return KILN_OK;
}

kiln_status kiln_check_group_norm(const kiln_group_norm_params *p, const kiln_tensor *const *src,
                                  const kiln_tensor *dst)
{
    const char *op = "group_norm";
    POSITIVE(p->N, p->C, p->HW, p->groups);
    if (p->C % p->groups) return kiln_fail(KILN_ERR_INVALID_ARG, "group_norm: %d channels in %d groups", p->C, p->groups);
    ACT("x", src[0], (int64_t)p->N * p->C * p->HW);
    WEIGHT("gamma", src[1], p->C);
    WEIGHT("beta", src[2], p->C);
    ACT("y", dst, (int64_t)p->N * p->C * p->HW);
    return KILN_OK;
}

kiln_status kiln_check_layer_norm(const kiln_layer_norm_params *p, const kiln_tensor *const *src,
                                  const kiln_tensor *dst)
{
    const char *op = "layer_norm";
    POSITIVE(p->M, p->D);
    ACT("x", src[0], (int64_t)p->M * p->D);
    WEIGHT("gamma", src[1], p->D);
    WEIGHT("beta", src[2], p->D);
    ACT("y", dst, (int64_t)p->M * p->D);
    return KILN_OK;
}

kiln_status kiln_check_rms_norm(const kiln_rms_norm_params *p, const kiln_tensor *const *src,
                                const kiln_tensor *dst)
{
    const char *op = "rms_norm";
    POSITIVE(p->M, p->D);
    ACT("x", src[0], (int64_t)p->M * p->D);
    WEIGHT("gamma", src[1], p->D);
    ACT("y", dst, (int64_t)p->M * p->D);
    return KILN_OK;
}

/* A row index into the modulation (B,K,C) and its table (K,C). */
static kiln_status check_row(const char *op, const char *what, int32_t row, int32_t K)
{
    if (row < 0 || row >= K) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s row %d outside 0..%d", op, what, row, K - 1);
    return KILN_OK;
}

kiln_status kiln_check_ada_layer_norm(const kiln_ada_layer_norm_params *p, const kiln_tensor *const *src,
                                      const kiln_tensor *dst)
{
    const char *op = "ada_layer_norm";
    POSITIVE(p->B, p->T, p->C, p->K);
    TRY(check_row(op, "shift", p->shift, p->K));
    TRY(check_row(op, "scale", p->scale, p->K));
    ACT("x", src[0], (int64_t)p->B * p->T * p->C);
    ACT("mod", src[1], (int64_t)p->B * p->K * p->C);
    if (src[2]) WEIGHT("table", src[2], (int64_t)p->K * p->C);
    ACT("y", dst, (int64_t)p->B * p->T * p->C);
    return KILN_OK;
}

kiln_status kiln_check_attention(const kiln_attention_params *p, const kiln_tensor *const *src,
                                 const kiln_tensor *dst)
{
    const char *op = "attention";
    POSITIVE(p->B, p->H, p->Tq, p->Tk, p->D);
    if (p->causal && p->Tq != p->Tk) return kiln_fail(KILN_ERR_INVALID_ARG, "attention: causal needs Tq == Tk");
    ACT("q", src[0], (int64_t)p->B * p->Tq * p->H * p->D);
    ACT("k", src[1], (int64_t)p->B * p->Tk * p->H * p->D);
    ACT("v", src[2], (int64_t)p->B * p->Tk * p->H * p->D);
    if (src[3]) ACT("bias", src[3], (int64_t)p->H * p->Tq * p->Tk);
    ACT("o", dst, (int64_t)p->B * p->Tq * p->H * p->D);
    return KILN_OK;
}

kiln_status kiln_check_rope(const kiln_rope_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "rope";
    POSITIVE(p->B, p->T, p->H, p->D);
    if (p->D % 2) return kiln_fail(KILN_ERR_INVALID_ARG, "rope: head dim %d is odd: it turns pairs", p->D);
    ACT("x", src[0], (int64_t)p->B * p->T * p->H * p->D);
    ACT("freqs", src[1], (int64_t)p->T * p->D); /* (T,D/2,2) */
    ACT("y", dst, (int64_t)p->B * p->T * p->H * p->D);
    return KILN_OK;
}

kiln_status kiln_check_softmax(const kiln_softmax_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "softmax";
    POSITIVE(p->M, p->N);
    ACT("x", src[0], (int64_t)p->M * p->N);
    ACT("y", dst, (int64_t)p->M * p->N);
    return KILN_OK;
}

static kiln_status check_unary(const char *op, int32_t n, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    POSITIVE(n);
    ACT("x", src[0], n);
    ACT("y", dst, n);
    return KILN_OK;
}

kiln_status kiln_check_silu(const kiln_silu_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    return check_unary("silu", p->n, src, dst);
}

kiln_status kiln_check_sigmoid(const kiln_sigmoid_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    return check_unary("sigmoid", p->n, src, dst);
}

kiln_status kiln_check_activation(const kiln_activation_params *p, const kiln_tensor *const *src,
                                  const kiln_tensor *dst)
{
    if (p->kind < 0 || p->kind >= KILN_ACTIVATION_COUNT)
        return kiln_fail(KILN_ERR_INVALID_ARG, "activation: kind %d outside 0..%d", p->kind, KILN_ACTIVATION_COUNT - 1);
    return check_unary("activation", p->n, src, dst);
}

kiln_status kiln_check_gelu(const kiln_gelu_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    return check_unary("gelu", p->n, src, dst);
}

kiln_status kiln_check_quick_gelu(const kiln_quick_gelu_params *p, const kiln_tensor *const *src,
                                  const kiln_tensor *dst)
{
    return check_unary("quick_gelu", p->n, src, dst);
}

kiln_status kiln_check_scale(const kiln_scale_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    return check_unary("scale", p->n, src, dst);
}

kiln_status kiln_check_leaky_relu(const kiln_leaky_relu_params *p, const kiln_tensor *const *src,
                                  const kiln_tensor *dst)
{
    return check_unary("leaky_relu", p->n, src, dst);
}

kiln_status kiln_check_gelu_tanh(const kiln_gelu_tanh_params *p, const kiln_tensor *const *src,
                                 const kiln_tensor *dst)
{
    return check_unary("gelu_tanh", p->n, src, dst);
}

kiln_status kiln_check_geglu(const kiln_geglu_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "geglu";
    POSITIVE(p->M, p->N);
    ACT("x", src[0], (int64_t)p->M * 2 * p->N);
    ACT("y", dst, (int64_t)p->M * p->N);
    return KILN_OK;
}

static kiln_status check_binary(const char *op, int32_t n, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    POSITIVE(n);
    ACT("a", src[0], n);
    ACT("b", src[1], n);
    ACT("y", dst, n);
    return KILN_OK;
}

kiln_status kiln_check_add(const kiln_add_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    return check_binary("add", p->n, src, dst);
}

kiln_status kiln_check_gated_add(const kiln_gated_add_params *p, const kiln_tensor *const *src,
                                 const kiln_tensor *dst)
{
    const char *op = "gated_add";
    POSITIVE(p->B, p->T, p->C, p->K);
    TRY(check_row(op, "gate", p->gate, p->K));
    ACT("x", src[0], (int64_t)p->B * p->T * p->C);
    ACT("y", src[1], (int64_t)p->B * p->T * p->C);
    ACT("mod", src[2], (int64_t)p->B * p->K * p->C);
    if (src[3]) WEIGHT("table", src[3], (int64_t)p->K * p->C);
    ACT("out", dst, (int64_t)p->B * p->T * p->C);
    return KILN_OK;
}

kiln_status kiln_check_mul(const kiln_mul_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    return check_binary("mul", p->n, src, dst);
}

kiln_status kiln_check_add_channel_bias(const kiln_add_channel_bias_params *p, const kiln_tensor *const *src,
                                        const kiln_tensor *dst)
{
    const char *op = "add_channel_bias";
    POSITIVE(p->N, p->C, p->HW);
    ACT("x", src[0], (int64_t)p->N * p->C * p->HW);
    ACT("b", src[1], (int64_t)p->N * p->C);
    ACT("y", dst, (int64_t)p->N * p->C * p->HW);
    return KILN_OK;
}

kiln_status kiln_check_concat_channels(const kiln_concat_channels_params *p, const kiln_tensor *const *src,
                                       const kiln_tensor *dst)
{
    const char *op = "concat_channels";
    POSITIVE(p->N, p->Ca, p->Cb, p->HW);
    ACT("a", src[0], (int64_t)p->N * p->Ca * p->HW);
    ACT("b", src[1], (int64_t)p->N * p->Cb * p->HW);
    ACT("y", dst, (int64_t)p->N * (p->Ca + p->Cb) * p->HW);
    return KILN_OK;
}

kiln_status kiln_check_freeu_backbone(const kiln_freeu_backbone_params *p, const kiln_tensor *const *src,
                                      const kiln_tensor *dst)
{
    const char *op = "freeu_backbone";
    POSITIVE(p->N, p->C, p->HW);
    ACT("x", src[0], (int64_t)p->N * p->C * p->HW);
    ACT("y", dst, (int64_t)p->N * p->C * p->HW);
    return KILN_OK;
}

kiln_status kiln_check_fourier_filter(const kiln_fourier_filter_params *p, const kiln_tensor *const *src,
                                      const kiln_tensor *dst)
{
    const char *op = "fourier_filter";
    POSITIVE(p->N, p->C, p->H, p->W);
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    ACT("y", dst, (int64_t)p->N * p->C * p->H * p->W);
    return KILN_OK;
}

kiln_status kiln_check_resize(const kiln_resize_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "resize";
    POSITIVE(p->N, p->C, p->H, p->W, p->OH, p->OW);
    if (p->method != KILN_RESAMPLE_NEAREST_EXACT && p->method != KILN_RESAMPLE_BILINEAR &&
        p->method != KILN_RESAMPLE_BICUBIC && p->method != KILN_RESAMPLE_NEAREST && p->method != KILN_RESAMPLE_AREA)
        return kiln_fail(KILN_ERR_INVALID_ARG, "resize: method %d is none of nearest-exact, bilinear, bicubic, nearest, "
                         "area", p->method);
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    ACT("y", dst, (int64_t)p->N * p->C * p->OH * p->OW);
    return KILN_OK;
}

kiln_status kiln_check_slerp_resize(const kiln_slerp_resize_params *p, const kiln_tensor *const *src,
                                    const kiln_tensor *dst)
{
    const char *op = "slerp_resize";
    if (p->axis != 0 && p->axis != 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "slerp_resize: axis %d is neither 0 (the width) nor 1 (the height)",
                         p->axis);
    if (p->out < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "slerp_resize: out %d is not a size", p->out);
    POSITIVE(p->N, p->C, p->H, p->W);
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    ACT("y", dst, (int64_t)p->N * p->C * (p->axis ? (int64_t)p->out * p->W : (int64_t)p->H * p->out));
    return KILN_OK;
}

kiln_status kiln_check_prelu(const kiln_prelu_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "prelu";
    POSITIVE(p->N, p->C, p->HW);
    ACT("x", src[0], (int64_t)p->N * p->C * p->HW);
    WEIGHT("slope", src[1], p->C);
    ACT("y", dst, (int64_t)p->N * p->C * p->HW);
    return KILN_OK;
}

kiln_status kiln_check_pixel_shuffle(const kiln_pixel_shuffle_params *p, const kiln_tensor *const *src,
                                     const kiln_tensor *dst)
{
    const char *op = "pixel_shuffle";
    POSITIVE(p->N, p->C, p->H, p->W, p->r);
    int64_t n = (int64_t)p->N * p->C * p->r * p->r * p->H * p->W;
    ACT("x", src[0], n);
    ACT("y", dst, n);
    return KILN_OK;
}

kiln_status kiln_check_avg_pool2x2(const kiln_avg_pool2x2_params *p, const kiln_tensor *const *src,
                                   const kiln_tensor *dst)
{
    const char *op = "avg_pool2x2";
    POSITIVE(p->N, p->C, p->H, p->W);
    if (p->pad_h < 0 || p->pad_h > 1 || p->pad_w < 0 || p->pad_w > 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "avg_pool2x2: padding %d,%d is not 0 or 1 (at most half the kernel)",
                         p->pad_h, p->pad_w);
    if (p->H + 2 * p->pad_h < 2 || p->W + 2 * p->pad_w < 2)
        return kiln_fail(KILN_ERR_INVALID_ARG, "avg_pool2x2: %dx%d padded by %d,%d holds no 2x2 window", p->H, p->W,
                         p->pad_h, p->pad_w);
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    ACT("y", dst, (int64_t)p->N * p->C * ((p->H + 2 * p->pad_h) / 2) * ((p->W + 2 * p->pad_w) / 2));
    return KILN_OK;
}

kiln_status kiln_check_pad2d(const kiln_pad2d_params *p, const kiln_tensor *const *src, const kiln_tensor *dst)
{
    const char *op = "pad2d";
    POSITIVE(p->N, p->C, p->H, p->W);
    if (p->top < 0 || p->bottom < 0 || p->left < 0 || p->right < 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "pad2d: negative padding");
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    ACT("y", dst, (int64_t)p->N * p->C * (p->top + p->H + p->bottom) * (p->left + p->W + p->right));
    return KILN_OK;
}

kiln_status kiln_check_upsample_nearest2x(const kiln_upsample_nearest2x_params *p, const kiln_tensor *const *src,
                                          const kiln_tensor *dst)
{
    const char *op = "upsample_nearest2x";
    POSITIVE(p->N, p->C, p->H, p->W);
    if ((p->OH != 2 * p->H && p->OH != 2 * p->H - 1) || (p->OW != 2 * p->W && p->OW != 2 * p->W - 1))
        return kiln_fail(KILN_ERR_INVALID_ARG, "upsample_nearest2x: %dx%d from %dx%d is not twice the size (or one less)",
                         p->OW, p->OH, p->W, p->H);
    ACT("x", src[0], (int64_t)p->N * p->C * p->H * p->W);
    ACT("y", dst, (int64_t)p->N * p->C * p->OH * p->OW);
    return KILN_OK;
}

kiln_status kiln_check_timestep_embedding(const kiln_timestep_embedding_params *p, const kiln_tensor *const *src,
                                          const kiln_tensor *dst)
{
    const char *op = "timestep_embedding";
    POSITIVE(p->N, p->dim);
    if (p->dim % 2) return kiln_fail(KILN_ERR_INVALID_ARG, "timestep_embedding: odd dim %d", p->dim);
    ACT("t", src[0], p->N);
    ACT("y", dst, (int64_t)p->N * p->dim);
    return KILN_OK;
}

kiln_status kiln_check_transpose(const kiln_transpose_params *p, const kiln_tensor *const *src,
                                 const kiln_tensor *dst)
{
    const char *op = "transpose";
    POSITIVE(p->B, p->R, p->C);
    ACT("x", src[0], (int64_t)p->B * p->R * p->C);
    ACT("y", dst, (int64_t)p->B * p->R * p->C);
    return KILN_OK;
}

kiln_status kiln_check_embedding(const kiln_embedding_params *p, const kiln_tensor *const *src,
                                 const kiln_tensor *dst)
{
    const char *op = "embedding";
    POSITIVE(p->M, p->V, p->D);
    if (!src[0] || src[0]->dtype != KILN_I32 || kiln_tensor_numel(src[0]) != p->M)
        return kiln_fail(KILN_ERR_INVALID_ARG, "embedding: ids must be %d i32 values", p->M);
    WEIGHT("table", src[1], (int64_t)p->V * p->D);
    ACT("y", dst, (int64_t)p->M * p->D);
    return KILN_OK;
}
