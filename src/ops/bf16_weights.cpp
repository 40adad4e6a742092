// linear() with a weight stored as bf16 (nn::store_weights): half the bytes to stream, widened to
// f32 in registers. Decoding reads every weight once per token for one or a few rows, so there
// the product is a hand-written GEMV that widens each register-sized chunk of a weight row as
// it arrives and multiplies it into every input row at once (the weight is read once per call,
// whatever the row count up to kMaxGemvRows); the arithmetic is f32. Above that (a prompt's
// forward), and whenever a gradient is wanted, linear() runs on a widened copy, except that
// under MatmulPrecision::bf16 the bf16 GEMM takes the weight as it is.
#include "ops/bf16_weights.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/matmul.h"
#include "ops/attention_kernels.h"

namespace metalm::ops {
namespace {

using attn::kVecBytes;
using attn::lane_sum;
constexpr int64_t kLanes = kVecBytes / 4;  // f32 lanes of one register
constexpr int64_t kChunk = 2 * kLanes;     // bf16 weights of one register
typedef float VF __attribute__((vector_size(kVecBytes)));
typedef uint32_t VU __attribute__((vector_size(kVecBytes)));

inline VF as_floats(VU u) {
  VF f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The widening: one register of kChunk bf16 weights, read as kLanes 32-bit words, holds the
// even elements in the low halves and the odd ones in the high halves; a bf16 is the upper
// half of its f32, so `word << 16` is the even elements exactly and `word & 0xffff0000` the odd
// ones: two integer ops a register (a zero-extending unpack would need a shuffle and a shift
// per half register). The input rows are permuted to match once per call (permute_rows): per
// chunk, its even elements, then its odd ones.
static_assert(std::endian::native == std::endian::little,
              "the widening reads element 2k in the low half of word k");
void permute_rows(int64_t rows, int64_t in, const float* x, float* xp) {
  const int64_t whole = in / kChunk * kChunk;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < whole; c += kChunk)
      for (int64_t k = 0; k < kLanes; ++k) {
        xp[r * whole + c + k] = x[r * in + c + 2 * k];
        xp[r * whole + c + kLanes + k] = x[r * in + c + 2 * k + 1];
      }
}

// y[r, o + j] = bias + sum_i x[r, i] w[o + j, i] for r < R, j < O, in registers: each chunk of
// the O weight rows is loaded and widened once for all R rows. At least 8 independent FMA chains
// hide the FMA latency: one accumulator per (row, output) when there are 8 of them, else the even
// and odd elements in two.
template <int R, int O>
inline void gemv_tile(int64_t o, int64_t in, const float* x, const float* xp, const uint16_t* w,
                      const float* bias, float* y, int64_t ldy) {
  constexpr bool kSplit = R * O < 8;
  constexpr int kParts = kSplit ? 2 : 1;
  const int64_t whole = in / kChunk * kChunk;
  VF acc[O][R][kParts];
#pragma GCC unroll 8
  for (int j = 0; j < O; ++j)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int p = 0; p < kParts; ++p) acc[j][r][p] = VF{};
  for (int64_t c = 0; c < whole; c += kChunk) {
    VF lo[O], hi[O];
#pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      VU u;
      std::memcpy(&u, w + (o + j) * in + c, sizeof u);
      lo[j] = as_floats(u << 16);
      hi[j] = as_floats(u & 0xffff0000u);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      VF xe, xo;
      std::memcpy(&xe, xp + r * whole + c, sizeof xe);
      std::memcpy(&xo, xp + r * whole + c + kLanes, sizeof xo);
#pragma GCC unroll 8
      for (int j = 0; j < O; ++j) {
        acc[j][r][0] += xe * lo[j];
        acc[j][r][kParts - 1] += xo * hi[j];
      }
    }
  }
  for (int j = 0; j < O; ++j) {
    const uint16_t* wr = w + (o + j) * in;
    for (int r = 0; r < R; ++r) {
      float s = lane_sum(kSplit ? acc[j][r][0] + acc[j][r][kParts - 1] : acc[j][r][0]);
      for (int64_t i = whole; i < in; ++i) s += x[r * in + i] * bf16_to_f32(bf16{wr[i]});
      y[r * ldy + o + j] = s + (bias ? bias[o + j] : 0.f);
    }
  }
}

