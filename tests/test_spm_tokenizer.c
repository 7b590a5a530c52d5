/* T5's SentencePiece tokenizer against sentencepiece and transformers'
 * T5Tokenizer (legacy=True) on a small unigram model trained with T5's
 * conventions (tests/data/spm_tokenizer/make_spm_data.py), and its refusal
 * of files it cannot or should not read. The same goldens again from the
 * tokenizer.json transformers converts that model to (T5TokenizerFast's
 * file, as ComfyUI and diffusers folders ship T5's tokenizer), and the
 * tokenizers models kiln refuses. */
#include "kiln_test.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_data.h"
#include "spm_tokenizer.h"

#define SPIECE "spm_tokenizer/spiece.model"
#define GOLDENS "spm_tokenizer/spm_goldens.json"

static kiln_spm *spm;
static cJSON *goldens;

#define TOKENIZER_JSON "spm_tokenizer/tokenizer.json"

static int open_tokenizer(const char *path)
{
    if (kiln_spm_open(kiln_test_data(path), &spm) != KILN_OK) {
        fprintf(stderr, "%s\n", kiln_last_error());
        return -1;
    }
    goldens = json_data_load(GOLDENS);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return open_tokenizer(SPIECE);
}

static int setup_json(void **state)
{
    (void)state;
    return open_tokenizer(TOKENIZER_JSON);
}

static int teardown(void **state)
{
    (void)state;
    kiln_spm_free(spm);
    cJSON_Delete(goldens);
    return 0;
}

static int json_int(const cJSON *obj, const char *key)
{
    const cJSON *v = json_data_get(obj, key);
    if (!cJSON_IsNumber(v)) fail_msg("JSON test data: '%s' is not a number", key);
    return v->valueint;
}

/* T5 ids of text with room for max_ids. */
static int32_t *encode_t5(const char *text, int max_ids, size_t *count)
{
    int32_t *ids = malloc((size_t)max_ids * sizeof *ids);
    assert_non_null(ids);
    int n = -1;
    assert_kiln_ok(kiln_spm_encode_t5(spm, text, ids, max_ids, &n));
    assert_in_range(n, 1, max_ids);
    *count = (size_t)n;
    return ids;
}

static void vocabulary_and_specials(void **state)
{
    (void)state;
    const int vocab = json_int(goldens, "vocab_size");
    assert_int_equal(kiln_spm_vocab_size(spm), vocab);
    assert_int_equal(kiln_spm_eos(spm), json_int(goldens, "eos"));
    assert_int_equal(kiln_spm_pad(spm), json_int(goldens, "pad"));
    /* T5Tokenizer's own ids for the sentinels, through kiln's text path */
    size_t n;
    int32_t *ids = encode_t5("<extra_id_0><extra_id_99><unk>", 8, &n);
    const int32_t want[] = {json_int(goldens, "extra_id_0"), json_int(goldens, "extra_id_99"),
                            json_int(goldens, "unk"), json_int(goldens, "eos")};
    assert_ids_equal("sentinels", "extra ids", ids, n, want, 4);
    free(ids);
}

/* sentencepiece's normalize() and encode() on each case. */
static void sentencepiece_goldens(void **state)
{
    (void)state;
    const cJSON *c;
    int cases = 0;
    cJSON_ArrayForEach(c, json_data_get(goldens, "cases"))
    {
        const char *name = json_data_string(c, "name"), *text = json_data_string(c, "text");
        const char *want_norm = json_data_string(c, "normalized");
        char *norm;
        size_t norm_len;
        assert_kiln_ok(kiln_spm_normalize(spm, text, strlen(text), &norm, &norm_len));
        if (norm_len != strlen(want_norm) || memcmp(norm, want_norm, norm_len) != 0)
            fail_msg("normalized '%s': \"%s\", want \"%s\"", name, norm, want_norm);
        free(norm);

        size_t n_want, n_got;
        int32_t *want = json_data_ints(c, "sp_ids", &n_want), *got;
        assert_kiln_ok(kiln_spm_encode(spm, text, strlen(text), &got, &n_got));
        assert_ids_equal("sentencepiece ids", name, got, n_got, want, n_want);
        free(got);
        free(want);
        cases++;
    }
    print_message("  %d cases match sentencepiece\n", cases);
    assert_true(cases >= 50);
}

