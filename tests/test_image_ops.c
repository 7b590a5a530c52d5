/* ComfyUI's image nodes on 8-bit pictures (EmptyImage, ImageInvert,
 * ImageBlend, ImageBlur, ImageSharpen, Canny, ImageMorphology, each back to bytes by SaveImage's
 * rule; ImageStitch, ResizeAndPadImage and ImageScaleToMaxDimension, their
 * resizes ImageScale's, bilinear and bicubic within a level) against their
 * code restated (tests/data/image_ops). EmptyImage,
 * ImageInvert and ImageBlend are one float32 rounding a step and must match
 * to the byte; ImageBlur and ImageSharpen sum in an order numpy cannot
 * repeat (torch's conv2d and linspace), so their bytes may be 1 level off
 * the golden's, with at least 99% of each test's equal (the counts
 * printed). Each test checks all its cases and then fails once, naming
 * every case that differs; the calls' refusals (unknown blend modes, factors outside 0..1,
 * radii past 31 or the picture's sides, sigma 0 or below, NULL arguments,
 * empty sizes of 0 or over 16384) are checked with their messages. */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "kiln.h"

static kiln_st_file *data, *layout;

static int setup(void **state)
{
    (void)state;
    data = golden_open("image_ops/image_ops.safetensors");
    layout = golden_open("image_ops/layout.safetensors");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_st_close(data);
    kiln_st_close(layout);
    return 0;
}

/* have's size against the golden's; false (and why printed) where they differ. */
static bool same_size(const kiln_image *have, const golden *want, const char *name)
{
    const int W = (int)want->shape[1], H = (int)want->shape[0];
    if (have->width == W && have->height == H && have->channels == 3 && have->pixels) return true;
    print_error("  %s: kiln's picture is %dx%d (%d channels), ComfyUI's %dx%d\n", name, have->width, have->height,
                have->channels, W, H);
    return false;
}

/* have against the golden picture `name` of f (H, W, 3 bytes), exactly. */
static bool same_picture(kiln_st_file *f, const kiln_image *have, const char *name)
{
    golden want = golden_read(f, name);
    bool same = same_size(have, &want, name);
    const size_t W = want.shape[1];
    size_t differ = 0, first = 0;
    for (size_t i = 0; same && i < want.count; i++)
        if (have->pixels[i] != (uint8_t)want.data[i] && differ++ == 0) first = i;
    if (differ) {
        print_error("  %s: %zu of %zu bytes differ; first %zu (row %zu column %zu channel %zu): kiln %d, ComfyUI %d\n",
                    name, differ, want.count, first, first / 3 / W, first / 3 % W, first % 3, have->pixels[first],
                    (int)want.data[first]);
        same = false;
    }
    golden_free(&want);
    return same;
}

/* Bytes of pictures against their goldens, for near_picture. */
typedef struct {
    size_t count, equal;
} tally;

/* have against the golden picture `name` of f: every byte within 1 level (false,
 * and why printed, where not); its counts printed and added to *t, whose
 * bytes are then wanted at least 99% equal (near_enough): torch's summation
 * order is not numpy's, and one picture of 90 bytes alone would allow none. */
static bool near_picture(kiln_st_file *f, const kiln_image *have, const char *name, tally *t)
{
    golden want = golden_read(f, name);
    bool same = same_size(have, &want, name);
    const size_t W = want.shape[1];
    size_t equal = 0, one = 0, worse = 0, first = 0;
    for (size_t i = 0; same && i < want.count; i++) {
        const int d = abs((int)have->pixels[i] - (int)want.data[i]);
        if (d == 0) equal++;
        else if (d == 1) one++;
        else if (worse++ == 0) first = i;
    }
    if (same) {
        print_message("  %-28s %zu of %zu bytes equal, %zu 1 level off, %zu more\n", name, equal, want.count, one,
                      worse);
        if (worse) {
            print_error("  %s: %zu bytes more than 1 level off; first %zu (row %zu column %zu channel %zu): kiln %d, "
                        "ComfyUI %d\n", name, worse, first, first / 3 / W, first / 3 % W, first % 3,
                        have->pixels[first], (int)want.data[first]);
            same = false;
        }
    }
    t->count += want.count, t->equal += equal;
    golden_free(&want);
    return same;
}

