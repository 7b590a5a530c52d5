// gemm.glsl's interface on tensor cores (coopmat.glsl): a workgroup of 8
// subgroups of 32 computes a 64x64 block of C, stepping through K by 64; each
// subgroup owns a 32x16 block in 2 x 1 accumulators of 16x16 in f32 (4
// subgroups, 32x32 blocks in 2 x 2, with GEMM_THREADS=128). With
// GEMM_BM=128 the block is 128x64 and each of the 8 subgroups owns 32x32:
// per K step, a quarter fewer operand bytes read for each multiply-add, for
// 16 more accumulator and 8 more prefetch registers an invocation. Operand
// tiles are staged in shared memory as f16.
//
// On an H200 the driver's multiply-adds are not what limits this shader (a
// loop of nothing else runs at 390-570 TFLOP/s, as fast as mma.sync under
// CUDA: bench/RESULTS.md); getting operands in and results out is. So:
//   - while a K step is multiplied, the next one's operands are on their way
//     into registers (a_next, b_next);
//   - operands move as 16-byte vectors of 8 f16 from registers to shared
//     memory, and from memory too where rows are 16-byte aligned
//     (rows_aligned());
//   - neighbouring invocations read neighbouring memory (see fetch);
//   - operand A is f16 in memory, built beforehand: a conv's column matrix
//     (im2col.comp) rather than pixels gathered here one at a time, a
//     matmul's x copied once (f16_copy.comp) rather than read in f32 once
//     per column of tiles;
//   - shared memory is kept to 18 KB a workgroup, the results staged in the
//     operand tiles' memory (with a separate 17 KB staging area, convs that
//     gathered their operand A a pixel at a time ran at half the speed on an
//     H200 and matmuls did not);
//   - the finished tile leaves four elements at a time (store_c4).
// Every loop over fragments or load slots is unrolled: fragments and
// prefetched values indexed by a run-time counter would live in memory
// (emulated, the loop over a K step's chunks stays a loop: CM_LOOP).
//
// Hooks beyond gemm.glsl's, for this implementation only:
//   bool rows_aligned()      uniform: B's rows and A's start on 16 bytes
//                            and K % 8 == 0
//   uvec4 load_b8(n, k)      B[n][k..k+7] as packed f16, if rows_aligned()
//   uvec4 load_a8(m, k)      A[m][k..k+7] as packed f16, if rows_aligned()
// A runs along K here (A_ALONG_M is the f32 GEMM's), so a_row_setup,
// a_k_setup and a_k_step go uncalled.
//
// The host uses this only on devices that report 16x16x16 f16 x f16 + f32
// subgroup matrices and 32-wide subgroups (or emulates them, see
// coopmat.glsl), and only in f16 compute.
#include "coopmat.glsl"

#ifdef A_ALONG_M
#error "gemm_coopmat.glsl reads A along K"
#endif
bool rows_aligned();
uvec4 load_b8(uint n, uint k);
uvec4 load_a8(uint m, uint k);

// K step, workgroup size and shared-memory stages: the defaults are what the
// H200 ran fastest (the whole SD 1.5 UNet 8% faster than with a K step of
// 32 and 4 subgroups, 4% faster than 8 subgroups with 32: bench/RESULTS.md);
// GEMM_BK (32 or 64), GEMM_THREADS (128 or 256: 4 or 8 subgroups sharing the
// tile) and GEMM_STAGES (1, or 2: the next K step's operands go into a
// second set of tiles while this one's are multiplied, one barrier a step
// instead of two, twice the shared memory; slower on the H200) and
// GEMM_PREFETCH (1, 2 or 3: operands are loaded that many K steps ahead,
// into as many sets of registers, so that each load has that many steps'
// multiplies to arrive in; 16 more registers a set with K steps of 64, not
// yet timed: the H200's GEMMs ran at a K step of 64 a workgroup every ~1 us,
// about a load's round trip, where their multiplies take a fraction) may be
// defined to try others without editing this file (bench/shader_variants.sh
// builds such variants for KILN_VULKAN_SHADER_DIR).
#ifndef GEMM_BK
#define GEMM_BK 64
#endif
#ifndef GEMM_THREADS
#define GEMM_THREADS 256
#endif
#ifndef GEMM_STAGES
#define GEMM_STAGES 1
#endif
#ifndef GEMM_PREFETCH
#define GEMM_PREFETCH 1
#endif
#ifndef GEMM_BM
#define GEMM_BM 64
#endif
#if (GEMM_BK != 32 && GEMM_BK != 64) || (GEMM_THREADS != 128 && GEMM_THREADS != 256) || \
    (GEMM_STAGES != 1 && GEMM_STAGES != 2)
