#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"
#include "elementwise.glsl"

// x (B,T,C), y (B,T,C), mod (B,K,C), table (K,C, optional) ->
// sum = x + (mod[b,gate] + table[gate]) * y: a DiT block's gated residual.
// sum may be x or y: each element is read and written by one invocation.
layout(push_constant) uniform gated_add_push {
    f32_ref x;
    f32_ref y;
    f32_ref mod;
    word_ref table;
    f32_ref sum;
    int B, T, C, K, gate; // kiln_gated_add_params
    uint table_first, table_dtype, has_table; // see load_packed
} pc;

void main()
{
    uint i = first_of_four(), n = uint(pc.B) * uint(pc.T) * uint(pc.C);
    if (i >= n) return;
    bool vector = aligned16(pc.x) && aligned16(pc.y) && aligned16(pc.sum);
    vec4 x = load4(pc.x, vector, i, n - i), y = load4(pc.y, vector, i, n - i);
    uint c_count = uint(pc.C), tc = uint(pc.T) * c_count, row = uint(pc.gate);
    vec4 gate;
    // the four may span two tokens, or two batch elements
    [[unroll]] for (uint e = 0; e < 4u; e++) {
        uint at = min(i + e, n - 1u), c = at % c_count, b = at / tc;
        float t = pc.has_table != 0u ? load_packed(pc.table, pc.table_dtype, pc.table_first + row * c_count + c) : 0.0;
        gate[e] = pc.mod.v[(b * uint(pc.K) + row) * c_count + c] + t;
    }
    store4(pc.sum, vector, i, n - i, x + gate * y);
}
