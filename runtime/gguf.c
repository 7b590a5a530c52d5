/* GGUF reading: the header parsed with bounds checks, quantized tensors as
 * views of their blocks (or f16 copies where rows split blocks).
 *
 * Layout (versions 2 and 3, little-endian): "GGUF", u32 version, u64 tensor
 * count, u64 key/value count; the key/value pairs (a string key, a u32 value
 * type, the value); one info per tensor (string name, u32 dims, u64 dims
 * fastest first, u32 type, u64 offset); then, at the next multiple of
 * `general.alignment` (32 by default), the data area the offsets count
 * from. Strings are a u64 length and that many bytes, no NUL. */
#include "gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "quant.h"
#include "status.h"
#include "tensor.h"

enum { GGUF_VERSION_MIN = 2, GGUF_VERSION_MAX = 3, GGUF_DEFAULT_ALIGNMENT = 32, GGUF_MAX_DIMS = 4 };

static const uint8_t value_size[KILN_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* GGML tensor types kiln reads. */
enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q2_K = 10, T_Q3_K = 11,
    T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_IQ4_NL = 20, T_IQ4_XS = 23, T_I32 = 26, T_I64 = 27, T_BF16 = 30
};

static uint32_t u32_at(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* The quantized ones as kiln dtypes (runtime/quant.h), KILN_DTYPE_COUNT
 * for the others. */
static kiln_dtype quantized_dtype(uint32_t type)
{
    switch (type) {
    case T_Q4_0: return KILN_Q4_0;
    case T_Q4_1: return KILN_Q4_1;
    case T_Q5_0: return KILN_Q5_0;
    case T_Q5_1: return KILN_Q5_1;
    case T_Q8_0: return KILN_Q8_0;
    case T_Q2_K: return KILN_Q2_K;
    case T_Q3_K: return KILN_Q3_K;
    case T_Q4_K: return KILN_Q4_K;
    case T_Q5_K: return KILN_Q5_K;
    case T_Q6_K: return KILN_Q6_K;
    case T_IQ4_NL: return KILN_IQ4_NL;
    case T_IQ4_XS: return KILN_IQ4_XS;
    default: return KILN_DTYPE_COUNT;
    }
}

bool kiln_gguf_block(uint32_t type, int *elements, int *bytes)
{
    return kiln_quant_block(quantized_dtype(type), elements, bytes);
}

const char *kiln_gguf_type_name(uint32_t type)
{
    /* ggml's numbering; the gaps are types that were removed */
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", NULL, NULL, "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
        "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16",
        "I32", "I64", "F64", "IQ1_M", "BF16", NULL, NULL, NULL, "TQ1_0", "TQ2_0", NULL, NULL, NULL, "MXFP4"};
    static _Thread_local char other[24];
    if (type < sizeof names / sizeof names[0] && names[type]) return names[type];
    snprintf(other, sizeof other, "type %" PRIu32, type);
    return other;
}

/* ---------------------------------------------------------------- header */

typedef struct cursor {
    const uint8_t *at, *end;
    const char *label;
} cursor;

typedef struct span {
    const char *text;
    size_t len;
} span;

/* At most this much of a name goes into a message (a hostile one may be
 * gigabytes long, past what "%.*s" takes). */
static int shown(size_t len) { return len < 200 ? (int)len : 200; }

static kiln_status take(cursor *c, size_t n, const char *what, const uint8_t **out)
{
    if ((size_t)(c->end - c->at) < n)
        return kiln_fail(KILN_ERR_FORMAT, "%s: truncated: %s runs past the end of the file", c->label, what);
    *out = c->at;
    c->at += n;
    return KILN_OK;
}

static kiln_status read_u32(cursor *c, const char *what, uint32_t *out)
{
    const uint8_t *p = NULL;
    TRY(take(c, 4, what, &p));
    *out = u32_at(p);
    return KILN_OK;
}

static kiln_status read_u64(cursor *c, const char *what, uint64_t *out)
{
    const uint8_t *p = NULL;
    TRY(take(c, 8, what, &p));
    *out = (uint64_t)u32_at(p) | (uint64_t)u32_at(p + 4) << 32;
    return KILN_OK;
}

