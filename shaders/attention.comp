#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

// q (B,Tq,H*D), k (B,Tk,H*D), v (B,Tk,H*D) -> o (B,Tq,H*D),
// o = softmax(q k^T * scale + bias) v for each head, keys j <= i only if
// causal; the bias (H,Tq,Tk), T5's relative positions, is optional (the
// same for every batch element) and only this shader takes it: the host
// sends a biased attention here in every compute mode.
//
// Flash-style: the full score matrix never exists. A workgroup owns 128 /
// SPLIT query rows of one (b, h) and walks the keys COLS at a time, staging
// each K and then V tile in shared memory. SPLIT neighbouring invocations
// share a row, each keeping a slice of its head dim (DS4 vec4s) of the
// pre-scaled query and of the output in registers, with the row's running
// max and sum (online softmax: the output so far is rescaled by
// exp(old max - new max) when a tile raises the max). Every invocation reads
// the same K or V element at the same time, so those reads are broadcasts.
//
// SPLIT (1, 2, 4 or 8, the host's choice) keeps a slice at 16 vec4s or
// fewer: query and output in registers take 2 D floats per invocation, and
// past 128 an H200 showed what spills look like (19 TFLOP/s at head dims 40
// and 64 against 3 to 6 at 80 to 160 with SPLIT 1). With SPLIT > 1 each
// invocation writes its partial scores for the tile to p_tile, and after a
// barrier each sums its row's partials in the same order, so all SPLIT
// compute the same scores; part 0 writes the row's probabilities to
// prob_tile.
//
// Rows of K, V, q and the output are handled as vec4s (the head dim padded
// with zeros to a multiple of 4): a key's element read from shared memory
// serves every invocation at once, so shared reads, not FMAs, bound the
// loop, and one vec4 read feeds four FMAs where a float fed one.
//
// HEAD_DIM, COLS and SPLIT are specialization constants: one pipeline per
// head dim, with the largest key tile whose shared memory fits the device
// (vulkan_ops.c, attention_shape). Loops over the head dim are unrolled, so
// q and acc live in registers; loops over a tile's keys index nothing
// private and may stay loops. Both matter on lavapipe, whose compile time
// grows fast with unrolled code and which ends a shader's loops after 65535
// iterations in all (test_vulkan_backend runs 20000 keys).
layout(local_size_x = 128) in;
layout(constant_id = 0) const uint HEAD_DIM = 64;
layout(constant_id = 1) const uint COLS = 32; // keys per tile
layout(constant_id = 2) const uint SPLIT = 1; // invocations per query row
const uint THREADS = 128;
const uint ROWS = THREADS / SPLIT;
const uint D4 = (HEAD_DIM + 3u) / 4u;        // vec4s per row
const uint DS4 = (D4 + SPLIT - 1u) / SPLIT;  // of them, per invocation

layout(push_constant) uniform attention_push {
    f32_ref q;
    f32_ref k;
    f32_ref v;
    f32_ref o;
    int B, H, Tq, Tk, D; // kiln_attention_params (D == HEAD_DIM)
    float scale;
    int causal;
    int has_bias;
    f32_ref bias;
} pc;

shared vec4 kv_tile[COLS * D4];          // keys, then values: (COLS, D4)
shared float p_tile[COLS * THREADS];     // per invocation: (partial) scores, with SPLIT 1 then probabilities
shared float prob_tile[COLS * (SPLIT > 1u ? ROWS : 1u)]; // with SPLIT > 1, per row: probabilities

void stage(f32_ref src, uint base, uint j0, uint tk, uint row_stride)
{
    [[unroll]] for (uint r = 0; r < (COLS * D4 * 4u + THREADS - 1) / THREADS; r++) {
        uint e = gl_LocalInvocationID.x + THREADS * r;
        uint c = e / (D4 * 4u), d = e % (D4 * 4u);
        uint j = j0 + c;
        if (e < COLS * D4 * 4u) kv_tile[c * D4 + d / 4u][d % 4u] = j < tk && d < HEAD_DIM ? src.v[base + j * row_stride + d] : 0.0;
    }
}

// This invocation's score for key c of the tile: with SPLIT > 1 the sum of
// its row's partials, in the same order for every part; then the bias of
// (query i, key j) for head h, when there is one (rows past Tq, never
// written, score without it).
float score(uint c, uint first, uint h, uint i, uint j)
{
    float s = 0.0;
    if (SPLIT == 1u)
        s = p_tile[c * THREADS + first];
    else
        [[unroll]] for (uint p = 0; p < SPLIT; p++) s += p_tile[c * THREADS + first + p];
    if (pc.has_bias != 0 && i < uint(pc.Tq)) s += pc.bias.v[(h * uint(pc.Tq) + i) * uint(pc.Tk) + j];
    return s;
}

