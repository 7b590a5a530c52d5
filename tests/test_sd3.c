/* SD3 against upstream on tests/data/sd3 (made by make_sd3_data.py with
 * diffusers' SD3Transformer2DModel on small random models): the transformer
 * of SD 3.5 Medium's shape (q/k norms, a dual-attention block, the last
 * block reading the caption only) and of SD 3.0's (neither norms nor dual
 * attention) on two rows, and the StableDiffusion3Pipeline folder as a
 * model: detection, ComfyUI's SD3ClipModel conditioning (CLIP-L and bigG at
 * their penultimate layers, T5 padded to 77, the pooled outputs) and
 * KSampler runs restated from ComfyUI's code (ModelSamplingDiscreteFlow,
 * shift 3, CONST): txt2img and img2img; the same model as Stability's single
 * file and as a transformer file with its text encoders and VAE beside it
 * (and without T5). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "flux_controlnet.h"
#include "golden.h"
#include "image.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sampler.h"
#include "schedule.h"
#include "status.h"
#include "tokenizer.h"

#define TOL 1e-5 /* f32: the same sums in another order */
#define RUN_GOLDEN "sd3/run.golden.safetensors"
#define RUN_PROMPT "a photograph of an astronaut riding a horse" /* make_sd3_data.py's */

static void transformer_matches_diffusers(void **state)
{
    (void)state;
    parity_check_sd3(&(parity_fixture){.path = "sd3/tiny", .tol = TOL}, "sd35");
    parity_check_sd3(&(parity_fixture){.path = "sd3/tiny_sd3", .tol = TOL}, "sd3");
}

static void detected(void **state)
{
    (void)state;
    static const struct {
        const char *path, *name;
        bool norms, dual;
        int blocks;
    } cases[] = {{"sd3/tiny", "sd3.5-medium", true, true, 3}, {"sd3/tiny_sd3", "sd3-medium", false, false, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_checkpoint *ck;
        kiln_model_info info;
        assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(cases[i].path), &ck));
        assert_kiln_ok(kiln_model_inspect(ck, &info));
        assert_string_equal(info.family, "sd3");
        assert_string_equal(info.unet_name, cases[i].name);
        assert_int_equal(info.prediction, KILN_PREDICTION_FLOW);
        assert_int_equal(info.nclips, 2);
        assert_non_null(info.t5_name);
        kiln_checkpoint_close(ck);

        kiln_backend *be;
        kiln_model *m;
        assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
        assert_kiln_ok(kiln_model_load(kiln_test_data(cases[i].path), be, &m));
        assert_int_equal(m->flux.ndouble, cases[i].blocks);
        assert_int_equal(m->flux.nsingle, 0);
        assert_int_equal(m->flux.heads, 2); /* SD 3.0's head width from the folder's config */
        assert_int_equal(m->flux.pos_side, 8);
        assert_int_equal(m->flux.dbl[0].img.norm_q != NULL, cases[i].norms);
        assert_int_equal(m->flux.dbl[0].img2.q_w != NULL, cases[i].dual);
        assert_null(m->flux.dbl[cases[i].blocks - 1].txt_out_w);
        assert_int_equal(kiln_model_latent_channels(m), 16);
        assert_float_equal(m->vae.latents.scale, 1.5305f, 0.0f);
        assert_float_equal(m->vae.latents.shift, 0.0609f, 0.0f);
        kiln_model_free(m);
        kiln_backend_free(be);
    }
}

/* ComfyUI's SD3 conditioning of one prompt against the golden's. */
static void prompt_encoded(kiln_model *m, const kiln_tokenizer *tok, kiln_st_file *f, const char *text,
                           const char *which, kiln_conditioning *c)
{
    char name[64];
    assert_kiln_ok(kiln_encode_prompt(m, tok, text, 0, c));
    snprintf(name, sizeof name, "run.context.%s", which);
    golden context = golden_read(f, name);
    assert_int_equal(c->tokens, (int)context.shape[1]); /* 77 CLIP rows, 77 T5 rows */
    assert_int_equal(c->dim, (int)context.shape[2]);
    assert_rel_l2_le(c->data, context.data, context.count, TOL);
    for (int t = 0; t < 77; t++) /* the CLIPs' rows zero past their 64 columns */
        for (int d = 64; d < c->dim; d++) assert_true(c->data[(size_t)t * c->dim + d] == 0.0f);
    snprintf(name, sizeof name, "run.pooled.%s", which);
    golden pooled = golden_read(f, name);
    assert_int_equal(c->pooled_dim, (int)pooled.count);
    assert_rel_l2_le(c->pooled, pooled.data, pooled.count, TOL);
    golden_free(&context);
    golden_free(&pooled);
}

