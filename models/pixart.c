#include "pixart.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static kiln_status bind_attention(kiln_weights *w, const char *root, const char *prefix, int64_t D,
                                  pixart_attention *a)
{
    char part[200];
    struct { const char *name; const tensor **w, **b; } parts[] = {
        {"to_q", &a->q_w, &a->q_b}, {"to_k", &a->k_w, &a->k_b}, {"to_v", &a->v_w, &a->v_b},
        {"to_out.0", &a->out_w, &a->out_b},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(part, sizeof part, "%s.%s", prefix, parts[i].name);
        TRY(kiln_dit_bind_linear(w, root, part, D, D, parts[i].w, parts[i].b));
    }
    return KILN_OK;
}

bool kiln_pixart_present(const kiln_checkpoint *ck, const char *root)
{
    return kiln_checkpoint_find_at(ck, root, "adaln_single.linear.weight") &&
           kiln_checkpoint_find_at(ck, root, "pos_embed.proj.weight");
}

kiln_status kiln_pixart_bind(kiln_weights *w, const char *root, int sample_size, kiln_pixart *dit)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    *dit = (kiln_pixart){0};
    const kiln_st_tensor *patch = kiln_checkpoint_find_at(ck, root, "pos_embed.proj.weight");
    const kiln_st_tensor *proj_out = kiln_checkpoint_find_at(ck, root, "proj_out.weight");
    const kiln_st_tensor *caption = kiln_checkpoint_find_at(ck, root, "caption_projection.linear_1.weight");
    if (!patch || !proj_out || !caption || patch->ndim != 4 || proj_out->ndim != 2 || caption->ndim != 2 ||
        patch->shape[2] != patch->shape[3])
        return kiln_fail(KILN_ERR_MODEL, "%s: no PixArt transformer (pos_embed.proj, caption_projection, proj_out)",
                         path);
    const int64_t D = patch->shape[0], p = patch->shape[2];
    dit->hidden = (int)D;
    dit->in_channels = (int)patch->shape[1];
    dit->patch = (int)p;
    dit->caption_dim = (int)caption->shape[1];
    if (D % PIXART_HEAD_DIM)
        return kiln_fail(KILN_ERR_MODEL, "%s: PixArt width %lld is not a whole number of %d-wide heads", path,
                         (long long)D, PIXART_HEAD_DIM);
    dit->heads = (int)(D / PIXART_HEAD_DIM);
    if (proj_out->shape[0] % (p * p))
        return kiln_fail(KILN_ERR_MODEL, "%s: proj_out has %lld rows, not patches of %lldx%lld", path,
                         (long long)proj_out->shape[0], (long long)p, (long long)p);
    dit->out_channels = (int)(proj_out->shape[0] / (p * p));
    dit->size_conditions =
        kiln_checkpoint_find_at(ck, root, "adaln_single.emb.resolution_embedder.linear_1.weight") != NULL;
    dit->sample_size = sample_size > 0 ? sample_size : dit->size_conditions ? 128 : 64;
    dit->comfy_positions = kiln_checkpoint_pixart_original(ck);
    const kiln_st_tensor *buffer = kiln_checkpoint_find_at(ck, root, "pos_embed.pos_embed");
    if (dit->comfy_positions && buffer) { /* ComfyUI's guess: the buffer's grid side in latent pixels over 64 */
        const int64_t tokens = buffer->ndim == 3 ? buffer->shape[1] : 0;
        int64_t side = 0;
        while ((side + 1) * (side + 1) <= tokens) side++;
        const int64_t input_size = side * p;
        if (side * side != tokens || input_size < 64 || input_size > 4096)
            return kiln_fail(KILN_ERR_MODEL, "%s: pos_embed has %lld tokens, not a square grid of a latent of 64 to "
                             "4096 a side", path, (long long)tokens);
        dit->pe_interpolation = (int)(input_size / 64);
        if (sample_size <= 0) dit->sample_size = (int)input_size;
    }
    char suffix[200];
    while (dit->layers < PIXART_MAX_LAYERS) {
        snprintf(suffix, sizeof suffix, "transformer_blocks.%d.scale_shift_table", dit->layers);
        if (!kiln_checkpoint_find_at(ck, root, suffix)) break;
        dit->layers++;
    }
    if (dit->layers == 0) return kiln_fail(KILN_ERR_MODEL, "%s: PixArt transformer without blocks", path);

    const tensor *patch_w;
    TRY(KILN_BIND(w, &patch_w, root, "pos_embed.proj.weight", D, dit->in_channels, p, p));
    dit->patch_w = *patch_w; /* the same elements, (D, C*p*p): the host cuts the patches in that order */
    dit->patch_w.ndim = 2;
    dit->patch_w.shape[1] = dit->in_channels * p * p;
    TRY(KILN_BIND(w, &dit->patch_b, root, "pos_embed.proj.bias", D));
    TRY(kiln_mlp_bind(w, root, "adaln_single.emb.timestep_embedder", 256, D, false, &dit->time));
    if (dit->size_conditions) {
        if (D % 3) return kiln_fail(KILN_ERR_MODEL, "%s: PixArt width %lld is not divisible by 3", path, (long long)D);
        TRY(kiln_mlp_bind(w, root, "adaln_single.emb.resolution_embedder", 256, D / 3, false, &dit->resolution));
        TRY(kiln_mlp_bind(w, root, "adaln_single.emb.aspect_ratio_embedder", 256, D / 3, false, &dit->aspect));
    }
    TRY(kiln_dit_bind_linear(w, root, "adaln_single.linear", 6 * D, D, &dit->time_w, &dit->time_b));
    TRY(kiln_mlp_bind(w, root, "caption_projection", dit->caption_dim, D, true, &dit->caption));
    for (int i = 0; i < dit->layers; i++) {
        pixart_block *b = &dit->block[i];
        char prefix[64];
        snprintf(suffix, sizeof suffix, "transformer_blocks.%d.scale_shift_table", i);
        TRY(KILN_BIND(w, &b->table, root, suffix, 6, D));
        snprintf(prefix, sizeof prefix, "transformer_blocks.%d.attn1", i);
        TRY(bind_attention(w, root, prefix, D, &b->self));
        snprintf(prefix, sizeof prefix, "transformer_blocks.%d.attn2", i);
        TRY(bind_attention(w, root, prefix, D, &b->cross));
        snprintf(prefix, sizeof prefix, "transformer_blocks.%d.ff", i);
        TRY(kiln_feed_forward_bind(w, root, prefix, D, &b->ff));
    }
    TRY(KILN_BIND(w, &dit->final_table, root, "scale_shift_table", 2, D));
    return kiln_dit_bind_linear(w, root, "proj_out", p * p * dit->out_channels, D, &dit->proj_out_w, &dit->proj_out_b);
}

