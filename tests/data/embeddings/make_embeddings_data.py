#!/usr/bin/env python3
"""Writes kiln's textual-inversion ("embedding:NAME" in prompts) test data:
small embedding files in the formats people have, and what ComfyUI's
CLIPTextEncode makes of prompts using them, computed here with torch and
transformers on the tiny random models, ComfyUI's steps restated (not run).

Embedding files (this folder is the embeddings folder; seeded random vectors
scaled by the std of the tiny CLIP's token_embedding rows, 0.02 for the SD 1.5
tower, 0.5 for the SDXL bigG tower):
  style.safetensors       {"emb_params": (3,32)}                 kohya / A1111 safetensors
  sub/pair.safetensors    {"clip_l": (2,32), "clip_g": (2,32)}   SDXL's, one set a tower,
                          in a subfolder (ComfyUI searches subfolders too)
  wide.safetensors        {"emb_params": (2,48)}                 width 48 fits no tower here
  legacy.pt               A1111's torch.save dict (zip format): string_to_token {'*': 265},
                          string_to_param {'*': Parameter (2,32) float32}, name, step,
                          sd_checkpoint, sd_checkpoint_name
  half.pt                 the same layout with a float16 Parameter (4,32)
  learned_embeds.bin      diffusers' textual inversion: {"<cat-toy>": (32,)}, a 1-D vector

embeddings.golden.safetensors, for each case "<model>.N" (model sd15 or sdxl):
  <model>.N.z        float32 (windows*77, width): the conditioning (32 wide for
                     SD 1.5; 64 for SDXL, clip_l's then clip_g's features)
  <model>.N.ids      int32 (windows*77): the token id at each row fed to the
                     tower (clip_l's on SDXL), -1 where an embedding vector sits;
                     a dropped embedding's rows are gone and pad rows appended
                     at the window's end, as ComfyUI's process_tokens does
  <model>.N.weights  float32 (windows*77): the prompt weight ComfyUI applies to
                     output row j (the tokenizer's j-th entry's weight)
  sdxl.N.pooled      float32 (1, 32): clip_g's projected pooled output of the
                     first window
  metadata: "prompts" (JSON {"sd15": [...], "sdxl": [...]}) and "source".
Cases (SD15_PROMPTS, SDXL_PROMPTS below; windows):
  sd15.0 "a photo of embedding:style cat" (1)
  sd15.1 "(embedding:style:1.3), dog embedding:legacy bird" (1)
  sd15.2 "embedding:learned_embeds embedding:half, red car" (1): "half," is not
         found, "half" is, and ", red car" is tokenized after it
  sd15.3 "cat embedding:wide dog" (1): wide dropped, 2 pad rows at the end
  sd15.4 "embedding:missing tree embedding:pair house" (1): missing dropped,
         pair found in sub/ (its clip_l)
  sd15.5 73 x "cat", then " embedding:style dog bird" (2): style's 3 vectors
         do not fit after 73 tokens and move whole to the second window
  sd15.6 "(cat embedding:legacy:0.7) embedding:style" (1)
  sd15.7 as sd15.5 with 72 x "cat" (2): style just fits (rows 73-75), EOS at
         76, "dog bird" moves
  sdxl.0 "a embedding:pair photo" (1): clip_l / clip_g take their own key
  sdxl.1 "(embedding:style:0.8) portrait" (1): 32 wide, it fits both tiny towers
The layouts are asserted against hand-written expectations and printed.

ComfyUI's behaviour restated (comfy/sd1_clip.py, comfy/sdxl_clip.py,
comfy/clip_model.py at the commit named in "source"):
  - An "embedding:" word starts a segment or follows a space or newline. Its
    name is the text up to the next whitespace; the rest ("leftover") is
    tokenized as an ordinary word. A name not found is retried with commas
    stripped from both ends; if that shortens it, the leftover becomes the
    stripped characters, a space, and the old leftover (", red car").
  - Lookup: the embeddings folder and every folder below it; in each, the
    exact file name, else NAME.safetensors, .pt, .bin; the path must stay
    inside the folder.
  - A loaded file gives: string_to_param's first tensor; else the tower's key
    (clip_l for SD 1.x and SDXL's clip_l, clip_g for SDXL's clip_g); else
    bundle_emb.* entries; else the first tensor. A 1-D tensor is one vector;
    float16 is cast to float32 when fed.
  - The vectors of one embedding are one word group (weight of its segment);
    groups of 8 or more entries may be split across windows of 75, shorter
    ones move whole to the next window (the current one ends with EOS + pads).
  - process_tokens: vectors whose width is not the tower's are dropped with a
    warning and as many pad rows (the model's pad id: 49407 for clip_l, 0 for
    clip_g) are appended at the end; the pooled output is read at
    (integer entries up to and including the first EOS + vectors kept) - 1.
  - Weights: where a row's weight != 1, z = (z - z_empty) * w + z_empty, z_empty
    the encoding of [BOS, EOS, pad...] in the same batch (per tower).
  - SD 1.5: last layer through final_layer_norm, pads EOS. SDXL: both towers'
    hidden_states[-2] without the final norm, clip_l then clip_g along the
    features; clip_l pads with EOS, clip_g with 0; pooled from clip_g's last
    layer through final_layer_norm, times text_projection, first window.
    (ComfyUI cuts both towers to the shorter one; here both have 1 window.)
The tokenizer is transformers' CLIPTokenizer built from kiln's
runtime/data/bpe_simple_vocab_16e6.txt.gz, without ftfy (stock ComfyUI); the
restated tokenizer is first checked against tests/data/tokenizer's ComfyUI
ids and weights. The encoder route (token rows computed here, fed through
transformers' embeddings with inputs_embeds) is checked against the plain
model call and against a hand-written CLIP forward.

Run from the repository root (torch, transformers, safetensors, numpy):
  /tmp/tv/bin/python tests/data/embeddings/make_embeddings_data.py
"""
import gzip
import json
import logging
import os
import re
import subprocess
import tempfile

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VOCAB = os.path.join(ROOT, "runtime", "data", "bpe_simple_vocab_16e6.txt.gz")
SD15_TE = os.path.join(ROOT, "tests", "data", "tiny", "sd15_tiny_diffusers", "text_encoder")
SDXL_L = os.path.join(ROOT, "tests", "data", "sdxl", "tiny_sdxl_diffusers", "text_encoder")
SDXL_G = os.path.join(ROOT, "tests", "data", "sdxl", "tiny_sdxl_diffusers", "text_encoder_2")
COMFY_PROMPTS = os.path.join(ROOT, "tests", "data", "tokenizer", "comfyui_prompts.json")
COMFY_MIRROR = "/work/.mirror/Comfy-Org+ComfyUI/repo"
OUT = os.path.join(HERE, "embeddings.golden.safetensors")

