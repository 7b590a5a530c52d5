#include "pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cond_area.h"
#include "cpu_ref.h"
#include "guiders.h"
#include "inpaint.h"
#include "prompt.h"
#include "resample.h"
#include "status.h"
#include "tiled.h"
#include "tokenizer.h"

void kiln_conditioning_free(kiln_conditioning *c)
{
    if (!c) return;
    free(c->data);
    free(c->pooled);
    *c = (kiln_conditioning){0};
}

kiln_status kiln_conditioning_zero_out(const kiln_conditioning *c, kiln_conditioning *out)
{
    if (!c || !out || !c->data || c->tokens < 1 || c->dim < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_conditioning_zero_out: no conditioning or place");
    *out = (kiln_conditioning){calloc((size_t)c->tokens * c->dim, sizeof(float)), c->tokens, c->dim,
                               c->pooled ? calloc((size_t)c->pooled_dim, sizeof(float)) : NULL, c->pooled_dim};
    if (out->data && (out->pooled || !c->pooled)) return KILN_OK;
    kiln_conditioning_free(out);
    return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "kiln_conditioning_zero_out: out of host memory");
}

typedef struct clip_job {
    const kiln_clip *clip;
    const int32_t *ids; /* (rows, 77) */
    int rows, skip;
    const int32_t *vector_rows; /* (rows, 77): 0 or 1 + an index into vectors; NULL: no vectors */
    const float *vectors;       /* (nvectors, D) */
    int nvectors;
    float *out;         /* (rows, 77, D) */
    float *last;        /* (rows, 77, D) the last layer through the final norm, or NULL */
} clip_job;

/* The embedding vectors' inputs: their table with a zero row first, and
 * which rows keep their token's. */
static kiln_status vector_inputs(kiln_graph *g, const clip_job *j, kiln_clip_vectors *v)
{
    const int64_t n = (int64_t)j->rows * KILN_CLIP_CONTEXT, D = j->clip->config->hidden;
    float *table = calloc((size_t)(j->nvectors + 1) * D, sizeof *table), *keep = malloc((size_t)(n * D) * sizeof *keep);
    kiln_status st = table && keep ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "text encoder: out of host memory");
    if (st == KILN_OK) {
        memcpy(table + D, j->vectors, (size_t)(j->nvectors * D) * sizeof *table);
        for (int64_t i = 0; i < n; i++)
            for (int64_t d = 0; d < D; d++) keep[i * D + d] = j->vector_rows[i] ? 0.0f : 1.0f;
        tensor *rows, *tab, *kp;
        st = kiln_graph_input(g, &rows, KILN_I32, 1, (int64_t[]){n}, j->vector_rows);
        if (st == KILN_OK) st = kiln_graph_input(g, &tab, KILN_F32, 2, (int64_t[]){j->nvectors + 1, D}, table);
        if (st == KILN_OK) st = kiln_graph_input(g, &kp, KILN_F32, 2, (int64_t[]){n, D}, keep);
        if (st == KILN_OK) *v = (kiln_clip_vectors){rows, tab, kp};
    }
    free(table);
    free(keep);
    return st;
}

static kiln_status clip_fn(kiln_graph *g, void *ctx)
{
    clip_job *j = ctx;
    tensor *ids, *z, *last = NULL;
    kiln_clip_vectors v;
    TRY(kiln_graph_input(g, &ids, KILN_I32, 2, (int64_t[]){j->rows, KILN_CLIP_CONTEXT}, j->ids));
    if (j->vector_rows) TRY(vector_inputs(g, j, &v));
    TRY(kiln_clip_forward(g, j->clip, ids, j->vector_rows ? &v : NULL, j->skip, &z, j->last ? &last : NULL));
    TRY(kiln_graph_output(g, z, j->out, kiln_tensor_nbytes(z)));
    return last ? kiln_graph_output(g, last, j->last, kiln_tensor_nbytes(last)) : KILN_OK;
}

static kiln_status clip_run(const kiln_model *m, int which, clip_job *j, float *pooled)
{
    if (which < 0 || which >= m->info.nclips)
        return kiln_fail(KILN_ERR_INVALID_ARG, "text encoder %d: the model has %d", which, m->info.nclips);
    const kiln_clip *clip = j->clip = &m->clips[which];
    if (pooled && !clip->pooled_dim)
        return kiln_fail(KILN_ERR_INVALID_ARG, "text encoder %s has no pooled output", clip->config->name);
    if (pooled && !(j->last = malloc((size_t)j->rows * KILN_CLIP_CONTEXT * clip->config->hidden * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "text encoder: out of host memory");
    kiln_status st = kiln_graph_run_once(kiln_weights_backend(m->weights), clip_fn, j);
    if (st == KILN_OK && pooled) kiln_clip_pool(clip, j->ids, j->last, j->rows, pooled);
    free(j->last);
    return st;
}

kiln_status kiln_clip_encode_ids(const kiln_model *m, int which, const int32_t *ids, int rows, int clip_skip,
                                 float *out, float *pooled)
{
    return clip_run(m, which, &(clip_job){.ids = ids, .rows = rows, .skip = clip_skip, .out = out}, pooled);
}

/* A window's ids as the encoder reads them: an embedding vector's position
 * as token 0 with its row in *vector_rows, a vector of another width left
 * out and a pad added at the end for it (ComfyUI's process_tokens). */
static void window_rows(const int32_t *window, int32_t pad, int32_t *ids, int32_t *vector_rows)
{
    int at = 0, misfits = 0;
    for (int t = 0; t < KILN_CLIP_CONTEXT; t++) {
        const int32_t id = window[t];
        if (id == KILN_PROMPT_MISFIT) {
            misfits++;
            continue;
        }
        ids[at] = id >= 0 ? id : 0;
        vector_rows[at++] = id >= 0 ? 0 : -id; /* vector -1 - id is table row -id */
    }
    for (; misfits > 0; misfits--, at++) ids[at] = pad, vector_rows[at] = 0;
}

/* One tower's share of CLIPTextEncode: the windows (and the empty prompt
 * when weights need it) in one batch, the weights applied, written into
 * columns [offset, offset + D) of z_all (windows x 77 rows of `stride`). */
static kiln_status encode_with(const kiln_model *m, int which, const kiln_prompt_tokens *pt, int clip_skip,
                               float *z_all, int offset, int stride, float *pooled)
{
    const kiln_clip *clip = &m->clips[which];
    const int T = KILN_CLIP_CONTEXT, D = clip->config->hidden;
    const int32_t pad = clip->reading->pad_id;
    int rows = pt->n_windows + (pt->weighted ? 1 : 0);
    int32_t *ids = malloc((size_t)rows * T * sizeof *ids), *vector_rows = calloc((size_t)rows * T, sizeof *vector_rows);
    float *z = malloc((size_t)rows * T * D * sizeof *z), *pools = NULL;
    kiln_status st = KILN_OK;
    if (!ids || !vector_rows || !z || (pooled && !(pools = malloc((size_t)rows * clip->pooled_dim * sizeof *pools)))) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
        goto done;
    }
    for (int w = 0; w < pt->n_windows; w++) window_rows(pt->ids[w], pad, ids + (size_t)w * T, vector_rows + (size_t)w * T);
    if (pt->weighted) { /* ComfyUI's gen_empty_tokens: BOS, EOS, padding */
        int32_t *empty = ids + (size_t)pt->n_windows * T;
        empty[0] = KILN_CLIP_BOS;
        empty[1] = KILN_CLIP_EOS;
        for (int t = 2; t < T; t++) empty[t] = pad;
    }
    clip_job j = {.ids = ids, .rows = rows, .skip = clip_skip, .out = z};
    if (pt->nvectors) j.vector_rows = vector_rows, j.vectors = pt->vectors, j.nvectors = pt->nvectors;
    if ((st = clip_run(m, which, &j, pools)) != KILN_OK) goto done;
    const float *z_empty = z + (size_t)pt->n_windows * T * D;
    for (int w = 0; w < pt->n_windows; w++)
        for (int t = 0; t < T; t++) {
            float *row = z + ((size_t)w * T + t) * D, *dst = z_all + ((size_t)w * T + t) * stride + offset;
            double weight = pt->weights[w][t];
            /* ComfyUI: z_empty + (z - z_empty) * w for each token weighted != 1 */
            for (int d = 0; d < D; d++)
                dst[d] = weight == 1.0 ? row[d]
                                       : (row[d] - z_empty[(size_t)t * D + d]) * (float)weight + z_empty[(size_t)t * D + d];
        }
    if (pooled) memcpy(pooled, pools, (size_t)clip->pooled_dim * sizeof *pooled); /* the first window's */
done:
    free(ids);
    free(vector_rows);
    free(z);
    free(pools);
    return st;
}

typedef struct t5_job {
    const kiln_t5 *t5;
    const int32_t *ids;
    int n;
    float *out; /* (n, D) */
} t5_job;

static kiln_status t5_fn(kiln_graph *g, void *ctx)
{
    t5_job *j = ctx;
    tensor *ids, *z;
    TRY(kiln_graph_input(g, &ids, KILN_I32, 1, (int64_t[]){j->n}, j->ids));
    TRY(kiln_t5_forward(g, j->t5, ids, &z));
    return kiln_graph_output(g, z, j->out, kiln_tensor_nbytes(z));
}

kiln_status kiln_t5_encode_ids(const kiln_model *m, const int32_t *ids, int n, float *out)
{
    if (!kiln_model_is_dit(m)) return kiln_fail(KILN_ERR_INVALID_ARG, "t5: a %s model has no T5 encoder", m->info.family);
    return kiln_graph_run_once(kiln_weights_backend(m->weights), t5_fn, &(t5_job){&m->t5, ids, n, out});
}

/* A prompt's T5 ids and each one's weight, as ComfyUI's SDTokenizer makes
 * them for T5: each weighted segment (kiln_prompt_parse: ComfyUI's weight
 * syntax) tokenized on its own without its EOS, at most the model's
 * t5_max_tokens - 1 in all, then EOS, then T5TokenizerOptions' pads, then
 * pads up to the least length (min_tokens: Flux's 256, SD3's 77; 0: PixArt's
 * and Chroma's none). A prompt without weights is the text's own ids. */
typedef struct t5_tokens {
    int32_t *ids;
    float *weights;
    int n;
    bool weighted; /* some weight other than 1 */
} t5_tokens;

static void t5_tokens_free(t5_tokens *t)
{
    free(t->ids);
    free(t->weights);
    *t = (t5_tokens){0};
}

static kiln_status t5_tokenize(const kiln_model *m, const char *text, int min_tokens, t5_tokens *t)
{
    const int padding = m->t5_options ? m->t5_min_padding : 0, least = m->t5_options ? m->t5_min_length : min_tokens;
    const int most = m->t5_max_tokens;
    kiln_prompt_segment *segments;
    size_t count;
    TRY(kiln_prompt_parse(text, &segments, &count));
    *t = (t5_tokens){.ids = malloc((size_t)(most + padding + least) * sizeof *t->ids),
                     .weights = malloc((size_t)(most + padding + least) * sizeof *t->weights)};
    kiln_status st = t->ids && t->weights ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
    int32_t *piece = NULL;
    for (size_t k = 0; k < count && st == KILN_OK && t->n < most - 1; k++) {
        const int room = 2 * (int)strlen(segments[k].text) + 2; /* pieces are never more than two a byte */
        int32_t *grown = realloc(piece, (size_t)room * sizeof *piece);
        if (!grown) {
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
            break;
        }
        piece = grown;
        int n;
        st = kiln_spm_encode_t5(m->spm, segments[k].text, piece, room, &n);
        for (int i = 0; st == KILN_OK && i < n - 1 && t->n < most - 1; i++) { /* its EOS left out */
            if (piece[i] >= m->t5.vocab)
                st = kiln_fail(KILN_ERR_MODEL, "prompt: token %d is past the T5 encoder's %d", piece[i], m->t5.vocab);
            t->ids[t->n] = piece[i];
            t->weights[t->n++] = (float)segments[k].weight;
            t->weighted |= segments[k].weight != 1.0;
        }
    }
    free(piece);
    kiln_prompt_segments_free(segments, count);
    if (st != KILN_OK) {
        t5_tokens_free(t);
        return st;
    }
    t->ids[t->n] = kiln_spm_eos(m->spm), t->weights[t->n++] = 1.0f;
    for (int i = 0; i < padding; i++) t->ids[t->n] = kiln_spm_pad(m->spm), t->weights[t->n++] = 1.0f;
    while (t->n < least) t->ids[t->n] = kiln_spm_pad(m->spm), t->weights[t->n++] = 1.0f;
    return KILN_OK;
}

/* ComfyUI's token weights on T5's rows z (n, D): each weighted row
 * (z - z_empty) * weight + z_empty, z_empty T5's rows of as many empty ids
 * (Flux's and SD3's T5: EOS, then pads; PixArt's and Chroma's: pads alone,
 * their T5 model leaving the end token out). */
static kiln_status t5_weigh(const kiln_model *m, const t5_tokens *t, float *z)
{
    if (!t->weighted) return KILN_OK;
    const size_t D = (size_t)m->t5.hidden;
    int32_t *empty = malloc((size_t)t->n * sizeof *empty);
    float *z_empty = malloc((size_t)t->n * D * sizeof *z_empty);
    kiln_status st = empty && z_empty ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
    const bool end = m->family->arch == KILN_ARCH_SD3 || (m->family->arch == KILN_ARCH_FLUX && !m->flux.chroma);
    for (int i = 0; st == KILN_OK && i < t->n; i++) empty[i] = end && i == 0 ? kiln_spm_eos(m->spm) : kiln_spm_pad(m->spm);
    if (st == KILN_OK) st = kiln_t5_encode_ids(m, empty, t->n, z_empty);
    for (int i = 0; st == KILN_OK && i < t->n; i++)
        if (t->weights[i] != 1.0f)
            for (size_t d = 0; d < D; d++) {
                float *v = &z[(size_t)i * D + d];
                const float e = z_empty[(size_t)i * D + d];
                *v = (*v - e) * t->weights[i] + e;
            }
    free(empty);
    free(z_empty);
    return st;
}

/* A DiT's prompt through T5 (t5_tokenize's ids, then their weights). */
static kiln_status encode_t5(const kiln_model *m, const char *text, int min_tokens, kiln_conditioning *out)
{
    t5_tokens t;
    TRY(t5_tokenize(m, text, min_tokens, &t));
    kiln_status st = (out->data = malloc((size_t)t.n * m->t5.hidden * sizeof(float)))
                         ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
    if (st == KILN_OK) {
        out->tokens = t.n;
        out->dim = m->t5.hidden;
        st = kiln_t5_encode_ids(m, t.ids, t.n, out->data);
    }
    if (st == KILN_OK) st = t5_weigh(m, &t, out->data);
    if (st != KILN_OK) kiln_conditioning_free(out);
    t5_tokens_free(&t);
    return st;
}

static kiln_status encode_clips(const kiln_model *m, const kiln_tokenizer *tok, const char *const *texts,
                                int clip_skip, kiln_conditioning *out);

kiln_status kiln_encode_flux_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *clip_text,
                                    const char *t5_text, kiln_conditioning *out)
{
    *out = (kiln_conditioning){0};
    if (m->family->arch != KILN_ARCH_FLUX || m->flux.chroma)
        return kiln_fail(KILN_ERR_INVALID_ARG, "CLIPTextEncodeFlux: a %s model is no Flux model with CLIP-L",
                         m->info.family);
    kiln_conditioning clip;
    TRY(encode_clips(m, tok, &clip_text, 0, &clip));
    kiln_status st = encode_t5(m, t5_text, KILN_FLUX_T5_TOKENS, out);
    out->pooled = clip.pooled, out->pooled_dim = clip.pooled_dim;
    clip.pooled = NULL;
    kiln_conditioning_free(&clip);
    if (st != KILN_OK) kiln_conditioning_free(out);
    return st;
}

