/* bench_ops: single kernels on a backend, against their own ceilings.
 *
 *   bench_ops [--backend cuda] [--compute f16] [--device N] [--reps 20]
 *
 * Prints one line per case:
 *   matmul and 3x3 conv2d at SD 1.5's UNet shapes with f16 weights, in
 *     TFLOP/s (2 M N K);
 *   attention at SD 1.5's shapes scaled to the same work for every head dim
 *     (B = 2, T = 4096 queries and keys, H*D = 640), in TFLOP/s (4 B H T^2 D
 *     multiply-adds counted as 2 flops each); the issue asks head dims 80 and
 *     160 to reach 70% of 64 and 128;
 *   group norm + SiLU at the UNet's largest activation (2 x 320 x 64 x 64) in
 *     GB/s, next to `scale` on the same tensor, a plain read-once write-once
 *     pass: the copy bandwidth ceiling of this backend's elementwise path;
 *   FreeU's ops (freeu_backbone, FreeU and FreeU_V2, and fourier_filter) at
 *     SDXL's deepest decoder input at 1024x1024 (2 x 1280 x 32 x 32), in GB/s
 *     of one read and one write, next to the same copy pass;
 *   resize as Kohya's Deep Shrink uses it on SDXL's first level at 1024x1024
 *     (2 x 320 x 128 x 128 to 64 x 64 and back), each method, in GB/s of one
 *     read of x and one write of y;
 *   prelu and pixel_shuffle as Real-ESRGAN's compact x4 model runs them on
 *     a 512x512 image (64 features; 48 channels to 3 at 2048x2048), in GB/s
 *     of one read of x and one write of y;
 *   avg_pool2x2 as a T2I-Adapter for SD 1.5 downsamples its first level for
 *     a 1024x1024 picture (320 x 128 x 128 to 64 x 64), in GB/s of one read
 *     of x and one write of y.
 * Each case runs once to warm up, then `reps` times; the time is the mean,
 * timed by the GPU where the backend can (time_begin/time_end: Vulkan
 * timestamps, CUDA events), else on the host between two synchronises (the
 * submission and wake-up then add to every case: on an H200 they made
 * 17-us ops read 2-4x apart from run to run). Inputs are random (never
 * zeros: see bench/RESULTS.md). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "resample.h"
#include "status.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A device tensor of n elements (f32, or f16 for weights) filled with values
 * in [-1, 1). */
static kiln_status random_tensor_of(kiln_backend *be, kiln_dtype dtype, int64_t n, int ndim, const int64_t *shape,
                                    kiln_tensor *t)
{
    *t = (kiln_tensor){.dtype = dtype, .ndim = ndim};
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    size_t esize = kiln_dtype_size(dtype), bytes = (size_t)n * esize;
    TRY(be->ops->buffer_alloc(be, bytes, &t->buffer));
    unsigned char *host = malloc(bytes);
    if (!host) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "bench_ops: out of host memory");
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float v = (float)(x >> 40) / (float)(1 << 23) - 1.0f;
        if (dtype == KILN_F16) ((uint16_t *)host)[i] = kiln_f32_to_f16(v);
        else ((float *)host)[i] = v;
    }
    kiln_status st = be->ops->upload(be, t, host, bytes);
    free(host);
    return st;
}

static kiln_status random_tensor(kiln_backend *be, int64_t n, int ndim, const int64_t *shape, kiln_tensor *t)
{
    return random_tensor_of(be, KILN_F32, n, ndim, shape, t);
}

typedef kiln_status (*case_fn)(kiln_backend *be, void *ctx);

static bool device_timed; /* the last case's time came from the device's clock */

/* Mean seconds of one call of fn after a warm-up. */
static kiln_status time_case(kiln_backend *be, case_fn fn, void *ctx, int reps, double *seconds)
{
    TRY(fn(be, ctx));
    TRY(be->ops->synchronize(be));
    double t0 = now_s(), device = -1.0;
    if (be->ops->time_begin) TRY(be->ops->time_begin(be));
    for (int r = 0; r < reps; r++) TRY(fn(be, ctx));
    if (be->ops->time_end)
        TRY(be->ops->time_end(be, &device));
    else
        TRY(be->ops->synchronize(be));
    device_timed = device >= 0.0;
    *seconds = (device_timed ? device : now_s() - t0) / reps;
    return KILN_OK;
}

typedef struct attention_case {
    kiln_attention_params p;
    kiln_tensor q, k, v, o;
} attention_case;

