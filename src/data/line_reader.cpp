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

LineReader::LineReader(const std::string& path, uint64_t max_line_bytes, std::string op)
    : path_(path),
      op_(std::move(op)),
      max_line_bytes_(max_line_bytes),
      fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
  if (fd_.get() < 0)
    throw IoError(detail::cat("[", op_, "] ", path_, ": cannot open: ", errno_text(errno)));
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0)
    throw IoError(detail::cat("[", op_, "] ", path_, ": cannot stat: ", errno_text(errno)));
  if (!S_ISREG(st.st_mode))
    throw IoError(detail::cat("[", op_, "] ", path_, ": not a regular file"));
  file_size_ = static_cast<uint64_t>(st.st_size);
}

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

bool LineReader::next(std::string_view& line) {
  size_t scanned = begin_;  // buf_[begin_, scanned) holds no "\n"
  for (;;) {
    const char* base = buf_.data();
    const char* nl = static_cast<const char*>(std::memchr(base + scanned, '\n', end_ - scanned));
    const size_t len = (nl != nullptr ? static_cast<size_t>(nl - base) : end_) - begin_;
    if (len > max_line_bytes_)
      throw FormatError(detail::cat("[", op_, "] ", path_, ": line ", line_number_ + 1,
                                    " (byte offset ", consumed_, ") is longer than the limit of ",
                                    max_line_bytes_, " bytes (max_line_bytes)"));
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

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII runs 8 bytes at a time: most corpus text is ASCII.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned c = p[i];
    if (c < 0x80) {
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

}  // namespace metalm::data
