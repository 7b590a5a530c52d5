/* ConditioningSetArea: prompts sampled on boxes of the latent (see cond_area.h).
 * The order of things follows ComfyUI's process_conds (areas resolved, then
 * the opposite areas added) and get_area_and_mult (the box cut to the latent,
 * then its weights). */
#include "cond_area.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"
#include "status.h"

/* ComfyUI's fade of an area's weight inside an edge: over this many latent
 * pixels, at most a quarter of the box */
#define AREA_FADE 8
/* and the least side of a mask's bounds */
#define MASK_BOUNDS_LEAST 8

/* A part as the sampler sees it: its area resolved (h, w, y, x as ComfyUI
 * orders them), its mask on the latent. `text` is the part of its side whose
 * prompt it has; an opposite area copies the other side's part but for that. */
typedef struct {
    int text;
    int source_side, source;
    bool has_area;
    int area[4];        /* h, w, y, x */
    const float *mask;  /* (latent_h, latent_w); NULL: none */
    float mask_strength, strength;
} resolved_part;

bool cond_parts_have_areas(const kiln_conditioning_part *parts[2], const int nparts[2])
{
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < nparts[side]; i++)
            if (parts[side][i].area_w || parts[side][i].fraction_w != 0.0 || parts[side][i].mask_bounds) return true;
    return false;
}

/* The box around a mask's nonzero weights (get_mask_aabb), each side at
 * least MASK_BOUNDS_LEAST; an empty mask's is that least box at the corner. */
static void mask_bounds(const float *mask, int h, int w, int area[4])
{
    int top = h, bottom = -1, left = w, right = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (mask[(size_t)y * w + x] != 0.0f) {
                top = y < top ? y : top, bottom = y > bottom ? y : bottom;
                left = x < left ? x : left, right = x > right ? x : right;
            }
    if (bottom < 0) {
        area[0] = area[1] = MASK_BOUNDS_LEAST, area[2] = area[3] = 0;
        return;
    }
    const int bh = bottom - top + 1, bw = right - left + 1;
    area[0] = bh > MASK_BOUNDS_LEAST ? bh : MASK_BOUNDS_LEAST;
    area[1] = bw > MASK_BOUNDS_LEAST ? bw : MASK_BOUNDS_LEAST;
    area[2] = top, area[3] = left;
}

static const char *side_name(int side) { return side ? "positive" : "negative"; }

/* A part's area and weights on the latent (resolve_areas_and_cond_masks);
 * its mask, stretched to the latent, goes to *mask_out. */
static kiln_status resolve_part(const kiln_conditioning_part *part, int side, int index, int H, int W,
                                resolved_part *r, float **mask_out)
{
    *r = (resolved_part){.text = index, .source_side = side, .source = index, .mask_strength = 1.0f,
                         .strength = part->area_strength != 0.0 ? (float)part->area_strength : 1.0f};
    if (!(part->area_strength >= 0.0 && part->area_strength <= 10.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has area strength %g (0 to 10)",
                         side_name(side), index + 1, part->area_strength);
    if (part->area_w) {
        if (part->area_w < 1 || part->area_h < 1 || part->area_x < 0 || part->area_y < 0)
            return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has an area of %dx%d at (%d, %d) "
                             "(latent pixels: a size, and a place at or past 0)", side_name(side), index + 1,
                             part->area_w, part->area_h, part->area_x, part->area_y);
        r->has_area = true;
        r->area[0] = part->area_h, r->area[1] = part->area_w, r->area[2] = part->area_y, r->area[3] = part->area_x;
    } else if (part->fraction_w != 0.0) {
        const double f[4] = {part->fraction_h, part->fraction_w, part->fraction_y, part->fraction_x};
        for (int k = 0; k < 4; k++)
            if (!(f[k] >= 0.0 && f[k] <= 1.0))
                return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has an area of %g x %g at "
                                 "(%g, %g) of the latent (fractions: 0 to 1)", side_name(side), index + 1,
                                 part->fraction_w, part->fraction_h, part->fraction_x, part->fraction_y);
        /* Python's round: half to even, as nearbyint in the default rounding mode */
        const int dims[2] = {H, W};
        r->has_area = true;
        for (int k = 0; k < 2; k++) {
            const int size = (int)nearbyint(f[k] * dims[k]);
            r->area[k] = size > 1 ? size : 1;
            r->area[k + 2] = (int)nearbyint(f[k + 2] * dims[k]);
        }
    }
    if (part->mask) {
        if (part->mask_w < 1 || part->mask_h < 1 || part->mask_w > KILN_IMAGE_MAX_SIDE ||
            part->mask_h > KILN_IMAGE_MAX_SIDE || !(part->strength >= 0.0 && part->strength <= 10.0))
            return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has a mask of %dx%d at strength "
                             "%g (a size, and 0 to 10)", side_name(side), index + 1, part->mask_w, part->mask_h,
                             part->strength);
        float *m = *mask_out = malloc((size_t)H * W * sizeof *m);
        if (!m) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
        kiln_resample(part->mask, 1, part->mask_h, part->mask_w, m, H, W, KILN_RESAMPLE_BILINEAR);
        r->mask = m;
        r->mask_strength = (float)part->strength;
        if (part->mask_bounds) {
            mask_bounds(m, H, W, r->area);
            r->has_area = true;
        }
    } else if (part->mask_bounds) {
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d: mask bounds without a mask",
                         side_name(side), index + 1);
    }
    if (r->has_area && (r->area[2] >= H || r->area[3] >= W))
        return kiln_fail(KILN_ERR_INVALID_ARG, "ksampler: the %s prompt's part %d has its area at latent pixel (%d, "
                         "%d), outside the %dx%d latent", side_name(side), index + 1, r->area[3], r->area[2], W, H);
    return KILN_OK;
}