/* Bytes that are not UTF-8, which only sentencepiece itself can be given. */
static void sentencepiece_byte_goldens(void **state)
{
    (void)state;
    const cJSON *c;
    int cases = 0;
    cJSON_ArrayForEach(c, json_data_get(goldens, "byte_cases"))
    {
        const char *name = json_data_string(c, "name");
        const char *hex = json_data_string(c, "hex"), *want_hex = json_data_string(c, "normalized_hex");
        size_t len = strlen(hex) / 2;
        char *bytes = malloc(len + 1);
        assert_non_null(bytes);
        for (size_t i = 0; i < len; i++) {
            unsigned v;
            assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
            bytes[i] = (char)v;
        }
        char *norm;
        size_t norm_len;
        assert_kiln_ok(kiln_spm_normalize(spm, bytes, len, &norm, &norm_len));
        char *got_hex = malloc(norm_len * 2 + 1);
        assert_non_null(got_hex);
        for (size_t i = 0; i < norm_len; i++) sprintf(got_hex + 2 * i, "%02x", (unsigned)(uint8_t)norm[i]);
        got_hex[norm_len * 2] = 0;
        if (strcmp(got_hex, want_hex) != 0) fail_msg("normalized '%s': %s, want %s", name, got_hex, want_hex);

        size_t n_want, n_got;
        int32_t *want = json_data_ints(c, "sp_ids", &n_want), *got;
        assert_kiln_ok(kiln_spm_encode(spm, bytes, len, &got, &n_got));
        assert_ids_equal("sentencepiece ids", name, got, n_got, want, n_want);
        free(got);
        free(want);
        free(got_hex);
        free(norm);
        free(bytes);
        cases++;
    }
    assert_int_equal(cases, 2);
}

/* T5Tokenizer(text).input_ids, and with max_length=L, truncation=True. */
static void t5_goldens(void **state)
{
    (void)state;
    const cJSON *c;
    int cases = 0, truncated = 0;
    cJSON_ArrayForEach(c, json_data_get(goldens, "cases"))
    {
        const char *name = json_data_string(c, "name"), *text = json_data_string(c, "text");
        size_t n_want, n_got;
        int32_t *want = json_data_ints(c, "t5_ids", &n_want);
        int32_t *got = encode_t5(text, (int)n_want + 16, &n_got);
        assert_ids_equal("T5 ids", name, got, n_got, want, n_want);
        free(got);
        free(want);
        cases++;
        if (!cJSON_GetObjectItemCaseSensitive(c, "max_length")) continue;

        const int max_length = json_int(c, "max_length");
        want = json_data_ints(c, "t5_ids_truncated", &n_want);
        got = encode_t5(text, max_length, &n_got);
        if (max_length == 1) {
            /* transformers will not truncate to nothing and gives every id;
             * kiln's answer must fit the caller's array: EOS alone */
            assert_true(n_want > 1);
            const int32_t eos = kiln_spm_eos(spm);
            assert_ids_equal("T5 ids, max_length 1", name, got, n_got, &eos, 1);
        } else {
            assert_ids_equal("T5 ids truncated", name, got, n_got, want, n_want);
        }
        free(got);
        free(want);
        truncated++;
    }
    print_message("  %d cases (%d truncated) match T5Tokenizer\n", cases, truncated);
    assert_true(cases >= 50);
    assert_int_equal(truncated, 6);
}

/* The hand-made models: ties, UNUSED pieces, user-defined scores, and the
 * normalizer with the dummy prefix and whitespace removal off. */
