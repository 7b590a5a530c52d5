/* FLUX.1 against upstream on tests/data/flux (made by make_flux_data.py
 * with diffusers' FluxTransformer2DModel on a small random model with the
 * dev model's guidance embedding): the packing of latents into patch tokens
 * and back, the whole transformer on two rows, and the FluxPipeline folder
 * as a model: detection, CLIP-L's pooled output, T5's padded ids, and
 * KSampler runs restated from ComfyUI's code (ModelSamplingFlux, CONST):
 * txt2img, img2img and inpainting; the same model as the single files users have
 * (BFL's transformer, ComfyUI's checkpoint, separate text encoders and
 * VAE). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "flux.h"
#include "golden.h"
#include "inpaint.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "sampler.h"
#include "status.h"
#include "tokenizer.h"

#define GOLDEN "flux/golden.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order */

static const int tiny_axes[3] = {4, 6, 6}; /* make_flux_data.py's */

/* diffusers' _pack_latents is kiln_patchify with 2x2 patches, and back. */
static void packing(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    golden sample = golden_read(f, "sample"), packed = golden_read(f, "packed");
    float *got = malloc(packed.count * sizeof *got), *back = malloc(sample.count * sizeof *back);
    kiln_patchify(sample.data, 2, 16, 8, 6, 2, got);
    assert_memory_equal(got, packed.data, packed.count * sizeof *got);
    kiln_unpatchify(got, 2, 16, 8, 6, 2, false, back);
    assert_memory_equal(back, sample.data, sample.count * sizeof *back);
    free(got);
    free(back);
    golden_free(&sample);
    golden_free(&packed);
    kiln_st_close(f);
}

static void transformer_matches_diffusers(void **state)
{
    (void)state;
    parity_check_flux(&(parity_fixture){.tol = TOL}, GOLDEN);
}

/* FluxDisableGuidance (the transformer without a guidance: parity.c's
 * check against tests/data/flux/no_guidance): a KSampler run with the
 * negative prompt's guidance so disabled is another run; Chroma, whose
 * modulation always embeds one, refuses it by name. */
static void guidance_disabled(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/tiny"), NULL, 0, &m));
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red fox", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_sampling_job job = kiln_test_job("euler", "simple", 2, 2.0f, 42, 8, 6);
    float *guided = NULL, *disabled = NULL;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &guided));
    job.negative_flux_guidance = -1.0;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &disabled));
    assert_true(kiln_rel_l2(disabled, guided, 16 * 8 * 6) > 1e-4);
    free(guided), free(disabled);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_model_free(m);
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("chroma/tiny"), NULL, 0, &m));
    assert_kiln_ok(kiln_text_encode(m, "a red fox", 0, &pos));
    job.negative_flux_guidance = 0.0, job.flux_guidance = -1.0;
    assert_refused_naming(kiln_ksample(m, &job, &pos, &pos, &guided), "FluxDisableGuidance on Chroma");
    kiln_conditioning_free(&pos);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_weights *w;
    kiln_flux flux;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/transformer/diffusion_pytorch_model.safetensors"), &ck));
    assert_kiln_ok(kiln_weights_create(be, ck, &w));
    /* FLUX.1's axes do not fit heads 16 wide */
    assert_int_equal(kiln_flux_bind(w, "", NULL, &flux), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "rotary axes 16, 56, 56"));
    assert_int_equal(kiln_flux_bind(w, "transformer", tiny_axes, &flux), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no Flux transformer"));
    kiln_weights_free(w);

    /* an x_embedder of none of FLUX.1's kinds: 100 channels where proj_out gives 64 (Canny/Depth 128, Fill 384) */
    const size_t n = kiln_checkpoint_count(ck);
    kiln_st_entry *entries = calloc(n, sizeof *entries);
    uint16_t *wide = calloc((size_t)32 * 100, sizeof *wide);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &entries[i].name);
        entries[i].dtype = t->dtype;
        entries[i].ndim = t->ndim;
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
        entries[i].data = t->data;
        if (strcmp(entries[i].name, "x_embedder.weight") == 0) entries[i].shape[1] = 100, entries[i].data = wide;
    }
    char path[] = "/tmp/kiln_flux_fill_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_kiln_ok(kiln_st_write(path, entries, n, NULL, 0));
    kiln_checkpoint_close(ck);
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_weights_create(be, ck, &w));
    assert_int_equal(kiln_flux_bind(w, "", tiny_axes, &flux), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "reads 100 channels a token and gives 64: neither"));
    kiln_weights_free(w);
    unlink(path);
    free(wide);
    free(entries);
    kiln_checkpoint_close(ck);
    kiln_backend_free(be);
}

#define RUN_GOLDEN "flux/run.golden.safetensors"
#define RUN_PROMPT "a photograph of an astronaut riding a horse" /* make_flux_data.py's */

