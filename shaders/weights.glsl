// Reading weights stored as f32, f16, bf16 or fp8, widened to f32.
//
// Weight storage types, numbered as kiln_dtype in runtime/tensor.h (the host
// checks that the numbers agree).
const uint DTYPE_F32 = 0u;
const uint DTYPE_F16 = 1u;
const uint DTYPE_BF16 = 2u;
const uint DTYPE_F8_E4M3 = 3u;
const uint DTYPE_F8_E5M2 = 4u;

// fp8 e4m3fn: bias 7, no infinities, 0x7f/0xff are NaN.
float f8e4m3_to_f32(uint b)
{
    uint sign = (b & 0x80u) << 24;
    uint e = (b >> 3) & 0xfu;
    uint m = b & 7u;
    if (e == 15u && m == 7u) return uintBitsToFloat(sign | 0x7fc00000u);
    if (e == 0u) return uintBitsToFloat(sign | floatBitsToUint(float(m) * (1.0 / 512.0)));
    return uintBitsToFloat(sign | ((e + 120u) << 23) | (m << 20));
}

// Element i of a weight held in 32-bit words. 16- and 8-bit elements sit
// little-endian in their word, element 0 in the low bits. The host passes the
// weight's address rounded down to 4 bytes and adds the elements skipped by
// the rounding to i (the "_first" push constants).
float load_packed(word_ref w, uint dtype, uint i)
{
    if (dtype == DTYPE_F32) return uintBitsToFloat(w.v[i]);
    if (dtype == DTYPE_F16 || dtype == DTYPE_BF16) {
        uint bits = (w.v[i >> 1] >> ((i & 1u) * 16u)) & 0xffffu;
        return dtype == DTYPE_F16 ? unpackHalf2x16(bits).x : uintBitsToFloat(bits << 16);
    }
    uint bits = (w.v[i >> 2] >> ((i & 3u) * 8u)) & 0xffu;
    return dtype == DTYPE_F8_E4M3 ? f8e4m3_to_f32(bits) : unpackHalf2x16(bits << 8).x;
}

// The op's main weight (matmul/conv2d filters, the embedding table): its
// storage type is fixed per shader variant (cmake/shaders.cmake), so the
// branches above fold away. W_F16_STORAGE reads f16 through 16-bit storage.
#if defined(W_F16_STORAGE)
layout(buffer_reference, std430, buffer_reference_align = 2) readonly buffer weight_ref { float16_t v[]; };
float load_weight(weight_ref w, uint i) { return float(w.v[i]); }
// Elements i..i+7 as packed f16, i a multiple of 8 and w 16-byte aligned.
uvec4 load_weight8(weight_ref w, uint i) { return uvec4_ref(w).v[i / 8u]; }
#define WEIGHT4_DTYPE DTYPE_F16
#elif defined(W_DTYPE)
#define weight_ref word_ref
float load_weight(word_ref w, uint i) { return load_packed(w, W_DTYPE, i); }
#define WEIGHT4_DTYPE W_DTYPE
#endif

#ifdef WEIGHT4_DTYPE
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer uvec2_ref { uvec2 v[]; };

// Elements i..i+3, i a multiple of 4 and w aligned to four elements (16
// bytes for f32): one load of 16, 8 or 4 bytes rather than four.
vec4 load_weight4(weight_ref w, uint i)
{
    if (WEIGHT4_DTYPE == DTYPE_F32) return vec4_ref(w).v[i / 4u];
    if (WEIGHT4_DTYPE == DTYPE_F16 || WEIGHT4_DTYPE == DTYPE_BF16) {
        uvec2 u = uvec2_ref(w).v[i / 4u];
        if (WEIGHT4_DTYPE == DTYPE_F16) return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
        return uintBitsToFloat(uvec4(u.x << 16, u.x & 0xffff0000u, u.y << 16, u.y & 0xffff0000u));
    }
    return vec4(load_weight(w, i), load_weight(w, i + 1u), load_weight(w, i + 2u), load_weight(w, i + 3u));
}
#endif
