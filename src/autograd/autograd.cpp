// The tape: nodes hang off their outputs; backward sorts them topologically from the root.
#include "metalm/autograd/autograd.h"

#include <cmath>
#include <unordered_map>
#include <unordered_set>

namespace metalm::autograd {
namespace {

thread_local bool g_grad_enabled = true;
thread_local bool g_check_numerics = false;

// out = a + b for float tensors of equal shape (fresh contiguous result).
Tensor add_fresh(const Tensor& a, const Tensor& b) {
  Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  const int64_t n = out.numel();
  if (a.dtype() == DType::f32) {
    const float *x = ac.data<float>(), *y = bc.data<float>();
    float* o = out.data<float>();
    for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
  } else {
    const double *x = ac.data<double>(), *y = bc.data<double>();
    double* o = out.data<double>();
    for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
  }
  return out;
}

void check_grad(const Node& node, size_t i, const Tensor& g) {
  const Tensor& in = node.inputs[i];
  MLM_CHECK(g.shape() == in.shape(), AutogradError, "[backward] ", node.name,
            " returned a gradient of shape ", shape_str(g.shape()), " for input ", i, " of shape ",
            shape_str(in.shape()));
  MLM_CHECK(g.dtype() == in.dtype(), AutogradError, "[backward] ", node.name,
            " returned a ", dtype_name(g.dtype()), " gradient for a ", dtype_name(in.dtype()),
            " input ", i);
}

bool has_non_finite(const Tensor& t) {
  if (!dtype_is_float(t.dtype())) return false;
  g_check_numerics = false;  // the conversion below runs ops that would check themselves
  std::vector<double> values = t.to_vector<double>();
  g_check_numerics = true;
  for (double v : values)
    if (!std::isfinite(v)) return true;
  return false;
}

}  // namespace

bool is_grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

void set_check_numerics(bool on) { g_check_numerics = on; }
bool check_numerics_enabled() { return g_check_numerics; }

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (g_check_numerics && has_non_finite(out))
    throw NumericError(detail::cat("[", name, "] produced NaN or Inf in its ", out.str(), " output"));
  if (!any_requires_grad(inputs)) return out;
  for (const Tensor& t : inputs)
    MLM_CHECK(!t.defined() || t.impl_ptr() != out.impl_ptr(), AutogradError, "[", name,
              "] internal: output aliases an input tensor object");
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = inputs;
  node->needs.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    node->needs[i] = inputs[i].defined() && inputs[i].requires_grad();
  node->backward = std::move(fn);
  node->out_shape = out.shape();
  node->out_dtype = out.dtype();
  out.impl().grad_fn = std::move(node);
  out.impl().requires_grad = true;
  return out;
}

void run_backward(const Tensor& root, const Tensor& grad_in) {
  MLM_CHECK(root.requires_grad(), AutogradError,
            "[backward] the tensor does not require grad (no parameter in its history needs one)");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    MLM_CHECK(root.numel() == 1, AutogradError, "[backward] root ", root.str(),
              " is not a scalar: pass its gradient explicitly");
    grad = Tensor::ones(root.shape(), root.dtype());
  }
  MLM_CHECK(grad.shape() == root.shape() && grad.dtype() == root.dtype(), AutogradError,
            "[backward] gradient ", grad.str(), " does not match root ", root.str());
  NoGradGuard no_grad;

  auto accumulate_leaf = [](const Tensor& leaf, const Tensor& g) {
    TensorImpl& li = leaf.impl();
    if (!li.grad) {
      li.grad = g.clone().impl_ptr();
    } else {
      li.grad = add_fresh(Tensor(li.grad), g).impl_ptr();
    }
  };
  if (root.is_leaf()) {
    accumulate_leaf(root, grad);
    return;
  }

  // Post-order DFS over nodes reachable through inputs that need grad.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack;
  stack.emplace_back(root.impl().grad_fn, 0);
  seen.insert(root.impl().grad_fn.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      size_t i = next++;
      if (!node->needs[i]) continue;
      const auto& child = node->inputs[i].impl().grad_fn;
      if (child && seen.insert(child.get()).second) stack.emplace_back(child, 0);
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[order.back().get()] = grad;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = it->get();
    auto found = pending.find(node);
    if (found == pending.end()) continue;
    Tensor g = std::move(found->second);
    pending.erase(found);
    MLM_CHECK(node->backward != nullptr, AutogradError, "[backward] the graph through ",
              node->name, " was already freed by an earlier backward()");
    std::vector<Tensor> grads = node->backward(g, node->needs);
    MLM_CHECK(grads.size() == node->inputs.size(), AutogradError, "[backward] ", node->name,
              " returned ", grads.size(), " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!node->needs[i] || !grads[i].defined()) continue;
      check_grad(*node, i, grads[i]);
      const Tensor& in = node->inputs[i];
      if (in.impl().grad_fn) {
        Node* child = in.impl().grad_fn.get();
        auto slot = pending.find(child);
        if (slot == pending.end())
          pending.emplace(child, grads[i]);
        else
          slot->second = add_fresh(slot->second, grads[i]);
      } else {
        accumulate_leaf(in, grads[i]);
      }
    }
    node->backward = nullptr;  // free saved tensors and edges
    node->inputs.clear();
  }
  for (auto& node : order) {  // nodes no gradient reached are freed too
    node->backward = nullptr;
    node->inputs.clear();
  }
}

}  // namespace metalm::autograd
