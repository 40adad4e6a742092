// Edge cases and regressions for the engine core: shapes and factories, views and strided
// copies, dtype conversion, the allocator, the generator, the autograd tape, and the
// elementwise, reduce and matmul ops on zero-size, scalar and non-contiguous inputs.
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/core/random.h"
#include "metalm/core/threads.h"
#include "metalm/ops/ops.h"
#include "metalm/train/optim.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::leaf;
using metalm::test::randn;
using metalm::test::ThreadCountGuard;

using metalm::test::throws_with;

namespace {

bool same_storage(const Tensor& a, const Tensor& b) {
  return a.impl().storage == b.impl().storage;
}

// Plain triple loop in f64 over op(a) op(b) for 2-D or batched 3-D operands (any layout).
Tensor naive_matmul(const Tensor& a_in, const Tensor& b_in, bool ta, bool tb) {
  Tensor a = ta ? a_in.detach().transpose(-1, -2) : a_in.detach();
  Tensor b = tb ? b_in.detach().transpose(-1, -2) : b_in.detach();
  const bool batched = a.dim() == 3;
  const int64_t batch = batched ? a.size(0) : 1;
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  const bool b_shared = b.dim() == 2;
  Shape out_shape = batched ? Shape{batch, m, n} : Shape{m, n};
  std::vector<double> out(static_cast<size_t>(batch * m * n), 0.0);
  for (int64_t z = 0; z < batch; ++z)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p)
          acc += av[(z * m + i) * k + p] * bv[((b_shared ? 0 : z) * k + p) * n + j];
        out[(z * m + i) * n + j] = acc;
      }
  return Tensor::from_vector<double>(out_shape, out);
}

}  // namespace

// ================================================================ shapes and factories

TEST(CoreShapes, NumelOverflowThrowsInsteadOfWrapping) {
  const int64_t big = int64_t(1) << 40;
  EXPECT_TRUE(throws_with<ShapeError>([&] { shape_numel({big, big}); }, "[shape]"));
  // A zero anywhere makes the product 0, however large the other sizes are.
  EXPECT_EQ(shape_numel({big, big, 0}), 0);
  EXPECT_EQ(shape_numel({}), 1);
  // Before the fix this wrapped to 0 elements and returned a tensor claiming 2^80 of them.
  EXPECT_THROW(Tensor::empty({big, big}), ShapeError);
  EXPECT_THROW(Tensor::zeros({big, big, 1 << 20}), ShapeError);
  EXPECT_THROW(Tensor::ones({1}).expand({big}).reshape({big, big}), ShapeError);
  EXPECT_THROW(Tensor::ones({1}).expand({big}).reshape({-1, big, big}), ShapeError);
  EXPECT_THROW(Tensor::ones({1, 1}).expand({big, big}), ShapeError);
}

TEST(CoreShapes, AbsurdAllocationsThrowAClearError) {
  // 3 * 2^59 f64 elements = 1.5 * 2^63 bytes: fits size_t, but made the size-class loop spin
  // forever (p * 2 wrapped to 0).
  EXPECT_TRUE(throws_with<Error>([] { Tensor::empty({int64_t(3) << 59}, DType::f64); }, "["));
  // 2^61 f64 elements = 2^64 bytes: wrapped to a 0-byte allocation.
  EXPECT_TRUE(throws_with<Error>([] { Tensor::empty({int64_t(1) << 61}, DType::f64); }, "["));
  EXPECT_TRUE(throws_with<Error>([] { Tensor::empty({int64_t(1) << 50}, DType::f32); }, "["));
  EXPECT_TRUE(throws_with<Error>([] { memory_allocate((size_t(1) << 63) + 1); }, "[allocator]"));
  EXPECT_TRUE(throws_with<ShapeError>([] { Tensor::empty({2, -1}); }, "[empty]"));
  // The allocator is still usable afterwards.
  Tensor t = Tensor::full({3}, 2.0);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{2, 2, 2}));
}