static kiln_status read_string(cursor *c, const char *what, span *out)
{
    uint64_t len;
    const uint8_t *p = NULL;
    TRY(read_u64(c, what, &len));
    if (len > (uint64_t)(c->end - c->at))
        return kiln_fail(KILN_ERR_FORMAT, "%s: truncated: %s (%" PRIu64 " bytes) runs past the end of the file",
                         c->label, what, len);
    TRY(take(c, (size_t)len, what, &p));
    if (memchr(p, 0, (size_t)len))
        return kiln_fail(KILN_ERR_FORMAT, "%s: %s '%.*s' holds a NUL byte", c->label, what, shown(len),
                         (const char *)p);
    *out = (span){(const char *)p, (size_t)len};
    return KILN_OK;
}

static bool span_is(span s, const char *text) { return s.len == strlen(text) && memcmp(s.text, text, s.len) == 0; }

static bool span_starts(span s, const char *prefix)
{
    return s.len >= strlen(prefix) && memcmp(s.text, prefix, strlen(prefix)) == 0;
}

/* A scalar of value type `type` at p, as an integer (false for strings,
 * arrays and floats). */
static bool scalar_integer(uint32_t type, const uint8_t *p, int64_t *out)
{
    switch (type) {
    case KILN_GGUF_U8: case KILN_GGUF_BOOL: *out = p[0]; return true;
    case KILN_GGUF_I8: *out = (int8_t)p[0]; return true;
    case KILN_GGUF_U16: *out = (uint16_t)(p[0] | p[1] << 8); return true;
    case KILN_GGUF_I16: *out = (int16_t)(p[0] | p[1] << 8); return true;
    case KILN_GGUF_U32: *out = u32_at(p); return true;
    case KILN_GGUF_I32: *out = (int32_t)u32_at(p); return true;
    case KILN_GGUF_U64: case KILN_GGUF_I64: *out = (int64_t)((uint64_t)u32_at(p) | (uint64_t)u32_at(p + 4) << 32); return true;
    default: return false;
    }
}

/* A kept key/value pair: a string's text, or a scalar's bytes. */
typedef struct kept_value {
    span key;
    uint32_t type;
    span text;         /* KILN_GGUF_STRING */
    const uint8_t *at; /* scalars */
} kept_value;

/* ComfyUI-GGUF's original shape of a flattened tensor. */
typedef struct orig_shape {
    span tensor;
    int ndim;
    int64_t shape[GGUF_MAX_DIMS];
} orig_shape;

