// MultiheadAttention: projections (multiway-routed), head split as views, xPos, the fused
// attention op with the scaling passed in (TorchScale scales q before q kᵀ: same math) and the
// probability dropout in training, inner LayerNorm, output projection.
#include "metalm/nn/attention.h"

#include <cmath>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/index.h"
#include "metalm/nn/init.h"
#include "metalm/ops/matmul.h"

namespace metalm::nn {

// ------------------------------------------------------------------ KVCache

KVCache::KVCache(int64_t batch, int64_t heads, int64_t capacity, int64_t head_dim, DType dtype)
    : capacity_(capacity) {
  MLM_CHECK(batch > 0 && heads > 0 && capacity > 0 && head_dim > 0, ValueError,
            "[KVCache] sizes must be positive");
  k_ = Tensor::zeros({batch, heads, capacity, head_dim}, dtype);
  v_ = Tensor::zeros({batch, heads, capacity, head_dim}, dtype);
}

void KVCache::append(const Tensor& k, const Tensor& v) {
  MLM_CHECK(k.dim() == 4 && k.shape() == v.shape() && k.size(0) == k_.size(0) &&
                k.size(1) == k_.size(1) && k.size(3) == k_.size(3),
            ShapeError, "[KVCache] append expects [B, H, t, D] matching ", k_.str(), ", got ",
            k.str(), " and ", v.str());
  const int64_t t = k.size(2);
  MLM_CHECK(length_ + t <= capacity_, ValueError, "[KVCache] capacity ", capacity_,
            " exceeded: holding ", length_, ", appending ", t);
  copy_into(k_.slice(2, length_, length_ + t), k.detach());
  copy_into(v_.slice(2, length_, length_ + t), v.detach());
  length_ += t;
}

void KVCache::select_rows(const std::vector<int64_t>& rows) {
  const Tensor index = Tensor::from_vector<int64_t>({static_cast<int64_t>(rows.size())}, rows);
  k_ = ops::gather_rows(k_, index);
  v_ = ops::gather_rows(v_, index);
}

Tensor KVCache::keys() const { return k_.slice(2, 0, length_); }
Tensor KVCache::values() const { return v_.slice(2, 0, length_); }

void KVCache::truncate(int64_t length) {
  MLM_CHECK(length >= 0 && length <= length_, ValueError, "[KVCache] cannot truncate ", length_,
            " entries to ", length);
  length_ = length;
}

// ------------------------------------------------------------------ MultiheadAttention

namespace {

// torch.nn.init.xavier_uniform_ on a [out, in] weight.
void xavier_uniform(Linear& l, double gain, Generator& gen) {
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(l.in_features + l.out_features));
  init_uniform(l.weight, gen, -bound, bound);
}

}  // namespace

MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& o, Generator& gen)
    : options(o), dropout_gen_(register_generator("dropout", Generator::hash(gen.seed(), gen.reserve(1)))) {
  MLM_CHECK(o.embed_dim > 0 && o.num_heads > 0 && o.embed_dim % o.num_heads == 0, ValueError,
            "[MultiheadAttention] embed_dim ", o.embed_dim, " must be a positive multiple of ",
            "num_heads ", o.num_heads);
  MLM_CHECK(!(o.xpos && !o.self_attention), ValueError,
            "[MultiheadAttention] xPos applies to self-attention only");
  head_dim = o.embed_dim / o.num_heads;
  const int64_t kdim = o.kdim > 0 ? o.kdim : o.embed_dim, vdim = o.vdim > 0 ? o.vdim : o.embed_dim;
  const double gain = 1.0 / std::sqrt(2.0);
  auto proj = [&](int64_t in, double g, bool zero_bias) {
    return [&, in, g, zero_bias] {
      auto l = std::make_shared<Linear>(in, o.embed_dim, true, gen);
      xavier_uniform(*l, g, gen);
      if (zero_bias) init_zeros(l->bias, gen);
      return l;
    };
  };
  // Registration order follows TorchScale's constructor: k, v, q, out (state-dict order).
  k_proj.build(*this, "k_proj", o.experts, proj(kdim, gain, false));
  v_proj.build(*this, "v_proj", o.experts, proj(vdim, gain, false));
  q_proj.build(*this, "q_proj", o.experts, proj(o.embed_dim, gain, false));
  out_proj.build(*this, "out_proj", o.experts, proj(o.embed_dim, 1.0, true));
  if (o.subln && o.self_attention)
    inner_attn_ln.build(*this, "inner_attn_ln", o.experts,
                        [&] { return std::make_shared<LayerNorm>(o.embed_dim, o.layernorm_eps); });
  if (o.xpos)
    xpos = register_module("xpos",
                           std::make_shared<XPos>(head_dim, static_cast<double>(o.xpos_scale_base)));
}

