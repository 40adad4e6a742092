// bf16 GEMM, the f32 -> bf16 conversion and linear() under MatmulPrecision::bf16.
// The oracle for every bf16 product is an f64 loop over the bf16-rounded operands: a product of
// two bf16 values is exact in f32, so the only error left is f32 accumulation (~k * 2^-24 of
// sum |a||b|), far below the 2^-9 rounding error the bf16 operands themselves carry. A test that
// compared with unrounded operands at bf16 tolerance would pass for a wrong rounding rule too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/reduce.h"
#include "common/test_util.h"

namespace metalm {
namespace {

using ops::MatmulPrecision;

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  return test::randn({n}, seed).to_vector<float>();
}

std::vector<bf16> rounded(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The nearest bf16 to a finite f32, ties to the even mantissa, found from the two candidates
// in f64: an oracle that shares no code with f32_to_bf16_bits.
uint16_t nearest_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;  // toward zero, away from zero
  // hi may be the encoding of inf: as a rounding candidate it stands for 2^128.
  const bool hi_is_inf = ((hi >> 16) & 0x7fffu) == 0x7f80u;
  const double x = f, a = from_bits(lo);
  const double b = hi_is_inf ? std::copysign(std::ldexp(1.0, 128), x) : double(from_bits(hi));
  const double da = std::fabs(x - a), db = std::fabs(b - x);
  if (da < db) return static_cast<uint16_t>(lo >> 16);
  if (db < da) return static_cast<uint16_t>(hi >> 16);
  return static_cast<uint16_t>(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

// Tensor::to(bf16), the conversion of every bf16 GEMM operand, on special values, random values
// of every magnitude, contiguous (vector loop) and strided (element loop).
TEST(ConvertToBf16, TensorToMatchesNearestEvenOnSpecialAndRandomValues) {
  std::vector<float> v = {0.f, -0.f, 1.f, -1.5f, std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          from_bits(0x7f800001u),   // signalling NaN: must stay NaN
                          from_bits(0x3f808000u),   // exact tie, even below: rounds down
                          from_bits(0x3f818000u),   // exact tie, odd below: rounds up
                          from_bits(0x3f808001u),   // just above a tie: rounds up
                          from_bits(0x00000001u),   // smallest denormal
                          from_bits(0x7f7fffffu),   // largest finite: rounds to inf
                          std::numeric_limits<float>::min()};
  std::vector<float> r = random_floats(100003, 1);  // odd length: exercises the vector tail
  for (size_t i = 0; i < r.size(); ++i) r[i] = std::ldexp(r[i], static_cast<int>(i % 200) - 100);
  v.insert(v.end(), r.begin(), r.end());
  const Tensor t = Tensor::from_vector<float>({static_cast<int64_t>(v.size())}, v);
  const std::vector<bf16> out = t.to(DType::bf16).to_vector<bf16>();
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(out[i]))) << "element " << i;
      continue;
    }
    ASSERT_EQ(out[i].bits, nearest_bf16(v[i])) << "element " << i << " = " << v[i];
  }
  EXPECT_EQ(out[8].bits, 0x3f80);
  EXPECT_EQ(out[9].bits, 0x3f82);
  EXPECT_EQ(out[10].bits, 0x3f81);
  EXPECT_TRUE(std::isinf(bf16_to_f32(out[12])));
  // A strided view converts element by element: the same values.
  const int64_t n = static_cast<int64_t>(v.size()) / 2;
  const std::vector<bf16> strided =
      t.slice(0, 0, 2 * n).reshape({n, 2}).slice(1, 0, 1).to(DType::bf16).to_vector<bf16>();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(strided[i].bits, out[2 * i].bits) << i;
}

