// The attention op's plain reference path (DESIGN D5, STYLE: the spec that stays forever): the
// full [Tq, Tk] scores of one (b, h) in f64, in the order of torchscale's MultiheadAttention
// (reference-spec 1.3): scale q, q k^T, masked -> -inf, + bias, softmax, dropout, . v. Its
// backward works from the saved probabilities. The test oracle of the fast path (attention.cpp),
// and what attention() runs under ops::ReferenceGuard. Also the argument checks.
#include <cmath>
#include <limits>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "ops/attention_spec.h"

namespace metalm::ops {
namespace attn {

Geometry check_args(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& m,
                    double scale) {
  MLM_CHECK(q.defined() && k.defined() && v.defined(), ValueError,
            "[attention] q, k and v must all be defined");
  for (const Tensor* t : {&q, &k, &v})
    MLM_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::f64, DTypeError,
              "[attention] expected f32 or f64 q, k, v, got q ", q.str(), ", k ", k.str(), ", v ",
              v.str());
  MLM_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), DTypeError,
            "[attention] q, k, v dtypes differ: q ", q.str(), ", k ", k.str(), ", v ", v.str());
  MLM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, ShapeError,
            "[attention] q, k, v must be [B, H, T, D], got q ", q.str(), ", k ", k.str(), ", v ",
            v.str());
  Geometry g;
  g.B = q.size(0);
  g.H = q.size(1);
  g.Tq = q.size(2);
  g.D = q.size(3);
  g.Tk = k.size(2);
  MLM_CHECK(k.size(0) == g.B && v.size(0) == g.B && k.size(1) == g.H && v.size(1) == g.H,
            ShapeError, "[attention] batch and head dims differ: q ", q.str(), ", k ", k.str(),
            ", v ", v.str());
  MLM_CHECK(k.size(3) == g.D && v.size(3) == g.D, ShapeError,
            "[attention] head dims differ: q ", q.str(), ", k ", k.str(), ", v ", v.str());
  MLM_CHECK(v.size(2) == g.Tk, ShapeError, "[attention] k and v lengths differ: k ", k.str(),
            ", v ", v.str());
  MLM_CHECK(g.D >= 1, ShapeError, "[attention] head dim must be >= 1, got q ", q.str());
  MLM_CHECK(std::isfinite(scale), ValueError, "[attention] scale must be finite, got ", scale);
  g.scale = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(g.D));

  const AttnMaskKind kind = m.kind;
  MLM_CHECK(kind == AttnMaskKind::full || kind == AttnMaskKind::causal ||
                kind == AttnMaskKind::prefix || is_segment_kind(kind),
            ValueError, "[attention] unknown mask kind ", static_cast<int>(kind));
  MLM_CHECK(m.q_offset >= 0, ValueError, "[attention] q_offset must be >= 0, got ", m.q_offset);
  if (kind != AttnMaskKind::full)
    MLM_CHECK(m.q_offset + g.Tq <= g.Tk, ValueError, "[attention] ", kind_name(kind),
              " mask needs q_offset + Tq <= Tk (queries are the last keys), got q_offset ",
              m.q_offset, ", Tq ", g.Tq, ", Tk ", g.Tk);
  if (kind == AttnMaskKind::prefix)
    MLM_CHECK(m.prefix_len >= 0 && m.prefix_len <= g.Tk, ValueError,
              "[attention] prefix_len must be in [0, Tk = ", g.Tk, "], got ", m.prefix_len);
  else
    MLM_CHECK(m.prefix_len == 0, ValueError, "[attention] prefix_len ", m.prefix_len,
              " is only used by the prefix mask kind, got kind ", kind_name(kind));

  if (m.key_padding.defined()) {
    MLM_CHECK(m.key_padding.dtype() == DType::u8, DTypeError,
              "[attention] key_padding must be u8 [B, Tk], got ", m.key_padding.str());
    MLM_CHECK(m.key_padding.shape() == Shape({g.B, g.Tk}), ShapeError,
              "[attention] key_padding must be [B, Tk] = [", g.B, ", ", g.Tk, "], got ",
              m.key_padding.str());
  }
  if (is_segment_kind(kind)) {
    MLM_CHECK(m.segment_ids.defined(), ValueError, "[attention] ", kind_name(kind),
              " mask needs segment_ids i32 [B, Tk]");
    MLM_CHECK(m.segment_ids.dtype() == DType::i32, DTypeError,
              "[attention] segment_ids must be i32 [B, Tk], got ", m.segment_ids.str());
    MLM_CHECK(m.segment_ids.shape() == Shape({g.B, g.Tk}), ShapeError,
              "[attention] segment_ids must be [B, Tk] = [", g.B, ", ", g.Tk, "], got ",
              m.segment_ids.str());
  } else {
    MLM_CHECK(!m.segment_ids.defined(), ValueError, "[attention] segment_ids given for the ",
              kind_name(kind), " mask kind (only segment kinds use them)");
  }
  if (m.bias.defined()) {
    const Tensor& b = m.bias;
    MLM_CHECK(b.dtype() == q.dtype(), DTypeError, "[attention] bias dtype must match q (",
              dtype_name(q.dtype()), "), got ", b.str());
    MLM_CHECK(b.dim() == 4 && (b.size(0) == g.B || b.size(0) == 1) &&
                  (b.size(1) == g.H || b.size(1) == 1) && b.size(2) == g.Tq && b.size(3) == g.Tk,
              ShapeError, "[attention] bias must be [B or 1, H or 1, Tq, Tk] = [", g.B, ", ", g.H,
              ", ", g.Tq, ", ", g.Tk, "], got ", b.str());
  }
  return g;
}

