// The attention op (DESIGN D5): softmax((q * scale) k^T + mask + bias) v.
//
// Hand-written (DESIGN D1): oneDNN has no attention primitive that takes our mask description
// (causal with an offset, prefix, packed segments, key padding, an additive bias), and the point
// of the op is the fusion: the tiled online-softmax kernel never keeps a Tq x Tk matrix, so
// memory is linear in T, and it skips tiles that the mask hides entirely (half of a causal
// matrix).
//
// Two paths with one meaning:
// - attention_reference (attention_reference.cpp): the spec, dense f64 scores. Test oracle only.
//   Both paths share attention_spec.h: the argument checks, MaskSpec and DropoutSpec.
// - attention (this file): FlashAttention-2-style tiles of 64 queries x 64 keys with a running
//   max and sum per query row. Forward saves only the output and the per-row logsumexp;
//   backward recomputes each tile's probabilities from them. f32 and f64 share the templated
//   code.
//
// A query row with no visible key outputs zeros (and gets zero gradients), where PyTorch would
// produce NaN (reference-spec 1.3 [quirk]).
//
// Dropout of the probabilities (training) uses counter-based keep decisions (DropoutSpec), so
// backward regenerates the mask of each tile instead of storing a Tq x Tk one.
#include "metalm/ops/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/matmul.h"
#include "ops/attention_kernels.h"
#include "ops/attention_spec.h"
#include "ops/vecmath.h"

namespace metalm::ops {
namespace {

using attn::DropoutSpec;
using attn::Geometry;
using attn::kVec;
using attn::MaskSpec;
using attn::round_up;
using attn::tile_gemm;

constexpr int64_t kBlockQ = 64;  // query rows per tile
constexpr int64_t kBlockK = 64;  // keys per tile (also the row stride of score tiles)
// Below this many multiply-adds (B H Tq Tk D, an upper bound) one thread does the whole op:
// waking the pool costs a few microseconds. Measured on decoding steps (one query row, where a
// task's fixed costs dominate its multiply-adds): batch 8 x 6 heads x 200 keys x 64 (614K)
// took 236 us on one thread and did not split at the earlier bound of 2^23; a batch-1 step
// (77K) takes 18 us and stays on one thread.
constexpr int64_t kParallelMacs = int64_t{1} << 18;

// Whether to use the thread pool: enough tasks and work, and not already inside a parallel
// region (DESIGN D6: never nest).
bool use_pool(int64_t ntasks, const Geometry& g) {
  return ntasks > 1 && g.B * g.H * g.Tq * g.Tk * g.D >= kParallelMacs && !omp_in_parallel();
}

// ---------------------------------------------------------------- fast path: layouts

// Rows of a 4-D tensor whose last dim is contiguous: row (i0, i1, i2) starts at
// base + i0 * s0 + i1 * s1 + i2 * s2. Covers contiguous tensors, [B, T, H, D] buffers viewed
// as [B, H, T, D], and stride-0 (expanded) dims such as a key shared by several heads.
template <typename T>
struct Rows {
  T* base = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0;
  T* row(int64_t i0, int64_t i1, int64_t i2) const { return base + i0 * s0 + i1 * s1 + i2 * s2; }
};

// x itself if its last dim is contiguous, else a contiguous copy (detached either way).
Tensor with_contiguous_rows(const Tensor& x) {
  Tensor d = x.detach();
  if (d.size(-1) <= 1 || d.strides().back() == 1) return d;
  return d.contiguous();
}

template <typename T>
Rows<T> rows_of(const Tensor& x) {  // x: 4-D with a contiguous last dim; T may be const
  return Rows<T>{x.data<std::remove_const_t<T>>(), x.strides()[0], x.strides()[1],
                 x.strides()[2]};
}

// An uninitialized tensor of x's shape laid out in x's memory order over the first three dims
// (the last dim stays innermost). A q that is a [B, T, H, D] buffer viewed as [B, H, T, D] gets
// its output and gradient in that layout, so the caller's inverse permute + reshape to
// [B, T, H * D] is free.
Tensor empty_like_layout(const Tensor& x) {
  std::vector<int64_t> order = {0, 1, 2};
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return x.strides()[a] > x.strides()[b]; });
  Shape stored = {x.size(order[0]), x.size(order[1]), x.size(order[2]), x.size(3)};
  std::vector<int64_t> inverse(4, 3);
  for (int64_t i = 0; i < 3; ++i) inverse[order[i]] = i;
  return Tensor::empty(stored, x.dtype()).permute(inverse);
}

// ---------------------------------------------------------------- fast path: tile plan

enum class TileKind { skip, dense, masked };  // masked: apply MaskSpec::hide_row per row

// Classifies a tile (query block x key block) from per-block summaries: padded-key counts and
// segment id ranges. Used identically by forward and backward, so both visit the same tiles.
struct TilePlan {
  const MaskSpec* mask = nullptr;
  int64_t Tq = 0, Tk = 0, nqb = 0, nkb = 0;
  std::vector<int64_t> pad_count;           // [B, nkb] padded keys per key block
  std::vector<int32_t> kseg_lo, kseg_hi;    // [B, nkb] segment id range of the keys
  std::vector<int32_t> qseg_lo, qseg_hi;    // [B, nqb] segment id range of the queries

