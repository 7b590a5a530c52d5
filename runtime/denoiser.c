#include "denoiser.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

/* ComfyUI skips the unconditional half when guidance is exactly 1. */
static bool uses_guidance(float cfg) { return fabsf(cfg - 1.0f) > 1e-9f; }

kiln_status kiln_denoiser_init(kiln_denoiser *d, const kiln_model *m, const kiln_model_sampling *sampling,
                               int batch, int h, int w, float cfg, const float *context, int tokens)
{
    if (batch < 1 || batch > KILN_MAX_BATCH)
        return kiln_fail(KILN_ERR_INVALID_ARG, "--batch %d: must be 1..%d", batch, KILN_MAX_BATCH);
    *d = (kiln_denoiser){.model = m, .batch = batch, .channels = m->unet.config->in_channels, .h = h, .w = w,
                         .cfg = cfg, .context = context, .tokens = tokens, .sampling = sampling};
    d->rows = uses_guidance(cfg) ? 2 * batch : batch;
    size_t n = (size_t)d->rows * d->channels * h * w;
    d->unet_in = malloc(n * sizeof(float));
    d->unet_eps = malloc(n * sizeof(float));
    if (!d->unet_in || !d->unet_eps) {
        kiln_denoiser_free(d);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "denoiser: out of host memory");
    }
    TRY(kiln_graph_create(m->weights ? kiln_weights_backend(m->weights) : NULL, &d->graph));
    kiln_graph_set_replay(d->graph, true); /* every step runs the same ops */
    return KILN_OK;
}

void kiln_denoiser_free(kiln_denoiser *d)
{
    kiln_graph_free(d->graph);
    free(d->unet_in);
    free(d->unet_eps);
    d->graph = NULL;
    d->unet_in = d->unet_eps = NULL;
}

static kiln_status unet_step(kiln_graph *g, void *ctx)
{
    kiln_denoiser *d = ctx;
    const kiln_model *m = d->model;
    tensor *x, *t, *c, *eps;
    TRY(kiln_graph_input(g, &x, KILN_F32, 4, (int64_t[]){d->rows, d->channels, d->h, d->w}, d->unet_in));
    TRY(kiln_graph_input(g, &t, KILN_F32, 1, (int64_t[]){d->rows}, d->timesteps));
    /* without guidance only the cond rows (the second half) are used */
    const float *context = d->context;
    if (d->rows == d->batch) context += (size_t)d->batch * d->tokens * m->unet.config->context_dim;
    TRY(kiln_graph_input(g, &c, KILN_F32, 3, (int64_t[]){d->rows, d->tokens, m->unet.config->context_dim}, context));
    TRY(kiln_unet_forward(g, &m->unet, x, t, c, NULL, NULL, NULL, &eps));
    return kiln_graph_output(g, eps, d->unet_eps, kiln_tensor_nbytes(eps));
}

kiln_status kiln_denoiser_call(void *ctx, const float *x, float sigma, float *denoised)
{
    kiln_denoiser *d = ctx;
    size_t per_batch = (size_t)d->batch * d->channels * d->h * d->w;
    float in_scale = 1.0f / sqrtf(sigma * sigma + 1.0f);
    float timestep = (float)kiln_sigma_to_timestep(d->sampling, sigma);
    for (int r = 0; r < d->rows; r++) d->timesteps[r] = timestep;
    for (int copy = 0; copy < d->rows / d->batch; copy++)
        for (size_t i = 0; i < per_batch; i++) d->unet_in[copy * per_batch + i] = x[i] * in_scale;

    TRY(kiln_graph_run(d->graph, unet_step, d));
    d->unet_calls++;

    /* x0 = x - sigma * eps per half, then guidance in x0 space */
    const float *eps_uncond = d->unet_eps, *eps_cond = d->unet_eps + (d->rows == d->batch ? 0 : per_batch);
    for (size_t i = 0; i < per_batch; i++) {
        float cond = x[i] - eps_cond[i] * sigma;
        if (d->rows == d->batch) {
            denoised[i] = cond;
        } else {
            float uncond = x[i] - eps_uncond[i] * sigma;
            denoised[i] = uncond + (cond - uncond) * d->cfg;
        }
    }
    return KILN_OK;
}
