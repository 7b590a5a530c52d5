/* Inpainting inputs as ComfyUI makes them from an image and a mask.
 *
 * With an inpainting UNet (9 input channels) this is VAEEncodeForInpaint:
 * the masked pixels are set to grey before encoding and the mask is grown
 * by 6 pixels and rounded. With any other UNet it is VAEEncode followed by
 * SetLatentNoiseMask: the image encoded as it is, the mask kept as given.
 * The sampler then keeps the unmasked part (kiln_inpaint_mask in denoiser.h),
 * stretching the mask over the latent bilinearly. */
#ifndef KILN_INPAINT_H
#define KILN_INPAINT_H

#include "image.h"
#include "model.h"

#define KILN_INPAINT_GROW 6 /* VAEEncodeForInpaint's grow_mask_by default */

typedef struct kiln_inpaint {
    float *latent;     /* (1,C,h,w) the image's unscaled VAE latent */
    int h, w;          /* the latent's size */
    float *noise_mask; /* (mask_h, mask_w) in [0,1]: 1 repaints */
    int mask_h, mask_w;
    int width, height; /* the image's size after VAEEncode's crop */
} kiln_inpaint;

/* The mask is the red channel of `mask` (white repaints), as LoadImageMask
 * reads it with channel "red"; it is stretched to the image's size if it has
 * another. */
kiln_status kiln_inpaint_encode(const kiln_model *m, const kiln_image *img, const kiln_image *mask,
                                kiln_inpaint *out);
void kiln_inpaint_free(kiln_inpaint *in);

/* The noise mask stretched to (h, w) as the sampler does: torch's bilinear
 * interpolation without corner alignment. */
void kiln_inpaint_mask_resize(const kiln_inpaint *in, int h, int w, float *out);

#endif