  TilePlan(const MaskSpec& m, const Geometry& g)
      : mask(&m), Tq(g.Tq), Tk(g.Tk), nqb((g.Tq + kBlockQ - 1) / kBlockQ),
        nkb((g.Tk + kBlockK - 1) / kBlockK) {
    if (m.key_padding) {
      pad_count.assign(static_cast<size_t>(g.B * nkb), 0);
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t j = 0; j < Tk; ++j)
          pad_count[b * nkb + j / kBlockK] += m.key_padding[b * Tk + j] != 0;
    }
    if (m.segment_ids) {
      auto ranges = [&](int64_t nblocks, int64_t block, int64_t n, int64_t first,
                        std::vector<int32_t>& lo, std::vector<int32_t>& hi) {
        lo.assign(static_cast<size_t>(g.B * nblocks), std::numeric_limits<int32_t>::max());
        hi.assign(static_cast<size_t>(g.B * nblocks), std::numeric_limits<int32_t>::min());
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t t = 0; t < n; ++t) {
            const int32_t s = m.segment_ids[b * Tk + first + t];
            int32_t& l = lo[b * nblocks + t / block];
            int32_t& h = hi[b * nblocks + t / block];
            l = std::min(l, s);
            h = std::max(h, s);
          }
      };
      ranges(nkb, kBlockK, Tk, 0, kseg_lo, kseg_hi);
      ranges(nqb, kBlockQ, Tq, m.q_offset, qseg_lo, qseg_hi);
    }
  }

  TileKind classify(int64_t b, int64_t qb, int64_t kb) const {
    const int64_t j0 = kb * kBlockK, j1 = std::min(Tk, j0 + kBlockK);
    const int64_t p0 = mask->q_offset + qb * kBlockQ;                        // first query position
    const int64_t p1 = mask->q_offset + std::min(Tq, qb * kBlockQ + kBlockQ) - 1;  // last
    bool dense = true;
    if (!pad_count.empty()) {
      const int64_t c = pad_count[b * nkb + kb];
      if (c == j1 - j0) return TileKind::skip;
      dense = c == 0;
    }
    switch (mask->kind) {
      case AttnMaskKind::full:
      case AttnMaskKind::segment_full: break;
      case AttnMaskKind::causal:
      case AttnMaskKind::segment_causal:
        if (j0 > p1) return TileKind::skip;  // entirely above the diagonal
        dense = dense && j1 - 1 <= p0;
        break;
      case AttnMaskKind::prefix:
        if (j0 >= mask->prefix_len && j0 > p1) return TileKind::skip;
        dense = dense && (j1 - 1 < mask->prefix_len || j1 - 1 <= p0);
        break;
    }
    if (!kseg_lo.empty()) {
      const int32_t klo = kseg_lo[b * nkb + kb], khi = kseg_hi[b * nkb + kb];
      const int32_t qlo = qseg_lo[b * nqb + qb], qhi = qseg_hi[b * nqb + qb];
      if (khi < qlo || qhi < klo) return TileKind::skip;  // no segment in common
      dense = dense && klo == khi && qlo == qhi && klo == qlo;
    }
    return dense ? TileKind::dense : TileKind::masked;
  }
};

// Per-thread scratch carved out of one allocation; every piece starts on a 64-byte boundary.
template <typename T>
struct Scratch {
  Tensor storage;
  int64_t per_thread = 0;
  std::vector<int64_t> offsets;

  Scratch(const std::vector<int64_t>& sizes, bool parallel) {
    for (int64_t n : sizes) {
      offsets.push_back(per_thread);
      per_thread += round_up(std::max<int64_t>(n, 1), kVec<T>);
    }
    const int64_t threads = parallel ? std::max(1, omp_get_max_threads()) : 1;
    storage = Tensor::empty({threads * per_thread}, dtype_of<T>());
  }
  T* get(int thread, size_t piece) const {
    return storage.data<T>() + thread * per_thread + offsets[piece];
  }
};

// Loads the key block [j0, j0 + nk) of one (b, h) transposed: kt: [D, kBlockK] with row stride
// ldt, zero-padded columns past nk. Feeds the score product S = Q kt as a row-major right operand.
template <typename T>
void load_transposed(const Rows<const T>& x, int64_t b, int64_t h, int64_t j0, int64_t nk,
                     int64_t D, T* kt, int64_t ldt) {
  for (int64_t j = 0; j < kBlockK; ++j) {
    if (j < nk) {
      const T* xr = x.row(b, h, j0 + j);
      for (int64_t d = 0; d < D; ++d) kt[d * ldt + j] = xr[d];
    } else {
      for (int64_t d = 0; d < D; ++d) kt[d * ldt + j] = T(0);
    }
  }
}

