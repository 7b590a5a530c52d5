/* The op test suite: a table of cases, each run on a backend and compared with
 * the float64 loops of op_ref64.c. See op_suite.h for what a case checks. */
#include "op_suite.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "op_ref64.h"
#include "quant_blocks.h"
#include "resample.h"
#include "status.h"

typedef union op_params {
#define KILN_OP(name, nsrc, doc) kiln_##name##_params name;
#include "ops.def"
#undef KILN_OP
} op_params;

typedef struct op_case {
    kiln_op_id op;
    op_params p;
    float amp, shift;  /* activations uniform in [shift - amp, shift + amp]; amp 0 means 1 */
    double tol_floor;  /* looser bound for cases ill-conditioned in float32, 0 = none */
    bool no_optional;  /* leave the op's optional last source out (NULL): attention's bias, adaLN's table */
    /* slerp_resize: along the axis, every fourth pixel's channels all zero,
     * the pixel two past it a copy of its predecessor and the next one that
     * copy negated (lengths of zero, vectors alike and opposite) */
    bool special_pixels;
} op_case;

#define MATMUL(m, n, k, bias) {KILN_OP_matmul, .p.matmul = {m, n, k, bias}}
#define CONV(n, c, h, w, o, k, s, pad)                                                                  \
    {KILN_OP_conv2d, .p.conv2d = {n, c, h, w, o, k, k, s, pad, ((h) + 2 * (pad) - (k)) / (s) + 1,         \
                                  ((w) + 2 * (pad) - (k)) / (s) + 1}}
#define GROUP_NORM(n, c, hw, g, eps, silu) {KILN_OP_group_norm, .p.group_norm = {n, c, hw, g, eps, silu}, 1.0f, 0.5f}
#define LAYER_NORM(m, d) {KILN_OP_layer_norm, .p.layer_norm = {m, d, 1e-5f}, 1.0f, 3.0f}
#define ATTENTION(b, h, tq, tk, d, causal)                                                              \
    {KILN_OP_attention, .p.attention = {b, h, tq, tk, d, 0.0f, causal}, 3.0f, .no_optional = true}
/* with a bias (H,Tq,Tk) in [-3, 3]; scale 0 means 1/sqrt(D) */
#define ATTENTION_BIASED(b, h, tq, tk, d, scale, amp)                                                   \
    {KILN_OP_attention, .p.attention = {b, h, tq, tk, d, scale, 0}, amp}
#define RMS_NORM(m, d) {KILN_OP_rms_norm, .p.rms_norm = {m, d, 1e-6f}, 1.0f, 0.5f}
/* x in [-1, 3]: a mean for the norm to take away */
#define ADA_LAYER_NORM(b, t, c, k, shift, scale, ...)                                                   \
    {KILN_OP_ada_layer_norm, .p.ada_layer_norm = {b, t, c, k, shift, scale, 1e-6f}, 2.0f, 1.0f, __VA_ARGS__}
/* x in [-3, 3]; freqs uniform in [-1, 1], not unit pairs: the op multiplies
 * by whatever it is given, and unequal cos and sin magnitudes show a swap */
#define ROPE(b, t, h, d) {KILN_OP_rope, .p.rope = {b, t, h, d}, 3.0f}
#define GATED_ADD(b, t, c, k, gate, ...) {KILN_OP_gated_add, .p.gated_add = {b, t, c, k, gate}, 2.0f, __VA_ARGS__}
#define RESIZE(n, c, h, w, oh, ow, method) {KILN_OP_resize, .p.resize = {n, c, h, w, oh, ow, KILN_RESAMPLE_##method}}
/* x in [-4, 4]: half of it below zero, where the slope applies */
#define PRELU(n, c, hw) {KILN_OP_prelu, .p.prelu = {n, c, hw}, 4.0f}
#define PIXEL_SHUFFLE(n, c, h, w, r) {KILN_OP_pixel_shuffle, .p.pixel_shuffle = {n, c, h, w, r}}
#define AVG_POOL2X2(n, c, h, w, ph, pw) {KILN_OP_avg_pool2x2, .p.avg_pool2x2 = {n, c, h, w, ph, pw}}
/* axis 0 resizes the width W to out, axis 1 the height H; special: op_case's special_pixels */
#define SLERP_RESIZE(n, c, h, w, out, axis, special)                                                    \
    {KILN_OP_slerp_resize, .p.slerp_resize = {n, c, h, w, out, axis}, .special_pixels = special}
/* x in [-amp, amp] through kiln_activation_kind KILN_ACTIVATION_<kind> */
#define ACTIVATION(kind, n, amp) {KILN_OP_activation, .p.activation = {n, KILN_ACTIVATION_##kind}, amp}

/* Shapes from SD 1.x/2.x/XL (UNet levels of 320/640/1280 channels, head dims
 * 40/80/160 and 64/128, CLIP's 77 tokens, the VAE's 128/512 channels and its
 * single 512-wide attention head), cut down in batch or spatial size so the
 * float64 reference stays affordable, plus small odd shapes for the edges. */