kiln_status kiln_encode_sd3_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *clip_l,
                                   const char *clip_g, const char *t5xxl, int clip_skip, kiln_conditioning *out)
{
    *out = (kiln_conditioning){0};
    if (m->family->arch != KILN_ARCH_SD3)
        return kiln_fail(KILN_ERR_INVALID_ARG, "CLIPTextEncodeSD3: a %s model is no SD3 model", m->info.family);
    const char *texts[2] = {clip_l, clip_g};
    kiln_conditioning lg, t5 = {0};
    TRY(encode_clips(m, tok, texts, clip_skip, &lg));
    kiln_status st = m->t5.hidden ? encode_t5(m, t5xxl, KILN_SD3_T5_TOKENS, &t5) : KILN_OK;
    const int D = m->flux.context_dim;
    if (st == KILN_OK) {
        *out = (kiln_conditioning){.tokens = lg.tokens + t5.tokens, .dim = D, .pooled = lg.pooled,
                                   .pooled_dim = lg.pooled_dim};
        lg.pooled = NULL;
        if (!(out->data = calloc((size_t)out->tokens * D, sizeof(float))))
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
    }
    if (st == KILN_OK) { /* the CLIPs' rows zero-padded to T5's width, then T5's */
        for (int t = 0; t < lg.tokens; t++)
            memcpy(out->data + (size_t)t * D, lg.data + (size_t)t * lg.dim, (size_t)lg.dim * sizeof(float));
        if (t5.tokens) memcpy(out->data + (size_t)lg.tokens * D, t5.data, (size_t)t5.tokens * D * sizeof(float));
    }
    kiln_conditioning_free(&lg);
    kiln_conditioning_free(&t5);
    if (st != KILN_OK) kiln_conditioning_free(out);
    return st;
}

kiln_status kiln_encode_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *text, int clip_skip,
                               kiln_conditioning *out)
{
    *out = (kiln_conditioning){0};
    if (kiln_model_is_dit(m) && m->family->arch != KILN_ARCH_SD3 && clip_skip > 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "clip skip %d: a %s model's text encoders are read at the layers it "
                         "was trained on", clip_skip, m->info.family);
    /* Chroma reads T5 as PixArt does, unpadded (ComfyUI's PixArtTokenizer for both) */
    if (m->family->arch == KILN_ARCH_PIXART || m->flux.chroma) return encode_t5(m, text, 0, out);
    if (m->family->arch == KILN_ARCH_FLUX) return kiln_encode_flux_prompt(m, tok, text, text, out);
    if (m->family->arch == KILN_ARCH_SD3) return kiln_encode_sd3_prompt(m, tok, text, text, text, clip_skip, out);
    const char *texts[KILN_MAX_TEXT_ENCODERS];
    for (int i = 0; i < m->info.nclips; i++) texts[i] = text;
    return encode_clips(m, tok, texts, clip_skip, out);
}

kiln_status kiln_encode_sdxl_prompt(const kiln_model *m, const kiln_tokenizer *tok, const char *text_g,
                                    const char *text_l, int clip_skip, kiln_conditioning *out)
{
    *out = (kiln_conditioning){0};
    if (m->info.nclips != 2 || m->clips[0].reading != &kiln_clip_sdxl_l || m->clips[1].reading != &kiln_clip_sdxl_g)
        return kiln_fail(KILN_ERR_INVALID_ARG, "text_g and text_l are for SDXL's two text towers; %s has %s",
                         m->info.family, m->info.nclips == 1 ? "one" : "others");
    const char *texts[2] = {text_l, text_g};
    return encode_clips(m, tok, texts, clip_skip, out);
}

/* Adds windows of the empty prompt (BOS, EOS, padding; weights 1) until
 * there are n: ComfyUI's CLIPTextEncodeSDXL evens out the towers' windows
 * so. */
static kiln_status pad_windows(kiln_prompt_tokens *pt, int n, int32_t pad)
{
    if (pt->n_windows >= n) return KILN_OK;
    int32_t(*ids)[KILN_CLIP_CONTEXT] = realloc(pt->ids, (size_t)n * sizeof *ids);
    if (ids) pt->ids = ids;
    double(*weights)[KILN_CLIP_CONTEXT] = realloc(pt->weights, (size_t)n * sizeof *weights);
    if (weights) pt->weights = weights;
    if (!ids || !weights) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
    for (int w = pt->n_windows; w < n; w++)
        for (int t = 0; t < KILN_CLIP_CONTEXT; t++) {
            ids[w][t] = t == 0 ? KILN_CLIP_BOS : t == 1 ? KILN_CLIP_EOS : pad;
            weights[w][t] = 1.0;
        }
    pt->n_windows = n;
    return KILN_OK;
}

/* CLIPTextEncode on every CLIP tower of the model, tower i on texts[i]
 * (the towers' windows evened out with empty ones). */
