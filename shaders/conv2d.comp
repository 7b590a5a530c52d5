#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "weights.glsl"

// x (N,C,H,W) * w (O,C,KH,KW) + bias (O) -> y (N,O,OH,OW), zero padding.
// A GEMM whose rows are output pixels m = (n, oy, ox), columns output
// channels o, and whose reduction runs over k = (c, ky, kx):
//   - the f32 GEMM (gemm.glsl) is an implicit one: it reads x where an im2col
//     matrix would hold it, without ever building that matrix;
//   - the tensor-core GEMM (GEMM_COOPMAT) reads a column matrix that
//     im2col.comp built in f16 for rows [m_first, m_first + M) (the host
//     works through a large conv in such row ranges; x holds the column
//     matrix's address then): its rows run along K and are 16-byte aligned,
//     so it loads them as it loads weights, 8 f16 at a time, where gathering
//     f32 pixels one k at a time held it to half a matmul's speed.
layout(push_constant) uniform conv2d_push {
    f32_ref x;
    weight_ref w;
    word_ref bias;
    f32_ref y;
    int N, C, H, W;  // kiln_conv2d_params
    int O, KH, KW;
    int stride, pad;
    int OH, OW;
    uint w_first, bias_first; // see load_packed
    uint bias_dtype;
    uint rows_aligned; // w rows start on 16 bytes, K % 8 == 0 (gemm.glsl)
    uint m_first, m_count; // the tensor-core GEMM's output pixels (the column matrix's rows)
    f32_ref partial; // gemm_split: see gemm.glsl
    uint splits, k_chunk, split_pass;
} pc;

#ifndef GEMM_COOPMAT
#define A_ALONG_M
#endif
#define C_ALONG_M
#include "gemm.glsl"

#ifdef GEMM_COOPMAT
// The column matrix: f16 rows of K rounded up to 8 (its stride), zero beyond K.
uint a_stride() { return (uint(pc.C * pc.KH * pc.KW) + 7u) & ~7u; }
uint b_stride() { return uint(pc.C * pc.KH * pc.KW); }
uint a_index(uint m, uint k) { return m * a_stride() + k; }
uint b_index(uint o, uint k) { return pc.w_first + o * b_stride() + k; }

float load_a(uint m, uint k) { return load_weight(weight_ref(pc.x), a_index(m, k)); }
uvec4 load_a8(uint m, uint k) { return load_weight8(weight_ref(pc.x), a_index(m, k)); }
uvec4 load_b8(uint o, uint k) { return load_weight8(pc.w, b_index(o, k)); }
#ifdef GEMM_WORKGROUP
f16_rows a_rows() { return f16_rows(pc.x); }
f16_rows b_rows() { return f16_rows(pc.w); }
#endif
#else
vec4 load_b4(uint o, uint k) { return load_weight4(pc.w, pc.w_first + o * uint(pc.C * pc.KH * pc.KW) + k); }
// Per row of the tile (a_row_setup): where its image starts in x and the
// input coordinates of its kernel window's top-left corner.
shared uint row_image[BM];
shared int row_iy0[BM], row_ix0[BM];

void a_row_setup(uint m)
{
    uint ohw = uint(pc.OH * pc.OW);
    uint n = m / ohw, p = m % ohw, r = m % BM;
    row_image[r] = n * uint(pc.C * pc.H * pc.W);
    row_iy0[r] = int(p / uint(pc.OW)) * pc.stride - pc.pad;
    row_ix0[r] = int(p % uint(pc.OW)) * pc.stride - pc.pad;
}

// Per k (set by a_k_setup, advanced by a_k_step): its input channel's offset
// within an image and its tap's offsets from the window's top-left corner.
uint k_channel;
int k_dy, k_dx;

void a_k_setup(uint k)
{
    uint taps = uint(pc.KH * pc.KW);
    uint tap = k % taps;
    k_channel = (k / taps) * uint(pc.H * pc.W);
    k_dy = int(tap / uint(pc.KW));
    k_dx = int(tap % uint(pc.KW));
}

// k runs over (c, ky, kx) with kx fastest.
void a_k_step()
{
    if (++k_dx < pc.KW) return;
    k_dx = 0;
    if (++k_dy < pc.KH) return;
    k_dy = 0;
    k_channel += uint(pc.H * pc.W);
}

float load_a(uint m, uint k)
{
    uint r = m % BM;
    int iy = row_iy0[r] + k_dy, ix = row_ix0[r] + k_dx;
    if (iy < 0 || iy >= pc.H || ix < 0 || ix >= pc.W) return 0.0;
    return pc.x.v[row_image[r] + k_channel + uint(iy) * uint(pc.W) + uint(ix)];
}
#endif

bool rows_aligned() { return pc.rows_aligned != 0; }
float load_b(uint o, uint k) { return load_weight(pc.w, pc.w_first + o * uint(pc.C * pc.KH * pc.KW) + k); }

// y's index of output pixel m (of this range) in channel o.
uint y_index(uint m, uint o)
{
    uint ohw = uint(pc.OH * pc.OW);
    m += pc.m_first;
    return ((m / ohw) * uint(pc.O) + o) * ohw + m % ohw;
}

float bias(uint o) { return load_packed(pc.bias, pc.bias_dtype, pc.bias_first + o); }
void store_c(uint m, uint o, float v) { pc.y.v[y_index(m, o)] = v + bias(o); }
// Pixels m..m+3 of channel o: neighbours in y where an image's pixels come in
// fours (m_first and m are multiples of 4, so the four share an image).
void store_c4(uint m, uint o, vec4 v, uint count)
{
    if (uint(pc.OH * pc.OW) % 4u == 0u && aligned16(pc.y)) {
        store4(pc.y, true, y_index(m, o), count, v + bias(o));
        return;
    }
    [[unroll]] for (uint c = 0; c < 4u; c++)
        if (c < count) store_c(m + c, o, v[c]);
}

#ifdef GEMM_COOPMAT
void main() { gemm_main(pc.m_count, uint(pc.O), uint(pc.C * pc.KH * pc.KW)); }
#else
void main() { gemm_main(uint(pc.N * pc.OH * pc.OW), uint(pc.O), uint(pc.C * pc.KH * pc.KW)); }
#endif
