/* GGUF files (runtime/gguf.c) against gguf-py and upstream models on
 * tests/data/gguf (made by make_gguf_data.py): every tensor type's values as
 * gguf-py dequantizes them, bit for bit; a Flux transformer in ComfyUI-GGUF's
 * layout and a T5 encoder in llama.cpp's names against diffusers and
 * transformers on the same dequantized weights; damaged and hostile files
 * refused by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

#include "byte_builder.h"

#include "checkpoint.h"
#include "golden.h"
#include "gguf.h"
#include "model.h"
#include "parity.h"
#include "parts.h"
#include "safetensors.h"
#include "spm_tokenizer.h"
#include "status.h"
#include "weights.h"

#define GOLDEN "gguf/golden.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order */

/* The kiln dtype a golden's block tensor keeps ("block.Q4_K" -> Q4_K). */
static kiln_dtype block_dtype(const char *name)
{
    for (int d = KILN_Q4_0; d < KILN_DTYPE_COUNT; d++)
        if (strcmp(name + strlen("block."), kiln_dtype_name((kiln_dtype)d)) == 0) return (kiln_dtype)d;
    fail_msg("%s names no block type", name);
    return KILN_DTYPE_COUNT;
}

/* Every tensor of quants.gguf is its golden: dtype, shape and bytes; the
 * block types stay quantized, widened to gguf-py's float32 bit for bit. */
static void tensors_match_gguf_py(void **state)
{
    (void)state;
    kiln_st_file *f, *want;
    assert_kiln_ok(kiln_st_open(kiln_test_data("gguf/quants.gguf"), &f));
    assert_kiln_ok(kiln_st_open(kiln_test_data("gguf/quants.golden.safetensors"), &want));
    assert_int_equal(kiln_st_count(f), kiln_st_count(want));
    for (size_t i = 0; i < kiln_st_count(want); i++) {
        const kiln_st_tensor *w = kiln_st_at(want, i), *t = kiln_st_find(f, w->name);
        assert_non_null(t);
        assert_int_equal(t->ndim, w->ndim);
        assert_memory_equal(t->shape, w->shape, (size_t)w->ndim * sizeof w->shape[0]);
        if (strncmp(w->name, "block.", 6) == 0) {
            assert_int_equal(t->dtype, block_dtype(w->name));
            assert_int_equal(w->dtype, KILN_F32);
            assert_int_equal(t->nbytes, kiln_dtype_bytes(t->dtype, (size_t)kiln_st_numel(t)));
            float *wide;
            size_t n;
            assert_kiln_ok(kiln_st_read_f32(f, w->name, &wide, &n));
            assert_int_equal(n * sizeof *wide, w->nbytes);
            if (memcmp(wide, w->data, w->nbytes) != 0) fail_msg("%s: values differ from gguf-py's", w->name);
            free(wide);
            continue;
        }
        assert_int_equal(t->dtype, w->dtype);
        assert_int_equal(t->nbytes, w->nbytes);
        if (memcmp(t->data, w->data, w->nbytes) != 0) fail_msg("%s: values differ from gguf-py's", w->name);
    }
    assert_string_equal(kiln_st_metadata(f, "general.architecture"), "kiln-test");
    assert_string_equal(kiln_st_metadata(f, "kiln.test.text"), "a string value");
    assert_string_equal(kiln_st_metadata(f, "kiln.test.count"), "7");
    assert_string_equal(kiln_st_metadata(f, "kiln.test.scale"), "0.25");
    assert_string_equal(kiln_st_metadata(f, "kiln.test.flag"), "true");
    assert_null(kiln_st_metadata(f, "kiln.test.list"));
    assert_string_equal(kiln_st_metadata(f, KILN_GGUF_TYPES_KEY), "F32 1, F16 1, BF16 1, I32 1, Q4_0 1, Q4_1 1, "
                        "Q5_0 1, Q5_1 1, Q8_0 2, Q2_K 1, Q3_K 1, Q4_K 1, Q5_K 1, Q6_K 1, IQ4_NL 1, IQ4_XS 1");
    kiln_st_close(want);
    kiln_st_close(f);
}

