#include "cpu_ref.h"

#include <math.h>
#include <stdbool.h>

#include "resample.h"

static inline float wload(kiln_weight_ptr w, size_t i) { return kiln_load_f32(w.data, w.dtype, i); }

// x (M,K) @ w (N,K)^T + bias (N) -> y (M,N)
void cpu_ref_matmul(const kiln_matmul_params *p, const float *x, kiln_weight_ptr w, kiln_weight_ptr bias, float *y)
{
    for (int m = 0; m < p->M; m++) {
        for (int n = 0; n < p->N; n++) {
            float acc = p->has_bias ? wload(bias, (size_t)n) : 0.0f;
            for (int k = 0; k < p->K; k++) acc += x[(size_t)m * p->K + k] * wload(w, (size_t)n * p->K + k);
            y[(size_t)m * p->N + n] = acc;
        }
    }
}

// x (N,C,H,W) * w (O,C,KH,KW) + bias (O) -> y (N,O,OH,OW), zero padding
void cpu_ref_conv2d(const kiln_conv2d_params *p, const float *x, kiln_weight_ptr w, kiln_weight_ptr bias, float *y)
{
    for (int n = 0; n < p->N; n++)
        for (int o = 0; o < p->O; o++)
            for (int oy = 0; oy < p->OH; oy++)
                for (int ox = 0; ox < p->OW; ox++) {
                    float acc = wload(bias, (size_t)o);
                    for (int c = 0; c < p->C; c++)
                        for (int ky = 0; ky < p->KH; ky++) {
                            int iy = oy * p->stride - p->pad + ky;
                            if (iy < 0 || iy >= p->H) continue;
                            for (int kx = 0; kx < p->KW; kx++) {
                                int ix = ox * p->stride - p->pad + kx;
                                if (ix < 0 || ix >= p->W) continue;
                                acc += x[(((size_t)n * p->C + c) * p->H + iy) * p->W + ix] *
                                       wload(w, (((size_t)o * p->C + c) * p->KH + ky) * p->KW + kx);
                            }
                        }
                    y[(((size_t)n * p->O + o) * p->OH + oy) * p->OW + ox] = acc;
                }
}

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

// x (N,C,HW): mean and variance over each group of C/groups channels
void cpu_ref_group_norm(const kiln_group_norm_params *p, const float *x, kiln_weight_ptr gamma,
                        kiln_weight_ptr beta, float *y)
{
    int cpg = p->C / p->groups;
    size_t group_size = (size_t)cpg * p->HW;
    for (int n = 0; n < p->N; n++)
        for (int g = 0; g < p->groups; g++) {
            size_t base = ((size_t)n * p->C + (size_t)g * cpg) * p->HW;
            double sum = 0.0, sumsq = 0.0;
            for (size_t i = 0; i < group_size; i++) sum += x[base + i];
            double mean = sum / (double)group_size;
            for (size_t i = 0; i < group_size; i++) sumsq += (x[base + i] - mean) * (x[base + i] - mean);
            float rstd = (float)(1.0 / sqrt(sumsq / (double)group_size + p->eps));
            for (int c = 0; c < cpg; c++) {
                int ch = g * cpg + c;
                float ga = wload(gamma, (size_t)ch), be = wload(beta, (size_t)ch);
                for (int i = 0; i < p->HW; i++) {
                    size_t at = base + (size_t)c * p->HW + i;
                    float v = ((float)(x[at] - mean)) * rstd * ga + be;
                    y[at] = p->silu ? silu(v) : v;
                }
            }
        }
}

