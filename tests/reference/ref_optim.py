"""PyTorch reference trajectories for AdamW and SGD (10 steps, two parameter groups) and for
clip_grad_norm_. Gradients per step are stored so C++ applies exactly the same ones."""
import torch

import st


def _run(opt_name, steps=10):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(4, 3, generator=g, requires_grad=True)
    b = torch.randn(3, generator=g, requires_grad=True)
    s = {f"{opt_name}.init.w": w.detach().clone(), f"{opt_name}.init.b": b.detach().clone()}
    groups = [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}]
    if opt_name == "adamw":
        opt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    else:
        opt = torch.optim.SGD(groups, lr=5e-2, momentum=0.9)
    for step in range(steps):
        gw = torch.randn(4, 3, generator=g)
        gb = torch.randn(3, generator=g)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        s[f"{opt_name}.step{step}.gw"] = gw
        s[f"{opt_name}.step{step}.gb"] = gb
        s[f"{opt_name}.step{step}.w"] = w.detach().clone()
        s[f"{opt_name}.step{step}.b"] = b.detach().clone()
    return s


def generate(out_dir):
    s = {}
    s.update(_run("adamw"))
    s.update(_run("sgd"))
    g = torch.Generator().manual_seed(8)
    ps = [torch.zeros(5, 4, requires_grad=True), torch.zeros(7, requires_grad=True)]
    for i, p in enumerate(ps):
        p.grad = torch.randn(p.shape, generator=g) * 3
        s[f"clip.grad{i}"] = p.grad.clone()
    norm = torch.nn.utils.clip_grad_norm_(ps, 1.5)
    for i, p in enumerate(ps):
        s[f"clip.clipped{i}"] = p.grad.clone()
    s["clip.norm"] = norm.reshape(1).to(torch.float64)
    st.save(out_dir / "optim.safetensors", s)
