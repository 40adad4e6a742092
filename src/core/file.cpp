#include "metalm/core/file.h"

#include <fcntl.h>
#include <sys/mman.h>
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

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

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

void read_exact_at(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& op,
                   const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)),
                              static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(op, path, "read failed: ", errno_text(errno));
    if (r == 0) io_error(op, path, "unexpected end of file (did the file change while reading?)");
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

FileDescriptor open_regular_file(const std::string& path, const std::string& op, uint64_t* size) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) io_error(op, path, "cannot open: ", errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) io_error(op, path, "cannot stat: ", errno_text(errno));
  if (S_ISDIR(st.st_mode)) io_error(op, path, "is a directory, not a file");
  if (!S_ISREG(st.st_mode)) io_error(op, path, "not a regular file");
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

std::string read_file_bounded(const std::string& path, uint64_t max_bytes, const std::string& op,
                              const std::string& what) {
  uint64_t file_size = 0;
  const FileDescriptor fd = open_regular_file(path, op, &file_size);
  auto too_large = [&](uint64_t n) {
    throw FormatError(detail::cat("[", op, "] ", path, ": ", n, " bytes is too large for ", what,
                                  " (limit ", max_bytes, ")"));
  };
  if (file_size > max_bytes) too_large(file_size);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(op, path, "read failed: ", errno_text(errno));
    if (r == 0) break;
    text.append(buf, static_cast<size_t>(r));
    if (text.size() > max_bytes) too_large(text.size());  // grew while we read
  }
  return text;
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

void AtomicFile::write_at(uint64_t offset, const void* data, uint64_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t r = ::pwrite(fd_.get(), p, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)),
                               static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(op_, target_, "write to ", temp_, " failed: ", errno_text(errno));
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
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

MappedFile::MappedFile(const std::string& path, const std::string& op) : path_(path) {
  const FileDescriptor fd = open_regular_file(path, op, &size_);
  if (size_ == 0) return;  // mmap of length 0 is an error; there is nothing to read anyway
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) io_error(op, path, "cannot map ", size_, " bytes: ", errno_text(errno));
  data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace metalm
