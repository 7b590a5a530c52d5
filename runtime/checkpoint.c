/* Opening checkpoints and mapping their names to the canonical (original
 * single-file) scheme. */
#include "checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "file.h"
#include "merge.h"
#include "status.h"

typedef struct named_tensor {
    char *name; /* canonical */
    const kiln_st_tensor *tensor;
    kiln_st_tensor *replaced; /* the checkpoint's own copy (merged LoRA weights), or NULL */
    kiln_st_tensor *view;     /* a part of a file's tensor (OpenCLIP's fused q/k/v), or NULL */
} named_tensor;

#define MAX_FILES 16 /* a DiT folder: its transformer, VAE and a T5 encoder in several shards */

struct kiln_checkpoint {
    char *path;
    kiln_st_file *files[MAX_FILES];
    int nfiles;
    named_tensor *names; /* sorted by name; only for mapped layouts */
    size_t nnames, cap;
    char *prediction_type; /* a diffusers folder's scheduler_config.json says, or NULL */
    int sample_size;       /* a DiT folder's transformer/config.json says, or 0 */
    int head_dim;          /* a DiT folder's transformer/config.json attention_head_dim, or 0 */
    bool clip_l_given;     /* a part file put CLIP-L beside an SD3 transformer */
    char *pipeline;        /* a DiT folder's model_index.json _class_name, or NULL */
    double vae_scaling;    /* a folder's vae/config.json scaling_factor, or 0 */
    double vae_shift;      /* its shift_factor, or 0 */
    float latents_mean[KILN_MAX_LATENT_CHANNELS], latents_std[KILN_MAX_LATENT_CHANNELS];
    int nlatents;          /* its latents_mean and latents_std, when both are given with one length */
    bool edm;              /* a folder's scheduler is one of diffusers' EDM schedulers: */
    double edm_sigma_min, edm_sigma_max, edm_sigma_data; /* its sigmas' range and the data's std */
    int rope_axes[3];      /* a Flux folder's transformer/config.json axes_dims_rope, or 0s */
    char *tokenizer;       /* T5's spiece.model: a DiT folder's, or given beside a single file; or NULL */
    bool convert_linears;  /* kiln_model_parts.weight_dtype asks for the diffusion model's linear weights */
    kiln_dtype linear_dtype; /* ... in this dtype */
    enum { DIT_NONE, DIT_FLUX, DIT_SD3, DIT_PIXART } dit_original; /* a DiT file in its original names */
    int joint_blocks;      /* an SD3 file's MMDiT blocks */
};

const char *kiln_checkpoint_path(const kiln_checkpoint *ck) { return ck->path; }

static int by_name(const void *a, const void *b)
{
    return strcmp(((const named_tensor *)a)->name, ((const named_tensor *)b)->name);
}

const kiln_st_tensor *kiln_checkpoint_find(const kiln_checkpoint *ck, const char *name)
{
    if (!ck->names) return kiln_st_find(ck->files[0], name);
    named_tensor key = {.name = (char *)name};
    named_tensor *hit = bsearch(&key, ck->names, ck->nnames, sizeof key, by_name);
    return hit ? hit->tensor : NULL;
}

const kiln_st_tensor *kiln_checkpoint_find_at(const kiln_checkpoint *ck, const char *prefix, const char *suffix)
{
    char name[512];
    if (snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", suffix) >= (int)sizeof name) return NULL;
    return kiln_checkpoint_find(ck, name);
}

size_t kiln_checkpoint_count(const kiln_checkpoint *ck)
{
    return ck->names ? ck->nnames : kiln_st_count(ck->files[0]);
}

const kiln_st_tensor *kiln_checkpoint_at(const kiln_checkpoint *ck, size_t i, const char **name)
{
    const kiln_st_tensor *t = ck->names ? ck->names[i].tensor : kiln_st_at(ck->files[0], i);
    *name = ck->names ? ck->names[i].name : t->name;
    return t;
}

bool kiln_checkpoint_has_prefix(const kiln_checkpoint *ck, const char *prefix)
{
    size_t len = strlen(prefix);
    for (size_t i = 0; i < kiln_checkpoint_count(ck); i++) {
        const char *name;
        kiln_checkpoint_at(ck, i, &name);
        if (strncmp(name, prefix, len) == 0) return true;
    }
    return false;
}

const char *kiln_checkpoint_metadata(const kiln_checkpoint *ck, const char *key)
{
    return kiln_st_metadata(ck->files[0], key);
}

static void free_replaced(kiln_st_tensor *t)
{
    if (!t) return;
    free((void *)t->data);
    free(t);
}

void kiln_checkpoint_close(kiln_checkpoint *ck)
{
    if (!ck) return;
    for (size_t i = 0; i < ck->nnames; i++) {
        free(ck->names[i].name);
        free_replaced(ck->names[i].replaced);
        free(ck->names[i].view);
    }
    free(ck->names);
    free(ck->prediction_type);
    free(ck->pipeline);
    free(ck->tokenizer);
    for (int i = 0; i < ck->nfiles; i++) kiln_st_close(ck->files[i]);
    free(ck->path);
    free(ck);
}

static kiln_status add_name(kiln_checkpoint *ck, const char *name, const kiln_st_tensor *t)
{
    if (ck->nnames == ck->cap) {
        size_t cap = ck->cap ? 2 * ck->cap : 1024;
        named_tensor *n = realloc(ck->names, cap * sizeof *n);
        if (!n) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
        ck->names = n;
        ck->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    ck->names[ck->nnames++] = (named_tensor){copy, t, NULL, NULL};
    return KILN_OK;
}

static kiln_status sort_names(kiln_checkpoint *ck)
{
    qsort(ck->names, ck->nnames, sizeof *ck->names, by_name);
    for (size_t i = 1; i < ck->nnames; i++)
        if (strcmp(ck->names[i - 1].name, ck->names[i].name) == 0)
            return kiln_fail(KILN_ERR_MODEL, "%s: two tensors map to '%s'", ck->path, ck->names[i].name);
    return KILN_OK;
}

/* ---- diffusers folder layout -> canonical names ------------------------ */

/* Replaces the first `from` in `s` (in place, s has room for 512 bytes). */
static kiln_status index_names(kiln_checkpoint *ck)
{
    if (ck->names) return KILN_OK;
    const kiln_st_file *f = ck->files[0];
    for (size_t i = 0; i < kiln_st_count(f); i++) TRY(add_name(ck, kiln_st_at(f, i)->name, kiln_st_at(f, i)));
    qsort(ck->names, ck->nnames, sizeof *ck->names, by_name);
    return KILN_OK;
}

static void replace_once(char *s, const char *from, const char *to)
{
    char *at = strstr(s, from);
    if (!at) return;
    char tail[512];
    snprintf(tail, sizeof tail, "%s", at + strlen(from));
    snprintf(at, 512 - (size_t)(at - s), "%s%s", to, tail);
}

/* sscanf with a trailing %n: true when the whole pattern matched. `*n` is
 * reset first so a match never relies on an earlier attempt's position. */
#define MATCHES(str, fmt, nconv, ...) (*n_ = 0, sscanf((str), fmt, __VA_ARGS__) == (nconv) && *n_)

/* ResNet and attention internals shared by the UNet and the VAE. */
static void rename_unet_resnet_parts(char *s)
{
    replace_once(s, ".norm1.", ".in_layers.0.");
    replace_once(s, ".conv1.", ".in_layers.2.");
    replace_once(s, ".time_emb_proj.", ".emb_layers.1.");
    replace_once(s, ".norm2.", ".out_layers.0.");
    replace_once(s, ".conv2.", ".out_layers.3.");
    replace_once(s, ".conv_shortcut.", ".skip_connection.");
}

typedef struct unet_layout {
    int layers_per_block; /* resnets per down block */
    bool up_has_attention[8];
    int joint_blocks;     /* an SD3 file's MMDiT blocks (the last one's caption side is modulated as a final norm) */
} unet_layout;

/* UNet2DConditionModel names -> `<root>.*` (root "model.diffusion_model", or
 * "control_model" for a ControlNet's copy of the encoder). False when the
 * name has no counterpart (it is then reported as unexpected). */
static bool map_unet_name(const char *in, const unet_layout *lay, const char *root, char *out, size_t size)
{
    int L = lay->layers_per_block, i, j, n = 0, *n_ = &n;
    char s[512];
    if (MATCHES(in, "down_blocks.%d.resnets.%d.%n", 2, &i, &j, &n)) {
        snprintf(s, sizeof s, "input_blocks.%d.0.%s", 1 + i * (L + 1) + j, in + n);
        rename_unet_resnet_parts(s);
    } else if (MATCHES(in, "down_blocks.%d.attentions.%d.%n", 2, &i, &j, &n)) {
        snprintf(s, sizeof s, "input_blocks.%d.1.%s", 1 + i * (L + 1) + j, in + n);
    } else if (MATCHES(in, "down_blocks.%d.downsamplers.0.conv.%n", 1, &i, &n)) {
        snprintf(s, sizeof s, "input_blocks.%d.0.op.%s", (i + 1) * (L + 1), in + n);
    } else if (MATCHES(in, "mid_block.resnets.%d.%n", 1, &j, &n)) {
        snprintf(s, sizeof s, "middle_block.%d.%s", 2 * j, in + n);
        rename_unet_resnet_parts(s);
    } else if (MATCHES(in, "mid_block.attentions.0.%n", 0, &n)) {
        snprintf(s, sizeof s, "middle_block.1.%s", in + n);
    } else if (MATCHES(in, "up_blocks.%d.resnets.%d.%n", 2, &i, &j, &n)) {
        snprintf(s, sizeof s, "output_blocks.%d.0.%s", i * (L + 1) + j, in + n);
        rename_unet_resnet_parts(s);
    } else if (MATCHES(in, "up_blocks.%d.attentions.%d.%n", 2, &i, &j, &n)) {
        snprintf(s, sizeof s, "output_blocks.%d.1.%s", i * (L + 1) + j, in + n);
    } else if (MATCHES(in, "up_blocks.%d.upsamplers.0.conv.%n", 1, &i, &n)) {
        bool attn = i < 8 && lay->up_has_attention[i];
        snprintf(s, sizeof s, "output_blocks.%d.%d.conv.%s", i * (L + 1) + L, attn ? 2 : 1, in + n);
    } else if (MATCHES(in, "conv_in.%n", 0, &n)) {
        snprintf(s, sizeof s, "input_blocks.0.0.%s", in + n);
    } else if (MATCHES(in, "time_embedding.linear_%d.%n", 1, &i, &n)) {
        snprintf(s, sizeof s, "time_embed.%d.%s", i == 1 ? 0 : 2, in + n);
    } else if (MATCHES(in, "add_embedding.linear_%d.%n", 1, &i, &n)) { /* SDXL's y */
        snprintf(s, sizeof s, "label_emb.0.%d.%s", i == 1 ? 0 : 2, in + n);
    } else if (MATCHES(in, "conv_norm_out.%n", 0, &n)) {
        snprintf(s, sizeof s, "out.0.%s", in + n);
    } else if (MATCHES(in, "conv_out.%n", 0, &n)) {
        snprintf(s, sizeof s, "out.2.%s", in + n);
    } else {
        return false;
    }
    return snprintf(out, size, "%s.%s", root, s) < (int)size;
}

/* AutoencoderKL names -> `first_stage_model.*`; `levels` = up blocks. */
static bool map_vae_name(const char *in, int levels, char *out, size_t size)
{
    int i, j, n = 0, *n_ = &n;
    char half[16], s[512];
    if (sscanf(in, "%15[a-z]%n", half, &n) != 1 || (strcmp(half, "encoder") && strcmp(half, "decoder"))) {
        if (strncmp(in, "quant_conv.", 11) && strncmp(in, "post_quant_conv.", 16)) return false;
        return snprintf(out, size, "first_stage_model.%s", in) < (int)size;
    }
    const char *p = in + n; /* ".down_blocks..." */
    if (MATCHES(p, ".down_blocks.%d.resnets.%d.%n", 2, &i, &j, &n))
        snprintf(s, sizeof s, "%s.down.%d.block.%d.%s", half, i, j, p + n);
    else if (MATCHES(p, ".down_blocks.%d.downsamplers.0.conv.%n", 1, &i, &n))
        snprintf(s, sizeof s, "%s.down.%d.downsample.conv.%s", half, i, p + n);
    else if (MATCHES(p, ".up_blocks.%d.resnets.%d.%n", 2, &i, &j, &n))
        snprintf(s, sizeof s, "%s.up.%d.block.%d.%s", half, levels - 1 - i, j, p + n);
    else if (MATCHES(p, ".up_blocks.%d.upsamplers.0.conv.%n", 1, &i, &n))
        snprintf(s, sizeof s, "%s.up.%d.upsample.conv.%s", half, levels - 1 - i, p + n);
    else if (MATCHES(p, ".mid_block.resnets.%d.%n", 1, &j, &n))
        snprintf(s, sizeof s, "%s.mid.block_%d.%s", half, j + 1, p + n);
    else if (MATCHES(p, ".mid_block.attentions.0.%n", 0, &n)) {
        static const char *const attn_names[][2] = {
            {"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."},
            {"query.", "q."}, {"key.", "k."}, {"value.", "v."}, {"proj_attn.", "proj_out."},
        };
        const char *part = p + n;
        const char *mapped = NULL;
        size_t used = 0;
        for (size_t k = 0; k < sizeof attn_names / sizeof attn_names[0]; k++) {
            size_t len = strlen(attn_names[k][0]);
            if (strncmp(part, attn_names[k][0], len) == 0) {
                mapped = attn_names[k][1];
                used = len;
                break;
            }
        }
        if (!mapped) return false;
        snprintf(s, sizeof s, "%s.mid.attn_1.%s%s", half, mapped, part + used);
    } else if (MATCHES(p, ".conv_norm_out.%n", 0, &n))
        snprintf(s, sizeof s, "%s.norm_out.%s", half, p + n);
    else if (strncmp(p, ".conv_in.", 9) == 0 || strncmp(p, ".conv_out.", 10) == 0)
        snprintf(s, sizeof s, "%s%s", half, p);
    else
        return false;
    replace_once(s, ".conv_shortcut.", ".nin_shortcut.");
    return snprintf(out, size, "first_stage_model.%s", s) < (int)size;
}

/* A JSON file of a folder, parsed; *root NULL (and KILN_OK) where it does
 * not parse. */
static kiln_status read_json(const char *path, cJSON **root)
{
    uint8_t *text;
    size_t size;
    *root = NULL;
    TRY(kiln_read_file(path, (size_t)64 << 20, "a JSON file", &text, &size));
    *root = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    return KILN_OK;
}

/* A number or string a folder's JSON file says, where it says it:
 * `<dir>/<file>`'s field as a number in *number, or a copy of the string in
 * *text. A file that is missing or does not parse says nothing. */
static kiln_status read_folder_field(const char *dir, const char *file, const char *field, double *number,
                                     char **text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    cJSON *root = NULL;
    if (read_json(path, &root) != KILN_OK) kiln_clear_error();
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    kiln_status st = KILN_OK;
    if (number && cJSON_IsNumber(v)) *number = v->valuedouble;
    if (text && cJSON_IsString(v) && !(*text = strdup(v->valuestring)))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    cJSON_Delete(root);
    return st;
}

static kiln_status add_file(kiln_checkpoint *ck, const char *path, kiln_st_file **out)
{
    if (ck->nfiles == MAX_FILES)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: more than %d safetensors files in one model", path, MAX_FILES);
    TRY(kiln_st_open(path, out));
    ck->files[ck->nfiles++] = *out;
    return KILN_OK;
}

/* A part stored in shards, as transformers saves a large text encoder:
 * `<part>/model.safetensors.index.json` (or pytorch_model.bin.index.json,
 * torch.save's shards) maps each tensor to one of the files beside it; each
 * file is opened once, in the order first named. */
static kiln_status open_shards(kiln_checkpoint *ck, const char *dir, const char *part, kiln_st_file **files,
                               int *nfiles, bool *found)
{
    char path[4096];
    *nfiles = 0;
    struct stat info;
    snprintf(path, sizeof path, "%s/%s/model.safetensors.index.json", dir, part);
    if (!(*found = stat(path, &info) == 0)) {
        snprintf(path, sizeof path, "%s/%s/pytorch_model.bin.index.json", dir, part);
        if (!(*found = stat(path, &info) == 0)) return KILN_OK;
    }
    cJSON *root;
    TRY(read_json(path, &root));
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    kiln_status st = cJSON_IsObject(map) ? KILN_OK : kiln_fail(KILN_ERR_MODEL, "%s: no weight_map in it", path);
    const char *seen[MAX_FILES];
    const cJSON *entry;
    cJSON_ArrayForEach(entry, map)
    {
        if (st != KILN_OK) break;
        const char *file = cJSON_GetStringValue(entry);
        if (!file || strchr(file, '/')) {
            st = kiln_fail(KILN_ERR_MODEL, "%s: '%s' maps to no file beside the index", path, entry->string);
            break;
        }
        bool known = false;
        for (int i = 0; i < *nfiles && !known; i++) known = strcmp(seen[i], file) == 0;
        if (known) continue;
        char shard[4096];
        snprintf(shard, sizeof shard, "%s/%s/%s", dir, part, file);
        seen[*nfiles] = file;
        if ((st = add_file(ck, shard, &files[*nfiles])) == KILN_OK) ++*nfiles;
    }
    cJSON_Delete(root);
    return st;
}

/* The weights file of a diffusers or transformers model folder: its
 * safetensors file, else the torch.save file saved before safetensors.
 * False when it has none. */
static bool folder_weights(const char *folder, char *path, size_t size)
{
    static const char *const names[] = {"diffusion_pytorch_model.safetensors", "model.safetensors",
                                        "diffusion_pytorch_model.bin", "pytorch_model.bin"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, size, "%s/%s", folder, names[i]);
        struct stat st;
        if (stat(path, &st) == 0) return true;
    }
    return false;
}

static kiln_status open_part(kiln_checkpoint *ck, const char *dir, const char *part, kiln_st_file **out)
{
    char folder[4096], path[4200];
    snprintf(folder, sizeof folder, "%s/%s", dir, part);
    if (folder_weights(folder, path, sizeof path)) return add_file(ck, path, out);
    return kiln_fail(KILN_ERR_MODEL, "%s: diffusers folder has no %s/diffusion_pytorch_model.safetensors or "
                     "%s/model.safetensors (nor their .bin forms)", dir, part, part);
}

/* A part's names under the canonical ones; a text encoder's go under text_root. */
static kiln_status map_part(kiln_checkpoint *ck, const kiln_st_file *f, const char *part, const unet_layout *lay,
                            int vae_levels, const char *text_root)
{
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        char name[512];
        bool ok;
        if (strcmp(part, "unet") == 0)
            ok = map_unet_name(t->name, lay, "model.diffusion_model", name, sizeof name);
        else if (strcmp(part, "vae") == 0)
            ok = map_vae_name(t->name, vae_levels, name, sizeof name);
        else
            ok = snprintf(name, sizeof name, "%s%s", text_root, t->name) < (int)sizeof name;
        if (!ok) continue; /* extra tensors (position_ids, EMA) are tolerated, as in single files */
        TRY(add_name(ck, name, t));
    }
    return KILN_OK;
}

