#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// x (N,C,H,W) -> y (N,C,top+H+bottom,left+W+right), zeros around: the VAE
// encoder pads only bottom and right before its stride-2 convolutions.
layout(local_size_x = 256) in;

layout(push_constant) uniform pad2d_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W, top, bottom, left, right; // kiln_pad2d_params
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint ow = uint(pc.left + pc.W + pc.right), oh = uint(pc.top + pc.H + pc.bottom);
    if (i >= uint(pc.N * pc.C) * oh * ow) return;
    uint nc = i / (oh * ow), at = i % (oh * ow);
    int iy = int(at / ow) - pc.top, ix = int(at % ow) - pc.left;
    bool inside = iy >= 0 && iy < pc.H && ix >= 0 && ix < pc.W;
    pc.y.v[i] = inside ? pc.x.v[(nc * uint(pc.H) + uint(iy)) * uint(pc.W) + uint(ix)] : 0.0;
}
