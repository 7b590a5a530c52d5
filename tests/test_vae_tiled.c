/* VAEDecodeTiled and VAEEncodeTiled on the tiny SD 1.x model's VAE against
 * ComfyUI's tiled decode and encode restated with diffusers' decoder and
 * encoder (tests/data/vae_tiled, made by make_vae_tiled_data.py): three
 * tilings of 8x8-pixel latent tiles overlapping by 2, averaged; of 16-pixel
 * picture tiles overlapping by 4. Then the nodes' inputs as ComfyUI takes
 * them: a latent inside every tiling's one tile is the plain decode; the
 * overlap at most a quarter of the tile; sizes out of the node's range
 * refused; both nodes in a workflow as the library runs them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "golden.h"
#include "model.h"
#include "pipeline.h"

#define TINY KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors"

static void against_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(TINY, be, &m));
    kiln_st_file *f = golden_open("vae_tiled/golden.safetensors");
    golden latent = golden_read(f, "latent"), tile = golden_read(f, "tile"), overlap = golden_read(f, "overlap"),
           want = golden_read(f, "image"), whole = golden_read(f, "whole");
    const int h = (int)latent.shape[2], w = (int)latent.shape[3], vae_f = kiln_vae_factor(m->vae.config);
    assert_true(tile.data[0] == tile.data[1]); /* the node's tiles are square */
    float *raw;
    assert_kiln_ok(kiln_vae_decode_latent_tiled(m, latent.data, 1, h, w, vae_f * (int)tile.data[0],
                                                vae_f * (int)overlap.data[0], &raw));
    for (size_t i = 0; i < want.count; i++) { /* ComfyUI's process_output */
        float v = (raw[i] + 1.0f) / 2.0f;
        raw[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
    assert_rel_l2_le(raw, want.data, want.count, 1e-5);
    assert_true(kiln_rel_l2(raw, whole.data, whole.count) > 0.05); /* the tiles are not the whole */
    free(raw);
    golden *all[] = {&latent, &tile, &overlap, &want, &whole};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void encode_against_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(TINY, be, &m));
    kiln_st_file *f = golden_open("vae_tiled/golden.safetensors");
    golden pixels = golden_read(f, "pixels"), tile = golden_read(f, "encode.tile"),
           overlap = golden_read(f, "encode.overlap"), want = golden_read(f, "encoded"),
           whole = golden_read(f, "encoded.whole");
    const int H = (int)pixels.shape[2], W = (int)pixels.shape[3];
    for (size_t i = 0; i < pixels.count; i++) pixels.data[i] = 2.0f * pixels.data[i] - 1.0f; /* process_input */
    float *latent;
    assert_kiln_ok(kiln_vae_encode_image_tiled(m, pixels.data, 1, H, W, (int)tile.data[0], (int)overlap.data[0],
                                               &latent));
    assert_rel_l2_le(latent, want.data, want.count, 1e-5);
    assert_true(kiln_rel_l2(latent, whole.data, whole.count) > 0.05);
    free(latent);
    /* a side that is no multiple of the factor is refused, naming the sizes */
    assert_int_equal(kiln_vae_encode_image_tiled(m, pixels.data, 1, H, W, 16, 3, &latent), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "multiples of 2"));
    golden *all[] = {&pixels, &tile, &overlap, &want, &whole};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

