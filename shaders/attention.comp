#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

// q (B,Tq,H*D), k (B,Tk,H*D), v (B,Tk,H*D) -> o (B,Tq,H*D),
// o = softmax(q k^T * scale) v for each head, keys j <= i only if causal.
//
// Flash-style: the full score matrix never exists. A workgroup owns 128
// query rows of one (b, h), one per invocation, and walks the keys COLS at a
// time, staging each K and then V tile in shared memory. An invocation keeps
// its row's pre-scaled query, output and running max and sum in registers
// (online softmax: the output so far is rescaled by exp(old max - new max)
// when a tile raises the max) and its scores for the tile in its own column
// of p_tile. Every invocation reads the same K or V element at the same
// time, so those reads are broadcasts, and no step waits on a reduction
// across invocations.
//
// Rows of K, V, q and the output are handled as vec4s (the head dim padded
// with zeros to a multiple of 4): a key's element read from shared memory
// serves every invocation at once, so shared reads, not FMAs, bound the
// loop, and one vec4 read feeds four FMAs where a float fed one.
//
// HEAD_DIM and COLS are specialization constants: one pipeline per head
// dim, with the largest key tile whose shared memory fits the device
// (vulkan_ops.c, attention_cols). Loops over the head dim are unrolled, so q
// and acc live in registers; loops over a tile's keys index nothing private
// and may stay loops. Both matter on lavapipe, whose compile time grows fast
// with unrolled code and which ends a shader's loops after 65535 iterations
// in all: here that is 3 Tk, so Tk up to about 20000.
layout(local_size_x = 128) in;
layout(constant_id = 0) const uint HEAD_DIM = 64;
layout(constant_id = 1) const uint COLS = 32; // keys per tile
const uint ROWS = 128;
const uint D4 = (HEAD_DIM + 3u) / 4u; // vec4s per row

layout(push_constant) uniform attention_push {
    f32_ref q;
    f32_ref k;
    f32_ref v;
    f32_ref o;
    int B, H, Tq, Tk, D; // kiln_attention_params (D == HEAD_DIM)
    float scale;
    int causal;
} pc;

shared vec4 kv_tile[COLS * D4];   // keys, then values: (COLS, D4)
shared float p_tile[COLS * ROWS]; // scores, then probabilities: (COLS, ROWS)

void stage(f32_ref src, uint base, uint j0, uint tk, uint row_stride)
{
    [[unroll]] for (uint r = 0; r < (COLS * D4 * 4u + ROWS - 1) / ROWS; r++) {
        uint e = gl_LocalInvocationID.x + ROWS * r;
        uint c = e / (D4 * 4u), d = e % (D4 * 4u);
        uint j = j0 + c;
        if (e < COLS * D4 * 4u) kv_tile[c * D4 + d / 4u][d % 4u] = j < tk && d < HEAD_DIM ? src.v[base + j * row_stride + d] : 0.0;
    }
}

void main()
{
    const float neg_inf = -1.0 / 0.0;
    uint tq = uint(pc.Tq), tk = uint(pc.Tk);
    uint i0 = gl_WorkGroupID.x * ROWS;
    uint lane = gl_LocalInvocationID.x;
    uint i = i0 + lane; // this invocation's query
    uint b = gl_WorkGroupID.y / uint(pc.H), h = gl_WorkGroupID.y % uint(pc.H);
    uint row_stride = uint(pc.H) * HEAD_DIM;
    uint q_base = b * tq * row_stride + h * HEAD_DIM; // + i * row_stride + d
    uint kv_base = b * tk * row_stride + h * HEAD_DIM;

    vec4 q[D4], acc[D4];
    [[unroll]] for (uint dd = 0; dd < D4; dd++) {
        [[unroll]] for (uint c = 0; c < 4u; c++) {
            uint d = 4u * dd + c;
            q[dd][c] = i < tq && d < HEAD_DIM ? pc.q.v[q_base + i * row_stride + d] * pc.scale : 0.0;
        }
        acc[dd] = vec4(0.0);
    }
    float run_max = neg_inf, run_sum = 0.0;

    uint key_end = pc.causal != 0 ? min(tk, i0 + ROWS) : tk;
    for (uint j0 = 0; j0 < key_end; j0 += COLS) {
        barrier(); // the previous tile's values are no longer read
        stage(pc.k, kv_base, j0, tk, row_stride);
        barrier();

        float tile_max = neg_inf;
        for (uint c = 0; c < COLS; c++) {
            vec4 s4 = vec4(0.0);
            [[unroll]] for (uint dd = 0; dd < D4; dd++) s4 = fma(q[dd], kv_tile[c * D4 + dd], s4);
            float s = (s4.x + s4.y) + (s4.z + s4.w);
            uint j = j0 + c;
            s = j < tk && (pc.causal == 0 || j <= i) ? s : neg_inf;
            p_tile[c * ROWS + lane] = s;
            tile_max = max(tile_max, s);
        }
        // Key 0 is in the first tile and visible to every row, so after it
        // run_max is finite; the guards keep exp away from -inf - -inf.
        float new_max = max(run_max, tile_max);
        float rescale = run_max == neg_inf ? 0.0 : exp(run_max - new_max);
        float tile_sum = 0.0;
        for (uint c = 0; c < COLS; c++) {
            float s = p_tile[c * ROWS + lane];
            float prob = s == neg_inf ? 0.0 : exp(s - new_max);
            p_tile[c * ROWS + lane] = prob;
            tile_sum += prob;
        }
        run_max = new_max;
        run_sum = run_sum * rescale + tile_sum;
        [[unroll]] for (uint dd = 0; dd < D4; dd++) acc[dd] *= rescale;

        barrier(); // keys read
        stage(pc.v, kv_base, j0, tk, row_stride);
        barrier();
        for (uint c = 0; c < COLS; c++) {
            float prob = p_tile[c * ROWS + lane];
            [[unroll]] for (uint dd = 0; dd < D4; dd++) acc[dd] = fma(vec4(prob), kv_tile[c * D4 + dd], acc[dd]);
        }
    }

    if (i < tq)
        [[unroll]] for (uint d = 0; d < HEAD_DIM; d++) pc.o.v[q_base + i * row_stride + d] = acc[d / 4u][d % 4u] / run_sum;
}