/* Largest i such that some name in f starts with fmt(i). */
static int count_indexed(const kiln_st_file *f, const char *fmt)
{
    int best = -1;
    for (size_t k = 0; k < kiln_st_count(f); k++) {
        int i, n = 0;
        if (sscanf(kiln_st_at(f, k)->name, fmt, &i, &n) == 1 && n && i > best) best = i;
    }
    return best + 1;
}

/* scheduler/scheduler_config.json's prediction_type, and whether it is an
 * EDM scheduler (Playground v2.5's EDMDPMSolverMultistepScheduler), whose
 * sigmas are continuous: a folder that does not say (or whose config does
 * not parse) is left to the checks a single file gets. */
static kiln_status read_scheduler_config(kiln_checkpoint *ck, const char *dir)
{
    static const char *const file = "scheduler/scheduler_config.json";
    TRY(read_folder_field(dir, file, "prediction_type", NULL, &ck->prediction_type));
    char *name = NULL;
    TRY(read_folder_field(dir, file, "_class_name", NULL, &name));
    ck->edm = name && strncmp(name, "EDM", 3) == 0;
    free(name);
    if (!ck->edm) return KILN_OK;
    /* diffusers' defaults where the config leaves them out */
    ck->edm_sigma_min = 0.002, ck->edm_sigma_max = 80.0, ck->edm_sigma_data = 0.5;
    TRY(read_folder_field(dir, file, "sigma_min", &ck->edm_sigma_min, NULL));
    TRY(read_folder_field(dir, file, "sigma_max", &ck->edm_sigma_max, NULL));
    TRY(read_folder_field(dir, file, "sigma_data", &ck->edm_sigma_data, NULL));
    if (!(ck->edm_sigma_min > 0 && ck->edm_sigma_min < ck->edm_sigma_max && ck->edm_sigma_max <= 1000 &&
          ck->edm_sigma_data > 0 && ck->edm_sigma_data < 100))
        return kiln_fail(KILN_ERR_MODEL, "%s/%s: sigma_min %g, sigma_max %g, sigma_data %g: need 0 < sigma_min < "
                         "sigma_max <= 1000 and a sigma_data in (0, 100)", dir, file, ck->edm_sigma_min,
                         ck->edm_sigma_max, ck->edm_sigma_data);
    return KILN_OK;
}

const char *kiln_checkpoint_prediction_type(const kiln_checkpoint *ck) { return ck->prediction_type; }

bool kiln_checkpoint_edm_sigmas(const kiln_checkpoint *ck, double *sigma_min, double *sigma_max, double *sigma_data)
{
    if (!ck->edm) return false;
    *sigma_min = ck->edm_sigma_min, *sigma_max = ck->edm_sigma_max, *sigma_data = ck->edm_sigma_data;
    return true;
}

/* One of vae/config.json's per-channel lists into out (above 0 where
 * positive); *n its length, 0 where it has none. */
static kiln_status read_latent_list(const cJSON *root, const char *path, const char *field, bool positive,
                                    float *out, int *n)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, field), *v;
    *n = 0;
    if (!list || cJSON_IsNull(list)) return KILN_OK;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) > KILN_MAX_LATENT_CHANNELS)
        return kiln_fail(KILN_ERR_MODEL, "%s: %s is not a list of at most %d numbers", path, field,
                         KILN_MAX_LATENT_CHANNELS);
    cJSON_ArrayForEach(v, list) {
        if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) < 1e4) || (positive && !(v->valuedouble > 0)))
            return kiln_fail(KILN_ERR_MODEL, "%s: %s[%d] is not a%s number below 1e4", path, field, *n,
                             positive ? " positive" : "");
        out[(*n)++] = (float)v->valuedouble;
    }
    return KILN_OK;
}

/* vae/config.json's latent format: scaling_factor, shift_factor (Flux's),
 * and the per-channel latents_mean and latents_std (Playground v2.5's). */
