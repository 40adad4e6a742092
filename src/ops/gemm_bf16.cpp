// bf16 GEMM on oneDNN's matmul primitive (f32 accumulation and output), and the per-thread
// compute settings that linear() and the other ops read. oneDNN keeps its own primitive cache, so re-creating
// the primitive for a seen shape costs about 2 us.
#include <oneapi/dnnl/dnnl.hpp>

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

// Both gemm_bf16 forms: C (f32 or bf16, row stride ldc) = op(A) op(B) [+ C] [+ bias] [act].
void run_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
                   int64_t lda, const bf16* b, int64_t ldb, bool accumulate, void* c,
                   dnnl::memory::data_type c_type, int64_t ldc, const float* bias,
                   Activation activation) {
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
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
    // Primitive creation fails where oneDNN has no bf16 matmul for this CPU (it needs at least
    // AVX-512; AVX512-BF16 makes it fast): say what to do instead.
    throw Error(std::string("[gemm_bf16] oneDNN failed (") + e.what() + ") for M=" +
                std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) +
                "; bf16 matmul precision needs a CPU with AVX-512, use f32 otherwise");
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