// Copies n rows starting at row t0 of one (b, h) into dst: [n, Dp], times mul, zero-padded.
template <typename T>
void load_rows(const Rows<const T>& x, int64_t b, int64_t h, int64_t t0, int64_t n, int64_t D,
               int64_t Dp, T mul, T* dst) {
  for (int64_t t = 0; t < n; ++t) {
    const T* xr = x.row(b, h, t0 + t);
    T* dr = dst + t * Dp;
    for (int64_t d = 0; d < D; ++d) dr[d] = xr[d] * mul;
    for (int64_t d = D; d < Dp; ++d) dr[d] = T(0);
  }
}

// bf16 operands of the forward products under MatmulPrecision::bf16: rows [j0, j0 + nk) of one
// (b, h) rounded to bf16 into dst (`size` elements, zeroed first, so padding past nk and D is 0)
// at dst[at(j, d)], one of attn::tile_gemm_bf16's pair layouts of the right operand:
// keys for S = Q K^T: (d, j) at (d / 2) 2 BK + 2 j + d % 2; values for O += P V: (j, d) at
// (j / 2) 2 Dp + 2 d + j % 2.
template <typename T, typename At>
void pack_bf16(const Rows<const T>& x, int64_t b, int64_t h, int64_t j0, int64_t nk, int64_t D,
               int64_t size, uint16_t* dst, At at) {
  std::fill(dst, dst + size, uint16_t{0});
  for (int64_t j = 0; j < nk; ++j) {
    const T* xr = x.row(b, h, j0 + j);
    for (int64_t d = 0; d < D; ++d) dst[at(j, d)] = f32_to_bf16_bits(static_cast<float>(xr[d]));
  }
}
// n values to bf16 bits (round to nearest even, as everywhere).
template <typename T>
inline void round_to_bf16(const T* x, uint16_t* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16_bits(static_cast<float>(x[i]));
}
// attn::tile_gemm_bf16 into T = float; never reached for f64, whose kernels never set bf16.
template <typename T>
inline void tile_gemm_bf16(int64_t M, int64_t N, int64_t K, const uint16_t* a, int64_t lda,
                           const uint16_t* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  if constexpr (std::is_same_v<T, float>)
    attn::tile_gemm_bf16(M, N, K, a, lda, b, ldb, c, ldc, accumulate);
}

// Mask and bias for one score row s[0, kBlockK) of query i against keys [j0, j0 + nk):
// hidden keys and the padding columns past nk become -inf, then the bias row is added.
template <typename T>
inline void mask_score_row(T* s, TileKind kind, const MaskSpec& mask, int64_t b, int64_t i,
                           int64_t j0, int64_t nk, const T* bias_row) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  if (kind == TileKind::masked) mask.hide_row(s, b, i, j0, nk);
  for (int64_t j = nk; j < kBlockK; ++j) s[j] = neg_inf;
  if (bias_row)
    for (int64_t j = 0; j < nk; ++j) s[j] += bias_row[j0 + j];
}

// Bias rows: row (b, h, i) of a [B|1, H|1, Tq, Tk] bias, with broadcast dims pinned to 0.
template <typename T>
struct BiasRows {
  Rows<const T> rows;
  bool defined = false, bcast_b = false, bcast_h = false;
  const T* row(int64_t b, int64_t h, int64_t i) const {
    return defined ? rows.row(bcast_b ? 0 : b, bcast_h ? 0 : h, i) : nullptr;
  }
};

// ---------------------------------------------------------------- fast path: forward

// q: [B, H, Tq, D], k, v: [B, H, Tk, D] -> out: [B, H, Tq, D]; lse: [B, H, Tq] contiguous, the
// logsumexp of each score row (+inf for a row with no visible key, so that backward's
// exp(S - lse) is 0 there). One task per (b, h, query block); each streams over the key blocks
// with the online softmax: per row a running max m and sum l, and an output accumulator
// rescaled by exp(m_old - m_new) whenever the max grows.
// With several query blocks, k and v are packed once up front, tile by tile, into kt_all:
// [B H, nkb, D, BK] (k transposed) and v_all: [B H, nkb, BK, Dp] (each as big as k), instead of
// once per tile visit, which every query block would repeat. Packed tiles have short row strides;
// the caller's own strides can alias L1 sets (a [B, T, H, D] layout puts rows H D 4 bytes apart,
// 2 KB for H D = 512). With one query block (decode, short sequences) each tile is visited once:
// it is packed into L1 scratch instead, and for 1-2 query rows the scores are plain dot products
// with the key rows (transposing the tile would cost more than the product).
// With dropout, each row's probabilities are dropped after their (undropped) sum is taken.
// bf16 (f32 only, with prepacked tiles): the two products take bf16 operands (q scaled, k, v and
// the probabilities rounded to bf16) with f32 accumulation; the softmax stays f32.
// s[j] = qr . k(b, h, j0 + j) for j < nk: one query row's scores (decoding) against the key rows
// in place. For f32, one vector accumulator a key, its lanes summed by shuffles (attn::lane_sum);
// otherwise, and for a head width that is not a whole number of vectors, the plain loop.
template <typename T>
void decode_scores(const T* qr, const Rows<const T>& k, int64_t b, int64_t h, int64_t j0,
                   int64_t nk, int64_t D, T* s) {
  if constexpr (std::is_same_v<T, float>) {
    using V = attn::VecOf<float>::type;
    constexpr int64_t W = kVec<float>;
    if (D % W == 0) {
      for (int64_t j = 0; j < nk; ++j) {
        const float* kr = k.row(b, h, j0 + j);
        V acc = {};
        for (int64_t d = 0; d < D; d += W) {
          V qv, kv;
          std::memcpy(&qv, qr + d, sizeof qv);
          std::memcpy(&kv, kr + d, sizeof kv);
          acc += qv * kv;
        }
        s[j] = attn::lane_sum(acc);
      }
      return;
    }
  }
  for (int64_t j = 0; j < nk; ++j) {
    const T* kr = k.row(b, h, j0 + j);
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t d = 0; d < D; ++d) acc += qr[d] * kr[d];
    s[j] = acc;
  }
}

