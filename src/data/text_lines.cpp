#include "data/text_lines.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "metalm/core/error.h"

namespace metalm::data {

size_t utf8_error_at(std::string_view s, bool allow_nul) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      if (c == 0 && !allow_nul) return i;
      ++i;
      continue;
    }
    // Lead byte: the sequence length and the allowed range of the second byte, which is
    // where overlong forms (E0, F0), surrogates (ED) and values past U+10FFFF (F4) are told.
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
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

LineReader::LineReader(std::string path, size_t max_line_bytes, std::string op)
    : path_(std::move(path)),
      op_(std::move(op)),
      max_line_bytes_(max_line_bytes),
      fd_(::open(path_.c_str(), O_RDONLY | O_CLOEXEC)),
      buf_(1 << 20) {
  MLM_CHECK(fd_.get() >= 0, IoError, "[", op_, "] ", path_, ": cannot open: ", errno_text(errno));
  struct stat st {};
  MLM_CHECK(::fstat(fd_.get(), &st) == 0 && !S_ISDIR(st.st_mode), IoError, "[", op_, "] ", path_,
            ": is a directory, not a text file");
}

bool LineReader::fill() {
  for (;;) {
    const ssize_t r = ::read(fd_.get(), buf_.data(), buf_.size());
    if (r < 0 && errno == EINTR) continue;
    MLM_CHECK(r >= 0, IoError, "[", op_, "] ", path_, ": read failed: ", errno_text(errno));
    pos_ = 0;
    end_ = static_cast<size_t>(r);
    return r > 0;
  }
}

bool LineReader::next(std::string& line, bool& too_long) {
  line.clear();
  too_long = false;
  bool any = false;  // a last line without "\n" still counts
  for (;;) {
    if (pos_ == end_ && !fill()) break;
    any = true;
    const char* start = buf_.data() + pos_;
    const size_t avail = end_ - pos_;
    const void* nl = std::memchr(start, '\n', avail);
    const size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : avail;
    if (!too_long) {
      if (line.size() + take > max_line_bytes_ + 1) {  // + 1: room for a "\r" stripped below
        too_long = true;
        line.clear();
        line.shrink_to_fit();
      } else {
        line.append(start, take);
      }
    }
    pos_ += take;
    if (nl) {
      ++pos_;
      break;
    }
  }
  if (!any) return false;
  ++line_number_;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.size() > max_line_bytes_) {
    too_long = true;
    line.clear();
  }
  return true;
}

}  // namespace metalm::data
