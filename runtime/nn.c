#include "nn.h"

#include <math.h>

#include "status.h"

/* The last dim, and the product of the others. */
static int64_t last_dim(const tensor *t) { return t->shape[t->ndim - 1]; }
static int64_t rows(const tensor *t) { return kiln_tensor_numel(t) / last_dim(t); }

static kiln_status new_like(kiln_graph *g, const tensor *x, tensor **y)
{
    return kiln_graph_tensor(g, y, x->ndim, x->shape);
}

kiln_status nn_conv2d(kiln_graph *g, const tensor *x, const tensor *w, const tensor *b, int stride, int pad,
                      tensor **y)
{
    kiln_conv2d_params p = {
        .N = (int32_t)x->shape[0], .C = (int32_t)x->shape[1], .H = (int32_t)x->shape[2], .W = (int32_t)x->shape[3],
        .O = (int32_t)w->shape[0], .KH = (int32_t)w->shape[2], .KW = (int32_t)w->shape[3],
        .stride = stride, .pad = pad,
    };
    p.OH = (p.H + 2 * pad - p.KH) / stride + 1;
    p.OW = (p.W + 2 * pad - p.KW) / stride + 1;
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.O, p.OH, p.OW}));
    return kiln_run_conv2d(g, &p, (const tensor *[]){x, w, b}, *y);
}

kiln_status nn_linear(kiln_graph *g, const tensor *x, const tensor *w, const tensor *b, tensor **y)
{
    kiln_matmul_params p = {.M = (int32_t)rows(x), .N = (int32_t)w->shape[0], .K = (int32_t)last_dim(x),
                            .has_bias = b != NULL};
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = p.N;
    TRY(kiln_graph_tensor(g, y, x->ndim, shape));
    return kiln_run_matmul(g, &p, (const tensor *[]){x, w, b}, *y);
}

kiln_status nn_group_norm(kiln_graph *g, const tensor *x, const tensor *gamma, const tensor *beta, int groups,
                          float eps, bool silu, tensor **y)
{
    int64_t C = x->shape[1];
    kiln_group_norm_params p = {.N = (int32_t)x->shape[0], .C = (int32_t)C,
                                .HW = (int32_t)(kiln_tensor_numel(x) / (x->shape[0] * C)), .groups = groups,
                                .eps = eps, .silu = silu};
    TRY(new_like(g, x, y));
    return kiln_run_group_norm(g, &p, (const tensor *[]){x, gamma, beta}, *y);
}

kiln_status nn_layer_norm(kiln_graph *g, const tensor *x, const tensor *gamma, const tensor *beta, float eps,
                          tensor **y)
{
    kiln_layer_norm_params p = {.M = (int32_t)rows(x), .D = (int32_t)last_dim(x), .eps = eps};
    TRY(new_like(g, x, y));
    return kiln_run_layer_norm(g, &p, (const tensor *[]){x, gamma, beta}, *y);
}

kiln_status nn_rms_norm(kiln_graph *g, const tensor *x, const tensor *gamma, float eps, tensor **y)
{
    kiln_rms_norm_params p = {.M = (int32_t)rows(x), .D = (int32_t)last_dim(x), .eps = eps};
    TRY(new_like(g, x, y));
    return kiln_run_rms_norm(g, &p, (const tensor *[]){x, gamma}, *y);
}

/* K, the rows of a modulation (B,K*C) or (B,K,C) for x (B,...,C), checked
 * against the table (K,C) when there is one. */
static kiln_status modulation_rows(const char *layer, const tensor *x, const tensor *mod, const tensor *table,
                                   int32_t *K)
{
    int64_t B = x->shape[0], C = last_dim(x), n = kiln_tensor_numel(mod);
    if (mod->shape[0] != B || n % (B * C))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: modulation of %lld values for a batch of %lld x %lld channels",
                         layer, (long long)n, (long long)B, (long long)C);
    *K = (int32_t)(n / (B * C));
    if (table && (table->ndim != 2 || table->shape[0] != *K || table->shape[1] != C))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: table of %d dims (%lld x ...) for %d rows of %lld channels",
                         layer, table->ndim, (long long)table->shape[0], *K, (long long)C);
    return KILN_OK;
}

