/* LatentUpscaleBy and LatentUpscale against torch's interpolate (tests/data/resample, made by
 * make_resample_data.py): nearest-exact and area to the bit, bilinear and
 * bicubic to float rounding, up and down, at sizes rounded half to even. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "golden.h"
#include "image.h"
#include "kiln.h"
#include "resample.h"
#include "status.h"

static void latent_upscale_by(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("resample/golden.safetensors");
    golden latent = golden_read(f, "latent");
    const char *methods[] = {"nearest-exact", "bilinear", "bicubic"};
    const char *scales[] = {"1.5", "2.0", "0.75"};
    for (int i = 0; i < 3; i++) {
        kiln_resample_method m;
        assert_true(kiln_resample_from_name(methods[i], &m));
        assert_string_equal(kiln_resample_name(m), methods[i]);
        for (int j = 0; j < 3; j++) {
            char key[64];
            snprintf(key, sizeof key, "%s.%s", methods[i], scales[j]);
            golden want = golden_read(f, key);
            float *out;
            int h, w;
            assert_kiln_ok(kiln_resample_by(latent.data, 2, 4, 7, 9, atof(scales[j]), m, &out, &h, &w));
            assert_int_equal(h, (int)want.shape[2]);
            assert_int_equal(w, (int)want.shape[3]);
            print_message("  %-19s ", key);
            if (m == KILN_RESAMPLE_NEAREST_EXACT) {
                assert_memory_equal(out, want.data, want.count * sizeof(float));
                print_message("bit-exact\n");
            } else {
                assert_rel_l2_le(out, want.data, want.count, 1e-6);
            }
            free(out);
            golden_free(&want);
        }
    }
    golden_free(&latent);
    kiln_st_close(f);
}

/* LatentUpscale (tests/data/resample/latent_upscale.golden.safetensors,
 * ComfyUI's sizes and centre crop restated on torch): a size, a size with
 * the centre cut, a side following the other's aspect ratio, sides raised
 * to 64 pixels; "lanczos" (an image method) is refused by name. */
static void latent_upscale_to_a_size(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("resample/golden.safetensors");
    golden latent = golden_read(f, "latent");
    kiln_st_close(f);
    f = golden_open("resample/latent_upscale.golden.safetensors");
    static const struct {
        const char *method;
        int width, height;
        bool crop;
    } cases[] = {{"bilinear", 96, 64, false}, {"bicubic", 64, 96, true}, {"nearest-exact", 0, 80, false},
                 {"bilinear", 40, 0, true}};
    const kiln_latent in = {latent.data, 2, 4, 7, 9, NULL, 0, 0, NULL, NULL};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s.%dx%d.%s", cases[i].method, cases[i].width, cases[i].height,
                 cases[i].crop ? "center" : "disabled");
        golden want = golden_read(f, key);
        kiln_latent out;
        assert_kiln_ok(kiln_latent_upscale(&in, cases[i].method, cases[i].width, cases[i].height, cases[i].crop, &out));
        assert_int_equal(out.height, (int)want.shape[2]);
        assert_int_equal(out.width, (int)want.shape[3]);
        print_message("  %-28s ", key);
        assert_rel_l2_le(out.data, want.data, want.count, 1e-6);
        kiln_latent_free(&out);
        golden_free(&want);
    }
    kiln_latent out;
    assert_int_equal(kiln_latent_upscale(&in, "lanczos", 64, 64, false, &out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "'lanczos'"));
    golden_free(&latent);
    kiln_st_close(f);
}

/* ImageScale and ImageScaleBy (tests/data/resample/image_scale.golden,
 * ComfyUI's common_upscale restated, saved as SaveImage does): lanczos and
 * nearest-exact to the byte, bilinear and bicubic within a level (a float
 * truncated at a byte's edge). */
static void image_scale(void **state)
{
    (void)state;
    kiln_image picture;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &picture));
    kiln_st_file *f = golden_open("resample/image_scale.golden.safetensors");
    static const struct {
        const char *key, *method;
        int width, height;
        bool crop;
        int tolerance;
    } cases[] = {{"by.bilinear.1.5", "bilinear", 56, 34, false, 1},
                 {"bicubic.30x30.center", "bicubic", 30, 30, true, 1},
                 {"nearest-exact.0x40.disabled", "nearest-exact", 64, 40, false, 0},
                 {"lanczos.20x12.disabled", "lanczos", 20, 12, false, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        golden want = golden_read(f, cases[i].key);
        kiln_image out;
        assert_kiln_ok(kiln_image_scale(&picture, cases[i].method, cases[i].width, cases[i].height, cases[i].crop,
                                        &out));
        assert_int_equal(out.height, (int)want.shape[0]);
        assert_int_equal(out.width, (int)want.shape[1]);
        int worst = 0;
        for (size_t k = 0; k < want.count; k++) {
            const int d = abs((int)out.pixels[k] - (int)want.data[k]);
            worst = d > worst ? d : worst;
        }
        print_message("  %-28s within %d level(s)\n", cases[i].key, worst);
        assert_true(worst <= cases[i].tolerance);
        kiln_image_free(&out);
        golden_free(&want);
    }
    kiln_st_close(f);
    kiln_image_free(&picture);
}

