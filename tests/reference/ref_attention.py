"""PyTorch reference for attention.cpp, computed the plain way in torchscale's order
(reference-spec 1.3): scores = (q * scale) @ k^T, masked_fill(hidden, -inf), + bias, softmax over
keys, @ v; gradients by autograd. The visibility rules are written out from
include/metalm/ops/attention.h. A query row with no visible key is defined as zeros (torch's
softmax would give NaN): such rows are replaced by zeros before softmax and zeroed after.

Every case exists in f32 and f64 ("<case>." and "f64.<case>."), computed by torch in that dtype.
A case stores inputs (in.q, in.k, in.v, in.bias), the mask tensors (mask.key_padding u8 [B, Tk],
mask.segment_ids i32 [B, Tk]), the upstream gradient (gout), torch's output (out) and the
gradients (grad.q, grad.k, grad.v, grad.bias). The metadata holds "cases" (comma separated) and
per case "<case>.kind", "<case>.q_offset", "<case>.prefix_len", "<case>.scale"."""
import math

import torch

import st

# name: B, H, Tq, Tk, D, kind, q_offset, prefix_len, key padding, bias shape ("" = none)
_CASES = [
    ("causal", 2, 3, 70, 70, 32, "causal", 0, 0, None, ""),
    ("full_padding", 2, 2, 50, 50, 24, "full", 0, 0, "right_all", ""),
    ("prefix", 2, 2, 80, 80, 16, "prefix", 0, 30, "right", ""),
    ("causal_rel_bias", 2, 4, 66, 66, 40, "causal", 0, 0, None, "1H"),
    ("cross_full_bias", 2, 2, 20, 70, 24, "full", 0, 0, "right", "BH"),
    ("decode_bias", 2, 3, 5, 90, 64, "causal", 85, 0, None, "B1"),
    ("segment_causal", 2, 2, 100, 100, 16, "segment_causal", 0, 0, "left", ""),
    ("segment_full", 2, 2, 70, 70, 8, "segment_full", 0, 0, None, "11"),
]


def _key_padding(kind, B, Tk):
    pad = torch.zeros(B, Tk, dtype=torch.uint8)
    if kind is None:
        return None
    for b in range(B):
        n = 7 + 11 * b
        if kind == "left":
            pad[b, :n] = 1
        else:
            pad[b, Tk - n:] = 1
    if kind == "right_all":
        pad[B - 1, :] = 1  # the last batch row has no visible key at all
    return pad


def _segment_ids(B, Tk, g):
    seg = torch.zeros(B, Tk, dtype=torch.int32)
    for b in range(B):
        cuts = sorted(torch.randint(1, Tk, (3 + b,), generator=g).tolist())
        for c in cuts:
            seg[b, c:] += 1
    return seg


def _visible(kind, B, Tq, Tk, q_offset, prefix_len, key_padding, segment_ids):
    """bool [B, 1, Tq, Tk]: query row i (position q_offset + i) sees key j."""
    pos = q_offset + torch.arange(Tq)[:, None]
    j = torch.arange(Tk)[None, :]
    vis = torch.ones(B, Tq, Tk, dtype=torch.bool)
    if kind in ("causal", "segment_causal"):
        vis &= (j <= pos)
    if kind == "prefix":
        vis &= (j < prefix_len) | (j <= pos)
    if kind in ("segment_causal", "segment_full"):
        seg_q = segment_ids[:, q_offset:q_offset + Tq]
        vis &= segment_ids[:, None, :] == seg_q[:, :, None]
    if key_padding is not None:
        vis &= key_padding[:, None, :] == 0
    return vis[:, None]


def _attention(q, k, v, bias, visible, scale):
    s = (q * scale) @ k.transpose(-1, -2)
    s = s.masked_fill(~visible, float("-inf"))
    if bias is not None:
        s = s + bias
    has_key = visible.any(-1, keepdim=True)
    s = torch.where(has_key, s, torch.zeros_like(s))
    p = torch.softmax(s, -1) * has_key
    return p @ v


def generate(out_dir):
    g = torch.Generator().manual_seed(1234)
    store, meta = {}, {"cases": ",".join(c[0] for c in _CASES)}
    for name, B, H, Tq, Tk, D, kind, q_offset, prefix_len, padding, bias_shape in _CASES:
        scale = 1.0 / math.sqrt(D)
        meta.update({f"{name}.kind": kind, f"{name}.q_offset": str(q_offset),
                     f"{name}.prefix_len": str(prefix_len), f"{name}.scale": repr(scale)})
        kp = _key_padding(padding, B, Tk)
        seg = _segment_ids(B, Tk, g) if kind.startswith("segment") else None
        vis = _visible(kind, B, Tq, Tk, q_offset, prefix_len, kp, seg)
        base = {"q": torch.randn(B, H, Tq, D, generator=g, dtype=torch.float64),
                "k": torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64),
                "v": torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64)}
        if bias_shape:
            bb = B if bias_shape[0] == "B" else 1
            bh = H if bias_shape[1] == "H" else 1
            base["bias"] = torch.randn(bb, bh, Tq, Tk, generator=g, dtype=torch.float64)
        gout = torch.randn(B, H, Tq, D, generator=g, dtype=torch.float64)
        for prefix, dtype in (("", torch.float32), ("f64.", torch.float64)):
            key = f"{prefix}{name}"
            xs = {n: t.to(dtype).requires_grad_() for n, t in base.items()}
            out = _attention(xs["q"], xs["k"], xs["v"], xs.get("bias"), vis, scale)
            out.backward(gout.to(dtype))
            store[f"{key}.out"] = out.detach()
            store[f"{key}.gout"] = gout.to(dtype)
            for n, t in xs.items():
                store[f"{key}.in.{n}"] = t.detach()
                store[f"{key}.grad.{n}"] = t.grad
            if kp is not None:
                store[f"{key}.mask.key_padding"] = kp
            if seg is not None:
                store[f"{key}.mask.segment_ids"] = seg
    st.save(out_dir / "attention.safetensors", store, meta)