/* Original shapes by tensor name (sorted once, looked up per tensor). */
static int compare_shapes(const void *pa, const void *pb)
{
    const span a = ((const orig_shape *)pa)->tensor, b = ((const orig_shape *)pb)->tensor;
    const int c = memcmp(a.text, b.text, a.len < b.len ? a.len : b.len);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

typedef struct tensor_info {
    span name;
    uint32_t ndim, type;
    uint64_t ne[GGUF_MAX_DIMS]; /* fastest first */
    uint64_t offset;
} tensor_info;

typedef struct header {
    uint64_t ntensors, nkv;
    uint32_t alignment;
    span architecture;
    kept_value *kept;
    size_t nkept;
    orig_shape *shapes;
    size_t nshapes;
    tensor_info *tensors;
    const char *wanted;    /* kiln_gguf_find's key, and where it was found */
    kiln_gguf_value value;
    bool found;
} header;

static void header_free(header *h)
{
    free(h->kept);
    free(h->shapes);
    free(h->tensors);
}

#define ORIG_SHAPE_KEY "comfy.gguf.orig_shape."

static kiln_status read_orig_shape(cursor *c, span key, uint32_t elem, uint64_t n, orig_shape *out)
{
    out->tensor = (span){key.text + strlen(ORIG_SHAPE_KEY), key.len - strlen(ORIG_SHAPE_KEY)};
    if (elem >= KILN_GGUF_TYPE_COUNT || !value_size[elem] || elem == KILN_GGUF_F32 || elem == KILN_GGUF_F64 || elem == KILN_GGUF_BOOL || n == 0 ||
        n > GGUF_MAX_DIMS)
        return kiln_fail(KILN_ERR_FORMAT, "%s: key '%.*s': not an array of 1 to %d integers", c->label, shown(key.len),
                         key.text, GGUF_MAX_DIMS);
    out->ndim = (int)n;
    for (int d = 0; d < out->ndim; d++) {
        const uint8_t *p = NULL;
        TRY(take(c, value_size[elem], "an original shape", &p));
        scalar_integer(elem, p, &out->shape[d]);
        if (out->shape[d] <= 0)
            return kiln_fail(KILN_ERR_FORMAT, "%s: key '%.*s': dim %d is %" PRId64, c->label, shown(key.len), key.text,
                             d, out->shape[d]);
    }
    return KILN_OK;
}

/* Reads one key/value pair, keeping what kiln uses. */
static kiln_status read_kv(cursor *c, header *h)
{
    span key;
    uint32_t type;
    TRY(read_string(c, "a metadata key", &key));
    TRY(read_u32(c, "a metadata value type", &type));
    if (type >= KILN_GGUF_TYPE_COUNT)
        return kiln_fail(KILN_ERR_FORMAT, "%s: key '%.*s': unknown value type %" PRIu32, c->label, shown(key.len),
                         key.text, type);
    if (type == KILN_GGUF_ARRAY) {
        uint32_t elem;
        uint64_t n;
        TRY(read_u32(c, "an array's element type", &elem));
        TRY(read_u64(c, "an array's length", &n));
        if (h->wanted && span_is(key, h->wanted)) {
            h->value = (kiln_gguf_value){.type = elem, .array = true, .count = n, .data = c->at};
            h->found = true;
        }
        if (span_starts(key, ORIG_SHAPE_KEY)) return read_orig_shape(c, key, elem, n, &h->shapes[h->nshapes++]);
        if (elem >= KILN_GGUF_TYPE_COUNT || elem == KILN_GGUF_ARRAY)
            return kiln_fail(KILN_ERR_FORMAT, "%s: key '%.*s': an array of %s", c->label, shown(key.len), key.text,
                             elem == KILN_GGUF_ARRAY ? "arrays" : "an unknown type");
        if (elem == KILN_GGUF_STRING) {
            if (n > (uint64_t)(c->end - c->at) / 8)
                return kiln_fail(KILN_ERR_FORMAT, "%s: truncated: array '%.*s' of %" PRIu64 " strings", c->label,
                                 shown(key.len), key.text, n);
            for (uint64_t i = 0; i < n; i++) {
                span s;
                TRY(read_string(c, "an array's string", &s));
            }
            return KILN_OK;
        }
        const uint8_t *p = NULL;
        if (n > (uint64_t)(c->end - c->at) / value_size[elem])
            return kiln_fail(KILN_ERR_FORMAT, "%s: truncated: array '%.*s' of %" PRIu64 " values", c->label,
                             shown(key.len), key.text, n);
        return take(c, (size_t)n * value_size[elem], "an array", &p);
    }
    if (h->wanted && span_is(key, h->wanted)) {
        h->value = (kiln_gguf_value){.type = type, .count = 1, .data = c->at};
        h->found = true;
    }
    kept_value *v = &h->kept[h->nkept];
    *v = (kept_value){.key = key, .type = type};
    if (type == KILN_GGUF_STRING) {
        TRY(read_string(c, "a metadata string", &v->text));
        if (span_is(key, "general.architecture")) h->architecture = v->text;
    } else {
        TRY(take(c, value_size[type], "a metadata value", &v->at));
        if (span_is(key, "general.alignment")) {
            int64_t a;
            if (!scalar_integer(type, v->at, &a) || a <= 0 || a > 65536 || (a & (a - 1)))
                return kiln_fail(KILN_ERR_FORMAT, "%s: general.alignment is not a power of two up to 65536",
                                 c->label);
            h->alignment = (uint32_t)a;
        }
    }
    h->nkept++;
    return KILN_OK;
}

static kiln_status read_tensor_info(cursor *c, tensor_info *t)
{
    TRY(read_string(c, "a tensor name", &t->name));
    if (t->name.len == 0) return kiln_fail(KILN_ERR_FORMAT, "%s: a tensor with an empty name", c->label);
    TRY(read_u32(c, "a tensor's dims", &t->ndim));
    if (t->ndim > GGUF_MAX_DIMS)
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s': %" PRIu32 " dims, GGUF has at most %d", c->label,
                         shown(t->name.len), t->name.text, t->ndim, GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < t->ndim; d++) TRY(read_u64(c, "a tensor's shape", &t->ne[d]));
    TRY(read_u32(c, "a tensor's type", &t->type));
    return read_u64(c, "a tensor's offset", &t->offset);
}

