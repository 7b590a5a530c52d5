/* A checkpoint: the tensors of one model, under canonical names.
 *
 * Canonical names are the original single-file names that ComfyUI and A1111
 * users have (`model.diffusion_model.*`, `first_stage_model.*`,
 * `cond_stage_model.transformer.text_model.*`). A single .safetensors file in
 * that layout is used as is, but for an SD 2.x file's OpenCLIP text tower
 * (`cond_stage_model.model.*`), whose names are mapped to transformers' and
 * whose fused q/k/v are split into three views; a diffusers folder (unet/,
 * vae/, text_encoder/) is mapped to those names by rename rules at open. A
 * DiT folder (PixArt's transformer/, vae/, a T5 text_encoder/ whole or in
 * shards) keeps diffusers' and transformers' names under `transformer.` and
 * `text_encoders.t5xxl.transformer.`, its VAE mapped as any folder's. A Flux
 * single file in Black Forest Labs' names (bare or under ComfyUI's
 * `model.diffusion_model.`) is read under those diffusers' names, and files
 * given beside a checkpoint (a VAE, text encoders: kiln_checkpoint_add_parts)
 * under the roots their model reads them at. ComfyUI's scaled fp8 weights
 * are read dequantized. */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "safetensors.h"

typedef struct kiln_checkpoint kiln_checkpoint;

/* Where a DiT model's parts sit among the canonical names: diffusers' and
 * transformers' names under these roots (ComfyUI's for the text encoders). */
#define KILN_PIXART_ROOT "transformer"
#define KILN_FLUX_ROOT "transformer"
#define KILN_T5_ROOT "text_encoders.t5xxl.transformer"
#define KILN_CLIP_L_ROOT "text_encoders.clip_l.transformer"
#define KILN_CLIP_G_ROOT "text_encoders.clip_g.transformer" /* SD3's, as ComfyUI's files keep it */

/* Where single files keep an OpenCLIP text tower (SD 2.x's, SDXL's second,
 * the refiner's) and the transformers names kiln reads it under: root i's
 * OpenCLIP names [i][0] go under [i][1]; and the renames within a layer
 * (OpenCLIP's, transformers'). */
#define KILN_OPEN_CLIP_ROOTS 3
#define KILN_OPEN_CLIP_RENAMES 5
extern const char *const kiln_open_clip_roots[KILN_OPEN_CLIP_ROOTS][2];
extern const char *const kiln_open_clip_renames[KILN_OPEN_CLIP_RENAMES][2];

/* Opens a single-file checkpoint or a diffusers folder. */
kiln_status kiln_checkpoint_open(const char *path, kiln_checkpoint **out);
/* Opens a single-file checkpoint held in memory (the embedded default
 * model); `data` must outlive the checkpoint, `label` names it in errors. */
kiln_status kiln_checkpoint_open_memory(const void *data, size_t size, const char *label, kiln_checkpoint **out);
/* Opens a ControlNet file: original names under `control_model.` as they
 * are, original names without the prefix and diffusers' ControlNetModel
 * names mapped to them. */
kiln_status kiln_checkpoint_open_controlnet(const char *path, kiln_checkpoint **out);
/* Opens an IP-Adapter file: its names as they are, but an IP-Adapter Plus
 * Resampler's fused `<attention>.to_kv.weight`, whose two halves of rows
 * are k's and v's, read as `.to_k.weight` and `.to_v.weight` (no copy). */
kiln_status kiln_checkpoint_open_ip_adapter(const char *path, kiln_checkpoint **out);
void kiln_checkpoint_close(kiln_checkpoint *ck);

const char *kiln_checkpoint_path(const kiln_checkpoint *ck);
/* NULL when the checkpoint has no tensor of that canonical name. */
const kiln_st_tensor *kiln_checkpoint_find(const kiln_checkpoint *ck, const char *name);
/* `<prefix>.<suffix>`'s tensor (the suffix alone under an empty prefix), or NULL. */
const kiln_st_tensor *kiln_checkpoint_find_at(const kiln_checkpoint *ck, const char *prefix, const char *suffix);
/* Iteration over every tensor, with its canonical name. */
size_t kiln_checkpoint_count(const kiln_checkpoint *ck);
const kiln_st_tensor *kiln_checkpoint_at(const kiln_checkpoint *ck, size_t i, const char **name);
/* True when some tensor's canonical name starts with prefix. */
bool kiln_checkpoint_has_prefix(const kiln_checkpoint *ck, const char *prefix);
/* A `__metadata__` value of the (first) file, NULL when absent. */
const char *kiln_checkpoint_metadata(const kiln_checkpoint *ck, const char *key);
/* A diffusers folder's scheduler prediction_type ("epsilon", "v_prediction"),
 * NULL for a single file or a folder that does not say. */
