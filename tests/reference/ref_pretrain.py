"""PyTorch reference trajectories of the three pretraining objectives (src/train/objectives.cpp,
trainer.cpp): 10 AdamW steps of a tiny GPT (causal), a tiny MLM text encoder, and a tiny MetaLM
(text encoder docked into the decoder through a complex connector, semi-causal loss).

Everything the C++ side derives from a batch is derived here again, independently, from the spec:
the span sampler of reference-spec 3.1 (_mlm_cut), the D4 loss mask (DESIGN.md), the 15% / 80 /
10 / 10 MLM corruption, the warmup + cosine schedule, AdamW with decoupled decay on matrices
only (not embed_positions), clipping at 1.0. The random draws use the engine's counter-based
generator (core/random.h: splitmix64 over (seed, counter)), ported below, so that both sides draw
the same spans and masks from the same batch seed.

bench/torch_models.py times these models and objectives against metalm's: the draws
(mlm_corrupt, semi_causal_batch) are made once outside its timed step, then *_loss_of.

Writes pretrain_<case>.safetensors: state.<name> (initial weights), batch<i>.ids (i64 [B, T+1]),
loss<i> (f64 [1]), final.<name> (weights after 10 steps); metadata: config (JSON), seed<i>.
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import ref_torchscale
import st

M64 = (1 << 64) - 1
BOS, PAD, MASK, LINE = 0, 1, 4, 8
FIRST_ORDINARY = 9
STEPS, WARMUP, LR, WD, CLIP, BETAS, EPS = 10, 3, 2e-3, 0.01, 1.0, (0.9, 0.98), 1e-8


def hash64(seed, counter):
    z = (seed * 0xD1B54A32D192ED03 + counter * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    z = ((z ^ (z >> 29)) * 0xBF58476D1CE4E5B9) & M64
    return z ^ (z >> 32)


def uniform_at(seed, counter):
    return (hash64(seed, counter) >> 11) * (1.0 / 9007199254740992.0)


class Gen:
    def __init__(self, seed):
        self.seed, self.offset = seed, 0

    def randint(self, lo, hi):  # [lo, hi)
        v = lo + hash64(self.seed, self.offset) % (hi - lo)
        self.offset += 1
        return v


def sample_spans(ids, n, L, rho, seed, min_after=20):
    """reference-spec 3.1 (_mlm_cut) on ids[0:n]."""
    if rho == 0 or n <= 2.5 * L + 1:
        return []
    starts = []
    s = 1
    while s < n - 1.5 * L:
        starts.append(s)
        s += L
    g = Gen(seed)
    for i in range(len(starts), 1, -1):  # Fisher-Yates
        j = g.randint(0, i)
        starts[i - 1], starts[j] = starts[j], starts[i - 1]
    spans, covered = [], 0
    for s in starts:
        window = ids[s:s + L]
        bounds = [j for j, t in enumerate(window) if t == LINE]
        if len(bounds) >= 2:
            continue
        if len(bounds) == 1:
            e = bounds[0]
            if L - e < min_after:
                continue
            span = (s + e + 1, s + L)
        else:
            c = g.randint(0, L)
            span = (s, s + c + 1) if c >= L / 2 else (s + c, s + L)
        spans.append(span)
        covered += span[1] - span[0]
        if covered > (n - 1) * rho:
            break
    return sorted(spans)


def row_seed(batch_seed, row):
    return hash64(batch_seed, row)


def shifted(ids):
    return ids[:, :-1], ids[:, 1:], (ids[:, 1:] != PAD).to(torch.float32)


def mean_ce(logits, targets, score):
    # .float(): bf16 logits under autocast (bench/torch_models.py) are scored in f32, as metalm does
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                          reduction="none")
    w = score.reshape(-1)
    return (nll * w).sum() / w.sum()


# ------------------------------------------------------------------ models and objectives


class Connector(nn.Module):  # "complex": dense (d_in -> d_in), gelu, predict (d_in -> d_out)
    def __init__(self, d_in, d_out):
        super().__init__()
        self.dense, self.predict = nn.Linear(d_in, d_in), nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.predict(F.gelu(self.dense(x)))


class MetaLM(nn.Module):
    def __init__(self, dec_cfg, enc_cfg):
        super().__init__()
        self.decoder = ref_torchscale.Stack(dec_cfg, "decoder", "decoder_only", 0)
        self.encoders = nn.ModuleDict({"text": ref_torchscale.Stack(enc_cfg, "encoder",
                                                                     "encoder_only", 0)})
        d_enc, d_dec = enc_cfg["encoder_embed_dim"], dec_cfg["decoder_embed_dim"]
        self.connectors = nn.ModuleDict({"text": Connector(d_enc, d_dec)})


def causal_loss(model, ids, seed):
    x, y, score = shifted(ids)
    return mean_ce(model(x), y, score)


def mlm_corrupt(ids, seed, vocab):
    """The 15% / 80 / 10 / 10 corruption of ids [B, n]: (input ids, targets with -100 where not
    chosen)."""
    B, n = ids.shape
    inp, tgt = ids.clone(), torch.full_like(ids, -100)
    for b in range(B):
        rs = row_seed(seed, b)
        for i in range(n):
            t = int(ids[b, i])
            if t < FIRST_ORDINARY or t == PAD:
                continue
            c = 3 * i
            if uniform_at(rs, c) >= 0.15:
                continue
            tgt[b, i] = t
            how = uniform_at(rs, c + 1)
            if how < 0.8:
                inp[b, i] = MASK
            elif how < 0.9:
                inp[b, i] = FIRST_ORDINARY + hash64(rs, c + 2) % (vocab - FIRST_ORDINARY)
    return inp, tgt


def mlm_loss_of(model, ids, inp, tgt):
    """The MLM loss of a corrupted batch (mlm_corrupt) of ids."""
    logits = model(inp, route=(0, False), padding_mask=(ids == PAD).to(torch.uint8))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt.reshape(-1),
                           ignore_index=-100)


def mlm_loss(model, ids, seed, vocab):
    return mlm_loss_of(model, ids, *mlm_corrupt(ids, seed, vocab))


def semi_causal_batch(ids, seed, L, rho):
    """What the semi-causal objective derives from ids [B, T + 1]: the decoder's inputs x,
    targets y and loss weights score, the docked positions dock, and the span rows ([<s>] +
    span, padded: tok, pad) with the encoder outputs that dock (sel); tok is None without
    spans."""
    x, y, score = shifted(ids)
    B, T = x.shape
    dock = torch.zeros(B, T, dtype=torch.uint8)
    rows = []
    for b in range(B):
        row = ids[b].tolist()
        n = max(i + 1 for i, t in enumerate(row) if t != PAD)
        for a, e in sample_spans(row, n, L, rho, row_seed(seed, b)):
            dock[b, a:e] = 1
            score[b, a:e - 1] = 0  # D4: positions a .. e-2 saw their targets
            rows.append([BOS] + row[a:e])
    out = dict(x=x, y=y, score=score, dock=dock, tok=None, pad=None, sel=None)
    if not rows:
        return out
    S, Lmax = len(rows), max(len(r) for r in rows)
    tok = torch.full((S, Lmax), PAD, dtype=torch.int64)
    for s, r in enumerate(rows):
        tok[s, :len(r)] = torch.tensor(r)
    pad = (tok == PAD).to(torch.uint8)
    sel = (1 - pad).bool()
    sel[:, 0] = False  # the <s> output is not docked
    out.update(tok=tok, pad=pad, sel=sel)
    return out


def semi_causal_loss_of(model, p):
    """The semi-causal loss of a prepared batch (semi_causal_batch)."""
    if p["tok"] is None:
        return mean_ce(model.decoder(p["x"]), p["y"], p["score"])
    h = model.encoders["text"](p["tok"], route=(0, False), padding_mask=p["pad"],
                               features_only=True)
    feats = model.connectors["text"](h[p["sel"]])
    logits = model.decoder(p["x"], dock_mask=p["dock"], dock_features=feats)
    return mean_ce(logits, p["y"], p["score"])


def semi_causal_loss(model, ids, seed, L, rho):
    return semi_causal_loss_of(model, semi_causal_batch(ids, seed, L, rho))


# ------------------------------------------------------------------ training


def lr_at(step):
    if step <= WARMUP:
        return LR * step / WARMUP
    t = min(1.0, (step - WARMUP) / (STEPS - WARMUP))
    return LR * 0.5 * (1 + math.cos(math.pi * t))


def train(model, loss_fn, batches):
    named = [(n, p) for n, p in model.named_parameters()]
    decay = [p for n, p in named if p.dim() > 1 and "embed_positions" not in n]
    rest = [p for n, p in named if not (p.dim() > 1 and "embed_positions" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for step, (ids, seed) in enumerate(batches, start=1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad()
        loss = loss_fn(model, ids, seed)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        losses.append(loss.item())
    return losses


def _batches(gen, B, n, vocab, line_every, pad_tail):
    out = []
    for i in range(STEPS):
        ids = torch.randint(FIRST_ORDINARY, vocab, (B, n), generator=gen)
        ids[:, 0] = BOS
        if line_every:
            ids[:, line_every::line_every] = LINE
        ids[B - 1, n - pad_tail:] = PAD  # one right-padded row
        out.append((ids, 1000 + 17 * i))
    return out


_BASE = dict(ref_torchscale._BASE, dropout=0.0, vocab_size=60)


def _dec():
    return dict(_BASE, model_type="decoder", decoder_embed_dim=32, decoder_attention_heads=4,
                decoder_ffn_embed_dim=64, decoder_layers=2, decoder_normalize_before=True,
                share_decoder_input_output_embed=True, max_target_positions=80, subln=False)


def _enc():
    return dict(_BASE, model_type="encoder", encoder_embed_dim=24, encoder_attention_heads=4,
                encoder_ffn_embed_dim=48, encoder_layers=2, encoder_normalize_before=False,
                normalize_output=True, share_encoder_input_output_embed=True,
                max_source_positions=40, subln=False, layernorm_embedding=True)


def _weights(model):
    """Parameters (a tied weight once, under its embedding's name) and buffers, copied."""
    out = {n: p.detach().clone() for n, p in model.named_parameters()}
    out.update({n: b.clone() for n, b in model.named_buffers()})
    return out


def generate(out_dir):
    gen = torch.Generator().manual_seed(11)
    # GPT, causal.
    torch.manual_seed(1)
    gpt = ref_torchscale.Stack(_dec(), "decoder", "decoder_only", 0)
    init = _weights(gpt)
    b = _batches(gen, 4, 33, 60, 0, 5)
    losses = train(gpt, causal_loss, b)
    _save_with(out_dir, "gpt", init, _weights(gpt), _dec(), b, losses)
    # MLM text encoder.
    torch.manual_seed(2)
    enc = ref_torchscale.Stack(_enc(), "encoder", "encoder_only", 0)
    init = _weights(enc)
    b = _batches(gen, 4, 33, 60, 0, 4)
    losses = train(enc, lambda m, ids, s: mlm_loss(m, ids, s, 60), b)
    _save_with(out_dir, "mlm", init, _weights(enc), _enc(), b, losses)
    # MetaLM, semi-causal: spans of L = 12 covering about 30%, </line> every 20 tokens.
    torch.manual_seed(3)
    mlm = MetaLM(_dec(), _enc())
    init = _weights(mlm)
    b = _batches(gen, 3, 65, 60, 20, 6)
    losses = train(mlm, lambda m, ids, s: semi_causal_loss(m, ids, s, 12, 0.3), b)
    enc_cfg = {k: v for k, v in _enc().items() if k != "model_type"}
    dec_cfg = {k: v for k, v in _dec().items() if k != "model_type"}
    config = {"model_type": "metalm", "decoder": dec_cfg,
              "encoders": [{"name": "text", "span": "text", "config": enc_cfg,
                            "connector": {"kind": "complex", "activation": "gelu"}}]}
    _save_with(out_dir, "metalm", init, _weights(mlm), config, b, losses)


def _save_with(out_dir, name, init, final, config, batches, losses):
    tensors = {"state." + k: v for k, v in init.items()}
    tensors.update({"final." + k: v for k, v in final.items()})
    for i, (ids, _) in enumerate(batches):
        tensors[f"batch{i}.ids"] = ids
        tensors[f"loss{i}"] = torch.tensor([losses[i]], dtype=torch.float64)
    meta = {"config": json.dumps(config)}
    meta.update({f"seed{i}": str(s) for i, (_, s) in enumerate(batches)})
    st.save(out_dir / f"pretrain_{name}.safetensors", tensors, meta)
