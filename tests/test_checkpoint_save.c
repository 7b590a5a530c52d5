/* CheckpointSave (kiln_model_save_checkpoint), VAESave and ModelSave: the tiny SD 1.x, 2.x and XL
 * single files saved again are the files they were loaded from, tensor for
 * tensor and byte for byte (SD 2.x's and SDXL's OpenCLIP towers mapped back
 * and their q, k, v fused again); their diffusers folders saved as single
 * files are those single files (written by the test-data scripts from the
 * same weights), each tensor's bytes equal; a LoRA merged at load is in the
 * saved weights; DiT single files in their original names saved again are
 * those files (their diffusion model alone, or whole), a LoRA's merge in
 * them; a DiT loaded from a diffusers folder is refused. */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "lora.h"
#include "pipeline.h"

static kiln_backend *be;
static char saved_path[4096];

static int setup(void **state)
{
    (void)state;
    snprintf(saved_path, sizeof saved_path, "%s/kiln_saved_%d.safetensors", P_tmpdir, (int)getpid());
    return kiln_backend_create("cpu", NULL, &be) == KILN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(saved_path);
    kiln_backend_free(be);
    return 0;
}

static bool same_tensor(const kiln_st_tensor *a, const kiln_st_tensor *b)
{
    return a->dtype == b->dtype && a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof a->shape) == 0 &&
           a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Loads `model` (with `lora`, or none), saves it, and returns the saved file. */
static kiln_st_file *load_and_save(const char *model, const kiln_lora *lora, kiln_model **out)
{
    kiln_model *m;
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data(model), lora, lora ? 1 : 0, &m));
    assert_kiln_ok(kiln_model_save_checkpoint(m, saved_path));
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(saved_path, &f));
    if (out) *out = m;
    else kiln_model_free(m);
    return f;
}

/* Every tensor of `saved` is the reference file's of its name; the
 * reference's tensors it lacks are counted (a folder has no position_ids
 * buffers, the single files' schedule buffers), at most `missing`. */
static void assert_saved_as(const kiln_st_file *saved, const char *reference, size_t missing)
{
    kiln_st_file *ref;
    assert_kiln_ok(kiln_st_open(kiln_test_data(reference), &ref));
    for (size_t i = 0; i < kiln_st_count(saved); i++) {
        const kiln_st_tensor *t = kiln_st_at(saved, i), *r = kiln_st_find(ref, t->name);
        if (!r) fail_msg("saved tensor %s is not in %s", t->name, reference);
        if (!same_tensor(t, r)) fail_msg("saved tensor %s differs from %s's", t->name, reference);
    }
    size_t lacking = 0;
    for (size_t i = 0; i < kiln_st_count(ref); i++)
        if (!kiln_st_find(saved, kiln_st_at(ref, i)->name)) {
            print_message("  not saved: %s\n", kiln_st_at(ref, i)->name);
            lacking++;
        }
    print_message("  %-45s %zu tensors as %s's (%zu of its not saved)\n", "saved", kiln_st_count(saved), reference,
                  lacking);
    assert_true(lacking <= missing);
    kiln_st_close(ref);
}

static void single_files_round_trip(void **state)
{
    (void)state;
    static const char *const files[] = {"tiny/sd15_tiny_ldm_fp32.safetensors", "tiny/sd15_tiny_ldm_fp16.safetensors",
                                        "sd2/tiny_sd2.safetensors", "sdxl/tiny_sdxl.safetensors"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        kiln_st_file *saved = load_and_save(files[k], NULL, NULL);
        assert_saved_as(saved, files[k], 0);
        kiln_st_close(saved);
    }
}

static void folders_saved_as_single_files(void **state)
{
    (void)state;
    /* diffusers' SD 2.x text encoder stops at the penultimate layer its pipelines read: the single file's last
       (12 tensors) and its unused logit_scale and text_projection are not in the folder; nor is SDXL's bigG's
       logit_scale */
    static const struct { const char *folder, *single; size_t missing; } pairs[] = {
        {"tiny/sd15_tiny_diffusers", "tiny/sd15_tiny_ldm_fp32.safetensors", 0},
        {"sd2/tiny_sd2_diffusers", "sd2/tiny_sd2.safetensors", 14},
        {"sdxl/tiny_sdxl_diffusers", "sdxl/tiny_sdxl.safetensors", 1}};
    for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
        kiln_st_file *saved = load_and_save(pairs[k].folder, NULL, NULL);
        assert_saved_as(saved, pairs[k].single, pairs[k].missing);
        kiln_st_close(saved);
    }
}

