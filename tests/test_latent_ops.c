/* ComfyUI's latent nodes (LatentComposite, LatentCompositeMasked, LatentBlend, LatentAdd,
 * LatentSubtract, LatentMultiply, LatentInterpolate, LatentBatch,
 * LatentCrop, LatentFlip, LatentRotate) against their code restated
 * (tests/data/latent_ops), bit for bit where torch's float32 steps are one
 * rounding each; where the sizes differ, against the resize LatentUpscale
 * makes (its own tests check it) followed by the same-size operation. */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "kiln.h"
#include "safetensors.h"

static kiln_st_file *ops;

static int setup(void **state)
{
    (void)state;
    ops = golden_open("latent_ops/latent_ops.safetensors");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_st_close(ops);
    return 0;
}

/* A golden (B,C,H,W) of f as a latent the test owns. */
static kiln_latent latent_of(kiln_st_file *f, const char *name)
{
    golden g = golden_read(f, name);
    kiln_latent l = {.data = g.data, .batch = (int)g.shape[0], .channels = (int)g.shape[1], .height = (int)g.shape[2],
                     .width = (int)g.shape[3]};
    return l;
}

/* have against the golden `name`: its shape, and its values within tol
 * (rel L2; 0: to the bit). */
static void expect(kiln_st_file *f, const kiln_latent *have, const char *name, double tol)
{
    golden want = golden_read(f, name);
    assert_int_equal(have->batch, (int)want.shape[0]);
    assert_int_equal(have->channels, (int)want.shape[1]);
    assert_int_equal(have->height, (int)want.shape[2]);
    assert_int_equal(have->width, (int)want.shape[3]);
    if (tol == 0.0) {
        if (memcmp(have->data, want.data, want.count * sizeof(float)))
            fail_msg("%s: not ComfyUI's to the bit (rel L2 %.2g)", name, kiln_rel_l2(have->data, want.data, want.count));
    } else {
        assert_rel_l2_le(have->data, want.data, want.count, tol);
    }
    golden_free(&want);
}

/* Pasted at corners, edges and inside, with feathers of 0 to 5 (past the
 * pasted latent's own size), and a latent larger than what it fits. */
static void composite_matches_comfyui(void **state)
{
    (void)state;
    kiln_latent a = latent_of(ops, "a"), b = latent_of(ops, "b"), small = latent_of(ops, "small");
    static const int cases[][3] = {{0, 0, 0}, {4, 2, 0}, {4, 2, 1}, {9, 8, 2}, {0, 3, 2}, {2, 2, 5}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_latent out;
        assert_kiln_ok(kiln_latent_composite(&a, &small, cases[k][0], cases[k][1], cases[k][2], &out));
        char name[64];
        snprintf(name, sizeof name, "composite.%d_%d_%d", cases[k][0], cases[k][1], cases[k][2]);
        expect(ops, &out, name, 0.0);
        kiln_latent_free(&out);
    }
    static const int big[][3] = {{3, 4, 2}, {0, 0, 3}};
    for (size_t k = 0; k < 2; k++) {
        kiln_latent out;
        assert_kiln_ok(kiln_latent_composite(&a, &b, big[k][0], big[k][1], big[k][2], &out));
        char name[64];
        snprintf(name, sizeof name, "composite_big.%d_%d_%d", big[k][0], big[k][1], big[k][2]);
        expect(ops, &out, name, 0.0);
        kiln_latent_free(&out);
    }
    kiln_latent out;
    assert_int_equal(kiln_latent_composite(&a, &small, 12, 0, 0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "inside the 12x10 latent"));
    free(a.data), free(b.data), free(small.data);
}

/* LatentCompositeMasked without a mask and with one, inside, past the far
 * corner and at it (nothing shows); with resize_source, against the source
 * resized first (bilinear, as LatentUpscale's resize). */
