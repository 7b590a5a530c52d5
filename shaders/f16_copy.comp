#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
#include "elementwise.glsl"

// x (n) f32 -> y (n) f16, rounded as the tensor-core GEMM rounds its
// operands: the tensor-core matmul's x, copied once before the GEMM reads
// it (as the CUDA backend narrows x before cuBLASLt). The GEMM reads x once
// per column of tiles, 40 times at SD's widest matmul, so in f16 those
// reads move half the bytes and need no conversion on the way.
// y holds n rounded up to 4 elements, the last four written whole (zeros
// beyond n).
layout(buffer_reference, std430, buffer_reference_align = 8) writeonly buffer f16x4_ref { uvec2 v[]; };

layout(push_constant) uniform f16_copy_push {
    f32_ref x;
    f16x4_ref y;
    uint n;
} pc;

void main()
{
    uint i = first_of_four();
    if (i >= pc.n) return;
    vec4 v = load4(pc.x, aligned16(pc.x), i, pc.n - i);
    pc.y.v[i / 4u] = uvec2(packFloat2x16(f16vec2(v.xy)), packFloat2x16(f16vec2(v.zw)));
}
