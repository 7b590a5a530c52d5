/* T5's SentencePiece unigram tokenizer: the model file's protobuf read by
 * hand, SentencePiece's normalizer (precompiled character map, whitespace),
 * its unigram Viterbi, and transformers' T5Tokenizer around them.
 *
 * Where SentencePiece's choices are arbitrary (which of two equal splits
 * wins, float or double sums, what a user-defined piece scores), this file
 * makes the ones the sentencepiece 0.2.3 release makes, so that near-ties
 * break as they do there. Those were measured, not read: its source is not
 * public here. tests/data/spm_tokenizer's hand-made models pin them, and a
 * random differential run (thousands of random models and texts against
 * the library) found no difference. */
#include "spm_tokenizer.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "file.h"
#include "gguf.h"
#include "status.h"
#include "tokenizer.h" /* kiln_py_isspace */

/* A real spiece.model is under 1 MB; this only keeps a wrong path from
 * filling memory (and every piece's length within 32 bits). */
#define MAX_MODEL_BYTES ((size_t)1 << 30)
_Static_assert(MAX_MODEL_BYTES <= UINT32_MAX, "piece lengths are kept in 32 bits");
/* SentencePiece scores a character no piece covers as the lowest piece
 * score minus this. */
#define UNK_PENALTY 10.0f
/* SentencePiece's normalizer keeps the first this-many character-map
 * matches of a prefix and uses the longest of them. */
#define CHARSMAP_MAX_RESULTS 32
/* T5Tokenizer's sentinels <extra_id_0> ... <extra_id_99>. */
#define T5_EXTRA_IDS 100
/* Trie edges pack (node << 8 | byte) + 1 into 32 bits. */
#define MAX_TRIE_NODES ((1u << 24) - 1)

/* ModelProto.SentencePiece.Type */
enum piece_type {
    PIECE_NORMAL = 1,
    PIECE_UNKNOWN = 2,
    PIECE_CONTROL = 3,
    PIECE_USER_DEFINED = 4,
    PIECE_UNUSED = 5,
    PIECE_BYTE = 6,
};

/* TrainerSpec.ModelType */
enum model_type { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };

typedef struct spm_piece {
    const char *text; /* into the file's bytes, not NUL-terminated */
    uint32_t len;
    float score;
    uint8_t type;
} spm_piece;

/* One edge of the piece trie in an open-addressing table. */
typedef struct edge_slot {
    uint32_t key;   /* (parent << 8 | byte) + 1; 0 marks an empty slot */
    uint32_t child;
} edge_slot;

struct kiln_spm {
    char *path; /* for messages about a corrupt character map found while encoding */
    uint8_t *file;
    spm_piece *pieces;
    int32_t n_pieces;
    int32_t unk_id;                  /* the UNKNOWN piece: what the Viterbi emits */
    int32_t eos_id, pad_id, unk_literal_id; /* "</s>", "<pad>", "<unk>" as T5Tokenizer looks them up */
    float min_score;                 /* the lowest NORMAL piece score (FLT_MAX if none) */

    /* NORMAL and USER_DEFINED pieces as a byte trie: node 0 is the root,
     * node_piece[v] the piece ending at node v or -1. Each Viterbi step
     * walks it once from a character to find every piece starting there. */
    int32_t *node_piece;
    uint32_t n_nodes;
    edge_slot *edges;
    uint32_t edge_bits;
    bool has_user_defined;

    /* Every piece by its text (id + 1; 0 marks an empty slot): how
     * T5Tokenizer turns the text of an unknown run back into an id. */
    int32_t *names;
    uint32_t name_mask;

    /* The precompiled character map: a darts-clone double array of
     * little-endian 32-bit units, then NUL-terminated replacements. */
    const uint8_t *charsmap_units;
    size_t n_charsmap_units;
    const char *replacements;
    size_t replacements_len;
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
};

/* ---- protobuf ------------------------------------------------------------- */

typedef struct pb_reader {
    const uint8_t *p, *end;
    const uint8_t *file; /* for byte offsets in messages */
    const char *path;
} pb_reader;

typedef struct pb_field {
    uint32_t number;
    uint32_t wire;
    size_t at;          /* file offset of the tag */
    uint64_t value;     /* varint, fixed32 and fixed64 fields */
    const uint8_t *data; /* length-delimited fields */
    size_t len;
} pb_field;

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };

static size_t pb_offset(const pb_reader *r) { return (size_t)(r->p - r->file); }

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static kiln_status pb_truncated(const pb_reader *r, const char *what)
{
    return kiln_fail(KILN_ERR_FORMAT, "%s: truncated or not a SentencePiece model: %s at byte %zu runs past its end",
                     r->path, what, pb_offset(r));
}

static kiln_status pb_varint(pb_reader *r, uint64_t *out, const char *what)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p == r->end) return pb_truncated(r, what);
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return KILN_OK;
        }
    }
    return kiln_fail(KILN_ERR_FORMAT, "%s: not a SentencePiece model: a varint longer than 10 bytes ends at byte %zu",
                     r->path, pb_offset(r));
}

/* The next field of the message r reads: its tag and payload. */
static kiln_status pb_next(pb_reader *r, pb_field *f)
{
    uint64_t tag = 0;
    f->at = pb_offset(r);
    TRY(pb_varint(r, &tag, "a field tag"));
    if (tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF)
        return kiln_fail(KILN_ERR_FORMAT, "%s: not a SentencePiece model: field number %llu at byte %zu", r->path,
                         (unsigned long long)(tag >> 3), f->at);
    f->number = (uint32_t)(tag >> 3);
    f->wire = (uint32_t)(tag & 7);
    f->value = 0;
    f->data = NULL;
    f->len = 0;
    switch (f->wire) {
    case WIRE_VARINT:
        return pb_varint(r, &f->value, "a varint");
    case WIRE_FIXED64:
        if (r->end - r->p < 8) return pb_truncated(r, "a 64-bit field");
        f->value = load_le32(r->p) | (uint64_t)load_le32(r->p + 4) << 32;
        r->p += 8;
        return KILN_OK;
    case WIRE_BYTES: {
        uint64_t len = 0;
        TRY(pb_varint(r, &len, "a length"));
        if (len > (uint64_t)(r->end - r->p)) return pb_truncated(r, "a length-delimited field");
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return KILN_OK;
    }
    case WIRE_FIXED32:
        if (r->end - r->p < 4) return pb_truncated(r, "a 32-bit field");
        f->value = load_le32(r->p);
        r->p += 4;
        return KILN_OK;
    default: /* groups (3, 4), which SentencePiece never writes, and the undefined 6, 7 */
        return kiln_fail(KILN_ERR_FORMAT, "%s: not a SentencePiece model: field %u at byte %zu has wire type %u",
                         r->path, f->number, f->at, f->wire);
    }
}

static kiln_status pb_expect(const pb_reader *r, const pb_field *f, uint32_t wire, const char *what)
{
    if (f->wire == wire) return KILN_OK;
    return kiln_fail(KILN_ERR_FORMAT, "%s: not a SentencePiece model: %s (field %u at byte %zu) has wire type %u, not %u",
                     r->path, what, f->number, f->at, f->wire, wire);
}

/* A reader over a length-delimited field's payload. */
static pb_reader pb_sub(const pb_reader *r, const pb_field *f)
{
    return (pb_reader){f->data, f->data + f->len, r->file, r->path};
}

