/* PixArt-alpha against upstream on tests/data/pixart (made by
 * make_pixart_data.py with transformers' T5EncoderModel and T5Tokenizer and
 * diffusers' Transformer2DModel on a small random model): T5's
 * relative-position buckets, the T5 encoder on prompts of 3, 9 and 120
 * tokens, the DiT on two rows whose captions differ in length, the way
 * PixArtAlphaPipeline calls it (padded captions under an attention mask),
 * and the diffusers folder as a whole model: detection, then prompt to
 * picture through a KSampler run restated from ComfyUI's code; the same for
 * a PixArt-Sigma folder (tests/data/pixart_sigma, diffusers 0.30). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_test.h"

#include "golden.h"
#include "model.h"
#include "parity.h"
#include "pipeline.h"
#include "pixart.h"
#include "sampler.h"
#include "status.h"
#include "t5.h"

#define GOLDEN "pixart/golden.safetensors"
#define TOL 1e-5 /* f32: the same sums in another order */
#define RUN_TOL 1e-4 /* a whole run: five steps of the above, and the VAE */
#define RUN_PROMPT "a red fox in the snow, 1024 pixels" /* make_pixart_data.py's */
#define SIGMA_PROMPT                                                                                     \
    "a watercolour of a lighthouse on a cliff at dusk, waves breaking on black rocks below, gulls in a pale " \
    "orange sky, a narrow path winding up through tall grass to a white door, one lit window, fishing boats"

typedef struct {
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_weights *w;
} loaded;

static loaded load(const char *backend, const char *file)
{
    loaded l;
    assert_kiln_ok(kiln_backend_create(backend, NULL, &l.be));
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(file), &l.ck));
    assert_kiln_ok(kiln_weights_create(l.be, l.ck, &l.w));
    return l;
}

static void unload(loaded *l)
{
    kiln_weights_free(l->w);
    kiln_checkpoint_close(l->ck);
    kiln_backend_free(l->be);
}

static void t5_buckets(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open(GOLDEN);
    golden want = golden_read(f, "t5.buckets");
    for (size_t i = 0; i < want.count; i++) {
        int distance = (int)i - 300;
        if (kiln_t5_bucket(distance, 32, T5_MAX_DISTANCE) != (int)want.data[i])
            fail_msg("distance %d: bucket %d, transformers %d", distance, kiln_t5_bucket(distance, 32, 128),
                     (int)want.data[i]);
    }
    golden_free(&want);
    kiln_st_close(f);
}

/* T5 on prompts of 3, 9 and 120 ids and the DiT on two captions of
 * different lengths, in the whole folder as gen loads it */
static void parts_match_upstream(void **state)
{
    (void)state;
    parity_check_pixart(&(parity_fixture){.path = KILN_TEST_DATA "/pixart/tiny", .tol = TOL}, GOLDEN);
}

/* A PEFT LoRA (diffusers' names under transformer.) merged at load gives
 * what PEFT's own merge does (tests/data/pixart/make_pixart_lora_data.py). */
static void lora_matches_peft(void **state)
{
    (void)state;
    const kiln_lora lora = {KILN_TEST_DATA "/pixart/lora/peft.safetensors", 1.0, 1.0};
    parity_check_pixart(&(parity_fixture){.path = KILN_TEST_DATA "/pixart/tiny", .tol = TOL, .loras = &lora,
                                          .nloras = 1},
                        "pixart/lora/golden.safetensors");
}