static kiln_status run_attention(kiln_backend *be, void *ctx)
{
    attention_case *c = ctx;
    return be->ops->attention(be, &c->p, (const kiln_tensor *[]){&c->q, &c->k, &c->v, NULL}, &c->o);
}

typedef struct norm_case {
    kiln_group_norm_params gn;
    kiln_scale_params sc;
    kiln_tensor x, gamma, beta, y;
} norm_case;

static kiln_status run_group_norm(kiln_backend *be, void *ctx)
{
    norm_case *c = ctx;
    return be->ops->group_norm(be, &c->gn, (const kiln_tensor *[]){&c->x, &c->gamma, &c->beta}, &c->y);
}

static kiln_status run_scale(kiln_backend *be, void *ctx)
{
    norm_case *c = ctx;
    return be->ops->scale(be, &c->sc, (const kiln_tensor *[]){&c->x}, &c->y);
}

typedef struct gemm_case {
    kiln_matmul_params mm;
    kiln_conv2d_params conv;
    kiln_tensor x, w, bias, y;
} gemm_case;

static kiln_status run_matmul(kiln_backend *be, void *ctx)
{
    gemm_case *c = ctx;
    return be->ops->matmul(be, &c->mm, (const kiln_tensor *[]){&c->x, &c->w, &c->bias}, &c->y);
}

static kiln_status run_conv2d(kiln_backend *be, void *ctx)
{
    gemm_case *c = ctx;
    return be->ops->conv2d(be, &c->conv, (const kiln_tensor *[]){&c->x, &c->w, &c->bias}, &c->y);
}

static void free_tensors(kiln_backend *be, kiln_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++) be->ops->buffer_free(be, ts[i]->buffer);
}

static kiln_status bench_attention(kiln_backend *be, int reps)
{
    const int B = 2, T = 4096, width = 640;
    const int dims[] = {40, 64, 80, 128, 160};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int D = dims[i], H = width / D;
        attention_case c = {.p = {B, H, T, T, D, 1.0f / sqrtf((float)D), 0}};
        int64_t shape[3] = {B, T, (int64_t)H * D}, n = (int64_t)B * T * H * D;
        TRY(random_tensor(be, n, 3, shape, &c.q));
        TRY(random_tensor(be, n, 3, shape, &c.k));
        TRY(random_tensor(be, n, 3, shape, &c.v));
        TRY(random_tensor(be, n, 3, shape, &c.o));
        double s = 0.0;
        kiln_status st = time_case(be, run_attention, &c, reps, &s);
        free_tensors(be, (kiln_tensor *const[]){&c.q, &c.k, &c.v, &c.o}, 4);
        TRY(st);
        double flops = 4.0 * B * H * (double)T * T * D;
        printf("attention  B %d H %2d T %d D %3d  %8.3f ms  %7.1f TFLOP/s\n", B, H, T, D, 1e3 * s, flops / s / 1e12);
    }
    return KILN_OK;
}

/* One GEMM case with f16 weights and an f32 bias: x (x_elems), w (w_elems),
 * y (y_elems); 2 M N K flops. */
static kiln_status time_gemm(kiln_backend *be, case_fn fn, gemm_case *c, int64_t x_elems, int64_t w_elems,
                             int64_t y_elems, int64_t bias_elems, int reps, double *seconds)
{
    TRY(random_tensor(be, x_elems, 1, &x_elems, &c->x));
    TRY(random_tensor_of(be, KILN_F16, w_elems, 1, &w_elems, &c->w));
    TRY(random_tensor(be, bias_elems, 1, &bias_elems, &c->bias));
    TRY(random_tensor(be, y_elems, 1, &y_elems, &c->y));
    kiln_status st = time_case(be, fn, c, reps, seconds);
    free_tensors(be, (kiln_tensor *const[]){&c->x, &c->w, &c->bias, &c->y}, 4);
    return st;
}

/* The UNet's GEMMs at SD 1.5's 512x512 shapes with CFG (batch 2): the
 * projections and feed-forward of the 64x64 level's transformer, and 3x3
 * convolutions at the top and bottom levels (the bottom one has few output
 * pixels, so few tiles). */