static const op_case op_cases[] = {
    MATMUL(1, 1280, 320, 1),    /* time_embed.0 */
    MATMUL(2, 1280, 1280, 1),   /* time_embed.2 */
    MATMUL(256, 1280, 320, 1),
    MATMUL(256, 320, 1280, 1),
    MATMUL(154, 320, 768, 0),   /* attn2.to_k over CLIP-L context */
    MATMUL(77, 640, 1024, 0),   /* SD2's OpenCLIP context */
    MATMUL(32, 5120, 640, 1),   /* GEGLU proj at 640 */
    MATMUL(19, 3072, 768, 1),   /* CLIP-L MLP */
    MATMUL(600, 4, 320, 1),     /* narrow output over many tokens */
    MATMUL(7, 5, 13, 1),
    MATMUL(33, 17, 65, 0),

    CONV(2, 4, 24, 20, 320, 3, 1, 1),   /* conv_in */
    CONV(2, 320, 9, 11, 320, 3, 1, 1),
    CONV(1, 320, 17, 15, 320, 3, 2, 1), /* downsample, odd size */
    CONV(1, 640, 8, 8, 640, 3, 2, 1),
    CONV(1, 640, 7, 5, 640, 3, 1, 1),
    CONV(1, 1280, 3, 2, 1280, 3, 1, 1),
    CONV(2, 1280, 5, 3, 1280, 1, 1, 0), /* 1x1 */
    CONV(2, 960, 6, 5, 640, 1, 1, 0),   /* skip connection after concat */
    CONV(1, 320, 9, 9, 4, 3, 1, 1),     /* conv_out */
    CONV(1, 3, 19, 21, 128, 3, 1, 1),   /* VAE encoder conv_in */
    CONV(1, 128, 33, 31, 128, 3, 1, 1),
    CONV(1, 512, 9, 7, 512, 3, 1, 1),
    CONV(1, 128, 17, 19, 128, 3, 2, 0), /* VAE encoder downsample after pad2d */
    CONV(1, 4, 33, 31, 4, 1, 1, 0),     /* quant_conv */
    CONV(2, 16, 1, 1, 8, 3, 1, 1),      /* all taps but the centre in padding */
    CONV(1, 5, 6, 7, 3, 2, 2, 1),       /* even kernel */

    GROUP_NORM(2, 320, 17 * 15, 32, 1e-5f, 1),
    GROUP_NORM(2, 640, 9 * 7, 32, 1e-5f, 0),
    GROUP_NORM(2, 960, 11 * 9, 32, 1e-5f, 1),
    GROUP_NORM(2, 1280, 5 * 3, 32, 1e-5f, 1),
    GROUP_NORM(1, 128, 33 * 31, 32, 1e-6f, 1), /* VAE */
    GROUP_NORM(1, 512, 64 * 64, 32, 1e-6f, 0), /* VAE mid-block at a 64x64 latent */
    GROUP_NORM(1, 6, 7, 3, 1e-5f, 1),
    GROUP_NORM(2, 64, 40 * 25, 8, 1e-5f, 1), /* groups of 8000: the GPU backends' slices of 4096, the last short */

    LAYER_NORM(512, 320),
    LAYER_NORM(154, 768),
    LAYER_NORM(77, 1280),
    LAYER_NORM(64, 1024),
    LAYER_NORM(5, 7),

    RMS_NORM(120, 4096), /* T5-XXL over its 120 tokens */
    RMS_NORM(7, 64),
    RMS_NORM(3 * 512, 128), /* Flux's q/k norm: a (B,T,H*D) activation viewed as (B*T*H, D) */

    /* PixArt's DiT at 1152 channels: the attention's shift and scale (rows 0
     * and 1 of 6), the MLP's (3 and 4) */
    ADA_LAYER_NORM(2, 1024, 1152, 6, 0, 1, 0),
    ADA_LAYER_NORM(2, 1024, 1152, 6, 3, 4, 0),
    ADA_LAYER_NORM(1, 7, 40, 2, 1, 0, .no_optional = true), /* no table */

    ATTENTION(2, 8, 256, 256, 40, 0),
    ATTENTION(2, 8, 256, 77, 40, 0),    /* cross-attention */
    ATTENTION(1, 8, 320, 320, 80, 0),
    ATTENTION(1, 8, 300, 77, 80, 0),
    ATTENTION(2, 8, 96, 96, 160, 0),
    ATTENTION(2, 8, 64, 77, 160, 0),
    ATTENTION(1, 1, 1024, 1024, 64, 0), /* long sequence */
    ATTENTION(1, 4, 300, 300, 128, 0),
    ATTENTION(1, 1, 256, 256, 512, 0),  /* the VAE's single head */
    ATTENTION(2, 12, 77, 77, 64, 1),    /* CLIP */
    ATTENTION(1, 2, 200, 200, 64, 1),
    ATTENTION(1, 2, 150, 150, 100, 1), /* Vulkan's f32 shader splits this head dim unevenly over 2 invocations */
    ATTENTION(1, 3, 70, 70, 24, 1),
    ATTENTION(1, 2, 40, 40, 18, 0),     /* head dim not a multiple of 4: Vulkan's tensor-core attention reads floats */
    ATTENTION(1, 2, 33, 5, 8, 0),
    ATTENTION(1, 2, 3, 1, 16, 0),       /* a single key, and fewer queries than a tile */
    ATTENTION(1, 1, 1, 1, 4, 0),
    ATTENTION(2, 16, 256, 256, 72, 0),  /* PixArt: 16 heads of 72 */
    ATTENTION(1, 16, 77, 120, 72, 0),   /* over T5's 120 tokens */
    /* T5-XXL: 64 heads of 64, scale 1, the relative-position bias */
    ATTENTION_BIASED(2, 64, 120, 120, 64, 1.0f, 0.5f),
    ATTENTION_BIASED(2, 4, 7, 7, 16, 1.0f, 0.5f),
    ATTENTION_BIASED(1, 2, 33, 50, 72, 0.0f, 3.0f), /* Tq != Tk: the bias's rows and columns apart */

    /* Flux: 24 heads of 128 (its 512 text + 1024 image tokens cut down), an
     * odd token count, and a small odd shape over two batch elements */
    ROPE(1, 256, 24, 128),
    ROPE(1, 77, 24, 128),
    ROPE(2, 7, 3, 16),
    ROPE(1, 5, 3, 6), /* D % 4 == 2: the GPUs' groups of four span heads and tokens, and end on a lone pair */

    {KILN_OP_softmax, .p.softmax = {616, 77}, 8.0f},
    {KILN_OP_softmax, .p.softmax = {64, 1024}, 8.0f},
    {KILN_OP_softmax, .p.softmax = {3, 5}, 8.0f},

    {KILN_OP_silu, .p.silu = {2 * 320 * 17 * 15}, 6.0f},
    {KILN_OP_silu, .p.silu = {1001}, 100.0f}, /* saturated tails */
    /* SPAN's attention over its 48 features at a 64x64 tile; tails where
     * exp(-x) overflows float32 (x below about -88.7); fewer than one AVX2
     * vector */
    {KILN_OP_sigmoid, .p.sigmoid = {48 * 64 * 64}, 6.0f},
    {KILN_OP_sigmoid, .p.sigmoid = {1001}, 100.0f},
    {KILN_OP_sigmoid, .p.sigmoid = {7}, 3.0f},
    /* A1111 hypernetworks' activations, each over a UNet level's features;
     * over [-100, 100], where exp(x) overflows float32 above about 88.7
     * (mish's softplus is x itself past 20) and ELU and mish settle at -1 and
     * 0 far below zero; and a count that ends the GPUs' groups of four short */
    ACTIVATION(TANH, 2 * 320 * 17 * 15, 6.0f),
    ACTIVATION(TANH, 1001, 100.0f),
    ACTIVATION(TANH, 7, 3.0f),
    ACTIVATION(ELU, 2 * 320 * 17 * 15, 6.0f),
    ACTIVATION(ELU, 1001, 100.0f),
    ACTIVATION(ELU, 7, 3.0f),
    ACTIVATION(HARDSWISH, 2 * 320 * 17 * 15, 6.0f),
    ACTIVATION(HARDSWISH, 1001, 100.0f),
    ACTIVATION(HARDSWISH, 7, 3.0f),
    ACTIVATION(SOFTSIGN, 2 * 320 * 17 * 15, 6.0f),
    ACTIVATION(SOFTSIGN, 1001, 100.0f),
    ACTIVATION(SOFTSIGN, 7, 3.0f),
    ACTIVATION(MISH, 2 * 320 * 17 * 15, 6.0f),
    ACTIVATION(MISH, 1001, 100.0f),
    ACTIVATION(MISH, 7, 3.0f),
    {KILN_OP_gelu, .p.gelu = {2 * 320 * 17 * 15}, 6.0f},
    {KILN_OP_gelu, .p.gelu = {1001}, 100.0f},
    {KILN_OP_quick_gelu, .p.quick_gelu = {77 * 3072}, 6.0f},
    {KILN_OP_quick_gelu, .p.quick_gelu = {1001}, 100.0f},
    {KILN_OP_gelu_tanh, .p.gelu_tanh = {120 * 10240}, 6.0f}, /* T5-XXL's feed-forward */
    {KILN_OP_gelu_tanh, .p.gelu_tanh = {1001}, 100.0f},
    {KILN_OP_gelu_tanh, .p.gelu_tanh = {7}, 3.0f},
    {KILN_OP_geglu, .p.geglu = {256, 1280}, 4.0f},
    {KILN_OP_geglu, .p.geglu = {7, 5}, 4.0f},

    {KILN_OP_add, .p.add = {2 * 320 * 17 * 15}},
    {KILN_OP_add, .p.add = {7}},
    GATED_ADD(2, 1024, 1152, 6, 2, 0), /* PixArt's attention gate */
    GATED_ADD(2, 1024, 1152, 6, 5, 0), /* and the MLP's */
    GATED_ADD(1, 7, 40, 2, 1, .no_optional = true),
    {KILN_OP_mul, .p.mul = {2 * 320 * 17 * 15}},
    {KILN_OP_mul, .p.mul = {7}},
    {KILN_OP_scale, .p.scale = {2 * 4 * 33 * 31, 0.18215f}},
    {KILN_OP_scale, .p.scale = {7, -3.0f}},
    {KILN_OP_leaky_relu, .p.leaky_relu = {2 * 64 * 33 * 31, 0.2f}, 4.0f}, /* ESRGAN's features */
    {KILN_OP_leaky_relu, .p.leaky_relu = {7, 0.2f}, 4.0f},
    {KILN_OP_add_channel_bias, .p.add_channel_bias = {2, 320, 17 * 15}},
    {KILN_OP_add_channel_bias, .p.add_channel_bias = {1, 7, 5}},
    {KILN_OP_concat_channels, .p.concat_channels = {2, 640, 320, 9 * 7}},
    {KILN_OP_concat_channels, .p.concat_channels = {1, 3, 5, 7}},
    {KILN_OP_concat_channels, .p.concat_channels = {2, 64, 32, 12}}, /* HW a multiple of 4: GPU vector paths */
    {KILN_OP_upsample_nearest2x, .p.upsample_nearest2x = {2, 1280, 4, 3, 8, 6}},
    {KILN_OP_upsample_nearest2x, .p.upsample_nearest2x = {1, 3, 5, 7, 10, 14}},
    {KILN_OP_upsample_nearest2x, .p.upsample_nearest2x = {1, 16, 5, 6, 10, 12}}, /* OW % 4 == 0: GPU vector paths */
    /* a UNet level of odd size: 2H - 1 rows, 2W - 1 columns, each alone and together */
    {KILN_OP_upsample_nearest2x, .p.upsample_nearest2x = {2, 320, 5, 7, 9, 13}},
    {KILN_OP_upsample_nearest2x, .p.upsample_nearest2x = {1, 640, 9, 6, 17, 12}},
    {KILN_OP_upsample_nearest2x, .p.upsample_nearest2x = {1, 8, 4, 5, 8, 9}},
    /* sin/cos of t * freq with t up to 1000: float32 rounding of the
     * argument alone moves the result by ~1000 * 2^-24 (~6e-5) */
    {KILN_OP_timestep_embedding, .p.timestep_embedding = {16, 320, 1, 0.0f, 10000.0f}, 500.0f, 500.0f, 1e-4},
    {KILN_OP_timestep_embedding, .p.timestep_embedding = {3, 6, 0, 1.0f, 10000.0f}, 500.0f, 500.0f, 1e-4},
    {KILN_OP_timestep_embedding, .p.timestep_embedding = {4, 256, 1, 0.0f, 10000.0f}, 1.0f, 1.0f},
    {KILN_OP_transpose, .p.transpose = {2, 320, 17 * 15}},
    {KILN_OP_transpose, .p.transpose = {2, 100, 68}}, /* sides multiples of 4 (GPU vector paths), tiles cut short */
    {KILN_OP_transpose, .p.transpose = {1, 5, 7}},
    {KILN_OP_embedding, .p.embedding = {77, 1000, 768}},
    {KILN_OP_embedding, .p.embedding = {5, 7, 3}},
    {KILN_OP_pad2d, .p.pad2d = {1, 128, 17, 19, 0, 1, 0, 1}},
    {KILN_OP_pad2d, .p.pad2d = {2, 3, 4, 5, 1, 2, 3, 0}},
    /* FreeU on SD 1.5's decoder at 512x512 (1280 channels at 8x8 and 16x16,
     * 640 at 32x32, cut down), and odd sizes: an odd C, a plane larger than
     * a workgroup's share, one pixel (FreeU, not V2: its rescaling is 0/0) */
    {KILN_OP_freeu_backbone, .p.freeu_backbone = {2, 1280, 8 * 8, 1.1f, 0}},
    {KILN_OP_freeu_backbone, .p.freeu_backbone = {2, 1280, 16 * 16, 1.3f, 1}},
    {KILN_OP_freeu_backbone, .p.freeu_backbone = {1, 640, 32 * 32, 1.4f, 1}, 1.0f, 0.5f},
    {KILN_OP_freeu_backbone, .p.freeu_backbone = {2, 7, 37 * 29, 1.5f, 1}},
    {KILN_OP_freeu_backbone, .p.freeu_backbone = {1, 3, 1, 0.5f, 0}},
    {KILN_OP_fourier_filter, .p.fourier_filter = {2, 640, 16, 16, 0.9f}},
    {KILN_OP_fourier_filter, .p.fourier_filter = {1, 320, 32, 32, 0.2f}, 1.0f, 0.5f},
    {KILN_OP_fourier_filter, .p.fourier_filter = {1, 64, 64, 48, 0.2f}, 1.0f, 1.0f},
    {KILN_OP_fourier_filter, .p.fourier_filter = {2, 5, 17, 13, 1.7f}, 1.0f, 0.5f},
    {KILN_OP_fourier_filter, .p.fourier_filter = {1, 3, 1, 6, 0.5f}, 1.0f, 0.5f}, /* an axis of 1: frequency 0 alone */
    {KILN_OP_fourier_filter, .p.fourier_filter = {1, 2, 2, 1, 0.3f}, 1.0f, 0.5f},
    {KILN_OP_fourier_filter, .p.fourier_filter = {1, 1, 1, 1, 0.3f}, 1.0f, 0.5f},
    /* Kohya's Deep Shrink on SD 1.5's UNet at 512x512 (bicubic to half size
     * at the first level, back to the skip's size further in, and the UNet's
     * upsamplers' nearest to a skip's size: twice, and not), latents as
     * LatentUpscaleBy resizes them, then odd sizes down and up (whole
     * numbers of source pixels and not), one axis left as it is, an axis of
     * 1, and the nearest modes at scales float32 rounds (10/3: target 1's
     * centre is 5 in float32, under 5 in double; 10/6: target 3's corner) */
    RESIZE(2, 320, 64, 64, 32, 32, BICUBIC),
    RESIZE(2, 640, 16, 16, 32, 32, BICUBIC),
    RESIZE(1, 1280, 8, 8, 16, 16, BILINEAR),
    RESIZE(2, 640, 16, 16, 32, 32, NEAREST),
    RESIZE(2, 1280, 8, 8, 32, 32, NEAREST),
    RESIZE(1, 320, 13, 9, 50, 37, NEAREST),
    RESIZE(1, 4, 64, 64, 96, 96, NEAREST_EXACT),
    RESIZE(1, 4, 64, 64, 96, 96, BICUBIC),
    RESIZE(1, 16, 12, 16, 4, 5, BILINEAR),
    RESIZE(2, 4, 12, 16, 6, 8, NEAREST_EXACT),
    RESIZE(1, 3, 7, 5, 4, 3, NEAREST_EXACT),
    RESIZE(1, 3, 7, 5, 4, 3, BILINEAR),
    RESIZE(1, 3, 7, 5, 4, 3, BICUBIC),
    RESIZE(1, 3, 7, 5, 4, 3, NEAREST),
    RESIZE(1, 2, 3, 4, 8, 6, NEAREST_EXACT),
    RESIZE(1, 2, 3, 4, 8, 6, BILINEAR),
    RESIZE(1, 2, 3, 4, 8, 6, BICUBIC),
    RESIZE(1, 2, 3, 4, 8, 6, NEAREST),
    RESIZE(1, 4, 9, 12, 9, 5, BICUBIC),
    RESIZE(2, 3, 10, 7, 4, 7, BILINEAR),
    RESIZE(1, 5, 6, 11, 6, 17, NEAREST_EXACT),
    RESIZE(1, 4, 6, 11, 6, 22, NEAREST),
    RESIZE(1, 3, 1, 6, 4, 2, BICUBIC),
    RESIZE(1, 2, 10, 10, 3, 3, NEAREST_EXACT),
    RESIZE(1, 2, 10, 10, 6, 6, NEAREST),
    /* area: windows of whole sources (halving), overlapping ones (7 -> 4, 5 -> 3), an axis grown (each target
       one source) and one kept */
    RESIZE(2, 320, 64, 64, 32, 32, AREA),
    RESIZE(1, 3, 7, 5, 4, 3, AREA),
    RESIZE(1, 2, 3, 4, 8, 6, AREA),
    RESIZE(1, 4, 9, 12, 9, 5, AREA),
    /* Deep Shrink's bislerp on SD 1.5's first level at 512x512: the width
     * halved, then the height; enlarging at odd sizes, each axis; a 2x2
     * image to 5 columns (ratios of 0, taps clamped to the last pixel); and
     * pixels of length zero and pairs alike and opposite, slerp's special
     * cases, on each axis */
    SLERP_RESIZE(2, 320, 64, 64, 32, 0, false),
    SLERP_RESIZE(2, 320, 64, 32, 32, 1, false),
    SLERP_RESIZE(1, 640, 17, 15, 33, 0, false),
    SLERP_RESIZE(1, 4, 7, 9, 13, 1, false),
    SLERP_RESIZE(1, 3, 2, 2, 5, 0, false),
    SLERP_RESIZE(2, 4, 3, 5, 11, 0, true),
    SLERP_RESIZE(1, 5, 9, 2, 4, 1, true),
    /* Real-ESRGAN's compact upscaler (SRVGGNetCompact): 64 features at a
     * 128x128 tile, a PReLU after each conv, then the x4 model's pixel
     * shuffle of 3 x 16 channels; the x2 model's of 3 x 4 at an odd size;
     * and small odd shapes: HW % 4 != 0 (the GPUs' groups of four span
     * channels and images), r = 3, r = 1 (a copy) */
    PRELU(1, 64, 128 * 128),
    PRELU(2, 16, 37 * 23),
    PRELU(2, 5, 7),
    PRELU(1, 3, 1),
    PIXEL_SHUFFLE(1, 3, 64, 64, 4),
    PIXEL_SHUFFLE(1, 3, 37, 23, 2),
    PIXEL_SHUFFLE(2, 5, 7, 5, 3),
    PIXEL_SHUFFLE(2, 6, 5, 7, 1),
    /* T2I-Adapters' downsampling (ComfyUI's and TencentARC's Downsample pads
     * each odd side by 1): SD 1.5's 320 features at a 512x512 picture's
     * 64x64, 640 at an odd level; then small shapes: even sides with and
     * without padding, odd ones without (the last row and column left out),
     * one side padded and not the other, both ways, and a single pixel
     * whose window is three quarters padding. OW % 4 != 0: the GPUs' groups
     * of four outputs span rows. */
    AVG_POOL2X2(1, 320, 64, 64, 0, 0),
    AVG_POOL2X2(2, 640, 17, 15, 1, 1),
    AVG_POOL2X2(2, 3, 8, 6, 0, 0),
    AVG_POOL2X2(1, 4, 8, 6, 1, 1),
    AVG_POOL2X2(1, 3, 7, 5, 0, 0),
    AVG_POOL2X2(2, 3, 7, 10, 1, 0),
    AVG_POOL2X2(1, 5, 6, 9, 0, 1),
    AVG_POOL2X2(2, 3, 1, 1, 1, 1),
};

