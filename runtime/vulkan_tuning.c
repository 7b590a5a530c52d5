/* Choices the Vulkan backend leaves to the device. First, whether its
 * tensor-core attentions compute right there at all: each runs a small case
 * against the CPU's reference when a GPU opens, and one that misses is not
 * run on it (an H100 gave NaN from attention_coopmat.comp where lavapipe's
 * emulated matrices, and the other attention, gave the right values:
 * bench/RESULTS.md). Then, where it has correct
 * alternatives whose speed depends on the GPU (how many registers the driver
 * gives a shader, how many workgroups then share a multiprocessor, how long
 * a load takes), it times them when the device opens (vulkan_device.c) and
 * keeps the fastest, as cuDNN's benchmark mode does:
 *   - how the tensor-core GEMMs tile C and how many K steps ahead they
 *     load their operands (vk->gemm_rows, vk->gemm_prefetch: 64x64 tiles
 *     loading 1, 2 or 3 ahead, or 128x64 loading 1 ahead; a fifth kind,
 *     128x64 on VK_NV_cooperative_matrix2's workgroup-scope matrices, is
 *     checked like them but runs only where asked for);
 *   - which tensor-core attention runs (vk->attention): the softmax
 *     through shared memory (attention_coopmat.comp), or in registers
 *     (attention_registers.comp) on 64 or 128 query rows a workgroup;
 *   - whether GEMMs split K as the estimate in vulkan_ops.c has it, or never
 *     (vk->split_k): the estimate's constants were fitted on one GPU, an
 *     H200, and a GPU whose waves or memory differ may not gain from it.
 * Each alternative runs each shape once to warm up (building its pipeline),
 * then three times timed by the device; the fastest of the three counts,
 * and the alternative with the least time over all shapes wins. Operands
 * hold arbitrary values, never zeros (zeros ran faster on an H200:
 * bench/RESULTS.md). A device without timestamps keeps what it had, and so
 * does one where the timing fails (say, short of memory for its operands:
 * the device opens all the same, vulkan_device.c). */
#include "vulkan_backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu_ref.h"
#include "status.h"

/* Arbitrary values in [-scale, scale), most of which f16 does not hold
 * exactly (so that the tensor cores' rounding of them leaves an error above
 * zero against an f32 reference). */
static void arbitrary_values(float *x, size_t n, uint32_t seed, float scale)
{
    uint32_t bits = 0x2545f491u ^ seed;
    for (size_t i = 0; i < n; i++) {
        bits ^= bits << 13, bits ^= bits >> 17, bits ^= bits << 5;
        x[i] = scale * ((float)(bits >> 8) / (float)(1u << 23) - 1.0f);
    }
}

/* A device buffer of n elements (f32, or f16 for weights) of arbitrary
 * values in [-scale, scale), placed as the op will read them: weights
 * through weights_place, activations uploaded. */
static kiln_status random_buffer(kiln_backend *be, uint64_t n, kiln_dtype dtype, float scale, kiln_buffer **out)
{
    *out = NULL;
    float *host = malloc((size_t)n * sizeof(float));
    if (!host) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    arbitrary_values(host, (size_t)n, (uint32_t)n, scale);
    kiln_status st;
    if (dtype == KILN_F16) {
        uint16_t *half = malloc((size_t)n * sizeof(uint16_t));
        if (!half) {
            free(host);
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        }
        for (uint64_t i = 0; i < n; i++) half[i] = kiln_f32_to_f16(host[i]);
        st = kiln_vk_weights_place(be, half, (size_t)n * sizeof(uint16_t), out);
        free(half);
    } else {
        st = kiln_vk_buffer_alloc(be, (size_t)n * sizeof(float), out);
        kiln_tensor t = {.dtype = dtype, .ndim = 1, .shape = {(int64_t)n}, .buffer = *out};
        if (st == KILN_OK) st = kiln_vk_upload(be, &t, host, (size_t)n * sizeof(float));
    }
    free(host);
    return st;
}

/* One op, as a tuner runs it. */
typedef kiln_status (*tuned_op)(kiln_backend *be, const void *params, const kiln_tensor *const *src, kiln_tensor *dst);