kiln_status nn_ada_layer_norm(kiln_graph *g, const tensor *x, const tensor *mod, const tensor *table, int shift,
                              int scale, float eps, tensor **y)
{
    kiln_ada_layer_norm_params p = {.B = (int32_t)x->shape[0], .C = (int32_t)last_dim(x), .shift = shift,
                                    .scale = scale, .eps = eps};
    p.T = (int32_t)(kiln_tensor_numel(x) / ((int64_t)p.B * p.C));
    TRY(modulation_rows("ada_layer_norm", x, mod, table, &p.K));
    TRY(new_like(g, x, y));
    return kiln_run_ada_layer_norm(g, &p, (const tensor *[]){x, mod, table}, *y);
}

kiln_status nn_rope(kiln_graph *g, const tensor *x, const tensor *freqs, int heads, tensor **y)
{
    /* the op's check sees only element counts: the layout is checked here */
    int64_t width = x->ndim == 3 ? last_dim(x) : 0;
    if (heads <= 0 || width <= 0 || width % heads || (width / heads) % 2)
        return kiln_fail(KILN_ERR_INVALID_ARG, "rope: x of %d dims (last %lld) is not (B,T,H*D) for %d heads of an "
                         "even head dim", x->ndim, (long long)last_dim(x), heads);
    kiln_rope_params p = {.B = (int32_t)x->shape[0], .T = (int32_t)x->shape[1], .H = heads,
                          .D = (int32_t)(width / heads)};
    if (kiln_tensor_numel(freqs) != (int64_t)p.T * p.D)
        return kiln_fail(KILN_ERR_INVALID_ARG, "rope: freqs of %lld values for %d tokens of head dim %d (T*D = %lld)",
                         (long long)kiln_tensor_numel(freqs), p.T, p.D, (long long)p.T * p.D);
    TRY(new_like(g, x, y));
    return kiln_run_rope(g, &p, (const tensor *[]){x, freqs}, *y);
}

kiln_status nn_attention_to(kiln_graph *g, const tensor *q, const tensor *k, const tensor *v, const tensor *bias,
                            int heads, float scale, tensor *o)
{
    kiln_attention_params p = {.B = (int32_t)q->shape[0], .H = heads, .Tq = (int32_t)q->shape[1],
                               .Tk = (int32_t)k->shape[1], .D = (int32_t)(last_dim(q) / heads), .scale = scale};
    return kiln_run_attention(g, &p, (const tensor *[]){q, k, v, bias}, o);
}

kiln_status nn_attention_biased(kiln_graph *g, const tensor *q, const tensor *k, const tensor *v, const tensor *bias,
                                int heads, float scale, tensor **o)
{
    TRY(new_like(g, q, o));
    return nn_attention_to(g, q, k, v, bias, heads, scale, *o);
}

kiln_status nn_attention(kiln_graph *g, const tensor *q, const tensor *k, const tensor *v, int heads, bool causal,
                         tensor **o)
{
    int64_t D = last_dim(q) / heads;
    kiln_attention_params p = {.B = (int32_t)q->shape[0], .H = heads, .Tq = (int32_t)q->shape[1],
                               .Tk = (int32_t)k->shape[1], .D = (int32_t)D, .scale = 1.0f / sqrtf((float)D),
                               .causal = causal};
    TRY(new_like(g, q, o));
    return kiln_run_attention(g, &p, (const tensor *[]){q, k, v, NULL}, *o);
}

kiln_status nn_add(kiln_graph *g, const tensor *a, const tensor *b, tensor **y)
{
    TRY(new_like(g, a, y));
    return kiln_run_add(g, &(kiln_add_params){(int32_t)kiln_tensor_numel(a)}, (const tensor *[]){a, b}, *y);
}

kiln_status nn_mul(kiln_graph *g, const tensor *a, const tensor *b, tensor **y)
{
    TRY(new_like(g, a, y));
    return kiln_run_mul(g, &(kiln_mul_params){(int32_t)kiln_tensor_numel(a)}, (const tensor *[]){a, b}, *y);
}

kiln_status nn_scale(kiln_graph *g, const tensor *a, float s, tensor **y)
{
    TRY(new_like(g, a, y));
    return kiln_run_scale(g, &(kiln_scale_params){(int32_t)kiln_tensor_numel(a), s}, (const tensor *[]){a}, *y);
}

