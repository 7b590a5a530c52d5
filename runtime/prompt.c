/* ComfyUI's prompt weights and 75-token windows; see prompt.h. */
#include "prompt.h"

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "status.h"
#include "textual_inversion.h"

/* Escaped parentheses travel through parsing as two bytes that no UTF-8 C
 * string holds, so that they are neither brackets nor ':'. */
#define ESCAPE_BYTE '\0'
#define ESCAPED_CLOSE '\1'
#define ESCAPED_OPEN '\2'
#define MAX_WORD_TOKENS 8 /* pieces this long may be split across windows */

static const char embedding_prefix[] = "embedding:";

static kiln_status out_of_memory(void) { return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of memory"); }

/* ---- Python's float() ------------------------------------------------------ */

/* Unicode decimal digits come in runs of ten from 0 to 9. */
static int decimal_value(utf8proc_int32_t c)
{
    int v = 0;
    while (utf8proc_category(c - 1 - v) == UTF8PROC_CATEGORY_ND) v++;
    return v % 10;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool equals_nocase(const char *s, const char *lower)
{
    for (; *s && *lower; s++, lower++)
        if ((*s | 0x20) != *lower) return false;
    return !*s && !*lower;
}

/* Python's float(s) on the ASCII form of s (Unicode spaces as ' ', decimal
 * digits as ASCII ones, NUL-terminated): spaces around trimmed, '_' only
 * between digits, a decimal number or inf, infinity, nan (any case, signed). */
static bool parse_ascii_float(char *s, double *out)
{
    char *p = s, *end = s + strlen(s);
    while (p < end && (*p == ' ' || (*p >= '\t' && *p <= '\r'))) p++;
    while (end > p && (end[-1] == ' ' || (end[-1] >= '\t' && end[-1] <= '\r'))) end--;
    /* drop the underscores, each of which must sit between two digits */
    char *num = s;
    size_t m = 0;
    for (char *q = p; q < end; q++) {
        if (*q == '_') {
            if (q == p || !is_digit(q[-1]) || q + 1 == end || !is_digit(q[1])) return false;
            continue;
        }
        num[m++] = *q;
    }
    num[m] = 0;
    const char *body = num + (num[0] == '+' || num[0] == '-');
    double sign = num[0] == '-' ? -1.0 : 1.0;
    if (equals_nocase(body, "inf") || equals_nocase(body, "infinity")) {
        *out = sign * INFINITY;
        return true;
    }
    if (equals_nocase(body, "nan")) {
        *out = NAN;
        return true;
    }
    const char *q = body;
    size_t digits = 0;
    while (is_digit(*q)) q++, digits++;
    if (*q == '.') {
        q++;
        while (is_digit(*q)) q++, digits++;
    }
    if (!digits) return false;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-') q++;
        if (!is_digit(*q)) return false;
        while (is_digit(*q)) q++;
    }
    if (*q) return false;
    /* a decimal string now; strtod in the C locale so that '.' is the point */
    locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_locale) return false;
    *out = strtod_l(num, NULL, c_locale);
    freelocale(c_locale);
    return true;
}

/* Python's float() of the UTF-8 text s[0..n): false where it raises. */
static kiln_status parse_py_float(const char *s, size_t n, double *out, bool *ok)
{
    char *ascii = malloc(n + 1);
    if (!ascii) return out_of_memory();
    size_t k = 0;
    utf8proc_int32_t c;
    *ok = true;
    for (size_t i = 0; i < n && *ok;) {
        utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        i += (size_t)len;
        if (c > 0 && c < 128) ascii[k++] = (char)c;
        else if (kiln_py_isspace((uint32_t)c)) ascii[k++] = ' ';
        else if (utf8proc_category(c) == UTF8PROC_CATEGORY_ND) ascii[k++] = (char)('0' + decimal_value(c));
        else *ok = false; /* NUL (an escaped parenthesis) included */
    }
    ascii[k] = 0;
    if (*ok) *ok = parse_ascii_float(ascii, out);
    free(ascii);
    return KILN_OK;
}

/* ---- weights ------------------------------------------------------------------ */

typedef struct segment_list {
    kiln_prompt_segment *items;
    size_t count, cap;
} segment_list;

