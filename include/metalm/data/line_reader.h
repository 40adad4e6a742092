// A streaming line reader for corpora: a file is read through one buffer and handed out a line
// at a time, so a corpus of any size reads in memory bounded by the longest line allowed. A
// line longer than max_line_bytes is a FormatError naming the file, the line and its byte offset
// (a binary file or a one-line JSON dump would otherwise grow the buffer without bound). It
// only splits lines; parsing records is the caller's (the corpus readers; io/jsonl.h for tasks).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "metalm/core/file.h"

namespace metalm::data {

class LineReader {
 public:
  // IoError "[op] path: ..." if the file cannot be opened or is not a regular file.
  LineReader(const std::string& path, uint64_t max_line_bytes, std::string op = "corpus");
  // The next line without its "\n" (a "\r" before it is dropped too), valid until the next
  // call; false at the end. A last line without "\n" is returned like the others.
  bool next(std::string_view& line);
  uint64_t line_number() const { return line_number_; }  // 1-based, of the line last returned
  uint64_t line_offset() const { return line_offset_; }  // byte offset of its first byte
  uint64_t bytes_consumed() const { return consumed_; }  // through the end of the last line
  uint64_t file_size() const { return file_size_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();  // reads more; false at the end of the file

  std::string path_, op_;
  uint64_t max_line_bytes_;
  FileDescriptor fd_;
  uint64_t file_size_ = 0;
  std::string buf_;
  size_t begin_ = 0, end_ = 0;  // unread bytes are buf_[begin_, end_)
  bool eof_ = false;
  uint64_t line_number_ = 0, line_offset_ = 0, consumed_ = 0;
};

// The offset of the first byte of s that does not belong to well-formed UTF-8 (RFC 3629:
// overlong forms, surrogates and code points above U+10FFFF are ill-formed), or npos.
size_t find_invalid_utf8(std::string_view s);

}  // namespace metalm::data