/* Every prefix of a file that cuts into its last tensor is refused as
 * damaged, naming it; only the writer's padding after that (less than the
 * alignment, 32) may go. */
static void every_truncation_is_refused(void **state)
{
    (void)state;
    size_t size;
    uint8_t *whole = kiln_test_read_file(kiln_test_data("gguf/quants.gguf"), &size);
    size_t first_whole = size;
    for (size_t n = 0; n <= size; n++) {
        uint8_t *part = malloc(n ? n : 1); /* its own allocation, so ASan sees any read past n */
        memcpy(part, whole, n);
        kiln_st_file *f = NULL;
        kiln_status st = kiln_st_open_memory(part, n, "cut.gguf", &f);
        if (st == KILN_OK) {
            if (first_whole == size) first_whole = n;
            kiln_st_close(f);
        } else {
            if (n > first_whole) fail_msg("a %zu-byte prefix failed after a %zu-byte one opened", n, first_whole);
            assert_null(f);
            assert_non_null(strstr(kiln_last_error(), "cut.gguf"));
        }
        free(part);
    }
    assert_true(first_whole > size - 32);
    free(whole);
}

/* ---- hand-made files ----------------------------------------------------- */


static void put_u32(byte_builder *b, uint32_t v) { put_bytes(b, &v, 4); } /* the tests run little-endian */
static void put_u64(byte_builder *b, uint64_t v) { put_bytes(b, &v, 8); }

static void put_string(byte_builder *b, const char *s)
{
    put_u64(b, strlen(s));
    put_bytes(b, s, strlen(s));
}

/* A file's parts: header counts, raw key/value bytes, one tensor. */
typedef struct hand_file {
    uint32_t version;
    uint64_t nkv;
    byte_builder kv;
    uint32_t ndim, type;
    uint64_t ne[4], offset;
    size_t data_bytes;
} hand_file;

static hand_file one_tensor(uint32_t type, uint64_t cols, uint64_t rows)
{
    int elements = 1, bytes = 4;
    if (type == 1) bytes = 2;
    if (type > 1 && !kiln_gguf_block(type, &elements, &bytes)) elements = 1; /* a type kiln refuses */
    return (hand_file){.version = 3, .ndim = 2, .type = type, .ne = {cols, rows},
                       .data_bytes = (size_t)(cols / (uint64_t)elements * (uint64_t)bytes * rows)};
}

/* The bytes of h (data zeros but for Q8_0's f16 scales, 1.0) as a file
 * opened from memory: its status, and the file on success. */
static kiln_status open_hand_file(const hand_file *h, byte_builder *b, kiln_st_file **f)
{
    b->n = 0;
    put_bytes(b, "GGUF", 4);
    put_u32(b, h->version);
    put_u64(b, 1);
    put_u64(b, h->nkv);
    put_bytes(b, h->kv.data, h->kv.n);
    put_string(b, "w");
    put_u32(b, h->ndim);
    for (uint32_t d = 0; d < h->ndim && d < 4; d++) put_u64(b, h->ne[d]);
    put_u32(b, h->type);
    put_u64(b, h->offset);
    while (b->n % 32) b->data[b->n++] = 0;
    assert_true(b->n + h->data_bytes <= sizeof b->data);
    memset(b->data + b->n, 0, h->data_bytes);
    if (h->type == 8)
        for (size_t at = 0; at + 34 <= h->data_bytes; at += 34) b->data[b->n + at + 1] = 0x3c;
    b->n += h->data_bytes;
    return kiln_st_open_memory(b->data, b->n, "hand.gguf", f);
}

