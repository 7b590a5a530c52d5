/* Every op in ops.def as one compute dispatch, and the backend's vtable.
 *
 * Each op fills its shader's push constants: the operands' device addresses
 * first (8-byte fields, so neither C nor GLSL pads anywhere), then the op's
 * kiln_<op>_params struct as is, then per-operand extras (where a weight's
 * first element sits in its 32-bit word, the storage type of small weight
 * vectors). Each struct below mirrors the push_constant block of the shader
 * named beside it. */
#include "vulkan_backend.h"

#include <math.h>
#include <stddef.h>

#include "resample.h"
#include "status.h"

_Static_assert(KILN_F32 == 0 && KILN_F16 == 1 && KILN_BF16 == 2 && KILN_F8_E4M3 == 3 && KILN_F8_E5M2 == 4,
               "shaders/weights.glsl numbers weight dtypes as kiln_dtype does");

/* A weight operand as shaders read it (shaders/weights.glsl): its address
 * rounded down to 4 bytes, the elements that rounding skipped, its dtype. */
typedef struct weight_arg {
    VkDeviceAddress address;
    uint32_t first;
    uint32_t dtype;
} weight_arg;

static kiln_status weight(const char *op, const char *what, const kiln_tensor *t, weight_arg *out)
{
    size_t esize = kiln_dtype_size(t->dtype);
    if (t->offset % esize)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan %s: %s (%s) sits at byte offset %zu, not a multiple of %zu", op,
                         what, kiln_dtype_name(t->dtype), t->offset, esize);
    VkDeviceAddress at = t->buffer->address + t->offset;
    out->address = at & ~(VkDeviceAddress)3;
    out->first = (uint32_t)((at & 3) / esize);
    out->dtype = (uint32_t)t->dtype;
    return KILN_OK;
}

/* f32 activations and i32 ids: 4-byte aligned addresses. */
static kiln_status act(const char *op, const kiln_tensor *t, VkDeviceAddress *out)
{
    if (t->offset % 4)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan %s: an operand sits at byte offset %zu, not a multiple of 4",
                         op, t->offset);
    *out = t->buffer->address + t->offset;
    return KILN_OK;
}

/* The variant of a weight-reading op (matmul, conv2d, embedding) for its main
 * weight's dtype; variants follow the op's f32 one in cmake/shaders.cmake's
 * order: f32, f16, f16p, bf16, f8e4m3, f8e5m2. */
static kiln_vk_shader weight_variant(const kiln_vk *vk, kiln_vk_shader f32_variant, kiln_dtype dtype)
{
    switch (dtype) {
    case KILN_F16: return f32_variant + (vk->f16_storage ? 1 : 2);
    case KILN_BF16: return f32_variant + 3;
    case KILN_F8_E4M3: return f32_variant + 4;
    case KILN_F8_E5M2: return f32_variant + 5;
    default: return f32_variant;
    }
}
_Static_assert(KILN_VK_SHADER_MATMUL_F8E5M2 - KILN_VK_SHADER_MATMUL_F32 == 5 &&
                   KILN_VK_SHADER_CONV2D_F8E5M2 - KILN_VK_SHADER_CONV2D_F32 == 5 &&
                   KILN_VK_SHADER_EMBEDDING_F8E5M2 - KILN_VK_SHADER_EMBEDDING_F32 == 5 &&
                   KILN_VK_SHADER_MATMUL_F16P - KILN_VK_SHADER_MATMUL_F32 == 2,
               "weight variants are listed in cmake/shaders.cmake in weight_variant's order");

/* A tensor-core shader's variants follow its base (16x16x16, NV) in the
 * table as: emulated, 16x8x16, 16x8x16 emulated, 16x8x16 KHR
 * (cmake/shaders.cmake); which of them this device runs. */
static kiln_vk_shader coopmat_variant(const kiln_vk *vk, kiln_vk_shader base)
{
    if (vk->coopmat == KILN_VK_COOPMAT_KHR) return base + 4;
    return base + (vk->coopmat == KILN_VK_COOPMAT_EMULATED) + (vk->coopmat_n == 8 ? 2 : 0);
}

/* Whether a GEMM with weights of this dtype runs on the tensor-core shaders:
 * in f16 compute, with f16 weights, where the kind in use passed its check
 * (kiln_vk_check_gemms). */
static bool on_tensor_cores(const kiln_vk *vk, kiln_dtype dtype)
{
    return vk->coopmat != KILN_VK_COOPMAT_NONE && dtype == KILN_F16 && vk->gemm_allowed[kiln_vk_gemm_kind(vk)];
}

/* matmul's or conv2d's shader (shaders/gemm.glsl) as a GEMM runs it. */
typedef struct gemm_kernel {
    kiln_vk_shader shader;
    uint32_t threads; /* its workgroup size (gemm_coopmat.glsl's GEMM_THREADS; the split-K sums stride over
                         C, so a variant of another size from KILN_VULKAN_SHADER_DIR still covers it) */
    uint32_t rows;    /* of C in its tiles, of 64 columns each */
    bool tensor_cores; /* a tensor-core variant (on_tensor_cores) */
    bool whole_tiles;  /* it runs only GEMMs of whole tiles (gemm_workgroup.glsl: see run_gemm), */
    kiln_vk_shader other_tiles; /* ... the others on this tensor-core variant of 64x64 tiles */
} gemm_kernel;

/* The tensor-core variant this device runs, on tiles of vk->gemm_rows rows
 * loading operands as many K steps ahead as vk->gemm_prefetch says (0: on
 * workgroup-scope matrices, workgroup_f16 or its emulated twin after it),
 * or the f32 GEMM (64x64 tiles) for the weight's dtype. coopmat_f16: the
 * op's first tensor-core variant; those loading 2 and 3 steps ahead
 * follow, 10 and 20 on, and those of 128 rows 30 on. */
static gemm_kernel gemm_variant(const kiln_vk *vk, kiln_vk_shader f32_variant, kiln_vk_shader coopmat_f16,
                                kiln_vk_shader workgroup_f16, kiln_dtype dtype)
{
    if (!on_tensor_cores(vk, dtype))
        return (gemm_kernel){.shader = weight_variant(vk, f32_variant, dtype), .threads = 64, .rows = 64};
    if (vk->gemm_prefetch == 0)
        return (gemm_kernel){.shader = workgroup_f16 + (vk->coopmat == KILN_VK_COOPMAT_EMULATED), .threads = 256,
                             .rows = 128, .tensor_cores = true, .whole_tiles = true,
                             .other_tiles = coopmat_variant(vk, coopmat_f16)};
    if (vk->gemm_rows == 128)
        return (gemm_kernel){
            .shader = coopmat_variant(vk, coopmat_f16 + 30), .threads = 256, .rows = 128, .tensor_cores = true};
    return (gemm_kernel){.shader = coopmat_variant(vk, coopmat_f16 + 10 * (vk->gemm_prefetch - 1)), .threads = 256,
                         .rows = 64, .tensor_cores = true};
}
_Static_assert(KILN_VK_SHADER_MATMUL_WORKGROUP_EMU_F16 == KILN_VK_SHADER_MATMUL_WORKGROUP_F16 + 1 &&
                   KILN_VK_SHADER_CONV2D_WORKGROUP_EMU_F16 == KILN_VK_SHADER_CONV2D_WORKGROUP_F16 + 1,
               "workgroup-scope GEMM variants are listed in cmake/shaders.cmake with their emulated twins next");
_Static_assert(KILN_VK_SHADER_MATMUL_COOPMAT_EMU_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 1 &&
                   KILN_VK_SHADER_MATMUL_COOPMAT_N8_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 2 &&
                   KILN_VK_SHADER_MATMUL_COOPMAT_N8_EMU_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 3 &&
                   KILN_VK_SHADER_MATMUL_COOPMAT_KHR_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 4 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 5 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_EMU_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 1 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_N8_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 2 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_N8_EMU_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 3 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_KHR_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 4 &&
                   KILN_VK_SHADER_MATMUL_COOPMAT_PF2_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 10 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_PF2_KHR_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 14 &&
                   KILN_VK_SHADER_MATMUL_COOPMAT_PF3_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 20 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_PF3_KHR_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 24 &&
                   KILN_VK_SHADER_MATMUL_COOPMAT_M128_F16 == KILN_VK_SHADER_MATMUL_COOPMAT_F16 + 30 &&
                   KILN_VK_SHADER_CONV2D_COOPMAT_M128_KHR_F16 == KILN_VK_SHADER_CONV2D_COOPMAT_F16 + 34,
               "tensor-core GEMM variants are listed in cmake/shaders.cmake in gemm_variant's order");

