// Fine-tuning (data/instructions.h, train/finetune.h): templates and turned-around forms, the
// answer-only loss mask, packing without attention between examples (a packed row's loss equals
// its examples' losses alone, docking included), per-task caps, exact data resume, which
// parameters each --train mode trains, and a tiny MetaLM that learns a task with its LM frozen.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "common/test_util.h"
#include "common/tiny_task_model.h"
#include "metalm/autograd/autograd.h"
#include "metalm/data/instructions.h"
#include "metalm/data/prompt.h"
#include "metalm/models/metalm.h"
#include "metalm/train/finetune.h"
#include "metalm/train/trainer.h"

using namespace metalm;
using metalm::test::throws_with;
namespace fs = std::filesystem;

namespace {

data::TaskExample example(const std::string& task, const std::string& in, const std::string& out) {
  data::TaskExample e;
  e.task = task;
  e.input = in;
  e.output = out;
  e.answers = {out};
  return e;
}

std::vector<int64_t> enc(const std::string& s) { return data::encode_lines(test::tiny_tokenizer(), s); }

std::vector<data::TaskExample> reviews() {
  return {example("reviews", "the film was great", "positive"), example("reviews", "awful plot", "negative"),
          example("reviews", "good acting", "positive"), example("reviews", "bad movie", "negative"),
          example("reviews", "great plot and good acting", "positive"),
          example("reviews", "the acting was awful", "negative")};
}

train::FinetuneDataOptions data_options(bool pack, const std::string& encoder = "text") {
  train::FinetuneDataOptions o;
  o.tokens_per_sample = 96;
  o.batch = 2;
  o.seed = 3;
  o.pack = pack;
  o.render.encoder = encoder;
  o.render.max_input_tokens = 30;
  return o;
}

}  // namespace

TEST(Instructions, TrainingSequenceLayoutAndTurnedForms) {
  const auto& tok = test::tiny_tokenizer();
  data::RenderOptions o;
  o.encoder = "text";
  const data::TaskExample ex = example("reviews", "the film was great", "positive");
  const data::TrainingSequence s = data::render_training_example(tok, "review: {input} sentiment:", false, ex, o);
  std::vector<int64_t> want = {tok.bos_id()};
  for (auto x : {enc("review: "), enc("the film was great"), enc(" sentiment:")}) want.insert(want.end(), x.begin(), x.end());
  const auto prompt_len = static_cast<int64_t>(want.size());
  for (int64_t id : enc("positive")) want.push_back(id);
  want.push_back(tok.eos_id());
  EXPECT_EQ(s.ids, want);
  EXPECT_EQ(s.answer_begin, prompt_len);
  const int64_t d0 = 1 + static_cast<int64_t>(enc("review: ").size());
  for (int64_t i = 0; i < static_cast<int64_t>(s.ids.size()); ++i)
    EXPECT_EQ(s.docked[static_cast<size_t>(i)], i >= d0 && i < d0 + static_cast<int64_t>(enc("the film was great").size()))
        << i;
  // Turned around: the label is rendered (docked), the input is the answer.
  const data::TrainingSequence t = data::render_training_example(tok, "write a {output} review:", true, ex, o);
  std::vector<int64_t> tw = {tok.bos_id()};
  for (auto x : {enc("write a "), enc("positive"), enc(" review:"), enc("the film was great")}) tw.insert(tw.end(), x.begin(), x.end());
  tw.push_back(tok.eos_id());
  EXPECT_EQ(t.ids, tw);
  // A long answer is cut to fit, </s> kept; a prompt that cannot fit is an error.
  o.max_tokens = s.answer_begin + 2;
  const data::TrainingSequence c = data::render_training_example(tok, "review: {input} sentiment:", false, ex, o);
  EXPECT_EQ(static_cast<int64_t>(c.ids.size()), o.max_tokens);
  EXPECT_EQ(c.ids.back(), tok.eos_id());
  o.max_tokens = 5;
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { data::render_training_example(tok, "review: {input} sentiment:", false, ex, o); }, "prompt alone"));
}

