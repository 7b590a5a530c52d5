/* Chroma against upstream on tests/data/chroma (make_chroma_data.py:
 * diffusers' ChromaTransformer2DModel on a small random model, with what
 * ComfyUI's Chroma does differently restated on it): the approximator's
 * input, the whole transformer on two rows (one with guidance), the
 * ChromaPipeline folder and the original single file with separate T5 and
 * VAE files as models, and KSampler runs restated from ComfyUI's code
 * (ModelSamplingFlux at 1.15, CONST; T5 unpadded as PixArt's). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "flux.h"
#include "golden.h"
#include "lora.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "sampler.h"
#include "status.h"
#include "tokenizer.h"

#define GOLDEN "chroma/golden.safetensors"
#define RUN_GOLDEN "chroma/run.golden.safetensors"
#define RUN_PROMPT "a photograph of an astronaut riding a horse" /* make_chroma_data.py's */
#define TOL 1e-5 /* f32: the same sums in another order */

/* ComfyUI's float32 embeddings of the timestep, guidance and every row
 * index, up to 343000 radians: a float32 angle computed any other way is
 * off by hundredths of a radian there. */
static void modulation_input(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    golden want = golden_read(f, "mod_input"), t = golden_read(f, "timestep"), guidance = golden_read(f, "guidance");
    const size_t per_row = (size_t)CHROMA_MOD_ROWS * CHROMA_MOD_INPUT;
    assert_int_equal(want.count, 2 * per_row);
    float *got = malloc(want.count * sizeof *got);
    for (int r = 0; r < 2; r++) kiln_chroma_modulation_input(t.data[r], guidance.data[r], got + r * per_row);
    double worst = 0;
    for (size_t i = 0; i < want.count; i++) worst = fmax(worst, fabs(got[i] - want.data[i]));
    print_message("  approximator input: largest difference %.2g\n", worst);
    assert_true(worst <= 2e-6); /* cos and sin of the same float32 angles, to an ulp or two */
    free(got);
    golden_free(&want);
    golden_free(&t);
    golden_free(&guidance);
    kiln_st_close(f);
}

static void transformer_matches_upstream(void **state)
{
    (void)state;
    parity_check_chroma(&(parity_fixture){.tol = TOL}, "chroma/transformer/diffusion_pytorch_model.safetensors");
}

static void original_names_read_as_diffusers(void **state)
{
    (void)state;
    parity_check_chroma(&(parity_fixture){.tol = TOL}, "chroma/single/chroma-tiny.safetensors");
}

static void prompt_encoded(kiln_model *m, const kiln_tokenizer *tok, const char *text, const char *which,
                           kiln_conditioning *c)
{
    char name[64];
    assert_kiln_ok(kiln_encode_prompt(m, tok, text, 0, c));
    kiln_st_file *f = golden_open(RUN_GOLDEN);
    snprintf(name, sizeof name, "run.t5_ids.%s", which);
    golden ids = golden_read(f, name);
    assert_int_equal(c->tokens, (int)ids.count); /* unpadded */
    assert_int_equal(c->dim, 64);
    assert_null(c->pooled);
    golden_free(&ids);
    kiln_st_close(f);
}

/* The run.golden KSampler runs on m, the tiny model however it was
 * loaded: plain, and with FluxGuidance 4 on the positive prompt. */