template <typename T>
void fast_forward(const Rows<const T>& q, const Rows<const T>& k, const Rows<const T>& v,
                  const BiasRows<T>& bias, const MaskSpec& mask, const DropoutSpec& drop,
                  const Geometry& g, const Rows<T>& out, T* lse, bool bf16_ops) {
  const int64_t D = g.D, Dp = round_up(D, kVec<T>);
  const TilePlan plan(mask, g);
  const T scale = static_cast<T>(g.scale);
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t ntasks = g.B * g.H * plan.nqb;
  const bool parallel = use_pool(ntasks, g);
  const int64_t tile_kt = D * kBlockK, tile_v = kBlockK * Dp;
  const bool prepack = plan.nqb > 1;
  const bool bf16 = bf16_ops && prepack && std::is_same_v<T, float> && attn::kHaveBf16Dot;
  // bf16: kt, v tiles in pair layout (pack_bf16), q and p rows rounded to bf16.
  enum Piece : size_t { kQ, kO, kS, kM, kL, kKt, kV, kQ16, kP16 };
  const Scratch<T> scratch({kBlockQ * Dp, kBlockQ * Dp, kBlockQ * kBlockK, kBlockQ, kBlockQ,
                            tile_kt, tile_v, bf16 ? kBlockQ * Dp / 2 : 1,
                            bf16 ? kBlockQ * kBlockK / 2 : 1},
                           parallel);
  const int64_t ntiles = prepack ? g.B * g.H * plan.nkb : 0;
  const int64_t tile16 = Dp * kBlockK;  // either bf16 tile (kt or v), in bf16 elements
  const int64_t n32 = bf16 ? 0 : ntiles, n16 = bf16 ? ntiles : 0;  // tiles of each kind
  Tensor kt_storage = Tensor::empty({std::max<int64_t>(1, n32 * tile_kt)}, dtype_of<T>());
  Tensor v_storage = Tensor::empty({std::max<int64_t>(1, n32 * tile_v)}, dtype_of<T>());
  Tensor kt16_storage = Tensor::empty({std::max<int64_t>(1, n16 * tile16)}, DType::bf16);
  Tensor v16_storage = Tensor::empty({std::max<int64_t>(1, n16 * tile16)}, DType::bf16);
  T* kt_all = kt_storage.data<T>();
  T* v_all = v_storage.data<T>();
  auto* kt16_all = reinterpret_cast<uint16_t*>(kt16_storage.data<metalm::bf16>());
  auto* v16_all = reinterpret_cast<uint16_t*>(v16_storage.data<metalm::bf16>());
  if (prepack) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t bh = 0; bh < g.B * g.H; ++bh)
      for (int64_t kb = 0; kb < plan.nkb; ++kb) {
        const int64_t b = bh / g.H, h = bh % g.H, j0 = kb * kBlockK;
        const int64_t nk = std::min(kBlockK, g.Tk - j0);
        const int64_t tile = bh * plan.nkb + kb;
        if (bf16) {
          pack_bf16(k, b, h, j0, nk, D, tile16, kt16_all + tile * tile16,
                    [](int64_t j, int64_t d) { return (d / 2) * 2 * kBlockK + 2 * j + d % 2; });
          pack_bf16(v, b, h, j0, nk, D, tile16, v16_all + tile * tile16,
                    [Dp](int64_t j, int64_t d) { return (j / 2) * 2 * Dp + 2 * d + j % 2; });
          continue;
        }
        load_transposed(k, b, h, j0, nk, D, kt_all + tile * tile_kt, kBlockK);
        load_rows(v, b, h, j0, nk, D, Dp, T(1), v_all + tile * tile_v);
      }
  }

