"""Goldens for ComfyUI's PerturbedAttentionGuidance (PAG) perturbed UNet pass.

Origin: upstream diffusers 0.42.1, PyTorch CPU float32, the middle block's
self-attention replaced by identity attention as ComfyUI v0.3.64's
PerturbedAttentionGuidance patches it.

ComfyUI v0.3.64 comfy_extras/nodes_pag.py runs an extra UNet pass with
`perturbed_attention(q, k, v, extra_options, mask=None): return v` patched as
the attn1 replace of ("middle", 0). That key has no transformer index, so it
matches every transformer block of the middle block's SpatialTransformer;
comfy's BasicTransformerBlock computes to_q/to_k/to_v of norm1's output, calls
the patch, applies attn1.to_out to what it returns and adds the residual as
usual. Here every BasicTransformerBlock in unet.mid_block.attentions[*]
.transformer_blocks[*] gets an attn1 processor returning
attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states))) -- the perturbed
half of diffusers' own PAGIdentitySelfAttnProcessor2_0 (the script asserts
that the parts of that processor it leaves out do nothing on these models:
3-D input, no spatial_norm, no group_norm, no residual_connection,
rescale_output_factor 1, to_out = [Linear, Dropout]). Identity attention does
not depend on the split into heads. Every call is counted by module name and
checked: once per middle-block transformer block and nowhere else, with every
other attention module running as in the plain pass. The perturbed output is
also checked against diffusers' PAGIdentitySelfAttnProcessor2_0 itself on a
doubled batch (its first half plain, its second half perturbed).

Writes, each tensor float32:
tests/data/pag/tiny.safetensors: the tiny SD 1.x UNet
  (tests/data/tiny/sd15_tiny_diffusers, subfolder unet; one transformer block
  in the middle block) on the sample [2, 4, 8, 8], timesteps [2] and
  encoder_hidden_states [2, 77, 32] of tests/data/tiny/unet.safetensors:
    perturbed.sample, perturbed.timesteps, perturbed.encoder_hidden_states,
    perturbed.noise_pred (the perturbed UNet's output),
    plain.noise_pred (the unpatched UNet; checked against
    tests/data/tiny/unet.safetensors' noise_pred, diffusers 0.27.2).
tests/data/pag/sdxl.safetensors: the tiny SDXL UNet
  (tests/data/sdxl/tiny_sdxl_diffusers, subfolder unet; the middle block's
  transformer is 2 blocks deep) on the inputs of tests/data/sdxl/golden.safetensors
  (sample [2, 4, 8, 8], timesteps [999, 500], encoder_hidden_states
  [2, 77, 64], and its text_embeds [2, 32] and time_ids [2, 6] given to
  diffusers as added_cond_kwargs):
    perturbed.sample, perturbed.timesteps, perturbed.encoder_hidden_states,
    perturbed.y [2, 80] (golden.safetensors' y, kiln's label_emb input:
    text_embeds then the six 8-wide sinusoidal embeddings of time_ids; the
    script checks it is what diffusers' add_embedding receives),
    perturbed.noise_pred, and plain.noise_pred (checked against
    golden.safetensors' noise_pred, diffusers 0.27.2).

Run from the repository root with a python that has torch and diffusers:
  python3 tests/data/pag/make_pag_data.py
"""
import collections
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention, PAGIdentitySelfAttnProcessor2_0
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import rel_l2  # noqa: E402

OUT = "tests/data/pag"
TINY_MODEL = "tests/data/tiny/sd15_tiny_diffusers"
TINY_GOLDEN = "tests/data/tiny/unet.safetensors"
SDXL_MODEL = "tests/data/sdxl/tiny_sdxl_diffusers"
SDXL_GOLDEN = "tests/data/sdxl/golden.safetensors"

PROCESSOR_CALLS = collections.Counter()   # module name -> identity-attention calls
ATTENTION_CALLS = collections.Counter()   # module name -> calls of any Attention module


class IdentitySelfAttnProcessor:
    """ComfyUI's perturbed_attention (returns v) followed by attn1.to_out."""

    def __init__(self, name):
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        assert encoder_hidden_states is None and attention_mask is None, self.name
        assert hidden_states.ndim == 3, (self.name, hidden_states.shape)
        PROCESSOR_CALLS[self.name] += 1
        return attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))


def middle_blocks(unet):
    """(name, BasicTransformerBlock) for every transformer block of the middle block."""
    found = []
    for i, t in enumerate(unet.mid_block.attentions):
        for j, block in enumerate(t.transformer_blocks):
            assert isinstance(block, BasicTransformerBlock)
            found.append((f"mid_block.attentions.{i}.transformer_blocks.{j}.attn1", block))
    return found


def check_identity_equivalent(attn, name):
    """What PAGIdentitySelfAttnProcessor2_0's perturbed path does beyond to_v and to_out is a no-op here."""
    assert attn.spatial_norm is None, name
    assert attn.group_norm is None, name
    assert not attn.residual_connection, name
    assert attn.rescale_output_factor == 1.0, name
    assert not attn.is_cross_attention, name
    assert len(attn.to_out) == 2 and isinstance(attn.to_out[0], torch.nn.Linear) \
        and isinstance(attn.to_out[1], torch.nn.Dropout), name
    assert not attn.training and not attn.to_out[1].training, name


