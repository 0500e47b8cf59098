// `grpo generate --model DIR --prompt TEXT [--n K] [--seed S] [--max-tokens M] ...`: sample
// completions with the rollout engine in-process (rollout/engine.h), the code path of
// `grpo rollout serve`, so what this prints is what a worker would return.
//   grpo generate --model ckpt --prompt "1 + 1 =" --n 4 --seed 7 --max-tokens 64
//   grpo generate --model ckpt --prompt "Solve x^2 = 4" --format r1_zero --json
// Completions stop at the tokenizer's EOS (and the chat format's end-of-turn token) unless
// --ignore-eos. One sample on a terminal streams its text as it is generated.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/prompt_format.h"
#include "policy/tokenizer.h"
#include "rollout/engine.h"

namespace grpo::cli {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct GenerateArgs {
  std::string model, prompt, format = "raw", system, device = "auto", dtype = "auto";
  int64_t n = 1, max_tokens = 256, top_k = 0, kv_memory = 0;
  uint64_t seed = 0;
  float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
  std::vector<std::string> stop;
  bool ignore_eos = false, json = false, stream = false, eager = false;
};

// A CLI11 check that `ok(value)` holds for a number; `range` describes the accepted values.
CLI::Validator number_in(const std::string& range, std::function<bool(double)> ok) {
  return CLI::Validator(
      [range, ok](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || !std::isfinite(v) || !ok(v)) return "value " + s + " is not in " + range;
        return "";
      },
      range);
}

// The text of a completion: special tokens (EOS) left out, and ids past the tokenizer's
// vocabulary too (a model's vocabulary is often padded beyond it; such ids have no text).
std::string completion_text(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<int32_t> known;
  for (int32_t id : ids)
    if (tok.is_valid(id)) known.push_back(id);
  return tok.decode(known, /*skip_special=*/true);
}