static void expect_refusal(const hand_file *h, kiln_status code, const char *words)
{
    byte_builder b;
    kiln_st_file *f = NULL;
    kiln_status st = open_hand_file(h, &b, &f);
    if (st != code) fail_msg("status %d, expected %d for '%s' (%s)", st, code, words, kiln_last_error());
    assert_null(f);
    if (!strstr(kiln_last_error(), words) || !strstr(kiln_last_error(), "hand.gguf"))
        fail_msg("'%s' does not say '%s'", kiln_last_error(), words);
}

/* An array pair's head: its key, the array type (9), the element type and count. */
static void add_array_head(hand_file *h, const char *key, uint32_t elem, uint64_t count)
{
    put_string(&h->kv, key);
    put_u32(&h->kv, 9);
    put_u32(&h->kv, elem);
    put_u64(&h->kv, count);
    h->nkv++;
}

static void add_kv_u32(hand_file *h, const char *key, uint32_t type, uint32_t value)
{
    put_string(&h->kv, key);
    put_u32(&h->kv, type);
    put_u32(&h->kv, value);
    h->nkv++;
}

static void hostile_files_are_refused(void **state)
{
    (void)state;
    byte_builder b;
    kiln_st_file *f;
    /* the well-formed base: a 2 x 64 Q8_0 tensor of ones */
    hand_file h = one_tensor(8, 64, 2);
    assert_kiln_ok(open_hand_file(&h, &b, &f));
    const kiln_st_tensor *t = kiln_st_find(f, "w");
    assert_int_equal(t->dtype, KILN_Q8_0);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 64);
    assert_true(kiln_load_f32(t->data, t->dtype, 127) == 0.0f); /* q = 0 everywhere */
    kiln_st_close(f);

    /* one field of the base changed (or a tensor of another type and shape) */
    static const struct {
        uint32_t version, ndim, type;
        uint64_t nkv, offset, ne1, cols;
        kiln_status status;
        const char *says;
    } changes[] = {
        {.version = 1, .status = KILN_ERR_UNSUPPORTED, .says = "version 1"},
        {.version = 3u << 24, .status = KILN_ERR_UNSUPPORTED, .says = "big-endian"},
        {.nkv = UINT64_C(1) << 60, .status = KILN_ERR_FORMAT, .says = "cannot fit"},
        {.type = 16, .cols = 256, .status = KILN_ERR_UNSUPPORTED, .says = "IQ2_XXS"},
        {.type = 99, .cols = 256, .status = KILN_ERR_UNSUPPORTED, .says = "type 99"},
        {.type = 12, .cols = 96, .status = KILN_ERR_FORMAT, .says = "whole Q4_K blocks"}, /* rows of 256 */
        {.offset = 16, .status = KILN_ERR_FORMAT, .says = "not a multiple of the alignment"},
        {.offset = 32, .status = KILN_ERR_FORMAT, .says = "run past the data area"},
        {.ndim = 5, .status = KILN_ERR_FORMAT, .says = "5 dims"},
        {.ne1 = UINT64_MAX, .status = KILN_ERR_FORMAT, .says = "out of range"}, /* a dim of 0 */
        {.ne1 = UINT64_C(1) << 62, .status = KILN_ERR_FORMAT, .says = "out of range"},
    };
    hand_file bad;
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        bad = changes[i].type ? one_tensor(changes[i].type, changes[i].cols, 2) : h;
        if (changes[i].type) bad.data_bytes = 0;
        if (changes[i].version) bad.version = changes[i].version;
        if (changes[i].nkv) bad.nkv = changes[i].nkv;
        if (changes[i].offset) bad.offset = changes[i].offset;
        if (changes[i].ndim) bad.ndim = changes[i].ndim;
        if (changes[i].ne1) bad.ne[1] = changes[i].ne1 == UINT64_MAX ? 0 : changes[i].ne1;
        expect_refusal(&bad, changes[i].status, changes[i].says);
    }

    bad = h;
    add_kv_u32(&bad, "general.alignment", 4, 24);
    expect_refusal(&bad, KILN_ERR_FORMAT, "general.alignment");
    bad = h;
    add_kv_u32(&bad, "general.alignment", 4, 64); /* the tensor's offset 0 suits it */
    assert_kiln_ok(open_hand_file(&bad, &b, &f));
    kiln_st_close(f);
    bad = h;
    add_kv_u32(&bad, "odd.type", 13, 0);
    expect_refusal(&bad, KILN_ERR_FORMAT, "unknown value type 13");

    /* arrays: of arrays; longer than the file; an original shape of another size */
    bad = h;
    add_array_head(&bad, "nested", 9, 1);
    expect_refusal(&bad, KILN_ERR_FORMAT, "an array of arrays");
    bad = h;
    add_array_head(&bad, "long", 8, UINT64_C(1) << 40);
    expect_refusal(&bad, KILN_ERR_FORMAT, "truncated");
    bad = h;
    add_array_head(&bad, "comfy.gguf.orig_shape.w", 5, 2);
    put_u32(&bad.kv, 3);
    put_u32(&bad.kv, 40);
    expect_refusal(&bad, KILN_ERR_FORMAT, "original shape has 120 values");
    bad.kv.data[bad.kv.n - 4] = 0; /* [3, 0] */
    expect_refusal(&bad, KILN_ERR_FORMAT, "dim 1 is 0");
    bad.kv.n -= 8;
    put_u32(&bad.kv, 8);
    put_u32(&bad.kv, 16); /* [8, 16]: the 128 values, reshaped */
    assert_kiln_ok(open_hand_file(&bad, &b, &f));
    assert_int_equal(kiln_st_find(f, "w")->shape[0], 8);
    assert_int_equal(kiln_st_find(f, "w")->shape[1], 16);
    kiln_st_close(f);

    /* a key with a NUL in it; two tensors of one name */
    bad = h;
    put_u64(&bad.kv, 3);
    put_bytes(&bad.kv, "a\0b", 3);
    put_u32(&bad.kv, 4);
    put_u32(&bad.kv, 0);
    bad.nkv = 1;
    expect_refusal(&bad, KILN_ERR_FORMAT, "NUL");

    /* a well-formed file of an architecture kiln does not run (ComfyUI-GGUF's AuraFlow), as a model */
    bad = h;
    put_string(&bad.kv, "general.architecture");
    put_u32(&bad.kv, 8);
    put_string(&bad.kv, "aura");
    bad.nkv = 1;
    assert_kiln_ok(open_hand_file(&bad, &b, &f));
    kiln_st_close(f);
    char path[] = "/tmp/kiln_sd3_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0 && write(fd, b.data, b.n) == (ssize_t)b.n);
    close(fd);
    kiln_checkpoint *ck;
    kiln_model_info info;
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_int_equal(kiln_model_inspect(ck, &info), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "architecture 'aura', which kiln does not run"));
    kiln_checkpoint_close(ck);
    remove(path);
}

