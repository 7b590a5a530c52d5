/* torchsde's BrownianTree as ComfyUI's SDE samplers query it: every draw of
 * the golden dpmpp_sde, dpmpp_2m_sde and dpmpp_3m_sde runs (seed 42, batch
 * 2), bit for bit, whatever the order of the queries. */
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brownian.h"
#include "safetensors.h"

#define SEED 42

static const char *const runs[] = {"txt2img_dpmpp_sde_normal_s8", "txt2img_dpmpp_2m_sde_normal_s8",
                                   "txt2img_dpmpp_3m_sde_normal_s8"};

typedef struct golden_draws {
    float *sigmas, *draw_sigmas, *draws; /* schedule; (sigma, sigma_next) per draw; draws x n */
    size_t nsigmas, ndraws, n;
} golden_draws;

static golden_draws read_draws(kiln_st_file *f, const char *run)
{
    golden_draws g;
    char name[160];
    size_t count;
    snprintf(name, sizeof name, "%s.sigmas", run);
    assert_kiln_ok(kiln_st_read_f32(f, name, &g.sigmas, &g.nsigmas));
    snprintf(name, sizeof name, "%s.noise_sigmas", run);
    assert_kiln_ok(kiln_st_read_f32(f, name, &g.draw_sigmas, &count));
    g.ndraws = count / 2;
    snprintf(name, sizeof name, "%s.noise_draws", run);
    assert_kiln_ok(kiln_st_read_f32(f, name, &g.draws, &count));
    g.n = count / g.ndraws;
    return g;
}

static void free_draws(golden_draws *g)
{
    free(g->sigmas);
    free(g->draw_sigmas);
    free(g->draws);
}

/* ComfyUI's tree spans the smallest positive and the largest sigma. */
static void tree_for(const golden_draws *g, kiln_brownian_tree *tree)
{
    float lo = INFINITY, hi = 0.0f;
    for (size_t i = 0; i < g->nsigmas; i++) {
        if (g->sigmas[i] > 0.0f && g->sigmas[i] < lo) lo = g->sigmas[i];
        if (g->sigmas[i] > hi) hi = g->sigmas[i];
    }
    assert_kiln_ok(kiln_brownian_tree_init(tree, SEED, lo, hi, g->n));
}

static void check_draw(const golden_draws *g, kiln_brownian_tree *tree, size_t k, const char *run)
{
    float *got = malloc(g->n * sizeof *got);
    assert_non_null(got);
    assert_kiln_ok(kiln_brownian_tree_noise(tree, g->draw_sigmas[2 * k], g->draw_sigmas[2 * k + 1], got, g->n));
    const float *want = g->draws + k * g->n;
    for (size_t j = 0; j < g->n; j++)
        if (memcmp(&got[j], &want[j], sizeof *got) != 0)
            fail_msg("%s draw %zu (%g -> %g)[%zu]: %.9g, torchsde gave %.9g", run, k, (double)g->draw_sigmas[2 * k],
                     (double)g->draw_sigmas[2 * k + 1], j, (double)got[j], (double)want[j]);
    free(got);
}

static void draws_match_torchsde(void **state)
{
    (void)state;
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(kiln_test_data("comfyui/samplers.safetensors"), &f));
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        golden_draws g = read_draws(f, runs[r]);
        kiln_brownian_tree tree;
        tree_for(&g, &tree);
        for (size_t k = 0; k < g.ndraws; k++) check_draw(&g, &tree, k, runs[r]);
        /* the tree keeps nothing between queries: backwards gives the same */
        for (size_t k = g.ndraws; k-- > 0;) check_draw(&g, &tree, k, runs[r]);
        print_message("  %-32s %2zu draws of %zu values bit-exact, both query orders\n", runs[r], g.ndraws, g.n);
        kiln_brownian_tree_free(&tree);
        free_draws(&g);
    }
    kiln_st_close(f);
}

/* Increments add up: W over [a, c] is W over [a, b] plus W over [b, c]
 * when b is a point of the tree, here the midpoint of the whole interval. */
static void increments_add_up(void **state)
{
    (void)state;
    enum { N = 64 };
    kiln_brownian_tree tree;
    assert_kiln_ok(kiln_brownian_tree_init(&tree, 7, 1.0f, 3.0f, N));
    float whole[N], left[N], right[N];
    /* noise = W / sqrt(width) with the sign of the direction of travel */
    assert_kiln_ok(kiln_brownian_tree_noise(&tree, 1.0f, 3.0f, whole, N));
    assert_kiln_ok(kiln_brownian_tree_noise(&tree, 1.0f, 2.0f, left, N));
    assert_kiln_ok(kiln_brownian_tree_noise(&tree, 2.0f, 3.0f, right, N));
    double sum_sq = 0.0;
    for (int j = 0; j < N; j++) {
        float w = whole[j] * sqrtf(2.0f);
        assert_float_equal(w, left[j] + right[j], 1e-5f);
        sum_sq += (double)whole[j] * whole[j];
    }
    /* a standard normal sample: 64 values with mean square near 1 */
    assert_true(sum_sq / N > 0.5 && sum_sq / N < 1.5);
    /* downward in sigma is the negated upward increment */
    float down[N];
    assert_kiln_ok(kiln_brownian_tree_noise(&tree, 3.0f, 1.0f, down, N));
    for (int j = 0; j < N; j++) assert_true(down[j] == -whole[j]);
    assert_int_equal(kiln_brownian_tree_noise(&tree, 3.0f, 1.0f, down, N - 1), KILN_ERR_INVALID_ARG);
    kiln_brownian_tree_free(&tree);
    assert_int_equal(kiln_brownian_tree_init(&tree, 7, 0.0f, 3.0f, N), KILN_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(draws_match_torchsde),
        cmocka_unit_test(increments_add_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
