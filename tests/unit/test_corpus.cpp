// The corpus pipeline (data/): documents and their markers, token shards, the cache and its
// reuse, the validation split, full-sentence packing and the resumable loader, on small corpora
// the tests write, tokenized by fake encoders (one id per byte, or one per word).
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "common/test_util.h"
#include "metalm/core/error.h"
#include "metalm/data/corpus.h"
#include "metalm/data/line_reader.h"
#include "metalm/data/loader.h"
#include "metalm/data/packing.h"
#include "metalm/data/progress.h"
#include "metalm/data/split.h"
#include "metalm/io/token_shard.h"

using namespace metalm;
using namespace metalm::data;
using metalm::test::ThreadCountGuard;
using metalm::test::throws_with;
namespace fs = std::filesystem;

namespace {

constexpr int32_t kByteBase = 16;  // byte b encodes to id 16 + b, clear of the special ids
const io::VocabInfo kByteVocab{0x1234, 16 + 256};

// One id per byte; counts the lines it was asked to encode.
struct ByteEncoder {  // thread-safe, as build_corpus requires
  std::atomic<int64_t>* calls;
  void operator()(std::string_view text, std::vector<int32_t>& out) const {
    ++*calls;
    for (unsigned char c : text) out.push_back(kByteBase + c);
  }
};

std::vector<int32_t> bytes_ids(std::string_view s) {
  std::vector<int32_t> v;
  for (unsigned char c : s) v.push_back(kByteBase + c);
  return v;
}

class CorpusFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("metalm_corpus_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string put(const std::string& name, const std::string& bytes) const {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream f(path(name), std::ios::binary | std::ios::trunc);
    f << bytes;
    return path(name);
  }
  std::string read(const std::string& p) const {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // Every file under the directory, relative, sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_))
      if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir_).string());
    std::sort(out.begin(), out.end());
    return out;
  }
  CorpusConfig config(std::vector<SourceConfig> sources) const {
    CorpusConfig c;
    c.sources = std::move(sources);
    c.cache_dir = path("cache");
    c.vocab = kByteVocab;
    c.show_progress = false;
    return c;
  }
  data::Corpus build(const CorpusConfig& c) { return build_corpus(c, ByteEncoder{&calls_}); }

  fs::path dir_;
  std::atomic<int64_t> calls_ = 0;
};

SourceConfig text_source(const std::string& name, std::vector<std::string> paths,
                         DocSplit split = DocSplit::paragraph, double weight = 1.0) {
  SourceConfig s;
  s.name = name;
  s.paths = std::move(paths);
  s.documents.split = split;
  s.weight = weight;
  return s;
}

