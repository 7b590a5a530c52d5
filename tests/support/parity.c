#include "parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "image.h"
#include "pipeline.h"
#include "resample.h"
#include "sampler.h"
#include "tokenizer.h"
#include "kiln_test.h"
#include "controlnet.h"
#include "esrgan.h"
#include "flux_controlnet.h"
#include "ip_adapter.h"
#include "model.h"
#include "status.h"
#include "t2i_adapter.h"

static kiln_model *load(const parity_fixture *fx, kiln_backend **be)
{
    kiln_model *m = NULL;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", fx->f16_compute ? &opt : NULL, be));
    kiln_checkpoint *ck;
    kiln_lora_stats stats[8];
    assert_true(fx->nloras <= 8);
    assert_kiln_ok(kiln_checkpoint_open(fx->path, &ck));
    if (fx->parts) assert_kiln_ok(kiln_checkpoint_add_parts(ck, fx->parts));
    assert_kiln_ok(kiln_model_load_with_loras(ck, fx->loras, fx->nloras, stats, *be, &m));
    return m;
}

const kiln_lora_towers *lora_towers_of(const kiln_checkpoint *ck)
{
    static kiln_lora_towers towers;
    assert_kiln_ok(kiln_model_lora_towers(ck, &towers));
    return &towers;
}

/* ---- CLIP ---- */

void parity_check_clip(const parity_fixture *fx, const char *golden_path)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_st_file *f = golden_open(golden_path);
    golden ids = golden_read(f, "input_ids");
    int32_t ids32[2 * 77];
    for (int i = 0; i < 2 * 77; i++) ids32[i] = (int32_t)ids.data[i];
    const char *names[2] = {"last_hidden_state", "clip_skip2"};
    for (int skip = 1; skip <= 2; skip++) {
        golden want = golden_read(f, names[skip - 1]);
        float *out = calloc(want.count, sizeof(float));
        assert_kiln_ok(kiln_clip_encode_ids(m, 0, ids32, 2, skip, out, NULL));
        assert_rel_l2_le(out, want.data, want.count, fx->tol);
        free(out);
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
    const char *prefix; /* of the golden's input and output names */
    bool blocks;        /* compare every named block's output too */
    const parity_unet_patches *patches; /* NULL: none */
    double tol;
    float *out;
    int probes;
    kiln_hypernetworks hypernetworks; /* the patches' files, loaded */
} unet_run;

static kiln_status unet_probe(void *ctx, const char *block, kiln_graph *g, const tensor *t)
{
    unet_run *r = ctx;
    if (kiln_graph_no_outputs(g)) return KILN_OK;
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

static golden read_prefixed(kiln_st_file *f, const char *prefix, const char *name)
{
    char key[96];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return golden_read(f, key);
}

static golden read_named(const unet_run *r, const char *name) { return read_prefixed(r->goldens, r->prefix, name); }

/* A golden's UNet inputs (names after `prefix`): sample, timesteps,
 * encoder_hidden_states and, for SDXL, y; as graph inputs in cond. */
typedef struct unet_inputs {
    golden x, t, c, y;
    tensor *xt;
    kiln_unet_cond cond;
} unet_inputs;

static kiln_status unet_inputs_read(kiln_graph *g, kiln_st_file *f, const char *prefix, unet_inputs *in)
{
    *in = (unet_inputs){.x = read_prefixed(f, prefix, "sample"), .t = read_prefixed(f, prefix, "timesteps"),
                        .c = read_prefixed(f, prefix, "encoder_hidden_states")};
    char y_name[96];
    snprintf(y_name, sizeof y_name, "%sy", prefix);
    if (kiln_st_find(f, y_name)) in->y = golden_read(f, y_name);
    tensor *tt, *ct, *yt = NULL;
    TRY(kiln_graph_input(g, &in->xt, KILN_F32, 4, in->x.shape, in->x.data));
    TRY(kiln_graph_input(g, &tt, KILN_F32, 1, in->t.shape, in->t.data));
    TRY(kiln_graph_input(g, &ct, KILN_F32, 3, in->c.shape, in->c.data));
    if (in->y.data) TRY(kiln_graph_input(g, &yt, KILN_F32, 2, in->y.shape, in->y.data));
    in->cond = (kiln_unet_cond){.t = tt, .context = ct, .y = yt};
    return KILN_OK;
}

static void unet_inputs_free(unet_inputs *in)
{
    golden_free(&in->x);
    golden_free(&in->t);
    golden_free(&in->c);
    golden_free(&in->y);
}

static kiln_status unet_fn(kiln_graph *g, void *ctx)
{
    unet_run *r = ctx;
    unet_inputs in;
    tensor *eps;
    TRY(unet_inputs_read(g, r->goldens, r->prefix, &in));
    kiln_rng draws;
    if (r->patches) in.cond.freeu = r->patches->freeu, in.cond.middle_attn1.identity = r->patches->perturb_middle;
    if (r->hypernetworks.count) in.cond.hypernetworks = &r->hypernetworks;
    if (r->patches && r->patches->hypertile) { /* every pass draws the same */
        kiln_rng_seed(&draws, r->patches->hypertile_seed);
        in.cond.hypertile = r->patches->hypertile, in.cond.hypertile_rng = &draws;
    }
    TRY(kiln_unet_forward(g, &r->m->unet, in.xt, &in.cond, r->blocks ? unet_probe : NULL, r, &eps));
    TRY(kiln_graph_output(g, eps, r->out, kiln_tensor_nbytes(eps)));
    unet_inputs_free(&in);
    return KILN_OK;
}

static void check_unet(const parity_fixture *fx, const char *golden_path, const char *prefix, bool blocks,
                       const parity_unet_patches *patches)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    unet_run r = {m, golden_open(golden_path), prefix, blocks, patches, fx->tol, NULL, 0, {NULL, 0}};
    kiln_hypernetwork *hypernetworks[KILN_MAX_HYPERNETWORKS];
    const int nhypernetworks = patches ? patches->nhypernetworks : 0;
    assert_true(nhypernetworks <= KILN_MAX_HYPERNETWORKS);
    for (int i = 0; i < nhypernetworks; i++)
        assert_kiln_ok(kiln_hypernetwork_load(m, kiln_test_data(patches->hypernetworks[i]),
                                              patches->hypernetwork_strengths[i], &hypernetworks[i]));
    r.hypernetworks = (kiln_hypernetworks){(const kiln_hypernetwork *const *)hypernetworks, nhypernetworks};
    golden want = read_named(&r, "noise_pred");
    r.out = calloc(want.count, sizeof(float));
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, unet_fn, &r));
    if (blocks) assert_true(r.probes >= 5);
    assert_rel_l2_le(r.out, want.data, want.count, fx->tol);
    kiln_graph_free(g);
    free(r.out);
    golden_free(&want);
    kiln_st_close(r.goldens);
    for (int i = 0; i < nhypernetworks; i++) kiln_hypernetwork_free(hypernetworks[i]);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_check_unet(const parity_fixture *fx, const char *golden_path)
{
    check_unet(fx, golden_path, "", true, NULL);
}

void parity_check_unet_output(const parity_fixture *fx, const char *golden_path, const char *prefix)
{
    check_unet(fx, golden_path, prefix, false, NULL);
}

void parity_check_unet_patched(const parity_fixture *fx, const char *golden_path, const char *prefix,
                               const parity_unet_patches *patches)
{
    check_unet(fx, golden_path, prefix, false, patches);
}

/* ---- ESRGAN ---- */

typedef struct upscale_run {
    const kiln_upscaler *u;
    const golden *image;
    float *out;
} upscale_run;

static kiln_status upscale_fn(kiln_graph *g, void *ctx)
{
    upscale_run *r = ctx;
    tensor *x, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, r->image->shape, r->image->data));
    TRY(kiln_upscaler_forward(g, r->u, x, &y));
    return kiln_graph_output(g, y, r->out, kiln_tensor_nbytes(y));
}

/* The network's output for the golden's `input` against its `raw`, and the
 * whole picture's upscale (clamped) against raw clamped. */
