// Internal: elementwise math that the compiler vectorizes. The f32 functions are declared as
// OpenMP SIMD functions so GCC calls glibc's libmvec vector variants (_ZGVeN16v_expf, ...;
// accuracy within 4 ulp per glibc's documentation) inside vectorized loops; scalar code and f64
// use the ordinary libm functions. Needs -fno-math-errno (set in CMakeLists.txt).
#pragma once
#include <cmath>

extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
float logf(float) noexcept;
#pragma omp declare simd notinbranch
float tanhf(float) noexcept;
#pragma omp declare simd notinbranch
float erff(float) noexcept;
#pragma omp declare simd notinbranch
float erfcf(float) noexcept;
}

namespace metalm::vm {

inline float exp(float x) { return ::expf(x); }
inline double exp(double x) { return std::exp(x); }
inline float log(float x) { return ::logf(x); }
inline double log(double x) { return std::log(x); }
inline float tanh(float x) { return ::tanhf(x); }
inline double tanh(double x) { return std::tanh(x); }
inline float erf(float x) { return ::erff(x); }
inline double erf(double x) { return std::erf(x); }
inline float erfc(float x) { return ::erfcf(x); }
inline double erfc(double x) { return std::erfc(x); }
inline float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace metalm::vm