// The token stream of document d of a source, line by line.
std::vector<std::vector<int32_t>> doc_lines(const TokenizedSource& src, uint64_t d) {
  const TokenizedSource::Doc doc = src.doc(d);
  std::vector<std::vector<int32_t>> out;
  for (uint64_t l = doc.first_line; l < doc.end_line; ++l) {
    std::vector<int32_t> ids(doc.shard->line_end(l) - doc.shard->line_begin(l));
    doc.shard->copy_tokens(doc.shard->line_begin(l), doc.shard->line_end(l), ids.data());
    out.push_back(ids);
  }
  return out;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A corpus of `docs` paragraphs of 1-6 lines of 1-40 bytes, fixed by the seed.
std::string paragraphs(int docs, uint64_t seed) {
  std::string s;
  uint64_t c = 0;
  for (int d = 0; d < docs; ++d) {
    const int lines = 1 + static_cast<int>(Generator::hash(seed, c++) % 6);
    for (int l = 0; l < lines; ++l) {
      const int len = 1 + static_cast<int>(Generator::hash(seed, c++) % 40);
      for (int k = 0; k < len; ++k) s += static_cast<char>('a' + Generator::hash(seed, c++) % 26);
      s += '\n';
    }
    s += '\n';
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------- lines and documents

TEST_F(CorpusFiles, LineReaderSplitsLinesAndCountsOffsets) {
  put("a.txt", "one\r\ntwo\n\nlast");
  LineReader r(path("a.txt"), 100);
  std::string_view line;
  std::vector<std::pair<std::string, uint64_t>> got;
  while (r.next(line)) got.emplace_back(std::string(line), r.line_offset());
  const std::vector<std::pair<std::string, uint64_t>> want = {
      {"one", 0}, {"two", 5}, {"", 9}, {"last", 10}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(r.line_number(), 4u);
  EXPECT_EQ(r.bytes_consumed(), 14u);
}

TEST_F(CorpusFiles, LineLongerThanTheLimitIsOneClearError) {
  put("a.txt", "short\n" + std::string(2000, 'x') + "\n");
  LineReader r(path("a.txt"), 1000);
  std::string_view line;
  ASSERT_TRUE(r.next(line));
  EXPECT_TRUE(throws_with<FormatError>([&] { r.next(line); },
                                       {"a.txt", "line 2", "byte offset 6", "limit of 1000"}));
}

// Skipping (tokenizer training): a long line in the middle and one ending the file without
// "\n", each longer than the reader's 1 MiB chunk, come back empty and flagged; the lines
// around them and every offset stay right.
TEST_F(CorpusFiles, LongLinesAreSkippedWhenAskedWithOffsetsKept) {
  const std::string big(3 << 20, 'q');
  put("a.txt", "one\n" + big + "\ntwo\n" + big);
  LineReader r(path("a.txt"), 100, "tokenizer", LineReader::LongLines::skip);
  std::string_view line;
  bool skipped = false;
  std::vector<std::tuple<std::string, bool, uint64_t>> got;
  while (r.next(line, &skipped)) got.emplace_back(std::string(line), skipped, r.line_offset());
  const uint64_t two = 4 + big.size() + 1;
  const std::vector<std::tuple<std::string, bool, uint64_t>> want = {
      {"one", false, 0}, {"", true, 4}, {"two", false, two}, {"", true, two + 4}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(r.line_number(), 4u);
  EXPECT_EQ(r.bytes_consumed(), two + 4 + big.size());
}

TEST_F(CorpusFiles, TenMegabyteLineIsRejectedUnderASmallLimitAndCutWhenPacked) {
  const std::string big(10 << 20, 'z');
  put("big.txt", "before\n\n" + big + "\n\nafter\n");
  CorpusConfig c = config({text_source("big", {path("big.txt")})});
  c.sources[0].documents.max_line_bytes = 1 << 20;
  EXPECT_TRUE(throws_with<FormatError>([&] { build(c); },
                                       {"big.txt", "line 3", "byte offset 8", "max_line_bytes"}));
  EXPECT_FALSE(fs::exists(path("cache/big/manifest.json")));
  for (const std::string& f : files()) EXPECT_EQ(f.find("shard-"), std::string::npos) << f;

  c.sources[0].documents.max_line_bytes = 16 << 20;  // the default takes it
  const data::Corpus corpus = build(c);
  const TokenizedSource& src = corpus.sources[0];
  ASSERT_EQ(src.docs(), 3u);
  PackedSource packed(src, {0, 1, 2}, PackOptions{64, PackMode::complete, false, LongLines::cut});
  ASSERT_EQ(packed.size(), 3u);  // "before", the cut line alone, "after"
  EXPECT_EQ(packed.cut_lines(), 1u);
  EXPECT_EQ(packed.cut_tokens(), big.size() + 2 - 63);  // the line, </line>, </doc>, less 63
  PackedSequence seq;
  packed.sequence(1, seq);
  EXPECT_EQ(seq.length, 64);
  ASSERT_EQ(seq.lines.size(), 1u);
  EXPECT_TRUE(seq.lines[0].cut);
  EXPECT_EQ(seq.tokens[63], kByteBase + 'z');

  // Split (the default): the line, </line>, </doc> fill pieces of 63; "after" (7 ids) joins the
  // last piece (42 ids), so nothing is lost and one sequence follows "before" per piece.
  const PackedSource split(src, {0, 1, 2}, PackOptions{64});
  const uint64_t pieces = (big.size() + 2 + 62) / 63;
  ASSERT_EQ(split.size(), 1 + pieces);
  EXPECT_EQ(split.cut_lines(), 1u);
  EXPECT_EQ(split.cut_tokens(), 0u);
  EXPECT_EQ(split.packed_tokens(), src.tokens() + split.size());
  split.sequence(2, seq);
  ASSERT_EQ(seq.lines.size(), 1u);
  EXPECT_TRUE(seq.lines[0].continued && seq.lines[0].cut);
  split.sequence(pieces, seq);
  ASSERT_EQ(seq.lines.size(), 2u);
  EXPECT_TRUE(seq.lines[0].continued && !seq.lines[0].cut);
  EXPECT_EQ(seq.lines[0].end - seq.lines[0].begin, static_cast<int32_t>((big.size() + 2) % 63));
  EXPECT_EQ(seq.length, 1 + 42 + 7);
}

TEST_F(CorpusFiles, Utf8ValidatorFindsTheFirstIllFormedByte) {
  EXPECT_EQ(find_invalid_utf8("plain ascii, long enough for the 8-byte path"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xc0\x80"), 2u);               // overlong NUL
  EXPECT_EQ(find_invalid_utf8("abcdefghij\xed\xa0\x80"), 10u);  // a surrogate
  EXPECT_EQ(find_invalid_utf8("\xf4\x90\x80\x80"), 0u);         // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("x\xe2\x82"), 1u);                // cut short
  EXPECT_EQ(find_invalid_utf8("\x80"), 0u);                     // a lone continuation byte
  EXPECT_EQ(find_invalid_utf8("\xff"), 0u);
}

TEST_F(CorpusFiles, NonUtf8BytesAreRejectedNamingFileAndByteOffset) {
  put("latin1.txt", "good line\ncaf\xe9 au lait\n");
  const CorpusConfig c = config({text_source("l1", {path("latin1.txt")})});
  EXPECT_TRUE(throws_with<FormatError>(
      [&] { build(c); }, {"latin1.txt", "line 2", "byte offset 13", "invalid UTF-8 byte 0xe9"}));
  EXPECT_FALSE(fs::exists(path("cache/l1/manifest.json")));
}

TEST_F(CorpusFiles, DocumentSplitsOfPlainText) {
  put("t.txt", "a1\na2\n \t\nb1\n\n\nc1\n");
  auto docs_of = [&](DocSplit split) {
    std::vector<std::vector<std::string>> docs(1);
    DocumentSink sink{[&](std::string_view l) { docs.back().emplace_back(l); },
                      [&] { docs.emplace_back(); }};
    DocumentOptions o;
    o.split = split;
    const uint64_t n = read_documents(path("t.txt"), o, sink);
    docs.pop_back();
    EXPECT_EQ(n, docs.size());
    return docs;
  };
  using Docs = std::vector<std::vector<std::string>>;
  EXPECT_EQ(docs_of(DocSplit::paragraph), (Docs{{"a1", "a2"}, {"b1"}, {"c1"}}));
  EXPECT_EQ(docs_of(DocSplit::file), (Docs{{"a1", "a2", "b1", "c1"}}));
  EXPECT_EQ(docs_of(DocSplit::line), (Docs{{"a1"}, {"a2"}, {"b1"}, {"c1"}}));
}

TEST_F(CorpusFiles, JsonlRecordsAreDocumentsAndBadRecordsNameTheirLine) {
  put("r.jsonl",
      "{\"text\": \"x\\ny\\r\\n\\nz\", \"id\": 1}\n\n{\"text\": \"\"}\n{\"text\": \"w\"}\n");
  std::vector<std::vector<std::string>> docs(1);
  DocumentSink sink{[&](std::string_view l) { docs.back().emplace_back(l); },
                    [&] { docs.emplace_back(); }};
  DocumentOptions o;
  o.format = SourceFormat::jsonl;
  EXPECT_EQ(read_documents(path("r.jsonl"), o, sink), 2u);  // the empty text is no document
  docs.pop_back();
  EXPECT_EQ(docs, (std::vector<std::vector<std::string>>{{"x", "y", "z"}, {"w"}}));

  put("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 3}\n");
  EXPECT_TRUE(throws_with<ValueError>([&] { read_documents(path("bad.jsonl"), o, sink); },
                                      {"bad.jsonl: line 2 (byte offset 15)", "text", "string"}));
  put("bad2.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"a\"}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_documents(path("bad2.jsonl"), o, sink); },
                                       {"bad2.jsonl: line 2", "needs a \"text\" field"}));
  put("bad3.jsonl", "{\"text\": \"ok\"\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { read_documents(path("bad3.jsonl"), o, sink); },
                                       {"bad3.jsonl: line 1", "not valid JSON"}));
}

// ---------------------------------------------------------------- markers and shards

TEST_F(CorpusFiles, LinesEndWithLineMarkerAndDocumentsWithDocMarker) {
  put("t.txt", "ab\ncd\n\nefg\n");
  const data::Corpus corpus = build(config({text_source("t", {path("t.txt")})}));
  const TokenizedSource& src = corpus.sources[0];
  ASSERT_EQ(src.docs(), 2u);
  const SpecialIds sp;
  using Lines = std::vector<std::vector<int32_t>>;
  EXPECT_EQ(doc_lines(src, 0),
            (Lines{cat(bytes_ids("ab"), {sp.line}), cat(bytes_ids("cd"), {sp.line, sp.doc})}));
  EXPECT_EQ(doc_lines(src, 1), (Lines{cat(bytes_ids("efg"), {sp.line, sp.doc})}));
  EXPECT_EQ(src.tokens(), 3u + 4u + 5u);
  EXPECT_EQ(src.shards()[0].header().token_bytes, 2u);
  EXPECT_EQ(src.shards()[0].header().source, "t");
}

TEST_F(CorpusFiles, ShardRoundTripBitExactForBothTokenWidths) {
  for (const uint64_t vocab :
       {uint64_t{1000}, uint64_t{65536}, uint64_t{70000}, uint64_t{1} << 31}) {
    const std::string p = path("s" + std::to_string(vocab) + ".bin");
    std::vector<std::vector<std::vector<int32_t>>> docs;
    uint64_t c = 0;
    {
      io::ShardWriter w(p, {vocab * 7, vocab}, "src");
      for (int d = 0; d < 50; ++d) {
        docs.emplace_back();
        for (uint64_t l = 0, n = 1 + Generator::hash(vocab, c++) % 5; l < n; ++l) {
          std::vector<int32_t> ids(1 + Generator::hash(vocab, c++) % 300);
          for (int32_t& id : ids) id = static_cast<int32_t>(Generator::hash(vocab, c++) % vocab);
          ids.back() = static_cast<int32_t>(vocab - 1);  // the largest id survives too
          w.add_line(ids.data(), ids.size());
          docs.back().push_back(ids);
        }
        w.end_document();
      }
      const io::ShardHeader h = w.finish();
      EXPECT_EQ(h.token_bytes, vocab <= 65536 ? 2u : 4u);
    }
    const io::Shard s(p, io::VocabInfo{vocab * 7, vocab});
    ASSERT_EQ(s.docs(), docs.size());
    EXPECT_EQ(s.header().source, "src");
    for (uint64_t d = 0; d < s.docs(); ++d) {
      ASSERT_EQ(s.doc_first_line(d + 1) - s.doc_first_line(d), docs[d].size());
      for (uint64_t k = 0; k < docs[d].size(); ++k) {
        const uint64_t l = s.doc_first_line(d) + k;
        std::vector<int32_t> got(s.line_end(l) - s.line_begin(l));
        s.copy_tokens(s.line_begin(l), s.line_end(l), got.data());
        ASSERT_EQ(got, docs[d][k]) << "vocab " << vocab << " doc " << d << " line " << k;
        EXPECT_EQ(s.token(s.line_begin(l)), got[0]);
      }
    }
  }
  for (const std::string& f : files()) EXPECT_EQ(f.find(".tmp."), std::string::npos) << f;
}

TEST_F(CorpusFiles, AShardWithoutFinishLeavesNothingBehind) {
  {
    io::ShardWriter w(path("x.bin"), kByteVocab, "x");
    const int32_t ids[] = {20, 21};
    w.add_line(ids, 2);
    const int32_t bad[] = {20, 9999};
    EXPECT_TRUE(throws_with<ValueError>([&] { w.add_line(bad, 2); },
                                        {"token id 9999", "outside the vocab [0, 272)"}));
  }
  EXPECT_TRUE(files().empty());
}

class CorpusShard : public CorpusFiles {
 protected:
  // A valid shard of a few documents; returns its bytes.
  std::string make(const std::string& name) {
    io::ShardWriter w(path(name), kByteVocab, "d");
    for (int d = 0; d < 4; ++d) {
      const std::vector<int32_t> ids = bytes_ids("document " + std::to_string(d));
      w.add_line(ids.data(), ids.size());
      w.end_document();
    }
    w.finish();
    return read(path(name));
  }
  void write_bad(const std::string& bytes) { put("bad.bin", bytes); }
  ::testing::AssertionResult rejects(const std::string& bytes, const std::string& phrase,
                                     std::optional<io::VocabInfo> vocab = kByteVocab) {
    write_bad(bytes);
    return throws_with<FormatError>([&] { io::Shard s(path("bad.bin"), vocab); },
                                    {"[shard]", "bad.bin", phrase});
  }
};

TEST_F(CorpusShard, TruncatedCorruptForeignAndOtherVocabShardsAreClearErrors) {
  const std::string good = make("good.bin");
  EXPECT_NO_THROW(io::Shard(path("good.bin"), kByteVocab));
  EXPECT_TRUE(rejects("", "truncated: 0 bytes"));
  EXPECT_TRUE(rejects(good.substr(0, 100), "shorter than the 256-byte header"));
  EXPECT_TRUE(rejects(good.substr(0, good.size() - 3), "truncated"));
  EXPECT_TRUE(rejects(good + "x", "1 bytes after the end"));
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_TRUE(rejects(magic, "wrong magic"));
  std::string header = good;
  header[33] ^= 1;  // token count
  EXPECT_TRUE(rejects(header, "header checksum mismatch"));
  std::string token = good;
  token[256 + 3] ^= 0x40;
  EXPECT_TRUE(rejects(token, "token checksum mismatch"));
  std::string index = good;
  index[good.size() - 6] ^= 1;
  EXPECT_TRUE(rejects(index, "index checksum mismatch"));
  EXPECT_TRUE(rejects(good,
                      "tokenized with another vocab (hash 0x0000000000001234, size 272), "
                      "the tokenizer has hash 0x0000000000009999",
                      io::VocabInfo{0x9999, 272}));
  // Another format version, with its header checksum made right: the version is what fails.
  std::string version = good;
  version[8] = 2;
  io::Checksum64 sum;
  sum.update(version.data(), 248);
  const uint64_t h = sum.digest();
  std::memcpy(version.data() + 248, &h, 8);
  EXPECT_TRUE(rejects(version, "format version 2, this build reads version 1"));
}

TEST_F(CorpusShard, EveryFlippedByteIsFoundOnOpen) {
  // The test shard has no alignment padding (40 two-byte tokens), so every byte is covered by
  // a checksum or a structural check: a flip anywhere must be a FormatError, never a crash or
  // a shard that opens with other contents.
  const std::string good = make("good.bin");
  // header, 40 tokens in 80 bytes (a multiple of 8: no padding), 4 line ends, 5 doc starts
  ASSERT_EQ(good.size(), 256u + 80 + 4 * 4 + 5 * 4);
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= static_cast<char>(1 << (i % 8));
    write_bad(bad);
    try {
      io::Shard s(path("bad.bin"), kByteVocab);
      ADD_FAILURE() << "a flip at byte " << i << " went unnoticed";
    } catch (const FormatError&) {
    }
  }
}

// ---------------------------------------------------------------- the cache

TEST_F(CorpusFiles, SecondBuildReusesShardsAndChangesReTokenize) {
  put("a.txt", paragraphs(30, 1));
  CorpusConfig c = config({text_source("a", {path("a.txt")})});
  const uint64_t tokens = build(c).sources[0].tokens();
  EXPECT_GT(calls_, 0);

  calls_ = 0;
  {
    const data::Corpus again = build(c);
    EXPECT_EQ(calls_, 0);
    EXPECT_TRUE(again.sources[0].reused());
    EXPECT_EQ(again.sources[0].tokens(), tokens);
  }
  c.vocab.hash ^= 1;  // another tokenizer
  EXPECT_FALSE(build(c).sources[0].reused());
  EXPECT_GT(calls_, 0);
  calls_ = 0;
  EXPECT_TRUE(build(c).sources[0].reused());
  c.sources[0].documents.split = DocSplit::line;  // other documents
  EXPECT_FALSE(build(c).sources[0].reused());
  put("a.txt", paragraphs(31, 1));  // other text
  calls_ = 0;
  const data::Corpus changed = build(c);
  EXPECT_FALSE(changed.sources[0].reused());
  EXPECT_GT(calls_, 0);
}

TEST_F(CorpusFiles, CorruptCachedShardIsReTokenizedAndStaleShardsRemoved) {
  put("a.txt", paragraphs(200, 2));
  CorpusConfig c = config({text_source("a", {path("a.txt")})});
  c.max_shard_tokens = 1000;
  const data::Corpus first = build(c);
  const size_t n_shards = first.sources[0].shards().size();
  ASSERT_GT(n_shards, 3u);
  {
    std::fstream f(path("cache/a/shard-00001.bin"),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(300);
    f.put('\x7f');
  }
  calls_ = 0;
  const data::Corpus again = build(c);  // prints why it re-tokenizes
  EXPECT_FALSE(again.sources[0].reused());
  EXPECT_GT(calls_, 0);
  EXPECT_EQ(again.sources[0].tokens(), first.sources[0].tokens());

  // A shorter text needs fewer shards: the ones of the longer build must go.
  put("a.txt", paragraphs(10, 2));
  const size_t fewer = build(c).sources[0].shards().size();
  ASSERT_LT(fewer, n_shards);
  std::vector<std::string> want = {"a.txt", "cache/a/manifest.json"};
  for (size_t i = 0; i < fewer; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "cache/a/shard-%05zu.bin", i);
    want.push_back(name);
  }
  EXPECT_EQ(files(), want);
  // The shard size is not an input of the tokens: changing it reuses the cache.
  c.max_shard_tokens = 1 << 20;
  EXPECT_TRUE(build(c).sources[0].reused());
}

TEST_F(CorpusFiles, DocumentsAcrossShardsAreFoundByIndex) {
  put("a.txt", paragraphs(100, 3));
  CorpusConfig c = config({text_source("a", {path("a.txt")})});
  const data::Corpus one = build(c);
  c.max_shard_tokens = 500;
  c.cache_dir = path("cache2");
  const data::Corpus many = build(c);
  ASSERT_GT(many.sources[0].shards().size(), 3u);
  ASSERT_EQ(one.sources[0].docs(), 100u);
  ASSERT_EQ(many.sources[0].docs(), 100u);
  for (uint64_t d = 0; d < 100; ++d)
    ASSERT_EQ(doc_lines(one.sources[0], d), doc_lines(many.sources[0], d)) << d;
}

// Lines are encoded in parallel batches: the shards (every byte) are the same for one thread or
// two and for any batch size, including batches that end inside a document (64 bytes here).
TEST_F(CorpusFiles, ParallelEncodingGivesTheSameShardsForAnyThreadCountAndBatch) {
  put("a.txt", paragraphs(400, 5));
  const ThreadCountGuard threads;
  std::vector<std::string> shard_bytes;
  int run = 0;
  for (const auto& [nthreads, batch] :
       {std::pair<int, size_t>{1, size_t(4) << 20}, {2, 64}, {2, size_t(4) << 20}, {2, 1}}) {
    omp_set_num_threads(nthreads);
    CorpusConfig c = config({text_source("a", {path("a.txt")})});
    c.cache_dir = path("cache" + std::to_string(run++));
    c.encode_batch_bytes = batch;
    c.max_shard_tokens = 2000;  // several shards
    const data::Corpus corpus = build(c);
    ASSERT_EQ(corpus.sources[0].docs(), 400u);
    // The content, not only agreement between runs: document d holds paragraph d's lines.
    std::istringstream text(read(path("a.txt")));
    std::string line;
    const SpecialIds sp;
    for (uint64_t d = 0; d < 400; ++d) {
      std::vector<std::vector<int32_t>> want;
      while (std::getline(text, line) && !line.empty())
        want.push_back(cat(bytes_ids(line), {sp.line}));
      want.back().push_back(sp.doc);
      ASSERT_EQ(doc_lines(corpus.sources[0], d), want) << "run " << run << ", document " << d;
    }
    std::string all;
    for (const std::string& f : files())
      if (f.rfind(fs::path(c.cache_dir).filename().string() + "/", 0) == 0 &&
          f.find("shard") != std::string::npos)
        all += f.substr(f.find('/')) + ":" + read(path(f)) + "|";
    ASSERT_FALSE(all.empty());
    shard_bytes.push_back(all);
  }
  for (size_t i = 1; i < shard_bytes.size(); ++i) EXPECT_EQ(shard_bytes[i], shard_bytes[0]) << i;
}

TEST_F(CorpusFiles, MissingEmptyAndBadConfigsAreOneLineErrors) {
  EXPECT_TRUE(
      throws_with<IoError>([&] { build(config({text_source("m", {path("missing.txt")})})); },
                           {"missing.txt", "No such file"}));
  put("empty.txt", "");
  put("blank.txt", "\n  \n\t\n");
  EXPECT_TRUE(throws_with<FormatError>(
      [&] {
        build(config({text_source("e", {path("empty.txt"), path("blank.txt")})}));
      },
      {"source e: no document in", "empty.txt", "blank.txt"}));
  fs::create_directories(path("emptydir"));
  EXPECT_TRUE(throws_with<FormatError>(
      [&] { build(config({text_source("d", {path("emptydir")})})); }, "source d: no document"));
  EXPECT_TRUE(throws_with<ValueError>([&] { build(config({})); }, "no sources"));
  put("a.txt", "x\n");
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { build(config({text_source("../up", {path("a.txt")})})); }, "names a directory"));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        build(config({text_source("a", {path("a.txt")}), text_source("a", {path("a.txt")})}));
      },
      "given twice"));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { build(config({text_source("a", {path("a.txt")}, DocSplit::paragraph, 0.0)})); },
      "weight must be positive"));
  CorpusConfig small = config({text_source("a", {path("a.txt")})});
  small.vocab.size = 8;  // the line id 8 does not fit
  EXPECT_TRUE(throws_with<ValueError>([&] { build(small); }, "line id 8 is outside the vocab"));
}

