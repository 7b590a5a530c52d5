#include "flux.h"

#include "flux_controlnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

bool kiln_flux_present(const kiln_checkpoint *ck, const char *root)
{
    return kiln_checkpoint_find_at(ck, root, "x_embedder.weight") &&
           (kiln_checkpoint_find_at(ck, root, "time_text_embed.timestep_embedder.linear_1.weight") ||
            kiln_checkpoint_find_at(ck, root, "distilled_guidance_layer.in_proj.weight"));
}

/* The q, k, v (and, where `norms`, per-head norms) of `<prefix>.<attn>`:
 * the image stream's names, or (txt) the caption stream's. */
static kiln_status bind_qkv(kiln_weights *w, const char *root, const char *prefix, const char *attn, bool txt,
                            bool norms, int64_t D, int64_t hd, flux_qkv *a)
{
    static const char *const names[2][5] = {{"to_q", "to_k", "to_v", "norm_q", "norm_k"},
                                            {"add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k"}};
    const char *const *n = names[txt];
    const tensor **weights[3][2] = {{&a->q_w, &a->q_b}, {&a->k_w, &a->k_b}, {&a->v_w, &a->v_b}};
    char part[200];
    for (int i = 0; i < 3; i++) {
        snprintf(part, sizeof part, "%s.%s.%s", prefix, attn, n[i]);
        TRY(kiln_dit_bind_linear(w, root, part, D, D, weights[i][0], weights[i][1]));
    }
    a->norm_q = a->norm_k = NULL;
    if (!norms) return KILN_OK;
    snprintf(part, sizeof part, "%s.%s.%s.weight", prefix, attn, n[3]);
    TRY(KILN_BIND(w, &a->norm_q, root, part, hd));
    snprintf(part, sizeof part, "%s.%s.%s.weight", prefix, attn, n[4]);
    return KILN_BIND(w, &a->norm_k, root, part, hd);
}

static int count_blocks(const kiln_checkpoint *ck, const char *root, const char *fmt, int most)
{
    int n = 0;
    char name[128];
    for (; n < most; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!kiln_checkpoint_find_at(ck, root, name)) break;
    }
    return n;
}

/* Block i; its modulation layers where it has them (not Chroma's). */
static kiln_status bind_double(kiln_weights *w, const char *root, int i, bool modulated, int64_t D, int64_t hd,
                               flux_double_block *b)
{
    char prefix[64], part[200];
    snprintf(prefix, sizeof prefix, "transformer_blocks.%d", i);
    if (modulated) {
        snprintf(part, sizeof part, "%s.norm1.linear", prefix);
        TRY(kiln_dit_bind_linear(w, root, part, 6 * D, D, &b->img_mod_w, &b->img_mod_b));
        snprintf(part, sizeof part, "%s.norm1_context.linear", prefix);
        TRY(kiln_dit_bind_linear(w, root, part, 6 * D, D, &b->txt_mod_w, &b->txt_mod_b));
    }
    TRY(bind_qkv(w, root, prefix, "attn", false, true, D, hd, &b->img));
    TRY(bind_qkv(w, root, prefix, "attn", true, true, D, hd, &b->txt));
    snprintf(part, sizeof part, "%s.attn.to_out.0", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, D, D, &b->img_out_w, &b->img_out_b));
    snprintf(part, sizeof part, "%s.attn.to_add_out", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, D, D, &b->txt_out_w, &b->txt_out_b));
    snprintf(part, sizeof part, "%s.ff", prefix);
    TRY(kiln_feed_forward_bind(w, root, part, D, &b->img_ff));
    snprintf(part, sizeof part, "%s.ff_context", prefix);
    return kiln_feed_forward_bind(w, root, part, D, &b->txt_ff);
}

static kiln_status bind_single(kiln_weights *w, const char *root, int i, bool modulated, int64_t D, int64_t hd,
                               flux_single_block *b)
{
    char prefix[64], part[200];
    snprintf(prefix, sizeof prefix, "single_transformer_blocks.%d", i);
    snprintf(part, sizeof part, "%s.norm.linear", prefix);
    if (modulated) TRY(kiln_dit_bind_linear(w, root, part, 3 * D, D, &b->mod_w, &b->mod_b));
    TRY(bind_qkv(w, root, prefix, "attn", false, true, D, hd, &b->qkv));
    snprintf(part, sizeof part, "%s.proj_mlp", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, 4 * D, D, &b->mlp_w, &b->mlp_b));
    snprintf(part, sizeof part, "%s.proj_out", prefix);
    return kiln_dit_bind_linear(w, root, part, D, 5 * D, &b->out_w, &b->out_b);
}

/* Chroma's distilled guidance layer, giving rows D wide. */
static kiln_status bind_approximator(kiln_weights *w, const char *root, int64_t D, chroma_approximator *a)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const kiln_st_tensor *in = kiln_checkpoint_find_at(ck, root, "distilled_guidance_layer.in_proj.weight");
    if (!in || in->ndim != 2 || in->shape[1] != CHROMA_MOD_INPUT)
        return kiln_fail(KILN_ERR_MODEL, "%s: Chroma's distilled_guidance_layer.in_proj does not read the %d-wide "
                         "rows of its timestep, guidance and index", kiln_checkpoint_path(ck), CHROMA_MOD_INPUT);
    a->width = (int)in->shape[0];
    a->nlayers = count_blocks(ck, root, "distilled_guidance_layer.layers.%d.linear_1.weight",
                              CHROMA_MAX_APPROX_LAYERS + 1);
    if (a->nlayers > CHROMA_MAX_APPROX_LAYERS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: Chroma's distilled guidance layer has more than %d layers",
                         kiln_checkpoint_path(ck), CHROMA_MAX_APPROX_LAYERS);
    TRY(kiln_dit_bind_linear(w, root, "distilled_guidance_layer.in_proj", a->width, CHROMA_MOD_INPUT, &a->in_w,
                             &a->in_b));
    for (int i = 0; i < a->nlayers; i++) {
        char part[96];
        snprintf(part, sizeof part, "distilled_guidance_layer.layers.%d", i);
        TRY(kiln_mlp_bind(w, root, part, a->width, a->width, false, &a->layers[i]));
        snprintf(part, sizeof part, "distilled_guidance_layer.norms.%d.weight", i);
        TRY(KILN_BIND(w, &a->norms[i], root, part, a->width));
    }
    return kiln_dit_bind_linear(w, root, "distilled_guidance_layer.out_proj", D, a->width, &a->out_w, &a->out_b);
}