static void check_upscaler_network(const parity_fixture *fx, kiln_backend *be, kiln_upscaler *u, kiln_st_file *f,
                                   const char *input, const char *raw_key)
{
    golden image = golden_read(f, input), raw = golden_read(f, raw_key);
    upscale_run r = {u, &image, malloc(raw.count * sizeof(float))};
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, upscale_fn, &r));
    kiln_graph_free(g);
    print_message("  network ");
    assert_rel_l2_le(r.out, raw.data, raw.count, fx->tol);
    float *out;
    assert_kiln_ok(kiln_upscale_image(u, image.data, (int)image.shape[2], (int)image.shape[3], KILN_UPSCALE_TILE,
                                      KILN_UPSCALE_OVERLAP, &out));
    for (size_t i = 0; i < raw.count; i++) raw.data[i] = raw.data[i] < 0.0f ? 0.0f : raw.data[i] > 1.0f ? 1.0f : raw.data[i];
    print_message("  clamped ");
    assert_rel_l2_le(out, raw.data, raw.count, fx->tol);
    free(out);
    free(r.out);
    golden_free(&image), golden_free(&raw);
}

void parity_check_upscaler(const parity_fixture *fx, const char *model_path, const char *golden_path)
{
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", NULL, &be));
    kiln_upscaler *u;
    assert_kiln_ok(kiln_upscaler_open(kiln_test_data(model_path), be, &u));
    kiln_st_file *f = golden_open(golden_path);
    check_upscaler_network(fx, be, u, f, "image", "raw");
    golden image = golden_read(f, "image"), whole = golden_read(f, "whole"), tiled = golden_read(f, "tiled");
    const int h = (int)image.shape[2], w = (int)image.shape[3];
    float *out;
    assert_kiln_ok(kiln_upscale_image(u, image.data, h, w, KILN_UPSCALE_TILE, KILN_UPSCALE_OVERLAP, &out));
    print_message("  whole   ");
    assert_rel_l2_le(out, whole.data, whole.count, fx->tol);
    free(out);
    assert_kiln_ok(kiln_upscale_image(u, image.data, h, w, 8, 2, &out));
    print_message("  tiled   ");
    assert_rel_l2_le(out, tiled.data, tiled.count, fx->tol);
    free(out);
    golden_free(&image), golden_free(&whole), golden_free(&tiled);
    kiln_st_close(f);
    kiln_upscaler_free(u);
    kiln_backend_free(be);
}

void parity_check_upscaler_network(const parity_fixture *fx, const char *model_path, const char *golden_path,
                                   const char *raw_key)
{
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", NULL, &be));
    kiln_upscaler *u;
    assert_kiln_ok(kiln_upscaler_open(kiln_test_data(model_path), be, &u));
    kiln_st_file *f = golden_open(golden_path);
    check_upscaler_network(fx, be, u, f, "input", raw_key);
    kiln_st_close(f);
    kiln_upscaler_free(u);
    kiln_backend_free(be);
}

/* ---- ControlNet ---- */

typedef struct controlnet_run {
    const kiln_model *m;
    const kiln_controlnet *cn;
    kiln_st_file *goldens;
    double tol;
    float *out;
} controlnet_run;

/* Compares a graph tensor with golden `name` (on the run that has outputs). */
static kiln_status check_tensor(kiln_graph *g, kiln_st_file *goldens, const char *name, const tensor *t, double tol)
{
    if (kiln_graph_no_outputs(g)) return KILN_OK;
    golden want = golden_read(goldens, name);
    assert_int_equal(want.count, kiln_tensor_numel(t));
    float *have = malloc(want.count * sizeof(float));
    TRY(kiln_graph_output(g, t, have, want.count * sizeof(float)));
    print_message("  %-14s", name);
    assert_rel_l2_le(have, want.data, want.count, tol);
    free(have);
    golden_free(&want);
    return KILN_OK;
}

static kiln_status controlnet_fn(kiln_graph *g, void *ctx)
{
    controlnet_run *r = ctx;
    golden hint = golden_read(r->goldens, "hint"), scale = golden_read(r->goldens, "scale");
    unet_inputs in;
    tensor *ht, *eps;
    TRY(unet_inputs_read(g, r->goldens, "", &in));
    TRY(kiln_graph_input(g, &ht, KILN_F32, 4, hint.shape, hint.data));
    kiln_unet_control control;
    TRY(kiln_controlnet_forward(g, r->cn, in.xt, ht, &in.cond, scale.data[0], &control));
    for (int i = 0; i < control.nskips; i++) {
        char name[32];
        snprintf(name, sizeof name, "residual.%d", i);
        TRY(check_tensor(g, r->goldens, name, control.skips[i], r->tol));
    }
    TRY(check_tensor(g, r->goldens, "residual.mid", control.mid, r->tol));
    in.cond.control = &control;
    TRY(kiln_unet_forward(g, &r->m->unet, in.xt, &in.cond, NULL, NULL, &eps));
    for (int i = 0; i < control.nskips; i++) kiln_graph_release(g, control.skips[i]);
    kiln_graph_release(g, control.mid);
    TRY(kiln_graph_output(g, eps, r->out, in.x.count * sizeof(float)));
    unet_inputs_free(&in);
    golden_free(&hint);
    golden_free(&scale);
    return KILN_OK;
}

void parity_check_controlnet(const parity_fixture *fx, const char *controlnet_path, const char *golden_path)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_controlnet *cn;
    const char *path = controlnet_path[0] == '/' ? controlnet_path : kiln_test_data(controlnet_path);
    assert_kiln_ok(kiln_controlnet_open(path, &m->unet, m->checkpoint, be, &cn));
    controlnet_run r = {m, cn, golden_open(golden_path), fx->tol, NULL};
    golden want = golden_read(r.goldens, "noise_pred");
    r.out = calloc(want.count, sizeof(float));
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, controlnet_fn, &r));
    assert_rel_l2_le(r.out, want.data, want.count, fx->tol);
    kiln_graph_free(g);
    free(r.out);
    golden_free(&want);
    kiln_st_close(r.goldens);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_expect_controlnet_refusal(const char *model, const char *path, const char *needle)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn = (kiln_controlnet *)&cn;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(model, be, &m));
    assert_int_equal(kiln_controlnet_open(path, &m->unet, m->checkpoint, be, &cn), KILN_ERR_MODEL);
    assert_null(cn);
    print_message("  refused: %s\n", kiln_last_error());
    if (!strstr(kiln_last_error(), needle) || !strstr(kiln_last_error(), path))
        fail_msg("'%s' does not mention '%s' and the file", kiln_last_error(), needle);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- T2I-Adapter ---- */

typedef struct adapter_run {
    const kiln_model *m;
    kiln_st_file *inputs;
    const float *features;    /* every level's, one row, as kiln_t2i_adapter_features gives them */
    int64_t shapes[KILN_T2I_MAX_LEVELS][3];
    int blocks[KILN_T2I_MAX_LEVELS]; /* where each joins, or KILN_T2I_UNUSED */
    int nlevels;
    float scale, *out, *rows;
} adapter_run;

static kiln_status adapter_unet_fn(kiln_graph *g, void *ctx)
{
    adapter_run *r = ctx;
    unet_inputs in;
    tensor *eps;
    TRY(unet_inputs_read(g, r->inputs, "", &in));
    const int64_t rows = in.x.shape[0];
    kiln_unet_control control = {0};
    const float *level = r->features;
    float *at = r->rows;
    for (int l = 0; l < r->nlevels; l++) {
        const int64_t *s = r->shapes[l];
        const size_t n = (size_t)(s[0] * s[1] * s[2]);
        if (r->blocks[l] != KILN_T2I_UNUSED) {
            for (int64_t k = 0; k < rows; k++)
                for (size_t i = 0; i < n; i++) at[k * n + i] = level[i] * r->scale;
            tensor **slot = r->blocks[l] == KILN_T2I_MIDDLE ? &control.mid : &control.inputs[r->blocks[l]];
            TRY(kiln_graph_input(g, slot, KILN_F32, 4, (int64_t[]){rows, s[0], s[1], s[2]}, at));
            at += rows * n;
        }
        level += n;
    }
    in.cond.control = &control;
    TRY(kiln_unet_forward(g, &r->m->unet, in.xt, &in.cond, NULL, NULL, &eps));
    TRY(kiln_graph_output(g, eps, r->out, kiln_tensor_nbytes(eps)));
    unet_inputs_free(&in);
    return KILN_OK;
}

