// The per-layer key/value cache of incremental decoding. It lives with the layers (not in infer)
// because the attention layers write it during their forward; infer owns the decoding loops that
// create, reorder and truncate it.
#pragma once
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::nn {

// One layer's cache of unrotated keys and values: storage [B, H, capacity, head_dim] allocated
// once; append() copies new rows in place (never grows by concatenation). Inference only: no
// gradient flows through it.
class KVCache {
 public:
  KVCache(int64_t batch, int64_t heads, int64_t capacity, int64_t head_dim,
          DType dtype = DType::f32);
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  // k, v: [B, H, t, head_dim]; throws ValueError when length + t > capacity.
  void append(const Tensor& k, const Tensor& v);
  Tensor keys() const;            // [B, H, length, head_dim] view
  Tensor values() const;          // [B, H, length, head_dim] view
  void truncate(int64_t length);  // drop entries past `length` (BEiT-3 captioning's MASK slot)
  void reset() { length_ = 0; }
  // Row b of the new cache is row rows[b] of this one (beam search's reorder; rows may repeat,
  // and their count is the new batch size).
  void select_rows(const std::vector<int64_t>& rows);

 private:
  Tensor k_, v_;
  int64_t capacity_ = 0, length_ = 0;
};

}  // namespace metalm::nn
