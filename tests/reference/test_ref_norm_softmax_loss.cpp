// softmax, log_softmax, layer_norm, rms_norm, l2_normalize and cross_entropy against PyTorch
// (tests/reference/ref_norm_softmax_loss.py): values and input gradients in f32 and f64, on the
// fast path and on the reference path.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

class NormSoftmaxLossRef
    : public test::ReferenceTest<::testing::TestWithParam<std::tuple<bool, bool>>> {
 protected:
  NormSoftmaxLossRef() : ReferenceTest("norm_softmax_loss") {}
  void SetUp() override {
    ReferenceTest::SetUp();
    if (IsSkipped()) return;
    mode_ = std::make_unique<ops::ReferenceGuard>(reference());
  }
  void TearDown() override { mode_.reset(); }
  std::unique_ptr<ops::ReferenceGuard> mode_;

  bool reference() const { return std::get<0>(GetParam()); }
  bool f64() const { return std::get<1>(GetParam()); }

  // The case in this test's dtype, with the `grads` inputs as leaves and the rest as constants.
  // Scalars are stored as [1].
  void check(const std::string& case_name, const std::vector<std::string>& names,
             const std::vector<std::string>& grads, const test::OpFn& fn) {
    // f32: ~1e-5 relative (summation order); f64: agreement to rounding.
    test::OpCheck how = f64() ? test::OpCheck(1e-10, 1e-12) : test::OpCheck(1e-5, 1e-6);
    for (const auto& n : names)
      if (std::find(grads.begin(), grads.end(), n) == grads.end()) how.constants.push_back(n);
    how.reshape = true;
    ReferenceTest::check((f64() ? "f64." : "") + case_name, names, fn, how);
  }
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
