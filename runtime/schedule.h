/* Noise levels: the discrete model's sigma table and ComfyUI's schedulers.
 *
 * An eps-prediction model trained on 1000 discrete timesteps (SD 1.x/2.x
 * eps, SDXL) sees noise level sigma_t = sqrt((1 - abar_t) / abar_t) with
 * abar_t = prod_{s<=t} (1 - beta_s) and betas = linspace(sqrt(start),
 * sqrt(end), 1000)^2, all in float64, stored as float32 (ComfyUI's
 * ModelSamplingDiscrete). A scheduler turns a step count into the descending
 * list of sigmas a sampler walks, ending in 0. Names, order and arithmetic
 * are ComfyUI's (comfy/samplers.py, v0.3.64); sigmas agree with it to float32
 * rounding.
 *
 * A flow-matching model (the CONST model type) has no betas. FLUX.1's
 * (ComfyUI's ModelSamplingFlux): its sigma for a continuous timestep t in
 * (0, 1] is e^shift / (e^shift + 1/t - 1), tabulated at t = 1/10000 ... 1,
 * and its timestep for a sigma is the sigma itself. SD3's
 * (ModelSamplingDiscreteFlow): shift t / (1 + (shift - 1) t) at t = 1/1000
 * ... 1, its timestep 1000 sigma. The schedulers walk every table the same
 * way, as ComfyUI's do. */
#ifndef KILN_SCHEDULE_H
#define KILN_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"

#define KILN_TRAIN_TIMESTEPS 1000 /* discrete tables */
#define KILN_FLOW_TIMESTEPS 10000 /* ModelSamplingFlux's default timesteps */
#define KILN_SD3_TIMESTEPS 1000   /* ModelSamplingDiscreteFlow's, also the model's timestep per unit of sigma */
#define KILN_MAX_TIMESTEPS KILN_FLOW_TIMESTEPS
#define KILN_LCM_TIMESTEPS 50     /* ModelSamplingDiscreteDistilled's original_timesteps */

/* ModelSamplingFlux shifts: FLUX.1-dev (ComfyUI's default) and schnell;
 * SD3's and SD 3.5's ModelSamplingDiscreteFlow shift. */
#define KILN_FLUX_DEV_SHIFT 1.15
#define KILN_FLUX_SCHNELL_SHIFT 1.0
#define KILN_SD3_SHIFT 3.0

/* SD 1.x / 2.x / XL: betas from linspace(0.00085^0.5, 0.012^0.5, 1000)^2. */
#define KILN_SD_LINEAR_START 0.00085
#define KILN_SD_LINEAR_END 0.012

/* About 80 KB (two tables sized for flow); fine on the stack. */
typedef struct kiln_model_sampling {
    int count;    /* table entries: KILN_TRAIN_TIMESTEPS, or KILN_FLOW_TIMESTEPS when flow */
    bool flow;    /* flow matching (ComfyUI's CONST model type) */
    double shift; /* flow only: the mu of flux_time_shift, or (snr_shift) time_snr_shift's alpha */
    bool snr_shift;    /* flow: SD3's ModelSamplingDiscreteFlow, else ModelSamplingFlux */
    float multiplier;  /* flow: the model's timestep per unit of sigma (Flux 1, SD3 1000) */
    int skip;          /* discrete: entry t stands for timestep t skip + skip - 1 (1; LCM's distilled table 20) */
    bool edm;          /* ModelSamplingContinuousEDM: log-spaced sigmas, timestep 0.25 ln sigma (not flow) */
    float sigma_data;  /* the data's std in the denoiser's c_in, c_skip, c_out: 1, EDM's 0.5 */
    float sigmas[KILN_MAX_TIMESTEPS];     /* ascending; sigmas[t] is table entry t's noise level */
    float log_sigmas[KILN_MAX_TIMESTEPS]; /* discrete: log of the float64 sigma, rounded to float32;
                                             flow: logf of the table's sigma (nearest-entry lookups) */
} kiln_model_sampling;

/* Builds the table from a "linear" beta schedule. Errors: KILN_ERR_INVALID_ARG
 * unless 0 < linear_start < linear_end < 1. */
