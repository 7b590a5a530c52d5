// gemm.glsl's interface on tensor cores (VK_NV_cooperative_matrix): a
// workgroup of 256 invocations in 8 subgroups of 32 computes a 128x128 tile
// of C, stepping through K by 32. Operand tiles are staged in shared memory
// as f16 (A rows along K, B rows along K, so B is loaded column-major);
// subgroup s owns the 32x64 block at rows 32 (s % 4), columns 64 (s / 4):
// 2 x 4 accumulators of 16x16 in f32. The host uses this only on devices
// that report 16x16x16 f16 x f16 + f32 subgroup matrices and 32-wide
// subgroups, and only where the user asked for f16 compute.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require

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

#define FRAG_A fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG_C fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

void gemm_tile(uint M, uint N, uint K)
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint sm = (sg % 4u) * 32u, sn = (sg / 4u) * 64u;

    for (uint slot = 0; slot < LOADS; slot++) {
        uint m = m0 + a_tile_row(t + THREADS * slot);
        if (m < M) a_row_setup(slot, m);
    }

    FRAG_C acc[2][4];
    for (uint i = 0; i < 2; i++)
        for (uint j = 0; j < 4; j++) acc[i][j] = FRAG_C(0.0);

    for (uint k0 = 0; k0 < K; k0 += BK) {
        for (uint slot = 0; slot < LOADS; slot++) {
            uint e = t + THREADS * slot;
            uint am = a_tile_row(e), ak = a_tile_k(e);
            uint m = m0 + am, k = k0 + ak;
            a_tile[am * LD + ak] = float16_t(m < M && k < K ? load_a(slot, m, k) : 0.0);
            uint bn = e / BK, bk = e % BK;
            uint n = n0 + bn;
            k = k0 + bk;
            b_tile[bn * LD + bk] = float16_t(n < N && k < K ? load_b(n, k) : 0.0);
        }
        barrier();
        for (uint kk = 0; kk < BK; kk += 16) {
            FRAG_A a[2], b[4];
            for (uint i = 0; i < 2; i++) coopMatLoadNV(a[i], a_tile, (sm + 16 * i) * LD + kk, LD, false);
            for (uint j = 0; j < 4; j++) coopMatLoadNV(b[j], b_tile, (sn + 16 * j) * LD + kk, LD, true);
            for (uint i = 0; i < 2; i++)
                for (uint j = 0; j < 4; j++) acc[i][j] = coopMatMulAddNV(a[i], b[j], acc[i][j]);
        }
        barrier();
    }

    // each 16x16 block through this subgroup's staging area, 8 values a lane
    for (uint i = 0; i < 2; i++)
        for (uint j = 0; j < 4; j++) {
            coopMatStoreNV(acc[i][j], c_stage, sg * 256u, 16, false);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint e = lane; e < 256u; e += gl_SubgroupSize) {
                uint m = m0 + sm + 16 * i + e / 16u, n = n0 + sn + 16 * j + e % 16u;
                if (m < M && n < N) store_c(m, n, c_stage[sg * 256u + e]);
            }
            subgroupBarrier(); // every lane has read the block before the next one lands
        }
}
