/* Parity checks shared by the tiny-model and full-size tests: run a model's
 * CLIP, UNet (with every named block's output) and VAE on a backend and
 * compare with upstream goldens by relative L2 error. */
#ifndef KILN_TEST_PARITY_H
#define KILN_TEST_PARITY_H

#include <stdbool.h>

#include "flux.h"
#include "golden.h"
#include "lora.h"

typedef struct parity_fixture {
    const char *path;    /* checkpoint file or diffusers folder */
    double tol;          /* relative L2 bound */
    const char *backend; /* NULL = "cpu" */
    bool f16_compute;    /* ask the backend for f16 compute (else it chooses) */
    const kiln_lora *loras; /* merged at load, in order */
    int nloras;
    const kiln_model_parts *parts; /* the files beside a model alone (a UNet's CLIP and VAE), or NULL */
} parity_fixture;

/* golden: input_ids, last_hidden_state, clip_skip2 */
void parity_check_clip(const parity_fixture *fx, const char *golden_path);
/* golden: sample, timesteps, encoder_hidden_states, noise_pred, x.<block> */
void parity_check_unet(const parity_fixture *fx, const char *golden_path);
/* The noise prediction alone, the golden's names after `prefix` ("unet9."):
 * sample, timesteps, encoder_hidden_states, noise_pred. */
void parity_check_unet_output(const parity_fixture *fx, const char *golden_path, const char *prefix);
/* The same with the model patches kiln_unet_cond carries: FreeU on the
 * decoder, PerturbedAttentionGuidance's perturbed middle block, HyperTile. */
typedef struct parity_unet_patches {
    const kiln_freeu *freeu; /* NULL: none */
    bool perturb_middle;
    const kiln_hypertile *hypertile; /* NULL: none; its draws from a generator seeded with hypertile_seed */
    uint64_t hypertile_seed;
    /* hypernetwork files under tests/data, loaded on the model at their strengths, applied in this order */
    const char *const *hypernetworks;
    const double *hypernetwork_strengths;
    int nhypernetworks;
} parity_unet_patches;
void parity_check_unet_patched(const parity_fixture *fx, const char *golden_path, const char *prefix,
                               const parity_unet_patches *patches);
/* golden: sample, timesteps, encoder_hidden_states, hint, scale; residual.N,
 * residual.mid (the ControlNet's), noise_pred (the UNet with them added);
 * controlnet_path absolute or under tests/data */
void parity_check_controlnet(const parity_fixture *fx, const char *controlnet_path, const char *golden_path);
/* kiln_controlnet_open of path (a ControlNet or T2I-Adapter) for the model
 * refused with KILN_ERR_MODEL, the message naming the file and `needle`. */
void parity_expect_controlnet_refusal(const char *model, const char *path, const char *needle);
/* A T2I-Adapter (adapter_path under tests/data) on tests/data/t2i_adapter's
 * golden picture hint_name: its features against `<prefix>.feature.N`, and
 * the UNet on inputs_path's inputs (sample, timesteps, encoder_hidden_states,
 * SDXL's y) with them times the golden's scale against `<prefix>.noise_pred`. */
void parity_check_t2i_adapter(const parity_fixture *fx, const char *adapter_path, const char *inputs_path,
                              const char *prefix, const char *hint_name);
/* IP-Adapter (tests/data/ip_adapter's goldens): the CLIP vision tower on
 * upstream's preprocessed picture (image embeds, penultimate hidden states),
 * the adapter's image projection on upstream's embeds (plain) or hidden
 * states (Plus), and the UNet with its image attention: the golden's
 * `<prefix>ip_tokens` and `<prefix>noise_pred`, on the UNet inputs under the
 * prefix (`<prefix>sample`, ...) where it has them, else the unprefixed
 * ones; both paths under tests/data. */
void parity_check_ip_adapter(const parity_fixture *fx, const char *clip_vision_path, const char *ip_adapter_path,
                             const char *golden_path, const char *prefix);
