// The PyTorch reference files that tests/reference/generate.py writes (one safetensors file per
// suite under METALM_REF_DIR), the fixture base that loads one and skips without it, and the one
// op check: a case's inputs through a function, its output and gradients against PyTorch's.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "metalm/core/tensor.h"
#include "metalm/io/safetensors.h"
#include "metalm/nn/module.h"

namespace metalm::test {

// One reference file, read-only. Keys name their case: "<case>.in.<name>", "<case>.out", ...
class ReferenceFile {
 public:
  ReferenceFile() = default;
  explicit ReferenceFile(io::SafetensorsFile file) : file_(std::move(file)) {}

  // <METALM_REF_DIR>/<name>.safetensors, read on the first call and kept for the process; an
  // empty file when METALM_REF_DIR is not set. A set directory without the file throws.
  static const ReferenceFile& load(const std::string& name);

  // True when there is nothing to compare with (METALM_REF_DIR not set).
  bool empty() const { return file_.tensors.empty() && file_.metadata.empty(); }
  // Throws "missing reference tensor <key>".
  const Tensor& get(const std::string& key) const;
  // Null when the file has no such tensor (optional inputs of a case).
  const Tensor* find(const std::string& key) const;
  // The string metadata; throws "missing reference metadata <key>".
  const std::string& meta(const std::string& key) const;
  int64_t meta_int(const std::string& key) const { return std::stoll(meta(key)); }
  // Every tensor whose key starts with `prefix`, keyed by the rest ("<case>.param." gives a
  // module's state dict).
  TensorMap with_prefix(const std::string& prefix) const;

  const TensorMap& tensors() const { return file_.tensors; }
  const io::Metadata& metadata() const { return file_.metadata; }

 private:
  io::SafetensorsFile file_;
};

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// How check_op() reads a case and how close it must come: OpCheck(rtol, atol), then the fields of
// the variant a suite needs. The default tolerances suit f32 ops on O(1) values.
struct OpCheck {
  OpCheck() = default;
  OpCheck(double rtol_, double atol_) : rtol(rtol_), atol(atol_) {}
  // For the output and, unless grad_atol is set, the gradients.
  double rtol = 1e-5, atol = 1e-6;
  std::optional<double> grad_atol;     // the gradients' atol when it differs from the output's
  std::vector<std::string> constants;  // inputs passed as they are (no gradient, not compared)
  std::optional<DType> dtype;  // the leaves and gout converted to it; the output must have it
  // Compare the output in the reference's shape and take gout in the output's (PyTorch's
  // scalars are stored as [1]).
  bool reshape = false;
  // Also compares the gradient of every parameter of `module` (which fn must use) with
  // "<case>.grad.param.<name>"; every parameter must have one.
  const nn::Module* module = nullptr;
  // The input gradients are "<case>.<input_grad_prefix><name>".
  std::string input_grad_prefix = "grad.";
};

// Runs fn on the inputs "<key>.in.<name>" (fresh leaves, except the constants), compares its
// output with "<key>.out", backpropagates "<key>.gout" and compares every leaf's gradient with
// "<key>.grad.<name>" (and the module's, see OpCheck). Failures are gtest failures naming key.
void check_op(const ReferenceFile& ref, const std::string& key,
              const std::vector<std::string>& inputs, const OpFn& fn, const OpCheck& how = {});

// Base of a reference suite's fixture: SetUp finds the suite's file (loaded once per process)
// or skips the test when METALM_REF_DIR is not set. Base is ::testing::Test or
// ::testing::TestWithParam<...>. A subclass with its own SetUp calls this one first and returns
// if IsSkipped().
template <typename Base = ::testing::Test>
class ReferenceTest : public Base {
 protected:
  // file_name: without the directory and ".safetensors".
  explicit ReferenceTest(std::string file_name) : file_name_(std::move(file_name)) {}

  void SetUp() override {
    ref_ = &ReferenceFile::load(file_name_);
    if (ref_->empty()) GTEST_SKIP() << "METALM_REF_DIR not set (run through ctest)";
  }

  const ReferenceFile& ref() const { return *ref_; }
  const Tensor& get(const std::string& key) const { return ref_->get(key); }
  const Tensor* find(const std::string& key) const { return ref_->find(key); }
  const std::string& meta(const std::string& key) const { return ref_->meta(key); }
  int64_t meta_int(const std::string& key) const { return ref_->meta_int(key); }
  TensorMap with_prefix(const std::string& prefix) const { return ref_->with_prefix(prefix); }
  void check(const std::string& key, const std::vector<std::string>& inputs, const OpFn& fn,
             const OpCheck& how = {}) const {
    check_op(*ref_, key, inputs, fn, how);
  }

 private:
  std::string file_name_;
  const ReferenceFile* ref_ = nullptr;
};

}  // namespace metalm::test
