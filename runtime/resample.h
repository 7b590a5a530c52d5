/* Resizing planes of floats as torch.nn.functional.interpolate does without
 * align_corners or antialiasing, the way ComfyUI's common_upscale calls it
 * for latents and masks, and LatentUpscaleBy on top of it; and with
 * antialiasing, as ComfyUI fits pictures to CLIP vision. */
#ifndef KILN_RESAMPLE_H
#define KILN_RESAMPLE_H

#include <stdbool.h>

#include "status.h"

typedef enum kiln_resample_method {
    KILN_RESAMPLE_NEAREST_EXACT, /* the source pixel under each target pixel's centre */
    KILN_RESAMPLE_BILINEAR,      /* two neighbours per axis */
    KILN_RESAMPLE_BICUBIC,       /* four neighbours per axis, Keys' kernel with a = -0.75, edges clamped */
    KILN_RESAMPLE_NEAREST,       /* torch's legacy "nearest", the source pixel at each target's corner: what a
                                    UNet's upsampler does to a size other than twice (Deep Shrink's skips) */
    KILN_RESAMPLE_AREA,          /* the mean of the sources each target covers (torch's adaptive average pooling) */
    KILN_RESAMPLE_BISLERP,       /* ComfyUI's bislerp: each pixel's vector of channels slerped between the two
                                    bilinear neighbours, on the width then the height (kiln_resample_images) */
} kiln_resample_method;

/* ComfyUI's name ("nearest-exact", "bilinear", "bicubic", "area",
 * "bislerp"); false for others ("nearest" too: no node of ComfyUI's offers
 * it). */
bool kiln_resample_from_name(const char *name, kiln_resample_method *out);
const char *kiln_resample_name(kiln_resample_method m);
/* kiln_resample_from_name for a method that resizes each plane alone (all
 * of ComfyUI's but bislerp): what a picture and the UNet's resize op take. */
bool kiln_resample_plane_method_from_name(const char *name, kiln_resample_method *out);

/* torch's nearest source index of target index `dst` (out targets over in
 * sources): floor(dst * in / out), the scale in float32 (dst / 2 at twice). */
int kiln_nearest_index(int dst, int in, int out);
/* torch's adaptive pooling window of target `dst` (out targets over in
 * sources): sources [floor(dst in / out), ceil((dst + 1) in / out)). */
void kiln_area_window(int dst, int in, int out, int *first, int *end);
/* torch's nearest-exact source index of target index `dst` (out targets
 * over in sources): floor((dst + 0.5) * in / out), the scale in float32. */
int kiln_nearest_exact_index(int dst, int in, int out);

/* `planes` planes of (sh, sw) to (dh, dw), float32 arithmetic as torch's
 * CPU kernels; every method but bislerp, which mixes a pixel's channels
 * (its planes come out NaN here: kiln_resample_images). */
void kiln_resample(const float *src, int planes, int sh, int sw, float *dst, int dh, int dw, kiln_resample_method m);
/* `images` of `channels` planes of (sh, sw) to (dh, dw), any method. Errors:
 * KILN_ERR_OUT_OF_MEMORY (bislerp's scratch). */
kiln_status kiln_resample_images(const float *src, int images, int channels, int sh, int sw, float *dst, int dh, int dw,
                                 kiln_resample_method m);
/* ComfyUI's slerp of two pixels' vectors of c channels `stride` apart at
 * ratio r, into c values `out_stride` apart: along the great circle
 * between their directions (a direction of zero length counting as none),
 * the length between their lengths; vectors nearly alike give the first,
 * nearly opposite ones the straight line between them. float32 as torch. */
void kiln_slerp(const float *a, const float *b, size_t stride, int c, float r, float *out, size_t out_stride);
/* Bislerp's taps along one axis of `in` pixels resized to `out` (ComfyUI's
 * generate_bilinear_data): target o slerps source *first to *second at
 * *ratio, from the bilinear (align_corners false) resizes of the ramps
 * 0 .. in-1 and 1 .. in-1, in-1 in float32 as torch computes them. */
void kiln_bislerp_tap(int in, int out, int o, int *first, int *second, float *ratio);
/* ComfyUI's bislerp (comfy/utils.py) of `images` of `channels` planes. */
kiln_status kiln_bislerp(const float *src, int images, int channels, int sh, int sw, float *dst, int dh, int dw);

/* torch's interpolate(mode="bicubic", antialias=True), as ComfyUI's
 * clip_preprocess resizes pictures: on each axis (columns first) every
 * target takes the sources within twice the scale of its centre (two
 * sources each side when enlarging), weighted by Keys' kernel with a = -0.5
 * stretched by the scale and normalised to sum 1; float32 arithmetic. */
kiln_status kiln_resample_antialias_bicubic(const float *src, int planes, int sh, int sw, float *dst, int dh, int dw);

/* LatentUpscaleBy: the latent's (h, w) times `scale`, each rounded half to
 * even (Python's round), resized with `m`; *out is malloc'd. */
kiln_status kiln_resample_by(const float *latent, int images, int channels, int h, int w, double scale,
                             kiln_resample_method m, float **out, int *out_h, int *out_w);

#endif
