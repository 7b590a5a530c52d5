/* The shader variants for VK_KHR_cooperative_matrix (the _khr ones, written
 * at build time by tools/build/spirv_khr_coopmat.c from the 16x8x16 NV
 * modules, and the _workgroup ones, of workgroup-scope matrices) against
 * those NV modules: from the embedded table, or for the _workgroup ones
 * (whose NV modules no device runs) as the build left them beside it. No GPU
 * here has the KHR extension (lavapipe has no cooperative matrices) and
 * Debian's SPIR-V validator predates it, so this is their check: walking
 * both modules side by side, every instruction is the NV one, word for word,
 * except the ones the extensions spell differently, and those say the same
 * things (a load's layout is the NV column-major flag; every multiply-add
 * takes an A, a B and an accumulator typed with those uses). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef KILN_TEST_SPIRV_TABLE
#include "vulkan_shaders.h"

enum {
    OP_EXTENSION = 10,
    OP_CAPABILITY = 17,
    OP_CONSTANT_TRUE = 41,
    OP_CONSTANT_FALSE = 42,
    OP_CONSTANT = 43,
};
/* NV opcode - NV_TO_KHR = KHR opcode, for the five matrix instructions */
enum { NV_TYPE = 5358, NV_LOAD, NV_STORE, NV_MULADD, NV_LENGTH, NV_TO_KHR = 5358 - 4456 };
enum { CAP_NV = 5357, CAP_KHR = 6022 };

typedef struct module {
    const uint32_t *w;
    size_t n;
} module;

static module table_module(kiln_vk_shader s)
{
    return (module){kiln_vk_shaders[s].code, kiln_vk_shaders[s].bytes / 4};
}

static int string_is(const uint32_t *words, uint32_t count, const char *s)
{
    return strnlen((const char *)words, count * 4) == strlen(s) && strcmp((const char *)words, s) == 0;
}

/* What a uint constant's value is, where id names one (else -1). */
static long constant_value(const module *m, uint32_t id)
{
    for (size_t i = 5; i < m->n; i += m->w[i] >> 16)
        if ((m->w[i] & 0xffff) == OP_CONSTANT && (m->w[i] >> 16) == 4 && m->w[i + 2] == id) return m->w[i + 3];
    return -1;
}

/* Every matrix type of both modules has this scope (SPIR-V's Subgroup 3,
 * Workgroup 2). */