const char *kiln_checkpoint_prediction_type(const kiln_checkpoint *ck);
/* A DiT folder's transformer/config.json sample_size (the latent side it was
 * trained at), or 0. */
int kiln_checkpoint_sample_size(const kiln_checkpoint *ck);
/* Whether the checkpoint's PixArt transformer came in PixArt's original
 * names (a single file, as ComfyUI's UNETLoader reads), not diffusers'. */
bool kiln_checkpoint_pixart_original(const kiln_checkpoint *ck);
/* Whether the checkpoint is a single file of a DiT in its original names
 * (BFL's Flux or Chroma, Stability's SD3, PixArt's), read under diffusers'. */
bool kiln_checkpoint_dit_original(const kiln_checkpoint *ck);
/* Its attention_head_dim (what SD 3.0's weights do not show), or 0. */
int kiln_checkpoint_head_dim(const kiln_checkpoint *ck);
/* A DiT folder's model_index.json _class_name ("PixArtSigmaPipeline"), or NULL. */
const char *kiln_checkpoint_pipeline(const kiln_checkpoint *ck);
/* A folder's vae/config.json scaling_factor, or 0 (a UNet's counts only
 * beside latents_mean and latents_std). */
double kiln_checkpoint_vae_scaling(const kiln_checkpoint *ck);
/* Its shift_factor (Flux's VAE), or 0. */
double kiln_checkpoint_vae_shift(const kiln_checkpoint *ck);
/* Its latents_mean and latents_std (Playground v2.5's per-channel latent
 * format): how many numbers each holds, 0 where the folder gives none. */
#define KILN_MAX_LATENT_CHANNELS 16
int kiln_checkpoint_vae_latents(const kiln_checkpoint *ck, const float **mean, const float **std);
/* Whether a folder's scheduler is an EDM one (continuous sigmas, diffusers'
 * EDMEulerScheduler and EDMDPMSolverMultistepScheduler), with its sigma
 * range and the data's std. */
bool kiln_checkpoint_edm_sigmas(const kiln_checkpoint *ck, double *sigma_min, double *sigma_max, double *sigma_data);
/* A Flux folder's transformer/config.json axes_dims_rope, or NULL. */
const int *kiln_checkpoint_rope_axes(const kiln_checkpoint *ck);
/* The dtype kiln_model_parts.weight_dtype asked the diffusion model's linear
 * weights to be converted to at load, when it asked (kiln_weights_convert_linears). */
bool kiln_checkpoint_linear_dtype(const kiln_checkpoint *ck, kiln_dtype *dtype);
/* UNETLoader's weight_dtype names: "default" (*convert false), "fp8_e4m3fn",
 * "fp8_e4m3fn_fast", "fp8_e5m2", and kiln's (stable-diffusion.cpp's --type)
 * "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"; false for others. */
#define KILN_WEIGHT_DTYPES "default, fp8_e4m3fn, fp8_e4m3fn_fast, fp8_e5m2, q8_0, q5_1, q5_0, q4_1 or q4_0"
bool kiln_weight_dtype_from_name(const char *name, bool *convert, kiln_dtype *dtype);

/* Adds the files a model's single file lacks (ComfyUI's VAELoader,
 * DualCLIPLoader; see kiln_model_parts): a VAE in place of its own, text
 * encoders under the roots a DiT reads them at, T5's tokenizer, and a
 * diffusers folder's configs (and tokenizer, where it has one). */
kiln_status kiln_checkpoint_add_parts(kiln_checkpoint *ck, const kiln_model_parts *parts);
/* T5's spiece.model for a DiT: its folder's, or the one given; NULL where
 * none is known. */
const char *kiln_checkpoint_tokenizer(const kiln_checkpoint *ck);
kiln_status kiln_checkpoint_set_tokenizer(kiln_checkpoint *ck, const char *path);

/* Where the rows of a tensor in Black Forest Labs' Flux names go among the
 * canonical (diffusers') names: piece i's rows [from_row, + rows) are rows
 * [to_row, + rows) of `name`. One piece for a renamed tensor; the fused
 * q/k/v (and a single block's linear1, q:k:v:MLP 1:1:1:4) several; the final
 * modulation two into one name, its halves swapped. Checkpoints and LoRAs
 * in BFL's names both read through it. */