// x (M,D) normalised over D
void cpu_ref_layer_norm(const kiln_layer_norm_params *p, const float *x, kiln_weight_ptr gamma,
                        kiln_weight_ptr beta, float *y)
{
    for (int m = 0; m < p->M; m++) {
        const float *row = x + (size_t)m * p->D;
        double sum = 0.0, sumsq = 0.0;
        for (int d = 0; d < p->D; d++) sum += row[d];
        double mean = sum / p->D;
        for (int d = 0; d < p->D; d++) sumsq += (row[d] - mean) * (row[d] - mean);
        float rstd = (float)(1.0 / sqrt(sumsq / p->D + p->eps));
        for (int d = 0; d < p->D; d++)
            y[(size_t)m * p->D + d] = (float)(row[d] - mean) * rstd * wload(gamma, (size_t)d) + wload(beta, (size_t)d);
    }
}

// x (M,D) scaled by the reciprocal root mean square over D: T5's layer norm,
// which neither centres nor adds a bias
void cpu_ref_rms_norm(const kiln_rms_norm_params *p, const float *x, kiln_weight_ptr gamma, float *y)
{
    for (int m = 0; m < p->M; m++) {
        const float *row = x + (size_t)m * p->D;
        double sumsq = 0.0;
        for (int d = 0; d < p->D; d++) sumsq += (double)row[d] * row[d];
        float rstd = (float)(1.0 / sqrt(sumsq / p->D + p->eps));
        for (int d = 0; d < p->D; d++) y[(size_t)m * p->D + d] = row[d] * rstd * wload(gamma, (size_t)d);
    }
}

// element c of row `row` of the modulation of batch element b: mod (B,K,C)
// plus the table (K,C), which is absent (zeros) when table.data is NULL
static float modulation(const float *mod, kiln_weight_ptr table, int K, int C, int b, int row, int c)
{
    float t = table.data ? wload(table, (size_t)row * C + c) : 0.0f;
    return mod[((size_t)b * K + row) * C + c] + t;
}

// x (B,T,C): each token normalised over C without affine, then scaled and
// shifted by rows of its batch element's modulation
void cpu_ref_ada_layer_norm(const kiln_ada_layer_norm_params *p, const float *x, const float *mod,
                            kiln_weight_ptr table, float *y)
{
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++) {
            size_t base = ((size_t)b * p->T + t) * p->C;
            const float *row = x + base;
            double sum = 0.0, sumsq = 0.0;
            for (int c = 0; c < p->C; c++) sum += row[c];
            double mean = sum / p->C;
            for (int c = 0; c < p->C; c++) sumsq += (row[c] - mean) * (row[c] - mean);
            float rstd = (float)(1.0 / sqrt(sumsq / p->C + p->eps));
            for (int c = 0; c < p->C; c++) {
                float scale = 1.0f + modulation(mod, table, p->K, p->C, b, p->scale, c);
                float shift = modulation(mod, table, p->K, p->C, b, p->shift, c);
                y[base + c] = (float)(row[c] - mean) * rstd * scale + shift;
            }
        }
}

// q (B,Tq,H*D), k v (B,Tk,H*D): one query row at a time; s is scratch of Tk floats
void cpu_ref_attention(const kiln_attention_params *p, const float *q, const float *k, const float *v,
                       const float *bias, float *o, float *s)
{
    size_t row = (size_t)p->H * p->D;
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < p->H; h++)
            for (int i = 0; i < p->Tq; i++) {
                const float *qi = q + ((size_t)b * p->Tq + i) * row + (size_t)h * p->D;
                int tk = p->causal ? i + 1 : p->Tk;
                const float *bi = bias ? bias + ((size_t)h * p->Tq + i) * p->Tk : NULL; /* (Tk) */
                float mx = -INFINITY;
                for (int j = 0; j < tk; j++) {
                    const float *kj = k + ((size_t)b * p->Tk + j) * row + (size_t)h * p->D;
                    float dot = 0.0f;
                    for (int d = 0; d < p->D; d++) dot += qi[d] * kj[d];
                    s[j] = dot * p->scale + (bi ? bi[j] : 0.0f);
                    if (s[j] > mx) mx = s[j];
                }
                float denom = 0.0f;
                for (int j = 0; j < tk; j++) {
                    s[j] = expf(s[j] - mx);
                    denom += s[j];
                }
                float *oi = o + ((size_t)b * p->Tq + i) * row + (size_t)h * p->D;
                for (int d = 0; d < p->D; d++) {
                    float acc = 0.0f;
                    for (int j = 0; j < tk; j++) acc += s[j] * v[((size_t)b * p->Tk + j) * row + (size_t)h * p->D + d];
                    oi[d] = acc / denom;
                }
            }
}

