// The training data loader: batches of packed sequences from several sources, mixed by weight,
// each source shuffled epoch by epoch, and a small state that resumes it exactly.
//
// Row r of the run (counting over all batches) comes from source s with probability
// weight_s / sum(weights), drawn as Generator::uniform_at(mix seed, r): a row's source depends
// only on the seed and r. Each source walks its own permutation of its sequences; at its end
// the source starts its next epoch with a new permutation, hash(seed, source, epoch). So the
// state is a few integers (rows drawn, and per source its epoch and position), and a resumed
// loader gives exactly the batches the uninterrupted one would have (DESIGN D7).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "metalm/core/tensor.h"
#include "metalm/data/packing.h"
#include "metalm/io/json.h"

namespace metalm::data {

struct LoaderOptions {
  int64_t batch_size = 8;
  uint64_t seed = 0;
  bool shuffle = true;  // false: every source in its packing order (evaluation)
};

// A batch of B rows of T = tokens_per_sample - 1 positions: sequence ids [0, T) are the
// inputs, [1, T] the targets (spec 3.2: source ids[:-1], target ids[1:]).
struct Batch {
  Tensor tokens;                             // i64 [B, T]
  Tensor targets;                            // i64 [B, T]
  Tensor loss_mask;                          // u8 [B, T]: 1 where the target is a real id (not pad)
  Tensor padding;                            // u8 [B, T]: 1 where the input is pad
  Tensor segment_ids;                        // i32 [B, T]: the document segments (pad: -1)
  Tensor positions;                          // i64 [B, T]
  std::vector<int32_t> sources;              // per row: index of its source
  std::vector<std::vector<LineSpan>> lines;  // per row: its line spans (sequence positions,
                                             // the same as input positions)
  std::vector<std::vector<uint64_t>> documents;  // per row: the document of each segment
};

struct LoaderState {
  struct Source {
    std::string name;
    int64_t sequences = 0;  // how many it packs: a different corpus does not resume
    int64_t epoch = 0, position = 0;
  };
  std::string seed;  // hex
  bool shuffle = true;
  int64_t batches = 0;  // batches given so far
  int64_t rows = 0;     // rows drawn so far (the mixing counter)
  std::vector<Source> sources;

  io::Json to_json() const;
  // ValueError naming the field for a malformed state.
  static LoaderState from_json(const io::Json& j, const io::JsonWhere& where);
};

class DataLoader {
 public:
  // The sources must outlive the loader; their configs give the weights. ValueError for no
  // source, a source without sequences, or batch_size < 1.
  DataLoader(std::vector<const PackedSource*> sources, const LoaderOptions& options);
  int64_t seq_len() const { return T_; }
  Batch next();
  LoaderState state() const;
  // Continues from a state of a loader over the same sources and seed (ValueError otherwise,
  // naming what differs).
  void restore(const LoaderState& state);

 private:
  struct Cursor {
    int64_t epoch = 0, position = 0;
    int64_t order_epoch = -1;     // the epoch `order` was made for
    std::vector<uint64_t> order;  // this epoch's sequence order
  };
  uint64_t next_sequence(size_t s);  // advances source s by one sequence
  size_t draw_source();              // advances the mixing counter

  std::vector<const PackedSource*> sources_;
  std::vector<double> cumulative_;  // normalised cumulative weights
  LoaderOptions options_;
  int64_t T_;
  uint64_t mix_seed_;
  int64_t batches_ = 0, rows_ = 0;
  std::vector<Cursor> cursors_;
  PackedSequence seq_;  // reused between rows
};

}  // namespace metalm::data
