/* The CPU backend: host buffers, weights used in place from the checkpoint's
 * mmap, and two op tables: the fast paths (cpu_matmul.c, cpu_conv2d.c,
 * cpu_attention.c, cpu_norm.c, cpu_elementwise.c) and the plain loops of
 * cpu_ref.c they are tested against.
 *
 * Threads: our pool runs every op, and each GEMM is a single-threaded sgemm
 * call made from one of its threads, so OpenBLAS is told to use one thread;
 * a BLAS without openblas_set_num_threads is called as it is. */
#include "cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resample.h"
#include "status.h"

/* Weak: present when the BLAS is OpenBLAS, NULL otherwise. */
extern void openblas_set_num_threads(int threads) __attribute__((weak));

static kiln_status cpu_buffer_alloc(kiln_backend *be, size_t bytes, kiln_buffer **out)
{
    (void)be;
    kiln_buffer *b = calloc(1, sizeof *b);
    void *mem = NULL;
    if (b && posix_memalign(&mem, 64, bytes ? bytes : 64) != 0) mem = NULL;
    if (!b || !mem) {
        free(b);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %zu bytes", bytes);
    }
    b->base = mem;
    b->size = bytes;
    b->owned = 1;
    *out = b;
    return KILN_OK;
}

static void cpu_buffer_free(kiln_backend *be, kiln_buffer *b)
{
    (void)be;
    if (!b) return;
    if (b->owned) free(b->base);
    free(b);
}

static kiln_status cpu_weights_place(kiln_backend *be, const void *host, size_t bytes, kiln_buffer **out)
{
    (void)be;
    kiln_buffer *b = calloc(1, sizeof *b);
    if (!b) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    b->base = (void *)host; /* read only: no op writes to a weight */
    b->size = bytes;
    *out = b;
    return KILN_OK;
}

static kiln_status cpu_upload(kiln_backend *be, const kiln_tensor *dst, const void *src, size_t bytes)
{
    (void)be;
    memcpy(cpu_ptr(dst), src, bytes);
    return KILN_OK;
}

static kiln_status cpu_download(kiln_backend *be, const kiln_tensor *src, void *dst, size_t bytes)
{
    (void)be;
    memcpy(dst, cpu_ptr(src), bytes);
    return KILN_OK;
}

static kiln_status cpu_synchronize(kiln_backend *be)
{
    (void)be;
    return KILN_OK;
}

kiln_status cpu_scratch_reserve(cpu_state *s, size_t shared, size_t local)
{
    if (shared > s->shared_cap) {
        free(s->shared);
        s->shared_cap = 0;
        if (posix_memalign((void **)&s->shared, 64, shared * sizeof(float)) != 0) {
            s->shared = NULL;
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %zu bytes of scratch", shared * sizeof(float));
        }
        s->shared_cap = shared;
    }
    if (local > s->local_cap) {
        for (int t = 0; t < s->threads; t++) {
            free(s->local[t]);
            s->local[t] = NULL;
        }
        s->local_cap = 0;
        for (int t = 0; t < s->threads; t++)
            if (posix_memalign((void **)&s->local[t], 64, local * sizeof(float)) != 0) {
                s->local[t] = NULL;
                return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: cannot allocate %d x %zu bytes of thread scratch",
                                 s->threads, local * sizeof(float));
            }
        s->local_cap = local;
    }
    return KILN_OK;
}

static void cpu_destroy(kiln_backend *be)
{
    cpu_state *s = be->impl;
    if (s) {
        cpu_pool_free(s->pool);
        free(s->shared);
        for (int t = 0; s->local && t < s->threads; t++) free(s->local[t]);
        free(s->local);
        free(s);
    }
    free(be);
}

#define SRC(i) cpu_ptr(src[i])
#define OPTIONAL_SRC(i) (src[i] ? (const float *)cpu_ptr(src[i]) : NULL)
#define OUT cpu_ptr(dst)

/* The reference table: every op is its plain loop from cpu_ref.c. */
#define REF_OP(name, ...)                                                                        \
    static kiln_status ref_##name(kiln_backend *be, const kiln_##name##_params *p,              \
                                  const kiln_tensor *const *src, kiln_tensor *dst)              \
    {                                                                                            \
        (void)be;                                                                                \
        cpu_ref_##name(p, __VA_ARGS__);                                                          \
        return KILN_OK;                                                                          \
    }