BOS, EOS = 49406, 49407
WINDOW = 77
GROUP_SPLIT = 8          # ComfyUI's max_word_length
PREFIX = "embedding:"

log = logging.getLogger("embeddings")

SD15_PROMPTS = [
    "a photo of embedding:style cat",
    "(embedding:style:1.3), dog embedding:legacy bird",
    "embedding:learned_embeds embedding:half, red car",
    "cat embedding:wide dog",
    "embedding:missing tree embedding:pair house",
    " ".join(["cat"] * 73) + " embedding:style dog bird",
    "(cat embedding:legacy:0.7) embedding:style",
    " ".join(["cat"] * 72) + " embedding:style dog bird",
]
SDXL_PROMPTS = [
    "a embedding:pair photo",
    "(embedding:style:0.8) portrait",
]


# ------------------------------------------------------------------ models, tokenizer

def load_models():
    f32 = dict(dtype=torch.float32)
    sd15 = CLIPTextModel.from_pretrained(SD15_TE, **f32).eval()
    xl_l = CLIPTextModel.from_pretrained(SDXL_L, **f32).eval()
    xl_g = CLIPTextModelWithProjection.from_pretrained(SDXL_G, **f32).eval()
    return sd15, xl_l, xl_g


def text_part(model):
    """The CLIP text transformer (embeddings, encoder, final_layer_norm)."""
    return model.text_model if hasattr(model, "text_model") else model


