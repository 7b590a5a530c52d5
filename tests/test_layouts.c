/* kiln's full-size layer tables against the real layouts, without the
 * gigabytes: tests/data/layouts holds the name and shape of every tensor of
 * an SD 1.5, an SD 2.1 768-v, an SDXL 1.0 base and an SDXL 1.0 refiner
 * single file, of the CLIP ViT-H/14 and ViT-bigG/14 image encoders and of
 * the SD 1.5 and SDXL IP-Adapters (plain and Plus), as upstream diffusers / transformers
 * build them (make_layout_manifests.py).
 * Each becomes a sparse safetensors file (a header, then a hole where the weights would be), which
 * kiln opens, detects and binds on the CPU: every tensor a table row asks for
 * must be there with its shape, and the file must hold no deeper transformer
 * than the table has. The weights read as zeros, so nothing is computed. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_test.h"

#include "clip_vision.h"
#include "flux_controlnet.h"
#include "ip_adapter.h"
#include "model.h"
#include "status.h"

static char tmpdir[] = "/tmp/kiln-layouts-XXXXXX";

/* The manifest's tensors as an f16 safetensors file whose data area is a
 * hole; returns the UNet's parameter count (model.diffusion_model.*). */
static int64_t write_sparse(const char *manifest, const char *path)
{
    char *text = (char *)kiln_test_read_file(kiln_test_data(manifest), NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    assert_true(cJSON_IsArray(tensors));
    cJSON *header = cJSON_CreateObject();
    uint64_t offset = 0;
    int64_t unet_params = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, tensors) {
        const char *name = cJSON_GetArrayItem(entry, 0)->valuestring;
        const cJSON *shape = cJSON_GetArrayItem(entry, 1), *d;
        int64_t n = 1;
        cJSON *t = cJSON_AddObjectToObject(header, name), *dims = cJSON_AddArrayToObject(t, "shape");
        cJSON_ArrayForEach(d, shape) {
            n *= (int64_t)d->valuedouble;
            cJSON_AddItemToArray(dims, cJSON_CreateNumber(d->valuedouble));
        }
        cJSON_AddStringToObject(t, "dtype", "F16");
        cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        offset += 2 * (uint64_t)n;
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        if (strncmp(name, "model.diffusion_model.", 22) == 0) unet_params += n;
    }
    char *json = cJSON_PrintUnformatted(header);
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hlen = padded; /* little-endian on every machine kiln runs on */
    assert_int_equal(fwrite(&hlen, 8, 1, f), 1);
    assert_int_equal(fwrite(json, 1, len, f), len);
    for (size_t i = len; i < padded; i++) fputc(' ', f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(truncate(path, (off_t)(8 + padded + offset)), 0);
    free(json);
    cJSON_Delete(header);
    cJSON_Delete(root);
    return unet_params;
}

static kiln_model *load(const char *manifest, const char *name, int64_t *unet_params)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
    *unet_params = write_sparse(manifest, path);
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(path, be, &m));
    return m;
}

static void release(kiln_model *m)
{
    kiln_backend *be = kiln_weights_backend(m->weights);
    kiln_model_free(m);
    kiln_backend_free(be);
}

/* The manifest as a sparse file in tmpdir, its path in path. */
static void sparse_path(const char *manifest, const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s.safetensors", tmpdir, name);
    write_sparse(manifest, path);
}

static void sd15(void **state)
{
    (void)state;
    int64_t unet_params;
    kiln_model *m = load("layouts/sd15.json", "sd15", &unet_params);
    assert_string_equal(m->info.family, "sd1");
    assert_string_equal(m->info.unet_name, "sd15");
    assert_string_equal(m->info.clip_names[0], "clip-vit-l14");
    assert_int_equal(m->info.unet_params, unet_params);
    release(m);
}

/* An IP-Adapter and its CLIP vision tower bound for a model: the tower's
 * config, the adapter's tokens and every cross-attention given its k/v. */
