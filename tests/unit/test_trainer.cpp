// The trainer: exact resume (weights, AdamW moments and step, data position, dropout generators),
// checkpoints (atomic, keep-last-K, the latest pointer), Ctrl-C, and its errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/test_util.h"
#include "metalm/io/safetensors.h"
#include "metalm/models/factory.h"
#include "metalm/models/model_dir.h"
#include "metalm/train/trainer.h"

using namespace metalm;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

models::ModelConfig gpt_config(double dropout = 0.1) {
  return models::model_config_from_json(
      {{"model_type", "decoder"}, {"decoder_embed_dim", 32}, {"decoder_attention_heads", 4},
       {"decoder_ffn_embed_dim", 64}, {"decoder_layers", 2}, {"vocab_size", 50},
       {"max_target_positions", 32}, {"dropout", dropout}, {"attention_dropout", dropout},
       {"drop_path_rate", dropout}});
}

std::vector<train::SequenceBatch> random_batches(int n, uint64_t seed) {
  std::vector<train::SequenceBatch> out;
  Generator g(seed);
  for (int i = 0; i < n; ++i) {
    std::vector<int64_t> ids(4 * 17);
    for (size_t j = 0; j < ids.size(); ++j) ids[j] = j % 17 == 0 ? 0 : g.randint(9, 50);
    out.push_back({Tensor::from_vector<int64_t>({4, 17}, ids), static_cast<uint64_t>(i)});
  }
  return out;
}

train::TrainerOptions options(const std::string& dir, int64_t steps) {
  train::TrainerOptions o;
  o.steps = steps;
  o.adam.lr = 3e-3;
  o.schedule.warmup_steps = 3;
  o.schedule.total_steps = 20;
  o.accumulation = 2;
  o.eval_every = 5;
  o.checkpoint_every = 5;
  o.keep_last = 2;
  o.out_dir = dir;
  o.progress = false;
  return o;
}

class TrainerDirs : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("metalm_trainer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }
  fs::path dir_;
};

void expect_same(const TensorMap& a, const TensorMap& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << what << " " << name;
    const Tensor& u = b.at(name);
    ASSERT_EQ(t.nbytes(), u.nbytes()) << name;
    EXPECT_EQ(std::memcmp(t.contiguous().raw_data(), u.contiguous().raw_data(), t.nbytes()), 0)
        << what << " differs: " << name;
  }
}

}  // namespace

// 20 steps in one go, and 10 steps + a new process-like restart (fresh model and trainer built
// from scratch) + 10 steps: the same weights and optimizer moments, to the bit.
TEST_F(TrainerDirs, ResumeContinuesBitIdentically) {
  const auto batches = random_batches(7, 1);
  train::CausalObjective objective;
  auto run_steps = [&](const std::string& dir, int64_t steps, bool resume) {
    auto model = models::build_model(gpt_config(), {3, !resume});
    train::FixedBatches data(batches), valid(random_batches(2, 9));
    train::Trainer t(*model, objective, data, &valid, options(dir, steps));
    if (resume) t.resume(dir);
    EXPECT_EQ(t.run(), 0);
    return std::make_pair(model->state_dict(), t.optimizer().state());
  };
  const auto [whole_w, whole_opt] = run_steps(path("whole"), 20, false);
  run_steps(path("split"), 10, false);
  ASSERT_EQ(train::latest_checkpoint(path("split")), path("split/checkpoint-00000010"));
  const auto [split_w, split_opt] = run_steps(path("split"), 20, true);
  expect_same(whole_w, split_w, "weights");
  expect_same(whole_opt, split_opt, "optimizer");
  // And the training did move the weights.
  auto fresh = models::build_model(gpt_config(), {3, true});
  EXPECT_FALSE(test::all_close(fresh->state_dict().at("layers.0.ffn.fc1.weight"),
                               whole_w.at("layers.0.ffn.fc1.weight"), 1e-3, 1e-3));
  // keep_last = 2: the two newest checkpoints stay, nothing temporary is left.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(path("whole"))) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"checkpoint-00000015", "checkpoint-00000020",
                                             "config.json", "latest", "log.jsonl", "log.png",
                                             "model.safetensors"}));
  // The final model directory is the trained model.
  auto loaded = models::load_model(path("whole"));
  expect_same(loaded->state_dict(), whole_w, "final model");
}

TEST_F(TrainerDirs, ALogLinePerStepAndPerValidation) {
  auto model = models::build_model(gpt_config(0.0), {3, true});
  train::CausalObjective objective;
  train::FixedBatches data(random_batches(3, 2)), valid(random_batches(2, 3));
  train::Trainer t(*model, objective, data, &valid, options(path("run"), 10));
  ASSERT_EQ(t.run(), 0);
  std::ifstream log(path("run/log.jsonl"));
  int steps = 0, vals = 0;
  double first = 0, last = 0;
  for (std::string line; std::getline(log, line);) {
    const json j = json::parse(line);
    if (j.contains("loss")) {
      ++steps;
      (steps == 1 ? first : last) = j["loss"].get<double>();
      EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
    }
    if (j.contains("val_loss")) {
      ++vals;
      EXPECT_NEAR(j["val_ppl"].get<double>(), std::exp(j["val_loss"].get<double>()), 1e-9);
    }
  }
  EXPECT_EQ(steps, 10);
  EXPECT_EQ(vals, 2);  // step 5 and the end
  EXPECT_LT(last, first);  // 3 batches, 10 steps: it memorises them
}

