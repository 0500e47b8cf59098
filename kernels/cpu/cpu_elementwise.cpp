#include <cstring>

#include "kernels/checks_norm.h"
#include "kernels/cpu/cpu_ops.h"

namespace grpo {

namespace {
constexpr DType kF32[] = {DType::f32};
}  // namespace

void CpuOps::add(Tensor out, Tensor a, Tensor b) {
  GRPO_CPU_RECORD(add(out, a, b));
  checks::add(out, a, b, Device::cpu, kF32);
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  float* po = out.ptr<float>();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void CpuOps::scale(Tensor x, float s) {
  GRPO_CPU_RECORD(scale(x, s));
  checks::scale(x, Device::cpu, kF32);
  float* p = x.ptr<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] *= s;
}

void CpuOps::zero(Tensor x) {
  GRPO_CPU_RECORD(zero(x));
  checks::zero(x, Device::cpu);
  if (x.nbytes()) std::memset(x.data, 0, x.nbytes());
}

void CpuOps::copy(Tensor dst, Tensor src) {
  GRPO_CPU_RECORD(copy(dst, src));
  checks::copy(dst, src, Device::cpu, /*convert_float=*/false);
  if (src.nbytes() && dst.data != src.data) std::memmove(dst.data, src.data, src.nbytes());
}

}  // namespace grpo
