#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"
#include "activations.glsl"
#include "vec4_io.glsl"
#define WG_SIZE 256
#include "reduce.glsl"

// x (N,C,HW), gamma (C), beta (C) -> y (N,C,HW); SiLU after if silu.
// A group's cpg channels are contiguous in x: cpg * HW values, 10^4 to 10^7
// in SD. One workgroup per group would leave a GPU mostly idle (2 x 32
// groups), so each group is cut into slices of SLICE values and the host
// runs this shader twice over the grid (slices, groups, N), as the CUDA
// backend does (kernels/norm.cu):
//   pass 0: each slice's mean and sum of squared deviations from it (two
//           passes over the slice, as the reference takes two over the
//           group, rather than E[x^2] - E[x]^2), into stats;
//   pass 1: each workgroup merges its group's slice statistics
//           (M2 = sum M2_s + n_s (mean_s - mean)^2) and normalises its slice.
layout(local_size_x = WG_SIZE) in;
const uint SLICE = 4096; // runtime/vulkan_ops.c's GN_SLICE

layout(push_constant) uniform group_norm_push {
    f32_ref x;
    word_ref gamma;
    word_ref beta;
    f32_ref y;
    int N, C, HW, groups; // kiln_group_norm_params
    float eps;
    int silu;
    uint gamma_first, beta_first; // see load_packed
    uint gamma_dtype, beta_dtype;
    f32_ref stats; // per slice: mean, then sum of squared deviations
    uint pass;
} pc;

uint slice_len(uint group_size, uint s) { return min(SLICE, group_size - s * SLICE); }

void main()
{
    uint t = gl_LocalInvocationID.x;
    uint slices = gl_NumWorkGroups.x, s = gl_WorkGroupID.x;
    uint group = gl_WorkGroupID.z * uint(pc.groups) + gl_WorkGroupID.y; // n * groups + g
    uint hw = uint(pc.HW), cpg = uint(pc.C / pc.groups);
    uint group_size = cpg * hw;
    uint start = s * SLICE, len = slice_len(group_size, s);
    uint base = group * group_size + start;

    // Four values an invocation at a time (vec4_io.glsl), as vec4s where x
    // and y are aligned and a channel's values (and so each slice) start on
    // a multiple of four.
    bool vector = hw % 4u == 0u && aligned16(pc.x) && aligned16(pc.y);
    if (pc.pass == 0u) {
        float sum = 0.0;
        for (uint i = 4u * t; i < len; i += 4u * WG_SIZE) sum += dot(load4(pc.x, vector, base + i, len - i), vec4(1.0));
        float mean = workgroup_sum(sum) / float(len);
        float m2 = 0.0;
        for (uint i = 4u * t; i < len; i += 4u * WG_SIZE) {
            vec4 d = (load4(pc.x, vector, base + i, len - i) - mean) * present4(len - i);
            m2 += dot(d, d);
        }
        m2 = workgroup_sum(m2);
        if (t == 0u) {
            pc.stats.v[2u * (group * slices + s)] = mean;
            pc.stats.v[2u * (group * slices + s) + 1u] = m2;
        }
        return;
    }

    uint first = group * slices;
    float weighted = 0.0;
    for (uint j = t; j < slices; j += WG_SIZE) weighted += float(slice_len(group_size, j)) * pc.stats.v[2u * (first + j)];
    float mean = workgroup_sum(weighted) / float(group_size);
    float m2 = 0.0;
    for (uint j = t; j < slices; j += WG_SIZE) {
        float d = pc.stats.v[2u * (first + j)] - mean;
        m2 += pc.stats.v[2u * (first + j) + 1u] + float(slice_len(group_size, j)) * d * d;
    }
    float rstd = inversesqrt(workgroup_sum(m2) / float(group_size) + pc.eps);

    uint first_channel = (group % uint(pc.groups)) * cpg;
    for (uint i = 4u * t; i < len; i += 4u * WG_SIZE) {
        vec4 v = load4(pc.x, vector, base + i, len - i);
        for (uint c = 0; c < 4u; c++) {
            uint ch = first_channel + min(start + i + c, group_size - 1u) / hw;
            v[c] = (v[c] - mean) * rstd * load_packed(pc.gamma, pc.gamma_dtype, pc.gamma_first + ch) +
                   load_packed(pc.beta, pc.beta_dtype, pc.beta_first + ch);
            if (pc.silu != 0) v[c] = silu(v[c]);
        }
        store4(pc.y, vector, base + i, len - i, v);
    }
}