static void prompt_encoded(kiln_model *m, const kiln_tokenizer *tok, kiln_st_file *f, const char *text,
                           const char *which, kiln_conditioning *c)
{
    char name[64];
    assert_kiln_ok(kiln_encode_prompt(m, tok, text, 0, c));
    snprintf(name, sizeof name, "run.t5_ids.%s", which);
    golden ids = golden_read(f, name);
    assert_int_equal(c->tokens, (int)ids.count); /* padded to 256 */
    assert_int_equal(c->dim, 64);
    snprintf(name, sizeof name, "run.pooled.%s", which);
    golden pooled = golden_read(f, name);
    assert_int_equal(c->pooled_dim, (int)pooled.count);
    assert_rel_l2_le(c->pooled, pooled.data, pooled.count, TOL);
    golden_free(&ids);
    golden_free(&pooled);
}

/* The run.golden KSampler runs (txt2img, img2img) on m, the tiny model
 * however it was loaded. */
static void check_runs(kiln_model *m)
{
    kiln_tokenizer *tok;
    assert_string_equal(m->info.family, "flux");
    assert_string_equal(m->info.unet_name, "flux-dev");
    assert_int_equal(m->info.prediction, KILN_PREDICTION_FLOW);
    assert_int_equal(kiln_model_latent_channels(m), 16);
    assert_float_equal(m->vae.latents.shift, 0.1159f, 0.0f);
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(RUN_GOLDEN);
    kiln_conditioning pos, neg;
    prompt_encoded(m, tok, f, RUN_PROMPT, "positive", &pos);
    prompt_encoded(m, tok, f, "", "negative", &neg);
    kiln_st_close(f);
    kiln_sampling_job job = kiln_test_job("euler", "simple", 4, 2.0f, 42, 8, 6);
    job.flux_guidance = 3.5f;
    parity_check_run(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4);
    parity_check_img2img(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4); /* the LATENT mixed in the flow way */

    /* FluxGuidance on both prompts: 2.5 on the positive, 5 on the negative (the img2img LATENT is inpainted
       below) */
    f = golden_open(RUN_GOLDEN);
    golden in = golden_read(f, "img2img.latent_in"), want = golden_read(f, "guided.latent_out");
    float *latent;
    job.flux_guidance = 2.5f;
    job.negative_flux_guidance = 5.0f;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    free(latent);
    golden_free(&want);
    job.flux_guidance = 3.5f;
    job.negative_flux_guidance = 0.0f;

    /* the SDE samplers from sigma 1: the pipeline gives them the first sigma ComfyUI puts below it
       (their math is test_schedule's) */
    job.init_latent = NULL;
    job.denoise = 1.0;
    assert_kiln_ok(kiln_sampler_from_name("dpmpp_2m_sde", &job.sampler));
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    for (size_t i = 0; i < (size_t)16 * 8 * 6; i++) assert_true(isfinite(latent[i]));
    free(latent);
    assert_kiln_ok(kiln_sampler_from_name("euler", &job.sampler));

    /* inpainting that LATENT (SetLatentNoiseMask): the kept part renoised the flow way each step */
    golden mask = golden_read(f, "inpaint.mask");
    want = golden_read(f, "inpaint.latent_out");
    kiln_inpaint inpaint = {.latent = in.data, .h = 8, .w = 6, .noise_mask = mask.data, .mask_h = 8, .mask_w = 6,
                            .width = 12, .height = 16};
    job.init_latent = NULL;
    job.inpaint = &inpaint;
    job.denoise = 1.0;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    free(latent);
    golden_free(&mask);
    golden_free(&in);
    golden_free(&want);
    kiln_st_close(f);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
}

/* SkipLayerGuidanceDiT on FLUX.1 (tests/data/flux/make_flux_slg_data.py:
 * ComfyUI's post-CFG function restated around diffusers' blocks, a skipped
 * one passing its streams on): a single block alone, and a double and a
 * single block with rescaling, on the folder's run. SkipLayerGuidanceDiTSimple
 * (make_flux_slg_simple_data.py: the node's calc_cond_batch function
 * restated): the negative prompt's pass without double block 0 and single
 * block 1 from 0 % to 60 %; at cfg 1, where ComfyUI has no negative pass, the
 * plain run to the bit. */
static void skip_layer_guidance(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("flux/tiny"), be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_encode_prompt(m, tok, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &neg));
    static const int first = 0, second = 1;
    const kiln_skip_layer_guidance cases[3] = {
        {.single_layers = &second, .single_count = 1, .scale = 3.0, .start_percent = 0.0, .end_percent = 0.5},
        {.double_layers = &first, .double_count = 1, .single_layers = &first, .single_count = 1, .scale = 2.0,
         .start_percent = 0.1, .end_percent = 0.7, .rescaling_scale = 0.5},
        {.double_layers = &first, .double_count = 1, .single_layers = &second, .single_count = 1,
         .start_percent = 0.0, .end_percent = 0.6, .uncond_only = true}};
    static const char *const keys[3] = {"single.latent_out", "both.latent_out", "simple.latent_out"};
    kiln_st_file *f[2] = {golden_open("flux/slg.golden.safetensors"), golden_open("flux/slg_simple.golden.safetensors")};
    float *latent[5];
    size_t count = 0;
    for (int k = 0; k < 5; k++) { /* the three cases at cfg 2; the Simple one and none at cfg 1 */
        kiln_sampling_job job = kiln_test_job("euler", "simple", 4, k < 3 ? 2.0f : 1.0f, 42, 8, 6);
        job.flux_guidance = 3.5f;
        job.skip_layer_guidance = k < 3 ? &cases[k] : k == 3 ? &cases[2] : NULL;
        assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent[k]));
        if (k >= 3) continue;
        golden want = golden_read(f[k == 2], keys[k]);
        assert_rel_l2_le(latent[k], want.data, want.count, 1e-4);
        count = want.count;
        golden_free(&want);
    }
    assert_memory_equal(latent[3], latent[4], count * sizeof(float));
    for (int k = 0; k < 5; k++) free(latent[k]);
    kiln_st_close(f[0]);
    kiln_st_close(f[1]);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* FLUX.1 Canny/Depth's shape (tests/data/flux/canny, make_flux_canny_data.py):
 * the transformer on a picture's packed latent beside the latent's against
 * diffusers, then a KSampler run with InstructPixToPixConditioning's picture
 * against ComfyUI's concat_cond restated, through the library's call; the
 * picture is refused where it is missing or not of the latent's size. */
