/* SD 2.x on the tiny SD 2.x model against tests/data/sd2 (made by
 * make_sd2_data.py: diffusers' and transformers' models, ComfyUI's KSampler
 * steps around them): detection (family, text tower, v-prediction by each of
 * ComfyUI's rules), the OpenCLIP single file's names and fused q/k/v, the
 * text tower at its last and penultimate layers, the UNet with every block,
 * both in the single-file and the diffusers layouts; ComfyUI's SD2 padding,
 * a whole v-prediction KSampler run, a kohya LoRA merged into both, and a
 * ControlNet on both. */
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "golden.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "prompt.h"
#include "sampler.h"
#include "status.h"
#include "tiny_variants.h"
#include "tokenizer.h"

#define TOL 1e-4 /* as test_parity_tiny: the same math in f32 */
/* with a LoRA merged: the merged weights are rounded to the model's f16
 * (diffusers fused them in f32), about 2^-11 of each weight */
#define TOL_MERGED 2e-3
#define GOLDEN "sd2/golden.safetensors"
#define LAST_NORM_BIAS "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.norm1.bias"

static const char *single_file(void) { return kiln_test_data("sd2/tiny_sd2.safetensors"); }

static char folder_path[1024];
static const char *folder(void)
{
    snprintf(folder_path, sizeof folder_path, "%s", kiln_test_data("sd2/tiny_sd2_diffusers"));
    return folder_path;
}

static void inspect(const char *path, kiln_model_info *info)
{
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_model_inspect(ck, info));
    kiln_checkpoint_close(ck);
}

static void detect_single_file(void **state)
{
    (void)state;
    kiln_model_info info;
    inspect(single_file(), &info);
    assert_string_equal(info.family, "sd2");
    assert_string_equal(info.unet_name, "sd2-tiny-test");
    assert_string_equal(info.clip_names[0], "openclip-tiny-test");
    /* the last transformer's norm1 bias is spread as in the 768-v files */
    assert_int_equal(info.prediction, KILN_PREDICTION_V);
    assert_string_equal(info.prediction_reason, "norm bias spread");
}

/* A flat norm bias (the 512 files) reads as eps; a `v_pred` tensor as v. */
static void detect_eps_from_flat_bias(void **state)
{
    (void)state;
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(single_file(), &ck));
    const kiln_st_tensor *bias = kiln_checkpoint_find(ck, LAST_NORM_BIAS);
    assert_non_null(bias);
    size_t n = (size_t)kiln_st_numel(bias);
    float *flat = malloc(n * sizeof *flat);
    for (size_t i = 0; i < n; i++) flat[i] = 0.05f * (float)(i % 2); /* std 0.025 */
    assert_kiln_ok(kiln_checkpoint_replace(ck, LAST_NORM_BIAS, KILN_F32, flat));
    kiln_model_info info;
    assert_kiln_ok(kiln_model_inspect(ck, &info));
    assert_int_equal(info.prediction, KILN_PREDICTION_EPS);
    kiln_checkpoint_close(ck);
}

static void detect_folder(void **state)
{
    (void)state;
    kiln_model_info info;
    inspect(folder(), &info);
    assert_string_equal(info.family, "sd2");
    assert_string_equal(info.unet_name, "sd2-tiny-test");
    assert_string_equal(info.clip_names[0], "openclip-tiny-test");
    assert_int_equal(info.prediction, KILN_PREDICTION_V);
    assert_string_equal(info.prediction_reason, "scheduler_config.json");
}

/* q, k and v are thirds of OpenCLIP's in_proj, read in place. */
static void open_clip_names(void **state)
{
    (void)state;
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(single_file(), &ck));
    kiln_st_file *raw;
    assert_kiln_ok(kiln_st_open(single_file(), &raw));
    const kiln_st_tensor *fused = kiln_st_find(raw, "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight");
    const kiln_st_tensor *fused_b = kiln_st_find(raw, "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_bias");
    assert_non_null(fused);
    assert_non_null(fused_b);
    const char *parts = "qkv";
    for (int k = 0; k < 3; k++) {
        char name[160];
        snprintf(name, sizeof name, "cond_stage_model.transformer.text_model.encoder.layers.2.self_attn.%c_proj.weight",
                 parts[k]);
        const kiln_st_tensor *w = kiln_checkpoint_find(ck, name);
        assert_non_null(w);
        assert_int_equal(w->ndim, 2);
        assert_int_equal(w->shape[0], 32);
        assert_int_equal(w->shape[1], 32);
        assert_memory_equal(w->data, (const char *)fused->data + (size_t)k * w->nbytes, w->nbytes);
        snprintf(name, sizeof name, "cond_stage_model.transformer.text_model.encoder.layers.2.self_attn.%c_proj.bias",
                 parts[k]);
        const kiln_st_tensor *b = kiln_checkpoint_find(ck, name);
        assert_non_null(b);
        assert_int_equal(b->shape[0], 32);
        assert_memory_equal(b->data, (const char *)fused_b->data + (size_t)k * b->nbytes, b->nbytes);
    }
    assert_non_null(kiln_checkpoint_find(ck, "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"));
    assert_non_null(kiln_checkpoint_find(ck, "cond_stage_model.transformer.text_model.final_layer_norm.bias"));
    assert_non_null(kiln_checkpoint_find(ck, "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc2.weight"));
    assert_null(kiln_checkpoint_find(ck, "cond_stage_model.model.transformer.resblocks.0.ln_1.weight"));
    kiln_st_close(raw);
    kiln_checkpoint_close(ck);
}

