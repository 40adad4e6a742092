// The JSONL reader: read(2) in 64 KiB chunks, split at '\n', each line through parse_json. A line
// that fits in one chunk is parsed in place; only a line that straddles chunks is copied.
#include "metalm/io/jsonl.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>
#include <vector>

#include "metalm/core/error.h"
#include "metalm/core/file.h"

namespace metalm::io {
namespace {

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

class LineReader {
 public:
  LineReader(const std::string& path, const std::string& op, const JsonlOptions& o,
             const std::function<void(const Json&, const JsonlLine&)>& fn)
      : path_(path), op_(op), o_(o), fn_(fn) {}

  // One complete line without its '\n'; `terminated` is false for a last line with no newline.
  void line(std::string_view text, bool terminated) {
    ++stats.lines;
    if (is_blank(text)) return;
    const JsonWhere where{op_, detail::cat(path_, ": line ", stats.lines)};
    if (!terminated && !Json::accept(text)) {
      if (o_.skip_truncated_last_line) {
        stats.truncated_last_line = true;
        return;
      }
      where.format_error(
          "truncated last line (no newline at the end of the file and not valid JSON: was the "
          "writer killed mid-line?)");
    }
    const Json value = parse_json(text, where, "record", {o_.max_line_bytes, o_.max_depth});
    ++stats.records;
    fn_(value, JsonlLine{stats.lines, where});
  }

  // Called when the current line has grown to n bytes without its end.
  void check_length(uint64_t n) const {
    if (n > o_.max_line_bytes)
      throw FormatError(detail::cat("[", op_, "] ", path_, ": line ", stats.lines + 1,
                                    ": longer than ", o_.max_line_bytes, " bytes (the line limit)"));
  }

  [[noreturn]] void too_large(uint64_t n) const {
    throw FormatError(detail::cat("[", op_, "] ", path_, ": ", n,
                                  " bytes is too large for a JSONL file (limit ", o_.max_file_bytes,
                                  ")"));
  }

  JsonlStats stats;

 private:
  const std::string& path_;
  const std::string& op_;
  const JsonlOptions& o_;
  const std::function<void(const Json&, const JsonlLine&)>& fn_;
};

}  // namespace

JsonlStats for_each_jsonl(const std::string& path, const std::string& op,
                          const JsonlOptions& options,
                          const std::function<void(const Json&, const JsonlLine&)>& fn) {
  MLM_CHECK(options.max_file_bytes > 0 && options.max_line_bytes > 0, ValueError, "[", op, "] ",
            path, ": JSONL size caps must be positive");
  uint64_t file_size = 0;
  const FileDescriptor fd = open_regular_file(path, op, &file_size);

  LineReader reader(path, op, options, fn);
  if (file_size > options.max_file_bytes) reader.too_large(file_size);
  std::vector<char> buf(1 << 16);
  std::string pending;  // the start of a line that began in an earlier chunk
  uint64_t total = 0;
  for (;;) {
    const ssize_t r = ::read(fd.get(), buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    MLM_CHECK(r >= 0, IoError, "[", op, "] ", path, ": read failed: ", errno_text(errno));
    if (r == 0) break;
    total += static_cast<uint64_t>(r);
    if (total > options.max_file_bytes) reader.too_large(total);  // grew while we read
    std::string_view chunk(buf.data(), static_cast<size_t>(r));
    for (size_t nl; (nl = chunk.find('\n')) != std::string_view::npos; chunk.remove_prefix(nl + 1)) {
      reader.check_length(pending.size() + nl);
      if (pending.empty()) {
        reader.line(chunk.substr(0, nl), true);
      } else {
        pending.append(chunk.substr(0, nl));
        reader.line(pending, true);
        pending.clear();
      }
    }
    reader.check_length(pending.size() + chunk.size());
    pending.append(chunk);
  }
  if (!pending.empty()) reader.line(pending, false);
  return reader.stats;
}

}  // namespace metalm::io
