"""Writes tests/data/gguf: GGUF files as ComfyUI-GGUF (city96) and llama.cpp
lay out diffusion models and T5 encoders, and what they hold.

  quants.gguf: one tensor of each type kiln reads (F32 F16 BF16 I32 and the
       block types Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL
       IQ4_XS), 2 x 512 values each: Q4_0..Q8_0 quantized from random floats
       by gguf-py, the others random blocks (every bit pattern reachable)
       with sane f16 scales; a (16,16,3,3) Q8_0 tensor flattened to rows of 256 with its
       `comfy.gguf.orig_shape`, as ComfyUI-GGUF stores SD's convolutions;
       string, number and array metadata.
  quants.golden.safetensors: each tensor as kiln should read it, in its
       original shape: the block types dequantized by gguf-py
       (gguf.quants.dequantize, a numpy restatement of ggml's) in float32,
       as kiln widens the blocks it keeps; the flattened convolution rounded
       to float16, the copy kiln makes of it; the others as stored.
  flux1-tiny-Q8_0.gguf: the transformer of tests/data/flux/single/flux1-tiny
       (BFL's names, bare, as ComfyUI-GGUF's convert.py writes a Flux file;
       architecture "flux") from float32: one-dimensional tensors and those of
       at most 1024 values in F32, the input, embedding and final layers in
       BF16, the rest in Q8_0 (the 32-wide rows suit no K-quant).
  t5-tiny-Q8_0.gguf: the tiny T5 encoder of tests/data/pixart/tiny in
       llama.cpp's names (gguf-py's TensorNameMap for t5encoder, as
       convert_hf_to_gguf.py writes a T5 v1.1 encoder) with its tokenizer
       (pixart/tiny/tokenizer/spiece.model) in the metadata as that script
       writes it; small tensors F32, the attention's q/k/v/o in
       Q4_0/Q4_1/Q5_0/Q5_1, the rest Q8_0.
  sd15-tiny-unet-F16.gguf: the UNet of tests/data/tiny/sd15_tiny_ldm_fp16 alone,
       as ComfyUI-GGUF's convert.py writes an SD 1.x file from a float16
       one: names without model.diffusion_model., architecture "sd1", every
       tensor F16, and those of at least 512 values (a multiple of 256) whose
       last dim is not a multiple of 256 flattened to rows of 256 with their
       `comfy.gguf.orig_shape`.
  sd15-tiny-unet-Q8_0.gguf: the same UNet with its linear weights in Q8_0
       (sd_unet_q8_0).
  golden.safetensors:
       flux.out (2,12,64): diffusers' FluxTransformer2DModel on
         tests/data/flux/golden's inputs with the weights of
         flux1-tiny-Q8_0.gguf as gguf-py dequantizes them, in float32 as
         kiln widens the Q8_0 blocks it keeps (taken back to diffusers' names row by row through
         make_flux_lora_data.py's bfl_rows_to_diffusers);
       flux.kohya.out: the same with tests/data/flux/lora/kohya.safetensors
         (sd-scripts' layout) merged at strength 0.8 (W += 0.8 * alpha / rank
         * up @ down, in float32), each merged weight rounded to the type
         kiln keeps it in: float16 for Q8_0's, bfloat16 for BF16's;
       t5.ids (1,256), t5.out (1,256,64): transformers' T5EncoderModel on
         the run prompt's ids of tests/data/flux/run.golden with the weights
         of t5-tiny-Q8_0.gguf likewise dequantized (the token table rounded
         to float16, the copy kiln makes of a quantized table);
       convert.*, flux.q8_0.out, flux.q4_0.out, flux.fp8_e4m3fn.out: float weights
         converted at load (converted_at_load);
       sd15.sample, sd15.timesteps, sd15.encoder_hidden_states,
         sd15.noise_pred: diffusers' UNet2DConditionModel with the weights
         sd15-tiny-unet-Q8_0.gguf reads back.

Origin: numpy, gguf-py 0.19.0 (GGUFWriter, quants), sentencepiece 0.2.3, torch,
diffusers 0.32.2, transformers. Run from the repository root:
  python3 tests/data/gguf/make_gguf_data.py
"""
import json
import os
import sys

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file, save_file
from sentencepiece import SentencePieceProcessor
from sentencepiece.sentencepiece_model_pb2 import ModelProto
from transformers import T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(DATA, "flux"))
sys.path.insert(0, DATA)
from make_flux_lora_data import bfl_rows_to_diffusers, transformer_out  # noqa: E402
from make_flux_single_data import to_bfl  # noqa: E402
from sd_common import save_goldens  # noqa: E402

