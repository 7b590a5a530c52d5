// conv2d as an implicit GEMM: the im2col matrix is never stored, each tile
// of it is gathered from x straight into shared memory.
//
//   GEMM rows    m = (n, oy, ox)        M = N*OH*OW output pixels
//   GEMM cols    o                      O output channels
//   reduction    k = (c, ky, kx)        K = C*KH*KW
//   A[m][k] = x[n][c][oy*stride - pad + ky][ox*stride - pad + kx] (0 outside)
//   B[k][o] = w[o][k]                   (w (O,C,KH,KW) is already (O,K))
//   y[n][o][oy][ox] = sum_k A[m][k] B[k][o] + bias[o]
//
// Two kernels share the tile gathering:
//   conv_f32_kernel   f32 FMA on CUDA cores (f32 mode; exact to rounding)
//   conv_wmma_kernel  f16/bf16 tensor cores, f32 accumulation (f16/bf16 mode)
// Weights of any stored dtype are widened in the gather, so fp8 works too.
#include <mma.h>

#include "cuda_common.cuh"

using namespace nvcuda;

// Where output pixel m reads from: its image and top-left input corner.
struct conv_pixel {
    int64_t x_base; // offset of image n in x, -1 when m is past the end
    int iy0, ix0;
};

__device__ __forceinline__ conv_pixel conv_locate(const kiln_conv2d_params &p, int64_t m, int64_t M)
{
    conv_pixel px = {-1, 0, 0};
    if (m >= M) return px;
    int ox = (int)(m % p.OW), oy = (int)(m / p.OW % p.OH);
    int64_t n = m / ((int64_t)p.OW * p.OH);
    px.x_base = n * p.C * p.H * p.W;
    px.iy0 = oy * p.stride - p.pad;
    px.ix0 = ox * p.stride - p.pad;
    return px;
}

// A[m][k] for the pixel located by px.
__device__ __forceinline__ float conv_gather(const float *x, const kiln_conv2d_params &p, conv_pixel px, int k,
                                             int K)
{
    if (px.x_base < 0 || k >= K) return 0.0f;
    int taps = p.KH * p.KW;
    int c = k / taps, r = k % taps;
    int iy = px.iy0 + r / p.KW, ix = px.ix0 + r % p.KW;
    if (iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) return 0.0f;
    return x[px.x_base + ((int64_t)c * p.H + iy) * p.W + ix];
}

// B[k][o], widened from the stored weight dtype.
__device__ __forceinline__ float conv_weight(const void *w, kiln_dtype dtype, int o, int k, int O, int K)
{
    return o < O && k < K ? load_weight(w, dtype, (size_t)o * K + k) : 0.0f;
}

// Writes y[n][o][oy][ox] = acc + bias[o] for GEMM element (m, o).
__device__ __forceinline__ void conv_store(float *y, const kiln_conv2d_params &p, int64_t m, int o, float acc,
                                           const void *bias, kiln_dtype bias_dtype)
{
    int64_t hw = (int64_t)p.OH * p.OW;
    int64_t n = m / hw, pix = m % hw;
    y[(n * p.O + o) * hw + pix] = acc + load_weight(bias, bias_dtype, o);
}

// ---- f32: 64x64 output tile, 256 threads, 4x4 outputs each

#define F32_BM 64
#define F32_BN 64
#define F32_BK 16
#define F32_THREADS 256

