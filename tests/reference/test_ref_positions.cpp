// Position encodings against PyTorch (tests/reference/ref_positions.py, written from
// reference-spec 5.1-5.4): xPos outputs and input gradients (f32 and f64, fast and reference
// path), the XPOS "scale" buffer, T5 buckets for every distance of several configurations, the
// relative bias and its table gradient, fairseq sinusoidal tables and positions, and the learned
// table with offset 2.
//
// Tolerances (measured max abs error in brackets; values are O(1), |x| < 5):
// - f64 vs PyTorch f64: 1e-12 relative (the same double formulas) for xPos and the tables.
// - xPos f32 vs PyTorch f64 on the same input values: rtol 2e-6, atol 1e-6 [3.6e-7]: our tables
//   are double rounded once, so only the f32 table entries and products round.
// - xPos f32 vs PyTorch f32: rtol 1e-5, atol 1e-6 + 2e-7 N (N = last position + 1) [6e-7 at
//   N = 17, 2.2e-6 at N = 41, 3.7e-5 at N = 600]. PyTorch's f32 angle n theta_i carries about
//   n * 6e-8 of rounding (theta_i and the product in f32), the error grows with the position and
//   is PyTorch's, not ours (see the f64 comparison).
// - Sinusoidal f32: equal to PyTorch's f64 table rounded once (1 ulp allowed); vs PyTorch's f32
//   table atol 1e-6 for positions < 10 [4.5e-7], 1.3e-7 * rows overall [1.5e-4 at 2100 rows].
// - Buckets (every distance within 3 max_distance + 40 of 7 configurations), make_positions, the
//   bias values and the learned lookups: exact.
// - Bias table gradient (sums of up to qlen klen / num_buckets values, ours accumulated in
//   double): vs PyTorch f64 rtol/atol 1e-6 [f32 rounding]; vs PyTorch f32 atol 5e-4 [9e-5 at
//   150 x 150, PyTorch's own f32 summation error]. Learned table gradient: 1e-6.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "common/test_util.h"
#include "metalm/nn/positions.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

class PositionsRef : public test::ReferenceTest<> {
 protected:
  PositionsRef() : ReferenceTest("positions") {}
};

}  // namespace

// ================================================================== xPos

TEST_F(PositionsRef, XPos) {
  for (const std::string& name : split_list(meta("xpos.cases"))) {
    const int64_t offset = meta_int("xpos." + name + ".offset");
    const bool down = meta_int("xpos." + name + ".downscale") != 0;
    const double base = std::stod(meta("xpos." + name + ".scale_base"));
    for (bool ref_path : {false, true}) {
      ops::ReferenceGuard mode(ref_path);
      for (bool f64 : {false, true}) {
        const std::string key = (f64 ? "f64.xpos." : "xpos.") + name;
        SCOPED_TRACE(key + (ref_path ? " (reference path)" : " (fast path)"));
        Tensor x = get(key + ".in.x").clone().set_requires_grad();
        Tensor out = nn::xpos(x, offset, down, base);
        out.backward(get(key + ".gout"));
        const int64_t n_max = x.size(2) + offset;  // positions 0 .. n_max-1
        if (f64) {
          EXPECT_TRUE(all_close(out, get(key + ".out"), 1e-12, 1e-13)) << "out";
          EXPECT_TRUE(all_close(x.grad(), get(key + ".grad.x"), 1e-12, 1e-13)) << "grad x";
          continue;
        }
        // Against PyTorch's f64 run on the same values: f32 rounding only.
        const std::string k64 = "f64.xpos." + name;
        EXPECT_TRUE(all_close(out, get(k64 + ".out").to(DType::f32), 2e-6, 1e-6)) << "out vs f64";
        EXPECT_TRUE(all_close(x.grad(), get(k64 + ".grad.x").to(DType::f32), 2e-6, 1e-6))
            << "grad vs f64";
        // Against PyTorch's f32 tables: their angle n theta_i is rounded in f32 (about
        // n * 6e-8 absolute at row n, times |x| and the scale), so atol grows with N.
        const double atol = 1e-6 + 2e-7 * static_cast<double>(n_max);
        EXPECT_TRUE(all_close(out, get(key + ".out"), 1e-5, atol)) << "out vs f32";
        EXPECT_TRUE(all_close(x.grad(), get(key + ".grad.x"), 1e-5, atol)) << "grad vs f32";
      }
    }
  }
}

TEST_F(PositionsRef, XPosScaleBufferBitExact) {
  for (int64_t D : {8, 64, 128}) {
    nn::XPos xp(D);
    EXPECT_TRUE(all_close(xp.scale, get("xpos.buffer_scale." + std::to_string(D)), 0, 0))
        << "D = " << D;
  }
}

// ================================================================== T5 buckets and bias

