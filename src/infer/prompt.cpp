// The encoders' pass over a prompt's docked segments.
#include "metalm/infer/prompt.h"

#include <algorithm>

#include "metalm/autograd/autograd.h"
#include "metalm/core/error.h"
#include "metalm/data/tokenizer.h"
#include "metalm/models/metalm.h"
#include "metalm/ops/index.h"
#include "metalm/ops/shape.h"

namespace metalm::infer {

models::Decoder& task_decoder(models::Model& model) {
  if (auto* d = dynamic_cast<models::Decoder*>(&model)) return *d;
  if (auto* m = dynamic_cast<models::MetaLM*>(&model)) return m->decoder();
  throw ValueError("[prompt] a model of type " + model.model_config().model_type +
                   " has no decoder to generate with");
}

std::string default_encoder(models::Model& model) {
  for (const models::DockedEncoder& e : model.model_config().encoders)
    if (e.span == models::SpanKind::text) return e.name;
  return "";
}

DecoderPrompt prepare_prompt(models::Model& model, const Prompt& prompt, int64_t bos_id) {
  DecoderPrompt out(prompt.ids());
  if (!prompt.has_docked()) return out;
  auto* metalm = dynamic_cast<models::MetaLM*>(&model);
  MLM_CHECK(metalm != nullptr, ValueError, "[prompt] a model of type ",
            model.model_config().model_type, " has no encoder to dock segments through");
  const int64_t T = out.size();
  std::vector<uint8_t> mask(static_cast<size_t>(T), 0);
  std::vector<int64_t> owner(static_cast<size_t>(T), -1);  // row in the features' concat
  std::vector<Tensor> features;
  int64_t offset = 0;
  NoGradGuard ng;
  const nn::EvalModeGuard eval_mode(*metalm);
  // One batch per encoder: its segments as rows [<s>] + ids, right-padded.
  std::vector<std::string> names;
  for (const Segment& s : prompt.segments)
    if (!s.encoder.empty() && std::find(names.begin(), names.end(), s.encoder) == names.end())
      names.push_back(s.encoder);
  for (const std::string& name : names) {
    const models::Encoder& enc = metalm->encoder(name);  // throws naming an unknown encoder
    std::vector<std::vector<int64_t>> rows;
    int64_t pos = 0;
    for (const Segment& s : prompt.segments) {
      if (s.encoder == name) {
        rows.push_back(s.ids);
        for (size_t j = 0; j < s.ids.size(); ++j) {
          mask[static_cast<size_t>(pos) + j] = 1;
          owner[static_cast<size_t>(pos) + j] = offset++;
        }
      }
      pos += static_cast<int64_t>(s.ids.size());
    }
    int64_t L = 0;
    for (const auto& r : rows) L = std::max<int64_t>(L, static_cast<int64_t>(r.size()) + 1);
    const int64_t limit = enc.stack_config().max_positions;
    MLM_CHECK(L <= limit, ValueError, "[prompt] a segment docked through \"", name, "\" has ",
              L - 1, " tokens; with <s> its encoder reads at most ", limit);
    const int64_t pad = enc.stack_config().padding_idx >= 0 ? enc.stack_config().padding_idx : 0;
    const models::SpanInputs sp = models::make_span_inputs(name, rows, Tensor(), bos_id, pad);
    features.push_back(metalm->span_features(sp));
  }
  // Rows in prompt order (owner gives each docked position its row of the concat).
  std::vector<int64_t> order;
  for (size_t t = 0; t < owner.size(); ++t)
    if (mask[t]) order.push_back(owner[t]);
  const Tensor all = features.size() == 1 ? features[0] : ops::concat(features, 0);
  out.dock_mask = Tensor::from_vector<uint8_t>({1, T}, mask);
  out.dock_features =
      std::is_sorted(order.begin(), order.end())
          ? all
          : ops::gather_rows(all, Tensor::from_vector<int64_t>(
                                      {static_cast<int64_t>(order.size())}, order));
  return out;
}

}  // namespace metalm::infer
