/* The tiny SD 1.x model made into the UNet variants that take an image for
 * tests: its checkpoint with the wider conv_in of an inpainting model (9
 * input channels, tests/data/inpaint/golden.safetensors) or of an
 * InstructPix2Pix model (8, tests/data/pix2pix/golden.safetensors); and
 * the tiny SDXL and SD 2.x models as inpainting ones
 * (tests/data/sdxl/inpaint, tests/data/sd2/inpaint). */
#ifndef KILN_TEST_TINY_VARIANTS_H
#define KILN_TEST_TINY_VARIANTS_H

#include <stddef.h>

/* Each is written on first use into a temporary folder removed at exit;
 * returns its path (fails the test when it cannot be written). */
const char *tiny_inpaint_model(void);
const char *tiny_pix2pix_model(void);
const char *tiny_sdxl_inpaint_model(void);
const char *tiny_sd2_inpaint_model(void);
/* A second model of the tiny SD 1.x model's shapes, for merges: its
 * checkpoint with each float32 weight w, element i of its tensor, made
 * tiny_other_weight(w, i). */
const char *tiny_other_model(void);
double tiny_other_weight(double w, size_t i);

#endif
