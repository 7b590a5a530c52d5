#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"

// x (n) -> y (n) for one pointwise op, chosen per variant: OP_SILU, OP_GELU,
// OP_QUICK_GELU or OP_SCALE. y may be x.
layout(local_size_x = 256) in;

layout(push_constant) uniform unary_push {
    f32_ref x;
    f32_ref y;
    int n; // kiln_<op>_params.n
#ifdef OP_SCALE
    float s; // kiln_scale_params.s
#endif
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    if (i >= uint(pc.n)) return;
    float v = pc.x.v[i];
#if defined(OP_SILU)
    pc.y.v[i] = silu(v);
#elif defined(OP_GELU)
    pc.y.v[i] = gelu(v);
#elif defined(OP_QUICK_GELU)
    pc.y.v[i] = quick_gelu(v);
#elif defined(OP_SCALE)
    pc.y.v[i] = v * pc.s;
#endif
}
