#!/usr/bin/env python3
"""Picks PyTorch's strongest OpenBLAS setting on this host, for bench/run.

No fixed setting is right everywhere (../shared/baselines.md): with OPENBLAS_CORETYPE unset,
OpenBLAS 0.3.21 misdetects some Intel Xeons and runs a generic kernel ~4x slower than its
Cooperlake or SkylakeX one, while on Zen unset is best and the environment's
OPENBLAS_CORETYPE=Haswell with OPENBLAS_L2_SIZE=512 halves the speed. So each candidate core type
times a short torch sgemm in a fresh process (OPENBLAS_L2_SIZE unset, OMP_WAIT_POLICY=PASSIVE, as
every baseline run of bench/run) and the fastest wins; a candidate whose process fails is skipped.
The probe also times an attention-shaped batched GEMM (the models' other kind: many small ones)
and ranks by the time of both together ("score_gflops"); two passes in opposite orders, best per
candidate, so that a slow moment of the host does not decide. The environment as found is
measured too, for the record only.

Usage: torch_setting.py --threads N   prints one JSON line:
  {"name": "baseline_setting", "OPENBLAS_CORETYPE": "..." (null: unset), "openblas_corename",
   "sgemm_gflops", "bmm_gflops", "score_gflops", "disturbed", "candidates": [...],
   "as_found": {...}}
torch_setting.py --probe --threads N   measures in this process's environment."""
import ctypes
import json
import os
import subprocess
import sys
import time

CANDIDATES = [None, "Cooperlake", "SkylakeX", "SapphireRapids", "Haswell"]
M, K, N = 2048, 384, 1536  # a transformer FFN GEMM: about 12 ms at 200 GFLOP/s
BH, T, DH = 48, 256, 64    # attention probabilities x values: B8 x 6 heads, T256, head dim 64


def openblas_corename():
    """The kernel name of the libopenblas torch loaded (None if it loaded none)."""
    import torch  # noqa: F401  (loads libopenblas)
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "libopenblas" in line})
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def best_seconds(f, n=10):
    for _ in range(2):
        f()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def probe(threads):
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(M, K), torch.randn(K, N)
    p, v = torch.randn(BH, T, T), torch.randn(BH, T, DH)
    t_mm, t_bmm = best_seconds(lambda: a @ b), best_seconds(lambda: torch.bmm(p, v))
    f_mm, f_bmm = 2.0 * M * K * N, 2.0 * BH * T * T * DH
    print(json.dumps({"openblas_corename": openblas_corename(),
                      "sgemm_gflops": round(f_mm / t_mm / 1e9, 1),
                      "bmm_gflops": round(f_bmm / t_bmm / 1e9, 1),
                      "score_gflops": round((f_mm + f_bmm) / (t_mm + t_bmm) / 1e9, 1)}))


def baseline_env(coretype, threads):
    """The environment of a baseline run: the given core type (None: unset), L2 size unset."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_probe(env, threads):
    r = subprocess.run([sys.executable, __file__, "--probe", "--threads", str(threads)], env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines() or [f"exit status {r.returncode}"]
        return {"error": lines[-1]}
    return json.loads(r.stdout)


def main():
    args = sys.argv[1:]
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 2
    if "--probe" in args:
        probe(threads)
        return
    candidates = [{"OPENBLAS_CORETYPE": c} for c in CANDIDATES]
    for order in (candidates, candidates[::-1]):
        for row in order:
            r = run_probe(baseline_env(row["OPENBLAS_CORETYPE"], threads), threads)
            if "error" in r:  # a candidate that fails once is out
                row["error"] = r["error"]
            elif "error" not in row and row.get("score_gflops", 0) < r["score_gflops"]:
                row.update(r)
    ok = [c for c in candidates if "error" not in c]
    if not ok:
        sys.exit("torch_setting: every OPENBLAS_CORETYPE candidate failed: "
                 + "; ".join(str(c["error"]) for c in candidates))
    # Candidates that run the same kernel (unset and Cooperlake on Zen; SapphireRapids falls back
    # to Cooperlake in 0.3.21) differ only by noise: the fastest candidate's kernel wins, named by
    # its first candidate in CANDIDATES order, so unset wins whenever auto-detection picks it.
    fastest = max(ok, key=lambda c: c["score_gflops"])
    first = next(c for c in ok if c["openblas_corename"] == fastest["openblas_corename"])
    best = dict(fastest, OPENBLAS_CORETYPE=first["OPENBLAS_CORETYPE"])
    # Same kernel, scores over 10% apart: other work shared the cores during some probe.
    disturbed = any(min(c["score_gflops"] for c in ok if c["openblas_corename"] == k)
                    < 0.9 * max(c["score_gflops"] for c in ok if c["openblas_corename"] == k)
                    for k in {c["openblas_corename"] for c in ok})
    found = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                            "OMP_WAIT_POLICY")}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    found.update(run_probe(env, threads))
    print(json.dumps({"name": "baseline_setting", "OPENBLAS_CORETYPE": best["OPENBLAS_CORETYPE"],
                      "openblas_corename": best.get("openblas_corename"),
                      "sgemm_gflops": best["sgemm_gflops"], "bmm_gflops": best["bmm_gflops"],
                      "score_gflops": best["score_gflops"], "threads": threads,
                      "sgemm_shape": f"{M}x{K}x{N}", "bmm_shape": f"{BH}x{T}x{T}x{DH}",
                      "disturbed": disturbed, "candidates": candidates, "as_found": found}))


if __name__ == "__main__":
    main()
