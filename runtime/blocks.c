#include "blocks.h"

#include <stdio.h>

#include "hypernetwork.h"
#include "status.h"

#define GROUPS 32

kiln_status kiln_resblock_bind_unet(kiln_weights *w, const char *prefix, int in_ch, int out_ch, int temb_dim,
                                    kiln_resblock *rb)
{
    *rb = (kiln_resblock){.in_ch = in_ch, .out_ch = out_ch, .eps = 1e-5f};
    TRY(KILN_BIND(w, &rb->norm1_w, prefix, "in_layers.0.weight", in_ch));
    TRY(KILN_BIND(w, &rb->norm1_b, prefix, "in_layers.0.bias", in_ch));
    TRY(KILN_BIND(w, &rb->conv1_w, prefix, "in_layers.2.weight", out_ch, in_ch, 3, 3));
    TRY(KILN_BIND(w, &rb->conv1_b, prefix, "in_layers.2.bias", out_ch));
    TRY(kiln_weights_bind_linear(w, &rb->emb_w, prefix, "emb_layers.1.weight", out_ch, temb_dim));
    TRY(KILN_BIND(w, &rb->emb_b, prefix, "emb_layers.1.bias", out_ch));
    TRY(KILN_BIND(w, &rb->norm2_w, prefix, "out_layers.0.weight", out_ch));
    TRY(KILN_BIND(w, &rb->norm2_b, prefix, "out_layers.0.bias", out_ch));
    TRY(KILN_BIND(w, &rb->conv2_w, prefix, "out_layers.3.weight", out_ch, out_ch, 3, 3));
    TRY(KILN_BIND(w, &rb->conv2_b, prefix, "out_layers.3.bias", out_ch));
    if (in_ch != out_ch) {
        TRY(KILN_BIND(w, &rb->skip_w, prefix, "skip_connection.weight", out_ch, in_ch, 1, 1));
        TRY(KILN_BIND(w, &rb->skip_b, prefix, "skip_connection.bias", out_ch));
    }
    return KILN_OK;
}

kiln_status kiln_resblock_bind_vae(kiln_weights *w, const char *prefix, int in_ch, int out_ch, kiln_resblock *rb)
{
    *rb = (kiln_resblock){.in_ch = in_ch, .out_ch = out_ch, .eps = 1e-6f};
    TRY(KILN_BIND(w, &rb->norm1_w, prefix, "norm1.weight", in_ch));
    TRY(KILN_BIND(w, &rb->norm1_b, prefix, "norm1.bias", in_ch));
    TRY(KILN_BIND(w, &rb->conv1_w, prefix, "conv1.weight", out_ch, in_ch, 3, 3));
    TRY(KILN_BIND(w, &rb->conv1_b, prefix, "conv1.bias", out_ch));
    TRY(KILN_BIND(w, &rb->norm2_w, prefix, "norm2.weight", out_ch));
    TRY(KILN_BIND(w, &rb->norm2_b, prefix, "norm2.bias", out_ch));
    TRY(KILN_BIND(w, &rb->conv2_w, prefix, "conv2.weight", out_ch, out_ch, 3, 3));
    TRY(KILN_BIND(w, &rb->conv2_b, prefix, "conv2.bias", out_ch));
    if (in_ch != out_ch) {
        TRY(KILN_BIND(w, &rb->skip_w, prefix, "nin_shortcut.weight", out_ch, in_ch, 1, 1));
        TRY(KILN_BIND(w, &rb->skip_b, prefix, "nin_shortcut.bias", out_ch));
    }
    return KILN_OK;
}

