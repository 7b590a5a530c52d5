/* torchsde's BrownianTree (BrownianInterval with halfway_tree, tol 1e-6,
 * pool_size 24, no Levy area) as ComfyUI queries it. */
#include "brownian.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "status.h"

/* numpy.random.SeedSequence: hash the entropy words into a pool, mix every
 * pool word into every other, then hash the pool out into seeds. */
#define SEED_POOL_SIZE 24
#define SEED_INIT_A 0x43b0d7e5u
#define SEED_MULT_A 0x931e8875u
#define SEED_INIT_B 0x8b51f9ddu
#define SEED_MULT_B 0x58f38dedu
#define SEED_MIX_MULT_L 0xca01f9ddu
#define SEED_MIX_MULT_R 0x4973f715u

static uint32_t seed_hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= SEED_MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static uint32_t seed_mix(uint32_t x, uint32_t y)
{
    uint32_t result = SEED_MIX_MULT_L * x - SEED_MIX_MULT_R * y;
    result ^= result >> 16;
    return result;
}

/* A Python int as numpy sees it: little-endian 32-bit words, 0 as one word. */
static int int_words(uint64_t value, uint32_t *words)
{
    int n = 0;
    do {
        words[n++] = (uint32_t)value;
        value >>= 32;
    } while (value);
    return n;
}

/* SeedSequence(entropy=seed, spawn_key=spawn_key[0..nspawn), pool_size=24)
 * .generate_state(nout) */
static void seed_sequence_state(uint64_t seed, const uint64_t *spawn_key, int nspawn, uint32_t *out, int nout)
{
    uint32_t entropy[SEED_POOL_SIZE + 2 * 8]; /* run entropy padded to the pool, then at most 8 key words */
    int n = int_words(seed, entropy);
    if (nspawn > 0) {
        /* numpy pads the run entropy only when there is a spawn key */
        while (n < SEED_POOL_SIZE) entropy[n++] = 0;
        for (int k = 0; k < nspawn; k++) n += int_words(spawn_key[k], entropy + n);
    }
    uint32_t pool[SEED_POOL_SIZE];
    uint32_t hash_const = SEED_INIT_A;
    for (int i = 0; i < SEED_POOL_SIZE; i++) pool[i] = seed_hashmix(i < n ? entropy[i] : 0u, &hash_const);
    for (int src = 0; src < SEED_POOL_SIZE; src++)
        for (int dst = 0; dst < SEED_POOL_SIZE; dst++)
            if (src != dst) {
                uint32_t hashed = seed_hashmix(pool[src], &hash_const);
                pool[dst] = seed_mix(pool[dst], hashed);
            }
    for (int src = SEED_POOL_SIZE; src < n; src++)
        for (int dst = 0; dst < SEED_POOL_SIZE; dst++) {
            uint32_t hashed = seed_hashmix(entropy[src], &hash_const);
            pool[dst] = seed_mix(pool[dst], hashed);
        }
    uint32_t out_const = SEED_INIT_B;
    for (int i = 0; i < nout; i++) {
        uint32_t value = pool[i % SEED_POOL_SIZE];
        value ^= out_const;
        out_const *= SEED_MULT_B;
        value *= out_const;
        value ^= value >> 16;
        out[i] = value;
    }
}

/* Python's round(t, 6): the correctly rounded 6-decimal value, back to the
 * nearest double (glibc's printf rounds exactly, ties to even, as Python). */
static double round_tol(double t)
{
    char text[64];
    snprintf(text, sizeof text, "%.6f", t);
    return strtod(text, NULL);
}

static void randn_seeded(uint32_t seed, float *out, size_t n)
{
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    kiln_rng_randn(&rng, out, n);
}

kiln_status kiln_brownian_tree_init(kiln_brownian_tree *tree, uint64_t seed, float sigma_min, float sigma_max,
                                    size_t n)
{
    memset(tree, 0, sizeof *tree);
    if (!(sigma_min > 0.0f && sigma_min <= sigma_max && isfinite(sigma_max)) || n == 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "brownian tree: need 0 < sigma_min (%g) <= sigma_max (%g) and n > 0",
                         (double)sigma_min, (double)sigma_max);
    double t0 = sigma_min, t1 = sigma_max;
    tree->seed = seed;
    tree->n = n;
    tree->start = round_tol(t0);
    tree->end = round_tol(t1);
    /* splits stop once nodes are a few 1e-6 wide; leave room for rounding */
    tree->max_depth = (int)ceil(log2(fmax(tree->end - tree->start, 1e-6) / 1e-6)) + 4;
    tree->root_w = malloc(n * sizeof *tree->root_w);
    tree->scratch = malloc((size_t)(2 * tree->max_depth + 1) * n * sizeof *tree->scratch);
    if (!tree->root_w || !tree->scratch) {
        kiln_brownian_tree_free(tree);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "brownian tree: %d levels of %zu floats", tree->max_depth, n);
    }
    uint32_t root_seeds[3]; /* W, H (space-time Levy area, unused), Levy area (unused) */
    seed_sequence_state(seed, NULL, 0, root_seeds, 3);
    randn_seeded(root_seeds[0], tree->root_w, n);
    float scale = (float)sqrt(t1 - t0); /* the unrounded ends, as torchsde */
    for (size_t j = 0; j < n; j++) tree->root_w[j] = tree->root_w[j] * scale;
    return KILN_OK;
}