TEST_F(CorpusFiles, AnEncoderFailureLeavesNoShardAndNoManifest) {
  put("a.txt", paragraphs(50, 4));
  CorpusConfig c = config({text_source("a", {path("a.txt")})});
  std::atomic<int64_t> n = 0;
  const EncodeFn failing = [&](std::string_view text, std::vector<int32_t>& out) {
    if (++n == 40) throw ValueError("[tokenizer] boom");
    for (unsigned char ch : text) out.push_back(kByteBase + ch);
  };
  EXPECT_TRUE(throws_with<ValueError>([&] { build_corpus(c, failing); }, "boom"));
  EXPECT_EQ(files(), std::vector<std::string>{"a.txt"});
  const EncodeFn out_of_vocab = [&](std::string_view, std::vector<int32_t>& out) {
    out.push_back(5000);
  };
  EXPECT_TRUE(throws_with<ValueError>([&] { build_corpus(c, out_of_vocab); },
                                      {"token id 5000", "outside the vocab"}));
  EXPECT_EQ(files(), std::vector<std::string>{"a.txt"});
}

TEST_F(CorpusFiles, DirectorySourcesReadTheirFilesInNameOrder) {
  put("d/b.txt", "second\n");
  put("d/a.txt", "first\n");
  put("d/.hidden", "never\n");
  const data::Corpus corpus = build(config({text_source("d", {path("d")})}));
  ASSERT_EQ(corpus.sources[0].docs(), 2u);
  const SpecialIds sp;
  EXPECT_EQ(doc_lines(corpus.sources[0], 0)[0], cat(bytes_ids("first"), {sp.line, sp.doc}));
}

