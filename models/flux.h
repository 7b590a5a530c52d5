/* FLUX.1's transformer (diffusers' FluxTransformer2DModel): the packed
 * latent (2x2 patches of 16 channels) and the T5 caption projected to one
 * width; a timestep (and, in the dev model, guidance) MLP plus the projected
 * pooled CLIP output as the vector every block is modulated by (adaLN:
 * shift, scale, gate); double-stream (MMDiT) blocks, where image and
 * caption tokens keep their own weights but attend jointly, then
 * single-stream blocks over the joined sequence (attention and MLP side by
 * side); q and k RMS-normed per head and rotated by 3-axis RoPE (axis 0 the
 * caption's, 1 and 2 the patch row and column); a final modulated norm.
 *
 * Bound under diffusers' names (`x_embedder`, `context_embedder`,
 * `time_text_embed.*`, `transformer_blocks.N.*`,
 * `single_transformer_blocks.N.*`, `norm_out.linear`, `proj_out`). The head
 * width is read off the q norm's weight; the rotary axes are the caller's
 * (a folder's config.json; FLUX.1's (16, 56, 56)).
 *
 * SD3's transformer (diffusers' SD3Transformer2DModel, the MMDiT of SD 3.0
 * and 3.5) is the same double-stream block stack under the same names and
 * runs through the same code, with its differences as data: the 2x2 patches
 * embedded by a conv (`pos_embed.proj`) and a stored table of positions
 * (`pos_embed.pos_embed`, side S, its centre cropped to the latent) added in
 * place of the rotation; no single blocks, no guidance; the last block reads
 * the caption only for keys and values (its caption side modulated like the
 * final norm, no output or feed-forward of its own); q and k RMS-normed only
 * in SD 3.5; in SD 3.5 Medium's first blocks a second attention of the image
 * tokens alone (`attn2`, its own three adaLN vectors after the six); the
 * timestep taken as given (1000 sigma); each token's output by patch row,
 * column, then channel.
 *
 * Chroma (diffusers' ChromaTransformer2DModel, ComfyUI's Chroma) is
 * FLUX.1-schnell's block stack without the blocks' modulation layers, the
 * timestep, guidance and pooled MLPs: one table of CHROMA_MOD_ROWS
 * vectors, made by a small residual MLP (the "distilled guidance layer",
 * `distilled_guidance_layer.*`) from each row's index, the timestep and the
 * guidance, gives every block its shift, scale and gate: the single blocks'
 * three each first, then the double blocks' image six each, their caption
 * six each, and the final norm's shift and scale last. No CLIP: T5 alone. */
#ifndef KILN_MODELS_FLUX_H
#define KILN_MODELS_FLUX_H

#include "dit.h"

#define FLUX_MAX_DOUBLE 38 /* FLUX.1 has 19, SD3 24, SD 3.5 Large 38 */
#define FLUX_MAX_SINGLE 48

/* Chroma's modulation table: rows as FLUX.1's 19 double and 38 single blocks
 * take them (3 * 38 + 12 * 19 + 2), whatever the model's own counts, as
 * ComfyUI makes it; the final norm reads its last two. */
#define CHROMA_MOD_ROWS 344
/* The approximator's input a row: the timestep's, guidance's (16 each) and
 * row index's (32) sinusoidal embeddings. */
#define CHROMA_MOD_INPUT 64
#define CHROMA_MAX_APPROX_LAYERS 8

/* x = in_proj(input); per layer x += layer(rms_norm(x)); out_proj(x). */
typedef struct chroma_approximator {
    int width, nlayers;
    const tensor *in_w, *in_b, *out_w, *out_b; /* (width,64) (width); (D,width) (D) */
    kiln_mlp layers[CHROMA_MAX_APPROX_LAYERS];  /* SiLU inside */
    const tensor *norms[CHROMA_MAX_APPROX_LAYERS]; /* RMS norms' weights (width) */
} chroma_approximator;

