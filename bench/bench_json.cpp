#include "bench/bench_json.h"

namespace grpo {

nlohmann::ordered_json model_config_json(const ModelConfig& cfg) {
  nlohmann::ordered_json j;
  j["model_type"] = cfg.model_type;
  j["vocab_size"] = cfg.vocab_size;
  j["hidden_size"] = cfg.hidden_size;
  j["num_hidden_layers"] = cfg.num_hidden_layers;
  j["num_attention_heads"] = cfg.num_attention_heads;
  j["num_key_value_heads"] = cfg.num_key_value_heads;
  j["head_dim"] = cfg.head_dim;
  j["intermediate_size"] = cfg.intermediate_size;
  if (cfg.is_moe()) {
    j["num_experts"] = cfg.num_experts;
    j["num_experts_per_tok"] = cfg.num_experts_per_tok;
    j["moe_intermediate_size"] = cfg.moe_intermediate_size;
    if (cfg.shared_expert_intermediate_size > 0) j["shared_expert_intermediate_size"] = cfg.shared_expert_intermediate_size;
  }
  j["tie_word_embeddings"] = cfg.tie_word_embeddings;
  return j;
}

}  // namespace grpo
