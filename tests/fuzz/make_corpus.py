#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_safetensors into tests/fuzz/corpus (small valid files).

Uses tests/reference/st.py, so it needs torch: run it with /usr/bin/python3.
Usage: make_corpus.py [OUT_DIR]
"""
import json
import pathlib
import struct
import sys

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reference"))
import st  # noqa: E402


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    st.save(out / "empty.safetensors", {})
    st.save(out / "one_f32.safetensors", {"w": torch.tensor([1.0, -2.0, 0.5])})
    st.save(out / "every_dtype.safetensors", {
        "a": torch.arange(4, dtype=torch.float32).reshape(2, 2),
        "b": torch.tensor([1.5, -0.25], dtype=torch.float64),
        "c": torch.tensor([1.0, 3.0, -7.0], dtype=torch.bfloat16),
        "d": torch.tensor([-1, 2], dtype=torch.int32),
        "e": torch.tensor([2**40], dtype=torch.int64),
        "f": torch.arange(5, dtype=torch.uint8),
    })
    # st.save cannot write 0-dim tensors (view(torch.uint8) needs a dim), so the scalar is [1]
    st.save(out / "metadata_zero_size.safetensors", {
        "one": torch.tensor([3.0]),
        "zero": torch.zeros(0, 4, dtype=torch.int32),
        "x.weight": torch.ones(1, 2, 1),
    }, metadata={"format": "pt", "note": "seed"})
    # a 0-dim tensor, written by hand
    header = json.dumps({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    (out / "scalar.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + struct.pack("<d", 2.5))
    print(f"wrote seeds to {out}")


if __name__ == "__main__":
    main()
