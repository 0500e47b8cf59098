// PENDING scaffolding: replaced wholesale by the implementation.
#include "bench/bench.h"
#include "core/error.h"
namespace grpo {
std::string run_bench_ops(const BenchOpsOptions&) { GRPO_THROW("bench ops: not implemented yet"); }
}
