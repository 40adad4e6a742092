#include "metalm/train/logger.h"

#include <cerrno>
#include <cmath>
#include <filesystem>

#include "metalm/core/error.h"
#include "metalm/core/file.h"

namespace metalm::train {

JsonlLogger::JsonlLogger(const std::string& path, bool append) : path_(path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  MLM_CHECK(file_ != nullptr, IoError, "[log] ", path, ": cannot open for writing: ",
            errno_text(errno));
}

JsonlLogger::~JsonlLogger() {
  if (file_) std::fclose(file_);
}

void JsonlLogger::write(const io::Json& record) {
  const std::string line = record.dump(-1, ' ', false, io::Json::error_handler_t::replace) + "\n";
  MLM_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
            IoError, "[log] ", path_, ": write failed: ", errno_text(errno));
}

}  // namespace metalm::train
