// softmax, log_softmax, layer_norm, rms_norm, l2_normalize and cross_entropy: the fast kernels
// against the composite references (values and gradients, f32), finite-difference gradient checks
// of both paths (f64) for every option combination, hand-computed edge cases, thread-count
// determinism, and argument errors. One table of cases drives the first two.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/threads.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::randn;
using metalm::test::randu;

namespace {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Case {
  std::string name;
  OpFn f;
  std::vector<Tensor> inputs;  // float inputs are differentiated; undefined ones are passed as is
};

// t itself as a leaf (test::leaf draws a random one).
Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

// Targets in [0, v) with every `ignore_every`-th row set to ignore_index (0: none ignored).
Tensor make_targets(int64_t n, int64_t v, uint64_t seed, int64_t ignore_every, int64_t ignore) {
  std::vector<int64_t> t(n);
  Generator g(seed);
  for (int64_t i = 0; i < n; ++i)
    t[i] = ignore_every > 0 && i % ignore_every == 1 ? ignore : g.randint(0, v);
  return Tensor::from_vector<int64_t>({n}, t);
}

const char* reduction_name(ops::Reduction r) {
  return r == ops::Reduction::mean ? "mean" : r == ops::Reduction::sum ? "sum" : "none";
}

// The table. small: shapes for finite differences; otherwise shapes that exercise the vector
// loops and their remainders.
std::vector<Case> make_cases(DType dt, bool small) {
  std::vector<Case> cases;
  const std::vector<Shape> shapes =
      small ? std::vector<Shape>{{3, 5}, {2, 2, 17}}
            : std::vector<Shape>{{7, 33}, {2, 5, 384}, {3, 1000}, {4, 1}};
  uint64_t seed = 100;
  for (const Shape& s : shapes) {
    const int64_t c = s.back();
    const std::string sn = shape_str(s);
    auto x = [&] { return randn(s, ++seed, dt); };
    auto p = [&] { return randn({c}, ++seed, dt); };
    cases.push_back({"softmax " + sn,
                     [](const std::vector<Tensor>& in) { return ops::softmax(in[0]); },
                     {x()}});
    cases.push_back(
        {"log_softmax " + sn,
         [](const std::vector<Tensor>& in) { return ops::log_softmax(in[0], in[0].dim() - 1); },
         {x()}});
    for (int affine = 0; affine < 4; ++affine) {
      Tensor w = affine & 1 ? p() : Tensor(), b = affine & 2 ? p() : Tensor();
      cases.push_back(
          {"layer_norm " + sn + " affine " + std::to_string(affine),
           [](const std::vector<Tensor>& in) { return ops::layer_norm(in[0], in[1], in[2], 1e-5); },
           {x(), w, b}});
    }
    cases.push_back(
        {"rms_norm " + sn,
         [](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], in[1], 1e-6); },
         {x(), p()}});
    cases.push_back({"rms_norm no weight " + sn,
                     [](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], Tensor()); },
                     {x()}});
    cases.push_back({"l2_normalize " + sn,
                     [](const std::vector<Tensor>& in) { return ops::l2_normalize(in[0]); },
                     {x()}});
  }
  // l2_normalize with rows below eps (clamped: y = x / eps, dx = g / eps) and above it.
  {
    Tensor x = randn({4, 6}, 7, dt);
    std::vector<double> v = x.to_vector<double>();
    for (int i = 0; i < 12; ++i) v[i] *= 0.01;  // rows 0, 1: norm ~0.02 < eps = 0.5
    Tensor xs = Tensor::from_vector<double>({4, 6}, v).to(dt);
    cases.push_back({"l2_normalize clamped rows",
                     [](const std::vector<Tensor>& in) { return ops::l2_normalize(in[0], 0.5); },
                     {xs}});
  }
  // cross_entropy: every reduction x ignore_index x loss mask x label smoothing.
  const int64_t n = small ? 6 : 37, v = small ? 5 : 1003;
  for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::none})
    for (int ignore = 0; ignore < 2; ++ignore)
      for (int masked = 0; masked < 3; ++masked)  // none, f32 mask, mask of the logits dtype
        for (double eps : {0.0, 0.1}) {
          ops::CrossEntropyOptions opt;
          opt.reduction = red;
          opt.label_smoothing = eps;
          opt.ignore_index = ignore ? 3 : -100;  // a valid class id, ignored
          Tensor targets = make_targets(n, v, ++seed, ignore ? 3 : 0, opt.ignore_index);
          if (masked) {
            Tensor m = randu({n}, ++seed, 0.0, 2.0, masked == 1 ? DType::f32 : dt);
            std::vector<double> mv = m.to_vector<double>();
            mv[0] = 0;  // a masked-out token
            opt.loss_mask = Tensor::from_vector<double>({n}, mv).to(m.dtype());
          }
          std::string name =
              std::string("cross_entropy ") + reduction_name(red) + (ignore ? " ignore" : "") +
              (masked ? (masked == 1 ? " mask-f32" : " mask") : "") + (eps > 0 ? " smooth" : "");
          cases.push_back({name,
                           [targets, opt](const std::vector<Tensor>& in) {
                             return ops::cross_entropy(in[0], targets, opt);
                           },
                           {randn({n, v}, ++seed, dt) * 3.0}});
        }
  return cases;
}

