// POSIX file helpers shared by every writer and reader: an owned descriptor, exact reads, and
// atomic writes (temporary file next to the target, fsync, rename, fsync of the directory), so a
// crash or a full disk never leaves a half-written checkpoint (D8). Errors are IoError with the
// caller's op prefix: "[safetensors] model.safetensors: cannot create ...".
#pragma once
#include <cstdint>
#include <string>

namespace metalm {

std::string errno_text(int err);

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.release()) {}
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  int get() const { return fd_; }
  int release();

 private:
  int fd_;
};

// Opens a regular file for reading (O_NONBLOCK, so a FIFO never hangs the open) and gives its
// size. IoError "[op] path: cannot open: ...", "... is a directory, not a file" or "... not a
// regular file" (a device, a FIFO): every reader of the project opens files through here.
FileDescriptor open_regular_file(const std::string& path, const std::string& op, uint64_t* size);

// Reads exactly n bytes; a short read or an error throws IoError "[op] path: ...".
void read_exact(int fd, void* dst, uint64_t n, const std::string& op, const std::string& path);
// The same at an absolute offset (pread: the descriptor's position is not used or moved).
void read_exact_at(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& op,
                   const std::string& path);

// The whole of a regular file, refusing more than max_bytes (FormatError "[op] path: N bytes is
// too large for <what> (limit M)"), so that a wrong path (a checkpoint, /dev/zero, a FIFO) is
// never read whole into memory. IoError when it cannot be opened or is not a regular file.
std::string read_file_bounded(const std::string& path, uint64_t max_bytes, const std::string& op,
                              const std::string& what);

// Writes `target` atomically: bytes go to "<target>.tmp.<pid>", commit() makes them durable and
// renames over the target. Without commit() (an exception in between) the temporary is removed
// and the target is untouched.
class AtomicFile {
 public:
  AtomicFile(std::string op, std::string target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, uint64_t n);
  // Overwrites bytes already written (a header whose counts are known only at the end); the
  // write position of write() does not move.
  void write_at(uint64_t offset, const void* data, uint64_t n);
  void commit();
  const std::string& temp_path() const { return temp_; }

 private:
  std::string op_, target_, temp_;
  FileDescriptor fd_;
  bool committed_ = false;
};

void write_file_atomic(const std::string& op, const std::string& path, const std::string& bytes);

// A read-only memory map of a whole regular file, for data read many times at random (token
// shards): the kernel pages it in on demand and shares it between processes, so a corpus
// larger than memory reads without a copy. The file must not shrink while mapped (reading a
// page past the new end is SIGBUS); writers replace files by rename, which keeps the mapped
// inode alive. IoError "[op] path: ..." when it cannot be opened, is not a regular file or
// cannot be mapped. An empty file maps to size() == 0.
class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const std::string& path, const std::string& op);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace metalm
