/* Reading golden tensors for parity tests. */
#ifndef KILN_TEST_GOLDEN_H
#define KILN_TEST_GOLDEN_H

#include <stddef.h>

#include "safetensors.h"

/* A golden tensor widened to f32; `count` elements. Fails the test if absent. */
typedef struct golden {
    float *data;
    size_t count;
    int ndim;
    int64_t shape[4];
} golden;

kiln_st_file *golden_open(const char *relative_path);
golden golden_read(kiln_st_file *f, const char *name);
/* golden_read of "<prefix>.<field>": one case's tensor of a file of cases. */
golden golden_field(kiln_st_file *f, const char *prefix, const char *field);
void golden_free(golden *g);
/* The largest difference, in levels, between images[0 .. n - 1] and a
 * golden (n, H, W, 3) of uint8 pixels; fails the test where an image is
 * not H x W. */
int golden_pixels_worst(const kiln_image *images, int n, const golden *pixels);

/* Values that are whole 1/255 steps of a picture before a mean and std
 * (clip_preprocess's) against a golden of them: a resize whose float sums
 * run in another order than torch's may round a value lying at half a step
 * the other way, so up to most_off values may be one step (`step`) off, none
 * further; the test fails otherwise. */
void golden_assert_steps(const char *label, const float *have, const golden *want, double step, int most_off);

/* A golden (H, W, 3) of bytes as an 8-bit picture the test owns
 * (kiln_image_free). */
kiln_image golden_picture(kiln_st_file *f, const char *name);

/* A `__metadata__` value of the golden file; fails the test if absent. */
const char *golden_meta(kiln_st_file *f, const char *key);

#endif