namespace {

// Raises SIGINT when the trainer asks for its n-th batch (a deterministic Ctrl-C).
class InterruptingBatches : public train::FixedBatches {
 public:
  InterruptingBatches(std::vector<train::SequenceBatch> b, int at)
      : FixedBatches(std::move(b)), at_(at) {}
  train::SequenceBatch next() override {
    if (++calls_ == at_) std::raise(SIGINT);
    return FixedBatches::next();
  }

 private:
  int at_, calls_ = 0;
};

}  // namespace

TEST_F(TrainerDirs, CtrlCSavesACheckpointAndStops) {
  auto model = models::build_model(gpt_config(), {3, true});
  train::CausalObjective objective;
  InterruptingBatches data(random_batches(5, 4), 7);  // during step 4 (2 batches a step)
  train::Trainer t(*model, objective, data, nullptr, options(path("run"), 20));
  EXPECT_EQ(t.run(), 130);
  EXPECT_EQ(t.step_count(), 4);
  EXPECT_EQ(train::latest_checkpoint(path("run")), path("run/checkpoint-00000004"));
  // Our handler is gone again: the test process still has SIGINT's previous disposition.
  struct sigaction sa {};
  sigaction(SIGINT, nullptr, &sa);
  EXPECT_EQ(sa.sa_handler, SIG_DFL);
}

TEST_F(TrainerDirs, ResumeRefusesWhatDoesNotFit) {
  {
    auto model = models::build_model(gpt_config(), {3, true});
    train::CausalObjective objective;
    train::FixedBatches data(random_batches(2, 5));
    train::Trainer t(*model, objective, data, nullptr, options(path("run"), 5));
    ASSERT_EQ(t.run(), 0);
  }
  train::FixedBatches data(random_batches(2, 5));
  // Another model.
  auto other = models::build_model(gpt_config(0.2), {3, true});
  train::CausalObjective causal;
  train::Trainer t1(*other, causal, data, nullptr, options(path("x"), 5));
  EXPECT_TRUE(test::throws_with<ValueError>([&] { t1.resume(path("run")); }, "another model"));
  // Another objective (a causal loss under another name: the name is what resume checks).
  struct Renamed : train::CausalObjective {
    std::string name() const override { return "renamed"; }
  } renamed;
  auto model = models::build_model(gpt_config(), {3, true});
  train::Trainer t2(*model, renamed, data, nullptr, options(path("y"), 5));
  EXPECT_TRUE(test::throws_with<ValueError>([&] { t2.resume(path("run")); }, "trained with causal"));
  // Objectives refuse a model they cannot train, before the first step.
  train::SemiCausalObjective semi({});
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] { train::Trainer(*model, semi, data, nullptr, options(path("y"), 5)); },
      "the semi-causal LM trains a MetaLM (model_type metalm), not a model of type decoder"));
  train::MlmObjective mlm({});
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] { train::Trainer(*model, mlm, data, nullptr, options(path("y"), 5)); },
      "the mlm objective trains a text encoder"));
  // A damaged optimizer file, a missing state, a bad latest pointer.
  train::Trainer t3(*model, causal, data, nullptr, options(path("z"), 5));
  const std::string ck = path("run/checkpoint-00000005");
  fs::resize_file(ck + "/optimizer.safetensors", 100);
  EXPECT_TRUE(test::throws_with<FormatError>([&] { t3.resume(ck); }, "optimizer.safetensors"));
  fs::remove(ck + "/trainer_state.json");
  EXPECT_TRUE(test::throws_with<IoError>([&] { t3.resume(ck); }, "no trainer_state.json"));
  std::ofstream(path("run/latest")) << "../../etc\n";
  EXPECT_TRUE(test::throws_with<FormatError>([&] { t3.resume(path("run")); }, "not a checkpoint name"));
}

TEST(Trainer, ANonFiniteLossStopsWithAClearError) {
  auto model = models::build_model(gpt_config(0.0), {3, true});
  train::CausalObjective objective;
  train::FixedBatches data(random_batches(2, 6));
  train::TrainerOptions o = options("", 3);
  o.adam.lr = 1e30;  // diverges at once
  o.schedule.warmup_steps = 0;
  o.clip = 0;
  o.checkpoint_every = 0;
  o.eval_every = 0;
  train::Trainer t(*model, objective, data, nullptr, o);
  EXPECT_TRUE(test::throws_with<NumericError>(
      [&] {
        for (int i = 0; i < 3; ++i) t.step();
      },
      "the last checkpoint is intact"));
}
