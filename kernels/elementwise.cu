// Elementwise and data-movement ops: activations, PReLU, add/mul/scale, gated add,
// rotary embedding, channel bias, concat, pad, upsample, resize, slerp resize,
// pixel shuffle, 2x2 average pooling, timestep embedding, transpose, embedding.
// Each mirrors its loop in runtime/cpu_ref.c (resize and slerp resize:
// runtime/resample.c) with the same float expressions, so results agree to
// rounding. All are memory-bound: one thread per output element (slerp
// resize: per output pixel, over its channels) in a grid-stride loop.
#include "cuda_common.cuh"
#include "resample.h"

#define EW_THREADS 256

static unsigned ew_blocks(int64_t n) { return cuda_stride_blocks(n, EW_THREADS); }

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }
__device__ __forceinline__ float activation_f(int kind, float v)
{
    switch (kind) {
    case KILN_ACTIVATION_TANH: return tanhf(v);
    case KILN_ACTIVATION_ELU: return v > 0.0f ? v : expm1f(v);
    case KILN_ACTIVATION_HARDSWISH: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    case KILN_ACTIVATION_SOFTSIGN: return v / (1.0f + fabsf(v));
    case KILN_ACTIVATION_MISH: return v * tanhf(v > 20.0f ? v : log1pf(expf(v)));
    default: return NAN; /* kiln_check_activation refuses other kinds */
    }
}
__device__ __forceinline__ float gelu_f(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }
__device__ __forceinline__ float quick_gelu_f(float v) { return v / (1.0f + expf(-1.702f * v)); }
__device__ __forceinline__ float gelu_tanh_f(float v)
{
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

struct silu_op { __device__ float operator()(float v) const { return silu_f(v); } };
struct sigmoid_op { __device__ float operator()(float v) const { return sigmoid_f(v); } };
struct activation_op {
    int kind;
    __device__ float operator()(float v) const { return activation_f(kind, v); }
};
struct gelu_op { __device__ float operator()(float v) const { return gelu_f(v); } };
struct quick_gelu_op { __device__ float operator()(float v) const { return quick_gelu_f(v); } };
struct gelu_tanh_op { __device__ float operator()(float v) const { return gelu_tanh_f(v); } };
struct scale_op {
    float s;
    __device__ float operator()(float v) const { return v * s; }
};
struct leaky_relu_op {
    float slope;
    __device__ float operator()(float v) const { return v >= 0.0f ? v : v * slope; }
};
struct add_op { __device__ float operator()(float a, float b) const { return a + b; } };
struct mul_op { __device__ float operator()(float a, float b) const { return a * b; } };

template <typename Op> __global__ void unary_kernel(const float *x, float *y, int64_t n, Op op)
{
    GRID_STRIDE(i, n) y[i] = op(x[i]);
}

template <typename Op> __global__ void binary_kernel(const float *a, const float *b, float *y, int64_t n, Op op)
{
    GRID_STRIDE(i, n) y[i] = op(a[i], b[i]);
}

// x (M,2N): value half first, gate half second -> y (M,N)
__global__ void geglu_kernel(const float *x, float *y, int M, int N)
{
    GRID_STRIDE(i, (int64_t)M * N)
    {
        int64_t m = i / N, n = i % N;
        const float *row = x + m * 2 * N;
        y[i] = row[n] * gelu_f(row[N + n]);
    }
}

// x, y (B,T,C) -> x + (mod[b,gate] + table[gate]) * y; mod (B,K,C), table
// (K,C) any float storage or NULL
__global__ void gated_add_kernel(const float *x, const float *y, const float *mod, const void *table,
                                 kiln_dtype table_dtype, float *out, kiln_gated_add_params p)
{
    GRID_STRIDE(i, (int64_t)p.B * p.T * p.C)
    {
        int c = (int)(i % p.C);
        int64_t b = i / ((int64_t)p.T * p.C);
        float gate = mod[(b * p.K + p.gate) * p.C + c] +
                     (table ? load_weight(table, table_dtype, (size_t)p.gate * p.C + c) : 0.0f);
        out[i] = x[i] + gate * y[i];
    }
}

// x (B,T,H*D), freqs (T,D/2,2) -> y: pair i of each head of token t turned by
// the angle whose cos and sin are freqs[t][i]. One thread a pair (D is even,
// so pairs never straddle heads), so y may be x.
__global__ void rope_kernel(const float *x, const float *freqs, float *y, kiln_rope_params p)
{
    int64_t row = (int64_t)p.H * p.D;
    GRID_STRIDE(j, (int64_t)p.B * p.T * row / 2)
    {
        int64_t at = 2 * j, t = at / row % p.T, d = at % row % p.D;
        float c = freqs[t * p.D + d], s = freqs[t * p.D + d + 1], re = x[at], im = x[at + 1];
        y[at] = re * c - im * s;
        y[at + 1] = im * c + re * s;
    }
}

// Any float storage type -> T: the operand prologue of cuda_gemm's callers.
template <typename T> __global__ void convert_kernel(const void *src, kiln_dtype dtype, T *dst, int64_t n)
{
    GRID_STRIDE(i, n) dst[i] = from_f32<T>(load_weight(src, dtype, (size_t)i));
}

extern "C" kiln_status cuda_convert(cuda_state *s, const void *src, kiln_dtype src_dtype, void *dst,
                                    kiln_dtype dst_dtype, int64_t n)
{
    if (kiln_dtype_is_quantized(src_dtype)) return cuda_dequantize(s, src, src_dtype, dst, dst_dtype, n);
    switch (dst_dtype) {
    case KILN_F16: convert_kernel<__half><<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(src, src_dtype, (__half *)dst, n); break;
    case KILN_BF16:
        convert_kernel<__nv_bfloat16><<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(src, src_dtype,
                                                                                  (__nv_bfloat16 *)dst, n);
        break;
    default: convert_kernel<float><<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(src, src_dtype, (float *)dst, n); break;
    }
    CUDA_TRY_LAUNCH("convert_kernel");
    return KILN_OK;
}

// x (N,C,HW) + b (N,C) -> y (N,C,HW)
__global__ void add_channel_bias_kernel(const float *x, const float *b, float *y, int N, int C, int HW)
{
    GRID_STRIDE(i, (int64_t)N * C * HW) y[i] = x[i] + b[i / HW];
}

// a (N,Ca,HW), b (N,Cb,HW) -> y (N,Ca+Cb,HW)
__global__ void concat_channels_kernel(const float *a, const float *b, float *y, int N, int Ca, int Cb, int HW)
{
    int64_t sa = (int64_t)Ca * HW, sb = (int64_t)Cb * HW;
    GRID_STRIDE(i, (int64_t)N * (sa + sb))
    {
        int64_t n = i / (sa + sb), r = i % (sa + sb);
        y[i] = r < sa ? a[n * sa + r] : b[n * sb + (r - sa)];
    }
}

// x (N,C,H,W) -> y (N,C,top+H+bottom,left+W+right)
__global__ void pad2d_kernel(const float *x, float *y, kiln_pad2d_params p)
{
    int OH = p.top + p.H + p.bottom, OW = p.left + p.W + p.right;
    GRID_STRIDE(i, (int64_t)p.N * p.C * OH * OW)
    {
        int ox = (int)(i % OW), oy = (int)(i / OW % OH);
        int64_t nc = i / ((int64_t)OW * OH);
        int iy = oy - p.top, ix = ox - p.left;
        bool inside = iy >= 0 && iy < p.H && ix >= 0 && ix < p.W;
        y[i] = inside ? x[(nc * p.H + iy) * p.W + ix] : 0.0f;
    }
}

// x (N,C,H,W) -> y (N,C,OH,OW), y[i][j] = x[i/2][j/2]
__global__ void upsample_nearest2x_kernel(const float *x, float *y, int NC, int H, int W, int OH, int OW)
{
    GRID_STRIDE(i, (int64_t)NC * OH * OW)
    {
        int ox = (int)(i % OW), oy = (int)(i / OW % OH);
        int64_t nc = i / ((int64_t)OW * OH);
        y[i] = x[(nc * H + oy / 2) * W + ox / 2];
    }
}

// Where target o of a resize samples its source axis, in source pixels from
// the first one's centre (resample.c). nvcc may fuse the multiply and the
// subtraction into one rounding where the CPU rounds twice: a sample within
// an ulp of a whole number may then take the taps on its other side, which
// the tent and Keys' kernels weigh so that the value moves by rounding only.
__device__ __forceinline__ float resize_sample(int o, float scale) { return ((float)o + 0.5f) * scale - 0.5f; }

// Keys' cubic convolution weights (a = -0.75) of the four taps around a
// sample t in [0, 1) past the second
__device__ __forceinline__ void keys_weights(float t, float w[4])
{
    const float a = -0.75f;
    float t1 = t + 1.0f, t2 = 1.0f - t, t3 = 2.0f - t;
    w[0] = ((a * t1 - 5.0f * a) * t1 + 8.0f * a) * t1 - 4.0f * a;
    w[1] = ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1.0f;
    w[2] = ((a + 2.0f) * t2 - (a + 3.0f)) * t2 * t2 + 1.0f;
    w[3] = ((a * t3 - 5.0f * a) * t3 + 8.0f * a) * t3 - 4.0f * a;
}

__device__ __forceinline__ int clamp_index(int i, int n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

// kiln_nearest_exact_index: the source under target o's centre
__device__ __forceinline__ int nearest_exact_index(int o, float scale, int n)
{
    int s = (int)floorf(((float)o + 0.5f) * scale);
    return s < n - 1 ? s : n - 1;
}

// kiln_nearest_index: the source under target o's corner (torch's legacy
// nearest), o / 2 at exactly twice as torch shifts there
__device__ __forceinline__ int nearest_index(int o, float scale, int n, int out)
{
    if (out == 2 * n) return o >> 1;
    int s = (int)floorf((float)o * scale);
    return s < n - 1 ? s : n - 1;
}

// x (N,C,H,W) -> y (N,C,OH,OW): torch's interpolate as kiln_resample computes
// it; scale_h and scale_w are H / OH and W / OW rounded to float on the host
__global__ void resize_kernel(const float *x, float *y, kiln_resize_params p, float scale_h, float scale_w)
{
    GRID_STRIDE(i, (int64_t)p.N * p.C * p.OH * p.OW)
    {
        int ox = (int)(i % p.OW), oy = (int)(i / p.OW % p.OH);
        const float *plane = x + i / ((int64_t)p.OW * p.OH) * p.H * p.W;
        switch (p.method) {
        case KILN_RESAMPLE_NEAREST_EXACT:
            y[i] = plane[(int64_t)nearest_exact_index(oy, scale_h, p.H) * p.W + nearest_exact_index(ox, scale_w, p.W)];
            break;
        case KILN_RESAMPLE_NEAREST:
            y[i] = plane[(int64_t)nearest_index(oy, scale_h, p.H, p.OH) * p.W + nearest_index(ox, scale_w, p.W, p.OW)];
            break;
        case KILN_RESAMPLE_BILINEAR: {
            float fy = fmaxf(resize_sample(oy, scale_h), 0.0f), fx = fmaxf(resize_sample(ox, scale_w), 0.0f);
            int y0 = (int)fy, y1 = y0 + (y0 < p.H - 1), x0 = (int)fx, x1 = x0 + (x0 < p.W - 1);
            float ly = fy - (float)y0, lx = fx - (float)x0;
            const float *r0 = plane + (int64_t)y0 * p.W, *r1 = plane + (int64_t)y1 * p.W;
            y[i] = (1.0f - ly) * ((1.0f - lx) * r0[x0] + lx * r0[x1]) + ly * ((1.0f - lx) * r1[x0] + lx * r1[x1]);
            break;
        }
        case KILN_RESAMPLE_AREA: { // kiln_area_window's sources, summed row by row, over the height then the width
            int y0 = (int)((int64_t)oy * p.H / p.OH), y1 = (int)(((int64_t)oy + 1) * p.H + p.OH - 1) / p.OH;
            int x0 = (int)((int64_t)ox * p.W / p.OW), x1 = (int)(((int64_t)ox + 1) * p.W + p.OW - 1) / p.OW;
            float sum = 0.0f;
            for (int sy = y0; sy < y1; sy++)
                for (int sx = x0; sx < x1; sx++) sum += plane[(int64_t)sy * p.W + sx];
            y[i] = sum / (float)(y1 - y0) / (float)(x1 - x0);
            break;
        }
        default: { // bicubic: each row's four taps, then the rows
            float fy = resize_sample(oy, scale_h), fx = resize_sample(ox, scale_w);
            int iy = (int)floorf(fy), ix = (int)floorf(fx);
            float wy[4], wx[4], sum = 0.0f;
            keys_weights(fy - (float)iy, wy);
            keys_weights(fx - (float)ix, wx);
            for (int j = 0; j < 4; j++) {
                const float *row = plane + (int64_t)clamp_index(iy - 1 + j, p.H) * p.W;
                sum += (row[clamp_index(ix - 1, p.W)] * wx[0] + row[clamp_index(ix, p.W)] * wx[1] +
                        row[clamp_index(ix + 1, p.W)] * wx[2] + row[clamp_index(ix + 2, p.W)] * wx[3]) *
                       wy[j];
            }
            y[i] = sum;
            break;
        }
        }
    }
}

// kiln_bislerp_tap: target o's sources *first and *second along an axis of n
// pixels and its ratio between them; scale is n / out rounded to float on the
// host. __fmul_rn keeps nvcc from fusing a product into the sum it feeds, so
// that the taps are the CPU's.
__device__ __forceinline__ void bislerp_tap(int o, int n, float scale, int *first, int *second, float *ratio)
{
    const float f = fmaxf(__fmul_rn((float)o + 0.5f, scale) - 0.5f, 0.0f);
    const int i0 = (int)f, i1 = i0 + (i0 < n - 1);
    const float l = f - (float)i0, next0 = (float)min(i0 + 1, n - 1), next1 = (float)min(i1 + 1, n - 1);
    const float at = __fmul_rn(1.0f - l, (float)i0) + __fmul_rn(l, (float)i1);
    const float at_next = __fmul_rn(1.0f - l, next0) + __fmul_rn(l, next1);
    *first = (int)at, *ratio = at - floorf(at), *second = (int)at_next;
}

// x (N,C,H,W) -> y (N,C,H,out) along the width (axis 0) or (N,C,out,W) along
// the height (axis 1): one pass of bislerp, a thread per output pixel over its
// C channels, kiln_slerp's expressions (each vector's terms over its length,
// zero where that is zero; the first for vectors nearly alike, the straight
// line for nearly opposite ones)
__global__ void slerp_resize_kernel(const float *x, float *y, kiln_slerp_resize_params p, float scale)
{
    const bool wide = p.axis == 0;
    const int rows = wide ? p.H : p.out, cols = wide ? p.out : p.W;
    const int64_t plane = (int64_t)p.H * p.W, out_plane = (int64_t)rows * cols;
    GRID_STRIDE(i, (int64_t)p.N * out_plane)
    {
        const int col = (int)(i % cols), r = (int)(i / cols % rows);
        const int64_t n = i / out_plane;
        int first, second;
        float ratio;
        bislerp_tap(wide ? col : r, wide ? p.W : p.H, scale, &first, &second, &ratio);
        const float *image = x + n * p.C * plane;
        const float *a = image + (wide ? (int64_t)r * p.W + first : (int64_t)first * p.W + col);
        const float *b = image + (wide ? (int64_t)r * p.W + second : (int64_t)second * p.W + col);
        float *to = y + n * p.C * out_plane + (int64_t)r * cols + col;
        float na = 0.0f, nb = 0.0f, dot = 0.0f;
        for (int k = 0; k < p.C; k++) na += a[k * plane] * a[k * plane], nb += b[k * plane] * b[k * plane];
        na = sqrtf(na), nb = sqrtf(nb);
        for (int k = 0; k < p.C; k++)
            dot += (na == 0.0f ? 0.0f : a[k * plane] / na) * (nb == 0.0f ? 0.0f : b[k * plane] / nb);
        if (dot > (float)(1.0 - 1e-5)) {
            for (int k = 0; k < p.C; k++) to[k * out_plane] = a[k * plane];
        } else if (dot < (float)(1e-5 - 1.0)) {
            for (int k = 0; k < p.C; k++) to[k * out_plane] = a[k * plane] * (1.0f - ratio) + b[k * plane] * ratio;
        } else {
            // a guard: the branches above keep |dot| under 1 - 1e-5 already, and past +-1 acosf is NaN
            const float omega = acosf(fminf(fmaxf(dot, -1.0f), 1.0f)), so = sinf(omega);
            const float wa = sinf((1.0f - ratio) * omega) / so, wb = sinf(ratio * omega) / so;
            const float length = na * (1.0f - ratio) + nb * ratio;
            for (int k = 0; k < p.C; k++)
                to[k * out_plane] =
                    (wa * (na == 0.0f ? 0.0f : a[k * plane] / na) + wb * (nb == 0.0f ? 0.0f : b[k * plane] / nb)) *
                    length;
        }
    }
}

// x (N,C,HW), slope (C) any float storage -> y = x where x >= 0, else slope[c] x
__global__ void prelu_kernel(const float *x, const void *slope, kiln_dtype slope_dtype, float *y,
                             kiln_prelu_params p)
{
    GRID_STRIDE(i, (int64_t)p.N * p.C * p.HW)
    {
        float v = x[i];
        y[i] = v >= 0.0f ? v : load_weight(slope, slope_dtype, (size_t)(i / p.HW % p.C)) * v;
    }
}

// x (N,C*r*r,H,W) -> y (N,C,H*r,W*r): a thread per output, so writes coalesce
__global__ void pixel_shuffle_kernel(const float *x, float *y, kiln_pixel_shuffle_params p)
{
    int64_t r = p.r, OH = p.H * r, OW = p.W * r;
    GRID_STRIDE(i, (int64_t)p.N * p.C * OH * OW)
    {
        int64_t ow = i % OW, oh = i / OW % OH, nc = i / (OW * OH);
        y[i] = x[((nc * r + oh % r) * r + ow % r) * p.H * p.W + oh / r * p.W + ow / r];
    }
}

// x (N,C,H,W) -> y (N,C,OH,OW): a thread per output, its window's taps inside
// x summed in cpu_ref's order (the padding's zeros add nothing)
__global__ void avg_pool2x2_kernel(const float *x, float *y, kiln_avg_pool2x2_params p)
{
    int64_t OH = (p.H + 2 * p.pad_h) / 2, OW = (p.W + 2 * p.pad_w) / 2;
    GRID_STRIDE(i, (int64_t)p.N * p.C * OH * OW)
    {
        int64_t ow = i % OW, oh = i / OW % OH, nc = i / (OW * OH);
        int64_t h0 = 2 * oh - p.pad_h, w0 = 2 * ow - p.pad_w;
        const float *plane = x + nc * p.H * p.W;
        float sum = 0.0f;
        for (int64_t h = h0; h < h0 + 2; h++)
            for (int64_t w = w0; w < w0 + 2; w++)
                if (h >= 0 && h < p.H && w >= 0 && w < p.W) sum += plane[h * p.W + w];
        y[i] = sum * 0.25f;
    }
}

// t (N) -> y (N,dim); one thread per (n, frequency), writing its cos and sin
__global__ void timestep_embedding_kernel(const float *t, float *y, kiln_timestep_embedding_params p)
{
    int half = p.dim / 2;
    GRID_STRIDE(j, (int64_t)p.N * half)
    {
        int n = (int)(j / half), i = (int)(j % half);
        float freq = expf(-logf(p.max_period) * (float)i / ((float)half - p.freq_shift));
        float arg = t[n] * freq;
        float *row = y + (int64_t)n * p.dim;
        row[p.flip_sin_to_cos ? i : half + i] = cosf(arg);
        row[p.flip_sin_to_cos ? half + i : i] = sinf(arg);
    }
}

#define TRANSPOSE_TILE 32
#define TRANSPOSE_ROWS 8 // threads per tile column: each moves TILE/ROWS elements

// x (B,R,C) -> y (B,C,R) through a shared tile, so reads and writes are both
// coalesced; the +1 column keeps the transposed reads off one bank.
__global__ void transpose_kernel(const float *x, float *y, int B, int R, int C)
{
    __shared__ float tile[TRANSPOSE_TILE][TRANSPOSE_TILE + 1];
    int r0 = blockIdx.x * TRANSPOSE_TILE, c0 = blockIdx.y * TRANSPOSE_TILE;
    for (int b = blockIdx.z; b < B; b += gridDim.z) {
        const float *xb = x + (int64_t)b * R * C;
        float *yb = y + (int64_t)b * R * C;
        for (int k = threadIdx.y; k < TRANSPOSE_TILE; k += TRANSPOSE_ROWS) {
            int r = r0 + k, c = c0 + threadIdx.x;
            if (r < R && c < C) tile[k][threadIdx.x] = xb[(int64_t)r * C + c];
        }
        __syncthreads();
        for (int k = threadIdx.y; k < TRANSPOSE_TILE; k += TRANSPOSE_ROWS) {
            int c = c0 + k, r = r0 + threadIdx.x;
            if (r < R && c < C) yb[(int64_t)c * R + r] = tile[threadIdx.x][k];
        }
        __syncthreads(); // the tile is refilled for the next batch
    }
}

// ids (M) i32, table (V,D) any float storage -> y (M,D); ids clamped to [0, V)
__global__ void embedding_kernel(const int32_t *ids, const void *table, kiln_dtype dtype, float *y, int M, int V,
                                 int D)
{
    GRID_STRIDE(i, (int64_t)M * D)
    {
        int m = (int)(i / D), d = (int)(i % D);
        int id = ids[m] < 0 ? 0 : ids[m] >= V ? V - 1 : ids[m];
        y[i] = load_weight(table, dtype, (size_t)id * D + d);
    }
}

// ---- adapters: the vtable entries

#define SRC(i) ((const float *)cuda_ptr(src[i]))
#define OUT ((float *)cuda_ptr(dst))

template <typename Op>
static kiln_status launch_unary(kiln_backend *be, const kiln_tensor *const *src, kiln_tensor *dst, int64_t n, Op op)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    unary_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, n, op);
    CUDA_TRY_LAUNCH("unary_kernel");
    return KILN_OK;
}

