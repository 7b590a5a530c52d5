/* HyperTile (ComfyUI's node): which self-attentions of a UNet call attend in
 * tiles, and how many, as the node's attn1 patch decides it (kiln.h's
 * kiln_hypertile says what a user sets). */
#ifndef KILN_HYPERTILE_H
#define KILN_HYPERTILE_H

#include <stdint.h>

#include "blocks.h"
#include "kiln.h"
#include "rng.h"

/* The settings within the node's ranges, or an error naming the one that is not. */
kiln_status kiln_hypertile_check(const kiln_hypertile *s);

/* The tiles of one transformer block's self-attention over `tokens` tokens
 * in a UNet call on a height x width latent: untiled (nh nw 1) off the
 * levels the settings reach; otherwise the tile counts, each side's drawn
 * from rng (torch.randint, one draw wherever the node draws) when there is
 * more than one to take. */
kiln_query_tiles kiln_hypertile_tiles(const kiln_hypertile *s, int64_t height, int64_t width, int64_t tokens,
                                      kiln_rng *rng);

#endif
