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

/* The file mapped read-only (weights files, of which a part is read, or
 * read once), released by kiln_unmap_file. Refused, naming the path, as
 * kiln_read_file refuses, and when it is empty. */
kiln_status kiln_map_file(const char *path, const char *kind, const uint8_t **data, size_t *size);
void kiln_unmap_file(const uint8_t *data, size_t size);

/* Advises that the pages wholly inside [data, data + size) are not needed
 * again soon: a mapped file's pages leave memory (read back if touched),
 * other memory keeps its contents (MADV_PAGEOUT; nothing where the kernel
 * lacks it). For a weight kiln has converted, whose stored bytes it no
 * longer reads. */
void kiln_release_pages(const void *data, size_t size);

#endif