static kiln_status bench_gemm(kiln_backend *be, int reps)
{
    static const kiln_matmul_params matmuls[] = {
        {8192, 320, 320, 1},   /* attention projections */
        {8192, 2560, 320, 1},  /* GEGLU projection */
        {8192, 320, 1280, 1},  /* feed-forward output */
    };
    for (size_t i = 0; i < sizeof matmuls / sizeof matmuls[0]; i++) {
        gemm_case c = {.mm = matmuls[i]};
        const kiln_matmul_params *p = &c.mm;
        double s = 0.0;
        TRY(time_gemm(be, run_matmul, &c, (int64_t)p->M * p->K, (int64_t)p->N * p->K, (int64_t)p->M * p->N, p->N,
                      reps, &s));
        double flops = 2.0 * p->M * p->N * (double)p->K;
        printf("matmul     M %5d N %4d K %4d         %8.3f ms  %7.1f TFLOP/s\n", p->M, p->N, p->K, 1e3 * s,
               flops / s / 1e12);
    }
    static const kiln_conv2d_params convs[] = {
        {2, 320, 64, 64, 320, 3, 3, 1, 1, 64, 64},
        {2, 1280, 8, 8, 1280, 3, 3, 1, 1, 8, 8},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        gemm_case c = {.conv = convs[i]};
        const kiln_conv2d_params *p = &c.conv;
        int64_t k = (int64_t)p->C * p->KH * p->KW, pixels = (int64_t)p->N * p->OH * p->OW;
        double s = 0.0;
        TRY(time_gemm(be, run_conv2d, &c, (int64_t)p->N * p->C * p->H * p->W, p->O * k, pixels * p->O, p->O, reps,
                      &s));
        double flops = 2.0 * pixels * p->O * (double)k;
        printf("conv2d 3x3 N %d C %4d %2dx%-2d -> %4d  %8.3f ms  %7.1f TFLOP/s\n", p->N, p->C, p->H, p->W, p->O,
               1e3 * s, flops / s / 1e12);
    }
    return KILN_OK;
}

static kiln_status bench_group_norm(kiln_backend *be, int reps)
{
    const int N = 2, C = 320, HW = 64 * 64;
    int64_t n = (int64_t)N * C * HW, shape[3] = {N, C, HW}, cshape[1] = {C};
    norm_case c = {.gn = {N, C, HW, 32, 1e-5f, 1}, .sc = {(int32_t)n, 0.5f}};
    TRY(random_tensor(be, n, 3, shape, &c.x));
    TRY(random_tensor(be, C, 1, cshape, &c.gamma));
    TRY(random_tensor(be, C, 1, cshape, &c.beta));
    TRY(random_tensor(be, n, 3, shape, &c.y));
    double gn_s = 0.0, copy_s = 0.0;
    kiln_status st = time_case(be, run_group_norm, &c, reps, &gn_s);
    if (st == KILN_OK) {
        kiln_tensor flat_x = c.x, flat_y = c.y; /* scale sees the same bytes as one vector */
        flat_x.ndim = flat_y.ndim = 1;
        flat_x.shape[0] = flat_y.shape[0] = n;
        norm_case flat = c;
        flat.x = flat_x;
        flat.y = flat_y;
        st = time_case(be, run_scale, &flat, reps, &copy_s);
    }
    free_tensors(be, (kiln_tensor *const[]){&c.x, &c.gamma, &c.beta, &c.y}, 4);
    TRY(st);
    double bytes = 2.0 * n * sizeof(float); /* read x once, write y once */
    printf("group_norm+silu %d x %d x %d  %8.3f ms  %7.1f GB/s  (%.0f%% of the copy pass)\n", N, C, HW, 1e3 * gn_s,
           bytes / gn_s / 1e9, 100.0 * copy_s / gn_s);
    printf("copy (scale)    %d x %d x %d  %8.3f ms  %7.1f GB/s\n", N, C, HW, 1e3 * copy_s, bytes / copy_s / 1e9);
    return KILN_OK;
}

typedef struct freeu_case {
    kiln_freeu_backbone_params fb;
    kiln_fourier_filter_params ff;
    kiln_tensor x, y;
} freeu_case;

static kiln_status run_freeu_backbone(kiln_backend *be, void *ctx)
{
    freeu_case *c = ctx;
    return be->ops->freeu_backbone(be, &c->fb, (const kiln_tensor *[]){&c->x}, &c->y);
}

static kiln_status run_fourier_filter(kiln_backend *be, void *ctx)
{
    freeu_case *c = ctx;
    return be->ops->fourier_filter(be, &c->ff, (const kiln_tensor *[]){&c->x}, &c->y);
}