/* Columns of C in a GEMM's tiles; also the side of im2col.comp's blocks. */
#define GEMM_TILE 64

/* A grid of `count` workgroups in flat order (shaders/common.glsl). */
static void grid_flat(uint64_t count, uint32_t groups[3])
{
    groups[0] = (uint32_t)(count < 65535 ? count : 65535);
    groups[1] = (uint32_t)((count + groups[0] - 1) / groups[0]);
    groups[2] = 1;
}

static uint32_t ceil_div(uint64_t a, uint32_t b) { return (uint32_t)((a + b - 1) / b); }

static kiln_status run(kiln_backend *be, kiln_vk_shader shader, const void *push, uint32_t push_bytes,
                       uint32_t gx, uint32_t gy, uint32_t gz, const kiln_tensor *const *src, int nsrc,
                       const kiln_tensor *dst)
{
    kiln_vk_dispatch d = {
        .shader = shader,
        .push = push,
        .push_bytes = push_bytes,
        .groups = {gx, gy, gz},
        .write = dst,
    };
    for (int i = 0; i < nsrc; i++) d.reads[i] = src[i];
    return kiln_vk_dispatch_record(kiln_vk_of(be), &d);
}

/* One invocation per element, 256 to a workgroup. */
static kiln_status run_elementwise(kiln_backend *be, kiln_vk_shader shader, const void *push, uint32_t push_bytes,
                                   uint64_t elements, const kiln_tensor *const *src, int nsrc, const kiln_tensor *dst)
{
    uint32_t g[3];
    grid_flat(ceil_div(elements, 256), g);
    return run(be, shader, push, push_bytes, g[0], g[1], g[2], src, nsrc, dst);
}

/* Four elements an invocation (shaders/elementwise.glsl: vec4s where the
 * operands are aligned). */
static kiln_status run_elementwise4(kiln_backend *be, kiln_vk_shader shader, const void *push, uint32_t push_bytes,
                                    uint64_t elements, const kiln_tensor *const *src, int nsrc, const kiln_tensor *dst)
{
    return run_elementwise(be, shader, push, push_bytes, (elements + 3) / 4, src, nsrc, dst);
}

/* The ops whose shaders' push constants are their operands' addresses (the
 * sources, then the result) and then the op's parameters, one invocation
 * per `per` of the `elements` outputs (1, or 4: elementwise.glsl's vec4s). */
static kiln_status run_addressed(kiln_backend *be, const char *op, kiln_vk_shader shader, const void *params,
                                 size_t params_bytes, const kiln_tensor *const *src, int nsrc, const kiln_tensor *dst,
                                 uint64_t elements, int per)
{
    unsigned char push[KILN_VK_PUSH_BYTES];
    size_t at = 0;
    for (int i = 0; i <= nsrc; i++, at += sizeof(VkDeviceAddress)) {
        VkDeviceAddress address = 0;
        TRY(act(op, i < nsrc ? src[i] : dst, &address));
        memcpy(push + at, &address, sizeof address);
    }
    if (at + params_bytes > sizeof push)
        return kiln_fail(KILN_ERR_BACKEND, "vulkan %s: %zu bytes of push constants", op, at + params_bytes);
    memcpy(push + at, params, params_bytes);
    return run_elementwise(be, shader, push, (uint32_t)(at + params_bytes), (elements + per - 1) / per, src, nsrc, dst);
}

/* matmul.comp and conv2d.comp: the same operands around each op's parameters
 * (x, w, bias, y; then where w and bias start and how bias is stored). The
 * weight's dtype picks the shader variant instead. */
typedef struct gemm_addresses {
    VkDeviceAddress x, w, bias, y;
} gemm_addresses;

typedef struct gemm_weights {
    uint32_t w_first, bias_first, bias_dtype;
    uint32_t rows_aligned; /* the tensor-core GEMM may read rows of w (and of
                              x, when they run along K) as 16-byte vectors */
} gemm_weights;

/* The operands of a GEMM with reduction length K; x_along_k: x's rows run
 * along K (matmul), not along M (conv). */
static kiln_status gemm_operands(const char *op, const kiln_tensor *const *src, bool has_bias, const kiln_tensor *dst,
                                 uint64_t K, bool x_along_k, gemm_addresses *a, gemm_weights *g)
{
    weight_arg w = {0}, bias = {0};
    TRY(act(op, src[0], &a->x));
    TRY(weight(op, "w", src[1], &w));
    if (has_bias) TRY(weight(op, "bias", src[2], &bias));
    TRY(act(op, dst, &a->y));
    a->w = w.address;
    a->bias = bias.address;
    bool rows_aligned = w.first == 0 && a->w % 16 == 0 && (!x_along_k || a->x % 16 == 0) && K % 8 == 0;
    *g = (gemm_weights){w.first, bias.first, bias.dtype, rows_aligned};
    return KILN_OK;
}

/* Split K (shaders/gemm.glsl): a GEMM may run its reduction in s shares,
 * each a workgroup per tile of C, their partial sums added by a second
 * dispatch; s is chosen by an estimate of the time in "wave steps". The GPU
 * runs S workgroups at once (per multiprocessor, what the GEMM's registers
 * allow where NVIDIA's driver reports them, else 2 of the tensor-core
 * GEMM's 256 invocations and 4 of the f32 GEMM's 64, as their 88 and about
 * 200 registers allowed on an H200; the SM count from NVIDIA's driver,
 * else an H100's or H200's 132). A workgroup takes about
 * as long for a K step of 64 whether its wave is full or not (the GEMMs
 * wait mostly on their loads: bench/RESULTS.md), so T tiles in s shares of K take
 * ceil(T s / S) waves of K / s / 64 steps, plus TILE_STEPS for a tile's
 * first load and its epilogue; shares cost their partial sums, written and
 * read back (2 s M N floats), at SUM_BYTES_PER_STEP (an H200's ~3 TB/s
 * over the ~2.3 us of a wave step at 60 TFLOP/s), and a dispatch. Shares
 * are at least SPLIT_MIN_K long, and a split must promise SPLIT_GAIN of
 * the whole K's time: a last wave's few workgroups, alone on their
 * multiprocessors, run somewhat faster than the estimate has them. So the
 * UNet's 32x32 level (320 tiles, K up to 17280) splits into 4 where its
 * second wave was a fifth full, its 16x16 level's 3x3 convs into 3, not 4,
 * and GEMMs whose split would add a wave (K 1280 at 160 tiles) stay whole.
 * (Before, GEMMs split only below 2 S tiles, towards 4 S workgroups.) The
 * estimate puts session 7's bench_ops times on the H200 at 1.6 to 2.2 us a
 * wave step for five shapes, from 1 to 20 waves and whole or in 14 shares
 * (bench/RESULTS.md). */
#define SPLIT_MIN_K 512
#define SPLIT_MAX 32
#define TILE_STEPS 2.0
#define SUM_BYTES_PER_STEP 7e6
#define SPLIT_GAIN 0.9

uint32_t kiln_vk_nvidia_workgroups_per_sm(uint32_t registers, uint32_t threads)
{
    uint32_t per_warp = (registers + 7) / 8 * 8 * 32, warps = (threads + 31) / 32;
    uint32_t fit = 65536 / (per_warp * warps), by_warps = 64 / warps;
    fit = fit < by_warps ? fit : by_warps;
    fit = fit < 32 ? fit : 32;
    return fit ? fit : 1;
}

