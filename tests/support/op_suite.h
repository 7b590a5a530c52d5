/* The op test suite shared by every backend.
 *
 * A table of cases covers every op in ops.def at the shapes Stable Diffusion
 * uses (group norm with 32 groups over 320/640/1280 channels, attention with
 * head dims 40/64/80/128/160/512 and cross-attention over 77 tokens, 3x3 and
 * 1x1 convolutions at stride 1 and 2 over odd spatial sizes, CLIP's causal
 * attention, ...) plus small odd shapes. Each case:
 *   - fills its inputs from a fixed-seed generator (the same numbers on every
 *     backend and every run); weight operands are stored as weight_dtype and
 *     the reference uses the same rounded values;
 *   - places the operands in backend buffers at non-zero offsets (weights via
 *     weights_place, activations via buffer_alloc + upload), with guard words
 *     after the output and the output poisoned with NaN, so an unwritten
 *     element or a write past the end fails;
 *   - calls the op through kiln_check_<op>() and the backend's vtable entry,
 *     then synchronize() and download();
 *   - compares with float64 loops (op_ref64.h): relative L2 <= tol, and NaN
 *     or infinity never passes.
 * An op whose vtable entry is NULL, an op that returns an error, and an op
 * with no case in the table are failures naming the op.
 *
 * A quantized weight_dtype (Q4_0 .. IQ4_XS) applies to matmul's w where its
 * rows are whole blocks (random blocks with sane scales; the reference reads
 * them as kiln_convert_to_f32 widens them, which test_gguf checks against
 * gguf-py); the other weights are then f16 and the other cases are left out.
 *
 * Cases with no weight operand do not depend on weight_dtype; they run only
 * when weight_dtype is KILN_F32, so call the suite with KILN_F32 at least
 * once. A few cases whose result is ill-conditioned in float32 (a sinusoid of
 * t * freq with t near 1000) carry their own looser floor, printed with the
 * result. */
#ifndef KILN_OP_SUITE_H
#define KILN_OP_SUITE_H

#include "backend.h"

/* Runs every case (or only those of the op named only_op, e.g. "conv2d";
 * NULL = all) on `be` and prints one line per case to stdout:
 *   conv2d 3x3 s1 p1 [2,320,9,11]->[2,320,9,11] f16 rel L2 3.1e-07 ok
 * Returns the number of failing cases (0 = all passed); an only_op that names
 * no op in ops.def counts as one failure. */
int kiln_op_suite_run(kiln_backend *be, kiln_dtype weight_dtype, double tol, const char *only_op);

#endif
