#!/usr/bin/env python3
"""Writes the SentencePiece test data of tests/test_spm_tokenizer.c:

  spiece.model        a small unigram model trained here with T5's conventions
                      (pad 0, eos 1, unk 2, no bos, nmt_nfkc normalization with
                      its precompiled charsmap, three user-defined symbols);
                      tests/data/pixart links it as its tokenizer, so its
                      ids are in pixart's goldens too
  spm_goldens.json    for each test string: what transformers 4.40's
                      T5Tokenizer(vocab_file=spiece.model, legacy=True) gives
                      (untruncated, and with max_length=L, truncation=True
                      where a case names L), and what sentencepiece itself
                      gives (normalized text, ids of SentencePieceProcessor.encode)
  bpe.model           a tiny BPE model (identity normalization): kiln refuses it
  byte_fallback.model a tiny unigram model with byte_fallback: kiln refuses it
  crafted*.model      tiny unigram models written piece by piece (identity
                      normalization) where the Viterbi's finer points decide:
                      a tie, an UNUSED piece, what a user-defined piece scores;
                      one with the dummy prefix and whitespace removal off.
                      Their goldens are under "crafted" in spm_goldens.json.

The training corpus is generated here from fixed word lists with a seeded
random.Random, so nothing is downloaded; sentencepiece's trainer runs on one
thread so that it is deterministic. The goldens come from the libraries
alone, never from kiln. They were made with sentencepiece 0.2.3, whose
encoder differs from the 0.2.1 source in what a user-defined piece scores
and in summing scores in float: the crafted models' goldens change with
another version.

    python3 -m venv /tmp/spmv
    /tmp/spmv/bin/pip install sentencepiece==0.2.3 transformers==4.40.0 protobuf
    /tmp/spmv/bin/python tests/data/spm_tokenizer/make_spm_data.py
"""
import io
import json
import os
import random
import sys

import sentencepiece as spm
import transformers
from transformers import T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))

SUBJECTS = ("cat dog fox owl horse robot castle tree mountain river city lighthouse ship dragon "
            "girl boy woman man astronaut knight wizard flower garden forest lake bridge train "
            "car bicycle house window door cup teapot apple orange lemon bird whale fish").split()
ADJECTIVES = ("red blue green yellow purple golden silver dark bright tiny huge old young "
              "ancient modern wooden glass metal fluffy shiny misty snowy sunny rainy quiet "
              "beautiful strange happy sad detailed colorful").split()
PLACES = ("in a field|on a hill|under the sea|in space|at night|at sunset|in the rain|"
          "on the moon|in a city street|by the lake|in a forest|on a table|in a kitchen|"
          "near the mountains|inside a castle").split("|")
STYLES = ("oil painting|watercolor|photograph|digital art|pencil sketch|3d render|"
          "concept art|studio lighting|highly detailed|8k|trending on artstation|"
          "by an old master|anime style|pixel art|cinematic").split("|")
# Words outside ASCII, so that the vocabulary holds accented letters, a few
# CJK ideographs and kana; characters never seen here (emoji, most CJK)
# are unknown to the model.
FOREIGN = ("café naïve façade crème brûlée Straße über schön Grüße déjà vu piñata São Paulo "
           "Zürich Kraków Ångström élan fiancée").split()
CJK = ("猫 犬 山 川 日本 東京 写真 花 空 海 桜 富士山 こんにちは ありがとう ねこ "
       "カメラ 美しい 風景 夜 星").split()
NUMBERS = ("1 2 3 4 5 10 12 42 100 2024 1990s 4k 16:9 50mm f/1.8").split()
PUNCT = (", . ! ? : ; - ( ) ' \" / &").split()

# A word, an emoji (fire) and a ligature that NFKC would split: SentencePiece
# matches these before it normalizes, so the ligature stays one.
USER_DEFINED = ["kiln", "\U0001F525", "\ufb01"]

# Made-up words from these syllables give the trainer many sub-word pieces
# to choose between, so that the Viterbi has real choices to make.
ONSETS = "b c d f g h k l m n p r s t v w z br cl dr fl gr pl st th sh ch tr".split()
VOWELS = "a e i o u ai ea ou io y".split()
CODAS = ["", "", "", "n", "r", "s", "l", "m", "st", "nd", "ng", "ck", "rt", "x"]
SUFFIXES = ["", "", "", "ing", "ed", "er", "ly", "ness", "ion", "able", "ful", "ous", "ist", "s"]


