// Normalisations and other reductions over a row, plane or image: group norm
// (+ fused SiLU), the row norms (layer norm, RMS norm, adaLN), row softmax,
// FreeU's backbone scaling and skip filter.
// Like runtime/cpu_ref.c, statistics take two passes (the mean, then the
// squared deviations from it), which stays accurate when the mean is large
// against the spread.
#include "cuda_common.cuh"

// Group norm over x (N,C,HW) in two launches, so that a SD group norm (2 x 32
// groups of 10^4-10^6 elements) spreads over hundreds of blocks instead of 64:
//   group_norm_stats_kernel  one block per slice of GN_SLICE elements of a
//                            group: the slice's mean and sum of squared
//                            deviations from it (two passes over the slice,
//                            the second from cache);
//   group_norm_apply_kernel  the same blocks again: each merges its group's
//                            slice statistics (the pairwise-variance identity:
//                            M2 = sum M2_i + n_i (mean_i - mean)^2), then
//                            normalises its slice, SiLU fused.
#define GN_SLICE 4096
#define GN_THREADS 256

struct gn_slice {
    int64_t start;
    int len;
    const float *x; // the slice's first element
    int64_t group;  // n * groups + g
};

__device__ __forceinline__ gn_slice gn_locate(const float *x, const kiln_group_norm_params &p)
{
    int64_t group_size = (int64_t)(p.C / p.groups) * p.HW;
    gn_slice sl;
    sl.group = (int64_t)blockIdx.z * p.groups + blockIdx.y;
    sl.start = (int64_t)blockIdx.x * GN_SLICE;
    sl.len = (int)min((int64_t)GN_SLICE, group_size - sl.start);
    sl.x = x + sl.group * group_size + sl.start; // groups are contiguous in (N,C,HW)
    return sl;
}

__global__ void __launch_bounds__(GN_THREADS)
    group_norm_stats_kernel(const float *x, float2 *partials, kiln_group_norm_params p)
{
    __shared__ float scratch[32];
    gn_slice sl = gn_locate(x, p);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < sl.len; i += blockDim.x) sum += sl.x[i];
    float mean = block_sum(sum, scratch) / (float)sl.len;
    float m2 = 0.0f;
    for (int i = threadIdx.x; i < sl.len; i += blockDim.x) {
        float d = sl.x[i] - mean;
        m2 += d * d;
    }
    m2 = block_sum(m2, scratch);
    if (threadIdx.x == 0) partials[sl.group * gridDim.x + blockIdx.x] = make_float2(mean, m2);
}

__global__ void __launch_bounds__(GN_THREADS)
    group_norm_apply_kernel(const float *x, const float2 *partials, const void *gamma, const void *beta,
                            kiln_dtype gamma_dtype, kiln_dtype beta_dtype, float *y, kiln_group_norm_params p)
{
    __shared__ float scratch[32];
    gn_slice sl = gn_locate(x, p);
    const int64_t group_size = (int64_t)(p.C / p.groups) * p.HW;
    const float2 *part = partials + sl.group * gridDim.x;
    // slice s holds min(GN_SLICE, group_size - s * GN_SLICE) elements
    float wsum = 0.0f;
    for (int s = threadIdx.x; s < (int)gridDim.x; s += blockDim.x)
        wsum += (float)min((int64_t)GN_SLICE, group_size - (int64_t)s * GN_SLICE) * part[s].x;
    float mean = block_sum(wsum, scratch) / (float)group_size;
    float m2 = 0.0f;
    for (int s = threadIdx.x; s < (int)gridDim.x; s += blockDim.x) {
        float d = part[s].x - mean;
        m2 += part[s].y + (float)min((int64_t)GN_SLICE, group_size - (int64_t)s * GN_SLICE) * d * d;
    }
    float rstd = 1.0f / sqrtf(block_sum(m2, scratch) / (float)group_size + p.eps);

    const int cpg = p.C / p.groups;
    const int64_t ch0 = (int64_t)blockIdx.y * cpg; // the group's first channel
    float *yg = y + (sl.x - x);
    for (int i = threadIdx.x; i < sl.len; i += blockDim.x) {
        int ch = (int)(ch0 + (sl.start + i) / p.HW);
        float v = (sl.x[i] - mean) * rstd * load_weight(gamma, gamma_dtype, ch) + load_weight(beta, beta_dtype, ch);
        yg[i] = p.silu ? v / (1.0f + expf(-v)) : v;
    }
}

