#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// a (N,Ca,HW), b (N,Cb,HW) -> y (N,Ca+Cb,HW): the UNet's skip connections.
layout(local_size_x = 256) in;

layout(push_constant) uniform concat_channels_push {
    f32_ref a;
    f32_ref b;
    f32_ref y;
    int N, Ca, Cb, HW; // kiln_concat_channels_params
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint a_size = uint(pc.Ca * pc.HW), b_size = uint(pc.Cb * pc.HW);
    uint image_size = a_size + b_size;
    if (i >= uint(pc.N) * image_size) return;
    uint n = i / image_size, at = i % image_size;
    pc.y.v[i] = at < a_size ? pc.a.v[n * a_size + at] : pc.b.v[n * b_size + at - a_size];
}
