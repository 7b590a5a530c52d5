#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"

// x (N,C,H,W) -> y (N,C,OH,OW), OH = (H + 2 pad_h) / 2, OW = (W + 2 pad_w) / 2:
// torch's avg_pool2d(x, 2, 2, padding=(pad_h, pad_w)), T2I-Adapters'
// downsampling. Each invocation averages four neighbouring outputs, which may
// span two rows, and writes them as one vec4 where y is aligned.
layout(push_constant) uniform avg_pool2x2_push {
    f32_ref x;
    f32_ref y;
    int N, C, H, W, pad_h, pad_w; // kiln_avg_pool2x2_params
} pc;

// The window's taps inside x summed row by row, as runtime/cpu_ref.c does;
// the padding's zeros would leave the sum as it is.
float window(uint o, uint oh, uint ow)
{
    uint nc = o / (oh * ow), at = o % (oh * ow);
    int h0 = 2 * int(at / ow) - pc.pad_h, w0 = 2 * int(at % ow) - pc.pad_w;
    uint plane = nc * uint(pc.H) * uint(pc.W);
    float sum = 0.0;
    [[unroll]] for (int dh = 0; dh < 2; dh++)
        [[unroll]] for (int dw = 0; dw < 2; dw++) {
            int h = h0 + dh, w = w0 + dw;
            if (h >= 0 && h < pc.H && w >= 0 && w < pc.W) sum += pc.x.v[plane + uint(h * pc.W + w)];
        }
    return sum * 0.25;
}

void main()
{
    uint oh = uint(pc.H + 2 * pc.pad_h) / 2u, ow = uint(pc.W + 2 * pc.pad_w) / 2u;
    uint i = first_of_four(), count = uint(pc.N * pc.C) * oh * ow;
    if (i >= count) return;
    vec4 v;
    [[unroll]] for (uint e = 0; e < 4u; e++) v[e] = window(min(i + e, count - 1u), oh, ow);
    store4(pc.y, aligned16(pc.y), i, count - i, v);
}
