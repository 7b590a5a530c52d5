#include "op_ref64.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "resample.h"

// x (M,K) @ w (N,K)^T + bias (N) -> y (M,N)
void kiln_ref64_matmul(const kiln_matmul_params *p, const double *x, const double *w, const double *bias,
                       double *y)
{
    for (int m = 0; m < p->M; m++)
        for (int n = 0; n < p->N; n++) {
            const double *xr = x + (size_t)m * p->K, *wr = w + (size_t)n * p->K;
            double acc = bias ? bias[n] : 0.0;
            for (int k = 0; k < p->K; k++) acc += xr[k] * wr[k];
            y[(size_t)m * p->N + n] = acc;
        }
}

// x (N,C,H,W) * w (O,C,KH,KW) + bias (O) -> y (N,O,OH,OW), zero padding.
// Each filter tap adds w * (shifted input plane) to the output plane, so the
// innermost loop runs along an output row (fast enough to keep the suite short).
void kiln_ref64_conv2d(const kiln_conv2d_params *p, const double *x, const double *w, const double *bias,
                       double *y)
{
    for (int n = 0; n < p->N; n++)
        for (int o = 0; o < p->O; o++) {
            double *plane = y + ((size_t)n * p->O + o) * p->OH * p->OW; /* (OH,OW) */
            for (size_t i = 0; i < (size_t)p->OH * p->OW; i++) plane[i] = bias[o];
            for (int c = 0; c < p->C; c++) {
                const double *in = x + ((size_t)n * p->C + c) * p->H * p->W; /* (H,W) */
                for (int ky = 0; ky < p->KH; ky++)
                    for (int kx = 0; kx < p->KW; kx++) {
                        double wv = w[(((size_t)o * p->C + c) * p->KH + ky) * p->KW + kx];
                        for (int oy = 0; oy < p->OH; oy++) {
                            int iy = oy * p->stride - p->pad + ky;
                            if (iy < 0 || iy >= p->H) continue;
                            for (int ox = 0; ox < p->OW; ox++) {
                                int ix = ox * p->stride - p->pad + kx;
                                if (ix >= 0 && ix < p->W) plane[(size_t)oy * p->OW + ox] += wv * in[(size_t)iy * p->W + ix];
                            }
                        }
                    }
            }
        }
}

