#include "metalm/core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <utility>

#include "metalm/core/error.h"

namespace metalm {
namespace {
template <typename... Args>
[[noreturn]] void io_error(const std::string& op, const std::string& path, const Args&... args) {
  throw IoError(detail::cat("[", op, "] ", path, ": ", args...));
}
}  // namespace

std::string errno_text(int err) { return std::generic_category().message(err); }

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

int FileDescriptor::release() { return std::exchange(fd_, -1); }

void read_exact(int fd, void* dst, uint64_t n, const std::string& op, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = ::read(fd, p, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(op, path, "read failed: ", errno_text(errno));
    if (r == 0) io_error(op, path, "unexpected end of file (did the file change while reading?)");
    p += r;
    n -= static_cast<uint64_t>(r);
  }
}

AtomicFile::AtomicFile(std::string op, std::string target)
    : op_(std::move(op)),
      target_(std::move(target)),
      temp_(detail::cat(target_, ".tmp.", ::getpid())),
      fd_(::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {
  if (fd_.get() < 0) io_error(op_, target_, "cannot create ", temp_, ": ", errno_text(errno));
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    ::close(fd_.release());
    ::unlink(temp_.c_str());
  }
}

void AtomicFile::write(const void* data, uint64_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t r = ::write(fd_.get(), p, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(op_, target_, "write to ", temp_, " failed: ", errno_text(errno));
    p += r;
    n -= static_cast<uint64_t>(r);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_.get()) != 0) io_error(op_, target_, "fsync of ", temp_, " failed: ", errno_text(errno));
  if (::close(fd_.release()) != 0)
    io_error(op_, target_, "close of ", temp_, " failed: ", errno_text(errno));
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    io_error(op_, target_, "cannot rename ", temp_, " over it: ", errno_text(errno));
  committed_ = true;
  // Make the rename itself durable; a failure here loses nothing already written.
  const std::string dir = std::filesystem::path(target_).parent_path().string();
  FileDescriptor dfd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) ::fsync(dfd.get());
}

void write_file_atomic(const std::string& op, const std::string& path, const std::string& bytes) {
  AtomicFile f(op, path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace metalm