/* Appends s[0..n) with escaped parentheses read back as plain ones. */
static kiln_status push_segment(segment_list *list, const char *s, size_t n, double weight)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        kiln_prompt_segment *grown = realloc(list->items, cap * sizeof *grown);
        if (!grown) return out_of_memory();
        list->items = grown;
        list->cap = cap;
    }
    char *text = malloc(n + 1);
    if (!text) return out_of_memory();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ESCAPE_BYTE && i + 1 < n && (s[i + 1] == ESCAPED_CLOSE || s[i + 1] == ESCAPED_OPEN)) {
            text[k++] = s[++i] == ESCAPED_CLOSE ? ')' : '(';
        } else {
            text[k++] = s[i];
        }
    }
    text[k] = 0;
    list->items[list->count++] = (kiln_prompt_segment){text, weight};
    return KILN_OK;
}

static kiln_status weigh(const char *s, size_t n, double weight, int depth, segment_list *out);

/* One top-level item of parse_parentheses: "(inner)" or "(inner:w)" is
 * weighed again inside, anything else is a segment. */
static kiln_status weigh_item(const char *s, size_t n, double weight, int depth, segment_list *out)
{
    if (n < 2 || s[0] != '(' || s[n - 1] != ')') return push_segment(out, s, n, weight);
    const char *inner = s + 1;
    size_t inner_len = n - 2;
    double w = weight * 1.1;
    const char *colon = NULL;
    for (size_t i = inner_len; i-- > 0;)
        if (inner[i] == ':') {
            colon = inner + i;
            break;
        }
    double parsed;
    bool is_number = false;
    if (colon && colon > inner)
        TRY(parse_py_float(colon + 1, inner_len - (size_t)(colon + 1 - inner), &parsed, &is_number));
    if (is_number) {
        w = parsed;
        inner_len = (size_t)(colon - inner);
    }
    return weigh(inner, inner_len, w, depth + 1, out);
}

/* token_weights: cut s into top-level items at parentheses, counting depth
 * the way ComfyUI does (a ')' at depth 0 takes it below zero), and weigh each. */
static kiln_status weigh(const char *s, size_t n, double weight, int depth, segment_list *out)
{
    if (depth > KILN_PROMPT_MAX_NESTING)
        return kiln_fail(KILN_ERR_INVALID_ARG, "prompt: parentheses nest deeper than %d levels", KILN_PROMPT_MAX_NESTING);
    size_t start = 0;
    long level = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '(') {
            if (level == 0 && i > start) {
                TRY(weigh_item(s + start, i - start, weight, depth, out));
                start = i;
            } else if (level == 0) {
                start = i;
            }
            level++;
        } else if (s[i] == ')') {
            if (--level == 0) {
                TRY(weigh_item(s + start, i + 1 - start, weight, depth, out));
                start = i + 1;
            }
        }
    }
    if (start < n) TRY(weigh_item(s + start, n - start, weight, depth, out));
    return KILN_OK;
}

void kiln_prompt_segments_free(kiln_prompt_segment *segments, size_t count)
{
    if (!segments) return;
    for (size_t i = 0; i < count; i++) free(segments[i].text);
    free(segments);
}

kiln_status kiln_prompt_parse(const char *prompt, kiln_prompt_segment **segments, size_t *count)
{
    *segments = NULL;
    *count = 0;
    size_t bad_at;
    if (!kiln_utf8_valid(prompt, &bad_at))
        return kiln_fail(KILN_ERR_INVALID_ARG, "prompt: not valid UTF-8 at byte %zu", bad_at);
    size_t n = strlen(prompt);
    char *escaped = malloc(n + 1);
    if (!escaped) return out_of_memory();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (prompt[i] == '\\' && (prompt[i + 1] == ')' || prompt[i + 1] == '(')) {
            escaped[k++] = ESCAPE_BYTE;
            escaped[k++] = prompt[++i] == ')' ? ESCAPED_CLOSE : ESCAPED_OPEN;
        } else {
            escaped[k++] = prompt[i];
        }
    }
    segment_list list = {0};
    kiln_status st = weigh(escaped, k, 1.0, 0, &list);
    free(escaped);
    if (st != KILN_OK) {
        kiln_prompt_segments_free(list.items, list.count);
        return st;
    }
    *segments = list.items;
    *count = list.count;
    return KILN_OK;
}

/* ---- windows ------------------------------------------------------------------ */

typedef struct window_builder {
    kiln_prompt_tokens *out;
    const kiln_prompt_embeddings *embeddings;
    int32_t pad_id;
    int cap;  /* windows allocated */
    int fill; /* ids in the last window */
} window_builder;