static void crafted_goldens(void **state)
{
    (void)state;
    const cJSON *model;
    int models = 0, cases = 0;
    cJSON_ArrayForEach(model, json_data_get(goldens, "crafted"))
    {
        char relative[256];
        snprintf(relative, sizeof relative, "spm_tokenizer/%s", json_data_string(model, "file"));
        kiln_spm *crafted = NULL;
        assert_kiln_ok(kiln_spm_open(kiln_test_data(relative), &crafted));
        const cJSON *c;
        cJSON_ArrayForEach(c, json_data_get(model, "cases"))
        {
            const char *text = json_data_string(c, "text"), *want_norm = json_data_string(c, "normalized");
            char *norm;
            size_t norm_len;
            assert_kiln_ok(kiln_spm_normalize(crafted, text, strlen(text), &norm, &norm_len));
            if (norm_len != strlen(want_norm) || memcmp(norm, want_norm, norm_len) != 0)
                fail_msg("%s: normalized \"%s\": \"%s\", want \"%s\"", relative, text, norm, want_norm);
            free(norm);

            size_t n_want, n_got;
            int32_t *want = json_data_ints(c, "sp_ids", &n_want), *got;
            assert_kiln_ok(kiln_spm_encode(crafted, text, strlen(text), &got, &n_got));
            assert_ids_equal(relative, text, got, n_got, want, n_want);
            free(got);
            free(want);

            want = json_data_ints(c, "t5_ids", &n_want);
            int32_t t5[64];
            int n = 0;
            assert_kiln_ok(kiln_spm_encode_t5(crafted, text, t5, 64, &n));
            assert_ids_equal(relative, text, t5, (size_t)n, want, n_want);
            free(want);
            cases++;
        }
        kiln_spm_free(crafted);
        models++;
    }
    print_message("  %d cases on %d hand-made models match\n", cases, models);
    assert_int_equal(models, 2);
}

static const cJSON *golden_case(const char *name)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, json_data_get(goldens, "cases"))
    {
        if (strcmp(json_data_string(c, "name"), name) == 0) return c;
    }
    fail_msg("no golden case '%s'", name);
    return NULL;
}

/* A long prompt: no piece holds U+2581 past its start, so words encode
 * independently and 5000 copies of a phrase give 5000 copies of its ids.
 * Kept quick by the trie even under AddressSanitizer. */
static void long_prompt_repeats(void **state)
{
    (void)state;
    const cJSON *c = golden_case("plain");
    const char *phrase = json_data_string(c, "text");
    size_t n_phrase;
    int32_t *phrase_ids = json_data_ints(c, "sp_ids", &n_phrase);
    const int copies = 5000;
    size_t len = strlen(phrase) + 1;
    char *text = malloc(len * (size_t)copies + 1);
    assert_non_null(text);
    for (int i = 0; i < copies; i++) {
        memcpy(text + i * len, phrase, len - 1);
        text[i * len + len - 1] = ' ';
    }
    text[len * (size_t)copies] = 0;

    int32_t *ids;
    size_t n;
    assert_kiln_ok(kiln_spm_encode(spm, text, strlen(text), &ids, &n));
    assert_int_equal(n, n_phrase * (size_t)copies);
    for (int i = 0; i < copies; i++) assert_ids_equal("repeated", "plain", ids + i * n_phrase, n_phrase, phrase_ids, n_phrase);
    free(ids);

    /* the T5 form, cut at 120 as PixArt asks */
    size_t n120;
    int32_t *t5 = encode_t5(text, 120, &n120);
    assert_int_equal(n120, 120);
    for (size_t i = 0; i < 119; i++) assert_int_equal(t5[i], phrase_ids[i % n_phrase]);
    assert_int_equal(t5[119], kiln_spm_eos(spm));
    free(t5);
    free(text);
    free(phrase_ids);
}

/* Every cut of the long golden prompt follows transformers' rule, of which
 * the goldens pin down three points (8, 120, and EOS at the cut). */