/* Where NVIDIA's driver reports the GEMM pipeline's registers, how many of
 * its workgroups fit an SM follows from them (the H200's 88 registers: 2 of
 * 256; 80 or fewer would fit 3); elsewhere 2 of the tensor-core GEMM's 256
 * invocations, 4 of the f32 GEMM's 64. */
static kiln_status concurrent_workgroups(kiln_vk *vk, const gemm_kernel *k, uint64_t *slots)
{
    uint32_t registers = 0, per_sm = k->threads >= 256 ? 2 : 4;
    static const uint32_t no_spec[3] = {0, 0, 0};
    if (vk->pipeline_registers) TRY(kiln_vk_pipeline_registers(vk, k->shader, no_spec, &registers));
    if (registers) per_sm = kiln_vk_nvidia_workgroups_per_sm(registers, k->threads);
    *slots = per_sm * (uint64_t)(vk->multiprocessors ? vk->multiprocessors : 132);
    return KILN_OK;
}

/* K rounded up to whole shares of a multiple of 32 (a K step of either
 * GEMM divides it) for s shares; the shares that then remain. */
static uint64_t share_of_k(uint64_t K, uint64_t s, uint64_t *shares)
{
    uint64_t chunk = ((K + s - 1) / s + 31) / 32 * 32;
    *shares = (K + chunk - 1) / chunk;
    return chunk;
}

static kiln_status split_k(kiln_vk *vk, const gemm_kernel *k, uint64_t tiles, uint64_t M, uint64_t N, uint64_t K,
                           uint64_t *splits)
{
    uint64_t slots, best = 1;
    TRY(concurrent_workgroups(vk, k, &slots));
    double best_time = 0.0;
    for (uint64_t s = 1; s <= (vk->split_k ? SPLIT_MAX : 1) && (s == 1 || K / s >= SPLIT_MIN_K); s++) {
        uint64_t shares, chunk = share_of_k(K, s, &shares);
        if (shares != s) continue; /* rounding left fewer: counted at that s */
        double waves = (double)((tiles * s + slots - 1) / slots);
        double time = waves * ((double)chunk / 64.0 + TILE_STEPS);
        if (s > 1) time += 2.0 * (double)s * (double)(M * N) * sizeof(float) / SUM_BYTES_PER_STEP + 1.0;
        if (s == 1) best_time = SPLIT_GAIN * time;
        else if (time < best_time) best = s, best_time = time;
    }
    *splits = best;
    return KILN_OK;
}

/* The last push constants of matmul.comp and conv2d.comp. */
typedef struct gemm_split {
    VkDeviceAddress partial; /* splits x M x N f32 partial sums */
    uint32_t splits, k_chunk, split_pass;
} gemm_split;

/* Records a GEMM of M x N outputs and reduction length K: one dispatch, or
 * two split along K. push (push_bytes) holds the op's push constants, ending
 * with *split, which this fills in. src: x, w and (nsrc 3) bias. The split
 * sums go to scratch after the first scratch_used bytes (a multiple of 16),
 * which the caller's operands occupy. rows_aligned: A's and B's rows start
 * on 16 bytes. */
static kiln_status run_gemm(kiln_backend *be, const gemm_kernel *k, void *push, uint32_t push_bytes,
                            gemm_split *split, uint64_t M, uint64_t N, uint64_t K, bool rows_aligned,
                            size_t scratch_used, const kiln_tensor *const *src, int nsrc, const kiln_tensor *dst)
{
    /* gemm_workgroup.glsl's loads are not clamped: whole tiles, whole K
     * steps of 32 (a split's shares are multiples of 32, share_of_k) */
    if (k->whole_tiles && (M % k->rows || N % GEMM_TILE || K % 32 || !rows_aligned)) {
        gemm_kernel tiles = {.shader = k->other_tiles, .threads = 256, .rows = GEMM_TILE, .tensor_cores = true};
        return run_gemm(be, &tiles, push, push_bytes, split, M, N, K, rows_aligned, scratch_used, src, nsrc, dst);
    }
    uint32_t gx = ceil_div(N, GEMM_TILE), gy = ceil_div(M, k->rows);
    uint64_t shares, splits;
    TRY(split_k(kiln_vk_of(be), k, (uint64_t)gx * gy, M, N, K, &shares));
    uint64_t k_chunk = share_of_k(K, shares, &splits);
    *split = (gemm_split){.splits = (uint32_t)splits, .k_chunk = (uint32_t)k_chunk};
    if (splits == 1) return run(be, k->shader, push, push_bytes, gx, gy, 1, src, nsrc, dst);

    /* Should this grow the scratch, the caller's operands stay where they
     * are, in the outgrown buffer, which is kept (kiln_vk_scratch). */
    size_t partial_bytes = (size_t)(splits * M * N * sizeof(float));
    kiln_tensor partial;
    TRY(kiln_vk_scratch(be, scratch_used + partial_bytes, &partial));
    partial.offset = scratch_used;
    partial.shape[0] = (int64_t)(partial_bytes / sizeof(float));
    split->partial = partial.buffer->address + scratch_used;
    TRY(run(be, k->shader, push, push_bytes, gx, gy, (uint32_t)splits, src, nsrc, &partial));
    split->split_pass = 1;
    uint32_t g[3];
    grid_flat(ceil_div((M * N + 3) / 4, k->threads), g); /* four elements an invocation */
    const kiln_tensor *sums[2] = {&partial, nsrc > 2 ? src[2] : NULL};
    return run(be, k->shader, push, push_bytes, g[0], g[1], g[2], sums, nsrc > 2 ? 2 : 1, dst);
}

typedef struct matmul_push {
    gemm_addresses a;
    kiln_matmul_params p;
    gemm_weights w;
    gemm_split split;
} matmul_push;

/* shaders/f16_copy.comp */
typedef struct f16_copy_push {
    VkDeviceAddress x, y;
    uint32_t n;
} f16_copy_push;

/* Bytes of an f16 copy of n elements: whole runs of four, to 16 bytes. */
static size_t f16_copy_bytes(uint64_t n) { return (size_t)((n + 7) / 8 * 16); }

/* Records an f16 copy of x's n first elements into scratch from byte `at`
 * (a multiple of 16): *copy views it. */
static kiln_status f16_copy(kiln_backend *be, const kiln_tensor *x, uint64_t n, const kiln_tensor *scratch, size_t at,
                            kiln_tensor *copy)
{
    *copy = *scratch;
    copy->offset = scratch->offset + at;
    copy->shape[0] = (int64_t)(f16_copy_bytes(n) / sizeof(float));
    f16_copy_push push = {.y = copy->buffer->address + copy->offset, .n = (uint32_t)n};
    TRY(act("f16 copy", x, &push.x));
    return run_elementwise4(be, KILN_VK_SHADER_F16_COPY, &push, sizeof push, n, &x, 1, copy);
}

/* The matmul with its scratch use (the tensor-core GEMM's f16 copy of x,
 * split-K sums) from byte scratch_from, a multiple of 16, on. */