#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t task = 0; task < ntasks; ++task) {
    const int tid = omp_get_thread_num();
    T* qs = scratch.get(tid, kQ);   // [BQ, Dp] q rows times scale
    T* o = scratch.get(tid, kO);    // [BQ, Dp] unnormalized output
    T* s = scratch.get(tid, kS);    // [BQ, BK] scores, then probabilities
    T* m = scratch.get(tid, kM);    // [BQ] running max
    T* l = scratch.get(tid, kL);    // [BQ] running sum
    T* kt_tile = scratch.get(tid, kKt);  // [D, BK] key tile (without prepack)
    T* v_tile = scratch.get(tid, kV);    // [BK, Dp] value tile (without prepack)
    auto* q16 = reinterpret_cast<uint16_t*>(scratch.get(tid, kQ16));  // [BQ, Dp] bf16 qs
    auto* p16 = reinterpret_cast<uint16_t*>(scratch.get(tid, kP16));  // [BQ, BK] bf16 probs
    const int64_t qb = task % plan.nqb, bh = task / plan.nqb, b = bh / g.H, h = bh % g.H;
    const int64_t i0 = qb * kBlockQ, nq = std::min(kBlockQ, g.Tq - i0);

    load_rows(q, b, h, i0, nq, D, Dp, scale, qs);
    if (bf16) round_to_bf16(qs, q16, nq * Dp);
    std::fill(o, o + nq * Dp, T(0));
    std::fill(m, m + nq, neg_inf);
    std::fill(l, l + nq, T(0));
    for (int64_t kb = 0; kb < plan.nkb; ++kb) {
      const TileKind kind = plan.classify(b, qb, kb);
      if (kind == TileKind::skip) continue;
      const int64_t j0 = kb * kBlockK, nk = std::min(kBlockK, g.Tk - j0);
      // s: [nq, BK] = qs: [nq, D] . k block^T
      if (bf16) {
        tile_gemm_bf16(nq, kBlockK, Dp, q16, Dp, kt16_all + (bh * plan.nkb + kb) * tile16,
                       2 * kBlockK, s, kBlockK, false);
      } else if (prepack) {
        const T* kt = kt_all + (bh * plan.nkb + kb) * tile_kt;
        tile_gemm<T>(nq, kBlockK, D, qs, Dp, 1, kt, kBlockK, s, kBlockK, false);
      } else if (nq <= 2) {
        for (int64_t r = 0; r < nq; ++r) decode_scores(qs + r * Dp, k, b, h, j0, nk, D,
                                                       s + r * kBlockK);
      } else {
        load_transposed(k, b, h, j0, nk, D, kt_tile, kBlockK);
        tile_gemm<T>(nq, kBlockK, D, qs, Dp, 1, kt_tile, kBlockK, s, kBlockK, false);
      }
      for (int64_t r = 0; r < nq; ++r) {
        T* sr = s + r * kBlockK;
        mask_score_row(sr, kind, mask, b, i0 + r, j0, nk, bias.row(b, h, i0 + r));
        T mx = neg_inf;  // (the ternary form vectorizes; std::max here does not with GCC 12)
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < kBlockK; ++j) mx = sr[j] > mx ? sr[j] : mx;
        const T m_new = std::max(m[r], mx);
        if (m_new == neg_inf) {  // nothing visible yet in this row: contributes nothing
          std::fill(sr, sr + kBlockK, T(0));
          continue;
        }
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < kBlockK; ++j) {
          sr[j] = vm::exp(sr[j] - m_new);
          sum += sr[j];
        }
        if (m_new != m[r]) {  // the max grew: rescale what was accumulated under the old one
          const T alpha = vm::exp(m[r] - m_new);
          T* orow = o + r * Dp;
          for (int64_t d = 0; d < Dp; ++d) orow[d] *= alpha;
          l[r] *= alpha;
          m[r] = m_new;
        }
        l[r] += sum;
        if (drop.on) drop.apply_row(sr, drop.row_counter(b, h, i0 + r), j0, nk);
      }
      // o: [nq, Dp] += p: [nq, nk] . v block: [nk, Dp]
      if (bf16) {
        round_to_bf16(s, p16, nq * kBlockK);
        tile_gemm_bf16(nq, Dp, kBlockK, p16, kBlockK, v16_all + (bh * plan.nkb + kb) * tile16,
                       2 * Dp, o, Dp, true);
        continue;
      }
      if (!prepack && nq <= 2) {  // decoding: the value rows as they are, no tile copy
        for (int64_t r = 0; r < nq; ++r) {
          T* orow = o + r * Dp;
          for (int64_t j = 0; j < nk; ++j) {
            const T p = s[r * kBlockK + j];
            const T* vr = v.row(b, h, j0 + j);
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) orow[d] += p * vr[d];
          }
        }
        continue;
      }
      const T* vt = v_all + (bh * plan.nkb + kb) * tile_v;
      if (!prepack) {
        load_rows(v, b, h, j0, nk, D, Dp, T(1), v_tile);
        vt = v_tile;
      }
      tile_gemm<T>(nq, Dp, nk, s, kBlockK, 1, vt, Dp, o, Dp, true);
    }
    for (int64_t r = 0; r < nq; ++r) {
      const T inv = l[r] > 0 ? T(1) / l[r] : T(0);
      T* dst = out.row(b, h, i0 + r);
      for (int64_t d = 0; d < D; ++d) dst[d] = o[r * Dp + d] * inv;
      lse[bh * g.Tq + i0 + r] =
          l[r] > 0 ? m[r] + vm::log(l[r]) : std::numeric_limits<T>::infinity();
    }
  }
}

// ---------------------------------------------------------------- fast path: backward

// Where backward writes: rows of dq, dk, dv (base null when not needed) and dbias.
template <typename T>
struct GradTargets {
  Rows<T> dq, dk, dv;
  T* dbias = nullptr;          // contiguous, bias shape; null when not needed
  bool dbias_private = false;  // bias is broadcast: each thread sums into its own copy
  int64_t dbias_numel = 0;
};

