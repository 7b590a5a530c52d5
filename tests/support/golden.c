#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln_test.h"

kiln_st_file *golden_open(const char *relative_path)
{
    kiln_st_file *f = NULL;
    assert_kiln_ok(kiln_st_open(kiln_test_data(relative_path), &f));
    return f;
}

golden golden_read(kiln_st_file *f, const char *name)
{
    golden g = {0};
    const kiln_st_tensor *t = kiln_st_find(f, name);
    if (!t) fail_msg("%s: no golden tensor '%s'", kiln_st_path(f), name);
    assert_kiln_ok(kiln_st_read_f32(f, name, &g.data, &g.count));
    g.ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) g.shape[i] = t->shape[i];
    return g;
}

golden golden_field(kiln_st_file *f, const char *prefix, const char *field)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", prefix, field);
    return golden_read(f, name);
}

void golden_free(golden *g)
{
    free(g->data);
    g->data = NULL;
}

const char *golden_meta(kiln_st_file *f, const char *key)
{
    const char *v = kiln_st_metadata(f, key);
    if (!v) fail_msg("%s: no metadata '%s'", kiln_st_path(f), key);
    return v;
}

kiln_image golden_picture(kiln_st_file *f, const char *name)
{
    golden g = golden_read(f, name);
    assert_int_equal(g.ndim, 3);
    assert_int_equal(g.shape[2], 3);
    kiln_image img = {.width = (int)g.shape[1], .height = (int)g.shape[0], .channels = 3, .pixels = malloc(g.count)};
    assert_non_null(img.pixels);
    for (size_t i = 0; i < g.count; i++) img.pixels[i] = (uint8_t)g.data[i];
    golden_free(&g);
    return img;
}

int golden_pixels_worst(const kiln_image *images, int n, const golden *pixels)
{
    const int H = (int)pixels->shape[1], W = (int)pixels->shape[2];
    assert_int_equal(pixels->count, (size_t)n * H * W * 3);
    int worst = 0;
    for (int b = 0; b < n; b++) {
        assert_int_equal(images[b].width, W);
        assert_int_equal(images[b].height, H);
        for (size_t i = 0; i < (size_t)H * W * 3; i++) {
            int d = abs((int)images[b].pixels[i] - (int)pixels->data[(size_t)b * H * W * 3 + i]);
            if (d > worst) worst = d;
        }
    }
    return worst;
}

void golden_assert_steps(const char *label, const float *have, const golden *want, double step, int most_off)
{
    double worst = 0;
    int off = 0;
    for (size_t k = 0; k < want->count; k++) {
        double d = fabs((double)have[k] - want->data[k]);
        if (!(d <= worst)) worst = d; /* NaN too */
        off += d > 1e-5;
    }
    print_message("  %-12s max |diff| %.3g, %d of %zu a step off\n", label, worst, off, want->count);
    assert_true(worst <= step * 1.001);
    assert_true(off <= most_off);
}
