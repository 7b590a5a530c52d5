// Attention: o = softmax(q k^T * scale + bias) v per (batch, head), never
// storing the Tq x Tk score matrix; the bias (H,Tq,Tk), T5's relative
// positions, is optional. Both kernels stream keys in tiles and keep a
// running row max m and denominator l (online softmax): when a tile raises
// the max, what was accumulated so far is rescaled by exp(m_old - m_new).
//
//   attention_rows_kernel   f32 throughout, any head dim up to 512, causal or
//                           not, with a bias or not: the exact path (f32
//                           mode), VAE (D = 512), CLIP (causal) and T5 (the
//                           bias; its encoder runs once a prompt, so the
//                           tensor-core kernel stays without one). One warp
//                           per query row.
//   attention_mma_kernel    tensor cores (mma.sync m16n8k16, f16 or bf16
//                           inputs, f32 accumulation) for D = 40, 64, 72, 80,
//                           128, 160, non-causal, no bias; used in f16/bf16
//                           mode. D is padded only to the next multiple of 16
//                           (40 -> 48, PixArt's 72 -> 80), the mma's K step.
//
// Layout: q (B,Tq,H*D), k and v (B,Tk,H*D), o (B,Tq,H*D); head h of row t
// lives at [(b*T + t)*H*D + h*D, +D).
#include "cp_async.cuh"
#include "cuda_common.cuh"
#include "mma_16816.cuh"

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
    attention_rows_kernel(const float *q, const float *k, const float *v, const float *bias, float *o,
                          kiln_attention_params p)
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
            s = dot * p.scale + (bias ? bias[((int64_t)h * p.Tq + i) * p.Tk + j] : 0.0f);
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
                               const float *v, const float *bias, float *o)
{
    size_t smem = rows_smem_bytes(p->D);
    CUDA_TRY(cudaFuncSetAttribute(attention_rows_kernel<CHUNKS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)smem));
    dim3 grid(cuda_blocks(p->Tq, ROWS_WARPS), p->H, p->B);
    attention_rows_kernel<CHUNKS><<<grid, ROWS_WARPS * CUDA_WARP, smem, s->stream>>>(q, k, v, bias, o, *p);
    CUDA_TRY_LAUNCH("attention_rows_kernel");
    return KILN_OK;
}

// ---- tensor-core path (FlashAttention-2's scheme on mma.sync m16n8k16)
//
// A pack pass first writes q, k and v per (batch, head) in the compute type,
// head dim padded with zeros to DP (a multiple of 16, the mma's K step) and
// keys padded to whole tiles: q and k as (T, DP) rows, v transposed as
// (DP, Tk_pad), so that every tile the main kernel needs is a block of whole
// 16-byte chunks, copied to shared memory with cp.async while the previous
// tile is being computed (two stages).
//
// In the main kernel a block of FA_WARPS warps takes FA_ROWS query rows; each
// warp owns 16 of them and keeps everything per row in registers: its Q
// fragments, the scores of the current FA_KEYS-key tile (8 n-tiles of 8 keys)
// and the output accumulators (DP/8 n-tiles). The layout of mma_16816.cuh
// puts rows g and g+8 of every accumulator in lane g*4+t, so row max and sum
// need only the four lanes of a group, the rescale by exp(m_old - m_new) is a
// multiply in place, and the probabilities are already laid out as the A
// operand of P.V. K rows (key, d) and V^T rows (d, key) make both B operands
// single 32-bit shared loads.

#define FA_WARPS 8
#define FA_ROWS (FA_WARPS * 16) // query rows per block
#define FA_KEYS 64              // keys per tile
#define FA_THREADS (FA_WARPS * CUDA_WARP)

template <int D> struct fa_layout {
    static constexpr int DP = (D + 15) / 16 * 16;
    static constexpr int LD_K = DP + 8;       // k_s row stride: rows 16 bytes apart in the banks
    static constexpr int LD_VT = FA_KEYS + 8; // vt_s row stride
    static constexpr int STAGE = FA_KEYS * LD_K + DP * LD_VT; // elements per stage
    template <typename T> static constexpr size_t bytes() { return sizeof(T) * 2 * (size_t)STAGE; }
};

