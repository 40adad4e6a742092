// Op microbenchmarks for bench/run: prints one JSON object per case with the median time of a
// forward+backward call, its matmul FLOPs, and the peak bytes the allocator saw during one call.
// Usage: metalm_bench_ops [--filter SUBSTRING] [--repeats N]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/core/random.h"
#include "metalm/core/threads.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

struct Case {
  std::string name;
  double flops;  // matmul FLOPs of one call (0: report calls/s)
  std::function<std::function<void()>()> setup;  // builds inputs, returns the timed call
};

double median_seconds(const std::function<void()>& call, int repeats) {
  call();  // warm up (primitive creation, allocator cache)
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto a = std::chrono::steady_clock::now();
    call();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor param(const Shape& s, uint64_t seed, double std = 1.0) {
  Generator g(seed);
  return g.normal(s, 0, std).set_requires_grad();
}

// fwd+bwd of f with a fixed upstream gradient; gradients of the inputs are dropped each call.
std::function<void()> fwd_bwd(std::vector<Tensor> leaves, std::function<Tensor()> f) {
  return [leaves, f]() mutable {
    for (auto& l : leaves) l.zero_grad();
    Tensor out = f();
    out.backward(Tensor::ones(out.shape(), out.dtype()));
  };
}

std::vector<Case> make_cases() {
  std::vector<Case> cases;
  // Linear at transformer shapes (B*T = 2048 rows): fwd + dX + dW = 3 GEMMs.
  struct LinearShape { int64_t m, k, n; };
  for (LinearShape s : {LinearShape{2048, 384, 1536}, LinearShape{2048, 1536, 384},
                        LinearShape{2048, 384, 384}, LinearShape{2048, 384, 8192}}) {
    std::string dims = std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n);
    double flops = 3.0 * 2.0 * s.m * s.k * s.n;
    cases.push_back({"linear_fwd_bwd_" + dims, flops, [s] {
                       Tensor x = param({s.m, s.k}, 1), w = param({s.n, s.k}, 2, 0.05),
                              b = param({s.n}, 3);
                       return fwd_bwd({x, w, b}, [=] { return ops::linear(x, w, b); });
                     }});
    // The same three GEMMs straight through dnnl_sgemm: the ceiling for linear.
    cases.push_back({"sgemm_raw_3gemm_" + dims, flops, [s] {
                       auto x = std::make_shared<std::vector<float>>(s.m * s.k, 0.5f);
                       auto w = std::make_shared<std::vector<float>>(s.n * s.k, 0.25f);
                       auto y = std::make_shared<std::vector<float>>(s.m * s.n, 0.f);
                       auto dx = std::make_shared<std::vector<float>>(s.m * s.k, 0.f);
                       auto dw = std::make_shared<std::vector<float>>(s.n * s.k, 0.f);
                       return std::function<void()>([=] {
                         ops::sgemm(false, true, s.m, s.n, s.k, 1.f, x->data(), s.k, w->data(), s.k,
                                    0.f, y->data(), s.n);
                         ops::sgemm(false, false, s.m, s.k, s.n, 1.f, y->data(), s.n, w->data(),
                                    s.k, 0.f, dx->data(), s.k);
                         ops::sgemm(true, false, s.n, s.k, s.m, 1.f, y->data(), s.n, x->data(), s.k,
                                    0.f, dw->data(), s.k);
                       });
                     }});
  }
  // Attention, causal, B=4 H=8 D=64: fwd 2 GEMMs + bwd 5 GEMMs of T*T*D (half for causal);
  // then with probability dropout 0.1 (training as KOSMOS-1 does): the mask is regenerated from
  // counters in backward, so its cost is the hashing.
  struct AttentionShape { int64_t T; double dropout; };
  for (AttentionShape s : {AttentionShape{256, 0}, AttentionShape{1024, 0}, AttentionShape{2048, 0},
                           AttentionShape{256, 0.1}, AttentionShape{1024, 0.1}}) {
    const int64_t T = s.T;
    const double p = s.dropout;
    double flops = 7.0 * 2.0 * 4 * 8 * T * T * 64 / 2.0;
    std::string name = p > 0 ? "attention_causal_dropout_fwd_bwd_T" : "attention_causal_fwd_bwd_T";
    cases.push_back({name + std::to_string(T), flops, [T, p] {
                       Tensor q = param({4, 8, T, 64}, 4), k = param({4, 8, T, 64}, 5),
                              v = param({4, 8, T, 64}, 6);
                       ops::AttentionMask m;
                       m.kind = ops::AttnMaskKind::causal;
                       auto step = std::make_shared<uint64_t>(0);  // fresh masks every call
                       return fwd_bwd({q, k, v}, [=] {
                         ops::AttentionDropout d{p, 7, (*step)++ * uint64_t(4 * 8 * T * T)};
                         return ops::attention(q, k, v, m, 0.0, d);
                       });
                     }});
  }
  // Row-wise ops at [8, 256, C].
  for (int64_t C : {384, 8192}) {
    std::string sh = "8x256x" + std::to_string(C);
    cases.push_back({"layer_norm_fwd_bwd_" + sh, 0, [C] {
                       Tensor x = param({8, 256, C}, 7), w = param({C}, 8), b = param({C}, 9);
                       return fwd_bwd({x, w, b}, [=] { return ops::layer_norm(x, w, b); });
                     }});
    cases.push_back({"softmax_fwd_bwd_" + sh, 0, [C] {
                       Tensor x = param({8, 256, C}, 10);
                       return fwd_bwd({x}, [=] { return ops::softmax(x); });
                     }});
    cases.push_back({"gelu_fwd_bwd_" + sh, 0, [C] {
                       Tensor x = param({8, 256, C}, 11);
                       return fwd_bwd({x}, [=] { return ops::gelu(x); });
                     }});
    cases.push_back({"cross_entropy_fwd_bwd_" + sh, 0, [C] {
                       Tensor x = param({2048, C}, 12);
                       Generator g(13);
                       Tensor t = Tensor::empty({2048}, DType::i64);
                       for (int64_t i = 0; i < 2048; ++i) t.data<int64_t>()[i] = g.randint(0, C);
                       return fwd_bwd({x}, [=] { return ops::cross_entropy(x, t); });
                     }});
  }
  return cases;
}

}  // namespace

int main(int argc, char** argv) {
  std::string filter;
  int repeats = 10;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--filter SUBSTRING] [--repeats N]\n", argv[0]);
      return 2;
    }
  }
  init_threads_from_env();
  for (const Case& c : make_cases()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    std::function<void()> call = c.setup();
    call();
    memory_reset_peak();
    const size_t base = memory_stats().current_bytes;
    call();
    const size_t peak = memory_stats().peak_bytes - base;
    const double sec = median_seconds(call, repeats);
    std::printf("{\"name\": \"%s\", \"seconds\": %.6e, \"flops\": %.6e, \"peak_bytes\": %zu, "
                "\"threads\": %d}\n",
                c.name.c_str(), sec, c.flops, peak, get_num_threads());
    std::fflush(stdout);
  }
  return 0;
}
