// Plain-text input for the data layer: UTF-8 checks and a line reader whose memory stays
// bounded whatever the file holds (a 10 GB file without a newline is skipped, not loaded).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metalm/core/file.h"

namespace metalm::data {

// Offset of the first byte where s stops being valid UTF-8 (overlong forms, surrogates and
// code points above U+10FFFF are invalid; so is NUL unless allow_nul), or npos if it is valid.
// NUL is refused in corpora: text that holds it is UTF-16 or binary, not what was meant.
size_t utf8_error_at(std::string_view s, bool allow_nul = true);
// Unicode characters in valid UTF-8 (bytes that do not continue a character).
int64_t utf8_length(std::string_view s);

class LineReader {
 public:
  // IoError "[op] path: cannot open: ..." (also for a directory).
  LineReader(std::string path, size_t max_line_bytes, std::string op);

  // The next line without its "\n" (and a "\r" before it); false at the end of the file. A
  // line longer than max_line_bytes comes back empty with too_long set: its bytes are skipped
  // as they are read, never held.
  bool next(std::string& line, bool& too_long);
  int64_t line_number() const { return line_number_; }  // 1-based, of the last line returned
  const std::string& path() const { return path_; }

 private:
  bool fill();  // reads the next block; false at the end of the file

  std::string path_, op_;
  size_t max_line_bytes_;
  FileDescriptor fd_;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  int64_t line_number_ = 0;
};

}  // namespace metalm::data
