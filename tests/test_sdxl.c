/* SDXL and its refiner on tiny random models against tests/data/sdxl and
 * tests/data/sdxl_refiner (make_sdxl_data.py, make_refiner_data.py:
 * diffusers' and transformers' models, ComfyUI's KSampler steps around
 * them), each in the single-file and diffusers layouts: detection, the text
 * towers at their penultimate layer without the final norm and bigG's
 * pooled, projected output, the UNet (transformers two blocks deep, the
 * vector y through label_emb) with every block, y itself, CLIPTextEncode's
 * conditioning and pooled output from the prompts, and a whole KSampler run
 * with the size (and the refiner's aesthetic-score) embeddings and SDXL's
 * latent scale; CLIPTextEncodeSDXL's text_g and text_l apart; SDXL LoRAs and
 * ControlNets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "golden.h"
#include "model.h"
#include "parity.h"
#include "parts.h"
#include "pipeline.h"
#include "sampler.h"
#include "status.h"
#include "tiny_variants.h"
#include "tokenizer.h"

#define TOL 1e-4 /* as test_parity_tiny: the same math in f32 */
#define GOLDEN "sdxl/golden.safetensors"
/* with a LoRA merged: the merged weights are rounded to the model's f16
 * (diffusers fused them in f32), about 2^-11 of each weight */
#define TOL_MERGED 2e-3

/* One tiny model under test: SDXL (CLIP-L, then bigG) or its refiner (bigG alone). */
typedef struct xl_model {
    const char *files[2]; /* single file, diffusers folder (under tests/data) */
    const char *golden, *family, *unet;
    int g;                /* bigG's index among the model's towers; CLIP-L, where there is one, is 0 */
} xl_model;

static const xl_model sdxl = {{"sdxl/tiny_sdxl.safetensors", "sdxl/tiny_sdxl_diffusers"}, GOLDEN, "sdxl",
                              "sdxl-tiny-test", 1};
static const xl_model refiner = {{"sdxl_refiner/tiny_refiner.safetensors", "sdxl_refiner/tiny_refiner_diffusers"},
                                 "sdxl_refiner/golden.safetensors", "sdxl-refiner", "sdxl-refiner-tiny-test", 0};

static char path_buf[2][1024];
static const char *path_of(const xl_model *x, int layout)
{
    snprintf(path_buf[layout], sizeof path_buf[layout], "%s", kiln_test_data(x->files[layout]));
    return path_buf[layout];
}
static const char *model_path(int layout) { return path_of(&sdxl, layout); }

static void detect(void **state)
{
    const xl_model *x = *state;
    for (int layout = 0; layout < 2; layout++) {
        kiln_checkpoint *ck;
        kiln_model_info info;
        assert_kiln_ok(kiln_checkpoint_open(path_of(x, layout), &ck));
        assert_kiln_ok(kiln_model_inspect(ck, &info));
        assert_string_equal(info.family, x->family);
        assert_string_equal(info.unet_name, x->unet);
        assert_int_equal(info.nclips, x->g + 1);
        if (x->g) assert_string_equal(info.clip_names[0], "clip-tiny-test");
        assert_string_equal(info.clip_names[x->g], "openclip-tiny-test");
        assert_int_equal(info.prediction, KILN_PREDICTION_EPS);
        kiln_checkpoint_close(ck);
    }
}

static int32_t *read_ids(kiln_st_file *f, const char *name)
{
    golden g = golden_read(f, name);
    int32_t *ids = malloc(g.count * sizeof *ids);
    for (size_t i = 0; i < g.count; i++) ids[i] = (int32_t)g.data[i];
    golden_free(&g);
    return ids;
}

/* The towers of the model at `path` (LoRAs merged) against a golden's
 * g.hidden and g.pooled, and l.hidden where the model has CLIP-L. */
