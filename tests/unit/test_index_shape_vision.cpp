// Index ops (embedding, gather/scatter rows, docking), shape ops (concat, split, stack), dropout,
// patchify and mean_pool: values vs plain loops, gradients vs finite differences, errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::leaf;
using metalm::test::randn;
using metalm::test::ThreadCountGuard;

using metalm::test::throws_with;

namespace {

Tensor ids_of(const Shape& s, const std::vector<int64_t>& v) {
  return Tensor::from_vector<int64_t>(s, v);
}

Tensor mask_of(const Shape& s, const std::vector<uint8_t>& v) {
  return Tensor::from_vector<uint8_t>(s, v);
}

// Bitwise equality of two tensors' values.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.raw_data(), bc.raw_data(), ac.nbytes()) == 0;
}

}  // namespace

// ================================================================ embedding

TEST(Embedding, ValuesMatchLoopForI64AndI32Ids) {
  Tensor w = randn({7, 5}, 1);
  std::vector<int64_t> idv = {3, 0, 6, 3, 1, 2};
  Tensor out = ops::embedding(w, ids_of({2, 3}, idv));
  ASSERT_EQ(out.shape(), (Shape{2, 3, 5}));
  std::vector<float> wv = w.to_vector<float>(), ov = out.to_vector<float>();
  for (size_t i = 0; i < idv.size(); ++i)
    for (int c = 0; c < 5; ++c) EXPECT_EQ(ov[i * 5 + c], wv[idv[i] * 5 + c]);
  std::vector<int32_t> id32(idv.begin(), idv.end());
  Tensor out32 = ops::embedding(w, Tensor::from_vector<int32_t>({2, 3}, id32));
  EXPECT_TRUE(same_bits(out, out32));
  // A scalar id gives one row; non-contiguous ids and weights work.
  EXPECT_EQ(ops::embedding(w, Tensor::scalar(4, DType::i64)).shape(), (Shape{5}));
  Tensor wt = randn({5, 7}, 2).transpose(0, 1);  // [7, 5] view
  Tensor idt = ids_of({3, 2}, idv).transpose(0, 1);
  Tensor ref = ops::embedding(wt.contiguous(), idt.contiguous());
  EXPECT_TRUE(same_bits(ops::embedding(wt, idt), ref));
}

TEST(Embedding, GradcheckWithRepeatedIds) {
  Tensor w = leaf({6, 4}, 3);
  Tensor ids = ids_of({2, 4}, {1, 5, 1, 0, 5, 5, 2, 1});
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return ops::embedding(in[0], ids); }, {w}));
}

TEST(Embedding, PaddingIdxRowGetsNoGradient) {
  Tensor w = leaf({5, 3}, 4);
  const int64_t pad = 2;
  std::vector<int64_t> idv = {2, 0, 2, 4, 0, 2};
  Tensor out = ops::embedding(w, ids_of({6}, idv), pad);
  // The padding row is still looked up in the forward.
  EXPECT_EQ(out.slice(0, 0, 1).to_vector<double>(), w.slice(0, 2, 3).to_vector<double>());
  Tensor g = randn({6, 3}, 5, DType::f64);
  out.backward(g);
  std::vector<double> gw = w.grad().to_vector<double>(), gv = g.to_vector<double>();
  std::vector<double> expect(15, 0.0);
  for (size_t i = 0; i < idv.size(); ++i)
    if (idv[i] != pad)
      for (int c = 0; c < 3; ++c) expect[idv[i] * 3 + c] += gv[i * 3 + c];
  for (int c = 0; c < 3; ++c) EXPECT_EQ(gw[pad * 3 + c], 0.0);
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_NEAR(gw[i], expect[i], 1e-12);
}

