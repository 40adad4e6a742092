#include "common/tiny_stacks.h"

#include "metalm/autograd/autograd.h"
#include "metalm/core/random.h"
#include "metalm/ops/ops.h"

namespace metalm::test {

Tensor random_tokens(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(static_cast<size_t>(B * T));
  for (auto& t : v) t = g.randint(3, vocab);
  return Tensor::from_vector<int64_t>({B, T}, v);
}

Tensor token_row(const std::vector<int64_t>& ids) {
  return Tensor::from_vector<int64_t>({1, static_cast<int64_t>(ids.size())}, ids);
}

void randomise(nn::Module& m, uint64_t seed) {
  NoGradGuard ng;
  Generator g(seed);
  for (auto& [name, p] : m.named_parameters())
    copy_into(p, p.detach() + g.normal(p.shape(), 0.0, 0.1, p.dtype()));
}

}  // namespace metalm::test
