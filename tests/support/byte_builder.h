/* Files written byte by byte in tests: hand-made GGUF headers, pickles. */
#ifndef KILN_TEST_BYTE_BUILDER_H
#define KILN_TEST_BYTE_BUILDER_H

#include <stddef.h>
#include <stdint.h>

typedef struct byte_builder {
    uint8_t data[4096];
    size_t n;
} byte_builder;

/* Appends n bytes; fails the test where they do not fit. */
void put_bytes(byte_builder *b, const void *p, size_t n);

#endif
