// Included first by every kiln compute shader.
//
// Operands reach a shader as device addresses in its push constants (buffer
// device address), not as descriptors: a dispatch needs no descriptor set, and
// no operand is limited by maxStorageBufferRange (128 MiB on lavapipe, less
// than one VAE activation at 512x512). Indices are uint, so one operand may
// hold up to 2^32 elements.
#extension GL_EXT_buffer_reference : require
#ifdef W_F16_STORAGE
#extension GL_EXT_shader_16bit_storage : require
#endif

// Activations: f32, 4-byte aligned.
layout(buffer_reference, std430, buffer_reference_align = 4) buffer f32_ref { float v[]; };
// 16-byte views for vector loads, where the host has checked the alignment.
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer vec4_ref { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer uvec4_ref { uvec4 v[]; };
// Token ids for embedding.
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer i32_ref { int v[]; };
// Any weight read as 32-bit words (weights.glsl unpacks 16- and 8-bit types).
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer word_ref { uint v[]; };

// The host splits a large 1-D grid over x and y (x is at most 65535 groups);
// this is the group's place in the flat order.
uint flat_group_index()
{
    return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
}
