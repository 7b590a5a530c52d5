/* Parity with upstream diffusers/transformers on the tiny random-weight SD 1.x
 * model: CLIP (last layer and clip skip 2), UNet noise prediction with every
 * block's output, VAE decode and encode — from the f32 single file, the
 * diffusers folder, and the f16 single file. */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "model.h"
#include "status.h"

/* f32 weights: the computation is the same math in the same precision, so
 * only summation order differs; 1e-4 is the bound. */
#define TOL_F32 1e-4
/* f16 weights: each weight is rounded to 11 significant bits (relative error
 * up to 2^-11 ~ 4.9e-4, uniform-ish so ~2.8e-4 RMS). A layer's output error is
 * that RMS times sqrt(fan-in)/sqrt(fan-in) ~ 3e-4 per layer, growing roughly
 * with sqrt(depth) through ~20 layers of the tiny UNet: ~1.5e-3, and the
 * random-weight model is not contractive, so allow 5x: 1e-2, the same bound
 * the design sets for reduced precision. */
#define TOL_F16 1e-2

typedef struct fixture {
    const char *path; /* under tests/data */
    double tol;
} fixture;

static const fixture single_f32 = {"tiny/sd15_tiny_ldm_fp32.safetensors", TOL_F32};
static const fixture diffusers_f32 = {"tiny/sd15_tiny_diffusers", TOL_F32};
static const fixture single_f16 = {"tiny/sd15_tiny_ldm_fp16.safetensors", TOL_F16};

static kiln_model *load(const fixture *fx, kiln_backend **be)
{
    kiln_model *m = NULL;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, be));
    assert_kiln_ok(kiln_model_load(kiln_test_data(fx->path), *be, &m));
    return m;
}

/* ---- CLIP ---- */

typedef struct clip_run {
    const kiln_model *m;
    const int32_t *ids;
    int skip;
    float *out;
    size_t out_count;
} clip_run;

static kiln_status clip_fn(kiln_graph *g, void *ctx)
{
    clip_run *r = ctx;
    tensor *ids, *out;
    TRY(kiln_graph_input(g, &ids, KILN_I32, 2, (int64_t[]){2, 77}, r->ids));
    TRY(kiln_clip_forward(g, &r->m->clip, ids, r->skip, &out));
    return kiln_graph_output(g, out, r->out, r->out_count * sizeof(float));
}

static void check_clip(const fixture *fx)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_st_file *f = golden_open("tiny/clip_text.safetensors");
    golden ids = golden_read(f, "input_ids");
    int32_t ids32[2 * 77];
    for (int i = 0; i < 2 * 77; i++) ids32[i] = (int32_t)ids.data[i];
    const char *names[2] = {"last_hidden_state", "clip_skip2"};
    for (int skip = 1; skip <= 2; skip++) {
        golden want = golden_read(f, names[skip - 1]);
        clip_run r = {m, ids32, skip, calloc(want.count, sizeof(float)), want.count};
        kiln_graph *g;
        assert_kiln_ok(kiln_graph_create(be, &g));
        assert_kiln_ok(kiln_graph_run(g, clip_fn, &r));
        assert_rel_l2_le(r.out, want.data, want.count, fx->tol);
        kiln_graph_free(g);
        free(r.out);
        golden_free(&want);
    }
    golden_free(&ids);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- UNet ---- */

typedef struct unet_run {
    const kiln_model *m;
    kiln_st_file *goldens;
    double tol;
    float *out;
    int probes;
} unet_run;

static kiln_status unet_probe(void *ctx, const char *block, kiln_graph *g, const tensor *t)
{
    unet_run *r = ctx;
    if (kiln_graph_planning(g)) return KILN_OK;
    char name[96];
    snprintf(name, sizeof name, "x.%s", block);
    golden want = golden_read(r->goldens, name);
    assert_int_equal(want.count, kiln_tensor_numel(t));
    float *have = malloc(want.count * sizeof(float));
    TRY(kiln_graph_output(g, t, have, want.count * sizeof(float)));
    print_message("  block %-16s", block);
    assert_rel_l2_le(have, want.data, want.count, r->tol);
    free(have);
    golden_free(&want);
    r->probes++;
    return KILN_OK;
}

static kiln_status unet_fn(kiln_graph *g, void *ctx)
{
    unet_run *r = ctx;
    golden x = golden_read(r->goldens, "sample"), t = golden_read(r->goldens, "timesteps"),
           c = golden_read(r->goldens, "encoder_hidden_states");
    tensor *xt, *tt, *ct, *eps;
    TRY(kiln_graph_input(g, &xt, KILN_F32, 4, x.shape, x.data));
    TRY(kiln_graph_input(g, &tt, KILN_F32, 1, t.shape, t.data));
    TRY(kiln_graph_input(g, &ct, KILN_F32, 3, c.shape, c.data));
    TRY(kiln_unet_forward(g, &r->m->unet, xt, tt, ct, unet_probe, r, &eps));
    TRY(kiln_graph_output(g, eps, r->out, x.count * sizeof(float)));
    golden_free(&x);
    golden_free(&t);
    golden_free(&c);
    return KILN_OK;
}

