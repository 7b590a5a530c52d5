/* IP-Adapter on the tiny SD 1.x model against upstream code
 * (tests/data/ip_adapter, made by make_ip_adapter_data.py): ComfyUI's
 * clip_preprocess of two pictures, the CLIP vision tower (transformers), the
 * adapter's image projection and the UNet with its image attention
 * (diffusers), for f32 and f16 UNet weights, and two adapters on one call;
 * how the sampler routes the
 * image tokens to the prompts' rows; then the files kiln must refuse. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "clip_vision.h"
#include "denoiser.h"
#include "golden.h"
#include "ip_adapter.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "resample.h"

#define TOL_F32 1e-4 /* as test_parity_tiny */
#define TOL_F16 1e-2
#define TINY_F32 KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors"
#define VISION "ip_adapter/clip_vision_tiny.safetensors"
#define ADAPTER "ip_adapter/ip_adapter_tiny.safetensors"
#define PLUS "ip_adapter/ip_adapter_plus_tiny.safetensors"
#define GOLDEN "ip_adapter/golden.safetensors"

static void parity_f32(void **s)
{
    (void)s;
    parity_check_ip_adapter(&(parity_fixture){.path = TINY_F32, .tol = TOL_F32}, VISION, ADAPTER, GOLDEN, "");
}

static void parity_f16_unet(void **s)
{
    (void)s;
    parity_check_ip_adapter(&(parity_fixture){.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors",
                                              .tol = TOL_F16},
                            VISION, ADAPTER, GOLDEN, "");
}

/* SDXL: the numbering walks blocks within transformers two deep; y joins the call */
static void sdxl_parity_f32(void **s)
{
    (void)s;
    parity_check_ip_adapter(&(parity_fixture){.path = KILN_TEST_DATA "/sdxl/tiny_sdxl.safetensors", .tol = TOL_F32},
                            VISION, "ip_adapter/ip_adapter_sdxl_tiny.safetensors", GOLDEN, "sdxl.");
}

/* The plain and the Plus adapter on one call, chained, against diffusers
 * with both loaded (ip_adapter/multi.safetensors). */
static void chain_parity_f32(void **s)
{
    (void)s;
    static const char *const adapters[2] = {ADAPTER, PLUS}, *const tokens[2] = {"ip_tokens", "plus.ip_tokens"};
    parity_check_ip_adapter_chain(&(parity_fixture){.path = TINY_F32, .tol = TOL_F32}, adapters, tokens, GOLDEN,
                                  "ip_adapter/multi.safetensors");
}

/* Two pictures at once (ImageBatch), plain and Plus: their tokens side by
 * side, the negative's once per picture, from the picture files, and the
 * UNet attending to them, against diffusers' multi-image embeds
 * (ip_adapter/pictures.safetensors). */
static void pictures_parity_f32(void **s)
{
    (void)s;
    static const char *const pictures[2] = {"ip_adapter/picture_251x233.png", "controlnet/hint_37x23.png"};
    const parity_fixture fx = {.path = TINY_F32, .tol = TOL_F32};
    parity_check_ip_adapter_pictures(&fx, VISION, ADAPTER, GOLDEN, "ip_adapter/pictures.safetensors", "", pictures, 2);
    parity_check_ip_adapter_pictures(&fx, VISION, PLUS, GOLDEN, "ip_adapter/pictures.safetensors", "plus.", pictures,
                                     2);
}

/* IP-Adapter Plus: the Resampler (its fused to_kv read as two halves) on
 * upstream's hidden states, and the UNet attending to its tokens */
static void plus_parity_f32(void **s)
{
    (void)s;
    parity_check_ip_adapter(&(parity_fixture){.path = TINY_F32, .tol = TOL_F32}, VISION, PLUS, GOLDEN, "plus.");
}

/* IP-Adapter full-face (make_full_face_data.py): a token of each hidden
 * state through its MLP and norm, and the UNet attending to all 257 */
static void full_face_parity_f32(void **s)
{
    (void)s;
    parity_check_ip_adapter(&(parity_fixture){.path = TINY_F32, .tol = TOL_F32}, VISION,
                            "ip_adapter/ip_adapter_full_face_tiny.safetensors", GOLDEN, "full.");
}

