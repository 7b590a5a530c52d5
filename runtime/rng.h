/* PyTorch's CPU random generator, bit for bit, so a ComfyUI seed gives the
 * same latent noise in kiln.
 *
 * torch.manual_seed(s) seeds an mt19937 with the low 32 bits of s (seed
 * 2^32 + 1 is seed 1). torch.randn(n) then takes one of two paths:
 *   - n >= 16: n float uniforms (24 bits of one 32-bit draw each), then
 *     Box–Muller over blocks of 16 (u1 = 1 - u[j], u2 = u[j + 8] for j < 8);
 *     when 16 does not divide n, the last 16 values are redone from 16 fresh
 *     uniforms.
 *   - n < 16: a double-precision Box–Muller per element from 53-bit
 *     uniforms (two 32-bit draws each); the second value of each pair is
 *     cached in the generator and handed out by its next scalar draw.
 * The block path exists in two builds of torch that differ in the last bit:
 * the AVX2 kernel (cephes-style log/sincos polynomials, what ComfyUI on any
 * x86-64 machine gets) and the default-capability kernel (libm logf, cosf,
 * sinf). kiln computes either on any CPU; the AVX2 one is the default. */
#ifndef KILN_RNG_H
#define KILN_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum kiln_randn_kernel {
    KILN_RANDN_AVX2,   /* torch's AVX2 normal_fill_16 (x86-64 ComfyUI) */
    KILN_RANDN_SCALAR, /* torch's default-capability normal_fill_16 (ATEN_CPU_CAPABILITY=default) */
} kiln_randn_kernel;

typedef struct kiln_rng {
    uint32_t mt[624];          /* mt19937 state */
    int mt_index;              /* next word of mt to temper; 624 = regenerate */
    bool has_cached_normal;    /* the scalar path's spare Box–Muller value */
    double cached_normal;
    kiln_randn_kernel kernel;  /* which torch build's block path to follow */
} kiln_rng;

/* torch.manual_seed(seed) on a fresh CPU generator: the engine is seeded with
 * the low 32 bits, the cached normal is dropped, kernel becomes
 * KILN_RANDN_AVX2 (set rng->kernel afterwards to change it). */
void kiln_rng_seed(kiln_rng *rng, uint64_t seed);

/* One torch.randn(shape) call with numel(shape) == n, advancing the
 * generator exactly as torch does. */
void kiln_rng_randn(kiln_rng *rng, float *out, size_t n);

/* torch.randint(0, high, (1,)) for high >= 1: one 32-bit draw modulo high
 * (so high 1 still takes a draw), or from 2^28 on two (the first the high
 * half of a 64-bit number) modulo high. */
uint64_t kiln_rng_randint(kiln_rng *rng, uint64_t high);

/* ComfyUI's noise for a batch whose images carry a batch_index (its
 * prepare_noise): one randn of per_image values for each index from 0 to
 * the largest, image b taking index[b]'s (index values >= 0). Not the one
 * randn of the whole batch: 16 need not divide per_image. draw: per_image
 * floats of scratch. */
void kiln_rng_randn_indexed(kiln_rng *rng, const int *index, int batch, size_t per_image, float *out, float *draw);

#endif