// x (B,T,H*D): pair i of every head of token t turned by the angle whose
// cos and sin are freqs[t][i], the pair (x[2i], x[2i+1]) taken as the complex
// number x[2i] + x[2i+1] j and multiplied by cos + sin j
void cpu_ref_rope(const kiln_rope_params *p, const float *x, const float *freqs, float *y)
{
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            for (int h = 0; h < p->H; h++)
                for (int i = 0; i < p->D / 2; i++) {
                    size_t at = (((size_t)b * p->T + t) * p->H + h) * p->D + 2 * (size_t)i;
                    const float *f = freqs + ((size_t)t * (p->D / 2) + i) * 2; /* cos, sin */
                    float re = x[at], im = x[at + 1];
                    y[at] = re * f[0] - im * f[1];
                    y[at + 1] = im * f[0] + re * f[1];
                }
}

void cpu_ref_softmax(const kiln_softmax_params *p, const float *x, float *y)
{
    for (int m = 0; m < p->M; m++) {
        const float *r = x + (size_t)m * p->N;
        float *out = y + (size_t)m * p->N;
        float mx = -INFINITY, denom = 0.0f;
        for (int n = 0; n < p->N; n++) mx = r[n] > mx ? r[n] : mx;
        for (int n = 0; n < p->N; n++) denom += (out[n] = expf(r[n] - mx));
        for (int n = 0; n < p->N; n++) out[n] /= denom;
    }
}

static inline float gelu(float v) { return 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2)); }

void cpu_ref_silu(const kiln_silu_params *p, const float *x, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = silu(x[i]);
}