// Only exact ties tell round-to-nearest-even from round-half-up on the bits (= half away from
// zero), and only ties of both signs and parities catch a rule that is right for some of them.
// So every finite bf16 pattern h (the high half of an f32) is tried with the low halves 0x8000
// (the midpoint to its successor), 0x7fff and 0x8001 (off-by-one rounding constants), 0 and
// 0xffff: both signs, even and odd mantissas, denormals, carries into the exponent, and the
// top binade rounding to infinity. Checked on the vector loop of Tensor::to, its strided
// element loop and the scalar f32_to_bf16, against the oracle and a few bits written out.
TEST(ConvertToBf16, EveryTieRoundsToEvenAndNearTiesToNearest) {
  std::vector<float> v;
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    if (((h >> 7) & 0xffu) == 0xffu) continue;  // inf and NaN encodings: not ties
    for (uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu})
      v.push_back(from_bits(h << 16 | low));
  }
  const Tensor t = Tensor::from_vector<float>({static_cast<int64_t>(v.size())}, v);
  const std::vector<bf16> out = t.to(DType::bf16).to_vector<bf16>();
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t want = nearest_bf16(v[i]);
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    ASSERT_EQ(out[i].bits, want) << std::hex << "f32 bits 0x" << u;
    ASSERT_EQ(f32_to_bf16(v[i]).bits, want) << std::hex << "scalar, f32 bits 0x" << u;
  }
  const int64_t n = (static_cast<int64_t>(v.size()) - 1) / 2;  // odd elements: 1, 3, ..
  const std::vector<bf16> odd =
      t.slice(0, 1, 2 * n + 1).reshape({n, 2}).slice(1, 0, 1).to(DType::bf16).to_vector<bf16>();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(odd[i].bits, out[2 * i + 1].bits) << i;

  // The same rule spelled out on hand-picked bits, independently of the oracle.
  const std::vector<std::pair<uint32_t, uint16_t>> cases = {
      {0x3f808000u, 0x3f80},  // tie, even below: stays (half-up would give 0x3f81)
      {0xbf808000u, 0xbf80},  // the same, negative
      {0x3f818000u, 0x3f82},  // tie, odd below: up to even
      {0xbf818000u, 0xbf82},  // the same, negative (away from zero)
      {0x3f807fffu, 0x3f80},  // just below a tie
      {0x3f808001u, 0x3f81},  // just above a tie
      {0x00008000u, 0x0000},  // denormal tie between +0 and the smallest denormal
      {0x80018000u, 0x8002},  // negative denormal tie, odd below
      {0x3f7f8000u, 0x3f80},  // odd mantissa 0x7f carries into the exponent: exactly 1
      {0x7f7e8000u, 0x7f7e},  // top binade, even: stays finite
      {0x7f7f8000u, 0x7f80},  // max bf16 is odd: the tie rounds to +inf
      {0xff7f8000u, 0xff80},  // and to -inf
  };
  for (const auto& [bits, want] : cases) {
    EXPECT_EQ(f32_to_bf16(from_bits(bits)).bits, want) << std::hex << "0x" << bits;
    EXPECT_EQ(Tensor::full({3}, from_bits(bits)).to(DType::bf16).to_vector<bf16>()[2].bits, want)
        << std::hex << "0x" << bits;
  }
}

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k;
  float beta;
  bool bias;
};

// Every layout, beta and bias against the f64 loop, on whichever gemm_bf16 path is active.
void check_gemm_bf16_layouts() {
  const std::vector<GemmCase> cases = {
      {false, false, 37, 19, 53, 0.f, false}, {false, true, 37, 19, 53, 0.f, true},
      {true, false, 37, 19, 53, 1.f, false},  {true, true, 37, 19, 53, 1.f, true},
      {false, true, 256, 384, 96, 0.f, true}, {true, false, 64, 48, 300, 0.f, false},
      {false, false, 1, 7, 5, 1.f, true},     {false, true, 5, 3, 0, 1.f, true}};
  for (const GemmCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "ta=" << c.ta << " tb=" << c.tb << " m=" << c.m
                                    << " n=" << c.n << " k=" << c.k << " beta=" << c.beta
                                    << " bias=" << c.bias);
    // Stored matrices with row strides larger than their width (padded rows).
    const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    const int64_t lda = a_cols + 3, ldb = b_cols + 5, ldc = c.n + 2;
    std::vector<bf16> a = rounded(random_floats(std::max<int64_t>(a_rows * lda, 1), 2));
    std::vector<bf16> b = rounded(random_floats(std::max<int64_t>(b_rows * ldb, 1), 3));
    std::vector<float> bias = random_floats(c.n, 4);
    std::vector<float> c0 = random_floats(c.m * ldc, 5);
    std::vector<float> out = c0;
    ops::gemm_bf16(c.ta, c.tb, c.m, c.n, c.k, a.data(), lda, b.data(), ldb, c.beta, out.data(),
                   ldc, c.bias ? bias.data() : nullptr);
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double acc = 0, mag = 0;
        for (int64_t p = 0; p < c.k; ++p) {
          const double x = bf16_to_f32(c.ta ? a[p * lda + i] : a[i * lda + p]);
          const double y = bf16_to_f32(c.tb ? b[j * ldb + p] : b[p * ldb + j]);
          acc += x * y;
          mag += std::fabs(x * y);
        }
        const double want = acc + c.beta * c0[i * ldc + j] + (c.bias ? bias[j] : 0.0);
        const double tol = 1e-6 * (mag + std::fabs(c0[i * ldc + j]) + 1.0);
        ASSERT_NEAR(out[i * ldc + j], want, tol) << "at (" << i << ", " << j << ")";
      }
    for (int64_t i = 0; i < c.m; ++i)  // the padding between rows of C is untouched
      for (int64_t j = c.n; j < ldc; ++j) ASSERT_EQ(out[i * ldc + j], c0[i * ldc + j]);
  }
}