/* ---- reading the model ------------------------------------------------------ */

typedef struct model_fields {
    bool has_trainer_spec, has_normalizer_spec;
    uint64_t model_type;
    bool byte_fallback, whitespace_as_suffix;
    int32_t trainer_unk_id, trainer_bos_id, trainer_eos_id, trainer_pad_id;
    const uint8_t *charsmap;
    size_t charsmap_len;
    size_t pieces_cap;
} model_fields;

static kiln_status add_piece(kiln_spm *spm, model_fields *m, const pb_reader *r, const pb_field *field)
{
    if ((size_t)spm->n_pieces == m->pieces_cap) {
        size_t cap = m->pieces_cap ? m->pieces_cap * 2 : 1024;
        spm_piece *grown = realloc(spm->pieces, cap * sizeof *grown);
        if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", r->path);
        spm->pieces = grown;
        m->pieces_cap = cap;
    }
    pb_reader sub = pb_sub(r, field);
    spm_piece *piece = &spm->pieces[spm->n_pieces];
    *piece = (spm_piece){.text = NULL, .len = 0, .score = 0.0f, .type = PIECE_NORMAL};
    while (sub.p < sub.end) {
        pb_field f;
        TRY(pb_next(&sub, &f));
        if (f.number == 1) {
            TRY(pb_expect(&sub, &f, WIRE_BYTES, "a piece's text"));
            piece->text = (const char *)f.data;
            piece->len = (uint32_t)f.len;
        } else if (f.number == 2) {
            TRY(pb_expect(&sub, &f, WIRE_FIXED32, "a piece's score"));
            uint32_t bits = (uint32_t)f.value;
            memcpy(&piece->score, &bits, sizeof piece->score);
        } else if (f.number == 3) {
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "a piece's type"));
            if (f.value < PIECE_NORMAL || f.value > PIECE_BYTE)
                return kiln_fail(KILN_ERR_FORMAT, "%s: piece %d has unknown type %llu", r->path, spm->n_pieces,
                                 (unsigned long long)f.value);
            piece->type = (uint8_t)f.value;
        }
    }
    if (piece->len == 0) return kiln_fail(KILN_ERR_FORMAT, "%s: piece %d is empty", r->path, spm->n_pieces);
    if (!isfinite(piece->score))
        return kiln_fail(KILN_ERR_FORMAT, "%s: piece %d (\"%.*s\") has a score that is not a finite number", r->path,
                         spm->n_pieces, (int)(piece->len < 40 ? piece->len : 40), piece->text);
    if (spm->n_pieces == INT32_MAX - T5_EXTRA_IDS)
        return kiln_fail(KILN_ERR_FORMAT, "%s: too many pieces", r->path);
    spm->n_pieces++;
    return KILN_OK;
}

/* int32 fields travel as their 64-bit two's complement. */
static int32_t pb_int32(uint64_t v) { return (int32_t)(uint32_t)v; }

static kiln_status read_trainer_spec(model_fields *m, const pb_reader *r, const pb_field *field)
{
    pb_reader sub = pb_sub(r, field);
    m->has_trainer_spec = true;
    while (sub.p < sub.end) {
        pb_field f;
        TRY(pb_next(&sub, &f));
        switch (f.number) {
        case 3:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.model_type"));
            m->model_type = f.value;
            break;
        case 24:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.treat_whitespace_as_suffix"));
            m->whitespace_as_suffix = f.value != 0;
            break;
        case 35:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.byte_fallback"));
            m->byte_fallback = f.value != 0;
            break;
        case 40:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.unk_id"));
            m->trainer_unk_id = pb_int32(f.value);
            break;
        case 41:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.bos_id"));
            m->trainer_bos_id = pb_int32(f.value);
            break;
        case 42:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.eos_id"));
            m->trainer_eos_id = pb_int32(f.value);
            break;
        case 43:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "trainer_spec.pad_id"));
            m->trainer_pad_id = pb_int32(f.value);
            break;
        default:
            break;
        }
    }
    return KILN_OK;
}

static kiln_status read_normalizer_spec(kiln_spm *spm, model_fields *m, const pb_reader *r, const pb_field *field)
{
    pb_reader sub = pb_sub(r, field);
    m->has_normalizer_spec = true;
    while (sub.p < sub.end) {
        pb_field f;
        TRY(pb_next(&sub, &f));
        switch (f.number) {
        case 2:
            TRY(pb_expect(&sub, &f, WIRE_BYTES, "normalizer_spec.precompiled_charsmap"));
            m->charsmap = f.data;
            m->charsmap_len = f.len;
            break;
        case 3:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "normalizer_spec.add_dummy_prefix"));
            spm->add_dummy_prefix = f.value != 0;
            break;
        case 4:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "normalizer_spec.remove_extra_whitespaces"));
            spm->remove_extra_whitespaces = f.value != 0;
            break;
        case 5:
            TRY(pb_expect(&sub, &f, WIRE_VARINT, "normalizer_spec.escape_whitespaces"));
            spm->escape_whitespaces = f.value != 0;
            break;
        default:
            break;
        }
    }
    return KILN_OK;
}

/* ModelProto: pieces (1), trainer_spec (2), normalizer_spec (3); the rest
 * (self-test samples, the denormalizer) does not change encoding. A message
 * given twice merges, as protobuf merges it. */
static kiln_status read_model(kiln_spm *spm, model_fields *m, size_t file_len)
{
    pb_reader r = {spm->file, spm->file + file_len, spm->file, spm->path};
    while (r.p < r.end) {
        pb_field f;
        TRY(pb_next(&r, &f));
        if (f.number == 1) {
            TRY(pb_expect(&r, &f, WIRE_BYTES, "a piece"));
            TRY(add_piece(spm, m, &r, &f));
        } else if (f.number == 2) {
            TRY(pb_expect(&r, &f, WIRE_BYTES, "trainer_spec"));
            TRY(read_trainer_spec(m, &r, &f));
        } else if (f.number == 3) {
            TRY(pb_expect(&r, &f, WIRE_BYTES, "normalizer_spec"));
            TRY(read_normalizer_spec(spm, m, &r, &f));
        }
    }
    return KILN_OK;
}

/* ---- tokenizer.json ---------------------------------------------------------- */

/* A T5 tokenizer as Hugging Face's tokenizers library saves it (ComfyUI's
 * t5_tokenizer/, a diffusers folder's tokenizer_2/tokenizer.json): the
 * SentencePiece model transformers converted it from, in other words. The
 * Unigram model's vocab is the pieces and their scores; added_tokens mark
 * the control pieces (special) and the user-defined ones; the normalizer's
 * Precompiled entry is the character map (base64); a Replace of " {2,}" is
 * remove_extra_whitespaces, a Metaspace pre-tokenizer the dummy prefix and
 * escaped spaces. */

static const cJSON *member(const cJSON *o, const char *name) { return cJSON_GetObjectItemCaseSensitive(o, name); }

