// Fine-tuning batches (templates, caps, packing) and their objective.
#include "metalm/train/finetune.h"

#include <algorithm>

#include "metalm/core/error.h"
#include "metalm/core/random.h"
#include "metalm/models/metalm.h"
#include "metalm/ops/loss.h"

namespace metalm::train {
namespace {

constexpr int32_t kPadSegment = 1 << 30;  // the padding at a row's end: a segment of its own

// Row arrays of a batch under construction: ids [B, L]; per model position [B, L - 1].
struct BatchArrays {
  int64_t B, L;
  std::vector<int64_t> ids, positions;
  std::vector<int32_t> segments;
  std::vector<uint8_t> dock;
  std::vector<float> score;
  BatchArrays(int64_t b, int64_t l, int64_t pad)
      : B(b), L(l), ids(static_cast<size_t>(b * l), pad), positions(static_cast<size_t>(b * (l - 1)), 0),
        segments(positions.size(), kPadSegment), dock(positions.size(), 0), score(positions.size(), 0.f) {}

  // Sequence s at offset `at` of row r, as packed example `seg`.
  void place(const data::TrainingSequence& s, int64_t r, int64_t at, int32_t seg) {
    const auto n = static_cast<int64_t>(s.ids.size());
    for (int64_t i = 0; i < n; ++i) {
      ids[static_cast<size_t>(r * L + at + i)] = s.ids[static_cast<size_t>(i)];
      const int64_t t = at + i;  // a model position when t < L - 1
      if (t >= L - 1) continue;
      const auto k = static_cast<size_t>(r * (L - 1) + t);
      positions[k] = i;
      segments[k] = seg;
      dock[k] = s.docked[static_cast<size_t>(i)];
      // Position t predicts ids[t + 1]: scored when that is the answer (or </s>) of this example.
      score[k] = i + 1 < n && i + 1 >= s.answer_begin ? 1.f : 0.f;
    }
  }
  void pad_positions(int64_t r, int64_t from) {  // the padding counts its own positions from 0
    for (int64_t t = from; t < L - 1; ++t) positions[static_cast<size_t>(r * (L - 1) + t)] = t - from;
  }
  SequenceBatch batch(uint64_t seed) const {
    SequenceBatch b;
    b.ids = Tensor::from_vector<int64_t>({B, L}, ids);
    b.seed = seed;
    b.positions = Tensor::from_vector<int64_t>({B, L - 1}, positions);
    b.segments = Tensor::from_vector<int32_t>({B, L - 1}, segments);
    b.dock = Tensor::from_vector<uint8_t>({B, L - 1}, dock);
    b.score = Tensor::from_vector<float>({B, L - 1}, score);
    return b;
  }
};

}  // namespace

FinetuneBatches::FinetuneBatches(const data::Tokenizer& tok, std::vector<data::TaskExample> examples,
                                 std::map<std::string, data::TaskTemplates> templates,
                                 const FinetuneDataOptions& options)
    : tok_(tok), examples_(std::move(examples)), templates_(std::move(templates)), o_(options) {
  MLM_CHECK(!examples_.empty(), ValueError, "[finetune] no training examples");
  MLM_CHECK(o_.tokens_per_sample >= 8 && o_.batch >= 1, ValueError,
            "[finetune] tokens_per_sample must be >= 8 and batch >= 1");
  o_.render.max_tokens = o_.tokens_per_sample;
  // Every example through every form of its task once, so that a form or an example that cannot
  // fit a row is an error now, not at whatever step first draws it.
  for (size_t e = 0; e < examples_.size(); ++e) {
    const data::TaskTemplates t = data::templates_of(templates_, examples_[e].task);
    for (const std::string& f : t.templates) data::render_training_example(tok_, f, false, examples_[e], o_.render);
    for (const std::string& f : t.turned) data::render_training_example(tok_, f, true, examples_[e], o_.render);
  }
  current_ = order(0);
}

std::vector<int64_t> FinetuneBatches::order(int64_t epoch) const {
  std::map<std::string, std::vector<int64_t>> by_task;
  for (size_t i = 0; i < examples_.size(); ++i) by_task[examples_[i].task].push_back(static_cast<int64_t>(i));
  auto shuffle = [](std::vector<int64_t>& v, uint64_t seed) {
    Generator g(seed);
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i)
      std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(g.randint(0, i + 1))]);
  };
  const uint64_t epoch_seed = Generator::hash(o_.seed, static_cast<uint64_t>(epoch));
  std::vector<int64_t> out;
  uint64_t t = 0;
  for (auto& [task, idx] : by_task) {  // a capped task gives a different share every epoch
    if (o_.max_per_task > 0 && static_cast<int64_t>(idx.size()) > o_.max_per_task) {
      shuffle(idx, Generator::hash(epoch_seed, ++t));
      idx.resize(static_cast<size_t>(o_.max_per_task));
    }
    out.insert(out.end(), idx.begin(), idx.end());
  }
  shuffle(out, epoch_seed);
  return out;
}