static void check_towers(const xl_model *x, const char *path, const kiln_lora *loras, int nloras,
                         const char *golden_path, double tol)
{
    kiln_st_file *f = golden_open(golden_path);
    golden g = golden_read(f, "g.hidden"), pooled = golden_read(f, "g.pooled");
    int32_t *g_ids = read_ids(f, "g.input_ids");
    kiln_backend *be;
    kiln_model *m;
    kiln_checkpoint *ck;
    kiln_lora_stats stats[2];
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_model_load_with_loras(ck, loras, nloras, stats, be, &m));
    assert_int_equal(m->clips[x->g].pooled_dim, 32);
    float *out = malloc(g.count * sizeof *out), *p = malloc(pooled.count * sizeof *p);
    assert_kiln_ok(kiln_clip_encode_ids(m, x->g, g_ids, 2, 0, out, p));
    assert_rel_l2_le(out, g.data, g.count, tol);
    assert_rel_l2_le(p, pooled.data, pooled.count, tol);
    if (x->g) {
        golden l = golden_read(f, "l.hidden");
        int32_t *l_ids = read_ids(f, "l.input_ids");
        assert_kiln_ok(kiln_clip_encode_ids(m, 0, l_ids, 2, 0, out, NULL));
        assert_rel_l2_le(out, l.data, l.count, tol);
        /* CLIP-L has no projection to pool with */
        assert_int_equal(kiln_clip_encode_ids(m, 0, l_ids, 2, 0, out, p), KILN_ERR_INVALID_ARG);
        free(l_ids);
        golden_free(&l);
    }
    free(out);
    free(p);
    kiln_model_free(m);
    kiln_backend_free(be);
    free(g_ids);
    golden_free(&g);
    golden_free(&pooled);
    kiln_st_close(f);
}

/* CLIP-L and OpenCLIP bigG's small twins: layer -2 as it is; bigG's pooled
 * output (the last layer, normed, at EOS, projected). */
static void text_towers(void **state)
{
    const xl_model *x = *state;
    for (int layout = 0; layout < 2; layout++) check_towers(x, path_of(x, layout), NULL, 0, x->golden, TOL);
}

/* A kohya SDXL LoRA (original block names, lora_te1_ and lora_te2_) merged
 * at 0.75, against diffusers' load_lora_weights + fuse_lora: both towers,
 * the pooled output, the UNet and every block; in both layouts. */
static void kohya_lora(void **state)
{
    (void)state;
    char lora_path[1024];
    snprintf(lora_path, sizeof lora_path, "%s", kiln_test_data("sdxl/lora_kohya.safetensors"));
    const kiln_lora lora = {lora_path, 0.75, 0.75};
    kiln_lora_stats stats;
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(model_path(0), &ck));
    assert_kiln_ok(kiln_lora_merge(ck, lora_towers_of(ck), &lora, &stats));
    assert_int_equal(stats.unet_modules, 132);
    assert_int_equal(stats.clip_modules, 30); /* 12 in CLIP-L, 18 in bigG */
    kiln_checkpoint_close(ck);
    for (int layout = 0; layout < 2; layout++) {
        check_towers(&sdxl, model_path(layout), &lora, 1, "sdxl/lora_kohya.golden.safetensors", TOL_MERGED);
        parity_check_unet(&(parity_fixture){.path = model_path(layout), .tol = TOL_MERGED, .loras = &lora, .nloras = 1},
                          "sdxl/lora_kohya.golden.safetensors");
    }
}

/* A LoRA for the refiner's text tower: kohya names it as SDXL's second
 * (lora_te2_), which here is bigG under conditioner.embedders.0; the update
 * lands there (up @ down times alpha/rank, checked in double), and a
 * module for a CLIP-L the refiner lacks (lora_te1_) is refused by name. */
