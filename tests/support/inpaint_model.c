#include "inpaint_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"
#include "safetensors.h"

static char path[64];

static void remove_model(void)
{
    unlink(path);
    *strrchr(path, '/') = '\0';
    rmdir(path);
}

const char *tiny_inpaint_model(void)
{
    if (path[0]) return path;
    static char dir[] = "/tmp/kiln_inpaint_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tiny_inpaint.safetensors", dir);
    kiln_st_file *plain, *goldens;
    assert_kiln_ok(kiln_st_open(KILN_TEST_DATA "/tiny/sd15_tiny_ldm_fp32.safetensors", &plain));
    assert_kiln_ok(kiln_st_open(KILN_TEST_DATA "/inpaint/golden.safetensors", &goldens));
    size_t n = kiln_st_count(plain);
    kiln_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(plain, i);
        if (strcmp(t->name, "model.diffusion_model.input_blocks.0.0.weight") == 0)
            t = kiln_st_find(goldens, "conv_in.weight");
        e[i] = (kiln_st_entry){kiln_st_at(plain, i)->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    assert_kiln_ok(kiln_st_write(path, e, n, NULL, 0));
    free(e);
    kiln_st_close(plain);
    kiln_st_close(goldens);
    atexit(remove_model);
    return path;
}
