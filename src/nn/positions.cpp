// Position encodings (see include/metalm/nn/positions.h and reference-spec 5.1-5.4).
//
// Precision. The fixed tables (sinusoidal, xPos) are computed in double and rounded once to the
// output dtype. PyTorch builds them in f32, and its f32 table is itself only accurate to about
// p * 2^-24 in the angle p * w (a 1-ulp difference in w, from whichever expf/powf the build
// uses, moves the angle of row p by p ulps of w). So no f32 recipe reproduces "the" PyTorch
// table bit for bit (Sleef on CPU, CUDA's sinf on the GPU that trained the checkpoint); the
// double table is the function they all approximate. Measured against PyTorch 1.13 f32
// (tests/reference/test_ref_positions.cpp): under 1e-6 absolute for positions below 20, 2e-6
// at 40, 4e-5 at 600 and 1.5e-4 at 2100, all on the PyTorch side; against PyTorch f64 our f32
// results agree to f32 rounding (under 4e-7).
//
// The T5 bucket is the exception: it is discrete, and at exact bucket boundaries double and
// PyTorch's f32 truncate differently, so it is evaluated in f32 like PyTorch (see
// relative_position_bucket).
#include "metalm/nn/positions.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/index.h"
#include "metalm/ops/rotary.h"

namespace metalm::nn {
namespace {

constexpr int64_t kParallelMin = 1 << 14;  // table elements; smaller tables use one thread

// An index tensor (i64 or i32) as a contiguous i64 tensor without autograd history.
Tensor as_i64(const Tensor& t, const char* op, const char* what) {
  MLM_CHECK(t.defined(), ValueError, "[", op, "] undefined ", what);
  MLM_CHECK(t.dtype() == DType::i64 || t.dtype() == DType::i32, DTypeError, "[", op, "] ", what,
            " must be i64 or i32, got ", t.str());
  return t.detach().to(DType::i64).contiguous();
}

void check_float_dtype(DType dtype, const char* op) {
  MLM_CHECK(dtype == DType::f32 || dtype == DType::f64, DTypeError, "[", op,
            "] tables are f32 or f64, got ", dtype_name(dtype));
}

// Writes double values into a fresh tensor of dtype (f32 or f64): one rounding.
Tensor from_doubles(const Shape& shape, const std::vector<double>& v, DType dtype) {
  Tensor out = Tensor::empty(shape, dtype);
  const int64_t n = out.numel();
  if (dtype == DType::f64) {
    std::copy(v.begin(), v.begin() + n, out.data<double>());
  } else {
    float* p = out.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(v[i]);
  }
  return out;
}

}  // namespace

// ================================================================== learned

LearnedPositionalEmbedding::LearnedPositionalEmbedding(int64_t num_positions, int64_t dim,
                                                       Generator& gen, int64_t offset_)
    : offset(offset_) {
  MLM_CHECK(num_positions > 0 && dim > 0, ValueError,
            "[positions] table sizes must be positive, got [", num_positions, ", ", dim, "]");
  MLM_CHECK(offset >= 0, ValueError, "[positions] offset must be >= 0, got ", offset);
  weight = register_parameter("weight", gen.normal({num_positions, dim}));
}

Tensor LearnedPositionalEmbedding::forward(int64_t length) const {
  const int64_t n = weight.size(0);
  MLM_CHECK(length >= 0, ValueError, "[positions] length must be >= 0, got ", length);
  MLM_CHECK(length == 0 || offset + length <= n, ValueError, "[positions] position ",
            offset + length - 1, " >= table size ", n, " (length ", length, " from offset ", offset,
            ")");
  // Consecutive rows: a (differentiable) slice of the table instead of a gather.
  return length == 0 ? weight.slice(0, 0, 0) : weight.slice(0, offset, offset + length);
}

Tensor LearnedPositionalEmbedding::forward(const Tensor& positions) const {
  Tensor pos = as_i64(positions, "positions", "positions");
  MLM_CHECK(pos.dim() == 1 || pos.dim() == 2, ShapeError,
            "[positions] positions must be [T] or [B, T], got ", positions.str());
  const int64_t n = weight.size(0);
  const int64_t* p = pos.data<int64_t>();
  for (int64_t i = 0; i < pos.numel(); ++i) {
    MLM_CHECK(p[i] >= 0, ValueError, "[positions] position ", p[i], " < 0");
    MLM_CHECK(p[i] < n, ValueError, "[positions] position ", p[i], " >= table size ", n);
  }
  return ops::embedding(weight, pos);
}

// ================================================================== fairseq sinusoidal

Tensor sinusoidal_embedding(const Tensor& positions, int64_t dim, int64_t padding_idx,
                            DType dtype) {
  Tensor pos = as_i64(positions, "sinusoidal", "positions");
  check_float_dtype(dtype, "sinusoidal");
  // half - 1 divides below: fairseq itself fails (ZeroDivisionError) for dim 2 and 3.
  MLM_CHECK(dim >= 4, ValueError, "[sinusoidal] dim must be >= 4 (half - 1 > 0), got ", dim);
  const int64_t half = dim / 2, m = pos.numel();
  const int64_t* p = pos.data<int64_t>();
  for (int64_t i = 0; i < m; ++i)
    MLM_CHECK(p[i] >= 0, ValueError, "[sinusoidal] position ", p[i], " < 0");
  std::vector<double> w(static_cast<size_t>(half));
  const double step = std::log(10000.0) / static_cast<double>(half - 1);
  for (int64_t k = 0; k < half; ++k) w[k] = std::exp(-static_cast<double>(k) * step);
  // positions: [M] -> table: [M, dim] = [sin(p w) | cos(p w) | 0 if dim is odd]
  std::vector<double> v(static_cast<size_t>(m * dim), 0.0);
#pragma omp parallel for schedule(static) if (m * dim > kParallelMin && !omp_in_parallel())
  for (int64_t r = 0; r < m; ++r) {
    if (p[r] == padding_idx) continue;  // the zero row
    double* row = v.data() + r * dim;
    const double pr = static_cast<double>(p[r]);
    for (int64_t k = 0; k < half; ++k) {
      row[k] = std::sin(pr * w[k]);
      row[half + k] = std::cos(pr * w[k]);
    }
  }
  Shape shape = positions.shape();
  shape.push_back(dim);
  return from_doubles(shape, v, dtype);
}

Tensor sinusoidal_table(int64_t num_positions, int64_t dim, int64_t padding_idx, DType dtype) {
  MLM_CHECK(num_positions >= 0, ValueError, "[sinusoidal] num_positions must be >= 0, got ",
            num_positions);
  return sinusoidal_embedding(Tensor::arange(num_positions), dim, padding_idx, dtype);
}

Tensor make_positions(const Tensor& tokens, int64_t pad_id, int64_t padding_idx) {
  Tensor t = as_i64(tokens, "make_positions", "tokens");
  MLM_CHECK(t.dim() == 2, ShapeError, "[make_positions] tokens must be [B, T], got ", tokens.str());
  const int64_t B = t.size(0), T = t.size(1);
  Tensor out = Tensor::empty({B, T}, DType::i64);
  const int64_t* tp = t.data<int64_t>();
  int64_t* op = out.data<int64_t>();
  // tokens: [B, T] -> positions: [B, T]; a running count of the non-pad tokens per row.
  for (int64_t b = 0; b < B; ++b) {
    int64_t count = 0;
    for (int64_t i = 0; i < T; ++i) {
      const bool real = tp[b * T + i] != pad_id;
      count += real;
      op[b * T + i] = real ? padding_idx + count : padding_idx;
    }
  }
  return out;
}

SinusoidalPositionalEmbedding::SinusoidalPositionalEmbedding(int64_t dim_, int64_t padding_idx_,
                                                             DType dtype_)
    : dim(dim_), padding_idx(padding_idx_), dtype(dtype_) {
  MLM_CHECK(dim >= 4, ValueError, "[sinusoidal] dim must be >= 4 (half - 1 > 0), got ", dim);
  check_float_dtype(dtype, "sinusoidal");
  float_tensor_ = register_buffer("_float_tensor", Tensor::zeros({1}));
}

Tensor SinusoidalPositionalEmbedding::forward(const Tensor& tokens) const {
  return sinusoidal_embedding(make_positions(tokens, padding_idx, padding_idx), dim, padding_idx,
                              dtype);
}

Tensor SinusoidalPositionalEmbedding::forward_step(int64_t current_length) const {
  MLM_CHECK(current_length >= 1, ValueError,
            "[sinusoidal] current_length counts the new token and must be >= 1, got ",
            current_length);
  Tensor pos = Tensor::full({1, 1}, static_cast<double>(padding_idx + current_length), DType::i64);
  return sinusoidal_embedding(pos, dim, padding_idx, dtype);
}

// ================================================================== xPos

int64_t xpos_min_pos(int64_t n) {
  MLM_CHECK(n >= 0, ValueError, "[xpos] position count must be >= 0, got ", n);
  // C++ division truncates toward zero; Python's -(n) // 2 floors: -((n + 1) / 2) for n >= 0.
  return -((n + 1) / 2);
}

XPosTables xpos_tables(int64_t length, int64_t head_dim, int64_t offset, bool downscale,
                       double scale_base, DType dtype) {
  check_float_dtype(dtype, "xpos");
  MLM_CHECK(head_dim > 0 && head_dim % 2 == 0, ValueError,
            "[xpos] head_dim must be even and positive, got ", head_dim);
  MLM_CHECK(length >= 0 && offset >= 0, ValueError, "[xpos] length and offset must be >= 0, got ",
            length, " and ", offset);
  MLM_CHECK(std::isfinite(scale_base) && scale_base > 0, ValueError,
            "[xpos] scale_base must be finite and > 0, got ", scale_base);
  const int64_t half = head_dim / 2, N = length + offset, min_pos = xpos_min_pos(N);
  const double D = static_cast<double>(head_dim);
  std::vector<double> zeta(static_cast<size_t>(half)), theta(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    zeta[i] = (2.0 * static_cast<double>(i) + 0.4 * D) / (1.4 * D);
    theta[i] = std::pow(10000.0, -static_cast<double>(i) / static_cast<double>(half));
  }
  // Rows n = offset .. N-1 (the last `length` of the N rows) -> cos, sin: [length, half].
  std::vector<double> c(static_cast<size_t>(length * half)), s(c.size());
#pragma omp parallel for schedule(static) if (length * half > kParallelMin && !omp_in_parallel())
  for (int64_t r = 0; r < length; ++r) {
    const int64_t n = offset + r;
    const double centred = static_cast<double>(min_pos + n) / scale_base;
    const double angle_pos = static_cast<double>(n);  // absolute, not centred
    for (int64_t i = 0; i < half; ++i) {
      double scale = std::pow(zeta[i], centred);
      if (downscale) scale = 1.0 / scale;
      const double a = angle_pos * theta[i];
      c[r * half + i] = std::cos(a) * scale;
      s[r * half + i] = std::sin(a) * scale;
    }
  }
  return {from_doubles({length, half}, c, dtype), from_doubles({length, half}, s, dtype)};
}

Tensor xpos(const Tensor& x, int64_t offset, bool downscale, double scale_base) {
  MLM_CHECK(x.defined(), ValueError, "[xpos] undefined input");
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError,
            "[xpos] expected f32 or f64, got ", x.str());
  MLM_CHECK(x.dim() >= 2, ShapeError, "[xpos] expected x of shape [B, H, L, D], got ", x.str());
  MLM_CHECK(x.size(-1) % 2 == 0 && x.size(-1) > 0, ShapeError,
            "[xpos] head dim must be even and positive, got ", x.str());
  XPosTables t = xpos_tables(x.size(-2), x.size(-1), offset, downscale, scale_base, x.dtype());
  return ops::rotary(x, t.cos, t.sin);
}