void parity_check_t2i_adapter(const parity_fixture *fx, const char *adapter_path, const char *inputs_path,
                              const char *prefix, const char *hint_name)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_controlnet *cn;
    const char *path = adapter_path[0] == '/' ? adapter_path : kiln_test_data(adapter_path);
    assert_kiln_ok(kiln_controlnet_open(path, &m->unet, m->checkpoint, be, &cn));
    const kiln_t2i_adapter *a = cn->adapter;
    assert_non_null(a);
    kiln_st_file *f = golden_open("t2i_adapter/golden.safetensors");
    golden hint = golden_read(f, hint_name), scale = golden_read(f, "scale");
    adapter_run r = {m, golden_open(inputs_path), NULL, {{0}}, {0}, a->nlevels, scale.data[0], NULL, NULL};
    assert_kiln_ok(kiln_t2i_adapter_features(a, be, hint.data, (int)hint.shape[2], (int)hint.shape[3],
                                             (float **)&r.features, r.shapes));
    golden x = golden_read(r.inputs, "sample");
    const float *level = r.features;
    size_t placed = 0;
    for (int l = 0; l < a->nlevels; l++) {
        char name[64];
        snprintf(name, sizeof name, "%s.feature.%d", prefix, l);
        golden want = golden_read(f, name);
        const size_t n = (size_t)(r.shapes[l][0] * r.shapes[l][1] * r.shapes[l][2]);
        assert_int_equal(want.count, n);
        print_message("  %-18s", name);
        assert_rel_l2_le(level, want.data, n, fx->tol);
        golden_free(&want);
        level += n;
        /* joined where the UNet's block has its shape, as diffusers adds it */
        int64_t there[3];
        const int block = kiln_t2i_adapter_block(a, l);
        const bool fits = kiln_unet_block_shape(m->unet.config, x.shape[2], x.shape[3], block, there) &&
                          !memcmp(there, r.shapes[l], sizeof there);
        r.blocks[l] = fits ? block : KILN_T2I_UNUSED;
        placed += fits ? (size_t)x.shape[0] * n : 0;
    }
    char name[64];
    snprintf(name, sizeof name, "%s.noise_pred", prefix);
    golden want = golden_read(f, name);
    r.out = calloc(want.count, sizeof(float));
    r.rows = malloc(placed * sizeof(float));
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, adapter_unet_fn, &r));
    print_message("  %-18s", name);
    assert_rel_l2_le(r.out, want.data, want.count, fx->tol);
    kiln_graph_free(g);
    free(r.out);
    free(r.rows);
    free((float *)r.features);
    golden_free(&want), golden_free(&x), golden_free(&hint), golden_free(&scale);
    kiln_st_close(r.inputs);
    kiln_st_close(f);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- IP-Adapter ---- */

typedef struct ip_adapter_run {
    const kiln_model *m;
    int n;                         /* adapters, each adding its attention after the one before */
    const kiln_ip_adapter *ipa[2];
    const char *tokens[2];         /* the golden's names of the tokens each attends to */
    float scale[2];
    kiln_st_file *goldens;
    const char *inputs; /* the prefix of its UNet inputs */
    float *out;
    kiln_st_file *token_goldens; /* where the tokens are; NULL: goldens */
} ip_adapter_run;

static kiln_status ip_adapter_fn(kiln_graph *g, void *ctx)
{
    ip_adapter_run *r = ctx;
    golden tokens[2] = {0};
    unet_inputs in;
    tensor *eps;
    kiln_unet_image_prompt image[2];
    for (int i = 0; i < r->n; i++) tokens[i] = golden_read(r->token_goldens ? r->token_goldens : r->goldens, r->tokens[i]);
    TRY(unet_inputs_read(g, r->goldens, r->inputs, &in));
    for (int i = 0; i < r->n; i++) {
        tensor *tt;
        TRY(kiln_graph_input(g, &tt, KILN_F32, 3, tokens[i].shape, tokens[i].data));
        image[i] = (kiln_unet_image_prompt){tt, r->scale[i], r->ipa[i]->k_w, r->ipa[i]->v_w};
    }
    in.cond.image = image;
    in.cond.nimages = r->n;
    TRY(kiln_unet_forward(g, &r->m->unet, in.xt, &in.cond, NULL, NULL, &eps));
    TRY(kiln_graph_output(g, eps, r->out, in.x.count * sizeof(float)));
    unet_inputs_free(&in);
    for (int i = 0; i < r->n; i++) golden_free(&tokens[i]);
    return KILN_OK;
}

static void check_against(const char *what, const float *have, kiln_st_file *f, const char *name, double tol)
{
    golden want = golden_read(f, name);
    print_message("  %-12s", what);
    assert_rel_l2_le(have, want.data, want.count, tol);
    golden_free(&want);
}

/* The tower on upstream's preprocessed picture: its image embeds and
 * penultimate hidden states. */
static void check_clip_vision(const kiln_clip_vision *cv, kiln_st_file *f, double tol)
{
    golden pixels = golden_read(f, "pixels.big"), penultimate = golden_read(f, "penultimate");
    float *embeds = malloc((size_t)cv->config->projection * sizeof *embeds);
    float *hidden = malloc(penultimate.count * sizeof *hidden);
    assert_kiln_ok(kiln_clip_vision_encode(cv, pixels.data, 1,
                                           &(clip_vision_outputs){.image_embeds = embeds, .penultimate = hidden}));
    check_against("image embeds", embeds, f, "image_embeds", tol);
    check_against("penultimate", hidden, f, "penultimate", tol);
    free(embeds);
    free(hidden);
    golden_free(&pixels);
    golden_free(&penultimate);
}

/* The fixture's model with a CLIP vision tower and an IP-Adapter for it. */
static kiln_model *load_with_ip_adapter(const parity_fixture *fx, const char *clip_vision_path,
                                        const char *ip_adapter_path, kiln_backend **be, kiln_clip_vision **cv,
                                        kiln_ip_adapter **ipa)
{
    kiln_model *m = load(fx, be);
    assert_kiln_ok(kiln_clip_vision_open(kiln_test_data(clip_vision_path), *be, cv));
    assert_kiln_ok(kiln_ip_adapter_open(kiln_test_data(ip_adapter_path), &m->unet, *be, ipa));
    return m;
}

