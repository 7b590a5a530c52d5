#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// x (B,R,C) -> y (B,C,R), through a 32x32 tile in shared memory so both the
// reads and the writes walk along rows. Grid: (C/32, R/32, B).
layout(local_size_x = 32, local_size_y = 8) in;

layout(push_constant) uniform transpose_push {
    f32_ref x;
    f32_ref y;
    int B, R, C; // kiln_transpose_params
} pc;

shared float tile[32][33]; // +1 column: a column read touches 32 banks

void main()
{
    uint rows = uint(pc.R), cols = uint(pc.C);
    uint b = gl_WorkGroupID.z;
    uint r0 = gl_WorkGroupID.y * 32, c0 = gl_WorkGroupID.x * 32;
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    for (uint j = ty; j < 32; j += 8) {
        uint r = r0 + j, c = c0 + tx;
        if (r < rows && c < cols) tile[j][tx] = pc.x.v[(b * rows + r) * cols + c];
    }
    barrier();
    for (uint j = ty; j < 32; j += 8) {
        uint c = c0 + j, r = r0 + tx;
        if (r < rows && c < cols) pc.y.v[(b * cols + c) * rows + r] = tile[tx][j];
    }
}
