/* The gen tool end to end, as a user runs it: a ComfyUI seed reproduces
 * ComfyUI's image (txt2img_euler_normal_s8: seed 42, batch 2, 8 steps, cfg 5),
 * the LATENT it saves is ComfyUI's, and the PNGs carry the `parameters` and
 * `prompt` text chunks; a .jpg output is the same picture with its parameters
 * in EXIF; --lora and --controlnet change the run as their strengths and
 * ranges say and are recorded. Also
 * VAEEncode of ComfyUI's img2img input images. */
#include "kiln_test.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "image.h"
#include "parts.h"
#include "inpaint.h"
#include "tiny_variants.h"
#include "pipeline.h"
#include "resample.h"
#include "esrgan.h"
#include "tokenizer.h"

static char tmpdir[] = "/tmp/kiln-gen-XXXXXX";

/* Reads a PNG text chunk's value into buf ("" when absent). */
static void read_png_text(const char *path, const char *key, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("%s: libpng error", path);
    png_init_io(png, f);
    png_read_info(png, info);
    png_textp text;
    int n = png_get_text(png, info, &text, NULL);
    for (int i = 0; i < n; i++)
        if (strcmp(text[i].key, key) == 0) snprintf(buf, size, "%s", text[i].text);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
}

/* A text file (gen's log) into buf, cut to size - 1 bytes. */
static void read_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void seed_reproduces_comfyui(void **state)
{
    (void)state;
    char cmd[4096], out[512], latent_path[512];
    snprintf(out, sizeof out, "%s/img.png", tmpdir);
    snprintf(latent_path, sizeof latent_path, "%s/latent.safetensors", tmpdir);
    snprintf(cmd, sizeof cmd,
             "%s/bin/gen --model %s --prompt 'a red circle on a blue background' --negative-prompt blurry "
             "--width 16 --height 16 --steps 8 --cfg 5 --sampler euler --scheduler normal --seed 42 --batch 2 "
             "--save-latent %s --output %s --json > %s/gen.json",
             KILN_BINARY_DIR, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), latent_path, out, tmpdir);
    assert_int_equal(system(cmd), 0);

    kiln_st_file *want = golden_open("comfyui_e2e/txt2img_euler_normal_s8.safetensors");
    golden want_latent = golden_read(want, "latent_out"), want_pixels = golden_read(want, "image_uint8");
    kiln_st_file *have;
    assert_kiln_ok(kiln_st_open(latent_path, &have));
    golden have_latent = golden_read(have, "latent");
    assert_int_equal(have_latent.count, want_latent.count);
    assert_rel_l2_le(have_latent.data, want_latent.data, want_latent.count, 1e-4);

    for (int b = 0; b < 2; b++) {
        char name[600];
        snprintf(name, sizeof name, "%s/img_%05d.png", tmpdir, b + 1);
        kiln_image img;
        assert_kiln_ok(kiln_image_load(name, &img));
        assert_int_equal(img.width, 16);
        int worst = 0;
        for (int i = 0; i < 16 * 16 * 3; i++) {
            int d = abs((int)img.pixels[i] - (int)want_pixels.data[b * 16 * 16 * 3 + i]);
            worst = d > worst ? d : worst;
        }
        assert_true(worst <= 1);
        kiln_image_free(&img);
        char text[8192];
        read_png_text(name, "parameters", text, sizeof text);
        assert_non_null(strstr(text, "Seed: 42"));
        assert_non_null(strstr(text, "Negative prompt: blurry"));
        read_png_text(name, "prompt", text, sizeof text);
        assert_non_null(strstr(text, "\"KSampler\""));
    }
    golden_free(&want_latent);
    golden_free(&want_pixels);
    golden_free(&have_latent);
    kiln_st_close(want);
    kiln_st_close(have);
}

/* --output NAME.jpg: the same picture as the PNG of the same run, as a JPEG
 * carrying the parameters in EXIF (the layout itself is test_image's). */
static void jpeg_output(void **state)
{
    (void)state;
    kiln_image img[2];
    for (int i = 0; i < 2; i++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "%s/bin/gen --model %s --prompt 'a red circle' --width 16 --height 16 --steps 4 --seed 7 "
                 "--output %s/same.%s 2> /dev/null",
                 KILN_BINARY_DIR, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), tmpdir, i ? "jpg" : "png");
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/same.%s", tmpdir, i ? "jpg" : "png");
        assert_kiln_ok(kiln_image_load(cmd, &img[i]));
        if (i) {
            FILE *f = fopen(cmd, "rb");
            assert_non_null(f);
            uint8_t head[3], file[65536];
            size_t n = fread(file, 1, sizeof file, f);
            fclose(f);
            memcpy(head, file, 3);
            assert_memory_equal(head, "\xff\xd8\xff", 3);
            const char want[] = "ASCII\0\0\0a red circle\nSteps: 4,";
            assert_non_null(memmem(file, n, want, sizeof want - 1));
            assert_non_null(memmem(file, n, "Seed: 7,", 8));
        }
    }
    assert_int_equal(img[1].width, 16);
    assert_int_equal(img[1].height, 16);
    /* Compared in luma: the random-weight model paints noise, whose colour
     * JPEG's 4:2:0 chroma halves away (a mean error near 20 in RGB). */
    double total = 0.0;
    for (int i = 0; i < 16 * 16; i++) {
        double luma[2];
        for (int k = 0; k < 2; k++) {
            const uint8_t *p = img[k].pixels + 3 * i;
            luma[k] = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        }
        total += fabs(luma[0] - luma[1]);
    }
    assert_true(total / (16 * 16) <= 3.0);
    kiln_image_free(&img[0]);
    kiln_image_free(&img[1]);
}

/* Runs gen on a model under tests/data with extra flags, saving the latent
 * and the log; returns the latent (malloc'd) and its element count. */
static float *gen_model_latent(const char *model, const char *name, const char *flags, size_t *count)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s/bin/gen --model %s %s --prompt 'a red circle' --width 16 --height 16 --steps 3 --seed 5 "
             "--output %s/%s.png --save-latent %s/%s.safetensors 2> %s/%s.log",
             KILN_BINARY_DIR, kiln_test_data(model), flags, tmpdir, name, tmpdir, name, tmpdir, name);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/%s.safetensors", tmpdir, name);
    kiln_st_file *f;
    float *latent;
    assert_kiln_ok(kiln_st_open(cmd, &f));
    assert_kiln_ok(kiln_st_read_f32(f, "latent", &latent, count));
    kiln_st_close(f);
    return latent;
}

/* What the library samples for gen_model_latent's prompt and settings
 * (euler, normal, 3 steps, cfg 7, seed 5, 16x16), malloc'd. */
static float *library_latent(const char *model, int clip_skip)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data(model), be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "a red circle", clip_skip, &pos));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", clip_skip, &neg));
    kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 3,
                             .cfg = 7.0f, .denoise = 1.0, .seed = 5, .batch = 1, .latent_h = 8, .latent_w = 8};
    float *latent;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &latent));
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
    return latent;
}

/* The same on the tiny SD 1.x model. */
static float *gen_latent(const char *name, const char *flags, size_t *count)
{
    return gen_model_latent("tiny/sd15_tiny_ldm_fp32.safetensors", name, flags, count);
}

/* gen --prompt-l on SDXL: CLIP-L given the prompt itself is the plain run
 * to the bit, another text another picture (the encoding itself is
 * test_sdxl's); the PNG's CLIPTextEncodeSDXL carries it as text_l. */
static void sdxl_text_l(void **state)
{
    (void)state;
    const char *flags[3] = {"", "--prompt-l 'a red circle'", "--prompt-l 'a green square'"};
    float *latent[3];
    size_t count[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "text_l%d", i);
        latent[i] = gen_model_latent("sdxl/tiny_sdxl.safetensors", name, flags[i], &count[i]);
        assert_int_equal(count[i], count[0]);
    }
    assert_memory_equal(latent[1], latent[0], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[2], latent[0], count[0]) > 0.01);
    char text[8192], path[512];
    snprintf(path, sizeof path, "%s/text_l2.png", tmpdir);
    read_png_text(path, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"text_g\":\"a red circle\",\"text_l\":\"a green square\""));
    for (int i = 0; i < 3; i++) free(latent[i]);
}

/* gen --vae-tile: the picture decoded over tiles (the tiling itself is
 * test_vae_tiled's) is near the whole decode but not it; its PNG records
 * VAEDecodeTiled, and gen --workflow on it makes the same pixels. */
static void vae_tiled_run(void **state)
{
    (void)state;
    char cmd[4096], path[600];
    const char *tiles[2] = {"", "--vae-tile 64:16"};
    kiln_image img[3];
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s/bin/gen --model %s/tiny/sd15_tiny_ldm_fp32.safetensors --prompt 'a red circle' --width 96 "
                 "--height 80 --steps 2 --seed 6 %s --output %s/tiled%d.png 2>/dev/null",
                 KILN_BINARY_DIR, KILN_TEST_DATA, tiles[i], tmpdir, i);
        assert_int_equal(system(cmd), 0);
        snprintf(path, sizeof path, "%s/tiled%d.png", tmpdir, i);
        assert_kiln_ok(kiln_image_load(path, &img[i]));
    }
    snprintf(cmd, sizeof cmd, "%s/bin/gen --workflow %s/tiled1.png --models %s/tiny --output %s/tiled2.png 2>/dev/null",
             KILN_BINARY_DIR, tmpdir, KILN_TEST_DATA, tmpdir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/tiled2.png", tmpdir);
    assert_kiln_ok(kiln_image_load(path, &img[2]));
    const size_t n = (size_t)96 * 80 * 3;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)img[1].pixels[i] - img[0].pixels[i];
        diff += d * d;
        norm += (double)img[0].pixels[i] * img[0].pixels[i];
    }
    assert_true(diff > 0 && sqrt(diff / norm) < 0.5);
    assert_memory_equal(img[2].pixels, img[1].pixels, n);
    char text[8192];
    snprintf(path, sizeof path, "%s/tiled1.png", tmpdir);
    read_png_text(path, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"class_type\":\"VAEDecodeTiled\",\"inputs\":{\"tile_size\":64,\"overlap\":16,"));
    for (int i = 0; i < 3; i++) kiln_image_free(&img[i]);
}

/* gen --lora: strength 0 is the plain model to the bit, 0.75 another picture
 * (the merge itself is test_lora's), and the PNG says which LoRA made it. */
static void lora_run(void **state)
{
    (void)state;
    const char *strengths[3] = {NULL, "0", "0.75"};
    float *latent[3];
    size_t count[3];
    for (int i = 0; i < 3; i++) {
        char flags[1024] = "", name[16];
        if (strengths[i])
            snprintf(flags, sizeof flags, "--lora %s/lora/kohya_locon.safetensors:%s", KILN_TEST_DATA, strengths[i]);
        snprintf(name, sizeof name, "lora%d", i);
        latent[i] = gen_latent(name, flags, &count[i]);
        assert_int_equal(count[i], count[0]);
    }
    assert_memory_equal(latent[0], latent[1], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[2], latent[0], count[0]) > 0.05);
    char text[8192], path[512];
    snprintf(path, sizeof path, "%s/lora2.png", tmpdir);
    read_png_text(path, "parameters", text, sizeof text);
    assert_non_null(strstr(text, "a red circle <lora:kohya_locon:0.75>\nSteps: 3,"));
    read_png_text(path, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"class_type\":\"LoraLoader\",\"inputs\":{\"lora_name\":\"kohya_locon.safetensors\","
                                 "\"strength_model\":0.75,\"strength_clip\":0.75"));
    snprintf(path, sizeof path, "%s/lora2.log", tmpdir);
    read_text(path, text, sizeof text);
    assert_non_null(strstr(text, "kohya_locon.safetensors: 43 UNet and 12 text encoder weights merged"));
    for (int i = 0; i < 3; i++) free(latent[i]);
}

/* gen --controlnet: strength 0, or a range no step falls in, is the plain
 * model to the bit; the ControlNet over the whole run or its second half
 * changes the picture, the two differently (the model itself is
 * test_controlnet's); a second ControlNet at strength 0 leaves the first's
 * run to the bit, at strength 0.5 changes it; the PNG records them. */
