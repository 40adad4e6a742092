// Element types of a Tensor and the bf16 <-> f32 conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace metalm {

enum class DType : uint8_t { f32, f64, bf16, i32, i64, u8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);          // "f32", "f64", "bf16", "i32", "i64", "u8"
bool dtype_is_float(DType dtype);             // f32, f64, bf16

// bf16 stored as the upper 16 bits of an IEEE f32; conversion rounds to nearest even, keeps NaN.
struct bf16 {
  uint16_t bits = 0;
};
inline float bf16_to_f32(bf16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// f32 -> bf16 bits: round to nearest even; NaN stays a quiet NaN. Written without branches so
// that loops over arrays (Tensor::to, the bf16 GEMM operands) vectorize.
inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}
inline bf16 f32_to_bf16(float f) { return bf16{f32_to_bf16_bits(f)}; }

// Float -> integer conversion defined for every input (a plain cast is undefined behaviour for
// NaN and out-of-range values): NaN gives 0, values beyond the integer's range saturate, others
// truncate toward zero as a cast does. Used by every float -> integer path (to(), item(), full()).
template <typename I, typename F>
inline I saturating_cast(F v) {
  static_assert(std::is_integral_v<I> && std::is_floating_point_v<F>);
  // lo is a power of two (or 0), so exact in F; hi may round up to the next power of two, and
  // v >= hi then still means "does not fit".
  constexpr F lo = static_cast<F>(std::numeric_limits<I>::min());
  constexpr F hi = static_cast<F>(std::numeric_limits<I>::max());
  if (v != v) return 0;
  if (v <= lo) return std::numeric_limits<I>::min();
  if (v >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}

// Compile-time dtype of a C++ element type.
template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

}  // namespace metalm
