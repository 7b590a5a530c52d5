// The tiled GEMM under matmul.comp and conv2d.comp:
//   C (M,N) = A (M,K) B (N,K)^T, accumulated in f32.
// Three implementations behind one interface:
//   - this file's (the default): a workgroup of 64 computes a 64x64 tile of
//     C, stepping through K by 16 with both operand tiles staged k-major in
//     shared memory as f32. Each invocation keeps an 8x8 block of C in
//     registers, rows 4 tm + {0..3} and 32 + 4 tm + {0..3}, columns likewise
//     from tn: its operands for one k are four vec4 reads of shared memory
//     for 64 FMAs (a 4x4 block needs two reads per four FMAs, and shared
//     memory, not arithmetic, sets the pace). Exact f32 arithmetic.
//   - gemm_coopmat.glsl (GEMM_COOPMAT defined): tiles on tensor cores
//     (shaders/coopmat.glsl), operands rounded to f16; it has hooks of its own
//     for vector loads, listed there, and reads A along K only;
//   - gemm_workgroup.glsl (GEMM_COOPMAT and GEMM_WORKGROUP): whole tiles on
//     tensor cores through workgroup-scope matrices, A along K, hooks of its
//     own for where the operands' rows are.
// Both load alike: neighbouring invocations read neighbouring memory; along
// M (this file's conv) an invocation owns one row and a run of 16
// consecutive k, so the conv's index work is done per run, not per element;
// and the next K step's operands are on their way into registers while this
// one is multiplied.
//
// The including shader defines (or not), before including this file:
//   A_ALONG_M  neighbouring invocations should load neighbouring rows of A
//              (the implicit conv: adjacent output pixels read adjacent
//              input) rather than neighbouring k (matmul: x rows are
//              K-contiguous); this file's GEMM only
//   C_ALONG_M  neighbouring invocations should own neighbouring rows of C
//              (conv writes NCHW) rather than columns (matmul)
// Its push constants (pc) end with the fields of runtime/vulkan_ops.c's
// gemm_split (partial, splits, k_chunk, split_pass); it defines these
// (declared below) after including this file, then calls gemm_main(M, N, K):
//   void a_row_setup(uint m)     once per tile for each of its rows m < M, by
//                                one invocation, before a barrier: per-row
//                                index work, kept in shared memory (row m of
//                                the tile is m % BM)
//   void a_k_setup(uint k)       before the load_a calls of one k (k < K) in
//                                an invocation: per-k index work
//   void a_k_step()              the same for k + 1 (k + 1 < K), from the
//                                state a_k_setup(k) or a_k_step left
//   float load_a(uint m, uint k) m < M, k < K
//   float load_b(uint n, uint k) n < N, k < K
//   void store_c(uint m, uint n, float v)
//   void store_c4(uint m, uint n, vec4 v, uint count)
//                                store_c for C(m, n..n+3), or with C_ALONG_M
//                                C(m..m+3, n), of which the first `count`
//                                exist (vec4_io.glsl's store4 serves)
//
// Split K. A GEMM with few tiles of C and a long K (the UNet's 8x8 level:
// 40 tiles at batch 2, K up to 23040) would leave most of a GPU idle while a
// few workgroups walk all of K, so the host may run it in two dispatches of
// the same shader:
//   split_pass 0, grid (ceil(N/BN), ceil(M/BM), splits): workgroup z sums
//       k in [z k_chunk, (z + 1) k_chunk) into partial[z] (f32, M x N);
//   split_pass 1, four elements of C an invocation (a flat grid, striding
//       over C where it is smaller): the splits summed in order (the result
//       does not depend on timing) and handed to store_c4, or store_c where
//       lines of C (see partial_index) are not whole fours.
// With splits == 1 the single dispatch sums all of K through store_c4.
#extension GL_EXT_control_flow_attributes : require
#include "vec4_io.glsl"

void a_row_setup(uint m);
void a_k_setup(uint k);
void a_k_step();
float load_a(uint m, uint k);
float load_b(uint n, uint k);
void store_c(uint m, uint n, float v);
void store_c4(uint m, uint n, vec4 v, uint count);

// Element e of C in the order split z keeps it: its row and column.
#ifdef C_ALONG_M
#define C_INDEX_M(e) ((e) % M)
#define C_INDEX_N(e) ((e) / M)
#else
#define C_INDEX_M(e) ((e) / N)
#define C_INDEX_N(e) ((e) % N)
#endif

// Where split z keeps C(m, n): along M where neighbouring invocations own
// neighbouring rows (C_ALONG_M), so split_pass 1 reads and writes runs.
uint partial_index(uint M, uint N, uint z, uint m, uint n)
{
#ifdef C_ALONG_M
    return (z * N + n) * M + m;
#else
    return (z * M + m) * N + n;
#endif
}

