// What tokenizer.cpp and tokenizer_train.cpp share: SentencePiece's error messages made into
// one line, and the directory writer.
#pragma once
#include <sentencepiece_processor.h>

#include <string>
#include <string_view>

#include "metalm/data/tokenizer.h"

namespace metalm::data {

// A SentencePiece status as one readable line: its "./src/x.cc(660) [condition] " prefix
// (where the check sits in SentencePiece's sources) dropped, newlines folded; `fallback` when
// nothing readable is left.
std::string spm_message(const sentencepiece::util::Status& status, std::string_view fallback);

// Writes tokenizer.model (model_bytes) and tokenizer.json (spec) into dir, creating it if
// needed. Both files are written in full to temporary names before either is renamed into
// place, so a failure leaves the old tokenizer (or no directory) behind; between the two
// renames a crash could pair a new model with the old tokenizer.json, which load() then
// refuses through vocab_hash. Refuses to replace the tokenizer of a directory that holds
// model.safetensors: those weights were trained with it.
void write_tokenizer_dir(const std::string& dir, const std::string& model_bytes,
                         const TokenizerSpec& spec);

}  // namespace metalm::data