static void check_pair(module nv, kiln_vk_shader khr_shader, long scope)
{
    module khr = table_module(khr_shader);
    print_message("  -> %s: %zu -> %zu words\n", kiln_vk_shaders[khr_shader].name, nv.n, khr.n);
    assert_true(nv.n > 5 && khr.n > 5);
    assert_int_equal(khr.w[0], 0x07230203u);
    for (int k = 0; k < 5; k++)
        if (k != 3) assert_int_equal(khr.w[k], nv.w[k]);
    uint32_t bound = nv.w[3];
    assert_int_equal(khr.w[3], bound + 3); /* three new constants */

    /* the matrix types' uses, each value's type, the NV booleans */
    long *use = malloc((bound + 3) * sizeof *use); /* -1: not a matrix type */
    uint32_t *type_of = calloc(bound + 3, sizeof *type_of);
    int8_t *flag = calloc(bound, 1);
    assert_true(use && type_of && flag);
    for (uint32_t k = 0; k < bound + 3; k++) use[k] = -1;
    int muladds = 0, rewritten = 0;
    size_t i = 5, j = 5;
    while (i < nv.n) {
        assert_true(j < khr.n);
        const uint32_t *a = nv.w + i, *b = khr.w + j;
        uint32_t alen = a[0] >> 16, aop = a[0] & 0xffff, blen = b[0] >> 16, bop = b[0] & 0xffff;
        assert_true(alen > 0 && blen > 0 && i + alen <= nv.n && j + blen <= khr.n);
        if (aop == OP_CONSTANT_TRUE || aop == OP_CONSTANT_FALSE) flag[a[2]] = aop == OP_CONSTANT_TRUE ? 1 : -1;
        if (aop == NV_TYPE && bop == OP_CONSTANT && b[2] >= bound) { /* the new constants, before the first type */
            assert_int_equal(blen, 4);
            assert_int_equal(b[3], b[2] - bound);
            j += blen;
            continue;
        }
        if (aop == OP_CAPABILITY && a[1] == CAP_NV) {
            assert_int_equal(bop, OP_CAPABILITY);
            assert_int_equal(b[1], CAP_KHR);
        } else if (aop == OP_EXTENSION && string_is(a + 1, alen - 1, "SPV_NV_cooperative_matrix")) {
            assert_int_equal(bop, OP_EXTENSION);
            assert_true(string_is(b + 1, blen - 1, "SPV_KHR_cooperative_matrix"));
        } else if (aop == NV_TYPE) {
            /* result, component type, scope, rows, columns; then the use */
            assert_int_equal(bop, NV_TYPE - NV_TO_KHR);
            assert_int_equal(blen, alen + 1);
            assert_memory_equal(a + 1, b + 1, (alen - 1) * 4);
            assert_int_equal(constant_value(&khr, b[3]), scope);
            use[b[1]] = constant_value(&khr, b[alen]);
            assert_in_range(use[b[1]], 0, 2);
            rewritten++;
        } else if (aop == NV_LOAD || aop == NV_STORE) {
            /* NV: [type, result,] pointer, stride, column major, memory...
             * KHR: [type, result,] pointer, layout, stride, memory... */
            uint32_t head = aop == NV_LOAD ? 3 : 2;
            assert_int_equal(bop, aop - NV_TO_KHR);
            assert_int_equal(blen, alen);
            assert_memory_equal(a + 1, b + 1, head * 4);
            assert_int_equal(b[head + 2], a[head + 1]); /* stride */
            assert_int_not_equal(flag[a[head + 2]], 0);
            assert_int_equal(constant_value(&khr, b[head + 1]), flag[a[head + 2]] > 0 ? 1 : 0);
            assert_memory_equal(a + head + 3, b + head + 3, (alen - head - 3) * 4);
            if (aop == NV_LOAD) type_of[b[2]] = b[1];
            rewritten++;
        } else if (aop == NV_MULADD || aop == NV_LENGTH) {
            assert_int_equal(bop, aop - NV_TO_KHR);
            assert_int_equal(blen, alen);
            assert_memory_equal(a + 1, b + 1, (alen - 1) * 4);
            if (aop == NV_MULADD) {
                /* result type, result, A, B, C */
                assert_int_equal(alen, 6);
                type_of[b[2]] = b[1];
                assert_int_equal(use[b[1]], 2);
                assert_int_equal(use[type_of[b[3]]], 0);
                assert_int_equal(use[type_of[b[4]]], 1);
                assert_int_equal(use[type_of[b[5]]], 2);
                muladds++;
            }
            rewritten++;
        } else {
            assert_int_equal(blen, alen);
            assert_memory_equal(a, b, alen * 4);
            assert_false(bop >= NV_TYPE && bop <= NV_LENGTH);
            /* any other instruction with a matrix result type (a load of a
             * variable, a construct, a phi) */
            if (alen >= 3 && a[1] < bound && use[a[1]] >= 0) type_of[a[2]] = a[1];
        }
        i += alen;
        j += blen;
    }
    assert_int_equal(j, khr.n);
    assert_true(muladds > 0);
    print_message("    %d multiply-adds, %d instructions rewritten\n", muladds, rewritten);
    free(use);
    free(type_of);
    free(flag);
}

static void khr_variants_match_their_nv_modules(void **state)
{
    (void)state;
    check_pair(table_module(KILN_VK_SHADER_MATMUL_COOPMAT_N8_F16), KILN_VK_SHADER_MATMUL_COOPMAT_KHR_F16, 3);
    check_pair(table_module(KILN_VK_SHADER_CONV2D_COOPMAT_N8_F16), KILN_VK_SHADER_CONV2D_COOPMAT_KHR_F16, 3);
    check_pair(table_module(KILN_VK_SHADER_ATTENTION_COOPMAT_N8_F16), KILN_VK_SHADER_ATTENTION_COOPMAT_KHR_F16, 3);
}

/* The NV module the build compiled for a rewritten variant (cmake/shaders.cmake). */
static module built_nv_module(kiln_vk_shader s, uint32_t **words)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shaders/%s.nv.spv", KILN_BINARY_DIR, kiln_vk_shaders[s].name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: cannot open (the build writes it beside the shader table)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long bytes = ftell(f);
    assert_true(bytes > 20 && bytes % 4 == 0);
    rewind(f);
    *words = malloc((size_t)bytes);
    assert_non_null(*words);
    assert_int_equal(fread(*words, 1, (size_t)bytes, f), (size_t)bytes);
    fclose(f);
    return (module){*words, (size_t)bytes / 4};
}

static void workgroup_variants_match_their_nv_modules(void **state)
{
    (void)state;
    static const kiln_vk_shader variants[] = {KILN_VK_SHADER_MATMUL_WORKGROUP_F16, KILN_VK_SHADER_CONV2D_WORKGROUP_F16};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        uint32_t *words;
        check_pair(built_nv_module(variants[v], &words), variants[v], 2);
        free(words);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(khr_variants_match_their_nv_modules),
                                       cmocka_unit_test(workgroup_variants_match_their_nv_modules)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void)
{
    printf("SKIP: built without the Vulkan backend (-DKILN_VULKAN=OFF): no shader table to check\n");
    return 77;
}
#endif