void parity_check_ip_adapter(const parity_fixture *fx, const char *clip_vision_path, const char *ip_adapter_path,
                             const char *golden_path, const char *prefix)
{
    kiln_backend *be;
    kiln_clip_vision *cv;
    kiln_ip_adapter *ipa;
    kiln_model *m = load_with_ip_adapter(fx, clip_vision_path, ip_adapter_path, &be, &cv, &ipa);
    kiln_st_file *f = golden_open(golden_path);
    check_clip_vision(cv, f, fx->tol);

    /* the image projection on upstream's embeds: plain, a zero embedding and the
     * picture's; Plus and full-face, the hidden states of a black picture and of the picture */
    char tokens_name[64], noise_name[64];
    snprintf(tokens_name, sizeof tokens_name, "%sip_tokens", prefix);
    snprintf(noise_name, sizeof noise_name, "%snoise_pred", prefix);
    float *embeds;
    int n = 1;
    if (kiln_ip_adapter_reads_hidden(ipa)) {
        golden hidden = golden_read(f, "plus.penultimate");
        embeds = hidden.data; /* taken over */
        n = (int)hidden.shape[1];
    } else {
        golden upstream = golden_read(f, "image_embeds");
        embeds = calloc((size_t)2 * ipa->embed_dim, sizeof *embeds);
        memcpy(embeds + ipa->embed_dim, upstream.data, (size_t)ipa->embed_dim * sizeof *embeds);
        golden_free(&upstream);
    }
    golden want_tokens = golden_read(f, tokens_name);
    float *tokens = malloc(want_tokens.count * sizeof *tokens);
    assert_kiln_ok(kiln_ip_adapter_tokens(ipa, embeds, 2, n, tokens));
    check_against("ip tokens", tokens, f, tokens_name, fx->tol);

    /* the UNet attending to upstream's tokens */
    golden want = golden_read(f, noise_name);
    /* the UNet's inputs under the prefix where the golden has its own (SDXL's), else the tiny SD 1.x UNet's */
    char sample[64];
    snprintf(sample, sizeof sample, "%ssample", prefix);
    golden scale = golden_read(f, "scale");
    ip_adapter_run r = {m, 1, {ipa}, {tokens_name}, {scale.data[0]}, f, kiln_st_find(f, sample) ? prefix : "",
                        calloc(want.count, sizeof(float)), NULL};
    golden_free(&scale);
    assert_kiln_ok(kiln_graph_run_once(be, ip_adapter_fn, &r));
    check_against("noise pred", r.out, f, noise_name, fx->tol);

    free(r.out), free(embeds), free(tokens);
    golden_free(&want_tokens);
    golden_free(&want);
    kiln_st_close(f);
    kiln_ip_adapter_free(ipa);
    kiln_clip_vision_free(cv);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_check_ip_adapter_chain(const parity_fixture *fx, const char *const adapters[2],
                                   const char *const tokens[2], const char *golden_path, const char *chain_path)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_ip_adapter *ipa[2];
    for (int i = 0; i < 2; i++) assert_kiln_ok(kiln_ip_adapter_open(kiln_test_data(adapters[i]), &m->unet, be, &ipa[i]));
    kiln_st_file *f = golden_open(golden_path), *chain = golden_open(chain_path);
    golden scales = golden_read(chain, "scales"), want = golden_read(chain, "noise_pred");
    ip_adapter_run r = {m, 2, {ipa[0], ipa[1]}, {tokens[0], tokens[1]}, {scales.data[0], scales.data[1]}, f, "",
                        calloc(want.count, sizeof(float)), NULL};
    assert_kiln_ok(kiln_graph_run_once(be, ip_adapter_fn, &r));
    check_against("noise pred", r.out, chain, "noise_pred", fx->tol);
    free(r.out);
    golden_free(&scales);
    golden_free(&want);
    kiln_st_close(chain);
    kiln_st_close(f);
    for (int i = 0; i < 2; i++) kiln_ip_adapter_free(ipa[i]);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_check_ip_adapter_pictures(const parity_fixture *fx, const char *clip_vision_path, const char *ip_adapter_path,
                                      const char *golden_path, const char *pictures_path, const char *prefix,
                                      const char *const *pictures, int count)
{
    kiln_backend *be;
    kiln_clip_vision *cv;
    kiln_ip_adapter *ipa;
    kiln_model *m = load_with_ip_adapter(fx, clip_vision_path, ip_adapter_path, &be, &cv, &ipa);
    kiln_image images[8];
    assert_true(count <= 8);
    for (int i = 0; i < count; i++) assert_kiln_ok(kiln_image_load(kiln_test_data(pictures[i]), &images[i]));
    kiln_st_file *f = golden_open(golden_path), *want = golden_open(pictures_path);
    char tokens_name[64], noise_name[64];
    snprintf(tokens_name, sizeof tokens_name, "%sip_tokens", prefix);
    snprintf(noise_name, sizeof noise_name, "%snoise_pred", prefix);
    /* from the picture files: preprocess, tower, projection, side by side */
    float *tokens;
    assert_kiln_ok(kiln_image_prompt_tokens(ipa, cv, images, count, &tokens));
    check_against("ip tokens", tokens, want, tokens_name, fx->tol);
    free(tokens);
    /* the UNet attending to all of upstream's tokens */
    golden scale = golden_read(f, "scale"), noise = golden_read(want, noise_name);
    ip_adapter_run r = {m, 1, {ipa}, {tokens_name}, {scale.data[0]}, f, "", calloc(noise.count, sizeof(float)), want};
    assert_kiln_ok(kiln_graph_run_once(be, ip_adapter_fn, &r));
    check_against("noise pred", r.out, want, noise_name, fx->tol);
    free(r.out);
    golden_free(&scale), golden_free(&noise);
    kiln_st_close(want);
    kiln_st_close(f);
    for (int i = 0; i < count; i++) kiln_image_free(&images[i]);
    kiln_ip_adapter_free(ipa);
    kiln_clip_vision_free(cv);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- VAE ---- */

void parity_check_vae(const parity_fixture *fx, const char *golden_path, const char *const decodes[][2], int ndecodes)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_st_file *f = golden_open(golden_path);
    for (int i = 0; i < ndecodes; i++) {
        golden z = golden_read(f, decodes[i][0]), want = golden_read(f, decodes[i][1]);
        float *out;
        assert_kiln_ok(kiln_vae_decode_latent(m, z.data, (int)z.shape[0], (int)z.shape[2], (int)z.shape[3], &out));
        assert_rel_l2_le(out, want.data, want.count, fx->tol);
        free(out);
        golden_free(&z);
        golden_free(&want);
    }
    golden img = golden_read(f, "enc.image"), mean = golden_read(f, "enc.mean"), logvar = golden_read(f, "enc.logvar");
    float *moments;
    assert_kiln_ok(kiln_vae_encode_moments(m, img.data, (int)img.shape[0], (int)img.shape[2], (int)img.shape[3], &moments));
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

static kiln_conditioning conditioning(kiln_st_file *f, const char *name)
{
    golden g = golden_read(f, name);
    return (kiln_conditioning){g.data, (int)g.shape[1], (int)g.shape[2], NULL, 0};
}

void parity_check_picture(kiln_model *model, const float *latent, int latent_h, int latent_w, const golden *image,
                          double tol)
{
    float *decoded;
    assert_kiln_ok(kiln_vae_decode_latent(model, latent, 1, latent_h, latent_w, &decoded));
    const size_t plane = (size_t)image->shape[1] * image->shape[2];
    assert_int_equal(image->count, 3 * plane);
    float *rgb = malloc(image->count * sizeof *rgb); /* SaveImage's clamp((x + 1) / 2), channels last */
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) rgb[i * 3 + c] = fminf(fmaxf((decoded[c * plane + i] + 1.0f) / 2.0f, 0.0f), 1.0f);
    assert_rel_l2_le(rgb, image->data, image->count, tol);
    free(rgb);
    free(decoded);
}

void parity_check_run(kiln_model *model, const kiln_sampling_job *job, const kiln_conditioning *positive,
                      const kiln_conditioning *negative, const char *golden_path, double tol)
{
    kiln_st_file *f = golden_open(golden_path);
    golden want = golden_read(f, "run.latent_out"), image = golden_read(f, "run.image");
    float *latent = NULL;
    assert_kiln_ok(kiln_ksample(model, job, positive, negative, &latent));
    assert_rel_l2_le(latent, want.data, want.count, tol);
    parity_check_picture(model, latent, job->latent_h, job->latent_w, &image, tol);
    free(latent);
    golden_free(&want);
    golden_free(&image);
    kiln_st_close(f);
}

void parity_check_sag_run(kiln_model *model, const char *golden_path, const char *run, double tol)
{
    kiln_st_file *f = golden_open(golden_path);
    golden gp = golden_read(f, "positive"), gn = golden_read(f, "negative");
    golden settings = golden_field(f, run, "settings"), want = golden_field(f, run, "latent_out");
    const kiln_conditioning pos = {gp.data, (int)gp.shape[1], (int)gp.shape[2], NULL, 0},
                            neg = {gn.data, (int)gn.shape[1], (int)gn.shape[2], NULL, 0};
    const kiln_sag sag = {settings.data[1], settings.data[2]};
    kiln_sampling_job job = kiln_test_job("euler", "normal", 3, settings.data[0], 42, (int)want.shape[2],
                                          (int)want.shape[3]);
    job.sag = &sag;
    char key[64];
    snprintf(key, sizeof key, "%s.deep_shrink", run); /* Deep Shrink on the model too, bicubic both ways */
    golden ds = kiln_st_find(f, key) ? golden_field(f, run, "deep_shrink") : (golden){0};
    const kiln_deep_shrink shrink = ds.data ? (kiln_deep_shrink){(int)ds.data[0], ds.data[1], ds.data[2], ds.data[3],
                                                                 ds.data[4] != 0.0f, "bicubic", "bicubic"}
                                            : (kiln_deep_shrink){0};
    if (ds.data) job.deep_shrink = &shrink;
    float *latent = NULL, *plain = NULL;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, &latent));
    if (ds.data) job.deep_shrink = NULL; /* what the run is compared with: without the shrink, or without SAG */
    else job.sag = NULL;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, &plain));
    const double err = kiln_rel_l2(latent, want.data, want.count), off = kiln_rel_l2(plain, want.data, want.count);
    print_message("  SelfAttentionGuidance %s: latent rel L2 %.2g from ComfyUI's (%.2g from the run without %s)\n",
                  run, err, off, ds.data ? "Deep Shrink" : "it");
    assert_true(err <= tol);
    assert_true(off > 1e-2);
    free(latent);
    free(plain);
    golden *all[] = {&gp, &gn, &settings, &want, &ds};
    for (size_t i = 0; i < 5; i++) golden_free(all[i]);
    kiln_st_close(f);
}