static void check_runs(kiln_model *m)
{
    assert_string_equal(m->info.family, "chroma");
    assert_string_equal(m->info.unet_name, "chroma");
    assert_int_equal(m->info.nclips, 0);
    assert_int_equal(m->info.prediction, KILN_PREDICTION_FLOW);
    assert_float_equal(m->flow_shift, 1.15, 0.0);
    assert_int_equal(kiln_model_latent_channels(m), 16);
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_conditioning pos, neg, both;
    prompt_encoded(m, tok, RUN_PROMPT, "positive", &pos);
    prompt_encoded(m, tok, "", "negative", &neg);
    kiln_sampling_job job = kiln_test_job("euler", "simple", 4, 2.0f, 42, 8, 6);
    parity_check_run(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4);

    kiln_st_file *f = golden_open(RUN_GOLDEN);
    golden want = golden_read(f, "guided.latent_out");
    float *latent;
    job.flux_guidance = 4.0f;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    free(latent);
    golden_free(&want);
    kiln_st_close(f);

    /* T5TokenizerOptions (min_padding 1, min_length 0): a pad after each prompt's EOS */
    kiln_conditioning pos_padded, neg_padded;
    assert_kiln_ok(kiln_model_set_t5_tokenizer_options(m, 1, 0));
    assert_kiln_ok(kiln_encode_prompt(m, tok, RUN_PROMPT, 0, &pos_padded));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &neg_padded));
    assert_int_equal(pos_padded.tokens, pos.tokens + 1);
    assert_int_equal(neg_padded.tokens, 2);
    job.flux_guidance = 0.0f;
    f = golden_open(RUN_GOLDEN);
    want = golden_read(f, "padded.latent_out");
    assert_kiln_ok(kiln_ksample(m, &job, &pos_padded, &neg_padded, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    free(latent);
    golden_free(&want);
    kiln_st_close(f);
    kiln_conditioning_free(&pos_padded);
    kiln_conditioning_free(&neg_padded);
    /* a least length pads after the padding; -1, -1 is the tokenizer's own again; the node's bounds */
    assert_kiln_ok(kiln_model_set_t5_tokenizer_options(m, 2, 30));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &both));
    assert_int_equal(both.tokens, 30);
    kiln_conditioning_free(&both);
    assert_kiln_ok(kiln_model_set_t5_tokenizer_options(m, 2, 0));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &both));
    assert_int_equal(both.tokens, 3);
    kiln_conditioning_free(&both);
    assert_kiln_ok(kiln_model_set_t5_tokenizer_options(m, -1, -1));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &both));
    assert_int_equal(both.tokens, 1);
    kiln_conditioning_free(&both);
    assert_int_equal(kiln_model_set_t5_tokenizer_options(m, 10001, 0), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "T5TokenizerOptions"));

    /* no CLIP: CLIPTextEncodeFlux is FLUX.1's */
    assert_int_equal(kiln_encode_flux_prompt(m, tok, RUN_PROMPT, RUN_PROMPT, &both), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "no Flux model"));
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
}

static void folder_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("chroma/tiny"), be, &m));
    check_runs(m);
    kiln_ip_adapter *ip;
    assert_int_equal(kiln_ip_adapter_load(m, kiln_test_data("chroma/tiny"), &ip), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "Chroma"));
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The original single file (or its GGUF) with T5 and the VAE as separate
 * files (CLIPLoader's "chroma" type, VAELoader) and the folder's config
 * (FLUX.1's rotary axes are not the tiny model's), opened and loaded on be
 * with `loras`; t5 false leaves T5 out. */
static kiln_status load_single_file(kiln_backend *be, const char *path, bool t5, const kiln_lora *loras, int nloras,
                                    kiln_lora_stats *stats, kiln_model **m)
{
    char t5_path[4096], vae[4096], config[4096];
    snprintf(t5_path, sizeof t5_path, "%s", kiln_test_data("pixart/tiny/text_encoder/model.safetensors"));
    snprintf(vae, sizeof vae, "%s", kiln_test_data("flux/tiny/vae/diffusion_pytorch_model.safetensors"));
    snprintf(config, sizeof config, "%s", kiln_test_data("chroma/tiny"));
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {t5 ? t5_path : NULL}, .config = config};
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(path), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    return kiln_model_load_with_loras(ck, loras, nloras, stats, be, m);
}

/* The original single file (ComfyUI's UNETLoader file) with T5 and the VAE
 * as separate files (CLIPLoader's "chroma" type, VAELoader) and FLUX.1's
 * rotary axes, the folder's; without T5 it says which file is missing. */
static void single_file_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(load_single_file(be, "chroma/single/chroma-tiny.safetensors", true, NULL, 0, NULL, &m));
    check_runs(m);
    kiln_model_free(m);
    assert_int_equal(load_single_file(be, "chroma/single/chroma-tiny.safetensors", false, NULL, 0, NULL, &m),
                     KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "Chroma transformer without its T5"));
    kiln_backend_free(be);
}

