#include "metalm/data/line_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "metalm/core/error.h"

namespace metalm::data {
namespace {
constexpr size_t kChunk = 1 << 20;  // bytes asked of read() at a time
}  // namespace

LineReader::LineReader(const std::string& path, uint64_t max_line_bytes, std::string op,
                       LongLines long_lines)
    : path_(path),
      op_(std::move(op)),
      max_line_bytes_(max_line_bytes),
      long_lines_(long_lines),
      fd_(open_regular_file(path, op_, &file_size_)) {}

bool LineReader::fill() {
  if (eof_) return false;
  // Keep the unread part at the front, then make room for one more chunk. The buffer never
  // exceeds max_line_bytes + kChunk: next() refuses a longer unfinished line before asking.
  if (begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() < end_ + kChunk) buf_.resize(end_ + kChunk);
  for (;;) {
    const ssize_t r = ::read(fd_.get(), buf_.data() + end_, kChunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      throw IoError(detail::cat("[", op_, "] ", path_, ": read failed: ", errno_text(errno)));
    if (r == 0) {
      eof_ = true;
      return false;
    }
    end_ += static_cast<size_t>(r);
    return true;
  }
}

bool LineReader::next(std::string_view& line, bool* skipped) {
  if (skipped) *skipped = false;
  size_t scanned = begin_;  // buf_[begin_, scanned) holds no "\n"
  uint64_t dropped = 0;     // bytes of a too-long line already thrown away
  for (;;) {
    const char* base = buf_.data();
    const char* nl = static_cast<const char*>(std::memchr(base + scanned, '\n', end_ - scanned));
    const size_t len = (nl != nullptr ? static_cast<size_t>(nl - base) : end_) - begin_;
    if (len + dropped > max_line_bytes_) {
      if (long_lines_ == LongLines::error)
        throw FormatError(detail::cat("[", op_, "] ", path_, ": line ", line_number_ + 1,
                                      " (byte offset ", consumed_, ") is longer than the limit of ",
                                      max_line_bytes_, " bytes (max_line_bytes)"));
      size_t taken = len + 1;  // the rest of the line with its "\n"
      if (nl == nullptr) {  // drop what is buffered and read on to the line's end
        dropped += len;
        begin_ = end_;
        if (fill()) {
          scanned = begin_;
          continue;
        }
        taken = 0;  // the file ended inside the line: every byte of it is in `dropped`
      }
      line_offset_ = consumed_;
      ++line_number_;
      consumed_ += dropped + taken;
      begin_ += taken;
      line = std::string_view();
      if (skipped) *skipped = true;
      return true;
    }
    size_t taken = len + 1;  // with its "\n"
    if (nl == nullptr) {
      if (fill()) {  // fill() moved the unread bytes to the front
        scanned = begin_ + len;
        continue;
      }
      if (len == 0) return false;
      taken = len;  // the last line, without "\n"
    }
    line = std::string_view(buf_.data() + begin_, len);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line_offset_ = consumed_;
    ++line_number_;
    consumed_ += taken;
    begin_ += taken;
    return true;
  }
}

size_t find_invalid_utf8(std::string_view s, bool allow_nul) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII runs 8 bytes at a time: most corpus text is ASCII. (w - 0x01..) & ~w & 0x80..
    // is nonzero iff a byte of w is 0.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      if (!allow_nul && ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull)) break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned c = p[i];
    if (c < 0x80) {
      if (c == 0 && !allow_nul) return i;
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;  // a continuation byte, C0/C1 (overlong) or F5..FF
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

int64_t utf8_length(std::string_view s) {
  int64_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace metalm::data
