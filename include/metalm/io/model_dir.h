// Model directories (DESIGN section 4): config.json (TorchScale field names + model_type) and
// model.safetensors (TorchScale state-dict names). Each file is written atomically, config last
// but validated first, so a directory is either the old model or the new one, never a mix of a
// new config with old weights that fail to load.
#pragma once
#include <string>

#include "metalm/io/safetensors.h"
#include "metalm/nn/config.h"
#include "metalm/nn/module.h"

namespace metalm::io {

// Creates dir if needed and writes config.json and model.safetensors (+ metadata "format":
// "metalm"). The module's parameters and buffers are saved under their dotted names.
void save_model_dir(const std::string& dir, const nn::ArchConfig& config, const nn::Module& model);

// Reads config.json (validated); throws IoError naming the directory if it is not a model dir.
nn::ArchConfig load_model_config(const std::string& dir);

// Loads model.safetensors into an already-built module (strict: every key named on mismatch).
void load_model_weights(const std::string& dir, nn::Module& model);

}  // namespace metalm::io
