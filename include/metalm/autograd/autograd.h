// Define-by-run autograd: each differentiable op records one Node on its output. backward()
// walks the nodes in reverse topological order, accumulates leaf gradients, and frees the graph.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::autograd {

bool is_grad_enabled();

// Disables recording in its scope (inference, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Given dL/d(output), returns dL/d(input i) for every input i with needs[i] (others: undefined
// Tensor). Gradients may be non-contiguous views; they must have the input's shape.
using BackwardFn =
    std::function<std::vector<Tensor>(const Tensor& grad_output, const std::vector<bool>& needs)>;

struct Node {
  Node() = default;
  ~Node();  // unlinks long chains iteratively instead of recursing once per node
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  std::string name;
  std::vector<Tensor> inputs;
  std::vector<bool> needs;  // needs[i]: input i requires grad
  BackwardFn backward;      // empty once the graph is freed
  Shape out_shape;
  DType out_dtype = DType::f32;
};

// True when grad mode is on and some input requires grad.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Called by every op on its result: checks numerics in debug mode, and, if some input requires
// grad, attaches a Node to `out`. Capture saved inputs by value; capture `out` only as
// out.detach() (otherwise the node would own itself).
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn);

// Backward from root with dL/d(root) = grad (ones for a 1-element root when grad is undefined).
void run_backward(const Tensor& root, const Tensor& grad);

// Debug mode: every op checks its output for NaN/Inf and throws NumericError naming the op.
void set_check_numerics(bool on);
bool check_numerics_enabled();

}  // namespace metalm::autograd

namespace metalm {
using autograd::NoGradGuard;
}
