// 16x16 matrices shared by a subgroup of 32 (tensor cores), the handful of
// operations kiln's tensor-core shaders use, in two implementations:
//   - VK_NV_cooperative_matrix (the default), on NVIDIA's driver;
//   - COOPMAT_EMULATED: the same operations in plain GLSL, so that CI checks
//     the shaders' tiling on lavapipe, which has no cooperative matrices
//     (KILN_VULKAN_EMULATE_COOPMAT=1, runtime/vulkan_device.c). It follows
//     the extension's definitions of load, store and multiply-add, not its
//     speed.
// B and the accumulator are built from CM_PARTS parts of 16 x CM_N (CM_N 16,
// or 8 for 16x8x16 multiplies, the shape of the hardware's mma.m16n8k16: a
// define, KILN_VULKAN_COOPMAT_N in runtime/vulkan_device.c); the code that
// splits a 16x16 operation into parts is shared by both implementations, so
// the emulated runs test it too.
//
//   cm_a, cm_b, cm_acc     A (16x16 f16), B (16x16 f16), accumulator (f32)
//   CM_ZERO(c)                              c = 0
//   CM_LOAD_A(a, array, offset, stride)
//       A(i, k) = array[offset + i * stride + k]
//   CM_LOAD_B(b, array, offset, stride, col_major)
//       B(k, j) = array[offset + k * stride + j], or with col_major
//       array[offset + j * stride + k]
//   CM_LOAD_A_V(a, array, offset, stride), CM_LOAD_B_V(b, array, offset, stride, col_major)
//       the same from an array of uvec4 (8 f16 each, lowest first): offset
//       and stride count uvec4s, the 16 elements of a row (A) or column
//       (col_major B) are two neighbouring uvec4s
//   CM_LOAD_C(c, array, offset, stride)     C(i, j) = array[offset + i * stride + j], from f32
//   CM_MUL_ADD(c, a, b)                     c += A B
//   CM_STORE(c, array, offset, stride)      array[offset + i * stride + j] = C(i, j)
//   CM_STORE_V(c, array, offset, stride, col_major)
//       the same into an array of uvec4 (4 f32 each, lowest first) with
//       offset and stride counting uvec4s, or with col_major C(i, j) at f32
//       4 offset + 4 j stride + i
//   CM_SUBGROUP, CM_LANE                     this invocation's subgroup and lane (0..31)
//   cm_subgroup_sync()                       a subgroup's stores to shared memory are
//                                            visible to all its lanes
//   CM_LOOP for (...)                        a loop whose iterations are whole matrix
//                                            operations (a head dim's chunks, a K step's)
// array is a shared array (f16 or uvec4 for loads, f32 for stores); offsets
// and strides count its elements. The macros are statements. Emulated,
// cm_subgroup_sync is a workgroup barrier, so every call of it must be in
// control flow uniform across the workgroup; the workgroup size must be a
// multiple of 32.
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_control_flow_attributes : require

#ifndef CM_N
#define CM_N 16
#endif

// On a device CM_LOOP is unrolled: fragments indexed by a run-time counter
// would live in memory. Emulated it stays a loop: lavapipe's compile time
// grows steeply with unrolled emulated operations (attention at head dim
// 160 took 150 s unrolled, 2 to 4 s as a loop; a GEMM loading 3 K steps
// ahead 55 s, 14 s as a loop).
#ifdef COOPMAT_EMULATED
#define CM_LOOP [[dont_unroll]]
#else
#define CM_LOOP [[unroll]]
#endif
const uint CM_PARTS = 16u / CM_N;

#ifndef COOPMAT_EMULATED
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require

#define cm_a fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define cm_part_b fcoopmatNV<16, gl_ScopeSubgroup, 16, CM_N>
#define cm_part_acc fcoopmatNV<32, gl_ScopeSubgroup, 16, CM_N>
#define CM_PART_ZERO(c) c = cm_part_acc(0.0)
#define CM_LOAD_A(a, array, offset, stride) coopMatLoadNV(a, array, offset, stride, false)
#define CM_LOAD_A_V(a, array, offset, stride) coopMatLoadNV(a, array, offset, stride, false)
#define CM_PART_LOAD_B(b, array, offset, stride, col_major) coopMatLoadNV(b, array, offset, stride, col_major)
#define CM_PART_LOAD_B_V(b, array, offset, stride, col_major) coopMatLoadNV(b, array, offset, stride, col_major)
#define CM_PART_LOAD_C(c, array, offset, stride) coopMatLoadNV(c, array, offset, stride, false)
#define CM_PART_MUL_ADD(c, a, b) c = coopMatMulAddNV(a, b, c)
#define CM_PART_STORE(c, array, offset, stride) coopMatStoreNV(c, array, offset, stride, false)
#define CM_PART_STORE_V(c, array, offset, stride, col_major) coopMatStoreNV(c, array, offset, stride, col_major)
#define CM_SUBGROUP gl_SubgroupID
#define CM_LANE gl_SubgroupInvocationID
void cm_subgroup_sync()
{
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}