/* 1 where fewer than 99% of the tally's bytes are equal to the goldens'. */
static int near_enough(const tally *t, const char *what)
{
    print_message("  %s: %zu of %zu bytes equal (99%% wanted)\n", what, t->equal, t->count);
    if (t->equal * 100 >= t->count * 99) return 0;
    print_error("  %s: only %zu of %zu bytes equal\n", what, t->equal, t->count);
    return 1;
}

/* A failed call whose message names who refused: the call or its node. */
#define assert_refused_by(call, function, node)                                                              \
    do {                                                                                                     \
        kiln_status st__ = (call);                                                                           \
        if (st__ == KILN_OK) fail_msg("%s succeeded", #call);                                                \
        if (!strstr(kiln_last_error(), (function)) && !strstr(kiln_last_error(), (node)))                   \
            fail_msg("%s: message '%s' names neither %s nor %s", #call, kiln_last_error(), (function), (node)); \
    } while (0)

static void all_same(int bad, const char *what)
{
    if (bad) fail_msg("%d %s differ from ComfyUI's (printed above)", bad, what);
}

/* EmptyImage of five colours and sizes (1x1 to 13x11); sides of 16384
 * made, 0, negative and 16385 refused, and colours past 0xFFFFFF. */
static void empty_matches_comfyui(void **state)
{
    (void)state;
    static const struct { uint32_t color; int w, h; } cases[] = {
        {0xFF8000, 13, 11}, {0x123456, 1, 1}, {0xFFFFFF, 6, 5}, {0x000000, 2, 3}, {0x41BF7F, 5, 2}};
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_image out;
        assert_kiln_ok(kiln_image_empty(cases[k].w, cases[k].h, cases[k].color, &out));
        char name[64];
        snprintf(name, sizeof name, "empty.%06x_%d_%d", (unsigned)cases[k].color, cases[k].w, cases[k].h);
        bad += !same_picture(data, &out, name);
        kiln_image_free(&out);
    }
    /* the largest sides: every pixel the colour's bytes */
    kiln_image out = {0};
    assert_kiln_ok(kiln_image_empty(16384, 1, 0x123456, &out));
    assert_int_equal(out.width, 16384);
    assert_int_equal(out.height, 1);
    for (int i = 0; i < 16384; i++)
        if (out.pixels[3 * i] != 0x12 || out.pixels[3 * i + 1] != 0x34 || out.pixels[3 * i + 2] != 0x56)
            fail_msg("EmptyImage 16384x1: pixel %d is %d %d %d", i, out.pixels[3 * i], out.pixels[3 * i + 1],
                     out.pixels[3 * i + 2]);
    kiln_image_free(&out);
    assert_kiln_ok(kiln_image_empty(1, 16384, 0xFF8000, &out));
    assert_int_equal(out.height, 16384);
    assert_int_equal(out.pixels[3 * 16383], 0xFF);
    assert_int_equal(out.pixels[3 * 16383 + 1], 0x80);
    kiln_image_free(&out);

    assert_refused_naming(kiln_image_empty(0, 4, 0, &out), "0x4");
    assert_refused_naming(kiln_image_empty(4, 0, 0, &out), "4x0");
    assert_refused_naming(kiln_image_empty(-3, 4, 0, &out), "-3x4");
    assert_refused_naming(kiln_image_empty(16385, 1, 0, &out), "16385x1");
    assert_refused_naming(kiln_image_empty(1, 16385, 0, &out), "1x16385");
    assert_refused_naming(kiln_image_empty(4, 4, 0x1000000, &out), "0x1000000");
    assert_null(out.pixels);
    assert_refused_by(kiln_image_empty(4, 4, 0, NULL), "kiln_image_empty", "EmptyImage");
    all_same(bad, "empty pictures");
}

/* ImageInvert of a picture holding every byte value: 1 - v in float32 and
 * SaveImage's truncation give 254 - c, not 255 - c, for many c. */
static void invert_matches_comfyui(void **state)
{
    (void)state;
    kiln_image a = golden_picture(data, "a"), out = {0};
    assert_kiln_ok(kiln_image_invert(&a, &out));
    int bad = !same_picture(data, &out, "invert");
    kiln_image_free(&out);
    assert_refused_by(kiln_image_invert(NULL, &out), "kiln_image_invert", "ImageInvert");
    assert_refused_by(kiln_image_invert(&a, NULL), "kiln_image_invert", "ImageInvert");
    kiln_image nothing = {.width = 13, .height = 11, .channels = 3};
    assert_refused_by(kiln_image_invert(&nothing, &out), "kiln_image_invert", "ImageInvert");
    assert_null(out.pixels);
    kiln_image_free(&a);
    all_same(bad, "pictures");
}

/* ImageBlend of two pictures of one size in each of the six modes at
 * factors 0.5, 0.8 and 1; factor 0 gives image1 back. */
static void blend_matches_comfyui(void **state)
{
    (void)state;
    static const char *const modes[] = {"normal", "multiply", "screen", "overlay", "soft_light", "difference"};
    static const double factors[] = {0.5, 0.8, 1.0};
    kiln_image a = golden_picture(data, "a"), b = golden_picture(data, "b"), out = {0};
    int bad = 0;
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        for (size_t f = 0; f < sizeof factors / sizeof *factors; f++) {
            assert_kiln_ok(kiln_image_blend(&a, &b, factors[f], modes[m], &out));
            char name[64];
            snprintf(name, sizeof name, "blend.%s.%g", modes[m], factors[f]);
            bad += !same_picture(data, &out, name);
            kiln_image_free(&out);
        }
        /* image1 x 1 + blended x 0: image1's bytes (c / 255 x 255 is c again) */
        assert_kiln_ok(kiln_image_blend(&a, &b, 0.0, modes[m], &out));
        if (memcmp(out.pixels, a.pixels, (size_t)3 * a.width * a.height) != 0) {
            print_error("  blend.%s.0: not image1\n", modes[m]);
            bad++;
        }
        kiln_image_free(&out);
    }
    kiln_image_free(&a), kiln_image_free(&b);
    all_same(bad, "blends");
}