static kiln_status open_window(window_builder *b)
{
    kiln_prompt_tokens *t = b->out;
    if (t->n_windows == b->cap) {
        int cap = b->cap ? b->cap * 2 : 2;
        int32_t(*ids)[KILN_CLIP_CONTEXT] = realloc(t->ids, (size_t)cap * sizeof *ids);
        if (ids) t->ids = ids;
        double(*weights)[KILN_CLIP_CONTEXT] = realloc(t->weights, (size_t)cap * sizeof *weights);
        if (weights) t->weights = weights;
        if (!ids || !weights) return out_of_memory();
        b->cap = cap;
    }
    t->n_windows++;
    b->fill = 0;
    t->ids[t->n_windows - 1][b->fill] = KILN_CLIP_BOS;
    t->weights[t->n_windows - 1][b->fill++] = 1.0;
    return KILN_OK;
}

static void put_token(window_builder *b, int32_t id, double weight)
{
    kiln_prompt_tokens *t = b->out;
    t->ids[t->n_windows - 1][b->fill] = id;
    t->weights[t->n_windows - 1][b->fill++] = weight;
    if (weight != 1.0) t->weighted = true;
}

/* EOS, then padding up to 77. */
static void close_window(window_builder *b)
{
    put_token(b, KILN_CLIP_EOS, 1.0);
    while (b->fill < KILN_CLIP_CONTEXT) put_token(b, b->pad_id, 1.0);
}

/* Places one piece's tokens: whole into the current window if they fit, a
 * short piece whole into a new window, a long one split at window ends. */
static kiln_status place_piece(window_builder *b, const int32_t *ids, size_t n, double weight)
{
    bool splittable = n >= MAX_WORD_TOKENS;
    while (n > 0) {
        size_t room = (size_t)(KILN_CLIP_CONTEXT - 1 - b->fill);
        if (n <= room) {
            for (size_t i = 0; i < n; i++) put_token(b, ids[i], weight);
            return KILN_OK;
        }
        if (splittable) {
            for (size_t i = 0; i < room; i++) put_token(b, ids[i], weight);
            ids += room;
            n -= room;
        }
        close_window(b);
        TRY(open_window(b));
    }
    return KILN_OK;
}

static kiln_status tokenize_piece(const kiln_tokenizer *tok, window_builder *b, const char *s, size_t n, double weight)
{
    char *text = strndup(s, n);
    if (!text) return out_of_memory();
    int32_t *ids;
    size_t count;
    kiln_status st = kiln_tokenizer_encode(tok, text, &ids, &count);
    free(text);
    TRY(st);
    st = place_piece(b, ids, count, weight);
    free(ids);
    return st;
}

/* ComfyUI's reading of "embedding:NAME rest": NAME, the first word (its
 * span in *name, *name_len), and the text tokenized after the embedding:
 * the words of rest joined by single spaces, after the last k characters of
 * NAME and a space when strip(',') would take k commas off NAME. */
static kiln_status embedding_leftover(const char *s, size_t n, char **out, size_t *name, size_t *name_len)
{
    char *text = malloc(n + 2);
    if (!text) return out_of_memory();
    size_t k = 0, words = 0;
    *name = *name_len = 0;
    utf8proc_int32_t c;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (kiln_py_isspace((uint32_t)c)) {
            i += (size_t)len;
            continue;
        }
        size_t start = i;
        while (i < n) {
            len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
            if (kiln_py_isspace((uint32_t)c)) break;
            i += (size_t)len;
        }
        if (words++ == 0) {
            *name = start, *name_len = i - start;
            size_t commas = 0, a = start, b = i;
            while (a < b && s[a] == ',') a++, commas++;
            while (b > a && s[b - 1] == ',') b--, commas++;
            if (!commas) continue;
            size_t tail = i;
            for (size_t back = 0; back < commas; back++)
                do tail--; while ((s[tail] & 0xC0) == 0x80);
            memcpy(text, s + tail, i - tail);
            k = i - tail;
            text[k++] = ' ';
            continue;
        }
        if (k && text[k - 1] != ' ') text[k++] = ' ';
        memcpy(text + k, s + start, i - start);
        k += i - start;
    }
    text[k] = 0;
    *out = text;
    return KILN_OK;
}

/* The file of NAME, else of NAME without its commas around (*path NULL:
 * neither is there). */
static kiln_status find_embedding(const char *dir, const char *name, size_t n, char **path)
{
    char *s = strndup(name, n);
    if (!s) return out_of_memory();
    kiln_status st = kiln_embedding_find(dir, s, path);
    size_t a = 0, b = n;
    while (a < b && s[a] == ',') a++;
    while (b > a && s[b - 1] == ',') b--;
    if (st == KILN_OK && !*path && (a > 0 || b < n)) {
        s[b] = 0;
        st = kiln_embedding_find(dir, s + a, path);
    }
    free(s);
    return st;
}