TEST(CoreShapes, ZeroSizeTensorsThroughEveryOp) {
  Tensor z = Tensor::zeros({0, 3});
  EXPECT_EQ(z.numel(), 0);
  EXPECT_TRUE(z.to_vector<float>().empty());
  EXPECT_EQ(ops::add(z, Tensor::ones({3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(ops::mul(Tensor::ones({0, 1}), Tensor::ones({1, 3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(ops::exp(z).shape(), (Shape{0, 3}));
  EXPECT_EQ(ops::gelu(z.transpose(0, 1)).shape(), (Shape{3, 0}));
  // Sums over an empty dim are 0; over a non-empty dim of an empty tensor, empty.
  EXPECT_EQ(ops::sum(z, {0}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(ops::sum(z, {1}).shape(), (Shape{0}));
  EXPECT_EQ(ops::sum(z).item<float>(), 0.0f);
  EXPECT_EQ(ops::sum(z.transpose(0, 1), {1}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(ops::max(z, 1).shape(), (Shape{0}));
  EXPECT_EQ(ops::max(z, 1, true).shape(), (Shape{0, 1}));
  EXPECT_THROW(ops::max(z, 0), ShapeError);
  EXPECT_THROW(ops::mean(z, {0}), ShapeError);
  EXPECT_EQ(ops::argmax(Tensor::zeros({0, 4})).shape(), (Shape{0}));
  // Views of empty tensors.
  EXPECT_EQ(z.reshape({3, 0}).shape(), (Shape{3, 0}));
  EXPECT_EQ(z.reshape({-1}).shape(), (Shape{0}));
  EXPECT_EQ(z.transpose(0, 1).reshape({0}).shape(), (Shape{0}));
  EXPECT_EQ(z.transpose(0, 1).contiguous().shape(), (Shape{3, 0}));
  Tensor x = randn({2, 5, 4}, 1);
  Tensor e = x.slice(1, 2, 2);
  EXPECT_EQ(e.shape(), (Shape{2, 0, 4}));
  EXPECT_EQ(e.contiguous().numel(), 0);
  EXPECT_EQ(e.slice(1, 0, 0).shape(), (Shape{2, 0, 4}));
  EXPECT_EQ(e.to(DType::bf16).shape(), (Shape{2, 0, 4}));
  // Gradients of empty leaves are empty, and a reduction over them still has a gradient.
  Tensor zl = Tensor::zeros({0, 3}, DType::f64).set_requires_grad();
  ops::sum(ops::mul(zl, 2.0)).backward();
  ASSERT_TRUE(zl.grad().defined());
  EXPECT_EQ(zl.grad().shape(), (Shape{0, 3}));
}

TEST(CoreShapes, ScalarsWithShapeEmpty) {
  Tensor s = Tensor::scalar(2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_TRUE(s.is_contiguous());
  Tensor m = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(ops::add(s, m).to_vector<float>(), (std::vector<float>{3.5, 4.5, 5.5, 6.5, 7.5, 8.5}));
  EXPECT_EQ(ops::mul(m, s).shape(), (Shape{2, 3}));
  EXPECT_EQ(ops::mul(s, s).shape(), Shape{});
  EXPECT_EQ(ops::mul(s, s).item<float>(), 6.25f);
  EXPECT_EQ(ops::exp(s).shape(), Shape{});
  EXPECT_EQ(ops::sum(s).shape(), Shape{});
  EXPECT_EQ(ops::sum(s).item<float>(), 2.5f);
  EXPECT_EQ(ops::mean(s, {}, true).shape(), Shape{});
  EXPECT_EQ(s.reshape({1, 1}).reshape({}).item<float>(), 2.5f);
  EXPECT_EQ(s.unsqueeze(0).shape(), (Shape{1}));
  EXPECT_EQ(s.unsqueeze(-1).shape(), (Shape{1}));
  EXPECT_EQ(s.expand({2, 2}).to_vector<float>(), (std::vector<float>{2.5, 2.5, 2.5, 2.5}));
  EXPECT_EQ(s.permute({}).item<float>(), 2.5f);
  EXPECT_THROW(s.squeeze(0), ShapeError);
  EXPECT_THROW(s.transpose(0, 1), ShapeError);
  EXPECT_THROW(s.size(0), ShapeError);
  EXPECT_THROW(ops::sum(s, {0}), ShapeError);
  EXPECT_THROW(ops::matmul(s, m), ShapeError);
  EXPECT_THROW(ops::argmax(s), ShapeError);
  // d/ds sum(w * (s + m)) = sum(w); d/dm = w.
  Tensor s64 = Tensor::scalar(0.3, DType::f64).set_requires_grad();
  Tensor m64 = leaf({2, 3}, 2);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::add(in[0], in[1]); }, {s64, m64}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::mul(in[1], in[0]); }, {s64, m64}));
  EXPECT_TRUE(
      gradcheck([](auto& in) { return ops::div(in[1], ops::add(in[0], 2.0)); }, {s64, m64}));
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].expand({3, 2}); }, {s64}));
}

TEST(CoreShapes, NegativeDimsMatchPositiveOnes) {
  Tensor x = randn({2, 3, 4}, 3);
  EXPECT_EQ(x.size(-1), 4);
  EXPECT_EQ(x.size(-3), 2);
  EXPECT_THROW(x.size(-4), ShapeError);
  EXPECT_TRUE(all_close(x.transpose(-1, -3), x.transpose(2, 0), 0, 0));
  EXPECT_TRUE(all_close(x.slice(-1, -3, -1), x.slice(2, 1, 3), 0, 0));
  EXPECT_TRUE(all_close(ops::sum(x, {-1, -3}), ops::sum(x, {0, 2}), 0, 0));
  EXPECT_TRUE(all_close(ops::max(x, -2, true), ops::max(x, 1, true), 0, 0));
  EXPECT_TRUE(all_close(x.unsqueeze(-1), x.unsqueeze(3), 0, 0));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_TRUE(all_close(x.unsqueeze(1).squeeze(-3), x, 0, 0));
  EXPECT_THROW(ops::sum(x, {0, -3}), ShapeError);  // the same dim twice
  EXPECT_THROW(x.permute({0, 1, -4}), ShapeError);
  EXPECT_THROW(x.slice(0, -5, 1), ShapeError);
  EXPECT_THROW(x.unsqueeze(-5), ShapeError);
}

TEST(CoreShapes, BroadcastingRankMismatchedShapes) {
  Tensor a = randn({4, 1, 3}, 4), b = randn({2, 1}, 5);
  Tensor c = ops::sub(a, b);
  ASSERT_EQ(c.shape(), (Shape{4, 2, 3}));
  std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>(),
                     cv = c.to_vector<float>();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(cv[(i * 2 + j) * 3 + k], av[i * 3 + k] - bv[j]);
  // Both operands broadcast: [3, 1] x [1, 4]; and a 0 against a 1.
  Tensor col = Tensor::from_vector<float>({3, 1}, {1, 2, 3});
  Tensor row = Tensor::from_vector<float>({1, 4}, {1, 10, 100, 1000});
  EXPECT_EQ(ops::mul(col, row).to_vector<float>(),
            (std::vector<float>{1, 10, 100, 1000, 2, 20, 200, 2000, 3, 30, 300, 3000}));
  EXPECT_EQ(ops::add(Tensor::ones({0, 1}), Tensor::ones({1, 3})).shape(), (Shape{0, 3}));
  EXPECT_THROW(ops::add(Tensor::ones({0}), Tensor::ones({3})), ShapeError);
  EXPECT_THROW(ops::add(Tensor::ones({2, 3}), Tensor::ones({3, 2})), ShapeError);
  Tensor a64 = leaf({4, 1, 3}, 6), b64 = leaf({2, 1}, 7);
  for (auto f : {ops::add, ops::sub, ops::mul})
    EXPECT_TRUE(gradcheck([f](auto& in) { return f(in[0], in[1]); }, {a64, b64}));
  Tensor c64 = leaf({3, 1}, 8), r64 = leaf({4}, 9);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::mul(in[0], in[1]); }, {c64, r64}));
}

TEST(CoreShapes, SumToShapeRejectsShapesItCannotReduceTo) {
  Tensor g = randn({2, 6}, 10);
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::sum_to_shape(g, {3, 4}); }, "[sum_to_shape]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::sum_to_shape(g, {2, 3}); }, "[sum_to_shape]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::sum_to_shape(g, {1, 2, 6}); }, "[sum_to_shape]"));
  EXPECT_TRUE(all_close(ops::sum_to_shape(g, {6}), ops::sum(g, {0}), 0, 0));
  EXPECT_TRUE(all_close(ops::sum_to_shape(g, {2, 1}), ops::sum(g, {1}, true), 0, 0));
  EXPECT_TRUE(all_close(ops::sum_to_shape(g, {}), ops::sum(g), 0, 0));
}

// ================================================================ views and copies

TEST(CoreViews, ExpandRejectsNegativeSizes) {
  Tensor x = Tensor::ones({1, 3});
  EXPECT_TRUE(throws_with<ShapeError>([&] { x.expand({-2, 3}); }, "[expand]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { x.expand({2, -2, 3}); }, "[expand]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { x.expand({-1, -1, 3}); }, "[expand]"));
  EXPECT_EQ(x.expand({-1, 3}).shape(), (Shape{1, 3}));  // -1 keeps the size
  EXPECT_EQ(x.expand({0, 3}).shape(), (Shape{0, 3}));   // 1 -> 0 is a valid broadcast
}

TEST(CoreViews, ReshapeOfNonContiguousViewsIsAViewWhenPossible) {
  Tensor base = Tensor::arange(48, DType::f32).reshape({4, 12});
  // Column slice with an offset: [4, 6] with strides [12, 1] at offset 3.
  Tensor s = base.slice(1, 3, 9);
  std::vector<float> sv = s.to_vector<float>();
  Tensor r = s.reshape({4, 2, 3});
  EXPECT_TRUE(same_storage(r, base));
  EXPECT_EQ(r.strides(), (Shape{12, 3, 1}));
  EXPECT_EQ(r.to_vector<float>(), sv);
  // Merging the rows of a column slice is impossible without a copy.
  Tensor flat = s.reshape({24});
  EXPECT_FALSE(same_storage(flat, base));
  EXPECT_EQ(flat.to_vector<float>(), sv);
  // Permuted [B, H, T, D] -> [B, H, T*D] can keep T, D merged only when they are adjacent.
  Tensor q = Tensor::arange(2 * 3 * 4 * 5, DType::f32).reshape({2, 4, 3, 5});  // [B, T, H, D]
  Tensor p = q.permute({0, 2, 1, 3});                                          // [B, H, T, D]
  Tensor merged_bh = p.reshape({6, 4, 5});
  EXPECT_FALSE(same_storage(merged_bh, q));  // B and H are not adjacent in memory
  EXPECT_EQ(merged_bh.to_vector<float>(), p.to_vector<float>());
  Tensor split_d = p.reshape({2, 3, 4, 5, 1});
  EXPECT_TRUE(same_storage(split_d, q));
  EXPECT_EQ(split_d.to_vector<float>(), p.to_vector<float>());
  // Expanded (stride-0) views: splitting the broadcast dim stays a view with stride 0.
  Tensor e = Tensor::from_vector<float>({1, 3}, {1, 2, 3}).expand({4, 3});
  Tensor es = e.reshape({2, 2, 3});
  EXPECT_TRUE(same_storage(es, e));
  EXPECT_EQ(es.strides()[0], 0);
  EXPECT_EQ(es.to_vector<float>(), e.to_vector<float>());
  EXPECT_EQ(e.reshape({12}).to_vector<float>(), e.to_vector<float>());
  // Gradients through view-or-copy reshapes.
  Tensor x = leaf({4, 12}, 11);
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].slice(1, 3, 9).reshape({4, 2, 3}); }, {x}));
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].slice(1, 3, 9).reshape({24}); }, {x}));
  EXPECT_TRUE(gradcheck(
      [](auto& in) {
        return in[0].reshape({4, 3, 4}).permute({1, 0, 2}).reshape({3, 16});
      },
      {x}));
}