data::TrainingSequence FinetuneBatches::render(int64_t example, int64_t epoch) const {
  const data::TaskExample& ex = examples_.at(static_cast<size_t>(example));
  const data::TaskTemplates t = data::templates_of(templates_, ex.task);
  const auto forms = static_cast<int64_t>(t.templates.size() + t.turned.size());
  int64_t k = 0;
  if (epoch >= 0 && forms > 1)
    k = static_cast<int64_t>(Generator::hash(Generator::hash(o_.seed, static_cast<uint64_t>(epoch)),
                                             static_cast<uint64_t>(example)) %
                             static_cast<uint64_t>(forms));
  const bool turned = k >= static_cast<int64_t>(t.templates.size());
  const std::string& form = turned ? t.turned[static_cast<size_t>(k) - t.templates.size()]
                                   : t.templates[static_cast<size_t>(k)];
  return data::render_training_example(tok_, form, turned, ex, o_.render);
}

SequenceBatch FinetuneBatches::next() {
  const int64_t L = o_.tokens_per_sample;
  BatchArrays a(o_.batch, L, tok_.spec().pad_id);
  const uint64_t seed = Generator::hash(Generator::hash(o_.seed, static_cast<uint64_t>(epoch_)),
                                        static_cast<uint64_t>(cursor_) + (1ull << 40));
  for (int64_t r = 0; r < o_.batch; ++r) {
    int64_t used = 0;
    for (int32_t seg = 0;; ++seg) {
      if (cursor_ == static_cast<int64_t>(current_.size())) {
        ++epoch_;
        cursor_ = 0;
        current_ = order(epoch_);
      }
      const data::TrainingSequence s = render(current_[static_cast<size_t>(cursor_)], epoch_);
      if (used + static_cast<int64_t>(s.ids.size()) > L) break;  // it starts the next row
      a.place(s, r, used, seg);
      used += static_cast<int64_t>(s.ids.size());
      ++cursor_;
      if (!o_.pack) break;
    }
    a.pad_positions(r, used);
  }
  return a.batch(seed);
}

void FinetuneBatches::restore(const io::Json& state) {
  const io::JsonWhere where("finetune", "trainer state");
  io::require_object(state, "data", where);
  for (const char* f : {"epoch", "cursor"})
    if (!state.contains(f)) where.fail(f, "missing from the data position");
  epoch_ = io::read_int(state["epoch"], "epoch", where);
  cursor_ = io::read_int(state["cursor"], "cursor", where);
  current_ = order(epoch_);
  MLM_CHECK(epoch_ >= 0 && cursor_ >= 0 && cursor_ <= static_cast<int64_t>(current_.size()),
            ValueError, "[finetune] the checkpoint's data position (epoch ", epoch_, ", example ",
            cursor_, ") does not fit these task files (", current_.size(), " examples an epoch)");
}

