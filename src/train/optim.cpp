// SGD, AdamW and clipping. Plain loops over contiguous f32/f64 storage; parameters and their
// gradients are always contiguous (leaves are created contiguous; gradients are fresh tensors).
#include "metalm/train/optim.h"

#include <algorithm>
#include <cmath>

#include "metalm/autograd/autograd.h"

namespace metalm::train {
namespace {

void check_param(const Tensor& p, const char* op) {
  MLM_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), ValueError, "[", op,
            "] parameters must be leaf tensors that require grad, got ", p.str());
  MLM_CHECK(p.is_contiguous(), ValueError, "[", op, "] parameters must be contiguous");
}

template <typename T, typename F>
void for_param(const Tensor& p, F f) {
  Tensor g = p.grad().contiguous();
  T* pp = p.data<T>();
  const T* gp = g.data<T>();
  f(pp, gp, p.numel());
}

// Calls f(T* param, const T* grad, n) for f32 or f64 parameters.
template <typename F>
void dispatch(const Tensor& p, F f) {
  if (p.dtype() == DType::f32)
    for_param<float>(p, f);
  else
    for_param<double>(p, f);
}

// Sum of squares accumulated in f64 straight from the gradient's storage (no f64 copy). Fixed
// blocks of 2^16 elements, each summed over 8 lanes, are added in block order, so the result is
// the same bits for every thread count (D7) while the blocks run in parallel.
template <typename T>
double sum_squares(const T* p, int64_t n) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(nblocks));
#pragma omp parallel for schedule(static) if (nblocks > 1)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t begin = b * kBlock, end = std::min(n, begin + kBlock);
    double lanes[8] = {};
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
      for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(p[i + l]) * p[i + l];
    double acc = 0;
    for (; i < end; ++i) acc += static_cast<double>(p[i]) * p[i];
    for (int l = 0; l < 8; ++l) acc += lanes[l];
    partial[static_cast<size_t>(b)] = acc;
  }
  double total = 0;
  for (double v : partial) total += v;
  return total;
}

}  // namespace

std::vector<ParamGroup> make_param_groups(const TensorMap& params, double weight_decay,
                                          const std::vector<std::string>& no_decay_substrings) {
  ParamGroup decay, no_decay;
  decay.weight_decay = weight_decay;
  for (const auto& [name, t] : params) {
    if (!t.requires_grad()) continue;
    bool skip = t.dim() <= 1;
    for (const auto& s : no_decay_substrings)
      if (name.find(s) != std::string::npos) skip = true;
    ParamGroup& g = skip ? no_decay : decay;
    g.params.push_back(t);
    g.names.push_back(name);
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(decay);
  if (!no_decay.params.empty()) groups.push_back(no_decay);
  return groups;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (const auto& g : groups_)
    for (const auto& p : g.params) check_param(p, "optimizer");
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer(std::move(groups)), opt_(options) {
  MLM_CHECK(options.lr >= 0 && options.momentum >= 0, ValueError, "[sgd] lr and momentum must be >= 0");
  lr_ = options.lr;
  momentum_.resize(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) momentum_[gi].resize(groups_[gi].params.size());
}

void SGD::step() {
  NoGradGuard ng;
  ++step_count_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    const double lr = lr_ * group.lr_scale, wd = group.weight_decay, mom = opt_.momentum;
    for (size_t pi = 0; pi < group.params.size(); ++pi) {
      const Tensor& p = group.params[pi];
      if (!p.grad().defined()) continue;
      Tensor& buf = momentum_[gi][pi];
      const bool first = !buf.defined();
      if (mom > 0 && first) buf = Tensor::zeros(p.shape(), p.dtype());
      dispatch(p, [&](auto* w, const auto* g, int64_t n) {
        using T = std::remove_pointer_t<decltype(w)>;
        T* b = mom > 0 ? buf.data<T>() : nullptr;
        for (int64_t i = 0; i < n; ++i) {
          T d = g[i] + static_cast<T>(wd) * w[i];
          if (b) {
            b[i] = first ? d : static_cast<T>(mom) * b[i] + d;
            d = b[i];
          }
          w[i] -= static_cast<T>(lr) * d;
        }
      });
    }
  }
}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Optimizer(std::move(groups)), opt_(options) {
  MLM_CHECK(options.lr >= 0, ValueError, "[adamw] lr must be >= 0, got ", options.lr);
  MLM_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
            ValueError, "[adamw] betas must be in [0, 1), got ", options.beta1, ", ",
            options.beta2);
  MLM_CHECK(options.eps >= 0, ValueError, "[adamw] eps must be >= 0");
  lr_ = options.lr;
  m_.resize(groups_.size());
  v_.resize(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (const Tensor& p : groups_[gi].params) {
      m_[gi].push_back(Tensor::zeros(p.shape(), p.dtype()));
      v_[gi].push_back(Tensor::zeros(p.shape(), p.dtype()));
    }
  }
}

