/* The full-size hash-initialised SD 1.5 checkpoint for slow tests.
 *
 * It lives at ${KILN_BINARY_DIR}/sd15_hashinit.safetensors and is written,
 * the first time a test asks for it, by ${KILN_BINARY_DIR}/bin/make_sd15_hashinit
 * (default seed: the bytes of make_sd15_hashinit.py, 2.13 GB, about 20 s).
 * The tool writes to a temporary name and renames, so a file at that path is
 * always complete, even when two tests ask at once. */
#ifndef KILN_FULL_CHECKPOINT_H
#define KILN_FULL_CHECKPOINT_H

/* For a slow test's main: the checkpoint's path, creating it on first use,
 * or NULL with *exit_code set to what main should return: KILN_TEST_SKIP
 * (saying so) without KILN_SLOW=1, 1 (the reason on stderr) where the
 * checkpoint cannot be made. */
const char *kiln_test_slow_checkpoint(int *exit_code);

#endif
