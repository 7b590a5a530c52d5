#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// t (N) -> y (N,dim): freq_i = exp(-ln(max_period) i / (half - freq_shift)),
// y = [sin | cos](t freq), or [cos | sin] if flip_sin_to_cos.
//
// t reaches 999 and the argument t * freq about that, so GLSL's exp, sin and
// cos (whose error Vulkan lets grow with |x|) would cost more than f32
// rounding does. exp and sin/cos are computed here with Cody-Waite range
// reduction and short polynomials instead, each within about an ulp.
layout(local_size_x = 256) in;

layout(push_constant) uniform timestep_embedding_push {
    f32_ref t;
    f32_ref y;
    int N, dim, flip_sin_to_cos; // kiln_timestep_embedding_params
    float freq_shift;
    float max_period;
    float log_max_period; // ln(max_period), computed on the host in double
} pc;

// e^x for x in about [-80, 80].
float exp_accurate(float x)
{
    float k = round(x * 1.44269504088896341);
    // ln 2 in two parts; the first has few bits so k * part is exact.
    float r = (x - k * 0.693359375) - k * -2.12194440e-4;
    float p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    return ldexp(p, int(k));
}

// (sin x, cos x) for |x| up to a few thousand.
vec2 sincos_accurate(float x)
{
    float k = round(x * 0.636619772367581343); // quarter turns
    // pi/2 in three parts; the first two have 12 bits so k * part is exact.
    float r = ((x - k * 1.57080078125) - k * -4.453584551811218e-06) - k * -8.705516307827565e-10;
    float r2 = r * r;
    float s = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * -1.9515295891e-4));
    float c = 1.0 - 0.5 * r2 + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3 + r2 * 2.443315711809948e-5));
    switch (int(k) & 3) {
    case 0: return vec2(s, c);
    case 1: return vec2(c, -s);
    case 2: return vec2(-s, -c);
    default: return vec2(-c, s);
    }
}

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint half_dim = uint(pc.dim / 2);
    if (i >= uint(pc.N) * half_dim) return;
    uint n = i / half_dim, f = i % half_dim;
    float freq = exp_accurate(-pc.log_max_period * float(f) / (float(half_dim) - pc.freq_shift));
    vec2 sc = sincos_accurate(pc.t.v[n] * freq);
    uint row = n * uint(pc.dim);
    uint sin_at = pc.flip_sin_to_cos != 0 ? half_dim + f : f;
    uint cos_at = pc.flip_sin_to_cos != 0 ? f : half_dim + f;
    pc.y.v[row + sin_at] = sc.x;
    pc.y.v[row + cos_at] = sc.y;
}
