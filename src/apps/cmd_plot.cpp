// `metalm plot`: loss curves of one or more runs as one PNG (train/plot.h).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "apps/common.h"
#include "metalm/core/error.h"
#include "metalm/train/plot.h"

namespace metalm::apps {
namespace {

struct PlotCmdOptions {
  CommonOptions common;
  std::vector<std::string> runs, names;
  std::string out;
  train::PlotOptions plot;
  bool strict = false;
};

// "runs/gpt", "runs/gpt/" and "runs/gpt/log.jsonl" are all "gpt"; "runs/toy-lm.jsonl" is "toy-lm".
std::string default_name(const std::string& run) {
  std::filesystem::path p = std::filesystem::absolute(run).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  if (std::filesystem::is_directory(p)) return p.filename().string();
  if (p.stem() == "log") return p.parent_path().filename().string();
  return p.stem().string();
}

int run_plot(PlotCmdOptions& o) {
  MLM_CHECK(o.names.empty() || o.names.size() == o.runs.size(), ValueError, "[plot] --names has ",
            o.names.size(), " names for ", o.runs.size(), " runs");
  std::vector<train::RunCurves> runs;
  size_t points = 0, val_points = 0;
  for (size_t i = 0; i < o.runs.size(); ++i) {
    const std::string log = train::run_log_path(o.runs[i]);
    train::RunCurves r = train::read_training_log(log, {uint64_t(1) << 30, !o.strict});
    r.name = o.names.empty() ? default_name(o.runs[i]) : o.names[i];
    if (r.truncated_last_line)
      std::printf("note: %s: skipped its last line, cut mid-write (a run killed or still running)\n",
                  log.c_str());
    if (r.null_losses > 0)
      std::printf("note: %s: %lld losses were logged as null (NaN or Inf), not drawn\n",
                  log.c_str(), static_cast<long long>(r.null_losses));
    points += r.train.step.size();
    val_points += r.val.step.size();
    runs.push_back(std::move(r));
  }
  train::write_loss_plot(o.out, runs, o.plot);
  std::string names;
  for (const train::RunCurves& r : runs) names += (names.empty() ? "" : ", ") + r.name;
  std::printf("wrote %s: %zu run%s (%s), %zu train and %zu validation points\n", o.out.c_str(),
              runs.size(), runs.size() == 1 ? "" : "s", names.c_str(), points, val_points);
  return 0;
}

}  // namespace

Command add_plot_command(CLI::App& app) {
  auto o = std::make_shared<PlotCmdOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plot",
      "Draw the loss curves of training runs as one PNG: per run the train loss against the\n"
      "step (optionally smoothed, the raw points faint) and the validation loss (markers).\n"
      "RUN is a JSONL training log or a run directory holding log.jsonl.\n"
      "Example: metalm plot runs/toy-lm.jsonl runs/bf16.jsonl --names f32,bf16 --smooth 0.9 \\\n"
      "           --logy --title 'toy LM' --out runs/loss.png");
  add_common(cmd, o->common);
  cmd->add_option("runs", o->runs, "training logs or run directories")->required();
  cmd->add_option("--out", o->out, "PNG to write (atomically)")->required();
  cmd->add_option("--title", o->plot.title, "title above the plot");
  cmd->add_option("--smooth", o->plot.smooth,
                  "EMA weight in [0, 1) for the train curve, e.g. 0.9 (0: raw curve)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999999));
  cmd->add_flag("--logy", o->plot.log_y, "logarithmic loss axis");
  cmd->add_flag("--logx", o->plot.log_x, "logarithmic step axis");
  cmd->add_option("--names", o->names, "legend names, comma-separated, one per run")
      ->delimiter(',');
  cmd->add_option("--width", o->plot.width, "image width in pixels")
      ->capture_default_str()
      ->check(CLI::Range(240, 8192));
  cmd->add_option("--height", o->plot.height, "image height in pixels")
      ->capture_default_str()
      ->check(CLI::Range(240, 8192));
  cmd->add_flag("--strict", o->strict,
                "refuse a log whose last line is cut mid-write (default: skip it with a note)");
  return {cmd, &o->common, [o] { return run_plot(*o); }};
}

}  // namespace metalm::apps