REF_OP(matmul, SRC(0), cpu_weight(src[1]), cpu_weight(p->has_bias ? src[2] : NULL), OUT)
REF_OP(conv2d, SRC(0), cpu_weight(src[1]), cpu_weight(src[2]), OUT)
REF_OP(group_norm, SRC(0), cpu_weight(src[1]), cpu_weight(src[2]), OUT)
REF_OP(layer_norm, SRC(0), cpu_weight(src[1]), cpu_weight(src[2]), OUT)
REF_OP(rms_norm, SRC(0), cpu_weight(src[1]), OUT)
REF_OP(ada_layer_norm, SRC(0), SRC(1), cpu_weight(src[2]), OUT)
REF_OP(rope, SRC(0), SRC(1), OUT)
REF_OP(softmax, SRC(0), OUT)
REF_OP(silu, SRC(0), OUT)
REF_OP(sigmoid, SRC(0), OUT)
REF_OP(activation, SRC(0), OUT)
REF_OP(gelu, SRC(0), OUT)
REF_OP(quick_gelu, SRC(0), OUT)
REF_OP(gelu_tanh, SRC(0), OUT)
REF_OP(geglu, SRC(0), OUT)
REF_OP(add, SRC(0), SRC(1), OUT)
REF_OP(gated_add, SRC(0), SRC(1), SRC(2), cpu_weight(src[3]), OUT)
REF_OP(mul, SRC(0), SRC(1), OUT)
REF_OP(scale, SRC(0), OUT)
REF_OP(leaky_relu, SRC(0), OUT)
REF_OP(add_channel_bias, SRC(0), SRC(1), OUT)
REF_OP(concat_channels, SRC(0), SRC(1), OUT)
REF_OP(upsample_nearest2x, SRC(0), OUT)
REF_OP(timestep_embedding, SRC(0), OUT)
REF_OP(transpose, SRC(0), OUT)
REF_OP(embedding, SRC(0), cpu_weight(src[1]), OUT)
REF_OP(pad2d, SRC(0), OUT)
REF_OP(resize, SRC(0), OUT)
REF_OP(slerp_resize, SRC(0), OUT)
REF_OP(prelu, SRC(0), cpu_weight(src[1]), OUT)
REF_OP(pixel_shuffle, SRC(0), OUT)
REF_OP(avg_pool2x2, SRC(0), OUT)

static kiln_status ref_attention(kiln_backend *be, const kiln_attention_params *p, const kiln_tensor *const *src,
                                 kiln_tensor *dst)
{
    (void)be;
    float *scores = malloc((size_t)p->Tk * sizeof *scores);
    if (!scores) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu attention: out of host memory");
    cpu_ref_attention(p, SRC(0), SRC(1), SRC(2), OPTIONAL_SRC(3), OUT, scores);
    free(scores);
    return KILN_OK;
}

static kiln_status ref_freeu_backbone(kiln_backend *be, const kiln_freeu_backbone_params *p,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    (void)be;
    float *means = p->v2 ? malloc((size_t)p->HW * sizeof *means) : NULL;
    if (p->v2 && !means) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu freeu_backbone: out of host memory");
    cpu_ref_freeu_backbone(p, SRC(0), OUT, means);
    free(means);
    return KILN_OK;
}

static kiln_status ref_fourier_filter(kiln_backend *be, const kiln_fourier_filter_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    (void)be;
    float *twiddles = malloc(2 * ((size_t)p->H + p->W) * sizeof *twiddles);
    if (!twiddles) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu fourier_filter: out of host memory");
    cpu_ref_fourier_filter(p, SRC(0), OUT, twiddles);
    free(twiddles);
    return KILN_OK;
}

static const kiln_backend_ops cpu_reference_ops = {
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .weights_place = cpu_weights_place,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .destroy = cpu_destroy,
#define KILN_OP(name, nsrc, doc) .name = ref_##name,
#include "ops.def"
#undef KILN_OP
};

/* The fast table: the op's fast path on the backend's state. */
#define FAST_OP(name, ...)                                                                       \
    static kiln_status fast_##name(kiln_backend *be, const kiln_##name##_params *p,             \
                                   const kiln_tensor *const *src, kiln_tensor *dst)             \
    {                                                                                            \
        return cpu_##name(be->impl, p, __VA_ARGS__);                                             \
    }
