/* T5's tokenizer: a SentencePiece unigram model read from a `spiece.model`
 * file (PixArt's `tokenizer/`, Flux's `tokenizer_2/`), giving the ids that
 * transformers' T5Tokenizer (the slow one, legacy=True) gives, which is what
 * diffusers' PixArt pipelines feed T5 v1.1 XXL.
 *
 * SentencePiece's part, as its library does it:
 *   - normalization: user-defined pieces are copied as they are; otherwise
 *     the longest match in the model's precompiled character map (for T5
 *     nmt_nfkc: NFKC, tabs and newlines as spaces, control characters
 *     dropped) replaces it; a byte that does not start valid UTF-8 becomes
 *     U+FFFD; leading, trailing and repeated spaces go; one space is put in
 *     front (the dummy prefix) and every space becomes U+2581;
 *   - the unigram Viterbi: the split whose pieces' scores sum highest, a
 *     character no piece of its own starts with scored as the lowest piece
 *     score minus 10 and emitted as the unknown id (a run of them as one),
 *     a user-defined piece scored 0.1 a byte less 0.1 (above any normal
 *     piece's log probability), ties and float sums as sentencepiece 0.2.3
 *     has them.
 *
 * T5Tokenizer's part: the literal special tokens "</s>", "<pad>", "<unk>"
 * and "<extra_id_0>" ... "<extra_id_99>" cut the text first and map to
 * their ids (extra id N is vocab_size + 99 - N); an extra id also eats the
 * whitespace on both its sides (Python's str.isspace). Each other stretch
 * is encoded on its own, so it starts a new word (gets the dummy prefix)
 * even right after a special token. EOS ends the ids unless they already
 * end with it.
 *
 * A tokenizer is immutable once opened: encode from many threads at once. */
#ifndef KILN_SPM_TOKENIZER_H
#define KILN_SPM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

typedef struct kiln_spm kiln_spm;

/* Reads a SentencePiece model file, a T5 encoder's GGUF file (the model
 * llama.cpp's converter writes into tokenizer.ggml.*), or the
 * tokenizer.json (Hugging Face tokenizers) transformers converts one to: its Unigram vocab and scores,
 * added_tokens as control (special) and user-defined pieces, the
 * Precompiled normalizer's character map, a Replace of " {2,}" as
 * remove_extra_whitespaces and a Metaspace pre-tokenizer as the dummy prefix
 * and escaped spaces; the 100 sentinels its vocab ends with are left to
 * T5Tokenizer's rule as for spiece.model. Errors name the file: KILN_ERR_IO (cannot
 * read it), KILN_ERR_FORMAT (truncated or malformed protobuf, duplicate or
 * empty pieces, no unknown piece, not a T5 vocabulary: no "</s>", "<pad>" or
 * "<unk>" piece), KILN_ERR_UNSUPPORTED (a BPE, word or char model, byte
 * fallback, whitespace as suffix), KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_spm_open(const char *path, kiln_spm **out);
void kiln_spm_free(kiln_spm *spm); /* NULL ok */

/* The model's pieces, without T5Tokenizer's 100 extra ids. */
int32_t kiln_spm_vocab_size(const kiln_spm *spm);
int32_t kiln_spm_eos(const kiln_spm *spm); /* the id of "</s>" */
int32_t kiln_spm_pad(const kiln_spm *spm); /* the id of "<pad>" */

/* What tokenizer(text, max_length=max_ids, truncation=True).input_ids gives
 * with T5Tokenizer: the ids of `text` (UTF-8, NUL-terminated) cut to their
 * first max_ids - 1, then EOS unless the kept ids already end with it, so at
 * most max_ids ids, the last EOS. `ids` holds max_ids; *n gets the count.
 * max_ids >= 1; with max_ids == 1 the answer is EOS alone (transformers
 * there refuses to truncate and gives every id). Bytes that are not UTF-8
 * are read as SentencePiece reads them. Errors: KILN_ERR_INVALID_ARG
 * (max_ids < 1), KILN_ERR_FORMAT (a corrupt character map, found when a
 * text reaches it), KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_spm_encode_t5(const kiln_spm *spm, const char *text, int32_t *ids, int max_ids, int *n);

/* SentencePiece alone, for tests and tools: SentencePieceProcessor's
 * normalize(text) (malloc'd, NUL-terminated; *len without the NUL) and
 * encode(text) (ids malloc'd, NULL when *count is 0; a run of unknown
 * characters is one unknown id) for `len` bytes of text, no special tokens
 * recognised, no EOS. Errors as kiln_spm_encode_t5. */
kiln_status kiln_spm_normalize(const kiln_spm *spm, const char *text, size_t len, char **normalized,
                               size_t *normalized_len);
kiln_status kiln_spm_encode(const kiln_spm *spm, const char *text, size_t len, int32_t **ids, size_t *count);

#endif