static kiln_status matmul_from(kiln_backend *be, const kiln_matmul_params *p, const kiln_tensor *const *src,
                               kiln_tensor *dst, size_t scratch_from)
{
    matmul_push push = {.p = *p};
    TRY(gemm_operands("matmul", src, p->has_bias, dst, (uint64_t)p->K, true, &push.a, &push.w));
    gemm_kernel k = gemm_variant(kiln_vk_of(be), KILN_VK_SHADER_MATMUL_F32, KILN_VK_SHADER_MATMUL_COOPMAT_F16,
                                 KILN_VK_SHADER_MATMUL_WORKGROUP_F16, src[1]->dtype);
    uint64_t M = (uint64_t)p->M, N = (uint64_t)p->N, K = (uint64_t)p->K;
    int nsrc = p->has_bias ? 3 : 2;
    if (!k.tensor_cores)
        return run_gemm(be, &k, &push, sizeof push, &push.split, M, N, K, push.w.rows_aligned, scratch_from, src, nsrc,
                        dst);

    /* The tensor-core GEMM reads an f16 copy of x, in scratch (split-K sums
     * after it); whole runs of four elements, 16-byte aligned. The copy the
     * last matmul made serves while it still holds this x. */
    kiln_vk *vk = kiln_vk_of(be);
    uint64_t n = M * K;
    size_t copy_bytes = f16_copy_bytes(n);
    kiln_vk_range of = {push.a.x, push.a.x + n * sizeof(float)};
    if (!vk->f16_copy.valid || vk->f16_copy.of.lo != of.lo || vk->f16_copy.of.hi != of.hi) {
        kiln_tensor scratch, copy;
        TRY(kiln_vk_scratch(be, scratch_from + copy_bytes, &scratch));
        TRY(f16_copy(be, src[0], n, &scratch, scratch_from, &copy));
        vk->f16_copy.valid = true;
        vk->f16_copy.of = of;
        vk->f16_copy.at = kiln_vk_tensor_range(&copy);
        vk->f16_copy.copy = copy;
    }
    const kiln_tensor *copy = &vk->f16_copy.copy;
    push.a.x = copy->buffer->address + copy->offset;
    push.w.rows_aligned = push.w.w_first == 0 && push.a.w % 16 == 0 && K % 8 == 0;
    const kiln_tensor *operands[3] = {copy, src[1], nsrc > 2 ? src[2] : NULL};
    size_t copy_end = copy->offset + copy_bytes; /* the split sums after the copy, wherever it is */
    return run_gemm(be, &k, &push, sizeof push, &push.split, M, N, K, push.w.rows_aligned,
                    copy_end > scratch_from ? copy_end : scratch_from, operands, nsrc, dst);
}

/* shaders/dequantize.comp */
typedef struct dequantize_push {
    VkDeviceAddress w, y;
    uint32_t w_first, pairs, out_f16;
} dequantize_push;

/* A quantized w (GGUF's blocks) is widened into scratch, to f32 for f32
 * compute (the products exact, as the CPU's) or to f16 for the tensor-core
 * GEMM, which then reads it as any float weight: the weights stay quantized
 * in memory, one layer's worth is widened at a time. */
static kiln_status vk_matmul(kiln_backend *be, const kiln_matmul_params *p, const kiln_tensor *const *src,
                             kiln_tensor *dst)
{
    if (!kiln_dtype_is_quantized(src[1]->dtype)) return matmul_from(be, p, src, dst, 0);
    const kiln_tensor *w = src[1];
    const kiln_dtype dtype = be->compute == KILN_F32 ? KILN_F32 : KILN_F16;
    const uint64_t n = (uint64_t)p->N * (uint64_t)p->K;
    const size_t bytes = (size_t)((n * kiln_dtype_size(dtype) + 255) / 256 * 256);
    if (n / 2 > UINT32_MAX || kiln_dtype_bytes(w->dtype, (size_t)n) > UINT32_MAX - 4)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan matmul: a %s weight of %llu values is past 32-bit indexing",
                         kiln_dtype_name(w->dtype), (unsigned long long)n);
    kiln_tensor wide;
    TRY(kiln_vk_scratch(be, bytes, &wide));
    wide.dtype = dtype;
    wide.shape[0] = (int64_t)n;
    VkDeviceAddress at = w->buffer->address + w->offset;
    dequantize_push push = {.w = at & ~(VkDeviceAddress)3, .y = wide.buffer->address, .w_first = (uint32_t)(at & 3),
                            .pairs = (uint32_t)(n / 2), .out_f16 = dtype == KILN_F16};
    TRY(run_elementwise(be, KILN_VK_SHADER_DEQUANTIZE_Q4_0 + (w->dtype - KILN_Q4_0), &push, sizeof push, n / 2, &w, 1,
                        &wide));
    const kiln_tensor *widened[3] = {src[0], &wide, p->has_bias ? src[2] : NULL};
    return matmul_from(be, p, widened, dst, bytes);
}
_Static_assert(KILN_VK_SHADER_DEQUANTIZE_IQ4_XS - KILN_VK_SHADER_DEQUANTIZE_Q4_0 == KILN_IQ4_XS - KILN_Q4_0,
               "dequantize variants are listed in cmake/shaders.cmake in kiln_dtype's order");

typedef struct conv2d_push {
    gemm_addresses a; /* x: the column matrix, on tensor cores */
    kiln_conv2d_params p;
    gemm_weights w;
    uint32_t m_first, m_count; /* on tensor cores: the output pixels of the column matrix's rows */
    gemm_split split;
} conv2d_push;
_Static_assert(sizeof(conv2d_push) <= 128, "push constants beyond the 128 bytes every device has");

/* shaders/im2col.comp */
typedef struct im2col_push {
    VkDeviceAddress x, col;
    kiln_conv2d_params p;
    uint32_t m_first, rows, k_stride;
} im2col_push;

/* The tensor-core conv: im2col.comp builds an f16 column matrix for as many
 * output pixels as vk->conv_col_bytes holds (whole GEMM tiles of them), the
 * GEMM multiplies it by w into those pixels of y, and so on through all of
 * them. */
static kiln_status conv2d_by_columns(kiln_backend *be, conv2d_push *push, const gemm_kernel *k,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    const kiln_conv2d_params *p = &push->p;
    uint64_t K = (uint64_t)p->C * p->KH * p->KW, k_stride = (K + 7) / 8 * 8;
    uint64_t M = (uint64_t)p->N * p->OH * p->OW, O = (uint64_t)p->O;
    /* whole tiles, at least one; indices into the matrix stay 32-bit, and its
     * rows of im2col's blocks within a grid's 65535 */
    uint64_t rows = kiln_vk_of(be)->conv_col_bytes / (k_stride * sizeof(uint16_t));
    if (rows > UINT32_MAX / k_stride) rows = UINT32_MAX / k_stride;
    if (rows > 65535 * (uint64_t)GEMM_TILE) rows = 65535 * (uint64_t)GEMM_TILE;
    rows = rows / k->rows * k->rows;
    if (rows < k->rows) rows = k->rows;
    if (rows > M) rows = M;

    size_t col_bytes = (size_t)(rows * k_stride * sizeof(uint16_t));
    kiln_tensor col;
    TRY(kiln_vk_scratch(be, col_bytes, &col));
    col.shape[0] = (int64_t)(col_bytes / sizeof(float));
    im2col_push im = {.x = push->a.x, .col = col.buffer->address, .p = *p, .k_stride = (uint32_t)k_stride};
    push->a.x = col.buffer->address;
    const kiln_tensor *operands[3] = {&col, src[1], src[2]};
    for (uint64_t m0 = 0; m0 < M; m0 += rows) {
        uint64_t n = M - m0 < rows ? M - m0 : rows;
        im.m_first = push->m_first = (uint32_t)m0;
        im.rows = push->m_count = (uint32_t)n;
        TRY(run(be, KILN_VK_SHADER_IM2COL_F16, &im, sizeof im, ceil_div(k_stride, GEMM_TILE), ceil_div(n, GEMM_TILE),
                1, src, 1, &col));
        TRY(run_gemm(be, k, push, sizeof *push, &push->split, n, O, K, push->w.rows_aligned, col_bytes, operands, 3,
                     dst));
    }
    return KILN_OK;
}

static kiln_status vk_conv2d(kiln_backend *be, const kiln_conv2d_params *p, const kiln_tensor *const *src,
                             kiln_tensor *dst)
{
    conv2d_push push = {.p = *p};
    uint64_t K = (uint64_t)p->C * p->KH * p->KW;
    TRY(gemm_operands("conv2d", src, true, dst, K, false, &push.a, &push.w));
    gemm_kernel k = gemm_variant(kiln_vk_of(be), KILN_VK_SHADER_CONV2D_F32, KILN_VK_SHADER_CONV2D_COOPMAT_F16,
                                 KILN_VK_SHADER_CONV2D_WORKGROUP_F16, src[1]->dtype);
    if (k.tensor_cores) return conv2d_by_columns(be, &push, &k, src, dst);
    return run_gemm(be, &k, &push, sizeof push, &push.split, (uint64_t)p->N * p->OH * p->OW, (uint64_t)p->O, K,
                    push.w.rows_aligned, 0, src, 3, dst);
}