/* The run.golden KSampler runs (txt2img, img2img) on m, the tiny model
 * however it was loaded. */
static void check_runs(kiln_model *m)
{
    kiln_tokenizer *tok;
    assert_string_equal(m->info.family, "sd3");
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(RUN_GOLDEN);
    kiln_conditioning pos, neg;
    prompt_encoded(m, tok, f, RUN_PROMPT, "positive", &pos);
    prompt_encoded(m, tok, f, "", "negative", &neg);

    kiln_sampling_job job = kiln_test_job("euler", "simple", 4, 2.0f, 42, 8, 6);
    kiln_st_close(f);
    parity_check_run(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4);
    parity_check_img2img(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4); /* the LATENT mixed in the flow way */

    /* SkipLayerGuidanceSD3 (block 1 over the first half) and SkipLayerGuidanceDiT with rescaling (blocks 0 and 2
       from 10 % to 60 %) against ComfyUI's post-CFG function restated around diffusers' skip_layers */
    static const int one[] = {1}, two[] = {0, 2};
    const kiln_skip_layer_guidance slgs[2] = {{.double_layers = one, .double_count = 1, .scale = 3.0,
                                               .start_percent = 0.0, .end_percent = 0.5},
                                              {.double_layers = two, .double_count = 2, .scale = 2.0,
                                               .start_percent = 0.1, .end_percent = 0.6, .rescaling_scale = 0.5}};
    static const char *const keys[2] = {"slg.latent_out", "slg_rescaled.latent_out"};
    f = golden_open(RUN_GOLDEN);
    golden plain = golden_read(f, "run.latent_out");
    kiln_st_close(f);
    f = golden_open("sd3/slg.golden.safetensors");
    for (int k = 0; k < 2; k++) {
        golden want = golden_read(f, keys[k]);
        assert_true(kiln_rel_l2(want.data, plain.data, want.count) > 1e-2); /* another picture than the plain run */
        job.skip_layer_guidance = &slgs[k];
        float *latent;
        assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
        assert_rel_l2_le(latent, want.data, want.count, 1e-4);
        free(latent);
        golden_free(&want);
    }
    golden_free(&plain);
    kiln_st_close(f);
    const int past[] = {3};
    const kiln_skip_layer_guidance bad = {.double_layers = past, .double_count = 1, .scale = 3.0,
                                          .end_percent = 0.5};
    job.skip_layer_guidance = &bad;
    float *latent;
    assert_int_equal(kiln_ksample(m, &job, &pos, &neg, &latent), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "block 3; the model has 3"));
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
}

static void folder_runs(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sd3/tiny"), be, &m));
    check_runs(m);

    /* CLIPTextEncodeSD3: each tower on its own text, the empty ones encoded too */
    kiln_conditioning all, one;
    assert_kiln_ok(kiln_text_encode_sd3(m, RUN_PROMPT, "", "a red fox", &all));
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &one));
    const size_t L = 32, G = 32; /* the tiny towers' widths */
    for (int t = 0; t < 77; t++) /* CLIP-L's columns as the prompt's alone */
        assert_memory_equal(all.data + (size_t)t * all.dim, one.data + (size_t)t * one.dim, L * sizeof(float));
    assert_memory_equal(all.pooled, one.pooled, L * sizeof(float));
    assert_memory_not_equal(all.pooled + L, one.pooled + L, G * sizeof(float));
    kiln_conditioning_free(&one);
    assert_kiln_ok(kiln_text_encode(m, "", 0, &one)); /* bigG's as the empty prompt's */
    for (int t = 0; t < 77; t++)
        assert_memory_equal(all.data + (size_t)t * all.dim + L, one.data + (size_t)t * one.dim + L, G * sizeof(float));
    assert_memory_equal(all.pooled + L, one.pooled + L, G * sizeof(float));
    kiln_conditioning_free(&one);
    kiln_conditioning_free(&all);

    /* ModelSamplingSD3: another shift, another schedule */
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_set_flux_shift(m, 6.0));
    assert_kiln_ok(kiln_model_sampling_of(m, &ms));
    assert_true(ms.snr_shift && ms.shift == 6.0);
    assert_int_equal(kiln_model_set_flux_shift(m, -1.0), KILN_ERR_INVALID_ARG);
    assert_kiln_ok(kiln_model_set_flux_shift(m, 0.0));
    assert_kiln_ok(kiln_model_sampling_of(m, &ms));
    assert_true(ms.shift == 3.0);
    kiln_model_free(m);
    kiln_backend_free(be);
}