/* ---- operands ---------------------------------------------------------- */

typedef enum operand_kind { OPERAND_ACT, OPERAND_WEIGHT, OPERAND_IDS } operand_kind;

typedef struct operand {
    const char *name;
    operand_kind kind;
    size_t count;
    double lo, hi;  /* uniform range; ids are integers in [lo, hi) */
    void *host;     /* the stored elements (f32, weight dtype or i32) */
    double *wide;   /* the same values in double, what the reference reads */
    size_t offset;  /* bytes into the activation buffer or the weight blob */
} operand;

#define MAX_SRC 4

typedef struct case_run {
    const op_case *c;
    op_params p;
    int nsrc;
    operand src[MAX_SRC], dst;
    char desc[160];
} case_run;

static operand act(const char *name, size_t count, double lo, double hi)
{
    return (operand){.name = name, .kind = OPERAND_ACT, .count = count, .lo = lo, .hi = hi};
}

static operand weight(const char *name, size_t count, double lo, double hi)
{
    return (operand){.name = name, .kind = OPERAND_WEIGHT, .count = count, .lo = lo, .hi = hi};
}

/* Fills r->src, r->dst and r->desc from the case's parameters. */
static void describe(case_run *r)
{
    const op_case *c = r->c;
    op_params *p = &r->p;
    double amp = c->amp > 0 ? c->amp : 1.0, lo = c->shift - amp, hi = c->shift + amp;
    size_t cap = sizeof r->desc;
    r->nsrc = kiln_op_nsrc[c->op];
    switch (c->op) {
    case KILN_OP_matmul: {
        const kiln_matmul_params *q = &p->matmul;
        double ws = 1.0 / sqrt(q->K);
        r->src[0] = act("x", (size_t)q->M * q->K, lo, hi);
        r->src[1] = weight("w", (size_t)q->N * q->K, -ws, ws);
        r->src[2] = weight("bias", (size_t)q->N, -0.5, 0.5);
        if (!q->has_bias) r->nsrc = 2;
        r->dst = act("y", (size_t)q->M * q->N, 0, 0);
        snprintf(r->desc, cap, "x[%d,%d] w[%d,%d]%s", q->M, q->K, q->N, q->K, q->has_bias ? " +bias" : "");
        break;
    }
    case KILN_OP_conv2d: {
        const kiln_conv2d_params *q = &p->conv2d;
        double ws = 1.0 / sqrt((double)q->C * q->KH * q->KW);
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->src[1] = weight("w", (size_t)q->O * q->C * q->KH * q->KW, -ws, ws);
        r->src[2] = weight("bias", (size_t)q->O, -0.5, 0.5);
        r->dst = act("y", (size_t)q->N * q->O * q->OH * q->OW, 0, 0);
        snprintf(r->desc, cap, "%dx%d s%d p%d [%d,%d,%d,%d]->[%d,%d,%d,%d]", q->KH, q->KW, q->stride, q->pad, q->N,
                 q->C, q->H, q->W, q->N, q->O, q->OH, q->OW);
        break;
    }
    case KILN_OP_group_norm: {
        const kiln_group_norm_params *q = &p->group_norm;
        r->src[0] = act("x", (size_t)q->N * q->C * q->HW, lo, hi);
        r->src[1] = weight("gamma", (size_t)q->C, 0.5, 1.5);
        r->src[2] = weight("beta", (size_t)q->C, -0.5, 0.5);
        r->dst = act("y", (size_t)q->N * q->C * q->HW, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d] %d groups eps %g%s", q->N, q->C, q->HW, q->groups, q->eps,
                 q->silu ? " +silu" : "");
        break;
    }
    case KILN_OP_layer_norm: {
        const kiln_layer_norm_params *q = &p->layer_norm;
        r->src[0] = act("x", (size_t)q->M * q->D, lo, hi);
        r->src[1] = weight("gamma", (size_t)q->D, 0.5, 1.5);
        r->src[2] = weight("beta", (size_t)q->D, -0.5, 0.5);
        r->dst = act("y", (size_t)q->M * q->D, 0, 0);
        snprintf(r->desc, cap, "[%d,%d]", q->M, q->D);
        break;
    }
    case KILN_OP_rms_norm: {
        const kiln_rms_norm_params *q = &p->rms_norm;
        r->src[0] = act("x", (size_t)q->M * q->D, lo, hi);
        r->src[1] = weight("gamma", (size_t)q->D, 0.5, 1.5);
        r->dst = act("y", (size_t)q->M * q->D, 0, 0);
        snprintf(r->desc, cap, "[%d,%d]", q->M, q->D);
        break;
    }
    case KILN_OP_ada_layer_norm: {
        const kiln_ada_layer_norm_params *q = &p->ada_layer_norm;
        size_t n = (size_t)q->B * q->T * q->C;
        r->src[0] = act("x", n, lo, hi);
        r->src[1] = act("mod", (size_t)q->B * q->K * q->C, -1.0, 1.0);
        r->src[2] = weight("table", (size_t)q->K * q->C, -0.5, 0.5);
        r->dst = act("y", n, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d] K%d shift %d scale %d%s", q->B, q->T, q->C, q->K, q->shift, q->scale,
                 c->no_optional ? "" : " +table");
        break;
    }
    case KILN_OP_attention: {
        kiln_attention_params *q = &p->attention;
        if (q->scale == 0.0f) q->scale = 1.0f / sqrtf((float)q->D);
        size_t hd = (size_t)q->H * q->D;
        r->src[0] = act("q", (size_t)q->B * q->Tq * hd, lo, hi);
        r->src[1] = act("k", (size_t)q->B * q->Tk * hd, lo, hi);
        r->src[2] = act("v", (size_t)q->B * q->Tk * hd, lo, hi);
        r->src[3] = act("bias", (size_t)q->H * q->Tq * q->Tk, -3.0, 3.0);
        r->dst = act("o", (size_t)q->B * q->Tq * hd, 0, 0);
        snprintf(r->desc, cap, "B%d H%d Tq%d Tk%d D%d%s%s", q->B, q->H, q->Tq, q->Tk, q->D, q->causal ? " causal" : "",
                 c->no_optional ? "" : q->scale == 1.0f ? " +bias s1" : " +bias");
        break;
    }
    case KILN_OP_rope: {
        const kiln_rope_params *q = &p->rope;
        size_t n = (size_t)q->B * q->T * q->H * q->D;
        r->src[0] = act("x", n, lo, hi);
        r->src[1] = act("freqs", (size_t)q->T * q->D, -1.0, 1.0);
        r->dst = act("y", n, 0, 0);
        snprintf(r->desc, cap, "B%d T%d H%d D%d", q->B, q->T, q->H, q->D);
        break;
    }
    case KILN_OP_softmax:
        r->src[0] = act("x", (size_t)p->softmax.M * p->softmax.N, lo, hi);
        r->dst = act("y", r->src[0].count, 0, 0);
        snprintf(r->desc, cap, "[%d,%d]", p->softmax.M, p->softmax.N);
        break;
    case KILN_OP_silu:
    case KILN_OP_sigmoid:
    case KILN_OP_activation:
    case KILN_OP_gelu:
    case KILN_OP_quick_gelu:
    case KILN_OP_gelu_tanh:
    case KILN_OP_scale:
    case KILN_OP_leaky_relu: {
        int n = c->op == KILN_OP_silu ? p->silu.n : c->op == KILN_OP_sigmoid ? p->sigmoid.n
              : c->op == KILN_OP_activation ? p->activation.n : c->op == KILN_OP_gelu ? p->gelu.n
              : c->op == KILN_OP_quick_gelu ? p->quick_gelu.n : c->op == KILN_OP_gelu_tanh ? p->gelu_tanh.n
              : c->op == KILN_OP_scale ? p->scale.n : p->leaky_relu.n;
        r->src[0] = act("x", (size_t)n, lo, hi);
        r->dst = act("y", (size_t)n, 0, 0);
        snprintf(r->desc, cap, "n%d in [%g,%g]", n, lo, hi);
        if (c->op == KILN_OP_scale) snprintf(r->desc, cap, "n%d s %g", n, p->scale.s);
        if (c->op == KILN_OP_leaky_relu) snprintf(r->desc, cap, "n%d slope %g", n, p->leaky_relu.slope);
        if (c->op == KILN_OP_activation) {
            static const char *const kinds[KILN_ACTIVATION_COUNT] = {"tanh", "elu", "hardswish", "softsign", "mish"};
            snprintf(r->desc, cap, "%s n%d in [%g,%g]", kinds[p->activation.kind], n, lo, hi);
        }
        break;
    }
    case KILN_OP_geglu:
        r->src[0] = act("x", (size_t)p->geglu.M * 2 * p->geglu.N, lo, hi);
        r->dst = act("y", (size_t)p->geglu.M * p->geglu.N, 0, 0);
        snprintf(r->desc, cap, "[%d,%d]->[%d,%d]", p->geglu.M, 2 * p->geglu.N, p->geglu.M, p->geglu.N);
        break;
    case KILN_OP_add:
    case KILN_OP_mul: {
        int n = c->op == KILN_OP_add ? p->add.n : p->mul.n;
        r->src[0] = act("a", (size_t)n, lo, hi);
        r->src[1] = act("b", (size_t)n, lo, hi);
        r->dst = act("y", (size_t)n, 0, 0);
        snprintf(r->desc, cap, "n%d", n);
        break;
    }
    case KILN_OP_gated_add: {
        const kiln_gated_add_params *q = &p->gated_add;
        size_t n = (size_t)q->B * q->T * q->C;
        r->src[0] = act("x", n, lo, hi);
        r->src[1] = act("y", n, lo, hi);
        r->src[2] = act("mod", (size_t)q->B * q->K * q->C, -1.0, 1.0);
        r->src[3] = weight("table", (size_t)q->K * q->C, -0.5, 0.5);
        r->dst = act("out", n, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d] K%d gate %d%s", q->B, q->T, q->C, q->K, q->gate,
                 c->no_optional ? "" : " +table");
        break;
    }
    case KILN_OP_add_channel_bias: {
        const kiln_add_channel_bias_params *q = &p->add_channel_bias;
        r->src[0] = act("x", (size_t)q->N * q->C * q->HW, lo, hi);
        r->src[1] = act("b", (size_t)q->N * q->C, lo, hi);
        r->dst = act("y", r->src[0].count, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d]", q->N, q->C, q->HW);
        break;
    }
    case KILN_OP_concat_channels: {
        const kiln_concat_channels_params *q = &p->concat_channels;
        r->src[0] = act("a", (size_t)q->N * q->Ca * q->HW, lo, hi);
        r->src[1] = act("b", (size_t)q->N * q->Cb * q->HW, lo, hi);
        r->dst = act("y", (size_t)q->N * (q->Ca + q->Cb) * q->HW, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d]+[%d,%d,%d]", q->N, q->Ca, q->HW, q->N, q->Cb, q->HW);
        break;
    }
    case KILN_OP_upsample_nearest2x: {
        const kiln_upsample_nearest2x_params *q = &p->upsample_nearest2x;
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->dst = act("y", (size_t)q->N * q->C * q->OH * q->OW, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d]->%dx%d", q->N, q->C, q->H, q->W, q->OH, q->OW);
        break;
    }
    case KILN_OP_timestep_embedding: {
        const kiln_timestep_embedding_params *q = &p->timestep_embedding;
        r->src[0] = act("t", (size_t)q->N, lo, hi);
        r->dst = act("y", (size_t)q->N * q->dim, 0, 0);
        snprintf(r->desc, cap, "N%d dim %d t in [%g,%g]%s shift %g", q->N, q->dim, lo, hi,
                 q->flip_sin_to_cos ? " cos|sin" : " sin|cos", q->freq_shift);
        break;
    }
    case KILN_OP_transpose: {
        const kiln_transpose_params *q = &p->transpose;
        r->src[0] = act("x", (size_t)q->B * q->R * q->C, lo, hi);
        r->dst = act("y", r->src[0].count, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d]", q->B, q->R, q->C);
        break;
    }
    case KILN_OP_embedding: {
        const kiln_embedding_params *q = &p->embedding;
        r->src[0] = (operand){.name = "ids", .kind = OPERAND_IDS, .count = (size_t)q->M, .lo = 0, .hi = q->V};
        r->src[1] = weight("table", (size_t)q->V * q->D, -1.0, 1.0);
        r->dst = act("y", (size_t)q->M * q->D, 0, 0);
        snprintf(r->desc, cap, "ids %d table[%d,%d]", q->M, q->V, q->D);
        break;
    }
    case KILN_OP_pad2d: {
        const kiln_pad2d_params *q = &p->pad2d;
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->dst = act("y", (size_t)q->N * q->C * (q->top + q->H + q->bottom) * (q->left + q->W + q->right), 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d] t%d b%d l%d r%d", q->N, q->C, q->H, q->W, q->top, q->bottom, q->left,
                 q->right);
        break;
    }
    case KILN_OP_freeu_backbone: {
        const kiln_freeu_backbone_params *q = &p->freeu_backbone;
        r->src[0] = act("x", (size_t)q->N * q->C * q->HW, lo, hi);
        r->dst = act("y", r->src[0].count, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d] b %g%s", q->N, q->C, q->HW, q->b, q->v2 ? " v2" : "");
        break;
    }
    case KILN_OP_fourier_filter: {
        const kiln_fourier_filter_params *q = &p->fourier_filter;
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->dst = act("y", r->src[0].count, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d] s %g", q->N, q->C, q->H, q->W, q->s);
        break;
    }
    case KILN_OP_resize: {
        const kiln_resize_params *q = &p->resize;
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->dst = act("y", (size_t)q->N * q->C * q->OH * q->OW, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d]->%dx%d %s", q->N, q->C, q->H, q->W, q->OH, q->OW,
                 kiln_resample_name((kiln_resample_method)q->method));
        break;
    }
    case KILN_OP_slerp_resize: {
        const kiln_slerp_resize_params *q = &p->slerp_resize;
        const bool wide = q->axis == 0;
        const int oh = wide ? q->H : q->out, ow = wide ? q->out : q->W;
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->dst = act("y", (size_t)q->N * q->C * oh * ow, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d]->%dx%d %s%s", q->N, q->C, q->H, q->W, oh, ow,
                 wide ? "width" : "height", c->special_pixels ? " special pixels" : "");
        break;
    }
    case KILN_OP_prelu: {
        const kiln_prelu_params *q = &p->prelu;
        r->src[0] = act("x", (size_t)q->N * q->C * q->HW, lo, hi);
        r->src[1] = weight("slope", (size_t)q->C, -0.25, 0.75);
        r->dst = act("y", r->src[0].count, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d]", q->N, q->C, q->HW);
        break;
    }
    case KILN_OP_pixel_shuffle: {
        const kiln_pixel_shuffle_params *q = &p->pixel_shuffle;
        size_t n = (size_t)q->N * q->C * q->r * q->r * q->H * q->W;
        r->src[0] = act("x", n, lo, hi);
        r->dst = act("y", n, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d] r%d->[%d,%d,%d,%d]", q->N, q->C * q->r * q->r, q->H, q->W, q->r, q->N,
                 q->C, q->H * q->r, q->W * q->r);
        break;
    }
    case KILN_OP_avg_pool2x2: {
        const kiln_avg_pool2x2_params *q = &p->avg_pool2x2;
        int oh = (q->H + 2 * q->pad_h) / 2, ow = (q->W + 2 * q->pad_w) / 2;
        r->src[0] = act("x", (size_t)q->N * q->C * q->H * q->W, lo, hi);
        r->dst = act("y", (size_t)q->N * q->C * oh * ow, 0, 0);
        snprintf(r->desc, cap, "[%d,%d,%d,%d] pad %d,%d->[%d,%d,%d,%d]", q->N, q->C, q->H, q->W, q->pad_h, q->pad_w,
                 q->N, q->C, oh, ow);
        break;
    }
    default:
        r->nsrc = -1; /* an op added to ops.def without a description here */
        snprintf(r->desc, cap, "(the suite cannot build its operands)");
        break;
    }
    if (c->no_optional && r->nsrc > 0) r->nsrc--;
}