static void refiner_lora(void **state)
{
    (void)state;
    enum { D = 32, R = 2 };
    static float down[R * D], up[D * R];
    for (int i = 0; i < R * D; i++) down[i] = 0.1f * (float)((i * 7) % 13 - 6), up[i] = 0.2f * (float)((i * 5) % 11 - 5);
    const float alpha = 1.0f;
    const char *target = "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight";
    char dir[] = "/tmp/kiln_refiner_lora_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/lora.safetensors", dir);
    for (int tower = 2; tower >= 1; tower--) {
        char names[3][96];
        snprintf(names[0], sizeof names[0], "lora_te%d_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", tower);
        snprintf(names[1], sizeof names[1], "lora_te%d_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", tower);
        snprintf(names[2], sizeof names[2], "lora_te%d_text_model_encoder_layers_0_self_attn_q_proj.alpha", tower);
        const kiln_st_entry e[3] = {{names[0], KILN_F32, 2, {R, D}, down},
                                    {names[1], KILN_F32, 2, {D, R}, up},
                                    {names[2], KILN_F32, 0, {0}, &alpha}};
        assert_kiln_ok(kiln_st_write(path, e, 3, NULL, 0));
        kiln_checkpoint *ck, *plain;
        assert_kiln_ok(kiln_checkpoint_open(path_of(&refiner, 0), &ck));
        const kiln_lora lora = {path, 1.0, 0.8};
        kiln_lora_stats stats;
        kiln_status st = kiln_lora_merge(ck, lora_towers_of(ck), &lora, &stats);
        if (tower == 1) {
            assert_int_equal(st, KILN_ERR_MODEL);
            assert_non_null(strstr(kiln_last_error(), "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"));
        } else {
            assert_kiln_ok(st);
            assert_int_equal(stats.clip_modules, 1);
            assert_kiln_ok(kiln_checkpoint_open(path_of(&refiner, 0), &plain));
            const kiln_st_tensor *w0 = kiln_checkpoint_find(plain, target), *w1 = kiln_checkpoint_find(ck, target);
            assert_non_null(w0);
            assert_non_null(w1);
            /* element (3, 5): strength 0.8 x alpha/rank 0.5 x (up @ down) */
            double update = 0;
            for (int r = 0; r < R; r++) update += (double)up[3 * R + r] * down[r * D + 5];
            double before = kiln_load_f32(w0->data, w0->dtype, 3 * D + 5);
            assert_true(fabs(0.8 * 0.5 * update) > 0.05); /* well above the f16 rounding the bound allows */
            assert_float_equal(kiln_load_f32(w1->data, w1->dtype, 3 * D + 5), before + 0.8 * 0.5 * update, 2e-3);
            kiln_checkpoint_close(plain);
        }
        kiln_checkpoint_close(ck);
    }
    unlink(path);
    rmdir(dir);
}

static void unet_layouts(void **state)
{
    const xl_model *x = *state;
    for (int layout = 0; layout < 2; layout++)
        parity_check_unet(&(parity_fixture){.path = path_of(x, layout), .tol = TOL}, x->golden);
}

/* y for the golden's second row: its pooled output and the numbers of its
 * time_ids (SDXL: size 40x56, crop (3, 5), target 48x72; the refiner: the
 * same size and crop, aesthetic score 2.5), as diffusers' add_embedding
 * receives it; from the numbers, and from a job's CLIPTextEncodeSDXL
 * inputs (kiln_adm_rows), also with the negative prompt's own numbers (row 0's). */