#define TINY(part) "sd3/tiny/" part

/* The tiny folder's CLIP-L, bigG and T5 (as wide as CLIP-L, the tiny bigG goes after it: TripleCLIPLoader's
 * clip_name1, clip_name2 order) and VAE as files beside a transformer file, tiny_sd3/ as its config; the paths
 * in paths. */
static kiln_model_parts sd3_parts(char paths[5][4096])
{
    static const char *const files[5] = {TINY("text_encoder/model.safetensors"),
                                         TINY("text_encoder_2/model.safetensors"),
                                         TINY("text_encoder_3/model.safetensors"),
                                         TINY("vae/diffusion_pytorch_model.safetensors"), "sd3/tiny_sd3"};
    for (int i = 0; i < 5; i++) snprintf(paths[i], 4096, "%s", kiln_test_data(files[i]));
    return (kiln_model_parts){.text_encoders = {paths[0], paths[1], paths[2]}, .vae = paths[3], .config = paths[4]};
}

/* Every tensor of the folder is in Stability's single file (text encoders,
 * VAE and all) under the same name, shape and bytes: the fused q/k/v cut
 * into diffusers' projections, the final and last caption modulations'
 * halves swapped, the VAE's original names mapped. make_sd3_single_data.py
 * checked the file against diffusers' own converters. */
static void mmdit_names_read_as_diffusers(void **state)
{
    (void)state;
    kiln_checkpoint *folder, *single;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("sd3/tiny"), &folder));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("sd3/single/sd3.5-tiny.safetensors"), &single));
    size_t compared = 0;
    for (size_t i = 0; i < kiln_checkpoint_count(folder); i++) {
        const char *name;
        const kiln_st_tensor *want = kiln_checkpoint_at(folder, i, &name);
        const kiln_st_tensor *got = kiln_checkpoint_find(single, name);
        if (!got) fail_msg("%s: missing", name);
        assert_int_equal(got->dtype, want->dtype);
        if (got->ndim == want->ndim) /* the VAE's attention projections are 1x1 convolutions in the original */
            for (int d = 0; d < want->ndim; d++) assert_int_equal(got->shape[d], want->shape[d]);
        assert_int_equal(got->nbytes, want->nbytes);
        if (memcmp(got->data, want->data, want->nbytes) != 0) fail_msg("%s: other values", name);
        compared++;
    }
    assert_int_equal(compared, kiln_checkpoint_count(folder));
    assert_int_equal(kiln_checkpoint_count(single), kiln_checkpoint_count(folder));
    kiln_checkpoint_close(single);
    kiln_checkpoint_close(folder);
}

/* Stability's checkpoint with its text encoders, and the SD 3.0 transformer
 * alone with ComfyUI's TripleCLIPLoader and VAELoader files beside it (the
 * head width from the folder given as config: SD 3.0's weights do not show
 * it), run as the folders do. */
