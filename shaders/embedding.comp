#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"

// ids (M) i32, table (V,D) -> y (M,D): row ids[m] of the table, widened to
// f32. Ids outside [0, V) are clamped, as the CPU reference does, so no read
// leaves the table.
layout(local_size_x = 256) in;

layout(push_constant) uniform embedding_push {
    i32_ref ids;
    weight_ref table;
    f32_ref y;
    int M, V, D; // kiln_embedding_params
    uint table_first; // see load_packed
} pc;

void main()
{
    uint i = flat_group_index() * 256 + gl_LocalInvocationID.x;
    uint d_count = uint(pc.D);
    if (i >= uint(pc.M) * d_count) return;
    uint m = i / d_count, d = i % d_count;
    uint id = uint(clamp(pc.ids.v[m], 0, pc.V - 1));
    pc.y.v[i] = load_weight(pc.table, pc.table_first + id * d_count + d);
}
