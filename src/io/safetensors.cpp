// safetensors read and write. The whole header is validated before any tensor is allocated, and a
// valid header bounds every allocation by the size of the input, so a hostile file cannot make the
// loader allocate more than the file holds.
#include "metalm/io/safetensors.h"

#include "metalm/core/file.h"

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

// A string from the file, JSON-quoted (control characters escaped) and cut to a readable length,
// so that an error message stays on one line whatever the file contains.
std::string quoted(const std::string& s) {
  bool cut = s.size() > kMaxQuoted;
  std::string q =
      json(cut ? s.substr(0, kMaxQuoted) : s).dump(-1, ' ', false, json::error_handler_t::replace);
  return cut ? q + "..." : q;
}
// A JSON value for a message, cut like quoted().
std::string short_dump(const json& v) {
  std::string d = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return d.size() > kMaxQuoted ? d.substr(0, kMaxQuoted) + "..." : d;
}
// shape_str, except for absurd ranks that would flood the message.
std::string shape_text(const Shape& shape) {
  return shape.size() <= 16 ? shape_str(shape) : detail::cat("<rank-", shape.size(), " shape>");
}

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kDTypeNames[] = {{"F32", DType::f32},   {"F64", DType::f64},
                                     {"BF16", DType::bf16}, {"I32", DType::i32},
                                     {"I64", DType::i64},   {"U8", DType::u8}};

const char* safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  throw DTypeError(detail::cat("[safetensors] no safetensors name for dtype ", dtype_name(dtype)));
}

// One tensor of the header; offsets are relative to the start of the data section.
struct Entry {
  std::string name;
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

json parse_json(const char* text, size_t size, const std::string& what) {
  // nlohmann keeps the last of duplicate keys silently. The parser callback sees every key, so
  // track the keys of each open object and refuse the second occurrence.
  std::vector<std::unordered_set<std::string>> open_keys;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_keys.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!open_keys.back().insert(key).second) {
          if (open_keys.size() == 1) format_error(what, "duplicate top-level key ", quoted(key));
          format_error(what, "duplicate key ", quoted(key), " inside a header entry");
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, text + size, callback);
  } catch (const json::exception& e) {
    // nlohmann quotes the token it failed on, which can be as long as the header
    std::string m = e.what();
    if (m.size() > 4 * kMaxQuoted) m = m.substr(0, 4 * kMaxQuoted) + "...";
    format_error(what, "header is not valid JSON: ", m);
  }
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
  const std::string t = "tensor " + quoted(name);
  if (!v.is_object()) format_error(what, t, ": entry is a JSON ", v.type_name(), ", not an object");
  for (const auto& item : v.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      format_error(what, t, ": unknown field ", quoted(item.key()),
                   " (expected dtype, shape, data_offsets)");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) format_error(what, t, ": missing field \"", field, "\"");

  Entry e;
  e.name = name;
  const json& jdtype = v.at("dtype");
  if (!jdtype.is_string())
    format_error(what, t, ": dtype is a JSON ", jdtype.type_name(), ", not a string");
  const std::string& dname = jdtype.get_ref<const std::string&>();
  const DTypeName* found = nullptr;
  for (const DTypeName& d : kDTypeNames)
    if (dname == d.name) found = &d;
  if (!found)
    format_error(what, t, ": unsupported dtype ", quoted(dname),
                 " (metalm reads F32, F64, BF16, I32, I64, U8)");
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
  const uint64_t nbytes = e.end - e.begin, esize = dtype_size(e.dtype);
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
      format_error(what, "__metadata__ value of ", quoted(item.key()), " is a JSON ",
                   item.value().type_name(), ", not a string");
    m.emplace(item.key(), item.value().get<std::string>());
  }
  return m;
}

// Parses and validates the header of a file whose data section is data_size bytes.
Header parse_header(const char* text, size_t size, uint64_t data_size, const std::string& what) {
  json root = parse_json(text, size, what);
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
      format_error(what, "tensors ", quoted(prev->name), " [", prev->begin, ", ", prev->end,
                   ") and ", quoted(e.name), " [", e.begin, ", ", e.end, ") overlap");
    if (e.begin > pos)
      format_error(what, "gap of ", e.begin - pos, " bytes in the data section at offset ", pos,
                   " (before tensor ", quoted(e.name), ")");
    pos = e.end;
    prev = &e;
  }
  if (pos != data_size)
    format_error(what, data_size - pos, " trailing bytes after the last tensor (the tensors cover ",
                 pos, " of ", data_size, " data bytes)");
  return h;
}

}  // namespace

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  const uint64_t n = check_header_length(data, size, what);
  const uint64_t data_size = size - 8 - n;
  Header h = parse_header(reinterpret_cast<const char*>(data + 8), n, data_size, what);
  const uint8_t* section = data + 8 + n;
  SafetensorsFile out;
  for (Entry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.raw_data(), section + e.begin, e.end - e.begin);
    out.tensors.emplace(std::move(e.name), std::move(t));
  }
  out.metadata = std::move(h.metadata);
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) io_error(path, "cannot open: ", errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) io_error(path, "cannot stat: ", errno_text(errno));
  if (S_ISDIR(st.st_mode)) io_error(path, "cannot read: ", errno_text(EISDIR));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint8_t prefix[8] = {};
  if (file_size >= 8) read_exact(fd.get(), prefix, 8, "safetensors", path);
  const uint64_t n = check_header_length(prefix, file_size, path);
  Header h;
  {
    std::string text(n, '\0');
    read_exact(fd.get(), text.data(), n, "safetensors", path);
    h = parse_header(text.data(), n, file_size - 8 - n, path);
  }
  // Read each tensor straight into its storage (no second copy of the file in memory); the
  // entries are sorted by offset and tile the data section, so the reads are sequential.
  SafetensorsFile out;
  for (Entry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    read_exact(fd.get(), t.raw_data(), e.end - e.begin, "safetensors", path);
    out.tensors.emplace(std::move(e.name), std::move(t));
  }
  out.metadata = std::move(h.metadata);
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  // Every argument is checked before the temporary file exists.
  for (const auto& [name, t] : tensors) {
    MLM_CHECK(!name.empty(), ValueError, "[safetensors] ", path, ": empty tensor name");
    MLM_CHECK(name != "__metadata__", ValueError, "[safetensors] ", path,
              ": tensor name \"__metadata__\" is reserved for the metadata");
    MLM_CHECK(t.defined(), ValueError, "[safetensors] ", path, ": tensor ", quoted(name),
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