kiln_status kiln_pixart_position_table(const kiln_pixart *dit, int h, int w, float *table)
{
    const int p = dit->patch, rows = h / p, cols = w / p, D = dit->hidden, quarter = D / 4;
    float base = (float)(dit->sample_size / p);
    float scale = (float)(dit->sample_size / 64 > 1 ? dit->sample_size / 64 : 1);
    if (dit->comfy_positions) {
        const int mean_side = (h + w) / 2;
        const double rounded = nearbyint(mean_side / 64.0); /* the default rounding: half to even, as Python's */
        if (rounded == 0)
            return kiln_fail(KILN_ERR_INVALID_ARG, "PixArt: a %dx%d latent (mean side %d) gives ComfyUI's position "
                             "table a zero scale, which it divides by: a latent's sides must average more than 32 "
                             "(pictures past 256 pixels with an 8x VAE)", w, h, mean_side);
        base = (float)(rounded * 64 / p);
        scale = (float)(dit->pe_interpolation ? dit->pe_interpolation : rounded);
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            /* grid coordinates in float as upstream's numpy computes them,
             * the sines in double */
            float at[2] = {(float)c / (float)((double)cols / base) / scale,
                           (float)r / (float)((double)rows / base) / scale};
            float *e = table + ((size_t)r * cols + c) * D;
            for (int half = 0; half < 2; half++)
                for (int k = 0; k < quarter; k++) {
                    double omega = 1.0 / pow(10000.0, (double)k / quarter);
                    double angle = (double)at[half] * omega;
                    e[half * 2 * quarter + k] = (float)sin(angle);
                    e[half * 2 * quarter + quarter + k] = (float)cos(angle);
                }
        }
    return KILN_OK;
}