static kiln_status read_vae_config(kiln_checkpoint *ck, const char *dir)
{
    double scaling = 0, shift = 0;
    TRY(read_folder_field(dir, "vae/config.json", "scaling_factor", &scaling, NULL));
    if (scaling > 0 && scaling < 10) ck->vae_scaling = scaling;
    TRY(read_folder_field(dir, "vae/config.json", "shift_factor", &shift, NULL));
    if (shift > -10 && shift < 10) ck->vae_shift = shift;
    char path[4096];
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    cJSON *root = NULL;
    if (read_json(path, &root) != KILN_OK) kiln_clear_error();
    int nmean = 0, nstd = 0;
    kiln_status st = read_latent_list(root, path, "latents_mean", false, ck->latents_mean, &nmean);
    if (st == KILN_OK) st = read_latent_list(root, path, "latents_std", true, ck->latents_std, &nstd);
    if (st == KILN_OK && nmean != nstd)
        st = kiln_fail(KILN_ERR_MODEL, "%s: latents_mean has %d numbers, latents_std %d", path, nmean, nstd);
    ck->nlatents = st == KILN_OK ? nmean : 0;
    cJSON_Delete(root);
    return st;
}

int kiln_checkpoint_vae_latents(const kiln_checkpoint *ck, const float **mean, const float **std)
{
    *mean = ck->latents_mean, *std = ck->latents_std;
    return ck->nlatents;
}

/* What a DiT folder's configs say beyond the weights: the latent side the
 * transformer was trained at (which scales its position table), the
 * pipeline (PixArt-alpha or -Sigma) and the VAE's latent scale. */
static kiln_status read_dit_configs(kiln_checkpoint *ck, const char *dir)
{
    double size = 0;
    TRY(read_folder_field(dir, "transformer/config.json", "sample_size", &size, NULL));
    if (size >= 1 && size <= 4096) ck->sample_size = (int)size;
    double head_dim = 0;
    TRY(read_folder_field(dir, "transformer/config.json", "attention_head_dim", &head_dim, NULL));
    if (head_dim >= 1 && head_dim <= 4096) ck->head_dim = (int)head_dim;
    TRY(read_folder_field(dir, "model_index.json", "_class_name", NULL, &ck->pipeline));
    TRY(read_vae_config(ck, dir));
    /* Flux's rotary axes, a list the weights do not show */
    char path[4096];
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    cJSON *root = NULL;
    if (read_json(path, &root) != KILN_OK) kiln_clear_error();
    const cJSON *axes = cJSON_GetObjectItemCaseSensitive(root, "axes_dims_rope");
    if (cJSON_GetArraySize(axes) == 3)
        for (int i = 0; i < 3; i++) {
            const cJSON *a = cJSON_GetArrayItem(axes, i);
            ck->rope_axes[i] = cJSON_IsNumber(a) && a->valuedouble > 0 && a->valuedouble < 4096 ? a->valueint : 0;
        }
    cJSON_Delete(root);
    return KILN_OK;
}

double kiln_checkpoint_vae_shift(const kiln_checkpoint *ck) { return ck->vae_shift; }

const int *kiln_checkpoint_rope_axes(const kiln_checkpoint *ck)
{
    return ck->rope_axes[0] && ck->rope_axes[1] && ck->rope_axes[2] ? ck->rope_axes : NULL;
}

const char *kiln_checkpoint_pipeline(const kiln_checkpoint *ck) { return ck->pipeline; }
double kiln_checkpoint_vae_scaling(const kiln_checkpoint *ck) { return ck->vae_scaling; }

int kiln_checkpoint_sample_size(const kiln_checkpoint *ck) { return ck->sample_size; }
bool kiln_checkpoint_pixart_original(const kiln_checkpoint *ck) { return ck->dit_original == DIT_PIXART; }
bool kiln_checkpoint_dit_original(const kiln_checkpoint *ck) { return ck->dit_original != DIT_NONE; }

int kiln_checkpoint_head_dim(const kiln_checkpoint *ck) { return ck->head_dim; }

/* A folder part whole or in shards, mapped under `root`. */
static kiln_status open_text_part(kiln_checkpoint *ck, const char *dir, const char *part, const char *root)
{
    kiln_st_file *files[MAX_FILES];
    int n = 0;
    bool sharded;
    TRY(open_shards(ck, dir, part, files, &n, &sharded));
    if (!sharded) {
        TRY(open_part(ck, dir, part, &files[0]));
        n = 1;
    }
    unet_layout lay = {0};
    for (int i = 0; i < n; i++) TRY(map_part(ck, files[i], part, &lay, 0, root));
    return KILN_OK;
}

/* T5's tokenizer in a folder's `sub`: its spiece.model, else the
 * tokenizer.json transformers converts it to (the path of spiece.model
 * where neither is there, for the message). */
static void t5_tokenizer_in(const char *dir, const char *sub, char *path, size_t size)
{
    struct stat st;
    snprintf(path, size, "%s/%s/tokenizer.json", dir, sub);
    bool json = stat(path, &st) == 0;
    snprintf(path, size, "%s/%s/spiece.model", dir, sub);
    if (stat(path, &st) != 0 && json) snprintf(path, size, "%s/%s/tokenizer.json", dir, sub);
}

/* A DiT folder as diffusers ships PixArt, Flux and SD3: transformer/ under
 * `transformer.` in diffusers' names, the T5 encoder (PixArt's
 * text_encoder/, Flux's text_encoder_2/, SD3's text_encoder_3/) under
 * `text_encoders.t5xxl.transformer.`, Flux's and SD3's CLIP-L (their
 * text_encoder/) under `text_encoders.clip_l.transformer.` and SD3's bigG
 * (its text_encoder_2/) under `text_encoders.clip_g.transformer.`, where
 * single files that carry them keep them; the VAE as in every folder. */
static kiln_status open_diffusers_dit(kiln_checkpoint *ck, const char *dir)
{
    kiln_st_file *dit, *vae;
    TRY(open_part(ck, dir, "transformer", &dit));
    TRY(open_part(ck, dir, "vae", &vae));
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/text_encoder_3", dir);
    const bool sd3 = stat(path, &st) == 0;
    snprintf(path, sizeof path, "%s/text_encoder_2", dir);
    const bool flux = !sd3 && stat(path, &st) == 0;
    t5_tokenizer_in(dir, sd3 ? "tokenizer_3" : flux ? "tokenizer_2" : "tokenizer", path, sizeof path);
    TRY(kiln_checkpoint_set_tokenizer(ck, path));
    if (sd3) {
        TRY(open_text_part(ck, dir, "text_encoder", KILN_CLIP_L_ROOT "."));
        TRY(open_text_part(ck, dir, "text_encoder_2", KILN_CLIP_G_ROOT "."));
        TRY(open_text_part(ck, dir, "text_encoder_3", KILN_T5_ROOT "."));
    } else if (flux) {
        TRY(open_text_part(ck, dir, "text_encoder", KILN_CLIP_L_ROOT "."));
        TRY(open_text_part(ck, dir, "text_encoder_2", KILN_T5_ROOT "."));
    } else {
        TRY(open_text_part(ck, dir, "text_encoder", KILN_T5_ROOT "."));
    }
    int vae_levels = count_indexed(vae, "decoder.up_blocks.%d.%n");
    unet_layout lay = {0};
    TRY(map_part(ck, dit, "transformer", &lay, vae_levels, KILN_FLUX_ROOT "."));
    TRY(map_part(ck, vae, "vae", &lay, vae_levels, NULL));
    TRY(read_scheduler_config(ck, dir));
    TRY(read_dit_configs(ck, dir));
    return sort_names(ck);
}

/* What the names of a UNet in diffusers' layout need besides themselves:
 * its resnets per block and which up blocks have attentions. */
static void diffusers_unet_layout(const kiln_st_file *unet, unet_layout *lay)
{
    *lay = (unet_layout){.layers_per_block = count_indexed(unet, "down_blocks.0.resnets.%d.%n")};
    for (int i = 0; i < 8; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "up_blocks.%d.attentions.", i);
        for (size_t k = 0; k < kiln_st_count(unet) && !lay->up_has_attention[i]; k++)
            lay->up_has_attention[i] = strncmp(kiln_st_at(unet, k)->name, prefix, strlen(prefix)) == 0;
    }
}

static kiln_status open_diffusers(kiln_checkpoint *ck, const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/transformer", dir);
    if (stat(path, &st) == 0) return open_diffusers_dit(ck, dir);
    kiln_st_file *unet, *vae, *text = NULL, *text2 = NULL;
    TRY(open_part(ck, dir, "unet", &unet));
    TRY(open_part(ck, dir, "vae", &vae));
    snprintf(path, sizeof path, "%s/text_encoder_2", dir);
    if (stat(path, &st) == 0) TRY(open_part(ck, dir, "text_encoder_2", &text2)); /* SDXL's OpenCLIP bigG */
    snprintf(path, sizeof path, "%s/text_encoder", dir);
    if (!text2 || stat(path, &st) == 0) TRY(open_part(ck, dir, "text_encoder", &text)); /* the refiner has none */
    unet_layout lay;
    diffusers_unet_layout(unet, &lay);
    int vae_levels = count_indexed(vae, "decoder.up_blocks.%d.%n");
    TRY(map_part(ck, unet, "unet", &lay, vae_levels, NULL));
    TRY(map_part(ck, vae, "vae", &lay, vae_levels, NULL));
    /* SDXL's towers go where its single files have them: the refiner's bigG is its first */
    if (text)
        TRY(map_part(ck, text, "text_encoder", &lay, vae_levels,
                     text2 ? "conditioner.embedders.0.transformer." : "cond_stage_model.transformer."));
    if (text2)
        TRY(map_part(ck, text2, "text_encoder_2", &lay, vae_levels,
                     text ? "conditioner.embedders.1.transformer." : "conditioner.embedders.0.transformer."));
    TRY(read_scheduler_config(ck, dir));
    TRY(read_vae_config(ck, dir));
    return sort_names(ck);
}

/* ---- SD 2.x single files: OpenCLIP's text tower -> canonical names ------ */

const char *const kiln_open_clip_roots[KILN_OPEN_CLIP_ROOTS][2] = {
    {"cond_stage_model.model.", "cond_stage_model.transformer.text_model."},
    {"conditioner.embedders.1.model.", "conditioner.embedders.1.transformer.text_model."},
    {"conditioner.embedders.0.model.", "conditioner.embedders.0.transformer.text_model."}, /* SDXL refiner */
};

const char *const kiln_open_clip_renames[KILN_OPEN_CLIP_RENAMES][2] = {
    {"ln_1.", "layer_norm1."},   {"ln_2.", "layer_norm2."},           {"mlp.c_fc.", "mlp.fc1."},
    {"mlp.c_proj.", "mlp.fc2."}, {"attn.out_proj.", "self_attn.out_proj."},
};

/* Rows [first, first + rows) of t under `name`, a view without a copy. */
static kiln_status add_rows_view(kiln_checkpoint *ck, const char *name, const kiln_st_tensor *t, int64_t first,
                                 int64_t rows)
{
    kiln_st_tensor *v = malloc(sizeof *v);
    if (!v) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    const size_t row_bytes = t->nbytes / (size_t)t->shape[0];
    *v = *t;
    v->shape[0] = rows;
    v->nbytes = (size_t)rows * row_bytes;
    v->data = (const char *)t->data + (size_t)first * row_bytes;
    kiln_status st = add_name(ck, name, v);
    if (st != KILN_OK) {
        free(v);
        return st;
    }
    ck->names[ck->nnames - 1].view = v;
    v->name = ck->names[ck->nnames - 1].name;
    return KILN_OK;
}