// Forces gemm_bf16's f32 fallback (what CPUs without AVX-512 run) for one scope.
struct EmulatedBf16Scope {
  explicit EmulatedBf16Scope(bool on) { ops::set_bf16_matmul_emulated(on); }
  ~EmulatedBf16Scope() { ops::set_bf16_matmul_emulated(false); }
};

// Both the native oneDNN kernel (where the CPU has one) and the f32 fallback.
TEST(GemmBf16, MatchesF64LoopOnRoundedOperandsForEveryLayout) {
  for (bool emulated : {false, true}) {
    SCOPED_TRACE(emulated ? "emulated" : "native where available");
    EmulatedBf16Scope scope(emulated);
    if (emulated) {
      EXPECT_FALSE(ops::native_bf16_matmul());
    }
    check_gemm_bf16_layouts();
  }
}

// The bf16-output form with bias and activation, native and emulated, against f64 on the
// rounded operands then one rounding to bf16 (one bf16 step of slack for ties near a boundary).
TEST(GemmBf16, Bf16OutputWithBiasAndActivationMatchesF64) {
  for (bool emulated : {false, true}) {
    SCOPED_TRACE(emulated ? "emulated" : "native where available");
    EmulatedBf16Scope scope(emulated);
    const int64_t m = 23, n = 17, k = 40, lda = k + 1, ldb = k + 2, ldc = n + 3;
    std::vector<bf16> a = rounded(random_floats(m * lda, 6));
    std::vector<bf16> b = rounded(random_floats(n * ldb, 7));  // stored [n, k]: trans_b
    std::vector<float> bias = random_floats(n, 8);
    std::vector<bf16> out(m * ldc, f32_to_bf16(7.f));
    ops::gemm_bf16(false, true, m, n, k, a.data(), lda, b.data(), ldb, out.data(), ldc,
                   bias.data(), ops::Activation::relu);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = bias[j];
        for (int64_t p = 0; p < k; ++p)
          acc += double(bf16_to_f32(a[i * lda + p])) * bf16_to_f32(b[j * ldb + p]);
        const double want = std::max(acc, 0.0);
        ASSERT_NEAR(bf16_to_f32(out[i * ldc + j]), want, std::fabs(want) / 128 + 1e-6)
            << "at (" << i << ", " << j << ")";
      }
      for (int64_t j = n; j < ldc; ++j) ASSERT_EQ(bf16_to_f32(out[i * ldc + j]), 7.f);
    }
  }
}

TEST(GemmBf16, RejectsBetaOtherThanZeroOrOne) {
  std::vector<bf16> a(4), b(4);
  std::vector<float> c(4);
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] { ops::gemm_bf16(false, false, 2, 2, 2, a.data(), 2, b.data(), 2, 0.5f, c.data(), 2); },
      "[gemm_bf16] beta must be 0 or 1"));
}