/* The LoRA's merged weights are the saved ones, and it changed some. */
static void lora_merged_in(void **state)
{
    (void)state;
    char path[4096]; /* kiln_test_data's buffer is the next call's */
    snprintf(path, sizeof path, "%s", kiln_test_data("lora/kohya_ldm.safetensors"));
    const kiln_lora lora = {path, 0.7, 0.7};
    kiln_model *m;
    kiln_st_file *saved = load_and_save("tiny/sd15_tiny_ldm_fp32.safetensors", &lora, &m);
    kiln_st_file *plain;
    assert_kiln_ok(kiln_st_open(kiln_test_data("tiny/sd15_tiny_ldm_fp32.safetensors"), &plain));
    int changed = 0;
    for (size_t i = 0; i < kiln_st_count(saved); i++) {
        const kiln_st_tensor *t = kiln_st_at(saved, i);
        assert_true(same_tensor(t, kiln_checkpoint_find(m->checkpoint, t->name)));
        changed += !same_tensor(t, kiln_st_find(plain, t->name));
    }
    print_message("  %d tensors changed by the LoRA\n", changed);
    assert_true(changed > 10);
    kiln_st_close(plain);
    kiln_st_close(saved);
    kiln_model_free(m);
}

/* The tensors of `saved`, each under `add` + its name in `reference`, byte
 * for byte; as many as the reference has under `add` (with strip), or under
 * the saved names' own prefix. */
static void assert_part_saved_as(const kiln_st_file *saved, const char *reference, const char *prefix, bool strip)
{
    kiln_st_file *ref;
    assert_kiln_ok(kiln_st_open(kiln_test_data(reference), &ref));
    for (size_t i = 0; i < kiln_st_count(saved); i++) {
        const kiln_st_tensor *t = kiln_st_at(saved, i);
        char name[600];
        snprintf(name, sizeof name, "%s%s", strip ? prefix : "", t->name);
        const kiln_st_tensor *r = kiln_st_find(ref, name);
        if (!r || !same_tensor(t, r)) fail_msg("saved tensor %s is not %s's %s", t->name, reference, name);
    }
    size_t under = 0;
    for (size_t i = 0; i < kiln_st_count(ref); i++) under += strncmp(kiln_st_at(ref, i)->name, prefix, strlen(prefix)) == 0;
    print_message("  %-45s %zu of %s's %zu tensors under %s\n", "saved", kiln_st_count(saved), reference, under, prefix);
    assert_int_equal(kiln_st_count(saved), under);
    kiln_st_close(ref);
}

/* VAESave and ModelSave: the single file's VAE (its prefix off) and UNet,
 * from the file and from its diffusers folder alike; a DiT's VAE is saved,
 * its diffusion model refused. */
static void vae_and_diffusion_model(void **state)
{
    (void)state;
    static const char *const models[] = {"tiny/sd15_tiny_ldm_fp32.safetensors", "tiny/sd15_tiny_diffusers"};
    for (int k = 0; k < 2; k++) {
        kiln_model *m;
        kiln_st_file *saved;
        assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data(models[k]), NULL, 0, &m));
        assert_kiln_ok(kiln_model_save_vae(m, saved_path));
        assert_kiln_ok(kiln_st_open(saved_path, &saved));
        assert_part_saved_as(saved, models[0], "first_stage_model.", true);
        kiln_st_close(saved);
        assert_kiln_ok(kiln_model_save_diffusion_model(m, saved_path));
        assert_kiln_ok(kiln_st_open(saved_path, &saved));
        assert_part_saved_as(saved, models[0], "model.diffusion_model.", false);
        kiln_st_close(saved);
        kiln_model_free(m);
    }
    kiln_model *flux;
    kiln_st_file *saved;
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/tiny"), NULL, 0, &flux));
    assert_kiln_ok(kiln_model_save_vae(flux, saved_path));
    assert_kiln_ok(kiln_st_open(saved_path, &saved));
    /* the folder's attention linears as the original's 1x1 convs: the same bytes in 4 dimensions */
    const kiln_st_tensor *q = kiln_st_find(saved, "decoder.mid.attn_1.q.weight");
    assert_non_null(q);
    assert_int_equal(q->ndim, 4);
    for (size_t i = 0; i < kiln_st_count(saved); i++) {
        const kiln_st_tensor *t = kiln_st_at(saved, i);
        char name[600];
        snprintf(name, sizeof name, "first_stage_model.%s", t->name);
        const kiln_st_tensor *r = kiln_checkpoint_find(flux->checkpoint, name);
        assert_true(r && r->dtype == t->dtype && r->nbytes == t->nbytes && !memcmp(r->data, t->data, t->nbytes));
    }
    kiln_st_close(saved);
    unlink(saved_path);
    kiln_model_free(flux);
}

/* A DiT loaded from a diffusers folder has no original names to be saved
 * under: refused by name, no file written. */
static void dit_folder_refused(void **state)
{
    (void)state;
    kiln_model *m;
    unlink(saved_path);
    assert_kiln_ok(kiln_checkpoint_load(be, kiln_test_data("flux/tiny"), NULL, 0, &m));
    assert_refused_naming(kiln_model_save_checkpoint(m, saved_path), "a diffusers folder's transformer");
    assert_refused_naming(kiln_model_save_diffusion_model(m, saved_path), "a diffusers folder's transformer");
    assert_int_not_equal(access(saved_path, F_OK), 0);
    kiln_model_free(m);
}

/* Every tensor of the saved file is the reference's under its name (the
 * reference's own, or without model.diffusion_model. where it has none),
 * byte for byte; and there are `count` of them. */