/* pieces[n] = {name, to_row, from_row, rows}. */
static void set_piece(kiln_row_piece *pieces, int *n, const char *name, int64_t to_row, int64_t from_row,
                      int64_t rows)
{
    kiln_row_piece *p = &pieces[(*n)++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->to_row = to_row;
    p->from_row = from_row;
    p->rows = rows;
}

/* A fused projection's rows split in the proportions `units` (q, k and v
 * 1:1:1; Flux's single-block linear1 q:k:v:MLP 1:1:1:4), piece i under
 * `<block><parts[i]>.<kind>`; label names the tensor in errors. */
static kiln_status split_rows(const char *label, int64_t rows, const char *block, const char *const *parts,
                              const int *units, int count, const char *kind, kiln_row_piece *pieces, int *n)
{
    int total = 0;
    for (int i = 0; i < count; i++) total += units[i];
    if (rows % total)
        return kiln_fail(KILN_ERR_MODEL, "'%s' has %lld rows, which do not split %d ways as its fused projections do",
                         label, (long long)rows, count);
    const int64_t unit = rows / total;
    char name[sizeof pieces->name];
    for (int i = 0, first = 0; i < count; first += units[i++]) {
        snprintf(name, sizeof name, "%s%s.%s", block, parts[i], kind);
        set_piece(pieces, n, name, 0, first * unit, units[i] * unit);
    }
    return KILN_OK;
}

/* Each piece of t's rows as a view under its name. */
static kiln_status add_row_views(kiln_checkpoint *ck, const kiln_st_tensor *t, const kiln_row_piece *pieces, int n)
{
    for (int i = 0; i < n; i++) TRY(add_rows_view(ck, pieces[i].name, t, pieces[i].from_row, pieces[i].rows));
    return KILN_OK;
}

/* A fused projection of a file as views of its rows (split_rows'). */
static kiln_status add_row_split(kiln_checkpoint *ck, const kiln_st_tensor *t, const char *block,
                                 const char *const *parts, const int *units, int count, const char *kind)
{
    kiln_row_piece pieces[KILN_MAX_ROW_PIECES];
    int n = 0;
    kiln_status st = split_rows(t->name, t->ndim ? t->shape[0] : 0, block, parts, units, count, kind, pieces, &n);
    if (st != KILN_OK) return kiln_fail_context(st, "%s", ck->path);
    return add_row_views(ck, t, pieces, n);
}

/* One OpenCLIP tensor (name after `from`) under the transformers names (after
 * `to`) the text encoder binds. Others (text_projection, which SDXL reads
 * as it is, and logit_scale) keep their names. */
static kiln_status map_open_clip_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const char *from, const char *to)
{
    const char *in = t->name + strlen(from);
    char name[512];
    int i, n = 0, *n_ = &n;
    if (strcmp(in, "token_embedding.weight") == 0) {
        snprintf(name, sizeof name, "%sembeddings.token_embedding.weight", to);
        return add_name(ck, name, t);
    }
    if (strcmp(in, "positional_embedding") == 0) {
        snprintf(name, sizeof name, "%sembeddings.position_embedding.weight", to);
        return add_name(ck, name, t);
    }
    if (MATCHES(in, "ln_final.%n", 0, &n)) {
        snprintf(name, sizeof name, "%sfinal_layer_norm.%s", to, in + n);
        return add_name(ck, name, t);
    }
    if (!MATCHES(in, "transformer.resblocks.%d.%n", 1, &i, &n)) return add_name(ck, t->name, t);
    const char *rest = in + n, *part;
    if ((part = strncmp(rest, "attn.in_proj_", 13) == 0 ? rest + 13 : NULL)) { /* "weight" or "bias" */
        char block[128];
        if (snprintf(block, sizeof block, "%sencoder.layers.%d.self_attn.", to, i) >= (int)sizeof block)
            return kiln_fail(KILN_ERR_MODEL, "%s: tensor name '%s' is too long", ck->path, t->name);
        static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
        return add_row_split(ck, t, block, qkv, (const int[]){1, 1, 1}, 3, part);
    }
    for (size_t k = 0; k < KILN_OPEN_CLIP_RENAMES; k++) {
        size_t len = strlen(kiln_open_clip_renames[k][0]);
        if (strncmp(rest, kiln_open_clip_renames[k][0], len) != 0) continue;
        snprintf(name, sizeof name, "%sencoder.layers.%d.%s%s", to, i, kiln_open_clip_renames[k][1], rest + len);
        return add_name(ck, name, t);
    }
    return add_name(ck, t->name, t);
}

/* Adds one tensor of a single file under its canonical name(s), or under none
 * where its format carries it spare; `lay` is the file's UNet, for formats
 * that name one as diffusers does. */
typedef kiln_status (*tensor_namer)(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay);

/* The namer for a single file's format, filling *lay where it needs one; NULL
 * for a file read by its own names. */
typedef tensor_namer (*namer_for_file)(const kiln_st_file *f, unet_layout *lay);

/* SD 2.x and SDXL files name an OpenCLIP tower as OpenCLIP does; the rest stays. */
static kiln_status add_open_clip_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    for (size_t r = 0; r < KILN_OPEN_CLIP_ROOTS; r++)
        if (strncmp(t->name, kiln_open_clip_roots[r][0], strlen(kiln_open_clip_roots[r][0])) == 0)
            return map_open_clip_tensor(ck, t, kiln_open_clip_roots[r][0], kiln_open_clip_roots[r][1]);
    return add_name(ck, t->name, t);
}

/* A file with an OpenCLIP tower is mapped; NULL for any other. */
static tensor_namer open_clip_namer(const kiln_st_file *f, unet_layout *lay)
{
    (void)lay;
    for (size_t r = 0; r < KILN_OPEN_CLIP_ROOTS; r++) {
        char probe[128];
        snprintf(probe, sizeof probe, "%stransformer.resblocks.0.ln_1.weight", kiln_open_clip_roots[r][0]);
        if (kiln_st_find(f, probe)) return add_open_clip_file_tensor;
    }
    return NULL;
}

/* ---- Flux single files: Black Forest Labs' names -> diffusers' ------------ */

/* Module names as BFL's flux1-*.safetensors (and ComfyUI's checkpoints,
 * under model.diffusion_model.) have them, and diffusers' under
 * `transformer.`: the whole model, then a double and a single block's. */
static const char *const flux_model_names[][2] = {
    {"time_in.in_layer.", "time_text_embed.timestep_embedder.linear_1."},
    {"time_in.out_layer.", "time_text_embed.timestep_embedder.linear_2."},
    {"vector_in.in_layer.", "time_text_embed.text_embedder.linear_1."},
    {"vector_in.out_layer.", "time_text_embed.text_embedder.linear_2."},
    {"guidance_in.in_layer.", "time_text_embed.guidance_embedder.linear_1."},
    {"guidance_in.out_layer.", "time_text_embed.guidance_embedder.linear_2."},
    {"txt_in.", "context_embedder."},
    {"img_in.", "x_embedder."},
    {"final_layer.linear.", "proj_out."},
    {"distilled_guidance_layer.in_proj.", "distilled_guidance_layer.in_proj."}, /* Chroma's */
    {"distilled_guidance_layer.out_proj.", "distilled_guidance_layer.out_proj."},
};
static const char *const flux_double_names[][2] = {
    {"img_mod.lin.", "norm1.linear."},
    {"txt_mod.lin.", "norm1_context.linear."},
    {"img_attn.norm.query_norm.scale", "attn.norm_q.weight"},
    {"img_attn.norm.key_norm.scale", "attn.norm_k.weight"},
    {"txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"},
    {"txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"},
    {"img_attn.proj.", "attn.to_out.0."},
    {"txt_attn.proj.", "attn.to_add_out."},
    {"img_mlp.0.", "ff.net.0.proj."},
    {"img_mlp.2.", "ff.net.2."},
    {"txt_mlp.0.", "ff_context.net.0.proj."},
    {"txt_mlp.2.", "ff_context.net.2."},
};
static const char *const flux_single_names[][2] = {
    {"modulation.lin.", "norm.linear."},
    {"norm.query_norm.scale", "attn.norm_q.weight"},
    {"norm.key_norm.scale", "attn.norm_k.weight"},
    {"linear2.", "proj_out."},
};

/* `in` renamed by the first entry of `table` it starts with, after `root`. */
static bool rename_by_table(const char *in, const char *const (*table)[2], size_t n, const char *root, char *out,
                            size_t size)
{
    for (size_t k = 0; k < n; k++) {
        size_t len = strlen(table[k][0]);
        if (strncmp(in, table[k][0], len) == 0)
            return snprintf(out, size, "%s%s%s", root, table[k][1], in + len) < (int)size;
    }
    return false;
}

/* Rows of t rearranged into a copy of the checkpoint's own, under `name`:
 * piece i's rows [from_row, + rows) at to_row. BFL's final modulation gives
 * (shift, scale), diffusers' (scale, shift). */
static kiln_status add_rearranged(kiln_checkpoint *ck, const char *name, const kiln_st_tensor *t,
                                  const kiln_row_piece *pieces, int n)
{
    kiln_st_tensor *v = malloc(sizeof *v);
    char *data = malloc(t->nbytes);
    kiln_status st = v && data ? add_name(ck, name, t) : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    if (st != KILN_OK) {
        free(v);
        free(data);
        return st;
    }
    const size_t row_bytes = t->nbytes / (size_t)t->shape[0];
    for (int i = 0; i < n; i++)
        memcpy(data + (size_t)pieces[i].to_row * row_bytes, (const char *)t->data + (size_t)pieces[i].from_row * row_bytes,
               (size_t)pieces[i].rows * row_bytes);
    *v = *t;
    v->data = data;
    named_tensor *slot = &ck->names[ck->nnames - 1];
    v->name = slot->name;
    slot->replaced = v;
    slot->tensor = v;
    return KILN_OK;
}

/* The (shift, scale) halves of a final-norm modulation's rows as diffusers'
 * (scale, shift), under `name`. */
static kiln_status swap_halves(const char *label, int64_t rows, const char *name, kiln_row_piece *pieces, int *n)
{
    if (rows % 2) return kiln_fail(KILN_ERR_MODEL, "'%s' has no two halves of rows (shift, scale)", label);
    set_piece(pieces, n, name, 0, rows / 2, rows / 2);
    set_piece(pieces, n, name, rows / 2, 0, rows / 2);
    return KILN_OK;
}

kiln_status kiln_flux_bfl_rows(const char *bfl, int64_t rows, kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n)
{
    const char *root = KILN_FLUX_ROOT ".";
    char name[sizeof pieces->name], block[64];
    int i, m = 0, *n_ = &m;
    *n = 0;
    if (rename_by_table(bfl, flux_model_names, sizeof flux_model_names / sizeof flux_model_names[0], root, name,
                        sizeof name)) {
        set_piece(pieces, n, name, 0, 0, rows);
    } else if (MATCHES(bfl, "final_layer.adaLN_modulation.1.%n", 0, &m)) {
        snprintf(name, sizeof name, "%snorm_out.linear.%s", root, bfl + m);
        return swap_halves(bfl, rows, name, pieces, n);
    } else if (MATCHES(bfl, "distilled_guidance_layer.norms.%d.scale%n", 1, &i, &m) && !bfl[m]) {
        snprintf(name, sizeof name, "%sdistilled_guidance_layer.norms.%d.weight", root, i);
        set_piece(pieces, n, name, 0, 0, rows);
    } else if (MATCHES(bfl, "distilled_guidance_layer.layers.%d.%n", 1, &i, &m)) {
        static const char *const mlp[][2] = {{"in_layer.", "linear_1."}, {"out_layer.", "linear_2."}};
        snprintf(block, sizeof block, "%sdistilled_guidance_layer.layers.%d.", root, i);
        if (rename_by_table(bfl + m, mlp, 2, block, name, sizeof name)) set_piece(pieces, n, name, 0, 0, rows);
    } else if (MATCHES(bfl, "double_blocks.%d.%n", 1, &i, &m)) {
        const char *rest = bfl + m;
        snprintf(block, sizeof block, "%stransformer_blocks.%d.", root, i);
        static const char *const qkv[2][3] = {{"attn.to_q", "attn.to_k", "attn.to_v"},
                                              {"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"}};
        if (rename_by_table(rest, flux_double_names, sizeof flux_double_names / sizeof flux_double_names[0], block,
                            name, sizeof name))
            set_piece(pieces, n, name, 0, 0, rows);
        else if (strncmp(rest, "img_attn.qkv.", 13) == 0 || strncmp(rest, "txt_attn.qkv.", 13) == 0)
            return split_rows(bfl, rows, block, qkv[rest[0] == 't'], (const int[]){1, 1, 1}, 3, rest + 13, pieces,
                              n);
    } else if (MATCHES(bfl, "single_blocks.%d.%n", 1, &i, &m)) {
        const char *rest = bfl + m;
        snprintf(block, sizeof block, "%ssingle_transformer_blocks.%d.", root, i);
        static const char *const parts[4] = {"attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"};
        if (rename_by_table(rest, flux_single_names, sizeof flux_single_names / sizeof flux_single_names[0], block,
                            name, sizeof name))
            set_piece(pieces, n, name, 0, 0, rows);
        else if (strncmp(rest, "linear1.", 8) == 0) /* q, k, v and the MLP's input, which is 4 heads' widths */
            return split_rows(bfl, rows, block, parts, (const int[]){1, 1, 1, 4}, 4, rest + 8, pieces, n);
    }
    return KILN_OK;
}