/* The fastest of three device-timed runs after a warm-up. */
static kiln_status fastest_run(kiln_backend *be, tuned_op op, const void *params, const kiln_tensor *const *src,
                               kiln_tensor *dst, double *seconds)
{
    TRY(op(be, params, src, dst));
    *seconds = -1.0;
    for (int rep = 0; rep < 3; rep++) {
        double s = -1.0;
        TRY(kiln_vk_time_begin(be));
        TRY(op(be, params, src, dst));
        TRY(kiln_vk_time_end(be, &s));
        if (*seconds < 0.0 || s < *seconds) *seconds = s;
    }
    return KILN_OK;
}

static kiln_status matmul_op(kiln_backend *be, const void *p, const kiln_tensor *const *src, kiln_tensor *dst)
{
    return be->ops->matmul(be, p, src, dst);
}

static kiln_status attention_op(kiln_backend *be, const void *p, const kiln_tensor *const *src, kiln_tensor *dst)
{
    return be->ops->attention(be, p, src, dst);
}

/* Ends a tuning run, also one that failed: what it recorded finished
 * before its buffers are freed, and no f16 copy of a freed x left to reuse
 * (vulkan_ops.c, vk_matmul). */
static kiln_status tuning_done(kiln_backend *be, kiln_status st, kiln_buffer *const *buffers, int n)
{
    kiln_vk *vk = kiln_vk_of(be);
    kiln_status finished = kiln_vk_finish(vk);
    if (st == KILN_OK) st = finished;
    vk->f16_copy.valid = false;
    for (int i = 0; i < n; i++)
        if (buffers[i]) kiln_vk_buffer_free(be, buffers[i]);
    return st;
}

/* Grows the sizes of a matmul's x, w and y (n[0..2], in elements) to hold
 * every shape (M, N, K) in `shapes`. */
static void gemm_sizes(const uint32_t (*shapes)[3], int nshapes, uint64_t n[3])
{
    for (int i = 0; i < nshapes; i++) {
        uint64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        n[0] = M * K > n[0] ? M * K : n[0];
        n[1] = N * K > n[1] ? N * K : n[1];
        n[2] = M * N > n[2] ? M * N : n[2];
    }
}

/* The time of a matmul of each shape, summed, as the backend now runs it. */
static kiln_status time_matmuls(kiln_backend *be, const uint32_t (*shapes)[3], int nshapes, kiln_buffer *const buf[3],
                                double *total)
{
    *total = 0.0;
    for (int i = 0; i < nshapes; i++) {
        kiln_matmul_params p = {(int32_t)shapes[i][0], (int32_t)shapes[i][1], (int32_t)shapes[i][2], 0};
        kiln_tensor x = {.dtype = KILN_F32, .ndim = 2, .shape = {p.M, p.K}, .buffer = buf[0]};
        kiln_tensor w = {.dtype = KILN_F16, .ndim = 2, .shape = {p.N, p.K}, .buffer = buf[1]};
        kiln_tensor y = {.dtype = KILN_F32, .ndim = 2, .shape = {p.M, p.N}, .buffer = buf[2]};
        double s = 0.0;
        TRY(fastest_run(be, matmul_op, &p, (const kiln_tensor *[]){&x, &w, NULL}, &y, &s));
        *total += s;
    }
    return KILN_OK;
}

const struct kiln_vk_gemm_kernel kiln_vk_gemm_kernels[KILN_VK_GEMM_KERNELS] = {
    {1, 64}, {2, 64}, {3, 64}, {1, 128}, {0, 128}};

int kiln_vk_gemm_kind(const kiln_vk *vk)
{
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++)
        if (kiln_vk_gemm_kernels[i].prefetch == vk->gemm_prefetch && kiln_vk_gemm_kernels[i].rows == vk->gemm_rows)
            return i;
    return 0;
}

/* Each way of kiln_vk_gemm_kernels allowed here; the fastest kept. */
static kiln_status tune_tiles(kiln_backend *be, const uint32_t (*shapes)[3], int nshapes, kiln_buffer *const buf[3],
                              double seconds[KILN_VK_GEMM_KERNELS])
{
    kiln_vk *vk = kiln_vk_of(be);
    kiln_status st = KILN_OK;
    struct kiln_vk_gemm_kernel kept = {vk->gemm_prefetch, vk->gemm_rows}, best = kept;
    double best_total = 0.0;
    bool timed_one = false;
    for (int i = 0; st == KILN_OK && i < KILN_VK_GEMM_KERNELS; i++) {
        if (seconds) seconds[i] = 0.0;
        if (!vk->gemm_allowed[i]) continue;
        vk->gemm_prefetch = kiln_vk_gemm_kernels[i].prefetch;
        vk->gemm_rows = kiln_vk_gemm_kernels[i].rows;
        double total = 0.0;
        st = time_matmuls(be, shapes, nshapes, buf, &total);
        if (seconds) seconds[i] = total;
        if (st == KILN_OK && (!timed_one || total < best_total)) best = kiln_vk_gemm_kernels[i], best_total = total;
        timed_one = true;
    }
    if (st != KILN_OK) best = kept;
    vk->gemm_prefetch = best.prefetch;
    vk->gemm_rows = best.rows;
    vk->gemm_tuned = st == KILN_OK && timed_one;
    return st;
}