struct Result {
  Tensor out;
  std::vector<Tensor> grads;
};

// Runs a case on fresh leaves, backpropagates a seeded random cotangent, returns all gradients.
Result run_case(const Case& c, bool reference) {
  ops::ReferenceGuard mode(reference);
  std::vector<Tensor> in;
  for (const Tensor& t : c.inputs) in.push_back(t.defined() ? leaf(t.clone()) : Tensor());
  Result r;
  r.out = c.f(in);
  r.out.backward(randn(r.out.shape(), 4242, r.out.dtype()));
  for (const Tensor& t : in) r.grads.push_back(t.defined() ? t.grad() : Tensor());
  return r;
}

}  // namespace

TEST(NormSoftmaxLoss, FastMatchesReferenceF32) {
  for (const Case& c : make_cases(DType::f32, false)) {
    SCOPED_TRACE(c.name);
    Result fast = run_case(c, false), ref = run_case(c, true);
    EXPECT_TRUE(all_close(fast.out, ref.out, 1e-5, 1e-6));
    for (size_t i = 0; i < fast.grads.size(); ++i) {
      SCOPED_TRACE("gradient of input " + std::to_string(i));
      ASSERT_EQ(fast.grads[i].defined(), ref.grads[i].defined());
      if (fast.grads[i].defined()) {
        EXPECT_TRUE(all_close(fast.grads[i], ref.grads[i], 1e-5, 1e-5));
      }
    }
  }
}

TEST(NormSoftmaxLoss, FastMatchesReferenceF64) {
  for (const Case& c : make_cases(DType::f64, false)) {
    SCOPED_TRACE(c.name);
    Result fast = run_case(c, false), ref = run_case(c, true);
    EXPECT_TRUE(all_close(fast.out, ref.out, 1e-12, 1e-13));
    for (size_t i = 0; i < fast.grads.size(); ++i) {
      if (fast.grads[i].defined()) {
        EXPECT_TRUE(all_close(fast.grads[i], ref.grads[i], 1e-11, 1e-12));
      }
    }
  }
}

TEST(NormSoftmaxLoss, GradcheckF64) {
  for (bool reference : {false, true}) {
    for (const Case& c : make_cases(DType::f64, true)) {
      SCOPED_TRACE(c.name + (reference ? " (reference)" : " (fast)"));
      ops::ReferenceGuard mode(reference);
      std::vector<Tensor> in;
      for (const Tensor& t : c.inputs) in.push_back(t.defined() ? leaf(t.clone()) : Tensor());
      EXPECT_TRUE(gradcheck(c.f, in));
    }
  }
}

// ---------------------------------------------------------------- hand-computed values