static void controlnet_run(void **state)
{
    (void)state;
    char net[1024];
    snprintf(net, sizeof net, "--controlnet %s/controlnet/tiny_ldm.safetensors --control-image %s/controlnet/hint_37x23.png",
             KILN_TEST_DATA, KILN_TEST_DATA);
    char second[1024];
    snprintf(second, sizeof second,
             "--controlnet %s/controlnet/second_ldm.safetensors --control-image %s/controlnet/hint_37x23.png",
             KILN_TEST_DATA, KILN_TEST_DATA);
    char second_off[1100], second_half[1100];
    snprintf(second_off, sizeof second_off, "%s --control-strength 1 --control-strength 0", second);
    snprintf(second_half, sizeof second_half, "%s --control-strength 1 --control-strength 0.5", second);
    const char *extra[7] = {NULL, "--control-strength 0", "--control-start 1 --control-end 1", "", "--control-start 0.5",
                            second_off, second_half};
    float *latent[7];
    size_t count[7];
    for (int i = 0; i < 7; i++) {
        char flags[2048], name[16];
        snprintf(flags, sizeof flags, "%s %s", extra[i] ? net : "", extra[i] ? extra[i] : "");
        snprintf(name, sizeof name, "control%d", i);
        latent[i] = gen_latent(name, flags, &count[i]);
        assert_int_equal(count[i], count[0]);
    }
    assert_memory_equal(latent[1], latent[0], count[0] * sizeof(float));
    assert_memory_equal(latent[2], latent[0], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[3], latent[0], count[0]) > 0.05);
    assert_true(kiln_rel_l2(latent[4], latent[0], count[0]) > 0.01);
    assert_true(kiln_rel_l2(latent[4], latent[3], count[0]) > 0.01);
    assert_memory_equal(latent[5], latent[3], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[6], latent[3], count[0]) > 0.01);
    char text[8192], path[512];
    snprintf(path, sizeof path, "%s/control4.png", tmpdir);
    read_png_text(path, "parameters", text, sizeof text);
    assert_non_null(strstr(text, "ControlNet 0: \"Module: none, Model: tiny_ldm, Weight: 1, Resize Mode: Crop and Resize, "
                                 "Guidance Start: 0.5, Guidance End: 1\""));
    read_png_text(path, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"class_type\":\"ControlNetApplyAdvanced\",\"inputs\":{\"strength\":1,"
                                 "\"start_percent\":0.5,\"end_percent\":1"));
    snprintf(path, sizeof path, "%s/control6.png", tmpdir);
    read_png_text(path, "parameters", text, sizeof text);
    assert_non_null(strstr(text, "Guidance End: 1\", ControlNet 1: \"Module: none, Model: second_ldm, Weight: 0.5, "));
    for (int i = 0; i < 7; i++) free(latent[i]);
}

/* gen with `flags` (a 3-step 16x16 run unless they or a picture say
 * otherwise), then gen --workflow on the PNG it wrote: the same pixels to
 * the bit. */
static void workflow_again(const char *name, const char *flags, const char *models)
{
    char cmd[8192], path[600];
    const bool batch = strstr(flags, "--batch 2") != NULL;
    snprintf(cmd, sizeof cmd,
             "%1$s/bin/gen --prompt 'a red circle' --width 16 --height 16 --steps 3 --seed 4 %2$s "
             "--output %3$s/%4$s.png 2>/dev/null && %1$s/bin/gen --workflow %3$s/%4$s%7$s.png --models %5$s/sdxl "
             "--models %5$s/sdxl_refiner --models %5$s/tiny --models %5$s/ip_adapter --models %5$s/inpaint %6$s "
             "--output %3$s/%4$s_again.png 2>/dev/null",
             KILN_BINARY_DIR, flags, tmpdir, name, KILN_TEST_DATA, models, batch ? "_00001" : "");
    if (system(cmd)) fail_msg("%s: %s", name, cmd);
    for (int b = 0; b < (batch ? 2 : 1); b++) {
        kiln_image first, again;
        if (batch) snprintf(path, sizeof path, "%s/%s_%05d.png", tmpdir, name, b + 1);
        else snprintf(path, sizeof path, "%s/%s.png", tmpdir, name);
        assert_kiln_ok(kiln_image_load(path, &first));
        if (batch) snprintf(path, sizeof path, "%s/%s_again_%05d.png", tmpdir, name, b + 1);
        else snprintf(path, sizeof path, "%s/%s_again.png", tmpdir, name);
        assert_kiln_ok(kiln_image_load(path, &again));
        assert_int_equal(again.width, first.width);
        assert_int_equal(again.height, first.height);
        if (memcmp(again.pixels, first.pixels, (size_t)first.width * first.height * 3))
            fail_msg("%s: the workflow made other pixels than the run", name);
        kiln_image_free(&first);
        kiln_image_free(&again);
    }
}

/* gen --controlnet with T2I-Adapters (test_t2i_adapter's files): one
 * changes the picture, at strength 0 it is the plain model to the bit; on
 * SDXL too; --control-canny is the run of the picture's edges (Canny) given
 * as the control image; one beside a ControlNet, its picture's edges taken;
 * the PNGs' workflows (with their Canny node) run again to their pixels. */
static void t2i_adapter_run(void **state)
{
    (void)state;
    char adapter[1024], both[2048], xl[1024], flags[4096];
    snprintf(adapter, sizeof adapter, "--controlnet %1$s/t2i_adapter/full_original.safetensors --control-image "
             "%1$s/controlnet/hint_37x23.png", KILN_TEST_DATA);
    snprintf(both, sizeof both, "%2$s --controlnet %1$s/controlnet/tiny_ldm.safetensors --control-image "
             "%1$s/controlnet/hint_37x23.png --control-strength 0.7 --control-strength 0.5 --control-canny 0.1,0.3 "
             "--control-canny off", KILN_TEST_DATA, adapter);
    snprintf(xl, sizeof xl, "--controlnet %1$s/t2i_adapter/xl_diffusers.safetensors --control-image "
             "%1$s/controlnet/hint_37x23.png", KILN_TEST_DATA);
    size_t count[5];
    float *latent[5];
    latent[0] = gen_latent("t2i_plain", "", &count[0]);
    latent[1] = gen_latent("t2i", adapter, &count[1]);
    snprintf(flags, sizeof flags, "%s --control-strength 0", adapter);
    latent[2] = gen_latent("t2i_off", flags, &count[2]);
    latent[3] = gen_model_latent("sdxl/tiny_sdxl.safetensors", "t2i_xl_plain", "", &count[3]);
    latent[4] = gen_model_latent("sdxl/tiny_sdxl.safetensors", "t2i_xl", xl, &count[4]);
    assert_int_equal(count[1], count[0]), assert_int_equal(count[2], count[0]), assert_int_equal(count[4], count[3]);
    assert_memory_equal(latent[2], latent[0], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[1], latent[0], count[0]) > 0.05);
    assert_true(kiln_rel_l2(latent[4], latent[3], count[3]) > 0.05);
    /* --control-canny: the run of the picture's edges given as the control image */
    kiln_image shapes, edges;
    char edges_png[600];
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/image_ops/canny_61x47.png", &shapes));
    assert_kiln_ok(kiln_image_canny(&shapes, 0.1, 0.3, &edges));
    snprintf(edges_png, sizeof edges_png, "%s/edges.png", tmpdir);
    assert_kiln_ok(kiln_image_save(edges_png, &edges, NULL, 0));
    kiln_image_free(&shapes), kiln_image_free(&edges);
    float *canny[2];
    size_t canny_count[2];
    snprintf(flags, sizeof flags, "--controlnet %1$s/t2i_adapter/full_original.safetensors --control-image "
             "%1$s/image_ops/canny_61x47.png --control-canny 0.1,0.3", KILN_TEST_DATA);
    canny[0] = gen_latent("t2i_canny", flags, &canny_count[0]);
    snprintf(flags, sizeof flags, "--controlnet %s/t2i_adapter/full_original.safetensors --control-image %s",
             KILN_TEST_DATA, edges_png);
    canny[1] = gen_latent("t2i_edges", flags, &canny_count[1]);
    assert_int_equal(canny_count[0], canny_count[1]);
    assert_memory_equal(canny[0], canny[1], canny_count[0] * sizeof(float));
    assert_true(kiln_rel_l2(canny[0], latent[1], count[0]) > 0.01);
    free(canny[0]), free(canny[1]);
    for (int i = 0; i < 5; i++) free(latent[i]);
    const char *models = "--models " KILN_TEST_DATA "/t2i_adapter --models " KILN_TEST_DATA "/controlnet "
                         "--models " KILN_TEST_DATA "/image_ops";
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors %s", KILN_TEST_DATA, both);
    workflow_again("t2i_both", flags, models);
    snprintf(flags, sizeof flags, "--model %s/sdxl/tiny_sdxl.safetensors %s", KILN_TEST_DATA, xl);
    workflow_again("t2i_xl_again", flags, models);
}

/* workflow_again, and the workflow of the first PNG holds each of `words`
 * (NULL-terminated). */
static void workflow_again_holding(const char *name, const char *flags, const char *models, const char *const *words)
{
    workflow_again(name, flags, models);
    char path[600], json[65536];
    snprintf(path, sizeof path, "%s/%s.png", tmpdir, name);
    read_png_text(path, "prompt", json, sizeof json);
    for (; *words; words++)
        if (!strstr(json, *words)) fail_msg("%s: the workflow does not hold %s", name, *words);
}

/* gen --workflow on the workflow a PNG of gen's carries (a LoRA, clip skip,
 * a ControlNet from 30 % and a second over the whole run, both at 0.6, the
 * hires fix, a batch of 2), as a JSON file and read from the PNG itself,
 * makes the same pictures to the bit: the workflow says all of the run, and
 * kiln runs it as gen did; so do SDXL's numbers (the negative prompt's own
 * too) and CLIP-L's own text, its
 * refiner, an IP-Adapter, two chained, v-prediction (and RescaleCFG, CFGZeroStar and APG on it), prompts on areas. A
 * workflow with
 * --prompt, and a PNG without one, are refused. */