#define FAST_VOID_OP(name, ...)                                                                  \
    static kiln_status fast_##name(kiln_backend *be, const kiln_##name##_params *p,             \
                                   const kiln_tensor *const *src, kiln_tensor *dst)             \
    {                                                                                            \
        cpu_##name(be->impl, p, __VA_ARGS__);                                                    \
        return KILN_OK;                                                                          \
    }
FAST_OP(matmul, SRC(0), cpu_weight(src[1]), cpu_weight(p->has_bias ? src[2] : NULL), OUT)
FAST_OP(conv2d, SRC(0), cpu_weight(src[1]), cpu_weight(src[2]), OUT)
FAST_OP(attention, SRC(0), SRC(1), SRC(2), OPTIONAL_SRC(3), OUT)
FAST_OP(layer_norm, SRC(0), cpu_weight(src[1]), cpu_weight(src[2]), OUT)
FAST_OP(rms_norm, SRC(0), cpu_weight(src[1]), OUT)
FAST_OP(ada_layer_norm, SRC(0), SRC(1), cpu_weight(src[2]), OUT)
FAST_OP(gated_add, SRC(0), SRC(1), SRC(2), cpu_weight(src[3]), OUT)
FAST_VOID_OP(group_norm, SRC(0), cpu_weight(src[1]), cpu_weight(src[2]), OUT)
FAST_VOID_OP(rope, SRC(0), SRC(1), OUT)
FAST_VOID_OP(softmax, SRC(0), OUT)
FAST_VOID_OP(silu, SRC(0), OUT)
FAST_VOID_OP(sigmoid, SRC(0), OUT)
FAST_VOID_OP(activation, SRC(0), OUT)
FAST_VOID_OP(gelu, SRC(0), OUT)
FAST_VOID_OP(quick_gelu, SRC(0), OUT)
FAST_VOID_OP(gelu_tanh, SRC(0), OUT)
FAST_VOID_OP(geglu, SRC(0), OUT)
FAST_VOID_OP(add, SRC(0), SRC(1), OUT)
FAST_VOID_OP(mul, SRC(0), SRC(1), OUT)
FAST_VOID_OP(scale, SRC(0), OUT)
FAST_VOID_OP(leaky_relu, SRC(0), OUT)
FAST_VOID_OP(add_channel_bias, SRC(0), SRC(1), OUT)
FAST_VOID_OP(concat_channels, SRC(0), SRC(1), OUT)
FAST_VOID_OP(upsample_nearest2x, SRC(0), OUT)
FAST_VOID_OP(transpose, SRC(0), OUT)

/* Tiny ops whose plain loop is all there is to do. */
#define SAME_AS_REF(name)                                                                        \
    static kiln_status fast_##name(kiln_backend *be, const kiln_##name##_params *p,             \
                                   const kiln_tensor *const *src, kiln_tensor *dst)             \
    {                                                                                            \
        return ref_##name(be, p, src, dst);                                                      \
    }
SAME_AS_REF(timestep_embedding)
SAME_AS_REF(embedding)
SAME_AS_REF(pad2d)
/* FreeU's: a few passes over a decoder block's input, next to its convs */
SAME_AS_REF(freeu_backbone)
SAME_AS_REF(fourier_filter)

/* The memory-bound ops below hand out their items (planes, rows) in chunks
 * of at least CHUNK_OUTPUTS outputs: small items (a UNet level of 320
 * channels) would cost more to hand out than to compute. */
enum { CHUNK_OUTPUTS = 16384 };
static int64_t grain_of(int64_t outputs_per_item)
{
    return outputs_per_item < CHUNK_OUTPUTS ? CHUNK_OUTPUTS / outputs_per_item : 1;
}

/* resize: kiln_resample, as the reference, on each thread's share of the planes */
typedef struct resize_job {
    const kiln_resize_params *p;
    const float *x;
    float *y;
} resize_job;

static void resize_planes(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const resize_job *j = ctx;
    const kiln_resize_params *p = j->p;
    kiln_resample(j->x + (size_t)begin * p->H * p->W, (int)(end - begin), p->H, p->W,
                  j->y + (size_t)begin * p->OH * p->OW, p->OH, p->OW, (kiln_resample_method)p->method);
}

