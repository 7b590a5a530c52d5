/* safetensors reading and writing.
 *
 * Layout: u64 little-endian N, N bytes of JSON header, then the data area.
 * Each header entry maps a tensor name to {dtype, shape, data_offsets [begin,
 * end)} relative to the data area; "__metadata__" maps strings to strings.
 * The reader trusts nothing in a file: every number is checked before any
 * pointer is formed from it, so a hostile header gives an error, not a read
 * outside the mapping. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "gguf.h"
#include "status.h"
#include "torch_file.h"

/* The reference implementation's cap; real headers are a few hundred KB. */
#define ST_MAX_HEADER_BYTES 100000000ull
/* JSON numbers reach us as doubles: integers are exact only below 2^53. */
#define ST_MAX_JSON_INT 9007199254740992.0

struct kiln_st_file {
    char *label;              /* the path, or the label given to open_memory */
    const uint8_t *map;       /* our mmap of the whole file; NULL for open_memory */
    size_t map_size;
    size_t count;
    kiln_st_tensor *tensors;  /* (count) in data-offset order */
    size_t *slots;            /* (nslots) open-addressing table: tensor index + 1, 0 = empty */
    size_t nslots;            /* a power of two, at least 2 * count */
    kiln_st_meta *meta;       /* (nmeta) __metadata__ pairs in header order */
    size_t nmeta;
    char *strings;            /* every name, key and value, NUL-terminated */
    kiln_gguf_contents gguf;  /* a GGUF file's storage (tensors, meta and strings above are its) */
    struct torch_copy *copy;  /* a torch.save file's: the copy `map` is, shared */
};

