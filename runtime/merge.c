/* Model merging at load (see merge.h). */
#include "merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define UNET_ROOT "model.diffusion_model."

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Whether the merge takes this canonical name. */
static bool merged_name(const char *name, bool text_encoders)
{
    if (!text_encoders) return starts_with(name, UNET_ROOT) || starts_with(name, "transformer.");
    return (starts_with(name, "cond_stage_model.") || starts_with(name, "conditioner.") ||
            starts_with(name, "text_encoders.")) &&
           !ends_with(name, ".position_ids") && !ends_with(name, ".logit_scale");
}

static bool same_shape(const kiln_st_tensor *a, const kiln_st_tensor *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0;
}

static bool mergeable(kiln_dtype dtype)
{
    return dtype == KILN_F32 || dtype == KILN_F16 || dtype == KILN_BF16;
}

/* A simple merge's ratio for a tensor whose name under the diffusion
 * model's root is `rel`: by its block where the merge has them (ComfyUI's
 * ModelMergeBlocks: the longest prefix that matches, else the first one's). */
static double ratio_of(const kiln_merge *merge, const char *rel)
{
    if (!merge->nblocks) return merge->ratio;
    double ratio = merge->blocks[0].ratio;
    size_t longest = 0;
    for (int i = 0; i < merge->nblocks; i++) {
        const size_t n = strlen(merge->blocks[i].prefix);
        if (n > longest && strncmp(rel, merge->blocks[i].prefix, n) == 0) ratio = merge->blocks[i].ratio, longest = n;
    }
    return ratio;
}

/* The names in its original file of a DiT's tensors (diffusers' names
 * under transformer.), which ModelMergeBlocks' prefixes name as ComfyUI's
 * model does (double_blocks.3., joint_blocks.0.): for each piece of each
 * original tensor, the tensor it is (canonical) and the original's name
 * without model.diffusion_model.; none where ck is no original DiT file. */
typedef struct original_names {
    kiln_row_piece *pieces; /* each piece's name its canonical tensor's */
    char (*originals)[256];
    size_t n;
} original_names;

static void original_names_free(original_names *o)
{
    free(o->pieces);
    free(o->originals);
    *o = (original_names){0};
}

static kiln_status original_names_of(const kiln_checkpoint *ck, original_names *o)
{
    *o = (original_names){0};
    const size_t count = kiln_checkpoint_original_count(ck);
    if (!count) return KILN_OK;
    o->pieces = malloc(count * KILN_MAX_ROW_PIECES * sizeof *o->pieces);
    o->originals = malloc(count * KILN_MAX_ROW_PIECES * sizeof *o->originals);
    if (!o->pieces || !o->originals) {
        original_names_free(o);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "merge: out of host memory");
    }
    for (size_t i = 0; i < count; i++) {
        const kiln_st_tensor *t;
        int n;
        kiln_status st = kiln_checkpoint_original_at(ck, i, &t, o->pieces + o->n, &n);
        if (st != KILN_OK) {
            original_names_free(o);
            return st;
        }
        const char *rel = starts_with(t->name, UNET_ROOT) ? t->name + strlen(UNET_ROOT) : t->name;
        for (int k = 0; k < n; k++) snprintf(o->originals[o->n + k], sizeof *o->originals, "%s", rel);
        o->n += (size_t)n;
    }
    return KILN_OK;
}

/* The ratio of ck's tensor `name` in the merge: by its block's name, the
 * UNet's own or a DiT's original file's (o). */
static kiln_status merge_ratio(const kiln_merge *merge, const original_names *o, const char *name, double *ratio)
{
    if (!merge->nblocks || starts_with(name, UNET_ROOT)) {
        *ratio = ratio_of(merge, merge->nblocks ? name + strlen(UNET_ROOT) : name);
        return KILN_OK;
    }
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->pieces[i].name, name) == 0) {
            *ratio = ratio_of(merge, o->originals[i]);
            return KILN_OK;
        }
    return kiln_fail(KILN_ERR_UNSUPPORTED, "merge %s by blocks: %s has no block name of ComfyUI's model (a DiT "
                     "merges by blocks from its original single file, not a diffusers folder)", merge->path, name);
}

