#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// a (n), b (n) -> y (n) = a + b (OP_ADD) or a * b (OP_MUL). y may be a or b.
layout(local_size_x = 256) in;

layout(push_constant) uniform binary_push {
    f32_ref a;
    f32_ref b;
    f32_ref y;
    int n; // kiln_add_params / kiln_mul_params
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    if (i >= uint(pc.n)) return;
#if defined(OP_ADD)
    pc.y.v[i] = pc.a.v[i] + pc.b.v[i];
#elif defined(OP_MUL)
    pc.y.v[i] = pc.a.v[i] * pc.b.v[i];
#endif
}