TEST(Instructions, TemplatesFileIsChecked) {
  const fs::path dir = fs::temp_directory_path() / ("metalm_tmpl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "t.json") << text;
    return (dir / "t.json").string();
  };
  const auto t = data::read_templates(write(
      R"({"spam": {"cluster": "cls", "templates": ["a {input}", "{input} b"], "turned": ["c {output}"]}})"));
  EXPECT_EQ(t.at("spam").cluster, "cls");
  EXPECT_EQ(t.at("spam").templates.size(), 2u);
  EXPECT_EQ(data::templates_of(t, "other").cluster, "other");
  EXPECT_EQ(data::templates_of(t, "other").templates, std::vector<std::string>{"{input}"});
  EXPECT_TRUE(throws_with<ValueError>([&] { data::read_templates(write(R"({"s": {"templates": ["no field"]}})")); },
                                      "exactly once"));
  EXPECT_TRUE(throws_with<ValueError>([&] { data::read_templates(write(R"({"s": {"turned": ["{input}"]}})")); },
                                      "{output}"));
  EXPECT_TRUE(throws_with<ValueError>([&] { data::read_templates(write(R"({"s": {"templat": []}})")); },
                                      "templates"));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { data::read_templates(write(R"({"s": {"turned": ["given {input} write {output}"]}})")); },
      "asks for the input"));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { data::read_templates(write(R"({"s": {"templates": ["{input} is {output}"]}})")); },
      "what is asked for"));
  fs::remove_all(dir);
}

// Scored targets are exactly each example's answer and </s>; positions restart at 0 in every
// packed example.
TEST(FinetuneBatches, ScoresAnswersOnlyAndRestartsPositions) {
  const auto& tok = test::tiny_tokenizer();
  const auto ex = reviews();
  // One example per row, in file order: the scored positions are answer_begin - 1 .. n - 2.
  train::FinetuneDataOptions uo = data_options(false);
  uo.batch = 6;
  train::FinetuneBatches one(tok, ex, {}, uo);
  const train::SequenceBatch u = one.one_pass()[0];
  const int64_t T = u.ids.size(1) - 1;
  const auto score = u.score.to_vector<float>();
  data::RenderOptions ro = uo.render;
  ro.max_tokens = uo.tokens_per_sample;
  for (int64_t r = 0; r < 6; ++r) {
    const data::TrainingSequence s = data::render_training_example(tok, "{input}", false, ex[static_cast<size_t>(r)], ro);
    const auto n = static_cast<int64_t>(s.ids.size());
    for (int64_t t = 0; t < T; ++t)
      EXPECT_EQ(score[static_cast<size_t>(r * T + t)], t >= s.answer_begin - 1 && t <= n - 2 ? 1.f : 0.f)
          << "row " << r << " position " << t;
  }
  // Packed: positions count up inside a segment and restart at the next; segments differ.
  const train::SequenceBatch p = train::FinetuneBatches(tok, ex, {}, data_options(true)).next();
  const auto ids = p.ids.to_vector<int64_t>();
  const auto pos = p.positions.to_vector<int64_t>();
  const auto seg = p.segments.to_vector<int32_t>();
  const int64_t L = p.ids.size(1), B = p.ids.size(0);
  int64_t starts = 0;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t t = 0; t < L - 1; ++t) {
      const auto k = static_cast<size_t>(r * (L - 1) + t);
      const bool start = ids[static_cast<size_t>(r * L + t)] == tok.bos_id();
      starts += start;
      if (start) {
        EXPECT_EQ(pos[k], 0);
      } else if (t > 0 && ids[static_cast<size_t>(r * L + t)] != tok.spec().pad_id) {
        EXPECT_EQ(seg[k], seg[k - 1]);  // a token inside an example
      }
      if (start && t > 0) {
        EXPECT_NE(seg[k], seg[k - 1]);
      }
      if (t > 0 && seg[k] == seg[k - 1]) {
        EXPECT_EQ(pos[k], pos[k - 1] + 1);
      }
    }
  EXPECT_GT(starts, B);  // more examples than rows
}

