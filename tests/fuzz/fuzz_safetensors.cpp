// libFuzzer target for the safetensors parser: any input must either parse or throw a
// metalm::Error; a crash, a sanitizer report, a leak or another exception type is a bug.
// Build and run: see tests/fuzz/CMakeLists.txt.
#include <cstddef>
#include <cstdint>

#include "metalm/core/error.h"
#include "metalm/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    metalm::io::SafetensorsFile f = metalm::io::parse_safetensors(data, size, "fuzz");
    // Touch every tensor so that a wrong size or offset shows up under AddressSanitizer.
    size_t sum = 0;
    for (const auto& [name, t] : f.tensors) {
      const auto* p = static_cast<const uint8_t*>(t.raw_data());
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    }
    volatile size_t sink = sum;
    (void)sink;
  } catch (const metalm::Error&) {
  }
  return 0;
}