/* The timestep vector (rows,D) that adaLN-single and the final norm read:
 * the timestep's MLP, plus, in the 1024 model, the embedded height and width
 * (rows, 2D/3) beside the embedded aspect ratio (rows, D/3). */
static kiln_status time_embedding(kiln_graph *g, const kiln_pixart *dit, const pixart_input *in, tensor **emb)
{
    const int64_t B = in->rows, D = dit->hidden;
    tensor *t, *f;
    TRY(kiln_graph_input(g, &t, KILN_F32, 1, (int64_t[]){B}, in->timesteps));
    TRY(nn_timestep_embedding(g, t, 256, &f));
    nn_drop(g, &t);
    TRY(kiln_mlp_forward(g, &dit->time, f, emb));
    nn_drop(g, &f);
    if (!dit->size_conditions) return KILN_OK;

    float *sizes = malloc((size_t)(3 * B) * sizeof *sizes); /* (B,2) height, width, then (B) aspect ratio */
    if (!sizes) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "pixart: out of host memory");
    for (int64_t r = 0; r < B; r++) {
        sizes[2 * r] = in->sizes[2 * r];
        sizes[2 * r + 1] = in->sizes[2 * r + 1];
        sizes[2 * B + r] = in->sizes[2 * r] / in->sizes[2 * r + 1];
    }
    tensor *res_in, *ar_in, *res, *ar, *res_f, *ar_f, *both, *sum;
    kiln_status st = kiln_graph_input(g, &res_in, KILN_F32, 1, (int64_t[]){2 * B}, sizes);
    if (st == KILN_OK) st = kiln_graph_input(g, &ar_in, KILN_F32, 1, (int64_t[]){B}, sizes + 2 * B);
    free(sizes);
    TRY(st);
    TRY(nn_timestep_embedding(g, res_in, 256, &res_f));
    nn_drop(g, &res_in);
    TRY(kiln_mlp_forward(g, &dit->resolution, res_f, &res)); // (2B, D/3)
    nn_drop(g, &res_f);
    TRY(nn_timestep_embedding(g, ar_in, 256, &ar_f));
    nn_drop(g, &ar_in);
    TRY(kiln_mlp_forward(g, &dit->aspect, ar_f, &ar)); // (B, D/3)
    nn_drop(g, &ar_f);
    /* (B, 2D/3) and (B, D/3) side by side: tokens of width 1 joined */
    tensor res3 = *res, ar3 = *ar;
    res3.ndim = ar3.ndim = 3;
    res3.shape[0] = ar3.shape[0] = B;
    res3.shape[1] = 2 * D / 3;
    ar3.shape[1] = D / 3;
    res3.shape[2] = ar3.shape[2] = 1;
    TRY(nn_concat_tokens(g, &res3, &ar3, &both));
    nn_drop(g, &res);
    nn_drop(g, &ar);
    both->ndim = 2;
    both->shape[1] = D;
    TRY(nn_add(g, *emb, both, &sum));
    nn_drop(g, &both);
    nn_drop(g, emb);
    *emb = sum;
    return KILN_OK;
}

