/* A checkpoint written back as one single file in the original layout
 * (see checkpoint.h's kiln_checkpoint_save). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "status.h"

#define DIFFUSION_MODEL "model.diffusion_model." /* ComfyUI's prefix for a saved diffusion model */

/* One tensor of the file: its name and where its bytes come from. */
typedef struct saved_tensor {
    char name[512];
    const kiln_st_tensor *from[3]; /* one; or q, k and v, whose rows are fused in that order */
    int nfrom;
    bool transpose; /* a 2-D weight written transposed */
    kiln_row_piece pieces[KILN_MAX_ROW_PIECES]; /* or a DiT's original tensor: its rows from these */
    int npieces;
} saved_tensor;

typedef struct save_job {
    const kiln_checkpoint *ck;
    saved_tensor *tensors;
    kiln_st_entry *entries;
    size_t n;
} save_job;

/* An original DiT tensor (entry e) from the checkpoint's tensors its rows
 * are in, which a LoRA or merge may have replaced: original rows
 * [from_row, + rows) are rows [to_row, + rows) of the piece's tensor,
 * widened to f32 where the pieces' types differ. */
static void fill_rows(const kiln_checkpoint *ck, const saved_tensor *s, const kiln_st_entry *e, void *dst)
{
    size_t row = 1; /* elements */
    for (int d = 1; d < e->ndim; d++) row *= (size_t)e->shape[d];
    for (int i = 0; i < s->npieces; i++) {
        const kiln_row_piece *p = &s->pieces[i];
        const kiln_st_tensor *t = kiln_checkpoint_find(ck, p->name);
        const size_t in = kiln_dtype_size(t->dtype), out = kiln_dtype_size(e->dtype);
        const char *src = (const char *)t->data + (size_t)p->to_row * row * in;
        char *at = (char *)dst + (size_t)p->from_row * row * out;
        if (t->dtype == e->dtype) memcpy(at, src, (size_t)p->rows * row * in);
        else kiln_convert_to_f32((float *)(void *)at, src, t->dtype, (size_t)p->rows * row);
    }
}

static kiln_status fill(void *ctx, size_t index, void *dst, size_t nbytes)
{
    const save_job *job = ctx;
    const saved_tensor *s = &job->tensors[index];
    if (s->npieces) {
        fill_rows(job->ck, s, &job->entries[index], dst);
        return KILN_OK;
    }
    if (s->transpose) {
        const kiln_st_tensor *t = s->from[0];
        const size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], bytes = t->nbytes / (rows * cols);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                memcpy((char *)dst + (c * rows + r) * bytes, (const char *)t->data + (r * cols + c) * bytes, bytes);
        return KILN_OK;
    }
    (void)nbytes; /* the pieces' sizes add up to it: the entry's first dimension is their rows' sum */
    char *at = dst;
    for (int i = 0; i < s->nfrom; i++) {
        memcpy(at, s->from[i]->data, s->from[i]->nbytes);
        at += s->from[i]->nbytes;
    }
    return KILN_OK;
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* The OpenCLIP name of canonical `rest` (after the transformers root) under
 * root `from`: false for a name OpenCLIP's tower lacks (position_ids), and
 * for k and v, which go with q. *fused: q's rows, which take k's and v's. */
static bool open_clip_name(const char *from, const char *rest, char *out, size_t size, bool *fused)
{
    *fused = false;
    int layer, n = 0;
    if (strcmp(rest, "embeddings.token_embedding.weight") == 0)
        return snprintf(out, size, "%stoken_embedding.weight", from) < (int)size;
    if (strcmp(rest, "embeddings.position_embedding.weight") == 0)
        return snprintf(out, size, "%spositional_embedding", from) < (int)size;
    if (starts_with(rest, "final_layer_norm."))
        return snprintf(out, size, "%sln_final.%s", from, rest + strlen("final_layer_norm.")) < (int)size;
    if (sscanf(rest, "encoder.layers.%d.%n", &layer, &n) != 1 || !n) return false;
    const char *in = rest + n;
    if (starts_with(in, "self_attn.q_proj.")) {
        *fused = true;
        return snprintf(out, size, "%stransformer.resblocks.%d.attn.in_proj_%s", from, layer,
                        in + strlen("self_attn.q_proj.")) < (int)size;
    }
    for (int k = 0; k < KILN_OPEN_CLIP_RENAMES; k++)
        if (starts_with(in, kiln_open_clip_renames[k][1]))
            return snprintf(out, size, "%stransformer.resblocks.%d.%s%s", from, layer, kiln_open_clip_renames[k][0],
                            in + strlen(kiln_open_clip_renames[k][1])) < (int)size;
    return false;
}

