#!/usr/bin/env python3
"""Joins metalm and baseline JSON lines by case name into the bench/run report lines.

Usage: combine.py HOST.jsonl SETTING.json METALM.jsonl BASELINE.jsonl
HOST: metalm_bench_host's lines (host_peak, precision_auto) from the start and the end of the
run; SETTING: torch_setting.py's line. Printed first: host_peak (the higher of the two
measurements of each peak, both listed, "disturbed" if they differ by over 10%, and lscpu's
model name), precision_auto (both decisions), baseline_setting; then one line per case. Every
line carries "baseline_setting" (core type, OpenBLAS kernel, probe GFLOP/s).

Tokenizer cases ("bytes" in the record) are MB/s of text, against python3-sentencepiece.
Model cases come in rounds (several lines per name and side). Their "metalm" and "baseline" are
the medians over rounds, "*_range" the [min, max]; "ratio" is the ratio of the medians and
"ratio_range" the bounds no pairing of rounds can leave: [min metalm / max baseline,
max metalm / min baseline]. Peak fractions divide the median rates by the host peaks measured in
the same run (f32 FMA; bf16 dot-product for bf16 cases). Cases whose records carry parameter
counts and the objective's random draws (the pretraining steps) say whether both sides had the
same ("same_parameters", "same_draws": false means the two sides did not run the same work)."""
import json
import statistics
import subprocess
import sys


def load(path):
    """name -> list of records, in file order (one per round)."""
    out = {}
    with open(path) as f:
        for r in map(json.loads, filter(str.strip, f)):
            out.setdefault(r["name"], []).append(r)
    return out


def cpu_model():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def spread(xs):
    return statistics.median(xs), min(xs), max(xs)


def model_row(name, ours, theirs, peak_of):
    """One model case over rounds: tokens/s medians and ranges of both sides."""
    m = ours[name]
    b = theirs.get(name, [])
    x, x_lo, x_hi = spread([r["tokens"] / r["seconds"] for r in m])
    precision = m[0].get("precision", "f32")
    peak = peak_of(precision)
    gflops = statistics.median(r["flops"] / r["seconds"] / 1e9 for r in m)
    row = {"name": name, "unit": "tokens/s", "rounds": len(m),
           "metalm": round(x, 1), "metalm_range": [round(x_lo, 1), round(x_hi, 1)],
           "baseline": None, "baseline_range": None, "ratio": None, "ratio_range": None,
           "peak_fraction": round(gflops / peak, 3) if peak else None,
           "precision": precision,
           "metalm_peak_rss_bytes": max(r.get("peak_bytes", 0) for r in m),
           "metalm_tensor_peak_bytes": max(r.get("tensor_peak_bytes", 0) for r in m)}
    if b:
        y, y_lo, y_hi = spread([r["tokens"] / r["seconds"] for r in b])
        b_gflops = statistics.median(r["flops"] / r["seconds"] / 1e9 for r in b)
        row.update({"baseline": round(y, 1), "baseline_range": [round(y_lo, 1), round(y_hi, 1)],
                    "baseline_rounds": len(b), "ratio": round(x / y, 3),
                    "ratio_range": [round(x_lo / y_hi, 3), round(x_hi / y_lo, 3)],
                    "baseline_peak_fraction": round(b_gflops / peak, 3) if peak else None,
                    "baseline_peak_rss_bytes": max(r.get("peak_bytes", 0) for r in b)})
    for key in ("parameters", "trainable_parameters", "draws"):
        if key in m[0]:
            row[key] = m[0][key]
            if b and key in b[0]:
                row["same_" + key] = all(r.get(key) == m[0][key] for r in m + b)
    if "draw_seconds" in m[0]:
        row["metalm_draw_seconds"] = m[0]["draw_seconds"]
    if "prefill_seconds" in m[0]:  # decoding: the one-token steps after the prompt's forward
        row.update(decode_fields(m, b))
        # Against the other decode cases of the run: bf16-stored weights vs f32 ones (same
        # batch and precision), batch 8 vs batch 1 (same weights and precision).
        for key, other in (("vs_f32_weights", name.replace("_bf16weights", "")),
                           ("vs_batch1", name.replace("_b8_", "_b1_"))):
            if other != name and other in ours:
                row[key] = round(row["metalm_decode_tokens_per_s"] /
                                 decode_fields(ours[other], [])["metalm_decode_tokens_per_s"], 3)
    if name.endswith("_bf16"):  # also against PyTorch's fp32 run of the same case
        b32 = theirs.get(name[: -len("_bf16")])
        if b32:
            row["ratio_vs_baseline_f32"] = round(
                x / statistics.median(r["tokens"] / r["seconds"] for r in b32), 3)
    return row


