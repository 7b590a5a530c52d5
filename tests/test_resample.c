/* LatentUpscaleBy against torch's interpolate (tests/data/resample, made by
 * make_resample_data.py): nearest-exact to the bit, bilinear and bicubic to
 * float rounding, up and down, at sizes rounded half to even. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "golden.h"
#include "resample.h"

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
            assert_kiln_ok(kiln_resample_by(latent.data, 8, 7, 9, atof(scales[j]), m, &out, &h, &w));
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

static void bad_scales_are_refused(void **state)
{
    (void)state;
    float x[4] = {0}, *out;
    int h, w;
    assert_int_equal(kiln_resample_by(x, 1, 2, 2, 0.1, KILN_RESAMPLE_BILINEAR, &out, &h, &w),
                     KILN_ERR_INVALID_ARG); /* 2 * 0.1 rounds to 0 */
    assert_int_equal(kiln_resample_by(x, 1, 2, 2, -1.0, KILN_RESAMPLE_BILINEAR, &out, &h, &w),
                     KILN_ERR_INVALID_ARG);
    kiln_resample_method m;
    assert_false(kiln_resample_from_name("lanczos", &m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(latent_upscale_by),
        cmocka_unit_test(bad_scales_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
