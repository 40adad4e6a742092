// A streaming line reader for corpora and tokenizer training: a file is read through one buffer
// and handed out a line at a time, so a corpus of any size reads in memory bounded by the longest
// line allowed. A line longer than max_line_bytes is a FormatError naming the file, the line and
// its byte offset (a binary file or a one-line JSON dump would otherwise grow the buffer without
// bound), or, for tokenizer training (SentencePiece skips such sentences), skipped as it is read.
// It only splits lines; parsing records is the caller's (the corpus readers; io/jsonl.h).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "metalm/core/file.h"

namespace metalm::data {

class LineReader {
 public:
  // IoError "[op] path: ..." if the file cannot be opened or is not a regular file.
  enum class LongLines { error, skip };
  LineReader(const std::string& path, uint64_t max_line_bytes, std::string op = "corpus",
             LongLines long_lines = LongLines::error);
  // The next line without its "\n" (a "\r" before it is dropped too), valid until the next
  // call; false at the end. A last line without "\n" is returned like the others. With
  // LongLines::skip a line over the limit comes back empty with *skipped set (its bytes were
  // dropped as they were read, never held).
  bool next(std::string_view& line, bool* skipped = nullptr);
  uint64_t line_number() const { return line_number_; }  // 1-based, of the line last returned
  uint64_t line_offset() const { return line_offset_; }  // byte offset of its first byte
  uint64_t bytes_consumed() const { return consumed_; }  // through the end of the last line
  uint64_t file_size() const { return file_size_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();  // reads more; false at the end of the file

  std::string path_, op_;
  uint64_t max_line_bytes_;
  LongLines long_lines_;
  uint64_t file_size_ = 0;  // before fd_: set by fd_'s initialiser
  FileDescriptor fd_;
  std::string buf_;
  size_t begin_ = 0, end_ = 0;  // unread bytes are buf_[begin_, end_)
  bool eof_ = false;
  uint64_t line_number_ = 0, line_offset_ = 0, consumed_ = 0;
};

// The offset of the first byte of s that does not belong to well-formed UTF-8 (RFC 3629:
// overlong forms, surrogates and code points above U+10FFFF are ill-formed), or npos. With
// allow_nul false a NUL byte counts as invalid too (text holding one is UTF-16 or binary).
size_t find_invalid_utf8(std::string_view s, bool allow_nul = true);
// Unicode characters of valid UTF-8 (the bytes that do not continue a character).
int64_t utf8_length(std::string_view s);

}  // namespace metalm::data