TEST_F(PositionsRef, BucketsExact) {
  for (const std::string& cfg : split_list(meta("bucket.configs"))) {
    const size_t cut = cfg.find('_');
    const int64_t nb = std::stoll(cfg.substr(0, cut)), md = std::stoll(cfg.substr(cut + 1));
    auto ns = get("bucket." + cfg + ".n").to_vector<int64_t>();
    auto expect = get("bucket." + cfg + ".out").to_vector<int64_t>();
    int64_t bad = 0;
    for (size_t i = 0; i < ns.size(); ++i) {
      const int64_t got = nn::relative_position_bucket(ns[i], nb, md);
      if (got != expect[i] && ++bad <= 5)
        ADD_FAILURE() << "config " << cfg << ", n = " << ns[i] << ": bucket " << got << ", PyTorch "
                      << expect[i];
    }
    EXPECT_EQ(bad, 0) << "config " << cfg << " (" << ns.size() << " distances)";
  }
}

TEST_F(PositionsRef, RelativePositionBias) {
  Generator gen(0);
  nn::RelativePositionBias rpb(meta_int("bias.num_buckets"), meta_int("bias.max_distance"),
                               meta_int("bias.heads"), gen);
  TensorMap sd = {{"relative_attention_bias.weight", get("bias.weight")}};
  rpb.load_state_dict(sd);
  for (const std::string& name : split_list(meta("bias.cases"))) {
    SCOPED_TRACE(name);
    const std::string key = "bias." + name;
    const int64_t qlen = meta_int(key + ".qlen"), klen = meta_int(key + ".klen");
    const int64_t step = meta_int(key + ".step");
    Tensor buckets =
        nn::relative_position_buckets(qlen, klen, step, rpb.num_buckets, rpb.max_distance);
    EXPECT_EQ(buckets.to_vector<int64_t>(), get(key + ".buckets").to_vector<int64_t>());
    rpb.relative_attention_bias->weight.zero_grad();
    Tensor bias = rpb.forward(qlen, klen, step);
    EXPECT_TRUE(all_close(bias, get(key + ".out"), 0, 0)) << "bias";
    bias.backward(get(key + ".gout"));
    // Each entry sums up to qlen klen / num_buckets upstream values; ours in double, rounded
    // once (vs PyTorch f64: f32 rounding); PyTorch's f32 sums carry up to ~1e-4 of rounding here.
    const Tensor& grad = rpb.relative_attention_bias->weight.grad();
    EXPECT_TRUE(all_close(grad, get("f64." + key + ".grad.weight").to(DType::f32), 1e-6, 1e-6))
        << "table gradient vs f64";
    EXPECT_TRUE(all_close(grad, get(key + ".grad.weight"), 1e-5, 5e-4)) << "table gradient";
  }
  // The incremental row equals PyTorch's last query row of the full square bias.
  EXPECT_TRUE(all_close(rpb.forward_step(150), get("bias.step_from_full"), 0, 0));
}

// ================================================================== sinusoidal

TEST_F(PositionsRef, SinusoidalTables) {
  for (int64_t dim : {64, 33}) {
    const std::string name = "sin.table" + std::to_string(dim);
    const Tensor& t32 = get(name);
    const Tensor& t64 = get("f64." + name);
    const int64_t n = t32.size(0);
    SCOPED_TRACE(name);
    EXPECT_TRUE(all_close(nn::sinusoidal_table(n, dim, 1, DType::f64), t64, 1e-13, 1e-13));
    Tensor ours = nn::sinusoidal_table(n, dim, 1);
    EXPECT_TRUE(all_close(ours, t64.to(DType::f32), 1.2e-7, 1e-12)) << "f32 = f64 rounded once";
    // PyTorch's f32 table: angle p * w rounded in f32 (and its expf for w): error ~ p * 6e-8,
    // i.e. up to about 2 * 6e-8 * 2100 = 2.5e-4 at the last row; 1e-6 for the first 10 rows.
    EXPECT_TRUE(all_close(ours.slice(0, 0, 10), t32.slice(0, 0, 10), 0, 1e-6)) << "rows < 10";
    EXPECT_TRUE(all_close(ours, t32, 0, 1.3e-7 * static_cast<double>(n))) << "all rows";
  }
}

TEST_F(PositionsRef, SinusoidalPositionsAndModule) {
  const Tensor& tokens = get("sin.tokens");
  EXPECT_EQ(nn::make_positions(tokens, 1, 1).to_vector<int64_t>(),
            get("sin.positions").to_vector<int64_t>());
  nn::SinusoidalPositionalEmbedding emb(16, 1);
  // Small positions (< 10): the f32 tables agree to a few ulps.
  EXPECT_TRUE(all_close(emb.forward(tokens), get("sin.embed16"), 0, 5e-7));
  EXPECT_TRUE(all_close(emb.forward_step(meta_int("sin.step_length")), get("sin.step16"), 0, 5e-7));
}

// ================================================================== learned

TEST_F(PositionsRef, Learned) {
  Generator gen(0);
  const Tensor& w = get("learned.weight");
  nn::LearnedPositionalEmbedding pe(w.size(0), w.size(1), gen);
  pe.load_state_dict({{"weight", w}});
  const Tensor& expect_default = get("learned.default");
  EXPECT_TRUE(all_close(pe.forward(expect_default.size(0)), expect_default, 0, 0));
  Tensor out = pe.forward(get("learned.positions"));
  EXPECT_TRUE(all_close(out, get("learned.explicit"), 0, 0));
  out.backward(get("learned.gout"));
  EXPECT_TRUE(all_close(pe.weight.grad(), get("learned.grad.weight"), 1e-6, 1e-6));
}