/* LoRAs as Chroma's come (make_chroma_lora_data.py): kohya's layout in the
 * original names (a fused q/k/v, single blocks' linear1 and linear2, the
 * approximator's layers, txt_in, the final layer) on the folder, and PEFT's
 * in diffusers' names on the single file, each against the model merged
 * upstream. */
static void loras_match_upstream(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_checkpoint *ck;
    kiln_lora_stats stats[1];
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char kohya_path[4096], peft_path[4096];
    snprintf(kohya_path, sizeof kohya_path, "%s", kiln_test_data("chroma/lora/kohya.safetensors"));
    snprintf(peft_path, sizeof peft_path, "%s", kiln_test_data("chroma/lora/peft.safetensors"));
    const kiln_lora kohya = {kohya_path, 0.8, 1.0}, peft = {peft_path, 1.0, 1.0};
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("chroma/tiny"), &ck));
    assert_kiln_ok(kiln_model_load_with_loras(ck, &kohya, 1, stats, be, &m));
    assert_int_equal(stats[0].unet_modules, 7);
    parity_check_chroma_out(m, "chroma/lora/golden.safetensors", "kohya.out", TOL);
    kiln_model_free(m);

    assert_kiln_ok(load_single_file(be, "chroma/single/chroma-tiny.safetensors", true, &peft, 1, stats, &m));
    assert_int_equal(stats[0].unet_modules, 4);
    parity_check_chroma_out(m, "chroma/lora/golden.safetensors", "peft.out", TOL);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ComfyUI-GGUF's Chroma file (make_gguf_chroma_data.py: the original names,
 * Q8_0 and BF16 kept as stored) with T5 and the VAE beside it, against
 * diffusers' transformer on the weights gguf-py dequantizes. */
static void gguf_file(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(load_single_file(be, "gguf/chroma-tiny-Q8_0.gguf", true, NULL, 0, NULL, &m));
    assert_string_equal(m->info.family, "chroma");
    assert_int_equal(m->flux.dbl[0].img.q_w->dtype, KILN_Q8_0);
    assert_int_equal(m->flux.approx.layers[0].w1->dtype, KILN_BF16);
    parity_check_chroma_out(m, "gguf/golden.safetensors", "chroma.out", TOL);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* Prompt weights on T5 as ComfyUI reads them (tests/data/t5_weights): each
 * weighted segment tokenized alone, a weighted row moved from the empty
 * prompt's by its weight; Chroma's T5 (its empty ids all pads) and Flux's
 * (EOS then pads, padded to 256). */
static void t5_prompt_weights(void **state)
{
    (void)state;
    static const char prompt[] = "a (photograph:1.3) of (an:0.5) \\(astronaut\\) riding ((a horse)), [x]";
    static const struct {
        const char *model, *key;
    } models[] = {{"chroma/tiny", "chroma.cond"}, {"flux/tiny", "flux.cond"}};
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open("t5_weights/t5_weights.safetensors");
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        kiln_model *m;
        assert_kiln_ok(kiln_model_load(kiln_test_data(models[k].model), be, &m));
        golden want = golden_read(f, models[k].key);
        kiln_conditioning c, plain;
        assert_kiln_ok(kiln_encode_prompt(m, tok, prompt, 0, &c));
        assert_int_equal(c.tokens, (int)want.shape[1]);
        assert_rel_l2_le(c.data, want.data, want.count, TOL);
        /* the same words unweighted read otherwise */
        assert_kiln_ok(kiln_encode_prompt(m, tok, "a photograph of an (astronaut) riding a horse, [x]", 0, &plain));
        assert_true(plain.tokens != c.tokens || kiln_rel_l2(plain.data, want.data, want.count) > 1e-3);
        kiln_conditioning_free(&c);
        kiln_conditioning_free(&plain);
        golden_free(&want);
        kiln_model_free(m);
    }
    kiln_st_close(f);
    kiln_tokenizer_free(tok);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(modulation_input),
        cmocka_unit_test(transformer_matches_upstream),
        cmocka_unit_test(original_names_read_as_diffusers),
        cmocka_unit_test(folder_run),
        cmocka_unit_test(single_file_run),
        cmocka_unit_test(loras_match_upstream),
        cmocka_unit_test(gguf_file),
        cmocka_unit_test(t5_prompt_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
