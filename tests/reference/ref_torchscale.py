"""PyTorch reference for TorchScale's Transformer layers and stacks (src/nn/transformer.cpp,
encoder.cpp, decoder.cpp), written from reference-spec 1.3-1.5, 2.1-2.2, 3.3 and 5 (not copied
from TorchScale): batch-first [B, T, d], TorchScale state-dict names.

Each case builds a tiny Encoder or Decoder with a fixed seed, randomises its LayerNorm affines (so
they are not the trivial 1/0 and their gradients are tested), runs one forward on fixed inputs,
and backpropagates sum(out * grad_out) for a fixed random grad_out. It writes
torchscale_<case>.safetensors with:
  state.<key>   the full state dict (buffers and tied duplicates included, as torch saves it)
  grad.<name>   the gradient of every parameter (named_parameters: a tied weight once)
  in.<name>     inputs (tokens, padding_mask, dock_mask, dock_features, encoder_out, ...)
  grad.in.<n>   gradients of differentiable inputs (dock_features, encoder_out)
  out, grad_out the output (logits, or features without an output layer) and its upstream grad
metadata: "config" (the C++ config JSON, post-processed values explicit), "kind"
("encoder"/"decoder"), "role", "other_layers", "split", "vl".
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import st

# ------------------------------------------------------------------ positions (spec 5)


def _rotate_every_two(x):
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


class XPOS(nn.Module):
    """xPos (spec 5.1) on [(B*H), L, D]; tables built in f64 and rounded once to x's dtype."""

    def __init__(self, head_dim, scale_base):
        super().__init__()
        self.head_dim, self.scale_base = head_dim, scale_base
        self.register_buffer("scale", (torch.arange(0, head_dim, 2) + 0.4 * head_dim)
                             / (1.4 * head_dim))

    def forward(self, x, offset=0, downscale=False):
        L, D = x.shape[1], x.shape[2]
        half, N = D // 2, L + offset
        min_pos = -N // 2
        zeta = (torch.arange(0, D, 2, dtype=torch.float64) + 0.4 * D) / (1.4 * D)
        scale = zeta[None] ** (torch.arange(min_pos, min_pos + N, dtype=torch.float64)[:, None]
                               / self.scale_base)
        theta = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float64) / half))
        angle = torch.arange(N, dtype=torch.float64)[:, None] * theta[None]
        sin, cos = angle.sin(), angle.cos()
        scale, sin, cos = scale[-L:], sin[-L:], cos[-L:]
        if downscale:
            scale = 1 / scale
        cos = (cos * scale).repeat_interleave(2, -1).to(x.dtype)
        sin = (sin * scale).repeat_interleave(2, -1).to(x.dtype)
        return x * cos + _rotate_every_two(x) * sin


def _bucket(n, num_buckets, max_distance):
    """T5 bidirectional bucket of n = q_pos - k_pos (spec 5.2), with PyTorch's f32 log."""
    nb = num_buckets // 2
    ret = (n < 0).long() * nb
    n = n.abs()
    max_exact = nb // 2
    large = max_exact + (torch.log(n.float().clamp(min=1) / max_exact)
                         / math.log(max_distance / max_exact) * (nb - max_exact)).long()
    large = torch.clamp(large, max=nb - 1)
    return ret + torch.where(n < max_exact, n, large)


class RelativePositionBias(nn.Module):
    def __init__(self, num_buckets, max_distance, heads):
        super().__init__()
        self.num_buckets, self.max_distance, self.heads = num_buckets, max_distance, heads
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, batch, qlen, klen, step=0):
        q = torch.arange(step, step + qlen)[:, None]
        k = torch.arange(klen)[None, :]
        b = _bucket(q - k, self.num_buckets, self.max_distance)
        v = self.relative_attention_bias(b).permute(2, 0, 1)  # [H, q, k]
        return v.unsqueeze(0).expand(batch, -1, -1, -1).reshape(batch * self.heads, qlen, klen)


