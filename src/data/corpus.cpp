// Building the corpus cache: per source, reuse the shards a matching manifest lists, or stream
// the files through the encoder into new shards and write the manifest last.
#include "metalm/data/corpus.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

#include "data/json_list.h"
#include "metalm/core/error.h"
#include "metalm/data/progress.h"
#include "metalm/io/json.h"

namespace metalm::data {
namespace fs = std::filesystem;
namespace {

// ------------------------------------------------------------------ the manifest

struct FileStamp {
  std::string path;
  int64_t bytes = 0, mtime_ns = 0;
};
struct ShardEntry {
  std::string file;
  int64_t tokens = 0, lines = 0, docs = 0;
};
// Everything a source's shards depend on, and the shards themselves.
struct Manifest {
  int64_t version = 1;
  std::string source;
  SourceFormat format = SourceFormat::text;
  DocSplit split = DocSplit::paragraph;
  int64_t max_line_bytes = 0;
  std::string vocab_hash;  // hex: a u64 does not fit the int64 fields
  int64_t vocab_size = 0;
  int64_t line_id = 0, doc_id = 0;
  std::vector<FileStamp> files;
  std::vector<ShardEntry> shards;
};

const io::FieldTable<FileStamp>& file_table() {
  static const io::FieldTable<FileStamp> t(
      "a manifest file entry",
      {io::field("path", &FileStamp::path), io::field("bytes", &FileStamp::bytes),
       io::field("mtime_ns", &FileStamp::mtime_ns)});
  return t;
}
const io::FieldTable<ShardEntry>& shard_table() {
  static const io::FieldTable<ShardEntry> t(
      "a manifest shard entry",
      {io::field("file", &ShardEntry::file), io::field("tokens", &ShardEntry::tokens),
       io::field("lines", &ShardEntry::lines), io::field("docs", &ShardEntry::docs)});
  return t;
}
const io::FieldTable<Manifest>& manifest_table() {
  static const io::FieldTable<Manifest> t(
      "a corpus manifest",
      {io::field("version", &Manifest::version), io::field("source", &Manifest::source),
       io::field<Manifest>("format", &Manifest::format, source_format_names()),
       io::field<Manifest>("split", &Manifest::split, doc_split_names()),
       io::field("max_line_bytes", &Manifest::max_line_bytes),
       io::field("vocab_hash", &Manifest::vocab_hash),
       io::field("vocab_size", &Manifest::vocab_size), io::field("line_id", &Manifest::line_id),
       io::field("doc_id", &Manifest::doc_id), list_field("files", &Manifest::files, &file_table),
       list_field("shards", &Manifest::shards, &shard_table)});
  return t;
}

// The manifest's inputs as JSON (all but the shards): reuse needs these to be equal.
io::Json inputs_of(const Manifest& m) {
  io::Json j = manifest_table().write(m);
  j.erase("shards");
  return j;
}

std::string hex64(uint64_t v) {
  char s[19];
  std::snprintf(s, sizeof s, "0x%016llx", static_cast<unsigned long long>(v));
  return s;
}

FileStamp stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw IoError(detail::cat("[corpus] ", path, ": cannot stat: ", errno_text(errno)));
  if (!S_ISREG(st.st_mode)) throw IoError(detail::cat("[corpus] ", path, ": not a regular file"));
  return {path, static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

Manifest expected_manifest(const CorpusConfig& c, const SourceConfig& s) {
  Manifest m;
  m.source = s.name;
  m.format = s.documents.format;
  m.split = s.documents.split;
  m.max_line_bytes = static_cast<int64_t>(s.documents.max_line_bytes);
  m.vocab_hash = hex64(c.vocab.hash);
  m.vocab_size = static_cast<int64_t>(c.vocab.size);
  m.line_id = c.special.line;
  m.doc_id = c.special.doc;
  for (const std::string& f : source_files(s)) m.files.push_back(stamp_of(f));
  return m;
}

std::string shard_name(size_t i) {
  char s[32];
  std::snprintf(s, sizeof s, "shard-%05zu.bin", i);
  return s;
}

// ------------------------------------------------------------------ checks

void check_config(const CorpusConfig& c) {
  MLM_CHECK(!c.sources.empty(), ValueError, "[corpus] no sources given");
  MLM_CHECK(!c.cache_dir.empty(), ValueError, "[corpus] no cache directory given");
  MLM_CHECK(c.vocab.size > 0, ValueError, "[corpus] the vocab size must be positive");
  MLM_CHECK(c.max_shard_tokens > 0 && c.max_shard_tokens <= (uint64_t{1} << 31), ValueError,
            "[corpus] max_shard_tokens must be in [1, 2^31], got ", c.max_shard_tokens);
  const std::pair<const char*, int32_t> ids[] = {{"bos", c.special.bos},
                                                 {"pad", c.special.pad},
                                                 {"doc", c.special.doc},
                                                 {"line", c.special.line}};
  for (const auto& [what, id] : ids)
    MLM_CHECK(id >= 0 && static_cast<uint64_t>(id) < c.vocab.size, ValueError, "[corpus] the ",
              what, " id ", id, " is outside the vocab [0, ", c.vocab.size, ")");
  std::set<std::string> names;
  for (const SourceConfig& s : c.sources) {
    const bool ok_chars = std::all_of(s.name.begin(), s.name.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.';
    });
    MLM_CHECK(!s.name.empty() && s.name.size() <= 64 && ok_chars && s.name != "." && s.name != "..",
              ValueError, "[corpus] source name ", io::quote(s.name),
              ": use 1-64 characters of A-Z a-z 0-9 _ - . (it names a directory)");
    MLM_CHECK(names.insert(s.name).second, ValueError, "[corpus] source ", s.name,
              " is given twice");
    MLM_CHECK(!s.paths.empty(), ValueError, "[corpus] source ", s.name, ": no paths given");
    MLM_CHECK(std::isfinite(s.weight) && s.weight > 0, ValueError, "[corpus] source ", s.name,
              ": weight must be positive, got ", s.weight);
    MLM_CHECK(s.documents.max_line_bytes > 0, ValueError, "[corpus] source ", s.name,
              ": max_line_bytes must be positive");
  }
}

// ------------------------------------------------------------------ tokenizing

// Lines wait here until about CorpusConfig::encode_batch_bytes of text are in, then are encoded in
// parallel over the pool (the encoder is thread-safe: corpus.h) and handed to the writer in their
// order, so the shards are the same for any thread count. Events keep lines and document ends in
// order; a batch may end inside a document (a single-document file larger than memory still
// streams).
class EncodeBatch {
 public:
  static constexpr int64_t kEndDocument = -1;