/* Two IP-Adapters on one UNet call (chained IPAdapterAdvanced nodes): each
 * attends to the golden's tokens named beside it, at chain_path's `scales`;
 * the UNet's output against its `noise_pred`. Paths under tests/data. */
/* An IP-Adapter given several pictures (ImageBatch): kiln_image_prompt_tokens
 * of the picture files against pictures_path's <prefix>ip_tokens, and the
 * UNet attending to those (golden_path's inputs and scale) against its
 * <prefix>noise_pred. */
void parity_check_ip_adapter_pictures(const parity_fixture *fx, const char *clip_vision_path, const char *ip_adapter_path,
                                      const char *golden_path, const char *pictures_path, const char *prefix,
                                      const char *const *pictures, int count);
void parity_check_ip_adapter_chain(const parity_fixture *fx, const char *const adapters[2],
                                   const char *const tokens[2], const char *golden_path, const char *chain_path);
/* An ESRGAN upscale model (under tests/data) on the golden's "image": the
 * network ("raw"), ImageUpscaleWithModel in one tile ("whole") and over
 * 8-pixel tiles overlapping by 2 ("tiled"). */
void parity_check_upscaler(const parity_fixture *fx, const char *model_path, const char *golden_path);
/* An upscale model's network output for golden_path's `input` against its
 * `raw_key`, and the clamped whole picture (tests/data/upscale/compact's and
 * span's). */
void parity_check_upscaler_network(const parity_fixture *fx, const char *model_path, const char *golden_path,
                                   const char *raw_key);
/* PixArt (tests/data/pixart's goldens, the folder as fx->path): its T5 on
 * t5.ids.N -> t5.out.N (N = 0..2), its DiT on dit.sample, dit.timestep, the
 * captions dit.context.0/1 and dit.resolution -> dit.out. */
void parity_check_pixart(const parity_fixture *fx, const char *golden_path);
/* SD3's transformer: fx->path (tests/data/sd3/tiny or tiny_sd3, or a
 * single file of the same weights, with fx->parts) on
 * tests/data/sd3/golden.safetensors' `<key>.sample` (patched here),
 * context, pooled and timestep -> `<key>.out`. */
void parity_check_sd3(const parity_fixture *fx, const char *key);
/* The tiny SD 3.5 transformer m (sd3/tiny, loaded) with the ControlNet cn
 * (sd3/controlnet/instantx, sd3/controlnet_sd35's) at 0.7 on golden_path's
 * hint against its out; fx->tol. */
void parity_check_sd3_controlnet(const parity_fixture *fx, const kiln_model *m, const kiln_controlnet *cn,
                                 const char *golden_path);
/* The same against want_path's want_name (the model with fx->loras, ...). */
void parity_check_sd3_against(const parity_fixture *fx, const char *key, const char *want_path, const char *want_name);
/* Flux's transformer (tests/data/flux's tiny one, its axes 4, 6, 6) on the
 * golden's packed, context, pooled, timestep, guidance -> out; fx->path
 * unused. */
void parity_check_flux(const parity_fixture *fx, const char *golden_path);
/* Chroma's tiny transformer in `path` (diffusers' file, or the original
 * names' single file read through a checkpoint) on chroma/golden's two
 * rows, with their guidance and with none (0); reference latents refused. */
void parity_check_chroma(const parity_fixture *fx, const char *path);
/* m's transformer (a Chroma model's) on chroma/golden's two rows against
 * want_path's want_name. */
void parity_check_chroma_out(const kiln_model *m, const char *want_path, const char *want_name, double tol);
/* ComfyUI-GGUF's tiny Flux (tests/data/gguf/flux1-tiny-Q8_0.gguf: Q8_0,
 * BF16, F32) with llama.cpp's tiny T5 (Q4_0..Q8_0), CLIP-L and a VAE as
 * parts: the Q8_0 linear weights bound as stored, the transformer against
 * diffusers (flux.out) and T5 against transformers (t5.out) on the weights
 * gguf-py reads back (tests/data/gguf/golden.safetensors); fx->path unused. */