/* Whether area a lies within area b. */
static bool area_inside(const int a[4], const int b[4])
{
    return a[2] >= b[2] && a[3] >= b[3] && a[0] + a[2] <= b[0] + b[2] && a[1] + a[3] <= b[1] + b[3];
}

/* create_cond_with_same_area_if_none: unless the other side has a part of
 * c's area, it gets one, with c's settings and the prompt of its smallest
 * part holding c's area (its first part without an area if none does). */
static void add_opposite_area(resolved_part *other, int *nother, const resolved_part *c)
{
    if (!c->has_area) return;
    int smallest = -1;
    for (int i = 0; i < *nother; i++) {
        const resolved_part *x = &other[i];
        if (!x->has_area) {
            if (smallest < 0) smallest = i;
        } else if (area_inside(c->area, x->area)) {
            if (smallest < 0 || !other[smallest].has_area ||
                (long)other[smallest].area[0] * other[smallest].area[1] > (long)x->area[0] * x->area[1])
                smallest = i;
        }
    }
    if (smallest < 0 || (other[smallest].has_area && !memcmp(other[smallest].area, c->area, sizeof c->area))) return;
    resolved_part copy = *c;
    copy.text = other[smallest].text;
    other[(*nother)++] = copy;
}

/* get_area_and_mult: the run's box cut to the latent and its weights there. */
static kiln_status make_run(const resolved_part *r, int side, int H, int W, area_run *run)
{
    int area[4] = {H, W, 0, 0};
    if (r->has_area) {
        memcpy(area, r->area, sizeof area);
        if (area[0] > H - area[2]) area[0] = H - area[2];
        if (area[1] > W - area[3]) area[1] = W - area[3];
    }
    *run = (area_run){.side = side, .text = r->text, .source_side = r->source_side, .source = r->source,
                      .y = area[2], .x = area[3], .h = area[0], .w = area[1]};
    float *mult = run->mult = malloc((size_t)run->h * run->w * sizeof *mult);
    if (!mult) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    /* float32 products in torch's order: mask times its strength, then times the part's */
    for (int y = 0; y < run->h; y++)
        for (int x = 0; x < run->w; x++) {
            const float m = r->mask ? r->mask[(size_t)(run->y + y) * W + run->x + x] * r->mask_strength : 1.0f;
            mult[(size_t)y * run->w + x] = m * r->strength;
        }
    if (r->mask || !r->has_area) return KILN_OK;
    const int dims[2] = {H, W};
    for (int k = 0; k < 2; k++) {
        const int size = area[k], rr = size / 4 < AREA_FADE ? size / 4 : AREA_FADE;
        const bool fade_start = area[k + 2] != 0, fade_end = area[k] + area[k + 2] < dims[k];
        for (int t = 0; t < rr; t++) {
            const float f = (float)(1.0 / rr * (t + 1));
            for (int e = 0; e < 2; e++) {
                if (!(e ? fade_end : fade_start)) continue;
                const int line = e ? size - 1 - t : t;
                for (int j = 0; j < (k ? run->h : run->w); j++)
                    mult[k ? (size_t)j * run->w + line : (size_t)line * run->w + j] *= f;
            }
        }
    }
    return KILN_OK;
}

