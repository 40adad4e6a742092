// Position encodings (nn/positions.h) and the rotary op (ops/rotary.h): values computed by hand
// from reference-spec 5.1-5.4, the xPos relative property q_m . k_n = f(m - n), decode-step
// consistency, fast path vs composite reference, f64 finite-difference gradients, state-dict
// names (D3), and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/threads.h"
#include "metalm/nn/positions.h"
#include "metalm/ops/ops.h"
#include "metalm/ops/rotary.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::randn;

namespace {

// The message of the Error that fn throws ("" if none).
template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// xPos of one row, written out per element from spec 5.1 in double: x: [D] at absolute row n of
// N total positions.
std::vector<double> xpos_row_direct(const std::vector<double>& x, int64_t n, int64_t N,
                                    bool downscale) {
  const int64_t D = static_cast<int64_t>(x.size()), half = D / 2;
  const int64_t min_pos = static_cast<int64_t>(std::floor(-static_cast<double>(N) / 2.0));
  std::vector<double> out(D);
  for (int64_t i = 0; i < half; ++i) {
    const double zeta = (2.0 * i + 0.4 * D) / (1.4 * D);
    double scale = std::pow(zeta, static_cast<double>(min_pos + n) / 512.0);
    if (downscale) scale = 1.0 / scale;
    const double theta = std::pow(10000.0, -static_cast<double>(i) / half);
    const double c = std::cos(n * theta) * scale, s = std::sin(n * theta) * scale;
    out[2 * i] = x[2 * i] * c - x[2 * i + 1] * s;
    out[2 * i + 1] = x[2 * i + 1] * c + x[2 * i] * s;
  }
  return out;
}

}  // namespace

// ================================================================== T5 buckets

// num_buckets 8, max_distance 20: nb = 4 per direction, max_exact = 2. For n >= 2 the bucket is
// 2 + trunc(ln(n/2) / ln(10) * 2), which reaches 1 at n/2 >= sqrt(10), i.e. n >= 7, and is
// capped at nb - 1 = 3. Negative n (key after the query) adds nb = 4.
TEST(PositionsBuckets, HandComputedSmallTable) {
  const std::vector<std::pair<int64_t, int64_t>> expect = {
      {0, 0},  {1, 1},  {2, 2},  {3, 2},  {6, 2},  {7, 3},   {20, 3},    {1000, 3},
      {-1, 5}, {-2, 6}, {-3, 6}, {-6, 6}, {-7, 7}, {-20, 7}, {-1000, 7},
  };
  for (auto [n, b] : expect) EXPECT_EQ(nn::relative_position_bucket(n, 8, 20), b) << "n = " << n;
  // T5's usual 32 / 128: 16 per direction, max_exact 8, ln(n/8)/ln(16)*8 -> 8 + 2 at n = 16,
  // 8 + 4 at n = 32, 8 + 6 at n = 64, capped at 15 from n = 128 on (8 + 8 = 16 > 15).
  EXPECT_EQ(nn::relative_position_bucket(7, 32, 128), 7);
  EXPECT_EQ(nn::relative_position_bucket(8, 32, 128), 8);
  EXPECT_EQ(nn::relative_position_bucket(15, 32, 128), 9);
  EXPECT_EQ(nn::relative_position_bucket(16, 32, 128), 10);
  EXPECT_EQ(nn::relative_position_bucket(32, 32, 128), 12);
  EXPECT_EQ(nn::relative_position_bucket(64, 32, 128), 14);
  EXPECT_EQ(nn::relative_position_bucket(127, 32, 128), 15);
  EXPECT_EQ(nn::relative_position_bucket(100000, 32, 128), 15);
  EXPECT_EQ(nn::relative_position_bucket(-16, 32, 128), 16 + 10);
  EXPECT_EQ(nn::relative_position_bucket(-100000, 32, 128), 31);
  // Odd num_buckets floor-halve: 33 -> 16 per direction, the last bucket 31 < 33.
  EXPECT_EQ(nn::relative_position_bucket(-100000, 33, 100), 31);
}

// An exact boundary: num_buckets 18 (nb 9, max_exact 4), max_distance 128, n = 8 gives
// ln(2) / ln(32) * 5 = 1 exactly. In double the quotient rounds to 0.99999... and truncates to 0
// (bucket 4); PyTorch's f32 gives 1.0 (bucket 5), and so does ours. Checked against PyTorch for
// every n in the reference test.
TEST(PositionsBuckets, ExactBoundaryFollowsPyTorchF32) {
  EXPECT_EQ(nn::relative_position_bucket(8, 18, 128), 5);
  EXPECT_EQ(nn::relative_position_bucket(16, 18, 128), 6);
  EXPECT_EQ(nn::relative_position_bucket(64, 18, 128), 8);
}

