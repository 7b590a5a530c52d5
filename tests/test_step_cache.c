/* EasyCache and LazyCache against ComfyUI's nodes restated on upstream
 * diffusers' models (tests/data/step_cache): whole KSampler runs of the tiny
 * SD 1.x model (both prompts in one call: EasyCache measures the negative's
 * rows) and of the tiny Chroma (the prompts apart: the positive's), the
 * steps skipped and the final latents; the plain runs beside them; the
 * range's ends; refusals. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "parity.h"
#include "pipeline.h"
#include "sampler.h"

#define GOLDEN "step_cache/step_cache.safetensors"

static int skipped_in(kiln_st_file *f, const char *run)
{
    golden g = golden_field(f, run, "skipped");
    int n = 0;
    for (size_t i = 0; i < g.count; i++) n += g.data[i] != 0.0f;
    golden_free(&g);
    return n;
}

static kiln_step_cache settings_of(kiln_st_file *f, const char *run, kiln_step_cache_kind kind)
{
    golden g = golden_field(f, run, "settings");
    const kiln_step_cache s = {kind, g.data[0], g.data[1], g.data[2]};
    golden_free(&g);
    return s;
}

/* m sampled as the golden's run (`cache` NULL: the plain one) against its
 * latent, and the steps skipped against its. */
static void check_run(kiln_model *m, kiln_sampling_job job, const kiln_conditioning *pos,
                      const kiln_conditioning *neg, kiln_st_file *f, const char *run, const kiln_step_cache *cache)
{
    int skipped = -1;
    job.step_cache = cache;
    job.steps_skipped = &skipped;
    float *latent = NULL;
    assert_kiln_ok(kiln_ksample(m, &job, pos, neg, &latent));
    golden want = golden_field(f, run, "latent_out");
    const double err = kiln_rel_l2(latent, want.data, want.count);
    print_message("  %s: %d steps skipped, latent rel L2 %.2g\n", run, skipped, err);
    assert_true(err <= 1e-4);
    assert_int_equal(skipped, cache ? skipped_in(f, run) : 0);
    free(latent);
    golden_free(&want);
}

static void sd_runs_match_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_st_file *f = golden_open(GOLDEN);
    golden gp = golden_read(f, "sd.positive"), gn = golden_read(f, "sd.negative");
    const kiln_conditioning pos = {gp.data, 77, 32, NULL, 0}, neg = {gn.data, 77, 32, NULL, 0};
    kiln_sampling_job job = kiln_test_job("euler", "normal", 12, 5.0f, 42, 16, 24);
    check_run(m, job, &pos, &neg, f, "sd.plain", NULL);
    const kiln_step_cache easy = settings_of(f, "sd.easy", KILN_EASY_CACHE);
    const kiln_step_cache lazy = settings_of(f, "sd.lazy", KILN_LAZY_CACHE);
    check_run(m, job, &pos, &neg, f, "sd.easy", &easy);
    check_run(m, job, &pos, &neg, f, "sd.lazy", &lazy);

    /* a range that ends before it starts skips nothing, to the bit */
    const kiln_step_cache empty = {KILN_EASY_CACHE, 3.0, 0.5, 0.5};
    float *plain = NULL, *none = NULL;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &plain));
    job.step_cache = &empty;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &none));
    assert_memory_equal(plain, none, (size_t)4 * 16 * 24 * sizeof *plain);
    free(plain);
    free(none);

    /* what it does not run with */
    const kiln_sag sag = {0.5, 2.0};
    job.step_cache = &easy;
    job.sag = &sag;
    float *latent = NULL;
    assert_int_equal(kiln_ksample(m, &job, &pos, &neg, &latent), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "EasyCache with SelfAttentionGuidance"));
    job.sag = NULL;
    job.pag_scale = 2.0f;
    assert_int_equal(kiln_ksample(m, &job, &pos, &neg, &latent), KILN_ERR_UNSUPPORTED);
    job.step_cache = &lazy; /* LazyCache skips the pass with the step */
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    free(latent);
    job.pag_scale = 0.0f;
    const kiln_step_cache wrong = {KILN_LAZY_CACHE, 3.5, 0.1, 0.9};
    job.step_cache = &wrong;
    assert_int_equal(kiln_ksample(m, &job, &pos, &neg, &latent), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "reuse_threshold 3.5"));
    golden_free(&gp);
    golden_free(&gn);
    kiln_st_close(f);
    kiln_test_close_model(be, m);
}

static void chroma_runs_match_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("chroma/tiny"), be, &m));
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a photograph of an astronaut riding a horse", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_st_file *f = golden_open(GOLDEN);
    kiln_sampling_job job = kiln_test_job("euler", "simple", 10, 2.0f, 42, 8, 6);
    check_run(m, job, &pos, &neg, f, "chroma.plain", NULL);
    const kiln_step_cache easy = settings_of(f, "chroma.easy", KILN_EASY_CACHE);
    check_run(m, job, &pos, &neg, f, "chroma.easy", &easy);
    kiln_st_close(f);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sd_runs_match_comfyui),
        cmocka_unit_test(chroma_runs_match_comfyui),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