// Recomputes every visited tile from q, k, v and the saved lse:
//   P = exp(S - lse), dV += P^T dO, dP = dO V^T, dS = P (dP - Drow), dQ += dS K scale,
//   dK += dS^T (Q scale), dbias += dS,   with Drow_i = sum_d dO_id O_id.
// One task per (b, h): it owns its dq, dk, dv rows, so no two threads write the same element;
// key blocks outer (dK, dV of the block accumulate in scratch), query blocks inner (dQ of the
// whole (b, h) accumulates in scratch, linear in Tq). A broadcast bias gradient goes to a
// per-thread copy summed afterwards in thread order (static schedule: deterministic, D7).
// With dropout (factors F = keep ? 1/(1-p) : 0, regenerated per tile): dV += (P F)^T dO,
// dS = P (F dP - Drow); Drow = rowsum(dO * O) still holds, O being the dropped output.
template <typename T>
void fast_backward(const Rows<const T>& q, const Rows<const T>& k, const Rows<const T>& v,
                   const BiasRows<T>& bias, const MaskSpec& mask, const DropoutSpec& drop,
                   const Geometry& g, const Rows<const T>& o, const T* lse,
                   const Rows<const T>& dout, const GradTargets<T>& gt) {
  const int64_t D = g.D, Dp = round_up(D, kVec<T>), Tq = g.Tq;
  const TilePlan plan(mask, g);
  const T scale = static_cast<T>(g.scale);
  const bool need_dq = gt.dq.base != nullptr, need_dk = gt.dk.base != nullptr;
  const bool need_dv = gt.dv.base != nullptr, need_dbias = gt.dbias != nullptr;
  const bool need_ds = need_dq || need_dk || need_dbias;
  enum Piece : size_t { kQ, kDO, kDQ, kDrow, kLse, kKt, kKp, kVt, kDK, kDV, kS, kDP, kF };
  const bool parallel = use_pool(g.B * g.H, g);
  const Scratch<T> scratch({Tq * Dp, Tq * Dp, Tq * Dp, Tq, Tq, D * kBlockK, kBlockK * Dp,
                            D * kBlockK, kBlockK * Dp, kBlockK * Dp, kBlockQ * kBlockK,
                            kBlockQ * kBlockK, drop.on ? kBlockQ * kBlockK : 1},
                           parallel);
  const int nthreads = parallel ? std::max(1, omp_get_max_threads()) : 1;
  Tensor dbias_copies;  // [nthreads, bias numel] when the bias is broadcast
  if (need_dbias && gt.dbias_private)
    dbias_copies = Tensor::zeros({nthreads, gt.dbias_numel}, dtype_of<T>());
  const int64_t bias_h = bias.bcast_h ? 1 : g.H;

#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t bh = 0; bh < g.B * g.H; ++bh) {
    const int tid = omp_get_thread_num();
    const int64_t b = bh / g.H, h = bh % g.H;
    T* qs = scratch.get(tid, kQ);      // [Tq, Dp] q times scale
    T* dob = scratch.get(tid, kDO);    // [Tq, Dp] dO
    T* dqa = scratch.get(tid, kDQ);    // [Tq, Dp] dQ / scale accumulator
    T* drow = scratch.get(tid, kDrow);  // [Tq] rowsum(dO * O)
    T* lrow = scratch.get(tid, kLse);   // [Tq] lse
    T* kt = scratch.get(tid, kKt);     // [D, BK] key block transposed
    T* kp = scratch.get(tid, kKp);     // [BK, Dp] key block
    T* vt = scratch.get(tid, kVt);     // [D, BK] value block transposed
    T* dkb = scratch.get(tid, kDK);    // [BK, Dp] dK of the key block
    T* dvb = scratch.get(tid, kDV);    // [BK, Dp] dV of the key block
    T* p = scratch.get(tid, kS);       // [BQ, BK] probabilities
    T* ds = scratch.get(tid, kDP);     // [BQ, BK] dP, then dS
    T* fac = scratch.get(tid, kF);     // [BQ, BK] dropout factors (with dropout)
    T* dbias_bh = nullptr;             // dbias slice [Tq, Tk] of this (b, h)
    if (need_dbias) {
      T* base = gt.dbias_private ? dbias_copies.data<T>() + tid * gt.dbias_numel : gt.dbias;
      dbias_bh = base + ((bias.bcast_b ? 0 : b) * bias_h + (bias.bcast_h ? 0 : h)) * Tq * g.Tk;
    }

    load_rows(q, b, h, 0, Tq, D, Dp, scale, qs);
    load_rows(dout, b, h, 0, Tq, D, Dp, T(1), dob);
    std::copy(lse + bh * Tq, lse + bh * Tq + Tq, lrow);
    for (int64_t i = 0; i < Tq; ++i) {
      const T* orow = o.row(b, h, i);
      const T* grow = dob + i * Dp;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t d = 0; d < D; ++d) acc += grow[d] * orow[d];
      drow[i] = acc;
    }
    if (need_dq) std::fill(dqa, dqa + Tq * Dp, T(0));

    for (int64_t kb = 0; kb < plan.nkb; ++kb) {
      const int64_t j0 = kb * kBlockK, nk = std::min(kBlockK, g.Tk - j0);
      std::fill(dkb, dkb + kBlockK * Dp, T(0));
      std::fill(dvb, dvb + kBlockK * Dp, T(0));
      bool loaded = false;
      for (int64_t qb = 0; qb < plan.nqb; ++qb) {
        const TileKind kind = plan.classify(b, qb, kb);
        if (kind == TileKind::skip) continue;
        if (!loaded) {  // first visible tile of this key block
          // Packed copies, also when k rows could be read in place: their stride may alias
          // L1 sets (see fast_forward).
          load_transposed(k, b, h, j0, nk, D, kt, kBlockK);
          load_transposed(v, b, h, j0, nk, D, vt, kBlockK);
          load_rows(k, b, h, j0, nk, D, Dp, T(1), kp);
          loaded = true;
        }
        const int64_t i0 = qb * kBlockQ, nq = std::min(kBlockQ, Tq - i0);
        const T* qi = qs + i0 * Dp;
        const T* doi = dob + i0 * Dp;
        // p: [nq, BK] = exp(qs_i . kt - lse)
        tile_gemm<T>(nq, kBlockK, D, qi, Dp, 1, kt, kBlockK, p, kBlockK, false);
        for (int64_t r = 0; r < nq; ++r) {
          T* pr = p + r * kBlockK;
          mask_score_row(pr, kind, mask, b, i0 + r, j0, nk, bias.row(b, h, i0 + r));
          const T lr = lrow[i0 + r];
#pragma omp simd
          for (int64_t j = 0; j < kBlockK; ++j) pr[j] = vm::exp(pr[j] - lr);
        }
        const T* pv = p;  // the probabilities that multiplied V in forward
        if (drop.on) {    // dropped ones, in ds (free until the dP product below)
          for (int64_t r = 0; r < nq; ++r) {
            T* fr = fac + r * kBlockK;
            drop.factor_row(fr, drop.row_counter(b, h, i0 + r), j0, nk);
            const T* pr = p + r * kBlockK;
            T* pdr = ds + r * kBlockK;
#pragma omp simd
            for (int64_t j = 0; j < nk; ++j) pdr[j] = pr[j] * fr[j];
          }
          pv = ds;
        }
        // dv block: [nk, Dp] += pv^T: [nk, nq] . dO_i: [nq, Dp]
        if (need_dv) tile_gemm<T>(nk, Dp, nq, pv, 1, kBlockK, doi, Dp, dvb, Dp, true);
        if (!need_ds) continue;
        // ds: [nq, BK] = dO_i: [nq, D] . vt: [D, BK], then p (dP - Drow)
        tile_gemm<T>(nq, kBlockK, D, doi, Dp, 1, vt, kBlockK, ds, kBlockK, false);
        for (int64_t r = 0; r < nq; ++r) {
          const T dr = drow[i0 + r];
          T* dsr = ds + r * kBlockK;
          const T* pr = p + r * kBlockK;
          if (drop.on) {
            const T* fr = fac + r * kBlockK;
#pragma omp simd
            for (int64_t j = 0; j < nk; ++j) dsr[j] = pr[j] * (fr[j] * dsr[j] - dr);
            std::fill(dsr + nk, dsr + kBlockK, T(0));  // p is 0 there; fac was not set
          } else {
#pragma omp simd
            for (int64_t j = 0; j < kBlockK; ++j) dsr[j] = pr[j] * (dsr[j] - dr);
          }
        }
        // dQ_i: [nq, Dp] += ds: [nq, nk] . k block: [nk, Dp]
        if (need_dq) tile_gemm<T>(nq, Dp, nk, ds, kBlockK, 1, kp, Dp, dqa + i0 * Dp, Dp, true);
        // dk block: [nk, Dp] += ds^T: [nk, nq] . qs_i: [nq, Dp]
        if (need_dk) tile_gemm<T>(nk, Dp, nq, ds, 1, kBlockK, qi, Dp, dkb, Dp, true);
        if (need_dbias)
          for (int64_t r = 0; r < nq; ++r) {
            T* dst = dbias_bh + (i0 + r) * g.Tk + j0;
            const T* dsr = ds + r * kBlockK;
            for (int64_t j = 0; j < nk; ++j) dst[j] += dsr[j];
          }
      }
      for (int64_t j = 0; j < nk; ++j) {
        if (need_dk) std::copy(dkb + j * Dp, dkb + j * Dp + D, gt.dk.row(b, h, j0 + j));
        if (need_dv) std::copy(dvb + j * Dp, dvb + j * Dp + D, gt.dv.row(b, h, j0 + j));
      }
    }
    if (need_dq)
      for (int64_t i = 0; i < Tq; ++i) {
        T* dst = gt.dq.row(b, h, i);
        for (int64_t d = 0; d < D; ++d) dst[d] = dqa[i * Dp + d] * scale;
      }
  }

  if (need_dbias && gt.dbias_private) {
    const T* copies = dbias_copies.data<T>();
    const int64_t n = gt.dbias_numel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t e = 0; e < n; ++e) {
      T acc = 0;
      for (int t = 0; t < nthreads; ++t) acc += copies[t * n + e];
      gt.dbias[e] = acc;
    }
  }
}

