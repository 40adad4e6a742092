#include "common/test_util.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/ops.h"

namespace metalm::test {

Tensor randn(const Shape& shape, uint64_t seed, DType dtype) {
  Generator g(seed);
  return g.normal(shape, 0.0, 1.0, dtype);
}

Tensor randu(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype) {
  Generator g(seed);
  return g.uniform(shape, lo, hi, dtype);
}

Tensor leaf(const Shape& shape, uint64_t seed, DType dtype) {
  return randn(shape, seed, dtype).set_requires_grad();
}

double closeness(const Tensor& a, const Tensor& b, double rtol, double atol) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
    if (std::isnan(x[i])) continue;
    if (std::isinf(x[i]) || std::isinf(y[i])) {
      if (x[i] != y[i]) return INFINITY;
      continue;
    }
    worst = std::max(worst, std::fabs(x[i] - y[i]) / (atol + rtol * std::fabs(y[i])));
  }
  return worst;
}

::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (!a.defined() || !b.defined())
    return ::testing::AssertionFailure() << "undefined tensor: " << a.str() << " vs " << b.str();
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure() << "shape " << a.str() << " vs " << b.str();
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0, max_abs = 0, max_rel = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = std::fabs(x[i] - y[i]);
    bool same_special = (std::isnan(x[i]) && std::isnan(y[i])) || (std::isinf(x[i]) && x[i] == y[i]);
    double r = same_special || d == 0
                   ? 0
                   : (std::isfinite(d) ? d / (atol + rtol * std::fabs(y[i])) : INFINITY);
    if (!same_special) {
      max_abs = std::max(max_abs, d);
      if (y[i] != 0) max_rel = std::max(max_rel, d / std::fabs(y[i]));
    }
    if (r > worst || std::isnan(r)) {
      worst = std::isnan(r) ? INFINITY : r;
      worst_i = i;
    }
  }
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "not close (rtol " << rtol << ", atol " << atol << "): element " << worst_i << " is "
         << x[worst_i] << " vs " << y[worst_i] << "; max abs err " << max_abs << ", max rel err "
         << max_rel << ", " << a.str();
}

::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const std::vector<Tensor>& inputs, double eps, double rtol,
                                     double atol) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad() && t.dtype() != DType::f64)
      return ::testing::AssertionFailure() << "gradcheck needs f64 inputs, got " << t.str();
  for (const Tensor& t : inputs)
    if (t.defined()) const_cast<Tensor&>(t).zero_grad();
  Tensor out = f(inputs);
  Tensor w = randn(out.shape(), 12345, DType::f64);
  Tensor loss = ops::sum(ops::mul(out, w));
  loss.backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor analytic = x.grad();
    if (!analytic.defined()) analytic = Tensor::zeros(x.shape(), DType::f64);
    Tensor numeric = Tensor::zeros(x.shape(), DType::f64);
    NoGradGuard ng;
    Tensor xc = x.detach();  // perturb in place through a view of the same storage
    if (!xc.is_contiguous())
      return ::testing::AssertionFailure() << "gradcheck needs contiguous inputs";
    double* p = xc.data<double>();
    double* np = numeric.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      double orig = p[j];
      p[j] = orig + eps;
      double lp = ops::sum(ops::mul(f(inputs), w)).item<double>();
      p[j] = orig - eps;
      double lm = ops::sum(ops::mul(f(inputs), w)).item<double>();
      p[j] = orig;
      np[j] = (lp - lm) / (2 * eps);
    }
    auto r = all_close(analytic, numeric, rtol, atol);
    if (!r) return ::testing::AssertionFailure() << "input " << i << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

std::string reference_dir() {
  const char* d = std::getenv("METALM_REF_DIR");
  return d ? std::string(d) : std::string();
}

}  // namespace metalm::test
