/* PixArt's original single files (tests/data/pixart/single, made by
 * make_pixart_single_data.py: the tiny PixArt-alpha folder's transformer in
 * the original names, and what ComfyUI's PixArtMS computes with it, restated
 * on diffusers): the names read under diffusers' (fused q, k, v and k, v
 * split), ComfyUI's position table (scaled to each latent, Python's
 * rounding, the pos_embed buffer's fixed scale), the transformer on two
 * sizes, a Sigma file, and a KSampler run with the T5 and VAE beside the
 * file as UNETLoader, CLIPLoader and VAELoader give them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "golden.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "pixart.h"
#include "safetensors.h"
#include "sampler.h"
#include "status.h"
#include "t5.h"

#define GOLDEN "pixart/single/golden.safetensors"
#define ALPHA KILN_TEST_DATA "/pixart/single/pixart_alpha_tiny.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order; the table's sines in double against float32 */
#define RUN_TOL 1e-4 /* a whole run: four steps, and the VAE */
#define RUN_PROMPT "a red fox in the snow, 1024 pixels" /* the data script's */

static const kiln_model_parts parts = {
    .text_encoders = {KILN_TEST_DATA "/pixart/tiny/text_encoder/model.safetensors"},
    .vae = KILN_TEST_DATA "/pixart/tiny/vae/diffusion_pytorch_model.safetensors",
    .tokenizer = KILN_TEST_DATA "/spm_tokenizer/spiece.model",
};

static kiln_model *load_with_parts(const char *path, kiln_backend **be)
{
    kiln_checkpoint *ck;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, be));
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    assert_kiln_ok(kiln_model_load_with_loras(ck, NULL, 0, NULL, *be, &m));
    return m;
}

/* The transformer on golden `<name>.sample` (rows on the captions of
 * tests/data/pixart/golden's t5.out.0 and .1, in turn) at timesteps t
 * against `<name>.out`, each row's c_size from `sizes` (height, width), or
 * 8 times the latent as ComfyUI's default where NULL. */
static void check_forward(const kiln_model *m, const char *sample_name, const float *t, const float *sizes,
                          const char *out_name)
{
    kiln_st_file *f = golden_open(GOLDEN), *prompts = golden_open("pixart/golden.safetensors");
    golden sample = golden_read(f, sample_name), want = golden_read(f, out_name);
    golden c0 = golden_read(prompts, "t5.out.0"), c1 = golden_read(prompts, "t5.out.1");
    const float *captions[2] = {c0.data, c1.data};
    const int tokens[2] = {(int)c0.shape[1], (int)c1.shape[1]};
    const int h = (int)sample.shape[2], w = (int)sample.shape[3];
    const float latent_sizes[4] = {8.0f * h, 8.0f * w, 8.0f * h, 8.0f * w};
    pixart_input in = {.rows = (int)sample.shape[0], .h = h, .w = w, .latent = sample.data, .timesteps = t,
                       .captions = captions, .caption_tokens = tokens, .sizes = sizes ? sizes : latent_sizes};
    float *got = malloc(want.count * sizeof *got);
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &g));
    assert_kiln_ok(kiln_pixart_forward(g, &m->pixart, &in, got));
    assert_rel_l2_le(got, want.data, want.count, TOL);
    kiln_graph_free(g);
    free(got);
    golden *all[] = {&sample, &want, &c0, &c1};
    for (size_t i = 0; i < 4; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_st_close(prompts);
}

/* The file found as a PixArt-alpha transformer in the original names, its
 * table as ComfyUI's, and the transformer on both sizes. */
