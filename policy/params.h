// ParamTable: every parameter of a model in one contiguous f32 buffer, described by a table of
// (Hugging Face name, offset, shape). Gradients and optimizer state use the same table over
// buffers of the same length, so AdamW, grad-norm, zero-grad, broadcast and checkpointing are
// each one loop over flat memory (DESIGN.md "Compute", llm.c's parameter struct).
//
// Layout (offsets in floats, every tensor starting on a 64-float = 256-byte boundary):
//   [ decayed region: embed_tokens, per layer the q/k/v/o, router, expert and MLP weights,
//     lm_head ] [ no-decay region: every RMSNorm weight and every bias ]
// so weight decay is two flat ranges (decay_range(), no_decay_range()), the usual convention
// of transformers' Trainer: biases and norm weights are not decayed.
// The experts of one MoE layer are stacked: experts.0..E-1.gate_proj.weight are consecutive
// [F, C] blocks, i.e. one [E, F, C] tensor for grouped_matmul, likewise up_proj [E, F, C] and
// down_proj [E, C, F]. Padding between tensors is zero and stays zero under AdamW.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/model_config.h"

namespace grpo {

enum class ParamKind : uint8_t {
  embedding,  // embed_tokens
  lm_head,    // lm_head (absent when tied)
  linear,     // attention and dense-MLP projections, the shared-expert gate
  router,     // MoE gate (router) weight
  expert,     // a routed expert's projection (one slice of a stacked [E, ., .] block)
  norm,       // RMSNorm weight (no decay)
  bias,       // projection bias (no decay)
};

struct ParamEntry {
  std::string name;            // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  int64_t offset = 0;          // in floats from the start of the buffer
  std::vector<int64_t> shape;  // HF shape ([out, in] for linear weights)
  ParamKind kind = ParamKind::linear;
  int64_t layer = -1;          // decoder layer, -1 for embeddings / final norm / lm_head
  int64_t numel() const;
};

// A contiguous range of floats.
struct ParamRange {
  int64_t offset = 0;
  int64_t count = 0;
};

class ParamTable {
 public:
  static constexpr int64_t kAlign = 64;  // floats

  // The table of cfg's model (no memory allocated).
  explicit ParamTable(const ModelConfig& cfg);

  const std::vector<ParamEntry>& entries() const { return entries_; }
  // Floats in the buffer, padding included.
  int64_t size() const { return size_; }
  // Parameters (padding excluded).
  int64_t numel() const { return numel_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Throws naming `name` when absent.
  const ParamEntry& at(const std::string& name) const;
  // Start of a stacked expert block [E, rows, cols]: the entry of expert 0.
  const ParamEntry& expert_block(int64_t layer, const char* proj) const;
  ParamRange decay_range() const { return decay_; }
  ParamRange no_decay_range() const { return no_decay_; }
  // 1 for parameters that get weight decay, 0 for norms, biases and padding ([size()]).
  std::vector<float> decay_mask() const;

  // HF names of this config's tensors.
  static std::string layer_prefix(int64_t layer);  // "model.layers.<i>."
  // The expert projection name: mixtral "block_sparse_moe.experts.<j>.w1", others
  // "mlp.experts.<j>.gate_proj" (proj is "gate", "up" or "down").
  std::string expert_name(int64_t layer, int64_t expert, const char* proj) const;
  std::string router_name(int64_t layer) const;

 private:
  void add(std::string name, std::vector<int64_t> shape, ParamKind kind, int64_t layer);
  ModelArch arch_;
  std::vector<ParamEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  int64_t size_ = 0;
  int64_t numel_ = 0;
  ParamRange decay_, no_decay_;
};

// Parameter counts computed from the table (no allocation).
struct ModelParamCounts {
  int64_t total = 0;             // every stored parameter (tied embeddings counted once)
  int64_t active_per_token = 0;  // what one token uses: K of E routed experts, everything else
  int64_t embedding = 0;         // embed_tokens plus an untied lm_head
  int64_t experts = 0;           // routed expert parameters (all E)
};
ModelParamCounts count_model_params(const ModelConfig& cfg);

}  // namespace grpo