static void check_ip_adapter(const char *model_manifest, const char *vision_manifest, const char *adapter_manifest,
                             const char *vision_name, int cross_attentions, int tokens)
{
    int64_t unet_params;
    kiln_model *m = load(model_manifest, "base", &unet_params);
    kiln_backend *be = kiln_weights_backend(m->weights);
    char vision_path[512], adapter_path[512];
    sparse_path(vision_manifest, "vision", vision_path, sizeof vision_path);
    sparse_path(adapter_manifest, "adapter", adapter_path, sizeof adapter_path);
    kiln_clip_vision *cv;
    kiln_ip_adapter *ipa;
    assert_kiln_ok(kiln_clip_vision_open(vision_path, be, &cv));
    assert_string_equal(cv->config->name, vision_name);
    assert_kiln_ok(kiln_ip_adapter_open(adapter_path, &m->unet, be, &ipa));
    /* a plain adapter reads the image embeds, a Plus one the hidden states */
    assert_int_equal(ipa->embed_dim, kiln_ip_adapter_reads_hidden(ipa) ? cv->config->hidden : cv->config->projection);
    assert_int_equal(ipa->tokens, tokens);
    int bound = 0;
    for (size_t i = 0; i < (size_t)ipa->nrows * KILN_MAX_TRANSFORMER_DEPTH; i++) bound += ipa->k_w[i] && ipa->v_w[i];
    assert_int_equal(bound, cross_attentions);
    kiln_ip_adapter_free(ipa);
    kiln_clip_vision_free(cv);
    release(m);
}

static void ip_adapter_sd15(void **state)
{
    (void)state;
    check_ip_adapter("layouts/sd15.json", "layouts/clip_vision_h14.json", "layouts/ip_adapter_sd15.json",
                     "clip-vit-h14", 16, 4);
}

static void ip_adapter_plus_sd15(void **state)
{
    (void)state;
    check_ip_adapter("layouts/sd15.json", "layouts/clip_vision_h14.json", "layouts/ip_adapter_plus_sd15.json",
                     "clip-vit-h14", 16, 16);
}

static void ip_adapter_plus_sdxl_vit_h(void **state)
{
    (void)state;
    check_ip_adapter("layouts/sdxl_base.json", "layouts/clip_vision_h14.json",
                     "layouts/ip_adapter_plus_sdxl_vit_h.json", "clip-vit-h14", 70, 16);
}

static void ip_adapter_sdxl(void **state)
{
    (void)state;
    check_ip_adapter("layouts/sdxl_base.json", "layouts/clip_vision_bigg14.json", "layouts/ip_adapter_sdxl.json",
                     "clip-vit-bigg14", 70, 4);
}

static void sd21_768v(void **state)
{
    (void)state;
    int64_t unet_params;
    kiln_model *m = load("layouts/sd21_768v.json", "sd21", &unet_params);
    assert_string_equal(m->info.family, "sd2");
    assert_string_equal(m->info.unet_name, "sd2");
    assert_string_equal(m->info.clip_names[0], "openclip-vit-h14");
    assert_string_equal(m->info.vae_name, "sd-vae");
    assert_int_equal(m->info.unet_params, unet_params);
    /* the heads 64 wide: 5, 10, 20 by level */
    assert_int_equal(m->unet.rows[2].attn.heads, 5);
    assert_int_equal(m->unet.rows[m->unet.config->nlayers - 1].attn.heads, 5);
    release(m);
}

static void sdxl_base(void **state)
{
    (void)state;
    int64_t unet_params;
    kiln_model *m = load("layouts/sdxl_base.json", "sdxl", &unet_params);
    assert_string_equal(m->info.family, "sdxl");
    assert_string_equal(m->info.unet_name, "sdxl");
    assert_int_equal(m->info.nclips, 2);
    assert_string_equal(m->info.clip_names[0], "clip-vit-l14");
    assert_string_equal(m->info.clip_names[1], "openclip-vit-bigg14");
    assert_string_equal(m->info.vae_name, "sd-vae");
    assert_int_equal(m->info.unet_params, unet_params);
    assert_int_equal(m->clips[1].pooled_dim, 1280);
    assert_true(m->clips[1].projection_open_clip);
    int deepest = 0;
    for (int i = 0; i < m->unet.config->nlayers; i++)
        if (m->unet.rows[i].attn.depth > deepest) deepest = m->unet.rows[i].attn.depth;
    assert_int_equal(deepest, 10);
    release(m);
}