kiln_status kiln_flux_xlabs_rows(const char *module, int64_t rows, kiln_row_piece pieces[KILN_MAX_ROW_PIECES],
                                 int *n)
{
    static const char *const doubles[][2] = {{"qkv_lora1", "img_attn.qkv"}, {"qkv_lora2", "txt_attn.qkv"},
                                             {"proj_lora1", "img_attn.proj"}, {"proj_lora2", "txt_attn.proj"}};
    char bfl[128], block[64], kind[32];
    int i, m = 0, *n_ = &m;
    *n = 0;
    if (MATCHES(module, "double_blocks.%d.processor.%31[a-z_0-9]%n", 2, &i, kind, &m) && !module[m]) {
        for (size_t k = 0; k < sizeof doubles / sizeof doubles[0]; k++)
            if (strcmp(kind, doubles[k][0]) == 0) {
                snprintf(bfl, sizeof bfl, "double_blocks.%d.%s.weight", i, doubles[k][1]);
                return kiln_flux_bfl_rows(bfl, rows, pieces, n);
            }
    } else if (MATCHES(module, "single_blocks.%d.processor.%31[a-z_0-9]%n", 2, &i, kind, &m) && !module[m]) {
        if (strcmp(kind, "proj_lora") == 0) {
            snprintf(bfl, sizeof bfl, "single_blocks.%d.linear2.weight", i);
            return kiln_flux_bfl_rows(bfl, rows, pieces, n);
        }
        if (strcmp(kind, "qkv_lora") == 0) { /* q, k and v alone: linear1's rows without the MLP's */
            snprintf(block, sizeof block, "%s.single_transformer_blocks.%d.", KILN_FLUX_ROOT, i);
            static const char *const qkv[3] = {"attn.to_q", "attn.to_k", "attn.to_v"};
            return split_rows(module, rows, block, qkv, (const int[]){1, 1, 1}, 3, "weight", pieces, n);
        }
    }
    return KILN_OK;
}

/* t under the canonical names its pieces give (n >= 1): renamed, as one
 * rearranged copy (a modulation's halves swapped), or as views of its rows. */
static kiln_status add_pieces(kiln_checkpoint *ck, const kiln_st_tensor *t, const kiln_row_piece *pieces, int n)
{
    if (n == 1) return add_name(ck, pieces[0].name, t);
    if (n == 2 && strcmp(pieces[0].name, pieces[1].name) == 0) return add_rearranged(ck, pieces[0].name, t, pieces, n);
    return add_row_views(ck, t, pieces, n);
}

#define COMFY_UNET_PREFIX "model.diffusion_model."

/* The pieces of the tensor named `name` (with or without
 * model.diffusion_model.) of an original DiT file, by the file's layout. */
static kiln_status original_rows(const kiln_checkpoint *ck, const char *name, int64_t rows,
                                 kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n)
{
    const char *in = name;
    if (strncmp(in, COMFY_UNET_PREFIX, strlen(COMFY_UNET_PREFIX)) == 0) in += strlen(COMFY_UNET_PREFIX);
    *n = 0;
    kiln_status st = KILN_OK;
    if (ck->dit_original == DIT_FLUX) st = kiln_flux_bfl_rows(in, rows, pieces, n);
    else if (ck->dit_original == DIT_SD3) st = kiln_sd3_mmdit_rows(in, rows, ck->joint_blocks, pieces, n);
    else if (ck->dit_original == DIT_PIXART) st = kiln_pixart_original_rows(in, rows, pieces, n);
    return st == KILN_OK ? KILN_OK : kiln_fail_context(st, "%s", ck->path);
}

/* A tensor of a single file in a DiT's original names (ck->dit_original set):
 * under diffusers' names, as itself, as views of its rows or as a
 * rearranged copy; an autoencoder under `vae.` (ComfyUI's Flux and PixArt
 * checkpoints) as the original SD one's; any other (text encoders, which
 * ComfyUI's files keep under kiln's names) as it is. */
static kiln_status add_dit_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t)
{
    char name[512];
    if (strncmp(t->name, "vae.", 4) == 0) {
        snprintf(name, sizeof name, "first_stage_model.%s", t->name + 4);
        return add_name(ck, name, t);
    }
    kiln_row_piece pieces[KILN_MAX_ROW_PIECES];
    int n;
    TRY(original_rows(ck, t->name, t->ndim ? t->shape[0] : 0, pieces, &n));
    return n ? add_pieces(ck, t, pieces, n) : add_name(ck, t->name, t);
}

size_t kiln_checkpoint_original_count(const kiln_checkpoint *ck)
{
    return ck->dit_original != DIT_NONE ? kiln_st_count(ck->files[0]) : 0;
}

kiln_status kiln_checkpoint_original_at(const kiln_checkpoint *ck, size_t i, const kiln_st_tensor **t,
                                        kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n)
{
    *t = kiln_st_at(ck->files[0], i);
    return original_rows(ck, (*t)->name, (*t)->ndim ? (*t)->shape[0] : 0, pieces, n);
}

/* ---- SD3 single files: the MMDiT's names -> diffusers' ----------------- */

/* Module names as Stability's sd3*.safetensors (under model.diffusion_model.,
 * or bare as a transformer alone) have them, and diffusers' under
 * `transformer.`: the whole model, then a joint block's. */
static const char *const sd3_model_names[][2] = {
    {"x_embedder.proj.", "pos_embed.proj."},
    {"t_embedder.mlp.0.", "time_text_embed.timestep_embedder.linear_1."},
    {"t_embedder.mlp.2.", "time_text_embed.timestep_embedder.linear_2."},
    {"y_embedder.mlp.0.", "time_text_embed.text_embedder.linear_1."},
    {"y_embedder.mlp.2.", "time_text_embed.text_embedder.linear_2."},
    {"context_embedder.", "context_embedder."},
    {"final_layer.linear.", "proj_out."},
};
static const char *const sd3_block_names[][2] = {
    {"x_block.adaLN_modulation.1.", "norm1.linear."},
    {"x_block.attn.proj.", "attn.to_out.0."},
    {"context_block.attn.proj.", "attn.to_add_out."},
    {"x_block.attn.ln_q.", "attn.norm_q."},
    {"x_block.attn.ln_k.", "attn.norm_k."},
    {"context_block.attn.ln_q.", "attn.norm_added_q."},
    {"context_block.attn.ln_k.", "attn.norm_added_k."},
    {"x_block.attn2.proj.", "attn2.to_out.0."},
    {"x_block.attn2.ln_q.", "attn2.norm_q."},
    {"x_block.attn2.ln_k.", "attn2.norm_k."},
    {"x_block.mlp.fc1.", "ff.net.0.proj."},
    {"x_block.mlp.fc2.", "ff.net.2."},
    {"context_block.mlp.fc1.", "ff_context.net.0.proj."},
    {"context_block.mlp.fc2.", "ff_context.net.2."},
};

kiln_status kiln_sd3_mmdit_rows(const char *mmdit, int64_t rows, int blocks,
                                kiln_row_piece pieces[KILN_MAX_ROW_PIECES], int *n)
{
    const char *root = KILN_FLUX_ROOT ".";
    char name[sizeof pieces->name], block[64];
    int i, m = 0, *n_ = &m;
    *n = 0;
    if (strcmp(mmdit, "pos_embed") == 0) {
        snprintf(name, sizeof name, "%spos_embed.pos_embed", root);
        set_piece(pieces, n, name, 0, 0, rows);
    } else if (rename_by_table(mmdit, sd3_model_names, sizeof sd3_model_names / sizeof sd3_model_names[0], root,
                               name, sizeof name)) {
        set_piece(pieces, n, name, 0, 0, rows);
    } else if (MATCHES(mmdit, "final_layer.adaLN_modulation.1.%n", 0, &m)) {
        snprintf(name, sizeof name, "%snorm_out.linear.%s", root, mmdit + m);
        return swap_halves(mmdit, rows, name, pieces, n);
    } else if (MATCHES(mmdit, "joint_blocks.%d.%n", 1, &i, &m)) {
        const char *rest = mmdit + m;
        snprintf(block, sizeof block, "%stransformer_blocks.%d.", root, i);
        static const char *const qkv[3][3] = {{"attn.to_q", "attn.to_k", "attn.to_v"},
                                              {"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"},
                                              {"attn2.to_q", "attn2.to_k", "attn2.to_v"}};
        static const char *const fused[3] = {"x_block.attn.qkv.", "context_block.attn.qkv.", "x_block.attn2.qkv."};
        for (int k = 0; k < 3; k++)
            if (strncmp(rest, fused[k], strlen(fused[k])) == 0)
                return split_rows(mmdit, rows, block, qkv[k], (const int[]){1, 1, 1}, 3, rest + strlen(fused[k]),
                                  pieces, n);
        if (strncmp(rest, "context_block.adaLN_modulation.1.", 33) == 0) {
            snprintf(name, sizeof name, "%snorm1_context.linear.%s", block, rest + 33);
            if (i == blocks - 1) return swap_halves(mmdit, rows, name, pieces, n); /* the last: a final norm's */
            set_piece(pieces, n, name, 0, 0, rows);
        } else if (rename_by_table(rest, sd3_block_names, sizeof sd3_block_names / sizeof sd3_block_names[0], block,
                                   name, sizeof name)) {
            set_piece(pieces, n, name, 0, 0, rows);
        }
    }
    return KILN_OK;
}

/* An SD3 single file: the MMDiT (under model.diffusion_model., or bare as
 * a transformer alone) in diffusers' names, as views of its rows where
 * q, k and v are fused and as a rearranged copy where a modulation's halves
 * swap; the text encoders and VAE, which the file keeps under kiln's names
 * already (text_encoders.*, first_stage_model.*), as they are. */
static kiln_status add_sd3_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    ck->dit_original = DIT_SD3;
    ck->joint_blocks = lay->joint_blocks;
    return add_dit_file_tensor(ck, t);
}

/* A Flux single file: BFL's transformer (bare, or under model.diffusion_model.
 * as ComfyUI saves a checkpoint), its VAE under `vae.` in the original
 * autoencoder's names; the text encoders, where ComfyUI's file carries
 * them, are under kiln's names already. */
static kiln_status add_flux_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    ck->dit_original = DIT_FLUX;
    return add_dit_file_tensor(ck, t);
}

/* ---- PixArt single files: the original names -> diffusers' ------------- */