TEST(PositionsBuckets, GridAndExtremes) {
  // rows: query positions 3 .. 5, columns: keys 0 .. 6 -> n = 3 + i - j
  Tensor b = nn::relative_position_buckets(3, 7, 3, 8, 20);
  ASSERT_EQ(b.shape(), Shape({3, 7}));
  auto v = b.to_vector<int64_t>();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 7; ++j)
      EXPECT_EQ(v[i * 7 + j], nn::relative_position_bucket(3 + i - j, 8, 20)) << i << "," << j;
  EXPECT_EQ(nn::relative_position_buckets(0, 5, 0, 8, 20).shape(), Shape({0, 5}));
  EXPECT_EQ(nn::relative_position_bucket(INT64_MIN, 8, 20), 7);
  EXPECT_EQ(nn::relative_position_bucket(INT64_MAX, 8, 20), 3);
}

// ================================================================== relative position bias

TEST(PositionsRelativeBias, LookupStepRowAndNames) {
  Generator gen(7);
  nn::RelativePositionBias rpb(8, 20, 3, gen);
  auto sd = rpb.state_dict();
  ASSERT_EQ(sd.size(), 1u);
  ASSERT_TRUE(sd.count("relative_attention_bias.weight"));
  EXPECT_EQ(sd.at("relative_attention_bias.weight").shape(), Shape({8, 3}));

  const Tensor& w = rpb.relative_attention_bias->weight;
  Tensor bias = rpb.forward(4, 6, 2);
  ASSERT_EQ(bias.shape(), Shape({1, 3, 4, 6}));
  auto bv = bias.to_vector<float>();
  auto wv = w.to_vector<float>();
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 6; ++j) {
        const int64_t bucket = nn::relative_position_bucket(2 + i - j, 8, 20);
        EXPECT_EQ(bv[(h * 4 + i) * 6 + j], wv[bucket * 3 + h]);
      }

  // The incremental step is the last query row of the full square bias (spec 1.3 quirk).
  Tensor full = rpb.forward(9, 9);
  Tensor step = rpb.forward_step(9);
  ASSERT_EQ(step.shape(), Shape({1, 3, 1, 9}));
  EXPECT_TRUE(all_close(step, full.slice(2, 8, 9), 0, 0));
}

// The Toeplitz form: bias[0, h, i, j] = diagonals[h, i - j + klen - 1]; empty shapes.
TEST(PositionsRelativeBias, DiagonalsAndEmpty) {
  Generator gen(9);
  nn::RelativePositionBias rpb(16, 40, 3, gen);
  Tensor bias = rpb.forward(7, 11, 4);
  Tensor diag = rpb.diagonals(7, 11, 4);
  ASSERT_EQ(diag.shape(), Shape({3, 7 + 11 - 1}));
  auto bv = bias.to_vector<float>(), dv = diag.to_vector<float>();
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t i = 0; i < 7; ++i)
      for (int64_t j = 0; j < 11; ++j) EXPECT_EQ(bv[(h * 7 + i) * 11 + j], dv[h * 17 + i - j + 10]);
  EXPECT_EQ(rpb.forward(0, 5).shape(), Shape({1, 3, 0, 5}));
  EXPECT_EQ(rpb.forward(4, 0).shape(), Shape({1, 3, 4, 0}));
}

// The table gradient is bit-identical for 1 and 2 threads (one head per thread, fixed order),
// on a problem large enough for the parallel path.
TEST(PositionsRelativeBias, GradientDeterministicAcrossThreads) {
  test::ThreadCountGuard threads_guard;
  Tensor grads[2];
  for (int t = 0; t < 2; ++t) {
    set_num_threads(t + 1);
    Generator gen(10);
    nn::RelativePositionBias rpb(32, 128, 4, gen);
    Tensor bias = rpb.forward(120, 130, 5);
    bias.backward(randn(bias.shape(), 11));
    grads[t] = rpb.relative_attention_bias->weight.grad();
  }
  EXPECT_TRUE(all_close(grads[0], grads[1], 0, 0));
}

