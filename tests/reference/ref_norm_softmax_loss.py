"""PyTorch reference for softmax.cpp, norm.cpp and loss.cpp: softmax, log_softmax, layer_norm
(affine and not), rms_norm (written out: torch 1.13 has no F.rms_norm), F.normalize, and
F.cross_entropy with ignore_index, label smoothing and every reduction, plus the masked-weight
variant sum(loss_i * m_i) / sum(m_i over non-ignored tokens). Every case exists in f32 and f64
("<case>." and "f64.<case>."). Each case stores inputs (in.*), the upstream gradient (gout),
torch's output (out) and the gradients of the differentiable inputs (grad.*)."""
import torch
import torch.nn.functional as F

import st


def _case(store, name, fn, inputs, const=()):
    """const: names of inputs that are not differentiated (targets, masks). Scalar out and gout
    are stored as [1]."""
    xs = {k: v.clone().requires_grad_(v.is_floating_point() and k not in const)
          for k, v in inputs.items()}
    out = fn(**xs)
    gout = torch.randn_like(out)
    out.backward(gout)
    # st.save cannot write 0-dim tensors: scalars (mean/sum losses) are stored as [1].
    store[f"{name}.out"] = out.detach().reshape(out.shape or (1,))
    store[f"{name}.gout"] = gout.reshape(out.shape or (1,))
    for k, v in xs.items():
        store[f"{name}.in.{k}"] = v.detach()
        if v.grad is not None:
            store[f"{name}.grad.{k}"] = v.grad


def _rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _masked_ce(logits, targets, mask, ignore_index=-100, label_smoothing=0.0):
    loss = F.cross_entropy(logits, targets, ignore_index=ignore_index,
                           label_smoothing=label_smoothing, reduction="none")
    counted = mask * (targets != ignore_index).to(mask.dtype)
    return (loss * mask).sum() / counted.sum()


def _cases(s, prefix, dtype, g):
    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    # softmax / log_softmax: rows of 33 (vector remainder) and 384, some -inf logits.
    x = randn(4, 7, 33) * 3
    x[0, 0, :5] = float("-inf")
    x[1, 2, 1:] = float("-inf")  # a row with a single finite logit
    for name, shape in (("small", None), ("wide", (2, 3, 384))):
        xi = x if shape is None else randn(*shape) * 3
        _case(s, f"{prefix}softmax_{name}", lambda x: torch.softmax(x, -1), {"x": xi})
        _case(s, f"{prefix}log_softmax_{name}", lambda x: torch.log_softmax(x, -1), {"x": xi})

    # Norms over C = 384 and C = 37; inputs with a non-zero mean.
    for c in (384, 37):
        xn = randn(3, 5, c) * 2 + 0.5
        w, b = randn(c), randn(c)
        _case(s, f"{prefix}layer_norm_affine_{c}",
              lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, 1e-5),
              {"x": xn, "w": w, "b": b})
        _case(s, f"{prefix}layer_norm_plain_{c}",
              lambda x: F.layer_norm(x, (x.shape[-1],), None, None, 1e-5), {"x": xn})
        _case(s, f"{prefix}rms_norm_{c}", _rms_norm, {"x": xn, "w": w})
        _case(s, f"{prefix}l2_normalize_{c}", lambda x: F.normalize(x, dim=-1, eps=1e-12),
              {"x": xn})
    # l2_normalize with eps = 0.5 and rows below it (clamped denominator).
    xs = randn(6, 9)
    xs[:3] *= 0.02
    _case(s, f"{prefix}l2_normalize_clamped", lambda x: F.normalize(x, dim=-1, eps=0.5),
          {"x": xs})

    # cross_entropy: logits [37, 259], every 4th target ignored (-100), mask in [0, 2) with a 0.
    n, v = 37, 259
    logits = randn(n, v) * 3
    targets = torch.randint(0, v, (n,), generator=g)
    targets[1::4] = -100
    mask = torch.rand(n, generator=g, dtype=torch.float64).to(dtype) * 2
    mask[0] = 0
    targets5 = targets.clone()  # ignore_index = 5, a valid class id
    targets5[targets5 == -100] = 5
    ce = {
        "ce_mean": dict(),
        "ce_sum": dict(reduction="sum"),
        "ce_none": dict(reduction="none"),
        "ce_mean_smooth": dict(label_smoothing=0.1),
        "ce_sum_smooth": dict(reduction="sum", label_smoothing=0.1),
        "ce_none_smooth": dict(reduction="none", label_smoothing=0.1),
    }
    for name, kw in ce.items():
        _case(s, prefix + name,
              lambda logits, targets, kw=kw: F.cross_entropy(logits, targets, **kw),
              {"logits": logits, "targets": targets})
    _case(s, prefix + "ce_mean_ignore5",
          lambda logits, targets: F.cross_entropy(logits, targets, ignore_index=5),
          {"logits": logits, "targets": targets5})
    _case(s, prefix + "ce_masked", _masked_ce,
          {"logits": logits, "targets": targets, "mask": mask}, const=("mask",))
    _case(s, prefix + "ce_masked_smooth",
          lambda logits, targets, mask: _masked_ce(logits, targets, mask, label_smoothing=0.1),
          {"logits": logits, "targets": targets, "mask": mask}, const=("mask",))


def generate(out_dir):
    g = torch.Generator().manual_seed(7)
    s = {}
    _cases(s, "", torch.float32, g)
    _cases(s, "f64.", torch.float64, g)
    st.save(out_dir / "norm_softmax_loss.safetensors", s)
