#include "metalm/data/documents.h"

#include "metalm/core/error.h"
#include "metalm/data/line_reader.h"

namespace metalm::data {
namespace {

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

[[noreturn]] void bad_utf8(const LineReader& r, std::string_view line, size_t at) {
  throw FormatError(detail::cat("[corpus] ", r.path(), ": line ", r.line_number(), " (byte offset ",
                                r.line_offset() + at, "): invalid UTF-8 byte 0x",
                                "0123456789abcdef"[static_cast<unsigned char>(line[at]) >> 4],
                                "0123456789abcdef"[static_cast<unsigned char>(line[at]) & 15],
                                " (the corpus must be UTF-8; iconv converts other encodings)"));
}

// One JSONL record: its "text" split into lines. Returns whether it held a non-blank line.
bool read_record(const LineReader& r, std::string_view record, const DocumentOptions& options,
                 const DocumentSink& sink) {
  const io::JsonWhere where("corpus", detail::cat(r.path(), ": line ", r.line_number(),
                                                  " (byte offset ", r.line_offset(), ")"));
  const io::Json j =
      io::parse_json(record, where, "a JSONL record", io::JsonLimits{options.max_line_bytes, 64});
  io::require_object(j, "", where);
  const auto it = j.find("text");
  if (it == j.end()) where.format_error("a JSONL record needs a \"text\" field");
  const std::string text = io::read_string(*it, "text", where);
  bool any = false;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!is_blank(line)) {
      sink.line(line);
      any = true;
    }
    begin = end + 1;
  }
  return any;
}

}  // namespace

const io::EnumNames<SourceFormat>& source_format_names() {
  static const io::EnumNames<SourceFormat> n{{SourceFormat::text, "text"},
                                             {SourceFormat::jsonl, "jsonl"}};
  return n;
}
const io::EnumNames<DocSplit>& doc_split_names() {
  static const io::EnumNames<DocSplit> n{
      {DocSplit::paragraph, "paragraph"}, {DocSplit::file, "file"}, {DocSplit::line, "line"}};
  return n;
}

SourceFormat format_of_path(const std::string& path) {
  const std::string_view ext = ".jsonl";
  return path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0
             ? SourceFormat::jsonl
             : SourceFormat::text;
}

uint64_t read_documents(const std::string& path, const DocumentOptions& options,
                        const DocumentSink& sink, const std::function<void(uint64_t)>& progress) {
  LineReader reader(path, options.max_line_bytes);
  uint64_t docs = 0;
  bool open = false;  // a document has lines not yet ended
  auto end_doc = [&] {
    if (!open) return;
    sink.end_document();
    ++docs;
    open = false;
  };
  uint64_t reported = 0;
  std::string_view line;
  while (reader.next(line)) {
    if (const size_t bad = find_invalid_utf8(line); bad != std::string_view::npos)
      bad_utf8(reader, line, bad);
    if (progress && reader.bytes_consumed() - reported >= (1 << 20)) {
      reported = reader.bytes_consumed();
      progress(reported);
    }
    if (is_blank(line)) {
      if (options.format == SourceFormat::text && options.split == DocSplit::paragraph) end_doc();
      continue;
    }
    if (options.format == SourceFormat::jsonl) {
      if (read_record(reader, line, options, sink)) {
        open = true;
        end_doc();
      }
      continue;
    }
    sink.line(line);
    open = true;
    if (options.split == DocSplit::line) end_doc();
  }
  end_doc();
  if (progress) progress(reader.bytes_consumed());
  return docs;
}

}  // namespace metalm::data
