/* ComfyUI's mask nodes (LoadImageMask and LoadImage's MASK, SolidMask,
 * ImageToMask, MaskToImage with SaveImage's bytes, InvertMask,
 * ThresholdMask, CropMask, MaskComposite, FeatherMask, GrowMask) against
 * their code restated (tests/data/masks), to the bit: every step of them is
 * one float32 rounding, or none. Each test checks all its cases and then
 * fails once, naming every case that differs; the calls' refusals (bad
 * channel names, crops that leave nothing, unknown operations, negative
 * fades, NULL arguments) are checked with their messages. */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "image.h"
#include "kiln.h"

static kiln_st_file *data;

static int setup(void **state)
{
    (void)state;
    data = golden_open("masks/masks.safetensors");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_st_close(data);
    return 0;
}

/* A golden (H, W) as a mask the test owns (kiln_mask_free frees it). */
static kiln_mask mask_of(const char *name)
{
    golden g = golden_read(data, name);
    assert_int_equal(g.ndim, 2);
    return (kiln_mask){.width = (int)g.shape[1], .height = (int)g.shape[0], .weights = g.data};
}

/* have against the golden mask `name`, to the bit; false (and why printed) where not. */
static bool same_mask(const kiln_mask *have, const char *name)
{
    golden want = golden_read(data, name);
    const int W = (int)want.shape[want.ndim - 1], H = want.ndim > 1 ? (int)want.shape[want.ndim - 2] : 1;
    bool same = have->width == W && have->height == H && have->weights;
    if (!same) {
        print_error("  %s: kiln's mask is %dx%d, ComfyUI's %dx%d\n", name, have->width, have->height, W, H);
    } else if (memcmp(have->weights, want.data, want.count * sizeof(float)) != 0) {
        same = false;
        size_t differ = 0, first = 0;
        for (size_t i = 0; i < want.count; i++)
            if (memcmp(&have->weights[i], &want.data[i], sizeof(float)) != 0 && differ++ == 0) first = i;
        print_error("  %s: %zu of %zu weights differ; first at row %zu column %zu: kiln %.9g, ComfyUI %.9g\n", name,
                    differ, want.count, first / (size_t)W, first % (size_t)W, (double)have->weights[first],
                    (double)want.data[first]);
    }
    golden_free(&want);
    return same;
}

/* have against the golden picture `name` (H, W, 3 bytes), exactly. */
static bool same_picture(const kiln_image *have, const char *name)
{
    golden want = golden_read(data, name);
    const int W = (int)want.shape[1], H = (int)want.shape[0];
    bool same = have->width == W && have->height == H && have->pixels;
    if (!same) print_error("  %s: kiln's picture is %dx%d, ComfyUI's %dx%d\n", name, have->width, have->height, W, H);
    for (size_t i = 0; same && i < want.count; i++)
        if (have->pixels[i] != (uint8_t)want.data[i]) {
            print_error("  %s: byte %zu (row %zu column %zu channel %zu) is %d, ComfyUI's %d\n", name, i,
                        i / 3 / (size_t)W, i / 3 % (size_t)W, i % 3, have->pixels[i], (int)want.data[i]);
            same = false;
        }
    golden_free(&want);
    return same;
}

static void all_same(int bad, const char *what)
{
    if (bad) fail_msg("%d %s differ from ComfyUI's (printed above)", bad, what);
}

