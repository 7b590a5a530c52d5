/* Samplers: walk a latent down a list of sigmas with ComfyUI's names and
 * math (comfy/k_diffusion/sampling.py, comfy/extra_samplers/uni_pc.py,
 * v0.3.64 defaults: eta 1, s_noise 1, dpmpp_sde r = 1/2, dpmpp_2m_sde
 * midpoint, lms order 4, ipndm order 4, deis order 3 "tab", uni_pc bh1;
 * the samplers ComfyUI added since, res_multistep to sa_solver, from its
 * 0.8.1 code, their noise drawn as v0.3.64 draws the others'). The
 * sampler*.c files share sampler_internal.h.
 *
 * The latent is x in k-diffusion form (x = x0 + sigma * eps, n floats, the
 * whole batch). The model is behind a denoiser callback that returns the x0
 * prediction for (x, sigma); classifier-free guidance, the timestep lookup
 * and the input scaling 1/sqrt(sigma^2 + 1) all live in that callback. */
#ifndef KILN_SAMPLER_H
#define KILN_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"
#include "rng.h"
#include "schedule.h"

/* x (n) at noise level sigma -> denoised (n), the model's x0 prediction. */
typedef kiln_status (*kiln_denoise_fn)(void *ctx, const float *x, float sigma, float *denoised);

/* The unconditional x0 prediction (n) of the denoiser's last call (ComfyUI's
 * post-CFG "uncond_denoised"), for the CFG++ samplers. */
typedef kiln_status (*kiln_uncond_fn)(void *ctx, float *uncond_denoised);

/* Fills noise (n) with standard normal noise for the step from sigma to
 * sigma_next (ancestral samplers, lcm: a fresh draw; SDE samplers: the
 * Brownian increment over [sigma_next, sigma] divided by its standard
 * deviation). */
typedef kiln_status (*kiln_noise_fn)(void *ctx, float sigma, float sigma_next, float *noise, size_t n);

typedef enum kiln_sampler {
    KILN_SAMPLER_EULER,
    KILN_SAMPLER_EULER_ANCESTRAL,
    KILN_SAMPLER_HEUN,
    KILN_SAMPLER_DPM_2,
    KILN_SAMPLER_DPM_2_ANCESTRAL,
    KILN_SAMPLER_LMS,
    KILN_SAMPLER_DPMPP_2S_ANCESTRAL,
    KILN_SAMPLER_DPMPP_SDE,
    KILN_SAMPLER_DPMPP_2M,
    KILN_SAMPLER_DPMPP_2M_SDE,
    KILN_SAMPLER_DPMPP_3M_SDE,
    KILN_SAMPLER_LCM,
    KILN_SAMPLER_IPNDM,
    KILN_SAMPLER_DEIS,
    KILN_SAMPLER_DDIM,   /* ComfyUI's ddim is euler (it differs only when inpainting) */
    KILN_SAMPLER_UNI_PC, /* UniPC bh1, order 3, data prediction */
    KILN_SAMPLER_DPMPP_2M_SDE_HEUN, /* DPM-Solver++(2M) SDE with the Heun-like second-order correction */
    /* ComfyUI's newer samplers (comfy/k_diffusion/sampling.py, sa_solver.py); the *_CFG_PP ones step from the
       unconditional prediction (kiln_sample_args.uncond) and add the guidance back after (CFG++) */
    KILN_SAMPLER_RES_MULTISTEP,
    KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL,
    KILN_SAMPLER_RES_MULTISTEP_CFG_PP,
    KILN_SAMPLER_RES_MULTISTEP_ANCESTRAL_CFG_PP,
    KILN_SAMPLER_GRADIENT_ESTIMATION,
    KILN_SAMPLER_GRADIENT_ESTIMATION_CFG_PP,
    KILN_SAMPLER_ER_SDE,  /* VP ER-SDE-Solver-3 */
    KILN_SAMPLER_SEEDS_2, /* SEEDS-2, r = 1/2 */
    KILN_SAMPLER_SEEDS_3, /* SEEDS-3, r = 1/3, 2/3 */
    KILN_SAMPLER_DDPM,
    KILN_SAMPLER_HEUNPP2,
    KILN_SAMPLER_IPNDM_V, /* iPNDM with variable step sizes */
    KILN_SAMPLER_EULER_CFG_PP,
    KILN_SAMPLER_EULER_ANCESTRAL_CFG_PP,
    KILN_SAMPLER_DPMPP_2M_CFG_PP,
    KILN_SAMPLER_DPMPP_2S_ANCESTRAL_CFG_PP,
    KILN_SAMPLER_SA_SOLVER,      /* SA-Solver, predictor order 3, corrector order 4 */
    KILN_SAMPLER_SA_SOLVER_PECE, /* the same, evaluating the corrected state again */
    KILN_SAMPLER_UNI_PC_BH2,     /* UniPC with B(h) = e^h - 1 */
    KILN_SAMPLER_DPM_FAST,       /* DPM-Solver-fast, between the schedule's ends in its steps' model calls */
    KILN_SAMPLER_DPM_ADAPTIVE,   /* DPM-Solver-23 with adaptive steps, between the schedule's ends */
    KILN_SAMPLER_COUNT
} kiln_sampler;