static void adm_vector(void **state)
{
    const xl_model *x = *state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(path_of(x, 0), be, &m));
    kiln_st_file *f = golden_open(x->golden);
    golden y = golden_read(f, "y"), pooled = golden_read(f, "g.pooled"), ids = golden_read(f, "time_ids");
    const int adm = m->unet.config->adm_channels, n = (int)ids.shape[1];
    assert_int_equal(y.count, 2 * (size_t)adm);
    assert_int_equal(n, m->family->adm_numbers);
    kiln_conditioning c = {.pooled = pooled.data + 32, .pooled_dim = 32};
    float *have = malloc((size_t)adm * sizeof *have);
    assert_kiln_ok(kiln_adm_vector(m, &c, ids.data + n, have));
    assert_rel_l2_le(have, y.data + adm, (size_t)adm, 1e-6);
    free(have);
    /* the same numbers as a job's CLIPTextEncodeSDXL (and CLIPTextEncodeSDXLRefiner) inputs, the refiner's
     * score on its negative rows */
    const kiln_sdxl_cond numbers = {.height = (int)ids.data[n], .width = (int)ids.data[n + 1],
                                    .crop_h = (int)ids.data[n + 2], .crop_w = (int)ids.data[n + 3],
                                    .target_height = n == 6 ? (int)ids.data[n + 4] : 1024,
                                    .target_width = n == 6 ? (int)ids.data[n + 5] : 1024,
                                    .aesthetic = 6.0, .negative_aesthetic = n == 5 ? ids.data[n + 4] : 0.0};
    const kiln_sampling_job job = {.batch = 1, .latent_h = 8, .latent_w = 8, .sdxl = &numbers};
    float *rows;
    assert_kiln_ok(kiln_adm_rows(m, &job, &c, &c, &rows));
    assert_rel_l2_le(rows + (n == 5 ? 0 : adm), y.data + adm, (size_t)adm, 1e-6);
    free(rows);
    /* the negative prompt with its own numbers (CLIPTextEncodeSDXL on each prompt): upstream's row 0, the
     * positive its row 1 */
    const kiln_sdxl_cond own = {.height = (int)ids.data[0], .width = (int)ids.data[1], .crop_h = (int)ids.data[2],
                                .crop_w = (int)ids.data[3], .target_height = n == 6 ? (int)ids.data[4] : 1024,
                                .target_width = n == 6 ? (int)ids.data[5] : 1024};
    kiln_sdxl_cond positive = numbers;
    if (n == 5) positive.aesthetic = ids.data[n + 4], positive.negative_aesthetic = ids.data[4];
    const kiln_sampling_job apart = {.batch = 1, .latent_h = 8, .latent_w = 8, .sdxl = &positive,
                                     .negative_sdxl = &own};
    kiln_conditioning c0 = {.pooled = pooled.data, .pooled_dim = 32};
    assert_kiln_ok(kiln_adm_rows(m, &apart, &c, &c0, &rows));
    assert_rel_l2_le(rows, y.data, 2 * (size_t)adm, 1e-6);
    free(rows);
    golden_free(&y);
    golden_free(&pooled);
    golden_free(&ids);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* CLIPTextEncode from the text, then KSampler (euler, normal, 4 steps, cfg
 * 5, seed 42; y from the pooled outputs and the 64x64 size, the refiner's
 * aesthetic score 6 and 2.5) and VAEDecode with SDXL's latent scale. */
static void ksampler_run(void **state)
{
    const xl_model *x = *state;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(path_of(x, 0), be, &m));
    assert_true(fabsf(m->vae.latents.scale - 0.13025f) < 1e-7f);
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(x->golden);
    const char *prompts[2] = {"a photograph of an astronaut riding a horse", ""};
    const char *names[2][2] = {{"run.positive", "run.positive_pooled"}, {"run.negative", "run.negative_pooled"}};
    kiln_conditioning c[2];
    for (int i = 0; i < 2; i++) {
        assert_kiln_ok(kiln_encode_prompt(m, tok, prompts[i], 0, &c[i]));
        golden z = golden_read(f, names[i][0]), p = golden_read(f, names[i][1]);
        assert_int_equal((size_t)c[i].tokens * c[i].dim, z.count);
        assert_int_equal(c[i].pooled_dim, (int)p.count);
        assert_rel_l2_le(c[i].data, z.data, z.count, TOL);
        assert_rel_l2_le(c[i].pooled, p.data, p.count, TOL);
        golden_free(&z);
        golden_free(&p);
    }
    kiln_sampling_job job = kiln_test_job("euler", "normal", 4, 5.0f, 42, 8, 8);
    parity_check_run(m, &job, &c[0], &c[1], x->golden, TOL);

    /* without the pooled output the UNet's y cannot be made */
    free(c[1].pooled);
    c[1].pooled = NULL;
    float *latent = NULL;
    assert_int_equal(kiln_ksample(m, &job, &c[0], &c[1], &latent), KILN_ERR_INVALID_ARG);
    free(latent);
    for (int i = 0; i < 2; i++) kiln_conditioning_free(&c[i]);
    kiln_st_close(f);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The conditionings of the prompts of a run golden, from the model's towers. */
static void encode_run_prompts(const kiln_model *m, const kiln_tokenizer *tok, kiln_conditioning c[2])
{
    assert_kiln_ok(kiln_encode_prompt(m, tok, "a photograph of an astronaut riding a horse", 0, &c[0]));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &c[1]));
}