/* ImageBlend with image2 of another size: resized to image1's (its values
 * are checked where the resize is); the result has image1's size, factor 0
 * gives image1, a black image2 in "normal" at 1 gives black. */
static void blend_resizes_image2(void **state)
{
    (void)state;
    kiln_image a = golden_picture(data, "a"), small = golden_picture(data, "small"), black = {0}, out = {0};
    assert_kiln_ok(kiln_image_empty(6, 5, 0x000000, &black));
    assert_kiln_ok(kiln_image_blend(&a, &small, 0.5, "multiply", &out));
    assert_int_equal(out.width, a.width);
    assert_int_equal(out.height, a.height);
    kiln_image_free(&out);
    assert_kiln_ok(kiln_image_blend(&a, &small, 0.0, "soft_light", &out));
    assert_memory_equal(out.pixels, a.pixels, (size_t)3 * a.width * a.height);
    kiln_image_free(&out);
    assert_kiln_ok(kiln_image_blend(&a, &black, 1.0, "normal", &out));
    for (size_t i = 0; i < (size_t)3 * a.width * a.height; i++)
        if (out.pixels[i]) fail_msg("blend onto a resized black picture: byte %zu is %d", i, out.pixels[i]);
    kiln_image_free(&out);
    /* a larger image2 onto a smaller image1 */
    assert_kiln_ok(kiln_image_blend(&small, &a, 0.25, "screen", &out));
    assert_int_equal(out.width, small.width);
    assert_int_equal(out.height, small.height);
    kiln_image_free(&out);
    kiln_image_free(&a), kiln_image_free(&small), kiln_image_free(&black);
}

