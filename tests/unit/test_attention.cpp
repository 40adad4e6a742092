// attention: the tiled fast path against the plain reference (values and every gradient) over a
// table of mask kinds, sizes and layouts; the mask kinds against an independent additive -inf
// mask; finite-difference gradients of both paths in f64; argument errors; memory linear in T.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/ops/attention.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/random_ops.h"
#include "metalm/ops/softmax.h"
#include "metalm/ops/reduce.h"

namespace metalm {
namespace {

using ops::AttentionMask;
using ops::AttnMaskKind;

enum class Layout {
  contiguous,  // q, k, v are [B, H, T, D] tensors
  bthd,        // q, k, v are [B, T, H, D] buffers permuted to [B, H, T, D] (what callers make)
  shared_kv,   // k, v are [B, 1, Tk, D] expanded over H (stride 0; multi-query attention)
};

enum class BiasShape { none, full, b1, h1, b1h1 };  // [B|1, H|1, Tq, Tk]

struct Case {
  std::string name;
  int64_t B = 2, H = 2, Tq = 16, Tk = 16, D = 16;
  AttnMaskKind kind = AttnMaskKind::full;
  int64_t q_offset = 0, prefix_len = 0;
  bool padding = false;  // key padding: batch b pads its last 5 + 9 b keys (b = B-1 maybe all)
  bool pad_all_last = false;  // the last batch pads every key (rows with nothing visible)
  bool left_padding = false;  // pad the first keys instead (causal rows that see nothing)
  bool scattered_padding = false;  // also pad every 29th key (tiles with 1-2 padded keys)
  BiasShape bias = BiasShape::none;
  Layout layout = Layout::contiguous;
  double scale = 0.0;
  double dropout = 0.0;  // probability dropout, counters from kDropSeed / kDropCounter
};

constexpr uint64_t kDropSeed = 1234, kDropCounter = 77;

ops::AttentionDropout dropout_of(const Case& c) {
  return ops::AttentionDropout{c.dropout, kDropSeed, kDropCounter};
}

// Leaves of one case: tensors that gradients are taken with respect to.
struct Leaves {
  Tensor q, k, v, bias;
  AttentionMask mask;  // without bias
};

Shape leaf_shape(const Case& c, int64_t t, bool is_kv) {
  if (c.layout == Layout::bthd) return {c.B, t, c.H, c.D};
  if (c.layout == Layout::shared_kv && is_kv) return {c.B, 1, t, c.D};
  return {c.B, c.H, t, c.D};
}

Tensor key_padding_for(const Case& c) {
  std::vector<uint8_t> pad(static_cast<size_t>(c.B * c.Tk), 0);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t n = (c.pad_all_last && b == c.B - 1) ? c.Tk : std::min(c.Tk - 1, 5 + 9 * b);
    for (int64_t t = 0; t < n; ++t) pad[b * c.Tk + (c.left_padding ? t : c.Tk - 1 - t)] = 1;
    if (c.scattered_padding)
      for (int64_t t = 6 + b; t < c.Tk; t += 29) pad[b * c.Tk + t] = 1;
  }
  return Tensor::from_vector<uint8_t>({c.B, c.Tk}, pad);
}

// Packed documents of uneven lengths, different per batch row.
Tensor segment_ids_for(const Case& c) {
  std::vector<int32_t> seg(static_cast<size_t>(c.B * c.Tk));
  for (int64_t b = 0; b < c.B; ++b) {
    int32_t id = 0;
    int64_t next = 0, len = 11 + 17 * b;
    for (int64_t t = 0; t < c.Tk; ++t) {
      if (t == next) {
        ++id;
        next += len;
        len = len % 53 + 23;
      }
      seg[b * c.Tk + t] = id;
    }
  }
  return Tensor::from_vector<int32_t>({c.B, c.Tk}, seg);
}

Leaves make_leaves(const Case& c, DType dt, uint64_t seed) {
  Leaves l;
  l.q = test::randn(leaf_shape(c, c.Tq, false), seed, dt);
  l.k = test::randn(leaf_shape(c, c.Tk, true), seed + 1, dt);
  l.v = test::randn(leaf_shape(c, c.Tk, true), seed + 2, dt);
  const int64_t bb = (c.bias == BiasShape::b1 || c.bias == BiasShape::b1h1) ? 1 : c.B;
  const int64_t bh = (c.bias == BiasShape::h1 || c.bias == BiasShape::b1h1) ? 1 : c.H;
  if (c.bias != BiasShape::none) l.bias = test::randn({bb, bh, c.Tq, c.Tk}, seed + 3, dt);
  l.mask.kind = c.kind;
  l.mask.q_offset = c.q_offset;
  l.mask.prefix_len = c.prefix_len;
  if (c.padding || c.pad_all_last) l.mask.key_padding = key_padding_for(c);
  if (c.kind == AttnMaskKind::segment_causal || c.kind == AttnMaskKind::segment_full)
    l.mask.segment_ids = segment_ids_for(c);
  return l;
}

struct Result {
  Tensor out, dq, dk, dv, dbias;
};

using AttnFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, const AttentionMask&,
                          double, const ops::AttentionDropout&);

