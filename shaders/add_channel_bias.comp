#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// x (N,C,HW) + b (N,C) broadcast over HW -> y (N,C,HW): a ResBlock adding its
// projected time embedding. y may be x.
layout(local_size_x = 256) in;

layout(push_constant) uniform add_channel_bias_push {
    f32_ref x;
    f32_ref b;
    f32_ref y;
    int N, C, HW; // kiln_add_channel_bias_params
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint hw = uint(pc.HW);
    if (i >= uint(pc.N * pc.C) * hw) return;
    pc.y.v[i] = pc.x.v[i] + pc.b.v[i / hw];
}
