#include "lora.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "tensor.h"

/* ---- a module's tensors --------------------------------------------------- */

typedef enum part {
    PART_DOWN, PART_UP, PART_ALPHA, PART_MID,         /* LoRA, LoCon (mid: its Tucker core) */
    PART_HADA_W1_A, PART_HADA_W1_B, PART_HADA_W2_A, PART_HADA_W2_B, PART_HADA_T1, PART_HADA_T2, /* LoHa */
    /* LoKr: kron(w1, w2), each side whole or a product a @ b (w2 also through a Tucker core) */
    PART_LOKR_W1, PART_LOKR_W1_A, PART_LOKR_W1_B, PART_LOKR_W2, PART_LOKR_W2_A, PART_LOKR_W2_B, PART_LOKR_T2,
    PART_DORA_SCALE, /* DoRA's magnitude, on any kind */
    /* differences added as they are: the weight's (LyCORIS' full), a norm layer's weight's, a bias's */
    PART_DIFF, PART_W_NORM, PART_DIFF_B, PART_B_NORM,
    PART_COUNT
} part;

/* Tensor name endings, each writer's spelling of the same part. */
static const struct {
    const char *suffix;
    part part;
} part_suffixes[] = {
    {".lora_down.weight", PART_DOWN},         {".lora_up.weight", PART_UP},             /* kohya */
    {".lora_A.weight", PART_DOWN},            {".lora_B.weight", PART_UP},              /* PEFT */
    {".lora.down.weight", PART_DOWN},         {".lora.up.weight", PART_UP},             /* diffusers */
    {".lora_linear_layer.down.weight", PART_DOWN}, {".lora_linear_layer.up.weight", PART_UP},
    {".alpha", PART_ALPHA},                   {".lora_mid.weight", PART_MID},
    {".down.weight", PART_DOWN},              {".up.weight", PART_UP},                  /* XLabs (Flux) */
    {".hada_w1_a", PART_HADA_W1_A},           {".hada_w1_b", PART_HADA_W1_B},
    {".hada_w2_a", PART_HADA_W2_A},           {".hada_w2_b", PART_HADA_W2_B},
    {".hada_t1", PART_HADA_T1},               {".hada_t2", PART_HADA_T2},
    {".lokr_w1", PART_LOKR_W1},               {".lokr_w1_a", PART_LOKR_W1_A},
    {".lokr_w1_b", PART_LOKR_W1_B},           {".lokr_w2", PART_LOKR_W2},
    {".lokr_w2_a", PART_LOKR_W2_A},           {".lokr_w2_b", PART_LOKR_W2_B},
    {".lokr_t2", PART_LOKR_T2},               {".dora_scale", PART_DORA_SCALE},
    {".diff", PART_DIFF},                     {".w_norm", PART_W_NORM},
    {".diff_b", PART_DIFF_B},                 {".b_norm", PART_B_NORM},
};

/* Parts of module kinds kiln does not merge, named in the refusal. */
static const struct {
    const char *suffix, *kind;
} refused_suffixes[] = {
    {".set_weight", "set-weight"},
};

typedef struct module {
    char name[256]; /* the tensor names' common stem */
    const kiln_st_tensor *parts[PART_COUNT];
} module;

static bool ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (n <= m || strcmp(s + n - m, suffix) != 0) return false;
    *stem = n - m;
    return true;
}

static int by_module_name(const void *a, const void *b)
{
    return strcmp(((const module *)a)->name, ((const module *)b)->name);
}

/* Groups the file's tensors into modules, sorted by name. */
static kiln_status read_modules(const kiln_st_file *f, module **out, size_t *count)
{
    const char *path = kiln_st_path(f);
    size_t n = kiln_st_count(f), used = 0;
    module *mods = calloc(n ? n : 1, sizeof *mods);
    if (!mods) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", path);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        size_t stem = 0, k;
        for (k = 0; k < sizeof refused_suffixes / sizeof *refused_suffixes; k++)
            if (ends_with(t->name, refused_suffixes[k].suffix, &stem)) {
                free(mods);
                return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: tensor '%s' belongs to a %s module, which kiln cannot merge",
                                 path, t->name, refused_suffixes[k].kind);
            }
        for (k = 0; k < sizeof part_suffixes / sizeof *part_suffixes; k++)
            if (ends_with(t->name, part_suffixes[k].suffix, &stem)) break;
        if (k == sizeof part_suffixes / sizeof *part_suffixes || stem >= sizeof mods->name) {
            free(mods);
            if (strncmp(t->name, "model.diffusion_model.", 22) == 0 || strncmp(t->name, "first_stage_model.", 18) == 0 ||
                strncmp(t->name, "cond_stage_model.", 17) == 0)
                return kiln_fail(KILN_ERR_FORMAT, "%s is a checkpoint, not a LoRA (tensor '%s')", path, t->name);
            return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s' is no part of a LoRA, LoCon, LoHa, LoKr or "
                             "difference module", path, t->name);
        }
        module *m = NULL;
        for (size_t j = used; j-- > 0 && !m;) /* a module's parts are usually neighbours */
            if (strlen(mods[j].name) == stem && strncmp(mods[j].name, t->name, stem) == 0) m = &mods[j];
        if (!m) {
            m = &mods[used++];
            memcpy(m->name, t->name, stem);
        }
        m->parts[part_suffixes[k].part] = t;
    }
    qsort(mods, used, sizeof *mods, by_module_name);
    *out = mods;
    *count = used;
    return KILN_OK;
}