// f64 linear on bf16-rounded copies of x and w: what linear() under bf16 must equal.
Tensor round_to_bf16(const Tensor& t) { return t.to(DType::bf16).to(DType::f64); }

TEST(LinearBf16, ForwardAndGradientsEqualF64OnRoundedOperands) {
  Tensor x = test::randn({3, 41, 24}, 10).set_requires_grad();
  Tensor w = test::randn({33, 24}, 11).set_requires_grad();
  Tensor b = test::randn({33}, 12).set_requires_grad();
  Tensor g = test::randn({3, 41, 33}, 13);
  Tensor y;
  {
    ops::MatmulPrecisionGuard guard(MatmulPrecision::bf16);
    EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::bf16);
    y = ops::linear(x, w, b);
  }
  EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::f32);  // guard restored the default
  y.backward(g);  // backward after the guard is gone: runs with the precision of the forward

  Tensor xr = round_to_bf16(x), wr = round_to_bf16(w), gr = round_to_bf16(g);
  Tensor y_want = ops::add(ops::matmul(xr.reshape({123, 24}), wr, false, true).reshape({3, 41, 33}),
                           b.detach().to(DType::f64));
  Tensor gx_want = ops::matmul(gr.reshape({123, 33}), wr).reshape({3, 41, 24});
  Tensor gw_want = ops::matmul(gr.reshape({123, 33}), xr.reshape({123, 24}), true, false);
  Tensor gb_want = ops::sum(g.to(DType::f64).reshape({123, 33}), {0});
  EXPECT_TRUE(test::all_close(y.to(DType::f64), y_want, 1e-6, 1e-5));
  EXPECT_TRUE(test::all_close(x.grad().to(DType::f64), gx_want, 1e-6, 1e-5));
  EXPECT_TRUE(test::all_close(w.grad().to(DType::f64), gw_want, 1e-6, 1e-5));
  EXPECT_TRUE(test::all_close(b.grad().to(DType::f64), gb_want, 1e-6, 1e-5));

  // And it really is lower precision: f32 linear differs by about the bf16 rounding error.
  std::vector<float> y32 = ops::linear(x.detach(), w.detach(), b.detach()).to_vector<float>();
  std::vector<float> y16 = y.to_vector<float>();
  double diff = 0;
  for (size_t i = 0; i < y32.size(); ++i) diff = std::max<double>(diff, std::fabs(y32[i] - y16[i]));
  EXPECT_GT(diff, 1e-4);
  EXPECT_LT(diff, 0.2);
}

TEST(LinearBf16, NoBiasEmptyRowsAndF64Unaffected) {
  ops::MatmulPrecisionGuard guard(MatmulPrecision::bf16);
  Tensor x = test::randn({0, 8}, 20).set_requires_grad();
  Tensor w = test::randn({5, 8}, 21).set_requires_grad();
  Tensor y = ops::linear(x, w);
  EXPECT_EQ(y.shape(), (Shape{0, 5}));
  y.backward(Tensor::zeros({0, 5}, DType::f32));
  for (float v : w.grad().to_vector<float>()) EXPECT_EQ(v, 0.f);
  // f64 tensors keep the exact reference path whatever the precision setting.
  Tensor xd = test::randn({4, 8}, 22, DType::f64), wd = test::randn({5, 8}, 23, DType::f64);
  Tensor yd = ops::linear(xd, wd);
  EXPECT_TRUE(test::all_close(yd, ops::matmul(xd, wd, false, true), 1e-15, 1e-15));
}

