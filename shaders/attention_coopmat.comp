#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "coopmat.glsl"

// q (B,Tq,H*D), k (B,Tk,H*D), v (B,Tk,H*D) -> o (B,Tq,H*D),
// o = softmax(q k^T * scale) v for each head, keys j <= i only if causal:
// attention.comp's operation on tensor cores (f16 compute), in
// FlashAttention-2's order.
//
// A workgroup of 4 subgroups owns 64 query rows of one (b, h); subgroup s
// owns rows 16 s .. 16 s + 15 and holds their queries, rounded to f16, as
// A fragments for the whole key loop (attention_tiles.glsl). The head dim is padded with zeros to
// DP, a multiple of 16. Keys go by in tiles of COLS; per tile:
//   - K is staged in shared memory as f16 (key rows, so it is the B operand
//     column-major) and S = Q K^T lands, in f32, in the subgroup's staging
//     area;
//   - softmax runs online on S in f32 (scale, mask, running max and sum);
//     lanes r and r + 16 take the two halves of row r's keys and trade their
//     maxima and sums through shared memory. P is written as f16;
//   - V replaces K in shared memory and P V is computed 16 head-dim columns
//     at a time. The output stays in f32 registers, 8 elements a lane per
//     16-column chunk (rows lane / 16 + 2 e, column lane % 16), because a
//     tile that raises a row's max must rescale that row, which a matrix
//     fragment cannot do; each chunk of P V passes through the staging area
//     and is added after the rescale.
// (Keeping the output in accumulator fragments instead, rescaled through
// shared memory only when a tile raised a row's max by more than 8, ran
// slower on an H100, 11.9 against 6.9 ms of attention a UNet step; and
// with the flag that said whether a tile must rescale, a shared uint array,
// the H100's driver gave NaN and wrong rows, even in a build where nothing
// read the flag: bench/RESULTS.md, session 12.)
// The score scale is applied to S in f32, not folded into the f16 queries.
//
// COLS is 32 for every head dim: a 64-key tile's f32 scores alone would
// take half of the 32 KiB of shared memory the tensor-core shaders may use
// (KILN_VK_COOPMAT_SHARED_BYTES). Shared bytes: K/V 32 (DP + 8) * 2, scores
// 64 * 36 * 4, probabilities 64 * 40 * 2, row state 1280: 19200 for head dim
// 40, 26368 for 160, 32512 for 256, the largest head dim the host sends
// here (vulkan_ops.c, attention_coopmat_shared_bytes, which mirrors this
// sum).
//
// Lavapipe ends a shader's loops after 65535 iterations in all: about
// 2.5 DP / 16 + 1 per key tile, so Tk up to about 80000 at head dim 160 when
// emulated. cm_subgroup_sync is called in workgroup-uniform control flow
// only (the emulation makes it a workgroup barrier).
layout(constant_id = 0) const uint HEAD_DIM = 64;
layout(constant_id = 1) const bool QUAD_ROWS = false;
const uint DP = (HEAD_DIM + 15u) / 16u * 16u;
const uint KD = DP / 16u; // 16-wide head-dim chunks
const uint COLS = 32;     // keys per tile
const uint KEY_BLOCKS = COLS / 16u;
const uint KV_LD = DP + 8u;  // f16 row strides, multiples of 16 bytes
const uint P_LD = COLS + 8u;
const uint S_LD = COLS + 4u; // f32: holds COLS / 16 chunks of P V too
#include "attention_tiles.glsl"

shared float16_t kv_tile[COLS * KV_LD]; // (COLS, DP): queries at the start, then keys, then values
shared float s_stage[ROWS * S_LD];      // (ROWS, COLS): scores, then chunks of P V; subgroup s owns 16 rows
shared float16_t p_tile[ROWS * P_LD];   // (ROWS, COLS): probabilities
shared float half_max[128];             // per invocation: its half of a row's tile max
shared float half_sum[128];             // and sum of probabilities
shared float row_scale[ROWS];           // exp(old max - new max) per row; at the end 1 / sum