static kiln_status bench_freeu(kiln_backend *be, int reps)
{
    const int N = 2, C = 1280, H = 32, W = 32;
    int64_t n = (int64_t)N * C * H * W, shape[4] = {N, C, H, W};
    freeu_case c = {.fb = {N, C, H * W, 1.3f, 0}, .ff = {N, C, H, W, 0.9f}};
    TRY(random_tensor(be, n, 4, shape, &c.x));
    TRY(random_tensor(be, n, 4, shape, &c.y));
    double s[3] = {0.0, 0.0, 0.0};
    kiln_status st = time_case(be, run_freeu_backbone, &c, reps, &s[0]);
    c.fb.v2 = 1;
    if (st == KILN_OK) st = time_case(be, run_freeu_backbone, &c, reps, &s[1]);
    if (st == KILN_OK) st = time_case(be, run_fourier_filter, &c, reps, &s[2]);
    free_tensors(be, (kiln_tensor *const[]){&c.x, &c.y}, 2);
    TRY(st);
    static const char *const names[3] = {"freeu_backbone ", "freeu_backb. v2", "fourier_filter "};
    const double bytes = 2.0 * n * sizeof(float);
    for (int i = 0; i < 3; i++)
        printf("%s %d x %d x %dx%d  %8.3f ms  %7.1f GB/s\n", names[i], N, C, H, W, 1e3 * s[i], bytes / s[i] / 1e9);
    return KILN_OK;
}

typedef struct resize_case {
    kiln_resize_params p;
    kiln_tensor *x, *y;
} resize_case;

static kiln_status run_resize(kiln_backend *be, void *ctx)
{
    resize_case *c = ctx;
    return be->ops->resize(be, &c->p, (const kiln_tensor *[]){c->x}, c->y);
}

static kiln_status bench_resize(kiln_backend *be, int reps)
{
    const int N = 2, C = 320, S = 128;
    int64_t large_shape[4] = {N, C, S, S}, small_shape[4] = {N, C, S / 2, S / 2};
    kiln_tensor large, small;
    TRY(random_tensor(be, (int64_t)N * C * S * S, 4, large_shape, &large));
    TRY(random_tensor(be, (int64_t)N * C * (S / 2) * (S / 2), 4, small_shape, &small));
    static const kiln_resample_method methods[] = {KILN_RESAMPLE_NEAREST_EXACT, KILN_RESAMPLE_NEAREST,
                                                   KILN_RESAMPLE_BILINEAR, KILN_RESAMPLE_BICUBIC};
    kiln_status st = KILN_OK;
    for (size_t m = 0; st == KILN_OK && m < sizeof methods / sizeof methods[0]; m++)
        for (int up = 0; st == KILN_OK && up < 2; up++) {
            resize_case c = {.x = up ? &small : &large, .y = up ? &large : &small};
            c.p = (kiln_resize_params){N, C, (int32_t)c.x->shape[2], (int32_t)c.x->shape[3], (int32_t)c.y->shape[2],
                                       (int32_t)c.y->shape[3], methods[m]};
            double s;
            st = time_case(be, run_resize, &c, reps, &s);
            const double bytes = (double)(kiln_tensor_numel(c.x) + kiln_tensor_numel(c.y)) * sizeof(float);
            if (st == KILN_OK)
                printf("resize %-13s %d x %d x %dx%d -> %dx%d  %8.3f ms  %7.1f GB/s\n",
                       kiln_resample_name(methods[m]), N, C, c.p.H, c.p.W, c.p.OH, c.p.OW, 1e3 * s,
                       bytes / s / 1e9);
        }
    free_tensors(be, (kiln_tensor *const[]){&large, &small}, 2);
    return st;
}

typedef struct compact_case {
    kiln_prelu_params prelu;
    kiln_pixel_shuffle_params shuffle;
    kiln_tensor x, slope, y;
} compact_case;

static kiln_status run_prelu(kiln_backend *be, void *ctx)
{
    compact_case *c = ctx;
    return be->ops->prelu(be, &c->prelu, (const kiln_tensor *[]){&c->x, &c->slope}, &c->y);
}

static kiln_status run_pixel_shuffle(kiln_backend *be, void *ctx)
{
    compact_case *c = ctx;
    return be->ops->pixel_shuffle(be, &c->shuffle, (const kiln_tensor *[]){&c->x}, &c->y);
}