void cpu_ref_sigmoid(const kiln_sigmoid_params *p, const float *x, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

float cpu_ref_activate(kiln_activation_kind kind, float v)
{
    switch (kind) {
    case KILN_ACTIVATION_TANH: return tanhf(v);
    case KILN_ACTIVATION_ELU: return v > 0.0f ? v : expm1f(v);
    case KILN_ACTIVATION_HARDSWISH: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    case KILN_ACTIVATION_SOFTSIGN: return v / (1.0f + fabsf(v));
    /* softplus as torch's, v itself above its threshold 20 */
    case KILN_ACTIVATION_MISH: return v * tanhf(v > 20.0f ? v : log1pf(expf(v)));
    default: return NAN; /* kiln_check_activation refuses other kinds */
    }
}

void cpu_ref_activation(const kiln_activation_params *p, const float *x, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = cpu_ref_activate((kiln_activation_kind)p->kind, x[i]);
}

void cpu_ref_gelu(const kiln_gelu_params *p, const float *x, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = gelu(x[i]);
}

void cpu_ref_quick_gelu(const kiln_quick_gelu_params *p, const float *x, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

// x (M,2N): value half first, gate half second (diffusers' GEGLU chunk order)
// sqrt(2/pi) (x + 0.044715 x^3) inside the tanh
void cpu_ref_gelu_tanh(const kiln_gelu_tanh_params *p, const float *x, float *y)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int i = 0; i < p->n; i++) y[i] = 0.5f * x[i] * (1.0f + tanhf(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

void cpu_ref_geglu(const kiln_geglu_params *p, const float *x, float *y)
{
    for (int m = 0; m < p->M; m++)
        for (int n = 0; n < p->N; n++) {
            const float *r = x + (size_t)m * 2 * p->N;
            y[(size_t)m * p->N + n] = r[n] * gelu(r[p->N + n]);
        }
}

void cpu_ref_add(const kiln_add_params *p, const float *a, const float *b, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = a[i] + b[i];
}

// x, y (B,T,C): the gate row of batch element b's modulation scales every
// token of y before the residual add
void cpu_ref_gated_add(const kiln_gated_add_params *p, const float *x, const float *y, const float *mod,
                       kiln_weight_ptr table, float *out)
{
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            for (int c = 0; c < p->C; c++) {
                size_t at = ((size_t)b * p->T + t) * p->C + c;
                out[at] = x[at] + modulation(mod, table, p->K, p->C, b, p->gate, c) * y[at];
            }
}

void cpu_ref_mul(const kiln_mul_params *p, const float *a, const float *b, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = a[i] * b[i];
}

void cpu_ref_scale(const kiln_scale_params *p, const float *a, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = a[i] * p->s;
}

void cpu_ref_leaky_relu(const kiln_leaky_relu_params *p, const float *x, float *y)
{
    for (int i = 0; i < p->n; i++) y[i] = x[i] >= 0.0f ? x[i] : x[i] * p->slope;
}

void cpu_ref_add_channel_bias(const kiln_add_channel_bias_params *p, const float *x, const float *b, float *y)
{
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++)
            for (int i = 0; i < p->HW; i++) {
                size_t at = ((size_t)n * p->C + c) * p->HW + i;
                y[at] = x[at] + b[(size_t)n * p->C + c];
            }
}

void cpu_ref_concat_channels(const kiln_concat_channels_params *p, const float *a, const float *b, float *y)
{
    size_t sa = (size_t)p->Ca * p->HW, sb = (size_t)p->Cb * p->HW;
    for (int n = 0; n < p->N; n++) {
        for (size_t i = 0; i < sa; i++) y[n * (sa + sb) + i] = a[n * sa + i];
        for (size_t i = 0; i < sb; i++) y[n * (sa + sb) + sa + i] = b[n * sb + i];
    }
}

void cpu_ref_pad2d(const kiln_pad2d_params *p, const float *x, float *y)
{
    int OH = p->top + p->H + p->bottom, OW = p->left + p->W + p->right;
    for (int nc = 0; nc < p->N * p->C; nc++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int iy = oy - p->top, ix = ox - p->left;
                bool inside = iy >= 0 && iy < p->H && ix >= 0 && ix < p->W;
                y[((size_t)nc * OH + oy) * OW + ox] = inside ? x[((size_t)nc * p->H + iy) * p->W + ix] : 0.0f;
            }
}

void cpu_ref_upsample_nearest2x(const kiln_upsample_nearest2x_params *p, const float *x, float *y)
{
    int OW = p->OW, OH = p->OH;
    for (int nc = 0; nc < p->N * p->C; nc++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                y[((size_t)nc * OH + oy) * OW + ox] = x[((size_t)nc * p->H + oy / 2) * p->W + ox / 2];
}

// freq_i = exp(-ln(max_period) * i / (half - freq_shift)); emb = [sin | cos](t * freq)
void cpu_ref_timestep_embedding(const kiln_timestep_embedding_params *p, const float *t, float *y)
{
    int half = p->dim / 2;
    for (int n = 0; n < p->N; n++)
        for (int i = 0; i < half; i++) {
            float freq = expf(-logf(p->max_period) * (float)i / ((float)half - p->freq_shift));
            float arg = t[n] * freq;
            float *row = y + (size_t)n * p->dim;
            row[p->flip_sin_to_cos ? i : half + i] = cosf(arg);
            row[p->flip_sin_to_cos ? half + i : i] = sinf(arg);
        }
}

void cpu_ref_transpose(const kiln_transpose_params *p, const float *x, float *y)
{
    for (int b = 0; b < p->B; b++)
        for (int r = 0; r < p->R; r++)
            for (int c = 0; c < p->C; c++)
                y[((size_t)b * p->C + c) * p->R + r] = x[((size_t)b * p->R + r) * p->C + c];
}

void cpu_ref_freeu_backbone(const kiln_freeu_backbone_params *p, const float *x, float *y, float *means)
{
    size_t plane = (size_t)p->HW, image = (size_t)p->C * plane;
    for (int n = 0; n < p->N; n++) {
        const float *xn = x + n * image;
        float *yn = y + n * image;
        float lo = INFINITY, hi = -INFINITY;
        if (p->v2)
            for (size_t i = 0; i < plane; i++) {
                float sum = 0.0f;
                for (int c = 0; c < p->C; c++) sum += xn[c * plane + i];
                means[i] = sum / (float)p->C;
                lo = fminf(lo, means[i]);
                hi = fmaxf(hi, means[i]);
            }
        for (int c = 0; c < p->C; c++)
            for (size_t i = 0; i < plane; i++) {
                float factor = 1.0f;
                if (c < p->C / 2) factor = p->v2 ? (p->b - 1.0f) * ((means[i] - lo) / (hi - lo)) + 1.0f : p->b;
                yn[c * plane + i] = xn[c * plane + i] * factor;
            }
    }
}

/* The plane's spectrum at frequency 0 and -1 of each axis: X(ky,kx) = sum
 * x e^(-2 pi i (ky h / H + kx w / W)), so at -1 the sum of x e^(i a) with
 * a = 2 pi h / H (and likewise for w); back in space each adds
 * Re(X e^(-i a)) / HW. An axis of 1 has only frequency 0. */
void cpu_ref_fourier_filter(const kiln_fourier_filter_params *p, const float *x, float *y, float *twiddles)
{
    const int H = p->H, W = p->W;
    float *cos_h = twiddles, *sin_h = cos_h + H, *cos_w = sin_h + H, *sin_w = cos_w + W;
    for (int h = 0; h < H; h++) {
        float a = 2.0f * (float)M_PI * (float)h / (float)H;
        cos_h[h] = cosf(a), sin_h[h] = sinf(a);
    }
    for (int w = 0; w < W; w++) {
        float a = 2.0f * (float)M_PI * (float)w / (float)W;
        cos_w[w] = cosf(a), sin_w[w] = sinf(a);
    }
    const float rows = H > 1 ? 1.0f : 0.0f, cols = W > 1 ? 1.0f : 0.0f; /* whether -1 is a frequency of its own */
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        const float *xp = x + plane * H * W;
        float *yp = y + plane * H * W;
        /* X(0,0); X(-1,0), X(0,-1), X(-1,-1) as real and imaginary parts */
        float x00 = 0.0f, x10r = 0.0f, x10i = 0.0f, x01r = 0.0f, x01i = 0.0f, x11r = 0.0f, x11i = 0.0f;
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                float v = xp[h * W + w];
                float c11 = cos_h[h] * cos_w[w] - sin_h[h] * sin_w[w], s11 = sin_h[h] * cos_w[w] + cos_h[h] * sin_w[w];
                x00 += v;
                x10r += v * cos_h[h], x10i += v * sin_h[h];
                x01r += v * cos_w[w], x01i += v * sin_w[w];
                x11r += v * c11, x11i += v * s11;
            }
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                float c11 = cos_h[h] * cos_w[w] - sin_h[h] * sin_w[w], s11 = sin_h[h] * cos_w[w] + cos_h[h] * sin_w[w];
                float low = x00 + rows * (x10r * cos_h[h] + x10i * sin_h[h]) + cols * (x01r * cos_w[w] + x01i * sin_w[w]) +
                            rows * cols * (x11r * c11 + x11i * s11);
                yp[h * W + w] = xp[h * W + w] + (p->s - 1.0f) * (low / (float)(H * W));
            }
    }
}