template <typename Op>
static kiln_status launch_binary(kiln_backend *be, const kiln_tensor *const *src, kiln_tensor *dst, int64_t n, Op op)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    binary_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), SRC(1), OUT, n, op);
    CUDA_TRY_LAUNCH("binary_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_silu(kiln_backend *be, const kiln_silu_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, silu_op{});
}

extern "C" kiln_status cuda_sigmoid(kiln_backend *be, const kiln_sigmoid_params *p, const kiln_tensor *const *src,
                                    kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, sigmoid_op{});
}

extern "C" kiln_status cuda_activation(kiln_backend *be, const kiln_activation_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, activation_op{p->kind});
}

extern "C" kiln_status cuda_gelu(kiln_backend *be, const kiln_gelu_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, gelu_op{});
}

extern "C" kiln_status cuda_quick_gelu(kiln_backend *be, const kiln_quick_gelu_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, quick_gelu_op{});
}

extern "C" kiln_status cuda_gelu_tanh(kiln_backend *be, const kiln_gelu_tanh_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, gelu_tanh_op{});
}

extern "C" kiln_status cuda_scale(kiln_backend *be, const kiln_scale_params *p, const kiln_tensor *const *src,
                                  kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, scale_op{p->s});
}

extern "C" kiln_status cuda_leaky_relu(kiln_backend *be, const kiln_leaky_relu_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    return launch_unary(be, src, dst, p->n, leaky_relu_op{p->slope});
}