T5 = os.path.join(DATA, "pixart", "tiny", "text_encoder")
FLUX = os.path.join(DATA, "flux")
BLOCK_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]
# the block types written as random blocks, and where their f16 scales sit
RANDOM_TYPES = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208], Q.IQ4_NL: [0],
                Q.IQ4_XS: [0]}


def dequantized(data, qtype):
    return torch.from_numpy(gguf.quants.dequantize(data, qtype))


def dequantized_half(data, qtype):
    return torch.from_numpy(gguf.quants.dequantize(data, qtype).astype(np.float16))


def random_blocks(rng, qtype, rows, cols):
    """Random blocks of a K-quant or IQ4 type with each f16 scale set to a
    value in [0.001, 0.01): every other byte random."""
    elements, size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows * cols // elements, size), dtype=np.uint8)
    for at in RANDOM_TYPES[qtype]:
        blocks[:, at:at + 2] = rng.uniform(0.001, 0.01, size=(blocks.shape[0], 1)).astype(np.float16).view(np.uint8)
    return blocks.reshape(rows, cols // elements * size)


def quants():
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(f"{HERE}/quants.gguf", "kiln-test")
    w.add_string("kiln.test.text", "a string value")
    w.add_uint32("kiln.test.count", 7)
    w.add_float32("kiln.test.scale", 0.25)
    w.add_bool("kiln.test.flag", True)
    w.add_array("kiln.test.list", [1, 2, 3])
    golden = {}
    x = rng.standard_normal((2, 512), dtype=np.float32)
    w.add_tensor("plain.f32", x)
    golden["plain.f32"] = torch.from_numpy(x)
    w.add_tensor("plain.f16", x.astype(np.float16))
    golden["plain.f16"] = torch.from_numpy(x.astype(np.float16))
    w.add_tensor("plain.bf16", gguf.quants.quantize(x, Q.BF16), raw_dtype=Q.BF16)
    golden["plain.bf16"] = torch.from_numpy(x).bfloat16()
    ints = rng.integers(-1000, 1000, size=(3, 5), dtype=np.int32)
    w.add_tensor("plain.i32", ints)
    golden["plain.i32"] = torch.from_numpy(ints)
    for qtype in BLOCK_TYPES:
        data = gguf.quants.quantize(x * 0.05, qtype)
        w.add_tensor(f"block.{qtype.name}", data, raw_dtype=qtype)
        golden[f"block.{qtype.name}"] = dequantized(data, qtype)
    for qtype in RANDOM_TYPES:
        data = random_blocks(rng, qtype, 2, 512)
        w.add_tensor(f"block.{qtype.name}", data, raw_dtype=qtype)
        golden[f"block.{qtype.name}"] = dequantized(data, qtype)
    conv = rng.standard_normal((16, 16, 3, 3), dtype=np.float32) * 0.1
    data = gguf.quants.quantize(conv.reshape(-1, 256), Q.Q8_0)
    w.add_array("comfy.gguf.orig_shape.conv.weight", list(conv.shape))
    w.add_tensor("conv.weight", data, raw_dtype=Q.Q8_0)
    golden["conv.weight"] = dequantized_half(data, Q.Q8_0).reshape(conv.shape)
    write(w)
    save_goldens(golden, f"{HERE}/quants.golden.safetensors")


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add_quantized(w, name, t, qtype, table=False):
    """Adds t (float32) to w in qtype; returns what it reads back as, in
    float32: the block types as kiln widens them, exactly, for a matmul, or
    rounded to float16 for a table (the copy kiln makes for its ops)."""
    x = t.float().numpy()
    if qtype in (Q.F32, Q.BF16):
        w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
        return torch.from_numpy(x).to(torch.bfloat16 if qtype == Q.BF16 else torch.float32).float()
    data = gguf.quants.quantize(x, qtype)
    w.add_tensor(name, data, raw_dtype=qtype)
    return (dequantized_half if table else dequantized)(data, qtype).float()


def flux_type(name, t):
    if t.ndim == 1 or t.numel() <= 1024:
        return Q.F32
    if name.split(".")[0] in ("img_in", "txt_in", "time_in", "vector_in", "guidance_in", "final_layer"):
        return Q.BF16
    return Q.Q8_0


def read_back_as_diffusers(diffusers_sd, read_back, rename=to_bfl):
    """The weights a file in the original names (rename's) reads back as,
    taken to diffusers' names row by row; diffusers_sd's where it has none."""
    assert set(rename(diffusers_sd)) == set(read_back)
    state = {k: v.float().clone() for k, v in diffusers_sd.items()}
    for bfl_name, rows in bfl_rows_to_diffusers(diffusers_sd, rename).items():
        for i, (name, row) in enumerate(rows):
            state[name][row] = read_back[bfl_name][i]
    return state


def flux(goldens):
    bfl = load_file(f"{FLUX}/single/flux1-tiny.safetensors")
    w = gguf.GGUFWriter(f"{HERE}/flux1-tiny-Q8_0.gguf", "flux")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    read_back = {k: add_quantized(w, k, v, flux_type(k, v)) for k, v in bfl.items()}
    write(w)
    diffusers_sd = load_file(f"{FLUX}/transformer/diffusion_pytorch_model.safetensors")
    state = read_back_as_diffusers(diffusers_sd, read_back)
    for k in state:  # biases: one-dimensional, so F32: as stored
        if not k.endswith(".weight"):
            assert flux_type(k, diffusers_sd[k]) == Q.F32
    # the final modulation's biases swap halves in BFL's order; their values are exact either way
    goldens["flux.out"] = transformer_out(state)

    # tests/data/flux/lora/kohya.safetensors merged at 0.8 into those weights, each merged weight rounded to
    # the type kiln keeps it in (the block types' f16, BF16's bf16)
    kept = {Q.Q8_0: torch.float16, Q.BF16: torch.bfloat16, Q.F32: torch.float32}
    dtype_of = {}
    for bfl_name, rows in bfl_rows_to_diffusers(diffusers_sd).items():
        for name, _ in rows:
            dtype_of[name] = kept[flux_type(bfl_name, bfl[bfl_name])]
    lora = {k: v.float() for k, v in load_file(f"{FLUX}/lora/kohya.safetensors").items()}
    merged = {k: v.clone() for k, v in state.items()}
    rows_of = bfl_rows_to_diffusers(diffusers_sd)
    touched = set()
    for key in lora:
        if not key.startswith("lora_unet_") or not key.endswith(".lora_up.weight"):
            continue
        module = key[len("lora_unet_"):-len(".lora_up.weight")]
        bfl_module = next(m for m in {n.rsplit(".", 1)[0] for n in rows_of} if m.replace(".", "_") == module)
        base = key[:-len(".lora_up.weight")]
        up, down, alpha = lora[f"{base}.lora_up.weight"], lora[f"{base}.lora_down.weight"], lora[f"{base}.alpha"]
        delta = 0.8 * alpha / up.shape[1] * (up @ down)
        for row, (name, target_row) in enumerate(rows_of[f"{bfl_module}.weight"]):
            merged[name][target_row] += delta[row]
            touched.add(name)
    for name in touched:
        merged[name] = merged[name].to(dtype_of[name]).float()
    goldens["flux.kohya.out"] = transformer_out(merged)


def t5_type(gguf_name, t):
    if t.ndim == 1 or t.numel() <= 1024:
        return Q.F32
    for part, qtype in (("attn_q", Q.Q4_0), ("attn_k", Q.Q4_1), ("attn_v", Q.Q5_0), ("attn_o", Q.Q5_1)):
        if f".{part}." in gguf_name:
            return qtype
    return Q.Q8_0


def t5_vocab(w):
    """The tiny T5's tokenizer (tests/data/pixart/tiny/tokenizer/spiece.model)
    as llama.cpp's convert_hf_to_gguf.py writes a T5's: each piece with its
    score and type, "[PADn]" pieces (unused, score -1000) up to the model's
    vocab_size, the normalizer's flags and character map."""
    path = f"{T5}/../tokenizer/spiece.model"
    proc = SentencePieceProcessor(model_file=path)
    proto = ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    tokens, scores, types = [], [], []
    for i in range(proc.vocab_size()):
        kind = 2 if proc.is_unknown(i) else 3 if proc.is_control(i) else 5 if proc.is_unused(i) else \
            6 if proc.is_byte(i) else 1
        tokens.append(proc.id_to_piece(i).encode("utf-8"))
        scores.append(proc.get_score(i))
        types.append(kind)
    with open(f"{T5}/config.json") as f:
        vocab_size = json.load(f)["vocab_size"]
    for i in range(1, vocab_size - len(tokens) + 1):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(5)
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    w.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    w.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)


