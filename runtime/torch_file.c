/* torch.save's zip files and a restricted unpickler; see torch_file.h. */
#include "torch_file.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "safetensors.h"
#include "status.h"

#define MAX_PICKLE_BYTES ((size_t)256 << 20)
#define MAX_MEMO ((size_t)1 << 22)
#define MAX_STACK ((size_t)1 << 22)

struct kiln_torch_file {
    char *path;
    zip_t *zip;
    char *prefix; /* "<name>/": the archive's folder, before data.pkl */
    kiln_py_value **values; /* every value made, freed at close */
    size_t nvalues, values_cap;
    kiln_py_value *root;
};

/* The storage types torch.save names, their element sizes and how they
 * widen (f64 by hand: kiln has no such dtype). */
typedef struct storage_type {
    const char *name;
    size_t bytes;
    kiln_dtype dtype;
    bool f64;
} storage_type;

static const storage_type storage_types[] = {
    {"FloatStorage", 4, KILN_F32, false}, {"HalfStorage", 2, KILN_F16, false},
    {"BFloat16Storage", 2, KILN_BF16, false}, {"DoubleStorage", 8, KILN_F32, true},
    {"LongStorage", 8, KILN_I64, false}, {"IntStorage", 4, KILN_I32, false},
    {"ByteStorage", 1, KILN_U8, false}, {"BoolStorage", 1, KILN_U8, false},
};

static const storage_type *find_storage_type(const char *name)
{
    for (size_t i = 0; i < sizeof storage_types / sizeof *storage_types; i++)
        if (strcmp(storage_types[i].name, name) == 0) return &storage_types[i];
    return NULL;
}

/* ---- values ------------------------------------------------------------------ */

static kiln_py_value *new_value(kiln_torch_file *f, kiln_py_kind kind)
{
    if (f->nvalues == f->values_cap) {
        size_t cap = f->values_cap ? 2 * f->values_cap : 64;
        kiln_py_value **v = realloc(f->values, cap * sizeof *v);
        if (!v) return NULL;
        f->values = v;
        f->values_cap = cap;
    }
    kiln_py_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    f->values[f->nvalues++] = v;
    return v;
}

static void free_value(kiln_py_value *v)
{
    free(v->s);
    free(v->items);
    free(v->keys);
    free(v);
}

/* Appends item (and, for a dict, its key) to a container. */
static bool push_item(kiln_py_value *c, kiln_py_value *key, kiln_py_value *item)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4;
        kiln_py_value **items = realloc(c->items, cap * sizeof *items);
        if (!items) return false;
        c->items = items;
        if (c->kind == KILN_PY_DICT) {
            kiln_py_value **keys = realloc(c->keys, cap * sizeof *keys);
            if (!keys) return false;
            c->keys = keys;
        }
        c->cap = cap;
    }
    if (c->kind == KILN_PY_DICT) c->keys[c->n] = key;
    c->items[c->n++] = item;
    return true;
}

const kiln_py_value *kiln_py_dict_get(const kiln_py_value *d, const char *key)
{
    if (!d || d->kind != KILN_PY_DICT) return NULL;
    /* a dict's later setting of a key wins, as Python's */
    for (size_t i = d->n; i-- > 0;)
        if (d->keys[i]->kind == KILN_PY_STR && strcmp(d->keys[i]->s, key) == 0) return d->items[i];
    return NULL;
}

int64_t kiln_py_tensor_numel(const kiln_py_value *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->tensor.ndim; d++) n *= t->tensor.shape[d];
    return n;
}

/* ---- the unpickler ------------------------------------------------------------- */

typedef struct unpickler {
    kiln_torch_file *f;
    const uint8_t *p;
    size_t n, at;
    kiln_py_value **stack;
    size_t depth, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    kiln_py_value **memo;
    size_t memo_len;
} unpickler;

static kiln_status bad(const unpickler *u, const char *what)
{
    return kiln_fail(KILN_ERR_FORMAT, "%s: its pickle is malformed at byte %zu: %s", u->f->path, u->at, what);
}

static kiln_status no_memory(const unpickler *u)
{
    return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory reading its pickle", u->f->path);
}

static bool take(unpickler *u, size_t n, const uint8_t **out)
{
    if (n > u->n - u->at) return false;
    *out = u->p + u->at;
    u->at += n;
    return true;
}

static uint64_t little_endian(const uint8_t *b, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | b[i];
    return v;
}

static kiln_status push(unpickler *u, kiln_py_value *v)
{
    if (!v) return no_memory(u);
    if (u->depth == u->stack_cap) {
        if (u->stack_cap >= MAX_STACK) return bad(u, "a stack deeper than kiln reads");
        size_t cap = u->stack_cap ? 2 * u->stack_cap : 64;
        kiln_py_value **s = realloc(u->stack, cap * sizeof *s);
        if (!s) return no_memory(u);
        u->stack = s;
        u->stack_cap = cap;
    }
    u->stack[u->depth++] = v;
    return KILN_OK;
}