static bool has_type(const cJSON *o, const char *type)
{
    const cJSON *t = member(o, "type");
    return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

/* Base64 as the tokenizers library writes it; SIZE_MAX on a bad character. */
static size_t base64_decode(const char *in, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (const char *c = in; *c && *c != '='; c++) {
        const char *digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *at = strchr(digits, *c);
        if (!at) return SIZE_MAX;
        acc = acc << 6 | (uint32_t)(at - digits);
        if ((bits += 6) >= 8) out[n++] = (uint8_t)(acc >> (bits -= 8));
    }
    return n;
}

/* The normalizers (one or a Sequence): the character map's base64 and
 * whether runs of spaces collapse. */
static void scan_normalizer(const cJSON *n, const char **charsmap, bool *collapse)
{
    const cJSON *item;
    if (has_type(n, "Sequence")) {
        cJSON_ArrayForEach(item, member(n, "normalizers")) { scan_normalizer(item, charsmap, collapse); }
    } else if (has_type(n, "Precompiled") && cJSON_IsString(member(n, "precompiled_charsmap"))) {
        *charsmap = member(n, "precompiled_charsmap")->valuestring;
    } else if (has_type(n, "Replace")) {
        const cJSON *regex = member(member(n, "pattern"), "Regex");
        if (cJSON_IsString(regex) && strcmp(regex->valuestring, " {2,}") == 0) *collapse = true;
    }
}

/* The Metaspace pre-tokenizer (alone or in a Sequence), or NULL. */
static const cJSON *find_metaspace(const cJSON *p)
{
    if (has_type(p, "Metaspace")) return p;
    const cJSON *item;
    if (has_type(p, "Sequence")) {
        cJSON_ArrayForEach(item, member(p, "pretokenizers")) {
            if (find_metaspace(item)) return find_metaspace(item);
        }
    }
    return NULL;
}

/* Reads tokenizer.json text into spm's pieces and m's fields; spm->file
 * becomes the pieces' text and the character map. */
static kiln_status read_tokenizer_json(kiln_spm *spm, model_fields *m, const char *text)
{
    const char *path = spm->path;
    cJSON *root = cJSON_Parse(text);
    if (!root) return kiln_fail(KILN_ERR_FORMAT, "%s: not JSON, nor a SentencePiece model", path);
    kiln_status st = KILN_OK;
    const cJSON *model = member(root, "model"), *vocab = member(model, "vocab"), *unk = member(model, "unk_id");
    const cJSON *entry;
    const char *charsmap = NULL;
    bool collapse = false;
    scan_normalizer(member(root, "normalizer"), &charsmap, &collapse);
    if (!cJSON_IsString(member(model, "type")))
        st = kiln_fail(KILN_ERR_FORMAT, "%s: JSON without a tokenizer model: not a tokenizer.json", path);
    else if (!has_type(model, "Unigram"))
        st = kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a tokenizers %s model; kiln reads Unigram models (T5's) only", path,
                       member(model, "type")->valuestring);
    else if (cJSON_IsTrue(member(model, "byte_fallback")))
        st = kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a Unigram model with byte_fallback, which T5's is not", path);
    else if (!cJSON_IsArray(vocab) || !cJSON_IsNumber(unk))
        st = kiln_fail(KILN_ERR_FORMAT, "%s: a Unigram model without its vocab or unk_id", path);
    const int n = st == KILN_OK ? cJSON_GetArraySize(vocab) : 0;
    size_t bytes = charsmap ? strlen(charsmap) / 4 * 3 + 3 : 0;
    if (st == KILN_OK) {
        cJSON_ArrayForEach(entry, vocab) {
            const cJSON *piece = cJSON_GetArrayItem(entry, 0), *score = cJSON_GetArrayItem(entry, 1);
            if (!cJSON_IsString(piece) || !cJSON_IsNumber(score) || !piece->valuestring[0]) {
                st = kiln_fail(KILN_ERR_FORMAT, "%s: a vocab entry that is no [piece, score]", path);
                break;
            }
            bytes += strlen(piece->valuestring);
        }
    }
    uint8_t *buf = st == KILN_OK ? malloc(bytes + 1) : NULL;
    if (st == KILN_OK && (!buf || !(spm->pieces = calloc((size_t)n + 1, sizeof *spm->pieces))))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    size_t at = 0;
    if (st == KILN_OK) {
        cJSON_ArrayForEach(entry, vocab) {
            const char *piece = cJSON_GetArrayItem(entry, 0)->valuestring;
            const size_t len = strlen(piece);
            memcpy(buf + at, piece, len);
            spm->pieces[spm->n_pieces++] = (spm_piece){(const char *)buf + at, (uint32_t)len,
                                                       (float)cJSON_GetArrayItem(entry, 1)->valuedouble, PIECE_NORMAL};
            at += len;
        }
        cJSON_ArrayForEach(entry, member(root, "added_tokens")) {
            const cJSON *id = member(entry, "id");
            if (cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < n)
                spm->pieces[id->valueint].type =
                    cJSON_IsTrue(member(entry, "special")) ? PIECE_CONTROL : PIECE_USER_DEFINED;
        }
    }
    /* transformers' converter appends T5Tokenizer's 100 sentinels to the vocab, which kiln adds itself */
    if (st == KILN_OK && spm->n_pieces > T5_EXTRA_IDS) {
        bool sentinels = true;
        const int base = spm->n_pieces - T5_EXTRA_IDS;
        for (int i = 0; i < T5_EXTRA_IDS && sentinels; i++) {
            char name[32];
            snprintf(name, sizeof name, "<extra_id_%d>", T5_EXTRA_IDS - 1 - i);
            const spm_piece *p = &spm->pieces[base + i];
            sentinels = p->len == strlen(name) && memcmp(p->text, name, p->len) == 0;
        }
        if (sentinels) spm->n_pieces = base;
    }
    if (st == KILN_OK && (unk->valueint < 0 || unk->valueint >= spm->n_pieces))
        st = kiln_fail(KILN_ERR_FORMAT, "%s: unk_id %d, but the vocab has %d pieces", path, unk->valueint, n);
    if (st == KILN_OK) spm->pieces[unk->valueint].type = PIECE_UNKNOWN;
    if (st == KILN_OK && charsmap) {
        m->charsmap = buf + at;
        m->charsmap_len = base64_decode(charsmap, buf + at);
        if (m->charsmap_len == SIZE_MAX)
            st = kiln_fail(KILN_ERR_FORMAT, "%s: the Precompiled normalizer's character map is not base64", path);
    }
    if (st == KILN_OK) {
        const cJSON *metaspace = find_metaspace(member(root, "pre_tokenizer"));
        const cJSON *scheme = member(metaspace, "prepend_scheme");
        spm->escape_whitespaces = metaspace != NULL;
        spm->add_dummy_prefix = metaspace && !cJSON_IsFalse(member(metaspace, "add_prefix_space")) &&
                                !(cJSON_IsString(scheme) && strcmp(scheme->valuestring, "never") == 0);
        spm->remove_extra_whitespaces = collapse;
        m->has_trainer_spec = m->has_normalizer_spec = true;
        m->trainer_unk_id = unk->valueint;
        m->trainer_bos_id = m->trainer_eos_id = m->trainer_pad_id = -1;
        free(spm->file);
        spm->file = buf;
        buf = NULL;
    }
    free(buf);
    cJSON_Delete(root);
    return st;
}

/* ---- a GGUF file's tokenizer ------------------------------------------------ */

/* Metadata `key` of the GGUF image, of `type`, an array or a scalar;
 * absent: *found false where `found` is given, else an error naming it. */
static kiln_status gguf_field(const kiln_spm *spm, const uint8_t *data, size_t size, const char *key, uint32_t type,
                              bool array, kiln_gguf_value *v, bool *found)
{
    bool present;
    TRY(kiln_gguf_find(data, size, spm->path, key, v, &present));
    if (found) *found = present;
    if (!present && found) return KILN_OK;
    if (!present)
        return kiln_fail(KILN_ERR_FORMAT, "%s: a GGUF file without %s: give T5's spiece.model as well", spm->path,
                         key);
    const bool same = v->type == type || (type == KILN_GGUF_U8 && v->type == KILN_GGUF_I8);
    if (!same || v->array != array)
        return kiln_fail(KILN_ERR_FORMAT, "%s: %s is not %s", spm->path, key, array ? "an array of the type it "
                         "should be" : "a value of the type it should be");
    return KILN_OK;
}

/* A GGUF string's length, before its bytes. */
static size_t gguf_string_len(const uint8_t *p) { return (size_t)((uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32); }

/* The SentencePiece model llama.cpp's converter writes into a T5's GGUF
 * file (tokenizer.ggml.*: the pieces, their scores and types, the
 * normalizer's character map and flags), as spiece.model would give it;
 * the "[PADn]" pieces it adds up to the model's vocabulary size go. (The
 * converter writes user-defined pieces as normal ones; T5's vocabulary has
 * none.) */
static kiln_status read_gguf_tokenizer(kiln_spm *spm, model_fields *m, const uint8_t *data, size_t size)
{
    kiln_gguf_value model, tokens, scores, types, charsmap, flag;
    bool found;
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.model", KILN_GGUF_STRING, false, &model, &found));
    if (!found)
        return kiln_fail(KILN_ERR_FORMAT, "%s: a GGUF file without a tokenizer: give T5's spiece.model", spm->path);
    const size_t model_len = gguf_string_len(model.data);
    if (model_len != 2 || memcmp(model.data + 8, "t5", 2) != 0)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a GGUF file with llama.cpp's '%.*s' tokenizer, not T5's (t5)",
                         spm->path, (int)(model_len < 32 ? model_len : 32), (const char *)model.data + 8);
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.tokens", KILN_GGUF_STRING, true, &tokens, NULL));
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.scores", KILN_GGUF_F32, true, &scores, NULL));
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.token_type", KILN_GGUF_I32, true, &types, NULL));
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.precompiled_charsmap", KILN_GGUF_U8, true, &charsmap, NULL));
    if (scores.count != tokens.count || types.count != tokens.count || tokens.count >= INT32_MAX - T5_EXTRA_IDS)
        return kiln_fail(KILN_ERR_FORMAT, "%s: %llu tokens, %llu scores and %llu token types", spm->path,
                         (unsigned long long)tokens.count, (unsigned long long)scores.count,
                         (unsigned long long)types.count);
    /* the pieces' texts and the character map, copied out of the file (the header bounds every length) */
    size_t bytes = (size_t)charsmap.count;
    const uint8_t *at = tokens.data;
    for (uint64_t i = 0; i < tokens.count; i++) {
        const size_t len = gguf_string_len(at);
        bytes += len;
        at += 8 + len;
    }
    uint8_t *buf = malloc(bytes + 1);
    spm->pieces = calloc((size_t)tokens.count + 1, sizeof *spm->pieces);
    if (!buf || !spm->pieces) {
        free(buf);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", spm->path);
    }
    free(spm->file);
    spm->file = buf;
    at = tokens.data;
    for (uint64_t i = 0; i < tokens.count; i++) {
        const size_t len = gguf_string_len(at);
        spm_piece *p = &spm->pieces[spm->n_pieces++];
        memcpy(buf, at + 8, len);
        const uint32_t bits = load_le32(scores.data + 4 * i), type = load_le32(types.data + 4 * i);
        *p = (spm_piece){(const char *)buf, (uint32_t)len, 0.0f, (uint8_t)type};
        memcpy(&p->score, &bits, sizeof p->score);
        if (len == 0 || !isfinite(p->score) || type < PIECE_NORMAL || type > PIECE_BYTE)
            return kiln_fail(KILN_ERR_FORMAT, "%s: token %llu is empty, or of no score or type SentencePiece has",
                             spm->path, (unsigned long long)i);
        buf += len;
        at += 8 + len;
    }
    while (spm->n_pieces > 0) { /* llama.cpp's fillers */
        const spm_piece *p = &spm->pieces[spm->n_pieces - 1];
        if (p->type != PIECE_UNUSED || p->len < 5 || memcmp(p->text, "[PAD", 4) != 0) break;
        spm->n_pieces--;
    }
    memcpy(buf, charsmap.data, (size_t)charsmap.count);
    m->charsmap = buf;
    m->charsmap_len = (size_t)charsmap.count;
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.add_space_prefix", KILN_GGUF_BOOL, false, &flag, &found));
    spm->add_dummy_prefix = !found || flag.data[0];
    TRY(gguf_field(spm, data, size, "tokenizer.ggml.remove_extra_whitespaces", KILN_GGUF_BOOL, false, &flag, &found));
    spm->remove_extra_whitespaces = !found || flag.data[0];
    m->has_trainer_spec = m->has_normalizer_spec = true;
    m->trainer_unk_id = m->trainer_bos_id = m->trainer_eos_id = m->trainer_pad_id = -1;
    return KILN_OK;
}

/* What SentencePiece would refuse, what kiln does not do, and what makes
 * it no T5 vocabulary. */
static kiln_status check_model(kiln_spm *spm, const model_fields *m)
{
    const char *path = spm->path;
    /* Every model SentencePiece writes has both specs; a file cut short
     * after its pieces would otherwise read as a model without them. */
    if (!m->has_trainer_spec || !m->has_normalizer_spec)
        return kiln_fail(KILN_ERR_FORMAT, "%s: truncated or not a SentencePiece model: no %s", path,
                         !m->has_trainer_spec ? "trainer_spec" : "normalizer_spec");
    if (spm->n_pieces == 0) return kiln_fail(KILN_ERR_FORMAT, "%s: a SentencePiece model without pieces", path);
    if (m->model_type != MODEL_UNIGRAM) {
        static const char *const names[] = {"", "unigram", "BPE", "word", "char"};
        const char *name = m->model_type <= MODEL_CHAR ? names[m->model_type] : "unknown";
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "%s: a SentencePiece %s model (model_type %llu); kiln reads unigram models (T5's) only", path,
                         name, (unsigned long long)m->model_type);
    }
    if (m->byte_fallback)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a SentencePiece model with byte_fallback, which T5's is not", path);
    if (m->whitespace_as_suffix)
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "%s: a SentencePiece model with treat_whitespace_as_suffix, which T5's is not", path);
    /* T5Tokenizer finds its special pieces by their text (find_t5_specials);
     * these ids only have to make sense. */
    const int32_t trainer_ids[4] = {m->trainer_unk_id, m->trainer_bos_id, m->trainer_eos_id, m->trainer_pad_id};
    for (int i = 0; i < 4; i++)
        if (trainer_ids[i] < -1 || trainer_ids[i] >= spm->n_pieces)
            return kiln_fail(KILN_ERR_FORMAT, "%s: trainer_spec names id %d, but the model has %d pieces", path,
                             trainer_ids[i], spm->n_pieces);
    spm->unk_id = -1;
    for (int32_t i = 0; i < spm->n_pieces; i++) {
        const spm_piece *p = &spm->pieces[i];
        if (p->type == PIECE_UNKNOWN) {
            if (spm->unk_id >= 0)
                return kiln_fail(KILN_ERR_FORMAT, "%s: pieces %d and %d are both the unknown piece", path, spm->unk_id,
                                 i);
            spm->unk_id = i;
        } else if (p->type == PIECE_BYTE) {
            return kiln_fail(KILN_ERR_FORMAT, "%s: piece %d is a byte piece, but byte_fallback is off", path, i);
        }
    }
    if (spm->unk_id < 0) return kiln_fail(KILN_ERR_FORMAT, "%s: no piece is the unknown piece", path);
    return KILN_OK;
}

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* The slot that holds piece text s, or the empty slot where it would go. */
static int32_t *name_slot(const kiln_spm *spm, const char *s, size_t len)
{
    uint32_t h = hash_bytes(s, len) & spm->name_mask;
    for (;; h = (h + 1) & spm->name_mask) {
        int32_t id = spm->names[h] - 1;
        if (id < 0) return &spm->names[h];
        const spm_piece *p = &spm->pieces[id];
        if (p->len == len && memcmp(p->text, s, len) == 0) return &spm->names[h];
    }
}