kiln_status kiln_resblock_forward(kiln_graph *g, const kiln_resblock *rb, const tensor *x, const tensor *emb_silu,
                                  tensor **y)
{
    tensor *h, *t;
    TRY(nn_group_norm(g, x, rb->norm1_w, rb->norm1_b, GROUPS, rb->eps, true, &t));
    TRY(nn_conv2d(g, t, rb->conv1_w, rb->conv1_b, 1, 1, &h));
    nn_drop(g, &t);
    if (rb->emb_w) {
        tensor *e, *he;
        TRY(nn_linear(g, emb_silu, rb->emb_w, rb->emb_b, &e)); // (N,out)
        TRY(nn_add_channel_bias(g, h, e, &he));
        nn_drop(g, &e);
        nn_drop(g, &h);
        h = he;
    }
    TRY(nn_group_norm(g, h, rb->norm2_w, rb->norm2_b, GROUPS, rb->eps, true, &t));
    nn_drop(g, &h);
    TRY(nn_conv2d(g, t, rb->conv2_w, rb->conv2_b, 1, 1, &h));
    nn_drop(g, &t);
    if (rb->skip_w) {
        tensor *s;
        TRY(nn_conv2d(g, x, rb->skip_w, rb->skip_b, 1, 0, &s));
        TRY(nn_add(g, s, h, y));
        nn_drop(g, &s);
    } else {
        TRY(nn_add(g, x, h, y));
    }
    nn_drop(g, &h);
    return KILN_OK;
}

static kiln_status attention_bind(kiln_weights *w, const char *prefix, int channels, int context_dim,
                                  kiln_attention_weights *a)
{
    TRY(kiln_weights_bind_linear(w, &a->q_w, prefix, "to_q.weight", channels, channels));
    TRY(kiln_weights_bind_linear(w, &a->k_w, prefix, "to_k.weight", channels, context_dim));
    TRY(kiln_weights_bind_linear(w, &a->v_w, prefix, "to_v.weight", channels, context_dim));
    TRY(kiln_weights_bind_linear(w, &a->out_w, prefix, "to_out.0.weight", channels, channels));
    TRY(KILN_BIND(w, &a->out_b, prefix, "to_out.0.bias", channels));
    return KILN_OK;
}

static kiln_status transformer_block_bind(kiln_weights *w, const char *block, int C, int context_dim,
                                          kiln_transformer_block *b)
{
    TRY(KILN_BIND(w, &b->norm1_w, block, "norm1.weight", C));
    TRY(KILN_BIND(w, &b->norm1_b, block, "norm1.bias", C));
    TRY(KILN_BIND(w, &b->norm2_w, block, "norm2.weight", C));
    TRY(KILN_BIND(w, &b->norm2_b, block, "norm2.bias", C));
    TRY(KILN_BIND(w, &b->norm3_w, block, "norm3.weight", C));
    TRY(KILN_BIND(w, &b->norm3_b, block, "norm3.bias", C));
    char attn[600];
    snprintf(attn, sizeof attn, "%s.attn1", block);
    TRY(attention_bind(w, attn, C, C, &b->attn1));
    snprintf(attn, sizeof attn, "%s.attn2", block);
    TRY(attention_bind(w, attn, C, context_dim, &b->attn2));
    TRY(kiln_weights_bind_linear(w, &b->ff_in_w, block, "ff.net.0.proj.weight", 8 * C, C));
    TRY(KILN_BIND(w, &b->ff_in_b, block, "ff.net.0.proj.bias", 8 * C));
    TRY(kiln_weights_bind_linear(w, &b->ff_out_w, block, "ff.net.2.weight", C, 4 * C));
    return KILN_BIND(w, &b->ff_out_b, block, "ff.net.2.bias", C);
}

kiln_status kiln_spatial_transformer_bind(kiln_weights *w, const char *prefix, int channels, int heads,
                                          int context_dim, int depth, kiln_spatial_transformer *st)
{
    int C = channels;
    if (depth < 1 || depth > KILN_MAX_TRANSFORMER_DEPTH)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: transformer depth %d", prefix, depth);
    *st = (kiln_spatial_transformer){.channels = C, .heads = heads, .context_dim = context_dim, .depth = depth};
    TRY(KILN_BIND(w, &st->norm_w, prefix, "norm.weight", C));
    TRY(KILN_BIND(w, &st->norm_b, prefix, "norm.bias", C));
    TRY(KILN_BIND(w, &st->proj_in_w, prefix, "proj_in.weight", C, C, 1, 1));
    TRY(KILN_BIND(w, &st->proj_in_b, prefix, "proj_in.bias", C));
    TRY(KILN_BIND(w, &st->proj_out_w, prefix, "proj_out.weight", C, C, 1, 1));
    TRY(KILN_BIND(w, &st->proj_out_b, prefix, "proj_out.bias", C));
    char block[512];
    for (int i = 0; i < depth; i++) {
        snprintf(block, sizeof block, "%s.transformer_blocks.%d", prefix, i);
        TRY(transformer_block_bind(w, block, C, context_dim, &st->blocks[i]));
    }
    /* a deeper transformer than the table's would run short without a word */
    snprintf(block, sizeof block, "%s.transformer_blocks.%d.norm1.weight", prefix, depth);
    if (kiln_checkpoint_find(kiln_weights_checkpoint(w), block))
        return kiln_fail(KILN_ERR_MODEL, "%s: '%s' has more than the %d transformer blocks the layout has",
                         kiln_checkpoint_path(kiln_weights_checkpoint(w)), prefix, depth);
    return KILN_OK;
}