/* group_norm.comp and layer_norm.comp: the same operands around each op's
 * parameters (x, gamma, beta, y; then where and how gamma and beta are stored) */
typedef struct norm_addresses {
    VkDeviceAddress x, gamma, beta, y;
} norm_addresses;

typedef struct norm_weights {
    uint32_t gamma_first, beta_first, gamma_dtype, beta_dtype;
} norm_weights;

static kiln_status norm_operands(const char *op, const kiln_tensor *const *src, const kiln_tensor *dst,
                                 norm_addresses *a, norm_weights *w)
{
    weight_arg gamma = {0}, beta = {0};
    TRY(act(op, src[0], &a->x));
    TRY(weight(op, "gamma", src[1], &gamma));
    TRY(weight(op, "beta", src[2], &beta));
    TRY(act(op, dst, &a->y));
    a->gamma = gamma.address;
    a->beta = beta.address;
    *w = (norm_weights){gamma.first, beta.first, gamma.dtype, beta.dtype};
    return KILN_OK;
}

typedef struct group_norm_push {
    norm_addresses a;
    kiln_group_norm_params p;
    norm_weights w;
    VkDeviceAddress stats; /* per slice: mean, sum of squared deviations */
    uint32_t pass;
} group_norm_push;

#define GN_SLICE 4096 /* shaders/group_norm.comp's SLICE */

/* Two dispatches over (slices, groups, N): slice statistics, then merge and
 * normalise (shaders/group_norm.comp). */
static kiln_status vk_group_norm(kiln_backend *be, const kiln_group_norm_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    group_norm_push push = {.p = *p};
    TRY(norm_operands("group_norm", src, dst, &push.a, &push.w));
    uint64_t group_size = (uint64_t)(p->C / p->groups) * p->HW;
    uint32_t slices = ceil_div(group_size, GN_SLICE);
    kiln_tensor stats;
    TRY(kiln_vk_scratch(be, (size_t)p->N * p->groups * slices * 2 * sizeof(float), &stats));
    push.stats = stats.buffer->address;
    TRY(run(be, KILN_VK_SHADER_GROUP_NORM, &push, sizeof push, slices, (uint32_t)p->groups, (uint32_t)p->N, src, 1,
            &stats));
    push.pass = 1;
    return run(be, KILN_VK_SHADER_GROUP_NORM, &push, sizeof push, slices, (uint32_t)p->groups, (uint32_t)p->N,
               (const kiln_tensor *[]){src[0], &stats, src[1], src[2]}, 4, dst);
}

typedef struct layer_norm_push {
    norm_addresses a;
    kiln_layer_norm_params p;
    norm_weights w;
} layer_norm_push;

static kiln_status vk_layer_norm(kiln_backend *be, const kiln_layer_norm_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    layer_norm_push push = {.p = *p};
    TRY(norm_operands("layer_norm", src, dst, &push.a, &push.w));
    uint32_t g[3];
    grid_flat((uint64_t)p->M, g);
    return run(be, KILN_VK_SHADER_LAYER_NORM, &push, sizeof push, g[0], g[1], g[2], src, 3, dst);
}

/* layer_norm.comp's OP_RMS_NORM variant */
typedef struct rms_norm_push {
    VkDeviceAddress x, gamma, y;
    kiln_rms_norm_params p;
    uint32_t gamma_first, gamma_dtype;
} rms_norm_push;

static kiln_status vk_rms_norm(kiln_backend *be, const kiln_rms_norm_params *p, const kiln_tensor *const *src,
                               kiln_tensor *dst)
{
    rms_norm_push push = {.p = *p};
    weight_arg gamma = {0};
    TRY(act("rms_norm", src[0], &push.x));
    TRY(weight("rms_norm", "gamma", src[1], &gamma));
    TRY(act("rms_norm", dst, &push.y));
    push.gamma = gamma.address;
    push.gamma_first = gamma.first;
    push.gamma_dtype = gamma.dtype;
    uint32_t g[3];
    grid_flat((uint64_t)p->M, g);
    return run(be, KILN_VK_SHADER_RMS_NORM, &push, sizeof push, g[0], g[1], g[2], src, 2, dst);
}

/* A modulation's optional table (K,C) as ada_layer_norm and gated_add read
 * it: where and how it is stored, and whether there is one. */
typedef struct table_arg {
    uint32_t first, dtype, present;
} table_arg;

static kiln_status optional_table(const char *op, const kiln_tensor *t, VkDeviceAddress *address, table_arg *out)
{
    weight_arg w = {0};
    if (t) TRY(weight(op, "table", t, &w));
    *address = w.address;
    *out = (table_arg){w.first, w.dtype, t != NULL};
    return KILN_OK;
}

/* layer_norm.comp's OP_ADA_LAYER_NORM variant */
typedef struct ada_layer_norm_push {
    VkDeviceAddress x, mod, table, y;
    kiln_ada_layer_norm_params p;
    table_arg table_arg;
} ada_layer_norm_push;

static kiln_status vk_ada_layer_norm(kiln_backend *be, const kiln_ada_layer_norm_params *p,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    ada_layer_norm_push push = {.p = *p};
    TRY(act("ada_layer_norm", src[0], &push.x));
    TRY(act("ada_layer_norm", src[1], &push.mod));
    TRY(optional_table("ada_layer_norm", src[2], &push.table, &push.table_arg));
    TRY(act("ada_layer_norm", dst, &push.y));
    uint32_t g[3];
    grid_flat((uint64_t)p->B * p->T, g); /* a workgroup per token */
    return run(be, KILN_VK_SHADER_ADA_LAYER_NORM, &push, sizeof push, g[0], g[1], g[2], src, 3, dst);
}

/* attention.comp; the tensor-core attentions read the same block up to p
 * (attention_tiles.glsl), and take no bias. */
typedef struct attention_push {
    VkDeviceAddress q, k, v, o;
    kiln_attention_params p;
    int32_t has_bias;
    VkDeviceAddress bias; /* (H,Tq,Tk) */
} attention_push;
_Static_assert(offsetof(attention_push, bias) == 64, "attention.comp's push constants have no padding");

/* attention.comp's shape for head dim d: how many invocations share a query
 * row (split: the fewest, a power of two, that leave each at most 16 vec4s of
 * the head dim to keep in registers), and the most keys per tile, up to 32,
 * whose shared memory fits the device: the K/V tile (keys, d padded to a
 * multiple of 4), a score per key and invocation (128), and with split > 1 a
 * probability per key and row. */
static kiln_status attention_shape(const kiln_vk *vk, uint32_t d, uint32_t *cols, uint32_t *split)
{
    uint32_t budget = vk->props.limits.maxComputeSharedMemorySize, padded = (d + 3) / 4 * 4;
    *split = 1;
    while (*split < 8 && (padded / 4 + *split - 1) / *split > 16) *split *= 2;
    uint32_t per_key = padded * 4 + 128 * 4 + (*split > 1 ? 128 / *split : 1) * 4;
    for (uint32_t c = 32; c >= 1; c /= 2)
        if ((uint64_t)c * per_key <= budget) {
            *cols = c;
            return KILN_OK;
        }
    return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan attention: head dim %u needs more than the %u bytes of shared "
                                           "memory %s has", d, budget, vk->props.deviceName);
}

/* attention_coopmat.comp's shared memory for head dim d, the sum in its
 * header: a 32-key K/V tile in f16 (d padded to a multiple of 16, each row
 * by 8 more), f32 scores and f16 probabilities for 64 query rows, the rows'
 * softmax state. */