/* K whole and split as estimated; splitting kept unless it was slower. */
static kiln_status tune_split(kiln_backend *be, const uint32_t (*shapes)[3], int nshapes, kiln_buffer *const buf[3],
                              double seconds[2])
{
    kiln_vk *vk = kiln_vk_of(be);
    kiln_status st = KILN_OK;
    double total[2] = {0.0, 0.0}; /* whole, split as estimated */
    for (int split = 0; st == KILN_OK && split <= 1; split++) {
        vk->split_k = split;
        st = time_matmuls(be, shapes, nshapes, buf, &total[split]);
    }
    if (seconds) seconds[0] = total[0], seconds[1] = total[1];
    vk->split_k = st != KILN_OK || total[1] <= total[0];
    vk->split_k_tuned = st == KILN_OK;
    return st;
}

kiln_status kiln_vk_tune_gemms(kiln_backend *be, const uint32_t (*tile_shapes)[3], int ntile,
                               double tile_seconds[KILN_VK_GEMM_KERNELS], const uint32_t (*split_shapes)[3],
                               int nsplit, double split_seconds[2])
{
    kiln_vk *vk = kiln_vk_of(be);
    if (!vk->timestamp_bits) return KILN_OK;
    if (vk->coopmat == KILN_VK_COOPMAT_NONE) ntile = 0;
    if (ntile == 0 && nsplit == 0) return KILN_OK;
    /* one set of operands, as large as the largest shape of either */
    uint64_t n[3] = {0, 0, 0};
    gemm_sizes(tile_shapes, ntile, n);
    gemm_sizes(split_shapes, nsplit, n);
    kiln_buffer *buf[3] = {NULL, NULL, NULL}; /* x, w, y */
    kiln_status st = random_buffer(be, n[0], KILN_F32, 1.0f, &buf[0]);
    if (st == KILN_OK) st = random_buffer(be, n[1], KILN_F16, 0.0625f, &buf[1]);
    if (st == KILN_OK) st = kiln_vk_buffer_alloc(be, (size_t)n[2] * sizeof(float), &buf[2]);
    /* a tile timing that fails leaves the split one to try */
    kiln_status tile_st = st, split_st = st;
    if (st == KILN_OK && ntile) tile_st = tune_tiles(be, tile_shapes, ntile, buf, tile_seconds);
    if (st == KILN_OK && nsplit) split_st = tune_split(be, split_shapes, nsplit, buf, split_seconds);
    return tuning_done(be, tile_st != KILN_OK ? tile_st : split_st, buf, 3);
}

/* Tensor-core attention a alone allowed; vk->attention put back by the caller. */
static void only_attention(kiln_vk *vk, int a)
{
    for (int i = 0; i < KILN_VK_ATTENTIONS; i++) vk->attention[i] = i == a;
}

