// The training log: one JSON object per line (step, loss, lr, grad norm, tokens/s, wall time,
// ...; DESIGN section 4), flushed line by line so a crash loses at most the line being written,
// and the console progress line with its ETA.
#pragma once
#include <cstdio>
#include <string>

#include "metalm/io/json.h"

namespace metalm::train {

class JsonlLogger {
 public:
  // Creates parent directories; append = false truncates. IoError if it cannot be opened.
  explicit JsonlLogger(const std::string& path, bool append = false);
  ~JsonlLogger();
  JsonlLogger(const JsonlLogger&) = delete;
  JsonlLogger& operator=(const JsonlLogger&) = delete;
  void write(const io::Json& record);  // one line; IoError on a failed write
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace metalm::train
