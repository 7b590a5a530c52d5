#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// x (N,C,HW) + b (N,C) broadcast over HW -> y (N,C,HW): a ResBlock adding its
// projected time embedding. y may be x. Four neighbouring elements may span
// two channels where HW % 4 != 0, so each finds its own.
layout(push_constant) uniform add_channel_bias_push {
    f32_ref x;
    f32_ref b;
    f32_ref y;
    int N, C, HW; // kiln_add_channel_bias_params
} pc;

void main()
{
    uint i = first_of_four(), hw = uint(pc.HW), n = uint(pc.N * pc.C) * hw;
    if (i >= n) return;
    bool vector = aligned16(pc.x) && aligned16(pc.y);
    vec4 bias;
    for (uint c = 0; c < 4u; c++) bias[c] = pc.b.v[min(i + c, n - 1u) / hw];
    store4(pc.y, vector, i, n - i, load4(pc.x, vector, i, n - i) + bias);
}