#else
// Lane l holds what it needs for its 2 x CM_W block of a part of C: rows
// l / 4 and l / 4 + 8, columns CM_W (l % 4) + {0 .. CM_W - 1}; of A those
// two rows, of B those columns. The rows are those NVIDIA's mma.m16n8k16
// gives a lane, so the register softmax (CM_ROW_OPS, below) runs here as it
// does on the GPU.
const uint CM_W = CM_N / 4u;
struct cm_a {
    float v[2 * 16];
};
struct cm_part_b {
    float v[16 * CM_W];
};
struct cm_part_acc {
    float v[2 * CM_W];
};
#define CM_SUBGROUP (gl_LocalInvocationIndex / 32u)
#define CM_LANE (gl_LocalInvocationIndex % 32u)
#ifndef CM_EMULATED_PAIRED_ROWS
uint cm_row(uint i) { return CM_LANE / 4u + 8u * i; }
#else
// Another layout, rows 2 (l / 4) + {0, 1}, for the test that checks the host
// notices a layout whose rows are not in quads (tests/CMakeLists.txt).
uint cm_row(uint i) { return 2u * (CM_LANE / 4u) + i; }
#endif
uint cm_col0() { return CM_W * (CM_LANE % 4u); }

#define CM_PART_ZERO(c)                                                                           \
    [[unroll]] for (uint cm_e = 0; cm_e < 2u * CM_W; cm_e++) c.v[cm_e] = 0.0

#define CM_LOAD_A(a, array, offset, stride)                                                      \
    [[unroll]] for (uint cm_i = 0; cm_i < 2u; cm_i++)                                            \
        [[unroll]] for (uint cm_k = 0; cm_k < 16u; cm_k++)                                       \
            a.v[cm_i * 16u + cm_k] = float(array[(offset) + cm_row(cm_i) * (stride) + cm_k])

#define CM_PART_LOAD_B(b, array, offset, stride, col_major)                                       \
    [[unroll]] for (uint cm_k = 0; cm_k < 16u; cm_k++)                                            \
        [[unroll]] for (uint cm_j = 0; cm_j < CM_W; cm_j++)                                       \
            b.v[cm_k * CM_W + cm_j] = float(array[(offset) + ((col_major) ? (cm_col0() + cm_j) * (stride) + cm_k \
                                                                          : cm_k * (stride) + cm_col0() + cm_j)])

// Element e (counting f16) of an array of uvec4.
#define CM_HALF_V(array, e) unpackHalf2x16(array[(e) / 8u][((e) % 8u) / 2u])[(e) % 2u]

#define CM_LOAD_A_V(a, array, offset, stride)                                                    \
    [[unroll]] for (uint cm_i = 0; cm_i < 2u; cm_i++)                                            \
        [[unroll]] for (uint cm_k = 0; cm_k < 16u; cm_k++)                                       \
            a.v[cm_i * 16u + cm_k] = CM_HALF_V(array, ((offset) + cm_row(cm_i) * (stride)) * 8u + cm_k)

#define CM_PART_LOAD_B_V(b, array, offset, stride, col_major)                                     \
    [[unroll]] for (uint cm_k = 0; cm_k < 16u; cm_k++)                                            \
        [[unroll]] for (uint cm_j = 0; cm_j < CM_W; cm_j++)                                       \
            b.v[cm_k * CM_W + cm_j] = CM_HALF_V(array, (col_major) ? ((offset) + (cm_col0() + cm_j) * (stride)) * 8u + cm_k \
                                                                   : ((offset) + cm_k * (stride)) * 8u + cm_col0() + cm_j)

