/* The tiny SD 1.x model made an inpainting model for tests: its checkpoint
 * with the 9-channel conv_in of tests/data/inpaint/golden.safetensors. */
#ifndef KILN_TEST_INPAINT_MODEL_H
#define KILN_TEST_INPAINT_MODEL_H

/* Writes it on first use into a temporary folder removed at exit; returns
 * its path (fails the test when it cannot be written). */
const char *tiny_inpaint_model(void);

#endif