def made_up_word(rng):
    syllables = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                 for _ in range(rng.randint(1, 3))]
    return "".join(syllables) + rng.choice(SUFFIXES)


def corpus_lines(rng, n):
    lexicon = [made_up_word(rng) for _ in range(1500)]
    lines = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.2:
                words.append(rng.choice(SUBJECTS))
            elif r < 0.35:
                words.append(rng.choice(lexicon))
            elif r < 0.6:
                words.append(rng.choice(ADJECTIVES))
            elif r < 0.7:
                words.append(rng.choice(PLACES))
            elif r < 0.8:
                words.append(rng.choice(STYLES))
            elif r < 0.86:
                words.append(rng.choice(FOREIGN))
            elif r < 0.9:
                words.append(rng.choice(CJK))
            elif r < 0.95:
                words.append(rng.choice(NUMBERS))
            else:
                words.append(rng.choice(PUNCT))
        line = " ".join(words)
        if rng.random() < 0.5:
            line = line[0].upper() + line[1:]
        if rng.random() < 0.3:
            line += rng.choice([".", "!", ", kiln", " kiln"])
        lines.append(line)
    return lines


def train(path_prefix, sentences, **options):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model,
                                   num_threads=1, minloglevel=2, **options)
    with open(path_prefix + ".model", "wb") as f:
        f.write(model.getvalue())


LONG = ("A highly detailed oil painting of an ancient castle on a hill at sunset, golden light, "
        "misty mountains in the background, a river with a wooden bridge, tiny knights on horses, "
        "a dragon in the sky, dramatic clouds, cinematic lighting, trending on artstation, 8k, "
        "by an old master, colorful, beautiful, strange, quiet forest in the rain, a lighthouse "
        "near the lake, a whale under the sea, a teapot on a table in a kitchen, ")