// The row norms' affines: what multiplies and what is added to element d of
// normalised row m.
struct ln_affine { // layer norm: gamma, beta
    const void *gamma, *beta;
    kiln_dtype gamma_dtype, beta_dtype;
    __device__ float scale(int64_t, int d) const { return load_weight(gamma, gamma_dtype, d); }
    __device__ float shift(int64_t, int d) const { return load_weight(beta, beta_dtype, d); }
};
struct rms_affine { // RMS norm: gamma alone
    const void *gamma;
    kiln_dtype gamma_dtype;
    __device__ float scale(int64_t, int d) const { return load_weight(gamma, gamma_dtype, d); }
    __device__ float shift(int64_t, int) const { return 0.0f; }
};
struct ada_affine { // adaLN: 1 + the scale row, and the shift row, of the row's batch element's modulation
    const float *mod; // (B,K,C)
    const void *table; // (K,C) or NULL
    kiln_dtype table_dtype;
    int T, K, C, scale_row, shift_row;
    __device__ float row(int64_t m, int r, int d) const
    {
        int64_t b = m / T;
        return mod[(b * K + r) * C + d] + (table ? load_weight(table, table_dtype, (size_t)r * C + d) : 0.0f);
    }
    __device__ float scale(int64_t m, int d) const { return 1.0f + row(m, scale_row, d); }
    __device__ float shift(int64_t m, int d) const { return row(m, shift_row, d); }
};

// x (M,D): one warp per row; rows are short (320-4096), so a warp's lanes
// cover a row in a few strides and no shared memory is needed. CENTRE: the
// mean is taken away (layer norms) or not (RMS norm).
#define LN_WARPS 4
template <bool CENTRE, typename Affine>
__global__ void row_norm_kernel(const float *x, float *y, int M, int D, float eps, Affine a)
{
    int lane = threadIdx.x % CUDA_WARP;
    int64_t m = (int64_t)blockIdx.x * LN_WARPS + threadIdx.x / CUDA_WARP;
    if (m >= M) return; // whole warps leave together: no shuffle is left half-empty
    const float *row = x + m * D;
    float *out = y + m * D;

    float mean = 0.0f;
    if (CENTRE) {
        float sum = 0.0f;
        for (int d = lane; d < D; d += CUDA_WARP) sum += row[d];
        mean = warp_sum(sum) / (float)D;
    }
    float sumsq = 0.0f;
    for (int d = lane; d < D; d += CUDA_WARP) sumsq += (row[d] - mean) * (row[d] - mean);
    float rstd = 1.0f / sqrtf(warp_sum(sumsq) / (float)D + eps);
    for (int d = lane; d < D; d += CUDA_WARP) out[d] = (row[d] - mean) * rstd * a.scale(m, d) + a.shift(m, d);
}

template <bool CENTRE, typename Affine>
static kiln_status launch_row_norm(kiln_backend *be, const kiln_tensor *x, kiln_tensor *y, int64_t M, int D,
                                   float eps, Affine a)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    if (M > INT32_MAX) return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda norm: %lld rows", (long long)M);
    row_norm_kernel<CENTRE><<<cuda_blocks(M, LN_WARPS), LN_WARPS * CUDA_WARP, 0, s->stream>>>(
        (const float *)cuda_ptr(x), (float *)cuda_ptr(y), (int)M, D, eps, a);
    CUDA_TRY_LAUNCH("row_norm_kernel");
    return KILN_OK;
}

// x (M,N): one warp per row; exp is recomputed in the last pass rather than
// stored, which gives the same values as the reference's stored ones.
#define SOFTMAX_WARPS 4
__global__ void softmax_kernel(const float *x, float *y, int M, int N)
{
    int lane = threadIdx.x % CUDA_WARP;
    int64_t m = (int64_t)blockIdx.x * SOFTMAX_WARPS + threadIdx.x / CUDA_WARP;
    if (m >= M) return;
    const float *row = x + m * N;
    float *out = y + m * N;
    float mx = -INFINITY;
    for (int n = lane; n < N; n += CUDA_WARP) mx = fmaxf(mx, row[n]);
    mx = warp_max(mx);
    float denom = 0.0f;
    for (int n = lane; n < N; n += CUDA_WARP) denom += expf(row[n] - mx);
    denom = warp_sum(denom);
    for (int n = lane; n < N; n += CUDA_WARP) out[n] = expf(row[n] - mx) / denom;
}

// ---- FreeU (ops.h: kiln_freeu_backbone_params, kiln_fourier_filter_params).
// Both are small next to the decoder block's convs, so each image (v2) or
// plane (the filter) is one block, reduced and then rewritten by it: no
// scratch, and each thread reads a pixel before writing it, so y may be x.