/* A quantized tensor bound as a linear layer's weight stays in its blocks;
 * bound for another op (a 1x1 conv's kernel of the same values: SD 2.x's
 * proj_in, stored 2-D), it is widened to f16. */
static void quantized_binds(void **state)
{
    (void)state;
    byte_builder b;
    kiln_st_file *f;
    hand_file h = one_tensor(8, 64, 2); /* Q8_0 2 x 64, scales 1, values 0 */
    assert_kiln_ok(open_hand_file(&h, &b, &f));
    kiln_st_close(f);
    char path[] = "/tmp/kiln_binds_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0 && write(fd, b.data, b.n) == (ssize_t)b.n);
    close(fd);
    kiln_checkpoint *ck;
    kiln_backend *be;
    kiln_weights *w;
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_weights_create(be, ck, &w));
    const kiln_tensor *linear, *conv;
    assert_kiln_ok(kiln_weights_bind_linear(w, &linear, "", "w", 2, 64));
    assert_kiln_ok(KILN_BIND(w, &conv, "", "w", 2, 64, 1, 1));
    assert_int_equal(linear->dtype, KILN_Q8_0);
    assert_int_equal(conv->dtype, KILN_F16);
    assert_int_equal(kiln_weights_bytes(w), 2 * 2 * 34 + 128 * 2);
    kiln_weights_free(w);
    kiln_backend_free(be);
    kiln_checkpoint_close(ck);
    remove(path);
}