void main()
{
    const float neg_inf = -1.0 / 0.0;
    uint tq = uint(pc.Tq), tk = uint(pc.Tk);
    uint i0 = gl_WorkGroupID.x * ROWS;
    uint lane = gl_LocalInvocationID.x, row = lane / SPLIT, part = lane % SPLIT;
    uint first = lane - part; // the row's part 0
    uint i = i0 + row;        // this invocation's query
    uint b = gl_WorkGroupID.y / uint(pc.H), h = gl_WorkGroupID.y % uint(pc.H);
    uint row_stride = uint(pc.H) * HEAD_DIM;
    uint q_base = b * tq * row_stride + h * HEAD_DIM; // + i * row_stride + d
    uint kv_base = b * tk * row_stride + h * HEAD_DIM;
    uint dd0 = part * DS4; // this invocation's slice: vec4s dd0 .. dd0 + DS4 - 1 of the row

    vec4 q[DS4], acc[DS4];
    [[unroll]] for (uint u = 0; u < DS4; u++) {
        [[unroll]] for (uint c = 0; c < 4u; c++) {
            uint d = 4u * (dd0 + u) + c;
            q[u][c] = i < tq && d < HEAD_DIM ? pc.q.v[q_base + i * row_stride + d] * pc.scale : 0.0;
        }
        acc[u] = vec4(0.0);
    }
    float run_max = neg_inf, run_sum = 0.0;

    uint key_end = pc.causal != 0 ? min(tk, i0 + ROWS) : tk;
    for (uint j0 = 0; j0 < key_end; j0 += COLS) {
        barrier(); // the previous tile's values are no longer read
        stage(pc.k, kv_base, j0, tk, row_stride);
        barrier();

        for (uint c = 0; c < COLS; c++) {
            vec4 s4 = vec4(0.0);
            [[unroll]] for (uint u = 0; u < DS4; u++)
                if (dd0 + u < D4) s4 = fma(q[u], kv_tile[c * D4 + dd0 + u], s4);
            p_tile[c * THREADS + lane] = (s4.x + s4.y) + (s4.z + s4.w);
        }
        if (SPLIT > 1u) barrier(); // the row's partial scores are written

        float tile_max = neg_inf;
        for (uint c = 0; c < COLS; c++) {
            uint j = j0 + c;
            float s = j < tk && (pc.causal == 0 || j <= i) ? score(c, first, h, i, j) : neg_inf;
            tile_max = max(tile_max, s);
        }
        // Key 0 is in the first tile and visible to every row, so after it
        // run_max is finite; the guards keep exp away from -inf - -inf.
        float new_max = max(run_max, tile_max);
        float rescale = run_max == neg_inf ? 0.0 : exp(run_max - new_max);
        float tile_sum = 0.0;
        for (uint c = 0; c < COLS; c++) {
            uint j = j0 + c;
            float s = j < tk && (pc.causal == 0 || j <= i) ? score(c, first, h, i, j) : neg_inf;
            float prob = s == neg_inf ? 0.0 : exp(s - new_max);
            if (SPLIT == 1u)
                p_tile[c * THREADS + lane] = prob;
            else if (part == 0u)
                prob_tile[c * ROWS + row] = prob;
            tile_sum += prob;
        }
        run_max = new_max;
        run_sum = run_sum * rescale + tile_sum;
        [[unroll]] for (uint u = 0; u < DS4; u++) acc[u] *= rescale;

        barrier(); // keys read, probabilities written
        stage(pc.v, kv_base, j0, tk, row_stride);
        barrier();
        for (uint c = 0; c < COLS; c++) {
            float prob = SPLIT == 1u ? p_tile[c * THREADS + lane] : prob_tile[c * ROWS + row];
            [[unroll]] for (uint u = 0; u < DS4; u++)
                if (dd0 + u < D4) acc[u] = fma(vec4(prob), kv_tile[c * D4 + dd0 + u], acc[u]);
        }
    }

    if (i < tq)
        [[unroll]] for (uint u = 0; u < DS4; u++)
            [[unroll]] for (uint c = 0; c < 4u; c++) {
                uint d = 4u * (dd0 + u) + c;
                if (d < HEAD_DIM) pc.o.v[q_base + i * row_stride + d] = acc[u][c] / run_sum;
            }
}
