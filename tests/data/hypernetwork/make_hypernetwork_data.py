"""Hypernetwork files and goldens for ComfyUI's HypernetworkLoader.

Origin: upstream diffusers 0.35.2, PyTorch CPU float32: the tiny SD 1.x UNet
with every attention's key and value inputs passed through the
hypernetworks as ComfyUI v0.3.64's comfy_extras/nodes_hypernetwork.py
patches them (attn1_patch and attn2_patch: k = k + hn[dim][0](k) * strength,
v = v + hn[dim][1](v) * strength, dim the width of the keys' input, the
patches of several loaders applied in turn).

The files are written as A1111's webui saves a hypernetwork (torch.save of a
dict: each dim -> [keys' state dict, values' state dict] of a
torch.nn.Sequential named `linear`, beside layer_structure, activation_func,
is_layer_norm, use_dropout, activate_output, last_layer_dropout, step,
name). The reference stacks are rebuilt from the saved state dicts by the
rule ComfyUI's loader follows: every `.weight` name in order is a Linear,
followed by the activation unless it is the last name and activate_output
is off, and, where is_layer_norm, the next name is a LayerNorm; dropout is
left out (it runs only in training). With layer norms that activates the
last Linear too, unlike A1111's own module; the script checks the two
differ there, so the golden pins ComfyUI's reading. The restated stacks
were checked once against ComfyUI's own load_hypernetwork_patch (its file
loaded with comfy.utils.load_torch_file standing in as torch.load, its
modules put in eval mode) on random keys and values: equal to the bit for
all three files.

Writes:
tests/data/hypernetwork/relu_ln.pt: relu, layer_structure [1, 2, 1], layer
  norms, dropout modules in the Sequential (shifting the layers' indices),
  dims 32 and 64 (the tiny UNet's: its self-attentions at 32 and 64
  channels, its cross-attentions on 32-wide text).
tests/data/hypernetwork/mish.pt: mish, layer_structure [1, 1.5, 1],
  activate_output, no layer norms, dims 32, 64 and 40 (no attention of the
  tiny UNet has 40: left unused).
tests/data/hypernetwork/swish.pt: swish (torch's Hardswish), [1, 2, 1],
  dim 64 alone, float16 tensors.
tests/data/hypernetwork/gelu.pt: relu_ln.pt's dim 32 with activation_func
  "gelu", which ComfyUI's loader refuses (kiln too).
tests/data/hypernetwork/golden.safetensors (float32), for each case
  relu_ln (relu_ln.pt at strength 1), mish (mish.pt at 0.8) and chain
  (relu_ln.pt at 1 then swish.pt at -0.7): <case>.sample [2, 4, 8, 8],
  <case>.timesteps [2], <case>.encoder_hidden_states [2, 77, 32] (the
  inputs of tests/data/tiny/unet.safetensors) and <case>.noise_pred.
The unpatched output is checked against tests/data/tiny/unet.safetensors'
noise_pred (diffusers 0.27.2) first.

Run from the repository root with a python that has torch and diffusers:
  python3 tests/data/hypernetwork/make_hypernetwork_data.py
"""
import collections
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import rel_l2  # noqa: E402

OUT = "tests/data/hypernetwork"
TINY_MODEL = "tests/data/tiny/sd15_tiny_diffusers"
TINY_GOLDEN = "tests/data/tiny/unet.safetensors"

ACTIVATIONS = {"linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU,
               "elu": torch.nn.ELU, "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh,
               "sigmoid": torch.nn.Sigmoid, "softsign": torch.nn.Softsign, "mish": torch.nn.Mish}


def a1111_stack(dim, structure, activation, layer_norm, dropout, activate_output, gen):
    """A1111's HypernetworkModule.linear: Linear, activation, LayerNorm, Dropout per step."""
    layers = []
    for i in range(len(structure) - 1):
        layers.append(torch.nn.Linear(int(dim * structure[i]), int(dim * structure[i + 1])))
        if activation != "linear" and (i < len(structure) - 2 or activate_output):
            layers.append(ACTIVATIONS[activation]())
        if layer_norm:
            layers.append(torch.nn.LayerNorm(int(dim * structure[i + 1])))
        if dropout and i < len(structure) - 2:
            layers.append(torch.nn.Dropout(p=0.3))
    stack = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for m in stack:
            if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (0.3 if m.weight.ndim == 2 else 0.2)
                               + (0 if m.weight.ndim == 2 else 1))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    module = torch.nn.Module()
    module.linear = stack
    return module.eval()