Tensor MultiheadAttention::forward(const Tensor& query, const Tensor& key_value,
                                   const AttentionInputs& in) {
  MLM_CHECK(query.dim() == 3 && query.size(2) == options.embed_dim, ShapeError,
            "[MultiheadAttention] query must be [B, T, ", options.embed_dim, "], got ",
            query.str());
  const bool self = !key_value.defined();
  MLM_CHECK(self == options.self_attention, ValueError, "[MultiheadAttention] built for ",
            options.self_attention ? "self" : "cross", "-attention but called for ",
            self ? "self" : "cross", "-attention");
  const Tensor& kv_in = self ? query : key_value;
  const int64_t B = query.size(0), Tq = query.size(1), H = options.num_heads, D = head_dim;
  auto lin = [](Linear& l, const Tensor& x) { return l.forward(x); };
  auto heads = [&](const Tensor& x) {  // [B, T, H*D] -> [B, H, T, D] view
    return x.reshape({B, x.size(1), H, D}).permute({0, 2, 1, 3});
  };
  Tensor q, k, v;
  if (!self && in.cache && in.cache->length() > 0) {  // cross-attention: static keys/values
    MLM_CHECK(in.cache->length() == kv_in.size(1), ShapeError,
              "[MultiheadAttention] cached cross-attention keys hold ", in.cache->length(),
              " positions, key_value has ", kv_in.size(1));
    q = heads(q_proj.apply(query, in.route, lin));
    k = in.cache->keys();
    v = in.cache->values();
  } else {
    if (q_proj.count() == 1) {  // no multiway routing: projections of one input together
      auto w = [](const Experts<Linear>& e) { return e.only().weight; };
      auto b = [](const Experts<Linear>& e) { return e.only().bias; };
      if (self) {
        std::vector<Tensor> qkv = ops::linears(query, {w(q_proj), w(k_proj), w(v_proj)},
                                               {b(q_proj), b(k_proj), b(v_proj)});
        q = qkv[0], k = qkv[1], v = qkv[2];
      } else {
        std::vector<Tensor> kv =
            ops::linears(kv_in, {w(k_proj), w(v_proj)}, {b(k_proj), b(v_proj)});
        q = q_proj.only().forward(query), k = kv[0], v = kv[1];
      }
    } else {
      q = q_proj.apply(query, in.route, lin);
      k = k_proj.apply(kv_in, in.route, lin);
      v = v_proj.apply(kv_in, in.route, lin);
    }
    q = heads(q);
    k = heads(k);
    v = heads(v);
    if (!self && in.cache) in.cache->append(k, v);  // the static keys/values, for later steps
  }

  // With a self-attention cache, the new queries sit at positions q_offset .. q_offset + Tq - 1:
  // xPos rotates them from there, and the mask op gets the same offset (Tk - Tq) below.
  int64_t q_offset = 0;
  if (self && in.cache) {
    q_offset = in.cache->length();
    in.cache->append(k, v);
    k = in.cache->keys();
    v = in.cache->values();
  }
  const int64_t Tk = k.size(2);
  if (xpos) {
    q = xpos->forward(q, q_offset, false);
    k = xpos->forward(k, 0, true);  // the whole cache, re-rotated every step (spec 1.3)
  }
  static const ops::AttentionMask kFull;
  const ops::AttentionMask& mask = in.mask ? *in.mask : kFull;
  MLM_CHECK(mask.kind == ops::AttnMaskKind::full || mask.q_offset == q_offset, ValueError,
            "[MultiheadAttention] the mask puts the queries at position ", mask.q_offset,
            " but the cache holds ", q_offset, " earlier keys");
  ops::AttentionDropout dropout;
  if (is_training() && options.dropout > 0) {  // one counter per probability [B, H, Tq, Tk]
    dropout.p = options.dropout;
    dropout.seed = dropout_gen_.seed();
    dropout.counter = dropout_gen_.reserve(static_cast<uint64_t>(B * H * Tq * Tk));
  }
  Tensor a = ops::attention(q, k, v, mask, 1.0 / std::sqrt(static_cast<double>(D)), dropout);
  a = a.permute({0, 2, 1, 3}).reshape({B, Tq, H * D});
  if (inner_attn_ln.defined())
    a = inner_attn_ln.apply(a, in.route,
                            [](LayerNorm& ln, const Tensor& x) { return ln.forward(x); });
  return out_proj.apply(a, in.route, lin);
}

}  // namespace metalm::nn
