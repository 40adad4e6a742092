// `metalm info`: a model directory's config and parameter count.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "apps/common.h"
#include "metalm/models/factory.h"
#include "metalm/models/model_dir.h"

namespace metalm::apps {
namespace {

struct InfoOptions {
  CommonOptions common;
  std::string dir;
};

int run_info(const InfoOptions& o) {
  const bool is_dir = std::filesystem::is_directory(o.dir);
  const models::ModelConfig cfg =
      is_dir ? models::load_model_config(o.dir) : models::load_model_config_file(o.dir);
  // The count needs no weights: build without initialising (no draws, nothing read).
  std::unique_ptr<models::Model> m = models::build_model(cfg, {1, /*init=*/false});
  std::printf("%s\n", models::to_json(cfg).dump(2).c_str());
  std::printf("parameters: %lld (%.3fM), %.1f MB in f32\n",
              static_cast<long long>(m->parameter_count()),
              static_cast<double>(m->parameter_count()) / 1e6,
              static_cast<double>(m->state_bytes()) / 1e6);
  if (is_dir) {
    const std::string weights = (std::filesystem::path(o.dir) / "model.safetensors").string();
    MLM_CHECK(std::filesystem::exists(weights), IoError, "[info] ", o.dir, ": no model.safetensors");
    const uint64_t bytes = models::check_weights(*m, weights);
    std::printf("weights: %s, %.1f MB, every tensor matches the config\n", weights.c_str(),
                static_cast<double>(bytes) / 1e6);
  }
  return 0;
}

}  // namespace

Command add_info_command(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Print a model's architecture and parameter count: of a model directory (whose weights\n"
      "are checked against the config, by name and shape), or of a config file alone.\n"
      "Example: metalm info runs/gpt    or    metalm info configs/gpt-preln.json");
  add_common(cmd, o->common);
  cmd->add_option("path", o->dir, "model directory or config file")->required();
  return {cmd, &o->common, [o] { return run_info(*o); }};
}

}  // namespace metalm::apps
