#include "metalm/data/loader.h"

#include <cstdio>
#include <cstdlib>

#include "data/json_list.h"
#include "metalm/core/error.h"
#include "metalm/core/random.h"

namespace metalm::data {
namespace {

// Fixed salts separate the generator streams that one seed drives.
constexpr uint64_t kMixSalt = 0x6d69782d726f7773ull;    // "mix-rows"
constexpr uint64_t kOrderSalt = 0x6f726465722d6570ull;  // "order-ep"

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string hex64(uint64_t v) {
  char s[19];
  std::snprintf(s, sizeof s, "0x%016llx", static_cast<unsigned long long>(v));
  return s;
}

const io::FieldTable<LoaderState::Source>& source_table() {
  using S = LoaderState::Source;
  static const io::FieldTable<S> t(
      "a loader source state",
      {io::field("name", &S::name), io::field("sequences", &S::sequences),
       io::field("epoch", &S::epoch), io::field("position", &S::position)});
  return t;
}
const io::FieldTable<LoaderState>& state_table() {
  static const io::FieldTable<LoaderState> t(
      "a loader state",
      {io::field("seed", &LoaderState::seed), io::field("shuffle", &LoaderState::shuffle),
       io::field("batches", &LoaderState::batches), io::field("rows", &LoaderState::rows),
       list_field("sources", &LoaderState::sources, &source_table)});
  return t;
}

}  // namespace

io::Json LoaderState::to_json() const {
  return state_table().write(*this);
}

LoaderState LoaderState::from_json(const io::Json& j, const io::JsonWhere& where) {
  LoaderState s;
  state_table().read(j, s, where);
  if (s.batches < 0) where.fail("batches", "must be >= 0");
  if (s.rows < 0) where.fail("rows", "must be >= 0");
  for (size_t i = 0; i < s.sources.size(); ++i) {
    const Source& src = s.sources[i];
    const std::string f = "sources[" + std::to_string(i) + "]";
    if (src.epoch < 0) where.fail(f + ".epoch", "must be >= 0");
    if (src.position < 0 || src.position >= std::max<int64_t>(src.sequences, 1))
      where.fail(f + ".position", "must be in [0, sequences)");
  }
  return s;
}

DataLoader::DataLoader(std::vector<const PackedSource*> sources, const LoaderOptions& options)
    : sources_(std::move(sources)),
      options_(options),
      mix_seed_(Generator::hash(options.seed, kMixSalt)),
      cursors_(sources_.size()) {
  MLM_CHECK(!sources_.empty(), ValueError, "[loader] no sources");
  MLM_CHECK(options.batch_size >= 1, ValueError, "[loader] batch_size must be >= 1, got ",
            options.batch_size);
  T_ = sources_[0]->options().tokens_per_sample - 1;
  double total = 0;
  for (const PackedSource* s : sources_) {
    MLM_CHECK(s->size() > 0, ValueError, "[loader] source ", s->source().name(),
              " has no sequences to train on");
    MLM_CHECK(s->options().tokens_per_sample - 1 == T_, ValueError,
              "[loader] sources packed to different tokens_per_sample");
    total += s->source().config().weight;
    cumulative_.push_back(total);
  }
  for (double& c : cumulative_) c /= total;
  cumulative_.back() = 1.0;  // so that every u < 1 finds a source despite rounding
}

size_t DataLoader::draw_source() {
  const double u = Generator::uniform_at(mix_seed_, static_cast<uint64_t>(rows_++));
  size_t s = 0;
  while (u >= cumulative_[s]) ++s;
  return s;
}

uint64_t DataLoader::next_sequence(size_t s) {
  Cursor& c = cursors_[s];
  const uint64_t n = sources_[s]->size();
  if (c.order_epoch != c.epoch) {
    c.order.resize(n);
    for (uint64_t i = 0; i < n; ++i) c.order[i] = i;
    if (options_.shuffle) {  // Fisher-Yates from a counter-based stream: one counter per swap
      const uint64_t seed = Generator::hash(
          Generator::hash(options_.seed ^ kOrderSalt, fnv1a(sources_[s]->source().name())),
          static_cast<uint64_t>(c.epoch));
      for (uint64_t i = n - 1; i > 0; --i)
        std::swap(c.order[i], c.order[Generator::hash(seed, i) % (i + 1)]);
    }
    c.order_epoch = c.epoch;
  }
  const uint64_t seq = c.order[static_cast<size_t>(c.position)];
  if (static_cast<uint64_t>(++c.position) == n) {
    c.position = 0;
    ++c.epoch;
  }
  return seq;
}

Batch DataLoader::next() {
  const int64_t B = options_.batch_size, T = T_;
  Batch b;
  b.tokens = Tensor::empty({B, T}, DType::i64);
  b.targets = Tensor::empty({B, T}, DType::i64);
  b.loss_mask = Tensor::empty({B, T}, DType::u8);
  b.padding = Tensor::empty({B, T}, DType::u8);
  b.segment_ids = Tensor::empty({B, T}, DType::i32);
  b.positions = Tensor::empty({B, T}, DType::i64);
  int64_t* tok = b.tokens.data<int64_t>();
  int64_t* tgt = b.targets.data<int64_t>();
  uint8_t* lm = b.loss_mask.data<uint8_t>();
  uint8_t* pad = b.padding.data<uint8_t>();
  int32_t* seg = b.segment_ids.data<int32_t>();
  int64_t* pos = b.positions.data<int64_t>();
  for (int64_t r = 0; r < B; ++r) {
    const size_t s = draw_source();
    sources_[s]->sequence(next_sequence(s), seq_);
    const int64_t o = r * T;
    for (int64_t t = 0; t < T; ++t) {
      tok[o + t] = seq_.tokens[t];
      tgt[o + t] = seq_.tokens[t + 1];
      lm[o + t] = t + 1 < seq_.length ? 1 : 0;
      pad[o + t] = t < seq_.length ? 0 : 1;
      seg[o + t] = seq_.segments[t];
      pos[o + t] = seq_.positions[t];
    }
    b.sources.push_back(static_cast<int32_t>(s));
    b.lines.push_back(seq_.lines);
    b.documents.push_back(seq_.documents);
  }
  ++batches_;
  return b;
}

LoaderState DataLoader::state() const {
  LoaderState st;
  st.seed = hex64(options_.seed);
  st.shuffle = options_.shuffle;
  st.batches = batches_;
  st.rows = rows_;
  for (size_t s = 0; s < sources_.size(); ++s)
    st.sources.push_back({sources_[s]->source().name(), static_cast<int64_t>(sources_[s]->size()),
                          cursors_[s].epoch, cursors_[s].position});
  return st;
}

void DataLoader::restore(const LoaderState& st) {
  MLM_CHECK(st.seed == hex64(options_.seed), ValueError, "[loader] the state was saved with seed ",
            st.seed, ", this loader has seed ", hex64(options_.seed));
  MLM_CHECK(st.shuffle == options_.shuffle, ValueError,
            "[loader] the state was saved with shuffle ", st.shuffle ? "on" : "off");
  MLM_CHECK(st.sources.size() == sources_.size(), ValueError, "[loader] the state has ",
            st.sources.size(), " sources, this loader ", sources_.size());
  for (size_t s = 0; s < sources_.size(); ++s) {
    const LoaderState::Source& src = st.sources[s];
    const std::string& name = sources_[s]->source().name();
    MLM_CHECK(src.name == name, ValueError, "[loader] state source ", s, " is ", src.name,
              ", this loader's is ", name);
    MLM_CHECK(src.sequences == static_cast<int64_t>(sources_[s]->size()), ValueError,
              "[loader] source ", name, ": the state was saved over ", src.sequences,
              " sequences, this corpus packs ", sources_[s]->size(),
              " (the corpus or tokens_per_sample changed)");
    MLM_CHECK(src.epoch >= 0 && src.position >= 0 && src.position < src.sequences, ValueError,
              "[loader] source ", name, ": position ", src.position, " out of range");
  }
  batches_ = st.batches;
  rows_ = st.rows;
  for (size_t s = 0; s < sources_.size(); ++s)
    cursors_[s] = {st.sources[s].epoch, st.sources[s].position, -1, {}};
}

}  // namespace metalm::data