extern "C" kiln_status cuda_add(kiln_backend *be, const kiln_add_params *p, const kiln_tensor *const *src,
                                kiln_tensor *dst)
{
    return launch_binary(be, src, dst, p->n, add_op{});
}

extern "C" kiln_status cuda_gated_add(kiln_backend *be, const kiln_gated_add_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->B * p->T * p->C;
    gated_add_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), SRC(1), SRC(2),
                                                                  src[3] ? cuda_ptr(src[3]) : NULL,
                                                                  src[3] ? src[3]->dtype : KILN_F32, OUT, *p);
    CUDA_TRY_LAUNCH("gated_add_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_rope(kiln_backend *be, const kiln_rope_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t pairs = (int64_t)p->B * p->T * p->H * p->D / 2;
    rope_kernel<<<ew_blocks(pairs), EW_THREADS, 0, s->stream>>>(SRC(0), SRC(1), OUT, *p);
    CUDA_TRY_LAUNCH("rope_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_mul(kiln_backend *be, const kiln_mul_params *p, const kiln_tensor *const *src,
                                kiln_tensor *dst)
{
    return launch_binary(be, src, dst, p->n, mul_op{});
}

extern "C" kiln_status cuda_geglu(kiln_backend *be, const kiln_geglu_params *p, const kiln_tensor *const *src,
                                  kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    geglu_kernel<<<ew_blocks((int64_t)p->M * p->N), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, p->M, p->N);
    CUDA_TRY_LAUNCH("geglu_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_add_channel_bias(kiln_backend *be, const kiln_add_channel_bias_params *p,
                                             const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * p->HW;
    add_channel_bias_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), SRC(1), OUT, p->N, p->C, p->HW);
    CUDA_TRY_LAUNCH("add_channel_bias_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_concat_channels(kiln_backend *be, const kiln_concat_channels_params *p,
                                            const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * (p->Ca + p->Cb) * p->HW;
    concat_channels_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), SRC(1), OUT, p->N, p->Ca, p->Cb,
                                                                        p->HW);
    CUDA_TRY_LAUNCH("concat_channels_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_pad2d(kiln_backend *be, const kiln_pad2d_params *p, const kiln_tensor *const *src,
                                  kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * (p->top + p->H + p->bottom) * (p->left + p->W + p->right);
    pad2d_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, *p);
    CUDA_TRY_LAUNCH("pad2d_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_upsample_nearest2x(kiln_backend *be, const kiln_upsample_nearest2x_params *p,
                                               const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * p->OH * p->OW;
    upsample_nearest2x_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, p->N * p->C, p->H, p->W,
                                                                           p->OH, p->OW);
    CUDA_TRY_LAUNCH("upsample_nearest2x_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_resize(kiln_backend *be, const kiln_resize_params *p, const kiln_tensor *const *src,
                                   kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * p->OH * p->OW;
    resize_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, *p, (float)p->H / (float)p->OH,
                                                              (float)p->W / (float)p->OW);
    CUDA_TRY_LAUNCH("resize_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_slerp_resize(kiln_backend *be, const kiln_slerp_resize_params *p,
                                         const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    const bool wide = p->axis == 0;
    int64_t n = (int64_t)p->N * (wide ? (int64_t)p->H * p->out : (int64_t)p->out * p->W);
    slerp_resize_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, *p,
                                                                    (float)(wide ? p->W : p->H) / (float)p->out);
    CUDA_TRY_LAUNCH("slerp_resize_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_prelu(kiln_backend *be, const kiln_prelu_params *p, const kiln_tensor *const *src,
                                  kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * p->HW;
    prelu_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), cuda_ptr(src[1]), src[1]->dtype, OUT, *p);
    CUDA_TRY_LAUNCH("prelu_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_pixel_shuffle(kiln_backend *be, const kiln_pixel_shuffle_params *p,
                                          const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * p->r * p->r * p->H * p->W;
    pixel_shuffle_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, *p);
    CUDA_TRY_LAUNCH("pixel_shuffle_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_avg_pool2x2(kiln_backend *be, const kiln_avg_pool2x2_params *p,
                                        const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * p->C * ((p->H + 2 * p->pad_h) / 2) * ((p->W + 2 * p->pad_w) / 2);
    avg_pool2x2_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, *p);
    CUDA_TRY_LAUNCH("avg_pool2x2_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_timestep_embedding(kiln_backend *be, const kiln_timestep_embedding_params *p,
                                               const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t n = (int64_t)p->N * (p->dim / 2);
    timestep_embedding_kernel<<<ew_blocks(n), EW_THREADS, 0, s->stream>>>(SRC(0), OUT, *p);
    CUDA_TRY_LAUNCH("timestep_embedding_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_transpose(kiln_backend *be, const kiln_transpose_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    // R on x (no practical limit), C on y (up to 65535 tiles), batches on z
    dim3 grid(cuda_blocks(p->R, TRANSPOSE_TILE), cuda_blocks(p->C, TRANSPOSE_TILE), p->B < 65535 ? p->B : 65535);
    if (grid.y > 65535)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda transpose: %d columns exceed the grid (%d at most)", p->C,
                         65535 * TRANSPOSE_TILE);
    transpose_kernel<<<grid, dim3(TRANSPOSE_TILE, TRANSPOSE_ROWS), 0, s->stream>>>(SRC(0), OUT, p->B, p->R, p->C);
    CUDA_TRY_LAUNCH("transpose_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_embedding(kiln_backend *be, const kiln_embedding_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    embedding_kernel<<<ew_blocks((int64_t)p->M * p->D), EW_THREADS, 0, s->stream>>>(
        (const int32_t *)cuda_ptr(src[0]), cuda_ptr(src[1]), src[1]->dtype, OUT, p->M, p->V, p->D);
    CUDA_TRY_LAUNCH("embedding_kernel");
    return KILN_OK;
}
