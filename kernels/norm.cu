// Normalisations: group norm (+ fused SiLU), layer norm, row softmax.
// Like runtime/cpu_ref.c, statistics take two passes (the mean, then the
// squared deviations from it), which stays accurate when the mean is large
// against the spread.
#include "cuda_common.cuh"

// x (N,C,HW): one block per (group, n). Group sizes in SD are 10-40 channels
// times HW, i.e. 10^4-10^6 elements, so each thread strides over many.
__global__ void group_norm_kernel(const float *x, const void *gamma, const void *beta, kiln_dtype gamma_dtype,
                                  kiln_dtype beta_dtype, float *y, kiln_group_norm_params p)
{
    __shared__ float partial[32];
    int g = blockIdx.x, n = blockIdx.y;
    int cpg = p.C / p.groups;
    int64_t group_size = (int64_t)cpg * p.HW;
    int64_t base = ((int64_t)n * p.C + (int64_t)g * cpg) * p.HW;
    const float *xg = x + base;
    float *yg = y + base;

    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) sum += xg[i];
    float mean = block_sum(sum, partial) / (float)group_size;

    float sumsq = 0.0f;
    for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
        float d = xg[i] - mean;
        sumsq += d * d;
    }
    float rstd = 1.0f / sqrtf(block_sum(sumsq, partial) / (float)group_size + p.eps);

    for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
        int ch = g * cpg + (int)(i / p.HW);
        float v = (xg[i] - mean) * rstd * load_weight(gamma, gamma_dtype, ch) + load_weight(beta, beta_dtype, ch);
        yg[i] = p.silu ? v / (1.0f + expf(-v)) : v;
    }
}

// x (M,D): one warp per row; rows are short (320-2048), so a warp's lanes
// cover a row in a few strides and no shared memory is needed.
#define LN_WARPS 4
__global__ void layer_norm_kernel(const float *x, const void *gamma, const void *beta, kiln_dtype gamma_dtype,
                                  kiln_dtype beta_dtype, float *y, int M, int D, float eps)
{
    int lane = threadIdx.x % CUDA_WARP;
    int64_t m = (int64_t)blockIdx.x * LN_WARPS + threadIdx.x / CUDA_WARP;
    if (m >= M) return; // whole warps leave together: no shuffle is left half-empty
    const float *row = x + m * D;
    float *out = y + m * D;

    float sum = 0.0f;
    for (int d = lane; d < D; d += CUDA_WARP) sum += row[d];
    float mean = warp_sum(sum) / (float)D;
    float sumsq = 0.0f;
    for (int d = lane; d < D; d += CUDA_WARP) sumsq += (row[d] - mean) * (row[d] - mean);
    float rstd = 1.0f / sqrtf(warp_sum(sumsq) / (float)D + eps);
    for (int d = lane; d < D; d += CUDA_WARP)
        out[d] = (row[d] - mean) * rstd * load_weight(gamma, gamma_dtype, d) + load_weight(beta, beta_dtype, d);
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

// Enough threads to cover a group several times over, few enough that the
// 32-128 blocks of a SD group norm each keep their SM's memory pipes busy.
static int group_norm_threads(int64_t group_size)
{
    if (group_size >= 32768) return 1024;
    if (group_size >= 4096) return 512;
    return 128;
}

extern "C" kiln_status cuda_group_norm(kiln_backend *be, const kiln_group_norm_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    if (p->N > 65535) return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda group_norm: batch %d > 65535", p->N);
    int threads = group_norm_threads((int64_t)(p->C / p->groups) * p->HW);
    group_norm_kernel<<<dim3(p->groups, p->N), threads, 0, s->stream>>>(
        (const float *)cuda_ptr(src[0]), cuda_ptr(src[1]), cuda_ptr(src[2]), src[1]->dtype, src[2]->dtype,
        (float *)cuda_ptr(dst), *p);
    CUDA_TRY_LAUNCH("group_norm_kernel");
    return KILN_OK;
}

extern "C" kiln_status cuda_layer_norm(kiln_backend *be, const kiln_layer_norm_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    layer_norm_kernel<<<cuda_blocks(p->M, LN_WARPS), LN_WARPS * CUDA_WARP, 0, s->stream>>>(
        (const float *)cuda_ptr(src[0]), cuda_ptr(src[1]), cuda_ptr(src[2]), src[1]->dtype, src[2]->dtype,
        (float *)cuda_ptr(dst), p->M, p->D, p->eps);
    CUDA_TRY_LAUNCH("layer_norm_kernel");
    return KILN_OK;
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
