#include <cmath>
#include <sstream>

#include "kernels/op_checks.h"
#include "kernels/ops.h"

namespace grpo {

namespace checks {

void tensor(const char* op, const char* name, const Tensor& t, DType dt, Device dev, int ndim) {
  GRPO_CHECK(t.defined(), op << ": " << name << " is undefined");
  GRPO_CHECK(t.dtype == dt, op << ": " << name << " is " << t.str() << ", expected dtype " << dtype_name(dt));
  GRPO_CHECK(t.device == dev, op << ": " << name << " is on " << device_name(t.device) << ", expected "
                                 << device_name(dev));
  GRPO_CHECK(ndim < 0 || t.ndim == ndim, op << ": " << name << " is " << t.str() << ", expected " << ndim
                                            << " dimensions");
  GRPO_CHECK(t.numel() == 0 || t.data != nullptr, op << ": " << name << " " << t.str() << " has no data");
}

void shape(const char* op, const char* name, const Tensor& t, DType dt, Device dev,
           std::initializer_list<int64_t> dims) {
  tensor(op, name, t, dt, dev, int(dims.size()));
  int i = 0;
  bool ok = true;
  for (int64_t d : dims) {
    if (d >= 0 && t.shape[i] != d) ok = false;
    ++i;
  }
  if (!ok) {
    std::ostringstream want;
    want << "[";
    i = 0;
    for (int64_t d : dims) {
      want << (i++ ? ", " : "");
      if (d < 0) want << "*";
      else want << d;
    }
    want << "]";
    GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected " << want.str());
  }
}

void same(const char* op, const char* name_a, const Tensor& a, const char* name_b, const Tensor& b) {
  GRPO_CHECK(a.defined() && b.defined() && same_shape(a, b) && a.dtype == b.dtype && a.device == b.device,
             op << ": " << name_a << " is " << a.str() << " but " << name_b << " is " << b.str()
                << " (they must match)");
}

}  // namespace checks

void Ops::begin_capture() { GRPO_THROW(name() << ": graph capture is not supported by this backend"); }

std::unique_ptr<OpsGraph> Ops::end_capture() {
  GRPO_THROW(name() << ": end_capture without begin_capture (graph capture is not supported by this backend)");
}

float clip_grad_norm(Ops& ops, std::span<const Tensor> grads, float max_norm) {
  Buffer acc(ops.allocator(), sizeof(float));
  Tensor total = acc.view(DType::f32, {1});
  ops.zero(total);
  for (const Tensor& g : grads) ops.sum_squares(total, g);
  float sq = 0.0f;
  ops.allocator().copy_to_host(&sq, total.data, sizeof(float));
  float norm = std::sqrt(sq);
  if (max_norm > 0.0f && std::isfinite(norm) && norm > max_norm) {
    float s = max_norm / (norm + 1e-6f);
    for (const Tensor& g : grads) ops.scale(g, s);
  }
  return norm;
}

}  // namespace grpo