// Runs fn on fresh leaves (sharing the data of `l`) and backpropagates grad_out.
Result run(AttnFn fn, const Case& c, const Leaves& l, const Tensor& grad_out) {
  Tensor q = l.q.detach().set_requires_grad();
  Tensor k = l.k.detach().set_requires_grad();
  Tensor v = l.v.detach().set_requires_grad();
  AttentionMask mask = l.mask;
  if (l.bias.defined()) mask.bias = l.bias.detach().set_requires_grad();
  Tensor qv = q, kv = k, vv = v;
  if (c.layout == Layout::bthd) {
    qv = q.permute({0, 2, 1, 3});
    kv = k.permute({0, 2, 1, 3});
    vv = v.permute({0, 2, 1, 3});
  } else if (c.layout == Layout::shared_kv) {
    kv = k.expand({c.B, c.H, c.Tk, c.D});
    vv = v.expand({c.B, c.H, c.Tk, c.D});
  }
  Tensor out = fn(qv, kv, vv, mask, c.scale, dropout_of(c));
  out.backward(grad_out);
  Result r{out.detach(), q.grad(), k.grad(), v.grad(), Tensor()};
  if (mask.bias.defined()) r.dbias = mask.bias.grad();
  return r;
}

// Fast path vs reference for one case: output and the gradients of q, k, v and bias.
void expect_fast_matches_reference(const Case& c, DType dt = DType::f32) {
  SCOPED_TRACE(c.name + (dt == DType::f64 ? " (f64)" : " (f32)"));
  const Leaves l = make_leaves(c, dt, 100);
  const Tensor grad_out = test::randn({c.B, c.H, c.Tq, c.D}, 200, dt);
  const Result ref = run(ops::attention_reference, c, l, grad_out);
  const Result fast = run(ops::attention, c, l, grad_out);
  // f32: the fast path accumulates in f32 (dots of D terms, sums of Tk terms), the reference
  // in f64; gradients sum over Tq or Tk more products, hence the looser absolute floor.
  const double rtol = dt == DType::f32 ? 1e-5 : 1e-12;
  const double atol = dt == DType::f32 ? 1e-5 : 1e-12;
  EXPECT_TRUE(test::all_close(fast.out, ref.out, rtol, atol)) << "out";
  EXPECT_TRUE(test::all_close(fast.dq, ref.dq, rtol, 3 * atol)) << "dq";
  EXPECT_TRUE(test::all_close(fast.dk, ref.dk, rtol, 3 * atol)) << "dk";
  EXPECT_TRUE(test::all_close(fast.dv, ref.dv, rtol, 3 * atol)) << "dv";
  if (c.bias != BiasShape::none) {
    EXPECT_TRUE(test::all_close(fast.dbias, ref.dbias, rtol, 3 * atol)) << "dbias";
  }
}

Case make_case(std::string name, int64_t Tq, int64_t Tk, int64_t D, AttnMaskKind kind) {
  Case c;
  c.name = std::move(name);
  c.Tq = Tq;
  c.Tk = Tk;
  c.D = D;
  c.kind = kind;
  return c;
}

// ---------------------------------------------------------------- fast vs reference

TEST(Attention, MaskKindsMatchReference) {
  std::vector<Case> cases = {
      make_case("full 65", 65, 65, 64, AttnMaskKind::full),
      make_case("causal 130", 130, 130, 64, AttnMaskKind::causal),
      make_case("causal 63 D24", 63, 63, 24, AttnMaskKind::causal),
      make_case("causal 1 D40", 1, 1, 40, AttnMaskKind::causal),
      make_case("prefix 130 D40", 130, 130, 40, AttnMaskKind::prefix),
      make_case("prefix 0", 70, 70, 16, AttnMaskKind::prefix),
      make_case("prefix all", 70, 70, 16, AttnMaskKind::prefix),
      make_case("segment_causal 130", 130, 130, 64, AttnMaskKind::segment_causal),
      make_case("segment_full 130 D24", 130, 130, 24, AttnMaskKind::segment_full),
      make_case("full cross 10x77", 10, 77, 32, AttnMaskKind::full),
  };
  cases[4].prefix_len = 70;
  cases[6].prefix_len = 70;
  for (const Case& c : cases) expect_fast_matches_reference(c);
}

TEST(Attention, KeyPaddingMatchesReference) {
  Case full = make_case("full + padding", 130, 130, 64, AttnMaskKind::full);
  full.padding = true;
  full.pad_all_last = true;  // batch 1 has no visible key at all
  Case causal = make_case("causal + left padding", 70, 70, 24, AttnMaskKind::causal);
  causal.padding = causal.left_padding = true;  // the first rows see nothing
  Case prefix = make_case("prefix + padding", 65, 65, 40, AttnMaskKind::prefix);
  prefix.prefix_len = 20;
  prefix.padding = true;
  Case seg = make_case("segment_causal + padding", 130, 130, 16, AttnMaskKind::segment_causal);
  seg.padding = true;
  Case scattered = make_case("causal + scattered padding", 130, 130, 24, AttnMaskKind::causal);
  scattered.padding = scattered.scattered_padding = true;
  Case scattered_full = make_case("full + scattered padding", 40, 130, 16, AttnMaskKind::full);
  scattered_full.padding = scattered_full.scattered_padding = true;
  for (const Case& c : {full, causal, prefix, seg, scattered, scattered_full})
    expect_fast_matches_reference(c);
}

