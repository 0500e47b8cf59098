// Model: the decoder of every supported Hugging Face model_type (policy/model_config.h), with
// hand-written forward and backward over packed sequences and incremental decoding over a
// paged KV cache. All compute goes through Ops (kernels/ops.h); the model never branches on
// the device.
//
//   ModelConfig cfg = load_model_config("ckpt/");
//   Model model(cfg, ops, {.max_tokens = 4096, .max_seqs = 64});
//   model.load("ckpt/");
//   ForwardOutputs out{.logprob = lp, .entropy = ent};
//   model.forward(batch, {.with_grad = true, .entropy = true}, out);
//   model.zero_grad();
//   model.backward(dlogprob, dentropy, model.aux_loss_coef());   // grads() accumulates
//   ops.adamw(...over model.params() / model.grads() ranges...);
//
// Memory (llm.c style): parameters and gradients are two flat f32 buffers laid out by the
// ParamTable (policy/params.h). With ModelLimits::dtype = bf16 (backends that store bf16: CUDA)
// the forward reads a bf16 copy of the parameters (compute_params(); norm weights and biases
// are read from the f32 master), activations and the KV cache are bf16, and statistics (norm
// rstd, attention lse, router scores, log-probs, entropy) and all gradients stay f32: the
// optimizer updates the f32 master and rounds the copy in the same pass (Ops::adamw's
// params_bf16). Training activations live in one Arena sized at construction
// for ModelLimits::max_tokens / max_seqs, decoding activations in another sized for
// max_decode_tokens / max_decode_seqs. A larger batch is a grpo::Error naming the limit, never
// a reallocation.
//
// Forward per layer:  h = x + o_proj(attn(rope(qk_norm(q_proj(n1))), ...)),  n1 = rmsnorm(x)
//                     x' = h + ffn(rmsnorm(h))      (ffn: SwiGLU MLP or routed experts)
// Backward is the forward's call list in reverse; parameter grads ACCUMULATE into grads().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "kernels/ops.h"
#include "policy/model_config.h"
#include "policy/params.h"

namespace grpo {

class KvCache;

// Whether decode_step runs as replayed graphs (Ops::begin_capture): automatic is on where the
// backend's graphs save launches (CUDA) and off on the CPU, where a graph only replays the calls.
enum class DecodeGraphs : uint8_t { automatic, on, off };

struct ModelLimits {
  int64_t max_tokens = 2048;        // tokens of one packed training/scoring batch
  int64_t max_seqs = 64;            // sequences of one packed batch
  bool training = true;             // allocate gradients and keep activations for backward
  bool recompute = false;           // keep only each layer's input; recompute the layer in backward
  int64_t max_decode_tokens = 0;    // new tokens of one prefill/decode_step call (0: no decoding)
  int64_t max_decode_seqs = 0;      // sequences of one prefill/decode_step call
  DType dtype = DType::f32;         // storage of the weights the forward reads and of activations:
                                    // f32, or bf16 where ops.supports_storage(bf16) (see above)
  DecodeGraphs decode_graphs = DecodeGraphs::automatic;  // see decode_step
};

// What decode_step did so far (Model::decode_graph_stats).
struct DecodeGraphStats {
  int64_t graphs = 0;       // graphs captured (one per padded batch size and block-table width)
  int64_t replays = 0;      // decode steps run by replaying a graph
  int64_t eager_steps = 0;  // decode steps run op by op (graphs off, routing replay, the first
                            // step of each shape, or a shape whose capture failed)
  int64_t failed = 0;       // captures that failed (their shape then runs op by op; logged)
};

// A packed batch: S sequences concatenated, no padding. Tensors on the ops' device.
struct PackedBatch {
  Tensor tokens;      // i32 [T]
  Tensor targets;     // i32 [T]: the token whose log-prob is wanted at each position (usually the
                      // next token); any valid id where there is none (give it zero gradient)
  Tensor positions;   // i32 [T]: RoPE position of each token (0-based within its sequence)
  Tensor cu_seqlens;  // i32 [S + 1]: sequence boundaries (attention is causal within each)
};

struct ForwardOptions {
  bool with_grad = false;        // keep what backward() needs (requires ModelLimits::training)
  bool entropy = false;          // also compute each position's entropy
  float temperature = 1.0f;      // log-probs and entropy of softmax(logits / temperature)
  std::optional<bool> aux_loss;  // load-balancing loss (default: config.output_router_logits)
  // i32 [num_moe_layers, T, K] or undefined: route each token to these experts (routing
  // replay) instead of the router's top-k; the gate weights are recomputed for them.
  Tensor replay_routing;
};

struct ForwardOutputs {
  Tensor logprob;  // f32 [T], required
  Tensor entropy;  // f32 [T], required when ForwardOptions::entropy
  Tensor routing;  // i32 [num_moe_layers, T, K] or undefined: receives the experts used
  // transformers' load_balancing_loss_func over all MoE layers (the unscaled aux_loss it
  // returns; its training loss adds router_aux_loss_coef * aux_loss). 0 when not computed.
  float aux_loss = 0.0f;
};

class Model {
 public:
  Model(const ModelConfig& cfg, Ops& ops, const ModelLimits& limits);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const ModelLimits& limits() const;
  const ParamTable& table() const;
  Ops& ops() const;

