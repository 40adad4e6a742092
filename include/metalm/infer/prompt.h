// Prompts for the universal task layer, as the decoder reads them: the token-level prompt of
// data/prompt.h (plain and docked segments) with its docked segments run through MetaLM's
// encoders. The decoding functions (generate, beam search, scoring, chat) take a DecoderPrompt.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "metalm/core/tensor.h"
#include "metalm/data/prompt.h"

namespace metalm::models {
class Decoder;
class Model;
}

namespace metalm::infer {

// The token-level forms, under the names the task layer uses.
using data::decode_lines;
using data::encode_lines;
using data::few_shot_prompt;
using data::non_text_ids;
using data::parse_prompt;
using data::parse_prompt_json;
using data::Prompt;
using data::PromptTemplate;
using data::render_template;
using data::Segment;

// What the decoder reads for a prompt: its ids (docked segments' ids stay as placeholders) and
// the vectors that replace them. Converts implicitly from plain ids, so every decoding function
// takes either.
struct DecoderPrompt {
  DecoderPrompt() = default;
  DecoderPrompt(std::vector<int64_t> ids) : tokens(std::move(ids)) {}  // NOLINT: implicit
  DecoderPrompt(std::initializer_list<int64_t> ids) : tokens(ids) {}
  std::vector<int64_t> tokens;
  Tensor dock_mask;      // u8 [1, T], 1 = docked; undefined: nothing docked
  Tensor dock_features;  // [count(dock_mask), d_decoder]
  bool docked() const { return dock_mask.defined(); }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

// Runs the docked segments through their encoders and connectors (one batched call per
// encoder, no gradient, eval mode). A model without encoders (a GPT) takes plain prompts only.
DecoderPrompt prepare_prompt(models::Model& model, const Prompt& prompt, int64_t bos_id);

// The decoder that generates for a model: a GPT itself, MetaLM's task layer; an error naming
// the model type for models without one.
models::Decoder& task_decoder(models::Model& model);
// The name of the model's docked text encoder ("" for a model without one): what "{{...}}"
// docks through. A MetaLM with several encoders takes the first.
std::string default_encoder(models::Model& model);

}  // namespace metalm::infer
