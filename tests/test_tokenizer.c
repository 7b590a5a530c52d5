/* The CLIP tokenizer against transformers' CLIPTokenizer: the shared goldens
 * (with ftfy, cross-checked with open_clip) and kiln's own edge cases in both
 * cleaning modes (tests/data/tokenizer/README.md). */
#include "kiln_test.h"

#include <stdlib.h>
#include <string.h>

#include "json_data.h"
#include "tokenizer.h"

static kiln_tokenizer *ftfy_tok, *basic_tok;

static int setup(void **state)
{
    (void)state;
    if (kiln_tokenizer_create(&ftfy_tok) != KILN_OK) return -1;
    if (kiln_tokenizer_create_with(KILN_TEXT_CLEAN_BASIC, &basic_tok) != KILN_OK) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kiln_tokenizer_free(ftfy_tok);
    kiln_tokenizer_free(basic_tok);
    return 0;
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* A golden that kiln reproduces only without ftfy's mojibake repair: its
 * ids without that repair, or NULL if the golden is not one of those. */
static int32_t *known_difference(const cJSON *extra, const char *name, size_t *count)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, json_data_get(extra, "known_differences"))
    {
        if (strcmp(json_data_string(k, "name"), name) == 0) return json_data_ints(k, "ids_without_repair", count);
    }
    return NULL;
}

static void goldens_with_ftfy(void **state)
{
    (void)state;
    cJSON *root = json_data_load("tokenizer/tokenizer_goldens.json");
    cJSON *extra = json_data_load("tokenizer/extra_goldens.json");
    const cJSON *p;
    int exact = 0, different = 0;
    cJSON_ArrayForEach(p, json_data_get(root, "prompts"))
    {
        const char *name = json_data_string(p, "name");
        size_t n_want, n77, n_known;
        int32_t *want = json_data_ints(p, "bpe_ids_untruncated", &n_want);
        int32_t *want77 = json_data_ints(p, "ids_77", &n77);
        assert_int_equal(n77, KILN_CLIP_CONTEXT);
        int32_t *got, padded[KILN_CLIP_CONTEXT];
        size_t n_got;
        assert_kiln_ok(kiln_tokenizer_encode(ftfy_tok, json_data_string(p, "prompt"), &got, &n_got));
        assert_kiln_ok(kiln_tokenizer_encode_padded(ftfy_tok, json_data_string(p, "prompt"), padded));
        int32_t *known = known_difference(extra, name, &n_known);
        if (known) {
            /* the difference is real, and kiln's output is exactly ftfy's without the repair */
            assert_false(ids_equal(got, n_got, want, n_want));
            assert_ids_equal("without mojibake repair", name, got, n_got, known, n_known);
            different++;
        } else {
            assert_ids_equal("bpe ids", name, got, n_got, want, n_want);
            assert_ids_equal("ids_77", name, padded, KILN_CLIP_CONTEXT, want77, n77);
            exact++;
        }
        free(known);
        free(got);
        free(want);
        free(want77);
    }
    print_message("  %d goldens exact, %d known differences (mojibake repair)\n", exact, different);
    assert_int_equal(exact, 21);
    assert_int_equal(different, 1);
    cJSON_Delete(extra);
    cJSON_Delete(root);
}

static void edge_cases(const kiln_tokenizer *tok, const char *mode)
{
    cJSON *root = json_data_load("tokenizer/extra_goldens.json");
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, json_data_get(root, "cases"))
    {
        size_t n_want, n_got;
        int32_t *want = json_data_ints(c, mode, &n_want), *got;
        assert_kiln_ok(kiln_tokenizer_encode(tok, json_data_string(c, "prompt"), &got, &n_got));
        assert_ids_equal(mode, json_data_string(c, "name"), got, n_got, want, n_want);
        free(got);
        free(want);
        n++;
    }
    assert_int_equal(n, 26);
    cJSON_Delete(root);
}

static void edge_cases_ftfy(void **state)
{
    (void)state;
    edge_cases(ftfy_tok, "ftfy");
}

static void edge_cases_basic(void **state)
{
    (void)state;
    edge_cases(basic_tok, "basic");
}

static void padded_sequence_truncates_at_75(void **state)
{
    (void)state;
    /* "cat" is 2368; 80 of them keep 75 between BOS and EOS */
    char text[80 * 4 + 1] = "";
    for (int i = 0; i < 80; i++) strcat(text, "cat ");
    int32_t ids[KILN_CLIP_CONTEXT];
    assert_kiln_ok(kiln_tokenizer_encode_padded(ftfy_tok, text, ids));
    assert_int_equal(ids[0], KILN_CLIP_BOS);
    for (int i = 1; i <= 75; i++) assert_int_equal(ids[i], 2368);
    assert_int_equal(ids[76], KILN_CLIP_EOS);

    int32_t *all;
    size_t n;
    assert_kiln_ok(kiln_tokenizer_encode(ftfy_tok, text, &all, &n));
    assert_int_equal(n, 80);
    free(all);
    assert_kiln_ok(kiln_tokenizer_encode(ftfy_tok, "", &all, &n));
    assert_int_equal(n, 0);
    assert_null(all);
}

static void invalid_utf8_is_an_error(void **state)
{
    (void)state;
    int32_t *ids = (int32_t *)1;
    size_t n = 1;
    assert_int_equal(kiln_tokenizer_encode(ftfy_tok, "ok \xC3\x28 bad", &ids, &n), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "not valid UTF-8 at byte 3"));
    assert_null(ids);
    assert_int_equal(n, 0);
    /* an encoded surrogate is not UTF-8 either */
    int32_t padded[KILN_CLIP_CONTEXT];
    assert_int_equal(kiln_tokenizer_encode_padded(basic_tok, "\xED\xA0\x80", padded), KILN_ERR_INVALID_ARG);
}

static void unknown_cleaning_is_an_error(void **state)
{
    (void)state;
    kiln_tokenizer *tok = (kiln_tokenizer *)1;
    assert_int_equal(kiln_tokenizer_create_with((kiln_text_cleaning)7, &tok), KILN_ERR_INVALID_ARG);
    assert_null(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(goldens_with_ftfy),
        cmocka_unit_test(edge_cases_ftfy),
        cmocka_unit_test(edge_cases_basic),
        cmocka_unit_test(padded_sequence_truncates_at_75),
        cmocka_unit_test(invalid_utf8_is_an_error),
        cmocka_unit_test(unknown_cleaning_is_an_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
