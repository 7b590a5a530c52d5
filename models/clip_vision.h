/* The CLIP vision tower (a ViT) that IP-Adapter reads pictures with, as
 * transformers' CLIPVisionModelWithProjection and ComfyUI's CLIPVisionLoader
 * have it: patches of the picture as tokens after a class token, the text
 * tower's encoder layer without the causal mask, and the class token's
 * output through a layer norm and a projection ("image embeds"). Files are
 * transformers' layout (`vision_model.*`, `visual_projection.weight`), the
 * layout of h94/IP-Adapter's image encoders and of ComfyUI's clip_vision
 * downloads. */
#ifndef KILN_MODELS_CLIP_VISION_H
#define KILN_MODELS_CLIP_VISION_H

#include "clip.h"
#include "image.h"

typedef struct clip_vision_config {
    const char *name;
    int image_size, patch;           /* pictures of image_size^2 in patches of patch^2 */
    int hidden, layers, heads, mlp;
    int projection;                  /* width of the image embeds */
    bool gelu;                       /* GELU (erf) in the MLP (OpenCLIP's towers); else quick GELU (OpenAI's) */
} clip_vision_config;

typedef struct kiln_clip_vision {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    const clip_vision_config *config;
    const tensor *class_embedding;    /* (D) */
    const tensor *patch_embedding;    /* (D,3,p,p), no bias */
    const tensor *position_embedding; /* (tokens,D): the class token, then the patches row by row */
    const tensor *pre_ln_w, *pre_ln_b;
    clip_layer_weights layer[CLIP_MAX_LAYERS];
    const tensor *post_ln_w, *post_ln_b;
    const tensor *projection;         /* (P,D), no bias */
} kiln_clip_vision;

extern const clip_vision_config *const kiln_clip_vision_configs[];

/* Opens a CLIP vision file and binds it on be; a file of another kind, or
 * a tower of shapes kiln does not know, is refused naming the file. */
kiln_status kiln_clip_vision_open(const char *path, kiln_backend *be, kiln_clip_vision **out);
void kiln_clip_vision_free(kiln_clip_vision *cv);
/* Patches and class token of the tower's input. */
int kiln_clip_vision_tokens(const clip_vision_config *cfg);

/* ComfyUI's clip_preprocess with crop: the shorter side scaled to `size`
 * (torch's antialiased bicubic interpolate), the centre size x size cut out,
 * rounded to 1/255, then CLIP's mean and std -> pixels (3,size,size). */
kiln_status kiln_clip_vision_preprocess(const kiln_image *img, int size, float *pixels);

/* The tower on `rows` preprocessed pictures (rows,3,S,S) -> image_embeds
 * (rows,P) and/or penultimate (rows,tokens,D), the second-to-last layer's
 * hidden states (what IP-Adapter Plus models read); either may be NULL
 * (without image_embeds the last layer and the projection are not run). */
kiln_status kiln_clip_vision_encode(const kiln_clip_vision *cv, const float *pixels, int rows, float *image_embeds,
                                    float *penultimate);

#endif
