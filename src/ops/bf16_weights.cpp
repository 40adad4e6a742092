// linear() with a weight stored as bf16 (nn::store_weights): half the bytes to stream, widened to
// f32 in registers. Decoding reads every weight once per token for one or a few rows, so there
// the product is a hand-written GEMV that widens each 16-element chunk of a weight row as it
// arrives and multiplies it into every input row at once (the weight is read once per call,
// whatever the row count up to kMaxGemvRows); the arithmetic is f32. Above that (a prompt's
// forward) the weight is widened into a temporary once and the f32 GEMM runs, or, under
// MatmulPrecision::bf16, the bf16 GEMM takes it as it is.
#include "ops/bf16_weights.h"

#include <cstring>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/reduce.h"
#include "ops/attention_kernels.h"

namespace metalm::ops {
namespace {

using attn::kVecBytes;
constexpr int64_t kLanes = kVecBytes / 4;  // f32 lanes of one register
typedef float VF __attribute__((vector_size(kVecBytes)));
typedef uint32_t VU32 __attribute__((vector_size(kVecBytes)));
typedef uint16_t VU16 __attribute__((vector_size(kVecBytes / 2)));

// kLanes bf16 values from p, exactly as f32 (a bf16 is the upper half of an f32).
inline VF widen(const uint16_t* p) {
  VU16 h;
  std::memcpy(&h, p, sizeof h);
  const VU32 u = __builtin_convertvector(h, VU32) << 16;
  VF f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float lane_sum(VF v) {
  float s = 0;
  for (int64_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// y[r, o] = bias[o] + sum_i x[r, i] w[o, i] for r < R and the O outputs from o: R x O
// accumulators in registers; each chunk of the O weight rows is loaded and widened once.
template <int R, int O>
inline void gemv_tile(int64_t o, int64_t in, const float* x, int64_t ldx, const uint16_t* w,
                      const float* bias, float* y, int64_t ldy) {
  VF acc[O][R];
#pragma GCC unroll 8
  for (int j = 0; j < O; ++j)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[j][r] = VF{};
  const int64_t whole = in / kLanes * kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    VF wv[O];
#pragma GCC unroll 8
    for (int j = 0; j < O; ++j) wv[j] = widen(w + (o + j) * in + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      VF xv;
      std::memcpy(&xv, x + r * ldx + i, sizeof xv);
#pragma GCC unroll 8
      for (int j = 0; j < O; ++j) acc[j][r] += xv * wv[j];
    }
  }
  for (int j = 0; j < O; ++j) {
    const uint16_t* wr = w + (o + j) * in;
    for (int r = 0; r < R; ++r) {
      float s = lane_sum(acc[j][r]);
      for (int64_t i = whole; i < in; ++i) s += x[r * ldx + i] * bf16_to_f32(bf16{wr[i]});
      y[r * ldy + o + j] = s + (bias ? bias[o + j] : 0.f);
    }
  }
}

template <int R>
void gemv_rows(int64_t out, int64_t in, const float* x, const uint16_t* w, const float* bias,
               float* y) {
  constexpr int64_t kBlock = 16;  // outputs per work item (a multiple of the tile's 2)
  const int64_t blocks = (out + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (out * in >= (1 << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t end = std::min(out, (blk + 1) * kBlock);
    int64_t o = blk * kBlock;
    for (; o + 2 <= end; o += 2) gemv_tile<R, 2>(o, in, x, in, w, bias, y, out);
    if (o < end) gemv_tile<R, 1>(o, in, x, in, w, bias, y, out);
  }
}

void gemv(int64_t rows, int64_t out, int64_t in, const float* x, const uint16_t* w,
          const float* bias, float* y) {
  switch (rows) {
    case 1: return gemv_rows<1>(out, in, x, w, bias, y);
    case 2: return gemv_rows<2>(out, in, x, w, bias, y);
    case 3: return gemv_rows<3>(out, in, x, w, bias, y);
    case 4: return gemv_rows<4>(out, in, x, w, bias, y);
    case 5: return gemv_rows<5>(out, in, x, w, bias, y);
    case 6: return gemv_rows<6>(out, in, x, w, bias, y);
    case 7: return gemv_rows<7>(out, in, x, w, bias, y);
    case 8: return gemv_rows<8>(out, in, x, w, bias, y);
    default: MLM_CHECK(false, Error, "[linear] bf16-weight GEMV of ", rows, " rows");
  }
}

// The f32 copy of a contiguous bf16 matrix (exact), outside autograd.
Tensor widened(const Tensor& w) { return w.detach().to(DType::f32); }

}  // namespace

Tensor linear_bf16_weight(const Tensor& x, const Tensor& w, const Tensor& b,
                          const Shape& out_shape) {
  MLM_CHECK(!w.requires_grad(), ValueError,
            "[linear] a bf16-stored weight is for inference and cannot require grad");
  const int64_t in = w.size(1), out = w.size(0);
  const int64_t rows = shape_numel(Shape(out_shape.begin(), out_shape.end() - 1));
  if (use_reference()) {  // the plain path on the exact f32 values
    Tensor y = matmul(x.reshape({rows, in}), widened(w), false, true);
    if (b.defined()) y = add(y, b);
    return y.reshape(out_shape);
  }
  Tensor x2 = x.detach().reshape({rows, in}).contiguous();
  Tensor wc = w.detach().contiguous();
  Tensor bc = b.defined() ? b.detach().contiguous() : Tensor();
  const float* bp = bc.defined() ? bc.data<float>() : nullptr;
  Tensor y = Tensor::empty({rows, out}, DType::f32);
  float* yp = y.data<float>();
  if (rows == 0) {
  } else if (rows <= kMaxGemvRows) {
    gemv(rows, out, in, x2.data<float>(), reinterpret_cast<const uint16_t*>(wc.data<bf16>()), bp,
         yp);
  } else if (matmul_precision() == MatmulPrecision::bf16) {
    const Tensor xb = x2.to(DType::bf16);
    gemm_bf16(false, true, rows, out, in, xb.data<bf16>(), in, wc.data<bf16>(), in, 0.f, yp, out,
              bp);
  } else {
    float beta = 0.f;
    if (bp) {
#pragma omp parallel for schedule(static) if (rows * out > (1 << 16))
      for (int64_t r = 0; r < rows; ++r) std::copy(bp, bp + out, yp + r * out);
      beta = 1.f;
    }
    const Tensor wf = widened(wc);
    sgemm(false, true, rows, out, in, 1.f, x2.data<float>(), in, wf.data<float>(), in, beta, yp,
          out);
  }
  // Gradients reach x and the bias (an encoder trained under a bf16-stored decoder, say).
  return autograd::record(
      "linear", y.reshape(out_shape), {x, w, b},
      [wc, rows, in, out, x_shape = x.shape()](const Tensor& g_in, const std::vector<bool>& needs) {
        Tensor g = g_in.reshape({rows, out}).contiguous();
        Tensor gx, gb;
        if (needs[0]) {
          const Tensor wf = widened(wc);
          gx = Tensor::empty({rows, in}, DType::f32);
          sgemm(false, false, rows, in, out, 1.f, g.data<float>(), out, wf.data<float>(), in, 0.f,
                gx.data<float>(), in);
          gx = gx.reshape(x_shape);
        }
        if (needs[2]) gb = sum(g, {0});
        return std::vector<Tensor>{gx, Tensor(), gb};
      });
}

}  // namespace metalm::ops