/* KSampler euler, normal, 3 steps, cfg 5, seed 42 on the prompts of f (a
 * golden of tests/data/deep_shrink's or tests/data/hypertile's kind) on an
 * h x w latent, with the model patches set in `patched`: the final latent. */
static float *patched_run_latent(kiln_model *model, kiln_st_file *f, kiln_sampling_job patched, int h, int w)
{
    golden gp = golden_read(f, "positive"), gn = golden_read(f, "negative");
    const kiln_conditioning pos = {gp.data, (int)gp.shape[1], (int)gp.shape[2], NULL, 0},
                            neg = {gn.data, (int)gn.shape[1], (int)gn.shape[2], NULL, 0};
    kiln_sampling_job job = patched;
    job.steps = 3, job.cfg = 5.0f, job.denoise = 1.0, job.seed = 42, job.batch = 1, job.latent_h = h, job.latent_w = w;
    assert_kiln_ok(kiln_sampler_from_name("euler", &job.sampler));
    assert_kiln_ok(kiln_scheduler_from_name("normal", &job.scheduler));
    float *latent = NULL;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, &latent));
    golden_free(&gp);
    golden_free(&gn);
    return latent;
}

void parity_check_deep_shrink_run(kiln_model *model, const char *run, double tol)
{
    kiln_st_file *f = golden_open("deep_shrink/deep_shrink.safetensors");
    golden s = golden_field(f, run, "settings"), want = golden_field(f, run, "latent_out");
    const int h = (int)want.shape[2], w = (int)want.shape[3];
    const kiln_deep_shrink shrink = {.block_number = (int)s.data[0], .downscale_factor = s.data[1],
                                     .start_percent = s.data[2], .end_percent = s.data[3],
                                     .downscale_after_skip = s.data[4] != 0.0f,
                                     .downscale_method = kiln_resample_name((kiln_resample_method)s.data[5]),
                                     .upscale_method = kiln_resample_name((kiln_resample_method)s.data[6])};
    /* a run with FreeU_V2 after the node has its numbers beside */
    char key[64];
    snprintf(key, sizeof key, "%s.freeu", run);
    const bool with_freeu = kiln_st_find(f, key) != NULL;
    golden fv = with_freeu ? golden_field(f, run, "freeu") : (golden){0};
    const kiln_freeu freeu = with_freeu ? (kiln_freeu){fv.data[0], fv.data[1], fv.data[2], fv.data[3], true} : (kiln_freeu){0};
    /* a run with a control has its strength beside, on the golden's hint: the "controlnet" run
       tests/data/controlnet's tiny ControlNet, the "t2i" run tests/data/t2i_adapter's full T2I-Adapter */
    snprintf(key, sizeof key, "%s.strength", run);
    const bool with_control = kiln_st_find(f, key) != NULL;
    golden hint = with_control ? golden_read(f, "hint") : (golden){0},
           strength = with_control ? golden_field(f, run, "strength") : (golden){0};
    kiln_controlnet *cn = NULL;
    if (with_control)
        assert_kiln_ok(kiln_controlnet_load(model, kiln_test_data(strcmp(run, "t2i") == 0
                                                                      ? "t2i_adapter/full_original.safetensors"
                                                                      : "controlnet/tiny_ldm.safetensors"), &cn));
    const kiln_control control = {cn, hint.data, with_control ? strength.data[0] : 0.0f, 0.0, 1.0, -1, false};
    kiln_sampling_job patched = {.deep_shrink = &shrink, .freeu = with_freeu ? &freeu : NULL,
                                 .controls = with_control ? &control : NULL, .ncontrols = with_control};
    float *latent = patched_run_latent(model, f, patched, h, w);
    patched.deep_shrink = NULL;
    float *plain = patched_run_latent(model, f, patched, h, w);
    if (with_control) { /* the ControlNet without the patch, as ComfyUI runs it */
        golden alone = golden_field(f, run, "unshrunk_latent_out");
        const double e = kiln_rel_l2(plain, alone.data, alone.count);
        print_message("  Deep Shrink %-12s the %s run without it rel L2 %.2g from ComfyUI's\n", run,
                      strcmp(run, "t2i") == 0 ? "T2I-Adapter" : "ControlNet", e);
        assert_true(e <= tol);
        golden_free(&alone);
        golden_free(&hint);
        golden_free(&strength);
        kiln_controlnet_free(cn);
    }
    const double err = kiln_rel_l2(latent, want.data, want.count), off = kiln_rel_l2(plain, want.data, want.count);
    print_message("  Deep Shrink %-12s latent rel L2 %.2g from ComfyUI's (%.2g from the run without it)\n", run, err,
                  off);
    assert_true(err <= tol);
    assert_true(off > 1e-3);
    free(latent);
    free(plain);
    if (with_freeu) golden_free(&fv);
    golden_free(&s);
    golden_free(&want);
    kiln_st_close(f);
}

kiln_hypertile parity_hypertile_settings(kiln_st_file *f, const char *run)
{
    golden s = golden_field(f, run, "settings");
    const kiln_hypertile t = {(int)s.data[0], (int)s.data[1], (int)s.data[2], s.data[3] != 0.0f};
    golden_free(&s);
    return t;
}

void parity_check_hypertile_run(kiln_model *model, const char *run, double tol)
{
    kiln_st_file *f = golden_open("hypertile/hypertile.safetensors");
    golden want = golden_field(f, run, "latent_out"), plain_want = golden_read(f, "plain.latent_out");
    const int h = (int)want.shape[2], w = (int)want.shape[3];
    const kiln_hypertile tiles = parity_hypertile_settings(f, run);
    char key[64];
    snprintf(key, sizeof key, "%s.pag_scale", run);
    golden pag = kiln_st_find(f, key) ? golden_field(f, run, "pag_scale") : (golden){0};
    const float pag_scale = pag.count ? pag.data[0] : 0.0f;
    if (pag.count) golden_free(&pag);
    float *latent = patched_run_latent(model, f, (kiln_sampling_job){.hypertile = &tiles, .pag_scale = pag_scale}, h, w),
          *plain = patched_run_latent(model, f, (kiln_sampling_job){0}, h, w);
    const double err = kiln_rel_l2(latent, want.data, want.count), off = kiln_rel_l2(latent, plain, want.count),
                 plain_err = kiln_rel_l2(plain, plain_want.data, want.count);
    print_message("  HyperTile %-9s latent rel L2 %.2g from ComfyUI's (%.2g from the run without it%s, which is "
                  "%.2g from ComfyUI's)\n", run, err, off, pag_scale ? " or PAG" : "", plain_err);
    assert_true(err <= tol);
    assert_true(plain_err <= tol);
    assert_true(off > 1e-3);
    free(latent);
    free(plain);
    golden_free(&want);
    golden_free(&plain_want);
    kiln_st_close(f);
}

void parity_check_hypertile_sdxl(const parity_fixture *fx)
{
    kiln_st_file *f = golden_open("hypertile/hypertile.safetensors");
    const kiln_hypertile tiles = parity_hypertile_settings(f, "sdxl");
    golden seed = golden_field(f, "sdxl", "seed");
    const parity_unet_patches patches = {.hypertile = &tiles, .hypertile_seed = (uint64_t)seed.data[0]};
    parity_check_unet_patched(fx, "hypertile/hypertile.safetensors", "sdxl.", &patches);
    golden_free(&seed);
    kiln_st_close(f);
}

