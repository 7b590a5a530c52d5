/* Noise levels: the discrete model's sigma table and ComfyUI's schedulers.
 *
 * An eps-prediction model trained on 1000 discrete timesteps (SD 1.x/2.x
 * eps, SDXL) sees noise level sigma_t = sqrt((1 - abar_t) / abar_t) with
 * abar_t = prod_{s<=t} (1 - beta_s) and betas = linspace(sqrt(start),
 * sqrt(end), 1000)^2, all in float64, stored as float32 (ComfyUI's
 * ModelSamplingDiscrete). A scheduler turns a step count into the descending
 * list of sigmas a sampler walks, ending in 0. Names, order and arithmetic
 * are ComfyUI's (comfy/samplers.py, v0.3.64); sigmas agree with it to float32
 * rounding. */
#ifndef KILN_SCHEDULE_H
#define KILN_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"

#define KILN_TRAIN_TIMESTEPS 1000

/* SD 1.x / 2.x / XL: betas from linspace(0.00085^0.5, 0.012^0.5, 1000)^2. */
#define KILN_SD_LINEAR_START 0.00085
#define KILN_SD_LINEAR_END 0.012

typedef struct kiln_model_sampling {
    float sigmas[KILN_TRAIN_TIMESTEPS];     /* ascending; sigmas[t] is timestep t's noise level */
    float log_sigmas[KILN_TRAIN_TIMESTEPS]; /* log of the float64 sigma, rounded to float32 */
} kiln_model_sampling;

/* Builds the table from a "linear" beta schedule. Errors: KILN_ERR_INVALID_ARG
 * unless 0 < linear_start < linear_end < 1. */
kiln_status kiln_model_sampling_init(kiln_model_sampling *ms, double linear_start, double linear_end);
/* The same from betas evenly spaced in themselves, linspace(start, end,
 * 1000) (ComfyUI's "sqrt_linear": PixArt's schedule). */
kiln_status kiln_model_sampling_init_plain(kiln_model_sampling *ms, double linear_start, double linear_end);

static inline float kiln_sigma_min(const kiln_model_sampling *ms) { return ms->sigmas[0]; }
static inline float kiln_sigma_max(const kiln_model_sampling *ms) { return ms->sigmas[KILN_TRAIN_TIMESTEPS - 1]; }

/* The UNet's timestep for a sigma: the training index whose log sigma is
 * nearest (first one on a tie), as ModelSamplingDiscrete.timestep. */
int kiln_sigma_to_timestep(const kiln_model_sampling *ms, float sigma);

/* The sigma of a fractional timestep: t clamped to [0, 999], log sigma
 * interpolated linearly between its neighbours (float32, as ComfyUI). */
float kiln_timestep_to_sigma(const kiln_model_sampling *ms, float t);

/* ComfyUI's scheduler list, in its order. */
typedef enum kiln_scheduler {
    KILN_SCHEDULER_SIMPLE,
    KILN_SCHEDULER_SGM_UNIFORM,
    KILN_SCHEDULER_KARRAS,
    KILN_SCHEDULER_EXPONENTIAL,
    KILN_SCHEDULER_DDIM_UNIFORM,
    KILN_SCHEDULER_BETA,
    KILN_SCHEDULER_NORMAL,
    KILN_SCHEDULER_LINEAR_QUADRATIC,
    KILN_SCHEDULER_KL_OPTIMAL,
    KILN_SCHEDULER_COUNT
} kiln_scheduler;

/* "karras" -> KILN_SCHEDULER_KARRAS. Errors: KILN_ERR_INVALID_ARG naming the
 * unknown name and listing the valid ones. */
kiln_status kiln_scheduler_from_name(const char *name, kiln_scheduler *out);
/* The ComfyUI name; NULL for a value out of range. */
const char *kiln_scheduler_name(kiln_scheduler scheduler);

/* comfy.samplers.calculate_sigmas: the scheduler's sigmas for `steps` steps,
 * descending, last one 0. Most give steps + 1 values; ddim_uniform and beta
 * may give more or fewer, as in ComfyUI. `*sigmas` is malloc'd; the caller
 * frees it. Errors: KILN_ERR_INVALID_ARG for steps < 1 (< 2 for kl_optimal,
 * whose formula divides by steps - 1) or an unknown scheduler. */
kiln_status kiln_scheduler_sigmas(const kiln_model_sampling *ms, kiln_scheduler scheduler, int steps,
                                  float **sigmas, size_t *count);

/* KSampler's sigmas (KSampler.set_steps): with denoise < 0.9999 the schedule
 * is built for int(steps / denoise) steps and its last steps + 1 values are
 * kept (img2img starts part way down). With `discard_penultimate` (the
 * samplers dpm_2, dpm_2_ancestral, uni_pc: see
 * kiln_sampler_discards_penultimate_sigma) the schedule is built for one step
 * more and its second-to-last sigma dropped. Errors: KILN_ERR_INVALID_ARG for
 * steps < 1 or denoise outside (0, 1]. */
kiln_status kiln_ksampler_sigmas(const kiln_model_sampling *ms, kiln_scheduler scheduler, bool discard_penultimate,
                                 int steps, double denoise, float **sigmas, size_t *count);

#endif
