"""PyTorch side of the safetensors cross-check: tensors of every dtype written from torch with
st.py. Most values follow closed formulas that test_ref_safetensors.cpp recomputes, so the C++
side asserts exact (bitwise) equality; the seeded random tensors are also listed, as exact
decimal floats, in a JSON side file."""
import json

import torch

import st


def tensors():
    i = torch.arange
    return {
        # (k - 11.5) / 7 in f32: every division rounds, identically in IEEE f32 on both sides
        "f32": ((i(24, dtype=torch.float32) - 11.5) / 7).reshape(2, 3, 4),
        "f64": ((i(10, dtype=torch.float64) - 4.5) / 3).reshape(10, 1),
        # rounding f32 -> bf16 (round to nearest even) must agree with metalm's f32_to_bf16
        "bf16": ((i(32, dtype=torch.float32) * 0.5 - 7) / 3).to(torch.bfloat16).reshape(4, 8),
        "i32": (i(12, dtype=torch.int32) * -1000003).reshape(3, 4),
        "i32_limits": torch.tensor([-2**31, 2**31 - 1, 0, -1], dtype=torch.int32),
        # beyond 2^53, so values that would not survive a trip through double
        "i64": i(6, dtype=torch.int64) * (2**40 + 7) - 2**62,
        "u8": ((i(256, dtype=torch.int64) * 7) % 256).to(torch.uint8).reshape(16, 16),
        "empty": torch.zeros(0, 3),
        # a non-contiguous torch tensor; st.save writes its contiguous copy: t[r, c] = c * 4 + r
        "transposed": i(12, dtype=torch.float32).reshape(3, 4).t(),
        "randn_f32": torch.randn(5, 7),
        "randn_bf16": torch.randn(3, 5).to(torch.bfloat16),
    }


def generate(out_dir):
    ts = tensors()
    st.save(out_dir / "safetensors_torch.safetensors", ts,
            metadata={"format": "pt", "producer": "ref_safetensors.py", "torch": torch.__version__})
    # repr of a Python float (a double holding the f32 or bf16 value exactly) round-trips exactly
    side = {k: ts[k].float().flatten().tolist() for k in ("randn_f32", "randn_bf16")}
    (out_dir / "safetensors_torch.json").write_text(json.dumps(side))
