/* make_sd15_hashinit: writes a full-size random-weight SD 1.5 checkpoint
 * (original single-file key layout, 1,130 tensors, 1,066,235,307 parameters,
 * 2.13 GB in F16) whose bytes are a pure function of the seed, so that tests
 * can exercise the real architecture without downloading weights.
 *
 * It is bit-identical to make_sd15_hashinit.py (the reference goldens'
 * generator, whose docstring is normative). The definition, all integers
 * u64 modulo 2^64:
 *   mix(z)   = z ^= z >> 30; z *= M1; z ^= z >> 27; z *= M2; z ^= z >> 31
 *   s0       = mix(seed ^ fnv1a64(name) + GAMMA)      per tensor
 *   x_i      = mix(s0 + (i + 1) * GAMMA)              i = flat row-major index
 *   u_i      = ((x_i >> 40) * 2^-24) * 2 - 1          exact in float64
 *   v_i      = u_i * scale (+ offset), float64, no FMA
 *   stored   = v_i rounded once to binary16 (or binary32), nearest-even
 * with scale/offset from PyTorch's default init bounds: conv/linear weights
 * and their biases 1/sqrt(fan_in) (rules W, B), norm weights 1 + 0.1 u (N),
 * norm biases 0.1 u (NB), CLIP embeddings 0.02 sqrt(3) (E).
 *
 * Usage: make_sd15_hashinit [--seed S] [--dtype f16|f32] [--print NAME]... [OUT.safetensors]
 * --print shows the first values of a tensor and writes nothing. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "safetensors.h"
#include "status.h"

#define GAMMA 0x9e3779b97f4a7c15ull
#define DEFAULT_SEED 20251125ull
#define SD15_TENSORS 1130

typedef enum init_rule { RULE_W, RULE_B, RULE_N, RULE_NB, RULE_E } init_rule;
static const char *const rule_names[] = {"W", "B", "N", "NB", "E"};

typedef struct hash_tensor {
    char name[96];
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    init_rule rule;
    double scale, offset; /* v = u * scale, then + offset when offset != 0 */
} hash_tensor;

typedef struct key_set {
    hash_tensor t[SD15_TENSORS];
    size_t count;
    bool overflow; /* more tensors than SD 1.5 has, or a name too long: a bug here */
} key_set;

/* ---------------------------------------------------------------- the generator */

static inline uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t tensor_state(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the UTF-8 name */
    for (const char *p = name; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 0x100000001b3ull;
    }
    return mix((seed ^ h) + GAMMA);
}

/* u_i in [-1, 1) with 2^24 levels. */
static inline double hash_uniform(uint64_t s0, uint64_t i)
{
    uint64_t x = mix(s0 + (i + 1) * GAMMA);
    return ((double)(x >> 40) * 0x1p-24) * 2.0 - 1.0;
}

static inline double init_value(const hash_tensor *t, uint64_t s0, uint64_t i)
{
    double v = hash_uniform(s0, i) * t->scale;
    if (t->offset != 0.0) v += t->offset; /* a separate statement: never fused into an FMA */
    return v;
}

/* float64 -> binary16 in one round-to-nearest-even step (subnormals and the
 * sign of zero kept); rounding through float32 first would round twice. */
static inline uint16_t f64_to_f16(double d)
{
    uint64_t x;
    memcpy(&x, &d, sizeof x);
    uint16_t sign = (uint16_t)((x >> 48) & 0x8000);
    uint64_t bits = x & 0x7fffffffffffffffull;
    if (bits >= 0x7ff0000000000000ull) return sign | 0x7c00 | (bits > 0x7ff0000000000000ull ? 0x200 : 0);
    int e = (int)(bits >> 52) - 1023;
    if (e < -26) return sign; /* below 2^-26: under half the smallest subnormal */
    uint64_t m = (bits & 0xfffffffffffffull) | (1ull << 52);
    /* keep 11 significant bits for normals; subnormals count units of 2^-24 */
    int shift = e >= -14 ? 42 : 28 - e;
    uint64_t q = m >> shift, rem = m & ((1ull << shift) - 1), half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    uint64_t h = e >= -14 ? ((uint64_t)(e + 14) << 10) + q : q; /* a carry rolls into the exponent */
    return sign | (uint16_t)(h >= 0x7c00 ? 0x7c00 : h);
}

