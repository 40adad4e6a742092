// Reading a training log into curves (train/plot.h): the JSONL reader, then the fields the
// trainer writes (train/logger.h).
#include <filesystem>
#include <map>

#include "metalm/core/error.h"
#include "metalm/io/jsonl.h"
#include "metalm/train/plot.h"

namespace metalm::train {
namespace {

Curve to_curve(const std::map<double, double>& points) {
  Curve c;
  for (const auto& [step, value] : points) {
    c.step.push_back(step);
    c.value.push_back(value);
  }
  return c;
}

}  // namespace

std::string run_log_path(const std::string& run) {
  if (!std::filesystem::is_directory(run)) return run;
  const std::string log = (std::filesystem::path(run) / "log.jsonl").string();
  MLM_CHECK(std::filesystem::exists(log), IoError, "[log] ", run,
            ": a directory without log.jsonl (pass the log file itself)");
  return log;
}

RunCurves read_training_log(const std::string& path, const ReadLogOptions& options) {
  RunCurves run;
  std::map<double, double> train, val;  // by step; a repeated step keeps the later value
  io::JsonlOptions jo;
  jo.max_file_bytes = options.max_bytes;
  jo.skip_truncated_last_line = options.skip_truncated_last_line;
  const io::JsonlStats stats =
      io::for_each_jsonl(path, "log", jo, [&](const io::Json& rec, const io::JsonlLine& line) {
        io::require_object(rec, "", line.where);
        const bool has_loss = rec.contains("loss"), has_val = rec.contains("val_loss");
        if (!has_loss && !has_val) return;  // other kinds of record (config, notes)
        if (!rec.contains("step")) line.where.fail("step", "missing (a loss needs its step)");
        const double step = io::read_number(rec["step"], "step", line.where);
        for (const auto& [key, points] : {std::pair{"loss", &train}, std::pair{"val_loss", &val}}) {
          if (!rec.contains(key)) continue;
          if (rec[key].is_null())
            ++run.null_losses;
          else
            (*points)[step] = io::read_number(rec[key], key, line.where);
        }
      });
  run.truncated_last_line = stats.truncated_last_line;
  MLM_CHECK(stats.records > 0, FormatError, "[log] ", path, ": empty log (no records)");
  MLM_CHECK(!train.empty() || !val.empty() || run.null_losses > 0, FormatError, "[log] ", path,
            ": no \"loss\" or \"val_loss\" values in ", stats.records, " records");
  MLM_CHECK(!train.empty() || !val.empty(), FormatError, "[log] ", path, ": every loss is null (",
            run.null_losses, " of them: the loss was NaN or Inf; did the run diverge?)");
  run.train = to_curve(train);
  run.val = to_curve(val);
  return run;
}

}  // namespace metalm::train