/* ---------------------------------------------------------------- names */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Returns the slot holding `name`, or the empty slot where it would go. */
static size_t name_slot(const kiln_st_file *f, const char *name)
{
    size_t mask = f->nslots - 1;
    size_t i = (size_t)name_hash(name) & mask;
    while (f->slots[i] && strcmp(f->tensors[f->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

/* Length of the valid UTF-8 prefix of s[0..n) without NUL bytes (n when all
 * valid): overlong forms, surrogates and code points past U+10FFFF fail. */
static size_t utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c == 0) return i;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += len;
    }
    return n;
}

/* ---------------------------------------------------------------- header parsing */

/* Names, keys and values are copied out of the cJSON tree into one block.
 * A decoded JSON string plus its NUL never outgrows its quoted source text,
 * so a block the size of the header always suffices. */
typedef struct string_block { char *base; size_t used, cap; } string_block;

static const char *string_copy(string_block *b, const char *s)
{
    size_t n = strlen(s) + 1;
    if (n > b->cap - b->used) return NULL;
    char *dst = b->base + b->used;
    memcpy(dst, s, n);
    b->used += n;
    return dst;
}

/* A JSON number that is an integer in [0, 2^53). */
static bool json_count(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v < ST_MAX_JSON_INT) || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

/* "[3,4]" for messages; dims are valid by the time this is called. */
static const char *shape_text(const kiln_st_tensor *t, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

/* Dtypes of the safetensors format that kiln has no kiln_dtype for: such a
 * file is well-formed but unsupported, which is a different error. */
static bool dtype_in_format(const char *name)
{
    static const char *const others[] = {"BOOL", "I8", "I16", "U16", "U32", "U64", "F64", "C64",
                                         "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (strcmp(name, others[i]) == 0) return true;
    return false;
}

static kiln_status parse_metadata(kiln_st_file *f, const cJSON *obj, string_block *strings)
{
    if (!cJSON_IsObject(obj)) return kiln_fail(KILN_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->label);
    size_t n = (size_t)cJSON_GetArraySize(obj);
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for %zu metadata entries", f->label, n);
    for (const cJSON *item = obj->child; item; item = item->next) {
        if (!cJSON_IsString(item))
            return kiln_fail(KILN_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", f->label,
                             item->string);
        kiln_st_meta *m = &f->meta[f->nmeta++];
        m->key = string_copy(strings, item->string);
        m->value = string_copy(strings, item->valuestring);
        if (!m->key || !m->value) return kiln_fail(KILN_ERR_FORMAT, "%s: header strings outgrow the header", f->label);
    }
    return KILN_OK;
}

/* Fills t from one header entry, checking it against the data area of
 * `data_size` bytes at `data`. */
static kiln_status parse_tensor(const kiln_st_file *f, const cJSON *entry, const uint8_t *data, uint64_t data_size,
                                kiln_st_tensor *t)
{
    const char *name = t->name;
    if (!cJSON_IsObject(entry))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", f->label, name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string", f->label, name);
    if (!kiln_dtype_from_name(dtype->valuestring, &t->dtype)) {
        if (dtype_in_format(dtype->valuestring))
            return kiln_fail(KILN_ERR_UNSUPPORTED,
                             "%s: tensor '%s': dtype %s is not supported (kiln reads F32 F16 BF16 F8_E4M3 F8_E5M2 "
                             "I32 I64 U8)", f->label, name, dtype->valuestring);
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", f->label, name,
                         dtype->valuestring);
    }

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(shape))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': \"shape\" is missing or not an array", f->label, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > KILN_MAX_DIMS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: tensor '%s': %d dims, kiln handles at most %d", f->label, name,
                         ndim, KILN_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t n;
        if (!json_count(dim, &n))
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not an integer in [0, 2^53)", f->label,
                             name, d);
        t->shape[d] = (int64_t)n;
        if (__builtin_mul_overflow(numel, n, &numel))
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': shape overflows 64 bits", f->label, name);
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)kiln_dtype_size(t->dtype), &nbytes))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': shape x %s overflows 64 bits", f->label, name,
                         kiln_dtype_name(t->dtype));

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 || !json_count(offsets->child, &begin) ||
        !json_count(offsets->child->next, &end))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end] with integers in "
                         "[0, 2^53)", f->label, name);
    if (begin > end)
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] end before they begin",
                         f->label, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] run past the data area "
                         "(%llu bytes)", f->label, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_size);
    if (end - begin != nbytes) {
        char buf[128];
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s': shape %s x %s is %llu bytes but data_offsets span %llu",
                         f->label, name, shape_text(t, buf, sizeof buf), kiln_dtype_name(t->dtype),
                         (unsigned long long)nbytes, (unsigned long long)(end - begin));
    }
    t->data = data + begin;
    t->nbytes = (size_t)nbytes;
    return KILN_OK;
}

static int compare_by_offset(const void *pa, const void *pb)
{
    const kiln_st_tensor *a = pa, *b = pb;
    const uint8_t *da = a->data, *db = b->data;
    if (da != db) return da < db ? -1 : 1;
    if (a->nbytes != b->nbytes) return a->nbytes < b->nbytes ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* Checks that no two non-empty ranges share a byte; the tensors are sorted by
 * offset. Empty tensors occupy nothing and may sit anywhere. */
static kiln_status check_overlaps(const kiln_st_file *f, const uint8_t *data)
{
    const kiln_st_tensor *last = NULL; /* the non-empty tensor reaching furthest so far */
    for (size_t i = 0; i < f->count; i++) {
        const kiln_st_tensor *t = &f->tensors[i];
        if (t->nbytes == 0) continue;
        const uint8_t *begin = t->data;
        if (last && begin < (const uint8_t *)last->data + last->nbytes) {
            size_t lb = (size_t)((const uint8_t *)last->data - data), tb = (size_t)(begin - data);
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensors '%s' [%zu,%zu] and '%s' [%zu,%zu] overlap", f->label,
                             last->name, lb, lb + last->nbytes, t->name, tb, tb + t->nbytes);
        }
        if (!last || begin + t->nbytes > (const uint8_t *)last->data + last->nbytes) last = t;
    }
    return KILN_OK;
}

