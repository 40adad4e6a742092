// Timing of the row-wise op families (softmax.cpp, norm.cpp, loss.cpp) against PyTorch: forward
// and forward+backward per call at [8, 256, 384] and [8, 256, 8192] (cross-entropy: logits
// [2048, V]). With --torch it runs the same cases in /usr/bin/python3 (Debian's torch, in the
// tuned setting of bench/run: OPENBLAS_* unset, OMP_WAIT_POLICY=PASSIVE, same thread count) and
// prints one JSON line per case: {"name", "unit": "ms", "metalm", "baseline", "ratio"} with
// ratio = baseline / metalm (above 1: metalm is faster). Times are medians. The PyTorch rms_norm
// is written out (torch 1.13 has no fused one); gelu (elementwise.cpp) is here for the issue's
// table. Usage: metalm_bench_norm_softmax_loss [--torch] [--filter SUBSTRING] [--repeats N]
// [--threads N]
//        [--cpu-time]   (process CPU time instead of wall time: with --threads 1, a fairer
//                        comparison on a machine other jobs are using)

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/core/random.h"
#include "metalm/core/threads.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

struct Case {
  std::string name;
  std::function<std::function<void()>()> setup;  // builds inputs, returns the timed call
};

bool g_cpu_time = false;

double now_seconds() {
  if (!g_cpu_time)
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median_seconds(const std::function<void()>& call, int repeats) {
  call();  // warm up (allocator cache, page faults)
  call();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const double a = now_seconds();
    call();
    t.push_back(now_seconds() - a);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor randn(const Shape& s, uint64_t seed, bool grad) {
  Generator g(seed);
  Tensor t = g.normal(s, 0, 1);
  if (grad) t.set_requires_grad();
  return t;
}

// Forward only, no tape.
std::function<void()> fwd(std::function<Tensor()> f) {
  return [f] {
    NoGradGuard ng;
    Tensor out = f();
  };
}

// Forward + backward with a fixed random upstream gradient; leaf gradients dropped every call.
std::function<void()> fwd_bwd(std::vector<Tensor> leaves, std::function<Tensor()> f,
                              Tensor grad_out) {
  return [leaves, f, grad_out]() mutable {
    for (auto& l : leaves) l.zero_grad();
    Tensor out = f();
    out.backward(grad_out);
  };
}

Tensor targets(int64_t n, int64_t v, int64_t ignore_every) {
  Generator g(13);
  Tensor t = Tensor::empty({n}, DType::i64);
  for (int64_t i = 0; i < n; ++i)
    t.data<int64_t>()[i] = ignore_every > 0 && i % ignore_every == 0 ? -100 : g.randint(0, v);
  return t;
}

std::vector<Case> make_cases() {
  std::vector<Case> cases;
  for (int64_t c : {384, 8192}) {
    const Shape s{8, 256, c};
    const std::string sh = "8x256x" + std::to_string(c);
    cases.push_back({"layer_norm_fwd_" + sh, [=] {
                       Tensor x = randn(s, 1, false), w = randn({c}, 2, false),
                              b = randn({c}, 3, false);
                       return fwd([=] { return ops::layer_norm(x, w, b); });
                     }});
    cases.push_back({"layer_norm_fwd_bwd_" + sh, [=] {
                       Tensor x = randn(s, 1, true), w = randn({c}, 2, true),
                              b = randn({c}, 3, true);
                       return fwd_bwd(
                           {x, w, b}, [=] { return ops::layer_norm(x, w, b); }, randn(s, 4, false));
                     }});
    cases.push_back({"rms_norm_fwd_bwd_" + sh, [=] {
                       Tensor x = randn(s, 1, true), w = randn({c}, 2, true);
                       return fwd_bwd(
                           {x, w}, [=] { return ops::rms_norm(x, w); }, randn(s, 4, false));
                     }});
    cases.push_back({"l2_normalize_fwd_bwd_" + sh, [=] {
                       Tensor x = randn(s, 1, true);
                       return fwd_bwd(
                           {x}, [=] { return ops::l2_normalize(x); }, randn(s, 4, false));
                     }});
    cases.push_back({"softmax_fwd_" + sh, [=] {
                       Tensor x = randn(s, 1, false);
                       return fwd([=] { return ops::softmax(x); });
                     }});
    cases.push_back({"softmax_fwd_bwd_" + sh, [=] {
                       Tensor x = randn(s, 1, true);
                       return fwd_bwd(
                           {x}, [=] { return ops::softmax(x); }, randn(s, 4, false));
                     }});
    cases.push_back({"log_softmax_fwd_bwd_" + sh, [=] {
                       Tensor x = randn(s, 1, true);
                       return fwd_bwd(
                           {x}, [=] { return ops::log_softmax(x); }, randn(s, 4, false));
                     }});
    cases.push_back({"gelu_fwd_bwd_" + sh, [=] {  // elementwise.cpp, for the issue's table
                       Tensor x = randn(s, 1, true);
                       return fwd_bwd(
                           {x}, [=] { return ops::gelu(x); }, randn(s, 4, false));
                     }});
    // Cross-entropy on logits [2048, c]: every 10th token ignored, mean over the rest.
    const std::string lsh = "2048x" + std::to_string(c);
    cases.push_back({"cross_entropy_fwd_" + lsh, [=] {
                       Tensor x = randn({2048, c}, 5, false), t = targets(2048, c, 10);
                       return fwd([=] { return ops::cross_entropy(x, t); });
                     }});
    cases.push_back({"cross_entropy_fwd_bwd_" + lsh, [=] {
                       Tensor x = randn({2048, c}, 5, true), t = targets(2048, c, 10);
                       return fwd_bwd(
                           {x}, [=] { return ops::cross_entropy(x, t); }, Tensor());
                     }});
    cases.push_back({"cross_entropy_smooth_fwd_bwd_" + lsh, [=] {
                       Tensor x = randn({2048, c}, 5, true), t = targets(2048, c, 10);
                       ops::CrossEntropyOptions opt;
                       opt.label_smoothing = 0.1;
                       return fwd_bwd(
                           {x}, [=] { return ops::cross_entropy(x, t, opt); }, Tensor());
                     }});
  }
  return cases;
}

// The PyTorch side: same case names, prints "name seconds" lines.
const char* kTorchScript = R"PY(
import sys, time, torch, torch.nn.functional as F
threads, repeats, flt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
torch.set_num_threads(threads)
torch.manual_seed(0)

def median(call):
    call(); call()
    ts = []
    for _ in range(repeats):
        a = clock(); call(); ts.append(clock() - a)
    ts.sort()
    return ts[len(ts) // 2]

def fwd(f):
    def call():
        with torch.no_grad():
            f()
    return call

def fwd_bwd(leaves, f, g):
    def call():
        for t in leaves:
            t.grad = None
        f().backward(g)
    return call

def targets(n, v):
    t = torch.randint(0, v, (n,))
    t[::10] = -100
    return t

def cases():
    for c in (384, 8192):
        s, sh, lsh = (8, 256, c), f"8x256x{c}", f"2048x{c}"
        x = lambda g: torch.randn(*s, requires_grad=g)
        p = lambda: torch.randn(c, requires_grad=True)
        def ln_f(c=c):
            a, w, b = x(False), p().detach(), p().detach()
            return fwd(lambda: F.layer_norm(a, (c,), w, b))
        def ln(c=c):
            a, w, b = x(True), p(), p()
            return fwd_bwd([a, w, b], lambda: F.layer_norm(a, (c,), w, b), torch.randn(*s))
        def rms(c=c):
            a, w = x(True), p()
            f = lambda: a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-6) * w
            return fwd_bwd([a, w], f, torch.randn(*s))
        def l2():
            a = x(True)
            return fwd_bwd([a], lambda: F.normalize(a, dim=-1), torch.randn(*s))
        def sm_f():
            a = x(False)
            return fwd(lambda: torch.softmax(a, -1))
        def sm():
            a = x(True)
            return fwd_bwd([a], lambda: torch.softmax(a, -1), torch.randn(*s))
        def lsm():
            a = x(True)
            return fwd_bwd([a], lambda: torch.log_softmax(a, -1), torch.randn(*s))
        def gelu():
            a = x(True)
            return fwd_bwd([a], lambda: F.gelu(a), torch.randn(*s))
        def ce_f(c=c):
            a, t = torch.randn(2048, c), targets(2048, c)
            return fwd(lambda: F.cross_entropy(a, t))
        def ce(c=c, ls=0.0):
            a, t = torch.randn(2048, c, requires_grad=True), targets(2048, c)
            return fwd_bwd([a], lambda: F.cross_entropy(a, t, label_smoothing=ls), None)
        yield "layer_norm_fwd_" + sh, ln_f
        yield "layer_norm_fwd_bwd_" + sh, ln
        yield "rms_norm_fwd_bwd_" + sh, rms
        yield "l2_normalize_fwd_bwd_" + sh, l2
        yield "softmax_fwd_" + sh, sm_f
        yield "softmax_fwd_bwd_" + sh, sm
        yield "log_softmax_fwd_bwd_" + sh, lsm
        yield "gelu_fwd_bwd_" + sh, gelu
        yield "cross_entropy_fwd_" + lsh, ce_f
        yield "cross_entropy_fwd_bwd_" + lsh, ce
        yield "cross_entropy_smooth_fwd_bwd_" + lsh, lambda c=c: ce(c, 0.1)

for name, setup in cases():
    if flt in name:
        print(name, median(setup()), flush=True)
)PY";

// Runs the PyTorch side; returns name -> median seconds.
std::map<std::string, double> run_torch(int threads, int repeats, const std::string& filter) {
  const std::string script =
      "/tmp/metalm_bench_norm_softmax_loss_" + std::to_string(getpid()) + ".py";
  FILE* f = std::fopen(script.c_str(), "w");
  if (f == nullptr) return {};
  std::fputs(kTorchScript, f);
  std::fclose(f);
  const std::string cmd =
      "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE "
      "OMP_NUM_THREADS=" +
      std::to_string(threads) + " /usr/bin/python3 " + script + " " + std::to_string(threads) +
      " " + std::to_string(repeats) + " '" + filter + "' " + (g_cpu_time ? "cpu" : "wall");
  std::map<std::string, double> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char name[256];
  double sec = 0;
  while (std::fscanf(p, "%255s %lf", name, &sec) == 2) out[name] = sec;
  pclose(p);
  std::remove(script.c_str());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string filter;
  int repeats = 20, threads = 2;
  bool torch = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) {
      filter = argv[++i];
    } else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--torch")) {
      torch = true;
    } else if (!std::strcmp(argv[i], "--cpu-time")) {
      g_cpu_time = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--torch] [--filter SUBSTRING] [--repeats N] [--threads N] "
                   "[--cpu-time]\n"
                   "example: %s --torch --filter 8192\n",
                   argv[0], argv[0]);
      return 2;
    }
  }
  set_num_threads(threads);
  std::map<std::string, double> ours;
  std::vector<std::string> order;
  for (const Case& c : make_cases()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    ours[c.name] = median_seconds(c.setup(), repeats);
    order.push_back(c.name);
    if (!torch)
      std::printf("{\"name\": \"%s\", \"unit\": \"ms\", \"metalm\": %.4f}\n", c.name.c_str(),
                  ours[c.name] * 1e3);
    std::fflush(stdout);
  }
  if (!torch) return 0;
  std::map<std::string, double> theirs = run_torch(threads, repeats, filter);
  for (const std::string& name : order) {
    auto it = theirs.find(name);
    if (it == theirs.end()) {
      std::printf("{\"name\": \"%s\", \"unit\": \"ms\", \"metalm\": %.4f, \"baseline\": null}\n",
                  name.c_str(), ours[name] * 1e3);
      continue;
    }
    std::printf(
        "{\"name\": \"%s\", \"unit\": \"ms\", \"metalm\": %.4f, \"baseline\": %.4f, "
        "\"ratio\": %.2f}\n",
        name.c_str(), ours[name] * 1e3, it->second * 1e3, it->second / ours[name]);
  }
  return 0;
}
