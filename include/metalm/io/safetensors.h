// safetensors read and write with strict validation (https://github.com/huggingface/safetensors
// format: u64 little-endian header length, JSON header, then the raw little-endian data).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "metalm/core/tensor.h"

namespace metalm::io {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;  // the optional "__metadata__" string map
};

// Throws FormatError naming the file and the problem for any violation (header length bound,
// JSON shape, dtype names, offsets inside the data and non-overlapping and covering it,
// shape x dtype = byte size), IoError if the file cannot be read.
SafetensorsFile load_safetensors(const std::string& path);
// Same, on bytes in memory; `what` names the source in error messages (fuzzing entry point).
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what);

// Writes atomically (temporary file + rename). Tensors may be non-contiguous views.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const Metadata& metadata = {});

}  // namespace metalm::io
