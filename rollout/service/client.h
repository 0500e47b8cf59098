// Clients of rollout workers (`grpo rollout serve`, proto/rollout.proto). No gRPC types here.
//
//   RolloutClient worker({.address = "127.0.0.1:50051"});
//   worker.generate(prompts, [](RemoteGroup g) { ... });        // groups as they complete
//   worker.update_weights(model, /*version=*/3, UpdateMode::finish_in_flight);
//
//   RolloutPool pool({"10.0.0.1:50051", "10.0.0.2:50051"}, {});
//   std::vector<RemoteGroup> groups = pool.generate(prompts);     // spread, retried on failure
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "policy/model.h"
#include "rollout/engine.h"

namespace grpo::rollout {

// A failed call: `code` is the gRPC status name ("UNAVAILABLE", "INVALID_ARGUMENT", ...).
class RolloutClientError : public Error {
 public:
  RolloutClientError(std::string code, const std::string& message) : Error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

struct RolloutClientOptions {
  std::string address;                   // "host:port" of the worker
  std::string token;                     // bearer token sent on every call; "" = none
  double deadline_s = 600;               // per call (a whole Generate batch, an update), seconds
  int64_t max_message_bytes = 64 << 20;  // cap on each message sent and received, bytes
  int64_t weight_chunk_bytes = 4 << 20;  // tensor bytes per UpdateWeights message
};

// One prompt to answer: token ids, or raw text the worker tokenizes (needs its tokenizer).
struct PromptRequest {
  uint64_t id = 0;  // echoed in RemoteGroup; unique within one generate() call
  std::vector<int32_t> tokens;
  std::string text;  // used when tokens is empty
  SamplingOptions sampling;
};

struct RemoteGroup {
  GroupResult result;              // the caller's id and n samples in sample-index order
  std::vector<std::string> texts;  // each sample's decoded completion ("" when the worker has no tokenizer)
  std::string worker;              // address of the worker that generated it
};

// A tensor in host memory, little-endian row-major f32 or bf16 (uint16 bits).
struct NamedTensor {
  std::string name;  // Hugging Face name
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  const void* data = nullptr;
};

enum class UpdateMode { finish_in_flight, abort_in_flight };

struct WeightUpdateResult {
  int64_t version = 0;  // serving now
  int64_t tensors = 0, bytes = 0;
};

struct WorkerStatus {
  int64_t version = 0, running = 0, waiting = 0;
  int64_t kv_blocks_used = 0, kv_blocks_total = 0;
  double kv_usage = 0, tokens_per_s = 0;
  int64_t generated_tokens = 0, prefill_tokens = 0, preemptions = 0, kv_blocks_saved_by_sharing = 0;
  int64_t generate_calls_in_flight = 0;
  std::string model_type;
  int64_t vocab_size = 0, max_model_len = 0;
  bool has_tokenizer = false;
  std::string device;
};

// Cancels a generate() call from another thread; the worker cancels its samples. Reusable for
// one call at a time.
class GenerateCancel {
 public:
  void cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class RolloutClient;
  std::mutex mutex_;
  void* context_ = nullptr;  // the grpc::ClientContext of the call in flight
  std::atomic<bool> cancelled_{false};
};

class RolloutClient {
 public:
  // Creates the channel (connects lazily); throws grpo::Error for bad options.
  explicit RolloutClient(const RolloutClientOptions& options);
  ~RolloutClient();
  RolloutClient(const RolloutClient&) = delete;
  RolloutClient& operator=(const RolloutClient&) = delete;

  // One Generate call: `on_group` runs on the calling thread for each group as it completes.
  // Throws RolloutClientError when the call fails (groups delivered before stay delivered),
  // and when the worker answers an id it was not asked or answers twice.
  void generate(const std::vector<PromptRequest>& prompts, const std::function<void(RemoteGroup)>& on_group,
                GenerateCancel* cancel = nullptr) const;
  // The same, collected in prompt order.
  std::vector<RemoteGroup> generate(const std::vector<PromptRequest>& prompts) const;

  // Streams every parameter of `model` (read from its device) as `dtype` (f32 or bf16).
  WeightUpdateResult update_weights(const Model& model, int64_t version, UpdateMode mode,
                                    DType dtype = DType::f32) const;
  // Streams the given tensors; the worker keeps its other tensors.
  WeightUpdateResult update_weights(const std::vector<NamedTensor>& tensors, int64_t version, UpdateMode mode) const;

  WorkerStatus status() const;
  const std::string& address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct RolloutPoolOptions {
  RolloutClientOptions client;      // for every worker (its address is ignored)
  int64_t max_groups_per_call = 8;  // prompts sent to a worker in one Generate call
  // Groups a worker may have outstanding across all generate() calls of this pool; 0 = no cap.
  // With a cap, a faster worker gets more of a large batch.
  int64_t max_outstanding_per_worker = 0;
  int max_attempts = 3;             // tries of one group (over different workers)
  double down_for_s = 30;           // a failed worker gets no groups for this long, then again
};

struct PoolWorkerState {
  std::string address;
  int64_t outstanding = 0;  // groups sent and not yet back
  bool down = false;
  std::string last_error;
};

// Several workers behind one generate(): each call of up to max_groups_per_call prompts goes
// to the worker with the fewest outstanding groups; when a worker fails (UNAVAILABLE, a
// connection reset, DEADLINE_EXCEEDED, ...) it is marked down and its unfinished groups are
// sent to the others. A worker's bad-request answer (INVALID_ARGUMENT, UNAUTHENTICATED, ...) is
// not retried: generate() cancels the rest and throws it. Thread-safe: concurrent generate()
// calls share the load counts.
class RolloutPool {
 public:
  RolloutPool(const std::vector<std::string>& addresses, const RolloutPoolOptions& options);
  ~RolloutPool();
  RolloutPool(const RolloutPool&) = delete;
  RolloutPool& operator=(const RolloutPool&) = delete;

  // Every prompt's group, each exactly once, to `on_group` on the calling thread as they
  // complete. Throws RolloutClientError when a group cannot be had (every worker down, a
  // group failed max_attempts times, or a non-retryable error).
  void generate(const std::vector<PromptRequest>& prompts, const std::function<void(RemoteGroup)>& on_group);
  std::vector<RemoteGroup> generate(const std::vector<PromptRequest>& prompts);

  std::vector<PoolWorkerState> workers() const;
  // The client of worker i (for weight updates and status).
  RolloutClient& client(size_t i);
  size_t size() const;
  // Groups sent again after their worker failed, since construction.
  int64_t retried_groups() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::rollout