def byte_symbols():
    """CLIP's (GPT-2's) byte -> printable character table, in its vocabulary
    order: the printable bytes as themselves, then the others as 256, 257, ..."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) \
        + list(range(ord("\xae"), ord("\xff") + 1))
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(rest))]


def build_tokenizer(tmp):
    lines = gzip.open(VOCAB).read().decode("utf-8").split("\n")
    merges = lines[1:48895]                       # CLIP keeps 49152 - 256 - 2 merges
    assert len(merges) == 48894
    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    with open(os.path.join(tmp, "vocab.json"), "w") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(os.path.join(tmp, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
    assert tok("")["input_ids"] == [BOS, EOS]
    return tok, {v: i for i, v in enumerate(vocab)}


# ------------------------------------------------------------------ embedding files

def write_files(sd15, xl_g):
    std_l = float(text_part(sd15).embeddings.token_embedding.weight.detach().std())
    std_g = float(text_part(xl_g).embeddings.token_embedding.weight.detach().std())

    def rand(seed, *shape, std):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(*shape, generator=g) * std).float()

    os.makedirs(os.path.join(HERE, "sub"), exist_ok=True)
    safetensors.torch.save_file({"emb_params": rand(101, 3, 32, std=std_l)},
                                os.path.join(HERE, "style.safetensors"))
    safetensors.torch.save_file({"clip_l": rand(102, 2, 32, std=std_l), "clip_g": rand(103, 2, 32, std=std_g)},
                                os.path.join(HERE, "sub", "pair.safetensors"))
    safetensors.torch.save_file({"emb_params": rand(104, 2, 48, std=std_l)},
                                os.path.join(HERE, "wide.safetensors"))

    def a1111(name, tensor):
        return {"string_to_token": {"*": 265},
                "string_to_param": {"*": torch.nn.Parameter(tensor)},
                "name": name, "step": 1500, "sd_checkpoint": "0123abcd", "sd_checkpoint_name": "tiny"}

    torch.save(a1111("legacy", rand(105, 2, 32, std=std_l)), os.path.join(HERE, "legacy.pt"))
    torch.save(a1111("half", rand(106, 4, 32, std=std_l).half()), os.path.join(HERE, "half.pt"))
    torch.save({"<cat-toy>": rand(107, 32, std=std_l)}, os.path.join(HERE, "learned_embeds.bin"))


# ------------------------------------------------------------------ ComfyUI's lookup and loading, restated

def embedding_dirs(root):
    """The folder and every folder below it (symlinks followed). ComfyUI keeps
    them in a set, so its order is arbitrary; names here are unique."""
    found = {root}
    for here, _, _ in os.walk(root, followlinks=True):
        found.add(here)
    return sorted(found, key=lambda d: (d != root, d))


def find_embedding(name, root):
    for folder in embedding_dirs(root):
        folder = os.path.abspath(folder)
        path = os.path.abspath(os.path.join(folder, name))
        try:
            if os.path.commonpath((folder, path)) != folder:
                continue
        except ValueError:
            continue
        if os.path.isfile(path):
            return path
        for ext in (".safetensors", ".pt", ".bin"):
            if os.path.isfile(path + ext):
                return path + ext
    return None


def load_embedding(name, root, key):
    path = find_embedding(name, root)
    if path is None:
        return None
    if path.lower().endswith(".safetensors"):
        data = safetensors.torch.load_file(path, device="cpu")
    else:
        # ComfyUI tries weights_only first; its fallback reader only knows 768/1024
        # wide vectors, so these files must load this way.
        data = torch.load(path, weights_only=True, map_location="cpu")
    if "string_to_param" in data:
        return next(iter(data["string_to_param"].values())).detach()
    if isinstance(data, list):
        raise NotImplementedError("list-format embeddings are not used here")
    if key in data:
        return data[key]
    bundled = [v for k, v in data.items() if k.startswith("bundle_emb.") and k.endswith(".string_to_param.*")]
    if not bundled:
        bundled = [v for k, v in data.items() if k.startswith("bundle_emb.") and k.endswith("." + key)]
    if bundled:
        return torch.cat(bundled, dim=0)
    return next(iter(data.values()))


# ------------------------------------------------------------------ ComfyUI's tokenize_with_weights, restated

def paren_parts(text):
    """Top-level pieces: text outside parentheses, and each outermost (...)."""
    parts, cur, depth = [], "", 0
    for ch in text:
        if ch == "(":
            if depth == 0 and cur:
                parts.append(cur)
                cur = ""
            cur += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                parts.append(cur + ch)
                cur = ""
            else:
                cur += ch
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def weighted_pieces(text, weight=1.0):
    out = []
    for part in paren_parts(text):
        if len(part) >= 2 and part.startswith("(") and part.endswith(")"):
            inner = part[1:-1]
            w = weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    w = float(inner[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out += weighted_pieces(inner, w)
        else:
            out.append((part, weight))
    return out


class Tokenizer:
    """One tower's ComfyUI SDTokenizer: windows of 77 (entry, weight, label);
    an entry is a token id or an embedding vector (1-D tensor)."""

    def __init__(self, tok, vocab, pad, key, root):
        self.tok, self.pad, self.key, self.root = tok, pad, key, root
        self.names = {i: v for v, i in vocab.items()}

    def word_ids(self, word):
        return self.tok(word)["input_ids"][1:-1]

    def try_embedding(self, text):
        words = text.split()
        name, rest = words[0], " ".join(words[1:])
        emb = load_embedding(name, self.root, self.key)
        if emb is None:
            bare = name.strip(",")
            if len(bare) < len(name):
                return load_embedding(bare, self.root, self.key), bare, "%s %s" % (name[len(bare):], rest)
        return emb, name, rest

    def groups(self, text):
        text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
        groups = []
        for piece, weight in weighted_pieces(text, 1.0):
            piece = piece.replace("\0\1", ")").replace("\0\2", "(")
            chunks = re.split(" %s|\n%s" % (PREFIX, PREFIX), piece)
            words = [chunks[0]] + [PREFIX + c for c in chunks[1:]]
            for word in [w for w in words if w != ""]:
                if word.startswith(PREFIX):
                    emb, name, rest = self.try_embedding(word[len(PREFIX):].strip("\n"))
                    if emb is None:
                        log.warning("embedding %r not found, dropped (leftover %r)", name, rest)
                    else:
                        rows = [emb] if emb.dim() == 1 else [emb[i] for i in range(emb.shape[0])]
                        groups.append([(r, weight, "%s[%d]" % (name, i)) for i, r in enumerate(rows)])
                    if rest == "":
                        continue
                    word = rest
                groups.append([(t, weight, self.names[t]) for t in self.word_ids(word)])
        return groups

    def windows(self, text):
        cur = [(BOS, 1.0, "<s>")]
        wins = [cur]
        for group in self.groups(text):
            splittable = len(group) >= GROUP_SPLIT
            while group:
                room = WINDOW - 1 - len(cur)
                if len(group) <= room:
                    cur += group
                    group = []
                    continue
                if splittable:
                    cur += group[:room]
                    group = group[room:]
                    cur.append((EOS, 1.0, "</s>"))
                else:
                    cur.append((EOS, 1.0, "</s>"))
                    cur += [(self.pad, 1.0, "pad")] * room
                cur = [(BOS, 1.0, "<s>")]
                wins.append(cur)
        cur.append((EOS, 1.0, "</s>"))
        cur += [(self.pad, 1.0, "pad")] * (WINDOW - len(cur))
        assert all(len(w) == WINDOW for w in wins)
        return wins


# ------------------------------------------------------------------ ComfyUI's process_tokens and encode, restated

def window_rows(model, window, pad):
    """Token rows (77, width) fed to the tower, the id of each row (-1 for a
    vector), the labels, and the pooled row index (num_tokens - 1)."""
    emb = text_part(model).embeddings.token_embedding.weight
    width = emb.shape[1]
    rows, ids, labels, dropped = [], [], [], 0
    counted, seen_eos = 0, False
    for entry, _, label in window:
        if isinstance(entry, int):
            rows.append(emb[entry])
            ids.append(entry)
            labels.append(label)
            if not seen_eos:
                counted += 1
                seen_eos = entry == EOS
        elif entry.shape[-1] == width:
            rows.append(entry.to(torch.float32))
            ids.append(-1)
            labels.append(label)
            counted += 1
        else:
            log.warning("%s: width %d != %d, dropped", label, entry.shape[-1], width)
            dropped += 1
    for _ in range(dropped):
        rows.append(emb[pad])
        ids.append(pad)
        labels.append("pad+")
    return torch.stack(rows), ids, labels, counted - 1


def run_layers(model, token_rows):
    """transformers' text tower on token rows (B, 77, width): positions added
    by its embeddings (inputs_embeds), causal mask; all hidden states."""
    tp = text_part(model)

    def feed(_module, _args, kwargs):
        return (), {"input_ids": None, "position_ids": kwargs.get("position_ids"), "inputs_embeds": token_rows}

    hook = tp.embeddings.register_forward_pre_hook(feed, with_kwargs=True)
    try:
        with torch.no_grad():
            out = tp(input_ids=torch.zeros(token_rows.shape[:2], dtype=torch.long), output_hidden_states=True)
    finally:
        hook.remove()
    return out.hidden_states


def hand_forward(model, token_rows):
    """CLIP's text tower written out (the arithmetic of comfy/clip_model.py):
    every hidden state, for checking run_layers."""
    tp = text_part(model)
    cfg = model.config
    heads = cfg.num_attention_heads
    act = {"quick_gelu": lambda a: a * torch.sigmoid(1.702 * a), "gelu": torch.nn.functional.gelu}[cfg.hidden_act]
    n = token_rows.shape[1]
    x = token_rows + tp.embeddings.position_embedding.weight[:n]
    mask = torch.full((n, n), -torch.finfo(x.dtype).max).triu_(1)
    states = [x]
    with torch.no_grad():
        for layer in tp.encoder.layers:
            a = layer.self_attn
            h = layer.layer_norm1(x)
            b, t, c = h.shape
            q, k, v = (p(h).reshape(b, t, heads, c // heads).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
            att = torch.softmax(q @ k.transpose(-1, -2) / (c // heads) ** 0.5 + mask, dim=-1) @ v
            x = x + a.out_proj(att.transpose(1, 2).reshape(b, t, c))
            x = x + layer.mlp.fc2(act(layer.mlp.fc1(layer.layer_norm2(x))))
            states.append(x)
    return states


def encode_tower(model, wins, pad, layer):
    """One tower's ComfyUI encode_token_weights: (z (windows*77, width),
    ids, weights, pooled row of window 0 (through final_layer_norm), labels)."""
    fed = [window_rows(model, w, pad) for w in wins]
    weights = [[w for _, w, _ in win] for win in wins]
    weighted = any(w != 1.0 for row in weights for w in row)
    batch = [f[0] for f in fed]
    if weighted:
        empty = [BOS, EOS] + [pad] * (WINDOW - 2)
        batch.append(text_part(model).embeddings.token_embedding.weight[empty])
    batch = torch.stack(batch)
    states = run_layers(model, batch)
    check = hand_forward(model, batch)
    for s, c in zip(states, check):
        assert torch.allclose(s, c, atol=2e-5, rtol=0), float((s - c).abs().max())
    tp = text_part(model)
    with torch.no_grad():
        final = tp.final_layer_norm(states[-1])
        z = final if layer == "last" else states[-2]
        z = z.clone()
        if weighted:
            z_empty = z[-1]
            for k in range(len(wins)):
                for j in range(WINDOW):
                    w = weights[k][j]
                    if w != 1.0:
                        z[k, j] = (z[k, j] - z_empty[j]) * w + z_empty[j]
        pooled = final[0, fed[0][3]]
    z = z[:len(wins)].reshape(-1, z.shape[-1])
    ids = [i for f in fed for i in f[1]]
    labels = [f[2] for f in fed]
    return z, ids, [w for row in weights for w in row], pooled, labels, [f[3] for f in fed]


# ------------------------------------------------------------------ checks

def check_route(model, tok):
    """The inputs_embeds route equals the plain model call on a plain prompt."""
    ids = torch.tensor([tok("a photo of a cat", padding="max_length", max_length=WINDOW)["input_ids"]])
    tp = text_part(model)
    with torch.no_grad():
        plain = tp(input_ids=ids, output_hidden_states=True)
    ours = run_layers(model, tp.embeddings.token_embedding.weight[ids])
    for a, b in zip(plain.hidden_states, ours):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    with torch.no_grad():
        assert torch.allclose(tp.final_layer_norm(ours[-1]), plain.last_hidden_state, atol=1e-6, rtol=0)


def check_tokenizer(tok, vocab):
    """The restated tokenizer (no embeddings) against ComfyUI's own ids and
    weights in tests/data/tokenizer/comfyui_prompts.json."""
    t = Tokenizer(tok, vocab, EOS, "clip_l", HERE)
    cases = json.load(open(COMFY_PROMPTS))["cases"]
    for case in cases:
        wins = t.windows(case["prompt"])
        ids = [e for w in wins for e, _, _ in w]
        weights = np.array([w for win in wins for _, w, _ in win], dtype=np.float32)
        assert ids == case["ids"], case["prompt"]
        assert np.array_equal(weights, np.array(case["weights"], dtype=np.float32)), case["prompt"]
    print("restated tokenizer matches ComfyUI's ids and weights on %d prompts" % len(cases))


def spec(vocab, *windows):
    """Expected windows: words (single tokens), "<s>", "</s>", "pad", or
    "name[i]" for embedding vector i, each optionally (label, weight); windows
    are padded to 77 with "pad"."""
    out = []
    for win in windows:
        w = [e if isinstance(e, tuple) else (e, 1.0) for e in win]
        w += [("pad", 1.0)] * (WINDOW - len(w))
        out.append(w)
    return out


def labelled(wins):
    return [[(lab, w) for _, w, lab in win] for win in wins]


def compare(name, got, want, vocab):
    if got != want:
        for k, (g, w) in enumerate(zip(got, want)):
            for j, (a, b) in enumerate(zip(g, w)):
                if a != b:
                    print(name, "window", k, "pos", j, "got", a, "want", b)
        raise AssertionError(name)


def show(name, labels, weights):
    """Prints each window, runs of one label collapsed (cat</w> x73)."""
    for k, row in enumerate(labels):
        ws = weights[k * WINDOW:(k + 1) * WINDOW]
        items = [lab if ws[j] == 1.0 else "%s:%g" % (lab, ws[j]) for j, lab in enumerate(row)]
        runs = []
        for it in items:
            if runs and runs[-1][0] == it:
                runs[-1][1] += 1
            else:
                runs.append([it, 1])
        print("  %s window %d: %s" % (name, k, " ".join(a if n == 1 else "%s x%d" % (a, n) for a, n in runs)))


# ------------------------------------------------------------------ main

def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    torch.manual_seed(0)
    sd15, xl_l, xl_g = load_models()
    write_files(sd15, xl_g)

    with tempfile.TemporaryDirectory() as tmp:
        tok, vocab = build_tokenizer(tmp)
        check_tokenizer(tok, vocab)
        for m in (sd15, xl_l, xl_g):
            check_route(m, tok)

        w = lambda s: s + "</w>"  # noqa: E731
        c, E, S = w("cat"), "</s>", "<s>"
        style = ["style[0]", "style[1]", "style[2]"]
        want_sd15 = [
            spec(vocab, [S, w("a"), w("photo"), w("of")] + style + [c, E]),
            spec(vocab, [S] + [(s, 1.3) for s in style] + [w(","), w("dog"), "legacy[0]", "legacy[1]",
                                                         w("bird"), E]),
            spec(vocab, [S, "learned_embeds[0]", "half[0]", "half[1]", "half[2]", "half[3]",
                         w(","), w("red"), w("car"), E]),
            # the wide vectors' rows are gone; two pad rows appended at the end
            spec(vocab, [S, c, w("dog"), E] + ["pad"] * 71 + ["pad+", "pad+"]),
            spec(vocab, [S, w("tree"), "pair[0]", "pair[1]", w("house"), E]),
            spec(vocab, [S] + [c] * 73 + [E, "pad", "pad"], [S] + style + [w("dog"), w("bird"), E]),
            spec(vocab, [S, (c, 0.7), ("legacy[0]", 0.7), ("legacy[1]", 0.7)] + style + [E]),
            spec(vocab, [S] + [c] * 72 + style + [E], [S, w("dog"), w("bird"), E]),
        ]
        want_sdxl = [
            spec(vocab, [S, w("a"), "pair[0]", "pair[1]", w("photo"), E]),
            spec(vocab, [S] + [(s, 0.8) for s in style] + [w("portrait"), E]),
        ]

        tensors, prompts = {}, {"sd15": SD15_PROMPTS, "sdxl": SDXL_PROMPTS}
        t15 = Tokenizer(tok, vocab, EOS, "clip_l", HERE)
        print("sd15:")
        for n, prompt in enumerate(SD15_PROMPTS):
            wins = t15.windows(prompt)
            z, ids, weights, _, labels, _ = encode_tower(sd15, wins, EOS, "last")
            compare("sd15.%d" % n, [[(lab, w) for lab, w in zip(row, weights[k * WINDOW:(k + 1) * WINDOW])]
                                    for k, row in enumerate(labels)], want_sd15[n], vocab)
            print(" sd15.%d %r: %d window(s)" % (n, prompt[:60], len(wins)))
            show("sd15.%d" % n, labels, weights)
            tensors["sd15.%d.z" % n] = z.contiguous()
            tensors["sd15.%d.ids" % n] = torch.tensor(ids, dtype=torch.int32)
            tensors["sd15.%d.weights" % n] = torch.tensor(weights, dtype=torch.float32)

        tl = Tokenizer(tok, vocab, EOS, "clip_l", HERE)
        tg = Tokenizer(tok, vocab, 0, "clip_g", HERE)
        print("sdxl:")
        for n, prompt in enumerate(SDXL_PROMPTS):
            wl, wg = tl.windows(prompt), tg.windows(prompt)
            assert len(wl) == len(wg)
            zl, ids, weights, _, labels, _ = encode_tower(xl_l, wl, EOS, "penultimate")
            zg, ids_g, weights_g, pooled, labels_g, _ = encode_tower(xl_g, wg, 0, "penultimate")
            assert weights_g == weights
            assert [i if i != 0 else EOS for i in ids_g] == ids and labels_g == labels
            compare("sdxl.%d" % n, [[(lab, w) for lab, w in zip(row, weights[k * WINDOW:(k + 1) * WINDOW])]
                                    for k, row in enumerate(labels)], want_sdxl[n], vocab)
            print(" sdxl.%d %r: %d window(s); clip_g pads with 0" % (n, prompt, len(wl)))
            show("sdxl.%d" % n, labels, weights)
            with torch.no_grad():
                proj = pooled @ xl_g.text_projection.weight.t()
            tensors["sdxl.%d.z" % n] = torch.cat([zl, zg], dim=-1).contiguous()
            tensors["sdxl.%d.ids" % n] = torch.tensor(ids, dtype=torch.int32)
            tensors["sdxl.%d.weights" % n] = torch.tensor(weights, dtype=torch.float32)
            tensors["sdxl.%d.pooled" % n] = proj.reshape(1, -1).contiguous()

        # the embedding rows change the output (causal: rows before them do not)
        plain = encode_tower(sd15, t15.windows("a photo of cat"), EOS, "last")[0]
        assert torch.equal(tensors["sd15.0.z"][:4], plain[:4])
        assert (tensors["sd15.0.z"][4:7] - plain[4:7]).abs().max() > 1e-3

    # the wide case equals the prompt without the embedding (SD 1.5 pads with EOS)
    assert torch.equal(tensors["sd15.3.ids"], torch.tensor([BOS] + tok("cat dog")["input_ids"][1:-1]
                                                           + [EOS] * 74, dtype=torch.int32))

    commit = subprocess.run(["git", "-C", COMFY_MIRROR, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "a125cd84b054a57729b5eecab930ca9408719832"
    source = ("torch %s, transformers %s, safetensors %s, numpy %s on CPU float32; ComfyUI %s "
              "(comfy/sd1_clip.py, sdxl_clip.py, clip_model.py) restated; make_embeddings_data.py"
              % (torch.__version__, transformers.__version__, safetensors.__version__, np.__version__, commit))
    safetensors.torch.save_file(tensors, OUT, metadata={"prompts": json.dumps(prompts), "source": source})
    for folder, _, files in os.walk(HERE):
        for f in files:
            if not f.endswith(".py"):
                os.chmod(os.path.join(folder, f), 0o644)
    for name in sorted(tensors):
        t = tensors[name]
        print("  %-18s %-8s %s" % (name, str(t.dtype).replace("torch.", ""), tuple(t.shape)))
    print(source)


if __name__ == "__main__":
    main()