static void composite_masked_matches_comfyui(void **state)
{
    (void)state;
    kiln_latent a = latent_of(ops, "a"), small = latent_of(ops, "small"), out;
    golden mask = golden_read(ops, "mask_3x5");
    static const int places[][2] = {{2, 1}, {9, 8}, {12, 0}};
    for (int k = 0; k < 3; k++)
        for (int masked = 0; masked < 2; masked++) {
            assert_kiln_ok(kiln_latent_composite_masked(&a, &small, places[k][0], places[k][1], false,
                                                        masked ? mask.data : NULL, 5, 3, &out));
            char name[64];
            snprintf(name, sizeof name, "%s.%d_%d", masked ? "masked_mask" : "masked", places[k][0], places[k][1]);
            expect(ops, &out, name, 0.0);
            kiln_latent_free(&out);
        }
    kiln_latent resized, want;
    assert_kiln_ok(kiln_latent_upscale(&small, "bilinear", 8 * a.width, 8 * a.height, false, &resized));
    assert_kiln_ok(kiln_latent_composite_masked(&a, &small, 0, 0, true, mask.data, 5, 3, &out));
    assert_kiln_ok(kiln_latent_composite_masked(&a, &resized, 0, 0, false, mask.data, 5, 3, &want));
    assert_memory_equal(out.data, want.data, (size_t)a.batch * a.channels * a.height * a.width * sizeof(float));
    kiln_latent_free(&out), kiln_latent_free(&want), kiln_latent_free(&resized);
    golden_free(&mask);
    free(a.data), free(small.data);
}

/* LatentBlend, LatentAdd (one image over a batch of 2), LatentSubtract,
 * LatentMultiply, LatentInterpolate (a pixel of zeros among them),
 * LatentBatch's places. */
static void arithmetic_matches_comfyui(void **state)
{
    (void)state;
    kiln_latent a = latent_of(ops, "a"), b = latent_of(ops, "b"), one = latent_of(ops, "one"), out;
    assert_kiln_ok(kiln_latent_blend(&a, &one, 0.3, &out));
    expect(ops, &out, "blend", 0.0);
    kiln_latent_free(&out);
    assert_kiln_ok(kiln_latent_combine(&a, &one, "add", 0.0, &out));
    expect(ops, &out, "add", 0.0);
    kiln_latent_free(&out);
    assert_kiln_ok(kiln_latent_combine(&a, &b, "subtract", 0.0, &out));
    expect(ops, &out, "subtract", 0.0);
    kiln_latent_free(&out);
    assert_kiln_ok(kiln_latent_multiply(&a, -1.7, &out));
    expect(ops, &out, "multiply", 0.0);
    kiln_latent_free(&out);
    kiln_latent a1 = a, b1 = b;
    a1.batch = b1.batch = 1;
    assert_kiln_ok(kiln_latent_combine(&a1, &b1, "interpolate", 0.35, &out));
    expect(ops, &out, "interpolate", 1e-6);
    kiln_latent_free(&out);
    assert_kiln_ok(kiln_latent_batch(&a, &one, &out));
    assert_int_equal(out.batch, 3);
    const size_t picture = (size_t)a.channels * a.height * a.width;
    assert_memory_equal(out.data, a.data, 2 * picture * sizeof(float));
    assert_memory_equal(out.data + 2 * picture, one.data, picture * sizeof(float));
    assert_non_null(out.batch_index);
    assert_int_equal(out.batch_index[0], 0), assert_int_equal(out.batch_index[1], 1);
    assert_int_equal(out.batch_index[2], 0);
    kiln_latent_free(&out);
    assert_int_equal(kiln_latent_combine(&a, &b, "divide", 0.0, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "'divide'"));
    free(a.data), free(b.data), free(one.data);
}

/* Where the second latent is of another size: LatentAdd and LatentBatch
 * resize it bilinear, LatentBlend bicubic, centre-cropped, as LatentUpscale
 * with crop does. */
