/* Upscale models as ComfyUI's UpscaleModelLoader and ImageUpscaleWithModel
 * run them: SRVGGNetCompact's (compact.h, any scale), SPAN's (span.h, any
 * scale), and ESRGAN's
 * (RRDBNet, x4): a 3x3 conv to F features, B residual-in-
 * residual dense blocks (each three dense blocks of five 3x3 convs, growth
 * G, LeakyReLU 0.2 between, the dense outputs scaled by 0.2 onto their
 * input), a trunk conv added to the first features, two nearest 2x
 * upsamples each with a conv and LeakyReLU, then two convs to RGB. F, G and
 * B are read off the file.
 *
 * Both key layouts of such files are read: BasicSR's (`conv_first`,
 * `body.N.rdbK.convJ`, `conv_body`, `conv_up1/2`, `conv_hr`, `conv_last`)
 * and the original ESRGAN's (`model.0`, `model.1.sub.N.RDBK.convJ.0`,
 * `model.1.sub.B`, `model.3/6/8/10`), from .safetensors files or
 * torch.save's .pth (its state dict, under params_ema, params or
 * state_dict where it is wrapped; read by torch_file.h). */
#ifndef KILN_MODELS_ESRGAN_H
#define KILN_MODELS_ESRGAN_H

#include "nn.h"
#include "weights.h"

#define KILN_UPSCALE_TILE 512   /* ImageUpscaleWithModel's tile ... */
#define KILN_UPSCALE_OVERLAP 32 /* ... and overlap, in input pixels */

typedef struct kiln_upscaler kiln_upscaler;

kiln_status kiln_upscaler_open(const char *path, kiln_backend *be, kiln_upscaler **out);
void kiln_upscaler_free(kiln_upscaler *u);
int kiln_upscaler_scale(const kiln_upscaler *u);
/* "RRDBNet x4, 64 features, growth 32, 23 blocks", for logs and --info */
void kiln_upscaler_describe(const kiln_upscaler *u, char *buf, size_t size);

// x (1,3,h,w) in [0,1] -> *y (1,3,scale h,scale w), not clamped
kiln_status kiln_upscaler_forward(kiln_graph *g, const kiln_upscaler *u, const tensor *x, tensor **y);

/* ImageUpscaleWithModel on one picture (3,H,W) in [0,1]: over tiles of
 * `tile` pixels overlapping by `overlap` (kiln_tiled_scale), each tile's
 * output clamped to [0,1] (as spandrel's model call does, which ComfyUI
 * makes per tile); then clamped to [0,1]. *out is (3, scale H, scale W),
 * malloc'd. */
kiln_status kiln_upscale_image(kiln_upscaler *u, const float *pixels, int H, int W, int tile, int overlap, float **out);

/* ImageUpscaleWithModel as ComfyUI's node runs it (its tiles and overlap) on
 * a (3,H,W) picture in [0,1], into an 8-bit image; the result's sides are
 * bounded as a loaded image's. */
kiln_status kiln_upscale_to_image(kiln_upscaler *u, const float *pixels, int H, int W, kiln_image *out);

#endif
