// Elementwise ops. Binary ops broadcast through stride-0 views and the row iterator; unary ops run
// on contiguous data. Backward formulas are written with the same ops (run under NoGradGuard).
#include "metalm/ops/elementwise.h"

#include <cmath>

#include "core/strided.h"
#include "metalm/autograd/autograd.h"
#include "metalm/ops/reduce.h"
#include "ops/vecmath.h"

namespace metalm::ops {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    int64_t x = i + a.size() >= nd ? a[i + a.size() - nd] : 1;
    int64_t y = i + b.size() >= nd ? b[i + b.size() - nd] : 1;
    MLM_CHECK(x == y || x == 1 || y == 1, ShapeError, "[", op, "] shapes ", shape_str(a), " and ",
              shape_str(b), " do not broadcast");
    out[i] = x == 1 ? y : x;
  }
  return out;
}

namespace {

void check_float(const Tensor& t, const char* op) {
  MLM_CHECK(t.defined(), ValueError, "[", op, "] undefined input");
  MLM_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DTypeError, "[", op,
            "] expected f32 or f64, got ", t.str());
}

enum class BinOp { add, sub, mul, div };

template <typename T, BinOp OP>
inline T apply(T x, T y) {
  if constexpr (OP == BinOp::add) return x + y;
  if constexpr (OP == BinOp::sub) return x - y;
  if constexpr (OP == BinOp::mul) return x * y;
  return x / y;
}

template <typename T, BinOp OP>
void binary_rows(const Tensor& out, const Tensor& a, const Tensor& b) {
  T* o = out.data<T>();
  const T* x = a.data<T>();
  const T* y = b.data<T>();
  detail::for_each_row<3>(
      out.shape(), {&out.strides(), &a.strides(), &b.strides()},
      [&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
        T* op = o + off[0];
        const T* xp = x + off[1];
        const T* yp = y + off[2];
        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
          for (int64_t i = 0; i < n; ++i) op[i] = apply<T, OP>(xp[i], yp[i]);
        } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
          const T yv = *yp;
          for (int64_t i = 0; i < n; ++i) op[i] = apply<T, OP>(xp[i], yv);
        } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
          const T xv = *xp;
          for (int64_t i = 0; i < n; ++i) op[i] = apply<T, OP>(xv, yp[i]);
        } else {
          for (int64_t i = 0; i < n; ++i)
            op[i * st[0]] = apply<T, OP>(xp[i * st[1]], yp[i * st[2]]);
        }
      });
}

template <BinOp OP>
Tensor binary_forward(const Tensor& a, const Tensor& b, const char* op) {
  check_float(a, op);
  check_float(b, op);
  MLM_CHECK(a.dtype() == b.dtype(), DTypeError, "[", op, "] dtypes differ: ", a.str(), " and ",
            b.str());
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  Tensor ae = a.detach().expand(shape), be = b.detach().expand(shape);
  if (a.dtype() == DType::f32)
    binary_rows<float, OP>(out, ae, be);
  else
    binary_rows<double, OP>(out, ae, be);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<BinOp::add>(a, b, "add");
  Shape sa = a.shape(), sb = b.shape();
  return autograd::record("add", out, {a, b},
                          [sa, sb](const Tensor& g, const std::vector<bool>& needs) {
                            return std::vector<Tensor>{needs[0] ? sum_to_shape(g, sa) : Tensor(),
                                                       needs[1] ? sum_to_shape(g, sb) : Tensor()};
                          });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<BinOp::sub>(a, b, "sub");
  Shape sa = a.shape(), sb = b.shape();
  return autograd::record("sub", out, {a, b},
                          [sa, sb](const Tensor& g, const std::vector<bool>& needs) {
                            return std::vector<Tensor>{
                                needs[0] ? sum_to_shape(g, sa) : Tensor(),
                                needs[1] ? sum_to_shape(neg(g), sb) : Tensor()};
                          });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<BinOp::mul>(a, b, "mul");
  Tensor ad = a.detach(), bd = b.detach();
  return autograd::record("mul", out, {a, b},
                          [ad, bd](const Tensor& g, const std::vector<bool>& needs) {
                            return std::vector<Tensor>{
                                needs[0] ? sum_to_shape(mul(g, bd), ad.shape()) : Tensor(),
                                needs[1] ? sum_to_shape(mul(g, ad), bd.shape()) : Tensor()};
                          });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward<BinOp::div>(a, b, "div");
  Tensor ad = a.detach(), bd = b.detach();
  return autograd::record(
      "div", out, {a, b}, [ad, bd](const Tensor& g, const std::vector<bool>& needs) {
        Tensor gb;
        if (needs[1]) gb = sum_to_shape(neg(div(mul(g, ad), mul(bd, bd))), bd.shape());
        return std::vector<Tensor>{needs[0] ? sum_to_shape(div(g, bd), ad.shape()) : Tensor(), gb};
      });
}