/* SentencePiece's PieceToId: the piece whose text is s (of any type), else
 * the unknown piece. */
static int32_t piece_to_id(const kiln_spm *spm, const char *s, size_t len)
{
    int32_t id = *name_slot(spm, s, len) - 1;
    return id >= 0 ? id : spm->unk_id;
}

static kiln_status index_names(kiln_spm *spm)
{
    uint32_t cap = 16;
    while (cap < (uint32_t)spm->n_pieces * 2u) cap *= 2;
    spm->names = calloc(cap, sizeof *spm->names);
    if (!spm->names) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", spm->path);
    spm->name_mask = cap - 1;
    for (int32_t i = 0; i < spm->n_pieces; i++) {
        const spm_piece *p = &spm->pieces[i];
        int32_t *slot = name_slot(spm, p->text, p->len);
        if (*slot)
            return kiln_fail(KILN_ERR_FORMAT, "%s: pieces %d and %d are both \"%.*s\"", spm->path, *slot - 1, i,
                             (int)(p->len < 40 ? p->len : 40), p->text);
        *slot = i + 1;
    }
    return KILN_OK;
}

static uint32_t edge_hash(uint32_t key, uint32_t bits) { return (key * 0x9E3779B1u) >> (32 - bits); }

static edge_slot *edge_slot_for(const kiln_spm *spm, uint32_t key)
{
    const uint32_t mask = (1u << spm->edge_bits) - 1;
    uint32_t h = edge_hash(key, spm->edge_bits);
    while (spm->edges[h].key != 0 && spm->edges[h].key != key) h = (h + 1) & mask;
    return &spm->edges[h];
}