XPos::XPos(int64_t head_dim_, double scale_base_) : head_dim(head_dim_), scale_base(scale_base_) {
  MLM_CHECK(head_dim > 0 && head_dim % 2 == 0, ValueError,
            "[xpos] head_dim must be even and positive, got ", head_dim);
  MLM_CHECK(std::isfinite(scale_base) && scale_base > 0, ValueError,
            "[xpos] scale_base must be finite and > 0, got ", scale_base);
  // zeta in f32 with PyTorch's operations ((arange(0, D, 2) + 0.4 D) / (1.4 D), an f32 add and
  // an f32 divide), so that a saved state dict equals TorchScale's bit for bit.
  const int64_t half = head_dim / 2;
  Tensor z = Tensor::empty({half});
  float* zp = z.data<float>();
  const float a = static_cast<float>(0.4 * static_cast<double>(head_dim));
  const float b = static_cast<float>(1.4 * static_cast<double>(head_dim));
  for (int64_t i = 0; i < half; ++i) zp[i] = (static_cast<float>(2 * i) + a) / b;
  scale = register_buffer("scale", z);
}

Tensor XPos::forward(const Tensor& x, int64_t offset, bool downscale) const {
  MLM_CHECK(x.defined() && x.dim() >= 2 && x.size(-1) == head_dim, ShapeError,
            "[xpos] expected head dim ", head_dim, ", got ",
            x.defined() ? x.str() : std::string("undefined"));
  return xpos(x, offset, downscale, scale_base);
}