static void workflow_round_trip(void **state)
{
    (void)state;
    char cmd[4096], json[8192], path[600];
    snprintf(cmd, sizeof cmd,
             "%s/bin/gen --model %s/tiny/sd15_tiny_ldm_fp32.safetensors --prompt 'a red (circle:1.2)' "
             "--negative-prompt blurry --width 16 --height 16 --steps 3 --seed 9 --batch 2 --clip-skip 2 "
             "--lora %s/lora/kohya_ldm.safetensors:0.7 --controlnet %s/controlnet/tiny_ldm.safetensors "
             "--control-image %s/controlnet/hint_37x23.png --controlnet %s/controlnet/second_ldm.safetensors "
             "--control-image %s/controlnet/hint_37x23.png --control-start 0.3 --control-start 0 "
             "--control-strength 0.6 --hires-scale 1.5 --hires-steps 2 --output %s/first.png 2>/dev/null",
             KILN_BINARY_DIR, KILN_TEST_DATA, KILN_TEST_DATA, KILN_TEST_DATA, KILN_TEST_DATA, KILN_TEST_DATA,
             KILN_TEST_DATA, tmpdir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/first_00001.png", tmpdir);
    read_png_text(path, "prompt", json, sizeof json);
    assert_non_null(strstr(json, "\"LatentUpscaleBy\""));
    assert_non_null(strstr(json, "\"second_ldm.safetensors\""));
    snprintf(path, sizeof path, "%s/workflow.json", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    static const char *const sources[2] = {"workflow.json", "first_00001.png"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s/bin/gen --workflow %s/%s --models %s/tiny --models %s/lora --models %s/controlnet "
                 "--output %s/again%d.png 2>/dev/null",
                 KILN_BINARY_DIR, tmpdir, sources[i], KILN_TEST_DATA, KILN_TEST_DATA, KILN_TEST_DATA, tmpdir, i);
        assert_int_equal(system(cmd), 0);
    }
    for (int k = 0; k < 4; k++) {
        int b = k % 2 + 1;
        kiln_image first, again;
        snprintf(path, sizeof path, "%s/first_%05d.png", tmpdir, b);
        assert_kiln_ok(kiln_image_load(path, &first));
        snprintf(path, sizeof path, "%s/again%d_%05d.png", tmpdir, k / 2, b);
        assert_kiln_ok(kiln_image_load(path, &again));
        assert_int_equal(first.width, 24);
        assert_int_equal(again.width, 24);
        assert_int_equal(again.height, 24);
        assert_memory_equal(again.pixels, first.pixels, (size_t)24 * 24 * 3);
        read_png_text(path, "prompt", cmd, sizeof cmd);
        assert_string_equal(cmd, json); /* the workflow it ran, for ComfyUI to load */
        kiln_image_free(&first);
        kiln_image_free(&again);
    }
    /* the other nodes gen writes: CLIPTextEncodeSDXL, the refiner's second checkpoint, KSamplerAdvanced pair and
       CLIPTextEncodeSDXLRefiner, IPAdapterAdvanced with its loaders, ModelSamplingDiscrete, LoadImageMask with
       SetLatentNoiseMask or VAEEncodeForInpaint, ImagePadForOutpaint before either, InstructPixToPixConditioning;
       and a PixArt and a Flux folder's runs (Flux with a LoRA, inpainting, FLUX.1 Canny/Depth's and Fill's shapes) */
    char flags[2048], dir[1200];
    snprintf(flags, sizeof flags, "--model %1$s/sdxl/tiny_sdxl.safetensors --sdxl-size 40x56 --sdxl-crop 3,5 "
             "--sdxl-target 48x72", KILN_TEST_DATA);
    workflow_again("xl", flags, "");
    snprintf(flags, sizeof flags, "--model %s/sdxl/tiny_sdxl.safetensors --prompt-l 'a green square' "
             "--negative-prompt-l blurry", KILN_TEST_DATA);
    workflow_again("xl_text_l", flags, "");
    /* img2img with --vae-tile: VAEEncodeTiled and VAEDecodeTiled */
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --init-image "
             "%1$s/inpaint/image_20x17.png --denoise 0.6 --vae-tile 64:16", KILN_TEST_DATA);
    workflow_again("img2img_tiled", flags, "");
    snprintf(flags, sizeof flags, "--model %s/sdxl/tiny_sdxl.safetensors --sdxl-size 40x56 --negative-sdxl-size 8x8 "
             "--negative-sdxl-target 16x16", KILN_TEST_DATA);
    workflow_again("xl_negative_numbers", flags, "");
    snprintf(flags, sizeof flags, "--model %1$s/sdxl/tiny_sdxl.safetensors --refiner "
             "%1$s/sdxl_refiner/tiny_refiner.safetensors --aesthetic 7 --negative-aesthetic 2", KILN_TEST_DATA);
    workflow_again("refined", flags, "");
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --ip-adapter "
             "%1$s/ip_adapter/ip_adapter_tiny.safetensors --clip-vision %1$s/ip_adapter/clip_vision_tiny.safetensors "
             "--ip-image %1$s/ip_adapter/picture_251x233.png --ip-weight 0.8 --ip-start 0.2", KILN_TEST_DATA);
    workflow_again("ip", flags, "");
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --ip-adapter "
             "%1$s/ip_adapter/ip_adapter_tiny.safetensors --ip-adapter %1$s/ip_adapter/ip_adapter_plus_tiny.safetensors "
             "--clip-vision %1$s/ip_adapter/clip_vision_tiny.safetensors --ip-image %1$s/ip_adapter/picture_251x233.png "
             "--ip-image %1$s/controlnet/hint_37x23.png --ip-weight 0.8 --ip-weight 0.5 --ip-start 0.2 --ip-start 0",
             KILN_TEST_DATA);
    workflow_again("ip2", flags, "--models " KILN_TEST_DATA "/controlnet");
    /* one adapter, two pictures of other sizes: ImageBatch joins them, the second fitted to the first */
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --ip-adapter "
             "%1$s/ip_adapter/ip_adapter_plus_tiny.safetensors --clip-vision "
             "%1$s/ip_adapter/clip_vision_tiny.safetensors --ip-image %1$s/ip_adapter/picture_251x233.png "
             "--ip-image %1$s/controlnet/hint_37x23.png --ip-weight 0.8", KILN_TEST_DATA);
    workflow_again_holding("ip_batch", flags, "--models " KILN_TEST_DATA "/controlnet",
                           (const char *const[]){"\"ImageBatch\"", "\"hint_37x23.png\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --prediction v", KILN_TEST_DATA);
    workflow_again("vpred", flags, "");
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --area-prompt "
             "'8,0,64,64,1.5:a blue square' --area-prompt '0,8,16,16:a green line'", KILN_TEST_DATA);
    workflow_again_holding("areas", flags, "",
                           (const char *const[]){"\"ConditioningSetArea\"", "\"a green line\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --prediction v --rescale-cfg 0.7 "
             "--cfg-zero-star --apg 0.5,4,-0.25", KILN_TEST_DATA);
    workflow_again_holding("vpred_rescaled", flags, "",
                           (const char *const[]){"\"RescaleCFG\"", "\"multiplier\":0.7", "\"CFGZeroStar\"",
                                                 "\"APG\"", "\"momentum\":-0.25", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --latent-sharpen 3,0.5,1 --tcfg",
             KILN_TEST_DATA);
    workflow_again_holding("latent_sharpen", flags, "",
                           (const char *const[]){"\"LatentOperationSharpen\"", "\"LatentApplyOperationCFG\"",
                                                 "\"sharpen_radius\":3", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --tcfg --cfg-zero-star --mahiro "
             "--cfg-norm 0.9 --epsilon-scaling 1.02 --apg 0.5,4,-0.25", KILN_TEST_DATA);
    workflow_again_holding("post_cfg", flags, "",
                           (const char *const[]){"\"TCFG\"", "\"Mahiro\"", "\"CFGNorm\"", "\"strength\":0.9",
                                                 "\"Epsilon Scaling\"", "\"scaling_factor\":1.02", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --width 48 --height 40 "
             "--sag 0.6,1.5", KILN_TEST_DATA);
    workflow_again_holding("sag", flags, "",
                           (const char *const[]){"\"SelfAttentionGuidance\"", "\"blur_sigma\":1.5", NULL});
    /* an SD diffusers folder: ComfyUI's DiffusersLoader, found again under --models */
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_diffusers", KILN_TEST_DATA);
    workflow_again_holding("diffusers_folder", flags, "",
                           (const char *const[]){"\"DiffusersLoader\"", "\"model_path\":\"sd15_tiny_diffusers\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --width 48 --height 40 "
             "--sag 0.6,1.5 --deep-shrink 3,2", KILN_TEST_DATA);
    workflow_again_holding("sag_deep_shrink", flags, "",
                           (const char *const[]){"\"SelfAttentionGuidance\"", "\"PatchModelAddDownscale\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --width 48 --height 40 "
             "--deep-shrink 3,1.5,0,0.6 --deep-shrink-method bilinear,nearest-exact --deep-shrink-before-skip "
             "--freeu-v2 1.3,1.4,0.9,0.2", KILN_TEST_DATA);
    workflow_again_holding("deep_shrink", flags, "",
                           (const char *const[]){"\"PatchModelAddDownscale\"", "\"downscale_factor\":1.5",
                                                 "\"downscale_after_skip\":false", "\"upscale_method\":\"nearest-exact\"",
                                                 "\"FreeU_V2\"", "\"model\":[\"97\",0]", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --width 96 --height 64 "
             "--hypertile 32,3,1 --hypertile-scale-depth --freeu 1.1,1.2,0.9,0.2", KILN_TEST_DATA);
    workflow_again_holding("hypertile", flags, "",
                           (const char *const[]){"\"HyperTile\"", "\"tile_size\":32", "\"swap_size\":3",
                                                 "\"scale_depth\":true", "\"FreeU\"", "\"model\":[\"98\",0]", NULL});
    /* a second checkpoint merged into the model and its text encoder; the workflow finds it by name */
    char other_dir[512];
    snprintf(other_dir, sizeof other_dir, "%s", tiny_other_model());
    *strrchr(other_dir, '/') = '\0';
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --merge %s:0.3 --merge-clip %s:0.6 "
             "--lora %s/lora/kohya_ldm.safetensors:0.5", KILN_TEST_DATA, tiny_other_model(), tiny_other_model(),
             KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %s --models %s/lora", other_dir, KILN_TEST_DATA);
    workflow_again_holding("merged", flags, dir,
                           (const char *const[]){"\"ModelMergeSimple\"", "\"ratio\":0.3", "\"CLIPMergeSimple\"",
                                                 "\"ratio\":0.6", "\"tiny_other.safetensors\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --freeu-v2 1.3,1.4,0.9,0.2",
             KILN_TEST_DATA);
    workflow_again_holding("freeu_v2", flags, "", (const char *const[]){"\"FreeU_V2\"", "\"b2\":1.4", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --prediction lcm --sampler lcm "
             "--scheduler sgm_uniform --steps 4 --cfg 1.5", KILN_TEST_DATA);
    workflow_again_holding("lcm", flags, "", (const char *const[]){"\"sampling\":\"lcm\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --edm cosxl,100,0.01", KILN_TEST_DATA);
    workflow_again_holding("edm", flags, "",
                           (const char *const[]){"\"ModelSamplingContinuousEDM\"", "\"sampling\":\"cosxl\"",
                                                 "\"sigma_max\":100", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --easy-cache 3,0,1", KILN_TEST_DATA);
    workflow_again_holding("easy_cache", flags, "",
                           (const char *const[]){"\"EasyCache\"", "\"reuse_threshold\":3", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --lazy-cache 3,0,1 --pag 2",
             KILN_TEST_DATA);
    workflow_again_holding("lazy_cache", flags, "", (const char *const[]){"\"LazyCache\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --fresca 0.9,1.3,2 --tcfg",
             KILN_TEST_DATA);
    workflow_again_holding("fresca", flags, "", (const char *const[]){"\"FreSca\"", "\"freq_cutoff\":2", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --hypernetwork "
             "%1$s/hypernetwork/relu_ln.pt --hypernetwork %1$s/hypernetwork/swish.pt:-0.7", KILN_TEST_DATA);
    char hypernetwork_dir[600];
    snprintf(hypernetwork_dir, sizeof hypernetwork_dir, "--models %s/hypernetwork", KILN_TEST_DATA);
    workflow_again_holding("hypernetwork", flags, hypernetwork_dir,
                           (const char *const[]){"\"HypernetworkLoader\"", "\"hypernetwork_name\":\"swish.pt\"",
                                                 "\"strength\":-0.7", "\"model\":[\"480\",0]", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --zsnr", KILN_TEST_DATA);
    workflow_again_holding("zsnr", flags, "",
                           (const char *const[]){"\"sampling\":\"eps\"", "\"zsnr\":true", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --pag 2.5 --freeu 1.1,1.2,0.9,0.2",
             KILN_TEST_DATA);
    workflow_again_holding("pag", flags, "",
                           (const char *const[]){"\"PerturbedAttentionGuidance\"", "\"scale\":2.5", "\"FreeU\"", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --init-image "
             "%1$s/inpaint/image_20x17.png --mask %1$s/inpaint/mask_20x17.png --batch 2", KILN_TEST_DATA);
    workflow_again("masked", flags, "");
    snprintf(flags, sizeof flags, "--model %s/pixart/tiny --cfg 4.5", KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %s/pixart", KILN_TEST_DATA);
    workflow_again("pixart", flags, dir);
    snprintf(flags, sizeof flags, "--model %s/chroma/tiny --cfg 2 --scheduler simple", KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %s/chroma", KILN_TEST_DATA);
    workflow_again("chroma", flags, dir);
    snprintf(flags, sizeof flags, "--model %s/chroma/tiny --cfg 2 --scheduler simple --t5-min-padding 1",
             KILN_TEST_DATA);
    workflow_again_holding("chroma_t5_padding", flags, dir,
                           (const char *const[]){"\"T5TokenizerOptions\"", "\"min_padding\":1", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/flux/tiny --cfg 1.5 --guidance 2.5 --scheduler simple --lora "
             "%1$s/flux/lora/kohya.safetensors:0.8:0.6", KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %1$s/flux --models %1$s/flux/lora", KILN_TEST_DATA);
    workflow_again("flux", flags, dir);
    snprintf(flags, sizeof flags, "--model %1$s/flux/tiny --cfg 1.5 --scheduler simple --init-image "
             "%1$s/inpaint/image_20x17.png --mask %1$s/inpaint/mask_20x17.png", KILN_TEST_DATA);
    workflow_again("flux_masked", flags, dir);
    /* prompts on areas on FLUX.1, a box of odd latent pixels among them */
    snprintf(flags, sizeof flags, "--model %1$s/flux/tiny --cfg 1.5 --scheduler simple --area-prompt "
             "'0,0,16,8:a blue square'", KILN_TEST_DATA);
    workflow_again_holding("flux_areas", flags, dir, (const char *const[]){"\"ConditioningSetArea\"", NULL});
    /* FLUX.1 Canny/Depth's shape: the picture through InstructPixToPixConditioning, after FluxGuidance */
    snprintf(flags, sizeof flags, "--model %1$s/flux/controlnet --cfg 1.5 --scheduler simple --controlnet "
             "%1$s/flux/controlnet/instantx --control-image %1$s/flux/controlnet/latent_hint_16x12.png --control-type "
             "depth --controlnet %1$s/flux/controlnet/xlabs.safetensors --control-image "
             "%1$s/flux/controlnet/pixel_hint_64x48.png --control-type auto --control-end 1 --control-end 0.4",
             KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %1$s/flux --models %1$s/flux/controlnet", KILN_TEST_DATA);
    workflow_again("flux_controlnets", flags, dir);
    /* an inpainting ControlNet of Alimama's kind with its mask: ControlNetInpaintingAliMamaApply */
    snprintf(flags, sizeof flags, "--model %1$s/flux/controlnet --cfg 1.5 --scheduler simple --controlnet "
             "%1$s/flux/controlnet/alimama --control-image %1$s/flux/controlnet/latent_hint_16x12.png "
             "--control-mask %1$s/flux/controlnet/mask_16x12.png", KILN_TEST_DATA);
    workflow_again_holding("flux_alimama", flags, dir,
                           (const char *const[]){"\"ControlNetInpaintingAliMamaApply\"", "\"LoadImageMask\"", NULL});
    /* an SD3 ControlNet of InstantX's kind over the first 60 %, chained with an SD 3.5 one of Stability's, and
       SkipLayerGuidance beside them */
    snprintf(flags, sizeof flags, "--model %1$s/sd3/tiny --cfg 2 --slg 1 --slg-start 0 --slg-end 0.5 "
             "--controlnet %1$s/sd3/controlnet/instantx "
             "--control-image %1$s/sd3/controlnet/hint_12x16.png --control-end 0.6 --controlnet "
             "%1$s/sd3/controlnet_sd35/sd3.5-tiny-controlnet-depth.safetensors --control-image "
             "%1$s/sd3/controlnet/hint_12x16.png --control-end 1 --control-strength 1 --control-strength 0.7",
             KILN_TEST_DATA);
    char sd3_dir[600];
    snprintf(sd3_dir, sizeof sd3_dir, "--models %1$s/sd3 --models %1$s/sd3/controlnet --models "
             "%1$s/sd3/controlnet_sd35", KILN_TEST_DATA);
    workflow_again("sd3_controlnet", flags, sd3_dir);
    /* SD3's example negative prompt: ConditioningZeroOut, ConditioningSetTimestepRange, ConditioningCombine */
    snprintf(flags, sizeof flags, "--model %1$s/sd3/tiny --cfg 2 --negative-until 0.1", KILN_TEST_DATA);
    snprintf(sd3_dir, sizeof sd3_dir, "--models %1$s/sd3", KILN_TEST_DATA);
    workflow_again_holding("sd3_negative_until", flags, sd3_dir,
                           (const char *const[]){"\"ConditioningSetTimestepRange\"", "\"ConditioningCombine\"",
                                                 "\"ConditioningZeroOut\"", NULL});
    /* --sigmas: SamplerCustom on KSamplerSelect and ManualSigmas, img2img too */
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --sigmas '1.6, 0.7, 0.2, 0' "
             "--sampler dpmpp_2m --init-image %1$s/inpaint/image_20x17.png", KILN_TEST_DATA);
    workflow_again_holding("sigmas", flags, "",
                           (const char *const[]){"\"ManualSigmas\"", "\"SamplerCustom\"", "\"KSamplerSelect\"", NULL});
    /* an SD3 inpainting ControlNet with its mask: ControlNetInpaintingAliMamaApply */
    snprintf(flags, sizeof flags, "--model %1$s/sd3/tiny --cfg 2 --controlnet %1$s/sd3/controlnet/inpaint "
             "--control-image %1$s/sd3/controlnet/hint_12x16.png --control-mask %1$s/flux/controlnet/mask_16x12.png",
             KILN_TEST_DATA);
    snprintf(sd3_dir, sizeof sd3_dir, "--models %1$s/sd3 --models %1$s/sd3/controlnet --models "
             "%1$s/flux/controlnet", KILN_TEST_DATA);
    workflow_again_holding("sd3_inpainting_controlnet", flags, sd3_dir,
                           (const char *const[]){"\"ControlNetInpaintingAliMamaApply\"", "\"LoadImageMask\"", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/flux/controlnet --cfg 1.5 --scheduler simple --ip-adapter "
             "%1$s/flux/controlnet/ip_adapter.safetensors --clip-vision %1$s/ip_adapter/clip_vision_tiny.safetensors "
             "--ip-image %1$s/ip_adapter/picture_251x233.png --ip-weight 0.8 --ip-end 0.6", KILN_TEST_DATA);
    workflow_again("flux_ip_adapter", flags, dir);
    snprintf(flags, sizeof flags, "--model %1$s/flux/tiny --cfg 1.5 --guidance 2.5 --scheduler simple "
             "--reference-image %1$s/flux/fill/picture_16x16.png --reference-image %1$s/controlnet/hint_37x23.png",
             KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %1$s/flux --models %1$s/flux/fill --models %1$s/controlnet", KILN_TEST_DATA);
    workflow_again("flux_kontext", flags, dir);
    strcat(flags, " --reference-method index");
    workflow_again_holding("flux_kontext_index", flags, dir,
                           (const char *const[]){"\"reference_latents_method\":\"index\"", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/flux/tiny --cfg 1.5 --guidance 2.5 --scheduler simple --redux "
             "%1$s/redux/redux_tiny.safetensors --redux %1$s/redux/redux_tiny.safetensors --redux-vision "
             "%1$s/redux/siglip_tiny.safetensors --redux-image %1$s/ip_adapter/picture_251x233.png --redux-image "
             "%1$s/controlnet/hint_37x23.png --redux-strength 0.8 --redux-strength 0.5", KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %1$s/flux --models %1$s/redux --models %1$s/controlnet", KILN_TEST_DATA);
    workflow_again("flux_redux", flags, dir);
    snprintf(flags, sizeof flags, "--model %1$s/flux/canny --cfg 1.5 --guidance 30 --scheduler simple --init-image "
             "%1$s/inpaint/image_20x17.png", KILN_TEST_DATA);
    workflow_again("flux_canny", flags, dir);
    /* FLUX.1 Fill's shape: InpaintModelConditioning, inpainting and outpainting */
    snprintf(flags, sizeof flags, "--model %1$s/flux/fill --cfg 1.5 --guidance 30 --scheduler simple --init-image "
             "%1$s/flux/fill/picture_16x16.png --mask %1$s/flux/fill/mask_16x16.png", KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %1$s/flux --models %1$s/flux/fill", KILN_TEST_DATA);
    workflow_again("flux_fill", flags, dir);
    snprintf(flags, sizeof flags, "--model %1$s/flux/fill --cfg 1.5 --scheduler simple --init-image "
             "%1$s/flux/fill/picture_16x16.png --outpaint 4,0,4,0", KILN_TEST_DATA);
    workflow_again("flux_fill_outpaint", flags, dir);
    snprintf(flags, sizeof flags, "--model %1$s/flux/fill --cfg 1.5 --scheduler simple --init-image "
             "%1$s/flux/fill/picture_16x16.png --mask %1$s/flux/fill/mask_16x16.png --differential-diffusion 0.5",
             KILN_TEST_DATA);
    workflow_again("flux_fill_differential", flags, dir);
    snprintf(flags, sizeof flags, "--model %1$s/tiny/sd15_tiny_ldm_fp32.safetensors --init-image "
             "%1$s/inpaint/image_20x17.png --outpaint 6,0,3,5 --feathering 4", KILN_TEST_DATA);
    workflow_again("outpainted", flags, "");
    /* Flux from separate files, as a ComfyUI models folder holds them (UNETLoader, DualCLIPLoader, VAELoader);
       --config (and the tokenizer it carries) given to both runs, as no node names it; and an SD checkpoint with
       another VAE (the tiny one's own, in diffusers' names) */
    char parts[64];
    snprintf(parts, sizeof parts, "%s/parts", tmpdir);
    static const char *const links[][2] = {{"diffusion_models", "flux/single/flux1-tiny.safetensors"},
                                           {"text_encoders/clip_l.safetensors", "tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"},
                                           {"text_encoders/t5xxl.safetensors", "pixart/tiny/text_encoder/model.safetensors"},
                                           {"vae/ae.safetensors", "flux/tiny/vae/diffusion_pytorch_model.safetensors"},
                                           {"vae/sd_vae.safetensors",
                                            "tiny/sd15_tiny_diffusers/vae/diffusion_pytorch_model.safetensors"},
                                           {"diffusion_models", "gguf/flux1-tiny-Q8_0.gguf"},
                                           {"text_encoders", "gguf/t5-tiny-Q8_0.gguf"},
                                           {"diffusion_models", "gguf/sd15-tiny-unet-F16.gguf"},
                                           {"text_encoders/sdxl_clip_l.safetensors",
                                            "sdxl/tiny_sdxl_diffusers/text_encoder/model.safetensors"},
                                           {"text_encoders/sdxl_clip_g.safetensors",
                                            "sdxl/tiny_sdxl_diffusers/text_encoder_2/model.safetensors"},
                                           {"vae/sdxl_vae.safetensors",
                                            "sdxl/tiny_sdxl_diffusers/vae/diffusion_pytorch_model.safetensors"},
                                           {"diffusion_models", "sd3/single/sd3-tiny-transformer.safetensors"},
                                           {"text_encoders/sd3_clip_l.safetensors", "sd3/tiny/text_encoder/model.safetensors"},
                                           {"text_encoders/sd3_clip_g.safetensors",
                                            "sd3/tiny/text_encoder_2/model.safetensors"},
                                           {"text_encoders/sd3_t5xxl.safetensors",
                                            "sd3/tiny/text_encoder_3/model.safetensors"},
                                           {"vae/sd3_vae.safetensors", "sd3/tiny/vae/diffusion_pytorch_model.safetensors"},
                                           {"diffusion_models", "chroma/single/chroma-tiny.safetensors"},
                                           {"diffusion_models", "pixart/single/pixart_alpha_tiny.safetensors"},
                                           {"text_encoders/pixart_t5.safetensors",
                                            "pixart/tiny/text_encoder/model.safetensors"},
                                           {"vae/pixart_vae.safetensors",
                                            "pixart/tiny/vae/diffusion_pytorch_model.safetensors"}};
    snprintf(cmd, sizeof cmd, "mkdir -p %1$s/diffusion_models %1$s/text_encoders %1$s/vae", parts);
    assert_int_equal(system(cmd), 0);
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(cmd, sizeof cmd, "ln -s %s/%s %s/%s", KILN_TEST_DATA, links[i][1], parts, links[i][0]);
        assert_int_equal(system(cmd), 0);
    }
    /* and from ComfyUI-GGUF's files, with its loaders in the PNG's workflow */
    static const char *const flux_files[2][3] = {{"flux_parts", "flux1-tiny.safetensors", "t5xxl.safetensors"},
                                                 {"flux_gguf", "flux1-tiny-Q8_0.gguf", "t5-tiny-Q8_0.gguf"}};
    static const char *const flux_nodes[2][4] = {
        {"\"UNETLoader\"", "\"DualCLIPLoader\"", "\"clip_name2\":\"t5xxl.safetensors\"", NULL},
        {"\"UnetLoaderGGUF\"", "\"DualCLIPLoaderGGUF\"", "\"clip_name2\":\"t5-tiny-Q8_0.gguf\"", NULL}};
    snprintf(dir, sizeof dir, "--models %s --config %s/flux/tiny", parts, KILN_TEST_DATA);
    for (int k = 0; k < 2; k++) {
        snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/%3$s --text-encoder "
                 "%1$s/text_encoders/clip_l.safetensors --text-encoder %1$s/text_encoders/%4$s --vae "
                 "%1$s/vae/ae.safetensors --config %2$s/flux/tiny --cfg 1.5 --guidance 2.5 --scheduler simple",
                 parts, KILN_TEST_DATA, flux_files[k][1], flux_files[k][2]);
        workflow_again_holding(flux_files[k][0], flags, dir, flux_nodes[k]);
    }
    /* Chroma's transformer with T5 alone (CLIPLoader's "chroma" type) and FLUX.1's VAE, FluxGuidance on it */
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/chroma-tiny.safetensors --text-encoder "
             "%1$s/text_encoders/t5xxl.safetensors --vae %1$s/vae/ae.safetensors --config %2$s/chroma/tiny --cfg 2 "
             "--guidance 3 --scheduler simple", parts, KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %s --config %s/chroma/tiny", parts, KILN_TEST_DATA);
    workflow_again_holding("chroma_parts", flags, dir,
                           (const char *const[]){"\"UNETLoader\"", "\"type\":\"chroma\"", "\"FluxGuidance\"", NULL});
    /* PixArt's original file with its T5 (CLIPLoader's "pixart" type) and SD's VAE */
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/pixart_alpha_tiny.safetensors --text-encoder "
             "%1$s/text_encoders/pixart_t5.safetensors --vae %1$s/vae/pixart_vae.safetensors --tokenizer "
             "%2$s/spm_tokenizer/spiece.model --width 72 --height 72 --cfg 4.5", parts, KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %s --tokenizer %s/spm_tokenizer/spiece.model", parts, KILN_TEST_DATA);
    workflow_again_holding("pixart_parts", flags, dir,
                           (const char *const[]){"\"UNETLoader\"", "\"type\":\"pixart\"", "\"VAELoader\"", NULL});
    strcat(flags, " --pixart-size 1024x768"); /* CLIPTextEncodePixArtAlpha on the prompt */
    workflow_again_holding("pixart_sized", flags, dir,
                           (const char *const[]){"\"CLIPTextEncodePixArtAlpha\"", "\"height\":768", NULL});
    snprintf(dir, sizeof dir, "--models %s --config %s/flux/tiny", parts, KILN_TEST_DATA);
    /* --guidance none: FluxDisableGuidance on the positive prompt */
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/flux1-tiny.safetensors --text-encoder "
             "%1$s/text_encoders/clip_l.safetensors --text-encoder %1$s/text_encoders/t5xxl.safetensors --vae "
             "%1$s/vae/ae.safetensors --config %2$s/flux/tiny --cfg 1.5 --guidance none --scheduler simple", parts,
             KILN_TEST_DATA);
    workflow_again_holding("flux_no_guidance", flags, dir, (const char *const[]){"\"FluxDisableGuidance\"", NULL});
    /* --weight-dtype: UNETLoader's weight_dtype, and kiln's own input on CheckpointLoaderSimple */
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/flux1-tiny.safetensors --text-encoder "
             "%1$s/text_encoders/clip_l.safetensors --text-encoder %1$s/text_encoders/t5xxl.safetensors --vae "
             "%1$s/vae/ae.safetensors --config %2$s/flux/tiny --cfg 1.5 --guidance 2.5 --scheduler simple "
             "--weight-dtype fp8_e4m3fn", parts, KILN_TEST_DATA);
    workflow_again_holding("flux_fp8", flags, dir,
                           (const char *const[]){"\"UNETLoader\"", "\"weight_dtype\":\"fp8_e4m3fn\"", NULL});
    snprintf(dir, sizeof dir, "--models %s", parts);
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --weight-dtype q8_0", KILN_TEST_DATA);
    workflow_again_holding("sd_q8_0", flags, dir,
                           (const char *const[]){"\"CheckpointLoaderSimple\"", "\"weight_dtype\":\"q8_0\"", NULL});
    /* SD's UNet alone (ComfyUI-GGUF's file) and SDXL's (the single file's, written here) with their CLIP and VAE
       files: UNETLoader's kind, CLIPLoader "stable_diffusion", DualCLIPLoader "sdxl"; an SD checkpoint with
       another VAE */
    snprintf(dir, sizeof dir, "--models %s", parts);
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/sd15-tiny-unet-F16.gguf --text-encoder "
             "%1$s/text_encoders/clip_l.safetensors --vae %1$s/vae/sd_vae.safetensors", parts);
    workflow_again_holding("sd_unet_gguf", flags, dir,
                           (const char *const[]){"\"UnetLoaderGGUF\"", "\"type\":\"stable_diffusion\"", NULL});
    snprintf(path, sizeof path, "%s/diffusion_models/sdxl_unet.safetensors", parts);
    parts_write(kiln_test_data("sdxl/tiny_sdxl.safetensors"), "model.diffusion_model.", path);
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/sdxl_unet.safetensors --text-encoder "
             "%1$s/text_encoders/sdxl_clip_l.safetensors --text-encoder %1$s/text_encoders/sdxl_clip_g.safetensors "
             "--vae %1$s/vae/sdxl_vae.safetensors", parts);
    workflow_again_holding("sdxl_unet", flags, dir, (const char *const[]){"\"UNETLoader\"", "\"type\":\"sdxl\"", NULL});
    /* SD3: Stability's checkpoint with its own text encoders (T5's tokenizer given to both runs), and the SD 3.0
       transformer alone with TripleCLIPLoader's and VAELoader's files (its head width from --config) */
    snprintf(flags, sizeof flags, "--model %1$s/sd3/single/sd3.5-tiny.safetensors --tokenizer "
             "%1$s/spm_tokenizer/spiece.model --cfg 2", KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %1$s/sd3/single --tokenizer %1$s/spm_tokenizer/spiece.model", KILN_TEST_DATA);
    workflow_again_holding("sd3", flags, dir, (const char *const[]){"\"CheckpointLoaderSimple\"", NULL});
    /* SkipLayerGuidance: SD3's node, and the DiT one where it rescales */
    snprintf(flags, sizeof flags, "--model %1$s/sd3/single/sd3.5-tiny.safetensors --tokenizer "
             "%1$s/spm_tokenizer/spiece.model --cfg 2 --slg 1 --slg-start 0 --slg-end 0.6", KILN_TEST_DATA);
    workflow_again_holding("sd3_slg", flags, dir,
                           (const char *const[]){"\"SkipLayerGuidanceSD3\"", "\"layers\":\"1\"", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/sd3/single/sd3.5-tiny.safetensors --tokenizer "
             "%1$s/spm_tokenizer/spiece.model --cfg 2 --slg 0,2 --slg-scale 2 --slg-start 0 --slg-end 0.6 "
             "--slg-rescale 0.5", KILN_TEST_DATA);
    workflow_again_holding("sd3_slg_rescaled", flags, dir,
                           (const char *const[]){"\"SkipLayerGuidanceDiT\"", "\"double_layers\":\"0, 2\"", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/sd3/single/sd3.5-tiny.safetensors --tokenizer "
             "%1$s/spm_tokenizer/spiece.model --cfg 2 --slg 1 --slg-uncond --slg-start 0 --slg-end 0.6",
             KILN_TEST_DATA);
    workflow_again_holding("sd3_slg_simple", flags, dir,
                           (const char *const[]){"\"SkipLayerGuidanceDiTSimple\"", "\"double_layers\":\"1\"", NULL});
    snprintf(flags, sizeof flags, "--model %1$s/diffusion_models/sd3-tiny-transformer.safetensors --text-encoder "
             "%1$s/text_encoders/sd3_clip_l.safetensors --text-encoder %1$s/text_encoders/sd3_clip_g.safetensors "
             "--text-encoder %1$s/text_encoders/sd3_t5xxl.safetensors --vae %1$s/vae/sd3_vae.safetensors --config "
             "%2$s/sd3/tiny_sd3 --cfg 2", parts, KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %s --config %s/sd3/tiny_sd3", parts, KILN_TEST_DATA);
    workflow_again_holding("sd3_parts", flags, dir,
                           (const char *const[]){"\"UNETLoader\"", "\"TripleCLIPLoader\"",
                                                 "\"clip_name3\":\"sd3_t5xxl.safetensors\"", NULL});
    snprintf(flags, sizeof flags, "--model %s/tiny/sd15_tiny_ldm_fp32.safetensors --vae %s/vae/sd_vae.safetensors",
             KILN_TEST_DATA, parts);
    workflow_again_holding("sd_vae", flags, dir,
                           (const char *const[]){"\"VAELoader\"", "\"CheckpointLoaderSimple\"", NULL});
    static const char *const variants[3][2] = {{"inpainting", "--mask %s/inpaint/mask_20x17.png"},
                                               {"outpainting", "--outpaint 6,0,3,5 --feathering 4"},
                                               {"pix2pix", ""}};
    for (int v = 0; v < 3; v++) {
        const char *model = v == 2 ? tiny_pix2pix_model() : tiny_inpaint_model();
        char mask[600];
        snprintf(mask, sizeof mask, variants[v][1], KILN_TEST_DATA);
        snprintf(flags, sizeof flags, "--model %s --init-image %s/inpaint/image_20x17.png %s", model, KILN_TEST_DATA,
                 mask);
        snprintf(dir, sizeof dir, "--models %.*s", (int)(strrchr(model, '/') - model), model);
        workflow_again(variants[v][0], flags, dir);
    }
    /* a mask in a picture's alpha (--mask-channel): LoadImageMask's channel in the workflow */
    snprintf(flags, sizeof flags, "--model %s --init-image %s/inpaint/image_20x17.png --mask %s/masks/rgba.png "
             "--mask-channel alpha", tiny_inpaint_model(), KILN_TEST_DATA, KILN_TEST_DATA);
    snprintf(dir, sizeof dir, "--models %.*s --models %s/masks", (int)(strrchr(tiny_inpaint_model(), '/') -
             tiny_inpaint_model()), tiny_inpaint_model(), KILN_TEST_DATA);
    workflow_again_holding("inpainting_alpha", flags, dir, (const char *const[]){"\"channel\":\"alpha\"", NULL});

    snprintf(cmd, sizeof cmd, "%s/bin/gen --workflow %s/workflow.json --prompt x --output %s/no.png 2>/dev/null",
             KILN_BINARY_DIR, tmpdir, tmpdir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s/bin/gen --workflow %s/controlnet/hint_37x23.png --output %s/no.png 2>%s/no.log",
             KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir, tmpdir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    snprintf(path, sizeof path, "%s/no.log", tmpdir);
    read_text(path, cmd, sizeof cmd);
    assert_non_null(strstr(cmd, "hint_37x23.png: no \"prompt\" text in this PNG"));
    snprintf(path, sizeof path, "%s/no.png", tmpdir);
    assert_int_not_equal(access(path, F_OK), 0);
}

/* gen --ip-adapter: weight 0, or a range no step falls in, is the plain
 * model to the bit, weight 1 another picture, a negative weight a third, the
 * Plus adapter a fourth (the adapters themselves are test_ip_adapter's); the
 * Plus one chained after the plain one at weight 0 gives the plain one's
 * run to the bit, at weight 1 a fifth picture; the PNG records the
 * IPAdapter nodes. */
static void ip_adapter_run(void **state)
{
    (void)state;
    char ip[1024];
    snprintf(ip, sizeof ip,
             "--ip-adapter %s/ip_adapter/ip_adapter_tiny.safetensors --clip-vision "
             "%s/ip_adapter/clip_vision_tiny.safetensors --ip-image %s/ip_adapter/picture_251x233.png",
             KILN_TEST_DATA, KILN_TEST_DATA, KILN_TEST_DATA);
    char plus_off[1100], plus_on[1100];
    snprintf(plus_off, sizeof plus_off, "1 --ip-weight 0 --ip-adapter %s/ip_adapter/ip_adapter_plus_tiny.safetensors",
             KILN_TEST_DATA);
    snprintf(plus_on, sizeof plus_on, "1 --ip-adapter %s/ip_adapter/ip_adapter_plus_tiny.safetensors", KILN_TEST_DATA);
    const char *weights[8] = {NULL, "0", "1", "-0.5", "1", "1 --ip-start 1 --ip-end 1", plus_off, plus_on};
    float *latent[8];
    size_t count[8];
    for (int i = 0; i < 8; i++) {
        char flags[2048] = "", name[16];
        if (weights[i]) snprintf(flags, sizeof flags, "%s --ip-weight %s", ip, weights[i]);
        if (i == 4) /* the Plus adapter in place of the plain one */
            snprintf(flags, sizeof flags,
                     "--ip-adapter %s/ip_adapter/ip_adapter_plus_tiny.safetensors --clip-vision "
                     "%s/ip_adapter/clip_vision_tiny.safetensors --ip-image %s/ip_adapter/picture_251x233.png",
                     KILN_TEST_DATA, KILN_TEST_DATA, KILN_TEST_DATA);
        snprintf(name, sizeof name, "ip%d", i);
        latent[i] = gen_latent(name, flags, &count[i]);
        assert_int_equal(count[i], count[0]);
    }
    assert_memory_equal(latent[1], latent[0], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[2], latent[0], count[0]) > 0.05);
    assert_true(kiln_rel_l2(latent[3], latent[0], count[0]) > 0.02);
    assert_true(kiln_rel_l2(latent[3], latent[2], count[0]) > 0.05);
    assert_true(kiln_rel_l2(latent[4], latent[0], count[0]) > 0.05);
    assert_true(kiln_rel_l2(latent[4], latent[2], count[0]) > 0.05);
    assert_memory_equal(latent[5], latent[0], count[0] * sizeof(float)); /* a range no step falls in */
    assert_memory_equal(latent[6], latent[2], count[0] * sizeof(float)); /* the second at weight 0 */
    assert_true(kiln_rel_l2(latent[7], latent[2], count[0]) > 0.02);
    assert_true(kiln_rel_l2(latent[7], latent[4], count[0]) > 0.02);
    char text[8192], path[512];
    snprintf(path, sizeof path, "%s/ip3.png", tmpdir);
    read_png_text(path, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"class_type\":\"IPAdapterAdvanced\",\"inputs\":{\"weight\":-0.5,"));
    assert_non_null(strstr(text, "\"ipadapter_file\":\"ip_adapter_tiny.safetensors\""));
    snprintf(path, sizeof path, "%s/ip7.png", tmpdir);
    read_png_text(path, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"ipadapter_file\":\"ip_adapter_plus_tiny.safetensors\""));
    assert_non_null(strstr(text, "\"model\":[\"102\",0]"));
    for (int i = 0; i < 8; i++) free(latent[i]);
}

/* gen's output tmpdir/NAME.png: its size checked, its text chunk `key` read
 * into text; its pixels kept in *img when img is not NULL. */
static void check_output(const char *name, int width, int height, const char *key, char *text, size_t size,
                         kiln_image *img)
{
    char path[4096];
    kiln_image out;
    snprintf(path, sizeof path, "%s/%s.png", tmpdir, name);
    assert_kiln_ok(kiln_image_load(path, &out));
    assert_int_equal(out.width, width);
    assert_int_equal(out.height, height);
    read_png_text(path, key, text, size);
    if (img) *img = out;
    else kiln_image_free(&out);
}

/* Where the noise mask, stretched over the latent, is 0 the sampled latent
 * is the picture's own (to 1e-5); where it is 1 the sampler painted. */
static void assert_kept_and_repainted(const float *latent, const kiln_inpaint *in)
{
    size_t plane = (size_t)in->h * in->w, count = 4 * plane;
    float *blend = malloc(plane * sizeof(float));
    kiln_inpaint_mask_resize(in, in->h, in->w, blend);
    double kept_err = 0, repainted = 0;
    int kept = 0, changed = 0;
    for (size_t i = 0; i < count; i++) {
        float mk = blend[i % plane];
        if (mk == 0.0f) kept_err = fmax(kept_err, fabs(latent[i] - in->latent[i])), kept++;
        if (mk == 1.0f) repainted += fabs(latent[i] - in->latent[i]), changed++;
    }
    free(blend);
    assert_true(kept > 0 && changed > 0);
    print_message("  kept %d values within %.2g, repainted %d by %.3g on average\n", kept, kept_err, changed,
                  repainted / changed);
    assert_true(kept_err <= 1e-5);
    assert_true(repainted / changed > 0.05);
}

/* gen --init-image --mask on a plain model (VAEEncode + SetLatentNoiseMask):
 * where the mask, stretched over the latent, is 0 the result is the image's
 * own latent; where it is 1 the sampler repainted. */
static void inpaint_run(void **state)
{
    (void)state;
    char flags[2048];
    snprintf(flags, sizeof flags, "--init-image %s/inpaint/image_20x17.png --mask %s/inpaint/mask_20x17.png --denoise 0.9",
             KILN_TEST_DATA, KILN_TEST_DATA);
    size_t count;
    float *latent = gen_latent("inpaint", flags, &count);
    kiln_backend *be;
    kiln_model *m;
    kiln_image img;
    kiln_mask mask;
    kiln_inpaint in;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), be, &m));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &img));
    assert_kiln_ok(kiln_mask_load(KILN_TEST_DATA "/inpaint/mask_20x17.png", "red", &mask));
    kiln_inpaint_source src;
    assert_kiln_ok(kiln_inpaint_source_make(&img, &mask, KILN_INPAINT_GROW, &src));
    assert_kiln_ok(kiln_inpaint_encode(m, &src, &in));
    kiln_inpaint_source_free(&src);
    assert_int_equal(count, (size_t)4 * in.h * in.w);
    assert_kept_and_repainted(latent, &in);
    free(latent);
    kiln_inpaint_free(&in);
    kiln_image_free(&img);
    kiln_mask_free(&mask);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* gen --outpaint on a plain model: the picture grown by the pads, 29x22
 * cropped to 28x22; where ImagePadForOutpaint's mask, stretched over the
 * latent, is 0 the result is the padded picture's latent, the pads were
 * painted, and the workflow records the node. */
static void outpaint_run(void **state)
{
    (void)state;
    char flags[2048];
    snprintf(flags, sizeof flags, "--init-image %s/inpaint/image_20x17.png --outpaint 6,0,3,5 --feathering 4 "
             "--denoise 0.9", KILN_TEST_DATA);
    size_t count;
    float *latent = gen_latent("outpaint", flags, &count);
    kiln_backend *be;
    kiln_model *m;
    kiln_image img;
    kiln_inpaint_source src;
    kiln_inpaint in;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), be, &m));
    assert_kiln_ok(kiln_image_load(KILN_TEST_DATA "/inpaint/image_20x17.png", &img));
    assert_kiln_ok(kiln_outpaint_source(&img, &(kiln_outpaint){6, 0, 3, 5, 4}, &src));
    assert_kiln_ok(kiln_inpaint_encode(m, &src, &in));
    assert_int_equal(in.w, 14);
    assert_int_equal(in.h, 11);
    assert_int_equal(count, (size_t)4 * in.h * in.w);
    assert_kept_and_repainted(latent, &in);
    char text[16384];
    check_output("outpaint", 28, 22, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"class_type\":\"ImagePadForOutpaint\",\"inputs\":{\"left\":6,\"top\":0,"
                                 "\"right\":3,\"bottom\":5,\"feathering\":4"));
    free(latent);
    kiln_inpaint_free(&in);
    kiln_inpaint_source_free(&src);
    kiln_image_free(&img);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* gen with an inpainting model runs end to end (VAEEncodeForInpaint, the
 * mask and image as extra UNet channels: test_inpaint checks the math) and
 * records VAEEncodeForInpaint, with --mask and with --outpaint; without
 * either it is refused. */
static void inpaint_model_run(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s/bin/gen --model %s --prompt x --init-image %s/inpaint/image_20x17.png --mask %s/inpaint/mask_20x17.png "
             "--steps 3 --seed 2 --output %s/inpaint9.png --save-latent %s/inpaint9.safetensors 2> /dev/null",
             KILN_BINARY_DIR, tiny_inpaint_model(), KILN_TEST_DATA, KILN_TEST_DATA, tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/inpaint9.png", tmpdir);
    char text[8192];
    read_png_text(cmd, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"class_type\":\"VAEEncodeForInpaint\""));
    snprintf(cmd, sizeof cmd,
             "%s/bin/gen --model %s --prompt x --init-image %s/inpaint/image_20x17.png --outpaint 4 --steps 2 "
             "--output %s/outpaint9.png 2> /dev/null",
             KILN_BINARY_DIR, tiny_inpaint_model(), KILN_TEST_DATA, tmpdir);
    assert_int_equal(system(cmd), 0);
    /* 20 + 8 by 17 + 8, cropped to the VAE's 2 */
    check_output("outpaint9", 28, 24, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"mask\":[\"53\",1]"));
    snprintf(cmd, sizeof cmd, "%s/bin/gen --model %s --prompt x --output %s/inpaint9b.png 2> %s/inpaint9b.log",
             KILN_BINARY_DIR, tiny_inpaint_model(), tmpdir, tmpdir);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/inpaint9b.log", tmpdir);
    read_text(cmd, text, sizeof text);
    assert_non_null(strstr(text, "is an inpainting model: give it --init-image and --mask"));
    snprintf(cmd, sizeof cmd, "%s/inpaint9b.png", tmpdir);
    assert_int_not_equal(access(cmd, F_OK), 0);
}

/* gen with an InstructPix2Pix model: the picture is what the UNet sees at
 * every step (another picture, another latent; the math is test_pix2pix's),
 * the output takes its size, the workflow records
 * InstructPixToPixConditioning; without a picture it is refused. */
static void pix2pix_run(void **state)
{
    (void)state;
    const char *pictures[2] = {"image_20x17.png", "mask_20x17.png"};
    float *latent[2];
    size_t count[2];
    char cmd[4096], text[16384];
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s/bin/gen --model %s --prompt 'make it red' --init-image %s/inpaint/%s --steps 2 --seed 3 "
                 "--output %s/p2p%d.png --save-latent %s/p2p%d.safetensors 2> /dev/null",
                 KILN_BINARY_DIR, tiny_pix2pix_model(), KILN_TEST_DATA, pictures[i], tmpdir, i, tmpdir, i);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/p2p%d.safetensors", tmpdir, i);
        kiln_st_file *f;
        assert_kiln_ok(kiln_st_open(cmd, &f));
        assert_kiln_ok(kiln_st_read_f32(f, "latent", &latent[i], &count[i]));
        kiln_st_close(f);
    }
    assert_int_equal(count[0], 4 * 8 * 10); /* 20x16 pixels */
    assert_int_equal(count[1], count[0]);
    double diff = 0;
    for (size_t i = 0; i < count[0]; i++) diff += fabs(latent[0][i] - latent[1][i]);
    assert_true(diff / count[0] > 1e-3);
    snprintf(cmd, sizeof cmd, "%s/p2p0.png", tmpdir);
    read_png_text(cmd, "prompt", text, sizeof text);
    assert_non_null(strstr(text, "\"class_type\":\"InstructPixToPixConditioning\""));
    assert_null(strstr(text, "\"VAEEncode\""));
    snprintf(cmd, sizeof cmd, "%s/bin/gen --model %s --prompt x --output %s/p2p_none.png 2> %s/p2p_none.log",
             KILN_BINARY_DIR, tiny_pix2pix_model(), tmpdir, tmpdir);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/p2p_none.log", tmpdir);
    read_text(cmd, text, sizeof text);
    assert_non_null(strstr(text, "is an InstructPix2Pix model: give it --init-image (the picture to edit)"));
    free(latent[0]);
    free(latent[1]);
}

/* gen --hires-scale is the plain run's latent, upscaled as LatentUpscaleBy
 * (test_resample checks that against torch), sampled again from the same
 * seed at the hires denoise and steps: here the second KSampler is called
 * directly on gen's first-pass latent. */
static void hires_run(void **state)
{
    (void)state;
    size_t count[2];
    float *first = gen_latent("hires0", "", &count[0]);
    float *hires = gen_latent("hires1", "--hires-scale 1.5 --hires-steps 2 --hires-denoise 0.6 --hires-method bilinear",
                              &count[1]);
    assert_int_equal(count[0], 4 * 8 * 8);
    assert_int_equal(count[1], 4 * 12 * 12);
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "a red circle", 1, &pos));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 1, &neg));
    float *upscaled, *want;
    int h, w;
    assert_kiln_ok(kiln_resample_by(first, 1, 4, 8, 8, 1.5, KILN_RESAMPLE_BILINEAR, &upscaled, &h, &w));
    kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 2,
                             .cfg = 7.0f, .denoise = 0.6, .seed = 5, .batch = 1, .latent_h = h, .latent_w = w,
                             .init_latent = upscaled};
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &want));
    assert_rel_l2_le(hires, want, count[1], 1e-6);
    char text[16384];
    check_output("hires1", 24, 24, "parameters", text, sizeof text, NULL);
    assert_non_null(strstr(text, "Size: 16x16, Model: sd15_tiny_ldm_fp32, Denoising strength: 0.6, Hires upscale: 1.5, "
                                 "Hires steps: 2, Hires upscaler: Latent,"));
    free(want), free(upscaled), free(first), free(hires);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* gen --prompts: each line (comments and blank lines skipped) its own
 * run on the model loaded once, line i with seed + i, the files numbered
 * on across the lines and batches; with the hires fix, each line's run
 * starts again at the base size: the second line's pictures are a plain
 * run's with its prompt and seed, pixel for pixel, its PNG records them,
 * and --json gives a line per prompt. */
static void prompts_run(void **state)
{
    (void)state;
#define PROMPTS_HIRES "--hires-scale 1.5 --hires-steps 2 --hires-denoise 0.6 --hires-method bilinear"
    char path[4096], cmd[8192], text[16384];
    snprintf(path, sizeof path, "%s/prompts.txt", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# the lines to run\na blue square\n\na red circle  \n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s/bin/gen --model %s --prompts %s %s --width 16 --height 16 --steps 3 --seed 4 --batch 2 --json "
             "--output %s/prompts.png > %s/prompts.json 2> %s/prompts.log",
             KILN_BINARY_DIR, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), path, PROMPTS_HIRES, tmpdir,
             tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    size_t count;
    free(gen_latent("prompts_single", PROMPTS_HIRES " --batch 2", &count)); /* 'a red circle', seed 5 */
    kiln_image got, want;
    for (int b = 0; b < 2; b++) {
        char name[64];
        snprintf(name, sizeof name, "prompts_%05d", 3 + b);
        check_output(name, 24, 24, "parameters", text, sizeof text, &got);
        assert_non_null(strstr(text, "a red circle"));
        assert_non_null(strstr(text, "Seed: 5,"));
        snprintf(name, sizeof name, "prompts_single_%05d", 1 + b);
        check_output(name, 24, 24, "parameters", text, sizeof text, &want);
        assert_memory_equal(got.pixels, want.pixels, (size_t)3 * 24 * 24);
        kiln_image_free(&got);
        kiln_image_free(&want);
    }
    check_output("prompts_00001", 24, 24, "parameters", text, sizeof text, NULL);
    assert_non_null(strstr(text, "a blue square"));
    assert_non_null(strstr(text, "Seed: 4,"));
    snprintf(path, sizeof path, "%s/prompts.json", tmpdir);
    read_text(path, text, sizeof text);
    const char *second = strchr(text, '\n');
    assert_non_null(second);
    assert_non_null(strstr(text, "\"files\":[\""));
    assert_non_null(strstr(second, "prompts_00003.png\",\""));
    assert_non_null(strstr(second, "\"seed\":5,"));
}

/* gen --negative-until 0.1 on the tiny SD3 model: the run of
 * tests/data/sd3/prompt_parts.golden.safetensors (SD3's example negative
 * prompt, ComfyUI restated), its latent. */
static void negative_until_run(void **state)
{
    (void)state;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%1$s/bin/gen --model %2$s/sd3/tiny --prompt 'a photograph of an astronaut riding a horse' --width 12 "
             "--height 16 --steps 4 --cfg 2 --seed 42 --scheduler simple --negative-until 0.1 --output "
             "%3$s/until.png --save-latent %3$s/until.safetensors 2> %3$s/until.log",
             KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/until.safetensors", tmpdir);
    kiln_st_file *f;
    float *latent;
    size_t count;
    assert_kiln_ok(kiln_st_open(cmd, &f));
    assert_kiln_ok(kiln_st_read_f32(f, "latent", &latent, &count));
    kiln_st_close(f);
    kiln_st_file *g = golden_open("sd3/prompt_parts.golden.safetensors");
    golden want = golden_read(g, "example.latent_out");
    assert_int_equal(count, want.count);
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    golden_free(&want);
    kiln_st_close(g);
    free(latent);
}

/* gen --sigmas walks the noise levels given: BasicScheduler's "normal"
 * sigmas of the tiny model, written out at float precision, give the
 * pixels of --steps 3 --scheduler normal (KSampler's run), and another
 * list other pixels. */
static void sigmas_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    kiln_sigmas normal;
    assert_kiln_ok(kiln_backend_open("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", NULL, 0, &m));
    assert_kiln_ok(kiln_basic_scheduler(m, "normal", 3, 1.0, &normal));
    char list[256] = "";
    for (int i = 0; i < normal.count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), i ? ", %.9g" : "%.9g", (double)normal.values[i]);
    kiln_sigmas_free(&normal);
    kiln_model_free(m);
    kiln_backend_free(be);
    const char *runs[3][2] = {{"plain", "--steps 3 --scheduler normal"}, {"listed", list}, {"other", "9, 2, 0.5, 0"}};
    kiln_image pictures[3];
    for (int i = 0; i < 3; i++) {
        char cmd[4096], path[600];
        snprintf(path, sizeof path, "%s/sigmas_%s.png", tmpdir, runs[i][0]);
        snprintf(cmd, sizeof cmd,
                 "%s/bin/gen --model %s/tiny/sd15_tiny_ldm_fp32.safetensors --prompt 'a red circle' --width 16 "
                 "--height 16 --seed 4 %s%s%s --output %s 2>/dev/null",
                 KILN_BINARY_DIR, KILN_TEST_DATA, i ? "--sigmas '" : "", runs[i][1], i ? "'" : "", path);
        assert_int_equal(system(cmd), 0);
        assert_kiln_ok(kiln_image_load(path, &pictures[i]));
    }
    const size_t bytes = (size_t)16 * 16 * 3;
    assert_memory_equal(pictures[1].pixels, pictures[0].pixels, bytes);
    assert_memory_not_equal(pictures[2].pixels, pictures[0].pixels, bytes);
    for (int i = 0; i < 3; i++) kiln_image_free(&pictures[i]);
    /* A1111's parameters: the steps the list makes and the list in place of the schedule type */
    char path[600], parameters[4096];
    snprintf(path, sizeof path, "%s/sigmas_other.png", tmpdir);
    read_png_text(path, "parameters", parameters, sizeof parameters);
    assert_non_null(strstr(parameters, "Steps: 3, Sampler: Euler, Sigmas: \"9, 2, 0.5, 0\", CFG scale: 7"));
    assert_null(strstr(parameters, "Schedule type"));
}

/* gen on an SD 2.x model: its own text layer (the penultimate) and
 * prediction (v) unless told, as the library samples them; --clip-skip 1
 * and --prediction eps change the picture and are recorded as ComfyUI's
 * CLIPSetLastLayer and ModelSamplingDiscrete. */
static void sd2_run(void **state)
{
    (void)state;
    const char *flags[3] = {"", "--clip-skip 1", "--prediction eps"};
    float *latent[3];
    size_t count[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "sd2_%d", i);
        latent[i] = gen_model_latent("sd2/tiny_sd2.safetensors", name, flags[i], &count[i]);
        assert_int_equal(count[i], 4 * 8 * 8);
    }
    float *want = library_latent("sd2/tiny_sd2.safetensors", 2);
    assert_rel_l2_le(latent[0], want, count[0], 1e-6);
    assert_true(kiln_rel_l2(latent[1], latent[0], count[0]) > 0.01);
    assert_true(kiln_rel_l2(latent[2], latent[0], count[0]) > 0.05);
    char text[16384];
    check_output("sd2_0", 16, 16, "prompt", text, sizeof text, NULL);
    assert_null(strstr(text, "CLIPSetLastLayer"));
    assert_null(strstr(text, "ModelSamplingDiscrete"));
    check_output("sd2_1", 16, 16, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"class_type\":\"CLIPSetLastLayer\",\"inputs\":{\"stop_at_clip_layer\":-1,"));
    check_output("sd2_2", 16, 16, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"class_type\":\"ModelSamplingDiscrete\",\"inputs\":{\"sampling\":\"eps\","
                                 "\"zsnr\":false,\"model\":[\"4\",0]}"));
    assert_non_null(strstr(text, "\"model\":[\"80\",0]"));
    free(want);
    for (int i = 0; i < 3; i++) free(latent[i]);
}

/* gen on an SDXL model: the latent the library samples from the same
 * prompts (both text towers, the pooled output and the size in y). */
static void sdxl_run(void **state)
{
    (void)state;
    size_t count;
    float *latent = gen_model_latent("sdxl/tiny_sdxl.safetensors", "sdxl", "", &count);
    assert_int_equal(count, 4 * 8 * 8);
    float *want = library_latent("sdxl/tiny_sdxl.safetensors", 0);
    assert_rel_l2_le(latent, want, count, 1e-6);
    char text[16384];
    check_output("sdxl", 16, 16, "prompt", text, sizeof text, NULL);
    assert_null(strstr(text, "CLIPSetLastLayer"));
    free(want);
    free(latent);
}

/* gen --refiner: the base model to step 2 of 3 with its noise left in, then
 * the refiner, as the library's two passes give; the PNG records A1111's
 * Refiner fields and two KSamplerAdvanced nodes. */
static void refiner_run(void **state)
{
    (void)state;
    char flags[1024];
    snprintf(flags, sizeof flags, "--refiner %s", kiln_test_data("sdxl_refiner/tiny_refiner.safetensors"));
    size_t count;
    float *latent = gen_model_latent("sdxl/tiny_sdxl.safetensors", "refined", flags, &count);
    kiln_backend *be;
    kiln_model *base, *ref;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sdxl/tiny_sdxl.safetensors"), be, &base));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sdxl_refiner/tiny_refiner.safetensors"), be, &ref));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    kiln_conditioning c[4];
    const kiln_model *models[2] = {base, ref};
    for (int i = 0; i < 2; i++) {
        assert_kiln_ok(kiln_encode_prompt(models[i], tok, "a red circle", 0, &c[2 * i]));
        assert_kiln_ok(kiln_encode_prompt(models[i], tok, "", 0, &c[2 * i + 1]));
    }
    kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 3,
                             .cfg = 7.0f, .denoise = 1.0, .seed = 5, .batch = 1, .latent_h = 8, .latent_w = 8,
                             .last_step = 2, .leftover_noise = true}; /* 3 x 0.8, rounded */
    float *first, *want;
    assert_kiln_ok(kiln_ksample(base, &job, &c[0], &c[1], &first));
    job.start_step = 2, job.last_step = 0, job.leftover_noise = false, job.disable_noise = true, job.init_latent = first;
    assert_kiln_ok(kiln_ksample(ref, &job, &c[2], &c[3], &want));
    assert_rel_l2_le(latent, want, count, 1e-6);
    char text[16384];
    check_output("refined", 16, 16, "parameters", text, sizeof text, NULL);
    assert_non_null(strstr(text, "Model: tiny_sdxl, Refiner: tiny_refiner, Refiner switch at: 0.8,"));
    check_output("refined", 16, 16, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"3\":{\"class_type\":\"KSamplerAdvanced\""));
    assert_non_null(strstr(text, "\"add_noise\":\"disable\",\"start_at_step\":2,\"end_at_step\":10000,"
                                 "\"return_with_leftover_noise\":\"disable\",\"model\":[\"90\",0]"));
    free(latent), free(first), free(want);
    for (int i = 0; i < 4; i++) kiln_conditioning_free(&c[i]);
    kiln_tokenizer_free(tok);
    kiln_model_free(base);
    kiln_model_free(ref);
    kiln_backend_free(be);
}