static kiln_status encode_clips(const kiln_model *m, const kiln_tokenizer *tok, const char *const *texts,
                                int clip_skip, kiln_conditioning *out)
{
    *out = (kiln_conditioning){0};
    int dim = 0, pooled_dim = 0, windows = 0;
    kiln_prompt_tokens pt[KILN_MAX_TEXT_ENCODERS] = {{0}};
    kiln_status st = KILN_OK;
    for (int i = 0; i < m->info.nclips && st == KILN_OK; i++) {
        dim += m->clips[i].config->hidden;
        pooled_dim += m->clips[i].pooled_dim;
        const kiln_prompt_embeddings e = {m->embeddings, m->clips[i].reading->embedding_key, m->clips[i].config->hidden};
        st = kiln_prompt_tokenize(tok, texts[i], m->clips[i].reading->pad_id, &e, &pt[i]);
        if (st == KILN_OK && pt[i].n_windows > windows) windows = pt[i].n_windows;
    }
    for (int i = 0; i < m->info.nclips && st == KILN_OK; i++)
        st = pad_windows(&pt[i], windows, m->clips[i].reading->pad_id);
    if (st == KILN_OK) {
        *out = (kiln_conditioning){.tokens = windows * KILN_CLIP_CONTEXT, .dim = dim, .pooled_dim = pooled_dim};
        out->data = malloc((size_t)out->tokens * dim * sizeof(float));
        if (pooled_dim) out->pooled = malloc((size_t)pooled_dim * sizeof(float));
        if (!out->data || (pooled_dim && !out->pooled)) st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "prompt: out of host memory");
    }
    /* the towers' rows side by side, and their pooled outputs (SD3 has two) */
    for (int i = 0, offset = 0, pooled_at = 0; i < m->info.nclips && st == KILN_OK;
         offset += m->clips[i].config->hidden, pooled_at += m->clips[i].pooled_dim, i++)
        st = encode_with(m, i, &pt[i], clip_skip, out->data, offset, dim,
                         m->clips[i].pooled_dim ? out->pooled + pooled_at : NULL);
    for (int i = 0; i < m->info.nclips; i++) kiln_prompt_tokens_free(&pt[i]);
    if (st != KILN_OK) kiln_conditioning_free(out);
    return st;
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

kiln_status kiln_adm_vector(const kiln_model *m, const kiln_conditioning *c, const float *numbers, float *y)
{
    const int adm = m->unet.config->adm_channels, P = c->pooled_dim, N = m->family->adm_numbers;
    const int E = N ? (adm - P) / N : 0;
    if (!N || !c->pooled || P >= adm || (adm - P) % N || E % 2)
        return kiln_fail(KILN_ERR_INVALID_ARG, "the UNet's vector y is %d wide; the conditioning's pooled output %d",
                         adm, c->pooled ? P : 0);
    memcpy(y, c->pooled, (size_t)P * sizeof *y);
    kiln_timestep_embedding_params p = {.N = N, .dim = E, .flip_sin_to_cos = 1, .freq_shift = 0.0f,
                                        .max_period = 10000.0f};
    cpu_ref_timestep_embedding(&p, numbers, y + P);
    return KILN_OK;
}

/* 8 x the latent's: ComfyUI's encode_model_conds gives the sampler's size
 * to conditionings that have none. */
void kiln_sdxl_cond_fill(kiln_sdxl_cond *c, int latent_h, int latent_w)
{
    if (!c->width) c->width = 8 * latent_w, c->height = 8 * latent_h;
    if (!c->target_width) c->target_width = 8 * latent_w, c->target_height = 8 * latent_h;
}

kiln_status kiln_adm_rows(const kiln_model *m, const kiln_sampling_job *job, const kiln_conditioning *positive,
                          const kiln_conditioning *negative, float **out)
{
    const int adm = m->unet.config->adm_channels;
    *out = NULL;
    if (!adm) return KILN_OK;
    float *y = malloc((size_t)2 * job->batch * adm * sizeof *y);
    if (!y) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    /* without the job's numbers, CLIPTextEncode's: no crop, the refiner's default scores */
    kiln_sdxl_cond n = job->sdxl ? *job->sdxl : (kiln_sdxl_cond){.aesthetic = 6.0, .negative_aesthetic = 2.5};
    kiln_sdxl_cond neg = job->negative_sdxl ? *job->negative_sdxl : n;
    kiln_sdxl_cond_fill(&n, job->latent_h, job->latent_w);
    kiln_sdxl_cond_fill(&neg, job->latent_h, job->latent_w);
    const bool refiner = m->family->adm_numbers == 5;
    kiln_status st = KILN_OK;
    for (int r = 0; r < 2 * job->batch && st == KILN_OK; r++) {
        const bool uncond = r < job->batch;
        const kiln_sdxl_cond *c = uncond ? &neg : &n;
        /* ComfyUI's order: sizes and crops height first */
        const float numbers[6] = {(float)c->height, (float)c->width, (float)c->crop_h, (float)c->crop_w,
                                  refiner ? (float)(uncond ? n.negative_aesthetic : n.aesthetic) : (float)c->target_height,
                                  (float)c->target_width};
        st = kiln_adm_vector(m, uncond ? negative : positive, numbers, y + (size_t)r * adm);
    }
    if (st != KILN_OK) {
        free(y);
        return st;
    }
    *out = y;
    return KILN_OK;
}

/* Appends `c` repeated to `tokens` rows, `copies` times, at *dst. */
static float *put_repeated(float *dst, const kiln_conditioning *c, int tokens, int copies)
{
    size_t row = (size_t)c->dim;
    for (int b = 0; b < copies; b++)
        for (int t = 0; t < tokens; t++, dst += row) memcpy(dst, c->data + (size_t)(t % c->tokens) * row, row * sizeof(float));
    return dst;
}

/* FLUX.1 Fill's channels beside the latent (Flux's concat_cond with
 * InpaintModelConditioning's concat_latent_image and concat_mask): the
 * masked picture's latent as the model takes a latent, then the mask
 * stretched (bilinear) to 8x the latent and cut into 8x8 blocks, one channel
 * each (row by row within a block). */
static kiln_status set_fill_concat(const kiln_model *m, kiln_denoiser *d, const kiln_inpaint *in, float **owned)
{
    const int C = d->channels, h = d->h, w = d->w;
    const size_t plane = (size_t)h * w;
    if (d->unet_channels != C + C + KILN_FLUX_FILL_MASK_CHANNELS / 4)
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %s reads %d channels, not a latent's, a picture's and a "
                         "mask's", m->info.unet_name, d->unet_channels);
    float *big = malloc((size_t)64 * plane * sizeof(float));
    *owned = malloc((size_t)(C + 64) * plane * sizeof(float));
    if (!big || !*owned) {
        free(big);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    }
    kiln_vae_latent_in(&m->vae, in->concat_latent, (size_t)C * plane, plane, *owned);
    kiln_resample(in->noise_mask, 1, in->mask_h, in->mask_w, big, 8 * h, 8 * w, KILN_RESAMPLE_BILINEAR);
    float *mask = *owned + (size_t)C * plane;
    for (int ph = 0; ph < 8; ph++)
        for (int pw = 0; pw < 8; pw++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    mask[(size_t)(ph * 8 + pw) * plane + (size_t)y * w + x] = big[(size_t)(8 * y + ph) * 8 * w + 8 * x + pw];
    free(big);
    return kiln_denoiser_set_concat(d, *owned);
}

/* A picture's latent beside the UNet's or transformer's input every call:
 * InstructPix2Pix's as it is (SD 1.x's concat_cond), FLUX.1 Canny's and
 * Depth's as the model takes a latent (Flux's concat_cond: process_in). */
