// Attention: o = softmax(q k^T * scale) v per (batch, head), never storing
// the Tq x Tk score matrix. Both kernels stream keys in tiles and keep a
// running row max m and denominator l (online softmax): when a tile raises
// the max, what was accumulated so far is rescaled by exp(m_old - m_new).
//
//   attention_rows_kernel   f32 throughout, any head dim up to 512, causal or
//                           not: the exact path (f32 mode), VAE (D = 512) and
//                           CLIP (causal). One warp per query row.
//   attention_wmma_kernel   tensor cores (WMMA 16x16x16, f16 or bf16 inputs,
//                           f32 accumulation) for D = 40, 64, 80, 128, 160,
//                           non-causal; used in f16/bf16 mode. D is padded only
//                           to the next multiple of 16 (40 -> 48), the mma's K.
//
// Layout: q (B,Tq,H*D), k and v (B,Tk,H*D), o (B,Tq,H*D); head h of row t
// lives at [(b*T + t)*H*D + h*D, +D).
#include <mma.h>

#include "cuda_common.cuh"

using namespace nvcuda;

// ---- f32 path

#define ROWS_WARPS 8 // query rows per block, one per warp
#define ROWS_KEYS 32 // keys per tile, one per lane when scoring
#define ROWS_MAX_D 512

// Shared: q_s (ROWS_WARPS, D) and one tile kv_s (ROWS_KEYS, D|1) that holds
// the keys, then the values. The odd row stride puts the 32 lanes, each
// reading its own key row at the same d, on 32 different banks.
// CHUNKS = ceil(D / 32): output elements per lane, kept in registers.
template <int CHUNKS>
__global__ void __launch_bounds__(ROWS_WARPS *CUDA_WARP)
    attention_rows_kernel(const float *q, const float *k, const float *v, float *o, kiln_attention_params p)
{
    extern __shared__ float rows_smem[];
    const int D = p.D, kv_stride = D | 1;
    float *q_s = rows_smem;                   // (ROWS_WARPS, D)
    float *kv_s = rows_smem + ROWS_WARPS * D; // (ROWS_KEYS, kv_stride)
    int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    int b = blockIdx.z, h = blockIdx.y;
    int i = blockIdx.x * ROWS_WARPS + warp; // this warp's query row
    bool row_valid = i < p.Tq;
    int64_t row = (int64_t)p.H * D;
    const float *kb = k + (int64_t)b * p.Tk * row + (int64_t)h * D;
    const float *vb = v + (int64_t)b * p.Tk * row + (int64_t)h * D;

    for (int d = lane; d < D; d += CUDA_WARP)
        q_s[warp * D + d] = row_valid ? q[((int64_t)b * p.Tq + i) * row + (int64_t)h * D + d] : 0.0f;

    float acc[CHUNKS];
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    // causal: no query of this block sees past its last row
    int last_q = min(p.Tq, (int)(blockIdx.x + 1) * ROWS_WARPS);
    int key_end = p.causal ? min(p.Tk, last_q) : p.Tk;
    for (int j0 = 0; j0 < key_end; j0 += ROWS_KEYS) {
        __syncthreads(); // q_s written / the previous tile's values consumed
        for (int e = threadIdx.x; e < ROWS_KEYS * D; e += blockDim.x) {
            int r = e / D, d = e % D;
            kv_s[r * kv_stride + d] = j0 + r < p.Tk ? kb[(int64_t)(j0 + r) * row + d] : 0.0f;
        }
        __syncthreads();

        int j = j0 + lane; // this lane scores key j
        float s = -INFINITY;
        if (row_valid && j < p.Tk && (!p.causal || j <= i)) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += q_s[warp * D + d] * kv_s[lane * kv_stride + d];
            s = dot * p.scale;
        }
        float m_new = fmaxf(m, warp_max(s));
        // a row that has seen no key yet (m_new = -inf) keeps everything at 0
        float pj = m_new == -INFINITY ? 0.0f : expf(s - m_new);
        float corr = m_new == -INFINITY ? 1.0f : expf(m - m_new);
        l = l * corr + warp_sum(pj);
        m = m_new;
#pragma unroll
        for (int c = 0; c < CHUNKS; c++) acc[c] *= corr;

        __syncthreads(); // every warp has scored this tile's keys
        for (int e = threadIdx.x; e < ROWS_KEYS * D; e += blockDim.x) {
            int r = e / D, d = e % D;
            kv_s[r * kv_stride + d] = j0 + r < p.Tk ? vb[(int64_t)(j0 + r) * row + d] : 0.0f;
        }
        __syncthreads();
        for (int r = 0; r < ROWS_KEYS; r++) {
            float pr = __shfl_sync(CUDA_FULL_MASK, pj, r);
#pragma unroll
            for (int c = 0; c < CHUNKS; c++) {
                int d = c * CUDA_WARP + lane;
                if (d < D) acc[c] += pr * kv_s[r * kv_stride + d];
            }
        }
    }

    if (!row_valid) return;
    float *ob = o + ((int64_t)b * p.Tq + i) * row + (int64_t)h * D;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        int d = c * CUDA_WARP + lane;
        if (d < D) ob[d] = acc[c] / l;
    }
}