static void other_sizes_are_resized(void **state)
{
    (void)state;
    kiln_latent a = latent_of(ops, "a"), one = latent_of(ops, "one"), wide, sized, want, have;
    /* one's 12x10 widened to 16x10 by LatentUpscale, then each operation against its same-size run */
    assert_kiln_ok(kiln_latent_upscale(&one, "nearest-exact", 128, 80, false, &wide));
    static const char *const methods[] = {"bilinear", "bicubic", "bilinear"};
    for (int k = 0; k < 3; k++) {
        assert_kiln_ok(kiln_latent_upscale(&wide, methods[k], 8 * a.width, 8 * a.height, true, &sized));
        if (k == 0) {
            assert_kiln_ok(kiln_latent_combine(&a, &wide, "add", 0.0, &have));
            assert_kiln_ok(kiln_latent_combine(&a, &sized, "add", 0.0, &want));
        } else if (k == 1) {
            assert_kiln_ok(kiln_latent_blend(&a, &wide, 0.6, &have));
            assert_kiln_ok(kiln_latent_blend(&a, &sized, 0.6, &want));
        } else {
            assert_kiln_ok(kiln_latent_batch(&a, &wide, &have));
            assert_kiln_ok(kiln_latent_batch(&a, &sized, &want));
        }
        assert_int_equal(have.width, a.width);
        assert_memory_equal(have.data, want.data, (size_t)have.batch * a.channels * a.height * a.width * sizeof(float));
        kiln_latent_free(&have), kiln_latent_free(&want), kiln_latent_free(&sized);
    }
    kiln_latent_free(&wide);
    free(a.data), free(one.data);
}

/* LatentCrop (its corner pulled back to 8 from the far edges, the box cut
 * to the latent), LatentFlip both ways, LatentRotate by 0 to 3 quarter
 * turns. */
static void crop_flip_rotate_match_comfyui(void **state)
{
    (void)state;
    kiln_latent a = latent_of(ops, "a"), out;
    static const int crops[][4] = {{1, 1, 8, 8}, {7, 5, 8, 8}, {0, 0, 20, 20}};
    for (int k = 0; k < 3; k++) {
        assert_kiln_ok(kiln_latent_crop(&a, crops[k][0], crops[k][1], crops[k][2], crops[k][3], &out));
        char name[64];
        snprintf(name, sizeof name, "crop.%d_%d_%d_%d", crops[k][0], crops[k][1], crops[k][2], crops[k][3]);
        expect(ops, &out, name, 0.0);
        kiln_latent_free(&out);
    }
    assert_kiln_ok(kiln_latent_flip_rotate(&a, true, false, 0, &out));
    expect(ops, &out, "flip.x", 0.0);
    kiln_latent_free(&out);
    assert_kiln_ok(kiln_latent_flip_rotate(&a, false, true, 0, &out));
    expect(ops, &out, "flip.y", 0.0);
    kiln_latent_free(&out);
    for (int k = 0; k < 4; k++) {
        assert_kiln_ok(kiln_latent_flip_rotate(&a, false, false, k, &out));
        char name[32];
        snprintf(name, sizeof name, "rotate.%d", k);
        expect(ops, &out, name, 0.0);
        kiln_latent_free(&out);
    }
    assert_int_equal(kiln_latent_flip_rotate(&a, false, false, 4, &out), KILN_ERR_INVALID_ARG);
    free(a.data);
}

/* LatentBatchSeedBehavior: "fixed" every image the first one's place (0
 * with none), "random" none; the latent's values kept. */