kiln_status kiln_vk_tune_attentions(kiln_backend *be, const uint32_t (*shapes)[4], int nshapes,
                                    double seconds[KILN_VK_ATTENTIONS])
{
    kiln_vk *vk = kiln_vk_of(be);
    bool allowed[KILN_VK_ATTENTIONS];
    int nallowed = 0;
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) {
        allowed[a] = vk->attention[a];
        nallowed += allowed[a];
        if (seconds) seconds[a] = 0.0;
    }
    if (!vk->timestamp_bits || nallowed < 2) return KILN_OK;
    uint64_t n = 0;
    for (int i = 0; i < nshapes; i++) {
        uint64_t elements = (uint64_t)shapes[i][0] * shapes[i][1] * shapes[i][2] * shapes[i][3];
        n = elements > n ? elements : n;
    }
    kiln_buffer *buf[4] = {NULL, NULL, NULL, NULL}; /* q, k, v, o */
    kiln_status st = KILN_OK;
    for (int i = 0; st == KILN_OK && i < 3; i++) st = random_buffer(be, n, KILN_F32, 1.0f, &buf[i]);
    if (st == KILN_OK) st = kiln_vk_buffer_alloc(be, (size_t)n * sizeof(float), &buf[3]);
    int best = -1;
    double best_total = 0.0;
    for (int a = 0; st == KILN_OK && a < KILN_VK_ATTENTIONS; a++) {
        if (!allowed[a]) continue;
        only_attention(vk, a);
        double total = 0.0;
        for (int i = 0; st == KILN_OK && i < nshapes; i++) {
            const uint32_t *sh = shapes[i];
            kiln_attention_params p = {(int32_t)sh[0], (int32_t)sh[1], (int32_t)sh[2], (int32_t)sh[2], (int32_t)sh[3],
                                       0.125f, 0};
            kiln_tensor t[4];
            for (int j = 0; j < 4; j++)
                t[j] = (kiln_tensor){.dtype = KILN_F32, .ndim = 3, .shape = {p.B, p.Tq, (int64_t)p.H * p.D},
                                     .buffer = buf[j]};
            double s = 0.0;
            st = fastest_run(be, attention_op, &p, (const kiln_tensor *[]){&t[0], &t[1], &t[2], NULL}, &t[3], &s);
            total += s;
        }
        if (seconds) seconds[a] = total;
        if (best < 0 || total < best_total) best = a, best_total = total;
    }
    /* the fastest preferred: those after it go; a timing that failed
     * leaves them all */
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) vk->attention[a] = allowed[a] && (st != KILN_OK || a <= best);
    vk->attention_tuned = st == KILN_OK;
    return tuning_done(be, st, buf, 4);
}

/* The relative L2 distance of got from want; NaN or infinity anywhere makes
 * it infinite. */
static double rel_l2(const float *got, const float *want, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double d = (double)got[i] - want[i];
        diff += d * d;
        norm += (double)want[i] * want[i];
    }
    return sqrt(diff / (norm > 0.0 ? norm : 1.0));
}

/* Values in [-scale, scale) that f16 holds exactly (multiples of 1/64), so
 * that the tensor cores' f16 operands are the reference's. */
static void exact_f16_values(float *x, size_t n, uint32_t seed, float scale)
{
    uint32_t bits = 0x9e3779b9u ^ seed;
    for (size_t i = 0; i < n; i++) {
        bits ^= bits << 13, bits ^= bits >> 17, bits ^= bits << 5;
        x[i] = scale * (float)((int)(bits >> 20) - 2048) / 2048.0f;
        x[i] = roundf(x[i] * 64.0f) / 64.0f;
    }
}

/* What a check of n alternatives leaves: each that ran (ran) kept where
 * the run finished (ok) and its worst error is within tolerance, else
 * marked failed; errors, if not NULL, gets the worst errors. */
static void keep_what_passed(int n, const bool *ran, const double *worst, bool ok, double tolerance, bool *kept,
                             bool *failed, double *errors)
{
    for (int i = 0; i < n; i++) {
        kept[i] = ran[i] && ok && worst[i] <= tolerance;
        if (ran[i]) failed[i] = !kept[i];
        if (errors) errors[i] = worst[i];
    }
}