/* SolidMask at three values and sizes; values outside 0..1 and empty sizes refused. */
static void solid_matches_comfyui(void **state)
{
    (void)state;
    static const struct { float value; int w, h; const char *name; } cases[] = {
        {0.35f, 13, 11, "solid.0.35_13_11"}, {1.0f, 6, 5, "solid.1_6_5"}, {0.0f, 1, 1, "solid.0_1_1"}};
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_mask out;
        assert_kiln_ok(kiln_mask_solid(cases[k].value, cases[k].w, cases[k].h, &out));
        bad += !same_mask(&out, cases[k].name);
        kiln_mask_free(&out);
    }
    kiln_mask out = {0};
    assert_refused_naming(kiln_mask_solid(1.5f, 4, 4, &out), "1.5");
    assert_refused_naming(kiln_mask_solid(-0.25f, 4, 4, &out), "-0.25");
    assert_refused_naming(kiln_mask_solid(NAN, 4, 4, &out), "value");
    assert_refused_naming(kiln_mask_solid(0.5f, 0, 4, &out), "0x4");
    assert_refused_naming(kiln_mask_solid(0.5f, 4, -1, &out), "4x-1");
    assert_refused_naming(kiln_mask_solid(0.5f, 4, 4, NULL), "no place");
    kiln_mask_free(&out);
    all_same(bad, "solid masks");
}

/* ImageToMask of each channel of a picture holding all 256 byte values. */
static void from_image_matches_comfyui(void **state)
{
    (void)state;
    kiln_image picture = golden_picture(data, "picture");
    static const char *const channels[] = {"red", "green", "blue"};
    int bad = 0;
    for (int c = 0; c < 3; c++) {
        kiln_mask out;
        assert_kiln_ok(kiln_mask_from_image(&picture, channels[c], &out));
        char name[64];
        snprintf(name, sizeof name, "from_image.%s", channels[c]);
        bad += !same_mask(&out, name);
        kiln_mask_free(&out);
    }
    kiln_mask out = {0};
    /* kiln's pictures are RGB: the node's "alpha" has nothing to read */
    assert_refused_naming(kiln_mask_from_image(&picture, "alpha", &out), "'alpha'");
    assert_refused_naming(kiln_mask_from_image(&picture, "Red", &out), "'Red'");
    assert_refused_naming(kiln_mask_from_image(&picture, "", &out), "''");
    assert_refused_naming(kiln_mask_from_image(&picture, NULL, &out), "channel");
    assert_refused_naming(kiln_mask_from_image(NULL, "red", &out), "kiln_mask_from_image");
    assert_refused_naming(kiln_mask_from_image(&picture, "red", NULL), "kiln_mask_from_image");
    kiln_image_free(&picture);
    all_same(bad, "channels");
}

/* MaskToImage then SaveImage's bytes (255 x, clipped, truncated) for k / 255
 * (k = 0..255: 255 x k/255 in float32 lands below k for some k, and
 * truncates to k - 1 as ComfyUI's does) and 0.99999, 1, 0.5, values outside
 * 0..1 and infinities; kiln_mask_picture rounds the k / 255 back to k. */
static void to_image_matches_saveimage(void **state)
{
    (void)state;
    kiln_mask levels = mask_of("levels");
    kiln_image out;
    assert_kiln_ok(kiln_mask_to_image(&levels, &out));
    assert_int_equal(out.channels, 3);
    int bad = !same_picture(&out, "to_image.levels");
    kiln_image_free(&out);
    assert_kiln_ok(kiln_mask_picture(&levels, &out));
    for (int k = 0; k < 256; k++)
        for (int c = 0; c < 3; c++)
            if (out.pixels[3 * k + c] != k) fail_msg("kiln_mask_picture of %d / 255: %d", k, out.pixels[3 * k + c]);
    kiln_image_free(&out);
    kiln_mask_free(&levels);
    assert_refused_naming(kiln_mask_to_image(NULL, &out), "kiln_mask_to_image");
    kiln_mask empty = {0};
    assert_refused_naming(kiln_mask_to_image(&empty, &out), "kiln_mask_to_image");
    all_same(bad, "pictures");
}

/* InvertMask; ThresholdMask at 0.5 (weights of exactly 0.5 and the floats
 * either side of it), 0.3 (a weight of float32(0.3): not above it), 0, 1,
 * 0.7. */