/* ---- models -------------------------------------------------------------- */

#define CLIP_L_FILE "tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"
#define T5_FILE "pixart/tiny/text_encoder/model.safetensors"
#define VAE_FILE "flux/tiny/vae/diffusion_pytorch_model.safetensors"

/* ComfyUI-GGUF's Flux file (BFL's names, Q8_0/BF16/F32) with its parts as
 * UNETLoader's are given, and llama.cpp's T5 in place of transformers': the
 * transformer against diffusers, T5 against transformers, each on the
 * weights as gguf-py dequantizes them; the transformer with an sd-scripts
 * LoRA merged into them. */
static void flux_and_t5_match_upstream(void **state)
{
    (void)state;
    parity_check_gguf_flux(&(parity_fixture){.tol = TOL});

    kiln_backend *be;
    kiln_model *m;
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    char paths[4][4096];
    kiln_model_parts parts;
    parity_gguf_flux_parts(paths, &parts);
    kiln_st_file *f = golden_open(GOLDEN);

    /* sd-scripts' LoRA merged into the widened weights, kept in f16 (the Q8_0 ones) or bf16 */
    char lora_path[4096];
    snprintf(lora_path, sizeof lora_path, "%s", kiln_test_data("flux/lora/kohya.safetensors"));
    const kiln_lora kohya = {lora_path, 0.8, 0.6};
    kiln_lora_stats stats[1];
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("gguf/flux1-tiny-Q8_0.gguf"), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    assert_kiln_ok(kiln_model_load_with_loras(ck, &kohya, 1, stats, be, &m));
    assert_int_equal(stats[0].unet_modules, 7);
    parity_check_flux_out(m, "flux/golden.safetensors", f, "flux.kohya.out", TOL);
    kiln_model_free(m);

    /* the T5 alone is no model */
    assert_kiln_ok(kiln_checkpoint_open(parts.text_encoders[1], &ck));
    kiln_model_info info;
    assert_int_equal(kiln_model_inspect(ck, &info), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "a T5 text encoder, not a whole model"));
    kiln_checkpoint_close(ck);
    kiln_st_close(f);
    kiln_backend_free(be);
}

/* llama.cpp's T5 file carries its tokenizer: the same ids as the
 * spiece.model it was written from, on text that takes every part of it
 * (the character map's NFKC, spaces, T5's special tokens, unknown
 * characters), and a Flux model given no other reads it. (The writer
 * keeps no user-defined pieces, T5's vocabulary has none, and the tiny
 * one's three, "kiln", a flame and the fi ligature, are left out of the
 * texts.) */
