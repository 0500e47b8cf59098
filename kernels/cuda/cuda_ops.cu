// CudaOps: construction (device, stream, cuBLAS handle), the stream-ordered allocator, scratch
// space and the device-side error flag. The ops themselves live in one .cu per family.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_ops_impl.h"
#include "kernels/cuda/cuda_runtime.h"

#include <sstream>

namespace grpo {

// ---- stream-ordered allocator ------------------------------------------------------------

void* CudaStreamAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  GRPO_CHECK(err == cudaSuccess, "cuda allocator: cannot allocate " << bytes << " bytes: " << cudaGetErrorString(err));
  return p;
}

void CudaStreamAllocator::deallocate(void* p, size_t) noexcept {
  if (!p) return;
  cudaStreamSynchronize(stream_);  // work still queued may read it
  cudaFree(p);
}

void CudaStreamAllocator::memset_zero(void* p, size_t bytes) {
  if (bytes) GRPO_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
}

void CudaStreamAllocator::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  GRPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaStreamAllocator::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  GRPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  // The host buffer may be freed or reused as soon as we return (pageable memory is staged,
  // but only a synchronisation makes that a guarantee for every source).
  GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- CudaOps -----------------------------------------------------------------------------

namespace {
cudaStream_t make_stream(int device, void* given, bool& own) {
  cuda_require_device();
  const int n = cuda_device_count();
  GRPO_CHECK(device >= 0 && device < n, "cuda: device " << device << " does not exist (" << n << " visible)");
  GRPO_CUDA_CHECK(cudaSetDevice(device));
  if (given) {
    own = false;
    return static_cast<cudaStream_t>(given);
  }
  cudaStream_t s = nullptr;
  GRPO_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  own = true;
  return s;
}
}  // namespace

CudaOps::CudaOps(int device, cudaStream_t stream, bool own_stream)
    : device_(device), stream_(stream), alloc_(stream) {
  GRPO_CUBLAS_CHECK(cublasCreate(&cublas_));
  GRPO_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // Full f32 arithmetic for f32 GEMMs (no TF32): f32 results match the CPU to ~1e-6.
  GRPO_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  // A fixed cuBLAS workspace keeps GEMMs graph-capturable and their algorithm choice stable.
  constexpr size_t kCublasWorkspace = size_t(32) << 20;
  GRPO_CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspace));
  GRPO_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspace));
  GRPO_CUDA_CHECK(cudaMalloc(&flag_, sizeof(int)));
  GRPO_CUDA_CHECK(cudaMemsetAsync(flag_, 0, sizeof(int), stream_));
  own_stream_ = own_stream;  // last: a constructor that throws leaves the stream to its maker
}

CudaOps::~CudaOps() {
  cudaStreamSynchronize(stream_);
  if (cublas_) cublasDestroy(cublas_);
  cudaFree(cublas_workspace_);
  cudaFree(workspace_);
  cudaFree(flag_);
  if (own_stream_) cudaStreamDestroy(stream_);
}

std::string CudaOps::name() const {
  std::ostringstream os;
  os << "cuda:" << device_;
  return os.str();
}

void* CudaOps::workspace(size_t bytes) {
  bytes = (bytes + 255) & ~size_t(255);
  if (bytes <= workspace_bytes_) return workspace_;
  GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  cudaFree(workspace_);
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  cudaError_t err = cudaMalloc(&workspace_, bytes);
  GRPO_CHECK(err == cudaSuccess, "cuda: cannot allocate " << bytes << " bytes of scratch: " << cudaGetErrorString(err));
  workspace_bytes_ = bytes;
  return workspace_;
}

int* CudaOps::error_flag() {
  GRPO_CUDA_CHECK(cudaMemsetAsync(flag_, 0, sizeof(int), stream_));
  return flag_;
}

void CudaOps::throw_if_flagged(const char* op, const char* what) {
  int code = 0;
  GRPO_CUDA_CHECK(cudaMemcpyAsync(&code, flag_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  cudaError_t err = cudaStreamSynchronize(stream_);
  GRPO_CHECK(err == cudaSuccess, op << ": " << cudaGetErrorString(err));
  GRPO_CHECK(code == 0, op << ": " << what << " (code " << code << ")");
}

void CudaOps::synchronize(const char* op) {
  cudaError_t err = cudaStreamSynchronize(stream_);
  GRPO_CHECK(err == cudaSuccess, op << ": " << cudaGetErrorString(err));
}

std::unique_ptr<Ops> make_cuda_ops(int device, void* stream) {
  bool own = false;
  cudaStream_t s = make_stream(device, stream, own);
  try {
    return std::make_unique<CudaOps>(device, s, own);
  } catch (...) {
    if (own) cudaStreamDestroy(s);
    throw;
  }
}

}  // namespace grpo
