// CudaOps: construction (device, stream, cuBLAS handle), the stream-ordered allocator, scratch
// space and the device-side error flag. The ops themselves live in one .cu per family.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_ops_impl.h"
#include "kernels/cuda/cuda_runtime.h"

#include <sstream>
#include <thread>
#include <vector>

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
  GRPO_CHECK(!capturing, "cuda: a copy to the host while capturing a graph (the stream cannot wait while it records)");
  GRPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaStreamAllocator::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  GRPO_CHECK(!capturing, "cuda: a copy from the host while capturing a graph (the stream cannot wait while it records)");
  GRPO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  // The host buffer may be freed or reused as soon as we return (pageable memory is staged,
  // but only a synchronisation makes that a guarantee for every source).
  GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- graph capture state -------------------------------------------------------------------

namespace {

// Checks deferred to a replay: one per flag slot handed out while capturing.
struct DeferredCheck {
  std::string op;
  std::function<void(int)> report;
  std::string fallback;
};

void run_check(const DeferredCheck& c, int code) {
  if (c.report) c.report(code);
  GRPO_THROW(c.op << ": " << c.fallback << " (code " << code << ")");
}

// Flag slots of one graph: far more than the checks of a decoding step of the largest models
// (a few per layer).
constexpr int kGraphFlagSlots = 8192;

}  // namespace

struct CudaCapture {
  std::thread::id thread;
  int* flags = nullptr;  // kGraphFlagSlots ints, owned until the graph takes them
  int used = 0;
  std::vector<DeferredCheck> checks;  // checks[i] reads flags[i]
  ~CudaCapture() { cudaFree(flags); }
};