// Outputs a tile: 4 for one or two rows, else 2 (8 to 16 accumulators, x loaded once for 2).
constexpr int outputs_per_tile(int rows) { return rows <= 2 ? 4 : 2; }

template <int R>
void gemv_rows(int64_t out, int64_t in, const float* x, const float* xp, const uint16_t* w,
               const float* bias, float* y) {
  constexpr int O = outputs_per_tile(R);
  constexpr int64_t kBlock = 16;  // outputs per work item (a multiple of O)
  const int64_t blocks = (out + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (out * in >= (1 << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t end = std::min(out, (blk + 1) * kBlock);
    int64_t o = blk * kBlock;
    for (; o + O <= end; o += O) gemv_tile<R, O>(o, in, x, xp, w, bias, y, out);
    for (; o < end; ++o) gemv_tile<R, 1>(o, in, x, xp, w, bias, y, out);
  }
}

void gemv(int64_t rows, int64_t out, int64_t in, const float* x, const uint16_t* w,
          const float* bias, float* y) {
  std::vector<float> permuted(static_cast<size_t>(rows * (in / kChunk * kChunk)));
  permute_rows(rows, in, x, permuted.data());
  const float* xp = permuted.data();
  switch (rows) {
    case 1: return gemv_rows<1>(out, in, x, xp, w, bias, y);
    case 2: return gemv_rows<2>(out, in, x, xp, w, bias, y);
    case 3: return gemv_rows<3>(out, in, x, xp, w, bias, y);
    case 4: return gemv_rows<4>(out, in, x, xp, w, bias, y);
    case 5: return gemv_rows<5>(out, in, x, xp, w, bias, y);
    case 6: return gemv_rows<6>(out, in, x, xp, w, bias, y);
    case 7: return gemv_rows<7>(out, in, x, xp, w, bias, y);
    case 8: return gemv_rows<8>(out, in, x, xp, w, bias, y);
    default: MLM_CHECK(false, Error, "[linear] bf16-weight GEMV of ", rows, " rows");
  }
}

}  // namespace

Tensor linear_bf16_weight(const Tensor& x, const Tensor& w, const Tensor& b,
                          const Shape& out_shape) {
  MLM_CHECK(!w.requires_grad(), ValueError,
            "[linear] a bf16-stored weight is for inference and cannot require grad");
  const int64_t in = w.size(1), out = w.size(0);
  const int64_t rows = shape_numel(Shape(out_shape.begin(), out_shape.end() - 1));
  const bool inference = !autograd::any_requires_grad({x, b}) && !use_reference();
  if (!inference || rows == 0 ||
      (rows > kMaxGemvRows && matmul_precision() == MatmulPrecision::f32)) {
    // linear() itself on the exact f32 copy: its reference path, its backward (gradients reach
    // x and the bias: an encoder trained under a bf16-stored decoder, say), its f32 GEMM.
    return linear(x, w.detach().to(DType::f32), b);
  }
  Tensor x2 = x.detach().reshape({rows, in}).contiguous();
  Tensor wc = w.detach().contiguous();
  Tensor bc = b.defined() ? b.detach().contiguous() : Tensor();
  const float* bp = bc.defined() ? bc.data<float>() : nullptr;
  Tensor y = Tensor::empty({rows, out}, DType::f32);
  if (rows <= kMaxGemvRows) {
    gemv(rows, out, in, x2.data<float>(), reinterpret_cast<const uint16_t*>(wc.data<bf16>()), bp,
         y.data<float>());
  } else {  // MatmulPrecision::bf16: the bf16 GEMM takes the weight as it is stored
    const Tensor xb = x2.to(DType::bf16);
    gemm_bf16(false, true, rows, out, in, xb.data<bf16>(), in, wc.data<bf16>(), in, 0.f,
              y.data<float>(), out, bp);
  }
  return y.reshape(out_shape);
}

}  // namespace metalm::ops