static double silu(double v) { return v / (1.0 + exp(-v)); }
static double gelu(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

// x (N,C,HW): biased variance over each group of C/groups channels
void kiln_ref64_group_norm(const kiln_group_norm_params *p, const double *x, const double *gamma,
                           const double *beta, double *y)
{
    int cpg = p->C / p->groups;
    size_t count = (size_t)cpg * p->HW;
    for (int n = 0; n < p->N; n++)
        for (int g = 0; g < p->groups; g++) {
            size_t base = ((size_t)n * p->C + (size_t)g * cpg) * p->HW;
            double sum = 0.0, sq = 0.0;
            for (size_t i = 0; i < count; i++) sum += x[base + i];
            double mean = sum / (double)count;
            for (size_t i = 0; i < count; i++) sq += (x[base + i] - mean) * (x[base + i] - mean);
            double rstd = 1.0 / sqrt(sq / (double)count + p->eps);
            for (int c = 0; c < cpg; c++) {
                int ch = g * cpg + c;
                for (int i = 0; i < p->HW; i++) {
                    size_t at = base + (size_t)c * p->HW + i;
                    double v = (x[at] - mean) * rstd * gamma[ch] + beta[ch];
                    y[at] = p->silu ? silu(v) : v;
                }
            }
        }
}

// x (M,D) normalised over D with the biased variance
void kiln_ref64_layer_norm(const kiln_layer_norm_params *p, const double *x, const double *gamma,
                           const double *beta, double *y)
{
    for (int m = 0; m < p->M; m++) {
        const double *row = x + (size_t)m * p->D;
        double sum = 0.0, sq = 0.0;
        for (int d = 0; d < p->D; d++) sum += row[d];
        double mean = sum / p->D;
        for (int d = 0; d < p->D; d++) sq += (row[d] - mean) * (row[d] - mean);
        double rstd = 1.0 / sqrt(sq / p->D + p->eps);
        for (int d = 0; d < p->D; d++) y[(size_t)m * p->D + d] = (row[d] - mean) * rstd * gamma[d] + beta[d];
    }
}

// x (M,D) / sqrt(mean over D of x^2 + eps) * gamma
void kiln_ref64_rms_norm(const kiln_rms_norm_params *p, const double *x, const double *gamma, double *y)
{
    for (int m = 0; m < p->M; m++) {
        const double *row = x + (size_t)m * p->D;
        double sq = 0.0;
        for (int d = 0; d < p->D; d++) sq += row[d] * row[d];
        double rstd = 1.0 / sqrt(sq / p->D + p->eps);
        for (int d = 0; d < p->D; d++) y[(size_t)m * p->D + d] = row[d] * rstd * gamma[d];
    }
}

// row `row` of batch element b's modulation, plus the table's when given
static double modulation(const double *mod, const double *table, int K, int C, int b, int row, int c)
{
    return mod[((size_t)b * K + row) * C + c] + (table ? table[(size_t)row * C + c] : 0.0);
}

// x (B,T,C): per token a layer norm without affine (biased variance), then
// * (1 + scale row) + shift row of its batch element's modulation
void kiln_ref64_ada_layer_norm(const kiln_ada_layer_norm_params *p, const double *x, const double *mod,
                               const double *table, double *y)
{
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++) {
            size_t base = ((size_t)b * p->T + t) * p->C;
            double sum = 0.0, sq = 0.0;
            for (int c = 0; c < p->C; c++) sum += x[base + c];
            double mean = sum / p->C;
            for (int c = 0; c < p->C; c++) sq += (x[base + c] - mean) * (x[base + c] - mean);
            double rstd = 1.0 / sqrt(sq / p->C + p->eps);
            for (int c = 0; c < p->C; c++)
                y[base + c] = (x[base + c] - mean) * rstd * (1.0 + modulation(mod, table, p->K, p->C, b, p->scale, c)) +
                              modulation(mod, table, p->K, p->C, b, p->shift, c);
        }
}

// q (B,Tq,H*D), k v (B,Tk,H*D) -> o (B,Tq,H*D); causal: query i sees keys 0..i;
// bias (H,Tq,Tk), when given, added to the scaled scores of every batch element
void kiln_ref64_attention(const kiln_attention_params *p, const double *q, const double *k, const double *v,
                          const double *bias, double *o, double *s)
{
    size_t row = (size_t)p->H * p->D;
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < p->H; h++)
            for (int i = 0; i < p->Tq; i++) {
                const double *qi = q + ((size_t)b * p->Tq + i) * row + (size_t)h * p->D;
                int keys = p->causal ? i + 1 : p->Tk;
                double mx = -INFINITY, denom = 0.0;
                for (int j = 0; j < keys; j++) {
                    const double *kj = k + ((size_t)b * p->Tk + j) * row + (size_t)h * p->D;
                    double dot = 0.0;
                    for (int d = 0; d < p->D; d++) dot += qi[d] * kj[d];
                    s[j] = dot * p->scale + (bias ? bias[((size_t)h * p->Tq + i) * p->Tk + j] : 0.0);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < keys; j++) denom += (s[j] = exp(s[j] - mx));
                double *oi = o + ((size_t)b * p->Tq + i) * row + (size_t)h * p->D;
                for (int d = 0; d < p->D; d++) oi[d] = 0.0;
                for (int j = 0; j < keys; j++) {
                    const double *vj = v + ((size_t)b * p->Tk + j) * row + (size_t)h * p->D;
                    for (int d = 0; d < p->D; d++) oi[d] += s[j] * vj[d];
                }
                for (int d = 0; d < p->D; d++) oi[d] /= denom;
            }
}