class LearnedPositions(nn.Embedding):
    """TorchScale PositionalEmbedding: rows 2 .. T+1."""

    def forward(self, length):
        return self.weight[2:2 + length]


class SinusoidalPositions(nn.Module):
    """fairseq sinusoidal (spec 5.3) with the _float_tensor buffer; table in f64, rounded once."""

    def __init__(self, dim, padding_idx):
        super().__init__()
        self.dim, self.padding_idx = dim, padding_idx
        self.register_buffer("_float_tensor", torch.zeros(1))

    def forward(self, tokens):
        real = tokens.ne(self.padding_idx).long()
        pos = torch.cumsum(real, 1) * real + self.padding_idx
        half = self.dim // 2
        w = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000) / (half - 1)))
        ang = pos.double()[..., None] * w
        table = torch.cat([ang.sin(), ang.cos()], -1)
        table[pos == self.padding_idx] = 0
        return table.float()


# ------------------------------------------------------------------ multiway (spec 2.1-2.2)


class Multiway(nn.Module):
    """A / B (/ C) experts; route = (split, vl)."""

    def __init__(self, make, n):
        super().__init__()
        self.A, self.B = make(), make()
        if n == 3:
            self.C = make()

    def forward(self, x, route):
        split, vl = route
        if vl and hasattr(self, "C"):
            return self.C(x)
        T = x.size(1)
        if split < 0 or split >= T:
            return self.A(x)
        if split == 0:
            return self.B(x)
        return torch.cat([self.A(x[:, :split]), self.B(x[:, split:])], 1)


def wrap(make, n):
    return make() if n == 1 else Multiway(make, n)


def call(m, x, route):
    return m(x, route) if isinstance(m, Multiway) else m(x)


# ------------------------------------------------------------------ components (spec 1.3)


class MultiheadAttention(nn.Module):
    def __init__(self, d, heads, experts, subln, self_attention, xpos_base, eps):
        super().__init__()
        self.d, self.h, self.hd = d, heads, d // heads
        self.scaling = self.hd ** -0.5
        lin = lambda: nn.Linear(d, d, bias=True)
        self.k_proj, self.v_proj = wrap(lin, experts), wrap(lin, experts)
        self.q_proj, self.out_proj = wrap(lin, experts), wrap(lin, experts)
        self.inner_attn_ln = (wrap(lambda: nn.LayerNorm(d, eps=eps), experts)
                              if subln and self_attention else None)
        self.xpos = XPOS(self.hd, xpos_base) if xpos_base and self_attention else None

    def forward(self, query, kv, route, causal=False, key_padding_mask=None, rel_pos=None):
        B, Tq, _ = query.shape
        Tk = kv.size(1)
        q = call(self.q_proj, query, route) * self.scaling
        k, v = call(self.k_proj, kv, route), call(self.v_proj, kv, route)
        heads = lambda t: t.view(B, t.size(1), self.h, self.hd).transpose(1, 2).reshape(
            B * self.h, t.size(1), self.hd)
        q, k, v = heads(q), heads(k), heads(v)
        if self.xpos is not None:
            q, k = self.xpos(q, 0, False), self.xpos(k, 0, True)
        w = torch.bmm(q, k.transpose(1, 2))
        if causal:
            mask = torch.triu(torch.full((Tq, Tk), float("-inf")), 1)
            w = torch.nan_to_num(w) + mask
        if key_padding_mask is not None:
            w = w.view(B, self.h, Tq, Tk).masked_fill(
                key_padding_mask[:, None, None, :].bool(), float("-inf")).view(B * self.h, Tq, Tk)
        if rel_pos is not None:
            w = w + rel_pos.view(w.shape)
        p = torch.softmax(w.float(), -1).type_as(w)
        a = torch.bmm(p, v).view(B, self.h, Tq, self.hd).transpose(1, 2).reshape(B, Tq, self.d)
        if self.inner_attn_ln is not None:
            a = call(self.inner_attn_ln, a, route)
        return call(self.out_proj, a, route)