/* torch's antialiased bicubic interpolate, down (17x11) and up (80x50),
 * within float rounding. */
static void antialiased_resize(void **s)
{
    (void)s;
    kiln_image img;
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/controlnet/hint_37x23.png", &img));
    const int H = img.height, W = img.width;
    float *planes = malloc((size_t)3 * H * W * sizeof *planes);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < H * W; i++) planes[(size_t)c * H * W + i] = img.pixels[(size_t)i * 3 + c] / 255.0f;
    kiln_st_file *f = golden_open(GOLDEN);
    static const char *const names[] = {"resize.down", "resize.up"};
    for (int i = 0; i < 2; i++) {
        golden want = golden_read(f, names[i]);
        const int h = (int)want.shape[2], w = (int)want.shape[3];
        float *have = malloc(want.count * sizeof *have);
        assert_kiln_ok(kiln_resample_antialias_bicubic(planes, 3, H, W, have, h, w));
        double worst = 0;
        for (size_t k = 0; k < want.count; k++) {
            double d = fabs((double)have[k] - want.data[k]);
            if (!(d <= worst)) worst = d; /* NaN too */
        }
        print_message("  %dx%d: max |diff| %.3g\n", w, h, worst);
        assert_true(worst <= 2e-6);
        free(have);
        golden_free(&want);
    }
    kiln_st_close(f);
    free(planes);
    kiln_image_free(&img);
}

/* ComfyUI's clip_preprocess: a 251x233 picture scaled down and a 37x23 one
 * scaled up, each cut to its centre 224x224. Values are whole 1/255 steps
 * before the mean and std, so the resize's float rounding (its sums in
 * another order than torch's) may flip a value lying at half a step by one
 * step (1/255/std, at most 0.015): a few may, no more, and none by more. */
static void preprocess_as_comfyui(void **s)
{
    (void)s;
    static const char *const cases[][2] = {{"ip_adapter/picture_251x233.png", "pixels.big"},
                                           {"controlnet/hint_37x23.png", "pixels.small"}};
    kiln_st_file *f = golden_open(GOLDEN);
    for (int i = 0; i < 2; i++) {
        kiln_image img;
        assert_kiln_ok(kiln_image_load(kiln_test_data(cases[i][0]), &img));
        golden want = golden_read(f, cases[i][1]);
        assert_int_equal(want.count, 3 * 224 * 224);
        float *have = malloc(want.count * sizeof *have);
        assert_kiln_ok(kiln_clip_vision_preprocess(&(clip_vision_config){.image_size = 224}, &img, true, have));
        golden_assert_steps(cases[i][1], have, &want, 1.0 / 255 / 0.26130258, 8); /* the smallest std's step */
        free(have);
        golden_free(&want);
        kiln_image_free(&img);
    }
    kiln_st_close(f);
}

/* One guided denoiser call per way of giving the image tokens to the rows:
 * the positive prompt's rows must get the picture's (row 1), the negative's
 * the zero embedding's (row 0); at weight 0, or with a start/end range this
 * sigma is not in, the call is the plain model's to the bit. */
