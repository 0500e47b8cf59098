// ModelConfig: the decoder's hyper-parameters, read from a Hugging Face config.json.
//
// One configurable decoder covers these model_types, with the semantics of the transformers
// implementation of each (modeling_<type>.py):
//
//   model_type  attention                                  FFN
//   llama       GQA; q/k/v/o bias iff attention_bias       SwiGLU (bias iff mlp_bias)
//   qwen2       GQA; q/k/v bias (always), o no bias        SwiGLU
//   qwen3       GQA; RMSNorm of each q/k head (q_norm [D]) SwiGLU
//               before RoPE; q/k/v/o bias iff attention_bias
//   qwen2_moe   as qwen2 (q/k/v bias iff qkv_bias, default  routed experts (softmax top-k,
//               true)                                      renormalised iff norm_topk_prob) plus a
//                                                          shared expert scaled by
//                                                          sigmoid(shared_expert_gate x)
//   qwen3_moe   as qwen3                                   routed experts (no shared expert)
//   mixtral     GQA, no bias                               routed experts, always renormalised
//                                                          (block_sparse_moe.experts.j.w1/w2/w3)
//   olmoe       GQA; RMSNorm over the whole q projection   routed experts, renormalised iff
//               (q_norm [Hq*D]) and k projection           norm_topk_prob
//               (k_norm [Hkv*D]) before RoPE
//
// qwen2_moe / qwen3_moe: layer i is a MoE layer iff i is not in mlp_only_layers, num_experts > 0
// and (i + 1) % decoder_sparse_step == 0; other layers are dense with intermediate_size.
// mixtral / olmoe: every layer is a MoE layer.
//
// Reading config.json: every key that changes the computation is read; a value this decoder
// does not implement is a grpo::Error naming the key and the value (hidden_act other than
// silu, sliding-window attention, attention_dropout != 0 (dropout is not implemented, and a
// GRPO learner wants deterministic log-probs), olmoe clip_qkv, mixtral router_jitter_noise,
// unknown rope types). Keys that do not change the math (architectures, torch_dtype,
// use_cache, transformers_version, pretraining_tp, ...) are ignored. Missing keys take the
// default of the model_type's transformers configuration class.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/rope.h"

namespace grpo {

enum class ModelArch : uint8_t { llama, qwen2, qwen3, qwen2_moe, qwen3_moe, mixtral, olmoe };

// How the query/key projections are normalised before RoPE.
enum class QkNorm : uint8_t {
  none,
  per_head,  // qwen3, qwen3_moe: RMSNorm over each head's D values, weight [D]
  full,      // olmoe: RMSNorm over the whole projection, weight [Hq*D] (q) and [Hkv*D] (k)
};

struct ModelConfig {
  std::string model_type = "llama";  // the Hugging Face model_type
  ModelArch arch = ModelArch::llama;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;            // C
  int64_t intermediate_size = 0;      // dense FFN width (mixtral/olmoe: the expert width, and
                                      // moe_intermediate_size is set to the same value)
  int64_t num_hidden_layers = 0;      // L
  int64_t num_attention_heads = 0;    // Hq
  int64_t num_key_value_heads = 0;    // Hkv
  int64_t head_dim = 0;               // D (config head_dim, else hidden_size / Hq)
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double initializer_range = 0.02;
  bool tie_word_embeddings = false;

  // RoPE: theta, scaling and partial rotary factor (head_dim filled in from above).
  RopeConfig rope;

  // Attention projections.
  bool qkv_bias = false;  // q_proj, k_proj, v_proj have a bias
  bool o_bias = false;    // o_proj has a bias
  QkNorm qk_norm = QkNorm::none;
  bool mlp_bias = false;  // llama mlp_bias: dense gate/up/down projections have a bias

  // Mixture of experts (num_experts == 0: dense model).
  int64_t num_experts = 0;                       // E
  int64_t num_experts_per_tok = 0;               // K (top-k)
  int64_t moe_intermediate_size = 0;             // width of each routed expert (F_e)
  int64_t shared_expert_intermediate_size = 0;   // qwen2_moe shared expert width (0: none)
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  bool norm_topk_prob = false;
  bool output_router_logits = false;             // add the load-balancing loss in training
  double router_aux_loss_coef = 0.0;

  // Token ids written back to config.json (not used by the math).
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;            // int or list in config.json
  std::optional<int64_t> pad_token_id;           // also the embedding's padding_idx (no gradient)
  std::string torch_dtype = "float32";

  bool is_moe() const { return num_experts > 0; }
  bool is_moe_layer(int64_t layer) const;
  int64_t num_moe_layers() const;
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // The HF architectures entry, e.g. "Qwen3MoeForCausalLM".
  std::string architecture_name() const;

  // Checks sizes and combinations; throws grpo::Error naming the field. Called by the
  // parsers and presets; call it after editing a config by hand.
  void validate() const;
};

// All supported model_type strings, in a fixed order.
const std::vector<std::string>& supported_model_types();
// The arch of a model_type; throws naming it (and the supported ones) when unknown.
ModelArch model_arch_from_type(const std::string& model_type);

// Parses config.json text; `source` names the file in messages.
ModelConfig model_config_from_json_text(const std::string& text, const std::string& source);
// Reads `path` (a config.json file, or a directory holding one).
ModelConfig load_model_config(const std::string& path);
// config.json text (pretty-printed) that transformers and this parser both read back.
std::string model_config_to_json_text(const ModelConfig& cfg);
// Writes dir/config.json.
void save_model_config(const ModelConfig& cfg, const std::string& dir);

// Presets: "tiny" (a few hundred thousand parameters, byte-level vocabulary of 272: the 256
// bytes, the byte tokenizer's specials, padding) for tests and the quickstart, and "small"
// (tens of millions of parameters, vocabulary 32000) for benchmarks. arch is a model_type.
ModelConfig model_preset(const std::string& arch, const std::string& preset);
const std::vector<std::string>& model_preset_names();

}  // namespace grpo