static void clip_single_file(void **state)
{
    (void)state;
    parity_check_clip(&(parity_fixture){.path = single_file(), .tol = TOL}, GOLDEN);
}

/* The text tower at SD 2.x's own layer (the penultimate, through the final
 * norm) on the golden's input_ids, against its clip_skip2. */
static void check_penultimate(const kiln_model *m, const char *golden_path, double tol)
{
    kiln_st_file *f = golden_open(golden_path);
    golden ids = golden_read(f, "input_ids"), want = golden_read(f, "clip_skip2");
    int32_t ids32[2 * 77];
    for (int i = 0; i < 2 * 77; i++) ids32[i] = (int32_t)ids.data[i];
    float *out = calloc(want.count, sizeof(float));
    assert_kiln_ok(kiln_clip_encode_ids(m, 0, ids32, 2, 0, out, NULL));
    assert_rel_l2_le(out, want.data, want.count, tol);
    free(out);
    golden_free(&ids);
    golden_free(&want);
    kiln_st_close(f);
}

/* diffusers' folder lacks the last layer: the model's own layer (the
 * penultimate) still runs, the last is refused by name. */
static void clip_folder(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(folder(), be, &m));
    assert_int_equal(m->clips[0].nlayers, 2);
    check_penultimate(m, GOLDEN, TOL);
    int32_t ids[2 * 77] = {0};
    float *out = calloc((size_t)2 * 77 * 32, sizeof(float));
    assert_int_equal(kiln_clip_encode_ids(m, 0, ids, 2, 1, out, NULL), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "--clip-skip 1"));
    free(out);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void unet_single_file(void **state)
{
    (void)state;
    parity_check_unet(&(parity_fixture){.path = single_file(), .tol = TOL}, GOLDEN);
}

static void unet_folder(void **state)
{
    (void)state;
    parity_check_unet(&(parity_fixture){.path = folder(), .tol = TOL}, GOLDEN);
}

/* ComfyUI's SD2 tokenizer: BOS, the words, EOS, then 0s. */
static void tokenizer_pads_with_zero(void **state)
{
    (void)state;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(GOLDEN);
    golden ids = golden_read(f, "input_ids");
    const char *prompts[2] = {"a photograph of an astronaut riding a horse", ""};
    for (int r = 0; r < 2; r++) {
        kiln_prompt_tokens t;
        assert_kiln_ok(kiln_prompt_tokenize(tok, prompts[r], 0, NULL, &t));
        assert_int_equal(t.n_windows, 1);
        for (int i = 0; i < KILN_CLIP_CONTEXT; i++) assert_int_equal(t.ids[0][i], (int32_t)ids.data[r * 77 + i]);
        kiln_prompt_tokens_free(&t);
    }
    golden_free(&ids);
    kiln_st_close(f);
    kiln_tokenizer_free(tok);
}

/* An SD 2.x inpainting UNet (9 input channels, 512-inpainting-ema's kind):
 * the tiny SD 2.x model with tests/data/sd2/inpaint.golden's 9-channel
 * conv_in (make_sd2_inpaint_data.py) is known as one and matches
 * diffusers' UNet with it. */
static void inpainting_unet(void **state)
{
    (void)state;
    const char *path = tiny_sd2_inpaint_model();
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(path, be, &m));
    assert_string_equal(m->unet.config->name, "sd2-tiny-test-inpaint");
    assert_int_equal(m->info.variant, KILN_VARIANT_INPAINT);
    kiln_model_free(m);
    kiln_backend_free(be);
    parity_check_unet_output(&(parity_fixture){.path = path, .tol = TOL}, "sd2/inpaint.golden.safetensors", "");
}

