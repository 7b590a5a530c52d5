/* CLIP's BPE tokenizer: text cleaning (ftfy's fixes or transformers' basic
 * cleaner), CLIP's word pattern, byte-level symbols and merges by rank.
 *
 * Symbols are vocabulary ids from the start: byte b is byte_id[b] inside a
 * word and byte_id[b] + 256 at its end ("</w>"); merge r makes id 512 + r.
 * BPE then compares ids where the reference compares strings, which is the
 * same thing since every string has one id. */
#include "tokenizer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>
#define ZLIB_CONST
#include <zlib.h>

#include "status.h"

/* runtime/clip_vocab_blob.c */
extern const unsigned char kiln_clip_vocab_gz[] __attribute__((visibility("hidden")));
extern const unsigned char kiln_clip_vocab_gz_end[] __attribute__((visibility("hidden")));

/* The file lists more merges than CLIP was trained with; it uses these. */
#define N_MERGES (49152 - 256 - 2)
#define FIRST_MERGE_ID 512
#define MERGE_TABLE_BITS 17 /* 131072 slots for 48894 merges */
/* ftfy fixes text in segments of at most this many code points. */
#define FTFY_MAX_SEGMENT 1000000

typedef struct merge_slot {
    uint64_t pair;  /* (left + 1) << 32 | right; 0 marks an empty slot */
    int32_t rank;   /* lower merges first */
    int32_t merged; /* id of the merged symbol */
} merge_slot;

struct kiln_tokenizer {
    kiln_text_cleaning cleaning;
    int32_t byte_id[256]; /* id of byte b as a word-inner symbol */
    merge_slot *merges;   /* (1 << MERGE_TABLE_BITS) slots */
};

/* ---- vocabulary ---------------------------------------------------------- */

/* CLIP's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
 * the others for U+0100 upward in byte order. The vocabulary lists the
 * printable ones first, then the others, each in byte order. */
static bool byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static void byte_symbols(int32_t byte_id[256], uint32_t byte_char[256])
{
    int32_t next = 0;
    uint32_t shifted = 256;
    for (int b = 0; b < 256; b++)
        if (byte_is_printable(b)) byte_id[b] = next++, byte_char[b] = (uint32_t)b;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b)) byte_id[b] = next++, byte_char[b] = shifted++;
}

static uint64_t merge_key(int32_t left, int32_t right)
{
    return ((uint64_t)(uint32_t)(left + 1) << 32) | (uint32_t)right;
}

static merge_slot *merge_slot_for(merge_slot *slots, uint64_t key)
{
    const uint32_t mask = (1u << MERGE_TABLE_BITS) - 1;
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - MERGE_TABLE_BITS));
    while (slots[h].pair != 0 && slots[h].pair != key) h = (h + 1) & mask;
    return &slots[h];
}

/* Token strings (as the vocabulary file spells them) to ids, for building
 * the merge table only. Keys point into the inflated file or `base`. */
typedef struct name_slot {
    const char *name; /* NULL: empty */
    uint32_t len;
    int32_t id;
} name_slot;

#define NAME_TABLE_BITS 17

static name_slot *name_slot_for(name_slot *slots, const char *name, uint32_t len)
{
    const uint32_t mask = (1u << NAME_TABLE_BITS) - 1;
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
    h &= mask;
    while (slots[h].name && !(slots[h].len == len && memcmp(slots[h].name, name, len) == 0)) h = (h + 1) & mask;
    return &slots[h];
}

/* Later entries win, as in the reference's {token: index} dictionary. */
static void name_put(name_slot *slots, const char *name, uint32_t len, int32_t id)
{
    name_slot *s = name_slot_for(slots, name, len);
    *s = (name_slot){name, len, id};
}

