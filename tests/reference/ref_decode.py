"""Beam search and greedy decoding with fairseq's semantics (reference-spec 6.1, 6.3), written
from the spec against the reference decoder of ref_torchscale.py, recomputing the whole sequence
at every step (no cache): the independent twin of infer::beam_search.

Per step: log-softmax of the last position's logits in f64; banned ids -inf; EOS -inf while
fewer than min_new tokens are out; every non-EOS -inf once max_new are out; no-repeat-ngram
over each hypothesis's generated tokens; cumulative scores; torch.topk of 2 x beam over the
flattened beam x vocab (step 0: the prompt's row only); EOS candidates ranked within the first
beam are finished with score / (step + 1)^lenpen; the first beam others go on. Done when beam
hypotheses are finished. Writes decode_<case>.safetensors: the weights (state.*), the prompt,
the hypotheses' tokens (-1 padded, [beam, max_new + 1]) and their scores."""
import json

import torch

import st
from ref_torchscale import Stack, _dec, _randomise_norms

EOS = 2
CASES = {
    # name: beam, lenpen, max_new, min_new, no_repeat_ngram, banned
    "beam4_lenpen1": (4, 1.0, 12, 1, 0, [1]),
    "beam4_lenpen06_ngram2": (4, 0.6, 10, 3, 2, [1]),
    "beam3_lenpen06_banned": (3, 0.6, 14, 1, 0, [1, 3, 7]),
    "greedy_ngram3": (1, 1.0, 16, 1, 3, [1]),
    # EOS banned until forced at 20 and no token twice: the ban fires (this model repeats 38)
    "beam4_ngram1_long": (4, 1.0, 20, 20, 1, [1]),
}


def ban_repeats(tokens, n, lp):
    if n <= 0 or len(tokens) < n:
        return
    key = tokens[len(tokens) - n + 1:]
    for s in range(len(tokens) - n + 1):
        if tokens[s:s + n - 1] == key:
            lp[tokens[s + n - 1]] = float("-inf")


def beam_search(model, prompt, beam, lenpen, max_new, min_new, ngram, banned):
    live = [([], 0.0)]
    done = []
    step = 0
    while len(done) < beam:
        seqs = torch.tensor([prompt + t for t, _ in live])
        with torch.no_grad():
            logits = model(seqs)[:, -1].double()
        lp = torch.log_softmax(logits, dim=-1)
        V = lp.size(1)
        for r, (toks, _) in enumerate(live):
            row = lp[r]
            row[banned] = float("-inf")
            if step < min_new:
                row[EOS] = float("-inf")
            if step >= max_new:
                keep = row[EOS].clone()
                row[:] = float("-inf")
                row[EOS] = keep
            ban_repeats(toks, ngram, row)
        cum = lp + torch.tensor([s for _, s in live], dtype=torch.float64).unsqueeze(1)
        scores, flat = torch.topk(cum.reshape(-1), min(2 * beam, cum.numel()))
        nxt = []
        for c in range(scores.numel()):
            s = scores[c].item()
            if s == float("-inf"):
                break
            b, tok = divmod(flat[c].item(), V)
            toks = live[b][0] + [tok]
            if tok == EOS:
                if c < beam and len(done) < beam:
                    done.append((toks, s / (step + 1) ** lenpen, s))
                continue
            if len(nxt) < beam:
                nxt.append((toks, s))
        if len(done) >= beam or not nxt:
            break
        live = nxt
        step += 1
    done.sort(key=lambda h: -h[1])
    return done


def generate(out_dir):
    cfg = _dec(subln=False, max_target_positions=64)
    gen = torch.Generator().manual_seed(97)
    torch.manual_seed(97)
    model = Stack(cfg, "decoder", "decoder_only", 0)
    _randomise_norms(model, gen)
    with torch.no_grad():  # peakier distributions (fewer near-ties), and EOS within reach
        model.output_projection.weight.mul_(4.0)
        model.output_projection.weight[EOS].mul_(4.0)
    model.eval()
    prompt = [0, 5, 9, 12, 5, 30]
    for name, (beam, lenpen, max_new, min_new, ngram, banned) in CASES.items():
        hyps = beam_search(model, prompt, beam, lenpen, max_new, min_new, ngram, banned)
        toks = torch.full((beam, max_new + 1), -1, dtype=torch.int64)
        for i, (t, _, _) in enumerate(hyps):
            toks[i, :len(t)] = torch.tensor(t)
        tensors = {"state." + k: v for k, v in model.state_dict().items()}
        tensors.update({"prompt": torch.tensor(prompt), "tokens": toks,
                        "scores": torch.tensor([h[1] for h in hyps], dtype=torch.float64),
                        "sum_logprobs": torch.tensor([h[2] for h in hyps], dtype=torch.float64)})
        meta = {"config": json.dumps(cfg), "beam": str(beam), "lenpen": repr(lenpen),
                "max_new": str(max_new), "min_new": str(min_new), "ngram": str(ngram),
                "banned": json.dumps(banned), "eos": str(EOS)}
        st.save(str(out_dir / f"decode_{name}.safetensors"), tensors, meta)