// The parallel scatter-add (bucketed by row) equals the sequential reference bit for bit, for
// any thread count.
TEST(Embedding, BackwardIsDeterministicAndMatchesReference) {
  ThreadCountGuard guard;
  const int64_t v = 50, c = 64, m = 4096;
  Generator gen(7);
  std::vector<int64_t> idv(m);
  for (auto& id : idv) id = gen.randint(0, v);
  idv[5] = 49;
  Tensor ids = ids_of({m}, idv);
  Tensor g = randn({m, c}, 8);
  auto grad_with = [&](int threads, bool reference) {
    omp_set_num_threads(threads);
    ops::ReferenceGuard mode(reference);
    Tensor w = randn({v, c}, 9).set_requires_grad();
    ops::embedding(w, ids, 3).backward(g);
    return w.grad();
  };
  Tensor ref = grad_with(1, true);
  EXPECT_TRUE(same_bits(grad_with(1, false), ref));
  EXPECT_TRUE(same_bits(grad_with(2, false), ref));
  // Loop check of the reference itself, in f64.
  std::vector<double> gv = g.to_vector<double>(), rv = ref.to_vector<double>();
  std::vector<double> expect(v * c, 0.0);
  for (int64_t i = 0; i < m; ++i)
    if (idv[i] != 3)
      for (int64_t j = 0; j < c; ++j) expect[idv[i] * c + j] += gv[i * c + j];
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_NEAR(rv[i], expect[i], 1e-4);
}

TEST(Embedding, ArgumentErrors) {
  Tensor w = randn({5, 3}, 1);
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        ops::embedding(w, ids_of({2, 2}, {0, 1, 4, 7}));
      },
      {"[embedding]", "7", "[1, 1]"}));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        ops::embedding(w, ids_of({3}, {0, -1, 2}));
      },
      {"[embedding]", "-1", "[1]"}));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::embedding(w, Tensor::zeros({2}, DType::f32)); },
                                      {"[embedding]", "i64"}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::embedding(randn({5}, 1), ids_of({1}, {0})); },
                                      {"[embedding]"}));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::embedding(w, ids_of({1}, {0}), 5); },
                                      {"[embedding]", "padding_idx"}));
}

// ================================================================ gather / scatter

TEST(GatherRows, ValuesAndGradient) {
  Tensor x = randn({4, 3}, 1, DType::f64);
  std::vector<int64_t> idv = {3, 3, 0, 2, 3};
  Tensor out = ops::gather_rows(x, ids_of({5}, idv));
  std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>();
  for (size_t i = 0; i < idv.size(); ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(ov[i * 3 + c], xv[idv[i] * 3 + c]);
  x.set_requires_grad();
  Tensor ids = ids_of({5}, idv);
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return ops::gather_rows(in[0], ids); }, {x}));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        ops::gather_rows(x, ids_of({2}, {0, 4}));
      },
      {"[gather_rows]", "4", "[1]"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::gather_rows(x, ids_of({1, 1}, {0}));
      },
      {"[gather_rows]"}));
}

// Rows of any rank (beam search reorders [B, H, T, D] caches and [B, T] integer layouts with
// it): the trailing shape comes back, integers copy exactly, the gradient flows.
TEST(GatherRows, AnyRankAndDtype) {
  Tensor x = randn({3, 2, 4}, 2, DType::f64);
  const std::vector<int64_t> idv = {2, 0, 0, 1};
  Tensor out = ops::gather_rows(x, ids_of({4}, idv));
  EXPECT_EQ(out.shape(), (Shape{4, 2, 4}));
  const std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>();
  for (size_t i = 0; i < idv.size(); ++i)
    for (size_t c = 0; c < 8; ++c) EXPECT_EQ(ov[i * 8 + c], xv[static_cast<size_t>(idv[i]) * 8 + c]);
  const Tensor ints = Tensor::from_vector<int64_t>({3}, {7, -8, 9});
  EXPECT_EQ(ops::gather_rows(ints, ids_of({3}, {1, 1, 2})).to_vector<int64_t>(),
            (std::vector<int64_t>{-8, -8, 9}));
  x.set_requires_grad();
  const Tensor ids = ids_of({4}, idv);
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return ops::gather_rows(in[0], ids); }, {x}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] { ops::gather_rows(Tensor::from_vector<double>({}, {1.0}), ids_of({1}, {0})); },
      {"[gather_rows]", "row dimension"}));
}