kiln_status kiln_vk_check_attentions(kiln_backend *be, double tolerance, double errors[KILN_VK_ATTENTIONS])
{
    kiln_vk *vk = kiln_vk_of(be);
    /* self-attention of 136 and 72 rows, {B, H, T, D}: a partial last
     * workgroup of 64 or 128 queries, partial key tiles of 32 and 64, head
     * dims padded (40 to 48) and not, and scores spread enough (q and k up
     * to 2) that later key tiles raise rows' maxima */
    static const int shapes[][4] = {{1, 2, 136, 40}, {1, 1, 72, 80}};
    enum { MOST = 1 * 2 * 136 * 40, LONGEST = 136 }; /* the largest B T H D and T of the two */
    float *host = malloc((size_t)5 * MOST * sizeof(float) + LONGEST * sizeof(float));
    if (!host) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    float *q = host, *k = q + MOST, *v = k + MOST, *want = v + MOST, *got = want + MOST, *scores = got + MOST;
    kiln_buffer *buf[4] = {NULL, NULL, NULL, NULL}; /* q, k, v, o */
    kiln_status st = KILN_OK;
    for (int i = 0; st == KILN_OK && i < 4; i++) st = kiln_vk_buffer_alloc(be, MOST * sizeof(float), &buf[i]);
    bool allowed[KILN_VK_ATTENTIONS];
    double worst[KILN_VK_ATTENTIONS];
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++) allowed[a] = vk->attention[a], worst[a] = 0.0;
    for (int s = 0; st == KILN_OK && s < 2; s++) {
        kiln_attention_params p = {shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][2], shapes[s][3], 0.0f, 0};
        p.scale = 1.0f / sqrtf((float)p.D);
        size_t n = (size_t)p.B * p.Tq * p.H * p.D;
        exact_f16_values(q, n, 1u + (uint32_t)s, 2.0f);
        exact_f16_values(k, n, 11u + (uint32_t)s, 2.0f);
        exact_f16_values(v, n, 21u + (uint32_t)s, 1.0f);
        cpu_ref_attention(&p, q, k, v, NULL, want, scores);
        kiln_tensor t[4];
        for (int j = 0; j < 4; j++)
            t[j] = (kiln_tensor){.dtype = KILN_F32, .ndim = 3, .shape = {p.B, p.Tq, (int64_t)p.H * p.D}, .buffer = buf[j]};
        for (int j = 0; st == KILN_OK && j < 3; j++) st = kiln_vk_upload(be, &t[j], (const float *[]){q, k, v}[j], n * 4);
        for (int a = 0; st == KILN_OK && a < KILN_VK_ATTENTIONS; a++) {
            if (!allowed[a]) continue;
            only_attention(vk, a);
            st = attention_op(be, &p, (const kiln_tensor *[]){&t[0], &t[1], &t[2], NULL}, &t[3]);
            if (st == KILN_OK) st = kiln_vk_download(be, &t[3], got, n * 4);
            double e = st == KILN_OK ? rel_l2(got, want, n) : INFINITY;
            worst[a] = e > worst[a] ? e : worst[a];
        }
    }
    keep_what_passed(KILN_VK_ATTENTIONS, allowed, worst, st == KILN_OK, tolerance, vk->attention, vk->attention_failed,
                     errors);
    free(host);
    return tuning_done(be, st, buf, 4);
}

/* One of kiln_vk_check_gemms' cases on the device (matmul, or conv where
 * conv is not NULL), its output into got. */
typedef struct gemm_case {
    kiln_matmul_params mm;
    kiln_conv2d_params conv; /* N == 0: a matmul */
} gemm_case;

static kiln_status run_gemm_case(kiln_backend *be, const gemm_case *c, kiln_buffer *const buf[4], float *got,
                                 size_t n)
{
    kiln_tensor x = {.dtype = KILN_F32, .ndim = 1, .buffer = buf[0]};
    kiln_tensor w = {.dtype = KILN_F16, .ndim = 1, .buffer = buf[1]};
    kiln_tensor bias = {.dtype = KILN_F16, .ndim = 1, .buffer = buf[2]};
    kiln_tensor y = {.dtype = KILN_F32, .ndim = 1, .shape = {(int64_t)n}, .buffer = buf[3]};
    const kiln_tensor *src[3] = {&x, &w, &bias};
    if (c->conv.N) {
        const kiln_conv2d_params *p = &c->conv;
        x.shape[0] = (int64_t)p->N * p->C * p->H * p->W;
        w.shape[0] = (int64_t)p->O * p->C * p->KH * p->KW;
        bias.shape[0] = p->O;
        TRY(be->ops->conv2d(be, p, src, &y));
    } else {
        x.shape[0] = (int64_t)c->mm.M * c->mm.K;
        w.shape[0] = (int64_t)c->mm.N * c->mm.K;
        bias.shape[0] = c->mm.N;
        if (!c->mm.has_bias) src[2] = NULL;
        TRY(be->ops->matmul(be, &c->mm, src, &y));
    }
    return kiln_vk_download(be, &y, got, n * sizeof(float));
}