/* One stream's q, k and v with their per-head RMS norms. */
typedef struct flux_qkv {
    const tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* (D,D) (D) */
    const tensor *norm_q, *norm_k;                  /* (head_dim); NULL: none (SD 3.0) */
} flux_qkv;

typedef struct flux_double_block {
    /* (6D,D) (6D), unbound in Chroma (its table's rows); SD 3.5's dual-attention blocks' image one (9D,D),
       SD3's last block's caption one (2D,D): scale, shift; txt_mod_w NULL: no caption side (an SD 3.5
       ControlNet's of Stability's kind) */
    const tensor *img_mod_w, *img_mod_b, *txt_mod_w, *txt_mod_b;
    flux_qkv img, txt;
    const tensor *img_out_w, *img_out_b, *txt_out_w, *txt_out_b;  /* (D,D) (D); txt_out_w NULL: SD3's last block */
    kiln_mlp img_ff, txt_ff; /* tanh GELU, 4D inside; txt_ff unbound in SD3's last block */
    flux_qkv img2;           /* SD 3.5 Medium: the image tokens' second attention; q_w NULL: none */
    const tensor *img2_out_w, *img2_out_b;
} flux_double_block;

typedef struct flux_single_block {
    const tensor *mod_w, *mod_b; /* (3D,D) (3D); unbound in Chroma */
    flux_qkv qkv;
    const tensor *mlp_w, *mlp_b; /* (4D,D) (4D) */
    const tensor *out_w, *out_b; /* (D,5D) (D): over attention and MLP side by side */
} flux_single_block;

/* FLUX.1 Fill's mask in a token: 8x8 pixels of it for each latent pixel,
 * 2x2 latent pixels a token. */
#define KILN_FLUX_FILL_MASK_CHANNELS (64 * 4)

typedef struct kiln_flux {
    int hidden, heads, head_dim, context_dim, pooled_dim, ndouble, nsingle;
    /* a token's channels in and out: the same, or (FLUX.1 Canny, Depth) twice as many in, a picture's latent
       beside the latent's */
    int in_channels, out_channels;
    int axes[3];   /* rotary widths per position axis, summing to head_dim */
    bool guidance; /* the dev model's guidance embedding */
    bool chroma;   /* Chroma: approx in place of time, guidance_mlp, pooled and the blocks' modulation layers */
    chroma_approximator approx;
    const tensor *img_in_w, *img_in_b, *txt_in_w, *txt_in_b;
    kiln_mlp time, guidance_mlp, pooled;
    flux_double_block dbl[FLUX_MAX_DOUBLE];
    flux_single_block sgl[FLUX_MAX_SINGLE];
    const tensor *norm_out_w, *norm_out_b; /* (2D,D): scale, then shift; unbound in Chroma */
    const tensor *proj_out_w, *proj_out_b; /* (out_channels,D) */
    bool sd3;                         /* SD3's MMDiT (img_in_w unbound: patch_w, pos_table) */
    tensor patch_w;                   /* SD3: pos_embed.proj's kernel (D,C,2,2) as (D,4C) */
    const kiln_st_tensor *pos_table;  /* SD3: (1, pos_side^2, D), cropped on the host each call */
    int pos_side;
} kiln_flux;

bool kiln_flux_present(const kiln_checkpoint *ck, const char *root);
bool kiln_sd3_present(const kiln_checkpoint *ck, const char *root);
/* SD3's transformer, sizes from the shapes; sd3 set. */
kiln_status kiln_sd3_bind(kiln_weights *w, const char *root, kiln_flux *flux);
/* All but its final layer (norm_out, proj_out): an SD3 ControlNet's. */
kiln_status kiln_sd3_bind_trunk(kiln_weights *w, const char *root, kiln_flux *flux);
/* The timestep and pooled embeddings and the blocks without a caption side
 * (no patch embedding, caption or final layer): an SD 3.5 ControlNet's of
 * Stability's kind, whose heads are as wide as the transformer's, `model`. */