__global__ void __launch_bounds__(F32_THREADS)
    conv_f32_kernel(const float *x, const void *w, kiln_dtype w_dtype, const void *bias, kiln_dtype bias_dtype,
                    float *y, kiln_conv2d_params p)
{
    __shared__ float a_s[F32_BK][F32_BM]; // A tile, k-major: a warp reads 32 consecutive pixels
    __shared__ float b_s[F32_BK][F32_BN];
    const int64_t M = (int64_t)p.N * p.OH * p.OW;
    const int K = p.C * p.KH * p.KW;
    const int64_t m0 = (int64_t)blockIdx.x * F32_BM;
    const int o0 = blockIdx.y * F32_BN;
    const int t = threadIdx.x;
    // gathering: this thread always loads pixel m0 + t % 64, rows k = t / 64 + 4e
    conv_pixel px = conv_locate(p, m0 + t % F32_BM, M);
    // computing: pixels m0 + tx + 16i, channels o0 + ty + 16j
    const int tx = t % 16, ty = t / 16;
    float acc[4][4] = {};

    for (int k0 = 0; k0 < K; k0 += F32_BK) {
        for (int e = 0; e < F32_BK * F32_BM / F32_THREADS; e++) {
            int kl = t / F32_BM + e * (F32_THREADS / F32_BM);
            a_s[kl][t % F32_BM] = conv_gather(x, p, px, k0 + kl, K);
        }
        for (int e = 0; e < F32_BK * F32_BN / F32_THREADS; e++) {
            int idx = e * F32_THREADS + t; // consecutive threads walk a weight row
            int kl = idx % F32_BK, ol = idx / F32_BK;
            b_s[kl][ol] = conv_weight(w, w_dtype, o0 + ol, k0 + kl, p.O, K);
        }
        __syncthreads();
#pragma unroll
        for (int kl = 0; kl < F32_BK; kl++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = a_s[kl][tx + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = b_s[kl][ty + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t m = m0 + tx + 16 * i;
            int o = o0 + ty + 16 * j;
            if (m < M && o < p.O) conv_store(y, p, m, o, acc[i][j], bias, bias_dtype);
        }
}

// ---- tensor cores: 64x64 output tile, 4 warps in a 2x2 grid of 32x32

#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
#define TC_THREADS 128
#define TC_LD (TC_BK + 8)  // half/bf16 row stride: a multiple of 8, off 64 bytes
#define TC_LD_C (TC_BM + 4) // float stride of the output staging tile

template <typename T>
__global__ void __launch_bounds__(TC_THREADS)
    conv_wmma_kernel(const float *x, const void *w, kiln_dtype w_dtype, const void *bias, kiln_dtype bias_dtype,
                     float *y, kiln_conv2d_params p)
{
    __shared__ __align__(32) T a_s[TC_BM * TC_LD];    // A tile (m, k): row-major matrix_a
    __shared__ __align__(32) T b_s[TC_BN * TC_LD];    // B tile stored (o, k): col-major matrix_b
    __shared__ __align__(32) float c_s[TC_BN * TC_LD_C]; // result (o, m) for coalesced stores
    const int64_t M = (int64_t)p.N * p.OH * p.OW;
    const int K = p.C * p.KH * p.KW;
    const int64_t m0 = (int64_t)blockIdx.x * TC_BM;
    const int o0 = blockIdx.y * TC_BN;
    const int t = threadIdx.x, warp = t / CUDA_WARP;
    const int wm = (warp % 2) * 32, wn = (warp / 2) * 32; // this warp's 32x32 sub-tile
    conv_pixel px = conv_locate(p, m0 + t % TC_BM, M);

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < K; k0 += TC_BK) {
        for (int e = 0; e < TC_BK * TC_BM / TC_THREADS; e++) {
            int kl = t / TC_BM + e * (TC_THREADS / TC_BM);
            a_s[(t % TC_BM) * TC_LD + kl] = from_f32<T>(conv_gather(x, p, px, k0 + kl, K));
        }
        for (int e = 0; e < TC_BK * TC_BN / TC_THREADS; e++) {
            int idx = e * TC_THREADS + t;
            int kl = idx % TC_BK, ol = idx / TC_BK;
            b_s[ol * TC_LD + kl] = from_f32<T>(conv_weight(w, w_dtype, o0 + ol, k0 + kl, p.O, K));
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < TC_BK; ks += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(a[i], a_s + (wm + 16 * i) * TC_LD + ks, TC_LD);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], b_s + (wn + 16 * j) * TC_LD + ks, TC_LD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

    // element (m, o) of the tile lands at c_s[o * TC_LD_C + m]
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(c_s + (wn + 16 * j) * TC_LD_C + wm + 16 * i, acc[i][j], TC_LD_C,
                                    wmma::mem_col_major);
    __syncthreads();
    for (int idx = t; idx < TC_BM * TC_BN; idx += TC_THREADS) {
        int ml = idx % TC_BM, ol = idx / TC_BM; // consecutive threads: consecutive pixels
        int64_t m = m0 + ml;
        int o = o0 + ol;
        if (m < M && o < p.O) conv_store(y, p, m, o, c_s[ol * TC_LD_C + ml], bias, bias_dtype);
    }
}

extern "C" kiln_status cuda_conv2d(kiln_backend *be, const kiln_conv2d_params *p, const kiln_tensor *const *src,
                                   kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    const float *x = (const float *)cuda_ptr(src[0]);
    const void *w = cuda_ptr(src[1]), *bias = cuda_ptr(src[2]);
    float *y = (float *)cuda_ptr(dst);
    int64_t M = (int64_t)p->N * p->OH * p->OW;
    if ((int64_t)p->C * p->KH * p->KW > INT32_MAX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda conv2d: reduction C*KH*KW too large");

    switch (cuda_gemm_type(s, src[1]->dtype)) {
    case KILN_F16:
    case KILN_BF16: {
        dim3 grid(cuda_blocks(M, TC_BM), cuda_blocks(p->O, TC_BN));
        if (cuda_gemm_type(s, src[1]->dtype) == KILN_BF16)
            conv_wmma_kernel<__nv_bfloat16><<<grid, TC_THREADS, 0, s->stream>>>(x, w, src[1]->dtype, bias,
                                                                                 src[2]->dtype, y, *p);
        else
            conv_wmma_kernel<__half><<<grid, TC_THREADS, 0, s->stream>>>(x, w, src[1]->dtype, bias, src[2]->dtype,
                                                                          y, *p);
        CUDA_TRY_LAUNCH("conv_wmma_kernel");
        return KILN_OK;
    }
    default: {
        dim3 grid(cuda_blocks(M, F32_BM), cuda_blocks(p->O, F32_BN));
        conv_f32_kernel<<<grid, F32_THREADS, 0, s->stream>>>(x, w, src[1]->dtype, bias, src[2]->dtype, y, *p);
        CUDA_TRY_LAUNCH("conv_f32_kernel");
        return KILN_OK;
    }
    }
}