cm_part_acc cm_part_mul_add(cm_a a, cm_part_b b, cm_part_acc c)
{
    [[unroll]] for (uint i = 0; i < 2u; i++)
        [[unroll]] for (uint j = 0; j < CM_W; j++) {
            float s = c.v[i * CM_W + j];
            [[unroll]] for (uint k = 0; k < 16u; k++) s = fma(a.v[i * 16u + k], b.v[k * CM_W + j], s);
            c.v[i * CM_W + j] = s;
        }
    return c;
}
#define CM_PART_MUL_ADD(c, a, b) c = cm_part_mul_add(a, b, c)

#define CM_PART_STORE(c, array, offset, stride)                                                   \
    [[unroll]] for (uint cm_i = 0; cm_i < 2u; cm_i++)                                             \
        [[unroll]] for (uint cm_j = 0; cm_j < CM_W; cm_j++)                                       \
            array[(offset) + cm_row(cm_i) * (stride) + cm_col0() + cm_j] = c.v[cm_i * CM_W + cm_j]

#define CM_PART_LOAD_C(c, array, offset, stride)                                                  \
    [[unroll]] for (uint cm_i = 0; cm_i < 2u; cm_i++)                                             \
        [[unroll]] for (uint cm_j = 0; cm_j < CM_W; cm_j++)                                       \
            c.v[cm_i * CM_W + cm_j] = array[(offset) + cm_row(cm_i) * (stride) + cm_col0() + cm_j]

#define CM_PART_STORE_V(c, array, offset, stride, col_major)                                      \
    [[unroll]] for (uint cm_i = 0; cm_i < 2u; cm_i++)                                             \
        [[unroll]] for (uint cm_j = 0; cm_j < CM_W; cm_j++) {                                     \
            uint cm_e = 4u * (offset) + ((col_major) ? (cm_col0() + cm_j) * 4u * (stride) + cm_row(cm_i) \
                                                     : cm_row(cm_i) * 4u * (stride) + cm_col0() + cm_j); \
            array[cm_e / 4u][cm_e % 4u] = floatBitsToUint(c.v[cm_i * CM_W + cm_j]);               \
        }

void cm_subgroup_sync() { barrier(); }
#endif

// The 16x16 operations, part by part: part p of B and C holds columns
// CM_N p .. CM_N (p + 1) - 1.
#define cm_b cm_part_b[CM_PARTS]
#define cm_acc cm_part_acc[CM_PARTS]
#define CM_ZERO(c) [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++) CM_PART_ZERO(c[cm_p])
#define CM_LOAD_B(b, array, offset, stride, col_major)                                            \
    [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++)                                       \
        CM_PART_LOAD_B(b[cm_p], array, (offset) + cm_p * CM_N * ((col_major) ? (stride) : 1u), stride, col_major)
#define CM_LOAD_B_V(b, array, offset, stride, col_major)                                          \
    [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++)                                       \
        CM_PART_LOAD_B_V(b[cm_p], array, (offset) + cm_p * ((col_major) ? CM_N * (stride) : CM_N / 8u), stride, col_major)
#define CM_MUL_ADD(c, a, b) [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++) CM_PART_MUL_ADD(c[cm_p], a, b[cm_p])
#define CM_STORE(c, array, offset, stride)                                                        \
    [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++) CM_PART_STORE(c[cm_p], array, (offset) + cm_p * CM_N, stride)
#define CM_LOAD_C(c, array, offset, stride)                                                       \
    [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++) CM_PART_LOAD_C(c[cm_p], array, (offset) + cm_p * CM_N, stride)
#define CM_STORE_V(c, array, offset, stride, col_major)                                           \
    [[unroll]] for (uint cm_p = 0; cm_p < CM_PARTS; cm_p++)                                       \
        CM_PART_STORE_V(c[cm_p], array, (offset) + cm_p * ((col_major) ? CM_N * (stride) : CM_N / 4u), stride, col_major)