// ================================================================== T5 relative bias

namespace {

void check_buckets(int64_t num_buckets, int64_t max_distance) {
  MLM_CHECK(num_buckets >= 4, ValueError, "[relative_position_bias] num_buckets must be >= 4 ",
            "(two directions, max_exact = num_buckets / 4 >= 1), got ", num_buckets);
  const int64_t max_exact = num_buckets / 2 / 2;
  MLM_CHECK(max_distance > max_exact, ValueError, "[relative_position_bias] max_distance ",
            max_distance, " must exceed max_exact = num_buckets / 4 = ", max_exact);
}

// The bucket of n = q_pos - k_pos, arguments already checked.
int64_t bucket_of(int64_t n, int64_t num_buckets, int64_t max_distance) {
  const int64_t nb = num_buckets / 2;
  const int64_t ret = n < 0 ? nb : 0;
  // |n| saturates instead of overflowing for INT64_MIN; any such n is in the last bucket.
  const int64_t a = n < 0 ? (n == std::numeric_limits<int64_t>::min() ? -(n + 1) : -n) : n;
  const int64_t max_exact = nb / 2;
  if (a < max_exact) return ret + a;  // the log branch only here: ln(0) would be -inf
  // PyTorch (f32 tensors, Python-float scalars cast to f32):
  //   log(n.float() / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact)
  const float ratio = static_cast<float>(a) / static_cast<float>(max_exact);
  const float denom = static_cast<float>(
      std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float v = std::log(ratio) / denom * static_cast<float>(nb - max_exact);
  // v >= 0 here; clamp before the conversion so a huge v cannot overflow int64.
  const int64_t large = max_exact + static_cast<int64_t>(std::min(v, static_cast<float>(nb)));
  return ret + std::min(nb - 1, large);
}

// The bucket of each diagonal d = i - j + klen - 1 of a [qlen, klen] grid whose query rows are
// at step .. step+qlen-1: n = step + i - j = step + d - (klen - 1). n takes qlen + klen - 1
// values, so each bucket is evaluated once instead of once per (i, j).
std::vector<int64_t> diagonal_buckets(int64_t qlen, int64_t klen, int64_t step, int64_t num_buckets,
                                      int64_t max_distance) {
  const int64_t W = std::max<int64_t>(qlen + klen - 1, 0), n_lo = step - (klen - 1);
  std::vector<int64_t> ids(static_cast<size_t>(W));
  for (int64_t d = 0; d < W; ++d) ids[d] = bucket_of(n_lo + d, num_buckets, max_distance);
  return ids;
}

}  // namespace

int64_t relative_position_bucket(int64_t n, int64_t num_buckets, int64_t max_distance) {
  check_buckets(num_buckets, max_distance);
  return bucket_of(n, num_buckets, max_distance);
}

Tensor relative_position_buckets(int64_t qlen, int64_t klen, int64_t step, int64_t num_buckets,
                                 int64_t max_distance) {
  check_buckets(num_buckets, max_distance);
  MLM_CHECK(qlen >= 0 && klen >= 0 && step >= 0, ValueError,
            "[relative_position_bias] qlen, klen and step must be >= 0, got ", qlen, ", ", klen,
            ", ", step);
  std::vector<int64_t> by_d = diagonal_buckets(qlen, klen, step, num_buckets, max_distance);
  // -> buckets: [qlen, klen]
  Tensor out = Tensor::empty({qlen, klen}, DType::i64);
  int64_t* o = out.data<int64_t>();
  for (int64_t i = 0; i < qlen; ++i)
    for (int64_t j = 0; j < klen; ++j) o[i * klen + j] = by_d[i - j + klen - 1];
  return out;
}

RelativePositionBias::RelativePositionBias(int64_t num_buckets_, int64_t max_distance_,
                                           int64_t num_heads_, Generator& gen)
    : num_buckets(num_buckets_), max_distance(max_distance_), num_heads(num_heads_) {
  check_buckets(num_buckets, max_distance);
  MLM_CHECK(num_heads > 0, ValueError, "[relative_position_bias] num_heads must be > 0, got ",
            num_heads);
  relative_attention_bias = register_module(
      "relative_attention_bias", std::make_shared<Embedding>(num_buckets, num_heads, -1, gen));
}

namespace {

// The bias lookup as one op: table: [nb, H], ids: the bucket of each diagonal (W = qlen + klen - 1
// entries) -> bias: [1, H, qlen, klen], bias[0, h, i, j] = table[ids[i - j + klen - 1], h].
// Hand-written (forward and backward) because the bias is the largest tensor a position encoding
// makes (H T^2): a gather of table rows followed by a permuted copy took 1.7 s at H 32, T 2048
// (one thread), this one write pass 62 ms. Backward: each table entry is a sum of up to H T^2 / nb
// upstream gradients, so it accumulates in double (per diagonal, then per bucket) and rounds
// once; diagonals are summed one head per thread in (i, j) order, so the result does not depend
// on the thread count. Private to this file: the bias module is its only user (move it to ops/
// if another appears).

// u: [H, W] -> out: [H, qlen, klen], out[h, i, j] = u[h, i - j + klen - 1], W = qlen + klen - 1.
template <typename T>
void diagonals_to_dense(const T* u, T* out, int64_t H, int64_t qlen, int64_t klen) {
  const int64_t W = qlen + klen - 1;
#pragma omp parallel for collapse(2) \
    schedule(static) if (H * qlen * klen > kParallelMin && !omp_in_parallel())
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < qlen; ++i) {
      const T* src = u + h * W + i + klen - 1;  // the diagonal of (i, j = 0)
      T* dst = out + (h * qlen + i) * klen;
      for (int64_t j = 0; j < klen; ++j) dst[j] = src[-j];
    }
}

// g: [H, qlen, klen] -> gu: [H, W] (zeroed by the caller), gu[h, d] += g[h, i, j] over the
// diagonal i - j + klen - 1 = d. One head per thread, (i, j) order within it.
template <typename T>
void dense_to_diagonals(const T* g, double* gu, int64_t H, int64_t qlen, int64_t klen) {
  const int64_t W = qlen + klen - 1;
#pragma omp parallel for schedule(static) if (H * qlen * klen > kParallelMin && !omp_in_parallel())
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < qlen; ++i) {
      double* dst = gu + h * W + i + klen - 1;
      const T* src = g + (h * qlen + i) * klen;
      for (int64_t j = 0; j < klen; ++j) dst[-j] += static_cast<double>(src[j]);
    }
}