/* gen --sdxl-size/--sdxl-crop/--sdxl-target: 8x the latent's size (64x64
 * here: the tiny model's VAE scales by 2, ComfyUI counts 8) and no crop
 * spelled out are CLIPTextEncode's defaults, to the bit; a crop gives what
 * the library samples with those numbers (the numbers' way into y is
 * test_sdxl's); --aesthetic 6 --negative-aesthetic 2.5 are the refiner's
 * defaults, another score another picture; the workflow records the nodes. */
static void sdxl_numbers_run(void **state)
{
    (void)state;
    char refiner[1024];
    snprintf(refiner, sizeof refiner, "--refiner %s", kiln_test_data("sdxl_refiner/tiny_refiner.safetensors"));
    const char *flags[6] = {"", "--sdxl-size 64x64 --sdxl-crop 0,0 --sdxl-target 64x64", "--sdxl-crop 8,4", "",
                            "--aesthetic 6 --negative-aesthetic 2.5", "--aesthetic 3"};
    float *latent[6];
    size_t count[6];
    for (int i = 0; i < 6; i++) {
        char all[2048], name[16];
        snprintf(all, sizeof all, "%s %s", i >= 3 ? refiner : "", flags[i]);
        snprintf(name, sizeof name, "xlnum%d", i);
        latent[i] = gen_model_latent("sdxl/tiny_sdxl.safetensors", name, all, &count[i]);
        assert_int_equal(count[i], count[0]);
    }
    assert_memory_equal(latent[1], latent[0], count[0] * sizeof(float));
    assert_true(kiln_rel_l2(latent[2], latent[0], count[0]) > 1e-3);
    assert_memory_equal(latent[4], latent[3], count[0] * sizeof(float));
    /* the refiner's one step of three moves the tiny model's picture little (1.3e-5), but runs are
     * deterministic to the bit (just above), so any difference is the score's */
    assert_true(kiln_rel_l2(latent[5], latent[3], count[0]) > 1e-7);
    /* the crop through the library */
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    kiln_conditioning pos, neg;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sdxl/tiny_sdxl.safetensors"), be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "a red circle", 0, &pos));
    assert_kiln_ok(kiln_encode_prompt(m, tok, "", 0, &neg));
    const kiln_sdxl_cond numbers = {64, 64, 8, 4, 64, 64, 6.0, 2.5};
    kiln_sampling_job job = {.sampler = KILN_SAMPLER_EULER, .scheduler = KILN_SCHEDULER_NORMAL, .steps = 3,
                             .cfg = 7.0f, .denoise = 1.0, .seed = 5, .batch = 1, .latent_h = 8, .latent_w = 8,
                             .sdxl = &numbers};
    float *want;
    assert_kiln_ok(kiln_ksample(m, &job, &pos, &neg, &want));
    assert_rel_l2_le(latent[2], want, count[0], 1e-6);
    char text[16384];
    check_output("xlnum2", 16, 16, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"class_type\":\"CLIPTextEncodeSDXL\",\"inputs\":{\"width\":64,\"height\":64,"
                                 "\"crop_w\":8,\"crop_h\":4,\"target_width\":64,\"target_height\":64,"));
    check_output("xlnum5", 16, 16, "prompt", text, sizeof text, NULL);
    assert_non_null(strstr(text, "\"class_type\":\"CLIPTextEncodeSDXLRefiner\",\"inputs\":{\"ascore\":3,"));
    free(want);
    for (int i = 0; i < 6; i++) free(latent[i]);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* gen --upscale-model: the picture gen decodes, through ImageUpscaleWithModel
 * (test_upscale checks that against spandrel), saved 4x as large; here the
 * same steps from gen's own latent, to the byte. */
