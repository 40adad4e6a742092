"""PyTorch reference for the position encodings (src/nn/positions.cpp, src/ops/rotary.cpp),
written from reference-spec 5.1-5.4 in plain PyTorch, the way TorchScale and fairseq compute:

- xPos on [(B*H), L, D] with rotate_every_two and duplicate_interleave, tables built in the
  input dtype (f32 as TorchScale, and f64); output and the gradient wrt x for a random upstream
  gradient. Every case exists in f32 ("xpos.<case>.") and f64 ("f64.xpos.<case>.") on the same
  input values, so the C++ f32 result can also be compared with PyTorch's f64 one.
- The XPOS buffer "scale" (zeta, f32) as TorchScale registers it.
- T5 buckets (bidirectional) for many distances and several (num_buckets, max_distance), and the
  bias lookup [1, H, qlen, klen] with the gradient wrt the table.
- fairseq sinusoidal tables (f32 as fairseq, and f64; an odd dim), make_positions on a padded
  batch, and the incremental row padding_idx + current_length.
- The learned table read from offset 2, default and explicit positions, gradient wrt the table.

Metadata: "xpos.cases", per case "xpos.<case>.offset" / ".downscale" / ".scale_base";
"bucket.configs" ("nb_md" names); "bias.cases" with "<case>.qlen/klen/step"."""
import math

import torch

import st

# ------------------------------------------------------------------ xPos (spec 5.1)

# name: B, H, L, D, offset, downscale
_XPOS_CASES = [
    ("q_full", 2, 3, 17, 32, 0, False),
    ("k_full", 2, 3, 17, 32, 0, True),
    ("q_odd_total", 1, 2, 5, 8, 2, False),      # N = 7: min_pos = -4
    ("q_step", 2, 2, 1, 64, 40, False),         # incremental query at position 40
    ("k_cache", 2, 2, 41, 64, 0, True),         # the whole cache, re-rotated
    ("k_long", 1, 1, 600, 16, 0, True),         # large positions: f32 table error grows
    ("q_long_step", 1, 2, 3, 16, 2045, False),  # N = 2048
]


def _rotate_every_two(x):
    # pairs (x[2i], x[2i+1]) -> (-x[2i+1], x[2i])
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def _duplicate_interleave(t):
    # [L, D/2] -> [L, D]: every column twice, side by side
    return t.repeat_interleave(2, dim=-1)


def _xpos(x, offset, downscale, scale_base):
    """x: [(B*H), L, D] in f32 or f64; all tables in x's dtype."""
    L, D = x.shape[1], x.shape[2]
    dt = x.dtype
    half = D // 2
    N = L + offset
    min_pos = -N // 2  # Python floor division: floor(-N / 2)
    zeta = (torch.arange(0, D, 2).to(dt) + 0.4 * D) / (1.4 * D)  # in dt: f32 as TorchScale
    pos_c = torch.arange(min_pos, min_pos + N).to(dt)
    scale = zeta[None, :] ** (pos_c[:, None] / scale_base)          # [N, half]
    theta = 1.0 / (10000.0 ** (torch.arange(half).to(dt) / half))   # [half]
    angle = torch.arange(N).to(dt)[:, None] * theta[None, :]        # absolute positions
    sin, cos = torch.sin(angle), torch.cos(angle)
    if N > L:
        scale, sin, cos = scale[-L:], sin[-L:], cos[-L:]
    if downscale:
        scale = 1 / scale
    cos2 = _duplicate_interleave(cos * scale)
    sin2 = _duplicate_interleave(sin * scale)
    return x * cos2 + _rotate_every_two(x) * sin2


def _gen_xpos(store, meta, g):
    meta["xpos.cases"] = ",".join(c[0] for c in _XPOS_CASES)
    for name, B, H, L, D, offset, down in _XPOS_CASES:
        meta[f"xpos.{name}.offset"] = str(offset)
        meta[f"xpos.{name}.downscale"] = "1" if down else "0"
        meta[f"xpos.{name}.scale_base"] = "512"
        x32 = torch.randn(B, H, L, D, generator=g)
        gout32 = torch.randn(B, H, L, D, generator=g)
        for prefix, dt in (("", torch.float32), ("f64.", torch.float64)):
            key = f"{prefix}xpos.{name}"
            x = x32.to(dt).clone().requires_grad_()
            out = _xpos(x.reshape(B * H, L, D), offset, down, 512.0).reshape(B, H, L, D)
            out.backward(gout32.to(dt))
            store[f"{key}.in.x"] = x.detach()
            store[f"{key}.gout"] = gout32.to(dt)
            store[f"{key}.out"] = out.detach()
            store[f"{key}.grad.x"] = x.grad
    for D in (8, 64, 128):
        store[f"xpos.buffer_scale.{D}"] = (torch.arange(0, D, 2) + 0.4 * D) / (1.4 * D)


# ------------------------------------------------------------------ T5 buckets (spec 5.2)

_BUCKET_CONFIGS = [(32, 128), (18, 128), (18, 4096), (64, 256), (8, 20), (33, 100), (4, 3)]


def _t5_bucket(rel, num_buckets, max_distance):
    """rel = k_pos - q_pos (i64 tensor) -> bucket (i64), bidirectional."""
    n = -rel
    nb = num_buckets // 2
    ret = (n < 0).to(torch.long) * nb
    n = torch.abs(n)
    max_exact = nb // 2
    is_small = n < max_exact
    # the log branch only for n >= max_exact (clamped elsewhere, and discarded by where)
    n_large = torch.clamp(n, min=max_exact).float()
    val = torch.log(n_large / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact)
    large = max_exact + val.to(torch.long)
    large = torch.min(large, torch.full_like(large, nb - 1))
    return ret + torch.where(is_small, n, large)


