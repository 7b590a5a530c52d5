/* Images: 8-bit RGB pixels in memory, PNG and JPEG files on disk, and
 * ComfyUI's rules for turning the VAE's float tensors into pixels and back.
 *
 * Loading follows ComfyUI's LoadImage node (Pillow underneath): the EXIF
 * orientation is applied, then the image becomes plain RGB — palette
 * expanded, gray replicated, alpha dropped (not composited). Saving follows
 * SaveImage: an 8-bit RGB PNG with text chunks, zlib level 4 (or a JPEG). */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

/* Larger sides are refused before any pixel memory is allocated (a 33-byte
 * PNG header can claim 2^31 x 2^31 pixels). 16384 is far above what any
 * diffusion model outputs and caps one image at 768 MiB. */
#define KILN_IMAGE_MAX_SIDE 16384

/* kiln_image, kiln_png_text, kiln_image_load, kiln_image_save and
 * kiln_image_free are public: include/kiln.h. */

/* Allocates a zeroed width x height RGB image. */
kiln_status kiln_image_alloc(kiln_image *img, int width, int height);

/* The value of a PNG's text chunk `key` (ComfyUI's "prompt", A1111's
 * "parameters"), *value malloc'd; KILN_ERR_FORMAT, naming the file, for a
 * file that is no PNG or has no such text. */
kiln_status kiln_png_read_text(const char *path, const char *key, char **value);

/* kiln_image_load for a file already in memory; `label` names it in errors. */
kiln_status kiln_image_decode(const void *data, size_t size, const char *label, kiln_image *out);
/* kiln_image_load, and with alpha the file's alpha channel as a grey
 * picture (a PNG's, or what its tRNS chunk makes transparent, as Pillow's
 * convert("RGBA") reads it); *alpha is zeroed for a file without one.
 * *color_key (may be NULL): whether it came of a grey or RGB PNG's tRNS
 * colour, which Pillow keeps as no band of the image. */
kiln_status kiln_image_load_alpha(const char *path, kiln_image *out, kiln_image *alpha, bool *color_key);

/* The file format a name asks for, by its extension (any case): .png, or
 * .jpg / .jpeg; anything else is KILN_IMAGE_UNKNOWN. */
typedef enum kiln_image_format { KILN_IMAGE_UNKNOWN, KILN_IMAGE_PNG, KILN_IMAGE_JPEG } kiln_image_format;
kiln_image_format kiln_image_format_of(const char *path);
/* Where a file name's extension starts: its last '.' after the last '/', or
 * the end of the name where it has none. */
const char *kiln_image_extension(const char *path);

/* JPEG quality when saving; what sd.cpp's and A1111's users pick for keeps. */
#define KILN_JPEG_QUALITY 95

/* ComfyUI's VAEDecode: a decoder output in [-1, 1] -> [0, 1], in float32 as
 * torch.clamp((x + 1) / 2, 0, 1) computes it (NaN stays NaN). */
static inline float kiln_image_unit_from_decoded(float x)
{
    float v = (x + 1.0f) / 2.0f;
    if (v < 0.0f) return 0.0f;
    if (v > 1.0f) return 1.0f;
    return v;
}

/* ComfyUI's SaveImage: np.clip(255. * v, 0, 255).astype(np.uint8), which
 * truncates (0.99999 -> 254). NaN gives 0, as numpy's cast does on x86. */
static inline uint8_t kiln_image_u8_from_unit(float v)
{
    float s = 255.0f * v;
    if (!(s > 0.0f)) return 0;
    if (s >= 255.0f) return 255;
    return (uint8_t)s;
}

/* One image of a VAE decoder output, x (3, H, W) in [-1, 1], to pixels by
 * the two rules above. For image n of a batch pass x + n * 3 * H * W. */
kiln_status kiln_image_from_decoded(const float *x, int height, int width, kiln_image *out);
/* The same from ComfyUI's IMAGE, x (3, H, W) in [0, 1] (an upscale model's
 * output): SaveImage's rule alone. */
kiln_status kiln_image_from_unit(const float *x, int height, int width, kiln_image *out);

/* Pixels to ComfyUI's IMAGE, x (3, H, W) in [0, 1]: u8 / 255 in float32, as
 * LoadImage computes it. */
void kiln_image_to_unit(const kiln_image *img, float *x);

/* Pixels to the VAE encoder's input x (3, H, W) in [-1, 1], as LoadImage
 * and the VAE's process_input (* 2 - 1) compute it. */
void kiln_image_to_encoder_input(const kiln_image *img, float *x);

/* common_upscale's crop "center": the largest centred part of a w x h
 * picture with the aspect ratio of width x height (Python's round, half to
 * even, for the margin) at (x0, y0), cw x ch. */
kiln_status kiln_image_center_box(int w, int h, int width, int height, int *x0, int *y0, int *cw, int *ch);

/* ComfyUI's common_upscale with "nearest-exact" and crop "center", as it
 * fits a ControlNet hint to the latent: the largest centred part of img with
 * the target's aspect ratio (Python's round, half to even, for the margin),
 * then each target pixel takes the source pixel under its centre. *out is a
 * new image. */
kiln_status kiln_image_resize_center(const kiln_image *img, int width, int height, kiln_image *out);

/* Pillow's LANCZOS resize (comfy.utils.lanczos) of the cw x ch part of img
 * at (x0, y0) to width x height: *out is a new image. */
kiln_status kiln_image_resize_lanczos(const kiln_image *img, int x0, int y0, int cw, int ch, int width, int height,
                                      kiln_image *out);
/* ComfyUI's common_upscale with "lanczos" and crop "center": the largest
 * centred part with the target's aspect ratio (as kiln_image_resize_center
 * cuts it), then kiln_image_resize_lanczos. */
kiln_status kiln_image_resize_center_lanczos(const kiln_image *img, int width, int height, kiln_image *out);

/* ComfyUI's VAEEncode crop: each side is cut down to a multiple of
 * `multiple` (the VAE's downscale factor: 8 for SD, 2 for the tiny test VAE),
 * dropping (side % multiple) / 2 rows or columns at the start and the rest at
 * the end. *out is a new image; out may equal img, which is then replaced.
 * A side shorter than `multiple` is KILN_ERR_INVALID_ARG. */
kiln_status kiln_image_crop_to_multiple(const kiln_image *img, int multiple, kiln_image *out);

/* ImageSharpen's filter (ComfyUI's, as LatentOperationSharpen uses it too):
 * each of `channels` planes (height, width) convolved over its mirrored
 * edges with the Gaussian of `radius` (1 to 31, below both sides) and sigma
 * made a sharpening kernel by alpha; y is not x. */
void kiln_sharpen_planes(const float *x, int channels, int height, int width, int radius, double sigma, double alpha,
                         float *y);

#endif