void area_plan_free(area_plan *plan)
{
    for (int i = 0; plan->runs && i < plan->nruns; i++) free(plan->runs[i].mult);
    free(plan->runs);
    *plan = (area_plan){0};
}

kiln_status area_plan_make(const kiln_conditioning_part *parts[2], const int nparts[2], int latent_h,
                           int latent_w, area_plan *plan)
{
    *plan = (area_plan){0};
    /* each side's parts, then the other side's areas copied to it */
    const int most = nparts[0] + nparts[1];
    resolved_part *list[2] = {calloc((size_t)most, sizeof(resolved_part)), calloc((size_t)most, sizeof(resolved_part))};
    float **masks = calloc((size_t)most, sizeof *masks);
    int n[2] = {nparts[0], nparts[1]};
    kiln_status st = list[0] && list[1] && masks ? KILN_OK
                                                 : kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    for (int side = 0; side < 2 && st == KILN_OK; side++)
        for (int i = 0; i < nparts[side] && st == KILN_OK; i++)
            st = resolve_part(&parts[side][i], side, i, latent_h, latent_w, &list[side][i],
                              &masks[side * nparts[0] + i]);
    /* ComfyUI's positive side first: its areas go to the negative side, whose parts then give theirs back */
    for (int k = 1; k >= 0 && st == KILN_OK; k--)
        for (int i = 0; i < n[k]; i++) add_opposite_area(list[!k], &n[!k], &list[k][i]);
    if (st == KILN_OK && !(plan->runs = calloc((size_t)(n[0] + n[1]), sizeof *plan->runs)))
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    for (int side = 0; side < 2 && st == KILN_OK; side++)
        for (int i = 0; i < n[side] && st == KILN_OK; i++)
            st = make_run(&list[side][i], side, latent_h, latent_w, &plan->runs[plan->nruns++]);
    for (int i = 0; masks && i < most; i++) free(masks[i]);
    free(masks), free(list[0]), free(list[1]);
    if (st != KILN_OK) area_plan_free(plan);
    return st;
}

/* A run's model: its prompt at guidance 1 on its box; runs of one side's
 * prompt and box size share one (a side's rows have its FluxGuidance). */
typedef struct {
    prompt_pair pair;
    const kiln_conditioning *cond;
    int side, h, w;
    int ph, pw;         /* the model's latent: a transformer's box padded to whole 2x2 patches */
    float hi, lo;       /* the sigmas its runs hold together */
} area_model;

struct cond_areas {
    area_plan plan;
    area_model *models;
    int nmodels;
    int *model_of;      /* each run's */
    float *hi, *lo;     /* each run's sigmas */
    int batch, channels, H, W;
    float cfg;
    kiln_guidance guide;
    bool both;          /* the negative side runs: with guidance, or for a CFG++ sampler */
    float *crop, *pred, *sum[2], *count[2];
};

void cond_areas_free(cond_areas *c)
{
    if (!c) return;
    for (int i = 0; c->models && i < c->nmodels; i++) prompt_pair_free(&c->models[i].pair);
    area_plan_free(&c->plan);
    kiln_guidance_free(&c->guide);
    free(c->models), free(c->model_of), free(c->hi), free(c->lo);
    free(c->crop), free(c->pred);
    for (int s = 0; s < 2; s++) free(c->sum[s]), free(c->count[s]);
    free(c);
}

/* What the area runs cannot carry: what ComfyUI would crop or run per box
 * beside the prompt. */
static kiln_status refuse_with_areas(const kiln_sampling_job *job)
{
    const char *what = job->inpaint ? "inpainting" : job->edit_latent ? "a picture to edit (InstructPix2Pix, FLUX.1 "
                       "Canny/Depth)" : job->ncontrols ? "ControlNet" : job->nimage_prompts ? "IP-Adapter" :
                       job->nreferences[0] || job->nreferences[1] ? "reference latents (FLUX.1 Kontext)" :
                       job->skip_layer_guidance ? "SkipLayerGuidance" : job->pag_scale > 0.0f ?
                       "PerturbedAttentionGuidance" : job->sag ? "SelfAttentionGuidance" : NULL;
    if (!what) return KILN_OK;
    return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: prompts on areas (ConditioningSetArea, mask bounds) with %s: "
                     "kiln samples areas without it", what);
}

