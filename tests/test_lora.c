/* LoRA merging on the tiny SD 1.x model.
 *
 * Against upstream: tests/data/lora holds LoRA files in kohya's layout (with
 * diffusers and with original block names, LoRA and LoCon modules) and in
 * diffusers' own, and what diffusers computes with each fused at strength
 * 0.75 (make_lora_data.py): CLIP and UNet outputs, every UNet block's. LoHa,
 * which diffusers does not load, against a float64 loop of LyCORIS's formula; LoKr,
 * DoRA and Tucker cores against ComfyUI's merges restated in torch.
 * Then separate strengths, stacking, and the files kiln must refuse. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "checkpoint.h"
#include "golden.h"
#include "lora.h"
#include "parity.h"
#include "safetensors.h"
#include "tensor.h"

#define STRENGTH 0.75 /* make_lora_data.py's */
#define TOL_F32 1e-4  /* as test_parity_tiny: the same math in f32, summed in another order */
#define TOL_F16 1e-2  /* as test_parity_tiny: f16 weights (the merged ones rounded to f16 too) */

#define SINGLE_F32 KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors"
#define SINGLE_F16 KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors"
#define DIFFUSERS_F32 KILN_TEST_DATA "/tiny/sd15_tiny_diffusers"

static void check_lora(const char *model, double tol, const char *file, double unet_strength, double clip_strength,
                       const char *unet_golden, const char *clip_golden)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lora/%s.safetensors", KILN_TEST_DATA, file);
    kiln_lora lora = {path, unet_strength, clip_strength};
    parity_fixture fx = {.path = model, .tol = tol, .loras = &lora, .nloras = 1};
    parity_check_clip(&fx, clip_golden);
    parity_check_unet(&fx, unet_golden);
}

static void kohya_locon_single_f32(void **s)
{
    (void)s;
    check_lora(SINGLE_F32, TOL_F32, "kohya_locon", STRENGTH, STRENGTH, "lora/kohya_locon.golden.safetensors",
               "lora/kohya_locon.golden.safetensors");
}

/* the UNet's diffusers names mapped through the folder's layout */
static void kohya_locon_diffusers_folder(void **s)
{
    (void)s;
    check_lora(DIFFUSERS_F32, TOL_F32, "kohya_locon", STRENGTH, STRENGTH, "lora/kohya_locon.golden.safetensors",
               "lora/kohya_locon.golden.safetensors");
}

static void kohya_locon_single_f16(void **s)
{
    (void)s;
    check_lora(SINGLE_F16, TOL_F16, "kohya_locon", STRENGTH, STRENGTH, "lora/kohya_locon.golden.safetensors",
               "lora/kohya_locon.golden.safetensors");
}

static void kohya_original_block_names(void **s)
{
    (void)s;
    check_lora(SINGLE_F32, TOL_F32, "kohya_ldm", STRENGTH, STRENGTH, "lora/kohya_ldm.golden.safetensors",
               "lora/kohya_ldm.golden.safetensors");
}

static void diffusers_layout(void **s)
{
    (void)s;
    check_lora(SINGLE_F32, TOL_F32, "diffusers", STRENGTH, STRENGTH, "lora/diffusers.golden.safetensors",
               "lora/diffusers.golden.safetensors");
}

/* strength_clip 0 leaves the text encoder as it was: the plain model's golden */
static void strengths_apart(void **s)
{
    (void)s;
    check_lora(SINGLE_F32, TOL_F32, "kohya_locon", STRENGTH, 0.0, "lora/kohya_locon.golden.safetensors",
               "tiny/clip_text.safetensors");
}

/* two halves stacked are the whole: the second merges into the first's result */
static void stacked(void **s)
{
    (void)s;
    const kiln_lora half = {KILN_TEST_DATA "/lora/kohya_locon.safetensors", STRENGTH / 2, STRENGTH / 2};
    const kiln_lora twice[2] = {half, half};
    parity_fixture fx = {.path = SINGLE_F32, .tol = TOL_F32, .loras = twice, .nloras = 2};
    parity_check_clip(&fx, "lora/kohya_locon.golden.safetensors");
    parity_check_unet(&fx, "lora/kohya_locon.golden.safetensors");
}