static size_t rows_smem_bytes(int D) { return (size_t)(ROWS_WARPS * D + ROWS_KEYS * (D | 1)) * sizeof(float); }

template <int CHUNKS>
static kiln_status launch_rows(cuda_state *s, const kiln_attention_params *p, const float *q, const float *k,
                               const float *v, float *o)
{
    size_t smem = rows_smem_bytes(p->D);
    CUDA_TRY(cudaFuncSetAttribute(attention_rows_kernel<CHUNKS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)smem));
    dim3 grid(cuda_blocks(p->Tq, ROWS_WARPS), p->H, p->B);
    attention_rows_kernel<CHUNKS><<<grid, ROWS_WARPS * CUDA_WARP, smem, s->stream>>>(q, k, v, o, *p);
    CUDA_TRY_LAUNCH("attention_rows_kernel");
    return KILN_OK;
}

// ---- tensor-core path

#define WMMA_M 16
#define TC_WARPS 4                  // each warp owns 16 query rows
#define TC_ROWS (TC_WARPS * WMMA_M) // 64 query rows per block
#define TC_KEYS 32                  // keys per tile: one per lane in the softmax

// Shared-memory plan for head dim D (padded to DP). Row strides are padded
// (+8 halves, +4 floats) off multiples of 128 bytes to spread banks, and stay
// multiples of 16 bytes as WMMA requires; every array starts 32-byte aligned.
template <int D, typename T> struct tc_layout {
    static constexpr int DP = (D + 15) / 16 * 16;
    static constexpr int LD_QK = DP + 8;      // q_s, k_s, v_s (T)
    static constexpr int LD_S = TC_KEYS + 4;  // s_s (float)
    static constexpr int LD_P = TC_KEYS + 8;  // p_s (T)
    static constexpr int LD_O = DP + 4;       // o_s (float)
    static constexpr size_t Q = 0;
    static constexpr size_t K = Q + sizeof(T) * TC_ROWS * LD_QK;
    static constexpr size_t V = K + sizeof(T) * TC_KEYS * LD_QK;
    static constexpr size_t S = V + sizeof(T) * TC_KEYS * LD_QK;
    static constexpr size_t P = S + sizeof(float) * TC_ROWS * LD_S;
    static constexpr size_t O = P + sizeof(T) * TC_ROWS * LD_P;
    static constexpr size_t M = O + sizeof(float) * TC_ROWS * LD_O; // row max
    static constexpr size_t L = M + sizeof(float) * TC_ROWS;        // row denominator
    static constexpr size_t BYTES = L + sizeof(float) * TC_ROWS;
    static_assert(K % 32 == 0 && V % 32 == 0 && S % 32 == 0 && P % 32 == 0 && O % 32 == 0, "WMMA alignment");
};

// Loads rows [r0, r0+nrows) of one head of x (B,T,H*D) as T into dst
// (nrows, ld), zero past T and past D.
template <int D, typename T>
__device__ void tc_load_rows(T *dst, int ld, int nrows, const float *x, int T_len, int64_t row, int r0)
{
    constexpr int DP = tc_layout<D, T>::DP;
    for (int e = threadIdx.x; e < nrows * DP; e += blockDim.x) {
        int r = e / DP, d = e % DP;
        float val = r0 + r < T_len && d < D ? x[(int64_t)(r0 + r) * row + d] : 0.0f;
        dst[r * ld + d] = from_f32<T>(val);
    }
}