static kiln_status bench_compact(kiln_backend *be, int reps)
{
    const int C = 64, S = 512, r = 4;
    int64_t n = (int64_t)C * S * S, shape[4] = {1, C, S, S}, cshape[1] = {C};
    compact_case c = {.prelu = {1, C, S * S}, .shuffle = {1, 3, S, S, r}};
    TRY(random_tensor(be, n, 4, shape, &c.x));
    TRY(random_tensor_of(be, KILN_F16, C, 1, cshape, &c.slope));
    TRY(random_tensor(be, n, 4, shape, &c.y));
    double prelu_s = 0.0, shuffle_s = 0.0;
    kiln_status st = time_case(be, run_prelu, &c, reps, &prelu_s);
    /* the x4 model's last conv gives 3 r^2 = 48 channels: x's first 48, into
     * the first 3 x 2048 x 2048 of y, both buffers large enough */
    if (st == KILN_OK) st = time_case(be, run_pixel_shuffle, &c, reps, &shuffle_s);
    free_tensors(be, (kiln_tensor *const[]){&c.x, &c.slope, &c.y}, 3);
    TRY(st);
    const double prelu_bytes = 2.0 * n * sizeof(float), shuffle_bytes = 2.0 * 3 * r * r * S * S * sizeof(float);
    printf("prelu          1 x %d x %dx%d  %8.3f ms  %7.1f GB/s\n", C, S, S, 1e3 * prelu_s,
           prelu_bytes / prelu_s / 1e9);
    printf("pixel_shuffle  1 x %d x %dx%d r%d  %8.3f ms  %7.1f GB/s\n", 3 * r * r, S, S, r, 1e3 * shuffle_s,
           shuffle_bytes / shuffle_s / 1e9);
    return KILN_OK;
}

typedef struct avg_pool_case {
    kiln_avg_pool2x2_params p;
    kiln_tensor x, y;
} avg_pool_case;

static kiln_status run_avg_pool2x2(kiln_backend *be, void *ctx)
{
    avg_pool_case *c = ctx;
    return be->ops->avg_pool2x2(be, &c->p, (const kiln_tensor *[]){&c->x}, &c->y);
}

static kiln_status bench_avg_pool(kiln_backend *be, int reps)
{
    const int C = 320, S = 128;
    int64_t n = (int64_t)C * S * S, shape[4] = {1, C, S, S}, half[4] = {1, C, S / 2, S / 2};
    avg_pool_case c = {.p = {1, C, S, S, 0, 0}};
    TRY(random_tensor(be, n, 4, shape, &c.x));
    TRY(random_tensor(be, n / 4, 4, half, &c.y));
    double s = 0.0;
    kiln_status st = time_case(be, run_avg_pool2x2, &c, reps, &s);
    free_tensors(be, (kiln_tensor *const[]){&c.x, &c.y}, 2);
    TRY(st);
    const double bytes = 1.25 * n * sizeof(float);
    printf("avg_pool2x2    1 x %d x %dx%d  %8.3f ms  %7.1f GB/s\n", C, S, S, 1e3 * s, bytes / s / 1e9);
    return KILN_OK;
}

int main(int argc, char **argv)
{
    const char *backend = "cuda";
    kiln_backend_options bo = {.device = -1, .compute = KILN_F16};
    int reps = 20;
    static const struct option longs[] = {
        {"backend", required_argument, 0, 'b'}, {"compute", required_argument, 0, 'c'},
        {"device", required_argument, 0, 'd'},  {"reps", required_argument, 0, 'r'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'b': backend = optarg; break;
        case 'c':
            if (!kiln_compute_from_name(optarg, &bo.compute)) {
                fprintf(stderr, "bench_ops: --compute %s: must be f32, f16 or bf16\n", optarg);
                return 2;
            }
            break;
        case 'd': bo.device = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: bench_ops [--backend cuda|vulkan|cpu] [--compute f32|f16|bf16] [--device N] [--reps R]\n");
            return 2;
        }
    }
    if (reps < 1) {
        fprintf(stderr, "bench_ops: --reps must be at least 1\n");
        return 2;
    }
    kiln_backend *be;
    if (kiln_backend_create(backend, &bo, &be) != KILN_OK) {
        fprintf(stderr, "bench_ops: --backend %s: %s\n", backend, kiln_last_error());
        return 1;
    }
    printf("bench_ops: %s, %s, compute %s, %d reps\n", be->name, be->device_name, kiln_dtype_name(be->compute), reps);
    kiln_status st = bench_gemm(be, reps);
    if (st == KILN_OK) st = bench_attention(be, reps);
    if (st == KILN_OK) st = bench_group_norm(be, reps);
    if (st == KILN_OK) st = bench_freeu(be, reps);
    if (st == KILN_OK) st = bench_resize(be, reps);
    if (st == KILN_OK) st = bench_compact(be, reps);
    if (st == KILN_OK) st = bench_avg_pool(be, reps);
    kiln_backend_free(be);
    if (st != KILN_OK) {
        fprintf(stderr, "bench_ops: %s\n", kiln_last_error());
        return 1;
    }
    printf("(timed by the %s)\n", device_timed ? "device's clock" : "host's clock, submission and wait included");
    return 0;
}
