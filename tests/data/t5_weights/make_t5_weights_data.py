"""Goldens for prompt weights on T5, as ComfyUI reads them for the DiTs.

Origin: transformers' T5EncoderModel (the tiny T5 of tests/data/pixart,
which tests/data/flux/tiny and tests/data/chroma/tiny link) and
SentencePiece on its spiece.model, with ComfyUI v0.3.64's comfy/sd1_clip.py
(escape_important, parse_parentheses, token_weights, unescape_important;
SDTokenizer.tokenize_with_weights for T5: each weighted segment tokenized on
its own without its EOS, then EOS and the padding; ClipTokenWeightEncoder.
encode_token_weights: a weighted row (z - z_empty) * weight + z_empty, z_empty
the encoding of as many empty ids) restated here, not copied. The empty ids
are EOS then pads for Flux's and SD3's T5 (comfy/text_encoders/sd3_clip.py)
and pads alone for PixArt's and Chroma's (comfy/text_encoders/pixart_t5.py
leaves the end token out).

  PROMPT below:
  flux.ids (1, 256), flux.weights (256), flux.cond (1, 256, 64): Flux's T5
       (its tokenizer's min_length 256);
  chroma.ids, chroma.weights, chroma.cond: Chroma's (and PixArt's) T5,
       unpadded.

Run from the repository root with transformers, sentencepiece and torch:
  python3 tests/data/t5_weights/make_t5_weights_data.py
"""
import os
import sys

import sentencepiece
import torch
from transformers import T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
from sd_common import save_goldens  # noqa: E402

PROMPT = "a (photograph:1.3) of (an:0.5) \\(astronaut\\) riding ((a horse)), [x]"
EOS, PAD = 1, 0


def parse_parentheses(string):
    result, current, nesting = [], "", 0
    for char in string:
        if char == "(":
            if nesting == 0:
                if current:
                    result.append(current)
                current = "("
            else:
                current += char
            nesting += 1
        elif char == ")":
            nesting -= 1
            if nesting == 0:
                result.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        result.append(current)
    return result


def token_weights(string, weight):
    out = []
    for x in parse_parentheses(string):
        w = weight
        if len(x) >= 2 and x[-1] == ")" and x[0] == "(":
            x = x[1:-1]
            colon = x.rfind(":")
            w *= 1.1
            if colon > 0:
                try:
                    w = float(x[colon + 1:])
                    x = x[:colon]
                except ValueError:
                    pass
            out += token_weights(x, w)
        else:
            out += [(x, weight)]
    return out


def tokenize(spm, text, min_length):
    escaped = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    pairs = []
    for segment, weight in token_weights(escaped, 1.0):
        segment = segment.replace("\0\1", ")").replace("\0\2", "(")
        pairs += [(t, weight) for t in spm.encode(segment)]  # T5Tokenizer's ids without their EOS
    pairs.append((EOS, 1.0))
    pairs += [(PAD, 1.0)] * (min_length - len(pairs))
    return pairs


def main():
    spm = sentencepiece.SentencePieceProcessor(model_file=f"{DATA}/pixart/tiny/tokenizer/spiece.model")
    t5 = T5EncoderModel.from_pretrained(f"{DATA}/pixart/tiny/text_encoder", torch_dtype=torch.float32).eval()
    g = {}
    for name, min_length, end in (("flux", 256, True), ("chroma", 0, False)):
        pairs = tokenize(spm, PROMPT, min_length)
        ids = torch.tensor([[t for t, _ in pairs]])
        weights = torch.tensor([w for _, w in pairs], dtype=torch.float32)
        empty = torch.tensor([[EOS if end and i == 0 else PAD for i in range(len(pairs))]])
        with torch.no_grad():
            z = t5(input_ids=ids).last_hidden_state
            z_empty = t5(input_ids=empty).last_hidden_state
        for j, (_, w) in enumerate(pairs):
            if w != 1.0:
                z[0, j] = (z[0, j] - z_empty[0, j]) * w + z_empty[0, j]
        g.update({f"{name}.ids": ids.int(), f"{name}.weights": weights, f"{name}.cond": z})
        assert len({w for _, w in pairs}) > 2, "weights above and below 1"
    save_goldens(g, f"{HERE}/t5_weights.safetensors")


if __name__ == "__main__":
    main()