static void t5_tokenizer_in_the_file(void **state)
{
    (void)state;
    kiln_spm *from_gguf, *from_model;
    assert_kiln_ok(kiln_spm_open(kiln_test_data("gguf/t5-tiny-Q8_0.gguf"), &from_gguf));
    assert_kiln_ok(kiln_spm_open(kiln_test_data("pixart/tiny/tokenizer/spiece.model"), &from_model));
    assert_int_equal(kiln_spm_vocab_size(from_gguf), kiln_spm_vocab_size(from_model));
    assert_int_equal(kiln_spm_eos(from_gguf), kiln_spm_eos(from_model));
    assert_int_equal(kiln_spm_pad(from_gguf), kiln_spm_pad(from_model));
    static const char *const texts[] = {
        "a photograph of an astronaut riding a horse", "", "   leading,  inner   and trailing   ",
        "\xe2\x91\xa0 \xef\xbc\xa6\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c\twidth\nlines", /* circled 1, fullwidth */
        "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe2\x80\x9cquoted\xe2\x80\x9d \xf0\x9f\x99\x82",
        "</s> <extra_id_3> x<pad>y <unk>", "UPPER lower 0123456789 !?.,;:"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t a[256], b[256];
        int na, nb;
        assert_kiln_ok(kiln_spm_encode_t5(from_gguf, texts[i], a, 256, &na));
        assert_kiln_ok(kiln_spm_encode_t5(from_model, texts[i], b, 256, &nb));
        assert_ids_equal("gguf", texts[i], a, (size_t)na, b, (size_t)nb);
    }
    kiln_spm_free(from_gguf);
    kiln_spm_free(from_model);
    assert_int_equal(kiln_spm_open(kiln_test_data("gguf/flux1-tiny-Q8_0.gguf"), &from_gguf), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_last_error(), "a GGUF file without a tokenizer"));

    /* beside the transformer, with no tokenizer given (tests/data/flux: the tiny axes, no tokenizer) */
    char clip[4096], t5[4096], vae[4096], config[4096];
    snprintf(clip, sizeof clip, "%s", kiln_test_data(CLIP_L_FILE));
    snprintf(t5, sizeof t5, "%s", kiln_test_data("gguf/t5-tiny-Q8_0.gguf"));
    snprintf(vae, sizeof vae, "%s", kiln_test_data(VAE_FILE));
    snprintf(config, sizeof config, "%s", kiln_test_data("flux"));
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {clip, t5}, .config = config};
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("gguf/flux1-tiny-Q8_0.gguf"), &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    assert_string_equal(kiln_checkpoint_tokenizer(ck), t5);
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    int32_t ids[256];
    int n;
    assert_kiln_ok(kiln_spm_encode_t5(m->spm, "a photograph of an astronaut riding a horse", ids, 256, &n));
    kiln_st_file *f = golden_open(GOLDEN);
    golden want = golden_read(f, "t5.ids");
    for (int i = 0; i < 256; i++) assert_int_equal(i < n ? ids[i] : 0, (int32_t)want.data[i]);
    golden_free(&want);
    kiln_st_close(f);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ComfyUI-GGUF's SD 1.x UNet file (bare names, F16, convolutions
 * flattened with their original shapes) with the CLIP and VAE files
 * ComfyUI's CLIPLoader and VAELoader take beside it: the tiny fp16
 * checkpoint it was made from, tensor for tensor. */
static void sd_unet_with_parts(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln_gguf_XXXXXX", clip[64], vae[64], whole[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(clip, sizeof clip, "%s/clip_l.safetensors", dir);
    snprintf(vae, sizeof vae, "%s/vae.safetensors", dir);
    snprintf(whole, sizeof whole, "%s", kiln_test_data("tiny/sd15_tiny_ldm_fp16.safetensors"));
    parts_write(whole, "cond_stage_model.transformer.", clip);
    parts_write(whole, "first_stage_model.", vae);

    kiln_checkpoint *want, *ck;
    assert_kiln_ok(kiln_checkpoint_open(whole, &want));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("gguf/sd15-tiny-unet-F16.gguf"), &ck));
    kiln_model_info info;
    assert_int_equal(kiln_model_inspect(ck, &info), KILN_ERR_MODEL); /* alone: the flag to give */
    assert_non_null(strstr(kiln_last_error(), "gen --text-encoder"));
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {clip}};
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    const size_t compared = parts_assert_same_tensors(want, ck, NULL);
    print_message("  %zu tensors as in the checkpoint\n", compared);
    assert_kiln_ok(kiln_model_inspect(ck, &info));
    assert_string_equal(info.family, "sd1");
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    kiln_model_free(m);
    kiln_backend_free(be);
    kiln_checkpoint_close(want);

    /* its linear weights in Q8_0, held so (the convs, most of its parameters, in F16), against diffusers on
       what the file reads back */
    char q8[4096];
    snprintf(q8, sizeof q8, "%s", kiln_test_data("gguf/sd15-tiny-unet-Q8_0.gguf"));
    parity_check_unet_output(&(parity_fixture){.path = q8, .parts = &parts, .tol = TOL}, GOLDEN, "sd15.");
    assert_kiln_ok(kiln_checkpoint_open(q8, &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, &parts));
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    assert_int_equal(m->unet.time.w1->dtype, KILN_Q8_0);
    kiln_model_free(m);
    kiln_backend_free(be);
    remove(clip);
    remove(vae);
    rmdir(dir);
}