static kiln_status read_header(cursor *c, header *h)
{
    const uint8_t *magic;
    uint32_t version;
    TRY(take(c, 4, "the magic", &magic));
    TRY(read_u32(c, "the version", &version));
    if (version >= 0x10000 && (version >> 24) >= GGUF_VERSION_MIN && (version >> 24) <= GGUF_VERSION_MAX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a big-endian GGUF file; kiln reads little-endian ones", c->label);
    if (version < GGUF_VERSION_MIN || version > GGUF_VERSION_MAX)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: GGUF version %" PRIu32 "; kiln reads versions %d and %d",
                         c->label, version, GGUF_VERSION_MIN, GGUF_VERSION_MAX);
    TRY(read_u64(c, "the tensor count", &h->ntensors));
    TRY(read_u64(c, "the metadata count", &h->nkv));
    /* each pair takes at least 12 bytes and each tensor info 24: counts past that are lies */
    const uint64_t left = (uint64_t)(c->end - c->at);
    if (h->nkv > left / 12 || h->ntensors > left / 24)
        return kiln_fail(KILN_ERR_FORMAT, "%s: %" PRIu64 " tensors and %" PRIu64 " metadata pairs cannot fit in %zu "
                         "bytes", c->label, h->ntensors, h->nkv, (size_t)(c->end - c->at));
    h->alignment = GGUF_DEFAULT_ALIGNMENT;
    h->kept = calloc((size_t)h->nkv + 1, sizeof *h->kept);
    h->shapes = calloc((size_t)h->nkv + 1, sizeof *h->shapes);
    h->tensors = calloc((size_t)h->ntensors + 1, sizeof *h->tensors);
    if (!h->kept || !h->shapes || !h->tensors)
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for the header", c->label);
    for (uint64_t i = 0; i < h->nkv; i++) TRY(read_kv(c, h));
    for (uint64_t i = 0; i < h->ntensors; i++) TRY(read_tensor_info(c, &h->tensors[i]));
    qsort(h->shapes, h->nshapes, sizeof *h->shapes, compare_shapes);
    return KILN_OK;
}

/* ---------------------------------------------------------------- names */

/* llama.cpp's names for T5's encoder tensors and transformers' (ComfyUI-GGUF
 * undoes them the same way, piece by piece). */
static const char *const t5_names[][2] = {
    {"enc.", "encoder."},
    {"blk.", "block."},
    {"token_embd", "shared"},
    {"output_norm", "final_layer_norm"},
    {"attn_q", "layer.0.SelfAttention.q"},
    {"attn_k", "layer.0.SelfAttention.k"},
    {"attn_v", "layer.0.SelfAttention.v"},
    {"attn_o", "layer.0.SelfAttention.o"},
    {"attn_norm", "layer.0.layer_norm"},
    {"attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"},
    {"ffn_up", "layer.1.DenseReluDense.wi_1"},
    {"ffn_down", "layer.1.DenseReluDense.wo"},
    {"ffn_gate", "layer.1.DenseReluDense.wi_0"},
    {"ffn_norm", "layer.1.layer_norm"},
};

/* Writes the kiln name of a tensor into out (when not NULL) and returns its
 * length: the stored name, or transformers' for a T5 encoder's. */
static size_t tensor_name(span stored, bool t5, char *out)
{
    if (!t5) {
        if (out) memcpy(out, stored.text, stored.len);
        return stored.len;
    }
    size_t n = 0;
    for (size_t i = 0; i < stored.len;) {
        size_t r = 0;
        for (; r < sizeof t5_names / sizeof t5_names[0]; r++) {
            const size_t len = strlen(t5_names[r][0]);
            if (stored.len - i >= len && memcmp(stored.text + i, t5_names[r][0], len) == 0) break;
        }
        if (r < sizeof t5_names / sizeof t5_names[0]) {
            const size_t len = strlen(t5_names[r][1]);
            if (out) memcpy(out + n, t5_names[r][1], len);
            n += len;
            i += strlen(t5_names[r][0]);
        } else {
            if (out) out[n] = stored.text[i];
            n++;
            i++;
        }
    }
    return n;
}