kiln_status nn_silu(kiln_graph *g, const tensor *x, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_silu(g, &(kiln_silu_params){(int32_t)kiln_tensor_numel(x)}, (const tensor *[]){x}, *y);
}

kiln_status nn_sigmoid(kiln_graph *g, const tensor *x, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_sigmoid(g, &(kiln_sigmoid_params){(int32_t)kiln_tensor_numel(x)}, (const tensor *[]){x}, *y);
}

kiln_status nn_activation(kiln_graph *g, const tensor *x, kiln_activation_kind kind, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_activation(g, &(kiln_activation_params){(int32_t)kiln_tensor_numel(x), (int32_t)kind},
                               (const tensor *[]){x}, *y);
}

kiln_status nn_leaky_relu(kiln_graph *g, const tensor *x, float slope, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_leaky_relu(g, &(kiln_leaky_relu_params){(int32_t)kiln_tensor_numel(x), slope},
                               (const tensor *[]){x}, *y);
}

kiln_status nn_gelu(kiln_graph *g, const tensor *x, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_gelu(g, &(kiln_gelu_params){(int32_t)kiln_tensor_numel(x)}, (const tensor *[]){x}, *y);
}

kiln_status nn_gelu_tanh(kiln_graph *g, const tensor *x, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_gelu_tanh(g, &(kiln_gelu_tanh_params){(int32_t)kiln_tensor_numel(x)}, (const tensor *[]){x}, *y);
}

kiln_status nn_quick_gelu(kiln_graph *g, const tensor *x, tensor **y)
{
    TRY(new_like(g, x, y));
    return kiln_run_quick_gelu(g, &(kiln_quick_gelu_params){(int32_t)kiln_tensor_numel(x)}, (const tensor *[]){x},
                               *y);
}

kiln_status nn_geglu(kiln_graph *g, const tensor *x, tensor **y)
{
    kiln_geglu_params p = {.M = (int32_t)rows(x), .N = (int32_t)(last_dim(x) / 2)};
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = p.N;
    TRY(kiln_graph_tensor(g, y, x->ndim, shape));
    return kiln_run_geglu(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_add_channel_bias(kiln_graph *g, const tensor *x, const tensor *b, tensor **y)
{
    kiln_add_channel_bias_params p = {.N = (int32_t)x->shape[0], .C = (int32_t)x->shape[1],
                                      .HW = (int32_t)(x->shape[2] * x->shape[3])};
    TRY(new_like(g, x, y));
    return kiln_run_add_channel_bias(g, &p, (const tensor *[]){x, b}, *y);
}

kiln_status nn_concat_channels(kiln_graph *g, const tensor *a, const tensor *b, tensor **y)
{
    kiln_concat_channels_params p = {.N = (int32_t)a->shape[0], .Ca = (int32_t)a->shape[1],
                                     .Cb = (int32_t)b->shape[1], .HW = (int32_t)(a->shape[2] * a->shape[3])};
    if (b->shape[2] != a->shape[2] || b->shape[3] != a->shape[3])
        return kiln_fail(KILN_ERR_INVALID_ARG, "concat: %lldx%lld and %lldx%lld images", (long long)a->shape[2],
                         (long long)a->shape[3], (long long)b->shape[2], (long long)b->shape[3]);
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.Ca + p.Cb, a->shape[2], a->shape[3]}));
    return kiln_run_concat_channels(g, &p, (const tensor *[]){a, b}, *y);
}

kiln_status nn_concat_tokens(kiln_graph *g, const tensor *a, const tensor *b, tensor **y)
{
    /* tokens as channels of (B,T,1,D) */
    tensor a4 = *a, b4 = *b;
    a4.ndim = b4.ndim = 4;
    a4.shape[2] = b4.shape[2] = 1;
    a4.shape[3] = b4.shape[3] = a->shape[2];
    TRY(nn_concat_channels(g, &a4, &b4, y));
    (*y)->ndim = 3, (*y)->shape[2] = a->shape[2];
    return KILN_OK;
}

kiln_status nn_add_into(kiln_graph *g, tensor **x, tensor *delta)
{
    tensor *sum;
    TRY(nn_add(g, *x, delta, &sum));
    kiln_graph_release(g, delta);
    nn_drop(g, x);
    *x = sum;
    return KILN_OK;
}