/* ---- module names -> canonical weight names -------------------------------- */

/* kohya writes a module path with its dots turned into underscores; these are
 * the path components that have underscores of their own (the UNet's in both
 * naming schemes, CLIP's), so the dots can be put back. */
static const char *const words_with_underscores[] = {
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "proj_in", "proj_out", "to_q", "to_k", "to_v",
    "to_out", "time_emb_proj", "conv_shortcut", "conv_in", "conv_out", "conv_norm_out", "time_embedding",
    "linear_1", "linear_2", "input_blocks", "middle_block", "output_blocks", "in_layers", "out_layers",
    "emb_layers", "skip_connection", "time_embed", "text_model", "self_attn", "q_proj", "k_proj", "v_proj",
    "out_proj", "final_layer_norm", "layer_norm1", "layer_norm2", "token_embedding", "position_embedding",
    /* Flux in BFL's names */
    "double_blocks", "single_blocks", "img_attn", "txt_attn", "img_mod", "txt_mod", "img_mlp", "txt_mlp",
    "final_layer", "adaLN_modulation", "time_in", "vector_in", "guidance_in", "txt_in", "img_in", "in_layer",
    "out_layer", "distilled_guidance_layer", "in_proj", /* Chroma's approximator (out_proj: CLIP's above) */
    /* ... and in diffusers' */
    "single_transformer_blocks", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_context",
    "norm1_context", "proj_mlp", "norm_out", "x_embedder", "context_embedder", "time_text_embed",
    "timestep_embedder", "guidance_embedder", "text_embedder",
    /* SD3 in Stability's names */
    "joint_blocks", "x_block", "context_block", "t_embedder", "y_embedder", "ln_q", "ln_k",
};

static bool underscores_to_dots(const char *in, char *out, size_t size)
{
    size_t o = 0;
    while (*in) {
        size_t len = 0;
        for (size_t k = 0; k < sizeof words_with_underscores / sizeof *words_with_underscores; k++) {
            size_t n = strlen(words_with_underscores[k]);
            if (n > len && strncmp(in, words_with_underscores[k], n) == 0 && (in[n] == '_' || in[n] == '\0')) len = n;
        }
        if (!len) len = strcspn(in, "_");
        if (o + len + 2 > size) return false;
        memcpy(out + o, in, len);
        o += len;
        in += len;
        if (*in == '_') {
            out[o++] = '.';
            in++;
        }
    }
    out[o] = '\0';
    return true;
}

/* The original-layout UNet blocks, as against diffusers' down_blocks etc. */
static bool is_original_unet_name(const char *dotted)
{
    static const char *const starts[] = {"input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out."};
    for (size_t k = 0; k < sizeof starts / sizeof *starts; k++)
        if (strncmp(dotted, starts[k], strlen(starts[k])) == 0) return true;
    return false;
}

/* Module name prefixes: the writer's naming, and which part of the model
 * (0 the UNet, 1 the first text tower, 2 SDXL's second). */
typedef struct module_prefix {
    const char *prefix;
    bool underscored;
    int tower;
} module_prefix;

static const module_prefix module_prefixes[] = {
    {"lora_unet_", true, 0}, {"lora_te_", true, 1},       /* kohya, LyCORIS */
    {"lora_te1_", true, 1},  {"lora_te2_", true, 2},      /* ... for SDXL */
    {"unet.", false, 0},     {"text_encoder.", false, 1}, /* diffusers, PEFT */
    {"text_encoder_2.", false, 2},
    {"diffusion_model.", false, 0},                       /* ComfyUI */
    {"transformer.", false, 0},                           /* diffusers, PEFT: PixArt's and Flux's DiT */
    {"lora_transformer_", true, 0},                       /* OneTrainer, SimpleTuner: Flux in diffusers' names */
    {"double_blocks.", false, 0}, {"single_blocks.", false, 0}, /* XLabs' Flux (target_pieces reads them whole) */
};

/* The prefix a module's name starts with, NULL for none kiln knows. */
static const module_prefix *find_prefix(const char *module_name)
{
    for (size_t k = 0; k < sizeof module_prefixes / sizeof *module_prefixes; k++)
        if (strncmp(module_name, module_prefixes[k].prefix, strlen(module_prefixes[k].prefix)) == 0)
            return &module_prefixes[k];
    return NULL;
}

/* An SD3 checkpoint's joint blocks (its last one's caption modulation is
 * laid out as a final norm's); 0 for another model. */
static int sd3_blocks(const kiln_checkpoint *ck)
{
    if (!kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".pos_embed.proj.weight")) return 0;
    int n = 0;
    char name[96];
    for (;; n++) {
        snprintf(name, sizeof name, KILN_FLUX_ROOT ".transformer_blocks.%d.norm1.linear.weight", n);
        if (!kiln_checkpoint_find(ck, name)) return n;
    }
}

/* Where a module's update goes: the canonical weight(s) and rows its rows
 * land in (one piece for most; a fused projection in BFL's Flux names
 * several, kiln_flux_bfl_rows'), for an update of `rows` rows in ck (dit:
 * it holds a DiT transformer); *clip tells which strength applies. False for
 * a name that fits no weight. */
