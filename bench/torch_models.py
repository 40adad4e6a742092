#!/usr/bin/env python3
"""PyTorch side of the model benchmarks (bench_models.cpp): a plain GPT-2-style Pre-LN decoder
training step and a BERT-style encoder forward, 6L d384 h6 ffn1536 V8192, B8 x T256, fp32,
matmul + softmax attention (what baselines.md measured). --precision bf16 runs the cases under
torch.autocast("cpu", bfloat16) (suffix _bf16: bf16 matmuls through oneDNN, PyTorch's own mixed
precision; faster here than a model cast to bf16). Peak memory = the high-water RSS during
warm-up and timed steps minus the RSS after the model and inputs were built, as bench_models.cpp
measures it."""
import contextlib
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_setting import openblas_corename

L, D, H, FFN, V, B, T = 6, 384, 6, 1536, 8192, 8, 256


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


def flops_per_token(lm_head):
    return L * (2.0 * (4 * D * D + 2 * D * FFN) + 4.0 * T * D) + (2.0 * D * V if lm_head else 0)


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def run(name, step, flops, steps):
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
                      "openblas_corename": openblas_corename()}), flush=True)


def main():
    args = sys.argv[1:]
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 10
    torch.set_num_threads(int(args[args.index("--threads") + 1]) if "--threads" in args else 2)
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