static void single_files_run_as_the_folder(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char spiece[4096], parts_paths[5][4096];
    snprintf(spiece, sizeof spiece, "%s", kiln_test_data("spm_tokenizer/spiece.model"));
    const kiln_model_parts tokenizer = {.tokenizer = spiece};
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("sd3/single/sd3.5-tiny.safetensors"), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &tokenizer));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    assert_string_equal(m->info.unet_name, "sd3.5-medium");
    check_runs(m);
    kiln_model_free(m);
    kiln_backend_free(be);

    const kiln_model_parts parts = sd3_parts(parts_paths);
    parity_check_sd3(&(parity_fixture){.path = "sd3/single/sd3-tiny-transformer.safetensors", .tol = TOL,
                                       .parts = &parts},
                     "sd3");

    /* without T5 (sd3_medium_incl_clips' kind): the CLIPs' rows alone, zero-padded to the transformer's width */
    const kiln_model_parts clips = {.text_encoders = {parts_paths[0], parts_paths[1]}, .vae = parts_paths[3],
                                    .config = parts_paths[4]};
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("sd3/single/sd3-tiny-transformer.safetensors"), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &clips));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    assert_null(m->info.t5_name);
    kiln_conditioning pos, neg;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    assert_kiln_ok(kiln_encode_prompt(m, tok, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &neg));
    assert_int_equal(pos.tokens, 77);
    assert_int_equal(pos.dim, 96);
    kiln_st_file *f = golden_open(RUN_GOLDEN); /* the CLIPs' columns of the full conditioning */
    golden want = golden_read(f, "run.context.positive");
    for (int t = 0; t < 77; t++)
        assert_rel_l2_le(pos.data + (size_t)t * 96, want.data + (size_t)t * 96, 96, TOL);
    golden_free(&want);
    kiln_st_close(f);
    kiln_sampling_job job = kiln_test_job("euler", "simple", 2, 2.0f, 42, 8, 6);
    float *latent;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    for (size_t i = 0; i < (size_t)16 * 8 * 6; i++) assert_true(isfinite(latent[i]));
    free(latent);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* LoRAs on SD 3.5's shape (tests/data/sd3/lora, make_sd3_lora_data.py):
 * diffusers' own layout (save_lora_weights, every kind of linear of every
 * block, the last block's caption modulation and the final layer's too)
 * against its own fuse_lora at strengths 1 and 0.5, and sd-scripts' layout
 * in Stability's names (fused q/k/v, alpha) against the merge made in those
 * names and converted by diffusers. */
static void loras_match_upstream(void **state)
{
    (void)state;
    char peft[4096], kohya[4096];
    snprintf(peft, sizeof peft, "%s", kiln_test_data("sd3/lora/peft.safetensors"));
    snprintf(kohya, sizeof kohya, "%s", kiln_test_data("sd3/lora/kohya.safetensors"));
    static const struct {
        const char *file, *golden;
        double strength;
    } cases[] = {{"peft", "peft.out", 1.0}, {"peft", "peft.out_half", 0.5}, {"kohya", "kohya.out", 1.0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const kiln_lora lora = {cases[i].file[0] == 'p' ? peft : kohya, cases[i].strength, cases[i].strength};
        parity_check_sd3_against(&(parity_fixture){.path = "sd3/tiny", .tol = TOL, .loras = &lora, .nloras = 1},
                                 "sd35", "sd3/lora/golden.safetensors", cases[i].golden);
    }
}

/* ComfyUI-GGUF's SD3 file (tests/data/gguf/sd3-tiny-Q8_0.gguf, architecture
 * "sd3", Stability's names bare; its joint blocks' linears in Q8_0, held
 * so) with TripleCLIPLoader's files and the VAE beside it: the transformer
 * against diffusers on the weights gguf-py dequantizes. */
static void gguf_file(void **state)
{
    (void)state;
    char paths[5][4096];
    const kiln_model_parts parts = sd3_parts(paths);
    parity_check_sd3_against(&(parity_fixture){.path = "gguf/sd3-tiny-Q8_0.gguf", .tol = TOL, .parts = &parts},
                             "sd3", "gguf/sd3.golden.safetensors", "sd3.out");
    kiln_checkpoint *ck;
    kiln_model_info info;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("gguf/sd3-tiny-Q8_0.gguf"), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    assert_kiln_ok(kiln_model_inspect(ck, &info));
    assert_string_equal(info.unet_name, "sd3-medium");
    assert_int_equal(info.unet_dtype, KILN_Q8_0);
    kiln_checkpoint_close(ck);
}

/* make_sd3_data.py's run (RUN_PROMPT against "", 4 steps of euler, cfg 2,
 * seed 42, an 8x6 latent) with the ControlNet cn on the picture at 0.8 over
 * the first 60 % (and slg, where given) against golden file c's `name`. */
static void check_controlled_run(kiln_model *m, kiln_controlnet *cn, const kiln_image *picture, kiln_st_file *c,
                                 const kiln_skip_layer_guidance *slg, const char *name)
{
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(m, 12, 16, 1, &empty)); /* the tiny VAE halves a side */
    const kiln_control_apply apply = {cn, picture, 0.8, 0.0, 0.6, NULL, NULL, false};
    const kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler",
                                    .scheduler = "simple", .denoise = 1.0, .control = &apply, .control_count = 1,
                                    .skip_layer_guidance = slg};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    golden want = golden_read(c, name);
    assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
    golden_free(&want);
    kiln_latent_free(&out);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
}

