// safetensors: bit-exact round trips of every dtype and of views, atomic writes, and rejection of
// hostile files (each built byte by byte) with a message that names the file and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/io/safetensors.h"

using namespace metalm;
using metalm::io::load_safetensors;
using metalm::io::parse_safetensors;
using metalm::io::save_safetensors;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("metalm_st_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Files in the directory other than `keep`: temp files left behind would show up here.
  std::vector<std::string> others(const std::string& keep) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename() != keep) out.push_back(e.path().filename().string());
    return out;
  }
  fs::path dir_;
};

// Bytes of a safetensors file: u64 little-endian length (the header's unless given), header, data.
std::string st_bytes(const std::string& header, const std::string& data = "",
                     std::optional<uint64_t> length = std::nullopt) {
  uint64_t n = length.value_or(header.size());
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// f() throws E whose message starts with `prefix` and contains `phrase`.
template <typename E>
::testing::AssertionResult throws(const std::function<void()>& f, const std::string& prefix,
                                  const std::string& phrase) {
  try {
    f();
  } catch (const E& e) {
    std::string m = e.what();
    if (m.rfind(prefix, 0) != 0)
      return ::testing::AssertionFailure()
             << "message does not start with '" << prefix << "': " << m;
    if (m.find(phrase) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks '" << phrase << "': " << m;
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "wrong exception type: " << e.what();
  }
  return ::testing::AssertionFailure() << "nothing thrown (expected '" << phrase << "')";
}

// Raw bytes of a tensor in row-major order (bit-exact comparison, NaN payloads included).
std::string bytes_of(const Tensor& t) {
  Tensor c = t.detach().contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

void expect_same(const Tensor& got, const Tensor& want, const std::string& name) {
  ASSERT_TRUE(got.defined()) << name;
  EXPECT_EQ(got.dtype(), want.dtype()) << name;
  EXPECT_EQ(got.shape(), want.shape()) << name;
  EXPECT_TRUE(got.is_contiguous()) << name;
  EXPECT_EQ(bytes_of(got), bytes_of(want)) << name;
}

TensorMap every_dtype() {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float denorm = std::numeric_limits<float>::denorm_min();
  TensorMap m;
  m["f32"] =
      Tensor::from_vector<float>({2, 4}, {0.0f, -0.0f, 1.5f, -3.25e-7f, inf, -inf, nan, denorm});
  m["f64"] = Tensor::from_vector<double>({3}, {std::numbers::pi, -1e300, 4.9e-324});
  // bf16 by bit pattern: 1.0, -2.0, +inf, a NaN with payload, the smallest subnormal, 0x3e80
  m["bf16"] = Tensor::from_vector<bf16>(
      {2, 3}, {bf16{0x3f80}, bf16{0xc000}, bf16{0x7f80}, bf16{0x7fc1}, bf16{0x0001}, bf16{0x3e80}});
  m["i32"] = Tensor::from_vector<int32_t>(
      {4}, {0, -1, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()});
  // beyond 2^53: would not survive a round trip through double
  m["i64"] = Tensor::from_vector<int64_t>(
      {2, 2}, {(int64_t{1} << 53) + 1, -(int64_t{1} << 62) - 7, std::numeric_limits<int64_t>::min(),
               std::numeric_limits<int64_t>::max()});
  std::vector<uint8_t> u8(256);
  for (int i = 0; i < 256; ++i) u8[i] = static_cast<uint8_t>(255 - i);
  m["u8"] = Tensor::from_vector<uint8_t>({16, 16}, u8);
  return m;
}

}  // namespace

// ---------------------------------------------------------------- round trips

TEST_F(Safetensors, RoundTripEveryDTypeBitExact) {
  TensorMap m = every_dtype();
  save_safetensors(path("a.safetensors"), m);
  io::SafetensorsFile f = load_safetensors(path("a.safetensors"));
  ASSERT_EQ(f.tensors.size(), m.size());
  for (const auto& [name, t] : m) expect_same(f.tensors.at(name), t, name);
  EXPECT_TRUE(f.metadata.empty());
  // The same bytes parsed from memory give the same tensors.
  std::string raw = read_file(path("a.safetensors"));
  io::SafetensorsFile g =
      parse_safetensors(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), "mem");
  for (const auto& [name, t] : m) expect_same(g.tensors.at(name), t, name);
}

TEST_F(Safetensors, FileLayoutIsAlignedAndPadded) {
  save_safetensors(path("a.safetensors"), every_dtype(), {{"k", "v"}});
  std::string raw = read_file(path("a.safetensors"));
  ASSERT_GE(raw.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u);  // the data section starts 8-byte aligned
  std::string header = raw.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));  // padded with spaces only
  // larger elements first, so each tensor starts at a multiple of its element size
  EXPECT_NE(header.find("\"data_offsets\":[0,24]"), std::string::npos) << header;  // f64 [3]
}

