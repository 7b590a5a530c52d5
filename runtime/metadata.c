#include "metadata.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "inpaint.h"
#include "pipeline.h"
#include "status.h"

/* ComfyUI name -> A1111 label. A1111's samplers (sd_samplers_kdiffusion.py,
 * sd_samplers_timesteps.py, sd_samplers_lcm.py) and schedules
 * (sd_schedulers.py) as of v1.10. ComfyUI's ddim_uniform is A1111's "DDIM"
 * schedule (the same spacing); its ddim sampler is A1111's DDIM sampler. */
static const char *const sampler_labels[][2] = {
    {"euler", "Euler"},
    {"euler_ancestral", "Euler a"},
    {"heun", "Heun"},
    {"dpm_2", "DPM2"},
    {"dpm_2_ancestral", "DPM2 a"},
    {"lms", "LMS"},
    {"dpm_fast", "DPM fast"},
    {"dpm_adaptive", "DPM adaptive"},
    {"dpmpp_2s_ancestral", "DPM++ 2S a"},
    {"dpmpp_sde", "DPM++ SDE"},
    {"dpmpp_2m", "DPM++ 2M"},
    {"dpmpp_2m_sde", "DPM++ 2M SDE"},
    {"dpmpp_2m_sde_heun", "DPM++ 2M SDE Heun"},
    {"dpmpp_3m_sde", "DPM++ 3M SDE"},
    {"ddim", "DDIM"},
    {"ddpm", "DDPM"},
    {"uni_pc", "UniPC"},
    {"lcm", "LCM"},
};

static const char *const scheduler_labels[][2] = {
    {"normal", "Normal"},
    {"karras", "Karras"},
    {"exponential", "Exponential"},
    {"sgm_uniform", "SGM Uniform"},
    {"simple", "Simple"},
    {"ddim_uniform", "DDIM"},
    {"beta", "Beta"},
    {"kl_optimal", "KL Optimal"},
};

static const char *lookup_label(const char *const (*table)[2], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i][0], name) == 0) return table[i][1];
    return name;
}

const char *kiln_metadata_sampler_label(const char *sampler)
{
    return lookup_label(sampler_labels, sizeof sampler_labels / sizeof sampler_labels[0], sampler);
}

const char *kiln_metadata_scheduler_label(const char *scheduler)
{
    return lookup_label(scheduler_labels, sizeof scheduler_labels / sizeof scheduler_labels[0], scheduler);
}