TEST(ScatterRows, ValuesAndGradients) {
  Tensor x = leaf({5, 3}, 1), src = leaf({2, 3}, 2);
  Tensor index = ids_of({2}, {4, 1});
  Tensor out = ops::scatter_rows(x, index, src);
  std::vector<double> xv = x.to_vector<double>(), sv = src.to_vector<double>();
  std::vector<double> ov = out.to_vector<double>();
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 3; ++c) {
      double want = r == 4 ? sv[c] : r == 1 ? sv[3 + c] : xv[r * 3 + c];
      EXPECT_EQ(ov[r * 3 + c], want);
    }
  EXPECT_EQ(x.to_vector<double>(), xv);  // x untouched
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return ops::scatter_rows(in[0], index, in[1]); },
      {x, src}));
  // Exact gradient values: x gets g with rows 4 and 1 zeroed, src gets g[[4, 1]].
  x.zero_grad();
  src.zero_grad();
  Tensor g = randn({5, 3}, 3, DType::f64);
  ops::scatter_rows(x, index, src).backward(g);
  std::vector<double> gv = g.to_vector<double>(), gx = x.grad().to_vector<double>();
  std::vector<double> gs = src.grad().to_vector<double>();
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(gx[r * 3 + c], (r == 4 || r == 1) ? 0.0 : gv[r * 3 + c]);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(gs[c], gv[12 + c]);
    EXPECT_EQ(gs[3 + c], gv[3 + c]);
  }
}

TEST(ScatterRows, ArgumentErrors) {
  Tensor x = randn({5, 3}, 1), src = randn({2, 3}, 2);
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        ops::scatter_rows(x, ids_of({2}, {1, 1}), src);
      },
      {"[scatter_rows]", "twice", "0", "1"}));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        ops::scatter_rows(x, ids_of({2}, {1, 5}), src);
      },
      {"[scatter_rows]", "5"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::scatter_rows(x, ids_of({3}, {0, 1, 2}), src);
      },
      {"[scatter_rows]", "src"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::scatter_rows(x, ids_of({2}, {0, 1}), randn({2, 4}, 3));
      },
      {"[scatter_rows]"}));
  EXPECT_TRUE(throws_with<DTypeError>(
      [&] {
        ops::scatter_rows(x, ids_of({2}, {0, 1}), randn({2, 3}, 3, DType::f64));
      },
      {"[scatter_rows]"}));
}

TEST(MaskToIndex, RowMajorNonzeros) {
  Tensor m = mask_of({2, 3}, {0, 1, 1, 5, 0, 1});
  EXPECT_EQ(ops::mask_to_index(m).to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 5}));
  EXPECT_EQ(ops::mask_to_index(mask_of({2, 2}, {0, 0, 0, 0})).shape(), (Shape{0}));
  EXPECT_EQ(
      ops::mask_to_index(mask_of({6}, {1, 0, 0, 0, 0, 1}).slice(0, 1, 6)).to_vector<int64_t>(),
      (std::vector<int64_t>{4}));
  EXPECT_THROW(ops::mask_to_index(ids_of({2}, {0, 1})), DTypeError);
}

