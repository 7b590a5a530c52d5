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

void main()
{
    uint i = first_of_four(), n = uint(pc.n);
    if (i >= n) return;
    bool vector = aligned16(pc.a) && aligned16(pc.b) && aligned16(pc.y);
    vec4 a = load4(pc.a, vector, i, n - i), b = load4(pc.b, vector, i, n - i);
#if defined(OP_ADD)
    store4(pc.y, vector, i, n - i, a + b);
#elif defined(OP_MUL)
    store4(pc.y, vector, i, n - i, a * b);
#endif
}