/* The top of the stack, above the last mark. */
static kiln_status pop(unpickler *u, kiln_py_value **out)
{
    size_t floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
    if (u->depth <= floor) return bad(u, "an empty stack popped");
    *out = u->stack[--u->depth];
    return KILN_OK;
}

static kiln_status top(unpickler *u, kiln_py_value **out)
{
    size_t floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
    if (u->depth <= floor) return bad(u, "an empty stack read");
    *out = u->stack[u->depth - 1];
    return KILN_OK;
}

/* The values since the last mark, which is dropped: *items, *count. */
static kiln_status pop_mark(unpickler *u, kiln_py_value ***items, size_t *count)
{
    if (!u->nmarks) return bad(u, "no mark");
    size_t m = u->marks[--u->nmarks];
    *items = u->stack + m;
    *count = u->depth - m;
    u->depth = m;
    return KILN_OK;
}

static kiln_status memo_put(unpickler *u, size_t key)
{
    kiln_py_value *v = NULL;
    TRY(top(u, &v));
    if (key >= MAX_MEMO) return bad(u, "a memo key past what kiln reads");
    if (key >= u->memo_len) {
        kiln_py_value **m = realloc(u->memo, (key + 1) * sizeof *m);
        if (!m) return no_memory(u);
        memset(m + u->memo_len, 0, (key + 1 - u->memo_len) * sizeof *m);
        u->memo = m;
        u->memo_len = key + 1;
    }
    u->memo[key] = v;
    return KILN_OK;
}

static kiln_status memo_get(unpickler *u, size_t key)
{
    if (key >= u->memo_len || !u->memo[key]) return bad(u, "a memo key never set");
    return push(u, u->memo[key]);
}

static kiln_status push_string(unpickler *u, size_t len)
{
    const uint8_t *b;
    if (!take(u, len, &b)) return bad(u, "a string past the end");
    kiln_py_value *v = new_value(u->f, KILN_PY_STR);
    if (!v || !(v->s = malloc(len + 1))) return no_memory(u);
    memcpy(v->s, b, len);
    v->s[len] = 0;
    v->n = len;
    return push(u, v);
}

static kiln_status push_int(unpickler *u, int64_t i)
{
    kiln_py_value *v = new_value(u->f, KILN_PY_INT);
    if (!v) return no_memory(u);
    v->i = i;
    return push(u, v);
}

static kiln_status push_callable(unpickler *u, const char *module, size_t ml, const char *name, size_t nl)
{
    kiln_py_value *v = new_value(u->f, KILN_PY_OBJECT);
    if (!v || !(v->s = malloc(ml + nl + 2))) return no_memory(u);
    memcpy(v->s, module, ml);
    v->s[ml] = '.';
    memcpy(v->s + ml + 1, name, nl);
    v->s[ml + 1 + nl] = 0;
    return push(u, v);
}

/* A tuple of the values since the last mark, or of the top n. */
static kiln_status make_tuple(unpickler *u, kiln_py_value **items, size_t count)
{
    kiln_py_value *t = new_value(u->f, KILN_PY_TUPLE);
    if (!t) return no_memory(u);
    for (size_t i = 0; i < count; i++)
        if (!push_item(t, NULL, items[i])) return no_memory(u);
    return push(u, t);
}

static bool all_ints(const kiln_py_value *t, int max)
{
    if (t->kind != KILN_PY_TUPLE || t->n > (size_t)max) return false;
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i]->kind != KILN_PY_INT) return false;
    return true;
}

/* torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...). */
static kiln_status rebuild_tensor(unpickler *u, const kiln_py_value *args, kiln_py_value **out)
{
    if (args->n < 4 || args->items[0]->kind != KILN_PY_STORAGE || args->items[1]->kind != KILN_PY_INT ||
        !all_ints(args->items[2], KILN_PY_MAX_DIMS) || !all_ints(args->items[3], KILN_PY_MAX_DIMS) ||
        args->items[2]->n != args->items[3]->n)
        return bad(u, "a tensor rebuilt from other than a storage, an offset, a size and a stride");
    kiln_py_value *t = new_value(u->f, KILN_PY_TENSOR);
    if (!t) return no_memory(u);
    const kiln_py_value *storage = args->items[0];
    t->storage = storage;
    t->type = storage->type;
    t->tensor.offset = args->items[1]->i;
    t->tensor.ndim = (int)args->items[2]->n;
    /* every element it reaches must lie in its storage */
    if (t->tensor.offset < 0) return bad(u, "a tensor before its storage");
    int64_t last = t->tensor.offset, numel = 1;
    bool empty = false;
    for (int d = 0; d < t->tensor.ndim; d++) {
        int64_t size = args->items[2]->items[d]->i, stride = args->items[3]->items[d]->i;
        if (size < 0 || stride < 0 || size > ((int64_t)1 << 40) || stride > ((int64_t)1 << 40))
            return bad(u, "a tensor's size or stride out of range");
        /* an expanded view (strides of 0) may name more elements than its storage holds: never past 2^40 */
        if (size && numel > ((int64_t)1 << 40) / size) return bad(u, "a tensor of more elements than kiln reads");
        numel *= size;
        t->tensor.shape[d] = size;
        t->tensor.stride[d] = stride;
        if (size == 0) empty = true;
        else if (stride && size - 1 > (INT64_MAX - last) / stride) return bad(u, "a tensor reaching past its storage");
        else last += (size - 1) * stride;
    }
    if (!empty && last >= storage->numel)
        return bad(u, "a tensor reaching past its storage");
    *out = t;
    return KILN_OK;
}

static kiln_status reduce(unpickler *u)
{
    kiln_py_value *args = NULL, *fn = NULL, *v = NULL;
    TRY(pop(u, &args));
    TRY(pop(u, &fn));
    if (args->kind != KILN_PY_TUPLE || fn->kind != KILN_PY_OBJECT || !fn->s) return bad(u, "REDUCE without a callable and a tuple");
    if (strcmp(fn->s, "torch._utils._rebuild_tensor_v2") == 0 || strcmp(fn->s, "torch._utils._rebuild_tensor") == 0) {
        TRY(rebuild_tensor(u, args, &v));
    } else if (strcmp(fn->s, "torch._utils._rebuild_parameter") == 0 ||
               strcmp(fn->s, "torch._utils._rebuild_parameter_with_state") == 0) {
        if (args->n < 1) return bad(u, "a parameter rebuilt from nothing");
        v = args->items[0];
    } else if (strcmp(fn->s, "collections.OrderedDict") == 0 && args->n == 0) {
        v = new_value(u->f, KILN_PY_DICT);
    } else {
        v = new_value(u->f, KILN_PY_OBJECT);
        if (v && !(v->s = strdup(fn->s))) return no_memory(u);
    }
    return push(u, v);
}

/* BINPERSID: ('storage', <type>, key, location, numel). */
static kiln_status persistent_load(unpickler *u)
{
    kiln_py_value *pid = NULL;
    TRY(pop(u, &pid));
    if (pid->kind != KILN_PY_TUPLE || pid->n < 5 || pid->items[0]->kind != KILN_PY_STR ||
        strcmp(pid->items[0]->s, "storage") != 0 || pid->items[1]->kind != KILN_PY_OBJECT ||
        pid->items[2]->kind != KILN_PY_STR || pid->items[4]->kind != KILN_PY_INT || pid->items[4]->i < 0)
        return bad(u, "a persistent id that is not a storage's");
    if (pid->items[4]->i > ((int64_t)1 << 40)) return bad(u, "a storage of more elements than kiln reads");
    const char *type = pid->items[1]->s;
    if (strncmp(type, "torch.", 6) != 0 || !find_storage_type(type + 6))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: storage type %s: kiln reads float, half, bfloat16, double, long, "
                         "int, byte and bool storages", u->f->path, type);
    const char *key = pid->items[2]->s;
    for (const char *c = key; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_'))
            return bad(u, "a storage key that is not a plain name");
    kiln_py_value *s = new_value(u->f, KILN_PY_STORAGE);
    if (!s || !(s->s = strdup(key))) return no_memory(u);
    s->type = find_storage_type(type + 6)->name;
    s->numel = pid->items[4]->i;
    return push(u, s);
}

static kiln_status setitems(unpickler *u, kiln_py_value **items, size_t count)
{
    kiln_py_value *d = NULL;
    if (count % 2) return bad(u, "SETITEMS with a key and no value");
    TRY(top(u, &d));
    if (d->kind != KILN_PY_DICT) return bad(u, "SETITEMS on other than a dict");
    for (size_t i = 0; i < count; i += 2)
        if (!push_item(d, items[i], items[i + 1])) return no_memory(u);
    return KILN_OK;
}

static kiln_status appends(unpickler *u, kiln_py_value **items, size_t count)
{
    kiln_py_value *l = NULL;
    TRY(top(u, &l));
    if (l->kind != KILN_PY_LIST) return bad(u, "APPENDS on other than a list");
    for (size_t i = 0; i < count; i++)
        if (!push_item(l, NULL, items[i])) return no_memory(u);
    return KILN_OK;
}