/* PixArt's own repository's names (what ComfyUI's UNETLoader reads), bare or
 * under model.diffusion_model., and diffusers' under `transformer.`: the
 * whole model's, then a block's; whole names or prefixes kept with their
 * ends. y_embedding (the caption learned for dropped prompts, which only
 * training reads) and the pos_embed buffer (whose size ComfyUI reads) keep
 * names of their own. */
static const char *const pixart_model_names[][2] = {
    {"csize_embedder.mlp.0.", "adaln_single.emb.resolution_embedder.linear_1."},
    {"csize_embedder.mlp.2.", "adaln_single.emb.resolution_embedder.linear_2."},
    {"ar_embedder.mlp.0.", "adaln_single.emb.aspect_ratio_embedder.linear_1."},
    {"ar_embedder.mlp.2.", "adaln_single.emb.aspect_ratio_embedder.linear_2."},
    {"x_embedder.proj.", "pos_embed.proj."},
    {"y_embedder.y_embedding", "caption_projection.y_embedding"},
    {"y_embedder.y_proj.fc1.", "caption_projection.linear_1."},
    {"y_embedder.y_proj.fc2.", "caption_projection.linear_2."},
    {"t_embedder.mlp.0.", "adaln_single.emb.timestep_embedder.linear_1."},
    {"t_embedder.mlp.2.", "adaln_single.emb.timestep_embedder.linear_2."},
    {"t_block.1.", "adaln_single.linear."},
    {"final_layer.linear.", "proj_out."},
    {"final_layer.scale_shift_table", "scale_shift_table"},
};
static const char *const pixart_block_names[][2] = {
    {"scale_shift_table", "scale_shift_table"},
    {"attn.proj.", "attn1.to_out.0."},
    {"cross_attn.q_linear.", "attn2.to_q."},
    {"cross_attn.proj.", "attn2.to_out.0."},
    {"mlp.fc1.", "ff.net.0.proj."},
    {"mlp.fc2.", "ff.net.2."},
};

kiln_status kiln_pixart_original_rows(const char *original, int64_t rows, kiln_row_piece pieces[KILN_MAX_ROW_PIECES],
                                      int *n)
{
    const char *root = KILN_PIXART_ROOT ".";
    char name[sizeof pieces->name], block[64];
    int i, m = 0, *n_ = &m;
    *n = 0;
    if (strcmp(original, "pos_embed") == 0) {
        set_piece(pieces, n, KILN_PIXART_ROOT ".pos_embed.pos_embed", 0, 0, rows);
    } else if (rename_by_table(original, pixart_model_names, sizeof pixart_model_names / sizeof pixart_model_names[0],
                               root, name, sizeof name)) {
        set_piece(pieces, n, name, 0, 0, rows);
    } else if (MATCHES(original, "blocks.%d.%n", 1, &i, &m)) {
        const char *rest = original + m;
        snprintf(block, sizeof block, "%stransformer_blocks.%d.", root, i);
        static const char *const self[3] = {"attn1.to_q", "attn1.to_k", "attn1.to_v"};
        static const char *const cross[2] = {"attn2.to_k", "attn2.to_v"};
        if (strncmp(rest, "attn.qkv.", 9) == 0)
            return split_rows(original, rows, block, self, (const int[]){1, 1, 1}, 3, rest + 9, pieces, n);
        if (strncmp(rest, "cross_attn.kv_linear.", 21) == 0)
            return split_rows(original, rows, block, cross, (const int[]){1, 1}, 2, rest + 21, pieces, n);
        if (rename_by_table(rest, pixart_block_names, sizeof pixart_block_names / sizeof pixart_block_names[0], block,
                            name, sizeof name))
            set_piece(pieces, n, name, 0, 0, rows);
    }
    return KILN_OK;
}

static kiln_status add_pixart_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    ck->dit_original = DIT_PIXART;
    return add_dit_file_tensor(ck, t);
}

/* An SD, SD 2.x or SDXL UNet alone in the original names without
 * model.diffusion_model. (ComfyUI-GGUF's SD files, as its UNETLoader reads
 * them): under that prefix, where a whole checkpoint has it. */
static kiln_status add_sd_unet_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    char name[512];
    if (snprintf(name, sizeof name, COMFY_UNET_PREFIX "%s", t->name) >= (int)sizeof name)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor name '%s' is too long", ck->path, t->name);
    return add_name(ck, name, t);
}

/* An SD UNet alone in diffusers' names (a folder's unet/ file, which
 * UNETLoader reads too): under the original ones, as a folder's is. */
static kiln_status add_diffusers_unet_file_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    char name[512];
    return map_unet_name(t->name, lay, "model.diffusion_model", name, sizeof name) ? add_name(ck, name, t) : KILN_OK;
}

/* The namer of kiln_checkpoint_open: a Flux file's, a lone SD UNet's (in
 * either layout) or an OpenCLIP tower's; any other file is read through its
 * own index, in its own order. */
static tensor_namer checkpoint_namer(const kiln_st_file *f, unet_layout *lay)
{
    if (kiln_st_find(f, "double_blocks.0.img_attn.qkv.weight") ||
        kiln_st_find(f, COMFY_UNET_PREFIX "double_blocks.0.img_attn.qkv.weight"))
        return add_flux_file_tensor;
    const bool comfy_sd3 = kiln_st_find(f, COMFY_UNET_PREFIX "joint_blocks.0.x_block.attn.qkv.weight") != NULL;
    if (comfy_sd3 || kiln_st_find(f, "joint_blocks.0.x_block.attn.qkv.weight")) {
        lay->joint_blocks = count_indexed(f, comfy_sd3 ? COMFY_UNET_PREFIX "joint_blocks.%d.%n" : "joint_blocks.%d.%n");
        return add_sd3_file_tensor;
    }
    if (kiln_st_find(f, "t_block.1.weight") || kiln_st_find(f, COMFY_UNET_PREFIX "t_block.1.weight"))
        return add_pixart_file_tensor;
    if (kiln_st_find(f, "input_blocks.0.0.weight") && kiln_st_find(f, "out.2.weight")) return add_sd_unet_file_tensor;
    if (kiln_st_find(f, "down_blocks.0.resnets.0.conv1.weight") && kiln_st_find(f, "time_embedding.linear_1.weight") &&
        !kiln_st_find(f, "controlnet_cond_embedding.conv_in.weight")) { /* a ControlNet's encoder is named alike */
        diffusers_unet_layout(f, lay);
        return add_diffusers_unet_file_tensor;
    }
    return open_clip_namer(f, lay);
}

static bool is_float(kiln_dtype d)
{
    return d == KILN_F32 || d == KILN_F16 || d == KILN_BF16 || d == KILN_F8_E4M3 || d == KILN_F8_E5M2;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Forgets the tensors whose names start with `prefix` and end with
 * `suffix` (either may be ""): what a part given beside the checkpoint
 * replaces (the file keeps them, unread), or what was folded into others. */
static void drop_names(kiln_checkpoint *ck, const char *prefix, const char *suffix)
{
    size_t kept = 0, len = strlen(prefix);
    for (size_t i = 0; i < ck->nnames; i++) {
        named_tensor *n = &ck->names[i];
        if (strncmp(n->name, prefix, len) != 0 || !ends_with(n->name, suffix)) {
            ck->names[kept++] = *n;
            continue;
        }
        free(n->name);
        free_replaced(n->replaced);
        free(n->view);
    }
    ck->nnames = kept;
}

/* ComfyUI's "scaled fp8" files (t5xxl_fp8_e4m3fn_scaled, fp8 Flux
 * checkpoints) store a linear's weight in fp8 divided by a float32
 * `<layer>.scale_weight`: the weight is read as their product, kept in f16
 * as the checkpoint's own copy; the scales (and `scale_input`s, which kiln's
 * f16/f32 activations do not need) and the `scaled_fp8` marker go. */
static kiln_status dequantize_scaled_fp8(kiln_checkpoint *ck)
{
    bool scaled = false;
    for (size_t i = 0; i < kiln_checkpoint_count(ck) && !scaled; i++) {
        const char *name;
        kiln_checkpoint_at(ck, i, &name);
        scaled = ends_with(name, ".scale_weight");
    }
    if (!scaled) return KILN_OK;
    TRY(index_names(ck));
    for (size_t i = 0; i < ck->nnames; i++) {
        const char *scale_name = ck->names[i].name;
        if (!ends_with(scale_name, ".scale_weight")) continue;
        const kiln_st_tensor *scale = ck->names[i].tensor;
        char name[512];
        snprintf(name, sizeof name, "%.*s.weight", (int)(strlen(scale_name) - strlen(".scale_weight")), scale_name);
        const kiln_st_tensor *w = kiln_checkpoint_find(ck, name);
        if (!w || kiln_st_numel(scale) != 1 || !is_float(scale->dtype) || !is_float(w->dtype))
            return kiln_fail(KILN_ERR_MODEL, "%s: '%s' scales no float weight '%s'", ck->path, scale_name, name);
        const float s = kiln_load_f32(scale->data, scale->dtype, 0);
        const size_t n = (size_t)kiln_st_numel(w), chunk = 65536;
        uint16_t *half = malloc(n * sizeof *half);
        float *f = malloc(chunk * sizeof *f);
        if (!half || !f) {
            free(half);
            free(f);
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory for '%s'", ck->path, name);
        }
        const size_t elem = kiln_dtype_size(w->dtype);
        for (size_t at = 0; at < n; at += chunk) {
            size_t m = n - at < chunk ? n - at : chunk;
            kiln_convert_to_f32(f, (const char *)w->data + at * elem, w->dtype, m);
            for (size_t j = 0; j < m; j++) f[j] *= s;
            kiln_convert_from_f32(half + at, f, KILN_F16, m);
        }
        free(f);
        TRY(kiln_checkpoint_replace(ck, name, KILN_F16, half));
    }
    drop_names(ck, "", ".scale_weight");
    drop_names(ck, "", ".scale_input");
    drop_names(ck, "", "scaled_fp8");
    return KILN_OK;
}

static kiln_status checkpoint_new(const char *label, kiln_checkpoint **out)
{
    kiln_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->path = strdup(label))) {
        free(ck);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    }
    *out = ck;
    return KILN_OK;
}

kiln_status kiln_checkpoint_open_memory(const void *data, size_t size, const char *label, kiln_checkpoint **out)
{
    kiln_checkpoint *ck = NULL;
    TRY(checkpoint_new(label, &ck));
    kiln_status status = kiln_st_open_memory(data, size, label, &ck->files[0]);
    if (status != KILN_OK) {
        kiln_checkpoint_close(ck);
        return status;
    }
    ck->nfiles = 1;
    *out = ck;
    return KILN_OK;
}

/* Opens the safetensors file at `path`: under the names its format's namer
 * gives, sorted for lookups, or under its own where namer_for finds none. */
static kiln_status open_single_file(const char *path, namer_for_file namer_for, kiln_checkpoint **out)
{
    kiln_checkpoint *ck = NULL;
    TRY(checkpoint_new(path, &ck));
    kiln_status status = kiln_st_open(path, &ck->files[0]);
    if (status == KILN_OK) ck->nfiles = 1;
    unet_layout lay = {0};
    tensor_namer add = status == KILN_OK ? namer_for(ck->files[0], &lay) : NULL;
    if (add) {
        for (size_t i = 0; status == KILN_OK && i < kiln_st_count(ck->files[0]); i++)
            status = add(ck, kiln_st_at(ck->files[0], i), &lay);
        if (status == KILN_OK) status = sort_names(ck);
    }
    if (status != KILN_OK) {
        kiln_checkpoint_close(ck);
        return status;
    }
    *out = ck;
    return KILN_OK;
}