void parity_check_img2img(kiln_model *model, const kiln_sampling_job *job, const kiln_conditioning *positive,
                           const kiln_conditioning *negative, const char *golden_path, double tol)
{
    kiln_st_file *f = golden_open(golden_path);
    golden in = golden_read(f, "img2img.latent_in"), want = golden_read(f, "img2img.latent_out");
    kiln_sampling_job img2img = *job;
    img2img.init_latent = in.data;
    img2img.denoise = 0.6;
    float *latent;
    assert_kiln_ok(kiln_ksample(model, &img2img, positive, negative, &latent));
    assert_rel_l2_le(latent, want.data, want.count, tol);
    free(latent);
    golden_free(&in);
    golden_free(&want);
    kiln_st_close(f);
}

void parity_check_comfyui_run(kiln_model *model, const kiln_tokenizer *tokenizer, const char *file)
{
    char rel[512];
    snprintf(rel, sizeof rel, "comfyui_e2e/%s", file);
    kiln_st_file *f = golden_open(rel);
    kiln_sampling_job job = {0};
    assert_kiln_ok(kiln_sampler_from_name(golden_meta(f, "sampler_name"), &job.sampler));
    assert_kiln_ok(kiln_scheduler_from_name(golden_meta(f, "scheduler"), &job.scheduler));
    job.steps = atoi(golden_meta(f, "steps"));
    job.cfg = strtof(golden_meta(f, "cfg"), NULL);
    job.denoise = strtod(golden_meta(f, "denoise"), NULL);
    job.seed = strtoull(golden_meta(f, "seed"), NULL, 10);
    job.batch = atoi(golden_meta(f, "batch_size"));
    golden noise = golden_read(f, "noise"), want = golden_read(f, "latent_out"), pixels = golden_read(f, "image_uint8");
    golden init = {0};
    if (kiln_st_find(f, "latent_in")) init = golden_read(f, "latent_in");
    job.latent_h = (int)noise.shape[2];
    job.latent_w = (int)noise.shape[3];
    job.noise = noise.data;
    job.init_latent = init.data;
    kiln_conditioning pos = conditioning(f, "positive.cond"), neg = conditioning(f, "negative.cond");
    print_message("%-40s", file);
    int clip_skip = atoi(golden_meta(f, "clip_skip"));
    const char *texts[2] = {golden_meta(f, "positive_prompt"), golden_meta(f, "negative_prompt")};
    const kiln_conditioning *want_cond[2] = {&pos, &neg};
    for (int i = 0; i < 2; i++) {
        kiln_conditioning c;
        assert_kiln_ok(kiln_encode_prompt(model, tokenizer, texts[i], clip_skip, &c));
        assert_int_equal(c.tokens, want_cond[i]->tokens);
        assert_rel_l2_le(c.data, want_cond[i]->data, (size_t)c.tokens * c.dim, PARITY_LATENT_TOL);
        kiln_conditioning_free(&c);
    }

    float *latent = NULL, *decoded = NULL;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, PARITY_LATENT_TOL);

    assert_kiln_ok(kiln_vae_decode_latent(model, latent, job.batch, job.latent_h, job.latent_w, &decoded));
    int H = (int)pixels.shape[1], W = (int)pixels.shape[2];
    kiln_image *images = calloc((size_t)job.batch, sizeof *images);
    for (int b = 0; b < job.batch; b++)
        assert_kiln_ok(kiln_image_from_decoded(decoded + (size_t)b * 3 * H * W, H, W, &images[b]));
    int worst = golden_pixels_worst(images, job.batch, &pixels);
    for (int b = 0; b < job.batch; b++) kiln_image_free(&images[b]);
    free(images);
    /* the README's bound: uint8 images within 1 level */
    if (worst > 1) fail_msg("%s: pixels differ by %d levels", file, worst);
    free(latent);
    free(decoded);
    golden_free(&noise);
    golden_free(&want);
    golden_free(&pixels);
    golden_free(&init);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_st_close(f);
}

/* ---- PixArt ---- */

void parity_check_t5_ids(const kiln_model *m, kiln_st_file *f, const char *ids_name, const char *out_name,
                         double tol)
{
    golden ids = golden_read(f, ids_name), want = golden_read(f, out_name);
    int32_t *id = malloc(ids.count * sizeof *id);
    float *got = malloc(want.count * sizeof *got);
    for (size_t i = 0; i < ids.count; i++) id[i] = (int32_t)ids.data[i];
    assert_kiln_ok(kiln_t5_encode_ids(m, id, (int)ids.count, got));
    assert_rel_l2_le(got, want.data, want.count, tol);
    free(id);
    free(got);
    golden_free(&ids);
    golden_free(&want);
}

static void check_t5(kiln_model *m, kiln_st_file *f, double tol)
{
    for (int row = 0; row < 3; row++) {
        char ids[32], out[32];
        snprintf(ids, sizeof ids, "t5.ids.%d", row);
        snprintf(out, sizeof out, "t5.out.%d", row);
        parity_check_t5_ids(m, f, ids, out, tol);
    }
}

static void check_dit(kiln_model *m, kiln_st_file *f, double tol)
{
    golden sample = golden_read(f, "dit.sample"), t = golden_read(f, "dit.timestep");
    golden c0 = golden_read(f, "dit.context.0"), c1 = golden_read(f, "dit.context.1");
    golden res = golden_read(f, "dit.resolution"), want = golden_read(f, "dit.out");
    const float *captions[2] = {c0.data, c1.data};
    const int tokens[2] = {(int)c0.shape[1], (int)c1.shape[1]};
    pixart_input in = {.rows = 2, .h = (int)sample.shape[2], .w = (int)sample.shape[3], .latent = sample.data,
                       .timesteps = t.data, .captions = captions, .caption_tokens = tokens, .sizes = res.data};
    float *got = malloc(want.count * sizeof *got);
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &g));
    assert_kiln_ok(kiln_pixart_forward(g, &m->pixart, &in, got));
    assert_rel_l2_le(got, want.data, want.count, tol);
    in.h--; /* not whole patches */
    assert_int_equal(kiln_pixart_forward(g, &m->pixart, &in, got), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "latent is not whole 2x2 patches"));
    kiln_graph_free(g);
    free(got);
    golden_free(&sample);
    golden_free(&t);
    golden_free(&c0);
    golden_free(&c1);
    golden_free(&res);
    golden_free(&want);
}

void parity_check_pixart(const parity_fixture *fx, const char *golden_path)
{
    kiln_backend *be;
    kiln_model *m = load(fx, &be);
    kiln_st_file *f = golden_open(golden_path);
    check_t5(m, f, fx->tol);
    check_dit(m, f, fx->tol);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- Flux ---- */

flux_input parity_flux_read_inputs(kiln_st_file *f, parity_flux_inputs *c)
{
    c->packed = golden_read(f, "packed");
    c->context = golden_read(f, "context");
    c->pooled = golden_read(f, "pooled");
    c->timestep = golden_read(f, "timestep");
    c->guidance = golden_read(f, "guidance");
    return (flux_input){.rows = 2, .h = 4, .w = 3, .tokens = c->packed.data, .context = c->context.data,
                        .context_tokens = (int)c->context.shape[1], .pooled = c->pooled.data,
                        .timesteps = c->timestep.data, .guidance = c->guidance.data};
}

void parity_flux_free_inputs(parity_flux_inputs *c)
{
    golden_free(&c->packed);
    golden_free(&c->context);
    golden_free(&c->pooled);
    golden_free(&c->timestep);
    golden_free(&c->guidance);
}

const char *parity_flux_controlnet_golden(const char *kind)
{
    return strcmp(kind, "alimama") == 0 ? FLUX_ALIMAMA_GOLDEN : FLUX_CONTROLNET_GOLDEN;
}

float *parity_flux_controlnet_hint(kiln_st_file *f, const char *kind)
{
    char name[64];
    snprintf(name, sizeof name, "%s.hint", kind);
    golden g = golden_read(f, name);
    float *hint = malloc(g.count * sizeof *hint);
    assert_non_null(hint);
    if (strcmp(kind, "xlabs") != 0) /* packed latents: the picture's 16 channels (and a mask's) in 2x2 patches */
        kiln_unpatchify(g.data, 2, (int)g.shape[2] / 4, 8, 6, 2, false, hint);
    else
        for (size_t i = 0; i < g.count; i++) hint[i] = g.data[i] * 2.0f - 1.0f;
    golden_free(&g);
    return hint;
}

/* The transformer on `in` against the golden `name` of f. */
static void check_flux_forward(kiln_backend *be, const kiln_flux *flux, const flux_input *in, kiln_st_file *f,
                               const char *name, double tol)
{
    golden want = golden_read(f, name);
    float *got = malloc(want.count * sizeof *got);
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_flux_forward(g, flux, in, got));
    assert_rel_l2_le(got, want.data, want.count, tol);
    kiln_graph_free(g);
    free(got);
    golden_free(&want);
}

