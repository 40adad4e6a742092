#!/usr/bin/env python3
"""End to end: `metalm init` + `metalm forward` on every example config with a vocabulary,
then the PyTorch reference (ref_torchscale.Stack, written from the spec) loads the same
model.safetensors and runs the same tokens; the outputs must agree. Then the same with
`--matmul-precision bf16`: within bf16's error of the reference (relative norm error below
2e-2, about 10x the rounding error of the operands) and not equal to the f32 output.

Usage: cli_forward_parity.py METALM_BINARY CONFIG_DIR WORK_DIR"""
import json
import pathlib
import subprocess
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ref_torchscale  # noqa: E402
import st  # noqa: E402


def main():
    binary, config_dir, work = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    failures, checked = [], 0
    for cfg_path in sorted(config_dir.glob("*.json")):
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("vocab_size", -1) <= 0:
            continue  # vision-only encoders take images, not token ids
        name = cfg_path.stem
        model_dir, out = work / name, work / f"{name}.out.safetensors"
        subprocess.run([binary, "init", "--config", str(cfg_path), "--out", str(model_dir),
                        "--seed", "7"], check=True, capture_output=True)
        g = torch.Generator().manual_seed(5)
        tokens = torch.randint(2, cfg["vocab_size"], (2, 11), generator=g)
        (work / f"{name}.tokens.json").write_text(json.dumps(tokens.tolist()))
        full = json.loads((model_dir / "config.json").read_text())
        kind = full["model_type"]
        # Encoders: the final hidden states (their output layer is an MLM head).
        output = ["--output", "hidden"] if kind == "encoder" else []
        subprocess.run([binary, "forward", "--model", str(model_dir), "--tokens",
                        str(work / f"{name}.tokens.json"), "--out", str(out)] + output,
                       check=True, capture_output=True)
        model = ref_torchscale.Stack(full, kind, f"{kind}_only", 0)
        weights, _ = st.load(model_dir / "model.safetensors")
        missing, unexpected = model.load_state_dict(weights, strict=False)
        tied = full.get(f"share_{kind}_input_output_embed", False)
        allowed = {"output_projection.weight"} if tied else set()
        if set(missing) - allowed or unexpected:
            failures.append(f"{name}: state dict mismatch: missing {missing}, extra {unexpected}")
            continue
        if kind == "encoder":
            model.output_projection = None  # `--output hidden`: the final hidden states
        model.eval()
        with torch.no_grad():
            ref = model(tokens)
        ours = next(iter(st.load(out)[0].values()))
        err = ((ours - ref).abs() / (1e-5 + 1e-4 * ref.abs())).max().item()
        checked += 1
        status = "ok" if err <= 1.0 else "MISMATCH"
        print(f"{name}: {kind} {tuple(ours.shape)} max scaled error {err:.3f} {status}")
        if err > 1.0:
            failures.append(f"{name}: outputs differ (scaled error {err:.3f})")
        out16 = work / f"{name}.bf16.safetensors"
        subprocess.run([binary, "forward", "--model", str(model_dir), "--tokens",
                        str(work / f"{name}.tokens.json"), "--out", str(out16),
                        "--matmul-precision", "bf16"] + output, check=True, capture_output=True)
        tensors16, meta16 = st.load(out16)
        ours16 = next(iter(tensors16.values()))
        rel16 = ((ours16 - ref).norm() / ref.norm()).item()
        moved = ((ours16 - ours).norm() / ref.norm()).item()
        ok16 = rel16 < 2e-2 and moved > 1e-6 and meta16.get("matmul_precision") == "bf16"
        print(f"{name}: bf16 relative error {rel16:.2e} (vs f32 output {moved:.2e}) "
              f"{'ok' if ok16 else 'MISMATCH'}")
        if not ok16:
            failures.append(f"{name}: bf16 output off (relative error {rel16:.2e}, "
                            f"moved {moved:.2e}, metadata {meta16})")
    print(f"{checked} passed, {len(failures)} failed")
    for f in failures:
        print("FAIL", f)
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