static kiln_status inflate_vocab(char **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "CLIP vocabulary: cannot start zlib");
    zs.next_in = kiln_clip_vocab_gz;
    zs.avail_in = (uInt)(kiln_clip_vocab_gz_end - kiln_clip_vocab_gz);
    size_t cap = 4u << 20;
    char *buf = malloc(cap);
    int rc = Z_OK;
    while (buf && rc == Z_OK) {
        if (zs.total_out == cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) break;
            buf = grown;
            cap *= 2;
        }
        zs.next_out = (Bytef *)buf + zs.total_out;
        zs.avail_out = (uInt)(cap - zs.total_out);
        rc = inflate(&zs, Z_NO_FLUSH);
    }
    size_t len = zs.total_out;
    const char *msg = zs.msg ? zs.msg : "truncated";
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        if (rc == Z_OK || rc == Z_MEM_ERROR) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "CLIP vocabulary: out of memory");
        return kiln_fail(KILN_ERR_FORMAT, "CLIP vocabulary (linked in): bad gzip data: %s", msg);
    }
    *out = buf;
    *out_len = len;
    return KILN_OK;
}

typedef struct merge_line {
    const char *text; /* both halves, the space squeezed out */
    uint32_t len, split;
} merge_line;

/* Reads the merge lines "left right" that follow the header line, squeezing
 * each into "leftright" in place. */
static kiln_status read_merge_lines(char *text, size_t len, merge_line *lines)
{
    char *p = memchr(text, '\n', len);
    for (int r = 0; r < N_MERGES; r++) {
        if (!p) return kiln_fail(KILN_ERR_FORMAT, "CLIP vocabulary: %d merges, %d expected", r, N_MERGES);
        char *line = p + 1;
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end) end = text + len;
        char *space = memchr(line, ' ', (size_t)(end - line));
        if (!space || space == line || space + 1 == end || memchr(space + 1, ' ', (size_t)(end - space - 1)))
            return kiln_fail(KILN_ERR_FORMAT, "CLIP vocabulary: merge line %d is not \"left right\"", r + 1);
        memmove(space, space + 1, (size_t)(end - space - 1));
        lines[r] = (merge_line){line, (uint32_t)(end - line - 1), (uint32_t)(space - line)};
        p = end < text + len ? end : NULL;
    }
    return KILN_OK;
}

static kiln_status build_merges(kiln_tokenizer *tok, char *text, size_t len)
{
    uint32_t byte_char[256];
    byte_symbols(tok->byte_id, byte_char);
    merge_line *lines = malloc(N_MERGES * sizeof *lines);
    name_slot *names = calloc((size_t)1 << NAME_TABLE_BITS, sizeof *names);
    char base[256 * 6]; /* "c</w>" for every byte symbol c; "c" is its prefix */
    kiln_status st = KILN_OK;
    if (!lines || !names) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "CLIP vocabulary: out of memory");
        goto done;
    }
    st = read_merge_lines(text, len, lines);
    if (st != KILN_OK) goto done;

    char *b = base;
    for (int i = 0; i < 256; i++) {
        uint32_t n = (uint32_t)utf8proc_encode_char((utf8proc_int32_t)byte_char[i], (utf8proc_uint8_t *)b);
        memcpy(b + n, "</w>", 4);
        name_put(names, b, n, tok->byte_id[i]);
        name_put(names, b, n + 4, tok->byte_id[i] + 256);
        b += n + 4;
    }
    for (int r = 0; r < N_MERGES; r++) name_put(names, lines[r].text, lines[r].len, FIRST_MERGE_ID + r);

    for (int r = 0; r < N_MERGES; r++) {
        const merge_line *m = &lines[r];
        const name_slot *left = name_slot_for(names, m->text, m->split);
        const name_slot *right = name_slot_for(names, m->text + m->split, m->len - m->split);
        if (!left->name || !right->name) {
            st = kiln_fail(KILN_ERR_FORMAT, "CLIP vocabulary: merge %d joins a symbol no earlier line makes", r + 1);
            goto done;
        }
        uint64_t key = merge_key(left->id, right->id);
        merge_slot *slot = merge_slot_for(tok->merges, key);
        *slot = (merge_slot){key, r, name_slot_for(names, m->text, m->len)->id};
    }
done:
    free(names);
    free(lines);
    return st;
}

