"""PyTorch reference for nn/vision.cpp and nn/connector.cpp, written from reference-spec 2.3, 3.3,
4.2 and 4.3 (not from open_clip, TorchScale or unilm code):

- vision_embed, vision_embed_mask: BEiT-3 VisionEmbedding. conv2d(kernel = stride = P) ->
  flatten -> [B, N, d]; optional x (1 - m) + mask_token m; cls_token prepended.
- clip, clip_plain: CLIP ViT front and back. conv2d without bias; class_embedding prepended;
  + positional_embedding (row 0 = class token); ln_pre; a parameter-free stand-in for the block
  stack (x + 0.5 tanh(x); "clip" only); ln_post on every token; "clip" also L2-normalises every
  token (KOSMOS-2).
- simple, complex: Linear; Linear(d_in, d_in) -> gelu (erf) -> Linear(d_in, d_out).
- xconnector: h = dense(x); q = latent_query broadcast over B; kv = cat([h, q], 1); plain
  multi-head attention written out (q/k/v/out Linear with biases, q scaled by head_dim^-0.5,
  softmax over keys, heads concatenated, out_proj).

Parameters and inputs are drawn in f32 and the math runs in f64 on exactly those values, so the
stored outputs and gradients are the exact answer for the stored f32 inputs (the C++ f32 run is
then judged on its own rounding only, and its f64 run to ~1e-12). Per case "<case>.":
  param.<name>  parameters under their C++ state-dict names (f32)
  in.<name>     float inputs (f32), const.<name> integer inputs (u8 masks)
  gout          the fixed random upstream gradient (f32)
  out           the output (f64)
  grad.<name>   the gradient of every parameter (grad.param.<name>) and float input (grad.in.<name>)
Metadata: "<case>.<field>" holds the module sizes."""
import torch
import torch.nn.functional as F

import st


def _lin(x, p, name):
    return F.linear(x, p[f"{name}.weight"], p[f"{name}.bias"])


def _vision_embed(p, inp, const, cfg):
    x = F.conv2d(inp["images"], p["proj.weight"], p["proj.bias"], stride=cfg["patch_size"])
    x = x.flatten(2).transpose(1, 2)  # [B, N, d]
    if "masked_positions" in const:
        m = (const["masked_positions"] != 0).to(x.dtype).unsqueeze(-1)  # [B, N, 1]
        x = x * (1 - m) + p["mask_token"] * m
    cls = p["cls_token"].expand(x.shape[0], -1, -1)
    return torch.cat([cls, x], dim=1)


def _clip(p, inp, const, cfg):
    w = cfg["width"]
    x = F.conv2d(inp["images"], p["conv1.weight"], None, stride=cfg["patch_size"])
    x = x.flatten(2).transpose(1, 2)  # [B, N, w]
    cls = p["class_embedding"].reshape(1, 1, w).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + p["positional_embedding"]
    x = F.layer_norm(x, (w,), p["ln_pre.weight"], p["ln_pre.bias"], 1e-5)
    if cfg["blocks"]:
        x = x + 0.5 * torch.tanh(x)
    x = F.layer_norm(x, (w,), p["ln_post.weight"], p["ln_post.bias"], 1e-5)
    if cfg["l2_normalize"]:
        x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return x


def _simple(p, inp, const, cfg):
    return _lin(inp["x"], p, "dense")


def _complex(p, inp, const, cfg):
    return _lin(F.gelu(_lin(inp["x"], p, "dense")), p, "predict")


def _xconnector(p, inp, const, cfg):
    h = _lin(inp["x"], p, "dense")  # [B, N, d]
    B, d, H = h.shape[0], cfg["d_out"], cfg["num_heads"]
    D = d // H
    q_in = p["latent_query"].unsqueeze(0).expand(B, -1, -1)  # [B, Q, d]
    kv = torch.cat([h, q_in], dim=1)                        # [B, N + Q, d]

    def heads(t):  # [B, T, d] -> [B, H, T, D]
        return t.reshape(B, t.shape[1], H, D).transpose(1, 2)

    q = heads(_lin(q_in, p, "x_attn.q_proj") * D ** -0.5)
    k = heads(_lin(kv, p, "x_attn.k_proj"))
    v = heads(_lin(kv, p, "x_attn.v_proj"))
    a = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v  # [B, H, Q, D]
    a = a.transpose(1, 2).reshape(B, -1, d)
    return _lin(a, p, "x_attn.out_proj")


def _params(shapes, g, scales=None):
    scales = scales or {}
    return {k: torch.randn(s, generator=g) * scales.get(k, 0.5) for k, s in shapes.items()}


