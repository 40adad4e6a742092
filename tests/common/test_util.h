// Test helpers: random inputs, closeness with a report, finite-difference gradient checks, and
// where the PyTorch reference files are (common/reference_file.h reads them).
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/core/tensor.h"
#include "metalm/core/threads.h"

namespace metalm::test {

// Normal(0, 1) tensor from a fixed seed.
Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f32);
// Uniform [lo, hi) tensor from a fixed seed.
Tensor randu(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype = DType::f32);
// randn as a leaf that requires grad; f64 by default, as gradcheck wants.
Tensor leaf(const Shape& shape, uint64_t seed, DType dtype = DType::f64);

// Restores the thread count (metalm::set_num_threads) that a test changes, however it ends.
struct ThreadCountGuard {
  int saved = get_num_threads();
  ThreadCountGuard() = default;
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;
  ~ThreadCountGuard() { set_num_threads(saved); }
};

// Largest |a-b| / (atol + rtol*|b|) over all elements (<= 1 means close); shapes must match.
double closeness(const Tensor& a, const Tensor& b, double rtol, double atol);

// gtest assertion: a and b have the same shape and are elementwise close; on failure prints the
// worst element, the max abs and relative errors.
::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol = 1e-5,
                                     double atol = 1e-6);

// Central finite differences in f64: checks d(sum(f(inputs) * w))/d(input) for every input that
// requires grad against backward(), where w is a fixed random weighting.
::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const std::vector<Tensor>& inputs, double eps = 1e-6,
                                     double rtol = 1e-5, double atol = 1e-7);

// Runs fn and expects an exception of type E whose message contains every one of `parts`.
template <typename E>
::testing::AssertionResult throws_with(const std::function<void()>& fn,
                                       const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      if (msg.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << msg << "\" lacks \"" << p << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "wrong exception type: " << e.what();
  }
  return ::testing::AssertionFailure() << "no exception";
}
template <typename E>
::testing::AssertionResult throws_with(const std::function<void()>& fn, const char* part) {
  return throws_with<E>(fn, std::vector<std::string>{part});
}

// Directory with the PyTorch reference files (env METALM_REF_DIR); empty if not set.
std::string reference_dir();

}  // namespace metalm::test