void parity_check_gguf_flux(const parity_fixture *fx);
/* The tiny Flux of flux/single (f16, BFL's names) with the parts below and
 * kiln_model_parts.weight_dtype `weight_dtype`, on fx's backend: its linear
 * weights held in `dtype`, its T5 as stored, the transformer against the
 * golden `golden_name` of tests/data/gguf/golden.safetensors (diffusers on
 * the same conversion). */
void parity_check_flux_weight_dtype(const parity_fixture *fx, const char *weight_dtype, kiln_dtype dtype,
                                    const char *golden_name);
/* The parts that go with that Flux: CLIP-L, the T5 GGUF, the VAE, and
 * the tiny config; the paths in `paths`, which must outlive *parts. */
void parity_gguf_flux_parts(char paths[4][4096], kiln_model_parts *parts);
/* m's Flux transformer on inputs_path's golden inputs (parity_flux_run,
 * with guidance) against the golden `want_name` of f. */
void parity_check_flux_out(const kiln_model *m, const char *inputs_path, kiln_st_file *f, const char *want_name,
                           double tol);
/* m's T5 on the ids golden `ids_name` of f against `out_name`. */
void parity_check_t5_ids(const kiln_model *m, kiln_st_file *f, const char *ids_name, const char *out_name,
                         double tol);
/* A bound Flux transformer on golden_path's inputs (packed, context, pooled,
 * timestep, guidance: two rows of 4x3 patches) into out; guidance false
 * leaves the guidance out. The forward call's status. */
kiln_status parity_flux_run(kiln_backend *be, const kiln_flux *flux, const char *golden_path, bool guidance,
                            float *out);
/* tests/data/flux/controlnet's goldens (make_flux_controlnet_data.py). */
#define FLUX_CONTROLNET_GOLDEN "flux/controlnet/golden.safetensors"
/* A Flux golden's transformer inputs, two rows of 4x3 patches. */
typedef struct parity_flux_inputs {
    golden packed, context, pooled, timestep, guidance;
} parity_flux_inputs;
flux_input parity_flux_read_inputs(kiln_st_file *f, parity_flux_inputs *c);
void parity_flux_free_inputs(parity_flux_inputs *c);
/* make_flux_alimama_data.py's goldens: an inpainting ControlNet of
 * Alimama's kind on FLUX_CONTROLNET_GOLDEN's inputs. */
#define FLUX_ALIMAMA_GOLDEN "flux/controlnet/alimama.golden.safetensors"
/* The golden with ControlNet `kind`'s keys: FLUX_ALIMAMA_GOLDEN for
 * "alimama", else FLUX_CONTROLNET_GOLDEN. */
const char *parity_flux_controlnet_golden(const char *kind);
/* A golden's hint of `kind` ("instantx", "alimama": its packed latent
 * unpacked; "xlabs": its picture times 2 minus 1), malloc'd. */
float *parity_flux_controlnet_hint(kiln_st_file *f, const char *kind);
/* The flux/controlnet model and ControlNet `kind` ("instantx" at 0.7 with
 * control type 2, "alimama" at 0.7, "xlabs" at 0.6) on fx->backend: the
 * transformer with its residuals against the golden's `<kind>.out`;
 * fx->path unused. */
void parity_check_flux_controlnet(const parity_fixture *fx, const char *kind);
/* make_flux_ip_adapter_data.py's goldens. */
#define FLUX_IP_ADAPTER_GOLDEN "flux/controlnet/ip_adapter.golden.safetensors"
/* The flux/controlnet model and XLabs' IP-Adapter beside it on
 * fx->backend: its projection of the golden's embeds and the transformer
 * attending to the tokens at 0.7, against upstream; fx->path unused. */
void parity_check_flux_ip_adapter(const parity_fixture *fx);
/* golden: each decodes[i] = {latent, image}, and enc.image/enc.mean/enc.logvar */
void parity_check_vae(const parity_fixture *fx, const char *golden_path, const char *const decodes[][2], int ndecodes);

