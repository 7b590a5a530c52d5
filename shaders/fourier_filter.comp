#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define WG_SIZE 256
#include "reduce.glsl"

// x (N,C,H,W) -> y = x + (s - 1) Re(ifft2(fft2(x) at {0,-1} x {0,-1})):
// FreeU's filter on a skip (runtime/cpu_ref.c, cpu_ref_fourier_filter). Only
// four frequencies change, so no FFT: a workgroup per (n,c) plane sums the
// plane's spectrum at them, X(0,0) = sum x and, with a = 2 pi h / H and
// b = 2 pi w / W, X(-1,0) = sum x e^(i a), X(0,-1) = sum x e^(i b),
// X(-1,-1) = sum x e^(i (a + b)), then adds each value's share of those
// frequencies, scaled by s - 1, back in space. An axis of 1 has only
// frequency 0 (rows, cols below). y may be x: the whole plane is read before
// the reductions' barriers, and each value after them by the invocation
// that writes it.
layout(local_size_x = WG_SIZE) in;

layout(push_constant) uniform fourier_filter_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W; // kiln_fourier_filter_params
    float s;
} pc;

// (cos, sin) of 2 pi k / n, for k < n. Vulkan lets GLSL's sin and cos err
// by 2^-11 (absolute), which would show through the low frequencies at
// about 1e-4 of x; so the nearest quarter turn is taken off exactly in
// integers, and the rest, within pi/4, goes through Taylor series good to
// float32 there.
vec2 twiddle(uint k, uint n)
{
    uint quarter = (8u * k + n) / (2u * n); // round(4 k / n), 0..4
    float r = 1.57079632679489662 * float(int(4u * k) - int(quarter * n)) / float(n);
    float r2 = r * r;
    float s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
    float c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
    switch (quarter & 3u) {
    case 0u: return vec2(c, s);
    case 1u: return vec2(-s, c);
    case 2u: return vec2(-c, -s);
    default: return vec2(s, -c);
    }
}

// e^(i a), e^(i b) and e^(i (a + b)) at element e of the plane, as the CPU's
// reference forms them.
void twiddles(uint e, out vec2 row, out vec2 col, out vec2 both)
{
    uint W = uint(pc.W);
    row = twiddle(e / W, uint(pc.H));
    col = twiddle(e % W, W);
    both = vec2(row.x * col.x - row.y * col.y, row.y * col.x + row.x * col.y);
}

void main()
{
    uint plane = flat_group_index();
    if (plane >= uint(pc.N * pc.C)) return; // whole workgroups: the barriers stay uniform
    uint t = gl_LocalInvocationID.x, hw = uint(pc.H * pc.W), base = plane * hw;

    float x00 = 0.0;
    vec2 x10 = vec2(0.0), x01 = vec2(0.0), x11 = vec2(0.0); // (real, imaginary)
    for (uint e = t; e < hw; e += WG_SIZE) {
        vec2 row, col, both;
        twiddles(e, row, col, both);
        float v = pc.x.v[base + e];
        x00 += v;
        x10 += v * row;
        x01 += v * col;
        x11 += v * both;
    }
    x00 = workgroup_sum(x00);
    x10 = vec2(workgroup_sum(x10.x), workgroup_sum(x10.y));
    x01 = vec2(workgroup_sum(x01.x), workgroup_sum(x01.y));
    x11 = vec2(workgroup_sum(x11.x), workgroup_sum(x11.y));

    // whether -1 is a frequency of its own on each axis (not 0 again)
    float rows = pc.H > 1 ? 1.0 : 0.0, cols = pc.W > 1 ? 1.0 : 0.0;
    for (uint e = t; e < hw; e += WG_SIZE) {
        vec2 row, col, both;
        twiddles(e, row, col, both);
        // Re(X e^(-i angle)) for each frequency
        float low = x00 + rows * dot(x10, row) + cols * dot(x01, col) + rows * cols * dot(x11, both);
        pc.y.v[base + e] = pc.x.v[base + e] + (pc.s - 1.0) * (low / float(hw));
    }
}