TEST(CoreViews, ViewsOfViewsIndexAndDifferentiateCorrectly) {
  Tensor base = Tensor::arange(60, DType::f32).reshape({3, 4, 5});
  // v[i, j, k] = base[1 + k', ...]: permute, then slice with an offset, then slice again.
  Tensor v = base.permute({2, 0, 1}).slice(0, 1, 4).slice(2, 1, 3);  // [3, 3, 2]
  std::vector<float> vv = v.to_vector<float>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k)
        EXPECT_EQ(vv[(i * 3 + j) * 2 + k], j * 20 + (k + 1) * 5 + (i + 1));
  // Copies into a strided destination land where the view says.
  Tensor dst = Tensor::zeros({3, 4, 5});
  copy_into(dst.permute({2, 0, 1}).slice(0, 1, 4).slice(2, 1, 3), v);
  std::vector<float> dv = dst.to_vector<float>(), bv = base.to_vector<float>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) {
        bool inside = k >= 1 && k < 4 && j >= 1 && j < 3;
        EXPECT_EQ(dv[(i * 4 + j) * 5 + k], inside ? bv[(i * 4 + j) * 5 + k] : 0.0f);
      }
  Tensor x = leaf({3, 4, 5}, 12);
  EXPECT_TRUE(gradcheck(
      [](auto& in) {
        Tensor w = in[0].permute({2, 0, 1}).slice(0, 1, 4).slice(2, 1, 3);
        return ops::mul(w.unsqueeze(0).expand({2, 3, 3, 2}), w);  // the same view used twice
      },
      {x}));
}

TEST(CoreViews, SliceEdgeCases) {
  Tensor x = Tensor::arange(10, DType::f32);
  EXPECT_EQ(x.slice(0, 4, 4).numel(), 0);
  EXPECT_EQ(x.slice(0, 10, 10).numel(), 0);
  EXPECT_EQ(x.slice(0, 8, 100).to_vector<float>(), (std::vector<float>{8, 9}));  // end clamps
  EXPECT_EQ(x.slice(0, -2, 10).to_vector<float>(), (std::vector<float>{8, 9}));
  EXPECT_EQ(x.slice(0, 2, 6).slice(0, 1, 3).to_vector<float>(), (std::vector<float>{3, 4}));
  EXPECT_THROW(x.slice(0, 5, 4), ShapeError);
  EXPECT_THROW(x.slice(0, 11, 12), ShapeError);
  EXPECT_THROW(x.slice(1, 0, 1), ShapeError);
  Tensor l = leaf({6}, 13);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::mul(in[0].slice(0, 2, 2), 3.0); }, {l}));
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].slice(0, 1, 5).slice(0, -2, 4); }, {l}));
}

TEST(CoreViews, NonContiguousInputsToEveryOpMatchContiguousCopies) {
  Tensor base = randn({4, 6, 8}, 14);
  std::vector<std::pair<const char*, Tensor>> views = {
      {"permuted", base.permute({2, 0, 1})},
      {"sliced", base.slice(2, 1, 7).slice(0, 1, 3)},
      {"expanded", base.slice(0, 0, 1).expand({5, 6, 8})},
      {"transposed-sliced", base.transpose(0, 2).slice(1, 2, 5)},
  };
  for (auto& [name, v] : views) {
    SCOPED_TRACE(name);
    Tensor c = v.contiguous();
    ASSERT_TRUE(c.is_contiguous());
    EXPECT_EQ(c.to_vector<float>(), v.to_vector<float>());
    for (auto f : {ops::exp, ops::tanh, ops::gelu, ops::silu, ops::relu, ops::square})
      EXPECT_TRUE(all_close(f(v), f(c), 0, 0));
    EXPECT_TRUE(all_close(ops::add(v, v), ops::add(c, c), 0, 0));
    EXPECT_TRUE(all_close(ops::mul(v, c), ops::mul(c, c), 0, 0));
    EXPECT_TRUE(all_close(ops::div(v, ops::add(ops::square(c), 1.0)),
                          ops::div(c, ops::add(ops::square(c), 1.0)), 0, 0));
    EXPECT_TRUE(all_close(ops::add(v, 1.5), ops::add(c, 1.5), 0, 0));
    for (std::vector<int64_t> dims :
         {std::vector<int64_t>{0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}, {}})
      EXPECT_TRUE(all_close(ops::sum(v, dims), ops::sum(c, dims), 1e-5, 1e-5));
    for (int64_t d = 0; d < 3; ++d) EXPECT_TRUE(all_close(ops::max(v, d), ops::max(c, d), 0, 0));
    EXPECT_EQ(ops::argmax(v).to_vector<int64_t>(), ops::argmax(c).to_vector<int64_t>());
    EXPECT_TRUE(all_close(v.to(DType::f64), c.to(DType::f64), 0, 0));
    EXPECT_TRUE(
        all_close(v.to(DType::bf16).to(DType::f32), c.to(DType::bf16).to(DType::f32), 0, 0));
    EXPECT_TRUE(all_close(v.clone(), c, 0, 0));
    // matmul on the last two dims, with the view as either operand.
    Tensor w = randn({v.size(-1), 5}, 15);
    EXPECT_TRUE(all_close(ops::matmul(v, w), ops::matmul(c, w), 1e-5, 1e-5));
    Tensor w2 = randn({v.size(0), 3, v.size(1)}, 16);
    EXPECT_TRUE(all_close(ops::matmul(w2, v), ops::matmul(w2, c), 1e-5, 1e-5));
    EXPECT_TRUE(
        all_close(ops::matmul(v, v, false, true), ops::matmul(c, c, false, true), 1e-5, 1e-5));
    EXPECT_TRUE(all_close(ops::linear(v, randn({7, v.size(-1)}, 17)),
                          ops::linear(c, randn({7, v.size(-1)}, 17)), 1e-5, 1e-5));
  }
}

TEST(CoreViews, CopyIntoConvertsAndRejectsShapeMismatch) {
  Tensor src = Tensor::from_vector<double>({2, 2}, {1.25, -2.5, 3.75, 4.0});
  Tensor dst = Tensor::zeros({2, 2}, DType::f32);
  copy_into(dst.transpose(0, 1), src);
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1.25f, 3.75f, -2.5f, 4.0f}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { copy_into(dst, Tensor::zeros({4})); }, "[copy]"));
  // Writing into a broadcast view would write one element from many places.
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        copy_into(Tensor::zeros({1, 3}).expand({4, 3}), Tensor::ones({4, 3}));
      },
      "[copy]"));
  // Overlapping strided source and destination in one storage: shift the rows of x down by one
  // through transposed views. Without a snapshot of the source, row 2 read the new row 1.
  Tensor x = Tensor::arange(20, DType::f32).reshape({4, 5});
  Tensor xt = x.transpose(0, 1);  // [5, 4], strides [1, 5]
  copy_into(xt.slice(1, 1, 4), xt.slice(1, 0, 3));
  std::vector<float> xv = x.to_vector<float>();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 5; ++c) EXPECT_EQ(xv[r * 5 + c], (r == 0 ? 0 : r - 1) * 5 + c);
}