void parity_check_flux_controlnet(const parity_fixture *fx, const char *kind)
{
    const bool instantx = strcmp(kind, "instantx") == 0, xlabs = strcmp(kind, "xlabs") == 0;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", fx->f16_compute ? &opt : NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/controlnet"), NULL, 0, &m));
    char path[64];
    snprintf(path, sizeof path, xlabs ? "flux/controlnet/xlabs.safetensors" : "flux/controlnet/%s", kind);
    assert_kiln_ok(kiln_controlnet_load(m, kiln_test_data(path), &cn));
    kiln_st_file *f = golden_open(FLUX_CONTROLNET_GOLDEN), *k = golden_open(parity_flux_controlnet_golden(kind));
    parity_flux_inputs c;
    flux_input in = parity_flux_read_inputs(f, &c);
    float *hint = parity_flux_controlnet_hint(k, kind);
    const flux_control control = {cn->flux, hint, xlabs ? 0.6f : 0.7f, instantx ? 2 : -1};
    in.controls = &control;
    in.ncontrols = 1;
    char name[64];
    snprintf(name, sizeof name, "%s.out", kind);
    check_flux_forward(be, &m->flux, &in, k, name, fx->tol);
    free(hint);
    parity_flux_free_inputs(&c);
    kiln_st_close(k);
    kiln_st_close(f);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_check_flux_ip_adapter(const parity_fixture *fx)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_ip_adapter *a;
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/controlnet"), NULL, 0, &m));
    assert_kiln_ok(kiln_ip_adapter_load(m, kiln_test_data("flux/controlnet/ip_adapter.safetensors"), &a));
    kiln_st_file *f = golden_open(FLUX_IP_ADAPTER_GOLDEN);
    golden embeds = golden_read(f, "embeds"), want = golden_read(f, "tokens");
    float *tokens = malloc(want.count * sizeof *tokens);
    assert_kiln_ok(kiln_ip_adapter_tokens(a, embeds.data, 2, 1, tokens));
    assert_rel_l2_le(tokens, want.data, want.count, fx->tol);
    golden_free(&want);
    kiln_st_file *inputs = golden_open(FLUX_CONTROLNET_GOLDEN);
    parity_flux_inputs c;
    flux_input in = parity_flux_read_inputs(inputs, &c);
    const flux_image_prompt image = {a->k_w, a->k_b, a->v_w, a->v_b, tokens, a->tokens, 0.7f};
    in.images = &image;
    in.nimages = 1;
    check_flux_forward(be, &m->flux, &in, f, "out", fx->tol);
    free(tokens);
    golden_free(&embeds);
    parity_flux_free_inputs(&c);
    kiln_st_close(inputs);
    kiln_st_close(f);
    kiln_ip_adapter_free(a);
    kiln_model_free(m);
    kiln_backend_free(be);
}

kiln_status parity_flux_run(kiln_backend *be, const kiln_flux *flux, const char *golden_path, bool guidance,
                            float *out)
{
    kiln_st_file *f = golden_open(golden_path);
    parity_flux_inputs c;
    flux_input in = parity_flux_read_inputs(f, &c);
    if (!guidance) in.guidance = NULL;
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    kiln_status st = kiln_flux_forward(g, flux, &in, out);
    kiln_graph_free(g);
    parity_flux_free_inputs(&c);
    kiln_st_close(f);
    return st;
}

void parity_check_flux_out(const kiln_model *m, const char *inputs_path, kiln_st_file *f, const char *want_name,
                           double tol)
{
    golden want = golden_read(f, want_name);
    float *got = malloc(want.count * sizeof *got);
    assert_kiln_ok(parity_flux_run(kiln_weights_backend(m->weights), &m->flux, inputs_path, true, got));
    assert_rel_l2_le(got, want.data, want.count, tol);
    free(got);
    golden_free(&want);
}

void parity_gguf_flux_parts(char paths[4][4096], kiln_model_parts *parts)
{
    snprintf(paths[0], 4096, "%s", kiln_test_data("tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"));
    snprintf(paths[1], 4096, "%s", kiln_test_data("gguf/t5-tiny-Q8_0.gguf"));
    snprintf(paths[2], 4096, "%s", kiln_test_data("flux/tiny/vae/diffusion_pytorch_model.safetensors"));
    snprintf(paths[3], 4096, "%s", kiln_test_data("flux/tiny"));
    *parts = (kiln_model_parts){.vae = paths[2], .text_encoders = {paths[0], paths[1]}, .config = paths[3]};
}

/* A tiny Flux transformer file (test data path) with parity_gguf_flux_parts
 * beside it, on fx's backend: its linear weights held in `dtype` (its
 * file's, or weight_dtype's), llama.cpp's T5 as stored; the transformer
 * against the golden `golden_name` of tests/data/gguf/golden.safetensors. */
static void check_flux_file(const parity_fixture *fx, const char *path, const char *weight_dtype, kiln_dtype dtype,
                            const char *golden_name, kiln_st_file **goldens, kiln_model **model, kiln_backend **backend)
{
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_model *m;
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", fx->f16_compute ? &opt : NULL, &be));
    char paths[4][4096];
    kiln_model_parts parts;
    parity_gguf_flux_parts(paths, &parts);
    parts.weight_dtype = weight_dtype;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(path), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    assert_int_equal(m->flux.dbl[0].img_mod_w->dtype, dtype);
    assert_int_equal(m->flux.sgl[0].mlp_w->dtype, dtype);
    assert_int_equal(m->t5.layer[0].q_w->dtype, KILN_Q4_0); /* llama.cpp's T5 as stored */
    kiln_st_file *f = golden_open("gguf/golden.safetensors");
    parity_check_flux_out(m, "flux/golden.safetensors", f, golden_name, fx->tol);
    *goldens = f;
    *model = m;
    *backend = be;
}

void parity_check_flux_weight_dtype(const parity_fixture *fx, const char *weight_dtype, kiln_dtype dtype,
                                    const char *golden_name)
{
    kiln_st_file *f;
    kiln_model *m;
    kiln_backend *be;
    check_flux_file(fx, "flux/single/flux1-tiny.safetensors", weight_dtype, dtype, golden_name, &f, &m, &be);
    assert_int_equal(m->flux.img_in_w->dtype, dtype);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_check_gguf_flux(const parity_fixture *fx)
{
    kiln_st_file *f;
    kiln_model *m;
    kiln_backend *be;
    check_flux_file(fx, "gguf/flux1-tiny-Q8_0.gguf", NULL, KILN_Q8_0, "flux.out", &f, &m, &be);
    parity_check_t5_ids(m, f, "t5.ids", "t5.out", fx->tol);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* A tiny Flux-kind transformer (rotary axes 4, 6, 6) of the test data's
 * `path`, bound under `root` on fx's backend; bound_free releases it. */
typedef struct bound_transformer {
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_weights *w;
} bound_transformer;

static void bind_tiny_flux(const parity_fixture *fx, const char *path, const char *root, kiln_flux *flux,
                           bound_transformer *b)
{
    kiln_backend_options opt = {.device = -1, .compute = KILN_F16};
    assert_kiln_ok(kiln_backend_create(fx->backend ? fx->backend : "cpu", fx->f16_compute ? &opt : NULL, &b->be));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(path), &b->ck));
    assert_kiln_ok(kiln_weights_create(b->be, b->ck, &b->w));
    assert_true(kiln_flux_present(b->ck, root));
    assert_kiln_ok(kiln_flux_bind(b->w, root, (const int[]){4, 6, 6}, flux));
}

static void bound_free(bound_transformer *b)
{
    kiln_weights_free(b->w);
    kiln_checkpoint_close(b->ck);
    kiln_backend_free(b->be);
}

