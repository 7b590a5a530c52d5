// A small CUDA-on-CPU emulator, enough to run kiln's kernels for correctness
// (see ../README.md): the blocks of a launch run one after another; a
// block's threads are ucontext coroutines that switch only at __syncthreads,
// __syncwarp, shuffles and tensor-core mma calls (mma_16816.cuh here), which
// are barriers of the block or of the warp. It stands in for every CUDA
// header that kernels/ and runtime/cuda_backend.h include.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <type_traits>
#include <math.h>
#include <string.h>

extern "C" {
#include "tensor.h"
}

using std::max;
using std::min;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct alignas(8) float2 { float x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
extern void *emu_dyn_smem;

// The runtime API that the adapters call.
typedef int cudaError_t;
enum { cudaSuccess = 0 };
typedef void *cudaStream_t;
typedef void *cudaEvent_t; /* cuda_state holds two; the adapters never use them */
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
extern cudaError_t emu_last_error;
extern int emu_smem_attr;
inline cudaError_t cudaGetLastError() { cudaError_t e = emu_last_error; emu_last_error = 0; return e; }
inline const char *cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline const char *cudaGetErrorName(cudaError_t) { return "cudaErrorEmu"; }
template <class F> cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int v) { emu_smem_attr = v; return 0; }

typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0 };
typedef void *cublasLtHandle_t;

// f16/bf16/fp8 through the CPU reference's own conversions (tensor.h).
struct __half_raw { unsigned short x; };
struct __half {
    unsigned short x;
    __half() = default;
    __half(__half_raw r) : x(r.x) {}
};
struct __nv_bfloat16 { unsigned short x; };
inline __half __ushort_as_half(unsigned short u) { __half h; h.x = u; return h; }
inline float __half2float(__half h) { return kiln_f16_to_f32(h.x); }
inline __half __float2half_rn(float f) { __half h; h.x = kiln_f32_to_f16(f); return h; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { __nv_bfloat16 b; b.x = kiln_f32_to_bf16(f); return b; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
// A product rounded alone, never fused: what every product is here, built
// with -ffp-contract=off.
inline float __fmul_rn(float a, float b) { return a * b; }
typedef unsigned char __nv_fp8_storage_t;
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };
inline __half_raw __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t v, __nv_fp8_interpretation_t k)
{
    float f = k == __NV_E4M3 ? kiln_f8e4m3_to_f32(v) : kiln_f8e5m2_to_f32(v);
    return __half_raw{kiln_f32_to_f16(f)};
}
// Barriers and shuffles (emu.cpp). A shuffle is a warp barrier.
void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
void emu_warp_barrier();
float emu_shfl(float v, int src_lane);
inline float __shfl_sync(unsigned, float v, int src) { return emu_shfl(v, src); }
inline float __shfl_xor_sync(unsigned, float v, int m) { return emu_shfl(v, (int)(threadIdx.x % 32) ^ m); }

// Reports a broken CUDA rule (deadlock, too much shared memory, a bad launch)
// and aborts.
void emu_fail(const char *fmt, ...);
void emu_run(const std::function<void()> &body, dim3 grid, dim3 block, size_t smem);
template <class F> void emu_launch(F f, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = 0)
{
    emu_run(std::function<void()>(f), grid, block, smem);
}