static uint32_t attention_coopmat_shared_bytes(uint32_t d)
{
    const uint32_t cols = 32, rows = 64;
    uint32_t padded = (d + 15) / 16 * 16;
    return cols * (padded + 8) * 2 + rows * (cols + 4) * 4 + rows * (cols + 8) * 2 + (128 + 128 + rows) * 4;
}
_Static_assert(KILN_VK_SHADER_ATTENTION_COOPMAT_EMU_F16 == KILN_VK_SHADER_ATTENTION_COOPMAT_F16 + 1 &&
                   KILN_VK_SHADER_ATTENTION_COOPMAT_N8_F16 == KILN_VK_SHADER_ATTENTION_COOPMAT_F16 + 2 &&
                   KILN_VK_SHADER_ATTENTION_COOPMAT_N8_EMU_F16 == KILN_VK_SHADER_ATTENTION_COOPMAT_F16 + 3 &&
                   KILN_VK_SHADER_ATTENTION_COOPMAT_KHR_F16 == KILN_VK_SHADER_ATTENTION_COOPMAT_F16 + 4,
               "the tensor-core attention's variants are listed in cmake/shaders.cmake in vk_attention's order");

/* attention_registers.comp's shared memory for head dim d on `rows` query
 * rows a workgroup (16 a subgroup), the sum in its header: K and V tiles in
 * f16 of 64 keys up to head dim 64 and 32 above, the operands of the
 * accumulators' row and column numbers, and the emulation's scratch, a
 * 16x16 matrix a subgroup and a float an invocation (counted everywhere, so
 * that lavapipe runs the head dims a GPU does). */
static uint32_t attention_registers_shared_bytes(uint32_t d, uint32_t rows)
{
    uint32_t padded = (d + 15) / 16 * 16, cols = padded <= 64 ? 64 : 32;
    return 2 * cols * (padded + 8) * 2 + 3 * 256 * 2 + (rows / 16 * 256 + rows * 2) * 4;
}
_Static_assert(KILN_VK_SHADER_ATTENTION_REGISTERS_EMU_F16 == KILN_VK_SHADER_ATTENTION_REGISTERS_F16 + 1 &&
                   KILN_VK_SHADER_ATTENTION_REGISTERS_R128_EMU_F16 == KILN_VK_SHADER_ATTENTION_REGISTERS_R128_F16 + 1 &&
                   KILN_VK_SHADER_COOPMAT_LAYOUT_EMU_F16 == KILN_VK_SHADER_COOPMAT_LAYOUT_F16 + 1,
               "emulated twins follow their shaders in cmake/shaders.cmake");

/* Tensor-core attention a's shader on this device, its query rows a
 * workgroup, and its shared memory at head dim d. */
static kiln_vk_shader tensor_core_attention(const kiln_vk *vk, kiln_vk_attention a, uint32_t d, uint32_t *rows,
                                            uint32_t *shared_bytes)
{
    bool emu = vk->coopmat == KILN_VK_COOPMAT_EMULATED;
    *rows = a == KILN_VK_ATTENTION_REGISTERS_128 ? 128 : 64;
    if (a == KILN_VK_ATTENTION_SHARED) {
        *shared_bytes = attention_coopmat_shared_bytes(d);
        return coopmat_variant(vk, KILN_VK_SHADER_ATTENTION_COOPMAT_F16);
    }
    *shared_bytes = attention_registers_shared_bytes(d, *rows);
    return (*rows == 128 ? KILN_VK_SHADER_ATTENTION_REGISTERS_R128_F16 : KILN_VK_SHADER_ATTENTION_REGISTERS_F16) + emu;
}

/* One subgroup of shaders/coopmat_layout.comp; its 32 lanes' verdicts read back. */
kiln_status kiln_vk_products_in_quads(kiln_backend *be, bool *quads)
{
    kiln_vk *vk = kiln_vk_of(be);
    float flags[32];
    kiln_buffer *buf = NULL;
    TRY(kiln_vk_buffer_alloc(be, sizeof flags, &buf));
    kiln_tensor t = {.dtype = KILN_F32, .ndim = 1, .shape = {32}, .buffer = buf};
    VkDeviceAddress at = buf->address;
    kiln_vk_dispatch d = {
        .shader = KILN_VK_SHADER_COOPMAT_LAYOUT_F16 + (vk->coopmat == KILN_VK_COOPMAT_EMULATED),
        .push = &at,
        .push_bytes = sizeof at,
        .groups = {1, 1, 1},
        .write = &t,
    };
    kiln_status st = kiln_vk_dispatch_record(vk, &d);
    if (st == KILN_OK) st = kiln_vk_download(be, &t, flags, sizeof flags);
    kiln_vk_buffer_free(be, buf);
    TRY(st);
    *quads = true;
    for (int i = 0; i < 32; i++) *quads = *quads && flags[i] == 1.0f;
    return KILN_OK;
}

/* In f16 compute, attention runs on tensor cores for head dims from 16 up
 * to the largest whose tiles fit the shared memory the tensor-core shaders
 * may use: with its softmax in registers (attention_registers.comp) where
 * the device allows (vk->attention), on 128 query rows a workgroup up to
 * head dim 160 or on 64 up to 192, else through shared memory
 * (attention_coopmat.comp) up to 256; every real UNet and CLIP head dim.
 * Others take attention.comp in f32, as all attention does in f32 compute,
 * and so does every head dim on a GPU where neither tensor-core attention
 * passed its check (kiln_vk_check_attentions):
 * the VAE's single 512-wide head, and head dims under 16, which padding to
 * the 16-wide fragments would mostly waste (only tiny test models have
 * them; their random weights give logits large enough that f16 queries and
 * keys, not the kernel, set the error). An attention with a bias (T5's)
 * takes attention.comp too: the text encoder runs it once a prompt, so the
 * tensor-core shaders stay without the bias's loads and registers. */
#define ATTENTION_COOPMAT_MIN_HEAD_DIM 16
static kiln_status vk_attention(kiln_backend *be, const kiln_attention_params *p, const kiln_tensor *const *src,
                                kiln_tensor *dst)
{
    kiln_vk *vk = kiln_vk_of(be);
    attention_push push = {.p = *p, .has_bias = src[3] != NULL};
    TRY(act("attention", src[0], &push.q));
    TRY(act("attention", src[1], &push.k));
    TRY(act("attention", src[2], &push.v));
    if (src[3]) TRY(act("attention", src[3], &push.bias));
    TRY(act("attention", dst, &push.o));
    uint32_t head_dim = (uint32_t)p->D, rows = 0; /* query rows per workgroup */
    kiln_vk_dispatch d = {
        .shader = KILN_VK_SHADER_ATTENTION,
        .spec = {head_dim},
        .push = &push,
        .push_bytes = sizeof push,
        .reads = {src[0], src[1], src[2], src[3]},
        .write = dst,
    };
    bool tensor_cores =
        vk->coopmat != KILN_VK_COOPMAT_NONE && head_dim >= ATTENTION_COOPMAT_MIN_HEAD_DIM && !push.has_bias;
    for (int a = KILN_VK_ATTENTIONS - 1; tensor_cores && !rows && a >= 0; a--) {
        uint32_t shared_bytes, a_rows;
        kiln_vk_shader shader = tensor_core_attention(vk, (kiln_vk_attention)a, head_dim, &a_rows, &shared_bytes);
        if (vk->attention[a] && shared_bytes <= KILN_VK_COOPMAT_SHARED_BYTES) d.shader = shader, rows = a_rows;
    }
    kiln_tensor copies[3];
    if (rows) {
        /* f16 copies of q, k and v, one after another in scratch
         * (attention_tiles.glsl) */
        uint64_t hd = (uint64_t)p->H * p->D, q_n = (uint64_t)p->B * p->Tq * hd, kv_n = (uint64_t)p->B * p->Tk * hd;
        size_t at[3] = {0, f16_copy_bytes(q_n), f16_copy_bytes(q_n) + f16_copy_bytes(kv_n)};
        kiln_tensor scratch;
        TRY(kiln_vk_scratch(be, at[2] + f16_copy_bytes(kv_n), &scratch));
        VkDeviceAddress *address[3] = {&push.q, &push.k, &push.v};
        for (int i = 0; i < 3; i++) {
            TRY(f16_copy(be, src[i], i ? kv_n : q_n, &scratch, at[i], &copies[i]));
            *address[i] = copies[i].buffer->address + copies[i].offset;
            d.reads[i] = &copies[i];
        }
        d.spec[1] = head_dim % 4 == 0; /* QUAD_ROWS */
    } else {
        TRY(attention_shape(vk, head_dim, &d.spec[1], &d.spec[2]));
        rows = 128 / d.spec[2];
    }
    d.groups[0] = ceil_div((uint64_t)p->Tq, rows);
    d.groups[1] = (uint32_t)(p->B * p->H);
    d.groups[2] = 1;
    return kiln_vk_dispatch_record(vk, &d);
}