static void invert_threshold_match_comfyui(void **state)
{
    (void)state;
    kiln_mask mask = mask_of("mask"), out;
    int bad = 0;
    assert_kiln_ok(kiln_mask_invert(&mask, &out));
    bad += !same_mask(&out, "invert");
    kiln_mask_free(&out);
    static const struct { float value; const char *name; } cases[] = {
        {0.5f, "threshold.0.5"}, {0.3f, "threshold.0.3"}, {0.0f, "threshold.0"}, {1.0f, "threshold.1"},
        {0.7f, "threshold.0.7"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_kiln_ok(kiln_mask_threshold(&mask, cases[k].value, &out));
        bad += !same_mask(&out, cases[k].name);
        kiln_mask_free(&out);
    }
    assert_refused_naming(kiln_mask_invert(NULL, &out), "kiln_mask_invert");
    assert_refused_naming(kiln_mask_invert(&mask, NULL), "kiln_mask_invert");
    assert_refused_naming(kiln_mask_threshold(NULL, 0.5f, &out), "kiln_mask_threshold");
    assert_refused_naming(kiln_mask_threshold(&mask, 0.5f, NULL), "kiln_mask_threshold");
    kiln_mask_free(&mask);
    all_same(bad, "masks");
}

/* CropMask inside, cut at the far edges, one pixel, past everything;
 * crops that leave nothing refused. */
static void crop_matches_comfyui(void **state)
{
    (void)state;
    kiln_mask mask = mask_of("mask"), out = {0};
    static const int cases[][4] = {{0, 0, 13, 11}, {2, 3, 4, 5}, {10, 8, 5, 5}, {12, 10, 1, 1}, {0, 0, 100, 100},
                                   {5, 0, 1, 11}};
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_kiln_ok(kiln_mask_crop(&mask, cases[k][0], cases[k][1], cases[k][2], cases[k][3], &out));
        char name[64];
        snprintf(name, sizeof name, "crop.%d_%d_%d_%d", cases[k][0], cases[k][1], cases[k][2], cases[k][3]);
        bad += !same_mask(&out, name);
        kiln_mask_free(&out);
    }
    assert_refused_naming(kiln_mask_crop(&mask, 13, 0, 4, 4, &out), "leaves nothing");
    assert_refused_naming(kiln_mask_crop(&mask, 0, 11, 4, 4, &out), "leaves nothing");
    assert_refused_naming(kiln_mask_crop(&mask, 0, 0, 0, 4, &out), "leaves nothing");
    assert_refused_naming(kiln_mask_crop(&mask, 0, 0, 4, 0, &out), "leaves nothing");
    assert_refused_naming(kiln_mask_crop(&mask, -1, 0, 4, 4, &out), "leaves nothing");
    assert_refused_naming(kiln_mask_crop(NULL, 0, 0, 4, 4, &out), "kiln_mask_crop");
    assert_refused_naming(kiln_mask_crop(&mask, 0, 0, 4, 4, NULL), "kiln_mask_crop");
    kiln_mask_free(&mask);
    all_same(bad, "crops");
}

/* One MaskComposite golden: `prefix`.<op>.<x>_<y> of destination and source. */
static bool composite_case(const kiln_mask *destination, const kiln_mask *source, const char *prefix, const char *op,
                           int x, int y)
{
    kiln_mask out;
    assert_kiln_ok(kiln_mask_composite(destination, source, x, y, op, &out));
    char name[96];
    snprintf(name, sizeof name, "%s.%s.%d_%d", prefix, op, x, y);
    bool same = same_mask(&out, name);
    kiln_mask_free(&out);
    return same;
}

/* MaskComposite's multiply, add and subtract (sums past 1 and differences
 * below 0 clamped) inside, cut at the right and bottom edges, on the last
 * pixel, just past the right edge (nothing changes but the clamp), and a
 * larger source on a smaller destination; unknown operations, places
 * before the corner and NULLs refused. */
