// kiln's CUDA kernels, through their adapters (the backend's vtable
// entries), on the emulator, against the CPU reference loops in cpu_ref.c:
// every op but matmul (cuBLASLt cannot run here, so conv2d's GEMM is the
// float64 loop below standing in for cuda_gemm), in f32 compute at 1e-5 and
// f16/bf16 compute at 1e-2, at small shapes with ragged tiles, every weight
// dtype, the tensor-core attention head dims and the f32 fallbacks.
// Outputs start as NaN, so an element a kernel leaves unwritten fails.
#include "emu.h"

#include <vector>

extern "C" {
#include "cpu_ref.h"
#include "cuda_backend.h"
#include "quant_blocks.h"
#include "resample.h"
}

// ---- the host side of runtime/cuda_backend.c that the adapters call
extern "C" kiln_status cuda_enter(kiln_backend *be, cuda_state **out)
{
    *out = cuda_state_of(be);
    return KILN_OK;
}
extern "C" kiln_status cuda_fail(cudaError_t err, const char *call, const char *file, int line)
{
    return kiln_fail(KILN_ERR_BACKEND, "%s:%d: %s: %d", file, line, call, err);
}
extern "C" kiln_status cuda_scratch(cuda_state *s, size_t bytes, void **out)
{
    free(s->scratch);
    s->scratch = malloc(bytes);
    *out = s->scratch;
    return KILN_OK;
}
// a copy of runtime/cuda_backend.c's rule
extern "C" kiln_dtype cuda_gemm_type(const cuda_state *s, kiln_dtype weight)
{
    if (s->compute == KILN_F32) return KILN_F32;
    if (weight == KILN_F16 || weight == KILN_BF16) return weight;
    return s->compute;
}

// cuda_gemm (kernels/gemm.cu, cuBLASLt) as a float64 loop over its contract
extern "C" kiln_status cuda_gemm(cuda_state *, const cuda_gemm_args *g)
{
    size_t es = kiln_dtype_size(g->type);
    for (int bi = 0; bi < (g->batch > 1 ? g->batch : 1); bi++) {
        const char *a = (const char *)g->a + bi * g->stride_a * es, *b = (const char *)g->b + bi * g->stride_b * es;
        float *d = g->d + bi * g->stride_d;
        for (int j = 0; j < g->n; j++)
            for (int i = 0; i < g->m; i++) {
                double acc = 0.0;
                for (int l = 0; l < g->k; l++) {
                    size_t ia = g->a_transposed ? (size_t)i * g->k + l : (size_t)l * g->m + i;
                    acc += (double)kiln_load_f32(a, g->type, ia) * kiln_load_f32(b, g->type, (size_t)j * g->k + l);
                }
                d[(size_t)j * g->ldd + i] = (float)acc + (g->bias ? g->bias[i] : 0.0f);
            }
    }
    return KILN_OK;
}

// ---- helpers
static uint64_t rng = 88172645463325252ull;
static float urand()
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

struct buf {
    kiln_buffer b;
    kiln_tensor t;
    std::vector<unsigned char> host;
};

static buf *make(kiln_dtype dt, int64_t n, bool random = true)
{
    buf *x = new buf();
    x->host.resize((size_t)n * kiln_dtype_size(dt) + 1);
    x->b.dev = x->host.data();
    x->b.size = (size_t)n * kiln_dtype_size(dt);
    x->t = kiln_tensor{dt, 1, {n, 0, 0, 0}, &x->b, 0};
    for (int64_t i = 0; i < n; i++) {
        float v = random ? urand() : NAN;
        switch (dt) {
        case KILN_F32: ((float *)x->b.dev)[i] = v; break;
        case KILN_F16: ((uint16_t *)x->b.dev)[i] = kiln_f32_to_f16(v); break;
        case KILN_BF16: ((uint16_t *)x->b.dev)[i] = kiln_f32_to_bf16(v); break;
        case KILN_F8_E4M3: { urand(); uint8_t b8 = (uint8_t)(rng >> 40); if ((b8 & 0x7f) >= 0x70) b8 &= 0x3f; ((uint8_t *)x->b.dev)[i] = b8; break; }
        default: break;
        }
    }
    return x;
}
static float *F(buf *x) { return (float *)x->b.dev; }
static kiln_weight_ptr W(buf *x) { return kiln_weight_ptr{x->b.dev, x->t.dtype}; }