void parity_check_flux(const parity_fixture *fx, const char *golden_path)
{
    bound_transformer b;
    kiln_flux flux;
    bind_tiny_flux(fx, "flux/transformer/diffusion_pytorch_model.safetensors", "", &flux, &b);
    kiln_backend *be = b.be;
    assert_int_equal(flux.heads, 2);
    assert_int_equal(flux.head_dim, 16);
    assert_int_equal(flux.ndouble, 1);
    assert_int_equal(flux.nsingle, 2);
    assert_true(flux.guidance);

    kiln_st_file *f = golden_open(golden_path);
    golden want = golden_read(f, "out");
    float *got = malloc(want.count * sizeof *got);
    assert_kiln_ok(parity_flux_run(be, &flux, golden_path, true, got));
    assert_rel_l2_le(got, want.data, want.count, fx->tol);
    /* no guidance (FluxDisableGuidance): the embedding left out, as ComfyUI's Flux makes its vector */
    kiln_st_file *k = golden_open("flux/no_guidance.safetensors");
    golden unguided = golden_read(k, "no_guidance.out");
    assert_kiln_ok(parity_flux_run(be, &flux, golden_path, false, got));
    assert_rel_l2_le(got, unguided.data, unguided.count, fx->tol);
    golden_free(&unguided);
    kiln_st_close(k);
    free(got);
    golden_free(&want);
    kiln_st_close(f);
    bound_free(&b);
}

/* chroma/golden's two rows as a call, their goldens (packed, context,
 * timestep, guidance, out) read into g. */
static flux_input chroma_inputs(golden g[5])
{
    kiln_st_file *f = golden_open("chroma/golden.safetensors");
    static const char *const fields[] = {"packed", "context", "timestep", "guidance", "out"};
    for (int i = 0; i < 5; i++) g[i] = golden_read(f, fields[i]);
    kiln_st_close(f);
    return (flux_input){.rows = 2, .h = 4, .w = 3, .tokens = g[0].data, .context = g[1].data,
                        .context_tokens = (int)g[1].shape[1], .timesteps = g[2].data, .guidance = g[3].data};
}

void parity_check_chroma(const parity_fixture *fx, const char *path)
{
    bound_transformer b;
    kiln_flux flux;
    bind_tiny_flux(fx, path, strstr(path, "single/") ? KILN_FLUX_ROOT : "", &flux, &b);
    assert_true(flux.chroma);
    assert_false(flux.guidance);
    assert_int_equal(flux.ndouble, 1);
    assert_int_equal(flux.nsingle, 2);
    assert_int_equal(flux.approx.nlayers, 2);
    assert_int_equal(flux.approx.width, 48);
    assert_float_equal(kiln_flux_default_shift(&flux), 1.15, 0.0);

    golden g[5];
    flux_input in = chroma_inputs(g);
    const golden want = g[4];
    float *got = malloc(want.count * sizeof *got);
    kiln_graph *graph;
    assert_kiln_ok(kiln_graph_create(b.be, &graph));
    assert_kiln_ok(kiln_flux_forward(graph, &flux, &in, got));
    assert_rel_l2_le(got, want.data, want.count, fx->tol);
    /* the guidance row counts: the first row's guidance is 0, the second's 3.5 */
    in.guidance = NULL;
    assert_kiln_ok(kiln_flux_forward(graph, &flux, &in, got));
    const size_t half = want.count / 2;
    assert_rel_l2_le(got, want.data, half, fx->tol);
    assert_true(kiln_rel_l2(got + half, want.data + half, half) > 0.5);
    /* what ComfyUI's Chroma does not take */
    in.nrefs = 1;
    in.refs = &(flux_reference){4, 3, 1, 0, 0};
    assert_int_equal(kiln_flux_forward(graph, &flux, &in, got), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "chroma"));
    kiln_graph_free(graph);
    free(got);
    for (size_t i = 0; i < 5; i++) golden_free(&g[i]);
    bound_free(&b);
}

void parity_check_chroma_out(const kiln_model *m, const char *want_path, const char *want_name, double tol)
{
    golden g[5];
    const flux_input in = chroma_inputs(g);
    kiln_st_file *f = golden_open(want_path);
    golden want = golden_read(f, want_name);
    float *got = malloc(want.count * sizeof *got);
    kiln_graph *graph;
    assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &graph));
    assert_kiln_ok(kiln_flux_forward(graph, &m->flux, &in, got));
    kiln_graph_free(graph);
    assert_rel_l2_le(got, want.data, want.count, tol);
    free(got);
    golden_free(&want);
    kiln_st_close(f);
    for (size_t i = 0; i < 5; i++) golden_free(&g[i]);
}

/* A tiny SD3 transformer's inputs (sd3/golden's `<key>.*`) as a call: the
 * patched latent in *tokens (malloc'd), the caption, pooled output and
 * timesteps read into g. */
static flux_input sd3_inputs(const char *key, golden g[4], float **tokens)
{
    kiln_st_file *f = golden_open("sd3/golden.safetensors");
    static const char *const fields[] = {"sample", "context", "pooled", "timestep"};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", key, fields[i]);
        g[i] = golden_read(f, name);
    }
    kiln_st_close(f);
    const int B = (int)g[0].shape[0], C = (int)g[0].shape[1], H = (int)g[0].shape[2], W = (int)g[0].shape[3];
    *tokens = malloc(g[0].count * sizeof **tokens);
    kiln_patchify(g[0].data, B, C, H, W, 2, *tokens);
    return (flux_input){.rows = B, .h = H / 2, .w = W / 2, .tokens = *tokens, .context = g[1].data,
                        .context_tokens = (int)g[1].shape[1], .pooled = g[2].data, .timesteps = g[3].data};
}

/* m's transformer on the call in, its output put back channels last,
 * against want. */
static void check_sd3_call(const kiln_model *m, const flux_input *in, const golden *want, double tol)
{
    float *packed = malloc(want->count * sizeof *packed), *got = malloc(want->count * sizeof *got);
    kiln_graph *graph;
    assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &graph));
    assert_kiln_ok(kiln_flux_forward(graph, &m->flux, in, packed));
    kiln_graph_free(graph);
    kiln_unpatchify(packed, in->rows, m->flux.in_channels / 4, 2 * in->h, 2 * in->w, 2, true, got);
    assert_rel_l2_le(got, want->data, want->count, tol);
    free(packed);
    free(got);
}

void parity_check_sd3_against(const parity_fixture *fx, const char *key, const char *want_path, const char *want_name)
{
    kiln_backend *be;
    parity_fixture at = *fx;
    char path[4096];
    snprintf(path, sizeof path, "%s", kiln_test_data(fx->path));
    at.path = path;
    kiln_model *m = load(&at, &be);
    assert_true(m->flux.sd3);
    golden g[4];
    float *tokens;
    const flux_input in = sd3_inputs(key, g, &tokens);
    kiln_st_file *f = golden_open(want_path);
    golden want = golden_read(f, want_name);
    kiln_st_close(f);
    check_sd3_call(m, &in, &want, fx->tol);
    free(tokens);
    for (int i = 0; i < 4; i++) golden_free(&g[i]);
    golden_free(&want);
    kiln_model_free(m);
    kiln_backend_free(be);
}

void parity_check_sd3_controlnet(const parity_fixture *fx, const kiln_model *m, const kiln_controlnet *cn,
                                 const char *golden_path)
{
    golden g[4];
    float *tokens;
    flux_input in = sd3_inputs("sd35", g, &tokens);
    kiln_st_file *c = golden_open(golden_path);
    golden hint = golden_read(c, "hint"), want = golden_read(c, "out");
    kiln_st_close(c);
    const flux_control control = {cn->flux, hint.data, 0.7f, -1};
    in.controls = &control;
    in.ncontrols = 1;
    in.latent_tokens = tokens;
    check_sd3_call(m, &in, &want, fx->tol);
    free(tokens);
    for (int i = 0; i < 4; i++) golden_free(&g[i]);
    golden_free(&hint);
    golden_free(&want);
}

void parity_check_sd3(const parity_fixture *fx, const char *key)
{
    char name[64];
    snprintf(name, sizeof name, "%s.out", key);
    parity_check_sd3_against(fx, key, "sd3/golden.safetensors", name);
}