kiln_status kiln_flux_bind_trunk(kiln_weights *w, const char *root, const int *axes, kiln_flux *flux)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    *flux = (kiln_flux){0};
    const kiln_st_tensor *img = kiln_checkpoint_find_at(ck, root, "x_embedder.weight");
    const kiln_st_tensor *txt = kiln_checkpoint_find_at(ck, root, "context_embedder.weight");
    const kiln_st_tensor *pooled = kiln_checkpoint_find_at(ck, root, "time_text_embed.text_embedder.linear_1.weight");
    const kiln_st_tensor *norm_q = kiln_checkpoint_find_at(ck, root, "transformer_blocks.0.attn.norm_q.weight");
    flux->chroma = kiln_checkpoint_find_at(ck, root, "distilled_guidance_layer.in_proj.weight") != NULL;
    if (!img || !txt || (!pooled && !flux->chroma) || !norm_q || img->ndim != 2 || txt->ndim != 2 ||
        (pooled && pooled->ndim != 2) || norm_q->ndim != 1)
        return kiln_fail(KILN_ERR_MODEL, "%s: no Flux transformer (x_embedder, context_embedder, "
                         "time_text_embed.text_embedder or Chroma's distilled_guidance_layer, "
                         "transformer_blocks.0.attn.norm_q)", path);
    const int64_t D = img->shape[0], hd = norm_q->shape[0];
    flux->hidden = (int)D;
    flux->in_channels = (int)img->shape[1];
    flux->context_dim = (int)txt->shape[1];
    flux->pooled_dim = flux->chroma ? 0 : (int)pooled->shape[1];
    flux->head_dim = (int)hd;
    if (hd < 2 || hd % 2 || D % hd)
        return kiln_fail(KILN_ERR_MODEL, "%s: Flux width %lld is no whole number of heads %lld wide", path,
                         (long long)D, (long long)hd);
    flux->heads = (int)(D / hd);
    flux->out_channels = flux->in_channels;
    static const int flux1_axes[3] = {16, 56, 56};
    memcpy(flux->axes, axes ? axes : flux1_axes, sizeof flux->axes);
    if (flux->axes[0] + flux->axes[1] + flux->axes[2] != hd || flux->axes[0] % 2 || flux->axes[1] % 2 ||
        flux->axes[2] % 2)
        return kiln_fail(KILN_ERR_MODEL, "%s: rotary axes %d, %d, %d do not split heads %lld wide into pairs", path,
                         flux->axes[0], flux->axes[1], flux->axes[2], (long long)hd);
    flux->guidance = kiln_checkpoint_find_at(ck, root, "time_text_embed.guidance_embedder.linear_1.weight") != NULL;
    flux->ndouble = count_blocks(ck, root, "transformer_blocks.%d.attn.to_q.weight", FLUX_MAX_DOUBLE);
    flux->nsingle = count_blocks(ck, root, "single_transformer_blocks.%d.attn.to_q.weight", FLUX_MAX_SINGLE);
    if (flux->chroma && 3 * flux->nsingle + 12 * flux->ndouble + 2 > CHROMA_MOD_ROWS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a Chroma transformer of %d double and %d single blocks takes "
                         "more than the %d rows of its modulation table", path, flux->ndouble, flux->nsingle,
                         CHROMA_MOD_ROWS);

    TRY(kiln_dit_bind_linear(w, root, "x_embedder", D, flux->in_channels, &flux->img_in_w, &flux->img_in_b));
    TRY(kiln_dit_bind_linear(w, root, "context_embedder", D, flux->context_dim, &flux->txt_in_w, &flux->txt_in_b));
    if (flux->chroma) {
        TRY(bind_approximator(w, root, D, &flux->approx));
    } else {
        TRY(kiln_mlp_bind(w, root, "time_text_embed.timestep_embedder", 256, D, false, &flux->time));
        if (flux->guidance)
            TRY(kiln_mlp_bind(w, root, "time_text_embed.guidance_embedder", 256, D, false, &flux->guidance_mlp));
        TRY(kiln_mlp_bind(w, root, "time_text_embed.text_embedder", flux->pooled_dim, D, false, &flux->pooled));
    }
    for (int i = 0; i < flux->ndouble; i++) TRY(bind_double(w, root, i, !flux->chroma, D, hd, &flux->dbl[i]));
    for (int i = 0; i < flux->nsingle; i++) TRY(bind_single(w, root, i, !flux->chroma, D, hd, &flux->sgl[i]));
    return KILN_OK;
}

kiln_status kiln_flux_bind(kiln_weights *w, const char *root, const int *axes, kiln_flux *flux)
{
    TRY(kiln_flux_bind_trunk(w, root, axes, flux));
    /* Canny and Depth read a picture's channels beside the latent's, Fill also a mask's (8x8 pixels a latent
       pixel: 64 channels, 256 a token), and give the latent's */
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const kiln_st_tensor *out = kiln_checkpoint_find_at(ck, root, "proj_out.weight");
    flux->out_channels = out && out->ndim == 2 ? (int)out->shape[0] : flux->in_channels;
    if (flux->in_channels != flux->out_channels && flux->in_channels != 2 * flux->out_channels &&
        flux->in_channels != 2 * flux->out_channels + KILN_FLUX_FILL_MASK_CHANNELS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: the Flux transformer reads %d channels a token and gives %d: "
                         "neither FLUX.1's, Canny/Depth's nor Fill's", kiln_checkpoint_path(ck), flux->in_channels,
                         flux->out_channels);
    const int64_t D = flux->hidden;
    if (!flux->chroma)
        TRY(kiln_dit_bind_linear(w, root, "norm_out.linear", 2 * D, D, &flux->norm_out_w, &flux->norm_out_b));
    return kiln_dit_bind_linear(w, root, "proj_out", flux->out_channels, D, &flux->proj_out_w, &flux->proj_out_b);
}

bool kiln_sd3_present(const kiln_checkpoint *ck, const char *root)
{
    return kiln_checkpoint_find_at(ck, root, "pos_embed.proj.weight") &&
           kiln_checkpoint_find_at(ck, root, "context_embedder.weight") &&
           kiln_checkpoint_find_at(ck, root, "transformer_blocks.0.norm1_context.linear.weight");
}

/* One of SD3's joint blocks: FLUX.1's double block, but for the last one
 * (no caption output: its caption modulation is two vectors), SD 3.5
 * Medium's second attention (nine image vectors) and an SD 3.5 ControlNet's
 * blocks of Stability's kind (no caption side at all: diffusers'
 * SD3SingleTransformerBlock). */
static kiln_status bind_sd3_block(kiln_weights *w, const char *root, int i, bool norms, int64_t D, int64_t hd,
                                  flux_double_block *b)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    char prefix[64], part[200];
    snprintf(prefix, sizeof prefix, "transformer_blocks.%d", i);
    snprintf(part, sizeof part, "%s.attn2.to_q.weight", prefix);
    const bool dual = kiln_checkpoint_find_at(ck, root, part) != NULL;
    snprintf(part, sizeof part, "%s.attn.to_add_out.weight", prefix);
    const bool last = kiln_checkpoint_find_at(ck, root, part) == NULL;
    snprintf(part, sizeof part, "%s.norm1_context.linear.weight", prefix);
    const bool caption = kiln_checkpoint_find_at(ck, root, part) != NULL;
    snprintf(part, sizeof part, "%s.norm1.linear", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, (dual ? 9 : 6) * D, D, &b->img_mod_w, &b->img_mod_b));
    TRY(bind_qkv(w, root, prefix, "attn", false, norms, D, hd, &b->img));
    snprintf(part, sizeof part, "%s.attn.to_out.0", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, D, D, &b->img_out_w, &b->img_out_b));
    snprintf(part, sizeof part, "%s.ff", prefix);
    TRY(kiln_feed_forward_bind(w, root, part, D, &b->img_ff));
    if (caption) {
        snprintf(part, sizeof part, "%s.norm1_context.linear", prefix);
        TRY(kiln_dit_bind_linear(w, root, part, (last ? 2 : 6) * D, D, &b->txt_mod_w, &b->txt_mod_b));
        TRY(bind_qkv(w, root, prefix, "attn", true, norms, D, hd, &b->txt));
    }
    if (caption && !last) {
        snprintf(part, sizeof part, "%s.attn.to_add_out", prefix);
        TRY(kiln_dit_bind_linear(w, root, part, D, D, &b->txt_out_w, &b->txt_out_b));
        snprintf(part, sizeof part, "%s.ff_context", prefix);
        TRY(kiln_feed_forward_bind(w, root, part, D, &b->txt_ff));
    }
    if (!dual) return KILN_OK;
    TRY(bind_qkv(w, root, prefix, "attn2", false, norms, D, hd, &b->img2));
    snprintf(part, sizeof part, "%s.attn2.to_out.0", prefix);
    return kiln_dit_bind_linear(w, root, part, D, D, &b->img2_out_w, &b->img2_out_b);
}