void cpu_ref_resize(const kiln_resize_params *p, const float *x, float *y)
{
    kiln_resample(x, p->N * p->C, p->H, p->W, y, p->OH, p->OW, (kiln_resample_method)p->method);
}

void cpu_ref_slerp_resize_rows(const kiln_slerp_resize_params *p, const float *x, float *y, int64_t begin,
                               int64_t end)
{
    const bool wide = p->axis == 0;
    const int rows = wide ? p->H : p->out, cols = wide ? p->out : p->W;
    const size_t plane = (size_t)p->H * p->W, out_plane = (size_t)rows * cols;
    for (int64_t row = begin; row < end; row++) {
        const int n = (int)(row / rows), r = (int)(row % rows);
        const float *image = x + (size_t)n * p->C * plane;
        float *to = y + (size_t)n * p->C * out_plane + (size_t)r * cols;
        for (int col = 0; col < cols; col++) {
            int first, second;
            float ratio;
            kiln_bislerp_tap(wide ? p->W : p->H, p->out, wide ? col : r, &first, &second, &ratio);
            /* the two source pixels' first channels: columns of row r, or rows at column col */
            const float *a = wide ? image + (size_t)r * p->W + first : image + (size_t)first * p->W + col;
            const float *b = wide ? image + (size_t)r * p->W + second : image + (size_t)second * p->W + col;
            kiln_slerp(a, b, plane, p->C, ratio, to + col, out_plane);
        }
    }
}