/* A diffusers folder, or a single file through namer_for. */
static kiln_status open_file_or_folder(const char *path, namer_for_file namer_for, kiln_checkpoint **out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return kiln_fail(KILN_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return open_single_file(path, namer_for, out);
    kiln_checkpoint *ck = NULL;
    TRY(checkpoint_new(path, &ck));
    kiln_status status = open_diffusers(ck, path);
    if (status != KILN_OK) {
        kiln_checkpoint_close(ck);
        return status;
    }
    *out = ck;
    return KILN_OK;
}

kiln_status kiln_checkpoint_open(const char *path, kiln_checkpoint **out)
{
    TRY(open_file_or_folder(path, checkpoint_namer, out));
    kiln_status st = dequantize_scaled_fp8(*out);
    if (st != KILN_OK) {
        kiln_checkpoint_close(*out);
        *out = NULL;
    }
    return st;
}

/* ---- Parts beside a checkpoint: a VAE, text encoders, T5's tokenizer ----- */

kiln_status kiln_checkpoint_set_tokenizer(kiln_checkpoint *ck, const char *path)
{
    char *copy = strdup(path);
    if (!copy) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory");
    free(ck->tokenizer);
    ck->tokenizer = copy;
    return KILN_OK;
}

const char *kiln_checkpoint_tokenizer(const kiln_checkpoint *ck) { return ck->tokenizer; }

/* A VAE file in any layout ComfyUI's VAELoader reads: diffusers' names, or
 * the original autoencoder's bare (FLUX.1's ae.safetensors), under
 * first_stage_model. or under vae.; under first_stage_model. in place of
 * the checkpoint's own. False when f holds none. */
static kiln_status add_vae_part(kiln_checkpoint *ck, const kiln_st_file *f, bool *found)
{
    unet_layout lay = {0};
    *found = true;
    if (kiln_st_find(f, "decoder.mid_block.resnets.0.conv1.weight")) {
        drop_names(ck, "first_stage_model.", "");
        return map_part(ck, f, "vae", &lay, count_indexed(f, "decoder.up_blocks.%d.%n"), NULL);
    }
    static const char *const prefixes[] = {"", "first_stage_model.", "vae."};
    for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
        char probe[64];
        snprintf(probe, sizeof probe, "%sdecoder.mid.block_1.conv1.weight", prefixes[p]);
        if (!kiln_st_find(f, probe)) continue;
        drop_names(ck, "first_stage_model.", "");
        const size_t len = strlen(prefixes[p]);
        for (size_t i = 0; i < kiln_st_count(f); i++) {
            const kiln_st_tensor *t = kiln_st_at(f, i);
            static const char *const halves[] = {"encoder.", "decoder.", "quant_conv.", "post_quant_conv."};
            const char *in = t->name + len;
            bool ours = strncmp(t->name, prefixes[p], len) == 0 && strlen(t->name) > len;
            for (size_t h = 0; ours && h < sizeof halves / sizeof halves[0]; h++)
                if (strncmp(in, halves[h], strlen(halves[h])) == 0) {
                    char name[512];
                    snprintf(name, sizeof name, "first_stage_model.%s", in);
                    TRY(add_name(ck, name, t));
                }
        }
        return KILN_OK;
    }
    *found = false;
    return KILN_OK;
}

/* The width of what an SD UNet's cross-attentions read (0 when none). */
static int64_t unet_context_width(const kiln_checkpoint *ck)
{
    for (size_t i = 0; i < kiln_checkpoint_count(ck); i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        if (strncmp(name, COMFY_UNET_PREFIX, strlen(COMFY_UNET_PREFIX)) == 0 && ends_with(name, ".attn2.to_k.weight"))
            return t->ndim == 2 ? t->shape[1] : 0;
    }
    return 0;
}

/* Where an SD UNet's family reads CLIP tower file f, as the original
 * checkpoints keep it (in transformers' names): SD 1.x's and 2.x's one
 * tower; the SDXL refiner's bigG, as wide as its context and with its
 * projection; SDXL's CLIP-L and bigG, whose widths make up its context: the
 * narrower is CLIP-L (768 to bigG's 1280), and where they are as wide, the
 * one with a projection is bigG. NULL for a tower of no width the UNet
 * reads. */
static const char *sd_clip_root(const kiln_checkpoint *ck, const kiln_st_file *f)
{
    if (!kiln_checkpoint_find(ck, COMFY_UNET_PREFIX "label_emb.0.0.weight")) return "cond_stage_model.transformer.";
    const kiln_st_tensor *tokens = kiln_st_find(f, "text_model.embeddings.token_embedding.weight");
    const int64_t width = tokens && tokens->ndim == 2 ? tokens->shape[1] : 0, context = unet_context_width(ck);
    if (width <= 0 || width > context) return NULL;
    const bool projection = kiln_st_find(f, "text_projection.weight") != NULL;
    if (width == context) return projection ? "conditioner.embedders.0.transformer." : NULL; /* the refiner's */
    const int64_t other = context - width;
    const bool big_g = width > other || (width == other && projection);
    return big_g ? "conditioner.embedders.1.transformer." : "conditioner.embedders.0.transformer.";
}

/* A text encoder file as transformers saves it (ComfyUI's clip_l.safetensors,
 * clip_g.safetensors, t5xxl_fp16.safetensors) under the root where the
 * model reads it: a T5 for PixArt and Flux, a CLIP for Flux and for an SD
 * UNet (its family's tower of that width). */
static kiln_status add_text_encoder_part(kiln_checkpoint *ck, const kiln_st_file *f, const char *path, bool *found)
{
    const bool dit = kiln_checkpoint_has_prefix(ck, KILN_FLUX_ROOT ".");
    const bool flux = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".single_transformer_blocks.0.norm.linear.weight");
    const bool sd3 = kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".pos_embed.proj.weight") &&
                     kiln_checkpoint_find(ck, KILN_FLUX_ROOT ".context_embedder.weight");
    const kiln_st_tensor *tokens = kiln_st_find(f, "text_model.embeddings.token_embedding.weight");
    const char *root;
    if (kiln_st_find(f, "encoder.block.0.layer.0.SelfAttention.q.weight")) {
        if (!dit)
            return kiln_fail(KILN_ERR_MODEL, "%s: a T5 encoder, which PixArt, Flux and SD3 models read; %s is none",
                             path, ck->path);
        root = KILN_T5_ROOT ".";
        /* a GGUF file from llama.cpp's converter carries its tokenizer: the one read where no other is given */
        const char *vocab = kiln_st_metadata(f, "tokenizer.ggml.model");
        if (!ck->tokenizer && vocab && strcmp(vocab, "t5") == 0) TRY(kiln_checkpoint_set_tokenizer(ck, path));
    } else if (kiln_st_find(f, "text_model.encoder.layers.0.self_attn.q_proj.weight") && flux) {
        root = KILN_CLIP_L_ROOT ".";
    } else if (kiln_st_find(f, "text_model.encoder.layers.0.self_attn.q_proj.weight") && sd3) {
        /* bigG is the wider (1280 to CLIP-L's 768); of two as wide, the second given */
        const bool wide = tokens && tokens->ndim == 2 && tokens->shape[1] > 768;
        root = wide || ck->clip_l_given ? KILN_CLIP_G_ROOT "." : KILN_CLIP_L_ROOT ".";
        ck->clip_l_given |= !wide;
    } else if (kiln_st_find(f, "text_model.encoder.layers.0.self_attn.q_proj.weight")) {
        if (dit || !kiln_checkpoint_has_prefix(ck, COMFY_UNET_PREFIX))
            return kiln_fail(KILN_ERR_MODEL, "%s: a CLIP text encoder; kiln reads one beside a Flux or SD3 "
                             "transformer or an SD UNet, and %s is none", path, ck->path);
        if (!(root = sd_clip_root(ck, f)))
            return kiln_fail(KILN_ERR_MODEL, "%s: a CLIP text encoder of a width %s's SDXL UNet does not read "
                             "(its context is %lld wide: CLIP-L's and bigG's, 768 + 1280, or the refiner's bigG "
                             "alone)", path, ck->path, (long long)unet_context_width(ck));
    } else {
        *found = false;
        return KILN_OK;
    }
    *found = true;
    drop_names(ck, root, "");
    unet_layout lay = {0};
    return map_part(ck, f, "text_encoder", &lay, 0, root);
}

/* One file given beside the checkpoint, told apart by its tensors' names. */
static kiln_status add_part_file(kiln_checkpoint *ck, const char *path, bool vae)
{
    kiln_st_file *f;
    TRY(add_file(ck, path, &f));
    bool found;
    if (vae) {
        TRY(add_vae_part(ck, f, &found));
        if (!found)
            return kiln_fail(KILN_ERR_MODEL, "%s: no VAE in it (no decoder.mid.block_1 or decoder.mid_block, bare "
                             "or under first_stage_model. or vae.)", path);
    } else {
        TRY(add_text_encoder_part(ck, f, path, &found));
        if (!found)
            return kiln_fail(KILN_ERR_MODEL, "%s: neither a CLIP text encoder (text_model.encoder.*) nor a T5 "
                             "encoder (encoder.block.*)", path);
    }
    TRY(sort_names(ck)); /* the next part looks names up */
    return dequantize_scaled_fp8(ck);
}

kiln_status kiln_checkpoint_add_parts(kiln_checkpoint *ck, const kiln_model_parts *parts)
{
    if (!parts) return KILN_OK;
    TRY(index_names(ck));
    if (parts->config) {
        struct stat st;
        if (stat(parts->config, &st) != 0 || !S_ISDIR(st.st_mode))
            return kiln_fail(KILN_ERR_IO, "%s: not a diffusers folder", parts->config);
        TRY(read_dit_configs(ck, parts->config));
        static const char *const tokenizers[] = {"tokenizer_3", "tokenizer_2", "tokenizer"};
        for (size_t i = 0; i < 3 && !ck->tokenizer; i++) {
            char path[4096];
            t5_tokenizer_in(parts->config, tokenizers[i], path, sizeof path);
            if (stat(path, &st) == 0) TRY(kiln_checkpoint_set_tokenizer(ck, path));
        }
    }
    if (parts->vae) TRY(add_part_file(ck, parts->vae, true));
    for (int i = 0; i < KILN_MAX_TEXT_ENCODER_PARTS; i++)
        if (parts->text_encoders[i]) TRY(add_part_file(ck, parts->text_encoders[i], false));
    if (parts->tokenizer) TRY(kiln_checkpoint_set_tokenizer(ck, parts->tokenizer));
    if (parts->weight_dtype && !kiln_weight_dtype_from_name(parts->weight_dtype, &ck->convert_linears,
                                                            &ck->linear_dtype))
        return kiln_fail(KILN_ERR_INVALID_ARG, "weight_dtype '%s': kiln takes " KILN_WEIGHT_DTYPES,
                         parts->weight_dtype);
    if (parts->nmerges < 0 || parts->nmerges > KILN_MAX_MERGES || (parts->nmerges && !parts->merges))
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_model_parts: %d merges (at most %d)", parts->nmerges,
                         KILN_MAX_MERGES);
    for (int i = 0; i < parts->nmerges; i++) {
        int merged;
        TRY(kiln_checkpoint_merge(ck, &parts->merges[i], &merged));
    }
    int scaled;
    if (parts->self_attention) TRY(kiln_checkpoint_multiply_attention(ck, "attn1", parts->self_attention, &scaled));
    if (parts->cross_attention) TRY(kiln_checkpoint_multiply_attention(ck, "attn2", parts->cross_attention, &scaled));
    if (parts->clip_attention) TRY(kiln_checkpoint_multiply_attention(ck, "self_attn", parts->clip_attention, &scaled));
    return KILN_OK;
}