template <int D, typename T>
__global__ void __launch_bounds__(TC_WARPS *CUDA_WARP)
    attention_wmma_kernel(const float *q, const float *k, const float *v, float *o, kiln_attention_params p)
{
    using L = tc_layout<D, T>;
    constexpr int DP = L::DP;
    extern __shared__ __align__(128) unsigned char tc_smem[];
    T *q_s = (T *)(tc_smem + L::Q);         // (TC_ROWS, LD_QK)
    T *k_s = (T *)(tc_smem + L::K);         // (TC_KEYS, LD_QK)
    T *v_s = (T *)(tc_smem + L::V);         // (TC_KEYS, LD_QK)
    float *s_s = (float *)(tc_smem + L::S); // (TC_ROWS, LD_S) raw scores
    T *p_s = (T *)(tc_smem + L::P);         // (TC_ROWS, LD_P) probabilities
    float *o_s = (float *)(tc_smem + L::O); // (TC_ROWS, LD_O) unnormalised output
    float *m_s = (float *)(tc_smem + L::M); // (TC_ROWS) running max
    float *l_s = (float *)(tc_smem + L::L); // (TC_ROWS) running denominator

    int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * TC_ROWS;
    int64_t row = (int64_t)p.H * D;
    const float *qb = q + (int64_t)b * p.Tq * row + (int64_t)h * D;
    const float *kb = k + (int64_t)b * p.Tk * row + (int64_t)h * D;
    const float *vb = v + (int64_t)b * p.Tk * row + (int64_t)h * D;
    int w0 = warp * WMMA_M; // this warp's first row in the block

    tc_load_rows<D, T>(q_s, L::LD_QK, TC_ROWS, qb, p.Tq, row, q0);
    for (int e = lane; e < WMMA_M * DP; e += CUDA_WARP) o_s[(w0 + e / DP) * L::LD_O + e % DP] = 0.0f;
    if (lane < WMMA_M) {
        m_s[w0 + lane] = -INFINITY;
        l_s[w0 + lane] = 0.0f;
    }

    for (int j0 = 0; j0 < p.Tk; j0 += TC_KEYS) {
        __syncthreads(); // q_s ready / every warp is done with the previous k_s, v_s
        tc_load_rows<D, T>(k_s, L::LD_QK, TC_KEYS, kb, p.Tk, row, j0);
        tc_load_rows<D, T>(v_s, L::LD_QK, TC_KEYS, vb, p.Tk, row, j0);
        __syncthreads();

        // S (16, TC_KEYS) = Q_w (16, DP) K^T: K rows read as a column-major B
        for (int nt = 0; nt < TC_KEYS / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
            wmma::fill_fragment(s_frag, 0.0f);
            for (int kt = 0; kt < DP / 16; kt++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bk;
                wmma::load_matrix_sync(a, q_s + w0 * L::LD_QK + kt * 16, L::LD_QK);
                wmma::load_matrix_sync(bk, k_s + nt * 16 * L::LD_QK + kt * 16, L::LD_QK);
                wmma::mma_sync(s_frag, a, bk, s_frag);
            }
            wmma::store_matrix_sync(s_s + w0 * L::LD_S + nt * 16, s_frag, L::LD_S, wmma::mem_row_major);
        }
        __syncwarp();

        // online softmax over this tile, one row at a time, lane = key
        for (int r = w0; r < w0 + WMMA_M; r++) {
            int j = j0 + lane;
            float sv = j < p.Tk ? s_s[r * L::LD_S + lane] * p.scale : -INFINITY;
            float m_old = m_s[r];
            // finite: the first tile always holds key 0
            float m_new = fmaxf(m_old, warp_max(sv));
            float pj = expf(sv - m_new);
            float corr = expf(m_old - m_new);
            float tile_sum = warp_sum(pj);
            p_s[r * L::LD_P + lane] = from_f32<T>(pj);
            for (int d = lane; d < DP; d += CUDA_WARP) o_s[r * L::LD_O + d] *= corr;
            __syncwarp(); // every lane has read m_s[r] before lane 0 moves it
            if (lane == 0) {
                m_s[r] = m_new;
                l_s[r] = l_s[r] * corr + tile_sum;
            }
        }
        __syncwarp();

        // O_w (16, DP) += P_w (16, TC_KEYS) V (TC_KEYS, DP)
        for (int nt = 0; nt < DP / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
            wmma::load_matrix_sync(o_frag, o_s + w0 * L::LD_O + nt * 16, L::LD_O, wmma::mem_row_major);
            for (int kt = 0; kt < TC_KEYS / 16; kt++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bv;
                wmma::load_matrix_sync(a, p_s + w0 * L::LD_P + kt * 16, L::LD_P);
                wmma::load_matrix_sync(bv, v_s + kt * 16 * L::LD_QK + nt * 16, L::LD_QK);
                wmma::mma_sync(o_frag, a, bv, o_frag);
            }
            wmma::store_matrix_sync(o_s + w0 * L::LD_O + nt * 16, o_frag, L::LD_O, wmma::mem_row_major);
        }
        __syncwarp();
    }

    float *ob = o + (int64_t)b * p.Tq * row + (int64_t)h * D;
    for (int e = lane; e < WMMA_M * D; e += CUDA_WARP) {
        int r = w0 + e / D, d = e % D;
        if (q0 + r < p.Tq) ob[(int64_t)(q0 + r) * row + d] = o_s[r * L::LD_O + d] / l_s[r];
    }
}