template <typename T>
void bias_forward(const T* table, const std::vector<int64_t>& ids, T* out, int64_t H, int64_t qlen,
                  int64_t klen) {
  const int64_t W = qlen + klen - 1;
  std::vector<T> u(static_cast<size_t>(H * W));  // [H, W]
  for (int64_t h = 0; h < H; ++h)
    for (int64_t d = 0; d < W; ++d) u[h * W + d] = table[ids[d] * H + h];
  diagonals_to_dense(u.data(), out, H, qlen, klen);
}

// g: [H, qlen, klen] -> gtable: [nb, H] (fresh).
template <typename T>
void bias_backward(const T* g, const std::vector<int64_t>& ids, T* gtable, int64_t nb, int64_t H,
                   int64_t qlen, int64_t klen) {
  const int64_t W = qlen + klen - 1;
  std::vector<double> gu(static_cast<size_t>(H * W), 0.0), acc(static_cast<size_t>(nb * H), 0.0);
  dense_to_diagonals(g, gu.data(), H, qlen, klen);
  for (int64_t d = 0; d < W; ++d)
    for (int64_t h = 0; h < H; ++h) acc[ids[d] * H + h] += gu[h * W + d];
  for (int64_t k = 0; k < nb * H; ++k) gtable[k] = static_cast<T>(acc[k]);
}