TEST(Attention, BiasShapesMatchReference) {
  const std::vector<std::pair<BiasShape, const char*>> shapes = {
      {BiasShape::full, "[B, H]"}, {BiasShape::b1, "[1, H]"}, {BiasShape::h1, "[B, 1]"},
      {BiasShape::b1h1, "[1, 1]"}};
  for (auto [shape, label] : shapes) {
    Case c = make_case(std::string("causal + bias ") + label, 130, 130, 40, AttnMaskKind::causal);
    c.bias = shape;
    c.H = 3;
    expect_fast_matches_reference(c);
    Case f = make_case(std::string("full + padding + bias ") + label, 65, 70, 24,
                       AttnMaskKind::full);
    f.bias = shape;
    f.padding = true;
    expect_fast_matches_reference(f);
  }
}

TEST(Attention, DecodeWithOffsetMatchesReference) {
  // KV-cache decode: the new queries are the last keys (q_offset = Tk - Tq) or sit earlier.
  std::vector<Case> cases = {
      make_case("decode Tq=1", 1, 130, 64, AttnMaskKind::causal),
      make_case("decode Tq=7", 7, 130, 64, AttnMaskKind::causal),
      make_case("chunk Tq=7 mid", 7, 130, 24, AttnMaskKind::causal),
      make_case("prefix decode", 7, 130, 40, AttnMaskKind::prefix),
      make_case("segment decode", 7, 130, 16, AttnMaskKind::segment_causal),
      make_case("segment_full decode", 65, 130, 16, AttnMaskKind::segment_full),
  };
  cases[0].q_offset = 129;
  cases[1].q_offset = 123;
  cases[2].q_offset = 50;
  cases[3].q_offset = 123;
  cases[3].prefix_len = 40;
  cases[4].q_offset = 123;
  cases[5].q_offset = 65;
  cases[1].bias = BiasShape::b1;
  cases[3].padding = true;
  for (const Case& c : cases) expect_fast_matches_reference(c);
}

TEST(Attention, LayoutsAndScaleMatchReference) {
  Case bthd = make_case("[B, T, H, D] views", 130, 130, 64, AttnMaskKind::causal);
  bthd.layout = Layout::bthd;
  bthd.H = 3;
  Case bthd_odd = make_case("[B, T, H, D] views D40 + bias", 65, 65, 40, AttnMaskKind::prefix);
  bthd_odd.layout = Layout::bthd;
  bthd_odd.prefix_len = 9;
  bthd_odd.bias = BiasShape::b1;
  Case shared = make_case("k, v shared by heads", 70, 70, 24, AttnMaskKind::causal);
  shared.layout = Layout::shared_kv;
  shared.H = 4;
  Case scaled = make_case("explicit scale", 33, 33, 16, AttnMaskKind::full);
  scaled.scale = 0.7;
  scaled.B = 1;
  scaled.H = 5;
  for (const Case& c : {bthd, bthd_odd, shared, scaled}) expect_fast_matches_reference(c);
}

TEST(Attention, F64FastPathMatchesReference) {
  Case causal = make_case("causal 130", 130, 130, 40, AttnMaskKind::causal);
  causal.bias = BiasShape::b1;
  causal.padding = true;
  Case seg = make_case("segment_full 70", 70, 70, 8, AttnMaskKind::segment_full);
  seg.layout = Layout::bthd;
  Case decode = make_case("decode", 3, 70, 64, AttnMaskKind::prefix);
  decode.q_offset = 67;
  decode.prefix_len = 30;
  for (const Case& c : {causal, seg, decode}) expect_fast_matches_reference(c, DType::f64);
}

// Large enough (B H Tq Tk D >= 2^23 multiply-adds) that the op runs on the whole thread pool:
// several threads, each with its own scratch and its own copy of a broadcast bias gradient.
TEST(Attention, ThreadedSizesMatchReference) {
  Case causal = make_case("threaded causal + bias [1, H]", 200, 200, 64, AttnMaskKind::causal);
  causal.H = 4;
  causal.bias = BiasShape::b1;
  Case full = make_case("threaded full + padding + bias [1, 1]", 150, 230, 40, AttnMaskKind::full);
  full.H = 5;
  full.padding = true;
  full.bias = BiasShape::b1h1;
  for (const Case& c : {causal, full}) expect_fast_matches_reference(c);
}

// ---------------------------------------------------------------- semantics

