/* Choices the Vulkan backend leaves to the device: where it has correct
 * alternatives whose speed depends on the GPU (how many registers the driver
 * gives a shader, how many workgroups then share a multiprocessor, how long
 * a load takes), it times them when the device opens (vulkan_device.c) and
 * keeps the fastest, as cuDNN's benchmark mode does:
 *   - how many K steps ahead the tensor-core GEMMs load their operands
 *     (vk->gemm_prefetch: 1, 2 or 3);
 *   - whether the tensor-core attention keeps its softmax in registers
 *     (attention_registers.comp) or takes it through shared memory
 *     (attention_coopmat.comp) (vk->register_softmax);
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

#include <stdlib.h>

#include "status.h"

/* A device buffer of n elements (f32, or f16 for weights) of values in
 * [-scale, scale), placed as the op will read them: weights through
 * weights_place, activations uploaded. */
static kiln_status random_buffer(kiln_backend *be, uint64_t n, kiln_dtype dtype, float scale, kiln_buffer **out)
{
    *out = NULL;
    size_t esize = kiln_dtype_size(dtype);
    void *host = malloc((size_t)n * esize);
    if (!host) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    uint32_t bits = 0x2545f491u ^ (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        bits ^= bits << 13, bits ^= bits >> 17, bits ^= bits << 5;
        float v = scale * ((float)(bits >> 8) / (float)(1u << 23) - 1.0f);
        if (dtype == KILN_F16) ((uint16_t *)host)[i] = kiln_f32_to_f16(v);
        else ((float *)host)[i] = v;
    }
    kiln_status st;
    if (dtype == KILN_F16) {
        st = kiln_vk_weights_place(be, host, (size_t)n * esize, out);
    } else {
        st = kiln_vk_buffer_alloc(be, (size_t)n * esize, out);
        kiln_tensor t = {.dtype = dtype, .ndim = 1, .shape = {(int64_t)n}, .buffer = *out};
        if (st == KILN_OK) st = kiln_vk_upload(be, &t, host, (size_t)n * esize);
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

/* Operands 1, 2 and 3 K steps ahead; the fastest kept. */
static kiln_status tune_prefetch(kiln_backend *be, const uint32_t (*shapes)[3], int nshapes, kiln_buffer *const buf[3],
                                 double seconds[3])
{
    kiln_vk *vk = kiln_vk_of(be);
    kiln_status st = KILN_OK;
    uint32_t kept = vk->gemm_prefetch, best = kept;
    double best_total = 0.0;
    for (uint32_t ahead = 1; st == KILN_OK && ahead <= 3; ahead++) {
        vk->gemm_prefetch = ahead;
        double total = 0.0;
        st = time_matmuls(be, shapes, nshapes, buf, &total);
        if (seconds) seconds[ahead - 1] = total;
        if (st == KILN_OK && (ahead == 1 || total < best_total)) best = ahead, best_total = total;
    }
    vk->gemm_prefetch = st == KILN_OK ? best : kept;
    vk->gemm_prefetch_tuned = st == KILN_OK;
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

kiln_status kiln_vk_tune_gemms(kiln_backend *be, const uint32_t (*prefetch_shapes)[3], int nprefetch,
                               double prefetch_seconds[3], const uint32_t (*split_shapes)[3], int nsplit,
                               double split_seconds[2])
{
    kiln_vk *vk = kiln_vk_of(be);
    if (!vk->timestamp_bits) return KILN_OK;
    if (vk->coopmat == KILN_VK_COOPMAT_NONE) nprefetch = 0;
    if (nprefetch == 0 && nsplit == 0) return KILN_OK;
    /* one set of operands, as large as the largest shape of either */
    uint64_t n[3] = {0, 0, 0};
    gemm_sizes(prefetch_shapes, nprefetch, n);
    gemm_sizes(split_shapes, nsplit, n);
    kiln_buffer *buf[3] = {NULL, NULL, NULL}; /* x, w, y */
    kiln_status st = random_buffer(be, n[0], KILN_F32, 1.0f, &buf[0]);
    if (st == KILN_OK) st = random_buffer(be, n[1], KILN_F16, 0.0625f, &buf[1]);
    if (st == KILN_OK) st = kiln_vk_buffer_alloc(be, (size_t)n[2] * sizeof(float), &buf[2]);
    /* a prefetch timing that fails leaves the split one to try */
    kiln_status prefetch_st = st, split_st = st;
    if (st == KILN_OK && nprefetch) prefetch_st = tune_prefetch(be, prefetch_shapes, nprefetch, buf, prefetch_seconds);
    if (st == KILN_OK && nsplit) split_st = tune_split(be, split_shapes, nsplit, buf, split_seconds);
    return tuning_done(be, prefetch_st != KILN_OK ? prefetch_st : split_st, buf, 3);
}

kiln_status kiln_vk_tune_register_softmax(kiln_backend *be, const uint32_t (*shapes)[4], int nshapes, double seconds[2])
{
    kiln_vk *vk = kiln_vk_of(be);
    if (!vk->timestamp_bits || !vk->register_softmax) return KILN_OK;
    uint64_t n = 0;
    for (int i = 0; i < nshapes; i++) {
        uint64_t elements = (uint64_t)shapes[i][0] * shapes[i][1] * shapes[i][2] * shapes[i][3];
        n = elements > n ? elements : n;
    }
    kiln_buffer *buf[4] = {NULL, NULL, NULL, NULL}; /* q, k, v, o */
    kiln_status st = KILN_OK;
    for (int i = 0; st == KILN_OK && i < 3; i++) st = random_buffer(be, n, KILN_F32, 1.0f, &buf[i]);
    if (st == KILN_OK) st = kiln_vk_buffer_alloc(be, (size_t)n * sizeof(float), &buf[3]);
    double total[2] = {0.0, 0.0}; /* through shared memory, in registers */
    for (int in_registers = 0; st == KILN_OK && in_registers <= 1; in_registers++) {
        vk->register_softmax = in_registers;
        for (int i = 0; st == KILN_OK && i < nshapes; i++) {
            const uint32_t *sh = shapes[i];
            kiln_attention_params p = {(int32_t)sh[0], (int32_t)sh[1], (int32_t)sh[2], (int32_t)sh[2], (int32_t)sh[3],
                                       0.125f, 0};
            kiln_tensor t[4];
            for (int j = 0; j < 4; j++)
                t[j] = (kiln_tensor){.dtype = KILN_F32, .ndim = 3, .shape = {p.B, p.Tq, (int64_t)p.H * p.D},
                                     .buffer = buf[j]};
            double s = 0.0;
            st = fastest_run(be, attention_op, &p, (const kiln_tensor *[]){&t[0], &t[1], &t[2]}, &t[3], &s);
            total[in_registers] += s;
        }
    }
    if (seconds) seconds[0] = total[0], seconds[1] = total[1];
    vk->register_softmax = st != KILN_OK || total[1] <= total[0];
    vk->register_softmax_tuned = st == KILN_OK;
    return tuning_done(be, st, buf, 4);
}
