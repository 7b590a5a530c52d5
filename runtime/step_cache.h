/* EasyCache's and LazyCache's state over one sampling run (kiln.h's
 * kiln_step_cache says what they do): what they measured of the last
 * computed step, and each row's last change (output minus input). The
 * denoiser says what the input and output are: the diffusion model's rows,
 * or the sampler's latent and the guided prediction. */
#ifndef KILN_STEP_CACHE_H
#define KILN_STEP_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"
#include "schedule.h"

typedef struct kiln_step_cache_state {
    kiln_step_cache_kind kind;
    double threshold;
    float start_sigma, end_sigma; /* acting at sigma <= start (and measuring from there), while sigma > end */
    /* EasyCache measures from its first step in range on (ComfyUI's first cond seen there); LazyCache always */
    bool started;
    bool have_prev, have_rate, measured;
    double rate, cumulative, out_norm, input_change;
    float *x_prev, *out_prev; /* the last computed step's subsampled input and output */
    size_t nsub;
    float *change; /* each row's output minus its input (the output's channels of it) */
    int skipped;
} kiln_step_cache_state;

/* For inputs subsampling to nsub values and changes of nchange values. */
kiln_status kiln_step_cache_init(kiln_step_cache_state *c, const kiln_step_cache *params, const kiln_model_sampling *ms,
                                 size_t nsub, size_t nchange);
void kiln_step_cache_free(kiln_step_cache_state *c);
/* The settings' bounds, named by `who` in the message. */
kiln_status kiln_step_cache_check(const kiln_step_cache *params, const char *who);

/* Whether the cache takes part at sigma (above its end); past it the model
 * runs and nothing is kept. */
bool kiln_step_cache_active(const kiln_step_cache_state *c, float sigma);
/* rows x channels x h x w -> every 8th pixel each way (from 0) of every row
 * and channel, into out; the values written. */
size_t kiln_step_cache_subsample(const float *x, int rows, int channels, int h, int w, float *out);
/* Before a step at sigma with the subsampled input xs: true where it is to
 * be skipped (its change reused). */
bool kiln_step_cache_skip(kiln_step_cache_state *c, float sigma, const float *xs);
/* After a computed step: its subsampled input xs and output os, and the
 * output's mean magnitude. */
void kiln_step_cache_ran(kiln_step_cache_state *c, const float *xs, const float *os, double out_norm);
/* mean |a - b| (b NULL: mean |a|) in double */
double kiln_mean_abs(const float *a, const float *b, size_t n);

#endif