/* The timestep and pooled embeddings and the joint blocks, every one with
 * a caption side (caption) or none; flux's sizes set. */
static kiln_status bind_sd3_blocks(kiln_weights *w, const char *root, bool caption, kiln_flux *flux)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    const int64_t D = flux->hidden, hd = flux->head_dim;
    const bool norms = kiln_checkpoint_find_at(ck, root, "transformer_blocks.0.attn.norm_q.weight") != NULL;
    flux->ndouble = count_blocks(ck, root, "transformer_blocks.%d.norm1.linear.weight", FLUX_MAX_DOUBLE + 1);
    if (flux->ndouble > FLUX_MAX_DOUBLE)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: an SD3 transformer of more than %d blocks", path, FLUX_MAX_DOUBLE);
    TRY(kiln_mlp_bind(w, root, "time_text_embed.timestep_embedder", 256, D, false, &flux->time));
    TRY(kiln_mlp_bind(w, root, "time_text_embed.text_embedder", flux->pooled_dim, D, false, &flux->pooled));
    for (int i = 0; i < flux->ndouble; i++) {
        TRY(bind_sd3_block(w, root, i, norms, D, hd, &flux->dbl[i]));
        if ((flux->dbl[i].txt_mod_w != NULL) != caption)
            return kiln_fail(KILN_ERR_MODEL, "%s: SD3 block %d %s a caption side (norm1_context), unlike the "
                             "model's others", path, i, caption ? "lacks" : "has");
    }
    return KILN_OK;
}

kiln_status kiln_sd3_bind_trunk(kiln_weights *w, const char *root, kiln_flux *flux)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    const char *path = kiln_checkpoint_path(ck);
    *flux = (kiln_flux){.sd3 = true};
    const kiln_st_tensor *patch = kiln_checkpoint_find_at(ck, root, "pos_embed.proj.weight");
    const kiln_st_tensor *table = kiln_checkpoint_find_at(ck, root, "pos_embed.pos_embed");
    const kiln_st_tensor *txt = kiln_checkpoint_find_at(ck, root, "context_embedder.weight");
    const kiln_st_tensor *pooled = kiln_checkpoint_find_at(ck, root, "time_text_embed.text_embedder.linear_1.weight");
    const kiln_st_tensor *norm_q = kiln_checkpoint_find_at(ck, root, "transformer_blocks.0.attn.norm_q.weight");
    if (!patch || !table || !txt || !pooled || patch->ndim != 4 || patch->shape[2] != 2 || patch->shape[3] != 2 ||
        txt->ndim != 2 || pooled->ndim != 2)
        return kiln_fail(KILN_ERR_MODEL, "%s: no SD3 transformer (pos_embed.proj of 2x2 patches, pos_embed.pos_embed, "
                         "context_embedder, time_text_embed.text_embedder)", path);
    const int64_t D = patch->shape[0];
    /* SD3's heads are 64 wide (ComfyUI's MMDiT: as many heads as blocks, 64 each); a folder's config or SD 3.5's
       q norm says otherwise */
    int64_t hd = kiln_checkpoint_head_dim(ck) ? kiln_checkpoint_head_dim(ck) : 64;
    if (norm_q && norm_q->ndim == 1) hd = norm_q->shape[0];
    if (hd < 1 || D % hd)
        return kiln_fail(KILN_ERR_MODEL, "%s: SD3 width %lld is no whole number of heads %lld wide", path,
                         (long long)D, (long long)hd);
    const int64_t cells = kiln_st_numel(table) / (D ? D : 1);
    int side = (int)lround(sqrt((double)cells));
    if ((int64_t)side * side * D != kiln_st_numel(table) || side < 1)
        return kiln_fail(KILN_ERR_MODEL, "%s: pos_embed.pos_embed (%lld values) is no square table of %lld-wide "
                         "positions", path, (long long)kiln_st_numel(table), (long long)D);
    flux->hidden = (int)D;
    flux->head_dim = (int)hd;
    flux->heads = (int)(D / hd);
    flux->in_channels = flux->out_channels = (int)patch->shape[1] * 4;
    flux->context_dim = (int)txt->shape[1];
    flux->pooled_dim = (int)pooled->shape[1];
    if (kiln_dtype_is_quantized(table->dtype) && D % kiln_dtype_block(table->dtype))
        return kiln_fail(KILN_ERR_MODEL, "%s: pos_embed.pos_embed's %lld-wide rows are no whole %s blocks", path,
                         (long long)D, kiln_dtype_name(table->dtype));
    flux->pos_table = table;
    flux->pos_side = side;
    const tensor *patch_w;
    TRY(KILN_BIND(w, &patch_w, root, "pos_embed.proj.weight", D, patch->shape[1], 2, 2));
    flux->patch_w = *patch_w; /* the same elements as a linear over kiln_patchify's tokens */
    flux->patch_w.ndim = 2;
    flux->patch_w.shape[1] = flux->in_channels;
    TRY(KILN_BIND(w, &flux->img_in_b, root, "pos_embed.proj.bias", D));
    TRY(kiln_dit_bind_linear(w, root, "context_embedder", D, flux->context_dim, &flux->txt_in_w, &flux->txt_in_b));
    return bind_sd3_blocks(w, root, true, flux);
}

kiln_status kiln_sd3_bind_image_trunk(kiln_weights *w, const char *root, const kiln_flux *model, kiln_flux *flux)
{
    const kiln_checkpoint *ck = kiln_weights_checkpoint(w);
    *flux = (kiln_flux){.sd3 = true};
    const kiln_st_tensor *time = kiln_checkpoint_find_at(ck, root, "time_text_embed.timestep_embedder.linear_1.weight");
    const kiln_st_tensor *pooled = kiln_checkpoint_find_at(ck, root, "time_text_embed.text_embedder.linear_1.weight");
    if (!time || !pooled || time->ndim != 2 || pooled->ndim != 2)
        return kiln_fail(KILN_ERR_MODEL, "%s: no SD3 blocks (time_text_embed.timestep_embedder, "
                         "time_text_embed.text_embedder)", kiln_checkpoint_path(ck));
    flux->hidden = (int)time->shape[0];
    flux->head_dim = model->head_dim;
    flux->heads = flux->hidden / model->head_dim;
    flux->in_channels = flux->out_channels = model->in_channels;
    flux->pooled_dim = (int)pooled->shape[1];
    return bind_sd3_blocks(w, root, false, flux);
}

