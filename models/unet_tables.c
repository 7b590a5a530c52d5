/* Stable Diffusion UNets as layer tables: the real SD 1.5 (320/640/1280,
 * attention on three levels, 8 heads of 40/80/160) and the small
 * random-weight test model used by the parity goldens (32/64, attention on
 * the first level, 8 heads of 4), and kiln-shapes, kiln's own embedded model
 * (64/64/96, attention on two levels, 8 heads of 8). Channels are literal per
 * row, as the checkpoint's shapes are. An inpainting UNet (9 input channels)
 * or an InstructPix2Pix one (8) is the same table with a wider conv_in.
 *
 * SD 2.x kept SD 1.5's rows: its UNets differ in the config alone (a 1024-wide
 * OpenCLIP context, heads 64 channels wide, linear projections), so they
 * share the tables. SDXL has its own rows (three levels, the first without
 * attention, transformers several blocks deep) and a vector y beside the
 * timestep (adm_channels). */
#include "unet.h"

#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

enum { POP = 1, PUSH = 1 };

// (N,4,h,w) latents; context (N,77,768)
static const unet_layer sd15_layers[] = {
    {UNET_CONV_IN, "input_blocks.0.0", 4, 320, 0, PUSH, "conv_in", 0},
    {UNET_RESBLOCK, "input_blocks.1.0", 320, 320, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.1.1", 320, 320, 0, PUSH, NULL, 1},
    {UNET_RESBLOCK, "input_blocks.2.0", 320, 320, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.2.1", 320, 320, 0, PUSH, NULL, 1},
    {UNET_DOWNSAMPLE, "input_blocks.3.0", 320, 320, 0, PUSH, "down_blocks.0", 0},
    {UNET_RESBLOCK, "input_blocks.4.0", 320, 640, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.4.1", 640, 640, 0, PUSH, NULL, 1},
    {UNET_RESBLOCK, "input_blocks.5.0", 640, 640, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.5.1", 640, 640, 0, PUSH, NULL, 1},
    {UNET_DOWNSAMPLE, "input_blocks.6.0", 640, 640, 0, PUSH, "down_blocks.1", 0},
    {UNET_RESBLOCK, "input_blocks.7.0", 640, 1280, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.7.1", 1280, 1280, 0, PUSH, NULL, 1},
    {UNET_RESBLOCK, "input_blocks.8.0", 1280, 1280, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.8.1", 1280, 1280, 0, PUSH, NULL, 1},
    {UNET_DOWNSAMPLE, "input_blocks.9.0", 1280, 1280, 0, PUSH, "down_blocks.2", 0},
    {UNET_RESBLOCK, "input_blocks.10.0", 1280, 1280, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.11.0", 1280, 1280, 0, PUSH, "down_blocks.3", 0},
    {UNET_RESBLOCK, "middle_block.0", 1280, 1280, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "middle_block.1", 1280, 1280, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "middle_block.2", 1280, 1280, 0, 0, "mid_block", 0},
    {UNET_RESBLOCK, "output_blocks.0.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.1.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.2.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_UPSAMPLE, "output_blocks.2.1", 1280, 1280, 0, 0, "up_blocks.0", 0},
    {UNET_RESBLOCK, "output_blocks.3.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.3.1", 1280, 1280, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.4.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.4.1", 1280, 1280, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.5.0", 1920, 1280, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.5.1", 1280, 1280, 0, 0, NULL, 1},
    {UNET_UPSAMPLE, "output_blocks.5.2", 1280, 1280, 0, 0, "up_blocks.1", 0},
    {UNET_RESBLOCK, "output_blocks.6.0", 1920, 640, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.6.1", 640, 640, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.7.0", 1280, 640, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.7.1", 640, 640, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.8.0", 960, 640, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.8.1", 640, 640, 0, 0, NULL, 1},
    {UNET_UPSAMPLE, "output_blocks.8.2", 640, 640, 0, 0, "up_blocks.2", 0},
    {UNET_RESBLOCK, "output_blocks.9.0", 960, 320, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.9.1", 320, 320, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.10.0", 640, 320, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.10.1", 320, 320, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.11.0", 640, 320, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.11.1", 320, 320, 0, 0, "up_blocks.3", 1},
};

static const unet_config sd15 = {
    .name = "sd15", .family = "sd1", .in_channels = 4, .out_channels = 4, .model_channels = 320, .time_embed_dim = 1280,
    .context_dim = 768, .heads = 8, .layers = sd15_layers, .nlayers = COUNT(sd15_layers),
};

// SD 1.5 inpainting: the latent, the mask and the masked image's latent in
static const unet_config sd15_inpaint = {
    .name = "sd15-inpaint", .family = "sd1", .in_channels = 9, .out_channels = 4, .model_channels = 320, .time_embed_dim = 1280,
    .context_dim = 768, .heads = 8, .layers = sd15_layers, .nlayers = COUNT(sd15_layers),
};

// SD 1.5 InstructPix2Pix: the latent and the picture-to-edit's latent in
static const unet_config sd15_ip2p = {
    .name = "sd15-instruct-pix2pix", .family = "sd1", .in_channels = 8, .out_channels = 4, .model_channels = 320,
    .time_embed_dim = 1280, .context_dim = 768, .heads = 8, .layers = sd15_layers, .nlayers = COUNT(sd15_layers),
};

// the goldens' tiny UNet: (N,4,h,w) latents; context (N,77,32)
static const unet_layer sd15_tiny_test_layers[] = {
    {UNET_CONV_IN, "input_blocks.0.0", 4, 32, 0, PUSH, "conv_in", 0},
    {UNET_RESBLOCK, "input_blocks.1.0", 32, 32, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.1.1", 32, 32, 0, PUSH, NULL, 1},
    {UNET_RESBLOCK, "input_blocks.2.0", 32, 32, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.2.1", 32, 32, 0, PUSH, NULL, 1},
    {UNET_DOWNSAMPLE, "input_blocks.3.0", 32, 32, 0, PUSH, "down_blocks.0", 0},
    {UNET_RESBLOCK, "input_blocks.4.0", 32, 64, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.5.0", 64, 64, 0, PUSH, "down_blocks.1", 0},
    {UNET_RESBLOCK, "middle_block.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "middle_block.1", 64, 64, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "middle_block.2", 64, 64, 0, 0, "mid_block", 0},
    {UNET_RESBLOCK, "output_blocks.0.0", 128, 64, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.1.0", 128, 64, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.2.0", 96, 64, POP, 0, NULL, 0},
    {UNET_UPSAMPLE, "output_blocks.2.1", 64, 64, 0, 0, "up_blocks.0", 0},
    {UNET_RESBLOCK, "output_blocks.3.0", 96, 32, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.3.1", 32, 32, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.4.0", 64, 32, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.4.1", 32, 32, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.5.0", 64, 32, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.5.1", 32, 32, 0, 0, "up_blocks.1", 1},
};

static const unet_config sd15_tiny_test = {
    .name = "sd15-tiny-test", .family = "sd1", .in_channels = 4, .out_channels = 4, .model_channels = 32, .time_embed_dim = 128,
    .context_dim = 32, .heads = 8, .layers = sd15_tiny_test_layers, .nlayers = COUNT(sd15_tiny_test_layers),
};

// the tiny model with an inpainting UNet's input (tests/data/inpaint)
static const unet_config sd15_tiny_test_inpaint = {
    .name = "sd15-tiny-test-inpaint", .family = "sd1", .in_channels = 9, .out_channels = 4, .model_channels = 32,
    .time_embed_dim = 128, .context_dim = 32, .heads = 8, .layers = sd15_tiny_test_layers,
    .nlayers = COUNT(sd15_tiny_test_layers),
};

// kiln-shapes, the embedded default model (tools/train): (N,4,h,w); context (N,77,64)
static const unet_layer kiln_shapes_layers[] = {
    {UNET_CONV_IN, "input_blocks.0.0", 4, 64, 0, PUSH, "conv_in", 0},
    {UNET_RESBLOCK, "input_blocks.1.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.1.1", 64, 64, 0, PUSH, NULL, 1},
    {UNET_RESBLOCK, "input_blocks.2.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.2.1", 64, 64, 0, PUSH, NULL, 1},
    {UNET_DOWNSAMPLE, "input_blocks.3.0", 64, 64, 0, PUSH, "down_blocks.0", 0},
    {UNET_RESBLOCK, "input_blocks.4.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.4.1", 64, 64, 0, PUSH, NULL, 1},
    {UNET_RESBLOCK, "input_blocks.5.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.5.1", 64, 64, 0, PUSH, NULL, 1},
    {UNET_DOWNSAMPLE, "input_blocks.6.0", 64, 64, 0, PUSH, "down_blocks.1", 0},
    {UNET_RESBLOCK, "input_blocks.7.0", 64, 96, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.8.0", 96, 96, 0, PUSH, "down_blocks.2", 0},
    {UNET_RESBLOCK, "middle_block.0", 96, 96, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "middle_block.1", 96, 96, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "middle_block.2", 96, 96, 0, 0, "mid_block", 0},
    {UNET_RESBLOCK, "output_blocks.0.0", 192, 96, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.1.0", 192, 96, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.2.0", 160, 96, POP, 0, NULL, 0},
    {UNET_UPSAMPLE, "output_blocks.2.1", 96, 96, 0, 0, "up_blocks.0", 0},
    {UNET_RESBLOCK, "output_blocks.3.0", 160, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.3.1", 64, 64, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.4.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.4.1", 64, 64, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.5.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.5.1", 64, 64, 0, 0, NULL, 1},
    {UNET_UPSAMPLE, "output_blocks.5.2", 64, 64, 0, 0, "up_blocks.1", 0},
    {UNET_RESBLOCK, "output_blocks.6.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.6.1", 64, 64, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.7.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.7.1", 64, 64, 0, 0, NULL, 1},
    {UNET_RESBLOCK, "output_blocks.8.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.8.1", 64, 64, 0, 0, "up_blocks.2", 1},
};

static const unet_config kiln_shapes = {
    .name = "kiln-shapes", .family = "sd1", .in_channels = 4, .out_channels = 4, .model_channels = 64, .time_embed_dim = 256,
    .context_dim = 64, .heads = 8, .layers = kiln_shapes_layers, .nlayers = COUNT(kiln_shapes_layers),
};

// ... and with an InstructPix2Pix UNet's input (tests/data/pix2pix)
static const unet_config sd15_tiny_test_ip2p = {
    .name = "sd15-tiny-test-instruct-pix2pix", .family = "sd1", .in_channels = 8, .out_channels = 4, .model_channels = 32,
    .time_embed_dim = 128, .context_dim = 32, .heads = 8, .layers = sd15_tiny_test_layers,
    .nlayers = COUNT(sd15_tiny_test_layers),
};

// SD 2.0/2.1, 512 and 768 (v-prediction) alike: (N,4,h,w) latents; context (N,77,1024)
static const unet_config sd2 = {
    .name = "sd2", .family = "sd2", .in_channels = 4, .out_channels = 4, .model_channels = 320,
    .time_embed_dim = 1280, .context_dim = 1024, .head_channels = 64, .linear_projection = true,
    .layers = sd15_layers, .nlayers = COUNT(sd15_layers),
};

// SD 2.0 inpainting
static const unet_config sd2_inpaint = {
    .name = "sd2-inpaint", .family = "sd2", .in_channels = 9, .out_channels = 4, .model_channels = 320,
    .time_embed_dim = 1280, .context_dim = 1024, .head_channels = 64, .linear_projection = true,
    .layers = sd15_layers, .nlayers = COUNT(sd15_layers),
};

// tests/data/sd2's tiny SD 2.x UNet: the tiny SD 1.x rows, heads 16 wide, context (N,77,32)
static const unet_config sd2_tiny_test = {
    .name = "sd2-tiny-test", .family = "sd2", .in_channels = 4, .out_channels = 4, .model_channels = 32,
    .time_embed_dim = 128, .context_dim = 32, .head_channels = 16, .linear_projection = true,
    .layers = sd15_tiny_test_layers, .nlayers = COUNT(sd15_tiny_test_layers),
};

// tests/data/sd2/inpaint.golden's: the tiny SD 2.x UNet with a 9-channel conv_in
static const unet_config sd2_tiny_test_inpaint = {
    .name = "sd2-tiny-test-inpaint", .family = "sd2", .in_channels = 9, .out_channels = 4, .model_channels = 32,
    .time_embed_dim = 128, .context_dim = 32, .head_channels = 16, .linear_projection = true,
    .layers = sd15_tiny_test_layers, .nlayers = COUNT(sd15_tiny_test_layers),
};

// SDXL base: no attention on the first level, transformers 2 and 10 deep on the others;
// (N,4,h,w) latents; context (N,77,2048); y (N,2816): pooled text and six size embeddings
static const unet_layer sdxl_layers[] = {
    {UNET_CONV_IN, "input_blocks.0.0", 4, 320, 0, PUSH, "conv_in", 0},
    {UNET_RESBLOCK, "input_blocks.1.0", 320, 320, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.2.0", 320, 320, 0, PUSH, NULL, 0},
    {UNET_DOWNSAMPLE, "input_blocks.3.0", 320, 320, 0, PUSH, "down_blocks.0", 0},
    {UNET_RESBLOCK, "input_blocks.4.0", 320, 640, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.4.1", 640, 640, 0, PUSH, NULL, 2},
    {UNET_RESBLOCK, "input_blocks.5.0", 640, 640, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.5.1", 640, 640, 0, PUSH, NULL, 2},
    {UNET_DOWNSAMPLE, "input_blocks.6.0", 640, 640, 0, PUSH, "down_blocks.1", 0},
    {UNET_RESBLOCK, "input_blocks.7.0", 640, 1280, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.7.1", 1280, 1280, 0, PUSH, NULL, 10},
    {UNET_RESBLOCK, "input_blocks.8.0", 1280, 1280, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.8.1", 1280, 1280, 0, PUSH, "down_blocks.2", 10},
    {UNET_RESBLOCK, "middle_block.0", 1280, 1280, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "middle_block.1", 1280, 1280, 0, 0, NULL, 10},
    {UNET_RESBLOCK, "middle_block.2", 1280, 1280, 0, 0, "mid_block", 0},
    {UNET_RESBLOCK, "output_blocks.0.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.0.1", 1280, 1280, 0, 0, NULL, 10},
    {UNET_RESBLOCK, "output_blocks.1.0", 2560, 1280, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.1.1", 1280, 1280, 0, 0, NULL, 10},
    {UNET_RESBLOCK, "output_blocks.2.0", 1920, 1280, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.2.1", 1280, 1280, 0, 0, NULL, 10},
    {UNET_UPSAMPLE, "output_blocks.2.2", 1280, 1280, 0, 0, "up_blocks.0", 0},
    {UNET_RESBLOCK, "output_blocks.3.0", 1920, 640, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.3.1", 640, 640, 0, 0, NULL, 2},
    {UNET_RESBLOCK, "output_blocks.4.0", 1280, 640, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.4.1", 640, 640, 0, 0, NULL, 2},
    {UNET_RESBLOCK, "output_blocks.5.0", 960, 640, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.5.1", 640, 640, 0, 0, NULL, 2},
    {UNET_UPSAMPLE, "output_blocks.5.2", 640, 640, 0, 0, "up_blocks.1", 0},
    {UNET_RESBLOCK, "output_blocks.6.0", 960, 320, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.7.0", 640, 320, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.8.0", 640, 320, POP, 0, "up_blocks.2", 0},
};

static const unet_config sdxl = {
    .name = "sdxl", .family = "sdxl", .in_channels = 4, .out_channels = 4, .model_channels = 320,
    .time_embed_dim = 1280, .context_dim = 2048, .head_channels = 64, .linear_projection = true,
    .adm_channels = 2816, .layers = sdxl_layers, .nlayers = COUNT(sdxl_layers),
};

// SDXL inpainting (sd_xl_base_1.0_inpainting_0.1): the latent, the mask and the masked picture's latent in
static const unet_config sdxl_inpaint = {
    .name = "sdxl-inpaint", .family = "sdxl", .in_channels = 9, .out_channels = 4, .model_channels = 320,
    .time_embed_dim = 1280, .context_dim = 2048, .head_channels = 64, .linear_projection = true,
    .adm_channels = 2816, .layers = sdxl_layers, .nlayers = COUNT(sdxl_layers),
};

// tests/data/sdxl's tiny SDXL UNet (32/64, attention 2 deep on the second level, heads 16
// wide): context (N,77,64); y (N,80): a 32-wide pooled text and six 8-wide size embeddings
static const unet_layer sdxl_tiny_test_layers[] = {
    {UNET_CONV_IN, "input_blocks.0.0", 4, 32, 0, PUSH, "conv_in", 0},
    {UNET_RESBLOCK, "input_blocks.1.0", 32, 32, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.2.0", 32, 32, 0, PUSH, NULL, 0},
    {UNET_DOWNSAMPLE, "input_blocks.3.0", 32, 32, 0, PUSH, "down_blocks.0", 0},
    {UNET_RESBLOCK, "input_blocks.4.0", 32, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.4.1", 64, 64, 0, PUSH, NULL, 2},
    {UNET_RESBLOCK, "input_blocks.5.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.5.1", 64, 64, 0, PUSH, "down_blocks.1", 2},
    {UNET_RESBLOCK, "middle_block.0", 64, 64, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "middle_block.1", 64, 64, 0, 0, NULL, 2},
    {UNET_RESBLOCK, "middle_block.2", 64, 64, 0, 0, "mid_block", 0},
    {UNET_RESBLOCK, "output_blocks.0.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.0.1", 64, 64, 0, 0, NULL, 2},
    {UNET_RESBLOCK, "output_blocks.1.0", 128, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.1.1", 64, 64, 0, 0, NULL, 2},
    {UNET_RESBLOCK, "output_blocks.2.0", 96, 64, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.2.1", 64, 64, 0, 0, NULL, 2},
    {UNET_UPSAMPLE, "output_blocks.2.2", 64, 64, 0, 0, "up_blocks.0", 0},
    {UNET_RESBLOCK, "output_blocks.3.0", 96, 32, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.4.0", 64, 32, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.5.0", 64, 32, POP, 0, "up_blocks.1", 0},
};

static const unet_config sdxl_tiny_test = {
    .name = "sdxl-tiny-test", .family = "sdxl", .in_channels = 4, .out_channels = 4, .model_channels = 32,
    .time_embed_dim = 128, .context_dim = 64, .head_channels = 16, .linear_projection = true,
    .adm_channels = 80, .layers = sdxl_tiny_test_layers, .nlayers = COUNT(sdxl_tiny_test_layers),
};

// tests/data/sdxl/inpaint.golden's: the tiny SDXL UNet with a 9-channel conv_in
static const unet_config sdxl_tiny_test_inpaint = {
    .name = "sdxl-tiny-test-inpaint", .family = "sdxl", .in_channels = 9, .out_channels = 4, .model_channels = 32,
    .time_embed_dim = 128, .context_dim = 64, .head_channels = 16, .linear_projection = true,
    .adm_channels = 80, .layers = sdxl_tiny_test_layers, .nlayers = COUNT(sdxl_tiny_test_layers),
};

// SDXL refiner: four levels, transformers 4 deep on the middle two; context (N,77,1280) from
// OpenCLIP bigG alone; y (N,2560): pooled text and five embeddings (size, crop, aesthetic score)
static const unet_layer sdxl_refiner_layers[] = {
    {UNET_CONV_IN, "input_blocks.0.0", 4, 384, 0, PUSH, "conv_in", 0},
    {UNET_RESBLOCK, "input_blocks.1.0", 384, 384, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.2.0", 384, 384, 0, PUSH, NULL, 0},
    {UNET_DOWNSAMPLE, "input_blocks.3.0", 384, 384, 0, PUSH, "down_blocks.0", 0},
    {UNET_RESBLOCK, "input_blocks.4.0", 384, 768, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.4.1", 768, 768, 0, PUSH, NULL, 4},
    {UNET_RESBLOCK, "input_blocks.5.0", 768, 768, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.5.1", 768, 768, 0, PUSH, NULL, 4},
    {UNET_DOWNSAMPLE, "input_blocks.6.0", 768, 768, 0, PUSH, "down_blocks.1", 0},
    {UNET_RESBLOCK, "input_blocks.7.0", 768, 1536, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.7.1", 1536, 1536, 0, PUSH, NULL, 4},
    {UNET_RESBLOCK, "input_blocks.8.0", 1536, 1536, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "input_blocks.8.1", 1536, 1536, 0, PUSH, NULL, 4},
    {UNET_DOWNSAMPLE, "input_blocks.9.0", 1536, 1536, 0, PUSH, "down_blocks.2", 0},
    {UNET_RESBLOCK, "input_blocks.10.0", 1536, 1536, 0, PUSH, NULL, 0},
    {UNET_RESBLOCK, "input_blocks.11.0", 1536, 1536, 0, PUSH, "down_blocks.3", 0},
    {UNET_RESBLOCK, "middle_block.0", 1536, 1536, 0, 0, NULL, 0},
    {UNET_TRANSFORMER, "middle_block.1", 1536, 1536, 0, 0, NULL, 4},
    {UNET_RESBLOCK, "middle_block.2", 1536, 1536, 0, 0, "mid_block", 0},
    {UNET_RESBLOCK, "output_blocks.0.0", 3072, 1536, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.1.0", 3072, 1536, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.2.0", 3072, 1536, POP, 0, NULL, 0},
    {UNET_UPSAMPLE, "output_blocks.2.1", 1536, 1536, 0, 0, "up_blocks.0", 0},
    {UNET_RESBLOCK, "output_blocks.3.0", 3072, 1536, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.3.1", 1536, 1536, 0, 0, NULL, 4},
    {UNET_RESBLOCK, "output_blocks.4.0", 3072, 1536, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.4.1", 1536, 1536, 0, 0, NULL, 4},
    {UNET_RESBLOCK, "output_blocks.5.0", 2304, 1536, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.5.1", 1536, 1536, 0, 0, NULL, 4},
    {UNET_UPSAMPLE, "output_blocks.5.2", 1536, 1536, 0, 0, "up_blocks.1", 0},
    {UNET_RESBLOCK, "output_blocks.6.0", 2304, 768, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.6.1", 768, 768, 0, 0, NULL, 4},
    {UNET_RESBLOCK, "output_blocks.7.0", 1536, 768, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.7.1", 768, 768, 0, 0, NULL, 4},
    {UNET_RESBLOCK, "output_blocks.8.0", 1152, 768, POP, 0, NULL, 0},
    {UNET_TRANSFORMER, "output_blocks.8.1", 768, 768, 0, 0, NULL, 4},
    {UNET_UPSAMPLE, "output_blocks.8.2", 768, 768, 0, 0, "up_blocks.2", 0},
    {UNET_RESBLOCK, "output_blocks.9.0", 1152, 384, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.10.0", 768, 384, POP, 0, NULL, 0},
    {UNET_RESBLOCK, "output_blocks.11.0", 768, 384, POP, 0, "up_blocks.3", 0},
};

static const unet_config sdxl_refiner = {
    .name = "sdxl-refiner", .family = "sdxl-refiner", .in_channels = 4, .out_channels = 4, .model_channels = 384,
    .time_embed_dim = 1536, .context_dim = 1280, .head_channels = 64, .linear_projection = true,
    .adm_channels = 2560, .layers = sdxl_refiner_layers, .nlayers = COUNT(sdxl_refiner_layers),
};

// tests/data/sdxl_refiner's tiny refiner: the tiny SDXL rows, context (N,77,32) from the
// OpenCLIP tower alone; y (N,72): a 32-wide pooled text and five 8-wide embeddings
static const unet_config sdxl_refiner_tiny_test = {
    .name = "sdxl-refiner-tiny-test", .family = "sdxl-refiner", .in_channels = 4, .out_channels = 4,
    .model_channels = 32, .time_embed_dim = 128, .context_dim = 32, .head_channels = 16, .linear_projection = true,
    .adm_channels = 72, .layers = sdxl_tiny_test_layers, .nlayers = COUNT(sdxl_tiny_test_layers),
};

const unet_config *const kiln_unet_configs[] = {
    &sd15, &sd15_inpaint, &sd15_ip2p, &sd15_tiny_test, &sd15_tiny_test_inpaint, &sd15_tiny_test_ip2p, &kiln_shapes,
    &sd2, &sd2_inpaint, &sd2_tiny_test, &sd2_tiny_test_inpaint, &sdxl, &sdxl_inpaint, &sdxl_tiny_test, &sdxl_tiny_test_inpaint, &sdxl_refiner,
    &sdxl_refiner_tiny_test, NULL,
};