std::vector<SequenceBatch> FinetuneBatches::one_pass(int64_t max_batches) const {
  const int64_t L = o_.tokens_per_sample;
  std::vector<SequenceBatch> out;
  size_t e = 0;
  while (e < examples_.size() && (max_batches == 0 || static_cast<int64_t>(out.size()) < max_batches)) {
    BatchArrays a(o_.batch, L, tok_.spec().pad_id);
    for (int64_t r = 0; r < o_.batch; ++r) {
      int64_t used = 0;
      for (int32_t seg = 0; e < examples_.size(); ++seg) {
        const data::TrainingSequence s = render(static_cast<int64_t>(e), -1);  // first form
        if (used + static_cast<int64_t>(s.ids.size()) > L) break;
        a.place(s, r, used, seg);
        used += static_cast<int64_t>(s.ids.size());
        ++e;
        if (!o_.pack) break;
      }
      a.pad_positions(r, used);
    }
    out.push_back(a.batch(static_cast<uint64_t>(out.size())));
  }
  return out;
}

models::StackInputs FinetuneObjective::inputs(const SequenceBatch& batch) const {
  MLM_CHECK(batch.ids.defined() && batch.ids.dim() == 2 && batch.score.defined() &&
                batch.segments.defined() && batch.positions.defined() && batch.dock.defined(),
            ValueError, "[finetune] a fine-tuning batch needs ids, score, segments, positions and dock");
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1) - 1;
  models::StackInputs in;
  in.tokens = batch.ids.slice(1, 0, T).contiguous();
  in.segment_ids = batch.segments;
  in.positions = batch.positions;
  const std::vector<uint8_t> dock = batch.dock.to_vector<uint8_t>();
  if (std::find(dock.begin(), dock.end(), 1) == dock.end()) return in;
  // Each run of docked positions inside one example is one encoder input.
  const std::vector<int64_t> ids = in.tokens.to_vector<int64_t>();
  const std::vector<int32_t> seg = batch.segments.to_vector<int32_t>();
  std::vector<std::vector<int64_t>> runs;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const auto k = static_cast<size_t>(b * T + t);
      if (!dock[k]) continue;
      if (t == 0 || !dock[k - 1] || seg[k - 1] != seg[k]) runs.emplace_back();
      runs.back().push_back(ids[k]);
    }
  in.spans.push_back(models::make_span_inputs(encoder_, runs, batch.dock, bos_id_, pad_id_));
  return in;
}

LossOutput FinetuneObjective::loss(models::Model& model, const SequenceBatch& batch) {
  const models::StackInputs in = inputs(batch);
  const int64_t T = batch.ids.size(1) - 1;
  const Tensor targets = batch.ids.slice(1, 1, T + 1).contiguous();
  const Tensor logits = model.forward(in).logits;
  MLM_CHECK(logits.defined(), ValueError, "[finetune] the model gives no logits");
  ops::CrossEntropyOptions o;
  o.loss_mask = batch.score.reshape({-1}).to(logits.dtype());
  LossOutput out;
  out.loss = ops::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), o);
  for (float v : batch.score.to_vector<float>()) out.scored += v;
  return out;
}

void FinetuneObjective::check_model(models::Model& model) const {
  const std::string type = model.model_config().model_type;
  MLM_CHECK(type == "decoder" || type == "metalm", ValueError,
            "[finetune] fine-tuning trains a decoder or a MetaLM, not a model of type ", type);
  if (auto* m = dynamic_cast<models::MetaLM*>(&model); m != nullptr && !encoder_.empty())
    m->encoder(encoder_);  // throws naming a missing encoder
}

int64_t set_trainable(models::Model& model, const std::string& mode) {
  const bool metalm = dynamic_cast<models::MetaLM*>(&model) != nullptr;
  MLM_CHECK(mode == "encoder" || mode == "lm" || mode == "all", ValueError,
            "[finetune] --train must be encoder, lm or all, got \"", mode, "\"");
  MLM_CHECK(metalm || mode != "encoder", ValueError, "[finetune] --train encoder trains MetaLM's "
            "docked encoder; a model of type ", model.model_config().model_type, " has none");
  model.freeze("*", false);
  if (metalm && mode == "encoder") model.freeze("decoder.*");
  if (metalm && mode == "lm") {
    model.freeze("encoders.*");
    model.freeze("connectors.*");
  }
  return model.parameter_count(true);
}

}  // namespace metalm::train
