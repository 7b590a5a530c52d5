/* The Brownian noise of ComfyUI's SDE samplers (dpmpp_sde, dpmpp_2m_sde,
 * dpmpp_3m_sde): torchsde 0.2.6's BrownianTree over [sigma_min, sigma_max],
 * reproduced bit for bit on the CPU.
 *
 * The tree is a dyadic bisection of the interval with every split point
 * rounded to 6 decimals (tol 1e-6). The increment over the whole interval is
 * torch.randn from a generator seeded by numpy's SeedSequence(seed, pool
 * size 24); a node's increment is split between its children by a Brownian
 * bridge whose noise is torch.randn seeded from SeedSequence(seed,
 * spawn_key = (node key, depth)). A query for [a, b] sums the increments of
 * the largest nodes that tile it. Nothing is stored between queries: the
 * path from the root is recomputed, which is what makes the noise depend on
 * the seed alone and not on the order of the queries. */
#ifndef KILN_BROWNIAN_H
#define KILN_BROWNIAN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

typedef struct kiln_brownian_tree {
    uint64_t seed;
    size_t n;            /* elements of each increment (the whole latent batch) */
    double start, end;   /* the root interval [sigma_min, sigma_max], rounded to 1e-6 */
    int max_depth;       /* deepest node a query can reach */
    float *root_w;       /* (n) the increment over [start, end] */
    float *scratch;      /* (2 * max_depth + 1) x n: children's increments per level, bridge noise */
} kiln_brownian_tree;

/* ComfyUI's BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed): sigma_min
 * is the smallest positive sigma of the schedule, sigma_max the largest.
 * Errors: KILN_ERR_INVALID_ARG unless 0 < sigma_min <= sigma_max and n > 0;
 * KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_brownian_tree_init(kiln_brownian_tree *tree, uint64_t seed, float sigma_min, float sigma_max,
                                    size_t n);
void kiln_brownian_tree_free(kiln_brownian_tree *tree);

/* A kiln_noise_fn (ctx: the tree): the increment W(sigma_next) - W(sigma)
 * divided by sqrt(|sigma_next - sigma|), a standard normal draw per element,
 * as ComfyUI's noise sampler returns it. Ends outside the tree's interval
 * are clamped to it; an interval that rounds to nothing gives zeros. */
kiln_status kiln_brownian_tree_noise(void *tree, float sigma, float sigma_next, float *noise, size_t n);

#endif
