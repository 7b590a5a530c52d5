/* HyperTile's choice of tiles, restated from ComfyUI's nodes_hypertile.py
 * (hypertile_in and random_divisor): the comparisons in doubles as Python
 * makes them, its round() half to even. */
#include "hypertile.h"

#include <math.h>

#include "status.h"

kiln_status kiln_hypertile_check(const kiln_hypertile *s)
{
    if (s->tile_size < 1 || s->tile_size > 2048)
        return kiln_fail(KILN_ERR_INVALID_ARG, "HyperTile: tile_size %d (1 to 2048)", s->tile_size);
    if (s->swap_size < 1 || s->swap_size > 128)
        return kiln_fail(KILN_ERR_INVALID_ARG, "HyperTile: swap_size %d (1 to 128)", s->swap_size);
    if (s->max_depth < 0 || s->max_depth > 10)
        return kiln_fail(KILN_ERR_INVALID_ARG, "HyperTile: max_depth %d (0 to 10)", s->max_depth);
    return KILN_OK;
}

/* value / d for one of the first `options` divisors d of value from
 * min(least, value) up: the first where only one is found, else one drawn
 * among all but the last (torch.randint's high end is excluded). */
static int tiles_along(int64_t value, int64_t least, int options, kiln_rng *rng)
{
    if (least > value) least = value;
    int64_t found[128];
    int count = 0;
    for (int64_t d = least; d <= value && count < options; d++)
        if (value % d == 0) found[count++] = value / d;
    const uint64_t pick = count > 1 ? kiln_rng_randint(rng, (uint64_t)(count - 1)) : 0;
    return (int)found[pick];
}

kiln_query_tiles kiln_hypertile_tiles(const kiln_hypertile *s, int64_t height, int64_t width, int64_t tokens,
                                      kiln_rng *rng)
{
    int level = -1;
    for (int i = 0; i <= s->max_depth && level < 0; i++) {
        const double f = ldexp(1.0, i);
        if ((double)height / f * ((double)width / f) == (double)tokens) level = i;
    }
    kiln_query_tiles t = {.h = 1, .w = (int)tokens, .nh = 1, .nw = 1};
    if (level < 0) return t;
    const double aspect = (double)width / (double)height;
    const int64_t h = (int64_t)nearbyint(sqrt((double)tokens * aspect)),
                  w = (int64_t)nearbyint(sqrt((double)tokens / aspect));
    const int64_t least = (int64_t)((s->tile_size > 32 ? s->tile_size : 32) / 8) << (s->scale_depth ? level : 0);
    const int nh = tiles_along(h, least, s->swap_size, rng), nw = tiles_along(w, least, s->swap_size, rng);
    /* a level's tokens are always its h x w; where not, ComfyUI's rearrange would fail: left whole here */
    if (h * w == tokens) t = (kiln_query_tiles){(int)h, (int)w, nh, nw};
    return t;
}
