#!/usr/bin/env python3
"""PyTorch side of the model benchmarks (bench_models.cpp): a plain GPT-2-style Pre-LN decoder
training step and a BERT-style encoder forward, 6L d384 h6 ffn1536 V8192, B8 x T256, fp32,
matmul + softmax attention (what baselines.md measured). --precision bf16 runs the cases under
torch.autocast("cpu", bfloat16) (suffix _bf16: bf16 matmuls through oneDNN, PyTorch's own mixed
precision; faster here than a model cast to bf16). Peak memory = the high-water RSS during
warm-up and timed steps minus the RSS after the model and inputs were built, as bench_models.cpp
measures it.

The pretraining cases (mlm_train_step, metalm_train_step) run the PyTorch models and objectives
of tests/reference/ref_pretrain.py (the ones metalm's trainer is checked against) on the
architectures of bench/configs/*.json, the files bench_models.cpp builds from, with the same ids
and batch seeds, hence the same masks and spans ("draws" in the records; bench/combine.py
compares them and the parameter counts). Differences from the metalm side:
- the draws are made once, outside the timed step: ref_pretrain.py's pure-Python port of the
  counter-based generator takes up to ~40 ms a batch (mlm_corrupt), which a PyTorch data loader would not spend in
  the step; metalm's timed step redraws them (its objectives do, microseconds; draw_seconds);
- initial weights: PyTorch's module defaults, not metalm's bert_init (speed does not depend on
  them; the losses differ a little)."""
import contextlib
import json
import math
import pathlib
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_setting import openblas_corename

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "reference"))
import ref_pretrain  # noqa: E402
import ref_torchscale  # noqa: E402

L, D, H, FFN, V, B, T = 6, 384, 6, 1536, 8192, 8, 256
SPAN_LENGTH, SPAN_PROPORTION = 32, 0.25
ENCODER_TRAIN_LAYERS = 1  # metalm pretrain's --encoder-train-layers default