/* Cross-attention: every row's queries attend to that row's own caption. */
static kiln_status cross_attention(kiln_graph *g, const kiln_pixart *dit, const pixart_attention *a,
                                   const tensor *x, tensor *const *captions, tensor **y)
{
    const int64_t B = x->shape[0];
    tensor *q, *o;
    TRY(nn_linear(g, x, a->q_w, a->q_b, &q));
    TRY(kiln_graph_tensor(g, &o, 3, q->shape));
    for (int64_t r = 0; r < B; r++) {
        tensor *k, *v;
        TRY(nn_linear(g, captions[r], a->k_w, a->k_b, &k));
        TRY(nn_linear(g, captions[r], a->v_w, a->v_b, &v));
        tensor q_r = kiln_row_view(q, r), o_r = kiln_row_view(o, r);
        TRY(nn_attention_to(g, &q_r, k, v, NULL, dit->heads, 1.0f / sqrtf((float)PIXART_HEAD_DIM), &o_r));
        nn_drop(g, &k);
        nn_drop(g, &v);
    }
    nn_drop(g, &q);
    TRY(nn_linear(g, o, a->out_w, a->out_b, y));
    nn_drop(g, &o);
    return KILN_OK;
}

static kiln_status self_attention(kiln_graph *g, const kiln_pixart *dit, const pixart_attention *a, const tensor *x,
                                  tensor **y)
{
    tensor *q, *k, *v, *o;
    TRY(nn_linear(g, x, a->q_w, a->q_b, &q));
    TRY(nn_linear(g, x, a->k_w, a->k_b, &k));
    TRY(nn_linear(g, x, a->v_w, a->v_b, &v));
    TRY(nn_attention(g, q, k, v, dit->heads, false, &o));
    nn_drop(g, &q);
    nn_drop(g, &k);
    nn_drop(g, &v);
    TRY(nn_linear(g, o, a->out_w, a->out_b, y));
    nn_drop(g, &o);
    return KILN_OK;
}

/* The adaLN-single vectors' order in a block's six */
enum { SHIFT_MSA, SCALE_MSA, GATE_MSA, SHIFT_MLP, SCALE_MLP, GATE_MLP };

static kiln_status block_forward(kiln_graph *g, const kiln_pixart *dit, const pixart_block *b, const tensor *mod,
                                 tensor *const *captions, tensor **x)
{
    const float eps = 1e-6f;
    tensor *n, *d;
    TRY(nn_ada_layer_norm(g, *x, mod, b->table, SHIFT_MSA, SCALE_MSA, eps, &n));
    TRY(self_attention(g, dit, &b->self, n, &d));
    nn_drop(g, &n);
    TRY(nn_gated_add_into(g, x, d, mod, b->table, GATE_MSA));

    TRY(cross_attention(g, dit, &b->cross, *x, captions, &d));
    TRY(nn_add_into(g, x, d));

    TRY(nn_ada_layer_norm(g, *x, mod, b->table, SHIFT_MLP, SCALE_MLP, eps, &n));
    TRY(kiln_mlp_forward(g, &b->ff, n, &d));
    nn_drop(g, &n);
    return nn_gated_add_into(g, x, d, mod, b->table, GATE_MLP);
}

typedef struct {
    tensor *tokens, *pos;
    tensor **captions;
} pixart_inputs;

static kiln_status upload_inputs(kiln_graph *g, const kiln_pixart *dit, const pixart_input *in, pixart_inputs *io)
{
    const int p = dit->patch, D = dit->hidden;
    const int64_t B = in->rows, N = (int64_t)(in->h / p) * (in->w / p), K = (int64_t)dit->in_channels * p * p;
    float *tokens = malloc((size_t)(B * N * (K > D ? K : D)) * sizeof *tokens);
    if (!tokens) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "pixart: out of host memory");
    kiln_patchify(in->latent, in->rows, dit->in_channels, in->h, in->w, dit->patch, tokens);
    kiln_status st = kiln_graph_input(g, &io->tokens, KILN_F32, 3, (int64_t[]){B, N, K}, tokens);
    if (st == KILN_OK) { /* the position table, once per row */
        st = kiln_pixart_position_table(dit, in->h, in->w, tokens);
        for (int64_t r = 1; r < B; r++) memcpy(tokens + r * N * D, tokens, (size_t)(N * D) * sizeof *tokens);
        if (st == KILN_OK) st = kiln_graph_input(g, &io->pos, KILN_F32, 3, (int64_t[]){B, N, D}, tokens);
    }
    free(tokens);
    for (int64_t r = 0; r < B && st == KILN_OK; r++)
        st = kiln_graph_input(g, &io->captions[r], KILN_F32, 3,
                              (int64_t[]){1, in->caption_tokens[r], dit->caption_dim}, in->captions[r]);
    return st;
}