kiln_status kiln_model_sampling_init(kiln_model_sampling *ms, double linear_start, double linear_end);
/* The same from betas evenly spaced in themselves, linspace(start, end,
 * 1000) (ComfyUI's "sqrt_linear": PixArt's schedule). */
kiln_status kiln_model_sampling_init_plain(kiln_model_sampling *ms, double linear_start, double linear_end);
/* Either (plain: the latter), with zsnr the float64 sigmas rescaled to zero
 * terminal SNR first (ModelSamplingDiscrete's zsnr,
 * rescale_zero_terminal_snr_sigmas: sqrt(alphas_cumprod) shifted to end at
 * 0 and scaled to start where it did, the last alphas_cumprod then
 * 4.8973451890853435e-08, so the last sigma is about 4519). */
kiln_status kiln_model_sampling_init_betas(kiln_model_sampling *ms, double linear_start, double linear_end, bool plain,
                                           bool zsnr);
/* ModelSamplingFlux(shift): sigmas[i] = sigma((i + 1) / 10000), bit for bit
 * as torch computes it in float32 (see kiln_timestep_to_sigma). Errors:
 * KILN_ERR_INVALID_ARG for a non-finite shift or one whose exp overflows a
 * float. */
kiln_status kiln_model_sampling_init_flux(kiln_model_sampling *ms, double shift);
/* ModelSamplingDiscreteFlow(shift) (SD3): sigmas[i] = sigma(i + 1) of
 * timesteps 1 ... 1000, as torch computes it in float32. Errors:
 * KILN_ERR_INVALID_ARG for a shift that is not finite and positive. */
kiln_status kiln_model_sampling_init_sd3(kiln_model_sampling *ms, double shift);
/* ModelSamplingDiscreteDistilled (ModelSamplingDiscrete's "lcm"): of a
 * discrete table of 1000, the `steps` entries every 1000 / steps counted
 * back from the last (LCM: 50, timesteps 19, 39, ..., 999), their logs
 * taken again from the float32 sigmas as torch's set_sigmas does. Errors:
 * KILN_ERR_INVALID_ARG on a flow table or a steps that does not divide it. */
kiln_status kiln_model_sampling_distill(kiln_model_sampling *ms, int steps);
/* ModelSamplingContinuousEDM.set_parameters: 1000 sigmas e^linspace(ln
 * sigma_min, ln sigma_max) in float32, its timestep of a sigma 0.25 ln
 * sigma (the UNet takes it as it is), and sigma_data for the denoiser.
 * Errors: KILN_ERR_INVALID_ARG unless 0 < sigma_min < sigma_max and
 * sigma_data > 0, all finite. */
kiln_status kiln_model_sampling_init_edm(kiln_model_sampling *ms, double sigma_min, double sigma_max,
                                         double sigma_data);
/* LCM's boundary condition at a (distilled) timestep: x0 = c_out (x -
 * sigma eps) + c_skip x, c_skip = 0.25 / (s^2 + 0.25) and c_out = s /
 * sqrt(s^2 + 0.25) for s = 10 timestep, in float32 as torch computes them. */
void kiln_lcm_boundary(float timestep, float *c_skip, float *c_out);

static inline float kiln_sigma_min(const kiln_model_sampling *ms) { return ms->sigmas[0]; }
static inline float kiln_sigma_max(const kiln_model_sampling *ms) { return ms->sigmas[ms->count - 1]; }

/* The table entry whose log sigma is nearest (first one on a tie): for a
 * discrete model of all 1000 entries its UNet timestep, as
 * ModelSamplingDiscrete.timestep. */
int kiln_sigma_to_timestep(const kiln_model_sampling *ms, float sigma);

/* The model's timestep for a sigma (model_sampling.timestep): the table
 * index for a discrete model (times skip, plus skip - 1, for a distilled
 * one), the sigma times the multiplier for flow (the sigma itself for
 * Flux). */
float kiln_model_timestep(const kiln_model_sampling *ms, float sigma);