def write_file(name, dims, structure, activation, layer_norm, dropout, activate_output, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    saved = {}
    for dim in dims:
        pair = [a1111_stack(dim, structure, activation, layer_norm, dropout, activate_output, gen) for _ in range(2)]
        saved[dim] = [collections.OrderedDict((k, v.to(dtype)) for k, v in m.state_dict().items()) for m in pair]
    saved.update({"step": 1000, "name": name, "layer_structure": structure, "activation_func": activation,
                  "is_layer_norm": layer_norm, "weight_initialization": "Normal", "sd_checkpoint": None,
                  "sd_checkpoint_name": None, "activate_output": activate_output, "use_dropout": dropout,
                  "dropout_structure": None, "last_layer_dropout": False})
    torch.save(saved, os.path.join(OUT, name + ".pt"))
    return saved


def comfy_stacks(saved):
    """dim -> (keys' stack, values' stack) as ComfyUI's loader rebuilds them, in float32."""
    activation = saved.get("activation_func", "linear")
    layer_norm = saved.get("is_layer_norm", False)
    activate_output = saved.get("activate_output", False)
    out = {}
    for dim, pair in saved.items():
        if not isinstance(dim, int):
            continue
        stacks = []
        for sd in pair:
            names = [k[:-len(".weight")] for k in sd if k.endswith(".weight")]
            layers, i = [], 0
            while i < len(names):
                w, b = sd[names[i] + ".weight"].float(), sd[names[i] + ".bias"].float()
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                lin.load_state_dict({"weight": w, "bias": b})
                layers.append(lin)
                if activation != "linear" and (i != len(names) - 1 or activate_output):
                    layers.append(ACTIVATIONS[activation]())
                if layer_norm:
                    i += 1
                    ln = torch.nn.LayerNorm(sd[names[i] + ".weight"].shape[0])
                    ln.load_state_dict({"weight": sd[names[i] + ".weight"].float(),
                                        "bias": sd[names[i] + ".bias"].float()})
                    layers.append(ln)
                i += 1
            stacks.append(torch.nn.Sequential(*layers).eval())
        out[dim] = stacks
    return out


class HypernetworkProcessor:
    """Attention with the keys' and values' inputs through the hypernetworks first."""

    def __init__(self, chain):
        self.chain = chain  # [(dim -> stacks, strength)]

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        assert attention_mask is None and hidden_states.ndim == 3
        assert attn.spatial_norm is None and attn.group_norm is None and not attn.residual_connection
        assert attn.rescale_output_factor == 1.0 and attn.norm_cross is None
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        keys, values = context, context
        for stacks, strength in self.chain:
            dim = keys.shape[-1]
            if dim in stacks:
                keys = keys + stacks[dim][0](keys) * strength
                values = values + stacks[dim][1](values) * strength
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(keys))
        v = attn.head_to_batch_dim(attn.to_v(values))
        probs = attn.get_attention_scores(q, k, None)
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out))


def run(unet, inputs, chain):
    unet.set_attn_processor(HypernetworkProcessor(chain))
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["encoder_hidden_states"]
                    ).sample.contiguous()


def main():
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(TINY_MODEL, subfolder="unet").eval()
    assert sum(isinstance(m, Attention) for m in unet.modules()) == 12  # 6 transformer blocks
    golden = load_file(TINY_GOLDEN)
    inputs = {k: golden[k] for k in ("sample", "timesteps", "encoder_hidden_states")}

    plain = run(unet, inputs, [])
    err = rel_l2(plain, golden["noise_pred"])
    print(f"unpatched vs diffusers 0.27.2: {err:.2e}")
    assert err < 1e-5

    relu_ln = write_file("relu_ln", [32, 64], [1, 2, 1], "relu", True, True, False, torch.float32, 1)
    mish = write_file("mish", [32, 64, 40], [1, 1.5, 1], "mish", False, False, True, torch.float32, 2)
    swish = write_file("swish", [64], [1, 2, 1], "swish", False, False, False, torch.float16, 3)

    # ComfyUI activates the last Linear where layer norms follow it; A1111's module does not
    a1111 = a1111_stack(32, [1, 2, 1], "relu", True, True, False, torch.Generator().manual_seed(1))
    assert sum(isinstance(m, torch.nn.ReLU) for m in a1111.linear) == 1
    assert sum(isinstance(m, torch.nn.ReLU) for m in comfy_stacks(relu_ln)[32][0]) == 2

    gelu = {32: relu_ln[32], "activation_func": "gelu", "is_layer_norm": True}
    torch.save(gelu, os.path.join(OUT, "gelu.pt"))

    out = {}
    cases = {"relu_ln": [(comfy_stacks(relu_ln), 1.0)], "mish": [(comfy_stacks(mish), 0.8)],
             "chain": [(comfy_stacks(relu_ln), 1.0), (comfy_stacks(swish), -0.7)]}
    for name, chain in cases.items():
        out.update({f"{name}.{k}": v.clone().contiguous() for k, v in inputs.items()})
        out[f"{name}.noise_pred"] = run(unet, inputs, chain)
        print(f"{name}: {rel_l2(out[name + '.noise_pred'], plain):.3f} from the unpatched output")
        assert rel_l2(out[name + ".noise_pred"], plain) > 0.05
    save_file(out, os.path.join(OUT, "golden.safetensors"))


if __name__ == "__main__":
    main()