kiln_status kiln_tokenizer_create_with(kiln_text_cleaning cleaning, kiln_tokenizer **out)
{
    *out = NULL;
    if (cleaning != KILN_TEXT_CLEAN_FTFY && cleaning != KILN_TEXT_CLEAN_BASIC)
        return kiln_fail(KILN_ERR_INVALID_ARG, "tokenizer: unknown text cleaning %d", (int)cleaning);
    kiln_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok) tok->merges = calloc((size_t)1 << MERGE_TABLE_BITS, sizeof *tok->merges);
    if (!tok || !tok->merges) {
        kiln_tokenizer_free(tok);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    tok->cleaning = cleaning;
    char *text = NULL;
    size_t len = 0;
    kiln_status st = inflate_vocab(&text, &len);
    if (st == KILN_OK) {
        st = build_merges(tok, text, len);
        free(text);
    }
    if (st != KILN_OK) {
        kiln_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return KILN_OK;
}

kiln_status kiln_tokenizer_create(kiln_tokenizer **out) { return kiln_tokenizer_create_with(KILN_TEXT_CLEAN_FTFY, out); }

void kiln_tokenizer_free(kiln_tokenizer *tok)
{
    if (!tok) return;
    free(tok->merges);
    free(tok);
}

/* ---- code point buffers --------------------------------------------------- */

typedef struct cp_buf {
    uint32_t *cp;
    size_t len, cap;
} cp_buf;

/* Always leaves storage allocated, so that copies of nothing have a target. */
static kiln_status cp_reserve(cp_buf *b, size_t extra)
{
    if (b->cp && b->len + extra <= b->cap) return KILN_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    uint32_t *grown = realloc(b->cp, cap * sizeof *grown);
    if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    b->cp = grown;
    b->cap = cap;
    return KILN_OK;
}

/* Empties b for writing. */
static kiln_status cp_start(cp_buf *b)
{
    b->len = 0;
    return cp_reserve(b, 0);
}

static kiln_status cp_push(cp_buf *b, uint32_t c)
{
    TRY(cp_reserve(b, 1));
    b->cp[b->len++] = c;
    return KILN_OK;
}

/* Appends the code points of valid UTF-8 (table data). */
static kiln_status cp_push_utf8(cp_buf *b, const char *s)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_int32_t c;
    for (utf8proc_ssize_t n; *p; p += n) {
        n = utf8proc_iterate(p, -1, &c);
        TRY(cp_push(b, (uint32_t)c));
    }
    return KILN_OK;
}

static kiln_status cp_to_utf8(const uint32_t *cp, size_t n, uint8_t **out, size_t *len)
{
    uint8_t *s = malloc(n * 4 + 1);
    if (!s) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp[i], s + k);
    s[k] = 0;
    *out = s;
    *len = k;
    return KILN_OK;
}

static bool cp_equal(const cp_buf *a, const cp_buf *b)
{
    return a->len == b->len && memcmp(a->cp, b->cp, a->len * sizeof *a->cp) == 0;
}

static void cp_swap(cp_buf *a, cp_buf *b)
{
    cp_buf t = *a;
    *a = *b;
    *b = t;
}

/* ---- Unicode properties as Python sees them ------------------------------ */

/* str.isspace(): bidirectional class WS, B or S, or category Zs. */
bool kiln_py_isspace(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_letter(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: return true;
    default: return false;
    }
}

static bool is_number(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return true;
    default: return false;
    }
}

/* Unicode's Case_Ignorable: marks, format characters, modifier letters and
 * symbols, and the Word_Break MidLetter / MidNumLet / Single_Quote set. */
static bool is_case_ignorable(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK: return true;
    default: break;
    }
    static const uint32_t mid[] = {0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019,
                                   0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
        if (c == mid[i]) return true;
    return false;
}

/* Cased: a letter with case, or any character with a case mapping. */
static bool is_cased(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

/* Python's str.lower(): simple mappings, except that U+0130 becomes "i̇" and
 * capital sigma becomes final sigma after a cased letter that ends a word. */
static kiln_status python_lower(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        uint32_t c = in->cp[i];
        if (c == 0x130) {
            TRY(cp_push(out, 'i'));
            TRY(cp_push(out, 0x307));
        } else if (c == 0x3A3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(in->cp[j - 1])) j--;
            bool final = j > 0 && is_cased(in->cp[j - 1]);
            j = i + 1;
            while (j < in->len && is_case_ignorable(in->cp[j])) j++;
            if (j < in->len && is_cased(in->cp[j])) final = false;
            TRY(cp_push(out, final ? 0x3C2 : 0x3C3));
        } else {
            TRY(cp_push(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c)));
        }
    }
    return KILN_OK;
}

