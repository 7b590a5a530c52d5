#include "backend_suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend.h"
#include "denoiser.h"
#include "golden.h"
#include "graph.h"
#include "kiln_test.h"
#include "model.h"
#include "parity.h"
#include "tokenizer.h"

bool backend_available(const char *name, const char *const required_env[], int *exit_code)
{
    kiln_backend *be;
    if (kiln_backend_create(name, NULL, &be) == KILN_OK) {
        printf("%s backend: %s\n", name, be->device_name);
        kiln_backend_free(be);
        return true;
    }
    for (int i = 0; required_env && required_env[i]; i++) {
        if (getenv(required_env[i])) {
            printf("FAILED: no %s device although %s is set: %s\n", name, required_env[i], kiln_last_error());
            *exit_code = 1;
            return false;
        }
    }
    printf("skipped: no %s device: %s\n", name, kiln_last_error());
    *exit_code = KILN_TEST_SKIP;
    return false;
}

/* ---- the model-level suite on a GPU backend ---- */

static parity_fixture gpu_f32 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", .tol = 1e-4};
/* f16 weights in f16 compute (tensor cores): the bound of the CPU f16 test */
static parity_fixture gpu_f16 = {.path = KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp16.safetensors", .tol = 1e-2,
                                 .f16_compute = true};
static const char *const gpu_decodes[][2] = {{"dec8.z", "dec8.image"}, {"dec32.z", "dec32.image"}};

static void clip_f32(void **s) { (void)s; parity_check_clip(&gpu_f32, "tiny/clip_text.safetensors"); }
static void unet_f32(void **s) { (void)s; parity_check_unet(&gpu_f32, "tiny/unet.safetensors"); }
static void vae_f32(void **s) { (void)s; parity_check_vae(&gpu_f32, "tiny/vae.safetensors", gpu_decodes, 2); }
static void unet_f16(void **s) { (void)s; parity_check_unet(&gpu_f16, "tiny/unet.safetensors"); }
/* a latent of odd size: the upsampler comes back to the skip's 7x5 */
static void unet_f32_odd(void **s) { (void)s; parity_check_unet(&gpu_f32, "tiny/unet_odd.safetensors"); }
/* FreeU and FreeU_V2 on the decoder (freeu_backbone, fourier_filter) */
static void unet_f32_freeu(void **s)
{
    (void)s;
    const kiln_freeu freeu = {1.1, 1.2, 0.9, 0.2, false}, freeu_v2 = {1.3, 1.4, 0.9, 0.2, true};
    parity_check_unet_patched(&gpu_f32, "freeu/tiny.safetensors", "freeu.", &(parity_unet_patches){.freeu = &freeu});
    parity_check_unet_patched(&gpu_f32, "freeu/tiny.safetensors", "freeu_v2.",
                              &(parity_unet_patches){.freeu = &freeu_v2});
}

/* SD 2.x: the OpenCLIP tower (GELU, penultimate layer) and the UNet with heads 16 wide */
static parity_fixture gpu_sd2 = {.path = KILN_TEST_DATA "/sd2/tiny_sd2.safetensors", .tol = 1e-4};
static void sd2_clip_f32(void **s) { (void)s; parity_check_clip(&gpu_sd2, "sd2/golden.safetensors"); }
static void sd2_unet_f32(void **s) { (void)s; parity_check_unet(&gpu_sd2, "sd2/golden.safetensors"); }
/* SDXL: transformers two blocks deep, the vector y through label_emb */
static parity_fixture gpu_sdxl = {.path = KILN_TEST_DATA "/sdxl/tiny_sdxl.safetensors", .tol = 1e-4};
static void sdxl_unet_f32(void **s) { (void)s; parity_check_unet(&gpu_sdxl, "sdxl/golden.safetensors"); }
/* PerturbedAttentionGuidance's pass: the middle block's self-attention
 * perturbed, one transformer block deep (SD 1.x) and two (SDXL) */