static kiln_status check_run(const kiln_run_info *run)
{
    const char *missing = !run->model ? "model" : !run->prompt ? "prompt" : !run->sampler ? "sampler"
                        : !run->scheduler ? "scheduler" : !run->version ? "version" : NULL;
    if (missing) return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: no %s given", missing);
    if (run->steps < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: steps %d", run->steps);
    if (run->nareas < 0 || run->nareas > 32 || (run->nareas && !run->areas))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d area prompts", run->nareas);
    for (int i = 0; i < run->nareas; i++)
        if (!run->areas[i].prompt || run->areas[i].width < 8 || run->areas[i].height < 8 || run->areas[i].x < 0 ||
            run->areas[i].y < 0)
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: area prompt %d", i + 1);
    if (run->width < 1 || run->height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: size %dx%d", run->width, run->height);
    if (run->batch_size < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: batch size %d", run->batch_size);
    if (run->clip_skip < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: clip skip %d", run->clip_skip);
    if (run->prediction && strcmp(run->prediction, "eps") && strcmp(run->prediction, "v") &&
        strcmp(run->prediction, "lcm") && strcmp(run->prediction, "x0") && strcmp(run->prediction, "img_to_img"))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: prediction '%s'", run->prediction);
    if (run->edm && run->prediction)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: ModelSamplingContinuousEDM and ModelSamplingDiscrete");
    if (run->zsnr && !run->prediction)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: zsnr without the prediction ModelSamplingDiscrete takes");
    if (!isfinite(run->cfg)) return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: cfg %g", run->cfg);
    if (!(run->negative_until >= 0 && run->negative_until < 1))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: negative_until %g", run->negative_until);
    if (!(run->flux_guidance == -1.0 || (run->flux_guidance >= 0 && run->flux_guidance <= 100)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: guidance %g", run->flux_guidance);
    if (run->t5_options && (run->t5_min_padding < 0 || run->t5_min_padding > 10000 || run->t5_min_length < 0 ||
                            run->t5_min_length > 10000))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: T5 min_padding %d, min_length %d", run->t5_min_padding,
                         run->t5_min_length);
    if ((run->mask || run->outpaint) && !run->init_image)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: a mask or outpaint without its image");
    if (run->mask && run->outpaint)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: both a mask and an outpaint");
    if (run->refiner && (run->init_image || run->hires_scale || run->ncontrols || run->nimage_prompts || run->refiner_step < 1 ||
                         run->refiner_step >= run->steps))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: a refiner at step %d of %d", run->refiner_step,
                         run->steps);
    if (run->sigmas && (run->refiner || run->hires_scale || run->denoise != 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: sigmas of one's own with a refiner, hires fix or denoise");
    if (run->hires_scale && (run->init_image || !run->hires_method || run->hires_steps < 1))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: a hires fix needs txt2img, its method and steps");
    if (run->instruct_pix2pix && (!run->init_image || run->mask || run->outpaint))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: InstructPix2Pix takes a picture and no mask");
    if (run->nreferences < 0 || run->nreferences > KILN_RUN_MAX_STYLES || (run->nreferences && !run->references))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d reference pictures", run->nreferences);
    if (run->nstyles < 0 || run->nstyles > KILN_RUN_MAX_STYLES || (run->nstyles && !run->styles))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d Redux models", run->nstyles);
    for (int i = 0; i < run->nstyles; i++)
        if (!run->styles[i].style_model || !run->styles[i].clip_vision || !run->styles[i].image)
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: a Redux model without its file, tower or picture");
    if (run->ncontrols < 0 || (run->ncontrols && !run->controls))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d ControlNets", run->ncontrols);
    for (int i = 0; i < run->ncontrols; i++)
        if (!run->controls[i].path || !run->controls[i].image)
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: a ControlNet without its file or image");
    if (run->differential && (!(run->differential > 0 && run->differential <= 1) || (!run->mask && !run->outpaint)))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: DifferentialDiffusion %g without a mask, or not in "
                         "(0, 1]", run->differential);
    if ((run->prompt_l || run->negative_prompt_l) && !run->sdxl)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: CLIP-L's own text without SDXL's numbers (only "
                         "CLIPTextEncodeSDXL carries it)");
    if (run->nimage_prompts < 0 || (run->nimage_prompts && !run->image_prompts))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d IP-Adapters", run->nimage_prompts);
    if (run->nhypernetworks < 0 || run->nhypernetworks > KILN_MAX_HYPERNETWORKS ||
        (run->nhypernetworks && !run->hypernetworks))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d hypernetworks", run->nhypernetworks);
    for (int i = 0; i < run->nhypernetworks; i++)
        if (!run->hypernetworks[i].path || !isfinite(run->hypernetworks[i].strength))
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: a hypernetwork without its file or strength");
    for (int i = 0; i < run->nimage_prompts; i++) {
        const kiln_run_image_prompt *ip = &run->image_prompts[i];
        if (!ip->adapter || !ip->clip_vision || !ip->image || !isfinite(ip->weight))
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: an IP-Adapter without its CLIP vision model, "
                             "picture or weight");
        if (!(ip->start >= 0 && ip->start <= ip->end && ip->end <= 1))
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: an IP-Adapter from %g to %g of the schedule, not "
                             "0 <= start <= end <= 1", ip->start, ip->end);
        if (ip->nmore_images < 0 || ip->nmore_images > KILN_RUN_MAX_MORE_PICTURES ||
            (ip->nmore_images && !ip->more_images))
            return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: an IP-Adapter with %d more pictures (at most %d)",
                             ip->nmore_images, KILN_RUN_MAX_MORE_PICTURES);
    }
    if (run->nloras < 0 || (run->nloras && !run->loras))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: %d LoRAs without their list", run->nloras);
    for (int i = 0; i < run->nloras; i++)
        if (!run->loras[i].path) return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: LoRA %d has no path", i);
    if (!(run->denoise > 0.0 && run->denoise <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: denoise %g, not in (0, 1]", run->denoise);
    return KILN_OK;
}

/* The file name in a path: ComfyUI's ckpt_name / image inputs. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A .gguf file, which ComfyUI lists only in ComfyUI-GGUF's loaders. */
static bool is_gguf(const char *path)
{
    const size_t n = strlen(path);
    return n >= 5 && strcasecmp(path + n - 5, ".gguf") == 0;
}

/* A diffusers folder of an SD 1.x, 2.x or XL model, the kind ComfyUI's
 * DiffusersLoader reads (its unet/; not a DiT's transformer/). */
static bool unet_folder(const kiln_run_info *run)
{
    struct stat st;
    const char *f = run->family ? run->family : "";
    return stat(run->model, &st) == 0 && S_ISDIR(st.st_mode) && strncmp(f, "sd", 2) == 0 && strcmp(f, "sd3") != 0;
}

/* ComfyUI's CLIP loader type for a model family's text encoder files. */
static const char *clip_loader_type(const char *family, bool dual)
{
    const char *f = family ? family : "";
    if (dual) return strcmp(f, "sdxl") == 0 ? "sdxl" : strcmp(f, "sd3") == 0 ? "sd3" : "flux";
    return strcmp(f, "pixart") == 0 || strcmp(f, "chroma") == 0 ? f : "stable_diffusion";
}

/* ---- A1111 infotext ------------------------------------------------------ */

/* A growing string; after an allocation failure it stays failed and empty. */
typedef struct text_buf {
    char *data;
    size_t len, cap;
    bool failed;
} text_buf;

static void put_bytes(text_buf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown, b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void put(text_buf *b, const char *s) { put_bytes(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void put_format(text_buf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof small) put_bytes(b, small, (size_t)n);
    else b->failed = true; /* only short numeric fields are formatted */
}

/* A1111's quote(): a value holding ',', ':' or a newline becomes a JSON
 * string (json.dumps with ensure_ascii=False, so UTF-8 passes through). */
static void put_value(text_buf *b, const char *v)
{
    if (!strpbrk(v, ",:\n")) {
        put(b, v);
        return;
    }
    put(b, "\"");
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        switch (*p) {
        case '"': put(b, "\\\""); break;
        case '\\': put(b, "\\\\"); break;
        case '\n': put(b, "\\n"); break;
        case '\r': put(b, "\\r"); break;
        case '\t': put(b, "\\t"); break;
        case '\b': put(b, "\\b"); break;
        case '\f': put(b, "\\f"); break;
        default:
            if (*p < 0x20) put_format(b, "\\u%04x", *p);
            else put_bytes(b, (const char *)p, 1);
        }
    }
    put(b, "\"");
}

/* A number as A1111's UI passes it on: integral values without a fraction
 * ("CFG scale: 7"), others in the shortest form that reads back exactly. */
static void put_number(text_buf *b, double v)
{
    if (v == floor(v) && fabs(v) < 1e15) {
        put_format(b, "%.0f", v);
        return;
    }
    char s[32];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(s, sizeof s, "%.*g", precision, v);
        if (strtod(s, NULL) == v) break;
    }
    put(b, s);
}

/* A path's file name without its extension, malloc'd. */
static char *stem_name(const char *path)
{
    const char *name = base_name(path);
    const char *dot = strrchr(name, '.');
    return strndup(name, dot && dot != name ? (size_t)(dot - name) : strlen(name));
}

/* Python's str.strip() over ASCII: what A1111 does to the finished text. */
static bool is_py_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

kiln_status kiln_metadata_parameters(const kiln_run_info *run, int batch_index, char **out)
{
    *out = NULL;
    TRY(check_run(run));
    if (batch_index < 0 || batch_index >= run->batch_size)
        return kiln_fail(KILN_ERR_INVALID_ARG, "run metadata: batch index %d of a batch of %d", batch_index,
                         run->batch_size);
    /* A1111's Model is the checkpoint's file name without extension. */
    char *model_name = stem_name(run->model);
    if (!model_name) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "run metadata: out of memory");

    text_buf b = {0};
    put(&b, run->prompt);
    for (int i = 0; i < run->nloras; i++) {
        const kiln_lora *l = &run->loras[i];
        char *name = stem_name(l->path);
        put(&b, " <lora:");
        put(&b, name ? name : "");
        b.failed |= !name;
        free(name);
        if (l->unet_strength == l->clip_strength) {
            put(&b, ":");
            put_number(&b, l->unet_strength);
        } else {
            put(&b, ":te=");
            put_number(&b, l->clip_strength);
            put(&b, ":unet=");
            put_number(&b, l->unet_strength);
        }
        put(&b, ">");
    }
    if (run->negative_prompt && run->negative_prompt[0]) {
        put(&b, "\nNegative prompt: ");
        put(&b, run->negative_prompt);
    }
    put_format(&b, "\nSteps: %d, Sampler: ", run->steps);
    put_value(&b, kiln_metadata_sampler_label(run->sampler));
    if (run->sigmas) { /* no A1111 schedule type: the noise levels themselves */
        put(&b, ", Sigmas: ");
        put_value(&b, run->sigmas);
    } else {
        put(&b, ", Schedule type: ");
        put_value(&b, kiln_metadata_scheduler_label(run->scheduler));
    }
    put(&b, ", CFG scale: ");
    put_number(&b, run->cfg);
    put_format(&b, ", Seed: %" PRIu64 ", Size: %dx%d, Model: ", run->seed, run->width, run->height);
    put_value(&b, model_name);
    /* A whole batch shares one seed (ComfyUI's noise), so the position is
     * needed to find an image again; A1111 used these fields before v1.0. */
    if (run->batch_size > 1) put_format(&b, ", Batch size: %d, Batch pos: %d", run->batch_size, batch_index);
    if (run->init_image || run->denoise != 1.0 || run->hires_scale) {
        put(&b, ", Denoising strength: ");
        put_number(&b, run->hires_scale ? run->hires_denoise : run->denoise);
    }
    if (run->clip_skip != (run->model_clip_skip ? run->model_clip_skip : 1))
        put_format(&b, ", Clip skip: %d", run->clip_skip);
    if (run->refiner) {
        char *name = stem_name(run->refiner);
        put(&b, ", Refiner: ");
        put_value(&b, name ? name : "");
        put(&b, ", Refiner switch at: ");
        put_number(&b, run->refiner_switch);
        free(name);
    }
    if (run->hires_scale) {
        put(&b, ", Hires upscale: ");
        put_number(&b, run->hires_scale);
        if (run->hires_steps != run->steps) put_format(&b, ", Hires steps: %d", run->hires_steps);
        /* A1111's plain "Latent" is bilinear; its other latent modes name the method */
        if (strcmp(run->hires_method, "bilinear") == 0) put(&b, ", Hires upscaler: Latent");
        else put_format(&b, ", Hires upscaler: Latent (%s)", run->hires_method);
    }
    for (int i = 0; i < run->ncontrols; i++) { /* the ControlNet extension's units */
        const kiln_run_control *c = &run->controls[i];
        char *name = stem_name(c->path);
        text_buf unit = {0};
        put(&unit, "Module: none, Model: ");
        put(&unit, name ? name : "");
        put(&unit, ", Weight: ");
        put_number(&unit, c->strength);
        put(&unit, ", Resize Mode: Crop and Resize, Guidance Start: ");
        put_number(&unit, c->start);
        put(&unit, ", Guidance End: ");
        put_number(&unit, c->end);
        put_format(&b, ", ControlNet %d: ", i);
        put_value(&b, unit.data ? unit.data : "");
        b.failed |= !name || unit.failed;
        free(name);
        free(unit.data);
    }
    if (run->upscale_model) {
        char *name = stem_name(run->upscale_model);
        put_format(&b, ", Postprocess upscale by: %d, Postprocess upscaler: ", run->upscale_by);
        put_value(&b, name ? name : "");
        b.failed |= !name;
        free(name);
    }
    put(&b, ", RNG: CPU, Version: ");
    char version[128];
    snprintf(version, sizeof version, "kiln %s", run->version);
    put_value(&b, version);
    free(model_name);

    if (b.failed) {
        free(b.data);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "run metadata: out of memory");
    }
    size_t start = 0, end = b.len;
    while (start < end && is_py_space(b.data[start])) start++;
    while (end > start && is_py_space(b.data[end - 1])) end--;
    memmove(b.data, b.data + start, end - start);
    b.data[end - start] = '\0';
    *out = b.data;
    return KILN_OK;
}

/* ---- ComfyUI prompt ------------------------------------------------------ */

/* Builds into a cJSON tree; any failed allocation makes `failed` true. */
typedef struct graph {
    cJSON *root;
    bool failed;
} graph;

static cJSON *check(graph *g, cJSON *item)
{
    if (!item) g->failed = true;
    return item;
}

/* Adds node `id` of `class_type` and returns its "inputs" object. */
static cJSON *add_node(graph *g, const char *id, const char *class_type)
{
    cJSON *node = check(g, cJSON_AddObjectToObject(g->root, id));
    check(g, cJSON_AddStringToObject(node, "class_type", class_type));
    return check(g, cJSON_AddObjectToObject(node, "inputs"));
}

static void add_link(graph *g, cJSON *inputs, const char *name, const char *node_id, int output)
{
    cJSON *link = check(g, cJSON_AddArrayToObject(inputs, name));
    if (link && !cJSON_AddItemToArray(link, check(g, cJSON_CreateString(node_id)))) g->failed = true;
    if (link && !cJSON_AddItemToArray(link, check(g, cJSON_CreateNumber(output)))) g->failed = true;
}

static void add_string(graph *g, cJSON *inputs, const char *name, const char *value)
{
    check(g, cJSON_AddStringToObject(inputs, name, value));
}

static void add_number(graph *g, cJSON *inputs, const char *name, double value)
{
    check(g, cJSON_AddNumberToObject(inputs, name, value));
}

static void add_bool(graph *g, cJSON *inputs, const char *name, bool value)
{
    check(g, cJSON_AddBoolToObject(inputs, name, value));
}

/* The nodes of Apply ControlNet i: its ControlNetLoader (part 0), LoadImage
 * (1), ControlNetApplyAdvanced (2) and SetUnionControlNetType (3); the
 * first as "40" to "43", the ones chained after it from "120" on (their
 * SetUnionControlNetType from "190" on). */
static void control_node_id(int i, int part, char id[16])
{
    if (part == 3)
        snprintf(id, 16, "%d", i ? 190 + i - 1 : 43);
    else
        snprintf(id, 16, "%d", i ? 120 + 3 * (i - 1) + part : 40 + part);
}

/* The nodes of Redux i: its StyleModelLoader (part 0), CLIPVisionLoader
 * (1), LoadImage (2), CLIPVisionEncode (3) and StyleModelApply (4), from
 * "200" on. */
static void style_node_id(int i, int part, char id[16])
{
    snprintf(id, 16, "%d", 200 + 5 * i + part);
}

/* The nodes of reference picture i: its LoadImage (part 0), VAEEncode (1)
 * and ReferenceLatent (2), from "240" on. */
static void reference_node_id(int i, int part, char id[16])
{
    snprintf(id, 16, "%d", 240 + 3 * i + part);
}

/* The positive text as FluxGuidance takes it: CLIPTextEncode "6", then
 * through the ReferenceLatent chain and FluxKontextMultiReferenceLatentMethod
 * "264". */
static const char *positive_text(const kiln_run_info *run, char id[16])
{
    if (!run->nreferences) return "6";
    if (run->reference_method) return "264";
    reference_node_id(run->nreferences - 1, 2, id);
    return id;
}

/* The positive prompt before its areas: the text, through FluxGuidance
 * "30" where the run set one, then through the StyleModelApply chain. */
static const char *positive_whole(const kiln_run_info *run, char id[16])
{
    if (!run->nstyles) return run->flux_guidance ? "30" : positive_text(run, id);
    style_node_id(run->nstyles - 1, 4, id);
    return id;
}

/* The nodes of area prompt i: CLIPTextEncode (part 0), ConditioningSetArea
 * (1), ConditioningCombine (2), from "300" on. */
static void area_node_id(int i, int part, char id[16])
{
    snprintf(id, 16, "%d", 300 + 3 * i + part);
}

/* The positive prompt as the rest of the graph takes it: positive_whole,
 * then combined with each area prompt. */
static const char *positive_prompt(const kiln_run_info *run, char id[16])
{
    if (!run->nareas) return positive_whole(run, id);
    area_node_id(run->nareas - 1, 2, id);
    return id;
}

/* The area prompts' nodes, each on the CLIP the positive prompt's encoder
 * reads. */
static void add_areas(graph *g, const kiln_run_info *run, const char *clip, int clip_output)
{
    char text[16], area[16], combined[16], before[16];
    for (int i = 0; i < run->nareas; i++) {
        const kiln_run_area *a = &run->areas[i];
        area_node_id(i, 0, text);
        area_node_id(i, 1, area);
        area_node_id(i, 2, combined);
        cJSON *in = add_node(g, text, "CLIPTextEncode");
        add_string(g, in, "text", a->prompt);
        add_link(g, in, "clip", clip, clip_output);
        in = add_node(g, area, "ConditioningSetArea");
        add_number(g, in, "width", a->width);
        add_number(g, in, "height", a->height);
        add_number(g, in, "x", a->x);
        add_number(g, in, "y", a->y);
        add_number(g, in, "strength", a->strength);
        add_link(g, in, "conditioning", text, 0);
        in = add_node(g, combined, "ConditioningCombine");
        if (i) area_node_id(i - 1, 2, before);
        add_link(g, in, "conditioning_1", i ? before : positive_whole(run, before), 0);
        add_link(g, in, "conditioning_2", area, 0);
    }
}

/* The nodes of IPAdapterAdvanced i: its IPAdapterModelLoader (part 0),
 * CLIPVisionLoader (1), the IPAdapterAdvanced (2) and the picture's
 * LoadImage (3); the first as "100" to "103", the ones chained after it from
 * "150" on. */
static void image_prompt_node_id(int i, int part, char id[16])
{
    snprintf(id, 16, "%d", i ? 150 + 4 * (i - 1) + part : 100 + part);
}

/* A KSampler node; `prompts` is the node giving both conditionings (Apply
 * ControlNet's or InstructPixToPixConditioning's outputs 0 and 1), NULL for
 * the text encoders "6" and "7". */
/* The inputs KSampler and KSamplerAdvanced share; the seed's name differs. */
static cJSON *add_sampler_node(graph *g, const char *id, const char *class_type, const char *seed_name,
                               const kiln_run_info *run, int steps)
{
    cJSON *in = add_node(g, id, class_type);
    /* Seeds run to 2^64 - 1; a double would round them. */
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, run->seed);
    check(g, cJSON_AddRawToObject(in, seed_name, seed));
    add_number(g, in, "steps", steps);
    add_number(g, in, "cfg", run->cfg);
    add_string(g, in, "sampler_name", run->sampler);
    add_string(g, in, "scheduler", run->scheduler);
    return in;
}

/* A list of block numbers as SkipLayerGuidance's nodes write one: "7, 8, 9". */
static void layer_list(const int *layers, int count, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, i ? ", %d" : "%d", layers[i]);
}

