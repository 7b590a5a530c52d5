/* Flux ControlNets against upstream on tests/data/flux/controlnet (made by
 * make_flux_controlnet_data.py with diffusers' FluxControlNetModel): one of
 * InstantX's kind (a diffusers folder, the picture's latent, a union
 * model's control type) and one of XLabs' kind (BFL's names, the picture
 * through a hint encoder) on a transformer with more blocks than either:
 * each one's residuals, the transformer with them (InstantX's spread in
 * turn, XLabs' cycling), and a KSampler run with both chained through the
 * library's calls against ComfyUI's ControlNetApplyAdvanced restated; what
 * is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "flux_controlnet.h"
#include "golden.h"
#include "image.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "status.h"

#define DIR KILN_TEST_DATA "/flux/controlnet"
#define TOL 1e-5 /* f32: the same sums in another order */
#define H 8 /* the run's latent: 8x6 */
#define W 6

typedef struct {
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *instantx, *xlabs, *alimama;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &f->be));
    assert_kiln_ok(kiln_checkpoint_load(f->be, DIR, NULL, 0, &f->m));
    assert_kiln_ok(kiln_controlnet_load(f->m, DIR "/instantx", &f->instantx));
    assert_kiln_ok(kiln_controlnet_load(f->m, DIR "/xlabs.safetensors", &f->xlabs));
    assert_kiln_ok(kiln_controlnet_load(f->m, DIR "/alimama", &f->alimama));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_controlnet_free(f->instantx);
    kiln_controlnet_free(f->xlabs);
    kiln_controlnet_free(f->alimama);
    kiln_model_free(f->m);
    kiln_backend_free(f->be);
    free(f);
    return 0;
}

typedef struct {
    const kiln_flux *model;
    const flux_input *in;
    const flux_control *control;
    float *out[FLUX_MAX_DOUBLE + FLUX_MAX_SINGLE];
    int nblock, nsingle;
} residuals_ctx;

static kiln_status residuals_fn(kiln_graph *g, void *ctx)
{
    residuals_ctx *c = ctx;
    const kiln_flux *model = c->model;
    const flux_input *in = c->in;
    tensor *tokens, *context;
    flux_residuals r;
    TRY(kiln_graph_input(g, &tokens, KILN_F32, 3, (int64_t[]){in->rows, in->h * in->w, model->in_channels},
                         in->tokens));
    TRY(kiln_graph_input(g, &context, KILN_F32, 3, (int64_t[]){in->rows, in->context_tokens, model->context_dim},
                         in->context));
    TRY(kiln_flux_controlnet_forward(g, c->control->net, model, in, tokens, context, c->control, &r));
    c->nblock = r.nblock;
    c->nsingle = r.nsingle;
    for (int i = 0; i < r.nblock + r.nsingle; i++) {
        const tensor *t = i < r.nblock ? r.block[i] : r.single[i - r.nblock];
        if (!kiln_graph_no_outputs(g)) TRY(kiln_graph_output(g, t, c->out[i], kiln_tensor_nbytes(t)));
    }
    kiln_flux_residuals_release(g, &r);
    nn_drop(g, &tokens);
    nn_drop(g, &context);
    return KILN_OK;
}

/* One ControlNet's residuals on the CPU; the transformer with them as
 * parity_check_flux_controlnet checks it on every backend. */
static void check_kind(const fixture *fx, const kiln_controlnet *cn, const char *kind, float strength, int mode,
                       int nblock, int nsingle)
{
    kiln_st_file *f = golden_open(FLUX_CONTROLNET_GOLDEN), *k = golden_open(parity_flux_controlnet_golden(kind));
    parity_flux_inputs c;
    flux_input in = parity_flux_read_inputs(f, &c);
    float *hint = parity_flux_controlnet_hint(k, kind);
    const flux_control control = {cn->flux, hint, strength, mode};
    residuals_ctx rc = {&fx->m->flux, &in, &control, {0}, 0, 0};
    const size_t each = (size_t)in.rows * in.h * in.w * fx->m->flux.hidden;
    for (int i = 0; i < nblock + nsingle; i++) rc.out[i] = malloc(each * sizeof(float));
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(fx->be, &g));
    assert_kiln_ok(kiln_graph_run(g, residuals_fn, &rc));
    kiln_graph_free(g);
    assert_int_equal(rc.nblock, nblock);
    assert_int_equal(rc.nsingle, nsingle);
    for (int i = 0; i < nblock + nsingle; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s.%d", kind, i < nblock ? "double" : "single", i < nblock ? i : i - nblock);
        golden want = golden_read(k, name);
        assert_int_equal(want.count, each);
        assert_rel_l2_le(rc.out[i], want.data, each, TOL);
        golden_free(&want);
        free(rc.out[i]);
    }
    free(hint);
    parity_flux_free_inputs(&c);
    kiln_st_close(k);
    kiln_st_close(f);
    parity_check_flux_controlnet(&(parity_fixture){.tol = TOL}, kind);
}

