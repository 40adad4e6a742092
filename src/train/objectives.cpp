// The pretraining objectives.
#include "metalm/train/objectives.h"

#include <algorithm>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/models/metalm.h"
#include "metalm/ops/loss.h"

namespace metalm::train {
namespace {

struct Rows {
  int64_t B = 0, T = 0;  // T = model positions (the batch holds T + 1 ids per row)
  std::vector<int64_t> ids;
};

Rows rows_of(const SequenceBatch& batch) {
  MLM_CHECK(batch.ids.defined() && batch.ids.dim() == 2 && batch.ids.size(1) >= 2, ShapeError,
            "[objective] batch ids must be [B, T + 1] with T >= 1, got ",
            batch.ids.defined() ? batch.ids.str() : std::string("undefined"));
  return {batch.ids.size(0), batch.ids.size(1) - 1, batch.ids.to_vector<int64_t>()};
}

uint64_t row_seed(const SequenceBatch& batch, int64_t row) {
  return Generator::hash(batch.seed, static_cast<uint64_t>(row));
}

// Model inputs ids[:, :-1], targets ids[:, 1:] and the not-padding mask of the targets.
void shift(const Rows& r, int32_t pad, Tensor& inputs, Tensor& targets, Tensor& score) {
  std::vector<int64_t> in(static_cast<size_t>(r.B * r.T)), tg(in.size());
  std::vector<float> sc(in.size());
  for (int64_t b = 0; b < r.B; ++b)
    for (int64_t t = 0; t < r.T; ++t) {
      const size_t i = static_cast<size_t>(b * r.T + t);
      in[i] = r.ids[b * (r.T + 1) + t];
      tg[i] = r.ids[b * (r.T + 1) + t + 1];
      sc[i] = tg[i] == pad ? 0.f : 1.f;
    }
  inputs = Tensor::from_vector<int64_t>({r.B, r.T}, in);
  targets = Tensor::from_vector<int64_t>({r.B, r.T}, tg);
  score = Tensor::from_vector<float>({r.B, r.T}, sc);
}

// Mean cross-entropy of [B, T, V] logits on the scored targets.
LossOutput scored_loss(const Tensor& logits, const Tensor& targets, const Tensor& score) {
  MLM_CHECK(logits.defined(), ValueError, "[objective] the model gives no logits (no output layer)");
  ops::CrossEntropyOptions o;
  o.loss_mask = score.reshape({-1}).to(logits.dtype());
  LossOutput out;
  out.loss = ops::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), o);
  for (float v : score.to_vector<float>()) out.scored += v;
  return out;
}

}  // namespace

LossOutput CausalObjective::loss(models::Model& model, const SequenceBatch& batch) {
  const Rows r = rows_of(batch);
  Tensor inputs, targets, score;
  shift(r, pad_id_, inputs, targets, score);
  models::StackInputs in;
  in.tokens = inputs;
  return scored_loss(model.forward(in).logits, targets, score);
}

LossOutput CausalObjective::loss_on(models::Model& model, const SequenceBatch& batch,
                                    const Tensor& score) {
  const Rows r = rows_of(batch);
  Tensor inputs, targets, pad_score;
  shift(r, pad_id_, inputs, targets, pad_score);
  MLM_CHECK(score.defined() && score.shape() == pad_score.shape(), ShapeError,
            "[objective] score must be [", r.B, ", ", r.T, "]");
  models::StackInputs in;
  in.tokens = inputs;
  return scored_loss(model.forward(in).logits, targets, score);
}