/* ---------------------------------------------------------------- the SD 1.5 key set */

static void add(key_set *k, const char *prefix, const char *suffix, init_rule rule, double scale, double offset,
                int ndim, const int64_t *shape)
{
    if (k->count == SD15_TENSORS) {
        k->overflow = true;
        return;
    }
    hash_tensor *t = &k->t[k->count++];
    if ((size_t)snprintf(t->name, sizeof t->name, "%s%s", prefix, suffix) >= sizeof t->name) k->overflow = true;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->rule = rule;
    t->scale = scale;
    t->offset = offset;
}

/* Conv2d: weight (O, I, K, K), bias (O). */
static void conv(key_set *k, const char *p, int64_t o, int64_t i, int64_t ks)
{
    double bound = 1.0 / sqrt((double)(i * ks * ks));
    add(k, p, ".weight", RULE_W, bound, 0.0, 4, (int64_t[]){o, i, ks, ks});
    add(k, p, ".bias", RULE_B, bound, 0.0, 1, (int64_t[]){o});
}

/* Linear: weight (O, I), bias (O) when it has one. */
static void linear(key_set *k, const char *p, int64_t o, int64_t i, bool bias)
{
    double bound = 1.0 / sqrt((double)i);
    add(k, p, ".weight", RULE_W, bound, 0.0, 2, (int64_t[]){o, i});
    if (bias) add(k, p, ".bias", RULE_B, bound, 0.0, 1, (int64_t[]){o});
}

/* GroupNorm / LayerNorm affine: weight (C), bias (C). */
static void norm(key_set *k, const char *p, int64_t c)
{
    add(k, p, ".weight", RULE_N, 0.1, 1.0, 1, (int64_t[]){c});
    add(k, p, ".bias", RULE_NB, 0.1, 0.0, 1, (int64_t[]){c});
}

#define PREFIX(buf, ...) (snprintf((buf), sizeof(buf), __VA_ARGS__), (buf))

enum { TIME_EMBED = 1280, CONTEXT = 768 };

static void unet_resblock(key_set *k, const char *p, int64_t ci, int64_t co)
{
    char b[128];
    norm(k, PREFIX(b, "%s.in_layers.0", p), ci);
    conv(k, PREFIX(b, "%s.in_layers.2", p), co, ci, 3);
    linear(k, PREFIX(b, "%s.emb_layers.1", p), co, TIME_EMBED, true);
    norm(k, PREFIX(b, "%s.out_layers.0", p), co);
    conv(k, PREFIX(b, "%s.out_layers.3", p), co, co, 3);
    if (ci != co) conv(k, PREFIX(b, "%s.skip_connection", p), co, ci, 1);
}

static void unet_transformer(key_set *k, const char *p, int64_t c)
{
    char b[128];
    norm(k, PREFIX(b, "%s.norm", p), c);
    conv(k, PREFIX(b, "%s.proj_in", p), c, c, 1);
    static const char *const attns[] = {"attn1", "attn2"};
    for (int a = 0; a < 2; a++) {
        int64_t kv = a == 0 ? c : CONTEXT; /* self-attention, then cross-attention to the text */
        linear(k, PREFIX(b, "%s.transformer_blocks.0.%s.to_q", p, attns[a]), c, c, false);
        linear(k, PREFIX(b, "%s.transformer_blocks.0.%s.to_k", p, attns[a]), c, kv, false);
        linear(k, PREFIX(b, "%s.transformer_blocks.0.%s.to_v", p, attns[a]), c, kv, false);
        linear(k, PREFIX(b, "%s.transformer_blocks.0.%s.to_out.0", p, attns[a]), c, c, true);
    }
    linear(k, PREFIX(b, "%s.transformer_blocks.0.ff.net.0.proj", p), 8 * c, c, true); /* GEGLU: 2 x 4c */
    linear(k, PREFIX(b, "%s.transformer_blocks.0.ff.net.2", p), c, 4 * c, true);
    for (int n = 1; n <= 3; n++) norm(k, PREFIX(b, "%s.transformer_blocks.0.norm%d", p, n), c);
    conv(k, PREFIX(b, "%s.proj_out", p), c, c, 1);
}

