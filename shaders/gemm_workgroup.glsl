// gemm.glsl's interface on workgroup-scope matrices (coopmat_workgroup.glsl):
// a workgroup of 256 computes a 128x64 block of C as two 64x64
// accumulators, stepping through K by 32, its operands loaded straight from
// memory into matrices of the whole workgroup. How they reach the tensor
// cores (through shared memory, how many steps ahead, in which layout) is
// the driver's to decide: on NVIDIA's that is what VK_NV_cooperative_matrix2
// adds over gemm_coopmat.glsl's subgroup matrices, whose loads kiln stages
// itself and which reached a third of cuBLASLt's rate on an H100
// (bench/RESULTS.md). Not yet run on a GPU: the host runs it only where
// asked for (KILN_VULKAN_GEMM_WORKGROUP=1, runtime/vulkan_device.c), after
// checking it against the CPU when the device opens.
//
// Whole tiles only: M a multiple of 128, N of 64, K (and each split's
// share) of 32, A's and B's rows starting on 16 bytes (rows_aligned()):
// loads from memory into matrices are not clamped at the edges. The host
// (run_gemm, runtime/vulkan_ops.c) sends any other GEMM to
// gemm_coopmat.glsl's 64x64 tiles.
//
// Hooks beyond gemm.glsl's, for this implementation only:
//   f16_rows a_rows(), b_rows()      A's and B's f16 elements
//   uint a_index(m, k), b_index(n, k) where A(m, k) and B(n, k) are in them
//   uint a_stride(), b_stride()      elements from one row to the next
#ifdef A_ALONG_M
#error "gemm_workgroup.glsl reads A along K"
#endif
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer f16_rows { float16_t v[]; };
f16_rows a_rows();
f16_rows b_rows();
uint a_index(uint m, uint k);
uint b_index(uint n, uint k);
uint a_stride();
uint b_stride();

const uint BM = 128, BN = 64, BK = 32, THREADS = 256;
#define WG_M 64
#define WG_N 64
#define WG_K 32
#define WG_THREADS 256
layout(local_size_x = THREADS) in;
#include "coopmat_workgroup.glsl"

// One accumulator on its way out: 64 lines of 64 f32 (rows of C, or
// columns with C_ALONG_M, so that neighbouring invocations write
// neighbouring memory), each 16 bytes longer than its elements so that
// the lines start in different banks.
const uint LDC = WG_N + 4u;
shared float c_stage[WG_M * LDC];

void gemm_tile(uint M, uint N, uint k_begin, uint K)
{
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    f16_rows a = a_rows(), b = b_rows();
    // Multiples of 8 elements, as the host guarantees (16-byte rows): said
    // so that the driver may load 16 bytes at a time.
    uint a_step = a_stride() & ~7u, b_step = b_stride() & ~7u;
    wg_acc top, bottom; // rows m0 .. m0 + 63, m0 + 64 .. m0 + 127
    WG_ZERO(top);
    WG_ZERO(bottom);
    for (uint k = k_begin & ~7u; k < K; k += BK) {
        wg_b w;
        WG_LOAD_B_COLUMNS(w, b.v, b_index(n0, k) & ~7u, b_step);
        wg_a x;
        WG_LOAD_A(x, a.v, a_index(m0, k) & ~7u, a_step);
        WG_MUL_ADD(top, x, w);
        WG_LOAD_A(x, a.v, a_index(m0 + WG_M, k) & ~7u, a_step);
        WG_MUL_ADD(bottom, x, w);
    }

#ifdef C_ALONG_M
    const bool col_major = true;
#else
    const bool col_major = false;
#endif
    [[unroll]] for (uint h = 0; h < 2u; h++) {
        barrier(); // the stage is free (the previous half is out)
        if (h == 0u) {
            WG_STORE(top, c_stage, 0u, LDC, col_major);
        } else {
            WG_STORE(bottom, c_stage, 0u, LDC, col_major);
        }
        barrier();
        for (uint e = 4u * gl_LocalInvocationID.x; e < WG_M * WG_N; e += 4u * THREADS) {
            uint line = e / WG_N, at = e % WG_N, s = line * LDC + at;
            vec4 v = vec4(c_stage[s], c_stage[s + 1u], c_stage[s + 2u], c_stage[s + 3u]);
            uint m = m0 + WG_M * h + (col_major ? at : line), n = n0 + (col_major ? line : at);
            emit4(M, N, m, n, v, 4u);
        }
    }
}