kiln_status kiln_sd3_bind_image_trunk(kiln_weights *w, const char *root, const kiln_flux *model, kiln_flux *flux);
/* Sizes from the shapes; axes NULL: FLUX.1's (16, 56, 56). */
kiln_status kiln_flux_bind(kiln_weights *w, const char *root, const int *axes, kiln_flux *flux);
/* All but the final layer (norm_out, proj_out): a ControlNet's copy;
 * out_channels is left as in_channels. */
kiln_status kiln_flux_bind_trunk(kiln_weights *w, const char *root, const int *axes, kiln_flux *flux);

typedef struct kiln_flux_controlnet kiln_flux_controlnet;

/* A ControlNet on a call (ComfyUI's ControlNetApplyAdvanced): its residuals
 * times strength join the transformer's blocks. */
typedef struct flux_control {
    const kiln_flux_controlnet *net;
    const float *hint; /* (rows, C, H, W): kiln_flux_controlnet_hint_shape's */
    float strength;
    int mode;          /* a union ControlNet's control type, or -1: none */
} flux_control;

/* An IP-Adapter on a call (XLabs' for Flux): after each double block its
 * image queries (RMS-normed, before the rotation) attend to the image
 * tokens through the block's own k and v, and weight times that is added
 * to the block's image tokens. */
/* image prompts on one call; kiln.h's KILN_MAX_IP_ADAPTERS */
#define FLUX_MAX_IMAGE_PROMPTS 8

typedef struct flux_image_prompt {
    const tensor *const *k_w, *const *k_b, *const *v_w, *const *v_b; /* [double block]: (D,ctx) (D) */
    const float *tokens; /* (rows, ntokens, context_dim) */
    int ntokens;
    float weight;
} flux_image_prompt;

/* A reference latent on a call (FLUX.1 Kontext, ComfyUI's ReferenceLatent):
 * its 2x2 patches follow the latent's tokens, at positions (index, row +
 * h_offset, column + w_offset); only the latent's tokens are read back. */
typedef struct flux_reference {
    int h, w;               /* its patch grid */
    int index;              /* the first position axis (the latent's is 0) */
    int h_offset, w_offset; /* in patches */
} flux_reference;

/* References on one call */
#define FLUX_MAX_REFERENCES 8

/* ComfyUI's placement of n references of latent sizes (h[i], w[i]) beside
 * a latent of latent_h x latent_w -> refs[i] (grids rounded up to whole
 * patches): "offset", each at index 1 beside or below the ones before,
 * whichever keeps the whole squarer; "index", each at the next index, not
 * moved; "uxo", at index 0, each past the latent and the ones before on both
 * axes. */
void kiln_flux_place_references(kiln_reference_method method, int latent_h, int latent_w, const int *h, const int *w,
                                int n, flux_reference *refs);
/* A reference latent (C,h,w) as its tokens (ceil(h/2) * ceil(w/2), 4C):
 * odd sides padded circularly first (ComfyUI's pad_to_patch_size). */
void kiln_flux_pack_reference(const float *latent, int C, int h, int w, float *tokens);

/* One call's inputs on the host: every row's caption is as long (the
 * pipelines pad T5 to a fixed length). */
typedef struct flux_input {
    int rows, h, w;          /* the patch grid: h x w tokens of in_channels */
    const float *tokens;     /* (rows, h*w + the references' tokens, in_channels): packed latents, then each
                                reference's */
    const float *context;    /* (rows, T, context_dim) */
    int context_tokens;      /* T */
    const float *pooled;     /* (rows, pooled_dim); Chroma: NULL */
    const float *timesteps;  /* (rows): sigma in [0,1] (the model scales it by 1000); SD3: 1000 sigma */
    const float *guidance;   /* (rows), the dev model's and Chroma's; NULL: none (the dev model's embedding left
                                out, as FluxDisableGuidance leaves it; Chroma's 0) */
    const flux_control *controls; /* ncontrols of them, in the order applied; NULL: none */
    int ncontrols;
    const flux_image_prompt *images; /* nimages of them, added in this order; NULL: none */
    int nimages;
    const flux_reference *refs; /* nrefs of them, their tokens after the latent's; NULL: none */
    int nrefs;
    const float *latent_tokens; /* with references and ControlNets: the latent's tokens alone (rows, h*w,
                                   in_channels), which the ControlNets read (ComfyUI runs them on x alone) */
    /* blocks left out, bit i for double (SD3: joint) block i and single block i: SkipLayerGuidance's pass */
    uint64_t skip_double, skip_single;
} flux_input;

