// config.json parsing: published Hugging Face configs (parameter counts against the published
// totals), presets, round trips, and unsupported values named in errors.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/params.h"

namespace grpo {
namespace {

// Abridged from the Hub config.json files (fields that do not change the math left out).
const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

const char* kMixtral8x7B = R"({
  "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
  "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
  "output_router_logits": false, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.02, "sliding_window": null, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32000})";

const char* kQwen3_30B_A3B = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 6144,
  "max_position_embeddings": 40960, "max_window_layers": 48, "mlp_only_layers": [],
  "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": true,
  "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
  "num_key_value_heads": 4, "output_router_logits": false, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

const char* kQwen15MoE = R"({
  "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "decoder_sparse_step": 1, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192,
  "max_window_layers": 21, "model_type": "qwen2_moe", "moe_intermediate_size": 1408,
  "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 60, "num_experts_per_tok": 4,
  "num_hidden_layers": 24, "num_key_value_heads": 16, "output_router_logits": false,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
  "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

const char* kOlmoe = R"({
  "architectures": ["OlmoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "clip_qkv": null, "eos_token_id": 50279, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 1024, "max_position_embeddings": 4096,
  "model_type": "olmoe", "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 64,
  "num_experts_per_tok": 8, "num_hidden_layers": 16, "num_key_value_heads": 16,
  "output_router_logits": false, "pad_token_id": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "rope_theta": 10000.0, "router_aux_loss_coef": 0.01, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 50304})";

TEST(ModelConfigHub, Llama31_8B) {
  const ModelConfig c = model_config_from_json_text(kLlama31_8B, "llama.json");
  EXPECT_EQ(c.arch, ModelArch::llama);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope.scaling.type, "llama3");
  EXPECT_EQ(c.rope.scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(count_model_params(c).total, 8030261248);  // published: 8.03B
}

TEST(ModelConfigHub, Mixtral8x7B) {
  const ModelConfig c = model_config_from_json_text(kMixtral8x7B, "mixtral.json");
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.moe_intermediate_size, 14336);
  const ModelParamCounts n = count_model_params(c);
  EXPECT_EQ(n.total, 46702792704);  // published: 46.7B total, 12.9B active
  EXPECT_NEAR(double(n.active_per_token) / 1e9, 12.9, 0.05);
}

TEST(ModelConfigHub, Qwen3_30B_A3B) {
  const ModelConfig c = model_config_from_json_text(kQwen3_30B_A3B, "qwen3moe.json");
  EXPECT_EQ(c.head_dim, 128);  // != 2048 / 32
  EXPECT_EQ(c.qk_norm, QkNorm::per_head);
  EXPECT_EQ(c.num_moe_layers(), 48);
  const ModelParamCounts n = count_model_params(c);
  EXPECT_NEAR(double(n.total) / 1e9, 30.5, 0.05);  // published: 30.5B total, 3.3B active
  EXPECT_NEAR(double(n.active_per_token) / 1e9, 3.3, 0.1);
}

TEST(ModelConfigHub, Qwen15MoeA27B) {
  const ModelConfig c = model_config_from_json_text(kQwen15MoE, "qwen2moe.json");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.shared_expert_intermediate_size, 5632);
  const ModelParamCounts n = count_model_params(c);
  EXPECT_NEAR(double(n.total) / 1e9, 14.3, 0.1);  // published: 14.3B total, 2.7B active
  EXPECT_NEAR(double(n.active_per_token) / 1e9, 2.7, 0.1);
}

TEST(ModelConfigHub, Olmoe1B7B) {
  const ModelConfig c = model_config_from_json_text(kOlmoe, "olmoe.json");
  EXPECT_EQ(c.qk_norm, QkNorm::full);
  EXPECT_EQ(c.pad_token_id.value_or(-1), 1);
  EXPECT_FALSE(c.norm_topk_prob);
  const ModelParamCounts n = count_model_params(c);
  EXPECT_NEAR(double(n.total) / 1e9, 6.9, 0.05);  // published: 6.9B total, 1.3B active
  EXPECT_NEAR(double(n.active_per_token) / 1e9, 1.3, 0.05);
}

