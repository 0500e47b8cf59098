#include <cuda_runtime.h>

#include <sstream>

#include "core/error.h"
#include "kernels/cuda/cuda_runtime.h"

#define GRPO_CUDA_CHECK(call)                                                               \
  do {                                                                                      \
    cudaError_t grpo_cuda_err_ = (call);                                                    \
    GRPO_CHECK(grpo_cuda_err_ == cudaSuccess,                                               \
               "CUDA call " #call " failed: " << cudaGetErrorString(grpo_cuda_err_));       \
  } while (0)

namespace grpo {

namespace {

class CudaAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cuda; }
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    GRPO_CHECK(err == cudaSuccess, "cuda allocator: cannot allocate " << bytes << " bytes: " << cudaGetErrorString(err));
    return p;
  }
  void deallocate(void* p, size_t) noexcept override {
    if (p) cudaFree(p);
  }
  void memset_zero(void* p, size_t bytes) override {
    if (bytes) GRPO_CUDA_CHECK(cudaMemset(p, 0, bytes));
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) GRPO_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) GRPO_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  }
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error for later callers
    return 0;
  }
  return n;
}

std::string cuda_unavailable_reason() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(err);
  }
  return n > 0 ? std::string() : std::string("no CUDA device found");
}

void cuda_require_device() {
  std::string why = cuda_unavailable_reason();
  GRPO_CHECK(why.empty(), "no usable GPU: " << why);
}

std::string cuda_device_description(int index) {
  cuda_require_device();
  cudaDeviceProp prop{};
  GRPO_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  std::ostringstream os;
  os << prop.name << " (sm_" << prop.major << prop.minor << ", " << double(prop.totalGlobalMem) / (1 << 30) << " GiB)";
  return os.str();
}

Allocator& cuda_allocator() {
  static CudaAllocator a;
  return a;
}

}  // namespace grpo
