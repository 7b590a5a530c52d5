#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// x (N,C,H,W) -> y (N,C,OH,OW), y[i][j] = x[i/2][j/2]: each input pixel
// copied to a 2x2 block, the last row or column dropped where OH or OW is
// odd. Where OW is a multiple of 4, four neighbouring elements of y are two
// input pixels, each twice, within one row, and go out as one vec4.
layout(push_constant) uniform upsample_nearest2x_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W, OH, OW; // kiln_upsample_nearest2x_params
} pc;

float source(uint i)
{
    uint w = uint(pc.W), h = uint(pc.H), oh = uint(pc.OH), ow = uint(pc.OW);
    uint nc = i / (oh * ow), at = i % (oh * ow);
    uint oy = at / ow, ox = at % ow;
    return pc.x.v[(nc * h + oy / 2u) * w + ox / 2u];
}

void main()
{
    uint i = first_of_four(), count = uint(pc.N * pc.C) * uint(pc.OH * pc.OW);
    if (i >= count) return;
    if (uint(pc.OW) % 4u == 0u && aligned16(pc.y)) {
        float left = source(i), right = source(i + 2u);
        store4(pc.y, true, i, 4u, vec4(left, left, right, right));
        return;
    }
    for (uint j = i; j < min(i + 4u, count); j++) pc.y.v[j] = source(j);
}
