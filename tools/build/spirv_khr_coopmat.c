/* spirv_khr_coopmat (a build step, cmake/shaders.cmake): rewrites a SPIR-V module written against
 * SPV_NV_cooperative_matrix into the same module against
 * SPV_KHR_cooperative_matrix, and writes it as a C array for the Vulkan
 * backend's shader table (cmake/shaders.cmake).
 *
 *   spirv_khr_coopmat IN.spv OUT.h NAME     (NAME: the array's name)
 *
 * Why a rewrite: Debian 12's glslang (12.0) compiles GL_NV_cooperative_matrix
 * but predates GL_KHR_cooperative_matrix, and the two SPIR-V extensions say
 * the same things with two differences:
 *   - a KHR matrix type names its use (A, B or accumulator). An NV type does
 *     not, so each type's use is read off the multiply-adds it takes part
 *     in. A type used two ways cannot be rewritten by retyping instructions
 *     and is an error: 16x16x16 multiplies take A and B of the same NV type
 *     (f16, 16x16), so kiln rewrites its 16x8x16 variants, whose A (16x16),
 *     B (16x8) and accumulator (f32) types are three, and its GEMM on
 *     workgroup-scope matrices (A 64x32, B 32x64: the NV types take any
 *     scope, which the rewrite keeps).
 *   - loads and stores take the layout (row or column major) as the id of
 *     an integer constant, before the stride, where NV takes a boolean id
 *     after it.
 * Everything else (ids, types, memory operands) is kept word for word, so
 * the rewritten module has the instructions of the original in the same
 * order, plus three integer constants. tests/test_vulkan_backend.c checks
 * that of every rewritten variant in the table. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_EXTENSION = 10,
    OP_CAPABILITY = 17,
    OP_TYPE_FIRST = 19, /* OpTypeVoid .. OpTypeForwardPointer */
    OP_TYPE_INT = 21,
    OP_TYPE_LAST = 39,
    OP_CONSTANT_TRUE = 41,
    OP_CONSTANT_FALSE = 42,
    OP_CONSTANT = 43,
    CAP_COOPMAT_NV = 5357,
    OP_TYPE_COOPMAT_NV = 5358, /* the NV instructions, then their KHR counterparts */
    OP_COOPMAT_LOAD_NV,
    OP_COOPMAT_STORE_NV,
    OP_COOPMAT_MULADD_NV,
    OP_COOPMAT_LENGTH_NV,
    CAP_COOPMAT_KHR = 6022,
    OP_TYPE_COOPMAT_KHR = 4456,
    OP_COOPMAT_LOAD_KHR,
    OP_COOPMAT_STORE_KHR,
    OP_COOPMAT_MULADD_KHR,
    OP_COOPMAT_LENGTH_KHR,
};
enum { USE_A = 1, USE_B = 2, USE_ACC = 4 }; /* bits; the KHR operand is log2 */

static const char *in_path;
static uint32_t bound; /* ids are below this */

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spirv_khr_coopmat: %s: ", in_path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* An id operand of the instruction at word at. */
static uint32_t id(uint32_t v, size_t at)
{
    if (v >= bound) fail("instruction at word %zu: id %u out of bounds (%u)", at, v, bound);
    return v;
}

static uint32_t *read_words(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail("cannot open: %s", strerror(errno));
    size_t cap = 1 << 14, n = 0;
    uint32_t *w = malloc(cap * sizeof *w);
    size_t got;
    while (w && (got = fread(w + n, sizeof *w, cap - n, f)) > 0) {
        n += got;
        if (n == cap) w = realloc(w, (cap *= 2) * sizeof *w);
    }
    if (!w) fail("out of memory");
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) fail("read error");
    *count = n;
    return w;
}