// ================================================================ dtype conversions

TEST(CoreDTypes, Bf16RoundingOfSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(nan))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(-nan))));
  // A signalling NaN whose payload sits only in the low 16 bits must not become Inf.
  uint32_t snan_bits = 0x7f800001u;
  float snan;
  std::memcpy(&snan, &snan_bits, 4);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(snan))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(inf)), inf);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-inf)), -inf);
  // The largest f32 rounds up past the largest bf16, to Inf (as round-to-nearest-even says).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::max())), inf);
  EXPECT_EQ(f32_to_bf16(-0.0f).bits, 0x8000);
  // Denormals: 2^-133 is exact in bf16; 2^-149 (smallest f32 denormal) rounds to 0.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::ldexp(1.0f, -133))), std::ldexp(1.0f, -133));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::ldexp(1.0f, -149))), 0.0f);
  // 1.5 * 2^-133 is a tie between 2^-133 (odd mantissa) and 2^-132 (even): goes to 2^-132.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::ldexp(3.0f, -134))), std::ldexp(1.0f, -132));
  Tensor t = Tensor::from_vector<float>({4}, {nan, inf, -inf, 1e-40f}).to(DType::bf16);
  std::vector<float> back = t.to(DType::f32).to_vector<float>();
  EXPECT_TRUE(std::isnan(back[0]));
  EXPECT_EQ(back[1], inf);
  EXPECT_EQ(back[2], -inf);
  EXPECT_EQ(back[3], std::ldexp(1.0f, -133));  // nearest bf16 denormal to 1e-40
}

TEST(CoreDTypes, FloatToIntConversionsSaturateAndMapNaNToZero) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = Tensor::from_vector<float>({7}, {-1.5f, 1e10f, -1e10f, nan, 300.f, -300.f, 2.9f});
  EXPECT_EQ(x.to(DType::i32).to_vector<int32_t>(),
            (std::vector<int32_t>{-1, std::numeric_limits<int32_t>::max(),
                                  std::numeric_limits<int32_t>::min(), 0, 300, -300, 2}));
  EXPECT_EQ(x.to(DType::u8).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 255, 0, 0, 255, 0, 2}));
  Tensor big = Tensor::from_vector<double>({3}, {1e19, -1e19, -0.9});
  EXPECT_EQ(big.to(DType::i64).to_vector<int64_t>(),
            (std::vector<int64_t>{std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::min(), 0}));
  // bf16 sources go through the same rules.
  EXPECT_EQ(x.to(DType::bf16).to(DType::i32).to_vector<int32_t>()[1],
            std::numeric_limits<int32_t>::max());
  EXPECT_EQ(x.to(DType::bf16).to(DType::i32).to_vector<int32_t>()[3], 0);
  // item<int>() and full() of integer dtypes follow them too.
  EXPECT_EQ(Tensor::scalar(1e30, DType::f64).item<int64_t>(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Tensor::scalar(std::nan(""), DType::f32).item<int32_t>(), 0);
  EXPECT_EQ(Tensor::full({2}, 1e20, DType::i32).to_vector<int32_t>()[0],
            std::numeric_limits<int32_t>::max());
  EXPECT_EQ(Tensor::full({1}, -3.0, DType::u8).item<int64_t>(), 0);
  EXPECT_EQ(Tensor::full({1}, -3.0, DType::i64).item<int64_t>(), -3);
  // Integer -> integer narrowing wraps (two's complement), as in PyTorch.
  Tensor wide = Tensor::from_vector<int64_t>({2}, {(int64_t(1) << 32) + 7, -1});
  EXPECT_EQ(wide.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{7, -1}));
  EXPECT_EQ(wide.to(DType::u8).to_vector<uint8_t>(), (std::vector<uint8_t>{7, 255}));
  // Large i64 values survive an i64 -> f64 -> i64 round trip when exactly representable.
  Tensor exact = Tensor::from_vector<int64_t>({1}, {int64_t(1) << 62});
  EXPECT_EQ(exact.to(DType::f64).to(DType::i64).item<int64_t>(), int64_t(1) << 62);
}

// ================================================================ allocator

TEST(CoreAllocator, SizeClassesReuseAndStats) {
  memory_empty_cache();
  const MemoryStats s0 = memory_stats();
  EXPECT_EQ(s0.cached_bytes, 0u);
  void* a = memory_allocate(100);  // class 128
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(memory_stats().current_bytes, s0.current_bytes + 128);
  memory_release(a, 100);
  EXPECT_EQ(memory_stats().current_bytes, s0.current_bytes);
  EXPECT_EQ(memory_stats().cached_bytes, 128u);
  void* b = memory_allocate(65);  // same class: the cached block comes back
  EXPECT_EQ(b, a);
  EXPECT_EQ(memory_stats().cached_bytes, 0u);
  memory_release(b, 65);
  // Zero bytes still gives a distinct, usable block.
  void* z = memory_allocate(0);
  EXPECT_NE(z, nullptr);
  memory_release(z, 0);
  // Above 4 KiB: power-of-two ranges split in quarters: 5000 -> 5120, 9000 -> 10240.
  void* c = memory_allocate(5000);
  EXPECT_EQ(memory_stats().current_bytes, s0.current_bytes + 5120);
  memory_release(c, 5000);
  void* d = memory_allocate(9000);
  EXPECT_EQ(memory_stats().current_bytes, s0.current_bytes + 10240);
  memory_release(d, 9000);
  // Many interleaved allocations: accounting returns to the start, the cache holds the rest.
  std::vector<std::pair<void*, size_t>> live;
  Generator g(1);
  for (int i = 0; i < 2000; ++i) {
    if (!live.empty() && g.randint(0, 3) == 0) {
      size_t j = static_cast<size_t>(g.randint(0, static_cast<int64_t>(live.size())));
      memory_release(live[j].first, live[j].second);
      live.erase(live.begin() + static_cast<int64_t>(j));
    } else {
      size_t bytes = static_cast<size_t>(g.randint(0, 100000));
      void* p = memory_allocate(bytes);
      std::memset(p, 0xab, bytes);  // ASan checks the block really is that large
      live.emplace_back(p, bytes);
    }
  }
  for (auto& [p, n] : live) memory_release(p, n);
  const MemoryStats s1 = memory_stats();
  EXPECT_EQ(s1.current_bytes, s0.current_bytes);
  EXPECT_GT(s1.cached_bytes, 0u);
  EXPECT_GE(s1.peak_bytes, s1.current_bytes);
  memory_empty_cache();
  EXPECT_EQ(memory_stats().cached_bytes, 0u);
  EXPECT_EQ(memory_stats().current_bytes, s0.current_bytes);
}

// ================================================================ generator

TEST(CoreGenerator, UniformStaysBelowHighAfterRoundingToTheDtype) {
  // Counter 4593458 of seed 0 draws u = 0.99999997233..., which rounds to 1.0f in f32.
  Generator g;
  g.set_state(0, 4593458);
  EXPECT_LT(g.uniform({1}).item<float>(), 1.0f);
  // bf16 keeps 8 bits: about 1 draw in 512 used to round up to exactly `high`.
  Generator gb(3);
  std::vector<float> v =
      gb.uniform({100000}, 0.0, 1.0, DType::bf16).to(DType::f32).to_vector<float>();
  for (float x : v) ASSERT_TRUE(x >= 0.0f && x < 1.0f) << x;
  std::vector<float> w =
      gb.uniform({100000}, -2.0, 2.0, DType::bf16).to(DType::f32).to_vector<float>();
  for (float x : w) ASSERT_TRUE(x >= -2.0f && x < 2.0f) << x;
  // Mean and variance of U[0, 1): 1/2 and 1/12.
  Generator gf(4);
  std::vector<double> u = gf.uniform({200000}, 0.0, 1.0, DType::f64).to_vector<double>();
  double mean = 0, var = 0;
  for (double x : u) mean += x;
  mean /= static_cast<double>(u.size());
  for (double x : u) var += (x - mean) * (x - mean);
  var /= static_cast<double>(u.size());
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / 200000));
  EXPECT_NEAR(var, 1.0 / 12, 0.002);
}