// ---------------------------------------------------------------- validation split

TEST(CorpusSplit, DeterministicDisjointCoveringAndSeedSensitive) {
  const DocumentSplit a = split_documents(1000, "kjv", {0.1, -1, 7});
  const DocumentSplit b = split_documents(1000, "kjv", {0.1, -1, 7});
  EXPECT_EQ(a.valid, b.valid);
  EXPECT_EQ(a.valid.size(), 100u);
  EXPECT_EQ(a.train.size(), 900u);
  std::set<uint64_t> all(a.train.begin(), a.train.end());
  for (uint64_t d : a.valid) EXPECT_TRUE(all.insert(d).second) << d;
  EXPECT_EQ(all.size(), 1000u);
  EXPECT_TRUE(std::is_sorted(a.valid.begin(), a.valid.end()));
  EXPECT_NE(split_documents(1000, "kjv", {0.1, -1, 8}).valid, a.valid);     // seed
  EXPECT_NE(split_documents(1000, "sotu", {0.1, -1, 7}).valid, a.valid);    // source
  EXPECT_EQ(split_documents(1000, "kjv", {0.0, 37, 7}).valid.size(), 37u);  // a count
  // The held-out documents spread over the source (not a block at one end).
  EXPECT_LT(a.valid.front(), 100u);
  EXPECT_GT(a.valid.back(), 900u);
  EXPECT_TRUE(split_documents(10, "x", {0.0, -1, 1}).valid.empty());
  EXPECT_TRUE(throws_with<ValueError>(
      [] {
        split_documents(5, "x", {0.0, 5, 1});
      },
      "leaves none to train on"));
  EXPECT_TRUE(throws_with<ValueError>(
      [] {
        split_documents(5, "x", {1.0, -1, 1});
      },
      "valid_fraction must be in [0, 1)"));
}