void main()
{
    const float neg_inf = -1.0 / 0.0;
    uint tq = uint(pc.Tq), tk = uint(pc.Tk);
    uint sg = CM_SUBGROUP, lane = CM_LANE;
    place_workgroup();
    uint s_base = sg * 16u * S_LD, p_base = sg * 16u * P_LD;

    cm_a q_frag[KD];
    LOAD_QUERIES(q_frag, kv_tile, q_base, i0, tq, row_stride, sg);

    // Softmax state of row r: both of its lanes keep it.
    uint r = lane % 16u, side = lane / 16u;
    uint i = i0 + sg * 16u + r;
    float run_max = neg_inf, run_sum = 0.0;
    // Output: chunk c, element e is row lane / 16 + 2 e, column 16 c + lane % 16.
    float acc[KD * 8u];
    [[unroll]] for (uint e = 0; e < KD * 8u; e++) acc[e] = 0.0;

    uint key_end = pc.causal != 0 ? min(tk, i0 + ROWS) : tk;
    if (QUAD_ROWS) fetch_rows(pc.k, kv_base, 0u, tk, row_stride);
    for (uint j0 = 0; j0 < key_end; j0 += COLS) {
        barrier(); // the previous tile's values are read
        if (QUAD_ROWS) {
            PUT_ROWS(kv_tile);
        } else {
            STAGE(kv_tile, pc.k, kv_base, j0, tk, row_stride);
        }
        barrier();
        if (QUAD_ROWS) fetch_rows(pc.v, kv_base, j0, tk, row_stride);
        [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++) {
            cm_acc scores;
            CM_ZERO(scores);
            CM_LOOP for (uint kd = 0; kd < KD; kd++) {
                cm_b keys;
                CM_LOAD_B(keys, kv_tile, n * 16u * KV_LD + kd * 16u, KV_LD, true);
                CM_MUL_ADD(scores, q_frag[kd], keys);
            }
            CM_STORE(scores, s_stage, s_base + n * 16u, S_LD);
        }
        cm_subgroup_sync();

        float s[COLS / 2u]; // this lane's half of row r, scaled and masked
        float half_tile_max = neg_inf;
        [[unroll]] for (uint c = 0; c < COLS / 2u; c++) {
            uint col = side * (COLS / 2u) + c, j = j0 + col;
            bool visible = j < tk && (pc.causal == 0 || j <= i);
            s[c] = visible ? s_stage[s_base + r * S_LD + col] * pc.scale : neg_inf;
            half_tile_max = max(half_tile_max, s[c]);
        }
        half_max[sg * 32u + lane] = half_tile_max;
        cm_subgroup_sync();
        // Key 0 is in the first tile and visible to every row, so after it
        // run_max is finite; the guards keep exp away from -inf - -inf.
        float new_max = max(run_max, max(half_tile_max, half_max[sg * 32u + (lane ^ 16u)]));
        float rescale = run_max == neg_inf ? 0.0 : exp(run_max - new_max);
        float half_tile_sum = 0.0;
        [[unroll]] for (uint c = 0; c < COLS / 2u; c++) {
            float prob = s[c] == neg_inf ? 0.0 : exp(s[c] - new_max);
            p_tile[p_base + r * P_LD + side * (COLS / 2u) + c] = float16_t(prob);
            half_tile_sum += prob;
        }
        half_sum[sg * 32u + lane] = half_tile_sum;
        if (side == 0u) row_scale[sg * 16u + r] = rescale;
        cm_subgroup_sync();
        run_sum = run_sum * rescale + half_tile_sum + half_sum[sg * 32u + (lane ^ 16u)];
        run_max = new_max;

        barrier(); // every subgroup has read the keys
        if (QUAD_ROWS) {
            PUT_ROWS(kv_tile);
        } else {
            STAGE(kv_tile, pc.v, kv_base, j0, tk, row_stride);
        }
        barrier();
        if (QUAD_ROWS && j0 + COLS < key_end) fetch_rows(pc.k, kv_base, j0 + COLS, tk, row_stride);
        cm_a probs[KEY_BLOCKS];
        [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++) CM_LOAD_A(probs[n], p_tile, p_base + n * 16u, P_LD);
        float lane_scale[8]; // of this lane's output rows
        [[unroll]] for (uint e = 0; e < 8u; e++) lane_scale[e] = row_scale[sg * 16u + lane / 16u + 2u * e];
        // P V, as many 16-column chunks at a time as the staging area holds
        CM_LOOP for (uint c0 = 0; c0 < KD; c0 += KEY_BLOCKS) {
            [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++)
                if (c0 + n < KD) {
                    cm_acc pv;
                    CM_ZERO(pv);
                    [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++) {
                        cm_b values;
                        CM_LOAD_B(values, kv_tile, kb * 16u * KV_LD + (c0 + n) * 16u, KV_LD, false);
                        CM_MUL_ADD(pv, probs[kb], values);
                    }
                    CM_STORE(pv, s_stage, s_base + n * 16u, S_LD);
                }
            cm_subgroup_sync();
            [[unroll]] for (uint n = 0; n < KEY_BLOCKS; n++)
                if (c0 + n < KD)
                    [[unroll]] for (uint e = 0; e < 8u; e++) {
                        uint at = s_base + (lane / 16u + 2u * e) * S_LD + n * 16u + lane % 16u;
                        acc[(c0 + n) * 8u + e] = fma(acc[(c0 + n) * 8u + e], lane_scale[e], s_stage[at]);
                    }
            cm_subgroup_sync(); // read before the next chunks land
        }
    }

    // Out, divided by the row sums.
    if (side == 0u) row_scale[sg * 16u + r] = 1.0 / run_sum;
    cm_subgroup_sync();
    [[unroll]] for (uint e = 0; e < 8u; e++) {
        uint row = lane / 16u + 2u * e;
        uint qi = i0 + sg * 16u + row;
        float inv_sum = row_scale[sg * 16u + row];
        [[unroll]] for (uint c = 0; c < KD; c++) {
            uint d = c * 16u + lane % 16u;
            if (qi < tq && d < HEAD_DIM) pc.o.v[q_base + qi * row_stride + d] = acc[c * 8u + e] * inv_sum;
        }
    }
}