static void sdxl_refiner(void **state)
{
    (void)state;
    int64_t unet_params;
    kiln_model *m = load("layouts/sdxl_refiner.json", "refiner", &unet_params);
    assert_string_equal(m->info.family, "sdxl-refiner");
    assert_string_equal(m->info.unet_name, "sdxl-refiner");
    assert_int_equal(m->info.nclips, 1);
    assert_string_equal(m->info.clip_names[0], "openclip-vit-bigg14");
    assert_int_equal(m->info.unet_params, unet_params);
    assert_int_equal(m->clips[0].pooled_dim, 1280);
    release(m);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

/* A DiT diffusers folder of sparse parts: each (part, manifest) pair as
 * <dir>/<part>/<file>, a config where given, the T5 tokenizer linked from
 * the tests' small one (its 1000 pieces fit any T5 table). */
typedef struct folder_part {
    const char *part, *manifest, *config;
} folder_part;

static void write_folder(const char *dir, const folder_part *parts, int nparts, const char *tokenizer)
{
    char path[1024];
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int i = 0; i < nparts; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, parts[i].part);
        assert_int_equal(mkdir(path, 0755), 0);
        bool encoder = strncmp(parts[i].part, "text_encoder", 12) == 0;
        snprintf(path, sizeof path, "%s/%s/%s", dir, parts[i].part,
                 encoder ? "model.safetensors" : "diffusion_pytorch_model.safetensors");
        write_sparse(parts[i].manifest, path);
        if (!parts[i].config) continue;
        snprintf(path, sizeof path, "%s/%s/config.json", dir, parts[i].part);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(parts[i].config, f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/%s", dir, tokenizer);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/%s/spiece.model", dir, tokenizer);
    assert_int_equal(symlink(kiln_test_data("spm_tokenizer/spiece.model"), path), 0);
}

static kiln_model *load_folder(const char *dir)
{
    kiln_backend *be;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_model_load(dir, be, &m));
    return m;
}

/* T5 v1.1 XXL as both DiTs read it. */
static void check_t5_xxl(const kiln_model *m)
{
    assert_int_equal(m->t5.layers, 24);
    assert_int_equal(m->t5.heads, 64);
    assert_int_equal(m->t5.head_dim, 64);
    assert_int_equal(m->t5.ff, 10240);
    assert_int_equal(m->t5.vocab, 32128);
}

static void pixart_xl_2_1024(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/pixart", tmpdir);
    const folder_part parts[] = {
        {"transformer", "layouts/pixart_xl_2_1024_transformer.json", "{\"sample_size\": 128}"},
        {"text_encoder", "layouts/t5_v1_1_xxl.json", NULL},
        {"vae", "layouts/sd_vae.json", NULL},
    };
    write_folder(dir, parts, 3, "tokenizer");
    kiln_model *m = load_folder(dir);
    assert_string_equal(m->info.family, "pixart");
    assert_string_equal(m->info.unet_name, "pixart-alpha");
    assert_int_equal(m->pixart.layers, 28);
    assert_int_equal(m->pixart.heads, 16);
    assert_int_equal(m->pixart.hidden, 1152);
    assert_true(m->pixart.size_conditions);
    assert_int_equal(m->pixart.out_channels, 8);
    check_t5_xxl(m);
    assert_string_equal(m->info.vae_name, "sd-vae");
    release(m);
}

