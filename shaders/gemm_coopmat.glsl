// gemm.glsl's interface on tensor cores (coopmat.glsl): a workgroup of 256
// invocations in 8 subgroups of 32 computes a 128x128 tile of C, stepping
// through K by 32. Operand tiles are staged in shared memory as f16 (A rows
// along K, B rows along K, so B is loaded column-major); subgroup s owns the
// 32x64 block at rows 32 (s % 4), columns 64 (s / 4): 2 x 4 accumulators of
// 16x16 in f32. While a K step is multiplied, the next one's operands are on
// their way from memory into registers, so the loads' latency hides behind
// the tensor-core work instead of stalling every subgroup at the barrier.
// Every loop over fragments or load slots is unrolled: fragments and
// prefetched values indexed by a run-time counter would live in memory.
// The host uses this only on devices that report 16x16x16 f16 x f16 + f32
// subgroup matrices and 32-wide subgroups (or emulates them, see
// coopmat.glsl), and only where the user asked for f16 compute.
#include "coopmat.glsl"

const uint BM = 128, BN = 128, BK = 32;
const uint THREADS = 256;
const uint LOADS = BM * BK / THREADS; // per invocation and tile, for A and for B
const uint LD = BK + 8;               // f16 row stride: 80 bytes, a multiple of 16

layout(local_size_x = THREADS) in;

shared float16_t a_tile[BM * LD]; // (m, k)
shared float16_t b_tile[BN * LD]; // (n, k)
shared float c_stage[8 * 256];    // one 16x16 f32 block per subgroup, on the way out

uint a_tile_row(uint e) { return A_ALONG_M ? e % BM : e / BK; }
uint a_tile_k(uint e) { return A_ALONG_M ? e / BM : e % BK; }

// One K step's operands for this invocation, read from memory as f16.
float16_t a_next[LOADS], b_next[LOADS];

void fetch(uint M, uint N, uint K, uint m0, uint n0, uint k0)
{
    uint t = gl_LocalInvocationID.x;
    [[unroll]] for (uint slot = 0; slot < LOADS; slot++) {
        uint e = t + THREADS * slot;
        uint m = m0 + a_tile_row(e), k = k0 + a_tile_k(e);
        a_next[slot] = float16_t(m < M && k < K ? load_a(slot, m, k) : 0.0);
        uint n = n0 + e / BK;
        k = k0 + e % BK;
        b_next[slot] = float16_t(n < N && k < K ? load_b(n, k) : 0.0);
    }
}

void gemm_tile(uint M, uint N, uint K)
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint sg = CM_SUBGROUP, lane = CM_LANE;
    uint sm = (sg % 4u) * 32u, sn = (sg / 4u) * 64u;

    [[unroll]] for (uint slot = 0; slot < LOADS; slot++) {
        uint m = m0 + a_tile_row(t + THREADS * slot);
        if (m < M) a_row_setup(slot, m);
    }

    cm_acc acc[2][4];
    [[unroll]] for (uint i = 0; i < 2; i++)
        [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = cm_zero();

    fetch(M, N, K, m0, n0, 0);
    for (uint k0 = 0; k0 < K; k0 += BK) {
        [[unroll]] for (uint slot = 0; slot < LOADS; slot++) {
            uint e = t + THREADS * slot;
            a_tile[a_tile_row(e) * LD + a_tile_k(e)] = a_next[slot];
            b_tile[(e / BK) * LD + e % BK] = b_next[slot];
        }
        barrier();
        if (k0 + BK < K) fetch(M, N, K, m0, n0, k0 + BK);
        [[unroll]] for (uint kk = 0; kk < BK; kk += 16) {
            cm_a a[2];
            cm_b b[4];
            [[unroll]] for (uint i = 0; i < 2; i++) CM_LOAD_A(a[i], a_tile, (sm + 16 * i) * LD + kk, LD);
            [[unroll]] for (uint j = 0; j < 4; j++) CM_LOAD_B(b[j], b_tile, (sn + 16 * j) * LD + kk, LD, true);
            [[unroll]] for (uint i = 0; i < 2; i++)
                [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = cm_mul_add(a[i], b[j], acc[i][j]);
        }
        barrier(); // the tiles are read before the next step overwrites them
    }

    // each 16x16 block through this subgroup's staging area, 8 values a lane
    [[unroll]] for (uint i = 0; i < 2; i++)
        [[unroll]] for (uint j = 0; j < 4; j++) {
            CM_STORE(acc[i][j], c_stage, sg * 256u, 16);
            cm_subgroup_sync();
            for (uint e = lane; e < 256u; e += 32u) {
                uint m = m0 + sm + 16 * i + e / 16u, n = n0 + sn + 16 * j + e % 16u;
                if (m < M && n < N) store_c(m, n, c_stage[sg * 256u + e]);
            }
            cm_subgroup_sync(); // every lane has read the block before the next one lands
        }
}