TEST(MaskedScatterRows, DocksInRowMajorOrder) {
  Tensor x = randn({2, 4, 3}, 1), src = randn({3, 3}, 2);
  std::vector<uint8_t> mv = {0, 1, 1, 0, 0, 0, 0, 1};
  Tensor out = ops::masked_scatter_rows(x, mask_of({2, 4}, mv), src);
  std::vector<float> xv = x.to_vector<float>(), sv = src.to_vector<float>();
  std::vector<float> ov = out.to_vector<float>();
  int k = 0;
  for (int p = 0; p < 8; ++p) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(ov[p * 3 + c], mv[p] ? sv[k * 3 + c] : xv[p * 3 + c]);
    k += mv[p];
  }
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::masked_scatter_rows(x, mask_of({2, 4}, mv), randn({2, 3}, 3));
      },
      {"[masked_scatter_rows]", "3", "2"}));
  EXPECT_THROW(ops::masked_scatter_rows(x, mask_of({2, 3}, {0, 0, 0, 0, 0, 0}), src), ShapeError);
  EXPECT_THROW(ops::masked_scatter_rows(x, Tensor::zeros({2, 4}), src), DTypeError);
  EXPECT_THROW(ops::masked_scatter_rows(x, mask_of({2, 4}, mv), randn({3, 4}, 3)), ShapeError);
}

// MetaLM docking (reference-spec 3.3): token embeddings with placeholder ids, connector output
// docked over them, then embed_scale. The gradient reaches the connector (src) only at docked
// rows and the embedding table only through undocked ones.
TEST(MaskedScatterRows, DockingGradientsReachEmbeddingAndConnector) {
  Tensor table = leaf({6, 4}, 1);                   // token embedding [V, C]
  Tensor features = leaf({3, 5}, 2);                // encoder output for 3 span tokens
  Tensor proj = leaf({4, 5}, 3);                    // connector Linear(5 -> 4)
  Tensor ids = ids_of({2, 3}, {1, 5, 5, 2, 5, 3});  // 5 = placeholder
  Tensor mask = mask_of({2, 3}, {0, 1, 1, 0, 1, 0});
  auto f = [&](const std::vector<Tensor>& in) {
    Tensor emb = ops::embedding(in[0], ids);
    Tensor docked = ops::masked_scatter_rows(emb, mask, ops::linear(in[1], in[2]));
    return ops::mul(docked, 2.0);
  };
  EXPECT_TRUE(gradcheck(f, {table, features, proj}));
  table.zero_grad();
  ops::sum(f({table, features, proj})).backward();
  std::vector<double> gt = table.grad().to_vector<double>();
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(gt[5 * 4 + c], 0.0);  // placeholder rows were all overwritten
    EXPECT_EQ(gt[1 * 4 + c], 2.0);
  }
  EXPECT_TRUE(features.grad().defined());
  EXPECT_TRUE(proj.grad().defined());
}

TEST(MaskedScatterRows, Gradcheck) {
  Tensor x = leaf({2, 3, 2}, 4), src = leaf({2, 2}, 5);
  Tensor mask = mask_of({2, 3}, {1, 0, 0, 0, 0, 1});
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return ops::masked_scatter_rows(in[0], mask, in[1]); },
      {x, src}));
}

// ================================================================ shape ops

