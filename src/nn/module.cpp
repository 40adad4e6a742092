// Module tree bookkeeping: registration, traversal, state dicts with strict checks, freezing.
#include "metalm/nn/module.h"

#include <set>
#include <sstream>

#include "metalm/autograd/autograd.h"

namespace metalm::nn {

bool glob_match(const std::string& p, const std::string& s) {
  // Iterative matcher with backtracking to the last '*'.
  size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

void Module::check_name(const std::string& name) const {
  MLM_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError,
            "[module] bad name '", name, "' (non-empty, no '.')");
  auto taken = [&](const auto& list) {
    for (const auto& [n, x] : list)
      if (n == name) return true;
    return false;
  };
  MLM_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_) && !taken(generators_),
            ValueError,
            "[module] name '", name, "' registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_name(name);
  MLM_CHECK(value.defined() && value.is_leaf() && value.is_contiguous(), ValueError,
            "[module] parameter '", name, "' must be a defined contiguous leaf tensor");
  if (!value.requires_grad()) value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_name(name);
  MLM_CHECK(value.defined() && value.is_contiguous(), ValueError, "[module] buffer '", name,
            "' must be a defined contiguous tensor");
  buffers_.emplace_back(name, value);
  return value;
}

Generator& Module::register_generator(const std::string& name, uint64_t seed) {
  check_name(name);
  generators_.emplace_back(name, std::make_unique<Generator>(seed));
  return *generators_.back().second;
}

std::map<std::string, Generator*> Module::named_generators() {
  std::map<std::string, Generator*> out;
  for_each_module([&](const std::string& prefix, Module& m) {
    for (auto& [n, g] : m.generators_) out.emplace(prefix.empty() ? n : prefix + "." + n, g.get());
  });
  return out;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name);
  MLM_CHECK(module != nullptr, ValueError, "[module] submodule '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, Named* params, Named* buffers) const {
  if (params)
    for (const auto& [n, t] : params_) params->emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) buffers->emplace_back(prefix + n, t);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, buffers);
}

TensorMap Module::named_parameters() const {
  Named all;
  collect("", &all, nullptr);
  return TensorMap(all.begin(), all.end());
}

std::vector<Tensor> Module::parameters() const {
  Named all;
  collect("", &all, nullptr);
  std::vector<Tensor> out;
  for (auto& [n, t] : all) out.push_back(t);
  return out;
}

TensorMap Module::named_buffers() const {
  Named all;
  collect("", nullptr, &all);
  return TensorMap(all.begin(), all.end());
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (const Tensor& t : parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

TensorMap Module::state_dict() const {
  Named all;
  collect("", &all, &all);
  return TensorMap(all.begin(), all.end());
}

int64_t Module::state_bytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : state_dict()) n += static_cast<int64_t>(t.nbytes());
  return n;
}

std::string state_mismatch(const TensorMap& model, const std::map<std::string, Shape>& given,
                           bool strict) {
  std::vector<std::string> missing, mismatched, unexpected;
  for (const auto& [name, t] : model) {
    auto it = given.find(name);
    if (it == given.end())
      missing.push_back(name);
    else if (it->second != t.shape())
      mismatched.push_back(name + " (checkpoint " + shape_str(it->second) + ", model " +
                           shape_str(t.shape()) + ")");
  }
  for (const auto& [name, shape] : given)
    if (!model.count(name)) unexpected.push_back(name);
  auto list = [](const std::vector<std::string>& v) {
    std::ostringstream os;
    for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    return os.str();
  };
  std::string err;
  auto add = [&](const char* what, const std::vector<std::string>& names) {
    if (!names.empty()) err += (err.empty() ? " " : "; ") + std::string(what) + list(names);
  };
  add("mis-shaped: ", mismatched);
  if (strict) add("missing: ", missing);
  if (strict) add("unexpected: ", unexpected);
  return err;
}

void Module::load_state_dict(const TensorMap& state, bool strict) {
  const TensorMap mine = state_dict();
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : state) shapes.emplace(name, t.shape());
  const std::string err = state_mismatch(mine, shapes, strict);
  MLM_CHECK(err.empty(), ValueError, "[load_state_dict]", err);
  NoGradGuard ng;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it != state.end()) copy_into(t.detach(), it->second.detach());
  }
}

int64_t Module::freeze(const std::string& pattern, bool frozen) {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (glob_match(pattern, name)) {
      Tensor p = t;
      p.set_requires_grad(!frozen);
      ++n;
    }
  return n;
}

void Module::to(DType dtype) {
  MLM_CHECK(dtype == DType::f32 || dtype == DType::f64, DTypeError,
            "[module] to(): f32 or f64 only, got ", dtype_name(dtype));
  Named all;
  collect("", &all, &all);
  for (const auto& [name, t] : all) {
    if (!(t.dtype() == DType::f32 || t.dtype() == DType::f64) || t.dtype() == dtype) continue;
    convert_in_place(t, dtype);
  }
}

void convert_in_place(const Tensor& t, DType dtype) {
  Tensor converted = t.detach().to(dtype).contiguous();
  TensorImpl& im = t.impl();
  im.storage = converted.impl().storage;
  im.offset = converted.impl().offset;
  im.strides = converted.impl().strides;
  im.dtype = dtype;
  im.grad.reset();
}

void Module::train(bool on) {
  for_each_module([on](const std::string&, Module& m) {
    m.training_ = on;
    m.on_train(on);
  });
}

void Module::for_each_module(const std::function<void(const std::string&, Module&)>& fn,
                             const std::string& prefix) {
  fn(prefix, *this);
  for (auto& [n, m] : children_) m->for_each_module(fn, prefix.empty() ? n : prefix + "." + n);
}

}  // namespace metalm::nn