kiln_status kiln_sd3_bind(kiln_weights *w, const char *root, kiln_flux *flux)
{
    TRY(kiln_sd3_bind_trunk(w, root, flux));
    const char *path = kiln_checkpoint_path(kiln_weights_checkpoint(w));
    const kiln_st_tensor *out = kiln_checkpoint_find_at(kiln_weights_checkpoint(w), root, "proj_out.weight");
    if (!out || out->ndim != 2 || out->shape[0] != flux->in_channels)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: the SD3 transformer's proj_out does not give the %d channels a "
                         "patch it reads", path, flux->in_channels);
    if (flux->ndouble < 1 || flux->dbl[flux->ndouble - 1].txt_out_w)
        return kiln_fail(KILN_ERR_MODEL, "%s: the SD3 transformer's last block is missing (one without "
                         "attn.to_add_out)", path);
    for (int i = 0; i + 1 < flux->ndouble; i++)
        if (!flux->dbl[i].txt_out_w)
            return kiln_fail(KILN_ERR_MODEL, "%s: SD3 block %d has no attn.to_add_out", path, i);
    const int64_t D = flux->hidden;
    TRY(kiln_dit_bind_linear(w, root, "norm_out.linear", 2 * D, D, &flux->norm_out_w, &flux->norm_out_b));
    return kiln_dit_bind_linear(w, root, "proj_out", flux->out_channels, D, &flux->proj_out_w, &flux->proj_out_b);
}

void kiln_flux_place_references(kiln_reference_method method, int latent_h, int latent_w, const int *h, const int *w,
                                int n, flux_reference *refs)
{
    int down = 0, across = 0; /* the extent of those placed, in latent pixels */
    for (int i = 0; i < n; i++) {
        int index = 1, h_offset = 0, w_offset = 0;
        if (method == KILN_REFERENCE_INDEX) {
            index = i + 1;
        } else if (method == KILN_REFERENCE_UXO) { /* past the latent's whole patches, diagonally */
            index = 0;
            h_offset = (latent_h + 1) / 2 * 2 + down;
            w_offset = (latent_w + 1) / 2 * 2 + across;
            down += h[i];
            across += w[i];
        } else {
            if (h[i] + down > w[i] + across)
                w_offset = across;
            else
                h_offset = down;
            down = down > h[i] + h_offset ? down : h[i] + h_offset;
            across = across > w[i] + w_offset ? across : w[i] + w_offset;
        }
        refs[i] = (flux_reference){(h[i] + 1) / 2, (w[i] + 1) / 2, index, (h_offset + 1) / 2, (w_offset + 1) / 2};
    }
}

void kiln_flux_pack_reference(const float *latent, int C, int h, int w, float *tokens)
{
    const int H = h + h % 2, W = w + w % 2;
    for (int py = 0; py < H / 2; py++)
        for (int px = 0; px < W / 2; px++) {
            float *t = tokens + ((size_t)py * (W / 2) + px) * 4 * C;
            for (int c = 0; c < C; c++)
                for (int k = 0; k < 4; k++) /* circular: a row or column past the end is the first */
                    t[c * 4 + k] = latent[((size_t)c * h + (2 * py + k / 2) % h) * w + (2 * px + k % 2) % w];
        }
}

int kiln_flux_image_tokens(const flux_input *in)
{
    int n = in->h * in->w;
    for (int i = 0; i < in->nrefs; i++) n += in->refs[i].h * in->refs[i].w;
    return n;
}

/* The position of image token n: the latent's patches row-major, then each
 * reference's. */
static void image_position(const flux_input *in, int n, double pos[3])
{
    int grid_w = in->w, index = 0, h_offset = 0, w_offset = 0;
    if (n >= in->h * in->w) {
        n -= in->h * in->w;
        for (int i = 0; i < in->nrefs; i++) {
            const flux_reference *r = &in->refs[i];
            if (n < r->h * r->w) {
                grid_w = r->w, index = r->index, h_offset = r->h_offset, w_offset = r->w_offset;
                break;
            }
            n -= r->h * r->w;
        }
    }
    pos[0] = index;
    pos[1] = n / grid_w + h_offset;
    pos[2] = n % grid_w + w_offset;
}

void kiln_flux_rope_table(const kiln_flux *flux, int context_tokens, const flux_input *in, float *table)
{
    const int pairs = flux->head_dim / 2, T = context_tokens + kiln_flux_image_tokens(in);
    for (int t = 0; t < T; t++) {
        double pos[3] = {0.0, 0.0, 0.0};
        if (t >= context_tokens) image_position(in, t - context_tokens, pos);
        float *e = table + (size_t)t * pairs * 2;
        for (int axis = 0; axis < 3; axis++) {
            const int a = flux->axes[axis];
            for (int k = 0; k < a / 2; k++, e += 2) {
                double angle = pos[axis] / pow(10000.0, (double)(2 * k) / a);
                e[0] = (float)cos(angle);
                e[1] = (float)sin(angle);
            }
        }
    }
}

/* The (T,D) activation x as (T*heads, head_dim) rows, RMS-normed per head. */
static kiln_status norm_heads(kiln_graph *g, const kiln_flux *flux, tensor *x, const tensor *gamma, tensor **y)
{
    tensor rows = *x;
    rows.ndim = 2;
    rows.shape[0] = kiln_tensor_numel(x) / flux->head_dim;
    rows.shape[1] = flux->head_dim;
    TRY(nn_rms_norm(g, &rows, gamma, 1e-6f, y));
    (*y)->ndim = x->ndim;
    memcpy((*y)->shape, x->shape, sizeof x->shape);
    return KILN_OK;
}

/* One stream's q, k (normed per head where the model norms them, rotated
 * where it has a rotary table) and v; the normed q before its rotation kept
 * in *q_normed where asked (an IP-Adapter's queries). */
static kiln_status project_qkv(kiln_graph *g, const kiln_flux *flux, const flux_qkv *a, const tensor *x,
                               const tensor *rope, tensor **q, tensor **k, tensor **v, tensor **q_normed)
{
    tensor *raw[2], *normed;
    const tensor *gammas[2] = {a->norm_q, a->norm_k};
    TRY(nn_linear(g, x, a->q_w, a->q_b, &raw[0]));
    TRY(nn_linear(g, x, a->k_w, a->k_b, &raw[1]));
    for (int i = 0; i < 2; i++) {
        if (gammas[i]) {
            TRY(norm_heads(g, flux, raw[i], gammas[i], &normed));
            nn_drop(g, &raw[i]);
        } else {
            normed = raw[i];
        }
        if (!rope) {
            *(i ? k : q) = normed;
            continue;
        }
        TRY(nn_rope(g, normed, rope, flux->heads, i ? k : q));
        if (i == 0 && q_normed)
            *q_normed = normed;
        else
            nn_drop(g, &normed);
    }
    return nn_linear(g, x, a->v_w, a->v_b, v);
}

/* The adaLN-Zero vectors' order in a block's six (a single block has the
 * first three, SD 3.5's dual-attention blocks three more) */
enum { SHIFT_MSA, SCALE_MSA, GATE_MSA, SHIFT_MLP, SCALE_MLP, GATE_MLP, SHIFT_MSA2, SCALE_MSA2, GATE_MSA2 };

/* A block's (or one stream's) modulation vectors: vector k is row base + k
 * of t (B,K,D): its own layer's output of the conditioning (base 0), or
 * Chroma's table, which it does not own. */
typedef struct {
    tensor *t;
    int base;
} modulation;

/* The modulation from the conditioning s through (w, b), or, without a
 * layer (Chroma), the rows of the table s from chroma_base. */
static kiln_status modulate(kiln_graph *g, const tensor *s, const tensor *w, const tensor *b, int chroma_base,
                            modulation *m)
{
    if (!w) {
        *m = (modulation){(tensor *)s, chroma_base};
        return KILN_OK;
    }
    m->base = 0;
    return nn_linear(g, s, w, b, &m->t);
}

static void modulation_done(kiln_graph *g, const tensor *s, modulation *m)
{
    if (m->t != s) nn_drop(g, &m->t);
}