// d bias / d table: table row b, column h collects the upstream gradient of every (i, j) whose
// bucket is b, in head h. Checked directly, then by finite differences in f64.
TEST(PositionsRelativeBias, TableGradient) {
  Generator gen(8);
  nn::RelativePositionBias rpb(8, 20, 2, gen);
  Tensor bias = rpb.forward(5, 7, 1);
  Tensor g = randn(bias.shape(), 3);
  bias.backward(g);
  Tensor gw = rpb.relative_attention_bias->weight.grad();
  ASSERT_TRUE(gw.defined());
  std::vector<double> expect(8 * 2, 0.0);
  auto gv = g.to_vector<double>();
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 7; ++j)
        expect[nn::relative_position_bucket(1 + i - j, 8, 20) * 2 + h] += gv[(h * 5 + i) * 7 + j];
  EXPECT_TRUE(all_close(gw, Tensor::from_vector<double>({8, 2}, expect), 1e-6, 1e-6));

  // f64 gradcheck through the module: its forward reads relative_attention_bias->weight, which
  // the test points at an f64 leaf (the module itself is built in f32).
  Tensor w64 = randn({8, 2}, 4, DType::f64).set_requires_grad();
  rpb.relative_attention_bias->weight = w64;
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return rpb.forward(6, 9, 2); }, {w64}));
}

// ================================================================== fairseq sinusoidal

// dim 8: half 4, w_k = exp(-k ln(10000)/3) = 1, 10000^(-1/3), 10000^(-2/3), 10000^(-1). Row 2 is
// [sin(2 w_k) | cos(2 w_k)], values from a calculator.
TEST(PositionsSinusoidal, Row2ByHand) {
  const std::vector<double> row2 = {
      0.9092974268256817,  0.0926985007787272, 0.004308856046742809, 0.0001999999986666665,
      -0.4161468365471424, 0.9956942241237399, 0.9999907168366957,   0.9999999800000001};
  Tensor t = nn::sinusoidal_table(4, 8, 1, DType::f64);
  ASSERT_EQ(t.shape(), Shape({4, 8}));
  EXPECT_TRUE(all_close(t.slice(0, 2, 3).reshape({8}), Tensor::from_vector<double>({8}, row2),
                        1e-14, 1e-15));
  // The padding row is zero; row 0 is [0 0 0 0 | 1 1 1 1].
  EXPECT_TRUE(all_close(t.slice(0, 1, 2), Tensor::zeros({1, 8}, DType::f64), 0, 0));
  EXPECT_TRUE(all_close(t.slice(0, 0, 1).reshape({8}),
                        Tensor::from_vector<double>({8}, {0, 0, 0, 0, 1, 1, 1, 1}), 0, 0));
  // f32 is the double table rounded once.
  EXPECT_TRUE(all_close(nn::sinusoidal_table(4, 8, 1), t.to(DType::f32), 0, 0));
}

TEST(PositionsSinusoidal, OddDimAppendsZeroColumn) {
  Tensor t9 = nn::sinusoidal_table(6, 9, -1, DType::f64);
  Tensor t8 = nn::sinusoidal_table(6, 8, -1, DType::f64);
  ASSERT_EQ(t9.shape(), Shape({6, 9}));
  EXPECT_TRUE(all_close(t9.slice(1, 0, 8), t8, 0, 0));
  EXPECT_TRUE(all_close(t9.slice(1, 8, 9), Tensor::zeros({6, 1}, DType::f64), 0, 0));
}