static kiln_status set_edit_latent(const kiln_model *m, kiln_denoiser *d, const float *edit, float **owned)
{
    if (m->family->arch != KILN_ARCH_FLUX) return kiln_denoiser_set_concat(d, edit);
    const size_t n = (size_t)d->channels * d->h * d->w;
    if (!(*owned = malloc(n * sizeof(float)))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    kiln_vae_latent_in(&m->vae, edit, n, (size_t)d->h * d->w, *owned);
    return kiln_denoiser_set_concat(d, *owned);
}

void prompt_pair_free(prompt_pair *p)
{
    if (p->made) kiln_denoiser_free(&p->d);
    free(p->context);
    free(p->adm);
    free(p->edit_in);
    *p = (prompt_pair){0};
}

kiln_status prompt_pair_make(const kiln_model *m, const kiln_sampling_job *job, const kiln_model_sampling *ms,
                             const kiln_conditioning *positive, const kiln_conditioning *negative,
                             const kiln_inpaint_mask *blend, int h, int w, float cfg, prompt_pair *p)
{
    const int dim = kiln_model_context_dim(m);
    if (positive->dim != dim || negative->dim != positive->dim)
        return kiln_fail(KILN_ERR_INVALID_ARG, "conditioning width %d does not match the model's %d", positive->dim,
                         dim);
    /* ComfyUI repeats conditionings of different lengths to their least
     * common multiple for a UNet; a DiT reads each at its own length */
    const int tokens =
        kiln_model_is_dit(m) ? 0 : positive->tokens / gcd(positive->tokens, negative->tokens) * negative->tokens;
    if (tokens && !(p->context = malloc((size_t)2 * job->batch * tokens * positive->dim * sizeof(float))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    if (p->context) put_repeated(put_repeated(p->context, negative, tokens, job->batch), positive, tokens, job->batch);
    if (!kiln_model_is_dit(m)) TRY(kiln_adm_rows(m, job, positive, negative, &p->adm));
    TRY(kiln_denoiser_init(&p->d, m, ms, job->batch, h, w, cfg, p->context, tokens));
    p->made = true;
    kiln_denoiser *d = &p->d;
    d->adm = p->adm;
    /* FLUX.1 dev's default 3.5 (FluxGuidance's); Chroma's conditioning says 0 without the node */
    memcpy(d->pixart_size, job->pixart_size, sizeof d->pixart_size);
    const float unset = m->flux.chroma ? 0.0f : (float)KILN_FLUX_GUIDANCE;
    const double asked[2] = {job->negative_flux_guidance, job->flux_guidance};
    for (int i = 0; i < 2; i++) {
        if (asked[i] < 0 && m->flux.chroma) /* ComfyUI's Chroma embeds the guidance unconditionally: it fails */
            return kiln_fail(KILN_ERR_UNSUPPORTED, "FluxDisableGuidance on Chroma, which embeds a guidance in "
                             "every modulation (ComfyUI fails there)");
        d->guidance[i] = asked[i] > 0 ? (float)asked[i] : asked[i] < 0 ? NAN : unset; /* NaN: none */
    }
    const kiln_inpaint *inpaint = job->inpaint;
    if (kiln_model_is_dit(m)) TRY(kiln_denoiser_set_captions(d, negative, positive));
    if (inpaint) TRY(kiln_denoiser_set_inpaint(d, blend));
    if (inpaint && inpaint->concat_latent) TRY(set_fill_concat(m, d, inpaint, &p->edit_in));
    if (job->edit_latent) TRY(set_edit_latent(m, d, job->edit_latent, &p->edit_in));
    if (job->ncontrols) TRY(kiln_denoiser_set_controls(d, job->controls, job->ncontrols));
    if (job->nimage_prompts) TRY(kiln_denoiser_set_image_prompts(d, job->image_prompts, job->nimage_prompts));
    for (int which = 0; which < 2; which++)
        if (job->nreferences[which])
            TRY(kiln_denoiser_set_references(d, which, job->references[which], job->nreferences[which],
                                             job->reference_methods[which]));
    if (job->skip_layer_guidance) TRY(kiln_denoiser_set_skip_layer_guidance(d, job->skip_layer_guidance));
    if (job->freeu) TRY(kiln_denoiser_set_freeu(d, job->freeu));
    if (job->pag_scale > 0.0f) TRY(kiln_denoiser_set_pag(d, job->pag_scale));
    if (job->sag) TRY(kiln_denoiser_set_sag(d, (float)job->sag->scale, (float)job->sag->blur_sigma));
    if (job->deep_shrink) TRY(kiln_denoiser_set_deep_shrink(d, job->deep_shrink));
    if (job->hypertile) TRY(kiln_denoiser_set_hypertile(d, job->hypertile, job->hypertile_rng));
    if (job->nhypernetworks) TRY(kiln_denoiser_set_hypernetworks(d, job->hypernetworks, job->nhypernetworks));
    if (kiln_cfg_patched(&job->cfg_patches)) TRY(kiln_denoiser_set_cfg_patches(d, &job->cfg_patches));
    if (job->step_cache) { /* ComfyUI batches conditionings whose lengths' least common multiple is at most 4 of
                              the shorter (CONDCrossAttn.can_concat) */
        const int shorter = positive->tokens < negative->tokens ? positive->tokens : negative->tokens;
        const int lcm = positive->tokens / gcd(positive->tokens, negative->tokens) * negative->tokens;
        TRY(kiln_denoiser_set_step_cache(d, job->step_cache, lcm / shorter <= 4));
    }
    return KILN_OK;
}

/* The job's prompts as parts over the sampling (ConditioningSetTimestepRange,
 * ConditioningCombine): a denoiser for each pair of a positive and a
 * negative part, each part's sigmas [lo, hi]. */
typedef struct {
    prompt_pair *pairs; /* [positive part][negative part] */
    int nparts[2];      /* negative, positive */
    float *hi[2], *lo[2];
    float *sum;         /* (n) */
    size_t n;
    int called[KILN_MAX_PROMPT_PARTS * KILN_MAX_PROMPT_PARTS], ncalled; /* the last call's pairs */
    /* ConditioningSetMask: each part's weight at each latent pixel (plane floats; NULL: 1), and a call's sums of
       the active parts' weights; weighted false: no part has a mask, the plain average */
    bool weighted;
    bool patched;       /* RescaleCFG, CFGZeroStar, APG: refused where more than one pair acts */
    size_t plane;
    int width;
    float *weights[2][KILN_MAX_PROMPT_PARTS], *total[2];
} prompt_parts;

/* A part's ConditioningSetMask weights: its mask stretched over the latent
 * bilinearly (torch's interpolate, as ComfyUI resizes it), times strength;
 * times its ConditioningSetAreaStrength. */
static kiln_status part_weights(const kiln_conditioning_part *part, const kiln_sampling_job *job, prompt_parts *pp,
                                int side, int index)
{
    if (!(part->area_strength >= 0.0 && part->area_strength <= 10.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has area strength %g (0 to 10)",
                         side ? "positive" : "negative", index + 1, part->area_strength);
    if (part->mask && (part->mask_w < 1 || part->mask_h < 1 || part->mask_w > KILN_IMAGE_MAX_SIDE ||
                       part->mask_h > KILN_IMAGE_MAX_SIDE || !(part->strength >= 0.0 && part->strength <= 10.0)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has a mask of %dx%d at strength %g "
                         "(a size, and 0 to 10)", side ? "positive" : "negative", index + 1, part->mask_w,
                         part->mask_h, part->strength);
    pp->plane = (size_t)job->latent_h * job->latent_w;
    pp->width = job->latent_w;
    float *w = pp->weights[side][index] = malloc(pp->plane * sizeof *w);
    if (!w || (!pp->total[side] && !(pp->total[side] = malloc(pp->plane * sizeof(float)))) ||
        (!pp->total[!side] && !(pp->total[!side] = malloc(pp->plane * sizeof(float)))))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    if (part->mask) kiln_resample(part->mask, 1, part->mask_h, part->mask_w, w, job->latent_h, job->latent_w,
                                  KILN_RESAMPLE_BILINEAR);
    /* float32 products in ComfyUI's order: the mask times its strength, then times the part's */
    const float area_strength = part->area_strength != 0.0 ? (float)part->area_strength : 1.0f;
    for (size_t at = 0; at < pp->plane; at++) w[at] = (part->mask ? w[at] * (float)part->strength : 1.0f) * area_strength;
    pp->weighted = true;
    return KILN_OK;
}

/* The weights of a call's active parts summed at each pixel, each side's;
 * a pixel none of a side's parts covers is refused. */
static kiln_status parts_total_weights(prompt_parts *pp, int active[2][KILN_MAX_PROMPT_PARTS], const int nactive[2],
                                       float sigma)
{
    for (int side = 0; side < 2; side++) {
        float *total = pp->total[side];
        for (size_t at = 0; at < pp->plane; at++) total[at] = 0.0f;
        for (int k = 0; k < nactive[side]; k++) {
            const float *w = pp->weights[side][active[side][k]];
            for (size_t at = 0; at < pp->plane; at++) total[at] += w ? w[at] : 1.0f;
        }
        for (size_t at = 0; at < pp->plane; at++)
            if (!(total[at] > 0.0f))
                return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: at sigma %g no part of the %s prompt covers latent "
                                 "pixel (%zu, %zu) (ConditioningSetMask: ComfyUI would sample it on a zero "
                                 "prediction); give the side a part over all of the picture", sigma,
                                 side ? "positive" : "negative", at % (size_t)pp->width, at / (size_t)pp->width);
    }
    return KILN_OK;
}

/* Under masks, the share of the pair of positive part a and negative part b
 * at latent pixel `at`: each part's weight over its side's total there. */
static float pair_share(const prompt_parts *pp, int a, int b, size_t at)
{
    const float *wp = pp->weights[1][a], *wn = pp->weights[0][b];
    return (wp ? wp[at] : 1.0f) / pp->total[1][at] * (wn ? wn[at] : 1.0f) / pp->total[0][at];
}

/* A step on the parts whose sigmas hold it: the denoised latent of each
 * pair of them averaged (the guidance being linear in both predictions,
 * that is ComfyUI's average of each side's predictions, then the
 * guidance). */
static kiln_status prompt_parts_call(void *ctx, const float *x, float sigma, float *denoised)
{
    prompt_parts *pp = ctx;
    /* the sigmas only fall: a pair with a part that ended above this one will not run again, and its graphs go */
    for (int a = 0; a < pp->nparts[1]; a++)
        for (int b = 0; b < pp->nparts[0]; b++) {
            prompt_pair *p = &pp->pairs[a * pp->nparts[0] + b];
            if (p->made && (pp->lo[1][a] > sigma || pp->lo[0][b] > sigma)) {
                kiln_denoiser_free(&p->d);
                p->made = false;
            }
        }
    int active[2][KILN_MAX_PROMPT_PARTS], nactive[2] = {0, 0};
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < pp->nparts[side]; i++)
            if (sigma <= pp->hi[side][i] && sigma >= pp->lo[side][i]) active[side][nactive[side]++] = i;
        if (!nactive[side])
            return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: none of the %s prompt's parts (ConditioningSetTimestep"
                             "Range) holds the step at sigma %g", side ? "positive" : "negative", sigma);
    }
    if (pp->patched && (pp->weighted || nactive[0] * nactive[1] > 1))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: a guidance patch (RescaleCFG, CFGZeroStar, APG, ...) with prompts in parts "
                         "acting together at sigma %g (ConditioningCombine, ConditioningSetMask): kiln guides each "
                         "pair of them apart, and those are not linear", sigma);
    if (pp->weighted) TRY(parts_total_weights(pp, active, nactive, sigma));
    for (int a = 0; a < nactive[1]; a++)
        for (int b = 0; b < nactive[0]; b++) {
            const int pair = active[1][a] * pp->nparts[0] + active[0][b];
            prompt_pair *p = &pp->pairs[pair];
            const bool first = a == 0 && b == 0;
            pp->called[a * nactive[0] + b] = pair;
            TRY(kiln_denoiser_call(&p->d, x, sigma, first && !pp->weighted ? denoised : pp->sum));
            if (pp->weighted) { /* each side's parts by their share of the weight at the pixel */
                for (size_t i = 0; i < pp->n; i++) {
                    const float share = pair_share(pp, active[1][a], active[0][b], i % pp->plane);
                    denoised[i] = first ? share * pp->sum[i] : denoised[i] + share * pp->sum[i];
                }
            } else {
                for (size_t i = 0; !first && i < pp->n; i++) denoised[i] += pp->sum[i];
            }
        }
    pp->ncalled = nactive[0] * nactive[1];
    const float pairs = (float)pp->ncalled;
    for (size_t i = 0; !pp->weighted && pairs > 1.0f && i < pp->n; i++) denoised[i] /= pairs;
    return KILN_OK;
}

/* The unconditional prediction of the last call on the parts: the average of
 * its pairs', as the guided one (with masks, weighted as it is). */