// The mask kinds against kind = full with an additive -inf bias built here, from the header's
// definitions, independently of the op's own visibility code.
TEST(Attention, MaskKindsEqualAdditiveInfMask) {
  const int64_t B = 2, H = 2, Tq = 37, Tk = 90, D = 8, q_offset = 53, prefix_len = 20;
  Case c = make_case("", Tq, Tk, D, AttnMaskKind::full);
  c.B = B;
  c.H = H;
  c.padding = true;
  const Tensor kp = key_padding_for(c);
  const Tensor seg = segment_ids_for(c);
  const std::vector<uint8_t> kpv = kp.to_vector<uint8_t>();
  const std::vector<int32_t> segv = seg.to_vector<int32_t>();
  const double inf = std::numeric_limits<double>::infinity();
  for (AttnMaskKind kind : {AttnMaskKind::causal, AttnMaskKind::prefix,
                            AttnMaskKind::segment_causal, AttnMaskKind::segment_full}) {
    SCOPED_TRACE(static_cast<int>(kind));
    std::vector<double> add(static_cast<size_t>(B * Tq * Tk), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Tq; ++i)
        for (int64_t j = 0; j < Tk; ++j) {
          const int64_t pos = q_offset + i;
          bool vis = kpv[b * Tk + j] == 0;
          const bool same_seg = segv[b * Tk + j] == segv[b * Tk + pos];
          if (kind == AttnMaskKind::causal) vis = vis && j <= pos;
          if (kind == AttnMaskKind::prefix) vis = vis && (j < prefix_len || j <= pos);
          if (kind == AttnMaskKind::segment_causal) vis = vis && j <= pos && same_seg;
          if (kind == AttnMaskKind::segment_full) vis = vis && same_seg;
          if (!vis) add[(b * Tq + i) * Tk + j] = -inf;
        }
    const Tensor inf_bias = Tensor::from_vector<double>({B, 1, Tq, Tk}, add).to(DType::f32);
    const Tensor q = test::randn({B, H, Tq, D}, 1), k = test::randn({B, H, Tk, D}, 2);
    const Tensor v = test::randn({B, H, Tk, D}, 3);
    AttentionMask m;
    m.kind = kind;
    m.q_offset = q_offset;
    m.key_padding = kp;
    if (kind == AttnMaskKind::prefix) m.prefix_len = prefix_len;
    if (kind == AttnMaskKind::segment_causal || kind == AttnMaskKind::segment_full)
      m.segment_ids = seg;
    AttentionMask as_bias;
    as_bias.bias = inf_bias;
    EXPECT_TRUE(test::all_close(ops::attention(q, k, v, m),
                                ops::attention_reference(q, k, v, as_bias), 1e-5, 1e-6));
    EXPECT_TRUE(test::all_close(ops::attention(q, k, v, as_bias),
                                ops::attention_reference(q, k, v, m), 1e-5, 1e-6));
  }
}

// A row with no visible key: zeros out, zero gradients, no NaN anywhere (PyTorch gives NaN).
TEST(Attention, RowsWithoutVisibleKeysGiveZeros) {
  const int64_t B = 2, H = 2, T = 70, D = 24;
  std::vector<uint8_t> pad(static_cast<size_t>(B * T), 0);
  for (int64_t j = 0; j < 3; ++j) pad[j] = 1;          // batch 0: left padding, rows 0..2 empty
  for (int64_t j = 0; j < T; ++j) pad[T + j] = 1;      // batch 1: everything padded
  AttentionMask m;
  m.kind = AttnMaskKind::causal;
  m.key_padding = Tensor::from_vector<uint8_t>({B, T}, pad);
  m.bias = test::randn({1, H, T, T}, 9).set_requires_grad();
  for (AttnFn fn : {ops::attention, ops::attention_reference}) {
    m.bias.zero_grad();
    Tensor q = test::randn({B, H, T, D}, 1).set_requires_grad();
    Tensor k = test::randn({B, H, T, D}, 2).set_requires_grad();
    Tensor v = test::randn({B, H, T, D}, 3).set_requires_grad();
    Tensor out = fn(q, k, v, m, 0.0, {});
    out.backward(test::randn(out.shape(), 4));
    const std::vector<float> o = out.to_vector<float>(), gq = q.grad().to_vector<float>();
    const std::vector<float> gk = k.grad().to_vector<float>(), gv = v.grad().to_vector<float>();
    for (float x : o) ASSERT_FALSE(std::isnan(x));
    for (const auto* g : {&gq, &gk, &gv})
      for (float x : *g) ASSERT_TRUE(std::isfinite(x));
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t d = 0; d < D; ++d) {
          EXPECT_EQ(o[((0 * H + h) * T + i) * D + d], 0.f);
          EXPECT_EQ(gq[((0 * H + h) * T + i) * D + d], 0.f);
        }
      for (int64_t i = 0; i < T * D; ++i) {
        EXPECT_EQ(o[(1 * H + h) * T * D + i], 0.f);
        EXPECT_EQ(gq[(1 * H + h) * T * D + i], 0.f);
        EXPECT_EQ(gk[(1 * H + h) * T * D + i], 0.f);
        EXPECT_EQ(gv[(1 * H + h) * T * D + i], 0.f);
      }
    }
    for (float x : m.bias.grad().to_vector<float>()) ASSERT_TRUE(std::isfinite(x));
  }
}