/* ' '.join(text.split()): runs of whitespace become one space, ends trimmed. */
static kiln_status collapse_whitespace(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    bool gap = false;
    for (size_t i = 0; i < in->len; i++) {
        if (kiln_py_isspace(in->cp[i])) {
            gap = out->len > 0;
            continue;
        }
        if (gap) TRY(cp_push(out, ' '));
        gap = false;
        TRY(cp_push(out, in->cp[i]));
    }
    return KILN_OK;
}

static kiln_status nfc(const cp_buf *in, cp_buf *out)
{
    uint8_t *s = NULL;
    size_t len = 0;
    TRY(cp_to_utf8(in->cp, in->len, &s, &len));
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_ssize_t n = utf8proc_decompose(s, (utf8proc_ssize_t)len, NULL, 0, opt);
    kiln_status st = KILN_OK;
    if (n < 0) st = kiln_fail(KILN_ERR_INVALID_ARG, "tokenizer: NFC: %s", utf8proc_errmsg(n));
    if (st == KILN_OK) st = cp_reserve(out, (size_t)n);
    if (st == KILN_OK) {
        utf8proc_int32_t *buf = (utf8proc_int32_t *)out->cp;
        utf8proc_decompose(s, (utf8proc_ssize_t)len, buf, n, opt);
        out->len = (size_t)utf8proc_normalize_utf32(buf, n, opt);
    }
    free(s);
    return st;
}

/* ---- ftfy's fixes ---------------------------------------------------------- */