static void canny_depth(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, KILN_TEST_DATA "/flux/canny", NULL, 0, &m));
    assert_string_equal(m->info.unet_name, "flux-dev-canny-depth");
    assert_int_equal(m->info.variant, KILN_VARIANT_INSTRUCT_PIX2PIX);
    assert_int_equal(m->flux.in_channels, 128);
    assert_int_equal(m->flux.out_channels, 64);
    kiln_st_file *f = golden_open("flux/canny/golden.safetensors");
    parity_check_flux_out(m, "flux/canny/golden.safetensors", f, "out", TOL);

    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    golden picture = golden_read(f, "run.picture");
    golden want = golden_read(f, "run.latent_out");
    kiln_latent empty, out, edit = {picture.data, 1, 16, 8, 6, NULL, 0, 0, NULL, NULL};
    assert_kiln_ok(kiln_empty_latent(m, 12, 16, 1, &empty)); /* the tiny VAE halves a side: 8x6 */
    kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .edit_latent = &edit, .flux_guidance = 3.5};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
    kiln_latent_free(&out);
    p.edit_latent = NULL;
    assert_int_equal(kiln_ksampler(m, &p, &pos, &neg, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "needs a picture"));
    golden_free(&picture);
    golden_free(&want);
    kiln_st_close(f);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* FLUX.1 Fill's shape (tests/data/flux/fill, make_flux_fill_data.py): the
 * transformer on a latent, a picture's latent and a mask's 64 channels
 * against diffusers; InpaintModelConditioning of a picture and a soft mask
 * (both latents) and a KSampler run with them against ComfyUI's code
 * restated, through the library's calls, also under DifferentialDiffusion;
 * a latent without the grey picture's is refused. */
static void fill(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, KILN_TEST_DATA "/flux/fill", NULL, 0, &m));
    assert_string_equal(m->info.unet_name, "flux-dev-fill");
    assert_string_equal(kiln_model_variant(m), "inpaint");
    kiln_st_file *f = golden_open("flux/fill/golden.safetensors");
    parity_check_flux_out(m, "flux/fill/golden.safetensors", f, "out", TOL);

    kiln_image picture, mask;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/flux/fill/picture_16x16.png", &picture));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/flux/fill/mask_16x16.png", &mask));
    kiln_latent latent, out;
    assert_kiln_ok(kiln_vae_encode_for_inpaint(m, &picture, &mask, &latent));
    golden image_latent = golden_read(f, "run.latent"), concat = golden_read(f, "run.concat");
    assert_non_null(latent.concat);
    assert_rel_l2_le(latent.data, image_latent.data, image_latent.count, TOL);
    assert_rel_l2_le(latent.concat, concat.data, concat.count, TOL);
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    golden want = golden_read(f, "run.latent_out");
    kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .flux_guidance = 3.5};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &latent, &out));
    assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
    kiln_latent_free(&out);
    golden_free(&want);
    /* DifferentialDiffusion at strength 1 and 0.5 */
    static const char *const differential[2] = {"differential.latent_out", "differential_half.latent_out"};
    for (int i = 0; i < 2; i++) {
        want = golden_read(f, differential[i]);
        p.differential_diffusion = i ? 0.5 : 1.0;
        assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &latent, &out));
        assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
        kiln_latent_free(&out);
        golden_free(&want);
    }
    p.differential_diffusion = 0.0;
    want = golden_read(f, "run.latent_out");
    float *kept = latent.concat;
    latent.concat = NULL;
    assert_int_equal(kiln_ksampler(m, &p, &pos, &neg, &latent, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "reads the masked picture beside the latent"));
    latent.concat = kept;
    golden_free(&want), golden_free(&image_latent), golden_free(&concat);
    kiln_st_close(f);
    kiln_latent_free(&latent);
    kiln_image_free(&picture), kiln_image_free(&mask);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void folder_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("flux/tiny"), be, &m));
    check_runs(m);

    /* CLIPTextEncodeFlux: CLIP-L's pooled output of one text, T5's rows of the other */
    kiln_conditioning both, clip_text, t5_text;
    assert_kiln_ok(kiln_text_encode_flux(m, RUN_PROMPT, "a red fox", &both));
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &clip_text));
    assert_kiln_ok(kiln_text_encode(m, "a red fox", 0, &t5_text));
    assert_int_equal(both.pooled_dim, clip_text.pooled_dim);
    assert_memory_equal(both.pooled, clip_text.pooled, (size_t)both.pooled_dim * sizeof(float));
    assert_int_equal(both.tokens, t5_text.tokens);
    assert_memory_equal(both.data, t5_text.data, (size_t)both.tokens * both.dim * sizeof(float));
    assert_memory_not_equal(clip_text.pooled, t5_text.pooled, (size_t)both.pooled_dim * sizeof(float));
    kiln_conditioning_free(&both);
    kiln_conditioning_free(&clip_text);
    kiln_conditioning_free(&t5_text);

    /* T5TokenizerOptions' least length replaces Flux's 256: with (0, 0) T5 reads the prompt's ids alone */
    kiln_st_file *f = golden_open(RUN_GOLDEN);
    golden ids = golden_read(f, "run.t5_ids.positive");
    int unpadded = 0;
    while (unpadded < (int)ids.count && ids.data[unpadded] != 0) unpadded++;
    assert_kiln_ok(kiln_model_set_t5_tokenizer_options(m, 0, 0));
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &t5_text));
    assert_int_equal(t5_text.tokens, unpadded);
    assert_true(unpadded > 1 && unpadded < 256);
    kiln_conditioning_free(&t5_text);
    golden_free(&ids);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- single files (tests/data/flux/make_flux_single_data.py) ---------- */