void cpu_ref_slerp_resize(const kiln_slerp_resize_params *p, const float *x, float *y)
{
    cpu_ref_slerp_resize_rows(p, x, y, 0, (int64_t)p->N * (p->axis == 0 ? p->H : p->out));
}

void cpu_ref_prelu(const kiln_prelu_params *p, const float *x, kiln_weight_ptr slope, float *y)
{
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++) {
            float s = wload(slope, (size_t)c);
            for (int i = 0; i < p->HW; i++) {
                size_t at = ((size_t)n * p->C + c) * p->HW + i;
                y[at] = x[at] >= 0.0f ? x[at] : s * x[at];
            }
        }
}

// in x's order: each input plane (n, c r^2 + i r + j) fills the output pixels
// (h r + i, w r + j) of channel c
void cpu_ref_pixel_shuffle(const kiln_pixel_shuffle_params *p, const float *x, float *y)
{
    int r = p->r, OH = p->H * r, OW = p->W * r;
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++)
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++)
                    for (int h = 0; h < p->H; h++)
                        for (int w = 0; w < p->W; w++) {
                            size_t from = (((((size_t)n * p->C + c) * r + i) * r + j) * p->H + h) * p->W + w;
                            y[(((size_t)n * p->C + c) * OH + h * r + i) * OW + w * r + j] = x[from];
                        }
}

// padding adds zeros, which leave the sum as it is: only the taps inside x
// are read
void cpu_ref_avg_pool2x2(const kiln_avg_pool2x2_params *p, const float *x, float *y)
{
    int OH = (p->H + 2 * p->pad_h) / 2, OW = (p->W + 2 * p->pad_w) / 2;
    for (int nc = 0; nc < p->N * p->C; nc++) {
        const float *plane = x + (size_t)nc * p->H * p->W;
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                float sum = 0.0f;
                for (int h = 2 * i - p->pad_h; h < 2 * i - p->pad_h + 2; h++)
                    for (int w = 2 * j - p->pad_w; w < 2 * j - p->pad_w + 2; w++)
                        if (h >= 0 && h < p->H && w >= 0 && w < p->W) sum += plane[(size_t)h * p->W + w];
                y[((size_t)nc * OH + i) * OW + j] = sum * 0.25f;
            }
    }
}

// ids outside [0, V) are clamped: a kernel must not read out of bounds, and
// the tokenizer never produces them
void cpu_ref_embedding(const kiln_embedding_params *p, const int32_t *ids, kiln_weight_ptr table, float *y)
{
    for (int m = 0; m < p->M; m++) {
        int id = ids[m] < 0 ? 0 : ids[m] >= p->V ? p->V - 1 : ids[m];
        for (int d = 0; d < p->D; d++) y[(size_t)m * p->D + d] = wload(table, (size_t)id * p->D + d);
    }
}