static void upscale_run(void **state)
{
    (void)state;
    char flags[1024];
    snprintf(flags, sizeof flags, "--upscale-model %s/upscale/rrdb_basicsr.safetensors", KILN_TEST_DATA);
    size_t count;
    float *latent = gen_latent("upscaled", flags, &count);
    kiln_backend *be;
    kiln_model *m;
    kiln_upscaler *u;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), be, &m));
    assert_kiln_ok(kiln_upscaler_open(KILN_TEST_DATA "/upscale/rrdb_basicsr.safetensors", be, &u));
    float *decoded, *up;
    assert_kiln_ok(kiln_vae_decode_latent(m, latent, 1, 8, 8, &decoded));
    for (int i = 0; i < 3 * 16 * 16; i++) decoded[i] = kiln_image_unit_from_decoded(decoded[i]);
    assert_kiln_ok(kiln_upscale_image(u, decoded, 16, 16, KILN_UPSCALE_TILE, KILN_UPSCALE_OVERLAP, &up));
    kiln_image want, have;
    assert_kiln_ok(kiln_image_from_unit(up, 64, 64, &want));
    char text[16384];
    check_output("upscaled", 64, 64, "parameters", text, sizeof text, &have);
    assert_memory_equal(have.pixels, want.pixels, (size_t)3 * 64 * 64);
    assert_non_null(strstr(text, "Postprocess upscale by: 4, Postprocess upscaler: rrdb_basicsr"));
    kiln_image_free(&want);
    kiln_image_free(&have);
    free(up), free(decoded), free(latent);
    kiln_upscaler_free(u);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ComfyUI's VAEEncode of its img2img test images gives the recorded latents. */
