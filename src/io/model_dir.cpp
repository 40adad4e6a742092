#include "metalm/io/model_dir.h"

#include <filesystem>
#include <system_error>

namespace metalm::io {

namespace fs = std::filesystem;

void save_model_dir(const std::string& dir, const nn::ArchConfig& config, const nn::Module& model) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  MLM_CHECK(!ec, IoError, "[model_dir] ", dir, ": cannot create the directory: ", ec.message());
  TensorMap weights;
  for (const auto& [name, t] : model.state_dict()) weights.emplace(name, t);
  save_safetensors((fs::path(dir) / "model.safetensors").string(), weights, {{"format", "metalm"}});
  nn::save_arch_config((fs::path(dir) / "config.json").string(), config);
}

nn::ArchConfig load_model_config(const std::string& dir) {
  const fs::path p = fs::path(dir) / "config.json";
  MLM_CHECK(fs::is_directory(dir), IoError, "[model_dir] ", dir, ": not a directory");
  MLM_CHECK(fs::exists(p), IoError, "[model_dir] ", dir,
            ": no config.json (is this a model directory? `metalm init` writes one)");
  return nn::load_arch_config(p.string());
}

void load_model_weights(const std::string& dir, nn::Module& model) {
  const fs::path p = fs::path(dir) / "model.safetensors";
  MLM_CHECK(fs::exists(p), IoError, "[model_dir] ", dir, ": no model.safetensors");
  SafetensorsFile f = load_safetensors(p.string());
  nn::StateDict state(f.tensors.begin(), f.tensors.end());
  try {
    model.load_state_dict(state, /*strict=*/true);
  } catch (const ValueError& e) {
    throw ValueError(detail::cat("[model_dir] ", p.string(), ": ", e.what()));
  }
}

}  // namespace metalm::io
