#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"
#include "elementwise.glsl"

// x (n) -> y (n) for one pointwise op, chosen per variant: OP_SILU,
// OP_SIGMOID, OP_ACTIVATION, OP_GELU, OP_QUICK_GELU, OP_GELU_TANH, OP_SCALE or
// OP_LEAKY_RELU. y may be x.
layout(push_constant) uniform unary_push {
    f32_ref x;
    f32_ref y;
    int n; // kiln_<op>_params.n
#if defined(OP_SCALE) || defined(OP_LEAKY_RELU)
    float s; // kiln_scale_params.s, kiln_leaky_relu_params.slope
#elif defined(OP_ACTIVATION)
    int kind; // kiln_activation_params.kind
#endif
} pc;

float op(float v)
{
#if defined(OP_SILU)
    return silu(v);
#elif defined(OP_SIGMOID)
    return sigmoid(v);
#elif defined(OP_ACTIVATION)
    return activation(pc.kind, v);
#elif defined(OP_GELU)
    return gelu(v);
#elif defined(OP_QUICK_GELU)
    return quick_gelu(v);
#elif defined(OP_GELU_TANH)
    return gelu_tanh(v);
#elif defined(OP_SCALE)
    return v * pc.s;
#elif defined(OP_LEAKY_RELU)
    return v >= 0.0 ? v : v * pc.s;
#endif
}

void main()
{
    uint i = first_of_four(), n = uint(pc.n);
    if (i >= n) return;
    bool vector = aligned16(pc.x) && aligned16(pc.y);
    vec4 v = load4(pc.x, vector, i, n - i);
    store4(pc.y, vector, i, n - i, vec4(op(v.x), op(v.y), op(v.z), op(v.w)));
}