// x (B,T,H*D): pair i of each head of token t as the complex number
// x[2i] + x[2i+1] j, times freqs[t][i] = cos + sin j
void kiln_ref64_rope(const kiln_rope_params *p, const double *x, const double *freqs, double *y)
{
    size_t half = (size_t)p->D / 2;
    for (size_t bt = 0; bt < (size_t)p->B * p->T; bt++) {
        const double *f = freqs + bt % (size_t)p->T * half * 2;
        for (size_t h = 0; h < (size_t)p->H; h++)
            for (size_t i = 0; i < half; i++) {
                size_t at = (bt * p->H + h) * p->D + 2 * i;
                double c = f[2 * i], s = f[2 * i + 1];
                y[at] = x[at] * c - x[at + 1] * s;
                y[at + 1] = x[at + 1] * c + x[at] * s;
            }
    }
}

void kiln_ref64_softmax(const kiln_softmax_params *p, const double *x, double *y)
{
    for (int m = 0; m < p->M; m++) {
        const double *r = x + (size_t)m * p->N;
        double *out = y + (size_t)m * p->N;
        double mx = -INFINITY, denom = 0.0;
        for (int n = 0; n < p->N; n++) mx = fmax(mx, r[n]);
        for (int n = 0; n < p->N; n++) denom += (out[n] = exp(r[n] - mx));
        for (int n = 0; n < p->N; n++) out[n] /= denom;
    }
}

void kiln_ref64_silu(const kiln_silu_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = silu(x[i]);
}

void kiln_ref64_sigmoid(const kiln_sigmoid_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = 1.0 / (1.0 + exp(-x[i]));
}

static double activate(kiln_activation_kind kind, double v)
{
    switch (kind) {
    case KILN_ACTIVATION_TANH: return tanh(v);
    case KILN_ACTIVATION_ELU: return v > 0.0 ? v : expm1(v);
    case KILN_ACTIVATION_HARDSWISH: return v * fmin(fmax(v + 3.0, 0.0), 6.0) / 6.0;
    case KILN_ACTIVATION_SOFTSIGN: return v / (1.0 + fabs(v));
    case KILN_ACTIVATION_MISH: return v * tanh(v > 20.0 ? v : log1p(exp(v)));
    default: return NAN; /* a kind with no function here fails the comparison */
    }
}

void kiln_ref64_activation(const kiln_activation_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = activate((kiln_activation_kind)p->kind, x[i]);
}

void kiln_ref64_gelu(const kiln_gelu_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = gelu(x[i]);
}

void kiln_ref64_gelu_tanh(const kiln_gelu_tanh_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = 0.5 * x[i] * (1.0 + tanh(sqrt(2.0 / M_PI) * (x[i] + 0.044715 * pow(x[i], 3))));
}

void kiln_ref64_quick_gelu(const kiln_quick_gelu_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = x[i] / (1.0 + exp(-1.702 * x[i]));
}

// x (M,2N): the value half first, the gate half second
void kiln_ref64_geglu(const kiln_geglu_params *p, const double *x, double *y)
{
    for (int m = 0; m < p->M; m++) {
        const double *r = x + (size_t)m * 2 * p->N;
        for (int n = 0; n < p->N; n++) y[(size_t)m * p->N + n] = r[n] * gelu(r[p->N + n]);
    }
}

void kiln_ref64_add(const kiln_add_params *p, const double *a, const double *b, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = a[i] + b[i];
}

// x, y (B,T,C) -> x + (mod[b,gate] + table[gate]) * y
void kiln_ref64_gated_add(const kiln_gated_add_params *p, const double *x, const double *y, const double *mod,
                          const double *table, double *out)
{
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            for (int c = 0; c < p->C; c++) {
                size_t at = ((size_t)b * p->T + t) * p->C + c;
                out[at] = x[at] + modulation(mod, table, p->K, p->C, b, p->gate, c) * y[at];
            }
}

void kiln_ref64_mul(const kiln_mul_params *p, const double *a, const double *b, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = a[i] * b[i];
}

void kiln_ref64_scale(const kiln_scale_params *p, const double *a, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = a[i] * p->s;
}

void kiln_ref64_leaky_relu(const kiln_leaky_relu_params *p, const double *x, double *y)
{
    for (int i = 0; i < p->n; i++) y[i] = x[i] >= 0.0 ? x[i] : x[i] * p->slope;
}