/* ImageBlend's refusals: unknown modes, factors outside 0..1, NULL arguments. */
static void blend_refusals(void **state)
{
    (void)state;
    kiln_image a = golden_picture(data, "a"), b = golden_picture(data, "b"), out = {0};
    assert_refused_naming(kiln_image_blend(&a, &b, 0.5, "add", &out), "'add'");
    assert_refused_naming(kiln_image_blend(&a, &b, 0.5, "Normal", &out), "'Normal'");
    assert_refused_naming(kiln_image_blend(&a, &b, 0.5, "", &out), "''");
    assert_refused_by(kiln_image_blend(&a, &b, 0.5, NULL, &out), "kiln_image_blend", "ImageBlend");
    assert_refused_naming(kiln_image_blend(&a, &b, 1.5, "normal", &out), "1.5");
    assert_refused_naming(kiln_image_blend(&a, &b, -0.1, "normal", &out), "-0.1");
    assert_refused_by(kiln_image_blend(&a, &b, NAN, "normal", &out), "kiln_image_blend", "ImageBlend");
    assert_refused_by(kiln_image_blend(NULL, &b, 0.5, "normal", &out), "kiln_image_blend", "ImageBlend");
    assert_refused_by(kiln_image_blend(&a, NULL, 0.5, "normal", &out), "kiln_image_blend", "ImageBlend");
    assert_refused_by(kiln_image_blend(&a, &b, 0.5, "normal", NULL), "kiln_image_blend", "ImageBlend");
    assert_null(out.pixels);
    kiln_image_free(&a), kiln_image_free(&b);
}

/* ImageBlur at (radius, sigma) (1, 1), (3, 0.5), (5, 2.5) on 13x11 and
 * (1, 1), (4, 2.5) on 6x5 (radius one below the rows); radius 0 gives the
 * picture back. */
static void blur_matches_comfyui(void **state)
{
    (void)state;
    static const struct { const char *picture; int r; double sigma; } cases[] = {
        {"a", 1, 1.0}, {"a", 3, 0.5}, {"a", 5, 2.5}, {"small", 1, 1.0}, {"small", 4, 2.5}};
    int bad = 0;
    tally t = {0};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_image in = golden_picture(data, cases[k].picture), out = {0};
        assert_kiln_ok(kiln_image_blur(&in, cases[k].r, cases[k].sigma, &out));
        char name[64];
        snprintf(name, sizeof name, "%s.%d_%g", strcmp(cases[k].picture, "a") ? "blur_small" : "blur", cases[k].r,
                 cases[k].sigma);
        bad += !near_picture(data, &out, name, &t);
        kiln_image_free(&out);
        assert_kiln_ok(kiln_image_blur(&in, 0, cases[k].sigma, &out));
        assert_int_equal(out.width, in.width);
        assert_int_equal(out.height, in.height);
        assert_memory_equal(out.pixels, in.pixels, (size_t)3 * in.width * in.height);
        kiln_image_free(&out);
        kiln_image_free(&in);
    }
    bad += near_enough(&t, "blurs");
    all_same(bad, "blurs");
}

/* ImageSharpen at (radius, sigma, alpha) (1, 1, 1), (2, 0.7, 0.3),
 * (4, 3, 2) on 13x11 and (2, 0.7, 0.3) on 6x5; radius 0 gives the picture
 * back (the node returns it as it is). */
static void sharpen_matches_comfyui(void **state)
{
    (void)state;
    static const struct { const char *picture; int r; double sigma, alpha; } cases[] = {
        {"a", 1, 1.0, 1.0}, {"a", 2, 0.7, 0.3}, {"a", 4, 3.0, 2.0}, {"small", 2, 0.7, 0.3}};
    int bad = 0;
    tally t = {0};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_image in = golden_picture(data, cases[k].picture), out = {0};
        assert_kiln_ok(kiln_image_sharpen(&in, cases[k].r, cases[k].sigma, cases[k].alpha, &out));
        char name[64];
        snprintf(name, sizeof name, "%s.%d_%g_%g", strcmp(cases[k].picture, "a") ? "sharpen_small" : "sharpen",
                 cases[k].r, cases[k].sigma, cases[k].alpha);
        bad += !near_picture(data, &out, name, &t);
        kiln_image_free(&out);
        assert_kiln_ok(kiln_image_sharpen(&in, 0, cases[k].sigma, cases[k].alpha, &out));
        assert_memory_equal(out.pixels, in.pixels, (size_t)3 * in.width * in.height);
        kiln_image_free(&out);
        kiln_image_free(&in);
    }
    bad += near_enough(&t, "sharpened pictures");
    all_same(bad, "sharpened pictures");
}