TEST(CoreGenerator, NormalMomentsAndIndependentDraws) {
  Generator g(7);
  const int64_t n = 200000;
  std::vector<double> v = g.normal({n}, 1.5, 2.0, DType::f64).to_vector<double>();
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= n;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= n;
  EXPECT_NEAR(mean, 1.5, 5 * 2.0 / std::sqrt(n));
  EXPECT_NEAR(var, 4.0, 4.0 * 5 * std::sqrt(2.0 / n));
  // A normal draw followed by a uniform draw from the same generator must not reuse random
  // bits: before the fix, normal element k used counters 2k and 2k + 1 while the next uniform
  // draw started at counter n, so the second half of the normals was a function of the uniforms.
  Generator h(9);
  const int64_t m = 2000;
  std::vector<double> z = h.normal({m}, 0.0, 1.0, DType::f64).to_vector<double>();
  std::vector<double> u = h.uniform({m}, 0.0, 1.0, DType::f64).to_vector<double>();
  int reused = 0;
  for (int64_t k = m / 2; k < m; ++k) {
    double u1 = u[2 * k - m], u2 = u[2 * k - m + 1];
    double box_muller = std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
    reused += std::fabs(box_muller - z[k]) < 1e-12;
  }
  EXPECT_EQ(reused, 0);
  // Sample correlation between consecutive draws is ~0.
  double c = 0;
  for (int64_t k = 0; k < m; ++k) c += z[k] * (u[k] - 0.5);
  EXPECT_LT(std::fabs(c / m), 5 * std::sqrt(1.0 / 12 / m));
}

TEST(CoreGenerator, TruncNormalBoundsAndVariance) {
  Generator g(11);
  const double std_dev = 0.02;
  std::vector<double> v = g.trunc_normal({100000}, std_dev, DType::f64).to_vector<double>();
  double var = 0;
  for (double x : v) {
    ASSERT_LE(std::fabs(x), 2 * std_dev);
    var += x * x;
  }
  var /= static_cast<double>(v.size());
  // Variance of a unit normal truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1) = 0.77374.
  EXPECT_NEAR(var / (std_dev * std_dev), 0.77374, 0.015);
}

TEST(CoreGenerator, RandintRangeAndExtremes) {
  Generator g(13);
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 50000; ++i) {
    int64_t r = g.randint(-2, 3);
    ASSERT_GE(r, -2);
    ASSERT_LT(r, 3);
    ++counts[static_cast<size_t>(r + 2)];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
  EXPECT_EQ(g.randint(7, 8), 7);
  // The full int64 range: high - low overflowed (signed overflow, UB) before the fix.
  const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  bool saw_negative = false, saw_positive = false;
  for (int i = 0; i < 64; ++i) {
    int64_t r = g.randint(lo, hi);
    EXPECT_LT(r, hi);
    saw_negative |= r < 0;
    saw_positive |= r > 0;
  }
  EXPECT_TRUE(saw_negative && saw_positive);
  EXPECT_THROW(g.randint(3, 3), ValueError);
}

TEST(CoreGenerator, BadShapeThrowsWithoutConsumingCounters) {
  Generator g(1);
  EXPECT_THROW(g.uniform({2, -3}), ShapeError);
  EXPECT_THROW(g.normal({-1}), ShapeError);
  EXPECT_THROW(g.trunc_normal({-4}, 1.0), ShapeError);
  EXPECT_EQ(g.offset(), 0u);
}

// ================================================================ autograd

TEST(CoreAutograd, SameTensorUsedTwiceInOneOp) {
  Tensor x = Tensor::from_vector<double>({3}, {1, -2, 3}).set_requires_grad();
  ops::sum(ops::add(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
  x.zero_grad();
  ops::sum(ops::mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, -4, 6}));
  x.zero_grad();
  ops::sum(ops::sub(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 0}));
  x.zero_grad();
  ops::sum(ops::div(x, x)).backward();
  EXPECT_TRUE(all_close(x.grad(), Tensor::zeros({3}, DType::f64), 0, 1e-15));
  Tensor m = leaf({4, 4}, 20);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::matmul(in[0], in[0]); }, {m}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::matmul(in[0], in[0], true, false); }, {m}));
  EXPECT_TRUE(gradcheck(
      [](auto& in) { return ops::linear(in[0], in[0], in[0].slice(0, 0, 1).squeeze(0)); }, {m}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::mul(in[0], in[0].slice(1, 1, 2)); }, {m}));
}

TEST(CoreAutograd, LeafGradientsNeverAliasOtherTensors) {
  // add returns the incoming gradient unchanged for both inputs: x and y must not share it.
  Tensor x = leaf({2, 3}, 21), y = leaf({2, 3}, 22);
  Tensor gout = randn({2, 3}, 23, DType::f64);
  std::vector<double> gv = gout.to_vector<double>();
  ops::add(x, y).backward(gout);
  EXPECT_FALSE(same_storage(x.grad(), y.grad()));
  EXPECT_FALSE(same_storage(x.grad(), gout));
  x.grad().data<double>()[0] = 100;
  EXPECT_EQ(y.grad().to_vector<double>(), gv);
  gout.data<double>()[1] = 100;
  EXPECT_EQ(y.grad().to_vector<double>(), gv);
  // A view root and a leaf root: the leaf's gradient is a copy of the given gradient.
  Tensor l = leaf({6}, 24);
  Tensor g2 = randn({2, 3}, 25, DType::f64);
  l.reshape({2, 3}).backward(g2);
  EXPECT_FALSE(same_storage(l.grad(), g2));
  Tensor g3 = randn({6}, 26, DType::f64);
  l.zero_grad();
  l.backward(g3);
  EXPECT_FALSE(same_storage(l.grad(), g3));
  EXPECT_TRUE(all_close(l.grad(), g3, 0, 0));
  // A gradient the caller holds is not changed by a later accumulation.
  Tensor held = l.grad();
  std::vector<double> held_values = held.to_vector<double>();
  ops::sum(ops::mul(l, 2.0)).backward();
  EXPECT_EQ(held.to_vector<double>(), held_values);
  std::vector<double> acc = l.grad().to_vector<double>();
  for (size_t i = 0; i < acc.size(); ++i) EXPECT_DOUBLE_EQ(acc[i], held_values[i] + 2.0);
  // Accumulating onto an exclusively owned gradient gives the same values.
  held = Tensor();
  ops::sum(ops::mul(l, 3.0)).backward();
  std::vector<double> acc2 = l.grad().to_vector<double>();
  for (size_t i = 0; i < acc2.size(); ++i) EXPECT_DOUBLE_EQ(acc2[i], acc[i] + 3.0);
  // A gradient that is an expanded view (sum's backward) becomes a contiguous leaf gradient.
  Tensor s = leaf({3, 4}, 27);
  ops::sum(s).backward();
  EXPECT_TRUE(s.grad().is_contiguous());
  EXPECT_TRUE(all_close(s.grad(), Tensor::ones({3, 4}, DType::f64), 0, 0));
}

