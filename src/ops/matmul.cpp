// matmul and linear. Fast path: oneDNN's dnnl_sgemm (row-major, runs on the shared OpenMP pool).
// Reference path (f64 always, f32 under ReferenceGuard): plain triple loop accumulating in
// f64. Operands whose last two dims are a transposed contiguous layout are passed to sgemm with
// the transpose flag flipped, so permuted views cost no copy.
#include "metalm/ops/matmul.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/reduce.h"
#include "ops/bf16_weights.h"

namespace metalm::ops {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b,
                                ldb, beta, c, ldc);
  MLM_CHECK(st == dnnl_success, Error, "[sgemm] oneDNN failed with status ", static_cast<int>(st),
            " for M=", m, " N=", n, " K=", k);
}

namespace {

// One matrix operand: element (r, c) of the stored matrix i of the batch is
// ptr[i * batch_stride + r * ld + c] (trans = false) -- or the stored matrix is the transpose.
struct Operand {
  Tensor t;  // keeps the data alive (may be a contiguous copy)
  int64_t rows = 0, cols = 0;  // of the stored matrix, before the op's transpose flag
  int64_t ld = 0, batch_stride = 0;
  bool flipped = false;  // stored layout is column-major: pass !trans to sgemm
};

// Describes the last two dims of t (batch dims must collapse to one stride).
Operand make_operand(const Tensor& t_in, int64_t batch) {
  Operand o;
  Tensor t = t_in;
  const int64_t nd = t.dim();
  o.rows = t.shape()[nd - 2];
  o.cols = t.shape()[nd - 1];
  auto batch_ok = [&](const Tensor& x) {
    // batch dims collapse to one stride (or batch == 1)
    int64_t expect = -1;
    for (int64_t d = nd - 3; d >= 0; --d) {
      if (x.shape()[d] == 1) continue;
      if (expect >= 0 && x.strides()[d] != expect) return false;
      expect = x.strides()[d] * x.shape()[d];
    }
    return true;
  };
  const Shape& st = t.strides();
  bool row_major = st[nd - 1] == 1 && (st[nd - 2] >= std::max<int64_t>(o.cols, 1) || o.rows == 1);
  bool col_major = !row_major && st[nd - 2] == 1 && (st[nd - 1] >= std::max<int64_t>(o.rows, 1) || o.cols == 1);
  if (!(row_major || col_major) || !batch_ok(t)) {
    t = t.contiguous();
    row_major = true;
    col_major = false;
  }
  o.t = t;
  o.flipped = col_major;
  o.ld = row_major ? std::max<int64_t>(t.strides()[nd - 2], std::max<int64_t>(o.cols, 1))
                   : std::max<int64_t>(t.strides()[nd - 1], std::max<int64_t>(o.rows, 1));
  o.batch_stride = 0;
  if (batch > 1)
    for (int64_t d = nd - 3; d >= 0; --d)
      if (t.shape()[d] != 1) {
        o.batch_stride = t.strides()[d];  // innermost non-1 batch dim
        break;
      }
  return o;
}

template <typename T>
void gemm_reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                    const T* b, int64_t ldb, T* c, int64_t ldc) {
#pragma omp parallel for schedule(static) if (m * n * k > (1 << 18))
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        double x = ta ? a[p * lda + i] : a[i * lda + p];
        double y = tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += x * y;
      }
      c[i * ldc + j] = static_cast<T>(acc);
    }
}

