#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"
#include "elementwise.glsl"

// x (M,2N) -> y (M,N) = x[:, :N] * gelu(x[:, N:]): value half first, gate
// half second, as diffusers' GEGLU chunks its projection.
layout(push_constant) uniform geglu_push {
    f32_ref x;
    f32_ref y;
    int M, N; // kiln_geglu_params
} pc;

void main()
{
    uint i = first_of_four(), cols = uint(pc.N), count = uint(pc.M) * cols;
    if (i >= count) return;
    // four elements of one row, its value and gate halves 16-byte aligned
    if (cols % 4u == 0u && aligned16(pc.x) && aligned16(pc.y)) {
        uint row = (i / cols) * 2u * cols, n = i % cols;
        vec4 value = load4(pc.x, true, row + n, 4u), gate = load4(pc.x, true, row + cols + n, 4u);
        store4(pc.y, true, i, 4u, value * vec4(gelu(gate.x), gelu(gate.y), gelu(gate.z), gelu(gate.w)));
        return;
    }
    for (uint j = i; j < min(i + 4u, count); j++) {
        uint row = (j / cols) * 2u * cols, n = j % cols;
        pc.y.v[j] = pc.x.v[row + n] * gelu(pc.x.v[row + cols + n]);
    }
}