/* ---- LoRA files written by the tests -------------------------------------- */

typedef struct scratch {
    char dir[64], path[128];
} scratch;

static void scratch_open(scratch *sc)
{
    snprintf(sc->dir, sizeof sc->dir, "/tmp/kiln_lora_XXXXXX");
    assert_non_null(mkdtemp(sc->dir));
    snprintf(sc->path, sizeof sc->path, "%s/lora.safetensors", sc->dir);
}

static void scratch_close(scratch *sc)
{
    unlink(sc->path);
    rmdir(sc->dir);
}

/* Deterministic values in [-0.5, 0.5). */
static float *random_matrix(int64_t n, uint32_t seed)
{
    float *m = malloc((size_t)n * sizeof *m);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        m[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return m;
}

/* One LoHa module: (w1_a @ w1_b) ⊙ (w2_a @ w2_b), each b flattened (r, C·kh·kw). */
typedef struct loha_case {
    const char *module, *target;
    int64_t out, in, r1, r2;
} loha_case;

static void loha_matches_float64(void **s)
{
    (void)s;
    static const loha_case cases[] = {
        {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
         "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 32, 32, 2, 3},
        {"lora_unet_down_blocks_0_resnets_0_conv1", "model.diffusion_model.input_blocks.1.0.in_layers.2.weight", 32,
         32 * 9, 4, 4},
        {"lora_te_text_model_encoder_layers_1_mlp_fc2",
         "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight", 32, 37, 3, 2},
    };
    const int ncases = (int)(sizeof cases / sizeof *cases);
    const float alpha = 1.5f;
    const double unet_strength = 0.6, clip_strength = -0.8;
    scratch sc;
    scratch_open(&sc);
    kiln_st_entry entries[5 * 3];
    char names[5 * 3][160];
    float *factors[4 * 3];
    int n = 0;
    for (int c = 0; c < ncases; c++) {
        const loha_case *k = &cases[c];
        static const char *const parts[] = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"};
        int64_t shapes[4][2] = {{k->out, k->r1}, {k->r1, k->in}, {k->out, k->r2}, {k->r2, k->in}};
        for (int p = 0; p < 4; p++) {
            factors[4 * c + p] = random_matrix(shapes[p][0] * shapes[p][1], (uint32_t)(11 * c + p + 1));
            snprintf(names[n], sizeof names[n], "%s.%s", k->module, parts[p]);
            entries[n] = (kiln_st_entry){names[n], KILN_F32, 2, {shapes[p][0], shapes[p][1]}, factors[4 * c + p]};
            n++;
        }
        snprintf(names[n], sizeof names[n], "%s.alpha", k->module);
        entries[n] = (kiln_st_entry){names[n], KILN_F32, 0, {0}, &alpha};
        n++;
    }
    assert_kiln_ok(kiln_st_write(sc.path, entries, (size_t)n, NULL, 0));

    kiln_checkpoint *plain, *merged;
    assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &plain));
    assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &merged));
    kiln_lora lora = {sc.path, unet_strength, clip_strength};
    kiln_lora_stats stats;
    assert_kiln_ok(kiln_lora_merge(merged, lora_towers_of(merged), &lora, &stats));
    assert_int_equal(stats.unet_modules, 2);
    assert_int_equal(stats.clip_modules, 1);
    for (int c = 0; c < ncases; c++) {
        const loha_case *k = &cases[c];
        const kiln_st_tensor *w0 = kiln_checkpoint_find(plain, k->target), *w1 = kiln_checkpoint_find(merged, k->target);
        assert_non_null(w0);
        assert_non_null(w1);
        assert_int_equal(w1->dtype, KILN_F32);
        const float *a1 = factors[4 * c], *b1 = factors[4 * c + 1], *a2 = factors[4 * c + 2], *b2 = factors[4 * c + 3];
        double scale = (c == 2 ? clip_strength : unet_strength) * alpha / (double)k->r1, err = 0, norm = 0;
        for (int64_t o = 0; o < k->out; o++)
            for (int64_t i = 0; i < k->in; i++) {
                double p1 = 0, p2 = 0;
                for (int64_t j = 0; j < k->r1; j++) p1 += (double)a1[o * k->r1 + j] * b1[j * k->in + i];
                for (int64_t j = 0; j < k->r2; j++) p2 += (double)a2[o * k->r2 + j] * b2[j * k->in + i];
                double want = ((const float *)w0->data)[o * k->in + i] + scale * p1 * p2;
                double got = ((const float *)w1->data)[o * k->in + i];
                err += (got - want) * (got - want);
                norm += want * want;
            }
        if (!(sqrt(err / norm) <= 1e-6)) fail_msg("%s: relative L2 %.3g > 1e-6", k->target, sqrt(err / norm));
    }
    /* a weight no module names is the file's own */
    const char *other = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight";
    const kiln_st_tensor *o0 = kiln_checkpoint_find(plain, other), *o1 = kiln_checkpoint_find(merged, other);
    assert_int_equal(o0->nbytes, o1->nbytes);
    assert_memory_equal(o0->data, o1->data, o0->nbytes);
    for (int i = 0; i < 4 * ncases; i++) free(factors[i]);
    kiln_checkpoint_close(plain);
    kiln_checkpoint_close(merged);
    scratch_close(&sc);
}