TEST(Concat, ValuesAlongEveryDim) {
  Tensor a = randn({2, 3, 4}, 1), b = randn({2, 3, 4}, 2);
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    const int64_t d = dim < 0 ? dim + 3 : dim;
    Shape sb = {2, 3, 4};
    sb[d] = 1;
    Tensor bb = randn(sb, 3);
    Tensor out = ops::concat({a, bb, b}, dim);
    Shape want = {2, 3, 4};
    want[d] = 2 * want[d] + 1;
    ASSERT_EQ(out.shape(), want);
    std::vector<float> ov = out.to_vector<float>(), av = a.to_vector<float>();
    std::vector<float> bv = b.to_vector<float>(), cv = bb.to_vector<float>();
    const Shape as = {2, 3, 4};
    for (int64_t i = 0; i < want[0]; ++i)
      for (int64_t j = 0; j < want[1]; ++j)
        for (int64_t k = 0; k < want[2]; ++k) {
          int64_t idx[3] = {i, j, k};
          int64_t p = idx[d];
          float expect;
          auto at = [&](const std::vector<float>& v, const Shape& s) {
            return v[(idx[0] * s[1] + idx[1]) * s[2] + idx[2]];
          };
          if (p < as[d]) {
            expect = at(av, as);
          } else if (p == as[d]) {
            idx[d] = 0;
            expect = at(cv, sb);
          } else {
            idx[d] = p - as[d] - 1;
            expect = at(bv, as);
          }
          ASSERT_EQ(ov[(i * want[1] + j) * want[2] + k], expect) << "dim " << dim;
        }
  }
  // Integer tensors and non-contiguous inputs.
  Tensor ia = ids_of({2}, {1, 2}), ib = ids_of({3}, {3, 4, 5});
  EXPECT_EQ(ops::concat({ia, ib}, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  Tensor t = a.transpose(0, 2);  // [4, 3, 2]
  EXPECT_TRUE(same_bits(ops::concat({t, t}, 1), ops::concat({t.contiguous(), t.contiguous()}, 1)));
}

TEST(Concat, Gradcheck) {
  Tensor a = leaf({2, 3}, 1), b = leaf({2, 1}, 2), c = leaf({2, 2}, 3);
  Tensor frozen = randn({2, 2}, 4, DType::f64);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ops::concat({in[0], frozen, in[1], in[2]}, -1);
      },
      {a, b, c}));
  Tensor x = leaf({1, 3}, 5);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ops::concat({in[0], in[1], in[0]}, 0);
      },
      {x, leaf({2, 3}, 6)}));
}

TEST(Concat, ArgumentErrors) {
  Tensor a = randn({2, 3}, 1);
  EXPECT_THROW(ops::concat({}, 0), ValueError);
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::concat({a, randn({3, 3}, 2)}, 1);
      },
      {"[concat]", "tensor 1", "[3, 3]"}));
  EXPECT_THROW(ops::concat({a, randn({2, 3, 1}, 2)}, 0), ShapeError);
  EXPECT_THROW(ops::concat({a, randn({2, 3}, 2, DType::f64)}, 0), DTypeError);
  EXPECT_THROW(ops::concat({a, a}, 2), ShapeError);
  EXPECT_THROW(ops::concat({a, a}, -3), ShapeError);
  EXPECT_THROW(ops::concat({Tensor::scalar(1.0), Tensor::scalar(2.0)}, 0), ShapeError);
}

TEST(Split, ViewsAndGradient) {
  Tensor x = randn({3, 7}, 1);
  std::vector<Tensor> parts = ops::split(x, {2, 0, 5}, -1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].shape(), (Shape{3, 2}));
  EXPECT_EQ(parts[1].shape(), (Shape{3, 0}));
  EXPECT_EQ(parts[2].shape(), (Shape{3, 5}));
  EXPECT_EQ(parts[2].raw_data(), x.slice(1, 2, 7).raw_data());  // a view
  EXPECT_TRUE(same_bits(ops::concat(parts, 1), x));
  Tensor xl = leaf({4, 3}, 2);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = ops::split(in[0], {1, 3}, 0);
        return ops::concat({ops::mul(p[1], 3.0), ops::exp(p[0])}, 0);
      },
      {xl}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::split(x, {2, 4}, 1); }, {"[split]", "6", "7"}));
  EXPECT_THROW(ops::split(x, {4, -1}, 0), ValueError);
  EXPECT_THROW(ops::split(x, {3}, 2), ShapeError);
}

