// Model directories (DESIGN section 4): config.json (TorchScale field names + model_type, or a
// composite) and model.safetensors (TorchScale state-dict names). Each file is written
// atomically, config last but validated first, so a directory is either the old model or the
// new one, never a mix of a new config with old weights that fail to load.
//
// Loading reads each tensor straight into its parameter of a model built without
// initialisation (models::BuildOptions::init = false): the peak is the weights plus a 4 MiB
// conversion buffer, not twice the weights.
#pragma once
#include <memory>
#include <string>

#include "metalm/models/factory.h"
#include "metalm/models/model.h"

namespace metalm::models {

// Creates dir if needed and writes config.json (model.model_config()) and model.safetensors
// (+ metadata "format": "metalm"). Parameters and buffers are saved under their dotted names.
void save_model_dir(const std::string& dir, const Model& model);

// Reads config.json (validated); IoError naming the directory if it is not a model directory.
ModelConfig load_model_config(const std::string& dir);

// Reads a safetensors file straight into the model's parameters and buffers. Strict: every
// missing, unexpected or mis-shaped name is listed in one ValueError naming the file. A tied
// model accepts the duplicate "output_projection.weight" TorchScale writes, if it equals
// "embed_tokens.weight". F16/BF16/F64 data converts to the parameters' dtype.
void load_weights(Model& model, const std::string& safetensors_path);

// The strict name and shape check of load_weights, reading only the file's header; returns
// the bytes of tensor data the file holds.
uint64_t check_weights(const Model& model, const std::string& safetensors_path);

// build_model(config.json, init = false) + load_weights(model.safetensors), in eval mode.
std::unique_ptr<Model> load_model(const std::string& dir, uint64_t seed = 1);

}  // namespace metalm::models
