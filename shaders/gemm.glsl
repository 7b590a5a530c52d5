// The tiled GEMM under matmul.comp and conv2d.comp:
//   C (M,N) = A (M,K) B (N,K)^T, accumulated in f32.
// Two implementations behind one interface:
//   - this file's (the default): a workgroup of 256 computes a 64x64 tile of
//     C, stepping through K by 16 with both 64x16 operand tiles staged in
//     shared memory as f32; each invocation keeps a 4x4 block of C in
//     registers (rows tm + 16 i, columns tn + 16 j, so neighbouring
//     invocations read neighbouring shared words). Exact f32 arithmetic.
//   - gemm_coopmat.glsl (GEMM_COOPMAT defined): 128x128 tiles on tensor cores
//     (shaders/coopmat.glsl), operands rounded to f16; it has hooks of its own
//     for vector loads, listed there.
//
// The including shader defines (or not), before including this file:
//   A_ALONG_M  neighbouring invocations should load neighbouring rows of A
//              (conv: adjacent output pixels read adjacent input) rather
//              than neighbouring k (matmul: x rows are K-contiguous)
//   C_ALONG_M  neighbouring invocations should own neighbouring rows of C
//              (conv writes NCHW) rather than columns (matmul)
// and after it, these (declared below), then calls gemm_tile(M, N, K) with
// the grid (ceil(N/BN), ceil(M/BM)):
//   void a_row_setup(uint slot, uint m)     once per tile for each of an
//                         invocation's LOADS A-load slots (a slot keeps its
//                         row for the whole K loop), so per-row index work is
//                         done once
//   void a_k_setup(uint k)                  before the load_a calls of one k
//                         (k < K), so per-k index work is done once for them
//   float load_a(uint slot, uint m, uint k) m < M, k < K
//   float load_b(uint n, uint k)            n < N, k < K
//   void store_c(uint m, uint n, float v)
void a_row_setup(uint slot, uint m);
void a_k_setup(uint k);
float load_a(uint slot, uint m, uint k);
float load_b(uint n, uint k);
void store_c(uint m, uint n, float v);

#ifdef A_ALONG_M
const bool a_along_m = true;
#else
const bool a_along_m = false;
#endif
#ifdef C_ALONG_M
const bool c_along_m = true;
#else
const bool c_along_m = false;
#endif

#ifdef GEMM_COOPMAT
#include "gemm_coopmat.glsl"
#else
const uint BM = 64, BN = 64, BK = 16;
const uint THREADS = 256;
const uint LOADS = BM * BK / THREADS; // per invocation and tile, for A and for B

layout(local_size_x = THREADS) in;

shared float a_tile[BK][BM + 1]; // +1: the k-major stores hit distinct banks
shared float b_tile[BK][BN + 1];

uint a_tile_row(uint e) { return a_along_m ? e % BM : e / BK; }
uint a_tile_k(uint e) { return a_along_m ? e / BM : e % BK; }

void gemm_tile(uint M, uint N, uint K)
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint tm = c_along_m ? t % 16 : t / 16;
    uint tn = c_along_m ? t / 16 : t % 16;

    for (uint slot = 0; slot < LOADS; slot++) {
        uint m = m0 + a_tile_row(t + THREADS * slot);
        if (m < M) a_row_setup(slot, m);
    }

    float acc[4][4];
    for (uint i = 0; i < 4; i++)
        for (uint j = 0; j < 4; j++) acc[i][j] = 0.0;

    for (uint k0 = 0; k0 < K; k0 += BK) {
        for (uint slot = 0; slot < LOADS; slot++) {
            uint e = t + THREADS * slot;
            uint am = a_tile_row(e), ak = a_tile_k(e);
            uint m = m0 + am, k = k0 + ak;
            float av = 0.0;
            if (m < M && k < K) {
                a_k_setup(k);
                av = load_a(slot, m, k);
            }
            a_tile[ak][am] = av;
            uint bn = e / BK, bk = e % BK;
            uint n = n0 + bn;
            k = k0 + bk;
            b_tile[bk][bn] = n < N && k < K ? load_b(n, k) : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            float a[4], b[4];
            for (uint i = 0; i < 4; i++) a[i] = a_tile[kk][tm + 16 * i];
            for (uint j = 0; j < 4; j++) b[j] = b_tile[kk][tn + 16 * j];
            for (uint i = 0; i < 4; i++)
                for (uint j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier();
    }

    for (uint i = 0; i < 4; i++)
        for (uint j = 0; j < 4; j++) {
            uint m = m0 + tm + 16 * i, n = n0 + tn + 16 * j;
            if (m < M && n < N) store_c(m, n, acc[i][j]);
        }
}
#endif
