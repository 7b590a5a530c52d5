#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"
#include "vec4_io.glsl"
#define WG_SIZE 64
#include "reduce.glsl"

// The row norms, x (M,D) -> y (M,D) normalised over each row, one variant
// each:
//   (none)             layer_norm: (x - mean) / sqrt(var + eps) * gamma + beta
//   OP_RMS_NORM        rms_norm: x / sqrt(mean(x^2) + eps) * gamma (T5)
//   OP_ADA_LAYER_NORM  ada_layer_norm: x (B,T,C) as M = B*T rows of D = C,
//                      (x - mean) / sqrt(var + eps) * (1 + mod[b,scale] +
//                      table[scale]) + mod[b,shift] + table[shift], the
//                      table optional (adaLN: DiT, PixArt)
// One workgroup of 64 per row (rows are 320 to 4096 wide), two passes as in
// group_norm.comp (the RMS norm skips the mean).
layout(local_size_x = WG_SIZE) in;

layout(push_constant) uniform layer_norm_push {
    f32_ref x;
#if defined(OP_RMS_NORM)
    word_ref gamma;
    f32_ref y;
    int M, D; // kiln_rms_norm_params
    float eps;
    uint gamma_first, gamma_dtype; // see load_packed
#elif defined(OP_ADA_LAYER_NORM)
    f32_ref mod;
    word_ref table;
    f32_ref y;
    int B, T, D, K, shift, scale; // kiln_ada_layer_norm_params (D: its C)
    float eps;
    uint table_first, table_dtype, has_table;
#else
    word_ref gamma;
    word_ref beta;
    f32_ref y;
    int M, D; // kiln_layer_norm_params
    float eps;
    uint gamma_first, beta_first; // see load_packed
    uint gamma_dtype, beta_dtype;
#endif
} pc;

#if defined(OP_ADA_LAYER_NORM)
uint rows() { return uint(pc.B) * uint(pc.T); }
// Element d of row r (0..K-1) of row m's batch element's modulation, plus
// the table's.
float modulation(uint m, uint r, uint d)
{
    uint c_count = uint(pc.D), b = m / uint(pc.T);
    float t = pc.has_table != 0u ? load_packed(pc.table, pc.table_dtype, pc.table_first + r * c_count + d) : 0.0;
    return pc.mod.v[(b * uint(pc.K) + r) * c_count + d] + t;
}
float scale_of(uint m, uint d) { return 1.0 + modulation(m, uint(pc.scale), d); }
float shift_of(uint m, uint d) { return modulation(m, uint(pc.shift), d); }
#else
uint rows() { return uint(pc.M); }
float scale_of(uint m, uint d) { return load_packed(pc.gamma, pc.gamma_dtype, pc.gamma_first + d); }
#if defined(OP_RMS_NORM)
float shift_of(uint m, uint d) { return 0.0; }
#else
float shift_of(uint m, uint d) { return load_packed(pc.beta, pc.beta_dtype, pc.beta_first + d); }
#endif
#endif

void main()
{
    uint m = flat_group_index();
    if (m >= rows()) return;
    uint t = gl_LocalInvocationID.x;
    uint d_count = uint(pc.D);
    uint base = m * d_count;

    // four values an invocation at a time (vec4_io.glsl)
    bool vector = d_count % 4u == 0u && aligned16(pc.x) && aligned16(pc.y);
    float partial = 0.0, mean = 0.0;
#if !defined(OP_RMS_NORM)
    for (uint d = 4u * t; d < d_count; d += 4u * WG_SIZE)
        partial += dot(load4(pc.x, vector, base + d, d_count - d), vec4(1.0));
    mean = workgroup_sum(partial) / float(d_count);
    partial = 0.0;
#endif

    for (uint d = 4u * t; d < d_count; d += 4u * WG_SIZE) {
        vec4 dev = (load4(pc.x, vector, base + d, d_count - d) - mean) * present4(d_count - d);
        partial += dot(dev, dev);
    }
    float rstd = inversesqrt(workgroup_sum(partial) / float(d_count) + pc.eps);

    for (uint d = 4u * t; d < d_count; d += 4u * WG_SIZE) {
        vec4 v = load4(pc.x, vector, base + d, d_count - d);
        for (uint c = 0; c < 4u; c++) {
            uint at = min(d + c, d_count - 1u);
            v[c] = (v[c] - mean) * rstd * scale_of(m, at) + shift_of(m, at);
        }
        store4(pc.y, vector, base + d, d_count - d, v);
    }
}
