/* torch.randn, bit for bit: kiln's generator against ComfyUI's noise goldens
 * (torch 1.13 CPU, AVX2 and default-capability builds) for every seed and
 * shape they hold. tests/data/comfyui/noise.safetensors keeps small tensors
 * whole and a 64-bit FNV-1a hash of every tensor (see its README). */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "rng.h"
#include "safetensors.h"

static const uint64_t seeds[] = {0, 1, 42, 4294967297ull, 18446744073709551615ull};

typedef struct shape_case {
    const char *label; /* as the golden names spell the shape */
    size_t numel;
} shape_case;

/* 60 and 756 values are not multiples of 16 (the last block is redone); 15
 * takes the double-precision scalar path. */
static const shape_case shapes[] = {
    {"1x4x64x64", 16384}, {"2x4x8x8", 512}, {"1x4x3x5", 60},
    {"1x16x128x128", 262144}, {"3x4x7x9", 756}, {"1x1x3x5", 15},
};

static uint64_t fnv1a64(const float *v, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *bytes = (const unsigned char *)v; /* little-endian float32, as the script hashed */
    for (size_t i = 0; i < n * sizeof *v; i++) h = (h ^ bytes[i]) * 0x100000001b3ull;
    return h;
}

static kiln_st_file *open_noise(void)
{
    kiln_st_file *f = NULL;
    assert_kiln_ok(kiln_st_open(kiln_test_data("comfyui/noise.safetensors"), &f));
    return f;
}

/* Checks `got` (n) against golden `name`: the whole tensor where kept (the
 * first differing element named), and always its hash. */
static void check_golden(kiln_st_file *f, const char *name, const float *got, size_t n)
{
    char hash_name[160];
    snprintf(hash_name, sizeof hash_name, "%s.fnv1a", name);
    const kiln_st_tensor *hash = kiln_st_find(f, hash_name);
    if (!hash || hash->dtype != KILN_I64 || hash->nbytes != 8) fail_msg("noise.safetensors: no hash %s", hash_name);
    const kiln_st_tensor *whole = kiln_st_find(f, name);
    if (whole) {
        if (whole->nbytes != n * sizeof(float)) fail_msg("%s: %zu bytes, expected %zu", name, whole->nbytes, n * 4);
        const float *want = whole->data;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
                fail_msg("%s[%zu]: got %.9g, torch gave %.9g", name, i, (double)got[i], (double)want[i]);
    }
    uint64_t want_hash;
    memcpy(&want_hash, hash->data, sizeof want_hash);
    if (fnv1a64(got, n) != want_hash) fail_msg("%s: values differ from torch's (hash mismatch)", name);
}

static void randn_matches_torch(kiln_randn_kernel kernel, const char *tag)
{
    kiln_st_file *f = open_noise();
    float *buf = malloc(3 * 262144 * sizeof *buf);
    assert_non_null(buf);
    int checked = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            char name[128];
            kiln_rng rng;
            kiln_rng_seed(&rng, seeds[s]);
            rng.kernel = kernel;
            kiln_rng_randn(&rng, buf, shapes[k].numel);
            snprintf(name, sizeof name, "%s.prepare_noise.seed%llu.%s", tag, (unsigned long long)seeds[s],
                     shapes[k].label);
            check_golden(f, name, buf, shapes[k].numel);
            checked++;
        }
    }
    print_message("  %s: %d seed x shape cases bit-exact\n", tag, checked);
    free(buf);
    kiln_st_close(f);
}

static void randn_avx2_matches_torch(void **state)
{
    (void)state;
    randn_matches_torch(KILN_RANDN_AVX2, "avx2");
}

static void randn_scalar_matches_torch_nosimd(void **state)
{
    (void)state;
    randn_matches_torch(KILN_RANDN_SCALAR, "scalar");
}

/* ComfyUI's default_noise_sampler: one generator seeded with the seed,
 * randn(x.shape) per call; the goldens hold three consecutive calls. */
static void noise_sampler_draws_match_torch(void **state)
{
    (void)state;
    kiln_st_file *f = open_noise();
    const size_t shape_numel[] = {512, 768};
    const char *shape_label[] = {"2x4x8x8", "3x4x8x8"};
    float *buf = malloc(3 * 768 * sizeof *buf);
    assert_non_null(buf);
    for (int tag = 0; tag < 2; tag++) {
        for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
            for (int k = 0; k < 2; k++) {
                kiln_rng rng;
                kiln_rng_seed(&rng, seeds[s]);
                rng.kernel = tag ? KILN_RANDN_SCALAR : KILN_RANDN_AVX2;
                for (int call = 0; call < 3; call++) kiln_rng_randn(&rng, buf + call * shape_numel[k], shape_numel[k]);
                char name[128];
                snprintf(name, sizeof name, "%s.noise_sampler.seed%llu.%s", tag ? "scalar" : "avx2",
                         (unsigned long long)seeds[s], shape_label[k]);
                check_golden(f, name, buf, 3 * shape_numel[k]);
            }
        }
    }
    free(buf);
    kiln_st_close(f);
}

