#include "quant_blocks.h"

#include <string.h>

static uint64_t next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Where each type keeps its f16 scales, by block byte (ggml's block_q4_0 ..
 * block_iq4_xs); -1 where it has one. */
static const struct { kiln_dtype dtype; int at[2]; } scales[] = {
    {KILN_Q4_0, {0, -1}}, {KILN_Q4_1, {0, 2}},   {KILN_Q5_0, {0, -1}},  {KILN_Q5_1, {0, 2}},
    {KILN_Q8_0, {0, -1}}, {KILN_Q2_K, {80, 82}}, {KILN_Q3_K, {108, -1}}, {KILN_Q4_K, {0, 2}},
    {KILN_Q5_K, {0, 2}},  {KILN_Q6_K, {208, -1}}, {KILN_IQ4_NL, {0, -1}}, {KILN_IQ4_XS, {0, -1}},
};

void random_quant_blocks(void *dst, kiln_dtype dtype, size_t values, double lo, double hi, uint64_t *rng)
{
    uint8_t *b = dst;
    size_t bytes = kiln_dtype_bytes(dtype, values), block = kiln_dtype_bytes(dtype, (size_t)kiln_dtype_block(dtype));
    for (size_t i = 0; i < bytes; i++) b[i] = (uint8_t)next(rng);
    for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
        if (scales[k].dtype != dtype) continue;
        for (size_t at = 0; at < bytes; at += block)
            for (int j = 0; j < 2 && scales[k].at[j] >= 0; j++) {
                double u = (double)(next(rng) >> 11) * 0x1p-53;
                uint16_t h = kiln_f32_to_f16((float)(lo + (hi - lo) * u));
                memcpy(b + at + scales[k].at[j], &h, sizeof h);
            }
    }
}