/* openaimodel.UNetModel: 320 channels x (1, 2, 4, 4), 2 res blocks per level,
 * attention on the first three levels. */
static void unet_keys(key_set *k)
{
    static const int64_t mult[4] = {1, 2, 4, 4};
    const char *u = "model.diffusion_model.";
    char p[128];
    linear(k, PREFIX(p, "%stime_embed.0", u), TIME_EMBED, 320, true);
    linear(k, PREFIX(p, "%stime_embed.2", u), TIME_EMBED, TIME_EMBED, true);
    conv(k, PREFIX(p, "%sinput_blocks.0.0", u), 320, 4, 3);
    int64_t skips[12] = {320}; /* channels of each skip connection, a stack */
    int nskips = 1, n = 1;
    int64_t ch = 320;
    for (int lvl = 0; lvl < 4; lvl++) {
        for (int r = 0; r < 2; r++, n++) {
            unet_resblock(k, PREFIX(p, "%sinput_blocks.%d.0", u, n), ch, 320 * mult[lvl]);
            ch = 320 * mult[lvl];
            if (lvl < 3) unet_transformer(k, PREFIX(p, "%sinput_blocks.%d.1", u, n), ch);
            skips[nskips++] = ch;
        }
        if (lvl < 3) {
            conv(k, PREFIX(p, "%sinput_blocks.%d.0.op", u, n++), ch, ch, 3);
            skips[nskips++] = ch;
        }
    }
    unet_resblock(k, PREFIX(p, "%smiddle_block.0", u), ch, ch);
    unet_transformer(k, PREFIX(p, "%smiddle_block.1", u), ch);
    unet_resblock(k, PREFIX(p, "%smiddle_block.2", u), ch, ch);
    n = 0;
    for (int lvl = 3; lvl >= 0; lvl--) {
        for (int r = 0; r < 3; r++, n++) {
            unet_resblock(k, PREFIX(p, "%soutput_blocks.%d.0", u, n), ch + skips[--nskips], 320 * mult[lvl]);
            ch = 320 * mult[lvl];
            int next = 1;
            if (lvl < 3) unet_transformer(k, PREFIX(p, "%soutput_blocks.%d.%d", u, n, next++), ch);
            if (lvl > 0 && r == 2) conv(k, PREFIX(p, "%soutput_blocks.%d.%d.conv", u, n, next), ch, ch, 3);
        }
    }
    norm(k, PREFIX(p, "%sout.0", u), 320);
    conv(k, PREFIX(p, "%sout.2", u), 4, 320, 3);
}

static void vae_resblock(key_set *k, const char *p, int64_t ci, int64_t co)
{
    char b[128];
    norm(k, PREFIX(b, "%s.norm1", p), ci);
    conv(k, PREFIX(b, "%s.conv1", p), co, ci, 3);
    norm(k, PREFIX(b, "%s.norm2", p), co);
    conv(k, PREFIX(b, "%s.conv2", p), co, co, 3);
    if (ci != co) conv(k, PREFIX(b, "%s.nin_shortcut", p), co, ci, 1);
}

static void vae_middle(key_set *k, const char *p, int64_t c)
{
    char b[128];
    vae_resblock(k, PREFIX(b, "%smid.block_1", p), c, c);
    norm(k, PREFIX(b, "%smid.attn_1.norm", p), c);
    static const char *const projs[] = {"q", "k", "v", "proj_out"};
    for (int i = 0; i < 4; i++) conv(k, PREFIX(b, "%smid.attn_1.%s", p, projs[i]), c, c, 1);
    vae_resblock(k, PREFIX(b, "%smid.block_2", p), c, c);
}

