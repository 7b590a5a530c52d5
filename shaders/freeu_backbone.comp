#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "elementwise.glsl"
#define WG_SIZE 256
#include "reduce.glsl"

// x (N,C,HW) -> y: FreeU's backbone scaling of a UNet decoder block's input
// (runtime/cpu_ref.c, cpu_ref_freeu_backbone). Channels c < C/2 are
// multiplied by a factor, the others copied:
//   v1: b, the same everywhere: elementwise, four elements an invocation
//       over the host's flat grid (run_elementwise4);
//   v2: (b - 1) m + 1, m the pixel's mean over all C channels rescaled by the
//       min and max of those means over the image. The min and max need the
//       whole image, so a workgroup takes one image (the host's grid has one
//       per image): it reads the image once for the means' range, then again
//       pixel by pixel for each mean and the scaled channels. Neighbouring
//       invocations take neighbouring pixels, whose channels' values are
//       neighbours in x.
// y may be x: each pixel is read whole before its own invocation writes it.
layout(push_constant) uniform freeu_backbone_push {
    f32_ref x;
    f32_ref y;
    int N, C, HW; // kiln_freeu_backbone_params
    float b;
    int v2;
} pc;

// Summed in channel order and divided as the CPU's reference does; both
// passes call this, so a pixel gets the same mean in each and the image's
// extreme pixels land exactly on 0 and 1.
float pixel_mean(uint image, uint pixel)
{
    uint hw = uint(pc.HW);
    float sum = 0.0;
    for (uint c = 0; c < uint(pc.C); c++) sum += pc.x.v[image + c * hw + pixel];
    return sum / float(pc.C);
}

void scale_image(uint n)
{
    uint t = gl_LocalInvocationID.x, hw = uint(pc.HW), image = n * uint(pc.C) * hw;
    float lo = uintBitsToFloat(0x7f800000u), hi = -lo; // +inf, -inf
    for (uint i = t; i < hw; i += WG_SIZE) {
        float mean = pixel_mean(image, i);
        lo = min(lo, mean);
        hi = max(hi, mean);
    }
    lo = -workgroup_max(-lo);
    hi = workgroup_max(hi);
    // All means equal: 0/0 below, NaN on the scaled channels, as torch gives.
    uint scaled = uint(pc.C / 2);
    for (uint i = t; i < hw; i += WG_SIZE) {
        float factor = (pc.b - 1.0) * ((pixel_mean(image, i) - lo) / (hi - lo)) + 1.0;
        for (uint c = 0; c < uint(pc.C); c++) {
            uint at = image + c * hw + i;
            pc.y.v[at] = c < scaled ? pc.x.v[at] * factor : pc.x.v[at];
        }
    }
}

void main()
{
    if (pc.v2 != 0) {
        // whole workgroups leave together: the reductions' barriers stay uniform
        uint n = flat_group_index();
        if (n < uint(pc.N)) scale_image(n);
        return;
    }
    uint i = first_of_four(), hw = uint(pc.HW), total = uint(pc.N * pc.C) * hw;
    if (i >= total) return;
    bool vector = aligned16(pc.x) && aligned16(pc.y);
    // four neighbours may span two channels where HW % 4 != 0
    vec4 factor;
    [[unroll]] for (uint k = 0; k < 4u; k++) {
        uint c = (min(i + k, total - 1u) / hw) % uint(pc.C);
        factor[k] = c < uint(pc.C / 2) ? pc.b : 1.0;
    }
    store4(pc.y, vector, i, total - i, load4(pc.x, vector, i, total - i) * factor);
}
