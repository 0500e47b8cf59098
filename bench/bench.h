// Benchmarks behind `grpo bench ...`. Each returns a JSON document as text; figures are
// reported next to a peer or a physical limit measured in the same run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace grpo {

struct BenchOpsOptions {
  bool quick = false;         // smaller sizes and fewer repeats (CI smoke run)
  double min_seconds = 0.25;  // time each case for at least this long
  int threads = 0;            // 0: OpenMP/OpenBLAS defaults
};

// GFLOP/s of matmul, attention and the MoE grouped matmul on the CPU backend at a few sizes,
// with the same matmul through OpenBLAS directly and the ratio ours / BLAS.
std::string run_bench_ops(const BenchOpsOptions& options);

struct BenchTokenizerOptions {
  std::string tokenizer;      // folder with tokenizer.json (required)
  double megabytes = 8;       // size of the generated mixed-language text
  int threads = 0;            // batched encoding threads (0: all cores)
  double min_seconds = 0.5;   // time each measurement for at least this long
  bool quick = false;         // 0.5 MB, short timings (CI smoke run)
  std::string save_text;      // if set, also write the generated text here (for other tools)
};

// Encoding MB/s of a tokenizer.json on a deterministic mixed-language text (English,
// Chinese, Japanese, Korean, code, LaTeX, emoji): cold and warm single thread, batched
// across threads, next to raw PCRE2 running the file's pre-tokenizer regexes and memcpy.
std::string run_bench_tokenizer(const BenchTokenizerOptions& options);

struct BenchModelOptions {
  std::string arch;                        // model_type (required unless config is given)
  std::string preset = "small";            // model preset: tiny, small or gpu (bench_model.cpp)
  std::string config;                      // a config.json (or its folder) instead of arch/preset
  std::string device = "cpu";              // auto, cpu, cuda or cuda:N (kernels/backend.h)
  std::string dtype = "auto";              // model storage: auto (bf16 on CUDA, f32 on the CPU), f32, bf16
  // Sizes; 0 / empty: the default (preset gpu in parentheses).
  int64_t train_tokens = 0;                // tokens of the packed training batch: 2048 (8192)
  int64_t seq_len = 0;                     // sequence length inside it: 512 (1024)
  int64_t prompt_len = 0;                  // prefill length per sequence, and decode context: 128 (256)
  int64_t decode_steps = 0;                // decode steps timed per run: 16 (32)
  std::vector<int64_t> batches;            // prefill/decode batch sizes: 1, 8, 64
  double min_seconds = 0.5;                // time each case for at least this long
  int repeats = 5;                         // and at least this many runs (the median is reported)
  int threads = 0;                         // 0: OpenMP/OpenBLAS defaults
  bool quick = false;                      // small sizes, batches 1 and 8 (CI smoke run)
  bool dry_run = false;                    // print the config and memory plan only (no device)
  std::string save_config;                 // also write the model's config.json into this folder
};

// Training tokens/s (forward + backward), prefill and decode tokens/s per batch size, the
// model FLOPs per token behind them and the GFLOP/s achieved, next to ceilings measured in the
// same run (cpu: OpenBLAS sgemm; cuda: f32 and bf16 GEMM through the Ops), and decode bytes/s
// next to the Ops::copy bandwidth.
std::string run_bench_model(const BenchModelOptions& options);

}  // namespace grpo