static void every_truncation(void **state)
{
    (void)state;
    const cJSON *c = golden_case("long_120");
    size_t n_full;
    int32_t *full = json_data_ints(c, "t5_ids", &n_full);
    for (int max = 2; max <= (int)n_full + 3; max++) {
        size_t n;
        int32_t *ids = encode_t5(json_data_string(c, "text"), max, &n);
        size_t keep = n_full - 1 < (size_t)max - 1 ? n_full - 1 : (size_t)max - 1;
        assert_int_equal(n, keep + 1);
        assert_memory_equal(ids, full, keep * sizeof *ids);
        assert_int_equal(ids[keep], kiln_spm_eos(spm));
        free(ids);
    }
    free(full);
}

typedef struct thread_job {
    const cJSON *cases;
    int mismatches;
} thread_job;

static void *encode_all(void *arg)
{
    thread_job *job = arg;
    int32_t ids[512];
    for (int round = 0; round < 20; round++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, job->cases)
        {
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "t5_ids");
            int n;
            if (kiln_spm_encode_t5(spm, cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring, ids, 512, &n) !=
                    KILN_OK ||
                n != cJSON_GetArraySize(want)) {
                job->mismatches++;
                continue;
            }
            for (int i = 0; i < n; i++)
                if (ids[i] != cJSON_GetArrayItem(want, i)->valueint) job->mismatches++;
        }
    }
    return NULL;
}