static void composite_arithmetic_matches_comfyui(void **state)
{
    (void)state;
    kiln_mask mask = mask_of("mask"), small = mask_of("small"), out = {0};
    static const char *const ops[] = {"multiply", "add", "subtract"};
    static const int places[][2] = {{3, 2}, {9, 8}, {0, 0}, {12, 10}, {13, 0}};
    int bad = 0;
    for (int o = 0; o < 3; o++)
        for (int p = 0; p < 5; p++)
            bad += !composite_case(&mask, &small, "composite", ops[o], places[p][0], places[p][1]);
    bad += !composite_case(&small, &mask, "composite_big", "add", 0, 0);
    bad += !composite_case(&small, &mask, "composite_big", "add", 2, 1);
    assert_refused_naming(kiln_mask_composite(&mask, &small, 0, 0, "divide", &out), "'divide'");
    assert_refused_naming(kiln_mask_composite(&mask, &small, 0, 0, "Multiply", &out), "'Multiply'");
    assert_refused_naming(kiln_mask_composite(&mask, &small, 0, 0, NULL, &out), "operation");
    assert_refused_naming(kiln_mask_composite(&mask, &small, -1, 0, "add", &out), "(-1, 0)");
    assert_refused_naming(kiln_mask_composite(&mask, &small, 0, -2, "add", &out), "(0, -2)");
    assert_refused_naming(kiln_mask_composite(NULL, &small, 0, 0, "add", &out), "kiln_mask_composite");
    assert_refused_naming(kiln_mask_composite(&mask, NULL, 0, 0, "add", &out), "kiln_mask_composite");
    assert_refused_naming(kiln_mask_composite(&mask, &small, 0, 0, "add", NULL), "kiln_mask_composite");
    kiln_mask_free(&mask), kiln_mask_free(&small);
    all_same(bad, "composites");
}

/* MaskComposite's and, or, xor on masks of 0s and 1s (ThresholdMask's), where
 * "nonzero" and "rounds to nonzero" agree. */
static void composite_logic_on_binary_masks(void **state)
{
    (void)state;
    kiln_mask binary = mask_of("binary"), binary_small = mask_of("binary_small");
    static const char *const ops[] = {"multiply", "add", "subtract", "and", "or", "xor"};
    int bad = 0;
    for (int o = 0; o < 6; o++) bad += !composite_case(&binary, &binary_small, "composite_binary", ops[o], 3, 2);
    kiln_mask_free(&binary), kiln_mask_free(&binary_small);
    all_same(bad, "composites");
}

/* MaskComposite's and, or, xor on soft masks: ComfyUI takes each side's
 * torch.round(v).bool() (comfy_extras/nodes_mask.py since May 2023), so
 * weights up to 0.5 count as 0 and the float above 0.5 as 1. */
static void composite_logic_rounds_like_comfyui(void **state)
{
    (void)state;
    kiln_mask mask = mask_of("mask"), small = mask_of("small");
    static const char *const ops[] = {"and", "or", "xor"};
    int bad = 0;
    for (int o = 0; o < 3; o++) {
        bad += !composite_case(&mask, &small, "composite", ops[o], 3, 2);
        bad += !composite_case(&mask, &small, "composite", ops[o], 9, 8);
    }
    bad += !composite_case(&small, &mask, "composite_big", "xor", 0, 0);
    bad += !composite_case(&small, &mask, "composite_big", "xor", 2, 1);
    kiln_mask_free(&mask), kiln_mask_free(&small);
    all_same(bad, "composites");
}

/* FeatherMask with fades of 0, 1, 3, 4, past the mask's sides and of its
 * whole size, its right and bottom fades starting on the first column / row
 * as the node's -0 does; negative fades refused. */