// x (N,C,HW) + b (N,C)
void kiln_ref64_add_channel_bias(const kiln_add_channel_bias_params *p, const double *x, const double *b,
                                 double *y)
{
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int i = 0; i < p->HW; i++) y[nc * p->HW + i] = x[nc * p->HW + i] + b[nc];
}

// a (N,Ca,HW), b (N,Cb,HW) -> y (N,Ca+Cb,HW)
void kiln_ref64_concat_channels(const kiln_concat_channels_params *p, const double *a, const double *b,
                                double *y)
{
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->Ca + p->Cb; c++)
            for (int i = 0; i < p->HW; i++) {
                double v = c < p->Ca ? a[((size_t)n * p->Ca + c) * p->HW + i]
                                     : b[((size_t)n * p->Cb + (c - p->Ca)) * p->HW + i];
                y[((size_t)n * (p->Ca + p->Cb) + c) * p->HW + i] = v;
            }
}

void kiln_ref64_upsample_nearest2x(const kiln_upsample_nearest2x_params *p, const double *x, double *y)
{
    /* torch's nearest to a size: source row floor(oy * H / OH) */
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int oy = 0; oy < p->OH; oy++)
            for (int ox = 0; ox < p->OW; ox++)
                y[(nc * p->OH + oy) * p->OW + ox] =
                    x[(nc * p->H + (size_t)oy * p->H / p->OH) * p->W + (size_t)ox * p->W / p->OW];
}

// y[n] = [sin | cos](t[n] * freq) or [cos | sin] when flipped,
// freq_i = max_period^(-i / (half - freq_shift))
void kiln_ref64_timestep_embedding(const kiln_timestep_embedding_params *p, const double *t, double *y)
{
    int half = p->dim / 2;
    for (int n = 0; n < p->N; n++) {
        double *row = y + (size_t)n * p->dim;
        double *first = row, *second = row + half; /* [sin | cos] */
        if (p->flip_sin_to_cos) first = row + half, second = row;
        for (int i = 0; i < half; i++) {
            double arg = t[n] * exp(-log((double)p->max_period) * i / (half - (double)p->freq_shift));
            first[i] = sin(arg);
            second[i] = cos(arg);
        }
    }
}

// x (B,R,C) -> y (B,C,R)
void kiln_ref64_transpose(const kiln_transpose_params *p, const double *x, double *y)
{
    for (int b = 0; b < p->B; b++)
        for (int c = 0; c < p->C; c++)
            for (int r = 0; r < p->R; r++)
                y[((size_t)b * p->C + c) * p->R + r] = x[((size_t)b * p->R + r) * p->C + c];
}

// ids (M) in [0, V), table (V,D) -> y (M,D)
void kiln_ref64_embedding(const kiln_embedding_params *p, const int32_t *ids, const double *table, double *y)
{
    for (int m = 0; m < p->M; m++)
        for (int d = 0; d < p->D; d++) y[(size_t)m * p->D + d] = table[(size_t)ids[m] * p->D + d];
}

// x (N,C,H,W) -> y (N,C,top+H+bottom,left+W+right)
void kiln_ref64_pad2d(const kiln_pad2d_params *p, const double *x, double *y)
{
    int OH = p->top + p->H + p->bottom, OW = p->left + p->W + p->right;
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int iy = oy - p->top, ix = ox - p->left;
                int inside = iy >= 0 && iy < p->H && ix >= 0 && ix < p->W;
                y[(nc * OH + oy) * OW + ox] = inside ? x[(nc * p->H + iy) * p->W + ix] : 0.0;
            }
}

