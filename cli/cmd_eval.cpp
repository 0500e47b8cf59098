// `grpo eval --model DIR --data FILE [--n K] [--temperature T] ...`: pass@k, maj@k and mean
// length of a model on a dataset (learner/eval.h), sampled with the rollout engine in process.
//   grpo eval --model ckpt --data test.jsonl --n 8 --temperature 0.6 --format r1_zero --json out.json
//   grpo eval --model ckpt --data arithmetic:2:100 --n 4
// Prints the table on stdout; --json OUT also writes every metric and every sample's score.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "learner/datasets.h"
#include "learner/eval.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/prompt_format.h"
#include "policy/tokenizer.h"
#include "rewards/builtin.h"
#include "rollout/engine.h"

namespace grpo::cli {

namespace {

namespace fs = std::filesystem;

struct EvalArgs {
  std::string model, data, format = "raw", template_text = "{prompt}", checker, device = "auto", dtype = "auto", json;
  EvalOptions opt;
  int64_t max_batch = 64;
  bool eager = false;
};

int run_eval_command(const EvalArgs& a) {
  GRPO_CHECK(fs::is_directory(a.model), "--model " << a.model << ": no such directory");
  GRPO_CHECK(fs::exists(fs::path(a.model) / "tokenizer.json"), "--model " << a.model << " has no tokenizer.json");
  const std::vector<EvalProblem> problems = load_eval_data(a.data);
  GRPO_CHECK(!problems.empty(), "--data " << a.data << ": no problems");
  rewards::CheckerRegistry registry;
  rewards::register_builtin_checkers(registry);
  register_dataset_checkers(registry);

  const Tokenizer tok = Tokenizer::from_dir(a.model);
  PromptFormatOptions fo;
  fo.format = a.format;
  if (a.format == "raw") fo.template_text = a.template_text;
  const PromptFormat format = PromptFormat::create(fo, tok.special_tokens());

  std::unique_ptr<Ops> ops = make_ops(a.device);
  const DType dtype = resolve_dtype(a.dtype, *ops);

  // KV memory for a full batch of the longest prompt plus --max-tokens (preemption covers the
  // rest), like `grpo generate`.
  const ModelConfig mcfg = load_model_config(a.model);
  int64_t longest = 1;
  for (const EvalProblem& p : problems) longest = std::max<int64_t>(longest, int64_t(format.encode(tok, p.prompt).size()));
  rollout::EngineConfig ec;
  ec.max_batch = std::min<int64_t>(a.max_batch, a.opt.n * int64_t(problems.size()));
  const int64_t len = std::min<int64_t>(longest + a.opt.max_tokens, mcfg.max_position_embeddings);
  const int64_t blocks = ec.max_batch * ((len + ec.block_size - 1) / ec.block_size) + 1;
  ec.kv_memory_bytes =
      int64_t(KvCache::bytes_needed(mcfg, {.num_blocks = blocks, .block_size = ec.block_size, .dtype = dtype}));
  ModelLimits limits = rollout::engine_model_limits(ec);
  limits.dtype = dtype;
  if (a.eager) limits.decode_graphs = DecodeGraphs::off;
  std::unique_ptr<Model> model = load_model(a.model, *ops, limits);
  rollout::Engine engine(*model, ec, &tok);

  const EvalResult r = run_eval(engine, tok, format, problems, registry, a.opt);
  if (!a.json.empty()) {
    const std::string tmp = a.json + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary);
      GRPO_CHECK(out, "--json " << a.json << ": cannot write " << tmp);
      out << eval_result_json(r) << "\n";
      GRPO_CHECK(out.flush(), "--json " << a.json << ": write failed");
    }
    fs::rename(tmp, a.json);  // a finished file or none
  }
  std::fputs(eval_result_table(r).c_str(), stdout);
  return 0;
}

CLI::Validator at_least(double lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || !std::isfinite(v) || v < lo)
          return "value " + s + " must be >= " + CLI::detail::to_string(lo);
        return "";
      },
      ">= " + CLI::detail::to_string(lo));
}

}  // namespace

void add_eval_command(CLI::App& app, Runner& run) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "pass@k, maj@k and mean length of a model on a dataset");
  cmd->add_option("--model", a->model, "Hugging Face model folder (config.json, weights, tokenizer.json)")->required();
  cmd->add_option("--data", a->data,
                  "JSONL with prompt, reference (and checker), or arithmetic:LEVEL:COUNT / countdown:COUNT")
      ->required();
  cmd->add_option("--n", a->opt.n, "Samples per problem (pass@k and maj@k for k = 1, 2, 4, ... <= n)")->check(at_least(1));
  cmd->add_option("--temperature", a->opt.temperature, "Softmax temperature (0: greedy)")->check(at_least(0));
  cmd->add_option("--top-p", a->opt.top_p, "Nucleus sampling mass, in (0, 1]")->check(CLI::Range(1e-9, 1.0));
  cmd->add_option("--max-tokens", a->opt.max_tokens, "New tokens per completion at most")->check(at_least(1));
  cmd->add_option("--format", a->format, "Prompt format: raw (the text as given), r1_zero, chatml or deepseek_v3")
      ->check(CLI::IsMember({"raw", "r1_zero", "chatml", "deepseek_v3"}));
  cmd->add_option("--template", a->template_text, "The raw format's template, with {prompt} where the task text goes (use the one the model was trained with)");
  cmd->add_option("--checker", a->checker, "Score every problem with this checker (default: each record's \"checker\")");
  cmd->add_option("--threshold", a->opt.correct_threshold, "A sample is correct when its reward >= this");
  cmd->add_option("--device", a->device, "Backend: auto, cpu, cuda or cuda:N");
  cmd->add_option("--dtype", a->dtype, "Model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("--eager", a->eager, "Decode op by op: no CUDA graphs for the decode step (the default captures them on CUDA)");
  cmd->add_option("--json", a->json, "Also write the metrics and every sample's score to this file");
  cmd->add_option("--seed", a->opt.seed, "Sampling seed: the same seed gives the same samples");
  cmd->add_option("--max-batch", a->max_batch, "Sequences decoded together")->check(at_least(1));
  cmd->callback([&run, a] {
    a->opt.checker = a->checker;
    run = [a] { return run_eval_command(*a); };
  });
}

}  // namespace grpo::cli