// transformers >= 5 writes rope_parameters (holding rope_theta) instead of rope_theta/rope_scaling.
TEST(ModelConfigHub, RopeParametersOfTransformers5) {
  const ModelConfig c = model_config_from_json_text(
      R"({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
          "intermediate_size": 128, "vocab_size": 100,
          "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192}})",
      "v5.json");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.scaling.factor, 32.0);
}

TEST(ModelConfigPresets, TinyAndSmallOfEveryArchitecture) {
  for (const std::string& arch : supported_model_types()) {
    const ModelConfig tiny = model_preset(arch, "tiny");
    const ModelParamCounts t = count_model_params(tiny);
    EXPECT_GE(t.total, 100000) << arch;
    EXPECT_LE(t.total, 600000) << arch;
    EXPECT_GE(tiny.vocab_size, 259) << arch << ": the byte-level tokenizer has 259 tokens";
    const ModelParamCounts s = count_model_params(model_preset(arch, "small"));
    EXPECT_GE(s.total, 20000000) << arch;
    EXPECT_LE(s.total, 60000000) << arch;
    // Round trip through config.json.
    const std::string text = model_config_to_json_text(tiny);
    const ModelConfig back = model_config_from_json_text(text, "roundtrip.json");
    EXPECT_EQ(model_config_to_json_text(back), text) << arch;
    EXPECT_EQ(count_model_params(back).total, t.total) << arch;
  }
  EXPECT_THROW(model_preset("qwen3", "huge"), Error);
}

void expect_error(const std::string& json, const std::string& what1, const std::string& what2) {
  try {
    model_config_from_json_text(json, "bad.json");
    FAIL() << "expected an error mentioning " << what1;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("bad.json"), std::string::npos) << m;
    EXPECT_NE(m.find(what1), std::string::npos) << m;
    EXPECT_NE(m.find(what2), std::string::npos) << m;
  }
}

TEST(ModelConfigErrors, UnsupportedValuesAreNamed) {
  const std::string base = R"("hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                              "intermediate_size": 128, "vocab_size": 300)";
  expect_error(R"({"model_type": "gpt2", )" + base + "}", "model_type", "gpt2");
  expect_error(R"({"model_type": "llama", "hidden_act": "gelu", )" + base + "}", "hidden_act", "gelu");
  expect_error(R"({"model_type": "llama", "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}, )" + base + "}",
               "rope_scaling.rope_type", "dynamic");
  expect_error(R"({"model_type": "llama", "rope_scaling": {"type": "longrope", "factor": 2.0}, )" + base + "}",
               "rope_scaling.type", "longrope");
  expect_error(R"({"model_type": "qwen2", "use_sliding_window": true, )" + base + "}", "use_sliding_window", "true");
  expect_error(R"({"model_type": "qwen3", "attention_dropout": 0.1, )" + base + "}", "attention_dropout", "0.1");
  expect_error(R"({"model_type": "olmoe", "clip_qkv": 8.0, "num_experts": 4, "num_experts_per_tok": 2, )" + base + "}",
               "clip_qkv", "8");
  expect_error(R"({"model_type": "mixtral", "router_jitter_noise": 0.1, )" + base + "}", "router_jitter_noise", "0.1");
  expect_error(R"({"model_type": "mixtral", "sliding_window": 16, )" + base + "}", "sliding_window", "16");
  expect_error(R"({"model_type": "llama", "num_key_value_heads": 3, )" + base + "}", "num_key_value_heads", "3");
  expect_error(R"({"model_type": "qwen3_moe", "num_experts": 4, "num_experts_per_tok": 5, )" + base + "}",
               "num_experts_per_tok", "5");
  expect_error(R"({"model_type": "llama", "hidden_size": "big"})", "hidden_size", "big");
  expect_error("{not json", "not valid JSON", "bad.json");
}

// A Model refuses batches past its limits and configs it cannot run (validate is re-run).
TEST(ModelConfigErrors, ModelValidatesItsConfig) {
  ModelConfig c = model_preset("qwen3_moe", "tiny");
  c.num_experts_per_tok = 0;
  auto ops = make_cpu_ops();
  EXPECT_THROW(Model(c, *ops, ModelLimits{}), Error);
}

}  // namespace
}  // namespace grpo
