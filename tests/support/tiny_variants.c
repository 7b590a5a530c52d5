#include "tiny_variants.h"

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
}

static const char *write_variant(variant *v)
{
    if (v->path[0]) return v->path;
    char dir[] = "/tmp/kiln_variant_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(v->path, sizeof v->path, "%s/%s.safetensors", dir, v->name);
    kiln_st_file *plain, *goldens;
    char base[4096];
    snprintf(base, sizeof base, "%s", kiln_test_data(v->base));
    assert_kiln_ok(kiln_st_open(base, &plain));
    assert_kiln_ok(kiln_st_open(kiln_test_data(v->golden), &goldens));
    size_t n = kiln_st_count(plain);
    kiln_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(plain, i);
        if (strcmp(t->name, "model.diffusion_model.input_blocks.0.0.weight") == 0)
            t = kiln_st_find(goldens, "conv_in.weight");
        e[i] = (kiln_st_entry){kiln_st_at(plain, i)->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    assert_kiln_ok(kiln_st_write(v->path, e, n, NULL, 0));
    free(e);
    kiln_st_close(plain);
    kiln_st_close(goldens);
    static bool registered;
    if (!registered) atexit(remove_variants);
    registered = true;
    return v->path;
}

const char *tiny_inpaint_model(void) { return write_variant(&inpaint); }
const char *tiny_pix2pix_model(void) { return write_variant(&pix2pix); }
const char *tiny_sdxl_inpaint_model(void) { return write_variant(&sdxl_inpaint); }
const char *tiny_sd2_inpaint_model(void) { return write_variant(&sd2_inpaint); }