static void unet_f32_perturbed(void **s)
{
    (void)s;
    const parity_unet_patches perturbed = {.perturb_middle = true};
    parity_check_unet_patched(&gpu_f32, "pag/tiny.safetensors", "perturbed.", &perturbed);
    parity_check_unet_patched(&gpu_sdxl, "pag/sdxl.safetensors", "perturbed.", &perturbed);
}
/* Hypernetworks on every attention's keys and values: relu with layer norms then an f16 hardswish one, and mish */
static void unet_f32_hypernetworks(void **s)
{
    (void)s;
    const char *chain[] = {"hypernetwork/relu_ln.pt", "hypernetwork/swish.pt"}, *mish[] = {"hypernetwork/mish.pt"};
    parity_check_unet_patched(&gpu_f32, "hypernetwork/golden.safetensors", "chain.",
                              &(parity_unet_patches){.hypernetworks = chain, .nhypernetworks = 2,
                                                     .hypernetwork_strengths = (const double[]){1.0, -0.7}});
    parity_check_unet_patched(&gpu_f32, "hypernetwork/golden.safetensors", "mish.",
                              &(parity_unet_patches){.hypernetworks = mish, .nhypernetworks = 1,
                                                     .hypernetwork_strengths = (const double[]){0.8}});
}
/* The tiny SD 1.x model on the suite's backend, for runs that patch its sampling. */
static void on_tiny_model(void (*check)(kiln_model *m))
{
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create(gpu_f32.backend, NULL, &be));
    assert_kiln_ok(kiln_model_load(gpu_f32.path, be, &m));
    check(m);
    kiln_model_free(m);
    kiln_backend_free(be);
}
/* SelfAttentionGuidance: the middle block's q and k out of the main call's
 * graph, its pass in a graph of its own; with Deep Shrink, both at the
 * shrunk steps' own grid and graphs */
static void sag_run(kiln_model *m)
{
    parity_check_sag_run(m, "sag/sag.safetensors", "cfg5", gpu_f32.tol);
    parity_check_sag_run(m, "sag/sag_deep_shrink.safetensors", "shrunk", gpu_f32.tol);
}
static void sag_run_f32(void **s) { (void)s, on_tiny_model(sag_run); }
/* Deep Shrink: the calls that shrink in a graph of their own, the resize op
 * down after a skip and back up (bislerp's slerp_resize too), and an
 * upsampler to a small skip's size */
static void deep_shrink_runs(kiln_model *m)
{
    parity_check_deep_shrink_run(m, "after_skip", gpu_f32.tol);
    parity_check_deep_shrink_run(m, "before_skip", gpu_f32.tol);
    parity_check_deep_shrink_run(m, "bislerp", gpu_f32.tol);
    parity_check_deep_shrink_run(m, "controlnet", gpu_f32.tol);
}
static void deep_shrink_run_f32(void **s) { (void)s, on_tiny_model(deep_shrink_runs); }
static void hypertile_runs(kiln_model *m)
{
    parity_check_hypertile_run(m, "random", gpu_f32.tol);
    parity_check_hypertile_run(m, "pag", gpu_f32.tol);
}
static void hypertile_run_f32(void **s)
{
    (void)s;
    on_tiny_model(hypertile_runs);
    parity_check_hypertile_sdxl(&gpu_sdxl);
}
static void sdxl_controlnet_f32(void **s)
{
    (void)s;
    parity_check_controlnet(&gpu_sdxl, "sdxl/controlnet_ldm.safetensors", "sdxl/controlnet.golden.safetensors");
}

/* T2I-Adapters: the full kind on an odd-sized latent (its pooling pads the
 * odd sides), the light kind, SDXL's */
static void t2i_adapters_f32(void **s)
{
    (void)s;
    parity_check_t2i_adapter(&gpu_f32, "t2i_adapter/full_original.safetensors", "tiny/unet_odd.safetensors", "odd",
                             "odd.hint");
    parity_check_t2i_adapter(&gpu_f32, "t2i_adapter/light_original.safetensors", "tiny/unet.safetensors", "light",
                             "hint");
    parity_check_t2i_adapter(&gpu_sdxl, "t2i_adapter/xl_diffusers.safetensors", "sdxl/golden.safetensors", "xl", "hint");
}

/* A LoRA merged at load reaches the device's copy of the weights. */
static void unet_f32_lora(void **s)
{
    (void)s;
    const kiln_lora lora = {KILN_TEST_DATA "/lora/kohya_locon.safetensors", 0.75, 0.75};
    parity_fixture fx = gpu_f32;
    fx.loras = &lora;
    fx.nloras = 1;
    parity_check_unet(&fx, "lora/kohya_locon.golden.safetensors");
}

