/* bench: how fast kiln runs a model's parts on a backend.
 *
 *   bench --model FILE --width W --height H --steps N --backend cpu [--threads T] [--no-replay] [--json]
 *         [--trace FILE] [--hypertile TILE[,SWAP[,DEPTH]]]
 *
 * Times loading, the text encoder (one 77-token batch of 2: prompt and
 * negative), N UNet steps at batch 2 (what CFG costs per step), and one VAE
 * decode; reports peak resident memory, the activation arena and per-op
 * totals. Nothing is compared here: peers are run side by side by the
 * scripts in bench/ and the ratios written to bench/RESULTS.md. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "hypertile.h"
#include "model.h"
#include "pipeline.h"
#include "status.h"

typedef struct bench_options {
    const char *model, *backend, *trace;
    kiln_dtype compute;
    int width, height, steps, threads, device;
    bool json, no_replay, compute_set;
    kiln_model_parts parts; /* files beside a single-file model; NULLs for none */
    bool hypertile_given;   /* --hypertile */
    kiln_hypertile hypertile;
} bench_options;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static size_t peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

typedef struct bench_ctx {
    const kiln_model *m;
    int latent_h, latent_w;
    float *latent;  /* (2,4,h,w) */
    float *context; /* (2,77,D) */
    float *y;       /* (2,adm) SDXL's vector, zeros; NULL for other UNets */
    float t[2];
    int32_t ids[2 * 77];
    /* a DiT's: both rows read the same T5 rows (zeros) and, Flux, pooled output */
    int caption_tokens; /* PixArt-alpha's longest prompt, ComfyUI's Flux padding */
    float *caption;     /* (2,T,D) */
    float *pooled;      /* (2,P) */
    float guidance[2];
    float *out;         /* the DiT's output rows */
    const kiln_hypertile *hypertile; /* HyperTile on the UNet (NULL: none), drawing from seed 0 every step */
    kiln_rng draws;
} bench_ctx;

static kiln_status text_fn(kiln_graph *g, void *ctx)
{
    bench_ctx *b = ctx;
    tensor *ids, *out;
    TRY(kiln_graph_input(g, &ids, KILN_I32, 2, (int64_t[]){2, 77}, b->ids));
    TRY(kiln_clip_forward(g, &b->m->clips[0], ids, NULL, 0, &out, NULL)); /* the first tower times the text step */
    return kiln_graph_output(g, out, b->context, kiln_tensor_nbytes(out));
}

static kiln_status unet_fn(kiln_graph *g, void *ctx)
{
    bench_ctx *b = ctx;
    const unet_config *cfg = b->m->unet.config;
    tensor *x, *t, *c, *eps;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, (int64_t[]){2, cfg->in_channels, b->latent_h, b->latent_w}, b->latent));
    TRY(kiln_graph_input(g, &t, KILN_F32, 1, (int64_t[]){2}, b->t));
    TRY(kiln_graph_input(g, &c, KILN_F32, 3, (int64_t[]){2, 77, cfg->context_dim}, b->context));
    tensor *y = NULL;
    if (b->y) TRY(kiln_graph_input(g, &y, KILN_F32, 2, (int64_t[]){2, cfg->adm_channels}, b->y));
    kiln_rng_seed(&b->draws, 0);
    const kiln_unet_cond cond = {.t = t, .context = c, .y = y, .hypertile = b->hypertile, .hypertile_rng = &b->draws};
    TRY(kiln_unet_forward(g, &b->m->unet, x, &cond, NULL, NULL, &eps));
    return kiln_graph_output(g, eps, b->latent, kiln_tensor_nbytes(eps));
}

/* One call's model work on the two rows of CFG: the UNet, or a DiT (which
 * runs its own graph). */
