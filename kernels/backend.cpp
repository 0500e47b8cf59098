#include "kernels/backend.h"

#include <charconv>

#include "core/error.h"

#if GRPO_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_runtime.h"
#endif

namespace grpo {

bool cuda_backend_built() { return GRPO_HAVE_CUDA != 0; }

DType resolve_dtype(std::string_view name, const Ops& ops) {
  if (name == "auto") return ops.supports_storage(DType::bf16) ? DType::bf16 : DType::f32;
  if (name == "f32") return DType::f32;
  if (name == "bf16") {
    GRPO_CHECK(ops.supports_storage(DType::bf16), "dtype bf16: the " << ops.name()
                                                                      << " backend computes in f32 only (use dtype "
                                                                         "f32 or auto, or a CUDA device)");
    return DType::bf16;
  }
  GRPO_THROW("dtype \"" << name << "\" is not valid: use auto, f32 or bf16");
}

DeviceChoice resolve_device(std::string_view name) {
  if (name == "cpu") return {Device::cpu, 0};
  if (name == "auto") {
#if GRPO_HAVE_CUDA
    if (cuda_device_count() > 0) return {Device::cuda, 0};
#endif
    return {Device::cpu, 0};
  }
  if (name.substr(0, 4) == "cuda") {
    int index = 0;
    if (name.size() > 4) {
      std::string_view num = name.substr(5);
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), index);
      GRPO_CHECK(name[4] == ':' && !num.empty() && ec == std::errc() && p == num.data() + num.size() && index >= 0,
                 "device \"" << name << "\" is not valid: use auto, cpu, cuda or cuda:N");
    }
#if GRPO_HAVE_CUDA
    const std::string why = cuda_unavailable_reason();
    GRPO_CHECK(why.empty(), "device " << name << ": no usable GPU (" << why << ")");
    const int n = cuda_device_count();
    GRPO_CHECK(index < n, "device " << name << ": there " << (n == 1 ? "is" : "are") << " only " << n
                                    << " GPU" << (n == 1 ? "" : "s") << " (cuda:0" << (n > 1 ? " .. cuda:" + std::to_string(n - 1) : "") << ")");
    return {Device::cuda, index};
#else
    GRPO_THROW("device " << name << ": this grpo was built without the CUDA backend (rebuild with nvcc installed, "
                         "-DGRPO_CUDA=ON)");
#endif
  }
  GRPO_THROW("device \"" << name << "\" is not valid: use auto, cpu, cuda or cuda:N");
}

std::string describe_device(const DeviceChoice& d) {
  if (d.device == Device::cpu) return "cpu";
#if GRPO_HAVE_CUDA
  return "cuda:" + std::to_string(d.index) + " " + cuda_device_description(d.index);
#else
  return "cuda:" + std::to_string(d.index);
#endif
}

bool set_expert_weight_grad(Ops& ops, std::string_view mode) {
  GRPO_CHECK(mode == "automatic" || mode == "grouped" || mode == "per_expert",
             "expert weight gradients \"" << mode << "\" is not valid: use automatic, grouped or per_expert");
  if (ops.device() != Device::cuda) return false;
#if GRPO_HAVE_CUDA
  cuda_set_expert_weight_grad(ops, mode == "grouped"      ? ExpertWeightGrad::grouped
                                   : mode == "per_expert" ? ExpertWeightGrad::per_expert
                                                          : ExpertWeightGrad::automatic);
  return true;
#else
  return false;
#endif
}

std::string expert_weight_grad_path(Ops& ops) {
#if GRPO_HAVE_CUDA
  if (ops.device() == Device::cuda) return cuda_expert_weight_grad_path(ops);
#endif
  (void)ops;
  return "";
}

std::unique_ptr<Ops> make_ops(const DeviceChoice& d) {
  if (d.device == Device::cpu) return make_cpu_ops();
#if GRPO_HAVE_CUDA
  return make_cuda_ops(d.index);
#else
  GRPO_THROW("this grpo was built without the CUDA backend");
#endif
}

}  // namespace grpo
