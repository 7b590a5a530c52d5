// Elementwise shaders: workgroups of 256, each invocation taking four
// neighbouring elements (the host's run_elementwise4), read and written as
// one vec4 where the operands are 16-byte aligned. On an H200 a copy moved
// 4149 GB/s in vec4s and 1468 in floats (bench/RESULTS.md), and these ops
// only move memory.
#extension GL_EXT_buffer_reference_uvec2 : require

layout(local_size_x = 256) in;

layout(buffer_reference, std430, buffer_reference_align = 16) writeonly buffer vec4_out_ref { vec4 v[]; };

// The first of this invocation's four elements.
uint first_of_four() { return 4u * (flat_group_index() * 256u + gl_LocalInvocationID.x); }

bool aligned16(f32_ref r) { return (uvec2(r).x & 15u) == 0u; }
