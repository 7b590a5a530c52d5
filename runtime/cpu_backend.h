/* CPU backend internals shared by its files: host buffers, the backend's
 * state (thread pool, scratch) and the fast paths behind its op table, each
 * tested against its plain loop in cpu_ref.c by the op suite.
 *
 * A backend runs one op at a time: the scratch is reused from op to op and
 * never shrinks, so its size is the largest any op asked for. */
#ifndef KILN_CPU_BACKEND_H
#define KILN_CPU_BACKEND_H

#include "backend.h"
#include "cpu_ref.h"
#include "cpu_threads.h"

struct kiln_buffer {
    void *base;
    size_t size;
    int owned; /* 0: wraps weights in a checkpoint mmap */
};

static inline void *cpu_ptr(const kiln_tensor *t) { return (char *)t->buffer->base + t->offset; }
static inline kiln_weight_ptr cpu_weight(const kiln_tensor *t)
{
    return (kiln_weight_ptr){t ? cpu_ptr(t) : NULL, t ? t->dtype : KILN_F32};
}

typedef struct cpu_state {
    cpu_pool *pool;
    int threads;
    float *shared;      /* one op's widened weights */
    size_t shared_cap;  /* floats */
    float **local;      /* (threads) per-thread scratch: tiles, im2col columns */
    size_t local_cap;   /* floats in each */
} cpu_state;

/* Grows the scratch to at least `shared` floats and `local` floats per
 * thread. KILN_ERR_OUT_OF_MEMORY names the bytes asked for. */
kiln_status cpu_scratch_reserve(cpu_state *s, size_t shared, size_t local);

/* dst[0..n) = elements [first, first + n) of w widened to f32. */
void cpu_widen(float *dst, kiln_weight_ptr w, size_t first, size_t n);

/* The fast paths: same contracts as cpu_ref.h, threaded over s->pool. */
kiln_status cpu_matmul(cpu_state *s, const kiln_matmul_params *p, const float *x, kiln_weight_ptr w,
                       kiln_weight_ptr bias, float *y);
kiln_status cpu_conv2d(cpu_state *s, const kiln_conv2d_params *p, const float *x, kiln_weight_ptr w,
                       kiln_weight_ptr bias, float *y);
kiln_status cpu_attention(cpu_state *s, const kiln_attention_params *p, const float *q, const float *k,
                          const float *v, const float *bias, float *o);
void cpu_group_norm(cpu_state *s, const kiln_group_norm_params *p, const float *x, kiln_weight_ptr gamma,
                    kiln_weight_ptr beta, float *y);
kiln_status cpu_layer_norm(cpu_state *s, const kiln_layer_norm_params *p, const float *x, kiln_weight_ptr gamma,
                           kiln_weight_ptr beta, float *y);
kiln_status cpu_rms_norm(cpu_state *s, const kiln_rms_norm_params *p, const float *x, kiln_weight_ptr gamma,
                         float *y);
kiln_status cpu_ada_layer_norm(cpu_state *s, const kiln_ada_layer_norm_params *p, const float *x,
                               const float *mod, kiln_weight_ptr table, float *y);
void cpu_rope(cpu_state *s, const kiln_rope_params *p, const float *x, const float *freqs, float *y);
void cpu_softmax(cpu_state *s, const kiln_softmax_params *p, const float *x, float *y);
void cpu_silu(cpu_state *s, const kiln_silu_params *p, const float *x, float *y);
void cpu_sigmoid(cpu_state *s, const kiln_sigmoid_params *p, const float *x, float *y);
void cpu_activation(cpu_state *s, const kiln_activation_params *p, const float *x, float *y);
void cpu_gelu(cpu_state *s, const kiln_gelu_params *p, const float *x, float *y);
void cpu_quick_gelu(cpu_state *s, const kiln_quick_gelu_params *p, const float *x, float *y);
void cpu_gelu_tanh(cpu_state *s, const kiln_gelu_tanh_params *p, const float *x, float *y);
void cpu_geglu(cpu_state *s, const kiln_geglu_params *p, const float *x, float *y);
void cpu_add(cpu_state *s, const kiln_add_params *p, const float *a, const float *b, float *y);
kiln_status cpu_gated_add(cpu_state *s, const kiln_gated_add_params *p, const float *x, const float *y,
                          const float *mod, kiln_weight_ptr table, float *out);
void cpu_mul(cpu_state *s, const kiln_mul_params *p, const float *a, const float *b, float *y);
void cpu_scale(cpu_state *s, const kiln_scale_params *p, const float *a, float *y);
void cpu_leaky_relu(cpu_state *s, const kiln_leaky_relu_params *p, const float *x, float *y);
void cpu_add_channel_bias(cpu_state *s, const kiln_add_channel_bias_params *p, const float *x, const float *b,
                          float *y);
void cpu_concat_channels(cpu_state *s, const kiln_concat_channels_params *p, const float *a, const float *b,
                         float *y);
void cpu_upsample_nearest2x(cpu_state *s, const kiln_upsample_nearest2x_params *p, const float *x, float *y);
void cpu_transpose(cpu_state *s, const kiln_transpose_params *p, const float *x, float *y);

/* A CPU backend whose ops are the plain loops of cpu_ref.c: the yardstick the
 * op tests check against float64, and the baseline the bench compares with. */
kiln_status kiln_backend_cpu_reference_create(const kiln_backend_options *opt, kiln_backend **out);

#endif