#define CLIP_L_FILE "tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"
#define T5_FILE "pixart/tiny/text_encoder/model.safetensors"
#define VAE_FILE "flux/tiny/vae/diffusion_pytorch_model.safetensors"

static kiln_checkpoint *open_with_parts(const char *path, const kiln_model_parts *parts)
{
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(path), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, parts));
    return ck;
}

/* Every tensor of the folder's transformer and VAE is in the single file's
 * checkpoint under the same name, shape and bytes: BFL's fused q/k/v and
 * linear1 cut into diffusers' projections, the final modulation's halves
 * swapped, the VAE's original names mapped. The tensors of the single file
 * came through diffusers' converters back to these (make_flux_single_data.py). */
static void bfl_names_read_as_diffusers(void **state)
{
    (void)state;
    kiln_checkpoint *folder, *single;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/tiny"), &folder));
    single = open_with_parts("flux/single/flux1-tiny-comfy.safetensors", NULL);
    size_t compared = 0;
    for (size_t i = 0; i < kiln_checkpoint_count(folder); i++) {
        const char *name;
        const kiln_st_tensor *want = kiln_checkpoint_at(folder, i, &name);
        if (strncmp(name, KILN_FLUX_ROOT ".", strlen(KILN_FLUX_ROOT) + 1) != 0 &&
            strncmp(name, "first_stage_model.", 18) != 0)
            continue;
        const kiln_st_tensor *got = kiln_checkpoint_find(single, name);
        if (!got) fail_msg("%s: missing", name);
        assert_int_equal(got->dtype, want->dtype);
        /* the VAE's attention projections are 1x1 convolutions in the original names */
        if (got->ndim == want->ndim)
            for (int d = 0; d < want->ndim; d++) assert_int_equal(got->shape[d], want->shape[d]);
        assert_int_equal(kiln_st_numel(got), kiln_st_numel(want));
        assert_int_equal(got->nbytes, want->nbytes);
        if (memcmp(got->data, want->data, want->nbytes) != 0) fail_msg("%s: other values", name);
        compared++;
    }
    assert_int_equal(compared, 80 + 120); /* the transformer's tensors and the VAE's */
    kiln_checkpoint_close(single);
    kiln_checkpoint_close(folder);
}

/* BFL's transformer file with ComfyUI's separate CLIP-L, T5 and VAE files
 * (UNETLoader, DualCLIPLoader, VAELoader) gives the folder's runs; so does
 * ComfyUI's checkpoint with its VAE replaced by one under
 * first_stage_model. and an explicit tokenizer (the tokenizer.json ComfyUI
 * ships). */