/* Node "82": SkipLayerGuidanceDiTSimple for the negative rows' kind, else SkipLayerGuidanceSD3 where its inputs
 * say all (an SD3 model's joint blocks, no rescaling), else SkipLayerGuidanceDiT, on `model`. */
static void add_skip_layer_guidance(graph *g, const kiln_run_info *run, const char *model)
{
    const kiln_skip_layer_guidance *slg = run->skip_layer_guidance;
    const bool sd3 = !slg->uncond_only && run->family && strcmp(run->family, "sd3") == 0 && !slg->single_count &&
                     !slg->rescaling_scale;
    char layers[64 * 4];
    cJSON *in = add_node(g, "82", slg->uncond_only ? "SkipLayerGuidanceDiTSimple"
                                  : sd3            ? "SkipLayerGuidanceSD3"
                                                   : "SkipLayerGuidanceDiT");
    layer_list(slg->double_layers, slg->double_count, layers, sizeof layers);
    add_string(g, in, sd3 ? "layers" : "double_layers", layers);
    if (!sd3) {
        layer_list(slg->single_layers, slg->single_count, layers, sizeof layers);
        add_string(g, in, "single_layers", layers);
    }
    if (!sd3 && !slg->uncond_only) add_number(g, in, "rescaling_scale", slg->rescaling_scale);
    if (!slg->uncond_only) add_number(g, in, "scale", slg->scale);
    add_number(g, in, "start_percent", slg->start_percent);
    add_number(g, in, "end_percent", slg->end_percent);
    add_link(g, in, "model", model, 0);
}