// FreeU v1: the first C/2 channels of x (N,C,HW) times b.
#define FREEU_THREADS 256
__global__ void freeu_scale_kernel(const float *x, float *y, int64_t n, int C, int HW, float b)
{
    GRID_STRIDE(i, n) y[i] = (int)(i / HW % C) < C / 2 ? x[i] * b : x[i];
}

// Summed in channel order, as the reference sums, so both passes and the CPU
// see the same means and thus the same min and max.
__device__ __forceinline__ float freeu_pixel_mean(const float *x, int C, int HW, int i)
{
    float sum = 0.0f;
    for (int c = 0; c < C; c++) sum += x[(int64_t)c * HW + i];
    return sum / (float)C;
}

// FreeU v2: one block per image of x (N,C,HW). Big blocks, since a batch
// has only a few images.
#define FREEU_V2_THREADS 1024
__global__ void __launch_bounds__(FREEU_V2_THREADS)
    freeu_v2_kernel(const float *x, float *y, int C, int HW, float b)
{
    __shared__ float partial[2][CUDA_WARP];
    const float *xn = x + (int64_t)blockIdx.x * C * HW;
    float *yn = y + (int64_t)blockIdx.x * C * HW;
    // the min as the max of the negated means: one reduction for both
    float top[2] = {-INFINITY, -INFINITY};
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
        float m = freeu_pixel_mean(xn, C, HW, i);
        top[0] = fmaxf(top[0], m);
        top[1] = fmaxf(top[1], -m);
    }
    block_reduce(top, partial, reduce_max{});
    const float hi = top[0], lo = -top[1];
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
        // a flat image gives 0/0 = NaN here, as torch does
        float factor = (b - 1.0f) * ((freeu_pixel_mean(xn, C, HW, i) - lo) / (hi - lo)) + 1.0f;
        for (int c = 0; c < C; c++) {
            int64_t at = (int64_t)c * HW + i;
            yn[at] = c < C / 2 ? xn[at] * factor : xn[at];
        }
    }
}

// e^(2 pi i k / n), the angle rounded to float as the reference rounds it.
// Accurate sincosf (no fast math): the CPU takes cosf and sinf.
__device__ __forceinline__ void fourier_twiddle(int k, int n, float *c, float *s)
{
    sincosf(2.0f * (float)M_PI * (float)k / (float)n, s, c);
}

// FreeU's skip filter, one block per (H,W) plane of x (N,C,H,W): the plane's
// spectrum at the frequencies 0 and -1 of each axis (cpu_ref_fourier_filter's
// comment), then x plus (s - 1) times their part of x. The twiddles are
// recomputed per pixel rather than tabled, so no plane is too wide for
// shared memory.
#define FOURIER_THREADS 256
__global__ void __launch_bounds__(FOURIER_THREADS)
    fourier_filter_kernel(const float *x, float *y, int H, int W, float s)
{
    __shared__ float partial[7][CUDA_WARP];
    const int HW = H * W;
    const float *xp = x + (int64_t)blockIdx.x * HW;
    float *yp = y + (int64_t)blockIdx.x * HW;
    // X(0,0); X(-1,0), X(0,-1), X(-1,-1) as real and imaginary parts
    float X[7] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
        float ch, sh, cw, sw;
        fourier_twiddle(i / W, H, &ch, &sh);
        fourier_twiddle(i % W, W, &cw, &sw);
        float v = xp[i];
        X[0] += v;
        X[1] += v * ch, X[2] += v * sh;
        X[3] += v * cw, X[4] += v * sw;
        X[5] += v * (ch * cw - sh * sw), X[6] += v * (sh * cw + ch * sw);
    }
    block_reduce(X, partial, reduce_sum{});
    // an axis of 1 has no frequency -1 of its own: it is 0 again
    const float rows = H > 1 ? 1.0f : 0.0f, cols = W > 1 ? 1.0f : 0.0f;
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
        float ch, sh, cw, sw;
        fourier_twiddle(i / W, H, &ch, &sh);
        fourier_twiddle(i % W, W, &cw, &sw);
        float c11 = ch * cw - sh * sw, s11 = sh * cw + ch * sw;
        float low = X[0] + rows * (X[1] * ch + X[2] * sh) + cols * (X[3] * cw + X[4] * sw) +
                    rows * cols * (X[5] * c11 + X[6] * s11);
        yp[i] = xp[i] + (s - 1.0f) * (low / (float)HW);
    }
}