static void single_files_run_as_the_folder(void **state)
{
    (void)state;
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char clip[4096], t5[4096], vae[4096], config[4096], spiece[4096];
    snprintf(clip, sizeof clip, "%s", kiln_test_data(CLIP_L_FILE));
    snprintf(t5, sizeof t5, "%s", kiln_test_data(T5_FILE));
    snprintf(vae, sizeof vae, "%s", kiln_test_data(VAE_FILE));
    snprintf(config, sizeof config, "%s", kiln_test_data("flux/tiny"));
    /* T5's tokenizer as ComfyUI ships it: the tokenizer.json of the same model */
    snprintf(spiece, sizeof spiece, "%s", kiln_test_data("spm_tokenizer/tokenizer.json"));
    const kiln_model_parts bfl = {.vae = vae, .text_encoders = {t5, clip}, .config = config};
    kiln_model *m;
    assert_kiln_ok(kiln_model_load_checkpoint(open_with_parts("flux/single/flux1-tiny.safetensors", &bfl), be, &m));
    check_runs(m);
    kiln_model_free(m);

    snprintf(vae, sizeof vae, "%s", kiln_test_data("vae_flux/vae.safetensors"));
    const kiln_model_parts comfy = {.vae = vae, .text_encoders = {clip, t5}, .tokenizer = spiece, .config = config};
    assert_kiln_ok(
        kiln_model_load_checkpoint(open_with_parts("flux/single/flux1-tiny-comfy.safetensors", &comfy), be, &m));
    check_runs(m);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- LoRAs (tests/data/flux/make_flux_lora_data.py) ------------------- */

#define LORA_GOLDEN "flux/lora/golden.safetensors"

/* m's transformer on tests/data/flux/golden's inputs against `key`. */
static void check_transformer(const kiln_model *m, const char *key, double tol)
{
    kiln_st_file *l = golden_open(LORA_GOLDEN);
    parity_check_flux_out(m, GOLDEN, l, key, tol);
    kiln_st_close(l);
}

/* kohya's layout (BFL's names: fused q/k/v and linear1 cut into their
 * projections' rows, the final modulation's halves swapped, CLIP-L's
 * lora_te1_) merged into the folder's model and into BFL's single file
 * (whose weights are views and a rearranged copy), PEFT's layout
 * (diffusers' names, also as OneTrainer writes them) and XLabs' (a single
 * block's q/k/v without its MLP rows), against the merges upstream makes. */
static void loras_match_upstream(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_checkpoint *ck;
    kiln_lora_stats stats[1];
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char kohya_path[4096], peft_path[4096];
    snprintf(kohya_path, sizeof kohya_path, "%s", kiln_test_data("flux/lora/kohya.safetensors"));
    snprintf(peft_path, sizeof peft_path, "%s", kiln_test_data("flux/lora/peft.safetensors"));
    const kiln_lora kohya = {kohya_path, 0.8, 0.6}, peft = {peft_path, 1.0, 1.0};

    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/tiny"), &ck));
    assert_kiln_ok(kiln_model_load_with_loras(ck, &kohya, 1, stats, be, &m));
    assert_int_equal(stats[0].unet_modules, 7);
    assert_int_equal(stats[0].clip_modules, 2);
    check_transformer(m, "kohya.out", TOL);
    kiln_tokenizer *tok;
    kiln_conditioning c;
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    assert_kiln_ok(kiln_encode_prompt(m, tok, RUN_PROMPT, 0, &c));
    kiln_st_file *f = golden_open(LORA_GOLDEN);
    golden pooled = golden_read(f, "kohya.pooled");
    assert_rel_l2_le(c.pooled, pooled.data, pooled.count, TOL);
    golden_free(&pooled);
    kiln_st_close(f);
    kiln_conditioning_free(&c);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);

    char clip[4096], t5[4096], vae[4096], config[4096];
    snprintf(clip, sizeof clip, "%s", kiln_test_data(CLIP_L_FILE));
    snprintf(t5, sizeof t5, "%s", kiln_test_data(T5_FILE));
    snprintf(vae, sizeof vae, "%s", kiln_test_data(VAE_FILE));
    snprintf(config, sizeof config, "%s", kiln_test_data("flux/tiny"));
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {clip, t5}, .config = config};
    ck = open_with_parts("flux/single/flux1-tiny.safetensors", &parts);
    assert_kiln_ok(kiln_model_load_with_loras(ck, &kohya, 1, stats, be, &m));
    check_transformer(m, "kohya.out", TOL);
    kiln_model_free(m);

    ck = open_with_parts("flux/single/flux1-tiny.safetensors", &parts);
    assert_kiln_ok(kiln_model_load_with_loras(ck, &peft, 1, stats, be, &m));
    assert_int_equal(stats[0].unet_modules, 4);
    check_transformer(m, "peft.out", TOL);
    kiln_model_free(m);

    /* the same PEFT LoRA in OneTrainer's kohya-style names (lora_transformer_<diffusers name>) */
    char onetrainer_path[4096];
    snprintf(onetrainer_path, sizeof onetrainer_path, "%s", kiln_test_data("flux/lora/onetrainer.safetensors"));
    const kiln_lora onetrainer = {onetrainer_path, 1.0, 1.0};
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/tiny"), &ck));
    assert_kiln_ok(kiln_model_load_with_loras(ck, &onetrainer, 1, stats, be, &m));
    assert_int_equal(stats[0].unet_modules, 4);
    check_transformer(m, "peft.out", TOL);
    kiln_model_free(m);

    char xlabs_path[4096];
    snprintf(xlabs_path, sizeof xlabs_path, "%s", kiln_test_data("flux/lora/xlabs.safetensors"));
    const kiln_lora xlabs = {xlabs_path, 1.0, 1.0};
    ck = open_with_parts("flux/single/flux1-tiny.safetensors", &parts);
    assert_kiln_ok(kiln_model_load_with_loras(ck, &xlabs, 1, stats, be, &m));
    assert_int_equal(stats[0].unet_modules, 6);
    check_transformer(m, "xlabs.out", TOL);
    kiln_model_free(m);

    /* an SD LoRA on Flux names its first module */
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/tiny"), &ck));
    const kiln_lora sd = {kiln_test_data("lora/kohya_ldm.safetensors"), 1.0, 1.0};
    assert_int_equal(kiln_model_load_with_loras(ck, &sd, 1, stats, be, &m), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "lora_"));
    kiln_backend_free(be);
}

