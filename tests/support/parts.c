#include "parts.h"

#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

#include "safetensors.h"

void parts_write(const char *from, const char *prefix, const char *to)
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(from, &f));
    kiln_st_entry *entries = calloc(kiln_st_count(f), sizeof *entries);
    size_t n = 0;
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (strncmp(t->name, prefix, strlen(prefix)) != 0) continue;
        kiln_st_entry *e = &entries[n++];
        *e = (kiln_st_entry){.name = t->name + strlen(prefix), .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(e->shape, t->shape, sizeof t->shape);
    }
    assert_true(n > 0);
    assert_kiln_ok(kiln_st_write(to, entries, n, NULL, 0));
    free(entries);
    kiln_st_close(f);
}

size_t parts_assert_same_tensors(const kiln_checkpoint *want, const kiln_checkpoint *got, const char *spare)
{
    size_t compared = 0;
    for (size_t i = 0; i < kiln_checkpoint_count(want); i++) {
        const char *name;
        const kiln_st_tensor *w = kiln_checkpoint_at(want, i, &name), *g = kiln_checkpoint_find(got, name);
        if (spare && strstr(name, spare)) continue;
        if (!g) fail_msg("'%s' is missing", name);
        if (g->dtype != w->dtype || g->ndim != w->ndim || memcmp(g->shape, w->shape, sizeof w->shape[0] * w->ndim))
            fail_msg("'%s' has another dtype or shape", name);
        if (memcmp(g->data, w->data, w->nbytes) != 0) fail_msg("'%s' has other values", name);
        compared++;
    }
    return compared;
}