#error "gemm_coopmat.glsl: GEMM_BK must be 32 or 64, GEMM_THREADS 128 or 256, GEMM_STAGES 1 or 2"
#endif
#if GEMM_PREFETCH < 1 || GEMM_PREFETCH > 3 || (GEMM_PREFETCH > 1 && GEMM_STAGES != 1)
#error "gemm_coopmat.glsl: GEMM_PREFETCH must be 1, 2 or 3, and more than 1 with one stage"
#endif
#if GEMM_STAGES == 2 && GEMM_BK == 64
#error "gemm_coopmat.glsl: two stages of K steps of 64 take 36 KB of shared memory, over the 32 KB kiln asks of a device"
#endif
#if GEMM_BM != 64 && (GEMM_BM != 128 || GEMM_THREADS != 256 || GEMM_BK != 64 || GEMM_STAGES != 1)
#error "gemm_coopmat.glsl: GEMM_BM must be 64, or 128 with 256 invocations, K steps of 64 and one stage"
#endif
const uint BM = GEMM_BM, BN = 64, BK = GEMM_BK;
const uint THREADS = GEMM_THREADS, STAGES = GEMM_STAGES;
const uint SUBGROUPS_M = BM / 32u, SUBGROUPS = THREADS / 32u;
const uint FRAGS_N = BN / (SUBGROUPS / SUBGROUPS_M) / 16u; // accumulators across a subgroup's block
const uint ROW_CHUNKS = BK / 8u;   // uvec4s of 8 f16 in a tile row of K
const uint LDV = ROW_CHUNKS + 1u;  // tile row stride in uvec4s (80 or 144 bytes), so 8 rows of 16 bytes hit 8 bank groups
// per invocation and K step: of A, of B
const uint CHUNKS_A = BM * ROW_CHUNKS / THREADS, CHUNKS_B = BN * ROW_CHUNKS / THREADS;

layout(local_size_x = THREADS) in;

// The operand tiles of each stage, (m, k) from A_TILE and (n, k) from
// B_TILE, in one array: after the K loop the same memory stages the finished
// tile on its way out, in PARTS pieces of LINES lines of LDC4 uvec4s (4 f32
// each): half of it at a time where the operand tiles leave no room for the
// whole (one stage of K steps of 32, or 128 rows). Lines are rows of C, or
// columns with C_ALONG_M, so that neighbouring invocations write
// neighbouring memory; one uvec4 more than a line's elements starts each
// line 16 bytes further along the banks. A workgroup so needs 18 KB of
// shared memory (10 with a K step of 32, 20 with two such stages, 27 with
// 128 rows).
const uint A_TILE = 0u, B_TILE = BM * LDV, STAGE = (BM + BN) * LDV;
shared uvec4 tiles[STAGES * STAGE];
#ifdef C_ALONG_M
const uint LINE = BM, ALL_LINES = BN; // elements in a line; lines in the tile
#else
const uint LINE = BN, ALL_LINES = BM;
#endif
const uint LDC4 = LINE / 4u + 1u;
const uint PARTS = ALL_LINES * LDC4 <= STAGES * STAGE ? 1u : 2u, LINES = ALL_LINES / PARTS;

// The operands of K steps on their way from memory: the next one's, and
// with GEMM_PREFETCH 2 or 3 the one or two after it too.
uvec4 a_next[CHUNKS_A], b_next[CHUNKS_B];
#if GEMM_PREFETCH >= 2
uvec4 a_later[CHUNKS_A], b_later[CHUNKS_B];
#endif
#if GEMM_PREFETCH == 3
uvec4 a_last[CHUNKS_A], b_last[CHUNKS_B];
#endif

uvec4 pack_f16(vec4 lo, vec4 hi)
{
    return uvec4(packFloat2x16(f16vec2(lo.xy)), packFloat2x16(f16vec2(lo.zw)), packFloat2x16(f16vec2(hi.xy)),
                 packFloat2x16(f16vec2(hi.zw)));
}