/* ComfyUI's patch of a model's weight, ck's tensor `name` (a) replaced by
 * a * keep + add * b in float32 (b NULL: a * keep), stored in a's dtype; as
 * ComfyUI, a keep of 1 leaves a unmultiplied. */
static kiln_status patch_weight(kiln_checkpoint *ck, const char *name, const kiln_st_tensor *a, float keep,
                                const kiln_st_tensor *b, float add)
{
    const size_t n = (size_t)kiln_st_numel(a);
    float *x = malloc(n * sizeof *x), *y = b ? malloc(n * sizeof *y) : NULL;
    void *out = x && (y || !b) ? malloc(kiln_dtype_bytes(a->dtype, n)) : NULL;
    if (!out) {
        free(x);
        free(y);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "out of host memory for %s", name);
    }
    kiln_convert_to_f32(x, a->data, a->dtype, n);
    if (b) kiln_convert_to_f32(y, b->data, b->dtype, n);
    for (size_t i = 0; i < n; i++) {
        if (keep != 1.0f) x[i] *= keep;
        if (b) x[i] += add * y[i];
    }
    kiln_convert_from_f32(out, x, a->dtype, n);
    free(x);
    free(y);
    return kiln_checkpoint_replace(ck, name, a->dtype, out);
}

/* a's tensor `name` merged with b at ratio r: w * strength_model + strength * w2, each factor rounded to float */
static kiln_status merge_tensor(kiln_checkpoint *ck, const char *name, const kiln_st_tensor *a,
                                const kiln_st_tensor *b, const kiln_merge *merge, double r)
{
    const float keep = merge->kind == KILN_MERGE_ADD ? 1.0f : (float)r,
                add = merge->kind == KILN_MERGE_SIMPLE ? (float)(1.0 - r) : merge->kind == KILN_MERGE_ADD ? 1.0f
                                                                                                          : (float)-r;
    return patch_weight(ck, name, a, keep, b, add);
}

