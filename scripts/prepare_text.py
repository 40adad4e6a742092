#!/usr/bin/env python3
"""Turns the raw corpora that scripts/fetch_data.sh unpacked into the corpus files metalm reads
(data/text/, see include/metalm/data/documents.h for what a document and a line are):

  plain text, documents separated by blank lines, one line per unit:
    kjv.txt        a chapter per document ("Genesis 1" then its verses, one verse a line)
    moby-dick.txt  a chapter per document, one paragraph a line (the book's wrapping undone)
  plain text, one document per line (documents: "line"):
    wordnet.txt    one synset a line: "dog, domestic dog, Canis familiaris (noun): a member ..."
  JSONL, one record per document, "text" holds its lines:
    sotu.jsonl     one speech a record, one sentence a line (the source has no line breaks),
                   with year, president and party
    austen.jsonl   one chapter a record, one paragraph a line, with its book
    fortunes.jsonl one cookie a record, lines as written, with its category file
    gcide.jsonl    one dictionary entry a record, one paragraph a line, markup stripped

Usage: prepare_text.py NAME RAW_DIR OUT_FILE  (one corpus; writes OUT_FILE.tmp, then renames).
Python is used here only at set-up, like the PyTorch reference in the tests: metalm itself reads
the results without it.
"""
import base64
import gzip
import json
import os
import re
import sys

# Fortune files left out: ASCII drawings are not prose, and data.md suggests dropping three
# files for tone.
FORTUNES_SKIPPED = {"ascii-art", "men-women", "ethnic", "drugs"}


def paragraphs(lines):
    """Joins wrapped lines into paragraphs (blank lines separate them)."""
    out, cur = [], []
    for line in lines:
        line = line.strip()
        if line:
            cur.append(line)
        elif cur:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out


def kjv(raw, out):
    # `bible` prints "Genesis 1", a blank line, then "  1 In the beginning ..." verses.
    with open(os.path.join(raw, "kjv.txt"), encoding="utf-8") as f:
        first = True
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if not line.startswith(" "):  # a chapter heading starts a document
                if not first:
                    out.write("\n")
                first = False
                out.write(line.strip() + "\n")
            else:
                out.write(re.sub(r"^\s*\d+\s+", "", line) + "\n")


def moby_dick(raw, out):
    with open(os.path.join(raw, "package/moby-dick/data/data.txt"), encoding="utf-8") as f:
        text = f.read()
    first = True
    for p in paragraphs(text.split("\n")):
        if re.match(r"^(CHAPTER \d+\.|Epilogue|ETYMOLOGY|EXTRACTS)", p) and not first:
            out.write("\n")
        first = False
        out.write(p + "\n")


def wordnet(raw, out):
    pos_name = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(raw, "usr/share/wordnet/data." + pos), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # the license header
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                n = int(fields[3], 16)
                words = [re.sub(r"\(\w+\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * n:2]]
                out.write("%s (%s): %s\n" % (", ".join(words), pos_name[pos], gloss.strip()))


def sotu(raw, out):
    d = os.path.join(raw, "package/sotu/data")
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(d, name), encoding="utf-8") as f:
            r = json.load(f)
        # A sentence ends at . ! or ? (and a closing quote) before a space and a capital.
        sentences = re.split(r'(?:(?<=[.!?])|(?<=[.!?]["\u201d\']))\s+(?=["\u201c]?[A-Z])',
                             r["text"].strip())
        rec = {"text": "\n".join(s.strip() for s in sentences if s.strip()),
               "year": r["year"], "president": r["name"], "party": r["party"]}
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def austen(raw, out):
    books = {}
    with open(os.path.join(raw, "austen.tsv"), encoding="utf-8") as f:
        next(f)  # "text\tbook"
        for line in f:
            text, _, book = line.rstrip("\n").rpartition("\t")
            books.setdefault(book, []).append(text)
    for book, lines in books.items():
        chapter = []
        def flush():
            ps = paragraphs(chapter)
            if ps:
                out.write(json.dumps({"text": "\n".join(ps), "book": book}, ensure_ascii=False) + "\n")
        for line in lines:
            if re.match(r"^\s*(CHAPTER|Chapter) ", line):
                flush()
                chapter = []
            chapter.append(line)
        flush()


def fortunes(raw, out):
    files = []
    for pkg in ("fortunes", "fortunes-min"):
        d = os.path.join(raw, pkg, "usr/share/games/fortunes")
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if "." in name or os.path.islink(p) or name in FORTUNES_SKIPPED:
                continue
            files.append((name, p))
    for name, p in files:
        with open(p, encoding="utf-8") as f:
            cookies = f.read().split("\n%\n")
        for c in cookies:
            c = c.strip("\n%")
            if c.strip():
                out.write(json.dumps({"text": c.expandtabs(8), "category": name},
                                     ensure_ascii=False) + "\n")


def gcide(raw, out):
    d = os.path.join(raw, "usr/share/dictd")
    data = gzip.open(os.path.join(d, "gcide.dict.dz")).read()
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    def b64(s):
        v = 0
        for ch in s:
            v = v * 64 + digits.index(ch)
        return v
    entries = {}
    with open(os.path.join(d, "gcide.index"), encoding="utf-8") as f:
        for line in f:
            word, off, size = line.rstrip("\n").split("\t")
            if not word.startswith("00-"):  # the database's own metadata
                entries.setdefault((b64(off), b64(size)), word)
    # Three bytes in the file are Windows-1252 (a quote, a c-cedilla): decode them as that.
    def cp1252(e):
        return (e.object[e.start:e.end].decode("cp1252", "replace"), e.end)
    import codecs
    codecs.register_error("cp1252_fallback", cp1252)
    for (off, size), word in sorted(entries.items()):
        text = data[off:off + size].decode("utf-8", "cp1252_fallback")
        lines = []
        for line in text.split("\n"):
            if re.match(r"^\s*\[[^\]]*\]\s*$", line):  # a source tag: [1913 Webster]
                continue
            line = re.sub(r"\\[^\\\n]*\\", "", line)     # \Pro*nun"ci*a`tion\
            line = re.sub(r"[{}]", "", line)              # {cross-references}
            lines.append(line)
        ps = [re.sub(r" +", " ", re.sub(r"\s+,", ",", p)) for p in paragraphs(lines)]
        if ps:
            out.write(json.dumps({"text": "\n".join(ps), "headword": word}, ensure_ascii=False) + "\n")


def main():
    name, raw, path = sys.argv[1:4]
    fn = {"kjv": kjv, "moby-dick": moby_dick, "wordnet": wordnet, "sotu": sotu, "austen": austen,
          "fortunes": fortunes, "gcide": gcide}[name]
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as out:
        fn(raw, out)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
