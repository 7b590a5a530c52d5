/* Hypernetworks (ComfyUI's HypernetworkLoader): A1111 files on the tiny SD
 * 1.x UNet against upstream diffusers with the keys' and values' inputs
 * patched as ComfyUI patches them (tests/data/hypernetwork: relu with layer
 * norms and dropout modules, mish with an activated output and a dim no
 * attention has, f16 hardswish chained after the first); then through
 * kiln_ksampler, where strength 0 is the model as it is and the chain's
 * order counts; what kiln cannot take is refused by name. */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "latent.h"
#include "parity.h"

static const parity_fixture tiny = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = 1e-5};

/* The tiny UNet with the files at their strengths, in order, against the
 * golden's case `prefix`. */
static void check_unet(const char *prefix, int count, const char *const *files, const double *strengths)
{
    const parity_unet_patches p = {.hypernetworks = files, .hypernetwork_strengths = strengths,
                                   .nhypernetworks = count};
    parity_check_unet_patched(&tiny, "hypernetwork/golden.safetensors", prefix, &p);
}

static void unet_relu_layer_norm(void **state)
{
    (void)state;
    check_unet("relu_ln.", 1, (const char *const[]){"hypernetwork/relu_ln.pt"}, (const double[]){1.0});
}

static void unet_mish(void **state)
{
    (void)state;
    check_unet("mish.", 1, (const char *const[]){"hypernetwork/mish.pt"}, (const double[]){0.8});
}

static void unet_chain(void **state)
{
    (void)state;
    check_unet("chain.", 2, (const char *const[]){"hypernetwork/relu_ln.pt", "hypernetwork/swish.pt"},
               (const double[]){1.0, -0.7});
}

/* Two steps of euler on a 16x12 latent, with the hypernetworks given. */
static kiln_latent sample(kiln_model *m, const kiln_conditioning *pos, const kiln_conditioning *neg,
                          kiln_hypernetwork *const *hn, int count)
{
    kiln_latent empty, out;
    assert_kiln_ok(kiln_empty_latent(m, 16, 12, 1, &empty));
    const kiln_ksampler_params p = {.seed = 5, .steps = 2, .cfg = 4.0, .sampler_name = "euler",
                                    .scheduler = "normal", .denoise = 1.0,
                                    .hypernetworks = (const kiln_hypernetwork *const *)hn, .hypernetwork_count = count};
    assert_kiln_ok(kiln_ksampler(m, &p, pos, neg, &empty, &out));
    kiln_latent_free(&empty);
    return out;
}

static void through_sampling(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_text_encode(m, "blurry", 0, &neg));
    kiln_hypernetwork *off, *relu_ln, *swish;
    assert_kiln_ok(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/relu_ln.pt"), 0.0, &off));
    assert_kiln_ok(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/relu_ln.pt"), 1.0, &relu_ln));
    assert_kiln_ok(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/swish.pt"), -0.7, &swish));
    kiln_latent plain = sample(m, &pos, &neg, NULL, 0), zero = sample(m, &pos, &neg, &off, 1),
                one = sample(m, &pos, &neg, &relu_ln, 1);
    kiln_hypernetwork *forward[] = {relu_ln, swish}, *backward[] = {swish, relu_ln};
    kiln_latent chain = sample(m, &pos, &neg, forward, 2), reversed = sample(m, &pos, &neg, backward, 2);
    const size_t n = kiln_latent_count(&plain);
    /* k + 0 * stack(k) is k to the bit */
    assert_memory_equal(zero.data, plain.data, n * sizeof(float));
    const double moved = kiln_rel_l2(one.data, plain.data, n), order = kiln_rel_l2(chain.data, reversed.data, n);
    print_message("  relu_ln moved the run %.3g; the chain's order %.3g\n", moved, order);
    assert_true(moved > 1e-3);
    assert_true(order > 1e-4);
    kiln_latent *all[] = {&plain, &zero, &one, &chain, &reversed};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) kiln_latent_free(all[i]);
    kiln_hypernetwork_free(off), kiln_hypernetwork_free(relu_ln), kiln_hypernetwork_free(swish);
    kiln_conditioning_free(&pos), kiln_conditioning_free(&neg);
    kiln_test_close_model(be, m);
}

static void refusals(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_hypernetwork *h = NULL;
    assert_refused_naming(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/gelu.pt"), 1.0, &h),
                          "activation_func 'gelu'");
    assert_null(h);
    assert_refused_naming(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/relu_ln.pt"), 10.5, &h),
                          "strength 10.5");
    /* a safetensors file is no torch.save pickle; a UNet's .pt has no dims */
    assert_refused_naming(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/golden.safetensors"), 1.0, &h),
                          "golden.safetensors");
    assert_refused_naming(kiln_hypernetwork_load(m, kiln_test_data("missing.pt"), 1.0, &h), "missing.pt");
    kiln_conditioning c;
    kiln_latent empty, out;
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    assert_kiln_ok(kiln_empty_latent(m, 16, 16, 1, &empty));
    const kiln_ksampler_params p = {.seed = 3, .steps = 1, .cfg = 5.0, .sampler_name = "euler",
                                    .scheduler = "normal", .denoise = 1.0, .hypernetwork_count = 1};
    assert_refused_naming(kiln_ksampler(m, &p, &c, &c, &empty, &out), "1 hypernetworks");
    kiln_latent_free(&empty);
    kiln_conditioning_free(&c);
    /* a DiT has no UNet attentions to patch: neither loaded for one nor handed to one */
    assert_kiln_ok(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/relu_ln.pt"), 1.0, &h));
    const kiln_hypernetwork *loaded[] = {h};
    const kiln_ksampler_params flux = {.seed = 3, .steps = 1, .cfg = 1.0, .sampler_name = "euler",
                                       .scheduler = "simple", .denoise = 1.0, .hypernetworks = loaded,
                                       .hypernetwork_count = 1};
    assert_ksampler_refused_on_flux(&flux, "hypernetworks patch a UNet's attention");
    kiln_hypernetwork_free(h);
    kiln_test_close_model(be, m);
    assert_kiln_ok(kiln_backend_open("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/tiny"), NULL, 0, &m));
    h = NULL;
    assert_refused_naming(kiln_hypernetwork_load(m, kiln_test_data("hypernetwork/relu_ln.pt"), 1.0, &h),
                          "a hypernetwork works with SD 1.x/2.x/XL UNets");
    assert_null(h);
    kiln_test_close_model(be, m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unet_relu_layer_norm),
        cmocka_unit_test(unet_mish),
        cmocka_unit_test(unet_chain),
        cmocka_unit_test(through_sampling),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
