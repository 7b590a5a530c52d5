#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// q (B,Tq,H*D), k (B,Tk,H*D), v (B,Tk,H*D) -> o (B,Tq,H*D),
// o = softmax(q k^T * scale) v for each head, keys j <= i only if causal.
//
// Flash-style: a workgroup owns ROWS query rows of one (b, h) and walks the
// keys COLS at a time. Per key tile it stages K in shared memory, computes
// the ROWS x COLS scores, folds them into each row's running max and sum
// (online softmax: earlier partial sums are rescaled by exp(old max - new
// max)), stages V in the same shared buffer and accumulates P V into the
// output rows, which stay in registers. The full score matrix never exists.
//
// HEAD_DIM, ROWS and COLS are specialization constants: the host builds one
// pipeline per head dim and picks the largest tiles that fit the device's
// shared memory (vulkan_ops.c, attention_tiles).
layout(local_size_x = 128) in;
layout(constant_id = 0) const uint HEAD_DIM = 64;
layout(constant_id = 1) const uint ROWS = 32;
layout(constant_id = 2) const uint COLS = 32;
const uint THREADS = 128;
const uint STRIDE = HEAD_DIM + 1; // odd row stride: column walks hit distinct banks
const uint OUT_PER_THREAD = (ROWS * HEAD_DIM + THREADS - 1) / THREADS;

layout(push_constant) uniform attention_push {
    f32_ref q;
    f32_ref k;
    f32_ref v;
    f32_ref o;
    int B, H, Tq, Tk, D; // kiln_attention_params (D == HEAD_DIM)
    float scale;
    int causal;
} pc;

shared float q_tile[ROWS * STRIDE];  // this workgroup's query rows, pre-scaled
shared float kv_tile[COLS * STRIDE]; // the key tile, then the value tile
shared float p_tile[ROWS * COLS];    // scores, then probabilities
shared float row_max[ROWS];
shared float row_sum[ROWS];
shared float row_rescale[ROWS];

void stage_kv(f32_ref src, uint base, uint j0, uint tk, uint row_stride)
{
    for (uint e = gl_LocalInvocationID.x; e < COLS * HEAD_DIM; e += THREADS) {
        uint c = e / HEAD_DIM, d = e % HEAD_DIM;
        uint j = j0 + c;
        kv_tile[c * STRIDE + d] = j < tk ? src.v[base + j * row_stride + d] : 0.0;
    }
}

void main()
{
    const float neg_inf = -1.0 / 0.0;
    uint t = gl_LocalInvocationID.x;
    uint tq = uint(pc.Tq), tk = uint(pc.Tk);
    uint i0 = gl_WorkGroupID.x * ROWS;
    uint b = gl_WorkGroupID.y / uint(pc.H), h = gl_WorkGroupID.y % uint(pc.H);
    uint row_stride = uint(pc.H) * HEAD_DIM;
    uint q_base = b * tq * row_stride + h * HEAD_DIM; // + i * row_stride + d
    uint kv_base = b * tk * row_stride + h * HEAD_DIM;

    for (uint e = t; e < ROWS * HEAD_DIM; e += THREADS) {
        uint r = e / HEAD_DIM, d = e % HEAD_DIM;
        uint i = i0 + r;
        q_tile[r * STRIDE + d] = i < tq ? pc.q.v[q_base + i * row_stride + d] * pc.scale : 0.0;
    }
    if (t < ROWS) {
        row_max[t] = neg_inf;
        row_sum[t] = 0.0;
    }
    float acc[OUT_PER_THREAD]; // output element t + THREADS * r of the ROWS x HEAD_DIM block
    for (uint r = 0; r < OUT_PER_THREAD; r++) acc[r] = 0.0;

    uint key_end = pc.causal != 0 ? min(tk, i0 + ROWS) : tk;
    for (uint j0 = 0; j0 < key_end; j0 += COLS) {
        barrier(); // the previous tile's V and P are no longer read
        stage_kv(pc.k, kv_base, j0, tk, row_stride);
        barrier();

        for (uint e = t; e < ROWS * COLS; e += THREADS) {
            uint r = e / COLS, c = e % COLS;
            uint i = i0 + r, j = j0 + c;
            float s = neg_inf;
            if (j < tk && (pc.causal == 0 || j <= i)) {
                s = 0.0;
                for (uint d = 0; d < HEAD_DIM; d++) s = fma(q_tile[r * STRIDE + d], kv_tile[c * STRIDE + d], s);
            }
            p_tile[e] = s;
        }
        barrier();

        // One invocation per row folds the tile into the running softmax,
        // while the others stage V.
        if (t < ROWS) {
            float old_max = row_max[t], new_max = old_max;
            for (uint c = 0; c < COLS; c++) new_max = max(new_max, p_tile[t * COLS + c]);
            float rescale = new_max == neg_inf ? 1.0 : exp(old_max - new_max);
            float sum = 0.0;
            for (uint c = 0; c < COLS; c++) {
                float s = p_tile[t * COLS + c];
                float p = s == neg_inf ? 0.0 : exp(s - new_max);
                p_tile[t * COLS + c] = p;
                sum += p;
            }
            row_max[t] = new_max;
            row_sum[t] = row_sum[t] * rescale + sum;
            row_rescale[t] = rescale;
        }
        stage_kv(pc.v, kv_base, j0, tk, row_stride);
        barrier();

        for (uint r = 0; r < OUT_PER_THREAD; r++) {
            uint e = t + THREADS * r;
            if (e >= ROWS * HEAD_DIM) break;
            uint row = e / HEAD_DIM, d = e % HEAD_DIM;
            float a = acc[r] * row_rescale[row];
            for (uint c = 0; c < COLS; c++) a = fma(p_tile[row * COLS + c], kv_tile[c * STRIDE + d], a);
            acc[r] = a;
        }
    }

    for (uint r = 0; r < OUT_PER_THREAD; r++) {
        uint e = t + THREADS * r;
        if (e >= ROWS * HEAD_DIM) break;
        uint row = e / HEAD_DIM, d = e % HEAD_DIM;
        uint i = i0 + row;
        if (i < tq) pc.o.v[q_base + i * row_stride + d] = acc[r] / row_sum[row];
    }
}
