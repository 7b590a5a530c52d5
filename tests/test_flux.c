/* FLUX.1 against upstream on tests/data/flux (made by make_flux_data.py
 * with diffusers' FluxTransformer2DModel on a small random model with the
 * dev model's guidance embedding): the packing of latents into patch tokens
 * and back, the whole transformer on two rows, and the FluxPipeline folder
 * as a model: detection, CLIP-L's pooled output, T5's padded ids, and
 * KSampler runs restated from ComfyUI's code (ModelSamplingFlux, CONST):
 * txt2img and img2img. */
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "flux.h"
#include "golden.h"
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

static void folder_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("flux/tiny"), be, &m));
    assert_string_equal(m->info.family, "flux");
    assert_string_equal(m->info.unet_name, "flux-dev");
    assert_int_equal(m->info.prediction, KILN_PREDICTION_FLOW);
    assert_int_equal(kiln_model_latent_channels(m), 16);
    assert_float_equal(m->vae.shift_factor, 0.1159f, 0.0f);
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(RUN_GOLDEN);
    kiln_conditioning pos, neg;
    prompt_encoded(m, tok, f, RUN_PROMPT, "positive", &pos);
    prompt_encoded(m, tok, f, "", "negative", &neg);
    kiln_st_close(f);
    kiln_sampling_job job = {.steps = 4, .cfg = 2.0f, .denoise = 1.0, .seed = 42, .batch = 1, .latent_h = 8,
                             .latent_w = 6, .flux_guidance = 3.5f};
    assert_kiln_ok(kiln_sampler_from_name("euler", &job.sampler));
    assert_kiln_ok(kiln_scheduler_from_name("simple", &job.scheduler));
    parity_check_run(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4);

    /* img2img at denoise 0.6: the LATENT mixed in the flow way */
    f = golden_open(RUN_GOLDEN);
    golden in = golden_read(f, "img2img.latent_in"), want = golden_read(f, "img2img.latent_out");
    job.init_latent = in.data;
    job.denoise = 0.6;
    float *latent;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    free(latent);
    golden_free(&in);
    golden_free(&want);
    kiln_st_close(f);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packing),
        cmocka_unit_test(transformer_matches_diffusers),
        cmocka_unit_test(refusals),
        cmocka_unit_test(folder_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