// ---------------------------------------------------------------- packing

namespace {

// Checks every sequence of `packed` against the documents it was packed from: <s> first,
// exact length, each line whole (or cut only when alone and too long, its rest going on at the
// start of the next sequence unless LongLines::cut), segments and document ids consistent,
// positions as asked; and that the lines of the epoch are exactly the documents' lines, in
// order, none lost or repeated.
void check_packing(const PackedSource& packed, const std::vector<uint64_t>& docs) {
  const TokenizedSource& src = packed.source();
  const int32_t T = static_cast<int32_t>(packed.options().tokens_per_sample);
  const SpecialIds sp;
  std::vector<std::vector<int32_t>> want, got;
  for (uint64_t d : docs)
    for (auto& l : doc_lines(src, d)) want.push_back(l);
  uint64_t cut = 0;
  PackedSequence seq;
  for (uint64_t i = 0; i < packed.size(); ++i) {
    packed.sequence(i, seq);
    ASSERT_EQ(seq.tokens.size(), static_cast<size_t>(T));
    ASSERT_EQ(seq.tokens[0], sp.bos);
    ASSERT_FALSE(seq.lines.empty());
    EXPECT_EQ(seq.lines.front().begin, 1);
    EXPECT_EQ(seq.lines.back().end, seq.length);
    for (int32_t t = seq.length; t < T; ++t) {
      EXPECT_EQ(seq.tokens[t], sp.pad);
      EXPECT_EQ(seq.segments[t], -1);
    }
    for (size_t k = 0; k < seq.lines.size(); ++k) {
      const LineSpan& ls = seq.lines[k];
      if (k > 0) {
        EXPECT_EQ(ls.begin, seq.lines[k - 1].end);
      }
      const bool split = packed.options().long_lines == LongLines::split;
      if (ls.continued) {
        ASSERT_TRUE(split) << "only split lines go on";
        EXPECT_EQ(k, 0u) << "a line goes on at the start of the next sequence";
        ASSERT_FALSE(got.empty());
        got.back().insert(got.back().end(), seq.tokens.begin() + ls.begin,
                          seq.tokens.begin() + ls.end);
      } else {
        if (split && !got.empty()) {
          EXPECT_EQ(got.back().size(), want[got.size() - 1].size());
        }
        got.emplace_back(seq.tokens.begin() + ls.begin, seq.tokens.begin() + ls.end);
      }
      if (ls.cut && !ls.continued) {
        ++cut;
      }
      if (ls.cut) {
        EXPECT_EQ(seq.lines.size(), 1u) << "a cut line sits alone";
        EXPECT_EQ(seq.length, T);
      }
      // One segment per line, and segments count up from 0 in order.
      for (int32_t t = ls.begin; t < ls.end; ++t)
        EXPECT_EQ(seq.segments[t], seq.segments[ls.begin]);
    }
    EXPECT_EQ(seq.segments[0], 0);
    EXPECT_EQ(seq.segments[seq.length - 1] + 1, static_cast<int32_t>(seq.documents.size()));
    if (packed.options().mode == PackMode::complete_doc) {
      EXPECT_EQ(seq.documents.size(), 1u);
    }
    for (int32_t t = 1; t < seq.length; ++t) {
      const int32_t s = seq.segments[t];
      EXPECT_TRUE(s == seq.segments[t - 1] || s == seq.segments[t - 1] + 1);
      const bool starts = s != seq.segments[t - 1];
      const int32_t want_pos = !packed.options().restart_positions ? t
                               : starts                            ? 0
                                                                   : seq.positions[t - 1] + 1;
      EXPECT_EQ(seq.positions[t], want_pos);
    }
    // A sequence ends early only when the next line would not fit (or at the end).
    if (seq.length < T && i + 1 < packed.size() && packed.options().mode == PackMode::complete) {
      PackedSequence next;
      packed.sequence(i + 1, next);
      EXPECT_GT(seq.length + (next.lines[0].end - next.lines[0].begin), T) << "sequence " << i;
    }
  }
  EXPECT_EQ(cut, packed.cut_lines());
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    if (got[k].size() < want[k].size()) {  // cut: a prefix
      ASSERT_EQ(packed.options().long_lines, LongLines::cut) << "line " << k;
      ASSERT_EQ(got[k].size(), static_cast<size_t>(T - 1));
      ASSERT_TRUE(std::equal(got[k].begin(), got[k].end(), want[k].begin())) << "line " << k;
    } else {
      ASSERT_EQ(got[k], want[k]) << "line " << k;
    }
  }
}

}  // namespace

