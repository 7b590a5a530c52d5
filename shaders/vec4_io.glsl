// f32 operands read and written four elements at a time: as one 16-byte
// vec4 where the operand is 16-byte aligned, else element by element. On an
// H200 a copy moved 4149 GB/s in vec4s and 1468 in floats
// (bench/RESULTS.md), and the shaders that use these only move memory.
// Loops over the four are unrolled with constant indices: a vec4 indexed by
// a run-time counter lives in local memory on NVIDIA's driver (the
// tensor-core matmul's epilogue so ran 40% slower, bench/RESULTS.md).
#extension GL_EXT_buffer_reference_uvec2 : require
#extension GL_EXT_control_flow_attributes : require

layout(buffer_reference, std430, buffer_reference_align = 16) writeonly buffer vec4_out_ref { vec4 v[]; };

bool aligned16(f32_ref r) { return (uvec2(r).x & 15u) == 0u; }

// x[i..i+3]; `vector`: x is 16-byte aligned and i a multiple of 4. Of the
// four, only the `left` first exist (0 beyond).
vec4 load4(f32_ref x, bool vector, uint i, uint left)
{
    if (vector && left >= 4u) return vec4_ref(x).v[i / 4u];
    vec4 v = vec4(0.0);
    [[unroll]] for (uint c = 0; c < 4u; c++)
        if (c < left) v[c] = x.v[i + c];
    return v;
}

void store4(f32_ref y, bool vector, uint i, uint left, vec4 v)
{
    if (vector && left >= 4u) {
        vec4_out_ref(y).v[i / 4u] = v;
        return;
    }
    [[unroll]] for (uint c = 0; c < 4u; c++)
        if (c < left) y.v[i + c] = v[c];
}

// 1 for the `left` first of four elements that exist, 0 for the others.
vec4 present4(uint left) { return vec4(lessThan(uvec4(0u, 1u, 2u, 3u), uvec4(left))); }
