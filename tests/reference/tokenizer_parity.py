#!/usr/bin/env python3
"""End to end: `metalm tokenizer train` (unigram and BPE) on a corpus written here, then the
ids of `metalm tokenizer encode` against Debian's python3-sentencepiece on the same
tokenizer.model, for ASCII, accents, CJK, emoji, long words, whitespace runs and literal special
tokens. Trained tokenizers have id_offset 0: the ids must be equal. Then the XLM-R case: a model
trained by python3-sentencepiece with its default layout (<unk> 0, <s> 1, </s> 2), imported
with `metalm tokenizer import --fairseq`, must give fairseq's / HF XLMRobertaTokenizer's ids:
SentencePiece id + 1, and <unk> 3.

Usage: tokenizer_parity.py METALM_BINARY WORK_DIR"""
import json
import pathlib
import random
import subprocess
import sys

import sentencepiece as spm

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "The Quick Brown Fox, 42 times!",
    "café naïve résumé über straße français",
    "東京と大阪は日本語の都市です",
    "混合 text with 中文 and English",
    "emoji 😀 and 🚀 and 👩‍👩‍👧 family",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 300 + " " + "abcdefghij" * 40,
    "spaces    between\t\ttabs   and  runs",
    "   leading and trailing   ",
    "line one</line>line two</line>",
    "<mask> masked <image></image></doc>",
    "<s> not a control token </s> <pad>",
    "",
    "unseen: Ωμέγα ж ק ש ✓ ∑",
]


def corpus(path, seed=0):
    """Made-up words (syllables), real words, accents, CJK and a few emoji."""
    rng = random.Random(seed)
    syllables = "ka to ri men sa lo vin de tra po ul ne ga shi ber mo".split()
    words = ("the quick brown fox jumps over lazy dog café naïve über straße 東京 大阪 日本語 "
             "混合 中文 😀 🚀 English text times").split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(4000):
            line = []
            for _ in range(rng.randint(3, 14)):
                if rng.random() < 0.5:
                    line.append(rng.choice(words))
                else:
                    line.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
            f.write(" ".join(line) + "\n")


def metalm_ids(binary, model_dir, texts):
    args = [binary, "tokenizer", "encode", "--model", str(model_dir)]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    lines = out.split("\n")[: len(texts)]
    return [[int(x) for x in line.split()] for line in lines]


def compare(name, binary, model_dir, texts, expected, failures):
    got = metalm_ids(binary, model_dir, texts)
    for text, ours, theirs in zip(texts, got, expected):
        if ours != theirs:
            failures.append(f"{name}: {text[:40]!r}: metalm {ours[:12]} vs sentencepiece {theirs[:12]}")
    print(f"{name}: {len(texts)} texts, {sum(map(len, got))} ids, "
          f"{'ok' if all(a == b for a, b in zip(got, expected)) else 'MISMATCH'}")


def main():
    binary, work = sys.argv[1], pathlib.Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    text_file = work / "corpus.txt"
    corpus(text_file)
    failures = []

    for model_type in ("unigram", "bpe"):
        out = work / model_type
        subprocess.run(["rm", "-rf", str(out)], check=True)
        subprocess.run([binary, "tokenizer", "train", "--input", str(text_file), "--vocab-size",
                        "600", "--model-type", model_type, "--out", str(out), "--threads", "2"],
                       check=True, capture_output=True)
        spec = json.loads((out / "tokenizer.json").read_text())
        sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
        pieces = [sp.id_to_piece(i) for i in range(9)]
        if spec["id_offset"] != 0 or pieces != ["<s>", "<pad>", "</s>", "<unk>", "<mask>",
                                                "</doc>", "<image>", "</image>", "</line>"]:
            failures.append(f"{model_type}: special pieces {pieces}, id_offset {spec['id_offset']}")
        compare(model_type, binary, out, TEXTS, [sp.encode(t) for t in TEXTS], failures)

    # XLM-R / BEiT-3 layout: SentencePiece's defaults, fairseq's dictionary on top.
    prefix = work / "xlmr"
    spm.SentencePieceTrainer.train(input=str(text_file), model_prefix=str(prefix),
                                   vocab_size=500, minloglevel=3, num_threads=2)
    sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    out = work / "xlmr_tok"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    subprocess.run([binary, "tokenizer", "import", "--sentencepiece", f"{prefix}.model",
                    "--fairseq", "--out", str(out)], check=True, capture_output=True)
    spec = json.loads((out / "tokenizer.json").read_text())
    n = sp.get_piece_size()
    want = {"id_offset": 1, "bos_id": 0, "pad_id": 1, "eos_id": 2, "unk_id": 3,
            "mask_id": n + 1, "vocab_size": n + 6}
    if any(spec[k] != v for k, v in want.items()):
        failures.append(f"xlmr: tokenizer.json {spec}, expected {want}")
    fairseq = [[3 if i == sp.unk_id() else i + 1 for i in sp.encode(t)] for t in TEXTS]
    compare("xlmr (fairseq offset)", binary, out, TEXTS, fairseq, failures)

    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