# (name, text, max_length or None)
CASES = [
    ("plain", "a red cat on a hill", None),
    ("plain_capitals", "A Photograph Of A Golden Dragon, Studio Lighting", None),
    ("punctuation", "cat, dog. fox! owl? (horse) 'robot' \"castle\" a/b & c;d: e-f", None),
    ("numbers", "2024 1990s 16:9 50mm f/1.8 4k 12345 007", None),
    ("unseen_words", "xylophone quizzical jubilant zephyr", None),
    ("double_spaces", "a  red   cat", None),
    ("leading_spaces", "   a red cat", None),
    ("trailing_spaces", "a red cat   ", None),
    ("only_spaces", "     ", None),
    ("tabs_newlines", "a\tred\ncat\r\nin\t\t the\n\nrain", None),
    ("leading_newline", "\n\ta cat", None),
    ("nbsp_and_ideographic_space", "a\u00a0cat\u3000dog\u2003fox", None),
    ("fullwidth_letters", "\uff21\uff42\uff43 \uff44\uff45\uff46", None),
    ("fullwidth_digits", "\uff11\uff12\uff13\uff14 cats", None),
    ("fullwidth_punct", "cat\uff0cdog\uff01\uff08fox\uff09", None),
    ("ligatures", "\ufb01sh \ufb02ower o\ufb03ce \ufb00", None),
    ("composed_accents", "caf\u00e9 na\u00efve cr\u00e8me", None),
    ("decomposed_accents", "cafe\u0301 nai\u0308ve cre\u0300me", None),
    ("german", "Gr\u00fc\u00dfe aus der Stra\u00dfe \u00fcber Z\u00fcrich", None),
    ("cjk", "\u732b\u3068\u72ac \u5bcc\u58eb\u5c71 \u6771\u4eac\u306e\u591c", None),
    ("cjk_unknown", "\u9f8d\u9cf3\u9e92\u9e9f", None),
    ("kana", "\u3053\u3093\u306b\u3061\u306f \u30ab\u30e1\u30e9 \uff76\uff92\uff97", None),
    ("emoji", "a cat \U0001F600 and a dog \U0001F436\U0001F431", None),
    ("emoji_zwj", "\U0001F468\u200d\U0001F469\u200d\U0001F467 family", None),
    ("unknown_run", "\u03a9\u03a8\u03a6 greek and \u0416\u0417 cyrillic", None),
    ("unknown_then_known", "\u03a9cat \u03a8 dog\u03a6", None),
    ("superscripts", "x\u00b2 + y\u00b3 = z\u2074, \u2460 \u2161", None),
    ("control_chars", "a\u0007b\u0001c\u200bd\ufeffe\u00adf", None),
    ("combining_alone", "\u0301 \u0308a", None),
    ("user_defined", "kiln kilns akiln kiln!", None),
    ("user_defined_emoji", "\U0001F525fire \U0001F525\U0001F525 on \U0001F525", None),
    ("lower_one_eighth_block", "\u2581cat \u2581\u2581 dog\u2581", None),
    ("only_block", "\u2581", None),
    ("replacement_char", "a\ufffdb", None),
    ("eos_inside", "a</s>b", None),
    ("eos_at_end", "a red cat</s>", None),
    ("eos_with_spaces", "cat </s> dog", None),
    ("pad_and_unk_literals", "<pad>cat<unk> dog <unk>", None),
    ("extra_id_0", "<extra_id_0> x", None),
    ("extra_ids_strip", "Hello <extra_id_0>. world\u3000<extra_id_99>\t\nend <extra_id_10><extra_id_1>", None),
    ("extra_id_not_special", "<extra_id_100> <extra_id_05> <extra_id_> <extra_id_7", None),
    ("specials_only", "</s><extra_id_3> <pad>", None),
    ("lone_special_spaces", "  <extra_id_2>  ", None),
    ("fullwidth_special", "\uff1c/s\uff1e cat", None),
    ("angle_brackets", "<s> < / s > <cat>", None),
    ("empty", "", None),
    ("single_char", "a", None),
    ("long_word", "supercalifragilisticexpialidociousbrightgoldencastledragonmountain", None),
    ("made_up_words", "stroubling flaindness chaiouster brionable", None),
    ("long_120", (LONG * 3).strip(), 120),
    ("long_8", LONG.strip(), 8),
    ("exact_fit", "a red cat", 4),
    ("eos_at_cut", "a red </s> cat dog fox owl", 4),
    ("max_one", "a red cat", 1),
    ("max_two_empty", "", 2),
]

# Byte strings that are not UTF-8: sentencepiece alone (T5Tokenizer takes str).
BYTE_CASES = [
    ("invalid_utf8", b"a\xffb\xc3 c\xe2\x82d\xed\xa0\x80e\xf0\x9f\x98"),
    ("overlong_utf8", b"\xc0\xafcat\xe0\x80\xaf"),
]