class FeedForwardNetwork(nn.Module):
    def __init__(self, d, ffn, act, subln, eps):
        super().__init__()
        self.act = act
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.ffn_layernorm = nn.LayerNorm(ffn, eps=eps) if subln else None

    def forward(self, x):
        h = self.fc1(x)
        fn = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu}[self.act]
        h = fn(h.float()).type_as(h)
        if self.ffn_layernorm is not None:
            h = self.ffn_layernorm(h)
        return self.fc2(h)


class Layer(nn.Module):
    """EncoderLayer / DecoderLayer: residual; [LN_pre]; sublayer; x = residual*alpha + x;
    [LN_post]; self-attn -> (cross-attn) -> FFN."""

    def __init__(self, o):
        super().__init__()
        self.o = o
        d, eps = o["d"], o["eps"]
        ln = lambda: nn.LayerNorm(d, eps=eps)
        self.self_attn = MultiheadAttention(d, o["heads"], o["attn_experts"], o["subln"], True,
                                            o["xpos"], eps)
        self.self_attn_layer_norm = wrap(ln, o["attn_ln_experts"])
        if o["cross"]:
            self.encoder_attn = MultiheadAttention(d, o["heads"], o["attn_experts"], o["subln"],
                                                   False, None, eps)
            self.encoder_attn_layer_norm = ln()
        self.ffn = wrap(lambda: FeedForwardNetwork(d, o["ffn"], o["act"], o["subln"], eps),
                        o["ffn_experts"])
        self.final_layer_norm = wrap(ln, o["ffn_experts"])
        if o["layer_scale"] > 0:
            self.gamma_1 = nn.Parameter(torch.full((d,), o["layer_scale"]))
            self.gamma_2 = nn.Parameter(torch.full((d,), o["layer_scale"]))

    def forward(self, x, route, causal, kpm, rel, enc=None, enc_kpm=None, cross_rel=None):
        pre, alpha = self.o["pre"], self.o["alpha"]
        ls = self.o["layer_scale"] > 0
        residual = x
        if pre:
            x = call(self.self_attn_layer_norm, x, route)
        x = self.self_attn(x, x, route, causal, kpm, rel)
        if ls:
            x = x * self.gamma_1
        x = residual * alpha + x
        if not pre:
            x = call(self.self_attn_layer_norm, x, route)
        if self.o["cross"]:
            residual = x
            if pre:
                x = self.encoder_attn_layer_norm(x)
            x = self.encoder_attn(x, enc, route, False, enc_kpm, cross_rel)
            x = residual * alpha + x
            if not pre:
                x = self.encoder_attn_layer_norm(x)
        residual = x
        if pre:
            x = call(self.final_layer_norm, x, route)
        x = call(self.ffn, x, route)
        if ls:
            x = x * self.gamma_2
        x = residual * alpha + x
        if not pre:
            x = call(self.final_layer_norm, x, route)
        return x


# ------------------------------------------------------------------ stacks


def _alpha(cfg, kind, role, other):
    if not cfg["deepnorm"]:
        return 1.0
    if kind == "encoder":
        N = cfg["encoder_layers"]
        return 0.81 * (N ** 4 * other) ** (1 / 16) if role == "encdec_encoder" else (2 * N) ** 0.25
    M = cfg["decoder_layers"]
    return (3 * M) ** 0.25 if role == "encdec_decoder" else (2 * M) ** 0.25


