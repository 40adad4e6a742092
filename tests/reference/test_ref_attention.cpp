// attention against PyTorch (tests/reference/ref_attention.py: matmul, masked_fill -inf, + bias,
// softmax, matmul, autograd): output and the gradients of q, k, v and bias for every case of the
// file, in f32 and f64, on the fast path and on the reference path.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "metalm/ops/attention.h"

using namespace metalm;

namespace {

ops::AttnMaskKind parse_kind(const std::string& s) {
  if (s == "full") return ops::AttnMaskKind::full;
  if (s == "causal") return ops::AttnMaskKind::causal;
  if (s == "prefix") return ops::AttnMaskKind::prefix;
  if (s == "segment_causal") return ops::AttnMaskKind::segment_causal;
  if (s == "segment_full") return ops::AttnMaskKind::segment_full;
  throw std::runtime_error("unknown mask kind in the reference file: " + s);
}

class AttentionRef : public test::ReferenceTest<::testing::TestWithParam<std::tuple<bool, bool>>> {
 protected:
  AttentionRef() : ReferenceTest("attention") {}

  bool reference_path() const { return std::get<0>(GetParam()); }
  bool f64() const { return std::get<1>(GetParam()); }

  void check_case(const std::string& case_name) {
    const std::string key = (f64() ? "f64." : "") + case_name;
    SCOPED_TRACE(key + (reference_path() ? " (reference path)" : " (fast path)"));
    ops::AttentionMask mask;
    mask.kind = parse_kind(meta(case_name + ".kind"));
    mask.q_offset = meta_int(case_name + ".q_offset");
    mask.prefix_len = meta_int(case_name + ".prefix_len");
    const double scale = std::stod(meta(case_name + ".scale"));
    if (const Tensor* kp = find(key + ".mask.key_padding")) mask.key_padding = *kp;
    if (const Tensor* seg = find(key + ".mask.segment_ids")) mask.segment_ids = *seg;
    std::vector<std::string> inputs = {"q", "k", "v"};
    if (find(key + ".in.bias") != nullptr) inputs.push_back("bias");  // a leaf like q, k, v

    // f32: both sides round in f32 (sums over D and Tk in different orders), ~1e-6 absolute on
    // O(1) values; f64: agreement to rounding.
    const double rtol = f64() ? 1e-10 : 1e-5, atol = f64() ? 1e-11 : 1e-5;
    test::OpCheck how(rtol, atol);
    how.grad_atol = 3 * atol;
    auto run = [&](const std::vector<Tensor>& in) {
      ops::AttentionMask m = mask;
      if (in.size() > 3) m.bias = in[3];
      return reference_path() ? ops::attention_reference(in[0], in[1], in[2], m, scale)
                              : ops::attention(in[0], in[1], in[2], m, scale);
    };
    check(key, inputs, run, how);
  }
};

TEST_P(AttentionRef, AllCasesMatchPyTorch) {
  std::stringstream cases(meta("cases"));
  std::string name;
  int n = 0;
  while (std::getline(cases, name, ',')) {
    check_case(name);
    ++n;
  }
  EXPECT_GE(n, 8);
}

INSTANTIATE_TEST_SUITE_P(PathsAndDtypes, AttentionRef,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "reference" : "fast") +
                                  (std::get<1>(info.param) ? "_f64" : "_f32");
                         });

}  // namespace