template <int D, typename T>
static kiln_status launch_wmma(cuda_state *s, const kiln_attention_params *p, const float *q, const float *k,
                               const float *v, float *o)
{
    size_t smem = tc_layout<D, T>::BYTES;
    CUDA_TRY(cudaFuncSetAttribute(attention_wmma_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)smem));
    dim3 grid(cuda_blocks(p->Tq, TC_ROWS), p->H, p->B);
    attention_wmma_kernel<D, T><<<grid, TC_WARPS * CUDA_WARP, smem, s->stream>>>(q, k, v, o, *p);
    CUDA_TRY_LAUNCH("attention_wmma_kernel");
    return KILN_OK;
}

template <typename T>
static kiln_status launch_wmma_for_dim(cuda_state *s, const kiln_attention_params *p, const float *q,
                                       const float *k, const float *v, float *o)
{
    switch (p->D) {
    case 40: return launch_wmma<40, T>(s, p, q, k, v, o);
    case 64: return launch_wmma<64, T>(s, p, q, k, v, o);
    case 80: return launch_wmma<80, T>(s, p, q, k, v, o);
    case 128: return launch_wmma<128, T>(s, p, q, k, v, o);
    case 160: return launch_wmma<160, T>(s, p, q, k, v, o);
    }
    return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda attention: no tensor-core kernel for head dim %d", p->D);
}

// Shared memory of the tensor-core kernel for head dim D, 0 if it has none
// (f16 and bf16 plans are the same size). D = 160 needs about 98 KiB, just
// inside the 99 KiB that sm_86/sm_89 blocks may opt into.
static size_t tc_smem_bytes(int D)
{
    switch (D) {
    case 40: return tc_layout<40, __half>::BYTES;
    case 64: return tc_layout<64, __half>::BYTES;
    case 80: return tc_layout<80, __half>::BYTES;
    case 128: return tc_layout<128, __half>::BYTES;
    case 160: return tc_layout<160, __half>::BYTES;
    }
    return 0;
}

extern "C" kiln_status cuda_attention(kiln_backend *be, const kiln_attention_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    if (p->H > 65535 || p->B > 65535)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda attention: %d heads x batch %d exceed the grid", p->H, p->B);
    const float *q = (const float *)cuda_ptr(src[0]), *k = (const float *)cuda_ptr(src[1]),
                *v = (const float *)cuda_ptr(src[2]);
    float *o = (float *)cuda_ptr(dst);

    size_t tc_smem = tc_smem_bytes(p->D);
    if (s->compute != KILN_F32 && !p->causal && tc_smem && tc_smem <= (size_t)s->smem_optin) {
        if (s->compute == KILN_BF16) return launch_wmma_for_dim<__nv_bfloat16>(s, p, q, k, v, o);
        return launch_wmma_for_dim<__half>(s, p, q, k, v, o);
    }

    if (p->D > ROWS_MAX_D)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda attention: head dim %d > %d", p->D, ROWS_MAX_D);
    if (rows_smem_bytes(p->D) > (size_t)s->smem_optin)
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "cuda attention: head dim %d needs %zu bytes of shared memory, the device allows %d", p->D,
                         rows_smem_bytes(p->D), s->smem_optin);
    if (p->D <= 64) return launch_rows<2>(s, p, q, k, v, o);
    if (p->D <= 128) return launch_rows<4>(s, p, q, k, v, o);
    if (p->D <= 160) return launch_rows<5>(s, p, q, k, v, o);
    return launch_rows<ROWS_MAX_D / CUDA_WARP>(s, p, q, k, v, o);
}