// A packed row scores as its examples do alone: no attention across them, positions and
// docking per example (the MetaLM reads each docked input through its encoder).
TEST(FinetuneBatches, PackedLossEqualsTheExamplesAlone) {
  const auto& tok = test::tiny_tokenizer();
  auto m = test::tiny_metalm();
  m->eval();
  auto ex = reviews();
  train::FinetuneObjective obj("text", static_cast<int32_t>(tok.bos_id()), static_cast<int32_t>(tok.spec().pad_id));
  NoGradGuard ng;
  train::FinetuneDataOptions po = data_options(true);
  po.batch = 1;
  train::FinetuneBatches packed(tok, {ex[0], ex[1], ex[2]}, {}, po);
  const auto pb = packed.one_pass();
  ASSERT_EQ(pb.size(), 1u);  // all three in one row
  const train::LossOutput lp = obj.loss(*m, pb[0]);
  // Every example's input is docked: one encoder row per example, its input's tokens selected.
  const models::StackInputs in = obj.inputs(pb[0]);
  ASSERT_EQ(in.spans.size(), 1u);
  EXPECT_EQ(in.spans[0].tokens.size(0), 3);
  int64_t selected = 0;
  for (uint8_t v : in.spans[0].select.to_vector<uint8_t>()) selected += v;
  EXPECT_EQ(selected, static_cast<int64_t>(enc(ex[0].input).size() + enc(ex[1].input).size() + enc(ex[2].input).size()));
  train::FinetuneDataOptions uo = data_options(false);
  uo.batch = 3;
  train::FinetuneBatches alone(tok, {ex[0], ex[1], ex[2]}, {}, uo);
  const auto ub = alone.one_pass();
  ASSERT_EQ(ub.size(), 1u);
  const train::LossOutput lu = obj.loss(*m, ub[0]);
  EXPECT_EQ(lp.scored, lu.scored);
  EXPECT_NEAR(lp.loss.item<double>(), lu.loss.item<double>(), 2e-5);
  // Without segments the examples would see each other: the loss differs.
  train::SequenceBatch leak = pb[0];
  leak.segments = Tensor::from_vector<int32_t>(leak.segments.shape(), std::vector<int32_t>(leak.segments.numel(), 0));
  EXPECT_GT(std::abs(obj.loss(*m, leak).loss.item<double>() - lu.loss.item<double>()), 1e-4);
}

TEST(FinetuneBatches, CapsTasksAndResumesExactly) {
  const auto& tok = test::tiny_tokenizer();
  std::vector<data::TaskExample> ex;
  for (const char* task : {"a", "b", "c"})
    for (int i = 0; i < 5; ++i) ex.push_back(example(task, "good film " + std::to_string(i), "positive"));
  train::FinetuneDataOptions o = data_options(true);
  o.max_per_task = 2;
  train::FinetuneBatches b(tok, ex, {}, o);
  EXPECT_EQ(b.epoch_size(), 6);
  train::FinetuneBatches a(tok, ex, {}, o);
  for (int i = 0; i < 3; ++i) a.next();
  const io::Json st = a.state();
  std::vector<std::vector<int64_t>> rest;
  for (int i = 0; i < 4; ++i) rest.push_back(a.next().ids.to_vector<int64_t>());
  train::FinetuneBatches r(tok, ex, {}, o);
  r.restore(st);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.next().ids.to_vector<int64_t>(), rest[static_cast<size_t>(i)]) << i;
  EXPECT_TRUE(throws_with<ValueError>([&] { r.restore({{"epoch", 0}, {"cursor", 99}}); }, "does not fit"));
}