static void feather_matches_comfyui(void **state)
{
    (void)state;
    kiln_mask mask = mask_of("mask"), out = {0};
    static const int cases[][4] = {{0, 0, 0, 0}, {1, 1, 1, 1},    {3, 0, 0, 0},   {0, 0, 3, 0},      {0, 3, 0, 3},
                                   {3, 2, 4, 1}, {20, 0, 0, 0}, {0, 0, 20, 20}, {13, 11, 13, 11}};
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_kiln_ok(kiln_mask_feather(&mask, cases[k][0], cases[k][1], cases[k][2], cases[k][3], &out));
        char name[64];
        snprintf(name, sizeof name, "feather.%d_%d_%d_%d", cases[k][0], cases[k][1], cases[k][2], cases[k][3]);
        bad += !same_mask(&out, name);
        kiln_mask_free(&out);
    }
    assert_refused_naming(kiln_mask_feather(&mask, -1, 0, 0, 0, &out), "negative");
    assert_refused_naming(kiln_mask_feather(&mask, 0, -1, 0, 0, &out), "negative");
    assert_refused_naming(kiln_mask_feather(&mask, 0, 0, -3, 0, &out), "negative");
    assert_refused_naming(kiln_mask_feather(&mask, 0, 0, 0, -1, &out), "negative");
    assert_refused_naming(kiln_mask_feather(NULL, 1, 1, 1, 1, &out), "kiln_mask_feather");
    assert_refused_naming(kiln_mask_feather(&mask, 1, 1, 1, 1, NULL), "kiln_mask_feather");
    kiln_mask_free(&mask);
    all_same(bad, "feathers");
}

/* GrowMask by 1, 3, -2 and 30 (past where anything still moves) with and
 * without tapered corners on a mask of a few blobs, 1 and -2 on a soft
 * mask; 0 leaves the mask as it is. */
static void grow_matches_comfyui(void **state)
{
    (void)state;
    kiln_mask blobs = mask_of("blobs"), mask = mask_of("mask"), out = {0};
    static const int expands[] = {1, 3, -2, 30};
    int bad = 0;
    for (int tapered = 0; tapered < 2; tapered++) {
        for (int k = 0; k < 4; k++) {
            assert_kiln_ok(kiln_mask_grow(&blobs, expands[k], tapered, &out));
            char name[64];
            snprintf(name, sizeof name, "grow.%d_%d", expands[k], tapered);
            bad += !same_mask(&out, name);
            kiln_mask_free(&out);
        }
        for (int k = 0; k < 3; k += 2) {
            assert_kiln_ok(kiln_mask_grow(&mask, expands[k], tapered, &out));
            char name[64];
            snprintf(name, sizeof name, "grow_mask.%d_%d", expands[k], tapered);
            bad += !same_mask(&out, name);
            kiln_mask_free(&out);
        }
        assert_kiln_ok(kiln_mask_grow(&mask, 0, tapered, &out));
        bad += !same_mask(&out, "mask");
        kiln_mask_free(&out);
    }
    assert_refused_naming(kiln_mask_grow(NULL, 1, true, &out), "kiln_mask_grow");
    assert_refused_naming(kiln_mask_grow(&mask, 1, true, NULL), "kiln_mask_grow");
    kiln_mask_free(&blobs), kiln_mask_free(&mask);
    all_same(bad, "grown masks");
}

/* The test pictures: "stem=path under tests/data" pairs of the goldens' "files". */
typedef struct picture_file { char stem[32], path[96]; } picture_file;

static int picture_files(picture_file *files, int most)
{
    const char *list = golden_meta(data, "files");
    int n = 0;
    for (const char *p = list; *p && n < most; n++) {
        const char *eq = strchr(p, '='), *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        assert_non_null(eq);
        assert_true(eq < end && eq - p < 32 && end - eq - 1 < 96);
        snprintf(files[n].stem, sizeof files[n].stem, "%.*s", (int)(eq - p), p);
        snprintf(files[n].path, sizeof files[n].path, "%.*s", (int)(end - eq - 1), eq + 1);
        p = *end ? end + 1 : end;
    }
    assert_true(n >= 8);
    return n;
}

/* LoadImageMask of each channel of PNGs with alpha, a palette's tRNS, grey
 * and alpha, no alpha (alpha: zeros), an RGB and a grey tRNS colour, EXIF
 * orientation 6 (the alpha turned with the picture), and a JPEG with EXIF
 * orientation 6; unknown channels and missing files refused. */
