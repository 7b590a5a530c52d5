#!/usr/bin/env python3
"""Writes extra_goldens.json: CLIP token ids for text-cleaning edge cases, in
both of kiln's cleaning modes, from transformers' CLIPTokenizer (slow,
transformers 4.40) built from runtime/data/bpe_simple_vocab_16e6.txt.gz:
  - "ftfy":  with ftfy 6.2.3 importable (CLIP's cleaning, KILN_TEXT_CLEAN_FTFY);
  - "basic": with ftfy blocked, as in stock ComfyUI (KILN_TEXT_CLEAN_BASIC).
It also records, for the tokenizer_goldens.json prompts that need ftfy's
mojibake repair (which kiln does not do), the ids ftfy gives without it
(fix_encoding=False): kiln must produce exactly those.

    PYTHONPATH=/path/to/ftfy-6.2.3 python3 tests/data/tokenizer/make_extra_goldens.py
"""
import gzip
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "..", "..", "runtime", "data", "bpe_simple_vocab_16e6.txt.gz")

PROMPTS = {
    "entities": "&amp;lt; &AMP; &EACUTE;t&eacute; &#x41;&#65;&#0;&#128;&#x110000;&#12a; &notanentity; &amp fin",
    "entities_numeric": "&#x1F600; &#55296; &#x7f;x &#0065; &#X42; &#; &#x; &NTILDE; &nTILDE; &SZLIG;",
    "entity_too_long": "&CounterClockwiseContourIntegral; &lowast;",
    "entities_with_tag": "<b>&amp;</b> &quot;",
    "entities_per_line": "line one &amp;\nline two < &amp;\nline three &amp;",
    "entity_makes_special": "&lt;|endoftext|&gt; hi &amp;amp;amp;",
    "literal_special": "a<|endoftext|>b <|startoftext|>c<|endoftext|>",
    "special_upper_case": "x <|ENDOFTEXT|> <|StartOfText|> y",
    "contractions_odd": "'\u017f \u2019re IT'S we'VE don\u2019t '\u017ft",
    "final_sigma": "\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3. \u03a3 \u0391\u03a3\u0301\u0392 \u0130stanbul",
    "control_chars": "a\x01b\x7fc\u200bd\u200de\ufeff f\u2028g\x85h\x0ci\x1bj \u206ak\ufffcl",
    "terminal_escapes": "\x1b[31mred\x1b[0m \x1b[1;4mbold\x1b[m \x1b[\u0663Xz",
    "c1_controls": "\x80 \x93quoted\x94 \x81 \x9f",
    "ligatures_width": "\ufb00 \ufb03 \u01c6 \u0132 \u0149 \uff21\uff22\uff23\uff11\uff12\uff13 \uff76\uff80\uff76\uff85 \uff9e\u3000space \uffe3",
    "decomposed": "e\u0301 cafe\u0301 A\u030a\u0323",
    "cjk_kana_hangul": "\u4e2d\u6587\u5b57 \u3072\u3089\u304c\u306a \ud55c\uad6d\uc5b4 \U00020000x",
    "emoji_sequences": "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F flag",
    "private_unassigned": "\ue000x \U0010fffd y \u0378z",
    "numbers_unicode": "\u2460\u2461 \u00bd \u216b \u0663\u0664 x\u00b2 3rd",
    "line_breaks": "a\r\nb\rc\n\nd",
    "unicode_spaces": "\u00a0nbsp\u3000ideo\u2003em\x1cfs\u2029ps",
    "titlecase_digraph": "\u01c5emal \u1e9e \u212a",
    "long_word": "x" * 300,
    "blank": " \t\n ",
    "apostrophes": "''' 's'''s \"'ll\"",
    "ypogegrammeni": "a\u0345b !\u0345! \u0345 \u0399\u0345",
}

MOJIBAKE = ["mojibake_ftfy"]


def vocab_files(tmp):
    from transformers.models.clip.tokenization_clip import bytes_to_unicode
    lines = gzip.open(VOCAB).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    json.dump({v: i for i, v in enumerate(vocab)}, open(os.path.join(tmp, "vocab.json"), "w"))
    open(os.path.join(tmp, "merges.txt"), "w").write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")


def main():
    from transformers import CLIPTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        files = vocab_files(tmp)
        sys.modules["ftfy"] = None  # import ftfy fails: transformers' basic cleaner
        basic = CLIPTokenizer(*files)
        assert basic.fix_text is None
        del sys.modules["ftfy"]
        import ftfy
        assert ftfy.__version__ == "6.2.3", ftfy.__version__
        full = CLIPTokenizer(*files)
        assert full.fix_text is ftfy.fix_text
        no_repair = CLIPTokenizer(*files)
        no_repair.fix_text = lambda text: ftfy.fix_text(text, fix_encoding=False)

    def ids(tok, text):
        return tok(text)["input_ids"][1:-1]

    cases = [{"name": name, "prompt": text, "ftfy": ids(full, text), "basic": ids(basic, text)}
             for name, text in PROMPTS.items()]
    goldens = json.load(open(os.path.join(HERE, "tokenizer_goldens.json")))["prompts"]
    known = []
    for g in goldens:
        if g["name"] in MOJIBAKE:
            assert ids(full, g["prompt"]) == g["bpe_ids_untruncated"]
            known.append({"name": g["name"], "reason": "needs ftfy's mojibake repair (fix_encoding)",
                          "ids_without_repair": ids(no_repair, g["prompt"])})
    json.dump({"origin": "transformers %s CLIPTokenizer (slow); ftfy %s / ftfy blocked; make_extra_goldens.py"
                         % (__import__("transformers").__version__, ftfy.__version__),
               "cases": cases, "known_differences": known},
              open(os.path.join(HERE, "extra_goldens.json"), "w"), ensure_ascii=True, indent=0)


if __name__ == "__main__":
    main()
