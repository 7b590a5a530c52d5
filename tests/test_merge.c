/* Model merging at load (ModelMergeSimple, ModelMergeAdd,
 * ModelMergeSubtract, CLIPMergeSimple, ModelMergeBlocks): the tiny SD 1.x model merged with a
 * second one (its weights changed by a fixed rule) against a checkpoint
 * merged here by hand in float64 with ComfyUI's formulas, through a KSampler
 * run or the text encoder; ModelMergeFlux1's blocks on BFL's file;
 * refusals. */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "merge.h"
#include "model.h"
#include "pipeline.h"
#include "safetensors.h"
#include "sampler.h"
#include "tiny_variants.h"

#define TINY "tiny/sd15_tiny_ldm_fp32.safetensors"

static char dir[] = "/tmp/kiln_merge_XXXXXX";
static const char *other;

static bool diffusion(const char *name) { return strncmp(name, "model.diffusion_model.", 22) == 0; }
static bool text(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, "cond_stage_model.", 17) == 0 && !(n > 13 && strcmp(name + n - 13, ".position_ids") == 0);
}

/* The ratio of a tensor in the case at hand: ComfyUI's ModelMergeBlocks
 * rule (the longest prefix of its name under the UNet's root, else the
 * first block's) where the case has blocks. */
static const kiln_merge *current;
/* ... or the attention multiplies' factor of the projection the name is of:
 * the UNet's self- and cross-attention, the text encoder's */
static const kiln_attention_multiply *current_attention[3];

static double attention_factor(const char *name)
{
    static const char *const projections[3][4] = {{".attn1.to_q.", ".attn1.to_k.", ".attn1.to_v.", ".attn1.to_out.0."},
                                                  {".attn2.to_q.", ".attn2.to_k.", ".attn2.to_v.", ".attn2.to_out.0."},
                                                  {".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj.",
                                                   ".self_attn.out_proj."}};
    for (int a = 0; a < 3; a++) {
        const kiln_attention_multiply *m = current_attention[a];
        const double factors[4] = {m ? m->q : 1, m ? m->k : 1, m ? m->v : 1, m ? m->out : 1};
        for (int p = 0; p < 4; p++)
            if (strstr(name, projections[a][p]) && (a == 2 ? text(name) : diffusion(name))) return factors[p];
    }
    return 1.0;
}

static bool attention(const char *name) { return attention_factor(name) != 1.0; }

static double ratio_for(const char *name)
{
    if (!current) return attention_factor(name);
    if (!current->nblocks) return current->ratio;
    const char *rel = name + strlen("model.diffusion_model.");
    double ratio = current->blocks[0].ratio;
    size_t longest = 0;
    for (int i = 0; i < current->nblocks; i++) {
        size_t n = strlen(current->blocks[i].prefix);
        if (n > longest && strncmp(rel, current->blocks[i].prefix, n) == 0) ratio = current->blocks[i].ratio, longest = n;
    }
    return ratio;
}

/* The tiny checkpoint with each float32 tensor that `pick` takes set to
 * fn(a, b) of its own value a and the second model's b (tiny_other_model's);
 * written to `path`. */
static void write_model(const char *path, bool (*pick)(const char *), double (*fn)(double, double, double))
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(kiln_test_data(TINY), &f));
    const size_t n = kiln_st_count(f);
    kiln_st_entry *e = calloc(n, sizeof *e);
    float **owned = calloc(n, sizeof *owned);
    assert_non_null(e), assert_non_null(owned);
    for (size_t k = 0; k < n; k++) {
        const kiln_st_tensor *t = kiln_st_at(f, k);
        e[k] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[k].shape, t->shape, sizeof e[k].shape);
        if (t->dtype != KILN_F32 || !pick(t->name)) continue;
        const size_t count = (size_t)kiln_st_numel(t);
        assert_non_null(owned[k] = malloc(count * sizeof(float)));
        const float *a = t->data;
        const double r = ratio_for(t->name);
        for (size_t i = 0; i < count; i++) owned[k][i] = (float)fn(a[i], tiny_other_weight(a[i], i), r);
        e[k].data = owned[k];
    }
    assert_kiln_ok(kiln_st_write(path, e, n, NULL, 0));
    for (size_t k = 0; k < n; k++) free(owned[k]);
    free(owned);
    free(e);
    kiln_st_close(f);
}

