// The generation engine of a rollout worker: continuous batching over a paged KV cache with
// group prefix sharing, per-request sampling, preemption by recomputation, and weight updates
// applied between steps.
//
//   Engine engine(model, {.max_batch = 64, .kv_memory_bytes = 1 << 30}, &tokenizer);
//   std::vector<GroupResult> out = engine.generate({Request{.id = 7, .prompt = ids, .sampling = {.n = 8}}});
//
// One step() does, in order: apply a pending weight update if its conditions hold; admit waiting
// groups while KV memory and batch slots allow; prefill up to max_prefill_tokens prompt tokens
// (chunked: a long prompt is spread over several steps, so decoding never stalls behind it);
// decode one token for every running sequence in one batched Model::decode_step; sample; retire
// finished sequences and deliver every group whose n samples are all finished.
//
// Group prefix sharing: the n samples of a request share the prompt's KV blocks. The prompt is
// prefilled once; its last token's logits give each sample's first token (each with its own
// Philox stream); the KV sequence is then forked n - 1 times (KvCache::fork_sequence), and a
// shared, partially filled last block is copied on the first write (copy on write).
//
// Preemption: when a decode step needs a KV block and none is free, the most recently admitted
// running sequences are preempted: their blocks are freed, they keep their generated tokens and
// go back to the front of the queue; on readmission their prompt and generated tokens are
// prefilled again (recomputed) and decoding continues. Nothing is dropped.
//
// Determinism: sample i of a request draws token j with Philox(seed, stream = i, offset = j), so
// the same weights, prompt and seed give the same tokens whatever else is in the batch, how
// many workers there are, or the order requests arrive in, as long as the backend computes each
// row's logits independently of the other rows. Bit for bit, the CPU backend does not quite:
// OpenBLAS rounds a GEMM row differently depending on where it falls in the batch (~1e-6 in
// the log-probs; a token flips only when its draw sits that close to a CDF boundary or an
// argmax/top-k tie). See rollout/README.md.
//
// Threads: submit(), cancel(), request_weight_update() and stats() may be called from any
// thread; step() / run_until_idle() / generate() from one thread at a time (the engine loop).
// Completion callbacks run on the engine loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "policy/model.h"
#include "policy/tokenizer.h"