static kiln_status prompt_parts_uncond(void *ctx, float *uncond)
{
    const prompt_parts *pp = ctx;
    for (int k = 0; k < pp->ncalled; k++) {
        const int pair = pp->called[k], a = pair / pp->nparts[0], b = pair % pp->nparts[0];
        TRY(kiln_denoiser_uncond(&pp->pairs[pair].d, k || pp->weighted ? pp->sum : uncond));
        if (pp->weighted) {
            for (size_t i = 0; i < pp->n; i++) {
                const float share = pair_share(pp, a, b, i % pp->plane);
                uncond[i] = k ? uncond[i] + share * pp->sum[i] : share * pp->sum[i];
            }
        } else {
            for (size_t i = 0; k && i < pp->n; i++) uncond[i] += pp->sum[i];
        }
    }
    for (size_t i = 0; !pp->weighted && pp->ncalled > 1 && i < pp->n; i++) uncond[i] /= (float)pp->ncalled;
    return KILN_OK;
}

/* The sampler's settings: KSampler's, or a custom sampler node's
 * (job->sampler_options). */
static kiln_status sampler_settings(const kiln_sampling_job *job, const kiln_model_sampling *ms,
                                    kiln_sample_args *args)
{
    const kiln_sampler_options *so = job->sampler_options;
    double sde_start = 0.2, sde_end = 0.8;
    if (so) {
        args->eta = (float)so->eta;
        args->s_noise = (float)so->s_noise;
        args->lms_order = so->lms_order;
        if (so->max_stage) args->max_stage = so->max_stage;
        if (so->r != 0.0) args->seeds_r = so->r;
        const char *type = so->solver_type;
        const bool er_sde = job->sampler == KILN_SAMPLER_ER_SDE, seeds = job->sampler == KILN_SAMPLER_SEEDS_2;
        if (type && er_sde && strcmp(type, "ER-SDE") != 0) {
            /* the reverse-time SDE's scaler lambda^(eta + 1); its ODE: eta 0, no noise */
            const bool ode = strcmp(type, "ODE") == 0;
            if (!ode && strcmp(type, "Reverse-time SDE") != 0)
                return kiln_fail(KILN_ERR_INVALID_ARG, "er_sde: solver_type \"%s\" (ER-SDE, Reverse-time SDE or ODE)",
                                 type);
            if (ode || so->eta == 0.0) args->eta = 0.0f, args->s_noise = 0.0f;
            args->er_sde_power = args->eta + 1.0;
        } else if (type && seeds && strcmp(type, "phi_1") != 0) {
            if (strcmp(type, "phi_2") != 0)
                return kiln_fail(KILN_ERR_INVALID_ARG, "seeds_2: solver_type \"%s\" (phi_1 or phi_2)", type);
            args->seeds_phi_2 = true;
        } else if (type && !er_sde && !seeds) {
            return kiln_fail(KILN_ERR_INVALID_ARG, "solver_type \"%s\" is er_sde's or seeds_2's, not %s's", type,
                             kiln_sampler_name(job->sampler));
        }
        if (so->dpm_adaptive_custom) {
            if (so->order != 2 && so->order != 3)
                return kiln_fail(KILN_ERR_INVALID_ARG, "dpm_adaptive: order %d (2 or 3)", so->order);
            if (!(so->rtol > 0.0 && so->atol > 0.0 && so->h_init != 0.0 && so->accept_safety > 0.0 &&
                  isfinite(so->pcoeff) && isfinite(so->icoeff) && isfinite(so->dcoeff)))
                return kiln_fail(KILN_ERR_INVALID_ARG, "dpm_adaptive: rtol %g, atol %g, h_init %g, accept_safety %g "
                                 "(above 0) and the PID coefficients %g, %g, %g", so->rtol, so->atol, so->h_init,
                                 so->accept_safety, so->pcoeff, so->icoeff, so->dcoeff);
            args->dpm_order = so->order, args->dpm_rtol = so->rtol, args->dpm_atol = so->atol;
            args->dpm_h_init = so->h_init, args->dpm_pcoeff = so->pcoeff, args->dpm_icoeff = so->icoeff;
            args->dpm_dcoeff = so->dcoeff, args->dpm_accept_safety = so->accept_safety;
            args->dpm_noise = true;
        }
        if (so->euler_cfg_pp_alternative && job->sampler != KILN_SAMPLER_EULER_CFG_PP)
            return kiln_fail(KILN_ERR_INVALID_ARG, "SamplerEulerCFGpp's alternative version is euler_cfg_pp's, not "
                             "%s's", kiln_sampler_name(job->sampler));
        args->euler_pp = so->euler_cfg_pp_alternative;
        if (so->sa_solver_custom) {
            sde_start = so->sde_start_percent, sde_end = so->sde_end_percent;
            args->sa_predictor_order = so->predictor_order;
            args->sa_corrector_order = so->corrector_order;
            args->sa_simple_order_2 = so->simple_order_2;
            if (!(sde_start >= 0.0 && sde_start <= 1.0 && sde_end >= 0.0 && sde_end <= 1.0))
                return kiln_fail(KILN_ERR_INVALID_ARG, "sa_solver: sde_start_percent %g and sde_end_percent %g must "
                                 "be in [0, 1]", sde_start, sde_end);
        }
    }
    args->sa_solver_sigmas[0] = kiln_percent_to_sigma(ms, sde_start);
    args->sa_solver_sigmas[1] = kiln_percent_to_sigma(ms, sde_end);
    return KILN_OK;
}

/* The job's progress callback, keeping each step's x0 prediction on the
 * way (SamplerCustom's denoised_output is the last one). */
typedef struct {
    kiln_progress_fn progress;
    void *ctx;
    float *denoised;
    size_t n;
    bool kept;
} keep_denoised;

static kiln_status keep_denoised_step(void *ctx, int step, int total, const float *denoised)
{
    keep_denoised *k = ctx;
    memcpy(k->denoised, denoised, k->n * sizeof *k->denoised);
    k->kept = true;
    return k->progress ? k->progress(k->ctx, step, total, denoised) : KILN_OK;
}

/* KSampler's schedule of the job's steps, scheduler and denoise, cut to
 * KSamplerAdvanced's steps; none left when the cut starts past its end. */
static kiln_status ksampler_schedule(const kiln_sampling_job *job, const kiln_model_sampling *ms, float **sigmas,
                                     size_t *nsigmas)
{
    if (job->steps < 1 || job->steps > 10000)
        return kiln_fail(KILN_ERR_INVALID_ARG, "--steps %d: must be 1..10000", job->steps);
    if (!(job->denoise > 0.0 && job->denoise <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "--denoise %g: must be in (0, 1]", job->denoise);
    if (job->start_step < 0 || job->last_step < 0 || (job->last_step && job->last_step <= job->start_step))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: steps %d to %d of %d", job->start_step, job->last_step,
                         job->steps);
    float *all;
    size_t n;
    TRY(kiln_ksampler_sigmas(ms, job->scheduler, kiln_sampler_discards_penultimate_sigma(job->sampler), job->steps,
                             job->denoise, &all, &n));
    /* KSamplerAdvanced's cut of the schedule (ComfyUI's KSampler.sample) */
    if (job->last_step && (size_t)job->last_step < n - 1) {
        n = (size_t)job->last_step + 1;
        if (!job->leftover_noise) all[n - 1] = 0.0f;
    }
    if (job->start_step && (size_t)job->start_step >= n - 1) {
        n = 0;
    } else {
        memmove(all, all + job->start_step, (n - (size_t)job->start_step) * sizeof *all);
        n -= (size_t)job->start_step;
    }
    *sigmas = all;
    *nsigmas = n;
    return KILN_OK;
}

/* SamplerCustom's sigmas, as they are. */
static kiln_status given_schedule(const kiln_sigmas *given, float **sigmas, size_t *nsigmas)
{
    if (given->count < 0 || (given->count && !given->values))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: sigmas with count %d and %s values", given->count,
                         given->values ? "some" : "no");
    *nsigmas = (size_t)given->count;
    if (!(*sigmas = malloc((*nsigmas ? *nsigmas : 1) * sizeof **sigmas)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    if (*nsigmas) memcpy(*sigmas, given->values, *nsigmas * sizeof **sigmas);
    return KILN_OK;
}

/* What DualCFGGuider and PerpNegGuider take beside their three prompts:
 * what acts on the positive or negative prompt alone has no place among
 * three (an IP-Adapter's image tokens go by the prompt's place in ComfyUI's
 * batch of two, which three prompts do not fit), nor a patch of the plain
 * guidance; inpainting and the CFG++ samplers would need the predictions
 * before their blend and guidance. */
static kiln_status check_three_prompts(const kiln_sampling_job *job)
{
    const char *what = job->nparts[0] || job->nparts[1]                    ? "prompts in parts or areas"
                       : kiln_cfg_patched(&job->cfg_patches)               ? "a guidance patch (RescaleCFG, APG, ...)"
                       : job->skip_layer_guidance                          ? "SkipLayerGuidance"
                       : job->pag_scale > 0.0f                             ? "PerturbedAttentionGuidance"
                       : job->sag                                          ? "SelfAttentionGuidance"
                       : job->inpaint                                      ? "a noise mask (inpainting)"
                       : kiln_sampler_is_cfg_pp(job->sampler)              ? "a CFG++ sampler"
                       : job->nimage_prompts                               ? "IP-Adapter"
                       : job->nreferences[0] || job->nreferences[1]        ? "reference latents"
                       : job->flux_guidance != job->negative_flux_guidance ? "FluxGuidance differing between prompts"
                                                                           : NULL;
    for (int i = 0; i < job->ncontrols && !what; i++)
        if (job->controls[i].positive_only) what = "ControlNetApply on the positive prompt alone";
    if (!what) return KILN_OK;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: %s with %s", job->guider == KILN_GUIDER_PERP_NEG
                                                                        ? "PerpNegGuider" : "DualCFGGuider", what);
}

/* EasyCache and LazyCache run on one pair of prompts (their state is one
 * call's); EasyCache's first call would be another's with a guidance pass
 * (ComfyUI's own runs those passes through its cache too). */