static void check_unet(const fixture *fx, const char *golden_path)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    unet_run r = {m, golden_open(golden_path), fx->tol, NULL, 0};
    golden want = golden_read(r.goldens, "noise_pred");
    r.out = calloc(want.count, sizeof(float));
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, unet_fn, &r));
    assert_true(r.probes >= 5);
    assert_rel_l2_le(r.out, want.data, want.count, fx->tol);
    kiln_graph_free(g);
    free(r.out);
    golden_free(&want);
    kiln_st_close(r.goldens);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- VAE ---- */

typedef struct vae_run {
    const kiln_model *m;
    const golden *in;
    bool encode;
    float *out;
    size_t out_count;
} vae_run;

static kiln_status vae_fn(kiln_graph *g, void *ctx)
{
    vae_run *r = ctx;
    tensor *x, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, r->in->shape, r->in->data));
    if (r->encode)
        TRY(kiln_vae_encode(g, &r->m->vae, x, &y));
    else
        TRY(kiln_vae_decode(g, &r->m->vae, x, &y));
    if ((size_t)kiln_tensor_numel(y) != r->out_count)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vae output has %lld elements, golden %zu",
                         (long long)kiln_tensor_numel(y), r->out_count);
    return kiln_graph_output(g, y, r->out, r->out_count * sizeof(float));
}

static void vae_case(kiln_backend *be, const kiln_model *m, const golden *in, bool encode, float *out, size_t count)
{
    vae_run r = {m, in, encode, out, count};
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, vae_fn, &r));
    kiln_graph_free(g);
}

static void check_vae(const fixture *fx, const char *golden_path, const char *const decodes[][2], int ndecodes)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_st_file *f = golden_open(golden_path);
    for (int i = 0; i < ndecodes; i++) {
        golden z = golden_read(f, decodes[i][0]), want = golden_read(f, decodes[i][1]);
        float *out = calloc(want.count, sizeof(float));
        vae_case(be, m, &z, false, out, want.count);
        assert_rel_l2_le(out, want.data, want.count, fx->tol);
        free(out);
        golden_free(&z);
        golden_free(&want);
    }
    golden img = golden_read(f, "enc.image"), mean = golden_read(f, "enc.mean"), logvar = golden_read(f, "enc.logvar");
    float *moments = calloc(2 * mean.count, sizeof(float));
    vae_case(be, m, &img, true, moments, 2 * mean.count);
    /* moments are (1, 2L, h, w): the first L channels are the mean */
    assert_rel_l2_le(moments, mean.data, mean.count, fx->tol);
    assert_rel_l2_le(moments + mean.count, logvar.data, logvar.count, fx->tol);
    free(moments);
    golden_free(&img);
    golden_free(&mean);
    golden_free(&logvar);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static const char *const tiny_decodes[][2] = {{"dec8.z", "dec8.image"}, {"dec32.z", "dec32.image"}};

static void clip_single_f32(void **s) { (void)s; check_clip(&single_f32); }
static void clip_diffusers_f32(void **s) { (void)s; check_clip(&diffusers_f32); }
static void clip_single_f16(void **s) { (void)s; check_clip(&single_f16); }
static void unet_single_f32(void **s) { (void)s; check_unet(&single_f32, "tiny/unet.safetensors"); }
static void unet_diffusers_f32(void **s) { (void)s; check_unet(&diffusers_f32, "tiny/unet.safetensors"); }
static void unet_single_f16(void **s) { (void)s; check_unet(&single_f16, "tiny/unet.safetensors"); }
static void vae_single_f32(void **s) { (void)s; check_vae(&single_f32, "tiny/vae.safetensors", tiny_decodes, 2); }
static void vae_diffusers_f32(void **s) { (void)s; check_vae(&diffusers_f32, "tiny/vae.safetensors", tiny_decodes, 2); }
static void vae_single_f16(void **s) { (void)s; check_vae(&single_f16, "tiny/vae.safetensors", tiny_decodes, 2); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_single_f32),  cmocka_unit_test(clip_diffusers_f32), cmocka_unit_test(clip_single_f16),
        cmocka_unit_test(unet_single_f32),  cmocka_unit_test(unet_diffusers_f32), cmocka_unit_test(unet_single_f16),
        cmocka_unit_test(vae_single_f32),   cmocka_unit_test(vae_diffusers_f32),  cmocka_unit_test(vae_single_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