TEST(FinetuneBatches, DrawsEveryFormIncludingTurnedOnes) {
  const auto& tok = test::tiny_tokenizer();
  std::map<std::string, data::TaskTemplates> t;
  t["reviews"] = {"sentiment", {"review: {input} sentiment:"}, {"write a {output} review:"}};
  train::FinetuneBatches b(tok, reviews(), t, data_options(false));
  int turned = 0, plain = 0;
  const std::vector<int64_t> write = enc("write a ");
  for (int64_t epoch = 0; epoch < 6; ++epoch)
    for (int64_t e = 0; e < 6; ++e) {
      const data::TrainingSequence s = b.render(e, epoch);
      const bool is_turned = std::equal(write.begin(), write.end(), s.ids.begin() + 1);
      turned += is_turned;
      plain += !is_turned;
    }
  EXPECT_GT(turned, 5);
  EXPECT_GT(plain, 5);
}

TEST(Finetune, TrainModesFreezeTheRightParameters) {
  auto m = test::tiny_metalm();
  const int64_t total = m->parameter_count();
  const int64_t enc_only = train::set_trainable(*m, "encoder");
  EXPECT_LT(enc_only, total);
  for (const auto& [name, p] : m->named_parameters())
    EXPECT_EQ(p.requires_grad(), name.rfind("decoder.", 0) != 0) << name;
  const int64_t lm = train::set_trainable(*m, "lm");
  for (const auto& [name, p] : m->named_parameters())
    EXPECT_EQ(p.requires_grad(), name.rfind("decoder.", 0) == 0) << name;
  EXPECT_EQ(enc_only + lm, total);
  EXPECT_EQ(train::set_trainable(*m, "all"), total);
  auto gpt = test::tiny_gpt();
  EXPECT_TRUE(throws_with<ValueError>([&] { train::set_trainable(*gpt, "encoder"); }, "has none"));
  EXPECT_TRUE(throws_with<ValueError>([&] { train::set_trainable(*gpt, "most"); }, "encoder, lm or all"));
}

// The paper's single-task mode: the LM frozen, only the encoder and connector learn, and the
// training loss falls; the decoder's weights stay bit for bit.
TEST(Finetune, MetaLMLearnsWithTheLanguageModelFrozen) {
  const auto& tok = test::tiny_tokenizer();
  auto m = test::tiny_metalm(11);
  train::set_trainable(*m, "encoder");
  const Tensor dec_w = m->named_parameters().at("decoder.layers.0.ffn.fc1.weight").clone();
  const Tensor enc_w = m->named_parameters().at("encoders.text.layers.0.ffn.fc1.weight").clone();
  train::FinetuneBatches batches(tok, reviews(), {}, data_options(true));
  train::FinetuneObjective obj("text", static_cast<int32_t>(tok.bos_id()), static_cast<int32_t>(tok.spec().pad_id));
  const auto first = batches.one_pass();
  train::FixedBatches valid(first);
  train::TrainerOptions o;
  o.steps = 60;
  o.schedule.warmup_steps = 5;
  o.adam.lr = 3e-3;
  o.eval_every = 0;
  o.checkpoint_every = 0;
  o.progress = false;
  o.plot = false;
  o.out_dir = (fs::temp_directory_path() / ("metalm_ft_" + std::to_string(::getpid()))).string();
  fs::remove_all(o.out_dir);
  train::Trainer trainer(*m, obj, batches, &valid, o);
  const double before = trainer.evaluate();
  trainer.run();
  const double after = trainer.evaluate();
  EXPECT_LT(after, before * 0.8) << before << " -> " << after;
  EXPECT_TRUE(test::all_close(m->named_parameters().at("decoder.layers.0.ffn.fc1.weight"), dec_w, 0, 0));
  EXPECT_FALSE(test::all_close(m->named_parameters().at("encoders.text.layers.0.ffn.fc1.weight"), enc_w, 0, 0));
  fs::remove_all(o.out_dir);
}