static kiln_status check_step_cache(const kiln_sampling_job *job)
{
    const bool easy = job->step_cache->kind == KILN_EASY_CACHE;
    const char *name = easy ? "EasyCache" : "LazyCache";
    const char *what = job->nparts[0] || job->nparts[1]                          ? "prompts in parts or areas"
                       : job->guider != KILN_GUIDER_CFG                            ? "a three-prompt guider"
                       : easy && job->skip_layer_guidance && !job->skip_layer_guidance->uncond_only ? "SkipLayerGuidance"
                       : easy && job->pag_scale > 0.0f                             ? "PerturbedAttentionGuidance"
                       : easy && job->sag                                          ? "SelfAttentionGuidance"
                                                                                   : NULL;
    return what ? kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: %s with %s", name, what) : KILN_OK;
}

kiln_status kiln_ksample(const kiln_model *m, const kiln_sampling_job *job, const kiln_conditioning *positive,
                         const kiln_conditioning *negative, float **latent)
{
    /* the prompts as parts: the job's, or the two given over all of the sampling */
    const kiln_conditioning_part whole[2] = {{.cond = negative, .end_percent = 1.0}, {.cond = positive, .end_percent = 1.0}};
    const kiln_conditioning_part *parts[2];
    int nparts[2];
    for (int side = 0; side < 2; side++) {
        parts[side] = job->nparts[side] ? job->parts[side] : &whole[side];
        nparts[side] = job->nparts[side] ? job->nparts[side] : 1;
        if (nparts[side] > KILN_MAX_PROMPT_PARTS)
            return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: %d parts of the %s prompt: at most %d", nparts[side],
                             side ? "positive" : "negative", KILN_MAX_PROMPT_PARTS);
        for (int i = 0; i < nparts[side]; i++)
            if (!parts[side][i].cond || !(parts[side][i].start_percent >= 0.0 &&
                                         parts[side][i].start_percent <= parts[side][i].end_percent &&
                                         parts[side][i].end_percent <= 1.0))
                return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d: %s", side ? "positive" :
                                 "negative", i + 1, parts[side][i].cond ? "its range must be 0 <= start <= end <= 1"
                                                                        : "no conditioning");
    }
    if (job->guider != KILN_GUIDER_CFG) TRY(check_three_prompts(job));
    if (job->step_cache) TRY(check_step_cache(job));
    if (job->sag && (job->nparts[0] || job->nparts[1]))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: SelfAttentionGuidance with prompts in parts or areas "
                         "(ConditioningCombine, ConditioningSetTimestepRange, ...): kiln runs its pass on one "
                         "negative prompt");
    const bool slg_pass = job->skip_layer_guidance && !job->skip_layer_guidance->uncond_only;
    if (job->cfg_patches.apg && (slg_pass || job->pag_scale > 0.0f))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: APG with %s (its pass would take APG's conditional "
                         "prediction, which kiln does not give it)", slg_pass ? "SkipLayerGuidance"
                                                                                              : "PerturbedAttentionGuidance");
    if (job->cfg_patches.apg && job->cfg_patches.apg_momentum != 0.0f && !cond_parts_have_areas(parts, nparts) &&
        nparts[0] * nparts[1] > 1)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: APG's momentum with prompts in parts (kiln keeps its running "
                         "average for each pair of parts apart)");
    const int C = kiln_model_latent_channels(m);
    kiln_model_sampling ms;
    TRY(kiln_model_sampling_of(m, &ms));
    float *sigmas = NULL;
    size_t nsigmas = 0;
    kiln_sample_args args;
    kiln_sample_args_init(&args);
    TRY(sampler_settings(job, &ms, &args));
    TRY(job->sigmas ? given_schedule(job->sigmas, &sigmas, &nsigmas) : ksampler_schedule(job, &ms, &sigmas, &nsigmas));
    if (nsigmas == 0) { /* nothing to walk: the latent as it is */
        free(sigmas);
        size_t n = (size_t)job->batch * C * job->latent_h * job->latent_w, image = n / job->batch;
        if (!(*latent = calloc(n, sizeof(float)))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
        const float *as_is = job->init_latent ? job->init_latent : job->inpaint ? job->inpaint->latent : NULL;
        for (size_t i = 0; as_is && i < n; i++) (*latent)[i] = as_is[job->init_latent ? i : i % image];
        if (job->last_denoised) memcpy(job->last_denoised, *latent, n * sizeof(float));
        return KILN_OK;
    }

    size_t n = (size_t)job->batch * C * job->latent_h * job->latent_w;
    float *noise = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float)), *scaled = NULL, *mask = NULL;
    size_t plane = (size_t)job->latent_h * job->latent_w;
    /* areas (ConditioningSetArea) run each part on its own box; else a denoiser for each pair of parts */
    const bool areas = cond_parts_have_areas(parts, nparts);
    cond_areas *runs = NULL;
    const bool guider = job->guider != KILN_GUIDER_CFG;
    three_prompts *three = NULL;
    const int npairs = areas || guider ? 0 : nparts[0] * nparts[1];
    prompt_parts pp = {.pairs = calloc((size_t)(npairs ? npairs : 1), sizeof *pp.pairs),
                       .nparts = {nparts[0], nparts[1]}, .sum = npairs > 1 ? malloc(n * sizeof(float)) : NULL,
                       .n = n, .patched = kiln_cfg_patched(&job->cfg_patches)};
    for (int side = 0; side < 2; side++) {
        pp.hi[side] = malloc((size_t)nparts[side] * sizeof(float));
        pp.lo[side] = malloc((size_t)nparts[side] * sizeof(float));
    }
    kiln_status st = KILN_OK;
    if (!noise || !x || !pp.pairs || (npairs > 1 && !pp.sum) || !pp.hi[0] || !pp.hi[1] || !pp.lo[0] || !pp.lo[1]) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
        goto done;
    }
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < nparts[side]; i++) {
            pp.hi[side][i] = kiln_percent_to_sigma(&ms, parts[side][i].start_percent);
            pp.lo[side][i] = kiln_percent_to_sigma(&ms, parts[side][i].end_percent);
            if ((parts[side][i].mask || parts[side][i].area_strength != 0.0) && !areas && st == KILN_OK)
                st = part_weights(&parts[side][i], job, &pp, side, i);
        }
    if (st != KILN_OK) goto done;
    if (pp.weighted && !pp.sum && !(pp.sum = malloc(n * sizeof(float)))) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
        goto done;
    }
    kiln_rng rng;
    kiln_rng_seed(&rng, job->seed);
    if (job->disable_noise) {
        memset(noise, 0, n * sizeof(float));
    } else if (job->noise) {
        memcpy(noise, job->noise, n * sizeof(float));
    } else {
        if (job->noise_index) {
            float *draw = malloc(n / job->batch * sizeof *draw);
            if (!draw) {
                st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
                goto done;
            }
            kiln_rng_randn_indexed(&rng, job->noise_index, job->batch, n / job->batch, noise, draw);
            free(draw);
        } else {
            kiln_rng_randn(&rng, noise, n);
        }
    }
    kiln_sampling_job drawing = *job; /* HyperTile draws on from the noise's generator, as ComfyUI's global one */
    drawing.hypertile_rng = &rng;
    job = &drawing;
    const kiln_inpaint *inpaint = job->inpaint;
    if (inpaint && (job->init_latent || inpaint->h != job->latent_h || inpaint->w != job->latent_w)) {
        st = kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the inpainting latent is %dx%d, the job %dx%d", inpaint->w,
                       inpaint->h, job->latent_w, job->latent_h);
        goto done;
    }
    if (job->edit_latent && (job->init_latent || inpaint)) {
        st = kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: a picture to edit (InstructPix2Pix) with img2img or inpainting");
        goto done;
    }
    if (job->init_latent || inpaint) { /* a LATENT enters the model multiplied by the VAE's scale */
        if (!(scaled = malloc(n * sizeof(float))) || (inpaint && !(mask = malloc(plane * sizeof(float))))) {
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
            goto done;
        }
        const size_t image = n / job->batch; /* an inpainting latent is one image, repeated over the batch */
        for (int b = 0; b < job->batch; b++)
            kiln_vae_latent_in(&m->vae, inpaint ? inpaint->latent : job->init_latent + b * image, image, plane,
                               scaled + b * image);
        if (inpaint) kiln_inpaint_mask_resize(inpaint, job->latent_h, job->latent_w, mask);
    }
    kiln_sampler_start_x(&ms, sigmas[0], noise, scaled, x, n);

    /* DifferentialDiffusion's thresholds run from the schedule's first sigma to its last (the model's least at
       the lowest) */
    const float sigma_to = fmaxf(kiln_sigma_min(&ms), sigmas[nsigmas - 1]);
    const kiln_inpaint_mask blend = {mask, scaled, noise, job->differential, kiln_model_timestep(&ms, sigmas[0]),
                                     kiln_model_timestep(&ms, sigma_to)};
    if (areas) st = cond_areas_make(m, job, &ms, parts, nparts, &runs);
    if (guider) st = three_prompts_make(m, job, &ms, positive, negative, &three);
    for (int a = 0; a < nparts[1] && npairs && st == KILN_OK; a++)
        for (int b = 0; b < nparts[0] && st == KILN_OK; b++) {
            prompt_pair *p = &pp.pairs[a * nparts[0] + b];
            st = prompt_pair_make(m, job, &ms, parts[1][a].cond, parts[0][b].cond, inpaint ? &blend : NULL,
                                  job->latent_h, job->latent_w, job->cfg, p);
            if (st == KILN_OK && kiln_sampler_is_cfg_pp(job->sampler)) st = kiln_denoiser_keep_uncond(&p->d);
        }
    if (st != KILN_OK) goto done;
    args.sampler = job->sampler;
    args.sigmas = sigmas;
    args.nsigmas = nsigmas;
    args.n = n;
    const bool in_parts = job->nparts[0] || job->nparts[1];
    args.denoise = guider ? three_prompts_call : areas ? cond_areas_call : in_parts ? prompt_parts_call
                                                                            : kiln_denoiser_call;
    args.uncond = guider ? NULL : areas ? cond_areas_uncond : in_parts ? prompt_parts_uncond : kiln_denoiser_uncond;
    args.denoise_ctx = guider ? (void *)three : areas ? (void *)runs : in_parts ? (void *)&pp : (void *)&pp.pairs[0].d;
    args.seed = job->seed;
    args.progress = job->progress;
    args.progress_ctx = job->progress_ctx;
    keep_denoised kept = {job->progress, job->progress_ctx, job->last_denoised, n, false};
    if (job->last_denoised) args.progress = keep_denoised_step, args.progress_ctx = &kept;
    args.flow = ms.flow;
    if (ms.flow) args.flow_first_sigma = kiln_percent_to_sigma(&ms, 1e-4);
    st = kiln_sample(&args, x);
    if (st != KILN_OK) goto done;
    if (job->steps_skipped) *job->steps_skipped = job->step_cache ? pp.pairs[0].d.cache.skipped : 0;
    /* model_sampling.inverse_noise_scaling: a flow latent cut short (leftover noise) leaves as ComfyUI's does,
       divided by 1 - sigma, so that the next pass's noise scaling of it without noise gives it back */
    if (ms.flow && sigmas[nsigmas - 1] != 0.0f) {
        const float keep = 1.0f - sigmas[nsigmas - 1];
        for (size_t i = 0; i < n; i++) x[i] /= keep;
    }
    kiln_vae_latent_out(&m->vae, x, n, plane, x);
    if (job->last_denoised && kept.kept) kiln_vae_latent_out(&m->vae, job->last_denoised, n, plane, job->last_denoised);
    else if (job->last_denoised) memcpy(job->last_denoised, x, n * sizeof *x);
    *latent = x;
    x = NULL;
