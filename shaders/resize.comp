#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// x (N,C,H,W) -> y (N,C,OH,OW): torch's interpolate without align_corners or
// antialias, as runtime/resample.c (kiln_resample) computes it on the host,
// in the same float expressions, one invocation per element of y.
layout(local_size_x = 256) in;

layout(push_constant) uniform resize_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W, OH, OW, method; // kiln_resize_params
    // H / OH and W / OW rounded to float on the host: Vulkan lets a shader's
    // division err by 2.5 ulp, and a nearest source moves where a target's
    // centre (or corner) lands on a whole number
    float scale_h, scale_w;
} pc;

// kiln_resample_method's numbers (the host asserts them); 2, bicubic, is the rest
const int NEAREST_EXACT = 0, BILINEAR = 1, NEAREST = 3, AREA = 4;

// kiln_nearest_exact_index: the source under target o's centre
int nearest_exact(uint o, float scale, int n)
{
    return min(int(floor((float(o) + 0.5) * scale)), n - 1);
}

// kiln_nearest_index: the source under target o's corner (torch's legacy
// nearest), o / 2 at exactly twice as torch shifts there
int nearest(uint o, float scale, int n, int targets)
{
    return targets == 2 * n ? int(o >> 1u) : min(int(floor(float(o) * scale)), n - 1);
}

// Where target o samples the source, in source pixels from the first one's
// centre. precise: the product is rounded before the subtraction, as on the
// CPU, not fused with it, so that a sample near a whole number takes the
// CPU's taps.
float sample_at(uint o, float scale)
{
    precise float at = (float(o) + 0.5) * scale - 0.5;
    return at;
}

// Keys' cubic convolution weights (a = -0.75) of the four taps around a
// sample t in [0, 1) past the second
vec4 cubic_weights(float t)
{
    const float a = -0.75;
    float t1 = t + 1.0, t2 = 1.0 - t, t3 = 2.0 - t;
    return vec4(((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a, ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0,
                ((a + 2.0) * t2 - (a + 3.0)) * t2 * t2 + 1.0, ((a * t3 - 5.0 * a) * t3 + 8.0 * a) * t3 - 4.0 * a);
}

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint oh = uint(pc.OH), ow = uint(pc.OW), w = uint(pc.W);
    if (i >= uint(pc.N * pc.C) * oh * ow) return;
    uint plane = i / (oh * ow), oy = i / ow % oh, ox = i % ow;
    uint base = plane * uint(pc.H) * w;

    if (pc.method == NEAREST_EXACT || pc.method == NEAREST) {
        bool exact = pc.method == NEAREST_EXACT;
        uint sy = uint(exact ? nearest_exact(oy, pc.scale_h, pc.H) : nearest(oy, pc.scale_h, pc.H, pc.OH));
        uint sx = uint(exact ? nearest_exact(ox, pc.scale_w, pc.W) : nearest(ox, pc.scale_w, pc.W, pc.OW));
        pc.y.v[i] = pc.x.v[base + sy * w + sx];
        return;
    }
    if (pc.method == AREA) {
        // kiln_area_window's sources, summed row by row, over the height then the width
        int y0 = int(oy) * pc.H / pc.OH, y1 = ((int(oy) + 1) * pc.H + pc.OH - 1) / pc.OH;
        int x0 = int(ox) * pc.W / pc.OW, x1 = ((int(ox) + 1) * pc.W + pc.OW - 1) / pc.OW;
        float sum = 0.0;
        for (int sy = y0; sy < y1; sy++)
            for (int sx = x0; sx < x1; sx++) sum += pc.x.v[base + uint(sy) * w + uint(sx)];
        pc.y.v[i] = sum / float(y1 - y0) / float(x1 - x0);
        return;
    }
    if (pc.method == BILINEAR) {
        // the sample clamped at the first source; the second tap at the last
        // source is the first again
        float fy = max(sample_at(oy, pc.scale_h), 0.0), fx = max(sample_at(ox, pc.scale_w), 0.0);
        int y0 = int(fy), x0 = int(fx);
        int y1 = y0 + (y0 < pc.H - 1 ? 1 : 0), x1 = x0 + (x0 < pc.W - 1 ? 1 : 0);
        float ly = fy - float(y0), lx = fx - float(x0);
        uint r0 = base + uint(y0) * w, r1 = base + uint(y1) * w;
        pc.y.v[i] = (1.0 - ly) * ((1.0 - lx) * pc.x.v[r0 + uint(x0)] + lx * pc.x.v[r0 + uint(x1)]) +
                    ly * ((1.0 - lx) * pc.x.v[r1 + uint(x0)] + lx * pc.x.v[r1 + uint(x1)]);
        return;
    }
    // bicubic: four taps an axis from the one before the sample's floor,
    // indices clamped to the plane; each row's taps first, then the rows
    float fy = sample_at(oy, pc.scale_h), fx = sample_at(ox, pc.scale_w);
    int iy = int(floor(fy)), ix = int(floor(fx));
    vec4 wy = cubic_weights(fy - float(iy)), wx = cubic_weights(fx - float(ix));
    uvec4 cols = uvec4(clamp(ivec4(ix - 1, ix, ix + 1, ix + 2), 0, pc.W - 1));
    float sum = 0.0;
    for (int j = 0; j < 4; j++) {
        uint row = base + uint(clamp(iy - 1 + j, 0, pc.H - 1)) * w;
        float taps = pc.x.v[row + cols.x] * wx.x + pc.x.v[row + cols.y] * wx.y + pc.x.v[row + cols.z] * wx.z +
                     pc.x.v[row + cols.w] * wx.w;
        sum += taps * wy[j];
    }
    pc.y.v[i] = sum;
}