static void instantx_union(void **state)
{
    fixture *fx = *state;
    assert_false(fx->instantx->flux->pixel_hint);
    assert_int_equal(fx->instantx->flux->nmodes, 3);
    check_kind(fx, fx->instantx, "instantx", 0.7f, 2, 2, 2);
}

static void xlabs(void **state)
{
    fixture *fx = *state;
    assert_true(fx->xlabs->flux->pixel_hint);
    check_kind(fx, fx->xlabs, "xlabs", 0.6f, -1, 2, 0);
}

/* Alimama's inpainting kind (make_flux_alimama_data.py): its residuals of a
 * 17-channel hint; the hint ControlNetInpaintingAliMamaApply makes of a
 * picture and a mask (the masked part black, the inverted mask last), also
 * of a mask of another size; without a mask all of the picture and ones;
 * what is refused. */
static void alimama_inpainting(void **state)
{
    fixture *fx = *state;
    assert_true(fx->alimama->flux->concat_mask);
    assert_int_equal(fx->alimama->flux->hint_channels, 17);
    assert_false(fx->instantx->flux->concat_mask);
    check_kind(fx, fx->alimama, "alimama", 0.7f, -1, 2, 2);

    kiln_image picture, mask;
    assert_kiln_ok(kiln_image_load(DIR "/latent_hint_16x12.png", &picture));
    assert_kiln_ok(kiln_image_load(DIR "/mask_16x12.png", &mask));
    kiln_st_file *f = golden_open(FLUX_ALIMAMA_GOLDEN);
    golden want = golden_read(f, "hint_latent");
    float *hint, *plain;
    assert_kiln_ok(kiln_control_hint(fx->m, fx->alimama, &picture, &mask, H, W, &hint));
    assert_rel_l2_le(hint, want.data, want.count, TOL);
    const size_t plane = (size_t)H * W;
    assert_kiln_ok(kiln_control_hint(fx->m, fx->alimama, &picture, NULL, H, W, &plain));
    float *instantx;
    assert_kiln_ok(kiln_control_hint(fx->m, fx->instantx, &picture, NULL, H, W, &instantx));
    assert_memory_equal(plain, instantx, 16 * plane * sizeof *plain); /* the picture as InstantX's kind reads it */
    for (size_t i = 0; i < plane; i++) assert_true(plain[16 * plane + i] == 1.0f);
    free(hint);
    free(plain);
    free(instantx);
    golden_free(&want);
    kiln_st_close(f);

    /* a mask of another size and shape: stretched to the picture, cut to the latent */
    kiln_image wide;
    assert_kiln_ok(kiln_image_load(DIR "/mask_20x10.png", &wide));
    assert_kiln_ok(kiln_control_hint(fx->m, fx->alimama, &picture, &wide, H, W, &hint));
    f = golden_open(FLUX_ALIMAMA_GOLDEN);
    want = golden_read(f, "hint_latent.wide_mask");
    assert_rel_l2_le(hint, want.data, want.count, TOL);
    free(hint);
    golden_free(&want);
    kiln_st_close(f);
    kiln_image_free(&wide);

    assert_int_equal(kiln_control_hint(fx->m, fx->instantx, &picture, &mask, H, W, &hint), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "reads none"));
    kiln_image_free(&mask);
    kiln_image_free(&picture);
}

