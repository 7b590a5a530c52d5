#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "weights.glsl"
#include "activations.glsl"
#define WG_SIZE 256
#include "reduce.glsl"

// x (N,C,HW), gamma (C), beta (C) -> y (N,C,HW); SiLU after if silu.
// One workgroup per (image, group): the cpg channels of a group are
// contiguous in x, cpg * HW values. Two passes (mean, then the squared
// deviations) as the reference does, rather than E[x^2] - E[x]^2.
// Each loop iteration takes UNROLL elements per invocation: a VAE group at
// 1024x1024 holds 4M values, and lavapipe ends a shader's loops after 65535
// iterations in all.
layout(local_size_x = WG_SIZE) in;
const uint UNROLL = 4;

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
} pc;

void main()
{
    uint group = flat_group_index(); // n * groups + g
    if (group >= uint(pc.N * pc.groups)) return;
    uint t = gl_LocalInvocationID.x;
    uint cpg = uint(pc.C / pc.groups);
    uint hw = uint(pc.HW);
    uint count = cpg * hw;
    uint base = group * count;

    float partial = 0.0;
    for (uint i0 = 0; i0 < count; i0 += WG_SIZE * UNROLL)
        [[unroll]] for (uint u = 0; u < UNROLL; u++) {
            uint i = i0 + u * WG_SIZE + t;
            if (i < count) partial += pc.x.v[base + i];
        }
    float mean = workgroup_sum(partial) / float(count);

    partial = 0.0;
    for (uint i0 = 0; i0 < count; i0 += WG_SIZE * UNROLL)
        [[unroll]] for (uint u = 0; u < UNROLL; u++) {
            uint i = i0 + u * WG_SIZE + t;
            float d = i < count ? pc.x.v[base + i] - mean : 0.0;
            partial += d * d;
        }
    float rstd = inversesqrt(workgroup_sum(partial) / float(count) + pc.eps);

    uint first_channel = (group % uint(pc.groups)) * cpg;
    for (uint c = 0; c < cpg; c++) {
        uint ch = first_channel + c;
        float ga = load_packed(pc.gamma, pc.gamma_dtype, pc.gamma_first + ch);
        float be = load_packed(pc.beta, pc.beta_dtype, pc.beta_first + ch);
        for (uint i0 = 0; i0 < hw; i0 += WG_SIZE * UNROLL)
            [[unroll]] for (uint u = 0; u < UNROLL; u++) {
                uint i = i0 + u * WG_SIZE + t;
                if (i >= hw) break;
                uint at = base + c * hw + i;
                float v = (pc.x.v[at] - mean) * rstd * ga + be;
                pc.y.v[at] = pc.silu != 0 ? silu(v) : v;
            }
    }
}
