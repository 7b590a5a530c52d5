#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// x (N,C*r*r,H,W) -> y (N,C,H*r,W*r), y[n,c,h*r+i,w*r+j] = x[n,c*r*r+i*r+j,h,w]:
// the compact Real-ESRGAN's last step. Each invocation gathers four
// neighbouring outputs, which may span two rows, and writes them as one vec4
// where y is aligned.
layout(push_constant) uniform pixel_shuffle_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W, r; // kiln_pixel_shuffle_params
} pc;

float source(uint o)
{
    uint r = uint(pc.r), h = uint(pc.H), w = uint(pc.W), oh = h * r, ow = w * r;
    uint nc = o / (oh * ow), at = o % (oh * ow);
    uint y = at / ow, x = at % ow;
    return pc.x.v[((nc * r + y % r) * r + x % r) * h * w + (y / r) * w + x / r];
}

void main()
{
    uint i = first_of_four();
    uint count = uint(pc.N * pc.C) * uint(pc.r * pc.r) * uint(pc.H * pc.W);
    if (i >= count) return;
    vec4 v;
    [[unroll]] for (uint e = 0; e < 4u; e++) v[e] = source(min(i + e, count - 1u));
    store4(pc.y, aligned16(pc.y), i, count - i, v);
}
