// A conversation over one KV cache.
#include "metalm/infer/chat.h"

#include <algorithm>

#include "metalm/core/error.h"

namespace metalm::infer {

ChatSession::ChatSession(models::Model& model, int64_t bos_id)
    : model_(model),
      decoder_(task_decoder(model)),
      bos_id_(bos_id),
      state_(decoder_, 1, decoder_.config.max_positions) {}

int64_t ChatSession::room() const {
  return state_.capacity() - state_.length() - static_cast<int64_t>(pending_.size());
}

void ChatSession::reset() {
  state_.reset();
  history_.clear();
  pending_.clear();
}

std::vector<int64_t> ChatSession::turn(const Prompt& turn, const GenerateOptions& options,
                                       const std::function<void(int64_t)>& on_token) {
  MLM_CHECK(turn.size() > 0 || !pending_.empty() || state_.length() > 0, ValueError,
            "[chat] the first turn is empty");
  MLM_CHECK(options.max_new_tokens >= 1, ValueError, "[chat] a reply needs max_new_tokens >= 1");
  // One position stays for the reply's first token to be read with the next turn.
  MLM_CHECK(turn.size() + 1 < room(), ValueError, "[chat] the turn has ", turn.size(),
            " tokens and the conversation has room for ", std::max<int64_t>(room() - 2, 0),
            " more (the model reads ", state_.capacity(), "): start over with a reset");
  Prompt feed;
  feed.plain(pending_).append(turn);
  const DecoderPrompt prepared = prepare_prompt(model_, feed, bos_id_);
  for (const Segment& s : turn.segments)
    if (!s.encoder.empty()) encoder_read_ += static_cast<int64_t>(s.ids.size()) + 1;
  GenerateOptions o = options;
  // The reply's ids after the first are fed one by one; the last stays pending.
  o.max_new_tokens =
      std::min(o.max_new_tokens, state_.capacity() - state_.length() - prepared.size() + 1);
  const int64_t before = state_.length();
  std::vector<int64_t> reply = continue_generation(decoder_, state_, prepared, o, on_token);
  decoder_read_ += state_.length() - before;
  const std::vector<int64_t> turn_ids = turn.ids();
  history_.insert(history_.end(), turn_ids.begin(), turn_ids.end());
  history_.insert(history_.end(), reply.begin(), reply.end());
  pending_.clear();
  if (!reply.empty()) pending_.push_back(reply.back());
  return reply;
}

}  // namespace metalm::infer