static kiln_status modulated_norm(kiln_graph *g, const tensor *x, const modulation *m, int shift, int scale,
                                  tensor **y)
{
    return nn_ada_layer_norm(g, x, m->t, NULL, m->base + shift, m->base + scale, 1e-6f, y);
}

/* An attention's output projected and gated into its stream. */
static kiln_status gated_projection(kiln_graph *g, const modulation *mod, int gate, tensor *attn, const tensor *out_w,
                                    const tensor *out_b, tensor **x)
{
    tensor *d;
    TRY(nn_linear(g, attn, out_w, out_b, &d));
    return nn_gated_add_into(g, x, d, mod->t, NULL, mod->base + gate);
}

/* A stream's second half: its norm and feed-forward, gated in. */
static kiln_status feed_forward_rest(kiln_graph *g, const modulation *mod, const kiln_mlp *ff, tensor **x)
{
    tensor *d, *n;
    TRY(modulated_norm(g, *x, mod, SHIFT_MLP, SCALE_MLP, &n));
    TRY(kiln_mlp_forward(g, ff, n, &d));
    nn_drop(g, &n);
    return nn_gated_add_into(g, x, d, mod->t, NULL, mod->base + GATE_MLP);
}

/* One stream's queries, keys and values. */
typedef struct {
    tensor *q, *k, *v;
} stream_qkv;

/* Both streams attending jointly (caption keys first, as the rotary table's
 * rows). Each stream's queries attend separately: queries do not see each
 * other, so this is the joint attention without splitting its output (ot
 * NULL: the image's alone, SD3's last block). The q, k and v are dropped. */
static kiln_status joint_attention(kiln_graph *g, const kiln_flux *flux, stream_qkv *img, stream_qkv *txt,
                                   tensor **oi, tensor **ot)
{
    tensor *k, *v;
    TRY(nn_concat_tokens(g, txt->k, img->k, &k));
    TRY(nn_concat_tokens(g, txt->v, img->v, &v));
    nn_drop(g, &txt->k);
    nn_drop(g, &img->k);
    nn_drop(g, &txt->v);
    nn_drop(g, &img->v);
    TRY(nn_attention(g, img->q, k, v, flux->heads, false, oi));
    if (ot) TRY(nn_attention(g, txt->q, k, v, flux->heads, false, ot));
    nn_drop(g, &img->q);
    nn_drop(g, &txt->q);
    nn_drop(g, &k);
    nn_drop(g, &v);
    return KILN_OK;
}

/* The image prompts of a call in a double block: their tokens as graph
 * tensors beside the host side. */
typedef struct {
    const flux_image_prompt *prompts;
    tensor *tokens[FLUX_MAX_IMAGE_PROMPTS];
    int count;
} image_prompt_set;

/* Each image prompt after double block i: its attention of the block's
 * image queries q (normed, unrotated) to its tokens, times its weight,
 * added to the image tokens. */
static kiln_status add_image_attention(kiln_graph *g, const kiln_flux *flux, const image_prompt_set *ips, int i,
                                       const tensor *q, tensor **img)
{
    for (int k = 0; k < ips->count; k++) {
        const flux_image_prompt *ip = &ips->prompts[k];
        tensor *key, *value, *o, *scaled, *sum;
        TRY(nn_linear(g, ips->tokens[k], ip->k_w[i], ip->k_b[i], &key));
        TRY(nn_linear(g, ips->tokens[k], ip->v_w[i], ip->v_b[i], &value));
        TRY(nn_attention(g, q, key, value, flux->heads, false, &o));
        nn_drop(g, &key);
        nn_drop(g, &value);
        TRY(nn_scale(g, o, ip->weight, &scaled));
        nn_drop(g, &o);
        TRY(nn_add(g, *img, scaled, &sum));
        nn_drop(g, &scaled);
        nn_drop(g, img);
        *img = sum;
    }
    return KILN_OK;
}

/* An attention of the image tokens alone (SD 3.5's second one, or an SD
 * 3.5 ControlNet's only one) through a's q, k, v and (out_w, out_b): from
 * n, their modulation of the block's input (dropped), gated by mod's
 * vector `gate` into *img. */
static kiln_status image_attention(kiln_graph *g, const kiln_flux *flux, const flux_qkv *a, const tensor *out_w,
                                   const tensor *out_b, const modulation *mod, int gate, tensor **n, tensor **img)
{
    tensor *o;
    stream_qkv s;
    TRY(project_qkv(g, flux, a, *n, NULL, &s.q, &s.k, &s.v, NULL));
    nn_drop(g, n);
    TRY(nn_attention(g, s.q, s.k, s.v, flux->heads, false, &o));
    nn_drop(g, &s.q);
    nn_drop(g, &s.k);
    nn_drop(g, &s.v);
    TRY(gated_projection(g, mod, gate, o, out_w, out_b, img));
    nn_drop(g, &o);
    return KILN_OK;
}

/* A block without a caption side (an SD 3.5 ControlNet's of Stability's
 * kind): the image tokens' attention and feed-forward alone. */
static kiln_status image_block(kiln_graph *g, const kiln_flux *flux, const flux_double_block *b, const tensor *s,
                               tensor **img)
{
    tensor *n;
    modulation mod;
    TRY(modulate(g, s, b->img_mod_w, b->img_mod_b, 0, &mod));
    TRY(modulated_norm(g, *img, &mod, SHIFT_MSA, SCALE_MSA, &n));
    TRY(image_attention(g, flux, &b->img, b->img_out_w, b->img_out_b, &mod, GATE_MSA, &n, img));
    TRY(feed_forward_rest(g, &mod, &b->img_ff, img));
    modulation_done(g, s, &mod);
    return KILN_OK;
}

/* MMDiT: image and caption tokens, each normed, projected and fed forward
 * with their own weights, attending jointly; then block i's image prompts
 * (ips NULL: none). SD3's last block (no caption output) leaves *txt
 * dropped; a block without a caption side runs the image tokens alone. */
static kiln_status double_block(kiln_graph *g, const kiln_flux *flux, const flux_double_block *b, int i,
                                const image_prompt_set *ips, const tensor *s, const tensor *rope_txt,
                                const tensor *rope_img, tensor **img, tensor **txt)
{
    tensor *n, *oi, *ot = NULL, *q_normed = NULL, *n2 = NULL;
    modulation mod_i, mod_t;
    stream_qkv si, st;
    const bool images = ips && ips->count, last = !b->txt_out_w, dual = b->img2.q_w != NULL;
    if (!b->txt_mod_w && !flux->chroma) return image_block(g, flux, b, s, img);
    /* Chroma's table: the single blocks' rows, the double blocks' image rows, then their caption rows */
    const int chroma_img = 3 * flux->nsingle + 6 * i, chroma_txt = chroma_img + 6 * flux->ndouble;
    TRY(modulate(g, s, b->img_mod_w, b->img_mod_b, chroma_img, &mod_i));
    TRY(modulate(g, s, b->txt_mod_w, b->txt_mod_b, chroma_txt, &mod_t));
    TRY(modulated_norm(g, *img, &mod_i, SHIFT_MSA, SCALE_MSA, &n));
    TRY(project_qkv(g, flux, &b->img, n, rope_img, &si.q, &si.k, &si.v, images ? &q_normed : NULL));
    nn_drop(g, &n);
    if (dual) TRY(modulated_norm(g, *img, &mod_i, SHIFT_MSA2, SCALE_MSA2, &n2));
    /* the last block's caption modulation is a final norm's: scale, then shift */
    TRY(modulated_norm(g, *txt, &mod_t, last ? 1 : SHIFT_MSA, last ? 0 : SCALE_MSA, &n));
    TRY(project_qkv(g, flux, &b->txt, n, rope_txt, &st.q, &st.k, &st.v, NULL));
    nn_drop(g, &n);
    TRY(joint_attention(g, flux, &si, &st, &oi, last ? NULL : &ot));
    TRY(gated_projection(g, &mod_i, GATE_MSA, oi, b->img_out_w, b->img_out_b, img));
    nn_drop(g, &oi);
    if (dual) TRY(image_attention(g, flux, &b->img2, b->img2_out_w, b->img2_out_b, &mod_i, GATE_MSA2, &n2, img));
    TRY(feed_forward_rest(g, &mod_i, &b->img_ff, img));
    if (last) {
        nn_drop(g, &st.q);
        nn_drop(g, txt);
    } else {
        TRY(gated_projection(g, &mod_t, GATE_MSA, ot, b->txt_out_w, b->txt_out_b, txt));
        nn_drop(g, &ot);
        TRY(feed_forward_rest(g, &mod_t, &b->txt_ff, txt));
    }
    modulation_done(g, s, &mod_i);
    modulation_done(g, s, &mod_t);
    if (!images) return KILN_OK;
    TRY(add_image_attention(g, flux, ips, i, q_normed, img));
    nn_drop(g, &q_normed);
    return KILN_OK;
}

