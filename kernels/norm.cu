// Normalisations: group norm (+ fused SiLU), the row norms (layer norm, RMS
// norm, adaLN), row softmax.
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