static void batch_seed_behavior_places(void **state)
{
    (void)state;
    float values[2] = {1.5f, -2.0f};
    int places[2] = {2, 5};
    kiln_latent l = {.data = values, .batch = 2, .channels = 1, .height = 1, .width = 1, .batch_index = places}, out;
    assert_kiln_ok(kiln_latent_batch_seed_behavior(&l, "fixed", &out));
    assert_non_null(out.batch_index);
    assert_int_equal(out.batch_index[0], 2), assert_int_equal(out.batch_index[1], 2);
    assert_memory_equal(out.data, values, sizeof values);
    kiln_latent_free(&out);
    assert_kiln_ok(kiln_latent_batch_seed_behavior(&l, "random", &out));
    assert_null(out.batch_index);
    assert_memory_equal(out.data, values, sizeof values);
    kiln_latent_free(&out);
    l.batch_index = NULL;
    assert_kiln_ok(kiln_latent_batch_seed_behavior(&l, "fixed", &out));
    assert_int_equal(out.batch_index[0], 0), assert_int_equal(out.batch_index[1], 0);
    kiln_latent_free(&out);
    assert_refused_naming(kiln_latent_batch_seed_behavior(&l, "increment", &out), "seed_behavior 'increment'");
}

/* LatentConcat along each axis both ways (samples2 repeated and cut to
 * samples1's batch) and LatentCut with the node's clamps, against torch's
 * cat and narrow (latent_ops/concat_cut.safetensors), to the bit; refusals. */
static void concat_cut_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("latent_ops/concat_cut.safetensors");
    kiln_latent a = latent_of(f, "a"), out;
    static const char *const others[3] = {"b", "c", "d"}, *const dims[3] = {"x", "y", "t"};
    for (int k = 0; k < 3; k++) {
        kiln_latent other = latent_of(f, others[k]);
        for (int sign = 0; sign < 2; sign++) {
            char dim[4], name[32];
            snprintf(dim, sizeof dim, "%s%s", sign ? "-" : "", dims[k]);
            assert_kiln_ok(kiln_latent_concat(&a, &other, dim, &out));
            snprintf(name, sizeof name, "concat.%s", dim);
            expect(f, &out, name, 0.0);
            kiln_latent_free(&out);
        }
        if (k == 0) { /* b is 2 wide: along y its widths differ */
            assert_refused_naming(kiln_latent_concat(&a, &other, "y", &out), "differ elsewhere");
            assert_null(out.data);
        }
        free(other.data);
    }
    static const struct { const char *dim; int index, amount; } cuts[] = {
        {"x", 1, 3}, {"x", 4, 9}, {"x", -2, 5}, {"x", -9, 2}, {"y", 0, 2}, {"t", 1, 2}, {"t", -1, 1}};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        assert_kiln_ok(kiln_latent_cut(&a, cuts[k].dim, cuts[k].index, cuts[k].amount, &out));
        char name[48];
        snprintf(name, sizeof name, "cut.%s.%d.%d", cuts[k].dim, cuts[k].index, cuts[k].amount);
        expect(f, &out, name, 0.0);
        kiln_latent_free(&out);
    }
    assert_refused_naming(kiln_latent_concat(&a, &a, "z", &out), "dim 'z'");
    assert_refused_naming(kiln_latent_concat(&a, &a, "-xx", &out), "dim '-xx'");
    assert_refused_naming(kiln_latent_cut(&a, "-x", 0, 1, &out), "dim '-x'");
    assert_refused_naming(kiln_latent_cut(&a, "x", 0, 0, &out), "amount 0");
    free(a.data);
    kiln_st_close(f);
}

/* LatentOperationTonemapReinhard and LatentOperationSharpen through
 * LatentApplyOperation, against ComfyUI's code restated
 * (latent_ops/operations.safetensors); refusals. */