static kiln_status build_index(kiln_st_file *f)
{
    f->nslots = 16;
    while (f->nslots < 2 * f->count) f->nslots *= 2;
    f->slots = calloc(f->nslots, sizeof *f->slots);
    if (!f->slots) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for the name index", f->label);
    for (size_t i = 0; i < f->count; i++) {
        size_t s = name_slot(f, f->tensors[i].name);
        if (f->slots[s])
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", f->label,
                             f->tensors[i].name);
        f->slots[s] = i + 1;
    }
    return KILN_OK;
}

/* Validates the JSON header text (n bytes at `text`, not NUL-terminated) and
 * fills f's tensors and metadata; `data` is the data area of data_size bytes. */
static kiln_status parse_header(kiln_st_file *f, const uint8_t *text, size_t n, const uint8_t *data,
                                uint64_t data_size)
{
    size_t valid = utf8_valid_prefix(text, n);
    if (valid < n)
        return kiln_fail(KILN_ERR_FORMAT, "%s: header byte %zu is %s", f->label, valid,
                         text[valid] ? "not valid UTF-8" : "a NUL");
    /* cJSON is given a NUL-terminated copy so that it cannot read past the header */
    char *json = malloc(n + 1);
    f->strings = malloc(n + 1);
    if (!json || !f->strings) {
        free(json);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for a %zu-byte header", f->label, n);
    }
    memcpy(json, text, n);
    json[n] = '\0';
    string_block strings = {f->strings, 0, n + 1};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n + 1, &end, false);
    kiln_status st = KILN_OK;
    if (!root) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %zu)", f->label,
                       end ? (size_t)(end - json) : (size_t)0, n);
        goto done;
    }
    end += strspn(end, " \t\r\n");
    if (end != json + n) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: header has bytes after its JSON value (at byte %zu of %zu)", f->label,
                       (size_t)(end - json), n);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: header is not a JSON object", f->label);
        goto done;
    }

    size_t entries = (size_t)cJSON_GetArraySize(root);
    f->tensors = calloc(entries ? entries : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for %zu tensors", f->label, entries);
        goto done;
    }
    bool seen_metadata = false;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_metadata) {
                st = kiln_fail(KILN_ERR_FORMAT, "%s: __metadata__ appears twice", f->label);
                goto done;
            }
            seen_metadata = true;
            if ((st = parse_metadata(f, item, &strings)) != KILN_OK) goto done;
            continue;
        }
        kiln_st_tensor *t = &f->tensors[f->count];
        if (!(t->name = string_copy(&strings, item->string))) {
            st = kiln_fail(KILN_ERR_FORMAT, "%s: header strings outgrow the header", f->label);
            goto done;
        }
        if ((st = parse_tensor(f, item, data, data_size, t)) != KILN_OK) goto done;
        f->count++;
    }
    qsort(f->tensors, f->count, sizeof *f->tensors, compare_by_offset);
    if ((st = build_index(f)) != KILN_OK) goto done;
    st = check_overlaps(f, data);
done:
    cJSON_Delete(root);
    free(json);
    return st;
}

/* ---------------------------------------------------------------- opening */