static bool target_pieces(const kiln_checkpoint *ck, bool dit, const kiln_lora_towers *towers,
                          const char *module_name, int64_t rows, kiln_row_piece *pieces, int *n, bool *clip)
{
    if (dit) { /* XLabs' Flux modules, bare or under ComfyUI's diffusion_model. */
        const char *xlabs = strncmp(module_name, "diffusion_model.", 16) == 0 ? module_name + 16 : module_name;
        *clip = false;
        if (kiln_flux_xlabs_rows(xlabs, rows, pieces, n) != KILN_OK) return false;
        if (*n) return true;
    }
    const module_prefix *p = find_prefix(module_name);
    if (!p) return false;
    const char *rest = module_name + strlen(p->prefix);
    char dotted[300], weight[320];
    if (p->underscored) {
        if (!underscores_to_dots(rest, dotted, sizeof dotted)) return false;
    } else if (snprintf(dotted, sizeof dotted, "%s", rest) >= (int)sizeof dotted) {
        return false;
    }
    *clip = p->tower != 0;
    *n = 1;
    kiln_row_piece *one = &pieces[0];
    *one = (kiln_row_piece){.rows = rows};
    const size_t size = sizeof one->name;
    if (*clip) { /* text_model.<rest> under the tower's root, which ends in text_model */
        const char *root = p->tower == 1 ? towers->first : towers->second;
        return root && strncmp(dotted, "text_model.", 11) == 0 &&
               snprintf(one->name, size, "%s.%s.weight", root, dotted + 11) < (int)size;
    }
    snprintf(weight, sizeof weight, "%s.weight", dotted);
    if (dit) { /* BFL's names, SD3's MMDiT's, else diffusers' */
        if (kiln_flux_bfl_rows(weight, rows, pieces, n) != KILN_OK) return false;
        if (*n) return true;
        if (kiln_sd3_mmdit_rows(weight, rows, sd3_blocks(ck), pieces, n) != KILN_OK) return false;
        if (*n) return true;
        *n = 1;
        *one = (kiln_row_piece){.rows = rows};
        return snprintf(one->name, size, "%s.%s", KILN_FLUX_ROOT, weight) < (int)size;
    }
    if (is_original_unet_name(dotted)) return snprintf(one->name, size, "model.diffusion_model.%s", weight) < (int)size;
    return kiln_checkpoint_unet_name(ck, weight, one->name, size);
}

/* ---- the update ------------------------------------------------------------- */

/* A factor read as a (rows, numel/rows) f32 matrix: conv factors
 * (r, C, kh, kw) and (O, r, 1, 1) flatten to the GEMM they stand for. */
typedef struct factor {
    float *data;
    int rows, cols;
} factor;

static kiln_status read_factor(const char *path, const module *m, part p, factor *out)
{
    const kiln_st_tensor *t = m->parts[p];
    int64_t n = kiln_st_numel(t);
    if (t->ndim < 2 || t->shape[0] <= 0 || n <= 0 || n / t->shape[0] > INT32_MAX || t->shape[0] > INT32_MAX)
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s' is not a matrix or conv kernel", path, t->name);
    switch (t->dtype) {
    case KILN_F32: case KILN_F16: case KILN_BF16: break;
    default:
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s' has dtype %s, not f32, f16 or bf16", path, t->name,
                         kiln_dtype_name(t->dtype));
    }
    out->rows = (int)t->shape[0];
    out->cols = (int)(n / t->shape[0]);
    out->data = malloc((size_t)n * sizeof(float));
    if (!out->data) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", path, t->name);
    kiln_convert_to_f32(out->data, t->data, t->dtype, (size_t)n);
    return KILN_OK;
}

/* A LoRA's rank-r update is up (O, r) @ down (r, C·kh·kw); LoHa's is the
 * elementwise product of two such products; LoKr's is made whole at once,
 * the one factor (O, C·kh·kw). */
typedef struct update {
    factor f[4]; /* up, down [, second up, second down]; LoKr: the whole update */
    int nfactors;
    int rank;    /* what alpha is divided by: down's rows (LoHa: w1_b's; LoKr: its decomposed side's, 0: none) */
} update;

/* The update's columns: C·kh·kw. */
static int update_cols(const update *u) { return u->f[u->nfactors == 1 ? 0 : 1].cols; }

static void update_free(update *u)
{
    for (int i = 0; i < u->nfactors; i++) free(u->f[i].data);
}

/* A Tucker (CP) core (r1, r2, kh, kw) with its factors, as ComfyUI's
 * einsum('i j k l, j r, i p -> p r k l', core, b, a): b (r2, in), a (r1,
 * out) -> (out, in·kh·kw); a NULL -> (r1, in·kh·kw), LoCon's lora_mid on its
 * down. */