static double simple(double a, double b, double r) { return a * r + b * (1.0 - r); }
static double add(double a, double b, double r) { (void)r; return a + b; }
static double subtract(double a, double b, double r) { return (a - b) * r; }
static double scaled(double a, double b, double r) { (void)b; return (float)a * (float)r; }

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    other = tiny_other_model();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A 2-step KSampler run's latent and the prompt's conditioning. */
static void run(kiln_model *m, float **latent, kiln_conditioning *cond)
{
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, cond));
    kiln_conditioning neg;
    assert_kiln_ok(kiln_text_encode(m, "", 0, &neg));
    kiln_sampling_job job = kiln_test_job("euler", "normal", 2, 5.0f, 3, 8, 8);
    assert_kiln_ok(kiln_ksample(m, &job, cond, &neg, latent));
    kiln_conditioning_free(&neg);
}

static void merges_match_by_hand(void **state)
{
    (void)state;
    static const kiln_merge_block blocks[3] = {{"input", 0.2}, {"middle", 0.6}, {"out", 0.9}};
    static const struct {
        const char *name;
        kiln_merge_kind kind;
        double ratio;
        bool text_encoders;
        double (*fn)(double, double, double);
        int nblocks;
    } cases[] = {
        {"ModelMergeSimple 0.3", KILN_MERGE_SIMPLE, 0.3, false, simple, 0},
        {"ModelMergeAdd", KILN_MERGE_ADD, 0.0, false, add, 0},
        {"ModelMergeSubtract 0.7", KILN_MERGE_SUBTRACT, 0.7, false, subtract, 0},
        {"CLIPMergeSimple 0.4", KILN_MERGE_SIMPLE, 0.4, true, simple, 0},
        {"ModelMergeBlocks 0.2, 0.6, 0.9", KILN_MERGE_SIMPLE, 0.0, false, simple, 3},
    };
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_open("cpu", NULL, &be));
    kiln_model *plain;
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data(TINY), NULL, 0, &plain));
    float *plain_latent;
    kiln_conditioning plain_cond;
    run(plain, &plain_latent, &plain_cond);
    const size_t n = 4 * 8 * 8, ctx = (size_t)plain_cond.tokens * plain_cond.dim;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char want_path[4300];
        snprintf(want_path, sizeof want_path, "%s/want%zu.safetensors", dir, k);
        const kiln_merge merge = {.path = other, .kind = cases[k].kind, .ratio = cases[k].ratio,
                                  .text_encoders = cases[k].text_encoders, .blocks = cases[k].nblocks ? blocks : NULL,
                                  .nblocks = cases[k].nblocks};
        current = &merge;
        write_model(want_path, cases[k].text_encoders ? text : diffusion, cases[k].fn);
        const kiln_model_parts parts = {.merges = &merge, .nmerges = 1};
        kiln_model *merged, *want;
        assert_kiln_ok(kiln_checkpoint_load_parts(be, kiln_test_data(TINY), &parts, NULL, 0, &merged));
        assert_kiln_ok(kiln_checkpoint_load(be, want_path, NULL, 0, &want));
        float *have_latent, *want_latent;
        kiln_conditioning have_cond, want_cond;
        run(merged, &have_latent, &have_cond);
        run(want, &want_latent, &want_cond);
        const double latent_err = kiln_rel_l2(have_latent, want_latent, n),
                     cond_err = kiln_rel_l2(have_cond.data, want_cond.data, ctx);
        print_message("  %s: latent rel L2 %.2g, conditioning %.2g from the hand-merged model's (%.2g and %.2g from "
                      "the unmerged)\n", cases[k].name, latent_err, cond_err,
                      kiln_rel_l2(have_latent, plain_latent, n), kiln_rel_l2(have_cond.data, plain_cond.data, ctx));
        assert_true(latent_err <= 1e-5 && cond_err <= 1e-6);
        /* what the merge leaves is the unmerged model's, to the bit */
        if (!cases[k].text_encoders) assert_memory_equal(have_cond.data, plain_cond.data, ctx * sizeof(float));
        else assert_true(kiln_rel_l2(have_cond.data, plain_cond.data, ctx) > 1e-3);
        if (!cases[k].text_encoders) assert_true(kiln_rel_l2(have_latent, plain_latent, n) > 1e-3);
        free(have_latent), free(want_latent);
        kiln_conditioning_free(&have_cond), kiln_conditioning_free(&want_cond);
        kiln_model_free(merged);
        kiln_model_free(want);
    }
    free(plain_latent);
    kiln_conditioning_free(&plain_cond);
    kiln_model_free(plain);
    kiln_backend_free(be);
}