kiln_status kiln_st_open_memory(const void *data, size_t size, const char *label, kiln_st_file **out)
{
    *out = NULL;
    kiln_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->label = strdup(label ? label : "<memory>"))) {
        free(f);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory", label ? label : "<memory>");
    }
    const uint8_t *bytes = data;
    kiln_status st;
    if (kiln_gguf_magic(data, size)) {
        if ((st = kiln_gguf_read(bytes, size, f->label, &f->gguf)) != KILN_OK) goto fail;
        f->tensors = f->gguf.tensors;
        f->count = f->gguf.count;
        f->meta = f->gguf.meta;
        f->nmeta = f->gguf.nmeta;
        if ((st = build_index(f)) != KILN_OK) goto fail;
        *out = f;
        return KILN_OK;
    }
    if (size < 8) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: truncated: %zu bytes, less than the 8-byte header length", f->label,
                       size);
        goto fail;
    }
    uint64_t header_size = 0;
    for (int i = 0; i < 8; i++) header_size |= (uint64_t)bytes[i] << (8 * i);
    if (header_size > size - 8) {
        /* kiln_st_open reads these from their files; in memory they are refused by name */
        if (kiln_torch_magic(bytes, size))
            st = kiln_fail(KILN_ERR_FORMAT, "%s: a torch.save file, which kiln reads from a file on disk only",
                           f->label);
        else
            st = kiln_fail(KILN_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                           f->label, (unsigned long long)header_size, size);
        goto fail;
    }
    if (header_size > ST_MAX_HEADER_BYTES) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", f->label,
                       (unsigned long long)header_size, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (header_size == 0) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: header is empty (length 0)", f->label);
        goto fail;
    }
    const uint8_t *data_area = bytes + 8 + header_size;
    st = parse_header(f, bytes + 8, (size_t)header_size, data_area, size - 8 - header_size);
    if (st != KILN_OK) goto fail;
    *out = f;
    return KILN_OK;
fail:
    kiln_st_close(f);
    return st;
}

/* A torch.save file's tensors, written to a safetensors file in the
 * temporary folder that is mapped and unlinked at once (the mapping keeps
 * it): the pages stay the kernel's to drop, as a safetensors file's are,
 * where tensors read into memory would be held beside the GPU's copy. While
 * one kiln_st_file maps such a copy, opening the same file again (gen --info
 * tries it as each kind of model) shares it. */
typedef struct torch_copy {
    struct torch_copy *next;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    const uint8_t *map;
    size_t map_size;
    int refs;
} torch_copy;

static torch_copy *torch_copies;
static pthread_mutex_t torch_copies_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_file(const torch_copy *c, const struct stat *st)
{
    return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
           c->mtime.tv_sec == st->st_mtim.tv_sec && c->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static kiln_status copy_torch_file(const char *path, torch_copy **out)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return kiln_fail(KILN_ERR_IO, "%s: %s", path, strerror(errno));
    pthread_mutex_lock(&torch_copies_lock);
    for (torch_copy *c = torch_copies; c; c = c->next)
        if (same_file(c, &st)) {
            c->refs++;
            *out = c;
            break;
        }
    pthread_mutex_unlock(&torch_copies_lock);
    if (*out) return KILN_OK;

    torch_copy *c = calloc(1, sizeof *c);
    if (!c) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    *c = (torch_copy){.dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim, .refs = 1};
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/kiln-torch-XXXXXX", dir);
    const int fd = mkstemp(tmp);
    if (fd < 0) {
        free(c);
        return kiln_fail(KILN_ERR_IO, "%s: no temporary file in %s (TMPDIR) for its tensors: %s", path, dir,
                         strerror(errno));
    }
    close(fd);
    kiln_status status = kiln_torch_to_safetensors(path, tmp);
    if (status == KILN_OK) status = kiln_map_file(tmp, "a safetensors file", &c->map, &c->map_size);
    unlink(tmp);
    if (status != KILN_OK) {
        free(c);
        return status;
    }
    pthread_mutex_lock(&torch_copies_lock);
    c->next = torch_copies;
    torch_copies = c;
    pthread_mutex_unlock(&torch_copies_lock);
    *out = c;
    return KILN_OK;
}

static void release_torch_copy(torch_copy *c)
{
    pthread_mutex_lock(&torch_copies_lock);
    const bool last = --c->refs == 0;
    if (last)
        for (torch_copy **p = &torch_copies; *p; p = &(*p)->next)
            if (*p == c) {
                *p = c->next;
                break;
            }
    pthread_mutex_unlock(&torch_copies_lock);
    if (last) {
        kiln_unmap_file(c->map, c->map_size);
        free(c);
    }
}