// A [B, T, H, D] input keeps its layout in the output and the gradient, so the caller's
// permute back to [B, T, H * D] is a free view.
TEST(Attention, OutputFollowsInputLayout) {
  const int64_t B = 2, T = 20, H = 3, D = 8;
  Tensor x = test::randn({B, T, H, D}, 1).set_requires_grad();
  Tensor q = x.permute({0, 2, 1, 3});
  Tensor out = ops::attention(q, q, q, {});
  EXPECT_EQ(out.shape(), Shape({B, H, T, D}));
  EXPECT_TRUE(out.permute({0, 2, 1, 3}).is_contiguous());
  EXPECT_TRUE(test::all_close(out, ops::attention_reference(q, q, q, {}), 1e-5, 1e-6));
  Tensor contiguous_in = ops::attention(q.contiguous(), q.contiguous(), q.contiguous(), {});
  EXPECT_TRUE(contiguous_in.is_contiguous());
}

// Same inputs, same thread count: bit-identical results, also for a broadcast bias gradient
// that is summed over per-thread copies (DESIGN D7).
TEST(Attention, BackwardIsDeterministic) {
  Case c = make_case("det", 200, 200, 64, AttnMaskKind::causal);  // threaded (see above)
  c.bias = BiasShape::b1h1;
  c.H = 4;
  const Leaves l = make_leaves(c, DType::f32, 7);
  const Tensor g = test::randn({c.B, c.H, c.Tq, c.D}, 8);
  const Result a = run(ops::attention, c, l, g), b = run(ops::attention, c, l, g);
  EXPECT_EQ(a.out.to_vector<float>(), b.out.to_vector<float>());
  EXPECT_EQ(a.dq.to_vector<float>(), b.dq.to_vector<float>());
  EXPECT_EQ(a.dk.to_vector<float>(), b.dk.to_vector<float>());
  EXPECT_EQ(a.dbias.to_vector<float>(), b.dbias.to_vector<float>());
}

// No keys: every row sees nothing (zeros); no queries: an empty output and zero k, v gradients.
TEST(Attention, EmptySizes) {
  for (AttnFn fn : {ops::attention, ops::attention_reference}) {
    Tensor q = test::randn({2, 3, 4, 8}, 1).set_requires_grad();
    Tensor k = Tensor::zeros({2, 3, 0, 8}).set_requires_grad();
    Tensor out = fn(q, k, k, {}, 0.0, {});
    EXPECT_TRUE(test::all_close(out, Tensor::zeros({2, 3, 4, 8}), 0, 0));
    out.backward(test::randn(out.shape(), 2));
    EXPECT_TRUE(test::all_close(q.grad(), Tensor::zeros({2, 3, 4, 8}), 0, 0));

    Tensor q0 = Tensor::zeros({2, 3, 0, 8}).set_requires_grad();
    Tensor k0 = test::randn({2, 3, 5, 8}, 3).set_requires_grad();
    AttentionMask m;
    m.kind = AttnMaskKind::causal;
    m.q_offset = 5;
    Tensor out0 = fn(q0, k0, k0, m, 0.0, {});
    EXPECT_EQ(out0.shape(), Shape({2, 3, 0, 8}));
    out0.backward(Tensor::zeros({2, 3, 0, 8}));
    EXPECT_TRUE(test::all_close(k0.grad(), Tensor::zeros({2, 3, 5, 8}), 0, 0));
  }
}

// Only the gradients that are asked for are computed; the others stay undefined.
TEST(Attention, PartialGradients) {
  const Tensor q = test::randn({1, 2, 70, 16}, 1), k = test::randn({1, 2, 70, 16}, 2);
  Tensor v = test::randn({1, 2, 70, 16}, 3).set_requires_grad();
  AttentionMask m;
  m.kind = AttnMaskKind::causal;
  Tensor out = ops::attention(q, k, v, m);
  out.backward(test::randn(out.shape(), 4));
  Tensor vr = v.detach().set_requires_grad();
  Tensor ref = ops::attention_reference(q, k, vr, m);
  ref.backward(test::randn(out.shape(), 4));
  EXPECT_TRUE(test::all_close(v.grad(), vr.grad(), 1e-5, 1e-5));
}

// ---------------------------------------------------------------- finite differences (f64)

void expect_gradcheck(AttnFn fn, const Case& c) {
  SCOPED_TRACE(c.name);
  const Leaves l = make_leaves(c, DType::f64, 300);
  std::vector<Tensor> inputs = {l.q.detach().set_requires_grad(),
                                l.k.detach().set_requires_grad(),
                                l.v.detach().set_requires_grad()};
  if (l.bias.defined()) inputs.push_back(l.bias.detach().set_requires_grad());
  const AttentionMask mask = l.mask;
  auto f = [&](const std::vector<Tensor>& in) {
    AttentionMask m = mask;
    if (in.size() > 3) m.bias = in[3];
    return fn(in[0], in[1], in[2], m, c.scale, dropout_of(c));
  };
  EXPECT_TRUE(test::gradcheck(f, inputs, 1e-6, 1e-5, 1e-7));
}

