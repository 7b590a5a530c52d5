/* kiln-shapes, the embedded default model: its pictures show what their
 * prompts ask for, and kiln computes what diffusers computes on it.
 *
 * - The image analysis (tests/support/shape_analysis.c) reads 40 rendered
 *   training scenes exactly as tools/train/analyze.py does.
 * - 25 fixed (prompt, seed) pairs spanning shapes, colours, backgrounds,
 *   positions and sizes are generated on the CPU backend and analysed: at
 *   least 90% must show everything their prompt names.
 * - For three pairs, kiln's final latent matches diffusers' on the same
 *   checkpoint, noise and settings (relative L2 <= 1e-4). */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "image.h"
#include "json_data.h"
#include "pipeline.h"
#include "shape_analysis.h"
#include "tokenizer.h"

static const char *json_field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void analysis_matches_python(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("kiln_shapes/analysis_fixtures.safetensors");
    golden images = golden_read(f, "images");
    cJSON *expected = cJSON_Parse(kiln_st_metadata(f, "expected"));
    assert_non_null(expected);
    int n = (int)images.shape[0], agree = 0;
    for (int i = 0; i < n; i++) {
        kiln_image img;
        assert_kiln_ok(kiln_image_alloc(&img, 64, 64));
        for (int p = 0; p < 64 * 64 * 3; p++) img.pixels[p] = (uint8_t)images.data[(size_t)i * 64 * 64 * 3 + p];
        const cJSON *e = cJSON_GetArrayItem(expected, i);
        shape_scene want = {json_field(e, "shape"), json_field(e, "colour"), json_field(e, "background"),
                            json_field(e, "position"), json_field(e, "size")};
        shape_scene found = shape_analyze(&img);
        char why[256];
        if (shape_agrees(&want, &found, why, sizeof why) && (want.shape != NULL) == (found.shape != NULL))
            agree++;
        else
            print_error("fixture %d: C analysis differs from Python: %s\n", i, why);
        kiln_image_free(&img);
    }
    assert_int_equal(agree, n);
    cJSON_Delete(expected);
    golden_free(&images);
    kiln_st_close(f);
}

/* ---- generating with the embedded model ---- */

static kiln_backend *backend;
static kiln_model *model;
static kiln_tokenizer *tokenizer;

static int setup(void **state)
{
    (void)state;
    /* KILN_SHAPES_MODEL evaluates a retrained checkpoint before it is embedded */
    const char *candidate = getenv("KILN_SHAPES_MODEL");
    if (kiln_backend_cpu_create(NULL, &backend) != KILN_OK || kiln_tokenizer_create(&tokenizer) != KILN_OK ||
        (candidate ? kiln_model_load(candidate, backend, &model) : kiln_model_load_default(backend, &model)) != KILN_OK) {
        print_error("cannot load the embedded model: %s\n", kiln_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_model_free(model);
    kiln_tokenizer_free(tokenizer);
    kiln_backend_free(backend);
    return 0;
}

/* What gen does for one image with the model's defaults: euler/normal, 20
 * steps, cfg 7, empty negative prompt, 64x64. Returns the unscaled latent
 * and the picture. */
static void generate(const char *prompt, uint64_t seed, float **latent, kiln_image *img)
{
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_encode_prompt(model, tokenizer, prompt, 1, &pos));
    assert_kiln_ok(kiln_encode_prompt(model, tokenizer, "", 1, &neg));
    kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 20,
                             .cfg = 7.0f, .denoise = 1.0, .seed = seed, .batch = 1, .latent_h = 8, .latent_w = 8};
    float *decoded;
    assert_kiln_ok(kiln_ksample(model, &job, &pos, &neg, latent));
    assert_kiln_ok(kiln_vae_decode_latent(model, *latent, 1, 8, 8, &decoded));
    assert_kiln_ok(kiln_image_from_decoded(decoded, 64, 64, img));
    free(decoded);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
}

/* tools/train/analyze.py's eval_cases(): 24 full captions cycling shapes,
 * colours, backgrounds, positions and sizes (seeds 1000..1023), and the
 * README's short prompt (seed 42). */
#define EVAL_CASES 25

typedef struct eval_case {
    shape_scene want;
    char prompt[160];
    uint64_t seed;
} eval_case;