static void load_matches_comfyui(void **state)
{
    (void)state;
    picture_file files[16];
    const int n = picture_files(files, 16);
    static const char *const channels[] = {"red", "green", "blue", "alpha"};
    int bad = 0;
    for (int f = 0; f < n; f++)
        for (int c = 0; c < 4; c++) {
            kiln_mask out;
            assert_kiln_ok(kiln_mask_load(kiln_test_data(files[f].path), channels[c], &out));
            char name[96];
            snprintf(name, sizeof name, "load.%.31s.%s", files[f].stem, channels[c]);
            bad += !same_mask(&out, name);
            kiln_mask_free(&out);
        }
    kiln_mask out = {0};
    char rgba[4096]; /* kiln_test_data's buffer is reused by the next call */
    snprintf(rgba, sizeof rgba, "%s", kiln_test_data("masks/rgba.png"));
    assert_refused_naming(kiln_mask_load(rgba, "Alpha", &out), "'Alpha'");
    assert_refused_naming(kiln_mask_load(rgba, "luma", &out), "'luma'");
    assert_refused_naming(kiln_mask_load(rgba, "", &out), "''");
    assert_refused_naming(kiln_mask_load(rgba, NULL, &out), "channel");
    assert_refused_naming(kiln_mask_load(kiln_test_data("masks/no_such.png"), "red", &out), "no_such.png");
    assert_refused_naming(kiln_mask_load(NULL, "red", &out), "kiln_mask_load");
    assert_refused_naming(kiln_mask_load(rgba, "red", NULL), "kiln_mask_load");
    assert_null(out.weights);
    all_same(bad, "loaded masks");
}

/* LoadImage's IMAGE and MASK: the picture's bytes, 1 - alpha where the file
 * has alpha as LoadImage sees it ('A' among Pillow's bands, or a palette
 * with a transparency), the node's 64x64 zeros where not: an RGB or grey
 * PNG's tRNS colour is not alpha to LoadImage (Pillow keeps such a file in
 * mode RGB / L), though LoadImageMask's convert("RGBA") makes alpha of it. */
static void load_with_mask_matches_loadimage(void **state)
{
    (void)state;
    picture_file files[16];
    const int n = picture_files(files, 16);
    int bad = 0;
    for (int f = 0; f < n; f++) {
        kiln_image image;
        kiln_mask mask;
        assert_kiln_ok(kiln_image_load_with_mask(kiln_test_data(files[f].path), &image, &mask));
        char name[96];
        snprintf(name, sizeof name, "image.%s.rgb", files[f].stem);
        bad += !same_picture(&image, name);
        snprintf(name, sizeof name, "has_alpha.%s", files[f].stem);
        if (strcmp(golden_meta(data, name), "1") == 0) {
            snprintf(name, sizeof name, "image.%s.mask", files[f].stem);
            bad += !same_mask(&mask, name);
        } else {
            bool zeros = mask.width == 64 && mask.height == 64 && mask.weights;
            for (int i = 0; zeros && i < 64 * 64; i++) zeros = mask.weights[i] == 0.0f && !signbit(mask.weights[i]);
            if (!zeros) {
                print_error("  %s: LoadImage finds no alpha and gives 64x64 zeros; kiln gives a %dx%d mask\n",
                            files[f].path, mask.width, mask.height);
                bad++;
            }
        }
        kiln_image_free(&image);
        kiln_mask_free(&mask);
    }
    kiln_image image = {0};
    kiln_mask mask = {0};
    char rgba[4096]; /* kiln_test_data's buffer is reused by the next call */
    snprintf(rgba, sizeof rgba, "%s", kiln_test_data("masks/rgba.png"));
    assert_refused_naming(kiln_image_load_with_mask(kiln_test_data("masks/no_such.png"), &image, &mask), "no_such.png");
    assert_refused_naming(kiln_image_load_with_mask(NULL, &image, &mask), "kiln_image_load_with_mask");
    assert_refused_naming(kiln_image_load_with_mask(rgba, NULL, &mask), "kiln_image_load_with_mask");
    assert_refused_naming(kiln_image_load_with_mask(rgba, &image, NULL), "kiln_image_load_with_mask");
    assert_null(image.pixels);
    assert_null(mask.weights);
    all_same(bad, "LoadImage outputs");
}

