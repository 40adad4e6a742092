// safetensors read and write with strict validation (https://github.com/huggingface/safetensors
// format: u64 little-endian header length, JSON header, then the raw little-endian data).
// Reading is by tensor: SafetensorsReader validates the header alone, then reads each tensor
// straight into a destination the caller owns (a model's parameter), so loading a model needs no
// second copy of its weights. F16 data (most published checkpoints) is converted on read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "metalm/core/file.h"
#include "metalm/core/tensor.h"

namespace metalm::io {

using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;  // the optional "__metadata__" string map
};

// One tensor of a file's header.
struct TensorInfo {
  std::string name;
  std::string stored;  // the file's dtype name: F32, F64, BF16, F16, I32, I64, U8
  DType dtype;         // what it reads as: F16 becomes f32, the others their own dtype
  Shape shape;
  uint64_t offset = 0, nbytes = 0;  // in the file
};

// Opens a file and validates its header: any violation (header length bound, JSON shape, dtype
// names, offsets inside the data and non-overlapping and covering it, shape x dtype = byte
// size) is a FormatError naming the file and the problem; IoError if it cannot be read. Holds
// the file open; reads tensors on request.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& entries() const { return entries_; }  // sorted by offset
  const TensorInfo* find(const std::string& name) const;  // null if absent
  const Metadata& metadata() const { return metadata_; }

  // Reads tensor `name` into dst (same shape, contiguous). Float data converts to dst's float
  // dtype (F16, BF16, F32, F64 -> f32 or f64 or bf16); integer data needs dst of its own
  // dtype. Converting reads go through one buffer of at most 4 MiB; same-dtype reads go
  // directly into dst. ValueError for a wrong shape or dtype, naming the tensor.
  void read_into(const std::string& name, const Tensor& dst) const;
  // Rows [row_begin, row_begin + dst.size(0)) of the tensor along dim 0 into dst (whose other
  // dims match the tensor's), converted like read_into: a bounded read of a large table.
  void read_rows_into(const std::string& name, int64_t row_begin, const Tensor& dst) const;
  // A new tensor of the entry's dtype.
  Tensor read(const std::string& name) const;

 private:
  // Reads `count` elements starting at element `first` of e into dst (contiguous, dst's dtype).
  void read_elements(const TensorInfo& e, uint64_t first, uint64_t count, const Tensor& dst) const;

  std::string path_;
  FileDescriptor fd_;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> entries_;
  Metadata metadata_;
};

// Every tensor of a file (F16 as f32). Errors as SafetensorsReader.
SafetensorsFile load_safetensors(const std::string& path);
// Same, on bytes in memory; `what` names the source in error messages (fuzzing entry point).
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what);

// Writes atomically (temporary file + rename). Tensors may be non-contiguous views.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const Metadata& metadata = {});

// IEEE half -> float (exact: every half is a float), for F16 data.
float half_to_float(uint16_t h);

}  // namespace metalm::io
