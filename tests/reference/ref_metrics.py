"""Evaluation metrics with their reference implementations' semantics, written from the
definitions (not from the C++): the independent twin of metalm's eval metrics.

SQuAD v1.1 exact match / token F1 (evaluate-v1.1.py), VQA accuracy (GT-Vision-Lab vqaEval.py),
and on pre-tokenised captions (lowercase words, single spaces) pycocoevalcap's corpus BLEU-1..4
(reference length "closest", ties to the shorter), ROUGE-L (beta 1.2) and CIDEr-D (n 4,
sigma 6, x10, idf over the whole set). BLEU is also checked against nltk's corpus_bleu when
nltk is importable. Writes metrics.safetensors: one dummy tensor, and the cases with their
expected values as JSON in the metadata key "cases"."""
import json
import math
import random
import re
import string
from collections import Counter

import torch

import st

# ---------------------------------------------------------------- SQuAD v1.1
_SQUAD_PUNCT = set(string.punctuation)


def squad_normalize(s):
    """normalize_answer: lower, delete string.punctuation, articles -> ' ', squeeze spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _SQUAD_PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_f1(pred, gold):
    """f1_score: multiset token overlap; no common token (also both empty) gives 0."""
    p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    prec, rec = 1.0 * same / len(p), 1.0 * same / len(g)
    return (2 * prec * rec) / (prec + rec)


def squad_case(pred, golds):
    """One example: EM and F1 each maximised over the golds separately."""
    n = squad_normalize(pred)
    return {"pred": pred, "golds": golds, "norm_pred": n,
            "em": max(float(n == squad_normalize(g)) for g in golds),
            "f1": max(squad_f1(pred, g) for g in golds)}


# ---------------------------------------------------------------- VQA
VQA_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
             ">", "<", "@", "`", ",", "?", "!"]
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: a lookahead, i.e. '.' not before a digit
_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
               "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
# The subset of vqaEval's contraction table the cases may exercise (the C++ has the full one).
CONTRACTIONS = {"dont": "don't", "doesnt": "doesn't", "im": "i'm", "youre": "you're",
                "couldnt've": "couldn't've", "couldn'tve": "couldn't've",
                "whats": "what's", "thats": "that's"}


def vqa_punctuation(text):
    """processPunctuation: each punct char deleted if it touches a space anywhere in the
    original text (or the text has digit,digit), else replaced by ' '; then periodStrip."""
    out = text
    for p in VQA_PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # vqaEval.py calls periodStrip.sub("", outText, re.UNICODE): the flag (32) lands in the
    # positional count argument, so at most 32 periods are removed.
    return _PERIOD_STRIP.sub("", out, count=32)


def vqa_digit_article(text):
    """processDigitArticle: lowercase, number words -> digits, drop articles, contractions."""
    words = [_MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _vqa_strip(s):
    return s.replace("\n", " ").replace("\t", " ").strip()


def vqa_case(pred, answers):
    """One question: mean over the 10 leave-one-out subsets of min(1, matches / 3). GT answers
    get processPunctuation only, and only if they are not all identical."""
    assert len(answers) == 10
    norm = vqa_digit_article(vqa_punctuation(_vqa_strip(pred)))
    gts = [_vqa_strip(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [vqa_punctuation(a) for a in gts]
    accs = [min(1.0, float(sum(1 for j, g in enumerate(gts) if j != i and g == norm)) / 3)
            for i in range(len(gts))]
    return {"pred": pred, "answers": answers, "norm_pred": norm,
            "acc": float(sum(accs)) / len(accs)}


# ---------------------------------------------------------------- captions
def ngrams(tokens, n):
    """Counter of the n-grams (tuples) of tokens, in order of first occurrence."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_coco(hyps, refs, n=4):
    """bleu_scorer.compute_score(option='closest'): corpus clipped counts, tiny/small guards,
    cumulative geometric means, one brevity penalty over the summed lengths. Returns
    ([B1..B4], correct counts)."""
    testlen_t = reflen_t = 0
    correct, guess = [0] * n, [0] * n
    for hyp, rs in zip(hyps, refs):
        h, rtoks = hyp.split(), [r.split() for r in rs]
        testlen = len(h)
        testlen_t += testlen
        reflen_t += min((abs(len(r) - testlen), len(r)) for r in rtoks)[1]
        for k in range(1, n + 1):
            maxc = {}
            for r in rtoks:
                for g, c in ngrams(r, k).items():
                    maxc[g] = max(maxc.get(g, 0), c)
            correct[k - 1] += sum(min(c, maxc.get(g, 0)) for g, c in ngrams(h, k).items())
            guess[k - 1] += max(0, testlen - k + 1)
    tiny, small = 1e-15, 1e-9
    bleus, b = [], 1.0
    for k in range(n):
        b *= float(correct[k] + tiny) / (guess[k] + small)
        bleus.append(b ** (1.0 / (k + 1)))
    ratio = (testlen_t + tiny) / (reflen_t + small)
    if ratio < 1:
        bleus = [x * math.exp(1 - 1.0 / ratio) for x in bleus]
    return bleus, correct