/* *o = softmax(q k^T) v with k, v = keys times k_w, values times v_w */
static kiln_status attend(kiln_graph *g, const tensor *q, const tensor *keys, const tensor *values,
                          const tensor *k_w, const tensor *v_w, int heads, tensor **o)
{
    tensor *k, *v;
    TRY(nn_linear(g, keys, k_w, NULL, &k));
    TRY(nn_linear(g, values, v_w, NULL, &v));
    TRY(nn_attention(g, q, k, v, heads, false, o));
    nn_drop(g, &k);
    nn_drop(g, &v);
    return KILN_OK;
}

// x (N,T,C) normalised, the keys' and values' inputs (N,S,ctx) -> *y (N,T,C) = multi-head attention;
// with image prompts' k_w, v_w and tokens, plus each one's weight times the attention to those
static kiln_status attention_forward(kiln_graph *g, const kiln_attention_weights *a, const tensor *x,
                                     const tensor *keys, const tensor *values, int heads,
                                     const kiln_image_attention *image, int block, tensor **y)
{
    tensor *q, *o;
    TRY(nn_linear(g, x, a->q_w, NULL, &q));
    TRY(attend(g, q, keys, values, a->k_w, a->v_w, heads, &o));
    for (const kiln_image_attention *ip = image; ip; ip = ip->next) {
        tensor *io, *scaled;
        TRY(attend(g, q, ip->tokens, ip->tokens, ip->k_w[block], ip->v_w[block], heads, &io));
        TRY(nn_scale(g, io, ip->weight, &scaled));
        nn_drop(g, &io);
        TRY(nn_add_into(g, &o, scaled));
    }
    nn_drop(g, &q);
    TRY(nn_linear(g, o, a->out_w, a->out_b, y));
    nn_drop(g, &o);
    return KILN_OK;
}

// the values' input (N,T,C) -> *y (N,T,C): self-attention with each token attending to itself alone,
// which gives its values: PerturbedAttentionGuidance's identity attention
static kiln_status identity_attention_forward(kiln_graph *g, const kiln_attention_weights *a, const tensor *values,
                                              tensor **y)
{
    tensor *v;
    TRY(nn_linear(g, values, a->v_w, NULL, &v));
    TRY(nn_linear(g, v, a->out_w, a->out_b, y));
    nn_drop(g, &v);
    return KILN_OK;
}

// n (N,T,C) normalised, the keys' and values' inputs (N,T,C) -> *y (N,T,C): self-attention in tiles
// (kiln_query_tiles)
static kiln_status tiled_self_attention(kiln_graph *g, const kiln_attention_weights *a, const tensor *n,
                                        const tensor *keys, const tensor *values, int heads,
                                        const kiln_query_tiles *t, int block, tensor **y)
{
    const int64_t B = n->shape[0], T = n->shape[1], C = n->shape[2], th = t->h / t->nh, tw = t->w / t->nw;
    tensor *queries, *o, k = *keys, v = *values;
    TRY(nn_swap_axes(g, n, B * t->nh, th, t->nw, tw * C, &queries)); /* (B,nh,th,nw,tw,C) -> (B,nh,nw,th,tw,C) */
    queries->shape[0] = k.shape[0] = v.shape[0] = B * t->nh * t->nw;
    queries->shape[1] = k.shape[1] = v.shape[1] = T / (t->nh * t->nw);
    kiln_status st = attention_forward(g, a, queries, &k, &v, heads, NULL, block, &o);
    nn_drop(g, &queries);
    TRY(st);
    st = nn_swap_axes(g, o, B * t->nh, t->nw, th, tw * C, y);
    nn_drop(g, &o);
    TRY(st);
    (*y)->shape[0] = B, (*y)->shape[1] = T;
    return KILN_OK;
}

