/* CLIP's byte-level BPE tokenizer, the one in front of every SD 1.x/2.x/XL
 * text encoder, with the vocabulary linked into the library.
 *
 * Encoding follows transformers' CLIPTokenizer (slow): the literal special
 * tokens "<|startoftext|>" and "<|endoftext|>" split the text first; each
 * piece is cleaned (see kiln_text_cleaning), its whitespace collapsed and
 * lower-cased as Python's str.lower() does; CLIP's pattern cuts it into
 * words (the special tokens, 's 't 're 've 'm 'll 'd, runs of letters, single
 * digits, runs of other non-space characters); each word's UTF-8 bytes are
 * merged by BPE rank, its last symbol marked as word-final ("</w>").
 *
 * A tokenizer is immutable once made: encode from many threads at once. */
#ifndef KILN_TOKENIZER_H
#define KILN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#define KILN_CLIP_BOS 49406     /* <|startoftext|> */
#define KILN_CLIP_EOS 49407     /* <|endoftext|>, also the padding of SD 1.x */
#define KILN_CLIP_CONTEXT 77    /* ids per window: BOS, 75 tokens, EOS */
#define KILN_CLIP_VOCAB 49408

/* How a text is cleaned before it is cut into words. */
typedef enum kiln_text_cleaning {
    /* CLIP's own: ftfy.fix_text with its default settings (HTML entities
     * unless the line holds a '<', C1 controls read as Windows-1252, Latin
     * ligatures split, full/half-width forms narrowed, curly quotes
     * straightened, control characters dropped, NFC), repeated until nothing
     * changes. ftfy's mojibake repair (re-decoding text that was decoded in
     * the wrong encoding) is not done. */
    KILN_TEXT_CLEAN_FTFY,
    /* What transformers does where ftfy is not installed, as in stock
     * ComfyUI: control, format, private-use and unassigned characters dropped,
     * spaces around each CJK ideograph, NFC; entities and quotes stay. */
    KILN_TEXT_CLEAN_BASIC,
} kiln_text_cleaning;

typedef struct kiln_tokenizer kiln_tokenizer;

/* A tokenizer with KILN_TEXT_CLEAN_FTFY. Inflates and indexes the vocabulary
 * (some 50 ms). Errors: KILN_ERR_OUT_OF_MEMORY, KILN_ERR_FORMAT (a corrupt
 * vocabulary: a build problem). */
kiln_status kiln_tokenizer_create(kiln_tokenizer **out);
kiln_status kiln_tokenizer_create_with(kiln_text_cleaning cleaning, kiln_tokenizer **out);
void kiln_tokenizer_free(kiln_tokenizer *tok);

/* The token ids of `text` (UTF-8), without BOS/EOS and without truncation,
 * so that callers can cut them into windows. `*ids` is malloc'd (NULL when
 * `*count` is 0); the caller frees it. Errors: KILN_ERR_INVALID_ARG (text
 * not valid UTF-8, naming the byte offset), KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_tokenizer_encode(const kiln_tokenizer *tok, const char *text, int32_t **ids, size_t *count);

/* The one-window sequence transformers' CLIPTokenizer gives with
 * padding="max_length", truncation=True, max_length=77 for SD 1.x:
 * BOS, the first 75 ids, EOS, then EOS as padding. */
kiln_status kiln_tokenizer_encode_padded(const kiln_tokenizer *tok, const char *text,
                                         int32_t ids[KILN_CLIP_CONTEXT]);

/* Helpers shared with the prompt parser. */
/* Python's str.isspace() for one code point. */
bool kiln_py_isspace(uint32_t c);
/* Whether `text` is valid UTF-8; if not, *bad_at is the first bad byte's offset. */
bool kiln_utf8_valid(const char *text, size_t *bad_at);

#endif