kiln_status cond_areas_make(const kiln_model *m, const kiln_sampling_job *job, const kiln_model_sampling *ms,
                            const kiln_conditioning_part *parts[2], const int nparts[2], cond_areas **out)
{
    *out = NULL;
    TRY(refuse_with_areas(job));
    cond_areas *c = calloc(1, sizeof *c);
    if (!c) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    kiln_status st = area_plan_make(parts, nparts, job->latent_h, job->latent_w, &c->plan);
    const int nruns = c->plan.nruns;
    const int C = kiln_model_latent_channels(m);
    const size_t n = (size_t)job->batch * C * job->latent_h * job->latent_w;
    c->batch = job->batch, c->channels = C, c->H = job->latent_h, c->W = job->latent_w;
    c->cfg = job->cfg;
    if (st == KILN_OK) st = kiln_guidance_init(&c->guide, &job->cfg_patches, n, C, c->H, c->W);
    c->both = fabsf(job->cfg - 1.0f) > 1e-9f || kiln_sampler_is_cfg_pp(job->sampler);
    if (st == KILN_OK) {
        c->models = calloc((size_t)nruns, sizeof *c->models);
        c->model_of = malloc((size_t)nruns * sizeof *c->model_of);
        c->hi = malloc((size_t)nruns * sizeof *c->hi), c->lo = malloc((size_t)nruns * sizeof *c->lo);
        /* a box padded to whole patches may pass the latent by a pixel each way */
        const size_t padded = (size_t)job->batch * C * (job->latent_h + 1) * (job->latent_w + 1);
        c->crop = malloc(padded * sizeof(float)), c->pred = malloc(padded * sizeof(float));
        for (int s = 0; s < 2; s++) c->sum[s] = malloc(n * sizeof(float)), c->count[s] = malloc(n * sizeof(float));
        if (!c->models || !c->model_of || !c->hi || !c->lo || !c->crop || !c->pred || !c->sum[0] || !c->sum[1] ||
            !c->count[0] || !c->count[1])
            st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "ksampler: out of host memory");
    }
    for (int i = 0; i < nruns && st == KILN_OK; i++) {
        const area_run *r = &c->plan.runs[i];
        const kiln_conditioning_part *from = &parts[r->source_side][r->source];
        c->hi[i] = kiln_percent_to_sigma(ms, from->start_percent);
        c->lo[i] = kiln_percent_to_sigma(ms, from->end_percent);
        const kiln_conditioning *cond = parts[r->side][r->text].cond;
        int k = 0;
        while (k < c->nmodels && !(c->models[k].cond == cond && c->models[k].side == r->side &&
                                   c->models[k].h == r->h && c->models[k].w == r->w))
            k++;
        c->model_of[i] = k;
        area_model *am = &c->models[k];
        if (k < c->nmodels) {
            am->hi = fmaxf(am->hi, c->hi[i]), am->lo = fminf(am->lo, c->lo[i]);
            continue;
        }
        c->nmodels++;
        /* a transformer reads whole 2x2 patches: ComfyUI's pad_to_patch_size wraps the box round (circular) */
        const int odd_h = kiln_model_is_dit(m) && r->h % 2, odd_w = kiln_model_is_dit(m) && r->w % 2;
        *am = (area_model){.cond = cond, .side = r->side, .h = r->h, .w = r->w, .ph = r->h + odd_h,
                           .pw = r->w + odd_w, .hi = c->hi[i], .lo = c->lo[i]};
        if (r->side == 0 && !c->both) continue; /* never called */
        /* a negative prompt's rows take the negative side's FluxGuidance */
        kiln_sampling_job side = *job;
        if (r->side == 0) side.flux_guidance = job->negative_flux_guidance;
        side.cfg_patches = (kiln_cfg_patches){0}; /* the areas' guidance takes them, on the sums */
        st = prompt_pair_make(m, &side, ms, cond, cond, NULL, am->ph, am->pw, 1.0f, &am->pair);
    }
    if (st != KILN_OK) {
        cond_areas_free(c);
        return st;
    }
    *out = c;
    return KILN_OK;
}