// x (B,T,H*D) f32 -> packed in T per (batch, head), zeros past T and past D:
// rows (T_pad, DP), or with TRANSPOSE columns (DP, T_pad).
template <typename T, bool TRANSPOSE>
__global__ void attention_pack_kernel(const float *x, T *out, int B, int H, int T_len, int T_pad, int D, int DP)
{
    const int inner = TRANSPOSE ? T_pad : DP, outer = TRANSPOSE ? DP : T_pad;
    int64_t n = (int64_t)B * H * T_pad * DP;
    GRID_STRIDE(i, n)
    {
        int j = (int)(i % inner);
        int64_t r = i / inner;
        int k = (int)(r % outer);
        int64_t bh = r / outer;
        int t = TRANSPOSE ? j : k, d = TRANSPOSE ? k : j;
        int h = (int)(bh % H), b = (int)(bh / H);
        float v = t < T_len && d < D ? x[((int64_t)b * T_len + t) * H * D + (int64_t)h * D + d] : 0.0f;
        out[i] = from_f32<T>(v);
    }
}

// Issues the copies of key tile j0 (K rows and V^T columns) into one stage.
template <int D, typename T>
__device__ __forceinline__ void fa_load_tile(T *k_s, T *vt_s, const T *kh, const T *vt, int Tk_pad, int j0)
{
    using L = fa_layout<D>;
    constexpr int DP = L::DP, K_CHUNKS = DP / 8, V_CHUNKS = FA_KEYS / 8;
    for (int e = threadIdx.x; e < FA_KEYS * K_CHUNKS; e += FA_THREADS) {
        int r = e / K_CHUNKS, c = e % K_CHUNKS;
        cp_async_16(k_s + r * L::LD_K + c * 8, kh + (int64_t)(j0 + r) * DP + c * 8);
    }
    for (int e = threadIdx.x; e < DP * V_CHUNKS; e += FA_THREADS) {
        int d = e / V_CHUNKS, c = e % V_CHUNKS;
        cp_async_16(vt_s + d * L::LD_VT + c * 8, vt + (int64_t)d * Tk_pad + j0 + c * 8);
    }
}

// Two blocks per SM where the head dim leaves registers for it.
template <int D, typename T>
__global__ void __launch_bounds__(FA_THREADS, D <= 80 ? 2 : 1)
    attention_mma_kernel(const T *qh, const T *kh, const T *vt, float *o, kiln_attention_params p, int Tk_pad)
{
    using L = fa_layout<D>;
    constexpr int DP = L::DP, KSTEPS = DP / 16, DTILES = DP / 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    T *const stages = (T *)fa_smem; // two of L::STAGE: k_s (FA_KEYS, LD_K), then vt_s (DP, LD_VT)

    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP, g = lane / 4, t = lane % 4;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * FA_ROWS + warp * 16;
    const int64_t bh = (int64_t)b * p.H + h;
    const T *qb = qh + bh * p.Tq * DP, *kb = kh + bh * Tk_pad * DP, *vb = vt + bh * DP * Tk_pad;
    // exp(x) = exp2(x * log2 e): the scale and log2 e fold into one multiply
    const float scale_log2 = p.scale * 1.4426950408889634f;
    const int ntiles = Tk_pad / FA_KEYS;

    fa_load_tile<D, T>(stages, stages + FA_KEYS * L::LD_K, kb, vb, Tk_pad, 0);
    cp_async_commit();

    // this warp's Q fragments, straight from the packed rows
    uint32_t qf[KSTEPS][4];
    const uint32_t zero = 0;
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ks++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = q0 + g + 8 * (i % 2), d = ks * 16 + 2 * t + 8 * (i / 2);
            qf[ks][i] = r < p.Tq ? *(const uint32_t *)(qb + (int64_t)r * DP + d) : zero;
        }

    float acc[DTILES][4];
