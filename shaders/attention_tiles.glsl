// What the tensor-core attentions (attention_coopmat.comp, with the softmax
// through shared memory, and attention_registers.comp, in registers) share:
// their operands, a workgroup of ATTENTION_SUBGROUPS subgroups (4, or 8
// for attention_registers.comp's variant of 128 rows) owning 16 query rows
// each of one (b, h), and the moving of rows of Q, K and V into f16 tiles in shared
// memory. Q, K and V arrive as f16 copies the host made (f16_copy.comp), as
// CUDA's attention packs them before its kernel: every workgroup of a head
// reads all of its K and V, so in f16 that traffic halves, and the copies'
// rows need no conversion on the way into the tiles. The including shader
// defines, before this:
//   HEAD_DIM, QUAD_ROWS  specialization constants 0 and 1 (the head dim;
//                        whether it is a multiple of 4, so that rows are
//                        read four f16, 8 bytes, at a time)
//   DP                   the head dim padded to a multiple of 16
//   COLS                 rows a tile takes, so that COLS * DP is a multiple
//                        of 512
//   KV_LD                a tile's row stride in f16, a multiple of 8
// A tile is a shared float16_t array of COLS rows; rows of the source past
// `rows` and columns past HEAD_DIM go in as zeros.
//
// Every loop over fragments, output registers or a tile's keys is unrolled
// once HEAD_DIM is known: fragments indexed by a run-time counter would live
// in memory. Emulated, the loops over the head dim's chunks (CM_LOOP,
// coopmat.glsl) stay loops.

#ifndef ATTENTION_SUBGROUPS
#define ATTENTION_SUBGROUPS 4
#endif
const uint THREADS = 32u * ATTENTION_SUBGROUPS;
layout(local_size_x = THREADS) in;
const uint ROWS = 16u * ATTENTION_SUBGROUPS; // queries per workgroup, 16 per subgroup

#extension GL_EXT_shader_16bit_storage : require
layout(buffer_reference, std430, buffer_reference_align = 2) readonly buffer f16_ref { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer f16x4_ref { uvec2 v[]; };

layout(push_constant) uniform attention_push {
    f16_ref q; // the f16 copies
    f16_ref k;
    f16_ref v;
    f32_ref o;
    int B, H, Tq, Tk, D; // kiln_attention_params (D == HEAD_DIM)
    float scale;
    int causal;
} pc;

// This workgroup's place: query rows from i0 of one head of one batch
// element, whose rows are row_stride elements apart in every operand; its
// queries and output start at q_base, its keys and values at kv_base.
uint i0, row_stride, q_base, kv_base;
void place_workgroup()
{
    uint b = gl_WorkGroupID.y / uint(pc.H), h = gl_WorkGroupID.y % uint(pc.H);
    i0 = gl_WorkGroupID.x * ROWS;
    row_stride = uint(pc.H) * HEAD_DIM;
    q_base = b * uint(pc.Tq) * row_stride + h * HEAD_DIM;
    kv_base = b * uint(pc.Tk) * row_stride + h * HEAD_DIM;
}

// With QUAD_ROWS, rows are read four f16 at a time in two halves:
// fetch_rows into registers, PUT_ROWS into a tile later, so that the next
// operand is on its way from memory while this one is multiplied. Each
// pipeline carries one way of loading.
const uint QUADS = DP / 4u; // runs of four per row
// per invocation and tile, the last one by only some where THREADS does not
// divide a tile's runs (COLS * DP is a multiple of 512: one of 256 does)
const uint QUAD_LOADS = (COLS * QUADS + THREADS - 1u) / THREADS;
const bool QUADS_WHOLE = COLS * QUADS % THREADS == 0u;
uvec2 rows_next[QUAD_LOADS];

// Rows row0 .. row0 + COLS - 1 of one head of a (T, H*D) operand that
// starts at `base`, rows `row_stride` elements apart.
void fetch_rows(f16_ref src, uint base, uint row0, uint rows, uint row_stride)
{
    [[unroll]] for (uint r = 0; r < QUAD_LOADS; r++) {
        uint e = gl_LocalInvocationID.x + THREADS * r;
        uint c = e / QUADS, d = 4u * (e % QUADS);
        uint j = row0 + c;
        bool in_tile = QUADS_WHOLE || e < COLS * QUADS;
        rows_next[r] = in_tile && j < rows && d < HEAD_DIM ? f16x4_ref(src).v[(base + j * row_stride + d) / 4u]
                                                          : uvec2(0u);
    }
}

// (Macros: GLSL passes no shared array to a function.)
#define PUT_ROWS(tile)                                                                            \
    [[unroll]] for (uint r = 0; r < QUAD_LOADS; r++) {                                            \
        uint e = gl_LocalInvocationID.x + THREADS * r;                                            \
        if (!QUADS_WHOLE && e >= COLS * QUADS) break;                                             \
        uint at = (e / QUADS) * KV_LD + 4u * (e % QUADS);                                         \
        f16vec2 lo = unpackFloat2x16(rows_next[r].x), hi = unpackFloat2x16(rows_next[r].y);       \
        tile[at] = lo.x;                                                                          \
        tile[at + 1u] = lo.y;                                                                     \
        tile[at + 2u] = hi.x;                                                                     \
        tile[at + 3u] = hi.y;                                                                     \
    }

// The same rows in one go, four at a time or else element by element.
#define STAGE(tile, src, base, row0, rows, row_stride)                                            \
    if (QUAD_ROWS) {                                                                              \
        fetch_rows(src, base, row0, rows, row_stride);                                            \
        PUT_ROWS(tile);                                                                           \
    } else {                                                                                      \
        [[unroll]] for (uint r = 0; r < COLS * DP / THREADS; r++) {                               \
            uint e = gl_LocalInvocationID.x + THREADS * r;                                        \
            uint c = e / DP, d = e % DP;                                                          \
            uint j = (row0) + c;                                                                  \
            tile[c * KV_LD + d] = j < (rows) && d < HEAD_DIM ? src.v[(base) + j * (row_stride) + d] : float16_t(0.0); \
        }                                                                                         \
    }

// Subgroup sg's 16 query rows of the workgroup's ROWS from row i0, as A
// fragments (cm_a q_frag[DP / 16]), COLS rows at a time through `tile`;
// the tile is free again when this is done.
#define LOAD_QUERIES(q_frag, tile, q_base, i0, tq, row_stride, sg)                                \
    [[unroll]] for (uint r0 = 0; r0 < ROWS; r0 += COLS) {                                         \
        barrier(); /* the previous rows are loaded */                                             \
        STAGE(tile, pc.q, q_base, (i0) + r0, tq, row_stride);                                     \
        barrier();                                                                                \
        if ((sg) * 16u >= r0 && (sg) * 16u < r0 + COLS)                                           \
            CM_LOOP for (uint kd = 0; kd < DP / 16u; kd++)                                        \
                CM_LOAD_A(q_frag[kd], tile, ((sg) * 16u - r0) * KV_LD + kd * 16u, KV_LD);          \
    }                                                                                             \
    barrier()