// out[batch] = op(a) op(b) for every batch entry (no autograd).
Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  MLM_CHECK(a.defined() && b.defined(), ValueError, "[matmul] undefined input");
  MLM_CHECK(a.dtype() == b.dtype() && (a.dtype() == DType::f32 || a.dtype() == DType::f64),
            DTypeError, "[matmul] expected two f32 or two f64 tensors, got ", a.str(), " and ",
            b.str());
  MLM_CHECK(a.dim() >= 2 && b.dim() >= 2, ShapeError, "[matmul] operands need 2+ dims, got ",
            a.str(), " and ", b.str());
  const int64_t m = a.size(ta ? -1 : -2), k = a.size(ta ? -2 : -1);
  const int64_t kb = b.size(tb ? -1 : -2), n = b.size(tb ? -2 : -1);
  MLM_CHECK(k == kb, ShapeError, "[matmul] inner dims differ: ", a.str(), (ta ? "^T" : ""), " x ",
            b.str(), (tb ? "^T" : ""));
  Shape batch_shape(a.shape().begin(), a.shape().end() - 2);
  if (b.dim() > 2) {
    Shape bb(b.shape().begin(), b.shape().end() - 2);
    MLM_CHECK(bb == batch_shape, ShapeError, "[matmul] batch dims differ: ", a.str(), " x ",
              b.str());
  }
  const int64_t batch = shape_numel(batch_shape);
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  if (out.numel() == 0) return out;

  // b shared across the batch and a not transposed: one big GEMM over all rows of a.
  Tensor a2 = a;
  int64_t mm = m, nbatch = batch;
  if (b.dim() == 2 && !ta && batch > 1) {
    a2 = a.detach().reshape({batch * m, k});
    mm = batch * m;
    nbatch = 1;
  }
  Operand A = make_operand(a2.detach(), nbatch), B = make_operand(b.detach(), nbatch);
  const bool ta_eff = ta != A.flipped, tb_eff = tb != B.flipped;
  if (a.dtype() == DType::f32 && !use_reference()) {
    const float* ap = A.t.data<float>();
    const float* bp = B.t.data<float>();
    float* cp = out.data<float>();
    for (int64_t i = 0; i < nbatch; ++i)
      sgemm(ta_eff, tb_eff, mm, n, k, 1.f, ap + i * A.batch_stride, A.ld,
            bp + (b.dim() == 2 ? 0 : i * B.batch_stride), B.ld, 0.f, cp + i * mm * n, n);
  } else {
    auto run = [&](auto tag) {
      using T = decltype(tag);
      const T* ap = A.t.data<T>();
      const T* bp = B.t.data<T>();
      T* cp = out.data<T>();
      for (int64_t i = 0; i < nbatch; ++i)
        gemm_reference<T>(ta_eff, tb_eff, mm, n, k, ap + i * A.batch_stride, A.ld,
                          bp + (b.dim() == 2 ? 0 : i * B.batch_stride), B.ld, cp + i * mm * n, n);
    };
    if (a.dtype() == DType::f32)
      run(float{});
    else
      run(double{});
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Tensor out = matmul_forward(a, b, ta, tb);
  Tensor ad = a.detach(), bd = b.detach();
  return autograd::record(
      "matmul", out, {a, b}, [ad, bd, ta, tb](const Tensor& g, const std::vector<bool>& needs) {
        const bool shared_b = bd.dim() == 2 && ad.dim() > 2;  // b broadcast over a's batch
        Tensor ga, gb;
        if (needs[0]) {
          if (!ta) {
            ga = matmul_forward(g, bd, false, !tb);  // dA = dC op(B)^T
          } else {  // A stored [K, M]: dA = op(B) dC^T
            Tensor bb = bd;
            if (shared_b) {
              Shape s(g.shape().begin(), g.shape().end() - 2);
              s.push_back(bd.size(0));
              s.push_back(bd.size(1));
              bb = bd.expand(s);
            }
            ga = matmul_forward(bb, g, tb, true);
          }
        }
        if (needs[1]) {
          if (shared_b) {  // sum over the batch: flatten op(A) and dC into rows
            Tensor op_a = ta ? ad.transpose(-1, -2) : ad;
            Tensor a2 = op_a.reshape({-1, op_a.size(-1)});
            Tensor g2 = g.reshape({-1, g.size(-1)});
            gb = tb ? matmul_forward(g2, a2, true, false) : matmul_forward(a2, g2, true, false);
          } else {
            gb = tb ? matmul_forward(g, ad, true, ta) : matmul_forward(ad, g, !ta, false);
          }
        }
        return std::vector<Tensor>{ga, gb};
      });
}