static void operations_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("latent_ops/operations.safetensors");
    kiln_latent x = latent_of(f, "x");
    static const struct {
        const char *name;
        kiln_latent_operation op;
    } cases[] = {
        {"tonemap.1", {KILN_LATENT_OPERATION_TONEMAP_REINHARD, .multiplier = 1.0}},
        {"tonemap.0.5", {KILN_LATENT_OPERATION_TONEMAP_REINHARD, .multiplier = 0.5}},
        {"sharpen.9_1_0.1", {KILN_LATENT_OPERATION_SHARPEN, .sharpen_radius = 9, .sigma = 1.0, .alpha = 0.1}},
        {"sharpen.3_0.5_1.5", {KILN_LATENT_OPERATION_SHARPEN, .sharpen_radius = 3, .sigma = 0.5, .alpha = 1.5}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kiln_latent out;
        assert_kiln_ok(kiln_latent_apply_operation(&x, &cases[k].op, &out));
        print_message("  %s\n", cases[k].name);
        expect(f, &out, cases[k].name, 1e-6);
        kiln_latent_free(&out);
    }
    kiln_latent out;
    const kiln_latent_operation wide = {KILN_LATENT_OPERATION_SHARPEN, .sharpen_radius = 12, .sigma = 1, .alpha = 0.1};
    assert_int_equal(kiln_latent_apply_operation(&x, &wide, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "sharpen_radius 12 on a 16x12 latent"));
    kiln_latent_free(&x);
    kiln_st_close(f);
}

/* LoadLatent of ComfyUI's files (SaveLatent's, and one from before the
 * version key: scaled back) against the node's values, to the bit; the file
 * SaveLatent writes is ComfyUI's byte for byte and loads back to the bit. */
static void latent_files_match_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("latent_ops/latent_files.safetensors");
    static const char *const names[2] = {"comfyui", "old"};
    kiln_latent loaded[2];
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/latent_ops/%s.latent", KILN_TEST_DATA, names[i]);
        golden want = golden_read(f, names[i]);
        assert_kiln_ok(kiln_latent_load(path, &loaded[i]));
        assert_int_equal(loaded[i].batch, 2), assert_int_equal(loaded[i].channels, 4);
        assert_int_equal(loaded[i].height, 3), assert_int_equal(loaded[i].width, 5);
        assert_memory_equal(loaded[i].data, want.data, want.count * sizeof(float));
        golden_free(&want);
    }
    char dir[] = "/tmp/kiln_latent_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/saved.latent", dir);
    assert_kiln_ok(kiln_latent_save(&loaded[0], path, "{}"));
    kiln_st_file *saved;
    assert_kiln_ok(kiln_st_open(path, &saved));
    const kiln_st_tensor *version = kiln_st_find(saved, "latent_format_version_0");
    assert_non_null(version);
    assert_int_equal(version->dtype, KILN_F32), assert_int_equal(version->ndim, 1), assert_int_equal(version->shape[0], 0);
    assert_string_equal(kiln_st_metadata(saved, "prompt"), "{}");
    kiln_st_close(saved);
    /* byte for byte what safetensors' torch save_file wrote (the header's order and padding too) */
    size_t a, b;
    uint8_t *mine = kiln_test_read_file(path, &a), *theirs = kiln_test_read_file(KILN_TEST_DATA "/latent_ops/comfyui.latent", &b);
    assert_int_equal(a, b);
    assert_memory_equal(mine, theirs, a);
    free(mine), free(theirs);
    kiln_latent again;
    assert_kiln_ok(kiln_latent_load(path, &again));
    assert_memory_equal(again.data, loaded[0].data, (size_t)2 * 4 * 3 * 5 * sizeof(float));
    kiln_latent_free(&again);
    unlink(path);
    rmdir(dir);
    assert_int_equal(kiln_latent_load(KILN_TEST_DATA "/latent_ops/latent_files.safetensors", &again), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_last_error(), "latent_files.safetensors: no tensor 'latent_tensor'"));
    for (int i = 0; i < 2; i++) kiln_latent_free(&loaded[i]);
    kiln_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(composite_matches_comfyui),
        cmocka_unit_test(composite_masked_matches_comfyui),
        cmocka_unit_test(arithmetic_matches_comfyui),
        cmocka_unit_test(other_sizes_are_resized),
        cmocka_unit_test(crop_flip_rotate_match_comfyui),
        cmocka_unit_test(concat_cut_match_comfyui),
        cmocka_unit_test(batch_seed_behavior_places),
        cmocka_unit_test(operations_match_comfyui),
        cmocka_unit_test(latent_files_match_comfyui),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