/* Where ck's text towers are, for kiln_lora_merge (its model family's);
 * the pointer is to storage the next call overwrites. */
const kiln_lora_towers *lora_towers_of(const kiln_checkpoint *ck);

/* The bound for f32 final latents. */
#define PARITY_LATENT_TOL 1e-4

typedef struct kiln_model kiln_model;
typedef struct kiln_tokenizer kiln_tokenizer;

typedef struct kiln_sampling_job kiln_sampling_job;
typedef struct kiln_conditioning kiln_conditioning;
typedef struct golden golden;

/* VAEDecode of a (1,4,h,w) LATENT, as SaveImage's floats (1,H,W,3) in [0,1],
 * against a golden picture. */
void parity_check_picture(kiln_model *model, const float *latent, int latent_h, int latent_w, const golden *image,
                          double tol);

/* A KSampler run restated from ComfyUI's code (golden run.latent_out and
 * run.image, (1,H,W,3) in [0,1]): job sampled from the conditionings, its
 * LATENT and the picture VAEDecode makes of it compared by relative L2. */
void parity_check_run(kiln_model *model, const kiln_sampling_job *job, const kiln_conditioning *positive,
                      const kiln_conditioning *negative, const char *golden_path, double tol);
/* A SelfAttentionGuidance run of a golden file in tests/data/sag's layout
 * (sag.safetensors' `run` "cfg5" or "cfg1": KSampler euler, normal, 3
 * steps, seed 42, 16x12, scale 0.5, blur 2; sag_deep_shrink.safetensors'
 * "shrunk", with PatchModelAddDownscale's <run>.deep_shrink on the model) on
 * the tiny SD 1.x model: its latent against the golden's within tol, and the
 * same run without SAG (or, with Deep Shrink, without the shrink) far from
 * it. */
void parity_check_sag_run(kiln_model *model, const char *golden_path, const char *run, double tol);
/* A PatchModelAddDownscale run of tests/data/deep_shrink/deep_shrink.safetensors
 * (`run` "after_skip", "before_skip", "block1", "freeu_v2" with FreeU_V2
 * after it, "controlnet" with tests/data/controlnet's tiny ControlNet, or
 * "t2i" with tests/data/t2i_adapter's full T2I-Adapter: KSampler euler,
 * normal, 3 steps, cfg 5, seed 42, 16x12) on the tiny SD 1.x model: its
 * latent against the golden's within tol, the run without the patch far
 * from it (and with a control, within tol of the golden's run without the
 * patch). */
void parity_check_deep_shrink_run(kiln_model *model, const char *run, double tol);
/* HyperTile's settings of a run of tests/data/hypertile/hypertile.safetensors. */
kiln_hypertile parity_hypertile_settings(kiln_st_file *f, const char *run);
/* A HyperTile run of that golden (defaults, random, scaled, pag): KSampler
 * on the tiny SD 1.x model (euler, normal, 3 steps, cfg 5, seed 42) with the
 * run's settings (and PerturbedAttentionGuidance where it has a pag_scale);
 * the final latent within tol (rel L2) of ComfyUI's, and the plain run's of
 * the golden's plain one and away from the tiled one. */
void parity_check_hypertile_run(kiln_model *model, const char *run, double tol);
/* That golden's SDXL call: the tiny SDXL model (fx) with the "sdxl." run's
 * settings, its draws from its seed, against ComfyUI's noise_pred. */
void parity_check_hypertile_sdxl(const parity_fixture *fx);

/* The same job as img2img at denoise 0.6 from the golden's
 * img2img.latent_in against its img2img.latent_out. */
void parity_check_img2img(kiln_model *model, const kiln_sampling_job *job, const kiln_conditioning *positive,
                          const kiln_conditioning *negative, const char *golden_path, double tol);

/* One recorded ComfyUI run (tests/data/comfyui_e2e/FILE): conditionings from
 * the prompt text, the LATENT from the recorded noise, pixels within 1 level. */
void parity_check_comfyui_run(kiln_model *model, const kiln_tokenizer *tokenizer, const char *file);

#endif
