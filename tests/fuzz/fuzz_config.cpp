// libFuzzer target for the model config parser (JSON text -> a single stack's EncoderConfig or
// DecoderConfig, or a composite, with post-processing and validation): any input must either parse or throw a
// metalm::Error. A config that parses must survive the round trip through to_json unchanged, as
// `metalm init` writes it and `metalm forward` reads it back. Build and run: see CMakeLists.txt.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "metalm/core/error.h"
#include "metalm/models/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const metalm::models::ModelConfig cfg = metalm::models::parse_model_config(text, "fuzz");
    const std::string once = metalm::models::to_json(cfg).dump();
    const std::string twice =
        metalm::models::to_json(metalm::models::parse_model_config(once, "again")).dump();
    if (once != twice) std::abort();  // the written config would load as another one
  } catch (const metalm::Error&) {
  }
  return 0;
}