static kiln_status fast_resize(kiln_backend *be, const kiln_resize_params *p, const kiln_tensor *const *src,
                               kiln_tensor *dst)
{
    cpu_state *s = be->impl;
    cpu_parallel_for(s->pool, (int64_t)p->N * p->C, grain_of((int64_t)p->OH * p->OW), resize_planes,
                     &(resize_job){p, SRC(0), OUT});
    return KILN_OK;
}

/* slerp_resize: the reference's rows, each thread's share of them; every
 * row holds all C channels of its pixels, which the slerp mixes */
typedef struct slerp_resize_job {
    const kiln_slerp_resize_params *p;
    const float *x;
    float *y;
} slerp_resize_job;

static void slerp_resize_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const slerp_resize_job *j = ctx;
    cpu_ref_slerp_resize_rows(j->p, j->x, j->y, begin, end);
}

static kiln_status fast_slerp_resize(kiln_backend *be, const kiln_slerp_resize_params *p,
                                     const kiln_tensor *const *src, kiln_tensor *dst)
{
    cpu_state *s = be->impl;
    const int64_t rows = p->axis == 0 ? p->H : p->out, cols = p->axis == 0 ? p->out : p->W;
    cpu_parallel_for(s->pool, (int64_t)p->N * rows, grain_of(cols * p->C), slerp_resize_rows,
                     &(slerp_resize_job){p, SRC(0), OUT});
    return KILN_OK;
}

/* prelu: each thread's share of the (n, c) planes, the slope widened once a plane */
typedef struct prelu_job {
    const kiln_prelu_params *p;
    const float *x;
    kiln_weight_ptr slope;
    float *y;
} prelu_job;

static void prelu_planes(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const prelu_job *j = ctx;
    int64_t HW = j->p->HW;
    for (int64_t nc = begin; nc < end; nc++) {
        float s = kiln_load_f32(j->slope.data, j->slope.dtype, (size_t)(nc % j->p->C));
        const float *x = j->x + nc * HW;
        float *y = j->y + nc * HW;
        for (int64_t i = 0; i < HW; i++) y[i] = x[i] >= 0.0f ? x[i] : s * x[i];
    }
}

static kiln_status fast_prelu(kiln_backend *be, const kiln_prelu_params *p, const kiln_tensor *const *src,
                              kiln_tensor *dst)
{
    cpu_state *s = be->impl;
    cpu_parallel_for(s->pool, (int64_t)p->N * p->C, grain_of(p->HW), prelu_planes,
                     &(prelu_job){p, SRC(0), cpu_weight(src[1]), OUT});
    return KILN_OK;
}

/* pixel_shuffle: by output rows, so that each thread writes whole rows in
 * order and gathers from the r planes that feed them */
typedef struct pixel_shuffle_job {
    const kiln_pixel_shuffle_params *p;
    const float *x;
    float *y;
} pixel_shuffle_job;

static void pixel_shuffle_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const pixel_shuffle_job *j = ctx;
    const kiln_pixel_shuffle_params *p = j->p;
    int64_t r = p->r, OH = p->H * r, OW = p->W * r, plane = (int64_t)p->H * p->W;
    for (int64_t row = begin; row < end; row++) {
        int64_t nc = row / OH, oh = row % OH;
        const float *x = j->x + (nc * r + oh % r) * r * plane + oh / r * p->W;
        float *y = j->y + row * OW;
        for (int64_t ow = 0; ow < OW; ow++) y[ow] = x[ow % r * plane + ow / r];
    }
}

static kiln_status fast_pixel_shuffle(kiln_backend *be, const kiln_pixel_shuffle_params *p,
                                      const kiln_tensor *const *src, kiln_tensor *dst)
{
    cpu_state *s = be->impl;
    cpu_parallel_for(s->pool, (int64_t)p->N * p->C * p->H * p->r, grain_of((int64_t)p->W * p->r),
                     pixel_shuffle_rows, &(pixel_shuffle_job){p, SRC(0), OUT});
    return KILN_OK;
}

/* avg_pool2x2: by output rows, as pixel_shuffle, each from the two input
 * rows of its windows (one where padding takes the other). Windows wholly
 * inside x take the four taps unchecked; the padded edges (the first and
 * last output row and column at most) go tap by tap in the same order. */
typedef struct avg_pool2x2_job {
    const kiln_avg_pool2x2_params *p;
    const float *x;
    float *y;
} avg_pool2x2_job;

