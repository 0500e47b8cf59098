// Picking a compute backend at run time: `device` in configs and --device on the commands
// that compute take "auto", "cpu", "cuda" or "cuda:N". "auto" is CUDA when this build has the
// CUDA backend and a GPU is usable, else the CPU.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "kernels/ops.h"

namespace grpo {

struct DeviceChoice {
  Device device = Device::cpu;
  int index = 0;  // CUDA device ordinal
};

// Parses a device name; anything else is a grpo::Error listing the accepted forms. "cuda"
// on a build without the CUDA backend, or on a machine without a usable GPU, is an error
// with the reason in one line; "auto" never fails.
DeviceChoice resolve_device(std::string_view name);
// True when this binary was built with the CUDA backend.
bool cuda_backend_built();
// "cpu" or the GPU's description ("cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)").
std::string describe_device(const DeviceChoice& d);
// The storage dtype of a model's weights copy and activations (`dtype` in configs, --dtype on
// the commands that compute): "auto" (bf16 where the backend stores it: CUDA; else f32),
// "f32" or "bf16". bf16 on a backend that computes in f32 only (the CPU), or any other name,
// is a grpo::Error in one line.
DType resolve_dtype(std::string_view name, const Ops& ops);
// The CUDA backend's path for f32 expert weight gradients of bf16 inputs
// (kernels/cuda/cuda_ops.h, ExpertWeightGrad): mode "automatic", "grouped" or "per_expert".
// Returns false, changing nothing, on other backends; another mode is a grpo::Error.
bool set_expert_weight_grad(Ops& ops, std::string_view mode);
// The path the last such gradient took ("grouped (bf16 tensor cores)", "per expert", ...);
// empty on other backends.
std::string expert_weight_grad_path(Ops& ops);
// The Ops for a resolved choice.
std::unique_ptr<Ops> make_ops(const DeviceChoice& d);
inline std::unique_ptr<Ops> make_ops(std::string_view name) { return make_ops(resolve_device(name)); }

}  // namespace grpo