// ---------------------------------------------------------------- unary

namespace {

// y = f(x) elementwise on a contiguous copy of x; F is a functor with a template call operator.
template <typename F>
Tensor unary_map(const Tensor& x, const char* op, F f) {
  check_float(x, op);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  auto run = [&](auto* xp, auto* op_) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t c = 0; c < n; c += 4096) {
      const int64_t e = std::min(n, c + 4096);
      for (int64_t i = c; i < e; ++i) op_[i] = f(xp[i]);
    }
  };
  if (x.dtype() == DType::f32)
    run(xc.data<float>(), out.data<float>());
  else
    run(xc.data<double>(), out.data<double>());
  return out;
}

// gx = g * d(x, y) elementwise; x, y, g of one shape (y = forward output).
template <typename D>
Tensor unary_grad(const Tensor& g, const Tensor& x, const Tensor& y, D d) {
  Tensor gc = g.contiguous(), xc = x.contiguous(), yc = y.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  auto run = [&](auto* gp, auto* xp, auto* yp, auto* op_) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t c = 0; c < n; c += 4096) {
      const int64_t e = std::min(n, c + 4096);
      for (int64_t i = c; i < e; ++i) op_[i] = gp[i] * d(xp[i], yp[i]);
    }
  };
  if (x.dtype() == DType::f32)
    run(gc.data<float>(), xc.data<float>(), yc.data<float>(), out.data<float>());
  else
    run(gc.data<double>(), xc.data<double>(), yc.data<double>(), out.data<double>());
  return out;
}

enum class SavesX { yes, no };

// One unary op: forward functor F, derivative functor D(x, y). An op whose derivative reads only
// y says SavesX::no, so its graph node does not keep the input alive (d then gets y for x).
template <typename F, typename D>
Tensor unary_op(const Tensor& x, const char* op, F f, D d, SavesX saves_x = SavesX::yes) {
  Tensor out = unary_map(x, op, f);
  Tensor xd = saves_x == SavesX::yes ? x.detach() : Tensor(), yd = out.detach();
  return autograd::record(op, out, {x}, [xd, yd, d](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{unary_grad(g, xd.defined() ? xd : yd, yd, d)};
  });
}

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;

}  // namespace

Tensor add(const Tensor& a, double s) {
  Tensor out = unary_map(a, "add_scalar", [s](auto x) { return x + static_cast<decltype(x)>(s); });
  // The derivative is 1: pass the gradient through, no saved tensors and no multiply.
  return autograd::record("add_scalar", out, {a}, [](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g};
  });
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = unary_map(a, "mul_scalar", [s](auto x) { return x * static_cast<decltype(x)>(s); });
  return autograd::record("mul_scalar", out, {a}, [s](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{mul(g, s)};
  });
}

Tensor neg(const Tensor& a) { return mul(a, -1.0); }

Tensor square(const Tensor& a) {
  return unary_op(a, "square", [](auto x) { return x * x; }, [](auto x, auto) { return 2 * x; });
}

Tensor exp(const Tensor& x) {
  return unary_op(x, "exp", [](auto v) { return vm::exp(v); }, [](auto, auto y) { return y; },
                  SavesX::no);
}

