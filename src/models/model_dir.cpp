// Model directories: save, and load straight into the parameters.
#include "metalm/models/model_dir.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <system_error>
#include <vector>

#include "metalm/io/safetensors.h"

namespace metalm::models {

namespace fs = std::filesystem;

void save_model_dir(const std::string& dir, const Model& model) {
  const ModelConfig cfg = model.model_config();
  validate(cfg, io::JsonWhere{"config", dir});
  std::error_code ec;
  fs::create_directories(dir, ec);
  MLM_CHECK(!ec, IoError, "[model_dir] ", dir, ": cannot create the directory: ", ec.message());
  io::save_safetensors((fs::path(dir) / "model.safetensors").string(), model.state_dict(),
                       {{"format", "metalm"}});
  save_model_config((fs::path(dir) / "config.json").string(), cfg);
}

ModelConfig load_model_config(const std::string& dir) {
  const fs::path p = fs::path(dir) / "config.json";
  MLM_CHECK(fs::is_directory(dir), IoError, "[model_dir] ", dir, ": not a directory");
  MLM_CHECK(fs::exists(p), IoError, "[model_dir] ", dir,
            ": no config.json (is this a model directory? `metalm init` writes one)");
  return load_model_config_file(p.string());
}

namespace {

// The tied duplicate must equal embed_tokens.weight (already loaded into `embed`); compared a
// block of rows at a time, so that no second copy of the table is made.
void check_tied_duplicate(const io::SafetensorsReader& reader, const io::TensorInfo& dup,
                          const Tensor& embed) {
  MLM_CHECK(dup.shape == embed.shape(), ValueError, "[model_dir] ", reader.path(),
            ": tied model: output_projection.weight ", shape_str(dup.shape),
            " differs from embed_tokens.weight ", embed.str());
  const int64_t rows = embed.size(0), width = embed.size(1);
  const int64_t block = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(width, 1));  // 64 KiB
  for (int64_t r = 0; r < rows; r += block) {
    const int64_t n = std::min(block, rows - r);
    Tensor got = Tensor::empty({n, width}, embed.dtype());
    reader.read_rows_into(dup.name, r, got);
    MLM_CHECK(std::memcmp(got.raw_data(), embed.slice(0, r, r + n).contiguous().raw_data(),
                          got.nbytes()) == 0,
              ValueError, "[model_dir] ", reader.path(),
              ": tied model: output_projection.weight differs from embed_tokens.weight (row ", r,
              " onwards)");
  }
}

// TorchScale writes a tied model's projection next to the embedding it is tied to.
bool has_tied_duplicate(const TensorMap& state, const io::SafetensorsReader& reader) {
  return !state.count("output_projection.weight") && state.count("embed_tokens.weight") &&
         reader.find("output_projection.weight") != nullptr;
}

// Names and shapes of the file against the model (strict), with the tied duplicate allowed.
uint64_t check_against(const TensorMap& state, const io::SafetensorsReader& reader) {
  const bool dup = has_tied_duplicate(state, reader);
  std::map<std::string, Shape> given;
  uint64_t bytes = 0;
  for (const io::TensorInfo& e : reader.entries()) {
    bytes += e.nbytes;
    if (!(dup && e.name == "output_projection.weight")) given.emplace(e.name, e.shape);
  }
  const std::string err = nn::state_mismatch(state, given, /*strict=*/true);
  MLM_CHECK(err.empty(), ValueError, "[model_dir] ", reader.path(), ":", err);
  return bytes;
}

}  // namespace

uint64_t check_weights(const Model& model, const std::string& path) {
  const io::SafetensorsReader reader(path);
  return check_against(model.state_dict(), reader);
}

void load_weights(Model& model, const std::string& path) {
  const io::SafetensorsReader reader(path);
  const TensorMap state = model.state_dict();
  check_against(state, reader);
  const bool tied_duplicate = has_tied_duplicate(state, reader);
  for (const auto& [name, t] : state) reader.read_into(name, t);
  if (tied_duplicate)
    check_tied_duplicate(reader, *reader.find("output_projection.weight"),
                         state.at("embed_tokens.weight"));
}

std::unique_ptr<Model> load_model(const std::string& dir, uint64_t seed) {
  const ModelConfig cfg = load_model_config(dir);
  const fs::path p = fs::path(dir) / "model.safetensors";
  MLM_CHECK(fs::exists(p), IoError, "[model_dir] ", dir, ": no model.safetensors");
  std::unique_ptr<Model> model = build_model(cfg, {seed, /*init=*/false});
  load_weights(*model, p.string());
  model->eval();
  return model;
}

}  // namespace metalm::models
