#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"
#define WG_SIZE 64
#include "reduce.glsl"

// x (M,D), gamma (D), beta (D) -> y (M,D), normalised over D.
// One workgroup of 64 per row (rows are 320 to 1280 wide in SD), two passes
// as in group_norm.comp.
layout(local_size_x = WG_SIZE) in;

layout(push_constant) uniform layer_norm_push {
    f32_ref x;
    word_ref gamma;
    word_ref beta;
    f32_ref y;
    int M, D; // kiln_layer_norm_params
    float eps;
    uint gamma_first, beta_first; // see load_packed
    uint gamma_dtype, beta_dtype;
} pc;

void main()
{
    uint m = flat_group_index();
    if (m >= uint(pc.M)) return;
    uint t = gl_LocalInvocationID.x;
    uint d_count = uint(pc.D);
    uint base = m * d_count;

    float partial = 0.0;
    for (uint d = t; d < d_count; d += WG_SIZE) partial += pc.x.v[base + d];
    float mean = workgroup_sum(partial) / float(d_count);

    partial = 0.0;
    for (uint d = t; d < d_count; d += WG_SIZE) {
        float dev = pc.x.v[base + d] - mean;
        partial += dev * dev;
    }
    float rstd = inversesqrt(workgroup_sum(partial) / float(d_count) + pc.eps);

    for (uint d = t; d < d_count; d += WG_SIZE) {
        float ga = load_packed(pc.gamma, pc.gamma_dtype, pc.gamma_first + d);
        float be = load_packed(pc.beta, pc.beta_dtype, pc.beta_first + d);
        pc.y.v[base + d] = (pc.x.v[base + d] - mean) * rstd * ga + be;
    }
}
