// Optimizers with PyTorch semantics (torch.optim.SGD, torch.optim.AdamW), parameter groups, and
// global-norm gradient clipping. Updates run without autograd and in place on the parameters.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::train {

struct ParamGroup {
  std::vector<Tensor> params;      // f32 or f64 leaves that require grad
  std::vector<std::string> names;  // their names (checkpoints), or empty
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // this group's lr = optimizer lr * lr_scale
};

// Two groups of the parameters that require grad (frozen ones are left out): weight_decay for
// matrices, none for 1-D parameters (norm weights, biases) and for names matching any of
// `no_decay_substrings` (e.g. "embed_positions"). Names are kept for checkpoints.
std::vector<ParamGroup> make_param_groups(const TensorMap& params, double weight_decay,
                                          const std::vector<std::string>& no_decay_substrings = {});

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  // Applies one update with the accumulated gradients (parameters without one are skipped).
  virtual void step() = 0;
  void zero_grad();  // drops every parameter's gradient
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }  // a resumed run continues the count
  const std::vector<ParamGroup>& groups() const { return groups_; }

 protected:
  std::vector<ParamGroup> groups_;
  double lr_ = 1e-3;
  int64_t step_count_ = 0;
};

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;  // torch: buf = momentum * buf + g (no dampening); p -= lr * buf
};

// weight_decay of a group is coupled L2 (g += wd * p), as torch.optim.SGD.
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, SGDOptions options);
  void step() override;

 private:
  SGDOptions opt_;
  std::vector<std::vector<Tensor>> momentum_;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// Decoupled weight decay: p -= lr * wd * p, then the bias-corrected Adam update.
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options);
  void step() override;
  // First and second moments, for checkpoints: "exp_avg.<name>", "exp_avg_sq.<name>" (the
  // parameter names of the groups; "<g>.<i>" for unnamed groups). No copies: the live tensors.
  TensorMap state() const;
  // Copies a state() back (strict: every name, shape and dtype must match; ValueError listing
  // the first mismatch).
  void load_state(const TensorMap& state);

 private:
  AdamWOptions opt_;
  std::vector<std::vector<Tensor>> m_, v_;
};

// Scales all gradients so their global L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_
// semantics: factor = max_norm / (norm + 1e-6), applied only if < 1). Returns the norm before
// clipping. Parameters without a gradient are ignored.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// The global L2 norm of the gradients (f64 accumulation).
double grad_norm(const std::vector<Tensor>& params);

}  // namespace metalm::train
