#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#ifndef ATTENTION_SUBGROUPS
#define ATTENTION_SUBGROUPS 4
#endif
#define CM_ROW_OPS (32 * ATTENTION_SUBGROUPS)
#include "coopmat.glsl"

// q (B,Tq,H*D), k (B,Tk,H*D), v (B,Tk,H*D) -> o (B,Tq,H*D),
// o = softmax(q k^T * scale) v for each head, keys j <= i only if causal:
// attention_coopmat.comp's operation with the softmax in registers, as
// FlashAttention-2 does it in CUDA. That shader takes every tile of scores
// out to shared memory and back, because a cooperative matrix does not say
// which of its elements a lane holds; here each lane learns that once, from
// products whose elements are their own row and column numbers
// (coopmat.glsl, CM_ROW_OPS), and
// then scales, masks and exponentiates its own elements, reduces rows over
// its quad, rescales the output fragments element by element, and turns the
// scores' fragments into P's A operands without leaving registers. Shared
// memory holds only K and V, and a key tile costs two barriers.
//
// That needs NVIDIA's layout (each row's elements in one quad), which the
// host checks on the device when it opens it, and 16x16x16 multiplies
// through VK_NV_cooperative_matrix, whose matrices may change from
// accumulator to operand; the host runs attention_coopmat.comp elsewhere
// (another layout, 16x8x16, the KHR extension) and for head dims whose
// tiles do not fit here (attention_registers_shared_bytes in vulkan_ops.c).
//
// A workgroup of 4 subgroups owns 64 query rows of one (b, h) (with
// ATTENTION_SUBGROUPS=8, 128 rows: every K and V tile serves twice the
// queries, as in kernels/attention.cu; the host times the two), subgroup s
// rows 16 s .. 16 s + 15, their queries rounded to f16 and held as A
// fragments (attention_tiles.glsl); the head dim is padded with zeros to
// DP, a multiple of 16. Keys go by in tiles of COLS, 64 up to head dim 64
// and 32 above (registers: the next tile's K or V is fetched into them while
// this one is multiplied).
// Per tile: K into shared memory, S = Q K^T in accumulators, the online
// softmax on them (row max and sum over the quad), the output so far scaled
// by exp(old max - new max), V into shared memory, O += P V. Scores are
// kept in base 2 (scaled by log2(e) with the score scale), so that each
// exponential is one exp2, the hardware's, with no multiply before it.
// Shared bytes: K and V 2 * COLS * (DP + 8) * 2, and coopmat.glsl's 1536
// for the row and column numbers (emulated, 4096 + 512 more for its
// scratch, twice that with 8 subgroups): 15872 for head dim 40 (20480
// emulated), 23040 for 160 (27648).
layout(constant_id = 0) const uint HEAD_DIM = 64;
layout(constant_id = 1) const bool QUAD_ROWS = false;
const uint DP = (HEAD_DIM + 15u) / 16u * 16u;
const uint KD = DP / 16u; // 16-wide head-dim chunks
const uint COLS = DP <= 64u ? 64u : 32u; // keys per tile
const uint KEY_BLOCKS = COLS / 16u;
const uint KV_LD = DP + 8u; // f16 row stride, a multiple of 16 bytes
#include "attention_tiles.glsl"

shared float16_t k_tile[COLS * KV_LD]; // (COLS, DP): queries at the start, then keys
shared float16_t v_tile[COLS * KV_LD];

