// The trainer's view of a corpus (data::DataLoader): batches of packed sequences with a seed
// for the objective's draws, and the loader's state for an exact resume.
#pragma once
#include <vector>

#include "metalm/data/loader.h"
#include "metalm/train/trainer.h"

namespace metalm::train {

class CorpusBatches : public BatchSource {
 public:
  // The sources must outlive this.
  CorpusBatches(std::vector<const data::PackedSource*> sources, const data::LoaderOptions& options);
  // ids = the loader's tokens followed by the last target ([B, T + 1]); seed = a hash of the
  // loader seed and the batch's index, so a replayed batch draws the same spans and masks.
  SequenceBatch next() override;
  io::Json state() const override { return loader_.state().to_json(); }
  void restore(const io::Json& state) override;
  int64_t tokens_per_batch() const override { return batch_size_ * loader_.seq_len(); }

 private:
  data::DataLoader loader_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t index_ = 0;
};

// The first n batches of the sources in their packing order (no shuffling): the same
// validation batches at every evaluation and in every run.
FixedBatches first_batches(std::vector<const data::PackedSource*> sources, int64_t batch_size,
                           int64_t n, uint64_t seed);

}  // namespace metalm::train
