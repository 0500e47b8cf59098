// Counters of the reward service, rendered in Prometheus' text format (version 0.0.4) for
// GET /metrics. Thread-safe; cheap enough to update once per request and once per item.
//
//   grpo_reward_requests_total{rpc,code}          calls answered, by rpc and status code
//   grpo_reward_request_seconds{rpc} (histogram)  call latency, seconds
//   grpo_reward_requests_in_flight                Score calls being worked on
//   grpo_reward_items_total{checker}              items scored, by checker or task
//   grpo_reward_item_errors_total{checker}        items whose scoring threw (the call failed)
//   grpo_reward_item_seconds_sum{checker}         time spent scoring items, seconds
//   grpo_reward_reward_sum{checker}               sum of rewards given (mean = sum / items)
//   grpo_reward_queued_items                      items waiting for a scoring thread
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace grpo::rewards {

class RewardMetrics {
 public:
  RewardMetrics();
  void record_request(const std::string& rpc, const std::string& code, double seconds);
  void record_item(const std::string& checker, double seconds, double reward, bool error);
  void add_in_flight(int delta);
  void add_queued(int delta);
  std::string render() const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // cumulative counts are computed when rendering
    uint64_t count = 0;
    double sum = 0;
  };
  struct Checker {
    uint64_t items = 0, errors = 0;
    double seconds = 0, reward = 0;
  };
  mutable std::mutex mutex_;
  std::vector<double> bounds_;  // histogram upper bounds, seconds
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, Checker> checkers_;
  int64_t in_flight_ = 0;
  int64_t queued_ = 0;
};

}  // namespace grpo::rewards