static kiln_status step(unpickler *u, bool *stop)
{
    const uint8_t *b;
    if (!take(u, 1, &b)) return bad(u, "no STOP before the end");
    const uint8_t op = *b;
    kiln_py_value *v = NULL, *w = NULL, **items = NULL;
    size_t count = 0;
#define NEED(n)                                                  \
    do {                                                         \
        if (!take(u, (n), &b)) return bad(u, "an argument past the end"); \
    } while (0)
    switch (op) {
    case 0x80: /* PROTO */
        NEED(1);
        if (*b < 2 || *b > 5) return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: pickle protocol %d", u->f->path, *b);
        return KILN_OK;
    case 0x95: NEED(8); return KILN_OK; /* FRAME: a hint */
    case '.': TRY(pop(u, &u->f->root)); *stop = true; return KILN_OK;
    case '(':
        if (u->nmarks == u->marks_cap) {
            size_t cap = u->marks_cap ? 2 * u->marks_cap : 16;
            if (cap > MAX_STACK) return bad(u, "marks nested deeper than kiln reads");
            size_t *m = realloc(u->marks, cap * sizeof *m);
            if (!m) return no_memory(u);
            u->marks = m;
            u->marks_cap = cap;
        }
        u->marks[u->nmarks++] = u->depth;
        return KILN_OK;
    case '}': return push(u, new_value(u->f, KILN_PY_DICT));
    case ']': return push(u, new_value(u->f, KILN_PY_LIST));
    case ')': return push(u, new_value(u->f, KILN_PY_TUPLE));
    case 'N': return push(u, new_value(u->f, KILN_PY_NONE));
    case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
        if (!(v = new_value(u->f, KILN_PY_BOOL))) return no_memory(u);
        v->i = op == 0x88;
        return push(u, v);
    case 'J': NEED(4); return push_int(u, (int32_t)(uint32_t)little_endian(b, 4));
    case 'K': NEED(1); return push_int(u, *b);
    case 'M': NEED(2); return push_int(u, (int64_t)little_endian(b, 2));
    case 0x8a: case 0x8b: { /* LONG1, LONG4: two's complement, little-endian */
        NEED(op == 0x8a ? 1 : 4);
        size_t n = (size_t)little_endian(b, op == 0x8a ? 1 : 4);
        NEED(n);
        if (n > 8) { /* wider than kiln's integers: a value no tensor needs (a hash, a seed) */
            if (!(v = new_value(u->f, KILN_PY_OBJECT)) || !(v->s = strdup("builtins.int"))) return no_memory(u);
            return push(u, v);
        }
        uint64_t x = little_endian(b, n);
        if (n && n < 8 && (b[n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n);
        return push_int(u, (int64_t)x);
    }
    case 'G': { /* BINFLOAT: big-endian */
        NEED(8);
        uint64_t x = 0;
        for (int i = 0; i < 8; i++) x = x << 8 | b[i];
        if (!(v = new_value(u->f, KILN_PY_FLOAT))) return no_memory(u);
        memcpy(&v->f, &x, sizeof x);
        return push(u, v);
    }
    case 'X': case 'T': case 'B': NEED(4); return push_string(u, (size_t)little_endian(b, 4)); /* BINUNICODE, BINSTRING, BINBYTES */
    case 0x8c: case 'U': case 'C': NEED(1); return push_string(u, *b); /* SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES */
    case 0x8d: case 0x8e: case 0x96: { /* BINUNICODE8, BINBYTES8, BYTEARRAY8 */
        NEED(8);
        uint64_t n = little_endian(b, 8);
        if (n > u->n) return bad(u, "a string past the end");
        return push_string(u, (size_t)n);
    }
    case 'c': { /* GLOBAL: "module\nname\n" */
        const char *s = (const char *)u->p + u->at, *end = (const char *)u->p + u->n;
        const char *nl1 = memchr(s, '\n', (size_t)(end - s));
        const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
        if (!nl2) return bad(u, "GLOBAL without its two lines");
        u->at += (size_t)(nl2 + 1 - s);
        return push_callable(u, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1));
    }
    case 0x93: /* STACK_GLOBAL */
        TRY(pop(u, &w));
        TRY(pop(u, &v));
        if (v->kind != KILN_PY_STR || w->kind != KILN_PY_STR) return bad(u, "STACK_GLOBAL without two strings");
        return push_callable(u, v->s, strlen(v->s), w->s, strlen(w->s));
    case 'q': NEED(1); return memo_put(u, *b);
    case 'r': NEED(4); return memo_put(u, (size_t)little_endian(b, 4));
    case 0x94: return memo_put(u, u->memo_len); /* MEMOIZE */
    case 'h': NEED(1); return memo_get(u, *b);
    case 'j': NEED(4); return memo_get(u, (size_t)little_endian(b, 4));
    case 't': TRY(pop_mark(u, &items, &count)); return make_tuple(u, items, count);
    case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
        count = (size_t)(op - 0x84);
        size_t floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
        if (u->depth - floor < count) return bad(u, "a tuple of more items than the stack holds");
        u->depth -= count;
        return make_tuple(u, u->stack + u->depth, count);
    }
    case 'l': case 'd': { /* LIST, DICT from the mark */
        TRY(pop_mark(u, &items, &count));
        kiln_py_value *c = new_value(u->f, op == 'l' ? KILN_PY_LIST : KILN_PY_DICT);
        if (!c) return no_memory(u);
        if (op == 'd' && count % 2) return bad(u, "DICT with a key and no value");
        for (size_t i = 0; i < count; i += op == 'd' ? 2 : 1)
            if (!push_item(c, op == 'd' ? items[i] : NULL, op == 'd' ? items[i + 1] : items[i])) return no_memory(u);
        return push(u, c);
    }
    case 0x8f: return push(u, new_value(u->f, KILN_PY_LIST)); /* EMPTY_SET: sets are read as lists */
    case 0x90: TRY(pop_mark(u, &items, &count)); return appends(u, items, count); /* ADDITEMS */
    case 0x91: { /* FROZENSET from the mark */
        TRY(pop_mark(u, &items, &count));
        kiln_py_value *c = new_value(u->f, KILN_PY_LIST);
        if (!c) return no_memory(u);
        for (size_t i = 0; i < count; i++)
            if (!push_item(c, NULL, items[i])) return no_memory(u);
        return push(u, c);
    }
    case '0': /* POP: the top value, or the mark when none is above it */
        if (u->nmarks && u->depth == u->marks[u->nmarks - 1]) {
            u->nmarks--;
            return KILN_OK;
        }
        return pop(u, &v);
    case '1': return pop_mark(u, &items, &count); /* POP_MARK */
    case '2': TRY(top(u, &v)); return push(u, v); /* DUP */
    case 'a': TRY(pop(u, &v)); return appends(u, &v, 1);
    case 'e': TRY(pop_mark(u, &items, &count)); return appends(u, items, count);
    case 's': {
        kiln_py_value *pair[2] = {NULL, NULL};
        TRY(pop(u, &pair[1]));
        TRY(pop(u, &pair[0]));
        return setitems(u, pair, 2);
    }
    case 'u': TRY(pop_mark(u, &items, &count)); return setitems(u, items, count);
    case 'Q': return persistent_load(u);
    case 'R': return reduce(u);
    case 'b': return pop(u, &v); /* BUILD: the state of objects kiln keeps opaque */
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs */
        TRY(pop(u, &v));
        /* fall through */
    case 0x81: /* NEWOBJ: cls, args */
        TRY(pop(u, &v));
        TRY(pop(u, &w));
        if (!(v = new_value(u->f, KILN_PY_OBJECT))) return no_memory(u);
        if (w->kind == KILN_PY_OBJECT && w->s && !(v->s = strdup(w->s))) return no_memory(u);
        return push(u, v);
    default:
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: pickle opcode 0x%02x at byte %zu: kiln reads what torch.save writes",
                         u->f->path, op, u->at - 1);
    }