kiln_status nn_gated_add_into(kiln_graph *g, tensor **x, tensor *y, const tensor *mod, const tensor *table, int gate)
{
    kiln_gated_add_params p = {.B = (int32_t)(*x)->shape[0], .C = (int32_t)last_dim(*x), .gate = gate};
    p.T = (int32_t)(kiln_tensor_numel(*x) / ((int64_t)p.B * p.C));
    TRY(modulation_rows("gated_add", *x, mod, table, &p.K));
    tensor *sum;
    TRY(new_like(g, *x, &sum));
    TRY(kiln_run_gated_add(g, &p, (const tensor *[]){*x, y, mod, table}, sum));
    kiln_graph_release(g, y);
    nn_drop(g, x);
    *x = sum;
    return KILN_OK;
}

kiln_status nn_upsample_nearest2x(kiln_graph *g, const tensor *x, const tensor *like, tensor **y)
{
    kiln_upsample_nearest2x_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2],
                                        (int32_t)x->shape[3], 2 * (int32_t)x->shape[2], 2 * (int32_t)x->shape[3]};
    if (like) p.OH = (int32_t)like->shape[2], p.OW = (int32_t)like->shape[3];
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.C, p.OH, p.OW}));
    return kiln_run_upsample_nearest2x(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_pad2d(kiln_graph *g, const tensor *x, int top, int bottom, int left, int right, tensor **y)
{
    kiln_pad2d_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2], (int32_t)x->shape[3],
                           top, bottom, left, right};
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.C, top + p.H + bottom, left + p.W + right}));
    return kiln_run_pad2d(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_freeu_backbone(kiln_graph *g, const tensor *x, float b, bool v2, tensor **y)
{
    TRY(new_like(g, x, y));
    kiln_freeu_backbone_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1],
                                    (int32_t)(x->shape[2] * x->shape[3]), b, v2};
    return kiln_run_freeu_backbone(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_fourier_filter(kiln_graph *g, const tensor *x, float s, tensor **y)
{
    TRY(new_like(g, x, y));
    kiln_fourier_filter_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2],
                                    (int32_t)x->shape[3], s};
    return kiln_run_fourier_filter(g, &p, (const tensor *[]){x}, *y);
}

/* x (N,C,H,W) -> *y: ComfyUI's bislerp along one axis (0: the width, 1: the height) to `out` */
static kiln_status slerp_resize(kiln_graph *g, const tensor *x, int out, int axis, tensor **y)
{
    kiln_slerp_resize_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2],
                                  (int32_t)x->shape[3], out, axis};
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.C, axis ? out : p.H, axis ? p.W : out}));
    return kiln_run_slerp_resize(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_resize(kiln_graph *g, const tensor *x, int oh, int ow, kiln_resample_method method, tensor **y)
{
    kiln_resize_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2], (int32_t)x->shape[3],
                            oh, ow, (int32_t)method};
    /* before the output exists: a size below 1 would make no tensor */
    if (oh < 1 || ow < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "resize: to %d x %d (height x width)", oh, ow);
    if (method == KILN_RESAMPLE_BISLERP) { /* it mixes a pixel's channels: the width, then the height, as ComfyUI */
        tensor *wide;
        TRY(slerp_resize(g, x, ow, 0, &wide));
        kiln_status st = slerp_resize(g, wide, oh, 1, y);
        nn_drop(g, &wide);
        return st;
    }
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.C, oh, ow}));
    return kiln_run_resize(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_prelu(kiln_graph *g, const tensor *x, const tensor *slope, tensor **y)
{
    TRY(new_like(g, x, y));
    kiln_prelu_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1],
                           (int32_t)(kiln_tensor_numel(x) / (x->shape[0] * x->shape[1]))};
    return kiln_run_prelu(g, &p, (const tensor *[]){x, slope}, *y);
}