/* ImageBlur's and ImageSharpen's refusals: radius 32 or at least a side
 * (torch's reflect pad needs it below both), negative radius, sigma 0,
 * negative or NaN, Sharpen's alpha outside 0..5, NULL arguments. */
static void blur_sharpen_refusals(void **state)
{
    (void)state;
    kiln_image a = golden_picture(data, "a"), small = golden_picture(data, "small"), out = {0};
    kiln_image dot = {0};
    assert_kiln_ok(kiln_image_empty(1, 1, 0x808080, &dot));
    /* a 40x40 picture, so that only the limit of 31 refuses 32 */
    kiln_image big = {0};
    assert_kiln_ok(kiln_image_empty(40, 40, 0x336699, &big));
    assert_kiln_ok(kiln_image_blur(&big, 31, 1.0, &out));
    kiln_image_free(&out);
    assert_refused_naming(kiln_image_blur(&big, 32, 1.0, &out), "32");
    assert_refused_naming(kiln_image_sharpen(&big, 32, 1.0, 1.0, &out), "32");
    assert_refused_naming(kiln_image_blur(&a, -1, 1.0, &out), "-1");
    assert_refused_naming(kiln_image_blur(&small, 5, 1.0, &out), "5"); /* small has 5 rows */
    assert_refused_naming(kiln_image_blur(&small, 6, 1.0, &out), "6");
    assert_refused_naming(kiln_image_blur(&a, 11, 1.0, &out), "11"); /* a has 11 rows, 13 columns */
    assert_refused_naming(kiln_image_blur(&dot, 1, 1.0, &out), "1");
    assert_refused_naming(kiln_image_sharpen(&small, 5, 1.0, 1.0, &out), "5");
    assert_refused_naming(kiln_image_sharpen(&dot, 1, 1.0, 1.0, &out), "1");
    assert_refused_naming(kiln_image_blur(&a, 1, 0.0, &out), "sigma");
    assert_refused_naming(kiln_image_blur(&a, 1, -1.0, &out), "-1");
    assert_refused_naming(kiln_image_blur(&a, 1, NAN, &out), "sigma");
    assert_refused_naming(kiln_image_sharpen(&a, 1, 0.0, 1.0, &out), "sigma");
    assert_refused_naming(kiln_image_sharpen(&a, 1, -0.5, 1.0, &out), "-0.5");
    assert_refused_naming(kiln_image_sharpen(&a, 1, 1.0, -1.0, &out), "-1"); /* the node's alpha: 0 to 5 */
    assert_refused_naming(kiln_image_sharpen(&a, 1, 1.0, 5.5, &out), "5.5");
    assert_refused_by(kiln_image_blur(NULL, 1, 1.0, &out), "kiln_image_blur", "ImageBlur");
    assert_refused_by(kiln_image_blur(&a, 1, 1.0, NULL), "kiln_image_blur", "ImageBlur");
    assert_refused_by(kiln_image_sharpen(NULL, 1, 1.0, 1.0, &out), "kiln_image_sharpen", "ImageSharpen");
    assert_refused_by(kiln_image_sharpen(&a, 1, 1.0, 1.0, NULL), "kiln_image_sharpen", "ImageSharpen");
    assert_null(out.pixels);
    kiln_image_free(&a), kiln_image_free(&small), kiln_image_free(&dot), kiln_image_free(&big);
}

/* ImageAddNoise against the node's line run by torch (image_ops/add_noise):
 * a picture alone at two seeds and three strengths, and a batch of two
 * drawn at once, to the byte; refusals. */
