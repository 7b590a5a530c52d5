#include "tiny_variants.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"
#include "safetensors.h"

typedef struct variant {
    const char *base;   /* the checkpoint it widens, under tests/data */
    const char *golden; /* under tests/data: holds "conv_in.weight" */
    const char *name;
    char path[64];
} variant;

#define TINY_SD1 "tiny/sd15_tiny_ldm_fp32.safetensors"
static variant inpaint = {.base = TINY_SD1, .golden = "inpaint/golden.safetensors", .name = "tiny_inpaint"};
static variant pix2pix = {.base = TINY_SD1, .golden = "pix2pix/golden.safetensors", .name = "tiny_pix2pix"};
static variant sdxl_inpaint = {.base = "sdxl/tiny_sdxl.safetensors", .golden = "sdxl/inpaint.golden.safetensors",
                               .name = "tiny_sdxl_inpaint"};
static variant sd2_inpaint = {.base = "sd2/tiny_sd2.safetensors", .golden = "sd2/inpaint.golden.safetensors",
                              .name = "tiny_sd2_inpaint"};
static variant other = {.base = TINY_SD1, .name = "tiny_other"}; /* no golden: every weight changed */

static void remove_variant(variant *v)
{
    if (!v->path[0]) return;
    unlink(v->path);
    *strrchr(v->path, '/') = '\0';
    rmdir(v->path);
}

static void remove_variants(void)
{
    remove_variant(&inpaint);
    remove_variant(&pix2pix);
    remove_variant(&sdxl_inpaint);
    remove_variant(&sd2_inpaint);
    remove_variant(&other);
}

double tiny_other_weight(double w, size_t i) { return 0.8 * w + 0.05 * sin(0.37 * (double)i + 1.0); }

static const char *write_variant(variant *v)
{
    if (v->path[0]) return v->path;
    char dir[] = "/tmp/kiln_variant_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(v->path, sizeof v->path, "%s/%s.safetensors", dir, v->name);
    kiln_st_file *plain, *goldens = NULL;
    char base[4096];
    snprintf(base, sizeof base, "%s", kiln_test_data(v->base));
    assert_kiln_ok(kiln_st_open(base, &plain));
    if (v->golden) assert_kiln_ok(kiln_st_open(kiln_test_data(v->golden), &goldens));
    size_t n = kiln_st_count(plain);
    kiln_st_entry *e = calloc(n, sizeof *e);
    float **changed = calloc(n, sizeof *changed);
    assert_non_null(e), assert_non_null(changed);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(plain, i);
        if (goldens && strcmp(t->name, "model.diffusion_model.input_blocks.0.0.weight") == 0)
            t = kiln_st_find(goldens, "conv_in.weight");
        e[i] = (kiln_st_entry){kiln_st_at(plain, i)->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        if (goldens || t->dtype != KILN_F32) continue;
        const size_t count = (size_t)kiln_st_numel(t);
        assert_non_null(changed[i] = malloc(count * sizeof(float)));
        for (size_t k = 0; k < count; k++) changed[i][k] = (float)tiny_other_weight(((const float *)t->data)[k], k);
        e[i].data = changed[i];
    }
    assert_kiln_ok(kiln_st_write(v->path, e, n, NULL, 0));
    for (size_t i = 0; i < n; i++) free(changed[i]);
    free(changed);
    free(e);
    kiln_st_close(plain);
    if (goldens) kiln_st_close(goldens);
    static bool registered;
    if (!registered) atexit(remove_variants);
    registered = true;
    return v->path;
}

const char *tiny_inpaint_model(void) { return write_variant(&inpaint); }
const char *tiny_pix2pix_model(void) { return write_variant(&pix2pix); }
const char *tiny_sdxl_inpaint_model(void) { return write_variant(&sdxl_inpaint); }
const char *tiny_sd2_inpaint_model(void) { return write_variant(&sd2_inpaint); }
const char *tiny_other_model(void) { return write_variant(&other); }