static kiln_status tucker(const char *path, const module *m, part core, const factor *b, const factor *a, factor *out)
{
    const kiln_st_tensor *t = m->parts[core];
    if (t->ndim != 4 || t->shape[1] != b->rows || (a && t->shape[0] != a->rows))
        return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': its Tucker core '%s' does not chain with its factors", path,
                         m->name, t->name);
    factor c;
    TRY(read_factor(path, m, core, &c));
    const int r1 = c.rows, r2 = b->rows, in = b->cols, kernel = c.cols / r2, cols = in * kernel;
    float *inner = malloc((size_t)r1 * (size_t)cols * sizeof *inner);
    float *outer = a && inner ? malloc((size_t)a->cols * (size_t)cols * sizeof *outer) : NULL;
    if (!inner || (a && !outer)) {
        free(c.data);
        free(inner);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", path, m->name);
    }
    for (int i = 0; i < r1; i++) /* inner[i] (in, kernel) = b^T core[i] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, kernel, r2, 1.0f, b->data, in,
                    c.data + (size_t)i * r2 * kernel, kernel, 0.0f, inner + (size_t)i * cols, kernel);
    free(c.data);
    if (!a) {
        *out = (factor){inner, r1, cols};
        return KILN_OK;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, a->cols, cols, r1, 1.0f, a->data, a->cols, inner, cols, 0.0f,
                outer, cols);
    free(inner);
    *out = (factor){outer, a->cols, cols};
    return KILN_OK;
}

/* One side of a LoKr module: `whole`, or a @ b, or (w2) a and b through the
 * Tucker core lokr_t2 (*rank: b's rows). */
static kiln_status lokr_side(const char *path, const module *m, part whole, part a, part b, factor *out, int *rank)
{
    if (m->parts[whole]) {
        if (m->parts[whole]->ndim > 2 && whole == PART_LOKR_W1 && kiln_st_numel(m->parts[whole]) !=
                                                                      m->parts[whole]->shape[0] * m->parts[whole]->shape[1])
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: module '%s': a LoKr w1 with a kernel of its own", path, m->name);
        return read_factor(path, m, whole, out);
    }
    if (!m->parts[a] || !m->parts[b])
        return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s' lacks its LoKr %s", path, m->name,
                         whole == PART_LOKR_W1 ? "w1 (lokr_w1, or lokr_w1_a and lokr_w1_b)"
                                               : "w2 (lokr_w2, or lokr_w2_a and lokr_w2_b)");
    factor fa, fb = {0};
    TRY(read_factor(path, m, a, &fa));
    kiln_status st = read_factor(path, m, b, &fb);
    if (st == KILN_OK && whole == PART_LOKR_W2 && m->parts[PART_LOKR_T2]) {
        st = tucker(path, m, PART_LOKR_T2, &fb, &fa, out);
        if (st == KILN_OK) *rank = fb.rows;
        free(fa.data);
        free(fb.data);
        return st;
    }
    if (st == KILN_OK && fa.cols != fb.rows)
        st = kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': its LoKr factors' shapes do not chain", path, m->name);
    if (st == KILN_OK && !(out->data = malloc((size_t)fa.rows * (size_t)fb.cols * sizeof(float))))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", path, m->name);
    if (st == KILN_OK) {
        out->rows = fa.rows, out->cols = fb.cols;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, fa.rows, fb.cols, fa.cols, 1.0f, fa.data, fa.cols,
                    fb.data, fb.cols, 0.0f, out->data, fb.cols);
        *rank = fb.rows;
    }
    free(fa.data);
    free(fb.data);
    return st;
}

/* LoKr: kron(w1 (a, b), w2 (c, d·kh·kw)), which is torch.kron of w1 as
 * (a, b, 1, 1) and a 4-D w2 read row-major; rank the decomposed side's (w2's
 * where both are), as ComfyUI divides alpha. */
static kiln_status read_lokr(const char *path, const module *m, update *u)
{
    factor w1 = {0}, w2 = {0};
    int rank1 = 0, rank2 = 0;
    kiln_status st = lokr_side(path, m, PART_LOKR_W1, PART_LOKR_W1_A, PART_LOKR_W1_B, &w1, &rank1);
    if (st == KILN_OK) st = lokr_side(path, m, PART_LOKR_W2, PART_LOKR_W2_A, PART_LOKR_W2_B, &w2, &rank2);
    const int64_t rows = (int64_t)w1.rows * w2.rows, cols = (int64_t)w1.cols * w2.cols;
    if (st == KILN_OK && (rows > INT32_MAX || cols > INT32_MAX))
        st = kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': a LoKr update of %lldx%lld", path, m->name, (long long)rows,
                       (long long)cols);
    float *whole = st == KILN_OK ? malloc((size_t)rows * (size_t)cols * sizeof *whole) : NULL;
    if (st == KILN_OK && !whole) st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", path, m->name);
    for (int i = 0; st == KILN_OK && i < w1.rows; i++)
        for (int k = 0; k < w2.rows; k++) {
            float *row = whole + ((size_t)i * w2.rows + k) * (size_t)cols;
            for (int j = 0; j < w1.cols; j++) {
                const float a = w1.data[(size_t)i * w1.cols + j];
                for (int l = 0; l < w2.cols; l++) row[(size_t)j * w2.cols + l] = a * w2.data[(size_t)k * w2.cols + l];
            }
        }
    free(w1.data);
    free(w2.data);
    TRY(st);
    *u = (update){.f = {{whole, (int)rows, (int)cols}}, .nfactors = 1, .rank = rank2 ? rank2 : rank1};
    return KILN_OK;
}

static bool is_lokr(const module *m)
{
    for (part p = PART_LOKR_W1; p <= PART_LOKR_W2_B; p++)
        if (m->parts[p]) return true;
    return false;
}

