// gemm.glsl's interface on tensor cores (coopmat.glsl): a workgroup computes
// a TILE x TILE block of C, stepping through K by 32, with TILE (64 or 128,
// a define) picked by the host so that small GEMMs still get enough
// workgroups to fill the device. 128: 256 invocations in 8 subgroups of 32,
// subgroup s owning the 32x64 block at rows 32 (s % 4), columns 64 (s / 4),
// 2 x 4 accumulators of 16x16 in f32; 64: 128 invocations in 4 subgroups,
// 32x32 blocks, 2 x 2 accumulators. Operand tiles are staged in shared
// memory as f16.
//
// Memory, not the tensor cores, is what such a tile waits on, so:
//   - while a K step is multiplied, the next one's operands are on their way
//     into registers (a_next, b_next);
//   - neighbouring invocations read neighbouring memory (see fetch), where
//     rows are 16-byte aligned (rows_aligned()) as 16-byte vectors;
//   - conv's index work is done once per row of the tile and once per run
//     of 16 k, not per element;
//   - A along M is staged k-major, so a subgroup's stores of 32 pixels at
//     one k land in consecutive shared words.
// Every loop over fragments or load slots is unrolled: fragments and
// prefetched values indexed by a run-time counter would live in memory.
//
// Hooks beyond gemm.glsl's, for this implementation only:
//   bool rows_aligned()      uniform: B's rows (and A's, along K) start on
//                            16 bytes and K % 8 == 0
//   uvec4 load_b8(n, k)      B[n][k..k+7] as packed f16, if rows_aligned()
//   vec4 load_a4(m, k)       A[m][k..k+3], if rows_aligned() (A along K only)
//
// The host uses this only on devices that report 16x16x16 f16 x f16 + f32
// subgroup matrices and 32-wide subgroups (or emulates them, see
// coopmat.glsl), and only where the user asked for f16 compute.
#include "coopmat.glsl"

bool rows_aligned();
uvec4 load_b8(uint n, uint k);
#ifndef A_ALONG_M
vec4 load_a4(uint m, uint k);
#endif

const uint BM = TILE, BN = TILE, BK = 32;
const uint THREADS = 2 * TILE;
const uint LOADS = 16;        // per invocation and K step, of A and of B: BM * BK / THREADS
const uint SUBGROUPS_M = BM / 32u, SUBGROUPS = THREADS / 32u;
const uint FRAGS_N = BN / (SUBGROUPS / SUBGROUPS_M) / 16u; // accumulators across a subgroup's block
const uint LD = BK + 8;   // row-major f16 stride: 80 bytes, a multiple of 16
const uint LDM = BM + 8;  // k-major f16 stride of A along M: 272 bytes

layout(local_size_x = THREADS) in;

#ifdef A_ALONG_M
shared float16_t a_tile[BK * LDM]; // (k, m)
#else
shared float16_t a_tile[BM * LD]; // (m, k)
#endif
shared float16_t b_tile[BN * LD];                          // (n, k)
shared float c_stage[SUBGROUPS * 256]; // one 16x16 f32 block per subgroup, on the way out

float16_t a_next[LOADS], b_next[LOADS];

// Who loads what: neighbouring invocations read neighbouring memory.
//   B and A along K: rows are 32 k long; an invocation reads chunks of 8 (B,
//   f16: 16 bytes) or 4 (A, f32: 16 bytes) k in rows r0 + i * stride, with
//   r0, the chunk and the stride from its index, so a subgroup reads whole
//   rows.
//   A along M: an invocation owns one row (output pixel) m0 + t % BM and a
//   run of 16 consecutive k from k0 + 16 (t / BM): a subgroup reads 32
//   neighbouring pixels at each k, and the conv's k index work is one
//   a_k_setup and 15 a_k_steps per run.
const uint B_CHUNKS = BK / 8u, B_ROW_STEP = THREADS / B_CHUNKS; // 2 rows each
const uint A_CHUNKS = BK / 4u, A_ROW_STEP = THREADS / A_CHUNKS; // 4 rows each

