// Counters of the rollout service, rendered in Prometheus' text format (version 0.0.4) for
// GET /metrics, together with the engine's own gauges and counters read at scrape time.
// Thread-safe.
//
//   grpo_rollout_requests_total{rpc,code}           calls answered, by rpc and status code
//   grpo_rollout_request_seconds{rpc} (histogram)   call latency, seconds
//   grpo_rollout_generate_calls_in_flight           Generate calls being served
//   grpo_rollout_groups_total                       groups delivered
//   grpo_rollout_samples_total{finish}              samples delivered, by finish reason
//   grpo_rollout_weight_updates_total{result}       UpdateWeights calls: applied / rejected
//   from EngineStats: grpo_rollout_policy_version, grpo_rollout_running_sequences,
//   grpo_rollout_waiting_sequences, grpo_rollout_kv_blocks_{used,total},
//   grpo_rollout_kv_blocks_saved_by_sharing_total, grpo_rollout_{generated,prefill}_tokens_total,
//   grpo_rollout_preemptions_total, grpo_rollout_engine_steps_total,
//   grpo_rollout_decode_graph_replays_total, grpo_rollout_decode_steps_op_by_op_total,
//   grpo_rollout_decode_graph_failures_total, grpo_rollout_tokens_per_second
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "rollout/engine.h"

namespace grpo::rollout {

class RolloutMetrics {
 public:
  RolloutMetrics();
  void record_request(const std::string& rpc, const std::string& code, double seconds);
  void record_group(const GroupResult& group);
  void record_weight_update(bool applied);
  void add_generate_in_flight(int delta);
  std::string render(const EngineStats& engine) const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // per bound; cumulative counts are computed when rendering
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::vector<double> bounds_;  // histogram upper bounds, seconds
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, uint64_t> samples_;  // by finish reason
  uint64_t groups_ = 0;
  uint64_t updates_applied_ = 0, updates_rejected_ = 0;
  int64_t generate_in_flight_ = 0;
};

}  // namespace grpo::rollout
