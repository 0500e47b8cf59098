// CUDA runtime glue: device discovery with a clear message when there is no usable GPU,
// checked CUDA calls, and the device allocator behind Buffer/Arena on Device::cuda.
#pragma once

#include <string>

#include "core/buffer.h"

namespace grpo {

// Number of usable CUDA devices; 0 when there is no GPU or no driver (never throws).
int cuda_device_count();
// Why no device is usable ("" when one is): the CUDA error string, for one-line messages.
std::string cuda_unavailable_reason();
// Throws grpo::Error with a one-line reason when no GPU can be used.
void cuda_require_device();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `index`.
std::string cuda_device_description(int index = 0);

// cudaMalloc/cudaFree-backed allocator for the current device; every call is checked.
Allocator& cuda_allocator();

}  // namespace grpo