TEST(PositionsSinusoidal, MakePositionsAndModule) {
  // pad id 1, padding_idx 1: real tokens count from 2; pads keep 1, also between real tokens.
  Tensor tokens = Tensor::from_vector<int64_t>({3, 4}, {5, 6, 1, 7, 1, 1, 5, 6, 0, 1, 1, 9});
  Tensor pos = nn::make_positions(tokens, 1, 1);
  EXPECT_EQ(pos.to_vector<int64_t>(), (std::vector<int64_t>{2, 3, 1, 4, 1, 1, 2, 3, 2, 1, 1, 3}));
  // A pad id different from padding_idx (here pad 0, positions from padding_idx 1).
  EXPECT_EQ(nn::make_positions(tokens, 0, 1).to_vector<int64_t>(),
            (std::vector<int64_t>{2, 3, 4, 5, 2, 3, 4, 5, 1, 2, 3, 4}));

  nn::SinusoidalPositionalEmbedding emb(16, 1);
  auto sd = emb.state_dict();
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_TRUE(sd.count("_float_tensor"));
  EXPECT_TRUE(emb.parameters().empty());
  Tensor e = emb.forward(tokens);
  ASSERT_EQ(e.shape(), Shape({3, 4, 16}));
  EXPECT_TRUE(all_close(e, nn::sinusoidal_embedding(pos, 16, 1), 0, 0));
  EXPECT_TRUE(all_close(e.slice(0, 0, 1).slice(1, 2, 3), Tensor::zeros({1, 1, 16}), 0, 0));
  // Incremental: the new token of a 9-token prefix is at padding_idx + 9 = 10.
  Tensor step = emb.forward_step(9);
  ASSERT_EQ(step.shape(), Shape({1, 1, 16}));
  EXPECT_TRUE(
      all_close(step.reshape({1, 16}), nn::sinusoidal_table(11, 16, 1).slice(0, 10, 11), 0, 0));
}

// ================================================================== learned

TEST(PositionsLearned, OffsetTwoAndExplicit) {
  Generator gen(1);
  nn::LearnedPositionalEmbedding pe(1026, 8, gen);
  auto sd = pe.state_dict();
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd.at("weight").shape(), Shape({1026, 8}));
  Tensor d = pe.forward(5);
  ASSERT_EQ(d.shape(), Shape({5, 8}));
  EXPECT_TRUE(all_close(d, pe.weight.slice(0, 2, 7), 0, 0));
  Tensor p = Tensor::from_vector<int64_t>({2, 3}, {2, 3, 1025, 0, 0, 7});
  Tensor e = pe.forward(p);
  ASSERT_EQ(e.shape(), Shape({2, 3, 8}));
  EXPECT_TRUE(all_close(e.slice(0, 0, 1).slice(1, 2, 3).reshape({1, 8}),
                        pe.weight.slice(0, 1025, 1026), 0, 0));
  EXPECT_EQ(pe.forward(Tensor::from_vector<int32_t>({3}, {2, 3, 4})).shape(), Shape({3, 8}));

  // Gradients reach the rows read (default positions: rows 2 .. 6).
  pe.forward(5).backward(Tensor::ones({5, 8}));
  auto g = pe.weight.grad().to_vector<float>();
  EXPECT_EQ(g[1 * 8], 0.f);
  EXPECT_EQ(g[2 * 8], 1.f);
  EXPECT_EQ(g[6 * 8], 1.f);
  EXPECT_EQ(g[7 * 8], 0.f);

  EXPECT_EQ(error_of([&] {
              pe.forward(Tensor::from_vector<int64_t>({2}, {3, 1030}));
            }),
            "[positions] position 1030 >= table size 1026");
  EXPECT_EQ(error_of([&] { pe.forward(Tensor::from_vector<int64_t>({1}, {-1})); }),
            "[positions] position -1 < 0");
  EXPECT_THROW(pe.forward(1025), ValueError);  // rows 2 .. 1026
  EXPECT_NO_THROW(pe.forward(1024));
  EXPECT_THROW(pe.forward(Tensor::zeros({3})), DTypeError);
  EXPECT_THROW(pe.forward(Tensor::zeros({1, 2, 3}, DType::i64)), ShapeError);
}

// ================================================================== xPos

TEST(PositionsXPos, MinPosIsPythonFloorDivision) {
  EXPECT_EQ(nn::xpos_min_pos(0), 0);
  EXPECT_EQ(nn::xpos_min_pos(1), -1);
  EXPECT_EQ(nn::xpos_min_pos(2), -1);
  EXPECT_EQ(nn::xpos_min_pos(3), -2);
  EXPECT_EQ(nn::xpos_min_pos(4), -2);
  EXPECT_EQ(nn::xpos_min_pos(7), -4);
  EXPECT_EQ(nn::xpos_min_pos(2048), -1024);
  EXPECT_THROW(nn::xpos_min_pos(-1), ValueError);
}

