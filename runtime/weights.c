#include "weights.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "convert.h"
#include "file.h"
#include "status.h"

/* Bound tensors live in chunks so pointers handed out stay valid. */
#define CHUNK 256

typedef struct chunk {
    kiln_tensor tensors[CHUNK];
    void *copies[CHUNK]; /* a tensor converted when placed (widened or narrowed), which a CPU buffer wraps */
    int used;
    struct chunk *next;
} chunk;

struct kiln_weights {
    kiln_backend *be;
    const kiln_checkpoint *ck;
    chunk *chunks;
    size_t bytes;
    kiln_dtype linear_dtype; /* float linear weights converted to this at bind; KILN_DTYPE_COUNT: as stored */
    cpu_pool *pool;          /* for converting weights, made when the first large one is */
};

kiln_status kiln_weights_create(kiln_backend *be, const kiln_checkpoint *ck, kiln_weights **out)
{
    kiln_weights *w = calloc(1, sizeof *w);
    if (!w) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "weights: out of host memory");
    w->be = be;
    w->ck = ck;
    w->linear_dtype = KILN_DTYPE_COUNT;
    *out = w;
    return KILN_OK;
}

void kiln_weights_free(kiln_weights *w)
{
    if (!w) return;
    for (chunk *c = w->chunks, *next; c; c = next) {
        next = c->next;
        for (int i = 0; i < c->used; i++) {
            w->be->ops->buffer_free(w->be, c->tensors[i].buffer);
            free(c->copies[i]);
        }
        free(c);
    }
    cpu_pool_free(w->pool);
    free(w);
}

size_t kiln_weights_bytes(const kiln_weights *w) { return w->bytes; }
kiln_backend *kiln_weights_backend(const kiln_weights *w) { return w->be; }
const kiln_checkpoint *kiln_weights_checkpoint(const kiln_weights *w) { return w->ck; }

/* Shapes agree when their dims other than 1 are the same, in order: a 1x1
 * conv kernel (O,C,1,1) is the same weight as a linear (O,C). */
static bool same_squeezed_shape(int na, const int64_t *a, int nb, const int64_t *b)
{
    int i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == 1) i++;
        while (j < nb && b[j] == 1) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return false;
    }
}

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    kiln_tensor t = {.ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    kiln_shape_str(&t, buf, size);
}

void kiln_weights_convert_linears(kiln_weights *w, kiln_dtype dtype) { w->linear_dtype = dtype; }

/* Values beyond which a conversion is shared among the cores. */
#define LARGE (1u << 18)

/* A copy of a weight in another dtype: a quantized one widened to f16 for an
 * op that reads only the float types, a float linear weight converted as
 * kiln_weights_convert_linears asks; on every core for a large one. */
static kiln_status convert_copy(kiln_weights *w, const char *name, const kiln_st_tensor *st, kiln_dtype to,
                                void **out, size_t *bytes)
{
    const size_t n = (size_t)kiln_st_numel(st);
    *bytes = kiln_dtype_bytes(to, n);
    void *copy = malloc(*bytes ? *bytes : 1);
    if (!copy)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory converting '%s' to %s",
                         kiln_checkpoint_path(w->ck), name, kiln_dtype_name(to));
    /* a pool for the first large one; small ones, and all without a pool, on this thread */
    if (n > LARGE && !w->pool && kiln_convert_pool(&w->pool) != KILN_OK) w->pool = NULL;
    kiln_convert_parallel(n > LARGE ? w->pool : NULL, st->data, st->dtype, copy, to, n);
    *out = copy;
    return KILN_OK;
}

/* The dtype a weight is placed in: a quantized one as stored in a linear
 * layer whose rows are whole blocks, else in f16 (a 1x1 conv's kernel, a
 * norm, a table); a float linear weight in the dtype asked for (rows of
 * whole blocks for a quantized one); else as stored. */