/* One module spelled as each writer spells it changes the same weight alike. */
static void every_layout_names_the_same_weight(void **s)
{
    (void)s;
    static const char *const spellings[][3] = {
        {"lora_unet_output_blocks_4_1_proj_out.lora_down.weight", "lora_unet_output_blocks_4_1_proj_out.lora_up.weight",
         "lora_unet_output_blocks_4_1_proj_out.alpha"},
        {"lora_unet_up_blocks_1_attentions_1_proj_out.lora_down.weight",
         "lora_unet_up_blocks_1_attentions_1_proj_out.lora_up.weight", "lora_unet_up_blocks_1_attentions_1_proj_out.alpha"},
        {"unet.up_blocks.1.attentions.1.proj_out.lora_A.weight", "unet.up_blocks.1.attentions.1.proj_out.lora_B.weight",
         "unet.up_blocks.1.attentions.1.proj_out.alpha"},
        {"unet.up_blocks.1.attentions.1.proj_out.lora.down.weight", "unet.up_blocks.1.attentions.1.proj_out.lora.up.weight",
         "unet.up_blocks.1.attentions.1.proj_out.alpha"},
        {"diffusion_model.output_blocks.4.1.proj_out.lora_down.weight",
         "diffusion_model.output_blocks.4.1.proj_out.lora_up.weight", "diffusion_model.output_blocks.4.1.proj_out.alpha"},
    };
    const char *target = "model.diffusion_model.output_blocks.4.1.proj_out.weight";
    float *down = random_matrix(2 * 32, 5), *up = random_matrix(32 * 2, 6), alpha = 3.0f;
    float *first = NULL;
    for (size_t k = 0; k < sizeof spellings / sizeof *spellings; k++) {
        scratch sc;
        scratch_open(&sc);
        kiln_st_entry e[3] = {{spellings[k][0], KILN_F32, 4, {2, 32, 1, 1}, down},
                              {spellings[k][1], KILN_F32, 4, {32, 2, 1, 1}, up},
                              {spellings[k][2], KILN_F32, 0, {0}, &alpha}};
        assert_kiln_ok(kiln_st_write(sc.path, e, 3, NULL, 0));
        kiln_checkpoint *ck;
        assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &ck));
        kiln_lora lora = {sc.path, 1.0, 1.0};
        kiln_lora_stats stats;
        assert_kiln_ok(kiln_lora_merge(ck, lora_towers_of(ck), &lora, &stats));
        assert_int_equal(stats.unet_modules, 1);
        const kiln_st_tensor *w = kiln_checkpoint_find(ck, target);
        if (!first) {
            first = malloc(w->nbytes);
            memcpy(first, w->data, w->nbytes);
            /* the update is there: element (0, 0) of up (32, 2) @ down (2, 32) times alpha/rank 1.5 */
            double update = 1.5 * ((double)up[0] * down[0] + (double)up[1] * down[32]);
            kiln_checkpoint *plain;
            assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &plain));
            double before = ((const float *)kiln_checkpoint_find(plain, target)->data)[0];
            assert_float_equal(((const float *)w->data)[0], before + update, 1e-6);
            kiln_checkpoint_close(plain);
        } else if (memcmp(first, w->data, w->nbytes) != 0) {
            fail_msg("%s changes %s otherwise than %s", spellings[k][0], target, spellings[0][0]);
        }
        kiln_checkpoint_close(ck);
        scratch_close(&sc);
    }
    free(first);
    free(down);
    free(up);
}

