/* ComfyUI's prompt weights and windows: the ids and weights ComfyUI 0.3.64
 * recorded (tests/data/tokenizer/comfyui_prompts.json), and the rules of
 * comfy/sd1_clip.py on cases worked out by hand. */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_data.h"
#include "prompt.h"

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

/* ---- ComfyUI's recordings ------------------------------------------------------ */

static void check_recorded(const kiln_tokenizer *tok, const cJSON *c)
{
    const char *source = json_data_string(c, "source");
    size_t n;
    int32_t *want = json_data_ints(c, "ids", &n);
    const cJSON *weights = json_data_get(c, "weights");
    assert_int_equal((size_t)cJSON_GetArraySize(weights), n);
    kiln_prompt_tokens t;
    assert_kiln_ok(kiln_prompt_tokenize(tok, json_data_string(c, "prompt"), KILN_CLIP_EOS, NULL, &t));
    if ((size_t)t.n_windows * KILN_CLIP_CONTEXT != n)
        fail_msg("%s: %d windows, want %zu", source, t.n_windows, n / KILN_CLIP_CONTEXT);
    bool weighted = false;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t.ids[i / KILN_CLIP_CONTEXT][i % KILN_CLIP_CONTEXT];
        float w = (float)t.weights[i / KILN_CLIP_CONTEXT][i % KILN_CLIP_CONTEXT];
        float want_w = (float)cJSON_GetArrayItem(weights, (int)i)->valuedouble;
        if (id != want[i]) fail_msg("%s: id %zu is %d, want %d", source, i, id, want[i]);
        if (w != want_w) fail_msg("%s: weight %zu is %.9g, want %.9g", source, i, w, want_w);
        weighted |= want_w != 1.0f;
    }
    assert_int_equal(t.weighted, weighted);
    assert_int_equal(t.missing_embeddings, 0);
    kiln_prompt_tokens_free(&t);
    free(want);
}

/* Stock ComfyUI has no ftfy; these prompts give the same ids with it. */
static void comfyui_recordings(void **state)
{
    (void)state;
    cJSON *root = json_data_load("tokenizer/comfyui_prompts.json");
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, json_data_get(root, "cases"))
    {
        check_recorded(basic_tok, c);
        check_recorded(ftfy_tok, c);
        n++;
    }
    assert_int_equal(n, 14);
    cJSON_Delete(root);
}

/* word, n times over; malloc'd */
static char *repeat(const char *word, int n)
{
    size_t len = strlen(word);
    char *s = malloc(len * (size_t)n + 1);
    assert_non_null(s);
    for (int i = 0; i < n; i++) memcpy(s + len * (size_t)i, word, len);
    s[len * (size_t)n] = 0;
    return s;
}

/* ---- weights ------------------------------------------------------------------- */

typedef struct segment {
    const char *text;
    double weight;
} segment;

static void expect_segments(const char *prompt, const segment *want, size_t n_want)
{
    kiln_prompt_segment *segs;
    size_t n;
    assert_kiln_ok(kiln_prompt_parse(prompt, &segs, &n));
    if (n != n_want) fail_msg("'%s': %zu segments, want %zu", prompt, n, n_want);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(segs[i].text, want[i].text) != 0)
            fail_msg("'%s': segment %zu is '%s', want '%s'", prompt, i, segs[i].text, want[i].text);
        bool same = isnan(want[i].weight) ? isnan(segs[i].weight) : segs[i].weight == want[i].weight;
        if (!same) fail_msg("'%s': weight %zu is %.17g, want %.17g", prompt, i, segs[i].weight, want[i].weight);
    }
    kiln_prompt_segments_free(segs, n);
}

#define EXPECT(prompt, ...)                                                                 \
    do {                                                                                    \
        const segment want_[] = {__VA_ARGS__};                                              \
        expect_segments(prompt, want_, sizeof want_ / sizeof want_[0]);                    \
    } while (0)

static void weight_syntax(void **state)
{
    (void)state;
    EXPECT("a (b) c", {"a ", 1.0}, {"b", 1.1}, {" c", 1.0});
    EXPECT("((b))", {"b", 1.1 * 1.1});                     /* Python: 1.2100000000000002 */
    EXPECT("(b:1.5) ((c:0.5))", {"b", 1.5}, {" ", 1.0}, {"c", 0.5});
    EXPECT("((b:1.5) c:0.8)", {"b", 1.5}, {" c", 0.8});      /* an explicit weight replaces, never multiplies */
    EXPECT("(a:b:0.5)", {"a:b", 0.5});                     /* the last ':' */
    EXPECT("(b:abc)", {"b:abc", 1.1});                     /* not a number: x1.1 and the text kept */
    EXPECT("(:1.5)", {":1.5", 1.1});                       /* a ':' first does not count */
    EXPECT("(a:)", {"a:", 1.1});
    EXPECT("\\(a\\) (b\\)c:2)", {"(a) ", 1.0}, {"b)c", 2.0});
    EXPECT("[a] {b} <c:2>", {"[a] {b} <c:2>", 1.0});
    EXPECT("a (b", {"a ", 1.0}, {"(b", 1.0});               /* unclosed: plain text */
    EXPECT("a) (b)", {"a) (b)", 1.0});                     /* a stray ')' leaves depth below zero */
    EXPECT(")((b)", {")(", 1.0}, {"b", 1.1});               /* ...until a '(' brings it back to zero */
    EXPECT("(a (b) c)", {"a ", 1.1}, {"b", 1.1 * 1.1}, {" c", 1.1});
}