extern "C" kiln_status cuda_group_norm(kiln_backend *be, const kiln_group_norm_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t group_size = (int64_t)(p->C / p->groups) * p->HW;
    int64_t slices = (group_size + GN_SLICE - 1) / GN_SLICE;
    if (p->N > 65535 || p->groups > 65535 || slices > INT32_MAX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda group_norm: batch %d x %d groups of %lld elements too large",
                         p->N, p->groups, (long long)group_size);
    float2 *partials;
    TRY(cuda_scratch(s, (size_t)p->N * p->groups * slices * sizeof(float2), (void **)&partials));
    dim3 grid((unsigned)slices, (unsigned)p->groups, (unsigned)p->N);
    const float *x = (const float *)cuda_ptr(src[0]);
    group_norm_stats_kernel<<<grid, GN_THREADS, 0, s->stream>>>(x, partials, *p);
    CUDA_TRY_LAUNCH("group_norm_stats_kernel");
    group_norm_apply_kernel<<<grid, GN_THREADS, 0, s->stream>>>(x, partials, cuda_ptr(src[1]), cuda_ptr(src[2]),
                                                                src[1]->dtype, src[2]->dtype, (float *)cuda_ptr(dst),
                                                                *p);
    CUDA_TRY_LAUNCH("group_norm_apply_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_layer_norm(kiln_backend *be, const kiln_layer_norm_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    ln_affine a = {cuda_ptr(src[1]), cuda_ptr(src[2]), src[1]->dtype, src[2]->dtype};
    return launch_row_norm<true>(be, src[0], dst, p->M, p->D, p->eps, a);
}

extern "C" kiln_status cuda_rms_norm(kiln_backend *be, const kiln_rms_norm_params *p,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    rms_affine a = {cuda_ptr(src[1]), src[1]->dtype};
    return launch_row_norm<false>(be, src[0], dst, p->M, p->D, p->eps, a);
}

extern "C" kiln_status cuda_ada_layer_norm(kiln_backend *be, const kiln_ada_layer_norm_params *p,
                                           const kiln_tensor *const *src, kiln_tensor *dst)
{
    ada_affine a = {(const float *)cuda_ptr(src[1]), src[2] ? cuda_ptr(src[2]) : NULL,
                    src[2] ? src[2]->dtype : KILN_F32, p->T, p->K, p->C, p->scale, p->shift};
    return launch_row_norm<true>(be, src[0], dst, (int64_t)p->B * p->T, p->C, p->eps, a);
}

extern "C" kiln_status cuda_softmax(kiln_backend *be, const kiln_softmax_params *p, const kiln_tensor *const *src,
                                    kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    softmax_kernel<<<cuda_blocks(p->M, SOFTMAX_WARPS), SOFTMAX_WARPS * CUDA_WARP, 0, s->stream>>>(
        (const float *)cuda_ptr(src[0]), (float *)cuda_ptr(dst), p->M, p->N);
    CUDA_TRY_LAUNCH("softmax_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_freeu_backbone(kiln_backend *be, const kiln_freeu_backbone_params *p,
                                           const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    const float *x = (const float *)cuda_ptr(src[0]);
    float *y = (float *)cuda_ptr(dst);
    if (!p->v2) {
        int64_t n = (int64_t)p->N * p->C * p->HW;
        unsigned blocks = cuda_stride_blocks(n, FREEU_THREADS);
        freeu_scale_kernel<<<blocks, FREEU_THREADS, 0, s->stream>>>(x, y, n, p->C, p->HW, p->b);
        CUDA_TRY_LAUNCH("freeu_scale_kernel");
        return KILN_OK;
    }
    // images on x, which takes any int32 N
    freeu_v2_kernel<<<(unsigned)p->N, FREEU_V2_THREADS, 0, s->stream>>>(x, y, p->C, p->HW, p->b);
    CUDA_TRY_LAUNCH("freeu_v2_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_fourier_filter(kiln_backend *be, const kiln_fourier_filter_params *p,
                                           const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    int64_t planes = (int64_t)p->N * p->C, plane = (int64_t)p->H * p->W;
    if (planes > INT32_MAX || plane > INT32_MAX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda fourier_filter: %lld planes of %lld elements too large",
                         (long long)planes, (long long)plane);
    // planes on x: y and z stop at 65535
    fourier_filter_kernel<<<(unsigned)planes, FOURIER_THREADS, 0, s->stream>>>(
        (const float *)cuda_ptr(src[0]), (float *)cuda_ptr(dst), p->H, p->W, p->s);
    CUDA_TRY_LAUNCH("fourier_filter_kernel");
    return KILN_OK;
}
