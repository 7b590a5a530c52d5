// cuda_gemm, the one cuBLASLt call behind matmul here and conv2d in conv.cu,
// and matmul (the linear layers): y (M,N) = x (M,K) @ w (N,K)^T + bias (N)
// with the bias added in cuBLASLt's epilogue.
//
// cuBLASLt wants both operands in one type, so a prologue pass on the stream
// converts what does not match the compute type (cuda_gemm_type):
//   f32 mode:      x as is; w widened to f32 unless stored f32 (f32 FMA, no TF32)
//   f16/bf16 mode: x narrowed to f16/bf16; w used as stored when it is already
//                  that type, else converted (f32, fp8 -> f16 exactly)
// The bias is always widened to f32 in 256-byte-aligned scratch, which is
// the bias type cuBLASLt expects with an f32 output, at an alignment its
// epilogue kernels accept.
//
// cuBLASLt is column-major, and a row-major (R,C) array is a column-major
// C x R matrix, so it computes y^T (N x M) = w (N x K) x^T (K x M):
//   A = w, column-major K x N (ld K), transposed     -> N x K
//   B = x, column-major K x M (ld K), not transposed -> K x M
//   D = y, column-major N x M (ld N); the epilogue's bias runs along D's N rows.
#include <stdlib.h>

#include "cuda_common.cuh"

#define GEMM_ALIGN 256

struct cuda_gemm_plan {
    int m, n, k;           // column-major D (m x n) = op(A) (m x k) B (k x n)
    int ldd;               // D's leading dimension (>= m)
    int batch;             // products in one launch
    int64_t stride_a, stride_b, stride_d; // elements between them
    int a_transposed;      // op(A) = A^T, A stored k x m
    kiln_dtype type;       // of A and B
    int has_bias;          // 1: bias epilogue; 0: plain (bias, if any, added after)
    uint32_t align_a, align_b, align_d;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
};

// ---- fallback kernel

// y (M,N) += bias (N): only when no cuBLASLt kernel takes the bias epilogue.
__global__ void add_row_bias_kernel(float *y, const float *bias, int M, int N)
{
    GRID_STRIDE(i, (int64_t)M * N) y[i] += bias[i % N];
}

// ---- plans

static cudaDataType_t cuda_type(kiln_dtype t)
{
    return t == KILN_F16 ? CUDA_R_16F : t == KILN_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

// The largest power of two (up to 256) dividing the address: cuBLASLt's
// heuristics otherwise assume 256 and pick kernels that fault on less.
static uint32_t alignment_of(uintptr_t address)
{
    uint32_t a = GEMM_ALIGN;
    while (a > 1 && address % a) a /= 2;
    return a;
}

static void plan_destroy(cuda_gemm_plan *pl)
{
    if (pl->op) cublasLtMatmulDescDestroy(pl->op);
    if (pl->a) cublasLtMatrixLayoutDestroy(pl->a);
    if (pl->b) cublasLtMatrixLayoutDestroy(pl->b);
    if (pl->d) cublasLtMatrixLayoutDestroy(pl->d);
}

extern "C" void cuda_gemm_plans_free(cuda_state *s)
{
    for (int i = 0; i < s->nplans; i++) plan_destroy(&s->plans[i]);
    free(s->plans);
    s->plans = NULL;
    s->nplans = s->cap_plans = 0;
}

// Builds descriptors and asks the heuristic for its best algorithm. `bias`
// is a representative bias pointer (only its alignment is looked at).
// *found = false when no algorithm supports the request.
static kiln_status plan_build(cuda_state *s, cuda_gemm_plan *pl, const void *bias, bool *found)
{
    cudaDataType_t t = cuda_type(pl->type);
    CUBLAS_TRY(cublasLtMatmulDescCreate(&pl->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t trans = pl->a_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, no_trans = CUBLAS_OP_N;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof trans));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof no_trans));
    if (pl->has_bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(pl->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    if (pl->a_transposed)
        CUBLAS_TRY(cublasLtMatrixLayoutCreate(&pl->a, t, (uint64_t)pl->k, (uint64_t)pl->m, pl->k));
    else
        CUBLAS_TRY(cublasLtMatrixLayoutCreate(&pl->a, t, (uint64_t)pl->m, (uint64_t)pl->k, pl->m));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&pl->b, t, (uint64_t)pl->k, (uint64_t)pl->n, pl->k));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&pl->d, CUDA_R_32F, (uint64_t)pl->m, (uint64_t)pl->n, pl->ldd));
    if (pl->batch > 1) {
        cublasLtMatrixLayout_t layouts[3] = {pl->a, pl->b, pl->d};
        int64_t strides[3] = {pl->stride_a, pl->stride_b, pl->stride_d};
        for (int i = 0; i < 3; i++) {
            CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &pl->batch,
                                                        sizeof pl->batch));
            CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                        &strides[i], sizeof strides[i]));
        }
    }

    cublasLtMatmulPreference_t pref;
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = s->lt_workspace_bytes;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                             sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &pl->align_a,
                                                  sizeof pl->align_a);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &pl->align_b,
                                                  sizeof pl->align_b);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &pl->align_d,
                                                  sizeof pl->align_d);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &pl->align_d,
                                                  sizeof pl->align_d);
    cublasLtMatmulHeuristicResult_t result = {};
    int count = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(s->lt, pl->op, pl->a, pl->b, pl->d, pl->d, pref, 1, &result, &count);
    cublasLtMatmulPreferenceDestroy(pref);
    // "not supported" is an answer, not a failure: the caller tries without the epilogue
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) count = 0;
    else if (st != CUBLAS_STATUS_SUCCESS) return cublas_fail(st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    *found = count > 0;
    pl->algo = result.algo;
    return KILN_OK;
}