def t5(goldens):
    sd = load_file(f"{T5}/model.safetensors")
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.T5ENCODER, 2)
    w = gguf.GGUFWriter(f"{HERE}/t5-tiny-Q8_0.gguf", "t5encoder")
    t5_vocab(w)
    read_back = {}
    for k, v in sd.items():
        base, kind = k.rsplit(".", 1)
        name = f"{names.get_name(base)}.{kind}"
        read_back[k] = add_quantized(w, name, v, t5_type(name, v), table=name.startswith("token_embd."))
    write(w)
    model = T5EncoderModel.from_pretrained(T5).eval()
    missing, unexpected = model.load_state_dict(read_back, strict=False)
    assert not unexpected and all("embed_tokens" in k for k in missing), (missing, unexpected)
    ids = load_file(f"{FLUX}/run.golden.safetensors")["run.t5_ids.positive"].long()
    with torch.no_grad():
        goldens["t5.out"] = model(input_ids=ids).last_hidden_state
    goldens["t5.ids"] = ids.int()


def sd_unet():
    sd = load_file(f"{DATA}/tiny/sd15_tiny_ldm_fp16.safetensors")
    prefix = "model.diffusion_model."
    w = gguf.GGUFWriter(f"{HERE}/sd15-tiny-unet-F16.gguf", "sd1")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    flattened = 0
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        data = v.numpy()
        if data.ndim > 1 and data.size >= 512 and data.size % 256 == 0 and data.shape[-1] % 256:
            w.add_array(f"comfy.gguf.orig_shape.{k[len(prefix):]}", list(data.shape))
            data = data.reshape(-1, 256)
            flattened += 1
        w.add_tensor(k[len(prefix):], data, raw_dtype=Q.F16)
    write(w)
    assert flattened > 10, flattened