TEST(NormSoftmaxLoss, KnownValues) {
  for (bool reference : {false, true}) {
    SCOPED_TRACE(reference ? "reference" : "fast");
    ops::ReferenceGuard mode(reference);
    Tensor x = Tensor::from_vector<double>({1, 3}, {1.0, 2.0, 3.0});
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    EXPECT_TRUE(all_close(ops::softmax(x),
                          Tensor::from_vector<double>(
                              {1, 3}, {std::exp(1.0) / z, std::exp(2.0) / z, std::exp(3.0) / z}),
                          1e-14, 0));
    EXPECT_TRUE(all_close(
        ops::log_softmax(x),
        Tensor::from_vector<double>({1, 3}, {1 - std::log(z), 2 - std::log(z), 3 - std::log(z)}),
        1e-14, 0));
    // mean 2, biased variance 2/3
    const double rs = 1 / std::sqrt(2.0 / 3.0 + 1e-5);
    EXPECT_TRUE(all_close(ops::layer_norm(x, Tensor(), Tensor(), 1e-5),
                          Tensor::from_vector<double>({1, 3}, {-rs, 0, rs}), 1e-14, 1e-15));
    const double rr = 1 / std::sqrt(14.0 / 3.0 + 1e-6);
    EXPECT_TRUE(all_close(ops::rms_norm(x, Tensor::from_vector<double>({3}, {1, 2, 3})),
                          Tensor::from_vector<double>({1, 3}, {rr, 4 * rr, 9 * rr}), 1e-14, 0));
    const double n = std::sqrt(14.0);
    EXPECT_TRUE(all_close(ops::l2_normalize(x),
                          Tensor::from_vector<double>({1, 3}, {1 / n, 2 / n, 3 / n}), 1e-14, 0));
    // cross_entropy of uniform logits is log V; smoothing does not change it.
    Tensor logits = Tensor::zeros({2, 4}, DType::f64);
    Tensor t = Tensor::from_vector<int64_t>({2}, {1, 3});
    ops::CrossEntropyOptions opt;
    opt.label_smoothing = 0.3;
    EXPECT_NEAR(ops::cross_entropy(logits, t, opt).item<double>(), std::log(4.0), 1e-14);
    // row 0: logits [0, ln 3] target 1 -> -log(3/4); row 1 target 0 -> -log(1/4); weights 1, 3
    Tensor l2 = Tensor::from_vector<double>({2, 2}, {0, std::log(3.0), 0, std::log(3.0)});
    ops::CrossEntropyOptions mopt;
    mopt.loss_mask = Tensor::from_vector<float>({2}, {1, 3});
    const double expect = (-std::log(0.75) - 3 * std::log(0.25)) / 4;
    EXPECT_NEAR(
        ops::cross_entropy(l2, Tensor::from_vector<int64_t>({2}, {1, 0}), mopt).item<double>(),
        expect, 1e-14);
    mopt.reduction = ops::Reduction::none;
    EXPECT_TRUE(all_close(ops::cross_entropy(l2, Tensor::from_vector<int64_t>({2}, {1, 0}), mopt),
                          Tensor::from_vector<double>({2}, {-std::log(0.75), -3 * std::log(0.25)}),
                          1e-14, 0));
  }
}

// ---------------------------------------------------------------- edge cases

TEST(NormSoftmaxLoss, SoftmaxWithInfiniteLogits) {
  const double inf = std::numeric_limits<double>::infinity();
  for (bool reference : {false, true}) {
    SCOPED_TRACE(reference ? "reference" : "fast");
    ops::ReferenceGuard mode(reference);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x =
          leaf(Tensor::from_vector<double>({2, 3}, {-inf, 2.0, -inf, 0.5, -inf, 1.5}).to(dt));
      Tensor g = Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6}).to(dt);
      Tensor y = ops::softmax(x);
      const double e = 1 / (1 + std::exp(1.0));  // softmax([0.5, 1.5])[0]
      EXPECT_TRUE(all_close(y, Tensor::from_vector<double>({2, 3}, {0, 1, 0, e, 0, 1 - e}).to(dt),
                            1e-6, 1e-7));
      y.backward(g);
      // dx = y * (g - sum(g y)): zero where y = 0, and the lone survivor of row 0 gets 0 too.
      const double d = e * (4 - (4 * e + 6 * (1 - e)));
      EXPECT_TRUE(all_close(
          x.grad(), Tensor::from_vector<double>({2, 3}, {0, 0, 0, d, 0, -d}).to(dt), 1e-5, 1e-6));

      Tensor x2 = leaf(x.detach().clone());
      Tensor ly = ops::log_softmax(x2);
      EXPECT_TRUE(all_close(
          ly,
          Tensor::from_vector<double>({2, 3}, {-inf, 0, -inf, std::log(e), -inf, std::log(1 - e)})
              .to(dt),
          1e-6, 1e-7));
      ly.backward(g);
      // dx = g - exp(y) sum(g): g where p = 0.
      EXPECT_TRUE(all_close(
          x2.grad(),
          Tensor::from_vector<double>({2, 3}, {1, 2 - 6, 3, 4 - 15 * e, 5, 6 - 15 * (1 - e)})
              .to(dt),
          1e-5, 1e-6));
    }
  }
}