// B[n][k..k+7] and A[m][k..k+7] as 8 f16, zeros past N (M) and K: one
// 16-byte load where `vector` (rows_aligned()) and the chunk is whole.
uvec4 fetch_b8(uint N, uint K, uint n, uint k, bool vector)
{
    if (vector && n < N && k + 8u <= K) return load_b8(n, k);
    float v[8];
    [[unroll]] for (uint j = 0; j < 8u; j++) v[j] = n < N && k + j < K ? load_b(n, k + j) : 0.0;
    return pack_f16(vec4(v[0], v[1], v[2], v[3]), vec4(v[4], v[5], v[6], v[7]));
}

uvec4 fetch_a8(uint M, uint K, uint m, uint k, bool vector)
{
    if (vector && m < M && k + 8u <= K) return load_a8(m, k);
    float v[8];
    [[unroll]] for (uint j = 0; j < 8u; j++) v[j] = m < M && k + j < K ? load_a(m, k + j) : 0.0;
    return pack_f16(vec4(v[0], v[1], v[2], v[3]), vec4(v[4], v[5], v[6], v[7]));
}

// The K step from k0 into registers a_regs and b_regs (macros, as the
// register sets are named, not indexed: an array of them indexed by a
// run-time counter would live in memory). Who loads what: neighbouring
// invocations read neighbouring memory. Chunk c = t + THREADS q of either
// operand is row c / ROW_CHUNKS, k from 8 (c % ROW_CHUNKS): ROW_CHUNKS
// neighbouring invocations read one row's BK k.
#define FETCH(a_regs, b_regs, M, N, K, m0, n0, k0)                                                \
    {                                                                                             \
        [[unroll]] for (uint q = 0; q < CHUNKS_B; q++) {                                          \
            uint c = gl_LocalInvocationID.x + THREADS * q;                                        \
            b_regs[q] = fetch_b8(N, K, (n0) + c / ROW_CHUNKS, (k0) + 8u * (c % ROW_CHUNKS), rows_aligned()); \
        }                                                                                         \
        [[unroll]] for (uint q = 0; q < CHUNKS_A; q++) {                                          \
            uint c = gl_LocalInvocationID.x + THREADS * q;                                        \
            a_regs[q] = fetch_a8(M, K, (m0) + c / ROW_CHUNKS, (k0) + 8u * (c % ROW_CHUNKS), rows_aligned()); \
        }                                                                                         \
    }

// Registers a_regs and b_regs into the stage at `stage`.
#define STASH(stage, a_regs, b_regs)                                                              \
    {                                                                                             \
        [[unroll]] for (uint q = 0; q < CHUNKS_B; q++) {                                          \
            uint c = gl_LocalInvocationID.x + THREADS * q;                                        \
            tiles[(stage) + B_TILE + (c / ROW_CHUNKS) * LDV + c % ROW_CHUNKS] = b_regs[q];        \
        }                                                                                         \
        [[unroll]] for (uint q = 0; q < CHUNKS_A; q++) {                                          \
            uint c = gl_LocalInvocationID.x + THREADS * q;                                        \
            tiles[(stage) + A_TILE + (c / ROW_CHUNKS) * LDV + c % ROW_CHUNKS] = a_regs[q];        \
        }                                                                                         \
    }

// acc += the stage's A tile rows sm.. times its B tile columns sn.. (the
// subgroup's block), 16 k at a time (CM_LOOP: emulated, a loop).
#define MULTIPLY(acc, stage, sm, sn)                                                              \
    CM_LOOP for (uint kk = 0; kk < ROW_CHUNKS; kk += 2) {                                         \
        cm_a a[2];                                                                                \
        cm_b b[FRAGS_N];                                                                          \
        [[unroll]] for (uint i = 0; i < 2; i++)                                                   \
            CM_LOAD_A_V(a[i], tiles, (stage) + A_TILE + ((sm) + 16 * i) * LDV + kk, LDV);         \
        [[unroll]] for (uint j = 0; j < FRAGS_N; j++)                                             \
            CM_LOAD_B_V(b[j], tiles, (stage) + B_TILE + ((sn) + 16 * j) * LDV + kk, LDV, true);   \
        [[unroll]] for (uint i = 0; i < 2; i++)                                                   \
            [[unroll]] for (uint j = 0; j < FRAGS_N; j++) CM_MUL_ADD(acc[i][j], a[i], b[j]);     \
    }

void gemm_tile(uint M, uint N, uint k_begin, uint K)
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint sg = CM_SUBGROUP;
    uint sm = (sg % SUBGROUPS_M) * 32u, sn = (sg / SUBGROUPS_M) * FRAGS_N * 16u;

    cm_acc acc[2][FRAGS_N];
    [[unroll]] for (uint i = 0; i < 2; i++)
        [[unroll]] for (uint j = 0; j < FRAGS_N; j++) CM_ZERO(acc[i][j]);

    FETCH(a_next, b_next, M, N, K, m0, n0, k_begin);
    STASH(0u, a_next, b_next);
    barrier();