/* LoHa through Tucker cores (u holds w1_a, w1_b, w2_a, w2_b as read, each a
 * (rank, out) and b (rank, in), as LyCORIS stores them there): (core1 with
 * w1_b and w1_a) ⊙ (core2 with w2_b and w2_a), made whole; rank w1_b's. */
static kiln_status read_loha_tucker(const char *path, const module *m, update *u)
{
    if (!m->parts[PART_HADA_T1] || !m->parts[PART_HADA_T2])
        return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s' lacks its %s", path, m->name,
                         m->parts[PART_HADA_T1] ? "hada_t2" : "hada_t1");
    factor m1, m2 = {0};
    TRY(tucker(path, m, PART_HADA_T1, &u->f[1], &u->f[0], &m1));
    kiln_status st = tucker(path, m, PART_HADA_T2, &u->f[3], &u->f[2], &m2);
    if (st == KILN_OK && (m1.rows != m2.rows || m1.cols != m2.cols))
        st = kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': its factors' shapes do not chain", path, m->name);
    if (st == KILN_OK) {
        for (size_t i = 0; i < (size_t)m1.rows * m1.cols; i++) m1.data[i] *= m2.data[i];
        const int rank = u->f[1].rows;
        update_free(u);
        *u = (update){.f = {m1}, .nfactors = 1, .rank = rank};
    } else {
        free(m1.data);
    }
    free(m2.data);
    return st;
}

/* A difference added as it is (scale 1, no rank): the tensor whole, as
 * (its first dim, the rest), a vector as a column. */
static kiln_status read_difference(const char *path, const module *m, part p, update *u)
{
    const kiln_st_tensor *t = m->parts[p];
    const int64_t n = kiln_st_numel(t);
    if (t->ndim < 1 || t->shape[0] <= 0 || t->shape[0] > INT32_MAX || n / t->shape[0] > INT32_MAX ||
        (t->dtype != KILN_F32 && t->dtype != KILN_F16 && t->dtype != KILN_BF16))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s' is no f32, f16 or bf16 difference", path, t->name);
    float *data = malloc((size_t)n * sizeof *data);
    if (!data) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", path, t->name);
    kiln_convert_to_f32(data, t->data, t->dtype, (size_t)n);
    *u = (update){.f = {{data, (int)t->shape[0], (int)(n / t->shape[0])}}, .nfactors = 1};
    return KILN_OK;
}

/* A module changes its weight unless it has differences for the bias alone. */
static bool changes_weight(const module *m)
{
    for (part p = PART_DOWN; p < PART_COUNT; p++)
        if (m->parts[p] && p != PART_ALPHA && p != PART_DIFF_B && p != PART_B_NORM) return true;
    return false;
}

static kiln_status read_update(const char *path, const module *m, update *u)
{
    *u = (update){0};
    if (m->parts[PART_DIFF] || m->parts[PART_W_NORM])
        return read_difference(path, m, m->parts[PART_DIFF] ? PART_DIFF : PART_W_NORM, u);
    if (is_lokr(m)) return read_lokr(path, m, u);
    static const part lora[] = {PART_UP, PART_DOWN}, loha[] = {PART_HADA_W1_A, PART_HADA_W1_B, PART_HADA_W2_A, PART_HADA_W2_B};
    static const char *const lora_names[] = {"up (lora_up, lora_B)", "down (lora_down, lora_A)"},
                             *const loha_names[] = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"};
    bool is_loha = m->parts[PART_HADA_W1_A] || m->parts[PART_HADA_W1_B] || m->parts[PART_HADA_W2_A] ||
                   m->parts[PART_HADA_W2_B];
    const part *parts = is_loha ? loha : lora;
    int nparts = is_loha ? 4 : 2;
    *u = (update){0};
    for (int i = 0; i < nparts; i++) {
        if (!m->parts[parts[i]])
            return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s' lacks its %s factor", path, m->name,
                             (is_loha ? loha_names : lora_names)[i]);
        TRY(read_factor(path, m, parts[i], &u->f[u->nfactors]));
        u->nfactors++;
    }
    if (is_loha && (m->parts[PART_HADA_T1] || m->parts[PART_HADA_T2])) return read_loha_tucker(path, m, u);
    for (int i = 0; i < nparts; i += 2)
        if (u->f[i].cols != u->f[i + 1].rows || u->f[i].rows != u->f[0].rows || u->f[i + 1].cols != u->f[1].cols)
            return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': its factors' shapes do not chain", path, m->name);
    u->rank = u->f[1].rows;
    if (!m->parts[PART_MID]) return KILN_OK;
    factor down; /* LoCon's Tucker core on its down: (rank, C·kh·kw) */
    TRY(tucker(path, m, PART_MID, &u->f[1], NULL, &down));
    free(u->f[1].data);
    u->f[1] = down;
    if (u->f[0].cols != down.rows)
        return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': its factors' shapes do not chain", path, m->name);
    return KILN_OK;
}

/* alpha / rank, with alpha = rank when the file has none (PEFT, diffusers)
 * or the update no rank (a LoKr of two whole sides). */