static void add_noise_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("image_ops/add_noise.safetensors");
    kiln_image batch[2] = {golden_picture(data, "a"), golden_picture(data, "b")}, out[2];
    static const struct { uint64_t seed; double strength; const char *name; } cases[] = {
        {0, 0.5, "noise.a.0.0.5"}, {123456789, 0.5, "noise.a.123456789.0.5"}, {42, 0.13, "noise.a.42.0.13"},
        {42, 1.0, "noise.a.42.1"}};
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_kiln_ok(kiln_image_add_noise(batch, 1, cases[k].seed, cases[k].strength, out));
        golden want = golden_read(f, cases[k].name);
        for (size_t i = 0; i < want.count; i++) bad += out[0].pixels[i] != (uint8_t)want.data[i];
        golden_free(&want);
        kiln_image_free(&out[0]);
    }
    assert_kiln_ok(kiln_image_add_noise(batch, 2, 7, 0.3, out));
    golden want = golden_read(f, "noise.ab.7.0.3");
    const size_t per = want.count / 2;
    for (size_t i = 0; i < want.count; i++) bad += out[i / per].pixels[i % per] != (uint8_t)want.data[i];
    golden_free(&want);
    kiln_image_free(&out[0]);
    kiln_image_free(&out[1]);
    if (bad) fail_msg("%d bytes differ from ComfyUI's", bad);
    assert_refused_by(kiln_image_add_noise(batch, 1, 0, 1.5, out), "strength 1.5", "ImageAddNoise");
    kiln_image small = {0};
    assert_kiln_ok(kiln_image_empty(3, 2, 0, &small));
    const kiln_image mixed[2] = {batch[0], small};
    assert_refused_by(kiln_image_add_noise(mixed, 2, 0, 0.5, out), "picture 1 of 3x2", "ImageAddNoise");
    kiln_image_free(&small);
    kiln_image_free(&batch[0]);
    kiln_image_free(&batch[1]);
    kiln_st_close(f);
}

/* ImageStitch in the four directions, image2 matched to image1 (lanczos) or
 * centred and padded, with and without spacing of each colour kind (an odd
 * one rounded up); the refusals. */
static void stitch_matches_comfyui(void **state)
{
    (void)state;
    static const struct { const char *direction; bool match; int spacing; const char *color; } cases[] = {
        {"right", true, 0, "white"}, {"down", true, 0, "white"}, {"left", true, 0, "white"}, {"up", true, 0, "white"},
        {"right", false, 3, "red"}, {"down", false, 3, "red"},   {"left", false, 3, "red"},  {"up", false, 3, "red"},
        {"right", false, 0, "white"}, {"down", true, 2, "blue"}, {"up", false, 4, "black"}};
    kiln_image a = golden_picture(layout, "a"), b = golden_picture(layout, "b"), out = {0};
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_kiln_ok(kiln_image_stitch(&a, &b, cases[k].direction, cases[k].match, cases[k].spacing, cases[k].color,
                                         &out));
        char name[64];
        snprintf(name, sizeof name, "stitch.%s.%d.%d.%s", cases[k].direction, cases[k].match, cases[k].spacing,
                 cases[k].color);
        bad += !same_picture(layout, &out, name);
        kiln_image_free(&out);
    }
    assert_refused_by(kiln_image_stitch(&a, &b, "sideways", true, 0, "white", &out), "direction 'sideways'",
                      "ImageStitch");
    assert_refused_by(kiln_image_stitch(&a, &b, "right", true, 0, "purple", &out), "spacing color 'purple'",
                      "ImageStitch");
    assert_refused_by(kiln_image_stitch(&a, &b, "right", true, 1025, "white", &out), "spacing 1025", "ImageStitch");
    assert_refused_by(kiln_image_stitch(&a, NULL, "right", true, 0, "white", &out), "no pictures", "ImageStitch");
    kiln_image tall = {0};
    assert_kiln_ok(kiln_image_empty(1, 200, 0, &tall));
    assert_refused_by(kiln_image_stitch(&a, &tall, "right", true, 0, "white", &out), "matched to image1", "ImageStitch");
    assert_null(out.pixels);
    kiln_image_free(&tall);
    kiln_image_free(&a);
    kiln_image_free(&b);
    all_same(bad, "pictures");
}

/* have against layout's golden `name` resized by `method`: lanczos, nearest-exact and area to the byte, bilinear
   and bicubic within a level (ImageScale's rule: torch's sums on the pictures' channels-last views round in an
   order of their own, a float truncated at a byte's edge) */
