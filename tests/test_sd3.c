/* SD3 against upstream on tests/data/sd3 (made by make_sd3_data.py with
 * diffusers' SD3Transformer2DModel on small random models): the transformer
 * of SD 3.5 Medium's shape (q/k norms, a dual-attention block, the last
 * block reading the caption only) and of SD 3.0's (neither norms nor dual
 * attention) on two rows, and the StableDiffusion3Pipeline folder as a
 * model: detection, ComfyUI's SD3ClipModel conditioning (CLIP-L and bigG at
 * their penultimate layers, T5 padded to 77, the pooled outputs) and
 * KSampler runs restated from ComfyUI's code (ModelSamplingDiscreteFlow,
 * shift 3, CONST): txt2img and img2img. */
#include <math.h>
#include <stdio.h>
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
        assert_float_equal(m->vae.scaling_factor, 1.5305f, 0.0f);
        assert_float_equal(m->vae.shift_factor, 0.0609f, 0.0f);
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

static void folder_runs(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sd3/tiny"), be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_st_file *f = golden_open(RUN_GOLDEN);
    kiln_conditioning pos, neg;
    prompt_encoded(m, tok, f, RUN_PROMPT, "positive", &pos);
    prompt_encoded(m, tok, f, "", "negative", &neg);

    kiln_sampling_job job = {.steps = 4, .cfg = 2.0f, .denoise = 1.0, .seed = 42, .batch = 1, .latent_h = 8,
                             .latent_w = 6};
    assert_kiln_ok(kiln_sampler_from_name("euler", &job.sampler));
    assert_kiln_ok(kiln_scheduler_from_name("simple", &job.scheduler));
    parity_check_run(m, &job, &pos, &neg, RUN_GOLDEN, 1e-4);

    /* img2img at denoise 0.6: the LATENT mixed in the flow way */
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
        cmocka_unit_test(transformer_matches_diffusers),
        cmocka_unit_test(detected),
        cmocka_unit_test(folder_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