void kiln_brownian_tree_free(kiln_brownian_tree *tree)
{
    free(tree->root_w);
    free(tree->scratch);
    tree->root_w = tree->scratch = NULL;
}

typedef struct tree_query {
    const kiln_brownian_tree *tree;
    double ta, tb;  /* rounded query ends */
    float *sum;     /* (n) increments of the tiling nodes, summed left to right */
    bool started;
} tree_query;

/* Visits node [start, end] (key, depth) with increment w: adds it if the
 * query covers it, else bridges w into the children and visits the ones the
 * query overlaps. */
static kiln_status visit(tree_query *q, double start, double end, uint64_t key, int depth, const float *w)
{
    const kiln_brownian_tree *tree = q->tree;
    size_t n = tree->n;
    if (q->ta <= start && end <= q->tb) {
        for (size_t j = 0; j < n; j++) q->sum[j] = q->started ? q->sum[j] + w[j] : w[j];
        q->started = true;
        return KILN_OK;
    }
    if (depth >= tree->max_depth)
        return kiln_fail(KILN_ERR_INVALID_ARG, "brownian tree: query [%.9g, %.9g] needs more than %d levels", q->ta,
                         q->tb, tree->max_depth);
    double mid = round_tol(0.5 * (end + start));
    uint32_t seeds[4]; /* bridge noise, H, left Levy area, right Levy area */
    seed_sequence_state(tree->seed, (const uint64_t[]){key, (uint64_t)depth}, 2, seeds, 4);
    float *left = tree->scratch + (size_t)(2 * depth) * n;
    float *right = left + n;
    float *noise = tree->scratch + (size_t)(2 * tree->max_depth) * n;
    randn_seeded(seeds[0], noise, n);
    /* the bridge: left = mean + sqrt(var) * noise, right = w - left, with the
     * float64 coefficients rounded to float32 as torch applies them */
    double h_reciprocal = 1.0 / (end - start);
    double left_diff = mid - start, right_diff = end - mid;
    float mean_scale = (float)left_diff, mean_norm = (float)h_reciprocal;
    float noise_scale = (float)sqrt(left_diff * right_diff * h_reciprocal);
    for (size_t j = 0; j < n; j++) {
        float mean = w[j] * mean_scale;
        mean = mean * mean_norm;
        float spread = noise[j] * noise_scale;
        left[j] = mean + spread;
        right[j] = w[j] - left[j];
    }
    if (q->ta < mid) TRY(visit(q, start, mid, 2 * key, depth + 1, left));
    if (q->tb > mid) TRY(visit(q, mid, end, 2 * key + 1, depth + 1, right));
    return KILN_OK;
}

kiln_status kiln_brownian_tree_noise(void *ctx, float sigma, float sigma_next, float *noise, size_t n)
{
    kiln_brownian_tree *tree = ctx;
    if (n != tree->n)
        return kiln_fail(KILN_ERR_INVALID_ARG, "brownian tree: built for %zu elements, asked for %zu", tree->n, n);
    bool forward = sigma < sigma_next;
    double ta = forward ? sigma : sigma_next, tb = forward ? sigma_next : sigma;
    /* torchsde clamps to the interval, then rounds */
    ta = round_tol(fmin(fmax(ta, tree->start), tree->end));
    tb = round_tol(fmin(fmax(tb, tree->start), tree->end));
    float span = sqrtf(fabsf(sigma_next - sigma));
    if (ta == tb || span == 0.0f) {
        memset(noise, 0, n * sizeof *noise); /* no time passes, no increment */
        return KILN_OK;
    }
    tree_query q = {.tree = tree, .ta = ta, .tb = tb, .sum = noise};
    TRY(visit(&q, tree->start, tree->end, 0, 0, tree->root_w));
    for (size_t j = 0; j < n; j++) {
        float signed_w = forward ? noise[j] : -noise[j];
        noise[j] = signed_w / span;
    }
    return KILN_OK;
}