#if GEMM_PREFETCH == 1
    uint stage = 0u; // the stage being multiplied, times STAGE
    for (uint k0 = k_begin; k0 < K; k0 += BK) {
        bool more = k0 + BK < K;
        if (more) FETCH(a_next, b_next, M, N, K, m0, n0, k0 + BK);
        MULTIPLY(acc, stage, sm, sn);
        // One stage: its tiles are read before the next step's overwrite
        // them. Two: the other stage was read in the previous step, before
        // the barrier that ended it.
        if (STAGES == 1u) barrier();
        stage = (stage + STAGE) % (STAGES * STAGE);
        if (more) STASH(stage, a_next, b_next);
        barrier(); // the next step's tiles are in (and, last, this step's read)
    }
#else
    // P = GEMM_PREFETCH steps ahead: each load has P steps' multiplies to
    // arrive in, where it has one above. The register sets take turns, so
    // the loop goes P steps a turn; at its top the tiles hold step k0,
    // a_next step k0 + BK, a_later k0 + 2 BK (and a_last k0 + 3 BK). A
    // step: multiply the tiles (step k), then refill them from the set
    // holding k + BK, and that set with k + (P + 1) BK.
    const uint AHEAD = GEMM_PREFETCH;
#define STEP(a_regs, b_regs, k)                                                                   \
    MULTIPLY(acc, 0u, sm, sn);                                                                    \
    barrier(); /* the tiles are read */                                                           \
    if ((k) + BK >= K) break;                                                                     \
    STASH(0u, a_regs, b_regs);                                                                    \
    if ((k) + (AHEAD + 1u) * BK < K) FETCH(a_regs, b_regs, M, N, K, m0, n0, (k) + (AHEAD + 1u) * BK); \
    barrier() /* step k + BK is in */
    if (k_begin + BK < K) FETCH(a_next, b_next, M, N, K, m0, n0, k_begin + BK);
    if (k_begin + 2u * BK < K) FETCH(a_later, b_later, M, N, K, m0, n0, k_begin + 2u * BK);
#if GEMM_PREFETCH == 3
    if (k_begin + 3u * BK < K) FETCH(a_last, b_last, M, N, K, m0, n0, k_begin + 3u * BK);
#endif
    for (uint k0 = k_begin; k0 < K; k0 += AHEAD * BK) {
        STEP(a_next, b_next, k0);
        STEP(a_later, b_later, k0 + BK);
#if GEMM_PREFETCH == 3
        STEP(a_last, b_last, k0 + 2u * BK);
#endif
    }
#endif

    // Out through shared memory, PARTS pieces of the tile (the operand tiles
    // were read by the loop's last barrier): the subgroups holding a piece
    // store their blocks, then neighbouring invocations write neighbouring
    // runs of four elements of a line. (Per subgroup, block by block with a
    // sync between, the H200 ran matmuls at a third to half this speed:
    // bench/RESULTS.md.)
#ifdef C_ALONG_M
    const bool col_major = true;
    uint mine = sn; // this subgroup's first line
#else
    const bool col_major = false;
    uint mine = sm;
#endif
    [[unroll]] for (uint h = 0; h < PARTS; h++) {
        if (h > 0u) barrier(); // the previous piece is out of shared memory
        if (mine / LINES == h)
            [[unroll]] for (uint i = 0; i < 2; i++)
                [[unroll]] for (uint j = 0; j < FRAGS_N; j++) {
                    uint r = sm + 16u * i, c = sn + 16u * j; // the block's first row and column in the tile
                    uint line = (col_major ? c : r) - h * LINES, at = col_major ? r : c;
                    CM_STORE_V(acc[i][j], tiles, line * LDC4 + at / 4u, LDC4, col_major);
                }
        barrier();
        for (uint e = 4u * t; e < LINES * LINE; e += 4u * THREADS) {
            uint line = e / LINE, at = e % LINE;
            vec4 v = uintBitsToFloat(tiles[line * LDC4 + at / 4u]);
            uint m = m0 + (col_major ? at : h * LINES + line), n = n0 + (col_major ? h * LINES + line : at);
            if (m < M && n < N) emit4(M, N, m, n, v, min(4u, col_major ? M - m : N - n));
        }
    }
}