TEST(Attention, GradcheckReference) {
  Case causal = make_case("causal offset + bias", 4, 7, 3, AttnMaskKind::causal);
  causal.q_offset = 2;
  causal.bias = BiasShape::b1;
  causal.padding = true;
  causal.B = 2;
  Case seg = make_case("segment_full", 5, 6, 2, AttnMaskKind::segment_full);
  seg.q_offset = 1;
  for (const Case& c : {causal, seg}) expect_gradcheck(ops::attention_reference, c);
}

TEST(Attention, GradcheckFastPath) {
  Case causal = make_case("causal offset + bias", 4, 7, 3, AttnMaskKind::causal);
  causal.q_offset = 2;
  causal.bias = BiasShape::b1;
  causal.padding = true;
  causal.B = 2;
  Case prefix = make_case("prefix + bias [B, 1]", 5, 5, 2, AttnMaskKind::prefix);
  prefix.prefix_len = 2;
  prefix.bias = BiasShape::h1;
  // Crosses the 64-row and 64-key tile boundaries (several tiles, a diagonal one, a skipped one).
  Case tiles = make_case("causal across tiles", 66, 66, 2, AttnMaskKind::causal);
  tiles.B = 1;
  tiles.H = 1;
  for (const Case& c : {causal, prefix, tiles}) expect_gradcheck(ops::attention, c);
}

// ---------------------------------------------------------------- memory

// Forward and backward at T = 2048 keep no T x T matrix: peak growth stays far below the 16 MB
// of one f32 score matrix.
TEST(Attention, MemoryIsLinearInT) {
  const int64_t T = 2048, D = 16;
  Tensor q = test::randn({1, 1, T, D}, 1).set_requires_grad();
  Tensor k = test::randn({1, 1, T, D}, 2).set_requires_grad();
  Tensor v = test::randn({1, 1, T, D}, 3).set_requires_grad();
  Tensor g = test::randn({1, 1, T, D}, 4);
  AttentionMask m;
  m.kind = AttnMaskKind::causal;
  const size_t before = memory_stats().current_bytes;
  memory_reset_peak();
  Tensor out = ops::attention(q, k, v, m);
  out.backward(g);
  const size_t growth = memory_stats().peak_bytes - before;
  EXPECT_LT(growth, size_t{4} << 20) << "peak grew by " << growth << " bytes";
}

// ---------------------------------------------------------------- argument errors

TEST(Attention, ArgumentErrors) {
  const Tensor q = test::randn({2, 3, 5, 8}, 1), k = test::randn({2, 3, 7, 8}, 2);
  const Tensor v = test::randn({2, 3, 7, 8}, 3);
  auto call = [&](const Tensor& qq, const Tensor& kk, const Tensor& vv, const AttentionMask& m) {
    ops::attention(qq, kk, vv, m);
  };
  auto expect_message = [](const std::function<void()>& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no exception, expected one containing '" << part << "'";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("[attention] ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  const AttentionMask none;
  EXPECT_THROW(call(q.reshape({6, 5, 8}), k, v, none), ShapeError);
  EXPECT_THROW(call(q, k.slice(3, 0, 4), v, none), ShapeError);
  EXPECT_THROW(call(q, k, v.slice(2, 0, 6), none), ShapeError);
  EXPECT_THROW(call(q, k.slice(1, 0, 2), v.slice(1, 0, 2), none), ShapeError);
  EXPECT_THROW(call(q, k.slice(0, 0, 1), v.slice(0, 0, 1), none), ShapeError);
  EXPECT_THROW(call(q.to(DType::f64), k, v, none), DTypeError);
  EXPECT_THROW(call(q.to(DType::i32), k.to(DType::i32), v.to(DType::i32), none), DTypeError);
  EXPECT_THROW(ops::attention(q, k, v, none, std::nan("")), ValueError);
  EXPECT_THROW(call(Tensor(), k, v, none), ValueError);
  expect_message([&] { call(q, k, v.slice(2, 0, 6), none); }, "lengths differ");

  AttentionMask m;
  m.kind = AttnMaskKind::causal;
  m.q_offset = 3;  // 3 + 5 > 7
  EXPECT_THROW(call(q, k, v, m), ValueError);
  expect_message([&] { call(q, k, v, m); }, "q_offset");
  m.q_offset = -1;
  EXPECT_THROW(call(q, k, v, m), ValueError);
  m = {};
  m.q_offset = -1;  // negative even for the full mask
  EXPECT_THROW(call(q, k, v, m), ValueError);

  m = {};
  m.kind = AttnMaskKind::prefix;
  m.prefix_len = 8;
  EXPECT_THROW(call(q, k, v, m), ValueError);
  m.prefix_len = -1;
  EXPECT_THROW(call(q, k, v, m), ValueError);
  m = {};
  m.prefix_len = 2;  // prefix_len without the prefix kind is a mistake, not ignored
  EXPECT_THROW(call(q, k, v, m), ValueError);

  m = {};
  m.key_padding = Tensor::zeros({2, 7}, DType::i32);
  EXPECT_THROW(call(q, k, v, m), DTypeError);
  m.key_padding = Tensor::zeros({2, 5}, DType::u8);
  EXPECT_THROW(call(q, k, v, m), ShapeError);
  expect_message([&] { call(q, k, v, m); }, "key_padding");

  m = {};
  m.kind = AttnMaskKind::segment_causal;
  m.q_offset = 2;
  EXPECT_THROW(call(q, k, v, m), ValueError);  // segment_ids missing
  m.segment_ids = Tensor::zeros({2, 7}, DType::i64);
  EXPECT_THROW(call(q, k, v, m), DTypeError);
  m.segment_ids = Tensor::zeros({1, 7}, DType::i32);
  EXPECT_THROW(call(q, k, v, m), ShapeError);
  m.segment_ids = Tensor::zeros({2, 7}, DType::i32);
  EXPECT_NO_THROW(call(q, k, v, m));
  m.kind = AttnMaskKind::full;  // segment ids with a kind that does not use them
  m.q_offset = 0;
  EXPECT_THROW(call(q, k, v, m), ValueError);

  m = {};
  m.bias = test::randn({2, 3, 5, 7}, 4, DType::f64);
  EXPECT_THROW(call(q, k, v, m), DTypeError);
  m.bias = test::randn({3, 3, 5, 7}, 4);
  EXPECT_THROW(call(q, k, v, m), ShapeError);
  m.bias = test::randn({1, 2, 5, 7}, 4);
  EXPECT_THROW(call(q, k, v, m), ShapeError);
  m.bias = test::randn({1, 1, 7, 5}, 4);
  EXPECT_THROW(call(q, k, v, m), ShapeError);
  expect_message([&] { call(q, k, v, m); }, "bias");
  m.bias = test::randn({1, 1, 5, 7}, 4);
  EXPECT_NO_THROW(call(q, k, v, m));

  // The reference path validates identically.
  EXPECT_THROW(ops::attention_reference(q, k.slice(3, 0, 4), v, none), ShapeError);
}

// ---------------------------------------------------------------- probability dropout

// The spec of attention dropout, from ops that know nothing of attention: probabilities from
// softmax, dropped by ops::dropout with a generator at (kDropSeed, kDropCounter), times v.
Tensor composite_dropout_attention(const Tensor& q, const Tensor& k, const Tensor& v, double p,
                                   bool causal) {
  const int64_t Tq = q.size(2), Tk = k.size(2);
  Tensor s = ops::mul(ops::matmul(q, k, false, true), 1.0 / std::sqrt(double(q.size(3))));
  if (causal) {
    std::vector<double> m(static_cast<size_t>(Tq * Tk), 0.0);
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = i + 1; j < Tk; ++j) m[i * Tk + j] = -1e300;
    s = ops::add(s, Tensor::from_vector<double>({Tq, Tk}, m).to(q.dtype()));
  }
  Generator gen(kDropSeed);
  gen.reserve(kDropCounter);
  return ops::matmul(ops::dropout(ops::softmax(s), p, gen), v);
}