static void alpha_file_as_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m = load_with_parts(ALPHA, &be);
    assert_string_equal(m->info.family, "pixart");
    assert_string_equal(m->info.unet_name, "pixart-alpha");
    assert_true(kiln_checkpoint_pixart_original(m->checkpoint));
    assert_true(m->pixart.comfy_positions && m->pixart.size_conditions);
    assert_int_equal(m->pixart.pe_interpolation, 0);
    assert_int_equal(m->pixart.layers, 2);
    assert_int_equal(m->t5_max_tokens, 120);
    assert_float_equal(m->vae.latents.scale, 0.18215f, 0.0f);

    kiln_st_file *f = golden_open(GOLDEN);
    golden table = golden_read(f, "positions.table"); /* a 2 x 318 latent: round(2.5) is 2 */
    float *got = malloc(table.count * sizeof *got);
    assert_kiln_ok(kiln_pixart_position_table(&m->pixart, 2, 318, got));
    assert_rel_l2_le(got, table.data, table.count, TOL);
    free(got);
    golden_free(&table);
    golden t = golden_read(f, "alpha.timestep");
    check_forward(m, "alpha.sample", t.data, NULL, "alpha.out");
    /* CLIPTextEncodePixArtAlpha's size on the first row (1024 x 768), the picture's on the second */
    check_forward(m, "alpha.sample", t.data, (const float[]){768.0f, 1024.0f, 8.0f * 32, 8.0f * 40}, "sized.out");
    golden_free(&t);
    kiln_st_close(f);
    check_forward(m, "wide.sample", (const float[]){500.0f}, NULL, "wide.out");

    float one[144];
    assert_int_equal(kiln_pixart_position_table(&m->pixart, 2, 62, one), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "a 62x2 latent (mean side 32) gives ComfyUI's position table a zero"));
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* A Sigma file, written from the alpha one: its size embedders out, a
 * caption table of Sigma's 300 rows, and a pos_embed buffer of 32 x 32
 * tokens, which fixes ComfyUI's table scale at 64 // 64 = 1. */
static void write_sigma_file(const char *path)
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(ALPHA, &f));
    const size_t n = kiln_st_count(f);
    kiln_st_entry *entries = calloc(n + 2, sizeof *entries);
    uint16_t *captions = calloc(300 * 64, sizeof *captions);
    float *positions = calloc(1024 * 144, sizeof *positions);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (strncmp(t->name, "csize_embedder.", 15) == 0 || strncmp(t->name, "ar_embedder.", 12) == 0 ||
            strcmp(t->name, "y_embedder.y_embedding") == 0)
            continue;
        entries[kept] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(entries[kept++].shape, t->shape, sizeof t->shape);
    }
    assert_int_equal(kept, n - 9);
    entries[kept++] = (kiln_st_entry){"y_embedder.y_embedding", KILN_F16, 2, {300, 64}, captions};
    entries[kept++] = (kiln_st_entry){"pos_embed", KILN_F32, 3, {1, 1024, 144}, positions};
    assert_kiln_ok(kiln_st_write(path, entries, kept, NULL, 0));
    free(entries);
    free(captions);
    free(positions);
    kiln_st_close(f);
}

static void sigma_file_as_comfyui(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-pixart-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sigma.safetensors", dir);
    write_sigma_file(path);
    kiln_backend *be;
    kiln_model *m = load_with_parts(path, &be);
    assert_string_equal(m->info.unet_name, "pixart-sigma");
    assert_false(m->pixart.size_conditions);
    assert_int_equal(m->pixart.pe_interpolation, 1);
    assert_int_equal(m->pixart.sample_size, 64);
    assert_int_equal(m->t5_max_tokens, 300);
    assert_float_equal(m->vae.latents.scale, 0.13025f, 0.0f); /* SDXL's VAE, which Sigma uses */
    check_forward(m, "wide.sample", (const float[]){500.0f}, NULL, "sigma.out");
    kiln_model_free(m);
    kiln_backend_free(be);
    unlink(path);
    rmdir(dir);
}

/* A PEFT LoRA (diffusers' names, as PixArt LoRAs are shared) merges into
 * the file's fused projections as into the folder's own: the two models
 * give the same transformer output (the folder's placed as ComfyUI places
 * the file's tokens). Its attn1.to_q and attn2.to_v are rows of the file's
 * attn.qkv and cross_attn.kv_linear. */
