/* The CLIP vision tower (a ViT) that IP-Adapter reads pictures with, as
 * transformers' CLIPVisionModelWithProjection and ComfyUI's CLIPVisionLoader
 * have it: patches of the picture as tokens after a class token, the text
 * tower's encoder layer without the causal mask, and the class token's
 * output through a layer norm and a projection ("image embeds"). Files are
 * transformers' layout (`vision_model.*`, `visual_projection.weight`), the
 * layout of h94/IP-Adapter's image encoders and of ComfyUI's clip_vision
 * downloads.
 *
 * SigLIP's tower (SiglipVisionModel, ComfyUI's sigclip_vision_patch14_384,
 * what FLUX.1 Redux reads) is the same layer with tanh GELU on the patches
 * alone: no class token, a bias on the patch projection, no norm before the
 * layers, the last one's every token through the post norm (its "last hidden
 * state"), no projection. */
#ifndef KILN_MODELS_CLIP_VISION_H
#define KILN_MODELS_CLIP_VISION_H

#include "clip.h"
#include "image.h"

typedef struct clip_vision_config {
    const char *name;
    int image_size, patch;           /* pictures of image_size^2 in patches of patch^2 */
    int hidden, layers, heads, mlp;
    int projection;                  /* width of the image embeds; SigLIP's: 0, none */
    clip_activation activation;
    bool siglip;
} clip_vision_config;

typedef struct kiln_clip_vision {
    kiln_checkpoint *checkpoint;
    kiln_weights *weights;
    const clip_vision_config *config;
    const tensor *class_embedding;    /* (D); SigLIP: NULL */
    const tensor *patch_embedding;    /* (D,3,p,p) */
    const tensor *patch_bias;         /* (D) SigLIP's; NULL */
    const tensor *position_embedding; /* (tokens,D): the class token, then the patches row by row */
    const tensor *pre_ln_w, *pre_ln_b; /* SigLIP: NULL */
    clip_layer_weights layer[CLIP_MAX_LAYERS];
    const tensor *post_ln_w, *post_ln_b;
    const tensor *projection;         /* (P,D), no bias */
} kiln_clip_vision;

extern const clip_vision_config *const kiln_clip_vision_configs[];

/* Opens a CLIP vision file and binds it on be; a file of another kind, or
 * a tower of shapes kiln does not know, is refused naming the file. */
kiln_status kiln_clip_vision_open(const char *path, kiln_backend *be, kiln_clip_vision **out);
void kiln_clip_vision_free(kiln_clip_vision *cv);
/* Patches (and CLIP's class token) of the tower's input. */
int kiln_clip_vision_tokens(const clip_vision_config *cfg);

/* ComfyUI's clip_preprocess for the tower of cfg (its picture size S and
 * mean and std: CLIP's, or SigLIP's 0.5): with crop (CLIPVisionEncode's
 * "center") the shorter side scaled to S by torch's antialiased bicubic
 * interpolate and the centre S x S cut out, without ("none") the picture
 * scaled to S x S; rounded to 1/255 -> pixels (3,S,S). */
kiln_status kiln_clip_vision_preprocess(const clip_vision_config *cfg, const kiln_image *img, bool crop,
                                        float *pixels);

/* What the tower gives for `rows` preprocessed pictures (rows,3,S,S); each
 * may be NULL (the tower stops after the last layer asked for). */
typedef struct clip_vision_outputs {
    float *image_embeds; /* (rows,P): the class token's output projected (CLIP's) */
    float *penultimate;  /* (rows,tokens,D): the second-to-last layer's hidden states (IP-Adapter Plus') */
    float *last_hidden;  /* (rows,tokens,D): the last layer's through the post norm (SigLIP's, Redux's) */
} clip_vision_outputs;

kiln_status kiln_clip_vision_encode(const kiln_clip_vision *cv, const float *pixels, int rows,
                                    const clip_vision_outputs *out);

#endif