TEST(AttentionDropout, BothPathsEqualSoftmaxThenOpsDropout) {
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    Case c = make_case("dropout", 70, 70, 16, causal ? AttnMaskKind::causal : AttnMaskKind::full);
    c.dropout = 0.3;
    const Leaves l = make_leaves(c, DType::f64, 500);
    const Tensor want = composite_dropout_attention(l.q, l.k, l.v, c.dropout, causal);
    const Tensor zero_grad = Tensor::zeros({c.B, c.H, c.Tq, c.D}, DType::f64);
    for (AttnFn fn : {ops::attention, ops::attention_reference}) {
      const Result r = run(fn, c, l, zero_grad);
      EXPECT_TRUE(test::all_close(r.out, want, 1e-12, 1e-12));
    }
    // And dropout really changed the result.
    c.dropout = 0.0;
    const Result undropped = run(ops::attention, c, l, zero_grad);
    EXPECT_FALSE(test::all_close(undropped.out, want, 1e-3, 1e-3));
  }
}

TEST(AttentionDropout, FastMatchesReferenceWithMasksBiasAndTiles) {
  Case causal = make_case("causal 130 + dropout", 130, 130, 64, AttnMaskKind::causal);
  Case padded = make_case("full + padding + bias + dropout", 70, 130, 24, AttnMaskKind::full);
  padded.padding = true;
  padded.bias = BiasShape::h1;
  Case seg = make_case("segment_causal + dropout", 130, 130, 16, AttnMaskKind::segment_causal);
  Case bthd = make_case("bthd decode offset + dropout", 2, 70, 32, AttnMaskKind::causal);
  bthd.layout = Layout::bthd;
  bthd.q_offset = 68;
  for (Case c : {causal, padded, seg, bthd}) {
    c.dropout = 0.25;
    expect_fast_matches_reference(c);
    expect_fast_matches_reference(c, DType::f64);
  }
}

TEST(AttentionDropout, Gradcheck) {
  Case c = make_case("causal offset + bias + dropout", 4, 7, 3, AttnMaskKind::causal);
  c.q_offset = 2;
  c.bias = BiasShape::b1;
  c.dropout = 0.4;
  Case tiles = make_case("causal across tiles + dropout", 66, 66, 2, AttnMaskKind::causal);
  tiles.B = tiles.H = 1;
  tiles.dropout = 0.2;
  expect_gradcheck(ops::attention_reference, c);
  expect_gradcheck(ops::attention, c);
  expect_gradcheck(ops::attention, tiles);
}