/* Canonical tensor `name` (t) as the file's tensor s and its entry e;
 * *kept false where the file leaves it out. */
static kiln_status place(const kiln_checkpoint *ck, int open_clip, const char *name, const kiln_st_tensor *t,
                         saved_tensor *s, kiln_st_entry *e, bool *kept)
{
    *kept = true;
    *s = (saved_tensor){.from = {t}, .nfrom = 1};
    *e = (kiln_st_entry){.name = s->name, .dtype = t->dtype, .ndim = t->ndim};
    memcpy(e->shape, t->shape, sizeof e->shape);
    snprintf(s->name, sizeof s->name, "%s", name);
    /* a folder VAE's attention projections are linears; the original's 1x1 convolutions */
    static const char *const projections[] = {".attn_1.q.weight", ".attn_1.k.weight", ".attn_1.v.weight",
                                              ".attn_1.proj_out.weight"};
    const size_t len = strlen(name);
    for (int k = 0; k < 4 && t->ndim == 2 && starts_with(name, "first_stage_model."); k++)
        if (len > strlen(projections[k]) && strcmp(name + len - strlen(projections[k]), projections[k]) == 0)
            e->ndim = 4, e->shape[2] = e->shape[3] = 1;
    if (open_clip < 0) return KILN_OK;
    const char *from = kiln_open_clip_roots[open_clip][0], *to = kiln_open_clip_roots[open_clip][1];
    char projection[256];
    snprintf(projection, sizeof projection, "%.*stext_projection.weight", (int)(strlen(to) - strlen("text_model.")), to);
    if (strcmp(name, projection) == 0) { /* transformers' Linear, x W^T; OpenCLIP's parameter, x P */
        if (t->ndim != 2 || kiln_dtype_is_quantized(t->dtype))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: %s is no plain 2-D weight", kiln_checkpoint_path(ck), name);
        snprintf(s->name, sizeof s->name, "%stext_projection", from);
        s->transpose = true;
        e->shape[0] = t->shape[1], e->shape[1] = t->shape[0];
        return KILN_OK;
    }
    if (!starts_with(name, to)) return KILN_OK;
    bool fused;
    if (!open_clip_name(from, name + strlen(to), s->name, sizeof s->name, &fused)) {
        /* k and v go with q; position_ids is no tensor of OpenCLIP's */
        *kept = false;
        return KILN_OK;
    }
    if (!fused) return KILN_OK;
    const char *q = strstr(name, "q_proj.");
    for (int k = 1; k < 3; k++) {
        char other[512];
        snprintf(other, sizeof other, "%.*s%c%s", (int)(q - name), name, "qkv"[k], q + 1);
        const kiln_st_tensor *o = kiln_checkpoint_find(ck, other);
        if (!o || o->dtype != t->dtype || o->ndim != t->ndim ||
            memcmp(o->shape + 1, t->shape + 1, (size_t)(t->ndim - 1) * sizeof t->shape[0]) != 0)
            return kiln_fail(KILN_ERR_MODEL, "%s: %s has no %s of its type and width to fuse with",
                             kiln_checkpoint_path(ck), name, other);
        s->from[s->nfrom++] = o;
        e->shape[0] += o->shape[0];
    }
    return KILN_OK;
}

kiln_status kiln_checkpoint_save(const kiln_checkpoint *ck, int open_clip, const char *path)
{
    return kiln_checkpoint_save_part(ck, open_clip, NULL, false, path);
}

