/* Model merging at load: ComfyUI's ModelMergeSimple, ModelMergeAdd,
 * ModelMergeSubtract and their CLIP kin, and its attention multiplies, on a
 * checkpoint's weights before its LoRAs. */
#ifndef KILN_MERGE_H
#define KILN_MERGE_H

#include "checkpoint.h"
#include "kiln.h"

/* Merges the checkpoint at merge->path into ck: every diffusion model
 * tensor (model.diffusion_model.*, a DiT's transformer.*) or, with
 * merge->text_encoders, every text encoder tensor (cond_stage_model.*,
 * conditioner.*, text_encoders.*; not position_ids nor logit_scale, as
 * ComfyUI's CLIP merges leave them) that both have becomes, computed in
 * float32 and stored in ck's dtype: a r + b (1 - r) (simple), a + b (add) or
 * (a - b) r (subtract), a ck's and b the other's. A tensor both have in other
 * shapes, or stored block-quantized, is refused by name; none in common
 * is refused too (another family). By blocks, a DiT's tensors take the
 * ratios of their original file's names. *merged counts the tensors. */
kiln_status kiln_checkpoint_merge(kiln_checkpoint *ck, const kiln_merge *merge, int *merged);

/* A diff ControlNet made whole (kohya's diff modules: a `difference` tensor
 * beside `control_model.*`, the encoder stored as its difference from the
 * UNet it was trained on), as ComfyUI's DiffControlNetLoader does: each
 * control_model.<rest> the model's UNet has as model.diffusion_model.<rest>
 * gets that weight, rounded to the ControlNet tensor's dtype, added (in
 * float32, stored in its dtype). Another shape, or a block-quantized
 * weight, is refused by name; *added counts the tensors. */
kiln_status kiln_controlnet_add_unet(kiln_checkpoint *controlnet, const kiln_checkpoint *model, int *added);

/* UNet(Self|Cross)AttentionMultiply: every UNet tensor named
 * `*.<attn>.to_q.{weight,bias}` (and to_k, to_v, to_out.0) times m's factor,
 * attn "attn1" or "attn2"; CLIPAttentionMultiply with attn "self_attn":
 * every text encoder tensor named `*.self_attn.q_proj.{weight,bias}` (and
 * k_proj, v_proj, out_proj). In float32 and stored in its dtype; *scaled
 * counts them. */
kiln_status kiln_checkpoint_multiply_attention(kiln_checkpoint *ck, const char *attn, const kiln_attention_multiply *m,
                                               int *scaled);

#endif
