// The CUDA backend's public entry point. Plain C++ (no CUDA headers), so host code that picks
// a backend at run time includes only this.
#pragma once

#include <memory>

#include "kernels/ops.h"

namespace grpo {

// A CUDA Ops on device `device`, issuing all work on `stream` (a cudaStream_t; nullptr: a
// non-blocking stream the Ops creates and owns). The caller's stream must outlive the Ops.
// Throws grpo::Error with one line when no GPU is usable.
std::unique_ptr<Ops> make_cuda_ops(int device = 0, void* stream = nullptr);

}  // namespace grpo