void check_dropout(const AttentionDropout& d) {
  MLM_CHECK(d.p >= 0.0 && d.p < 1.0, ValueError, "[attention] dropout p must be in [0, 1), got ",
            d.p);  // written so that NaN fails too
}

}  // namespace attn

namespace {

using attn::DropoutSpec;
using attn::Geometry;
using attn::MaskSpec;

// Dense per-(b, h) loops in f64. q, k, v: [B, H, T*, D] -> out [B, H, Tq, D] (dtype of q);
// p: f64 [B, H, Tq, Tk], the probabilities, saved for backward; with dropout, f: f64
// [B, H, Tq, Tk], the dropout factor of each probability (0 or 1/(1-p)), also saved.
Tensor reference_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                         const MaskSpec& mask, const DropoutSpec& drop, const Geometry& g,
                         Tensor* p_out, Tensor* f_out) {
  const int64_t B = g.B, H = g.H, Tq = g.Tq, Tk = g.Tk, D = g.D;
  const std::vector<double> qv = q.detach().to_vector<double>();
  const std::vector<double> kv = k.detach().to_vector<double>();
  const std::vector<double> vv = v.detach().to_vector<double>();
  std::vector<double> bv;
  if (bias.defined()) bv = bias.detach().to_vector<double>();
  std::vector<double> out(static_cast<size_t>(B * H * Tq * D), 0.0);
  std::vector<double> p(static_cast<size_t>(B * H * Tq * Tk), 0.0);
  std::vector<double> f(drop.on ? p.size() : 0, 0.0);
  const double drop_scale = drop.scale<double>();
  std::vector<double> s(static_cast<size_t>(Tk));
  const double neg_inf = -std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t bh = b * H + h;
      const double* qh = qv.data() + bh * Tq * D;
      const double* kh = kv.data() + bh * Tk * D;
      const double* vh = vv.data() + bh * Tk * D;
      const double* bias_h = nullptr;
      if (bias.defined())
        bias_h = bv.data() + ((bias.size(0) == 1 ? 0 : b) * bias.size(1) +
                              (bias.size(1) == 1 ? 0 : h)) * Tq * Tk;
      for (int64_t i = 0; i < Tq; ++i) {
        double mx = neg_inf;
        for (int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qh[i * D + d] * g.scale * kh[j * D + d];
          s[j] = mask.visible(b, i, j) ? dot : neg_inf;
          if (bias_h) s[j] += bias_h[i * Tk + j];
          mx = std::max(mx, s[j]);
        }
        double* pi = p.data() + (bh * Tq + i) * Tk;
        if (mx == neg_inf) continue;  // no visible key: probabilities and output stay zero
        double sum = 0;
        for (int64_t j = 0; j < Tk; ++j) sum += (pi[j] = std::exp(s[j] - mx));
        for (int64_t j = 0; j < Tk; ++j) pi[j] /= sum;
        double* fi = drop.on ? f.data() + (bh * Tq + i) * Tk : nullptr;
        if (fi)
          for (int64_t j = 0; j < Tk; ++j) fi[j] = drop.keep(b, h, i, j) ? drop_scale : 0.0;
        double* oi = out.data() + (bh * Tq + i) * D;
        for (int64_t j = 0; j < Tk; ++j) {
          const double pj = fi ? pi[j] * fi[j] : pi[j];
          for (int64_t d = 0; d < D; ++d) oi[d] += pj * vh[j * D + d];
        }
      }
    }
  *p_out = Tensor::from_vector<double>({B, H, Tq, Tk}, p);
  if (drop.on) *f_out = Tensor::from_vector<double>({B, H, Tq, Tk}, f);
  return Tensor::from_vector<double>({B, H, Tq, D}, out).to(q.dtype());
}