TEST(NormSoftmaxLoss, CrossEntropySingleClassAndAllIgnored) {
  for (bool reference : {false, true}) {
    SCOPED_TRACE(reference ? "reference" : "fast");
    ops::ReferenceGuard mode(reference);
    for (DType dt : {DType::f32, DType::f64}) {
      // V = 1: log p = 0, so the loss and its gradient vanish (with and without smoothing).
      Tensor x = leaf(randn({4, 1}, 1, dt));
      ops::CrossEntropyOptions opt;
      opt.label_smoothing = 0.2;
      Tensor loss = ops::cross_entropy(x, Tensor::zeros({4}, DType::i64), opt);
      EXPECT_EQ(loss.item<double>(), 0.0);
      loss.backward();
      EXPECT_TRUE(all_close(x.grad(), Tensor::zeros({4, 1}, dt), 0, 1e-7));

      // Every token ignored, or every weight 0: mean is 0 (not NaN) and the gradient is 0.
      for (int variant = 0; variant < 2; ++variant) {
        Tensor y = leaf(randn({3, 5}, 2, dt));
        ops::CrossEntropyOptions o;
        Tensor t = Tensor::full({3}, -100, DType::i64);
        if (variant == 1) {
          t = Tensor::from_vector<int64_t>({3}, {0, 4, 2});
          o.loss_mask = Tensor::zeros({3}, DType::f32);
        }
        for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::sum}) {
          o.reduction = red;
          y.zero_grad();
          Tensor l = ops::cross_entropy(y, t, o);
          EXPECT_EQ(l.item<double>(), 0.0);
          l.backward();
          EXPECT_TRUE(all_close(y.grad(), Tensor::zeros({3, 5}, dt), 0, 0));
        }
        o.reduction = ops::Reduction::none;
        EXPECT_TRUE(all_close(ops::cross_entropy(y, t, o), Tensor::zeros({3}, dt), 0, 0));
      }
    }
  }
}

TEST(NormSoftmaxLoss, NormEdgeCases) {
  for (bool reference : {false, true}) {
    SCOPED_TRACE(reference ? "reference" : "fast");
    ops::ReferenceGuard mode(reference);
    // C = 1: x - mean = 0, so layer_norm returns the bias and passes no gradient to x.
    Tensor x = leaf(randn({3, 1}, 3, DType::f64));
    Tensor w = leaf(Tensor::full({1}, 2.0, DType::f64)),
           b = leaf(Tensor::full({1}, 0.5, DType::f64));
    Tensor y = ops::layer_norm(x, w, b);
    EXPECT_TRUE(all_close(y, Tensor::full({3, 1}, 0.5, DType::f64), 0, 0));
    ops::sum(y).backward();
    EXPECT_TRUE(all_close(x.grad(), Tensor::zeros({3, 1}, DType::f64), 0, 1e-12));
    EXPECT_TRUE(all_close(b.grad(), Tensor::full({1}, 3.0, DType::f64), 0, 0));
  }
  // A zero row of l2_normalize stays zero with gradient g / eps (the reference's sqrt'(0) is
  // infinite, so only the fast path is checked).
  Tensor z = leaf(Tensor::zeros({2, 4}, DType::f64));
  Tensor y = ops::l2_normalize(z, 1e-3);
  EXPECT_TRUE(all_close(y, Tensor::zeros({2, 4}, DType::f64), 0, 0));
  y.backward(Tensor::ones({2, 4}, DType::f64));
  EXPECT_TRUE(all_close(z.grad(), Tensor::full({2, 4}, 1e3, DType::f64), 1e-12, 0));
  // Empty inputs give empty outputs.
  Tensor e = Tensor::zeros({0, 8});
  EXPECT_EQ(ops::softmax(e).shape(), (Shape{0, 8}));
  EXPECT_EQ(ops::layer_norm(e, Tensor(), Tensor()).shape(), (Shape{0, 8}));
}