/* Each image's and channel's box of x -> crop (B,C,ph,pw), the box wrapped
 * round into the padding; and back: dst += pred * mult, count += mult over
 * the box. */
static void crop_box(const cond_areas *c, const area_run *r, const area_model *am, const float *x, float *crop)
{
    for (int bc = 0; bc < c->batch * c->channels; bc++)
        for (int y = 0; y < am->ph; y++)
            for (int j = 0; j < am->pw; j++)
                crop[((size_t)bc * am->ph + y) * am->pw + j] =
                    x[((size_t)bc * c->H + r->y + y % r->h) * c->W + r->x + j % r->w];
}

static void add_box(const cond_areas *c, const area_run *r, const area_model *am, const float *pred, float *sum,
                    float *count)
{
    for (int bc = 0; bc < c->batch * c->channels; bc++)
        for (int y = 0; y < r->h; y++)
            for (int x = 0; x < r->w; x++) {
                const size_t at = ((size_t)bc * c->H + r->y + y) * c->W + r->x + x;
                const float m = r->mult[(size_t)y * r->w + x];
                sum[at] += pred[((size_t)bc * am->ph + y) * am->pw + x] * m;
                count[at] += m;
            }
}

kiln_status cond_areas_call(void *ctx, const float *x, float sigma, float *denoised)
{
    cond_areas *c = ctx;
    const size_t n = (size_t)c->batch * c->channels * c->H * c->W, plane = (size_t)c->H * c->W;
    /* the sigmas only fall: a model whose runs all ended above this one will not run again */
    for (int k = 0; k < c->nmodels; k++)
        if (c->models[k].pair.made && c->models[k].lo > sigma) prompt_pair_free(&c->models[k].pair);
    for (int side = 1; side >= 0; side--) {
        if (side == 0 && !c->both) break;
        /* ComfyUI's out_conds and out_counts: a pixel no run weights comes out 0 */
        for (size_t i = 0; i < n; i++) c->sum[side][i] = 0.0f, c->count[side][i] = 1e-37f;
        for (int i = 0; i < c->plan.nruns; i++) {
            const area_run *r = &c->plan.runs[i];
            if (r->side != side || sigma > c->hi[i] || sigma < c->lo[i]) continue;
            area_model *am = &c->models[c->model_of[i]];
            crop_box(c, r, am, x, c->crop);
            TRY(kiln_denoiser_call(&am->pair.d, c->crop, sigma, c->pred));
            add_box(c, r, am, c->pred, c->sum[side], c->count[side]);
        }
        for (size_t i = 0; i < n; i++) {
            if (!(c->count[side][i] > 1e-37f))
                return kiln_fail(KILN_ERR_UNSUPPORTED, "ksampler: at sigma %g no part of the %s prompt covers latent "
                                 "pixel (%zu, %zu) (ComfyUI would sample it on a zero prediction); give the side a "
                                 "part over all of the picture", sigma, side_name(side), i % plane % (size_t)c->W,
                                 i % plane / (size_t)c->W);
            c->sum[side][i] /= c->count[side][i];
        }
    }
    const float *cond = c->sum[1], *uncond = c->sum[0];
    if (!c->both) { /* cfg 1: the patches that need no unconditional prediction */
        memcpy(denoised, cond, n * sizeof *denoised);
        kiln_guide_alone(&c->guide, x, c->batch, n / (size_t)c->batch, denoised);
        return KILN_OK;
    }
    /* the patches as the denoiser applies them: where the negative side runs for guidance */
    if (fabsf(c->cfg - 1.0f) > 1e-9f) {
        kiln_guide(&c->guide, x, cond, uncond, sigma, c->cfg, c->batch, n / (size_t)c->batch, denoised);
    } else {
        for (size_t i = 0; i < n; i++) denoised[i] = uncond[i] + (cond[i] - uncond[i]) * c->cfg;
    }
    return KILN_OK;
}

kiln_status cond_areas_uncond(void *ctx, float *uncond)
{
    const cond_areas *c = ctx;
    memcpy(uncond, c->sum[0], (size_t)c->batch * c->channels * c->H * c->W * sizeof *uncond);
    return KILN_OK;
}
