// conv2d as im2col + tensor-core GEMMs (cuda_gemm, cuBLASLt), the images of
// a batch in one strided-batch launch so that small layers still fill the GPU.
//
// For image n, with P = OH*OW output pixels and K = C*KH*KW taps:
//   col[k][p] = x[n][c][oy*stride - pad + ky][ox*stride - pad + kx] (0 outside),
//               k = (c, ky, kx), p = (oy, ox), in the compute type
//   y[n] (O x P) = w (O x K) . col (K x P), then + bias[o]
// In cuBLASLt's column-major terms y[n] is a P x O matrix (ld P), col a P x K
// one (ld P) and w a K x O one (ld K): D = A . B with nothing transposed.
//
// The column matrices (one per image) are built in pixel chunks that fit
// CONV_COL_BYTES together, so a VAE decode at 1024x1024 (K = 2304, P = 1M)
// needs no gigabytes of scratch; the GEMM of a chunk writes its P-range of y
// through ld = P. Weights that are not already in the compute type are
// converted once per call into scratch.
#include "cuda_common.cuh"

#ifndef CONV_COL_BYTES // tests/cuda_emu shrinks it to exercise the chunking
#define CONV_COL_BYTES ((size_t)64 << 20)
#endif
#define IM2COL_THREADS 256
#define CONV_ALIGN 256

// col[k][p - p0] for p in [p0, p0 + pc) of one image; one block row per k, so
// each block works out its tap (c, ky, kx) once and its threads read along a
// row of x.
template <typename T>
__global__ void im2col_kernel(const float *x, T *col, kiln_conv2d_params p, int64_t p0, int pc, int K)
{
    for (int k = blockIdx.y; k < K; k += gridDim.y) {
        int taps = p.KH * p.KW, c = k / taps, r = k % taps;
        int ky = r / p.KW, kx = r % p.KW;
        const float *plane = x + (int64_t)c * p.H * p.W;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < pc; i += gridDim.x * blockDim.x) {
            int64_t pix = p0 + i;
            int oy = (int)(pix / p.OW), ox = (int)(pix % p.OW);
            int iy = oy * p.stride - p.pad + ky, ix = ox * p.stride - p.pad + kx;
            float v = iy >= 0 && iy < p.H && ix >= 0 && ix < p.W ? plane[(int64_t)iy * p.W + ix] : 0.0f;
            col[(int64_t)k * pc + i] = from_f32<T>(v);
        }
    }
}

// y[n][o][pix] += bias[o], the bias widened from its stored dtype; one block
// row per (n, o).
__global__ void add_conv_bias_kernel(float *y, const void *bias, kiln_dtype bias_dtype, int O, int64_t rows,
                                     int64_t P)
{
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        float b = load_weight(bias, bias_dtype, (size_t)(r % O));
        float *row = y + r * P;
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < P; i += (int64_t)gridDim.x * blockDim.x)
            row[i] += b;
    }
}

static unsigned capped(int64_t blocks, unsigned cap) { return blocks < cap ? (unsigned)blocks : cap; }

template <typename T>
static kiln_status im2col(cuda_state *s, const float *x, void *col, const kiln_conv2d_params *p, int64_t p0, int pc,
                          int K)
{
    dim3 grid(capped(cuda_blocks(pc, IM2COL_THREADS), 1u << 16), capped(K, 65535));
    im2col_kernel<T><<<grid, IM2COL_THREADS, 0, s->stream>>>(x, (T *)col, *p, p0, pc, K);
    CUDA_TRY_LAUNCH("im2col_kernel");
    return KILN_OK;
}

static size_t align_up(size_t n) { return (size_t)cuda_round_up((int64_t)n, CONV_ALIGN); }

extern "C" kiln_status cuda_conv2d(kiln_backend *be, const kiln_conv2d_params *p, const kiln_tensor *const *src,
                                   kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    const int64_t P = (int64_t)p->OH * p->OW, K64 = (int64_t)p->C * p->KH * p->KW;
    if (K64 > INT32_MAX || P > INT32_MAX || (int64_t)p->O * K64 > INT32_MAX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda conv2d: %d channels x %dx%d taps, %lld pixels: too large", p->C,
                         p->KH, p->KW, (long long)P);
    const int K = (int)K64;
    const kiln_dtype type = cuda_gemm_type(s, src[1]->dtype);
    const size_t es = kiln_dtype_size(type);

    // chunk of pixels per GEMM: the whole image if the batch's column matrices fit
    int64_t pc = (int64_t)(CONV_COL_BYTES / ((size_t)K * es * p->N)) / CONV_ALIGN * CONV_ALIGN;
    if (pc < CONV_ALIGN) pc = CONV_ALIGN;
    if (pc > P) pc = P;
    const bool convert_w = src[1]->dtype != type;
    const size_t col_image = align_up((size_t)K * pc * es); // one image's chunk
    size_t col_bytes = col_image * p->N, w_bytes = convert_w ? align_up((size_t)p->O * K * es) : 0;
    char *scratch;
    TRY(cuda_scratch(s, col_bytes + w_bytes, (void **)&scratch));

    const void *w = cuda_ptr(src[1]);
    if (convert_w) {
        TRY(cuda_convert(s, w, src[1]->dtype, scratch + col_bytes, type, (int64_t)p->O * K));
        w = scratch + col_bytes;
    }
    const float *x = (const float *)cuda_ptr(src[0]);
    float *y = (float *)cuda_ptr(dst);
    for (int64_t p0 = 0; p0 < P; p0 += pc) {
        int len = (int)(P - p0 < pc ? P - p0 : pc);
        for (int n = 0; n < p->N; n++) {
            const float *xn = x + (int64_t)n * p->C * p->H * p->W;
            char *col = scratch + n * col_image;
            switch (type) {
            case KILN_F16: TRY(im2col<__half>(s, xn, col, p, p0, len, K)); break;
            case KILN_BF16: TRY(im2col<__nv_bfloat16>(s, xn, col, p, p0, len, K)); break;
            default: TRY(im2col<float>(s, xn, col, p, p0, len, K)); break;
            }
        }
        cuda_gemm_args g = {};
        g.type = type;
        g.m = len;
        g.n = p->O;
        g.k = K;
        g.ldd = (int)P;
        g.a = scratch;
        g.b = w;
        g.d = y + p0;
        g.batch = p->N;
        g.stride_a = (int64_t)(col_image / es);
        g.stride_b = 0;
        g.stride_d = (int64_t)p->O * P;
        TRY(cuda_gemm(s, &g));
    }
    int64_t rows = (int64_t)p->N * p->O;
    dim3 grid(capped(cuda_blocks(P, IM2COL_THREADS), 1u << 16), capped(rows, 65535));
    add_conv_bias_kernel<<<grid, IM2COL_THREADS, 0, s->stream>>>(y, cuda_ptr(src[2]), src[2]->dtype, p->O, rows, P);
    CUDA_TRY_LAUNCH("add_conv_bias_kernel");
    return KILN_OK;
}
