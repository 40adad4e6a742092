// Autograd tape and the core ops (elementwise, activations, reduce, matmul, views):
// gradients vs central finite differences in f64, fast path vs reference path in f32.
#include <gtest/gtest.h>

#include <cmath>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::leaf;
using metalm::test::randn;

TEST(Autograd, AccumulatesAndFreesGraph) {
  Tensor x = Tensor::from_vector<double>({3}, {1, 2, 3}).set_requires_grad();
  Tensor y = ops::sum(ops::mul(x, x));  // d/dx = 2x
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  EXPECT_THROW(y.backward(), AutogradError);  // graph freed
  Tensor z = ops::sum(ops::mul(x, 3.0));
  z.backward();  // accumulates
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, FrozenInputsGetNoGradientAndNoGraph) {
  Tensor w = leaf({4, 3}, 1);
  Tensor frozen = randn({2, 4}, 2, DType::f64);  // requires_grad = false
  Tensor out = ops::matmul(frozen, w);
  EXPECT_TRUE(out.requires_grad());
  ops::sum(out).backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(frozen.grad().defined());
  Tensor none = ops::matmul(frozen, frozen, false, true);
  EXPECT_FALSE(none.requires_grad());
  EXPECT_TRUE(none.is_leaf());
  {
    NoGradGuard ng;
    Tensor t = ops::matmul(frozen, w);
    EXPECT_FALSE(t.requires_grad());
  }
}

TEST(Autograd, DiamondGraphSumsBothPaths) {
  Tensor x = leaf({5}, 3);
  Tensor a = ops::exp(x);
  Tensor y = ops::sum(ops::add(ops::mul(a, a), a));  // d/dx = 2 e^{2x} + e^x
  y.backward();
  std::vector<double> xv = x.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i)
    EXPECT_NEAR(g[i], 2 * std::exp(2 * xv[i]) + std::exp(xv[i]), 1e-12 * std::exp(2 * xv[i]) + 1e-12);
}

TEST(Autograd, NonScalarRootNeedsGradient) {
  Tensor x = leaf({3}, 4);
  Tensor y = ops::mul(x, 2.0);
  EXPECT_THROW(y.backward(), AutogradError);
  y.backward(Tensor::ones({3}, DType::f64));
  EXPECT_TRUE(all_close(x.grad(), Tensor::full({3}, 2.0, DType::f64)));
}

TEST(Autograd, CheckNumericsNamesTheOp) {
  autograd::set_check_numerics(true);
  Tensor x = Tensor::from_vector<float>({2}, {-1.f, 4.f});
  try {
    ops::sqrt(x);
    ADD_FAILURE() << "expected NumericError";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("[sqrt]"), std::string::npos) << e.what();
  }
  autograd::set_check_numerics(false);
  EXPECT_NO_THROW(ops::sqrt(x));
}

TEST(Elementwise, BroadcastingValues) {
  Tensor a = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from_vector<float>({3}, {10, 20, 30});
  EXPECT_EQ(ops::add(a, b).to_vector<float>(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  Tensor c = Tensor::from_vector<float>({2, 1}, {2, 4});
  EXPECT_EQ(ops::div(a, c).to_vector<float>(), (std::vector<float>{0.5f, 1, 1.5f, 1, 1.25f, 1.5f}));
  EXPECT_EQ(ops::mul(a.transpose(0, 1), a.transpose(0, 1)).to_vector<float>(),
            (std::vector<float>{1, 16, 4, 25, 9, 36}));
  EXPECT_THROW(ops::add(a, Tensor::ones({4})), ShapeError);
  EXPECT_THROW(ops::add(a, Tensor::ones({3}, DType::f64)), DTypeError);
  EXPECT_THROW(ops::add(Tensor::ones({3}, DType::i64), Tensor::ones({3}, DType::i64)), DTypeError);
}

TEST(Elementwise, GradientsWithBroadcasting) {
  Tensor a = leaf({2, 3, 4}, 5), b = leaf({3, 1}, 6);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::add(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::sub(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::mul(in[0], in[1]); }, {a, b}));
  Tensor pos = ops::add(ops::square(randn({3, 1}, 7, DType::f64)), 0.5).detach().set_requires_grad();
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::div(in[0], in[1]); }, {a, pos}));
}

