#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/op_checks.h"

namespace grpo {

void CpuOps::add(Tensor out, Tensor a, Tensor b) {
  checks::tensor("add", "a", a, DType::f32, Device::cpu);
  checks::same("add", "a", a, "b", b);
  checks::same("add", "a", a, "out", out);
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  float* po = out.ptr<float>();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void CpuOps::scale(Tensor x, float s) {
  checks::tensor("scale", "x", x, DType::f32, Device::cpu);
  float* p = x.ptr<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] *= s;
}

void CpuOps::zero(Tensor x) {
  GRPO_CHECK(x.defined() && x.device == Device::cpu, "zero: x is " << x.str() << ", expected a cpu tensor");
  if (x.nbytes()) std::memset(x.data, 0, x.nbytes());
}

void CpuOps::copy(Tensor dst, Tensor src) {
  GRPO_CHECK(src.defined() && dst.defined() && src.device == Device::cpu && dst.device == Device::cpu,
             "copy: dst " << dst.str() << " and src " << src.str() << " must be cpu tensors");
  GRPO_CHECK(src.dtype == dst.dtype && src.numel() == dst.numel(),
             "copy: dst is " << dst.str() << " but src is " << src.str() << " (dtype and element count must match)");
  if (src.nbytes() && dst.data != src.data) std::memmove(dst.data, src.data, src.nbytes());
}

}  // namespace grpo
