// Module: a tree of named parameters, buffers and submodules. Names join with '.', exactly as
// PyTorch state-dict keys (D3: "layers.0.self_attn.q_proj.weight"), so TorchScale checkpoints
// load without renaming. Layers are built from plain ops; a Module only owns and names tensors.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/core/tensor.h"

namespace metalm::nn {


class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter (recursively) by dotted name.
  TensorMap named_parameters() const;
  std::vector<Tensor> parameters() const;  // in registration order
  TensorMap named_buffers() const;
  // Parameters that currently require grad (not frozen).
  std::vector<Tensor> trainable_parameters() const;
  int64_t parameter_count(bool trainable_only = false) const;

  // Parameters and buffers by name (no copies: the tensors share storage with the module).
  TensorMap state_dict() const;
  // Copies values into the existing tensors (dtype converted if needed). With strict, any
  // missing, unexpected or mis-shaped key fails with a ValueError that lists all of them.
  void load_state_dict(const TensorMap& state, bool strict = true);
  // Bytes held by parameters and buffers.
  int64_t state_bytes() const;

  // Freezes (requires_grad = false) the parameters whose dotted name matches the glob pattern
  // ('*' matches any run of characters, '?' one character); returns how many matched.
  int64_t freeze(const std::string& pattern, bool frozen = true);

  // Every random generator the module tree owns (dropout, drop-path), by dotted name
  // ("layers.0.self_attn.dropout"): what a checkpoint saves so that a resumed run draws the same
  // masks as an uninterrupted one (D7).
  std::map<std::string, Generator*> named_generators();

  // Converts every float parameter and buffer to `dtype` (f32 or f64) in place: the tensors keep
  // their identity, so handles held by layers (Linear::weight, ...) see the new storage.
  // Accumulated gradients are dropped.
  void to(DType dtype);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Visits this module and its descendants depth first with their dotted prefixes.
  void for_each_module(const std::function<void(const std::string&, Module&)>& fn,
                       const std::string& prefix = "");

  // Registers a child module under `name` (public so helpers like nn::Experts can build
  // optional or multiway children into their parent); returns it.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 protected:
  // Registers a leaf that requires grad (f32/f64) under `name`; returns it.
  Tensor register_parameter(const std::string& name, Tensor value);
  // Registers a tensor saved in the state dict but not trained (e.g. a fixed table).
  Tensor register_buffer(const std::string& name, Tensor value);
  // A generator owned by this module (its address is stable), seeded `seed`, listed by
  // named_generators().
  Generator& register_generator(const std::string& name, uint64_t seed);
  // Hook for subclasses: called when training mode changes.
  virtual void on_train(bool) {}

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_name(const std::string& name) const;
  using Named = std::vector<std::pair<std::string, Tensor>>;
  void collect(const std::string& prefix, Named* params, Named* buffers) const;

  Named params_;
  Named buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<Generator>>> generators_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Converts t's values to `dtype` in place: t keeps its identity (every handle sharing its
// TensorImpl sees the new storage and dtype); an accumulated gradient is dropped.
void convert_in_place(const Tensor& t, DType dtype);

// Eval mode for a scope: the module's previous mode comes back at the scope's end, also when an
// exception leaves it (inference helpers called from a training loop).
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Module& m) : m_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalModeGuard() { m_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  Module& m_;
  bool was_training_;
};

// The strict state-dict check, shared by load_state_dict and the direct loader: compares a
// model's state (name -> tensor) with what a source offers (name -> shape). Returns "" when they
// fit, else " mis-shaped: a (checkpoint [2], model [3]); missing: b; unexpected: c" (missing and
// unexpected only when strict).
std::string state_mismatch(const TensorMap& model, const std::map<std::string, Shape>& given,
                           bool strict);

// '*' and '?' glob match over a whole string.
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace metalm::nn
