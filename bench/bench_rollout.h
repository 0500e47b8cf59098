// `grpo bench rollout`: throughput of the generation engine (rollout/engine.h). Declared apart
// from bench/bench.h because it needs the grpo_rollout library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace grpo {

struct BenchRolloutOptions {
  std::string model;                        // a Hugging Face folder (its weights), or:
  std::string arch;                         // model_type of a random-weight preset
  std::string preset = "small";             // with arch: tiny or small
  std::string config;                       // or a config.json (random weights)
  std::string device = "cpu";               // auto, cpu, cuda or cuda:N (kernels/backend.h)
  std::string dtype = "auto";               // model storage: auto (bf16 on CUDA, f32 on the CPU), f32, bf16
  int64_t prompt_tokens = 0;                // tokens per prompt (0: 64; --quick 16)
  int64_t max_tokens = 0;                   // new tokens per sample (0: 16; --quick 8)
  int64_t kv_memory = 0;                    // KV cache bytes (0: EngineConfig's default)
  int64_t max_batch = 32;                   // sequences decoded per engine step at most (engine: 64)
  std::vector<int64_t> groups{1, 8, 16};    // group sizes G (samples per prompt)
  uint64_t seed = 0;                        // weights, prompts and sampling
  int threads = 0;                          // 0: OpenMP/OpenBLAS defaults
  bool quick = false;                       // small sizes, batches up to 2 groups (CI smoke run)
};

// Generated tokens/s and time to first token at each group size G, with prefix sharing and
// with the same run without it (prefill tokens, KV blocks and time compared); then tokens/s as
// the number of groups decoded together grows, up to what max_batch and the KV budget admit.
// Every figure comes from this run.
std::string run_bench_rollout(const BenchRolloutOptions& options);

}  // namespace grpo