static kiln_status update_scale(const char *path, const module *m, int rank, float *scale)
{
    const kiln_st_tensor *alpha = m->parts[PART_ALPHA];
    *scale = 1.0f;
    if (!alpha || !rank) return KILN_OK;
    if (kiln_st_numel(alpha) != 1 || (alpha->dtype != KILN_F32 && alpha->dtype != KILN_F16 && alpha->dtype != KILN_BF16))
        return kiln_fail(KILN_ERR_FORMAT, "%s: tensor '%s' is not one float", path, alpha->name);
    *scale = kiln_load_f32(alpha->data, alpha->dtype, 0) / (float)rank;
    return KILN_OK;
}

/* W (O, K) += s * up @ down, for LoHa s * (up1 @ down1) ⊙ (up2 @ down2),
 * for LoKr s * its whole update. */
static kiln_status add_update(float *w, const update *u, float s)
{
    const factor *f = u->f;
    int O = f[0].rows, K = update_cols(u);
    if (u->nfactors == 1) {
        cblas_saxpy(O * K, s, f[0].data, 1, w, 1);
        return KILN_OK;
    }
    if (u->nfactors == 2) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, K, f[0].cols, s, f[0].data, f[0].cols, f[1].data, K,
                    1.0f, w, K);
        return KILN_OK;
    }
    float *a = malloc(2 * (size_t)O * (size_t)K * sizeof(float));
    if (!a) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "LoHa: out of host memory");
    float *b = a + (size_t)O * K;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, K, f[0].cols, 1.0f, f[0].data, f[0].cols, f[1].data, K,
                0.0f, a, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, K, f[2].cols, 1.0f, f[2].data, f[2].cols, f[3].data, K,
                0.0f, b, K);
    for (size_t i = 0; i < (size_t)O * K; i++) w[i] += s * a[i] * b[i];
    free(a);
    return KILN_OK;
}

/* Narrows the merged f32 weight to the weight's storage type; fp8 and
 * quantized weights are kept in f16 rather than rounding the update away
 * (ComfyUI-GGUF adds a LoRA to the dequantized weight, too). */
static kiln_dtype merged_dtype(kiln_dtype stored)
{
    return stored == KILN_F8_E4M3 || stored == KILN_F8_E5M2 || kiln_dtype_is_quantized(stored) ? KILN_F16 : stored;
}

/* Takes w over; returns the weight in `dtype`, or NULL when out of memory. */
static void *narrow(float *w, size_t n, kiln_dtype dtype)
{
    if (dtype == KILN_F32) return w;
    uint16_t *h = malloc(n * sizeof *h);
    if (h) kiln_convert_from_f32(h, w, dtype, n);
    free(w);
    return h;
}

/* Rows [first, + rows) of the update (its up factors' rows). */
static update update_rows(const update *u, int64_t first, int64_t rows)
{
    update r = *u;
    for (int i = 0; i < u->nfactors; i += 2) {
        r.f[i].data += (size_t)first * (size_t)u->f[i].cols;
        r.f[i].rows = (int)rows;
    }
    return r;
}

/* DoRA (ComfyUI's weight_decompose) on w (O, K = I·kh·kw), the weight before
 * the update: w + diff, each output row scaled to dora_scale's magnitude
 * over the row's norm in w before the update (dora_scale (O, 1...), LyCORIS')
 * or each input channel over its norm after it ((1, I...), sd-scripts'),
 * plus float32's epsilon; blended in by the strength. diff is overwritten. */
static kiln_status decompose(const char *path, const module *m, const kiln_st_tensor *weight, float *w, float *diff,
                             float strength)
{
    const int64_t O = weight->shape[0], inputs = weight->ndim > 1 ? weight->shape[1] : 1, K = kiln_st_numel(weight) / O;
    const int64_t nscale = kiln_st_numel(m->parts[PART_DORA_SCALE]);
    const bool per_row = m->parts[PART_DORA_SCALE]->shape[0] == O;
    if (nscale != (per_row ? O : inputs))
        return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s': dora_scale of %lld values for a weight of %lld rows and "
                         "%lld input channels", path, m->name, (long long)nscale, (long long)O, (long long)inputs);
    factor scale;
    TRY(read_factor(path, m, PART_DORA_SCALE, &scale));
    double *norm = calloc((size_t)(per_row ? O : inputs), sizeof *norm);
    if (!norm) {
        free(scale.data);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", path, m->name);
    }
    for (int64_t i = 0; i < O * K; i++) {
        const float before = w[i];
        diff[i] += before; /* now the weight after the update (weight_calc) */
        const float v = per_row ? before : diff[i];
        norm[per_row ? i / K : i % K / (K / inputs)] += (double)v * v;
    }
    for (int64_t i = 0; i < O * K; i++) {
        const int64_t c = per_row ? i / K : i % K / (K / inputs);
        const float magnitude = scale.data[c] / ((float)sqrt(norm[c]) + FLT_EPSILON);
        const float calc = diff[i] * magnitude;
        w[i] = strength == 1.0f ? calc : w[i] + strength * (calc - w[i]);
    }
    free(norm);
    free(scale.data);
    return KILN_OK;
}

/* The weight `target` plus the rows of the update that the pieces under its
 * name place in it, which must cover it, times alpha_scale and the
 * strength; with DoRA, as decompose says (one piece: the weight whole). */
