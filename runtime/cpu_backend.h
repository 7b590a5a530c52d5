/* CPU backend internals shared by its files (buffers are plain host memory). */
#ifndef KILN_CPU_BACKEND_H
#define KILN_CPU_BACKEND_H

#include "backend.h"
#include "cpu_ref.h"

struct kiln_buffer {
    void *base;
    size_t size;
    int owned; /* 0: wraps weights in a checkpoint mmap */
};

static inline void *cpu_ptr(const kiln_tensor *t) { return (char *)t->buffer->base + t->offset; }
static inline kiln_weight_ptr cpu_weight(const kiln_tensor *t)
{
    return (kiln_weight_ptr){t ? cpu_ptr(t) : NULL, t ? t->dtype : KILN_F32};
}

#endif