// The cached plan for this request, built on first use. *out = NULL when
// cuBLASLt has no algorithm for it.
static kiln_status plan_get(cuda_state *s, const cuda_gemm_plan *key, const void *bias, cuda_gemm_plan **out)
{
    for (int i = 0; i < s->nplans; i++) {
        cuda_gemm_plan *pl = &s->plans[i];
        if (pl->m == key->m && pl->n == key->n && pl->k == key->k && pl->ldd == key->ldd && pl->batch == key->batch &&
            pl->stride_a == key->stride_a && pl->stride_b == key->stride_b && pl->stride_d == key->stride_d &&
            pl->a_transposed == key->a_transposed &&
            pl->type == key->type &&
            pl->has_bias == key->has_bias && pl->align_a == key->align_a && pl->align_b == key->align_b &&
            pl->align_d == key->align_d) {
            *out = pl;
            return KILN_OK;
        }
    }
    cuda_gemm_plan pl = *key;
    bool found = false;
    kiln_status st = plan_build(s, &pl, bias, &found);
    if (st != KILN_OK || !found) {
        plan_destroy(&pl);
        *out = NULL;
        return st;
    }
    if (s->nplans == s->cap_plans) {
        int cap = s->cap_plans ? 2 * s->cap_plans : 64;
        cuda_gemm_plan *grown = (cuda_gemm_plan *)realloc(s->plans, (size_t)cap * sizeof *grown);
        if (!grown) {
            plan_destroy(&pl);
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "cuda matmul: out of host memory");
        }
        s->plans = grown;
        s->cap_plans = cap;
    }
    s->plans[s->nplans] = pl;
    *out = &s->plans[s->nplans++];
    return KILN_OK;
}

static size_t round_up(size_t n) { return (size_t)cuda_round_up((int64_t)n, GEMM_ALIGN); }

