/* ComfyUI's prompt handling for SD 1.x, 2.x and XL CLIP (comfy/sd1_clip.py,
 * sd2_clip.py, sdxl_clip.py, ComfyUI 0.3.64): weight syntax, then 77-id
 * windows of token ids and weights (each text tower tokenizes on its own).
 *
 * Weights: "(text)" multiplies the weight around it by 1.1 (so "((a))" is
 * 1.21), "(text:1.3)" sets 1.3 whatever surrounds it (the number after the
 * last ':' that is not the first character; Python's float() syntax), and a
 * number that does not parse keeps the x1.1 and the ':' text. "\(" and "\)"
 * are literal parentheses; square brackets and braces are plain text.
 * Unbalanced parentheses are read as ComfyUI reads them (a stray ')' makes
 * what follows plain text).
 *
 * Windows: each weighted segment is tokenized on its own (a text after
 * " embedding:" or "\nembedding:" starts a new piece). A piece of fewer than
 * 8 tokens that does not fit in what is left of the current 75-token window
 * moves whole to the next one (the window is closed with EOS and padded); a
 * longer piece fills the window and goes on in the next. Every window is BOS,
 * up to 75 tokens, EOS, padding: 77 ids. SD 1.x pads with EOS, SD 2.x with
 * 0 (the text encoder's clip_config says which).
 *
 * Textual-inversion embeddings: "embedding:NAME" puts the vectors of the
 * file NAME (textual_inversion.h) in place of tokens, one position each, a
 * piece of their own (placed by the rules above). The text after NAME goes
 * on as text, as ComfyUI's _try_get_embedding leaves it (NAME ends at
 * whitespace; "NAME," not found is looked up as "NAME" with its commas
 * left to the text). A NAME with no file is dropped with a warning and
 * counted in missing_embeddings; a file of vectors of another width than
 * the tower's takes its positions in the windows, and the encoder leaves
 * them out and pads after (ComfyUI's process_tokens), with a warning. */
#ifndef KILN_PROMPT_H
#define KILN_PROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"
#include "tokenizer.h"

typedef struct kiln_prompt_segment {
    char *text;    /* UTF-8; "\(" and "\)" already read as "(" and ")" */
    double weight;
} kiln_prompt_segment;

/* Splits a prompt into weighted segments, in order (ComfyUI's
 * token_weights(escape_important(prompt), 1.0), then unescape_important).
 * `*segments` is malloc'd; free with kiln_prompt_segments_free. Errors:
 * KILN_ERR_INVALID_ARG (not UTF-8; parentheses nested deeper than
 * KILN_PROMPT_MAX_NESTING), KILN_ERR_OUT_OF_MEMORY. */
#define KILN_PROMPT_MAX_NESTING 900
kiln_status kiln_prompt_parse(const char *prompt, kiln_prompt_segment **segments, size_t *count);
void kiln_prompt_segments_free(kiln_prompt_segment *segments, size_t count);

/* Where embedding:NAME is looked up, for which text tower. */
typedef struct kiln_prompt_embeddings {
    const char *dir; /* the embeddings folder (ComfyUI's models/embeddings); NULL: none */
    const char *key; /* the tower's tensor in a file of several: "clip_l", "clip_g", "clip_h" */
    int width;       /* the tower's token rows */
} kiln_prompt_embeddings;

/* An id of a vector of another width than the tower's (left out in encoding). */
#define KILN_PROMPT_MISFIT INT32_MIN

typedef struct kiln_prompt_tokens {
    int n_windows;                        /* >= 1 */
    int32_t (*ids)[KILN_CLIP_CONTEXT];    /* (n_windows, 77); an id < 0 other than KILN_PROMPT_MISFIT is
                                             embedding vector -1 - id */
    double (*weights)[KILN_CLIP_CONTEXT]; /* (n_windows, 77); 1 at BOS, EOS and padding */
    bool weighted;                        /* some weight != 1: encoding needs z_empty */
    float *vectors;                       /* (nvectors, width): the embeddings' vectors */
    int nvectors, width;
    int missing_embeddings;               /* "embedding:NAME" names with no file, left out */
} kiln_prompt_tokens;

/* SDTokenizer.tokenize_with_weights, windows padded with pad_id, the
 * embeddings looked up as `embeddings` says (NULL: none found). Free the
 * result with kiln_prompt_tokens_free (also safe on a zeroed struct). Errors
 * as for kiln_prompt_parse, kiln_tokenizer_encode and kiln_embedding_read
 * (a file that is there but unreadable). */
kiln_status kiln_prompt_tokenize(const kiln_tokenizer *tok, const char *prompt, int32_t pad_id,
                                 const kiln_prompt_embeddings *embeddings, kiln_prompt_tokens *out);
void kiln_prompt_tokens_free(kiln_prompt_tokens *t);

#endif