// *h (N,T,C) -> *h + attn1 -> + attn2 with the context (and the image) -> + feed-forward, each on its pre-norm;
// the attentions' keys and values from their inputs through the hypernetworks
static kiln_status transformer_block_forward(kiln_graph *g, const kiln_transformer_block *b, int heads,
                                             const tensor *context, const kiln_image_attention *image, int block,
                                             const kiln_self_attention_patch *attn1, const kiln_hypernetworks *hn,
                                             tensor **h)
{
    tensor *n, *d, *ff, *gated, *keys, *values;
    TRY(nn_layer_norm(g, *h, b->norm1_w, b->norm1_b, 1e-5f, &n));
    const kiln_query_tiles *tiles = attn1 && attn1->tiles ? &attn1->tiles[block] : NULL;
    const bool tiled = tiles && tiles->nh * tiles->nw > 1;
    if (attn1 && attn1->record_qk && tiled) /* its map would be of the tiles' attention */
        return kiln_fail(KILN_ERR_UNSUPPORTED, "SelfAttentionGuidance with HyperTile on the middle block (max_depth "
                         "reaching it): not yet");
    if (attn1 && attn1->identity && tiled) /* ComfyUI rearranges the pass's values as if tiled: it fails there */
        return kiln_fail(KILN_ERR_UNSUPPORTED, "PerturbedAttentionGuidance with HyperTile on the middle block "
                         "(max_depth reaching it): ComfyUI's two patches fail together there");
    TRY(kiln_hypernetworks_forward(g, hn, false, n, &keys));
    TRY(kiln_hypernetworks_forward(g, hn, true, n, &values));
    if (attn1 && attn1->record_qk && block == 0) {
        /* q and k again, for the host; kept to the graph's end, where a replayed graph reads its outputs */
        tensor *q, *k;
        TRY(nn_linear(g, n, b->attn1.q_w, NULL, &q));
        TRY(kiln_graph_output(g, q, attn1->record_qk, kiln_tensor_nbytes(q)));
        TRY(nn_linear(g, keys ? keys : n, b->attn1.k_w, NULL, &k));
        TRY(kiln_graph_output(g, k, attn1->record_qk + kiln_tensor_numel(q), kiln_tensor_nbytes(k)));
    }
    if (tiled)
        TRY(tiled_self_attention(g, &b->attn1, n, keys ? keys : n, values ? values : n, heads, tiles, block, &d));
    else if (attn1 && attn1->identity) TRY(identity_attention_forward(g, &b->attn1, values ? values : n, &d));
    else TRY(attention_forward(g, &b->attn1, n, keys ? keys : n, values ? values : n, heads, NULL, block, &d));
    nn_drop(g, &n);
    if (keys) nn_drop(g, &keys);
    if (values) nn_drop(g, &values);
    TRY(nn_add_into(g, h, d));

    TRY(nn_layer_norm(g, *h, b->norm2_w, b->norm2_b, 1e-5f, &n));
    TRY(kiln_hypernetworks_forward(g, hn, false, context, &keys));
    TRY(kiln_hypernetworks_forward(g, hn, true, context, &values));
    TRY(attention_forward(g, &b->attn2, n, keys ? keys : context, values ? values : context, heads, image, block,
                          &d));
    nn_drop(g, &n);
    if (keys) nn_drop(g, &keys);
    if (values) nn_drop(g, &values);
    TRY(nn_add_into(g, h, d));

    TRY(nn_layer_norm(g, *h, b->norm3_w, b->norm3_b, 1e-5f, &n));
    TRY(nn_linear(g, n, b->ff_in_w, b->ff_in_b, &ff)); // (N,HW,8C)
    nn_drop(g, &n);
    TRY(nn_geglu(g, ff, &gated)); // (N,HW,4C)
    nn_drop(g, &ff);
    TRY(nn_linear(g, gated, b->ff_out_w, b->ff_out_b, &d));
    nn_drop(g, &gated);
    return nn_add_into(g, h, d);
}