done:
    for (int i = 0; pp.pairs && i < npairs; i++) prompt_pair_free(&pp.pairs[i]);
    cond_areas_free(runs);
    three_prompts_free(three);
    free(pp.pairs);
    free(pp.sum);
    for (int side = 0; side < 2; side++) {
        free(pp.hi[side]);
        free(pp.lo[side]);
        free(pp.total[side]);
        for (int i = 0; i < KILN_MAX_PROMPT_PARTS; i++) free(pp.weights[side][i]);
    }
    free(sigmas);
    free(noise);
    free(x);
    free(scaled);
    free(mask);
    return st;
}

kiln_status kiln_image_prompt_tokens(const kiln_ip_adapter *ipa, const kiln_clip_vision *cv, const kiln_image *images,
                                     int count, float **tokens)
{
    *tokens = NULL;
    const clip_vision_config *cfg = cv->config;
    const int S = cfg->image_size, E = ipa->embed_dim, T = kiln_clip_vision_tokens(cfg);
    if (count < 1 || count > 64 || (ipa->flux && count > 1))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ip-adapter: %d pictures (%s)", count,
                         ipa->flux ? "XLabs' Flux adapter takes one" : "1 to 64");
    /* a plain adapter reads the image embeds, a Plus one the hidden states */
    const bool hidden = kiln_ip_adapter_reads_hidden(ipa);
    const int width = hidden ? cfg->hidden : cfg->projection, n = hidden ? T : 1;
    if (width != E)
        return kiln_fail(KILN_ERR_INVALID_ARG,
                         "the CLIP vision model (%s) makes %d-wide %s and the IP-Adapter%s reads %d-wide ones: they "
                         "do not go together",
                         cfg->name, width, hidden ? "hidden states" : "image embeds",
                         ipa->projection == KILN_IP_PLUS ? " Plus" : ipa->projection == KILN_IP_FULL ? " full-face" : "",
                         E);
    /* the negative rows': a zero image embedding (plain), a black picture's hidden states (Plus, full-face) or
       image embeds (XLabs' for Flux, as its ComfyUI node and diffusers' FluxPipeline encode one); encoded with
       the pictures, the negative first */
    const bool black_negative = hidden || ipa->flux;
    const int rows = 1 + count;
    const size_t picture = (size_t)3 * S * S, block = (size_t)ipa->tokens * ipa->context_dim;
    float *pixels = malloc((size_t)rows * picture * sizeof *pixels);
    float *embeds = calloc((size_t)rows * n * E, sizeof *embeds);
    float *made = malloc((size_t)rows * block * sizeof *made);
    float *out = malloc((size_t)2 * count * block * sizeof *out);
    kiln_image black = {0};
    kiln_status st = pixels && embeds && made && out ? KILN_OK
                                                     : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ip-adapter: out of host memory");
    if (st == KILN_OK && black_negative) st = kiln_image_alloc(&black, S, S);
    if (st == KILN_OK && black_negative) st = kiln_clip_vision_preprocess(cfg, &black, true, pixels);
    for (int i = 0; i < count && st == KILN_OK; i++)
        st = kiln_clip_vision_preprocess(cfg, &images[i], true, pixels + (1 + i) * picture);
    if (st == KILN_OK)
        st = hidden           ? kiln_clip_vision_encode(cv, pixels, rows, &(clip_vision_outputs){.penultimate = embeds})
             : black_negative ? kiln_clip_vision_encode(cv, pixels, rows, &(clip_vision_outputs){.image_embeds = embeds})
                              : kiln_clip_vision_encode(cv, pixels + picture, count,
                                                        &(clip_vision_outputs){.image_embeds = embeds + E});
    if (st == KILN_OK) st = kiln_ip_adapter_tokens(ipa, embeds, rows, n, made);
    if (st == KILN_OK) { /* the negative's tokens once per picture, then the pictures' side by side */
        for (int i = 0; i < count; i++) memcpy(out + i * block, made, block * sizeof *out);
        memcpy(out + count * block, made + block, count * block * sizeof *out);
    }
    kiln_image_free(&black);
    free(pixels);
    free(embeds);
    free(made);
    if (st != KILN_OK) {
        free(out);
        return st;
    }
    *tokens = out;
    return KILN_OK;
}

kiln_status kiln_style_tokens(const kiln_style_model *sm, const kiln_clip_vision *cv, const kiln_image *img, bool crop,
                              float **tokens, int *T)
{
    const clip_vision_config *cfg = cv->config;
    if (!cfg->siglip || cfg->hidden != sm->in_dim)
        return kiln_fail(KILN_ERR_INVALID_ARG, "the CLIP vision model (%s) makes %d-wide hidden states and the Redux "
                         "model reads SigLIP's %d-wide ones: they do not go together", cfg->name, cfg->hidden,
                         sm->in_dim);
    const int S = cfg->image_size, n = kiln_clip_vision_tokens(cfg);
    float *pixels = malloc((size_t)3 * S * S * sizeof *pixels);
    float *hidden = malloc((size_t)n * cfg->hidden * sizeof *hidden);
    *tokens = malloc((size_t)n * sm->out_dim * sizeof **tokens);
    kiln_status st = pixels && hidden && *tokens ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "redux: out of host memory");
    if (st == KILN_OK) st = kiln_clip_vision_preprocess(cfg, img, crop, pixels);
    if (st == KILN_OK) st = kiln_clip_vision_encode(cv, pixels, 1, &(clip_vision_outputs){.last_hidden = hidden});
    if (st == KILN_OK) st = kiln_style_model_tokens(sm, hidden, 1, n, *tokens);
    free(pixels);
    free(hidden);
    if (st != KILN_OK) {
        free(*tokens);
        *tokens = NULL;
        return st;
    }
    *T = n;
    return KILN_OK;
}

/* ControlNetInpaintingAliMamaApply's picture: black where the inverted mask
 * (1 - red / 255), stretched to the picture as common_upscale does it
 * (bilinear, cut centred), rounds to 0, half to even, as torch rounds it. */
static kiln_status masked_picture(const kiln_image *img, const kiln_image *mask, kiln_image *out)
{
    int x0, y0, cw, ch;
    TRY(kiln_image_center_box(mask->width, mask->height, img->width, img->height, &x0, &y0, &cw, &ch));
    const size_t n = (size_t)img->width * img->height;
    float *cut = malloc((size_t)cw * ch * sizeof *cut), *fitted = malloc(n * sizeof *fitted);
    *out = (kiln_image){img->width, img->height, 3, malloc(3 * n)};
    if (!cut || !fitted || !out->pixels) {
        free(cut);
        free(fitted);
        kiln_image_free(out);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ControlNet hint: out of host memory");
    }
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++)
            cut[(size_t)y * cw + x] = 1.0f - (float)mask->pixels[3 * ((size_t)(y0 + y) * mask->width + x0 + x)] / 255.0f;
    kiln_resample(cut, 1, ch, cw, fitted, img->height, img->width, KILN_RESAMPLE_BILINEAR);
    for (size_t i = 0; i < n; i++) {
        const bool kept = nearbyintf(fitted[i]) != 0.0f;
        for (int c = 0; c < 3; c++) out->pixels[3 * i + c] = kept ? img->pixels[3 * i + c] : 0;
    }
    free(cut);
    free(fitted);
    return KILN_OK;
}

/* The inverted mask (ones without one) fitted to the latent as the hint's
 * last channel, after its `channels` latent ones: hint grows by a channel. */
static kiln_status append_mask_channel(const kiln_image *mask, int channels, int h, int w, float **hint)
{
    float *grown = realloc(*hint, (size_t)(channels + 1) * h * w * sizeof *grown);
    if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ControlNet hint: out of host memory");
    *hint = grown;
    float *plane = grown + (size_t)channels * h * w;
    if (!mask) {
        for (size_t i = 0; i < (size_t)h * w; i++) plane[i] = 1.0f;
        return KILN_OK;
    }
    kiln_image fitted;
    TRY(kiln_image_resize_center(mask, w, h, &fitted));
    for (size_t i = 0; i < (size_t)h * w; i++) plane[i] = 1.0f - (float)fitted.pixels[3 * i] / 255.0f;
    kiln_image_free(&fitted);
    return KILN_OK;
}