static void flux1(const char *name, const char *manifest, bool dev)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    const folder_part parts[] = {
        {"transformer", manifest, "{\"axes_dims_rope\": [16, 56, 56]}"},
        {"text_encoder", "layouts/clip_vit_l14_text.json", NULL},
        {"text_encoder_2", "layouts/t5_v1_1_xxl.json", NULL},
        {"vae", "layouts/flux_vae.json", "{\"scaling_factor\": 0.3611, \"shift_factor\": 0.1159}"},
    };
    write_folder(dir, parts, 4, "tokenizer_2");
    kiln_model *m = load_folder(dir);
    assert_string_equal(m->info.family, "flux");
    assert_string_equal(m->info.unet_name, dev ? "flux-dev" : "flux-schnell");
    assert_int_equal(m->flux.ndouble, 19);
    assert_int_equal(m->flux.nsingle, 38);
    assert_int_equal(m->flux.heads, 24);
    assert_int_equal(m->flux.head_dim, 128);
    assert_int_equal(m->flux.guidance, dev);
    assert_int_equal(m->flux.pooled_dim, 768);
    assert_string_equal(m->info.clip_names[0], "clip-vit-l14");
    check_t5_xxl(m);
    assert_int_equal(m->vae.config->latent_channels, 16);
    assert_float_equal(m->vae.latents.scale, 0.3611f, 0.0f);
    assert_float_equal(m->vae.latents.shift, 0.1159f, 0.0f);
    release(m);
}

static void flux1_dev(void **state)
{
    (void)state;
    flux1("flux-dev", "layouts/flux_dev_transformer.json", true);
}

/* A single file with the files beside it, on the CPU. */
static kiln_model *load_with_parts(const char *path, const kiln_model_parts *parts)
{
    kiln_backend *be;
    kiln_checkpoint *ck;
    kiln_model *m;
    assert_kiln_ok(kiln_backend_create("cpu", NULL, &be));
    assert_kiln_ok(kiln_checkpoint_open(path, &ck));
    assert_kiln_ok(kiln_checkpoint_add_parts(ck, parts));
    assert_kiln_ok(kiln_model_load_checkpoint(ck, be, &m));
    return m;
}

/* FLUX.1-dev from the files ComfyUI users have: BFL's flux1-dev.safetensors
 * (fused q/k/v, single blocks' linear1), CLIP-L and T5 files as transformers
 * saves them, the VAE, and T5's tokenizer; no config, so FLUX.1's axes. */
static void flux1_dev_single_files(void **state)
{
    (void)state;
    char model[600], clip[600], t5[600], vae[600];
    sparse_path("layouts/flux_dev_bfl.json", "flux1-dev", model, sizeof model);
    sparse_path("layouts/clip_vit_l14_text.json", "clip_l", clip, sizeof clip);
    sparse_path("layouts/t5_v1_1_xxl.json", "t5xxl", t5, sizeof t5);
    sparse_path("layouts/flux_vae.json", "ae", vae, sizeof vae);
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {clip, t5},
                                    .tokenizer = kiln_test_data("spm_tokenizer/spiece.model")};
    kiln_model *m = load_with_parts(model, &parts);
    assert_string_equal(m->info.unet_name, "flux-dev");
    assert_int_equal(m->info.unet_params, 11901408320LL); /* FLUX.1-dev's 11.9 B */
    assert_int_equal(m->flux.ndouble, 19);
    assert_int_equal(m->flux.nsingle, 38);
    assert_int_equal(m->flux.heads, 24);
    assert_int_equal(m->flux.axes[1], 56);
    check_t5_xxl(m);
    assert_float_equal(m->vae.latents.scale, 0.3611f, 0.0f);
    assert_float_equal(m->vae.latents.shift, 0.1159f, 0.0f);
    release(m);
}

/* Chroma1-HD (make_chroma_layout_manifests.py) from its original single
 * file with T5 and FLUX.1's VAE beside it (ComfyUI's UNETLoader, CLIPLoader
 * "chroma", VAELoader), and as the ChromaPipeline folder: 19 double and 38
 * single blocks without modulation layers, the 5-layer approximator 5120
 * wide, 8.9 B parameters. */
