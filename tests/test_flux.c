/* FLUX.1's transformer against upstream on tests/data/flux (made by
 * make_flux_data.py with diffusers' FluxTransformer2DModel on a small random
 * model with the dev model's guidance embedding): the packing of latents
 * into patch tokens and back, and the whole transformer on two rows. */
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "flux.h"
#include "golden.h"
#include "parity.h"
#include "status.h"

#define GOLDEN "flux/golden.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order */

static const int tiny_axes[3] = {4, 6, 6}; /* make_flux_data.py's */

/* diffusers' _pack_latents is kiln_patchify with 2x2 patches, and back. */
static void packing(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    golden sample = golden_read(f, "sample"), packed = golden_read(f, "packed");
    float *got = malloc(packed.count * sizeof *got), *back = malloc(sample.count * sizeof *back);
    kiln_patchify(sample.data, 2, 16, 8, 6, 2, got);
    assert_memory_equal(got, packed.data, packed.count * sizeof *got);
    kiln_unpatchify(got, 2, 16, 8, 6, 2, false, back);
    assert_memory_equal(back, sample.data, sample.count * sizeof *back);
    free(got);
    free(back);
    golden_free(&sample);
    golden_free(&packed);
    kiln_st_close(f);
}

static void transformer_matches_diffusers(void **state)
{
    (void)state;
    parity_check_flux(&(parity_fixture){.tol = TOL}, GOLDEN);
}

static void refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_weights *w;
    kiln_flux flux;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/transformer/diffusion_pytorch_model.safetensors"), &ck));
    assert_kiln_ok(kiln_weights_create(be, ck, &w));
    /* FLUX.1's axes do not fit heads 16 wide */
    assert_int_equal(kiln_flux_bind(w, "", NULL, &flux), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "rotary axes 16, 56, 56"));
    assert_int_equal(kiln_flux_bind(w, "transformer", tiny_axes, &flux), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no Flux transformer"));
    kiln_weights_free(w);
    kiln_checkpoint_close(ck);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packing),
        cmocka_unit_test(transformer_matches_diffusers),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
