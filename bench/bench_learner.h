// `grpo bench learner`: time of one GRPO learning step (learner/grpo_step.h) split by phase.
// Declared apart from bench/bench.h because it needs the grpo_learner library.
#pragma once

#include <cstdint>
#include <string>

namespace grpo {

struct BenchLearnerOptions {
  std::string model;             // a Hugging Face folder (its weights), or:
  std::string arch;              // model_type of a random-weight preset
  std::string preset = "small";  // with arch: tiny or small
  std::string device = "cpu";    // auto, cpu, cuda or cuda:N
  std::string dtype = "auto";    // model storage: auto (bf16 on CUDA, f32 on the CPU), f32, bf16
  int64_t prompts = 4;           // groups in the batch
  int64_t group_size = 8;        // completions per prompt (G)
  int64_t prompt_tokens = 64;
  int64_t completion_tokens = 64;
  double beta = 0.04;            // KL coefficient: > 0 times the reference pass
  int64_t micro_batch_tokens = 2048;
  int repeats = 3;               // timed steps after one warm-up (the median is reported)
  uint64_t seed = 0;
  int threads = 0;               // 0: OpenMP/OpenBLAS defaults
  bool quick = false;            // tiny sizes (CI smoke run)
};

// Learner tokens/s of a GRPO step on synthetic groups (random prompts, completions and 0/1
// rewards): the whole step and each phase (old-log-prob pass, reference pass, forward +
// backward, optimizer), and the share of the step each phase takes, all from this run.
std::string run_bench_learner(const BenchLearnerOptions& options);

}  // namespace grpo
