#include "byte_builder.h"

#include "kiln_test.h"

void put_bytes(byte_builder *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->data);
    memcpy(b->data + b->n, p, n);
    b->n += n;
}
