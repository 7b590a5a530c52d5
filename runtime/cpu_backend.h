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

/* A CPU backend whose ops are the plain loops of cpu_ref.c: the yardstick the
 * op tests check against float64, and the baseline the bench compares with. */
kiln_status kiln_backend_cpu_reference_create(const kiln_backend_options *opt, kiln_backend **out);

#endif