/* ComfyUI's scaled fp8 T5 (t5xxl_fp8_e4m3fn_scaled's format) beside BFL's
 * transformer: each fp8 weight times its scale_weight, in f16, gives the
 * T5 of make_flux_fp8_data.py's dequantized weights. */
static void scaled_fp8_text_encoder(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char clip[4096], t5[4096], config[4096];
    snprintf(clip, sizeof clip, "%s", kiln_test_data(CLIP_L_FILE));
    snprintf(t5, sizeof t5, "%s", kiln_test_data("flux/single/t5_fp8_scaled.safetensors"));
    snprintf(config, sizeof config, "%s", kiln_test_data("flux/tiny"));
    const kiln_model_parts parts = {.text_encoders = {clip, t5}, .config = config};
    kiln_checkpoint *ck = open_with_parts("flux/single/flux1-tiny-comfy.safetensors", &parts);
    const kiln_st_tensor *q = kiln_checkpoint_find(ck, KILN_T5_ROOT ".encoder.block.0.layer.0.SelfAttention.q.weight");
    assert_non_null(q);
    assert_int_equal(q->dtype, KILN_F16);
    assert_null(kiln_checkpoint_find(ck, KILN_T5_ROOT ".encoder.block.0.layer.0.SelfAttention.q.scale_weight"));
    assert_null(kiln_checkpoint_find(ck, KILN_T5_ROOT ".scaled_fp8"));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    kiln_st_file *f = golden_open("flux/single/t5_fp8_scaled.golden.safetensors");
    parity_check_t5_ids(m, f, "t5.ids", "t5.out", TOL);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The entries of the safetensors file at `path` (kept open in *f) under
 * `prefix`, appended to entries[*n]; the names are malloc'd. */
static void append_entries(const char *path, const char *prefix, kiln_st_file **f, kiln_st_entry *entries, size_t *n)
{
    assert_kiln_ok(kiln_st_open(path, f));
    for (size_t i = 0; i < kiln_st_count(*f); i++) {
        const kiln_st_tensor *t = kiln_st_at(*f, i);
        kiln_st_entry *e = &entries[(*n)++];
        char *name = malloc(strlen(prefix) + strlen(t->name) + 1);
        sprintf(name, "%s%s", prefix, t->name);
        *e = (kiln_st_entry){.name = name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(e->shape, t->shape, sizeof t->shape);
    }
}

/* ComfyUI's whole Flux checkpoint (as its CheckpointSave writes one): the
 * transformer under model.diffusion_model., the VAE under vae., CLIP-L and
 * T5 under text_encoders.clip_l.transformer. and text_encoders.t5xxl.
 * transformer.; one file, the folder's runs. */
static void comfyui_checkpoint_with_text_encoders(void **state)
{
    (void)state;
    kiln_st_file *files[3];
    kiln_st_entry *entries = calloc(4096, sizeof *entries);
    size_t n = 0;
    append_entries(kiln_test_data("flux/single/flux1-tiny-comfy.safetensors"), "", &files[0], entries, &n);
    append_entries(kiln_test_data(CLIP_L_FILE), "text_encoders.clip_l.transformer.", &files[1], entries, &n);
    append_entries(kiln_test_data(T5_FILE), "text_encoders.t5xxl.transformer.", &files[2], entries, &n);
    char path[] = "/tmp/kiln_flux_comfy_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_kiln_ok(kiln_st_write(path, entries, n, NULL, 0));
    for (size_t i = 0; i < n; i++) free((char *)entries[i].name);
    free(entries);
    for (int i = 0; i < 3; i++) kiln_st_close(files[i]);

    kiln_backend *be;
    kiln_model *m;
    kiln_checkpoint *ck;
    char config[4096];
    snprintf(config, sizeof config, "%s", kiln_test_data("flux/tiny"));
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &(kiln_model_parts){.config = config}));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    check_runs(m);
    kiln_model_free(m);
    kiln_backend_free(be);
    unlink(path);
}