void main()
{
    const float neg_inf = -1.0 / 0.0;
    uint tq = uint(pc.Tq), tk = uint(pc.Tk);
    uint sg = CM_SUBGROUP;
    place_workgroup();

    // Which row and column of an accumulator each of this lane's elements is.
    cm_numbers_fill();
    barrier();
    cm_acc row_of, col_of;
    CM_ELEMENT_NUMBERS(row_of, col_of);

    cm_a q_frag[KD];
    LOAD_QUERIES(q_frag, k_tile, q_base, i0, tq, row_stride, sg);

    // The softmax state of this lane's two rows, 16 sg + lane / 4 (low) and
    // that + 8 (high), which its quad shares.
    float max_lo = neg_inf, max_hi = neg_inf, sum_lo = 0.0, sum_hi = 0.0;
    float scale_log2 = pc.scale * 1.4426950408889634; // log2(e)
    cm_acc out_frag[KD];
    CM_LOOP for (uint kd = 0; kd < KD; kd++) CM_ZERO(out_frag[kd]);

    uint key_end = pc.causal != 0 ? min(tk, i0 + ROWS) : tk;
    if (QUAD_ROWS) fetch_rows(pc.k, kv_base, 0u, tk, row_stride);
    for (uint j0 = 0; j0 < key_end; j0 += COLS) {
        // Every subgroup multiplied the previous keys before the barrier
        // that put the previous values in: k_tile is free.
        if (QUAD_ROWS) {
            PUT_ROWS(k_tile);
            fetch_rows(pc.v, kv_base, j0, tk, row_stride);
        } else {
            STAGE(k_tile, pc.k, kv_base, j0, tk, row_stride);
        }
        barrier();

        cm_acc s[KEY_BLOCKS];
        [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++) {
            CM_ZERO(s[n]);
            CM_LOOP for (uint kd = 0; kd < KD; kd++) {
                cm_b keys;
                CM_LOAD_B(keys, k_tile, n * 16u * KV_LD + kd * 16u, KV_LD, true);
                CM_MUL_ADD(s[n], q_frag[kd], keys);
            }
        }

        // Scale and mask (only a tile past the keys' end or a causal one has
        // anything to mask), and this tile's max of each row.
        bool masking = j0 + COLS > tk || pc.causal != 0;
        float tile_lo = neg_inf, tile_hi = neg_inf;
        [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++)
            [[unroll]] for (uint e = 0; e < CM_ACC_LENGTH(s[n]); e++) {
                float x = CM_ACC_AT(s[n], e) * scale_log2;
                uint row = uint(CM_ACC_AT(row_of, e));
                if (masking) {
                    uint j = j0 + 16u * n + uint(CM_ACC_AT(col_of, e)), i = i0 + sg * 16u + row;
                    if (j >= tk || (pc.causal != 0 && j > i)) x = neg_inf;
                }
                CM_ACC_AT(s[n], e) = x;
                bool hi = row >= 8u;
                tile_lo = hi ? tile_lo : max(tile_lo, x);
                tile_hi = hi ? max(tile_hi, x) : tile_hi;
            }
        // Key 0 is in the first tile and visible to every row, so from then
        // on a row's max is finite; the guards keep exp2 from -inf - -inf.
        float new_lo = max(max_lo, cm_quad_max(tile_lo)), new_hi = max(max_hi, cm_quad_max(tile_hi));
        float rescale_lo = max_lo == neg_inf ? 0.0 : exp2(max_lo - new_lo);
        float rescale_hi = max_hi == neg_inf ? 0.0 : exp2(max_hi - new_hi);
        max_lo = new_lo;
        max_hi = new_hi;
        float part_lo = 0.0, part_hi = 0.0;
        [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++)
            [[unroll]] for (uint e = 0; e < CM_ACC_LENGTH(s[n]); e++) {
                float x = CM_ACC_AT(s[n], e);
                bool hi = CM_ACC_AT(row_of, e) >= 8.0;
                float p = x == neg_inf ? 0.0 : exp2(x - (hi ? new_hi : new_lo));
                CM_ACC_AT(s[n], e) = p;
                part_lo += hi ? 0.0 : p;
                part_hi += hi ? p : 0.0;
            }
        sum_lo = sum_lo * rescale_lo + cm_quad_sum(part_lo);
        sum_hi = sum_hi * rescale_hi + cm_quad_sum(part_hi);
        CM_LOOP for (uint kd = 0; kd < KD; kd++)
            [[unroll]] for (uint e = 0; e < CM_ACC_LENGTH(out_frag[kd]); e++)
                CM_ACC_AT(out_frag[kd], e) *= CM_ACC_AT(row_of, e) >= 8.0 ? rescale_hi : rescale_lo;
        cm_a probs[KEY_BLOCKS];
        [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++) { CM_TO_A(probs[n], s[n]); }

        // Every subgroup multiplied the previous values before this tile's
        // first barrier: v_tile is free.
        if (QUAD_ROWS) {
            PUT_ROWS(v_tile);
            if (j0 + COLS < key_end) fetch_rows(pc.k, kv_base, j0 + COLS, tk, row_stride);
        } else {
            STAGE(v_tile, pc.v, kv_base, j0, tk, row_stride);
        }
        barrier();
        CM_LOOP for (uint kd = 0; kd < KD; kd++)
            [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++) {
                cm_b values;
                CM_LOAD_B(values, v_tile, kb * 16u * KV_LD + kd * 16u, KV_LD, false);
                CM_MUL_ADD(out_frag[kd], probs[kb], values);
            }
    }

    // Divided by the row sums, straight from registers: a quad writes runs
    // of neighbouring columns of its rows.
    float inv_lo = 1.0 / sum_lo, inv_hi = 1.0 / sum_hi;
    CM_LOOP for (uint kd = 0; kd < KD; kd++)
        [[unroll]] for (uint e = 0; e < CM_ACC_LENGTH(out_frag[kd]); e++) {
            uint row = uint(CM_ACC_AT(row_of, e));
            uint qi = i0 + sg * 16u + row, d = kd * 16u + uint(CM_ACC_AT(col_of, e));
            if (qi < tq && d < HEAD_DIM)
                pc.o.v[q_base + qi * row_stride + d] = CM_ACC_AT(out_frag[kd], e) * (row >= 8u ? inv_hi : inv_lo);
        }
}