static kiln_status merge_into(kiln_checkpoint *ck, const char *path, const module *m, const update *u,
                              const kiln_row_piece *pieces, int n, const char *target, float alpha_scale,
                              float strength, bool dora)
{
    const kiln_st_tensor *weight = kiln_checkpoint_find(ck, target);
    if (!weight)
        return kiln_fail(KILN_ERR_MODEL, "%s: module '%s' updates '%s', which %s lacks (a LoRA for another base model?)",
                         path, m->name, target, kiln_checkpoint_path(ck));
    const int K = update_cols(u);
    if (dora && (n != 1 || pieces[0].from_row != 0 || pieces[0].to_row != 0))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: module '%s': DoRA on a fused projection kiln splits (its norms "
                         "span the fused weight)", path, m->name);
    int64_t rows = 0, n_elems = kiln_st_numel(weight);
    bool inside = true;
    for (int i = 0; i < n; i++)
        if (strcmp(pieces[i].name, target) == 0) {
            rows += pieces[i].rows;
            inside = inside && pieces[i].to_row + pieces[i].rows <= weight->shape[0];
        }
    if (!inside || rows != weight->shape[0] || n_elems != rows * K) {
        char have[96];
        kiln_tensor shape = {.ndim = weight->ndim};
        memcpy(shape.shape, weight->shape, sizeof weight->shape);
        kiln_shape_str(&shape, have, sizeof have);
        return kiln_fail(KILN_ERR_MODEL, "%s: module '%s' makes a %lldx%d update for '%s', which is %s in %s "
                         "(a LoRA for another base model?)", path, m->name, (long long)rows, K, target, have,
                         kiln_checkpoint_path(ck));
    }
    float *w = malloc((size_t)n_elems * sizeof(float));
    float *diff = dora ? calloc((size_t)n_elems, sizeof(float)) : NULL; /* DoRA's update alone */
    if (!w || (dora && !diff)) {
        free(w);
        free(diff);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory merging '%s'", path, target);
    }
    kiln_convert_to_f32(w, weight->data, weight->dtype, (size_t)n_elems);
    kiln_status status = KILN_OK;
    for (int i = 0; i < n && status == KILN_OK; i++)
        if (strcmp(pieces[i].name, target) == 0) {
            update part = update_rows(u, pieces[i].from_row, pieces[i].rows);
            const size_t at = (size_t)pieces[i].to_row * (size_t)K;
            status = dora ? add_update(diff + at, &part, alpha_scale) : add_update(w + at, &part, alpha_scale * strength);
        }
    if (status == KILN_OK && dora) status = decompose(path, m, weight, w, diff, strength);
    free(diff);
    if (status != KILN_OK) {
        free(w);
        return status;
    }
    kiln_dtype dtype = merged_dtype(weight->dtype);
    void *merged = narrow(w, (size_t)n_elems, dtype);
    if (!merged) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory merging '%s'", path, target);
    return kiln_checkpoint_replace(ck, target, dtype, merged);
}

/* One module merged into every weight its update lands in. */
/* u merged into every weight its pieces land in (bias: the biases beside
 * them), times alpha_scale and the strength. */
static kiln_status merge_pieces(kiln_checkpoint *ck, const char *path, const module *m, const update *u,
                                kiln_row_piece *pieces, int n, bool bias, float alpha_scale, float strength)
{
    for (int i = 0; bias && i < n; i++) { /* name.weight -> name.bias */
        char *dot = strrchr(pieces[i].name, '.');
        if (!dot || strcmp(dot, ".weight") != 0 || dot - pieces[i].name + sizeof ".bias" > sizeof pieces[i].name)
            return kiln_fail(KILN_ERR_MODEL, "%s: module '%s': '%s' has no bias beside it", path, m->name,
                             pieces[i].name);
        strcpy(dot, ".bias");
    }
    kiln_status status = KILN_OK;
    for (int i = 0; i < n && status == KILN_OK; i++) {
        bool merged = false; /* pieces of one weight (a swapped modulation's halves) go in together */
        for (int j = 0; j < i && !merged; j++) merged = strcmp(pieces[j].name, pieces[i].name) == 0;
        if (!merged)
            status = merge_into(ck, path, m, u, pieces, n, pieces[i].name, alpha_scale, strength,
                                !bias && m->parts[PART_DORA_SCALE]);
    }
    return status;
}

/* One module merged into every weight its update lands in, and its bias
 * difference into their biases. */
static kiln_status merge_module(kiln_checkpoint *ck, bool dit, const kiln_lora_towers *towers,
                                const kiln_lora *lora, const module *m, kiln_lora_stats *stats)
{
    const part bias = m->parts[PART_DIFF_B] ? PART_DIFF_B : m->parts[PART_B_NORM] ? PART_B_NORM : PART_COUNT;
    bool clip = false;
    kiln_status status = KILN_OK;
    if (!changes_weight(m) && bias == PART_COUNT)
        return kiln_fail(KILN_ERR_FORMAT, "%s: module '%s' has an alpha and nothing to merge", lora->path, m->name);
    for (int pass = 0; pass < 2 && status == KILN_OK; pass++) { /* the weight's update, then the bias's */
        if (pass == 0 ? !changes_weight(m) : bias == PART_COUNT) continue;
        update u;
        status = pass == 0 ? read_update(lora->path, m, &u) : read_difference(lora->path, m, bias, &u);
        float scale = 1.0f;
        if (status == KILN_OK) status = update_scale(lora->path, m, u.rank, &scale);
        kiln_row_piece pieces[KILN_MAX_ROW_PIECES];
        int n = 0;
        if (status == KILN_OK && !target_pieces(ck, dit, towers, m->name, u.f[0].rows, pieces, &n, &clip))
            status = kiln_fail(KILN_ERR_MODEL, "%s: module '%s' names no weight of %s (a LoRA for another base "
                               "model?)", lora->path, m->name, kiln_checkpoint_path(ck));
        const float strength = (float)(clip ? lora->clip_strength : lora->unet_strength);
        if (status == KILN_OK) status = merge_pieces(ck, lora->path, m, &u, pieces, n, pass == 1, scale, strength);
        update_free(&u);
    }
    if (status == KILN_OK) *(clip ? &stats->clip_modules : &stats->unet_modules) += 1;
    return status;
}

