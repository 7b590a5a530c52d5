#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"

// conv2d's column matrix for the tensor-core GEMM, in f16 (the precision the
// GEMM rounds its operands to anyway), for output pixels m in
// [m_first, m_first + rows):
//   col[m - m_first][k] = x[n][c][oy*stride - pad + ky][ox*stride - pad + kx]
//                         (0 outside the image and for k >= K),
//   m = (n, oy, ox), k = (c, ky, kx), rows of k_stride (K rounded up to 8)
// so that the GEMM reads both operands as 16-byte rows of 8 f16, as it reads
// a matmul's weights, instead of gathering single f32 pixels per k.
//
// A workgroup fills a 64x64 block of col through shared memory: first
// neighbouring invocations read neighbouring pixels of one k (neighbouring x
// along a row of the image), then each writes 16-byte runs of 8 k along a row
// of col, 8 invocations covering 128 neighbouring bytes.
// Grid: (k_stride / 64 rounded up, rows / 64 rounded up).
layout(local_size_x = 256) in;

layout(buffer_reference, std430, buffer_reference_align = 16) writeonly buffer col_ref { uvec4 v[]; };

layout(push_constant) uniform im2col_push {
    f32_ref x;
    col_ref col;
    int N, C, H, W;  // kiln_conv2d_params
    int O, KH, KW;
    int stride, pad;
    int OH, OW;
    uint m_first, rows, k_stride;
} pc;

const uint TILE = 64u;
shared float block[TILE * (TILE + 1u)]; // (m, k); +1: a column of 32 m touches 32 banks
// Per k of the block, worked out once rather than per element: its input
// channel's offset within an image and its tap's offsets in the window.
shared uint k_plane[TILE];
shared int k_dy[TILE], k_dx[TILE];

void main()
{
    uint t = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * TILE, k0 = gl_WorkGroupID.x * TILE;
    uint K = uint(pc.C * pc.KH * pc.KW), taps = uint(pc.KH * pc.KW);
    if (t < TILE) {
        uint k = k0 + t, tap = k % taps;
        k_plane[t] = (k / taps) * uint(pc.H * pc.W);
        k_dy[t] = int(tap / uint(pc.KW));
        k_dx[t] = int(tap % uint(pc.KW));
    }
    barrier();

    uint r = t % TILE; // this invocation's pixel in the block
    uint m = pc.m_first + m0 + r, ohw = uint(pc.OH * pc.OW);
    bool pixel = m0 + r < pc.rows;
    uint p = m % ohw;
    uint image = (m / ohw) * uint(pc.C * pc.H * pc.W);
    int iy0 = int(p / uint(pc.OW)) * pc.stride - pc.pad, ix0 = int(p % uint(pc.OW)) * pc.stride - pc.pad;
    for (uint j = t / TILE; j < TILE; j += 256u / TILE) {
        uint k = k0 + j;
        float v = 0.0;
        if (pixel && k < K) {
            int iy = iy0 + k_dy[j], ix = ix0 + k_dx[j];
            if (iy >= 0 && iy < pc.H && ix >= 0 && ix < pc.W)
                v = pc.x.v[image + k_plane[j] + uint(iy) * uint(pc.W) + uint(ix)];
        }
        block[r * (TILE + 1u) + j] = v;
    }
    barrier();

    for (uint e = t; e < TILE * TILE / 8u; e += 256u) {
        uint row = e / (TILE / 8u), k = k0 + 8u * (e % (TILE / 8u));
        if (m0 + row >= pc.rows || k >= pc.k_stride) continue;
        uint at = row * (TILE + 1u) + k - k0;
        uvec4 packed;
        for (uint i = 0; i < 4u; i++)
            packed[i] = packFloat2x16(f16vec2(block[at + 2u * i], block[at + 2u * i + 1u])); // as the GEMM rounds
        pc.col.v[((m0 + row) * pc.k_stride + k) / 8u] = packed;
    }
}