/* One tokenizer, four threads encoding at once. */
static void threads_share_a_tokenizer(void **state)
{
    (void)state;
    pthread_t threads[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){json_data_get(goldens, "cases"), 0};
        assert_int_equal(pthread_create(&threads[i], NULL, encode_all, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(jobs[i].mismatches, 0);
    }
}

static void bad_arguments(void **state)
{
    (void)state;
    int32_t ids[4];
    int n = 7;
    assert_int_equal(kiln_spm_encode_t5(spm, "cat", ids, 0, &n), KILN_ERR_INVALID_ARG);
    assert_int_equal(n, 0);
    assert_non_null(strstr(kiln_last_error(), "max_ids"));
    kiln_spm_free(NULL);
}

/* ---- files kiln must refuse ------------------------------------------------- */

static char temp_path[PATH_MAX];

static const char *write_temp(const void *data, size_t size)
{
    if (!temp_path[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(temp_path, sizeof temp_path, "%s/kiln-spm-XXXXXX", base && *base ? base : "/tmp");
        int fd = mkstemp(temp_path);
        if (fd < 0) fail_msg("mkstemp %s failed", temp_path);
        close(fd);
    }
    FILE *f = fopen(temp_path, "wb");
    assert_non_null(f);
    if (size) assert_int_equal(fwrite(data, 1, size, f), size);
    fclose(f);
    return temp_path;
}

/* Opening path fails with `code`, a message naming the file and holding
 * `words` (when given), and no tokenizer. */
static void assert_refused(const char *path, kiln_status code, const char *words)
{
    kiln_spm *s = (kiln_spm *)1;
    kiln_status st = kiln_spm_open(path, &s);
    if (st == KILN_OK) fail_msg("%s: opened, expected %s", path, kiln_status_name(code));
    assert_null(s);
    const char *msg = kiln_last_error();
    if (st != code) fail_msg("%s: %s (%s), expected %s", path, kiln_status_name(st), msg, kiln_status_name(code));
    if (strncmp(msg, path, strlen(path)) != 0) fail_msg("message does not name the file: %s", msg);
    if (words && !strstr(msg, words)) fail_msg("message lacks \"%s\": %s", words, msg);
}

static void missing_file_and_directory(void **state)
{
    (void)state;
    assert_refused(kiln_test_data("spm_tokenizer/no_such.model"), KILN_ERR_IO, "cannot open");
    assert_refused(kiln_test_data("spm_tokenizer"), KILN_ERR_IO, "directory");
    assert_refused(write_temp("", 0), KILN_ERR_FORMAT, "empty");
    unlink(temp_path);
}

/* Cut anywhere, the model is refused: the normalizer spec comes last, so a
 * cut either splits a field or drops a spec every model has. */
static void truncated_files(void **state)
{
    (void)state;
    size_t size;
    uint8_t *model = kiln_test_read_file(kiln_test_data(SPIECE), &size);
    int tried = 0;
    for (size_t cut = 1; cut < size; cut += cut < 64 || size - cut < 64 ? 1 : 997) {
        assert_refused(write_temp(model, cut), KILN_ERR_FORMAT, NULL);
        tried++;
    }
    print_message("  %d truncations refused\n", tried);
    free(model);
    unlink(temp_path);
}

/* Random bytes, and the model with random bytes changed: refused or read,
 * never a crash (AddressSanitizer watches); what reads must still encode. */
static void garbage_files(void **state)
{
    (void)state;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    uint8_t noise[4096];
    for (int round = 0; round < 64; round++) {
        size_t len = 1 + (size_t)(round * 61 % (int)sizeof noise);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            noise[i] = (uint8_t)x;
        }
        kiln_spm *s = NULL;
        const char *path = write_temp(noise, len);
        assert_int_not_equal(kiln_spm_open(path, &s), KILN_OK);
        assert_null(s);
        assert_non_null(strstr(kiln_last_error(), path));
    }
    size_t size;
    uint8_t *model = kiln_test_read_file(kiln_test_data(SPIECE), &size);
    int opened = 0;
    for (int round = 0; round < 48; round++) {
        uint8_t *copy = malloc(size);
        assert_non_null(copy);
        memcpy(copy, model, size);
        for (int k = 0; k < 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            copy[x % size] = (uint8_t)(x >> 32);
        }
        kiln_spm *s = NULL;
        if (kiln_spm_open(write_temp(copy, size), &s) == KILN_OK) {
            int32_t ids[64];
            int n;
            kiln_status st = kiln_spm_encode_t5(s, "A Photograph Of A Golden Dragon, ｆｕｌｌ ﬁsh café 猫 😀", ids, 64, &n);
            assert_true(st == KILN_OK || st == KILN_ERR_FORMAT);
            kiln_spm_free(s);
            opened++;
        }
        free(copy);
    }
    print_message("  %d of 48 damaged models still read\n", opened);
    free(model);
    unlink(temp_path);
}

static void other_model_kinds(void **state)
{
    (void)state;
    assert_refused(kiln_test_data("spm_tokenizer/bpe.model"), KILN_ERR_UNSUPPORTED, "BPE");
    assert_refused(kiln_test_data("spm_tokenizer/byte_fallback.model"), KILN_ERR_UNSUPPORTED, "byte_fallback");
}

/* tokenizer.json files kiln does not read as T5's. */
static void other_tokenizer_json(void **state)
{
    (void)state;
    static const struct {
        const char *json, *words;
        kiln_status code;
    } cases[] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "a tokenizers BPE model",
         KILN_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"byte_fallback\": true, \"vocab\": [[\"<unk>\", 0]]}}",
         "byte_fallback", KILN_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0], [\"a\"]]}}",
         "no [piece, score]", KILN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"<unk>\", 0]]}}", "unk_id 5",
         KILN_ERR_FORMAT},
        {"{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0], [\"a\", -1]]}}",
         "not a T5 vocabulary", KILN_ERR_FORMAT},
        {"{\"version\": \"1.0\"}", "not a tokenizer.json", KILN_ERR_FORMAT},
        {"{\"model\": ", "not JSON", KILN_ERR_FORMAT},
        {"{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"*\"}, \"model\": {\"type\": "
         "\"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0]]}}",
         "not base64", KILN_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_refused(write_temp(cases[i].json, strlen(cases[i].json)), cases[i].code, cases[i].words);
        unlink(temp_path);
    }
}

/* ---- hand-made protobufs --------------------------------------------------- */

typedef struct pb_buf {
    uint8_t data[4096];
    size_t len;
} pb_buf;