/* rope.comp */
static kiln_status vk_rope(kiln_backend *be, const kiln_rope_params *p, const kiln_tensor *const *src,
                           kiln_tensor *dst)
{
    return run_addressed(be, "rope", KILN_VK_SHADER_ROPE, p, sizeof *p, src, 2, dst,
                         (uint64_t)p->B * p->T * p->H * p->D, 4);
}

/* softmax.comp */
typedef struct softmax_push {
    VkDeviceAddress x, y;
    kiln_softmax_params p;
} softmax_push;

static kiln_status vk_softmax(kiln_backend *be, const kiln_softmax_params *p, const kiln_tensor *const *src,
                              kiln_tensor *dst)
{
    softmax_push push = {.p = *p};
    TRY(act("softmax", src[0], &push.x));
    TRY(act("softmax", dst, &push.y));
    uint32_t g[3];
    grid_flat((uint64_t)p->M, g);
    return run(be, KILN_VK_SHADER_SOFTMAX, &push, sizeof push, g[0], g[1], g[2], src, 1, dst);
}

/* unary.comp (x, y and the op's params: n, and s for scale, slope for
 * leaky_relu, kind for activation) and binary.comp (a, b, y, n), over n
 * elements */
#define ELEMENTWISE_OP(name, shader, nsrc)                                                                    \
    static kiln_status vk_##name(kiln_backend *be, const kiln_##name##_params *p, const kiln_tensor *const *src, \
                                 kiln_tensor *dst)                                                             \
    {                                                                                                          \
        return run_addressed(be, #name, shader, p, sizeof *p, src, nsrc, dst, (uint64_t)p->n, 4);              \
    }
ELEMENTWISE_OP(silu, KILN_VK_SHADER_SILU, 1)
ELEMENTWISE_OP(sigmoid, KILN_VK_SHADER_SIGMOID, 1)
ELEMENTWISE_OP(activation, KILN_VK_SHADER_ACTIVATION, 1)
ELEMENTWISE_OP(gelu, KILN_VK_SHADER_GELU, 1)
ELEMENTWISE_OP(quick_gelu, KILN_VK_SHADER_QUICK_GELU, 1)
ELEMENTWISE_OP(gelu_tanh, KILN_VK_SHADER_GELU_TANH, 1)
ELEMENTWISE_OP(scale, KILN_VK_SHADER_SCALE, 1)
ELEMENTWISE_OP(leaky_relu, KILN_VK_SHADER_LEAKY_RELU, 1)
ELEMENTWISE_OP(add, KILN_VK_SHADER_ADD, 2)
ELEMENTWISE_OP(mul, KILN_VK_SHADER_MUL, 2)

/* gated_add.comp */
typedef struct gated_add_push {
    VkDeviceAddress x, y, mod, table, sum;
    kiln_gated_add_params p;
    table_arg table_arg;
} gated_add_push;

static kiln_status vk_gated_add(kiln_backend *be, const kiln_gated_add_params *p, const kiln_tensor *const *src,
                                kiln_tensor *dst)
{
    gated_add_push push = {.p = *p};
    TRY(act("gated_add", src[0], &push.x));
    TRY(act("gated_add", src[1], &push.y));
    TRY(act("gated_add", src[2], &push.mod));
    TRY(optional_table("gated_add", src[3], &push.table, &push.table_arg));
    TRY(act("gated_add", dst, &push.sum));
    return run_elementwise4(be, KILN_VK_SHADER_GATED_ADD, &push, sizeof push, (uint64_t)p->B * p->T * p->C, src, 4,
                            dst);
}

/* geglu.comp */
static kiln_status vk_geglu(kiln_backend *be, const kiln_geglu_params *p, const kiln_tensor *const *src,
                            kiln_tensor *dst)
{
    return run_addressed(be, "geglu", KILN_VK_SHADER_GEGLU, p, sizeof *p, src, 1, dst, (uint64_t)p->M * p->N, 4);
}

/* add_channel_bias.comp */
static kiln_status vk_add_channel_bias(kiln_backend *be, const kiln_add_channel_bias_params *p,
                                       const kiln_tensor *const *src, kiln_tensor *dst)
{
    return run_addressed(be, "add_channel_bias", KILN_VK_SHADER_ADD_CHANNEL_BIAS, p, sizeof *p, src, 2, dst,
                         (uint64_t)p->N * p->C * p->HW, 4);
}

/* concat_channels.comp */
static kiln_status vk_concat_channels(kiln_backend *be, const kiln_concat_channels_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    return run_addressed(be, "concat_channels", KILN_VK_SHADER_CONCAT_CHANNELS, p, sizeof *p, src, 2, dst,
                         (uint64_t)p->N * (p->Ca + p->Cb) * p->HW, 4);
}

/* pad2d.comp */
static kiln_status vk_pad2d(kiln_backend *be, const kiln_pad2d_params *p, const kiln_tensor *const *src,
                            kiln_tensor *dst)
{
    const uint64_t out = (uint64_t)p->N * p->C * (p->top + p->H + p->bottom) * (p->left + p->W + p->right);
    return run_addressed(be, "pad2d", KILN_VK_SHADER_PAD2D, p, sizeof *p, src, 1, dst, out, 1);
}

/* upsample_nearest2x.comp */
static kiln_status vk_upsample_nearest2x(kiln_backend *be, const kiln_upsample_nearest2x_params *p,
                                         const kiln_tensor *const *src, kiln_tensor *dst)
{
    return run_addressed(be, "upsample_nearest2x", KILN_VK_SHADER_UPSAMPLE_NEAREST2X, p, sizeof *p, src, 1, dst,
                         (uint64_t)p->N * p->C * p->OH * p->OW, 4);
}

/* timestep_embedding.comp */
typedef struct timestep_embedding_push {
    VkDeviceAddress t, y;
    kiln_timestep_embedding_params p;
    float log_max_period;
} timestep_embedding_push;

static kiln_status vk_timestep_embedding(kiln_backend *be, const kiln_timestep_embedding_params *p,
                                         const kiln_tensor *const *src, kiln_tensor *dst)
{
    timestep_embedding_push push = {.p = *p, .log_max_period = (float)log((double)p->max_period)};
    TRY(act("timestep_embedding", src[0], &push.t));
    TRY(act("timestep_embedding", dst, &push.y));
    /* one invocation per (n, frequency), writing its sin and cos */
    return run_elementwise(be, KILN_VK_SHADER_TIMESTEP_EMBEDDING, &push, sizeof push, (uint64_t)p->N * (p->dim / 2),
                           src, 1, dst);
}

/* transpose.comp */
typedef struct transpose_push {
    VkDeviceAddress x, y;
    kiln_transpose_params p;
} transpose_push;

static kiln_status vk_transpose(kiln_backend *be, const kiln_transpose_params *p, const kiln_tensor *const *src,
                                kiln_tensor *dst)
{
    transpose_push push = {.p = *p};
    TRY(act("transpose", src[0], &push.x));
    TRY(act("transpose", dst, &push.y));
    return run(be, KILN_VK_SHADER_TRANSPOSE, &push, sizeof push, ceil_div((uint64_t)p->C, 64),
               ceil_div((uint64_t)p->R, 64), (uint32_t)p->B, src, 1, dst);
}

/* embedding.comp */
typedef struct embedding_push {
    VkDeviceAddress ids, table, y;
    kiln_embedding_params p;
    uint32_t table_first;
} embedding_push;

static kiln_status vk_embedding(kiln_backend *be, const kiln_embedding_params *p, const kiln_tensor *const *src,
                                kiln_tensor *dst)
{
    embedding_push push = {.p = *p};
    weight_arg table = {0};
    TRY(act("embedding", src[0], &push.ids));
    TRY(weight("embedding", "table", src[1], &table));
    TRY(act("embedding", dst, &push.y));
    push.table = table.address;
    push.table_first = table.first;
    kiln_vk_shader shader = weight_variant(kiln_vk_of(be), KILN_VK_SHADER_EMBEDDING_F32, src[1]->dtype);
    return run_elementwise(be, shader, &push, sizeof push, (uint64_t)p->M * p->D, src, 2, dst);
}

/* freeu_backbone.comp */
typedef struct freeu_backbone_push {
    VkDeviceAddress x, y;
    kiln_freeu_backbone_params p;
} freeu_backbone_push;
_Static_assert(offsetof(freeu_backbone_push, p) == 16, "freeu_backbone.comp's push constants have no padding");

/* v1 scales elementwise; v2 takes a workgroup per image, which must see all
 * of it for its pixels' means' range (no scratch, one dispatch). */
static kiln_status vk_freeu_backbone(kiln_backend *be, const kiln_freeu_backbone_params *p,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    freeu_backbone_push push = {.p = *p};
    TRY(act("freeu_backbone", src[0], &push.x));
    TRY(act("freeu_backbone", dst, &push.y));
    if (!p->v2)
        return run_elementwise4(be, KILN_VK_SHADER_FREEU_BACKBONE, &push, sizeof push,
                                (uint64_t)p->N * p->C * p->HW, src, 1, dst);
    uint32_t g[3];
    grid_flat((uint64_t)p->N, g);
    return run(be, KILN_VK_SHADER_FREEU_BACKBONE, &push, sizeof push, g[0], g[1], g[2], src, 1, dst);
}

/* fourier_filter.comp */
typedef struct fourier_filter_push {
    VkDeviceAddress x, y;
    kiln_fourier_filter_params p;
} fourier_filter_push;
_Static_assert(offsetof(fourier_filter_push, p) == 16, "fourier_filter.comp's push constants have no padding");

/* A workgroup per (n,c) plane: its four low frequencies, then the plane. */
static kiln_status vk_fourier_filter(kiln_backend *be, const kiln_fourier_filter_params *p,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    fourier_filter_push push = {.p = *p};
    TRY(act("fourier_filter", src[0], &push.x));
    TRY(act("fourier_filter", dst, &push.y));
    uint32_t g[3];
    grid_flat((uint64_t)p->N * p->C, g);
    return run(be, KILN_VK_SHADER_FOURIER_FILTER, &push, sizeof push, g[0], g[1], g[2], src, 1, dst);
}

/* resize.comp */
typedef struct resize_push {
    VkDeviceAddress x, y;
    kiln_resize_params p;
    float scale_h, scale_w; /* H / OH and W / OW in float, as torch and kiln_resample take them */
} resize_push;
_Static_assert(offsetof(resize_push, p) == 16 && offsetof(resize_push, scale_h) == 16 + sizeof(kiln_resize_params),
               "resize.comp's push constants have no padding");
_Static_assert(KILN_RESAMPLE_NEAREST_EXACT == 0 && KILN_RESAMPLE_BILINEAR == 1 && KILN_RESAMPLE_BICUBIC == 2 &&
                   KILN_RESAMPLE_NEAREST == 3 && KILN_RESAMPLE_AREA == 4,
               "shaders/resize.comp numbers methods as kiln_resample_method does");

static kiln_status vk_resize(kiln_backend *be, const kiln_resize_params *p, const kiln_tensor *const *src,
                             kiln_tensor *dst)
{
    resize_push push = {.p = *p, .scale_h = (float)p->H / (float)p->OH, .scale_w = (float)p->W / (float)p->OW};
    TRY(act("resize", src[0], &push.x));
    TRY(act("resize", dst, &push.y));
    return run_elementwise(be, KILN_VK_SHADER_RESIZE, &push, sizeof push, (uint64_t)p->N * p->C * p->OH * p->OW, src,
                           1, dst);
}

/* slerp_resize.comp */
typedef struct slerp_resize_push {
    VkDeviceAddress x, y;
    kiln_slerp_resize_params p;
    float scale; /* the resized axis's length over out in float, as kiln_bislerp_tap takes it */
} slerp_resize_push;
_Static_assert(offsetof(slerp_resize_push, p) == 16 &&
                   offsetof(slerp_resize_push, scale) == 16 + sizeof(kiln_slerp_resize_params),
               "slerp_resize.comp's push constants have no padding");

static kiln_status vk_slerp_resize(kiln_backend *be, const kiln_slerp_resize_params *p, const kiln_tensor *const *src,
                                   kiln_tensor *dst)
{
    const bool wide = p->axis == 0;
    slerp_resize_push push = {.p = *p, .scale = (float)(wide ? p->W : p->H) / (float)p->out};
    TRY(act("slerp_resize", src[0], &push.x));
    TRY(act("slerp_resize", dst, &push.y));
    const uint64_t pixels = (uint64_t)p->N * (wide ? (uint64_t)p->H * p->out : (uint64_t)p->out * p->W);
    return run_elementwise(be, KILN_VK_SHADER_SLERP_RESIZE, &push, sizeof push, pixels, src, 1, dst);
}

/* prelu.comp */
typedef struct prelu_push {
    VkDeviceAddress x, slope, y;
    kiln_prelu_params p;
    uint32_t slope_first, slope_dtype;
} prelu_push;

static kiln_status vk_prelu(kiln_backend *be, const kiln_prelu_params *p, const kiln_tensor *const *src,
                            kiln_tensor *dst)
{
    prelu_push push = {.p = *p};
    weight_arg slope = {0};
    TRY(act("prelu", src[0], &push.x));
    TRY(weight("prelu", "slope", src[1], &slope));
    TRY(act("prelu", dst, &push.y));
    push.slope = slope.address;
    push.slope_first = slope.first;
    push.slope_dtype = slope.dtype;
    return run_elementwise4(be, KILN_VK_SHADER_PRELU, &push, sizeof push, (uint64_t)p->N * p->C * p->HW, src, 2,
                            dst);
}

/* pixel_shuffle.comp */
static kiln_status vk_pixel_shuffle(kiln_backend *be, const kiln_pixel_shuffle_params *p,
                                    const kiln_tensor *const *src, kiln_tensor *dst)
{
    return run_addressed(be, "pixel_shuffle", KILN_VK_SHADER_PIXEL_SHUFFLE, p, sizeof *p, src, 1, dst,
                         (uint64_t)p->N * p->C * p->r * p->r * p->H * p->W, 4);
}

/* avg_pool2x2.comp */
static kiln_status vk_avg_pool2x2(kiln_backend *be, const kiln_avg_pool2x2_params *p, const kiln_tensor *const *src,
                                  kiln_tensor *dst)
{
    const uint64_t outputs = (uint64_t)p->N * p->C * ((p->H + 2 * p->pad_h) / 2) * ((p->W + 2 * p->pad_w) / 2);
    return run_addressed(be, "avg_pool2x2", KILN_VK_SHADER_AVG_POOL2X2, p, sizeof *p, src, 1, dst, outputs, 4);
}

static kiln_status vk_synchronize(kiln_backend *be) { return kiln_vk_finish(kiln_vk_of(be)); }

const kiln_backend_ops kiln_vk_backend_ops = {
    .buffer_alloc = kiln_vk_buffer_alloc,
    .buffer_free = kiln_vk_buffer_free,
    .weights_place = kiln_vk_weights_place,
    .upload = kiln_vk_upload,
    .download = kiln_vk_download,
    .synchronize = vk_synchronize,
    .time_begin = kiln_vk_time_begin,
    .time_end = kiln_vk_time_end,
    .record_begin = kiln_vk_record_begin,
    .record_end = kiln_vk_record_end,
    .replay = kiln_vk_replay,
    .recording_free = kiln_vk_recording_free,
    .destroy = kiln_vk_destroy,
#define KILN_OP(name, nsrc, doc) .name = vk_##name,
#include "ops.def"
#undef KILN_OP
};