#pragma unroll
    for (int dt = 0; dt < DTILES; dt++) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // rows g and g+8 (l: this lane's share)

    for (int tile = 0; tile < ntiles; tile++) {
        const int j0 = tile * FA_KEYS;
        if (tile + 1 < ntiles) {
            T *next = stages + ((tile + 1) % 2) * L::STAGE;
            fa_load_tile<D, T>(next, next + FA_KEYS * L::LD_K, kb, vb, Tk_pad, j0 + FA_KEYS);
        }
        cp_async_commit(); // possibly empty: one group per iteration keeps the count simple
        cp_async_wait<1>(); // this tile's group has landed (for this thread) ...
        __syncthreads();    // ... and for every thread
        const T *k_s = stages + (tile % 2) * L::STAGE, *vt_s = k_s + FA_KEYS * L::LD_K;

        // S (16 x FA_KEYS) = Q_w K^T; B[d][key] = k_s[key][d]
        float sc[FA_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++) {
            sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < KSTEPS; ks++) {
                const T *base = k_s + (nt * 8 + g) * L::LD_K + ks * 16 + 2 * t;
                uint32_t bk[2] = {*(const uint32_t *)base, *(const uint32_t *)(base + 8)};
                mma_16816<T>(sc[nt], qf[ks], bk);
            }
        }

        // online softmax in the log2 domain; padding keys (past Tk) score -inf
        const bool ragged = j0 + FA_KEYS > p.Tk;
        float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float sv = sc[nt][i] * scale_log2;
                if (ragged && j0 + nt * 8 + 2 * t + i % 2 >= p.Tk) sv = -INFINITY;
                sc[nt][i] = sv;
                tile_max[i / 2] = fmaxf(tile_max[i / 2], sv);
            }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(CUDA_FULL_MASK, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(CUDA_FULL_MASK, tile_max[r], 2));
            float m_new = fmaxf(m[r], tile_max[r]); // finite: key j0 < Tk is in every tile
            corr[r] = exp2f(m[r] - m_new);          // 0 on the first tile (m = -inf)
            m[r] = m_new;
            l[r] *= corr[r];
        }
        uint32_t pf[FA_KEYS / 16][4]; // probabilities as the A operand of P.V
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++) {
            float p0 = exp2f(sc[nt][0] - m[0]), p1 = exp2f(sc[nt][1] - m[0]);
            float p2 = exp2f(sc[nt][2] - m[1]), p3 = exp2f(sc[nt][3] - m[1]);
            l[0] += p0 + p1;
            l[1] += p2 + p3;
            pf[nt / 2][(nt % 2) * 2] = pack2<T>(p0, p1);
            pf[nt / 2][(nt % 2) * 2 + 1] = pack2<T>(p2, p3);
        }

        // O_w (16 x DP) = O_w * corr + P (16 x FA_KEYS) V (FA_KEYS x DP); B[key][d] = vt_s[d][key]
#pragma unroll
        for (int dt = 0; dt < DTILES; dt++) {
            acc[dt][0] *= corr[0];
            acc[dt][1] *= corr[0];
            acc[dt][2] *= corr[1];
            acc[dt][3] *= corr[1];
#pragma unroll
            for (int kk = 0; kk < FA_KEYS / 16; kk++) {
                const T *base = vt_s + (dt * 8 + g) * L::LD_VT + kk * 16 + 2 * t;
                uint32_t bv[2] = {*(const uint32_t *)base, *(const uint32_t *)(base + 8)};
                mma_16816<T>(acc[dt], pf[kk], bv);
            }
        }
        __syncthreads(); // every warp is done with this stage before it is refilled
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(CUDA_FULL_MASK, l[r], 1);
        l[r] += __shfl_xor_sync(CUDA_FULL_MASK, l[r], 2);
    }
    const int64_t row = (int64_t)p.H * D;
    float *ob = o + (int64_t)b * p.Tq * row + (int64_t)h * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int qi = q0 + g + 8 * r;
        if (qi >= p.Tq) continue;
#pragma unroll
        for (int dt = 0; dt < DTILES; dt++) {
            int d = dt * 8 + 2 * t;
            if (d < D) *(float2 *)(ob + (int64_t)qi * row + d) = make_float2(acc[dt][2 * r] / l[r], acc[dt][2 * r + 1] / l[r]);
        }
    }
}