kiln_status kiln_checkpoint_merge(kiln_checkpoint *ck, const kiln_merge *merge, int *merged)
{
    *merged = 0;
    if (!merge->path) return kiln_fail(KILN_ERR_INVALID_ARG, "merge: no checkpoint to merge");
    if (merge->kind != KILN_MERGE_SIMPLE && merge->kind != KILN_MERGE_ADD && merge->kind != KILN_MERGE_SUBTRACT)
        return kiln_fail(KILN_ERR_INVALID_ARG, "merge %s: unknown kind %d", merge->path, (int)merge->kind);
    if (merge->kind != KILN_MERGE_ADD && !merge->nblocks && !(merge->ratio >= -10.0 && merge->ratio <= 10.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "merge %s: %s %g: -10 to 10", merge->path,
                         merge->kind == KILN_MERGE_SIMPLE ? "ratio" : "multiplier", merge->ratio);
    if (merge->nblocks < 0 || merge->nblocks > KILN_MAX_MERGE_BLOCKS || (merge->nblocks && !merge->blocks) ||
        (merge->nblocks && (merge->kind != KILN_MERGE_SIMPLE || merge->text_encoders)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "merge %s: %d blocks: a simple merge of a diffusion model takes 1 to "
                         "%d", merge->path, merge->nblocks, KILN_MAX_MERGE_BLOCKS);
    for (int i = 0; i < merge->nblocks; i++)
        if (!merge->blocks[i].prefix || !(merge->blocks[i].ratio >= 0.0 && merge->blocks[i].ratio <= 1.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "merge %s: block %d ('%s') ratio %g: 0 to 1", merge->path, i,
                             merge->blocks[i].prefix ? merge->blocks[i].prefix : "no prefix", merge->blocks[i].ratio);
    kiln_checkpoint *other;
    TRY(kiln_checkpoint_open(merge->path, &other));
    /* the names first: the first replacement re-indexes ck */
    const size_t count = kiln_checkpoint_count(ck);
    char **names = calloc(count ? count : 1, sizeof *names);
    double *ratios = calloc(count ? count : 1, sizeof *ratios);
    size_t nnames = 0;
    original_names originals = {0};
    kiln_status st = names && ratios ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "merge: out of host memory");
    if (st == KILN_OK && merge->nblocks) st = original_names_of(ck, &originals);
    for (size_t i = 0; i < count && st == KILN_OK; i++) {
        const char *name;
        const kiln_st_tensor *a = kiln_checkpoint_at(ck, i, &name), *b;
        if (!merged_name(name, merge->text_encoders) || !(b = kiln_checkpoint_find(other, name))) continue;
        if ((st = merge_ratio(merge, &originals, name, &ratios[nnames])) != KILN_OK) break;
        if (!same_shape(a, b))
            st = kiln_fail(KILN_ERR_MODEL, "merge %s: tensor %s is of another shape than %s's", merge->path, name,
                           kiln_checkpoint_path(ck));
        else if (!mergeable(a->dtype) || !mergeable(b->dtype))
            st = kiln_fail(KILN_ERR_UNSUPPORTED, "merge %s: tensor %s is stored as %s in %s: kiln merges float32, "
                           "float16 and bfloat16 weights", merge->path, name,
                           kiln_dtype_name(mergeable(a->dtype) ? b->dtype : a->dtype),
                           mergeable(a->dtype) ? merge->path : kiln_checkpoint_path(ck));
        else if (!(names[nnames++] = strdup(name)))
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "merge: out of host memory");
    }
    if (st == KILN_OK && nnames == 0)
        st = kiln_fail(KILN_ERR_MODEL, "merge %s: no %s tensor in common with %s (another model family?)", merge->path,
                       merge->text_encoders ? "text encoder" : "diffusion model", kiln_checkpoint_path(ck));
    for (size_t i = 0; i < nnames && st == KILN_OK; i++)
        st = merge_tensor(ck, names[i], kiln_checkpoint_find(ck, names[i]), kiln_checkpoint_find(other, names[i]),
                          merge, ratios[i]);
    if (st == KILN_OK) *merged = (int)nnames;
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    free(ratios);
    original_names_free(&originals);
    kiln_checkpoint_close(other);
    return st;
}

kiln_status kiln_controlnet_add_unet(kiln_checkpoint *controlnet, const kiln_checkpoint *model, int *added)
{
    *added = 0;
    static const char control_root[] = "control_model.";
    const size_t count = kiln_checkpoint_count(controlnet);
    char **names = calloc(count ? count : 1, sizeof *names);
    size_t nnames = 0;
    kiln_status st = names ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "diff ControlNet: out of host memory");
    for (size_t i = 0; i < count && st == KILN_OK; i++) { /* the names first: a replacement re-indexes it */
        const char *name;
        const kiln_st_tensor *c = kiln_checkpoint_at(controlnet, i, &name);
        if (!starts_with(name, control_root)) continue;
        char unet_name[512];
        snprintf(unet_name, sizeof unet_name, UNET_ROOT "%s", name + strlen(control_root));
        const kiln_st_tensor *u = kiln_checkpoint_find(model, unet_name);
        if (!u) continue; /* the hint encoder, the zero convolutions: the ControlNet's own */
        if (!same_shape(c, u))
            st = kiln_fail(KILN_ERR_MODEL, "diff ControlNet %s: %s is of another shape than %s's %s",
                           kiln_checkpoint_path(controlnet), name, kiln_checkpoint_path(model), unet_name);
        else if (!mergeable(c->dtype) || !mergeable(u->dtype))
            st = kiln_fail(KILN_ERR_UNSUPPORTED, "diff ControlNet %s: %s is stored as %s: kiln adds float32, float16 "
                           "and bfloat16 weights", kiln_checkpoint_path(controlnet), mergeable(c->dtype) ? unet_name
                                                                                                          : name,
                           kiln_dtype_name(mergeable(c->dtype) ? u->dtype : c->dtype));
        else if (!(names[nnames++] = strdup(name)))
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "diff ControlNet: out of host memory");
    }
    for (size_t i = 0; i < nnames && st == KILN_OK; i++) {
        const kiln_st_tensor *c = kiln_checkpoint_find(controlnet, names[i]);
        char unet_name[512];
        snprintf(unet_name, sizeof unet_name, UNET_ROOT "%s", names[i] + strlen(control_root));
        kiln_st_tensor u = *kiln_checkpoint_find(model, unet_name);
        /* torch's `cd += w.type(cd.dtype)`: the model's weight rounded first */
        void *rounded = NULL;
        if (u.dtype != c->dtype) {
            const size_t n = (size_t)kiln_st_numel(&u);
            float *wide = malloc(n * sizeof *wide);
            rounded = wide ? malloc(kiln_dtype_bytes(c->dtype, n)) : NULL;
            if (!rounded) {
                free(wide);
                st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "out of host memory for %s", names[i]);
                break;
            }
            kiln_convert_to_f32(wide, u.data, u.dtype, n);
            kiln_convert_from_f32(rounded, wide, c->dtype, n);
            free(wide);
            u.data = rounded, u.dtype = c->dtype;
        }
        st = patch_weight(controlnet, names[i], c, 1.0f, &u, 1.0f);
        free(rounded);
    }
    if (st == KILN_OK) *added = (int)nnames;
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    return st;
}