namespace {

// A contiguous bf16 copy of an f32 tensor (round to nearest even), outside autograd.
Tensor to_bf16(const Tensor& t) { return t.detach().to(DType::bf16); }

// x: [rows, in] (f32, detached) and, while a GEMM needs it, its bf16 copy. The forward rounds it
// once for all the products of one linears() call and then drops the copy: the op that made x
// usually keeps it alive for its own backward, so holding a bf16 copy as well would add memory.
// Backward rounds it again on first use; the copy then lives until the last of those products'
// backward has run (the autograd nodes free their closures as they finish).
struct RoundedInput {
  Tensor x, xb;
  const Tensor& bf16() {
    if (!xb.defined()) xb = to_bf16(x);
    return xb;
  }
};

// linear() under MatmulPrecision::bf16 on a RoundedInput: the forward and both backward GEMMs
// take bf16 operands (x and w rounded, and the upstream gradient for dX = dY W and dW = dYᵀ X);
// the bias is added in f32 by the GEMM and db = column sums of the f32 gradient. Saved for
// backward: x and w as they are (f32, shared storage), not bf16 copies.
Tensor linear_bf16(const Tensor& x, const std::shared_ptr<RoundedInput>& in_x, const Tensor& w,
                   const Tensor& b, int64_t rows, const Shape& out_shape) {
  const int64_t in = w.size(1), out = w.size(0);
  Tensor bias = b.defined() ? b.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({rows, out}, DType::f32);
  {
    const Tensor wb = to_bf16(w.detach());
    gemm_bf16(false, true, rows, out, in, in_x->bf16().data<bf16>(), in, wb.data<bf16>(), in, 0.f,
              y.data<float>(), out, bias.defined() ? bias.data<float>() : nullptr);
  }
  return autograd::record(
      "linear", y.reshape(out_shape), {x, w, b},
      [in_x, wd = w.detach(), rows, in, out, x_shape = x.shape()](const Tensor& g_in,
                                                                  const std::vector<bool>& needs) {
        Tensor g = g_in.reshape({rows, out}).contiguous();
        Tensor gb16 = to_bf16(g);
        Tensor gx, gw, gb;
        if (needs[0]) {
          const Tensor wb = to_bf16(wd);
          gx = Tensor::empty({rows, in}, DType::f32);
          gemm_bf16(false, false, rows, in, out, gb16.data<bf16>(), out, wb.data<bf16>(), in, 0.f,
                    gx.data<float>(), in);
          gx = gx.reshape(x_shape);
        }
        if (needs[1]) {
          gw = Tensor::empty({out, in}, DType::f32);
          gemm_bf16(true, false, out, in, rows, gb16.data<bf16>(), out, in_x->bf16().data<bf16>(),
                    in, 0.f, gw.data<float>(), in);
        }
        if (needs[2]) gb = sum(g, {0});
        return std::vector<Tensor>{gx, gw, gb};
      });
}

// linear_bf16 for every (weights[i], biases[i]) on one RoundedInput of x.
std::vector<Tensor> linears_bf16(const Tensor& x, const std::vector<Tensor>& weights,
                                 const std::vector<Tensor>& biases,
                                 const std::vector<Shape>& out_shapes) {
  const int64_t rows = shape_numel(Shape(out_shapes[0].begin(), out_shapes[0].end() - 1));
  auto in_x = std::make_shared<RoundedInput>();
  in_x->x = x.detach().reshape({rows, x.size(-1)}).contiguous();
  std::vector<Tensor> out;
  for (size_t i = 0; i < weights.size(); ++i)
    out.push_back(linear_bf16(x, in_x, weights[i], biases[i], rows, out_shapes[i]));
  in_x->xb = Tensor();
  return out;
}

// The argument checks of linear() (and linear_activation()); returns the output shape.
Shape check_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  MLM_CHECK(x.defined() && w.defined(), ValueError, "[linear] undefined input or weight");
  MLM_CHECK(w.dim() == 2, ShapeError, "[linear] weight must be [out, in], got ", w.str());
  MLM_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), ShapeError, "[linear] input ", x.str(),
            " does not match weight ", w.str());
  MLM_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), ShapeError,
            "[linear] bias ", b.str(), " does not match weight ", w.str());
  // A bf16 weight with f32 input and bias: a weight stored as bf16 (nn::store_weights).
  const bool stored_bf16 = w.dtype() == DType::bf16 && x.dtype() == DType::f32;
  MLM_CHECK((x.dtype() == w.dtype() || stored_bf16) && (!b.defined() || b.dtype() == x.dtype()),
            DTypeError, "[linear] dtypes differ: ", x.str(), ", ", w.str(), ", ", b.str());
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError,
            "[linear] expected f32 or f64, got ", x.str());
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(w.size(0));
  return out_shape;
}