TEST(CoreAutograd, FailureInsideBackwardLeavesAConsistentState) {
  Tensor x = Tensor::from_vector<double>({2}, {1, 2}).set_requires_grad();
  Tensor w = Tensor::from_vector<double>({2}, {3, 4}).set_requires_grad();
  // A node whose backward throws, below a healthy node.
  Tensor bad = autograd::record("bad", ops::mul(x.detach(), 1.0), {x},
                                [](const Tensor&, const std::vector<bool>&) -> std::vector<Tensor> {
                                  throw ValueError("[bad] backward failed");
                                });
  Tensor loss = ops::sum(ops::mul(bad, w));
  EXPECT_TRUE(throws_with<ValueError>([&] { loss.backward(); }, "[bad]"));
  // w got its gradient before the failure; x did not.
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{1, 2}));
  EXPECT_FALSE(x.grad().defined());
  // A second backward must not accumulate into w again.
  EXPECT_THROW(loss.backward(), AutogradError);
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{1, 2}));
  EXPECT_TRUE(autograd::is_grad_enabled());  // the guard inside backward was released
  // A backward that returns a gradient of the wrong shape is an AutogradError naming the op.
  Tensor odd = autograd::record("odd", ops::mul(x.detach(), 1.0), {x},
                                [](const Tensor&, const std::vector<bool>&) {
                                  return std::vector<Tensor>{Tensor::zeros({3}, DType::f64)};
                                });
  EXPECT_TRUE(throws_with<AutogradError>([&] { ops::sum(odd).backward(); }, "odd"));
}

TEST(CoreAutograd, GraphIsFreedAfterBackward) {
  Tensor x = leaf({256, 256}, 30);
  const size_t before = memory_stats().current_bytes;
  Tensor loss;
  {
    Tensor h = ops::tanh(ops::exp(x));
    loss = ops::sum(h);
  }
  const size_t with_graph = memory_stats().current_bytes;
  EXPECT_GE(with_graph, before + 2 * 256 * 256 * 8);  // exp and tanh outputs are saved
  loss.backward();
  // Only the scalar loss and x's gradient remain.
  EXPECT_LE(memory_stats().current_bytes, before + 256 * 256 * 8 + 4096);
  const auto& node = loss.impl().grad_fn;
  ASSERT_NE(node, nullptr);
  EXPECT_TRUE(node->inputs.empty());
  EXPECT_FALSE(static_cast<bool>(node->backward));
}

TEST(CoreAutograd, DeepChainsNeitherRecurseNorCrawl) {
  auto start = std::chrono::steady_clock::now();
  {
    Tensor x = Tensor::from_vector<double>({2}, {1, 2}).set_requires_grad();
    Tensor y = x;
    for (int i = 0; i < 100000; ++i) y = ops::add(y, 1e-6);
    ops::sum(y).backward();
    EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 1}));
    // Dropping a deep graph without running backward must not recurse once per node: 300k
    // nodes overflowed the 8 MiB main stack before ~Node unlinked chains iteratively.
    Tensor z = x;
    for (int i = 0; i < 300000; ++i) z = ops::mul(z, 1.0);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 30.0);
}

TEST(CoreAutograd, NoGradGuardIsPerThreadAndNests) {
  Tensor x = leaf({3}, 31);
  {
    NoGradGuard outer;
    EXPECT_FALSE(autograd::is_grad_enabled());
    bool other_thread_records = false;
    std::thread t([&] { other_thread_records = ops::mul(x, 2.0).requires_grad(); });
    t.join();
    EXPECT_TRUE(other_thread_records);
    {
      NoGradGuard inner;
      EXPECT_FALSE(ops::mul(x, 2.0).requires_grad());
    }
    EXPECT_FALSE(autograd::is_grad_enabled());  // inner restored "off", not "on"
  }
  EXPECT_TRUE(autograd::is_grad_enabled());
  std::thread t2([&] {
    NoGradGuard g;
    EXPECT_FALSE(ops::mul(x, 2.0).requires_grad());
  });
  t2.join();
  EXPECT_TRUE(ops::mul(x, 2.0).requires_grad());
  // Guards are released when an exception unwinds through them.
  try {
    NoGradGuard g;
    throw ValueError("[test] unwind");
  } catch (const ValueError&) {
  }
  EXPECT_TRUE(autograd::is_grad_enabled());
}

TEST(CoreAutograd, CheckNumericsFlagSurvivesAndCoversF64) {
  autograd::set_check_numerics(true);
  Tensor x = Tensor::from_vector<double>({2}, {-1.0, 1.0});
  EXPECT_TRUE(throws_with<NumericError>([&] { ops::log(x); }, "[log]"));
  EXPECT_TRUE(autograd::check_numerics_enabled());
  EXPECT_NO_THROW(ops::exp(x));
  // Views hold no new values: the op that computes from a bad input is named, not a view op
  // (binary ops broadcast through expand, which used to be blamed, after scanning every element).
  Tensor bad = Tensor::from_vector<double>({2, 1}, {std::nan(""), 1.0});
  EXPECT_NO_THROW(bad.reshape({2}).transpose(0, 0).slice(0, 0, 1).expand({3, 1}));
  EXPECT_TRUE(throws_with<NumericError>(
      [&] {
        ops::add(bad, Tensor::ones({2, 3}, DType::f64));
      },
      "[add]"));
  autograd::set_check_numerics(false);
}

// ================================================================ matmul edge cases

TEST(CoreMatmul, DegenerateSizesAgainstANaiveLoop) {
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  std::vector<Case> cases = {
      {{3, 0}, {0, 4}, false, false},  // K = 0: zeros
      {{0, 3}, {0, 4}, true, false},   // K = 0, transposed A
      {{1, 7}, {7, 5}, false, false},  // M = 1
      {{6, 7}, {7, 1}, false, false},  // N = 1
      {{1, 7}, {1, 7}, false, true},   // M = N = 1
      {{7, 1}, {7, 1}, true, false},   // M = N = 1, transposed A
      {{2, 1, 5}, {2, 5, 1}, false, false},
      {{2, 3, 0}, {0, 4}, false, false},  // K = 0 with a shared B
      {{0, 3, 4}, {0, 4, 2}, false, false},
  };
  uint64_t seed = 40;
  for (const Case& c : cases) {
    SCOPED_TRACE(shape_str(c.a) + " x " + shape_str(c.b));
    Tensor a = randn(c.a, seed++), b = randn(c.b, seed++);
    Tensor want = naive_matmul(a, b, c.ta, c.tb);
    EXPECT_TRUE(all_close(ops::matmul(a, b, c.ta, c.tb).to(DType::f64), want, 1e-5, 1e-5));
    {
      ops::ReferenceGuard mode(true);
      EXPECT_TRUE(all_close(ops::matmul(a, b, c.ta, c.tb).to(DType::f64), want, 1e-5, 1e-5));
    }
    EXPECT_TRUE(
        all_close(ops::matmul(a.to(DType::f64), b.to(DType::f64), c.ta, c.tb), want, 1e-12, 1e-12));
  }
  // Gradients with K = 0 are empty; with M = 1 and N = 1 they follow finite differences.
  Tensor a0 = leaf({3, 0}, 50), b0 = leaf({0, 4}, 51);
  ops::sum(ops::matmul(a0, b0)).backward();
  EXPECT_EQ(a0.grad().shape(), (Shape{3, 0}));
  EXPECT_EQ(b0.grad().shape(), (Shape{0, 4}));
  Tensor a1 = leaf({1, 6}, 52), b1 = leaf({6, 1}, 53);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::matmul(in[0], in[1]); }, {a1, b1}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::matmul(in[1], in[0]); }, {a1, b1}));
}