static void node_inputs(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, TINY, NULL, 0, &m));
    kiln_latent latent;
    assert_kiln_ok(kiln_empty_latent(m, 40, 24, 1, &latent));
    for (size_t i = 0; i < (size_t)latent.channels * latent.height * latent.width; i++)
        latent.data[i] = (float)((i * 7919) % 97) / 48.0f - 1.0f;
    kiln_image plain, tiled, small;
    assert_kiln_ok(kiln_vae_decode(m, &latent, &plain, 1));
    /* 512-pixel tiles hold the whole picture in each tiling: the plain decode, averaged three times over */
    assert_kiln_ok(kiln_vae_decode_tiled(m, &latent, KILN_VAE_TILE, KILN_VAE_TILE_OVERLAP, &tiled, 1));
    assert_int_equal(tiled.width, plain.width);
    assert_int_equal(tiled.height, plain.height);
    int worst = 0;
    for (size_t i = 0; i < (size_t)plain.width * plain.height * 3; i++) {
        int d = abs((int)tiled.pixels[i] - (int)plain.pixels[i]);
        if (d > worst) worst = d;
    }
    assert_true(worst <= 1);
    /* an overlap of more than a quarter of the tile is cut to a quarter, as the node does: 64 and 48 alike */
    assert_kiln_ok(kiln_vae_decode_tiled(m, &latent, 64, 48, &small, 1));
    kiln_image quarter;
    assert_kiln_ok(kiln_vae_decode_tiled(m, &latent, 64, 16, &quarter, 1));
    assert_memory_equal(small.pixels, quarter.pixels, (size_t)small.width * small.height * 3);
    kiln_image none;
    assert_int_equal(kiln_vae_decode_tiled(m, &latent, 32, 8, &none, 1), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "tile 32"));
    kiln_image *images[] = {&plain, &tiled, &small, &quarter};
    for (size_t i = 0; i < sizeof images / sizeof *images; i++) kiln_image_free(images[i]);
    kiln_latent_free(&latent);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* LoadImage, VAEEncodeTiled, VAEDecodeTiled and SaveImage as a workflow:
 * the library's two calls with the nodes' numbers, to the byte. */
static void workflow_nodes(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, TINY, NULL, 0, &m));
    /* a 96x80 picture, larger than the 64-pixel tiles, saved for LoadImage */
    kiln_image picture = {96, 80, 3, malloc(96 * 80 * 3)}, want;
    for (int i = 0; i < 96 * 80 * 3; i++) picture.pixels[i] = (uint8_t)((i * 37 + (i / 288) * 11) % 256);
    char dir[] = "/tmp/kiln_vae_tiled_XXXXXX", path[64], json[2048];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/picture.png", dir);
    assert_kiln_ok(kiln_image_save(path, &picture, NULL, 0));
    kiln_latent latent;
    assert_kiln_ok(kiln_vae_encode_tiled(m, &picture, 1, 64, 16, &latent));
    assert_kiln_ok(kiln_vae_decode_tiled(m, &latent, 64, 16, &want, 1));
    snprintf(json, sizeof json,
        "{\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"" TINY "\"}}, "
        "\"11\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"%s\"}}, "
        "\"12\": {\"class_type\": \"VAEEncodeTiled\", \"inputs\": {\"pixels\": [\"11\", 0], \"vae\": [\"4\", 2], "
        "\"tile_size\": 64, \"overlap\": 16, \"temporal_size\": 64, \"temporal_overlap\": 8}}, "
        "\"8\": {\"class_type\": \"VAEDecodeTiled\", \"inputs\": {\"samples\": [\"12\", 0], \"vae\": [\"4\", 2], "
        "\"tile_size\": 64, \"overlap\": 16, \"temporal_size\": 64, \"temporal_overlap\": 8}}, "
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"8\", 0]}}}", path);
    const kiln_workflow_options options = {0};
    kiln_image *images;
    int count;
    assert_kiln_ok(kiln_workflow_run(be, json, &options, &images, &count));
    assert_int_equal(count, 1);
    assert_int_equal(images[0].width, want.width);
    assert_int_equal(images[0].height, want.height);
    assert_memory_equal(images[0].pixels, want.pixels, (size_t)want.width * want.height * 3);
    kiln_images_free(images, count);
    unlink(path);
    rmdir(dir);
    kiln_image_free(&picture);
    kiln_image_free(&want);
    kiln_latent_free(&latent);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(against_comfyui), cmocka_unit_test(encode_against_comfyui),
                                       cmocka_unit_test(node_inputs), cmocka_unit_test(workflow_nodes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
