#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"
#include "elementwise.glsl"

// x (N,C,HW), slope (C) -> y = x where x >= 0, else slope[c] x: the compact
// Real-ESRGAN's PReLU. y may be x. Four neighbouring elements may span two
// channels where HW % 4 != 0, so each finds its own slope.
layout(push_constant) uniform prelu_push {
    f32_ref x;
    word_ref slope;
    f32_ref y;
    int N, C, HW; // kiln_prelu_params
    uint slope_first, slope_dtype; // see load_packed
} pc;

void main()
{
    uint i = first_of_four(), hw = uint(pc.HW), c_count = uint(pc.C), n = uint(pc.N) * c_count * hw;
    if (i >= n) return;
    bool vector = aligned16(pc.x) && aligned16(pc.y);
    vec4 x = load4(pc.x, vector, i, n - i), slope;
    [[unroll]] for (uint e = 0; e < 4u; e++)
        slope[e] = load_packed(pc.slope, pc.slope_dtype, pc.slope_first + min(i + e, n - 1u) / hw % c_count);
    store4(pc.y, vector, i, n - i, mix(slope * x, x, greaterThanEqual(x, vec4(0.0))));
}