static kiln_dtype placed_dtype(const kiln_weights *w, const kiln_st_tensor *st, int64_t row, bool linear)
{
    if (kiln_dtype_is_quantized(st->dtype))
        return linear && row % kiln_dtype_block(st->dtype) == 0 ? st->dtype : KILN_F16;
    bool wide = st->dtype == KILN_F32 || st->dtype == KILN_F16 || st->dtype == KILN_BF16;
    if (linear && wide && w->linear_dtype != KILN_DTYPE_COUNT && row % kiln_dtype_block(w->linear_dtype) == 0)
        return w->linear_dtype;
    return st->dtype;
}

static kiln_status bind(kiln_weights *w, const char *name, int ndim, const int64_t *shape, bool linear,
                        const kiln_tensor **out)
{
    const kiln_st_tensor *st = kiln_checkpoint_find(w->ck, name);
    if (!st)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' is missing", kiln_checkpoint_path(w->ck), name);
    if (!same_squeezed_shape(st->ndim, st->shape, ndim, shape)) {
        char have[96], want[96];
        format_shape(have, sizeof have, st->ndim, st->shape);
        format_shape(want, sizeof want, ndim, shape);
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' has shape %s, the model expects %s",
                         kiln_checkpoint_path(w->ck), name, have, want);
    }
    switch (st->dtype) {
    case KILN_F32: case KILN_F16: case KILN_BF16: case KILN_F8_E4M3: case KILN_F8_E5M2: break;
    default:
        if (kiln_dtype_is_quantized(st->dtype)) break; /* whole blocks in its own rows (gguf.c) */
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' has dtype %s, not a float type",
                         kiln_checkpoint_path(w->ck), name, kiln_dtype_name(st->dtype));
    }
    if (!w->chunks || w->chunks->used == CHUNK) {
        chunk *c = calloc(1, sizeof *c);
        if (!c) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "weights: out of host memory");
        c->next = w->chunks;
        w->chunks = c;
    }
    kiln_tensor *t = &w->chunks->tensors[w->chunks->used];
    *t = (kiln_tensor){.dtype = st->dtype, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    const void *data = st->data;
    size_t bytes = st->nbytes;
    void *copy = NULL;
    t->dtype = placed_dtype(w, st, shape[ndim - 1], linear);
    if (t->dtype != st->dtype) {
        TRY(convert_copy(w, name, st, t->dtype, &copy, &bytes));
        data = copy;
        kiln_release_pages(st->data, st->nbytes); /* the stored bytes are read no more */
    }
    kiln_status status = w->be->ops->weights_place(w->be, data, bytes, &t->buffer);
    /* a GPU has copied it; the CPU's buffer wraps it */
    if (status != KILN_OK || w->be->kind != KILN_BACKEND_CPU) {
        free(copy);
        copy = NULL;
    }
    if (status != KILN_OK) return kiln_fail_context(status, "placing '%s'", name);
    w->chunks->copies[w->chunks->used] = copy;
    w->chunks->used++;
    w->bytes += bytes;
    *out = t;
    return KILN_OK;
}

kiln_status kiln_weights_bind(kiln_weights *w, const char *name, int ndim, const int64_t *shape,
                              const kiln_tensor **out)
{
    return bind(w, name, ndim, shape, false, out);
}

static kiln_status join(char *name, size_t size, const char *prefix, const char *suffix)
{
    if (snprintf(name, size, "%s%s%s", prefix, *prefix ? "." : "", suffix) >= (int)size)
        return kiln_fail(KILN_ERR_INVALID_ARG, "weight name too long: %s.%s", prefix, suffix);
    return KILN_OK;
}

kiln_status kiln_weights_bind_at(kiln_weights *w, const kiln_tensor **out, const char *prefix, const char *suffix,
                                 int ndim, const int64_t *shape)
{
    char name[512];
    TRY(join(name, sizeof name, prefix, suffix));
    return bind(w, name, ndim, shape, false, out);
}

kiln_status kiln_weights_bind_linear(kiln_weights *w, const kiln_tensor **out, const char *prefix, const char *suffix,
                                     int64_t out_features, int64_t in_features)
{
    char name[512];
    TRY(join(name, sizeof name, prefix, suffix));
    return bind(w, name, 2, (int64_t[]){out_features, in_features}, true, out);
}