static void vae_encode_matches_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), be, &m));
    kiln_st_file *f = golden_open("comfyui_e2e/img2img_input.st");
    golden u8 = golden_read(f, "image_uint8"), want = golden_read(f, "latent");
    int B = (int)u8.shape[0], H = (int)u8.shape[1], W = (int)u8.shape[2];
    float *x = malloc((size_t)B * 3 * H * W * sizeof(float)), *latent;
    for (int b = 0; b < B; b++) {
        kiln_image img;
        assert_kiln_ok(kiln_image_alloc(&img, W, H));
        for (int i = 0; i < H * W * 3; i++) img.pixels[i] = (uint8_t)u8.data[(size_t)b * H * W * 3 + i];
        kiln_image_to_encoder_input(&img, x + (size_t)b * 3 * H * W);
        kiln_image_free(&img);
    }
    assert_kiln_ok(kiln_vae_encode_image(m, x, B, H, W, &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-4);
    free(x);
    free(latent);
    golden_free(&u8);
    golden_free(&want);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* Two pictures of the tmpdir, equal to the byte or not. */
static bool same_pixels(const char *a, const char *b)
{
    char path[600];
    kiln_image x, y;
    snprintf(path, sizeof path, "%s/%s", tmpdir, a);
    assert_kiln_ok(kiln_image_load(path, &x));
    snprintf(path, sizeof path, "%s/%s", tmpdir, b);
    assert_kiln_ok(kiln_image_load(path, &y));
    const bool same = x.width == y.width && x.height == y.height &&
                      memcmp(x.pixels, y.pixels, (size_t)x.width * x.height * 3) == 0;
    kiln_image_free(&x);
    kiln_image_free(&y);
    return same;
}

/* --embeddings: the prompt's embedding:style from the folder; without it the
 * name is left out with a warning, another picture; the PNG's workflow run
 * again finds the folder as ComfyUI's models/embeddings (the --models
 * folder holding embeddings/) and makes the same pixels; a folder that is
 * not there is refused by name. */
static void embeddings_run(void **state)
{
    (void)state;
    char cmd[4096], text[4096];
    const char *run = "%1$s/bin/gen --model %2$s/tiny/sd15_tiny_ldm_fp32.safetensors --prompt 'a embedding:style circle' "
                      "--width 16 --height 16 --steps 3 --seed 4 %4$s --output %3$s/%5$s.png 2>%3$s/%5$s.log";
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir, "--embeddings " KILN_TEST_DATA "/embeddings",
             "embedded");
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir, "", "left_out");
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/left_out.log", tmpdir);
    read_text(cmd, text, sizeof text);
    assert_non_null(strstr(text, "kiln: warning: embedding:style: no such file"));
    assert_false(same_pixels("embedded.png", "left_out.png"));
    snprintf(cmd, sizeof cmd, "%1$s/bin/gen --workflow %2$s/embedded.png --models %3$s/tiny --models %3$s "
             "--output %2$s/embedded_again.png 2>/dev/null", KILN_BINARY_DIR, tmpdir, KILN_TEST_DATA);
    assert_int_equal(system(cmd), 0);
    assert_true(same_pixels("embedded.png", "embedded_again.png"));
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir, "--embeddings /nonexistent/embeddings",
             "no_folder");
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/no_folder.log", tmpdir);
    read_text(cmd, text, sizeof text);
    assert_non_null(strstr(text, "/nonexistent/embeddings"));
}