Tensor bias_lookup(const Tensor& table, const std::vector<int64_t>& ids, int64_t qlen,
                   int64_t klen) {
  const int64_t nb = table.size(0), H = table.size(1);
  Tensor tc = table.detach().contiguous();
  Tensor out = Tensor::empty({1, H, qlen, klen}, table.dtype());
  if (table.dtype() == DType::f32)
    bias_forward(tc.data<float>(), ids, out.data<float>(), H, qlen, klen);
  else
    bias_forward(tc.data<double>(), ids, out.data<double>(), H, qlen, klen);
  auto backward = [ids, nb, H, qlen, klen](const Tensor& g, const std::vector<bool>&) {
    Tensor gc = g.contiguous();
    Tensor gt = Tensor::empty({nb, H}, g.dtype());
    if (g.dtype() == DType::f32)
      bias_backward(gc.data<float>(), ids, gt.data<float>(), nb, H, qlen, klen);
    else
      bias_backward(gc.data<double>(), ids, gt.data<double>(), nb, H, qlen, klen);
    return std::vector<Tensor>{gt};
  };
  return autograd::record("relative_position_bias", out, {table}, backward);
}

}  // namespace

Tensor RelativePositionBias::diagonals(int64_t qlen, int64_t klen, int64_t step) const {
  MLM_CHECK(qlen >= 1 && klen >= 1 && step >= 0, ValueError,
            "[relative_position_bias] qlen and klen must be >= 1 and step >= 0, got ", qlen, ", ",
            klen, ", ", step);
  const int64_t W = qlen + klen - 1;
  std::vector<int64_t> ids = diagonal_buckets(qlen, klen, step, num_buckets, max_distance);
  // weight: [nb, H] gathered at ids: [W] -> [W, H] -> [H, W]
  Tensor rows =
      ops::embedding(relative_attention_bias->weight, Tensor::from_vector<int64_t>({W}, ids));
  return rows.transpose(0, 1);
}

Tensor RelativePositionBias::forward(int64_t qlen, int64_t klen, int64_t step) const {
  MLM_CHECK(qlen >= 0 && klen >= 0 && step >= 0, ValueError,
            "[relative_position_bias] qlen, klen and step must be >= 0, got ", qlen, ", ", klen,
            ", ", step);
  const Tensor& stored = relative_attention_bias->weight;  // bf16 after nn::store_weights
  const Tensor table = stored.dtype() == DType::bf16 ? stored.to(DType::f32) : stored;
  if (qlen == 0 || klen == 0) return Tensor::zeros({1, num_heads, qlen, klen}, table.dtype());
  MLM_CHECK(table.dtype() == DType::f32 || table.dtype() == DType::f64, DTypeError,
            "[relative_position_bias] table must be f32 or f64, got ", table.str());
  return bias_lookup(table, diagonal_buckets(qlen, klen, step, num_buckets, max_distance), qlen,
                     klen);
}

Tensor RelativePositionBias::forward_step(int64_t klen) const {
  MLM_CHECK(klen >= 1, ValueError, "[relative_position_bias] klen must be >= 1, got ", klen);
  return forward(1, klen, klen - 1);
}

}  // namespace metalm::nn