/* The child of `node` along `byte`, or 0 (the root is nobody's child). */
static uint32_t trie_child(const kiln_spm *spm, uint32_t node, uint8_t byte)
{
    const edge_slot *s = edge_slot_for(spm, (node << 8 | byte) + 1);
    return s->key ? s->child : 0;
}

/* The pieces the Viterbi may use: NORMAL and USER_DEFINED. (SentencePiece
 * also puts UNUSED pieces in its trie but then skips them.) */
static bool viterbi_piece(const spm_piece *p) { return p->type == PIECE_NORMAL || p->type == PIECE_USER_DEFINED; }

static kiln_status build_trie(kiln_spm *spm)
{
    size_t bytes = 0;
    for (int32_t i = 0; i < spm->n_pieces; i++)
        if (viterbi_piece(&spm->pieces[i])) bytes += spm->pieces[i].len;
    if (bytes >= MAX_TRIE_NODES)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: %zu bytes of pieces, more than kiln indexes", spm->path, bytes);
    spm->edge_bits = 4;
    while (((size_t)1 << spm->edge_bits) < bytes * 2) spm->edge_bits++;
    spm->node_piece = malloc((bytes + 1) * sizeof *spm->node_piece);
    spm->edges = calloc((size_t)1 << spm->edge_bits, sizeof *spm->edges);
    if (!spm->node_piece || !spm->edges) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", spm->path);
    spm->node_piece[0] = -1;
    spm->n_nodes = 1;
    for (int32_t i = 0; i < spm->n_pieces; i++) {
        const spm_piece *p = &spm->pieces[i];
        if (!viterbi_piece(p)) continue;
        uint32_t node = 0;
        for (uint32_t k = 0; k < p->len; k++) {
            edge_slot *s = edge_slot_for(spm, (node << 8 | (uint8_t)p->text[k]) + 1);
            if (!s->key) {
                *s = (edge_slot){(node << 8 | (uint8_t)p->text[k]) + 1, spm->n_nodes};
                spm->node_piece[spm->n_nodes++] = -1;
            }
            node = s->child;
        }
        spm->node_piece[node] = i;
        if (p->type == PIECE_USER_DEFINED) spm->has_user_defined = true;
    }
    return KILN_OK;
}

/* SentencePiece's precompiled_charsmap: the double array's size in bytes
 * (32-bit little-endian), the array, then the replacement strings. */
static kiln_status split_charsmap(kiln_spm *spm, const model_fields *m)
{
    if (m->charsmap_len == 0) return KILN_OK; /* no normalization rules: text is used as it is */
    if (m->charsmap_len <= 4)
        return kiln_fail(KILN_ERR_FORMAT, "%s: the precompiled_charsmap of %zu bytes is too short", spm->path,
                         m->charsmap_len);
    size_t trie_bytes = load_le32(m->charsmap);
    if (trie_bytes > m->charsmap_len - 4)
        return kiln_fail(KILN_ERR_FORMAT, "%s: the precompiled_charsmap's trie (%zu bytes) outgrows it (%zu bytes)",
                         spm->path, trie_bytes, m->charsmap_len);
    spm->charsmap_units = m->charsmap + 4;
    spm->n_charsmap_units = trie_bytes / 4;
    spm->replacements = (const char *)m->charsmap + 4 + trie_bytes;
    spm->replacements_len = m->charsmap_len - 4 - trie_bytes;
    return KILN_OK;
}

/* T5Tokenizer finds its special tokens with get_vocab(), so by their text. */
static kiln_status find_t5_specials(kiln_spm *spm)
{
    static const char *const names[3] = {"</s>", "<pad>", "<unk>"};
    int32_t *ids[3] = {&spm->eos_id, &spm->pad_id, &spm->unk_literal_id};
    for (int i = 0; i < 3; i++) {
        int32_t id = *name_slot(spm, names[i], strlen(names[i])) - 1;
        if (id < 0) return kiln_fail(KILN_ERR_FORMAT, "%s: no piece \"%s\": not a T5 vocabulary", spm->path, names[i]);
        *ids[i] = id;
    }
    return KILN_OK;
}