/* The tiny SD 3.5 model on the CPU with the ControlNet at `controlnet` (a
 * path under tests/data). */
static void load_with_controlnet(const char *controlnet, kiln_backend **be, kiln_model **m, kiln_controlnet **cn)
{
    char path[4096];
    assert_kiln_ok(kiln_backend_create("cpu", NULL, be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sd3/tiny"), *be, m));
    snprintf(path, sizeof path, "%s", kiln_test_data(controlnet));
    assert_kiln_ok(kiln_controlnet_load(*m, path, cn));
}

/* An SD3 ControlNet of InstantX's kind (tests/data/sd3/controlnet,
 * make_sd3_controlnet_data.py: diffusers' SD3ControlNetModel of 3 blocks on
 * SD 3.5 Medium's tiny shape): the transformer with its residuals at 0.7
 * against diffusers (blocks 0 and 1 get residuals 0 and 1, the last none),
 * the picture's hint latent (the VAE's mean scaled without the shift, as
 * ComfyUI's SD3 ControlNets take it), and a KSampler run with
 * ControlNetApplyAdvanced (0.8 over the first 60 %) restated from ComfyUI. */
#define CN_DIR "sd3/controlnet"
static void controlnet(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn;
    char path[4096];
    load_with_controlnet(CN_DIR "/instantx", &be, &m, &cn);
    assert_true(cn->flux && cn->flux->trunk.sd3);
    assert_int_equal(cn->flux->trunk.ndouble, 3);

    parity_check_sd3_controlnet(&(parity_fixture){.tol = TOL}, m, cn, CN_DIR "/golden.safetensors");
    kiln_st_file *c = golden_open(CN_DIR "/golden.safetensors");
    golden want;

    kiln_image picture;
    assert_kiln_ok(kiln_image_load(kiln_test_data(CN_DIR "/hint_12x16.png"), &picture));
    float *latent_hint;
    want = golden_read(c, "run.hint_latent");
    assert_kiln_ok(kiln_control_hint(m, cn, &picture, NULL, 8, 6, &latent_hint));
    assert_rel_l2_le(latent_hint, want.data, want.count, TOL);
    free(latent_hint);
    golden_free(&want);

    check_controlled_run(m, cn, &picture, c, NULL, "run.latent_out");
    kiln_st_close(c);

    /* a Flux ControlNet on SD3 */
    kiln_controlnet *flux_cn;
    snprintf(path, sizeof path, "%s", kiln_test_data("flux/controlnet/instantx"));
    assert_int_equal(kiln_controlnet_load(m, path, &flux_cn), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "a Flux ControlNet, for an SD3 transformer"));
    kiln_image_free(&picture);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* Prompts in parts over the sampling (ConditioningSetTimestepRange,
 * ConditioningCombine; make_sd3_prompt_parts_data.py): SD3's example
 * workflows' negative prompt ("" for the first 10 %, zeroed after), and
 * parts meeting at a step's sigma, whose predictions are averaged there,
 * against ComfyUI restated; a step no part holds is refused. */
static void prompt_parts(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sd3/tiny"), be, &m));
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_conditioning pos0, neg0;
    assert_kiln_ok(kiln_conditioning_zero_out(&pos, &pos0));
    assert_kiln_ok(kiln_conditioning_zero_out(&neg, &neg0));
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(m, 12, 16, 1, &empty));
    kiln_st_file *c = golden_open("sd3/prompt_parts.golden.safetensors");
    static const struct {
        const char *golden;
        double pos_split, neg_split; /* the zeroed part from there; pos_split 1: none */
    } runs[] = {{"example.latent_out", 1.0, 0.1}, {"boundary.latent_out", 0.6, 0.5}};
    for (int r = 0; r < 2; r++) {
        const kiln_conditioning_part positive[2] = {{.cond = &pos, .end_percent = 1},
                                                    {.cond = &pos0, .start_percent = runs[r].pos_split, .end_percent = 1}};
        const kiln_conditioning_part negative[2] = {{.cond = &neg, .end_percent = runs[r].neg_split},
                                                    {.cond = &neg0, .start_percent = runs[r].neg_split, .end_percent = 1}};
        const kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler",
                                        .scheduler = "simple", .denoise = 1.0, .positive_parts = positive,
                                        .positive_part_count = runs[r].pos_split < 1 ? 2 : 1,
                                        .negative_parts = negative, .negative_part_count = 2};
        assert_kiln_ok(kiln_ksampler(m, &p, NULL, NULL, &empty, &out));
        golden want = golden_read(c, runs[r].golden);
        assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
        golden_free(&want);
        kiln_latent_free(&out);
    }
    kiln_st_close(c);
    /* the zeroed negative only from 20 %: the first steps have none */
    const kiln_conditioning_part gap = {.cond = &neg0, .start_percent = 0.2, .end_percent = 1};
    const kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler",
                                    .scheduler = "simple", .denoise = 1.0, .negative_parts = &gap,
                                    .negative_part_count = 1};
    assert_int_equal(kiln_ksampler(m, &p, &pos, NULL, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "none of the negative prompt's parts"));
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_conditioning_free(&pos0);
    kiln_conditioning_free(&neg0);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* An SD3 inpainting ControlNet (InstantX's and Alimama's kind: a mask's
 * channel after the latent's; tests/data/sd3/controlnet/inpaint,
 * make_sd3_controlnet_inpaint_data.py): the transformer with its residuals
 * against diffusers, and ControlNetInpaintingAliMamaApply's hint of a
 * picture and a mask restated from ComfyUI. */
