// The trainer loop and its checkpoints.
#include "metalm/train/trainer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "metalm/autograd/autograd.h"
#include "metalm/core/file.h"
#include "metalm/data/progress.h"
#include "metalm/io/safetensors.h"
#include "metalm/models/model_dir.h"
#include "metalm/ops/elementwise.h"
#include "metalm/train/plot.h"

namespace metalm::train {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

// Set by SIGINT / SIGTERM while run() is active; the loop saves and stops at the next step.
// Process-wide by nature (signals are), and only run() installs and reads it.
std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) { g_interrupted = true; }

class InterruptScope {
 public:
  InterruptScope() {
    g_interrupted = false;
    old_int_ = std::signal(SIGINT, on_interrupt);
    old_term_ = std::signal(SIGTERM, on_interrupt);
  }
  ~InterruptScope() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int) = nullptr;
  void (*old_term_)(int) = nullptr;
};

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "checkpoint-%08lld", static_cast<long long>(step));
  return buf;
}

uint64_t read_u64(const io::Json& v, const char* field, const io::JsonWhere& w) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  w.fail(field, "expected a non-negative integer, got " + io::describe(v));
}

}  // namespace

// ------------------------------------------------------------------ FixedBatches

FixedBatches::FixedBatches(std::vector<SequenceBatch> batches) : batches_(std::move(batches)) {
  MLM_CHECK(!batches_.empty(), ValueError, "[data] no batches");
}

SequenceBatch FixedBatches::next() {
  SequenceBatch b = batches_[next_];
  next_ = (next_ + 1) % batches_.size();
  return b;
}

void FixedBatches::restore(const io::Json& state) {
  const io::JsonWhere w{"trainer", "train_data"};
  const int64_t n = io::read_int(state.at("next"), "next", w);
  MLM_CHECK(n >= 0 && static_cast<size_t>(n) < batches_.size(), ValueError,
            "[trainer] train_data.next ", n, " is outside the ", batches_.size(), " batches");
  next_ = static_cast<size_t>(n);
}

int64_t FixedBatches::tokens_per_batch() const {
  const Tensor& ids = batches_.front().ids;
  return ids.size(0) * (ids.size(1) - 1);
}

// ------------------------------------------------------------------ Trainer

Trainer::Trainer(models::Model& model, Objective& objective, BatchSource& train,
                 FixedBatches* validation, TrainerOptions options)
    : model_(model), objective_(objective), train_(train), validation_(validation),
      options_(std::move(options)) {
  TrainerOptions& o = options_;
  MLM_CHECK(o.steps >= 0 && o.accumulation >= 1 && o.keep_last >= 1 && o.clip >= 0 &&
                o.log_every >= 1 && o.eval_every >= 0 && o.checkpoint_every >= 0,
            ValueError, "[trainer] steps >= 0, accumulation >= 1, keep_last >= 1, clip >= 0, "
            "log_every >= 1 required");
  objective_.check_model(model_);
  if (o.schedule.total_steps <= 1) o.schedule.total_steps = std::max<int64_t>(o.steps, 1);
  o.schedule.peak_lr = o.adam.lr;
  o.schedule.validate();
  std::vector<ParamGroup> groups =
      make_param_groups(model_.named_parameters(), o.weight_decay, o.no_decay);
  for (const ParamGroup& g : groups) params_.insert(params_.end(), g.params.begin(), g.params.end());
  MLM_CHECK(!params_.empty(), ValueError, "[trainer] no trainable parameters (all frozen?)");
  optimizer_ = std::make_unique<AdamW>(std::move(groups), o.adam);
  if (!o.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.out_dir, ec);
    MLM_CHECK(!ec, IoError, "[trainer] ", o.out_dir, ": cannot create: ", ec.message());
  }
}