static int failures, passes;
static void compare(const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double num = 0, den = 0;
    bool nan = false;
    for (int64_t i = 0; i < n; i++) {
        if (std::isnan(got[i]) || std::isnan(want[i])) nan = true;
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    double err = nan ? INFINITY : den ? sqrt(num / den) : sqrt(num);
    bool ok = err <= tol;
    (ok ? passes : failures)++;
    printf("%-60s rel L2 %.3g %s\n", what, err, ok ? "ok" : "FAIL");
}

static kiln_backend be_f32, be_f16, be_bf16;
static cuda_state st_f32, st_f16, st_bf16;

static void check(kiln_status st)
{
    if (st != KILN_OK) { printf("status %d: %s\n", st, kiln_last_error()); failures++; }
}

// ---- tests

// a modulation's table (K,C) stored as dtype, or none
struct table_case {
    bool present;
    kiln_dtype dtype;
};

static void test_elementwise()
{
    int n = 1000;
    buf *x = make(KILN_F32, n), *x2 = make(KILN_F32, n), *y = make(KILN_F32, n, false);
    std::vector<float> want(n);
    const kiln_tensor *s1[] = {&x->t}, *s2[] = {&x->t, &x2->t};
    kiln_silu_params ps = {n};
    check(cuda_silu(&be_f32, &ps, s1, &y->t)); cpu_ref_silu(&ps, F(x), want.data()); compare("silu", F(y), want.data(), n, 1e-6);
    kiln_sigmoid_params psg = {n};
    check(cuda_sigmoid(&be_f32, &psg, s1, &y->t)); cpu_ref_sigmoid(&psg, F(x), want.data()); compare("sigmoid", F(y), want.data(), n, 1e-6);
    const char *const kinds[KILN_ACTIVATION_COUNT] = {"activation tanh", "activation elu", "activation hardswish",
                                                      "activation softsign", "activation mish"};
    for (int k = 0; k < KILN_ACTIVATION_COUNT; k++) {
        kiln_activation_params pac = {n, k};
        check(cuda_activation(&be_f32, &pac, s1, &y->t)); cpu_ref_activation(&pac, F(x), want.data()); compare(kinds[k], F(y), want.data(), n, 1e-6);
    }
    kiln_gelu_params pg = {n};
    check(cuda_gelu(&be_f32, &pg, s1, &y->t)); cpu_ref_gelu(&pg, F(x), want.data()); compare("gelu", F(y), want.data(), n, 1e-6);
    kiln_quick_gelu_params pq = {n};
    check(cuda_quick_gelu(&be_f32, &pq, s1, &y->t)); cpu_ref_quick_gelu(&pq, F(x), want.data()); compare("quick_gelu", F(y), want.data(), n, 1e-6);
    kiln_gelu_tanh_params pgt = {n};
    check(cuda_gelu_tanh(&be_f32, &pgt, s1, &y->t)); cpu_ref_gelu_tanh(&pgt, F(x), want.data()); compare("gelu_tanh", F(y), want.data(), n, 1e-6);
    kiln_scale_params psc = {n, 0.37f};
    check(cuda_scale(&be_f32, &psc, s1, &y->t)); cpu_ref_scale(&psc, F(x), want.data()); compare("scale", F(y), want.data(), n, 0);
    kiln_leaky_relu_params plr = {n, 0.2f};
    check(cuda_leaky_relu(&be_f32, &plr, s1, &y->t)); cpu_ref_leaky_relu(&plr, F(x), want.data()); compare("leaky_relu", F(y), want.data(), n, 0);
    kiln_add_params pa = {n};
    check(cuda_add(&be_f32, &pa, s2, &y->t)); cpu_ref_add(&pa, F(x), F(x2), want.data()); compare("add", F(y), want.data(), n, 0);
    kiln_mul_params pm = {n};
    check(cuda_mul(&be_f32, &pm, s2, &y->t)); cpu_ref_mul(&pm, F(x), F(x2), want.data()); compare("mul", F(y), want.data(), n, 0);

    // gated_add over two batch elements, with each table dtype and without one
    for (table_case tc : {table_case{true, KILN_F32}, {true, KILN_F16}, {true, KILN_BF16}, {true, KILN_F8_E4M3},
                          {false, KILN_F32}}) {
        bool table = tc.present;
        kiln_dtype dt = tc.dtype;
        kiln_gated_add_params p = {2, 9, 37, 6, 2};
        int64_t nn = 2 * 9 * 37;
        buf *a = make(KILN_F32, nn), *b = make(KILN_F32, nn), *mod = make(KILN_F32, 2 * 6 * 37),
            *tab = make(dt, 6 * 37), *o = make(KILN_F32, nn, false);
        std::vector<float> w(nn); const kiln_tensor *s[] = {&a->t, &b->t, &mod->t, table ? &tab->t : NULL};
        check(cuda_gated_add(&be_f32, &p, s, &o->t));
        cpu_ref_gated_add(&p, F(a), F(b), F(mod), table ? W(tab) : kiln_weight_ptr{NULL, KILN_F32}, w.data());
        char name[64]; snprintf(name, sizeof name, "gated_add table %s", table ? kiln_dtype_name(dt) : "none");
        compare(name, F(o), w.data(), nn, 1e-6);
    }
    // rope over two batch elements with a head dim of 6 (pairs a thread each,
    // heads and tokens not a multiple of four elements) and Flux's 128, in
    // place too (y = x, as the op allows)
    for (kiln_rope_params p : {kiln_rope_params{2, 5, 3, 6}, {1, 3, 2, 128}}) {
        int64_t nn = (int64_t)p.B * p.T * p.H * p.D;
        buf *a = make(KILN_F32, nn), *f = make(KILN_F32, (int64_t)p.T * p.D), *o = make(KILN_F32, nn, false);
        std::vector<float> w(nn); const kiln_tensor *s[] = {&a->t, &f->t};
        cpu_ref_rope(&p, F(a), F(f), w.data());
        char name[64]; snprintf(name, sizeof name, "rope D%d", p.D);
        check(cuda_rope(&be_f32, &p, s, &o->t)); compare(name, F(o), w.data(), nn, 1e-6);
        snprintf(name, sizeof name, "rope D%d in place", p.D);
        check(cuda_rope(&be_f32, &p, s, &a->t)); compare(name, F(a), w.data(), nn, 1e-6);
    }
    { kiln_geglu_params p = {7, 33}; buf *a = make(KILN_F32, 7 * 66), *o = make(KILN_F32, 7 * 33, false);
      std::vector<float> w(7 * 33); const kiln_tensor *s[] = {&a->t};
      check(cuda_geglu(&be_f32, &p, s, &o->t)); cpu_ref_geglu(&p, F(a), w.data()); compare("geglu", F(o), w.data(), 7 * 33, 1e-6); }
    { kiln_add_channel_bias_params p = {2, 5, 37}; buf *a = make(KILN_F32, 370), *b = make(KILN_F32, 10), *o = make(KILN_F32, 370, false);
      std::vector<float> w(370); const kiln_tensor *s[] = {&a->t, &b->t};
      check(cuda_add_channel_bias(&be_f32, &p, s, &o->t)); cpu_ref_add_channel_bias(&p, F(a), F(b), w.data()); compare("add_channel_bias", F(o), w.data(), 370, 0); }
    { kiln_concat_channels_params p = {2, 3, 4, 29}; buf *a = make(KILN_F32, 2 * 3 * 29), *b = make(KILN_F32, 2 * 4 * 29), *o = make(KILN_F32, 2 * 7 * 29, false);
      std::vector<float> w(2 * 7 * 29); const kiln_tensor *s[] = {&a->t, &b->t};
      check(cuda_concat_channels(&be_f32, &p, s, &o->t)); cpu_ref_concat_channels(&p, F(a), F(b), w.data()); compare("concat", F(o), w.data(), 2 * 7 * 29, 0); }
    { kiln_pad2d_params p = {2, 3, 5, 7, 1, 2, 0, 1}; int64_t on = 2 * 3 * 8 * 8; buf *a = make(KILN_F32, 2 * 3 * 35), *o = make(KILN_F32, on, false);
      std::vector<float> w(on); const kiln_tensor *s[] = {&a->t};
      check(cuda_pad2d(&be_f32, &p, s, &o->t)); cpu_ref_pad2d(&p, F(a), w.data()); compare("pad2d", F(o), w.data(), on, 0); }
    for (kiln_upsample_nearest2x_params p : {kiln_upsample_nearest2x_params{2, 3, 5, 7, 10, 14}, kiln_upsample_nearest2x_params{2, 3, 5, 7, 9, 13}}) {
      int64_t on = 2 * 3 * p.OH * p.OW; buf *a = make(KILN_F32, 2 * 3 * 35), *o = make(KILN_F32, on, false);
      std::vector<float> w(on); const kiln_tensor *s[] = {&a->t};
      check(cuda_upsample_nearest2x(&be_f32, &p, s, &o->t)); cpu_ref_upsample_nearest2x(&p, F(a), w.data()); compare("upsample", F(o), w.data(), on, 0); }
    // resize: down and up, whole and fractional scales, one axis kept, an
    // axis of 1, and 10 -> 3 and 10 -> 6, where the nearest modes' float32
    // centre or corner is whole
    struct { int N, C, H, W, OH, OW; } rs[] = {
        {2, 3, 12, 16, 4, 5}, {1, 2, 3, 4, 8, 6}, {2, 5, 16, 16, 32, 32}, {1, 3, 9, 12, 9, 5}, {1, 2, 1, 6, 4, 2},
        {1, 2, 10, 10, 3, 3}, {1, 2, 10, 10, 6, 6}};
    for (auto &c : rs)
        for (int m : {KILN_RESAMPLE_NEAREST_EXACT, KILN_RESAMPLE_BILINEAR, KILN_RESAMPLE_BICUBIC,
                      KILN_RESAMPLE_NEAREST, KILN_RESAMPLE_AREA}) {
            kiln_resize_params p = {c.N, c.C, c.H, c.W, c.OH, c.OW, m};
            int64_t on = (int64_t)c.N * c.C * c.OH * c.OW;
            buf *a = make(KILN_F32, (int64_t)c.N * c.C * c.H * c.W), *o = make(KILN_F32, on, false);
            std::vector<float> w(on); const kiln_tensor *s[] = {&a->t};
            check(cuda_resize(&be_f32, &p, s, &o->t)); cpu_ref_resize(&p, F(a), w.data());
            char name[64]; snprintf(name, sizeof name, "resize %d,%d,%dx%d -> %dx%d %s", c.N, c.C, c.H, c.W, c.OH, c.OW,
                                    kiln_resample_name((kiln_resample_method)m));
            // the nearest modes copy, area sums in the CPU's order and divides as IEEE does
            bool copies = m == KILN_RESAMPLE_NEAREST_EXACT || m == KILN_RESAMPLE_NEAREST || m == KILN_RESAMPLE_AREA;
            compare(name, F(o), w.data(), on, copies ? 0 : 1e-6);
        }
    // slerp_resize: each axis halved and enlarged at odd sizes, a 2-pixel
    // axis to 5 (ratios of 0, taps clamped to the last pixel), and then
    // again with pixels along the axis going zero, random, its copy, the copy
    // negated: slerp's lengths of zero and vectors alike and opposite
    struct { int N, C, H, W, out, axis; } ss[] = {
        {2, 5, 8, 8, 4, 0}, {2, 5, 8, 4, 4, 1}, {1, 7, 5, 6, 13, 0}, {1, 4, 7, 9, 13, 1}, {1, 3, 2, 2, 5, 0}};
    for (bool special : {false, true})
        for (auto &c : ss) {
            kiln_slerp_resize_params p = {c.N, c.C, c.H, c.W, c.out, c.axis};
            int64_t plane = (int64_t)c.H * c.W, on = (int64_t)c.N * c.C * (c.axis ? c.out * c.W : c.H * c.out);
            buf *a = make(KILN_F32, c.N * c.C * plane), *o = make(KILN_F32, on, false);
            int64_t step = c.axis ? c.W : 1;
            for (int64_t i = 0; special && i < c.N * c.C * plane; i++) {
                int64_t along = c.axis ? i % plane / c.W : i % c.W;
                if (along % 4 != 1) F(a)[i] = along % 4 == 0 ? 0.0f : along % 4 == 2 ? F(a)[i - step] : -F(a)[i - step];
            }
            std::vector<float> w(on); const kiln_tensor *s[] = {&a->t};
            check(cuda_slerp_resize(&be_f32, &p, s, &o->t)); cpu_ref_slerp_resize(&p, F(a), w.data());
            char name[80]; snprintf(name, sizeof name, "slerp_resize %d,%d,%dx%d -> %d along %s%s", c.N, c.C, c.H, c.W,
                                    c.out, c.axis ? "the height" : "the width", special ? ", special pixels" : "");
            compare(name, F(o), w.data(), on, 1e-6);
        }
    // prelu with each slope dtype, HW odd so that threads' channels change
    // mid-warp, and in place (y = x); one multiply, so exact
    for (kiln_dtype dt : {KILN_F32, KILN_F16, KILN_BF16, KILN_F8_E4M3}) {
        kiln_prelu_params p = {2, 5, 37};
        int64_t nn = 2 * 5 * 37;
        buf *a = make(KILN_F32, nn), *sl = make(dt, 5), *o = make(KILN_F32, nn, false);
        std::vector<float> w(nn); const kiln_tensor *s[] = {&a->t, &sl->t};
        cpu_ref_prelu(&p, F(a), W(sl), w.data());
        char name[64]; snprintf(name, sizeof name, "prelu slope %s", kiln_dtype_name(dt));
        check(cuda_prelu(&be_f32, &p, s, &o->t)); compare(name, F(o), w.data(), nn, 0);
        snprintf(name, sizeof name, "prelu slope %s in place", kiln_dtype_name(dt));
        check(cuda_prelu(&be_f32, &p, s, &a->t)); compare(name, F(a), w.data(), nn, 0);
    }
    for (kiln_pixel_shuffle_params p : {kiln_pixel_shuffle_params{1, 3, 8, 8, 4}, {1, 3, 7, 5, 2}, {2, 5, 7, 5, 3},
                                        {2, 6, 5, 7, 1}}) {
        int64_t nn = (int64_t)p.N * p.C * p.r * p.r * p.H * p.W;
        buf *a = make(KILN_F32, nn), *o = make(KILN_F32, nn, false);
        std::vector<float> w(nn); const kiln_tensor *s[] = {&a->t};
        check(cuda_pixel_shuffle(&be_f32, &p, s, &o->t)); cpu_ref_pixel_shuffle(&p, F(a), w.data());
        char name[64]; snprintf(name, sizeof name, "pixel_shuffle %d,%d,%dx%d r%d", p.N, p.C * p.r * p.r, p.H, p.W, p.r);
        compare(name, F(o), w.data(), nn, 0);
    }
    // avg_pool2x2: even and odd sides, each padding alone and both; sums in
    // cpu_ref's order and a multiply by 1/4, so exact
    for (kiln_avg_pool2x2_params p : {kiln_avg_pool2x2_params{1, 3, 8, 8, 0, 0}, {2, 5, 7, 5, 1, 1}, {1, 3, 7, 10, 1, 0},
                                      {2, 4, 6, 9, 0, 1}, {1, 2, 1, 1, 1, 1}}) {
        int64_t on = (int64_t)p.N * p.C * ((p.H + 2 * p.pad_h) / 2) * ((p.W + 2 * p.pad_w) / 2);
        buf *a = make(KILN_F32, (int64_t)p.N * p.C * p.H * p.W), *o = make(KILN_F32, on, false);
        std::vector<float> w(on); const kiln_tensor *s[] = {&a->t};
        check(cuda_avg_pool2x2(&be_f32, &p, s, &o->t)); cpu_ref_avg_pool2x2(&p, F(a), w.data());
        char name[64]; snprintf(name, sizeof name, "avg_pool2x2 %d,%d,%dx%d pad %d,%d", p.N, p.C, p.H, p.W, p.pad_h, p.pad_w);
        compare(name, F(o), w.data(), on, 0);
    }
    for (int flip = 0; flip < 2; flip++) {
        kiln_timestep_embedding_params p = {3, 320, flip, flip ? 0.0f : 1.0f, 10000.0f};
        buf *t = make(KILN_F32, 3), *o = make(KILN_F32, 960, false);
        F(t)[0] = 999; F(t)[1] = 500; F(t)[2] = 1.5f;
        std::vector<float> w(960); const kiln_tensor *s[] = {&t->t};
        check(cuda_timestep_embedding(&be_f32, &p, s, &o->t)); cpu_ref_timestep_embedding(&p, F(t), w.data());
        compare(flip ? "timestep flip" : "timestep shift", F(o), w.data(), 960, 1e-6);
    }
    { kiln_transpose_params p = {3, 37, 45}; int64_t nn = 3 * 37 * 45; buf *a = make(KILN_F32, nn), *o = make(KILN_F32, nn, false);
      std::vector<float> w(nn); const kiln_tensor *s[] = {&a->t};
      check(cuda_transpose(&be_f32, &p, s, &o->t)); cpu_ref_transpose(&p, F(a), w.data()); compare("transpose", F(o), w.data(), nn, 0); }
    for (kiln_dtype dt : {KILN_F32, KILN_F16, KILN_BF16, KILN_F8_E4M3}) {
        kiln_embedding_params p = {9, 50, 33}; buf *ids = make(KILN_I32, 9), *tab = make(dt, 50 * 33), *o = make(KILN_F32, 9 * 33, false);
        int32_t idv[9] = {0, 49, -3, 60, 7, 7, 12, 48, 1}; memcpy(ids->b.dev, idv, sizeof idv);
        std::vector<float> w(9 * 33); const kiln_tensor *s[] = {&ids->t, &tab->t};
        check(cuda_embedding(&be_f32, &p, s, &o->t)); cpu_ref_embedding(&p, idv, W(tab), w.data());
        char name[64]; snprintf(name, sizeof name, "embedding %s", kiln_dtype_name(dt));
        compare(name, F(o), w.data(), 9 * 33, 0);
    }
}

static void test_norm()
{
    struct { int N, C, HW, G, silu; } gn[] = {{2, 64, 37, 32, 1}, {1, 320, 64, 32, 0}, {1, 32, 5000, 32, 1}, {2, 128, 300, 32, 1}, {1, 64, 3000, 8, 0}};
    for (auto &c : gn) {
        kiln_group_norm_params p = {c.N, c.C, c.HW, c.G, 1e-5f, c.silu};
        int64_t n = (int64_t)c.N * c.C * c.HW;
        buf *x = make(KILN_F32, n), *ga = make(KILN_F16, c.C), *be = make(KILN_F32, c.C), *o = make(KILN_F32, n, false);
        for (int64_t i = 0; i < n; i++) F(x)[i] = F(x)[i] * 3 + 0.5f;
        std::vector<float> w(n); const kiln_tensor *s[] = {&x->t, &ga->t, &be->t};
        check(cuda_group_norm(&be_f32, &p, s, &o->t)); cpu_ref_group_norm(&p, F(x), W(ga), W(be), w.data());
        char name[64]; snprintf(name, sizeof name, "group_norm %d,%d,%d silu %d", c.N, c.C, c.HW, c.silu);
        compare(name, F(o), w.data(), n, 1e-5);
    }
    for (int D : {320, 77, 1280}) {
        kiln_layer_norm_params p = {9, D, 1e-5f};
        buf *x = make(KILN_F32, 9 * D), *ga = make(KILN_BF16, D), *be = make(KILN_F16, D), *o = make(KILN_F32, 9 * D, false);
        std::vector<float> w(9 * D); const kiln_tensor *s[] = {&x->t, &ga->t, &be->t};
        check(cuda_layer_norm(&be_f32, &p, s, &o->t)); cpu_ref_layer_norm(&p, F(x), W(ga), W(be), w.data());
        char name[64]; snprintf(name, sizeof name, "layer_norm D=%d", D);
        compare(name, F(o), w.data(), 9 * D, 1e-5);
    }
    for (int D : {64, 77, 4096}) { // T5's 4096
        kiln_rms_norm_params p = {7, D, 1e-6f};
        buf *x = make(KILN_F32, 7 * D), *ga = make(KILN_BF16, D), *o = make(KILN_F32, 7 * D, false);
        std::vector<float> w(7 * D); const kiln_tensor *s[] = {&x->t, &ga->t};
        check(cuda_rms_norm(&be_f32, &p, s, &o->t)); cpu_ref_rms_norm(&p, F(x), W(ga), w.data());
        char name[64]; snprintf(name, sizeof name, "rms_norm D=%d", D);
        compare(name, F(o), w.data(), 7 * D, 1e-5);
    }
    for (table_case tc : {table_case{true, KILN_F32}, {true, KILN_F16}, {false, KILN_F32}}) {
        bool table = tc.present;
        kiln_dtype dt = tc.dtype;
        kiln_ada_layer_norm_params p = {2, 5, 1152, 6, 3, 4, 1e-6f};
        int64_t nn = 2 * 5 * 1152;
        buf *x = make(KILN_F32, nn), *mod = make(KILN_F32, 2 * 6 * 1152), *tab = make(dt, 6 * 1152),
            *o = make(KILN_F32, nn, false);
        for (int64_t i = 0; i < nn; i++) F(x)[i] = F(x)[i] * 2 + 1.0f;
        std::vector<float> w(nn); const kiln_tensor *s[] = {&x->t, &mod->t, table ? &tab->t : NULL};
        check(cuda_ada_layer_norm(&be_f32, &p, s, &o->t));
        cpu_ref_ada_layer_norm(&p, F(x), F(mod), table ? W(tab) : kiln_weight_ptr{NULL, KILN_F32}, w.data());
        char name[64]; snprintf(name, sizeof name, "ada_layer_norm table %s", table ? kiln_dtype_name(dt) : "none");
        compare(name, F(o), w.data(), nn, 1e-5);
    }
    { kiln_softmax_params p = {5, 77}; buf *x = make(KILN_F32, 5 * 77), *o = make(KILN_F32, 5 * 77, false);
      for (int i = 0; i < 385; i++) F(x)[i] *= 10;
      std::vector<float> w(385); const kiln_tensor *s[] = {&x->t};
      check(cuda_softmax(&be_f32, &p, s, &o->t)); cpu_ref_softmax(&p, F(x), w.data()); compare("softmax", F(o), w.data(), 385, 1e-6); }

    // FreeU: an odd C (C/2 rounded down), C = 1 (nothing scaled), v2 images
    // wider than its 1024-thread block, SD's channel counts, y = x
    struct { int N, C, HW; float b; int v2; bool in_place; } fb[] = {
        {2, 5, 37, 1.3f, 0, false}, {3, 4, 29, 1.2f, 0, true}, {2, 5, 1100, 1.4f, 1, false}, {1, 4, 37, 1.1f, 1, false},
        {2, 1, 50, 1.5f, 1, false}, {2, 320, 64, 1.3f, 1, false}, {2, 5, 1100, 1.4f, 1, true}};
    for (auto &c : fb) {
        kiln_freeu_backbone_params p = {c.N, c.C, c.HW, c.b, c.v2};
        int64_t n = (int64_t)c.N * c.C * c.HW;
        buf *x = make(KILN_F32, n), *o = c.in_place ? x : make(KILN_F32, n, false);
        std::vector<float> w(n), means(c.HW);
        cpu_ref_freeu_backbone(&p, F(x), w.data(), means.data());
        const kiln_tensor *s[] = {&x->t};
        check(cuda_freeu_backbone(&be_f32, &p, s, &o->t));
        char name[64]; snprintf(name, sizeof name, "freeu_backbone v%d %d,%d,%d%s", c.v2 ? 2 : 1, c.N, c.C, c.HW, c.in_place ? " in place" : "");
        compare(name, F(o), w.data(), n, 1e-6);
    }
    { // every pixel's mean the same: 0/0, NaN in the scaled channels as in the reference (and torch)
        kiln_freeu_backbone_params p = {2, 3, 40, 1.2f, 1};
        buf *x = make(KILN_F32, 240), *o = make(KILN_F32, 240, false);
        for (int i = 0; i < 240; i++) F(x)[i] = (float)(i / 40 % 3) * 0.25f - 0.5f;
        std::vector<float> w(240), means(40);
        cpu_ref_freeu_backbone(&p, F(x), w.data(), means.data());
        const kiln_tensor *s[] = {&x->t};
        check(cuda_freeu_backbone(&be_f32, &p, s, &o->t));
        bool same = std::isnan(w[0]);
        for (int i = 0; i < 240; i++) same &= std::isnan(w[i]) ? std::isnan(F(o)[i]) : F(o)[i] == w[i];
        (same ? passes : failures)++;
        printf("%-60s %s\n", "freeu_backbone v2 flat images (NaN where the reference's)", same ? "ok" : "FAIL");
    }
    // planes wider than the 256-thread block, H or W of 1, both, y = x
    struct { int N, C, H, W; float s; bool in_place; } ff[] = {
        {2, 3, 37, 41, 0.9f, false}, {1, 2, 64, 64, 0.2f, false}, {1, 4, 8, 8, 0.2f, false}, {1, 2, 1, 300, 0.9f, false},
        {1, 3, 17, 1, 0.2f, false}, {2, 2, 1, 1, 0.5f, false}, {2, 3, 37, 41, 0.9f, true}};
    for (auto &c : ff) {
        kiln_fourier_filter_params p = {c.N, c.C, c.H, c.W, c.s};
        int64_t n = (int64_t)c.N * c.C * c.H * c.W;
        buf *x = make(KILN_F32, n), *o = c.in_place ? x : make(KILN_F32, n, false);
        for (int64_t i = 0; i < n; i++) F(x)[i] = F(x)[i] * 2 + 0.5f; // a DC term of its own
        std::vector<float> w(n), tw(2 * (c.H + c.W));
        cpu_ref_fourier_filter(&p, F(x), w.data(), tw.data());
        const kiln_tensor *s[] = {&x->t};
        check(cuda_fourier_filter(&be_f32, &p, s, &o->t));
        char name[64]; snprintf(name, sizeof name, "fourier_filter %d,%d,%dx%d s%g%s", c.N, c.C, c.H, c.W, c.s, c.in_place ? " in place" : "");
        compare(name, F(o), w.data(), n, 1e-5);
    }
}

// biased: with a bias (H,Tq,Tk) in [-3, 3) and scale 1, as T5's attention
static void attention_case(kiln_backend *be, int B, int H, int Tq, int Tk, int D, int causal, double tol,
                           bool biased = false)
{
    kiln_attention_params p = {B, H, Tq, Tk, D, biased ? 1.0f : 1.0f / sqrtf((float)D), causal};
    int64_t nq = (int64_t)B * Tq * H * D, nk = (int64_t)B * Tk * H * D, nb = (int64_t)H * Tq * Tk;
    buf *q = make(KILN_F32, nq), *k = make(KILN_F32, nk), *v = make(KILN_F32, nk), *o = make(KILN_F32, nq, false),
        *bias = make(KILN_F32, nb);
    for (int64_t i = 0; i < nq; i++) F(q)[i] *= biased ? 0.25f : 2;
    for (int64_t i = 0; i < nb; i++) F(bias)[i] *= 3;
    std::vector<float> w(nq), sc(Tk);
    const kiln_tensor *s[] = {&q->t, &k->t, &v->t, biased ? &bias->t : NULL};
    check(cuda_attention(be, &p, s, &o->t));
    cpu_ref_attention(&p, F(q), F(k), F(v), biased ? F(bias) : NULL, w.data(), sc.data());
    char name[128];
    snprintf(name, sizeof name, "attention %s B%d H%d Tq%d Tk%d D%d%s%s", kiln_dtype_name(cuda_state_of(be)->compute), B,
             H, Tq, Tk, D, causal ? " causal" : "", biased ? " +bias" : "");
    compare(name, F(o), w.data(), nq, tol);
}

static void test_attention()
{
    for (int D : {40, 64, 72, 80, 128, 160}) attention_case(&be_f32, 2, 3, 37, 45, D, 0, 1e-5);
    attention_case(&be_f32, 1, 1, 33, 40, 512, 0, 1e-5);
    attention_case(&be_f32, 1, 2, 77, 77, 64, 1, 1e-5);
    attention_case(&be_f32, 1, 2, 20, 20, 8, 1, 1e-5);
    attention_case(&be_f32, 2, 1, 9, 3, 24, 0, 1e-5);
    // T5's biased attention: the f32 kernel in every compute mode
    for (kiln_backend *be : {&be_f32, &be_f16, &be_bf16}) {
        attention_case(be, 2, 4, 7, 7, 16, 0, 1e-5, true);
        attention_case(be, 2, 3, 37, 45, 64, 0, 1e-5, true);
        attention_case(be, 1, 2, 20, 20, 8, 1, 1e-5, true);
    }
    for (kiln_backend *be : {&be_f16, &be_bf16}) {
        for (int D : {40, 64, 72, 80, 128, 160}) attention_case(be, 2, 2, 70, 77, D, 0, 1e-2);
        attention_case(be, 1, 2, 77, 120, 72, 0, 1e-2); // PixArt's heads over T5's 120 tokens
        attention_case(be, 1, 1, 130, 100, 80, 0, 1e-2);
        attention_case(be, 1, 2, 150, 200, 40, 0, 1e-2); // two query blocks, four key tiles
        attention_case(be, 1, 2, 77, 77, 64, 1, 1e-2); // causal: the f32 path
        attention_case(be, 1, 1, 33, 40, 512, 0, 1e-2);
    }
}

static void conv_case(kiln_backend *be, kiln_dtype wdt, int N, int C, int H, int Wd, int O, int KH, int stride, int pad,
                      double tol)
{
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (Wd + 2 * pad - KH) / stride + 1;
    kiln_conv2d_params p = {N, C, H, Wd, O, KH, KH, stride, pad, OH, OW};
    int64_t nx = (int64_t)N * C * H * Wd, ny = (int64_t)N * O * OH * OW;
    buf *x = make(KILN_F32, nx), *w = make(wdt, (int64_t)O * C * KH * KH), *b = make(wdt, O), *y = make(KILN_F32, ny, false);
    std::vector<float> want(ny);
    const kiln_tensor *s[] = {&x->t, &w->t, &b->t};
    check(cuda_conv2d(be, &p, s, &y->t));
    cpu_ref_conv2d(&p, F(x), W(w), W(b), want.data());
    char name[128];
    snprintf(name, sizeof name, "conv %s w%s %d,%d,%dx%d ->%d k%d s%d p%d", kiln_dtype_name(cuda_state_of(be)->compute),
             kiln_dtype_name(wdt), N, C, H, Wd, O, KH, stride, pad);
    compare(name, F(y), want.data(), ny, tol);
}

static void test_conv()
{
    for (kiln_dtype wdt : {KILN_F32, KILN_F16, KILN_BF16, KILN_F8_E4M3}) {
        conv_case(&be_f32, wdt, 2, 5, 9, 11, 7, 3, 1, 1, 1e-5);
        conv_case(&be_f32, wdt, 1, 70, 9, 11, 70, 3, 1, 1, 1e-5);
        conv_case(&be_f32, wdt, 1, 33, 13, 9, 65, 3, 2, 0, 1e-5);
        conv_case(&be_f32, wdt, 2, 40, 7, 10, 20, 1, 1, 0, 1e-5);
        conv_case(&be_f32, wdt, 2, 3, 23, 21, 5, 3, 1, 1, 1e-5); // 483 pixels: two column chunks
    }
    for (kiln_backend *be : {&be_f16, &be_bf16})
        for (kiln_dtype wdt : {KILN_F32, KILN_F16, KILN_BF16, KILN_F8_E4M3}) {
            conv_case(be, wdt, 2, 5, 9, 11, 7, 3, 1, 1, 1e-2);
            conv_case(be, wdt, 1, 70, 9, 11, 70, 3, 1, 1, 1e-2);
            conv_case(be, wdt, 1, 33, 13, 9, 65, 3, 2, 1, 1e-2);
            conv_case(be, wdt, 2, 40, 7, 10, 20, 1, 1, 0, 1e-2);
            conv_case(be, wdt, 2, 3, 23, 21, 5, 3, 1, 1, 1e-2);
        }
}

// GGUF's block types widened as matmul widens its weight (cuda_convert into
// the compute type): exactly quant.c's values in f32, rounded in f16/bf16.
static void test_dequantize()
{
    uint64_t state = 7;
    for (int d = KILN_Q4_0; d < KILN_DTYPE_COUNT; d++) {
        kiln_dtype dt = (kiln_dtype)d;
        const int64_t n = 3 * 256 + (kiln_dtype_block(dt) == 32 ? 64 : 0);
        std::vector<unsigned char> blocks(kiln_dtype_bytes(dt, (size_t)n));
        random_quant_blocks(blocks.data(), dt, (size_t)n, 0.001, 0.01, &state);
        std::vector<float> want((size_t)n), got((size_t)n, NAN), wide((size_t)n);
        kiln_convert_to_f32(want.data(), blocks.data(), dt, (size_t)n);
        char what[96];
        check(cuda_convert(&st_f32, blocks.data(), dt, got.data(), KILN_F32, n));
        snprintf(what, sizeof what, "dequantize %s -> F32", kiln_dtype_name(dt));
        compare(what, got.data(), want.data(), n, 0.0);
        for (kiln_dtype to : {KILN_F16, KILN_BF16}) {
            std::vector<uint16_t> narrow((size_t)n, 0x7e00), expect((size_t)n);
            check(cuda_convert(&st_f32, blocks.data(), dt, narrow.data(), to, n));
            kiln_convert_to_f32(got.data(), narrow.data(), to, (size_t)n);
            kiln_convert_from_f32(expect.data(), want.data(), to, (size_t)n);
            kiln_convert_to_f32(wide.data(), expect.data(), to, (size_t)n);
            snprintf(what, sizeof what, "dequantize %s -> %s", kiln_dtype_name(dt), kiln_dtype_name(to));
            compare(what, got.data(), wide.data(), n, 0.0);
        }
    }
}

int main()
{
    cuda_state *sts[] = {&st_f32, &st_f16, &st_bf16};
    kiln_backend *bes[] = {&be_f32, &be_f16, &be_bf16};
    kiln_dtype cts[] = {KILN_F32, KILN_F16, KILN_BF16};
    for (int i = 0; i < 3; i++) {
        sts[i]->compute = cts[i];
        sts[i]->smem_optin = 101376;
        bes[i]->impl = sts[i];
    }
    test_elementwise();
    test_norm();
    test_attention();
    test_conv();
    test_dequantize();
    printf("%d passed, %d failed\n", passes, failures);
    return failures != 0;
}
