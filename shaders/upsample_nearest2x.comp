#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// x (N,C,H,W) -> y (N,C,2H,2W), each input pixel copied to a 2x2 block.
layout(local_size_x = 256) in;

layout(push_constant) uniform upsample_nearest2x_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W; // kiln_upsample_nearest2x_params
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint w = uint(pc.W), h = uint(pc.H);
    if (i >= uint(pc.N * pc.C) * 4 * h * w) return;
    uint nc = i / (4 * h * w), at = i % (4 * h * w);
    uint oy = at / (2 * w), ox = at % (2 * w);
    pc.y.v[i] = pc.x.v[(nc * h + oy / 2) * w + ox / 2];
}