/* kiln_mask_free: on NULL, a zeroed mask, and twice. */
static void free_is_safe(void **state)
{
    (void)state;
    kiln_mask_free(NULL);
    kiln_mask m = {0};
    kiln_mask_free(&m);
    assert_kiln_ok(kiln_mask_solid(0.5f, 3, 2, &m));
    kiln_mask_free(&m);
    assert_null(m.weights);
    assert_int_equal(m.width, 0);
    kiln_mask_free(&m);
    /* a refused call leaves its output zeroed, whatever it held, so that freeing it is safe */
    float stale;
    kiln_image picture = {.width = 2, .height = 2, .pixels = (uint8_t *)&stale};
    const kiln_mask held = {.width = 3, .height = 3, .weights = &stale};
#define LEAVES_ZEROED(call, field)                                                                            \
    do {                                                                                                      \
        assert_int_not_equal((call), KILN_OK);                                                                \
        assert_null(field);                                                                                   \
    } while (0)
    m = held;
    LEAVES_ZEROED(kiln_mask_load(NULL, "red", &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_from_image(NULL, "red", &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_invert(NULL, &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_threshold(NULL, 0.5f, &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_crop(NULL, 0, 0, 1, 1, &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_composite(NULL, NULL, 0, 0, "nand", &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_feather(NULL, -1, 0, 0, 0, &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_mask_grow(NULL, 1, true, &m), m.weights);
    m = held;
    LEAVES_ZEROED(kiln_image_load_with_mask(NULL, &picture, &m), m.weights);
    assert_null(picture.pixels);
    picture.pixels = (uint8_t *)&stale;
    LEAVES_ZEROED(kiln_mask_to_image(NULL, &picture), picture.pixels);
    picture.pixels = (uint8_t *)&stale;
    LEAVES_ZEROED(kiln_mask_picture(NULL, &picture), picture.pixels);
#undef LEAVES_ZEROED
}

/* ImageCompositeMasked on pictures of known bytes, the source at (2, 1) and
 * cut at the destination's edges, the mask of the source's size (so
 * unstretched): each byte is SaveImage's of mask * source + (1 - mask) *
 * destination in float32 as ComfyUI's composite() computes it, and the
 * destination's own outside the source; with resize_source and no mask it
 * is LatentCompositeMasked's resize on the planes (checked against
 * ComfyUI there). */
static void image_composite_masked_matches_comfyui(void **state)
{
    (void)state;
    kiln_image dest = {.width = 9, .height = 7, .channels = 3, .pixels = malloc(9 * 7 * 3)},
               src = {.width = 6, .height = 5, .channels = 3, .pixels = malloc(6 * 5 * 3)}, out;
    assert_non_null(dest.pixels), assert_non_null(src.pixels);
    for (int i = 0; i < 9 * 7 * 3; i++) dest.pixels[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < 6 * 5 * 3; i++) src.pixels[i] = (uint8_t)(i * 53 + 200);
    kiln_mask mask = mask_of("small"); /* 6 x 5, with 0, 1 and fractions */
    for (int at = 0; at < 2; at++) {
        const int x = at ? 5 : 2, y = at ? 4 : 1; /* the second cut at the far edges */
        assert_kiln_ok(kiln_image_composite_masked(&dest, &src, x, y, false, &mask, &out));
        assert_int_equal(out.width, 9), assert_int_equal(out.height, 7);
        int bad = 0;
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 9; c++)
                for (int k = 0; k < 3; k++) {
                    const float d = dest.pixels[(r * 9 + c) * 3 + k] / 255.0f;
                    float want = d;
                    if (r >= y && c >= x && r - y < 5 && c - x < 6) {
                        const float m = mask.weights[(r - y) * 6 + (c - x)];
                        want = m * (src.pixels[((r - y) * 6 + (c - x)) * 3 + k] / 255.0f) + (1.0f - m) * d;
                    }
                    const float v = 255.0f * want;
                    const uint8_t byte = v > 255.0f ? 255 : v > 0.0f ? (uint8_t)v : 0;
                    bad += out.pixels[(r * 9 + c) * 3 + k] != byte;
                }
        if (bad) fail_msg("ImageCompositeMasked at (%d, %d): %d bytes not ComfyUI's", x, y, bad);
        kiln_image_free(&out);
    }
    /* resized and unmasked: the planes LatentCompositeMasked makes */
    float *to = malloc(9 * 7 * 3 * sizeof *to), *from = malloc(6 * 5 * 3 * sizeof *from);
    assert_non_null(to), assert_non_null(from);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 9 * 7; i++) to[k * 63 + i] = dest.pixels[i * 3 + k] / 255.0f;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 6 * 5; i++) from[k * 30 + i] = src.pixels[i * 3 + k] / 255.0f;
    kiln_latent a = {.data = to, .batch = 1, .channels = 3, .height = 7, .width = 9},
                b = {.data = from, .batch = 1, .channels = 3, .height = 5, .width = 6}, made;
    assert_kiln_ok(kiln_latent_composite_masked(&a, &b, 1, 2, true, NULL, 0, 0, &made));
    kiln_image want;
    assert_kiln_ok(kiln_image_from_unit(made.data, 7, 9, &want));
    assert_kiln_ok(kiln_image_composite_masked(&dest, &src, 1, 2, true, NULL, &out));
    assert_memory_equal(out.pixels, want.pixels, 9 * 7 * 3);
    kiln_image_free(&out), kiln_image_free(&want), kiln_latent_free(&made);
    assert_refused_naming(kiln_image_composite_masked(&dest, &src, -1, 0, false, NULL, &out), "x -1");
    assert_null(out.pixels);
    free(to), free(from);
    kiln_mask_free(&mask);
    kiln_image_free(&dest), kiln_image_free(&src);
}

/* ImageColorToMask: 1 exactly where the three bytes are the colour (one
 * that differs in a single channel's low bit stays 0); a colour past
 * 0xFFFFFF refused. */
static void color_to_mask(void **state)
{
    (void)state;
    uint8_t pixels[4 * 3] = {0x12, 0x34, 0x56, 0x12, 0x34, 0x57, 0x12, 0x34, 0x56, 0xFF, 0xFF, 0xFF};
    const kiln_image img = {2, 2, 3, pixels};
    kiln_mask mask;
    assert_kiln_ok(kiln_mask_from_color(&img, 0x123456, &mask));
    const float want[4] = {1, 0, 1, 0};
    assert_int_equal(mask.width, 2), assert_int_equal(mask.height, 2);
    assert_memory_equal(mask.weights, want, sizeof want);
    kiln_mask_free(&mask);
    assert_kiln_ok(kiln_mask_from_color(&img, 0xFFFFFF, &mask));
    assert_true(mask.weights[3] == 1.0f && mask.weights[0] == 0.0f);
    kiln_mask_free(&mask);
    assert_refused_naming(kiln_mask_from_color(&img, 0x1000000, &mask), "color 0x1000000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(color_to_mask),
        cmocka_unit_test(solid_matches_comfyui),
        cmocka_unit_test(from_image_matches_comfyui),
        cmocka_unit_test(to_image_matches_saveimage),
        cmocka_unit_test(invert_threshold_match_comfyui),
        cmocka_unit_test(crop_matches_comfyui),
        cmocka_unit_test(composite_arithmetic_matches_comfyui),
        cmocka_unit_test(composite_logic_on_binary_masks),
        cmocka_unit_test(composite_logic_rounds_like_comfyui),
        cmocka_unit_test(feather_matches_comfyui),
        cmocka_unit_test(grow_matches_comfyui),
        cmocka_unit_test(load_matches_comfyui),
        cmocka_unit_test(load_with_mask_matches_loadimage),
        cmocka_unit_test(image_composite_masked_matches_comfyui),
        cmocka_unit_test(free_is_safe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