/* The sigma of a timestep (model_sampling.sigma). Discrete: t (a distilled
 * table's: (t - skip + 1) / skip) clamped to [0, count - 1], log sigma interpolated linearly between its neighbours
 * (float32, as ComfyUI). Flow: flux_time_shift(shift, 1, t) as torch
 * evaluates it on a float32 tensor: 1/t and the outer division are
 * reciprocals (Tensor.__rtruediv__), the last one multiplied by
 * (float)e^shift. SD3: time_snr_shift(shift, t / 1000) in float32. */
float kiln_timestep_to_sigma(const kiln_model_sampling *ms, float t);

/* model_sampling.percent_to_sigma: the sigma at which a fraction `percent`
 * of sampling is done (ControlNet / IP-Adapter start and end). percent <= 0
 * gives a sigma above any schedule's (discrete: 999999999.9, flow: 1),
 * percent >= 1 gives 0. Discrete: the sigma of timestep (1 - percent) * 999;
 * flow: flux_time_shift (SD3: time_snr_shift) in Python doubles, rounded
 * to float. */
float kiln_percent_to_sigma(const kiln_model_sampling *ms, double percent);
/* The same as the Python float ComfyUI's percent_to_sigma returns
 * (SamplingPercentToSigma's output): the discrete table's float32 value,
 * flow's and EDM's doubles. */
double kiln_percent_to_sigma_value(const kiln_model_sampling *ms, double percent);

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

/* The schedules behind the scheduler names and ComfyUI's scheduler nodes,
 * steps sigmas and then 0 into sigmas (steps + 1 floats), float32 as torch
 * computes them. Karras et al. (2022): sigma^(1/rho) linear from sigma_max
 * to sigma_min (k-diffusion's get_sigmas_karras; "karras" is rho 7 on the
 * table's ends). */
void kiln_sigmas_karras(double sigma_min, double sigma_max, double rho, int steps, float *sigmas);
/* log sigma linear from sigma_max to sigma_min (get_sigmas_exponential). */
void kiln_sigmas_exponential(double sigma_min, double sigma_max, int steps, float *sigmas);
/* Table entries at the Beta(alpha, beta) quantiles of 1, 1 - 1/steps, ...
 * (ComfyUI's beta_scheduler; "beta" is 0.6, 0.6): repeats of the previous
 * entry are skipped, so there may be fewer than steps + 1 sigmas. Returns
 * the count. */
size_t kiln_sigmas_beta(const kiln_model_sampling *ms, int steps, double alpha, double beta, float *sigmas);

/* torch.linspace(start, end, n) in float32. */
void kiln_linspace_f32(float start, float end, int n, float *out);
/* torch.pow of a float32 tensor by a Python number: its exact cases (1/2,
 * 1, 2, 3, -1/2, -1, -2) as torch writes them, else powf. */
float kiln_torch_pow_f32(float x, double exponent);

/* KSampler's sigmas (KSampler.set_steps): with denoise < 0.9999 the schedule
 * is built for int(steps / denoise) steps and its last steps + 1 values are
 * kept (img2img starts part way down). With `discard_penultimate` (the
 * samplers dpm_2, dpm_2_ancestral, uni_pc: see
 * kiln_sampler_discards_penultimate_sigma) the schedule is built for one step
 * more and its second-to-last sigma dropped. Errors: KILN_ERR_INVALID_ARG for
 * steps < 1 or denoise outside (0, 1]. */
kiln_status kiln_ksampler_sigmas(const kiln_model_sampling *ms, kiln_scheduler scheduler, bool discard_penultimate,
                                 int steps, double denoise, float **sigmas, size_t *count);

/* model_sampling.noise_scaling of a latent at sigma, without KSampler's
 * max_denoise case: discrete (EPS, V) noise * sigma + latent, flow (CONST)
 * sigma * noise + (1 - sigma) * latent; float32 as ComfyUI's. The start of
 * img2img and the renoised kept part of an inpainting both take it. */
static inline float kiln_noise_scaling(bool flow, float sigma, float noise, float latent)
{
    return flow ? sigma * noise + (1.0f - sigma) * latent : noise * sigma + latent;
}

#endif