static kiln_status forward_graph(kiln_graph *g, const kiln_pixart *dit, const pixart_input *in, float *out,
                                 tensor **captions)
{
    const int D = dit->hidden;
    const int64_t B = in->rows;
    pixart_inputs io = {.captions = captions};
    TRY(upload_inputs(g, dit, in, &io));
    tensor *x, *emb, *s, *mod, *y;
    TRY(nn_linear(g, io.tokens, &dit->patch_w, dit->patch_b, &y));
    nn_drop(g, &io.tokens);
    TRY(nn_add(g, y, io.pos, &x));
    nn_drop(g, &y);
    nn_drop(g, &io.pos);
    for (int64_t r = 0; r < B; r++) {
        tensor *projected;
        TRY(kiln_mlp_forward(g, &dit->caption, captions[r], &projected));
        nn_drop(g, &captions[r]);
        captions[r] = projected;
    }

    TRY(time_embedding(g, dit, in, &emb));
    TRY(nn_silu(g, emb, &s));
    TRY(nn_linear(g, s, dit->time_w, dit->time_b, &mod)); // (B,6D)
    nn_drop(g, &s);
    for (int i = 0; i < dit->layers; i++) TRY(block_forward(g, dit, &dit->block[i], mod, captions, &x));
    nn_drop(g, &mod);
    for (int64_t r = 0; r < B; r++) nn_drop(g, &captions[r]);

    /* the final norm's shift and scale: the timestep vector twice, plus its table */
    tensor emb3 = *emb, *twice, *n;
    emb3.ndim = 3;
    emb3.shape[1] = 1;
    emb3.shape[2] = D;
    TRY(nn_concat_tokens(g, &emb3, &emb3, &twice));
    nn_drop(g, &emb);
    TRY(nn_ada_layer_norm(g, x, twice, dit->final_table, 0, 1, 1e-6f, &n));
    nn_drop(g, &twice);
    nn_drop(g, &x);
    TRY(nn_linear(g, n, dit->proj_out_w, dit->proj_out_b, &y));
    nn_drop(g, &n);
    if (!kiln_graph_no_outputs(g)) {
        float *tokens = malloc((size_t)kiln_tensor_numel(y) * sizeof *tokens);
        if (!tokens) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "pixart: out of host memory");
        kiln_status st = kiln_graph_output(g, y, tokens, (size_t)kiln_tensor_numel(y) * sizeof *tokens);
        if (st == KILN_OK) kiln_unpatchify(tokens, in->rows, dit->out_channels, in->h, in->w, dit->patch, true, out);
        free(tokens);
        TRY(st);
    }
    nn_drop(g, &y);
    return KILN_OK;
}

typedef struct {
    const kiln_pixart *dit;
    const pixart_input *in;
    float *out;
} forward_ctx;

static kiln_status forward_fn(kiln_graph *g, void *ctx)
{
    forward_ctx *c = ctx;
    tensor **captions = calloc((size_t)c->in->rows, sizeof *captions);
    if (!captions) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "pixart: out of host memory");
    kiln_status st = forward_graph(g, c->dit, c->in, c->out, captions);
    free(captions);
    return st;
}

kiln_status kiln_pixart_forward(kiln_graph *g, const kiln_pixart *dit, const pixart_input *in, float *out)
{
    if (in->rows < 1 || in->h < dit->patch || in->w < dit->patch || in->h % dit->patch || in->w % dit->patch)
        return kiln_fail(KILN_ERR_INVALID_ARG, "pixart: a %dx%d latent is not whole %dx%d patches", in->h, in->w,
                         dit->patch, dit->patch);
    for (int r = 0; r < in->rows; r++)
        if (in->caption_tokens[r] < 1)
            return kiln_fail(KILN_ERR_INVALID_ARG, "pixart: row %d has an empty caption", r);
    return kiln_graph_run(g, forward_fn, &(forward_ctx){dit, in, out});
}