kiln_status kiln_spm_open(const char *path, kiln_spm **out)
{
    *out = NULL;
    if (!path) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_spm_open: no path");
    kiln_spm *spm = calloc(1, sizeof *spm);
    if (spm) spm->path = strdup(path);
    if (!spm || !spm->path) {
        kiln_spm_free(spm);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    /* protobuf's defaults for fields a file leaves out */
    spm->add_dummy_prefix = spm->remove_extra_whitespaces = spm->escape_whitespaces = true;
    model_fields m = {.model_type = MODEL_UNIGRAM, .trainer_unk_id = 0, .trainer_bos_id = 1, .trainer_eos_id = 2, .trainer_pad_id = -1};
    size_t file_len = 0;
    kiln_status st = KILN_OK;
    const uint8_t *map;
    size_t map_size;
    if (kiln_map_file(path, "a SentencePiece model", &map, &map_size) == KILN_OK && kiln_gguf_magic(map, map_size)) {
        st = read_gguf_tokenizer(spm, &m, map, map_size); /* a T5 encoder's GGUF file, its weights left unread */
        kiln_unmap_file(map, map_size);
    } else {
        if (map) kiln_unmap_file(map, map_size);
        st = kiln_read_file(path, MAX_MODEL_BYTES, "a SentencePiece model", &spm->file, &file_len);
    }
    if (st == KILN_OK && file_len == 0 && !spm->pieces)
        st = kiln_fail(KILN_ERR_FORMAT, "%s: empty file, not a SentencePiece model", path);
    size_t lead = 0;
    while (st == KILN_OK && lead < file_len && strchr(" \t\r\n", spm->file[lead])) lead++;
    if (st == KILN_OK && lead < file_len && spm->file[lead] == '{') { /* a tokenizer.json */
        char *text = malloc(file_len + 1);
        if (!text) st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        if (text) {
            memcpy(text, spm->file, file_len);
            text[file_len] = '\0';
            st = read_tokenizer_json(spm, &m, text);
            free(text);
        }
    } else if (st == KILN_OK && !spm->pieces) {
        st = read_model(spm, &m, file_len);
    }
    if (st == KILN_OK) st = check_model(spm, &m);
    if (st == KILN_OK) st = index_names(spm);
    if (st == KILN_OK) st = build_trie(spm);
    if (st == KILN_OK) st = split_charsmap(spm, &m);
    if (st == KILN_OK) st = find_t5_specials(spm);
    if (st != KILN_OK) {
        kiln_spm_free(spm);
        return st;
    }
    spm->min_score = FLT_MAX;
    for (int32_t i = 0; i < spm->n_pieces; i++)
        if (spm->pieces[i].type == PIECE_NORMAL && spm->pieces[i].score < spm->min_score)
            spm->min_score = spm->pieces[i].score;
    *out = spm;
    return KILN_OK;
}

void kiln_spm_free(kiln_spm *spm)
{
    if (!spm) return;
    free(spm->names);
    free(spm->edges);
    free(spm->node_piece);
    free(spm->pieces);
    free(spm->file);
    free(spm->path);
    free(spm);
}

int32_t kiln_spm_vocab_size(const kiln_spm *spm) { return spm->n_pieces; }
int32_t kiln_spm_eos(const kiln_spm *spm) { return spm->eos_id; }
int32_t kiln_spm_pad(const kiln_spm *spm) { return spm->pad_id; }

/* ---- buffers ----------------------------------------------------------------- */

typedef struct spm_token {
    size_t start, len; /* in the normalized text */
    int32_t id;
} spm_token;

typedef struct best_path {
    float score;  /* of the best split of the text before this position */
    int32_t id;   /* the last piece of that split */
    size_t start; /* where that piece starts; SIZE_MAX: no split reaches here yet */
} best_path;

/* Scratch for one encode call; nothing in it outlives the call. */
typedef struct encoder {
    const kiln_spm *spm;
    char *norm;
    size_t norm_len, norm_cap;
    best_path *best;
    size_t best_cap;
    spm_token *tokens;
    size_t n_tokens, tokens_cap;
    int32_t *ids;
    size_t n_ids, ids_cap;
} encoder;

static void encoder_free(encoder *e)
{
    free(e->norm);
    free(e->best);
    free(e->tokens);
    free(e->ids);
}

static kiln_status grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return KILN_OK;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2 / elem) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SentencePiece: text too long");
        cap2 *= 2;
    }
    void *grown = realloc(*buf, cap2 * elem);
    if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SentencePiece: out of memory");
    *buf = grown;
    *cap = cap2;
    return KILN_OK;
}

static kiln_status norm_append(encoder *e, const char *s, size_t n)
{
    TRY(grow((void **)&e->norm, &e->norm_cap, e->norm_len + n + 1, 1));
    memcpy(e->norm + e->norm_len, s, n);
    e->norm_len += n;
    return KILN_OK;
}

static kiln_status push_id(encoder *e, int32_t id)
{
    TRY(grow((void **)&e->ids, &e->ids_cap, e->n_ids + 1, sizeof *e->ids));
    e->ids[e->n_ids++] = id;
    return KILN_OK;
}

/* ---- normalization ------------------------------------------------------------ */

/* The UTF-8 character at s[0..n) as SentencePiece decodes it (shortest form
 * only, no surrogates, nothing past U+10FFFF): its length, its code point
 * in *cp; 0 if the bytes are not one. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    const uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((b & 0xE0) == 0xC0) len = 2, c = b & 0x1F, min = 0x80;
    else if ((b & 0xF0) == 0xE0) len = 3, c = b & 0x0F, min = 0x800;
    else if ((b & 0xF8) == 0xF0) len = 4, c = b & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min || (c >= 0xD800 && c < 0xE000) || c > 0x10FFFF) return 0;
    *cp = c;
    return len;
}

/* The longest user-defined piece that s[0..n) starts with: its length, or 0.
 * SentencePiece copies these into the normalized text untouched. */
static size_t user_defined_prefix(const kiln_spm *spm, const uint8_t *s, size_t n)
{
    size_t longest = 0;
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(spm, node, s[i]);
        if (!node) break;
        int32_t id = spm->node_piece[node];
        if (id >= 0 && spm->pieces[id].type == PIECE_USER_DEFINED) longest = i + 1;
    }
    return longest;
}

/* The charsmap's unit at `pos`; a position past the array holds no label,
 * so reading it as 0xFFFFFFFF (a leaf's label) makes every transition fail. */
static uint32_t charsmap_unit(const kiln_spm *spm, size_t pos)
{
    return pos < spm->n_charsmap_units ? load_le32(spm->charsmap_units + 4 * pos) : 0xFFFFFFFFu;
}

static uint32_t unit_label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static uint32_t unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static size_t unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

/* The longest rule of the character map that s[0..n) starts with: *match
 * bytes (0: none) to be replaced by repl[0..*repl_len). The walk is
 * darts-clone's common-prefix search; like SentencePiece it keeps the first
 * CHARSMAP_MAX_RESULTS matches. */
static kiln_status charsmap_match(const kiln_spm *spm, const uint8_t *s, size_t n, size_t *match, const char **repl,
                                  size_t *repl_len)
{
    *match = 0;
    if (!spm->charsmap_units) return KILN_OK;
    size_t pos = unit_offset(charsmap_unit(spm, 0));
    uint32_t value = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        uint32_t unit = charsmap_unit(spm, pos);
        if (unit_label(unit) != s[i]) break;
        pos ^= unit_offset(unit);
        if (unit_has_leaf(unit)) {
            if (found < CHARSMAP_MAX_RESULTS) {
                *match = i + 1;
                value = unit_value(charsmap_unit(spm, pos));
            }
            found++;
        }
    }
    if (!*match) return KILN_OK;
    /* a replacement is a NUL-terminated string inside the blob */
    const char *r = value < spm->replacements_len ? spm->replacements + value : NULL;
    const char *nul = r ? memchr(r, 0, spm->replacements_len - value) : NULL;
    if (!nul)
        return kiln_fail(KILN_ERR_FORMAT, "%s: the precompiled_charsmap points past its replacement strings",
                         spm->path);
    *repl = r;
    *repl_len = (size_t)(nul - r);
    return KILN_OK;
}