static kiln_status model_step(kiln_graph *g, bench_ctx *b)
{
    const kiln_model *m = b->m;
    switch (m->family->arch) {
    case KILN_ARCH_PIXART: {
        const int f = kiln_vae_factor(m->vae.config), T = b->caption_tokens;
        const float *captions[2] = {b->caption, b->caption};
        const int tokens[2] = {T, T};
        const float height = (float)(f * b->latent_h), width = (float)(f * b->latent_w);
        const float sizes[4] = {height, width, height, width};
        pixart_input in = {.rows = 2, .h = b->latent_h, .w = b->latent_w, .latent = b->latent, .timesteps = b->t,
                           .captions = captions, .caption_tokens = tokens, .sizes = sizes};
        return kiln_pixart_forward(g, &m->pixart, &in, b->out);
    }
    case KILN_ARCH_FLUX:
    case KILN_ARCH_SD3: {
        flux_input in = {.rows = 2, .h = b->latent_h / 2, .w = b->latent_w / 2, .tokens = b->latent,
                         .context = b->caption, .context_tokens = b->caption_tokens, .pooled = b->pooled,
                         .timesteps = b->t, .guidance = kiln_flux_reads_guidance(&m->flux) ? b->guidance : NULL};
        return kiln_flux_forward(g, &m->flux, &in, b->out);
    }
    case KILN_ARCH_UNET: break;
    }
    return kiln_graph_run(g, unet_fn, b);
}

/* The text step: the first CLIP tower on both rows, or a DiT's T5 on its
 * caption's length. */
static kiln_status text_step(kiln_graph *g, bench_ctx *b)
{
    if (!kiln_model_is_dit(b->m)) return kiln_graph_run(g, text_fn, b);
    if (!b->m->t5.hidden) return KILN_OK; /* SD3 without T5 */
    int32_t ids[KILN_FLUX_T5_TOKENS] = {0}; /* padding */
    return kiln_t5_encode_ids(b->m, ids, b->caption_tokens, b->caption);
}

static kiln_status decode_fn(kiln_graph *g, void *ctx)
{
    bench_ctx *b = ctx;
    tensor *z, *img;
    TRY(kiln_graph_input(g, &z, KILN_F32, 4, (int64_t[]){1, b->m->vae.config->latent_channels, b->latent_h, b->latent_w},
                         b->latent));
    TRY(kiln_vae_decoder_forward(g, &b->m->vae, z, &img));
    return KILN_OK;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: bench --model FILE [--width 512] [--height 512] [--steps 4] [--backend cpu|vulkan|cuda]\n"
                "             [--compute f32|f16|bf16] [--threads T] [--device N] [--no-replay] [--json]\n"
                "             [--trace FILE] [--vae FILE] [--text-encoder FILE]... [--tokenizer FILE] [--config DIR]\n"
                "             [--weight-dtype TYPE] [--hypertile TILE[,SWAP[,DEPTH]]]\n"
                "  --vae, --text-encoder, --tokenizer, --config, --weight-dtype\n"
                "               the files beside a single-file model, as gen takes them (flux1-dev.safetensors)\n"
                "  --compute    GPU arithmetic for matmul/conv/attention (default f16 on cuda and on vulkan\n"
                "               with cooperative matrices, f32 elsewhere; f16/bf16 use tensor cores)\n"
                "  --no-replay  launch every op of every step instead of replaying a recorded step (CUDA graphs)\n"
                "  --trace      write the profiled step op by op to FILE: name, ms, operand types and shapes\n"
                "               (bench/compare_traces.py sets two such files side by side)\n"
                "  --hypertile  a UNet's steps with HyperTile (gen's flag; the same tiles every step)\n");
}