def sd_unet_q8_0(goldens):
    """The same UNet with every linear weight (two-dimensional, rows of whole
    32-value blocks: attention, feed-forward, time and resnet embeddings) in
    Q8_0, the rest F16 as stored; diffusers' UNet2DConditionModel on what
    the file reads back (Q8_0 in float32 as gguf-py dequantizes it) and
    tests/data/tiny/unet.safetensors's inputs -> sd15.noise_pred."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    sd = load_file(f"{DATA}/tiny/sd15_tiny_ldm_fp16.safetensors")
    prefix = "model.diffusion_model."
    w = gguf.GGUFWriter(f"{HERE}/sd15-tiny-unet-Q8_0.gguf", "sd1")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    read_back, quantized = {}, 0
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        qtype = Q.Q8_0 if v.ndim == 2 and v.shape[-1] % 32 == 0 else Q.F16
        quantized += qtype == Q.Q8_0
        read_back[k] = add_quantized(w, k[len(prefix):], v, qtype) if qtype == Q.Q8_0 else v.float()
        if qtype == Q.F16:
            w.add_tensor(k[len(prefix):], v.numpy(), raw_dtype=Q.F16)
    write(w)
    assert quantized > 20, quantized
    unet = UNet2DConditionModel.from_pretrained(f"{DATA}/tiny/sd15_tiny_diffusers/unet").eval()
    unet.load_state_dict(convert_ldm_unet_checkpoint(read_back, unet.config))
    inputs = load_file(f"{DATA}/tiny/unet.safetensors")
    with torch.no_grad():
        goldens["sd15.noise_pred"] = unet(inputs["sample"], inputs["timesteps"],
                                          encoder_hidden_states=inputs["encoder_hidden_states"]).sample
    for name in ("sample", "timesteps", "encoder_hidden_states"):
        goldens[f"sd15.{name}"] = inputs[name]


def converted_at_load(goldens):
    """What kiln_model_parts.weight_dtype makes of float weights: Q4_0, Q4_1,
    Q5_0, Q5_1 and Q8_0 as gguf-py quantizes (convert.q.x ->
    convert.<type>.blocks, the bytes),
    fp8 as torch casts (convert.f8.x -> convert.f8e4m3 / convert.f8e5m2, the
    bytes: ties, subnormals, past the largest value, infinities); and the
    tiny Flux transformer of flux/single with every two-dimensional weight
    (its linear layers) so converted from its float16 values, against
    diffusers on tests/data/flux/golden's inputs: flux.q8_0.out,
    flux.q4_0.out, flux.fp8_e4m3fn.out."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((4, 256)) * np.array([[1e-3], [0.05], [1.0], [300.0]])).astype(np.float32)
    x[0, :8] = 0.0
    goldens["convert.q.x"] = torch.from_numpy(x)
    for qtype in (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0):
        goldens[f"convert.{qtype.name.lower()}.blocks"] = torch.from_numpy(gguf.quants.quantize(x, qtype))
    edges = [448, 449, 464, 465, 479, 480, 1e6, np.inf, -np.inf, 57344, 61440, 65536, 2.0**-10, 2.0**-9 * 1.5,
             2.0**-9 * 0.5, 2.0**-9 * 2.5, 2.0**-17, 2.0**-16 * 1.5, -0.0, 0.3125, 0.34375, 1 / 3]
    f8 = torch.cat([torch.tensor(edges, dtype=torch.float32), torch.from_numpy(
        (rng.standard_normal(490) * np.exp(rng.uniform(-12, 8, 490))).astype(np.float32))])
    goldens["convert.f8.x"] = f8
    goldens["convert.f8e4m3"] = f8.to(torch.float8_e4m3fn).view(torch.uint8)
    goldens["convert.f8e5m2"] = f8.to(torch.float8_e5m2).view(torch.uint8)

    bfl = load_file(f"{FLUX}/single/flux1-tiny.safetensors")
    diffusers_sd = load_file(f"{FLUX}/transformer/diffusion_pytorch_model.safetensors")
    rows_of = bfl_rows_to_diffusers(diffusers_sd)
    assert all(bfl[name].ndim == 2 for name in rows_of) and all(v.ndim == 1 for k, v in bfl.items() if k not in rows_of)
    def through(qtype):
        return lambda t: torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(t.float().numpy(), qtype), qtype))
    converts = {"q8_0": through(Q.Q8_0), "q4_0": through(Q.Q4_0),
                "fp8_e4m3fn": lambda t: t.float().to(torch.float8_e4m3fn).float()}
    for kind, convert in converts.items():
        state = {k: v.float().clone() for k, v in diffusers_sd.items()}
        for bfl_name, rows in rows_of.items():
            weight = convert(bfl[bfl_name])
            for i, (name, row) in enumerate(rows):
                state[name][row] = weight[i]
        goldens[f"flux.{kind}.out"] = transformer_out(state)


def main():
    sd_unet()
    quants()
    goldens = {}
    flux(goldens)
    t5(goldens)
    sd_unet_q8_0(goldens)
    converted_at_load(goldens)
    save_goldens(goldens, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