/* Writes a value's text in the metadata into out (when not NULL) and returns
 * its length: a string as it is, numbers as printf writes them. */
static size_t value_text(const kept_value *v, char *out)
{
    int64_t i;
    float f;
    double d;
    if (v->type == KILN_GGUF_STRING) {
        if (out) memcpy(out, v->text.text, v->text.len);
        return v->text.len;
    }
    char buf[40];
    if (v->type == KILN_GGUF_BOOL)
        snprintf(buf, sizeof buf, "%s", v->at[0] ? "true" : "false");
    else if (v->type == KILN_GGUF_F32)
        memcpy(&f, v->at, 4), snprintf(buf, sizeof buf, "%.9g", (double)f);
    else if (v->type == KILN_GGUF_F64)
        memcpy(&d, v->at, 8), snprintf(buf, sizeof buf, "%.17g", d);
    else if (v->type == KILN_GGUF_U64)
        scalar_integer(v->type, v->at, &i), snprintf(buf, sizeof buf, "%" PRIu64, (uint64_t)i);
    else
        scalar_integer(v->type, v->at, &i), snprintf(buf, sizeof buf, "%" PRId64, i);
    const size_t n = strlen(buf);
    if (out) memcpy(out, buf, n);
    return n;
}

/* ---------------------------------------------------------------- tensors */

/* Checks t's type, shape and byte range and fills kiln's view of it
 * (dtype, shape in kiln's order, the stored bytes in `raw`/`raw_bytes`). */
static kiln_status check_tensor(const char *label, const tensor_info *t, const header *h, const uint8_t *data,
                                uint64_t data_size, kiln_st_tensor *out, const uint8_t **raw, uint64_t *raw_bytes)
{
    const int nlen = shown(t->name.len);
    const char *name = t->name.text;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < t->ndim; d++) {
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, t->ne[d], &numel) ||
            numel > (UINT64_C(1) << 56))
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s': dim %" PRIu32 " of %" PRIu64 " is out of range",
                             label, nlen, name, d, t->ne[d]);
    }
    int elements = 1, bytes;
    switch (t->type) {
    case T_F32: out->dtype = KILN_F32; bytes = 4; break;
    case T_F16: out->dtype = KILN_F16; bytes = 2; break;
    case T_BF16: out->dtype = KILN_BF16; bytes = 2; break;
    case T_I32: out->dtype = KILN_I32; bytes = 4; break;
    case T_I64: out->dtype = KILN_I64; bytes = 8; break;
    default:
        if (!kiln_gguf_block(t->type, &elements, &bytes))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: tensor '%.*s': GGML type %s is not supported (kiln reads F32 "
                             "F16 BF16 I32 I64 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS)", label,
                             nlen, name,
                             kiln_gguf_type_name(t->type));
        out->dtype = quantized_dtype(t->type);
        if (t->ndim == 0 || t->ne[0] % (uint64_t)elements)
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s': rows of %" PRIu64 " values are not whole %s blocks "
                             "of %d", label, nlen, name, t->ndim ? t->ne[0] : 1, kiln_gguf_type_name(t->type), elements);
    }
    *raw_bytes = numel / (uint64_t)elements * (uint64_t)bytes;
    if (t->offset % h->alignment)
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s': offset %" PRIu64 " is not a multiple of the alignment "
                         "%" PRIu32, label, nlen, name, t->offset, h->alignment);
    if (t->offset > data_size || *raw_bytes > data_size - t->offset)
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s': %" PRIu64 " bytes at offset %" PRIu64 " run past the "
                         "data area (%" PRIu64 " bytes)", label, nlen, name, *raw_bytes, t->offset, data_size);
    *raw = data + t->offset;

    /* the shape: a flattened tensor's original one, else the stored dims reversed */
    const orig_shape key = {.tensor = t->name};
    const orig_shape *orig = h->nshapes ? bsearch(&key, h->shapes, h->nshapes, sizeof key, compare_shapes) : NULL;
    if (orig) {
        uint64_t n = 1;
        for (int d = 0; d < orig->ndim; d++)
            if (__builtin_mul_overflow(n, (uint64_t)orig->shape[d], &n)) n = 0;
        if (n != numel)
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s': its original shape has %" PRIu64 " values, the "
                             "stored one %" PRIu64, label, nlen, name, n, numel);
        out->ndim = orig->ndim;
        memcpy(out->shape, orig->shape, sizeof orig->shape);
    } else {
        out->ndim = (int)t->ndim;
        for (uint32_t d = 0; d < t->ndim; d++) out->shape[d] = (int64_t)t->ne[t->ndim - 1 - d];
    }
    /* A quantized tensor stays as stored where its rows are whole blocks, as
     * a matmul reads them; one flattened across rows for quantizing (a conv
     * kernel's rows of 3) is dequantized at open into an f16 copy. */
    if (kiln_dtype_is_quantized(out->dtype) && out->shape[out->ndim - 1] % elements) out->dtype = KILN_F16;
    out->nbytes = out->dtype == KILN_F16 && elements > 1 ? (size_t)numel * 2 : (size_t)*raw_bytes;
    return KILN_OK;
}

