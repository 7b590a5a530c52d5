/* The CUDA backend: one device, one stream, one cuBLASLt handle; device
 * buffers for activations and for weights (copied once, kept in their stored
 * dtype); ops routed to the adapters in the kernels folder. */
#include "cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>

/* cuBLASLt's own workspace: what NVIDIA suggests for Hopper, ample for Ampere. */
#define CUDA_LT_WORKSPACE_BYTES ((size_t)32 << 20)
/* Scratch and cuBLASLt operands stay aligned to what its fastest kernels want. */
#define CUDA_SCRATCH_ALIGN 256

kiln_status cuda_fail(cudaError_t err, const char *call, const char *file, int line)
{
    return kiln_fail(KILN_ERR_BACKEND, "%s:%d: %s: %s (%s)", file, line, call, cudaGetErrorString(err),
                     cudaGetErrorName(err));
}

kiln_status cublas_fail(cublasStatus_t st, const char *call, const char *file, int line)
{
    return kiln_fail(KILN_ERR_BACKEND, "%s:%d: %s: cuBLAS status %d", file, line, call, (int)st);
}

kiln_status cuda_enter(kiln_backend *be, cuda_state **out)
{
    cuda_state *s = cuda_state_of(be);
    CUDA_TRY(cudaSetDevice(s->device));
    *out = s;
    return KILN_OK;
}

kiln_status cuda_scratch(cuda_state *s, size_t bytes, void **out)
{
    if (bytes > s->scratch_bytes) {
        /* ops already enqueued may still read the old region */
        CUDA_TRY(cudaStreamSynchronize(s->stream));
        if (s->scratch && s->recordings) {
            void **grown_list = realloc(s->retired, (size_t)(s->nretired + 1) * sizeof *grown_list);
            if (!grown_list) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
            s->retired = grown_list;
            s->retired[s->nretired++] = s->scratch;
        } else if (s->scratch) {
            CUDA_TRY(cudaFree(s->scratch));
        }
        s->scratch = NULL;
        s->scratch_bytes = 0;
        size_t grown = bytes + bytes / 4; /* a little headroom against creeping sizes */
        if (cudaMalloc(&s->scratch, grown) != cudaSuccess) {
            (void)cudaGetLastError();
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda: cannot allocate %zu bytes of op scratch", grown);
        }
        s->scratch_bytes = grown;
    }
    *out = s->scratch;
    return KILN_OK;
}

kiln_dtype cuda_gemm_type(const cuda_state *s, kiln_dtype weight)
{
    if (s->compute == KILN_F32) return KILN_F32;
    if (weight == KILN_F16 || weight == KILN_BF16) return weight;
    return s->compute;
}

static kiln_status cuda_buffer_alloc(kiln_backend *be, size_t bytes, kiln_buffer **out)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    kiln_buffer *b = calloc(1, sizeof *b);
    if (!b) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    if (cudaMalloc(&b->dev, bytes ? bytes : CUDA_SCRATCH_ALIGN) != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        free(b);
        size_t free_bytes = 0, total = 0;
        cudaMemGetInfo(&free_bytes, &total);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda: cannot allocate %zu bytes on %s (%zu MiB free of %zu MiB)",
                         bytes, be->device_name, free_bytes >> 20, total >> 20);
    }
    b->size = bytes;
    *out = b;
    return KILN_OK;
}

static void cuda_buffer_free(kiln_backend *be, kiln_buffer *b)
{
    if (!b) return;
    cudaSetDevice(cuda_state_of(be)->device);
    cudaFree(b->dev); /* waits for work that may still use it */
    free(b);
}

/* Weights are copied once, in their stored dtype; kernels widen them. */
static kiln_status cuda_weights_place(kiln_backend *be, const void *host, size_t bytes, kiln_buffer **out)
{
    kiln_buffer *b = NULL;
    TRY(cuda_buffer_alloc(be, bytes, &b));
    cudaError_t err = cudaMemcpy(b->dev, host, bytes, cudaMemcpyHostToDevice);
    if (err != cudaSuccess) {
        cuda_buffer_free(be, b);
        return cuda_fail(err, "cudaMemcpy(weights)", __FILE__, __LINE__);
    }
    *out = b;
    return KILN_OK;
}

static kiln_status check_span(const kiln_tensor *t, size_t bytes, const char *what)
{
    if (t->offset > t->buffer->size || bytes > t->buffer->size - t->offset)
        return kiln_fail(KILN_ERR_INVALID_ARG, "cuda %s: %zu bytes at offset %zu overrun a buffer of %zu bytes", what,
                         bytes, t->offset, t->buffer->size);
    return KILN_OK;
}