/* A module named after a DiT's weight: Flux's in BFL's (or XLabs') names
 * or SD3's in Stability's, which SD's never contain, or a diffusers DiT's
 * under transformer. */
static bool names_a_dit_weight(const char *name)
{
    static const char *const words[] = {"double_blocks", "single_blocks", "final_layer", "txt_in",
                                        "img_in",        "time_in",       "vector_in",   "guidance_in",
                                        "joint_blocks",  "x_embedder",    "t_embedder",  "y_embedder"};
    if (strncmp(name, "transformer.", 12) == 0) return true;
    for (size_t k = 0; k < sizeof words / sizeof *words; k++)
        if (strstr(name, words[k])) return true;
    return false;
}

kiln_status kiln_lora_inspect(const char *path, kiln_lora_info *info)
{
    *info = (kiln_lora_info){.min_rank = INT32_MAX, .min_alpha = INFINITY, .max_alpha = -INFINITY};
    kiln_st_file *f;
    TRY(kiln_st_open(path, &f));
    module *mods = NULL;
    size_t count = 0;
    kiln_status status = read_modules(f, &mods, &count);
    if (status == KILN_OK && count == 0) status = kiln_fail(KILN_ERR_FORMAT, "%s: no LoRA modules in the file", path);
    for (size_t i = 0; i < count && status == KILN_OK; i++) {
        const module *m = &mods[i];
        const module_prefix *prefix = find_prefix(m->name);
        if (!prefix) {
            status = kiln_fail(KILN_ERR_MODEL, "%s: module '%s' names no part of an SD model", path, m->name);
            break;
        }
        bool clip = prefix->tower != 0;
        info->dit_modules += !clip && names_a_dit_weight(m->name);
        const part bias = m->parts[PART_DIFF_B] ? PART_DIFF_B : PART_B_NORM;
        update u;
        status = changes_weight(m) ? read_update(path, m, &u) : read_difference(path, m, bias, &u);
        float scale = 1.0f;
        if (status == KILN_OK) status = update_scale(path, m, u.rank, &scale);
        if (status == KILN_OK) {
            const kiln_st_tensor *down = m->parts[PART_DOWN];
            *(clip ? &info->clip_modules : &info->unet_modules) += 1;
            if (m->parts[PART_DIFF] || m->parts[PART_W_NORM]) info->full++;
            else if (is_lokr(m)) info->lokr++;
            else if (m->parts[PART_HADA_W1_A]) info->loha++;
            else if (down && down->ndim == 4 && down->shape[2] * down->shape[3] > 1) info->locon++;
            else if (down) info->lora++; /* else bias differences alone */
            info->dora += m->parts[PART_DORA_SCALE] != NULL;
            info->bias += m->parts[PART_DIFF_B] || m->parts[PART_B_NORM];
            if (u.rank && u.rank < info->min_rank) info->min_rank = u.rank;
            if (u.rank > info->max_rank) info->max_rank = u.rank;
            if (m->parts[PART_ALPHA]) {
                const float alpha = kiln_load_f32(m->parts[PART_ALPHA]->data, m->parts[PART_ALPHA]->dtype, 0);
                info->alphas++;
                if (alpha < info->min_alpha) info->min_alpha = alpha;
                if (alpha > info->max_alpha) info->max_alpha = alpha;
            }
            const int cols = update_cols(&u);
            if (clip && !info->text_width) info->text_width = cols < u.f[0].rows ? cols : u.f[0].rows;
        }
        update_free(&u);
    }
    free(mods);
    kiln_st_close(f);
    if (info->min_rank == INT32_MAX) info->min_rank = 0; /* no module with a rank */
    return status;
}

kiln_status kiln_lora_merge(kiln_checkpoint *ck, const kiln_lora_towers *towers, const kiln_lora *lora,
                            kiln_lora_stats *stats)
{
    kiln_st_file *f;
    TRY(kiln_st_open(lora->path, &f));
    module *mods = NULL;
    size_t count = 0;
    kiln_status status = read_modules(f, &mods, &count);
    if (status == KILN_OK && count == 0) status = kiln_fail(KILN_ERR_FORMAT, "%s: no LoRA modules in the file", lora->path);
    *stats = (kiln_lora_stats){0};
    const bool dit = kiln_checkpoint_has_prefix(ck, KILN_FLUX_ROOT "."); /* PixArt's or Flux's transformer */
    for (size_t i = 0; i < count && status == KILN_OK; i++)
        status = merge_module(ck, dit, towers, lora, &mods[i], stats);
    free(mods);
    kiln_st_close(f);
    return status;
}