kiln_status kiln_checkpoint_save_part(const kiln_checkpoint *ck, int open_clip, const char *part, bool strip,
                                      const char *path)
{
    if (open_clip >= KILN_OPEN_CLIP_ROOTS)
        return kiln_fail(KILN_ERR_INVALID_ARG, "checkpoint save: OpenCLIP root %d", open_clip);
    const size_t count = kiln_checkpoint_count(ck), cut = part && strip ? strlen(part) : 0;
    save_job job = {ck, calloc(count ? count : 1, sizeof *job.tensors), calloc(count ? count : 1, sizeof *job.entries),
                    0};
    kiln_status st = job.tensors && job.entries ? KILN_OK
                                                : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint save: out of memory");
    for (size_t i = 0; i < count && st == KILN_OK; i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        if (part && !starts_with(name, part)) continue;
        bool kept;
        saved_tensor *s = &job.tensors[job.n];
        st = place(ck, open_clip, name, t, s, &job.entries[job.n], &kept);
        if (cut) memmove(s->name, s->name + cut, strlen(s->name + cut) + 1);
        if (st == KILN_OK && kept) job.n++;
    }
    if (st == KILN_OK && part && !job.n)
        st = kiln_fail(KILN_ERR_MODEL, "%s: no tensor under '%s' to save", kiln_checkpoint_path(ck), part);
    if (st == KILN_OK) st = kiln_st_write_fill(path, job.entries, job.n, NULL, 0, fill, &job);
    free(job.tensors);
    free(job.entries);
    return st;
}

/* The original tensor t (rows from `pieces`) as s and e, in the pieces'
 * one type (f32 where they differ), under model.diffusion_model. as
 * ComfyUI's ModelSave names a DiT. */
static kiln_status place_original(const kiln_checkpoint *ck, const kiln_st_tensor *t, const kiln_row_piece *pieces,
                                  int n, saved_tensor *s, kiln_st_entry *e)
{
    const char *path = kiln_checkpoint_path(ck), *name = t->name;
    if (starts_with(name, DIFFUSION_MODEL)) name += strlen(DIFFUSION_MODEL);
    *s = (saved_tensor){.npieces = n};
    memcpy(s->pieces, pieces, (size_t)n * sizeof *pieces);
    snprintf(s->name, sizeof s->name, DIFFUSION_MODEL "%s", name);
    *e = (kiln_st_entry){.name = s->name, .ndim = t->ndim};
    memcpy(e->shape, t->shape, sizeof e->shape);
    for (int i = 0; i < n; i++) {
        const kiln_st_tensor *p = kiln_checkpoint_find(ck, pieces[i].name);
        if (!p) return kiln_fail(KILN_ERR_MODEL, "%s: '%s' has no '%s' to save it from", path, t->name, pieces[i].name);
        if (kiln_dtype_is_quantized(p->dtype) || kiln_dtype_is_quantized(t->dtype))
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: '%s' is quantized (%s); kiln saves float weights", path,
                             t->name, kiln_dtype_name(kiln_dtype_is_quantized(p->dtype) ? p->dtype : t->dtype));
        e->dtype = i == 0 || p->dtype == e->dtype ? p->dtype : KILN_F32;
    }
    return KILN_OK;
}

kiln_status kiln_checkpoint_save_dit(const kiln_checkpoint *ck, const char *vae_prefix, const char *path)
{
    if (!kiln_checkpoint_dit_original(ck))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: kiln writes a DiT in its original file's names, which a diffusers "
                         "folder's transformer does not have (save from BFL's, Stability's or PixArt's single file)",
                         kiln_checkpoint_path(ck));
    const size_t originals = kiln_checkpoint_original_count(ck), count = originals + kiln_checkpoint_count(ck);
    save_job job = {ck, calloc(count, sizeof *job.tensors), calloc(count, sizeof *job.entries), 0};
    kiln_status st = job.tensors && job.entries ? KILN_OK
                                                : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint save: out of memory");
    for (size_t i = 0; i < originals && st == KILN_OK; i++) {
        const kiln_st_tensor *t;
        kiln_row_piece pieces[KILN_MAX_ROW_PIECES];
        int n;
        st = kiln_checkpoint_original_at(ck, i, &t, pieces, &n);
        if (st == KILN_OK && n) {
            st = place_original(ck, t, pieces, n, &job.tensors[job.n], &job.entries[job.n]);
            job.n++;
        }
    }
    for (size_t i = 0; vae_prefix && i < kiln_checkpoint_count(ck) && st == KILN_OK; i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        const bool vae = starts_with(name, "first_stage_model.");
        if (!vae && !starts_with(name, "text_encoders.")) continue; /* the DiT's are above */
        bool kept;
        saved_tensor *s = &job.tensors[job.n];
        st = place(ck, -1, name, t, s, &job.entries[job.n], &kept);
        if (vae) snprintf(s->name, sizeof s->name, "%s%s", vae_prefix, name + strlen("first_stage_model."));
        job.n++;
    }
    if (st == KILN_OK) st = kiln_st_write_fill(path, job.entries, job.n, NULL, 0, fill, &job);
    free(job.tensors);
    free(job.entries);
    return st;
}