/* Both chained on a KSampler run (ControlNetApplyAdvanced twice, the second
 * for the first 40 % of the schedule), InstantX's hint encoded by the
 * model's VAE, through the library's calls. */
static void ksampler_with_both(void **state)
{
    fixture *fx = *state;
    kiln_model *m = fx->m;
    kiln_image latent_picture, pixel_picture;
    assert_kiln_ok(kiln_image_load(DIR "/latent_hint_16x12.png", &latent_picture));
    assert_kiln_ok(kiln_image_load(DIR "/pixel_hint_64x48.png", &pixel_picture));
    kiln_st_file *f = golden_open(FLUX_CONTROLNET_GOLDEN);
    golden want = golden_read(f, "run.hint_latent");
    float *hint;
    assert_kiln_ok(kiln_control_hint(m, fx->instantx, &latent_picture, NULL, H, W, &hint));
    assert_rel_l2_le(hint, want.data, want.count, TOL);
    free(hint);
    golden_free(&want);

    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a photograph of an astronaut riding a horse", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(m, 2 * W, 2 * H, 1, &empty)); /* the tiny VAE halves a side */
    const kiln_control_apply chain[2] = {
        {fx->instantx, &latent_picture, 0.8, 0.0, 1.0, "hed/pidi/scribble/ted", NULL, false}, /* union type 2 */
        {fx->xlabs, &pixel_picture, 0.6, 0.0, 0.4, NULL, NULL, false},
    };
    kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .flux_guidance = 3.5, .control = chain, .control_count = 2};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    want = golden_read(f, "run.latent_out");
    assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
    golden_free(&want);
    kiln_latent_free(&out);

    /* a union type on the ControlNet of one kind; one past the union model's */
    kiln_control_apply one = {fx->xlabs, &pixel_picture, 0.6, 0.0, 1.0, "depth", NULL, false};
    p.control = &one;
    p.control_count = 1;
    assert_int_equal(kiln_ksampler(m, &p, &pos, &neg, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "control type 1, but it has 0"));
    one = (kiln_control_apply){fx->instantx, &latent_picture, 0.8, 0.0, 1.0, "3", NULL, false};
    assert_int_equal(kiln_ksampler(m, &p, &pos, &neg, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "control type 3, but it has 3"));
    one.union_type = "scribble";
    assert_int_equal(kiln_ksampler(m, &p, &pos, &neg, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "union control type 'scribble'"));

    /* ControlNetApply (positive_only): the negative caption's rows run without it, so one step's guided
       prediction at cfg 2 is the plain one at cfg 0 plus 2 (the controlled one at cfg 1 - that) */
    kiln_ksampler_params step = {.seed = 42, .steps = 1, .cfg = 0.0, .sampler_name = "euler", .scheduler = "simple",
                                 .denoise = 1.0, .flux_guidance = 3.5};
    kiln_latent plain0, controlled1, only2;
    assert_kiln_ok(kiln_ksampler(m, &step, &pos, &neg, &empty, &plain0));
    one = (kiln_control_apply){fx->xlabs, &pixel_picture, 0.6, 0.0, 1.0, NULL, NULL, false};
    step.cfg = 1.0, step.control = &one, step.control_count = 1;
    assert_kiln_ok(kiln_ksampler(m, &step, &pos, &neg, &empty, &controlled1));
    one.positive_only = true, step.cfg = 2.0;
    assert_kiln_ok(kiln_ksampler(m, &step, &pos, &neg, &empty, &only2));
    const size_t count = (size_t)only2.batch * only2.channels * only2.height * only2.width;
    float *parts = malloc(count * sizeof *parts);
    assert_non_null(parts);
    for (size_t i = 0; i < count; i++) parts[i] = plain0.data[i] + 2.0f * (controlled1.data[i] - plain0.data[i]);
    print_message("  positive-only ControlNet at cfg 2 vs its parts: rel L2 %.2g\n",
                  kiln_rel_l2(only2.data, parts, count));
    assert_rel_l2_le(only2.data, parts, count, 1e-5);
    free(parts);
    kiln_latent_free(&plain0), kiln_latent_free(&controlled1), kiln_latent_free(&only2);

    /* the chain beside a Kontext reference on the positive prompt: the sampler gives the ControlNets the latent
       alone (beside_reference checks the numbers of such a call) */
    kiln_st_file *k = golden_open("flux/controlnet/kontext.golden.safetensors");
    golden ref = golden_read(k, "ref");
    kiln_latent reference = {ref.data, 1, 16, 4, 6, NULL, 0, 0, NULL, NULL}, with;
    p.control = chain;
    p.control_count = 2;
    p.reference = &reference;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &with));
    want = golden_read(f, "run.latent_out");
    const double moved = kiln_rel_l2(with.data, want.data, want.count);
    print_message("  with a reference: %.3g from the run without\n", moved);
    assert_true(moved > 1e-3 && isfinite(moved));
    golden_free(&want);
    kiln_latent_free(&with);
    golden_free(&ref);
    kiln_st_close(k);

    kiln_st_close(f);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_image_free(&latent_picture);
    kiln_image_free(&pixel_picture);
}

