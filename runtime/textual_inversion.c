/* Textual-inversion embeddings: finding and reading them; see
 * textual_inversion.h. */
#include "textual_inversion.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "safetensors.h"
#include "status.h"
#include "torch_file.h"

#define MAX_FOLDER_DEPTH 16 /* subfolders followed (links too, as ComfyUI's walk) no deeper */

/* ---- finding ------------------------------------------------------------------------ */

static bool is_file(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

/* A name that stays inside the folder it is joined to once "." and ".."
 * are read (ComfyUI's commonpath check on the absolute paths). */
static bool stays_inside(const char *name)
{
    if (name[0] == '/' || name[0] == 0) return false;
    int depth = 0;
    for (const char *p = name; *p;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0) return false;
        } else if (len && !(len == 1 && p[0] == '.')) {
            depth++;
        }
        p += len + (end ? 1 : 0);
    }
    return depth > 0;
}

/* NAME, then NAME with each extension, in `folder`. */
static kiln_status find_in(const char *folder, const char *name, char **path)
{
    static const char *const extensions[] = {"", ".safetensors", ".pt", ".bin"};
    size_t cap = strlen(folder) + 1 + strlen(name) + sizeof ".safetensors";
    char *p = malloc(cap);
    if (!p) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "embedding %s: out of memory", name);
    for (size_t i = 0; i < sizeof extensions / sizeof *extensions; i++) {
        snprintf(p, cap, "%s/%s%s", folder, name, extensions[i]);
        if (is_file(p)) {
            *path = p;
            return KILN_OK;
        }
    }
    free(p);
    return KILN_OK;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* `folder`, then its subfolders in name order, depth first. */
static kiln_status find_under(const char *folder, const char *name, int depth, char **path)
{
    TRY(find_in(folder, name, path));
    if (*path || depth == MAX_FOLDER_DEPTH) return KILN_OK;
    struct dirent **entries;
    int n = scandir(folder, &entries, NULL, by_name);
    if (n < 0) return KILN_OK; /* an unreadable folder holds nothing */
    kiln_status st = KILN_OK;
    for (int i = 0; i < n; i++) {
        const char *e = entries[i]->d_name;
        if (st == KILN_OK && !*path && strcmp(e, ".") != 0 && strcmp(e, "..") != 0) {
            char *sub = malloc(strlen(folder) + strlen(e) + 2);
            struct stat s;
            if (!sub) {
                st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "embedding %s: out of memory", name);
            } else {
                sprintf(sub, "%s/%s", folder, e);
                if (stat(sub, &s) == 0 && S_ISDIR(s.st_mode)) st = find_under(sub, name, depth + 1, path);
                free(sub);
            }
        }
        free(entries[i]);
    }
    free(entries);
    return st;
}

kiln_status kiln_embedding_find(const char *dir, const char *name, char **path)
{
    *path = NULL;
    if (!dir || !stays_inside(name)) return KILN_OK;
    return find_under(dir, name, 0, path);
}

/* ---- reading ------------------------------------------------------------------------ */

/* One tensor of either kind of file. */
typedef struct named_tensor {
    const char *name;
    const kiln_st_tensor *st;
    const kiln_py_value *py;
} named_tensor;

typedef struct embedding_file {
    const char *path;
    kiln_st_file *st;
    kiln_torch_file *torch;
} embedding_file;

static int tensor_dims(const named_tensor *t) { return t->st ? t->st->ndim : t->py->tensor.ndim; }
static int64_t tensor_dim(const named_tensor *t, int d) { return t->st ? t->st->shape[d] : t->py->tensor.shape[d]; }

/* Reads tensors[0..n) as rows of their last dimension, one after another;
 * every one must be as wide as the first. */
static kiln_status read_rows(const embedding_file *f, const named_tensor *tensors, size_t n, float **vectors, int *count,
                             int *width)
{
    int64_t rows = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        const int dims = tensor_dims(&tensors[i]);
        if (dims < 1 || dims > 2)
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor %s has %d dimensions; an embedding is a vector or a matrix of "
                             "vectors", f->path, tensors[i].name, dims);
        const int64_t tw = tensor_dim(&tensors[i], dims - 1);
        if (i == 0) w = tw;
        if (tw != w || w < 1 || w > (1 << 16))
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor %s is %lld wide, not %lld", f->path, tensors[i].name,
                             (long long)tw, (long long)w);
        rows += dims == 2 ? tensor_dim(&tensors[i], 0) : 1;
    }
    if (rows < 1 || rows > 1024) return kiln_fail(KILN_ERR_FORMAT, "%s: %lld vectors, not 1 to 1024", f->path, (long long)rows);
    float *out = malloc((size_t)(rows * w) * sizeof *out), *at = out;
    if (!out) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", f->path);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < n && st == KILN_OK; i++) {
        float *part = NULL;
        size_t numel = 0;
        if (tensors[i].st) {
            st = kiln_st_read_f32(f->st, tensors[i].name, &part, &numel);
        } else {
            st = kiln_torch_read_f32(f->torch, tensors[i].py, &part);
            numel = (size_t)kiln_py_tensor_numel(tensors[i].py);
        }
        if (st == KILN_OK) memcpy(at, part, numel * sizeof *at), at += numel;
        free(part);
    }
    if (st != KILN_OK) {
        free(out);
        return st;
    }
    *vectors = out;
    *count = (int)rows;
    *width = (int)w;
    return KILN_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ComfyUI's choice among a dict's tensors (in its order): the key's, the
 * bundled ones, else the dict's first value (NULL: not a tensor). */
