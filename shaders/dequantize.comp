#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// GGUF's block-quantized weights widened for matmul: w, whole blocks of
// QTYPE (kiln_dtype's order from Q4_0, one variant each: cmake/shaders.cmake)
// -> y, f32 or f16 (out_f16), which the GEMM then reads as a float weight.
// One invocation per pair of values. Each value is decoded as
// runtime/quant.c decodes it (ggml's dequantize_row_*), the products in the
// same order; the op suite checks the matmul on every type against it.
layout(local_size_x = 256) in;

layout(buffer_reference, std430, buffer_reference_align = 4) writeonly buffer word_out { uint v[]; };

layout(push_constant) uniform dequantize_push {
    word_ref w;   // the blocks' address rounded down to 4 bytes
    word_out y;
    uint w_first; // bytes that rounding skipped
    uint pairs;   // values / 2
    uint out_f16;
} pc;

#if QTYPE == 0 || QTYPE == 10 // Q4_0, IQ4_NL
const uint BLOCK = 32u, BYTES = 18u;
#elif QTYPE == 1 // Q4_1
const uint BLOCK = 32u, BYTES = 20u;
#elif QTYPE == 2 // Q5_0
const uint BLOCK = 32u, BYTES = 22u;
#elif QTYPE == 3 // Q5_1
const uint BLOCK = 32u, BYTES = 24u;
#elif QTYPE == 4 // Q8_0
const uint BLOCK = 32u, BYTES = 34u;
#elif QTYPE == 5 // Q2_K
const uint BLOCK = 256u, BYTES = 84u;
#elif QTYPE == 6 // Q3_K
const uint BLOCK = 256u, BYTES = 110u;
#elif QTYPE == 7 // Q4_K
const uint BLOCK = 256u, BYTES = 144u;
#elif QTYPE == 8 // Q5_K
const uint BLOCK = 256u, BYTES = 176u;
#elif QTYPE == 9 // Q6_K
const uint BLOCK = 256u, BYTES = 210u;
#elif QTYPE == 11 // IQ4_XS
const uint BLOCK = 256u, BYTES = 136u;
#endif

uint byte_at(uint at)
{
    at += pc.w_first;
    return (pc.w.v[at >> 2] >> ((at & 3u) * 8u)) & 0xffu;
}

float half_at(uint at) { return unpackHalf2x16(byte_at(at) | (byte_at(at + 1u) << 8)).x; }

uint u32_at(uint at)
{
    return byte_at(at) | (byte_at(at + 1u) << 8) | (byte_at(at + 2u) << 16) | (byte_at(at + 3u) << 24);
}

int signed_byte(uint b) { return int(b) - int((b & 0x80u) << 1); }

// The low or high nibble of byte at + e % 16: value e of a 32-value block.
uint nibble(uint at, uint e) { return (byte_at(at + e % 16u) >> (4u * (e / 16u))) & 15u; }