/* The scalar path caches the second value of each Box–Muller pair in the
 * generator: 15 values use 8 pairs, and the next scalar draw hands out the
 * spare before consuming new uniforms. Re-seeding drops it. */
static void scalar_path_caches_spare_normal(void **state)
{
    (void)state;
    kiln_rng a, b;
    float first[15], spare, fresh[2];
    kiln_rng_seed(&a, 42);
    kiln_rng_randn(&a, first, 15);
    kiln_rng_randn(&a, &spare, 1);
    assert_true(a.has_cached_normal == false);
    kiln_rng_randn(&a, fresh, 2); /* a new pair */
    kiln_rng_seed(&b, 42);
    float again[16];
    kiln_rng_randn(&b, again, 15);
    assert_true(b.has_cached_normal);
    assert_float_equal(spare, (float)b.cached_normal, 0.0f);
    kiln_rng_seed(&b, 42);
    assert_false(b.has_cached_normal);
    assert_memory_equal(first, again, sizeof first);
    /* the spare is not the next fresh value */
    assert_true(spare != fresh[0]);
}

/* ComfyUI's noise for a LATENT with a batch_index (prepare_noise, restated
 * with torch in tests/data/batch_noise), bit for bit: an odd image size
 * (60 values: the batch's one randn would differ), a size 16 divides, and
 * one on the scalar path; indices repeated and skipped. */
static void indexed_noise_matches_comfyui(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("batch_noise/batch_noise.safetensors");
    static const char *const cases[] = {"odd", "even", "small"};
    for (size_t c = 0; c < 3; c++) {
        golden want = golden_field(f, cases[c], "noise"), index_f = golden_field(f, cases[c], "index"),
               shape = golden_field(f, cases[c], "shape"), seed = golden_field(f, cases[c], "seed");
        const size_t n = want.count, batch = index_f.count;
        const size_t per_image = (size_t)(shape.data[1] * shape.data[2] * shape.data[3]);
        assert_int_equal(n, batch * per_image);
        int index[8];
        for (size_t b = 0; b < batch; b++) index[b] = (int)index_f.data[b];
        float *got = malloc(n * sizeof *got), *draw = malloc(per_image * sizeof *draw);
        assert_non_null(got), assert_non_null(draw);
        kiln_rng rng;
        kiln_rng_seed(&rng, (uint64_t)seed.data[0]);
        kiln_rng_randn_indexed(&rng, index, (int)batch, per_image, got, draw);
        assert_memory_equal(got, want.data, n * sizeof *got);
        if (per_image % 16) { /* what the batch's one randn gives differs there */
            kiln_rng_seed(&rng, (uint64_t)seed.data[0]);
            kiln_rng_randn(&rng, got, n);
            const size_t last = (batch - 1) * per_image; /* an image whose place is not its own */
            assert_true(memcmp(got + last, want.data + last, per_image * sizeof *got) != 0);
        }
        free(got), free(draw);
        golden_free(&want), golden_free(&index_f), golden_free(&shape), golden_free(&seed);
    }
    kiln_st_close(f);
}

/* torch.randint(0, high, (1,)) after torch.manual_seed(7) (one after the
 * other), and after a
 * randn of 5 (the scalar path) and of 20 (the block path) (torch 2.15). */
static void randint_matches_torch(void **state)
{
    (void)state;
    kiln_rng rng;
    kiln_rng_seed(&rng, 7);
    /* from 2^28 on torch draws 64 bits */
    static const uint64_t highs[] = {1, 2, 3, 5, 7, 1000, 2147483648u, (1u << 28) - 1, (1u << 28) + 3, 1000000000000},
                          want[] = {0, 0, 1, 1, 1, 347, 1956722279, 173901163, 16678282, 868310195784};
    for (size_t i = 0; i < sizeof highs / sizeof highs[0]; i++) assert_int_equal(kiln_rng_randint(&rng, highs[i]), want[i]);
    float noise[20];
    static const uint64_t after[2][2] = {{8, 0}, {6, 2}};
    for (int k = 0; k < 2; k++) {
        kiln_rng_seed(&rng, 7);
        kiln_rng_randn(&rng, noise, k ? 20 : 5);
        assert_int_equal(kiln_rng_randint(&rng, 10), after[k][0]);
        assert_int_equal(kiln_rng_randint(&rng, 3), after[k][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(randn_avx2_matches_torch),
        cmocka_unit_test(randn_scalar_matches_torch_nosimd),
        cmocka_unit_test(noise_sampler_draws_match_torch),
        cmocka_unit_test(scalar_path_caches_spare_normal),
        cmocka_unit_test(indexed_noise_matches_comfyui),
        cmocka_unit_test(randint_matches_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
