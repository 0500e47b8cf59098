// Shared helpers of the model tests: an independent fp64 reference decoder (plain loops in
// double, written from the transformers modeling files, sharing no code with policy/model*),
// packed batches on the host, and test configs/weights.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "policy/model.h"
#include "policy/model_config.h"

namespace grpo::test {

// ---- the fp64 reference ------------------------------------------------------------------

// Weights by Hugging Face name, in double.
using RefWeights = std::map<std::string, std::vector<double>>;
RefWeights ref_weights(const Model& model);

struct RefInput {
  std::vector<int32_t> tokens, targets, positions, cu_seqlens;
};

struct RefOptions {
  bool aux = false;
  double temperature = 1.0;
  // Per MoE layer: [T * K] expert ids to use instead of top-k (empty: route).
  const std::vector<std::vector<int32_t>>* replay = nullptr;
};

struct RefOutput {
  std::vector<double> logprob, entropy;       // [T]
  double aux = 0;                             // load_balancing_loss_func (unscaled)
  std::vector<std::vector<int32_t>> routing;  // per MoE layer [T * K], best first
  double min_gap = 1e30;  // smallest gap between the K-th and (K+1)-th router probability
};

RefOutput ref_forward(const ModelConfig& cfg, const RefWeights& w, const RefInput& in, const RefOptions& opt = {});

// ---- batches -----------------------------------------------------------------------------

// Sequences of the given lengths with deterministic random tokens; targets are the next
// token of the same sequence (the last position gets a random token).
RefInput make_batch(const std::vector<int>& lengths, int64_t vocab, uint64_t seed);

// Device (CPU) copies of a RefInput, owned.
struct HostBatch {
  std::vector<int32_t> tokens, targets, positions, cu_seqlens;
  PackedBatch batch() const;
  explicit HostBatch(const RefInput& in);
};

// ---- configs and weights -----------------------------------------------------------------

// The tiny preset of `arch`, with variations that exercise every parameter kind: llama with
// attention and MLP biases, qwen3_moe with a dense layer (mlp_only_layers [0]).
ModelConfig test_config(const std::string& arch);

// Random weights with larger spread than the HF init (so attention, RoPE and routing matter):
// matrices ~ normal(0, std), norms 1 + U(-0.3, 0.3), biases U(-0.2, 0.2).
void randomize_weights(Model& model, uint64_t seed, double std = 0.12);
// Limits of a scoring-only model (no gradients) that also decodes.
ModelLimits decoding_limits(int64_t max_tokens, int64_t max_seqs, int64_t max_decode_tokens, int64_t max_decode_seqs);

// Values of a named parameter / gradient (CPU model).
std::vector<float> read_tensor(const Tensor& t);

// The parameter kind of a HF name: layer and expert indices replaced by '*'.
std::string param_kind(const std::string& name);

}  // namespace grpo::test