/* The bytes kiln_convert_from_f32 makes of golden floats: Q4_0, Q4_1, Q5_0,
 * Q5_1 and Q8_0 as gguf-py quantizes, fp8 as torch casts (ties, subnormals,
 * saturation, inf). */
static void conversions_match_upstream(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    static const struct { const char *x, *want; kiln_dtype dtype; } cases[] = {
        {"convert.q.x", "convert.q4_0.blocks", KILN_Q4_0}, {"convert.q.x", "convert.q4_1.blocks", KILN_Q4_1},
        {"convert.q.x", "convert.q5_0.blocks", KILN_Q5_0}, {"convert.q.x", "convert.q5_1.blocks", KILN_Q5_1},
        {"convert.q.x", "convert.q8_0.blocks", KILN_Q8_0},
        {"convert.f8.x", "convert.f8e4m3", KILN_F8_E4M3},
        {"convert.f8.x", "convert.f8e5m2", KILN_F8_E5M2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        golden x = golden_read(f, cases[i].x);
        const kiln_st_tensor *want = kiln_st_find(f, cases[i].want);
        assert_non_null(want);
        assert_int_equal(want->nbytes, kiln_dtype_bytes(cases[i].dtype, x.count));
        uint8_t *got = malloc(want->nbytes);
        kiln_convert_from_f32(got, x.data, cases[i].dtype, x.count);
        for (size_t b = 0; b < want->nbytes; b++)
            if (got[b] != ((const uint8_t *)want->data)[b])
                fail_msg("%s: byte %zu is 0x%02x, upstream's 0x%02x", cases[i].want, b, got[b],
                         ((const uint8_t *)want->data)[b]);
        free(got);
        golden_free(&x);
    }
    kiln_st_close(f);
}

/* UNETLoader's weight_dtype: the tiny Flux's f16 linear weights converted
 * at load (the T5 beside it as stored) against diffusers on the same
 * conversion; a dtype kiln does not make is refused by name. */
static void weights_converted_at_load(void **state)
{
    (void)state;
    static const struct { const char *name; kiln_dtype dtype; const char *golden; } kinds[] = {
        {"q8_0", KILN_Q8_0, "flux.q8_0.out"},
        {"q4_0", KILN_Q4_0, "flux.q4_0.out"},
        {"fp8_e4m3fn", KILN_F8_E4M3, "flux.fp8_e4m3fn.out"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        parity_check_flux_weight_dtype(&(parity_fixture){.tol = TOL}, kinds[i].name, kinds[i].dtype, kinds[i].golden);
    char paths[4][4096];
    kiln_model_parts parts;
    parity_gguf_flux_parts(paths, &parts);
    parts.weight_dtype = "fp4";
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("flux/single/flux1-tiny.safetensors"), &ck));
    assert_int_equal(kiln_checkpoint_add_parts(ck, &parts), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "weight_dtype 'fp4'"));
    kiln_checkpoint_close(ck);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tensors_match_gguf_py),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(hostile_files_are_refused),
        cmocka_unit_test(flux_and_t5_match_upstream),
        cmocka_unit_test(t5_tokenizer_in_the_file),
        cmocka_unit_test(quantized_binds),
        cmocka_unit_test(sd_unet_with_parts),
        cmocka_unit_test(conversions_match_upstream),
        cmocka_unit_test(weights_converted_at_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