TEST_F(Safetensors, ZeroSizeAndScalarTensors) {
  TensorMap m;
  m["empty"] = Tensor::zeros({0}, DType::f32);
  m["empty3d"] = Tensor::zeros({3, 0, 2}, DType::i64);
  m["scalar"] = Tensor::scalar(2.5, DType::f64);
  m["scalar_bf16"] = Tensor::scalar(-1.0, DType::bf16);
  save_safetensors(path("z.safetensors"), m);
  io::SafetensorsFile f = load_safetensors(path("z.safetensors"));
  for (const auto& [name, t] : m) expect_same(f.tensors.at(name), t, name);
  EXPECT_EQ(f.tensors.at("scalar").shape(), Shape{});
  EXPECT_EQ(f.tensors.at("scalar").item<double>(), 2.5);
  EXPECT_EQ(f.tensors.at("empty3d").shape(), (Shape{3, 0, 2}));

  // A file with no tensors at all.
  save_safetensors(path("none.safetensors"), {});
  EXPECT_TRUE(load_safetensors(path("none.safetensors")).tensors.empty());
}

TEST_F(Safetensors, NonContiguousViewsAreSavedInLogicalOrder) {
  Tensor base = Tensor::arange(24, DType::f32).reshape({2, 3, 4});
  base.set_requires_grad();
  TensorMap m;
  m["permuted"] = base.permute({2, 0, 1});                                         // [4, 2, 3]
  m["sliced"] = base.slice(2, 1, 3);                                               // [2, 3, 2]
  m["expanded"] = Tensor::from_vector<int32_t>({3, 1}, {7, 8, 9}).expand({3, 4});  // stride 0
  m["offset"] = Tensor::arange(10, DType::i64).slice(0, 3, 7);  // storage offset 3
  ASSERT_FALSE(m["permuted"].is_contiguous());
  save_safetensors(path("v.safetensors"), m);
  io::SafetensorsFile f = load_safetensors(path("v.safetensors"));
  std::vector<float> p = f.tensors.at("permuted").to_vector<float>();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(p[(i * 2 + j) * 3 + k], j * 12 + k * 4 + i);
  EXPECT_EQ(f.tensors.at("sliced").to_vector<float>(),
            (std::vector<float>{1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22}));
  EXPECT_EQ(f.tensors.at("expanded").to_vector<int32_t>(),
            (std::vector<int32_t>{7, 7, 7, 7, 8, 8, 8, 8, 9, 9, 9, 9}));
  EXPECT_EQ(f.tensors.at("offset").to_vector<int64_t>(), (std::vector<int64_t>{3, 4, 5, 6}));
  for (const auto& [name, t] : m) expect_same(f.tensors.at(name), t, name);
  EXPECT_FALSE(f.tensors.at("permuted").requires_grad());
}

TEST_F(Safetensors, MetadataRoundTrip) {
  io::Metadata md = {{"format", "pt"},
                     {"empty", ""},
                     {"unicode \xc3\xa9\xe2\x82\xac", "quote \" backslash \\ newline \n"},
                     {"step", "1200"}};
  save_safetensors(path("m.safetensors"), {{"w", Tensor::ones({2})}}, md);
  io::SafetensorsFile f = load_safetensors(path("m.safetensors"));
  EXPECT_EQ(f.metadata, md);
  expect_same(f.tensors.at("w"), Tensor::ones({2}), "w");
}

TEST_F(Safetensors, AcceptsHandWrittenValidHeaders) {
  // Metadata first, keys in any order, whitespace around, zero-size tensor sharing an offset.
  std::string h = R"( {"__metadata__": {"a": "b"}, "y": {"shape": [2], "data_offsets": [4, 12], )"
                  R"("dtype": "I32"}, "x": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, )"
                  R"("e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 4]}}  )";
  std::string data = {1, 2, 3, 4, 5, 0, 0, 0, -1, -1, -1, -1};
  write_file(path("h.safetensors"), st_bytes(h, data));
  io::SafetensorsFile f = load_safetensors(path("h.safetensors"));
  EXPECT_EQ(f.metadata.at("a"), "b");
  EXPECT_EQ(f.tensors.at("x").to_vector<uint8_t>(), (std::vector<uint8_t>{1, 2, 3, 4}));
  EXPECT_EQ(f.tensors.at("y").to_vector<int32_t>(), (std::vector<int32_t>{5, -1}));
  EXPECT_EQ(f.tensors.at("e").shape(), (Shape{0, 5}));
}