/* ldm AutoencoderKL: 128 channels x (1, 2, 4, 4), 2 res blocks (3 in the
 * decoder), 4 latent channels, the encoder giving mean and logvar. */
static void vae_keys(key_set *k)
{
    static const int64_t mult[4] = {1, 2, 4, 4};
    const char *e = "first_stage_model.encoder.", *d = "first_stage_model.decoder.";
    char p[128];
    conv(k, PREFIX(p, "%sconv_in", e), 128, 3, 3);
    int64_t ch = 128;
    for (int lvl = 0; lvl < 4; lvl++) {
        for (int r = 0; r < 2; r++) {
            vae_resblock(k, PREFIX(p, "%sdown.%d.block.%d", e, lvl, r), ch, 128 * mult[lvl]);
            ch = 128 * mult[lvl];
        }
        if (lvl < 3) conv(k, PREFIX(p, "%sdown.%d.downsample.conv", e, lvl), ch, ch, 3);
    }
    vae_middle(k, e, ch);
    norm(k, PREFIX(p, "%snorm_out", e), ch);
    conv(k, PREFIX(p, "%sconv_out", e), 8, ch, 3);
    conv(k, "first_stage_model.quant_conv", 8, 8, 1);
    conv(k, "first_stage_model.post_quant_conv", 4, 4, 1);
    ch = 512;
    conv(k, PREFIX(p, "%sconv_in", d), ch, 4, 3);
    vae_middle(k, d, ch);
    for (int lvl = 3; lvl >= 0; lvl--) {
        for (int r = 0; r < 3; r++) {
            vae_resblock(k, PREFIX(p, "%sup.%d.block.%d", d, lvl, r), ch, 128 * mult[lvl]);
            ch = 128 * mult[lvl];
        }
        if (lvl > 0) conv(k, PREFIX(p, "%sup.%d.upsample.conv", d, lvl), ch, ch, 3);
    }
    norm(k, PREFIX(p, "%snorm_out", d), ch);
    conv(k, PREFIX(p, "%sconv_out", d), 3, ch, 3);
}