/* What the normalizer puts out for the start of s[0..n), n > 0, and how many
 * input bytes that consumes: a user-defined piece as it is, else the longest
 * character-map rule's replacement, else one character as it is, or U+FFFD
 * for one byte that does not start a valid character. */
static kiln_status normalize_prefix(const kiln_spm *spm, const uint8_t *s, size_t n, const char **out, size_t *out_len,
                                    size_t *consumed)
{
    size_t len = spm->has_user_defined ? user_defined_prefix(spm, s, n) : 0;
    if (len) {
        *out = (const char *)s;
        *out_len = *consumed = len;
        return KILN_OK;
    }
    TRY(charsmap_match(spm, s, n, &len, out, out_len));
    if (len) {
        *consumed = len;
        return KILN_OK;
    }
    uint32_t cp;
    len = utf8_decode(s, n, &cp);
    if (len) {
        *out = (const char *)s;
        *out_len = *consumed = len;
    } else {
        *out = "\xEF\xBF\xBD";
        *out_len = 3;
        *consumed = 1;
    }
    return KILN_OK;
}

static const char SPACE_SYMBOL[] = "\xE2\x96\x81"; /* U+2581, what spaces become */

static kiln_status push_space(encoder *e)
{
    if (e->spm->escape_whitespaces) return norm_append(e, SPACE_SYMBOL, 3);
    return norm_append(e, " ", 1);
}

/* SentencePiece's Normalizer::Normalize into e->norm. Only ASCII spaces
 * count as spaces here: the character map has already made tabs, newlines
 * and the other Unicode spaces into them. */
static kiln_status normalize(encoder *e, const uint8_t *in, size_t n)
{
    const kiln_spm *spm = e->spm;
    e->norm_len = 0;
    TRY(grow((void **)&e->norm, &e->norm_cap, 1, 1));
    e->norm[0] = 0;
    const char *piece;
    size_t piece_len, used;
    if (spm->remove_extra_whitespaces) {
        while (n) {
            TRY(normalize_prefix(spm, in, n, &piece, &piece_len, &used));
            if (piece_len != 1 || piece[0] != ' ') break;
            in += used;
            n -= used;
        }
    }
    if (!n) return KILN_OK; /* nothing but spaces: no dummy prefix either */
    if (spm->add_dummy_prefix) TRY(push_space(e));
    bool prev_space = spm->remove_extra_whitespaces;
    while (n) {
        TRY(normalize_prefix(spm, in, n, &piece, &piece_len, &used));
        if (prev_space)
            while (piece_len && piece[0] == ' ') piece++, piece_len--;
        if (piece_len) {
            for (size_t i = 0; i < piece_len; i++) {
                if (piece[i] == ' ' && spm->escape_whitespaces) TRY(norm_append(e, SPACE_SYMBOL, 3));
                else TRY(norm_append(e, &piece[i], 1));
            }
            prev_space = piece[piece_len - 1] == ' ';
        }
        in += used;
        n -= used;
        if (!spm->remove_extra_whitespaces) prev_space = false;
    }
    if (spm->remove_extra_whitespaces) {
        /* also a U+2581 that was in the text, as SentencePiece does */
        const char *space = spm->escape_whitespaces ? SPACE_SYMBOL : " ";
        const size_t space_len = strlen(space);
        while (e->norm_len >= space_len && memcmp(e->norm + e->norm_len - space_len, space, space_len) == 0)
            e->norm_len -= space_len;
    }
    e->norm[e->norm_len] = 0;
    return KILN_OK;
}

/* ---- the unigram Viterbi -------------------------------------------------------- */

/* What a user-defined piece of `len` bytes scores in place of its own score,
 * so that it beats the (negative) log probabilities of normal pieces:
 * sentencepiece 0.2.3 gives 0.1 a byte less 0.1, worked out in double and
 * rounded to float. (The 0.2.1 source gave len x max(FLT_MIN, highest
 * normal score) - 0.1; both pick the same pieces in nearly every real
 * model, and T5's has no user-defined pieces at all.) */
static float user_defined_score(size_t len) { return (float)((double)len * 0.1 - 0.1); }

/* SentencePiece steps through the normalized text by the length its first
 * byte announces, whatever follows. */