static void inpainting_controlnet(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn;
    load_with_controlnet(CN_DIR "/inpaint", &be, &m, &cn);
    assert_true(cn->flux->concat_mask && !cn->flux->stability);
    assert_int_equal(cn->flux->hint_channels, 17);
    parity_check_sd3_controlnet(&(parity_fixture){.tol = TOL}, m, cn, CN_DIR "/inpaint.golden.safetensors");

    kiln_image picture, mask;
    float *hint;
    assert_kiln_ok(kiln_image_load(kiln_test_data(CN_DIR "/hint_12x16.png"), &picture));
    assert_kiln_ok(kiln_image_load(kiln_test_data("flux/controlnet/mask_16x12.png"), &mask));
    assert_kiln_ok(kiln_control_hint(m, cn, &picture, &mask, 8, 6, &hint));
    kiln_st_file *c = golden_open(CN_DIR "/inpaint.golden.safetensors");
    golden want = golden_read(c, "hint_latent");
    assert_rel_l2_le(hint, want.data, want.count, TOL);
    golden_free(&want);
    kiln_st_close(c);
    free(hint);
    kiln_image_free(&picture);
    kiln_image_free(&mask);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* An SD 3.5 ControlNet of Stability's kind (tests/data/sd3/controlnet_sd35,
 * make_sd35_controlnet_data.py: diffusers' SD3ControlNetModel of 2 blocks
 * without a caption side, written in Stability's names, control_type depth),
 * as ComfyUI runs it: ComfyUI's sin-cos positions, the transformer with its
 * residuals at 0.7 (each to 2 blocks, the last block's too) against the
 * ControlNet's blocks in diffusers, the picture's hint latents (depth's and,
 * the type changed, canny's preprocessing, then the VAE's mean shifted and
 * scaled), and KSampler runs with ControlNetApplyAdvanced restated from
 * ComfyUI, with and without SkipLayerGuidanceSD3; a file of the
 * double_y_emb kind is refused by name. */
#define SD35_CN_DIR "sd3/controlnet_sd35"
#define SD35_CN_FILE SD35_CN_DIR "/sd3.5-tiny-controlnet-depth.safetensors"
static void controlnet_of_stability(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn;
    char path[4096];
    snprintf(path, sizeof path, "%s", kiln_test_data(SD35_CN_FILE));
    load_with_controlnet(SD35_CN_FILE, &be, &m, &cn);
    assert_true(cn->flux && cn->flux->stability && cn->flux->trunk.sd3);
    assert_int_equal(cn->flux->trunk.ndouble, 2);
    assert_int_equal(cn->flux->control_type, KILN_SD35_CONTROL_DEPTH);

    kiln_st_file *c = golden_open(SD35_CN_DIR "/golden.safetensors");
    golden want = golden_read(c, "pos");
    float positions[4 * 3 * 32];
    kiln_sd35_control_positions(4, 3, 32, positions);
    assert_rel_l2_le(positions, want.data, want.count, 1e-6);
    golden_free(&want);
    parity_check_sd3_controlnet(&(parity_fixture){.tol = TOL}, m, cn, SD35_CN_DIR "/golden.safetensors");

    kiln_image picture;
    assert_kiln_ok(kiln_image_load(kiln_test_data(CN_DIR "/hint_12x16.png"), &picture));
    static const struct {
        int type;
        const char *name;
    } hints[] = {{KILN_SD35_CONTROL_DEPTH, "run.hint_latent"}, {KILN_SD35_CONTROL_CANNY, "canny.hint_latent"}};
    for (int i = 0; i < 2; i++) {
        float *latent_hint;
        cn->flux->control_type = hints[i].type;
        want = golden_read(c, hints[i].name);
        assert_kiln_ok(kiln_control_hint(m, cn, &picture, NULL, 8, 6, &latent_hint));
        assert_rel_l2_le(latent_hint, want.data, want.count, TOL);
        free(latent_hint);
        golden_free(&want);
    }
    cn->flux->control_type = KILN_SD35_CONTROL_DEPTH;

    check_controlled_run(m, cn, &picture, c, NULL, "run.latent_out");
    /* with SkipLayerGuidanceSD3 beside it: its pass runs the ControlNet too, the skipped block's residual added */
    const int one = 1;
    const kiln_skip_layer_guidance slg = {.double_layers = &one, .double_count = 1, .scale = 3, .end_percent = 0.5};
    check_controlled_run(m, cn, &picture, c, &slg, "slg.latent_out");
    kiln_image_free(&picture);
    kiln_st_close(c);
    kiln_controlnet_free(cn);

    /* ComfyUI's double_y_emb kind: a pooled embedding as wide in as out */
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(path, &f));
    const size_t n = kiln_st_count(f);
    kiln_st_entry *entries = calloc(n, sizeof *entries);
    float *square = calloc(32 * 32, sizeof *square);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        entries[i] = (kiln_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
        if (strcmp(t->name, "time_text_embed.text_embedder.linear_1.weight") == 0)
            entries[i].dtype = KILN_F32, entries[i].shape[1] = 32, entries[i].data = square;
    }
    char copy[] = "/tmp/kiln_sd35_controlnet_XXXXXX";
    int fd = mkstemp(copy);
    assert_true(fd >= 0);
    close(fd);
    assert_kiln_ok(kiln_st_write(copy, entries, n, NULL, 0));
    kiln_st_close(f);
    free(entries);
    free(square);
    assert_int_equal(kiln_controlnet_load(m, copy, &cn), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "(ComfyUI's double_y_emb kind): not yet"));
    unlink(copy);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transformer_matches_diffusers),
        cmocka_unit_test(detected),
        cmocka_unit_test(folder_runs),
        cmocka_unit_test(mmdit_names_read_as_diffusers),
        cmocka_unit_test(single_files_run_as_the_folder),
        cmocka_unit_test(loras_match_upstream),
        cmocka_unit_test(gguf_file),
        cmocka_unit_test(controlnet),
        cmocka_unit_test(prompt_parts),
        cmocka_unit_test(inpainting_controlnet),
        cmocka_unit_test(controlnet_of_stability),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
