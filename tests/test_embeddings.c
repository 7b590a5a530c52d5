/* Textual-inversion embeddings (embedding:NAME) against ComfyUI's
 * CLIPTextEncode restated on transformers' CLIP towers
 * (tests/data/embeddings/embeddings.golden.safetensors): the tiny SD 1.x
 * and SDXL models' conditionings with embeddings from A1111's .pt (f32 and
 * f16), .safetensors, an SDXL clip_l/clip_g pair in a subfolder, diffusers'
 * learned_embeds.bin, one of the wrong width and a missing one; torch.save
 * files read by the restricted unpickler; bad files refused by name. */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "golden.h"
#include "model.h"
#include "pipeline.h"
#include "prompt.h"
#include "textual_inversion.h"
#include "tokenizer.h"
#include "torch_file.h"

#define GOLDEN "embeddings/embeddings.golden.safetensors"

static char embeddings_dir[4096];

typedef struct warnings {
    int count;
    char last[1024];
} warnings;

static void count_warning(void *ctx, const char *message)
{
    warnings *w = ctx;
    w->count++;
    snprintf(w->last, sizeof w->last, "%s", message);
}

/* The golden's prompts for `model` ("sd15", "sdxl"). */
static cJSON *golden_prompts(kiln_st_file *f, const char *model)
{
    cJSON *all = cJSON_Parse(golden_meta(f, "prompts"));
    assert_non_null(all);
    cJSON *list = cJSON_DetachItemFromObject(all, model);
    cJSON_Delete(all);
    assert_true(cJSON_IsArray(list));
    return list;
}

/* Each prompt's conditioning (and pooled output, where the golden has one)
 * against the golden's, and where the vectors sit against its ids. */
static void check_model(kiln_model *m, const char *model, int expect_missing, double tol)
{
    assert_kiln_ok(kiln_model_set_embeddings(m, embeddings_dir));
    kiln_st_file *f = golden_open(GOLDEN);
    cJSON *prompts = golden_prompts(f, model);
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    warnings w = {0};
    kiln_set_warning_handler(count_warning, &w);
    int i = 0, missing = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, prompts)
    {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s.%d", model, i++);
        golden z = golden_field(f, prefix, "z"), ids = golden_field(f, prefix, "ids");
        /* the first tower's windows as its encoder reads them: the golden's -1 marks where a vector
           sits; a vector of another width is left out, a pad after the window's end for it */
        kiln_prompt_tokens t;
        const kiln_prompt_embeddings e = {embeddings_dir, m->clips[0].reading->embedding_key, m->clips[0].config->hidden};
        const int32_t pad = m->clips[0].reading->pad_id;
        assert_kiln_ok(kiln_prompt_tokenize(tok, p->valuestring, pad, &e, &t));
        assert_int_equal((size_t)t.n_windows * KILN_CLIP_CONTEXT, ids.count);
        for (int wi = 0; wi < t.n_windows; wi++) {
            int32_t read[KILN_CLIP_CONTEXT];
            int n = 0;
            for (int k = 0; k < KILN_CLIP_CONTEXT; k++)
                if (t.ids[wi][k] != KILN_PROMPT_MISFIT) read[n++] = t.ids[wi][k];
            while (n < KILN_CLIP_CONTEXT) read[n++] = pad;
            for (int k = 0; k < KILN_CLIP_CONTEXT; k++) {
                const float want = ids.data[wi * KILN_CLIP_CONTEXT + k];
                if (want < 0 ? read[k] >= 0 : read[k] != (int32_t)want)
                    fail_msg("%s: window %d position %d holds %d, ComfyUI's %g", prefix, wi, k, read[k], want);
            }
        }
        missing += t.missing_embeddings;
        kiln_prompt_tokens_free(&t);

        kiln_conditioning c;
        assert_kiln_ok(kiln_encode_prompt(m, tok, p->valuestring, 0, &c));
        assert_int_equal((size_t)c.tokens * c.dim, z.count);
        const double err = kiln_rel_l2(c.data, z.data, z.count);
        print_message("  %-8s %-60.60s rel L2 %.2g\n", prefix, p->valuestring, err);
        if (!(err <= tol)) fail_msg("%s: rel L2 %.3g > %.3g", prefix, err, tol);
        if (strcmp(model, "sdxl") == 0) {
            golden pooled = golden_field(f, prefix, "pooled");
            assert_int_equal((size_t)c.pooled_dim, pooled.count);
            assert_true(kiln_rel_l2(c.pooled, pooled.data, pooled.count) <= tol);
            golden_free(&pooled);
        }
        kiln_conditioning_free(&c);
        golden_free(&z);
        golden_free(&ids);
    }
    kiln_set_warning_handler(NULL, NULL);
    assert_int_equal(missing, expect_missing);
    assert_true(w.count >= expect_missing);
    kiln_tokenizer_free(tok);
    cJSON_Delete(prompts);
    kiln_st_close(f);
}