TEST_F(CorpusFiles, PackingFillsWholeLinesAndLosesOnlyCutTails) {
  std::string text = paragraphs(120, 5);
  text += std::string(150, 'L') + "\nshort tail\n\n";  // a line longer than a sample
  put("a.txt", text);
  const data::Corpus corpus = build(config({text_source("a", {path("a.txt")})}));
  const TokenizedSource& src = corpus.sources[0];
  const DocumentSplit split = split_documents(src.docs(), "a", {0.2, -1, 3});
  for (const LongLines long_lines : {LongLines::split, LongLines::cut}) {
    for (const PackMode mode : {PackMode::complete, PackMode::complete_doc}) {
      for (const bool restart : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "complete_doc " << (mode == PackMode::complete_doc) << " restart "
                     << restart << " cut " << (long_lines == LongLines::cut));
        const PackOptions o{64, mode, restart, long_lines};
        const PackedSource train(src, split.train, o);
        check_packing(train, split.train);
        EXPECT_EQ(train.cut_lines(), 1u);
        EXPECT_EQ(train.cut_tokens(), long_lines == LongLines::cut ? 151u - 63u : 0u);
        uint64_t tokens = 0;
        for (const uint64_t d : split.train)
          for (const auto& l : doc_lines(src, d)) tokens += l.size();
        EXPECT_EQ(train.packed_tokens(), tokens + train.size() - train.cut_tokens());
        check_packing(PackedSource(src, split.valid, o), split.valid);
      }
    }
  }
  // Crossing documents packs denser than one document per sequence.
  EXPECT_LT(PackedSource(src, split.train, {64}).size(),
            PackedSource(src, split.train, {64, PackMode::complete_doc}).size());
}