#undef NEED
}

static kiln_status unpickle(kiln_torch_file *f, const uint8_t *p, size_t n)
{
    unpickler u = {.f = f, .p = p, .n = n};
    kiln_status st = KILN_OK;
    for (bool stop = false; !stop && st == KILN_OK;) st = step(&u, &stop);
    free(u.stack);
    free(u.marks);
    free(u.memo);
    return st;
}

/* ---- the zip --------------------------------------------------------------------- */

static kiln_status read_entry(const kiln_torch_file *f, zip_int64_t index, size_t limit, uint8_t **out, size_t *size)
{
    zip_stat_t zs;
    if (zip_stat_index(f->zip, (zip_uint64_t)index, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return kiln_fail(KILN_ERR_FORMAT, "%s: cannot read the size of entry %s", f->path, zip_get_name(f->zip, (zip_uint64_t)index, 0));
    if (zs.size > limit) return kiln_fail(KILN_ERR_FORMAT, "%s: entry %s is %llu bytes, more than kiln reads", f->path, zs.name, (unsigned long long)zs.size);
    uint8_t *buf = malloc(zs.size ? (size_t)zs.size : 1);
    if (!buf) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for entry %s", f->path, zs.name);
    zip_file_t *zf = zip_fopen_index(f->zip, (zip_uint64_t)index, 0);
    zip_int64_t got = zf ? zip_fread(zf, buf, zs.size) : -1;
    if (zf) zip_fclose(zf);
    if (got < 0 || (zip_uint64_t)got != zs.size) {
        free(buf);
        return kiln_fail(KILN_ERR_IO, "%s: cannot read entry %s", f->path, zs.name);
    }
    *out = buf;
    *size = (size_t)zs.size;
    return KILN_OK;
}

kiln_status kiln_torch_open(const char *path, kiln_torch_file **out)
{
    *out = NULL;
    kiln_torch_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    kiln_status st = KILN_OK;
    int err = 0;
    if (!(f->zip = zip_open(path, ZIP_RDONLY, &err))) {
        if (err == ZIP_ER_NOZIP) {
            /* torch.save before 1.6 wrote a bare pickle stream (magic number first) */
            FILE *fp = fopen(path, "rb");
            unsigned char head[4] = {0};
            const size_t got = fp ? fread(head, 1, 4, fp) : 0;
            if (fp) fclose(fp);
            if (got >= 2 && head[0] == 0x80)
                st = kiln_fail(KILN_ERR_UNSUPPORTED, "%s: torch.save's legacy (pre-1.6) format; save it again "
                               "with a newer torch, or as .safetensors", path);
            else if (got == 4 && memcmp(head, "PK\x03\x04", 4) == 0)
                st = kiln_fail(KILN_ERR_FORMAT, "%s: a zip archive without its directory at the end: a torch.save "
                               "file cut short (an unfinished download?)", path);
            else
                st = kiln_fail(KILN_ERR_FORMAT, "%s: not a torch.save file (no zip archive)", path);
        } else {
            zip_error_t ze;
            zip_error_init_with_code(&ze, err);
            st = kiln_fail(err == ZIP_ER_OPEN || err == ZIP_ER_NOENT || err == ZIP_ER_READ ? KILN_ERR_IO : KILN_ERR_FORMAT,
                           "%s: %s", path, zip_error_strerror(&ze));
            zip_error_fini(&ze);
        }
        kiln_torch_close(f);
        return st;
    }
    zip_int64_t pkl = -1, n = zip_get_num_entries(f->zip, 0);
    for (zip_int64_t i = 0; i < n && pkl < 0; i++) {
        const char *name = zip_get_name(f->zip, (zip_uint64_t)i, 0);
        size_t len = name ? strlen(name) : 0;
        if (len >= 8 && strcmp(name + len - 8, "data.pkl") == 0 && (len == 8 || name[len - 9] == '/')) {
            pkl = i;
            if (!(f->prefix = strndup(name, len - 8))) st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        }
    }
    if (st == KILN_OK && pkl < 0) st = kiln_fail(KILN_ERR_FORMAT, "%s: a zip without data.pkl: not a torch.save file", path);
    uint8_t *p = NULL;
    size_t size = 0;
    if (st == KILN_OK) st = read_entry(f, pkl, MAX_PICKLE_BYTES, &p, &size);
    if (st == KILN_OK) st = unpickle(f, p, size);
    free(p);
    if (st != KILN_OK) {
        kiln_torch_close(f);
        return st;
    }
    *out = f;
    return KILN_OK;
}

void kiln_torch_close(kiln_torch_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->nvalues; i++) free_value(f->values[i]);
    free(f->values);
    if (f->zip) zip_discard(f->zip);
    free(f->prefix);
    free(f->path);
    free(f);
}

const kiln_py_value *kiln_torch_root(const kiln_torch_file *f) { return f->root; }

/* A tensor's elements in row-major order, in its storage's type, into a new
 * malloc'd array (type->bytes each). */
static kiln_status read_elements(const kiln_torch_file *f, const kiln_py_value *t, uint8_t **out)
{
    *out = NULL;
    if (t->kind != KILN_PY_TENSOR) return kiln_fail(KILN_ERR_FORMAT, "%s: a value that is not a tensor", f->path);
    const storage_type *type = find_storage_type(t->type);
    const kiln_py_value *storage = t->storage;
    char *name = malloc(strlen(f->prefix) + strlen("data/") + strlen(storage->s) + 1);
    if (!name) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", f->path);
    sprintf(name, "%sdata/%s", f->prefix, storage->s);
    zip_int64_t index = zip_name_locate(f->zip, name, 0);
    free(name);
    if (index < 0) return kiln_fail(KILN_ERR_FORMAT, "%s: storage %s is not in the archive", f->path, storage->s);
    uint8_t *bytes;
    size_t size;
    TRY(read_entry(f, index, (size_t)storage->numel * type->bytes, &bytes, &size));
    if (size != (size_t)storage->numel * type->bytes) {
        free(bytes);
        return kiln_fail(KILN_ERR_FORMAT, "%s: storage %s holds %zu bytes, not the %lld elements of its type %s", f->path,
                         storage->s, size, (long long)storage->numel, type->name);
    }
    const int64_t numel = kiln_py_tensor_numel(t);
    /* a tensor that is its storage's bytes from the start, as saved parameters are, is them */
    bool contiguous = t->tensor.offset == 0 && (size_t)numel * type->bytes == size;
    int64_t step = 1;
    for (int d = t->tensor.ndim - 1; d >= 0 && contiguous; step *= t->tensor.shape[d], d--)
        contiguous = t->tensor.shape[d] == 1 || t->tensor.stride[d] == step;
    if (contiguous) {
        *out = bytes;
        return KILN_OK;
    }
    uint8_t *dst = malloc((size_t)(numel ? numel : 1) * type->bytes);
    if (!dst) {
        free(bytes);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for %lld elements", f->path, (long long)numel);
    }
    int64_t index_of[KILN_PY_MAX_DIMS] = {0};
    for (int64_t i = 0; i < numel; i++) {
        int64_t at = t->tensor.offset;
        for (int d = 0; d < t->tensor.ndim; d++) at += index_of[d] * t->tensor.stride[d];
        memcpy(dst + (size_t)i * type->bytes, bytes + (size_t)at * type->bytes, type->bytes);
        for (int d = t->tensor.ndim - 1; d >= 0 && ++index_of[d] == t->tensor.shape[d]; d--) index_of[d] = 0;
    }
    free(bytes);
    *out = dst;
    return KILN_OK;
}

/* Element i of elements in `type`, as f32 (doubles rounded). */
static float element_f32(const storage_type *type, const uint8_t *elements, int64_t i)
{
    if (type->f64) {
        double x;
        memcpy(&x, elements + (size_t)i * 8, sizeof x);
        return (float)x;
    }
    return kiln_load_f32(elements, type->dtype, (size_t)i);
}

kiln_status kiln_torch_read_f32(const kiln_torch_file *f, const kiln_py_value *t, float **out)
{
    *out = NULL;
    uint8_t *elements;
    TRY(read_elements(f, t, &elements));
    const storage_type *type = find_storage_type(t->type);
    const int64_t numel = kiln_py_tensor_numel(t);
    float *dst = malloc((size_t)(numel ? numel : 1) * sizeof *dst);
    if (!dst) {
        free(elements);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for %lld floats", f->path, (long long)numel);
    }
    for (int64_t i = 0; i < numel; i++) dst[i] = element_f32(type, elements, i);
    free(elements);
    *out = dst;
    return KILN_OK;
}

/* ---- state dicts ------------------------------------------------------------------ */

typedef struct state_dict {
    const kiln_torch_file *f;
    kiln_st_entry *entries;
    const kiln_py_value **tensors; /* entries[i]'s tensor */
    char **names;                  /* entries[i]'s name, owned */
    size_t n, cap;
} state_dict;

static kiln_status fill_tensor(void *ctx, size_t index, void *dst, size_t nbytes)
{
    const state_dict *sd = ctx;
    const kiln_py_value *t = sd->tensors[index];
    uint8_t *elements;
    TRY(read_elements(sd->f, t, &elements));
    const storage_type *type = find_storage_type(t->type);
    if (type->f64) {
        float *d = dst;
        for (size_t i = 0; i < nbytes / sizeof *d; i++) d[i] = element_f32(type, elements, (int64_t)i);
    } else {
        memcpy(dst, elements, nbytes);
    }
    free(elements);
    return KILN_OK;
}

/* Adds tensor v as `name`, which it takes over. */
static kiln_status add_tensor(state_dict *sd, const kiln_py_value *v, char *name)
{
    const char *path = sd->f->path;
    if (v->tensor.ndim > KILN_MAX_DIMS) {
        kiln_status st = kiln_fail(KILN_ERR_UNSUPPORTED, "%s: tensor %s has %d dimensions, kiln reads up to %d", path,
                                   name, v->tensor.ndim, KILN_MAX_DIMS);
        free(name);
        return st;
    }
    if (sd->n == sd->cap) {
        const size_t cap = sd->cap ? 2 * sd->cap : 256;
        kiln_st_entry *e = realloc(sd->entries, cap * sizeof *e);
        if (e) sd->entries = e;
        const kiln_py_value **t = e ? realloc(sd->tensors, cap * sizeof *t) : NULL;
        if (t) sd->tensors = t;
        char **names = t ? realloc(sd->names, cap * sizeof *names) : NULL;
        if (names) sd->names = names;
        if (!names) {
            free(name);
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        }
        sd->cap = cap;
    }
    kiln_st_entry *e = &sd->entries[sd->n];
    *e = (kiln_st_entry){.name = name, .dtype = find_storage_type(v->type)->dtype, .ndim = v->tensor.ndim};
    for (int k = 0; k < v->tensor.ndim; k++) e->shape[k] = v->tensor.shape[k];
    sd->names[sd->n] = name;
    sd->tensors[sd->n++] = v;
    return KILN_OK;
}

/* Adds the tensors of dict or list c, their names `prefix` (c's dotted path
 * and ".", or "") and their keys (a list's indices, a dict's string keys
 * without `drop`, a prefix all of them share, or the top dict's integer
 * keys in decimal: an A1111 hypernetwork's dims), the dicts and lists
 * within it by their paths. Integer keys deeper down are an optimizer's
 * state, which no loader reads. */
static kiln_status add_tensors(state_dict *sd, const kiln_py_value *c, const char *prefix, const char *drop, int depth)
{
    const char *path = sd->f->path;
    if (depth > 8) return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: dicts nested deeper than kiln reads", path);
    for (size_t i = 0; i < c->n; i++) {
        const kiln_py_value *v = c->items[i], *k = c->kind == KILN_PY_DICT ? c->keys[i] : NULL;
        if (v->kind != KILN_PY_TENSOR && v->kind != KILN_PY_DICT && v->kind != KILN_PY_LIST)
            continue; /* a step count, a name, ... */
        if (k && k->kind != KILN_PY_STR && !(k->kind == KILN_PY_INT && depth == 0)) continue;
        char key[32];
        const char *part = key;
        if (!k) snprintf(key, sizeof key, "%zu", i);
        else if (k->kind == KILN_PY_INT) snprintf(key, sizeof key, "%" PRId64, k->i);
        else part = k->s + strlen(drop);
        /* LDM's EMA copy of the UNet, which no loader reads (ComfyUI's neither) */
        if (depth == 0 && strncmp(part, "model_ema.", 10) == 0) continue;
        char *name = malloc(strlen(prefix) + strlen(part) + 2);
        if (!name) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        sprintf(name, "%s%s", prefix, part);
        if (v->kind == KILN_PY_TENSOR) {
            TRY(add_tensor(sd, v, name));
            continue;
        }
        strcat(name, ".");
        kiln_status st = add_tensors(sd, v, name, "", depth + 1);
        free(name);
        TRY(st);
    }
    return KILN_OK;
}

/* Whether every string key of d starts with prefix. */
static bool keys_share(const kiln_py_value *d, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (d->keys[i]->kind != KILN_PY_STR) continue;
        if (strncmp(d->keys[i]->s, prefix, strlen(prefix)) != 0) return false;
        n++;
    }
    return n > 0;
}

