// A tokenizer and tiny models for the task-layer tests (prompts, chat, evaluation, fine-tuning):
// a SentencePiece model trained once per process on made-up review sentences, and a MetaLM
// (one docked text encoder) and a GPT at its vocabulary, with random weights.
#pragma once
#include <cstdint>
#include <memory>

#include "metalm/data/tokenizer.h"
#include "metalm/models/model.h"

namespace metalm::test {

// Trained on first use into a temporary directory (removed at exit); 40 ids.
const data::Tokenizer& tiny_tokenizer();
// Decoder width 32, 2 layers, 256 positions; encoder width 24, 2 layers, 40 positions.
std::unique_ptr<models::Model> tiny_metalm(uint64_t seed = 3);
// The same decoder alone.
std::unique_ptr<models::Model> tiny_gpt(uint64_t seed = 3);

}  // namespace metalm::test
