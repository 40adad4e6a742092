// `metalm init`: a freshly initialised model directory from a config.
#include <cstdio>
#include <memory>

#include "apps/common.h"
#include "metalm/models/factory.h"
#include "metalm/models/model_dir.h"

namespace metalm::apps {
namespace {

struct InitOptions {
  CommonOptions common;
  std::string config, out;
};

int run_init(const InitOptions& o) {
  const models::ModelConfig cfg = models::load_model_config_file(o.config);
  std::unique_ptr<models::Model> m = models::build_model(cfg, {o.common.seed, true});
  models::save_model_dir(o.out, *m);
  std::printf("wrote %s: %s, %.3fM parameters (seed %llu)\n", o.out.c_str(),
              cfg.model_type.c_str(), static_cast<double>(m->parameter_count()) / 1e6,
              static_cast<unsigned long long>(o.common.seed));
  return 0;
}

}  // namespace

Command add_init_command(CLI::App& app) {
  auto o = std::make_shared<InitOptions>();
  CLI::App* cmd = app.add_subcommand(
      "init",
      "Write a freshly initialised model directory (config.json + model.safetensors) with the\n"
      "reference initialisation.\n"
      "Example: metalm init --config configs/gpt-preln.json --out runs/gpt --seed 1");
  add_common(cmd, o->common);
  cmd->add_option("--config", o->config, "model config (JSON; see configs/README.md)")->required();
  cmd->add_option("--out", o->out, "model directory to write")->required();
  return {cmd, &o->common, [o] { return run_init(*o); }};
}

}  // namespace metalm::apps