def decode_fields(m, b):
    """Decode rate (tokens after each row's first, over the time after the prompts' forward),
    its bandwidth bound (every weight read once a step, for all `batch` rows), the prefill time,
    and the same for the baseline when it ran the case."""
    def decode_rate(r):
        batch = r.get("batch", 1)
        return (r["tokens"] - batch) / (r["seconds"] - r["prefill_seconds"])
    row = {"metalm_decode_tokens_per_s": round(statistics.median(decode_rate(r) for r in m), 1),
           "metalm_prefill_seconds": round(statistics.median(r["prefill_seconds"] for r in m), 5),
           "batch": m[0].get("batch", 1), "weights_dtype": m[0].get("weights_dtype", "f32")}
    if "weight_bytes" in m[0]:
        bw = max(r["bandwidth_gbs"] for r in m)
        row["weight_bytes"] = m[0]["weight_bytes"]
        row["bandwidth_gbs"] = bw
        row["bandwidth_bound_tokens_per_s"] = round(row["batch"] * bw * 1e9 / m[0]["weight_bytes"], 1)
        row["bandwidth_fraction"] = round(row["metalm_decode_tokens_per_s"] /
                                          row["bandwidth_bound_tokens_per_s"], 3)
        row["weight_gbs"] = round(row["metalm_decode_tokens_per_s"] / row["batch"] *
                                  m[0]["weight_bytes"] / 1e9, 2)
    if b:
        row["baseline_decode_tokens_per_s"] = round(statistics.median(decode_rate(r) for r in b), 1)
        row["decode_ratio"] = round(row["metalm_decode_tokens_per_s"] /
                                    row["baseline_decode_tokens_per_s"], 3)
        row["baseline_prefill_seconds"] = round(statistics.median(r["prefill_seconds"] for r in b), 5)
        row["prefill_ratio"] = round(row["baseline_prefill_seconds"] / row["metalm_prefill_seconds"], 3)
    return row


def text_row(name, ours, theirs):
    """The tokenizer over rounds: MB/s of UTF-8 text encoded, medians and ranges of both sides
    (baseline: python3-sentencepiece's batch encode on the same text and model)."""
    def rate(r):
        return r["bytes"] / r["seconds"] / 1e6
    m, b = ours[name], theirs.get(name, [])
    x, x_lo, x_hi = spread([rate(r) for r in m])
    row = {"name": name, "unit": "MB/s", "rounds": len(m), "metalm": round(x, 2),
           "metalm_range": [round(x_lo, 2), round(x_hi, 2)], "baseline": None,
           "ratio": None, "peak_fraction": None, "threads": m[0]["threads"],
           "text_bytes": m[0]["bytes"], "ids": m[0]["ids"],
           "metalm_peak_rss_bytes": max(r.get("peak_bytes", 0) for r in m),
           "baseline_is": "python3-sentencepiece, its faster of encode(list, num_threads) "
                          "and a loop of encode(line)"}
    if b:
        y, y_lo, y_hi = spread([rate(r) for r in b])
        row.update({"baseline": round(y, 2), "baseline_range": [round(y_lo, 2), round(y_hi, 2)],
                    "ratio": round(x / y, 3),
                    "ratio_range": [round(x_lo / y_hi, 3), round(x_hi / y_lo, 3)],
                    "same_ids": all(r["ids"] == m[0]["ids"] for r in b),
                    "baseline_ways": sorted({r["python_way"] for r in b}),
                    "baseline_peak_rss_bytes": max(r.get("peak_bytes", 0) for r in b)})
        for way in ("batch", "loop"):
            rates = [r["bytes"] / r[f"{way}_seconds"] / 1e6 for r in b if f"{way}_seconds" in r]
            if rates:
                row[f"baseline_{way}"] = round(statistics.median(rates), 2)
    return row


