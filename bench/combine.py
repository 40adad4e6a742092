#!/usr/bin/env python3
"""Joins metalm and baseline JSON lines by case name into the bench/run report lines."""
import json
import sys

PEAK_GFLOPS_2T = 509.0  # measured fp32 FMA peak, 2 cores (../shared/baselines.md)
# measured bf16 dot-product peak (vdpbf16ps), 2 cores: the limit of cases run with bf16 GEMMs
PEAK_GFLOPS_2T_BF16 = 1017.0


def load(path):
    with open(path) as f:
        return {r["name"]: r for r in map(json.loads, filter(str.strip, f))}


def main():
    ours, theirs = load(sys.argv[1]), load(sys.argv[2])
    for name, m in ours.items():
        b = theirs.get(name)
        if name.startswith("sgemm_raw_"):
            # Reported as the ceiling of the matching linear case.
            lin = ours.get(name.replace("sgemm_raw_3gemm_", "linear_fwd_bwd_"))
            if lin:
                g_lin = lin["flops"] / lin["seconds"] / 1e9
                g_raw = m["flops"] / m["seconds"] / 1e9
                print(json.dumps({"name": name.replace("sgemm_raw_3gemm_", "linear_vs_raw_sgemm_"),
                                  "unit": "GFLOP/s", "metalm": round(g_lin, 1),
                                  "baseline": round(g_raw, 1), "ratio": round(g_lin / g_raw, 3),
                                  "peak_fraction": round(g_lin / PEAK_GFLOPS_2T, 3),
                                  "baseline_is": "dnnl_sgemm, same 3 GEMMs"}))
            continue
        if m.get("tokens"):  # model benchmarks: tokens/s, fraction of peak from model FLOPs
            x, y = m["tokens"] / m["seconds"], (b["tokens"] / b["seconds"] if b else None)
            peak = PEAK_GFLOPS_2T_BF16 if m.get("precision") == "bf16" else PEAK_GFLOPS_2T
            row = {"name": name, "unit": "tokens/s", "metalm": round(x, 1),
                   "baseline": round(y, 1) if y else None, "ratio": round(x / y, 3) if y else None,
                   "peak_fraction": round(m["flops"] / m["seconds"] / 1e9 / peak, 3),
                   "baseline_peak_fraction": round(b["flops"] / b["seconds"] / 1e9 / peak, 3) if b else None,
                   "precision": m.get("precision", "f32"),
                   "metalm_peak_rss_bytes": m.get("peak_bytes"),
                   "metalm_tensor_peak_bytes": m.get("tensor_peak_bytes"),
                   "baseline_peak_rss_bytes": b.get("peak_bytes") if b else None}
            if name.endswith("_bf16"):  # also against PyTorch's fp32 run of the same case
                b32 = theirs.get(name[: -len("_bf16")])
                if b32:
                    row["ratio_vs_baseline_f32"] = round(x / (b32["tokens"] / b32["seconds"]), 3)
            print(json.dumps(row))
            continue
        if m["flops"]:
            unit, x = "GFLOP/s", m["flops"] / m["seconds"] / 1e9
            y = b["flops"] / b["seconds"] / 1e9 if b else None
        else:
            unit, x = "calls/s", 1.0 / m["seconds"]
            y = 1.0 / b["seconds"] if b else None
        row = {"name": name, "unit": unit, "metalm": round(x, 2),
               "baseline": round(y, 2) if y else None,
               "ratio": round(x / y, 3) if y else None,
               "peak_fraction": round(x / PEAK_GFLOPS_2T, 3) if unit == "GFLOP/s" else None,
               "metalm_peak_bytes": m.get("peak_bytes")}
        if b and b.get("peak_bytes") is not None:
            row["baseline_peak_rss_bytes"] = b["peak_bytes"]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