def _linear_shapes(name, d_in, d_out):
    return {f"{name}.weight": (d_out, d_in), f"{name}.bias": (d_out,)}


def _case(store, meta, name, fn, params, inputs, consts, cfg, g):
    p = {k: v.double().requires_grad_(True) for k, v in params.items()}
    x = {k: v.double().requires_grad_(True) for k, v in inputs.items()}
    out = fn(p, x, consts, cfg)
    gout = torch.randn(out.shape, generator=g)
    out.backward(gout.double())
    store[f"{name}.out"] = out.detach()
    store[f"{name}.gout"] = gout
    for k, v in params.items():
        store[f"{name}.param.{k}"] = v
        store[f"{name}.grad.param.{k}"] = p[k].grad
    for k, v in inputs.items():
        store[f"{name}.in.{k}"] = v
        store[f"{name}.grad.in.{k}"] = x[k].grad
    for k, v in consts.items():
        store[f"{name}.const.{k}"] = v
    for k, v in cfg.items():
        meta[f"{name}.{k}"] = str(int(v))


def generate(out_dir):
    g = torch.Generator().manual_seed(20240611)
    store, meta = {}, {}

    # BEiT-3 vision embedding: 2 images 3x8x12 (any_image_size), patch 4 -> N = 2 * 3 = 6, d 10.
    ve = dict(img_size=8, patch_size=4, in_chans=3, embed_dim=10, any_image_size=1)
    shapes = {"proj.weight": (10, 3, 4, 4), "proj.bias": (10,), "cls_token": (1, 1, 10)}
    images = torch.randn(2, 3, 8, 12, generator=g)
    _case(store, meta, "vision_embed", _vision_embed, _params(shapes, g), {"images": images}, {},
          dict(ve, mask_token=0), g)
    shapes["mask_token"] = (1, 1, 10)
    mask = torch.tensor([[1, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0]], dtype=torch.uint8)
    _case(store, meta, "vision_embed_mask", _vision_embed, _params(shapes, g),
          {"images": torch.randn(2, 3, 8, 12, generator=g)}, {"masked_positions": mask},
          dict(ve, mask_token=1), g)

    # CLIP front/back: 2 images 3x12x12, patch 4 -> N = 9, width 16. LN affine values random so
    # that weight and bias gradients are not trivially the plain ones.
    w = 16
    shapes = {"conv1.weight": (w, 3, 4, 4), "class_embedding": (w,),
              "positional_embedding": (10, w), "ln_pre.weight": (w,), "ln_pre.bias": (w,),
              "ln_post.weight": (w,), "ln_post.bias": (w,)}
    clip = dict(image_size=12, patch_size=4, in_chans=3, width=w)
    for name, blocks, l2 in (("clip", 1, 1), ("clip_plain", 0, 0)):
        prm = _params(shapes, g)
        for ln in ("ln_pre", "ln_post"):
            prm[f"{ln}.weight"] = 1 + 0.3 * torch.randn(w, generator=g)
        _case(store, meta, name, _clip, prm, {"images": torch.randn(2, 3, 12, 12, generator=g)},
              {}, dict(clip, blocks=blocks, l2_normalize=l2), g)

    # Connectors: features [2, 5, 12] -> 20.
    x = torch.randn(2, 5, 12, generator=g)
    _case(store, meta, "simple", _simple, _params(_linear_shapes("dense", 12, 20), g), {"x": x},
          {}, dict(d_in=12, d_out=20), g)
    shapes = dict(_linear_shapes("dense", 12, 12), **_linear_shapes("predict", 12, 20))
    _case(store, meta, "complex", _complex, _params(shapes, g), {"x": x}, {},
          dict(d_in=12, d_out=20), g)

    # Resampler: features [2, 7, 12] -> 3 latent queries of width 16, 4 heads.
    shapes = dict(_linear_shapes("dense", 12, 16), latent_query=(3, 16))
    for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
        shapes.update(_linear_shapes(f"x_attn.{proj}", 16, 16))
    # Weights at the scale of a trained/initialised layer (std 1/sqrt(fan_in)) keep the
    # attention logits O(1): with std 0.5 they reach ~50 and f32 itself (torch's included) is
    # then only good to ~1e-4 on the key gradients.
    scales = {k: v[1] ** -0.5 for k, v in shapes.items() if k.endswith(".weight")}
    scales.update({k: 0.1 for k in shapes if k.endswith(".bias")}, latent_query=1.0)
    _case(store, meta, "xconnector", _xconnector, _params(shapes, g, scales),
          {"x": torch.randn(2, 7, 12, generator=g)}, {},
          dict(d_in=12, d_out=16, num_heads=4, latent_query_num=3), g)

    st.save(out_dir / "vision_connectors.safetensors", store, meta)