LossOutput MlmObjective::loss(models::Model& model, const SequenceBatch& batch) {
  const Rows r = rows_of(batch);
  const int64_t n = r.T + 1;
  std::vector<int64_t> input(r.ids.size()), target(r.ids.size());
  std::vector<uint8_t> pad(r.ids.size());
  std::vector<int32_t> row(static_cast<size_t>(n));
  for (int64_t b = 0; b < r.B; ++b) {
    for (int64_t t = 0; t < n; ++t) row[t] = static_cast<int32_t>(r.ids[b * n + t]);
    data::mlm_corrupt(row.data(), n, options_, row_seed(batch, b), input.data() + b * n,
                      target.data() + b * n);
    for (int64_t t = 0; t < n; ++t) pad[b * n + t] = row[t] == options_.pad_id;
  }
  models::StackInputs in;
  in.tokens = Tensor::from_vector<int64_t>({r.B, n}, input);
  in.padding = Tensor::from_vector<uint8_t>({r.B, n}, pad);
  in.route = {0, false};  // a multiway encoder reads text with its language expert
  const Tensor logits = model.forward(in).logits;
  MLM_CHECK(logits.defined(), ValueError,
            "[objective] mlm needs an encoder with an output layer (vocab_size > 0)");
  ops::CrossEntropyOptions o;
  LossOutput out;
  out.loss = ops::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                Tensor::from_vector<int64_t>({r.B * n}, target), o);
  out.scored = static_cast<double>(std::count_if(target.begin(), target.end(),
                                                 [](int64_t v) { return v != -100; }));
  return out;
}

SemiCausalObjective::Prepared SemiCausalObjective::prepare(const SequenceBatch& batch) const {
  const SemiCausalOptions& o = options_;
  const Rows r = rows_of(batch);
  Prepared p;
  Tensor inputs;
  shift(r, o.pad_id, inputs, p.targets, p.score);
  std::vector<uint8_t> dock(static_cast<size_t>(r.B * r.T), 0);
  float* score = p.score.data<float>();
  std::vector<std::vector<int64_t>> span_rows;  // the span tokens, per span
  std::vector<int32_t> row(static_cast<size_t>(r.T + 1));
  for (int64_t b = 0; b < r.B; ++b) {
    int64_t n = 0;  // the row's length before its padding
    for (int64_t t = 0; t <= r.T; ++t) {
      row[t] = static_cast<int32_t>(r.ids[b * (r.T + 1) + t]);
      if (row[t] != o.pad_id) n = t + 1;
    }
    const std::vector<data::Span> spans =
        data::sample_spans(row.data(), n, o.spans, row_seed(batch, b));
    data::apply_spans(spans, r.T, o.span_loss, dock.data() + b * r.T, score + b * r.T);
    for (const data::Span& s : spans) {
      std::vector<int64_t> seq;
      seq.insert(seq.end(), row.begin() + s.begin, row.begin() + s.end);
      span_rows.push_back(std::move(seq));
      p.span_tokens += s.size();
    }
  }
  p.inputs.tokens = inputs;
  if (span_rows.empty()) return p;
  p.inputs.spans.push_back(models::make_span_inputs(
      o.encoder, span_rows, Tensor::from_vector<uint8_t>({r.B, r.T}, dock), o.bos_id, o.pad_id));
  return p;
}

LossOutput SemiCausalObjective::loss(models::Model& model, const SequenceBatch& batch) {
  const Prepared p = prepare(batch);
  return scored_loss(model.forward(p.inputs).logits, p.targets, p.score);
}

void CausalObjective::check_model(models::Model& model) const {
  const std::string type = model.model_config().model_type;
  MLM_CHECK(type == "decoder" || type == "metalm", ValueError,
            "[objective] the causal LM trains a decoder (model_type decoder or metalm), not a "
            "model of type ", type);
}

void MlmObjective::check_model(models::Model& model) const {
  const std::string type = model.model_config().model_type;
  MLM_CHECK(type == "encoder", ValueError, "[objective] the mlm objective trains a text encoder "
            "(model_type encoder), not a model of type ", type);
}

void SemiCausalObjective::check_model(models::Model& model) const {
  auto* metalm = dynamic_cast<models::MetaLM*>(&model);
  MLM_CHECK(metalm != nullptr, ValueError, "[objective] the semi-causal LM trains a MetaLM "
            "(model_type metalm), not a model of type ", model.model_config().model_type);
  metalm->encoder(options_.encoder);  // throws naming the missing encoder
}

std::unique_ptr<Objective> make_objective(const ObjectiveOptions& o) {
  if (o.kind == "causal") return std::make_unique<CausalObjective>(o.pad_id);
  if (o.kind == "mlm") return std::make_unique<MlmObjective>(o.mlm);
  if (o.kind == "semi-causal") return std::make_unique<SemiCausalObjective>(o.semi_causal);
  throw ValueError("[objective] expected causal, mlm or semi-causal, got '" + o.kind + "'");
}

}  // namespace metalm::train