/* What a single file lacks is named, as is a part that does not fit. */
static void single_file_refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m = NULL;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char clip[4096], t5[4096], config[4096];
    snprintf(clip, sizeof clip, "%s", kiln_test_data(CLIP_L_FILE));
    snprintf(t5, sizeof t5, "%s", kiln_test_data(T5_FILE));
    snprintf(config, sizeof config, "%s", kiln_test_data("flux/tiny"));
    static const struct {
        const char *model;
        kiln_model_parts parts;
        kiln_status status;
        const char *says;
    } cases[] = {
        {"flux/single/flux1-tiny-comfy.safetensors", {.config = NULL}, KILN_ERR_MODEL, "gen --text-encoder"},
        {"flux/single/flux1-tiny-comfy.safetensors", {.text_encoders = {NULL}}, KILN_ERR_MODEL, "T5"},
        {"flux/single/flux1-tiny.safetensors", {.text_encoders = {NULL}}, KILN_ERR_MODEL, "gen --vae"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_model_parts parts = cases[i].parts;
        if (i == 0) parts.text_encoders[0] = t5;
        if (i == 2) parts = (kiln_model_parts){.text_encoders = {clip, t5}, .config = config};
        kiln_checkpoint *ck = open_with_parts(cases[i].model, &parts);
        assert_int_equal(kiln_model_load_checkpoint(ck, be, &m), cases[i].status);
        if (!strstr(kiln_last_error(), cases[i].says)) fail_msg("case %zu: %s", i, kiln_last_error());
    }
    /* without a config, FLUX.1's rotary axes, which do not fit the tiny heads */
    kiln_checkpoint *ck = open_with_parts("flux/single/flux1-tiny-comfy.safetensors",
                                          &(kiln_model_parts){.text_encoders = {clip, t5}});
    assert_int_equal(kiln_model_load_checkpoint(ck, be, &m), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "rotary axes 16, 56, 56"));
    /* no tokenizer: single files carry none (tests/data/flux has the tiny config, not a tokenizer) */
    snprintf(config, sizeof config, "%s", kiln_test_data("flux"));
    ck = open_with_parts("flux/single/flux1-tiny-comfy.safetensors",
                         &(kiln_model_parts){.text_encoders = {clip, t5}, .config = config});
    assert_int_equal(kiln_model_load_checkpoint(ck, be, &m), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no T5 tokenizer"));

    kiln_checkpoint_open(kiln_test_data("flux/single/flux1-tiny-comfy.safetensors"), &ck);
    assert_int_equal(kiln_checkpoint_add_parts(ck, &(kiln_model_parts){.vae = clip}), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no VAE in it"));
    kiln_checkpoint_close(ck);
    kiln_checkpoint_open(kiln_test_data("flux/single/flux1-tiny-comfy.safetensors"), &ck);
    const char *vae_file = kiln_test_data(VAE_FILE);
    assert_int_equal(kiln_checkpoint_add_parts(ck, &(kiln_model_parts){.text_encoders = {vae_file}}), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "neither a CLIP text encoder"));
    kiln_checkpoint_close(ck);
    /* a CLIP file beside a PixArt model (beside an SD checkpoint it takes the tower's place), a T5 beside SD */
    kiln_checkpoint_open(kiln_test_data("pixart/tiny"), &ck);
    assert_int_equal(kiln_checkpoint_add_parts(ck, &(kiln_model_parts){.text_encoders = {clip}}), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "beside a Flux or SD3 transformer or an SD UNet"));
    kiln_checkpoint_close(ck);
    kiln_checkpoint_open(kiln_test_data("tiny/sd15_tiny_diffusers"), &ck);
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &(kiln_model_parts){.text_encoders = {clip}}));
    kiln_checkpoint_close(ck);
    kiln_checkpoint_open(kiln_test_data("tiny/sd15_tiny_diffusers"), &ck);
    assert_int_equal(kiln_checkpoint_add_parts(ck, &(kiln_model_parts){.text_encoders = {t5}}), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "PixArt, Flux and SD3 models read"));
    kiln_checkpoint_close(ck);
    kiln_backend_free(be);
}

/* FLUX.1 Kontext's reference latents (flux/kontext.golden, make_flux_kontext_data.py):
 * the transformer with two references after the latent's tokens (the
 * second of odd height, padded circularly; placed beside the first) against
 * diffusers given the same tokens and positions; a KSampler run with a
 * reference on the positive prompt (ReferenceLatent) against ComfyUI's
 * restated; references where they cannot go are refused. */