class Stack(nn.Module):
    """TorchScale Encoder (kind "encoder") or Decoder (kind "decoder")."""

    def __init__(self, cfg, kind, role, other):
        super().__init__()
        enc = kind == "encoder"
        p = "encoder_" if enc else "decoder_"
        d, L, eps = cfg[p + "embed_dim"], cfg[p + "layers"], cfg["layernorm_eps"]
        self.cfg, self.kind, self.d = cfg, kind, d
        multiway = cfg["multiway"]
        stack_experts = 2 if enc and multiway else 1
        self.embed_scale = 1.0 if cfg["no_scale_embedding"] else math.sqrt(d)
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], d, padding_idx=cfg["padding_idx"])
        with torch.no_grad():  # TextEmbedding: N(0, d^-0.5), pad row zero
            self.embed_tokens.weight.normal_(0, d ** -0.5)
            self.embed_tokens.weight[cfg["padding_idx"]] = 0
        maxpos = cfg["max_source_positions" if enc else "max_target_positions"]
        if cfg["positions"] == "learned":
            self.embed_positions = LearnedPositions(maxpos + 2, d)
        elif cfg["positions"] == "sinusoidal":
            self.embed_positions = SinusoidalPositions(d, cfg["padding_idx"])
        else:
            self.embed_positions = None
        self.layernorm_embedding = (wrap(lambda: nn.LayerNorm(d, eps=eps), stack_experts)
                                    if cfg["layernorm_embedding"] else None)
        layers = []
        for i in range(L):
            o = dict(d=d, heads=cfg[p + "attention_heads"], ffn=cfg[p + "ffn_embed_dim"],
                     act=cfg["activation_fn"], subln=cfg["subln"], eps=eps,
                     pre=cfg[p + "normalize_before"], alpha=_alpha(cfg, kind, role, other),
                     xpos=cfg["xpos_scale_base"] if cfg["xpos_rel_pos"] else None,
                     cross=role == "encdec_decoder", attn_experts=1, attn_ln_experts=1,
                     ffn_experts=1, layer_scale=cfg.get("layer_scale_init", 0.0))
            if multiway:
                shared = cfg.get("multiway_shared_attention", False)
                o["attn_experts"] = 1 if enc and shared else 2
                if enc:
                    o["attn_ln_experts"] = 1 if shared else 2
                    vl = cfg.get("multiway_vl_layers", 0)
                    o["ffn_experts"] = 3 if vl > 0 and i >= L - vl else 2
            layers.append(Layer(o))
        self.layers = nn.ModuleList(layers)
        final = (cfg[p + "normalize_before"] and cfg["normalize_output"]) if enc else \
            cfg[p + "normalize_before"]
        self.layer_norm = wrap(lambda: nn.LayerNorm(d, eps=eps), stack_experts) if final else None
        heads = cfg[p + "attention_heads"]
        has_rel = cfg["rel_pos_buckets"] > 0 and cfg["max_rel_pos"] > 0
        rp = lambda: RelativePositionBias(cfg["rel_pos_buckets"], cfg["max_rel_pos"], heads)
        if has_rel:
            if enc:
                self.relative_position = rp()
            else:
                self.self_attn_relative_position = rp()
                if role == "encdec_decoder":
                    self.cross_attn_relative_position = rp()
        self.has_rel = has_rel
        self.output_projection = None
        if not cfg["no_output_layer"] and cfg["vocab_size"] > 0:
            self.output_projection = nn.Linear(d, cfg["vocab_size"], bias=False)
            if cfg["share_" + p + "input_output_embed"]:
                self.output_projection.weight = self.embed_tokens.weight

    def forward(self, tokens, route=(-1, False), padding_mask=None, dock_mask=None,
                dock_features=None, enc=None, enc_kpm=None, features_only=False):
        B, T = tokens.shape
        emb = self.embed_tokens(tokens)
        if dock_mask is not None:
            emb = emb.clone()
            # row-major overwrite, before scale/positions; .to: bf16 features under autocast
            emb[dock_mask.bool()] = dock_features.to(emb.dtype)
        x = self.embed_scale * emb
        if isinstance(self.embed_positions, LearnedPositions):
            x = x + self.embed_positions(T)
        elif self.embed_positions is not None:
            x = x + self.embed_positions(tokens)
        if self.layernorm_embedding is not None:
            x = call(self.layernorm_embedding, x, route)
        encoder = self.kind == "encoder"
        if encoder and padding_mask is not None:
            x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        rel = cross_rel = None
        if self.has_rel:
            if encoder:
                rel = self.relative_position(B, T, T)
            else:
                rel = self.self_attn_relative_position(B, T, T)
                if enc is not None:
                    cross_rel = self.cross_attn_relative_position(B, T, enc.size(1))
        for layer in self.layers:
            x = layer(x, route, not encoder, padding_mask if encoder else None, rel, enc,
                      enc_kpm, cross_rel)
        if self.layer_norm is not None:
            x = call(self.layer_norm, x, route)
        if features_only or self.output_projection is None:
            return x
        return self.output_projection(x)