class Block(nn.Module):
    def __init__(self, causal):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, FFN), nn.Linear(FFN, D)
        self.causal = causal
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1))

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, H, D // H).permute(2, 0, 3, 1, 4)
        s = (q * (D // H) ** -0.5) @ k.transpose(-1, -2)
        if self.causal:
            s = s.masked_fill(self.mask[:t, :t], float("-inf"))
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, D)
        x = x + self.out(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Model(nn.Module):
    def __init__(self, causal):
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList(Block(causal) for _ in range(L))
        self.ln = nn.LayerNorm(D)

    def forward(self, ids, lm_head):
        x = self.tok(ids) + self.pos.weight[: ids.size(1)]
        for blk in self.blocks:
            x = blk(x)
        x = self.ln(x)
        return x @ self.tok.weight.t() if lm_head else x


PROMPT, NEW = 128, 128  # the decode cases: 128-token prompts (1 or 8), 128 tokens generated each


def block_step(blk, x, cache, start):
    """One Block over new positions [start, start + t) with a preallocated KV cache
    (k, v: [1, H, T, D/H]), as metalm's IncrementalState keeps it."""
    b, t, _ = x.shape
    q, k, v = blk.qkv(blk.ln1(x)).view(b, t, 3, H, D // H).permute(2, 0, 3, 1, 4)
    cache[0][:, :, start:start + t] = k
    cache[1][:, :, start:start + t] = v
    keys, values = cache[0][:, :, :start + t], cache[1][:, :, :start + t]
    s = (q * (D // H) ** -0.5) @ keys.transpose(-1, -2)
    if t > 1:  # the prompt: causal among its own positions
        s = s.masked_fill(blk.mask[start:start + t, :start + t], float("-inf"))
    a = (torch.softmax(s, -1) @ values).transpose(1, 2).reshape(b, t, D)
    x = x + blk.out(a)
    return x + blk.fc2(F.gelu(blk.fc1(blk.ln2(x))))


def greedy_decode(gpt, prompt, new):
    """Greedy continuation of prompts [B, P] by `new` tokens through the KV cache."""
    batch = prompt.size(0)
    caches = [(torch.empty(batch, H, T, D // H), torch.empty(batch, H, T, D // H))
              for _ in gpt.blocks]
    out, feed, start = [], prompt, 0
    for _ in range(new):
        x = gpt.tok(feed) + gpt.pos.weight[start:start + feed.size(1)]
        for blk, c in zip(gpt.blocks, caches):
            x = block_step(blk, x, c, start)
        logits = gpt.ln(x[:, -1:]) @ gpt.tok.weight.t()
        start += feed.size(1)
        feed = logits.argmax(-1)
        out.append(feed[:, 0].tolist())
    return out


def flops_per_token(lm_head):
    return L * (2.0 * (4 * D * D + 2 * D * FFN) + 4.0 * T * D) + (2.0 * D * V if lm_head else 0)


def docked_encoder_flops(S, Ls, docked):
    """bench_models.cpp's: every encoder layer forward over the S x Ls span rows (pads included),
    the backward (2x) of the trained top layers, the connector's two d x d Linears (3x)."""
    per_layer = 2.0 * (4 * D * D + 2 * D * FFN) + 4.0 * Ls * D
    return S * Ls * per_layer * (L + 2.0 * ENCODER_TRAIN_LAYERS) + 3 * 2.0 * (2 * D * D) * docked


def stack_config(fields):
    """A stack of a bench/configs file as ref_torchscale reads it: TorchScale's defaults (the
    ones metalm's config reader fills in) under the file's fields."""
    return dict(ref_torchscale._BASE, **fields)


def bench_config(name):
    with open(HERE / "configs" / name) as f:
        return json.load(f)


def pretrain_batch(n, seed):
    """bench_models.cpp's pretrain_batch: ids [B, n] (<s>, then ordinary tokens drawn by the
    port of Generator::randint in the same order), and the objective's batch seed."""
    g = ref_pretrain.Gen(seed)
    ids = [[ref_pretrain.BOS if t == 0 else g.randint(ref_pretrain.FIRST_ORDINARY, V)
            for t in range(n)] for _ in range(B)]
    return torch.tensor(ids), seed + 1000


def parameter_counts(model):
    ps = list(model.parameters())  # a tied weight once
    return {"parameters": sum(p.numel() for p in ps),
            "trainable_parameters": sum(p.numel() for p in ps if p.requires_grad)}


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def run(name, step, flops, steps, extra=None):
    before = current_rss_bytes()
    step()
    ts = []
    for _ in range(steps):
        a = time.perf_counter()
        step()
        ts.append(time.perf_counter() - a)
    ts.sort()
    peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    print(json.dumps({"name": name, "seconds": ts[len(ts) // 2], "tokens": B * T, "flops": flops,
                      "peak_bytes": peak, "threads": torch.get_num_threads(),
                      "openblas_corename": openblas_corename(), **(extra or {})}), flush=True)
    # (extra may replace "tokens": the decode case counts the tokens it generates)


def main():
    args = sys.argv[1:]
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 10
    torch.set_num_threads(int(args[args.index("--threads") + 1]) if "--threads" in args else 2)
    # Part of PyTorch's strongest setting: on Intel cores f32 denormal operands cost a microcode
    # assist, and after a few training steps gradients and Adam moments hold them; the GPT step
    # went from 1.3 s to 4-10 s per step on the Xeon host without this (metalm flushes them too,
    # core/threads.h). Flushing changes only values below 1.2e-38.
    torch.set_flush_denormal(True)
    flt = args[args.index("--filter") + 1] if "--filter" in args else ""
    torch.manual_seed(0)
    ids = torch.randint(3, V, (B, T))
    tgt = torch.randint(3, V, (B * T,))
    precision = args[args.index("--precision") + 1] if "--precision" in args else "f32"
    if precision not in ("f32", "bf16"):
        sys.exit(f"unknown --precision {precision!r}: f32 or bf16")
    # one precision per process, so each case's RSS growth is its own (bench/run runs both)
    suffix = "_bf16" if precision == "bf16" else ""

    def autocast():
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    name = "gpt_train_step_6L_d384_B8xT256" + suffix
    if not flt or flt in name:
        torch.manual_seed(1)
        gpt = Model(causal=True)
        opt = torch.optim.AdamW(gpt.parameters(), lr=3e-4, betas=(0.9, 0.98),
                                weight_decay=0.01)

        def train_step():
            with autocast():
                loss = F.cross_entropy(gpt(ids, True).view(-1, V).float(), tgt)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        run(name, train_step, 3 * flops_per_token(True) * B * T, steps)
        del gpt, opt
    for batch in (1, 8):  # bench_models.cpp's decode cases with f32 weights
        name = f"gpt_decode_b{batch}_6L_d384_V8192_p128_n128" + suffix
        if flt and flt not in name:
            continue
        torch.manual_seed(1)
        gpt = Model(causal=True).eval()
        prompt = torch.randint(3, V, (batch, PROMPT))

        def decode(n):
            with torch.no_grad(), autocast():
                return greedy_decode(gpt, prompt, n)
        decode(2)
        prefill = []
        for _ in range(steps):
            a = time.perf_counter()
            decode(1)
            prefill.append(time.perf_counter() - a)
        prefill.sort()
        per_token = (L * 2.0 * (4 * D * D + 2 * D * FFN) + 2.0 * D * V)
        run(name, lambda: decode(NEW), per_token * batch * (PROMPT + NEW), steps,
            {"tokens": batch * NEW, "batch": batch, "prefill_seconds": prefill[len(prefill) // 2]})
        del gpt
    name = "mlm_train_step_6L_d384_B8xT256" + suffix
    if not flt or flt in name:
        # The encoder reads all T ids of a row; logits and cross entropy on every position.
        torch.manual_seed(3)
        enc = ref_torchscale.Stack(stack_config(bench_config("mlm_6L_d384.json")), "encoder",
                                   "encoder_only", 0)
        mlm_ids, seed = pretrain_batch(T, 7)
        inp, tgt = ref_pretrain.mlm_corrupt(mlm_ids, seed, V)
        opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=3e-4,
                                betas=(0.9, 0.98), weight_decay=0.01)

        def mlm_step():
            with autocast():
                loss = ref_pretrain.mlm_loss_of(enc, mlm_ids, inp, tgt)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        run(name, mlm_step, 3 * flops_per_token(True) * B * T, steps,
            dict(parameter_counts(enc), draws={"masked": int((tgt != -100).sum())}))
        del enc, opt
    name = "metalm_train_step_6L_d384_B8xT256" + suffix
    if not flt or flt in name:
        # The decoder reads T of the T + 1 ids of a row; the docked encoder trains its top
        # ENCODER_TRAIN_LAYERS layers only (and the connector), as `metalm pretrain`.
        cfg = bench_config("metalm_6L_d384.json")
        (docked,) = cfg["encoders"]
        assert docked["name"] == "text" and docked["connector"] == {"kind": "complex",
                                                                   "activation": "gelu"}
        torch.manual_seed(4)
        lm = ref_pretrain.MetaLM(stack_config(cfg["decoder"]), stack_config(docked["config"]))
        layers = docked["config"]["encoder_layers"]
        for n, p in lm.encoders["text"].named_parameters():
            part = n.split(".")
            p.requires_grad_(part[0] == "layers" and int(part[1]) >= layers - ENCODER_TRAIN_LAYERS)
        lm_ids, seed = pretrain_batch(T + 1, 8)
        a = time.perf_counter()
        batch = ref_pretrain.semi_causal_batch(lm_ids, seed, SPAN_LENGTH, SPAN_PROPORTION)
        draw_seconds = time.perf_counter() - a
        S, Ls = batch["tok"].shape
        span_tokens = int(batch["sel"].sum())
        opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=3e-4,
                                betas=(0.9, 0.98), weight_decay=0.01)

        def metalm_step():
            with autocast():
                loss = ref_pretrain.semi_causal_loss_of(lm, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        draws = {"spans": S, "span_rows_length": Ls, "span_tokens": span_tokens,
                 "scored": int(batch["score"].sum())}
        run(name, metalm_step,
            3 * flops_per_token(True) * B * T + docked_encoder_flops(S, Ls, span_tokens), steps,
            dict(parameter_counts(lm), draws=draws, draw_seconds=draw_seconds))
        del lm, opt
    name = "bert_encoder_forward_6L_d384_B8xT256" + suffix
    if not flt or flt in name:
        torch.manual_seed(2)
        bert = Model(causal=False).eval()

        def fwd():
            with torch.no_grad(), autocast():
                bert(ids, False)
        run(name, fwd, flops_per_token(False) * B * T, steps)
        del bert

if __name__ == "__main__":
    main()