// Four elements of this workgroup's sum over its share of K, along a line
// of C: C(m, n..n+3), or C(m..m+3, n) with C_ALONG_M, of which the first
// `count` exist.
void emit4(uint M, uint N, uint m, uint n, vec4 v, uint count)
{
    if (pc.splits == 1u) {
        store_c4(m, n, v, count);
        return;
    }
#ifdef C_ALONG_M
    bool vector = M % 4u == 0u && aligned16(pc.partial); // partial_index runs along M
#else
    bool vector = N % 4u == 0u && aligned16(pc.partial);
#endif
    store4(pc.partial, vector, partial_index(M, N, gl_WorkGroupID.z, m, n), count, v);
}

#if defined(GEMM_WORKGROUP)
#include "gemm_workgroup.glsl"
#elif defined(GEMM_COOPMAT)
#include "gemm_coopmat.glsl"
#else
const uint BM = 64, BN = 64, BK = 16;
const uint THREADS = 64;
const uint LOADS = 16;        // per invocation and K step, of A and of B: BM * BK / THREADS
const uint QUADS = LOADS / 4u; // the same in runs of 4 k (B, and A along K)
const uint LDV = BM / 4 + 1;  // vec4s per k: the +1 spreads stores down a column (16 k) over banks

layout(local_size_x = THREADS) in;

shared vec4 a_tile[BK * LDV]; // (k, m)
shared vec4 b_tile[BK * LDV]; // (k, n)

// Hooks of this implementation, beside the interface above:
//   bool rows_aligned()      uniform: w's rows (and x's, along K) start on 16
//                            bytes, K % 8 == 0
//   vec4 load_b4(n, k)       B[n][k..k+3], if rows_aligned()
//   vec4 load_a4(m, k)       A[m][k..k+3], if rows_aligned() (A along K)
bool rows_aligned();
vec4 load_b4(uint n, uint k);
#ifndef A_ALONG_M
vec4 load_a4(uint m, uint k);
#endif

vec4 b_next[QUADS];
#ifdef A_ALONG_M
float a_next[LOADS];
#else
vec4 a_next[QUADS];
#endif

// Row `row`'s k .. k + 3 of B (load4 load_b4, load1 load_b) or of A along
// K (load_a4, load_a), zero past `rows` and K: one vector load where
// rows_aligned(), whose K % 8 == 0 keeps the four within the row.
#define FETCH4(v, load4, load1, row, rows, k, K)                                                    \
    if (rows_aligned() && (row) < (rows) && (k) + 4u <= (K))                                        \
        v = load4(row, k);                                                                          \
    else                                                                                            \
        [[unroll]] for (uint c = 0; c < 4u; c++) v[c] = (row) < (rows) && (k) + c < (K) ? load1(row, (k) + c) : 0.0;

// B and A along K: an invocation reads k0 + 4 (t % 4) .. + 3 of rows t / 4
// + 16 i, so 4 neighbouring invocations read 16 neighbouring k of one row.
// A along M: row m0 + t (THREADS == BM) at k0 .. k0 + 15.
// K here and in gemm_tile is the end of this workgroup's share of K.
void fetch(uint M, uint N, uint K, uint m0, uint n0, uint k0)
{
    uint t = gl_LocalInvocationID.x, kq = k0 + 4u * (t % 4u);
    [[unroll]] for (uint i = 0; i < QUADS; i++) {
        uint n = n0 + t / 4u + 16u * i;
        FETCH4(b_next[i], load_b4, load_b, n, N, kq, K)
    }
#ifdef A_ALONG_M
    uint m = m0 + t;
    if (k0 < K) a_k_setup(k0);
    [[unroll]] for (uint i = 0; i < LOADS; i++) {
        a_next[i] = m < M && k0 + i < K ? load_a(m, k0 + i) : 0.0;
        if (i + 1u < LOADS && k0 + i + 1u < K) a_k_step();
    }
#else
    [[unroll]] for (uint i = 0; i < QUADS; i++) {
        uint m = m0 + t / 4u + 16u * i;
        FETCH4(a_next[i], load_a4, load_a, m, M, kq, K)
    }
#endif
}

void gemm_tile(uint M, uint N, uint k_begin, uint K)
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
#ifdef C_ALONG_M
    uint tm = t % 8u, tn = t / 8u;
#else
    uint tm = t / 8u, tn = t % 8u;