/* UNetSelfAttentionMultiply, UNetCrossAttentionMultiply and
 * CLIPAttentionMultiply: the tiny model's projections scaled by hand in
 * float32 give the same conditioning and run to the bit; a factor out of
 * range is refused by name. */
static void attention_multiplies(void **state)
{
    (void)state;
    const kiln_attention_multiply self = {0.5, 1.2, 0.8, 1.5}, cross = {1.0, 0.7, 1.3, 0.9}, clip = {1.1, 0.6, 1.0, 1.4};
    current = NULL, current_attention[0] = &self, current_attention[1] = &cross, current_attention[2] = &clip;
    char want_path[4300];
    snprintf(want_path, sizeof want_path, "%s/attention.safetensors", dir);
    write_model(want_path, attention, scaled);
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_open("cpu", NULL, &be));
    const kiln_model_parts parts = {.self_attention = &self, .cross_attention = &cross, .clip_attention = &clip};
    kiln_model *scaled_model, *want, *plain;
    assert_kiln_ok(kiln_checkpoint_load_parts(be, kiln_test_data(TINY), &parts, NULL, 0, &scaled_model));
    assert_kiln_ok(kiln_checkpoint_load(be, want_path, NULL, 0, &want));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data(TINY), NULL, 0, &plain));
    float *have_latent, *want_latent, *plain_latent;
    kiln_conditioning have_cond, want_cond, plain_cond;
    run(scaled_model, &have_latent, &have_cond);
    run(want, &want_latent, &want_cond);
    run(plain, &plain_latent, &plain_cond);
    print_message("  self and cross attention multiplied: rel L2 %.2g from the hand-scaled model's (%.2g from the "
                  "plain)\n", kiln_rel_l2(have_latent, want_latent, 4 * 8 * 8),
                  kiln_rel_l2(have_latent, plain_latent, 4 * 8 * 8));
    assert_memory_equal(have_latent, want_latent, 4 * 8 * 8 * sizeof(float));
    assert_true(kiln_rel_l2(have_latent, plain_latent, 4 * 8 * 8) > 1e-3);
    const size_t cond_floats = (size_t)want_cond.tokens * want_cond.dim;
    assert_memory_equal(have_cond.data, want_cond.data, cond_floats * sizeof(float));
    print_message("  the text encoder's attention multiplied: the conditioning %.2g from the plain one's\n",
                  kiln_rel_l2(have_cond.data, plain_cond.data, cond_floats));
    assert_true(kiln_rel_l2(have_cond.data, plain_cond.data, cond_floats) > 1e-3);
    free(have_latent), free(want_latent), free(plain_latent);
    kiln_conditioning_free(&have_cond), kiln_conditioning_free(&want_cond), kiln_conditioning_free(&plain_cond);
    kiln_model_free(scaled_model), kiln_model_free(want), kiln_model_free(plain);
    const kiln_attention_multiply wide = {1, 1, 11, 1};
    const kiln_model_parts wide_parts = {.cross_attention = &wide};
    kiln_model *m = NULL;
    assert_int_equal(kiln_checkpoint_load_parts(be, kiln_test_data(TINY), &wide_parts, NULL, 0, &m),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "attn2 multiply: v 11"));
    kiln_backend_free(be);
}

