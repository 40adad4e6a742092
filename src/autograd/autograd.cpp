// The tape: nodes hang off their outputs; backward sorts them topologically from the root.
#include "metalm/autograd/autograd.h"

#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/strided.h"

namespace metalm::autograd {
namespace {

thread_local bool g_grad_enabled = true;
thread_local bool g_check_numerics = false;

// out = a + b elementwise; all three of out's shape, any strides (gradients are often expanded
// or permuted views, and reading them in place saves a contiguous copy). out may be a itself.
void add_into(const Tensor& out, const Tensor& a, const Tensor& b) {
  MLM_CHECK(out.dtype() == DType::f32 || out.dtype() == DType::f64, AutogradError,
            "[backward] cannot accumulate ", out.str(), " gradients (f32 and f64 only)");
  auto run = [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.raw_data());
    const T* x = static_cast<const T*>(a.raw_data());
    const T* y = static_cast<const T*>(b.raw_data());
    detail::for_each_row<3>(
        out.shape(), {&out.strides(), &a.strides(), &b.strides()},
        [&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
          T* op = o + off[0];
          const T* xp = x + off[1];
          const T* yp = y + off[2];
          if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
            for (int64_t i = 0; i < n; ++i) op[i] = xp[i] + yp[i];
          } else {
            for (int64_t i = 0; i < n; ++i) op[i * st[0]] = xp[i * st[1]] + yp[i * st[2]];
          }
        });
  };
  if (out.dtype() == DType::f32)
    run(float{});
  else
    run(double{});
}

Tensor add_fresh(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  add_into(out, a, b);
  return out;
}

// True when t is a plain contiguous tensor that only `refs` handles (the caller's) can reach,
// storage included: it may then become a leaf gradient, or be accumulated into, in place.
// Anything else may be a view of a saved tensor, the caller's grad_output or a gradient the user
// holds, and must not be adopted or written.
bool is_private(const Tensor& t, long refs) {
  const std::shared_ptr<TensorImpl>& p = t.impl_ptr();
  return p.use_count() == refs && p->storage.use_count() == 1 && p->offset == 0 &&
         !p->grad_fn && !p->requires_grad && t.is_contiguous();
}

// Turns the numerics check off while the check itself runs ops (a contiguous copy would check
// itself), and back on even if they throw.
class NumericsOff {
 public:
  NumericsOff() : prev_(g_check_numerics) { g_check_numerics = false; }
  ~NumericsOff() { g_check_numerics = prev_; }
  NumericsOff(const NumericsOff&) = delete;
  NumericsOff& operator=(const NumericsOff&) = delete;

 private:
  bool prev_;
};

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
  NumericsOff off;
  Tensor c = t.detach().contiguous();
  const int64_t n = c.numel();
  bool bad = false;
  if (c.dtype() == DType::f32) {
    const float* p = c.data<float>();
    for (int64_t i = 0; i < n; ++i) bad |= !std::isfinite(p[i]);
  } else if (c.dtype() == DType::f64) {
    const double* p = c.data<double>();
    for (int64_t i = 0; i < n; ++i) bad |= !std::isfinite(p[i]);
  } else {
    const bf16* p = c.data<bf16>();
    for (int64_t i = 0; i < n; ++i) bad |= (p[i].bits & 0x7f80u) == 0x7f80u;  // exponent all 1s
  }
  return bad;
}

// True when out is a view of one of the inputs (reshape, permute, slice, expand): it holds no
// value its input does not, so the numerics check leaves it to the op that made the input.
bool is_view_of_input(const Tensor& out, const std::vector<Tensor>& inputs) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.impl().storage == out.impl().storage) return true;
  return false;
}

}  // namespace

Node::~Node() {
  // Dropping the inputs drops their producer nodes, which drop theirs: in a long chain that is
  // one nested destructor call per node, and a few hundred thousand overflow the stack. Unlink
  // the chain instead: a producer that only this chain keeps alive is moved to a work list, its
  // inputs are taken in turn, and it is destroyed with none left.
  std::vector<std::shared_ptr<Node>> unlinked;
  auto take_producers = [&unlinked](std::vector<Tensor>& edges) {
    for (Tensor& t : edges) {
      if (!t.defined()) continue;
      const std::shared_ptr<TensorImpl>& p = t.impl_ptr();
      if (p.use_count() == 1 && p->grad_fn && p->grad_fn.use_count() == 1)
        unlinked.push_back(std::move(p->grad_fn));
    }
    edges.clear();
  };
  take_producers(inputs);
  while (!unlinked.empty()) {
    std::shared_ptr<Node> node = std::move(unlinked.back());
    unlinked.pop_back();
    take_producers(node->inputs);
    node->backward = nullptr;
  }
}

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
  if (g_check_numerics && !is_view_of_input(out, inputs) && has_non_finite(out))
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

  // Leaf gradients are private contiguous tensors. g is adopted when nothing else can see it
  // (saves a copy of every parameter gradient), else copied; a second gradient is added in place
  // unless the caller holds the first (x.grad() keeps its values then).
  auto accumulate_leaf = [](const Tensor& leaf, const Tensor& g) {
    TensorImpl& li = leaf.impl();
    if (!li.grad) {
      li.grad = is_private(g, 1) ? g.impl_ptr() : g.clone().impl_ptr();
      return;
    }
    Tensor current(li.grad);  // handles: li.grad and current
    if (is_private(current, 2))
      add_into(current, current, g);
    else
      li.grad = add_fresh(current, g).impl_ptr();
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
        else if (is_private(slot->second, 1))
          add_into(slot->second, slot->second, grads[i]);
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