// From the saved probabilities p (and dropout factors f, 1 without dropout): dP = f (dO v^T),
// dS = p * (dP - rowsum(dP * p)), then dq = scale dS k, dk = dS^T (q scale), dv = (p f)^T dO,
// dbias = dS summed over broadcast dims.
std::vector<Tensor> reference_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const Tensor& bias, const Tensor& p_saved,
                                       const Tensor& f_saved, const Geometry& g,
                                       const std::vector<bool>& needs) {
  const int64_t B = g.B, H = g.H, Tq = g.Tq, Tk = g.Tk, D = g.D;
  const std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>();
  const std::vector<double> vv = v.to_vector<double>(), gv = grad_out.to_vector<double>();
  const double* p = p_saved.data<double>();  // contiguous f64, made by reference_forward
  const double* f = f_saved.defined() ? f_saved.data<double>() : nullptr;
  std::vector<double> dq(qv.size(), 0.0), dk(kv.size(), 0.0), dv(vv.size(), 0.0);
  std::vector<double> dbias(bias.defined() ? static_cast<size_t>(bias.numel()) : 0, 0.0);
  std::vector<double> ds(static_cast<size_t>(Tk));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t bh = b * H + h;
      double* dbias_h = nullptr;
      if (bias.defined())
        dbias_h = dbias.data() + ((bias.size(0) == 1 ? 0 : b) * bias.size(1) +
                                  (bias.size(1) == 1 ? 0 : h)) * Tq * Tk;
      for (int64_t i = 0; i < Tq; ++i) {
        const double* pi = p + (bh * Tq + i) * Tk;
        const double* fi = f ? f + (bh * Tq + i) * Tk : nullptr;
        const double* gi = gv.data() + (bh * Tq + i) * D;
        double row_dot = 0;  // sum_j p_ij dP_ij
        for (int64_t j = 0; j < Tk; ++j) {
          double dp = 0;
          for (int64_t d = 0; d < D; ++d) dp += gi[d] * vv[(bh * Tk + j) * D + d];
          ds[j] = fi ? fi[j] * dp : dp;
          row_dot += pi[j] * ds[j];
        }
        for (int64_t j = 0; j < Tk; ++j) {
          ds[j] = pi[j] * (ds[j] - row_dot);
          const double pd = fi ? pi[j] * fi[j] : pi[j];
          for (int64_t d = 0; d < D; ++d) {
            dq[(bh * Tq + i) * D + d] += g.scale * ds[j] * kv[(bh * Tk + j) * D + d];
            dk[(bh * Tk + j) * D + d] += ds[j] * g.scale * qv[(bh * Tq + i) * D + d];
            dv[(bh * Tk + j) * D + d] += pd * gi[d];
          }
          if (dbias_h) dbias_h[i * Tk + j] += ds[j];
        }
      }
    }
  auto make = [&](bool need, const Tensor& like, const std::vector<double>& val) {
    return need ? Tensor::from_vector<double>(like.shape(), val).to(like.dtype()) : Tensor();
  };
  return {make(needs[0], q, dq), make(needs[1], k, dk), make(needs[2], v, dv),
          make(needs[3], bias, dbias)};
}

}  // namespace

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionMask& mask, double scale,
                           const AttentionDropout& dropout) {
  const Geometry g = attn::check_args(q, k, v, mask, scale);
  attn::check_dropout(dropout);
  const MaskSpec spec(mask, g.Tk);
  const DropoutSpec drop(dropout, g);
  Tensor p, f;
  Tensor out = reference_forward(q, k, v, mask.bias, spec, drop, g, &p, &f);
  Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
  Tensor bd = mask.bias.defined() ? mask.bias.detach() : Tensor();
  return autograd::record(
      "attention_reference", out, {q, k, v, mask.bias},
      [qd, kd, vd, bd, p, f, g](const Tensor& grad, const std::vector<bool>& needs) {
        return reference_backward(grad, qd, kd, vd, bd, p, f, g, needs);
      });
}

}  // namespace metalm::ops