# ------------------------------------------------------------------ cases

_BASE = dict(activation_fn="gelu", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
             drop_path_rate=0.0, no_scale_embedding=True, layernorm_embedding=False,
             rel_pos_buckets=0, max_rel_pos=0, deepnorm=False, subln=True, bert_init=False,
             multiway=False, no_output_layer=False, layernorm_eps=1e-5, vocab_size=40,
             xpos_rel_pos=False, xpos_scale_base=512, positions="learned", padding_idx=1)


def _dec(**kw):
    c = dict(_BASE, model_type="decoder", decoder_embed_dim=32, decoder_attention_heads=4,
             decoder_ffn_embed_dim=64, decoder_layers=2, decoder_normalize_before=True,
             share_decoder_input_output_embed=False, max_target_positions=64)
    c.update(kw)
    return c


def _enc(**kw):
    c = dict(_BASE, model_type="encoder", encoder_embed_dim=32, encoder_attention_heads=4,
             encoder_ffn_embed_dim=64, encoder_layers=2, encoder_normalize_before=True,
             normalize_output=True, share_encoder_input_output_embed=False,
             max_source_positions=64)
    c.update(kw)
    return c


_POSTLN = dict(subln=False, deepnorm=False)
_DEEP = dict(subln=False, deepnorm=True)

# name: (config, role, other_layers, options)
CASES = {
    "dec_preln": (_dec(subln=False), "decoder_only", 0, {}),
    "dec_postln": (_dec(decoder_normalize_before=False, **_POSTLN), "decoder_only", 0, {}),
    "dec_deepnorm": (_dec(decoder_normalize_before=False, **_DEEP), "decoder_only", 0, {}),
    "dec_subln_sinusoidal_tied": (_dec(positions="sinusoidal", no_scale_embedding=False,
                                       share_decoder_input_output_embed=True), "decoder_only", 0,
                                  {"pad": True}),
    "dec_xpos": (_dec(positions="none", xpos_rel_pos=True, xpos_scale_base=16), "decoder_only", 0,
                 {}),
    "dec_relbias": (_dec(rel_pos_buckets=16, max_rel_pos=24, layernorm_embedding=True),
                    "decoder_only", 0, {}),
    "dec_dock": (_dec(no_scale_embedding=False, multiway=True), "decoder_only", 0,
                 {"dock": True}),
    "dec_cross_deepnorm": (_dec(decoder_normalize_before=False, rel_pos_buckets=16,
                                max_rel_pos=24, **_DEEP), "encdec_decoder", 3, {"cross": True}),
    "dec_cross_subln": (_dec(), "encdec_decoder", 3, {"cross": True}),
    "enc_preln": (_enc(subln=False), "encoder_only", 0, {"pad": True}),
    "enc_postln": (_enc(encoder_normalize_before=False, **_POSTLN), "encoder_only", 0,
                   {"pad": True}),
    "enc_deepnorm": (_enc(encoder_normalize_before=False, **_DEEP), "encoder_only", 0, {}),
    "enc_subln_relbias": (_enc(rel_pos_buckets=16, max_rel_pos=24, positions="sinusoidal"),
                          "encoder_only", 0, {"pad": True}),
    "enc_xpos_dock": (_enc(positions="none", xpos_rel_pos=True, no_scale_embedding=False),
                      "encoder_only", 0, {"dock": True}),
    "enc_multiway_split_a": (_enc(multiway=True, layernorm_embedding=True), "encoder_only", 0,
                             {"split": -1}),
    "enc_multiway_split_b": (_enc(multiway=True, layernorm_embedding=True), "encoder_only", 0,
                             {"split": 0}),
    "enc_multiway_split_p": (_enc(multiway=True, layernorm_embedding=True), "encoder_only", 0,
                             {"split": 5, "pad": True}),
    "enc_multiway_paper_vl": (_enc(multiway=True, multiway_shared_attention=True,
                                   multiway_vl_layers=1, layer_scale_init=0.1),
                              "encoder_only", 0, {"split": 5, "vl": True}),
    "enc_multiway_paper_split": (_enc(multiway=True, multiway_shared_attention=True,
                                      multiway_vl_layers=1), "encoder_only", 0, {"split": 5}),
    "dec_stack4": (_dec(decoder_layers=4, rel_pos_buckets=32, max_rel_pos=64, xpos_rel_pos=True,
                        xpos_scale_base=64, no_scale_embedding=False, layernorm_embedding=True),
                   "decoder_only", 0, {"T": 16, "dock": True}),
}


