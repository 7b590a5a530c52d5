/* Models saved by torch.save (tests/data/torch_files, written by torch 2.x
 * from the safetensors files of the test data): a Lightning .ckpt, a
 * ControlNet .pth, an IP-Adapter .bin of two dicts and a diffusers folder
 * whose VAE is a .bin open to the same tensors, bit for bit, as the
 * safetensors files they were saved from; the temporary file they pass
 * through is gone after every open, whole or failed, and shared by two
 * opens of one file. */
#include "kiln_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"

typedef kiln_status (*open_fn)(const char *path, kiln_checkpoint **out);

/* Every tensor of `want` (by canonical name) in `got` with its type, shape
 * and bytes, and nothing else in `got`. */
static void assert_same_tensors(const kiln_checkpoint *got, const kiln_checkpoint *want)
{
    if (kiln_checkpoint_count(got) != kiln_checkpoint_count(want))
        fail_msg("%s: %zu tensors, the safetensors file's %zu", kiln_checkpoint_path(got), kiln_checkpoint_count(got),
                 kiln_checkpoint_count(want));
    for (size_t i = 0; i < kiln_checkpoint_count(want); i++) {
        const char *name;
        const kiln_st_tensor *w = kiln_checkpoint_at(want, i, &name);
        const kiln_st_tensor *g = kiln_checkpoint_find(got, name);
        if (!g) fail_msg("%s: no tensor %s", kiln_checkpoint_path(got), name);
        if (g->dtype != w->dtype || g->ndim != w->ndim || g->nbytes != w->nbytes ||
            memcmp(g->shape, w->shape, sizeof g->shape) != 0)
            fail_msg("%s: %s is %s of %d dims, %zu bytes; the safetensors file's %s of %d dims, %zu bytes",
                     kiln_checkpoint_path(got), name, kiln_dtype_name(g->dtype), g->ndim, g->nbytes,
                     kiln_dtype_name(w->dtype), w->ndim, w->nbytes);
        if (memcmp(g->data, w->data, w->nbytes) != 0) fail_msg("%s: %s's values differ", kiln_checkpoint_path(got), name);
    }
}

static void same_as(open_fn open, const char *torch_file, const char *safetensors)
{
    kiln_checkpoint *got, *want;
    assert_kiln_ok(open(kiln_test_data(torch_file), &got));
    assert_kiln_ok(open(kiln_test_data(safetensors), &want));
    assert_same_tensors(got, want);
    print_message("  %-40s %zu tensors as %s's\n", torch_file, kiln_checkpoint_count(got), safetensors);
    kiln_checkpoint_close(got);
    kiln_checkpoint_close(want);
}

/* The Lightning checkpoint: its state_dict (a transposed view and a view at
 * an offset among it) without the EMA bookkeeping, the step, the
 * callback's object of a class kiln does not know. */
static void lightning_ckpt(void **state)
{
    (void)state;
    same_as(kiln_checkpoint_open, "torch_files/sd15_tiny_ldm_fp16.ckpt", "tiny/sd15_tiny_ldm_fp16.safetensors");
    kiln_checkpoint *ck;
    assert_kiln_ok(kiln_checkpoint_open(kiln_test_data("torch_files/sd15_tiny_ldm_fp16.ckpt"), &ck));
    assert_false(kiln_checkpoint_has_prefix(ck, "model_ema."));
    assert_string_equal(kiln_checkpoint_path(ck), kiln_test_data("torch_files/sd15_tiny_ldm_fp16.ckpt"));
    kiln_checkpoint_close(ck);
}

static void controlnet_pth(void **state)
{
    (void)state;
    same_as(kiln_checkpoint_open_controlnet, "torch_files/control_tiny.pth", "controlnet/tiny_ldm.safetensors");
}

/* h94's .bin: {"image_proj": {...}, "ip_adapter": {...}} read under the
 * dotted names of its .safetensors form. */
static void ip_adapter_bin(void **state)
{
    (void)state;
    same_as(kiln_checkpoint_open_ip_adapter, "torch_files/ip_adapter_tiny.bin", "ip_adapter/ip_adapter_tiny.safetensors");
}

static char folder[4096];

static void link_into(const char *target, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    if (symlink(target, path) != 0) fail_msg("cannot link %s to %s", path, target);
}

/* The tiny diffusers folder with its VAE's weights as a .bin (the folder's
 * other parts linked in): the tensors of the safetensors folder. */