/* the window at column w0 of the rows top and bottom (NULL: padding) */
static float edge_window(const float *top, const float *bottom, int64_t w0, int64_t W)
{
    const float *rows[2] = {top, bottom};
    float sum = 0.0f;
    for (int k = 0; k < 2; k++) {
        if (!rows[k]) continue;
        if (w0 >= 0) sum += rows[k][w0];
        if (w0 + 1 < W) sum += rows[k][w0 + 1];
    }
    return sum * 0.25f;
}

static void avg_pool2x2_rows(void *ctx, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const avg_pool2x2_job *j = ctx;
    const kiln_avg_pool2x2_params *p = j->p;
    int64_t H = p->H, W = p->W, OH = (H + 2 * p->pad_h) / 2, OW = (W + 2 * p->pad_w) / 2;
    /* output columns [first, last) read no padding */
    int64_t first = p->pad_w, last = 2 * (OW - 1) - p->pad_w + 1 < W ? OW : OW - 1;
    for (int64_t row = begin; row < end; row++) {
        int64_t nc = row / OH, h0 = 2 * (row % OH) - p->pad_h;
        const float *plane = j->x + nc * H * W;
        const float *top = h0 >= 0 ? plane + h0 * W : NULL, *bottom = h0 + 1 < H ? plane + (h0 + 1) * W : NULL;
        float *y = j->y + row * OW;
        if (!top || !bottom) {
            for (int64_t ow = 0; ow < OW; ow++) y[ow] = edge_window(top, bottom, 2 * ow - p->pad_w, W);
            continue;
        }
        for (int64_t ow = 0; ow < first; ow++) y[ow] = edge_window(top, bottom, 2 * ow - p->pad_w, W);
        for (int64_t ow = first; ow < last; ow++) {
            int64_t w0 = 2 * ow - p->pad_w;
            y[ow] = (top[w0] + top[w0 + 1] + bottom[w0] + bottom[w0 + 1]) * 0.25f;
        }
        for (int64_t ow = last; ow < OW; ow++) y[ow] = edge_window(top, bottom, 2 * ow - p->pad_w, W);
    }
}

static kiln_status fast_avg_pool2x2(kiln_backend *be, const kiln_avg_pool2x2_params *p, const kiln_tensor *const *src,
                                    kiln_tensor *dst)
{
    cpu_state *s = be->impl;
    int64_t OH = (p->H + 2 * p->pad_h) / 2, OW = (p->W + 2 * p->pad_w) / 2;
    cpu_parallel_for(s->pool, (int64_t)p->N * p->C * OH, grain_of(OW), avg_pool2x2_rows,
                     &(avg_pool2x2_job){p, SRC(0), OUT});
    return KILN_OK;
}

static const kiln_backend_ops cpu_ops = {
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .weights_place = cpu_weights_place,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .destroy = cpu_destroy,
#define KILN_OP(name, nsrc, doc) .name = fast_##name,
#include "ops.def"
#undef KILN_OP
};

static kiln_status create(const kiln_backend_options *opt, const kiln_backend_ops *ops, kiln_backend **out)
{
    kiln_backend *be = calloc(1, sizeof *be);
    cpu_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    }
    be->ops = ops;
    be->kind = KILN_BACKEND_CPU;
    be->compute = KILN_F32;
    be->name = ops == &cpu_ops ? "cpu" : "cpu-reference";
    be->impl = s;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    be->threads = opt && opt->threads > 0 ? opt->threads : (int)(cores > 0 ? cores : 1);
    if (ops == &cpu_reference_ops) be->threads = 1; /* plain loops run on the caller's thread */
    snprintf(be->device_name, sizeof be->device_name, "host CPU, %d thread%s", be->threads,
             be->threads == 1 ? "" : "s");
    s->threads = be->threads;
    s->local = calloc((size_t)s->threads, sizeof *s->local);
    kiln_status st = s->local ? cpu_pool_create(s->threads, &s->pool)
                              : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    if (st != KILN_OK) {
        cpu_destroy(be);
        return st;
    }
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    *out = be;
    return KILN_OK;
}

kiln_status kiln_backend_cpu_create(const kiln_backend_options *opt, kiln_backend **out)
{
    return create(opt, &cpu_ops, out);
}

kiln_status kiln_backend_cpu_reference_create(const kiln_backend_options *opt, kiln_backend **out)
{
    return create(opt, &cpu_reference_ops, out);
}