/* CLIP ViT-L/14 text encoder, transformers' CLIPTextModel layout. */
static void clip_keys(key_set *k)
{
    const char *c = "cond_stage_model.transformer.text_model.";
    char p[128];
    double embed = 0.02 * sqrt(3.0); /* uniform with std 0.02 */
    add(k, c, "embeddings.token_embedding.weight", RULE_E, embed, 0.0, 2, (int64_t[]){49408, 768});
    add(k, c, "embeddings.position_embedding.weight", RULE_E, embed, 0.0, 2, (int64_t[]){77, 768});
    static const char *const projs[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    for (int l = 0; l < 12; l++) {
        for (int i = 0; i < 4; i++)
            linear(k, PREFIX(p, "%sencoder.layers.%d.self_attn.%s", c, l, projs[i]), 768, 768, true);
        norm(k, PREFIX(p, "%sencoder.layers.%d.layer_norm1", c, l), 768);
        linear(k, PREFIX(p, "%sencoder.layers.%d.mlp.fc1", c, l), 3072, 768, true);
        linear(k, PREFIX(p, "%sencoder.layers.%d.mlp.fc2", c, l), 768, 3072, true);
        norm(k, PREFIX(p, "%sencoder.layers.%d.layer_norm2", c, l), 768);
    }
    norm(k, PREFIX(p, "%sfinal_layer_norm", c), 768);
}

static bool sd15_keys(key_set *k)
{
    k->count = 0;
    k->overflow = false;
    unet_keys(k);
    vae_keys(k);
    clip_keys(k);
    return !k->overflow && k->count == SD15_TENSORS;
}

static int64_t numel(const hash_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* ---------------------------------------------------------------- writing */

typedef struct generator {
    const key_set *keys;
    uint64_t seed;
    kiln_dtype dtype; /* KILN_F16 or KILN_F32 */
} generator;

typedef struct fill_range {
    const generator *gen;
    const hash_tensor *t;
    uint64_t s0;
    void *dst;
    uint64_t begin, end; /* elements */
} fill_range;

static void *fill_elements(void *arg)
{
    const fill_range *r = arg;
    if (r->gen->dtype == KILN_F16) {
        uint16_t *dst = r->dst;
        for (uint64_t i = r->begin; i < r->end; i++) dst[i] = f64_to_f16(init_value(r->t, r->s0, i));
    } else {
        float *dst = r->dst;
        for (uint64_t i = r->begin; i < r->end; i++) dst[i] = (float)init_value(r->t, r->s0, i);
    }
    return NULL;
}

enum { MAX_THREADS = 16, MIN_ELEMENTS_PER_THREAD = 1 << 16 };

static kiln_status fill_tensor(void *ctx, size_t index, void *dst, size_t nbytes)
{
    const generator *gen = ctx;
    const hash_tensor *t = &gen->keys->t[index];
    uint64_t n = nbytes / kiln_dtype_size(gen->dtype);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (uint64_t)cpus;
    if (threads > n / MIN_ELEMENTS_PER_THREAD) threads = n / MIN_ELEMENTS_PER_THREAD ? n / MIN_ELEMENTS_PER_THREAD : 1;
    fill_range ranges[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    uint64_t started = 1; /* range 0 runs on this thread */
    uint64_t s0 = tensor_state(gen->seed, t->name);
    for (uint64_t i = 0; i < threads; i++)
        ranges[i] = (fill_range){gen, t, s0, dst, n * i / threads, n * (i + 1) / threads};
    for (uint64_t i = 1; i < threads; i++, started++)
        if (pthread_create(&ids[i], NULL, fill_elements, &ranges[i]) != 0) break;
    for (uint64_t i = started; i < threads; i++) fill_elements(&ranges[i]); /* threads that did not start */
    fill_elements(&ranges[0]);
    for (uint64_t i = 1; i < started; i++) pthread_join(ids[i], NULL);
    return KILN_OK;
}

static kiln_status write_checkpoint(const key_set *keys, uint64_t seed, kiln_dtype dtype, const char *path)
{
    kiln_st_entry entries[SD15_TENSORS];
    for (size_t i = 0; i < keys->count; i++) {
        const hash_tensor *t = &keys->t[i];
        entries[i] = (kiln_st_entry){.name = t->name, .dtype = dtype, .ndim = t->ndim};
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
    }
    char seed_text[24];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    const kiln_st_meta meta[] = {
        {"format", "pt"}, {"generator", "sd15-hashinit-v1"}, {"seed", seed_text}, {"dtype", kiln_dtype_name(dtype)},
    };
    generator gen = {keys, seed, dtype};
    return kiln_st_write_fill(path, entries, keys->count, meta, sizeof meta / sizeof meta[0], fill_tensor, &gen);
}

/* ---------------------------------------------------------------- --print */

/* Python's repr() of a float: the shortest text that reads back the same. */
static const char *float_repr(double v, char *buf, size_t size)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eni")) strncat(buf, ".0", size - strlen(buf) - 1); /* "1" -> "1.0" */
    return buf;
}

static int print_tensor(const key_set *keys, uint64_t seed, kiln_dtype dtype, const char *name)
{
    const hash_tensor *t = NULL;
    for (size_t i = 0; i < keys->count && !t; i++)
        if (strcmp(keys->t[i].name, name) == 0) t = &keys->t[i];
    if (!t) {
        fprintf(stderr, "make_sd15_hashinit: --print: no tensor '%s' in SD 1.5\n", name);
        return 1;
    }
    uint64_t s0 = tensor_state(seed, name);
    uint64_t n = numel(t) < 8 ? (uint64_t)numel(t) : 8;
    char scale[32], offset[32];
    printf("%s %s scale=%s offset=%s\n", name, rule_names[t->rule], float_repr(t->scale, scale, sizeof scale),
           float_repr(t->offset, offset, sizeof offset));
    double values[8];
    printf("  bits  ");
    for (uint64_t i = 0; i < n; i++) {
        double v = init_value(t, s0, i);
        if (dtype == KILN_F16) {
            uint16_t h = f64_to_f16(v);
            printf(" %04x", h);
            values[i] = kiln_f16_to_f32(h);
        } else {
            float f = (float)v;
            uint32_t bits;
            memcpy(&bits, &f, sizeof bits);
            printf(" %08x", bits);
            values[i] = f;
        }
    }
    printf("\n  values");
    for (uint64_t i = 0; i < n; i++) printf(" %.9g", values[i]);
    printf("\n  u(ref)");
    for (uint64_t i = 0; i < 8; i++) printf(" %.9g", hash_uniform(s0, i));
    printf("\n");
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *out)
{
    fprintf(out, "usage: make_sd15_hashinit [--seed S] [--dtype f16|f32] [--print NAME]... [OUT.safetensors]\n"
                 "  writes the random-weight SD 1.5 checkpoint of make_sd15_hashinit.py (default seed %llu, f16);\n"
                 "  --print NAME shows the first values of a tensor instead of writing (repeatable)\n",
                 DEFAULT_SEED);
}

int main(int argc, char **argv)
{
    uint64_t seed = DEFAULT_SEED;
    kiln_dtype dtype = KILN_F16;
    const char *out = NULL;
    const char **prints = calloc((size_t)argc, sizeof *prints);
    size_t nprints = 0;
    if (!prints) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        bool takes_value = strcmp(a, "--seed") == 0 || strcmp(a, "--dtype") == 0 || strcmp(a, "--print") == 0;
        if (takes_value && i + 1 == argc) {
            fprintf(stderr, "make_sd15_hashinit: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--seed") == 0) {
            const char *text = argv[++i];
            char *end;
            errno = 0;
            unsigned long long s = strtoull(text, &end, 10);
            if (text[0] < '0' || text[0] > '9' || *end || errno) {
                fprintf(stderr, "make_sd15_hashinit: --seed '%s' is not an integer in 0..2^64-1\n", text);
                return 2;
            }
            seed = s;
        } else if (strcmp(a, "--dtype") == 0) {
            const char *d = argv[++i];
            if (strcmp(d, "f16") == 0) dtype = KILN_F16;
            else if (strcmp(d, "f32") == 0) dtype = KILN_F32;
            else {
                fprintf(stderr, "make_sd15_hashinit: --dtype '%s' is not f16 or f32\n", d);
                return 2;
            }
        } else if (strcmp(a, "--print") == 0) {
            prints[nprints++] = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "make_sd15_hashinit: unknown flag '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (out) {
            fprintf(stderr, "make_sd15_hashinit: more than one output path ('%s', '%s')\n", out, a);
            return 2;
        } else {
            out = a;
        }
    }
    if (!nprints && !out) {
        usage(stderr);
        return 2;
    }

    static key_set keys;
    if (!sd15_keys(&keys)) {
        fprintf(stderr, "make_sd15_hashinit: built %zu tensors, expected %d\n", keys.count, SD15_TENSORS);
        return 1;
    }
    if (nprints) {
        int rc = 0;
        for (size_t i = 0; i < nprints; i++) rc |= print_tensor(&keys, seed, dtype, prints[i]);
        free(prints);
        return rc;
    }
    free(prints);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kiln_status st = write_checkpoint(&keys, seed, dtype, out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st != KILN_OK) {
        fprintf(stderr, "make_sd15_hashinit: %s\n", kiln_last_error());
        return 1;
    }
    uint64_t params = 0;
    for (size_t i = 0; i < keys.count; i++) params += (uint64_t)numel(&keys.t[i]);
    printf("wrote %s  %zu tensors  %llu parameters  %s  %.1f s\n", out, keys.count, (unsigned long long)params,
           kiln_dtype_name(dtype), (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
