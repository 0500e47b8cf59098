#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "bench/bench.h"
#include "bench/bench_learner.h"
#include "bench/bench_rollout.h"
#include "cli/commands.h"
#include "core/error.h"

namespace grpo::cli {

namespace {

int write_output(const std::string& json, const std::string& out_path) {
  if (out_path.empty()) {
    std::fputs(json.c_str(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  std::ofstream out(out_path);
  GRPO_CHECK(out.good(), "--out " << out_path << ": cannot open for writing");
  out << json << "\n";
  GRPO_CHECK(out.good(), "--out " << out_path << ": write failed");
  return 0;
}

}  // namespace

void add_bench_commands(CLI::App& app, Runner& run) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (JSON on stdout)");
  bench->require_subcommand(1);

  struct OpsArgs {
    BenchOpsOptions options;
    std::string out;
  };
  auto args = std::make_shared<OpsArgs>();
  CLI::App* ops = bench->add_subcommand("ops", "GFLOP/s of the CPU kernels next to OpenBLAS");
  ops->add_flag("--quick", args->options.quick, "Small sizes, few repeats (a smoke run)");
  ops->add_option("--min-seconds", args->options.min_seconds, "Time each case for at least this long")
      ->check(CLI::PositiveNumber);
  ops->add_option("--threads", args->options.threads, "Threads (0: all cores)")->check(CLI::NonNegativeNumber);
  ops->add_option("--out", args->out, "Write the JSON here instead of stdout");
  ops->callback([&run, args] { run = [args] { return write_output(run_bench_ops(args->options), args->out); }; });

  struct TokenizerArgs {
    BenchTokenizerOptions options;
    std::string out;
  };
  auto targs = std::make_shared<TokenizerArgs>();
  CLI::App* tok = bench->add_subcommand("tokenizer", "Encoding MB/s on mixed-language text, next to raw PCRE2");
  tok->add_option("--tokenizer", targs->options.tokenizer, "Folder with tokenizer.json")->required();
  tok->add_option("--mb", targs->options.megabytes, "Size of the generated text in MB")->check(CLI::PositiveNumber);
  tok->add_option("--threads", targs->options.threads, "Threads for batched encoding (0: all cores)")
      ->check(CLI::NonNegativeNumber);
  tok->add_option("--min-seconds", targs->options.min_seconds, "Time each measurement for at least this long")
      ->check(CLI::PositiveNumber);
  tok->add_flag("--quick", targs->options.quick, "0.5 MB of text, short timings (a smoke run)");
  tok->add_option("--save-text", targs->options.save_text, "Also write the generated text to this file");
  tok->add_option("--out", targs->out, "Write the JSON here instead of stdout");
  tok->callback([&run, targs] {
    run = [targs] { return write_output(run_bench_tokenizer(targs->options), targs->out); };
  });

  struct ModelArgs {
    BenchModelOptions options;
    std::string out;
  };
  auto margs = std::make_shared<ModelArgs>();
  CLI::App* mod = bench->add_subcommand("model", "Training, prefill and decode tokens/s of a model preset");
  mod->add_option("--arch", margs->options.arch, "model_type (llama, qwen2, qwen3, qwen2_moe, qwen3_moe, mixtral, olmoe)");
  mod->add_option("--preset", margs->options.preset,
                  "Model preset: tiny, small or gpu (Qwen3-MoE-like, ~2B parameters, for one 80 GB GPU)");
  mod->add_option("--config", margs->options.config, "A config.json (or its folder) instead of --arch/--preset");
  mod->add_option("--device", margs->options.device, "Backend: auto, cpu, cuda or cuda:N");
  mod->add_option("--dtype", margs->options.dtype,
                  "Model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16")
      ->capture_default_str();
  mod->add_option("--train-tokens", margs->options.train_tokens, "Tokens of the packed training batch")
      ->check(CLI::PositiveNumber);
  mod->add_option("--seq-len", margs->options.seq_len, "Sequence length in the training batch")
      ->check(CLI::PositiveNumber);
  mod->add_option("--prompt-len", margs->options.prompt_len, "Prefill length per sequence")->check(CLI::PositiveNumber);
  mod->add_option("--decode-steps", margs->options.decode_steps, "Decode steps per timed run")
      ->check(CLI::PositiveNumber);
  mod->add_option("--batches", margs->options.batches, "Prefill/decode batch sizes")->check(CLI::PositiveNumber);
  mod->add_option("--min-seconds", margs->options.min_seconds, "Time each case for at least this long")
      ->check(CLI::PositiveNumber);
  mod->add_option("--repeats", margs->options.repeats, "Timed runs per case at least (median reported)")
      ->check(CLI::PositiveNumber);
  mod->add_option("--threads", margs->options.threads, "Threads (0: all cores)")->check(CLI::NonNegativeNumber);
  mod->add_flag("--quick", margs->options.quick, "Small sizes, batches 1 and 8 (a smoke run)");
  mod->add_flag("--dry-run", margs->options.dry_run, "Print the config and memory plan only");
  mod->add_option("--save-config", margs->options.save_config,
                  "Also write the model's config.json into this folder (for bench/torch_baseline.py)");
  mod->add_option("--out", margs->out, "Write the JSON here instead of stdout");
  mod->callback([&run, margs] {
    run = [margs] { return write_output(run_bench_model(margs->options), margs->out); };
  });

  struct RolloutArgs {
    BenchRolloutOptions options;
    std::string out;
  };
  auto rargs = std::make_shared<RolloutArgs>();
  BenchRolloutOptions& ro = rargs->options;
  CLI::App* roll = bench->add_subcommand(
      "rollout", "Generation engine tokens/s by group size and batch, prefix sharing next to none");
  roll->add_option("--model", ro.model, "A Hugging Face model folder (or a random model: --arch / --config)");
  roll->add_option("--arch", ro.arch, "model_type of a random-weight preset (llama, qwen2, qwen3, qwen2_moe, ...)");
  roll->add_option("--preset", ro.preset, "With --arch: tiny or small");
  roll->add_option("--config", ro.config, "A config.json (or its folder): a random model of that shape");
  roll->add_option("--device", ro.device, "Backend: auto, cpu, cuda or cuda:N");
  roll->add_option("--dtype", ro.dtype, "Model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16")->capture_default_str();
  roll->add_option("--prompt-tokens", ro.prompt_tokens, "Tokens per prompt (default 64)")->check(CLI::PositiveNumber);
  roll->add_option("--max-tokens", ro.max_tokens, "New tokens per sample (default 16)")->check(CLI::PositiveNumber);
  roll->add_option("--kv-memory", ro.kv_memory, "KV cache bytes, e.g. 256MiB (default: the engine's)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::PositiveNumber);
  roll->add_option("--max-batch", ro.max_batch, "Sequences decoded per engine step at most")->check(CLI::PositiveNumber);
  roll->add_option("--groups", ro.groups, "Group sizes G (samples per prompt)")->check(CLI::PositiveNumber);
  roll->add_option("--seed", ro.seed, "Seed of the weights, prompts and sampling");
  roll->add_option("--threads", ro.threads, "Threads (0: all cores)")->check(CLI::NonNegativeNumber);
  roll->add_flag("--quick", ro.quick, "Prompts of 16 tokens, 8 new tokens, batches up to 2 groups (a smoke run)");
  roll->add_option("--out", rargs->out, "Write the JSON here instead of stdout");
  roll->callback([&run, rargs] {
    run = [rargs] { return write_output(run_bench_rollout(rargs->options), rargs->out); };
  });

  struct LearnerArgs {
    BenchLearnerOptions options;
    std::string out;
  };
  auto largs = std::make_shared<LearnerArgs>();
  BenchLearnerOptions& lo = largs->options;
  CLI::App* learn = bench->add_subcommand("learner", "GRPO learning step tokens/s, split by phase");
  learn->add_option("--model", lo.model, "A Hugging Face model folder (or a random model: --arch)");
  learn->add_option("--arch", lo.arch, "model_type of a random-weight preset (llama, qwen2, qwen3, qwen2_moe, ...)");
  learn->add_option("--preset", lo.preset, "With --arch: tiny or small");
  learn->add_option("--device", lo.device, "Backend: auto, cpu, cuda or cuda:N");
  learn->add_option("--dtype", lo.dtype, "Model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16")->capture_default_str();
  learn->add_option("--prompts", lo.prompts, "Groups in the batch")->check(CLI::PositiveNumber);
  learn->add_option("--group-size", lo.group_size, "Completions per prompt (G)")->check(CLI::PositiveNumber);
  learn->add_option("--prompt-tokens", lo.prompt_tokens, "Tokens per prompt")->check(CLI::PositiveNumber);
  learn->add_option("--completion-tokens", lo.completion_tokens, "Tokens per completion")->check(CLI::PositiveNumber);
  learn->add_option("--beta", lo.beta, "KL coefficient (0: no reference pass)")->check(CLI::NonNegativeNumber);
  learn->add_option("--micro-batch-tokens", lo.micro_batch_tokens, "Token budget of one forward/backward")
      ->check(CLI::PositiveNumber);
  learn->add_option("--repeats", lo.repeats, "Timed steps after one warm-up")->check(CLI::PositiveNumber);
  learn->add_option("--seed", lo.seed, "Seed of the weights and the synthetic batch");
  learn->add_option("--threads", lo.threads, "Threads (0: all cores)")->check(CLI::NonNegativeNumber);
  learn->add_flag("--quick", lo.quick, "2 groups of 4, 16 + 16 tokens, one timed step (a smoke run)");
  learn->add_option("--out", largs->out, "Write the JSON here instead of stdout");
  learn->callback([&run, largs] {
    run = [largs] { return write_output(run_bench_learner(largs->options), largs->out); };
  });
}

}  // namespace grpo::cli