/* (B,T,Da) and (B,T,Db) side by side -> *y (B,T,Da+Db) */
static kiln_status concat_features(kiln_graph *g, const tensor *a, const tensor *b, tensor **y)
{
    tensor a4 = *a, b4 = *b;
    a4.ndim = b4.ndim = 4;
    a4.shape[0] = b4.shape[0] = a->shape[0] * a->shape[1];
    a4.shape[1] = a->shape[2];
    b4.shape[1] = b->shape[2];
    a4.shape[2] = a4.shape[3] = b4.shape[2] = b4.shape[3] = 1;
    TRY(nn_concat_channels(g, &a4, &b4, y));
    (*y)->ndim = 3;
    (*y)->shape[0] = a->shape[0];
    (*y)->shape[1] = a->shape[1];
    (*y)->shape[2] = a->shape[2] + b->shape[2];
    return KILN_OK;
}

/* A single block's input side for one stream: the norm, the MLP's input
 * through tanh GELU and q, k, v, all from the same weights for both. */
static kiln_status single_in(kiln_graph *g, const kiln_flux *flux, const flux_single_block *b,
                             const modulation *mod, const tensor *rope, const tensor *x, tensor **mlp, stream_qkv *qkv)
{
    tensor *n, *h;
    TRY(modulated_norm(g, x, mod, SHIFT_MSA, SCALE_MSA, &n));
    TRY(nn_linear(g, n, b->mlp_w, b->mlp_b, &h));
    TRY(nn_gelu_tanh(g, h, mlp));
    nn_drop(g, &h);
    TRY(project_qkv(g, flux, &b->qkv, n, rope, &qkv->q, &qkv->k, &qkv->v, NULL));
    nn_drop(g, &n);
    return KILN_OK;
}

/* Attention and MLP outputs side by side, projected together, gated back
 * into the stream; o and mlp are dropped. */
static kiln_status single_out(kiln_graph *g, const flux_single_block *b, const modulation *mod, tensor **o,
                              tensor **mlp, tensor **x)
{
    tensor *both, *d;
    TRY(concat_features(g, *o, *mlp, &both));
    nn_drop(g, o);
    nn_drop(g, mlp);
    TRY(nn_linear(g, both, b->out_w, b->out_b, &d));
    nn_drop(g, &both);
    return nn_gated_add_into(g, x, d, mod->t, NULL, mod->base + GATE_MSA);
}

/* The single-stream block: attention and a tanh-GELU MLP side by side from
 * one norm, over the caption and image tokens as one sequence with one set
 * of weights. Every op but the attention is per token, so each stream is
 * run on its own (the image tokens stay a tensor of their own, for the
 * ControlNets' residuals and the final layer). */
static kiln_status single_block(kiln_graph *g, const kiln_flux *flux, const flux_single_block *b, int i,
                                const tensor *s, const tensor *rope_txt, const tensor *rope_img, tensor **img,
                                tensor **txt)
{
    tensor *mlp_i, *mlp_t, *oi, *ot;
    modulation mod;
    stream_qkv si, st;
    TRY(modulate(g, s, b->mod_w, b->mod_b, 3 * i, &mod));
    TRY(single_in(g, flux, b, &mod, rope_img, *img, &mlp_i, &si));
    TRY(single_in(g, flux, b, &mod, rope_txt, *txt, &mlp_t, &st));
    TRY(joint_attention(g, flux, &si, &st, &oi, &ot));
    TRY(single_out(g, b, &mod, &oi, &mlp_i, img));
    TRY(single_out(g, b, &mod, &ot, &mlp_t, txt));
    modulation_done(g, s, &mod);
    return KILN_OK;
}

/* ComfyUI's Flux timestep_embedding of x into out (dim): the cos, then
 * the sin of 1000 x times 10000^(-k / (dim/2)), each step in float32. */
static void comfy_time_embedding(float x, int dim, float *out)
{
    const int half = dim / 2;
    const float t = 1000.0f * x, log_period = (float)-log(10000.0);
    for (int k = 0; k < half; k++) {
        const float freq = expf(log_period * (float)k / (float)half), angle = t * freq;
        out[k] = cosf(angle);
        out[half + k] = sinf(angle);
    }
}

void kiln_chroma_modulation_input(float t, float guidance, float *rows)
{
    float time[16], guide[16];
    comfy_time_embedding(t, 16, time);
    comfy_time_embedding(guidance, 16, guide);
    for (int r = 0; r < CHROMA_MOD_ROWS; r++) {
        float *row = rows + (size_t)r * CHROMA_MOD_INPUT;
        memcpy(row, time, sizeof time);
        memcpy(row + 16, guide, sizeof guide);
        comfy_time_embedding((float)r, 32, row + 32);
    }
}

/* Chroma's modulation table (B, CHROMA_MOD_ROWS, D): its approximator on
 * each row's timestep and guidance. */
static kiln_status chroma_table(kiln_graph *g, const kiln_flux *flux, const flux_input *in, tensor **table)
{
    const int64_t B = in->rows, per_row = (int64_t)CHROMA_MOD_ROWS * CHROMA_MOD_INPUT;
    float *rows = malloc((size_t)(B * per_row) * sizeof *rows);
    if (!rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "chroma: out of host memory");
    for (int64_t r = 0; r < B; r++)
        kiln_chroma_modulation_input(in->timesteps[r], in->guidance ? in->guidance[r] : 0.0f, rows + r * per_row);
    tensor *x, *y, *n, *d, *sum;
    kiln_status st = kiln_graph_input(g, &x, KILN_F32, 3, (int64_t[]){B, CHROMA_MOD_ROWS, CHROMA_MOD_INPUT}, rows);
    free(rows);
    TRY(st);
    const chroma_approximator *a = &flux->approx;
    TRY(nn_linear(g, x, a->in_w, a->in_b, &y));
    nn_drop(g, &x);
    for (int i = 0; i < a->nlayers; i++) {
        TRY(nn_rms_norm(g, y, a->norms[i], 1e-6f, &n));
        TRY(kiln_mlp_forward(g, &a->layers[i], n, &d));
        nn_drop(g, &n);
        TRY(nn_add(g, y, d, &sum));
        nn_drop(g, &y);
        nn_drop(g, &d);
        y = sum;
    }
    TRY(nn_linear(g, y, a->out_w, a->out_b, table));
    nn_drop(g, &y);
    return KILN_OK;
}