/* Windows-1252 for 0x80..0x9F; its five holes keep their Latin-1 meaning. */
static const uint16_t cp1252_c1[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

typedef struct html_entity {
    const char *name; /* "&amp;" */
    const char *value;
} html_entity;

static const html_entity html_entities[] = {
#include "html_entities.inc"
};

static int entity_cmp(const void *key, const void *item)
{
    return strcmp(key, ((const html_entity *)item)->name);
}

/* What Python's html.unescape makes of "&#<digits>;" / "&#x<hex>;":
 * -1 for nothing (an invalid code point it drops). */
static int64_t numeric_reference(uint64_t num)
{
    if (num == 0) return 0xFFFD;
    if (num == 0x0D) return '\r';
    if (num >= 0x80 && num <= 0x9F) return cp1252_c1[num - 0x80];
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return 0xFFFD;
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
        (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return -1;
    return (int64_t)num;
}

/* Replaces one "&...;" (ref, n code points, all ASCII) if ftfy would:
 * a named entity from the table, or a numeric reference whose digits run
 * right up to the semicolon. Returns false to keep the text. */
static kiln_status html_reference(const uint32_t *ref, size_t n, cp_buf *out, bool *replaced)
{
    char name[32];
    for (size_t i = 0; i < n; i++) name[i] = (char)ref[i];
    name[n] = 0;
    *replaced = false;
    const html_entity *e = bsearch(name, html_entities, sizeof html_entities / sizeof html_entities[0],
                                   sizeof html_entities[0], entity_cmp);
    if (e) {
        *replaced = true;
        return cp_push_utf8(out, e->value);
    }
    if (name[1] != '#') return KILN_OK;
    bool hex = name[2] == 'x' || name[2] == 'X';
    const char *d = name + (hex ? 3 : 2);
    if (*d == ';') return KILN_OK;
    uint64_t num = 0;
    for (; *d != ';'; d++) {
        int v;
        if (*d >= '0' && *d <= '9') v = *d - '0';
        else if (hex && *d >= 'a' && *d <= 'f') v = *d - 'a' + 10;
        else if (hex && *d >= 'A' && *d <= 'F') v = *d - 'A' + 10;
        else return KILN_OK;
        num = num > 0x10FFFF ? num : num * (hex ? 16 : 10) + (uint64_t)v;
    }
    *replaced = true;
    int64_t c = numeric_reference(num);
    return c < 0 ? KILN_OK : cp_push(out, (uint32_t)c);
}

static bool is_ascii_letter(uint32_t c) { return c < 128 && (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_ascii_alnum(uint32_t c) { return (c >= '0' && c <= '9') || is_ascii_letter(c); }

/* Every match of &#?[0-9A-Za-z]{1,24}; that names something is decoded. */
static kiln_status unescape_html(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len;) {
        if (in->cp[i] == '&') {
            size_t j = i + 1 + (i + 1 < in->len && in->cp[i + 1] == '#');
            size_t k = j;
            while (k < in->len && k - j <= 24 && is_ascii_alnum(in->cp[k])) k++;
            if (k > j && k - j <= 24 && k < in->len && in->cp[k] == ';') {
                bool replaced;
                TRY(html_reference(in->cp + i, k + 1 - i, out, &replaced));
                if (replaced) {
                    i = k + 1;
                    continue;
                }
            }
        }
        TRY(cp_push(out, in->cp[i++]));
    }
    return KILN_OK;
}

static kiln_status fix_c1_controls(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        uint32_t c = in->cp[i];
        TRY(cp_push(out, c >= 0x80 && c <= 0x9F ? cp1252_c1[c - 0x80] : c));
    }
    return KILN_OK;
}

static kiln_status fix_latin_ligatures(const cp_buf *in, cp_buf *out)
{
    static const struct { uint32_t c; const char *to; } ligatures[] = {
        {0x132, "IJ"}, {0x133, "ij"}, {0x149, "\u02BCn"}, {0x1C4, "D\u017D"}, {0x1C5, "D\u017E"},
        {0x1C6, "d\u017E"}, {0x1C7, "LJ"}, {0x1C8, "Lj"}, {0x1C9, "lj"}, {0x1CA, "NJ"}, {0x1CB, "Nj"},
        {0x1CC, "nj"}, {0x1F1, "DZ"}, {0x1F2, "Dz"}, {0x1F3, "dz"}, {0xFB00, "ff"}, {0xFB01, "fi"},
        {0xFB02, "fl"}, {0xFB03, "ffi"}, {0xFB04, "ffl"}, {0xFB05, "\u017Ft"}, {0xFB06, "st"},
    };
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        const char *to = NULL;
        for (size_t k = 0; k < sizeof ligatures / sizeof ligatures[0]; k++)
            if (ligatures[k].c == in->cp[i]) to = ligatures[k].to;
        TRY(to ? cp_push_utf8(out, to) : cp_push(out, in->cp[i]));
    }
    return KILN_OK;
}

/* Full- and half-width forms (U+FF01..U+FFEF) become their NFKC form, and
 * the ideographic space a plain one. */
static kiln_status fix_character_width(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        uint32_t c = in->cp[i];
        if (c == 0x3000) {
            TRY(cp_push(out, ' '));
        } else if (c >= 0xFF01 && c <= 0xFFEF) {
            utf8proc_uint8_t one[5] = {0};
            utf8proc_encode_char((utf8proc_int32_t)c, one);
            utf8proc_uint8_t *wide = utf8proc_NFKC(one);
            if (!wide) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
            kiln_status st = cp_push_utf8(out, (const char *)wide);
            free(wide);
            TRY(st);
        } else {
            TRY(cp_push(out, c));
        }
    }
    return KILN_OK;
}

static kiln_status uncurl_quotes(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        uint32_t c = in->cp[i];
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c >= 0x201C && c <= 0x201F) c = '"';
        TRY(cp_push(out, c));
    }
    return KILN_OK;
}

/* CRLF, CR, U+2028, U+2029 and U+0085 all become LF. */
static kiln_status fix_line_breaks(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        uint32_t c = in->cp[i];
        if (c == '\r' && i + 1 < in->len && in->cp[i + 1] == '\n') continue;
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
        TRY(cp_push(out, c));
    }
    return KILN_OK;
}

static bool is_decimal(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND; }

