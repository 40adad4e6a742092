// attention against PyTorch (tests/reference/ref_attention.py: matmul, masked_fill -inf, + bias,
// softmax, matmul, autograd): output and the gradients of q, k, v and bias for every case of the
// file, in f32 and f64, on the fast path and on the reference path.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/io/safetensors.h"
#include "metalm/ops/attention.h"

using namespace metalm;
using metalm::test::all_close;

namespace {

ops::AttnMaskKind parse_kind(const std::string& s) {
  if (s == "full") return ops::AttnMaskKind::full;
  if (s == "causal") return ops::AttnMaskKind::causal;
  if (s == "prefix") return ops::AttnMaskKind::prefix;
  if (s == "segment_causal") return ops::AttnMaskKind::segment_causal;
  if (s == "segment_full") return ops::AttnMaskKind::segment_full;
  throw std::runtime_error("unknown mask kind in the reference file: " + s);
}

class AttentionRef : public ::testing::TestWithParam<std::tuple<bool, bool>> {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = metalm::test::reference_dir();
    if (!dir.empty()) file_ = io::load_safetensors(dir + "/attention.safetensors");
  }
  void SetUp() override {
    if (file_.tensors.empty()) GTEST_SKIP() << "METALM_REF_DIR not set (run through ctest)";
  }

  bool reference_path() const { return std::get<0>(GetParam()); }
  bool f64() const { return std::get<1>(GetParam()); }

  static const Tensor* find(const std::string& key) {
    auto it = file_.tensors.find(key);
    return it == file_.tensors.end() ? nullptr : &it->second;
  }
  static const Tensor& get(const std::string& key) {
    const Tensor* t = find(key);
    if (!t) throw std::runtime_error("missing reference tensor " + key);
    return *t;
  }
  static const std::string& meta(const std::string& key) {
    auto it = file_.metadata.find(key);
    if (it == file_.metadata.end()) throw std::runtime_error("missing reference metadata " + key);
    return it->second;
  }

  void check_case(const std::string& case_name) {
    const std::string key = (f64() ? "f64." : "") + case_name;
    SCOPED_TRACE(key + (reference_path() ? " (reference path)" : " (fast path)"));
    ops::AttentionMask mask;
    mask.kind = parse_kind(meta(case_name + ".kind"));
    mask.q_offset = std::stoll(meta(case_name + ".q_offset"));
    mask.prefix_len = std::stoll(meta(case_name + ".prefix_len"));
    const double scale = std::stod(meta(case_name + ".scale"));
    if (const Tensor* kp = find(key + ".mask.key_padding")) mask.key_padding = *kp;
    if (const Tensor* seg = find(key + ".mask.segment_ids")) mask.segment_ids = *seg;
    Tensor q = get(key + ".in.q").clone().set_requires_grad();
    Tensor k = get(key + ".in.k").clone().set_requires_grad();
    Tensor v = get(key + ".in.v").clone().set_requires_grad();
    const bool has_bias = find(key + ".in.bias") != nullptr;
    if (has_bias) mask.bias = get(key + ".in.bias").clone().set_requires_grad();

    Tensor out = reference_path() ? ops::attention_reference(q, k, v, mask, scale)
                                  : ops::attention(q, k, v, mask, scale);
    // f32: both sides round in f32 (sums over D and Tk in different orders), ~1e-6 absolute on
    // O(1) values; f64: agreement to rounding.
    const double rtol = f64() ? 1e-10 : 1e-5, atol = f64() ? 1e-11 : 1e-5;
    EXPECT_TRUE(all_close(out, get(key + ".out"), rtol, atol)) << "out";
    out.backward(get(key + ".gout"));
    EXPECT_TRUE(all_close(q.grad(), get(key + ".grad.q"), rtol, 3 * atol)) << "grad q";
    EXPECT_TRUE(all_close(k.grad(), get(key + ".grad.k"), rtol, 3 * atol)) << "grad k";
    EXPECT_TRUE(all_close(v.grad(), get(key + ".grad.v"), rtol, 3 * atol)) << "grad v";
    if (has_bias) {
      EXPECT_TRUE(all_close(mask.bias.grad(), get(key + ".grad.bias"), rtol, 3 * atol))
          << "grad bias";
    }
  }

  static io::SafetensorsFile file_;
};

io::SafetensorsFile AttentionRef::file_;

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