/* A ControlNet for SD 2.x in the original layout (tests/data/sd2/controlnet,
 * make_sd2_controlnet_data.py: its copy of the encoder with linear
 * projections and upcast attention) on both layouts of the model, against
 * diffusers' ControlNetModel: every residual and the UNet with them. */
static void controlnet(void **state)
{
    (void)state;
    static const char *const paths[2] = {KILN_TEST_DATA "/sd2/tiny_sd2.safetensors",
                                         KILN_TEST_DATA "/sd2/tiny_sd2_diffusers"};
    for (int layout = 0; layout < 2; layout++)
        parity_check_controlnet(&(parity_fixture){.path = paths[layout], .tol = TOL},
                                "sd2/controlnet/tiny_ldm.safetensors", "sd2/controlnet/golden.safetensors");
}

/* A kohya LoRA (tests/data/sd2/lora, make_sd2_lora_data.py) merged at 0.75
 * into both layouts: the text tower's penultimate layer (in the single
 * file, the updates of q, k and v land in rows of OpenCLIP's fused
 * in_proj) and the UNet (linear proj_in/proj_out, LoCon convolutions),
 * against diffusers' fuse_lora (the file's f16 weights merged in f32 there,
 * rounded back to f16 here). */
static void kohya_lora(void **state)
{
    (void)state;
    /* the f16 factors' product is merged into f32 weights here and in diffusers alike */
    const kiln_lora lora = {KILN_TEST_DATA "/sd2/lora/kohya.safetensors", 0.75, 0.75};
    static const char *const paths[2] = {KILN_TEST_DATA "/sd2/tiny_sd2.safetensors",
                                         KILN_TEST_DATA "/sd2/tiny_sd2_diffusers"};
    for (int layout = 0; layout < 2; layout++) {
        const parity_fixture fx = {.path = paths[layout], .tol = TOL_MERGED, .loras = &lora, .nloras = 1};
        parity_check_unet_output(&fx, "sd2/lora/kohya.golden.safetensors", "");
        kiln_backend *be;
        kiln_model *m;
        kiln_checkpoint *ck;
        kiln_lora_stats stats;
        assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
        assert_kiln_ok(kiln_checkpoint_open(paths[layout], &ck));
        assert_kiln_ok(kiln_model_load_with_loras(ck, &lora, 1, &stats, be, &m));
        assert_int_equal(stats.clip_modules, 12);
        check_penultimate(m, "sd2/lora/kohya.golden.safetensors", TOL_MERGED);
        kiln_model_free(m);
        kiln_backend_free(be);
    }
}
/* KSampler (euler, normal, 4 steps, cfg 5, seed 42) with the model's
 * v-prediction: the conditionings from the prompts, the LATENT and the
 * decoded picture; the same run read as eps lands elsewhere. */
static void ksampler_v_prediction(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(single_file(), be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(GOLDEN);
    golden noise = golden_read(f, "run.noise"), want = golden_read(f, "run.latent_out"),
           want_pos = golden_read(f, "run.positive"), want_neg = golden_read(f, "run.negative");
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_encode_prompt(m, tok, "a photograph of an astronaut riding a horse", 0, &pos));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &neg));
    assert_rel_l2_le(pos.data, want_pos.data, want_pos.count, TOL);
    assert_rel_l2_le(neg.data, want_neg.data, want_neg.count, TOL);

    kiln_sampling_job job = kiln_test_job("euler", "normal", 4, 5.0f, 42, 8, 8);
    parity_check_run(m, &job, &pos, &neg, GOLDEN, TOL);
    /* the seed's noise is the golden's */
    job.noise = noise.data;
    parity_check_run(m, &job, &pos, &neg, GOLDEN, TOL);

    m->info.prediction = KILN_PREDICTION_EPS;
    float *latent;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    assert_true(kiln_rel_l2(latent, want.data, want.count) > 0.1);

    free(latent);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    golden_free(&noise);
    golden_free(&want);
    golden_free(&want_pos);
    golden_free(&want_neg);
    kiln_st_close(f);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detect_single_file), cmocka_unit_test(detect_eps_from_flat_bias),
        cmocka_unit_test(detect_folder),      cmocka_unit_test(open_clip_names),
        cmocka_unit_test(clip_single_file),   cmocka_unit_test(clip_folder),
        cmocka_unit_test(unet_single_file),   cmocka_unit_test(unet_folder),
        cmocka_unit_test(tokenizer_pads_with_zero), cmocka_unit_test(ksampler_v_prediction),
        cmocka_unit_test(kohya_lora),         cmocka_unit_test(controlnet),
        cmocka_unit_test(inpainting_unet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