kiln_status kiln_st_open(const char *path, kiln_st_file **out)
{
    *out = NULL;
    const uint8_t *map;
    size_t size;
    TRY(kiln_map_file(path, "a safetensors file", &map, &size));
    torch_copy *copy = NULL;
    if (kiln_torch_magic(map, size)) {
        kiln_unmap_file(map, size);
        TRY(copy_torch_file(path, &copy));
        map = copy->map;
        size = copy->map_size;
    }
    kiln_status st = kiln_st_open_memory(map, size, path, out);
    if (st != KILN_OK) {
        if (copy) release_torch_copy(copy);
        else kiln_unmap_file(map, size);
        return st;
    }
    if (copy) {
        (*out)->copy = copy;
    } else {
        (*out)->map = map;
        (*out)->map_size = size;
    }
    return KILN_OK;
}

void kiln_st_close(kiln_st_file *f)
{
    if (!f) return;
    if (f->copy) release_torch_copy(f->copy);
    else kiln_unmap_file(f->map, f->map_size);
    free(f->label);
    if (f->gguf.tensors) {
        kiln_gguf_free(&f->gguf);
    } else {
        free(f->tensors);
        free(f->meta);
        free(f->strings);
    }
    free(f->slots);
    free(f);
}

const char *kiln_st_path(const kiln_st_file *f) { return f->label; }

size_t kiln_st_count(const kiln_st_file *f) { return f->count; }

const kiln_st_tensor *kiln_st_at(const kiln_st_file *f, size_t i) { return i < f->count ? &f->tensors[i] : NULL; }

int64_t kiln_st_numel(const kiln_st_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

const kiln_st_tensor *kiln_st_find(const kiln_st_file *f, const char *name)
{
    size_t s = name_slot(f, name);
    return f->slots[s] ? &f->tensors[f->slots[s] - 1] : NULL;
}

const char *kiln_st_metadata(const kiln_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

kiln_status kiln_st_read_f32(const kiln_st_file *f, const char *name, float **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    const kiln_st_tensor *t = kiln_st_find(f, name);
    if (!t) return kiln_fail(KILN_ERR_MODEL, "%s: no tensor '%s'", f->label, name);
    size_t n = (size_t)kiln_st_numel(t);
    float *dst = malloc((n ? n : 1) * sizeof *dst);
    if (!dst)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: tensor '%s': no memory for %zu floats", f->label, name, n);
    /* staged through an aligned block: a header without padding leaves the
     * elements misaligned, and the typed loads must not see that; a block of
     * 4096 values is whole quantized blocks */
    _Alignas(8) uint8_t block[4096 * 8];
    size_t per_block = 4096;
    for (size_t i = 0; i < n; i += per_block) {
        size_t m = n - i < per_block ? n - i : per_block;
        memcpy(block, (const uint8_t *)t->data + kiln_dtype_bytes(t->dtype, i), kiln_dtype_bytes(t->dtype, m));
        kiln_convert_to_f32(dst + i, block, t->dtype, m);
    }
    *out = dst;
    *count = n;
    return KILN_OK;
}

/* ---------------------------------------------------------------- writing */

typedef struct text_buffer { char *base; size_t used, cap; bool failed; } text_buffer;

static void text_append(text_buffer *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (n > b->cap - b->used) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->used < n) cap *= 2;
        char *p = realloc(b->base, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->base = p;
        b->cap = cap;
    }
    memcpy(b->base + b->used, s, n);
    b->used += n;
}

static void text_printf(text_buffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text_buffer *b, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    text_append(b, buf, (size_t)n);
}

/* A JSON string with the escapes serde_json (the reference writer) uses:
 * short forms where JSON has them, \u00xx for other control bytes, UTF-8 as is. */
static void text_json_string(text_buffer *b, const char *s)
{
    text_append(b, "\"", 1);
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) text_append(b, esc, strlen(esc));
        else if (c < 0x20) text_printf(b, "\\u%04x", c);
        else text_append(b, (const char *)&c, 1);
    }
    text_append(b, "\"", 1);
}