const int iq4_values[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

// Q4_K's and Q5_K's 6-bit scale and minimum of sub-block sb, from 12 bytes at s.
void scale_min_k4(uint s, uint sb, out uint scale, out uint mn)
{
    if (sb < 4u) {
        scale = byte_at(s + sb) & 63u;
        mn = byte_at(s + sb + 4u) & 63u;
    } else {
        scale = (byte_at(s + sb + 4u) & 15u) | ((byte_at(s + sb - 4u) >> 6) << 4);
        mn = (byte_at(s + sb + 4u) >> 4) | ((byte_at(s + sb) >> 6) << 4);
    }
}

// Value e of the block at byte b.
float value(uint b, uint e)
{
#if QTYPE == 0
    return float(int(nibble(b + 2u, e)) - 8) * half_at(b);
#elif QTYPE == 1
    return half_at(b) * float(nibble(b + 4u, e)) + half_at(b + 2u);
#elif QTYPE == 2
    uint q = nibble(b + 6u, e) | (((u32_at(b + 2u) >> e) & 1u) << 4);
    return float(int(q) - 16) * half_at(b);
#elif QTYPE == 3
    uint q = nibble(b + 8u, e) | (((u32_at(b + 4u) >> e) & 1u) << 4);
    return half_at(b) * float(q) + half_at(b + 2u);
#elif QTYPE == 4
    return float(signed_byte(byte_at(b + 2u + e))) * half_at(b);
#elif QTYPE == 5
    uint half_ = e / 128u, r = e % 128u;
    uint q = (byte_at(b + 16u + half_ * 32u + r % 32u) >> (2u * (r / 32u))) & 3u;
    uint s = byte_at(b + e / 16u);
    return half_at(b + 80u) * float(s & 15u) * float(q) - half_at(b + 82u) * float(s >> 4);
#elif QTYPE == 6
    uint half_ = e / 128u, r = e % 128u, s = r / 32u, l = r % 32u;
    int low = int((byte_at(b + 32u + half_ * 32u + l) >> (2u * s)) & 3u);
    int q = low - (((byte_at(b + l) >> (half_ * 4u + s)) & 1u) != 0u ? 0 : 4);
    uint sb = e / 16u;
    uint scale_low = sb < 8u ? byte_at(b + 96u + sb) & 15u : byte_at(b + 88u + sb) >> 4;
    uint scale_high = (byte_at(b + 104u + sb % 4u) >> (2u * (sb / 4u))) & 3u;
    return half_at(b + 108u) * float(int(scale_low | (scale_high << 4)) - 32) * float(q);
#elif QTYPE == 7 || QTYPE == 8
    uint sb = e / 32u, l = e % 32u, scale, mn;
    scale_min_k4(b + 4u, sb, scale, mn);
    float dl = half_at(b) * float(scale), ml = half_at(b + 2u) * float(mn);
#if QTYPE == 7
    uint q = (byte_at(b + 16u + sb / 2u * 32u + l) >> (4u * (sb % 2u))) & 15u;
#else
    uint q = ((byte_at(b + 48u + sb / 2u * 32u + l) >> (4u * (sb % 2u))) & 15u) | (((byte_at(b + 16u + l) >> sb) & 1u) << 4);
#endif
    return dl * float(q) - ml;
#elif QTYPE == 9
    uint half_ = e / 128u, r = e % 128u;
    uint low = (byte_at(b + half_ * 64u + r % 64u) >> (4u * (r / 64u))) & 15u;
    uint high = (byte_at(b + 128u + half_ * 32u + r % 32u) >> (2u * (r / 32u))) & 3u;
    return half_at(b + 208u) * float(signed_byte(byte_at(b + 192u + e / 16u))) * float(int(low | (high << 4)) - 32);
#elif QTYPE == 10
    return half_at(b) * float(iq4_values[nibble(b + 2u, e)]);
#elif QTYPE == 11
    uint sb = e / 32u, l = e % 32u;
    uint scales_high = byte_at(b + 2u) | (byte_at(b + 3u) << 8);
    int scale = int(((byte_at(b + 4u + sb / 2u) >> (4u * (sb % 2u))) & 15u) | (((scales_high >> (2u * sb)) & 3u) << 4)) - 32;
    float dl = half_at(b) * float(scale);
    return dl * float(iq4_values[(byte_at(b + 8u + sb * 16u + l % 16u) >> (4u * (l / 16u))) & 15u]);
#endif
}

void main()
{
    uint pair = flat_group_index() * 256u + gl_LocalInvocationID.x;
    if (pair >= pc.pairs) return;
    uint i = 2u * pair, b = i / BLOCK * BYTES, e = i % BLOCK;
    vec2 v = vec2(value(b, e), value(b, e + 1u));
    if (pc.out_f16 != 0u) {
        pc.y.v[pair] = packHalf2x16(v);
    } else {
        pc.y.v[i] = floatBitsToUint(v.x);
        pc.y.v[i + 1u] = floatBitsToUint(v.y);
    }
}