/* From pageable memory the copy is staged before the call returns, so `src`
 * may be reused at once; the copy is ordered with the ops on the stream. */
static kiln_status cuda_upload(kiln_backend *be, const kiln_tensor *dst, const void *src, size_t bytes)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    TRY(check_span(dst, bytes, "upload"));
    CUDA_TRY(cudaMemcpyAsync(cuda_ptr(dst), src, bytes, cudaMemcpyHostToDevice, s->stream));
    return KILN_OK;
}

static kiln_status cuda_download(kiln_backend *be, const kiln_tensor *src, void *dst, size_t bytes)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    TRY(check_span(src, bytes, "download"));
    CUDA_TRY(cudaMemcpyAsync(dst, cuda_ptr(src), bytes, cudaMemcpyDeviceToHost, s->stream));
    CUDA_TRY(cudaStreamSynchronize(s->stream));
    return KILN_OK;
}

static kiln_status cuda_synchronize(kiln_backend *be)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    CUDA_TRY(cudaStreamSynchronize(s->stream));
    return KILN_OK;
}

/* Profiling: events on the stream around the ops between. */
static kiln_status cuda_time_begin(kiln_backend *be)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    for (int i = 0; i < 2; i++)
        if (!s->timer[i]) CUDA_TRY(cudaEventCreate(&s->timer[i]));
    CUDA_TRY(cudaEventRecord(s->timer[0], s->stream));
    return KILN_OK;
}

static kiln_status cuda_time_end(kiln_backend *be, double *seconds)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    CUDA_TRY(cudaEventRecord(s->timer[1], s->stream));
    CUDA_TRY(cudaEventSynchronize(s->timer[1]));
    float ms = 0.0f;
    CUDA_TRY(cudaEventElapsedTime(&ms, s->timer[0], s->timer[1]));
    *seconds = 1e-3 * ms;
    return KILN_OK;
}

/* ---- recording: a stream capture into a CUDA graph, replayed with one launch */

struct kiln_recording {
    cudaGraphExec_t exec;
};

static void free_retired(cuda_state *s)
{
    for (int i = 0; i < s->nretired; i++) cudaFree(s->retired[i]);
    free(s->retired);
    s->retired = NULL;
    s->nretired = 0;
}

static kiln_status cuda_record_begin(kiln_backend *be)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    /* relaxed: the ops' cudaFuncSetAttribute calls are not stream work */
    CUDA_TRY(cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeRelaxed));
    return KILN_OK;
}

static kiln_status cuda_record_end(kiln_backend *be, kiln_recording **out)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamEndCapture(s->stream, &graph);
    if (!out) { /* discarding after a failed op: keep that op's message */
        if (graph) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        return KILN_OK;
    }
    *out = NULL;
    if (err != cudaSuccess) return cuda_fail(err, "cudaStreamEndCapture", __FILE__, __LINE__);
    kiln_recording *rec = calloc(1, sizeof *rec);
    if (!rec) {
        cudaGraphDestroy(graph);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    }
    err = cudaGraphInstantiate(&rec->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
        free(rec);
        return cuda_fail(err, "cudaGraphInstantiate", __FILE__, __LINE__);
    }
    s->recordings++;
    *out = rec;
    return KILN_OK;
}

static kiln_status cuda_replay(kiln_backend *be, kiln_recording *rec)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    CUDA_TRY(cudaGraphLaunch(rec->exec, s->stream));
    return KILN_OK;
}

static void cuda_recording_free(kiln_backend *be, kiln_recording *rec)
{
    if (!rec) return;
    cuda_state *s = cuda_state_of(be);
    cudaSetDevice(s->device);
    cudaStreamSynchronize(s->stream); /* a replay may still be running */
    cudaGraphExecDestroy(rec->exec);
    free(rec);
    if (--s->recordings == 0) free_retired(s);
}

/* Also tears down a half-built backend: every handle is checked first. */
static void cuda_destroy(kiln_backend *be)
{
    cuda_state *s = cuda_state_of(be);
    if (s) {
        cudaSetDevice(s->device);
        if (s->stream) cudaStreamSynchronize(s->stream);
        cuda_gemm_plans_free(s);
        if (s->lt) cublasLtDestroy(s->lt);
        cudaFree(s->lt_workspace);
        cudaFree(s->scratch);
        free_retired(s);
        for (int i = 0; i < 2; i++)
            if (s->timer[i]) cudaEventDestroy(s->timer[i]);
        if (s->stream) cudaStreamDestroy(s->stream);
        free(s);
    }
    free(be);
}