TEST(Stack, ValuesAndGradient) {
  Tensor a = randn({2, 3}, 1), b = randn({2, 3}, 2);
  std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
  Tensor s0 = ops::stack({a, b}, 0);
  EXPECT_EQ(s0.shape(), (Shape{2, 2, 3}));
  std::vector<float> expect0 = av;
  expect0.insert(expect0.end(), bv.begin(), bv.end());
  EXPECT_EQ(s0.to_vector<float>(), expect0);
  Tensor s2 = ops::stack({a, b}, -1);  // new last dim
  EXPECT_EQ(s2.shape(), (Shape{2, 3, 2}));
  std::vector<float> v2 = s2.to_vector<float>();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(v2[2 * i], av[i]);
    EXPECT_EQ(v2[2 * i + 1], bv[i]);
  }
  EXPECT_EQ(ops::stack({a, b, a}, 1).shape(), (Shape{2, 3, 3}));
  Tensor x = leaf({2, 2}, 3), y = leaf({2, 2}, 4);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ops::stack({in[0], in[1], in[0]}, 1);
      },
      {x, y}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::stack({a, randn({3, 2}, 5)}, 0);
      },
      {"[stack]", "tensor 1"}));
  EXPECT_THROW(ops::stack({a, b}, 3), ShapeError);
  EXPECT_THROW(ops::stack({}, 0), ValueError);
}

// ================================================================ dropout

TEST(Dropout, MaskFollowsTheCounterFormula) {
  Tensor x = randn({4, 50}, 1);
  Generator gen(42);
  gen.reserve(17);  // a non-zero starting offset
  const double p = 0.25;
  Tensor out = ops::dropout(x, p, gen, true);
  EXPECT_EQ(gen.offset(), 17u + 200u);
  std::vector<float> xv = x.to_vector<float>(), ov = out.to_vector<float>();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  for (int i = 0; i < 200; ++i) {
    const bool keep = Generator::uniform_at(42, 17 + i) >= p;
    EXPECT_EQ(ov[i], keep ? xv[i] * scale : 0.0f) << i;
  }
}

TEST(Dropout, SameSeedSameMaskAndIndependentOfThreadCount) {
  ThreadCountGuard guard;
  Tensor x = Tensor::ones({100000});
  auto run = [&](int threads, uint64_t seed) {
    omp_set_num_threads(threads);
    Generator gen(seed);
    return ops::dropout(x, 0.1, gen, true);
  };
  Tensor a = run(1, 5);
  EXPECT_TRUE(same_bits(run(1, 5), a));
  EXPECT_TRUE(same_bits(run(2, 5), a));
  EXPECT_FALSE(same_bits(run(2, 6), a));
  // Consecutive draws from one generator differ.
  Generator gen(5);
  Tensor first = ops::dropout(x, 0.1, gen, true), second = ops::dropout(x, 0.1, gen, true);
  EXPECT_TRUE(same_bits(first, a));
  EXPECT_FALSE(same_bits(first, second));
}

TEST(Dropout, KeepFractionAndScale) {
  const int64_t n = 100000;
  Tensor x = Tensor::ones({n});
  for (double p : {0.1, 0.5, 0.9}) {
    Generator gen(11);
    std::vector<float> v = ops::dropout(x, p, gen, true).to_vector<float>();
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0;
    for (float e : v) {
      ASSERT_TRUE(e == 0.0f || e == scale) << e;
      kept += e != 0.0f;
    }
    const double frac = static_cast<double>(kept) / n;
    const double sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(frac, 1 - p, 5 * sigma) << "p = " << p;
  }
}

TEST(Dropout, BackwardUsesTheSameMask) {
  Tensor x = leaf({3, 40}, 2);
  // A fresh generator per call gives the same mask, so finite differences see a fixed function.
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator gen(3);
        return ops::dropout(in[0], 0.4, gen, true);
      },
      {x}));
  x.zero_grad();
  Generator gen(3);
  Tensor out = ops::dropout(x, 0.4, gen, true);
  ops::sum(out).backward();
  std::vector<double> ov = out.to_vector<double>(), xv = x.to_vector<double>();
  std::vector<double> gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < ov.size(); ++i) EXPECT_NEAR(gv[i], ov[i] / xv[i], 1e-12);
}