/* ---- refusals ---------------------------------------------------------------- */

/* Writes the tensors, merges the file into the tiny model and expects `code`
 * with a message holding `needle`. */
static void expect_refusal(const kiln_st_entry *entries, size_t n, kiln_status code, const char *needle)
{
    scratch sc;
    scratch_open(&sc);
    assert_kiln_ok(kiln_st_write(sc.path, entries, n, NULL, 0));
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &ck));
    kiln_lora lora = {sc.path, 1.0, 1.0};
    kiln_lora_stats stats;
    kiln_status st = kiln_lora_merge(ck, lora_towers_of(ck), &lora, &stats);
    print_message("  refused: %s\n", kiln_last_error());
    assert_int_equal(st, code);
    if (!strstr(kiln_last_error(), needle)) fail_msg("'%s' does not mention '%s'", kiln_last_error(), needle);
    kiln_checkpoint_close(ck);
    scratch_close(&sc);
}

#define TO_Q "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"

static void refuses_other_base_models(void **s)
{
    (void)s;
    static float down[4 * 768], up[32 * 4], one = 1.0f;
    /* SD 1.x's 768-wide text context given to a 32-wide layer */
    kiln_st_entry wrong_shape[] = {{TO_Q ".lora_down.weight", KILN_F32, 2, {4, 768}, down},
                                   {TO_Q ".lora_up.weight", KILN_F32, 2, {32, 4}, up}};
    expect_refusal(wrong_shape, 2, KILN_ERR_MODEL, TO_Q "' makes a 32x768 update");
    /* a block the model does not have */
    kiln_st_entry no_such_block[] = {
        {"lora_unet_down_blocks_3_attentions_0_proj_in.lora_down.weight", KILN_F32, 2, {4, 32}, down},
        {"lora_unet_down_blocks_3_attentions_0_proj_in.lora_up.weight", KILN_F32, 2, {32, 4}, up}};
    expect_refusal(no_such_block, 2, KILN_ERR_MODEL, "lora_unet_down_blocks_3_attentions_0_proj_in");
    /* SDXL's second text encoder */
    kiln_st_entry sdxl[] = {
        {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", KILN_F32, 2, {4, 32}, down},
        {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", KILN_F32, 2, {32, 4}, up},
        {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.alpha", KILN_F32, 0, {0}, &one}};
    expect_refusal(sdxl, 3, KILN_ERR_MODEL, "lora_te2_text_model_encoder_layers_0_self_attn_q_proj");
}

static void refuses_broken_files(void **s)
{
    (void)s;
    static float down[4 * 32], up[32 * 4], two[2];
    kiln_st_entry no_up[] = {{TO_Q ".lora_down.weight", KILN_F32, 2, {4, 32}, down}};
    expect_refusal(no_up, 1, KILN_ERR_FORMAT, "lacks its up");
    kiln_st_entry rank_mismatch[] = {{TO_Q ".lora_down.weight", KILN_F32, 2, {4, 32}, down},
                                     {TO_Q ".lora_up.weight", KILN_F32, 2, {32, 2}, up}};
    expect_refusal(rank_mismatch, 2, KILN_ERR_FORMAT, "do not chain");
    kiln_st_entry alpha_pair[] = {{TO_Q ".lora_down.weight", KILN_F32, 2, {4, 32}, down},
                                  {TO_Q ".lora_up.weight", KILN_F32, 2, {32, 4}, up},
                                  {TO_Q ".alpha", KILN_F32, 1, {2}, two}};
    expect_refusal(alpha_pair, 3, KILN_ERR_FORMAT, TO_Q ".alpha' is not one float");
    kiln_st_entry stray[] = {{"lora_unet_conv_in.weight", KILN_F32, 2, {4, 32}, down}};
    expect_refusal(stray, 1, KILN_ERR_FORMAT, "'lora_unet_conv_in.weight' is no part of a LoRA");
}

static void refuses_module_kinds_it_cannot_merge(void **s)
{
    (void)s;
    static float w[32 * 32];
    kiln_st_entry set[] = {{TO_Q ".set_weight", KILN_F32, 2, {32, 32}, w}};
    expect_refusal(set, 1, KILN_ERR_UNSUPPORTED, "set-weight");
    kiln_st_entry alone[] = {{TO_Q ".alpha", KILN_F32, 0, {0}, w}};
    expect_refusal(alone, 1, KILN_ERR_FORMAT, "nothing to merge");
    kiln_st_entry wrong[] = {{TO_Q ".diff", KILN_F32, 2, {32, 31}, w}};
    expect_refusal(wrong, 1, KILN_ERR_MODEL, "a LoRA for another base model?");
}

/* Differences added as they are (ComfyUI's "diff" patches): LyCORIS' full
 * module (diff and diff_b) on a linear, a norm layer's (w_norm, b_norm) on a
 * resnet's group norm, a LoRA with a bias difference, a text-encoder full
 * module at its own strength; against a float64 loop of weight + strength *
 * difference (no alpha, as ComfyUI). */
static void differences_add_as_they_are(void **s)
{
    (void)s;
    static const struct {
        const char *module, *part, *target;
        int64_t rows, cols;
        bool clip;
    } diffs[] = {
        {TO_Q, "diff", "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 32, 32, false},
        {"lora_unet_down_blocks_0_resnets_0_norm1", "w_norm", "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
         32, 1, false},
        {"lora_unet_down_blocks_0_resnets_0_norm1", "b_norm", "model.diffusion_model.input_blocks.1.0.in_layers.0.bias",
         32, 1, false},
        {"lora_unet_down_blocks_0_attentions_0_proj_out", "diff_b", "model.diffusion_model.input_blocks.1.1.proj_out.bias",
         32, 1, false},
        {"lora_te_text_model_encoder_layers_1_mlp_fc2", "diff",
         "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight", 32, 37, true},
        {"lora_te_text_model_encoder_layers_1_mlp_fc2", "diff_b",
         "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.bias", 32, 1, true},
    };
    const int ndiffs = (int)(sizeof diffs / sizeof *diffs);
    const double unet_strength = 0.6, clip_strength = -1.3;
    static float alpha = 2.0f;
    float *values[8], *up = random_matrix(32 * 2, 90), *down = random_matrix(2 * 32, 91);
    kiln_st_entry entries[8 + 3];
    char names[8 + 3][160];
    int n = 0;
    for (int i = 0; i < ndiffs; i++) {
        values[i] = random_matrix(diffs[i].rows * diffs[i].cols, (uint32_t)(70 + i));
        snprintf(names[n], sizeof names[n], "%s.%s", diffs[i].module, diffs[i].part);
        const bool vector = diffs[i].cols == 1;
        entries[n] = (kiln_st_entry){names[n], KILN_F32, vector ? 1 : 2, {diffs[i].rows, diffs[i].cols}, values[i]};
        n++;
    }
    /* the proj_out LoRA beside its bias difference (a 1x1 convolution in the tiny model) */
    snprintf(names[n], sizeof names[n], "lora_unet_down_blocks_0_attentions_0_proj_out.lora_up.weight");
    entries[n++] = (kiln_st_entry){names[n - 1], KILN_F32, 4, {32, 2, 1, 1}, up};
    snprintf(names[n], sizeof names[n], "lora_unet_down_blocks_0_attentions_0_proj_out.lora_down.weight");
    entries[n++] = (kiln_st_entry){names[n - 1], KILN_F32, 4, {2, 32, 1, 1}, down};
    snprintf(names[n], sizeof names[n], "lora_unet_down_blocks_0_attentions_0_proj_out.alpha");
    entries[n++] = (kiln_st_entry){names[n - 1], KILN_F32, 0, {0}, &alpha};
    scratch sc;
    scratch_open(&sc);
    assert_kiln_ok(kiln_st_write(sc.path, entries, (size_t)n, NULL, 0));
    kiln_checkpoint *plain, *merged;
    assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &plain));
    assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &merged));
    kiln_lora lora = {sc.path, unet_strength, clip_strength};
    kiln_lora_stats stats;
    assert_kiln_ok(kiln_lora_merge(merged, lora_towers_of(merged), &lora, &stats));
    assert_int_equal(stats.unet_modules, 3);
    assert_int_equal(stats.clip_modules, 1);
    for (int i = 0; i < ndiffs; i++) {
        const kiln_st_tensor *w0 = kiln_checkpoint_find(plain, diffs[i].target);
        const kiln_st_tensor *w1 = kiln_checkpoint_find(merged, diffs[i].target);
        assert_non_null(w1);
        const double strength = diffs[i].clip ? clip_strength : unet_strength;
        for (int64_t j = 0; j < diffs[i].rows * diffs[i].cols; j++) {
            const double want = ((const float *)w0->data)[j] + strength * values[i][j];
            assert_float_equal(((const float *)w1->data)[j], want, 1e-6);
        }
    }
    /* the LoRA's own update went into proj_out's weight: element (0, 0), alpha / rank 1 */
    const char *proj = "model.diffusion_model.input_blocks.1.1.proj_out.weight";
    const double before = ((const float *)kiln_checkpoint_find(plain, proj)->data)[0];
    const double update = unet_strength * ((double)up[0] * down[0] + (double)up[1] * down[32]);
    assert_float_equal(((const float *)kiln_checkpoint_find(merged, proj)->data)[0], before + update, 1e-6);
    kiln_lora_info info;
    assert_kiln_ok(kiln_lora_inspect(sc.path, &info));
    assert_int_equal(info.full, 3);
    assert_int_equal(info.lora, 1);
    assert_int_equal(info.bias, 3);
    for (int i = 0; i < ndiffs; i++) free(values[i]);
    free(up);
    free(down);
    kiln_checkpoint_close(plain);
    kiln_checkpoint_close(merged);
    scratch_close(&sc);
}

/* A LoKr module short of a side, a LoKr of shapes that do not chain, DoRA
 * magnitudes of the wrong count: refused naming the module. */
static void refuses_broken_lokr_and_dora(void **s)
{
    (void)s;
    static float w[32 * 37];
    kiln_st_entry half[] = {{TO_Q ".lokr_w1", KILN_F32, 2, {4, 4}, w}};
    expect_refusal(half, 1, KILN_ERR_FORMAT, "lacks its LoKr w2");
    kiln_st_entry unchained[] = {{TO_Q ".lokr_w1", KILN_F32, 2, {4, 4}, w}, {TO_Q ".lokr_w2_a", KILN_F32, 2, {8, 2}, w},
                                 {TO_Q ".lokr_w2_b", KILN_F32, 2, {3, 8}, w}};
    expect_refusal(unchained, 3, KILN_ERR_FORMAT, "do not chain");
    kiln_st_entry dora[] = {{TO_Q ".lora_down.weight", KILN_F32, 2, {4, 32}, w},
                            {TO_Q ".lora_up.weight", KILN_F32, 2, {32, 4}, w},
                            {TO_Q ".dora_scale", KILN_F32, 2, {31, 1}, w}};
    expect_refusal(dora, 3, KILN_ERR_FORMAT, "dora_scale of 31 values");
    kiln_st_entry core[] = {{TO_Q ".lora_down.weight", KILN_F32, 2, {4, 32}, w},
                            {TO_Q ".lora_up.weight", KILN_F32, 2, {32, 4}, w},
                            {TO_Q ".lora_mid.weight", KILN_F32, 4, {4, 3, 1, 1}, w}};
    expect_refusal(core, 3, KILN_ERR_FORMAT, "Tucker core");
    kiln_st_entry half_core[] = {{TO_Q ".hada_w1_a", KILN_F32, 2, {2, 32}, w}, {TO_Q ".hada_w1_b", KILN_F32, 2, {2, 32}, w},
                                 {TO_Q ".hada_w2_a", KILN_F32, 2, {2, 32}, w}, {TO_Q ".hada_w2_b", KILN_F32, 2, {2, 32}, w},
                                 {TO_Q ".hada_t1", KILN_F32, 4, {2, 2, 1, 1}, w}};
    expect_refusal(half_core, 5, KILN_ERR_FORMAT, "lacks its hada_t2");
}

/* LoKr, DoRA and Tucker files (make_lycoris_data.py) against ComfyUI's merges
 * restated in torch: every weight they change (LoKr: whole and decomposed
 * sides, a 4-D w2 on a 3x3 convolution, a text-encoder linear at a negative
 * strength; DoRA: magnitudes per output row and per input channel, on LoRA,
 * LoCon and LoKr modules, at strength 0.7 and 1; Tucker cores on a LoCon, a
 * LoHa and a LoKr's w2, all on 3x3 convolutions). */
static void lycoris_matches_comfyui(void **s)
{
    (void)s;
    static const struct {
        const char *file;
        double unet, clip;
        int unet_modules, clip_modules;
    } files[] = {{"lokr", 0.8, -0.5, 3, 1}, {"dora", 0.7, 1.0, 4, 1}, {"tucker", 0.8, -0.5, 3, 0}};
    kiln_st_file *golden = golden_open("lora/golden.lycoris.safetensors");
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char path[4096], prefix[32];
        snprintf(path, sizeof path, "%s/lora/%s.safetensors", KILN_TEST_DATA, files[k].file);
        kiln_checkpoint *ck;
        assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &ck));
        kiln_lora lora = {path, files[k].unet, files[k].clip};
        kiln_lora_stats stats;
        assert_kiln_ok(kiln_lora_merge(ck, lora_towers_of(ck), &lora, &stats));
        assert_int_equal(stats.unet_modules, files[k].unet_modules);
        assert_int_equal(stats.clip_modules, files[k].clip_modules);
        snprintf(prefix, sizeof prefix, "%s.", files[k].file);
        int compared = 0;
        for (size_t i = 0; i < kiln_st_count(golden); i++) {
            const kiln_st_tensor *want = kiln_st_at(golden, i);
            if (strncmp(want->name, prefix, strlen(prefix)) != 0) continue;
            const char *target = want->name + strlen(prefix);
            const kiln_st_tensor *got = kiln_checkpoint_find(ck, target);
            assert_non_null(got);
            assert_int_equal(got->dtype, KILN_F32);
            assert_int_equal(got->nbytes, want->nbytes);
            const double err = kiln_rel_l2(got->data, want->data, kiln_st_numel(want));
            print_message("  %s %s: rel L2 %.2g\n", files[k].file, target, err);
            assert_true(err <= 1e-6);
            compared++;
        }
        assert_int_equal(compared, files[k].unet_modules + files[k].clip_modules);
        kiln_checkpoint_close(ck);
    }
    kiln_st_close(golden);
}