/* What every block's modulation is made from: Chroma's table, or the
 * vector of the timestep's MLP, the guidance's (dev) and the pooled
 * caption's, through SiLU as every modulation layer reads it. */
static kiln_status conditioning(kiln_graph *g, const kiln_flux *flux, const flux_input *in, tensor **cond)
{
    if (flux->chroma) return chroma_table(g, flux, in, cond);
    const int64_t B = in->rows;
    float *scaled = malloc((size_t)(2 * B) * sizeof *scaled);
    if (!scaled) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "flux: out of host memory");
    for (int64_t r = 0; r < B; r++) { /* FLUX.1's own times-1000; SD3's timestep is 1000 sigma already */
        scaled[r] = flux->sd3 ? in->timesteps[r] : in->timesteps[r] * 1000.0f;
        scaled[B + r] = in->guidance ? in->guidance[r] * 1000.0f : 0.0f;
    }
    tensor *t, *f, *emb, *part, *sum, *pooled;
    kiln_status st = kiln_graph_input(g, &t, KILN_F32, 1, (int64_t[]){B}, scaled);
    tensor *gt = NULL; /* without a guidance (FluxDisableGuidance) the dev model's embedding is left out */
    if (st == KILN_OK && flux->guidance && in->guidance)
        st = kiln_graph_input(g, &gt, KILN_F32, 1, (int64_t[]){B}, scaled + B);
    free(scaled);
    TRY(st);
    TRY(nn_timestep_embedding(g, t, 256, &f));
    nn_drop(g, &t);
    TRY(kiln_mlp_forward(g, &flux->time, f, &emb));
    nn_drop(g, &f);
    if (gt) {
        TRY(nn_timestep_embedding(g, gt, 256, &f));
        nn_drop(g, &gt);
        TRY(kiln_mlp_forward(g, &flux->guidance_mlp, f, &part));
        nn_drop(g, &f);
        TRY(nn_add(g, emb, part, &sum));
        nn_drop(g, &emb);
        nn_drop(g, &part);
        emb = sum;
    }
    TRY(kiln_graph_input(g, &pooled, KILN_F32, 2, (int64_t[]){B, flux->pooled_dim}, in->pooled));
    TRY(kiln_mlp_forward(g, &flux->pooled, pooled, &part));
    nn_drop(g, &pooled);
    TRY(nn_add(g, emb, part, &sum));
    nn_drop(g, &emb);
    nn_drop(g, &part);
    TRY(nn_silu(g, sum, cond));
    nn_drop(g, &sum);
    return KILN_OK;
}

/* The first `rows` rows of a (T,pairs,2) table, or those after them. */
static tensor table_rows(const tensor *table, int64_t first, int64_t rows)
{
    tensor v = *table;
    v.shape[0] = rows;
    v.offset += (size_t)(first * table->shape[1] * table->shape[2]) * sizeof(float);
    return v;
}

kiln_status kiln_flux_blocks(kiln_graph *g, const kiln_flux *flux, const flux_input *in, bool with_images,
                             tensor **img, tensor **txt, kiln_flux_block_fn after_block, void *ctx, tensor **cond)
{
    const int64_t T = *txt ? (*txt)->shape[1] : 0, N = kiln_flux_image_tokens(in), pairs = flux->head_dim / 2;
    tensor *s, *rope = NULL;
    image_prompt_set ips = {in->images, {0}, with_images ? in->nimages : 0};
    for (int k = 0; k < ips.count; k++)
        TRY(kiln_graph_input(g, &ips.tokens[k], KILN_F32, 3,
                             (int64_t[]){in->rows, in->images[k].ntokens, flux->context_dim}, in->images[k].tokens));
    TRY(conditioning(g, flux, in, &s));
    if (!flux->sd3) { /* SD3 added its positions to the embedded patches */
        float *table = malloc((size_t)((T + N) * pairs * 2) * sizeof *table);
        if (!table) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "flux: out of host memory");
        kiln_flux_rope_table(flux, (int)T, in, table);
        kiln_status st = kiln_graph_input(g, &rope, KILN_F32, 3, (int64_t[]){T + N, pairs, 2}, table);
        free(table);
        TRY(st);
    }
    const tensor rope_txt = rope ? table_rows(rope, 0, T) : (tensor){0};
    const tensor rope_img = rope ? table_rows(rope, T, N) : (tensor){0};
    /* a skipped block passes both streams on as they are (ComfyUI's patch_replace with the identity) */
    for (int i = 0; i < flux->ndouble; i++) {
        if (!(in->skip_double >> i & 1))
            TRY(double_block(g, flux, &flux->dbl[i], i, &ips, s, rope ? &rope_txt : NULL, rope ? &rope_img : NULL,
                             img, txt));
        if (after_block) TRY(after_block(g, ctx, false, i, img));
    }
    for (int i = 0; i < flux->nsingle; i++) {
        if (!(in->skip_single >> i & 1))
            TRY(single_block(g, flux, &flux->sgl[i], i, s, &rope_txt, &rope_img, img, txt));
        if (after_block) TRY(after_block(g, ctx, true, i, img));
    }
    if (rope) nn_drop(g, &rope);
    if (*txt) nn_drop(g, txt);
    for (int k = 0; k < ips.count; k++) nn_drop(g, &ips.tokens[k]);
    if (cond)
        *cond = s;
    else
        nn_drop(g, &s);
    return KILN_OK;
}

/* Each ControlNet's residual for block i (ComfyUI's Flux: the image tokens
 * plus it, in the order applied). */
static kiln_status add_residuals(kiln_graph *g, void *ctx, bool single, int i, tensor **img)
{
    const flux_residuals *r = ((const flux_residual_set *)ctx)->each;
    const int n = ((const flux_residual_set *)ctx)->count;
    for (int k = 0; k < n; k++) {
        tensor *add = kiln_flux_residual(&r[k], single, i), *sum;
        if (!add) continue;
        TRY(nn_add(g, *img, add, &sum));
        nn_drop(g, img);
        *img = sum;
    }
    return KILN_OK;
}

/* Each ControlNet's residuals for the call. With reference latents they
 * read the latent's tokens alone, and each residual gets zeros for the
 * references' tokens: the residuals join the latent's tokens only. */
static kiln_status control_residuals(kiln_graph *g, const kiln_flux *flux, const flux_input *in, const tensor *tokens,
                                     const tensor *context, flux_residuals *each)
{
    flux_input latent_only = *in;
    latent_only.refs = NULL;
    latent_only.nrefs = 0;
    const int64_t B = in->rows, N = (int64_t)in->h * in->w, R = kiln_flux_image_tokens(in) - N;
    tensor *latent = NULL, *zeros = NULL;
    if (R) {
        float *none = calloc((size_t)(B * R * flux->hidden), sizeof *none);
        if (!none) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "flux: out of host memory");
        kiln_status st = kiln_graph_input(g, &latent, KILN_F32, 3, (int64_t[]){B, N, flux->in_channels},
                                          in->latent_tokens);
        if (st == KILN_OK) st = kiln_graph_input(g, &zeros, KILN_F32, 3, (int64_t[]){B, R, flux->hidden}, none);
        free(none);
        TRY(st);
    }
    for (int k = 0; k < in->ncontrols; k++) {
        flux_residuals *r = &each[k];
        TRY(kiln_flux_controlnet_forward(g, in->controls[k].net, flux, &latent_only, latent ? latent : tokens,
                                         context, &in->controls[k], r));
        for (int i = 0; R && i < r->nblock + r->nsingle; i++) {
            tensor **tap = i < r->nblock ? &r->block[i] : &r->single[i - r->nblock], *padded;
            TRY(nn_concat_tokens(g, *tap, zeros, &padded));
            nn_drop(g, tap);
            *tap = padded;
        }
    }
    if (latent) nn_drop(g, &latent);
    if (zeros) nn_drop(g, &zeros);
    return KILN_OK;
}