// Everything backward needs, captured by value in the autograd closure.
struct FastSaved {
  Tensor q, k, v, bias, out, lse;  // detached, rows contiguous
  AttentionMask mask;
  AttentionDropout dropout;
  Geometry geo;
};

template <typename T>
BiasRows<T> bias_rows(const Tensor& bias, const Geometry& g) {
  BiasRows<T> br;
  if (!bias.defined()) return br;
  br.defined = true;
  br.rows = rows_of<const T>(bias);
  br.bcast_b = bias.size(0) == 1 && g.B > 1;
  br.bcast_h = bias.size(1) == 1 && g.H > 1;
  return br;
}

template <typename T>
std::vector<Tensor> fast_backward_entry(const FastSaved& sv, const Tensor& grad_out,
                                        const std::vector<bool>& needs) {
  MLM_CHECK(grad_out.dtype() == sv.q.dtype() && grad_out.shape() == sv.out.shape(), ShapeError,
            "[attention] backward got gradient ", grad_out.str(), " for output ", sv.out.str());
  const Geometry& g = sv.geo;
  const MaskSpec mask(sv.mask, g.Tk);
  const DropoutSpec drop(sv.dropout, g);
  Tensor dout = with_contiguous_rows(grad_out);
  GradTargets<T> gt;
  Tensor dq, dk, dv, dbias;
  if (needs[0]) {
    dq = empty_like_layout(sv.q);
    gt.dq = rows_of<T>(dq);
  }
  if (needs[1]) {
    dk = empty_like_layout(sv.k);
    gt.dk = rows_of<T>(dk);
  }
  if (needs[2]) {
    dv = empty_like_layout(sv.v);
    gt.dv = rows_of<T>(dv);
  }
  if (needs[3] && sv.bias.defined()) {
    dbias = Tensor::zeros(sv.bias.shape(), sv.bias.dtype());
    gt.dbias = dbias.data<T>();
    gt.dbias_numel = dbias.numel();
    gt.dbias_private = (sv.bias.size(0) == 1 && g.B > 1) || (sv.bias.size(1) == 1 && g.H > 1);
  }
  fast_backward<T>(rows_of<const T>(sv.q), rows_of<const T>(sv.k), rows_of<const T>(sv.v),
                   bias_rows<T>(sv.bias, g), mask, drop, g, rows_of<const T>(sv.out),
                   sv.lse.data<T>(), rows_of<const T>(dout), gt);
  return {dq, dk, dv, dbias};
}

