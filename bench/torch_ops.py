#!/usr/bin/env python3
"""PyTorch side of bench/run: the same cases as bench_ops.cpp, one JSON line each.

bench/run runs it in the fastest OpenBLAS setting torch_setting.py finds on the host
(OPENBLAS_L2_SIZE unset, OMP_WAIT_POLICY=PASSIVE); each line names the kernel OpenBLAS ran.
Attention cases run in a fresh subprocess each so that peak RSS is per case."""
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from torch_setting import openblas_corename


def median_seconds(call, repeats):
    call()
    ts = []
    for _ in range(repeats):
        a = time.perf_counter()
        call()
        ts.append(time.perf_counter() - a)
    ts.sort()
    return ts[len(ts) // 2]


def fwd_bwd(leaves, f):
    def call():
        for t in leaves:
            t.grad = None
        out = f()
        out.backward(torch.ones_like(out))
    return call


def cases():
    for m, k, n in [(2048, 384, 1536), (2048, 1536, 384), (2048, 384, 384), (2048, 384, 8192)]:
        def setup(m=m, k=k, n=n):
            x = torch.randn(m, k, requires_grad=True)
            w = (torch.randn(n, k) * 0.05).requires_grad_()
            b = torch.randn(n, requires_grad=True)
            return fwd_bwd([x, w, b], lambda: F.linear(x, w, b))
        yield f"linear_fwd_bwd_{m}x{k}x{n}", 3 * 2.0 * m * k * n, setup
    for T in [256, 1024, 2048]:
        yield f"attention_causal_fwd_bwd_T{T}", 7 * 2.0 * 4 * 8 * T * T * 64 / 2, None
    for T in [256, 1024]:
        yield f"attention_causal_dropout_fwd_bwd_T{T}", 7 * 2.0 * 4 * 8 * T * T * 64 / 2, None
    for C in [384, 8192]:
        sh = f"8x256x{C}"

        def ln(C=C):
            x = torch.randn(8, 256, C, requires_grad=True)
            w = torch.randn(C, requires_grad=True)
            b = torch.randn(C, requires_grad=True)
            return fwd_bwd([x, w, b], lambda: F.layer_norm(x, (C,), w, b))

        def sm(C=C):
            x = torch.randn(8, 256, C, requires_grad=True)
            return fwd_bwd([x], lambda: torch.softmax(x, -1))

        def gl(C=C):
            x = torch.randn(8, 256, C, requires_grad=True)
            return fwd_bwd([x], lambda: F.gelu(x))

        def ce(C=C):
            x = torch.randn(2048, C, requires_grad=True)
            t = torch.randint(0, C, (2048,))
            return fwd_bwd([x], lambda: F.cross_entropy(x, t))
        yield f"layer_norm_fwd_bwd_{sh}", 0, ln
        yield f"softmax_fwd_bwd_{sh}", 0, sm
        yield f"gelu_fwd_bwd_{sh}", 0, gl
        yield f"cross_entropy_fwd_bwd_{sh}", 0, ce


def attention_case(T, repeats, dropout):
    """Matmul-softmax-matmul with a causal mask (and dropout p on the probabilities), fwd+bwd;
    prints seconds and peak RSS growth."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q, k, v = (torch.randn(4, 8, T, 64, requires_grad=True) for _ in range(3))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)

    def f():
        s = (q * 64 ** -0.5) @ k.transpose(-1, -2)
        s = s.masked_fill(mask, float("-inf"))
        p = torch.softmax(s, -1)
        return (F.dropout(p, dropout) if dropout else p) @ v
    sec = median_seconds(fwd_bwd([q, k, v], f), repeats)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    print(json.dumps({"seconds": sec, "peak_bytes": peak}))


def main():
    args = sys.argv[1:]
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 2
    repeats = int(args[args.index("--repeats") + 1]) if "--repeats" in args else 10
    flt = args[args.index("--filter") + 1] if "--filter" in args else ""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as torch_models.py: part of the strongest setting
    if "--attention" in args:
        dropout = float(args[args.index("--dropout") + 1]) if "--dropout" in args else 0.0
        attention_case(int(args[args.index("--attention") + 1]), repeats, dropout)
        return
    for name, flops, setup in cases():
        if flt and flt not in name:
            continue
        if setup is None:
            T = int(name.rsplit("T", 1)[1])
            out = subprocess.run([sys.executable, __file__, "--attention", str(T), "--threads",
                                  str(threads), "--repeats", str(repeats),
                                  "--dropout", "0.1" if "dropout" in name else "0"],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout)
            sec, peak = r["seconds"], r["peak_bytes"]
        else:
            sec, peak = median_seconds(setup(), repeats), None
        print(json.dumps({"name": name, "seconds": sec, "flops": flops, "peak_bytes": peak,
                          "threads": threads, "openblas_corename": openblas_corename()}),
              flush=True)


if __name__ == "__main__":
    main()
