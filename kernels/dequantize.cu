// GGUF's block-quantized weights widened for the GEMM: cuda_convert hands a
// quantized source here. Each value is decoded as runtime/quant.c decodes it
// (ggml's dequantize_row_*), the products in the same order, and as
// shaders/dequantize.comp does on Vulkan; tests/cuda_emu checks every type
// against quant.c. One thread per value in a grid-stride loop: the weight of
// one layer at a time goes through this, as matmul's scratch.
#include "cuda_common.cuh"

#define DEQUANTIZE_THREADS 256

__device__ __forceinline__ float half_at(const uint8_t *p) { return __half2float(__ushort_as_half((unsigned short)(p[0] | p[1] << 8))); }
__device__ __forceinline__ uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
// The low or high nibble of q[e % 16]: value e of a 32-value block.
__device__ __forceinline__ int nibble(const uint8_t *q, int e) { return (q[e % 16] >> (4 * (e / 16))) & 15; }

__device__ __forceinline__ float iq4_value(int i)
{
    const int8_t values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    return (float)values[i];
}

// Q4_K's and Q5_K's 6-bit scale and minimum of sub-block sb, from 12 bytes at s.
__device__ __forceinline__ void scale_min_k4(const uint8_t *s, int sb, int *scale, int *min)
{
    if (sb < 4) {
        *scale = s[sb] & 63;
        *min = s[sb + 4] & 63;
    } else {
        *scale = (s[sb + 4] & 15) | ((s[sb - 4] >> 6) << 4);
        *min = (s[sb + 4] >> 4) | ((s[sb] >> 6) << 4);
    }
}

// Value e of the block at b.
__device__ float quant_value(const uint8_t *b, kiln_dtype dtype, int e)
{
    switch (dtype) {
    case KILN_Q4_0: return (float)(nibble(b + 2, e) - 8) * half_at(b);
    case KILN_Q4_1: return half_at(b) * (float)nibble(b + 4, e) + half_at(b + 2);
    case KILN_Q5_0: return (float)((nibble(b + 6, e) | (int)((u32_at(b + 2) >> e) & 1) << 4) - 16) * half_at(b);
    case KILN_Q5_1:
        return half_at(b) * (float)(nibble(b + 8, e) | (int)((u32_at(b + 4) >> e) & 1) << 4) + half_at(b + 2);
    case KILN_Q8_0: return (float)(int8_t)b[2 + e] * half_at(b);
    case KILN_Q2_K: {
        const int half = e / 128, r = e % 128;
        const int q = (b[16 + half * 32 + r % 32] >> (2 * (r / 32))) & 3;
        const uint8_t s = b[e / 16];
        return half_at(b + 80) * (float)(s & 15) * (float)q - half_at(b + 82) * (float)(s >> 4);
    }
    case KILN_Q3_K: {
        const int half = e / 128, r = e % 128, s = r / 32, l = r % 32;
        const int low = (b[32 + half * 32 + l] >> (2 * s)) & 3;
        const int q = low - (((b[l] >> (half * 4 + s)) & 1) ? 0 : 4);
        const int sb = e / 16;
        const int scale_low = sb < 8 ? b[96 + sb] & 15 : b[88 + sb] >> 4;
        const int scale_high = (b[104 + sb % 4] >> (2 * (sb / 4))) & 3;
        return half_at(b + 108) * (float)((scale_low | scale_high << 4) - 32) * (float)q;
    }
    case KILN_Q4_K:
    case KILN_Q5_K: {
        const int sb = e / 32, l = e % 32;
        int scale, min;
        scale_min_k4(b + 4, sb, &scale, &min);
        const float dl = half_at(b) * (float)scale, ml = half_at(b + 2) * (float)min;
        int q;
        if (dtype == KILN_Q4_K) q = (b[16 + sb / 2 * 32 + l] >> (4 * (sb % 2))) & 15;
        else q = ((b[48 + sb / 2 * 32 + l] >> (4 * (sb % 2))) & 15) | ((b[16 + l] >> sb) & 1) << 4;
        return dl * (float)q - ml;
    }
    case KILN_Q6_K: {
        const int half = e / 128, r = e % 128;
        const int low = (b[half * 64 + r % 64] >> (4 * (r / 64))) & 15;
        const int high = (b[128 + half * 32 + r % 32] >> (2 * (r / 32))) & 3;
        return half_at(b + 208) * (float)(int8_t)b[192 + e / 16] * (float)((low | high << 4) - 32);
    }
    case KILN_IQ4_NL: return half_at(b) * iq4_value(nibble(b + 2, e));
    case KILN_IQ4_XS: {
        const int sb = e / 32, l = e % 32;
        const unsigned scales_high = (unsigned)(b[2] | b[3] << 8);
        const int scale = (((b[4 + sb / 2] >> (4 * (sb % 2))) & 15) | ((scales_high >> (2 * sb)) & 3) << 4) - 32;
        const float dl = half_at(b) * (float)scale;
        return dl * iq4_value((b[8 + sb * 16 + l % 16] >> (4 * (l / 16))) & 15);
    }
    default: return 0.0f;
    }
}

template <typename T>
__global__ void dequantize_kernel(const uint8_t *src, kiln_dtype dtype, int block, int block_bytes, T *dst, int64_t n)
{
    GRID_STRIDE(i, n) dst[i] = from_f32<T>(quant_value(src + i / block * block_bytes, dtype, (int)(i % block)));
}

extern "C" kiln_status cuda_dequantize(cuda_state *s, const void *src, kiln_dtype src_dtype, void *dst,
                                       kiln_dtype dst_dtype, int64_t n)
{
    int block, block_bytes;
    if (!kiln_quant_block(src_dtype, &block, &block_bytes) || n % block)
        return kiln_fail(KILN_ERR_INVALID_ARG, "cuda: %lld values are not whole %s blocks", (long long)n,
                         kiln_dtype_name(src_dtype));
    const uint8_t *q = (const uint8_t *)src;
    unsigned blocks = cuda_stride_blocks(n, DEQUANTIZE_THREADS);
    switch (dst_dtype) {
    case KILN_F16:
        dequantize_kernel<__half><<<blocks, DEQUANTIZE_THREADS, 0, s->stream>>>(q, src_dtype, block, block_bytes,
                                                                               (__half *)dst, n);
        break;
    case KILN_BF16:
        dequantize_kernel<__nv_bfloat16><<<blocks, DEQUANTIZE_THREADS, 0, s->stream>>>(q, src_dtype, block, block_bytes,
                                                                                       (__nv_bfloat16 *)dst, n);
        break;
    default:
        dequantize_kernel<float><<<blocks, DEQUANTIZE_THREADS, 0, s->stream>>>(q, src_dtype, block, block_bytes,
                                                                              (float *)dst, n);
        break;
    }
    CUDA_TRY_LAUNCH("dequantize_kernel");
    return KILN_OK;
}