// D = 4, L = 3, offset 0: N = 3, min_pos = -2; zeta = (1.6, 3.6) / 5.6, theta = (1, 0.01).
TEST(PositionsXPos, HandValuesD4L3) {
  // Row 1 (centred -1) of x = [1, 0, 0, 1]: scale_i = zeta_i^(-1/512) = 1.00244980, 1.00086333;
  // out = [cos(1) s0, sin(1) s0, -sin(0.01) s1, cos(0.01) s1].
  // Row 2 (centred 0) has scale 1 either way: a pure rotation of x = [1, 2, 3, 4] by (2, 0.02).
  Tensor x = Tensor::from_vector<double>({1, 1, 3, 4}, {0, 0, 0, 0, 1, 0, 0, 1, 1, 2, 3, 4});
  Tensor up = nn::xpos(x, 0, false);
  Tensor down = nn::xpos(x, 0, true);
  const std::vector<double> row1 = {0.5416259376668277, 0.8435324191957719, -0.01000846646074694,
                                    1.0008132842974125};
  const std::vector<double> row2 = {-2.234741690198506, 0.0770037537313969, 2.919405353226401,
                                    4.05919602674631};
  EXPECT_TRUE(all_close(up.slice(2, 1, 2).reshape({4}), Tensor::from_vector<double>({4}, row1),
                        1e-14, 1e-15));
  EXPECT_TRUE(all_close(up.slice(2, 2, 3).reshape({4}), Tensor::from_vector<double>({4}, row2),
                        1e-14, 1e-15));
  EXPECT_TRUE(all_close(down.slice(2, 2, 3).reshape({4}), Tensor::from_vector<double>({4}, row2),
                        1e-14, 1e-15));
}

// Every element against the per-element formula, for odd and even N, with and without offset,
// up and down, f64 and f32, and through a permuted (non-contiguous) input.
TEST(PositionsXPos, MatchesDirectFormula) {
  struct C {
    int64_t L, D, offset;
  };
  for (C c : {C{3, 4, 0}, C{4, 6, 0}, C{5, 8, 2}, C{1, 8, 6}, C{2, 16, 1001}}) {
    for (bool down : {false, true}) {
      for (DType dt : {DType::f64, DType::f32}) {
        SCOPED_TRACE(::testing::Message() << "L " << c.L << " D " << c.D << " offset " << c.offset
                                          << " down " << down << " " << dtype_name(dt));
        // x stored as [B, L, H, D] and viewed as [B, H, L, D], as attention does.
        Tensor store = randn({2, c.L, 3, c.D}, 11, dt);
        Tensor x = store.permute({0, 2, 1, 3});
        Tensor out = nn::xpos(x, c.offset, down);
        ASSERT_EQ(out.shape(), Shape({2, 3, c.L, c.D}));
        auto xv = x.to_vector<double>();
        std::vector<double> expect(xv.size());
        const int64_t N = c.L + c.offset;
        for (int64_t r = 0; r < 2 * 3 * c.L; ++r) {
          std::vector<double> row(xv.begin() + r * c.D, xv.begin() + (r + 1) * c.D);
          auto o = xpos_row_direct(row, c.offset + r % c.L, N, down);
          std::copy(o.begin(), o.end(), expect.begin() + r * c.D);
        }
        Tensor e = Tensor::from_vector<double>(out.shape(), expect);
        if (dt == DType::f64)
          EXPECT_TRUE(all_close(out, e, 1e-13, 1e-14));
        else  // f32 inputs are exact in double; the f32 tables and products round
          EXPECT_TRUE(all_close(out, e.to(DType::f32), 1e-6, 1e-6));
      }
    }
  }
}

