// Typed exceptions (DESIGN D8). Messages start with the operation: "[layer_norm] expected ...".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace metalm {

// Base of every metalm error; the CLI prints what() on one line and exits non-zero.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error {  // shapes or dims that do not fit the op
 public:
  using Error::Error;
};
class DTypeError : public Error {  // a dtype the op does not take
 public:
  using Error::Error;
};
class ValueError : public Error {  // a bad argument value (negative size, p out of [0,1), ...)
 public:
  using Error::Error;
};
class FormatError : public Error {  // a corrupt or hostile file (safetensors, JSON, ...)
 public:
  using Error::Error;
};
class IoError : public Error {  // the file system said no
 public:
  using Error::Error;
};
class AutogradError : public Error {  // backward on a freed graph, missing gradient, ...
 public:
  using Error::Error;
};
class NumericError : public Error {  // NaN/Inf found by the debug check
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace metalm

// MLM_CHECK(cond, ErrorType, "[op] message ", value, ...): throws ErrorType when cond is false.
#define MLM_CHECK(cond, ErrorType, ...)                                  \
  do {                                                                    \
    if (!(cond)) throw ::metalm::ErrorType(::metalm::detail::cat(__VA_ARGS__)); \
  } while (0)
