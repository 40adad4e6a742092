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
  MLM_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), ValueError,
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

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name);
  MLM_CHECK(module != nullptr, ValueError, "[module] submodule '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, NamedTensors* params, NamedTensors* buffers) const {
  if (params)
    for (const auto& [n, t] : params_) params->emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) buffers->emplace_back(prefix + n, t);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, buffers);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", &out, nullptr);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", nullptr, &out);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

StateDict Module::state_dict() const {
  StateDict out;
  NamedTensors all;
  collect("", &all, &all);
  for (auto& [n, t] : all) out.emplace(n, t);
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NamedTensors all;
  collect("", &all, &all);
  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> known;
  for (const auto& [name, t] : all) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    if (it->second.shape() != t.shape()) {
      mismatched.push_back(name + " (checkpoint " + shape_str(it->second.shape()) + ", model " +
                           shape_str(t.shape()) + ")");
    }
  }
  for (const auto& [name, t] : state)
    if (!known.count(name)) unexpected.push_back(name);
  auto list = [](const std::vector<std::string>& v) {
    std::ostringstream os;
    for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    return os.str();
  };
  std::ostringstream err;
  if (!mismatched.empty()) err << " mis-shaped: " << list(mismatched) << ";";
  if (strict && !missing.empty()) err << " missing: " << list(missing) << ";";
  if (strict && !unexpected.empty()) err << " unexpected: " << list(unexpected) << ";";
  MLM_CHECK(err.str().empty(), ValueError, "[load_state_dict]", err.str());
  NoGradGuard ng;
  for (const auto& [name, t] : all) {
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
  NamedTensors all;
  collect("", &all, &all);
  for (const auto& [name, t] : all) {
    if (!(t.dtype() == DType::f32 || t.dtype() == DType::f64) || t.dtype() == dtype) continue;
    Tensor converted = t.detach().to(dtype).contiguous();
    TensorImpl& im = t.impl();
    im.storage = converted.impl().storage;
    im.offset = converted.impl().offset;
    im.strides = converted.impl().strides;
    im.dtype = dtype;
    im.grad.reset();
  }
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