static void kontext_references(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, KILN_TEST_DATA "/flux/tiny", NULL, 0, &m));
    kiln_st_file *f = golden_open("flux/kontext.golden.safetensors");
    golden packed = golden_read(f, "packed"), context = golden_read(f, "context"), pooled = golden_read(f, "pooled");
    golden t = golden_read(f, "timestep"), guidance = golden_read(f, "guidance");
    golden refs[2] = {golden_read(f, "ref.0"), golden_read(f, "ref.1")};
    const int h[2] = {4, 7}, w[2] = {6, 4}, N = 12, K = 64;
    /* each of FluxKontextMultiReferenceLatentMethod's placements beside the 8x6 latent */
    static const struct {
        kiln_reference_method method;
        const char *key;
        flux_reference second; /* where the second goes: grid, index, offsets */
    } methods[] = {
        {KILN_REFERENCE_OFFSET, "out", {4, 2, 1, 0, 3}}, /* beside the first (6 columns: 3 patches); 7 rows: 4 */
        {KILN_REFERENCE_INDEX, "out.index", {4, 2, 2, 0, 0}},
        {KILN_REFERENCE_UXO, "out.uxo", {4, 2, 0, 6, 6}}, /* past the latent (4, 3) and the first (2, 3) */
    };
    golden want;
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        flux_reference placed[2];
        kiln_flux_place_references(methods[k].method, 8, 6, h, w, 2, placed);
        assert_memory_equal(&placed[1], &methods[k].second, sizeof placed[1]);
        const int R = placed[0].h * placed[0].w + placed[1].h * placed[1].w;
        float *tokens = malloc((size_t)2 * (N + R) * K * sizeof *tokens);
        for (int b = 0; b < 2; b++) {
            float *row = tokens + (size_t)b * (N + R) * K;
            memcpy(row, packed.data + (size_t)b * N * K, (size_t)N * K * sizeof *row);
            row += (size_t)N * K;
            for (int i = 0; i < 2; i++) {
                kiln_flux_pack_reference(refs[i].data + (size_t)b * 16 * h[i] * w[i], 16, h[i], w[i], row);
                row += (size_t)placed[i].h * placed[i].w * K;
            }
        }
        flux_input in = {.rows = 2, .h = 4, .w = 3, .tokens = tokens, .context = context.data,
                         .context_tokens = (int)context.shape[1], .pooled = pooled.data, .timesteps = t.data,
                         .guidance = guidance.data, .refs = placed, .nrefs = 2};
        want = golden_read(f, methods[k].key);
        float *got = malloc(want.count * sizeof *got);
        kiln_graph *g;
        assert_kiln_ok(kiln_graph_create(be, &g));
        assert_kiln_ok(kiln_flux_forward(g, &m->flux, &in, got));
        assert_rel_l2_le(got, want.data, want.count, TOL);
        kiln_graph_free(g);
        free(got);
        free(tokens);
        golden_free(&want);
    }

    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, RUN_PROMPT, 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    golden reference = golden_read(f, "run.reference");
    want = golden_read(f, "run.latent_out");
    kiln_latent empty, out, ref = {reference.data, 1, 16, 8, 6, NULL, 0, 0, NULL, NULL};
    assert_kiln_ok(kiln_empty_latent(m, 12, 16, 1, &empty));
    kiln_ksampler_params p = {.seed = 42, .steps = 4, .cfg = 2.0, .sampler_name = "euler", .scheduler = "simple",
                              .denoise = 1.0, .flux_guidance = 3.5, .reference = &ref};
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
    kiln_latent_free(&out);
    golden_free(&want);
    want = golden_read(f, "run.uxo.latent_out"); /* the reference past the latent */
    p.reference_method = KILN_REFERENCE_UXO;
    assert_kiln_ok(kiln_ksampler(m, &p, &pos, &neg, &empty, &out));
    assert_rel_l2_le(out.data, want.data, want.count, 1e-4);
    kiln_latent_free(&out);
    p.reference_method = KILN_REFERENCE_OFFSET;
    kiln_latent two = {reference.data, 2, 16, 4, 6, NULL, 0, 0, NULL, NULL};
    p.reference = &two;
    assert_int_equal(kiln_ksampler(m, &p, &pos, &neg, &empty, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "reference latent 1: 2 pictures"));

    kiln_model *sd;
    assert_kiln_ok(kiln_model_load(KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", be, &sd));
    kiln_conditioning sd_pos, sd_neg;
    assert_kiln_ok(kiln_text_encode(sd, "a", 0, &sd_pos));
    assert_kiln_ok(kiln_text_encode(sd, "", 0, &sd_neg));
    kiln_latent sd_empty;
    assert_kiln_ok(kiln_empty_latent(sd, 16, 16, 1, &sd_empty));
    kiln_latent sd_ref = {reference.data, 1, 4, 2, 2, NULL, 0, 0, NULL, NULL};
    kiln_ksampler_params q = {.seed = 1, .steps = 1, .cfg = 1.0, .sampler_name = "euler", .scheduler = "normal",
                              .denoise = 1.0, .reference = &sd_ref};
    assert_int_equal(kiln_ksampler(sd, &q, &sd_pos, &sd_neg, &sd_empty, &out), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "are for a Flux model's conditioning"));
    kiln_latent_free(&sd_empty);
    kiln_conditioning_free(&sd_pos);
    kiln_conditioning_free(&sd_neg);
    kiln_model_free(sd);

    golden_free(&reference);
    golden_free(&want);
    for (int i = 0; i < 2; i++) golden_free(&refs[i]);
    golden_free(&packed);
    golden_free(&context);
    golden_free(&pooled);
    golden_free(&t);
    golden_free(&guidance);
    kiln_st_close(f);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packing),
        cmocka_unit_test(transformer_matches_diffusers),
        cmocka_unit_test(guidance_disabled),
        cmocka_unit_test(refusals),
        cmocka_unit_test(folder_run), cmocka_unit_test(canny_depth), cmocka_unit_test(fill),
        cmocka_unit_test(bfl_names_read_as_diffusers),
        cmocka_unit_test(single_files_run_as_the_folder),
        cmocka_unit_test(comfyui_checkpoint_with_text_encoders),
        cmocka_unit_test(single_file_refusals),
        cmocka_unit_test(loras_match_upstream),
        cmocka_unit_test(scaled_fp8_text_encoder),
        cmocka_unit_test(kontext_references),
        cmocka_unit_test(skip_layer_guidance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