typedef struct kiln_row_piece {
    char name[256];
    int64_t to_row, from_row, rows;
} kiln_row_piece;
#define KILN_MAX_ROW_PIECES 4
/* bfl: a weight's or bias's name without a prefix ("double_blocks.0.img_attn.qkv.weight"), rows its
 * first dimension; *n 0 for a name BFL's model lacks; KILN_ERR_MODEL where rows do not split. */
kiln_status kiln_flux_bfl_rows(const char *bfl, int64_t rows, kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n);
/* The same for a tensor of an SD3 MMDiT of `blocks` joint blocks in
 * Stability's names (joint_blocks.N.x_block.attn.qkv, ...), without
 * model.diffusion_model.; n 0 for a name it has no counterpart for. */
kiln_status kiln_sd3_mmdit_rows(const char *mmdit, int64_t rows, int blocks,
                                kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n);
/* The same for a tensor of a PixArt DiT in PixArt's original names
 * (blocks.N.attn.qkv, cross_attn.kv_linear, ...), without
 * model.diffusion_model.; n 0 for a name it has no counterpart for. */
kiln_status kiln_pixart_original_rows(const char *original, int64_t rows, kiln_row_piece pieces[KILN_MAX_ROW_PIECES],
                                      int *n);
/* The same for an XLabs LoRA module (`double_blocks.0.processor.qkv_lora1`:
 * img q/k/v, qkv_lora2 txt, proj_lora1/2 the projections;
 * `single_blocks.0.processor.qkv_lora`: q, k and v without linear1's MLP
 * rows, proj_lora linear2), its weight's pieces; *n 0 for another name. */
kiln_status kiln_flux_xlabs_rows(const char *module, int64_t rows, kiln_row_piece pieces[KILN_MAX_ROW_PIECES],
                                 int *n);
/* The tensors of a kiln_checkpoint_dit_original file as it stores them
 * (names and all), each with the pieces of the checkpoint's tensors its
 * rows are (*n 0: none of the DiT's, such as a text encoder's), for writing
 * the DiT back in its own names. */
size_t kiln_checkpoint_original_count(const kiln_checkpoint *ck);
kiln_status kiln_checkpoint_original_at(const kiln_checkpoint *ck, size_t i, const kiln_st_tensor **t,
                                        kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n);

/* Gives the tensor of canonical `name` new contents: `data`, malloc'd, holding
 * the same shape in `dtype`. The checkpoint takes `data` over, also on
 * failure, and frees it at close. Merged LoRA weights live this way, so every
 * backend binds them as it binds the file's own tensors. */
kiln_status kiln_checkpoint_replace(kiln_checkpoint *ck, const char *name, kiln_dtype dtype, void *data);

/* Writes ck as one safetensors file in the original single-file layout
 * (what ComfyUI's CheckpointSave writes): every tensor under its canonical
 * name, LoRA and merge replacements included, but the OpenCLIP tower at
 * kiln_open_clip_roots[open_clip] (-1: none) under OpenCLIP's names again,
 * its q, k and v rows fused into in_proj, a folder's text_projection
 * transposed to OpenCLIP's; a folder VAE's attention weights as the
 * original 1x1 convolutions. The file appears whole or not at all. */
kiln_status kiln_checkpoint_save(const kiln_checkpoint *ck, int open_clip, const char *path);
/* A kiln_checkpoint_dit_original checkpoint's DiT written back in its file's
 * own names under model.diffusion_model. (what it holds now: a LoRA's or
 * merge's weights in it), as ComfyUI's ModelSave writes one; with
 * vae_prefix, as its CheckpointSave writes a whole model, its text encoders
 * under their names (text_encoders.*) and its VAE under vae_prefix ("vae."
 * for Flux and PixArt, SD3's "first_stage_model.") too. Quantized weights
 * are refused. */
kiln_status kiln_checkpoint_save_dit(const kiln_checkpoint *ck, const char *vae_prefix, const char *path);
/* The same for the tensors under `part` alone (its name taken off them with
 * strip): VAESave's `first_stage_model.`, ModelSave's `model.diffusion_model.`. */
kiln_status kiln_checkpoint_save_part(const kiln_checkpoint *ck, int open_clip, const char *part, bool strip,
                                      const char *path);

/* The canonical name of a diffusers UNet2DConditionModel tensor
 * (`down_blocks.0.resnets.1.conv1.weight`) in ck's UNet, whose block layout is
 * read off ck's own names. False when it has no counterpart. */
bool kiln_checkpoint_unet_name(const kiln_checkpoint *ck, const char *diffusers, char *out, size_t size);

#endif