#endif

    for (uint r = t; r < BM; r += THREADS)
        if (m0 + r < M) a_row_setup(m0 + r);
    barrier();

    vec4 acc[8][2]; // row (i < 4 ? 4 tm + i : 32 + 4 tm + i - 4), columns 4 tn + 32 j + {0..3}
    [[unroll]] for (uint i = 0; i < 8; i++) acc[i][0] = acc[i][1] = vec4(0.0);

    fetch(M, N, K, m0, n0, k_begin);
    for (uint k0 = k_begin; k0 < K; k0 += BK) {
        [[unroll]] for (uint i = 0; i < QUADS; i++)
            [[unroll]] for (uint c = 0; c < 4u; c++) {
                uint row = t / 4u + 16u * i, k = 4u * (t % 4u) + c; // of B, and of A along K
                b_tile[k * LDV + row / 4u][row % 4u] = b_next[i][c];
#ifndef A_ALONG_M
                a_tile[k * LDV + row / 4u][row % 4u] = a_next[i][c];
#endif
            }
#ifdef A_ALONG_M
        [[unroll]] for (uint i = 0; i < LOADS; i++) a_tile[i * LDV + t / 4u][t % 4u] = a_next[i];
#endif
        barrier();
        if (k0 + BK < K) fetch(M, N, K, m0, n0, k0 + BK);
        [[unroll]] for (uint kk = 0; kk < BK; kk++) {
            vec4 a0 = a_tile[kk * LDV + tm], a1 = a_tile[kk * LDV + 8u + tm];
            vec4 b0 = b_tile[kk * LDV + tn], b1 = b_tile[kk * LDV + 8u + tn];
            [[unroll]] for (uint i = 0; i < 4; i++) {
                acc[i][0] = fma(vec4(a0[i]), b0, acc[i][0]);
                acc[i][1] = fma(vec4(a0[i]), b1, acc[i][1]);
                acc[4 + i][0] = fma(vec4(a1[i]), b0, acc[4 + i][0]);
                acc[4 + i][1] = fma(vec4(a1[i]), b1, acc[4 + i][1]);
            }
        }
        barrier(); // the tiles are read before the next step overwrites them
    }

    // Out four elements at a time: an invocation's acc[i][j] is C(m, n..n+3),
    // and acc[4 h .. 4 h + 3][j][c] is C(m..m+3, n), the runs of C_ALONG_M.
#ifdef C_ALONG_M
    [[unroll]] for (uint h = 0; h < 2; h++)
        [[unroll]] for (uint j = 0; j < 2; j++)
            [[unroll]] for (uint c = 0; c < 4; c++) {
                uint m = m0 + 32u * h + 4u * tm, n = n0 + 4u * tn + 32u * j + c;
                vec4 v = vec4(acc[4 * h][j][c], acc[4 * h + 1][j][c], acc[4 * h + 2][j][c], acc[4 * h + 3][j][c]);
                if (m < M && n < N) emit4(M, N, m, n, v, min(4u, M - m));
            }
#else
    [[unroll]] for (uint i = 0; i < 8; i++)
        [[unroll]] for (uint j = 0; j < 2; j++) {
            uint m = m0 + (i < 4 ? 4u * tm + i : 32u + 4u * tm + i - 4u), n = n0 + 4u * tn + 32u * j;
            if (m < M && n < N) emit4(M, N, m, n, acc[i][j], min(4u, N - n));
        }
#endif
}
#endif

void gemm_main(uint M, uint N, uint K)
{
    if (pc.split_pass == 0u) {
        uint k_begin = gl_WorkGroupID.z * pc.k_chunk;
        gemm_tile(M, N, k_begin, pc.splits > 1u ? min(K, k_begin + pc.k_chunk) : K);
        return;
    }
#ifdef C_ALONG_M
    uint line = M; // elements e.. run along a column of C
#else
    uint line = N;
#endif
    // Grid-stride, so that C is covered whatever workgroup size the host
    // sized the grid for (a variant from KILN_VULKAN_SHADER_DIR may differ).
    uint stride = 4u * THREADS * gl_NumWorkGroups.x * gl_NumWorkGroups.y;
    bool vector = aligned16(pc.partial);
    for (uint e = 4u * (flat_group_index() * THREADS + gl_LocalInvocationID.x); e < M * N; e += stride) {
        if (line % 4u == 0u) { // e..e+3 on one line, and all there
            uint m = C_INDEX_M(e), n = C_INDEX_N(e);
            vec4 sum = vec4(0.0);
            for (uint z = 0; z < pc.splits; z++) sum += load4(pc.partial, vector, partial_index(M, N, z, m, n), 4u);
            store_c4(m, n, sum, 4u);
            continue;
        }
        for (uint j = e; j < min(e + 4u, M * N); j++) {
            float sum = 0.0;
            for (uint z = 0; z < pc.splits; z++)
                sum += pc.partial.v[partial_index(M, N, z, C_INDEX_M(j), C_INDEX_N(j))];
            store_c(C_INDEX_M(j), C_INDEX_N(j), sum);
        }
    }
}