static void sampler_routes_tokens(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_ip_adapter *ipa;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(TINY_F32, be, &m));
    assert_kiln_ok(kiln_ip_adapter_open(kiln_test_data(ADAPTER), &m->unet, be, &ipa));
    kiln_st_file *f = golden_open(GOLDEN);
    golden x = golden_read(f, "sample"), context = golden_read(f, "encoder_hidden_states"),
           tokens = golden_read(f, "ip_tokens");
    const size_t per = tokens.count / 2, n = x.count / 2;
    /* token sets: as made (zero, picture), both the picture's, both the zero embedding's */
    float *both_picture = malloc(tokens.count * sizeof(float)), *both_zero = malloc(tokens.count * sizeof(float));
    memcpy(both_picture, tokens.data + per, per * sizeof(float));
    memcpy(both_picture + per, tokens.data + per, per * sizeof(float));
    memcpy(both_zero, tokens.data, per * sizeof(float));
    memcpy(both_zero + per, tokens.data, per * sizeof(float));
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    const int h = (int)x.shape[2], w = (int)x.shape[3];
    const float sigma = 3.0f;
    enum { RUNS = 10 };
    float *out[RUNS];
    /* {cfg, tokens, weight, start, end}: NULL tokens: no adapter; sigma 3 lies at about 45 % of the schedule */
    const struct {
        float cfg;
        const float *tokens;
        float weight;
        double start, end;
    } runs[RUNS] = {{7, NULL, 0, 0, 1},          {7, tokens.data, 0, 0, 1},      {7, tokens.data, 0.7f, 0, 1},
                    {7, both_picture, 0.7f, 0, 1}, {7, both_zero, 0.7f, 0, 1},   {1, tokens.data, 0.7f, 0, 1},
                    {1, both_picture, 0.7f, 0, 1}, {7, tokens.data, 0.7f, 0.8, 1}, {7, tokens.data, 0.7f, 0, 0.2},
                    {7, tokens.data, 0.7f, 0.2, 0.8}};
    for (int i = 0; i < RUNS; i++) {
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, h, w, runs[i].cfg, context.data, 77));
        kiln_image_prompt ip = {ipa, runs[i].tokens, runs[i].weight, runs[i].start, runs[i].end, 0};
        if (runs[i].tokens) assert_kiln_ok(kiln_denoiser_set_image_prompts(&d, &ip, 1));
        out[i] = malloc(n * sizeof(float));
        assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma, out[i]));
        kiln_denoiser_free(&d);
    }
    assert_memory_equal(out[1], out[0], n * sizeof(float));  /* weight 0 */
    assert_true(kiln_rel_l2(out[2], out[0], n) > 1e-2);       /* the adapter does something */
    assert_true(kiln_rel_l2(out[3], out[2], n) > 1e-3);       /* the negative rows had the zero embedding's */
    assert_true(kiln_rel_l2(out[4], out[2], n) > 1e-3);       /* the positive rows had the picture's */
    assert_memory_equal(out[6], out[5], n * sizeof(float));  /* unguided: the positive rows alone, the picture's */
    assert_memory_equal(out[7], out[0], n * sizeof(float));  /* a range after this sigma */
    assert_memory_equal(out[8], out[0], n * sizeof(float));  /* a range before it */
    assert_memory_equal(out[9], out[2], n * sizeof(float));  /* a range around it */
    for (int i = 0; i < RUNS; i++) free(out[i]);
    free(both_picture);
    free(both_zero);
    golden_free(&x), golden_free(&context), golden_free(&tokens);
    kiln_st_close(f);
    kiln_ip_adapter_free(ipa);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* Two adapters on the sampler's calls: the second at weight 0, or with a
 * range this sigma is outside, leaves the first's call to the bit; in it,
 * it moves the call; the two in the other order give the same sum. */