kiln_status nn_pixel_shuffle(kiln_graph *g, const tensor *x, int r, tensor **y)
{
    /* before the output exists: its channels would be a fraction */
    if (r < 1 || x->shape[1] % ((int64_t)r * r))
        return kiln_fail(KILN_ERR_INVALID_ARG, "pixel_shuffle: factor %d does not split %lld channels into r^2 groups",
                         r, (long long)x->shape[1]);
    kiln_pixel_shuffle_params p = {(int32_t)x->shape[0], (int32_t)(x->shape[1] / ((int64_t)r * r)),
                                   (int32_t)x->shape[2], (int32_t)x->shape[3], r};
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.C, (int64_t)p.H * r, (int64_t)p.W * r}));
    return kiln_run_pixel_shuffle(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_avg_pool2x2(kiln_graph *g, const tensor *x, int pad_h, int pad_w, tensor **y)
{
    kiln_avg_pool2x2_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2],
                                 (int32_t)x->shape[3], pad_h, pad_w};
    int64_t oh = ((int64_t)p.H + 2 * pad_h) / 2, ow = ((int64_t)p.W + 2 * pad_w) / 2;
    /* before the output exists: a side below 1 would make no tensor (the op's
     * check refuses the other bad paddings) */
    if (oh < 1 || ow < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "avg_pool2x2: %dx%d padded by %d,%d holds no 2x2 window", p.H, p.W,
                         pad_h, pad_w);
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.N, p.C, oh, ow}));
    return kiln_run_avg_pool2x2(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_image_to_tokens(kiln_graph *g, const tensor *x, tensor **y)
{
    kiln_transpose_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)(x->shape[2] * x->shape[3])};
    TRY(kiln_graph_tensor(g, y, 3, (int64_t[]){p.B, p.C, p.R}));
    return kiln_run_transpose(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_tokens_to_image(kiln_graph *g, const tensor *x, int64_t H, int64_t W, tensor **y)
{
    kiln_transpose_params p = {(int32_t)x->shape[0], (int32_t)x->shape[1], (int32_t)x->shape[2]};
    TRY(kiln_graph_tensor(g, y, 4, (int64_t[]){p.B, p.C, H, W}));
    return kiln_run_transpose(g, &p, (const tensor *[]){x}, *y);
}

kiln_status nn_swap_axes(kiln_graph *g, const tensor *x, int64_t A, int64_t P, int64_t Q, int64_t E, tensor **y)
{
    if (A * P * Q * E != kiln_tensor_numel(x))
        return kiln_fail(KILN_ERR_INVALID_ARG, "swap_axes: %lld x %lld x %lld x %lld is not the %lld values of x",
                         (long long)A, (long long)P, (long long)Q, (long long)E, (long long)kiln_tensor_numel(x));
    /* two transposes: (A, P, Q E) -> (A, Q E, P), read as (A Q, E, P) -> (A Q, P, E) */
    tensor *t;
    kiln_transpose_params first = {(int32_t)A, (int32_t)P, (int32_t)(Q * E)}, second = {(int32_t)(A * Q), (int32_t)E,
                                                                                         (int32_t)P};
    TRY(kiln_graph_tensor(g, &t, 3, (int64_t[]){first.B, first.C, first.R}));
    TRY(kiln_run_transpose(g, &first, (const tensor *[]){x}, t));
    TRY(new_like(g, x, y));
    kiln_status st = kiln_run_transpose(g, &second, (const tensor *[]){t}, *y);
    kiln_graph_release(g, t);
    return st;
}

kiln_status nn_timestep_embedding(kiln_graph *g, const tensor *t, int dim, tensor **y)
{
    kiln_timestep_embedding_params p = {.N = (int32_t)kiln_tensor_numel(t), .dim = dim, .flip_sin_to_cos = 1,
                                        .freq_shift = 0.0f, .max_period = 10000.0f};
    TRY(kiln_graph_tensor(g, y, 2, (int64_t[]){p.N, dim}));
    return kiln_run_timestep_embedding(g, &p, (const tensor *[]){t}, *y);
}

kiln_status nn_embedding(kiln_graph *g, const tensor *ids, const tensor *table, tensor **y)
{
    kiln_embedding_params p = {.M = (int32_t)kiln_tensor_numel(ids), .V = (int32_t)table->shape[0],
                               .D = (int32_t)table->shape[1]};
    TRY(kiln_graph_tensor(g, y, 2, (int64_t[]){p.M, p.D}));
    return kiln_run_embedding(g, &p, (const tensor *[]){ids, table}, *y);
}
