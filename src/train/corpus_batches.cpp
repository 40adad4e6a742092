#include "metalm/train/corpus_batches.h"

#include <vector>

#include "metalm/core/random.h"
#include "metalm/ops/shape.h"

namespace metalm::train {
namespace {

SequenceBatch to_sequences(const data::Batch& b, uint64_t seed) {
  const int64_t T = b.tokens.size(1);
  SequenceBatch s;
  s.ids = ops::concat({b.tokens, b.targets.slice(1, T - 1, T)}, 1).contiguous();
  s.seed = seed;
  return s;
}

}  // namespace

CorpusBatches::CorpusBatches(std::vector<const data::PackedSource*> sources,
                             const data::LoaderOptions& options)
    : loader_(std::move(sources), options), batch_size_(options.batch_size), seed_(options.seed) {}

SequenceBatch CorpusBatches::next() {
  const data::Batch b = loader_.next();
  return to_sequences(b, Generator::hash(seed_, static_cast<uint64_t>(index_++)));
}

void CorpusBatches::restore(const io::Json& state) {
  const data::LoaderState s = data::LoaderState::from_json(state, {"trainer", "train_data"});
  loader_.restore(s);
  index_ = s.batches;
}

FixedBatches first_batches(std::vector<const data::PackedSource*> sources, int64_t batch_size,
                           int64_t n, uint64_t seed) {
  data::LoaderOptions o;
  o.batch_size = batch_size;
  o.seed = seed;
  o.shuffle = false;
  data::DataLoader loader(std::move(sources), o);
  std::vector<SequenceBatch> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back(to_sequences(loader.next(), Generator::hash(seed, static_cast<uint64_t>(i))));
  return FixedBatches(std::move(out));
}

}  // namespace metalm::train
