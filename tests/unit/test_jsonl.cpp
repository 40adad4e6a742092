// The JSONL reader (io/jsonl.h): records in order with their line numbers, blank lines, lines
// that straddle read chunks, and every way a file can be wrong, each named by file and line.
#include "metalm/io/jsonl.h"
#include "metalm/io/json.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/test_util.h"
#include "metalm/core/error.h"

namespace fs = std::filesystem;
using metalm::FormatError;
using metalm::IoError;
using metalm::ValueError;
using metalm::io::Json;
using metalm::io::JsonlLine;
using metalm::io::JsonlOptions;
using metalm::io::JsonlStats;
using metalm::test::throws_with;

namespace {

class Jsonl : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("metalm_jsonl_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name, const std::string& bytes) const {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  fs::path dir_;
};

JsonlOptions opts(uint64_t max_file = 1 << 30) {
  JsonlOptions o;
  o.max_file_bytes = max_file;
  return o;
}

// Every record with its line number.
std::vector<std::pair<int64_t, Json>> read_all(const std::string& path, const JsonlOptions& o,
                                               JsonlStats* stats = nullptr) {
  std::vector<std::pair<int64_t, Json>> out;
  const JsonlStats s = metalm::io::for_each_jsonl(
      path, "log", o, [&](const Json& v, const JsonlLine& l) { out.emplace_back(l.number, v); });
  if (stats) *stats = s;
  return out;
}

TEST_F(Jsonl, RecordsInOrderWithLineNumbersBlankLinesSkipped) {
  const std::string p = file("a.jsonl", "{\"a\": 1}\n\n  \t\n{\"a\": 2}\r\n[3]\n{\"a\": 4}");
  JsonlStats s;
  const auto recs = read_all(p, opts(), &s);
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[0].first, 1);
  EXPECT_EQ(recs[0].second["a"], 1);
  EXPECT_EQ(recs[1].first, 4);  // lines 2 and 3 are blank
  EXPECT_EQ(recs[1].second["a"], 2);
  EXPECT_EQ(recs[2].first, 5);
  EXPECT_EQ(recs[2].second, Json::array({3}));
  EXPECT_EQ(recs[3].first, 6);  // a valid last line needs no newline
  EXPECT_EQ(recs[3].second["a"], 4);
  EXPECT_EQ(s.lines, 6);
  EXPECT_EQ(s.records, 4);
  EXPECT_FALSE(s.truncated_last_line);
  EXPECT_TRUE(read_all(file("empty.jsonl", ""), opts()).empty());
}

TEST_F(Jsonl, LinesAcrossReadChunks) {
  // 20000 short lines and one of 200 KB: both cross the reader's 64 KiB chunks.
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "{\"i\": " + std::to_string(i) + "}\n";
  const std::string big(200000, 'x');
  text += "{\"big\": \"" + big + "\"}\n{\"i\": 20000}\n";
  const auto recs = read_all(file("a.jsonl", text), opts());
  ASSERT_EQ(recs.size(), 20002u);
  for (int i = 0; i < 20000; ++i) {
    ASSERT_EQ(recs[i].first, i + 1);
    ASSERT_EQ(recs[i].second["i"], i);
  }
  EXPECT_EQ(recs[20000].first, 20001);
  EXPECT_EQ(recs[20000].second["big"], big);
  EXPECT_EQ(recs[20001].second["i"], 20000);
}

TEST_F(Jsonl, MalformedLineIsNamedByFileAndLine) {
  const std::string p = file("a.jsonl", "{\"a\": 1}\n{\"a\": 2}\n{\"a\": }\n{\"a\": 4}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(p, opts()); },
                                       {"[log] " + p + ": line 3: record is not valid JSON"}));
  const std::string d = file("dup.jsonl", "{}\n{\"a\": 1, \"a\": 2}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(d, opts()); },
                                       {d + ": line 2: duplicate key \"a\""}));
}

TEST_F(Jsonl, TruncatedLastLineReportedOrSkipped) {
  const std::string p = file("a.jsonl", "{\"a\": 1}\n{\"a\": 2}\n\n{\"a\": 3, \"b");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(p, opts()); },
                                       {p + ": line 4: truncated last line"}));
  JsonlOptions o = opts();
  o.skip_truncated_last_line = true;
  JsonlStats s;
  const auto recs = read_all(p, o, &s);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].second["a"], 2);
  EXPECT_TRUE(s.truncated_last_line);
  // Only the last line can be skipped: the same cut in the middle is an error either way.
  const std::string mid = file("mid.jsonl", "{\"a\": 1}\n{\"a\": 3, \"b\n{\"a\": 2}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(mid, o); }, {mid + ": line 2: record is not valid JSON"}));
}

TEST_F(Jsonl, SizeCaps) {
  const std::string p = file("a.jsonl", "{\"a\": 1}\n{\"a\": \"" + std::string(200, 'x') + "\"}\n");
  JsonlOptions o = opts();
  o.max_line_bytes = 100;
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(p, o); },
                                       {p + ": line 2: longer than 100 bytes"}));
  // A line with no newline at all is refused once it passes the cap, not read to the end.
  const std::string endless = file("endless.jsonl", std::string(300000, ' ') + "1");
  o.max_line_bytes = 100000;
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(endless, o); }, {": line 1: longer than"}));
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(p, opts(50)); },
                                       {p + ": ", "bytes is too large for a JSONL file (limit 50)"}));
  EXPECT_TRUE(throws_with<ValueError>([&] { read_all(p, opts(0)); }, "caps must be positive"));
}

TEST_F(Jsonl, DepthCapPerLine) {
  const std::string p = file("a.jsonl", "{}\n" + std::string(100, '[') + std::string(100, ']') + "\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_all(p, opts()); },
                                       {p + ": line 2: record nests deeper than 64 levels"}));
}

TEST_F(Jsonl, FileErrors) {
  const std::string missing = (dir_ / "none.jsonl").string();
  EXPECT_TRUE(throws_with<IoError>([&] { read_all(missing, opts()); },
                                   {"[log] " + missing + ": cannot open"}));
  EXPECT_TRUE(throws_with<IoError>([&] { read_all(dir_.string(), opts()); }, "is a directory"));
}

TEST_F(Jsonl, CallbackErrorsCarryTheLine) {
  const std::string p = file("a.jsonl", "{\"loss\": 1}\n{\"loss\": \"x\"}\n");
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        metalm::io::for_each_jsonl(p, "log", opts(), [](const Json& v, const JsonlLine& l) {
          metalm::io::read_number(v["loss"], "loss", l.where);
        });
      },
      {"[log] " + p + ": line 2: loss: expected a number, got string \"x\""}));
}

}  // namespace

TEST(Json, FirstDifferenceNamesThePathAndBothValues) {
  const Json a = Json::parse(R"({"decoder": {"layers": 2, "dim": 8}, "encoders": [{"name": "text"}]})");
  EXPECT_EQ(metalm::io::first_difference(a, a), "");
  Json b = a;
  b["decoder"]["layers"] = 3;
  EXPECT_EQ(metalm::io::first_difference(a, b, "here", "there"),
            "decoder.layers: number 2 here, number 3 there");
  b = a;
  b["encoders"][0].erase("name");
  EXPECT_EQ(metalm::io::first_difference(a, b), "encoders[0].name: string \"text\" here, missing there");
  b = a;
  b["extra"] = true;
  EXPECT_EQ(metalm::io::first_difference(a, b), "extra: missing here, boolean true there");
  b = a;
  b["encoders"].push_back(1);
  EXPECT_EQ(metalm::io::first_difference(a, b).rfind("encoders: array", 0), 0u);
}