# name: qlen, klen, step
_BIAS_CASES = [("square", 20, 20, 0), ("long", 150, 150, 0), ("cross", 5, 9, 3),
               ("step_row", 1, 150, 149)]


def _gen_buckets_and_bias(store, meta, g):
    meta["bucket.configs"] = ",".join(f"{nb}_{md}" for nb, md in _BUCKET_CONFIGS)
    for nb, md in _BUCKET_CONFIGS:
        span = 3 * md + 40
        n = torch.arange(-span, span + 1)
        store[f"bucket.{nb}_{md}.n"] = n
        store[f"bucket.{nb}_{md}.out"] = _t5_bucket(-n, nb, md)
    nb, md, H = 32, 128, 4
    meta.update({"bias.num_buckets": str(nb), "bias.max_distance": str(md), "bias.heads": str(H)})
    table = torch.randn(nb, H, generator=g)
    store["bias.weight"] = table
    meta["bias.cases"] = ",".join(c[0] for c in _BIAS_CASES)
    for name, qlen, klen, step in _BIAS_CASES:
        meta[f"bias.{name}.qlen"], meta[f"bias.{name}.klen"] = str(qlen), str(klen)
        meta[f"bias.{name}.step"] = str(step)
        w = table.clone().requires_grad_()
        q_pos = torch.arange(step, step + qlen)[:, None]
        k_pos = torch.arange(klen)[None, :]
        buckets = _t5_bucket(k_pos - q_pos, nb, md)
        bias = torch.nn.functional.embedding(buckets, w).permute(2, 0, 1).unsqueeze(0)
        gout = torch.randn(bias.shape, generator=g)
        bias.backward(gout)
        store[f"bias.{name}.buckets"] = buckets
        store[f"bias.{name}.out"] = bias.detach()
        store[f"bias.{name}.gout"] = gout
        store[f"bias.{name}.grad.weight"] = w.grad
        # the same gradient in f64: PyTorch's f32 sums of ~qlen*klen/num_buckets terms round
        w64 = table.double().requires_grad_()
        b64 = torch.nn.functional.embedding(buckets, w64).permute(2, 0, 1).unsqueeze(0)
        b64.backward(gout.double())
        store[f"f64.bias.{name}.grad.weight"] = w64.grad
    # The incremental row is the last query row of the full square bias (spec 1.3 quirk).
    w = table
    full = torch.nn.functional.embedding(
        _t5_bucket(torch.arange(150)[None, :] - torch.arange(150)[:, None], nb, md), w)
    store["bias.step_from_full"] = full.permute(2, 0, 1).unsqueeze(0)[:, :, -1:, :]


# ------------------------------------------------------------------ fairseq sinusoidal (spec 5.3)

def _sinusoidal(num, dim, padding_idx, dt):
    half = dim // 2
    step = math.log(10000) / (half - 1)
    w = torch.exp(torch.arange(half, dtype=dt) * -step)
    angle = torch.arange(num, dtype=dt)[:, None] * w[None, :]
    e = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    if dim % 2 == 1:
        e = torch.cat([e, torch.zeros(num, 1, dtype=dt)], dim=1)
    if padding_idx is not None:
        e[padding_idx, :] = 0
    return e


def _make_positions(tokens, pad_id, padding_idx):
    mask = tokens.ne(pad_id).long()
    return torch.cumsum(mask, dim=1) * mask + padding_idx


def _gen_sinusoidal(store, meta):
    store["sin.table64"] = _sinusoidal(2100, 64, 1, torch.float32)
    store["f64.sin.table64"] = _sinusoidal(2100, 64, 1, torch.float64)
    store["sin.table33"] = _sinusoidal(40, 33, 1, torch.float32)
    store["f64.sin.table33"] = _sinusoidal(40, 33, 1, torch.float64)
    pad = 1
    tokens = torch.tensor([[0, 57, 9, 4, 2, 1, 1, 1],      # right padding
                           [1, 1, 1, 0, 8, 8, 2, 5],       # left padding
                           [0, 3, 1, 7, 1, 6, 2, 2]])      # pads inside (counted out)
    store["sin.tokens"] = tokens
    store["sin.positions"] = _make_positions(tokens, pad, pad)
    table = _sinusoidal(64, 16, pad, torch.float32)
    store["sin.embed16"] = table[store["sin.positions"]]
    # incremental: position padding_idx + current_length, current_length = 9 (new token included)
    store["sin.step16"] = table[pad + 9][None, None, :]
    meta["sin.step_length"] = "9"


# ------------------------------------------------------------------ learned (spec 1.3, 5.4)

def _gen_learned(store, g):
    w = torch.randn(1026, 16, generator=g)
    store["learned.weight"] = w
    T = 10
    store["learned.default"] = torch.nn.functional.embedding(torch.arange(2, T + 2), w)
    pos = torch.tensor([[2, 3, 3, 1025], [0, 7, 2, 2]])
    wg = w.clone().requires_grad_()
    out = torch.nn.functional.embedding(pos, wg)
    gout = torch.randn(out.shape, generator=g)
    out.backward(gout)
    store["learned.positions"] = pos
    store["learned.explicit"] = out.detach()
    store["learned.gout"] = gout
    store["learned.grad.weight"] = wg.grad


def generate(out_dir):
    g = torch.Generator().manual_seed(2024)
    store, meta = {}, {}
    _gen_xpos(store, meta, g)
    _gen_buckets_and_bias(store, meta, g)
    _gen_sinusoidal(store, meta)
    _gen_learned(store, g)
    st.save(out_dir / "positions.safetensors", store, meta)
