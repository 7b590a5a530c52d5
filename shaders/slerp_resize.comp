#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// x (N,C,H,W) -> y (N,C,H,size) along the width (axis 0) or (N,C,size,W)
// along the height (axis 1): one pass of ComfyUI's bislerp as
// runtime/resample.c computes it (kiln_bislerp_tap, kiln_slerp), in the same
// float expressions, one invocation per output pixel over its C channels.
layout(local_size_x = 256) in;

layout(push_constant) uniform slerp_resize_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W, size, axis; // kiln_slerp_resize_params (its `out`, a GLSL keyword, as size)
    // the axis's length over size rounded to float on the host: Vulkan lets
    // a shader's division err by 2.5 ulp, and a tap moves where a sample
    // lands on a whole number
    float scale;
} pc;

// kiln_bislerp_tap: target o's sources first and second along an axis of n
// pixels, and its ratio between them. precise: each product rounded before
// the sum it feeds, as on the CPU, not fused with it, so that the taps are
// the CPU's.
void bislerp_tap(uint o, int n, out int first, out int second, out float ratio)
{
    precise float f = max((float(o) + 0.5) * pc.scale - 0.5, 0.0);
    int i0 = int(f), i1 = i0 + (i0 < n - 1 ? 1 : 0);
    precise float l = f - float(i0);
    float next0 = float(min(i0 + 1, n - 1)), next1 = float(min(i1 + 1, n - 1));
    precise float at = (1.0 - l) * float(i0) + l * float(i1);
    precise float at_next = (1.0 - l) * next0 + l * next1;
    precise float fraction = at - floor(at);
    first = int(at);
    second = int(at_next);
    ratio = fraction;
}

// acos to within a few ulp: Vulkan allows a driver's acos thousands of ulp
// (it inherits atan's 4096), and lavapipe's put this op 1e-5 to 4e-5 off
// float64, past the float32 tolerance of 1e-5 the other backends keep. asin
// near 0 as x + x z p(z), z = x^2, p of degree 4 fitted to asin by weighted
// least squares on 2000 Chebyshev nodes of [0, 0.5] (relative error below
// 7.1e-8 there); about +-1 the half-angle identities
// acos x = 2 asin sqrt((1 - x) / 2) and pi - 2 asin sqrt((1 + x) / 2),
// whose arguments stay within [0, 0.5]: acos within 3e-7 over [-1, 1].
float asin_near0(float x)
{
    float z = x * x;
    return ((((4.2095039e-2 * z + 2.4220509e-2) * z + 4.5462500e-2) * z + 7.4953534e-2) * z +
            1.6666752e-1) * z * x + x;
}

float acos_accurate(float x)
{
    const float pi = 3.14159265358979;
    if (x > 0.5) return 2.0 * asin_near0(sqrt(0.5 * (1.0 - x)));
    if (x < -0.5) return pi - 2.0 * asin_near0(sqrt(0.5 * (1.0 + x)));
    return 0.5 * pi - asin_near0(x);
}

void main()
{
    bool wide = pc.axis == 0;
    uint rows = uint(wide ? pc.H : pc.size), cols = uint(wide ? pc.size : pc.W);
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    if (i >= uint(pc.N) * rows * cols) return;
    uint n = i / (rows * cols), r = i / cols % rows, col = i % cols;
    uint w = uint(pc.W), plane = uint(pc.H) * w, out_plane = rows * cols;

    int first, second;
    float ratio;
    bislerp_tap(wide ? col : r, wide ? pc.W : pc.H, first, second, ratio);
    uint image = n * uint(pc.C) * plane;
    uint a = image + (wide ? r * w + uint(first) : uint(first) * w + col);
    uint b = image + (wide ? r * w + uint(second) : uint(second) * w + col);
    uint to = n * uint(pc.C) * out_plane + r * cols + col;

    // kiln_slerp: each vector's terms over its length (zero where that is
    // zero), the first for vectors nearly alike, the straight line for
    // nearly opposite ones
    float na = 0.0, nb = 0.0, dot_ab = 0.0;
    for (uint k = 0; k < uint(pc.C); k++) {
        float va = pc.x.v[a + k * plane], vb = pc.x.v[b + k * plane];
        na += va * va;
        nb += vb * vb;
    }
    na = sqrt(na);
    nb = sqrt(nb);
    for (uint k = 0; k < uint(pc.C); k++)
        dot_ab += (na == 0.0 ? 0.0 : pc.x.v[a + k * plane] / na) * (nb == 0.0 ? 0.0 : pc.x.v[b + k * plane] / nb);
    if (dot_ab > 1.0 - 1e-5) {
        for (uint k = 0; k < uint(pc.C); k++) pc.y.v[to + k * out_plane] = pc.x.v[a + k * plane];
        return;
    }
    if (dot_ab < 1e-5 - 1.0) {
        for (uint k = 0; k < uint(pc.C); k++)
            pc.y.v[to + k * out_plane] = pc.x.v[a + k * plane] * (1.0 - ratio) + pc.x.v[b + k * plane] * ratio;
        return;
    }
    // a guard: the branches above keep |dot| under 1 - 1e-5 already, and
    // past +-1 the acos would be NaN
    float omega = acos_accurate(clamp(dot_ab, -1.0, 1.0)), so = sin(omega);
    float wa = sin((1.0 - ratio) * omega) / so, wb = sin(ratio * omega) / so;
    float length = na * (1.0 - ratio) + nb * ratio;
    for (uint k = 0; k < uint(pc.C); k++) {
        float ua = na == 0.0 ? 0.0 : pc.x.v[a + k * plane] / na, ub = nb == 0.0 ? 0.0 : pc.x.v[b + k * plane] / nb;
        pc.y.v[to + k * out_plane] = (wa * ua + wb * ub) * length;
    }
}