/* The negative prompt's node: its text encoder "7", or with negative_until
 * the ConditioningCombine "77" of it over the first part and zeroed after. */
static const char *negative_prompt(const kiln_run_info *run) { return run->negative_until > 0 ? "77" : "7"; }

static void add_ksampler(graph *g, const char *id, const kiln_run_info *run, int steps, double denoise,
                         const char *model, const char *prompts, const char *latent, int latent_output)
{
    cJSON *in = add_sampler_node(g, id, "KSampler", "seed", run, steps);
    add_number(g, in, "denoise", denoise);
    add_link(g, in, "model", model, 0);
    char positive[16];
    add_link(g, in, "positive", prompts ? prompts : positive_prompt(run, positive), 0);
    add_link(g, in, "negative", prompts ? prompts : negative_prompt(run), prompts ? 1 : 0);
    add_link(g, in, "latent_image", latent, latent_output);
}

/* The run's sampling on its own sigmas: SamplerCustom "3" with
 * KSamplerSelect "78" and ManualSigmas "79", links as add_ksampler's. */
static void add_sampler_custom(graph *g, const kiln_run_info *run, const char *model, const char *prompts,
                               const char *latent, int latent_output)
{
    cJSON *in = add_node(g, "78", "KSamplerSelect");
    add_string(g, in, "sampler_name", run->sampler);
    in = add_node(g, "79", "ManualSigmas");
    add_string(g, in, "sigmas", run->sigmas);
    in = add_node(g, "3", "SamplerCustom");
    check(g, cJSON_AddBoolToObject(in, "add_noise", true));
    char seed[24]; /* as add_sampler_node's */
    snprintf(seed, sizeof seed, "%" PRIu64, run->seed);
    check(g, cJSON_AddRawToObject(in, "noise_seed", seed));
    add_number(g, in, "cfg", run->cfg);
    add_link(g, in, "model", model, 0);
    char positive[16];
    add_link(g, in, "positive", prompts ? prompts : positive_prompt(run, positive), 0);
    add_link(g, in, "negative", prompts ? prompts : negative_prompt(run), prompts ? 1 : 0);
    add_link(g, in, "sampler", "78", 0);
    add_link(g, in, "sigmas", "79", 0);
    add_link(g, in, "latent_image", latent, latent_output);
}

/* A prompt's text encoder node: CLIPTextEncode, or CLIPTextEncodeSDXL with
 * the run's size numbers (text_g its text, text_l CLIP-L's where it has its
 * own). */
static void add_text_encode(graph *g, const char *id, const kiln_sdxl_cond *sdxl, const char *text,
                            const char *text_l, const char *clip, int clip_output)
{
    cJSON *in = add_node(g, id, sdxl ? "CLIPTextEncodeSDXL" : "CLIPTextEncode");
    if (sdxl) {
        add_number(g, in, "width", sdxl->width);
        add_number(g, in, "height", sdxl->height);
        add_number(g, in, "crop_w", sdxl->crop_w);
        add_number(g, in, "crop_h", sdxl->crop_h);
        add_number(g, in, "target_width", sdxl->target_width);
        add_number(g, in, "target_height", sdxl->target_height);
        add_string(g, in, "text_g", text);
        add_string(g, in, "text_l", text_l ? text_l : text);
    } else {
        add_string(g, in, "text", text);
    }
    add_link(g, in, "clip", clip, clip_output);
}

/* The run's prompt and negative prompt (empty when it has none) as the text
 * encoder nodes `positive` and `negative`. An SDXL refiner's are
 * CLIPTextEncodeSDXLRefiner, which takes its aesthetic scores instead of
 * the base's crop and target numbers. */
static void add_prompt_encoders(graph *g, const kiln_run_info *run, const char *positive, const char *negative,
                                bool refiner, const char *clip, int clip_output)
{
    const char *texts[2] = {run->prompt, run->negative_prompt ? run->negative_prompt : ""};
    const char *texts_l[2] = {run->prompt_l, run->negative_prompt_l};
    for (int i = 0; i < 2; i++) {
        const char *id = i ? negative : positive;
        const kiln_sdxl_cond *numbers = i && run->negative_sdxl ? run->negative_sdxl : run->sdxl;
        if (!i && run->pixart_width) { /* PixArt-alpha's size conditions from the prompt */
            cJSON *in = add_node(g, id, "CLIPTextEncodePixArtAlpha");
            add_number(g, in, "width", run->pixart_width);
            add_number(g, in, "height", run->pixart_height);
            add_string(g, in, "text", texts[i]);
            add_link(g, in, "clip", clip, clip_output);
            continue;
        }
        if (!refiner || !run->sdxl) {
            add_text_encode(g, id, numbers, texts[i], texts_l[i], clip, clip_output);
            continue;
        }
        cJSON *in = add_node(g, id, "CLIPTextEncodeSDXLRefiner");
        add_number(g, in, "ascore", i ? run->sdxl->negative_aesthetic : run->sdxl->aesthetic);
        add_number(g, in, "width", numbers->width);
        add_number(g, in, "height", numbers->height);
        add_string(g, in, "text", texts[i]);
        add_link(g, in, "clip", clip, clip_output);
    }
}

/* KSamplerAdvanced over steps [start, end) of the run's schedule: the SDXL
 * base's (noise added, noise left) or the refiner's (neither). */
static void add_ksampler_advanced(graph *g, const char *id, const kiln_run_info *run, bool base, const char *model,
                                  const char *positive, const char *negative, const char *latent)
{
    cJSON *in = add_sampler_node(g, id, "KSamplerAdvanced", "noise_seed", run, run->steps);
    add_string(g, in, "add_noise", base ? "enable" : "disable");
    add_number(g, in, "start_at_step", base ? 0 : run->refiner_step);
    add_number(g, in, "end_at_step", base ? run->refiner_step : 10000);
    add_string(g, in, "return_with_leftover_noise", base ? "enable" : "disable");
    add_link(g, in, "model", model, 0);
    add_link(g, in, "positive", positive, 0);
    add_link(g, in, "negative", negative, 0);
    add_link(g, in, "latent_image", latent, 0);
}

/* The merges of kiln_model_parts as ComfyUI's nodes: ModelMerge* "400" + i
 * on the MODEL and CLIPMerge* "440" + i on the CLIP, each chained on the one
 * before (or the checkpoint "4"), model2 or clip2 from a
 * CheckpointLoaderSimple "460" + i. */
static void add_merges(graph *g, const kiln_model_parts *parts)
{
    static const char *const kinds[2][3] = {{"ModelMergeSimple", "ModelMergeAdd", "ModelMergeSubtract"},
                                            {"CLIPMergeSimple", "CLIPMergeAdd", "CLIPMergeSubtract"}};
    char before[2][16] = {"4", "4"};
    int before_output[2] = {0, 1};
    for (int i = 0; parts && i < parts->nmerges; i++) {
        const kiln_merge *mg = &parts->merges[i];
        const int t = mg->text_encoders;
        char id[16], loader[16];
        snprintf(id, sizeof id, "%d", (t ? 440 : 400) + i);
        snprintf(loader, sizeof loader, "%d", 460 + i);
        cJSON *in = add_node(g, loader, "CheckpointLoaderSimple");
        add_string(g, in, "ckpt_name", base_name(mg->path));
        in = add_node(g, id, kinds[t][mg->kind]);
        if (mg->kind != KILN_MERGE_ADD)
            add_number(g, in, mg->kind == KILN_MERGE_SIMPLE ? "ratio" : "multiplier", mg->ratio);
        add_link(g, in, t ? "clip1" : "model1", before[t], before_output[t]);
        add_link(g, in, t ? "clip2" : "model2", loader, t);
        snprintf(before[t], sizeof before[t], "%s", id);
        before_output[t] = 0;
    }
}

