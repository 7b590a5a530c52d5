#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"
#include "vec4_io.glsl"
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

    // four values an invocation at a time (vec4_io.glsl)
    bool vector = d_count % 4u == 0u && aligned16(pc.x) && aligned16(pc.y);
    float partial = 0.0;
    for (uint d = 4u * t; d < d_count; d += 4u * WG_SIZE)
        partial += dot(load4(pc.x, vector, base + d, d_count - d), vec4(1.0));
    float mean = workgroup_sum(partial) / float(d_count);

    partial = 0.0;
    for (uint d = 4u * t; d < d_count; d += 4u * WG_SIZE) {
        vec4 dev = (load4(pc.x, vector, base + d, d_count - d) - mean) * present4(d_count - d);
        partial += dot(dev, dev);
    }
    float rstd = inversesqrt(workgroup_sum(partial) / float(d_count) + pc.eps);

    for (uint d = 4u * t; d < d_count; d += 4u * WG_SIZE) {
        vec4 v = load4(pc.x, vector, base + d, d_count - d);
        for (uint c = 0; c < 4u; c++) {
            uint at = min(d + c, d_count - 1u);
            v[c] = (v[c] - mean) * rstd * load_packed(pc.gamma, pc.gamma_dtype, pc.gamma_first + at) +
                   load_packed(pc.beta, pc.beta_dtype, pc.beta_first + at);
        }
        store4(pc.y, vector, base + d, d_count - d, v);
    }
}