// Whether x's rows are few enough for the bf16-weight GEMV and one of the weights is stored as
// bf16: then the fused bf16-precision forms below give way to separate linear() calls, which
// take the GEMV (it reads the weight once, without rounding x).
bool gemv_of_stored_bf16(const Tensor& x, const std::vector<Tensor>& weights) {
  if (!x.defined() || x.dim() < 1 || x.size(-1) == 0) return false;
  bool any = false;
  for (const Tensor& w : weights) any = any || (w.defined() && w.dtype() == DType::bf16);
  return any && x.numel() / x.size(-1) <= kMaxGemvRows;
}

}  // namespace

// Fused for f32 on the fast path: the bias is written into the output rows first and sgemm
// accumulates onto it (beta = 1), so the bias costs no extra pass; backward is dX = dY W,
// dW = dYᵀ X (two sgemm calls) and db = column sums of dY. Under MatmulPrecision::bf16:
// linear_bf16 above.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  Shape out_shape = check_linear(x, w, b);
  // Rows counted explicitly: reshape({-1, in}) cannot infer them when in == 0.
  const int64_t rows = shape_numel(Shape(out_shape.begin(), out_shape.end() - 1));
  if (w.dtype() == DType::bf16) return linear_bf16_weight(x, w, b, out_shape);
  if (x.dtype() != DType::f32 || use_reference()) {  // composite: the reference path
    Tensor y = matmul(x.reshape({rows, x.size(-1)}), w, false, true);
    if (b.defined()) y = add(y, b);
    return y.reshape(out_shape);
  }
  if (matmul_precision() == MatmulPrecision::bf16) return linears_bf16(x, {w}, {b}, {out_shape})[0];
  const int64_t in = w.size(1), out = w.size(0);
  Tensor x2 = x.detach().reshape({rows, in}).contiguous();
  Tensor wc = w.detach().contiguous();
  Tensor y = Tensor::empty({rows, out}, DType::f32);
  float* yp = y.data<float>();
  float beta = 0.f;
  if (b.defined()) {
    Tensor bc = b.detach().contiguous();
    const float* bp = bc.data<float>();
#pragma omp parallel for schedule(static) if (rows * out > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) std::copy(bp, bp + out, yp + r * out);
    beta = 1.f;
  }
  sgemm(false, true, rows, out, in, 1.f, x2.data<float>(), in, wc.data<float>(), in, beta, yp, out);
  y = y.reshape(out_shape);
  return autograd::record(
      "linear", y, {x, w, b},
      [x2, wc, rows, in, out, x_shape = x.shape()](const Tensor& g_in, const std::vector<bool>& needs) {
        Tensor g = g_in.reshape({rows, out}).contiguous();
        const float* gp = g.data<float>();
        Tensor gx, gw, gb;
        if (needs[0]) {
          gx = Tensor::empty({rows, in}, DType::f32);
          sgemm(false, false, rows, in, out, 1.f, gp, out, wc.data<float>(), in, 0.f,
                gx.data<float>(), in);
          gx = gx.reshape(x_shape);
        }
        if (needs[1]) {
          gw = Tensor::empty({out, in}, DType::f32);
          sgemm(true, false, out, in, rows, 1.f, gp, out, x2.data<float>(), in, 0.f,
                gw.data<float>(), in);
        }
        if (needs[2]) gb = sum(g, {0});
        return std::vector<Tensor>{gx, gw, gb};
      });
}

