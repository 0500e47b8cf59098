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
  std::string arch;                        // model_type (required)
  std::string preset = "small";            // model preset (tiny, small)
  std::string device = "cpu";
  int64_t train_tokens = 2048;             // tokens of the packed training batch
  int64_t seq_len = 512;                   // sequence length inside it
  int64_t prompt_len = 128;                // prefill length per sequence, and decode context
  int64_t decode_steps = 16;               // decode steps timed per run
  std::vector<int64_t> batches = {1, 8, 64};  // prefill/decode batch sizes
  double min_seconds = 0.5;                // time each case for at least this long
  int threads = 0;                         // 0: OpenMP/OpenBLAS defaults
  bool quick = false;                      // small sizes, batches 1 and 8 (CI smoke run)
};

// Training tokens/s (forward + backward), prefill and decode tokens/s per batch size, the
// model FLOPs per token behind them and the GFLOP/s achieved next to OpenBLAS sgemm.
std::string run_bench_model(const BenchModelOptions& options);

}  // namespace grpo