TEST(Dropout, EvalModeAndZeroPAreIdentity) {
  Tensor x = randn({5, 6}, 1);
  Generator gen(1);
  Tensor e = ops::dropout(x, 0.5, gen, false);
  EXPECT_TRUE(same_bits(e, x));
  Tensor z = ops::dropout(x, 0.0, gen, true);
  EXPECT_TRUE(same_bits(z, x));
  EXPECT_EQ(gen.offset(), 0u);  // nothing drawn
}

TEST(Dropout, ArgumentErrors) {
  Tensor x = randn({4}, 1);
  Generator gen(1);
  EXPECT_TRUE(
      throws_with<ValueError>([&] { ops::dropout(x, 1.0, gen, true); }, {"[dropout]", "[0, 1)"}));
  EXPECT_THROW(ops::dropout(x, -0.1, gen, true), ValueError);
  EXPECT_THROW(ops::dropout(x, std::nan(""), gen, true), ValueError);
  EXPECT_THROW(ops::dropout(x, 1.5, gen, false), ValueError);  // checked in eval mode too
  EXPECT_THROW(ops::dropout(ids_of({2}, {1, 2}), 0.5, gen, true), DTypeError);
}

// ================================================================ patchify

namespace {
// Plain Conv2d(kernel = stride = P) + flatten(2).transpose(1, 2), accumulated in double.
// images: [B, C, H, W], weight: [D, C, P, P], bias: [D] or undefined -> [B, N, D]
Tensor patchify_loop(const Tensor& images, const Tensor& weight, const Tensor& bias, int64_t p) {
  const int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t d = weight.size(0), hp = h / p, wp = w / p;
  std::vector<double> iv = images.to_vector<double>(), wv = weight.to_vector<double>();
  std::vector<double> bv = bias.defined() ? bias.to_vector<double>() : std::vector<double>(d, 0);
  std::vector<double> out(b * hp * wp * d);
  for (int64_t n = 0; n < b; ++n)
    for (int64_t py = 0; py < hp; ++py)
      for (int64_t px = 0; px < wp; ++px)
        for (int64_t o = 0; o < d; ++o) {
          double acc = bv[o];
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t ky = 0; ky < p; ++ky)
              for (int64_t kx = 0; kx < p; ++kx)
                acc += iv[((n * c + ch) * h + py * p + ky) * w + px * p + kx] *
                       wv[((o * c + ch) * p + ky) * p + kx];
          out[((n * hp + py) * wp + px) * d + o] = acc;
        }
  return Tensor::from_vector<double>({b, hp * wp, d}, out).to(images.dtype());
}
}  // namespace

TEST(Patchify, MatchesConvolutionLoop) {
  Tensor images = randn({2, 3, 8, 12}, 1), weight = randn({5, 3, 4, 4}, 2), bias = randn({5}, 3);
  Tensor out = ops::patchify(images, weight, bias, 4);
  ASSERT_EQ(out.shape(), (Shape{2, 6, 5}));
  EXPECT_TRUE(all_close(out, patchify_loop(images, weight, bias, 4), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(ops::patchify(images, weight, Tensor(), 4),
                        patchify_loop(images, weight, Tensor(), 4), 1e-5, 1e-5));
  // P = 1 is a per-pixel linear map; a non-contiguous image view works too.
  Tensor w1 = randn({4, 3, 1, 1}, 4);
  Tensor img_t = randn({2, 3, 5, 3}, 5).transpose(2, 3);  // [2, 3, 3, 5]
  EXPECT_TRUE(all_close(ops::patchify(img_t, w1, Tensor(), 1),
                        patchify_loop(img_t.contiguous(), w1, Tensor(), 1), 1e-5, 1e-5));
}

TEST(Patchify, GradcheckImagesWeightBias) {
  Tensor images = leaf({2, 2, 4, 6}, 1), weight = leaf({3, 2, 2, 2}, 2), bias = leaf({3}, 3);
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return ops::patchify(in[0], in[1], in[2], 2); },
                {images, weight, bias}));
}

