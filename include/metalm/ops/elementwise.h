// Elementwise arithmetic with NumPy broadcasting, and the activations. f32 and f64.
// Kernels are plain loops the compiler vectorizes (-O3 -march=native); that loop is also the
// reference. Activations follow PyTorch exactly: gelu = x * Phi(x) with erf; gelu_tanh the tanh
// approximation; quick_gelu = x * sigmoid(1.702 x); silu = x * sigmoid(x).
#pragma once
#include "metalm/ops/activation.h"
#include "metalm/core/tensor.h"

namespace metalm::ops {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor square(const Tensor& a);

Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);       // exact (erf)
Tensor gelu_tanh(const Tensor& x);  // tanh approximation
Tensor quick_gelu(const Tensor& x);
Tensor silu(const Tensor& x);

// One of the activations above (ops/activation.h); none is the identity.
Tensor activation(const Tensor& x, Activation activation);

}  // namespace metalm::ops

namespace metalm {
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return ops::add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return ops::add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return ops::mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return ops::mul(a, s); }
inline Tensor operator-(const Tensor& a) { return ops::neg(a); }
}  // namespace metalm