static void diffusers_folder_bin(void **state)
{
    (void)state;
    snprintf(folder, sizeof folder, "%s/kiln_torch_folder_XXXXXX", P_tmpdir);
    assert_non_null(mkdtemp(folder));
    char vae[4200];
    snprintf(vae, sizeof vae, "%s/vae", folder);
    assert_int_equal(mkdir(vae, 0700), 0);
    char tiny[4096];
    snprintf(tiny, sizeof tiny, "%s", kiln_test_data("tiny/sd15_tiny_diffusers"));
    char target[4200];
    snprintf(target, sizeof target, "%s/model_index.json", tiny);
    link_into(target, "model_index.json");
    snprintf(target, sizeof target, "%s/unet", tiny);
    link_into(target, "unet");
    snprintf(target, sizeof target, "%s/text_encoder", tiny);
    link_into(target, "text_encoder");
    snprintf(target, sizeof target, "%s/vae/config.json", tiny);
    link_into(target, "vae/config.json");
    link_into(kiln_test_data("torch_files/vae/diffusion_pytorch_model.bin"), "vae/diffusion_pytorch_model.bin");
    kiln_checkpoint *got, *want;
    assert_kiln_ok(kiln_checkpoint_open(folder, &got));
    assert_kiln_ok(kiln_checkpoint_open(tiny, &want));
    assert_same_tensors(got, want);
    kiln_checkpoint_close(got);
    kiln_checkpoint_close(want);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
    assert_int_equal(system(cmd), 0);
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* The temporary safetensors file lives in TMPDIR only while it is opened:
 * none is left after an open, nor after a cut file is refused; a TMPDIR
 * that is not there is refused by name. */
static void temporary_file(void **state)
{
    (void)state;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/kiln_torch_tmp_XXXXXX", P_tmpdir);
    assert_non_null(mkdtemp(tmp));
    const char *saved = getenv("TMPDIR");
    char *old = saved ? strdup(saved) : NULL;
    setenv("TMPDIR", tmp, 1);
    kiln_checkpoint *ck, *again;
    assert_kiln_ok(kiln_checkpoint_open_controlnet(kiln_test_data("torch_files/control_tiny.pth"), &ck));
    assert_int_equal(entries(tmp), 0);
    /* opened again while open: the one copy */
    assert_kiln_ok(kiln_checkpoint_open_controlnet(kiln_test_data("torch_files/control_tiny.pth"), &again));
    const char *name;
    const kiln_st_tensor *t = kiln_checkpoint_at(ck, 0, &name);
    assert_ptr_equal(kiln_checkpoint_find(again, name)->data, t->data);
    kiln_checkpoint_close(ck);
    kiln_checkpoint_close(again);

    size_t size;
    uint8_t *whole = kiln_test_read_file(kiln_test_data("torch_files/control_tiny.pth"), &size);
    char cut[4200];
    snprintf(cut, sizeof cut, "%s/../kiln_torch_cut_%d.pth", tmp, (int)getpid());
    FILE *fp = fopen(cut, "wb");
    assert_non_null(fp);
    fwrite(whole, 1, size - 4096, fp); /* the tail: the zip's central directory */
    fclose(fp);
    free(whole);
    assert_refused_naming(kiln_checkpoint_open_controlnet(cut, &ck), "kiln_torch_cut_");
    assert_int_equal(entries(tmp), 0);
    unlink(cut);

    setenv("TMPDIR", "/nonexistent/kiln-tmp", 1);
    assert_refused_naming(kiln_checkpoint_open_controlnet(kiln_test_data("torch_files/control_tiny.pth"), &ck),
                          "/nonexistent/kiln-tmp (TMPDIR)");
    if (old) setenv("TMPDIR", old, 1);
    else unsetenv("TMPDIR");
    free(old);
    rmdir(tmp);
}

/* A safetensors file whose header is 0x280 bytes begins 80 02 as a pickle
 * does: it stays a safetensors file. */
static void safetensors_that_begin_as_pickles(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/kiln_torch_lookalike_%d.safetensors", P_tmpdir, (int)getpid());
    const float x[2] = {1.5f, -2.0f};
    const kiln_st_entry e = {.name = "x", .dtype = KILN_F32, .ndim = 1, .shape = {2}, .data = x};
    char value[1024];
    bool found = false;
    for (size_t n = 0; n < sizeof value - 1 && !found; n++) {
        memset(value, 'v', n);
        value[n] = 0;
        const kiln_st_meta meta = {"padding", value};
        assert_kiln_ok(kiln_st_write(path, &e, 1, &meta, 1));
        size_t size;
        uint8_t *bytes = kiln_test_read_file(path, &size);
        found = bytes[0] == 0x80 && bytes[1] == 0x02 && bytes[2] == 0;
        free(bytes);
    }
    assert_true(found);
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(path, &f));
    assert_int_equal(kiln_st_count(f), 1);
    assert_memory_equal(kiln_st_find(f, "x")->data, x, sizeof x);
    kiln_st_close(f);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lightning_ckpt),
        cmocka_unit_test(controlnet_pth),
        cmocka_unit_test(ip_adapter_bin),
        cmocka_unit_test(diffusers_folder_bin),
        cmocka_unit_test(temporary_file),
        cmocka_unit_test(safetensors_that_begin_as_pickles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
