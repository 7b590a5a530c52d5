// Device helpers shared by every kernels/*.cu: widening stored weights to
// f32, narrowing to the compute type, warp and block reductions.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "cuda_backend.h"

#define CUDA_WARP 32
#define CUDA_FULL_MASK 0xffffffffu

// Element i of a weight stored as dtype, widened exactly to f32 (the device
// twin of kiln_load_f32 in tensor.h, for the float storage types).
__device__ __forceinline__ float load_weight(const void *w, kiln_dtype dtype, size_t i)
{
    switch (dtype) {
    case KILN_F16: return __half2float(__ushort_as_half(((const unsigned short *)w)[i]));
    case KILN_BF16: return __uint_as_float((unsigned)((const unsigned short *)w)[i] << 16);
    case KILN_F8_E4M3:
        return __half2float(__half(__nv_cvt_fp8_to_halfraw(((const __nv_fp8_storage_t *)w)[i], __NV_E4M3)));
    case KILN_F8_E5M2:
        return __half2float(__half(__nv_cvt_fp8_to_halfraw(((const __nv_fp8_storage_t *)w)[i], __NV_E5M2)));
    default: return ((const float *)w)[i];
    }
}

// f32 -> the element type a kernel computes in (round to nearest even).
template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Two values as T packed in 32 bits, the first in the low half: one register
// of a tensor-core fragment (mma_16816.cuh).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
    T a = from_f32<T>(lo), b = from_f32<T>(hi);
    unsigned short ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    return (uint32_t)ua | (uint32_t)ub << 16;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int off = CUDA_WARP / 2; off > 0; off /= 2) v += __shfl_xor_sync(CUDA_FULL_MASK, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int off = CUDA_WARP / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(CUDA_FULL_MASK, v, off));
    return v;
}

struct reduce_sum { __device__ float operator()(float a, float b) const { return a + b; } };
struct reduce_max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

// Each of v's K values combined over the block by op, returned to every
// thread; partial is shared scratch, one row of a float per warp for each
// value; the block size is a multiple of 32. Several values share the two
// barriers.
template <int K, typename Op>
__device__ __forceinline__ void block_reduce(float (&v)[K], float (*partial)[CUDA_WARP], Op op)
{
    int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP, nwarps = blockDim.x / CUDA_WARP;
    for (int k = 0; k < K; k++)
        for (int off = CUDA_WARP / 2; off > 0; off /= 2) v[k] = op(v[k], __shfl_xor_sync(CUDA_FULL_MASK, v[k], off));
    __syncthreads(); // partial may still be read from a previous call
    if (lane == 0)
        for (int k = 0; k < K; k++) partial[k][warp] = v[k];
    __syncthreads();
    for (int k = 0; k < K; k++) {
        v[k] = partial[k][0];
        for (int w = 1; w < nwarps; w++) v[k] = op(v[k], partial[k][w]);
    }
}

// Sum over the whole block, returned to every thread; `partial` one float per warp.
__device__ __forceinline__ float block_sum(float v, float *partial)
{
    float sum[1] = {v};
    block_reduce(sum, (float(*)[CUDA_WARP])partial, reduce_sum{});
    return sum[0];
}

static inline unsigned cuda_blocks(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// Blocks of `threads` for a grid-stride loop over n elements: enough to cover
// them once, at most 2^20 (the loop strides over the rest).
static inline unsigned cuda_stride_blocks(int64_t n, int threads)
{
    unsigned b = cuda_blocks(n, threads);
    return b < (1u << 20) ? b : (1u << 20);
}

// n rounded up to a multiple of m.
static inline int64_t cuda_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