static int parse(int argc, char **argv, bench_options *o)
{
    *o = (bench_options){.backend = "cpu", .width = 512, .height = 512, .steps = 4, .device = -1};
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},   {"width", required_argument, 0, 'W'},
        {"height", required_argument, 0, 'H'},  {"steps", required_argument, 0, 's'},
        {"backend", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"device", required_argument, 0, 'd'},  {"json", no_argument, 0, 'j'},
        {"compute", required_argument, 0, 'c'}, {"no-replay", no_argument, 0, 'r'},
        {"trace", required_argument, 0, 'T'},   {"help", no_argument, 0, 'h'},
        {"vae", required_argument, 0, 'V'},     {"text-encoder", required_argument, 0, 'E'},
        {"tokenizer", required_argument, 0, 'K'}, {"config", required_argument, 0, 'C'},
        {"weight-dtype", required_argument, 0, 'D'}, {"hypertile", required_argument, 0, 'Y'}, {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'W': o->width = atoi(optarg); break;
        case 'H': o->height = atoi(optarg); break;
        case 's': o->steps = atoi(optarg); break;
        case 'b': o->backend = optarg; break;
        case 't': o->threads = atoi(optarg); break;
        case 'd': o->device = atoi(optarg); break;
        case 'j': o->json = true; break;
        case 'r': o->no_replay = true; break;
        case 'T': o->trace = optarg; break;
        case 'V': o->parts.vae = optarg; break;
        case 'E': {
            int k = 0;
            while (k < KILN_MAX_TEXT_ENCODER_PARTS && o->parts.text_encoders[k]) k++;
            if (k == KILN_MAX_TEXT_ENCODER_PARTS) {
                fprintf(stderr, "bench: --text-encoder %s: at most 3 (SD3's CLIP-L, bigG and T5)\n", optarg);
                return 2;
            }
            o->parts.text_encoders[k] = optarg;
            break;
        }
        case 'K': o->parts.tokenizer = optarg; break;
        case 'C': o->parts.config = optarg; break;
        case 'D': o->parts.weight_dtype = optarg; break;
        case 'c':
            if (!kiln_compute_from_name(optarg, &o->compute)) {
                fprintf(stderr, "bench: --compute %s: must be f32, f16 or bf16\n", optarg);
                return 2;
            }
            o->compute_set = true;
            break;
        case 'Y': {
            o->hypertile = (kiln_hypertile){256, 2, 0, false};
            const int got = sscanf(optarg, "%d,%d,%d", &o->hypertile.tile_size, &o->hypertile.swap_size,
                                   &o->hypertile.max_depth);
            if (got < 1 || kiln_hypertile_check(&o->hypertile) != KILN_OK) {
                fprintf(stderr, "bench: --hypertile %s: TILE[,SWAP[,DEPTH]]: a tile 1..2048 pixels, swap 1..128, "
                        "depth 0..10\n", optarg);
                return 2;
            }
            o->hypertile_given = true;
            break;
        }
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (!o->model) {
        fprintf(stderr, "bench: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (o->width < 8 || o->height < 8 || o->width > 4096 || o->height > 4096 || o->steps < 1 || o->steps > 1000) {
        fprintf(stderr, "bench: --width/--height must be 8..4096 and --steps 1..1000\n");
        return 2;
    }
    return 0;
}

static int fail(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, kiln_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    bench_options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;

    kiln_backend *be;
    kiln_backend_options bo = {.threads = o.threads, .device = o.device, .compute = o.compute,
                               .compute_auto = !o.compute_set};
    if (kiln_backend_create(o.backend, &bo, &be) != KILN_OK) return fail("--backend");

    double t0 = now_ms();
    kiln_model *m;
    kiln_checkpoint *ck;
    if (kiln_checkpoint_open(o.model, &ck) != KILN_OK) return fail("--model");
    if (kiln_checkpoint_add_parts(ck, &o.parts) != KILN_OK) {
        kiln_checkpoint_close(ck);
        return fail("the files beside --model");
    }
    if (kiln_model_load_checkpoint(ck, be, &m) != KILN_OK) return fail("--model");
    double load_ms = now_ms() - t0;
    const bool dit = kiln_model_is_dit(m), flux = kiln_model_is_mmdit(m), sd3 = m->family->arch == KILN_ARCH_SD3;
    int f = kiln_vae_factor(m->vae.config) * (dit ? 2 : 1); /* a DiT's 2x2 patches */
    if (o.width % f || o.height % f) {
        fprintf(stderr, "bench: --width/--height must be multiples of %d for this model\n", f);
        return 2;
    }
    f = kiln_vae_factor(m->vae.config);
    /* the first step: timestep 999, Flux's sigma 1 or SD3's 1000 sigma */
    const float t = sd3 ? 1000.0f : flux ? 1.0f : 999.0f;
    /* SD3's caption: 77 CLIP rows, then T5's 77 */
    if (o.hypertile_given && dit) {
        fprintf(stderr, "bench: --hypertile tiles a UNet's self-attention; this is a DiT\n");
        return 2;
    }
    bench_ctx b = {.m = m, .latent_h = o.height / f, .latent_w = o.width / f, .t = {t, t},
                   .caption_tokens = sd3 ? 77 + KILN_SD3_T5_TOKENS : flux ? KILN_FLUX_T5_TOKENS : 120,
                   .guidance = {(float)KILN_FLUX_GUIDANCE, (float)KILN_FLUX_GUIDANCE},
                   .hypertile = o.hypertile_given ? &o.hypertile : NULL};
    const int channels = dit ? kiln_model_latent_channels(m) : m->unet.config->in_channels;
    size_t latent_n = (size_t)2 * channels * b.latent_h * b.latent_w;
    b.latent = calloc(latent_n, sizeof(float));
    if (dit) {
        const int out_channels = flux ? channels : m->pixart.out_channels;
        b.out = calloc((size_t)2 * out_channels * b.latent_h * b.latent_w, sizeof(float));
        b.caption = calloc((size_t)2 * b.caption_tokens * kiln_model_context_dim(m), sizeof(float));
        if (flux) b.pooled = calloc((size_t)2 * m->flux.pooled_dim, sizeof(float));
    } else {
        b.context = calloc((size_t)2 * 77 * m->unet.config->context_dim, sizeof(float));
        if (m->unet.config->adm_channels) b.y = calloc((size_t)2 * m->unet.config->adm_channels, sizeof(float));
    }
    for (size_t i = 0; i < latent_n; i++) b.latent[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < 2 * 77; i++) b.ids[i] = 49407; /* pad */
    b.ids[0] = b.ids[77] = 49406;                       /* BOS; row 0 "a photograph", row 1 empty */
    b.ids[1] = 320;
    b.ids[2] = 8853;

    kiln_op_stats stats = {0};
    kiln_graph *g;
    if (kiln_graph_create(be, &g) != KILN_OK) return fail("graph");
    t0 = now_ms();
    if (text_step(g, &b) != KILN_OK) return fail("text encoder");
    double text_ms = now_ms() - t0;

    /* two warm-up steps (the first plans the arena and lets GPU backends build
     * pipelines and caches, the second records the step where the backend
     * replays), the timed steps, then one step synchronised after every op for
     * the per-op breakdown: the sync would distort a GPU's step time */
    kiln_graph_set_replay(g, !o.no_replay);
    for (int s = 0; s < 2; s++)
        if (model_step(g, &b) != KILN_OK) return fail("unet");
    t0 = now_ms();
    for (int s = 0; s < o.steps; s++)
        if (model_step(g, &b) != KILN_OK) return fail("unet");
    double unet_s = (now_ms() - t0) / 1e3 / o.steps;
    bool replayed = kiln_graph_replays(g) >= o.steps; /* every timed step */
    size_t unet_arena = kiln_graph_arena_bytes(g);
    if (o.trace && !(stats.trace = fopen(o.trace, "w"))) {
        fprintf(stderr, "bench: --trace %s: cannot write: %s\n", o.trace, strerror(errno));
        return 1;
    }
    kiln_graph_profile(g, &stats);
    t0 = now_ms();
    kiln_status st = model_step(g, &b);
    double profiled_s = (now_ms() - t0) / 1e3;
    kiln_graph_profile(g, NULL);
    if (stats.trace && fclose(stats.trace) != 0 && st == KILN_OK) {
        fprintf(stderr, "bench: --trace %s: cannot write: %s\n", o.trace, strerror(errno));
        remove(o.trace);
        return 1;
    }
    if (st != KILN_OK) {
        if (o.trace) remove(o.trace); /* no half a step */
        return fail("unet");
    }

    kiln_graph *gd;
    if (kiln_graph_create(be, &gd) != KILN_OK) return fail("graph");
    t0 = now_ms();
    if (kiln_graph_run(gd, decode_fn, &b) != KILN_OK) return fail("vae decode");
    double vae_ms = now_ms() - t0;
    size_t vae_arena = kiln_graph_arena_bytes(gd);

    const char *net = dit ? m->info.unet_name : m->unet.config->name; /* "unet" in the report: the denoiser */
    const char *precision = be->compute == KILN_F16    ? "f16 compute (f32 accumulate), weights as stored"
                            : be->compute == KILN_BF16 ? "bf16 compute (f32 accumulate), weights as stored"
                                                     : "f32 compute, weights as stored";
    if (o.json) {
        printf("{\"model\":\"%s\",\"unet\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,"
               "\"width\":%d,\"height\":%d,\"steps\":%d,\"batch\":2,\"hypertile\":%s,\"precision\":\"%s\","
               "\"weights_dtype\":\"%s\","
               "\"load_ms\":%.1f,\"text_encoder_ms\":%.1f,\"unet_s_per_step\":%.4f,\"it_per_s\":%.4f,"
               "\"vae_decode_ms\":%.1f,\"peak_rss_bytes\":%zu,\"unet_arena_bytes\":%zu,\"vae_arena_bytes\":%zu,"
               "\"weight_bytes\":%zu,\"replayed\":%s,\"op_timing\":\"%s\",\"ops\":{",
               o.model, net, be->name, be->device_name, be->threads, o.width, o.height, o.steps,
               o.hypertile_given ? "true" : "false", precision, kiln_dtype_name(m->info.unet_dtype), load_ms, text_ms, unet_s, 1.0 / unet_s, vae_ms,
               peak_rss_bytes(), unet_arena, vae_arena, kiln_weights_bytes(m->weights), replayed ? "true" : "false",
               stats.device_time ? "device" : "host");
        bool first = true;
        for (int i = 0; i < KILN_OP_COUNT; i++) {
            if (!stats.calls[i]) continue;
            printf("%s\"%s\":{\"calls\":%ld,\"ms\":%.2f}", first ? "" : ",", kiln_op_names[i], stats.calls[i],
                   1e3 * stats.seconds[i]);
            first = false;
        }
        printf("}}\n");
    } else {
        printf("model          %s (%s, %s weights)\n", o.model, net,
               kiln_dtype_name(m->info.unet_dtype));
        printf("backend        %s: %s (%s)\n", be->name, be->device_name, precision);
        printf("size           %dx%d, batch 2 (CFG), %d steps%s\n", o.width, o.height, o.steps,
               o.hypertile_given ? ", HyperTile" : "");
        printf("load           %10.1f ms\n", load_ms);
        printf("text encoder   %10.1f ms\n", text_ms);
        printf("unet           %10.3f s/step  (%.3f it/s%s)\n", unet_s, 1.0 / unet_s,
               replayed ? ", each step replayed from a recording" : "");
        printf("vae decode     %10.1f ms\n", vae_ms);
        printf("weights        %10.1f MiB (as held: quantized ones in their blocks)\n",
               kiln_weights_bytes(m->weights) / 1048576.0);
        printf("peak RSS       %10.1f MiB\n", peak_rss_bytes() / 1048576.0);
        printf("unet arena     %10.1f MiB\n", unet_arena / 1048576.0);
        printf("\nper op (one UNet step, synchronised after every op: %.3f s; %s)\n", profiled_s,
               stats.device_time ? "each op timed by the device" : "each op timed on the host, with its wait");
        for (int i = 0; i < KILN_OP_COUNT; i++)
            if (stats.calls[i])
                printf("  %-20s %6ld calls %10.1f ms  %5.1f%%\n", kiln_op_names[i], stats.calls[i],
                       1e3 * stats.seconds[i], 100.0 * stats.seconds[i] / profiled_s);
    }
    kiln_graph_free(g);
    kiln_graph_free(gd);
    free(b.latent);
    free(b.context);
    free(b.y);
    free(b.caption);
    free(b.pooled);
    free(b.out);
    kiln_model_free(m);
    kiln_backend_free(be);
    return 0;
}