static void weight_numbers_as_python_reads_them(void **state)
{
    (void)state;
    EXPECT("(a: 1.5 )", {"a", 1.5});
    EXPECT("(a:1_0)", {"a", 10.0});
    EXPECT("(a:1e1)", {"a", 10.0});
    EXPECT("(a:.5)", {"a", 0.5});
    EXPECT("(a:5.)", {"a", 5.0});
    EXPECT("(a:-1)", {"a", -1.0});
    EXPECT("(a:+2)", {"a", 2.0});
    EXPECT("(a:\xEF\xBC\x91.\xEF\xBC\x95)", {"a", 1.5});    /* full-width digits are decimal digits */
    EXPECT("(a:inf)", {"a", INFINITY});
    EXPECT("(a:-Infinity)", {"a", -INFINITY});
    EXPECT("(a:NaN)", {"a", NAN});
    EXPECT("(a:1__0)", {"a:1__0", 1.1});
    EXPECT("(a:_1)", {"a:_1", 1.1});
    EXPECT("(a:0x10)", {"a:0x10", 1.1});
    EXPECT("(a:1.5e)", {"a:1.5e", 1.1});
    EXPECT("(a:1,5)", {"a:1,5", 1.1});
    EXPECT("(a:\\)1)", {"a:)1", 1.1});                      /* an escaped ')' is no digit */
    char *zeros = repeat("0", 300), *prompt;
    assert_true(asprintf(&prompt, "(a:2.%s1)", zeros) > 0); /* long numbers are numbers too */
    EXPECT(prompt, {"a", 2.0});
    free(prompt);
    free(zeros);
}

static void empty_prompts(void **state)
{
    (void)state;
    kiln_prompt_segment *segs;
    size_t n;
    assert_kiln_ok(kiln_prompt_parse("", &segs, &n));
    assert_int_equal(n, 0);
    assert_kiln_ok(kiln_prompt_parse("()", &segs, &n));
    assert_int_equal(n, 0);
    kiln_prompt_segments_free(segs, n);

    kiln_prompt_tokens t;
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, "  ", KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.n_windows, 1);
    assert_int_equal(t.ids[0][0], KILN_CLIP_BOS);
    for (int i = 1; i < KILN_CLIP_CONTEXT; i++) assert_int_equal(t.ids[0][i], KILN_CLIP_EOS);
    assert_false(t.weighted);
    kiln_prompt_tokens_free(&t);
}

/* ---- windows ------------------------------------------------------------------- */

/* A window expected as pieces of (text, weight), each tokenized on its own. */
typedef struct piece {
    const char *text;
    double weight;
} piece;

static void expect_window(const kiln_prompt_tokens *t, int w, const piece *pieces, size_t n_pieces)
{
    assert_true(w < t->n_windows);
    int pos = 0;
    assert_int_equal(t->ids[w][pos], KILN_CLIP_BOS);
    assert_true(t->weights[w][pos++] == 1.0);
    for (size_t p = 0; p < n_pieces; p++) {
        int32_t *ids;
        size_t n;
        assert_kiln_ok(kiln_tokenizer_encode(basic_tok, pieces[p].text, &ids, &n));
        for (size_t i = 0; i < n; i++, pos++) {
            if (t->ids[w][pos] != ids[i]) fail_msg("window %d position %d: id %d, want %d", w, pos, t->ids[w][pos], ids[i]);
            assert_true(t->weights[w][pos] == pieces[p].weight);
        }
        free(ids);
    }
    for (; pos < KILN_CLIP_CONTEXT; pos++) {
        if (t->ids[w][pos] != KILN_CLIP_EOS) fail_msg("window %d position %d: id %d, want EOS", w, pos, t->ids[w][pos]);
        assert_true(t->weights[w][pos] == 1.0);
    }
}

static void short_pieces_move_whole(void **state)
{
    (void)state;
    char *cats = repeat("cat ", 72), *prompt;
    kiln_prompt_tokens t;

    /* 72 + 4 > 75: the 4 weighted tokens open the second window */
    assert_true(asprintf(&prompt, "%s(red circle on blue:1.2)", cats) > 0);
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, prompt, KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.n_windows, 2);
    expect_window(&t, 0, (piece[]){{cats, 1.0}}, 1);
    expect_window(&t, 1, (piece[]){{"red circle on blue", 1.2}}, 1);
    assert_true(t.weighted);
    kiln_prompt_tokens_free(&t);
    free(prompt);

    /* seven single-letter tokens are still short */
    assert_true(asprintf(&prompt, "%s(a b c d e f g:0.5)", cats) > 0);
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, prompt, KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.n_windows, 2);
    expect_window(&t, 1, (piece[]){{"a b c d e f g", 0.5}}, 1);
    kiln_prompt_tokens_free(&t);
    free(prompt);

    /* 71 + 4 = 75 fits */
    char *cats71 = repeat("cat ", 71);
    assert_true(asprintf(&prompt, "%s(red circle on blue:1.2)", cats71) > 0);
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, prompt, KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.n_windows, 1);
    expect_window(&t, 0, (piece[]){{cats71, 1.0}, {"red circle on blue", 1.2}}, 2);
    kiln_prompt_tokens_free(&t);
    free(prompt);
    free(cats71);
    free(cats);
}