/* ESRGAN: its LeakyReLUs, dense concatenations and 4x upsampling */
static void upscaler_f32(void **s)
{
    (void)s;
    parity_check_upscaler(&gpu_f32, "upscale/rrdb_basicsr.safetensors", "upscale/golden.safetensors");
    /* SRVGGNetCompact: PReLU and pixel shuffle */
    parity_check_upscaler_network(&gpu_f32, "upscale/compact/compact_x4.safetensors",
                                  "upscale/compact/compact.golden.safetensors", "x4.out");
    /* SPAN: sigmoid */
    parity_check_upscaler_network(&gpu_f32, "upscale/span/span_x4.safetensors", "upscale/span/span.golden.safetensors",
                                  "x4.out");
}

static void controlnet_f32(void **s)
{
    (void)s;
    parity_check_controlnet(&gpu_f32, "controlnet/tiny_ldm.safetensors", "controlnet/golden.safetensors");
}

/* Two ControlNets on guided denoiser calls (a graph for each set of them a
 * call runs): both against diffusers' MultiControlNetModel, then the second
 * out of its range, which leaves the first's call. */
static void two_controlnets_f32(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn[2];
    assert_kiln_ok(kiln_backend_create(gpu_f32.backend, NULL, &be));
    assert_kiln_ok(kiln_model_load(gpu_f32.path, be, &m));
    assert_kiln_ok(
        kiln_controlnet_open(kiln_test_data("controlnet/tiny_ldm.safetensors"), &m->unet, m->checkpoint, be, &cn[0]));
    assert_kiln_ok(
        kiln_controlnet_open(kiln_test_data("controlnet/second_ldm.safetensors"), &m->unet, m->checkpoint, be, &cn[1]));
    kiln_st_file *f = golden_open("controlnet/golden.safetensors"), *f2 = golden_open("controlnet/multi.safetensors");
    golden x = golden_read(f, "denoise.x"), sigma = golden_read(f, "denoise.sigma"), cfg = golden_read(f, "denoise.cfg"),
           one = golden_read(f, "denoise.out"), context = golden_read(f, "encoder_hidden_states"),
           hint = golden_read(f, "hint"), scale = golden_read(f, "scale"), hint2 = golden_read(f2, "hint"),
           scale2 = golden_read(f2, "scale"), both = golden_read(f2, "out");
    kiln_model_sampling ms;
    assert_kiln_ok(kiln_model_sampling_init(&ms, KILN_SD_LINEAR_START, KILN_SD_LINEAR_END));
    kiln_control controls[2] = {{cn[0], hint.data, scale.data[0], 0.0, 1.0, -1, false},
                                {cn[1], hint2.data, scale2.data[0], 0.0, 1.0, -1, false}};
    kiln_denoiser d;
    assert_kiln_ok(kiln_denoiser_init(&d, m, &ms, 1, (int)x.shape[2], (int)x.shape[3], cfg.data[0], context.data, 77));
    assert_kiln_ok(kiln_denoiser_set_controls(&d, controls, 2));
    float *out = malloc(x.count * sizeof *out);
    assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out));
    assert_rel_l2_le(out, both.data, both.count, gpu_f32.tol);
    controls[1].start_percent = 0.6; /* out of range now: a call with the first alone, in a graph of its own */
    d.control_sigma_hi[1] = kiln_percent_to_sigma(&ms, 0.6);
    assert_kiln_ok(kiln_denoiser_call(&d, x.data, sigma.data[0], out));
    assert_rel_l2_le(out, one.data, one.count, gpu_f32.tol);
    kiln_denoiser_free(&d);
    free(out);
    golden *all[] = {&x, &sigma, &cfg, &one, &context, &hint, &scale, &hint2, &scale2, &both};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) golden_free(all[i]);
    kiln_st_close(f);
    kiln_st_close(f2);
    for (int i = 0; i < 2; i++) kiln_controlnet_free(cn[i]);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* IP-Adapter: the CLIP vision tower (non-causal attention over 257 tokens),
 * the image projection (Plus's Resampler, full-face's MLP) and the UNet's image attention;
 * two adapters chained on one call */