// Writes text as is (a completion may hold NUL bytes) and flushes, so a reader sees it now.
void write_text(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// Sample 0's text written to stdout as its tokens arrive, the same text completion_text gives:
// DecodeStream holds back the bytes of an unfinished UTF-8 character.
struct Streamer {
  explicit Streamer(const Tokenizer& tok) : tok(tok), decode(tok, /*skip_special=*/true) {}
  void push(int32_t token) {
    if (tok.is_valid(token)) write_text(decode.push(token));
  }
  void finish() { write_text(decode.finish()); }
  const Tokenizer& tok;
  DecodeStream decode;
};

int run_generate(const GenerateArgs& a) {
  GRPO_CHECK(fs::is_directory(a.model), "--model " << a.model << ": no such directory");
  GRPO_CHECK(fs::exists(fs::path(a.model) / "tokenizer.json"),
             "--model " << a.model << " has no tokenizer.json (generate encodes the prompt with the model's tokenizer)");
  const Tokenizer tok = Tokenizer::from_dir(a.model);
  PromptFormatOptions fo;
  fo.format = a.format;
  if (a.format == "raw") fo.template_text = "{prompt}";  // the prompt as given
  fo.system = a.system;
  const PromptFormat format = PromptFormat::create(fo, tok.special_tokens());
  rollout::Request req;
  req.prompt = format.encode(tok, a.prompt);
  GRPO_CHECK(!req.prompt.empty(), "--prompt: the prompt is empty (it encodes to no tokens)");
  const int64_t prompt_tokens = int64_t(req.prompt.size());
  rollout::SamplingOptions& s = req.sampling;
  s.temperature = a.temperature;
  s.top_k = a.top_k;
  s.top_p = a.top_p;
  s.min_p = a.min_p;
  s.max_new_tokens = a.max_tokens;
  s.n = a.n;
  s.seed = a.seed;
  s.stop_strings = a.stop;
  if (!a.ignore_eos) s.stop_token_ids = format.stop_ids(tok);

  std::unique_ptr<Ops> ops = make_ops(a.device);
  const DType dtype = resolve_dtype(a.dtype, *ops);

  // KV memory for the whole group without sharing (an upper bound), unless --kv-memory says.
  const ModelConfig mcfg = load_model_config(a.model);
  rollout::EngineConfig ec;
  ec.max_batch = a.n;
  const int64_t len = std::min<int64_t>(prompt_tokens + a.max_tokens, mcfg.max_position_embeddings);
  const int64_t blocks = a.n * ((len + ec.block_size - 1) / ec.block_size) + 1;
  ec.kv_memory_bytes = a.kv_memory > 0 ? a.kv_memory
                                       : int64_t(KvCache::bytes_needed(
                                             mcfg, {.num_blocks = blocks, .block_size = ec.block_size, .dtype = dtype}));

  ModelLimits limits = rollout::engine_model_limits(ec);
  limits.dtype = dtype;
  if (a.eager) limits.decode_graphs = DecodeGraphs::off;
  std::unique_ptr<Model> model = load_model(a.model, *ops, limits);
  rollout::Engine engine(*model, ec, &tok);

  const bool stream = a.n == 1 && !a.json && (a.stream || isatty(fileno(stdout)));
  std::unique_ptr<Streamer> streamer;
  if (stream) {
    streamer = std::make_unique<Streamer>(tok);
    req.on_token = [&](int64_t, int32_t token) { streamer->push(token); };
  }
  std::vector<rollout::GroupResult> out = engine.generate({std::move(req)});
  GRPO_ASSERT(out.size() == 1 && int64_t(out[0].samples.size()) == a.n);

  const std::vector<rollout::Sample>& samples = out[0].samples;
  for (size_t i = 0; i < samples.size(); ++i) {
    const rollout::Sample& x = samples[i];
    const std::string text = completion_text(tok, x.tokens);
    if (a.json) {
      Json j;
      j["index"] = i;
      j["text"] = text;
      j["token_ids"] = x.tokens;
      j["logprobs"] = x.logprobs;
      j["finish_reason"] = rollout::finish_reason_name(x.finish);
      j["num_tokens"] = x.tokens.size();
      j["prompt_tokens"] = prompt_tokens;
      std::printf("%s\n", j.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
    } else if (streamer) {
      streamer->finish();
      write_text("\n");
    } else {
      if (a.n > 1)
        std::printf("--- sample %zu of %lld (%s, %zu tokens)\n", i + 1, static_cast<long long>(a.n),
                    rollout::finish_reason_name(x.finish), x.tokens.size());
      write_text(text + "\n");
    }
  }
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Sample completions from a model (the rollout engine, in process)");
  cmd->add_option("--model", args->model, "Hugging Face model folder (config.json, weights, tokenizer.json)")->required();
  cmd->add_option("--prompt", args->prompt, "The prompt text")->required();
  const CLI::Validator positive = number_in("[1, inf)", [](double v) { return v >= 1; });
  cmd->add_option("--n", args->n, "Completions of the prompt (the group size)")->check(positive);
  cmd->add_option("--seed", args->seed, "Sampling seed: the same seed gives the same completions");
  cmd->add_option("--max-tokens", args->max_tokens, "New tokens per completion at most")->check(positive);
  cmd->add_option("--temperature", args->temperature, "Softmax temperature (0: greedy)")
      ->check(number_in("[0, inf)", [](double v) { return v >= 0; }));
  cmd->add_option("--top-p", args->top_p, "Nucleus sampling mass, in (0, 1]")
      ->check(number_in("(0, 1]", [](double v) { return v > 0 && v <= 1; }));
  cmd->add_option("--top-k", args->top_k, "Sample among the k likeliest tokens (0: off)")
      ->check(number_in("[0, inf)", [](double v) { return v >= 0; }));
  cmd->add_option("--min-p", args->min_p, "Drop tokens below min_p x the top probability, in [0, 1)")
      ->check(number_in("[0, 1)", [](double v) { return v >= 0 && v < 1; }));
  cmd->add_option("--format", args->format, "Prompt format: raw (the text as given), r1_zero, chatml or deepseek_v3")
      ->check(CLI::IsMember({"raw", "r1_zero", "chatml", "deepseek_v3"}));
  cmd->add_option("--system", args->system, "System message for --format chatml / deepseek_v3");
  cmd->add_option("--stop", args->stop, "Stop strings (the completion ends with the first one produced)");
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Do not stop at EOS / end of turn: generate --max-tokens");
  cmd->add_option("--device", args->device, "Backend: auto, cpu, cuda or cuda:N");
  cmd->add_option("--dtype", args->dtype, "Model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("--eager", args->eager, "Decode op by op: no CUDA graphs for the decode step (the default captures them on CUDA)");
  cmd->add_option("--kv-memory", args->kv_memory, "KV cache bytes, e.g. 512MiB (default: what the group needs)")
      ->transform(CLI::AsSizeValue(false))
      ->check(positive);
  cmd->add_flag("--json", args->json,
                "One JSON object per completion: index, text, token_ids, logprobs, finish_reason, num_tokens");
  cmd->add_flag("--stream", args->stream, "Stream the text as it is generated (default on a terminal; --n 1 only)");
  cmd->callback([&run, args] {
    if (args->stream && (args->n != 1 || args->json))
      throw CLI::ValidationError("--stream", "prints one completion as text: it needs --n 1 and no --json");
    if (!args->system.empty() && args->format != "chatml" && args->format != "deepseek_v3")
      throw CLI::ValidationError("--system", "needs a chat --format (chatml or deepseek_v3)");
    run = [args] { return run_generate(*args); };
  });
}

}  // namespace grpo::cli
