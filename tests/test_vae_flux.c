/* FLUX.1's VAE (and SD3's, the same network): 16 latent channels, no
 * quant_conv/post_quant_conv, and a shift besides the scale between the VAE's
 * latent and the sampler's. On the tiny random one of tests/data/vae_flux
 * against upstream diffusers 0.30.3, on the CPU: detection and binding from
 * the file's shapes and names, decode (also of a 7x5 latent) and encode
 * against diffusers, the latent format against FluxPipeline's, and that SD's
 * VAE keeps its quant convs while a damaged one (one of the two) is refused.
 *
 * The goldens were computed with the stored float16 weights widened to
 * float32, so only summation order differs: 1e-5, as f32 work elsewhere. */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "golden.h"
#include "graph.h"
#include "safetensors.h"
#include "status.h"
#include "vae.h"
#include "weights.h"

#define TOL_F32 1e-5
#define FLUX_VAE KILN_TEST_DATA "/vae_flux/vae.safetensors"
#define GOLDEN "vae_flux/golden.safetensors"
#define SD_TINY KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors"
#define SD_TINY_FOLDER KILN_TEST_DATA "/tiny/sd15_tiny_diffusers"
/* FLUX.1's vae/config.json (the script gives them to diffusers too) */
#define FLUX_SCALE 0.3611f
#define FLUX_SHIFT 0.1159f

typedef struct vae_fixture {
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_weights *w;
    kiln_vae vae;
} vae_fixture;

/* A VAE alone, as kiln_model_load binds it: what the bind returns, the
 * fixture's parts left for vae_close either way. */
static kiln_status vae_open(const char *path, float scale, float shift, vae_fixture *fx)
{
    *fx = (vae_fixture){0};
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &fx->be));
    assert_kiln_ok(kiln_checkpoint_open(path, &fx->ck));
    assert_kiln_ok(kiln_weights_create(fx->be, fx->ck, &fx->w));
    const vae_config *cfg = kiln_vae_detect(fx->ck);
    assert_non_null(cfg);
    return kiln_vae_bind_shifted(fx->w, cfg, scale, shift, &fx->vae);
}

static void vae_close(vae_fixture *fx)
{
    kiln_weights_free(fx->w);
    kiln_checkpoint_close(fx->ck);
    kiln_backend_free(fx->be);
}

typedef struct vae_run {
    const kiln_vae *vae;
    const golden *in;
    bool encode;
    float *out;
    size_t count; /* what the caller expects */
} vae_run;

static kiln_status vae_fn(kiln_graph *g, void *ctx)
{
    vae_run *r = ctx;
    tensor *x, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, r->in->shape, r->in->data));
    if (r->encode)
        TRY(kiln_vae_encoder_forward(g, r->vae, x, &y));
    else
        TRY(kiln_vae_decoder_forward(g, r->vae, x, &y));
    if ((size_t)kiln_tensor_numel(y) != r->count)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vae: %lld values out, expected %zu", (long long)kiln_tensor_numel(y),
                         r->count);
    return kiln_graph_output(g, y, r->out, kiln_tensor_nbytes(y));
}

static float *run(const vae_fixture *fx, const golden *in, bool encode, size_t count)
{
    vae_run r = {&fx->vae, in, encode, malloc(count * sizeof(float)), count};
    assert_non_null(r.out);
    assert_kiln_ok(kiln_graph_run_once(fx->be, vae_fn, &r));
    return r.out;
}

static void detect_flux(void **s)
{
    (void)s;
    vae_fixture fx;
    assert_kiln_ok(vae_open(FLUX_VAE, FLUX_SCALE, FLUX_SHIFT, &fx));
    const vae_config *cfg = fx.vae.config;
    assert_string_equal(cfg->name, "vae-tiny-test-16");
    assert_int_equal(cfg->latent_channels, 16); /* read off decoder.conv_in */
    assert_int_equal(kiln_vae_factor(cfg), 2);
    /* no quant convs in the file: identity, not an error */
    assert_null(fx.vae.quant_w);
    assert_null(fx.vae.quant_b);
    assert_null(fx.vae.post_quant_w);
    assert_null(fx.vae.post_quant_b);
    assert_true(fx.vae.has_encoder);
    assert_true(fx.vae.latents.scale == FLUX_SCALE);
    assert_true(fx.vae.latents.shift == FLUX_SHIFT);
    vae_close(&fx);
}