static const kiln_backend_ops cuda_ops = {
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .weights_place = cuda_weights_place,
    .upload = cuda_upload,
    .download = cuda_download,
    .synchronize = cuda_synchronize,
    .time_begin = cuda_time_begin,
    .time_end = cuda_time_end,
    .record_begin = cuda_record_begin,
    .record_end = cuda_record_end,
    .replay = cuda_replay,
    .recording_free = cuda_recording_free,
    .destroy = cuda_destroy,
#define KILN_OP(name, nsrc, doc) .name = cuda_##name,
#include "ops.def"
#undef KILN_OP
};

static kiln_status cuda_init(kiln_backend *be, cuda_state *s)
{
    CUDA_TRY(cudaSetDevice(s->device));
    struct cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, s->device));
    if (prop.major < 8)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda: device %d (%s) is sm_%d%d; kiln's kernels need sm_80 or newer",
                         s->device, prop.name, prop.major, prop.minor);
    snprintf(be->device_name, sizeof be->device_name, "%.200s (sm_%d%d, %zu MiB, device %d)", prop.name, prop.major,
             prop.minor, prop.totalGlobalMem >> 20, s->device);
    s->smem_optin = (int)prop.sharedMemPerBlockOptin;
    CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(cublasLtCreate(&s->lt));
    s->lt_workspace_bytes = CUDA_LT_WORKSPACE_BYTES;
    CUDA_TRY(cudaMalloc(&s->lt_workspace, s->lt_workspace_bytes));
    return KILN_OK;
}

/* How many CUDA devices there are; an error where there are none. */
static kiln_status device_count(int *count)
{
    *count = 0;
    cudaError_t err = cudaGetDeviceCount(count);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return kiln_fail(KILN_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount: %s", cudaGetErrorString(err));
    }
    if (*count == 0) return kiln_fail(KILN_ERR_UNSUPPORTED, "no CUDA device: cudaGetDeviceCount found none");
    return KILN_OK;
}

kiln_status kiln_backend_cuda_devices(kiln_device_info *out, int max, int *count)
{
    int n;
    *count = 0;
    TRY(device_count(&n));
    for (int i = 0; i < n && i < max; i++) {
        struct cudaDeviceProp prop;
        CUDA_TRY(cudaGetDeviceProperties(&prop, i));
        kiln_device_info *info = &out[i];
        snprintf(info->name, sizeof info->name, "%s", prop.name);
        info->usable = prop.major >= 8; /* as cuda_init requires */
        info->preferred = i == 0;       /* as kiln_backend_cuda_create picks */
        info->cpu = false;
        snprintf(info->details, sizeof info->details, "sm_%d%d, %.1f GiB%s", prop.major, prop.minor,
                 (double)prop.totalGlobalMem / (1 << 30), info->usable ? "" : "; kiln's kernels need sm_80 or newer");
        *count = i + 1;
    }
    return KILN_OK;
}

kiln_status kiln_backend_cuda_create(const kiln_backend_options *opt, kiln_backend **out)
{
    *out = NULL;
    int count;
    TRY(device_count(&count));

    /* CUDA numbers devices fastest first by default, so "pick" takes 0. */
    int device = opt && opt->device >= 0 ? opt->device : 0;
    if (device >= count)
        return kiln_fail(KILN_ERR_INVALID_ARG, "--device %d: this machine has %d CUDA device%s", device, count,
                         count == 1 ? "" : "s");
    kiln_dtype compute = !opt ? KILN_F32 : opt->compute_auto ? KILN_F16 : opt->compute;
    if (compute != KILN_F32 && compute != KILN_F16 && compute != KILN_BF16)
        return kiln_fail(KILN_ERR_INVALID_ARG, "cuda: compute type %s (use F32, F16 or BF16)",
                         kiln_dtype_name(compute));

    kiln_backend *be = calloc(1, sizeof *be);
    cuda_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    }
    be->ops = &cuda_ops;
    be->kind = KILN_BACKEND_CUDA;
    be->compute = compute;
    be->name = "cuda";
    be->impl = s;
    s->device = device;
    s->compute = compute;
    kiln_status st = cuda_init(be, s);
    if (st != KILN_OK) {
        cuda_destroy(be);
        return st;
    }
    *out = be;
    return KILN_OK;
}
