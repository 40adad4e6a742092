// Caching allocator: 64-byte aligned blocks, reused by size class, with current/peak accounting.
#pragma once
#include <cstddef>

namespace metalm {

struct MemoryStats {
  size_t current_bytes = 0;  // bytes held by live tensors
  size_t peak_bytes = 0;     // maximum of current_bytes since start or reset_peak()
  size_t cached_bytes = 0;   // bytes kept for reuse, not in use
};

// Thread-safe. Blocks are rounded up to a size class so freed blocks serve later requests.
void* memory_allocate(size_t bytes);
void memory_release(void* ptr, size_t bytes);
MemoryStats memory_stats();
void memory_reset_peak();
void memory_empty_cache();  // return cached blocks to the system

}  // namespace metalm