def count_attention(unet):
    handles = []
    for name, m in unet.named_modules():
        if isinstance(m, Attention):
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, n=name: ATTENTION_CALLS.__setitem__(n, ATTENTION_CALLS[n] + 1)))
    return handles


def call(unet, inputs):
    kw = {}
    if "text_embeds" in inputs:
        kw["added_cond_kwargs"] = {"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]}
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["encoder_hidden_states"],
                    **kw).sample.float().contiguous()


def run(unet, inputs, perturbed, expect_blocks):
    blocks = middle_blocks(unet)
    assert len(blocks) == expect_blocks, (len(blocks), expect_blocks)
    saved = {}
    if perturbed:
        for name, block in blocks:
            check_identity_equivalent(block.attn1, name)
            saved[name] = block.attn1.processor
            block.attn1.set_processor(IdentitySelfAttnProcessor(name))
    PROCESSOR_CALLS.clear()
    ATTENTION_CALLS.clear()
    handles = count_attention(unet)
    try:
        out = call(unet, inputs)
    finally:
        for h in handles:
            h.remove()
        for name, block in blocks:
            if name in saved:
                block.attn1.set_processor(saved[name])
    return out, dict(PROCESSOR_CALLS), dict(ATTENTION_CALLS), [n for n, _ in blocks]


def diffusers_pag(unet, inputs):
    """diffusers' own PAGIdentitySelfAttnProcessor2_0 on the middle block's attn1, on [inputs, inputs]:
    the first half of its batch runs plain attention, the second identity attention."""
    blocks = middle_blocks(unet)
    saved = {name: block.attn1.processor for name, block in blocks}
    for _, block in blocks:
        block.attn1.set_processor(PAGIdentitySelfAttnProcessor2_0())
    doubled = {k: torch.cat([v, v]) for k, v in inputs.items()}
    try:
        out = call(unet, doubled)
    finally:
        for name, block in blocks:
            block.attn1.set_processor(saved[name])
    n = inputs["sample"].shape[0]
    return out[:n], out[n:]


def make(name, unet, inputs, golden_path, golden_noise_pred, expect_blocks, extra):
    plain, calls, attn_plain, names = run(unet, inputs, False, expect_blocks)
    assert calls == {}, calls
    d = rel_l2(plain, golden_noise_pred)
    print(f"{name}: plain noise_pred vs {golden_path} noise_pred: rel L2 {d:.3e}")
    assert d < 1e-4, d

    pert, calls, attn_pert, names = run(unet, inputs, True, expect_blocks)
    print(f"{name}: identity attention calls {calls}")
    assert calls == {n: 1 for n in names}, (calls, names)
    assert attn_pert == attn_plain, (attn_pert, attn_plain)
    print(f"{name}: {len(attn_plain)} attention modules, {sum(attn_plain.values())} calls, the same in both passes")
    assert torch.isfinite(pert).all()

    ref_plain, ref_pert = diffusers_pag(unet, inputs)
    dp, dq = rel_l2(ref_plain, plain), rel_l2(ref_pert, pert)
    print(f"{name}: vs diffusers' PAGIdentitySelfAttnProcessor2_0 on a doubled batch: plain rel L2 {dp:.3e}, "
          f"perturbed rel L2 {dq:.3e}")
    assert dp < 1e-5 and dq < 1e-5, (dp, dq)

    d = rel_l2(pert, plain)
    print(f"{name}: perturbed vs plain noise_pred: rel L2 {d:.6e}")
    assert d > 1e-3, d

    tensors = {"perturbed." + k: v.float().clone().contiguous()
               for k, v in inputs.items() if k in ("sample", "timesteps", "encoder_hidden_states")}
    for k, v in extra.items():
        tensors["perturbed." + k] = v.float().clone().contiguous()
    tensors["perturbed.noise_pred"] = pert
    tensors["plain.noise_pred"] = plain
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path)
    os.chmod(path, 0o644)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def tiny():
    unet = UNet2DConditionModel.from_pretrained(TINY_MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    g = load_file(TINY_GOLDEN)
    inputs = {k: g[k] for k in ("sample", "timesteps", "encoder_hidden_states")}
    make("tiny", unet, inputs, TINY_GOLDEN, g["noise_pred"], 1, {})


def sdxl():
    unet = UNet2DConditionModel.from_pretrained(SDXL_MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    g = load_file(SDXL_GOLDEN)
    inputs = {k: g[k] for k in ("sample", "timesteps", "encoder_hidden_states", "text_embeds", "time_ids")}
    # golden.safetensors' y is what diffusers' add_embedding receives from (text_embeds, time_ids)
    seen = {}
    h = unet.add_embedding.register_forward_pre_hook(lambda mod, args: seen.__setitem__("y", args[0].detach().clone()))
    call(unet, inputs)
    h.remove()
    d = (seen["y"] - g["y"]).abs().max().item()
    print(f"sdxl: add_embedding's input vs golden y: max abs diff {d:.3e}")
    assert d < 1e-6, d
    make("sdxl", unet, inputs, SDXL_GOLDEN, g["noise_pred"], 2, {"y": g["y"]})


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(OUT, exist_ok=True)
    tiny()
    sdxl()


if __name__ == "__main__":
    sys.exit(main())