/* ANSI escapes: ESC [ (digits and semicolons) letter. */
static kiln_status remove_terminal_escapes(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        if (in->cp[i] == 0x1B && i + 1 < in->len && in->cp[i + 1] == '[') {
            size_t j = i + 2;
            while (j < in->len && (in->cp[j] == ';' || is_decimal(in->cp[j]))) j++;
            if (j < in->len && is_ascii_letter(in->cp[j])) {
                i = j;
                continue;
            }
        }
        TRY(cp_push(out, in->cp[i]));
    }
    return KILN_OK;
}

static kiln_status remove_control_chars(const cp_buf *in, cp_buf *out)
{
    TRY(cp_start(out));
    for (size_t i = 0; i < in->len; i++) {
        uint32_t c = in->cp[i];
        if (c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
            c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
            continue;
        TRY(cp_push(out, c));
    }
    return KILN_OK;
}

typedef kiln_status (*text_fix)(const cp_buf *in, cp_buf *out);

/* ftfy's fix_and_explain on one segment: every fix in ftfy's order, then
 * NFC, again and again until the text stops changing. */
static kiln_status ftfy_segment(cp_buf *text, bool html, cp_buf *tmp, cp_buf *before)
{
    static const text_fix fixes[] = {fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
                                     fix_line_breaks, remove_terminal_escapes, remove_control_chars, nfc};
    do {
        before->len = 0;
        TRY(cp_reserve(before, text->len));
        memcpy(before->cp, text->cp, text->len * sizeof *text->cp);
        before->len = text->len;
        if (html) {
            TRY(unescape_html(text, tmp));
            cp_swap(text, tmp);
        }
        for (size_t f = 0; f < sizeof fixes / sizeof fixes[0]; f++) {
            TRY(fixes[f](text, tmp));
            cp_swap(text, tmp);
        }
    } while (!cp_equal(text, before));
    return KILN_OK;
}

/* ftfy.fix_text: lines (each with its newline; very long ones cut) fixed
 * one by one; HTML entities are left alone from the first line holding a
 * '<' on, since that text may be HTML itself. */
static kiln_status ftfy_fix_text(const cp_buf *in, cp_buf *out)
{
    cp_buf seg = {0}, tmp = {0}, before = {0};
    kiln_status st = KILN_OK;
    bool html = true;
    TRY(cp_start(out));
    for (size_t pos = 0; pos < in->len && st == KILN_OK;) {
        size_t end = pos;
        while (end < in->len && end - pos < FTFY_MAX_SEGMENT && in->cp[end++] != '\n') {}
        seg.len = 0;
        st = cp_reserve(&seg, end - pos);
        if (st != KILN_OK) break;
        memcpy(seg.cp, in->cp + pos, (end - pos) * sizeof *seg.cp);
        seg.len = end - pos;
        for (size_t i = 0; i < seg.len; i++)
            if (seg.cp[i] == '<') html = false;
        st = ftfy_segment(&seg, html, &tmp, &before);
        if (st == KILN_OK) st = cp_reserve(out, seg.len);
        if (st == KILN_OK) {
            memcpy(out->cp + out->len, seg.cp, seg.len * sizeof *seg.cp);
            out->len += seg.len;
        }
        pos = end;
    }
    free(seg.cp);
    free(tmp.cp);
    free(before.cp);
    return st;
}

/* ---- transformers' basic cleaner ------------------------------------------- */

static bool is_cjk_ideograph(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Drops NUL, U+FFFD and every "other" character (Cc Cf Cs Co Cn) but tab
 * and line ends, turns spaces (Zs, tab, CR, LF) into ' ', puts spaces
 * around CJK ideographs, then NFC. */
static kiln_status basic_clean(const cp_buf *in, cp_buf *out)
{
    cp_buf tmp = {0};
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < in->len && st == KILN_OK; i++) {
        uint32_t c = in->cp[i];
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
        bool line = c == '\t' || c == '\n' || c == '\r';
        if (c == 0 || c == 0xFFFD) continue;
        if (!line && (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                      cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN))
            continue;
        if (line || c == ' ' || cat == UTF8PROC_CATEGORY_ZS) {
            st = cp_push(&tmp, ' ');
        } else if (is_cjk_ideograph(c)) {
            st = cp_push(&tmp, ' ');
            if (st == KILN_OK) st = cp_push(&tmp, c);
            if (st == KILN_OK) st = cp_push(&tmp, ' ');
        } else {
            st = cp_push(&tmp, c);
        }
    }
    if (st == KILN_OK) st = nfc(&tmp, out);
    free(tmp.cp);
    return st;
}

/* ---- words and BPE ----------------------------------------------------------- */

typedef struct encoder {
    const kiln_tokenizer *tok;
    int32_t *ids; /* the result */
    size_t count, cap;
    int32_t *syms; /* symbols of the word being merged */
    uint8_t *bytes;
    size_t word_cap;
    cp_buf text, tmp;
} encoder;

static kiln_status push_id(encoder *e, int32_t id)
{
    if (e->count == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *grown = realloc(e->ids, cap * sizeof *grown);
        if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        e->ids = grown;
        e->cap = cap;
    }
    e->ids[e->count++] = id;
    return KILN_OK;
}

/* Merges the word's byte symbols: each round joins every occurrence (left to
 * right) of the adjacent pair with the lowest rank, until no pair merges. */
static kiln_status bpe_word(encoder *e, const uint8_t *bytes, size_t n)
{
    int32_t *s = e->syms;
    for (size_t i = 0; i < n; i++) s[i] = e->tok->byte_id[bytes[i]];
    s[n - 1] += 256;
    size_t len = n;
    while (len > 1) {
        const merge_slot *best = NULL;
        for (size_t i = 0; i + 1 < len; i++) {
            const merge_slot *m = merge_slot_for(e->tok->merges, merge_key(s[i], s[i + 1]));
            if (m->pair && (!best || m->rank < best->rank)) best = m;
        }
        if (!best) break;
        int32_t left = (int32_t)(best->pair >> 32) - 1, right = (int32_t)(uint32_t)best->pair;
        size_t j = 0;
        for (size_t i = 0; i < len;) {
            if (i + 1 < len && s[i] == left && s[i + 1] == right) {
                s[j++] = best->merged;
                i += 2;
            } else {
                s[j++] = s[i++];
            }
        }
        len = j;
    }
    for (size_t i = 0; i < len; i++) TRY(push_id(e, s[i]));
    return KILN_OK;
}

static kiln_status encode_word(encoder *e, const uint32_t *cp, size_t n)
{
    if (n * 4 > e->word_cap) {
        size_t cap = n * 4 * 2;
        int32_t *syms = realloc(e->syms, cap * sizeof *syms);
        if (syms) e->syms = syms;
        uint8_t *bytes = realloc(e->bytes, cap);
        if (bytes) e->bytes = bytes;
        if (!syms || !bytes) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        e->word_cap = cap;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp[i], e->bytes + len);
    return bpe_word(e, e->bytes, len);
}

/* Does c match ASCII `a` under the pattern's IGNORECASE? Simple case folding
 * also takes U+017F LONG S for s. */
static bool folds_to(uint32_t c, char a)
{
    if (c == (uint8_t)a) return true;
    if (a >= 'a' && a <= 'z' && c == (uint32_t)(a - 32)) return true;
    return a == 's' && c == 0x17F;
}

static size_t match_literal(const uint32_t *cp, size_t n, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (k >= n || !folds_to(cp[k], lit[k])) return 0;
    return k;
}

/* Characters no alternative of the pattern matches, skipped between words:
 * whitespace, and U+0345 (a mark, but under IGNORECASE the negated class
 * also rejects it, since its upper case is the letter U+0399). */
static bool outside_words(uint32_t c) { return kiln_py_isspace(c) || c == 0x345; }

/* CLIP's pattern, first alternative that matches at each position wins:
 * <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | \p{L}+ | \p{N} |
 * [^\s\p{L}\p{N}]+ */
static kiln_status encode_words(encoder *e, const uint32_t *cp, size_t n)
{
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = 0; i < n;) {
        size_t len;
        if ((len = match_literal(cp + i, n - i, "<|startoftext|>"))) {
            TRY(push_id(e, KILN_CLIP_BOS));
            i += len;
            continue;
        }
        if ((len = match_literal(cp + i, n - i, "<|endoftext|>"))) {
            TRY(push_id(e, KILN_CLIP_EOS));
            i += len;
            continue;
        }
        len = 0;
        for (size_t k = 0; k < 7 && !len; k++) len = match_literal(cp + i, n - i, contractions[k]);
        if (!len) {
            uint32_t c = cp[i];
            if (is_letter(c)) {
                while (i + len < n && is_letter(cp[i + len])) len++;
            } else if (is_number(c)) {
                len = 1;
            } else if (!outside_words(c)) {
                while (i + len < n && !outside_words(cp[i + len]) && !is_letter(cp[i + len]) && !is_number(cp[i + len]))
                    len++;
            }
        }
        if (len) TRY(encode_word(e, cp + i, len));
        i += len ? len : 1;
    }
    return KILN_OK;
}