static size_t one_char_len(uint8_t b) { return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

static kiln_status push_token(encoder *e, size_t start, size_t len, int32_t id)
{
    TRY(grow((void **)&e->tokens, &e->tokens_cap, e->n_tokens + 1, sizeof *e->tokens));
    e->tokens[e->n_tokens++] = (spm_token){start, len, id};
    return KILN_OK;
}

/* The best split of e->norm into e->tokens (in order), consecutive unknown
 * characters merged into one token. As SentencePiece's default (optimized)
 * encoder: positions are bytes; for each character start in turn, every
 * piece starting there, shortest first, updates the best split ending where
 * it ends when its total is strictly higher, so of equal totals the first
 * candidate stays; totals are float sums (0.2.1 summed in double). A
 * character that no piece of its own length covers gets the unknown piece
 * at the lowest normal score less UNK_PENALTY. */
static kiln_status viterbi(encoder *e)
{
    const kiln_spm *spm = e->spm;
    const uint8_t *s = (const uint8_t *)e->norm;
    const size_t n = e->norm_len;
    e->n_tokens = 0;
    if (n == 0) return KILN_OK;
    TRY(grow((void **)&e->best, &e->best_cap, n + 1, sizeof *e->best));
    best_path *best = e->best;
    for (size_t i = 0; i <= n; i++) best[i] = (best_path){0.0f, -1, SIZE_MAX};
    const float unk_score = spm->min_score - UNK_PENALTY;
    for (size_t start = 0; start < n;) {
        const float so_far = best[start].score;
        size_t char_len = one_char_len(s[start]);
        if (char_len > n - start) char_len = n - start;
        bool has_single_char_piece = false;
        uint32_t node = 0;
        for (size_t end = start; end < n;) {
            node = trie_child(spm, node, s[end++]);
            if (!node) break;
            const int32_t id = spm->node_piece[node];
            if (id < 0) continue;
            const size_t len = end - start;
            const float score = spm->pieces[id].type == PIECE_USER_DEFINED ? user_defined_score(len)
                                                                               : spm->pieces[id].score;
            const float total = score + so_far;
            best_path *target = &best[end];
            if (target->start == SIZE_MAX || total > target->score) {
                target->score = total;
                target->start = start;
                target->id = id;
            }
            if (len == char_len) has_single_char_piece = true;
        }
        if (!has_single_char_piece) {
            const float total = unk_score + so_far;
            best_path *target = &best[start + char_len];
            if (target->start == SIZE_MAX || total > target->score) {
                target->score = total;
                target->start = start;
                target->id = spm->unk_id;
            }
        }
        start += char_len;
    }
    /* walk back from the end, then reverse */
    for (size_t end = n; end > 0;) {
        const best_path *b = &best[end];
        TRY(push_token(e, b->start, end - b->start, b->id));
        end = b->start;
    }
    for (size_t i = 0, j = e->n_tokens - 1; i < j; i++, j--) {
        spm_token t = e->tokens[i];
        e->tokens[i] = e->tokens[j];
        e->tokens[j] = t;
    }
    /* a run of unknowns becomes one unknown spanning them all */
    size_t kept = 0;
    for (size_t i = 0; i < e->n_tokens; i++) {
        const spm_token *t = &e->tokens[i];
        if (kept && t->id == spm->unk_id && e->tokens[kept - 1].id == spm->unk_id) e->tokens[kept - 1].len += t->len;
        else e->tokens[kept++] = *t;
    }
    e->n_tokens = kept;
    return KILN_OK;
}

/* ---- T5Tokenizer ------------------------------------------------------------------- */

/* The id of T5Tokenizer's special token spelled s[0..n), or -1. Extra id N
 * is "<extra_id_N>" with N in 0..99 written without leading zeros. */
static int32_t t5_special_id(const kiln_spm *spm, const char *s, size_t n, bool *strips_whitespace)
{
    *strips_whitespace = false;
    if (n == 4 && memcmp(s, "</s>", 4) == 0) return spm->eos_id;
    if (n == 5 && memcmp(s, "<pad>", 5) == 0) return spm->pad_id;
    if (n == 5 && memcmp(s, "<unk>", 5) == 0) return spm->unk_literal_id;
    static const char prefix[] = "<extra_id_";
    const size_t p = sizeof prefix - 1;
    if (n < p + 2 || n > p + 3 || memcmp(s, prefix, p) != 0 || s[n - 1] != '>') return -1;
    const char *d = s + p;
    const size_t digits = n - p - 1;
    if (d[0] < '0' || d[0] > '9' || (digits == 2 && (d[0] == '0' || d[1] < '0' || d[1] > '9'))) return -1;
    int number = digits == 1 ? d[0] - '0' : (d[0] - '0') * 10 + (d[1] - '0');
    *strips_whitespace = true; /* T5Tokenizer adds them with lstrip=True, rstrip=True */
    return spm->n_pieces + T5_EXTRA_IDS - 1 - number;
}

/* The first special token in s[0..n): its offset (n if none), length, id. */
static size_t find_special(const kiln_spm *spm, const char *s, size_t n, size_t *len, int32_t *id, bool *strips)
{
    for (const char *lt = memchr(s, '<', n); lt; lt = memchr(lt + 1, '<', n - (size_t)(lt + 1 - s))) {
        const size_t at = (size_t)(lt - s);
        /* the longest special token, "<extra_id_99>", is 13 bytes */
        const char *gt = memchr(lt, '>', n - at < 13 ? n - at : 13);
        if (!gt) continue;
        *len = (size_t)(gt - lt) + 1;
        *id = t5_special_id(spm, lt, *len, strips);
        if (*id >= 0) return at;
    }
    *len = 0;
    *id = -1;
    *strips = false;
    return n;
}

/* Python's str.lstrip() / str.rstrip() on UTF-8 bytes. */
static void strip_left(const char **s, size_t *n)
{
    uint32_t cp;
    size_t len;
    while (*n && (len = utf8_decode((const uint8_t *)*s, *n, &cp)) && kiln_py_isspace(cp)) *s += len, *n -= len;
}

static void strip_right(const char *s, size_t *n)
{
    while (*n) {
        size_t start = *n - 1;
        while (start > 0 && *n - start < 4 && ((uint8_t)s[start] & 0xC0) == 0x80) start--;
        uint32_t cp;
        const size_t len = utf8_decode((const uint8_t *)s + start, *n - start, &cp);
        if (!len || start + len != *n || !kiln_py_isspace(cp)) return;
        *n = start;
    }
}

/* T5Tokenizer reads SentencePiece's pieces as strings and looks each up
 * again: a special token's text gives the special id, and an unknown run
 * the id of a piece of that text if there is one (an UNUSED piece, say). */
static int32_t t5_token_id(const kiln_spm *spm, const char *text, const spm_token *t)
{
    bool strips;
    int32_t special = t5_special_id(spm, text + t->start, t->len, &strips);
    if (special >= 0) return special;
    return t->id == spm->unk_id ? piece_to_id(spm, text + t->start, t->len) : t->id;
}

/* SentencePiece's encode of one stretch of text, appended to e->ids. */
static kiln_status encode_stretch(encoder *e, const char *text, size_t len, bool t5_ids)
{
    TRY(normalize(e, (const uint8_t *)text, len));
    TRY(viterbi(e));
    for (size_t i = 0; i < e->n_tokens; i++)
        TRY(push_id(e, t5_ids ? t5_token_id(e->spm, e->norm, &e->tokens[i]) : e->tokens[i].id));
    return KILN_OK;
}

/* T5Tokenizer.tokenize + convert_tokens_to_ids, up to `keep` ids: the special
 * tokens cut the text; each stretch between them, less the whitespace an
 * extra id on either side eats, is encoded on its own. What comes after the
 * first `keep` ids cannot change them, so the rest of the text is skipped. */
static kiln_status t5_ids(encoder *e, const char *text, size_t keep)
{
    size_t n = strlen(text);
    bool eat_left = false; /* the special token before this stretch eats its leading whitespace */
    while (e->n_ids < keep) {
        size_t special_len;
        int32_t special_id;
        bool strips;
        const size_t at = find_special(e->spm, text, n, &special_len, &special_id, &strips);
        const char *stretch = text;
        size_t stretch_len = at;
        if (eat_left) strip_left(&stretch, &stretch_len);
        if (strips) strip_right(stretch, &stretch_len);
        if (stretch_len) TRY(encode_stretch(e, stretch, stretch_len, true));
        if (special_id < 0) break;
        TRY(push_id(e, special_id));
        text += at + special_len;
        n -= at + special_len;
        eat_left = strips;
    }
    return KILN_OK;
}

kiln_status kiln_spm_encode_t5(const kiln_spm *spm, const char *text, int32_t *ids, int max_ids, int *n)
{
    *n = 0;
    if (max_ids < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "T5 tokenizer: max_ids is %d, at least 1 needed", max_ids);
    encoder e = {.spm = spm};
    const size_t keep = (size_t)max_ids - 1;
    kiln_status st = t5_ids(&e, text, keep);
    if (st == KILN_OK) {
        size_t count = e.n_ids < keep ? e.n_ids : keep;
        if (count) memcpy(ids, e.ids, count * sizeof *ids);
        /* build_inputs_with_special_tokens adds EOS only where it is not last already */
        if (count == 0 || ids[count - 1] != spm->eos_id) ids[count++] = spm->eos_id;
        *n = (int)count;
    }
    encoder_free(&e);
    return st;
}

kiln_status kiln_spm_normalize(const kiln_spm *spm, const char *text, size_t len, char **normalized,
                               size_t *normalized_len)
{
    *normalized = NULL;
    *normalized_len = 0;
    encoder e = {.spm = spm};
    kiln_status st = normalize(&e, (const uint8_t *)text, len);
    if (st == KILN_OK) {
        *normalized = e.norm;
        *normalized_len = e.norm_len;
        e.norm = NULL;
    }
    encoder_free(&e);
    return st;
}

kiln_status kiln_spm_encode(const kiln_spm *spm, const char *text, size_t len, int32_t **ids, size_t *count)
{
    *ids = NULL;
    *count = 0;
    encoder e = {.spm = spm};
    kiln_status st = encode_stretch(&e, text, len, false);
    if (st == KILN_OK && e.n_ids) {
        *ids = e.ids;
        *count = e.n_ids;
        e.ids = NULL;
    }
    encoder_free(&e);
    return st;
}