static void sd15_matches_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    check_model(m, "sd15", 1, 1e-6);
    kiln_test_close_model(be, m);
}

static void sdxl_matches_comfyui(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("sdxl/tiny_sdxl.safetensors"), NULL, 0, &m));
    check_model(m, "sdxl", 0, 1e-6);
    kiln_test_close_model(be, m);
}

/* Without the folder the same prompt is the text alone: the vectors make
 * the difference the golden holds. */
static void embeddings_matter(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    kiln_st_file *f = golden_open(GOLDEN);
    golden z = golden_field(f, "sd15", "0.z");
    warnings w = {0};
    kiln_set_warning_handler(count_warning, &w);
    kiln_conditioning c;
    assert_kiln_ok(kiln_text_encode(m, "a photo of embedding:style cat", 0, &c));
    kiln_set_warning_handler(NULL, NULL);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.last, "embedding:style"));
    const double err = kiln_rel_l2(c.data, z.data, z.count);
    print_message("  without the embeddings folder: rel L2 %.2g from the golden\n", err);
    assert_true(err > 0.05);
    kiln_conditioning_free(&c);
    golden_free(&z);
    kiln_st_close(f);
    kiln_test_close_model(be, m);
}

/* A folder of bad files: each named in the error; a name leading outside
 * the folder is not looked up; the folder must be one. */