// The f32 backward (sgemm) agrees with the f64 backward (reference GEMM).
TEST(Patchify, F32GradientsMatchF64) {
  Tensor g64 = randn({2, 12, 8}, 4, DType::f64);
  auto grads = [&](DType dt) {
    Tensor images = randn({2, 3, 12, 16}, 1, dt).set_requires_grad();
    Tensor weight = randn({8, 3, 4, 4}, 2, dt).set_requires_grad();
    Tensor bias = randn({8}, 3, dt).set_requires_grad();
    ops::patchify(images, weight, bias, 4).backward(g64.to(dt));
    return std::vector<Tensor>{images.grad(), weight.grad(), bias.grad()};
  };
  std::vector<Tensor> a = grads(DType::f32), b = grads(DType::f64);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(all_close(a[i], b[i].to(DType::f32), 1e-4, 1e-4)) << "gradient " << i;
}

TEST(Patchify, ArgumentErrors) {
  Tensor images = randn({1, 3, 8, 8}, 1), weight = randn({4, 3, 4, 4}, 2);
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        ops::patchify(randn({1, 3, 8, 10}, 1), weight, Tensor(), 4);
      },
      {"[patchify]", "8x10", "4"}));
  EXPECT_THROW(ops::patchify(images, randn({4, 2, 4, 4}, 2), Tensor(), 4), ShapeError);
  EXPECT_THROW(ops::patchify(images, weight, Tensor(), 2), ShapeError);
  EXPECT_THROW(ops::patchify(images, weight, randn({3}, 3), 4), ShapeError);
  EXPECT_THROW(ops::patchify(images, weight, Tensor(), 0), ValueError);
  EXPECT_THROW(ops::patchify(randn({3, 8, 8}, 1), weight, Tensor(), 4), ShapeError);
  EXPECT_THROW(ops::patchify(images.to(DType::f64), weight, Tensor(), 4), DTypeError);
}

// ================================================================ mean_pool

TEST(MeanPool, MaskedMeanAndEmptyRowsGiveZeros) {
  Tensor x = randn({3, 4, 2}, 1, DType::f64);
  std::vector<uint8_t> mv = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0};
  Tensor out = ops::mean_pool(x, mask_of({3, 4}, mv));
  ASSERT_EQ(out.shape(), (Shape{3, 2}));
  std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>();
  for (int b = 0; b < 3; ++b)
    for (int c = 0; c < 2; ++c) {
      double s = 0;
      int n = 0;
      for (int t = 0; t < 4; ++t)
        if (mv[b * 4 + t]) {
          s += xv[(b * 4 + t) * 2 + c];
          ++n;
        }
      EXPECT_NEAR(ov[b * 2 + c], n ? s / n : 0.0, 1e-12);
    }
  EXPECT_TRUE(all_close(ops::mean_pool(x), ops::mean(x, {1}), 1e-12, 1e-14));
  EXPECT_EQ(ops::mean_pool(randn({2, 0, 3}, 1)).to_vector<float>(), std::vector<float>(6, 0.0f));
}

TEST(MeanPool, Gradcheck) {
  Tensor x = leaf({2, 3, 4}, 2);
  Tensor mask = mask_of({2, 3}, {1, 1, 0, 0, 0, 0});
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return ops::mean_pool(in[0], mask); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return ops::mean_pool(in[0]); }, {x}));
}

TEST(MeanPool, ArgumentErrors) {
  Tensor x = randn({2, 3, 4}, 1);
  EXPECT_THROW(ops::mean_pool(randn({2, 3}, 1)), ShapeError);
  EXPECT_THROW(ops::mean_pool(x, mask_of({3, 2}, {1, 1, 1, 1, 1, 1})), ShapeError);
  EXPECT_THROW(ops::mean_pool(x, Tensor::ones({2, 3})), DTypeError);
  EXPECT_THROW(ops::mean_pool(ids_of({1, 1, 1}, {1})), DTypeError);
}
