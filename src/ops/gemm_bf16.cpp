// bf16 GEMM on oneDNN's matmul primitive (f32 accumulation and output), and the per-thread
// compute settings that linear() and the other ops read. oneDNN keeps its own primitive cache, so
// re-creating the primitive for a seen shape costs about 2 us. On a CPU where oneDNN has no bf16
// matmul (it needs AVX-512; seen on an AVX2-only AMD EPYC), the same product runs as an f32 GEMM on
// the widened operands: bf16 -> f32 is exact, so the result is still "bf16-rounded operands, f32
// accumulation", only without the speed.
#include <oneapi/dnnl/dnnl.hpp>

#include <atomic>
#include <vector>

#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"

namespace metalm::ops {
namespace {

thread_local ComputeMode t_compute_mode;

}  // namespace

ComputeMode compute_mode() { return t_compute_mode; }
ComputeGuard::ComputeGuard(const ComputeMode& mode) : saved_(t_compute_mode) {
  t_compute_mode = mode;
}
ComputeGuard::~ComputeGuard() { t_compute_mode = saved_; }

const char* matmul_precision_name(MatmulPrecision precision) {
  return precision == MatmulPrecision::bf16 ? "bf16" : "f32";
}

MatmulPrecision parse_matmul_precision(const std::string& text) {
  if (text == "f32") return MatmulPrecision::f32;
  if (text == "bf16") return MatmulPrecision::bf16;
  throw ValueError("[matmul_precision] expected f32 or bf16, got '" + text + "'");
}

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The oneDNN eltwise post-op of an activation.
void append_activation(dnnl::post_ops& ops, Activation activation) {
  using alg = dnnl::algorithm;
  switch (activation) {
    case Activation::relu: ops.append_eltwise(1.f, alg::eltwise_relu, 0.f, 0.f); break;
    case Activation::gelu: ops.append_eltwise(1.f, alg::eltwise_gelu_erf, 0.f, 0.f); break;
    case Activation::gelu_tanh:
      ops.append_eltwise(1.f, alg::eltwise_gelu_tanh, 0.f, 0.f);
      break;
    case Activation::silu: ops.append_eltwise(1.f, alg::eltwise_swish, 1.f, 0.f); break;
    case Activation::quick_gelu:  // x sigmoid(1.702 x)
      ops.append_eltwise(1.f, alg::eltwise_swish, 1.702f, 0.f);
      break;
    case Activation::none: break;
  }
}

std::atomic<bool> g_force_emulated{false};

}  // namespace

void set_bf16_matmul_emulated(bool emulated) { g_force_emulated = emulated; }

// Asked once: can oneDNN build a bf16 matmul here?
bool native_bf16_matmul() {
  if (g_force_emulated) return false;
  static const bool has = [] {
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc md({1, 1}, dt::bf16, dnnl::memory::dims{1, 1});
    const dnnl::memory::desc out({1, 1}, dt::f32, dnnl::memory::dims{1, 1});
    try {
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(md, md, out), cpu_engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return has;
}

namespace {

// The stored rows x cols bf16 matrix (row stride ld) widened to a dense f32 one.
std::vector<float> widen(const bf16* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[i * cols + j] = bf16_to_f32(x[i * ld + j]);
  return out;
}

// run_gemm_bf16 without a bf16 matmul: f32 sgemm on the widened operands, then C, bias and the
// activation in oneDNN's post-op order (sum, bias, eltwise).
void emulated_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
                        int64_t lda, const bf16* b, int64_t ldb, bool accumulate, void* c,
                        bool c_is_bf16, int64_t ldc, const float* bias, Activation activation) {
  const std::vector<float> af = trans_a ? widen(a, k, m, lda) : widen(a, m, k, lda);
  const std::vector<float> bf = trans_b ? widen(b, n, k, ldb) : widen(b, k, n, ldb);
  Tensor t = Tensor::empty({m, n}, DType::f32);
  float* tp = t.data<float>();
  sgemm(trans_a, trans_b, m, n, k, 1.f, af.data(), trans_a ? m : k, bf.data(), trans_b ? k : n, 0.f,
        tp, n);
  float* cf = static_cast<float*>(c);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      tp[i * n + j] += (accumulate ? cf[i * ldc + j] : 0.f) + (bias ? bias[j] : 0.f);
  if (activation != Activation::none) t = ops::activation(t, activation);
  tp = t.data<float>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (c_is_bf16)
        static_cast<bf16*>(c)[i * ldc + j] = f32_to_bf16(tp[i * n + j]);
      else
        cf[i * ldc + j] = tp[i * n + j];
    }
}

// Both gemm_bf16 forms: C (f32 or bf16, row stride ldc) = op(A) op(B) [+ C] [+ bias] [act].
void run_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
                   int64_t lda, const bf16* b, int64_t ldb, bool accumulate, void* c,
                   dnnl::memory::data_type c_type, int64_t ldc, const float* bias,
                   Activation activation) {
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  if (!native_bf16_matmul()) {
    emulated_gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c,
                       c_type == dt::bf16, ldc, bias, activation);
    return;
  }
  // Logical A [m, k] and B [k, n]; a transposed operand is the same buffer with swapped strides.
  dnnl::memory::desc a_md({m, k}, dt::bf16, trans_a ? dims{1, lda} : dims{lda, 1});
  dnnl::memory::desc b_md({k, n}, dt::bf16, trans_b ? dims{1, ldb} : dims{ldb, 1});
  dnnl::memory::desc c_md({m, n}, c_type, dims{ldc, 1});
  dnnl::memory::desc bias_md({1, n}, dt::f32, dims{n, 1});
  dnnl::primitive_attr attr;
  dnnl::post_ops ops;
  if (accumulate) ops.append_sum(1.f);
  append_activation(ops, activation);
  attr.set_post_ops(ops);
  dnnl::engine& engine = cpu_engine();
  try {
    dnnl::matmul::primitive_desc pd =
        bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, bias_md, c_md), attr,
                                            engine)
             : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
    dnnl::matmul prim(pd);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(a_md, engine, const_cast<bf16*>(a))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(b_md, engine, const_cast<bf16*>(b))},
        {DNNL_ARG_DST, dnnl::memory(c_md, engine, c)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, engine, const_cast<float*>(bias)));
    dnnl::stream stream(engine);
    prim.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw Error(std::string("[gemm_bf16] oneDNN failed (") + e.what() + ") for M=" +
                std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k));
  }
}

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc,
               const float* bias, Activation activation) {
  MLM_CHECK(beta == 0.f || beta == 1.f, ValueError, "[gemm_bf16] beta must be 0 or 1, got ",
            beta);
  MLM_CHECK(k > 0 || activation == Activation::none, ValueError,
            "[gemm_bf16] an activation needs K > 0");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta C + bias
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] = (beta == 0.f ? 0.f : c[i * ldc + j]) + (bias ? bias[j] : 0.f);
    return;
  }
  run_gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta == 1.f, c,
                dnnl::memory::data_type::f32, ldc, bias, activation);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, bf16* c, int64_t ldc, const float* bias,
               Activation activation) {
  MLM_CHECK(k > 0, ValueError, "[gemm_bf16] a bf16 output needs K > 0");
  if (m == 0 || n == 0) return;
  run_gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, false, c,
                dnnl::memory::data_type::bf16, ldc, bias, activation);
}

}  // namespace metalm::ops