// ---------------------------------------------------------------- atomic writes

TEST_F(Safetensors, WriteReplacesTargetAndLeavesNoTempFile) {
  const std::string target = path("model.safetensors");
  write_file(target, "old contents, not a safetensors file");
  save_safetensors(target, {{"w", Tensor::full({3}, 4.0)}});
  EXPECT_EQ(load_safetensors(target).tensors.at("w").to_vector<float>(),
            (std::vector<float>{4, 4, 4}));
  save_safetensors(target, {{"v", Tensor::full({1}, 5.0, DType::i32)}});
  io::SafetensorsFile f = load_safetensors(target);
  EXPECT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors.at("v").item<int32_t>(), 5);
  EXPECT_TRUE(others("model.safetensors").empty());
}

TEST_F(Safetensors, FailedWriteKeepsTargetAndCleansUp) {
  const std::string target = path("model.safetensors");
  save_safetensors(target, {{"w", Tensor::ones({2})}});
  const std::string before = read_file(target);
  const std::string pre = "[safetensors] " + target + ": ";
  EXPECT_TRUE(throws<ValueError>(
      [&] {
        save_safetensors(target, {{"", Tensor::ones({1})}});
      },
      pre, "empty tensor name"));
  EXPECT_TRUE(throws<ValueError>(
      [&] {
        save_safetensors(target, {{"__metadata__", Tensor::ones({1})}});
      },
      pre, "reserved"));
  EXPECT_TRUE(throws<ValueError>(
      [&] {
        save_safetensors(target, {{"u", Tensor()}});
      },
      pre, "\"u\" is undefined"));
  EXPECT_TRUE(throws<ValueError>(
      [&] {
        save_safetensors(target, {{"bad \xff utf8", Tensor::ones({1})}});
      },
      pre, "not valid UTF-8"));
  EXPECT_EQ(read_file(target), before);
  EXPECT_TRUE(others("model.safetensors").empty());
  // The target's directory does not exist: IoError, nothing created.
  const std::string missing = path("no/such/dir/x.safetensors");
  EXPECT_TRUE(throws<IoError>(
      [&] {
        save_safetensors(missing, {{"w", Tensor::ones({1})}});
      },
      "[safetensors] " + missing + ": ", "cannot create"));
  // The target is a directory: the rename fails and the temp file is removed.
  fs::create_directories(path("adir"));
  EXPECT_TRUE(throws<IoError>(
      [&] {
        save_safetensors(path("adir"), {{"w", Tensor::ones({1})}});
      },
      "[safetensors] ", "cannot rename"));
  std::vector<std::string> left = others("model.safetensors");
  EXPECT_EQ(left, (std::vector<std::string>{"adir"}));
}

// ---------------------------------------------------------------- rejections

namespace {

// `bytes` is refused with a FormatError containing `phrase`, both from a file (the message names
// the path) and from memory (the message names `what`).
::testing::AssertionResult rejected(const std::string& file, const std::string& bytes,
                                    const std::string& phrase) {
  write_file(file, bytes);
  auto r =
      throws<FormatError>([&] { load_safetensors(file); }, "[safetensors] " + file + ": ", phrase);
  if (!r) return r << " (load_safetensors)";
  return throws<FormatError>(
             [&] {
               parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                 "mem");
             },
             "[safetensors] mem: ", phrase)
         << " (parse_safetensors)";
}

// A header entry.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
         ", \"data_offsets\": " + offsets + "}";
}

}  // namespace

TEST_F(Safetensors, RejectsTruncatedPrefixAndBadHeaderLength) {
  const std::string f = path("bad.safetensors");
  EXPECT_TRUE(rejected(f, "", "file is 0 bytes, shorter than the 8-byte header length"));
  EXPECT_TRUE(rejected(f, std::string("\x02\0\0\0\0", 5), "file is 5 bytes"));
  EXPECT_TRUE(rejected(f, st_bytes("{}", "", 200'000'000),
                       "header length 200000000 exceeds the "
                       "limit of 100000000 bytes"));
  EXPECT_TRUE(rejected(f, st_bytes("{}", "", ~uint64_t{0} - 1), "exceeds the limit"));
  EXPECT_TRUE(rejected(f, st_bytes("{}", "", 64),
                       "header length 64 exceeds the 2 bytes that follow the length prefix"));
}