/* FLUX.1's single file with every weight's sign flipped (written to path):
 * a second model whose merge with the first shows each tensor's ratio. */
static void write_negated_flux(const char *from, const char *path)
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(from, &f));
    const size_t n = kiln_st_count(f);
    kiln_st_entry *e = calloc(n, sizeof *e);
    char **owned = calloc(n, sizeof *owned);
    assert_non_null(e), assert_non_null(owned);
    for (size_t k = 0; k < n; k++) {
        const kiln_st_tensor *t = kiln_st_at(f, k);
        assert_true(t->dtype == KILN_F32 || t->dtype == KILN_F16 || t->dtype == KILN_BF16);
        const size_t size = kiln_dtype_size(t->dtype);
        assert_non_null(owned[k] = malloc(t->nbytes));
        memcpy(owned[k], t->data, t->nbytes);
        for (size_t i = size - 1; i < t->nbytes; i += size) owned[k][i] ^= (char)0x80; /* little-endian sign bit */
        e[k] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, owned[k]};
        memcpy(e[k].shape, t->shape, sizeof e[k].shape);
    }
    assert_kiln_ok(kiln_st_write(path, e, n, NULL, 0));
    for (size_t k = 0; k < n; k++) free(owned[k]);
    free(owned);
    free(e);
    kiln_st_close(f);
}

/* ModelMergeFlux1's blocks on FLUX.1's single file, BFL's names: each
 * transformer tensor (diffusers' name, the rows of BFL's fused tensors)
 * merged at the ratio its block in BFL's names has, by a table written
 * here from the two layouts' block names (the double blocks are
 * transformer_blocks, the single blocks single_transformer_blocks, the final
 * layer norm_out and proj_out); with a model whose weights are the first's
 * negated, a r - a (1 - r) in float32, stored as the file stores it. A DiT
 * from a diffusers folder is refused by name. */