bool kiln_weight_dtype_from_name(const char *name, bool *convert, kiln_dtype *dtype)
{
    static const struct { const char *name; kiln_dtype dtype; } names[] = {
        {"fp8_e4m3fn", KILN_F8_E4M3}, {"fp8_e4m3fn_fast", KILN_F8_E4M3}, {"fp8_e5m2", KILN_F8_E5M2},
        {"q8_0", KILN_Q8_0}, {"q5_1", KILN_Q5_1}, {"q5_0", KILN_Q5_0}, {"q4_1", KILN_Q4_1}, {"q4_0", KILN_Q4_0},
    };
    *convert = false;
    if (strcmp(name, "default") == 0) return true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) {
            *convert = true;
            *dtype = names[i].dtype;
            return true;
        }
    return false;
}

bool kiln_checkpoint_linear_dtype(const kiln_checkpoint *ck, kiln_dtype *dtype)
{
    *dtype = ck->linear_dtype;
    return ck->convert_linears;
}

/* ---- IP-Adapter files ---------------------------------------------------- */

static kiln_status add_ip_adapter_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    const size_t len = strlen(t->name), suffix = strlen(".to_kv.weight");
    if (len <= suffix || strcmp(t->name + len - suffix, ".to_kv.weight") != 0) return add_name(ck, t->name, t);
    char block[128];
    if (snprintf(block, sizeof block, "%.*s.", (int)(len - suffix), t->name) >= (int)sizeof block)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor name '%s' is too long", ck->path, t->name);
    static const char *const kv[2] = {"to_k", "to_v"};
    return add_row_split(ck, t, block, kv, (const int[]){1, 1}, 2, "weight");
}

/* Every IP-Adapter file is mapped: a Plus file's fused to_kv can sit under any attention. */
static tensor_namer ip_adapter_namer(const kiln_st_file *f, unet_layout *lay)
{
    (void)f;
    (void)lay;
    return add_ip_adapter_tensor;
}

kiln_status kiln_checkpoint_open_ip_adapter(const char *path, kiln_checkpoint **out)
{
    return open_single_file(path, ip_adapter_namer, out);
}

/* ---- ControlNet files ---------------------------------------------------- */

/* ControlNetModel names -> `control_model.*`: the hint encoder, the zero
 * convolutions, and the encoder as the UNet's. */
static bool map_controlnet_name(const char *in, const unet_layout *lay, char *out, size_t size)
{
    int i, n = 0, *n_ = &n;
    if (MATCHES(in, "controlnet_cond_embedding.conv_in.%n", 0, &n))
        return snprintf(out, size, "control_model.input_hint_block.0.%s", in + n) < (int)size;
    if (MATCHES(in, "controlnet_cond_embedding.blocks.%d.%n", 1, &i, &n))
        return snprintf(out, size, "control_model.input_hint_block.%d.%s", 2 + 2 * i, in + n) < (int)size;
    if (MATCHES(in, "controlnet_cond_embedding.conv_out.%n", 0, &n))
        return snprintf(out, size, "control_model.input_hint_block.14.%s", in + n) < (int)size;
    if (MATCHES(in, "controlnet_down_blocks.%d.%n", 1, &i, &n))
        return snprintf(out, size, "control_model.zero_convs.%d.0.%s", i, in + n) < (int)size;
    if (MATCHES(in, "controlnet_mid_block.%n", 0, &n))
        return snprintf(out, size, "control_model.middle_block_out.0.%s", in + n) < (int)size;
    return map_unet_name(in, lay, "control_model", out, size);
}

/* Names with no counterpart are left out, as map_unet_name's are from a diffusers folder. */
static kiln_status add_controlnet_diffusers_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t,
                                                   const unet_layout *lay)
{
    char name[512];
    return map_controlnet_name(t->name, lay, name, sizeof name) ? add_name(ck, name, t) : KILN_OK;
}

static kiln_status add_controlnet_unprefixed_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t,
                                                    const unet_layout *lay)
{
    (void)lay;
    char name[512];
    return snprintf(name, sizeof name, "control_model.%s", t->name) < (int)sizeof name ? add_name(ck, name, t)
                                                                                        : KILN_OK;
}

/* An SD 3.5 ControlNet of Stability's kind: its blocks, a joint block's
 * image side each, under diffusers' names (q, k and v as views of the
 * fused rows); ComfyUI's names of the embeddings as diffusers' too, the
 * rest as they are. */
static kiln_status add_sd35_controlnet_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    static const char *const qkv[3] = {"attn.to_q", "attn.to_k", "attn.to_v"};
    char name[512], block[64], image_side[256];
    int i, m = 0, *n_ = &m;
    if (MATCHES(t->name, "transformer_blocks.%d.%n", 1, &i, &m)) {
        const char *rest = t->name + m;
        snprintf(block, sizeof block, "transformer_blocks.%d.", i);
        if (strncmp(rest, "attn.qkv.", 9) == 0)
            return add_row_split(ck, t, block, qkv, (const int[]){1, 1, 1}, 3, rest + 9);
        snprintf(image_side, sizeof image_side, "x_block.%s", rest);
        if (rename_by_table(image_side, sd3_block_names, sizeof sd3_block_names / sizeof sd3_block_names[0], block,
                            name, sizeof name))
            return add_name(ck, name, t);
    }
    if (rename_by_table(t->name, sd3_model_names, sizeof sd3_model_names / sizeof sd3_model_names[0], "", name,
                        sizeof name))
        return add_name(ck, name, t);
    return add_name(ck, t->name, t);
}

/* diffusers' T2IAdapter names to TencentARC's (t2i_adapter.h): a full
 * adapter's res block k of level i is body.{2i + k}, the level's in_conv the
 * first's; a light adapter's is body.{i}.body.{k}. TencentARC's names under
 * an `adapter` dict (as ComfyUI unwraps it) lose the prefix alone. */
typedef enum { T2I_FULL, T2I_LIGHT, T2I_WRAPPED } t2i_layout;

static kiln_status add_t2i_adapter_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, t2i_layout layout)
{
    const char *in = t->name;
    char name[512];
    int i, k, n = 0, *n_ = &n, len = -1;
    if (layout != T2I_WRAPPED && MATCHES(in, "adapter.body.%d.resnets.%d.%n", 2, &i, &k, &n)) {
        if (layout == T2I_FULL && k > 1)
            return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a T2I-Adapter of more than 2 res blocks a level (%s): kiln "
                             "reads 2, as ComfyUI does", ck->path, in);
        len = layout == T2I_LIGHT ? snprintf(name, sizeof name, "body.%d.body.%d.%s", i, k, in + n)
                                  : snprintf(name, sizeof name, "body.%d.%s", 2 * i + k, in + n);
    } else if (layout == T2I_FULL && MATCHES(in, "adapter.body.%d.%n", 1, &i, &n)) {
        len = snprintf(name, sizeof name, "body.%d.%s", 2 * i, in + n);
    }
    if (len >= (int)sizeof name) return KILN_OK;
    return add_name(ck, len >= 0 ? name : strncmp(in, "adapter.", 8) == 0 ? in + 8 : in, t);
}

static kiln_status add_t2i_full_adapter_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    return add_t2i_adapter_tensor(ck, t, T2I_FULL);
}

static kiln_status add_t2i_light_adapter_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t, const unet_layout *lay)
{
    (void)lay;
    return add_t2i_adapter_tensor(ck, t, T2I_LIGHT);
}

static kiln_status add_t2i_wrapped_adapter_tensor(kiln_checkpoint *ck, const kiln_st_tensor *t,
                                                  const unet_layout *lay)
{
    (void)lay;
    return add_t2i_adapter_tensor(ck, t, T2I_WRAPPED);
}

/* A file that already has `control_model.` names, or is no ControlNet at all
 * (refused by the caller), keeps its names; so does one a checkpoint's
 * OpenCLIP mapping applies to, as kiln_checkpoint_open reads it. */
static tensor_namer controlnet_namer(const kiln_st_file *f, unet_layout *lay)
{
    tensor_namer open_clip = open_clip_namer(f, lay);
    if (open_clip) return open_clip;
    if (kiln_st_find(f, "control_model.input_hint_block.0.weight")) return NULL;
    if (kiln_st_find(f, "double_blocks.0.img_attn.qkv.weight")) return add_flux_file_tensor; /* XLabs' Flux ones */
    if (kiln_st_find(f, "transformer_blocks.0.adaLN_modulation.1.weight")) return add_sd35_controlnet_tensor;
    if (kiln_st_find(f, "adapter.body.0.resnets.0.block1.weight"))
        return kiln_st_find(f, "adapter.body.0.out_conv.weight") ? add_t2i_light_adapter_tensor
                                                                 : add_t2i_full_adapter_tensor;
    if (kiln_st_find(f, "adapter.body.0.block1.weight") || kiln_st_find(f, "adapter.body.0.body.0.block1.weight"))
        return add_t2i_wrapped_adapter_tensor;
    if (!kiln_st_find(f, "controlnet_cond_embedding.conv_in.weight"))
        return kiln_st_find(f, "input_hint_block.0.weight") ? add_controlnet_unprefixed_tensor : NULL;
    lay->layers_per_block = count_indexed(f, "down_blocks.0.resnets.%d.%n");
    return add_controlnet_diffusers_tensor;
}

kiln_status kiln_checkpoint_open_controlnet(const char *path, kiln_checkpoint **out)
{
    /* a diffusers ControlNet folder (ControlNetModel's, FluxControlNetModel's) is its one weights file */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char file[4200];
        if (!folder_weights(path, file, sizeof file))
            return kiln_fail(KILN_ERR_MODEL, "%s: a ControlNet folder without diffusion_pytorch_model.safetensors "
                             "(or .bin)", path);
        return open_single_file(file, controlnet_namer, out);
    }
    return open_file_or_folder(path, controlnet_namer, out);
}

/* ---- replacing tensors (merged LoRA weights) ----------------------------- */

/* A single file is read through its own index until a tensor is replaced;
 * from then on through a sorted table of names, like a mapped layout. */

kiln_status kiln_checkpoint_replace(kiln_checkpoint *ck, const char *name, kiln_dtype dtype, void *data)
{
    kiln_status status = index_names(ck);
    named_tensor key = {.name = (char *)name};
    named_tensor *hit = status == KILN_OK ? bsearch(&key, ck->names, ck->nnames, sizeof key, by_name) : NULL;
    kiln_st_tensor *t = hit ? malloc(sizeof *t) : NULL;
    if (!t) {
        free(data);
        if (status != KILN_OK) return status;
        return hit ? kiln_fail(KILN_ERR_OUT_OF_MEMORY, "checkpoint: out of host memory")
                   : kiln_fail(KILN_ERR_MODEL, "%s: tensor '%s' is missing", ck->path, name);
    }
    *t = *hit->tensor;
    t->dtype = dtype;
    t->data = data;
    t->nbytes = kiln_dtype_bytes(dtype, (size_t)kiln_st_numel(t));
    free_replaced(hit->replaced);
    hit->replaced = t;
    hit->tensor = t;
    return KILN_OK;
}

/* ---- diffusers UNet names for a checkpoint in canonical names ------------ */

bool kiln_checkpoint_unet_name(const kiln_checkpoint *ck, const char *diffusers, char *out, size_t size)
{
    unet_layout lay = {0};
    char name[128];
    /* the first down block's resnets come before its downsampler */
    for (int i = 1; i < 16 && !lay.layers_per_block; i++) {
        snprintf(name, sizeof name, "model.diffusion_model.input_blocks.%d.0.op.weight", i);
        if (kiln_checkpoint_find(ck, name)) lay.layers_per_block = i - 1;
    }
    if (!lay.layers_per_block) return false;
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "model.diffusion_model.output_blocks.%d.1.norm.weight",
                 i * (lay.layers_per_block + 1));
        lay.up_has_attention[i] = kiln_checkpoint_find(ck, name) != NULL;
    }
    return map_unet_name(diffusers, &lay, "model.diffusion_model", out, size);
}