/* The reference writer's order: dtype rank descending (wider first, so every
 * tensor starts aligned to its element size), then name. */
static int dtype_rank(kiln_dtype d)
{
    static const int rank[KILN_DTYPE_COUNT] = {
        [KILN_I64] = 7, [KILN_F32] = 6, [KILN_I32] = 5, [KILN_BF16] = 4,
        [KILN_F16] = 3, [KILN_F8_E4M3] = 2, [KILN_F8_E5M2] = 1, [KILN_U8] = 0,
    };
    return rank[d];
}

static int compare_for_layout(const void *pa, const void *pb)
{
    const kiln_st_entry *a = *(const kiln_st_entry *const *)pa, *b = *(const kiln_st_entry *const *)pb;
    if (a->dtype != b->dtype) return dtype_rank(b->dtype) - dtype_rank(a->dtype);
    return strcmp(a->name, b->name);
}

static int compare_names(const void *pa, const void *pb)
{
    return strcmp((*(const kiln_st_entry *const *)pa)->name, (*(const kiln_st_entry *const *)pb)->name);
}

/* Checks one entry from the caller and computes its byte size. */
static kiln_status entry_bytes(const char *path, const kiln_st_entry *e, bool have_fill, uint64_t *out)
{
    if (!e->name || !e->name[0] || strcmp(e->name, "__metadata__") == 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor name '%s' is not allowed", path, e->name ? e->name : "");
    size_t len = strlen(e->name);
    if (utf8_valid_prefix((const uint8_t *)e->name, len) != len)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor name '%s' is not valid UTF-8", path, e->name);
    if ((unsigned)e->dtype >= KILN_DTYPE_COUNT)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s': dtype %d is not a kiln_dtype", path, e->name,
                         (int)e->dtype);
    if (kiln_dtype_is_quantized(e->dtype))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s': safetensors cannot hold %s blocks", path, e->name,
                         kiln_dtype_name(e->dtype));
    if (e->ndim < 0 || e->ndim > KILN_MAX_DIMS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s': ndim %d outside 0..%d", path, e->name, e->ndim,
                         KILN_MAX_DIMS);
    uint64_t n = kiln_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] < 0)
            return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s': shape[%d] = %lld is negative", path, e->name, d,
                             (long long)e->shape[d]);
        if (__builtin_mul_overflow(n, (uint64_t)e->shape[d], &n))
            return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s': size overflows", path, e->name);
    }
    if (n && !e->data && !have_fill)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s': data is NULL", path, e->name);
    *out = n;
    return KILN_OK;
}

/* The header (8-byte length, JSON, space padding) for tensors in `order`;
 * nbytes is indexed like `entries`. */
static kiln_status build_header(const char *path, const kiln_st_entry *entries, const kiln_st_entry *const *order,
                                const uint64_t *nbytes, size_t n, const kiln_st_meta *meta, size_t nmeta,
                                text_buffer *b)
{
    text_append(b, "\0\0\0\0\0\0\0\0{", 9);
    if (nmeta) {
        text_append(b, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < nmeta; i++) {
            if (!meta[i].key || !meta[i].value)
                return kiln_fail(KILN_ERR_INVALID_ARG, "%s: metadata entry %zu has a NULL key or value", path, i);
            if (i) text_append(b, ",", 1);
            text_json_string(b, meta[i].key);
            text_append(b, ":", 1);
            text_json_string(b, meta[i].value);
        }
        text_append(b, "}", 1);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const kiln_st_entry *e = order[i];
        uint64_t size = nbytes[e - entries];
        if (nmeta || i) text_append(b, ",", 1);
        text_json_string(b, e->name);
        text_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", kiln_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) text_printf(b, d ? ",%lld" : "%lld", (long long)e->shape[d]);
        text_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                    (unsigned long long)(offset + size));
        offset += size;
    }
    text_append(b, "}", 1);
    while (!b->failed && (b->used - 8) % 8) text_append(b, " ", 1);
    if (b->failed) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for the header", path);
    uint64_t header_size = b->used - 8;
    if (header_size > ST_MAX_HEADER_BYTES)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: header of %llu bytes exceeds the limit of %llu", path,
                         (unsigned long long)header_size, ST_MAX_HEADER_BYTES);
    for (int i = 0; i < 8; i++) b->base[i] = (char)(header_size >> (8 * i));
    return KILN_OK;
}