/* One piece of text between literal special tokens: decode, clean, collapse
 * whitespace, lower-case, cut into words, BPE. */
static kiln_status encode_piece(encoder *e, const char *s, size_t len)
{
    if (len == 0) return KILN_OK;
    TRY(cp_start(&e->text));
    utf8proc_int32_t c;
    for (size_t i = 0; i < len;) {
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        TRY(cp_push(&e->text, (uint32_t)c));
        i += (size_t)n;
    }
    if (e->tok->cleaning == KILN_TEXT_CLEAN_FTFY) TRY(ftfy_fix_text(&e->text, &e->tmp));
    else TRY(basic_clean(&e->text, &e->tmp));
    TRY(collapse_whitespace(&e->tmp, &e->text));
    TRY(python_lower(&e->text, &e->tmp));
    return encode_words(e, e->tmp.cp, e->tmp.len);
}

bool kiln_utf8_valid(const char *text, size_t *bad_at)
{
    const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)text;
    size_t len = strlen(text);
    utf8proc_int32_t c;
    for (size_t i = 0; i < len;) {
        utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &c);
        if (n < 0) {
            *bad_at = i;
            return false;
        }
        i += (size_t)n;
    }
    return true;
}

/* The literal special tokens are cut out before any cleaning, as
 * transformers does with its added tokens. */
