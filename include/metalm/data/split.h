// The held-out validation split, by document: in each source, the documents with the lowest
// hash(seed, source name, document index) are held out. The choice depends only on the seed,
// the source name and the document's index in its source: not on the thread count, the
// sharding or the other sources. Every source gives its share, so the validation loss covers
// every kind of text.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace metalm::data {

struct SplitOptions {
  double valid_fraction = 0.0;  // of each source's documents, rounded to nearest
  int64_t valid_docs = -1;      // >= 0: this many documents of each source instead
  uint64_t seed = 0;
};

// Document indices of one source, ascending; disjoint, together all of [0, docs).
struct DocumentSplit {
  std::vector<uint64_t> train, valid;
};

// ValueError for a fraction outside [0, 1) or a split that would leave no training document.
DocumentSplit split_documents(uint64_t docs, const std::string& source,
                              const SplitOptions& options);

}  // namespace metalm::data
