// Rotary embedding tables from Hugging Face config fields, computed on the host once per
// model: the inverse frequency of each rotated pair and the attention scaling that multiplies
// cos and sin. The numbers follow transformers' modeling_rope_utils.py (default, linear,
// llama3 and yarn rope types), including its float32 evaluation order, so inv_freq agrees
// with Hugging Face's to about 1 ulp (its pow is a 1-ulp vector pow; ours is correctly
// rounded).
//
//   RopeConfig cfg;                      // from config.json
//   cfg.theta = 500000; cfg.head_dim = 128; cfg.max_position_embeddings = 131072;
//   cfg.scaling.type = "llama3"; cfg.scaling.factor = 8; ...
//   RopeTables tables = rope_tables(cfg);          // throws grpo::Error naming a bad field
//   ... copy tables.inv_freq into a device tensor inv ...
//   RopeParams p = rope_params(cfg, tables, inv);  // what Ops::rope takes
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ops.h"

namespace grpo {

// config.json's "rope_scaling" (transformers < 5) or "rope_parameters" (>= 5). Zero marks an
// optional field as absent where Hugging Face uses None.
struct RopeScaling {
  std::string type = "default";  // "rope_type" (or legacy "type"): default | linear | llama3 | yarn
  // linear, llama3, yarn: >= 1. yarn only: 0 derives it as
  // max_position_embeddings / original_max_position_embeddings (Hugging Face's factor: None).
  double factor = 1;
  double low_freq_factor = 1;    // llama3; > 0
  double high_freq_factor = 4;   // llama3; > low_freq_factor
  // llama3, yarn: pre-training context length; 0: max_position_embeddings
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32;         // yarn; >= beta_slow
  double beta_slow = 1;          // yarn; > 0
  double mscale = 0;             // yarn (DeepSeek); used only when both mscale fields are non-zero
  double mscale_all_dim = 0;     // yarn (DeepSeek)
  double attention_factor = 0;   // yarn; 0: derived from factor (and mscale/mscale_all_dim)
  bool truncate = true;          // yarn: round the correction range to whole dimensions
};

struct RopeConfig {
  double theta = 10000;                // rope_theta; > 1
  int64_t head_dim = 0;                // head_dim (or hidden_size / num_attention_heads)
  double partial_rotary_factor = 1;    // in (0, 1]: rot_dim = int(head_dim * factor), even
  int64_t max_position_embeddings = 0; // needed by llama3/yarn when the original length is 0
  RopeScaling scaling;
  RopeLayout layout = RopeLayout::half;  // half: Llama/Qwen/Mixtral; interleaved: GPT-J style
};

struct RopeTables {
  std::vector<float> inv_freq;    // [rot_dim / 2]
  float attention_scaling = 1.0f; // multiplies cos and sin (yarn's attention factor; else 1)
  int64_t rot_dim = 0;            // leading dims of each head that are rotated
};

// Computes the tables; throws grpo::Error naming the offending field for an unsupported type
// or invalid values.
RopeTables rope_tables(const RopeConfig& cfg);

// The op parameters for tables computed from cfg; inv_freq is a f32 [rot_dim / 2] tensor on
// the ops' device already holding tables.inv_freq.
RopeParams rope_params(const RopeConfig& cfg, const RopeTables& tables, Tensor inv_freq);

}  // namespace grpo
