// safetensors read and write. The whole header is validated before any tensor is allocated, and a
// valid header bounds every allocation by the size of the input, so a hostile file cannot make the
// loader allocate more than the file holds.
#include "metalm/io/safetensors.h"

#include "metalm/core/file.h"
#include "metalm/io/json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

namespace metalm::io {
namespace {

// Tensor bytes are copied as they are; safetensors stores them little-endian.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O copies raw bytes and assumes a little-endian host");

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the bound of the reference implementation
constexpr size_t kMaxQuoted = 120;                 // longest name or JSON value put in a message

template <typename... Args>
[[noreturn]] void format_error(const std::string& what, const Args&... args) {
  throw FormatError(detail::cat("[safetensors] ", what, ": ", args...));
}
template <typename... Args>
[[noreturn]] void io_error(const std::string& what, const Args&... args) {
  throw IoError(detail::cat("[safetensors] ", what, ": ", args...));
}

// A JSON value for a message, cut like quote().
std::string short_dump(const json& v) {
  std::string d = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return d.size() > kMaxQuoted ? d.substr(0, kMaxQuoted) + "..." : d;
}
// shape_str, except for absurd ranks that would flood the message.
std::string shape_text(const Shape& shape) {
  return shape.size() <= 16 ? shape_str(shape) : detail::cat("<rank-", shape.size(), " shape>");
}

// A dtype as stored: its name, size, and the dtype it reads as (F16 is converted to f32; the
// core has no f16). The writer writes only dtypes that read as themselves.
struct StoredDType {
  const char* name;
  DType dtype;
  uint64_t size;
};
constexpr StoredDType kDTypes[] = {{"F32", DType::f32, 4},   {"F64", DType::f64, 8},
                                   {"BF16", DType::bf16, 2}, {"F16", DType::f32, 2},
                                   {"I32", DType::i32, 4},   {"I64", DType::i64, 8},
                                   {"U8", DType::u8, 1}};

const char* safetensors_dtype_name(DType dtype) {
  for (const StoredDType& d : kDTypes)
    if (d.dtype == dtype && d.size == dtype_size(dtype)) return d.name;
  throw DTypeError(detail::cat("[safetensors] no safetensors name for dtype ", dtype_name(dtype)));
}

const StoredDType& stored_dtype(const std::string& name) {
  for (const StoredDType& d : kDTypes)
    if (name == d.name) return d;
  throw std::logic_error("unvalidated dtype " + name);
}

// One tensor of the header; offsets are relative to the start of the data section.
struct Entry {
  std::string name;
  std::string stored;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};
struct Header {
  std::vector<Entry> entries;  // sorted by data offset; they tile the data section exactly
  Metadata metadata;
};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Checks the 8-byte length prefix against the file size; returns the header length.
uint64_t check_header_length(const uint8_t* prefix, uint64_t file_size, const std::string& what) {
  if (file_size < 8)
    format_error(what, "file is ", file_size, " bytes, shorter than the 8-byte header length");
  uint64_t n = read_u64_le(prefix);
  if (n > kMaxHeaderBytes)
    format_error(what, "header length ", n, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (n > file_size - 8)
    format_error(what, "header length ", n, " exceeds the ", file_size - 8,
                 " bytes that follow the length prefix (truncated file?)");
  return n;
}

json parse_header_json(const char* text, size_t size, const std::string& what) {
  // The header is bounded by check_header_length; this reader adds the duplicate-key rule.
  return parse_json(std::string_view(text, size), JsonWhere{"safetensors", what}, "header",
                    JsonLimits{kMaxHeaderBytes, 64});
}

// A JSON integer >= 0 (nlohmann stores "-0" as a signed integer, so accept that too).
bool get_non_negative(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

Entry parse_entry(const std::string& name, const json& v, uint64_t data_size,
                  const std::string& what) {
  const std::string t = "tensor " + quote(name, kMaxQuoted);
  if (!v.is_object()) format_error(what, t, ": entry is a JSON ", v.type_name(), ", not an object");
  for (const auto& item : v.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      format_error(what, t, ": unknown field ", quote(item.key(), kMaxQuoted),
                   " (expected dtype, shape, data_offsets)");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) format_error(what, t, ": missing field \"", field, "\"");

  Entry e;
  e.name = name;
  const json& jdtype = v.at("dtype");
  if (!jdtype.is_string())
    format_error(what, t, ": dtype is a JSON ", jdtype.type_name(), ", not a string");
  const std::string& dname = jdtype.get_ref<const std::string&>();
  const StoredDType* found = nullptr;
  for (const StoredDType& d : kDTypes)
    if (dname == d.name) found = &d;
  if (!found)
    format_error(what, t, ": unsupported dtype ", quote(dname, kMaxQuoted),
                 " (metalm reads F32, F64, BF16, F16, I32, I64, U8)");
  e.stored = found->name;
  e.dtype = found->dtype;

  const json& jshape = v.at("shape");
  if (!jshape.is_array())
    format_error(what, t, ": shape is a JSON ", jshape.type_name(), ", not an array");
  // The product of the non-zero dims must fit in int64: the core computes numel and strides with
  // plain multiplications, and would overflow on [2^40, 2^40, 0] although it holds no element.
  int64_t numel_nonzero = 1;
  bool has_zero = false;
  for (size_t i = 0; i < jshape.size(); ++i) {
    uint64_t d = 0;
    if (!get_non_negative(jshape[i], d))
      format_error(what, t, ": shape[", i, "] is ", short_dump(jshape[i]),
                   ", not a non-negative integer");
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      format_error(what, t, ": shape[", i, "] = ", d, " does not fit in int64");
    e.shape.push_back(static_cast<int64_t>(d));
    if (d == 0)
      has_zero = true;
    else if (__builtin_mul_overflow(numel_nonzero, static_cast<int64_t>(d), &numel_nonzero))
      format_error(what, t, ": shape ", shape_text(e.shape), "... has too many elements for int64");
  }
  const uint64_t numel = has_zero ? 0 : static_cast<uint64_t>(numel_nonzero);

  const json& joff = v.at("data_offsets");
  if (!joff.is_array() || joff.size() != 2 || !get_non_negative(joff[0], e.begin) ||
      !get_non_negative(joff[1], e.end))
    format_error(what, t, ": data_offsets must be two non-negative integers, got ",
                 short_dump(joff));
  if (e.begin > e.end)
    format_error(what, t, ": data_offsets [", e.begin, ", ", e.end, "] have begin > end");
  if (e.end > data_size)
    format_error(what, t, ": data_offsets [", e.begin, ", ", e.end,
                 "] reach beyond the data section of ", data_size, " bytes");
  const uint64_t nbytes = e.end - e.begin, esize = found->size;
  if (nbytes % esize != 0 || nbytes / esize != numel)
    format_error(what, t, ": ", dname, " shape ", shape_text(e.shape), " needs ", numel, " x ",
                 esize, " bytes, but data_offsets [", e.begin, ", ", e.end, "] span ", nbytes);
  return e;
}

Metadata parse_metadata(const json& v, const std::string& what) {
  if (!v.is_object())
    format_error(what, "__metadata__ is a JSON ", v.type_name(), ", not an object of strings");
  Metadata m;
  for (const auto& item : v.items()) {
    if (!item.value().is_string())
      format_error(what, "__metadata__ value of ", quote(item.key(), kMaxQuoted), " is a JSON ",
                   item.value().type_name(), ", not a string");
    m.emplace(item.key(), item.value().get<std::string>());
  }
  return m;
}

// Parses and validates the header of a file whose data section is data_size bytes.
Header parse_header(const char* text, size_t size, uint64_t data_size, const std::string& what) {
  json root = parse_header_json(text, size, what);
  if (!root.is_object())
    format_error(what, "header is a JSON ", root.type_name(), ", not an object");
  Header h;
  for (const auto& item : root.items()) {
    if (item.key() == "__metadata__") {
      h.metadata = parse_metadata(item.value(), what);
      continue;
    }
    // The reference accepts "", but save_safetensors refuses it: keep every loaded map saveable.
    if (item.key().empty()) format_error(what, "empty tensor name");
    h.entries.push_back(parse_entry(item.key(), item.value(), data_size, what));
  }
  // The tensors must tile the data section: sorted by offset, each begins where the last ended.
  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin < pos)  // then prev->begin <= e.begin < prev->end
      format_error(what, "tensors ", quote(prev->name, kMaxQuoted), " [", prev->begin, ", ", prev->end,
                   ") and ", quote(e.name, kMaxQuoted), " [", e.begin, ", ", e.end, ") overlap");
    if (e.begin > pos)
      format_error(what, "gap of ", e.begin - pos, " bytes in the data section at offset ", pos,
                   " (before tensor ", quote(e.name, kMaxQuoted), ")");
    pos = e.end;
    prev = &e;
  }
  if (pos != data_size)
    format_error(what, data_size - pos, " trailing bytes after the last tensor (the tensors cover ",
                 pos, " of ", data_size, " data bytes)");
  return h;
}

// Converts n stored elements at src (dtype `stored`) into dst (dtype `to`, a float dtype, or the
// stored dtype itself).
void convert(const void* src, const StoredDType& stored, void* dst, DType to, uint64_t n) {
  if (stored.dtype == to && stored.size == dtype_size(to)) {
    std::memcpy(dst, src, n * stored.size);
    return;
  }
  // Through f64 one element at a time: exact for every float source; rounding only into a
  // narrower destination (f64 -> f32, anything -> bf16), to nearest even.
  auto load = [&](uint64_t i) -> double {
    const auto* p = static_cast<const uint8_t*>(src) + i * stored.size;
    if (std::strcmp(stored.name, "F16") == 0) {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return half_to_float(h);
    }
    if (stored.dtype == DType::bf16) {
      bf16 b;
      std::memcpy(&b, p, 2);
      return bf16_to_f32(b);
    }
    if (stored.dtype == DType::f32) {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    double d;
    std::memcpy(&d, p, 8);
    return d;
  };
  for (uint64_t i = 0; i < n; ++i) {
    const double v = load(i);
    switch (to) {
      case DType::f32: static_cast<float*>(dst)[i] = static_cast<float>(v); break;
      case DType::f64: static_cast<double*>(dst)[i] = v; break;
      case DType::bf16: static_cast<bf16*>(dst)[i] = f32_to_bf16(static_cast<float>(v)); break;
      default: throw std::logic_error("convert: not a float destination");
    }
  }
}

TensorInfo info_of(const Entry& e, uint64_t data_start) {
  return {e.name, e.stored, e.dtype, e.shape, data_start + e.begin, e.end - e.begin};
}

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf, NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    bits = sign;  // +-0
  } else {  // subnormal: man * 2^-24, normalised
    int shift = 0;
    uint32_t m = man;
    while (!(m & 0x400u)) m <<= 1, ++shift;
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((m & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  const uint64_t n = check_header_length(data, size, what);
  const uint64_t data_size = size - 8 - n;
  Header h = parse_header(reinterpret_cast<const char*>(data + 8), n, data_size, what);
  const uint8_t* section = data + 8 + n;
  SafetensorsFile out;
  for (Entry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const StoredDType& sd = stored_dtype(e.stored);
    if (e.end > e.begin) convert(section + e.begin, sd, t.raw_data(), e.dtype, (e.end - e.begin) / sd.size);
    out.tensors.emplace(std::move(e.name), std::move(t));
  }
  out.metadata = std::move(h.metadata);
  return out;
}

SafetensorsReader::SafetensorsReader(const std::string& path)
    : path_(path) {
  uint64_t file_size = 0;
  fd_ = open_regular_file(path, "safetensors", &file_size);
  uint8_t prefix[8] = {};
  if (file_size >= 8) read_exact_at(fd_.get(), prefix, 8, 0, "safetensors", path);
  const uint64_t n = check_header_length(prefix, file_size, path);
  std::string text(n, '\0');
  read_exact_at(fd_.get(), text.data(), n, 8, "safetensors", path);
  Header h = parse_header(text.data(), n, file_size - 8 - n, path);
  data_start_ = 8 + n;
  for (const Entry& e : h.entries) entries_.push_back(info_of(e, data_start_));
  metadata_ = std::move(h.metadata);
}

const TensorInfo* SafetensorsReader::find(const std::string& name) const {
  for (const TensorInfo& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

void SafetensorsReader::read_elements(const TensorInfo& e, uint64_t first, uint64_t count,
                                      const Tensor& dst) const {
  MLM_CHECK(dst.is_contiguous(), ValueError, "[safetensors] reads need a contiguous tensor");
  const StoredDType& sd = stored_dtype(e.stored);
  const bool same = sd.dtype == dst.dtype() && sd.size == dtype_size(dst.dtype());
  MLM_CHECK(same || (dtype_is_float(sd.dtype) && dtype_is_float(dst.dtype())), ValueError,
            "[safetensors] ", path_, ": tensor ", quote(e.name, kMaxQuoted), " is ", e.stored,
            ", which does not convert to ", dst.str());
  const uint64_t start = e.offset + first * sd.size;
  if (same) {
    if (count > 0) read_exact_at(fd_.get(), dst.raw_data(), count * sd.size, start, "safetensors", path_);
    return;
  }
  constexpr uint64_t kChunk = 1 << 22;  // the conversion buffer
  const uint64_t per_chunk = kChunk / sd.size;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(count, per_chunk) * sd.size));
  auto* out = static_cast<uint8_t*>(dst.raw_data());
  for (uint64_t i = 0; i < count; i += per_chunk) {
    const uint64_t k = std::min(per_chunk, count - i);
    read_exact_at(fd_.get(), buf.data(), k * sd.size, start + i * sd.size, "safetensors", path_);
    convert(buf.data(), sd, out + i * dtype_size(dst.dtype()), dst.dtype(), k);
  }
}

void SafetensorsReader::read_into(const std::string& name, const Tensor& dst) const {
  const TensorInfo* e = find(name);
  MLM_CHECK(e != nullptr, ValueError, "[safetensors] ", path_, ": no tensor ", quote(name, kMaxQuoted));
  MLM_CHECK(dst.shape() == e->shape, ValueError, "[safetensors] ", path_, ": tensor ", quote(name, kMaxQuoted),
            " is ", e->stored, shape_text(e->shape), ", the destination ", dst.str());
  read_elements(*e, 0, static_cast<uint64_t>(dst.numel()), dst);
}

void SafetensorsReader::read_rows_into(const std::string& name, int64_t row_begin,
                                       const Tensor& dst) const {
  const TensorInfo* e = find(name);
  MLM_CHECK(e != nullptr, ValueError, "[safetensors] ", path_, ": no tensor ", quote(name, kMaxQuoted));
  Shape rest = dst.shape();
  MLM_CHECK(!e->shape.empty() && !rest.empty() && row_begin >= 0 &&
                row_begin + rest[0] <= e->shape[0] &&
                Shape(e->shape.begin() + 1, e->shape.end()) == Shape(rest.begin() + 1, rest.end()),
            ValueError, "[safetensors] ", path_, ": rows ", row_begin, " .. ", row_begin + rest[0],
            " of ", quote(name, kMaxQuoted), " ", shape_text(e->shape), " do not fit ", dst.str());
  const uint64_t row = static_cast<uint64_t>(shape_numel(Shape(rest.begin() + 1, rest.end())));
  read_elements(*e, static_cast<uint64_t>(row_begin) * row, static_cast<uint64_t>(dst.numel()), dst);
}

Tensor SafetensorsReader::read(const std::string& name) const {
  const TensorInfo* e = find(name);
  MLM_CHECK(e != nullptr, ValueError, "[safetensors] ", path_, ": no tensor ", quote(name, kMaxQuoted));
  Tensor t = Tensor::empty(e->shape, e->dtype);
  read_into(name, t);
  return t;
}

SafetensorsFile load_safetensors(const std::string& path) {
  SafetensorsReader reader(path);
  SafetensorsFile out;
  for (const TensorInfo& e : reader.entries()) out.tensors.emplace(e.name, reader.read(e.name));
  out.metadata = reader.metadata();
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  // Every argument is checked before the temporary file exists.
  for (const auto& [name, t] : tensors) {
    MLM_CHECK(!name.empty(), ValueError, "[safetensors] ", path, ": empty tensor name");
    MLM_CHECK(name != "__metadata__", ValueError, "[safetensors] ", path,
              ": tensor name \"__metadata__\" is reserved for the metadata");
    MLM_CHECK(t.defined(), ValueError, "[safetensors] ", path, ": tensor ", quote(name, kMaxQuoted),
              " is undefined");
  }
  // Data layout: larger elements first, then by name (as the reference writer does), so that
  // every tensor starts at a multiple of its element size in the 8-aligned data section.
  std::vector<const TensorMap::value_type*> layout;
  for (const auto& kv : tensors) layout.push_back(&kv);
  std::stable_sort(layout.begin(), layout.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype()) > dtype_size(b->second.dtype());
  });
  std::map<std::string, std::pair<uint64_t, uint64_t>> offsets;
  uint64_t pos = 0;
  for (const auto* kv : layout) {
    uint64_t nbytes = kv->second.nbytes();
    offsets[kv->first] = {pos, pos + nbytes};
    pos += nbytes;
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const auto& [name, t] : tensors) {
    const auto& [begin, end] = offsets.at(name);
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {begin, end}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(detail::cat("[safetensors] ", path,
                                 ": a tensor name or metadata string is not valid UTF-8 (",
                                 e.what(), ")"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned

  AtomicFile tmp("safetensors", path);
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  tmp.write(prefix, 8);
  tmp.write(text.data(), text.size());
  for (const auto* kv : layout) {
    // One contiguous copy at a time (views are copied, contiguous tensors are not); detach so
    // the copy records no autograd node.
    Tensor c = kv->second.detach().contiguous();
    if (c.nbytes() > 0) tmp.write(c.raw_data(), c.nbytes());
  }
  tmp.commit();
}

}  // namespace metalm::io
