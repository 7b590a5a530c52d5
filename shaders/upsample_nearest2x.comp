#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// x (N,C,H,W) -> y (N,C,2H,2W), each input pixel copied to a 2x2 block.
// Where W is even, four neighbouring elements of y are two input pixels,
// each twice, within one row, and go out as one vec4.
layout(push_constant) uniform upsample_nearest2x_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W; // kiln_upsample_nearest2x_params
} pc;

float source(uint i)
{
    uint w = uint(pc.W), h = uint(pc.H);
    uint nc = i / (4u * h * w), at = i % (4u * h * w);
    uint oy = at / (2u * w), ox = at % (2u * w);
    return pc.x.v[(nc * h + oy / 2u) * w + ox / 2u];
}

void main()
{
    uint i = first_of_four(), count = uint(pc.N * pc.C) * 4u * uint(pc.H * pc.W);
    if (i >= count) return;
    if (uint(pc.W) % 2u == 0u && aligned16(pc.y)) {
        float left = source(i), right = source(i + 2u);
        store4(pc.y, true, i, 4u, vec4(left, left, right, right));
        return;
    }
    for (uint j = i; j < min(i + 4u, count); j++) pc.y.v[j] = source(j);
}