// A 16x16 accumulator's elements in registers, for a shader that defines
// CM_ROW_OPS (its workgroup size) and multiplies 16x16x16 (CM_N 16). Lane l
// holds CM_ACC_LENGTH(c) elements of c, element e being CM_ACC_AT(c, e).
// Which row and column each is, the lane learns from products whose
// elements are their own row and column numbers, (row / 16) x ones and
// ones x (column / 16), exact in f16 and f32, so laid out as the driver
// lays out every product. Row reductions also need each row's elements held
// by the four lanes of one quad, lanes 4 q .. 4 q + 3 with q = row % 8:
// NVIDIA's layout (the hardware's mma.m16n8k16), which the emulation
// copies; the host checks it on the device (coopmat_layout.comp) before it
// runs a shader that relies on it.
//   cm_numbers_fill()                 once, by the workgroup, then a barrier
//   CM_ELEMENT_NUMBERS(row_of, col_of)
//                                     cm_acc row_of, col_of: each element's
//                                     row and column, as floats
//   CM_ACC_LENGTH(c), CM_ACC_AT(c, e)
//   cm_quad_max(x), cm_quad_sum(x)    x reduced over this lane's quad
//   CM_TO_A(a, c)                     a = c rounded to f16, as an A operand
// Emulated, the last three go through shared memory with workgroup
// barriers: workgroup-uniform control flow only.
#ifdef CM_ROW_OPS
#if CM_N != 16
#error "coopmat.glsl: CM_ROW_OPS needs 16x16 accumulators (CM_N 16)"
#endif
shared float16_t cm_numbers[3 * 256]; // 16x16 matrices of ones, of row / 16 and of column / 16
void cm_numbers_fill()
{
    for (uint e = gl_LocalInvocationIndex; e < 256u; e += CM_ROW_OPS) {
        cm_numbers[e] = float16_t(1.0);
        cm_numbers[256u + e] = float16_t(float(e / 16u) / 16.0);
        cm_numbers[512u + e] = float16_t(float(e % 16u) / 16.0);
    }
}
#define CM_ELEMENT_NUMBERS(row_of, col_of)                                                        \
    {                                                                                             \
        cm_a cm_ones_a, cm_rows_a;                                                                \
        cm_b cm_ones_b, cm_cols_b;                                                                \
        CM_LOAD_A(cm_ones_a, cm_numbers, 0u, 16u);                                                \
        CM_LOAD_A(cm_rows_a, cm_numbers, 256u, 16u);                                              \
        CM_LOAD_B(cm_ones_b, cm_numbers, 0u, 16u, false);                                         \
        CM_LOAD_B(cm_cols_b, cm_numbers, 512u, 16u, false);                                       \
        CM_ZERO(row_of);                                                                          \
        CM_ZERO(col_of);                                                                          \
        CM_MUL_ADD(row_of, cm_rows_a, cm_ones_b);                                                 \
        CM_MUL_ADD(col_of, cm_ones_a, cm_cols_b);                                                 \
    }
#ifndef COOPMAT_EMULATED
#extension GL_KHR_shader_subgroup_clustered : require
#define CM_ACC_LENGTH(c) uint(c[0].length())
#define CM_ACC_AT(c, e) c[0][e]
float cm_quad_max(float x) { return subgroupClusteredMax(x, 4u); }
float cm_quad_sum(float x) { return subgroupClusteredAdd(x, 4u); }
// NVIDIA's accumulator and A layouts hold the same elements in each lane, so
// this is a conversion in registers.
#define CM_TO_A(a, c) a = cm_a(c[0])
#else
#define CM_ACC_LENGTH(c) (2u * CM_W)
#define CM_ACC_AT(c, e) c[0].v[e]
shared float cm_quad_scratch[CM_ROW_OPS];
shared float cm_to_a_scratch[CM_ROW_OPS / 32u * 256u]; // a 16x16 matrix per subgroup

// This invocation's quad's four values of x.
vec4 cm_quad(float x)
{
    barrier(); // the previous call's values are read
    cm_quad_scratch[gl_LocalInvocationIndex] = x;
    barrier();
    uint q = gl_LocalInvocationIndex & ~3u;
    return vec4(cm_quad_scratch[q], cm_quad_scratch[q + 1u], cm_quad_scratch[q + 2u], cm_quad_scratch[q + 3u]);
}
float cm_quad_max(float x)
{
    vec4 v = cm_quad(x);
    return max(max(v.x, v.y), max(v.z, v.w));
}
float cm_quad_sum(float x)
{
    vec4 v = cm_quad(x);
    return (v.x + v.y) + (v.z + v.w);
}
#define CM_TO_A(a, c)                                                                             \
    CM_STORE(c, cm_to_a_scratch, CM_SUBGROUP * 256u, 16u);                                        \
    cm_subgroup_sync();                                                                           \
    [[unroll]] for (uint cm_i = 0; cm_i < 2u; cm_i++)                                             \
        [[unroll]] for (uint cm_k = 0; cm_k < 16u; cm_k++)                                        \
            a.v[cm_i * 16u + cm_k] = float(float16_t(cm_to_a_scratch[CM_SUBGROUP * 256u + cm_row(cm_i) * 16u + cm_k])); \
    cm_subgroup_sync()
#endif
#endif