static void check_chroma1_hd(kiln_model *m)
{
    assert_string_equal(m->info.family, "chroma");
    assert_string_equal(m->info.unet_name, "chroma");
    assert_int_equal(m->info.unet_params, 8899983424LL);
    assert_int_equal(m->info.nclips, 0);
    assert_true(m->flux.chroma);
    assert_int_equal(m->flux.ndouble, 19);
    assert_int_equal(m->flux.nsingle, 38);
    assert_int_equal(m->flux.heads, 24);
    assert_int_equal(m->flux.head_dim, 128);
    assert_int_equal(m->flux.approx.nlayers, 5);
    assert_int_equal(m->flux.approx.width, 5120);
    assert_int_equal(m->flux.axes[1], 56);
    check_t5_xxl(m);
    assert_float_equal(m->vae.latents.scale, 0.3611f, 0.0f);
    assert_float_equal(m->vae.latents.shift, 0.1159f, 0.0f);
    release(m);
}

static void chroma1_hd_single_files(void **state)
{
    (void)state;
    char model[600], t5[600], vae[600];
    sparse_path("layouts/chroma1_hd.json", "Chroma1-HD", model, sizeof model);
    sparse_path("layouts/t5_v1_1_xxl.json", "chroma_t5xxl", t5, sizeof t5);
    sparse_path("layouts/flux_vae.json", "chroma_ae", vae, sizeof vae);
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {t5},
                                    .tokenizer = kiln_test_data("spm_tokenizer/spiece.model")};
    check_chroma1_hd(load_with_parts(model, &parts));
}

static void chroma1_hd_folder(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/chroma1-hd", tmpdir);
    const folder_part parts[] = {
        {"transformer", "layouts/chroma1_hd_transformer.json", "{\"axes_dims_rope\": [16, 56, 56]}"},
        {"text_encoder", "layouts/t5_v1_1_xxl.json", NULL},
        {"vae", "layouts/flux_vae.json", "{\"scaling_factor\": 0.3611, \"shift_factor\": 0.1159}"},
    };
    write_folder(dir, parts, 3, "tokenizer");
    check_chroma1_hd(load_folder(dir));
}

/* SD 3.5 from Stability's single files (the MMDiT under model.diffusion_model. in its own names: fused
 * q/k/v, the last block's caption-only side) with ComfyUI's clip_l, clip_g and t5xxl files (bigG given
 * first: told apart by width) and the VAE beside them, returned loaded; the shapes say everything:
 * 64-wide heads from the q norm, the position table's side, the dual-attention blocks. */
static kiln_model *sd35(const char *manifest, const char *name, int blocks, int heads, int side, int dual,
                        int64_t params)
{
    char model[600], clip_l[600], clip_g[600], t5[600], vae[600];
    sparse_path(manifest, name, model, sizeof model);
    sparse_path("layouts/sd3_clip_l_text.json", "sd3_clip_l", clip_l, sizeof clip_l);
    sparse_path("layouts/sd3_clip_g_text.json", "sd3_clip_g", clip_g, sizeof clip_g);
    sparse_path("layouts/t5_v1_1_xxl.json", "sd3_t5xxl", t5, sizeof t5);
    sparse_path("layouts/flux_vae.json", "sd3_vae", vae, sizeof vae);
    const kiln_model_parts parts = {.vae = vae, .text_encoders = {clip_g, t5, clip_l},
                                    .tokenizer = kiln_test_data("spm_tokenizer/spiece.model")};
    kiln_model *m = load_with_parts(model, &parts);
    assert_string_equal(m->info.family, "sd3");
    assert_string_equal(m->info.unet_name, name);
    assert_int_equal(m->info.unet_params, params);
    assert_int_equal(m->flux.ndouble, blocks);
    assert_int_equal(m->flux.heads, heads);
    assert_int_equal(m->flux.head_dim, 64);
    assert_int_equal(m->flux.pos_side, side);
    assert_int_equal(m->flux.context_dim, 4096);
    assert_int_equal(m->flux.pooled_dim, 2048);
    for (int i = 0; i < blocks; i++) {
        assert_int_equal(m->flux.dbl[i].img2.q_w != NULL, i < dual);
        assert_int_equal(m->flux.dbl[i].txt_out_w == NULL, i == blocks - 1);
    }
    assert_string_equal(m->info.clip_names[0], "clip-vit-l14");
    assert_string_equal(m->info.clip_names[1], "openclip-vit-bigg14");
    assert_int_equal(m->clips[0].pooled_dim + m->clips[1].pooled_dim, 2048);
    check_t5_xxl(m);
    assert_float_equal(m->vae.latents.scale, 1.5305f, 0.0f);
    assert_float_equal(m->vae.latents.shift, 0.0609f, 0.0f);
    return m;
}

