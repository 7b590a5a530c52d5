/* LoRA, LoCon and LoHa files merged into a checkpoint's weights at load.
 *
 * Each module of the file names one weight of the model and holds a low-rank
 * update; merging adds strength * (alpha / rank) * update to that weight
 * once, so sampling with a LoRA costs exactly what sampling without it does.
 * Files from kohya's sd-scripts and LyCORIS (`lora_unet_*`, `lora_te_*`, in
 * diffusers or original block names), diffusers and PEFT (`unet.*`,
 * `text_encoder.*`) and ComfyUI (`diffusion_model.*`) are read. */
#ifndef KILN_LORA_H
#define KILN_LORA_H

#include "checkpoint.h"

typedef struct kiln_lora_stats {
    int unet_modules, clip_modules; /* weights changed */
} kiln_lora_stats;

/* What a LoRA file holds, for `gen --info`. */
typedef struct kiln_lora_info {
    int unet_modules, clip_modules;
    int lora, locon, loha, lokr; /* modules of each kind: LoCon = LoRA on a kh x kw > 1 convolution */
    int full;                    /* modules whose weight's difference is whole (LyCORIS' full, norm layers') */
    int dora;                    /* modules (of any kind) with DoRA's magnitudes */
    int bias;                    /* modules with a bias difference */
    int min_rank, max_rank;      /* over the modules with a rank (not a LoKr of two whole sides); 0, 0: none */
    float min_alpha, max_alpha;  /* over the modules that give one */
    int alphas;                  /* modules with an alpha */
    int text_width;              /* the text encoder's hidden size its modules imply (768: SD 1.x), 0 if none */
    int dit_modules;             /* modules in a DiT's names: BFL's or XLabs' Flux blocks, diffusers' transformer.* */
} kiln_lora_info;

/* Reads the file's modules without merging them anywhere. Errors as
 * kiln_lora_merge's for the file itself. */
kiln_status kiln_lora_inspect(const char *path, kiln_lora_info *info);

/* Where the model's text towers are, for the LoRA modules that name them:
 * the canonical root of each (`cond_stage_model.transformer.text_model`, the
 * model family's clip_reading root), NULL where the model has none. `first`
 * takes kohya's lora_te_/lora_te1_ and diffusers' text_encoder. modules (a
 * CLIP-L or SD 2.x's OpenCLIP-H), `second` lora_te2_ and text_encoder_2.
 * (SDXL's OpenCLIP bigG, the refiner's only tower). */
typedef struct kiln_lora_towers {
    const char *first, *second;
} kiln_lora_towers;

/* Merges the LoRA at lora->path into ck's weights. A module whose weight the
 * model lacks or has in another shape (a LoRA for another base model) fails
 * the merge with the module's name, as does a module kind kiln cannot merge
 * (set_weight, DoRA on a split fused projection). */
kiln_status kiln_lora_merge(kiln_checkpoint *ck, const kiln_lora_towers *towers, const kiln_lora *lora,
                            kiln_lora_stats *stats);

#endif