static int compare_offsets(const void *pa, const void *pb)
{
    const tensor_info *a = pa, *b = pb;
    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* Fills c's tensors from the header's infos; quantized ones whose rows are
 * not whole blocks are dequantized into one block of f16 copies. */
static kiln_status build_tensors(const char *label, header *h, const uint8_t *data, uint64_t data_size, bool t5,
                                 kiln_gguf_contents *c, char **strings)
{
    qsort(h->tensors, (size_t)h->ntensors, sizeof *h->tensors, compare_offsets);
    const uint8_t **raw = calloc((size_t)h->ntensors + 1, sizeof *raw);
    c->tensors = calloc((size_t)h->ntensors + 1, sizeof *c->tensors);
    if (!raw || !c->tensors) {
        free(raw);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for %" PRIu64 " tensors", label, h->ntensors);
    }
    kiln_status st = KILN_OK;
    uint64_t dequantized = 0, end_of_last = 0;
    for (size_t i = 0; i < h->ntensors && st == KILN_OK; i++) {
        const tensor_info *t = &h->tensors[i];
        uint64_t raw_bytes = 0;
        kiln_st_tensor *out = &c->tensors[i];
        st = check_tensor(label, t, h, data, data_size, out, &raw[i], &raw_bytes);
        if (st != KILN_OK) break;
        if (i && t->offset < end_of_last)
            st = kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%.*s' at offset %" PRIu64 " overlaps the one before it",
                           label, shown(t->name.len), t->name.text, t->offset);
        end_of_last = t->offset + raw_bytes;
        if (out->dtype == KILN_F16 && t->type != T_F16) dequantized += out->nbytes;
        out->name = *strings;
        *strings += tensor_name(t->name, t5, *strings);
        *(*strings)++ = '\0';
        c->count++;
    }
    if (st == KILN_OK && dequantized) {
        c->dequantized = malloc((size_t)dequantized);
        if (!c->dequantized)
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for the dequantized tensors (%" PRIu64 " bytes)",
                           label, dequantized);
    }
    cpu_pool *pool = NULL;
    if (st == KILN_OK && dequantized) st = kiln_convert_pool(&pool);
    uint8_t *next = c->dequantized;
    for (size_t i = 0; i < c->count && st == KILN_OK; i++) {
        const kiln_dtype stored = quantized_dtype(h->tensors[i].type);
        if (c->tensors[i].dtype != KILN_F16 || stored == KILN_DTYPE_COUNT) {
            c->tensors[i].data = raw[i];
            continue;
        }
        kiln_convert_parallel(pool, raw[i], stored, next, KILN_F16, (size_t)kiln_st_numel(&c->tensors[i]));
        c->tensors[i].data = next;
        next += c->tensors[i].nbytes;
    }
    cpu_pool_free(pool);
    free(raw);
    return st;
}