def _randomise_norms(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "_ln" in name:
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def _run_case(out_dir, name, cfg, role, other, opt):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    torch.manual_seed(sum(map(ord, name)))
    kind = cfg["model_type"]
    model = Stack(cfg, kind, role, other)
    _randomise_norms(model, gen)
    B, T = 2, opt.get("T", 9)
    d = model.d
    tokens = torch.randint(3, cfg["vocab_size"], (B, T), generator=gen)
    tensors = {"in.tokens": tokens}
    kw = {}
    if opt.get("pad"):
        # right padding in row 1 (left padding + causal gives all -inf rows, spec quirk)
        tokens[1, -3:] = cfg["padding_idx"]
        if kind == "encoder":
            pm = (tokens == cfg["padding_idx"]).to(torch.uint8)
            kw["padding_mask"] = pm
            tensors["in.padding_mask"] = pm
    if opt.get("dock"):
        dm = torch.zeros(B, T, dtype=torch.uint8)
        dm[0, 2:5] = 1
        dm[1, 1:3] = 1
        feats = torch.randn(int(dm.sum()), d, generator=gen).requires_grad_()
        kw.update(dock_mask=dm, dock_features=feats)
        tensors.update({"in.dock_mask": dm, "in.dock_features": feats})
    if opt.get("cross"):
        S = 7
        eo = torch.randn(B, S, d, generator=gen).requires_grad_()
        ekpm = torch.zeros(B, S, dtype=torch.uint8)
        ekpm[1, -2:] = 1
        kw.update(enc=eo, enc_kpm=ekpm)
        tensors.update({"in.encoder_out": eo, "in.encoder_padding": ekpm})
    split, vl = opt.get("split", -1), opt.get("vl", False)
    out = model(tokens, route=(split, vl), **kw)
    grad_out = torch.randn(out.shape, generator=gen)
    (out * grad_out).sum().backward()
    for k, v in model.state_dict().items():
        tensors["state." + k] = v
    for k, p in model.named_parameters():
        tensors["grad." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
    for k in ("dock_features", "enc"):
        if k in kw:
            tensors["grad.in." + ("encoder_out" if k == "enc" else k)] = kw[k].grad
    tensors["out"] = out
    tensors["grad_out"] = grad_out
    meta = {"config": json.dumps(cfg), "kind": kind, "role": role, "other_layers": str(other),
            "split": str(split), "vl": "1" if vl else "0"}
    st.save(str(out_dir / f"torchscale_{name}.safetensors"), tensors, meta)


def generate(out_dir):
    for name, (cfg, role, other, opt) in CASES.items():
        _run_case(out_dir, name, cfg, role, other, opt)
    with open(out_dir / "torchscale_cases.txt", "w") as f:
        f.write("\n".join(CASES) + "\n")