kiln_status kiln_checkpoint_multiply_attention(kiln_checkpoint *ck, const char *attn, const kiln_attention_multiply *m,
                                               int *scaled)
{
    *scaled = 0;
    const double factors[4] = {m->q, m->k, m->v, m->out};
    /* the UNet's attn1/attn2 in diffusers' names, the text encoders' self_attn in transformers' */
    const bool text_encoders = strcmp(attn, "self_attn") == 0;
    static const char *const unet_projections[4] = {"to_q", "to_k", "to_v", "to_out.0"},
                             *const clip_projections[4] = {"q_proj", "k_proj", "v_proj", "out_proj"},
                             *const inputs[4] = {"q", "k", "v", "out"};
    const char *const *projections = text_encoders ? clip_projections : unet_projections;
    for (int p = 0; p < 4; p++)
        if (!(factors[p] >= 0.0 && factors[p] <= 10.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "%s multiply: %s %g: 0 to 10", attn, inputs[p], factors[p]);
    const size_t count = kiln_checkpoint_count(ck);
    char **names = calloc(count ? count : 1, sizeof *names);
    int *which = calloc(count ? count : 1, sizeof *which);
    size_t nnames = 0;
    kiln_status st = names && which ? KILN_OK : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "attention multiply: out of host "
                                                                                  "memory");
    for (size_t i = 0; i < count && st == KILN_OK; i++) { /* the names first: a replacement re-indexes ck */
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        if (text_encoders ? !merged_name(name, true) : !starts_with(name, UNET_ROOT)) continue;
        for (int p = 0; p < 4; p++) {
            char weight[64], bias[64];
            snprintf(weight, sizeof weight, ".%s.%s.weight", attn, projections[p]);
            snprintf(bias, sizeof bias, ".%s.%s.bias", attn, projections[p]);
            if (factors[p] == 1.0 || (!ends_with(name, weight) && !ends_with(name, bias))) continue;
            if (!mergeable(t->dtype))
                st = kiln_fail(KILN_ERR_UNSUPPORTED, "%s multiply: tensor %s is stored as %s: kiln scales float32, "
                               "float16 and bfloat16 weights", attn, name, kiln_dtype_name(t->dtype));
            else if (!(names[nnames] = strdup(name)))
                st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "attention multiply: out of host memory");
            else
                which[nnames++] = p;
        }
    }
    for (size_t i = 0; i < nnames && st == KILN_OK; i++) /* ComfyUI's weight *= strength_model */
        st = patch_weight(ck, names[i], kiln_checkpoint_find(ck, names[i]), (float)factors[which[i]], NULL, 0.0f);
    if (st == KILN_OK) *scaled = (int)nnames;
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    free(which);
    return st;
}
