"""PyTorch reference for the core ops: activations, broadcasting arithmetic, reductions, matmul,
linear. Each case stores inputs (in.*), the upstream gradient (gout), torch's output (out) and the
gradients of every input (grad.*), under the prefix "<case>."."""
import torch
import torch.nn.functional as F

import st


def _case(store, name, fn, inputs, attrs=None):
    xs = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
    out = fn(**xs)
    gout = torch.randn_like(out)
    out.backward(gout)
    store[f"{name}.out"] = out.detach()
    store[f"{name}.gout"] = gout
    for k, v in xs.items():
        store[f"{name}.in.{k}"] = v.detach()
        if v.grad is not None:
            store[f"{name}.grad.{k}"] = v.grad


def generate(out_dir):
    g = torch.Generator().manual_seed(1)
    s = {}
    x = torch.linspace(-6, 6, 97) + 0.01 * torch.randn(97, generator=g)
    acts = {
        "exp": torch.exp, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
        "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "quick_gelu": lambda t: t * torch.sigmoid(1.702 * t), "silu": F.silu,
    }
    for name, fn in acts.items():
        _case(s, f"act_{name}", lambda x, fn=fn: fn(x), {"x": x})
    xp = torch.rand(50, generator=g) * 4 + 0.05
    for name, fn in {"log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt}.items():
        _case(s, f"act_{name}", lambda x, fn=fn: fn(x), {"x": xp})
    a = torch.randn(4, 3, 5, generator=g)
    b = torch.randn(3, 1, generator=g)
    c = torch.rand(5, generator=g) + 0.5
    _case(s, "bin_add", lambda a, b: a + b, {"a": a, "b": b})
    _case(s, "bin_sub", lambda a, b: a - b, {"a": a, "b": b})
    _case(s, "bin_mul", lambda a, b: a * b, {"a": a, "b": b})
    _case(s, "bin_div", lambda a, c: a / c, {"a": a, "c": c})
    _case(s, "red_sum02", lambda a: a.sum(dim=(0, 2)), {"a": a})
    _case(s, "red_mean1", lambda a: a.mean(dim=1, keepdim=True), {"a": a})
    _case(s, "red_max2", lambda a: a.max(dim=2).values, {"a": a})
    mm = {
        "mm_nn": ((7, 5), (5, 3), False, False), "mm_tn": ((5, 7), (5, 3), True, False),
        "mm_nt": ((7, 5), (3, 5), False, True), "mm_tt": ((5, 7), (3, 5), True, True),
        "mm_batched": ((2, 3, 6, 8), (2, 3, 8, 4), False, False),
        "mm_shared_b": ((3, 6, 8), (4, 8), False, True),
        "mm_decode": ((1, 64), (96, 64), False, True),
    }
    for name, (sa, sb, ta, tb) in mm.items():
        def fn(a, b, ta=ta, tb=tb):
            return torch.matmul(a.transpose(-1, -2) if ta else a, b.transpose(-1, -2) if tb else b)
        _case(s, name, fn, {"a": torch.randn(*sa, generator=g), "b": torch.randn(*sb, generator=g)})
    _case(s, "linear", lambda x, w, b: F.linear(x, w, b),
          {"x": torch.randn(2, 5, 16, generator=g), "w": torch.randn(24, 16, generator=g),
           "b": torch.randn(24, generator=g)})
    st.save(out_dir / "core_ops.safetensors", s)