TEST_F(Safetensors, RejectsMalformedJson) {
  const std::string f = path("bad.safetensors");
  EXPECT_TRUE(rejected(f, st_bytes("{\"a\": "), "header is not valid JSON"));
  EXPECT_TRUE(rejected(f, st_bytes("\x01\x02garbage\xff"), "header is not valid JSON"));
  EXPECT_TRUE(rejected(f, st_bytes(""), "header is not valid JSON"));
  EXPECT_TRUE(rejected(f, st_bytes("{\"\xc3\x28\": 1}"), "header is not valid JSON"));  // bad UTF-8
  EXPECT_TRUE(rejected(f, st_bytes("[1, 2]"), "header is a JSON array, not an object"));
  EXPECT_TRUE(rejected(f, st_bytes("\"str\""), "header is a JSON string, not an object"));
}

TEST_F(Safetensors, RejectsBadEntries) {
  const std::string f = path("bad.safetensors");
  const std::string d8(8, '\0');
  EXPECT_TRUE(rejected(f, st_bytes("{\"w\": [1]}", d8), "tensor \"w\": entry is a JSON array"));
  EXPECT_TRUE(rejected(f, st_bytes("{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", d8),
                       "tensor \"w\": missing field \"data_offsets\""));
  EXPECT_TRUE(rejected(
      f, st_bytes("{" + entry("w", "F32", "[2]", "[0, 8]").insert(6, "\"x\": 1, ") + "}", d8),
      "tensor \"w\": unknown field \"x\""));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "I16", "[4]", "[0, 8]") + "}", d8),
                       "tensor \"w\": unsupported dtype \"I16\""));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("flags", "BOOL", "[8]", "[0, 8]") + "}", d8),
                       "tensor \"flags\": unsupported dtype \"BOOL\""));
  EXPECT_TRUE(
      rejected(f, st_bytes("{\"w\": {\"dtype\": 3, \"shape\": [2], \"data_offsets\": [0, 8]}}", d8),
               "tensor \"w\": dtype is a JSON number, not a string"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "2", "[0, 8]") + "}", d8),
                       "tensor \"w\": shape is a JSON number, not an array"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[2, -1]", "[0, 8]") + "}", d8),
                       "tensor \"w\": shape[1] is -1, not a non-negative integer"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[2.0]", "[0, 8]") + "}", d8),
                       "shape[0] is 2.0, not a non-negative integer"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[\"2\"]", "[0, 8]") + "}", d8),
                       "shape[0] is \"2\""));
  EXPECT_TRUE(
      rejected(f, st_bytes("{" + entry("w", "F32", "[18446744073709551615]", "[0, 8]") + "}", d8),
               "does not fit in int64"));
  // 2^32 * 2^32 overflows even though the last dim makes it empty
  EXPECT_TRUE(
      rejected(f, st_bytes("{" + entry("w", "U8", "[4294967296, 4294967296, 0]", "[0, 0]") + "}"),
               "has too many elements for int64"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("", "F32", "[2]", "[0, 8]") + "}", d8),
                       "empty tensor name"));
  EXPECT_TRUE(rejected(f,
                       st_bytes("{" + entry("w", "F32", "[2]", "[0, 8]") + ", " +
                                    entry("w", "F32", "[2]", "[0, 8]") + "}",
                                d8),
                       "duplicate key \"w\""));
  EXPECT_TRUE(rejected(
      f,
      st_bytes("{" + entry("w", "F32", "[2]", "[0, 8]").insert(6, "\"dtype\": \"I32\", ") + "}",
               d8),
      "duplicate key \"dtype\" in \"w\""));
}

