// RMSNorm, SwiGLU and softmax, forward and backward, f32 with f64 row reductions; rows are
// parallelised with OpenMP.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/checks_norm.h"
#include "kernels/cpu/cpu_ops.h"

namespace grpo {

namespace {

// Loops smaller than this many elements stay on one thread.
constexpr int64_t kParallelElems = int64_t(1) << 14;

constexpr DType kF32[] = {DType::f32};

float sigmoid(float g) { return 1.0f / (1.0f + std::exp(-g)); }

}  // namespace

// ---- RMSNorm ------------------------------------------------------------------------------

void CpuOps::rmsnorm(Tensor out, Tensor rstd, Tensor x, Tensor w, float eps) {
  GRPO_CPU_RECORD(rmsnorm(out, rstd, x, w, eps));
  const int64_t C = checks::rmsnorm(out, rstd, x, w, eps, Device::cpu, kF32);
  const int64_t rows = x.numel() / C;
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  float* py = out.ptr<float>();
  float* pr = rstd.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * C > kParallelElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = px + r * C;
    float* yr = py + r * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += double(xr[c]) * double(xr[c]);
    const float rs = float(1.0 / std::sqrt(ss / double(C) + double(eps)));
    pr[r] = rs;
    // Hugging Face order: (x * rstd) * w.
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] * rs) * pw[c];
  }
}

// y = x r w with r = (mean(x^2) + eps)^(-1/2):
//   dx_j = r w_j dy_j - r^3 x_j / C * sum_k w_k dy_k x_k,   dw_j += sum_rows dy_j x_j r.
void CpuOps::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor rstd) {
  GRPO_CPU_RECORD(rmsnorm_backward(dx, dw, dout, x, w, rstd));
  const int64_t C = checks::rmsnorm_backward(dx, dw, dout, x, w, rstd, Device::cpu, kF32);
  const int64_t rows = x.numel() / C;
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* pdy = dout.ptr<float>();
  const float* pr = rstd.ptr<float>();
  float* pdx = dx.ptr<float>();
  float* pdw = dw.ptr<float>();

  // NOTES: dw is reduced over rows without atomics: each thread sums its (static, hence
  // deterministic) share of rows into its own f64 row of `partial`, then the rows are added
  // in thread order. dx may alias dout: each row's dout is fully read (dot product and dw)
  // before dx of the same element is written.
  const bool parallel = rows * C > kParallelElems;
  const int n_threads = parallel ? std::max(1, omp_get_max_threads()) : 1;
  std::vector<double> partial(size_t(n_threads) * size_t(C), 0.0);
#pragma omp parallel num_threads(n_threads) if (parallel)
  {
    double* acc = partial.data() + size_t(omp_get_thread_num()) * size_t(C);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = px + r * C;
      const float* dyr = pdy + r * C;
      float* dxr = pdx + r * C;
      const double rs = pr[r];
      double dot = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        dot += double(dyr[c]) * double(pw[c]) * double(xr[c]);
        acc[c] += double(dyr[c]) * double(xr[c]) * rs;
      }
      const float k = float(rs * rs * rs * dot / double(C));
      const float rsf = float(rs);
      for (int64_t c = 0; c < C; ++c) dxr[c] = rsf * (dyr[c] * pw[c]) - k * xr[c];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (int t = 0; t < n_threads; ++t) s += partial[size_t(t) * size_t(C) + size_t(c)];
    pdw[c] += float(s);
  }
}

// ---- SwiGLU -------------------------------------------------------------------------------

void CpuOps::swiglu(Tensor out, Tensor gate, Tensor up) {
  GRPO_CPU_RECORD(swiglu(out, gate, up));
  checks::swiglu(out, gate, up, Device::cpu, kF32);
  const float* pg = gate.ptr<float>();
  const float* pu = up.ptr<float>();
  float* py = out.ptr<float>();
  const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) {
    const float g = pg[i];
    py[i] = (g * sigmoid(g)) * pu[i];
  }
}

// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g).
void CpuOps::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) {
  GRPO_CPU_RECORD(swiglu_backward(dgate, dup, dout, gate, up));
  checks::swiglu_backward(dgate, dup, dout, gate, up, Device::cpu, kF32);
  const float* pg = gate.ptr<float>();
  const float* pu = up.ptr<float>();
  const float* pdy = dout.ptr<float>();
  float* pdg = dgate.ptr<float>();
  float* pdu = dup.ptr<float>();
  const int64_t n = gate.numel();
#pragma omp parallel for schedule(static) if (n > kParallelElems)
  for (int64_t i = 0; i < n; ++i) {
    // All inputs read before either output is written: outputs may alias inputs.
    const float g = pg[i], u = pu[i], dy = pdy[i];
    const float s = sigmoid(g);
    pdu[i] = dy * g * s;
    pdg[i] = dy * u * s * (1.0f + g * (1.0f - s));
  }
}

// ---- softmax ------------------------------------------------------------------------------

void CpuOps::softmax(Tensor out, Tensor x) {
  GRPO_CPU_RECORD(softmax(out, x));
  checks::softmax(out, x, Device::cpu, kF32);
  const int64_t C = x.size(-1);
  if (x.numel() == 0) return;
  const int64_t rows = x.numel() / C;
  const float* px = x.ptr<float>();
  float* py = out.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * C > kParallelElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = px + r * C;
    float* yr = py + r * C;  // may equal xr: each element is read before it is written
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, xr[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      const float e = std::exp(xr[c] - mx);
      yr[c] = e;
      sum += e;
    }
    const float inv = float(1.0 / sum);
    for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
  }
}

// dx = out * (dout - sum(dout * out)) per row.
void CpuOps::softmax_backward(Tensor dx, Tensor dout, Tensor out) {
  GRPO_CPU_RECORD(softmax_backward(dx, dout, out));
  checks::softmax_backward(dx, dout, out, Device::cpu, kF32);
  const int64_t C = out.size(-1);
  if (out.numel() == 0) return;
  const int64_t rows = out.numel() / C;
  const float* py = out.ptr<float>();
  const float* pdy = dout.ptr<float>();
  float* pdx = dx.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * C > kParallelElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = py + r * C;
    const float* dyr = pdy + r * C;
    float* dxr = pdx + r * C;  // may equal dyr: the row's dot product is taken first
    double dot = 0.0;
    for (int64_t c = 0; c < C; ++c) dot += double(dyr[c]) * double(yr[c]);
    const float d = float(dot);
    for (int64_t c = 0; c < C; ++c) dxr[c] = yr[c] * (dyr[c] - d);
  }
}

}  // namespace grpo
