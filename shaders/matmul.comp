#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"

// x (M,K) @ w (N,K)^T + bias (N) -> y (M,N); w stored as the variant's
// W_DTYPE (or f16 with W_F16_STORAGE), bias as bias_dtype. The tensor-core
// GEMM (GEMM_COOPMAT) reads an f16 copy of x (f16_copy.comp; x holds its
// address then), 8 f16 at a time as it reads w.
layout(push_constant) uniform matmul_push {
    f32_ref x;
    weight_ref w;
    word_ref bias;
    f32_ref y;
    int M, N, K, has_bias; // kiln_matmul_params
    uint w_first, bias_first; // see load_packed
    uint bias_dtype;
    uint rows_aligned; // x and w rows start on 16 bytes, K % 8 == 0 (gemm.glsl)
    f32_ref partial; // gemm_split: see gemm.glsl
    uint splits, k_chunk, split_pass;
} pc;

#include "gemm.glsl"

void a_row_setup(uint m) {}
void a_k_setup(uint k) {}
void a_k_step() {}
float load_b(uint n, uint k) { return load_weight(pc.w, pc.w_first + n * uint(pc.K) + k); }
bool rows_aligned() { return pc.rows_aligned != 0; }
#ifdef GEMM_COOPMAT
uint a_index(uint m, uint k) { return m * uint(pc.K) + k; }
uint b_index(uint n, uint k) { return pc.w_first + n * uint(pc.K) + k; }
float load_a(uint m, uint k) { return load_weight(weight_ref(pc.x), a_index(m, k)); }
uvec4 load_a8(uint m, uint k) { return load_weight8(weight_ref(pc.x), a_index(m, k)); }
uvec4 load_b8(uint n, uint k) { return load_weight8(pc.w, b_index(n, k)); }
#ifdef GEMM_WORKGROUP
f16_rows a_rows() { return f16_rows(pc.x); }
f16_rows b_rows() { return f16_rows(pc.w); }
uint a_stride() { return uint(pc.K); }
uint b_stride() { return uint(pc.K); }
#endif
#else
float load_a(uint m, uint k) { return pc.x.v[m * uint(pc.K) + k]; }
vec4 load_a4(uint m, uint k) { return vec4_ref(pc.x).v[(m * uint(pc.K) + k) / 4u]; }
vec4 load_b4(uint n, uint k) { return load_weight4(pc.w, pc.w_first + n * uint(pc.K) + k); }
#endif
float bias(uint n) { return pc.has_bias != 0 ? load_packed(pc.bias, pc.bias_dtype, pc.bias_first + n) : 0.0; }
void store_c(uint m, uint n, float v) { pc.y.v[m * uint(pc.N) + n] = v + bias(n); }
void store_c4(uint m, uint n, vec4 v, uint count)
{
    [[unroll]] for (uint c = 0; c < 4u; c++)
        if (c < count) v[c] += bias(n + c);
    store4(pc.y, uint(pc.N) % 4u == 0u && aligned16(pc.y), m * uint(pc.N) + n, count, v);
}

void main() { gemm_main(uint(pc.M), uint(pc.N), uint(pc.K)); }