/* SD's VAE, single file and diffusers folder (quant_conv mapped there), is
 * bound with its quant convs, and kiln_vae_bind gives it no shift. */
static void sd_keeps_quant_convs(void **s)
{
    (void)s;
    const char *const paths[] = {SD_TINY, SD_TINY_FOLDER};
    for (int i = 0; i < 2; i++) {
        vae_fixture fx = {0};
        assert_kiln_ok(kiln_backend_create("cpu", NULL, &fx.be));
        assert_kiln_ok(kiln_checkpoint_open(paths[i], &fx.ck));
        assert_kiln_ok(kiln_weights_create(fx.be, fx.ck, &fx.w));
        const vae_config *cfg = kiln_vae_detect(fx.ck);
        assert_non_null(cfg);
        assert_string_equal(cfg->name, "vae-tiny-test");
        assert_int_equal(cfg->latent_channels, 4);
        assert_kiln_ok(kiln_vae_bind(fx.w, cfg, 0.18215f, &fx.vae));
        assert_non_null(fx.vae.quant_w);
        assert_non_null(fx.vae.quant_b);
        assert_non_null(fx.vae.post_quant_w);
        assert_non_null(fx.vae.post_quant_b);
        assert_true(fx.vae.latents.shift == 0.0f);
        /* with no shift the format is SD's z * scale and x / scale, bit for bit */
        const float z[] = {-3.5f, -0.0f, 0.0f, 1e-8f, 0.7f, 12.25f};
        float in[6], out[6];
        kiln_vae_latent_in(&fx.vae, z, 6, 1, in);
        kiln_vae_latent_out(&fx.vae, z, 6, 1, out);
        for (size_t k = 0; k < sizeof z / sizeof z[0]; k++) {
            assert_true(in[k] == z[k] * 0.18215f);
            assert_true(out[k] == z[k] / 0.18215f);
        }
        vae_close(&fx);
    }
}

static void decode(void **s)
{
    (void)s;
    vae_fixture fx;
    assert_kiln_ok(vae_open(FLUX_VAE, FLUX_SCALE, FLUX_SHIFT, &fx));
    kiln_st_file *f = golden_open(GOLDEN);
    static const char *const cases[][2] = {{"dec8.z", "dec8.image"}, {"dec_odd.z", "dec_odd.image"}};
    for (int i = 0; i < 2; i++) {
        golden z = golden_read(f, cases[i][0]), want = golden_read(f, cases[i][1]);
        assert_int_equal(z.shape[1], 16);
        float *out = run(&fx, &z, false, want.count);
        print_message("  %s\n", cases[i][0]);
        assert_rel_l2_le(out, want.data, want.count, TOL_F32);
        free(out);
        golden_free(&z);
        golden_free(&want);
    }
    kiln_st_close(f);
    vae_close(&fx);
}

static void encode(void **s)
{
    (void)s;
    vae_fixture fx;
    assert_kiln_ok(vae_open(FLUX_VAE, FLUX_SCALE, FLUX_SHIFT, &fx));
    kiln_st_file *f = golden_open(GOLDEN);
    golden img = golden_read(f, "enc.image"), mean = golden_read(f, "enc.mean"), logvar = golden_read(f, "enc.logvar");
    /* the moments (1, 2L, h, w): the first L channels are the mean */
    float *moments = run(&fx, &img, true, mean.count + logvar.count);
    assert_rel_l2_le(moments, mean.data, mean.count, TOL_F32);
    assert_rel_l2_le(moments + mean.count, logvar.data, logvar.count, TOL_F32);
    free(moments);
    golden_free(&img);
    golden_free(&mean);
    golden_free(&logvar);
    kiln_st_close(f);
    vae_close(&fx);
}

/* The sampler's latent -> the VAE's as FluxPipeline computes it before
 * decoding (x / scale + shift), and back (ComfyUI's process_in). */