/* What a sampler draws noise for. */
typedef enum kiln_sampler_noise {
    KILN_SAMPLER_NOISE_NONE,      /* deterministic */
    KILN_SAMPLER_NOISE_ANCESTRAL, /* one independent randn(x.shape) per call */
    KILN_SAMPLER_NOISE_BROWNIAN,  /* Brownian increments (ComfyUI: a torchsde BrownianTree) */
} kiln_sampler_noise;

/* "dpmpp_2m" -> KILN_SAMPLER_DPMPP_2M; the SDE samplers' "_gpu" names
 * (dpmpp_2m_sde_gpu, ...) as ComfyUI runs them without a GPU: their plain
 * names. Errors: KILN_ERR_INVALID_ARG for a name ComfyUI does not have,
 * its message listing the valid names. */
kiln_status kiln_sampler_from_name(const char *name, kiln_sampler *out);
/* The ComfyUI name; NULL for a value out of range. */
const char *kiln_sampler_name(kiln_sampler sampler);
kiln_sampler_noise kiln_sampler_noise_kind(kiln_sampler sampler);
/* dpm_2, dpm_2_ancestral, uni_pc and uni_pc_bh2 get a schedule one step longer with its
 * second-to-last sigma dropped (pass this to kiln_ksampler_sigmas). */
bool kiln_sampler_discards_penultimate_sigma(kiln_sampler sampler);
/* The CFG++ samplers, which need the unconditional prediction even at cfg 1. */
bool kiln_sampler_is_cfg_pp(kiln_sampler sampler);