/* torch.save files where ComfyUI takes them: a Lightning .ckpt as --model
 * and a .pth ControlNet make the safetensors files' pixels; the PNG's
 * workflow names the .ckpt and finds it again in a --models folder; the
 * .ckpt converted by --convert makes them too. */
static void torch_files_run(void **state)
{
    (void)state;
    char cmd[4096];
    const char *run = "%1$s/bin/gen --model %2$s/%4$s --prompt 'a circle' --width 16 --height 16 --steps 2 --seed 5 "
                      "--controlnet %2$s/%5$s --control-image %2$s/controlnet/hint_37x23.png "
                      "--output %3$s/%6$s.png 2>/dev/null";
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir, "torch_files/sd15_tiny_ldm_fp16.ckpt",
             "torch_files/control_tiny.pth", "from_torch");
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir, "tiny/sd15_tiny_ldm_fp16.safetensors",
             "controlnet/tiny_ldm.safetensors", "from_safetensors");
    assert_int_equal(system(cmd), 0);
    assert_true(same_pixels("from_torch.png", "from_safetensors.png"));
    snprintf(cmd, sizeof cmd, "%1$s/bin/gen --workflow %2$s/from_torch.png --models %3$s/torch_files "
             "--models %3$s/controlnet --output %2$s/from_torch_again.png 2>/dev/null",
             KILN_BINARY_DIR, tmpdir, KILN_TEST_DATA);
    assert_int_equal(system(cmd), 0);
    assert_true(same_pixels("from_torch.png", "from_torch_again.png"));
    /* --convert keeps what kiln read as a safetensors file */
    snprintf(cmd, sizeof cmd, "%1$s/bin/gen --convert %2$s/torch_files/sd15_tiny_ldm_fp16.ckpt "
             "--output %3$s/converted.safetensors 2>/dev/null", KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir);
    assert_int_equal(system(cmd), 0);
    char converted[600];
    snprintf(converted, sizeof converted, "%s/converted.safetensors", tmpdir);
    snprintf(cmd, sizeof cmd, "%1$s/bin/gen --model %3$s --prompt 'a circle' --width 16 --height 16 --steps 2 "
             "--seed 5 --controlnet %2$s/controlnet/tiny_ldm.safetensors --control-image "
             "%2$s/controlnet/hint_37x23.png --output %4$s/from_converted.png 2>/dev/null",
             KILN_BINARY_DIR, KILN_TEST_DATA, converted, tmpdir);
    assert_int_equal(system(cmd), 0);
    assert_true(same_pixels("from_torch.png", "from_converted.png"));
    snprintf(cmd, sizeof cmd, "%1$s/bin/gen --convert %2$s/tiny/unet.safetensors --output %3$s/not_torch.safetensors "
             "2>%3$s/not_torch.log", KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir);
    assert_int_not_equal(system(cmd), 0);
    char text[4096], path[600];
    snprintf(path, sizeof path, "%s/not_torch.log", tmpdir);
    read_text(path, text, sizeof text);
    assert_non_null(strstr(text, "unet.safetensors: not a torch.save file"));
    snprintf(path, sizeof path, "%s/not_torch.safetensors", tmpdir);
    assert_int_not_equal(access(path, F_OK), 0);
}