static void ip_adapter_f32(void **s)
{
    (void)s;
    parity_check_ip_adapter(&gpu_f32, "ip_adapter/clip_vision_tiny.safetensors", "ip_adapter/ip_adapter_tiny.safetensors",
                            "ip_adapter/golden.safetensors", "");
    parity_check_ip_adapter(&gpu_f32, "ip_adapter/clip_vision_tiny.safetensors",
                            "ip_adapter/ip_adapter_plus_tiny.safetensors", "ip_adapter/golden.safetensors", "plus.");
    parity_check_ip_adapter(&gpu_f32, "ip_adapter/clip_vision_tiny.safetensors",
                            "ip_adapter/ip_adapter_full_face_tiny.safetensors", "ip_adapter/golden.safetensors", "full.");
    parity_check_ip_adapter(&gpu_sdxl, "ip_adapter/clip_vision_tiny.safetensors",
                            "ip_adapter/ip_adapter_sdxl_tiny.safetensors", "ip_adapter/golden.safetensors", "sdxl.");
    static const char *const chain[2] = {"ip_adapter/ip_adapter_tiny.safetensors", "ip_adapter/ip_adapter_plus_tiny.safetensors"};
    static const char *const tokens[2] = {"ip_tokens", "plus.ip_tokens"};
    parity_check_ip_adapter_chain(&gpu_f32, chain, tokens, "ip_adapter/golden.safetensors", "ip_adapter/multi.safetensors");
}

/* PixArt: T5 (biased attention, RMS norms, tanh GELU) and the DiT (adaLN,
 * gated residuals, 72-wide heads, cross-attention row by row), in f32 and
 * in f16 compute */
static parity_fixture gpu_pixart = {.path = KILN_TEST_DATA "/pixart/tiny", .tol = 1e-4};
static void pixart_f32(void **s) { (void)s; parity_check_pixart(&gpu_pixart, "pixart/golden.safetensors"); }
static void pixart_f16(void **s)
{
    (void)s;
    parity_fixture fx = gpu_pixart;
    fx.tol = 1e-2;
    fx.f16_compute = true;
    parity_check_pixart(&fx, "pixart/golden.safetensors");
}

/* Flux: rotary q/k with per-head RMS norms, joint attention of two
 * streams, single blocks' attention and MLP side by side */
static void flux_f32(void **s)
{
    (void)s;
    parity_check_flux(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4}, "flux/golden.safetensors");
}
static void flux_f16(void **s)
{
    (void)s;
    parity_check_flux(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-2, .f16_compute = true},
                      "flux/golden.safetensors");
}

/* Chroma: Flux's blocks modulated from rows of one table its approximator
 * makes (ada_layer_norm and gated_add reading rows far into it) */
static void chroma_f32(void **s)
{
    (void)s;
    parity_check_chroma(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4},
                        "chroma/single/chroma-tiny.safetensors");
}
static void chroma_f16(void **s)
{
    (void)s;
    parity_check_chroma(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-2, .f16_compute = true},
                        "chroma/transformer/diffusion_pytorch_model.safetensors");
}

/* Flux ControlNets: a union model's mode token before the caption, a hint
 * encoder and a 2x2 patch conv, residuals on the image tokens */
static void flux_controlnets_f32(void **s)
{
    (void)s;
    parity_check_flux_controlnet(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4}, "instantx");
    parity_check_flux_controlnet(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4}, "xlabs");
    parity_check_flux_controlnet(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4}, "alimama");
}

/* SD3's MMDiT: SD 3.5 Medium's shape (q/k norms, the dual-attention block,
 * the caption-only last block, the position table) and SD 3.0's */
static void sd3_f32(void **s)
{
    (void)s;
    parity_check_sd3(&(parity_fixture){.path = "sd3/tiny", .backend = gpu_pixart.backend, .tol = 1e-4}, "sd35");
    parity_check_sd3(&(parity_fixture){.path = "sd3/tiny_sd3", .backend = gpu_pixart.backend, .tol = 1e-4}, "sd3");
}
static void sd3_f16(void **s)
{
    (void)s;
    parity_check_sd3(&(parity_fixture){.path = "sd3/tiny", .backend = gpu_pixart.backend, .tol = 1e-2,
                                       .f16_compute = true},
                     "sd35");
}

/* The tiny SD 3.5 transformer with the ControlNet `controlnet` (a path
 * under tests/data) against golden_path's out */
static void check_sd3_controlnet(const char *controlnet, const char *golden_path)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_controlnet *cn;
    char path[4096];
    assert_kiln_ok(kiln_backend_create(gpu_pixart.backend, NULL, &be));
    assert_kiln_ok(kiln_model_load(kiln_test_data("sd3/tiny"), be, &m));
    snprintf(path, sizeof path, "%s", kiln_test_data(controlnet));
    assert_kiln_ok(kiln_controlnet_load(m, path, &cn));
    parity_check_sd3_controlnet(&(parity_fixture){.tol = 1e-4}, m, cn, golden_path);
    kiln_controlnet_free(cn);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* An SD3 ControlNet of InstantX's kind: its blocks, the hint's patch conv,
 * residuals spread over the transformer's blocks */
