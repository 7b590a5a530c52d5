/* EasyCache's and LazyCache's bookkeeping (ComfyUI's EasyCacheHolder and
 * LazyCacheHolder), as step_cache.h says. */
#include "step_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define SUBSAMPLE 8 /* the nodes' subsample_factor */

kiln_status kiln_step_cache_check(const kiln_step_cache *p, const char *who)
{
    if (p->kind != KILN_EASY_CACHE && p->kind != KILN_LAZY_CACHE)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: step cache kind %d (EasyCache or LazyCache)", who, (int)p->kind);
    const char *name = p->kind == KILN_EASY_CACHE ? "EasyCache" : "LazyCache";
    if (!(p->reuse_threshold >= 0.0 && p->reuse_threshold <= 3.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s reuse_threshold %g: 0 to 3", who, name, p->reuse_threshold);
    if (!(p->start_percent >= 0.0 && p->start_percent <= p->end_percent && p->end_percent <= 1.0))
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: %s start_percent %g and end_percent %g: 0 <= start <= end <= 1",
                         who, name, p->start_percent, p->end_percent);
    return KILN_OK;
}

kiln_status kiln_step_cache_init(kiln_step_cache_state *c, const kiln_step_cache *p, const kiln_model_sampling *ms,
                                 size_t nsub, size_t nchange)
{
    *c = (kiln_step_cache_state){.kind = p->kind, .threshold = p->reuse_threshold, .nsub = nsub,
                                 .start_sigma = kiln_percent_to_sigma(ms, p->start_percent),
                                 .end_sigma = kiln_percent_to_sigma(ms, p->end_percent)};
    c->x_prev = malloc(2 * nsub * sizeof *c->x_prev);
    c->change = malloc(nchange * sizeof *c->change);
    if (!c->x_prev || !c->change) {
        kiln_step_cache_free(c);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "step cache: out of host memory");
    }
    c->out_prev = c->x_prev + nsub;
    return KILN_OK;
}

void kiln_step_cache_free(kiln_step_cache_state *c)
{
    free(c->x_prev);
    free(c->change);
    c->x_prev = c->out_prev = c->change = NULL;
}

bool kiln_step_cache_active(const kiln_step_cache_state *c, float sigma) { return sigma > c->end_sigma; }

size_t kiln_step_cache_subsample(const float *x, int rows, int channels, int h, int w, float *out)
{
    size_t n = 0;
    for (int p = 0; p < rows * channels; p++)
        for (int i = 0; i < h; i += SUBSAMPLE)
            for (int j = 0; j < w; j += SUBSAMPLE) out[n++] = x[((size_t)p * h + i) * w + j];
    return n;
}

double kiln_mean_abs(const float *a, const float *b, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += fabs((double)a[i] - (b ? (double)b[i] : 0.0));
    return n ? sum / (double)n : 0.0;
}

bool kiln_step_cache_skip(kiln_step_cache_state *c, float sigma, const float *xs)
{
    c->measured = false;
    if (!(sigma <= c->start_sigma)) return false; /* before the range: computed, and kept (LazyCache measures) */
    c->started = true;
    if (!c->have_prev) return false;
    c->input_change = kiln_mean_abs(xs, c->x_prev, c->nsub);
    c->measured = true;
    if (!c->have_rate) return false;
    c->cumulative += c->rate * c->input_change / c->out_norm;
    if (c->cumulative < c->threshold) {
        c->skipped++;
        return true;
    }
    c->cumulative = 0.0;
    return false;
}

void kiln_step_cache_ran(kiln_step_cache_state *c, const float *xs, const float *os, double out_norm)
{
    if (c->kind == KILN_EASY_CACHE && !c->started) return; /* its first cond is not known before the range */
    if (c->have_prev && c->measured) {
        c->rate = kiln_mean_abs(os, c->out_prev, c->nsub) / c->input_change;
        c->have_rate = true;
    }
    memcpy(c->x_prev, xs, c->nsub * sizeof *xs);
    memcpy(c->out_prev, os, c->nsub * sizeof *os);
    c->out_norm = out_norm;
    c->have_prev = true;
}
