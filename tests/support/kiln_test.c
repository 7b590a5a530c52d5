#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "safetensors.h"
#include "sampler.h"
#include "schedule.h"

double kiln_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

const char *kiln_test_data(const char *relative)
{
    static _Thread_local char path[4096];
    snprintf(path, sizeof path, "%s/%s", KILN_TEST_DATA, relative);
    return path;
}

int kiln_test_open_tiny_sd15(kiln_backend **be, kiln_model **m)
{
    if (kiln_backend_open("cpu", NULL, be) != KILN_OK) return -1;
    return kiln_checkpoint_load(*be, kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), NULL, 0, m) == KILN_OK ? 0
                                                                                                                 : -1;
}

void kiln_test_close_model(kiln_backend *be, kiln_model *m)
{
    kiln_model_free(m);
    kiln_backend_free(be);
}

void assert_ksampler_refused_on_flux(const kiln_ksampler_params *p, const char *says)
{
    kiln_backend *be;
    kiln_model *m;
    kiln_conditioning c;
    kiln_latent empty, out;
    assert_kiln_ok(kiln_backend_open("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/tiny"), NULL, 0, &m));
    assert_kiln_ok(kiln_text_encode(m, "a red circle", 0, &c));
    assert_kiln_ok(kiln_empty_latent(m, 32, 32, 1, &empty));
    assert_refused_naming(kiln_ksampler(m, p, &c, &c, &empty, &out), says);
    kiln_latent_free(&empty);
    kiln_conditioning_free(&c);
    kiln_test_close_model(be, m);
}

uint8_t *kiln_test_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    if (size) *size = (size_t)n;
    return buf;
}

void assert_ids_equal(const char *what, const char *name, const int32_t *got, size_t n_got, const int32_t *want,
                      size_t n_want)
{
    for (size_t i = 0; i < n_got && i < n_want; i++)
        if (got[i] != want[i]) fail_msg("%s '%s': id %zu is %d, want %d", what, name, i, got[i], want[i]);
    if (n_got != n_want) fail_msg("%s '%s': %zu ids, want %zu", what, name, n_got, n_want);
}

void kiln_test_renamed_copy(const char *from, const char *strip, const char *add, char path[128])
{
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(from, &f));
    const size_t n = kiln_st_count(f), cut = strlen(strip);
    kiln_st_entry *e = calloc(n, sizeof *e);
    char (*names)[160] = calloc(n, sizeof *names);
    assert_true(e && names);
    for (size_t i = 0; i < n; i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (strncmp(t->name, strip, cut) != 0) fail_msg("%s: tensor '%s' does not start with '%s'", from, t->name, strip);
        snprintf(names[i], sizeof names[i], "%s%s", add, t->name + cut);
        e[i] = (kiln_st_entry){names[i], t->dtype, t->ndim, {0}, t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    char dir[] = "/tmp/kiln_renamed_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(path, 128, "%s/renamed.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, e, n, NULL, 0));
    free(e);
    free(names);
    kiln_st_close(f);
}

void kiln_test_remove_copy(const char *path)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    unlink(path);
    if (slash) *slash = '\0', rmdir(dir);
}

kiln_sampling_job kiln_test_job(const char *sampler, const char *scheduler, int steps, float cfg, uint64_t seed, int h,
                                int w)
{
    kiln_sampling_job job = {.steps = steps, .cfg = cfg, .denoise = 1.0, .seed = seed, .batch = 1, .latent_h = h,
                             .latent_w = w};
    assert_kiln_ok(kiln_sampler_from_name(sampler, &job.sampler));
    assert_kiln_ok(kiln_scheduler_from_name(scheduler, &job.scheduler));
    return job;
}