TEST_F(Safetensors, RejectsBadOffsetsAndSizes) {
  const std::string f = path("bad.safetensors");
  const std::string d8(8, '\0');
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[3]", "[0, 8]") + "}", d8),
                       "tensor \"w\": F32 shape [3] needs 3 x 4 bytes, but data_offsets [0, 8] "
                       "span 8"));
  EXPECT_TRUE(
      rejected(f, st_bytes("{" + entry("w", "F64", "[2]", "[0, 12]") + "}", std::string(12, '\0')),
               "needs 2 x 8 bytes"));
  // truncated data section: the header promises 16 bytes, the file holds 8
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[4]", "[0, 16]") + "}", d8),
                       "data_offsets [0, 16] reach beyond the data section of 8 bytes"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[0]", "[8, 4]") + "}", d8),
                       "data_offsets [8, 4] have begin > end"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[2]", "[0]") + "}", d8),
                       "data_offsets must be two non-negative integers, got [0]"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[2]", "[-8, 0]") + "}", d8),
                       "data_offsets must be two non-negative integers"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("w", "F32", "[2]", "{\"a\": 0}") + "}", d8),
                       "data_offsets must be two non-negative integers"));
  EXPECT_TRUE(
      rejected(f, st_bytes("{" + entry("w", "F32", "[2]", "[0, 18446744073709551615]") + "}", d8),
               "reach beyond the data section"));
}

TEST_F(Safetensors, RejectsOverlapsGapsAndTrailingBytes) {
  const std::string f = path("bad.safetensors");
  const std::string d12(12, '\0'), d8(8, '\0');
  EXPECT_TRUE(rejected(f,
                       st_bytes("{" + entry("a", "F32", "[2]", "[0, 8]") + ", " +
                                    entry("b", "F32", "[2]", "[4, 12]") + "}",
                                d12),
                       "tensors \"a\" [0, 8) and \"b\" [4, 12) overlap"));
  EXPECT_TRUE(rejected(f,
                       st_bytes("{" + entry("a", "F32", "[2]", "[0, 8]") + ", " +
                                    entry("b", "F32", "[2]", "[0, 8]") + "}",
                                d8),
                       "overlap"));
  EXPECT_TRUE(rejected(f,
                       st_bytes("{" + entry("a", "F32", "[1]", "[0, 4]") + ", " +
                                    entry("b", "F32", "[1]", "[8, 12]") + "}",
                                d12),
                       "gap of 4 bytes in the data section at offset 4 (before tensor \"b\")"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("a", "F32", "[1]", "[4, 8]") + "}", d8),
                       "gap of 4 bytes in the data section at offset 0"));
  EXPECT_TRUE(rejected(f, st_bytes("{" + entry("a", "F32", "[1]", "[0, 4]") + "}", d8),
                       "4 trailing bytes after the last tensor"));
  EXPECT_TRUE(rejected(f, st_bytes("{}", "x"), "1 trailing bytes"));
}

TEST_F(Safetensors, RejectsBadMetadata) {
  const std::string f = path("bad.safetensors");
  EXPECT_TRUE(rejected(f, st_bytes(R"({"__metadata__": {"k": 1}})"),
                       "__metadata__ value of \"k\" is a JSON number, not a string"));
  EXPECT_TRUE(rejected(f, st_bytes(R"({"__metadata__": {"k": {"x": "y"}}})"),
                       "__metadata__ value of \"k\" is a JSON object"));
  EXPECT_TRUE(rejected(f, st_bytes(R"({"__metadata__": ["a"]})"),
                       "__metadata__ is a JSON array, not an object of strings"));
  EXPECT_TRUE(
      rejected(f, st_bytes(R"({"__metadata__": {"k": "a", "k": "b"}})"), "duplicate key \"k\""));
}

TEST_F(Safetensors, MessagesStayShortForHostileNames) {
  std::string name(5000, 'n');
  name.insert(3, "\\n");  // a JSON escape: the parsed name holds a newline
  std::string bytes = st_bytes("{" + entry(name, "F8_E4M3", "[1]", "[0, 1]") + "}", "x");
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
    FAIL() << "accepted";
  } catch (const FormatError& e) {
    std::string m = e.what();
    EXPECT_LT(m.size(), 400u) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_NE(m.find("unsupported dtype \"F8_E4M3\""), std::string::npos) << m;
  }
}

TEST_F(Safetensors, MissingOrUnreadableFileIsIoError) {
  const std::string missing = path("missing.safetensors");
  EXPECT_TRUE(throws<IoError>([&] { load_safetensors(missing); }, "[safetensors] " + missing + ": ",
                              "cannot open: No such file or directory"));
  EXPECT_TRUE(throws<IoError>([&] { load_safetensors(dir_.string()); },
                              "[safetensors] " + dir_.string() + ": ", "is a directory"));
}
