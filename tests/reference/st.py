"""Minimal safetensors writer/reader for the reference scripts (no safetensors package needed)."""
import json
import struct

import torch

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16",
           torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8"}
_NAMES = {v: k for k, v in _DTYPES.items()}


def save(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor; metadata: dict str -> str."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        shape = list(t.shape)
        t = t.reshape(-1)  # view() to bytes needs at least one dim (0-dim tensors)
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": shape,
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = _NAMES[info["dtype"]]
        buf = bytearray(raw[base + a:base + b])
        if dt == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if buf else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out, header.get("__metadata__", {})
