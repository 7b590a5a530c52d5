/* Whole checkpoints taken apart into the files ComfyUI's loaders take one
 * by one (UNETLoader, CLIPLoader, VAELoader), and checkpoints compared
 * tensor by tensor. */
#ifndef KILN_TEST_PARTS_H
#define KILN_TEST_PARTS_H

#include <stddef.h>

#include "checkpoint.h"

/* Writes the tensors of the safetensors file `from` whose names begin with
 * `prefix` to the file `to`, without the prefix. */
void parts_write(const char *from, const char *prefix, const char *to);

/* Every tensor of `want` is in `got` under its name with the same dtype,
 * shape and bytes, but those whose names hold `spare` (when not NULL: what
 * one layout carries and kiln does not read); returns how many were
 * compared. */
size_t parts_assert_same_tensors(const kiln_checkpoint *want, const kiln_checkpoint *got, const char *spare);

#endif
