#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// a (n), b (n) -> y (n) = a + b (OP_ADD) or a * b (OP_MUL). y may be a or b:
// each element is read and written by one invocation only.
layout(push_constant) uniform binary_push {
    f32_ref a;
    f32_ref b;
    f32_ref y;
    int n; // kiln_add_params / kiln_mul_params
} pc;

#if defined(OP_ADD)
#define OP(a, b) ((a) + (b))
#elif defined(OP_MUL)
#define OP(a, b) ((a) * (b))
#endif

void main()
{
    uint i = first_of_four(), n = uint(pc.n);
    if (i >= n) return;
    if (i + 4u <= n && aligned16(pc.a) && aligned16(pc.b) && aligned16(pc.y)) {
        vec4_out_ref(pc.y).v[i / 4u] = OP(vec4_ref(pc.a).v[i / 4u], vec4_ref(pc.b).v[i / 4u]);
        return;
    }
    for (uint j = i; j < min(i + 4u, n); j++) pc.y.v[j] = OP(pc.a.v[j], pc.b.v[j]);
}
