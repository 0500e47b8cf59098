#include "core/tensor.h"

#include <sstream>

namespace grpo {

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Tensor::Tensor(void* data_, DType dtype_, std::initializer_list<int64_t> shape_, Device device_)
    : Tensor(data_, dtype_, shape_.begin(), int(shape_.size()), device_) {}

Tensor::Tensor(void* data_, DType dtype_, const int64_t* shape_, int ndim_, Device device_)
    : data(data_), dtype(dtype_), device(device_), ndim(ndim_) {
  GRPO_CHECK(ndim_ >= 1 && ndim_ <= kMaxDims, "tensor: " << ndim_ << " dimensions given, 1 to " << kMaxDims << " supported");
  for (int i = 0; i < ndim_; ++i) {
    GRPO_CHECK(shape_[i] >= 0, "tensor: negative size " << shape_[i] << " in dimension " << i);
    shape[i] = shape_[i];
  }
}

int64_t Tensor::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

int64_t Tensor::size(int dim) const {
  int d = dim < 0 ? dim + ndim : dim;
  GRPO_CHECK(d >= 0 && d < ndim, "tensor " << str() << " has no dimension " << dim);
  return shape[d];
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  std::ostringstream os;
  if (device == Device::cuda) os << "cuda:";
  os << dtype_name(dtype) << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

Tensor Tensor::view(std::initializer_list<int64_t> new_shape) const {
  Tensor t(data, dtype, new_shape, device);
  GRPO_CHECK(t.numel() == numel(), "view: cannot view " << str() << " as " << t.str());
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  GRPO_CHECK(defined() && begin >= 0 && begin <= end && end <= shape[0],
             "rows: range [" << begin << ", " << end << ") outside " << str());
  Tensor t = *this;
  t.shape[0] = end - begin;
  int64_t row_elems = shape[0] == 0 ? 0 : numel() / shape[0];
  t.data = static_cast<char*>(data) + size_t(begin * row_elems) * dtype_size(dtype);
  return t;
}

bool same_shape(const Tensor& a, const Tensor& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

}  // namespace grpo
