"""PyTorch reference for the index, shape and vision ops: embedding (with padding_idx), gather of
rows, docking (emb[mask] = src), concat, stack, split, patchify (conv2d + flatten + transpose) and
masked mean pooling. Each case stores float inputs (in.*), integer inputs (const.*), the upstream
gradient (gout), torch's output (out) and the gradient of every float input (grad.*), under the
prefix "<case>."."""
import torch
import torch.nn.functional as F

import st


def _case(store, name, fn, inputs, consts=None, gen=None):
    consts = consts or {}
    xs = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**xs, **consts)
    gout = torch.randn(out.shape, generator=gen)
    out.backward(gout)
    store[f"{name}.out"] = out.detach()
    store[f"{name}.gout"] = gout
    for k, v in xs.items():
        store[f"{name}.in.{k}"] = v.detach()
        store[f"{name}.grad.{k}"] = v.grad if v.grad is not None else torch.zeros_like(v)
    for k, v in consts.items():
        store[f"{name}.const.{k}"] = v


def _dock(x, src, mask):
    # reference-spec 3.3: emb[gpt_input_mask] = features (row-major over [B, T])
    y = x.clone()
    y[mask.bool()] = src
    return y


def _mean_pool(x, mask):
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / mask.to(x.dtype).sum(1, keepdim=True).clamp(min=1)


def _patchify(images, weight, bias, patch):
    return F.conv2d(images, weight, bias, stride=patch).flatten(2).transpose(1, 2)


def generate(out_dir):
    g = torch.Generator().manual_seed(3)
    s = {}

    # embedding: small with padding_idx 0 (repeated ids and padding), and one large enough for
    # the parallel scatter-add of the backward (M * C >= 2^15).
    ids = torch.tensor([[0, 3, 3, 7, 10], [0, 0, 5, 3, 1], [9, 2, 0, 7, 7]])
    _case(s, "emb_pad", lambda weight, ids: F.embedding(ids, weight, padding_idx=0),
          {"weight": torch.randn(11, 6, generator=g)}, {"ids": ids}, g)
    ids = torch.randint(0, 100, (8, 64), generator=g)
    ids[0, :10] = 4
    _case(s, "emb_big", lambda weight, ids: F.embedding(ids, weight, padding_idx=4),
          {"weight": torch.randn(100, 64, generator=g)}, {"ids": ids}, g)
    _case(s, "gather", lambda x, index: x.index_select(0, index),
          {"x": torch.randn(7, 5, generator=g)}, {"index": torch.tensor([6, 0, 6, 2, 3, 6])}, g)

    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 1]], dtype=torch.uint8)
    _case(s, "dock", lambda x, src, mask: _dock(x, src, mask),
          {"x": torch.randn(2, 6, 8, generator=g), "src": torch.randn(5, 8, generator=g)},
          {"mask": mask}, g)

    _case(s, "concat1", lambda a, b, c: torch.cat([a, b, c], dim=1),
          {"a": torch.randn(2, 3, 4, generator=g), "b": torch.randn(2, 5, 4, generator=g),
           "c": torch.randn(2, 1, 4, generator=g)}, gen=g)
    _case(s, "concat_last", lambda a, b: torch.cat([a, b, a], dim=-1),
          {"a": torch.randn(3, 2, generator=g), "b": torch.randn(3, 4, generator=g)}, gen=g)
    _case(s, "stack1", lambda a, b, c: torch.stack([a, b, c], dim=1),
          {"a": torch.randn(3, 4, generator=g), "b": torch.randn(3, 4, generator=g),
           "c": torch.randn(3, 4, generator=g)}, gen=g)

    def split_fn(x):
        p = torch.split(x, [2, 3, 4], dim=1)
        return torch.cat([p[2] * 2, p[0].exp()], dim=1)
    _case(s, "split", split_fn, {"x": torch.randn(3, 9, generator=g)}, gen=g)

    _case(s, "patch8", lambda images, weight, bias: _patchify(images, weight, bias, 8),
          {"images": torch.randn(2, 3, 16, 24, generator=g),
           "weight": torch.randn(8, 3, 8, 8, generator=g) * 0.1,
           "bias": torch.randn(8, generator=g)}, gen=g)
    _case(s, "patch16_nobias", lambda images, weight: _patchify(images, weight, None, 16),
          {"images": torch.randn(1, 3, 32, 48, generator=g),
           "weight": torch.randn(32, 3, 16, 16, generator=g) * 0.05}, gen=g)

    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.uint8)
    _case(s, "pool_mask", lambda x, mask: _mean_pool(x, mask),
          {"x": torch.randn(3, 5, 4, generator=g)}, {"mask": mask}, g)
    _case(s, "pool_all", lambda x: x.mean(1), {"x": torch.randn(2, 7, 3, generator=g)}, gen=g)

    st.save(out_dir / "index_shape_vision.safetensors", s)