TEST(AttentionDropout, KeepsAboutOneMinusPAndDependsOnCounter) {
  // With v = 1 and no mask, output row i is sum_j p_ij f_ij: its mean over many rows is 1 (the
  // 1/(1-p) scaling makes dropout unbiased), and a zero appears only where every key is dropped.
  Case c = make_case("rate", 256, 256, 16, AttnMaskKind::full);
  c.dropout = 0.5;
  Leaves l = make_leaves(c, DType::f32, 600);
  l.v = Tensor::ones(l.v.shape(), DType::f32);
  l.q = Tensor::zeros(l.q.shape(), DType::f32);  // uniform probabilities 1/Tk
  const Tensor g = Tensor::zeros({c.B, c.H, c.Tq, c.D}, DType::f32);
  const std::vector<float> out = run(ops::attention, c, l, g).out.to_vector<float>();
  double mean = 0;
  for (float x : out) mean += x;
  mean /= static_cast<double>(out.size());
  // Each row: (kept count) / (Tk (1-p)), kept ~ Binomial(256, 0.5): mean 1, sd 0.0625 per row;
  // over B H Tq = 1024 rows the mean has sd 0.002.
  EXPECT_NEAR(mean, 1.0, 0.01);
  // Another counter gives another mask.
  const Tensor other = ops::attention(l.q, l.k, l.v, l.mask, 0.0,
                                      ops::AttentionDropout{0.5, kDropSeed, kDropCounter + 1});
  EXPECT_FALSE(test::all_close(other, run(ops::attention, c, l, g).out, 1e-3, 1e-3));
}

TEST(AttentionDropout, RejectsBadProbability) {
  const Tensor q = test::randn({1, 1, 4, 8}, 1);
  for (double p : {-0.1, 1.0, std::nan("")})
    EXPECT_TRUE(test::throws_with<ValueError>(
        [&] { ops::attention(q, q, q, {}, 0.0, ops::AttentionDropout{p, 1, 0}); },
        "[attention] dropout p must be in [0, 1)"));
}

// ---------------------------------------------------------------- bf16 products (inference)

// Under MatmulPrecision::bf16 without gradients, the products take bf16 operands: within bf16's
// error of the f64 reference (relative error of the whole output below 1e-2; q k^T sums 64
// products of operands each rounded by up to 2^-9) and visibly not the f32 result. With
// gradients wanted, the forward stays exactly f32.
TEST(AttentionBf16, InferenceWithinBf16ErrorOfReference) {
  Case causal = make_case("causal 200", 200, 200, 64, AttnMaskKind::causal);
  Case padded = make_case("full 130 + padding + bias", 130, 130, 40, AttnMaskKind::full);
  padded.padding = true;
  padded.bias = BiasShape::h1;
  Case seg = make_case("segment_causal 130 bthd", 130, 130, 24, AttnMaskKind::segment_causal);
  seg.layout = Layout::bthd;
  for (const Case& c : {causal, padded, seg}) {
    SCOPED_TRACE(c.name);
    const Leaves l = make_leaves(c, DType::f32, 700);
    const Tensor zero_grad = Tensor::zeros({c.B, c.H, c.Tq, c.D}, DType::f32);
    const Tensor f32_out = run(ops::attention, c, l, zero_grad).out;
    const Tensor ref = run(ops::attention_reference, c, l, zero_grad).out;
    ops::MatmulPrecisionGuard guard(ops::MatmulPrecision::bf16);
    Tensor bf16_out;
    {
      NoGradGuard ng;
      AttentionMask m = l.mask;
      m.bias = l.bias;
      Tensor qv = l.q, kv = l.k, vv = l.v;
      if (c.layout == Layout::bthd) {
        qv = qv.permute({0, 2, 1, 3});
        kv = kv.permute({0, 2, 1, 3});
        vv = vv.permute({0, 2, 1, 3});
      }
      bf16_out = ops::attention(qv, kv, vv, m);
    }
    const std::vector<double> a = bf16_out.to_vector<double>(), r = ref.to_vector<double>();
    const std::vector<double> f = f32_out.to_vector<double>();
    double err = 0, norm = 0, moved = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      err += (a[i] - r[i]) * (a[i] - r[i]);
      norm += r[i] * r[i];
      moved = std::max(moved, std::fabs(a[i] - f[i]));
    }
    EXPECT_LT(std::sqrt(err / norm), 1e-2);
    EXPECT_TRUE(test::all_close(bf16_out, ref, 0, 5e-2));
#if defined(__AVX512BF16__)  // the bf16 tile kernel exists only on AVX512-BF16 builds
    EXPECT_GT(moved, 1e-4) << "bf16 products were not used";
#else
    EXPECT_EQ(moved, 0.0);  // f32 products
#endif
    // A forward that will be differentiated keeps f32 products: the f32 result, bit for bit.
    EXPECT_TRUE(test::all_close(run(ops::attention, c, l, zero_grad).out, f32_out, 0, 0));
  }
}

}  // namespace
}  // namespace metalm
