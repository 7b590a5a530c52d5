// Matrices shared by a whole workgroup: VK_NV_cooperative_matrix2's
// workgroup scope, where the driver spreads a matrix over the workgroup's
// subgroups and stages its loads through shared memory itself (the
// extension's "compiler-managed staging"), in two implementations:
//   - on a device, VK_KHR_cooperative_matrix types of workgroup scope. glslang
//     12 has neither KHR matrices nor GL_NV_cooperative_matrix2, but takes
//     GL_NV_cooperative_matrix types of any scope and size, which the build
//     rewrites into KHR ones (tools/build/spirv_khr_coopmat.c); the host
//     runs them only where the driver lists the sizes as flexible
//     dimensions at this workgroup size (runtime/vulkan_device.c);
//   - COOPMAT_EMULATED: the same operations in plain GLSL for lavapipe,
//     every invocation holding elements i THREADS + t of a matrix in
//     row-major order, products formed through shared memory.
// The including shader defines WG_M, WG_N, WG_K (A is WG_M x WG_K f16, B
// WG_K x WG_N f16, the accumulator WG_M x WG_N f32) and WG_THREADS, its
// workgroup size:
//   wg_a, wg_b, wg_acc
//   WG_ZERO(c)                                     c = 0
//   WG_LOAD_A(a, array, offset, stride)            A(i, k) = array[offset + i stride + k]
//   WG_LOAD_B_COLUMNS(b, array, offset, stride)    B(k, j) = array[offset + j stride + k]
//   WG_MUL_ADD(c, a, b)                            c += A B
//   WG_STORE(c, array, offset, stride, col_major)  array[offset + i stride + j] = C(i, j),
//                                                  or col_major array[offset + j stride + i]
// Every one is a workgroup operation: control flow uniform across the
// workgroup only.
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require

#ifndef COOPMAT_EMULATED
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require

#define wg_a fcoopmatNV<16, gl_ScopeWorkgroup, WG_M, WG_K>
#define wg_b fcoopmatNV<16, gl_ScopeWorkgroup, WG_K, WG_N>
#define wg_acc fcoopmatNV<32, gl_ScopeWorkgroup, WG_M, WG_N>
#define WG_ZERO(c) c = wg_acc(0.0)
#define WG_LOAD_A(a, array, offset, stride) coopMatLoadNV(a, array, offset, stride, false)
#define WG_LOAD_B_COLUMNS(b, array, offset, stride) coopMatLoadNV(b, array, offset, stride, true)
#define WG_MUL_ADD(c, a, b) c = coopMatMulAddNV(a, b, c)
#define WG_STORE(c, array, offset, stride, col_major) coopMatStoreNV(c, array, offset, stride, col_major)

#else
#if (WG_M * WG_K) % WG_THREADS != 0 || (WG_K * WG_N) % WG_THREADS != 0 || (WG_M * WG_N) % WG_THREADS != 0
#error "coopmat_workgroup.glsl: every matrix must spread evenly over the workgroup"
#endif
const uint WG_A_SHARE = WG_M * WG_K / WG_THREADS, WG_B_SHARE = WG_K * WG_N / WG_THREADS;
const uint WG_ACC_SHARE = WG_M * WG_N / WG_THREADS;
struct wg_a {
    float v[WG_A_SHARE];
};
struct wg_b {
    float v[WG_B_SHARE];
};
struct wg_acc {
    float v[WG_ACC_SHARE];
};
shared float16_t wg_a_all[WG_M * WG_K], wg_b_all[WG_K * WG_N]; // the operands of a product, whole

// Element s of this invocation's share of a matrix `cols` wide: its row and column.
uint wg_row(uint s, uint cols) { return (s * WG_THREADS + gl_LocalInvocationIndex) / cols; }
uint wg_col(uint s, uint cols) { return (s * WG_THREADS + gl_LocalInvocationIndex) % cols; }

#define WG_ZERO(c) [[unroll]] for (uint wg_s = 0; wg_s < WG_ACC_SHARE; wg_s++) c.v[wg_s] = 0.0
#define WG_LOAD_A(a, array, offset, stride)                                                       \
    [[dont_unroll]] for (uint wg_s = 0; wg_s < WG_A_SHARE; wg_s++)                                \
        a.v[wg_s] = float(array[(offset) + wg_row(wg_s, WG_K) * (stride) + wg_col(wg_s, WG_K)])
#define WG_LOAD_B_COLUMNS(b, array, offset, stride)                                               \
    [[dont_unroll]] for (uint wg_s = 0; wg_s < WG_B_SHARE; wg_s++)                                \
        b.v[wg_s] = float(array[(offset) + wg_col(wg_s, WG_N) * (stride) + wg_row(wg_s, WG_N)])
#define WG_STORE(c, array, offset, stride, col_major)                                             \
    [[dont_unroll]] for (uint wg_s = 0; wg_s < WG_ACC_SHARE; wg_s++)                              \
        array[(offset) + ((col_major) ? wg_col(wg_s, WG_N) * (stride) + wg_row(wg_s, WG_N)        \
                                      : wg_row(wg_s, WG_N) * (stride) + wg_col(wg_s, WG_N))] = c.v[wg_s]

// The operands go whole into shared memory; each invocation then forms its
// share of the product. Rounded to f16 as the tensor cores take them.
wg_acc wg_mul_add(wg_a a, wg_b b, wg_acc c)
{
    barrier(); // the previous product has read the operands
    [[dont_unroll]] for (uint s = 0; s < WG_A_SHARE; s++)
        wg_a_all[s * WG_THREADS + gl_LocalInvocationIndex] = float16_t(a.v[s]);
    [[dont_unroll]] for (uint s = 0; s < WG_B_SHARE; s++)
        wg_b_all[s * WG_THREADS + gl_LocalInvocationIndex] = float16_t(b.v[s]);
    barrier();
    [[dont_unroll]] for (uint s = 0; s < WG_ACC_SHARE; s++) {
        uint i = wg_row(s, WG_N), j = wg_col(s, WG_N);
        float sum = c.v[s];
        [[dont_unroll]] for (uint k = 0; k < WG_K; k++)
            sum = fma(float(wg_a_all[i * WG_K + k]), float(wg_b_all[k * WG_N + j]), sum);
        c.v[s] = sum;
    }
    return c;
}
#define WG_MUL_ADD(c, a, b) c = wg_mul_add(a, b, c)
#endif
