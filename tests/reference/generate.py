#!/usr/bin/env python3
"""Writes the PyTorch reference files for the C++ reference tests.

Every module tests/reference/ref_*.py defines generate(out_dir); each writes one or more
safetensors files into out_dir. Usage: generate.py OUT_DIR [NAME ...]
"""
import importlib
import os
import pathlib
import sys

import torch


def main():
    out_dir = pathlib.Path(sys.argv[1])
    only = set(sys.argv[2:])
    out_dir.mkdir(parents=True, exist_ok=True)
    here = pathlib.Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    torch.set_num_threads(int(os.environ.get("METALM_NUM_THREADS", "2")))
    names = sorted(p.stem for p in here.glob("ref_*.py"))
    for name in names:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        importlib.import_module(name).generate(out_dir)
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
