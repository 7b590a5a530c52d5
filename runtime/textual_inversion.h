/* Textual-inversion embeddings: the vectors "embedding:NAME" puts into a
 * prompt in place of tokens, found and read as ComfyUI's load_embed
 * (comfy/sd1_clip.py) finds and reads them.
 *
 * Files: A1111's (`string_to_param`, a .pt or .safetensors `emb_params`),
 * SDXL's pairs (`clip_l` and `clip_g`), diffusers' learned_embeds.bin (one
 * vector under its token), embeddings bundled in a LoRA (`bundle_emb.*`),
 * as .safetensors or torch.save's .pt/.bin (torch_file.h). */
#ifndef KILN_TEXTUAL_INVERSION_H
#define KILN_TEXTUAL_INVERSION_H

#include "kiln.h"

/* Finds NAME in `dir` or a folder under it (subfolders sorted by name,
 * depth first): the file NAME itself, else NAME.safetensors, NAME.pt,
 * NAME.bin. A NAME that leads outside `dir` ("../x", "/x") is not looked up.
 * *path is malloc'd, NULL when there is none. */
kiln_status kiln_embedding_find(const char *dir, const char *name, char **path);

/* The vectors a file holds for a text tower whose embedding key is `key`
 * ("clip_l", "clip_g", "clip_h") and whose rows are `width` wide, picked as
 * ComfyUI picks them: `string_to_param`'s first tensor; in a list of dicts,
 * every tensor `width` wide; the tensor under `key`; the `bundle_emb.*`
 * tensors (`.string_to_param.*`, else `.<key>`) one after another; else the
 * first tensor (a .safetensors file's by name, as safetensors lists them).
 * A 1-D tensor is one vector, a 2-D one a vector per row. *vectors
 * (count x *vector_width floats) is malloc'd; the width may differ from
 * `width` (the caller decides what an embedding of another width does). */
kiln_status kiln_embedding_read(const char *path, const char *key, int width, float **vectors, int *count,
                                int *vector_width);

#endif
