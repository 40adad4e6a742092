// JSONL: one JSON value per line (training logs now; corpora and task files later). Streams the
// file in chunks, so a file of any size within the caller's cap is read in bounded memory; every
// line goes through the strict io::parse_json. Errors name the file and the line:
// "[log] runs/a.jsonl: line 12: record is not valid JSON: ...".
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "metalm/io/json.h"

namespace metalm::io {

struct JsonlOptions {
  uint64_t max_file_bytes = 0;         // the caller's cap on the whole file (required, > 0)
  uint64_t max_line_bytes = 1 << 20;   // a longer line is refused before it is parsed
  int max_depth = 64;
  // A last line with no newline that is not valid JSON is what a writer killed mid-line leaves
  // (a trainer after kill -9, or a log still being written). false: FormatError naming the line;
  // true: the line is skipped and JsonlStats::truncated_last_line says so.
  bool skip_truncated_last_line = false;
};

// One line handed to the callback: its 1-based number, and a JsonWhere whose source is
// "<path>: line <n>" so that field errors read "[op] path: line 12: loss: expected a number".
struct JsonlLine {
  int64_t number;
  JsonWhere where;
};

struct JsonlStats {
  int64_t lines = 0;    // lines seen, blank ones and a skipped truncated one included
  int64_t records = 0;  // lines parsed and handed to the callback
  bool truncated_last_line = false;
};

// Calls fn(value, line) for every non-blank line of `path`, in order. Blank (whitespace-only)
// lines are skipped; a trailing '\r' is whitespace to JSON, so CRLF files read as well. IoError
// when the file cannot be opened or is not a regular file; FormatError for a file over
// max_file_bytes (checked before reading and while reading), a line over max_line_bytes, or a
// line that parse_json refuses. Exceptions from fn pass through unchanged.
JsonlStats for_each_jsonl(const std::string& path, const std::string& op,
                          const JsonlOptions& options,
                          const std::function<void(const Json&, const JsonlLine&)>& fn);

}  // namespace metalm::io