  EncodeBatch(const EncodeFn& encode, size_t max_bytes) : encode_(encode), max_bytes_(max_bytes) {}
  bool full() const { return bytes_ >= max_bytes_; }
  void add_line(std::string_view text) {
    events_.push_back(static_cast<int64_t>(lines_.size()));
    lines_.emplace_back(text);
    bytes_ += text.size();
  }
  void add_end_document() { events_.push_back(kEndDocument); }

  // Encodes the lines, then calls line(ids) and end_document() in the order they came.
  template <class LineFn, class EndFn>
  void flush(const LineFn& line, const EndFn& end_document) {
    ids_.resize(lines_.size());
    const int64_t n = static_cast<int64_t>(lines_.size());
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 64) if (n > 256)
    for (int64_t i = 0; i < n; ++i) {
      try {
        ids_[static_cast<size_t>(i)].clear();
        encode_(lines_[static_cast<size_t>(i)], ids_[static_cast<size_t>(i)]);
      } catch (...) {
#pragma omp critical(metalm_corpus_encode_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    for (const int64_t e : events_) {
      if (e == kEndDocument)
        end_document();
      else
        line(ids_[static_cast<size_t>(e)]);
    }
    lines_.clear();
    events_.clear();
    bytes_ = 0;
  }

 private:
  const EncodeFn& encode_;
  const size_t max_bytes_;
  std::vector<std::string> lines_;
  std::vector<std::vector<int32_t>> ids_;
  std::vector<int64_t> events_;
  size_t bytes_ = 0;
};

// Streams one source into shards; returns the shard entries. Each shard is renamed into
// place when complete; the manifest (written by the caller) is what makes them count.
std::vector<ShardEntry> tokenize_source(const CorpusConfig& c, const SourceConfig& s,
                                        const std::vector<FileStamp>& files, const fs::path& dir,
                                        const EncodeFn& encode) {
  uint64_t total = 0;
  for (const FileStamp& f : files) total += static_cast<uint64_t>(f.bytes);
  ProgressBar bar("tokenizing " + s.name, total, c.show_progress ? stderr : nullptr);

  std::vector<ShardEntry> entries;
  std::unique_ptr<io::ShardWriter> writer;  // opened at the first line of a shard
  std::vector<int32_t> pending;             // the last line, held until we know if it ends a doc
  bool has_pending = false;
  auto finish_shard = [&] {
    const io::ShardHeader h = writer->finish();
    entries.push_back({shard_name(entries.size()), static_cast<int64_t>(h.token_count),
                       static_cast<int64_t>(h.line_count), static_cast<int64_t>(h.doc_count)});
    writer.reset();
  };
  auto write_line = [&](const std::vector<int32_t>& ids) {
    if (!writer)
      writer = std::make_unique<io::ShardWriter>((dir / shard_name(entries.size())).string(),
                                                 c.vocab, s.name);
    if (has_pending) writer->add_line(pending.data(), pending.size());
    pending.assign(ids.begin(), ids.end());
    pending.push_back(c.special.line);
    has_pending = true;
  };
  auto write_end_document = [&] {
    pending.push_back(c.special.doc);
    writer->add_line(pending.data(), pending.size());
    has_pending = false;
    writer->end_document();
    if (writer->token_count() >= c.max_shard_tokens) finish_shard();
  };
  EncodeBatch batch(encode, c.encode_batch_bytes);
  DocumentSink sink;
  sink.line = [&](std::string_view text) {
    batch.add_line(text);
    if (batch.full()) batch.flush(write_line, write_end_document);
  };
  sink.end_document = [&] { batch.add_end_document(); };
  uint64_t done_before = 0;
  for (const FileStamp& f : files) {
    read_documents(f.path, s.documents, sink,
                   [&](uint64_t bytes) { bar.update(done_before + bytes); });
    batch.flush(write_line, write_end_document);
    done_before += static_cast<uint64_t>(f.bytes);
    // A file rewritten while we read it would be cached under a stamp that is not its content.
    const FileStamp now = stamp_of(f.path);
    MLM_CHECK(now.bytes == f.bytes && now.mtime_ns == f.mtime_ns, IoError, "[corpus] ", f.path,
              ": changed while it was being tokenized");
  }
  if (writer) finish_shard();
  bar.finish();
  if (entries.empty()) {
    std::string list;
    for (const FileStamp& f : files) list += (list.empty() ? "" : ", ") + f.path;
    throw FormatError(detail::cat("[corpus] source ", s.name, ": no document in ", list,
                                  " (empty or blank files?)"));
  }
  return entries;
}

std::vector<io::Shard> open_shards(const fs::path& dir, const Manifest& m, const io::VocabInfo& v,
                                   bool verify) {
  std::vector<io::Shard> shards;
  for (const ShardEntry& e : m.shards) {
    shards.emplace_back((dir / e.file).string(), v, verify);
    const io::ShardHeader& h = shards.back().header();
    MLM_CHECK(h.token_count == static_cast<uint64_t>(e.tokens) &&
                  h.line_count == static_cast<uint64_t>(e.lines) &&
                  h.doc_count == static_cast<uint64_t>(e.docs) && h.source == m.source,
              FormatError, "[corpus] ", (dir / e.file).string(),
              ": does not match its manifest entry");
  }
  return shards;
}

// The cached shards if the manifest matches `want`, else nullopt (a note says why, when the
// cache existed but could not be used).
std::optional<std::vector<io::Shard>> try_reuse(const CorpusConfig& c, const fs::path& dir,
                                                const Manifest& want) {
  const fs::path path = dir / "manifest.json";
  if (!fs::exists(path)) return std::nullopt;
  try {
    Manifest have;
    manifest_table().read(io::load_json_file(path.string(), "corpus", "a corpus manifest",
                                             io::JsonLimits{64 << 20, 16}),
                          have, io::JsonWhere("corpus", path.string()));
    if (inputs_of(have) != inputs_of(want)) return std::nullopt;
    return open_shards(dir, have, c.vocab, c.verify_reused);
  } catch (const Error& e) {
    // A cache is rebuildable: say why it is not used and make a new one.
    std::fprintf(stderr, "%s; re-tokenizing\n", e.what());
    return std::nullopt;
  }
}

}  // namespace

std::vector<std::string> source_files(const SourceConfig& source) {
  std::vector<std::string> out;
  for (const std::string& p : source.paths) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      out.push_back(p);  // a missing file fails when it is stamped, naming it
      continue;
    }
    std::vector<std::string> in_dir;
    for (fs::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!name.empty() && name[0] != '.' && it->is_regular_file(ec))
        in_dir.push_back(it->path().string());
    }
    MLM_CHECK(!ec, IoError, "[corpus] ", p, ": cannot list: ", ec.message());
    std::sort(in_dir.begin(), in_dir.end());
    out.insert(out.end(), in_dir.begin(), in_dir.end());
  }
  return out;
}