extern "C" kiln_status cuda_gemm(cuda_state *s, const cuda_gemm_args *g)
{
    const size_t es = kiln_dtype_size(g->type);
    cuda_gemm_plan key = {};
    key.m = g->m;
    key.n = g->n;
    key.k = g->k;
    key.ldd = g->ldd;
    key.a_transposed = g->a_transposed;
    key.type = g->type;
    key.has_bias = g->bias != NULL;
    key.batch = g->batch > 1 ? g->batch : 1;
    if (key.batch > 1) {
        key.stride_a = g->stride_a;
        key.stride_b = g->stride_b;
        key.stride_d = g->stride_d;
    }
    // the alignment every product of a batch keeps: address | stride in bytes
    key.align_a = alignment_of((uintptr_t)g->a | (uintptr_t)(key.stride_a * es));
    key.align_b = alignment_of((uintptr_t)g->b | (uintptr_t)(key.stride_b * es));
    key.align_d = alignment_of((uintptr_t)g->d | (uintptr_t)(key.stride_d * sizeof(float)));
    cuda_gemm_plan *plan;
    TRY(plan_get(s, &key, g->bias, &plan));
    if (!plan && key.batch > 1) { // no strided-batch kernel: one product at a time
        cuda_gemm_args one = *g;
        one.batch = 1;
        for (int i = 0; i < g->batch; i++) {
            one.a = (const char *)g->a + i * g->stride_a * es;
            one.b = (const char *)g->b + i * g->stride_b * es;
            one.d = g->d + i * g->stride_d;
            TRY(cuda_gemm(s, &one));
        }
        return KILN_OK;
    }
    bool bias_after = false;
    if (!plan && g->bias) { // no kernel with the bias epilogue: plain GEMM, then a bias pass
        key.has_bias = 0;
        TRY(plan_get(s, &key, NULL, &plan));
        bias_after = true;
    }
    if (!plan)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda gemm: cuBLASLt has no algorithm for %d x %d x %d%s in %s", g->m,
                         g->n, g->k, g->a_transposed ? " (A transposed)" : "", kiln_dtype_name(g->type));

    if (plan->has_bias)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias,
                                                  sizeof g->bias));
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_TRY(cublasLtMatmul(s->lt, plan->op, &alpha, g->a, plan->a, g->b, plan->b, &beta, g->d, plan->d, g->d,
                              plan->d, &plan->algo, s->lt_workspace, s->lt_workspace_bytes, s->stream));
    if (bias_after) {
        if (g->ldd != g->m || key.batch > 1)
            return kiln_fail(KILN_ERR_UNSUPPORTED, "cuda gemm: bias pass needs one dense output");
        add_row_bias_kernel<<<cuda_stride_blocks((int64_t)g->m * g->n, 256), 256, 0, s->stream>>>(g->d, g->bias, g->n, g->m);
        CUDA_TRY_LAUNCH("add_row_bias_kernel");
    }
    return KILN_OK;
}

extern "C" kiln_status cuda_matmul(kiln_backend *be, const kiln_matmul_params *p, const kiln_tensor *const *src,
                                   kiln_tensor *dst)
{
    cuda_state *s;
    TRY(cuda_enter(be, &s));
    kiln_dtype type = cuda_gemm_type(s, src[1]->dtype);
    size_t es = kiln_dtype_size(type);
    bool convert_x = type != KILN_F32;
    bool convert_w = src[1]->dtype != type;

    // scratch: [x as type (M,K)] [w as type (N,K)] [bias f32 (N)]
    size_t x_bytes = convert_x ? round_up((size_t)p->M * p->K * es) : 0;
    size_t w_bytes = convert_w ? round_up((size_t)p->N * p->K * es) : 0;
    size_t b_bytes = p->has_bias ? round_up((size_t)p->N * sizeof(float)) : 0;
    char *scratch = NULL;
    if (x_bytes + w_bytes + b_bytes) TRY(cuda_scratch(s, x_bytes + w_bytes + b_bytes, (void **)&scratch));

    const void *x = cuda_ptr(src[0]), *w = cuda_ptr(src[1]);
    float *bias = NULL;
    if (convert_x) {
        TRY(cuda_convert(s, x, KILN_F32, scratch, type, (int64_t)p->M * p->K));
        x = scratch;
    }
    if (convert_w) {
        TRY(cuda_convert(s, w, src[1]->dtype, scratch + x_bytes, type, (int64_t)p->N * p->K));
        w = scratch + x_bytes;
    }
    if (p->has_bias) {
        bias = (float *)(scratch + x_bytes + w_bytes);
        TRY(cuda_convert(s, cuda_ptr(src[2]), src[2]->dtype, bias, KILN_F32, p->N));
    }
    // y^T (N x M) = w (stored K x N, transposed) . x^T (K x M)
    cuda_gemm_args g = {};
    g.type = type;
    g.a_transposed = true;
    g.m = p->N;
    g.n = p->M;
    g.k = p->K;
    g.ldd = p->N;
    g.a = w;
    g.b = x;
    g.d = (float *)cuda_ptr(dst);
    g.bias = bias;
    g.batch = 1;
    return cuda_gemm(s, &g);
}