template <typename T>
Tensor fast_forward_entry(const FastSaved& sv, bool bf16_ops) {
  const Geometry& g = sv.geo;
  const MaskSpec mask(sv.mask, g.Tk);
  const DropoutSpec drop(sv.dropout, g);
  fast_forward<T>(rows_of<const T>(sv.q), rows_of<const T>(sv.k), rows_of<const T>(sv.v),
                  bias_rows<T>(sv.bias, g), mask, drop, g, rows_of<T>(sv.out), sv.lse.data<T>(),
                  bf16_ops);
  return sv.out;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                 double scale, const AttentionDropout& dropout) {
  if (use_reference()) return attention_reference(q, k, v, mask, scale, dropout);
  FastSaved sv;
  sv.geo = attn::check_args(q, k, v, mask, scale);
  attn::check_dropout(dropout);
  sv.dropout = dropout;
  const Geometry& g = sv.geo;
  sv.q = with_contiguous_rows(q);
  sv.k = with_contiguous_rows(k);
  sv.v = with_contiguous_rows(v);
  if (mask.bias.defined()) sv.bias = with_contiguous_rows(mask.bias);
  sv.mask = mask;
  sv.mask.bias = Tensor();  // held (detached) in sv.bias; the closure must not own the graph
  sv.out = empty_like_layout(sv.q);
  sv.lse = Tensor::empty({g.B, g.H, g.Tq}, q.dtype());
  // bf16 products in inference under MatmulPrecision::bf16 (backward has no bf16 form yet, so a
  // forward that will be differentiated stays f32).
  const bool bf16_ops = q.dtype() == DType::f32 && matmul_precision() == MatmulPrecision::bf16 &&
                        !autograd::any_requires_grad({q, k, v, mask.bias});
  Tensor out = q.dtype() == DType::f32 ? fast_forward_entry<float>(sv, bf16_ops)
                                       : fast_forward_entry<double>(sv, false);
  sv.out = out.detach();  // the node hangs off `out`: saving `out` itself would own the node
  return autograd::record("attention", out, {q, k, v, mask.bias},
                          [sv](const Tensor& grad, const std::vector<bool>& needs) {
                            return sv.q.dtype() == DType::f32
                                       ? fast_backward_entry<float>(sv, grad, needs)
                                       : fast_backward_entry<double>(sv, grad, needs);
                          });
}

}  // namespace metalm::ops