static kiln_status encode_text(encoder *e, const char *text)
{
    size_t bad_at;
    if (!kiln_utf8_valid(text, &bad_at))
        return kiln_fail(KILN_ERR_INVALID_ARG, "tokenizer: text is not valid UTF-8 at byte %zu", bad_at);
    for (const char *p = text;;) {
        const char *bos = strstr(p, "<|startoftext|>"), *eos = strstr(p, "<|endoftext|>");
        const char *hit = bos && (!eos || bos < eos) ? bos : eos;
        TRY(encode_piece(e, p, hit ? (size_t)(hit - p) : strlen(p)));
        if (!hit) return KILN_OK;
        TRY(push_id(e, hit == bos ? KILN_CLIP_BOS : KILN_CLIP_EOS));
        p = hit + (hit == bos ? strlen("<|startoftext|>") : strlen("<|endoftext|>"));
    }
}

kiln_status kiln_tokenizer_encode(const kiln_tokenizer *tok, const char *text, int32_t **ids, size_t *count)
{
    *ids = NULL;
    *count = 0;
    encoder e = {.tok = tok};
    kiln_status st = encode_text(&e, text);
    free(e.syms);
    free(e.bytes);
    free(e.text.cp);
    free(e.tmp.cp);
    if (st != KILN_OK) {
        free(e.ids);
        return st;
    }
    *ids = e.ids;
    *count = e.count;
    return KILN_OK;
}

kiln_status kiln_tokenizer_encode_padded(const kiln_tokenizer *tok, const char *text, int32_t ids[KILN_CLIP_CONTEXT])
{
    int32_t *body;
    size_t n;
    TRY(kiln_tokenizer_encode(tok, text, &body, &n));
    if (n > KILN_CLIP_CONTEXT - 2) n = KILN_CLIP_CONTEXT - 2;
    ids[0] = KILN_CLIP_BOS;
    if (n) memcpy(ids + 1, body, n * sizeof *ids);
    for (size_t i = n + 1; i < KILN_CLIP_CONTEXT; i++) ids[i] = KILN_CLIP_EOS;
    free(body);
    return KILN_OK;
}
