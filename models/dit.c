#include "dit.h"

#include <stdio.h>

#include "status.h"

kiln_status kiln_dit_bind_linear(kiln_weights *w, const char *root, const char *prefix, int64_t out, int64_t in,
                                 const tensor **weight, const tensor **bias)
{
    char suffix[256];
    snprintf(suffix, sizeof suffix, "%s.weight", prefix);
    TRY(kiln_weights_bind_linear(w, weight, root, suffix, out, in));
    snprintf(suffix, sizeof suffix, "%s.bias", prefix);
    return KILN_BIND(w, bias, root, suffix, out);
}

kiln_status kiln_mlp_bind(kiln_weights *w, const char *root, const char *prefix, int64_t in, int64_t out,
                          bool gelu_tanh, kiln_mlp *m)
{
    char part[200];
    m->gelu_tanh = gelu_tanh;
    snprintf(part, sizeof part, "%s.linear_1", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, out, in, &m->w1, &m->b1));
    snprintf(part, sizeof part, "%s.linear_2", prefix);
    return kiln_dit_bind_linear(w, root, part, out, out, &m->w2, &m->b2);
}

kiln_status kiln_feed_forward_bind(kiln_weights *w, const char *root, const char *prefix, int64_t D, kiln_mlp *m)
{
    char part[200 + 16]; /* prefixes are shorter than 200 */
    m->gelu_tanh = true;
    snprintf(part, sizeof part, "%s.net.0.proj", prefix);
    TRY(kiln_dit_bind_linear(w, root, part, 4 * D, D, &m->w1, &m->b1));
    snprintf(part, sizeof part, "%s.net.2", prefix);
    return kiln_dit_bind_linear(w, root, part, D, 4 * D, &m->w2, &m->b2);
}

kiln_status kiln_mlp_forward(kiln_graph *g, const kiln_mlp *m, const tensor *x, tensor **y)
{
    tensor *h, *a;
    TRY(nn_linear(g, x, m->w1, m->b1, &h));
    TRY(m->gelu_tanh ? nn_gelu_tanh(g, h, &a) : nn_silu(g, h, &a));
    nn_drop(g, &h);
    TRY(nn_linear(g, a, m->w2, m->b2, y));
    nn_drop(g, &a);
    return KILN_OK;
}

tensor kiln_row_view(const tensor *x, int64_t r)
{
    tensor v = *x;
    v.shape[0] = 1;
    v.offset += (size_t)(r * x->shape[1] * x->shape[2]) * sizeof(float);
    return v;
}

/* The latent index of value k of token n (row-major over the patch grid). */
static size_t latent_at(int r, int n, int k, int C, int h, int w, int p, bool channels_last)
{
    const int cols = w / p, y = (n / cols) * p, x = (n % cols) * p;
    int c, i, j;
    if (channels_last) c = k % C, j = (k / C) % p, i = k / (C * p);
    else j = k % p, i = (k / p) % p, c = k / (p * p);
    return (((size_t)r * C + c) * h + y + i) * w + x + j;
}

void kiln_patchify(const float *latent, int B, int C, int h, int w, int p, float *tokens)
{
    const int N = (h / p) * (w / p), K = C * p * p;
    for (int r = 0; r < B; r++)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) *tokens++ = latent[latent_at(r, n, k, C, h, w, p, false)];
}

void kiln_unpatchify(const float *tokens, int B, int C, int h, int w, int p, bool channels_last, float *latent)
{
    const int N = (h / p) * (w / p), K = C * p * p;
    for (int r = 0; r < B; r++)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) latent[latent_at(r, n, k, C, h, w, p, channels_last)] = *tokens++;
}