template <int D, typename T>
static kiln_status launch_mma(cuda_state *s, const kiln_attention_params *p, const float *q, const float *k,
                              const float *v, float *o)
{
    constexpr int DP = fa_layout<D>::DP;
    const int Tk_pad = (int)cuda_round_up(p->Tk, FA_KEYS);
    const int64_t bh = (int64_t)p->B * p->H;
    const size_t q_bytes = (size_t)cuda_round_up(bh * p->Tq * DP * (int64_t)sizeof(T), 256);
    const size_t kv_bytes = (size_t)cuda_round_up(bh * Tk_pad * DP * (int64_t)sizeof(T), 256);
    char *scratch;
    TRY(cuda_scratch(s, q_bytes + 2 * kv_bytes, (void **)&scratch));
    T *qh = (T *)scratch, *kh = (T *)(scratch + q_bytes), *vt = (T *)(scratch + q_bytes + kv_bytes);
    attention_pack_kernel<T, false><<<cuda_stride_blocks(bh * p->Tq * DP, 256), 256, 0, s->stream>>>(q, qh, p->B, p->H, p->Tq,
                                                                                       p->Tq, D, DP);
    CUDA_TRY_LAUNCH("attention_pack_kernel");
    attention_pack_kernel<T, false><<<cuda_stride_blocks(bh * Tk_pad * DP, 256), 256, 0, s->stream>>>(k, kh, p->B, p->H, p->Tk,
                                                                                       Tk_pad, D, DP);
    CUDA_TRY_LAUNCH("attention_pack_kernel");
    attention_pack_kernel<T, true><<<cuda_stride_blocks(bh * Tk_pad * DP, 256), 256, 0, s->stream>>>(v, vt, p->B, p->H, p->Tk,
                                                                                      Tk_pad, D, DP);
    CUDA_TRY_LAUNCH("attention_pack_kernel");

    size_t smem = fa_layout<D>::template bytes<T>();
    CUDA_TRY(cudaFuncSetAttribute(attention_mma_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(cuda_blocks(p->Tq, FA_ROWS), p->H, p->B);
    attention_mma_kernel<D, T><<<grid, FA_THREADS, smem, s->stream>>>(qh, kh, vt, o, *p, Tk_pad);
    CUDA_TRY_LAUNCH("attention_mma_kernel");
    return KILN_OK;
}

template <typename T>
static kiln_status launch_mma_for_dim(cuda_state *s, const kiln_attention_params *p, const float *q, const float *k,
                                      const float *v, float *o)
{
    switch (p->D) {
    case 40: return launch_mma<40, T>(s, p, q, k, v, o);
    case 64: return launch_mma<64, T>(s, p, q, k, v, o);
    case 72: return launch_mma<72, T>(s, p, q, k, v, o);
    case 80: return launch_mma<80, T>(s, p, q, k, v, o);
    case 128: return launch_mma<128, T>(s, p, q, k, v, o);
    case 160: return launch_mma<160, T>(s, p, q, k, v, o);
    }
    return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda attention: no tensor-core kernel for head dim %d", p->D);
}

// Whether the tensor-core kernel has a variant for head dim D (f16 and bf16
// use the same shared memory: about 89 KiB at D = 160).
static bool mma_head_dim(int D) { return D == 40 || D == 64 || D == 72 || D == 80 || D == 128 || D == 160; }

extern "C" kiln_status cuda_attention(kiln_backend *be, const kiln_attention_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    if (p->H > 65535 || p->B > 65535)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda attention: %d heads x batch %d exceed the grid", p->H, p->B);
    const float *q = (const float *)cuda_ptr(src[0]), *k = (const float *)cuda_ptr(src[1]),
                *v = (const float *)cuda_ptr(src[2]), *bias = src[3] ? (const float *)cuda_ptr(src[3]) : NULL;
    float *o = (float *)cuda_ptr(dst);

    if (s->compute != KILN_F32 && !p->causal && !bias && mma_head_dim(p->D)) {
        if (s->compute == KILN_BF16) return launch_mma_for_dim<__nv_bfloat16>(s, p, q, k, v, o);
        return launch_mma_for_dim<__half>(s, p, q, k, v, o);
    }

    if (p->D > ROWS_MAX_D)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda attention: head dim %d > %d", p->D, ROWS_MAX_D);
    if (rows_smem_bytes(p->D) > (size_t)s->smem_optin)
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "cuda attention: head dim %d needs %zu bytes of shared memory, the device allows %d", p->D,
                         rows_smem_bytes(p->D), s->smem_optin);
    if (p->D <= 64) return launch_rows<2>(s, p, q, k, v, bias, o);
    if (p->D <= 128) return launch_rows<4>(s, p, q, k, v, bias, o);
    if (p->D <= 160) return launch_rows<5>(s, p, q, k, v, bias, o);
    return launch_rows<ROWS_MAX_D / CUDA_WARP>(s, p, q, k, v, bias, o);
}