  // The flat buffers: f32 [table().size()]. grads() is undefined unless limits.training.
  Tensor params() const;
  Tensor grads() const;
  // ModelLimits::dtype: f32 or bf16.
  DType dtype() const;
  // The flat weights the forward reads, laid out like params(): params() itself for f32, its
  // bf16 copy for bf16. load(), init_weights() and Optimizer::step() keep the copy current;
  // whoever writes params() otherwise calls sync_compute_params() before the next forward or
  // decoding call (a no-op for f32).
  Tensor compute_params() const;
  void sync_compute_params();
  // One tensor by Hugging Face name, with its HF shape (views into the flat buffers).
  Tensor param(const std::string& name) const;
  Tensor grad(const std::string& name) const;
  void zero_grad();

  // Hugging Face initialisation (model_init.cpp): normal(0, initializer_range) for every
  // weight matrix and embedding (the pad_token_id row zeroed), ones for norms, zeros for
  // biases. Deterministic in `seed` (Philox, one stream per tensor).
  void init_weights(uint64_t seed);
  // Weights from a Hugging Face directory (model.safetensors or a sharded index); every
  // tensor of the table must be present with its shape; unexpected tensors are an error
  // (except rotary inv_freq buffers and lm_head.weight of a tied model).
  void load(const std::string& dir);
  // Writes config.json and the weights (HF names) as `dtype` (f32, bf16 or f16), sharded when
  // larger than max_shard_bytes (0: one file).
  void save(const std::string& dir, DType dtype = DType::f32, uint64_t max_shard_bytes = 0) const;

  // Per-token log-probs (and entropy) of batch.targets, and the aux loss when enabled.
  void forward(const PackedBatch& batch, const ForwardOptions& options, ForwardOutputs& out);
  // Gradients of  L = sum_t dlogprob[t] * logprob[t] + sum_t dentropy[t] * entropy[t]
  //                   + aux_loss_grad * aux_loss
  // for the last forward (which must have had with_grad), ACCUMULATED into grads().
  // dlogprob f32 [T] (required), dentropy f32 [T] or undefined (needs options.entropy).
  // aux_loss_grad needs a forward that computed the aux loss (else it must be 0).
  void backward(Tensor dlogprob, Tensor dentropy, float aux_loss_grad);
  // router_aux_loss_coef when config.output_router_logits, else 0: the aux_loss_grad that
  // reproduces transformers' training loss.
  float aux_loss_coef() const;

  // Incremental decoding (the cache's dtype must be the model's). prefill appends num_tokens[b] tokens to cache sequence seq_ids[b]
  // (tokens i32 [sum num_tokens] on the device, grouped by sequence, continuing at the
  // sequence's cached length), writes their K/V into the cache and returns the logits of
  // each sequence's last new token: logits f32 [B, V] (temperature not applied).
  // routing (optional) i32 [num_moe_layers, sum num_tokens, K] receives the experts used;
  // replay (optional, same shape) routes each new token to the given experts instead of the
  // router's top-k (the gate weights recomputed for them), as ForwardOptions::replay_routing.
  void prefill(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, std::span<const int64_t> num_tokens,
               Tensor logits, Tensor routing = {}, Tensor replay = {});
  // One new token per sequence: tokens i32 [B].
  // With decode graphs on (ModelLimits::decode_graphs) and no replay, the layers run as a graph:
  // the batch is padded to a bucket (1, 2, 4, 8, then multiples of 8, at most max_decode_seqs;
  // padding rows write no cache slot and are dropped) and the block table to a power-of-two
  // width; the first step of each (bucket, width, cache) runs op by op and captures the graph,
  // later ones copy the tokens and metadata into the graph's buffers and replay it. The LM head
  // runs after it, straight into logits. Results equal the op-by-op step's up to the rounding
  // of a differently sized batch.
  void decode_step(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, Tensor logits,
                   Tensor routing = {}, Tensor replay = {});
  DecodeGraphStats decode_graph_stats() const;
  // Changes ModelLimits::decode_graphs from the next decode_step on (graphs already captured
  // are kept for when they are turned back on).
  void set_decode_graphs(DecodeGraphs mode);

  // Bytes of the two activation arenas (training, decoding).
  size_t training_arena_bytes() const;
  size_t decode_arena_bytes() const;
  // The training-arena size a model of cfg would allocate for `limits`, without building it.
  static size_t training_arena_bytes(const ModelConfig& cfg, const ModelLimits& limits);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Reads dir/config.json, builds the model and loads its weights.
std::unique_ptr<Model> load_model(const std::string& dir, Ops& ops, const ModelLimits& limits);

}  // namespace grpo