static bool resized_picture(const kiln_image *have, const char *method, const char *name, tally *t)
{
    if (strcmp(method, "bilinear") != 0 && strcmp(method, "bicubic") != 0) return same_picture(layout, have, name);
    return near_picture(layout, have, name, t);
}

/* ResizeAndPadImage into a wider and a taller frame with each method, and
 * ImageScaleToMaxDimension on a wide and a tall picture (a side that rounds
 * down too); the refusals. */
static void resize_and_pad_and_max_dimension_match_comfyui(void **state)
{
    (void)state;
    static const char *const methods[] = {"lanczos", "bilinear", "bicubic", "nearest-exact", "area"};
    kiln_image a = golden_picture(layout, "a"), b = golden_picture(layout, "b"), out = {0};
    int bad = 0;
    tally t = {0};
    char name[64];
    for (int k = 0; k < 5; k++) {
        assert_kiln_ok(kiln_image_resize_and_pad(&a, 17, 9, "white", methods[k], &out));
        snprintf(name, sizeof name, "pad.%s.17x9.white", methods[k]);
        bad += !resized_picture(&out, methods[k], name, &t);
        kiln_image_free(&out);
        assert_kiln_ok(kiln_image_resize_and_pad(&a, 6, 20, "black", methods[k], &out));
        snprintf(name, sizeof name, "pad.%s.6x20.black", methods[k]);
        bad += !resized_picture(&out, methods[k], name, &t);
        kiln_image_free(&out);
        assert_kiln_ok(kiln_image_scale_to_max_dimension(&a, methods[k], 20, &out));
        snprintf(name, sizeof name, "max.a.%s.20", methods[k]);
        bad += !resized_picture(&out, methods[k], name, &t);
        kiln_image_free(&out);
        assert_kiln_ok(kiln_image_scale_to_max_dimension(&b, methods[k], 9, &out));
        snprintf(name, sizeof name, "max.b.%s.9", methods[k]);
        bad += !resized_picture(&out, methods[k], name, &t);
        kiln_image_free(&out);
    }
    assert_kiln_ok(kiln_image_scale_to_max_dimension(&b, "bicubic", 3, &out));
    bad += !resized_picture(&out, "bicubic", "max.b.bicubic.3", &t);
    kiln_image_free(&out);
    bad += near_enough(&t, "bilinear and bicubic");
    assert_refused_by(kiln_image_resize_and_pad(&a, 17, 9, "grey", "area", &out), "padding color 'grey'",
                      "ResizeAndPadImage");
    assert_refused_by(kiln_image_resize_and_pad(&a, 0, 9, "white", "area", &out), "target 0x9", "ResizeAndPadImage");
    assert_refused_by(kiln_image_resize_and_pad(&a, 17, 9, "white", "bislerp", &out), "bislerp", "ResizeAndPadImage");
    assert_refused_by(kiln_image_resize_and_pad(&a, 1, 9, "white", "area", &out), "is 1x0", "ResizeAndPadImage");
    assert_refused_by(kiln_image_scale_to_max_dimension(&a, "area", 0, &out), "largest size 0",
                      "ImageScaleToMaxDimension");
    assert_refused_by(kiln_image_scale_to_max_dimension(&a, "sideways", 20, &out), "sideways",
                      "ImageScaleToMaxDimension");
    assert_null(out.pixels);
    kiln_image_free(&a);
    kiln_image_free(&b);
    all_same(bad, "pictures");
}

/* Canny against kornia's canny as ComfyUI's node calls it (tests/data/
 * image_ops/make_canny_data.py): a picture of flat shapes, gradients and
 * noise, and one of random pixels, at three pairs of thresholds, to the
 * byte; then the refusals. */