namespace {

class CudaGraph final : public OpsGraph {
 public:
  CudaGraph(const CudaOps& ops, cudaGraphExec_t exec, int* flags, std::vector<DeferredCheck> checks)
      : ops_(ops),
        stream_(ops.stream()),
        exec_(exec),
        flags_(flags),
        checks_(std::move(checks)),
        codes_(checks_.size()),
        generation_(ops.workspace_generation()) {}
  ~CudaGraph() override {
    cudaStreamSynchronize(stream_);  // a replay still running reads the flags
    cudaGraphExecDestroy(exec_);
    cudaFree(flags_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  bool valid() const override { return ops_.workspace_generation() == generation_; }

  void replay() override {
    GRPO_CHECK(valid(), "cuda graph replay: the scratch space the graph recorded has since been reallocated "
                        "(capture it again)");
    GRPO_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
    if (!codes_.empty())
      GRPO_CUDA_CHECK(cudaMemcpyAsync(codes_.data(), flags_, codes_.size() * sizeof(int), cudaMemcpyDeviceToHost,
                                      stream_));
    const cudaError_t err = cudaStreamSynchronize(stream_);
    GRPO_CHECK(err == cudaSuccess, "cuda graph replay: " << cudaGetErrorString(err));
    for (size_t i = 0; i < codes_.size(); ++i)
      if (codes_[i] != 0) run_check(checks_[i], codes_[i]);
  }

 private:
  const CudaOps& ops_;
  cudaStream_t stream_;
  cudaGraphExec_t exec_;
  int* flags_;
  std::vector<DeferredCheck> checks_;
  std::vector<int> codes_;
  uint64_t generation_;
};

}  // namespace

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
  GRPO_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
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
  abort_capture();
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
  GRPO_CHECK(!capture_, "cuda: an op needs " << bytes << " bytes of scratch while capturing a graph, "
                                              << workspace_bytes_ << " are there (run the ops once before capturing)");
  GRPO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  cudaFree(workspace_);
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  cudaError_t err = cudaMalloc(&workspace_, bytes);
  GRPO_CHECK(err == cudaSuccess, "cuda: cannot allocate " << bytes << " bytes of scratch: " << cudaGetErrorString(err));
  workspace_bytes_ = bytes;
  ++workspace_generation_;
  return workspace_;
}

int* CudaOps::error_flag() {
  if (capture_) {
    GRPO_CHECK(std::this_thread::get_id() == capture_->thread,
               "cuda graph capture: another thread used the Ops while a graph was being captured");
    GRPO_CHECK(capture_->used < kGraphFlagSlots,
               "cuda graph capture: more than " << kGraphFlagSlots << " checked ops in one graph");
    capture_->checks.push_back({});
    return capture_->flags + capture_->used++;
  }
  GRPO_CUDA_CHECK(cudaMemsetAsync(flag_, 0, sizeof(int), stream_));
  return flag_;
}

void CudaOps::check_flag(const char* op, std::function<void(int)> report, std::string fallback) {
  if (capture_) {
    GRPO_CHECK(capture_->used > 0, op << ": check_flag without error_flag while capturing");
    capture_->checks[size_t(capture_->used - 1)] = DeferredCheck{op, std::move(report), std::move(fallback)};
    return;
  }
  int code = 0;
  GRPO_CUDA_CHECK(cudaMemcpyAsync(&code, flag_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  cudaError_t err = cudaStreamSynchronize(stream_);
  GRPO_CHECK(err == cudaSuccess, op << ": " << cudaGetErrorString(err));
  if (code != 0) run_check(DeferredCheck{op, std::move(report), std::move(fallback)}, code);
}

void CudaOps::throw_if_flagged(const char* op, const char* what) { check_flag(op, nullptr, what); }

void CudaOps::begin_capture() {
  GRPO_CHECK(!capture_, name() << ": begin_capture while a capture is open");
  auto c = std::make_unique<CudaCapture>();
  c->thread = std::this_thread::get_id();
  cudaError_t err = cudaMalloc(&c->flags, kGraphFlagSlots * sizeof(int));
  GRPO_CHECK(err == cudaSuccess, name() << ": cannot allocate a graph's check flags: " << cudaGetErrorString(err));
  GRPO_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capture_ = std::move(c);
  alloc_.capturing = true;
  // The graph's first node: every replay starts with clear flags.
  const cudaError_t set = cudaMemsetAsync(capture_->flags, 0, kGraphFlagSlots * sizeof(int), stream_);
  if (set != cudaSuccess) {
    abort_capture();
    GRPO_THROW(name() << ": graph capture: " << cudaGetErrorString(set));
  }
}

std::unique_ptr<OpsGraph> CudaOps::end_capture() {
  GRPO_CHECK(capture_, name() << ": end_capture without begin_capture");
  std::unique_ptr<CudaCapture> c = std::move(capture_);
  alloc_.capturing = false;
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(stream_, &graph);
  cudaGraphExec_t exec = nullptr;
  if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (err != cudaSuccess) {
    cudaGetLastError();  // capture errors are not sticky: clear them for the next call
    GRPO_THROW(name() << ": graph capture failed: " << cudaGetErrorString(err));
  }
  c->checks.resize(size_t(c->used));
  int* flags = c->flags;
  c->flags = nullptr;
  return std::make_unique<CudaGraph>(*this, exec, flags, std::move(c->checks));
}

void CudaOps::abort_capture() noexcept {
  if (!capture_) return;
  alloc_.capturing = false;
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream_, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  capture_.reset();  // frees the flags: after the capture has ended
}

void CudaOps::synchronize(const char* op) {
  GRPO_CHECK(!capture_, op << ": needs the device's results on the host, which it cannot wait for while capturing a graph");
  cudaError_t err = cudaStreamSynchronize(stream_);
  GRPO_CHECK(err == cudaSuccess, op << ": " << cudaGetErrorString(err));
}

namespace {
CudaOps& as_cuda(Ops& ops) {
  auto* c = dynamic_cast<CudaOps*>(&ops);
  GRPO_CHECK(c, "cuda: " << ops.name() << " is not a CUDA Ops");
  return *c;
}
}  // namespace

size_t cuda_scratch_bytes(Ops& ops) { return as_cuda(ops).workspace_bytes(); }

void cuda_reserve_scratch(Ops& ops, size_t bytes) { as_cuda(ops).workspace(bytes); }

void cuda_set_expert_weight_grad(Ops& ops, ExpertWeightGrad mode) { as_cuda(ops).expert_weight_grad = mode; }

std::string cuda_expert_weight_grad_path(Ops& ops) { return as_cuda(ops).expert_weight_grad_path; }

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