static kiln_status pick(const embedding_file *f, const named_tensor *all, size_t n, const named_tensor *first,
                        const char *key, float **vectors, int *count, int *width)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].name, key) == 0) return read_rows(f, &all[i], 1, vectors, count, width);
    named_tensor *bundled = malloc((n ? n : 1) * sizeof *bundled);
    if (!bundled) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", f->path);
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".%s", key);
    size_t m = 0;
    for (int pass = 0; pass < 2 && m == 0; pass++)
        for (size_t i = 0; i < n; i++)
            if (strncmp(all[i].name, "bundle_emb.", 11) == 0 && ends_with(all[i].name, pass ? suffix : ".string_to_param.*"))
                bundled[m++] = all[i];
    kiln_status st = m       ? read_rows(f, bundled, m, vectors, count, width)
                     : first ? read_rows(f, first, 1, vectors, count, width)
                             : kiln_fail(KILN_ERR_FORMAT, "%s: no %s tensor, and its first value is no tensor", f->path, key);
    free(bundled);
    return st;
}

static int by_tensor_name(const void *a, const void *b)
{
    return strcmp(((const named_tensor *)a)->name, ((const named_tensor *)b)->name);
}

static kiln_status read_safetensors(embedding_file *f, const char *key, float **vectors, int *count, int *width)
{
    TRY(kiln_st_open(f->path, &f->st));
    const size_t n = kiln_st_count(f->st);
    named_tensor *all = malloc((n ? n : 1) * sizeof *all);
    if (!all) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", f->path);
    for (size_t i = 0; i < n; i++) all[i] = (named_tensor){kiln_st_at(f->st, i)->name, kiln_st_at(f->st, i), NULL};
    qsort(all, n, sizeof *all, by_tensor_name);
    kiln_status st = pick(f, all, n, n ? &all[0] : NULL, key, vectors, count, width);
    free(all);
    return st;
}

/* A dict's tensor values with their string keys, in its order. */
static kiln_status dict_tensors(const embedding_file *f, const kiln_py_value *d, named_tensor **out, size_t *n)
{
    *n = 0;
    if (!(*out = malloc((d->n ? d->n : 1) * sizeof **out))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", f->path);
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i]->kind == KILN_PY_STR && d->items[i]->kind == KILN_PY_TENSOR)
            (*out)[(*n)++] = (named_tensor){d->keys[i]->s, NULL, d->items[i]};
    return KILN_OK;
}

static kiln_status read_torch(embedding_file *f, const char *key, int width, float **vectors, int *count, int *w)
{
    TRY(kiln_torch_open(f->path, &f->torch));
    const kiln_py_value *root = kiln_torch_root(f->torch);
    named_tensor *all;
    size_t n = 0;
    if (root->kind == KILN_PY_LIST) { /* every tensor of the dicts as wide as the tower's rows */
        size_t total = 0;
        for (size_t i = 0; i < root->n; i++) total += root->items[i]->kind == KILN_PY_DICT ? root->items[i]->n : 0;
        if (!(all = malloc((total ? total : 1) * sizeof *all))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", f->path);
        for (size_t i = 0; i < root->n; i++) {
            const kiln_py_value *d = root->items[i];
            for (size_t j = 0; d->kind == KILN_PY_DICT && j < d->n; j++) {
                const kiln_py_value *t = d->items[j];
                if (t->kind == KILN_PY_TENSOR && t->tensor.ndim >= 1 && t->tensor.shape[t->tensor.ndim - 1] == width)
                    all[n++] = (named_tensor){d->keys[j]->kind == KILN_PY_STR ? d->keys[j]->s : "(a list item)", NULL, t};
            }
        }
        kiln_status st = n ? read_rows(f, all, n, vectors, count, w)
                           : kiln_fail(KILN_ERR_FORMAT, "%s: no tensor %d wide in its list", f->path, width);
        free(all);
        return st;
    }
    if (root->kind != KILN_PY_DICT) return kiln_fail(KILN_ERR_FORMAT, "%s: holds neither a dict nor a list", f->path);
    const kiln_py_value *params = kiln_py_dict_get(root, "string_to_param");
    if (params) { /* A1111's: the first of its parameters */
        if (params->kind != KILN_PY_DICT || !params->n || params->items[0]->kind != KILN_PY_TENSOR)
            return kiln_fail(KILN_ERR_FORMAT, "%s: string_to_param holds no tensor", f->path);
        return read_rows(f, &(named_tensor){"string_to_param", NULL, params->items[0]}, 1, vectors, count, w);
    }
    TRY(dict_tensors(f, root, &all, &n));
    const bool first_is_tensor = root->n && root->keys[0]->kind == KILN_PY_STR && root->items[0]->kind == KILN_PY_TENSOR;
    kiln_status st = pick(f, all, n, first_is_tensor ? &all[0] : NULL, key, vectors, count, w);
    free(all);
    return st;
}

kiln_status kiln_embedding_read(const char *path, const char *key, int width, float **vectors, int *count,
                                int *vector_width)
{
    *vectors = NULL;
    *count = *vector_width = 0;
    embedding_file f = {.path = path};
    size_t n = strlen(path);
    const bool safetensors = n >= 12 && strcasecmp(path + n - 12, ".safetensors") == 0;
    kiln_status st = safetensors ? read_safetensors(&f, key, vectors, count, vector_width)
                                 : read_torch(&f, key, width, vectors, count, vector_width);
    if (f.st) kiln_st_close(f.st);
    kiln_torch_close(f.torch);
    return st;
}