// x (N,C,HW) -> y, FreeU's scaling of the first C/2 channels as ComfyUI's nodes write it
void kiln_ref64_freeu_backbone(const kiln_freeu_backbone_params *p, const double *x, double *y)
{
    size_t plane = (size_t)p->HW, image = (size_t)p->C * plane;
    for (int n = 0; n < p->N; n++) {
        const double *xn = x + n * image;
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < plane && p->v2; i++) {
            double mean = 0.0;
            for (int c = 0; c < p->C; c++) mean += xn[c * plane + i] / p->C;
            lo = fmin(lo, mean), hi = fmax(hi, mean);
        }
        for (size_t i = 0; i < plane; i++) {
            double mean = 0.0;
            for (int c = 0; c < p->C && p->v2; c++) mean += xn[c * plane + i] / p->C;
            double factor = p->v2 ? (p->b - 1.0) * (mean - lo) / (hi - lo) + 1.0 : p->b;
            for (int c = 0; c < p->C; c++) y[n * image + c * plane + i] = xn[c * plane + i] * (c < p->C / 2 ? factor : 1.0);
        }
    }
}

/* Where fftshift puts an axis's middle square: Python's slice
 * [n/2 - 1, n/2 + 1) of the centred axis (-1 counting from the end), and
 * centred index (k + n/2) mod n for frequency k. */
static int in_middle(int k, int n)
{
    int start = n / 2 - 1 < 0 ? n / 2 - 1 + n : n / 2 - 1, stop = n / 2 + 1 > n ? n : n / 2 + 1;
    int centred = (k + n / 2) % n;
    return centred >= start && centred < stop;
}

// x (N,C,H,W) -> y: ComfyUI's Fourier_filter(x, threshold 1, s) with whole DFTs: fftn over (H,W), the
// centred spectrum's middle square times s, ifftn, real part
void kiln_ref64_fourier_filter(const kiln_fourier_filter_params *p, const double *x, double *y, double *scratch)
{
    const int H = p->H, W = p->W;
    double *re = scratch, *im = re + H * W, *tre = im + H * W, *tim = tre + H * W;
    const double tau = 2.0 * 3.14159265358979323846;
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        const double *xp = x + plane * H * W;
        /* along w, then along h: X(ky,kx) */
        for (int h = 0; h < H; h++)
            for (int kx = 0; kx < W; kx++) {
                double r = 0.0, i = 0.0;
                for (int w = 0; w < W; w++) r += xp[h * W + w] * cos(tau * kx * w / W), i -= xp[h * W + w] * sin(tau * kx * w / W);
                tre[h * W + kx] = r, tim[h * W + kx] = i;
            }
        for (int ky = 0; ky < H; ky++)
            for (int kx = 0; kx < W; kx++) {
                double r = 0.0, i = 0.0;
                for (int h = 0; h < H; h++) {
                    double c = cos(tau * ky * h / H), s = -sin(tau * ky * h / H);
                    r += tre[h * W + kx] * c - tim[h * W + kx] * s, i += tre[h * W + kx] * s + tim[h * W + kx] * c;
                }
                double m = in_middle(ky, H) && in_middle(kx, W) ? p->s : 1.0;
                re[ky * W + kx] = r * m, im[ky * W + kx] = i * m;
            }
        /* back: along kx, then along ky, real part / HW */
        for (int ky = 0; ky < H; ky++)
            for (int w = 0; w < W; w++) {
                double r = 0.0, i = 0.0;
                for (int kx = 0; kx < W; kx++) {
                    double c = cos(tau * kx * w / W), s = sin(tau * kx * w / W);
                    r += re[ky * W + kx] * c - im[ky * W + kx] * s, i += re[ky * W + kx] * s + im[ky * W + kx] * c;
                }
                tre[ky * W + w] = r, tim[ky * W + w] = i;
            }
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                double r = 0.0;
                for (int ky = 0; ky < H; ky++) r += tre[ky * W + w] * cos(tau * ky * h / H) - tim[ky * W + w] * sin(tau * ky * h / H);
                y[plane * H * W + h * W + w] = r / (H * W);
            }
    }
}

/* Keys' cubic convolution kernel with a = -0.75 (torch's bicubic), at
 * distance d from a sample */
static double keys_cubic(double d)
{
    const double a = -0.75, t = fabs(d);
    if (t <= 1.0) return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    if (t < 2.0) return a * t * t * t - 5.0 * a * t * t + 8.0 * a * t - 4.0 * a;
    return 0.0;
}

static double tent(double d) { return fabs(d) < 1.0 ? 1.0 - fabs(d) : 0.0; }