static void assert_dit_saved_as(const char *reference, size_t count)
{
    kiln_st_file *saved, *ref;
    assert_kiln_ok(kiln_st_open(saved_path, &saved));
    assert_kiln_ok(kiln_st_open(kiln_test_data(reference), &ref));
    for (size_t i = 0; i < kiln_st_count(saved); i++) {
        const kiln_st_tensor *t = kiln_st_at(saved, i), *r = kiln_st_find(ref, t->name);
        if (!r && strncmp(t->name, "model.diffusion_model.", 22) == 0) r = kiln_st_find(ref, t->name + 22);
        if (!r || !same_tensor(t, r)) fail_msg("saved tensor %s is not %s's", t->name, reference);
    }
    print_message("  %-45s %zu tensors as %s's\n", "saved", kiln_st_count(saved), reference);
    assert_int_equal(kiln_st_count(saved), count);
    kiln_st_close(ref);
    kiln_st_close(saved);
}

/* DiT single files in their original names (BFL's Flux and Chroma,
 * Stability's SD3, PixArt's; bare or as ComfyUI's checkpoints) written back
 * from the checkpoint they open as: the diffusion model (ModelSave) under
 * model.diffusion_model. is the file's, the q, k, v (and k, v) rows fused
 * again and a final modulation's halves swapped back; a whole checkpoint
 * (CheckpointSave) is the whole file again, its VAE under its prefix. */
static void dit_files_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *file, *vae_prefix;
        size_t model, whole;
    } files[] = {
        {"flux/single/flux1-tiny.safetensors", NULL, 60, 0},
        {"flux/single/flux1-tiny-comfy.safetensors", "vae.", 60, 180},
        {"chroma/single/chroma-tiny.safetensors", NULL, 52, 0},
        {"sd3/single/sd3-tiny-transformer.safetensors", NULL, 51, 0},
        {"sd3/single/sd3.5-tiny.safetensors", "first_stage_model.", 0, 320},
        {"pixart/single/pixart_alpha_tiny.safetensors", NULL, 54, 0},
    };
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        kiln_checkpoint *ck;
        assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(files[k].file), &ck));
        assert_true(kiln_checkpoint_dit_original(ck));
        if (files[k].model) {
            assert_kiln_ok(kiln_checkpoint_save_dit(ck, NULL, saved_path));
            assert_dit_saved_as(files[k].file, files[k].model);
        }
        if (files[k].vae_prefix) {
            assert_kiln_ok(kiln_checkpoint_save_dit(ck, files[k].vae_prefix, saved_path));
            assert_dit_saved_as(files[k].file, files[k].whole);
        }
        kiln_checkpoint_close(ck);
    }
}

/* A PEFT LoRA merged into a DiT file is saved in it: the saved file opens to
 * the merged tensors, and differs from the original in as many as the LoRA
 * changed (PixArt's attn1.to_q and attn2.to_v rows of attn.qkv and
 * cross_attn.kv_linear; Flux's q, k, v rows of img_attn.qkv and linear1). */
static void dit_lora_saved(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"pixart/single/pixart_alpha_tiny.safetensors", "pixart/lora/peft.safetensors"},
        {"flux/single/flux1-tiny.safetensors", "flux/lora/peft.safetensors"}};
    for (size_t k = 0; k < 2; k++) {
        kiln_checkpoint *merged, *reopened, *plain;
        char lora_path[4096];
        snprintf(lora_path, sizeof lora_path, "%s", kiln_test_data(cases[k][1]));
        const kiln_lora lora = {lora_path, 0.8, 0.8};
        kiln_lora_stats stats;
        assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(cases[k][0]), &merged));
        assert_kiln_ok(kiln_lora_merge(merged, &(kiln_lora_towers){0}, &lora, &stats));
        assert_true(stats.unet_modules > 0);
        assert_kiln_ok(kiln_checkpoint_save_dit(merged, NULL, saved_path));
        assert_kiln_ok(kiln_checkpoint_open(saved_path, &reopened));
        assert_kiln_ok(kiln_checkpoint_open(kiln_test_data(cases[k][0]), &plain));
        int changed = 0;
        for (size_t i = 0; i < kiln_checkpoint_count(merged); i++) {
            const char *name;
            const kiln_st_tensor *t = kiln_checkpoint_at(merged, i, &name);
            const kiln_st_tensor *back = kiln_checkpoint_find(reopened, name);
            if (!back || !same_tensor(t, back)) fail_msg("%s: %s is not saved as merged", cases[k][0], name);
            changed += !same_tensor(t, kiln_checkpoint_find(plain, name));
        }
        print_message("  %-45s %d tensors changed by the LoRA, saved so\n", cases[k][0], changed);
        assert_int_equal(changed, stats.unet_modules);
        kiln_checkpoint_close(plain);
        kiln_checkpoint_close(reopened);
        kiln_checkpoint_close(merged);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_files_round_trip),
        cmocka_unit_test(folders_saved_as_single_files),
        cmocka_unit_test(lora_merged_in),
        cmocka_unit_test(vae_and_diffusion_model),
        cmocka_unit_test(dit_folder_refused),
        cmocka_unit_test(dit_files_round_trip),
        cmocka_unit_test(dit_lora_saved),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