typedef struct kiln_sample_args {
    kiln_sampler sampler;
    const float *sigmas;        /* (nsigmas) descending noise levels, normally ending in 0 */
    size_t nsigmas;
    size_t n;                   /* latent elements, whole batch */
    kiln_denoise_fn denoise;    /* required */
    void *denoise_ctx;
    kiln_uncond_fn uncond;      /* called with denoise_ctx; required by the CFG++ samplers */
    /* Noise for ancestral and SDE samplers. NULL gives ComfyUI's defaults
     * for `seed`, bit for bit: for the ancestral samplers and lcm a torch CPU
     * generator seeded with it, one randn(n) per call (default_noise_sampler);
     * for the SDE samplers torchsde's BrownianTree over the schedule's
     * smallest positive and largest sigma (see brownian.h). */
    kiln_noise_fn noise;
    void *noise_ctx;
    uint64_t seed;
    kiln_progress_fn progress;  /* may be NULL */
    void *progress_ctx;
    float eta;                  /* ancestral / SDE noise amount (default 1; 0 = deterministic) */
    int lms_order;              /* lms: the slopes it combines, 1 .. 4 (0: 4, ComfyUI's default) */
    float s_noise;              /* scale of the added noise (default 1) */
    /* a flow model (ms->flow), sampled as ComfyUI samples its CONST type: euler_ancestral,
       dpm_2_ancestral and dpmpp_2s_ancestral as their rectified-flow variants, the SDE samplers
       (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde) in the flow half-log-SNR log((1 - sigma) / sigma)
       with alpha 1 - sigma, lcm renoising the flow way; the rest unchanged */
    bool flow;
    float flow_first_sigma;     /* flow, the samplers stepping in half-log-SNR (SDE ones, er_sde, seeds,
                                   sa_solver): the first sigma in place of one at 1, where the half-log-SNR
                                   is infinite (ComfyUI's percent_to_sigma(1e-4)) */
    /* sa_solver: its noise (tau = eta) is on between these sigmas, high then low (KSampler's: percent_to_sigma(0.2)
       and percent_to_sigma(0.8)); 0, 0: never, the deterministic solver */
    float sa_solver_sigmas[2];
    /* the custom sampler nodes' settings beyond eta and s_noise (kiln_sample_args_init: KSampler's) */
    int max_stage;             /* er_sde: its order, 1 .. 3 (3) */
    double er_sde_power;       /* er_sde: 0 (the default), its ER-SDE noise scaler; p > 0 the reverse-time SDE's
                                  lambda^p (SamplerER_SDE: eta + 1; its ODE: 1 with s_noise 0) */
    double seeds_r;            /* seeds_2: the intermediate stage's fraction of the step, (0, 1] (0.5) */
    bool seeds_phi_2;          /* seeds_2: SamplerSEEDS2's phi_2 solver (false: phi_1) */
    int sa_predictor_order;    /* sa_solver: 1 .. 6 (3) */
    int sa_corrector_order;    /* sa_solver: 0 .. 6 (4) */
    bool sa_simple_order_2;    /* sa_solver: the paper's simpler order-2 coefficients */
    bool euler_pp;             /* euler_cfg_pp: SamplerEulerCFGpp's "alternative" step (ComfyUI's sample_euler_pp) */
    /* dpm_adaptive (SamplerDPMAdaptative's; kiln_sample_args_init: KSampler's): its order, 2 or 3 (3), the
       error's tolerances, the first step in t = -log sigma, the step size controller's PID coefficients and the
       factor at or above which a step is taken */
    int dpm_order;
    double dpm_rtol, dpm_atol, dpm_h_init, dpm_pcoeff, dpm_icoeff, dpm_dcoeff, dpm_accept_safety;
    /* dpm_adaptive: eta and s_noise apply (the node's); false: KSampler's eta 0. Without a noise callback its
       noise continues the seed's torch.randn stream after the latent's noise, as ComfyUI on the CPU draws it
       (k-diffusion's unseeded default_noise_sampler after prepare_noise seeded the global generator) */
    bool dpm_noise;
} kiln_sample_args;

/* Zeroes args and sets ComfyUI's defaults: eta = 1, s_noise = 1, and
 * KSampler's er_sde, seeds_2 and sa_solver settings. */
void kiln_sample_args_init(kiln_sample_args *args);

/* Runs the sampler: x (n) holds the start latent on entry (see
 * kiln_sampler_start_x) and the final latent on return. Errors:
 * KILN_ERR_INVALID_ARG for a missing callback, n == 0, no sigmas, or a
 * non-finite or non-positive sigma before the last, or a flow SDE run from
 * sigma 1 without flow_first_sigma; KILN_ERR_OUT_OF_MEMORY; and whatever a
 * callback returns. */
kiln_status kiln_sample(const kiln_sample_args *args, float *x);

/* A kiln_noise_fn drawing torch.randn(n) from the kiln_rng passed as ctx. */
kiln_status kiln_noise_from_rng(void *rng, float sigma, float sigma_next, float *noise, size_t n);

/* KSampler's start latent (model_sampling.noise_scaling). Discrete: x =
 * noise * sqrt(1 + sigma0^2) + latent when sigma0 reaches the model's
 * sigma_max (within a relative 1e-5, i.e. txt2img at denoise 1), otherwise
 * x = noise * sigma0 + latent. Flow (CONST, no max_denoise case): x =
 * sigma0 * noise + (1 - sigma0) * latent. `latent` (n) is in model space
 * (a VAE latent times its scale factor, 0.18215 for SD 1.x); NULL means
 * zeros (an empty latent). Float32 arithmetic as ComfyUI's. */
void kiln_sampler_start_x(const kiln_model_sampling *ms, float sigma0, const float *noise, const float *latent,
                          float *x, size_t n);

#endif
