/* CUDA backend internals shared by runtime/cuda_backend.c and the kernels.
 *
 * Every op is enqueued on the backend's one stream and no op synchronises the
 * host or allocates device memory once its scratch space has grown to fit
 * (the first run of a model does that), so a whole UNet step can later be
 * captured into a CUDA graph by wrapping a warmed-up run in
 * cudaStreamBeginCapture/EndCapture on `stream`.
 *
 * Each kernels/<family>.cu file holds a family's kernels, the launchers that pick
 * block sizes, and the adapters below: the vtable entries, which unpack the
 * tensors and report launch failures. */
#ifndef KILN_CUDA_BACKEND_H
#define KILN_CUDA_BACKEND_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"
#include "quant.h"
#include "status.h"

struct kiln_buffer {
    void *dev;   /* cudaMalloc'd device memory */
    size_t size; /* bytes */
};

/* A cached cuBLASLt plan for one matmul shape (kernels/gemm.cu). */
typedef struct cuda_gemm_plan cuda_gemm_plan;

typedef struct cuda_state {
    int device;
    kiln_dtype compute;   /* KILN_F32, KILN_F16 or KILN_BF16 (backend.h) */
    cudaStream_t stream;  /* every op and copy is ordered on this one stream */
    int smem_optin;       /* bytes of dynamic shared memory a block may opt into */
    cudaEvent_t timer[2]; /* time_begin/time_end's events, made on first use */

    cublasLtHandle_t lt;
    void *lt_workspace; /* cuBLASLt's split-K and similar scratch */
    size_t lt_workspace_bytes;
    cuda_gemm_plan *plans;
    int nplans, cap_plans;

    /* Per-op temporaries (operands converted to the compute type, biases
     * widened to f32). Grows by reallocation, which synchronises, so a
     * capture must come after one warm-up run. */
    void *scratch;
    size_t scratch_bytes;
    /* Live recordings (CUDA graphs) hold scratch pointers, so while any
     * exists a grown-out scratch region is retired here, not freed. */
    int recordings;
    void **retired;
    int nretired;
} cuda_state;

static inline cuda_state *cuda_state_of(kiln_backend *be) { return (cuda_state *)be->impl; }
static inline void *cuda_ptr(const kiln_tensor *t) { return (char *)t->buffer->dev + t->offset; }

/* Records "file:line: call: message" and returns KILN_ERR_BACKEND. */
kiln_status cuda_fail(cudaError_t err, const char *call, const char *file, int line);
kiln_status cublas_fail(cublasStatus_t st, const char *call, const char *file, int line);

#define CUDA_TRY(call)                                                                \
    do {                                                                              \
        cudaError_t cuda_err_ = (call);                                               \
        if (cuda_err_ != cudaSuccess) return cuda_fail(cuda_err_, #call, __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_TRY(call)                                                              \
    do {                                                                              \
        cublasStatus_t cublas_st_ = (call);                                           \
        if (cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
            return cublas_fail(cublas_st_, #call, __FILE__, __LINE__);                \
    } while (0)

/* After a kernel launch: a bad configuration shows up here, naming the kernel. */
#define CUDA_TRY_LAUNCH(kernel_name)                                                  \
    do {                                                                              \
        cudaError_t cuda_err_ = cudaGetLastError();                                   \
        if (cuda_err_ != cudaSuccess) return cuda_fail(cuda_err_, "launch " kernel_name, __FILE__, __LINE__); \
    } while (0)

/* Makes the backend's device current for this thread; every entry point
 * calls it first, since callers may use several devices. */
kiln_status cuda_enter(kiln_backend *be, cuda_state **out);

/* A device region of at least `bytes` for the current op, valid until the
 * next op is enqueued. Growing it waits for the stream. */
kiln_status cuda_scratch(cuda_state *s, size_t bytes, void **out);

/* The arithmetic type of a matmul or conv whose weights are stored as
 * `weight`: f32 in f32 mode; otherwise the weights' own half type, or the
 * backend's half type for f32 and fp8 weights (fp8 widens exactly to f16). */
kiln_dtype cuda_gemm_type(const cuda_state *s, kiln_dtype weight);

/* kernels/gemm.cu: column-major D (m x n, ld ldd, f32) = op(A) (m x k) . B
 * (k x n), both operands of `type` (cuda_gemm_type's answer). A is stored
 * k x m (ld k) when a_transposed, else m x k (ld m); B is stored k x n (ld k).
 * bias (m f32 values, or NULL; needs ldd == m and batch 1) is added to every
 * column. batch > 1 repeats the product with each operand advanced by its
 * stride (elements; 0 reuses it), in one launch where cuBLASLt allows.
 * Plans are cached per shape; uses no op scratch. */
typedef struct cuda_gemm_args {
    kiln_dtype type;
    bool a_transposed;
    int m, n, k, ldd;
    const void *a, *b;
    float *d;
    const float *bias;
    int batch;
    int64_t stride_a, stride_b, stride_d;
} cuda_gemm_args;
kiln_status cuda_gemm(cuda_state *s, const cuda_gemm_args *g);
/* Frees the cached cuBLASLt plans. */
void cuda_gemm_plans_free(cuda_state *s);

/* kernels/elementwise.cu: n elements of any float storage type, or of a
 * quantized one (whole blocks, through cuda_dequantize), to f32, f16 or
 * bf16 (round to nearest even), enqueued on the stream. */
kiln_status cuda_convert(cuda_state *s, const void *src, kiln_dtype src_dtype, void *dst, kiln_dtype dst_dtype,
                         int64_t n);
/* kernels/dequantize.cu: n values (whole blocks) of GGUF's block types
 * (runtime/quant.h) to f32, f16 or bf16: a quantized matmul weight widened
 * into scratch for the GEMM. */
kiln_status cuda_dequantize(cuda_state *s, const void *src, kiln_dtype src_dtype, void *dst, kiln_dtype dst_dtype,
                            int64_t n);

/* The vtable entries, one per op in ops.def, in the kernels folder. */
#define KILN_OP(name, nsrc, doc)                                                      \
    kiln_status cuda_##name(kiln_backend *be, const kiln_##name##_params *p,          \
                            const kiln_tensor *const *src, kiln_tensor *dst);
#include "ops.def"
#undef KILN_OP

#ifdef __cplusplus
}
#endif
#endif