/* Rows [have_first, +n) of have, channels [from, +width), against the same part of want from want_first. */
static void check_part(const kiln_conditioning *have, int have_first, const kiln_conditioning *want, int want_first,
                       int n, int from, int width, double tol)
{
    float *a = malloc((size_t)n * width * sizeof(float)), *b = malloc((size_t)n * width * sizeof(float));
    for (int t = 0; t < n; t++) {
        memcpy(a + (size_t)t * width, have->data + (size_t)(have_first + t) * have->dim + from, width * sizeof(float));
        memcpy(b + (size_t)t * width, want->data + (size_t)(want_first + t) * want->dim + from, width * sizeof(float));
    }
    assert_rel_l2_le(a, b, (size_t)n * width, tol);
    free(a);
    free(b);
}

/* CLIPTextEncodeSDXL with text_g and text_l apart, as ComfyUI makes it:
 * CLIP-L's rows are its rows on text_l, bigG's (and the pooled output) its
 * rows on text_g, the shorter text's tower given a window of the empty
 * prompt for each window it lacks (here text_l is two windows long, text_g
 * one). Checked against each tower on each text alone; the other models
 * refuse two texts. */
static void text_g_and_text_l(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(model_path(0), be, &m));
    const char *text_g = "a red circle on a blue (background:1.2)";
    char text_l[1024] = "";
    for (int i = 0; i < 30; i++) strcat(text_l, "green square, ");
    kiln_conditioning apart, g, l, empty;
    assert_kiln_ok(kiln_text_encode_sdxl(m, text_g, text_l, 0, &apart));
    assert_kiln_ok(kiln_text_encode(m, text_g, 0, &g));
    assert_kiln_ok(kiln_text_encode(m, text_l, 0, &l));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &empty));
    const int T = KILN_CLIP_CONTEXT, dl = m->clips[0].config->hidden, dg = m->clips[1].config->hidden;
    assert_int_equal(g.tokens, T);
    assert_int_equal(l.tokens, 2 * T);
    assert_int_equal(apart.tokens, 2 * T);
    assert_int_equal(apart.dim, dl + dg);
    check_part(&apart, 0, &l, 0, 2 * T, 0, dl, 1e-6);     /* CLIP-L on text_l */
    check_part(&apart, 0, &g, 0, T, dl, dg, 1e-6);        /* bigG on text_g */
    check_part(&apart, T, &empty, 0, T, dl, dg, 1e-6);    /* and on the empty prompt after it */
    assert_int_equal(apart.pooled_dim, g.pooled_dim);
    assert_rel_l2_le(apart.pooled, g.pooled, (size_t)g.pooled_dim, 1e-6);
    assert_true(kiln_rel_l2(apart.data, l.data, (size_t)l.tokens * l.dim) > 0.05); /* neither text's alone */
    kiln_conditioning same;
    assert_kiln_ok(kiln_text_encode_sdxl(m, text_g, text_g, 0, &same));
    assert_int_equal(same.tokens, g.tokens);
    assert_memory_equal(same.data, g.data, (size_t)g.tokens * g.dim * sizeof(float));
    kiln_conditioning *all[] = {&apart, &g, &l, &empty, &same};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) kiln_conditioning_free(all[i]);
    kiln_model_free(m);

    assert_kiln_ok(kiln_model_load(path_of(&refiner, 0), be, &m));
    assert_int_equal(kiln_text_encode_sdxl(m, "a", "b", 0, &same), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "text_g and text_l are for SDXL's two text towers"));
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* An SDXL inpainting UNet (9 input channels, sd_xl_base_1.0_inpainting's
 * kind): the tiny SDXL model with the 9-channel conv_in of
 * tests/data/sdxl/inpaint.golden (make_sdxl_inpaint_data.py) is known as
 * one and matches diffusers' UNet with it, the vector y included. */
static void inpainting_unet(void **state)
{
    (void)state;
    const char *path = tiny_sdxl_inpaint_model();
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(path, be, &m));
    assert_string_equal(m->unet.config->name, "sdxl-tiny-test-inpaint");
    assert_int_equal(m->info.variant, KILN_VARIANT_INPAINT);
    kiln_model_free(m);
    kiln_backend_free(be);
    parity_check_unet_output(&(parity_fixture){.path = path, .tol = TOL}, "sdxl/inpaint.golden.safetensors", "");
}