TEST(NormSoftmaxLoss, NonContiguousInputs) {
  Tensor base = randn({6, 4}, 9);
  Tensor xt = base.transpose(0, 1);  // [4, 6], not contiguous
  ASSERT_FALSE(xt.is_contiguous());
  Tensor xc = xt.contiguous();
  EXPECT_TRUE(all_close(ops::softmax(xt), ops::softmax(xc), 0, 0));
  EXPECT_TRUE(all_close(ops::log_softmax(xt), ops::log_softmax(xc), 0, 0));
  EXPECT_TRUE(all_close(ops::layer_norm(xt, Tensor(), Tensor()),
                        ops::layer_norm(xc, Tensor(), Tensor()), 0, 0));
  EXPECT_TRUE(all_close(ops::rms_norm(xt, Tensor()), ops::rms_norm(xc, Tensor()), 0, 0));
  EXPECT_TRUE(all_close(ops::l2_normalize(xt), ops::l2_normalize(xc), 0, 0));
  Tensor t = Tensor::from_vector<int64_t>({4}, {0, 5, 2, 1});
  EXPECT_TRUE(all_close(ops::cross_entropy(xt, t), ops::cross_entropy(xc, t), 0, 0));
}

// D7: the same inputs give bit-identical values and gradients for any thread count.
TEST(NormSoftmaxLoss, DeterministicAcrossThreadCounts) {
  test::ThreadCountGuard threads_guard;
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tensor x = leaf(randn({300, 384}, 11)), w = leaf(randn({384}, 12)), b = leaf(randn({384}, 13));
    Tensor g = randn({300, 384}, 14);
    ops::layer_norm(x, w, b).backward(g);
    Tensor r = leaf(randn({300, 384}, 15)), rw = leaf(randn({384}, 16));
    ops::rms_norm(r, rw).backward(g);
    Tensor logits = leaf(randn({300, 512}, 17));
    ops::CrossEntropyOptions opt;
    opt.label_smoothing = 0.1;
    Tensor loss = ops::cross_entropy(logits, make_targets(300, 512, 18, 7, -100), opt);
    loss.backward();
    std::vector<float> all;
    for (const Tensor& t : {x.grad(), w.grad(), b.grad(), r.grad(), rw.grad(), logits.grad(), loss})
      for (float v : t.to_vector<float>()) all.push_back(v);
    runs.push_back(all);
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_EQ(runs[0], runs[2]);
}

// ---------------------------------------------------------------- argument errors