static void sampler_chains_adapters(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_ip_adapter *plain, *plus;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(TINY_F32, be, &m));
    assert_kiln_ok(kiln_ip_adapter_open(kiln_test_data(ADAPTER), &m->unet, be, &plain));
    assert_kiln_ok(kiln_ip_adapter_open(kiln_test_data(PLUS), &m->unet, be, &plus));
    kiln_st_file *f = golden_open(GOLDEN);
    golden x = golden_read(f, "sample"), context = golden_read(f, "encoder_hidden_states"),
           tokens = golden_read(f, "ip_tokens"), plus_tokens = golden_read(f, "plus.ip_tokens");
    const size_t n = x.count / 2;
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    const int h = (int)x.shape[2], w = (int)x.shape[3];
    const kiln_image_prompt first = {plain, tokens.data, 0.7f, 0, 1, 0};
    /* sigma 3 lies at about 45 % of the schedule */
    const kiln_image_prompt chains[5][2] = {
        {first},
        {first, {plus, plus_tokens.data, 0.0f, 0, 1, 0}},
        {first, {plus, plus_tokens.data, 0.4f, 0.8, 1, 0}},
        {first, {plus, plus_tokens.data, 0.4f, 0, 1, 0}},
        {{plus, plus_tokens.data, 0.4f, 0, 1, 0}, first}};
    float *out[5];
    for (int i = 0; i < 5; i++) {
        kiln_denoiser d;
        assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, h, w, 7.0f, context.data, 77));
        assert_kiln_ok(kiln_denoiser_set_image_prompts(&d, chains[i], i ? 2 : 1));
        out[i] = malloc(n * sizeof(float));
        assert_kiln_ok(kiln_denoiser_call(&d, x.data, 3.0f, out[i]));
        kiln_denoiser_free(&d);
    }
    assert_memory_equal(out[1], out[0], n * sizeof(float));
    assert_memory_equal(out[2], out[0], n * sizeof(float));
    assert_true(kiln_rel_l2(out[3], out[0], n) > 1e-3);
    assert_rel_l2_le(out[4], out[3], n, 1e-5); /* float sums in another order, times cfg */
    for (int i = 0; i < 5; i++) free(out[i]);
    golden_free(&x), golden_free(&context), golden_free(&tokens), golden_free(&plus_tokens);
    kiln_st_close(f);
    kiln_ip_adapter_free(plain);
    kiln_ip_adapter_free(plus);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The whole IPAdapter chain from a picture file: preprocess, tower,
 * projection; for Plus also the black picture the negative rows get. */
static void check_tokens_from_picture(const char *adapter, const char *golden_tokens)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_clip_vision *cv;
    kiln_ip_adapter *ipa;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(TINY_F32, be, &m));
    assert_kiln_ok(kiln_clip_vision_open(kiln_test_data(VISION), be, &cv));
    assert_kiln_ok(kiln_ip_adapter_open(kiln_test_data(adapter), &m->unet, be, &ipa));
    kiln_image img;
    assert_kiln_ok(kiln_image_load(kiln_test_data("ip_adapter/picture_251x233.png"), &img));
    float *tokens;
    assert_kiln_ok(kiln_image_prompt_tokens(ipa, cv, &img, 1, &tokens));
    kiln_st_file *f = golden_open(GOLDEN);
    golden want = golden_read(f, golden_tokens);
    print_message("  %-16s", golden_tokens);
    assert_rel_l2_le(tokens, want.data, want.count, TOL_F32);
    free(tokens);
    golden_free(&want);
    kiln_st_close(f);
    kiln_image_free(&img);
    kiln_ip_adapter_free(ipa);
    kiln_clip_vision_free(cv);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void tokens_from_picture(void **s)
{
    (void)s;
    check_tokens_from_picture(ADAPTER, "ip_tokens");
}

static void plus_tokens_from_picture(void **s)
{
    (void)s;
    check_tokens_from_picture(PLUS, "plus.ip_tokens");
}

static void expect_message(kiln_status st, kiln_status code, const char *needle)
{
    assert_int_equal(st, code);
    print_message("  refused: %s\n", kiln_last_error());
    if (!strstr(kiln_last_error(), needle)) fail_msg("'%s' does not mention '%s'", kiln_last_error(), needle);
}

/* The tiny adapter's tensors with one replaced or added, written to `path`. */
static void write_variant(const char *path, const kiln_st_entry *change)
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(kiln_test_data(ADAPTER), &f));
    size_t n = kiln_st_count(f), k = 0;
    kiln_st_entry *e = calloc(n + 1, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (strcmp(t->name, change->name) == 0) continue;
        e[k] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[k++].shape, t->shape, sizeof t->shape);
    }
    e[k++] = *change;
    assert_kiln_ok(kiln_st_write(path, e, k, NULL, 0));
    free(e);
    kiln_st_close(f);
}

