/* SelfAttentionGuidance's degraded prediction (see sag.h). */
#include "sag.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "status.h"

kiln_status kiln_sag_key_weights(const float *q, const float *k, int tokens, int channels, int heads,
                                 float *weights)
{
    const int T = tokens, D = channels / heads;
    float *scores = malloc((size_t)T * T * sizeof *scores);
    double *sum = calloc((size_t)T, sizeof *sum);
    if (!scores || !sum) {
        free(scores);
        free(sum);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "SelfAttentionGuidance: out of host memory for %d tokens", T);
    }
    for (int h = 0; h < heads; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f / sqrtf((float)D), q + h * D, channels,
                    k + h * D, channels, 0.0f, scores, T);
        for (int i = 0; i < T; i++) { /* each query's softmax over the keys */
            float *row = scores + (size_t)i * T, top = row[0], total = 0.0f;
            for (int j = 1; j < T; j++) top = fmaxf(top, row[j]);
            for (int j = 0; j < T; j++) total += row[j] = expf(row[j] - top);
            for (int j = 0; j < T; j++) sum[j] += row[j] / total;
        }
    }
    for (int j = 0; j < T; j++) weights[j] = (float)(sum[j] / heads);
    free(scores);
    free(sum);
    return KILN_OK;
}

bool kiln_sag_grid(int tokens, int h, int w, int *rows, int *cols)
{
    /* Python's round: halves to even, as rint does in the default rounding mode */
    const int x = (int)rint(sqrt((double)h / w * tokens));
    for (int i = 0; i < (int)floor(sqrt((double)tokens) / 2.0); i++) {
        const int tries[2] = {x + i, x - i > 1 ? x - i : 1};
        for (int t = 0; t < 2; t++)
            if (tries[t] > 0 && tokens % tries[t] == 0) {
                *rows = tries[t];
                *cols = tokens / tries[t];
                return true;
            }
    }
    return false;
}

/* torch's reflect padding: -1 is 1, n is n - 2 */
static int reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * n - 2 - i : i; }

void kiln_sag_degrade(const float *x0, int channels, int h, int w, const float *weights, int rows, int cols,
                      float blur_sigma, float *degraded, float *mask)
{
    enum { K = 9, HALF = K / 2 };
    float taps[K], total = 0.0f;
    for (int i = 0; i < K; i++) {
        const float at = (float)(i - HALF) / blur_sigma;
        total += taps[i] = expf(-0.5f * at * at);
    }
    for (int i = 0; i < K; i++) taps[i] /= total;
    /* F.interpolate's nearest: source index floor(i * in / out) in float32 */
    const float row_scale = (float)rows / (float)h, col_scale = (float)cols / (float)w;
    const size_t plane = (size_t)h * w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int r = (int)floorf((float)y * row_scale), c = (int)floorf((float)x * col_scale);
            r = r < rows - 1 ? r : rows - 1, c = c < cols - 1 ? c : cols - 1;
            const float m = weights[r * cols + c] > 1.0f ? 1.0f : 0.0f;
            if (mask) mask[(size_t)y * w + x] = m;
            for (int ch = 0; ch < channels; ch++) {
                const float *in = x0 + ch * plane;
                float blurred = 0.0f;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++)
                        blurred += taps[i] * taps[j] * in[(size_t)reflect(y + i - HALF, h) * w + reflect(x + j - HALF, w)];
                const size_t at = ch * plane + (size_t)y * w + x;
                degraded[at] = blurred * m + in[(size_t)y * w + x] * (1.0f - m);
            }
        }
}