kiln_status kiln_torch_to_safetensors(const char *path, const char *out)
{
    kiln_torch_file *f;
    TRY(kiln_torch_open(path, &f));
    const kiln_py_value *d = kiln_torch_root(f);
    static const char *const wrappers[] = {"model_state_dict", "state_dict", "params_ema", "params-ema",
                                           "params", "model", "net"};
    for (size_t i = 0; i < sizeof wrappers / sizeof *wrappers; i++) {
        const kiln_py_value *inner = kiln_py_dict_get(d, wrappers[i]);
        if (inner && inner->kind == KILN_PY_DICT) {
            d = inner;
            break;
        }
    }
    if (d->kind == KILN_PY_DICT && d->n == 1 && d->items[0]->kind == KILN_PY_DICT) d = d->items[0];
    state_dict sd = {.f = f};
    kiln_status st = KILN_OK;
    if (d->kind != KILN_PY_DICT) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: holds no dict of tensors", path);
    } else {
        /* as DataParallel's and BasicSR's GAN trainers saved them */
        const char *drop = keys_share(d, "module.") ? "module." : keys_share(d, "netG.") ? "netG." : "";
        st = add_tensors(&sd, d, "", drop, 0);
    }
    if (st == KILN_OK && sd.n == 0) st = kiln_fail(KILN_ERR_FORMAT, "%s: holds no tensors", path);
    if (st == KILN_OK) st = kiln_st_write_fill(out, sd.entries, sd.n, NULL, 0, fill_tensor, &sd);
    for (size_t i = 0; i < sd.n; i++) free(sd.names[i]);
    free(sd.names);
    free(sd.entries);
    free(sd.tensors);
    kiln_torch_close(f);
    return st;
}

bool kiln_torch_magic(const void *data, size_t size)
{
    const uint8_t *b = data;
    if (size < 8 || !(memcmp(b, "PK\x03\x04", 4) == 0 || (b[0] == 0x80 && b[1] >= 2 && b[1] <= 5))) /* zip, PROTO */
        return false;
    /* a safetensors file may begin so too (a header of 0x280 bytes is 80 02 ...): it is one when those eight
       bytes, as its header length, leave the header inside the file */
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--) header = header << 8 | b[i];
    return header > size - 8;
}
