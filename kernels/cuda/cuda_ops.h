// The CUDA backend's public entry point. Plain C++ (no CUDA headers), so host code that picks
// a backend at run time includes only this.
#pragma once

#include <cstddef>
#include <memory>

#include "kernels/ops.h"

namespace grpo {

// A CUDA Ops on device `device`, issuing all work on `stream` (a cudaStream_t; nullptr: a
// non-blocking stream the Ops creates and owns). The caller's stream must outlive the Ops.
// Throws grpo::Error with one line when no GPU is usable.
std::unique_ptr<Ops> make_cuda_ops(int device = 0, void* stream = nullptr);

// The scratch space of a CUDA Ops (bytes; it grows when an op needs more), and growing it
// ahead of time to at least `bytes`: growth moves it, which invalidates the graphs captured
// before (OpsGraph::valid), so reserving the most a run needs first keeps them. Growing throws
// while a graph is being captured. `ops` must come from make_cuda_ops.
size_t cuda_scratch_bytes(Ops& ops);
void cuda_reserve_scratch(Ops& ops, size_t bytes);

}  // namespace grpo
