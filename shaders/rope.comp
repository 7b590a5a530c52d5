#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// x (B,T,H*D), freqs (T,D/2,2) -> y (B,T,H*D): Flux's rotary embedding. Pair
// i of each head of token t, (x[2i], x[2i+1]), is turned by the angle whose
// cos and sin are freqs[t][i]. D is even and an invocation's four elements
// start at a multiple of 4, so they are two whole pairs (the second possibly
// of the next head or token). y may be x: each pair is read and written by
// one invocation.
layout(push_constant) uniform rope_push {
    f32_ref x;
    f32_ref freqs;
    f32_ref y;
    int B, T, H, D; // kiln_rope_params
} pc;

void main()
{
    uint i = first_of_four(), n = uint(pc.B) * uint(pc.T) * uint(pc.H) * uint(pc.D);
    if (i >= n) return;
    bool vector = aligned16(pc.x) && aligned16(pc.y);
    vec4 v = load4(pc.x, vector, i, n - i);
    uint row = uint(pc.H) * uint(pc.D), d_count = uint(pc.D);
    vec4 r;
    [[unroll]] for (uint e = 0; e < 4u; e += 2u) {
        // a missing second pair (n - i == 2) reads its neighbour's freqs and
        // is not stored
        uint at = min(i + e, n - 2u), t = at / row % uint(pc.T), d = at % row % d_count;
        float c = pc.freqs.v[t * d_count + d], s = pc.freqs.v[t * d_count + d + 1u];
        r[e] = v[e] * c - v[e + 1u] * s;
        r[e + 1u] = v[e + 1u] * c + v[e] * s;
    }
    store4(pc.y, vector, i, n - i, r);
}
