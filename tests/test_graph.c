/* The activation arena: activations whose lifetimes overlap never share
 * memory, and released ones are reused. */
#include "kiln_test.h"

#include <string.h>

#include "graph.h"

typedef struct chain_ctx { int64_t n; float out[4]; size_t peak_expect; } chain_ctx;

/* x -> a = 2x -> b = a + x -> c = 2b; with releases, at most three
 * activations are alive at once. */
static kiln_status chain(kiln_graph *g, void *ctx)
{
    chain_ctx *c = ctx;
    float host[4] = {1, 2, 3, 4};
    kiln_tensor *x, *a, *b, *y;
    int64_t shape[1] = {c->n};
    kiln_status st;
    if ((st = kiln_graph_input(g, &x, KILN_F32, 1, shape, host)) != KILN_OK) return st;
    if ((st = kiln_graph_tensor(g, &a, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_scale(g, &(kiln_scale_params){(int32_t)c->n, 2.0f}, (const kiln_tensor *[]){x}, a))) return st;
    if ((st = kiln_graph_tensor(g, &b, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_add(g, &(kiln_add_params){(int32_t)c->n}, (const kiln_tensor *[]){a, x}, b))) return st;
    kiln_graph_release(g, a);
    kiln_graph_release(g, x);
    if ((st = kiln_graph_tensor(g, &y, 1, shape)) != KILN_OK) return st;
    if ((st = kiln_run_scale(g, &(kiln_scale_params){(int32_t)c->n, 2.0f}, (const kiln_tensor *[]){b}, y))) return st;
    kiln_graph_release(g, b);
    return kiln_graph_output(g, y, c->out, sizeof c->out);
}

static void arena_reuses_released_memory(void **state)
{
    (void)state;
    kiln_backend *be;
    kiln_graph *g;
    assert_kiln_ok(kiln_backend_cpu_create(NULL, &be));
    assert_kiln_ok(kiln_graph_create(be, &g));
    chain_ctx c = {.n = 4};
    assert_kiln_ok(kiln_graph_run(g, chain, &c));
    float expect[4] = {6, 12, 18, 24}; /* 2 (2x + x) */
    for (int i = 0; i < 4; i++) assert_float_equal(c.out[i], expect[i], 0.0f);
    /* four 256-byte slots requested; y reuses a's or x's slot */
    assert_int_equal(kiln_graph_arena_bytes(g), 3 * 256);
    kiln_graph_free(g);
    kiln_backend_free(be);
}

static void shape_mismatch_is_an_error(void **state)
{
    (void)state;
    kiln_tensor a = {.dtype = KILN_F32, .ndim = 1, .shape = {4}};
    kiln_tensor y = {.dtype = KILN_F32, .ndim = 1, .shape = {5}};
    kiln_status st = kiln_check_scale(&(kiln_scale_params){4, 1.0f}, (const kiln_tensor *[]){&a}, &y);
    assert_int_equal(st, KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "scale: y"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_reuses_released_memory),
        cmocka_unit_test(shape_mismatch_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
