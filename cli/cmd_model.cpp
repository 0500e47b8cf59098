// `grpo model init|info`: make a random-initialised Hugging Face model directory, and
// describe one (parameter counts, memory needed for inference and training).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/ops.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/params.h"

namespace grpo::cli {

namespace {

using Json = nlohmann::ordered_json;

struct InitArgs {
  std::string arch, preset, config, out, dtype = "f32";
  std::string tokenizer;  // "": the byte-level tokenizer of the source tree when present; "none": skip
  uint64_t seed = 0;
};

struct InfoArgs {
  std::string dir;
  int64_t tokens = 4096;
  bool recompute = false;
};

int run_init(const InitArgs& a) {
  GRPO_CHECK(a.preset.empty() != a.config.empty(), "grpo model init: give exactly one of --preset and --config");
  ModelConfig cfg;
  if (!a.preset.empty()) {
    GRPO_CHECK(!a.arch.empty(), "grpo model init: --preset needs --arch (one of the supported model_types)");
    cfg = model_preset(a.arch, a.preset);
  } else {
    cfg = load_model_config(a.config);
    GRPO_CHECK(a.arch.empty() || a.arch == cfg.model_type,
               "grpo model init: --arch " << a.arch << " but " << a.config << " has model_type " << cfg.model_type);
  }
  GRPO_CHECK(a.dtype == "f32" || a.dtype == "bf16",
             "grpo model init: --dtype " << a.dtype << " (expected f32 or bf16)");
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 1;
  limits.max_seqs = 1;
  limits.training = false;
  Model model(cfg, *ops, limits);
  model.init_weights(a.seed);
  model.save(a.out, a.dtype == "bf16" ? DType::bf16 : DType::f32);

  // Tokenizer files: the byte-level tokenizer (259 ids) by default, when the source tree's copy
  // exists and its ids fit the vocabulary; an explicit --tokenizer folder must exist.
  namespace fs = std::filesystem;
  std::string tok_dir = a.tokenizer;
  if (tok_dir.empty()) {
    const bool usable = fs::exists(fs::path(GRPO_DEFAULT_TOKENIZER_DIR) / "tokenizer.json") && cfg.vocab_size >= 259;
    tok_dir = usable ? GRPO_DEFAULT_TOKENIZER_DIR : "none";
  }
  bool tokenizer = false;
  if (tok_dir != "none") {
    const fs::path src(tok_dir);
    GRPO_CHECK(fs::exists(src / "tokenizer.json"), "grpo model init: --tokenizer " << tok_dir
                                                                                   << " has no tokenizer.json");
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
      if (!fs::exists(src / f)) continue;
      std::error_code ec;
      fs::copy_file(src / f, fs::path(a.out) / f, fs::copy_options::overwrite_existing, ec);
      GRPO_CHECK(!ec, "grpo model init: cannot copy " << (src / f).string() << " (" << ec.message() << ")");
    }
    tokenizer = true;
  }
  const ModelParamCounts n = count_model_params(cfg);
  Json doc;
  doc["out"] = a.out;
  doc["model_type"] = cfg.model_type;
  doc["params"] = n.total;
  doc["active_params_per_token"] = n.active_per_token;
  doc["dtype"] = a.dtype;
  doc["seed"] = a.seed;
  doc["tokenizer"] = tokenizer;
  std::printf("%s\n", doc.dump(2).c_str());
  return 0;
}

int run_info(const InfoArgs& a) {
  const ModelConfig cfg = load_model_config(a.dir);
  const ModelParamCounts n = count_model_params(cfg);
  GRPO_CHECK(a.tokens >= 1, "grpo model info: --tokens " << a.tokens << " (expected >= 1)");
  ModelLimits limits;
  limits.max_tokens = a.tokens;
  limits.max_seqs = 1;
  limits.training = true;
  limits.recompute = a.recompute;
  const int64_t N = n.total;
  const int64_t acts = int64_t(Model::training_arena_bytes(cfg, limits));
  const int64_t kv_per_token = 2 * cfg.num_hidden_layers * cfg.kv_dim() * 2;  // bf16 K and V

  Json doc;
  doc["dir"] = a.dir;
  doc["model_type"] = cfg.model_type;
  doc["architecture"] = cfg.architecture_name();
  doc["layers"] = cfg.num_hidden_layers;
  doc["moe_layers"] = cfg.num_moe_layers();
  doc["experts"] = cfg.num_experts;
  doc["experts_per_token"] = cfg.num_experts_per_tok;
  doc["shared_expert"] = cfg.shared_expert_intermediate_size > 0;
  doc["hidden_size"] = cfg.hidden_size;
  doc["attention_heads"] = cfg.num_attention_heads;
  doc["kv_heads"] = cfg.num_key_value_heads;
  doc["head_dim"] = cfg.head_dim;
  doc["vocab_size"] = cfg.vocab_size;
  doc["tie_word_embeddings"] = cfg.tie_word_embeddings;
  doc["params"] = {{"total", n.total},
                   {"active_per_token", n.active_per_token},
                   {"embedding", n.embedding},
                   {"routed_experts", n.experts}};
  doc["memory_bytes"] = {
      {"inference_bf16",
       {{"weights", 2 * N}, {"kv_cache_per_token", kv_per_token}, {"note", "bf16 weights; K and V of every layer"}}},
      {"training",
       {{"weights_f32", 4 * N},
        {"grads_f32", 4 * N},
        {"adamw_moments_f32", 8 * N},
        {"activations", acts},
        {"total", 16 * N + acts},
        {"activation_tokens", a.tokens},
        {"recompute", a.recompute},
        {"note", "f32 master weights, grads and two AdamW moments; activations as the model's arena holds them "
                 "(f32) for one packed batch of activation_tokens tokens"}}}};
  int64_t ckpt_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(a.dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") ckpt_bytes += int64_t(e.file_size());
  doc["checkpoint_bytes"] = ckpt_bytes;
  std::printf("%s\n", doc.dump(2).c_str());
  return 0;
}

}  // namespace

void add_model_commands(CLI::App& app, Runner& run) {
  CLI::App* model = app.add_subcommand("model", "Make and inspect Hugging Face model directories");
  model->require_subcommand(1);

  auto ia = std::make_shared<InitArgs>();
  CLI::App* init =
      model->add_subcommand("init", "Write a random-initialised model (config.json, safetensors, tokenizer)");
  init->add_option("--arch", ia->arch, "model_type: llama, qwen2, qwen3, qwen2_moe, qwen3_moe, mixtral, olmoe");
  init->add_option("--preset", ia->preset, "Preset size: tiny (tests, quickstart) or small (benchmarks)");
  init->add_option("--config", ia->config, "A Hugging Face config.json (file or folder) instead of a preset");
  init->add_option("--out", ia->out, "Output folder")->required();
  init->add_option("--seed", ia->seed, "Initialisation seed");
  init->add_option("--dtype", ia->dtype, "Weights on disk: f32 or bf16");
  init->add_option("--tokenizer", ia->tokenizer,
                   "Folder whose tokenizer files are copied (default: the byte-level tokenizer when the "
                   "vocabulary holds its 259 ids; none: skip)");
  init->callback([&run, ia] { run = [ia] { return run_init(*ia); }; });

  auto fa = std::make_shared<InfoArgs>();
  CLI::App* info = model->add_subcommand("info", "Parameters, layers, experts and memory of a model folder (JSON)");
  info->add_option("dir", fa->dir, "Model folder (config.json)")->required();
  info->add_option("--tokens", fa->tokens, "Tokens of one training batch for the activation estimate");
  info->add_flag("--recompute", fa->recompute, "Estimate activations with per-layer recomputation");
  info->callback([&run, fa] { run = [fa] { return run_info(*fa); }; });
}

}  // namespace grpo::cli