void AdamW::step() {
  NoGradGuard ng;
  ++step_count_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(step_count_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(step_count_));
  const double sqrt_bc2 = std::sqrt(bc2);
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    const double lr = lr_ * group.lr_scale;
    const double decay = 1.0 - lr * group.weight_decay;
    const double step_size = lr / bc1;
    for (size_t pi = 0; pi < group.params.size(); ++pi) {
      const Tensor& p = group.params[pi];
      if (!p.grad().defined()) continue;
      dispatch(p, [&](auto* w, const auto* g, int64_t n) {
        using T = std::remove_pointer_t<decltype(w)>;
        T* m = m_[gi][pi].data<T>();
        T* v = v_[gi][pi].data<T>();
        const T b1 = static_cast<T>(opt_.beta1), b2 = static_cast<T>(opt_.beta2);
        const T eps = static_cast<T>(opt_.eps), dec = static_cast<T>(decay);
        const T ss = static_cast<T>(step_size), sb2 = static_cast<T>(sqrt_bc2);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
        for (int64_t i = 0; i < n; ++i) {
          w[i] *= dec;
          m[i] = b1 * m[i] + (T(1) - b1) * g[i];
          v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
          w[i] -= ss * m[i] / (std::sqrt(v[i]) / sb2 + eps);
        }
      });
    }
  }
}

TensorMap AdamW::state() const {
  TensorMap out;
  for (size_t gi = 0; gi < m_.size(); ++gi)
    for (size_t pi = 0; pi < m_[gi].size(); ++pi) {
      const std::vector<std::string>& names = groups_[gi].names;
      const std::string name = names.size() == m_[gi].size()
                                   ? names[pi]
                                   : std::to_string(gi) + "." + std::to_string(pi);
      out.emplace("exp_avg." + name, m_[gi][pi]);
      out.emplace("exp_avg_sq." + name, v_[gi][pi]);
    }
  return out;
}

void AdamW::load_state(const TensorMap& state) {
  const TensorMap mine = this->state();
  MLM_CHECK(state.size() == mine.size(), ValueError, "[adamw] optimizer state holds ",
            state.size(), " tensors, this optimizer ", mine.size(),
            " (a checkpoint of another model or another set of trainable parameters?)");
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    MLM_CHECK(it != state.end(), ValueError, "[adamw] optimizer state lacks ", name);
    MLM_CHECK(it->second.shape() == t.shape() && it->second.dtype() == t.dtype(), ValueError,
              "[adamw] optimizer state ", name, " is ", it->second.str(), ", expected ", t.str());
  }
  NoGradGuard ng;
  for (const auto& [name, t] : mine) copy_into(t, state.at(name));
}

double grad_norm(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    g = g.contiguous();  // gradients are contiguous already; this copies only odd user-set ones
    if (g.dtype() == DType::f32)
      total += sum_squares(g.data<float>(), g.numel());
    else
      total += sum_squares(g.data<double>(), g.numel());
  }
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  MLM_CHECK(max_norm > 0, ValueError, "[clip_grad_norm] max_norm must be > 0, got ", max_norm);
  const double norm = grad_norm(params);
  const double factor = max_norm / (norm + 1e-6);
  if (factor >= 1.0) return norm;
  NoGradGuard ng;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    g = g.contiguous();
    const int64_t n = g.numel();
    if (g.dtype() == DType::f32) {
      float* q = g.data<float>();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) q[i] = static_cast<float>(q[i] * factor);
    } else {
      double* q = g.data<double>();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) q[i] *= factor;
    }
    p.impl().grad = g.impl_ptr();
  }
  return norm;
}

}  // namespace metalm::train