kiln_status kiln_control_hint(const kiln_model *m, const kiln_controlnet *cn, const kiln_image *img,
                              const kiln_image *mask, int latent_h, int latent_w, float **hint)
{
    /* a Flux ControlNet of InstantX's kind takes the picture's latent: the picture fitted to the VAE's size of the
       latent (ComfyUI's compression ratio 1 times the VAE's), encoded, process_in */
    const bool latent = cn && cn->flux && !cn->flux->pixel_hint;
    const bool concat_mask = latent && cn->flux->concat_mask;
    if (mask && !concat_mask)
        return kiln_fail(KILN_ERR_INVALID_ARG, "a mask for a ControlNet that reads none (an inpainting one, "
                         "Alimama's Flux or SD3 kind, does)");
    const int scale = latent ? kiln_vae_factor(m->vae.config) : 8;
    int width = scale * latent_w, height = scale * latent_h;
    if (cn && cn->adapter) kiln_t2i_adapter_picture_size(cn->adapter, latent_h, latent_w, &height, &width);
    kiln_image kept = {0}, fitted;
    if (mask) TRY(masked_picture(img, mask, &kept));
    kiln_status fit = kiln_image_resize_center(mask ? &kept : img, width, height, &fitted);
    kiln_image_free(&kept);
    TRY(fit);
    const size_t n = (size_t)3 * fitted.width * fitted.height;
    float *pixels = malloc(n * sizeof *pixels);
    if (pixels) kiln_image_to_unit(&fitted, pixels);
    kiln_image_free(&fitted);
    if (!pixels) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ControlNet hint: out of host memory");
    if (cn && cn->flux) kiln_flux_controlnet_preprocess(cn->flux, pixels, n);
    if (latent || (cn && cn->flux && cn->flux->pixel_hint)) /* the VAE's input, or XLabs': times 2 minus 1 */
        for (size_t i = 0; i < n; i++) pixels[i] = pixels[i] * 2.0f - 1.0f;
    if (!latent) {
        *hint = pixels;
        return KILN_OK;
    }
    kiln_status st = kiln_vae_encode_image(m, pixels, 1, scale * latent_h, scale * latent_w, hint);
    free(pixels);
    TRY(st);
    const size_t values = (size_t)m->vae.config->latent_channels * latent_h * latent_w;
    /* an InstantX SD3 ControlNet's latent is scaled without the shift (ComfyUI's and diffusers' SD3 ControlNet
       latent format; Stability's SD 3.5 ones take the model's) */
    const bool unshifted = cn->flux->trunk.sd3 && !cn->flux->stability;
    if (unshifted)
        for (size_t i = 0; i < values; i++) (*hint)[i] *= m->vae.latents.scale;
    else
        kiln_vae_latent_in(&m->vae, *hint, values, (size_t)latent_h * latent_w, *hint);
    if (concat_mask && (st = append_mask_channel(mask, m->vae.config->latent_channels, latent_h, latent_w, hint))) {
        free(*hint);
        *hint = NULL;
    }
    return st;
}

kiln_status kiln_reference_method_from_name(const char *name, kiln_reference_method *out)
{
    static const char *const names[] = {"offset", "index", "uxo/uno", "uxo"};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (kiln_reference_method)(i < 3 ? i : KILN_REFERENCE_UXO);
            return KILN_OK;
        }
    return kiln_fail(KILN_ERR_INVALID_ARG, "reference latents method '%s': offset, index or uxo/uno",
                     name ? name : "(null)");
}

kiln_status kiln_union_control_type(const char *name, int *type)
{
    static const char *const types[] = {"openpose", "depth", "hed/pidi/scribble/ted",
                                        "canny/lineart/anime_lineart/mlsd", "normal", "segment", "tile", "repaint"};
    *type = -1;
    if (!name || !*name || strcmp(name, "auto") == 0) return KILN_OK;
    for (int i = 0; i < (int)(sizeof types / sizeof *types); i++)
        if (strcmp(name, types[i]) == 0) {
            *type = i;
            return KILN_OK;
        }
    char *end;
    long n = strtol(name, &end, 10);
    if (*end || end == name || n < 0 || n > 1000)
        return kiln_fail(KILN_ERR_INVALID_ARG, "union control type '%s': auto, a number, or one of SetUnionControlNetType's: "
                         "openpose, depth, hed/pidi/scribble/ted, canny/lineart/anime_lineart/mlsd, normal, segment, "
                         "tile, repaint", name);
    *type = (int)n;
    return KILN_OK;
}

typedef struct vae_job {
    const kiln_model *m;
    const float *in;
    int64_t in_shape[4];
    bool encode, mean_only;
    float *out;
    size_t out_count;
} vae_job;

static kiln_status vae_fn(kiln_graph *g, void *ctx)
{
    vae_job *j = ctx;
    tensor *x, *y;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, j->in_shape, j->in));
    if (j->encode)
        TRY(kiln_vae_encoder_forward(g, &j->m->vae, x, &y));
    else
        TRY(kiln_vae_decoder_forward(g, &j->m->vae, x, &y));
    /* encoding yields mean and log variance; ComfyUI's VAEEncode keeps the mean */
    if (kiln_graph_no_outputs(g)) return KILN_OK;
    int64_t N = y->shape[0], per = kiln_tensor_numel(y) / N, keep = j->mean_only ? per / 2 : per;
    if ((size_t)(N * keep) != j->out_count)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vae: output of %lld values, expected %zu", (long long)(N * keep), j->out_count);
    float *all = malloc((size_t)kiln_tensor_nbytes(y));
    if (!all) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vae: out of host memory");
    kiln_status st = kiln_graph_output(g, y, all, kiln_tensor_nbytes(y));
    for (int64_t b = 0; st == KILN_OK && b < N; b++) memcpy(j->out + b * keep, all + b * per, (size_t)keep * sizeof(float));
    free(all);
    return st;
}

static kiln_status run_vae(const kiln_model *m, vae_job *j)
{
    if (!(j->out = malloc(j->out_count * sizeof(float)))) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vae: out of host memory");
    kiln_status st = kiln_graph_run_once(kiln_weights_backend(m->weights), vae_fn, j);
    if (st != KILN_OK) {
        free(j->out);
        j->out = NULL;
    }
    return st;
}

kiln_status kiln_vae_decode_latent(const kiln_model *m, const float *latent, int batch, int h, int w, float **image)
{
    int f = kiln_vae_factor(m->vae.config), L = m->vae.config->latent_channels;
    vae_job j = {m, latent, {batch, L, h, w}, false, false, NULL, (size_t)batch * 3 * h * f * w * f};
    TRY(run_vae(m, &j));
    *image = j.out;
    return KILN_OK;
}

static kiln_status decode_tile(void *ctx, const float *latent, int h, int w, float *out)
{
    float *image;
    TRY(kiln_vae_decode_latent(ctx, latent, 1, h, w, &image));
    const int f = kiln_vae_factor(((const kiln_model *)ctx)->vae.config);
    memcpy(out, image, (size_t)3 * f * h * f * w * sizeof(float));
    free(image);
    return KILN_OK;
}

static kiln_status encode_tile(void *ctx, const float *image, int h, int w, float *out)
{
    const kiln_model *m = ctx;
    float *latent;
    TRY(kiln_vae_encode_image(m, image, 1, h, w, &latent));
    const int f = kiln_vae_factor(m->vae.config);
    memcpy(out, latent, (size_t)m->vae.config->latent_channels * (h / f) * (w / f) * sizeof(float));
    free(latent);
    return KILN_OK;
}

/* Each of `batch` pictures (H,W) through three tilings, the outputs summed
 * in their order, then divided by 3 (ComfyUI's decode_tiled_ and
 * encode_tiled_). */
static kiln_status three_tilings(const kiln_tiling tilings[3], const float *in, int batch, int H, int W, kiln_tile_fn fn,
                                 void *ctx, float **result)
{
    const kiln_tiling *t = &tilings[0];
    const int S = t->scale ? t->scale : 1, D = t->shrink ? t->shrink : 1;
    const size_t in_per = (size_t)t->in_channels * H * W, per = (size_t)t->out_channels * (S * H / D) * (S * W / D);
    float *out = calloc(batch * per, sizeof(float)), *pass = malloc(per * sizeof(float));
    kiln_status st = out && pass ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "VAE tiles: out of host memory");
    for (int b = 0; b < batch && st == KILN_OK; b++)
        for (int k = 0; k < 3 && st == KILN_OK; k++) {
            st = kiln_tiled_scale(&tilings[k], in + b * in_per, H, W, fn, ctx, pass);
            for (size_t i = 0; i < per && st == KILN_OK; i++) out[b * per + i] += pass[i];
        }
    free(pass);
    if (st != KILN_OK) {
        free(out);
        return st;
    }
    for (size_t i = 0; i < batch * per; i++) out[i] /= 3.0f;
    *result = out;
    return KILN_OK;
}

kiln_status kiln_vae_decode_latent_tiled(const kiln_model *m, const float *latent, int batch, int h, int w, int tile,
                                         int overlap, float **image)
{
    const int f = kiln_vae_factor(m->vae.config), L = m->vae.config->latent_channels;
    if (tile < 4 * overlap) overlap = tile / 4;
    const int t = tile / f, o = overlap / f;
    const kiln_tiling tilings[3] = {
        {.in_channels = L, .out_channels = 3, .scale = f, .tile_h = 2 * t, .tile_w = t / 2, .overlap = o},
        {.in_channels = L, .out_channels = 3, .scale = f, .tile_h = t / 2, .tile_w = 2 * t, .overlap = o},
        {.in_channels = L, .out_channels = 3, .scale = f, .tile_h = t, .tile_w = t, .overlap = o}};
    return three_tilings(tilings, latent, batch, h, w, decode_tile, (void *)m, image);
}

kiln_status kiln_vae_encode_image_tiled(const kiln_model *m, const float *image, int batch, int H, int W, int tile,
                                        int overlap, float **latent)
{
    const int f = kiln_vae_factor(m->vae.config), L = m->vae.config->latent_channels;
    const kiln_tiling tilings[3] = {
        {.in_channels = 3, .out_channels = L, .shrink = f, .tile_h = tile, .tile_w = tile, .overlap = overlap},
        {.in_channels = 3, .out_channels = L, .shrink = f, .tile_h = tile / 2, .tile_w = 2 * tile, .overlap = overlap},
        {.in_channels = 3, .out_channels = L, .shrink = f, .tile_h = 2 * tile, .tile_w = tile / 2, .overlap = overlap}};
    return three_tilings(tilings, image, batch, H, W, encode_tile, (void *)m, latent);
}

static kiln_status encode(const kiln_model *m, const float *image, int batch, int H, int W, bool mean_only, float **out)
{
    int f = kiln_vae_factor(m->vae.config), L = m->vae.config->latent_channels;
    vae_job j = {m, image, {batch, 3, H, W}, true, mean_only, NULL,
                 (size_t)batch * (mean_only ? L : 2 * L) * (H / f) * (W / f)};
    TRY(run_vae(m, &j));
    *out = j.out;
    return KILN_OK;
}

kiln_status kiln_vae_encode_image(const kiln_model *m, const float *image, int batch, int H, int W, float **latent)
{
    return encode(m, image, batch, H, W, true, latent);
}

kiln_status kiln_vae_encode_moments(const kiln_model *m, const float *image, int batch, int H, int W, float **moments)
{
    return encode(m, image, batch, H, W, false, moments);
}