static void latent_format(void **s)
{
    (void)s;
    vae_fixture fx;
    assert_kiln_ok(vae_open(FLUX_VAE, FLUX_SCALE, FLUX_SHIFT, &fx));
    kiln_st_file *f = golden_open(GOLDEN);
    golden scale = golden_read(f, "fmt.scaling_factor"), shift = golden_read(f, "fmt.shift_factor");
    assert_true(scale.data[0] == FLUX_SCALE && shift.data[0] == FLUX_SHIFT);
    golden_free(&scale);
    golden_free(&shift);
    golden x = golden_read(f, "fmt.x"), z = golden_read(f, "fmt.z");
    float *out = malloc(x.count * sizeof *out), *back = malloc(x.count * sizeof *back);
    const size_t plane = (size_t)x.shape[2] * x.shape[3];
    kiln_vae_latent_out(&fx.vae, x.data, x.count, plane, out);
    kiln_vae_latent_in(&fx.vae, z.data, z.count, plane, back);
    /* one or two float roundings apart at most */
    assert_rel_l2_le(out, z.data, z.count, 1e-7);
    assert_rel_l2_le(back, x.data, x.count, 1e-6);
    free(out);
    free(back);
    golden_free(&x);
    golden_free(&z);
    kiln_st_close(f);
    vae_close(&fx);
}

/* `src`'s first_stage_model.* tensors but `drop`, with one metadata pair
 * (key NULL: none), written to a new file in a new folder under /tmp. */
static void write_variant(const char *src, const char *drop, const char *key, const char *value, char *dir,
                          char *path, size_t path_size)
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(src, &f));
    size_t n = kiln_st_count(f), kept = 0;
    kiln_st_entry *e = calloc(n, sizeof *e);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (strncmp(t->name, "first_stage_model.", 18) || (drop && strncmp(t->name, drop, strlen(drop)) == 0))
            continue;
        e[kept] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[kept].shape, t->shape, sizeof e[kept].shape);
        kept++;
    }
    assert_non_null(mkdtemp(dir));
    snprintf(path, path_size, "%s/vae.safetensors", dir);
    kiln_st_meta meta = {key, value};
    assert_kiln_ok(kiln_st_write(path, e, kept, key ? &meta : NULL, key ? 1 : 0));
    free(e);
    kiln_st_close(f);
}

/* An SD VAE with an encoder and quant_conv but no post_quant_conv is a
 * damaged file, not a FLUX.1-style VAE: refused by name. */
static void one_quant_conv_refused(void **s)
{
    (void)s;
    char dir[] = "/tmp/kiln_vae_flux_XXXXXX", path[64];
    write_variant(SD_TINY, "first_stage_model.post_quant_conv.", NULL, NULL, dir, path, sizeof path);
    vae_fixture fx;
    assert_int_equal(vae_open(path, 0.18215f, 0.0f, &fx), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no first_stage_model.post_quant_conv"));
    vae_close(&fx);
    unlink(path);
    rmdir(dir);
}

/* A trained-here model's `vae_shift_factor` metadata overrides the family's
 * shift, as `vae_scaling_factor` does the scale; a bad one is refused. */
static void recorded_shift(void **s)
{
    (void)s;
    static const char *const values[] = {"0.25", "x", ""};
    for (int i = 0; i < 3; i++) {
        char dir[] = "/tmp/kiln_vae_flux_XXXXXX", path[64];
        write_variant(FLUX_VAE, NULL, "vae_shift_factor", values[i], dir, path, sizeof path);
        vae_fixture fx;
        kiln_status st = vae_open(path, FLUX_SCALE, FLUX_SHIFT, &fx);
        if (i == 0) {
            assert_kiln_ok(st);
            assert_true(fx.vae.latents.shift == 0.25f);
            assert_true(fx.vae.latents.scale == FLUX_SCALE);
        } else {
            assert_int_equal(st, KILN_ERR_MODEL);
            assert_non_null(strstr(kiln_last_error(), "vae_shift_factor"));
        }
        vae_close(&fx);
        unlink(path);
        rmdir(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detect_flux),   cmocka_unit_test(sd_keeps_quant_convs),
        cmocka_unit_test(decode),        cmocka_unit_test(encode),
        cmocka_unit_test(latent_format), cmocka_unit_test(one_quant_conv_refused),
        cmocka_unit_test(recorded_shift),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