namespace grpo::rollout {

enum class FinishReason : uint8_t {
  stop,    // a stop token id or stop string was produced (it is part of the completion)
  length,  // max_new_tokens reached, or the model's context is full
  abort,   // cancelled, or aborted by a weight update
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort"

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // in (0, 1]
  float min_p = 0.0f;        // in [0, 1)
  int64_t max_new_tokens = 256;
  std::vector<int32_t> stop_token_ids;    // e.g. the tokenizer's eos (callers add it)
  std::vector<std::string> stop_strings;  // matched on the decoded completion (needs a tokenizer;
                                          // special tokens and ids it lacks decode to nothing)
  int64_t n = 1;                          // samples of this prompt (the group size G)
  uint64_t seed = 0;
  bool return_routing = false;  // record the experts chosen for every token (MoE models; a
                                // dense model returns no routing)
};

struct Request {
  uint64_t id = 0;              // the caller's, echoed in GroupResult
  std::vector<int32_t> prompt;  // token ids, at least one
  SamplingOptions sampling;
  // Optional: called on the engine loop's thread with each newly sampled token (not again when
  // a preempted sample's tokens are recomputed), e.g. to stream text to a terminal.
  std::function<void(int64_t sample, int32_t token)> on_token;
};

struct Sample {
  std::vector<int32_t> tokens;   // generated ids (a stop token or the token completing a stop
                                 // string included)
  std::vector<float> logprobs;   // per generated token: log-prob under the sampling
                                 // distribution (Ops::sample's definition), f32
  FinishReason finish = FinishReason::length;
  int64_t version = 0;           // the policy version whose weights produced every token (a
                                 // request cancelled before it started: the current version)
  // With return_routing: experts chosen for each token fed to the model, prompt first, then
  // every generated token but the last: i32 [(prompt + tokens - 1), num_moe_layers, top_k],
  // row-major. The learner's replay tensor is its transpose ([layers, tokens, K]). An aborted
  // sample has the rows recorded so far (none without generated tokens).
  std::vector<int32_t> routing;
};

struct GroupResult {
  uint64_t id = 0;
  std::vector<Sample> samples;  // n of them, in sample-index order
};

struct EngineConfig {
  int64_t max_batch = 64;                   // running sequences decoded per step
  int64_t kv_memory_bytes = int64_t(256) << 20;  // device bytes for the KV cache
  int64_t block_size = 16;                  // token slots per KV block
  int64_t max_prefill_tokens = 512;         // prompt tokens prefilled per step, all sequences
  bool prefix_sharing = true;               // false: prefill the prompt once per sample
  int64_t max_model_len = 0;                // prompt + completion cap; 0: max_position_embeddings
};

// The ModelLimits a Model must be built with to serve an engine of this config (decoding
// activations for max(max_batch, max_prefill_tokens) tokens; no training).
ModelLimits engine_model_limits(const EngineConfig& cfg);

struct EngineStats {
  int64_t version = 0;
  int64_t running = 0, waiting = 0;        // sequences
  int64_t kv_blocks_total = 0, kv_blocks_used = 0;
  int64_t kv_blocks_saved_by_sharing = 0;  // cumulative: prompt blocks not allocated thanks to forks
  int64_t prefill_tokens = 0;              // cumulative, recomputation included
  int64_t generated_tokens = 0;            // cumulative
  int64_t preemptions = 0;                 // cumulative
  // The model's decode steps (Model::decode_graph_stats, cumulative over its life): replayed as
  // CUDA graphs, run op by op, and graph captures that failed (those shapes run op by op).
  int64_t decode_graph_replays = 0, decode_steps_op_by_op = 0, decode_graph_failures = 0;
  int64_t steps = 0;
  double tokens_per_s = 0;                 // generated tokens per second over the last ~10 s
};

class Engine {
 public:
  // The model must have been built with engine_model_limits(cfg) (or larger decode limits).
  // tokenizer is needed for stop_strings; it may be null otherwise.
  Engine(Model& model, const EngineConfig& cfg, const Tokenizer* tokenizer = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Throws grpo::Error with the reason when the request cannot be served: empty prompt, a
  // token id outside the vocabulary, prompt longer than the context (max_model_len - 1), n
  // outside [1, 65536], temperature < 0 or not finite, top_p outside (0, 1], min_p outside
  // [0, 1), top_k < 0, max_new_tokens < 1, a stop token id outside the vocabulary,
  // stop_strings without a tokenizer or with an empty string, or one sample of prompt +
  // max_new_tokens (capped by max_model_len) larger than the whole KV memory (preemption lets
  // the samples of any accepted request run one at a time, so that is the only KV limit).
  void validate(const Request& r) const;
  // Validates, then queues. `done` receives the group once all its samples are finished.
  void submit(Request r, std::function<void(GroupResult)> done);
  // Aborts the request's unfinished samples (finish = abort); its group is delivered at the
  // next step. Unknown ids are ignored.
  void cancel(uint64_t id);

  // One engine step (see the top of this file). Returns false when there was nothing to do.
  bool step();
  void run_until_idle();
  // Submits every request, runs until all are delivered, returns them in request order.
  std::vector<GroupResult> generate(std::vector<Request> requests);

  // A weight update, applied by the engine loop between two steps: `apply` runs there (it
  // writes the new weights into the model) and the version becomes `version`. A request is of
  // the old version once it has started (its first sequence admitted); requests still queued
  // unstarted run on the new one. With abort_in_flight, unfinished samples of started requests
  // are aborted (delivered with finish = abort) before it runs; without, requests that have not
  // started wait while the started ones (preempted samples included) finish, then it runs.
  // Either way no sample mixes versions. Updates apply in the order requested.
  // `applied` (optional) runs after the update, with an empty string, or with the error when
  // `apply` threw (the old weights then stay: apply must validate before it writes).
  void request_weight_update(int64_t version, bool abort_in_flight, std::function<void(Model&)> apply,
                             std::function<void(const std::string& error)> applied = {});
  int64_t version() const;

  EngineStats stats() const;
  const EngineConfig& config() const;
  Model& model();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::rollout