TokenizedSource::TokenizedSource(SourceConfig config, std::vector<io::Shard> shards, bool reused)
    : config_(std::move(config)), shards_(std::move(shards)), reused_(reused) {
  doc_begin_.push_back(0);
  for (const io::Shard& s : shards_) {
    doc_begin_.push_back(doc_begin_.back() + s.docs());
    tokens_ += s.tokens();
    lines_ += s.lines();
  }
}

TokenizedSource::Doc TokenizedSource::doc(uint64_t d) const {
  MLM_CHECK(d < docs(), ValueError, "[corpus] source ", name(), ": document ", d, " out of range (",
            docs(), " documents)");
  const size_t k = static_cast<size_t>(std::upper_bound(doc_begin_.begin(), doc_begin_.end(), d) -
                                       doc_begin_.begin() - 1);
  const io::Shard& s = shards_[k];
  const uint64_t local = d - doc_begin_[k];
  return {&s, s.doc_first_line(local), s.doc_first_line(local + 1)};
}

Corpus build_corpus(const CorpusConfig& config, const EncodeFn& encode) {
  check_config(config);
  MLM_CHECK(static_cast<bool>(encode), ValueError, "[corpus] no encode function given");
  Corpus corpus;
  for (const SourceConfig& s : config.sources) {
    const fs::path dir = fs::path(config.cache_dir) / s.name;
    Manifest want = expected_manifest(config, s);
    if (auto shards = try_reuse(config, dir, want)) {
      if (config.show_progress) {
        uint64_t tokens = 0;
        for (const io::Shard& sh : *shards) tokens += sh.tokens();
        std::fprintf(stderr, "[corpus] %s: reusing %zu shard(s), %llu tokens (%s)\n",
                     s.name.c_str(), shards->size(), static_cast<unsigned long long>(tokens),
                     dir.string().c_str());
      }
      corpus.sources.emplace_back(s, std::move(*shards), true);
      continue;
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    MLM_CHECK(!ec, IoError, "[corpus] ", dir.string(), ": cannot create: ", ec.message());
    // From here on, the old shards are not a cache.
    fs::remove(dir / "manifest.json", ec);
    MLM_CHECK(!ec, IoError, "[corpus] ", (dir / "manifest.json").string(),
              ": cannot remove: ", ec.message());
    want.shards = tokenize_source(config, s, want.files, dir, encode);
    write_file_atomic("corpus", (dir / "manifest.json").string(),
                      manifest_table().write(want).dump(1) + "\n");
    // Shards of an earlier, longer build are no longer listed: remove them.
    for (size_t i = want.shards.size(); fs::remove(dir / shard_name(i), ec); ++i) {
    }
    corpus.sources.emplace_back(s, open_shards(dir, want, config.vocab, false), false);
  }
  return corpus;
}

}  // namespace metalm::data