static void refuses_a_checkpoint_as_lora(void **s)
{
    (void)s;
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(SINGLE_F32, &ck));
    kiln_lora lora = {SINGLE_F16, 1.0, 1.0};
    kiln_lora_stats stats;
    assert_int_equal(kiln_lora_merge(ck, lora_towers_of(ck), &lora, &stats), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_last_error(), "is a checkpoint, not a LoRA"));
    kiln_checkpoint_close(ck);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kohya_locon_single_f32),
        cmocka_unit_test(kohya_locon_diffusers_folder),
        cmocka_unit_test(kohya_locon_single_f16),
        cmocka_unit_test(kohya_original_block_names),
        cmocka_unit_test(diffusers_layout),
        cmocka_unit_test(strengths_apart),
        cmocka_unit_test(stacked),
        cmocka_unit_test(loha_matches_float64),
        cmocka_unit_test(every_layout_names_the_same_weight),
        cmocka_unit_test(refuses_other_base_models),
        cmocka_unit_test(refuses_broken_files),
        cmocka_unit_test(refuses_module_kinds_it_cannot_merge),
        cmocka_unit_test(refuses_broken_lokr_and_dora),
        cmocka_unit_test(differences_add_as_they_are),
        cmocka_unit_test(lycoris_matches_comfyui),
        cmocka_unit_test(refuses_a_checkpoint_as_lora),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
