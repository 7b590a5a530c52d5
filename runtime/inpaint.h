/* Inpainting inputs as ComfyUI makes them from an image and a mask, or
 * from an image padded for outpainting (ImagePadForOutpaint).
 *
 * With an inpainting UNet (9 input channels) this is VAEEncodeForInpaint:
 * the masked pixels are set to grey before encoding and the mask is rounded
 * and grown by grow_mask_by pixels (6 by default). With FLUX.1 Fill it is InpaintModelConditioning:
 * the picture encoded as it is, and again with its masked pixels grey for
 * the transformer's own input (concat_latent); the mask stretched to the
 * picture, not grown. With any other model it is VAEEncode followed by
 * SetLatentNoiseMask: the image encoded as it is, the mask kept as given.
 * The sampler then keeps the unmasked part (kiln_inpaint_mask in denoiser.h),
 * stretching the mask over the latent bilinearly. */
#ifndef KILN_INPAINT_H
#define KILN_INPAINT_H

#include "image.h"
#include "model.h"

#define KILN_INPAINT_GROW 6         /* VAEEncodeForInpaint's grow_mask_by default */
#define KILN_INPAINT_GROW_MAX 64    /* and its most */
#define KILN_OUTPAINT_FEATHERING 40 /* ImagePadForOutpaint's feathering default */
#define KILN_OUTPAINT_MAX 8192      /* ComfyUI's MAX_RESOLUTION, the most padding per side */

/* A picture to repaint and its mask as ComfyUI's IMAGE and MASK hold them:
 * floats in [0, 1], 1 in the mask repaints. */
typedef struct kiln_inpaint_source {
    float *pixels; /* (3, height, width) */
    int width, height;
    float *mask; /* (mask_h, mask_w) */
    int mask_w, mask_h;
    int grow; /* VAEEncodeForInpaint's grow_mask_by (0 to KILN_INPAINT_GROW_MAX) */
} kiln_inpaint_source;

/* ImagePadForOutpaint's inputs: pixels added on each side, and how far into
 * the picture the mask fades out from each padded side. */
typedef struct kiln_outpaint {
    int left, top, right, bottom;
    int feathering;
} kiln_outpaint;

typedef struct kiln_inpaint {
    float *latent;     /* (1,C,h,w) the image's unscaled VAE latent */
    float *concat_latent; /* FLUX.1 Fill's: (C,h,w) the latent of the picture with its masked pixels grey; NULL:
                             none */
    int h, w;          /* the latent's size */
    float *noise_mask; /* (mask_h, mask_w) in [0,1]: 1 repaints */
    int mask_h, mask_w;
    int width, height; /* the image's size after VAEEncode's crop */
} kiln_inpaint;

/* The picture as LoadImage reads it and a MASK's weights (1 repaints),
 * grown by grow pixels where VAEEncodeForInpaint grows it. */
kiln_status kiln_inpaint_source_make(const kiln_image *img, const kiln_mask *mask, int grow, kiln_inpaint_source *out);

/* ImagePadForOutpaint: the picture on a grey (0.5) canvas grown by the pads,
 * the mask 1 over the pads and, inside the picture, v * v with v = (F - d) /
 * F where the distance d to the nearest padded side is below the feathering F
 * (no fade when 2F is not below the picture's width and height). */
kiln_status kiln_outpaint_source(const kiln_image *img, const kiln_outpaint *pad, kiln_inpaint_source *out);
void kiln_inpaint_source_free(kiln_inpaint_source *src);

/* VAEEncodeForInpaint, InpaintModelConditioning or VAEEncode +
 * SetLatentNoiseMask of `src`, by the model; a mask of another size than
 * the picture is stretched to it where the encode uses it. */
kiln_status kiln_inpaint_encode(const kiln_model *m, const kiln_inpaint_source *src, kiln_inpaint *out);
void kiln_inpaint_free(kiln_inpaint *in);

/* The noise mask stretched to (h, w) as the sampler does: torch's bilinear
 * interpolation without corner alignment. */
void kiln_inpaint_mask_resize(const kiln_inpaint *in, int h, int w, float *out);

#endif