kiln_status kiln_sd3_embed_patches(kiln_graph *g, const kiln_flux *flux, const flux_input *in, const tensor *tokens,
                                   const float *positions, tensor **y)
{
    const int S = flux->pos_side, D = flux->hidden;
    if (!positions && (in->h > S || in->w > S))
        return kiln_fail(KILN_ERR_INVALID_ARG, "sd3: a latent of %dx%d patches is past the position table's %dx%d "
                         "(with SD3's VAE, %d pixels a side)", in->h, in->w, S, S, 16 * S);
    const size_t per_row = (size_t)in->h * in->w * D;
    float *pos = malloc((size_t)in->rows * per_row * sizeof *pos);
    if (!pos) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "sd3: out of host memory");
    const kiln_st_tensor *table = flux->pos_table;
    const int top = (S - in->h) / 2, left = (S - in->w) / 2;
    if (positions) memcpy(pos, positions, per_row * sizeof *pos);
    for (int r = 0; !positions && r < in->h; r++) { /* row top + r of the table, from column left */
        const size_t at = kiln_dtype_bytes(table->dtype, ((size_t)(top + r) * S + left) * D);
        kiln_convert_to_f32(pos + (size_t)r * in->w * D, (const char *)table->data + at, table->dtype,
                            (size_t)in->w * D);
    }
    for (int b = 1; b < in->rows; b++) memcpy(pos + b * per_row, pos, per_row * sizeof *pos);
    tensor *p, *x;
    kiln_status st = kiln_graph_input(g, &p, KILN_F32, 3, (int64_t[]){in->rows, (int64_t)in->h * in->w, D}, pos);
    free(pos);
    TRY(st);
    TRY(nn_linear(g, tokens, &flux->patch_w, flux->img_in_b, &x));
    TRY(nn_add(g, x, p, y));
    nn_drop(g, &x);
    nn_drop(g, &p);
    return KILN_OK;
}

kiln_status kiln_flux_embed_image(kiln_graph *g, const kiln_flux *flux, const flux_input *in, const tensor *tokens,
                                  tensor **y)
{
    if (flux->sd3) return kiln_sd3_embed_patches(g, flux, in, tokens, NULL, y);
    return nn_linear(g, tokens, flux->img_in_w, flux->img_in_b, y);
}

typedef struct {
    const kiln_flux *flux;
    const flux_input *in;
    float *out;
} forward_ctx;

static kiln_status forward_fn(kiln_graph *g, void *ctx)
{
    const forward_ctx *c = ctx;
    const kiln_flux *flux = c->flux;
    const flux_input *in = c->in;
    const int64_t B = in->rows, T = in->context_tokens, N = kiln_flux_image_tokens(in);
    tensor *tokens, *context, *img, *txt, *s, *n, *y;
    TRY(kiln_graph_input(g, &tokens, KILN_F32, 3, (int64_t[]){B, N, flux->in_channels}, in->tokens));
    TRY(kiln_graph_input(g, &context, KILN_F32, 3, (int64_t[]){B, T, flux->context_dim}, in->context));
    flux_residuals each[FLUX_MAX_CONTROLS];
    flux_residual_set set = {each, in->ncontrols};
    if (in->ncontrols) TRY(control_residuals(g, flux, in, tokens, context, each));
    TRY(kiln_flux_embed_image(g, flux, in, tokens, &img));
    nn_drop(g, &tokens);
    TRY(nn_linear(g, context, flux->txt_in_w, flux->txt_in_b, &txt));
    nn_drop(g, &context);
    TRY(kiln_flux_blocks(g, flux, in, true, &img, &txt, in->ncontrols ? add_residuals : NULL, &set, &s));
    for (int k = 0; k < in->ncontrols; k++) kiln_flux_residuals_release(g, &each[k]);

    /* the final norm's scale then shift, or Chroma's table's last two rows: shift, then scale */
    modulation mod;
    TRY(modulate(g, s, flux->norm_out_w, flux->norm_out_b, CHROMA_MOD_ROWS - 2, &mod));
    TRY(modulated_norm(g, img, &mod, flux->chroma ? 0 : 1, flux->chroma ? 1 : 0, &n));
    modulation_done(g, s, &mod);
    nn_drop(g, &s);
    nn_drop(g, &img);
    TRY(nn_linear(g, n, flux->proj_out_w, flux->proj_out_b, &y));
    nn_drop(g, &n);
    if (!kiln_graph_no_outputs(g) && !in->nrefs) TRY(kiln_graph_output(g, y, c->out, kiln_tensor_nbytes(y)));
    if (!kiln_graph_no_outputs(g) && in->nrefs) { /* the latent's tokens of each row, not the references' */
        const size_t per_row = (size_t)N * flux->out_channels, latent = (size_t)in->h * in->w * flux->out_channels;
        float *all = malloc((size_t)B * per_row * sizeof *all);
        if (!all) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "flux: out of host memory");
        kiln_status st = kiln_graph_output(g, y, all, (size_t)B * per_row * sizeof *all);
        for (int64_t r = 0; r < B && st == KILN_OK; r++)
            memcpy(c->out + r * latent, all + r * per_row, latent * sizeof *all);
        free(all);
        TRY(st);
    }
    nn_drop(g, &y);
    return KILN_OK;
}

kiln_status kiln_flux_forward(kiln_graph *g, const kiln_flux *flux, const flux_input *in, float *out)
{
    if (in->rows < 1 || in->h < 1 || in->w < 1 || in->context_tokens < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "flux: %d rows of a %dx%d patch grid and %d caption tokens", in->rows,
                         in->h, in->w, in->context_tokens);
    if (flux->sd3 && (in->nrefs || in->nimages))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "sd3: reference latents and IP-Adapters are FLUX.1's here");
    /* ComfyUI's Chroma takes no reference latents, and its pooled-output-free conditioning no Flux ControlNet */
    if (flux->chroma && (in->nrefs || in->nimages || in->ncontrols))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "chroma: reference latents, IP-Adapters and ControlNets are FLUX.1's "
                         "here");
    if (in->nrefs < 0 || in->nrefs > FLUX_MAX_REFERENCES)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "flux: %d reference latents on a call: at most %d", in->nrefs,
                         FLUX_MAX_REFERENCES);
    if (in->nrefs && in->ncontrols && !in->latent_tokens)
        return kiln_fail(KILN_ERR_INVALID_ARG, "flux: ControlNets with reference latents need the latent's tokens "
                         "alone");
    if (in->nimages < 0 || in->nimages > FLUX_MAX_IMAGE_PROMPTS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "flux: %d IP-Adapters on a call: at most %d", in->nimages,
                         FLUX_MAX_IMAGE_PROMPTS);
    if (in->ncontrols < 0 || in->ncontrols > FLUX_MAX_CONTROLS)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "flux: %d ControlNets on a call: at most %d", in->ncontrols,
                         FLUX_MAX_CONTROLS);
    return kiln_graph_run(g, forward_fn, &(forward_ctx){flux, in, out});
}