/* SDXL's base-then-refiner workflow as two KSamplerAdvanced (euler, normal,
 * 6 steps, cfg 5, seed 42, switch at step 4): the base stops at sigma 4 with
 * its noise left in, the refiner takes the LATENT from there without adding
 * noise (tests/data/sdxl_refiner/handoff.golden.safetensors). A pass fully
 * denoised, or noised again, lands 2-3% away. */
static void refiner_handoff(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *base, *ref;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(path_of(&sdxl, 0), be, &base));
    assert_kiln_ok(kiln_model_load(path_of(&refiner, 0), be, &ref));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_conditioning cb[2], cr[2];
    encode_run_prompts(base, tok, cb);
    encode_run_prompts(ref, tok, cr);
    kiln_st_file *f = golden_open("sdxl_refiner/handoff.golden.safetensors");
    golden base_out = golden_read(f, "base.latent_out"), ref_out = golden_read(f, "refiner.latent_out"),
           image = golden_read(f, "image");
    kiln_sampling_job job = kiln_test_job("euler", "normal", 6, 5.0f, 42, 8, 8);
    job.last_step = 4;
    job.leftover_noise = true;
    float *latent, *refined;
    assert_kiln_ok(kiln_ksample(base, &job, &cb[0], &cb[1], &latent));
    assert_rel_l2_le(latent, base_out.data, base_out.count, TOL);
    kiln_sampling_job rj = job;
    rj.start_step = 4, rj.last_step = 0, rj.leftover_noise = false, rj.disable_noise = true, rj.init_latent = latent;
    assert_kiln_ok(kiln_ksample(ref, &rj, &cr[0], &cr[1], &refined));
    assert_rel_l2_le(refined, ref_out.data, ref_out.count, TOL);
    parity_check_picture(ref, refined, 8, 8, &image, TOL);
    /* a start past the schedule's last step leaves the latent as it is */
    free(refined);
    rj.start_step = 6;
    assert_kiln_ok(kiln_ksample(ref, &rj, &cr[0], &cr[1], &refined));
    assert_memory_equal(refined, latent, base_out.count * sizeof(float));
    free(refined), free(latent);
    for (int i = 0; i < 2; i++) kiln_conditioning_free(&cb[i]), kiln_conditioning_free(&cr[i]);
    golden_free(&base_out);
    golden_free(&ref_out);
    golden_free(&image);
    kiln_st_close(f);
    kiln_tokenizer_free(tok);
    kiln_model_free(base);
    kiln_model_free(ref);
    kiln_backend_free(be);
}

/* The UNet alone in the original names without model.diffusion_model. (as
 * ComfyUI's UNETLoader, and ComfyUI-GGUF's, read SDXL; and the folder's in
 * diffusers' names), ComfyUI's CLIP
 * files (transformers' clip_l and clip_g: the folder's text encoders,
 * bigG with its projection) and the VAE alone, each told where it goes
 * by its tensors: the single file, tensor for tensor (but what it keeps in
 * OpenCLIP's names: bigG's projection, transposed, checked through the
 * pooled output, and logit_scale, which kiln does not read), and the same
 * conditioning from the prompts. */