// The fused GEMM + activation of inference under bf16 against the two ops it replaces (the same
// bf16 GEMM, then the exact activation): equal up to oneDNN's activation approximations.
TEST(LinearActivation, FusedUnderBf16MatchesTheTwoOps) {
  Tensor x = ops::mul(test::randn({2, 37, 48}, 30), 2.0);  // pre-activations out to ~|8|
  Tensor w = test::randn({40, 48}, 31), b = test::randn({40}, 32);
  ops::MatmulPrecisionGuard guard(MatmulPrecision::bf16);
  for (bool emulated : {false, true}) {
    for (const char* act : {"relu", "gelu", "gelu_tanh", "swish", "quick_gelu"}) {
      SCOPED_TRACE(testing::Message() << act << (emulated ? " emulated" : ""));
      EmulatedBf16Scope scope(emulated);
      const Tensor want = ops::activation(ops::linear(x, w, b), ops::parse_activation(act));
      const Tensor got = ops::linear_activation(x, w, b, ops::parse_activation(act));
      EXPECT_TRUE(test::all_close(got, want, 1e-5, 1e-5));
      // It did take the fused path: the GEMM's bias-then-activation epilogue rounds differently.
      // The f32 fallback has no epilogue: exactly the two ops.
      if (!ops::native_bf16_matmul()) {
        EXPECT_TRUE(test::all_close(got, want, 0, 0));
      } else if (std::string(act) != "relu") {
        EXPECT_FALSE(test::all_close(got, want, 0, 0));
      }
    }
  }
}

TEST(LinearActivation, ExactlyTheTwoOpsWithF32OrGradients) {
  Tensor x = test::randn({5, 16}, 33), w = test::randn({8, 16}, 34), b = test::randn({8}, 35);
  // f32 precision: never fused.
  EXPECT_TRUE(test::all_close(ops::linear_activation(x, w, b, ops::Activation::gelu),
                              ops::gelu(ops::linear(x, w, b)), 0, 0));
  // bf16 with a gradient to take: the two ops (so backward exists and is exact).
  ops::MatmulPrecisionGuard guard(MatmulPrecision::bf16);
  Tensor wg = w.detach().set_requires_grad();
  Tensor y = ops::linear_activation(x, wg, b, ops::Activation::gelu);
  EXPECT_TRUE(test::all_close(y.detach(), ops::gelu(ops::linear(x, w, b)), 0, 0));
  ops::sum(y).backward();
  EXPECT_TRUE(wg.grad().defined());
  // An unknown name fails where names are read.
  EXPECT_TRUE(test::throws_with<ValueError>([&] { ops::parse_activation("tanhh"); },
                                            "[activation] unknown activation 'tanhh'"));
}

// The fused inference MLP: the hidden layer is rounded to bf16 between the GEMMs, exactly what
// the second bf16 GEMM would do to it anyway, so it equals the three ops up to the activation's
// approximation (amplified by the second GEMM's sum over the hidden width).
TEST(Mlp, FusedUnderBf16MatchesTheThreeOpsAndIsExactOtherwise) {
  Tensor x = test::randn({3, 29, 48}, 40), w1 = test::randn({96, 48}, 41);
  Tensor b1 = test::randn({96}, 42), w2 = test::randn({40, 96}, 43), b2 = test::randn({40}, 44);
  const Tensor f32_want = ops::linear(ops::gelu(ops::linear(x, w1, b1)), w2, b2);
  EXPECT_TRUE(test::all_close(ops::mlp(x, w1, b1, ops::Activation::gelu, w2, b2), f32_want, 0, 0));
  ops::MatmulPrecisionGuard guard(MatmulPrecision::bf16);
  for (const char* act : {"relu", "gelu", "swish"}) {
    SCOPED_TRACE(act);
    const Tensor want = ops::linear(ops::activation(ops::linear(x, w1, b1), ops::parse_activation(act)), w2, b2);
    const Tensor got = ops::mlp(x, w1, b1, ops::parse_activation(act), w2, b2);
    EXPECT_EQ(got.shape(), (Shape{3, 29, 40}));
    // Hidden values within one bf16 rounding of each other can round to neighbouring bf16
    // values: an error of 2^-8 relative on a few of the 96 terms.
    EXPECT_TRUE(test::all_close(got, want, 1e-3, 2e-2));
  }
  // The fused path never holds the f32 hidden layer: its peak of live tensor bytes is lower.
  auto peak_of = [](const std::function<Tensor()>& f) {
    const size_t before = memory_stats().current_bytes;
    memory_reset_peak();
    f();
    return memory_stats().peak_bytes - before;
  };
  const size_t fused = peak_of([&] { return ops::mlp(x, w1, b1, ops::Activation::gelu, w2, b2); });
  const size_t three =
      peak_of([&] { return ops::linear(ops::gelu(ops::linear(x, w1, b1)), w2, b2); });
  if (ops::native_bf16_matmul()) {  // the f32 fallback widens the hidden layer again
    EXPECT_LT(fused + 3 * 29 * 96 * 4 / 2, three) << "fused " << fused << ", three ops " << three;
  }
  Tensor w2g = w2.detach().set_requires_grad();  // gradients wanted: the three ops, exactly
  Tensor y = ops::mlp(x, w1, b1, ops::Activation::gelu, w2g, b2);
  EXPECT_TRUE(test::all_close(y.detach(),
                              ops::linear(ops::gelu(ops::linear(x, w1, b1)), w2, b2), 0, 0));
  EXPECT_TRUE(test::throws_with<ShapeError>(
      [&] { ops::mlp(x, w1, b1, ops::Activation::gelu, test::randn({40, 95}, 45), b2); }, "[linear]"));
}