/* The words of a string operand, NUL-terminated and padded to 4 bytes. */
static size_t string_words(const char *s, uint32_t *out)
{
    size_t len = strlen(s) + 1, n = (len + 3) / 4;
    memset(out, 0, n * 4);
    memcpy(out, s, len);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: spirv_khr_coopmat IN.spv OUT.h NAME\n");
        return 2;
    }
    in_path = argv[1];
    size_t n;
    uint32_t *w = read_words(in_path, &n);
    if (n < 5 || w[0] != 0x07230203u) fail("not a SPIR-V module");
    bound = w[3];

    /* Pass 1: which ids are types, each result's type, each matrix type's use. */
    uint8_t *is_type = calloc(bound, 1), *use = calloc(bound, 1), *is_bool = calloc(bound, 1);
    uint32_t *type_of = calloc(bound, sizeof *type_of);
    if (!is_type || !use || !is_bool || !type_of) fail("out of memory");
    uint32_t uint_type = 0, first_matrix = 0;
    bool has_capability = false;
    for (size_t i = 5; i < n;) {
        uint32_t len = w[i] >> 16, op = w[i] & 0xffff;
        if (len == 0 || i + len > n) fail("instruction at word %zu runs past the end", i);
        const uint32_t *o = w + i + 1; /* operands */
        if (op == OP_CAPABILITY && len == 2 && o[0] == CAP_COOPMAT_NV) has_capability = true;
        if (((op >= OP_TYPE_FIRST && op <= OP_TYPE_LAST) || op == OP_TYPE_COOPMAT_NV) && len >= 2 && o[0] < bound) {
            is_type[o[0]] = 1;
            if (op == OP_TYPE_INT && len == 4 && o[1] == 32 && o[2] == 0 && !uint_type) uint_type = o[0];
            if (op == OP_TYPE_COOPMAT_NV && !first_matrix) first_matrix = o[0];
        } else if (len >= 3 && o[0] < bound && is_type[o[0]] && o[1] < bound) {
            type_of[o[1]] = o[0]; /* an instruction with a result type and a result */
            if (op == OP_CONSTANT_TRUE || op == OP_CONSTANT_FALSE) is_bool[o[1]] = op == OP_CONSTANT_TRUE ? 2 : 1;
        }
        if (op == OP_COOPMAT_MULADD_NV) {
            if (len != 6) fail("multiply-add at word %zu: unexpected operands", i);
            const uint32_t role[4][2] = {{id(o[0], i), USE_ACC},
                                         {type_of[id(o[2], i)], USE_A},
                                         {type_of[id(o[3], i)], USE_B},
                                         {type_of[id(o[4], i)], USE_ACC}};
            for (int r = 0; r < 4; r++) {
                if (!role[r][0]) fail("multiply-add at word %zu: an operand of unknown type", i);
                use[role[r][0]] |= (uint8_t)role[r][1];
            }
        }
        i += len;
    }
    if (!has_capability) fail("no SPV_NV_cooperative_matrix capability to rewrite");
    if (!uint_type) fail("no 32-bit unsigned integer type for the KHR operands");
    for (uint32_t t = 0; t < bound; t++)
        if (use[t] & (use[t] - 1))
            fail("matrix type %%%u is used as more than one of A, B and accumulator (16x16x16 f16 multiplies take A "
                 "and B of one NV type; only modules with distinct types, such as 16x8x16 ones, can be rewritten)",
                 t);

    /* Pass 2: the rewritten module. Three integer constants c[v] = v go
     * right before the first matrix type: the uses A, B and accumulator are
     * 0, 1 and 2, the layouts row and column major 0 and 1. */
    uint32_t *out = malloc((n + 64) * sizeof *out);
    if (!out) fail("out of memory");
    size_t m = 0;
    uint32_t c[3] = {bound, bound + 1, bound + 2};
    memcpy(out, w, 5 * sizeof *w);
    out[3] = bound + 3;
    m = 5;
    for (size_t i = 5; i < n;) {
        uint32_t len = w[i] >> 16, op = w[i] & 0xffff;
        const uint32_t *o = w + i + 1;
        uint32_t ext[16];
        if (op == OP_CAPABILITY && len == 2 && o[0] == CAP_COOPMAT_NV) {
            out[m++] = 2u << 16 | OP_CAPABILITY;
            out[m++] = CAP_COOPMAT_KHR;
        } else if (op == OP_EXTENSION && len - 1 == string_words("SPV_NV_cooperative_matrix", ext) &&
                   memcmp(o, ext, (len - 1) * 4) == 0) {
            size_t k = string_words("SPV_KHR_cooperative_matrix", ext);
            out[m++] = (uint32_t)(k + 1) << 16 | OP_EXTENSION;
            memcpy(out + m, ext, k * 4);
            m += k;
        } else if (op == OP_TYPE_COOPMAT_NV) {
            if (len != 6) fail("matrix type at word %zu: unexpected operands", i); /* result, type, scope, rows, columns */
            if (o[0] == first_matrix)
                for (uint32_t v = 0; v < 3; v++) {
                    out[m++] = 4u << 16 | OP_CONSTANT;
                    out[m++] = uint_type;
                    out[m++] = c[v];
                    out[m++] = v;
                }
            uint8_t u = use[o[0]] ? use[o[0]] : USE_ACC; /* never multiplied: only loaded and stored */
            out[m++] = 7u << 16 | OP_TYPE_COOPMAT_KHR;
            memcpy(out + m, o, 5 * 4);
            m += 5;
            out[m++] = c[u == USE_A ? 0 : u == USE_B ? 1 : 2];
        } else if (op == OP_COOPMAT_LOAD_NV || op == OP_COOPMAT_STORE_NV) {
            /* load: type, result, pointer, stride, column major [, memory operands]
             * store: pointer, object, stride, column major [, memory operands] */
            uint32_t head = op == OP_COOPMAT_LOAD_NV ? 3 : 2;
            if (len < head + 3) fail("matrix load or store at word %zu: too few operands", i);
            uint32_t stride = o[head], major = o[head + 1];
            if (!is_bool[id(major, i)]) fail("matrix load or store at word %zu: the column-major operand is not a constant", i);
            out[m++] = len << 16 | (op == OP_COOPMAT_LOAD_NV ? OP_COOPMAT_LOAD_KHR : OP_COOPMAT_STORE_KHR);
            memcpy(out + m, o, head * 4);
            m += head;
            out[m++] = is_bool[major] == 2 ? c[1] : c[0]; /* ColumnMajorKHR 1, RowMajorKHR 0 */
            out[m++] = stride;
            memcpy(out + m, o + head + 2, (len - 1 - head - 2) * 4);
            m += len - 1 - head - 2;
        } else {
            memcpy(out + m, w + i, len * 4);
            if (op == OP_COOPMAT_MULADD_NV) out[m] = len << 16 | OP_COOPMAT_MULADD_KHR;
            if (op == OP_COOPMAT_LENGTH_NV) out[m] = len << 16 | OP_COOPMAT_LENGTH_KHR;
            m += len;
        }
        i += len;
    }

    FILE *f = fopen(argv[2], "w");
    if (!f) {
        fprintf(stderr, "spirv_khr_coopmat: %s: cannot create: %s\n", argv[2], strerror(errno));
        return 1;
    }
    fprintf(f, "/* Generated by tools/build/spirv_khr_coopmat from %s. */\nconst uint32_t %s[] = {", in_path, argv[3]);
    for (size_t i = 0; i < m; i++) fprintf(f, "%s0x%08x,", i % 8 ? " " : "\n    ", out[i]);
    fprintf(f, "\n};\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "spirv_khr_coopmat: %s: write error\n", argv[2]);
        remove(argv[2]);
        return 1;
    }
    free(out);
    free(w);
    free(is_type);
    free(use);
    free(is_bool);
    free(type_of);
    return 0;
}