/* Places the vectors of embedding NAME as one piece (ids -1 - k), or warns
 * and counts it where there is no file. */
static kiln_status place_embedding(window_builder *b, const char *name, size_t n, double weight)
{
    kiln_prompt_tokens *t = b->out;
    const kiln_prompt_embeddings *e = b->embeddings;
    char *path = NULL;
    if (e && e->dir) TRY(find_embedding(e->dir, name, n, &path));
    if (!path) {
        t->missing_embeddings++;
        kiln_warn("embedding:%.*s: no such file in %s; left out", (int)n, name, e && e->dir ? e->dir : "(no embeddings folder)");
        return KILN_OK;
    }
    float *v;
    int count, width;
    kiln_status st = kiln_embedding_read(path, e->key, e->width, &v, &count, &width);
    if (st != KILN_OK) {
        free(path);
        return kiln_fail_context(st, "embedding:%.*s", (int)n, name);
    }
    const bool misfit = width != e->width;
    if (misfit)
        kiln_warn("embedding:%.*s (%s) holds vectors %d wide, this text encoder's are %d: left out", (int)n, name, path,
                  width, e->width);
    free(path);
    int32_t *ids = malloc((size_t)count * sizeof *ids);
    float *all = misfit ? t->vectors : realloc(t->vectors, (size_t)(t->nvectors + count) * width * sizeof *all);
    if (!ids || (!misfit && !all)) {
        free(ids);
        free(v);
        return out_of_memory();
    }
    if (!misfit) {
        t->vectors = all;
        t->width = width;
        memcpy(all + (size_t)t->nvectors * width, v, (size_t)count * width * sizeof *all);
    }
    for (int i = 0; i < count; i++) ids[i] = misfit ? KILN_PROMPT_MISFIT : -1 - (t->nvectors + i);
    if (!misfit) t->nvectors += count;
    free(v);
    st = place_piece(b, ids, (size_t)count, weight);
    free(ids);
    return st;
}

/* One piece of a segment: text to tokenize, or an embedding and the text
 * after its name. */
static kiln_status place_text(const kiln_tokenizer *tok, window_builder *b, const char *s, size_t n, double weight)
{
    const size_t plen = sizeof embedding_prefix - 1;
    if (n == 0) return KILN_OK;
    if (n < plen || memcmp(s, embedding_prefix, plen) != 0) return tokenize_piece(tok, b, s, n, weight);
    char *rest = NULL;
    size_t name = 0, name_len = 0;
    TRY(embedding_leftover(s + plen, n - plen, &rest, &name, &name_len));
    kiln_status st = name_len ? place_embedding(b, s + plen + name, name_len, weight) : KILN_OK;
    if (st == KILN_OK) st = tokenize_piece(tok, b, rest, strlen(rest), weight);
    free(rest);
    return st;
}

/* A segment is cut before each " embedding:" or "\nembedding:" (the space
 * or line end dropped); the pieces are placed one by one. */
static kiln_status place_segment(const kiln_tokenizer *tok, window_builder *b, const kiln_prompt_segment *seg)
{
    const char *s = seg->text, *start = s;
    const size_t plen = sizeof embedding_prefix - 1;
    for (const char *p = s; *p;) {
        if ((*p == ' ' || *p == '\n') && strncmp(p + 1, embedding_prefix, plen) == 0) {
            TRY(place_text(tok, b, start, (size_t)(p - start), seg->weight));
            start = p + 1;
            p += 1 + plen;
        } else {
            p++;
        }
    }
    return place_text(tok, b, start, strlen(start), seg->weight);
}

void kiln_prompt_tokens_free(kiln_prompt_tokens *t)
{
    free(t->ids);
    free(t->weights);
    free(t->vectors);
    memset(t, 0, sizeof *t);
}

kiln_status kiln_prompt_tokenize(const kiln_tokenizer *tok, const char *prompt, int32_t pad_id,
                                 const kiln_prompt_embeddings *embeddings, kiln_prompt_tokens *out)
{
    memset(out, 0, sizeof *out);
    kiln_prompt_segment *segs;
    size_t n;
    TRY(kiln_prompt_parse(prompt, &segs, &n));
    window_builder b = {.out = out, .embeddings = embeddings, .pad_id = pad_id};
    kiln_status st = open_window(&b);
    for (size_t i = 0; i < n && st == KILN_OK; i++) st = place_segment(tok, &b, &segs[i]);
    kiln_prompt_segments_free(segs, n);
    if (st != KILN_OK) {
        kiln_prompt_tokens_free(out);
        return st;
    }
    close_window(&b);
    return KILN_OK;
}