StepStats Trainer::step() {
  const auto t0 = Clock::now();
  StepStats s;
  s.lr = options_.schedule.lr_at(step_ + 1);
  optimizer_->set_lr(s.lr);
  model_.train();
  const double share = 1.0 / static_cast<double>(options_.accumulation);
  for (int64_t a = 0; a < options_.accumulation; ++a) {
    const LossOutput out = objective_.loss(model_, train_.next());
    // Each batch's mean counts equally (its share of the step), as in PyTorch's usual loop.
    (out.loss * share).backward();
    s.loss += out.loss.item<double>() * share;
    s.scored += out.scored;
  }
  MLM_CHECK(std::isfinite(s.loss), NumericError, "[trainer] the loss is ", s.loss, " at step ",
            step_ + 1, " (lr ", s.lr, "); the last checkpoint is intact: resume from it with a "
            "lower lr or more warmup");
  if (reduce_gradients) reduce_gradients(params_);
  s.grad_norm = options_.clip > 0 ? clip_grad_norm(params_, options_.clip) : grad_norm(params_);
  optimizer_->step();
  optimizer_->zero_grad();
  s.step = ++step_;
  tokens_ += static_cast<double>(train_.tokens_per_batch() * options_.accumulation);
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

double Trainer::evaluate() {
  if (!validation_) return NAN;
  validation_->rewind();
  model_.eval();
  NoGradGuard ng;
  double sum = 0, scored = 0;
  const int64_t n = std::min<int64_t>(options_.eval_batches, static_cast<int64_t>(validation_->size()));
  for (int64_t i = 0; i < n; ++i) {
    const LossOutput out = objective_.loss(model_, validation_->next());
    sum += out.loss.item<double>() * out.scored;
    scored += out.scored;
  }
  model_.train();
  return scored > 0 ? sum / scored : NAN;
}

io::Json Trainer::state_json(double wall) const {
  io::Json gens = io::Json::object();
  for (const auto& [name, g] : model_.named_generators())
    gens[name] = {{"seed", g->seed()}, {"offset", g->offset()}};
  return {{"format", "metalm-trainer"},     {"version", 1},
          {"step", step_},                  {"optimizer_steps", optimizer_->step_count()},
          {"tokens", tokens_},              {"wall_seconds", wall},
          {"objective", objective_.name()}, {"train_data", train_.state()},
          {"generators", gens}};
}

void Trainer::save_checkpoint() {
  MLM_CHECK(!options_.out_dir.empty(), ValueError, "[trainer] no out_dir to save checkpoints to");
  const fs::path out(options_.out_dir);
  const std::string name = checkpoint_name(step_);
  const fs::path dir = out / name, tmp = out / (name + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  // Everything goes into a temporary directory, renamed into place at the end: a crash or a full
  // disk leaves the previous checkpoints and `latest` as they were (and an error removes the
  // temporary directory).
  try {
    models::save_model_dir(tmp.string(), model_);
    io::save_safetensors((tmp / "optimizer.safetensors").string(), optimizer_->state());
    write_file_atomic("trainer", (tmp / "trainer_state.json").string(),
                      state_json(wall_before_).dump(2) + "\n");
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  MLM_CHECK(!ec, IoError, "[trainer] ", dir.string(), ": cannot rename the checkpoint into place: ",
            ec.message());
  write_file_atomic("trainer", (out / "latest").string(), name + "\n");
  // Keep the newest keep_last.
  std::vector<std::string> all;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("checkpoint-", 0) == 0 && n.find(".tmp") == std::string::npos)
      all.push_back(n);
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + static_cast<size_t>(options_.keep_last) < all.size(); ++i)
    fs::remove_all(out / all[i], ec);
}

std::string latest_checkpoint(const std::string& out_dir) {
  const fs::path latest = fs::path(out_dir) / "latest";
  if (!fs::exists(latest)) return "";
  std::string name = read_file_bounded(latest.string(), 256, "trainer", "latest pointer");
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  MLM_CHECK(name.rfind("checkpoint-", 0) == 0 && name.find('/') == std::string::npos,
            FormatError, "[trainer] ", latest.string(), ": not a checkpoint name: ",
            io::quote(name));
  return (fs::path(out_dir) / name).string();
}

void Trainer::resume(const std::string& where) {
  std::string dir = where;
  if (fs::exists(fs::path(where) / "latest")) dir = latest_checkpoint(where);
  const fs::path d(dir);
  MLM_CHECK(fs::exists(d / "trainer_state.json"), IoError, "[trainer] ", dir,
            ": not a checkpoint (no trainer_state.json)");
  const models::ModelConfig saved = models::load_model_config(dir);
  const std::string differs = io::first_difference(
      models::to_json(model_.model_config()), models::to_json(saved), "in the model being trained",
      "in the checkpoint");
  MLM_CHECK(differs.empty(), ValueError, "[trainer] ", dir, ": the checkpoint holds another "
            "model: ", differs);
  const io::Json st =
      io::load_json_file((d / "trainer_state.json").string(), "trainer", "trainer state");
  const io::JsonWhere w{"trainer", (d / "trainer_state.json").string()};
  MLM_CHECK(st.value("format", "") == "metalm-trainer", FormatError, w.prefix(),
            "not a metalm trainer state");
  const std::string objective = io::read_string(st.at("objective"), "objective", w);
  MLM_CHECK(objective == objective_.name(), ValueError, w.prefix(), "objective: the checkpoint "
            "was trained with ", objective, ", this run uses ", objective_.name());
  models::load_weights(model_, (d / "model.safetensors").string());
  optimizer_->load_state(io::load_safetensors((d / "optimizer.safetensors").string()).tensors);
  optimizer_->set_step_count(io::read_int(st.at("optimizer_steps"), "optimizer_steps", w));
  step_ = io::read_int(st.at("step"), "step", w);
  tokens_ = io::read_number(st.at("tokens"), "tokens", w);
  wall_before_ = io::read_number(st.at("wall_seconds"), "wall_seconds", w);
  const io::Json& gens = st.at("generators");
  auto mine = model_.named_generators();
  MLM_CHECK(gens.is_object() && gens.size() == mine.size(), ValueError, w.prefix(),
            "generators: ", gens.size(), " saved, the model has ", mine.size());
  for (auto& [name, g] : mine) {
    MLM_CHECK(gens.contains(name), ValueError, w.prefix(), "generators: no ", name);
    g->set_state(read_u64(gens.at(name).at("seed"), "seed", w),
                 read_u64(gens.at(name).at("offset"), "offset", w));
  }
  train_.restore(st.at("train_data"));
}

int Trainer::run() {
  const TrainerOptions& o = options_;
  InterruptScope interrupts;
  if (!o.out_dir.empty() && !log_)
    log_ = std::make_unique<JsonlLogger>((fs::path(o.out_dir) / "log.jsonl").string(), true);
  const bool tty = o.progress && ::isatty(STDOUT_FILENO);
  const auto start = Clock::now();
  const int64_t first = step_;
  auto wall = [&] { return wall_before_ + std::chrono::duration<double>(Clock::now() - start).count(); };
  auto checkpoint = [&] {
    if (o.out_dir.empty()) return;
    const double saved = wall_before_;
    wall_before_ = wall();
    save_checkpoint();
    wall_before_ = saved;
  };
  auto validate = [&] {
    const double v = evaluate();
    if (std::isnan(v)) return;
    io::Json line = {{"step", step_}, {"val_loss", v}, {"val_ppl", std::exp(v)}};
    if (extra_eval) line.update(extra_eval());
    if (log_) log_->write(line);
    if (log_ && o.plot) {  // a picture that cannot be drawn does not stop the training
      const fs::path dir(o.out_dir);
      try {
        PlotOptions po;
        po.title = dir.filename().string() + " (" + objective_.name() + ")";
        po.smooth = 0.9;
        write_loss_plot((dir / "log.png").string(),
                        {read_training_log((dir / "log.jsonl").string())}, po);
      } catch (const Error& e) {
        std::fprintf(stderr, "warning: no log.png: %s\n", e.what());
      }
    }
    if (o.progress)
      std::printf("%sstep %lld  validation loss %.4f  perplexity %.2f\n", tty ? "\r\033[K" : "",
                  static_cast<long long>(step_), v, std::exp(v));
  };
  double window_loss = 0;
  int64_t window = 0;
  while (step_ < o.steps) {
    const StepStats s = step();
    window_loss += s.loss;
    ++window;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double tok_s = static_cast<double>((step_ - first) * train_.tokens_per_batch() *
                                             o.accumulation) / std::max(elapsed, 1e-9);
    if (log_)
      log_->write({{"step", step_}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
                   {"tokens", tokens_}, {"tokens_per_s", tok_s}, {"wall_s", wall()}});
    if (o.progress && (step_ % o.log_every == 0 || step_ == o.steps)) {
      const double eta = elapsed / static_cast<double>(step_ - first) *
                         static_cast<double>(o.steps - step_);
      std::printf("%sstep %lld/%lld  loss %.4f  lr %.2e  |g| %.2f  %.0f tok/s  ETA %s%s",
                  tty ? "\r\033[K" : "", static_cast<long long>(step_),
                  static_cast<long long>(o.steps), window_loss / static_cast<double>(window), s.lr,
                  s.grad_norm, tok_s, data::format_duration(eta).c_str(), tty ? "" : "\n");
      std::fflush(stdout);
      window_loss = 0;
      window = 0;
    }
    if (o.eval_every > 0 && step_ % o.eval_every == 0 && step_ < o.steps) validate();
    if (o.checkpoint_every > 0 && step_ % o.checkpoint_every == 0 && step_ < o.steps) checkpoint();
    if (g_interrupted || (o.minutes > 0 && elapsed > o.minutes * 60)) {
      checkpoint();
      if (o.progress)
        std::printf("%s%s at step %lld: checkpoint saved%s\n", tty ? "\n" : "",
                    g_interrupted ? "interrupted" : "time budget reached",
                    static_cast<long long>(step_),
                    o.out_dir.empty() ? "" : (" in " + o.out_dir).c_str());
      if (g_interrupted) return 130;
      break;
    }
  }
  if (tty) std::printf("\n");
  validate();
  checkpoint();
  if (!o.out_dir.empty()) models::save_model_dir(o.out_dir, model_);
  return 0;
}

}  // namespace metalm::train