TEST(Elementwise, ActivationGradients) {
  Tensor x = leaf({37}, 8);
  Tensor xpos = ops::add(ops::square(randn({37}, 9, DType::f64)), 0.1).detach().set_requires_grad();
  for (auto f : {ops::exp, ops::tanh, ops::sigmoid, ops::gelu, ops::gelu_tanh, ops::quick_gelu,
                 ops::silu, ops::square, ops::neg})
    EXPECT_TRUE(gradcheck([f](auto& in) { return f(in[0]); }, {x}));
  for (auto f : {ops::log, ops::sqrt, ops::rsqrt})
    EXPECT_TRUE(gradcheck([f](auto& in) { return f(in[0]); }, {xpos}));
  // relu away from the kink
  Tensor xr = Tensor::from_vector<double>({4}, {-2, -0.5, 0.5, 2}).set_requires_grad();
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::relu(in[0]); }, {xr}));
}

TEST(Elementwise, F32ActivationsMatchF64) {
  // The f32 path uses glibc's vector math; it must agree with f64 libm to f32 precision.
  Tensor x64 = ops::mul(randn({5000}, 10, DType::f64), 4.0);
  Tensor x32 = x64.to(DType::f32);
  for (auto f : {ops::exp, ops::tanh, ops::sigmoid, ops::gelu, ops::gelu_tanh, ops::quick_gelu,
                 ops::silu})
    // atol: 1 + erf(x) cancels for x << 0 in f32 (PyTorch's f32 gelu does the same).
    EXPECT_TRUE(all_close(f(x32).to(DType::f64), f(x64), 2e-6, 1e-6));
  Tensor big = Tensor::from_vector<float>({4}, {-1000.f, -90.f, 90.f, 1000.f});
  std::vector<float> e = ops::exp(big).to_vector<float>();
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_TRUE(std::isinf(e[3]));
  std::vector<float> s = ops::sigmoid(big).to_vector<float>();
  EXPECT_EQ(s[0], 0.0f);
  EXPECT_EQ(s[3], 1.0f);
}

TEST(Elementwise, ActivationByName) {
  Tensor x = randn({8}, 11);
  EXPECT_TRUE(all_close(ops::activation(x, ops::parse_activation("swish")), ops::silu(x), 0, 0));
  EXPECT_TRUE(all_close(ops::activation(x, ops::parse_activation("silu")), ops::silu(x), 0, 0));
  EXPECT_TRUE(all_close(ops::activation(x, ops::parse_activation("gelu")), ops::gelu(x), 0, 0));
  EXPECT_TRUE(all_close(ops::activation(x, ops::Activation::none), x, 0, 0));
  EXPECT_THROW(ops::parse_activation("mish"), ValueError);
  // One table: every name parses back to a value whose canonical name parses to it too.
  for (const auto& [a, name] : ops::activation_names())
    EXPECT_EQ(ops::parse_activation(ops::activation_name(a)), a) << name;
}

TEST(Reduce, ValuesAndGradients) {
  Tensor x = Tensor::from_vector<float>({2, 3}, {1, 5, 3, 4, 2, 6});
  EXPECT_EQ(ops::sum(x, {0}).to_vector<float>(), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(ops::sum(x, {1}).to_vector<float>(), (std::vector<float>{9, 12}));
  EXPECT_EQ(ops::sum(x).item<float>(), 21.f);
  EXPECT_EQ(ops::mean(x, {-1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(ops::max(x, 1).to_vector<float>(), (std::vector<float>{5, 6}));
  EXPECT_EQ(ops::argmax(x).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  Tensor y = leaf({3, 4, 5}, 12);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::sum(in[0], {0, 2}); }, {y}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::mean(in[0], {1}, true); }, {y}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::max(in[0], -1); }, {y}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::max(in[0], 0, true); }, {y}));
  EXPECT_THROW(ops::sum(x, {2}), ShapeError);
  // Large sums stay accurate (16-lane accumulation) and match f64.
  Tensor big = randn({1 << 20}, 13);
  EXPECT_NEAR(ops::sum(big).item<double>(), ops::sum(big.to(DType::f64)).item<double>(), 0.05);
  Tensor bcols = randn({4096, 300}, 14);
  EXPECT_TRUE(all_close(ops::sum(bcols, {0}).to(DType::f64), ops::sum(bcols.to(DType::f64), {0}),
                        1e-4, 1e-3));
}

TEST(Views, GradientsThroughViews) {
  Tensor x = leaf({2, 3, 4}, 15);
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].permute({2, 0, 1}).reshape({4, 6}); }, {x}));
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].slice(1, 1, 3); }, {x}));
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].slice(2, 0, 4).transpose(0, 2).contiguous(); }, {x}));
  Tensor b = leaf({3, 1}, 16);
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].expand({2, 3, 5}); }, {b}));
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].unsqueeze(0).squeeze(0).clone(); }, {b}));
  Tensor f = leaf({5}, 17);
  EXPECT_TRUE(gradcheck([](auto& in) { return in[0].to(DType::f32).to(DType::f64); }, {f}, 1e-3,
                        1e-3, 1e-4));
}