TEST(CoreMatmul, LinearWithZeroInputFeaturesIsTheBias) {
  for (bool reference : {false, true}) {
    SCOPED_TRACE(reference ? "reference" : "fast");
    ops::ReferenceGuard mode(reference);
    Tensor x = Tensor::zeros({2, 3, 0}).set_requires_grad();
    Tensor w = Tensor::zeros({4, 0}).set_requires_grad();
    Tensor b = Tensor::from_vector<float>({4}, {1, 2, 3, 4}).set_requires_grad();
    Tensor y = ops::linear(x, w, b);
    ASSERT_EQ(y.shape(), (Shape{2, 3, 4}));
    std::vector<float> yv = y.to_vector<float>();
    for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(yv[i], static_cast<float>(i % 4 + 1));
    ops::sum(y).backward();
    EXPECT_EQ(x.grad().shape(), (Shape{2, 3, 0}));
    EXPECT_EQ(w.grad().shape(), (Shape{4, 0}));
    EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{6, 6, 6, 6}));
    Tensor y0 = ops::linear(Tensor::zeros({0, 5}), Tensor::ones({4, 5}));
    EXPECT_EQ(y0.shape(), (Shape{0, 4}));
  }
}

TEST(CoreMatmul, PermutedSlicedAndExpandedOperands) {
  Tensor base_a = randn({3, 6, 2, 9}, 60);  // [B, T, H, D]
  Tensor base_b = randn({3, 2, 9, 8}, 61);
  // Batch dims that do not collapse to one stride: [H, B] after a permute.
  Tensor a_hb = base_a.permute({2, 0, 1, 3});  // [H, B, T, D]
  Tensor b_hb = base_b.permute({1, 0, 2, 3});  // [H, B, D, 8]
  Tensor got = ops::matmul(a_hb, b_hb);
  Tensor want = naive_matmul(a_hb.contiguous().reshape({6, 6, 9}),
                             b_hb.contiguous().reshape({6, 9, 8}), false, false)
                    .reshape({2, 3, 6, 8});
  EXPECT_TRUE(all_close(got.to(DType::f64), want, 1e-5, 1e-5));
  // Sliced operands with offsets and a leading stride larger than the row.
  Tensor big = randn({10, 12}, 62);
  Tensor as = big.slice(0, 2, 7).slice(1, 3, 9);   // [5, 6], ld 12, offset 27
  Tensor bs = big.slice(0, 1, 7).slice(1, 5, 12);  // [6, 7]
  EXPECT_TRUE(all_close(ops::matmul(as, bs).to(DType::f64), naive_matmul(as, bs, false, false),
                        1e-5, 1e-5));
  EXPECT_TRUE(all_close(ops::matmul(bs, as, true, true).to(DType::f64),
                        naive_matmul(bs, as, true, true), 1e-5, 1e-5));
  // Expanded batch (stride 0) on either side, and a 2-D B shared over a 4-D A.
  Tensor one = randn({1, 4, 5}, 63);
  Tensor many = randn({3, 5, 2}, 64);
  EXPECT_TRUE(all_close(ops::matmul(one.expand({3, 4, 5}), many).to(DType::f64),
                        naive_matmul(one.expand({3, 4, 5}), many, false, false), 1e-5, 1e-5));
  Tensor many_a = randn({3, 4, 5}, 65);
  Tensor one_b = randn({1, 5, 2}, 66);
  EXPECT_TRUE(all_close(ops::matmul(many_a, one_b.expand({3, 5, 2})).to(DType::f64),
                        naive_matmul(many_a, one_b.expand({3, 5, 2}), false, false), 1e-5, 1e-5));
  Tensor a4 = randn({2, 3, 4, 5}, 67), b2 = randn({5, 6}, 68);
  EXPECT_TRUE(all_close(
      ops::matmul(a4.permute({1, 0, 2, 3}), b2).to(DType::f64),
      naive_matmul(a4.permute({1, 0, 2, 3}).contiguous().reshape({6, 4, 5}), b2, false, false)
          .reshape({3, 2, 4, 6}),
      1e-5, 1e-5));
  // Gradients through permuted and sliced operands.
  Tensor xa = leaf({3, 6, 2, 5}, 69), xb = leaf({3, 2, 5, 4}, 70);
  EXPECT_TRUE(gradcheck(
      [](auto& in) {
        return ops::matmul(in[0].permute({2, 0, 1, 3}), in[1].transpose(0, 1));
      },
      {xa, xb}));
  Tensor ya = leaf({7, 9}, 71), yb = leaf({6, 7}, 72);
  EXPECT_TRUE(gradcheck(
      [](auto& in) {
        return ops::matmul(in[0].slice(0, 1, 6).slice(1, 2, 8), in[1].slice(1, 1, 5), false, false);
      },
      {ya, yb}));
  Tensor za = leaf({1, 4, 5}, 73), zb = leaf({3, 5, 2}, 74);
  EXPECT_TRUE(gradcheck(
      [](auto& in) {
        return ops::matmul(in[0].expand({3, 4, 5}), in[1]);
      },
      {za, zb}));
  EXPECT_TRUE(gradcheck(
      [](auto& in) {
        return ops::matmul(in[1], in[0].expand({3, 4, 5}), true, true);
      },
      {za, zb}));
}

// ================================================================ argument checks

TEST(CoreErrors, EveryOpThrowsATypedErrorNamingItself) {
  Tensor u;  // undefined
  Tensor f = randn({2, 3}, 80);
  Tensor i = Tensor::zeros({2, 3}, DType::i64);
  Tensor b = Tensor::zeros({2, 3}, DType::bf16);
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::add(u, f); }, "[add]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::exp(u); }, "[exp]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::sum(u); }, "[sum]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::mean(u); }, "[mean]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::max(u, 0); }, "[max]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::argmax(u); }, "[argmax]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::matmul(u, f); }, "[matmul]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::linear(f, u); }, "[linear]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::linear(u, f); }, "[linear]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::sum_to_shape(u, {}); }, "[sum_to_shape]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::mul(i, i); }, "[mul]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::gelu(b); }, "[gelu]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::sum(i); }, "[sum]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::max(b, 0); }, "[max]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::matmul(i, i.transpose(0, 1)); }, "[matmul]"));
  EXPECT_TRUE(
      throws_with<DTypeError>([&] { ops::matmul(f, f.to(DType::f64), false, true); }, "[matmul]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::linear(i, i); }, "[linear]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { ops::linear(b, b); }, "[linear]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::matmul(f, f); }, "[matmul]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::matmul(Tensor::ones({3}), f); }, "[matmul]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::linear(f, f.slice(1, 0, 2)); }, "[linear]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::linear(f, f, Tensor::ones({3})); }, "[linear]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { ops::max(f, 2); }, "[max]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { f.reshape({-1, -1}); }, "[reshape]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { f.reshape({-1, 4}); }, "[reshape]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { f.reshape({-2, -3}); }, "[reshape]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { f.permute({0}); }, "[permute]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { f.squeeze(0); }, "[squeeze]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { f.expand({3}); }, "[expand]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { Tensor::arange(-1); }, "[arange]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { (void)f.item<float>(); }, "[item]"));
  EXPECT_TRUE(throws_with<DTypeError>([&] { i.set_requires_grad(); }, "[requires_grad]"));
  EXPECT_TRUE(throws_with<AutogradError>(
      [&] { ops::mul(leaf({2}, 1), 2.0).set_requires_grad(false); }, "[requires_grad]"));
  EXPECT_TRUE(throws_with<AutogradError>([&] { f.backward(); }, "[backward]"));
  EXPECT_TRUE(throws_with<AutogradError>(
      [&] { ops::mul(leaf({2}, 1), 2.0).backward(Tensor::ones({3}, DType::f64)); }, "[backward]"));
  EXPECT_TRUE(throws_with<ValueError>([&] { ops::parse_activation(""); }, "[activation]"));
}

// ================================================================ reductions

