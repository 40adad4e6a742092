// softmax, log_softmax, layer_norm, rms_norm, l2_normalize and cross_entropy against PyTorch
// (tests/reference/ref_norm_softmax_loss.py): values and input gradients in f32 and f64, on the
// fast path and on the reference path.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/io/safetensors.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

class NormSoftmaxLossRef : public ::testing::TestWithParam<std::tuple<bool, bool>> {
 protected:
  static void SetUpTestSuite() {
    std::string dir = metalm::test::reference_dir();
    if (!dir.empty()) data_ = io::load_safetensors(dir + "/norm_softmax_loss.safetensors").tensors;
  }
  void SetUp() override {
    if (data_.empty()) GTEST_SKIP() << "METALM_REF_DIR not set (run through ctest)";
    mode_ = std::make_unique<ops::ReferenceGuard>(reference());
  }
  void TearDown() override { mode_.reset(); }
  std::unique_ptr<ops::ReferenceGuard> mode_;

  bool reference() const { return std::get<0>(GetParam()); }
  bool f64() const { return std::get<1>(GetParam()); }

  const Tensor& get(const std::string& key) {
    auto it = data_.find(key);
    if (it == data_.end()) throw std::runtime_error("missing reference tensor " + key);
    return it->second;
  }

  // Runs fn on the case's inputs (the `grads` ones as leaves, the rest as constants),
  // backpropagates gout, and compares out and the gradients. Scalars are stored as [1].
  void check(const std::string& case_name, const std::vector<std::string>& names,
             const std::vector<std::string>& grads, const Fn& fn) {
    const std::string name = (f64() ? "f64." : "") + case_name;
    SCOPED_TRACE(name);
    std::vector<Tensor> in;
    for (const auto& n : names) {
      Tensor t = get(name + ".in." + n).clone();
      if (std::find(grads.begin(), grads.end(), n) != grads.end()) t.set_requires_grad();
      in.push_back(t);
    }
    // f32: ~1e-5 relative (summation order); f64: agreement to rounding.
    const double rtol = f64() ? 1e-10 : 1e-5, atol = f64() ? 1e-12 : 1e-6;
    Tensor out = fn(in);
    const Tensor& want = get(name + ".out");
    EXPECT_TRUE(all_close(out.reshape(want.shape()), want, rtol, atol)) << "output";
    out.backward(get(name + ".gout").reshape(out.shape()));
    for (size_t i = 0; i < names.size(); ++i) {
      if (!in[i].requires_grad()) continue;
      EXPECT_TRUE(all_close(in[i].grad(), get(name + ".grad." + names[i]), rtol, atol))
          << "gradient of " << names[i];
    }
  }

  static inline TensorMap data_;
};

ops::CrossEntropyOptions ce_options(ops::Reduction red, double smoothing,
                                    int64_t ignore_index = -100) {
  ops::CrossEntropyOptions o;
  o.reduction = red;
  o.label_smoothing = smoothing;
  o.ignore_index = ignore_index;
  return o;
}

}  // namespace

TEST_P(NormSoftmaxLossRef, Softmax) {
  for (std::string shape : {"small", "wide"}) {
    check("softmax_" + shape, {"x"}, {"x"}, [](auto& in) { return ops::softmax(in[0]); });
    check("log_softmax_" + shape, {"x"}, {"x"}, [](auto& in) { return ops::log_softmax(in[0]); });
  }
}

TEST_P(NormSoftmaxLossRef, Norms) {
  for (std::string c : {"384", "37"}) {
    check("layer_norm_affine_" + c, {"x", "w", "b"}, {"x", "w", "b"},
          [](auto& in) { return ops::layer_norm(in[0], in[1], in[2], 1e-5); });
    check("layer_norm_plain_" + c, {"x"}, {"x"},
          [](auto& in) { return ops::layer_norm(in[0], Tensor(), Tensor(), 1e-5); });
    check("rms_norm_" + c, {"x", "w"}, {"x", "w"},
          [](auto& in) { return ops::rms_norm(in[0], in[1], 1e-6); });
    check("l2_normalize_" + c, {"x"}, {"x"},
          [](auto& in) { return ops::l2_normalize(in[0], 1e-12); });
  }
  check("l2_normalize_clamped", {"x"}, {"x"},
        [](auto& in) { return ops::l2_normalize(in[0], 0.5); });
}

TEST_P(NormSoftmaxLossRef, CrossEntropy) {
  using ops::Reduction;
  const std::vector<std::pair<std::string, ops::CrossEntropyOptions>> cases = {
      {"ce_mean", ce_options(Reduction::mean, 0)},
      {"ce_sum", ce_options(Reduction::sum, 0)},
      {"ce_none", ce_options(Reduction::none, 0)},
      {"ce_mean_smooth", ce_options(Reduction::mean, 0.1)},
      {"ce_sum_smooth", ce_options(Reduction::sum, 0.1)},
      {"ce_none_smooth", ce_options(Reduction::none, 0.1)},
      {"ce_mean_ignore5", ce_options(Reduction::mean, 0, 5)},
  };
  for (const auto& [name, opt] : cases)
    check(name, {"logits", "targets"}, {"logits"},
          [opt](auto& in) { return ops::cross_entropy(in[0], in[1], opt); });
  for (double smoothing : {0.0, 0.1}) {
    check(smoothing > 0 ? "ce_masked_smooth" : "ce_masked", {"logits", "targets", "mask"},
          {"logits"}, [smoothing](auto& in) {
            ops::CrossEntropyOptions opt = ce_options(Reduction::mean, smoothing);
            opt.loss_mask = in[2];
            return ops::cross_entropy(in[0], in[1], opt);
          });
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, NormSoftmaxLossRef,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<bool, bool>>& info) {
                           return std::string(std::get<0>(info.param) ? "Reference" : "Fast") +
                                  (std::get<1>(info.param) ? "F64" : "F32");
                         });