/* --save-checkpoint: the model with a LoRA merged in, saved and run
 * without it, makes the pixels of the model run with it. */
static void save_checkpoint_run(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%1$s/bin/gen --model %2$s/tiny/sd15_tiny_ldm_fp32.safetensors --lora "
             "%2$s/lora/kohya_ldm.safetensors:0.8 --save-checkpoint %3$s/merged.safetensors 2>/dev/null",
             KILN_BINARY_DIR, KILN_TEST_DATA, tmpdir);
    assert_int_equal(system(cmd), 0);
    const char *run = "%1$s/bin/gen --model %2$s --prompt 'a square' --width 16 --height 16 --steps 2 --seed 6 %3$s "
                      "--output %4$s/%5$s.png 2>/dev/null";
    char model[600], lora[600];
    snprintf(model, sizeof model, "%s/tiny/sd15_tiny_ldm_fp32.safetensors", KILN_TEST_DATA);
    snprintf(lora, sizeof lora, "--lora %s/lora/kohya_ldm.safetensors:0.8", KILN_TEST_DATA);
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, model, lora, tmpdir, "with_lora");
    assert_int_equal(system(cmd), 0);
    snprintf(model, sizeof model, "%s/merged.safetensors", tmpdir);
    snprintf(cmd, sizeof cmd, run, KILN_BINARY_DIR, model, "", tmpdir, "merged");
    assert_int_equal(system(cmd), 0);
    assert_true(same_pixels("with_lora.png", "merged.png"));
}

int main(void)
{
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_reproduces_comfyui),
        cmocka_unit_test(jpeg_output),
        cmocka_unit_test(lora_run),
        cmocka_unit_test(controlnet_run),
        cmocka_unit_test(t2i_adapter_run),
        cmocka_unit_test(sdxl_text_l),
        cmocka_unit_test(vae_tiled_run),
        cmocka_unit_test(workflow_round_trip),
        cmocka_unit_test(ip_adapter_run),
        cmocka_unit_test(inpaint_run),
        cmocka_unit_test(inpaint_model_run),
        cmocka_unit_test(outpaint_run),
        cmocka_unit_test(pix2pix_run),
        cmocka_unit_test(hires_run),
        cmocka_unit_test(prompts_run),
        cmocka_unit_test(negative_until_run),
        cmocka_unit_test(sigmas_run),
        cmocka_unit_test(upscale_run),
        cmocka_unit_test(sd2_run),
        cmocka_unit_test(sdxl_run),
        cmocka_unit_test(refiner_run),
        cmocka_unit_test(sdxl_numbers_run),
        cmocka_unit_test(vae_encode_matches_comfyui),
        cmocka_unit_test(embeddings_run),
        cmocka_unit_test(torch_files_run),
        cmocka_unit_test(save_checkpoint_run),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
