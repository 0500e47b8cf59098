// The rollout service's logic without gRPC: the engine's loop thread, validation and
// submission of a Generate batch, cancellation, staged weight updates, status. server.cpp puts
// it behind gRPC's callback API; tests may drive it directly.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "policy/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/service/metrics.h"
#include "rollout/service/weights.h"

namespace grpo::rollout {

// One prompt of a Generate batch, as received.
struct GeneratePrompt {
  uint64_t id = 0;              // the caller's
  std::vector<int32_t> tokens;  // the prompt, or
  std::string text;             // raw text to tokenize (when tokens is empty)
  SamplingOptions sampling;
};

// A finished group as delivered: the engine's result under the caller's id, and each
// sample's decoded completion ("" without a tokenizer).
struct DeliveredGroup {
  GroupResult group;
  std::vector<std::string> texts;
};

class RolloutHandler {
 public:
  // Runs on the engine loop's thread, once per prompt, in completion order.
  using OnGroup = std::function<void(DeliveredGroup)>;
  // The requests one generate() submitted.
  struct Generation;

  // Starts the engine loop thread. `engine`, `tokenizer` (may be null: token-id prompts only,
  // no stop strings, no completion text) and `metrics` (may be null) must outlive the handler.
  RolloutHandler(Engine& engine, const Tokenizer* tokenizer, RolloutMetrics* metrics);
  // Stops the loop thread, then cancels what is left in the engine and steps it until idle, so
  // every callback has run and the engine holds none of this handler's.
  ~RolloutHandler();
  RolloutHandler(const RolloutHandler&) = delete;
  RolloutHandler& operator=(const RolloutHandler&) = delete;

  // Validates every prompt first (a grpo::Error naming "prompts[i] (id X)" for the first bad
  // one, and nothing is submitted), then submits the batch.
  std::shared_ptr<Generation> generate(std::vector<GeneratePrompt> prompts, OnGroup on_group);
  // Cancels the generation's unfinished samples; their groups are still delivered (abort).
  void cancel(const Generation& generation);

  // A weight update being received: null while another one is (received or waiting to be
  // applied). The staging checks against the version serving now.
  std::shared_ptr<WeightStaging> begin_update();
  // Hands a complete staging to the engine, which applies it between two steps; `done` runs
  // on the loop thread with "" once the new weights serve, or with the reason they do not.
  // The update slot frees when `done` has run.
  void apply_update(std::shared_ptr<WeightStaging> staging, std::function<void(const std::string& error)> done);

  // The engine's stats (published at the end of each step, so a group can arrive a moment
  // before they count it) with the version serving now.
  EngineStats stats() const {
    EngineStats s = engine_.stats();
    s.version = engine_.version();
    return s;
  }
  Engine& engine() { return engine_; }
  const Tokenizer* tokenizer() const { return tokenizer_; }
  // generate() calls with groups still to deliver.
  int generations_in_flight() const { return in_flight_.load(); }

 private:
  void loop();
  void wake();
  // Special tokens (eos) and ids past the tokenizer's vocabulary left out.
  std::string completion_text(const std::vector<int32_t>& tokens) const;

  Engine& engine_;
  const Tokenizer* tokenizer_;
  RolloutMetrics* metrics_;
  std::atomic<uint64_t> next_engine_id_{1};
  std::atomic<int> in_flight_{0};
  std::atomic<bool> update_busy_{false};

  std::mutex ids_mutex_;
  std::set<uint64_t> live_ids_;  // engine ids submitted and not yet delivered

  std::mutex mutex_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace grpo::rollout
