/* Running the model-level checks on a GPU backend: creating it, and deciding
 * whether its absence is a skip (a machine without that device) or a
 * failure (CI, where the Vulkan suite must run on lavapipe). */
#ifndef KILN_TEST_BACKEND_SUITE_H
#define KILN_TEST_BACKEND_SUITE_H

#include <stdbool.h>

/* True when `name` can be created here. Otherwise prints why and sets
 * *exit_code: KILN_TEST_SKIP, or 1 when `required_env` is set in the
 * environment (e.g. "CI" or "KILN_REQUIRE_VULKAN"). */
bool backend_available(const char *name, const char *const required_env[], int *exit_code);

/* Model parity on `backend` with the CPU's tolerances: the tiny model's CLIP,
 * UNet (every block, f32 and f16 weights, and f32 with a LoRA merged), a
 * ControlNet's residuals and the UNet with them, and VAE against diffusers,
 * and one txt2img run against ComfyUI. Returns the test's exit code. */
int parity_gpu_main(const char *backend, const char *const required_env[]);

struct kiln_backend;
/* A profiled graph run (kiln_graph_profile) on `be`: the ops counted, each
 * given a time, all of them together no longer than the run took on the
 * host, timed by the device where `device_time` (GPU backends) and on the
 * host otherwise; and the profiled run computing what an unprofiled one did. */
void check_profiled_run(struct kiln_backend *be, bool device_time);

#endif