Tensor log(const Tensor& x) {
  return unary_op(x, "log", [](auto v) { return vm::log(v); },
                  [](auto v, auto) { return decltype(v)(1) / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary_op(x, "sqrt", [](auto v) { return std::sqrt(v); },
                  [](auto, auto y) { return decltype(y)(0.5) / y; }, SavesX::no);
}

Tensor rsqrt(const Tensor& x) {
  return unary_op(x, "rsqrt", [](auto v) { return decltype(v)(1) / std::sqrt(v); },
                  [](auto v, auto y) { return decltype(v)(-0.5) * y / v; });
}

Tensor tanh(const Tensor& x) {
  return unary_op(x, "tanh", [](auto v) { return vm::tanh(v); },
                  [](auto, auto y) { return decltype(y)(1) - y * y; }, SavesX::no);
}

Tensor sigmoid(const Tensor& x) {
  return unary_op(x, "sigmoid", [](auto v) { return vm::sigmoid(v); },
                  [](auto, auto y) { return y * (decltype(y)(1) - y); }, SavesX::no);
}

Tensor relu(const Tensor& x) {
  // y > 0 exactly when x > 0, so the derivative reads y and x need not be saved.
  return unary_op(x, "relu", [](auto v) { return v > 0 ? v : decltype(v)(0); },
                  [](auto, auto y) { return y > 0 ? decltype(y)(1) : decltype(y)(0); }, SavesX::no);
}

// Written without the cancellation in 1 + erf(x) and 1 + tanh(u) for x << 0 (PyTorch's f32
// formulas lose all digits there): Phi(x) = erfc(-x/sqrt2)/2 and (1 + tanh u)/2 = sigmoid(2u).
Tensor gelu(const Tensor& x) {
  return unary_op(
      x, "gelu",
      [](auto v) {
        using T = decltype(v);
        return T(0.5) * v * vm::erfc(-v * T(kSqrt1_2));
      },
      [](auto v, auto y) {
        using T = decltype(v);
        // Phi(x) = y / x reuses the forward's erfc (the costly part); exact to an ulp, and for
        // x << 0 both sides underflow together. x = 0 takes Phi(0) = 1/2.
        T cdf = v != T(0) ? y / v : T(0.5);
        T pdf = T(kInvSqrt2Pi) * vm::exp(T(-0.5) * v * v);
        return cdf + v * pdf;
      });
}

Tensor gelu_tanh(const Tensor& x) {
  return unary_op(
      x, "gelu_tanh",
      [](auto v) {
        using T = decltype(v);
        T inner = T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v);
        return v * vm::sigmoid(T(2) * inner);
      },
      [](auto v, auto) {
        using T = decltype(v);
        T inner = T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v);
        T s = vm::sigmoid(T(2) * inner);  // (1 + tanh(inner)) / 2
        T dinner = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * v * v);
        return s + v * T(2) * s * (T(1) - s) * dinner;
      });
}

Tensor quick_gelu(const Tensor& x) {
  return unary_op(
      x, "quick_gelu", [](auto v) { return v * vm::sigmoid(decltype(v)(1.702) * v); },
      [](auto v, auto) {
        using T = decltype(v);
        T s = vm::sigmoid(T(1.702) * v);
        return s + T(1.702) * v * s * (T(1) - s);
      });
}

Tensor silu(const Tensor& x) {
  return unary_op(
      x, "silu", [](auto v) { return v * vm::sigmoid(v); },
      [](auto v, auto) {
        using T = decltype(v);
        T s = vm::sigmoid(v);
        return s * (T(1) + v * (T(1) - s));
      });
}

const std::vector<std::pair<Activation, const char*>>& activation_names() {
  static const std::vector<std::pair<Activation, const char*>> names = {
      {Activation::relu, "relu"},           {Activation::gelu, "gelu"},
      {Activation::gelu_tanh, "gelu_tanh"}, {Activation::gelu_tanh, "gelu_fast"},
      {Activation::silu, "swish"},          {Activation::silu, "silu"},
      {Activation::quick_gelu, "quick_gelu"}};
  return names;
}

const char* activation_name(Activation activation) {
  if (activation == Activation::none) return "none";
  for (const auto& [a, name] : activation_names())
    if (a == activation) return name;
  return "?";
}

Activation parse_activation(const std::string& name) {
  std::string all;
  for (const auto& [a, n] : activation_names()) {
    if (name == n) return a;
    all += (all.empty() ? "" : ", ") + std::string(n);
  }
  throw ValueError("[activation] unknown activation '" + name + "' (expected " + all + ")");
}

Tensor activation(const Tensor& x, Activation a) {
  switch (a) {
    case Activation::none: return x;
    case Activation::relu: return relu(x);
    case Activation::gelu: return gelu(x);
    case Activation::gelu_tanh: return gelu_tanh(x);
    case Activation::quick_gelu: return quick_gelu(x);
    case Activation::silu: return silu(x);
  }
  return x;
}

}  // namespace metalm::ops
