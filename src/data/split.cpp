#include "metalm/data/split.h"

#include <algorithm>
#include <cmath>

#include "metalm/core/error.h"
#include "metalm/core/random.h"

namespace metalm::data {
namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

DocumentSplit split_documents(uint64_t docs, const std::string& source, const SplitOptions& o) {
  MLM_CHECK(std::isfinite(o.valid_fraction) && o.valid_fraction >= 0 && o.valid_fraction < 1,
            ValueError, "[split] valid_fraction must be in [0, 1), got ", o.valid_fraction);
  const uint64_t k =
      o.valid_docs >= 0
          ? static_cast<uint64_t>(o.valid_docs)
          : static_cast<uint64_t>(std::llround(o.valid_fraction * static_cast<double>(docs)));
  MLM_CHECK(k < docs || docs == 0, ValueError, "[split] source ", source, ": holding out ", k,
            " of its ", docs, " documents leaves none to train on");
  DocumentSplit out;
  if (k == 0) {
    out.train.resize(docs);
    for (uint64_t d = 0; d < docs; ++d) out.train[d] = d;
    return out;
  }
  // Keys (hash, index): ties in the hash (2^-64) are broken by index, so the choice is exact.
  const uint64_t seed = Generator::hash(o.seed, fnv1a(source));
  std::vector<std::pair<uint64_t, uint64_t>> keys(docs);
  for (uint64_t d = 0; d < docs; ++d) keys[d] = {Generator::hash(seed, d), d};
  std::nth_element(keys.begin(), keys.begin() + static_cast<int64_t>(k - 1), keys.end());
  const auto cut = keys[k - 1];
  for (uint64_t d = 0; d < docs; ++d)
    (std::make_pair(Generator::hash(seed, d), d) <= cut ? out.valid : out.train).push_back(d);
  return out;
}

}  // namespace metalm::data