static int clamped(int i, int n) { return i < 0 ? 0 : i > n - 1 ? n - 1 : i; }

/* One axis of a resize as a matrix w (out, in): row o, the weight target o
 * gives each source, taps past an edge counting for the edge sample.
 * Where a target's sample lands is float32 arithmetic, as torch computes it
 * (the scale in / out rounded to float, then (o + 0.5) scale - 0.5 rounded
 * at each step, or o scale for nearest): a sample that lands on a whole
 * number decides which sources are taps (and the nearest modes' source), so
 * it must land where torch's does; the weights and sums are double. */
static void resize_axis(int in, int out, kiln_resample_method m, double *w)
{
    const float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        double *row = w + (size_t)o * in;
        for (int i = 0; i < in; i++) row[i] = 0.0;
        const float centre = ((float)o + 0.5f) * scale, at = centre - 0.5f; /* in source pixels */
        if (m == KILN_RESAMPLE_NEAREST_EXACT) {
            row[clamped((int)floor(centre), in)] = 1.0;
        } else if (m == KILN_RESAMPLE_NEAREST) {
            /* torch's legacy nearest: the source under the target's corner,
             * where twice the size is a shift rather than a product */
            row[out == 2 * in ? o / 2 : clamped((int)floor((float)o * scale), in)] = 1.0;
        } else if (m == KILN_RESAMPLE_AREA) {
            /* adaptive average pooling: the sources the target's span [o, o + 1) in / out touches, equally */
            const int first = (int)floor((double)o * in / out), end = (int)ceil((double)(o + 1) * in / out);
            for (int i = first; i < end; i++) row[i] = 1.0 / (end - first);
        } else if (m == KILN_RESAMPLE_BILINEAR) {
            const double t = at > 0.0f ? at : 0.0; /* torch's linear modes clamp the sample at the first source */
            for (int k = (int)floor(t); k <= (int)floor(t) + 1; k++) row[clamped(k, in)] += tent(t - k);
        } else {
            for (int k = (int)floor(at) - 1; k <= (int)floor(at) + 2; k++) row[clamped(k, in)] += keys_cubic(at - k);
        }
    }
}

// x (N,C,H,W) -> y (N,C,OH,OW): each plane X to Wh X Ww^T, Wh and Ww the axes' matrices
void kiln_ref64_resize(const kiln_resize_params *p, const double *x, double *y, double *scratch)
{
    const int H = p->H, W = p->W, OH = p->OH, OW = p->OW;
    double *wh = scratch, *ww = wh + (size_t)OH * H, *rows = ww + (size_t)OW * W; /* rows: (H,OW) */
    resize_axis(H, OH, (kiln_resample_method)p->method, wh);
    resize_axis(W, OW, (kiln_resample_method)p->method, ww);
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        const double *xp = x + plane * H * W;
        double *yp = y + plane * OH * OW;
        for (int h = 0; h < H; h++)
            for (int ox = 0; ox < OW; ox++) {
                double acc = 0.0;
                for (int w = 0; w < W; w++) acc += xp[(size_t)h * W + w] * ww[(size_t)ox * W + w];
                rows[(size_t)h * OW + ox] = acc;
            }
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double acc = 0.0;
                for (int h = 0; h < H; h++) acc += wh[(size_t)oy * H + h] * rows[(size_t)h * OW + ox];
                yp[(size_t)oy * OW + ox] = acc;
            }
    }
}

/* comfy/utils.py's slerp of the vectors a and b (c values stride apart) in
 * double: their unit vectors (zero for a vector of length zero) along the
 * great circle at ratio r, scaled to the lengths' mix; vectors nearly
 * alike give a, nearly opposite ones the straight line */
