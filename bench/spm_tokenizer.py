#!/usr/bin/env python3
"""The python twin of metalm_bench_tokenizer: Debian's python3-sentencepiece encoding every
line of the same text file with the same tokenizer.model, in its fastest way: the batch API
(encode(list, num_threads): the loop over lines runs in C++, on num_threads threads) and, on one
thread, also the plain Python loop of one encode() call per line, which is as fast within
the noise (sometimes faster); "seconds" is the faster of the two, "python_way" says which. Prints one JSON line per case, as metalm_bench_tokenizer does.

Usage: spm_tokenizer.py --model DIR --text FILE [--threads N] [--repeats N]
       spm_tokenizer.py --model DIR --corpus DATA_DIR [--threads N]
       spm_tokenizer.py --make-text OUT [--source FILE] [--mb M]
The --corpus form is the twin of `metalm_bench_tokenizer --corpus`: the same corpus files,
their documents split by the same rules (data/documents.h: blank lines end paragraphs, WordNet
has one document a line, a JSONL record's "text" is split at newlines), every non-blank line
encoded on one thread (a loop of encode(line), the batch call being no faster on one thread)
or, with --threads N, by the batch call on N threads; ids counted and dropped. It writes no shards and packs nothing, which favours it.
The second form writes the bench's text: FILE (data/kjv.txt when bench/run finds it) repeated
until M MB, or, without a source, made-up sentences (seeded, so every run encodes the same)."""
import argparse
import json
import random
import time

import sentencepiece as spm

CHUNK = 8192  # lines per batch call: bounds the memory of the Python lists of ids


def make_text(out, source, mb):
    target = int(mb * 1e6)
    if source:
        with open(source, "rb") as f:
            block = f.read()
    else:
        rng = random.Random(0)
        syllables = "ka to ri men sa lo vin de tra po ul ne ga shi ber mo an et is".split()
        words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
                 for _ in range(20000)]
        weights = [1.0 / (r + 1) for r in range(len(words))]  # Zipf, as words in real text
        lines = []
        for _ in range(40000):
            n = rng.randint(4, 30)
            lines.append(" ".join(rng.choices(words, weights, k=n)).capitalize() + ".")
        block = ("\n".join(lines) + "\n").encode()
    with open(out, "wb") as f:
        written = 0
        while written < target:
            f.write(block)
            written += len(block)


def encode_all(sp, lines, threads):
    n = 0
    for i in range(0, len(lines), CHUNK):
        n += sum(map(len, sp.encode(lines[i:i + CHUNK], num_threads=threads)))
    return n


CORPUS_FILES = ["kjv.txt", "moby-dick.txt", "wordnet.txt", "sotu.jsonl", "austen.jsonl",
                "fortunes.jsonl", "gcide.jsonl"]


def is_blank(line):
    return line.strip(" \t\r") == ""


def corpus_lines(path):
    """The non-blank lines of a corpus file's documents, as data/documents.h reads them."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8").rstrip("\n")
            if line.endswith("\r"):
                line = line[:-1]
            if is_blank(line):
                continue
            if path.endswith(".jsonl"):
                for part in json.loads(line)["text"].split("\n"):
                    if part.endswith("\r"):
                        part = part[:-1]
                    if not is_blank(part):
                        yield part
            else:
                yield line


def corpus_case(sp, data_dir, threads):
    """One thread: a loop of encode(line). More: the batch call on CHUNK lines at a time, its
    C++ loop on `threads` threads (the twin of metalm's parallel batches)."""
    import os
    import resource
    paths = [os.path.join(data_dir, n) for n in CORPUS_FILES if os.path.exists(os.path.join(data_dir, n))]
    nbytes = sum(os.path.getsize(p) for p in paths)
    start = time.perf_counter()
    ids = lines = 0
    for p in paths:
        if threads == 1:
            for line in corpus_lines(p):
                ids += len(sp.encode(line))
                lines += 1
            continue
        chunk = []
        for line in corpus_lines(p):
            chunk.append(line)
            if len(chunk) == CHUNK:
                ids += sum(map(len, sp.encode(chunk, num_threads=threads)))
                lines += len(chunk)
                chunk = []
        ids += sum(map(len, sp.encode(chunk, num_threads=threads))) if chunk else 0
        lines += len(chunk)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    name = "corpus_tokenize_pack" + ("" if threads == 1 else f"_{threads}threads")
    way = "loop" if threads == 1 else "batch"
    print(json.dumps({"name": name, "bytes": nbytes, "ids": ids, "lines": lines,
                      "seconds": seconds, "threads": threads, "python_way": way,
                      f"{way}_seconds": seconds, "peak_bytes": peak}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--text")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--make-text")
    p.add_argument("--source")
    p.add_argument("--mb", type=float, default=32)
    p.add_argument("--corpus")
    a = p.parse_args()
    a.threads_given = a.threads is not None
    if a.threads is None:
        a.threads = 2
    if a.make_text:
        make_text(a.make_text, a.source, a.mb)
        return
    sp = spm.SentencePieceProcessor(model_file=f"{a.model}/tokenizer.model")
    if a.corpus:
        corpus_case(sp, a.corpus, a.threads if a.threads_given else 1)
        return
    with open(a.text, "rb") as f:
        raw = f.read().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the newline that ends the last line starts no line
    nbytes = sum(map(len, raw))
    lines = [r.decode() for r in raw]
    counts = [1] + ([a.threads] if a.threads > 1 else [])
    for t in counts:
        ways = {"batch": lambda: encode_all(sp, lines, t)}
        if t == 1:
            ways["loop"] = lambda: sum(len(sp.encode(line)) for line in lines)
        seconds, ids = {}, {}
        for way, run in ways.items():
            seconds[way] = float("inf")
            for _ in range(a.repeats):
                start = time.perf_counter()
                ids[way] = run()
                seconds[way] = min(seconds[way], time.perf_counter() - start)
        fastest = min(seconds, key=seconds.get)
        row = {"name": f"tokenizer_encode_{t}thread{'' if t == 1 else 's'}", "bytes": nbytes,
               "ids": ids[fastest], "lines": len(lines), "seconds": seconds[fastest],
               "python_way": fastest, "threads": t, "vocab_size": sp.get_piece_size()}
        row.update({f"{way}_seconds": s for way, s in seconds.items()})
        print(json.dumps(row))


if __name__ == "__main__":
    main()