static void refusals(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m, *shapes;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(TINY_F32, be, &m));
    kiln_clip_vision *cv = (kiln_clip_vision *)&cv;
    kiln_ip_adapter *ipa = (kiln_ip_adapter *)&ipa;

    expect_message(kiln_clip_vision_open(kiln_test_data(ADAPTER), be, &cv), KILN_ERR_MODEL,
                   "not a CLIP vision model");
    assert_null(cv);
    expect_message(kiln_ip_adapter_open(kiln_test_data(VISION), &m->unet, be, &ipa), KILN_ERR_MODEL,
                   "not an IP-Adapter");
    assert_null(ipa);
    expect_message(kiln_ip_adapter_open(TINY_F32, &m->unet, be, &ipa), KILN_ERR_MODEL, "not an IP-Adapter");
    /* kiln-shapes' UNet reads 64-wide text */
    assert_kiln_ok(kiln_model_load(KILN_SOURCE_DIR "/models/kiln-shapes.safetensors", be, &shapes));
    expect_message(kiln_ip_adapter_open(kiln_test_data(ADAPTER), &shapes->unet, be, &ipa), KILN_ERR_MODEL,
                   "for another base model than this one (kiln-shapes, context 64)");
    kiln_model_free(shapes);

    char dir[] = "/tmp/kiln_ip_adapter_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/variant.safetensors", dir);
    static float data[128 * 16];
    for (int i = 0; i < 128 * 16; i++) data[i] = (float)(i % 7) * 0.01f;
    /* an MLP image projection without full-face's norm: FaceID's */
    write_variant(path, &(kiln_st_entry){"image_proj.proj.0.weight", KILN_F32, 2, {32, 32}, data});
    expect_message(kiln_ip_adapter_open(path, &m->unet, be, &ipa), KILN_ERR_UNSUPPORTED, "FaceID");
    /* a Resampler's learned queries without the rest of it */
    write_variant(path, &(kiln_st_entry){"image_proj.latents", KILN_F32, 3, {1, 16, 32}, data});
    expect_message(kiln_ip_adapter_open(path, &m->unet, be, &ipa), KILN_ERR_MODEL,
                   "an IP-Adapter Plus without the Resampler's");
    /* a seventh cross-attention */
    write_variant(path, &(kiln_st_entry){"ip_adapter.13.to_k_ip.weight", KILN_F32, 2, {32, 32}, data});
    expect_message(kiln_ip_adapter_open(path, &m->unet, be, &ipa), KILN_ERR_MODEL,
                   "'ip_adapter.13.to_k_ip.weight', past the 6 cross-attentions");
    /* a layer of the wrong width */
    write_variant(path, &(kiln_st_entry){"ip_adapter.5.to_v_ip.weight", KILN_F32, 2, {16, 32}, data});
    expect_message(kiln_ip_adapter_open(path, &m->unet, be, &ipa), KILN_ERR_MODEL, "ip_adapter.5.to_v_ip.weight");
    /* an adapter reading 16-wide image embeds, with the tower's 24-wide ones */
    write_variant(path, &(kiln_st_entry){"image_proj.proj.weight", KILN_F32, 2, {128, 16}, data});
    assert_kiln_ok(kiln_ip_adapter_open(path, &m->unet, be, &ipa));
    assert_kiln_ok(kiln_clip_vision_open(kiln_test_data(VISION), be, &cv));
    kiln_image img;
    assert_kiln_ok(kiln_image_alloc(&img, 30, 20));
    float *tokens = (float *)&tokens;
    expect_message(kiln_image_prompt_tokens(ipa, cv, &img, 1, &tokens), KILN_ERR_INVALID_ARG,
                   "makes 24-wide image embeds and the IP-Adapter reads 16-wide ones");
    assert_null(tokens);
    kiln_image_free(&img);
    kiln_clip_vision_free(cv);
    kiln_ip_adapter_free(ipa);
    unlink(path);
    rmdir(dir);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(antialiased_resize),    cmocka_unit_test(preprocess_as_comfyui),
        cmocka_unit_test(parity_f32),
        cmocka_unit_test(parity_f16_unet),       cmocka_unit_test(plus_parity_f32), cmocka_unit_test(full_face_parity_f32),
        cmocka_unit_test(pictures_parity_f32),
        cmocka_unit_test(sdxl_parity_f32),       cmocka_unit_test(chain_parity_f32),
        cmocka_unit_test(sampler_chains_adapters),
        cmocka_unit_test(tokens_from_picture),   cmocka_unit_test(plus_tokens_from_picture),
        cmocka_unit_test(sampler_routes_tokens), cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
