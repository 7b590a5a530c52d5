#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "activations.glsl"

// x (M,2N) -> y (M,N) = x[:, :N] * gelu(x[:, N:]): value half first, gate
// half second, as diffusers' GEGLU chunks its projection.
layout(local_size_x = 256) in;

layout(push_constant) uniform geglu_push {
    f32_ref x;
    f32_ref y;
    int M, N; // kiln_geglu_params
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint n_count = uint(pc.N);
    if (i >= uint(pc.M) * n_count) return;
    uint m = i / n_count, n = i % n_count;
    uint row = m * 2 * n_count;
    pc.y.v[i] = pc.x.v[row + n] * gelu(pc.x.v[row + n_count + n]);
}