void fetch(uint M, uint N, uint K, uint m0, uint n0, uint k0)
{
    uint t = gl_LocalInvocationID.x;
    bool vector = rows_aligned();
    uint kb = k0 + 8u * (t % B_CHUNKS);
    [[unroll]] for (uint q = 0; q < LOADS / 8u; q++) {
        uint n = n0 + t / B_CHUNKS + B_ROW_STEP * q;
        if (vector && n < N && kb + 8u <= K) {
            uvec4 h = load_b8(n, kb);
            [[unroll]] for (uint w = 0; w < 4u; w++) {
                f16vec2 pair = unpackFloat2x16(h[w]);
                b_next[8u * q + 2u * w] = pair.x;
                b_next[8u * q + 2u * w + 1u] = pair.y;
            }
        } else {
            [[unroll]] for (uint j = 0; j < 8u; j++)
                b_next[8u * q + j] = float16_t(n < N && kb + j < K ? load_b(n, kb + j) : 0.0);
        }
    }

#ifdef A_ALONG_M
    uint m = m0 + t % BM, k = k0 + LOADS * (t / BM);
    if (k < K) a_k_setup(k);
    [[unroll]] for (uint i = 0; i < LOADS; i++) {
        a_next[i] = float16_t(m < M && k + i < K ? load_a(m, k + i) : 0.0);
        if (i + 1u < LOADS && k + i + 1u < K) a_k_step();
    }
#else
    uint ka = k0 + 4u * (t % A_CHUNKS);
    [[unroll]] for (uint q = 0; q < LOADS / 4u; q++) {
        uint m = m0 + t / A_CHUNKS + A_ROW_STEP * q;
        if (vector && m < M && ka + 4u <= K) {
            vec4 x = load_a4(m, ka);
            [[unroll]] for (uint j = 0; j < 4u; j++) a_next[4u * q + j] = float16_t(x[j]);
        } else {
            [[unroll]] for (uint j = 0; j < 4u; j++)
                a_next[4u * q + j] = float16_t(m < M && ka + j < K ? load_a(m, ka + j) : 0.0);
        }
    }
#endif
}

void gemm_tile(uint M, uint N, uint K)
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint sg = CM_SUBGROUP, lane = CM_LANE;
    uint sm = (sg % SUBGROUPS_M) * 32u, sn = (sg / SUBGROUPS_M) * FRAGS_N * 16u;

    for (uint r = t; r < BM; r += THREADS)
        if (m0 + r < M) a_row_setup(m0 + r);
    barrier();

    cm_acc acc[2][FRAGS_N];
    [[unroll]] for (uint i = 0; i < 2; i++)
        [[unroll]] for (uint j = 0; j < FRAGS_N; j++) acc[i][j] = cm_zero();

    fetch(M, N, K, m0, n0, 0);
    for (uint k0 = 0; k0 < K; k0 += BK) {
        [[unroll]] for (uint q = 0; q < LOADS / 8u; q++)
            [[unroll]] for (uint j = 0; j < 8u; j++)
                b_tile[(t / B_CHUNKS + B_ROW_STEP * q) * LD + 8u * (t % B_CHUNKS) + j] = b_next[8u * q + j];
#ifdef A_ALONG_M
        [[unroll]] for (uint i = 0; i < LOADS; i++) a_tile[(LOADS * (t / BM) + i) * LDM + t % BM] = a_next[i];
#else
        [[unroll]] for (uint q = 0; q < LOADS / 4u; q++)
            [[unroll]] for (uint j = 0; j < 4u; j++)
                a_tile[(t / A_CHUNKS + A_ROW_STEP * q) * LD + 4u * (t % A_CHUNKS) + j] = a_next[4u * q + j];
#endif
        barrier();
        if (k0 + BK < K) fetch(M, N, K, m0, n0, k0 + BK);
        [[unroll]] for (uint kk = 0; kk < BK; kk += 16) {
            cm_a a[2];
            cm_b b[FRAGS_N];
            [[unroll]] for (uint i = 0; i < 2; i++) {
#ifdef A_ALONG_M
                CM_LOAD_A_K_MAJOR(a[i], a_tile, kk * LDM + sm + 16 * i, LDM);
#else
                CM_LOAD_A(a[i], a_tile, (sm + 16 * i) * LD + kk, LD);
#endif
            }
            [[unroll]] for (uint j = 0; j < FRAGS_N; j++) CM_LOAD_B(b[j], b_tile, (sn + 16 * j) * LD + kk, LD, true);
            [[unroll]] for (uint i = 0; i < 2; i++)
                [[unroll]] for (uint j = 0; j < FRAGS_N; j++) acc[i][j] = cm_mul_add(a[i], b[j], acc[i][j]);
        }
        barrier(); // the tiles are read before the next step overwrites them
    }

    // each 16x16 block through this subgroup's staging area, 8 values a lane
    [[unroll]] for (uint i = 0; i < 2; i++)
        [[unroll]] for (uint j = 0; j < FRAGS_N; j++) {
            CM_STORE(acc[i][j], c_stage, sg * 256u, 16);
            cm_subgroup_sync();
            for (uint e = lane; e < 256u; e += 32u) {
                uint m = m0 + sm + 16 * i + e / 16u, n = n0 + sn + 16 * j + e % 16u;
                if (m < M && n < N) store_c(m, n, c_stage[sg * 256u + e]);
            }
            cm_subgroup_sync(); // every lane has read the block before the next one lands
        }
}