static void bad_embeddings_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln_embeddings_XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cube.safetensors", dir);
    const float cube[8] = {0};
    const kiln_st_entry e = {"emb_params", KILN_F32, 3, {2, 2, 2}, cube};
    assert_kiln_ok(kiln_st_write(path, &e, 1, NULL, 0));
    snprintf(path, sizeof path, "%s/broken.pt", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not an embedding", fp);
    fclose(fp);

    kiln_backend *be;
    kiln_model *m;
    assert_int_equal(kiln_test_open_tiny_sd15(&be, &m), 0);
    assert_kiln_ok(kiln_model_set_embeddings(m, dir));
    kiln_conditioning c = {0};
    assert_refused_naming(kiln_text_encode(m, "a embedding:cube cat", 0, &c), "has 3 dimensions");
    assert_non_null(strstr(kiln_last_error(), "embedding:cube"));
    assert_refused_naming(kiln_text_encode(m, "a embedding:broken, cat", 0, &c), "broken.pt: not a torch.save file");
    assert_null(c.data);
    char *found;
    assert_kiln_ok(kiln_embedding_find(embeddings_dir, "sub/pair", &found));
    assert_non_null(found);
    free(found);
    assert_kiln_ok(kiln_embedding_find(embeddings_dir, "sub/../style.safetensors", &found));
    assert_non_null(found);
    free(found);
    assert_kiln_ok(kiln_embedding_find(embeddings_dir, "../embeddings/style", &found));
    assert_null(found);
    assert_kiln_ok(kiln_embedding_find(embeddings_dir, "/etc/passwd", &found));
    assert_null(found);
    assert_refused_naming(kiln_model_set_embeddings(m, path), "not a folder");
    assert_refused_naming(kiln_model_set_embeddings(m, "/nonexistent/embeddings"), "/nonexistent/embeddings");
    kiln_test_close_model(be, m);
    unlink(path);
    snprintf(path, sizeof path, "%s/cube.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* Embeddings bundled in a LoRA file (bundle_emb.<name>.string_to_param.*,
 * else .<key>): all of them, one after another in name order, as ComfyUI
 * concatenates them; a file of plain tensors without the key gives its
 * first by name. */
static void bundled_and_first(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln_bundle_XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    float a[2 * 4], b[1 * 4], c[3 * 4], lora[4];
    for (int i = 0; i < 12; i++) {
        if (i < 8) a[i] = (float)i;
        if (i < 4) b[i] = 100.0f + (float)i, lora[i] = -1.0f;
        c[i] = 200.0f + (float)i;
    }
    const kiln_st_entry bundle[] = {{"bundle_emb.zeta.string_to_param.*", KILN_F32, 2, {2, 4}, a},
                                    {"bundle_emb.alpha.string_to_param.*", KILN_F32, 2, {1, 4}, b},
                                    {"lora_unet_down_blocks_0_attentions_0_proj_in.alpha", KILN_F32, 1, {4}, lora}};
    snprintf(path, sizeof path, "%s/bundle.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, bundle, 3, NULL, 0));
    float *v;
    int count, width;
    assert_kiln_ok(kiln_embedding_read(path, "clip_l", 4, &v, &count, &width));
    assert_int_equal(count, 3);
    assert_int_equal(width, 4);
    assert_memory_equal(v, b, sizeof b); /* alpha before zeta */
    assert_memory_equal(v + 4, a, sizeof a);
    free(v);
    unlink(path);
    const kiln_st_entry plain[] = {{"second", KILN_F32, 2, {3, 4}, c}, {"first", KILN_F32, 2, {1, 4}, b}};
    snprintf(path, sizeof path, "%s/plain.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, plain, 2, NULL, 0));
    assert_kiln_ok(kiln_embedding_read(path, "clip_g", 4, &v, &count, &width));
    assert_int_equal(count, 1);
    assert_memory_equal(v, b, sizeof b);
    free(v);
    unlink(path);
    rmdir(dir);
}

/* SD 2.x's tower takes a file's clip_h tensor (ComfyUI's embedding_key):
 * a file with clip_g (first by name) and clip_h gives the conditioning of
 * clip_h's alone, not clip_g's. */
static void sd2_takes_clip_h(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln_sd2_emb_XXXXXX", path[4200];
    assert_non_null(mkdtemp(dir));
    float h[2 * 32], l[2 * 32]; /* l: the other tower's vectors */
    for (int i = 0; i < 64; i++) h[i] = 0.02f * (float)((i * 7) % 13 - 6), l[i] = -0.03f * (float)((i * 5) % 11 - 5);
    const kiln_st_entry both[] = {{"clip_g", KILN_F32, 2, {2, 32}, l}, {"clip_h", KILN_F32, 2, {2, 32}, h}},
                        only_h = {"emb_params", KILN_F32, 2, {2, 32}, h}, only_l = {"emb_params", KILN_F32, 2, {2, 32}, l};
    snprintf(path, sizeof path, "%s/both.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, both, 2, NULL, 0));
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, &only_h, 1, NULL, 0));
    snprintf(path, sizeof path, "%s/l.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, &only_l, 1, NULL, 0));
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("sd2/tiny_sd2.safetensors"), NULL, 0, &m));
    assert_kiln_ok(kiln_model_set_embeddings(m, dir));
    kiln_conditioning c[3];
    static const char *const prompts[3] = {"a embedding:both photo", "a embedding:h photo", "a embedding:l photo"};
    for (int i = 0; i < 3; i++) assert_kiln_ok(kiln_text_encode(m, prompts[i], 0, &c[i]));
    const size_t n = (size_t)c[0].tokens * c[0].dim;
    assert_memory_equal(c[0].data, c[1].data, n * sizeof(float));
    assert_true(kiln_rel_l2(c[0].data, c[2].data, n) > 1e-3);
    for (int i = 0; i < 3; i++) kiln_conditioning_free(&c[i]);
    kiln_test_close_model(be, m);
    static const char *const names[3] = {"both", "h", "l"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    snprintf(embeddings_dir, sizeof embeddings_dir, "%s", kiln_test_data("embeddings"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sd15_matches_comfyui),
        cmocka_unit_test(sdxl_matches_comfyui),
        cmocka_unit_test(embeddings_matter),
        cmocka_unit_test(bad_embeddings_refused),
        cmocka_unit_test(bundled_and_first),
        cmocka_unit_test(sd2_takes_clip_h),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
