// The reward service's logic, without gRPC: take a batch, look up each item's checker, score
// the items concurrently on a pool of threads, hand back the results in item order.
// rewards/service/server.h puts it behind gRPC's callback API; tests call it directly.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "rewards/combine.h"
#include "rewards/service/batch.h"
#include "rewards/service/metrics.h"

namespace grpo::rewards {

struct HandlerOptions {
  int threads = 0;           // scoring threads; 0 = one per core
  int max_concurrency = 64;  // Score calls worked on at once; more are refused (RESOURCE_EXHAUSTED)
};

// Per-call controls of RewardHandler::score.
struct HandlerCall {
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();  // items not started by then are not scored
  std::shared_ptr<std::atomic<bool>> cancelled;  // set by the caller to stop; may be null
};

class RewardHandler {
 public:
  using Clock = std::chrono::steady_clock;
  using Call = HandlerCall;
  // Called exactly once per score() call, from a scoring thread or from score() itself.
  // `results` is empty unless the status is OK.
  using Done = std::function<void(Status status, std::vector<ScoredItem> results)>;

  // `rewards` and `metrics` (may be null) must outlive the handler.
  RewardHandler(RewardSet& rewards, const HandlerOptions& options, RewardMetrics* metrics = nullptr);
  // Finishes every queued item (their calls complete), then joins the threads.
  ~RewardHandler();
  RewardHandler(const RewardHandler&) = delete;
  RewardHandler& operator=(const RewardHandler&) = delete;

  // Scores `items` asynchronously. Fails the whole call with INVALID_ARGUMENT (message names
  // the item) for an unknown checker or a checker that throws grpo::Error (a malformed
  // reference); UNAVAILABLE / DEADLINE_EXCEEDED when a remote checker fails; RESOURCE_EXHAUSTED
  // at the concurrency limit; DEADLINE_EXCEEDED / CANCELLED per `call`. After the first
  // failure, items not yet started are skipped.
  void score(std::vector<ScoreItem> items, Call call, Done done);

  // The blocking form of score().
  Status score_sync(std::vector<ScoreItem> items, std::vector<ScoredItem>* results, Call call = {});

  std::vector<RewardSet::Entry> list() const { return rewards_.list(); }
  const std::string& default_checker() const { return rewards_.default_checker(); }
  int threads() const { return static_cast<int>(workers_.size()); }
  // Score calls accepted and not yet done.
  int in_flight() const { return in_flight_.load(); }

 private:
  struct CallState;
  void run_item(const std::shared_ptr<CallState>& state, size_t index);
  void finish(const std::shared_ptr<CallState>& state);
  void enqueue(std::function<void()> task);
  void worker_loop();

  RewardSet& rewards_;
  HandlerOptions options_;
  RewardMetrics* metrics_;
  std::atomic<int> in_flight_{0};

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace grpo::rewards
