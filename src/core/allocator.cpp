// Caching allocator. Size classes: multiples of 64 bytes up to 4 KiB, then powers of two split in
// 4 steps (at most 25% waste). Freed blocks go to a per-class free list and are reused.
#include "metalm/core/allocator.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "metalm/core/error.h"

namespace metalm {
namespace {

constexpr size_t kAlign = 64;
// No x86-64 or AArch64 process can map more than 2^47 bytes (128 TiB) of user space. Larger
// requests are refused up front: they can never succeed, and size_class() must not see them
// (its rounding would overflow size_t).
constexpr size_t kMaxBytes = size_t(1) << 47;

size_t size_class(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= 4096) return (bytes + kAlign - 1) / kAlign * kAlign;
  size_t p = 4096;
  while (p * 2 < bytes) p *= 2;  // p < bytes <= 2p
  size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  MemoryStats stats;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may outlive static destructors
  return *c;
}

}  // namespace

void* memory_allocate(size_t bytes) {
  MLM_CHECK(bytes <= kMaxBytes, Error, "[allocator] cannot allocate ", bytes,
            " bytes: more than the 2^47-byte address space");
  size_t cls = size_class(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.cached_bytes -= cls;
      c.stats.current_bytes += cls;
      if (c.stats.current_bytes > c.stats.peak_bytes) c.stats.peak_bytes = c.stats.current_bytes;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, cls);
  if (p == nullptr) {
    memory_empty_cache();
    p = std::aligned_alloc(kAlign, cls);
  }
  MLM_CHECK(p != nullptr, Error, "[allocator] out of memory allocating ", bytes, " bytes");
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.current_bytes += cls;
  if (c.stats.current_bytes > c.stats.peak_bytes) c.stats.peak_bytes = c.stats.current_bytes;
  return p;
}

void memory_release(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  size_t cls = size_class(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.free_blocks[cls].push_back(ptr);
  c.stats.current_bytes -= cls;
  c.stats.cached_bytes += cls;
}

MemoryStats memory_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void memory_reset_peak() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.peak_bytes = c.stats.current_bytes;
}

void memory_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [cls, blocks] : c.free_blocks)
    for (void* p : blocks) std::free(p);
  c.free_blocks.clear();
  c.stats.cached_bytes = 0;
}

}  // namespace metalm