// -> out (rows, h*w, out_channels) on the host: the packed prediction (SD3: each token's by row, column, channel)
kiln_status kiln_flux_forward(kiln_graph *g, const kiln_flux *flux, const flux_input *in, float *out);

/* Called after double block i (single false) or single block i with the
 * image tokens (B, h*w, D), which it may replace. */
typedef kiln_status (*kiln_flux_block_fn)(kiln_graph *g, void *ctx, bool single, int i, tensor **img);

/* The blocks on embedded image tokens *img (B, h*w, D) and caption tokens
 * *txt (B, T, D; NULL for blocks without a caption side), conditioned on
 * in's timesteps, guidance and pooled output: the image tokens after the
 * last block in *img (*txt dropped), what the modulations are made from in
 * *cond (NULL: dropped): the vector through SiLU (B, D), or Chroma's table
 * (B, CHROMA_MOD_ROWS, D). after_block may be NULL; with_images false leaves
 * in's image prompts out (a ControlNet's blocks have none). */
kiln_status kiln_flux_blocks(kiln_graph *g, const kiln_flux *flux, const flux_input *in, bool with_images,
                             tensor **img, tensor **txt, kiln_flux_block_fn after_block, void *ctx, tensor **cond);

/* Chroma's approximator input for a timestep t (sigma) and guidance:
 * CHROMA_MOD_ROWS rows of [embed(t, 16) | embed(guidance, 16) | embed(row,
 * 32)], each embed(x, n) the cos and sin of 1000 x at n/2 frequencies in
 * float32 as ComfyUI's timestep_embedding computes them (the row's
 * arguments reach 343000, where the float32 product decides the angle). */
void kiln_chroma_modulation_input(float t, float guidance, float *rows);

/* The call's image tokens (B, N, in_channels) embedded: FLUX.1's linear, or
 * SD3's patch conv plus the centre of its position table. */
kiln_status kiln_flux_embed_image(kiln_graph *g, const kiln_flux *flux, const flux_input *in, const tensor *tokens,
                                  tensor **y);

/* SD3's embedding of the call's 2x2 patches: through pos_embed.proj, plus
 * positions (h*w, D), the same for every row, or (positions NULL) the
 * centre of the model's table (PatchEmbed's cropped_pos_embed). */
kiln_status kiln_sd3_embed_patches(kiln_graph *g, const kiln_flux *flux, const flux_input *in, const tensor *tokens,
                                   const float *positions, tensor **y);

/* The image tokens of a call: the latent's and its references'. */
int kiln_flux_image_tokens(const flux_input *in);

/* The rotary table (T, head_dim/2, 2) of cos and sin for T = caption
 * tokens (position 0 on every axis), the h x w patches (0, row, col), then
 * in's references': per axis of width a, pair k turns at pos / 10000^(2k/a). */
void kiln_flux_rope_table(const kiln_flux *flux, int context_tokens, const flux_input *in, float *table);

/* ComfyUI's sampling shift for a Flux model: dev's (with guidance) and
 * Chroma's 1.15, schnell's 1.0 (its Flux, Chroma and FluxSchnell model
 * types). */
static inline double kiln_flux_default_shift(const kiln_flux *flux)
{
    return flux->guidance || flux->chroma ? 1.15 : 1.0;
}
/* Whether the model embeds a guidance value (FluxGuidance's): dev's, and
 * Chroma's approximator (0 where none is set). */
static inline bool kiln_flux_reads_guidance(const kiln_flux *flux) { return flux->guidance || flux->chroma; }

#endif