/* ---------------------------------------------------------------- reading */

bool kiln_gguf_magic(const void *data, size_t size) { return size >= 4 && memcmp(data, "GGUF", 4) == 0; }

kiln_status kiln_gguf_read(const uint8_t *data, size_t size, const char *label, kiln_gguf_contents *out)
{
    memset(out, 0, sizeof *out);
    header h = {0};
    cursor c = {data, data + size, label};
    kiln_status st = read_header(&c, &h);
    if (st != KILN_OK) goto done;
    const bool t5 = span_is(h.architecture, "t5") || span_is(h.architecture, "t5encoder");

    /* the data area begins at the next multiple of the alignment */
    const size_t header_end = (size_t)(c.at - data);
    const size_t data_start = (header_end + h.alignment - 1) / h.alignment * h.alignment;
    if (data_start > size && h.ntensors) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: truncated: no data area after the header", label);
        goto done;
    }
    const uint64_t data_size = data_start > size ? 0 : size - data_start;

    /* what the tensors are stored as, for gen --info: "Q8_0 36, F32 20" in order of appearance
     * (types past ggml's numbering fail in build_tensors) */
    enum { TYPE_IDS = 64 };
    size_t counts[TYPE_IDS] = {0};
    uint32_t order[TYPE_IDS], ntypes = 0;
    for (size_t i = 0; i < h.ntensors; i++) {
        const uint32_t type = h.tensors[i].type;
        if (type >= TYPE_IDS) continue;
        if (!counts[type]++) order[ntypes++] = type;
    }
    char types[TYPE_IDS * 24] = "";
    for (uint32_t i = 0, used = 0; i < ntypes && used < sizeof types; i++)
        used += (uint32_t)snprintf(types + used, sizeof types - used, "%s%s %zu", i ? ", " : "",
                                   kiln_gguf_type_name(order[i]), counts[order[i]]);

    /* one block for every name, key and text value */
    size_t text = sizeof KILN_GGUF_TYPES_KEY + strlen(types) + 1;
    for (size_t i = 0; i < h.ntensors; i++) text += tensor_name(h.tensors[i].name, t5, NULL) + 1;
    for (size_t i = 0; i < h.nkept; i++) text += h.kept[i].key.len + 1 + value_text(&h.kept[i], NULL) + 1;
    char *strings = out->strings = malloc(text + 1);
    out->meta = calloc(h.nkept + 2, sizeof *out->meta);
    if (!out->strings || !out->meta) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory for the header's text", label);
        goto done;
    }
    for (size_t i = 0; i < h.nkept; i++) {
        const kept_value *v = &h.kept[i];
        kiln_st_meta *m = &out->meta[out->nmeta++];
        m->key = strings;
        memcpy(strings, v->key.text, v->key.len);
        strings += v->key.len;
        *strings++ = '\0';
        m->value = strings;
        strings += value_text(v, strings);
        *strings++ = '\0';
    }
    kiln_st_meta *m = &out->meta[out->nmeta++];
    m->key = memcpy(strings, KILN_GGUF_TYPES_KEY, sizeof KILN_GGUF_TYPES_KEY);
    strings += sizeof KILN_GGUF_TYPES_KEY;
    m->value = memcpy(strings, types, strlen(types) + 1);
    strings += strlen(types) + 1;
    st = build_tensors(label, &h, data + (data_start > size ? size : data_start), data_size, t5, out, &strings);
done:
    header_free(&h);
    if (st != KILN_OK) kiln_gguf_free(out);
    return st;
}

kiln_status kiln_gguf_find(const uint8_t *data, size_t size, const char *label, const char *key,
                           kiln_gguf_value *out, bool *found)
{
    header h = {.wanted = key};
    cursor c = {data, data + size, label};
    kiln_status st = read_header(&c, &h);
    *found = st == KILN_OK && h.found;
    *out = h.value;
    header_free(&h);
    return st;
}

void kiln_gguf_free(kiln_gguf_contents *c)
{
    free(c->tensors);
    free(c->meta);
    free(c->strings);
    free(c->dequantized);
    memset(c, 0, sizeof *c);
}