static void separate_files(void **state)
{
    const xl_model *x = *state;
    char dir[] = "/tmp/kiln_sdxl_XXXXXX", unet[64], vae[64], clip_l[1200], clip_g[1200];
    assert_non_null(mkdtemp(dir));
    snprintf(unet, sizeof unet, "%s/unet.safetensors", dir);
    parts_write(path_of(x, 0), "model.diffusion_model.", unet);
    snprintf(clip_l, sizeof clip_l, "%s/text_encoder/model.safetensors", path_of(x, 1));
    snprintf(clip_g, sizeof clip_g, "%s/text_encoder_2/model.safetensors", path_of(x, 1));
    snprintf(vae, sizeof vae, "%s/vae.safetensors", dir);
    parts_write(path_of(x, 0), "first_stage_model.", vae);
    const bool refiner_model = x->g == 0;
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {refiner_model ? clip_g : clip_l,
                                                                  refiner_model ? NULL : clip_g}};
    kiln_checkpoint *want, *ck;
    assert_kiln_ok(kiln_checkpoint_open(path_of(x, 0), &want));
    /* the folder's UNet file alone, in diffusers' names, likewise */
    char diffusers_unet[1200];
    snprintf(diffusers_unet, sizeof diffusers_unet, "%s/unet/diffusion_pytorch_model.safetensors", path_of(x, 1));
    assert_kiln_ok(kiln_checkpoint_open(diffusers_unet, &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    print_message("  %zu tensors as in the single file\n", parts_assert_same_tensors(want, ck, ".model."));
    kiln_checkpoint_close(ck);
    assert_kiln_ok(kiln_checkpoint_open(unet, &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    print_message("  %zu tensors as in the single file\n", parts_assert_same_tensors(want, ck, ".model."));
    kiln_model_info info;
    assert_kiln_ok(kiln_model_inspect(ck, &info));
    assert_string_equal(info.family, x->family);
    /* bigG's projection, transposed in OpenCLIP's names, through the pooled output */
    kiln_backend *be;
    kiln_model *from_parts, *single;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &from_parts));
    assert_kiln_ok(kiln_model_load(path_of(x, 0), be, &single));
    kiln_conditioning a[2], b[2];
    encode_run_prompts(from_parts, tok, a);
    encode_run_prompts(single, tok, b);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a[i].tokens, b[i].tokens);
        assert_memory_equal(a[i].data, b[i].data, (size_t)a[i].tokens * a[i].dim * sizeof(float));
        assert_non_null(a[i].pooled);
        assert_memory_equal(a[i].pooled, b[i].pooled, (size_t)a[i].pooled_dim * sizeof(float));
        kiln_conditioning_free(&a[i]);
        kiln_conditioning_free(&b[i]);
    }
    kiln_model_free(from_parts);
    kiln_model_free(single);
    kiln_tokenizer_free(tok);
    kiln_backend_free(be);
    if (refiner_model) { /* CLIP-L, which the refiner has not, is refused: it has no projection */
        assert_kiln_ok(kiln_checkpoint_open(unet, &ck));
        const kiln_model_parts wrong = {.text_encoders = {clip_l}};
        snprintf(clip_l, sizeof clip_l, "%s/text_encoder/model.safetensors", path_of(&sdxl, 1));
        assert_int_equal(kiln_checkpoint_add_parts(ck, &wrong), KILN_ERR_MODEL);
        assert_non_null(strstr(kiln_last_error(), "does not read"));
        kiln_checkpoint_close(ck);
    }
    kiln_checkpoint_close(want);
    remove(unet);
    remove(vae);
    rmdir(dir);
}

/* A ControlNet for the tiny SDXL UNet (its copy takes y too) in diffusers'
 * and the original layout: every residual and the UNet with them, against
 * diffusers' ControlNetModel. */
static void controlnet(void **state)
{
    (void)state;
    const char *files[2] = {"sdxl/controlnet_diffusers.safetensors", "sdxl/controlnet_ldm.safetensors"};
    for (int i = 0; i < 2; i++)
        parity_check_controlnet(&(parity_fixture){.path = model_path(0), .tol = TOL}, files[i],
                                "sdxl/controlnet.golden.safetensors");
}

int main(void)
{
    /* the same checks on each model; cmocka gives each test its model as the state */
#define ON(fn, model) {#fn "_" #model, fn, NULL, NULL, (void *)&model}
    const struct CMUnitTest tests[] = {
        ON(detect, sdxl),       ON(text_towers, sdxl),    ON(unet_layouts, sdxl),    ON(adm_vector, sdxl),
        ON(ksampler_run, sdxl), ON(detect, refiner),      ON(text_towers, refiner),  ON(unet_layouts, refiner),
        ON(adm_vector, refiner), ON(ksampler_run, refiner), ON(separate_files, sdxl), ON(separate_files, refiner),
        cmocka_unit_test(kohya_lora), cmocka_unit_test(refiner_lora), cmocka_unit_test(controlnet),
        cmocka_unit_test(refiner_handoff), cmocka_unit_test(text_g_and_text_l),
        cmocka_unit_test(inpainting_unet),
    };
#undef ON
    return cmocka_run_group_tests(tests, NULL, NULL);
}