static void canny_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("image_ops/canny.safetensors");
    static const char *const pictures[2][2] = {{"shapes", KILN_TEST_DATA "/image_ops/canny_61x47.png"},
                                               {"hint", KILN_TEST_DATA "/controlnet/hint_37x23.png"}};
    static const double thresholds[3][2] = {{0.4, 0.8}, {0.1, 0.3}, {0.6, 1.2}};
    for (int p = 0; p < 2; p++) {
        kiln_image img;
        assert_kiln_ok(kiln_image_load(pictures[p][1], &img));
        for (int t = 0; t < 3; t++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%g_%g", pictures[p][0], thresholds[t][0], thresholds[t][1]);
            golden want = golden_read(f, name);
            kiln_image edges;
            assert_kiln_ok(kiln_image_canny(&img, thresholds[t][0], thresholds[t][1], &edges));
            assert_int_equal(want.count, (size_t)edges.width * edges.height);
            size_t differ = 0, lit = 0;
            for (size_t i = 0; i < want.count; i++) {
                const uint8_t *px = &edges.pixels[3 * i];
                differ += px[0] != (uint8_t)want.data[i] || px[1] != px[0] || px[2] != px[0];
                lit += px[0] != 0;
            }
            print_message("  %-16s %zu edge pixels, %zu differ\n", name, lit, differ);
            assert_int_equal(differ, 0);
            kiln_image_free(&edges);
            golden_free(&want);
        }
        kiln_image_free(&img);
    }
    kiln_st_close(f);
    kiln_image a = golden_picture(data, "a"), out = {0}, dot = {0};
    assert_kiln_ok(kiln_image_empty(2, 5, 0x808080, &dot));
    assert_refused_naming(kiln_image_canny(&a, 0.8, 0.4, &out), "0.8");
    assert_refused_naming(kiln_image_canny(&a, 0.0, 0.4, &out), "0 < low");
    assert_refused_naming(kiln_image_canny(&dot, 0.4, 0.8, &out), "2x5");
    kiln_image_free(&a);
    kiln_image_free(&dot);
}

/* ImageMorphology against kornia's as ComfyUI's node calls it (tests/data/
 * image_ops/make_morphology_data.py): every operation at kernels 3, 4 (off
 * centre) and 9, to the byte; then the refusals. */
static void morphology_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("image_ops/morphology.safetensors");
    static const char *const ops[] = {"erode", "dilate", "open", "close", "gradient", "top_hat", "bottom_hat"};
    static const int kernels[] = {3, 4, 9};
    kiln_image img;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/image_ops/canny_61x47.png", &img));
    for (int o = 0; o < 7; o++)
        for (int k = 0; k < 3; k++) {
            char name[32];
            snprintf(name, sizeof name, "%s.%d", ops[o], kernels[k]);
            golden want = golden_read(f, name);
            kiln_image made;
            assert_kiln_ok(kiln_image_morphology(&img, ops[o], kernels[k], &made));
            assert_int_equal(want.count, (size_t)3 * made.width * made.height);
            size_t differ = 0;
            for (size_t i = 0; i < want.count; i++) differ += made.pixels[i] != (uint8_t)want.data[i];
            if (differ) fail_msg("%s: %zu bytes differ", name, differ);
            kiln_image_free(&made);
            golden_free(&want);
        }
    print_message("  21 pictures, each to the byte\n");
    kiln_image out = {0};
    assert_refused_naming(kiln_image_morphology(&img, "thin", 3, &out), "thin");
    assert_refused_naming(kiln_image_morphology(&img, "erode", 2, &out), "2");
    assert_refused_naming(kiln_image_morphology(&img, "erode", 1000, &out), "1000");
    kiln_image_free(&img);
    kiln_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_matches_comfyui),
        cmocka_unit_test(invert_matches_comfyui),
        cmocka_unit_test(blend_matches_comfyui),
        cmocka_unit_test(blend_resizes_image2),
        cmocka_unit_test(blend_refusals),
        cmocka_unit_test(blur_matches_comfyui),
        cmocka_unit_test(sharpen_matches_comfyui),
        cmocka_unit_test(blur_sharpen_refusals),
        cmocka_unit_test(add_noise_matches_comfyui),
        cmocka_unit_test(canny_matches_comfyui),
        cmocka_unit_test(morphology_matches_comfyui),
        cmocka_unit_test(stitch_matches_comfyui),
        cmocka_unit_test(resize_and_pad_and_max_dimension_match_comfyui),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
