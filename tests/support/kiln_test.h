/* Shared helpers for kiln's cmocka tests. */
#ifndef KILN_TEST_H
#define KILN_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kiln.h"
#include "pipeline.h"

/* The exit code that ctest reports as "skipped" (SKIP_RETURN_CODE). */
#define KILN_TEST_SKIP 77

/* ||a - b|| / ||b|| in float64; NaN anywhere gives +inf so it never passes. */
double kiln_rel_l2(const float *a, const float *b, size_t n);

/* Fails the current test with kiln_last_error() when st is not KILN_OK. */
#define assert_kiln_ok(st)                                                                    \
    do {                                                                                      \
        kiln_status st_ = (st);                                                               \
        if (st_ != KILN_OK) fail_msg("%s: %s", kiln_status_name(st_), kiln_last_error());    \
    } while (0)

/* Fails unless the call fails, its message naming `says`. */
#define assert_refused_naming(call, says)                                                                           \
    do {                                                                                                     \
        kiln_status st__ = (call);                                                                           \
        if (st__ == KILN_OK) fail_msg("%s succeeded", #call);                                                \
        if (!strstr(kiln_last_error(), (says)))                                                              \
            fail_msg("%s: message '%s' does not name '%s'", #call, kiln_last_error(), (says));              \
    } while (0)

/* Fails unless rel_l2(a, b) <= tol, printing the error and the tolerance. */
#define assert_rel_l2_le(a, b, n, tol)                                                        \
    do {                                                                                      \
        double e_ = kiln_rel_l2((a), (b), (n));                                               \
        if (!(e_ <= (tol))) fail_msg("%s: relative L2 %.3g > %.3g", #a, e_, (double)(tol));   \
        else print_message("  %-40s rel L2 %.3g (<= %.3g)\n", #a, e_, (double)(tol));         \
    } while (0)

/* The whole file, malloc'd and NUL-terminated one past *size (size may be
 * NULL); fails the test where it cannot be read. */
uint8_t *kiln_test_read_file(const char *path, size_t *size);

/* A copy of safetensors file `from` in a new folder under /tmp, every tensor
 * renamed: `strip` taken off the front of its name (each must start with
 * it), `add` put there; its path into path. kiln_test_remove_copy removes
 * it and its folder. */
void kiln_test_renamed_copy(const char *from, const char *strip, const char *add, char path[128]);
void kiln_test_remove_copy(const char *path);

/* Token ids against a golden's: fails naming the case and the first
 * differing position, or the counts. */
void assert_ids_equal(const char *what, const char *name, const int32_t *got, size_t n_got, const int32_t *want,
                      size_t n_want);

/* Path under tests/data ("diffusers/unet.safetensors" -> absolute path). */
const char *kiln_test_data(const char *relative);

/* A test group's setup of the tiny SD 1.x model (tests/data/tiny) on the
 * CPU backend: 0, or -1 where it cannot be loaded; and its teardown. */
int kiln_test_open_tiny_sd15(kiln_backend **be, kiln_model **m);
void kiln_test_close_model(kiln_backend *be, kiln_model *m);

/* The tests' usual KSampler job: one image of an h x w latent, `sampler`
 * on `scheduler`'s `steps`, at cfg and seed, denoise 1; a name kiln does
 * not know fails the test. */
kiln_sampling_job kiln_test_job(const char *sampler, const char *scheduler, int steps, float cfg, uint64_t seed, int h,
                                int w);

/* kiln_ksampler with p (a 32x32 empty latent, one prompt on both sides) on
 * the tiny Flux model (tests/data/flux/tiny) is refused, naming `says`: for
 * what only a UNet takes. */
void assert_ksampler_refused_on_flux(const kiln_ksampler_params *p, const char *says);

#endif
