// Internal: what both paths of the attention op (attention.cpp, attention_reference.cpp) share:
// the argument checks, and the one definition each of which keys a query sees (MaskSpec) and
// which probabilities dropout keeps (DropoutSpec).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include "metalm/core/random.h"
#include "metalm/ops/attention.h"

namespace metalm::ops::attn {

inline const char* kind_name(AttnMaskKind kind) {
  switch (kind) {
    case AttnMaskKind::full: return "full";
    case AttnMaskKind::causal: return "causal";
    case AttnMaskKind::prefix: return "prefix";
    case AttnMaskKind::segment_causal: return "segment_causal";
    case AttnMaskKind::segment_full: return "segment_full";
  }
  return "unknown";
}

inline bool is_segment_kind(AttnMaskKind kind) {
  return kind == AttnMaskKind::segment_causal || kind == AttnMaskKind::segment_full;
}


struct Geometry {
  int64_t B = 0, H = 0, Tq = 0, Tk = 0, D = 0;
  double scale = 0;  // resolved (> 0)
};

// Checks q, k, v, the mask and the scale (messages "[attention] ..."); returns the sizes.
Geometry check_args(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& m,
                    double scale);
// Checks the dropout probability.
void check_dropout(const AttentionDropout& d);

// The mask with its tensors resolved to contiguous host arrays. visible() is the one definition
// of which key a query sees (the reference path uses it); hide_row() is its row form for the
// fast path, checked against it by the unit tests.
struct MaskSpec {
  AttnMaskKind kind = AttnMaskKind::full;
  int64_t q_offset = 0, prefix_len = 0, Tk = 0;
  Tensor key_padding_c, segment_ids_c;  // keep the contiguous copies alive
  const uint8_t* key_padding = nullptr;  // [B, Tk] or null
  const int32_t* segment_ids = nullptr;  // [B, Tk] or null

  MaskSpec(const AttentionMask& m, int64_t tk)
      : kind(m.kind), q_offset(m.q_offset), prefix_len(m.prefix_len), Tk(tk) {
    if (m.key_padding.defined()) {
      key_padding_c = m.key_padding.detach().contiguous();
      key_padding = key_padding_c.data<uint8_t>();
    }
    if (m.segment_ids.defined() && is_segment_kind(kind)) {
      segment_ids_c = m.segment_ids.detach().contiguous();
      segment_ids = segment_ids_c.data<int32_t>();
    }
  }

  // Query row i of batch b sees key j.
  bool visible(int64_t b, int64_t i, int64_t j) const {
    if (key_padding && key_padding[b * Tk + j]) return false;
    const int64_t p = q_offset + i;  // absolute position of the query
    switch (kind) {
      case AttnMaskKind::full: return true;
      case AttnMaskKind::causal: return j <= p;
      case AttnMaskKind::prefix: return j < prefix_len || j <= p;
      case AttnMaskKind::segment_causal:
        return j <= p && segment_ids[b * Tk + j] == segment_ids[b * Tk + p];
      case AttnMaskKind::segment_full: return segment_ids[b * Tk + j] == segment_ids[b * Tk + p];
    }
    return false;
  }

  // The row form of visible() for the fast path's masked tiles: sets s[jj] = -inf for every
  // key j0 + jj (jj < n) that query row i of batch b does not see. Branch-free loops that
  // vectorize, instead of one visible() call per element.
  template <typename T>
  void hide_row(T* s, int64_t b, int64_t i, int64_t j0, int64_t n) const {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const int64_t p = q_offset + i;
    int64_t end = Tk;  // keys j >= end are hidden by position
    if (kind == AttnMaskKind::causal || kind == AttnMaskKind::segment_causal) end = p + 1;
    if (kind == AttnMaskKind::prefix) end = std::max(p + 1, prefix_len);
    for (int64_t jj = std::clamp<int64_t>(end - j0, 0, n); jj < n; ++jj) s[jj] = neg_inf;
    if (key_padding) {
      const uint8_t* kp = key_padding + b * Tk + j0;
      for (int64_t jj = 0; jj < n; ++jj) s[jj] = kp[jj] ? neg_inf : s[jj];
    }
    if (segment_ids) {
      const int32_t* seg = segment_ids + b * Tk + j0;
      const int32_t own = segment_ids[b * Tk + p];
      for (int64_t jj = 0; jj < n; ++jj) s[jj] = seg[jj] != own ? neg_inf : s[jj];
    }
  }
};

// The probability dropout, resolved. keep() is the one definition of which probabilities survive
// (the reference path uses it); apply_row() and factor_row() are its integer-threshold row forms
// for the fast path (vectorized hash), equal to it by Generator::keep_threshold.
struct DropoutSpec {
  bool on = false;
  double p = 0;
  uint64_t seed = 0, counter = 0, threshold = 0;
  int64_t H = 0, Tq = 0, Tk = 0;

  DropoutSpec(const AttentionDropout& d, const Geometry& g)
      : on(d.p > 0), p(d.p), seed(d.seed), counter(d.counter),
        threshold(Generator::keep_threshold(d.p)), H(g.H), Tq(g.Tq), Tk(g.Tk) {}

  // Counter of element (b, h, i, 0); element j adds j.
  uint64_t row_counter(int64_t b, int64_t h, int64_t i) const {
    return counter + static_cast<uint64_t>(((b * H + h) * Tq + i) * Tk);
  }
  bool keep(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return Generator::uniform_at(seed, row_counter(b, h, i) + static_cast<uint64_t>(j)) >= p;
  }
  template <typename T>
  T scale() const {  // 1/(1-p) rounded to T, as ops::dropout
    return static_cast<T>(1.0 / (1.0 - p));
  }
  // x[jj] = keep(row, j0 + jj) ? x[jj] * scale : 0 for jj < n; row = row_counter(b, h, i).
  template <typename T>
  void apply_row(T* x, uint64_t row, int64_t j0, int64_t n) const {
    drop_row(x, row, j0, n, true);
  }
  // f[jj] = keep(row, j0 + jj) ? scale : 0 for jj < n.
  template <typename T>
  void factor_row(T* f, uint64_t row, int64_t j0, int64_t n) const {
    drop_row(f, row, j0, n, false);
  }

 private:
  template <typename T>
  void drop_row(T* x, uint64_t row, int64_t j0, int64_t n, bool times_x) const {
    const T sc = scale<T>();
    const uint64_t c0 = row + static_cast<uint64_t>(j0);
#pragma omp simd
    for (int64_t jj = 0; jj < n; ++jj) {
      const bool kept =
          (Generator::hash(seed, c0 + static_cast<uint64_t>(jj)) >> 11) >= threshold;
      x[jj] = kept ? (times_x ? x[jj] * sc : sc) : T(0);
    }
  }
};

}  // namespace metalm::ops::attn