/* The "area" method (tests/data/resample/area.golden.safetensors, torch's
 * adaptive average pooling): LatentUpscaleBy down (overlapping windows) and
 * up to the bit, its sums in torch's order; ImageScaleBy to the byte. */
static void area(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("resample/golden.safetensors");
    golden latent = golden_read(f, "latent");
    kiln_st_close(f);
    f = golden_open("resample/area.golden.safetensors");
    const kiln_latent in = {latent.data, 2, 4, 7, 9, NULL, 0, 0, NULL, NULL};
    static const char *const scales[] = {"0.5", "1.5", "2.0"};
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof key, "latent.%s", scales[i]);
        golden want = golden_read(f, key);
        kiln_latent out;
        assert_kiln_ok(kiln_latent_upscale_by(&in, "area", atof(scales[i]), &out));
        assert_int_equal(out.height, (int)want.shape[2]);
        assert_int_equal(out.width, (int)want.shape[3]);
        assert_memory_equal(out.data, want.data, want.count * sizeof(float));
        print_message("  %-12s bit-exact\n", key);
        kiln_latent_free(&out);
        golden_free(&want);
    }
    kiln_image picture, out;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &picture));
    golden want = golden_read(f, "image.by.0.6");
    assert_kiln_ok(kiln_image_scale(&picture, "area", 22, 14, false, &out));
    assert_int_equal(out.width * out.height * 3, (int)want.count);
    for (size_t k = 0; k < want.count; k++) assert_int_equal(out.pixels[k], (int)want.data[k]);
    print_message("  image.by.0.6 to the byte\n");
    kiln_image_free(&out);
    kiln_image_free(&picture);
    golden_free(&want);
    golden_free(&latent);
    kiln_st_close(f);
}

/* bislerp (tests/data/resample/bislerp.golden.safetensors, ComfyUI's
 * comfy/utils.py restated and checked against it to the bit): LatentUpscaleBy
 * up and down, LatentUpscale with the centre cut, and vectors of no length
 * and opposite neighbours (its edge cases) to float rounding (torch's acos
 * and sin are not the C library's); ImageScale, which has no bislerp,
 * refuses it. */
static void bislerp(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("resample/golden.safetensors");
    golden latent = golden_read(f, "latent");
    kiln_st_close(f);
    f = golden_open("resample/bislerp.golden.safetensors");
    const kiln_latent in = {latent.data, 2, 4, 7, 9, NULL, 0, 0, NULL, NULL};
    static const char *const scales[] = {"1.5", "0.75"};
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "latent.%s", scales[i]);
        golden want = golden_read(f, key);
        kiln_latent out;
        assert_kiln_ok(kiln_latent_upscale_by(&in, "bislerp", atof(scales[i]), &out));
        assert_int_equal(out.height * out.width * 8, (int)want.count);
        print_message("  %-20s", key);
        assert_rel_l2_le(out.data, want.data, want.count, 1e-6);
        kiln_latent_free(&out);
        golden_free(&want);
    }
    golden want = golden_read(f, "latent.96x64.center");
    kiln_latent out;
    assert_kiln_ok(kiln_latent_upscale(&in, "bislerp", 96, 64, true, &out));
    print_message("  %-20s", "latent.96x64.center");
    assert_rel_l2_le(out.data, want.data, want.count, 1e-6);
    kiln_latent_free(&out);
    golden_free(&want);
    golden edges = golden_read(f, "zeros");
    want = golden_read(f, "zeros.2.0");
    float *grown = malloc(want.count * sizeof *grown);
    assert_kiln_ok(kiln_resample_images(edges.data, 1, 4, 7, 9, grown, 14, 18, KILN_RESAMPLE_BISLERP));
    print_message("  %-20s", "zeros.2.0");
    assert_rel_l2_le(grown, want.data, want.count, 1e-6);
    free(grown);
    golden_free(&edges);
    golden_free(&want);
    kiln_image picture, scaled;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &picture));
    assert_int_equal(kiln_image_scale(&picture, "bislerp", 20, 12, false, &scaled), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "'bislerp'"));
    kiln_image_free(&picture);
    golden_free(&latent);
    kiln_st_close(f);
}

static void bad_scales_are_refused(void **state)
{
    (void)state;
    float x[4] = {0}, *out;
    int h, w;
    assert_int_equal(kiln_resample_by(x, 1, 1, 2, 2, 0.1, KILN_RESAMPLE_BILINEAR, &out, &h, &w),
                     KILN_ERR_INVALID_ARG); /* 2 * 0.1 rounds to 0 */
    assert_int_equal(kiln_resample_by(x, 1, 1, 2, 2, -1.0, KILN_RESAMPLE_BILINEAR, &out, &h, &w),
                     KILN_ERR_INVALID_ARG);
    kiln_resample_method m;
    assert_false(kiln_resample_from_name("lanczos", &m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(latent_upscale_by),
        cmocka_unit_test(latent_upscale_to_a_size),
        cmocka_unit_test(image_scale),
        cmocka_unit_test(area),
        cmocka_unit_test(bislerp),
        cmocka_unit_test(bad_scales_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