kiln_status kiln_spatial_transformer_forward(kiln_graph *g, const kiln_spatial_transformer *st, const tensor *x,
                                             const tensor *context, const kiln_image_attention *image,
                                             const kiln_self_attention_patch *attn1, const kiln_hypernetworks *hn,
                                             tensor **y)
{
    int64_t H = x->shape[2], W = x->shape[3];
    tensor *t, *p, *h;
    TRY(nn_group_norm(g, x, st->norm_w, st->norm_b, GROUPS, 1e-6f, false, &t));
    TRY(nn_conv2d(g, t, st->proj_in_w, st->proj_in_b, 1, 0, &p));
    nn_drop(g, &t);
    TRY(nn_image_to_tokens(g, p, &h)); // (N,HW,C)
    nn_drop(g, &p);
    for (int i = 0; i < st->depth; i++)
        TRY(transformer_block_forward(g, &st->blocks[i], st->heads, context, image, i, attn1, hn, &h));
    TRY(nn_tokens_to_image(g, h, H, W, &t));
    nn_drop(g, &h);
    TRY(nn_conv2d(g, t, st->proj_out_w, st->proj_out_b, 1, 0, &p));
    nn_drop(g, &t);
    TRY(nn_add(g, p, x, y));
    nn_drop(g, &p);
    return KILN_OK;
}

kiln_status kiln_vae_attention_bind(kiln_weights *w, const char *prefix, int channels, kiln_vae_attention *at)
{
    int C = channels;
    *at = (kiln_vae_attention){.channels = C};
    TRY(KILN_BIND(w, &at->norm_w, prefix, "norm.weight", C));
    TRY(KILN_BIND(w, &at->norm_b, prefix, "norm.bias", C));
    TRY(KILN_BIND(w, &at->q_w, prefix, "q.weight", C, C, 1, 1));
    TRY(KILN_BIND(w, &at->q_b, prefix, "q.bias", C));
    TRY(KILN_BIND(w, &at->k_w, prefix, "k.weight", C, C, 1, 1));
    TRY(KILN_BIND(w, &at->k_b, prefix, "k.bias", C));
    TRY(KILN_BIND(w, &at->v_w, prefix, "v.weight", C, C, 1, 1));
    TRY(KILN_BIND(w, &at->v_b, prefix, "v.bias", C));
    TRY(KILN_BIND(w, &at->proj_w, prefix, "proj_out.weight", C, C, 1, 1));
    TRY(KILN_BIND(w, &at->proj_b, prefix, "proj_out.bias", C));
    return KILN_OK;
}

kiln_status kiln_vae_attention_forward(kiln_graph *g, const kiln_vae_attention *at, const tensor *x, tensor **y)
{
    int64_t H = x->shape[2], W = x->shape[3];
    tensor *n, *tok, *q, *k, *v, *o, *p, *img;
    TRY(nn_group_norm(g, x, at->norm_w, at->norm_b, GROUPS, 1e-6f, false, &n));
    TRY(nn_image_to_tokens(g, n, &tok)); // (N,HW,C): the 1x1 convs become linears
    nn_drop(g, &n);
    TRY(nn_linear(g, tok, at->q_w, at->q_b, &q));
    TRY(nn_linear(g, tok, at->k_w, at->k_b, &k));
    TRY(nn_linear(g, tok, at->v_w, at->v_b, &v));
    nn_drop(g, &tok);
    TRY(nn_attention(g, q, k, v, 1, false, &o));
    nn_drop(g, &q);
    nn_drop(g, &k);
    nn_drop(g, &v);
    TRY(nn_linear(g, o, at->proj_w, at->proj_b, &p));
    nn_drop(g, &o);
    TRY(nn_tokens_to_image(g, p, H, W, &img));
    nn_drop(g, &p);
    TRY(nn_add(g, img, x, y));
    nn_drop(g, &img);
    return KILN_OK;
}