TEST_F(CorpusFiles, PackedSequenceReportsSegmentsLinesAndPositions) {
  // units: [ab</line>] [cd</line></doc>] [efgh</line></doc>] of 3, 4 and 6 ids
  put("a.txt", "ab\ncd\n\nefgh\n");
  const data::Corpus corpus = build(config({text_source("a", {path("a.txt")})}));
  const SpecialIds sp;
  PackedSequence s;
  PackedSource(corpus.sources[0], {0, 1}, {16, PackMode::complete, true}).sequence(0, s);
  const std::vector<int32_t> tokens = cat(
      cat(cat({sp.bos}, cat(bytes_ids("ab"), {sp.line})), cat(bytes_ids("cd"), {sp.line, sp.doc})),
      cat(cat(bytes_ids("efgh"), {sp.line, sp.doc}), {sp.pad, sp.pad}));
  EXPECT_EQ(s.tokens, tokens);
  EXPECT_EQ(s.length, 14);
  EXPECT_EQ(s.segments, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, -1, -1}));
  EXPECT_EQ(s.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7}));
  ASSERT_EQ(s.lines.size(), 3u);
  EXPECT_EQ(s.lines[1].begin, 4);
  EXPECT_EQ(s.lines[1].end, 8);
  EXPECT_EQ(s.documents, (std::vector<uint64_t>{0, 1}));
  // One token short: the last line no longer fits and starts the next sequence.
  const PackedSource tight(corpus.sources[0], {0, 1}, {13});
  ASSERT_EQ(tight.size(), 2u);
  tight.sequence(0, s);
  EXPECT_EQ(s.length, 8);
  EXPECT_EQ(s.tokens[8], sp.pad);
  tight.sequence(1, s);
  EXPECT_EQ(s.tokens[0], sp.bos);
  EXPECT_EQ(s.tokens[1], kByteBase + 'e');
  EXPECT_EQ(s.documents, std::vector<uint64_t>{1});
}

// ---------------------------------------------------------------- the loader

namespace {

bool same_batch(const Batch& a, const Batch& b) {
  auto eq = [](const Tensor& x, const Tensor& y) {
    return x.nbytes() == y.nbytes() && std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
  };
  return eq(a.tokens, b.tokens) && eq(a.targets, b.targets) && eq(a.loss_mask, b.loss_mask) &&
         eq(a.segment_ids, b.segment_ids) && eq(a.positions, b.positions) &&
         a.sources == b.sources && a.documents == b.documents;
}

}  // namespace

class CorpusLoader : public CorpusFiles {
 protected:
  void SetUp() override {
    CorpusFiles::SetUp();
    put("a.txt", paragraphs(80, 11));
    put("b.txt", paragraphs(60, 12));
    put("c.txt", paragraphs(40, 13));
    corpus_ = std::make_unique<data::Corpus>(
        build(config({text_source("a", {path("a.txt")}, DocSplit::paragraph, 1.0),
                      text_source("b", {path("b.txt")}, DocSplit::paragraph, 2.0),
                      text_source("c", {path("c.txt")}, DocSplit::paragraph, 5.0)})));
    for (const TokenizedSource& s : corpus_->sources)
      packed_.emplace_back(s, split_documents(s.docs(), s.name(), {0.1, -1, 1}).train,
                           PackOptions{48});
  }
  std::vector<const PackedSource*> sources(size_t n = 3) const {
    std::vector<const PackedSource*> v;
    for (size_t i = 0; i < n; ++i) v.push_back(&packed_[i]);
    return v;
  }
  std::unique_ptr<data::Corpus> corpus_;
  std::vector<PackedSource> packed_;
};

