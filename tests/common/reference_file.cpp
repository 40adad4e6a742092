#include "common/reference_file.h"

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>

#include "common/test_util.h"

namespace metalm::test {

const ReferenceFile& ReferenceFile::load(const std::string& name) {
  static const ReferenceFile none;
  const std::string dir = reference_dir();
  if (dir.empty()) return none;
  // Keyed by path, so that a test changing METALM_REF_DIR would read the other directory.
  static std::map<std::string, std::unique_ptr<const ReferenceFile>> cache;
  const std::string path = dir + "/" + name + ".safetensors";
  auto it = cache.find(path);
  if (it == cache.end())
    it = cache.emplace(path, std::make_unique<const ReferenceFile>(io::load_safetensors(path)))
             .first;
  return *it->second;
}

const Tensor* ReferenceFile::find(const std::string& key) const {
  auto it = file_.tensors.find(key);
  return it == file_.tensors.end() ? nullptr : &it->second;
}

const Tensor& ReferenceFile::get(const std::string& key) const {
  const Tensor* t = find(key);
  if (!t) throw std::runtime_error("missing reference tensor " + key);
  return *t;
}

const std::string& ReferenceFile::meta(const std::string& key) const {
  auto it = file_.metadata.find(key);
  if (it == file_.metadata.end()) throw std::runtime_error("missing reference metadata " + key);
  return it->second;
}

TensorMap ReferenceFile::with_prefix(const std::string& prefix) const {
  TensorMap out;
  for (const auto& [k, t] : file_.tensors)
    if (k.rfind(prefix, 0) == 0) out.emplace(k.substr(prefix.size()), t);
  return out;
}

void check_op(const ReferenceFile& ref, const std::string& key,
              const std::vector<std::string>& inputs, const OpFn& fn, const OpCheck& how) {
  SCOPED_TRACE(key);
  auto is_constant = [&](const std::string& n) {
    return std::find(how.constants.begin(), how.constants.end(), n) != how.constants.end();
  };
  std::vector<Tensor> in;
  for (const std::string& n : inputs) {
    Tensor t = ref.get(key + ".in." + n);
    if (is_constant(n)) {
      in.push_back(t.clone());
      continue;
    }
    if (how.dtype) t = t.to(*how.dtype);
    in.push_back(t.clone().set_requires_grad());
  }
  Tensor out = fn(in);
  const Tensor& want = ref.get(key + ".out");
  if (how.dtype) {
    EXPECT_EQ(out.dtype(), *how.dtype) << key << " output dtype";
  }
  EXPECT_TRUE(all_close(how.reshape ? out.reshape(want.shape()) : out, want, how.rtol, how.atol))
      << key << " output";

  Tensor gout = ref.get(key + ".gout");
  if (how.dtype) gout = gout.to(*how.dtype);
  out.backward(how.reshape ? gout.reshape(out.shape()) : gout);
  const double grad_atol = how.grad_atol.value_or(how.atol);
  if (how.module) {
    for (const auto& [name, p] : how.module->named_parameters()) {
      if (!p.grad().defined()) {
        ADD_FAILURE() << key << ": no gradient for parameter " << name;
        continue;
      }
      EXPECT_TRUE(all_close(p.grad(), ref.get(key + ".grad.param." + name), how.rtol, grad_atol))
          << key << " grad of parameter " << name;
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (is_constant(inputs[i])) continue;
    EXPECT_TRUE(all_close(in[i].grad(), ref.get(key + "." + how.input_grad_prefix + inputs[i]),
                          how.rtol, grad_atol))
        << key << " grad of " << inputs[i];
  }
}

}  // namespace metalm::test