kiln_status kiln_vk_check_gemms(kiln_backend *be, double tolerance, double errors[KILN_VK_GEMM_KERNELS])
{
    kiln_vk *vk = kiln_vk_of(be);
    /* Partial tiles of 64 and 128 rows and of 64 columns, K steps of 64
     * with a partial last one, rows of 16 bytes (vector loads) and not
     * (K 2052), a K split into shares (few tiles, a long K), a bias, and a
     * 3x3 conv: its column matrix and its output along M; then a matmul and
     * a conv of whole 128x64 tiles and K steps of 32, which the
     * workgroup-scope GEMM takes (the others go to 64x64 tiles there). */
    static const gemm_case cases[] = {
        {.mm = {200, 136, 328, 1}},
        {.mm = {64, 72, 2052, 0}},
        {.conv = {1, 24, 18, 18, 40, 3, 3, 1, 1, 18, 18}},
        {.mm = {256, 128, 352, 1}},
        {.conv = {1, 32, 16, 16, 64, 3, 3, 1, 1, 16, 16}},
    };
    enum { X = 64 * 2052, W = 72 * 2052, B = 136, Y = 256 * 128 }; /* the most of each the cases take */
    float *host = malloc((size_t)(X + W + B + 2 * Y) * sizeof(float));
    uint16_t *w16 = malloc((size_t)(W + B) * sizeof(uint16_t));
    if (!host || !w16) {
        free(host);
        free(w16);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    float *x = host, *wf = x + X, *want = wf + W + B, *got = want + Y;
    arbitrary_values(x, X, 1, 1.0f);
    arbitrary_values(wf, W + B, 2, 0.0625f);
    for (size_t i = 0; i < (size_t)(W + B); i++) w16[i] = kiln_f32_to_f16(wf[i]);
    kiln_weight_ptr w = {w16, KILN_F16}, bias = {w16 + W, KILN_F16};
    kiln_buffer *buf[4] = {NULL, NULL, NULL, NULL}; /* x, w, bias, y */
    kiln_status st = kiln_vk_buffer_alloc(be, X * sizeof(float), &buf[0]);
    kiln_tensor xt = {.dtype = KILN_F32, .ndim = 1, .shape = {X}, .buffer = buf[0]};
    if (st == KILN_OK) st = kiln_vk_upload(be, &xt, x, X * sizeof(float));
    if (st == KILN_OK) st = kiln_vk_weights_place(be, w16, W * sizeof(uint16_t), &buf[1]);
    if (st == KILN_OK) st = kiln_vk_weights_place(be, w16 + W, B * sizeof(uint16_t), &buf[2]);
    if (st == KILN_OK) st = kiln_vk_buffer_alloc(be, Y * sizeof(float), &buf[3]);
    int kind = kiln_vk_gemm_kind(vk);
    bool allowed[KILN_VK_GEMM_KERNELS];
    double worst[KILN_VK_GEMM_KERNELS];
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++) allowed[i] = vk->gemm_allowed[i], worst[i] = 0.0;
    for (size_t c = 0; st == KILN_OK && c < sizeof cases / sizeof cases[0]; c++) {
        size_t n;
        if (cases[c].conv.N) {
            const kiln_conv2d_params *p = &cases[c].conv;
            n = (size_t)p->N * p->O * p->OH * p->OW;
            cpu_ref_conv2d(p, x, w, bias, want);
        } else {
            n = (size_t)cases[c].mm.M * cases[c].mm.N;
            cpu_ref_matmul(&cases[c].mm, x, w, bias, want);
        }
        for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++) {
            if (!allowed[i] || worst[i] == INFINITY) continue;
            vk->gemm_prefetch = kiln_vk_gemm_kernels[i].prefetch;
            vk->gemm_rows = kiln_vk_gemm_kernels[i].rows;
            /* A kind whose pipeline the driver will not build (the
             * workgroup-scope GEMM is the newest thing kiln asks of one)
             * misses the check, and the device stays usable without it. */
            kiln_status ran = run_gemm_case(be, &cases[c], buf, got, n);
            double e = ran == KILN_OK ? rel_l2(got, want, n) : INFINITY;
            if (ran != KILN_OK && vk->pipeline_stats)
                fprintf(stderr, "kiln vulkan check: GEMM kind %d did not run: %s\n", i, kiln_last_error());
            worst[i] = e > worst[i] ? e : worst[i];
        }
    }
    keep_what_passed(KILN_VK_GEMM_KERNELS, allowed, worst, st == KILN_OK, tolerance, vk->gemm_allowed, vk->gemm_failed,
                     errors);
    /* the kind in use stays where it passed; else the first that did */
    int first = 0;
    while (first < KILN_VK_GEMM_KERNELS && !vk->gemm_allowed[first]) first++;
    if (!vk->gemm_allowed[kind] && first < KILN_VK_GEMM_KERNELS) kind = first;
    vk->gemm_prefetch = kiln_vk_gemm_kernels[kind].prefetch;
    vk->gemm_rows = kiln_vk_gemm_kernels[kind].rows;
    free(host);
    free(w16);
    return tuning_done(be, st, buf, 4);
}