Tensor linear_activation(const Tensor& x, const Tensor& w, const Tensor& b,
                         Activation activation) {
  const Activation act = activation;
  const bool fuse = act != Activation::none && matmul_precision() == MatmulPrecision::bf16 &&
                    !use_reference() && x.defined() && x.dtype() == DType::f32 &&
                    !autograd::any_requires_grad({x, w, b}) && !gemv_of_stored_bf16(x, {w});
  if (!fuse) return ops::activation(linear(x, w, b), activation);
  const Shape out_shape = check_linear(x, w, b);
  const int64_t in = w.size(1), out = w.size(0);
  const int64_t rows = shape_numel(Shape(out_shape.begin(), out_shape.end() - 1));
  if (in == 0) return ops::activation(linear(x, w, b), activation);
  Tensor xb = to_bf16(x.reshape({rows, in}));
  Tensor wb = to_bf16(w);
  Tensor bias = b.defined() ? b.contiguous() : Tensor();
  Tensor y = Tensor::empty({rows, out}, DType::f32);
  gemm_bf16(false, true, rows, out, in, xb.data<bf16>(), in, wb.data<bf16>(), in, 0.f,
            y.data<float>(), out, bias.defined() ? bias.data<float>() : nullptr, act);
  return y.reshape(out_shape);
}

Tensor mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, Activation activation,
           const Tensor& w2, const Tensor& b2) {
  const Activation act = activation;
  const bool fuse = act != Activation::none && matmul_precision() == MatmulPrecision::bf16 &&
                    !use_reference() && x.defined() && x.dtype() == DType::f32 &&
                    !autograd::any_requires_grad({x, w1, b1, w2, b2}) &&
                    !gemv_of_stored_bf16(x, {w1, w2});
  auto composite = [&] { return linear(ops::activation(linear(x, w1, b1), activation), w2, b2); };
  if (!fuse) return composite();
  const Shape hidden_shape = check_linear(x, w1, b1);
  check_linear(Tensor::empty({0, w1.size(0)}, x.dtype()), w2, b2);  // w2, b2 against the hidden
  Shape out_shape = hidden_shape;
  out_shape.back() = w2.size(0);
  const int64_t in = w1.size(1), hidden = w1.size(0), out = w2.size(0);
  const int64_t rows = shape_numel(Shape(hidden_shape.begin(), hidden_shape.end() - 1));
  if (in == 0 || hidden == 0) return composite();
  Tensor xb = to_bf16(x.reshape({rows, in}));
  Tensor w1b = to_bf16(w1), w2b = to_bf16(w2);
  Tensor b1c = b1.defined() ? b1.contiguous() : Tensor();
  Tensor b2c = b2.defined() ? b2.contiguous() : Tensor();
  Tensor h = Tensor::empty({rows, hidden}, DType::bf16);
  gemm_bf16(false, true, rows, hidden, in, xb.data<bf16>(), in, w1b.data<bf16>(), in,
            h.data<bf16>(), hidden, b1c.defined() ? b1c.data<float>() : nullptr, act);
  xb = Tensor();  // free before the output is allocated
  Tensor y = Tensor::empty({rows, out}, DType::f32);
  gemm_bf16(false, true, rows, out, hidden, h.data<bf16>(), hidden, w2b.data<bf16>(), hidden, 0.f,
            y.data<float>(), out, b2c.defined() ? b2c.data<float>() : nullptr);
  return y.reshape(out_shape);
}

std::vector<Tensor> linears(const Tensor& x, const std::vector<Tensor>& weights,
                            const std::vector<Tensor>& biases) {
  MLM_CHECK(!weights.empty() && weights.size() == biases.size(), ValueError,
            "[linears] needs as many biases (undefined for none) as weights, got ", weights.size(),
            " weights and ", biases.size(), " biases");
  std::vector<Tensor> out;
  const bool shared = matmul_precision() == MatmulPrecision::bf16 && !use_reference() &&
                      x.defined() && x.dtype() == DType::f32 && !gemv_of_stored_bf16(x, weights);
  if (!shared) {
    for (size_t i = 0; i < weights.size(); ++i) out.push_back(linear(x, weights[i], biases[i]));
    return out;
  }
  std::vector<Shape> shapes;
  for (size_t i = 0; i < weights.size(); ++i)
    shapes.push_back(check_linear(x, weights[i], biases[i]));
  out = linears_bf16(x, weights, biases, shapes);
  return out;
}

}  // namespace metalm::ops