/* Runs the float64 reference on the operands' wide values. */
static kiln_status reference(const case_run *r, double *y)
{
    const op_params *p = &r->p;
    /* an absent source (past nsrc) has no values: NULL */
    double *const s0 = r->src[0].wide, *const s1 = r->src[1].wide, *const s2 = r->src[2].wide,
                  *const s3 = r->src[3].wide;
    switch (r->c->op) {
    case KILN_OP_matmul: kiln_ref64_matmul(&p->matmul, s0, s1, p->matmul.has_bias ? s2 : NULL, y); break;
    case KILN_OP_conv2d: kiln_ref64_conv2d(&p->conv2d, s0, s1, s2, y); break;
    case KILN_OP_group_norm: kiln_ref64_group_norm(&p->group_norm, s0, s1, s2, y); break;
    case KILN_OP_layer_norm: kiln_ref64_layer_norm(&p->layer_norm, s0, s1, s2, y); break;
    case KILN_OP_rms_norm: kiln_ref64_rms_norm(&p->rms_norm, s0, s1, y); break;
    case KILN_OP_ada_layer_norm: kiln_ref64_ada_layer_norm(&p->ada_layer_norm, s0, s1, s2, y); break;
    case KILN_OP_attention: {
        double *scores = malloc((size_t)p->attention.Tk * sizeof *scores);
        if (!scores) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory");
        kiln_ref64_attention(&p->attention, s0, s1, s2, s3, y, scores);
        free(scores);
        break;
    }
    case KILN_OP_rope: kiln_ref64_rope(&p->rope, s0, s1, y); break;
    case KILN_OP_softmax: kiln_ref64_softmax(&p->softmax, s0, y); break;
    case KILN_OP_silu: kiln_ref64_silu(&p->silu, s0, y); break;
    case KILN_OP_sigmoid: kiln_ref64_sigmoid(&p->sigmoid, s0, y); break;
    case KILN_OP_activation: kiln_ref64_activation(&p->activation, s0, y); break;
    case KILN_OP_gelu: kiln_ref64_gelu(&p->gelu, s0, y); break;
    case KILN_OP_quick_gelu: kiln_ref64_quick_gelu(&p->quick_gelu, s0, y); break;
    case KILN_OP_gelu_tanh: kiln_ref64_gelu_tanh(&p->gelu_tanh, s0, y); break;
    case KILN_OP_geglu: kiln_ref64_geglu(&p->geglu, s0, y); break;
    case KILN_OP_add: kiln_ref64_add(&p->add, s0, s1, y); break;
    case KILN_OP_gated_add: kiln_ref64_gated_add(&p->gated_add, s0, s1, s2, s3, y); break;
    case KILN_OP_mul: kiln_ref64_mul(&p->mul, s0, s1, y); break;
    case KILN_OP_scale: kiln_ref64_scale(&p->scale, s0, y); break;
    case KILN_OP_leaky_relu: kiln_ref64_leaky_relu(&p->leaky_relu, s0, y); break;
    case KILN_OP_add_channel_bias: kiln_ref64_add_channel_bias(&p->add_channel_bias, s0, s1, y); break;
    case KILN_OP_concat_channels: kiln_ref64_concat_channels(&p->concat_channels, s0, s1, y); break;
    case KILN_OP_upsample_nearest2x: kiln_ref64_upsample_nearest2x(&p->upsample_nearest2x, s0, y); break;
    case KILN_OP_timestep_embedding: kiln_ref64_timestep_embedding(&p->timestep_embedding, s0, y); break;
    case KILN_OP_transpose: kiln_ref64_transpose(&p->transpose, s0, y); break;
    case KILN_OP_embedding: kiln_ref64_embedding(&p->embedding, r->src[0].host, s1, y); break;
    case KILN_OP_pad2d: kiln_ref64_pad2d(&p->pad2d, s0, y); break;
    case KILN_OP_freeu_backbone: kiln_ref64_freeu_backbone(&p->freeu_backbone, s0, y); break;
    case KILN_OP_fourier_filter: {
        double *scratch = malloc(4 * (size_t)p->fourier_filter.H * p->fourier_filter.W * sizeof *scratch);
        if (!scratch) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory");
        kiln_ref64_fourier_filter(&p->fourier_filter, s0, y, scratch);
        free(scratch);
        break;
    }
    case KILN_OP_resize: {
        const kiln_resize_params *q = &p->resize;
        size_t doubles = (size_t)q->OH * q->H + (size_t)q->OW * q->W + (size_t)q->H * q->OW;
        double *scratch = malloc(doubles * sizeof *scratch);
        if (!scratch) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory");
        kiln_ref64_resize(q, s0, y, scratch);
        free(scratch);
        break;
    }
    case KILN_OP_slerp_resize: kiln_ref64_slerp_resize(&p->slerp_resize, s0, y); break;
    case KILN_OP_prelu: kiln_ref64_prelu(&p->prelu, s0, s1, y); break;
    case KILN_OP_pixel_shuffle: kiln_ref64_pixel_shuffle(&p->pixel_shuffle, s0, y); break;
    case KILN_OP_avg_pool2x2: kiln_ref64_avg_pool2x2(&p->avg_pool2x2, s0, y); break;
    default: return kiln_fail(KILN_ERR_UNSUPPORTED, "op suite: no float64 reference for op %d", (int)r->c->op);
    }
    return KILN_OK;
}