static void put_varint(pb_buf *b, uint64_t v)
{
    do {
        assert_true(b->len < sizeof b->data);
        b->data[b->len++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
}

static void put_bytes(pb_buf *b, uint32_t field, const void *data, size_t len)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, len);
    assert_true(b->len + len <= sizeof b->data);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void put_uint(pb_buf *b, uint32_t field, uint64_t v)
{
    put_varint(b, (uint64_t)field << 3);
    put_varint(b, v);
}

static void put_piece(pb_buf *model, const char *text, float score, int type)
{
    pb_buf p = {.len = 0};
    put_bytes(&p, 1, text, strlen(text));
    uint32_t bits;
    memcpy(&bits, &score, 4);
    put_varint(&p, 2 << 3 | 5);
    for (int i = 0; i < 4; i++) p.data[p.len++] = (uint8_t)(bits >> (8 * i));
    put_uint(&p, 3, (uint64_t)type);
    put_bytes(model, 1, p.data, p.len);
}

/* A T5-like model: <pad> </s> <unk>, then the given normal pieces;
 * model_type, and a normalizer spec with `charsmap` (may be NULL). */
static void make_model(pb_buf *m, const char *const *pieces, int model_type, const void *charsmap, size_t charsmap_len)
{
    m->len = 0;
    put_piece(m, "<pad>", 0, 3);
    put_piece(m, "</s>", 0, 3);
    put_piece(m, "<unk>", 0, 2);
    for (int i = 0; pieces[i]; i++) put_piece(m, pieces[i], -1.0f - (float)i, 1);
    pb_buf spec = {.len = 0};
    put_uint(&spec, 3, (uint64_t)model_type);
    put_uint(&spec, 40, 2);
    put_uint(&spec, 41, (uint64_t)-1); /* -1 as protobuf writes an int32: ten bytes */
    put_uint(&spec, 42, 1);
    put_uint(&spec, 43, 0);
    put_bytes(m, 2, spec.data, spec.len);
    pb_buf norm = {.len = 0};
    if (charsmap) put_bytes(&norm, 2, charsmap, charsmap_len);
    put_bytes(m, 3, norm.data, norm.len);
}

static void handmade_models(void **state)
{
    (void)state;
    static const char *const abc[] = {"\xE2\x96\x81" "a", "b", "c", "\xE2\x96\x81", NULL};
    pb_buf m;

    /* the minimal good one reads and encodes, without a character map */
    make_model(&m, abc, 1, NULL, 0);
    kiln_spm *s = NULL;
    assert_kiln_ok(kiln_spm_open(write_temp(m.data, m.len), &s));
    int32_t ids[8];
    int n;
    assert_kiln_ok(kiln_spm_encode_t5(s, "ab c", ids, 8, &n));
    const int32_t want[] = {3, 4, 6, 5, 1}; /* ▁a b ▁ c </s> */
    assert_ids_equal("handmade", "ab c", ids, (size_t)n, want, 5);
    kiln_spm_free(s);

    make_model(&m, abc, 4, NULL, 0);
    assert_refused(write_temp(m.data, m.len), KILN_ERR_UNSUPPORTED, "char model");

    static const char *const twice[] = {"a", "b", "a", NULL};
    make_model(&m, twice, 1, NULL, 0);
    assert_refused(write_temp(m.data, m.len), KILN_ERR_FORMAT, "are both \"a\"");

    /* no "</s>": transformers would invent an id for it */
    m.len = 0;
    put_piece(&m, "<pad>", 0, 3);
    put_piece(&m, "<unk>", 0, 2);
    put_piece(&m, "a", -1, 1);
    put_bytes(&m, 2, "", 0);
    put_bytes(&m, 3, "", 0);
    assert_refused(write_temp(m.data, m.len), KILN_ERR_FORMAT, "no piece \"</s>\"");

    /* no unknown piece */
    m.len = 0;
    put_piece(&m, "<pad>", 0, 3);
    put_piece(&m, "</s>", 0, 3);
    put_piece(&m, "<unk>", 0, 3);
    put_bytes(&m, 2, "", 0);
    put_bytes(&m, 3, "", 0);
    assert_refused(write_temp(m.data, m.len), KILN_ERR_FORMAT, "unknown piece");

    /* a piece given as a varint, an 11-byte varint, a group */
    static const uint8_t wrong_wire[] = {0x08, 0x01};
    assert_refused(write_temp(wrong_wire, sizeof wrong_wire), KILN_ERR_FORMAT, "wire type 0, not 2");
    static const uint8_t long_varint[] = {0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    assert_refused(write_temp(long_varint, sizeof long_varint), KILN_ERR_FORMAT, "varint longer than 10 bytes");
    static const uint8_t group[] = {0x0B, 0x0C};
    assert_refused(write_temp(group, sizeof group), KILN_ERR_FORMAT, "wire type 3");

    /* a character map whose one rule ("a" -> offset 100) points past its
     * strings (4 bytes): found when a text reaches it. In darts-clone's
     * double array the root's children sit at 1 ^ byte; the unit there for
     * 'a' has a leaf below it, at (1 ^ 'a') ^ 0x10, holding the offset. */
    uint32_t units[256] = {0};
    units[0] = 1u << 10;                                /* root, offset 1 */
    units[1 ^ 'a'] = 'a' | 1u << 8 | 0x10u << 10;       /* label 'a', has a leaf, offset 0x10 */
    units[(1 ^ 'a') ^ 0x10] = 0x80000000u | 100;        /* the leaf: value 100 */
    uint8_t blob[4 + sizeof units + 4];
    const uint32_t trie_bytes = sizeof units;
    for (int i = 0; i < 4; i++) blob[i] = (uint8_t)(trie_bytes >> (8 * i));
    for (size_t u = 0; u < 256; u++)
        for (int i = 0; i < 4; i++) blob[4 + 4 * u + (size_t)i] = (uint8_t)(units[u] >> (8 * i));
    memcpy(blob + 4 + sizeof units, "x\0y", 4);
    make_model(&m, abc, 1, blob, sizeof blob);
    s = NULL;
    assert_kiln_ok(kiln_spm_open(write_temp(m.data, m.len), &s));
    assert_kiln_ok(kiln_spm_encode_t5(s, "b c", ids, 8, &n)); /* no 'a': the map is never read */
    assert_int_equal(kiln_spm_encode_t5(s, "b a", ids, 8, &n), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_last_error(), "precompiled_charsmap"));
    assert_non_null(strstr(kiln_last_error(), temp_path));
    kiln_spm_free(s);

    /* a trie longer than the charsmap holding it */
    blob[0] = 0xE8, blob[1] = 0x03; /* 1000 */
    make_model(&m, abc, 1, blob, 16);
    assert_refused(write_temp(m.data, m.len), KILN_ERR_FORMAT, "outgrows");
    unlink(temp_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vocabulary_and_specials),
        cmocka_unit_test(sentencepiece_goldens),
        cmocka_unit_test(sentencepiece_byte_goldens),
        cmocka_unit_test(t5_goldens),
        cmocka_unit_test(crafted_goldens),
        cmocka_unit_test(long_prompt_repeats),
        cmocka_unit_test(every_truncation),
        cmocka_unit_test(threads_share_a_tokenizer),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(missing_file_and_directory),
        cmocka_unit_test(truncated_files),
        cmocka_unit_test(garbage_files),
        cmocka_unit_test(other_model_kinds),
        cmocka_unit_test(handmade_models),
        cmocka_unit_test(other_tokenizer_json),
    };
    /* the same model read from its tokenizer.json */
    const struct CMUnitTest json_tests[] = {
        cmocka_unit_test(vocabulary_and_specials), cmocka_unit_test(sentencepiece_goldens),
        cmocka_unit_test(sentencepiece_byte_goldens), cmocka_unit_test(t5_goldens),
        cmocka_unit_test(long_prompt_repeats), cmocka_unit_test(every_truncation),
    };
    return cmocka_run_group_tests_name("spiece.model", tests, setup, teardown) +
           cmocka_run_group_tests_name("tokenizer.json", json_tests, setup_json, teardown);
}