struct MatmulCase {
  Shape a, b;
  bool ta, tb;
};

TEST(Matmul, FastMatchesReferenceAndGradients) {
  std::vector<MatmulCase> cases = {
      {{7, 5}, {5, 3}, false, false},      {{5, 7}, {5, 3}, true, false},
      {{7, 5}, {3, 5}, false, true},       {{5, 7}, {3, 5}, true, true},
      {{2, 4, 7, 5}, {2, 4, 5, 3}, false, false}, {{2, 4, 5, 7}, {2, 4, 3, 5}, true, true},
      {{3, 7, 5}, {5, 6}, false, false},   {{3, 5, 7}, {6, 5}, true, true},
      {{1, 5}, {5, 9}, false, false},      {{3, 1, 64}, {100, 64}, false, true},
  };
  uint64_t seed = 100;
  for (const auto& c : cases) {
    Tensor a = randn(c.a, seed++), b = randn(c.b, seed++);
    Tensor fast = ops::matmul(a, b, c.ta, c.tb);
    Tensor ref;
    {
      ops::ReferenceGuard mode(true);
      ref = ops::matmul(a, b, c.ta, c.tb);
    }
    EXPECT_TRUE(all_close(fast, ref, 1e-5, 1e-5)) << shape_str(c.a) << " x " << shape_str(c.b);
    Tensor a64 = a.to(DType::f64).set_requires_grad(), b64 = b.to(DType::f64).set_requires_grad();
    bool ta = c.ta, tb = c.tb;
    EXPECT_TRUE(gradcheck([ta, tb](auto& in) { return ops::matmul(in[0], in[1], ta, tb); },
                          {a64, b64}))
        << shape_str(c.a) << " x " << shape_str(c.b);
  }
  // Permuted views go to sgemm with flipped transpose flags, no copy needed; same result.
  Tensor q = randn({2, 6, 3, 8}, 200);  // [B, T, H, D]
  Tensor qp = q.permute({0, 2, 1, 3});  // [B, H, T, D]
  Tensor kt = randn({2, 3, 8, 6}, 201);
  EXPECT_TRUE(all_close(ops::matmul(qp, kt), ops::matmul(qp.contiguous(), kt), 1e-6, 1e-6));
  EXPECT_THROW(ops::matmul(randn({3, 4}, 1), randn({5, 6}, 2)), ShapeError);
  EXPECT_THROW(ops::matmul(randn({2, 3, 4}, 1), randn({3, 4, 6}, 2)), ShapeError);
}

TEST(Matmul, LinearGradientsAndDecodeShape) {
  Tensor x = leaf({2, 3, 5}, 300), w = leaf({4, 5}, 301), b = leaf({4}, 302);
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::linear(in[0], in[1], in[2]); }, {x, w, b}));
  EXPECT_TRUE(gradcheck([](auto& in) { return ops::linear(in[0], in[1]); }, {x, w}));
  // M = 1 decode case in f32 against the reference loop.
  Tensor xv = randn({1, 384}, 303), wv = randn({1536, 384}, 304);
  Tensor fast = ops::linear(xv, wv);
  Tensor ref;
  {
    ops::ReferenceGuard mode(true);
    ref = ops::linear(xv, wv);
  }
  EXPECT_TRUE(all_close(fast, ref, 1e-5, 1e-4));
  EXPECT_THROW(ops::linear(randn({2, 6}, 1), randn({4, 5}, 2)), ShapeError);
}

TEST(Matmul, FusedLinearMatchesCompositeReference) {
  // f32 fast path (bias fused into sgemm, hand-written backward) vs matmul + add composite.
  auto run = [](bool reference, bool with_bias) {
    ops::ReferenceGuard mode(reference);
    Tensor x = randn({3, 7, 24}, 400).set_requires_grad(), w = randn({40, 24}, 401).set_requires_grad();
    Tensor b = with_bias ? randn({40}, 402).set_requires_grad() : Tensor();
    Tensor y = ops::linear(x, w, b);
    y.backward(randn(y.shape(), 403));
    return std::vector<Tensor>{y, x.grad(), w.grad(), with_bias ? b.grad() : Tensor()};
  };
  for (bool with_bias : {true, false}) {
    auto fast = run(false, with_bias), ref = run(true, with_bias);
    for (size_t i = 0; i < (with_bias ? 4u : 3u); ++i)
      EXPECT_TRUE(all_close(fast[i], ref[i], 1e-5, 1e-5)) << "tensor " << i;
  }
}