TEST_F(CorpusLoader, BatchesAreShiftedTargetsWithMasksAndLayout) {
  DataLoader loader(sources(), {4, 9});
  EXPECT_EQ(loader.seq_len(), 47);
  const Batch b = loader.next();
  EXPECT_EQ(b.tokens.shape(), (Shape{4, 47}));
  const SpecialIds sp;
  for (int64_t r = 0; r < 4; ++r) {
    const int64_t* tok = b.tokens.data<int64_t>() + r * 47;
    const int64_t* tgt = b.targets.data<int64_t>() + r * 47;
    const uint8_t* lm = b.loss_mask.data<uint8_t>() + r * 47;
    const uint8_t* pad = b.padding.data<uint8_t>() + r * 47;
    EXPECT_EQ(tok[0], sp.bos);
    for (int64_t t = 0; t + 1 < 47; ++t) EXPECT_EQ(tgt[t], tok[t + 1]);
    for (int64_t t = 0; t < 47; ++t) {
      EXPECT_EQ(lm[t], tgt[t] != sp.pad ? 1 : 0) << t;
      EXPECT_EQ(pad[t], tok[t] == sp.pad ? 1 : 0) << t;
    }
  }
}

TEST_F(CorpusLoader, ShufflingIsDeterministicSeedSensitiveAndCoversEachEpoch) {
  const std::vector<const PackedSource*> one = sources(1);
  DataLoader a(one, {1, 5}), b(one, {1, 5}), c(one, {1, 6}), plain(one, {1, 5, false});
  const uint64_t n = packed_[0].size();
  std::vector<std::vector<uint64_t>> order_a, order_c, order_plain;
  for (uint64_t epoch = 0; epoch < 2; ++epoch) {
    std::multiset<std::vector<uint64_t>> seen;  // sequences by their document lists
    for (uint64_t i = 0; i < n; ++i) {
      const Batch x = a.next();
      ASSERT_TRUE(same_batch(x, b.next()));
      order_a.push_back(x.documents[0]);
      order_c.push_back(c.next().documents[0]);
      order_plain.push_back(plain.next().documents[0]);
      seen.insert(x.documents[0]);
    }
    // Every sequence once per epoch: the same multiset as the packing order.
    std::multiset<std::vector<uint64_t>> all;
    PackedSequence s;
    for (uint64_t i = 0; i < n; ++i) {
      packed_[0].sequence(i, s);
      all.insert(s.documents);
    }
    EXPECT_EQ(seen, all) << "epoch " << epoch;
    EXPECT_EQ(a.state().sources[0].epoch, static_cast<int64_t>(epoch + 1));
  }
  EXPECT_NE(order_a, order_c);
  // Epochs are shuffled differently; without shuffling both follow the packing order.
  EXPECT_NE(std::vector(order_a.begin(), order_a.begin() + n),
            std::vector(order_a.begin() + n, order_a.end()));
  EXPECT_EQ(std::vector(order_plain.begin(), order_plain.begin() + n),
            std::vector(order_plain.begin() + n, order_plain.end()));
}

TEST_F(CorpusLoader, ResumedLoaderGivesTheSameBatchesAsAnUninterruptedOne) {
  DataLoader straight(sources(), {3, 21});
  std::vector<Batch> want;
  for (int i = 0; i < 40; ++i) want.push_back(straight.next());  // several epochs of source c

  DataLoader first(sources(), {3, 21});
  for (int i = 0; i < 17; ++i) ASSERT_TRUE(same_batch(first.next(), want[i]));
  const std::string saved = first.state().to_json().dump();
  // A fresh process: a new loader from the saved JSON.
  DataLoader resumed(sources(), {3, 21});
  resumed.restore(LoaderState::from_json(io::parse_json(saved, {"loader"}, "state"), {"loader"}));
  EXPECT_EQ(resumed.state().batches, 17);
  for (int i = 17; i < 40; ++i) ASSERT_TRUE(same_batch(resumed.next(), want[i])) << "batch " << i;

  DataLoader other_seed(sources(), {3, 22});
  const LoaderState st = first.state();
  EXPECT_TRUE(throws_with<ValueError>([&] { other_seed.restore(st); }, "saved with seed"));
  DataLoader fewer(sources(2), {3, 21});
  EXPECT_TRUE(throws_with<ValueError>([&] { fewer.restore(st); }, "the state has 3 sources"));
  LoaderState changed = st;
  changed.sources[1].sequences += 1;
  EXPECT_TRUE(throws_with<ValueError>([&] { straight.restore(changed); },
                                      {"source b", "the corpus or tokens_per_sample changed"}));
  io::Json j = st.to_json();
  j["sources"][0]["position"] = -1;
  EXPECT_TRUE(throws_with<ValueError>([&] { LoaderState::from_json(j, {"loader"}); },
                                      "sources[0].position"));
}

TEST_F(CorpusLoader, SourcesAreMixedByWeight) {
  // Weights 1 : 2 : 5. Each row's source is an independent draw, so source s's count over N
  // rows is Binomial(N, p_s); 5 standard deviations (sqrt(p (1 - p) / N) = 0.0054 at p = 0.625,
  // N = 8000) bound the error of a correct sampler for any seed except with odds of 6e-7,
  // while a sampler that ignored the weights (1/3 each) misses by 50 sigma.
  DataLoader loader(sources(), {16, 3});
  const int rows = 8000;
  std::vector<int> count(3, 0);
  for (int i = 0; i < rows / 16; ++i)
    for (int32_t s : loader.next().sources) ++count[s];
  const double p[3] = {1.0 / 8, 2.0 / 8, 5.0 / 8};
  for (int s = 0; s < 3; ++s) {
    const double frac = static_cast<double>(count[s]) / rows;
    const double sigma = std::sqrt(p[s] * (1 - p[s]) / rows);
    EXPECT_NEAR(frac, p[s], 5 * sigma) << "source " << s;
  }
}

TEST(CorpusProgress, LineShowsSizeRateAndEta) {
  EXPECT_EQ(format_progress("tokenizing kjv", 10'000'000, 40'000'000, 2.0),
            "tokenizing kjv  10.0/40.0 MB   25%  5.0 MB/s  ETA 0:06");
  EXPECT_EQ(format_progress("x", 0, 100, 0.0), "x  0.0/0.0 MB    0%  0.0 MB/s  ETA ?");
}