static void dit_merged_by_original_blocks(void **state)
{
    (void)state;
    char path[4096], negated[4300];
    snprintf(path, sizeof path, "%s", kiln_test_data("flux/single/flux1-tiny.safetensors"));
    snprintf(negated, sizeof negated, "%s/negated_flux.safetensors", dir);
    write_negated_flux(path, negated);
    static const kiln_merge_block blocks[] = {{"img_in.", 0.2}, {"double_blocks.0.", 0.7}, {"single_blocks.", 0.4},
                                              {"final_layer.", 0.9}, {"txt_in.", 0.35}};
    static const struct { const char *prefix; double ratio; } by_hand[] = {
        {"transformer.x_embedder.", 0.2}, {"transformer.transformer_blocks.0.", 0.7},
        {"transformer.single_transformer_blocks.", 0.4}, {"transformer.norm_out.", 0.9},
        {"transformer.proj_out.", 0.9}, {"transformer.context_embedder.", 0.35}};
    const kiln_merge merge = {.path = negated, .kind = KILN_MERGE_SIMPLE, .blocks = blocks,
                              .nblocks = sizeof blocks / sizeof *blocks};
    kiln_checkpoint *ck, *plain;
    int merged;
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_checkpoint_open(path, &plain));
    assert_kiln_ok(kiln_checkpoint_merge(ck, &merge, &merged));
    int seen[6] = {0}, checked = 0;
    for (size_t i = 0; i < kiln_checkpoint_count(ck); i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name), *a = kiln_checkpoint_find(plain, name);
        double r = 0.2; /* the first block's: time_in, guidance_in, vector_in, double block 1 */
        for (size_t k = 0; k < sizeof by_hand / sizeof *by_hand; k++)
            if (strncmp(name, by_hand[k].prefix, strlen(by_hand[k].prefix)) == 0) r = by_hand[k].ratio, seen[k]++;
        const size_t count = (size_t)kiln_st_numel(a);
        float *x = malloc(count * sizeof *x), *want = malloc(count * sizeof *want), *have = malloc(count * sizeof *have);
        void *stored = malloc(t->nbytes);
        assert_non_null(x), assert_non_null(want), assert_non_null(have), assert_non_null(stored);
        kiln_convert_to_f32(x, a->data, a->dtype, count);
        for (size_t j = 0; j < count; j++) want[j] = x[j] * (float)r + (float)(1.0 - r) * -x[j];
        kiln_convert_from_f32(stored, want, a->dtype, count);
        kiln_convert_to_f32(want, stored, a->dtype, count);
        kiln_convert_to_f32(have, t->data, t->dtype, count);
        if (memcmp(have, want, count * sizeof *have) != 0) fail_msg("%s: not merged at ratio %g", name, r);
        checked++;
        free(x), free(want), free(have), free(stored);
    }
    print_message("  ModelMergeFlux1 on BFL's file: %d of %d tensors merged, each at its block's ratio\n", merged,
                  checked);
    assert_int_equal(merged, checked);
    for (size_t k = 0; k < sizeof by_hand / sizeof *by_hand; k++) assert_true(seen[k] > 0);
    kiln_checkpoint_close(plain);
    kiln_checkpoint_close(ck);
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/tiny"), &ck));
    const kiln_merge folder_merge = {.path = kiln_test_data("flux/tiny"), .kind = KILN_MERGE_SIMPLE, .blocks = blocks,
                                     .nblocks = 1};
    assert_int_equal(kiln_checkpoint_merge(ck, &folder_merge, &merged), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "from its original single file, not a diffusers folder"));
    kiln_checkpoint_close(ck);
}

/* Another family's model, a missing file and a ratio out of range are
 * refused by name. */
static void refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_open("cpu", NULL, &be));
    kiln_model *m = NULL;
    char flux_path[4096]; /* kiln_test_data's buffer is the next call's */
    snprintf(flux_path, sizeof flux_path, "%s", kiln_test_data("flux/single/flux1-tiny.safetensors"));
    const kiln_merge flux = {.path = flux_path, .kind = KILN_MERGE_SIMPLE, .ratio = 0.5};
    const kiln_model_parts parts = {.merges = &flux, .nmerges = 1};
    assert_int_equal(kiln_checkpoint_load_parts(be, kiln_test_data(TINY), &parts, NULL, 0, &m), KILN_ERR_MODEL);
    print_message("  %s\n", kiln_last_error());
    assert_non_null(strstr(kiln_last_error(), "no diffusion model tensor in common"));
    const kiln_merge missing = {.path = "/nonexistent/model.safetensors", .kind = KILN_MERGE_ADD},
                     wide = {.path = other, .kind = KILN_MERGE_SUBTRACT, .ratio = 11.0};
    const kiln_model_parts missing_parts = {.merges = &missing, .nmerges = 1}, wide_parts = {.merges = &wide, .nmerges = 1};
    assert_int_not_equal(kiln_checkpoint_load_parts(be, kiln_test_data(TINY), &missing_parts, NULL, 0, &m), KILN_OK);
    assert_non_null(strstr(kiln_last_error(), "/nonexistent/model.safetensors"));
    assert_int_equal(kiln_checkpoint_load_parts(be, kiln_test_data(TINY), &wide_parts, NULL, 0, &m),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "multiplier 11"));
    assert_null(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_match_by_hand),
        cmocka_unit_test(attention_multiplies),
        cmocka_unit_test(dit_merged_by_original_blocks),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
