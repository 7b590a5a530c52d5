#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// a (N,Ca,HW), b (N,Cb,HW) -> y (N,Ca+Cb,HW): the UNet's skip connections.
// Four neighbouring elements of y come from one operand, in a row, where HW
// is a multiple of 4.
layout(push_constant) uniform concat_channels_push {
    f32_ref a;
    f32_ref b;
    f32_ref y;
    int N, Ca, Cb, HW; // kiln_concat_channels_params
} pc;

void main()
{
    uint i = first_of_four();
    uint a_size = uint(pc.Ca * pc.HW), b_size = uint(pc.Cb * pc.HW);
    uint image_size = a_size + b_size, count = uint(pc.N) * image_size;
    if (i >= count) return;
    if (uint(pc.HW) % 4u == 0u && aligned16(pc.a) && aligned16(pc.b) && aligned16(pc.y)) {
        uint n = i / image_size, at = i % image_size;
        vec4 v = at < a_size ? load4(pc.a, true, n * a_size + at, 4u) : load4(pc.b, true, n * b_size + at - a_size, 4u);
        store4(pc.y, true, i, 4u, v);
        return;
    }
    for (uint j = i; j < min(i + 4u, count); j++) {
        uint n = j / image_size, at = j % image_size;
        pc.y.v[j] = at < a_size ? pc.a.v[n * a_size + at] : pc.b.v[n * b_size + at - a_size];
    }
}
