#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define WG_SIZE 256
#include "reduce.glsl"

// x (M,N) -> y (M,N), softmax over each row; one workgroup per row.
layout(local_size_x = WG_SIZE) in;

layout(push_constant) uniform softmax_push {
    f32_ref x;
    f32_ref y;
    int M, N; // kiln_softmax_params
} pc;

void main()
{
    uint m = flat_group_index();
    if (m >= uint(pc.M)) return;
    uint t = gl_LocalInvocationID.x;
    uint n_count = uint(pc.N);
    uint base = m * n_count;

    float partial = -1.0 / 0.0;
    for (uint n = t; n < n_count; n += WG_SIZE) partial = max(partial, pc.x.v[base + n]);
    float row_max = workgroup_max(partial);

    partial = 0.0;
    for (uint n = t; n < n_count; n += WG_SIZE) partial += exp(pc.x.v[base + n] - row_max);
    float denom = workgroup_sum(partial);

    for (uint n = t; n < n_count; n += WG_SIZE) pc.y.v[base + n] = exp(pc.x.v[base + n] - row_max) / denom;
}