// linears(): the separate linear() calls, bit for bit, forward and backward, in both
// precisions; under bf16 with one rounded copy of x (a lower tensor peak than separate calls).
TEST(Linears, EqualSeparateLinearsAndShareTheRoundedInput) {
  for (MatmulPrecision p : {MatmulPrecision::f32, MatmulPrecision::bf16}) {
    SCOPED_TRACE(ops::matmul_precision_name(p));
    ops::MatmulPrecisionGuard guard(p);
    const Tensor x0 = test::randn({4, 33, 64}, 50);
    std::vector<Tensor> w0 = {test::randn({64, 64}, 51), test::randn({32, 64}, 52),
                              test::randn({64, 64}, 53)};
    std::vector<Tensor> b0 = {test::randn({64}, 54), Tensor(), test::randn({64}, 55)};
    auto run = [&](bool together) {
      Tensor x = x0.detach().set_requires_grad();
      std::vector<Tensor> w, b;
      for (size_t i = 0; i < 3; ++i) {
        w.push_back(w0[i].detach().set_requires_grad());
        b.push_back(b0[i].defined() ? b0[i].detach().set_requires_grad() : Tensor());
      }
      std::vector<Tensor> y;
      if (together) {
        y = ops::linears(x, w, b);
      } else {
        for (size_t i = 0; i < 3; ++i) y.push_back(ops::linear(x, w[i], b[i]));
      }
      Tensor loss = ops::add(ops::add(ops::sum(y[0]), ops::sum(ops::mul(y[1], y[1]))),
                             ops::sum(ops::mul(y[2], 0.5)));
      loss.backward();
      std::vector<Tensor> got = {y[0].detach(), y[1].detach(), y[2].detach(), x.grad()};
      for (size_t i = 0; i < 3; ++i) got.push_back(w[i].grad());
      return got;
    };
    const std::vector<Tensor> a = run(true), b = run(false);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(test::all_close(a[i], b[i], 0, 0)) << i;
  }
  // What the forward keeps for backward under bf16: the outputs and nothing else (x and w are
  // saved as they are; their bf16 copies are made again in backward), as with f32.
  ops::MatmulPrecisionGuard guard(MatmulPrecision::bf16);
  const Tensor x = test::randn({256, 64}, 56).set_requires_grad(), w = test::randn({64, 64}, 57);
  const size_t before = memory_stats().current_bytes;
  std::vector<Tensor> kept = ops::linears(x, {w, w, w}, {Tensor(), Tensor(), Tensor()});
  EXPECT_EQ(memory_stats().current_bytes - before, size_t{3} * 256 * 64 * 4);
  ops::sum(ops::add(ops::add(kept[0], kept[1]), kept[2])).backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(test::throws_with<ValueError>([&] { ops::linears(x, {w, w}, {Tensor()}); },
                                            "[linears] needs as many biases"));
}

TEST(MatmulPrecision, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(ops::parse_matmul_precision("bf16"), MatmulPrecision::bf16);
  EXPECT_EQ(ops::parse_matmul_precision("f32"), MatmulPrecision::f32);
  EXPECT_STREQ(ops::matmul_precision_name(MatmulPrecision::bf16), "bf16");
  EXPECT_TRUE(test::throws_with<ValueError>([] { ops::parse_matmul_precision("fp16"); },
                                            "expected f32 or bf16, got 'fp16'"));
}

}  // namespace
}  // namespace metalm