// Spec "net effect": with q rotated up and k rotated down over the same N, and d = m - n,
//   q_m . k_n = sum_i zeta_i^(d/512) [cos(d theta_i)(q0 k0 + q1 k1) + sin(d theta_i)(q0 k1 - q1
//   k0)]
// (pairs (q0, q1) = q[2i], q[2i+1]): it depends on m - n only. So shifting both positions by s
// (with N grown by s) leaves it unchanged, and the incremental query (L = 1, offset m) equals row
// m of the full-sequence query whenever both cover the same N.
TEST(PositionsXPos, RelativeProperty) {
  const int64_t D = 8, S = 12, shift = 37;
  Tensor q = randn({1, 1, 1, D}, 21, DType::f64);
  Tensor k = randn({1, 1, 1, D}, 22, DType::f64);
  auto qv = q.to_vector<double>(), kv = k.to_vector<double>();
  auto closed_form = [&](int64_t delta) {
    double sum = 0;
    for (int64_t i = 0; i < D / 2; ++i) {
      const double zeta = (2.0 * i + 0.4 * D) / (1.4 * D);
      const double th = std::pow(10000.0, -static_cast<double>(i) / (D / 2));
      const double q0 = qv[2 * i], q1 = qv[2 * i + 1], k0 = kv[2 * i], k1 = kv[2 * i + 1];
      sum += std::pow(zeta, delta / 512.0) * (std::cos(delta * th) * (q0 * k0 + q1 * k1) +
                                              std::sin(delta * th) * (q0 * k1 - q1 * k0));
    }
    return sum;
  };
  // q . k with the incremental q at position m (L = 1, offset m: N = m + 1) and k rotated over
  // all N = m + 1 positions (the cache), key row n.
  auto dot = [&](int64_t m, int64_t n) {
    Tensor qr = nn::xpos(q, m, false);
    Tensor keys = k.expand({1, 1, m + 1, D}).contiguous();  // the same k at every position
    Tensor kr = nn::xpos(keys, 0, true).slice(2, n, n + 1);
    return ops::sum(ops::mul(qr, kr)).item<double>();
  };
  for (int64_t n = 0; n < S; ++n) {
    const double base = dot(S - 1, n);
    EXPECT_NEAR(base, closed_form(S - 1 - n), 1e-12) << "n = " << n;
    EXPECT_NEAR(dot(S - 1 + shift, n + shift), base, 1e-12) << "n = " << n;
  }

  // Decode consistency: row m of the full q (offset 0, L = S) is the incremental q (offset S-1)
  // for m = S - 1; both have N = S.
  Tensor qs = randn({2, 3, S, D}, 23, DType::f64);
  Tensor full = nn::xpos(qs, 0, false);
  Tensor step = nn::xpos(qs.slice(2, S - 1, S), S - 1, false);
  EXPECT_TRUE(all_close(step, full.slice(2, S - 1, S), 1e-15, 1e-15));
  // With a different N the centring does not cancel: row 3 of the full q differs from q at
  // offset 3 alone (N = 4 instead of S) by the factor zeta_i^((min_pos(S) - min_pos(4)) / 512).
  Tensor alone = nn::xpos(qs.slice(2, 3, 4), 3, false);
  EXPECT_FALSE(all_close(alone, full.slice(2, 3, 4), 1e-12, 1e-12));
}

// ================================================================== rotary op

TEST(PositionsRotary, FastMatchesReferenceAndGradcheck) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor store = randn({2, 7, 3, 10}, 31, dt);
    Tensor c = randn({7, 5}, 32, dt), s = randn({7, 5}, 33, dt);  // need not be a rotation
    Tensor g = randn({2, 3, 7, 10}, 34, dt);
    Tensor outs[2], grads[2];
    for (int ref = 0; ref < 2; ++ref) {
      ops::ReferenceGuard mode(ref == 1);
      Tensor leaf = store.clone().set_requires_grad();
      Tensor out = ops::rotary(leaf.permute({0, 2, 1, 3}), c, s);
      out.backward(g);
      outs[ref] = out.detach();
      grads[ref] = leaf.grad();
    }
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    EXPECT_TRUE(all_close(outs[0], outs[1], tol, tol)) << dtype_name(dt);
    EXPECT_TRUE(all_close(grads[0], grads[1], tol, tol)) << dtype_name(dt);
  }
  for (bool ref : {false, true}) {
    ops::ReferenceGuard mode(ref);
    Tensor x = randn({2, 4, 3, 6}, 35, DType::f64).set_requires_grad();
    Tensor c = randn({4, 3}, 36, DType::f64), s = randn({4, 3}, 37, DType::f64);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return ops::rotary(in[0].permute({0, 2, 1, 3}), c, s);
        },
        {x}))
        << "reference path " << ref;
  }
}

TEST(PositionsXPos, Gradcheck) {
  for (bool down : {false, true}) {
    Tensor x = randn({2, 5, 2, 8}, 41, DType::f64).set_requires_grad();  // [B, L, H, D] storage
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return nn::xpos(in[0].permute({0, 2, 1, 3}), 3, down);
        },
        {x}))
        << "downscale " << down;
  }
}

