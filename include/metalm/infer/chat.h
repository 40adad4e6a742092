// A multi-turn conversation with the task layer: the history lives in one KV cache that every
// turn extends, so earlier turns are never re-read by the decoder nor re-encoded by a docked
// encoder; each turn costs only its own tokens (tested against generate() on the whole
// history). The session knows nothing of roles or templates: the caller (metalm chat) builds
// each turn's prompt.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "metalm/infer/generate.h"
#include "metalm/infer/prompt.h"
#include "metalm/models/model.h"
#include "metalm/models/stack.h"

namespace metalm::infer {

class ChatSession {
 public:
  // `model` must outlive the session; bos_id starts docked segments' encoder input.
  ChatSession(models::Model& model, int64_t bos_id);

  // Reads `turn` after the history (its docked segments through their encoders, once), then
  // generates a reply of at most options.max_new_tokens (fewer when the context is nearly
  // full); turn and reply join the history. A turn that does not fit in the room left is a
  // ValueError and leaves the session as it was.
  std::vector<int64_t> turn(const Prompt& turn, const GenerateOptions& options,
                            const std::function<void(int64_t)>& on_token = {});
  void reset();

  const std::vector<int64_t>& history() const { return history_; }  // every id, in order
  int64_t room() const;  // positions left for further turns and replies
  // Tokens the decoder and the encoders have read over the session (what a reused cache saves).
  int64_t decoder_tokens_read() const { return decoder_read_; }
  int64_t encoder_tokens_read() const { return encoder_read_; }

 private:
  models::Model& model_;
  models::Decoder& decoder_;
  int64_t bos_id_;
  models::IncrementalState state_;
  std::vector<int64_t> history_;
  std::vector<int64_t> pending_;  // the last reply id, generated but not yet in the cache
  int64_t decoder_read_ = 0, encoder_read_ = 0;
};

}  // namespace metalm::infer