/* The InstantX-kind ControlNet beside a Kontext reference latent
 * (make_flux_kontext_controlnet_data.py): it reads the latent alone and its
 * residuals join the latent's tokens only, as ComfyUI adds them. */
static void beside_reference(void **state)
{
    fixture *fx = *state;
    kiln_st_file *f = golden_open(FLUX_CONTROLNET_GOLDEN), *k = golden_open("flux/controlnet/kontext.golden.safetensors");
    parity_flux_inputs c;
    flux_input in = parity_flux_read_inputs(f, &c);
    float *hint = parity_flux_controlnet_hint(f, "instantx");
    golden ref = golden_read(k, "ref"), want = golden_read(k, "out");
    const int N = 12, K = 64, h = 4, w = 6;
    flux_reference placed;
    kiln_flux_place_references(KILN_REFERENCE_OFFSET, 8, 6, &h, &w, 1, &placed);
    const int R = placed.h * placed.w;
    float *tokens = malloc((size_t)2 * (N + R) * K * sizeof *tokens);
    for (int b = 0; b < 2; b++) {
        memcpy(tokens + (size_t)b * (N + R) * K, in.tokens + (size_t)b * N * K, (size_t)N * K * sizeof *tokens);
        kiln_flux_pack_reference(ref.data + (size_t)b * 16 * h * w, 16, h, w, tokens + ((size_t)b * (N + R) + N) * K);
    }
    const flux_control control = {fx->instantx->flux, hint, 0.7f, 2};
    in.latent_tokens = in.tokens;
    in.tokens = tokens;
    in.refs = &placed;
    in.nrefs = 1;
    in.controls = &control;
    in.ncontrols = 1;
    float *got = malloc(want.count * sizeof *got);
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(fx->be, &g));
    assert_kiln_ok(kiln_flux_forward(g, &fx->m->flux, &in, got));
    assert_rel_l2_le(got, want.data, want.count, TOL);
    in.latent_tokens = NULL;
    assert_int_equal(kiln_flux_forward(g, &fx->m->flux, &in, got), KILN_ERR_INVALID_ARG);
    kiln_graph_free(g);
    free(got);
    free(tokens);
    free(hint);
    golden_free(&ref);
    golden_free(&want);
    parity_flux_free_inputs(&c);
    kiln_st_close(k);
    kiln_st_close(f);
}

/* An SD ControlNet on the Flux model and the other way round, each naming
 * what it is. */
static void refusals(void **state)
{
    fixture *fx = *state;
    kiln_controlnet *cn = NULL;
    assert_int_equal(kiln_controlnet_load(fx->m, KILN_TEST_DATA "/controlnet/tiny_ldm.safetensors", &cn),
                     KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no Flux ControlNet"));
    assert_null(cn);

    kiln_model *sd;
    assert_kiln_ok(kiln_model_load(KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", fx->be, &sd));
    assert_int_equal(kiln_controlnet_load(sd, DIR "/xlabs.safetensors", &cn), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "a Flux ControlNet"));
    assert_null(cn);
    kiln_model_free(sd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(instantx_union),
        cmocka_unit_test(xlabs),
        cmocka_unit_test(alimama_inpainting),
        cmocka_unit_test(ksampler_with_both),
        cmocka_unit_test(beside_reference),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