static void sd3_controlnet_f32(void **s)
{
    (void)s;
    check_sd3_controlnet("sd3/controlnet/instantx", "sd3/controlnet/golden.safetensors");
}

/* An SD3 inpainting ControlNet: a hint of 17 channels, the mask's last */
static void sd3_inpainting_controlnet_f32(void **s)
{
    (void)s;
    check_sd3_controlnet("sd3/controlnet/inpaint", "sd3/controlnet/inpaint.golden.safetensors");
}

/* An SD 3.5 ControlNet of Stability's kind: blocks without a caption side
 * on the transformer's patch embedding and ComfyUI's positions */
static void sd35_controlnet_f32(void **s)
{
    (void)s;
    check_sd3_controlnet("sd3/controlnet_sd35/sd3.5-tiny-controlnet-depth.safetensors",
                         "sd3/controlnet_sd35/golden.safetensors");
}

/* ComfyUI-GGUF's Flux and llama.cpp's T5: Q8_0 and Q4_0..Q5_1 linear
 * weights widened in the matmul (f32 for f32 compute, f16 for the
 * tensor-core GEMM) */
static void gguf_flux_f32(void **s)
{
    (void)s;
    parity_check_gguf_flux(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4});
}
static void gguf_flux_f16(void **s)
{
    (void)s;
    parity_check_gguf_flux(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-2, .f16_compute = true});
}

/* The tiny Flux's f16 linear weights converted at load: fp8 through the fp8
 * GEMM variants, Q4_0 widened as a GGUF's */
static void flux_weights_converted_f32(void **s)
{
    (void)s;
    const parity_fixture fx = {.backend = gpu_pixart.backend, .tol = 1e-4};
    parity_check_flux_weight_dtype(&fx, "fp8_e4m3fn", KILN_F8_E4M3, "flux.fp8_e4m3fn.out");
    parity_check_flux_weight_dtype(&fx, "q4_0", KILN_Q4_0, "flux.q4_0.out");
}

/* XLabs' Flux IP-Adapter: each double block's image queries attending to 4 tokens */
static void flux_ip_adapter_f32(void **s)
{
    (void)s;
    parity_check_flux_ip_adapter(&(parity_fixture){.backend = gpu_pixart.backend, .tol = 1e-4});
}

