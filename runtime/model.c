#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

const char *kiln_variant_name(kiln_variant v)
{
    switch (v) {
    case KILN_VARIANT_TXT2IMG: return "txt2img";
    case KILN_VARIANT_INPAINT: return "inpaint";
    case KILN_VARIANT_INSTRUCT_PIX2PIX: return "instruct-pix2pix";
    }
    return "?";
}

/* Parameters under a canonical prefix. */
static int64_t count_params(const kiln_checkpoint *ck, const char *prefix)
{
    int64_t total = 0;
    size_t len = strlen(prefix);
    for (size_t i = 0; i < kiln_checkpoint_count(ck); i++) {
        const char *name;
        const kiln_st_tensor *t = kiln_checkpoint_at(ck, i, &name);
        if (strncmp(name, prefix, len) != 0) continue;
        total += kiln_st_numel(t);
    }
    return total;
}

/* What a file that is not a whole SD model looks like, for a clear refusal. */
static kiln_status refuse_non_model(const kiln_checkpoint *ck)
{
    const char *path = kiln_checkpoint_path(ck);
    if (kiln_checkpoint_has_prefix(ck, "lora_unet_") || kiln_checkpoint_has_prefix(ck, "lora_te_"))
        return kiln_fail(KILN_ERR_MODEL, "%s is a LoRA, not a whole model", path);
    if (kiln_checkpoint_has_prefix(ck, "control_model.") || kiln_checkpoint_has_prefix(ck, "input_hint_block.") ||
        kiln_checkpoint_has_prefix(ck, "controlnet_cond_embedding."))
        return kiln_fail(KILN_ERR_MODEL, "%s is a ControlNet, not a whole model (give it to --controlnet)", path);
    if (kiln_checkpoint_has_prefix(ck, "decoder.") || kiln_checkpoint_has_prefix(ck, "encoder."))
        return kiln_fail(KILN_ERR_MODEL, "%s is a VAE, not a whole model", path);
    if (!kiln_checkpoint_has_prefix(ck, "model.diffusion_model."))
        return kiln_fail(KILN_ERR_MODEL, "%s: no tensor 'model.diffusion_model.*': not a Stable Diffusion checkpoint",
                         path);
    return KILN_OK;
}

kiln_status kiln_model_inspect(const kiln_checkpoint *ck, kiln_model_info *info)
{
    const char *path = kiln_checkpoint_path(ck);
    *info = (kiln_model_info){.family = "sd1"};
    TRY(refuse_non_model(ck));
    const kiln_st_tensor *conv_in = kiln_checkpoint_find(ck, "model.diffusion_model.input_blocks.0.0.weight");
    if (!conv_in || conv_in->ndim != 4)
        return kiln_fail(KILN_ERR_MODEL, "%s: tensor 'model.diffusion_model.input_blocks.0.0.weight' is missing", path);
    switch (conv_in->shape[1]) {
    case 4: info->variant = KILN_VARIANT_TXT2IMG; break;
    case 9: info->variant = KILN_VARIANT_INPAINT; break;
    case 8: info->variant = KILN_VARIANT_INSTRUCT_PIX2PIX; break;
    default:
        return kiln_fail(KILN_ERR_MODEL, "%s: UNet with %lld input channels is no SD 1.x variant kiln knows", path,
                         (long long)conv_in->shape[1]);
    }
    info->unet_dtype = conv_in->dtype;
    const unet_config *unet = kiln_unet_detect(ck);
    const clip_config *clip = kiln_clip_detect(ck);
    const vae_config *vae = kiln_vae_detect(ck);
    if (!unet) return kiln_fail(KILN_ERR_MODEL, "%s: UNet shapes match no known SD 1.x layout", path);
    if (!clip) return kiln_fail(KILN_ERR_MODEL, "%s: text encoder missing or of an unknown shape", path);
    if (!vae) return kiln_fail(KILN_ERR_MODEL, "%s: VAE missing or of an unknown shape", path);
    info->unet_name = unet->name;
    info->clip_name = clip->name;
    info->vae_name = vae->name;
    info->unet_params = count_params(ck, "model.diffusion_model.");
    info->clip_params = count_params(ck, "cond_stage_model.transformer.text_model.encoder.") +
                        count_params(ck, "cond_stage_model.transformer.text_model.embeddings.t") +
                        count_params(ck, "cond_stage_model.transformer.text_model.embeddings.position_embedding") +
                        count_params(ck, "cond_stage_model.transformer.text_model.final_layer_norm.");
    info->vae_params = count_params(ck, "first_stage_model.");
    return KILN_OK;
}

void kiln_model_free(kiln_model *m)
{
    if (!m) return;
    kiln_unet_release(&m->unet);
    kiln_weights_free(m->weights);
    kiln_checkpoint_close(m->checkpoint);
    free(m);
}

kiln_status kiln_model_load_with_loras(kiln_checkpoint *ck, const kiln_lora *loras, int nloras, kiln_lora_stats *stats,
                                       kiln_backend *be, kiln_model **out)
{
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_checkpoint_close(ck);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "model: out of host memory");
    }
    m->checkpoint = ck;
    kiln_status st = kiln_model_inspect(m->checkpoint, &m->info);
    for (int i = 0; i < nloras && st == KILN_OK; i++) st = kiln_lora_merge(m->checkpoint, &loras[i], &stats[i]);
    if (st == KILN_OK) st = kiln_weights_create(be, m->checkpoint, &m->weights);
    if (st == KILN_OK) st = kiln_clip_bind(m->weights, kiln_clip_detect(m->checkpoint), &m->clip);
    if (st == KILN_OK) st = kiln_unet_bind(m->weights, kiln_unet_detect(m->checkpoint), &m->unet);
    if (st == KILN_OK) st = kiln_vae_bind(m->weights, kiln_vae_detect(m->checkpoint), &m->vae);
    if (st != KILN_OK) {
        kiln_model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status kiln_model_load_checkpoint(kiln_checkpoint *ck, kiln_backend *be, kiln_model **out)
{
    return kiln_model_load_with_loras(ck, NULL, 0, NULL, be, out);
}

kiln_status kiln_model_load(const char *path, kiln_backend *be, kiln_model **out)
{
    kiln_checkpoint *ck;
    TRY(kiln_checkpoint_open(path, &ck));
    return kiln_model_load_checkpoint(ck, be, out);
}