kiln_status kiln_metadata_prompt(const kiln_run_info *run, char **out)
{
    *out = NULL;
    TRY(check_run(run));
    graph g = {.root = cJSON_CreateObject()};
    check(&g, g.root);
    bool img2img = run->init_image != NULL;
    /* the merges first (kiln_model_parts.merges: ModelMerge* "400", "401", ... on the MODEL, CLIPMerge* "440",
     * ... on the CLIP, each with its second checkpoint's CheckpointLoaderSimple 60 after it), then LoraLoaders
     * "14", "15", ... taking the model and CLIP from the one before; the last one's are what KSampler and the text
     * encoders use. */
    char merged_model[16] = "4", merged_clip[16] = "4";
    int merged_clip_output = 1;
    for (int i = 0; run->parts && i < run->parts->nmerges; i++) {
        const kiln_merge *mg = &run->parts->merges[i];
        char *to = mg->text_encoders ? merged_clip : merged_model;
        snprintf(to, 16, "%d", (mg->text_encoders ? 440 : 400) + i);
        if (mg->text_encoders) merged_clip_output = 0;
    }
    char model[16], clip_source[16];
    int clip_source_output = run->nloras ? 1 : merged_clip_output;
    snprintf(model, sizeof model, "%s", merged_model);
    snprintf(clip_source, sizeof clip_source, "%s", merged_clip);
    if (run->nloras) {
        snprintf(model, sizeof model, "%d", 13 + run->nloras);
        snprintf(clip_source, sizeof clip_source, "%d", 13 + run->nloras);
    }
    for (int i = 0; i < run->nhypernetworks; i++) { /* HypernetworkLoader "480", "481", ... */
        char id[16];
        snprintf(id, sizeof id, "%d", 480 + i);
        cJSON *loader = add_node(&g, id, "HypernetworkLoader");
        add_string(&g, loader, "hypernetwork_name", base_name(run->hypernetworks[i].path));
        add_number(&g, loader, "strength", run->hypernetworks[i].strength);
        add_link(&g, loader, "model", model, 0);
        snprintf(model, sizeof model, "%s", id);
    }
    /* files given beside the checkpoint: a VAELoader "35" and a CLIP loader "36" in place of its outputs */
    const bool vae_part = run->parts && run->parts->vae, clip_part = run->parts && run->parts->text_encoders[0];
    const char *vae = vae_part ? "35" : "4";
    const int vae_output = vae_part ? 0 : 2;
    /* The text encoders take T5TokenizerOptions' CLIP, else CLIPSetLastLayer's, else the model's (or the CLIP
       loader's). */
    const bool set_last_layer = run->clip_skip != (run->model_clip_skip ? run->model_clip_skip : 1);
    const char *unpadded = set_last_layer ? "10" : clip_part ? "36" : clip_source;
    const int unpadded_output = set_last_layer || clip_part ? 0 : clip_source_output;
    const char *clip = run->t5_options ? "37" : unpadded;
    const int clip_output = run->t5_options ? 0 : unpadded_output;
    /* the image's latent: VAEEncode "12" or VAEEncodeForInpaint "51", then
     * SetLatentNoiseMask "52" (a mask on another model), then RepeatLatentBatch "13" */
    const bool repaint = run->mask || run->outpaint, pix2pix = run->instruct_pix2pix;
    const bool conditioning = repaint && run->inpaint_conditioning; /* InpaintModelConditioning "55" */
    const char *encoded = pix2pix ? "54" : conditioning ? "55" : repaint && run->inpaint_model ? "51" : "12";
    const char *masked = repaint && !run->inpaint_model ? "52" : encoded;
    /* InstructPixToPixConditioning's and InpaintModelConditioning's third output is the latent */
    const int masked_output = pix2pix || conditioning ? 2 : 0;
    /* the prompts: CLIPTextEncode, or the last ControlNetApplyAdvanced after them,
     * or InstructPixToPixConditioning "54" after those */
    char controlled[16];
    if (run->ncontrols) control_node_id(run->ncontrols - 1, 2, controlled);
    const char *prompts_in = run->ncontrols ? controlled : NULL; /* what "54" takes */
    const char *prompts = pix2pix || conditioning ? encoded : prompts_in;
    /* the picture and mask: LoadImage "11" and LoadImageMask "50", or both
     * from ImagePadForOutpaint "53" */
    const char *picture = run->outpaint ? "53" : "11", *mask = run->outpaint ? "53" : "50";
    const int mask_output = run->outpaint ? 1 : 0;
    const char *latent = img2img ? (run->batch_size > 1 ? "13" : masked) : "5";
    const int latent_output = img2img && run->batch_size == 1 ? masked_output : 0;

    /* the model through the last IPAdapterAdvanced, then DifferentialDiffusion "81", FreSca "472",
     * LatentApplyOperationCFG
     * "471" and TCFG "88" (their pre-CFG
     * functions before APG's), CFGZeroStar "84", Mahiro "89", CFGNorm "94", Epsilon Scaling "95" and
     * SelfAttentionGuidance "96" (their post-CFG functions before SkipLayerGuidance's, as kiln applies them), APG "85", SkipLayerGuidance "82",
     * RescaleCFG "83", PatchModelAddDownscale "97" (its resize before FreeU's patch, as kiln runs them), HyperTile
     * "98", FreeU or
     * FreeU_V2 "86", PerturbedAttentionGuidance "87", EasyCache or LazyCache "99", then ModelSamplingDiscrete
     * "80" where the prediction was forced: what KSampler takes */
    char patched_id[16];
    if (run->nimage_prompts) image_prompt_node_id(run->nimage_prompts - 1, 2, patched_id);
    const char *patched = run->nimage_prompts ? patched_id : model;
    const char *differential = run->differential > 0 ? "81" : patched;
    const char *filtered = run->fresca ? "472" : differential;
    const char *operated = run->cfg_operation ? "471" : filtered;
    const char *damped = run->tcfg ? "88" : operated;
    const char *zero_star = run->cfg_zero_star ? "84" : damped;
    const char *mahiro = run->mahiro ? "89" : zero_star;
    const char *normed = run->cfg_norm > 0 ? "94" : mahiro;
    const char *eps_scaled = run->epsilon_scaling > 0 ? "95" : normed;
    const char *self_attention = run->sag ? "96" : eps_scaled;
    const char *projected = run->apg ? "85" : self_attention;
    const char *guided = run->skip_layer_guidance ? "82" : projected;
    const char *rescaled = run->rescale_cfg > 0 ? "83" : guided;
    const char *shrunk = run->deep_shrink ? "97" : rescaled;
    const char *tiled = run->hypertile ? "98" : shrunk;
    const char *freeu = run->freeu ? "86" : tiled;
    const char *perturbed = run->pag_scale > 0 ? "87" : freeu;
    const char *cached = run->step_cache ? "99" : perturbed;
    const char *sampled = run->prediction || run->edm ? "80" : cached;
    cJSON *in;
    if (run->refiner) { /* the base's KSamplerAdvanced "3", the refiner's "93" on its own prompts "91", "92" */
        add_ksampler_advanced(&g, "3", run, true, sampled, "6", negative_prompt(run), latent);
        add_ksampler_advanced(&g, "93", run, false, "90", "91", "92", "3");
        in = add_node(&g, "90", "CheckpointLoaderSimple");
        add_string(&g, in, "ckpt_name", base_name(run->refiner));
        add_prompt_encoders(&g, run, "91", "92", true, "90", 1);
    } else {
        if (run->sigmas) add_sampler_custom(&g, run, sampled, prompts, latent, latent_output);
        else add_ksampler(&g, "3", run, run->steps, run->denoise, sampled, prompts, latent, latent_output);
    }

    const char *weight_dtype = run->parts && run->parts->weight_dtype && strcmp(run->parts->weight_dtype, "default")
                                   ? run->parts->weight_dtype : NULL;
    if (vae_part && clip_part && is_gguf(run->model)) { /* ComfyUI reads GGUF files through ComfyUI-GGUF's nodes */
        in = add_node(&g, "4", "UnetLoaderGGUF");
        add_string(&g, in, "unet_name", base_name(run->model));
    } else if (vae_part && clip_part) { /* the file is the transformer (or UNet) alone */
        in = add_node(&g, "4", "UNETLoader");
        add_string(&g, in, "unet_name", base_name(run->model));
        add_string(&g, in, "weight_dtype", weight_dtype ? weight_dtype : "default");
    } else if (unet_folder(run)) { /* ComfyUI's DiffusersLoader reads a UNet model's folder from models/diffusers */
        in = add_node(&g, "4", "DiffusersLoader");
        add_string(&g, in, "model_path", base_name(run->model));
        if (weight_dtype) add_string(&g, in, "weight_dtype", weight_dtype); /* kiln's; ComfyUI ignores it */
    } else {
        in = add_node(&g, "4", "CheckpointLoaderSimple"); /* outputs MODEL, CLIP, VAE */
        add_string(&g, in, "ckpt_name", base_name(run->model));
        if (weight_dtype) add_string(&g, in, "weight_dtype", weight_dtype); /* kiln's; ComfyUI ignores it */
    }
    if (vae_part) {
        in = add_node(&g, "35", "VAELoader");
        add_string(&g, in, "vae_name", base_name(run->parts->vae));
    }
    if (clip_part && run->parts->text_encoders[2]) { /* SD3's CLIP-L, bigG and T5 */
        in = add_node(&g, "36", "TripleCLIPLoader");
        static const char *const names[3] = {"clip_name1", "clip_name2", "clip_name3"};
        for (int i = 0; i < 3; i++) add_string(&g, in, names[i], base_name(run->parts->text_encoders[i]));
    } else if (clip_part) { /* Flux's CLIP-L and T5, SDXL's two CLIPs, SD3's without T5, or PixArt's T5 */
        const bool dual = run->parts->text_encoders[1] != NULL;
        const bool gguf = is_gguf(run->parts->text_encoders[0]) || (dual && is_gguf(run->parts->text_encoders[1]));
        in = add_node(&g, "36", dual ? gguf ? "DualCLIPLoaderGGUF" : "DualCLIPLoader"
                                     : gguf ? "CLIPLoaderGGUF" : "CLIPLoader");
        add_string(&g, in, dual ? "clip_name1" : "clip_name", base_name(run->parts->text_encoders[0]));
        if (dual) add_string(&g, in, "clip_name2", base_name(run->parts->text_encoders[1]));
        add_string(&g, in, "type", clip_loader_type(run->family, dual));
    }

    if (!img2img) {
        in = add_node(&g, "5", "EmptyLatentImage");
        add_number(&g, in, "width", run->width);
        add_number(&g, in, "height", run->height);
        add_number(&g, in, "batch_size", run->batch_size);
    }

    add_prompt_encoders(&g, run, "6", "7", false, clip, clip_output);
    add_areas(&g, run, clip, clip_output);
    if (run->negative_until > 0) {
        in = add_node(&g, "74", "ConditioningZeroOut");
        add_link(&g, in, "conditioning", "7", 0);
        in = add_node(&g, "75", "ConditioningSetTimestepRange");
        add_number(&g, in, "start", run->negative_until);
        add_number(&g, in, "end", 1.0);
        add_link(&g, in, "conditioning", "74", 0);
        in = add_node(&g, "76", "ConditioningSetTimestepRange");
        add_number(&g, in, "start", 0.0);
        add_number(&g, in, "end", run->negative_until);
        add_link(&g, in, "conditioning", "7", 0);
        in = add_node(&g, "77", "ConditioningCombine");
        add_link(&g, in, "conditioning_1", "76", 0);
        add_link(&g, in, "conditioning_2", "75", 0);
    }
    for (int i = 0; i < run->nreferences; i++) { /* FLUX.1 Kontext's pictures on the positive prompt */
        char picture[16], encoded[16], referenced[16], before[16];
        reference_node_id(i, 0, picture);
        reference_node_id(i, 1, encoded);
        reference_node_id(i, 2, referenced);
        if (i) reference_node_id(i - 1, 2, before);
        in = add_node(&g, picture, "LoadImage");
        add_string(&g, in, "image", base_name(run->references[i]));
        in = add_node(&g, encoded, "VAEEncode");
        add_link(&g, in, "pixels", picture, 0);
        add_link(&g, in, "vae", vae, vae_output);
        in = add_node(&g, referenced, "ReferenceLatent");
        add_link(&g, in, "conditioning", i ? before : "6", 0);
        add_link(&g, in, "latent", encoded, 0);
    }
    if (run->nreferences && run->reference_method) {
        char last[16];
        reference_node_id(run->nreferences - 1, 2, last);
        in = add_node(&g, "264", "FluxKontextMultiReferenceLatentMethod");
        add_string(&g, in, "reference_latents_method", run->reference_method);
        add_link(&g, in, "conditioning", last, 0);
    }
    char text[16];
    if (run->flux_guidance) { /* -1: FluxDisableGuidance */
        in = add_node(&g, "30", run->flux_guidance < 0 ? "FluxDisableGuidance" : "FluxGuidance");
        if (run->flux_guidance > 0) add_number(&g, in, "guidance", run->flux_guidance);
        add_link(&g, in, "conditioning", positive_text(run, text), 0);
    }

    in = add_node(&g, "8", run->vae_tile ? "VAEDecodeTiled" : "VAEDecode");
    if (run->vae_tile) { /* the temporal inputs (for video VAEs) at the node's defaults */
        add_number(&g, in, "tile_size", run->vae_tile);
        add_number(&g, in, "overlap", run->vae_tile_overlap);
        add_number(&g, in, "temporal_size", 64);
        add_number(&g, in, "temporal_overlap", 8);
    }
    add_link(&g, in, "samples", run->hires_scale ? "61" : run->refiner ? "93" : "3", 0);
    add_link(&g, in, "vae", vae, vae_output);

    in = add_node(&g, "9", "SaveImage");
    add_string(&g, in, "filename_prefix", "kiln");
    add_link(&g, in, "images", run->upscale_model ? "71" : "8", 0);

    if (run->edm) {
        in = add_node(&g, "80", "ModelSamplingContinuousEDM");
        add_string(&g, in, "sampling", run->edm);
        add_number(&g, in, "sigma_max", run->edm_sigma_max);
        add_number(&g, in, "sigma_min", run->edm_sigma_min);
        add_link(&g, in, "model", cached, 0);
    }
    if (run->prediction) {
        in = add_node(&g, "80", "ModelSamplingDiscrete");
        add_string(&g, in, "sampling", strcmp(run->prediction, "v") == 0 ? "v_prediction" : run->prediction);
        add_bool(&g, in, "zsnr", run->zsnr);
        add_link(&g, in, "model", cached, 0);
    }
    if (run->deep_shrink) {
        const kiln_deep_shrink *ds = run->deep_shrink;
        in = add_node(&g, "97", "PatchModelAddDownscale");
        add_number(&g, in, "block_number", ds->block_number);
        add_number(&g, in, "downscale_factor", ds->downscale_factor);
        add_number(&g, in, "start_percent", ds->start_percent);
        add_number(&g, in, "end_percent", ds->end_percent);
        add_bool(&g, in, "downscale_after_skip", ds->downscale_after_skip);
        add_string(&g, in, "downscale_method", ds->downscale_method ? ds->downscale_method : "bicubic");
        add_string(&g, in, "upscale_method", ds->upscale_method ? ds->upscale_method : "bicubic");
        add_link(&g, in, "model", rescaled, 0);
    }
    if (run->hypertile) {
        const kiln_hypertile *ht = run->hypertile;
        in = add_node(&g, "98", "HyperTile");
        add_number(&g, in, "tile_size", ht->tile_size);
        add_number(&g, in, "swap_size", ht->swap_size);
        add_number(&g, in, "max_depth", ht->max_depth);
        add_bool(&g, in, "scale_depth", ht->scale_depth);
        add_link(&g, in, "model", shrunk, 0);
    }
    if (run->step_cache) {
        const kiln_step_cache *c = run->step_cache;
        in = add_node(&g, "99", c->kind == KILN_EASY_CACHE ? "EasyCache" : "LazyCache");
        add_number(&g, in, "reuse_threshold", c->reuse_threshold);
        add_number(&g, in, "start_percent", c->start_percent);
        add_number(&g, in, "end_percent", c->end_percent);
        add_bool(&g, in, "verbose", false);
        add_link(&g, in, "model", perturbed, 0);
    }
    if (run->pag_scale > 0) {
        in = add_node(&g, "87", "PerturbedAttentionGuidance");
        add_number(&g, in, "scale", run->pag_scale);
        add_link(&g, in, "model", freeu, 0);
    }
    if (run->freeu) {
        in = add_node(&g, "86", run->freeu->v2 ? "FreeU_V2" : "FreeU");
        add_number(&g, in, "b1", run->freeu->b1);
        add_number(&g, in, "b2", run->freeu->b2);
        add_number(&g, in, "s1", run->freeu->s1);
        add_number(&g, in, "s2", run->freeu->s2);
        add_link(&g, in, "model", tiled, 0);
    }
    if (run->rescale_cfg > 0) {
        in = add_node(&g, "83", "RescaleCFG");
        add_number(&g, in, "multiplier", run->rescale_cfg);
        add_link(&g, in, "model", guided, 0);
    }
    if (run->cfg_operation) {
        const kiln_latent_operation *op = run->cfg_operation;
        const bool tonemap = op->kind == KILN_LATENT_OPERATION_TONEMAP_REINHARD;
        in = add_node(&g, "470", tonemap ? "LatentOperationTonemapReinhard" : "LatentOperationSharpen");
        if (tonemap) {
            add_number(&g, in, "multiplier", op->multiplier);
        } else {
            add_number(&g, in, "sharpen_radius", op->sharpen_radius);
            add_number(&g, in, "sigma", op->sigma);
            add_number(&g, in, "alpha", op->alpha);
        }
        in = add_node(&g, "471", "LatentApplyOperationCFG");
        add_link(&g, in, "model", filtered, 0);
        add_link(&g, in, "operation", "470", 0);
    }
    if (run->fresca) {
        in = add_node(&g, "472", "FreSca");
        add_number(&g, in, "scale_low", run->fresca->scale_low);
        add_number(&g, in, "scale_high", run->fresca->scale_high);
        add_number(&g, in, "freq_cutoff", run->fresca->freq_cutoff);
        add_link(&g, in, "model", differential, 0);
    }
    if (run->tcfg) {
        in = add_node(&g, "88", "TCFG");
        add_link(&g, in, "model", operated, 0);
    }
    if (run->cfg_zero_star) {
        in = add_node(&g, "84", "CFGZeroStar");
        add_link(&g, in, "model", damped, 0);
    }
    if (run->mahiro) {
        in = add_node(&g, "89", "Mahiro");
        add_link(&g, in, "model", zero_star, 0);
    }
    if (run->cfg_norm > 0) {
        in = add_node(&g, "94", "CFGNorm");
        add_number(&g, in, "strength", run->cfg_norm);
        add_link(&g, in, "model", mahiro, 0);
    }
    if (run->sag) {
        in = add_node(&g, "96", "SelfAttentionGuidance");
        add_number(&g, in, "scale", run->sag->scale);
        add_number(&g, in, "blur_sigma", run->sag->blur_sigma);
        add_link(&g, in, "model", eps_scaled, 0);
    }
    if (run->epsilon_scaling > 0) {
        in = add_node(&g, "95", "Epsilon Scaling");
        add_number(&g, in, "scaling_factor", run->epsilon_scaling);
        add_link(&g, in, "model", normed, 0);
    }
    if (run->apg) {
        in = add_node(&g, "85", "APG");
        add_number(&g, in, "eta", run->apg_eta);
        add_number(&g, in, "norm_threshold", run->apg_norm_threshold);
        add_number(&g, in, "momentum", run->apg_momentum);
        add_link(&g, in, "model", self_attention, 0);
    }
    if (run->skip_layer_guidance) add_skip_layer_guidance(&g, run, projected);
    if (run->differential > 0) {
        in = add_node(&g, "81", "DifferentialDiffusion");
        add_number(&g, in, "strength", run->differential);
        add_link(&g, in, "model", patched, 0);
    }
    if (set_last_layer) {
        in = add_node(&g, "10", "CLIPSetLastLayer");
        add_number(&g, in, "stop_at_clip_layer", -run->clip_skip);
        add_link(&g, in, "clip", clip_part ? "36" : clip_source, clip_part ? 0 : clip_source_output);
    }
    if (run->t5_options) {
        in = add_node(&g, "37", "T5TokenizerOptions");
        add_number(&g, in, "min_padding", run->t5_min_padding);
        add_number(&g, in, "min_length", run->t5_min_length);
        add_link(&g, in, "clip", unpadded, unpadded_output);
    }
    add_merges(&g, run->parts);
    for (int i = 0; i < run->nloras; i++) {
        char id[16], from[16];
        snprintf(id, sizeof id, "%d", 14 + i);
        snprintf(from, sizeof from, "%d", 13 + i);
        in = add_node(&g, id, "LoraLoader");
        add_string(&g, in, "lora_name", base_name(run->loras[i].path));
        add_number(&g, in, "strength_model", run->loras[i].unet_strength);
        add_number(&g, in, "strength_clip", run->loras[i].clip_strength);
        add_link(&g, in, "model", i ? from : merged_model, 0);
        add_link(&g, in, "clip", i ? from : merged_clip, i ? 1 : merged_clip_output);
    }
    char positive[16];
    for (int i = 0; i < run->nstyles; i++) { /* FLUX.1 Redux on the positive prompt */
        const kiln_run_style *st = &run->styles[i];
        char loader[16], vision[16], picture[16], encode[16], apply[16], before[16];
        style_node_id(i, 0, loader);
        style_node_id(i, 1, vision);
        style_node_id(i, 2, picture);
        style_node_id(i, 3, encode);
        style_node_id(i, 4, apply);
        if (i) style_node_id(i - 1, 4, before);
        in = add_node(&g, loader, "StyleModelLoader");
        add_string(&g, in, "style_model_name", base_name(st->style_model));
        in = add_node(&g, vision, "CLIPVisionLoader");
        add_string(&g, in, "clip_name", base_name(st->clip_vision));
        in = add_node(&g, picture, "LoadImage");
        add_string(&g, in, "image", base_name(st->image));
        in = add_node(&g, encode, "CLIPVisionEncode");
        add_string(&g, in, "crop", "center");
        add_link(&g, in, "clip_vision", vision, 0);
        add_link(&g, in, "image", picture, 0);
        in = add_node(&g, apply, "StyleModelApply");
        add_number(&g, in, "strength", st->strength);
        add_string(&g, in, "strength_type", "multiply");
        add_link(&g, in, "conditioning", i ? before : run->flux_guidance ? "30" : positive_text(run, text), 0);
        add_link(&g, in, "style_model", loader, 0);
        add_link(&g, in, "clip_vision_output", encode, 0);
    }
    for (int i = 0; i < run->ncontrols; i++) {
        const kiln_run_control *c = &run->controls[i];
        char loader[16], image[16], apply[16], before[16], typed[16];
        control_node_id(i, 0, loader);
        control_node_id(i, 1, image);
        control_node_id(i, 2, apply);
        control_node_id(i, 3, typed);
        if (i) control_node_id(i - 1, 2, before);
        in = add_node(&g, loader, "ControlNetLoader");
        add_string(&g, in, "control_net_name", base_name(c->path));
        if (c->union_type) {
            in = add_node(&g, typed, "SetUnionControlNetType");
            add_string(&g, in, "type", c->union_type);
            add_link(&g, in, "control_net", loader, 0);
        }
        in = add_node(&g, image, "LoadImage");
        add_string(&g, in, "image", base_name(c->image));
        char edges[16];
        snprintf(edges, sizeof edges, "%d", 290 + i);
        if (c->canny_low > 0.0) { /* the picture's edges, "290" on */
            in = add_node(&g, edges, "Canny");
            add_number(&g, in, "low_threshold", c->canny_low);
            add_number(&g, in, "high_threshold", c->canny_high);
            add_link(&g, in, "image", image, 0);
        }
        if (c->mask) { /* an inpainting ControlNet's (Alimama's) mask, "280" on */
            char mask[16];
            snprintf(mask, sizeof mask, "%d", 280 + i);
            in = add_node(&g, mask, "LoadImageMask");
            add_string(&g, in, "image", base_name(c->mask));
            add_string(&g, in, "channel", "red");
            in = add_node(&g, apply, "ControlNetInpaintingAliMamaApply");
            add_link(&g, in, "mask", mask, 0);
        } else {
            in = add_node(&g, apply, "ControlNetApplyAdvanced");
        }
        add_number(&g, in, "strength", c->strength);
        add_number(&g, in, "start_percent", c->start);
        add_number(&g, in, "end_percent", c->end);
        add_link(&g, in, "positive", i ? before : positive_prompt(run, positive), 0);
        add_link(&g, in, "negative", i ? before : negative_prompt(run), i ? 1 : 0);
        add_link(&g, in, "control_net", c->union_type ? typed : loader, 0);
        add_link(&g, in, "image", c->canny_low > 0.0 ? edges : image, 0);
        add_link(&g, in, "vae", vae, vae_output); /* Flux's latent-hint ControlNets read it; the others leave it */
    }
    for (int i = 0; i < run->nimage_prompts; i++) { /* ComfyUI_IPAdapter_plus's nodes */
        const kiln_run_image_prompt *ip = &run->image_prompts[i];
        char loader[16], vision[16], apply[16], picture[16], before[16];
        image_prompt_node_id(i, 0, loader);
        image_prompt_node_id(i, 1, vision);
        image_prompt_node_id(i, 2, apply);
        image_prompt_node_id(i, 3, picture);
        if (i) image_prompt_node_id(i - 1, 2, before);
        in = add_node(&g, loader, "IPAdapterModelLoader");
        add_string(&g, in, "ipadapter_file", base_name(ip->adapter));
        in = add_node(&g, vision, "CLIPVisionLoader");
        add_string(&g, in, "clip_name", base_name(ip->clip_vision));
        in = add_node(&g, picture, "LoadImage");
        add_string(&g, in, "image", base_name(ip->image));
        char batched[16], loaded[16];
        snprintf(batched, sizeof batched, "%s", picture);
        for (int j = 0; j < ip->nmore_images; j++) { /* ImageBatch(the pictures so far, the next) */
            snprintf(loaded, sizeof loaded, "%d", 300 + 20 * i + 2 * j);
            in = add_node(&g, loaded, "LoadImage");
            add_string(&g, in, "image", base_name(ip->more_images[j]));
            char joined[16];
            snprintf(joined, sizeof joined, "%d", 301 + 20 * i + 2 * j);
            in = add_node(&g, joined, "ImageBatch");
            add_link(&g, in, "image1", batched, 0);
            add_link(&g, in, "image2", loaded, 0);
            snprintf(batched, sizeof batched, "%s", joined);
        }
        in = add_node(&g, apply, "IPAdapterAdvanced");
        add_number(&g, in, "weight", ip->weight);
        add_string(&g, in, "weight_type", "linear");
        add_string(&g, in, "combine_embeds", "concat");
        add_number(&g, in, "start_at", ip->start);
        add_number(&g, in, "end_at", ip->end);
        add_string(&g, in, "embeds_scaling", "V only");
        add_link(&g, in, "model", i ? before : model, 0);
        add_link(&g, in, "ipadapter", loader, 0);
        add_link(&g, in, "image", batched, 0);
        add_link(&g, in, "clip_vision", vision, 0);
    }
    if (img2img) {
        in = add_node(&g, "11", "LoadImage");
        add_string(&g, in, "image", base_name(run->init_image));
        const bool tiled = run->vae_tile && !pix2pix && !repaint; /* img2img's VAEEncode tiles as its decode */
        in = add_node(&g, encoded, pix2pix                            ? "InstructPixToPixConditioning"
                                   : conditioning                  ? "InpaintModelConditioning"
                                   : repaint && run->inpaint_model ? "VAEEncodeForInpaint"
                                   : tiled                         ? "VAEEncodeTiled"
                                                                   : "VAEEncode");
        if (tiled) {
            add_number(&g, in, "tile_size", run->vae_tile);
            add_number(&g, in, "overlap", run->vae_tile_overlap);
            add_number(&g, in, "temporal_size", 64);
            add_number(&g, in, "temporal_overlap", 8);
        }
        if (pix2pix || conditioning) {
            add_link(&g, in, "positive", prompts_in ? prompts_in : positive_prompt(run, positive), 0);
            add_link(&g, in, "negative", prompts_in ? prompts_in : negative_prompt(run), prompts_in ? 1 : 0);
        }
        add_link(&g, in, "pixels", picture, 0);
        add_link(&g, in, "vae", vae, vae_output);
        if (repaint) {
            if (conditioning) {
                add_link(&g, in, "mask", mask, mask_output);
                add_bool(&g, in, "noise_mask", true);
            } else if (run->inpaint_model) {
                add_link(&g, in, "mask", mask, mask_output);
                add_number(&g, in, "grow_mask_by", KILN_INPAINT_GROW);
            } else {
                in = add_node(&g, "52", "SetLatentNoiseMask");
                add_link(&g, in, "samples", "12", 0);
                add_link(&g, in, "mask", mask, mask_output);
            }
        }
        if (run->mask) {
            in = add_node(&g, "50", "LoadImageMask");
            add_string(&g, in, "image", base_name(run->mask));
            add_string(&g, in, "channel", run->mask_channel ? run->mask_channel : "red");
        }
        if (run->outpaint) {
            in = add_node(&g, "53", "ImagePadForOutpaint");
            add_number(&g, in, "left", run->outpaint->left);
            add_number(&g, in, "top", run->outpaint->top);
            add_number(&g, in, "right", run->outpaint->right);
            add_number(&g, in, "bottom", run->outpaint->bottom);
            add_number(&g, in, "feathering", run->outpaint->feathering);
            add_link(&g, in, "image", "11", 0);
        }
        if (run->batch_size > 1) {
            in = add_node(&g, "13", "RepeatLatentBatch");
            add_link(&g, in, "samples", masked, masked_output);
            add_number(&g, in, "amount", run->batch_size);
        }
    }

    if (run->upscale_model) {
        in = add_node(&g, "70", "UpscaleModelLoader");
        add_string(&g, in, "model_name", base_name(run->upscale_model));
        in = add_node(&g, "71", "ImageUpscaleWithModel");
        add_link(&g, in, "upscale_model", "70", 0);
        add_link(&g, in, "image", "8", 0);
    }
    if (run->hires_scale) {
        in = add_node(&g, "60", "LatentUpscaleBy");
        add_string(&g, in, "upscale_method", run->hires_method);
        add_number(&g, in, "scale_by", run->hires_scale);
        add_link(&g, in, "samples", "3", 0);
        add_ksampler(&g, "61", run, run->hires_steps, run->hires_denoise, sampled, prompts, "60", 0);
    }

    char *json = g.failed ? NULL : cJSON_PrintUnformatted(g.root);
    cJSON_Delete(g.root);
    if (!json) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "run metadata: out of memory building the prompt JSON");
    *out = json;
    return KILN_OK;
}