static void lora_as_on_folder(void **state)
{
    (void)state;
    const kiln_lora lora = {KILN_TEST_DATA "/pixart/lora/peft.safetensors", 1.0, 1.0};
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_model *file, *folder;
    kiln_lora_stats stats;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    const char *paths[2] = {ALPHA, KILN_TEST_DATA "/pixart/tiny"};
    kiln_model **models[2] = {&file, &folder};
    for (int k = 0; k < 2; k++) {
        assert_kiln_ok(kiln_checkpoint_open(paths[k], &ck));
        if (k == 0) assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
        assert_kiln_ok(kiln_model_load_with_loras(ck, &lora, 1, &stats, be, models[k]));
        assert_int_equal(stats.unet_modules, 5);
    }
    assert_false(folder->pixart.comfy_positions);
    folder->pixart.comfy_positions = true;
    kiln_st_file *f = golden_open(GOLDEN);
    golden sample = golden_read(f, "wide.sample");
    const float t = 500.0f;
    const int h = (int)sample.shape[2], w = (int)sample.shape[3];
    float *out[2];
    for (int k = 0; k < 2; k++) {
        const kiln_model *m = *models[k];
        const float *captions[1] = {sample.data}; /* any caption of the T5's width: the first 64 numbers */
        const int tokens[1] = {1};
        const float sizes[2] = {8.0f * h, 8.0f * w};
        pixart_input in = {.rows = 1, .h = h, .w = w, .latent = sample.data, .timesteps = &t, .captions = captions,
                           .caption_tokens = tokens, .sizes = sizes};
        kiln_graph *g;
        assert_non_null(out[k] = malloc(2 * sample.count * sizeof *out[k]));
        assert_kiln_ok(kiln_graph_create(kiln_weights_backend(m->weights), &g));
        assert_kiln_ok(kiln_pixart_forward(g, &m->pixart, &in, out[k]));
        kiln_graph_free(g);
    }
    assert_rel_l2_le(out[0], out[1], 2 * sample.count, 1e-6);
    free(out[0]);
    free(out[1]);
    golden_free(&sample);
    kiln_st_close(f);
    kiln_model_free(file);
    kiln_model_free(folder);
    kiln_backend_free(be);
}

/* Prompt to picture: euler, normal, 4 steps, cfg 4.5, seed 42 on a 36x36
 * latent, each prompt's T5 ids unpadded (the negative's EOS alone). */
static void run_as_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m = load_with_parts(ALPHA, &be);
    kiln_st_file *f = golden_open(GOLDEN);
    kiln_conditioning pos, neg;
    const char *texts[2] = {RUN_PROMPT, ""}, *ids_names[2] = {"run.ids.positive", "run.ids.negative"};
    kiln_conditioning *conds[2] = {&pos, &neg};
    for (int k = 0; k < 2; k++) {
        assert_kiln_ok(kiln_encode_prompt(m, NULL, texts[k], 0, conds[k]));
        golden ids = golden_read(f, ids_names[k]);
        int32_t got[KILN_T5_MAX_TOKENS];
        int n;
        assert_kiln_ok(kiln_spm_encode_t5(m->spm, texts[k], got, m->t5_max_tokens, &n));
        assert_int_equal(conds[k]->tokens, (int)ids.count);
        assert_int_equal(n, (int)ids.count);
        for (int i = 0; i < n; i++) assert_int_equal(got[i], (int)ids.data[i]);
        golden_free(&ids);
    }
    kiln_st_close(f);
    kiln_sampling_job job = kiln_test_job("euler", "normal", 4, 4.5f, 42, 36, 36);
    parity_check_run(m, &job, &pos, &neg, GOLDEN, RUN_TOL);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alpha_file_as_comfyui),
        cmocka_unit_test(sigma_file_as_comfyui),
        cmocka_unit_test(lora_as_on_folder),
        cmocka_unit_test(run_as_comfyui),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
