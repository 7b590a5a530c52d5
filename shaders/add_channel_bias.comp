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
    if (i + 4u <= n && aligned16(pc.x) && aligned16(pc.y)) {
        vec4 bias = vec4(pc.b.v[i / hw], pc.b.v[(i + 1u) / hw], pc.b.v[(i + 2u) / hw], pc.b.v[(i + 3u) / hw]);
        vec4_out_ref(pc.y).v[i / 4u] = vec4_ref(pc.x).v[i / 4u] + bias;
        return;
    }
    for (uint j = i; j < min(i + 4u, n); j++) pc.y.v[j] = pc.x.v[j] + pc.b.v[j / hw];
}