static void sd35_medium(void **state)
{
    (void)state; /* 2.24 B parameters and a 384x384 position table */
    release(sd35("layouts/sd35_medium_mmdit.json", "sd3.5-medium", 24, 24, 384, 13, 2469663936LL));
}

static void sd35_large(void **state)
{
    (void)state; /* 8.06 B parameters and a 192x192 position table */
    kiln_model *m = sd35("layouts/sd35_large_mmdit.json", "sd3.5-large", 38, 38, 192, 0, 8146280768LL);
    /* Stability's ControlNets for it: 19 blocks without a caption side, the model's 64-wide heads */
    char path[600];
    kiln_controlnet *cn;
    sparse_path("layouts/sd35_large_controlnet.json", "sd35_large_controlnet", path, sizeof path);
    assert_kiln_ok(kiln_controlnet_load(m, path, &cn));
    const kiln_flux *t = &cn->flux->trunk;
    assert_true(cn->flux->stability);
    assert_int_equal(t->ndouble, 19);
    assert_int_equal(t->hidden, 2432);
    assert_int_equal(t->heads, 38);
    assert_int_equal(cn->flux->control_type, KILN_SD35_CONTROL_BLUR); /* the sparse file's zero */
    for (int i = 0; i < t->ndouble; i++) assert_true(!t->dbl[i].txt_mod_w && t->dbl[i].img.v_w && cn->flux->block_w[i]);
    kiln_controlnet_free(cn);
    release(m);
}

/* SD 3.0 Medium's diffusers folder: no q norm, so the head width is its config's. */
static void sd3_medium(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sd3-medium", tmpdir);
    const folder_part parts[] = {
        {"transformer", "layouts/sd3_medium_transformer.json", "{\"attention_head_dim\": 64}"},
        {"text_encoder", "layouts/sd3_clip_l_text.json", NULL},
        {"text_encoder_2", "layouts/sd3_clip_g_text.json", NULL},
        {"text_encoder_3", "layouts/t5_v1_1_xxl.json", NULL},
        {"vae", "layouts/flux_vae.json", "{\"scaling_factor\": 1.5305, \"shift_factor\": 0.0609}"},
    };
    write_folder(dir, parts, 5, "tokenizer_3");
    kiln_model *m = load_folder(dir);
    assert_string_equal(m->info.family, "sd3");
    assert_string_equal(m->info.unet_name, "sd3-medium");
    assert_int_equal(m->info.unet_params, 2084951104LL);
    assert_int_equal(m->flux.ndouble, 24);
    assert_int_equal(m->flux.heads, 24);
    assert_int_equal(m->flux.pos_side, 192);
    assert_null(m->flux.dbl[0].img.norm_q);
    check_t5_xxl(m);
    release(m);
}

static void flux1_schnell(void **state)
{
    (void)state;
    flux1("flux-schnell", "layouts/flux_schnell_transformer.json", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(sd15),           cmocka_unit_test(sd21_768v),
                                       cmocka_unit_test(sdxl_base),      cmocka_unit_test(sdxl_refiner),
                                       cmocka_unit_test(ip_adapter_sd15), cmocka_unit_test(ip_adapter_sdxl),
                                       cmocka_unit_test(ip_adapter_plus_sd15),
                                       cmocka_unit_test(ip_adapter_plus_sdxl_vit_h),
                                       cmocka_unit_test(pixart_xl_2_1024), cmocka_unit_test(flux1_dev),
                                       cmocka_unit_test(flux1_schnell), cmocka_unit_test(flux1_dev_single_files),
                                       cmocka_unit_test(sd35_medium), cmocka_unit_test(sd35_large),
                                       cmocka_unit_test(sd3_medium), cmocka_unit_test(chroma1_hd_single_files),
                                       cmocka_unit_test(chroma1_hd_folder)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