namespace {
template <typename E, typename F>
void expect_error(F f, const std::string& prefix, const std::string& fragment = "") {
  try {
    f();
    ADD_FAILURE() << "expected an exception starting with " << prefix;
  } catch (const E& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}
}  // namespace

TEST(NormSoftmaxLoss, ArgumentErrors) {
  Tensor x = randn({4, 8}, 1);
  Tensor xi = Tensor::zeros({4, 8}, DType::i64);
  // softmax
  expect_error<ShapeError>([&] { ops::softmax(x, 0); }, "[softmax]", "last dim");
  expect_error<ShapeError>([&] { ops::log_softmax(x, 0); }, "[log_softmax]", "last dim");
  expect_error<DTypeError>([&] { ops::softmax(xi); }, "[softmax]");
  expect_error<DTypeError>([&] { ops::softmax(x.to(DType::bf16)); }, "[softmax]");
  expect_error<ShapeError>([&] { ops::softmax(Tensor::scalar(1.0)); }, "[softmax]");
  // norms
  expect_error<ShapeError>([&] { ops::layer_norm(x, randn({6}, 1), Tensor()); }, "[layer_norm]",
                           "expected last dim 6");
  expect_error<ShapeError>(
      [&] {
        ops::layer_norm(x, Tensor(), randn({2, 4}, 1));
      },
      "[layer_norm]", "1-D");
  expect_error<DTypeError>([&] { ops::layer_norm(x, randn({8}, 1, DType::f64), Tensor()); },
                           "[layer_norm]", "weight");
  expect_error<DTypeError>([&] { ops::layer_norm(xi, Tensor(), Tensor()); }, "[layer_norm]");
  expect_error<ValueError>([&] { ops::layer_norm(x, Tensor(), Tensor(), -1.0); }, "[layer_norm]",
                           "eps");
  expect_error<ShapeError>([&] { ops::rms_norm(x, randn({9}, 1)); }, "[rms_norm]");
  expect_error<DTypeError>([&] { ops::l2_normalize(xi); }, "[l2_normalize]");
  expect_error<ValueError>([&] { ops::l2_normalize(x, std::nan("")); }, "[l2_normalize]");
  // cross_entropy
  Tensor logits = randn({4, 5}, 2);
  Tensor t = Tensor::from_vector<int64_t>({4}, {0, 1, 2, 3});
  expect_error<ShapeError>(
      [&] {
        ops::cross_entropy(randn({2, 2, 5}, 1), t);
      },
      "[cross_entropy]", "[N, V]");
  expect_error<DTypeError>([&] { ops::cross_entropy(xi, t); }, "[cross_entropy]");
  expect_error<DTypeError>([&] { ops::cross_entropy(logits, t.to(DType::i32)); }, "[cross_entropy]",
                           "i64");
  expect_error<DTypeError>([&] { ops::cross_entropy(logits, x); }, "[cross_entropy]");
  expect_error<ShapeError>([&] { ops::cross_entropy(logits, Tensor::zeros({3}, DType::i64)); },
                           "[cross_entropy]", "expected [4]");
  expect_error<ShapeError>([&] { ops::cross_entropy(randn({4, 0}, 1), t); }, "[cross_entropy]");
  expect_error<ValueError>(
      [&] {
        ops::cross_entropy(logits, Tensor::from_vector<int64_t>({4}, {0, 1, 5, 3}));
      },
      "[cross_entropy]", "target 5 at row 2");
  expect_error<ValueError>(
      [&] {
        ops::cross_entropy(logits, Tensor::from_vector<int64_t>({4}, {0, -1, 2, 3}));
      },
      "[cross_entropy]", "row 1");
  ops::CrossEntropyOptions opt;
  opt.label_smoothing = 1.5;
  expect_error<ValueError>([&] { ops::cross_entropy(logits, t, opt); }, "[cross_entropy]",
                           "label_smoothing");
  opt = {};
  opt.loss_mask = Tensor::ones({5});
  expect_error<ShapeError>([&] { ops::cross_entropy(logits, t, opt); }, "[cross_entropy]",
                           "loss_mask");
  opt.loss_mask = Tensor::ones({4}, DType::i64);
  expect_error<DTypeError>([&] { ops::cross_entropy(logits, t, opt); }, "[cross_entropy]",
                           "loss_mask");
  opt.loss_mask = Tensor::ones({4}, DType::f64);  // f64 mask for f32 logits
  expect_error<DTypeError>([&] { ops::cross_entropy(logits, t, opt); }, "[cross_entropy]");
  // The reference path checks the same way.
  ops::ReferenceGuard mode(true);
  expect_error<ValueError>(
      [&] {
        ops::cross_entropy(logits, Tensor::from_vector<int64_t>({4}, {0, 1, 9, 3}));
      },
      "[cross_entropy]", "row 2");
  expect_error<ShapeError>([&] { ops::softmax(x, 0); }, "[softmax]");
}
