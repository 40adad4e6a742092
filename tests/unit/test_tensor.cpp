// Tensor basics: factories, views, strided copies, dtype conversion, allocator accounting.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "metalm/core/allocator.h"
#include "metalm/ops/ops.h"

using namespace metalm;

TEST(Tensor, FactoriesAndAccess) {
  Tensor t = Tensor::full({2, 3}, 1.5);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_TRUE(t.is_contiguous());
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 1.5f);
  Tensor a = Tensor::arange(5);
  EXPECT_EQ(a.dtype(), DType::i64);
  EXPECT_EQ(a.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(Tensor::scalar(3.0).item<float>(), 3.0f);
  EXPECT_THROW(Tensor::from_vector<float>({2, 2}, {1, 2, 3}), ShapeError);
  EXPECT_THROW(t.data<double>(), DTypeError);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
}

TEST(Tensor, ViewsShareStorageAndIndexCorrectly) {
  Tensor x = Tensor::arange(24, DType::f32).reshape({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});  // [4, 2, 3]
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(p.raw_data(), x.raw_data());
  std::vector<float> pv = p.to_vector<float>();
  // p[i, j, k] = x[j, k, i] = j*12 + k*4 + i
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(pv[(i * 2 + j) * 3 + k], j * 12 + k * 4 + i);
  Tensor s = x.slice(2, 1, 3);  // [2, 3, 2]
  std::vector<float> sv = s.to_vector<float>();
  EXPECT_EQ(sv[0], 1);
  EXPECT_EQ(sv[1], 2);
  EXPECT_EQ(sv[2], 5);
  Tensor e = Tensor::from_vector<float>({3, 1}, {1, 2, 3}).expand({3, 4});
  EXPECT_EQ(e.strides()[1], 0);
  EXPECT_EQ(e.to_vector<float>()[5], 2.0f);
  // reshape of a non-contiguous view copies; of a contiguous one does not
  EXPECT_EQ(x.reshape({6, 4}).raw_data(), x.raw_data());
  EXPECT_NE(p.reshape({8, 3}).raw_data(), x.raw_data());
  EXPECT_EQ(p.reshape({8, 3}).to_vector<float>(), pv);
  EXPECT_THROW(x.reshape({5, 5}), ShapeError);
  EXPECT_THROW(x.permute({0, 0, 1}), ShapeError);
  EXPECT_THROW(x.slice(3, 0, 1), ShapeError);
  EXPECT_THROW(x.expand({2, 5, 4}), ShapeError);
}

TEST(Tensor, DTypeConversions) {
  Tensor x = Tensor::from_vector<float>({4}, {1.0f, -2.5f, 3.1415926f, 1e-3f});
  Tensor b = x.to(DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  std::vector<float> back = b.to(DType::f32).to_vector<float>();
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -2.5f);
  EXPECT_NEAR(back[2], 3.1415926f, 3.1415926f / 128);
  EXPECT_NEAR(back[3], 1e-3f, 1e-3f / 128);
  // round to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7, goes to 1
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  Tensor i = x.to(DType::i32);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 3, 0}));
}

TEST(Allocator, TracksCurrentAndPeak) {
  memory_reset_peak();
  size_t before = memory_stats().current_bytes;
  {
    Tensor big = Tensor::empty({1 << 20});  // 4 MiB
    EXPECT_GE(memory_stats().current_bytes, before + (4u << 20));
  }
  EXPECT_EQ(memory_stats().current_bytes, before);
  EXPECT_GE(memory_stats().peak_bytes, before + (4u << 20));
  Tensor again = Tensor::empty({1 << 20});  // served from the cache
  EXPECT_EQ(memory_stats().current_bytes, before + (4u << 20));
}