static void slerp(const double *a, const double *b, size_t stride, int c, double r, double *out, size_t out_stride)
{
    double na = 0.0, nb = 0.0, dot = 0.0;
    for (int k = 0; k < c; k++) na += a[k * stride] * a[k * stride], nb += b[k * stride] * b[k * stride];
    na = sqrt(na), nb = sqrt(nb);
    const double ua = na == 0.0 ? 0.0 : 1.0 / na, ub = nb == 0.0 ? 0.0 : 1.0 / nb;
    for (int k = 0; k < c; k++) dot += a[k * stride] * ua * b[k * stride] * ub;
    if (dot > 1.0 - 1e-5) {
        for (int k = 0; k < c; k++) out[k * out_stride] = a[k * stride];
        return;
    }
    if (dot < 1e-5 - 1.0) {
        for (int k = 0; k < c; k++) out[k * out_stride] = a[k * stride] * (1.0 - r) + b[k * stride] * r;
        return;
    }
    const double omega = acos(dot), so = sin(omega);
    const double wa = sin((1.0 - r) * omega) / so, wb = sin(r * omega) / so, length = na * (1.0 - r) + nb * r;
    for (int k = 0; k < c; k++) out[k * out_stride] = (wa * a[k * stride] * ua + wb * b[k * stride] * ub) * length;
}

/* Each output pixel the slerp of its two source pixels' channels; the taps
 * are kiln_bislerp_tap's float32 ones, as torch computes them: which
 * sources a target takes is a discrete choice that must be the op's. */
void kiln_ref64_slerp_resize(const kiln_slerp_resize_params *p, const double *x, double *y)
{
    const bool wide = p->axis == 0;
    const int rows = wide ? p->H : p->out, cols = wide ? p->out : p->W;
    const size_t plane = (size_t)p->H * p->W, out_plane = (size_t)rows * cols;
    for (int n = 0; n < p->N; n++)
        for (int r = 0; r < rows; r++)
            for (int col = 0; col < cols; col++) {
                int first, second;
                float ratio;
                kiln_bislerp_tap(wide ? p->W : p->H, p->out, wide ? col : r, &first, &second, &ratio);
                const double *image = x + (size_t)n * p->C * plane;
                const size_t a = wide ? (size_t)r * p->W + first : (size_t)first * p->W + col;
                const size_t b = wide ? (size_t)r * p->W + second : (size_t)second * p->W + col;
                slerp(image + a, image + b, plane, p->C, ratio,
                      y + (size_t)n * p->C * out_plane + (size_t)r * cols + col, out_plane);
            }
}

// torch's definition: max(0, x) + slope[c] min(0, x)
void kiln_ref64_prelu(const kiln_prelu_params *p, const double *x, const double *slope, double *y)
{
    size_t n = (size_t)p->N * p->C * p->HW;
    for (size_t i = 0; i < n; i++) {
        double s = slope[i / p->HW % p->C];
        y[i] = fmax(0.0, x[i]) + s * fmin(0.0, x[i]);
    }
}

// each output pixel (oh, ow) of channel c from sub-pixel (oh % r, ow % r) of
// the input channels c r^2 .. c r^2 + r^2 - 1, at (oh / r, ow / r)
void kiln_ref64_pixel_shuffle(const kiln_pixel_shuffle_params *p, const double *x, double *y)
{
    int r = p->r, OH = p->H * r, OW = p->W * r;
    size_t plane = (size_t)p->H * p->W;
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                size_t channel = nc * r * r + (size_t)(oh % r) * r + ow % r;
                y[(nc * OH + oh) * OW + ow] = x[channel * plane + (size_t)(oh / r) * p->W + ow / r];
            }
}

// the mean of the 2x2 input window whose top-left corner is (2 oh - pad_h,
// 2 ow - pad_w), the padding's taps zeros and counted: a sum over 4
void kiln_ref64_avg_pool2x2(const kiln_avg_pool2x2_params *p, const double *x, double *y)
{
    int OH = (p->H + 2 * p->pad_h) / 2, OW = (p->W + 2 * p->pad_w) / 2;
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double sum = 0.0;
                for (int k = 0; k < 4; k++) {
                    int h = 2 * oh - p->pad_h + k / 2, w = 2 * ow - p->pad_w + k % 2;
                    bool inside = h >= 0 && h < p->H && w >= 0 && w < p->W;
                    sum += inside ? x[(nc * p->H + h) * p->W + w] : 0.0;
                }
                y[(nc * OH + oh) * OW + ow] = sum / 4.0;
            }
}
