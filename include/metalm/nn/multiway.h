// Multiway experts (reference-spec 2.1, 2.2): a module that exists once per modality. Without
// multiway it is a plain child ("q_proj.weight"); with two experts it becomes "q_proj.A.*"
// (vision) and "q_proj.B.*" (language), as released BEiT-3 / TorchScale; a third expert "C" is
// the vision-language FFN of the BEiT-3 paper / VLMo, used by the top layers for all tokens.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "metalm/nn/module.h"
#include "metalm/ops/shape.h"

namespace metalm::nn {

// Which expert each token of a [B, T, ...] input uses.
struct Route {
  // split < 0: all tokens A; split == 0: all B; split = p > 0: tokens [0, p) A, [p, T) B
  // (TorchScale's multiway_split_position; p >= T means all A).
  int64_t split = 0;
  // The input is an image-text pair: modules with a third expert C (the vision-language FFN of
  // the top layers) send all tokens through C; modules with two experts split as above.
  bool vl = false;
};

// Holds the experts; the parent forwards through apply(). Not a Module itself: the experts (or
// their "A"/"B"/"C" container) are registered as children of the parent.
template <typename M>
class Experts {
 public:
  Experts() = default;

  // n = 1: one module registered as `name`; n = 2 or 3: a container `name` with A, B (, C).
  // make() builds one expert (called n times, so each expert gets its own initialisation).
  template <typename Make>
  void build(Module& parent, const std::string& name, int n, Make make) {
    MLM_CHECK(n >= 1 && n <= 3, ValueError, "[multiway] ", name, ": 1 to 3 experts, got ", n);
    experts_.clear();
    if (n == 1) {
      experts_.push_back(parent.register_module(name, make()));
      return;
    }
    auto group = parent.register_module(name, std::make_shared<Module>());
    const char* names[] = {"A", "B", "C"};
    for (int i = 0; i < n; ++i) experts_.push_back(group->register_module(names[i], make()));
  }

  bool defined() const { return !experts_.empty(); }
  int count() const { return static_cast<int>(experts_.size()); }
  M& expert(int i) const { return *experts_.at(static_cast<size_t>(i)); }
  M& only() const { return *experts_.at(0); }

  // f(M&, x) -> y, applied per expert on its tokens (dim 1 of x) and concatenated back.
  template <typename F>
  Tensor apply(const Tensor& x, const Route& r, F f) const {
    if (experts_.size() == 1) return f(*experts_[0], x);
    if (r.vl && experts_.size() == 3) return f(*experts_[2], x);
    const int64_t T = x.size(1);
    if (r.split < 0 || r.split >= T) return f(*experts_[0], x);
    if (r.split == 0) return f(*experts_[1], x);
    Tensor a = f(*experts_[0], x.slice(1, 0, r.split));
    Tensor b = f(*experts_[1], x.slice(1, r.split, T));
    return ops::concat({a, b}, 1);
  }

 private:
  std::vector<std::shared_ptr<M>> experts_;
};

}  // namespace metalm::nn