/* Out of line because the dispatch macro's parameter is called `name`. */
static const char *backend_label(const kiln_backend *be) { return be->name; }

/* The checked dispatch straight to the backend's vtable entry. */
static kiln_status dispatch(kiln_backend *be, const case_run *r, const kiln_tensor *const *src, kiln_tensor *dst)
{
    switch (r->c->op) {
#define KILN_OP(name, nsrc, doc)                                                                      \
    case KILN_OP_##name:                                                                              \
        TRY(kiln_check_##name(&r->p.name, src, dst));                                                 \
        if (!be->ops->name) return kiln_fail(KILN_ERR_UNSUPPORTED, "backend %s has no op " #name, backend_label(be)); \
        return be->ops->name(be, &r->p.name, src, dst);
#include "ops.def"
#undef KILN_OP
    default: return kiln_fail(KILN_ERR_UNSUPPORTED, "op suite: unknown op %d", (int)r->c->op);
    }
}

/* ---- inputs ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1p-53; }

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Nearest fp8 code to v: non-negative codes are ordered by value, so a binary
 * search over them finds the neighbours. */
static uint8_t f8_nearest(float v, kiln_dtype dtype)
{
    uint8_t top = dtype == KILN_F8_E4M3 ? 0x7e : 0x7b; /* largest finite */
    float a = fabsf(v);
    uint8_t lo = 0, hi = top;
    while (lo < hi) { /* largest code with value <= a */
        uint8_t mid = (uint8_t)((lo + hi + 1) / 2);
        if (kiln_load_f32(&mid, dtype, 0) <= a) lo = mid; else hi = (uint8_t)(mid - 1);
    }
    uint8_t code = lo;
    if (lo < top) {
        uint8_t up = (uint8_t)(lo + 1);
        if (kiln_load_f32(&up, dtype, 0) - a < a - kiln_load_f32(&lo, dtype, 0)) code = up;
    }
    return (uint8_t)(code | (v < 0 ? 0x80 : 0));
}

/* Stores v as element i of a `dtype` array (rounding to nearest). */
static void store(void *data, kiln_dtype dtype, size_t i, float v)
{
    switch (dtype) {
    case KILN_F16: ((uint16_t *)data)[i] = kiln_f32_to_f16(v); break;
    case KILN_BF16: ((uint16_t *)data)[i] = kiln_f32_to_bf16(v); break;
    case KILN_F8_E4M3:
    case KILN_F8_E5M2: ((uint8_t *)data)[i] = f8_nearest(v, dtype); break;
    default: ((float *)data)[i] = v; break;
    }
}

/* The operand a quantized weight_dtype applies to: matmul's w, whose rows
 * are whole blocks; the other weights are then f16. */
static bool takes_quantized(const case_run *r, const operand *o)
{
    return r->c->op == KILN_OP_matmul && o == &r->src[1];
}

static kiln_dtype operand_dtype(const case_run *r, const operand *o, kiln_dtype weight_dtype)
{
    if (o->kind != OPERAND_WEIGHT) return o->kind == OPERAND_IDS ? KILN_I32 : KILN_F32;
    return !kiln_dtype_is_quantized(weight_dtype) || takes_quantized(r, o) ? weight_dtype : KILN_F16;
}

/* Random blocks (quant_blocks.h) whose f16 scales are [0.2, 2] / K, so that
 * a row's sum stays near 1 (the weight's own range does not apply). */
static kiln_status fill_blocks(operand *o, kiln_dtype dtype, size_t K, uint64_t *rng)
{
    random_quant_blocks(o->host, dtype, o->count, 0.2 / (double)K, 2.0 / (double)K, rng);
    float *f = malloc(o->count * sizeof *f);
    if (!f) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory");
    kiln_convert_to_f32(f, o->host, dtype, o->count);
    for (size_t i = 0; i < o->count; i++) o->wide[i] = f[i];
    free(f);
    return KILN_OK;
}

static kiln_status fill(operand *o, kiln_dtype dtype, size_t K, uint64_t *rng)
{
    o->host = malloc(kiln_dtype_bytes(dtype, o->count));
    o->wide = malloc(o->count * sizeof *o->wide);
    if (!o->host || !o->wide) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory");
    if (kiln_dtype_is_quantized(dtype)) return fill_blocks(o, dtype, K, rng);
    for (size_t i = 0; i < o->count; i++) {
        double u = o->lo + (o->hi - o->lo) * uniform(rng);
        if (o->kind == OPERAND_IDS) {
            int32_t id = (int32_t)u;
            ((int32_t *)o->host)[i] = id;
            o->wide[i] = id;
        } else {
            store(o->host, dtype, i, (float)u);
            o->wide[i] = kiln_load_f32(o->host, dtype, i);
        }
    }
    return KILN_OK;
}

/* A case's special_pixels (slerp_resize), in place of random numbers, which
 * never give a pixel of length zero, nor two alike or opposite: pixels
 * along the axis go zero, random, its copy, the copy negated. */
static void special_pixels(operand *x, const kiln_slerp_resize_params *q)
{
    const bool wide = q->axis == 0;
    const size_t plane = (size_t)q->H * q->W, step = wide ? 1 : (size_t)q->W;
    float *host = x->host;
    for (size_t at = 0; at < (size_t)q->N * plane; at++) {
        const size_t n = at / plane, pixel = at % plane, along = wide ? pixel % q->W : pixel / q->W;
        if (along % 4 == 1) continue;
        for (size_t k = 0; k < (size_t)q->C; k++) {
            const size_t i = (n * q->C + k) * plane + pixel;
            host[i] = along % 4 == 0 ? 0.0f : along % 4 == 2 ? host[i - step] : -host[i - step];
            x->wide[i] = host[i];
        }
    }
}

/* ---- one case ------------------------------------------------------------ */

/* Operands sit this far apart and from the buffer's ends; a multiple of every
 * GPU's storage-buffer offset alignment. */
#define GAP 256
#define GUARD_BYTE 0xa5

static size_t align_up(size_t v) { return (v + GAP - 1) / GAP * GAP; }

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct case_result {
    double err, bound, ms;
    char why[512]; /* empty when the case passed */
} case_result;

/* The whole-buffer descriptor used to upload and download an image of the
 * activation buffer in one go. */
static kiln_tensor bytes_view(kiln_buffer *buf, size_t bytes)
{
    return (kiln_tensor){.dtype = KILN_U8, .ndim = 1, .shape = {(int64_t)bytes}, .buffer = buf};
}

static void run_case(kiln_backend *be, case_run *r, kiln_dtype weight_dtype, case_result *res)
{
    kiln_buffer *acts = NULL, *weights = NULL;
    unsigned char *image = NULL, *after = NULL, *blob = NULL;
    double *expect = NULL;
    kiln_status st;
    operand *all[MAX_SRC + 1];
    int n = 0;
    for (int i = 0; i < r->nsrc; i++) all[n++] = &r->src[i];
    all[n++] = &r->dst;

    char seed_text[256];
    snprintf(seed_text, sizeof seed_text, "%s %s", kiln_op_names[r->c->op], r->desc);
    uint64_t rng = fnv1a(seed_text, 0xcbf29ce484222325ull);
    size_t act_bytes = GAP, weight_bytes = 0;
    for (int i = 0; i < n; i++) {
        operand *o = all[i];
        kiln_dtype dt = operand_dtype(r, o, weight_dtype);
        size_t K = r->c->op == KILN_OP_matmul ? (size_t)r->p.matmul.K : 1;
        if (o != &r->dst && (st = fill(o, dt, K, &rng)) != KILN_OK) goto fail;
        if (o == &r->src[0] && r->c->special_pixels) special_pixels(o, &r->p.slerp_resize);
        size_t bytes = kiln_dtype_bytes(dt, o->count);
        if (o->kind == OPERAND_WEIGHT) {
            o->offset = weight_bytes;
            weight_bytes = align_up(weight_bytes + bytes);
        } else {
            o->offset = act_bytes;
            act_bytes = align_up(act_bytes + bytes) + GAP;
        }
    }

    /* host image of the activation buffer: guards, inputs, NaN output */
    image = malloc(act_bytes);
    after = malloc(act_bytes);
    expect = malloc(r->dst.count * sizeof *expect);
    if (!image || !after || !expect) { st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory"); goto fail; }
    memset(image, GUARD_BYTE, act_bytes);
    for (int i = 0; i < r->nsrc; i++)
        if (r->src[i].kind != OPERAND_WEIGHT)
            memcpy(image + r->src[i].offset, r->src[i].host, r->src[i].count * 4);
    float poison = NAN;
    for (size_t i = 0; i < r->dst.count; i++) memcpy(image + r->dst.offset + 4 * i, &poison, 4);

    if (weight_bytes) {
        if (posix_memalign((void **)&blob, GAP, weight_bytes) != 0) {
            blob = NULL;
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "op suite: out of memory");
            goto fail;
        }
        for (int i = 0; i < r->nsrc; i++)
            if (r->src[i].kind == OPERAND_WEIGHT)
                memcpy(blob + r->src[i].offset, r->src[i].host,
                       kiln_dtype_bytes(operand_dtype(r, &r->src[i], weight_dtype), r->src[i].count));
        if ((st = be->ops->weights_place(be, blob, weight_bytes, &weights)) != KILN_OK) goto fail;
    }
    if ((st = be->ops->buffer_alloc(be, act_bytes, &acts)) != KILN_OK) goto fail;
    kiln_tensor whole = bytes_view(acts, act_bytes);
    if ((st = be->ops->upload(be, &whole, image, act_bytes)) != KILN_OK) goto fail;

    kiln_tensor src_t[MAX_SRC] = {0}, dst_t;
    const kiln_tensor *src_p[MAX_SRC] = {0};
    for (int i = 0; i < r->nsrc; i++) {
        operand *o = &r->src[i];
        src_t[i] = (kiln_tensor){.dtype = operand_dtype(r, o, weight_dtype), .ndim = 1, .shape = {(int64_t)o->count},
                                 .buffer = o->kind == OPERAND_WEIGHT ? weights : acts, .offset = o->offset};
        src_p[i] = &src_t[i];
    }
    dst_t = (kiln_tensor){.dtype = KILN_F32, .ndim = 1, .shape = {(int64_t)r->dst.count}, .buffer = acts,
                          .offset = r->dst.offset};

    double t0 = now_seconds();
    if ((st = dispatch(be, r, src_p, &dst_t)) != KILN_OK) goto fail;
    if ((st = be->ops->synchronize(be)) != KILN_OK) goto fail;
    res->ms = 1e3 * (now_seconds() - t0);
    if ((st = be->ops->download(be, &whole, after, act_bytes)) != KILN_OK) goto fail;

    /* everything but the output must be as uploaded */
    for (size_t i = 0; i < act_bytes; i++) {
        if (i == r->dst.offset) i += r->dst.count * 4;
        if (i < act_bytes && after[i] != image[i]) {
            const char *what = "a guard";
            for (int s = 0; s < r->nsrc; s++)
                if (r->src[s].kind != OPERAND_WEIGHT && i >= r->src[s].offset &&
                    i < r->src[s].offset + r->src[s].count * 4)
                    what = r->src[s].name;
            snprintf(res->why, sizeof res->why, "wrote outside its output (%s, byte %zd from the output's start)", what,
                     (ptrdiff_t)i - (ptrdiff_t)r->dst.offset);
            goto done;
        }
    }

    if ((st = reference(r, expect)) != KILN_OK) goto fail;
    const float *got = (const float *)(after + r->dst.offset);
    double num = 0.0, den = 0.0;
    size_t bad = r->dst.count;
    for (size_t i = 0; i < r->dst.count; i++) {
        if (!isfinite(got[i]) && bad == r->dst.count) bad = i;
        double d = (double)got[i] - expect[i];
        num += d * d;
        den += expect[i] * expect[i];
    }
    res->err = den > 0.0 ? sqrt(num / den) : num > 0.0 ? INFINITY : 0.0;
    if (bad < r->dst.count) {
        snprintf(res->why, sizeof res->why, "element %zu is %g (expected %g)", bad, (double)got[bad], expect[bad]);
        res->err = INFINITY;
    } else if (!(res->err <= res->bound)) {
        snprintf(res->why, sizeof res->why, "rel L2 %.2e > %.1e", res->err, res->bound);
    }
    goto done;

fail:
    snprintf(res->why, sizeof res->why, "%s: %s", kiln_status_name(st), kiln_last_error());
    res->err = INFINITY;
done:
    if (acts) be->ops->buffer_free(be, acts);
    if (weights) be->ops->buffer_free(be, weights);
    free(blob);
    free(image);
    free(after);
    free(expect);
    for (int i = 0; i < n; i++) {
        free(all[i]->host);
        free(all[i]->wide);
    }
}

static bool has_weight(const case_run *r)
{
    for (int i = 0; i < r->nsrc; i++)
        if (r->src[i].kind == OPERAND_WEIGHT) return true;
    return false;
}

int kiln_op_suite_run(kiln_backend *be, kiln_dtype weight_dtype, double tol, const char *only_op)
{
    int failures = 0, ran = 0, skipped = 0, quantless = 0;
    int only = -1;
    if (only_op) {
        for (int op = 0; op < KILN_OP_COUNT; op++)
            if (strcmp(kiln_op_names[op], only_op) == 0) only = op;
        if (only < 0) {
            printf("op suite: no op named '%s' in ops.def\n", only_op);
            return 1;
        }
    }
    printf("op suite on %s (%s), %s weights, tolerance %.1e\n", be->name, be->device_name,
           kiln_dtype_name(weight_dtype), tol);

    for (int op = 0; op < KILN_OP_COUNT; op++) {
        if (only >= 0 && op != only) continue;
        int cases = 0;
        for (size_t i = 0; i < sizeof op_cases / sizeof op_cases[0]; i++) {
            if ((int)op_cases[i].op != op) continue;
            cases++;
            case_run r = {.c = &op_cases[i], .p = op_cases[i].p};
            describe(&r);
            if (r.nsrc < 0) {
                printf("%-18s %s FAIL\n", kiln_op_names[op], r.desc);
                failures++;
                continue;
            }
            bool weighted = has_weight(&r);
            if (!weighted && weight_dtype != KILN_F32) {
                skipped++;
                continue;
            }
            if (kiln_dtype_is_quantized(weight_dtype) &&
                (op != KILN_OP_matmul || r.p.matmul.K % kiln_dtype_block(weight_dtype))) {
                quantless++;
                continue;
            }
            case_result res = {.bound = tol > op_cases[i].tol_floor ? tol : op_cases[i].tol_floor};
            run_case(be, &r, weight_dtype, &res);
            ran++;
            bool ok = res.why[0] == '\0';
            failures += !ok;
            printf("%-18s %-44s %-4s rel L2 %.1e%s %7.1f ms %s%s\n", kiln_op_names[op], r.desc,
                   weighted ? kiln_dtype_name(weight_dtype) : "", res.err, res.bound > tol ? " (floor)" : "", res.ms,
                   ok ? "ok" : "FAIL: ", res.why);
            fflush(stdout);
        }
        if (cases == 0) {
            printf("%-18s FAIL: the op suite has no case for this op\n", kiln_op_names[op]);
            failures++;
        }
    }
    printf("op suite on %s: %d cases run, %d failed", be->name, ran, failures);
    if (skipped) printf(", %d without weight operands left to the F32 run", skipped);
    if (quantless) printf(", %d that take no %s weight left to the float runs", quantless, kiln_dtype_name(weight_dtype));
    printf("\n");
    return failures;
}
