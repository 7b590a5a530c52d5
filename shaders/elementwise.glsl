// Elementwise shaders: workgroups of 256, each invocation taking four
// neighbouring elements (the host's run_elementwise4) through vec4_io.glsl.
#include "vec4_io.glsl"

layout(local_size_x = 256) in;

// The first of this invocation's four elements.
uint first_of_four() { return 4u * (flat_group_index() * 256u + gl_LocalInvocationID.x); }