// f32 denormals are flushed (FTZ and DAZ) on every thread of the pool when asked, restored
// otherwise; METALM_DENORMALS picks the mode and rejects anything but flush and keep.
TEST(CoreThreads, FlushDenormalsCoversEveryPoolThreadAndIsReversible) {
  const ThreadCountGuard threads;
  omp_set_num_threads(std::max(threads.saved, 2));
  // A product below the smallest normal (2^-126): 2^-70 * 2^-70 = 2^-140, a denormal.
  auto products_per_thread = [] {
    std::vector<float> out(static_cast<size_t>(omp_get_max_threads()), -1.f);
    volatile float a = std::ldexp(1.0f, -70);
#pragma omp parallel
    out[static_cast<size_t>(omp_get_thread_num())] = a * a;
    return out;
  };
  struct Restore {
    ~Restore() {
      metalm::set_flush_denormals(false);
      unsetenv("METALM_DENORMALS");
    }
  } restore;
  metalm::set_flush_denormals(true);
  EXPECT_TRUE(metalm::flush_denormals());
  for (float v : products_per_thread()) EXPECT_EQ(v, 0.0f);
  metalm::set_flush_denormals(false);
  EXPECT_FALSE(metalm::flush_denormals());
  for (float v : products_per_thread()) EXPECT_EQ(v, std::ldexp(1.0f, -140));
  setenv("METALM_DENORMALS", "flush", 1);
  metalm::init_threads_from_env();
  EXPECT_TRUE(metalm::flush_denormals());
  setenv("METALM_DENORMALS", "keep", 1);
  metalm::init_threads_from_env();
  EXPECT_FALSE(metalm::flush_denormals());
  setenv("METALM_DENORMALS", "sometimes", 1);
  EXPECT_THROW(metalm::init_threads_from_env(), metalm::ValueError);
}

TEST(CoreReduce, ArgmaxTreatsNaNLikeMax) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = Tensor::from_vector<float>({2, 3}, {1, nan, 3, 5, 4, nan});
  EXPECT_EQ(ops::argmax(x).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  std::vector<float> m = ops::max(x, 1).to_vector<float>();
  EXPECT_TRUE(std::isnan(m[0]) && std::isnan(m[1]));
  // Ties go to the first maximal element in both.
  Tensor t = Tensor::from_vector<float>({4}, {2, 7, 7, 1});
  EXPECT_EQ(ops::argmax(t).item<int64_t>(), 1);
  Tensor tl = Tensor::from_vector<double>({4}, {2, 7, 7, 1}).set_requires_grad();
  ops::max(tl, 0).backward();
  EXPECT_EQ(tl.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
}

TEST(CoreReduce, SumsOverEveryDimCombinationMatchALoop) {
  Tensor x = randn({3, 4, 5}, 90, DType::f64);
  std::vector<double> xv = x.to_vector<double>();
  for (int mask = 0; mask < 8; ++mask) {
    std::vector<int64_t> dims;
    for (int d = 0; d < 3; ++d)
      if (mask & (1 << d)) dims.push_back(d);
    if (dims.empty()) continue;
    SCOPED_TRACE(mask);
    Tensor s = ops::sum(x, dims, true);
    Shape ks = s.shape();
    std::vector<double> want(static_cast<size_t>(s.numel()), 0.0);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 5; ++k) {
          int64_t oi = ks[0] == 1 ? 0 : i, oj = ks[1] == 1 ? 0 : j, ok = ks[2] == 1 ? 0 : k;
          want[static_cast<size_t>((oi * ks[1] + oj) * ks[2] + ok)] += xv[(i * 4 + j) * 5 + k];
        }
    EXPECT_TRUE(all_close(s, Tensor::from_vector<double>(ks, want), 1e-12, 1e-12));
  }
}

TEST(CoreReduce, LongRowSumsAreAccurateAndThreadCountIndependent) {
  // 2^22 copies of 0.1f: 16 f32 lane accumulators came out 0.25% low.
  const int64_t n = int64_t(1) << 22;
  Tensor x = Tensor::full({n}, 0.1);
  const double exact = static_cast<double>(0.1f) * static_cast<double>(n);
  const ThreadCountGuard threads;  // restores the count if a check throws
  omp_set_num_threads(1);
  const float one = ops::sum(x).item<float>();
  Tensor rows_one = ops::sum(x.reshape({2, n / 2}), {1});
  omp_set_num_threads(std::max(threads.saved, 2));
  const float many = ops::sum(x).item<float>();
  Tensor rows_many = ops::sum(x.reshape({2, n / 2}), {1});
  omp_set_num_threads(threads.saved);
  EXPECT_NEAR(one, exact, exact * 1e-7);
  EXPECT_EQ(one, many);
  EXPECT_TRUE(all_close(rows_one, rows_many, 0, 0));
  EXPECT_NEAR(rows_one.to_vector<float>()[1], exact / 2, exact * 1e-7);
  // max and argmax over many rows (parallel) against a loop.
  Tensor y = randn({300, 1000}, 91);
  std::vector<float> yv = y.to_vector<float>();
  std::vector<float> m = ops::max(y, 1).to_vector<float>();
  std::vector<int64_t> am = ops::argmax(y).to_vector<int64_t>();
  for (int r = 0; r < 300; ++r) {
    int64_t best = 0;
    for (int c = 1; c < 1000; ++c)
      if (yv[r * 1000 + c] > yv[r * 1000 + best]) best = c;
    EXPECT_EQ(am[r], best);
    EXPECT_EQ(m[r], yv[r * 1000 + best]);
  }
}

// ================================================================ optimizer norms

TEST(CoreOptim, GradNormAccumulatesInF64AndIsThreadCountIndependent) {
  // 3 M f32 gradients of 1e-3 each plus one large one: an f32 accumulator would drift.
  Tensor p = Tensor::zeros({3000001}).set_requires_grad();
  Tensor q = Tensor::zeros({5}, DType::f64).set_requires_grad();
  std::vector<float> gv(3000001, 1e-3f);
  gv.back() = 3.0f;
  p.impl().grad = Tensor::from_vector<float>({3000001}, gv).impl_ptr();
  q.impl().grad = Tensor::full({5}, 2.0, DType::f64).impl_ptr();
  double want = 0;
  for (float v : gv) want += static_cast<double>(v) * static_cast<double>(v);
  want = std::sqrt(want + 5 * 4.0);
  const ThreadCountGuard threads;  // restores the count if a check throws
  omp_set_num_threads(1);
  const double one = train::grad_norm({p, q});
  omp_set_num_threads(std::max(threads.saved, 2));
  const double many = train::grad_norm({p, q});
  omp_set_num_threads(threads.saved);
  EXPECT_NEAR(one, want, want * 1e-9);  // an f32 running sum is off by far more
  EXPECT_EQ(one, many);  // bitwise: the summation order does not depend on the thread count
  Tensor no_grad_param = Tensor::zeros({3}).set_requires_grad();
  EXPECT_EQ(train::grad_norm({p, q, no_grad_param}), one);
  // Clipping scales every gradient by max_norm / (norm + 1e-6) and returns the old norm.
  EXPECT_EQ(train::clip_grad_norm({p, q}, 1.0), one);
  const double factor = 1.0 / (one + 1e-6);
  EXPECT_FLOAT_EQ(p.grad().to_vector<float>().back(), static_cast<float>(3.0 * factor));
  EXPECT_DOUBLE_EQ(q.grad().to_vector<double>()[0], 2.0 * factor);
  EXPECT_NEAR(train::grad_norm({p, q}), 1.0, 1e-5);
  // Not clipped when already below max_norm.
  EXPECT_NEAR(train::clip_grad_norm({p, q}, 10.0), 1.0, 1e-5);
  EXPECT_DOUBLE_EQ(q.grad().to_vector<double>()[0], 2.0 * factor);
}
