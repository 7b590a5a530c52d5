#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define CM_ROW_OPS 32
#include "coopmat.glsl"

// The host's check, when it opens a device, that the driver lays out a
// 16x16 f32 product as the register softmax (attention_registers.comp)
// needs: every element of row r held by a lane of quad r % 8. Lane l writes
// flags[l] = 1 if each of its elements is, else 0.
layout(local_size_x = 32) in;
layout(push_constant) uniform layout_push {
    f32_ref flags;
} pc;

void main()
{
    cm_numbers_fill();
    barrier();
    cm_acc row_of, col_of;
    CM_ELEMENT_NUMBERS(row_of, col_of);
    bool quads = true;
    [[unroll]] for (uint e = 0; e < CM_ACC_LENGTH(row_of); e++)
        quads = quads && uint(CM_ACC_AT(row_of, e)) % 8u == CM_LANE / 4u;
    pc.flags.v[CM_LANE] = quads ? 1.0 : 0.0;
}