TEST(PositionsXPos, ModuleBufferAndTables) {
  nn::XPos xp(8);
  auto sd = xp.state_dict();
  ASSERT_EQ(sd.size(), 1u);
  ASSERT_TRUE(sd.count("scale"));
  EXPECT_TRUE(xp.parameters().empty());
  // zeta for D = 8: (0, 2, 4, 6) + 3.2, over 11.2
  EXPECT_TRUE(all_close(
      sd.at("scale"),
      Tensor::from_vector<float>({4}, {3.2f / 11.2f, 5.2f / 11.2f, 7.2f / 11.2f, 9.2f / 11.2f}),
      1e-7, 0));
  Tensor x = randn({1, 2, 3, 8}, 51);
  EXPECT_TRUE(all_close(xp.forward(x, 2, true), nn::xpos(x, 2, true), 0, 0));
  nn::XPosTables t = nn::xpos_tables(3, 8, 2, true, 512, DType::f64);
  EXPECT_EQ(t.cos.shape(), Shape({3, 4}));
  EXPECT_EQ(t.sin.dtype(), DType::f64);
  EXPECT_EQ(nn::xpos_tables(0, 8, 5, false).cos.shape(), Shape({0, 4}));
}

// ================================================================== argument errors

TEST(PositionsErrors, Arguments) {
  Tensor x = randn({1, 2, 3, 4}, 61);
  Tensor c = randn({3, 2}, 62), s = randn({3, 2}, 63);
  EXPECT_NO_THROW(ops::rotary(x, c, s));
  EXPECT_THROW(ops::rotary(randn({1, 2, 3, 5}, 64), c, s), ShapeError);  // odd D
  EXPECT_THROW(ops::rotary(randn({4}, 64), c, s), ShapeError);           // no L dim
  EXPECT_THROW(ops::rotary(x, randn({2, 2}, 65), s), ShapeError);        // wrong L
  EXPECT_THROW(ops::rotary(x, c, randn({3, 3}, 65)), ShapeError);        // wrong D/2
  EXPECT_THROW(ops::rotary(x, c.to(DType::f64), s), DTypeError);
  EXPECT_THROW(ops::rotary(x.to(DType::i32), c, s), DTypeError);
  EXPECT_THROW(ops::rotary(Tensor(), c, s), ValueError);
  Tensor cg = c.clone().set_requires_grad();
  EXPECT_EQ(error_of([&] { ops::rotary(x, cg, s); }),
            "[rotary] cos table requires grad; the tables are constants (detach them)");
  {
    NoGradGuard ng;  // without grad mode nothing would be recorded: allowed
    EXPECT_NO_THROW(ops::rotary(x, cg, s));
  }
  EXPECT_THROW(nn::xpos(randn({1, 2, 3, 5}, 66), 0, false), ShapeError);
  EXPECT_THROW(nn::xpos(x, -1, false), ValueError);
  EXPECT_THROW(nn::xpos(x, 0, false, 0.0), ValueError);
  EXPECT_THROW(nn::xpos(x.to(DType::i64), 0, false), DTypeError);
  EXPECT_THROW(nn::xpos_tables(3, 8, 0, false, 512, DType::i32), DTypeError);
  EXPECT_THROW(nn::XPos(7), ValueError);
  EXPECT_THROW(nn::XPos(8).forward(x, 0, false), ShapeError);  // head dim 4 != 8

  EXPECT_THROW(nn::relative_position_bucket(1, 3, 20), ValueError);  // max_exact 0
  EXPECT_THROW(nn::relative_position_bucket(1, 32, 8), ValueError);  // max_distance <= 8
  EXPECT_THROW(nn::relative_position_buckets(-1, 3, 0, 32, 128), ValueError);
  EXPECT_THROW(nn::relative_position_buckets(1, 3, -2, 32, 128), ValueError);
  Generator gen(0);
  EXPECT_THROW(nn::RelativePositionBias(32, 128, 0, gen), ValueError);
  nn::RelativePositionBias rpb(32, 128, 2, gen);
  EXPECT_THROW(rpb.forward_step(0), ValueError);

  EXPECT_THROW(nn::sinusoidal_table(4, 3, 1), ValueError);  // half - 1 = 0
  EXPECT_THROW(nn::sinusoidal_embedding(Tensor::from_vector<int64_t>({1}, {-3}), 8, 1), ValueError);
  EXPECT_THROW(nn::sinusoidal_embedding(Tensor::zeros({2}), 8, 1), DTypeError);
  EXPECT_THROW(nn::make_positions(Tensor::zeros({4}, DType::i64), 1, 1), ShapeError);
  EXPECT_THROW(nn::SinusoidalPositionalEmbedding(16).forward_step(0), ValueError);
  EXPECT_THROW(nn::LearnedPositionalEmbedding(0, 4, gen), ValueError);
}