def op_row(name, m, b, peak):
    if m["flops"]:
        unit, x = "GFLOP/s", m["flops"] / m["seconds"] / 1e9
        y = b["flops"] / b["seconds"] / 1e9 if b else None
    else:
        unit, x = "calls/s", 1.0 / m["seconds"]
        y = 1.0 / b["seconds"] if b else None
    row = {"name": name, "unit": unit, "metalm": round(x, 2),
           "baseline": round(y, 2) if y else None,
           "ratio": round(x / y, 3) if y else None,
           "peak_fraction": round(x / peak, 3) if unit == "GFLOP/s" and peak else None,
           "metalm_peak_bytes": m.get("peak_bytes")}
    if b and b.get("peak_bytes") is not None:
        row["baseline_peak_rss_bytes"] = b["peak_bytes"]
    return row


def main():
    host, ours, theirs = load(sys.argv[1]), load(sys.argv[3]), load(sys.argv[4])
    with open(sys.argv[2]) as f:
        setting_line = json.loads(f.read())
    setting = {k: setting_line[k] for k in ("OPENBLAS_CORETYPE", "openblas_corename",
                                            "sgemm_gflops", "bmm_gflops")}
    runs = host["host_peak"]
    peaks = dict(runs[0])
    for key in ("f32_gflops", "bf16_gflops"):
        peaks[key] = max(r[key] for r in runs)
        peaks[key + "_runs"] = [round(r[key], 1) for r in runs]
    # Both runs measure the same hardware: a gap means other work shared the cores at one of them.
    peaks["disturbed"] = any(min(peaks[k + "_runs"]) < 0.9 * peaks[k]
                             for k in ("f32_gflops", "bf16_gflops"))
    peaks["cpu_model"] = cpu_model()

    def peak_of(precision):
        return peaks["bf16_gflops"] if precision == "bf16" else peaks["f32_gflops"]

    def emit(row):
        row["baseline_setting"] = setting
        print(json.dumps(row))

    emit(dict(peaks))
    for when, auto in zip(("start", "end"), host["precision_auto"]):
        auto = dict(auto, when=when)
        auto["note"] = ("auto rows are not run: bench_models --precision auto runs exactly the "
                        "rows of the precision chosen")
        emit(auto)
    print(json.dumps(setting_line))
    for name, runs in ours.items():
        m = runs[0]
        b = theirs.get(name, [None])[0]
        if b and b.get("openblas_corename") not in (None, setting["openblas_corename"]):
            sys.exit(f"combine: {name} ran OpenBLAS kernel {b['openblas_corename']}, "
                     f"not the chosen {setting['openblas_corename']}")
        if name.startswith("sgemm_raw_"):
            # Reported as the ceiling of the matching linear case.
            lin = ours.get(name.replace("sgemm_raw_3gemm_", "linear_fwd_bwd_"))
            if lin:
                g_lin = lin[0]["flops"] / lin[0]["seconds"] / 1e9
                g_raw = m["flops"] / m["seconds"] / 1e9
                emit({"name": name.replace("sgemm_raw_3gemm_", "linear_vs_raw_sgemm_"),
                      "unit": "GFLOP/s", "metalm": round(g_lin, 1), "baseline": round(g_raw, 1),
                      "ratio": round(g_lin / g_raw, 3),
                      "peak_fraction": round(g_lin / peak_of("f32"), 3),
                      "baseline_is": "dnnl_sgemm, same 3 GEMMs"})
            continue
        if m.get("bytes"):  # the tokenizer: MB/s over rounds
            emit(text_row(name, ours, theirs))
            continue
        if m.get("tokens"):  # model benchmarks: tokens/s over rounds
            emit(model_row(name, ours, theirs, peak_of))
        else:
            emit(op_row(name, m, b, peak_of("f32")))


if __name__ == "__main__":
    main()