def crafted_model(path, add_dummy_prefix=True, remove_extra_whitespaces=True):
    """Pieces chosen so that each case below turns on one rule:
      "ab": "\u2581a"+"b" and "\u2581"+"ab" tie at -2 (the first found stays);
      "q": an UNUSED piece, skipped by the Viterbi (so unknown), which
           T5Tokenizer maps back to its id by its text;
      "xyz", "xyw" (without the dummy prefix): how much a user-defined piece
           ("xy") scores: "xy"+"z" against "x"+"yz" (0.05), "xy"+"w" against
           "x"+"yw" (0.5);
      "\xe9\xe9": whether a user-defined piece's length counts bytes (4) or
           characters (2), against "\xe9"+"\xe9" (0.1 each);
      "xyz" (with the dummy prefix): a normal piece ("\u2581xyz") beating one."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    t = pb.ModelProto.SentencePiece
    for text, score, kind in [("<pad>", 0, t.CONTROL), ("</s>", 0, t.CONTROL), ("<unk>", 0, t.UNKNOWN),
                              ("\u2581", -1, t.NORMAL), ("\u2581a", -1, t.NORMAL), ("b", -1, t.NORMAL),
                              ("ab", -1, t.NORMAL), ("q", -1, t.UNUSED),
                              ("xy", 0, t.USER_DEFINED), ("x", -1, t.NORMAL), ("y", -1, t.NORMAL),
                              ("z", -1, t.NORMAL), ("w", -1, t.NORMAL), ("yz", 0.05, t.NORMAL),
                              ("yw", 0.5, t.NORMAL), ("\u2581xyz", 0.5, t.NORMAL),
                              ("\xe9", 0.1, t.NORMAL), ("\xe9\xe9", 0, t.USER_DEFINED)]:
        piece = m.pieces.add()
        piece.piece, piece.score, piece.type = text, score, kind
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    m.trainer_spec.unk_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id, m.trainer_spec.bos_id = 2, 1, 0, -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = add_dummy_prefix
    m.normalizer_spec.remove_extra_whitespaces = remove_extra_whitespaces
    m.normalizer_spec.escape_whitespaces = True
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


CRAFTED_TEXTS = ["ab", "ab ab", "a b", "q", "aq b", "xyz", "xyw", "xy", "x xyz", "xyzxyw", "\xe9\xe9",
                 "\xe9\xe9\xe9", "\xe9 \xe9\xe9", "x xyz \xe9\xe9 ab q", "  ab  q  ", " ", "ab</s>q",
                 "q<extra_id_0> q"]


def crafted_goldens():
    out = []
    for file, options in [("crafted.model", {}),
                          ("crafted_raw.model", {"add_dummy_prefix": False, "remove_extra_whitespaces": False})]:
        path = os.path.join(HERE, file)
        crafted_model(path, **options)
        sp = spm.SentencePieceProcessor(model_file=path)
        tok = T5Tokenizer(vocab_file=path, legacy=True)
        cases = [{"text": text, "normalized": sp.normalize(text), "sp_ids": sp.encode(text),
                  "t5_ids": tok(text).input_ids} for text in CRAFTED_TEXTS]
        out.append({"file": file, "cases": cases})
    return out


def main():
    rng = random.Random(20240607)
    sentences = corpus_lines(rng, 6000)
    unigram = os.path.join(HERE, "spiece")
    train(unigram, sentences, model_type="unigram", vocab_size=1000, character_coverage=1.0,
          pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="nmt_nfkc",
          user_defined_symbols=USER_DEFINED, hard_vocab_limit=False)
    train(os.path.join(HERE, "bpe"), sentences[:300], model_type="bpe", vocab_size=120,
          pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="identity",
          hard_vocab_limit=False)
    train(os.path.join(HERE, "byte_fallback"), sentences[:300], model_type="unigram",
          vocab_size=400, byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
          normalization_rule_name="identity", hard_vocab_limit=False)

    sp = spm.SentencePieceProcessor(model_file=unigram + ".model")
    tok = T5Tokenizer(vocab_file=unigram + ".model", legacy=True)
    cases = []
    for name, text, max_length in CASES:
        case = {
            "name": name,
            "text": text,
            "normalized": sp.normalize(text),
            "sp_ids": sp.encode(text),
            "t5_ids": tok(text).input_ids,
        }
        if max_length is not None:
            case["max_length"] = max_length
            case["t5_ids_truncated"] = tok(text, max_length=max_length, truncation=True).input_ids
        cases.append(case)
    byte_cases = []
    for name, data in BYTE_CASES:
        byte_cases.append({
            "name": name,
            "hex": data.hex(),
            "normalized_hex": spm_normalize_bytes(sp, data).hex(),
            "sp_ids": sp.encode(data),
        })
    goldens = {
        "made_by": "tests/data/spm_tokenizer/make_spm_data.py",
        "versions": {"transformers": transformers.__version__, "sentencepiece": spm.__version__,
                     "python": sys.version.split()[0]},
        "vocab_size": sp.get_piece_size(),
        "eos": tok.eos_token_id,
        "pad": tok.pad_token_id,
        "unk": tok.unk_token_id,
        "extra_id_0": tok.convert_tokens_to_ids("<extra_id_0>"),
        "extra_id_99": tok.convert_tokens_to_ids("<extra_id_99>"),
        "cases": cases,
        "byte_cases": byte_cases,
        "crafted": crafted_goldens(),
    }
    with open(os.path.join(HERE, "spm_goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)
        f.write("\n")


def spm_normalize_bytes(sp, data):
    """sentencepiece's normalized text for bytes that are not UTF-8."""
    out = sp.normalize(data)
    return out if isinstance(out, bytes) else out.encode("utf-8")


if __name__ == "__main__":
    main()