static void not_t5_or_pixart(void **state)
{
    (void)state;
    loaded l = load("cpu", "pixart/tiny/text_encoder/model.safetensors");
    kiln_pixart dit;
    assert_false(kiln_pixart_present(l.ck, ""));
    assert_int_equal(kiln_pixart_bind(l.w, "", 0, &dit), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no PixArt transformer"));
    kiln_t5 t5;
    assert_int_equal(kiln_t5_bind(l.w, "text_encoders.t5xxl", &t5), KILN_ERR_MODEL);
    assert_non_null(strstr(kiln_last_error(), "no T5 encoder under 'text_encoders.t5xxl'"));
    unload(&l);
}

/* A folder whose text encoder is in two shards under transformers' index,
 * the tiny one's tensors split between them; the rest linked. */
static void write_sharded_folder(const char *dir)
{
    static const char *const linked[] = {"transformer", "tokenizer", "vae", "scheduler"};
    char path[1024], target[1024];
    for (size_t i = 0; i < sizeof linked / sizeof linked[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, linked[i]);
        snprintf(target, sizeof target, "%s/pixart/tiny/%s", KILN_TEST_DATA, linked[i]);
        assert_int_equal(symlink(target, path), 0);
    }
    snprintf(path, sizeof path, "%s/text_encoder", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(kiln_test_data("pixart/tiny/text_encoder/model.safetensors"), &f));
    size_t n = kiln_st_count(f);
    kiln_st_entry *entries = calloc(n, sizeof *entries);
    char index[16384] = "{\"metadata\": {}, \"weight_map\": {";
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        entries[i] = (kiln_st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
        size_t len = strlen(index);
        snprintf(index + len, sizeof index - len, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                 t->name, i < n / 2 ? 1 : 2);
    }
    strcat(index, "}}");
    snprintf(path, sizeof path, "%s/text_encoder/model-00001-of-00002.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, entries, n / 2, NULL, 0));
    snprintf(path, sizeof path, "%s/text_encoder/model-00002-of-00002.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, entries + n / 2, n - n / 2, NULL, 0));
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors.index.json", dir);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(index, out);
    fclose(out);
    free(entries);
    kiln_st_close(f);
}

/* A T5 in shards, as a full-size PixArt folder has it, reads as the whole
 * file does; an index naming a shard that is not there is refused by name. */
static void sharded_text_encoder(void **state)
{
    (void)state;
    char dir[] = "/tmp/kiln-pixart-XXXXXX", path[1024];
    assert_non_null(mkdtemp(dir));
    write_sharded_folder(dir);
    parity_check_pixart(&(parity_fixture){.path = dir, .tol = TOL}, GOLDEN);

    snprintf(path, sizeof path, "%s/text_encoder/model-00002-of-00002.safetensors", dir);
    assert_int_equal(unlink(path), 0);
    kiln_checkpoint *ck;
    assert_int_equal(kiln_checkpoint_open(dir, &ck), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "model-00002-of-00002.safetensors"));
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void folder_detected(void **state)
{
    (void)state;
    kiln_checkpoint *ck;
    kiln_model_info info;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("pixart/tiny"), &ck));
    assert_kiln_ok(kiln_model_inspect(ck, &info));
    assert_string_equal(info.family, "pixart");
    assert_string_equal(info.unet_name, "pixart-alpha");
    assert_string_equal(info.t5_name, "t5-v1.1");
    assert_int_equal(info.nclips, 0);
    assert_int_equal(info.prediction, KILN_PREDICTION_EPS);
    assert_int_equal(kiln_checkpoint_sample_size(ck), 128);
    kiln_checkpoint_close(ck);
}

/* The prompt's ids as upstream's tokenizer gives them, through the encoder. */
static void prompt_encoded(kiln_model *m, kiln_st_file *f, const char *text, const char *ids_name,
                           kiln_conditioning *c)
{
    assert_kiln_ok(kiln_encode_prompt(m, NULL, text, 0, c));
    golden ids = golden_read(f, ids_name);
    assert_int_equal(c->tokens, (int)ids.count);
    int32_t got[KILN_T5_MAX_TOKENS];
    int n;
    assert_kiln_ok(kiln_spm_encode_t5(m->spm, text, got, m->t5_max_tokens, &n));
    assert_int_equal(n, (int)ids.count);
    for (int i = 0; i < n; i++) assert_int_equal(got[i], (int)ids.data[i]);
    assert_int_equal(c->dim, 64);
    golden_free(&ids);
}

/* Prompt to picture: euler, normal, cfg 4.5, seed 42 on a 12x10 latent, as
 * the data scripts ran it. */
static void run_folder(kiln_model *m, const char *golden_path, const char *prompt, int steps)
{
    kiln_st_file *f = golden_open(golden_path);
    kiln_conditioning pos, neg;
    prompt_encoded(m, f, prompt, "run.ids.positive", &pos);
    prompt_encoded(m, f, "", "run.ids.negative", &neg);
    kiln_st_close(f);
    kiln_sampling_job job = kiln_test_job("euler", "normal", steps, 4.5f, 42, 12, 10);
    parity_check_run(m, &job, &pos, &neg, golden_path, RUN_TOL);
    kiln_conditioning_free(&pos);
    kiln_conditioning_free(&neg);
}

static void whole_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("pixart/tiny"), be, &m));
    int w, h;
    kiln_model_native_size(m, &w, &h);
    assert_int_equal(w, 2 * 128); /* the tiny VAE's factor times sample_size */
    assert_int_equal(m->t5_max_tokens, 120);
    run_folder(m, GOLDEN, RUN_PROMPT, 5);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* PixArt-Sigma (tests/data/pixart_sigma, diffusers 0.30's
 * PixArtTransformer2DModel): no size conditions at sample_size 128, SDXL's
 * latent scale from the folder's VAE config, a prompt of 139 ids (past
 * alpha's 120, within Sigma's 300). */
static void sigma_run(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("pixart_sigma/tiny"), be, &m));
    assert_string_equal(m->info.unet_name, "pixart-sigma");
    assert_false(m->pixart.size_conditions);
    assert_int_equal(m->t5_max_tokens, 300);
    assert_float_equal(m->vae.latents.scale, 0.13025f, 0.0f);
    run_folder(m, "pixart_sigma/golden.safetensors", SIGMA_PROMPT, 4);
    kiln_model_free(m);
    kiln_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t5_buckets),
        cmocka_unit_test(parts_match_upstream),
        cmocka_unit_test(lora_matches_peft),
        cmocka_unit_test(not_t5_or_pixart),
        cmocka_unit_test(sharded_text_encoder),
        cmocka_unit_test(folder_detected),
        cmocka_unit_test(whole_run),
        cmocka_unit_test(sigma_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
