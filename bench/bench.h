// Benchmarks behind `grpo bench ...`. Each returns a JSON document as text; figures are
// reported next to a peer or a physical limit measured in the same run.
#pragma once

#include <string>

namespace grpo {

struct BenchOpsOptions {
  bool quick = false;         // smaller sizes and fewer repeats (CI smoke run)
  double min_seconds = 0.25;  // time each case for at least this long
  int threads = 0;            // 0: OpenMP/OpenBLAS defaults
};

// GFLOP/s of matmul, attention and the MoE grouped matmul on the CPU backend at a few sizes,
// with the same matmul through OpenBLAS directly and the ratio ours / BLAS.
std::string run_bench_ops(const BenchOpsOptions& options);

}  // namespace grpo