static void eval_cases(eval_case *cases)
{
    static const char *const shapes[3] = {"circle", "square", "triangle"};
    static const char *const positions[5] = {"top left", "top right", "bottom left", "bottom right", "center"};
    static const char *const sizes[2] = {"small", "large"};
    for (int i = 0; i < 24; i++) {
        const char *colour = shape_colour_names[i % 4], *others[3];
        for (int c = 0, k = 0; c < SHAPE_COLOURS; c++)
            if (c != i % 4) others[k++] = shape_colour_names[c];
        eval_case *e = &cases[i];
        e->want = (shape_scene){shapes[i % 3], colour, others[(i / 4) % 3], positions[i % 5], sizes[(i / 3) % 2]};
        char where[40];
        if (strcmp(e->want.position, "center") == 0) snprintf(where, sizeof where, "in the center");
        else snprintf(where, sizeof where, "at the %s", e->want.position);
        snprintf(e->prompt, sizeof e->prompt, "a %s %s %s %s on a %s background", e->want.size, colour, e->want.shape,
                 where, e->want.background);
        e->seed = 1000 + (uint64_t)i;
    }
    cases[24] = (eval_case){{"circle", "red", "blue", NULL, NULL}, "a red circle on a blue background", 42};
}

/* The bar: 90% of pairs agree on everything their prompt names
 * (shape, colour, background, and position and size where named). */
static void pictures_follow_prompts(void **state)
{
    (void)state;
    eval_case cases[EVAL_CASES];
    eval_cases(cases);
    int agree = 0;
    for (int i = 0; i < EVAL_CASES; i++) {
        float *latent;
        kiln_image img;
        generate(cases[i].prompt, cases[i].seed, &latent, &img);
        shape_scene found = shape_analyze(&img);
        char why[256];
        bool ok = shape_agrees(&cases[i].want, &found, why, sizeof why);
        agree += ok;
        print_message("  %-4s seed %-5llu %-62s %s\n", ok ? "ok" : "MISS", (unsigned long long)cases[i].seed,
                      cases[i].prompt, why);
        free(latent);
        kiln_image_free(&img);
    }
    print_message("  %d/%d pictures agree with their prompts\n", agree, EVAL_CASES);
    assert_true(agree * 10 >= EVAL_CASES * 9);
}

/* diffusers on the same f16 checkpoint (tools/train/make_goldens.py): the
 * conditionings, and the final latent from the same seed. */
static void matches_diffusers(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("kiln_shapes/parity.safetensors");
    cJSON *prompts = cJSON_Parse(kiln_st_metadata(f, "prompts")), *seeds = cJSON_Parse(kiln_st_metadata(f, "seeds"));
    assert_non_null(prompts);
    assert_non_null(seeds);
    golden uncond = golden_read(f, "uncond");
    kiln_conditioning empty;
    assert_kiln_ok(kiln_encode_prompt(model, tokenizer, "", 1, &empty));
    assert_rel_l2_le(empty.data, uncond.data, uncond.count, 1e-4);
    for (int p = 0; p < cJSON_GetArraySize(prompts); p++) {
        const char *prompt = cJSON_GetArrayItem(prompts, p)->valuestring;
        uint64_t seed = (uint64_t)cJSON_GetArrayItem(seeds, p)->valuedouble;
        char name[64];
        snprintf(name, sizeof name, "p%d.cond", p);
        golden cond = golden_read(f, name);
        snprintf(name, sizeof name, "p%d.latent_out", p);
        golden want = golden_read(f, name);
        kiln_conditioning c;
        assert_kiln_ok(kiln_encode_prompt(model, tokenizer, prompt, 1, &c));
        print_message("  %s\n", prompt);
        assert_rel_l2_le(c.data, cond.data, cond.count, 1e-4);
        float *latent;
        kiln_image img;
        generate(prompt, seed, &latent, &img);
        assert_rel_l2_le(latent, want.data, want.count, 1e-4);
        free(latent);
        kiln_image_free(&img);
        kiln_conditioning_free(&c);
        golden_free(&cond);
        golden_free(&want);
    }
    kiln_conditioning_free(&empty);
    golden_free(&uncond);
    cJSON_Delete(prompts);
    cJSON_Delete(seeds);
    kiln_st_close(f);
}

int main(void)
{
    const struct CMUnitTest analysis[] = {
        cmocka_unit_test(analysis_matches_python),
    };
    const struct CMUnitTest generation[] = {
        cmocka_unit_test(matches_diffusers),
        cmocka_unit_test(pictures_follow_prompts),
    };
    int failed = cmocka_run_group_tests(analysis, NULL, NULL);
    return failed + cmocka_run_group_tests(generation, setup, teardown);
}