static void txt2img_run(void **s)
{
    (void)s;
    kiln_backend *be;
    kiln_model *m;
    kiln_tokenizer *tok;
    assert_kiln_ok(kiln_backend_create(gpu_f32.backend, NULL, &be));
    assert_kiln_ok(kiln_model_load(gpu_f32.path, be, &m));
    assert_kiln_ok(kiln_tokenizer_create(&tok));
    parity_check_comfyui_run(m, tok, "txt2img_dpmpp_2m_karras_s8.safetensors");
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* ---- profiling ---- */

enum { PROFILED_N = 1 << 20 };
typedef struct profiled_ctx { float *in, *out; } profiled_ctx;

/* y = 2 (2x + x): scale, add, scale on 4 MB tensors */
static kiln_status profiled_fn(kiln_graph *g, void *ctx)
{
    profiled_ctx *c = ctx;
    int64_t shape[1] = {PROFILED_N};
    kiln_tensor *x, *a, *b, *y;
    kiln_status st;
    if ((st = kiln_graph_input(g, &x, KILN_F32, 1, shape, c->in)) != KILN_OK) return st;
    if ((st = kiln_graph_tensor(g, &a, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_scale(g, &(kiln_scale_params){PROFILED_N, 2.0f}, (const kiln_tensor *[]){x}, a))) return st;
    if ((st = kiln_graph_tensor(g, &b, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_add(g, &(kiln_add_params){PROFILED_N}, (const kiln_tensor *[]){a, x}, b))) return st;
    if ((st = kiln_graph_tensor(g, &y, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_scale(g, &(kiln_scale_params){PROFILED_N, 2.0f}, (const kiln_tensor *[]){b}, y))) return st;
    return kiln_graph_output(g, y, c->out, (size_t)PROFILED_N * sizeof *c->out);
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void check_profiled_run(kiln_backend *be, bool device_time)
{
    profiled_ctx c = {malloc(PROFILED_N * sizeof(float)), malloc(PROFILED_N * sizeof(float))};
    assert_non_null(c.in);
    assert_non_null(c.out);
    for (int i = 0; i < PROFILED_N; i++) c.in[i] = (float)(i % 1000) - 500.0f;
    kiln_graph *g;
    assert_kiln_ok(kiln_graph_create(be, &g));
    assert_kiln_ok(kiln_graph_run(g, profiled_fn, &c)); /* plans the arena, builds pipelines */

    kiln_op_stats stats = {0};
    kiln_graph_profile(g, &stats);
    for (int i = 0; i < PROFILED_N; i++) c.out[i] = -1.0f;
    double t0 = wall_seconds();
    assert_kiln_ok(kiln_graph_run(g, profiled_fn, &c));
    double wall = wall_seconds() - t0;
    kiln_graph_profile(g, NULL);
    for (int i = 0; i < PROFILED_N; i++) assert_float_equal(c.out[i], 6.0f * c.in[i], 0.0f);

    assert_int_equal(stats.device_time, device_time);
    double total = 0.0;
    for (int op = 0; op < KILN_OP_COUNT; op++) {
        long expect = op == KILN_OP_scale ? 2 : op == KILN_OP_add ? 1 : 0;
        assert_int_equal(stats.calls[op], expect);
        if (expect) assert_true(stats.seconds[op] > 0.0);
        else assert_true(stats.seconds[op] == 0.0);
        total += stats.seconds[op];
    }
    printf("profiled on %s: scale x2 %.3f ms, add %.3f ms, run %.3f ms (%s time)\n", be->name,
           1e3 * stats.seconds[KILN_OP_scale], 1e3 * stats.seconds[KILN_OP_add], 1e3 * wall,
           device_time ? "device" : "host");
    assert_true(total <= wall);
    kiln_graph_free(g);
    free(c.in);
    free(c.out);
}

static void ops_timed_by_the_device(void **s)
{
    (void)s;
    kiln_backend *be;
    assert_kiln_ok(kiln_backend_create(gpu_f32.backend, NULL, &be));
    check_profiled_run(be, true);
    kiln_backend_free(be);
}

int parity_gpu_main(const char *backend, const char *const required_env[])
{
    int rc;
    if (!backend_available(backend, required_env, &rc)) return rc;
    gpu_f32.backend = gpu_f16.backend = gpu_sd2.backend = gpu_sdxl.backend = gpu_pixart.backend = backend;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_f32), cmocka_unit_test(unet_f32), cmocka_unit_test(vae_f32),
        cmocka_unit_test(unet_f16), cmocka_unit_test(unet_f32_odd), cmocka_unit_test(unet_f32_freeu),
        cmocka_unit_test(unet_f32_perturbed), cmocka_unit_test(unet_f32_hypernetworks), cmocka_unit_test(sag_run_f32),
        cmocka_unit_test(deep_shrink_run_f32), cmocka_unit_test(hypertile_run_f32),
        cmocka_unit_test(unet_f32_lora), cmocka_unit_test(controlnet_f32), cmocka_unit_test(two_controlnets_f32),
        cmocka_unit_test(upscaler_f32), cmocka_unit_test(sd2_clip_f32), cmocka_unit_test(sd2_unet_f32),
        cmocka_unit_test(sdxl_unet_f32), cmocka_unit_test(sdxl_controlnet_f32),
        cmocka_unit_test(t2i_adapters_f32), cmocka_unit_test(ip_adapter_f32),
        cmocka_unit_test(pixart_f32), cmocka_unit_test(pixart_f16), cmocka_unit_test(flux_f32),
        cmocka_unit_test(flux_f16), cmocka_unit_test(chroma_f32), cmocka_unit_test(chroma_f16),
        cmocka_unit_test(flux_controlnets_f32), cmocka_unit_test(flux_ip_adapter_f32),
        cmocka_unit_test(gguf_flux_f32), cmocka_unit_test(gguf_flux_f16), cmocka_unit_test(flux_weights_converted_f32),
        cmocka_unit_test(sd3_f32), cmocka_unit_test(sd3_f16), cmocka_unit_test(sd3_controlnet_f32),
        cmocka_unit_test(sd3_inpainting_controlnet_f32), cmocka_unit_test(sd35_controlnet_f32),
        cmocka_unit_test(txt2img_run),
        cmocka_unit_test(ops_timed_by_the_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