def bleu_nltk(hyps, refs):
    """nltk corpus_bleu BLEU-1..4 (no smoothing), or None when nltk is not importable."""
    try:
        from nltk.translate.bleu_score import corpus_bleu
    except ImportError:
        return None
    lrefs = [[r.split() for r in rs] for rs in refs]
    lhyps = [h.split() for h in hyps]
    return [float(corpus_bleu(lrefs, lhyps, weights=(1.0 / k,) * k)) for k in range(1, 5)]


def lcs(a, b):
    """Length of the longest common subsequence of two token lists."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyp, refs, beta=1.2):
    """rouge.py calc_score: LCS precision and recall maximised separately over refs, F_beta."""
    c = hyp.split()
    assert len(c) > 0
    precs, recs = [], []
    for r in refs:
        t = r.split()
        m = lcs(t, c)
        precs.append(m / float(len(c)))
        recs.append(m / float(len(t)))
    p, r = max(precs), max(recs)
    if p != 0 and r != 0:
        return ((1 + beta ** 2) * p * r) / float(r + beta ** 2 * p)
    return 0.0


def _precook(tokens, n=4):
    counts = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i:i + k])] += 1
    return counts


def cider_d(hyps, refs, n=4, sigma=6.0):
    """ciderD_scorer: tf-idf n-gram vectors (df over items' reference sets, ref_len = ln #items),
    clipped cosine min(h, r) * r, Gaussian penalty on the bigram-count difference, mean over
    n, mean over refs, x10. Returns the per-item scores."""
    crefs = [[_precook(r.split(), n) for r in rs] for rs in refs]
    ctest = [_precook(h.split(), n) for h in hyps]
    df = Counter()
    for rs in crefs:
        for g in set(g for r in rs for g in r):
            df[g] += 1
    ref_len = math.log(float(len(crefs)))

    def vec(cnts):
        v, norm, length = [{} for _ in range(n)], [0.0] * n, 0
        for g, tf in cnts.items():
            k = len(g) - 1
            v[k][g] = float(tf) * (ref_len - math.log(max(1.0, df[g])))
            norm[k] += v[k][g] ** 2
            if k == 1:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    def sim(vh, nh, lh, vr, nr, lr):
        delta = float(lh - lr)
        val = [0.0] * n
        for k in range(n):
            for g, x in vh[k].items():
                y = vr[k].get(g, 0.0)
                val[k] += min(x, y) * y
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= (nh[k] * nr[k])
            val[k] *= math.exp(-(delta ** 2) / (2 * sigma ** 2))
        return val

    scores = []
    for h, rs in zip(ctest, crefs):
        vh, nh, lh = vec(h)
        total = [0.0] * n
        for r in rs:
            total = [a + b for a, b in zip(total, sim(vh, nh, lh, *vec(r)))]
        scores.append(sum(total) / n / len(rs) * 10.0)
    return scores


def caption_set(name, hyps, refs):
    """All caption metrics of one set. bleu_nltk only where nltk agrees by definition: every
    n-gram precision > 0 (nltk gives 0 otherwise) and every hyp >= 4 words (nltk counts a
    hyp's n-gram denominator as max(1, len - n + 1), pycocoevalcap as max(0, len - n + 1))."""
    bleu, correct = bleu_coco(hyps, refs)
    rl, cd = [rouge_l(h, rs) for h, rs in zip(hyps, refs)], cider_d(hyps, refs)
    same = min(correct) > 0 and min(len(h.split()) for h in hyps) >= 4
    return {"name": name, "hyps": hyps, "refs": refs, "bleu": bleu,
            "bleu_nltk": bleu_nltk(hyps, refs) if same else None,
            "rouge_l": rl, "rouge_l_mean": sum(rl) / len(rl),
            "cider_d": cd, "cider_d_mean": sum(cd) / len(cd)}


# ---------------------------------------------------------------- cases
SQUAD_WORDS = ["the", "The", "a", "an", "An", "cat", "Cat", "dog", "theory", "other", "Paris",
               "1990", "river", "blue", "Blue", "anthem", "them", "U.S.", "New", "york",
               "don't", "rock-and-roll", "3.5"]
GLUE = ",.!?'\"-"
VQA_POOL = ["yes", "no", "2", "two", "3", "red", "Red", "blue", "the dog", "dog", "a cat", "cat",
            "yes.", "no!", "1,000", "1000", "3.5", "x-ray", "x ray", "red, white", "red white",
            "tennis", "(tennis)", "don't know", "dont know", "none", "0"]
CAP_WORDS = ["a", "man", "dog", "riding", "on", "the", "red", "bike", "street", "with", "cat",
             "in"]


def _squad_text(rng, words):
    out = rng.choice(["", "", " ", "\t"])
    for i, w in enumerate(words):
        if rng.random() < 0.25:
            w += rng.choice(GLUE)
        if rng.random() < 0.1:
            w = rng.choice(GLUE) + w
        out += (rng.choice([" ", " ", " ", "  ", "\t", " \t "]) if i else "") + w
    return out + rng.choice(["", "", " ", "  "])


def squad_cases(rng):
    cases = [("", ["cat"]), ("", ["The."]), ("the , a !", ["cat"]), ("The Cat.", ["cat"]),
             ("a b b b", ["b b c"]), ("theory of the other", ["Theory other"]),
             ("anthem", ["an them"]), ("The-cat", ["cat"]), ("U.S.A.", ["usa"]),
             ("cat dog", ["cat", "dog cat bird"]), ("  The\tcat  ", ["a cat", "dog"]),
             ("don't stop", ["dont stop", "do not stop"]), ("the the the", ["the"])]
    for _ in range(40):
        base = rng.choices(SQUAD_WORDS, k=rng.randint(1, 6))
        golds = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                g = list(base)
            else:
                g = [w for w in base if rng.random() < 0.6]
                g += rng.choices(SQUAD_WORDS, k=rng.randint(0, 3))
                rng.shuffle(g)
            golds.append(_squad_text(rng, g or [rng.choice(SQUAD_WORDS)]))
        cases.append((_squad_text(rng, base), golds))
    return [squad_case(p, g) for p, g in cases]


def _k_of_10(match, other, k):
    return [match] * k + [other] * (10 - k)


# pred, an answer equal to its expected normalisation, another answer, how many of the first
VQA_EDGE = [("two", "2", "3", 4), ("None", "0", "no", 5), ("the dog", "dog", "cat", 6),
            ("a cat", "a cat", "cat", 5), ("1,000", "1000", "1,000", 3), ("3.5", "3.5", "35", 4),
            ("1,000-2", "10002", "1000 2", 3), ("end.", "end", "end.", 4),
            ("3.5.", "3.5", "3.5.", 5), ("yes ,", "yes", "no", 7), ("yes,no", "yes no", "x", 4),
            ("x-ray -", "xray", "x ray", 3), ("x-ray", "x ray", "xray", 3),
            ("\tyes\n", "yes", "no", 3), ("yes\nno", "yes no", "no", 4),
            ("Dont", "don't", "dont", 4), ("whats that", "what's that", "x", 3),
            ("couldn'tve", "couldn't've", "y", 3), ("red", "Red", "red", 8),
            ("(tennis)", "tennis", "(tennis)", 6), ("red, white", "red white", "red, white", 5),
            ("", "", "no", 4)] + [("blue", "blue", "red", k) for k in (0, 1, 2, 3, 10)]
# unanimous GT sets are not processed at all (compared after the strip)
VQA_SAME = [("two", ["two"] * 10), ("Red", ["Red"] * 10), ("yes.", ["yes."] * 10),
            ("yes.", ["yes."] * 9 + ["yes. "]), ("yes.", ["yes."] * 9 + ["yes"]),
            ("a" + "." * 40, ["a" + "." * 8] * 10)]  # only the first 32 periods go


_VARIANTS = [str.capitalize, lambda s: "the " + s, lambda s: s + "!", lambda s: s + " ?",
             lambda s: s + ".", lambda s: s + "\n", lambda s: "\t" + s + "  "] + [str] * 12


def vqa_cases(rng):
    cases = [(p, _k_of_10(m, o, k)) for p, m, o, k in VQA_EDGE] + list(VQA_SAME)
    for _ in range(40):
        sub = rng.sample(VQA_POOL, rng.randint(1, 4))
        answers = [rng.choice(sub)] * 10 if rng.random() < 0.15 else rng.choices(sub, k=10)
        pred = rng.choice(sub) if rng.random() < 0.7 else rng.choice(VQA_POOL)
        cases.append((rng.choice(_VARIANTS)(pred), answers))
    return [vqa_case(p, a) for p, a in cases]


def _mutate(rng, tokens, p):
    return [w if rng.random() >= p else rng.choice(CAP_WORDS) for w in tokens]


def _sent(rng, lo, hi):
    return " ".join(rng.choices(CAP_WORDS, k=rng.randint(lo, hi)))


def _cap_random(rng):
    """hyp of 3-12 words, mostly a mutated ref; 1-5 refs of 2-12 words."""
    rs = [_sent(rng, 2, 12) for _ in range(rng.randint(1, 5))]
    h = _mutate(rng, rng.choice(rs).split(), 0.3)
    if rng.random() < 0.3:
        h.insert(rng.randint(0, len(h)), rng.choice(CAP_WORDS))
    return " ".join((h + rng.choices(CAP_WORDS, k=3))[:min(12, max(3, len(h)))]), rs


def _cap_brevity(rng):
    """hyp of 3-5 words, every ref 7-10: the brevity penalty fires."""
    rs = [_sent(rng, 7, 10) for _ in range(rng.randint(2, 3))]
    return " ".join(_mutate(rng, rng.choice(rs).split()[:rng.randint(3, 5)], 0.2)), rs


def _cap_copy(rng):
    """hyp an exact copy of one of its 2-4 refs."""
    rs = [_sent(rng, 4, 10) for _ in range(rng.randint(2, 4))]
    return rng.choice(rs), rs


def _cap_tie(rng):
    """hyp of L words, refs of L-1 and L+1 (sometimes also L+3): closest ties to L-1."""
    L = rng.randint(4, 9)
    rs = [_sent(rng, L - 1, L - 1), _sent(rng, L + 1, L + 1)]
    rs += [_sent(rng, L + 3, L + 3)] if rng.random() < 0.4 else []
    rng.shuffle(rs)
    return " ".join((_mutate(rng, rs[0].split(), 0.25) + rng.choices(CAP_WORDS, k=2))[:L]), rs


def caption_sets(rng):
    def build(name, make, count, extra=()):
        items = [make(rng) for _ in range(count)] + list(extra)
        return caption_set(name, [h for h, _ in items], [r for _, r in items])
    police = ("police kill the gunman",
              ["police killed the gunman", "the gunman was shot by police"])
    papineni = ("the the the the the the the",
                ["the cat is on the mat", "there is a cat on the mat"])
    single = ("a man riding a red bike", ["a man riding a bike on the street",
                                          "a man on a red bike"])
    return [build("random", _cap_random, 30), build("brevity", _cap_brevity, 8),
            build("copies", _cap_copy, 6, [police]), build("papineni", None, 0, [papineni]),
            build("single", None, 0, [single]), build("ties", _cap_tie, 8)]


def generate(out_dir):
    rng = random.Random(20240611)
    squad, vqa, caps = squad_cases(rng), vqa_cases(rng), caption_sets(rng)
    cases = {"squad": squad,
             "squad_corpus": {"em": 100.0 * sum(c["em"] for c in squad) / len(squad),
                              "f1": 100.0 * sum(c["f1"] for c in squad) / len(squad)},
             "vqa": vqa, "vqa_corpus": 100.0 * sum(c["acc"] for c in vqa) / len(vqa),
             "caption_sets": caps}
    # hand checks: a broken reference fails loudly
    assert abs(squad_f1("a b b b", "b b c") - 2.0 / 3.0) < 1e-15
    assert squad_case("The Cat.", ["cat"])["em"] == 1.0
    assert abs(vqa_case("blue", _k_of_10("blue", "red", 3))["acc"] - 0.9) < 1e-12
    assert abs(vqa_case("Two", _k_of_10("2", "3", 2))["acc"] - 0.6) < 1e-12
    assert vqa_case("a" + "." * 40, ["a"] * 10)["norm_pred"] == "a" + "." * 8
    assert vqa_case("a" + "." * 40, ["a" + "." * 8] * 10)["acc"] == 1.0
    pap = next(s for s in caps if s["name"] == "papineni")
    assert abs(pap["bleu"][0] - 2.0 / 7.0) < 1e-9 and pap["cider_d"] == [0.0]
    assert abs(rouge_l("police kill the gunman", ["police killed the gunman"]) - 0.75) < 1e-12
    st.save(out_dir / "metrics.safetensors", {"unused": torch.zeros(1, dtype=torch.int64)},
            {"cases": json.dumps(cases)})
