/* Reading a whole file into memory, for the small files kiln parses
 * itself (pictures, tokenizer models, JSON configs). */
#ifndef KILN_FILE_H
#define KILN_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

/* The file's bytes, malloc'd into *data (NUL-terminated one past *size, so
 * that text can be parsed in place). Refused, naming the path, when it
 * cannot be opened, is no regular file (a directory: "not <kind>") or holds
 * more than max_bytes. */
kiln_status kiln_read_file(const char *path, size_t max_bytes, const char *kind, uint8_t **data, size_t *size);

#endif