static bool write_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

kiln_status kiln_st_write_fill(const char *path, const kiln_st_entry *entries, size_t n, const kiln_st_meta *meta,
                               size_t nmeta, kiln_st_fill_fn fill, void *ctx)
{
    kiln_status st = KILN_OK;
    const kiln_st_entry **order = malloc((n ? n : 1) * sizeof *order);
    uint64_t *nbytes = malloc((n ? n : 1) * sizeof *nbytes); /* (n) like entries */
    text_buffer header = {0};
    uint8_t *scratch = NULL; /* the largest tensor, for fill */
    int fd = -1;
    char tmp[4096];
    tmp[0] = '\0';
    if (!order || !nbytes) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for %zu entries", path, n);
        goto done;
    }

    uint64_t largest = 0;
    for (size_t i = 0; i < n; i++) {
        if ((st = entry_bytes(path, &entries[i], fill != NULL, &nbytes[i])) != KILN_OK) goto done;
        if (nbytes[i] > largest) largest = nbytes[i];
        order[i] = &entries[i];
    }
    qsort(order, n, sizeof *order, compare_names);
    for (size_t i = 1; i < n; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            st = kiln_fail(KILN_ERR_INVALID_ARG, "%s: tensor '%s' is given twice", path, order[i]->name);
            goto done;
        }
    qsort(order, n, sizeof *order, compare_for_layout);
    if ((st = build_header(path, entries, order, nbytes, n, meta, nmeta, &header)) != KILN_OK) goto done;
    if (fill && !(scratch = malloc(largest ? largest : 1))) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for a %llu-byte tensor", path,
                       (unsigned long long)largest);
        goto done;
    }

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= sizeof tmp) {
        tmp[0] = '\0';
        st = kiln_fail(KILN_ERR_INVALID_ARG, "%s: path too long", path);
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        st = kiln_fail(KILN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        tmp[0] = '\0'; /* nothing to remove */
        goto done;
    }
    if (!write_all(fd, header.base, header.used)) {
        st = kiln_fail(KILN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t index = (size_t)(order[i] - entries);
        size_t size = (size_t)nbytes[index];
        const void *bytes = order[i]->data;
        if (fill && size) {
            if ((st = fill(ctx, index, scratch, size)) != KILN_OK) {
                kiln_fail_context(st, "%s: tensor '%s'", path, order[i]->name);
                goto done;
            }
            bytes = scratch;
        }
        if (!write_all(fd, bytes, size)) {
            st = kiln_fail(KILN_ERR_IO, "%s: writing tensor '%s' failed: %s", tmp, order[i]->name, strerror(errno));
            goto done;
        }
    }
    if (fsync(fd) != 0) {
        st = kiln_fail(KILN_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto done;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        st = kiln_fail(KILN_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        st = kiln_fail(KILN_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
done:
    if (fd >= 0) close(fd);
    if (tmp[0]) unlink(tmp);
    free(scratch);
    free(header.base);
    free(nbytes);
    free(order);
    return st;
}

kiln_status kiln_st_write(const char *path, const kiln_st_entry *entries, size_t n, const kiln_st_meta *meta,
                          size_t nmeta)
{
    return kiln_st_write_fill(path, entries, n, meta, nmeta, NULL, NULL);
}
