// safetensors written from PyTorch (tests/reference/ref_safetensors.py) load bit-exactly: the
// formula tensors are recomputed here, the seeded random ones come from a JSON side file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "common/test_util.h"
#include "metalm/io/safetensors.h"

using namespace metalm;

namespace {

class SafetensorsRef : public test::ReferenceTest<> {
 protected:
  SafetensorsRef() : ReferenceTest("safetensors_torch") {}
  static void SetUpTestSuite() {
    const std::string dir = metalm::test::reference_dir();
    if (dir.empty()) return;
    std::ifstream side(dir + "/safetensors_torch.json");
    side_ = nlohmann::json::parse(side);
  }
  // The tensor, which must have this dtype and shape.
  const Tensor& get(const std::string& name, DType dtype, const Shape& shape) const {
    const Tensor& t = ReferenceTest::get(name);
    EXPECT_EQ(t.dtype(), dtype) << name;
    EXPECT_EQ(t.shape(), shape) << name;
    return t;
  }
  static inline nlohmann::json side_;
};

// Elementwise exact comparison, bits included (so -0.0 vs 0.0 or a NaN payload would show).
template <typename T>
void expect_bits(const Tensor& got, const std::vector<T>& want, const std::string& name) {
  std::vector<T> v = got.to_vector<T>();
  ASSERT_EQ(v.size(), want.size()) << name;
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_EQ(std::memcmp(&v[i], &want[i], sizeof(T)), 0) << name << " element " << i;
}

}  // namespace

TEST_F(SafetensorsRef, FormulaTensorsMatchExactly) {
  std::vector<float> f32(24);
  for (int k = 0; k < 24; ++k) f32[k] = (static_cast<float>(k) - 11.5f) / 7.0f;
  expect_bits(get("f32", DType::f32, {2, 3, 4}), f32, "f32");

  std::vector<double> f64(10);
  for (int k = 0; k < 10; ++k) f64[k] = (static_cast<double>(k) - 4.5) / 3.0;
  expect_bits(get("f64", DType::f64, {10, 1}), f64, "f64");

  // torch rounds f32 -> bf16 to nearest even, as f32_to_bf16 does
  std::vector<uint16_t> b16(32);
  for (int k = 0; k < 32; ++k)
    b16[k] = f32_to_bf16((static_cast<float>(k) * 0.5f - 7.0f) / 3.0f).bits;
  std::vector<bf16> got_b16 = get("bf16", DType::bf16, {4, 8}).to_vector<bf16>();
  ASSERT_EQ(got_b16.size(), b16.size());
  for (size_t i = 0; i < b16.size(); ++i)
    EXPECT_EQ(got_b16[i].bits, b16[i]) << "bf16 element " << i;

  std::vector<int32_t> i32(12);
  for (int k = 0; k < 12; ++k) i32[k] = k * -1000003;
  expect_bits(get("i32", DType::i32, {3, 4}), i32, "i32");
  expect_bits(get("i32_limits", DType::i32, {4}),
              std::vector<int32_t>{std::numeric_limits<int32_t>::min(),
                                   std::numeric_limits<int32_t>::max(), 0, -1},
              "i32_limits");

  std::vector<int64_t> i64(6);
  for (int64_t k = 0; k < 6; ++k) i64[k] = k * ((int64_t{1} << 40) + 7) - (int64_t{1} << 62);
  expect_bits(get("i64", DType::i64, {6}), i64, "i64");

  std::vector<uint8_t> u8(256);
  for (int k = 0; k < 256; ++k) u8[k] = static_cast<uint8_t>((k * 7) % 256);
  expect_bits(get("u8", DType::u8, {16, 16}), u8, "u8");

  EXPECT_EQ(get("empty", DType::f32, {0, 3}).numel(), 0);

  // arange(12).reshape(3, 4).t(): t[a, b] = b * 4 + a
  std::vector<float> tr(12);
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 3; ++b) tr[a * 3 + b] = static_cast<float>(b * 4 + a);
  expect_bits(get("transposed", DType::f32, {4, 3}), tr, "transposed");
}

TEST_F(SafetensorsRef, SeededRandomTensorsMatchSideFile) {
  // The side file holds each value as a double that is exactly the f32 (or bf16) value.
  std::vector<float> rf, rb;
  for (double v : side_.at("randn_f32")) rf.push_back(static_cast<float>(v));
  for (double v : side_.at("randn_bf16")) rb.push_back(static_cast<float>(v));
  expect_bits(get("randn_f32", DType::f32, {5, 7}), rf, "randn_f32");
  expect_bits(get("randn_bf16", DType::bf16, {3, 5}).to(DType::f32), rb, "randn_bf16");
}

TEST_F(SafetensorsRef, MetadataAndResaveRoundTrip) {
  const io::Metadata& metadata = ref().metadata();
  const TensorMap& tensors = ref().tensors();
  EXPECT_EQ(metadata.at("format"), "pt");
  EXPECT_EQ(metadata.at("producer"), "ref_safetensors.py");
  EXPECT_TRUE(metadata.count("torch"));
  // What metalm writes back reads the same, bit for bit.
  const std::string out = ::testing::TempDir() + "metalm_ref_resave.safetensors";
  io::save_safetensors(out, tensors, metadata);
  io::SafetensorsFile back = io::load_safetensors(out);
  std::remove(out.c_str());
  EXPECT_EQ(back.metadata, metadata);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const Tensor& b = back.tensors.at(name);
    EXPECT_EQ(b.dtype(), t.dtype()) << name;
    EXPECT_EQ(b.shape(), t.shape()) << name;
    EXPECT_EQ(std::memcmp(b.raw_data(), t.raw_data(), t.nbytes()), 0) << name;
  }
}