static void long_pieces_split_at_window_ends(void **state)
{
    (void)state;
    char *cats = repeat("cat ", 72), *prompt;
    kiln_prompt_tokens t;

    /* eight tokens: three end the first window, five start the second */
    assert_true(asprintf(&prompt, "%s(a b c d e f g h:0.5)", cats) > 0);
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, prompt, KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.n_windows, 2);
    expect_window(&t, 0, (piece[]){{cats, 1.0}, {"a b c", 0.5}}, 2);
    expect_window(&t, 1, (piece[]){{"d e f g h", 0.5}}, 1);
    kiln_prompt_tokens_free(&t);
    free(prompt);
    free(cats);

    /* one unweighted piece of 150 tokens fills exactly two windows */
    char *cats150 = repeat("cat ", 150), *cats75 = repeat("cat ", 75);
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, cats150, KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.n_windows, 2);
    expect_window(&t, 0, (piece[]){{cats75, 1.0}}, 1);
    expect_window(&t, 1, (piece[]){{cats75, 1.0}}, 1);
    assert_false(t.weighted);
    kiln_prompt_tokens_free(&t);
    free(cats150);
    free(cats75);
}

static void embeddings_are_skipped_like_missing_files(void **state)
{
    (void)state;
    kiln_prompt_tokens t;
    /* the text after " embedding:" is its own piece; NAME goes, the rest stays */
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, "cat embedding:foo dog  bird", KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.missing_embeddings, 1);
    expect_window(&t, 0, (piece[]){{"cat", 1.0}, {"dog bird", 1.0}}, 2);
    kiln_prompt_tokens_free(&t);

    /* strip(',') took one comma: ComfyUI puts NAME's last character back */
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, "cat\nembedding:foo, dog", KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.missing_embeddings, 1);
    expect_window(&t, 0, (piece[]){{"cat", 1.0}, {", dog", 1.0}}, 2);
    kiln_prompt_tokens_free(&t);

    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, "(embedding:,,foo bar:1.3)", KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.missing_embeddings, 1);
    expect_window(&t, 0, (piece[]){{"oo bar", 1.3}}, 1);
    kiln_prompt_tokens_free(&t);

    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, "embedding:EasyNegative", KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.missing_embeddings, 1);
    expect_window(&t, 0, NULL, 0);
    kiln_prompt_tokens_free(&t);

    /* not after a space or line end: plain text */
    assert_kiln_ok(kiln_prompt_tokenize(basic_tok, "xembedding:foo", KILN_CLIP_EOS, NULL, &t));
    assert_int_equal(t.missing_embeddings, 0);
    expect_window(&t, 0, (piece[]){{"xembedding:foo", 1.0}}, 1);
    kiln_prompt_tokens_free(&t);
}

static void bad_prompts_are_errors(void **state)
{
    (void)state;
    kiln_prompt_tokens t;
    for (int levels = KILN_PROMPT_MAX_NESTING; levels <= KILN_PROMPT_MAX_NESTING + 1; levels++) {
        char *open = repeat("(", levels), *close = repeat(")", levels), *deep;
        assert_true(asprintf(&deep, "%sa%s", open, close) > 0);
        if (levels == KILN_PROMPT_MAX_NESTING) {
            assert_kiln_ok(kiln_prompt_tokenize(basic_tok, deep, KILN_CLIP_EOS, NULL, &t));
            kiln_prompt_tokens_free(&t);
        } else {
            assert_int_equal(kiln_prompt_tokenize(basic_tok, deep, KILN_CLIP_EOS, NULL, &t), KILN_ERR_INVALID_ARG);
            assert_non_null(strstr(kiln_last_error(), "nest deeper"));
            assert_int_equal(t.n_windows, 0);
            assert_null(t.ids);
        }
        free(deep);
        free(open);
        free(close);
    }

    assert_int_equal(kiln_prompt_tokenize(basic_tok, "(a:1.5) \xFF", KILN_CLIP_EOS, NULL, &t), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "UTF-8 at byte 8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(comfyui_recordings),
        cmocka_unit_test(weight_syntax),
        cmocka_unit_test(weight_numbers_as_python_reads_them),
        cmocka_unit_test(empty_prompts),
        cmocka_unit_test(short_pieces_move_whole),
        cmocka_unit_test(long_pieces_split_at_window_ends),
        cmocka_unit_test(embeddings_are_skipped_like_missing_files),
        cmocka_unit_test(bad_prompts_are_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
