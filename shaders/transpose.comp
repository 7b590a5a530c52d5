#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "vec4_io.glsl"

// x (B,R,C) -> y (B,C,R), through a 64x64 tile in shared memory so that both
// the reads and the writes walk along rows, four elements at a time
// (vec4_io.glsl: vec4s where R and C are multiples of 4 and x and y
// aligned). Grid: (C/64, R/64, B).
layout(local_size_x = 256) in;

layout(push_constant) uniform transpose_push {
    f32_ref x;
    f32_ref y;
    int B, R, C; // kiln_transpose_params
} pc;

const uint TILE = 64u;
shared float tile[TILE][TILE + 1u]; // +1 column: a column read touches 32 banks

void main()
{
    uint rows = uint(pc.R), cols = uint(pc.C);
    uint b = gl_WorkGroupID.z;
    uint r0 = gl_WorkGroupID.y * TILE, c0 = gl_WorkGroupID.x * TILE;
    uint t = gl_LocalInvocationID.x, quad = 4u * (t % 16u); // 16 invocations span a row of the tile
    bool vector = rows % 4u == 0u && cols % 4u == 0u && aligned16(pc.x) && aligned16(pc.y);
    for (uint j = t / 16u; j < TILE; j += 16u) {
        uint r = r0 + j, c = c0 + quad;
        if (r < rows && c < cols) {
            vec4 v = load4(pc.x, vector, (b * rows + r) * cols + c, cols - c);
            for (uint e = 0; e < 4u; e++) tile[j][quad + e] = v[e];
        }
    }
    barrier();
    for (uint j = t / 16u; j < TILE; j += 16u) {
        uint c = c0 + j, r = r0 + quad;
        if (r < rows && c < cols) {
            vec4 v = vec4(tile[quad][j], tile[quad + 1u][j], tile[quad + 2u][j], tile[quad + 3u][j]);
            store4(pc.y, vector, (b * cols + c) * rows + r, rows - r, v);
        }
    }
}
